"""`make demo` (interim, until the demo issue lands): one simulated bulb, switched on and off.

Boots the real firmware/ in MicroPython with the hardware shims (virtual time), switches the
light on for a few visits of different lengths, and prints what the lamp did: its duty over
time and the other hardware it used. Ends with exit 0. --keep keeps the bulb's state directory;
--days and --homes are accepted for the full demo and ignored here.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from sim.bulb import FIRMWARE, Bulb

VISITS_S = (4.0, 45.0, 1.5, 600.0)  # how long the light stays on at each switch-on
SITE = {"brightness": 0.8, "fade_ms": 600}
BARS = " ▁▂▃▄▅▆▇█"


def sparkline(duties: list[tuple[int, int]], until_ms: int, step_ms: int) -> str:
    """The lamp's duty sampled every step_ms from power-on, one character per sample."""
    out = []
    k = 0
    level = 0
    for t in range(0, until_ms + 1, step_ms):
        while k < len(duties) and duties[k][0] <= t:
            level = duties[k][1]
            k += 1
        out.append(BARS[round(level / 65535 * (len(BARS) - 1))])
    return "".join(out)


def describe_visit(b: Bulb, n: int, seconds: float) -> None:
    boots = sorted({e["boot"] for e in b.trace() if e.get("n") == n and e["ev"] == "power_on"})
    evs = [e for e in b.trace() if e["boot"] in boots]
    duties = [(e["t"], e["duty"]) for e in evs if e["ev"] == "lamp"]
    causes = [e["cause"] for e in evs if e["ev"] == "power_on"]
    print(f"\nswitch-on #{n}: light on for {seconds:g} s (bulb time), reset causes {causes}")
    if not duties:
        print("  the lamp never changed")
        return
    lowest = min(d for _, d in duties)
    final_t, final = duties[-1]
    print(f"  at power-on: {duties[0][1] / 655.35:.0f}% (the driver's pull-up, before any code)")
    print(f"  lowest level while lit: {lowest / 655.35:.1f}%  "
          f"settled at {final / 655.35:.1f}% duty after {final_t} ms "
          f"(gamma-corrected: {SITE['brightness']:.0%} perceived)")
    print(f"  first second, 40 ms per mark: |{sparkline(duties, 1000, 40)}|")
    others: dict[str, int] = {}
    for e in evs:
        if e["ev"] not in ("lamp", "power_on"):
            key = e["ev"] + (f":{e['op']}" if "op" in e else f":{e['state']}" if "state" in e
                             else "")
            others[key] = others.get(key, 0) + 1
    if others:
        print("  other hardware: " + ", ".join(f"{k} x{v}" for k, v in sorted(others.items())))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the bulb's state directory")
    ap.add_argument("--days", type=float, default=None, help="(full demo only; ignored)")
    ap.add_argument("--homes", type=int, default=None, help="(full demo only; ignored)")
    args = ap.parse_args(argv)

    if not (FIRMWARE / "main.py").exists():
        print("demo: firmware/main.py does not exist yet, so there is no bulb to boot.\n"
              "      The simulation is ready (sim/bulb.py); the demo lights up once the "
              "firmware lands.")
        return 0
    state = Path(tempfile.mkdtemp(prefix="mimamori-demo-"))
    try:
        b = Bulb(state / "bulb", site=SITE)
        print(f"demo: one simulated bulb (firmware/ in MicroPython, virtual time), "
              f"settings {SITE}")
        for n, seconds in enumerate(VISITS_S, start=1):
            b.power_on(stop_at_s=seconds, timeout=120)
            describe_visit(b, n, seconds)
        out = b.stdout.strip()
        if out:
            print("\nwhat the firmware printed:")
            for line in dict.fromkeys(out.splitlines()):  # each distinct line once
                print("  " + line)
        where = b.state_dir / "trace.jsonl" if args.keep else "the trace (--keep keeps it)"
        print(f"\ndemo: {len(VISITS_S)} switch-ons, {len(b.boots)} boots, "
              f"{len(b.trace())} hardware events in {where}")
    finally:
        if args.keep:
            print(f"demo: kept {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
