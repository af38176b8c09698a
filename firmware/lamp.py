# SPDX-License-Identifier: MIT
# The lamp: PWM on the LED driver's dimming input, gamma-corrected levels, fades and the status
# patterns an installer reads (setup mode, provisioning result, signal quality).
# It must never leave the room dark: the driver's input is pulled up, so the lamp is at full
# before any code runs; the take-over writes full duty (never less), and every fade or pattern
# ends with the lamp back at its level, even when it is cancelled or fails half-way.
#
# Levels are perceived brightness 0.0..1.0; duty = level ** gamma * 65535. `level` is the
# configured maximum brightness: what the lamp shows whenever no pattern runs. The LEDC keeps
# only the top bits of duty_u16 (11 at 20 kHz: duty_u16 >> 5), so a lit level never writes
# less than one step of that resolution (`floor`): a dim lamp or a dip is never raw duty 0.
import asyncio

from machine import PWM, Pin
from micropython import const

PIN = const(4)  # the lamp pin of the reference bulb; config.json "lamp_pin" (same value)
FREQ = const(20000)  # flicker-free and inaudible; config.json "pwm_freq"
FULL = const(65535)
_STEP_MS = const(20)  # fade update period: 50 steps a second look smooth
_DIP = 0.15  # a blink dips to this fraction of the level (dim, never 0)


def ledc_bits(freq):
    """Duty resolution of the ESP32's LEDC at freq: log2 of the 80 MHz APB clock over the
    frequency (1 MHz REF_TICK below 10 Hz), at most 16 (docs/simulation.md, "LEDC")."""
    div = ((1000000 if freq < 10 else 80000000) + freq // 2) // freq
    bits = 0
    while div > 1:
        div >>= 1
        bits += 1
    return min(bits, 16)


class Lamp:
    def __init__(self, pin=PIN, freq=FREQ):
        # Take over at full: the level the pulled-up driver already shows. Passing duty_u16 to
        # the constructor matters: PWM(pin) alone starts at a default duty (a visible dip).
        self._pin = pin
        self._freq = freq
        self._pwm = PWM(Pin(pin), freq=freq, duty_u16=FULL)
        self._duty = FULL
        self.floor = 1 << (16 - ledc_bits(freq))  # the least duty_u16 that is not raw 0
        self._now = 1.0  # perceived level shown now
        self.level = 1.0
        self.gamma = 2.8
        self.fade_ms = 800
        self._lock = asyncio.Lock()

    def duty_of(self, level):
        if level <= 0:
            return 0
        if level >= 1:
            return FULL
        return max(self.floor, int(level**self.gamma * FULL + 0.5))

    def configure(self, cfg):
        """Apply the settings that shape the light; the level is reached by the next fade."""
        self.gamma = cfg["gamma"]
        self.fade_ms = cfg["fade_ms"]
        self.level = cfg["brightness"]
        if cfg["lamp_pin"] != self._pin:
            # Light the new pin at the current duty before releasing the old one.
            old = self._pwm
            self._pin = cfg["lamp_pin"]
            self._pwm = PWM(Pin(self._pin), freq=self._freq, duty_u16=self._duty)
            old.deinit()
        if cfg["pwm_freq"] != self._freq:
            self._freq = cfg["pwm_freq"]
            self.floor = 1 << (16 - ledc_bits(self._freq))
            self._pwm.freq(self._freq)
            self._pwm.duty_u16(self._duty)

    def _show(self, level):
        self._now = level
        duty = self.duty_of(level)
        if duty != self._duty:
            self._duty = duty
            self._pwm.duty_u16(duty)

    def show(self):
        """Put the lamp at its level at once (after a failure: whatever ran is abandoned)."""
        self._show(self.level)

    def at_level(self):
        return self._duty == self.duty_of(self.level)

    async def _fade(self, level, ms):
        start = self._now
        n = max(1, ms // _STEP_MS)
        for i in range(1, n):
            self._show(start + (level - start) * i / n)
            await asyncio.sleep_ms(_STEP_MS)
        self._show(level)

    async def fade_to(self, level=None, ms=None):
        """Fade to level (default: the configured level) and make it the lamp's level."""
        if level is not None:
            self.level = min(1.0, max(0.05, level))
        async with self._lock:
            try:
                await self._fade(self.level, self.fade_ms if ms is None else ms)
            finally:
                self.show()

    async def _blinks(self, n, on_ms, off_ms):
        low = self.level * _DIP
        for _ in range(n):
            self._show(low)
            await asyncio.sleep_ms(off_ms)
            self._show(self.level)
            await asyncio.sleep_ms(on_ms)

    async def blink(self, n, on_ms=300, off_ms=300):
        """n dips from the level; the lamp is back at its level afterwards, whatever happens."""
        async with self._lock:
            try:
                await self._blinks(n, on_ms, off_ms)
            finally:
                self.show()

    async def setup_mode(self):
        """Breathe slowly until cancelled (the setup portal cancels it when it closes)."""
        async with self._lock:
            try:
                while True:
                    await self._fade(self.level * _DIP, 1000)
                    await self._fade(self.level, 1000)
            finally:
                self.show()

    async def result(self, ok):
        """Provisioning result: two slow dips when it worked, six fast ones when it failed."""
        if ok:
            await self.blink(2, 600, 600)
        else:
            await self.blink(6, 120, 120)

    async def signal(self, dbm):
        """Signal quality as 1..4 dips after a pause (quality.LEVELS, the scale every screen
        uses); no signal figure at all is one long dip."""
        import quality

        await asyncio.sleep_ms(1000)
        n = quality.dips(dbm)
        if n:
            await self.blink(n, 400, 400)
        else:
            await self.blink(1, 0, 2000)
