# SPDX-License-Identifier: MIT
"""Alert rule figures: the learned rhythm rule against the fixed 24 h rule.

`python -m bench.figures_alerts` prints the tables of docs/alerts.md. Real-log results come from
the Ordonez logs in ../shared/data/activity/ (F. J. Ordonez, P. de Toledo, A. Sanchis, Sensors
13(5):5460-5477, 2013); they are skipped, and said so, when the folder is absent.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import replace
from datetime import datetime, timedelta

from bench.run import figure
from mimamori.clock import DAY_MS, HOUR_MS
from mimamori.rules import Pause, RuleSettings, evaluate, replay
from mimamori.timeline import build_timeline
from sim.household import (
    DATA,
    HospitalStay,
    Household,
    Profile,
    Visit,
    bulb_records,
    exact_timeline,
    load_ordonez,
    ms,
)

# (label, rule, settings overrides): the fixed rule also at shorter N, to compare at equal delay
VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("fixed 24 h", "no_activity", {}),
    ("fixed 20 h", "no_activity", {"no_activity_h": 20.0}),
    ("fixed 18 h", "no_activity", {"no_activity_h": 18.0}),
    ("fixed 16 h", "no_activity", {"no_activity_h": 16.0}),
    ("fixed 12 h", "no_activity", {"no_activity_h": 12.0}),
    ("daily window 09:00+24 h", "daily_window", {}),
    ("learned", "unusual_quiet", {}),
)
RULES = tuple(v[0] for v in VARIANTS)
FIXED, LEARNED = "fixed 24 h", "learned"
BENCH_VARIANTS = tuple(v for v in VARIANTS if v[0] in (FIXED, "fixed 16 h", LEARNED))
FALL_HOURS = (8, 13, 19, 23)
SETTINGS = RuleSettings(tz="UTC")  # simulated and logged times are local times, kept as UTC
START = datetime(2026, 1, 5)  # a Monday


def _fall_delays(visits: list[Visit], fall: datetime, settings: RuleSettings,
                 variants=VARIANTS) -> dict[str, float]:
    """Hours from the fall until each rule alerts (the visits stop at the fall)."""
    before = [v for v in visits if v.on < fall]
    tl = exact_timeline(before)
    t = ms(fall)
    out = {}
    for label, rule, kw in variants:
        eps = replay(tl, replace(settings, **kw), t, t + 72 * HOUR_MS, rule)
        out[label] = (eps[0].opened - t) / HOUR_MS if eps else 72.0
    return out


def _false(visits: list[Visit], t0: int, t1: int, settings: RuleSettings,
           variants=VARIANTS) -> dict[str, int]:
    tl = exact_timeline(visits)
    return {label: len(replay(tl, replace(settings, **kw), t0, t1, rule))
            for label, rule, kw in variants}


def real_logs(settings: RuleSettings = SETTINGS, variants=VARIANTS) -> dict | None:
    """False alerts over the whole logs; falls injected each day from day 8 at FALL_HOURS."""
    if not (DATA / "OrdonezA_Sensors.txt").exists():
        return None
    labels = [v[0] for v in variants]
    res: dict = {"days": 0.0, "false": dict.fromkeys(labels, 0),
                 "delays": {r: [] for r in labels}}
    for house in "AB":
        log = load_ordonez(house)
        t0, t1 = ms(log.visits[0].on), ms(log.visits[-1].off)
        res["days"] += (t1 - t0) / DAY_MS
        for rule, n in _false(log.visits, t0, t1, settings, variants).items():
            res["false"][rule] += n
        for d in range(8, log.days - 1):
            for h in FALL_HOURS:
                fall = log.start + timedelta(days=d, hours=h)
                for rule, dl in _fall_delays(log.visits, fall, settings, variants).items():
                    res["delays"][rule].append(dl)
    return res


def simulated(n: int = 40, days: int = 60, settings: RuleSettings = SETTINGS,
              away_night_p: float = 0.0, variants=VARIANTS, stays: bool = True) -> dict:
    """n households x days: false alerts, fall delays, a 5-day hospital stay with/without pause."""
    labels = [v[0] for v in variants]
    res: dict = {"days": 0.0, "false": dict.fromkeys(labels, 0),
                 "delays": {r: [] for r in labels}}
    if stays:
        res.update(stay_paused=dict.fromkeys(labels, 0), stay_unpaused=dict.fromkeys(labels, 0))
    end = START + timedelta(days=days)
    for i in range(n):
        rng = random.Random(i)
        prof = Profile(away_night_p=away_night_p).sample(rng)
        visits = Household(i, prof).events(START, days)
        res["days"] += days
        for rule, k in _false(visits, ms(START), ms(end), settings, variants).items():
            res["false"][rule] += k
        for j, h in enumerate(FALL_HOURS):
            fall = START + timedelta(days=30 + 7 * j + rng.randrange(5), hours=h,
                                     minutes=rng.randrange(60))
            for rule, dl in _fall_delays(visits, fall, settings, variants).items():
                res["delays"][rule].append(dl)
        s, e = START + timedelta(days=40, hours=10), START + timedelta(days=45, hours=15)
        for paused in (True, False) if stays else ():
            hh = Household(i, prof, (HospitalStay(s, e, paused),))
            vs = hh.events(START, days)
            pauses = tuple(Pause(ms(a), ms(b)) for a, b in hh.pauses())
            st = replace(settings, pauses=pauses)
            key = "stay_paused" if paused else "stay_unpaused"
            for rule, k in _false(vs, ms(s), ms(e) + 3 * DAY_MS, st, variants).items():
                res[key][rule] += k
    return res


def per50(n: int, days: float) -> float:
    return 50.0 * n / days if days else float("nan")


def eval_ms(days: int = 14, reps: int = 20) -> tuple[float, float]:
    """(timeline + every rule, timeline alone) in ms for one household with `days` of records."""
    visits = Household(7, Profile()).events(START, days)
    recs = bulb_records(visits, "bulb-1", seed=7, connect_p=0.9)
    now = ms(START + timedelta(days=days))
    t = time.perf_counter()
    for _ in range(reps):
        tl = build_timeline(recs, {"bulb-1": None})
        evaluate(tl, SETTINGS, now)
    full = (time.perf_counter() - t) / reps * 1000
    t = time.perf_counter()
    for _ in range(reps):
        build_timeline(recs, {"bulb-1": None})
    alone = (time.perf_counter() - t) / reps * 1000
    return full, alone


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def figures() -> list[dict]:
    n = 20
    sim = simulated(n=n, variants=BENCH_VARIANTS, stays=False)
    real = real_logs(variants=BENCH_VARIANTS)
    labels = [v[0] for v in BENCH_VARIANTS]
    fa = {r: per50(sim["false"][r], sim["days"]) for r in labels}
    dl = {r: _median(sim["delays"][r]) for r in labels}
    note = f"{len(sim['delays'][FIXED])} falls, {n} simulated households x 60 days"
    if real:
        fa_real = {r: per50(real["false"][r], real["days"]) for r in labels}
        note_fa = (f"simulated; real logs (Ordonez et al., Sensors 2013): learned "
                   f"{fa_real[LEARNED]:.2f}, fixed {fa_real[FIXED]:.2f}")
    else:
        note_fa = "simulated; real logs absent (../shared/data/activity)"
    full, alone = eval_ms()
    return [
        figure("false_alerts_per_50_days", round(fa[LEARNED], 3), "alerts",
               round(fa[FIXED], 3), note_fa + f"; fixed 16 h rule: {fa['fixed 16 h']:.2f}; "
               "baseline: fixed 24 h rule"),
        figure("detection_delay_h", round(dl[LEARNED], 2), "h",
               round(dl[FIXED], 2), "median, " + note + "; baseline: fixed 24 h rule"),
        figure("alert_eval_ms_per_household", round(full, 3), "ms", round(alone, 3),
               "timeline + all rules, 14 days of records; baseline: timeline alone"),
    ]


def _table(title: str, res: dict) -> str:
    lines = [f"### {title} ({res['days']:.0f} household-days)", "",
             ("| rule | false alerts | per 50 household-days | median delay h | "
              "mean delay h | 90th pct delay h |"), "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["false"]:
        ds = sorted(res["delays"][r])
        p90 = ds[int(0.9 * (len(ds) - 1))] if ds else float("nan")
        lines.append(f"| {r} | {res['false'][r]} | {per50(res['false'][r], res['days']):.2f} | "
                     f"{_median(ds):.1f} | {statistics.mean(ds) if ds else float('nan'):.1f} | "
                     f"{p90:.1f} |")
    if "stay_paused" in res:
        lines += ["", "Alerts during a 5-day hospital stay (and 3 days after): "
                  + ", ".join(f"{r}: {res['stay_paused'][r]} paused / "
                              f"{res['stay_unpaused'][r]} not paused" for r in res["false"])]
    return "\n".join(lines)


if __name__ == "__main__":
    real = real_logs()
    if real:
        print(_table("Real logs, houses A and B (Ordonez et al., Sensors 2013)", real), "\n")
    print(_table("Simulated, 40 households x 60 days", simulated()), "\n")
    print(_table("Simulated, with an unannounced night away 1 day in 30",
                 simulated(away_night_p=1 / 30)), "\n")
    print("eval ms (full, timeline alone):", eval_ms())
