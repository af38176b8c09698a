# SPDX-License-Identifier: MIT
"""Waiting in tests: for a condition, never for a fixed time.

    mail = wait_for(lambda: inbox.of(AIKO, "alert"), "Aiko's alert")   # its truthy value

The limit is generous on purpose (a slow or busy machine only waits longer); reaching it fails
the test with what was awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(pred: Callable[[], T], what: str, timeout: float = 60.0, poll: float = 0.05) -> T:
    """Call pred until it returns something truthy and return that; AssertionError after
    timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(poll)
