# SPDX-License-Identifier: MIT
"""The server's wall clock, injectable: real, scaled (the demo runs days in minutes) or fixed.

MIMAMORI_CLOCK (or --clock): "real" (default), "scaled:F" (F times real time, starting from
now), "scaled:F@T0" (F times real time, starting at Unix second T0), "fixed:T" (always T).
A clock is a callable returning Unix seconds as a float, like time.time.
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


def ms(clock: Clock) -> int:
    return int(clock() * 1000)
