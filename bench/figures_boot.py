# SPDX-License-Identifier: MIT
"""Boot figures: how soon the lamp is at its level, that it never dips on the way, and how much
of the ESP32-sized heap the booted firmware uses. Every run is the unmodified firmware in
`micropython -X heapsize=96wK` with the shims, on the real clock (time_mode "real"), so import
and start-up work counts; each figure is the median of a few runs."""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from bench.run import figure
from sim.bulb import FIRMWARE, Bulb

RUNS = 3
SITE = {"brightness": 0.5}  # the shipped fade_ms and gamma; below full, so there is a fade

# Main script for the heap figure: the firmware's own main.py, with a probe added to its event
# loop. Live heap (after a collection) is sampled when the loop starts (imports, settings and
# watchdog done) and every 20 ms for 1.5 s (the fade, the journal, the uplink's start).
# micropython.mem_peak() is not used: it never subtracts what the GC frees, so it overstates.
HEAP_MAIN = """
import asyncio, gc
_run = asyncio.run
_peak = [0]


def _sample():
    gc.collect()
    _peak[0] = max(_peak[0], gc.mem_alloc())


def _with_probe(coro):
    async def probe():
        for _ in range(75):
            _sample()
            await asyncio.sleep_ms(20)
        print("HEAP", _peak[0], gc.mem_alloc() + gc.mem_free())

    async def both():
        _sample()
        asyncio.create_task(probe())
        await coro

    return _run(both())


asyncio.run = _with_probe
exec(open({main!r}).read(), {{"__name__": "__main__"}})
"""

# Baseline of boot_to_level_ms: the bulb clock once every firmware module is imported.
IMPORT_ALL = """
import gc, time
for m in {mods!r}:
    gc.collect()
    try:
        __import__(m)
    except Exception as e:
        print("cannot import", m, repr(e))
print("IMPORTED", time.ticks_ms())
"""


def _level_duty(level: float, gamma: float) -> int:
    return 65535 if level >= 1 else max(1, int(level**gamma * 65535 + 0.5))


def _boot_once(tmp: Path, n: int) -> tuple[int, float, int]:
    """(ms from power-on to the configured level, lowest duty on the way / level duty,
    ms from power-on to the firmware's take-over of the lamp)."""
    b = Bulb(tmp / f"boot{n}", site=SITE, time_mode="real")
    b.power_on(stop_at_s=1.5)
    gamma = json.loads((FIRMWARE / "config.json").read_text())["gamma"]
    level = _level_duty(SITE["brightness"], gamma)
    lamp = b.lamp_duties(1)
    reached = next((t, i) for i, (t, d) in enumerate(lamp) if d == level)
    lowest = min(d for _, d in lamp[: reached[1] + 1])
    return reached[0], lowest / level, lamp[1][0]  # lamp[0]: the pull-up at t=0


def _import_once(tmp: Path, n: int) -> int:
    mods = sorted(p.stem for p in FIRMWARE.glob("*.py") if p.stem != "main")
    b = Bulb(
        tmp / f"import{n}",
        time_mode="scaled",
        factor=1.0,
        main=_script(tmp / f"import{n}.py", IMPORT_ALL.format(mods=mods)),
        extra={"exit_at_end": True},
    )
    b.power_on(timeout=30)
    if "cannot import" in b.stdout:
        raise RuntimeError(f"the import baseline is incomplete:\n{b.stdout}")
    line = next(x for x in b.stdout.splitlines() if x.startswith("IMPORTED"))
    return int(line.split()[1])


def _heap(tmp: Path) -> tuple[int, int]:
    """(peak live bytes during the boot, heap size)."""
    main = _script(tmp / "heap.py", HEAP_MAIN.format(main=str(FIRMWARE / "main.py")))
    b = Bulb(tmp / "heap", site=SITE, time_mode="real", main=main)
    b.power_on(stop_at_s=2.5)
    line = next((x for x in b.stdout.splitlines() if x.startswith("HEAP")), None)
    if line is None:
        raise RuntimeError(f"the heap probe did not report; output:\n{b.stdout}{b.stderr}")
    peak, total = (int(x) for x in line.split()[1:])
    return peak, total


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def figures() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as d:
        tmp = Path(d)
        boots = [_boot_once(tmp, n) for n in range(RUNS)]
        imports = [_import_once(tmp, n) for n in range(RUNS)]
        peak, total = _heap(tmp)
    to_level = statistics.median(t for t, _, _ in boots)
    takeover = statistics.median(t for _, _, t in boots)
    import_ms = statistics.median(imports)
    lowest = min(m for _, m, _ in boots)
    return [
        figure(
            "boot_to_level_ms",
            to_level,
            "ms",
            import_ms,
            f"power-on to brightness {SITE['brightness']} (incl. the shipped fade); "
            "baseline: importing every firmware module; real clock, median of "
            f"{RUNS}",
        ),
        figure(
            "boot_to_takeover_ms",
            takeover,
            "ms",
            import_ms,
            "interpreter start to the firmware's first lamp write (light first: before the "
            "settings and the rest are imported); a real ESP32 adds its cold boot (ROM, "
            "bootloader, MicroPython: about 0.4-0.8 s) before; baseline: importing every "
            "firmware module",
        ),
        figure(
            "lamp_min_level_during_boot",
            round(lowest, 4),
            "ratio",
            1.0,
            "lowest duty from power-on to the configured level / that level; must be 1.0",
        ),
        figure(
            "heap_peak_bytes",
            peak,
            "bytes",
            total,
            "highest live heap (gc.mem_alloc after gc.collect, every 20 ms) from the event "
            "loop's start to 1.5 s after power-on; baseline: the whole heap of that process "
            "(gc.mem_alloc + gc.mem_free): 96wK plus the runner's allowance for the shims, "
            "which sit in it (sim/bulb.py SHIM_HEAP_BYTES) and count in both",
        ),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
