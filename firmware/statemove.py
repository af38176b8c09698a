# SPDX-License-Identifier: MIT
# statemove.py: run once per boot by main, after the lamp and before anything reads a state
# file, then dropped from the heap. It creates statefiles.DIR if it is missing and moves into
# it the state files an older firmware kept at the root: what the first boot after an update
# over the air from one finds. ota.json is the loader's (otaboot.STATE): an older loader keeps
# it at the root, and so does every version it runs, so it moves only when the running loader
# reads it from DIR. See docs/firmware.md "Files on the bulb".
# It must never raise, never block the boot, and never delete or overwrite a state file but
# with the same file's newer copy from the root; a power cut anywhere leaves each file whole,
# at the root or in DIR (or both), and the next boot finishes the move.
import os

from statefiles import DIR

_OLD = ("taps", "commission", "clock", "dns", "sv", "lte_last", "nowdt")


def run():
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
        print("statemove: cannot look at the root:", e)
        return
    for n in found:
        try:
            if n in old:
                _move(n)
            elif n[:-4] in old:
                os.remove(n)  # an older firmware's write cut before its rename: not state
        except Exception as e:  # noqa: BLE001 - this one stays where it is, whole
            print("statemove: cannot move", n, e)


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
