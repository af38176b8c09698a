# SPDX-License-Identifier: MIT
"""Three server instances on one PostgreSQL behind nginx, one killed (SIGKILL) at random moments
while bulbs upload and watchers read: every acknowledged record is stored once, every alert is
raised once, every message is sent once (a kill between the relay's acceptance and the commit
repeats that one message under the same Message-ID, which receivers drop: the outbox's one
documented repeat).

The clock of the alerts is fixed: every household was last seen 25 h earlier, so each of the
first sweeps that reaches it opens its no_activity alert, whichever instance that is. Half of
the bulbs then switch on again and again through the proxy (their alerts clear, once); the
other half stay quiet (their alerts stay open). Leases are a few seconds so that what a killed
instance held comes back to the others within the test.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from mimamori import api, notify
from mimamori import households as hh
from mimamori.storage import Database, Store
from mimamori.web import auth
from mimamori_firmware import record
from sim import nginx
from sim.batch_client import BatchSender
from sim.server_process import ServerProcess, free_port
from sim.smtp_sink import SmtpSink
from tests.alerts_rig import visit
from tests.waiting import wait_for

JST = timezone(timedelta(hours=9))
H = 3600.0
T0 = datetime(2026, 3, 2, 10, 42, tzinfo=JST).timestamp()
NOW = T0 + 25 * H
HOMES, QUIET = 24, 12  # households h00..h11 stay quiet, h12..h23 switch on
VISITS = 25  # per active bulb, at least: uploads go on until KILLS kills happened
KILLS = 3
MAX_VISITS = 400  # ... or this many visits (the test then fails, saying so)


class Posts:
    """Uploads counted as they go: the killer strikes after a random number of them, so the
    kills fall under load however fast or slow the machine is."""

    def __init__(self) -> None:
        self.n = 0
        self.cv = threading.Condition()

    def tick(self) -> None:
        with self.cv:
            self.n += 1
            self.cv.notify_all()

    def wait_past(self, n: int, stop: threading.Event) -> bool:
        with self.cv:
            while self.n < n and not stop.is_set():
                self.cv.wait(timeout=0.5)
            return not stop.is_set()


class Bulb:
    """A bulb's uplink as the firmware does it: unacknowledged records are sent again from the
    first one until an answer acknowledges them; any failure (connection, 502, 503, 409) is a
    retry with a new request number."""

    def __init__(self, sender: BatchSender, posts: Posts):
        self.s = sender
        self.posts = posts
        self.pending: list[bytearray] = []
        self.acked: set[int] = set()
        self.visits = 0

    def visit(self, http: httpx.Client, stop: threading.Event) -> None:
        self.visits += 1
        self.pending += [self.s.new_boot(), self.s.record(record.K_OFF, up_ms=60_000)]
        while self.pending and not stop.is_set():
            req = self.s.request(self.pending, sent_up_ms=61_000)
            self.posts.tick()
            try:
                r = http.post(req.path, content=req.body, headers=req.headers)
            except httpx.HTTPError:
                continue
            if r.status_code != 200:
                assert r.status_code in (409, 502, 503), r.text  # never a 500, never a 4xx else
                continue
            ack = r.json()["ack"]
            self.acked |= {record.seq_of(x) for x in self.pending if record.seq_of(x) <= ack}
            self.pending = [x for x in self.pending if record.seq_of(x) > ack]


@pytest.mark.skipif(nginx.binary() is None, reason="nginx is not installed (Debian: "
                    "apt-get install nginx-light; `make setup` does it as root)")
def test_three_instances_behind_nginx_one_killed_at_random_lose_and_double_nothing(pg_url):
    rng = random.Random(18)
    posts = Posts()
    sink = SmtpSink().start()
    db = Database(pg_url)
    store = Store(db)
    auth.open_web(db)
    born = int((T0 - H) * 1000)
    with db.tx() as c:
        for i in range(HOMES):
            hh.add_household(c, born, f"h{i:02d}", settings={"activity_rule": "fixed"})
            for name in ("Aiko", "Ken"):
                hh.add_watcher(c, born, f"h{i:02d}", name, email=f"{name}.{i}@example.org")
    bulbs = []
    for i in range(HOMES):
        dev = store.register_device(born, f"bulb{i:02d}", f"h{i:02d}")
        s = BatchSender(dev.id, dev.key_bytes)
        visit(store, s, T0)  # the last visit, 25 h before the instances' clock
        bulbs.append(Bulb(s, posts))
    token = api.create_token(db, "test", born)
    env = {"MIMAMORI_SMTP": sink.address, "MIMAMORI_SWEEP_S": "0.3",
           "MIMAMORI_SWEEP_LEASE_S": "4", "MIMAMORI_DELIVERY_LEASE_S": "4",
           "MIMAMORI_SEND_DEADLINE_S": "3", "MIMAMORI_DB_POOL": "4"}
    servers = [ServerProcess(pg_url, port=free_port(), clock=f"fixed:{NOW}", env=env)
               for _ in range(3)]
    stop, kills, reads = threading.Event(), [], Counter()
    try:
        for srv in servers:
            srv.start(timeout=60)
        with nginx.Nginx([s.port for s in servers]) as proxy:
            down: set[int] = set()
            restarts: list[threading.Thread] = []

            def restart(srv: ServerProcess) -> None:
                posts.wait_past(posts.n + rng.randint(1, 8), stop)
                srv.start(timeout=60)
                down.discard(srv.port)

            def killer() -> None:  # at most two down at once: one instance always answers
                while posts.wait_past(posts.n + rng.randint(4, 12), stop):
                    up = [x for x in servers if x.port not in down]
                    if len(up) < 2:
                        continue
                    srv = rng.choice(up)
                    down.add(srv.port)
                    srv.kill()
                    kills.append(srv.port)
                    restarts.append(threading.Thread(target=restart, args=(srv,)))
                    restarts[-1].start()

            def uploads(mine: list[Bulb]) -> None:  # under load until the kills happened
                with httpx.Client(base_url=proxy.url, timeout=30) as http:
                    n = 0
                    while n < VISITS or len(kills) < KILLS and n < MAX_VISITS:
                        for b in mine:
                            b.visit(http, stop)
                        n += 1

            def reader() -> None:
                with httpx.Client(base_url=proxy.url, timeout=30) as http:
                    while not stop.wait(0.2):
                        try:
                            r = http.get("/api/v1/households",
                                         headers={"Authorization": f"Bearer {token}"})
                        except httpx.HTTPError:
                            continue
                        assert r.status_code in (200, 502), r.text
                        reads[r.status_code] += 1

            active = bulbs[QUIET:]
            load = [threading.Thread(target=uploads, args=(active[k::4],)) for k in range(4)]
            side = [threading.Thread(target=killer), threading.Thread(target=reader)]
            for t in load + side:
                t.start()
            for t in load:
                t.join(timeout=900)
            stop.set()
            for t in side + restarts:
                t.join(timeout=120)
            assert not any(t.is_alive() for t in load + side + restarts)
            for srv in servers:  # all three up again: whatever the dead held comes back
                if srv.proc is None:
                    srv.start(timeout=60)
            wait_for(lambda: _settled(db, int(NOW * 1000)), "every household evaluated and "
                     "every message sent", timeout=180)
            assert reads[200] > 0
    finally:
        stop.set()
        for srv in servers:
            srv.stop()
        sink.stop()
    print(f"{len(kills)} kills in {posts.n} uploads; reads {dict(reads)}")
    assert len(kills) >= KILLS, (kills, posts.n)

    # every acknowledged record stored, once
    with db.read() as c:
        stored = Counter((d, s) for d, s in c.all("SELECT device, seq FROM records"))
        alerts = c.all("SELECT household, rule, state FROM alerts ORDER BY household")
        outbox = c.all("SELECT id, watcher, kind, state FROM outbox WHERE kind <> 'invite'")
    assert max(stored.values()) == 1
    for b in bulbs:
        assert b.acked <= {s for d, s in stored if d == b.s.device}
        assert not b.pending
    assert all(b.visits >= VISITS for b in bulbs[QUIET:])
    assert sum(len(b.acked) for b in bulbs[QUIET:]) == sum(2 * b.visits for b in bulbs[QUIET:])

    # every alert raised once: the quiet ones open, the active ones cleared (if it opened
    # before their first switch-on came in)
    per = Counter(h for h, _, _ in alerts)
    assert set(per) >= {f"h{i:02d}" for i in range(QUIET)} and max(per.values()) == 1
    assert all(st == "open" for h, _, st in alerts if int(h[1:]) < QUIET)
    assert all(st == "cleared" for h, _, st in alerts if int(h[1:]) >= QUIET)
    told = Counter((w, k) for _, w, k, _ in outbox)
    assert max(told.values()) == 1, [x for x, n in told.items() if n > 1]
    assert {k for _, k in told} <= {"alert", "cleared"}

    # every message sent once: one e-mail per outbox row, each with its row's Message-ID. The
    # one way to see a row twice is a kill between the relay's 250 and the row's commit: the
    # next worker sends it again with the same Message-ID, which a receiver drops. So: at most
    # one repeat per kill, and never a message under an id of its own.
    assert all(st == "sent" for _, _, _, st in outbox)
    got = Counter(m.message_id.split("@")[0] for m in sink.all() if m.kind != "invite")
    assert set(got) == {f"<{oid}" for oid, _, _, _ in outbox}
    repeats = sum(n - 1 for n in got.values())
    assert repeats <= len(kills), [x for x, n in got.items() if n > 1]
    print(f"alerts {Counter(st for _, _, st in alerts)}, messages {len(got)}, "
          f"repeated after a kill {repeats}")


def _settled(db: Database, now_ms: int) -> bool:
    with db.read() as c:
        (due,) = c.one("SELECT COUNT(*) FROM households WHERE next_check <= ?", (now_ms,)) or (0,)
    return due == 0 and not notify.outbox(db, state="pending")
