# SPDX-License-Identifier: MIT
"""The server's own outage: what a city's households hear when the server was down for a day.

Every household of the main population (sim/population.py) on good Wi-Fi and on LTE-M (their
radios raise no delivery notice of their own), SEEDS per kind, lives its usual life; on day
OUTAGE_DAY at OUTAGE_FROM_H local time the server stops for OUTAGE_H hours: no report reaches
it, nothing is evaluated, and the bulbs keep their records and send them with a later visit.
Counted in the WINDOW_D days from the outage's start, per 100 households:

- family alerts opened (no fall happens in these lives: every one is false), with the outage
  and the rules reading it (listening.py), with the outage and rules that do not (the server
  before this change), and without the outage (the baseline: what those days raise anyway);
- coordinator notices of poor delivery that opened in the window (the bulb's radio blamed for
  the server's outage), and placement checks that began to speak of the radio;
- the cost: a fall with the light off FALL_BEFORE_H before the outage began, hours until the
  family is alerted (the rules that read the outage count her silence from its end; those that
  do not alert every household at the restart, hers with them).

The same outage as a **network cut** (the city's firewall, the server's line): the server runs
on and evaluates, and hears nothing. The fleet's rhythm (listening.Rhythm, learned from these
households' own reports in ROUND_MS rounds) decides the silence (listening.hear): how long after
the cut it did, and the same counts with the rules reading the span it decided, and without.

Run alone: `.venv/bin/python -m bench.figures_outage` prints the figures and the households
alerted.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

from bench import figures_population as fp
from bench.run import figure
from mimamori import listening
from mimamori.clock import DAY_MS, HOUR_MS, MINUTE_MS
from sim import population as pop

SEEDS = 2
DELIVERIES = ("good_wifi", "lte")
OUTAGE_DAY = 40
OUTAGE_FROM_H = 9.0
OUTAGE_H = 30.0
WINDOW_D = 4.0
FALL_BEFORE_H = 0.5
ROUND_MS = MINUTE_MS  # the sweeper's round, as the fleet's rhythm counts it (30 s by default)


def outage(h: pop.PopHousehold) -> tuple[int, int]:
    s = h.t0 + OUTAGE_DAY * DAY_MS + int(OUTAGE_FROM_H * HOUR_MS)
    return s, s + int(OUTAGE_H * HOUR_MS)


def _counts(h: pop.PopHousehold, r: fp.Result, span: tuple[int, int]) -> tuple[int, int, int]:
    """(family alerts, poor-delivery notices, radio words) that began in the window."""
    lo, hi = span[0], span[0] + WINDOW_D * DAY_MS
    alerts = sum(1 for at, _, c in r.opened if lo <= at < hi and c not in fp.ARGUABLY)
    d0, d1 = (lo - h.t0) / DAY_MS, (hi - h.t0) / DAY_MS

    def began(days: list[float]) -> int:
        return int(any(d0 <= d < d1 for d in days) and not any(d0 - 1 <= d < d0 for d in days))

    return alerts, began(r.delivery_days), began(r.radio_days)


def _median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 1)


def fleet_silence(homes: list[pop.PopHousehold]) -> tuple[int, int, int]:
    """(start, decided, heard), in ms from the households' start (all start at a UTC midnight,
    so their hours of the day agree): the network cut of `outage` as the fleet's rhythm decides
    it. The rhythm counts the households heard in each ROUND_MS round until the cut, as
    listening.hear does; the silence is decided at the first round after it that
    listening.decides (these households' own reports counted by listening.count_homes), from
    the last report before it; it ends at the first report after it."""
    rel: list[tuple[int, int]] = []  # (ms from the start, household)
    for i, h in enumerate(homes):
        w = pop.World(replace(h, server_down=(outage(h),)))
        rel += [(a - h.t0, i) for a in w.arrivals(h.t0, h.t1)]
    rel.sort()
    cut0 = outage(homes[0])[0] - homes[0].t0
    rhythm = listening.Rhythm()
    k, t = 0, 0
    while t + ROUND_MS <= cut0:
        seen = set()  # households heard in the round: each once
        while k < len(rel) and rel[k][0] <= t + ROUND_MS:
            seen.add(rel[k][1])
            k += 1
        rhythm.add(t, t + ROUND_MS, len(seen))
        t += ROUND_MS
    last = max(x for x, _ in rel if x < cut0)
    heard = min(x for x, _ in rel if x >= cut0)
    reports = [(str(i), x) for x, i in rel]
    t = cut0
    while t < heard and not listening.decides(
            rhythm, last, t, (), lambda a, b: listening.count_homes(reports, a, b)):
        t += ROUND_MS
    return last, t, heard


def run(seeds: int = SEEDS) -> list[dict]:
    homes = [pop.household(kind, delivery, seed) for kind in pop.KINDS
             for delivery in DELIVERIES for seed in range(seeds)]
    start, decided, heard = fleet_silence(homes)
    rows = []
    for h in homes:
        span = outage(h)
        down = replace(h, server_down=(span,))
        row = {"kind": h.kind, "delivery": h.delivery, "seed": h.seed,
               "cut_decided_min": (decided - (span[0] - h.t0)) / MINUTE_MS}
        fall = span[0] - int(FALL_BEFORE_H * HOUR_MS)
        cut = fp.FleetSilence(h.t0 + start, h.t0 + decided, h.t0 + heard)
        no_cut = fp.FleetSilence(h.t0 + start, h.t1 + DAY_MS, h.t1 + DAY_MS)  # never decided
        for name, hh, aware, deaf in (("none", h, True, None), ("aware", down, True, None),
                                      ("unaware", down, False, None),
                                      ("cut_aware", down, True, cut),
                                      ("cut_unaware", down, True, no_cut)):
            r, snaps = fp.replay_life(hh, [fall], aware=aware, deaf_at=deaf)
            row[name] = _counts(hh, r, span)
            row[f"fall_{name}"] = fp.replay_fall(hh, fall, False, snaps[fall],
                                                 aware=aware, deaf_at=deaf)[0]
        rows.append(row)
    return rows


def figures(seeds: int = SEEDS) -> list[dict]:
    t = time.perf_counter()
    rows = run(seeds)
    took = time.perf_counter() - t
    n = len(rows)

    def per100(name: str, i: int) -> float:
        return round(100.0 * sum(r[name][i] for r in rows) / n, 1)

    what = (f"{n} households ({len(pop.KINDS)} kinds x {', '.join(DELIVERIES)} x {seeds} "
            f"seeds), the server down {OUTAGE_H:g} h from day {OUTAGE_DAY} "
            f"{OUTAGE_FROM_H:02.0f}:00; counted in the {WINDOW_D:g} days from its start")
    return [
        figure("server_outage_family_alerts_per_100_households", per100("aware", 0), "alerts",
               per100("unaware", 0), f"{what}; baseline: rules that count the outage as her "
               f"silence; without the outage those days raise {per100('none', 0)}"),
        figure("server_outage_delivery_notices_per_100_households", per100("aware", 1),
               "notices", per100("unaware", 1), "poor_delivery notices to the coordinator "
               "that opened then (the radio blamed for the server's outage); baseline: rules "
               f"that count the reports it held as late; without the outage {per100('none', 1)}"),
        figure("server_outage_radio_words_per_100_households", per100("aware", 2), "checks",
               per100("unaware", 2), "placement checks that began to speak of the radio then; "
               f"baseline as above; without the outage {per100('none', 2)}"),
        figure("server_outage_fall_before_h_median", _median(rows, "fall_aware"), "h",
               _median(rows, "fall_unaware"), f"a fall with the light off {FALL_BEFORE_H:g} h "
               "before the outage: hours until the family is alerted; baseline: rules that "
               "alert every household at the restart; without the outage "
               f"{_median(rows, 'fall_none')} h"),
        figure("network_cut_decided_after_min", rows[0]["cut_decided_min"], "min", None,
               f"the same {OUTAGE_H:g} h as a network cut while the server runs: minutes "
               f"from the cut until the fleet's rhythm and five homes' own reports (these {n} households) decide "
               "it (listening.hear)"),
        figure("network_cut_family_alerts_per_100_households", per100("cut_aware", 0),
               "alerts", per100("cut_unaware", 0), "the network cut, rules reading the span "
               "the fleet decided; baseline: a server that does not decide it (the last pass)"),
        figure("network_cut_delivery_notices_per_100_households", per100("cut_aware", 1),
               "notices", per100("cut_unaware", 1), "poor_delivery notices that opened then"),
        figure("network_cut_radio_words_per_100_households", per100("cut_aware", 2), "checks",
               per100("cut_unaware", 2), "placement checks that began to speak of the radio"),
        figure("network_cut_fall_before_h_median", _median(rows, "fall_cut_aware"), "h",
               _median(rows, "fall_cut_unaware"), f"a fall {FALL_BEFORE_H:g} h before the cut: "
               "hours until the family is alerted; baseline: a server that does not decide it"),
        figure("server_outage_bench_seconds", round(took, 1), "s", None,
               f"{5 * n} replays of a household's life and of a fall"),
    ]


if __name__ == "__main__":
    rows = run()
    for r in rows:
        print(r)
    for f in figures():
        print(f"{f['name']}: {f['value']} (baseline {f['baseline']}) {f['note']}")
