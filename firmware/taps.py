# SPDX-License-Identifier: MIT
# taps.py: the setup gesture. A bulb in a ceiling socket has one input, the wall switch, and
# every switch-on is a boot. TAPS quick visits in a row (each lit at least ARM_MS and less than
# CLOSE_MS of this firmware's uptime), then a switch-on: that boot runs setup mode instead of
# the uplink. The streak is kept in a tiny file (statefiles.TAPS: the count as ASCII digits)
# because RTC memory is lost with the power. Every visit that reaches ARM_MS writes count + 1;
# a visit that reaches CLOSE_MS writes 0 (a real visit ends the streak). See docs/setup_mode.md.
# It must never count a visit that ended before ARM_MS (a flickering supply's blips end before
# the firmware has booted that far), never let a visit that started its radio extend a streak
# (a brown-out loop on the radio's current surge restarts the bulb at the same point every
# time: after the first quick visit the radio waits for CLOSE_MS, so those visits end the
# streak), never block the boot, and never raise: a flash error means no gesture, not a crash.
import asyncio
import time

import statefiles
from micropython import const

W_GESTURE = const(1)  # K_SETUP sub: why setup mode started
W_UNCONFIGURED = const(2)
TAPS = const(4)  # quick visits before the switch-on that enters setup mode
ARM_MS = const(250)  # a visit this long (uptime) counts: longer than a supply's blip
CLOSE_MS = const(1500)  # a visit this long is a real visit: the streak is over


def _read():
    try:
        with open(statefiles.TAPS) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def _write(n):
    try:
        with open(statefiles.TAPS, "w") as f:
            f.write(str(n))
    except OSError as e:
        print("taps: cannot keep the count:", e)


class Taps:
    def __init__(self):
        self.before = _read()  # quick visits in a row just before this one
        self._closed = asyncio.Event()

    def gesture(self):
        """True when this switch-on completes the gesture."""
        return self.before >= TAPS

    def setup_reason(self, cfg):
        """Why this boot runs setup mode (K_SETUP sub), 0: it does not. Registered at the bench
        (a device key) but no network to report over: setup mode by itself."""
        if self.gesture():
            self.clear()
            return W_GESTURE
        if cfg["device_key"] and cfg["transport"] == "wifi" and not cfg["wifi_ssid"]:
            return W_UNCONFIGURED
        return 0

    def clear(self):
        """Setup mode starts: the streak is used up (a power cut now does not enter again)."""
        self.before = 0
        _write(0)
        self._closed.set()

    async def run(self):
        """The counting task of a normal boot: count this visit at ARM_MS, end the streak at
        CLOSE_MS. Uptime is time.ticks_ms(), which starts at boot."""
        await asyncio.sleep_ms(max(0, time.ticks_diff(ARM_MS, time.ticks_ms())))
        _write(self.before + 1)
        await asyncio.sleep_ms(max(0, time.ticks_diff(CLOSE_MS, time.ticks_ms())))
        _write(0)  # a visit this long is never part of a gesture
        self._closed.set()

    async def settled(self):
        """Return once the radio may start: at once after a normal visit; after CLOSE_MS when
        the last visit was quick (a gesture may be under way)."""
        if self.before:
            await self._closed.wait()

    async def then(self, link, lamp):
        """A normal boot: count this visit, start the uplink once the radio may start, and
        confirm a fresh provisioning (setupmode.confirm) when one is pending."""
        asyncio.create_task(self.run())
        await self.settled()
        import os

        try:
            os.stat(statefiles.COMMISSION)
            import setupmode

            asyncio.create_task(setupmode.confirm(link, lamp))
        except OSError:
            pass  # nothing to confirm: the usual case
        await link.run()
