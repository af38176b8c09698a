# SPDX-License-Identifier: MIT
# watchdog.py: the one hardware watchdog. main starts it with the settings' wdt_ms and the
# event loop feeds it (main._watch), so a hung loop resets the bulb. A call that blocks the whole
# VM for a bounded time longer than wdt_ms (lwIP's getaddrinfo: up to about 14 s with a dead
# resolver) runs inside stretch(ms): the timeout is raised to cover that bound, then put back.
# The ESP32's watchdog cannot be stopped, also not at the REPL: a developer who interrupts
# main.py has wdt_ms before the bulb resets. The file state/nowdt (docs/firmware.md "Stopping
# main.py") makes the next boot start none; it is removed at that boot, so it lasts one boot.
# It must never feed from a timer or an interrupt (that would hide a hung loop), and never
# start a watchdog that main did not start.
import machine

_ms = 0  # the running watchdog's timeout; 0: none started


class _Off:
    def feed(self):
        pass


def start(ms):
    """Start the watchdog (main, once the settings are read); returns the machine.WDT, or a
    stand-in that feeds nothing when a developer asked for one boot without it."""
    global _ms
    import os

    import statefiles

    try:
        os.remove(statefiles.NOWDT)
    except OSError:
        _ms = ms
        return machine.WDT(timeout=ms)
    print("watchdog:", statefiles.NOWDT, "found: no watchdog this boot (until the next reset)")
    return _Off()


class stretch:  # used as `with watchdog.stretch(ms):`, like a function
    """`with stretch(ms):` the watchdog fires only after ms without a feed (at least its
    usual timeout); afterwards it is back at the usual timeout, freshly fed. machine.WDT() with
    a timeout reconfigures the one task watchdog (ports/esp32/machine_wdt.c)."""

    def __init__(self, ms):
        self._ms = ms

    def __enter__(self):
        if _ms:
            machine.WDT(timeout=max(_ms, self._ms)).feed()
        return self

    def __exit__(self, *exc):
        if _ms:
            machine.WDT(timeout=_ms).feed()
