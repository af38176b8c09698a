# SPDX-License-Identifier: MIT
"""The server's wall clock, injectable: real, scaled (the demo runs days in minutes) or fixed;
and the server's one time unit.

MIMAMORI_CLOCK (or --clock): "real" (default), "scaled:F" (F times real time, starting from
now), "scaled:F@T0" (F times real time, starting at Unix second T0), "fixed:T" (always T).
A clock is a callable returning Unix seconds as a float, like time.time.

The server's time is integer milliseconds since the epoch (the store, the API and the bulb's
protocol, the alert engine and what it keeps), durations too: SECOND_MS ... DAY_MS below.
What still speaks seconds does so at a boundary and converts here, never by hand
(tests/test_time_units.py holds the rule): the clock itself and what the outside world counts
in seconds (datetime and time zones, socket timeouts, HTTP headers and cookies, the bulb's
settings named *_s and the anchor records' Unix seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


def parse(spec: str | None) -> Clock:
    spec = (spec or "real").strip()
    try:
        if spec == "real":
            return time.time
        if spec.startswith("fixed:"):
            t = float(spec[6:])
            return lambda: t
        if spec.startswith("scaled:"):
            rest = spec[7:]
            factor_s, _, start_s = rest.partition("@")
            factor = float(factor_s)
            real0 = time.time()
            start = float(start_s) if start_s else real0
            if factor <= 0:
                raise ValueError
            return lambda: start + (time.time() - real0) * factor
    except ValueError:
        pass
    raise ValueError(f"clock {spec!r}: use real, scaled:FACTOR, scaled:FACTOR@UNIX_S or "
                     "fixed:UNIX_S")


SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def ms(clock: Clock) -> int:
    """The clock's time now, in the server's unit."""
    return to_ms(clock())


def now_ms() -> int:
    """The real time now (time.time), in the server's unit."""
    return to_ms(time.time())


def to_ms(s: float) -> int:
    """Seconds (since the epoch, or a duration) in the server's unit (truncated)."""
    return int(s * SECOND_MS)


def to_s(ms: float) -> float:
    """The server's milliseconds as seconds, for what counts in seconds (see above)."""
    return ms / SECOND_MS
