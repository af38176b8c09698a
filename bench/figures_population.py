# SPDX-License-Identifier: MIT
"""Population figures: the alert rules on households unlike the calibrated toilet, over the radios
they live with (sim/population.py), against the baselines measured in the same run.

Every household (7 kinds x 5 deliveries x N seeds, 60-120 days each, parameters drawn within its
kind) is replayed as the server runs it: the rules are evaluated whenever a report reaches the
server and at each decision's next_check; the household's model is folded as each day settles.
Nobody claims an alert (the harsh case for e-mails). Figures, per kind, per delivery and overall:

- family_alerts_per_100_days: every family-facing alert (unusual_quiet and on_too_long) on days
  without an incident; alerts during unregistered nights away (and 6 h after) are counted apart
  (overnight_stay_alerts_per_100_days: alerting on them is arguably right). Baseline: the
  HelloLight-style daily window (09:00 + 24 h), replayed on the same reports.
- family_emails_per_100_days: alerts, reminders and escalations as e-mails (two family
  watchers, one neighbour; quiet hours 22:00-07:00). Baseline: the daily window with the
  reminder schedule this project shipped before (every 2 h until cleared, escalation, no quiet
  hours).
- fall_detection_h_median / _p90, light off and light left on: hours from a fall to the first
  family alert (any rule). Baseline: the fixed 24 h rule. falls_detected_24h_share: light off.
- placement: share of households the placement check flagged, and of those, how many had a
  false alert before the flag; poor_delivery: share of households where it fired.

`python -m bench.figures_population [seeds]` prints the tables of docs/alerts.md.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from bench.run import figure
from sim import population as pop
from sim.household import Visit, unix
from sim.server import alerts as al
from sim.server import households as hh
from sim.server import models as mdl
from sim.server.rules import OPEN, Settings, evaluate, evaluate_rule

H = 3600.0
DAY = 86400.0
SEEDS = 3  # households per kind and delivery in `make bench`
FAMILY = ("unusual_quiet", "on_too_long")
FALLS = 3  # falls of each type per household
STAY_GRACE = 6 * H
QUIET = "22:00-07:00"


@dataclass
class Episode:
    rule: str
    opened: float
    strength: str
    firmed: float | None = None
    cleared: float | None = None


@dataclass
class Result:
    kind: str
    delivery: str
    days: float
    alerts: int = 0
    stay_alerts: int = 0
    emails: int = 0
    base_alerts: int = 0
    base_emails: int = 0
    off_delays: list[float] = field(default_factory=list)
    off_base: list[float] = field(default_factory=list)
    on_delays: list[float] = field(default_factory=list)
    on_base: list[float] = field(default_factory=list)
    flagged_day: float | None = None  # the placement notice opened (days after install)
    first_false_day: float | None = None
    poor_delivery: bool = False
    evaluations: int = 0


def _settings(h: pop.PopHousehold) -> Settings:
    return hh.parse_settings({"absences": h.absences}).rules("UTC")


def _pauses(st: Settings, h: pop.PopHousehold) -> list[tuple[float, float]]:
    return [(p.start, p.end) for a in st.absences for p in a.spans("UTC", h.t0, h.t1 + 4 * DAY)]


def _in_stay(h: pop.PopHousehold, t: float) -> bool:
    return any(a <= t < b + STAY_GRACE for a, b in h.stays)


def _step(w: pop.World, t: float, t_end: float, nexts: list[float | None]) -> float:
    arr = w.arrivals(t + 1e-6, t_end)
    cands = [x for x in nexts if x is not None and x > t] + ([arr[0]] if arr else []) + [t_end]
    return max(min(cands), t + 1.0)


def replay_life(h: pop.PopHousehold, fall_times: list[float]) -> tuple[Result, dict]:
    """The household's normal life: alerts (value and baseline), placement, poor delivery; the
    model as it stood at each fall instant (for the fall replays)."""
    st = _settings(h)
    pauses = _pauses(st, h)
    w = pop.World(h)
    res = Result(h.kind, h.delivery, h.days)
    model = mdl.HouseholdModel()
    fold_at = mdl.next_fold("UTC", h.t0)
    snaps: dict[float, mdl.HouseholdModel] = {}
    pending = sorted(fall_times)
    open_: dict[tuple[str, str], Episode] = {}
    eps: list[Episode] = []
    base_open: Episode | None = None
    base_eps: list[Episode] = []
    t = h.t0
    while t < h.t1:
        while pending and pending[0] <= t:
            snaps[pending.pop(0)] = model
        if t >= fold_at:
            tl = w.timeline(t)
            model = mdl.learn(tl, "UTC", pauses, t, model)
            fold_at = mdl.next_fold("UTC", t)
            daily = evaluate(tl, st, t, model=model, only=("placement", "poor_delivery"))
            if any(d.rule == "poor_delivery" and d.state == OPEN for d in daily):
                res.poor_delivery = True
            if res.flagged_day is None and any(d.rule == "placement" and d.state == OPEN
                                               for d in daily):
                res.flagged_day = (t - h.t0) / DAY
        tl = w.timeline(t)
        ds = evaluate(tl, st, t, model=model, only=FAMILY)
        res.evaluations += 1
        for d in ds:
            key = (d.rule, d.subject)
            ep = open_.get(key)
            if d.state == OPEN and ep is None:
                ep = open_[key] = Episode(d.rule, t, d.strength)
                eps.append(ep)
            elif d.state == OPEN and ep is not None and ep.strength == "weak" \
                    and ep.firmed is None and d.strength == "strong":
                ep.firmed = t
            elif d.state != OPEN and ep is not None:
                ep.cleared = t
                del open_[key]
        (b,) = evaluate_rule(tl, st, t, "daily_window")
        if b.state == OPEN and base_open is None:
            base_open = Episode("daily_window", t, "strong")
            base_eps.append(base_open)
        elif b.state != OPEN and base_open is not None:
            base_open.cleared = t
            base_open = None
        t = _step(w, t, h.t1, [d.next_check for d in ds] + [b.next_check, fold_at])
    for ep in eps:
        if _in_stay(h, ep.opened):
            res.stay_alerts += 1
            continue
        res.alerts += 1
        res.emails += emails(ep, h.t1, st)
        if res.first_false_day is None:
            res.first_false_day = (ep.opened - h.t0) / DAY
    for ep in base_eps:
        if not _in_stay(h, ep.opened):
            res.base_alerts += 1
            res.base_emails += emails_before(ep, h.t1)
    return res, snaps


def emails(ep: Episode, end: float, st: Settings) -> int:
    """E-mails the lifecycle (sim/server/alerts.py) sends for one unclaimed alert: two family
    watchers, a neighbour; reminders and weak alerts wait for quiet hours; held messages of an
    alert that cleared meanwhile are dropped."""
    s = hh.HouseholdSettings()
    stop = ep.cleared if ep.cleared is not None else end

    def sent(at: float, n: int) -> int:
        q = hh.quiet_until(QUIET, "UTC", int(at * 1000))
        return n if (q / 1000 if q else at) < stop else 0

    strong_from = ep.opened if ep.strength == "strong" else ep.firmed
    out = sent(ep.opened, 2) if ep.strength == "weak" else 2
    escalated = strong_from + s.escalate_h[0] * H if strong_from is not None else math.inf
    if escalated < stop:
        out += 1
    k = 0
    t0 = ep.opened
    evidence = ep.strength
    while True:
        if evidence == "weak" and ep.firmed is not None:
            nxt_weak = al.reminder_due(s, "weak", k, int(t0 * 1000))
            if nxt_weak is None or nxt_weak / 1000 >= ep.firmed:
                evidence, t0, k = "strong", ep.firmed, 0
                continue
        due = al.reminder_due(s, evidence, k, int(t0 * 1000))
        if due is None or due / 1000 >= stop:
            return out
        out += sent(due / 1000, 3 if due / 1000 >= escalated else 2)
        k += 1


def emails_before(ep: Episode, end: float) -> int:
    """The reminder schedule shipped before issue 11: every 2 h until cleared, escalation to
    the neighbour after 1 h, no quiet hours."""
    stop = ep.cleared if ep.cleared is not None else end
    n = 2 + (1 if ep.opened + H < stop else 0)
    t = ep.opened + 2 * H
    while t < stop:
        n += 3 if t >= ep.opened + H else 2
        t += 2 * H
    return n


def replay_fall(h: pop.PopHousehold, at: float, lit: bool,
                model: mdl.HouseholdModel) -> tuple[float, float]:
    """(hours to the first family alert, hours to the fixed 24 h rule's) after a fall at `at`:
    light off (no switch-on after it), or the light left on (a switch-on at `at` that never
    ends)."""
    st = _settings(h)
    pauses = _pauses(st, h)
    if lit:
        before = [v for v in h.visits if v.on < pop_dt(h, at)]
        vs = before + [Visit(pop_dt(h, at), pop_dt(h, at + 5 * DAY))]
        w = pop.World(h, vs, lit_until=at + 5 * DAY)
    else:
        vs = [Visit(v.on, min(v.off, pop_dt(h, at))) for v in h.visits if v.on < pop_dt(h, at)]
        w = pop.World(h, vs)
    fold_at = mdl.next_fold("UTC", at)
    t, end = at, at + 72 * H
    found = base = None
    while t < end and (found is None or base is None):
        if t >= fold_at:
            model = mdl.learn(w.timeline(t), "UTC", pauses, t, model)
            fold_at = mdl.next_fold("UTC", t)
        tl = w.timeline(t)
        ds = evaluate(tl, st, t, model=model, only=FAMILY)
        # an alert about what began at the fall or after (not one still open from before it)
        if found is None and any(d.state == OPEN and (not lit or (d.since or t) >= at - 1)
                                 for d in ds):
            found = t
        (b,) = evaluate_rule(tl, st, t, "no_activity")
        if base is None and b.state == OPEN and (not lit or (b.since or t) >= at - 1):
            base = t
        t = _step(w, t, end, [d.next_check for d in ds] + [b.next_check, fold_at])
    return ((found if found is not None else end) - at) / H, \
        ((base if base is not None else end) - at) / H


def pop_dt(h: pop.PopHousehold, t: float):
    return h.start + timedelta(seconds=t - h.t0)


def fall_instants(h: pop.PopHousehold) -> tuple[list[float], list[float]]:
    """FALLS light-off instants (awake hours, at home) and FALLS light-on instants (the start
    of a usual visit) after the first three weeks."""
    rng = random.Random(f"falls/{h.kind}/{h.delivery}/{h.seed}")
    lo = h.t0 + 21 * DAY
    off: list[float] = []
    while len(off) < FALLS:
        t = lo + rng.uniform(0, h.t1 - lo - 3 * DAY)
        loc = ((t - h.t0) % DAY) / H
        away = _in_stay(h, t) or any(p[0] <= t < p[1] for p in _pauses(_settings(h), h))
        if 7 <= loc < 22 and not away:
            off.append(t)
    starts = [unix(v.on) for v in h.visits if lo <= unix(v.on) < h.t1 - 3 * DAY
              and not _in_stay(h, unix(v.on))]
    on = rng.sample(starts, min(FALLS, len(starts)))
    return off, on


def run_one(kind: str, delivery: str, seed: int) -> Result:
    h = pop.household(kind, delivery, seed)
    off, on = fall_instants(h)
    res, snaps = replay_life(h, off + on)
    for t in off:
        v, b = replay_fall(h, t, False, snaps.get(t, mdl.HouseholdModel()))
        res.off_delays.append(v)
        res.off_base.append(b)
    for t in on:
        v, b = replay_fall(h, t, True, snaps.get(t, mdl.HouseholdModel()))
        res.on_delays.append(v)
        res.on_base.append(b)
    return res


def run(seeds: int = SEEDS) -> list[Result]:
    return [run_one(k, d, s) for k in pop.KINDS for d in pop.DELIVERIES for s in range(seeds)]


# ---------------------------------------------------------------------------------------------
# summing up


def _p(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if q < 0.5 or q > 0.5 else statistics.median(s)


def summary(rs: list[Result]) -> dict[str, float]:
    days = sum(r.days for r in rs)
    off = [x for r in rs for x in r.off_delays]
    offb = [x for r in rs for x in r.off_base]
    on = [x for r in rs for x in r.on_delays]
    onb = [x for r in rs for x in r.on_base]
    flagged = [r for r in rs if r.flagged_day is not None]
    return {
        "days": days, "households": len(rs),
        "alerts": 100 * sum(r.alerts for r in rs) / days,
        "base_alerts": 100 * sum(r.base_alerts for r in rs) / days,
        "emails": 100 * sum(r.emails for r in rs) / days,
        "base_emails": 100 * sum(r.base_emails for r in rs) / days,
        "stay_alerts": 100 * sum(r.stay_alerts for r in rs) / days,
        "off_med": _p(off, 0.5), "off_p90": _p(off, 0.9),
        "off_base_med": _p(offb, 0.5), "off_base_p90": _p(offb, 0.9),
        "on_med": _p(on, 0.5), "on_p90": _p(on, 0.9),
        "on_base_med": _p(onb, 0.5), "on_base_p90": _p(onb, 0.9),
        "off_24h": sum(1 for x in off if x <= 24) / len(off) if off else float("nan"),
        "off_base_24h": sum(1 for x in offb if x <= 24) / len(offb) if offb else float("nan"),
        "flagged": len(flagged) / len(rs),
        "flag_day": statistics.median([r.flagged_day for r in flagged]) if flagged else float(
            "nan"),
        "false_before_flag": sum(1 for r in flagged if r.first_false_day is not None
                                 and r.first_false_day < r.flagged_day),
        "poor_delivery": sum(1 for r in rs if r.poor_delivery) / len(rs),
    }


def _groups(rs: list[Result]) -> list[tuple[str, list[Result]]]:
    out = [("", rs)]
    out += [(k, [r for r in rs if r.kind == k]) for k in pop.KINDS]
    out += [(d, [r for r in rs if r.delivery == d]) for d in pop.DELIVERIES]
    return out


def figures(seeds: int = SEEDS) -> list[dict]:
    t = time.perf_counter()
    rs = run(seeds)
    took = time.perf_counter() - t
    out = []
    for name, group in _groups(rs):
        s = summary(group)
        sfx = f".{name}" if name else ""
        what = (f"{s['households']} households, {s['days']:.0f} household-days"
                + (f" ({name})" if name else f", {len(pop.KINDS)} kinds x "
                   f"{len(pop.DELIVERIES)} deliveries x {seeds} seeds"))
        out += [
            figure("family_alerts_per_100_days" + sfx, round(s["alerts"], 3), "alerts",
                   round(s["base_alerts"], 3), what + "; baseline: daily window 09:00 + 24 h"),
            figure("family_emails_per_100_days" + sfx, round(s["emails"], 2), "e-mails",
                   round(s["base_emails"], 2), "alerts, reminders, escalations, nobody "
                   "claiming; baseline: daily window, reminders every 2 h as shipped before"),
            figure("fall_detection_h_median.light_off" + sfx, round(s["off_med"], 2), "h",
                   round(s["off_base_med"], 2), "baseline: fixed 24 h rule"),
            figure("fall_detection_h_p90.light_off" + sfx, round(s["off_p90"], 2), "h",
                   round(s["off_base_p90"], 2), "baseline: fixed 24 h rule"),
            figure("fall_detection_h_median.light_on" + sfx, round(s["on_med"], 2), "h",
                   round(s["on_base_med"], 2), "light left on; baseline: fixed 24 h rule"),
            figure("fall_detection_h_p90.light_on" + sfx, round(s["on_p90"], 2), "h",
                   round(s["on_base_p90"], 2), "light left on; baseline: fixed 24 h rule"),
            figure("falls_detected_24h_share" + sfx, round(s["off_24h"], 3), "share",
                   round(s["off_base_24h"], 3), "falls with the light off; baseline: fixed 24 h"),
        ]
        if not name:
            out += [
                figure("overnight_stay_alerts_per_100_days", round(s["stay_alerts"], 3),
                       "alerts", None, "unregistered nights away (about one in 40 days), "
                       "counted apart from the false alerts"),
                figure("population_bench_s", round(took, 1), "s", None,
                       f"{sum(r.evaluations for r in rs)} evaluations of the normal lives"),
            ]
    return out


def table(rs: list[Result]) -> str:
    head = ("| population | household-days | family alerts /100 d (daily window) | e-mails /100 d "
            "(daily window) | light off: median / p90 h (fixed 24 h) | within 24 h (fixed) | "
            "light on: median / p90 h (fixed 24 h) | nights away: alerts /100 d | placement "
            "flagged (median day; false alerts before) | poor_delivery fired |")
    lines = [head, "| --- " + "| ---: " * 9 + "|"]
    for name, group in _groups(rs):
        s = summary(group)
        lines.append(
            f"| {name or '**all**'} | {s['days']:.0f} | {s['alerts']:.2f} ({s['base_alerts']:.1f})"
            f" | {s['emails']:.1f} ({s['base_emails']:.0f}) | {s['off_med']:.1f} / "
            f"{s['off_p90']:.1f} ({s['off_base_med']:.1f} / {s['off_base_p90']:.1f}) | "
            f"{100 * s['off_24h']:.0f} % ({100 * s['off_base_24h']:.0f} %) | {s['on_med']:.1f} / "
            f"{s['on_p90']:.1f} ({s['on_base_med']:.1f} / {s['on_base_p90']:.1f}) | "
            f"{s['stay_alerts']:.2f} | {100 * s['flagged']:.0f} % ({s['flag_day']:.0f}; "
            f"{s['false_before_flag']}) | {100 * s['poor_delivery']:.0f} % |")
    return "\n".join(lines)


def cells(rs: list[Result]) -> str:
    """Family alerts per 100 household-days, kind x delivery."""
    lines = ["| kind | " + " | ".join(pop.DELIVERIES) + " |",
             "| --- " + "| ---: " * len(pop.DELIVERIES) + "|"]
    for k in pop.KINDS:
        row = []
        for d in pop.DELIVERIES:
            s = summary([r for r in rs if r.kind == k and r.delivery == d])
            row.append(f"{s['alerts']:.2f}")
        lines.append(f"| {k} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else SEEDS
    t0 = time.perf_counter()
    results = run(n)
    print(table(results), "\n")
    print(cells(results), "\n")
    by = defaultdict(list)
    for r in results:
        if r.alerts:
            by[(r.kind, r.delivery)].append(r.alerts)
    print("households with false alerts:", dict(by))
    print(f"took {time.perf_counter() - t0:.0f} s")
