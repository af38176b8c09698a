# SPDX-License-Identifier: MIT
# boot.py: the ESP32 port runs this file, then main.py, from the filesystem root. It hands over
# to otaboot, which runs a downloaded firmware version (v/<version>/main.py) instead of the
# root's when ota.json says so (docs/ota.md). It must never stop the root's main.py from
# running: with nothing to do, or on any error, it returns at once.
try:
    import otaboot

    otaboot.run(globals().get("__file__", "").rpartition("/")[0])
except Exception as e:  # noqa: BLE001 - the root's main.py runs next, whatever this was
    import sys

    sys.print_exception(e)
