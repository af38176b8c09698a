# SPDX-License-Identifier: MIT
# main.py: the wiring, in this order: light, boot history, settings, watchdog, journal, talk.
# The lamp is taken over before anything that can fail or wait is even imported. It must never
# leave the room dark: an exception in any later step puts the lamp at its level and then
#  - in a normal boot: counts the boot as failed (RTC memory) and resets, to try again;
#  - in safe mode (safe_mode_after failed boots in a row), or when the boot history itself is
#    broken: stays lit, feeding the watchdog, until the power goes or safe_mode_s have passed.
# A hung bulb stops feeding the watchdog (fed only by the running event loop) and is reset.
# Safe mode runs the lamp and the journal, never the radio. It ends with a power cut (the wall
# switch clears RTC memory) or, after safe_mode_s of stable running, with one normal retry.
# See docs/firmware.md.
import lamp

light = lamp.Lamp()  # full duty, as the pulled-up driver already shows: no dip

import asyncio
import gc
import sys
import time

import machine
from micropython import const
from record import F_CRASH, F_SAFE_MODE, F_WATCHDOG

# Boot steps: F_CRASH aux and safemode crash_step say which one failed.
S_LAMP = const(0)
S_BOOTS = const(1)
S_CONFIG = const(2)
S_JOURNAL = const(3)
S_UPLINK = const(4)
S_RUN = const(5)
_AFTER = const(3)  # safe_mode_after until the settings are read
_IDLE_MS = const(1000)

step = S_LAMP
boots = None  # safemode.Boots
cfg = None  # the settings (config.load())
wdt = None  # machine.WDT, started once the settings give its timeout
faults = []  # type: list  # (record.F_*, aux) found before the journal could record them
journal = None  # set by the journal step


def feed():
    """Feed the watchdog, once it runs: _idle calls it while the bulb waits, lit, for the power
    to go. (The event loop's _watch task feeds it otherwise.)"""
    if wdt:
        wdt.feed()


def _history():
    import safemode

    b = safemode.Boots(_AFTER)
    if b.cause == machine.WDT_RESET:
        faults.append((F_WATCHDOG, 0))
    if b.crash_step is not None:
        faults.append((F_CRASH, b.crash_step))
    return b


def _settings(b):
    import config

    c, got = config.load()
    del sys.modules["config"]  # about 6 KB of heap: only setup mode needs it again, and imports it
    faults.extend(got)
    light.configure(c)
    b.after = c["safe_mode_after"]
    if b.safe:
        print(f"main: {b.failed} failed boots in a row: safe mode (light and journal only)")
        faults.append((F_SAFE_MODE, b.failed))
    return c


def _need(*names):
    """Import modules one at a time, feeding the watchdog between them: reading a module from
    flash takes seconds on an emulated ESP32 (docs/firmware.md), and the watchdog is running.
    The garbage is collected before each: a module's code stays for the boot, so it goes
    into the holes what came before left, not above the garbage, which would leave holes."""
    for name in names:
        feed()
        gc.collect()
        __import__(name)
    feed()


async def _guard(at, coro):
    """Run a task; an exception in it is a crash of step `at`."""
    global step
    try:
        await coro
    except Exception as e:  # noqa: BLE001 - whatever failed, the lamp stays lit
        step = at
        _crash(e)


async def _watch(b, c, dog):
    """Feed the watchdog while the event loop runs; end a failure streak or a safe mode."""
    start = time.ticks_ms()
    stable = False
    while True:
        dog.feed()
        up = time.ticks_diff(time.ticks_ms(), start)
        if b.safe and up >= c["safe_mode_s"] * 1000:
            print(f"main: safe mode ran {c['safe_mode_s']} s: retrying a normal boot")
            b.retry()
        if not stable and not b.safe and up >= c["stable_s"] * 1000:
            stable = True
            b.stable()
        await asyncio.sleep_ms(c["wdt_ms"] // 4)


async def _run(b, c, dog):
    global step, journal
    tasks = [asyncio.create_task(_guard(S_RUN, light.fade_to()))]
    await asyncio.sleep_ms(0)  # the fade starts before the journal scans flash
    step = S_JOURNAL
    _need("crcfix", "journal", "alive")
    import alive
    from journal import open as open_journal
    from record import F_JOURNAL, K_FAULT, K_POWER_ON

    journal = j = open_journal(feed=feed)  # docs/journal.md: headers, then one sector
    j.append(K_POWER_ON, b.cause, b.why)
    if j.skipped:
        j.append(K_FAULT, F_JOURNAL, j.skipped)
    for code, aux in faults:
        j.append(K_FAULT, code, aux)
    tasks.append(asyncio.create_task(_guard(S_RUN, alive.start(j, c))))
    if not b.safe:
        step = S_UPLINK
        _need("taps")
        import taps

        t = taps.Taps()  # the setup gesture (docs/setup_mode.md)
        why = t.setup_reason(c)
        if why:
            _need("setupmode")
            import setupmode

            tasks.append(asyncio.create_task(_guard(S_RUN, setupmode.run(c, j, light, why))))
        else:
            _need("protocol", "uplink")
            import uplink

            link = uplink.Uplink(c, journal, light)
            tasks.append(asyncio.create_task(_guard(S_RUN, t.then(link, light))))
    step = S_RUN
    await _watch(b, c, dog)


def _idle():
    """Stay lit and keep the watchdog fed until the power goes (or it is time to retry)."""
    start = time.ticks_ms()
    while True:
        feed()
        if boots and cfg and time.ticks_diff(time.ticks_ms(), start) >= cfg["safe_mode_s"] * 1000:
            boots.retry()
        time.sleep_ms(_IDLE_MS)


def _crash(e):
    print(f"main: step {step} failed; the lamp stays lit")
    sys.print_exception(e)
    try:
        light.show()
    except Exception as e2:  # noqa: BLE001 - reset or idle comes next, whatever this was
        sys.print_exception(e2)
    if boots and not boots.safe:
        boots.crashed(step)
        machine.reset()
    _idle()


def main():
    global step, boots, cfg, wdt
    step = S_BOOTS
    boots = b = _history()
    step = S_CONFIG
    cfg = c = _settings(b)
    __import__("statemove").run()  # state/ before any state file is read (watchdog: nowdt)
    del sys.modules["statemove"]  # done for this boot: its heap back
    import watchdog

    wdt = dog = watchdog.start(c["wdt_ms"])
    step = S_RUN
    asyncio.run(_run(b, c, dog))


try:
    main()
except Exception as exc:  # noqa: BLE001 - whatever failed, the lamp stays lit
    _crash(exc)
