# SPDX-License-Identifier: MIT
"""Several workers on one database, on SQLite and on PostgreSQL: what the old whole-file lock
used to guarantee now holds through row locks and leases.

Each "instance" here is its own Database (its own connections), as a second server process
would have; threads make them meet at the same moment. The end state is what is asserted,
never how long anything took.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mimamori import alerts, api, notify, sql, sweeper
from mimamori import households as hh
from mimamori.app import create_app
from mimamori.ingest import parse_batch
from mimamori.storage import Database, Replayed, Store
from sim.batch_client import BatchSender
from sim.server_process import REPO, ServerProcess
from sim.smtp_sink import SmtpSink
from tests.alerts_rig import visit
from tests.waiting import wait_for

JST = timezone(timedelta(hours=9))
H = 3600.0
T0 = datetime(2026, 3, 2, 10, 42, tzinfo=JST).timestamp()
MS = 1000
LATER = int((T0 + 25 * H) * MS)  # every household below has been quiet 25 h: each alerts
CFG = notify.NotifierSettings()


def homes(url: str, n: int, watchers: int = 2) -> tuple[Database, Store, list[BatchSender]]:
    """n households, each with `watchers` console watchers and one bulb visited at T0."""
    db = Database(url)
    store = Store(db)
    hh.open_people(db)
    born = int((T0 - H) * MS)
    with db.tx() as c:
        for i in range(n):
            hh.add_household(c, born, f"h{i:02d}", settings={"activity_rule": "fixed"})
            for k in range(watchers):
                hh.add_watcher(c, born, f"h{i:02d}", f"W{k}", console=True)
        c.execute("UPDATE outbox SET state = 'sent'")  # the invitations went out long ago
    bulbs = []
    for i in range(n):
        dev = store.register_device(born, f"bulb{i:02d}", f"h{i:02d}")
        bulbs.append(BatchSender(dev.id, dev.key_bytes))
        visit(store, bulbs[-1], T0)
    return db, store, bulbs


def together(fns: list[Any]) -> list[Any]:
    """Run the callables at the same moment (a barrier), each in its own thread; their results
    or the exceptions they raised."""
    gate = threading.Barrier(len(fns))

    def go(fn: Any) -> Any:
        gate.wait(timeout=60)
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - the caller looks at what each one got
            return e

    with ThreadPoolExecutor(len(fns)) as pool:
        return list(pool.map(go, fns))


def test_two_instances_sweeping_at_once_share_the_households_and_alert_each_once(db_url):
    db, _, _ = homes(db_url, 24)
    other = Database(db_url)
    try:
        a, b = together([lambda: sweeper.sweep(db, LATER, CFG, chunk=4),
                         lambda: sweeper.sweep(other, LATER, CFG, chunk=4)])
        assert not a.failed and not b.failed
        # claimed with leases: each household evaluated by one of the two, all of them by one
        assert not set(a.evaluated) & set(b.evaluated)
        assert sorted(a.evaluated + b.evaluated) == [f"h{i:02d}" for i in range(24)]
        with db.read() as c:
            opened = c.all("SELECT household, COUNT(*) FROM alerts GROUP BY household")
            told = c.all("SELECT watcher, COUNT(*) FROM outbox WHERE kind = 'alert' "
                         "GROUP BY watcher")
        assert sorted(opened) == [(f"h{i:02d}", 1) for i in range(24)]
        assert len(told) == 48 and {n for _, n in told} == {1}
        # and again, at once, at the same instant: nothing is due, nothing doubles
        together([lambda: sweeper.sweep(db, LATER, CFG), lambda: sweeper.sweep(other, LATER, CFG)])
        with db.read() as c:
            assert c.one("SELECT COUNT(*) FROM outbox WHERE kind = 'alert'") == (48,)
    finally:
        other.close()


def test_a_sweeper_that_died_leaves_its_households_to_the_others_once_its_lease_runs_out(
        db_url, monkeypatch):
    db, _, _ = homes(db_url, 3)
    taken = sweeper.claim_due(db, LATER, 10, owner="a-process-that-then-died")
    assert sorted(taken) == ["h00", "h01", "h02"]
    assert sweeper.sweep(db, LATER, CFG).evaluated == []  # held: nobody else takes them
    real = sql.lease_now_ms
    monkeypatch.setattr(sql, "lease_now_ms", lambda: real() + sweeper.LEASE_MS + 1)
    assert sorted(sweeper.sweep(db, LATER, CFG).evaluated) == ["h00", "h01", "h02"]
    with db.read() as c:
        assert c.one("SELECT COUNT(*) FROM alerts") == (3,)
        assert c.one("SELECT COUNT(*) FROM households WHERE lease_owner IS NOT NULL") == (0,)


def test_an_upload_evaluating_beside_a_sweep_never_opens_an_alert_the_upload_cleared(db_url):
    """The sweep of one instance decides on what it read; the bulb's switch-on arrives on
    another meanwhile. The later write must not reopen what the switch-on cleared."""
    db, store, (bulb,) = homes(db_url, 1)
    sweeper.sweep(db, LATER, CFG)
    with db.read() as c:
        (a,) = alerts.list_alerts(c, "h00", active_only=True)
    stale = sweeper._prepare(db, store, "h00", LATER + 60_000)  # decided: still quiet
    visit(store, bulb, T0 + 25 * H)  # the light comes on, on another instance
    sweeper.evaluate_household(Database(db_url), "h00", LATER + 130_000, CFG)
    with db.tx() as c:  # the slow sweep writes now: its inputs changed, it decides again
        sweeper._commit(c, store, stale, LATER + 140_000, CFG, None)
    with db.read() as c:
        states = [x.state for x in alerts.list_alerts(c, "h00")]
        events = c.all("SELECT kind FROM alert_events WHERE alert = ? ORDER BY n", (a.id,))
    assert states == ["cleared"]
    assert [k for (k,) in events] == ["opened", "cleared"]


def test_two_watchers_claiming_at_once_one_goes_and_the_other_is_told_who(db_url):
    db, _, _ = homes(db_url, 1)
    sweeper.sweep(db, LATER, CFG)
    with db.read() as c:
        (a,) = alerts.list_alerts(c, "h00", active_only=True)
        w0, w1 = (w.id for w in hh.watchers(c, "h00"))
    other = Database(db_url)
    try:
        def claim(d: Database, wid: str) -> Any:
            with d.tx() as c:
                return alerts.claim(c, a.id, wid, LATER + 60_000, CFG)

        got = together([lambda: claim(db, w0), lambda: claim(other, w1)])
    finally:
        other.close()
    won = [g for g in got if isinstance(g, alerts.Alert)]
    lost = [g for g in got if isinstance(g, alerts.Conflict)]
    assert len(won) == 1 and len(lost) == 1, got
    assert "W0" in str(lost[0]) or "W1" in str(lost[0])
    with db.read() as c:
        kinds = [k for (k,) in c.all("SELECT kind FROM alert_events WHERE alert = ? "
                                     "ORDER BY n", (a.id,))]
        told = c.all("SELECT watcher FROM outbox WHERE kind = 'claimed'")
    assert kinds == ["opened", "claimed"]
    assert [w for (w,) in told] == [w1 if won[0].claimed_by == w0 else w0]


def test_the_same_upload_arriving_twice_at_once_is_stored_once_and_the_copy_refused(db_url):
    db, store, (bulb,) = homes(db_url, 1)
    other = Store(Database(db_url))
    try:
        for _ in range(10):  # ten rounds: a race that slips through once fails the test
            req = bulb.request([bulb.new_boot()])
            batch = parse_batch(bulb.device, req.body)
            got = together([lambda b=batch: store.ingest(b, LATER),
                            lambda b=batch: other.ingest(b, LATER)])
            assert sum(isinstance(g, Replayed) for g in got) == 1, got
            assert sum(not isinstance(g, Exception) for g in got) == 1, got
    finally:
        other.close()
    with db.read() as c:
        assert c.one("SELECT COUNT(*) FROM batches WHERE device = ?", (bulb.device,)) == (11,)
        assert c.one("SELECT COUNT(*), COUNT(DISTINCT seq) FROM records") == (13, 13)


def test_pages_and_the_api_answer_while_an_upload_holds_the_write_lock(db_url, monkeypatch):
    monkeypatch.setenv("MIMAMORI_SWEEP_S", "0")
    app = create_app(db_url, clock=lambda: T0 + 25 * H)
    db = app.state.store.db
    token = api.create_token(db, "test", 0)
    with TestClient(app) as http:
        auth = {"Authorization": f"Bearer {token}"}
        assert http.post("/api/v1/households", headers=auth, json={"id": "home-1"}
                         ).status_code == 201
        held, release, answered = threading.Event(), threading.Event(), []
        writer = Database(db_url)

        def hold() -> None:  # an upload's transaction that does not end yet
            with writer.tx() as c:
                c.execute("UPDATE households SET name = 'busy' WHERE id = 'home-1'")
                held.set()
                # True: let go by the test after the page answered, not by this timeout
                answered.append(release.wait(timeout=120))

        t = threading.Thread(target=hold)
        t.start()
        try:
            assert held.wait(timeout=60)
            r = http.get("/api/v1/households/home-1", headers=auth)
            release.set()
        finally:
            release.set()
            t.join()
            writer.close()
        assert r.status_code == 200 and r.json()["name"] == "home-1"  # the committed state
        assert answered == [True]  # the page answered while the write was still open


@pytest.mark.slow
def test_a_relay_that_trickles_for_ever_is_cut_off_before_the_rows_lease_ends(db_url):
    sink = SmtpSink(trickle_s=0.2, stall=True).start()
    try:
        db, _, home, w = _one_watcher(db_url)
        cfg = notify.NotifierSettings(smtp_host="127.0.0.1", smtp_port=sink.port, timeout_s=30,
                            send_deadline_s=2, lease_s=30)
        with db.tx() as c:
            notify.enqueue(c, LATER, "invite", home, w, {})
        got = notify.deliver_due(db, LATER, cfg)
        assert got == {"sent": 0, "failed": 1, "dead": 0, "waiting": 0}
        (row,) = notify.outbox(db, state="pending")
        assert "cut off" in (row.last_error or "") and row.attempts == 1
        with db.read() as c:  # the lease is given back with the failure
            assert c.one("SELECT lease_owner, lease_until FROM outbox") == (None, None)
    finally:
        sink.stop()


def test_delivery_settings_refuse_a_send_deadline_that_outlives_the_lease():
    with pytest.raises(ValueError, match="must end 1 s before"):
        notify.NotifierSettings.from_env({"MIMAMORI_SEND_DEADLINE_S": "60",
                                "MIMAMORI_DELIVERY_LEASE_S": "60"})
    with pytest.raises(ValueError, match="number of seconds"):
        notify.NotifierSettings.from_env({"MIMAMORI_SEND_DEADLINE_S": "soon"})
    cfg = notify.NotifierSettings.from_env({"MIMAMORI_SEND_DEADLINE_S": "20",
                                  "MIMAMORI_DELIVERY_LEASE_S": "30"})
    assert (cfg.send_deadline_s, cfg.lease_s) == (20, 30)


def _one_watcher(url: str, at: int = LATER) -> tuple[Database, Store, hh.Household, hh.Watcher]:
    db = Database(url)
    store = Store(db)
    hh.open_people(db)
    with db.tx() as c:
        home = hh.add_household(c, at, "home-1", "Sato")
        w = hh.add_watcher(c, at, "home-1", "Aiko", email="aiko@example.org")
    return db, store, home, w


def test_two_workers_and_a_slow_relay_send_every_message_exactly_once(db_url):
    """The server's delivery loop and `mimamori deliver` beside it, both on one outbox, with a
    relay that answers byte by byte (about a second per message). Each worker holds one row
    at a time, so rows never outlive their lease however long the queue takes to drain (a
    lease on a whole batch ran out mid-batch and the second worker re-sent its rows)."""
    n = 16
    relay = SmtpSink(trickle_s=0.002).start()
    now = int(time.time() * 1000)  # both workers run on the real clock: retries come due
    db, _, home, w = _one_watcher(db_url, now)
    with db.tx() as c:
        c.execute("UPDATE outbox SET state = 'sent'")
        for _ in range(n):
            notify.enqueue(c, now, "invite", home, w, {})
    env = {"MIMAMORI_SMTP": relay.address, "MIMAMORI_SWEEP_S": "0.2",
           "MIMAMORI_DELIVERY_LEASE_S": "6", "MIMAMORI_SEND_DEADLINE_S": "4"}
    cli_sent = 0
    try:
        with ServerProcess(db_url, env=env):
            wait_for(lambda: relay.all(), "the server's first message", timeout=120)
            while notify.outbox(db, state="pending"):  # the second worker, beside the server
                p = subprocess.run([sys.executable, "-m", "mimamori.cli", "--db", db_url,
                                    "deliver"], cwd=REPO, env={**os.environ, **env,
                                                               "PYTHONPATH": str(REPO)},
                                   capture_output=True, text=True, timeout=300, check=True)
                cli_sent += int(re.search(r"sent (\d+)", p.stdout).group(1))
            wait_for(lambda: all(o.state == "sent" for o in notify.outbox(db)), "all sent",
                     timeout=120)
    finally:
        relay.stop()
    ids = [m.message_id.split("@")[0] for m in relay.all()]  # the domain: the host's name
    assert len(ids) == n and len(set(ids)) == n, [(i, ids.count(i)) for i in set(ids)]
    assert {f"<{o.id}" for o in notify.outbox(db)} == set(ids)
    assert 0 < cli_sent < n  # both workers took part
