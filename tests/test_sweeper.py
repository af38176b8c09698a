# SPDX-License-Identifier: MIT
"""The sweeper: only due households are evaluated, found through the next_check index; late
records slot in; the weekly digest; one broken household does not stop the others."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from mimamori import alerts, notify, sweeper
from mimamori import households as hh
from mimamori.storage import Database, Store
from sim.batch_client import BatchSender
from tests.alerts_rig import visit

JST = timezone(timedelta(hours=9))
H = 3600.0
T0 = datetime(2026, 3, 2, 10, 42, tzinfo=JST).timestamp()
MS = 1000
CFG = notify.NotifierSettings()


def world(where, n=1, rule="fixed"):
    """n households, each with a watcher and a bulb, on a store (a URL or a folder)."""
    db = Database(where if isinstance(where, str) else where / "s.db")
    store = Store(db)
    hh.open_people(db)
    bulbs = []
    with db.tx() as c:
        for i in range(n):
            hh.add_household(c, int((T0 - H) * MS), f"h{i}", settings={"activity_rule": rule})
            hh.add_watcher(c, int((T0 - H) * MS), f"h{i}", "Aiko", console=True)
    for i in range(n):
        dev = store.register_device(int((T0 - H) * MS), f"bulb{i}", f"h{i}")
        bulbs.append(BatchSender(dev.id, dev.key_bytes))
    return db, store, bulbs


def next_checks(db):
    with db.tx() as c:
        return dict(c.all("SELECT id, next_check FROM households"))


def test_due_households_are_found_through_the_index_not_a_scan(tmp_path):
    db, _, _ = world(tmp_path, n=1)
    with db.tx() as c:
        plan = " ".join(str(r) for r in c.all(
            "EXPLAIN QUERY PLAN SELECT id FROM households WHERE next_check <= ? "
            "ORDER BY next_check LIMIT ?", (0, 10)))
    assert "SEARCH households USING" in plan and "households_next_check" in plan, plan
    assert "SCAN" not in plan, plan


def test_only_households_whose_deadline_has_come_are_evaluated(db_url):
    db, store, bulbs = world(db_url, n=5)
    for i, b in enumerate(bulbs):
        visit(store, b, T0 + i * H)  # their 24 h deadlines are an hour apart
    r = sweeper.sweep(db, int((T0 + 5 * H) * MS), CFG)  # all new: evaluated once
    assert sorted(r.evaluated) == [f"h{i}" for i in range(5)]
    assert next_checks(db) == {f"h{i}": int((T0 + i * H + 24 * H) * MS) for i in range(5)}
    assert sweeper.sweep(db, int((T0 + 20 * H) * MS), CFG).evaluated == []
    r = sweeper.sweep(db, int((T0 + 26.5 * H) * MS), CFG)
    assert sorted(r.evaluated) == ["h0", "h1", "h2"]
    with db.tx() as c:
        opened = sorted(a.household for a in alerts.list_alerts(c, active_only=True))
    assert opened == ["h0", "h1", "h2"]
    assert sweeper.sweep(db, int((T0 + 26.5 * H) * MS), CFG).evaluated == []


def test_records_arriving_a_day_late_slot_in_and_clear_the_alert_with_their_time(db_url):
    db, store, (b,) = world(db_url)
    visit(store, b, T0)
    sweeper.sweep(db, int((T0 + 25 * H) * MS), CFG)
    with db.tx() as c:
        (a,) = alerts.list_alerts(c, active_only=True)
    # the bulb had switched on at 20:00 but its report only arrives now (poor radio)
    evening = datetime(2026, 3, 2, 20, 0, tzinfo=JST).timestamp()
    visit(store, b, evening, received_s=T0 + 25.5 * H)
    sweeper.on_ingest(store, b.device, int((T0 + 25.5 * H) * MS), CFG)
    with db.tx() as c:
        got = alerts.get(c, a.id)
    assert got.state == "cleared" and "20:00" in (got.clear_evidence or "")
    assert next_checks(db)["h0"] == int((evening + 24 * H) * MS)


def test_weekly_digest_tells_the_watchers_all_is_well_in_one_line(db_url):
    db, store, (b,) = world(db_url)
    for day in range(7):
        for hour in (10, 13, 21):
            visit(store, b, datetime(2026, 3, 2 + day, hour, 5, tzinfo=JST).timestamp())
    due = int((T0 - H) * MS + 7 * 24 * H * MS)
    sweeper.sweep(db, due - 1000, CFG)
    assert not [o for o in notify.outbox(db) if o.kind == "digest"]
    sweeper.sweep(db, due, CFG)
    (d,) = [o for o in notify.outbox(db) if o.kind == "digest"]
    assert d.subject == "【みまもり電球】h0：今週のまとめ（変わりありません）"
    assert "この7日間：点灯 21 回、7/7 日で利用、朝の最初の点灯はだいたい 10:05、お知らせ 0 件" in d.body
    assert next_checks(db)["h0"] <= due + 7 * 24 * 3600 * MS


def test_one_broken_household_is_retried_later_and_does_not_stop_the_others(db_url):
    db, _store, _bulbs = world(db_url, n=3)
    with db.tx() as c:
        c.execute("UPDATE households SET settings = ? WHERE id = 'h1'",
                  (json.dumps({"no_activity_h": "ten"}),))
    now = int(T0 * MS)
    r = sweeper.sweep(db, now, CFG)
    assert sorted(r.evaluated) == ["h0", "h2"] and "no_activity_h" in r.failed["h1"]
    assert next_checks(db)["h1"] == now + 3600 * MS


def test_a_change_sets_the_next_check_and_a_coming_due_only_brings_it_forward(tmp_path):
    db, _, _ = world(tmp_path, n=2)
    with db.tx() as c:
        hh.recheck_at(c, "h0", 5_000)
        hh.recheck_at(c, "h1", 5_000)
    with db.tx() as c:
        assert hh.recheck_by(c, "h0", 9_000) == 0  # later: the deadline already set stands
        assert hh.recheck_by(c, "h1", 1_000) == 1
        assert hh.recheck_at(c, "nobody", 1_000) == 0
    assert next_checks(db) == {"h0": 5_000, "h1": 1_000}
    with db.tx() as c:
        hh.recheck_at(c, "h0", 9_000)  # what changed may move every deadline, later too
        c.execute("UPDATE households SET next_check = NULL WHERE id = 'h1'")
        hh.recheck_by(c, "h1", 7_000)  # a household with nothing due gets this one
    assert next_checks(db) == {"h0": 9_000, "h1": 7_000}
