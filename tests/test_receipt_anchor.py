# SPDX-License-Identifier: MIT
"""The receipt anchor: a batch header's up_ms and the server's receive time place a boot in
wall-clock time, so the last visit before a fall (no later batch brings the bulb's own anchor)
is shown at its minute, not as a range "reported late"."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from fastapi.testclient import TestClient

from mimamori import rules, sweeper
from mimamori.app import create_app
from mimamori.ingest import parse_batch
from mimamori.storage import Store
from mimamori.timeline import (
    RECEIPT_TRANSIT_LTE_MS,
    RECEIPT_TRANSIT_MS,
    StoredRecord,
    build_timeline,
    receipt_anchor,
)
from mimamori_firmware import protocol, record
from sim.batch_client import BatchSender

JST = timezone(timedelta(hours=9))
T0 = datetime(2026, 3, 2, 9, 5, 12, tzinfo=JST).timestamp()  # the last switch-on
MS = 1000


def ms(s: float) -> int:
    """The tests write instants in Unix seconds; the server counts ms: the one conversion."""
    return round(s * MS)

FIXED = rules.RuleSettings(tz="Asia/Tokyo", activity_rule="fixed")


def _home(tmp_path):
    store = Store.open(tmp_path / "r.db")
    dev = store.register_device(int((T0 - 86400) * MS), "toilet", "suzuki")
    return store, BatchSender(dev.id, dev.key_bytes)


def _earlier_visit(store: Store, b: BatchSender) -> None:
    """Yesterday's visit, anchored by the bulb itself and closed by its dying gasp."""
    t = T0 - 20 * 3600
    recs = [b.new_boot(), b.record(record.K_ANCHOR, record.A_SERVER, 1, int(t) + 2, up_ms=2000),
            b.record(record.K_OFF, up_ms=90_000)]
    store.ingest(parse_batch(b.device, b.request(recs).body), int((t + 95) * MS))


def _last_visit(store: Store, b: BatchSender, sent_up_ms: int, transit_s: float) -> None:
    """Power on at T0, the link comes up, one batch sent at uptime sent_up_ms: the bulb's own
    anchor (from the answer) would only travel with a next batch that never comes."""
    recs = [b.new_boot(), b.record(record.K_LINK, record.T_WIFI, -60, 1800, up_ms=1900)]
    req = b.request(recs, sent_up_ms=sent_up_ms)
    heard = T0 + sent_up_ms / 1000 + transit_s
    store.ingest(parse_batch(b.device, req.body), int((heard + 0.004) * MS), int(heard * MS))


def test_a_boot_whose_only_batch_arrived_is_placed_within_the_bound_and_not_reported_late(
        tmp_path):
    store, b = _home(tmp_path)
    _earlier_visit(store, b)
    _last_visit(store, b, sent_up_ms=2400, transit_s=0.3)
    tl = sweeper.timeline_of(store, "suzuki")
    last = tl.intervals[-1]
    assert last.boot == b.boot and last.anchored
    assert last.start_earliest is not None
    assert last.start_earliest <= ms(T0) <= last.start_latest
    # whole-second anchor of the 2 s transit allowance (+ 4 ms handling), cut by the arrival
    assert last.start_latest - last.start_earliest <= RECEIPT_TRANSIT_MS + 2 * MS
    assert last.reported_at - last.start_latest < 5 * MS  # reported at once
    gap = [d for d in rules.evaluate(tl, FIXED, ms(T0 + 24 * 3600 + 60))
           if d.rule == "no_activity"]
    (d,) = gap
    assert d.state == rules.OPEN
    assert d.evidence == "no switch-on for 24 h: last light switched on yesterday at 09:05"


def test_without_the_header_uptime_the_same_visit_is_only_bounded_and_reported_late(tmp_path):
    store, b = _home(tmp_path)
    _earlier_visit(store, b)
    _last_visit(store, b, sent_up_ms=0, transit_s=0.3)  # an old sender: no receipt anchor
    last = sweeper.timeline_of(store, "suzuki").intervals[-1]
    assert not last.anchored
    assert last.start_earliest is not None and last.start_latest - last.start_earliest > 3600 * MS


def test_the_endpoint_stores_the_header_uptime_and_its_own_handling_time(tmp_path):
    ticks = itertools.count(0)
    app = create_app(tmp_path / "m.db", clock=lambda: T0 + 3.0 + next(ticks) * 0.010)
    store = app.state.store
    dev = store.register_device(int(T0 * MS), "toilet")
    b = BatchSender(dev.id, dev.key_bytes)
    with TestClient(app) as client:
        for up in (2400, 0):
            req = b.request([b.new_boot()], sent_up_ms=up)
            assert client.post(req.path, content=req.body, headers=req.headers).status_code == 200
    first, second = store.deliveries("toilet")
    assert first.up_ms == 2400 and first.up_wait_ms is not None and first.up_wait_ms >= 10
    assert second.up_ms is None and second.up_wait_ms is None
    recs = sweeper.device_records(store, "toilet")
    (rc,) = [r for r in recs if r.kind == record.K_ANCHOR and r.sub == record.A_RECEIPT]
    assert rc.boot == first.boot and rc.up_ms == 2400


def test_the_header_is_24_bytes_with_the_uptime_last():
    buf = bytearray(protocol.HEADER_SIZE)
    protocol.pack_header(buf, 2, 0x5EED0001, 17, 3, 1)
    protocol.stamp_up_ms(buf, 902431)
    assert protocol.HEADER_SIZE == 24
    assert protocol.unpack_header(buf) == (1, 0, 2, 0x5EED0001, 17, 3, 1, 902431)
    assert buf[20:] == (902431).to_bytes(4, "little")


def test_a_receipt_anchor_covers_everything_the_measurement_allows():
    for received, wait, lte in ((T0 + 0.25, 0.005, False), (T0 + 0.999, 0.0, False),
                                (T0 + 0.5, 1.3, True)):
        rc = receipt_anchor("b", 1, 1, 5000, ms(received), ms(wait), lte)
        transit = (RECEIPT_TRANSIT_LTE_MS if lte else RECEIPT_TRANSIT_MS) / MS  # the anchor: s
        assert rc.arg - rc.aux <= received - wait - transit
        assert rc.arg + rc.aux >= received
        assert rc.aux <= (wait + transit) / 2 + 1  # no looser than the rounding needs


def test_a_receipt_anchor_after_the_uptime_wrapped_lands_after_the_boots_records():
    wrap = 1 << 30
    t = T0
    recs = [StoredRecord("b", 1, 1, 50, record.K_POWER_ON, 1, received_at=ms(t + 1)),
            StoredRecord("b", 2, 1, wrap - 5000, record.K_ALIVE, received_at=ms(t + 1) + wrap)]
    rc = receipt_anchor("b", 0, 1, 3000, ms(t + 3.5) + wrap, 0, False)  # sent at 2^30 ms + 3 s
    (iv,) = build_timeline([*recs, rc]).intervals
    assert iv.anchored and iv.start_earliest is not None
    assert iv.start_earliest <= ms(t) <= iv.start_latest  # up 3000 ms read as 2^30 + 3000


def test_the_documented_receipt_example_is_what_the_timeline_makes():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    r = ms(1767257100.250)  # the worked example's server clock, 2026-01-01T08:45:00.250Z
    recs = [StoredRecord("bulb-0001", 17, 3, 412, record.K_POWER_ON, 1, 0, 1, received_at=r),
            StoredRecord("bulb-0001", 18, 3, 2310, record.K_LINK, 1, -61, 1850, received_at=r),
            StoredRecord("bulb-0001", 20, 3, 902310, record.K_ALIVE, received_at=r)]
    rc = receipt_anchor("bulb-0001", 0, 3, 902431, r, 5, False)
    (iv,) = build_timeline([*recs, rc]).intervals
    assert iv.start_earliest is not None

    def hms(t: float) -> str:  # t in ms
        return datetime.fromtimestamp(t / MS, UTC).strftime("%H:%M:%S.%f")[:12]

    assert f"between {hms(iv.start_earliest)} and {hms(iv.start_latest)}" in doc
    assert f"`arg` {hms(rc.arg * MS)[:8]}, `aux` {rc.aux}" in doc  # the anchor counts seconds
