# SPDX-License-Identifier: MIT
# Boot history in RTC memory: how many boots in a row failed, so a crash loop ends in safe mode
# (light and journal only, no radio). RTC memory survives machine.reset() and watchdog resets
# and is lost when the power goes, so the wall switch, which cuts power on every visit, never
# counts as a failure, and a power cycle always leaves safe mode.
# It must never reset the bulb by itself except through retry() and restart().
#
# Counting is pessimistic: a boot counts as failed from its start until it has run stable_s
# seconds (stable()). A crash or a watchdog reset before that leaves it counted. A deliberate
# reset goes through safemode.restart() (any module may call it), which clears the count
# first. In safe mode, after safe_mode_s of running, retry() resets into one normal boot: if
# that one fails too, the next boot is in safe mode again.
#
# RTC memory layout (owned by this module; 8 bytes, the rest is free for others):
#   0  2 bytes  b"MB" magic: anything else (power-on garbage, another layout) reads as 0 failed
#   2  u8       layout version, 1
#   3  u8       failed: boots in a row that did not reach stable_s, this one included
#   4  u8       crash step of the previous boot (main.S_*), 0xFF: it did not crash
#   5  u8       why the firmware reset the bulb itself (record.R_*), written just before
#               machine.reset() and cleared at the next boot; RTC memory, not a file, so a
#               switch-off between the two can never leave a stale reason behind
#   6  2 bytes  reserved, 0
import machine
from micropython import const

_NO_STEP = const(0xFF)
_R_CRASH = const(1)  # record.R_* (this module stays free of imports on the boot path)
_R_RETRY = const(2)
_R_RESTART = const(3)
_R_PANIC = const(4)


class Boots:
    def __init__(self, after=3):
        self.cause = machine.reset_cause()
        self.after = after  # safe mode once this many boots in a row failed
        self._rtc = machine.RTC()
        self.failed = 0  # boots in a row before this one that failed
        self.crash_step = None  # main.S_* where the previous boot crashed, if it did
        self.why = 0  # record.R_*: why this boot happened when it was not a power-on
        mem = self._rtc.memory()
        if self.cause != machine.PWRON_RESET and len(mem) >= 8 and mem[0:3] == b"MB\x01":
            self.failed = mem[3]
            if mem[4] != _NO_STEP:
                self.crash_step = mem[4]
            self.why = mem[5]
        if self.cause == machine.HARD_RESET and not self.why:
            self.why = _R_PANIC  # nobody here asked for it
        self._write(self.failed + 1, _NO_STEP)

    @property
    def safe(self):
        return self.failed >= self.after

    def _write(self, failed, step, why=0):
        mem = bytearray(self._rtc.memory())
        if len(mem) < 8:
            mem = bytearray(8)
        mem[0:6] = bytes((0x4D, 0x42, 1, min(failed, 255), step, why))
        self._rtc.memory(mem)

    def stable(self):
        """This boot ran long enough: the failure streak is over."""
        self._write(0, _NO_STEP)

    def crashed(self, step):
        """This boot is ending in an exception at step; the next boot records it."""
        self._write(self.failed + 1, step, _R_CRASH)

    def retry(self):
        """Leave safe mode for one normal boot (after safe_mode_s of stable running)."""
        self._write(self.after - 1, _NO_STEP, _R_RETRY)
        machine.reset()


def failed_before():
    """Boots in a row that failed before this one (the count Boots() will read), without
    writing anything: the OTA loader (otaboot.py) reads it before main.py runs."""
    if machine.reset_cause() == machine.PWRON_RESET:
        return 0
    mem = machine.RTC().memory()
    return mem[3] if len(mem) >= 8 and mem[0:3] == b"MB\x01" else 0


def clear():
    """End a failure streak without a reset (the loader, after going back to the previous
    version: that one gets a fresh count)."""
    rtc = machine.RTC()
    mem = bytearray(rtc.memory())
    if len(mem) < 8:
        mem = bytearray(8)
    mem[0:6] = b"MB\x01\x00\xff\x03"  # _R_RESTART
    rtc.memory(mem)


def restart():
    """A deliberate reset (new settings, provisioning done): not a failure. Any module may call
    it; a bare machine.reset() before stable_s would count as a failed boot."""
    clear()
    machine.reset()
