# SPDX-License-Identifier: MIT
# otaboot.py: the loader's half of firmware updates (docs/ota.md), run by boot.py before any
# main.py. It owns the update state file, state/ota.json, and picks the version this boot runs:
# the files at the filesystem root as flashed (version 0), or a downloaded one in v/<version>/.
# A version still on trial goes back to the previous one by itself when it failed
# safe_mode_after boots in a row (RTC memory, safemode.py) or has not reached the server in
# TRIAL_BOOTS boots. It is never updated over the air (it stays as flashed), must never raise
# (any doubt: the root's main.py runs), and writes nothing but ota.json, by one atomic rename.
# An older loader keeps ota.json at the root, also for the versions it runs after an update:
# the firmware names the file otaboot.STATE, the running loader's, never by itself.
#
# ota.json: {"v": version to run (0: the root), "prev": the one to go back to, "trial": boots
# started on v since the switch (-1: confirmed, it reached the server), "after": the
# safe_mode_after that counts as a crash loop, "bad": last version rolled back or refused,
# "log": [[O_*, aux, version], ...] waiting to be written to the journal (ota.report)}
import os
import sys

from micropython import const

STATE = "state/ota.json"  # in statefiles.DIR, which statemove.py creates at boot
_TMP = "state/ota.json.tmp"
VDIR = "v"
TRIAL_BOOTS = const(6)  # boots a new version has to reach the server once


def vdir(v):
    return VDIR + "/" + str(v)


def running():
    """The version this boot runs: v/<n> on sys.path (run() put it there), else 0."""
    pre = VDIR + "/"
    for p in sys.path:
        if p.startswith(pre):
            try:
                return int(p[len(pre) :])
            except ValueError:
                pass
    return 0


def load():
    """The state; a missing or unreadable file is version 0 (the root, as flashed)."""
    try:
        import json

        with open(STATE) as f:
            st = json.load(f)
        if isinstance(st, dict) and isinstance(st.get("v"), int):
            return st
    except (OSError, ValueError):
        pass
    return {"v": 0, "prev": 0, "trial": -1}


def save(st):
    """Write the state: a small file, then one rename (atomic on LittleFS): a power cut leaves
    the old state or the new one, never a mix."""
    import json

    with open(_TMP, "w") as f:
        json.dump(st, f)
    os.rename(_TMP, STATE)


def complete(v):
    """True when v/<v> holds a manifest and a main.py (ota.py wrote them only verified)."""
    for name in ("manifest.json", "main.py"):
        try:
            os.stat(vdir(v) + "/" + name)
        except OSError:
            return False
    return True


def back(st, why):
    """Go back to the previous version (one atomic write); the reason waits in the log."""
    from record import O_ROLLBACK

    log = st.get("log") or []
    log.append([O_ROLLBACK, why, st["v"]])
    st = {"v": st.get("prev", 0), "prev": 0, "trial": -1, "bad": st["v"], "log": log[-8:]}
    save(st)
    return st


def choose():
    """The version this boot runs (0: the root), after counting a trial boot or going back."""
    st = load()
    if not st["v"]:
        return 0  # as flashed: nothing more to read or import
    from record import U_BROKEN, U_CRASH, U_NO_SERVER

    if st.get("trial", -1) >= 0:
        import safemode

        if safemode.failed_before() >= st.get("after", 3):
            st = back(st, U_CRASH)
            safemode.clear()  # the previous version starts with a clean count, not in safe mode
        elif st["trial"] >= TRIAL_BOOTS:
            st = back(st, U_NO_SERVER)
        else:
            st["trial"] += 1
            save(st)
    while st["v"] and not complete(st["v"]):
        st = back(st, U_BROKEN)
    return st["v"]


def _forget(keep):
    for m in list(sys.modules):
        if m not in keep:
            del sys.modules[m]


def run(here):
    """Run the chosen version's main.py (never returns while it runs); return at once for the
    root. here: the directory boot.py ran from (its entry in sys.path)."""
    keep = set(sys.modules)
    keep.add("otaboot")
    try:
        v = choose()
    except Exception as e:  # noqa: BLE001 - whatever is wrong, the root's main.py runs
        sys.print_exception(e)
        v = 0
    _forget(keep)  # record, safemode: the chosen version imports its own
    while v:
        d = vdir(v)
        i = sys.path.index(here) if here in sys.path else 0
        sys.path.insert(i, d)
        try:
            with open(d + "/main.py") as f:
                code = compile(f.read(), d + "/main.py", "exec")
            exec(code, {"__name__": "__main__", "__file__": d + "/main.py"})  # noqa: S102
            return
        except Exception as e:  # noqa: BLE001 - main.py guards itself: this version is broken
            sys.print_exception(e)
            sys.path.remove(d)
            _forget(keep)
            from record import U_BROKEN

            st = back(load(), U_BROKEN)
            _forget(keep)
            v = st["v"]  # the previous version, in this same boot: the lamp stays lit
