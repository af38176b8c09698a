# SPDX-License-Identifier: MIT
"""The uplink over LTE-M, end to end: the firmware in MicroPython drives the modem emulator
(sim/modem.py) over the UART shim; the emulator opens real TCP connections to the reference
server. Each failure the modem can show, and the fallback between transports."""

from __future__ import annotations

from mimamori.storage import Record
from mimamori_firmware import record
from sim.bulb import wifi_net
from sim.modem import Modem
from tests.uplink_rig import (  # noqa: F401  (the rig and modem fixtures)
    Rig,
    assert_delivered_exactly_once,
    journal_of,
    kinds,
    modem_fixture,
    rig_fixture,
)

# sim.json "seed": the shims' os.urandom repeats on every run, so the uplink's random waits
# (first send, full-jitter backoff) are the same each time: how many tries fit in a visit does
# not change between runs. What still varies is the real time peers take to answer (virtual time
# moves by it, docs/simulation.md), so visits are long enough for the tries each test needs and
# the assertions hold whichever try delivered.
SEED = 14


def lte_bulb(rig: Rig, modem: Modem, transport: str = "lte", **kw):
    kw["extra"] = {"seed": SEED, **kw.get("extra", {})}
    return rig.bulb(site=rig.site(transport, apn="iot.example"), uart={"1": modem.path}, **kw)


def power_on_boots(stored: list[Record]) -> list[int]:
    return [r.boot for r in kinds(stored, record.K_POWER_ON)]


def links(b, transport: int) -> list[tuple[int, ...]]:
    recs, _ = journal_of(b)
    return [r for r in recs if r[3] == record.K_LINK and r[4] == transport]


def test_switch_on_over_lte_reaches_the_server_with_network_time(rig: Rig, modem: Modem) -> None:
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=30)
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1]
    anchor = kinds(stored, record.K_ANCHOR)  # AT+CCLK? anchors the visit in the same batch
    assert anchor and anchor[0].sub == record.A_MODEM and anchor[0].arg > 1.7e9
    link = links(b, record.T_LTE)
    assert len(link) == 1 and link[0][5] == -73 and link[0][6] > 0  # CSQ 20 -> -73 dBm
    assert modem.air.connections == 1 and modem.air.attaches == 1
    assert modem.air.payload_tx > 0 and modem.air.total > modem.air.payload_tx
    uart = [e for e in b.trace() if e["ev"] == "uart"]
    assert uart and not b.events("net"), "everything went through the modem, nothing over Wi-Fi"


def test_no_registration_then_a_later_visit_delivers_both(rig: Rig, modem: Modem) -> None:
    modem.faults.register = False
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=70)  # waits for registration, gives up, records it
    assert rig.stored() == [] and modem.air.connections == 0
    modem.faults.register = True
    b.power_on(stop_at_s=30)
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1, 2]
    failed = [r for r in links(b, record.T_LTE) if r[6] == 0]
    assert failed and failed[0][1] == 1


def test_cme_error_on_open_is_retried_on_a_later_visit(rig: Rig, modem: Modem) -> None:
    modem.faults.open_error = 3
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=10)
    assert rig.stored() == []
    modem.faults.open_error = None
    b.power_on(stop_at_s=30)
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1, 2]
    assert next(r[6] for r in links(b, record.T_LTE)) == 0


def test_connection_dropped_mid_send_loses_and_doubles_nothing(rig: Rig, modem: Modem) -> None:
    modem.faults.drop_after_tx = 120  # every try of this visit is torn after 120 bytes
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=40)  # the first try and the backoff's retries: all torn
    assert modem.cuts >= 1, "the request was torn"
    assert rig.stored() == [] and rig.deliveries() == [], "a torn request stores nothing"
    assert journal_of(b)[1] == 0, "nothing acknowledged"
    modem.faults.drop_after_tx = None
    b.power_on(stop_at_s=30)  # no report ever completed: this power-on is due at once
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1, 2]


def test_a_torn_request_is_sent_again_in_the_same_visit_and_a_later_visit_waits_for_the_gap(
    rig: Rig, modem: Modem
) -> None:
    modem.faults.drop_after_tx = 120
    modem.faults.once = True  # only the first connection is torn
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=40)  # the backoff's retry (within 8.5 s) delivers in this visit
    assert modem.cuts == 1 and modem.air.connections >= 2
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1]
    opened = modem.air.connections
    b.power_on(stop_at_s=20)  # soon after that report by the network clock: deferred
    assert modem.air.connections == opened and len(rig.stored()) == len(stored)
    modem.faults.clock_offset_s = 7 * 3600  # past the report gap: due, reports what waited
    b.power_on(stop_at_s=30)
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1, 2, 3]


def test_answer_lost_over_the_air_is_resent_and_stored_once(rig: Rig, modem: Modem) -> None:
    modem.faults.drop_after_rx = 10  # every answer of this visit is lost
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=40)
    assert modem.cuts >= 1 and rig.stored(), "the server stored the batch; its answer was lost"
    assert journal_of(b)[1] == 0, "nothing acknowledged that the bulb never heard"
    modem.faults.drop_after_rx = None
    b.power_on(stop_at_s=30)  # no answer was heard, so no report counts: this power-on is due
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1, 2]
    sent = rig.deliveries()
    assert len(sent) >= 2, "what was not heard acknowledged was sent again"
    assert sum(d.stored for d in sent) == len(stored) < sum(d.count for d in sent), \
        "the server took the resent records once"


def test_answer_lost_once_is_resent_in_the_same_visit_and_stored_once(
    rig: Rig, modem: Modem
) -> None:
    modem.faults.drop_after_rx = 10
    modem.faults.once = True  # only the first answer is lost
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=40)  # the backoff's retry resends and hears the acknowledgement
    assert modem.cuts == 1
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1]
    sent = rig.deliveries()
    assert len(sent) >= 2 and sent[1].from_seq == 1, "the unheard batch was sent again"
    assert sum(d.stored for d in sent) == len(stored) < sum(d.count for d in sent)


def test_slow_modem_still_delivers(rig: Rig, modem: Modem) -> None:
    modem.faults.slow_ms = 150
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=30)
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1]


def test_weak_signal_is_recorded_and_still_delivers(rig: Rig, modem: Modem) -> None:
    modem.faults.csq = 2  # -109 dBm: the edge of coverage
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=30)
    assert_delivered_exactly_once(rig, b)
    assert [r[5] for r in links(b, record.T_LTE)] == [-109]


def test_lte_without_registration_falls_back_to_wifi(rig: Rig, modem: Modem) -> None:
    modem.faults.register = False
    b = lte_bulb(rig, modem, transport="lte,wifi")
    b.power_on(stop_at_s=90)
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1]
    assert next(r[6] for r in links(b, record.T_LTE)) == 0
    assert [r[6] > 0 for r in links(b, record.T_WIFI)][:1] == [True]


def test_wifi_down_falls_back_to_lte(rig: Rig, modem: Modem) -> None:
    b = lte_bulb(rig, modem, transport="wifi,lte", wifi=[wifi_net("home", "pw", up=False)])
    b.power_on(stop_at_s=60)
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1]
    assert modem.air.connections == 1
    assert next(r[6] for r in links(b, record.T_WIFI)) == 0


def test_lte_power_on_within_the_report_gap_waits_for_a_later_report(
    rig: Rig, modem: Modem
) -> None:
    b = lte_bulb(rig, modem)
    b.power_on(stop_at_s=20)  # first report: nothing known about the last one
    assert power_on_boots(assert_delivered_exactly_once(rig, b)) == [1]
    opened, before = modem.air.connections, len(rig.stored())
    b.power_on(stop_at_s=20)  # soon after by the network clock: within the gap
    assert modem.air.connections == opened and len(rig.stored()) == before, "no connection"
    assert modem.air.attaches == 2  # still attached: the visit got its network-time anchor
    modem.faults.clock_offset_s = 7 * 3600  # seven hours later: due again
    b.power_on(stop_at_s=20)
    assert modem.air.connections > opened
    stored = assert_delivered_exactly_once(rig, b)
    assert power_on_boots(stored) == [1, 2, 3]
    assert len([r for r in kinds(stored, record.K_ANCHOR) if r.sub == record.A_MODEM]) == 3
