# SPDX-License-Identifier: MIT
"""Evaluation cost against history: what a batch from a bulb in a household
with a year of records costs, now that an evaluation folds in only its new batches.

Households are simulated (sim/household.py) for 0, 14 and 365 days and their records written
by direct bulk inserts (as if they had arrived over that time), then each household is evaluated
once (its kept state built: not timed). Timed, ROUNDS times: every household's bulb posts one
new visit (store.ingest, which marks the household due) and a sweep evaluates the due ones. The
three worlds take their rounds in turn and each figure is the median round: on a shared machine
one fsync can take 40 ms, and a few such stalls in one world's rounds would otherwise make the
ratio (it moved from 0.25 to 0.82 between runs of the same code when each world ran its 4 rounds
alone; the mean over all rounds is in the note).

eval_ms_365d_household: ms per household evaluation in that sweep at 365 days of history;
baseline: the same at 14 days (goal ratio <= 1.5).
ingest_batches_per_s_365d: batches per second, ingest and the evaluation each one causes,
households with 365 days; baseline: the same with no history (goal ratio >= 0.5).
Both in-process on SQLite (the HTTP layer is measured in figures_ingest).

`python -m bench.figures_evaluation` prints the figures.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.run import figure
from mimamori import households as hh
from mimamori import kept, notify, sweeper
from mimamori.storage import Batch, Database, Store
from mimamori_firmware import record
from sim.household import Household, bulb_records
from sim.server_process import REPO

HOMES = 8
ROUNDS = 16
GAP_MS = 15 * 60_000  # between rounds: 16 rounds within the night's first hours (no day settles)
EPOCH = 0x5EED
START = datetime.fromisoformat("2026-01-01T00:00:00+09:00")


def _world(path: Path, days: int) -> tuple[Database, Store, dict[str, tuple[int, int]], int]:
    """HOMES households with `days` of records each; (db, store, device -> (last boot, next
    seq), now ms)."""
    db = Database(path)
    store = Store(db)
    hh.open_people(db)
    store.in_ingest.append(sweeper.mark_due)
    t0 = int(START.timestamp() * 1000)
    now = int((START + timedelta(days=max(days, 1))).timestamp() * 1000)
    heads: dict[str, tuple[int, int]] = {}
    with db.tx() as c:
        for h in range(HOMES):
            hh.add_household(c, t0, f"home-{h}")
            hh.add_watcher(c, t0, f"home-{h}", "Aiko", console=True)
    for h in range(HOMES):
        dev = store.register_device(t0, f"bulb-{h}", f"home-{h}")
        recs = bulb_records(Household(seed=300 + h).events(START, days), dev.id, seed=h) \
            if days else []
        boot = max((r.boot for r in recs), default=1)
        seq = max((r.seq for r in recs), default=0)
        with db.tx() as c:
            c.execute("INSERT INTO journals (device, epoch, last_boot, last_req, ack, lost, "
                      "ordinal, first_heard_at, last_heard_at) VALUES (?, ?, ?, 1, ?, 0, 1, ?, ?)",
                      (dev.id, EPOCH, boot, seq, t0, now))
            c.executemany(
                "INSERT INTO records (device, epoch, seq, boot, up_ms, kind, sub, aux, arg, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(dev.id, EPOCH, r.seq, r.boot, r.up_ms, r.kind, r.sub, r.aux, r.arg,
                  r.received_at) for r in recs if r.received_at < now])
        heads[dev.id] = (boot, seq + 1)
    return db, store, heads, now


def _round(db: Database, store: Store, heads: dict[str, tuple[int, int]], at: int,
           cfg: notify.NotifierSettings) -> tuple[float, float]:
    """One new visit from every bulb, then a sweep: (seconds ingesting, seconds sweeping)."""
    ingest_s = 0.0
    for dev, (boot, seq) in list(heads.items()):
        boot += 1
        up = 90_000
        rows = [(seq, boot, 5, record.K_POWER_ON, 1, 0, 1),
                (seq + 1, boot, 1000, record.K_ANCHOR, record.A_SERVER, 0,
                 (at - up) // 1000 + 1),
                (seq + 2, boot, up, record.K_OFF, 0, 0, 0)]
        b = Batch(dev, EPOCH, seq, boot, 1, rows, 24 + 3 * record.SIZE, up + 200)
        t = time.perf_counter()
        store.ingest(b, at)
        ingest_s += time.perf_counter() - t
        heads[dev] = (boot, seq + 3)
    t = time.perf_counter()
    r = sweeper.sweep(db, at + 1000, cfg)
    eval_s = time.perf_counter() - t
    if r.failed:
        raise RuntimeError(f"evaluation failed: {r.failed}")
    if len(r.evaluated) != len(heads):
        raise RuntimeError(f"{len(r.evaluated)} evaluations, {len(heads)} batches")
    return ingest_s, eval_s


def _run(paths: dict[int, Path], cfg: notify.NotifierSettings) -> dict[int, list[tuple[float, float]]]:
    """Per history length (days): each round's (ingest s, sweep s). The worlds take their
    rounds in turn (each first in turn), so a busy spell of the machine falls on all of them."""
    worlds = {}
    for days, path in paths.items():
        db, store, heads, now = _world(path, days)
        for h in range(HOMES):  # the kept state built once (a restart, or the first evaluation)
            sweeper.evaluate_household(db, f"home-{h}", now, cfg, store)
        worlds[days] = (db, store, heads, now)
    out: dict[int, list[tuple[float, float]]] = {d: [] for d in worlds}
    order = list(worlds)
    try:
        for k in range(ROUNDS):
            for days in order[k % len(order):] + order[:k % len(order)]:
                db, store, heads, now = worlds[days]
                out[days].append(_round(db, store, heads, now + (k + 1) * GAP_MS, cfg))
    finally:
        for db, *_ in worlds.values():
            db.close()
    return out


def _per_eval_ms(rounds: list[tuple[float, float]]) -> float:
    return 1000 * statistics.median(e for _, e in rounds) / HOMES


def _rate(rounds: list[tuple[float, float]]) -> float:
    return HOMES / statistics.median(i + e for i, e in rounds)


def _mean_rate(rounds: list[tuple[float, float]]) -> float:
    return HOMES * len(rounds) / sum(i + e for i, e in rounds)


def figures() -> list[dict]:
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-eval-", dir=REPO / "var"))
    cfg = notify.NotifierSettings(console=open(os.devnull, "w"))  # noqa: SIM115 - kept for the run
    try:
        got = _run({0: work / "d0.db", 14: work / "d14.db", 365: work / "d365.db"}, cfg)
        kept_models = kept.MODELS_KEPT
        kept.MODELS_KEPT = 0  # as with more households per instance than models kept
        try:
            cold = _per_eval_ms(_run({365: work / "d365cold.db"}, cfg)[365])
        finally:
            kept.MODELS_KEPT = kept_models
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ms0, ms14, ms365 = (_per_eval_ms(got[d]) for d in (0, 14, 365))
    rate0, rate14, rate365 = (_rate(got[d]) for d in (0, 14, 365))
    what = (f"{HOMES} households x 1 bulb, records by bulk insert, kept state built first; "
            f"{ROUNDS} rounds of one new visit per bulb then a sweep, the worlds taking turns; "
            "median round; SQLite, in-process")
    return [
        figure("eval_ms_365d_household", round(ms365, 2), "ms", round(ms14, 2),
               "per household evaluation at 365 days of history; baseline: 14 days; "
               f"{cold:.1f} ms when the parsed model is not kept in memory (more households "
               f"per instance than kept.MODELS_KEPT = {kept.MODELS_KEPT}); " + what),
        figure("ingest_batches_per_s_365d", round(rate365, 1), "batch/s", round(rate0, 1),
               "ingest + the evaluation each batch causes, 365 days of history; baseline: no "
               f"history; 14 days: {rate14:.1f} batch/s, {ms14:.1f} ms; no history: "
               f"{ms0:.1f} ms per evaluation; over all rounds (mean, not median): "
               f"{_mean_rate(got[365]):.1f} vs {_mean_rate(got[0]):.1f} batch/s; " + what),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
