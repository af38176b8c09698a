# SPDX-License-Identifier: MIT
"""Delivery end to end when things go wrong: the firmware in MicroPython (virtual time), the
reference server as a real process on loopback, real sockets, and a TCP proxy that cuts.
Every test checks the server's store against the bulb's own journal: every record exactly
once, in order, unaltered (tests/uplink_rig.py)."""

from __future__ import annotations

from mimamori_firmware import record
from sim.bulb import wifi_net
from tests.uplink_rig import (
    CutProxy,
    Rig,
    assert_delivered_exactly_once,
    journal_of,
    kinds,
    rig_fixture,  # noqa: F401  (the rig fixture)
)


def test_week_with_the_server_down_is_delivered_once_when_it_returns(rig: Rig) -> None:
    assert rig.srv
    rig.srv.stop()
    b = rig.bulb(site=rig.site())
    visits = 21  # a week at three visits a day
    for _ in range(visits):
        b.power_on(stop_at_s=25)
    assert rig.stored() == []
    tried = {e["boot"] for e in b.events("net") if e["op"] == "connect"}
    assert tried == set(range(1, visits + 1)), "every visit tried to reach the server"
    rig.srv.start()
    b.power_on(stop_at_s=60)
    stored = assert_delivered_exactly_once(rig, b)
    assert len(kinds(stored, record.K_POWER_ON)) == visits + 1
    failed = [r for r in kinds(stored, record.K_LINK) if r.arg == 0]
    assert len(failed) >= visits, "every visit's failed attempt is on record"
    assert [r.boot for r in kinds(stored, record.K_POWER_ON)] == list(range(1, visits + 2))
    # all of it came in the first visit back, in a few keep-alive batches, no storm
    assert len(rig.deliveries()) <= 6


def test_visit_without_signal_is_reported_on_a_later_visit(rig: Rig) -> None:
    b = rig.bulb(site=rig.site(), wifi=[wifi_net("home", "pw", up=False)])
    for _ in range(4):
        b.power_on(stop_at_s=3)  # a few seconds in the toilet, no network
    assert rig.stored() == [] and b.events("net") == [], "no network, nothing went out"
    b.wifi = [wifi_net("home", "pw", rssi=-70)]
    b.power_on(stop_at_s=20)
    stored = assert_delivered_exactly_once(rig, b)
    assert len(kinds(stored, record.K_POWER_ON)) == 5


def test_connection_cut_mid_request_loses_and_doubles_nothing(rig: Rig) -> None:
    proxy = CutProxy(rig.srv.port if rig.srv else 0)
    try:
        proxy.cut_request_after = 150  # inside the HTTP head, on every try of this visit
        proxy.once = False
        b = rig.bulb(site=rig.site(url=proxy.url))
        b.power_on(stop_at_s=10)
        assert proxy.cuts >= 1 and rig.stored() == []
        proxy.cut_request_after = None
        b.power_on(stop_at_s=20)
        stored = assert_delivered_exactly_once(rig, b)
        assert len(kinds(stored, record.K_POWER_ON)) == 2
    finally:
        proxy.close()


def test_connection_cut_mid_answer_is_resent_and_stored_once(rig: Rig) -> None:
    proxy = CutProxy(rig.srv.port if rig.srv else 0)
    try:
        proxy.cut_response_after = 20  # the server stores each batch; the bulb never hears so
        proxy.once = False
        b = rig.bulb(site=rig.site(url=proxy.url))
        b.power_on(stop_at_s=10)
        assert proxy.cuts >= 1
        proxy.cut_response_after = None
        first = rig.stored()
        assert first, "the server stored the batch before answering"
        _recs, acked = journal_of(b)
        assert acked < first[-1].seq, "the bulb acknowledged what it never heard acknowledged"
        b.power_on(stop_at_s=20)
        stored = assert_delivered_exactly_once(rig, b)
        assert len(kinds(stored, record.K_POWER_ON)) == 2
        resent = [d for d in rig.deliveries() if d.stored < d.count]
        assert resent, "the second visit resent what the server already had"
    finally:
        proxy.close()


def test_server_restart_between_request_and_acknowledgement(rig: Rig) -> None:
    assert rig.srv
    proxy = CutProxy(rig.srv.port)
    srv = rig.srv
    try:
        proxy.on_answer = srv.kill  # committed, then the server dies before the bulb hears
        b = rig.bulb(site=rig.site(url=proxy.url))
        b.power_on(stop_at_s=10)  # later tries in this visit find the server down
        assert proxy.cuts == 1
        assert rig.stored(), "the batch was committed before the server died"
        srv.start()  # same database, same port
        b.power_on(stop_at_s=20)
        stored = assert_delivered_exactly_once(rig, b)
        assert len(kinds(stored, record.K_POWER_ON)) == 2
    finally:
        proxy.close()
