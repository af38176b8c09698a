# SPDX-License-Identifier: MIT
"""The evaluation state kept per bulb and household (sim/server/kept.py) equals a rebuild from
all records: random histories of two bulbs, with split, held, resent and late batches (a late
batch older than the kept tail), evaluated at random instants."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from mimamori import households as hh
from mimamori import kept, notify, rules, sweeper
from mimamori import models as mdl
from mimamori.ingest import parse_batch
from mimamori.storage import Database, Store
from mimamori.timeline import WDT_RESET, Interval
from mimamori_firmware import record
from sim.batch_client import BatchSender

JST = timezone(timedelta(hours=9))
H = 3600.0
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=JST).timestamp()
CFG = notify.NotifierSettings()


def _visit(rng: random.Random, b: BatchSender, start: float) -> tuple[list, list, float]:
    """The records of one visit: (records sent at the start, the rest, its length)."""
    length = rng.choice([rng.uniform(20, 600), rng.uniform(600, 5000)])
    b.boot += 1
    b.req = 0
    b.up_ms = 0
    first = [b.record(record.K_POWER_ON, sub=WDT_RESET if rng.random() < 0.05 else 1, arg=1,
                      up_ms=5)]
    if rng.random() < 0.6:
        first.append(b.record(record.K_ANCHOR, record.A_SERVER, rng.choice([0, 2]),
                              int(start) + 1, up_ms=1000))
    rest = []
    up = 1000
    while up + 10_000 < length * 1000 and rng.random() < 0.5:
        up += rng.randint(10_000, 600_000)
        if up < length * 1000:
            rest.append(b.record(record.K_ALIVE, up_ms=up))
    if rng.random() < 0.7:
        rest.append(b.record(record.K_OFF, up_ms=int(length * 1000)))
    return first, rest, length


def _history(rng: random.Random, b: BatchSender, days: float) -> list[tuple[float, bytes]]:
    """(send time, body) of one bulb's batches, in send order."""
    sends: list[tuple[float, bytes]] = []
    held: list[bytearray] = []
    late: list[tuple[int, list[bytearray]]] = []  # visits withheld for many visits
    t = T0 + rng.uniform(0, 2 * H)
    n = 0
    while t < T0 + days * 86400:
        first, rest, length = _visit(rng, b, t)
        n += 1
        end = t + length + 1
        mode = rng.random()
        if mode < 0.05:
            late.append((n + rng.randint(20, 40), first + rest))
        elif mode < 0.25:
            held += first + rest
            if rng.random() < 0.4:
                sends.append((end, b.request(held).body))
                held = []
        else:
            recs = held + first
            held = []
            if mode < 0.45:  # the power-on at once, the rest when the lamp goes off
                sends.append((t + 2, b.request(recs, sent_up_ms=2000).body))
                if rest:
                    sends.append((end, b.request(rest).body))
            else:
                sends.append((end, b.request(recs + rest,
                                             sent_up_ms=int(length * 1000)).body))
            if rng.random() < 0.08:  # a resend: nothing new stored
                sends.append((end + 1, b.request(recs + rest).body))
        for due, recs in [x for x in late if x[0] <= n]:
            sends.append((end + 2, b.request(recs).body))
            late.remove((due, recs))
        t = end + rng.expovariate(1 / (3 * H))
    if held:
        sends.append((t, b.request(held).body))
    return sends


def _world(db_url: str) -> tuple[Database, Store]:
    db = Database(db_url)
    store = Store(db)
    hh.open_people(db)
    with db.tx() as c:
        hh.add_household(c, int((T0 - H) * 1000), "h", settings={"activity_rule": "learned"})
        hh.add_watcher(c, int((T0 - H) * 1000), "h", "Aiko", console=True)
    return db, store


def _kept_visits(db: Database) -> tuple[list[Interval], dict]:
    with db.read() as c:
        rows = [kept._interval(json.loads(r[0])) for r in c.all("SELECT data FROM visits")]
        states = {d: kept.BulbState.from_json(s)
                  for d, s in c.all("SELECT device, state FROM bulb_tails")}
    ivs = rows + [kept._interval(v) for st in states.values() for v in st.visits]
    return sorted(ivs, key=lambda iv: (iv.start_latest, iv.device, iv.boot)), states


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_state_equals_a_rebuild_from_all_records(db_url, seed, monkeypatch):
    monkeypatch.setattr(kept, "TAIL_BOOTS", 3)  # cut the tails often
    monkeypatch.setattr(kept, "WINDOW_DAYS", 9)  # evaluate on a window well inside the history
    rng = random.Random(seed)
    db, store = _world(db_url)
    sends: list[tuple[float, str, bytes]] = []
    for name in ("toilet", "washroom"):
        dev = store.register_device(int((T0 - H) * 1000), name, "h")
        b = BatchSender(dev.id, dev.key_bytes, epoch=0x5EED0000 + seed)
        sends += [(t, name, body) for t, body in _history(rng, b, 26)]
    sends.sort(key=lambda s: s[0])
    for t, name, body in sends:
        store.ingest(parse_batch(name, body), int(t * 1000))
        if rng.random() < 0.3:
            sweeper.evaluate_household(db, "h", int(t * 1000) + 500, CFG, store)
    now = sends[-1][0] + 600
    sweeper.evaluate_household(db, "h", int(now * 1000), CFG, store)

    full = sweeper.timeline_of(store, "h")
    ivs, states = _kept_visits(db)
    assert ivs == list(full.intervals)
    assert len(ivs) > 200
    with db.read() as c:
        home = hh.household(c, "h")
        rs = sweeper.rule_settings(c, home)
        k = kept.prepare(c, "h", rs, int(now * 1000))
        row = c.one("SELECT model FROM household_models WHERE household = 'h'")
    assert k.timeline.devices == full.devices
    assert not k.full and len(k.timeline.intervals) < len(full.intervals)
    assert all(st.ctx is not None for st in states.values())  # the tails were cut
    now_ms = int(now * 1000)
    spans = [(p.start, p.end) for p in rules.expand(rs, list(full.intervals), now_ms).pauses]
    m = mdl.learn(full, rs.tz, spans, now_ms)
    assert m.n_days >= 20
    assert json.loads(row[0]) == json.loads(json.dumps(m.to_json()))
    assert (rules.evaluate(k.timeline, rs, now_ms, model=k.model)
            == rules.evaluate(full, rs, now_ms, model=m))


def test_a_late_batch_older_than_the_tail_rebuilds_that_bulb(tmp_path, monkeypatch):
    monkeypatch.setattr(kept, "TAIL_BOOTS", 2)
    db, store = _world(str(tmp_path / "k.db"))
    dev = store.register_device(int((T0 - H) * 1000), "toilet", "h")
    b = BatchSender(dev.id, dev.key_bytes)
    rng = random.Random(7)
    withheld = None
    t = T0
    for i in range(12):
        first, rest, length = _visit(rng, b, t)
        if i == 2:
            withheld = first + rest
        else:
            store.ingest(parse_batch("toilet", b.request(first + rest).body),
                         int((t + length + 1) * 1000))
        sweeper.evaluate_household(db, "h", int((t + length + 2) * 1000), CFG, store)
        t += 3 * H
    before, states = _kept_visits(db)
    assert states["toilet"].ctx is not None  # visit 2's place is before the tail
    assert withheld is not None
    store.ingest(parse_batch("toilet", b.request(withheld).body), int(t * 1000))
    with db.read() as c:
        up = kept.bulb(c, "toilet")
    assert up.rebuilt
    sweeper.evaluate_household(db, "h", int(t * 1000) + 1000, CFG, store)
    ivs, _ = _kept_visits(db)
    assert ivs == list(sweeper.timeline_of(store, "h").intervals)
    assert sum(iv.boots for iv in ivs) == sum(iv.boots for iv in before) + 1


def test_a_resend_that_stores_nothing_evaluates_nothing(tmp_path):
    db, store = _world(str(tmp_path / "k.db"))
    dev = store.register_device(int((T0 - H) * 1000), "toilet", "h")
    b = BatchSender(dev.id, dev.key_bytes)
    store.in_ingest.append(sweeper.mark_due)
    first, rest, length = _visit(random.Random(1), b, T0)
    store.ingest(parse_batch("toilet", b.request(first + rest).body), int((T0 + length) * 1000))
    sweeper.sweep(db, int((T0 + length + 1) * 1000), CFG)
    with db.read() as c:
        (nxt,) = c.one("SELECT next_check FROM households WHERE id = 'h'")
    store.ingest(parse_batch("toilet", b.request(first + rest).body),
                 int((T0 + length + 5) * 1000))
    with db.read() as c:
        assert c.one("SELECT next_check FROM households WHERE id = 'h'") == (nxt,)
    assert nxt > (T0 + length + 5) * 1000
    assert sweeper.sweep(db, int((T0 + length + 6) * 1000), CFG).evaluated == []


def _in_seconds(v: list) -> list:
    """A visit's fields as the first format kept them: instants and its lit time in seconds."""
    return [x / 1000 if i in (2, 3, 4, 5, 6, 9) and x is not None else x
            for i, x in enumerate(v)]


def test_rows_kept_in_the_seconds_format_are_rebuilt_from_the_records(tmp_path):
    db, store = _world(str(tmp_path / "k.db"))
    dev = store.register_device(int((T0 - H) * 1000), "toilet", "h")
    b = BatchSender(dev.id, dev.key_bytes)
    rng = random.Random(3)
    t = T0
    for _ in range(40):  # a few days: visits rows, a cut tail and a learned model
        first, rest, length = _visit(rng, b, t)
        store.ingest(parse_batch("toilet", b.request(first + rest).body),
                     int((t + length + 1) * 1000))
        t += 3 * H
    sweeper.evaluate_household(db, "h", int(t * 1000), CFG, store)
    # what the code before integer ms left: no format, seconds everywhere, model version 3
    with db.tx() as c:
        assert c.one("SELECT COUNT(*) FROM visits")[0] > 0
        for dev_id, raw in c.all("SELECT device, state FROM bulb_tails"):
            st = json.loads(raw)
            del st["format"]
            st["visits"] = [_in_seconds(v) for v in st["visits"]]
            st["records"] = [[*r[:8], r[8] / 1000] for r in st["records"]]
            c.execute("UPDATE bulb_tails SET state = ? WHERE device = ?",
                      (json.dumps(st), dev_id))
        for dev_id, ep, boot, data in c.all("SELECT device, epoch, boot, data FROM visits"):
            c.execute("UPDATE visits SET data = ? WHERE device = ? AND epoch = ? AND boot = ?",
                      (json.dumps(_in_seconds(json.loads(data))), dev_id, ep, boot))
        (model,) = c.one("SELECT model FROM household_models WHERE household = 'h'")
        old = json.loads(model) | {"version": 3}
        c.execute("UPDATE household_models SET model = ? WHERE household = 'h'",
                  (json.dumps(old),))
    with db.read() as c:
        up = kept.bulb(c, "toilet")
    assert up.rebuilt  # not read as milliseconds
    sweeper.evaluate_household(db, "h", int(t * 1000) + 1000, CFG, store)
    ivs, _ = _kept_visits(db)  # every row of the new format again
    assert ivs == list(sweeper.timeline_of(store, "h").intervals)
    assert all(isinstance(iv.start_latest, int) for iv in ivs)
    with db.read() as c:
        (model,) = c.one("SELECT model FROM household_models WHERE household = 'h'")
    assert json.loads(model)["version"] == mdl.VERSION
