# SPDX-License-Identifier: MIT
"""An upload costs the same whether its bulb has a year of history or none: every statement of
the ingest, of the answer (settings, a firmware update due) and of the evaluation it causes
reads an index range bounded by the batch or by the evaluation's window, never the bulb's or the
household's whole history. Counted in SQLite virtual-machine steps (work done, not time)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from mimamori import households as hh
from mimamori import notify, ota, sweeper
from mimamori.sql import Database
from mimamori.storage import Batch, Store
from mimamori_firmware import record
from sim.household import Household, bulb_records

EPOCH = 0x5EED
START = datetime.fromisoformat("2026-01-01T00:00:00+09:00")
T0 = int(START.timestamp() * 1000)


class World:
    """One household, one bulb with `days` of records written as if they had arrived then."""

    def __init__(self, path: Path, days: int, history: int | None = None):
        self.db = Database(path)
        self.store = Store(self.db)
        hh.open_people(self.db)
        self.store.in_ingest.append(sweeper.mark_due)
        self.cfg = notify.NotifierSettings(console=open(os.devnull, "w"))  # noqa: SIM115
        self.now = int((START + timedelta(days=max(days, 1))).timestamp() * 1000)
        with self.db.tx() as c:
            hh.add_household(c, T0, "home")
            hh.add_watcher(c, T0, "home", "Aiko", console=True)
        self.dev = self.store.register_device(T0, "bulb", "home").id
        recs = bulb_records(Household(seed=7).events(START, days), self.dev, seed=1) \
            if days else []
        recs = [r for r in recs if r.received_at < self.now]
        self.boot = max((r.boot for r in recs), default=1)
        self.seq = max((r.seq for r in recs), default=0) + 1
        with self.db.tx() as c:
            c.execute("INSERT INTO journals (device, epoch, last_boot, last_req, ack, lost, "
                      "ordinal, first_heard_at, last_heard_at) VALUES (?, ?, ?, 1, ?, 0, 1, ?, "
                      "?)", (self.dev, EPOCH, self.boot, self.seq - 1, T0, self.now))
            c.executemany(
                "INSERT INTO records (device, epoch, seq, boot, up_ms, kind, sub, aux, arg, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(self.dev, EPOCH, r.seq, r.boot, r.up_ms, r.kind, r.sub, r.aux, r.arg,
                  r.received_at) for r in recs])
        self.records = len(recs)
        sweeper.evaluate_household(self.db, "home", self.now, self.cfg, self.store)

    def visit(self, k: int) -> Batch:
        """The k-th new visit (k >= 1), sent k hours after now."""
        self.boot += 1
        at = self.now + k * 3_600_000
        up = 90_000
        rows = [(self.seq, self.boot, 5, record.K_POWER_ON, 1, 0, 1),
                (self.seq + 1, self.boot, 1000, record.K_ANCHOR, record.A_SERVER, 0,
                 (at - up) // 1000 + 1),
                (self.seq + 2, self.boot, up, record.K_OFF, 0, 0, 0)]
        b = Batch(self.dev, EPOCH, self.seq, self.boot, 1, rows, 24 + 3 * record.SIZE, up + 200)
        self.seq += 3
        return b

    def steps(self, work: Callable[[], object]) -> int:
        """SQLite VM steps (in hundreds) that work() makes on the write connection and this
        thread's read connection."""
        n = [0]

        def tick() -> int:
            n[0] += 1
            return 0

        conns = [self.db._conn, self.db._reader()]
        for conn in conns:
            conn.set_progress_handler(tick, 100)
        try:
            work()
        finally:
            for conn in conns:
                conn.set_progress_handler(None, 0)
        return n[0]

    def upload_and_evaluate(self, k: int) -> int:
        b = self.visit(k)
        at = self.now + k * 3_600_000

        def work() -> None:
            self.store.ingest(b, at)
            ota.on_upload(self.store, self.dev, 3, at)
            r = sweeper.sweep(self.db, at + 1000, self.cfg)
            assert r.evaluated == ["home"] and not r.failed

        return self.steps(work)


def test_an_upload_and_its_evaluation_do_the_same_work_at_60_days_and_at_a_year(tmp_path):
    month, year = World(tmp_path / "m.db", 60), World(tmp_path / "y.db", 365)
    assert year.records > 5 * month.records  # (about 28,000 against 4,700)
    for k in (1, 2, 3):
        m, y = month.upload_and_evaluate(k), year.upload_and_evaluate(k)
        assert y <= 1.3 * m + 20, f"visit {k}: {y} against {m} hundred steps"


def test_the_ingest_itself_does_the_same_work_with_no_history_and_a_year(tmp_path):
    none, year = World(tmp_path / "n.db", 0), World(tmp_path / "y.db", 365)
    for k in (1, 2):
        got = []
        for w in (none, year):
            b, at = w.visit(k), w.now + k * 3_600_000
            got.append(w.steps(lambda w=w, b=b, at=at: w.store.ingest(b, at)))
        assert got[1] <= 1.2 * got[0] + 5, f"visit {k}: {got[1]} against {got[0]} hundred steps"


def test_an_update_offer_reads_the_bulbs_update_records_not_its_history(tmp_path):
    """A bulb an update is due for is answered with the offer unless it rolled that version
    back or refused it: that check reads its K_OTA records only."""
    worlds = [World(tmp_path / "n.db", 0), World(tmp_path / "y.db", 365)]
    counts = []
    for w in worlds:
        ota.open_ota(w.store)
        with w.db.tx() as c:
            c.execute("INSERT INTO releases (version, name, manifest, size, bundle, added_at) "
                      "VALUES (7, 'r7', '{}', 1000, ?, 0)", (b"",))
            c.execute("INSERT INTO ota_targets (device, version, not_before, set_at) "
                      "VALUES (?, 7, 0, 0)", (w.dev,))
        got: list = []
        counts.append(w.steps(lambda w=w, got=got: got.append(
            ota.on_upload(w.store, w.dev, 3, w.now))))
        assert got == [{"v": 7, "size": 1000}]  # offered: it never rolled 7 back
    none, year = counts
    assert year <= 1.2 * none + 5, f"{year} against {none} hundred steps"


def test_a_database_opened_where_a_freed_one_lived_still_gets_its_update_tables(tmp_path,
                                                                               monkeypatch):
    """ota.open_ota remembered migrated databases by id(): a database opened after another was
    freed often takes its address (and so its id), and its uploads then failed on missing
    tables. Here every object has one id, as when the address is taken over each time."""
    monkeypatch.setattr(ota, "id", lambda obj: 1, raising=False)
    first = Store(Database(tmp_path / "first.db"))
    ota.open_ota(first)
    first.close()
    second = Store(Database(tmp_path / "second.db"))
    try:
        dev = second.register_device(T0, "bulb")
        assert ota.on_upload(second, dev.id, 3, T0) is None  # no update for it; and no error
        with second.db.read() as c:
            assert "ota_bulbs" in c.tables()
    finally:
        second.close()
