# SPDX-License-Identifier: MIT
# statefiles.py: the one place that names the bulb's state files: what it keeps between boots
# and is neither a module, nor a setting (config.json, site.json, server.json: config.py), nor
# a downloaded version (v/), nor the journal (its own partition). They all live in the
# directory DIR, so the root holds only what was flashed or configured. ready() creates DIR at
# each boot (main, after the lamp) and moves into it the files an older firmware kept at the
# root (an update over the air from one). The loader's file, ota.json, is named in otaboot.py
# (the loader stays as flashed): an older loader keeps it at the root, and so does every
# version it runs. This module is not named like DIR: MicroPython would import the directory.
# See docs/firmware.md "Files on the bulb".
# It must never raise, never block the boot, and never delete or overwrite a state file but
# with the same file's newer copy from the root; a power cut anywhere leaves each file whole,
# at the root or in DIR (or both), and the next boot finishes the move.
import os

DIR = "state"
TAPS = "state/taps"  # the setup gesture's count of quick visits (taps.py)
COMMISSION = "state/commission"  # a provisioning to confirm (setupmode.py, tools/provision.py)
CLOCK = "state/clock"  # the last verified wall time, the clock's floor (clock.py)
DNS = "state/dns"  # "<host> <ip>": the last answer, for a dead resolver (wifi.py)
SV = "state/sv"  # the settings version applied (uplink.py)
LTE_LAST = "state/lte_last"  # when the last LTE-M report was made (uplink.py)
NOWDT = "state/nowdt"  # a developer's request: no watchdog for one boot (watchdog.py)
_OLD = ("taps", "commission", "clock", "dns", "sv", "lte_last", "nowdt")


def ready():
    """DIR exists, and every state file an older firmware left at the root is in it. A root
    copy is the newer one (an older version ran after this one wrote DIR's): it replaces it."""
    try:
        os.mkdir(DIR)
    except OSError:
        pass  # there already: the usual case
    try:
        import otaboot

        old = _OLD + ("ota.json",) if otaboot.STATE == DIR + "/ota.json" else _OLD
        found = [e[0] for e in os.ilistdir() if e[0] in old or e[0][-4:] == ".tmp"]
    except Exception as e:  # noqa: BLE001 - no move this boot: the files stay where they are
        print("state: cannot look at the root:", e)
        return
    for n in found:
        try:
            if n in old:
                _move(n)
            elif n[:-4] in old:
                os.remove(n)  # an older firmware's write cut before its rename: not state
        except OSError as e:
            print("state: cannot move", n, e)


def _move(n):
    """Copy, then remove the root's: cut before the remove, the next boot copies it again. Not
    os.rename: from one directory to another LittleFS needs two commits, and a cut between them
    leaves a pending move that hides the root's next file (main.py, a module, site.json) from
    every read until something is written."""
    with open(n, "rb") as f:
        data = f.read()
    with open(DIR + "/" + n, "wb") as f:  # committed at close
        f.write(data)
    os.remove(n)
