# SPDX-License-Identifier: MIT
"""Storage for many instances (docs/scaling.md): ingest on PostgreSQL with three instances, and
the bytes a household-year takes in each store.

ingest_records_per_s_pg_3x: 1,000 bulbs each post a day's 24-record batch through nginx to three
server instances on one PostgreSQL (Debian's, fsync and synchronous_commit on: an acknowledged
record is on disk). Baseline: the same load through the same nginx to one instance on SQLite
(synchronous=FULL). ingest_records_per_s_pg_1x separates the store from the instance count.
Requests are built and signed before the clock starts. All of it shares this machine's cores
(`os.cpu_count()` is in the note): three instances, PostgreSQL, nginx and the client.

db_bytes_per_household_year: households simulated for a year (sim/household.py: visits, alive
marks, anchors; 95 % of visits connect), their records ingested batch by batch as they would
arrive, and every household evaluated weekly (alerts, the weekly digest in the outbox). Bytes
on disk per household-year above an empty database, for SQLite (the file after a checkpoint)
and PostgreSQL (pg_database_size). Baseline: the same records as the bulb's flash holds them
(24 bytes each).

`python -m bench.figures_scale` prints the figures.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path

from bench.figures_ingest import PER_BATCH, _day, _raw, _send_all
from bench.run import figure
from mimamori import households as hh
from mimamori import notify, sweeper
from mimamori.storage import Batch, Database, Store
from mimamori.web import auth
from mimamori_firmware import record
from sim import nginx
from sim.batch_client import BatchSender
from sim.household import Household, bulb_records
from sim.pgserver import PgServer
from sim.server_process import REPO, ServerProcess, free_port

DEVICES = 1000
LANES = 12  # concurrent keep-alive connections (a bulb keeps to one)
HOMES = 4  # households simulated for a year (per store)
TZ_START = datetime.fromisoformat("2026-01-01T00:00:00+09:00")


# ---------------------------------------------------------------------------------------------
# ingest through nginx


def _ingest_rate(url: str, instances: int, work: Path) -> float:
    store = Store.open(url)
    bulbs = []
    for i in range(DEVICES):
        dev = store.register_device(0, f"bulb-{i:04d}")
        bulbs.append(BatchSender(dev.id, dev.key_bytes, epoch=0x1000 + i))
    store.close()
    env = {"MIMAMORI_SWEEP_S": "0", "MIMAMORI_DB_POOL": str(LANES)}
    servers = [ServerProcess(url, port=free_port(), env=env) for _ in range(instances)]
    try:
        for s in servers:
            s.start(timeout=60)
        with nginx.Nginx([s.port for s in servers]) as proxy:
            reqs = [[_raw(b.request(_day(b, PER_BATCH)), proxy.port)] for b in bulbs]
            secs, ok = _send_all(proxy.port, reqs, LANES)
    finally:
        for s in servers:
            s.stop()
    if ok != DEVICES:
        raise RuntimeError(f"only {ok}/{DEVICES} batches were accepted on {url[:40]}")
    store = Store.open(url)
    try:
        with store.db.read() as c:
            (n,) = c.one("SELECT COUNT(*) FROM records") or (0,)
    finally:
        store.close()
    if n != DEVICES * PER_BATCH:
        raise RuntimeError(f"{n} records stored, {DEVICES * PER_BATCH} sent")
    return DEVICES * PER_BATCH / secs


# ---------------------------------------------------------------------------------------------
# a household-year on disk


def _year(db: Database) -> int:
    """Simulate HOMES households for a year into db; the record count."""
    store = Store(db)
    auth.open_web(db)
    cfg = notify.NotifierSettings(console=open(os.devnull, "w"))  # noqa: SIM115 - kept for the run
    t0 = int(TZ_START.timestamp() * 1000)
    batches: list[tuple[int, str, Batch]] = []
    with db.tx() as c:
        for h in range(HOMES):
            hh.add_household(c, t0, f"home-{h}")
            for name in ("Aiko", "Ken"):
                hh.add_watcher(c, t0, f"home-{h}", name, email=f"{name}.{h}@example.org")
    n = 0
    for h in range(HOMES):
        dev = store.register_device(t0, f"bulb-{h}", f"home-{h}")
        visits = Household(seed=100 + h).events(TZ_START, 365)
        recs = bulb_records(visits, dev.id, seed=h)
        n += len(recs)
        group: list = []
        reqs: dict[int, int] = {}  # a long visit sends several batches: its request counter
        for r in recs + [None]:
            if group and (r is None or r.received_at - group[-1].received_at > 60_000):
                rows = [(x.seq, x.boot, x.up_ms, x.kind, x.sub, x.aux, x.arg) for x in group]
                boot = group[-1].boot
                reqs[boot] = reqs.get(boot, 0) + 1
                b = Batch(dev.id, 0x5EED, group[0].seq, boot, reqs[boot], rows,
                          24 + record.SIZE * len(rows), group[-1].up_ms + 500)
                batches.append((group[-1].received_at + 1000, f"home-{h}", b))
                group = []
            if r is not None:
                group.append(r)
    batches.sort(key=lambda x: x[0])
    week = 7 * 86_400_000
    next_eval = t0 + week
    for at, _, b in batches:
        while at >= next_eval:
            for h in range(HOMES):
                sweeper.evaluate_household(db, f"home-{h}", next_eval, cfg, store)
            with db.tx() as c:  # the delivery worker would have sent them
                c.execute("UPDATE outbox SET state = 'sent', sent_at = next_attempt_at "
                          "WHERE state = 'pending'")
            next_eval += week
        store.ingest(b, at)
    return n


def _sqlite_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)  # the WAL folded into the file, as a quiet server has it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + "-*"))


def _pg_bytes(url: str) -> int:
    db = Database(url)
    try:
        with db.read() as c:
            (n,) = c.one("SELECT pg_database_size(current_database())") or (0,)
    finally:
        db.close()
    return int(n)


def _empty(db: Database) -> None:
    Store(db)
    auth.open_web(db)
    db.close()


def figures() -> list[dict]:
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=REPO / "var"))
    cores = os.cpu_count()
    out = []
    try:
        with PgServer(fsync=True) as pg:
            sqlite_rate = _ingest_rate(str(work / "ingest.db"), 1, work)
            pg1 = _ingest_rate(pg.create_db("ingest1"), 1, work)
            pg3 = _ingest_rate(pg.create_db("ingest3"), 3, work)
            note = (f"{DEVICES} bulbs x {PER_BATCH}-record batches through nginx, {LANES} "
                    f"keep-alive connections, all on this machine's {cores} cores; PostgreSQL "
                    "fsync+synchronous_commit on; baseline: one instance on SQLite "
                    "synchronous=FULL, same load, same proxy")
            out.append(figure("ingest_records_per_s_pg_3x", round(pg3, 1), "rec/s",
                              round(sqlite_rate, 1), "three instances on one PostgreSQL; "
                              + note))
            out.append(figure("ingest_records_per_s_pg_1x", round(pg1, 1), "rec/s",
                              round(sqlite_rate, 1), "one instance on PostgreSQL; " + note))

            empty_sqlite = work / "empty.db"
            _empty(Database(empty_sqlite))
            base_sqlite = _sqlite_bytes(empty_sqlite)
            year_sqlite = work / "year.db"
            n = _year(Database(year_sqlite))
            per_sqlite = (_sqlite_bytes(year_sqlite) - base_sqlite) / HOMES
            name = "empty_" + secrets.token_hex(3)
            _empty(Database(pg.create_db(name)))
            base_pg = _pg_bytes(pg.url(name))
            year_url = pg.create_db("year")
            _year(Database(year_url))
            per_pg = (_pg_bytes(year_url) - base_pg) / HOMES
            raw = n * record.SIZE / HOMES
            what = (f"{HOMES} simulated households x 365 days, {n / HOMES:,.0f} records each "
                    "(visits, alive marks, anchors), batches as they arrive, weekly evaluation "
                    "and digest; baseline: the records' own bytes in the bulb's flash")
            out.append(figure("db_bytes_per_household_year", round(per_sqlite), "B",
                              round(raw), "SQLite file; " + what))
            out.append(figure("db_bytes_per_household_year_pg", round(per_pg), "B", round(raw),
                              "PostgreSQL pg_database_size; " + what))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    for f in figures():
        print(f)
