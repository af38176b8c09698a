# SPDX-License-Identifier: MIT
"""Evaluation cost against history (issue 18 part B): what a batch from a bulb in a household
with a year of records costs, now that an evaluation folds in only its new batches.

Households are simulated (sim/household.py) for 0, 14 and 365 days and their records written
by direct bulk inserts (as if they had arrived over that time), then each household is evaluated
once (its kept state built: not timed). Timed, ROUNDS times: every household's bulb posts one
new visit (store.ingest, which marks the household due) and a sweep evaluates the due ones.

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
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.run import figure
from firmware import record
from sim.household import Household, bulb_records
from sim.server import households as hh
from sim.server import kept, notify, sweeper
from sim.server.process import REPO
from sim.server.storage import Batch, Database, Store

HOMES = 8
ROUNDS = 4
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
                  int(r.received_at * 1000)) for r in recs if r.received_at * 1000 < now])
        heads[dev.id] = (boot, seq + 1)
    return db, store, heads, now


def _run(path: Path, days: int, cfg: notify.Config) -> tuple[float, float]:
    """(ms per household evaluation, batches per second with their evaluations)."""
    db, store, heads, now = _world(path, days)
    for h in range(HOMES):  # the kept state built once (a restart, or the first evaluation)
        sweeper.evaluate_household(db, f"home-{h}", now, cfg, store)
    ingest_s = eval_s = 0.0
    evaluated = 0
    for k in range(ROUNDS):
        at = now + (k + 1) * 3_600_000
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
        eval_s += time.perf_counter() - t
        evaluated += len(r.evaluated)
        if r.failed:
            raise RuntimeError(f"evaluation failed: {r.failed}")
    db.close()
    if evaluated != HOMES * ROUNDS:
        raise RuntimeError(f"{evaluated} evaluations, {HOMES * ROUNDS} batches")
    return 1000 * eval_s / evaluated, HOMES * ROUNDS / (ingest_s + eval_s)


def figures() -> list[dict]:
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-eval-", dir=REPO / "var"))
    cfg = notify.Config(console=open(os.devnull, "w"))  # noqa: SIM115 - kept for the run
    try:
        ms0, rate0 = _run(work / "d0.db", 0, cfg)
        ms14, rate14 = _run(work / "d14.db", 14, cfg)
        ms365, rate365 = _run(work / "d365.db", 365, cfg)
        kept_models = kept.MODELS_KEPT
        kept.MODELS_KEPT = 0  # as with more households per instance than models kept
        try:
            cold, _ = _run(work / "d365cold.db", 365, cfg)
        finally:
            kept.MODELS_KEPT = kept_models
    finally:
        shutil.rmtree(work, ignore_errors=True)
    what = (f"{HOMES} households x 1 bulb, records by bulk insert, kept state built first; "
            f"{ROUNDS} rounds of one new visit per bulb then a sweep; SQLite, in-process")
    return [
        figure("eval_ms_365d_household", round(ms365, 2), "ms", round(ms14, 2),
               "per household evaluation at 365 days of history; baseline: 14 days; "
               f"{cold:.1f} ms when the parsed model is not kept in memory (more households "
               f"per instance than kept.MODELS_KEPT = {kept.MODELS_KEPT}); " + what),
        figure("ingest_batches_per_s_365d", round(rate365, 1), "batch/s", round(rate0, 1),
               "ingest + the evaluation each batch causes, 365 days of history; baseline: no "
               f"history; 14 days: {rate14:.1f} batch/s, {ms14:.1f} ms; no history: "
               f"{ms0:.1f} ms per evaluation; " + what),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
