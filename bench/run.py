# SPDX-License-Identifier: MIT
"""`make bench`: every figure, each with a baseline measured in the same run.

Each `bench/figures_*.py` module has `figures() -> list[dict]`; every dict has the keys of
DESIGN.md section 7: name, value, unit, baseline, ratio, note. This runner collects them,
prints a table and writes bench/latest.json. A module that fails is reported, not hidden.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = ("name", "value", "unit", "baseline", "ratio", "note")


def figure(name: str, value: float, unit: str, baseline: float | None, note: str = "") -> dict:
    """One bench figure; ratio is value / baseline (None when there is no baseline)."""
    ratio = None
    if baseline not in (None, 0):
        ratio = round(value / baseline, 4)
    return {"name": name, "value": value, "unit": unit, "baseline": baseline,
            "ratio": ratio, "note": note}


def main(argv: list[str]) -> int:
    only = argv[1:]
    results: list[dict] = []
    failed: list[str] = []
    for mod in sorted(m.name for m in pkgutil.iter_modules([str(HERE)])):
        if not mod.startswith("figures_") or (only and not any(o in mod for o in only)):
            continue
        try:
            got = importlib.import_module(f"bench.{mod}").figures()
        except Exception:  # noqa: BLE001 - a broken figures module is reported, the rest run
            traceback.print_exc()
            failed.append(mod)
            continue
        for f in got:
            assert set(f) == set(KEYS), f
        results.extend(got)
    out = HERE / "latest.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    w = max([len(r["name"]) for r in results] + [4])
    print(f"{'name':<{w}}  {'value':>12}  {'unit':<8}  {'baseline':>12}  {'ratio':>8}  note")
    for r in results:
        base = "-" if r["baseline"] is None else f"{r['baseline']:.4g}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3g}"
        print(f"{r['name']:<{w}}  {r['value']:>12.4g}  {r['unit']:<8}  {base:>12}  {ratio:>8}  "
              f"{r['note']}")
    print(f"wrote {out.relative_to(HERE.parent)} ({len(results)} figures)")
    if failed:
        print("FAILED:", ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
