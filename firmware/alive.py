# SPDX-License-Identifier: MIT
# alive.py: what the journal learns about a visit while the lamp is lit. ALIVE marks on a schedule
# that bounds the error on the OFF time (one every alive_step_s up to alive_until_s, then each
# alive_growth times the last, at most alive_max_s apart: within 10 s for visits up to 2 min and
# within 10 % of the visit after that), the erase-ahead of the journal's next sector in the idle
# time after each mark, and an exact OFF record on the mains-sense pin's falling edge (a dying
# gasp: one flash program). It must never erase flash from the interrupt, never block the event
# loop for more than one erase, and never let a flash error stop the light.
import asyncio

import record


def next_mark_ms(t_ms, step_ms, until_ms, growth, max_ms):
    """When the mark after the one at t_ms is due (bulb ms since power-on). Pure."""
    if t_ms + step_ms <= until_ms:
        return t_ms + step_ms
    return t_ms + min(max(int(t_ms * (growth - 1)), step_ms), max_ms)


def schedule(cfg):
    """(step_ms, until_ms, growth, max_ms) from the settings."""
    return (cfg.get("alive_step_s", 10) * 1000, cfg.get("alive_until_s", 120) * 1000,
            cfg.get("alive_growth", 1.1), cfg.get("alive_max_s", 1800) * 1000)


async def marks(journal, cfg):
    """The alive-mark task: prepare the journal's next sector, then mark on schedule."""
    step, until, growth, most = schedule(cfg)
    await asyncio.sleep_ms(0)
    _prepare(journal)
    t, last = step, 0
    while True:
        # relative sleeps (ticks wrap; a lamp may stay lit for days): a mark is late by the
        # flash work of the ones before it, a few ms, and records its own up_ms anyway
        await asyncio.sleep_ms(t - last)
        journal.append(record.K_ALIVE)
        _prepare(journal)
        last = t
        t = next_mark_ms(t, step, until, growth, most)


def _prepare(journal):
    try:
        journal.prepare()
    except OSError as e:  # a flash fault: keep the light and the marks going
        print("alive: erase ahead failed:", e)


class Gasp:
    """The mains-sense pin: high while mains is present; its fall is the OFF record."""

    def __init__(self, journal, pin_no):
        from machine import Pin

        self._j = journal
        self.done = False
        self._pin = Pin(pin_no, Pin.IN)
        # both edges, checked against the level: a glitch that rises again records nothing
        self._pin.irq(self._edge, Pin.IRQ_FALLING | Pin.IRQ_RISING)

    def _edge(self, pin):
        if self.done or pin.value():
            return
        self.done = True
        try:
            self._j.append(record.K_OFF)
        except OSError as e:
            print("alive: OFF record failed:", e)


def start(journal, cfg):
    """Wire the marks task (returned: the caller guards it) and the mains-sense pin."""
    if cfg.get("mains_sense_pin") is not None:
        Gasp(journal, cfg["mains_sense_pin"])
    return marks(journal, cfg)
