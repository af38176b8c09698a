# SPDX-License-Identifier: MIT
# time shim: the bulb clock of docs/simulation.md (real, scaled or virtual), over _sim.
# ticks_* count bulb time since power-on; time() is the RTC: seconds since 2000-01-01, which a
# bulb without a battery starts at on every power-on. It must never read the host's wall clock.
import _sim
from micropython import const

_PERIOD = const(1 << 30)
_EPOCH = const(946684800)  # 2000-01-01 in Unix seconds: the ESP32 port's epoch


def ticks_ms():
    return _sim.now_us() // 1000 & (_PERIOD - 1)


def ticks_us():
    return _sim.now_us() & (_PERIOD - 1)


def ticks_cpu():
    return ticks_us()


def ticks_add(t, delta):
    return (t + delta) & (_PERIOD - 1)


def ticks_diff(a, b):
    return ((a - b + _PERIOD // 2) & (_PERIOD - 1)) - _PERIOD // 2


def sleep_ms(ms):
    if ms > 0:
        _sim.wait(ms)


def sleep_us(us):
    if us > 0:
        _sim.wait(us / 1000)


def sleep(s):
    if s > 0:
        _sim.wait(s * 1000)


def time():
    return _sim.rtc_base + _sim.now_us() // 1000000


def time_ns():
    return (_sim.rtc_base * 1000000 + _sim.now_us()) * 1000


def gmtime(secs=None):
    if secs is None:
        secs = time()
    return _sim._rt.gmtime(secs + _EPOCH)[:8]


localtime = gmtime


def mktime(t):
    return _sim._rt.mktime(t) - _EPOCH
