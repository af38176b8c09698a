# SPDX-License-Identifier: MIT
"""Setup-gesture figures: what the brown-out protection of the gesture costs (firmware/taps.py).

After a quick visit (a possible gesture under way) the radio waits until the visit is long
enough not to count (CLOSE_MS); after a normal visit it starts at once. Bulb time (virtual),
median of RUNS bulbs: the firmware's own figure, not the host's speed.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.run import figure
from sim.bulb import Bulb, wifi_net

RUNS = 5
SITE = {"server": "http://127.0.0.1:9", "device_id": "bench", "device_key": "ab" * 32,
        "wifi_ssid": "home", "wifi_password": "pw"}


def _radio_start_ms(b: Bulb) -> int:
    """Bulb ms from power-on to the station interface coming up, in the last boot."""
    ups = [e for e in b.events("radio", -1) if e.get("if") == "sta" and e.get("state") == "up"]
    return int(ups[0]["t"])


def _run(tmp: Path, n: int) -> tuple[int, int]:
    b = Bulb(tmp / f"b{n}", site=SITE, wifi=[wifi_net("home", "pw")])
    b.power_on(stop_at_s=3)
    b.power_on(stop_at_s=3)
    normal = _radio_start_ms(b)
    b.power_on(stop_at_s=0.8)  # a quick visit
    b.power_on(stop_at_s=3)
    return normal, _radio_start_ms(b)


def figures() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-setup-") as d:
        runs = [_run(Path(d), n) for n in range(RUNS)]
    normal = statistics.median(r[0] for r in runs)
    held = statistics.median(r[1] for r in runs)
    return [
        figure("radio_start_after_quick_visit_ms", held, "ms", normal,
               "power-on to the Wi-Fi radio after a quick visit (held until the visit cannot "
               "be part of the setup gesture, so a brown-out loop on the radio never builds "
               f"one); baseline: after a normal visit; bulb time, median of {RUNS}"),
    ]
