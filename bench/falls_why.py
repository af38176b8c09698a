# SPDX-License-Identifier: MIT
"""Why a fall with the light off is seen later by the learned rule than by the fixed 24 h rule:
one line per incident of the population bench (bench/figures_population.py), with both rules.

Per fall: when it happened, the last switch-on before it (what she did), the anchor each rule
counted from (the last switch-on the server knew of, or an LTE-M bulb's unreported-until), the
learned deadline and why (learning, radio, the placement check's verdict, the cap), and when each
rule alerted. The cause of a later learned alert is named from the learned rule's own decision
at the instant the fixed rule alerted:

    learning     the model had too few days: the learning wait was longer than 24 h
    no_cap       no bulb of the household fits (placement not "good"): the wait follows the
                 room's own long spells instead of the 24 h cap
    anchor       the learned rule counted from a later instant than the fixed rule
    radio        the radio's delays moved the deadline (capped at 24 h only where it fits)
    other        none of these (the sweep, a model folded during the fall, ...)

`python -m bench.falls_why [seeds] [--kinds ...] [--deliveries ...] [--held-out] [--all]`
prints the incidents where the learned rule came later (all of them with --all) and a count by
cause. It measures; it changes nothing.
"""

from __future__ import annotations

import argparse
import bisect
import collections
from dataclasses import dataclass

from bench import figures_population as fp
from mimamori import models as mdl
from mimamori.clock import DAY_MS, HOUR_MS
from mimamori.rules import (
    OPEN,
    Decision,
    Memo,
    _visible,
    evaluate,
    evaluate_rule,
    placements,
)
from mimamori.timeline import Timeline
from sim import population as pop
from sim.household import Visit, ms

H = HOUR_MS  # instants and spans in the server's unit, ms, as figures_population
DAY = DAY_MS


@dataclass
class Incident:
    kind: str
    delivery: str
    seed: int
    fall: float
    last_on: float | None  # her last switch-on before the fall (any bulb)
    learned_h: float  # hours from the fall to the learned rule's first family alert (72: none)
    fixed_h: float
    anchor: float | None  # the learned rule's spell start at the fixed rule's alert
    fixed_anchor: float | None
    limit_h: float | None  # the learned deadline, hours from its anchor, at that instant
    reasons: tuple[str, ...]
    fits: bool
    verdicts: str  # the placement check's verdict of each bulb
    cause: str


def _cause(d: Decision | None, fixed: Decision | None, later: bool) -> str:
    if not later:
        return "no_later"
    if d is None:
        return "other"
    det = d.detail
    reasons = tuple(det.get("reasons", ()))
    anchor = det.get("unreported_until", det.get("last_on"))
    f_anchor = None if fixed is None else fixed.detail.get("unreported_until",
                                                           fixed.detail.get("last_on"))
    if "learning" in reasons and (det.get("limit_h") or 0) > 24:
        return "learning"
    if not det.get("fits", True) and (det.get("limit_h") or 0) > 24:
        return "no_cap"
    if anchor is not None and f_anchor is not None and anchor > f_anchor + 60:
        return "anchor"
    if "radio" in reasons:
        return "radio"
    return "other"


def replay(h: pop.PopHousehold, at: float, model: mdl.HouseholdModel) -> Incident:
    """The light-off fall at `at` as figures_population.replay_fall replays it, keeping the
    learned rule's decision at the instant the fixed rule alerted (or at the learned alert)."""
    st = fp._settings(h)
    pauses = fp._pauses(st, h)
    fall = fp.pop_dt(h, at)
    vs = {dev: [Visit(v.on, min(v.off, fall)) for v in visits if v.on < fall]
          for dev, visits in h.bulbs.items()}
    w = pop.World(h, vs)
    fold_at = mdl.next_fold("UTC", at)
    memo = Memo()  # what the rules derive from the model, while it is the same
    t, end = at, at + 72 * H
    found = base = None
    seen: Decision | None = None  # the learned decision when the fixed rule alerted
    fixed_d: Decision | None = None
    last: Decision | None = None
    while t < end and (found is None or base is None):
        if t >= fold_at:
            model = mdl.learn(w.timeline(t), "UTC", pauses, t, model)
            fold_at = mdl.next_fold("UTC", t)
        tl = w.timeline(t)
        (d,) = evaluate(tl, st, t, model=model, memo=memo, only=("unusual_quiet",))
        ds = evaluate(tl, st, t, model=model, memo=memo, only=fp.FAMILY)
        last = d
        if found is None and any(x.state == OPEN for x in ds):
            found = t
        (b,) = evaluate_rule(tl, st, t, "no_activity", memo=memo)
        if base is None and b.state == OPEN:
            base, seen, fixed_d = t, d, b
        t = fp._step(w, t, end, [x.next_check for x in ds] + [b.next_check, fold_at])
    starts = sorted(ms(v.on) for visits in vs.values() for v in visits)
    k = bisect.bisect_right(starts, at) - 1
    learned_h = ((found if found is not None else end) - at) / H
    fixed_h = ((base if base is not None else end) - at) / H
    d = seen or last
    det = d.detail if d is not None else {}
    tl_end = w.timeline(t)
    checks = _verdicts(tl_end, model, t)
    return Incident(
        h.kind, h.delivery, h.seed, at, starts[k] if k >= 0 else None, learned_h, fixed_h,
        det.get("unreported_until", det.get("last_on")),
        None if fixed_d is None else fixed_d.detail.get("unreported_until",
                                                        fixed_d.detail.get("last_on")),
        det.get("limit_h"), tuple(det.get("reasons", ())), bool(det.get("fits", False)),
        checks, _cause(d, fixed_d, learned_h > fixed_h + 1 / 60))


def _verdicts(tl: Timeline, model: mdl.HouseholdModel, now: float) -> str:
    """The placement check's verdict of each bulb (as the learned rule read it at `now`)."""
    ps = placements(_visible(tl, now), tl, model, now)
    return ",".join(p.verdict for p in ps.values())


def incidents(h: pop.PopHousehold) -> list[Incident]:
    off, _ = fp.fall_instants(h)
    _, snaps = fp.replay_life(h, off)
    return [replay(h, t, snaps.get(t, mdl.HouseholdModel())) for t in off]


def _hm(h: pop.PopHousehold, t: float | None) -> str:
    if t is None:
        return "-"
    dt = fp.pop_dt(h, t)
    return f"d{(t - h.t0) / DAY:05.1f} {dt:%H:%M}"


def line(h: pop.PopHousehold, i: Incident) -> str:
    lim = "-" if i.limit_h is None else f"{i.limit_h:.1f}"
    return (f"{i.kind:11} {i.delivery:14} s{i.seed} fall {_hm(h, i.fall)} last_on "
            f"{_hm(h, i.last_on)} anchor {_hm(h, i.anchor)} (fixed {_hm(h, i.fixed_anchor)}) "
            f"limit {lim} h {'+'.join(i.reasons) or '-'} fits={i.fits} [{i.verdicts}] "
            f"learned {i.learned_h:.1f} h fixed {i.fixed_h:.1f} h: {i.cause}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seeds", nargs="?", type=int, default=fp.SEEDS)
    ap.add_argument("--kinds", default=None)
    ap.add_argument("--deliveries", default=",".join(pop.DELIVERIES))
    ap.add_argument("--held-out", action="store_true")
    ap.add_argument("--all", action="store_true", help="every incident, not only later ones")
    a = ap.parse_args()
    kinds = (a.kinds or ",".join(pop.KINDS_HELD_OUT if a.held_out else pop.KINDS)).split(",")
    count: collections.Counter[tuple[str, str]] = collections.Counter()
    n = 0
    for k in kinds:
        for dl in a.deliveries.split(","):
            for s in range(a.seeds):
                h = pop.household(k, dl, s, held_out=a.held_out)
                for i in incidents(h):
                    n += 1
                    count[(k, i.cause)] += 1
                    if a.all or i.cause != "no_later":
                        print(line(h, i), flush=True)
    print(f"\n{n} light-off falls; learned rule later than the fixed rule, by kind and cause:")
    for (k, c), x in sorted(count.items()):
        print(f"  {k:11} {c:8} {x}")


if __name__ == "__main__":
    main()
