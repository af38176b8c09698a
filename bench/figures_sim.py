# SPDX-License-Identifier: MIT
"""Figures of the simulation itself (docs/simulation.md): how fast virtual time runs the real
firmware, what a simulated power-on costs, and how much heap the shims take from the firmware.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.run import figure
from sim.bulb import SHIM_HEAP_BYTES, Bulb, micropython_bin, run_snippet

SITE = {"brightness": 0.8}
HOURS = 6


def _lit_for(tmp: Path, name: str, seconds: float, **kw: object) -> float:
    """Real seconds the real firmware takes to stay lit for `seconds` of bulb time."""
    b = Bulb(tmp / name, site=SITE, **kw)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    b.power_on(stop_at_s=seconds, timeout=600)
    return time.perf_counter() - t0


def _boot_ms(tmp: Path, n: int = 5) -> tuple[float, float]:
    """(median real ms from power_on() to the shim's power_on trace, bare micropython start)."""
    fw = tmp / "empty"
    fw.mkdir()
    (fw / "main.py").write_text("")
    sim, bare = [], []
    for i in range(n):
        b = Bulb(tmp / f"boot{i}", firmware_dir=fw, extra={"exit_at_end": True})
        t0 = time.perf_counter()
        b.power_on(timeout=60)
        sim.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        subprocess.run([micropython_bin(), "-c", "pass"], check=True)
        bare.append((time.perf_counter() - t0) * 1000)
    return sorted(sim)[n // 2], sorted(bare)[n // 2]


def _shim_heap(tmp: Path) -> int:
    out = run_snippet(
        "import gc\ngc.collect()\na = gc.mem_alloc()\n"
        "import machine, network, os, select, socket, time\n"
        "gc.collect()\nprint(gc.mem_alloc())\n", tmp / "heap")
    return int(out.split()[-1])


def figures() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as d:
        tmp = Path(d)
        virtual = _lit_for(tmp, "virtual", HOURS * 3600)
        real_s = 2.0
        real = _lit_for(tmp, "real", real_s, time_mode="real")
        boot, bare = _boot_ms(tmp)
        heap = _shim_heap(tmp)
    return [
        figure("sim_virtual_speedup", round(HOURS * 3600 / virtual, 1), "x",
               round(real_s / real, 3),
               f"bulb seconds per real second, the real firmware lit for {HOURS} h in virtual "
               "time; baseline: the same in real time (boot included)"),
        figure("sim_power_on_real_ms", round(boot, 1), "ms", round(bare, 1),
               "real time of one simulated power-on with an empty main.py (process, shims, "
               "runner); baseline: `micropython -c pass`"),
        figure("sim_shim_heap_bytes", heap, "bytes", SHIM_HEAP_BYTES,
               "heap the shims hold with machine, network, os, select, socket and time imported; "
               "baseline: what the runner adds to -X heapsize for them (ratio must stay <= 1)"),
    ]
