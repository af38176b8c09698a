# SPDX-License-Identifier: MIT
# statefiles.py: the one place that names the bulb's state files: what it keeps between boots
# and is neither a module, nor a setting (config.json, site.json, server.json: config.py), nor
# a downloaded version (v/), nor the journal (its own partition). They all live in the
# directory DIR, so the root holds only what was flashed or configured; statemove.py makes it
# at boot. The loader's file, ota.json, is named in otaboot.py (the loader stays as flashed).
# Names only, so it costs a few hundred bytes of heap in the modules that import it. It is not
# named like DIR: MicroPython would import the directory. See docs/firmware.md "Files on the
# bulb". It must never hold anything but names, and never a name outside DIR.
DIR = "state"
TAPS = "state/taps"  # the setup gesture's count of quick visits (taps.py)
COMMISSION = "state/commission"  # a provisioning to confirm (setupmode.py, tools/provision.py)
CLOCK = "state/clock"  # the last verified wall time, the clock's floor (clock.py)
DNS = "state/dns"  # "<host> <ip>": the last answer, for a dead resolver (wifi.py)
SV = "state/sv"  # the settings version applied (uplink.py)
LTE_LAST = "state/lte_last"  # when the last LTE-M report was made (uplink.py)
NOWDT = "state/nowdt"  # a developer's request: no watchdog for one boot (watchdog.py)
