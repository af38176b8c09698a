# SPDX-License-Identifier: MIT
# Runs the unmodified firmware/main.py in MicroPython with the bulb clock paced to a server
# clock that runs `pace` times real time (sim.json "pace", set by the demo). It is a simulation
# aid, not firmware: the bulb's time is virtual (booting, computing and waiting on a socket or
# the UART take no more bulb time than they take real time) and never runs ahead of
# real time x pace since this process started. A wait that would move the clock further
# blocks in real time until the server's clock has caught up.
#
# Why: with plain virtual time a visit of 4 hours ends in a second of real time while the
# server's scaled clock has moved on only an hour and a half, so the bulb's records would
# claim instants the server has not reached yet. With plain scaled time at 5760x (a day in
# 15 s) a short visit is over before the process has imported main.py, and a 15 s socket
# timeout is 2.6 ms of real time. Paced virtual time keeps both clocks agreeing on the scale.
#
# It must never change what the firmware does, only how much real time a bulb wait takes.
import _sim

_PACE = _sim.cfg.get("pace") or 1
_SLICE_MS = 5  # real time slept while ahead; control lines are still read at every slice
_orig = _sim.wait


def _budget_us():
    """How far the bulb clock may move now without running ahead of the server's."""
    return int(_sim._real_us() * _PACE) - _sim.now_us()


def _paced(ms, real=None, soft=None):
    end = None if ms < 0 else _sim.now_us() + int(ms * 1000)
    while True:
        n = _sim.now_us()
        budget = _budget_us()
        if end is not None and end - n <= budget:
            return _orig((end - n) / 1000, real, soft)
        step = max(0, budget)
        got = _orig(step / 1000, real, soft)
        if got or _sim.now_us() < n + step:  # something became ready, or a host event fired
            return got
        _sim._rt.sleep_ms(_SLICE_MS)


def _hold():
    """Before the switch-on: load the firmware's modules (as a real bulb has them in flash,
    compiled), then wait in real time until the host's instant "start_at" (Unix s). The power-on
    and the lamp at full were traced at bulb time 0 and the bulb clock does not move here, so
    the firmware sees a power-on at the scheduled instant instead of one import-time late."""
    for name in _sim.cfg.get("preload") or ():
        __import__(name)
    at = _sim.cfg.get("start_at")
    if at is not None:
        while True:
            left = at - _sim._rt.time()
            if left <= 0:
                break
            _sim._rt.sleep_ms(max(1, min(20, int(left * 1000))))
    _sim._t0 = _sim._rt.time_ns()  # pacing counts from the switch-on


if _sim.mode == "virtual" and _PACE > 1:
    _sim.wait = _paced
_hold()

_main = _sim.cfg.get("firmware", ".") + "/main.py"
with open(_main) as _f:
    _code = compile(_f.read(), _main, "exec")
del _f
exec(_code, {"__name__": "__main__", "__file__": _main})  # noqa: S102 - as _boot.py runs main.py
