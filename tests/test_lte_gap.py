# SPDX-License-Identifier: MIT
"""The LTE-M report gap, end to end: the bulb holds power-ons for up to lte_report_gap_s (a
setting the server may push), and the server's gap rules count a quiet spell from the latest
instant such an unreported switch-on could be, so a person who did switch the light on is not
alerted on (docs/alerts.md, docs/uplink.md section 6). Wi-Fi bulbs are unchanged."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone

import pytest

from mimamori import settings as bulb_settings
from mimamori.clock import HOUR_MS, SECOND_MS, to_s
from mimamori.rules import CLEAR, OPEN, RuleSettings, evaluate
from mimamori.storage import Store
from mimamori.timeline import LTE_REPORT_GAP_MS, StoredRecord, Timeline, build_timeline
from mimamori_firmware import record
from sim.household import Household, exact_timeline
from sim.modem import Modem
from tests.test_timeline import Bulb, ms
from tests.uplink_rig import (  # noqa: F401  (the rig and modem fixtures)
    Rig,
    assert_delivered_exactly_once,
    kinds,
    modem_fixture,
    rig_fixture,
)

JST = timezone(timedelta(hours=9))
H = HOUR_MS
FIXED = RuleSettings(tz="Asia/Tokyo", activity_rule="fixed")


def at(day, hh, mm=0):
    """Unix time (s) of 2026-03-<day> hh:mm in Japan (the Bulb builder's unit; ms() for the
    server's)."""
    return datetime(2026, 3, day, hh, mm, tzinfo=JST).timestamp()


def rule(decisions, name):
    (d,) = [x for x in decisions if x.rule == name and x.subject == ""]
    return d


def over_lte(b: Bulb) -> Bulb:
    """Mark the bulb's last visit as reported over LTE-M: the link record its uplink writes."""
    last = b.records[-1]
    b.records.append(StoredRecord(b.device, b.seq, b.boot, last.up_ms + 1, record.K_LINK,
                                  record.T_LTE, -73, 1500, received_at=last.received_at))
    b.seq += 1
    return b


def morning_then_quiet(lte: bool, gaps=None) -> Timeline:
    """A 10:00 switch-on reported at 10:02; the visits after it (if any) were never reported."""
    b = Bulb().visit(at(2, 10, 0), 60, off=True, received_at=at(2, 10, 2))
    return build_timeline((over_lte(b) if lte else b).records, report_gaps=gaps)


# ---------------------------------------------------------------- pure: timeline and rules


def test_server_learns_an_lte_bulbs_report_gap_from_its_records_and_settings():
    wifi = Bulb().visit(at(2, 10), 60, off=True).timeline()
    assert wifi.devices["bulb-1"].report_gap_ms == 0 and wifi.devices["bulb-1"].hidden_until is None
    lte = morning_then_quiet(lte=True)
    seen = lte.devices["bulb-1"]
    assert seen.lte and seen.report_gap_ms == LTE_REPORT_GAP_MS
    assert seen.hidden_until == ms(at(2, 10, 2)) + 6 * H
    pushed = morning_then_quiet(lte=True, gaps={"bulb-1": H})
    assert pushed.devices["bulb-1"].hidden_until == ms(at(2, 11, 2))
    # the server's default is the bulb's own (the bulb's setting counts seconds), and what it
    # pushes is checked like the bulb does
    assert bulb_settings.config.defaults()["lte_report_gap_s"] == to_s(LTE_REPORT_GAP_MS)
    assert bulb_settings.lte_report_gap_s({}) == to_s(LTE_REPORT_GAP_MS)
    assert bulb_settings.lte_report_gap_s({"lte_report_gap_s": 7200}) == 7200
    assert bulb_settings.parse_assignment("lte_report_gap_s=0") == ("lte_report_gap_s", 0)
    with pytest.raises(ValueError, match="0..43200"):
        bulb_settings.check("lte_report_gap_s", 50000)


def test_visits_an_lte_bulb_has_not_reported_yet_raise_no_false_no_activity_alert():
    # She switched the light on at 10:00 (reported), then at 12:00 and 15:00: those power-ons
    # fell within the 6 h report gap, so the bulb kept them. At 10:30 next day the server knows
    # of nothing for 24.5 h, but she was active 19.5 h ago.
    lte = morning_then_quiet(lte=True)
    d = rule(evaluate(lte, FIXED, ms(at(3, 10, 30))), "no_activity")
    assert d.state == CLEAR
    assert d.next_check == ms(at(2, 10, 2)) + 6 * H + 24 * H  # last heard + gap + N
    assert "counted from yesterday 16:02: an LTE-M bulb may not have reported" in d.evidence
    assert d.at == ms(at(2, 10, 0)) and d.detail["last_on"] == ms(at(2, 10, 0))  # the same spell
    # her 13:00 switch-on is past the gap: it reports at once and the spell ends
    b = over_lte(Bulb().visit(at(2, 10, 0), 60, off=True, received_at=at(2, 10, 2)))
    b.visit(at(3, 13, 0), 60, off=True)
    assert rule(evaluate(b.timeline(), FIXED, ms(at(3, 16, 30))), "no_activity").state == CLEAR
    # had she fallen after the 10:00 visit, the alert still opens, gap hours later
    late = rule(evaluate(lte, FIXED, ms(at(3, 16, 2))), "no_activity")
    assert late.state == OPEN and late.since == ms(at(3, 16, 2)) and "LTE-M" in late.evidence


def test_wifi_bulb_alerts_at_the_same_deadline_as_before():
    wifi = Bulb().visit(at(2, 10, 0), 60, off=True, received_at=at(2, 10, 2)).timeline()
    before = rule(evaluate(wifi, FIXED, ms(at(3, 9, 59))), "no_activity")
    assert before.state == CLEAR and before.next_check == ms(at(3, 10, 0))
    assert before.evidence == "light switched on yesterday at 10:00"
    d = rule(evaluate(wifi, FIXED, ms(at(3, 10, 30))), "no_activity")
    assert d.state == OPEN and d.since == ms(at(3, 10, 0))
    assert "LTE-M" not in d.evidence


def test_shorter_pushed_gap_shortens_the_wait():
    one_hour = morning_then_quiet(lte=True, gaps={"bulb-1": H})
    assert rule(evaluate(one_hour, FIXED, ms(at(3, 11, 1))), "no_activity").state == CLEAR
    assert rule(evaluate(one_hour, FIXED, ms(at(3, 11, 2))), "no_activity").state == OPEN
    zero = morning_then_quiet(lte=True, gaps={"bulb-1": 0})  # reports every power-on
    assert rule(evaluate(zero, FIXED, ms(at(3, 10, 0))), "no_activity").state == OPEN


def test_daily_window_is_not_judged_while_an_unreported_switch_on_could_lie_in_it():
    s = replace(FIXED, activity_rule="daily_window", window_start=time(9, 0), window_h=24)
    b = Bulb().visit(at(2, 8, 50), 60, off=True, received_at=at(2, 8, 51))
    wifi = b.timeline()
    assert rule(evaluate(wifi, s, ms(at(3, 9, 0))), "daily_window").state == OPEN
    lte = over_lte(b).timeline()  # a 10:00 visit could be held until 14:51: not a certain gap
    d = rule(evaluate(lte, s, ms(at(3, 9, 0))), "daily_window")
    assert d.state == CLEAR and "LTE-M" in d.evidence and d.next_check == ms(at(4, 9, 0))
    assert rule(evaluate(lte, s, ms(at(4, 9, 0))), "daily_window").state == OPEN  # next window


def test_learned_rule_waits_for_what_an_lte_bulb_may_hold_and_still_detects():
    visits = Household(3).events(datetime(2026, 1, 5), 35)  # a learned rhythm; then a fall
    tl = exact_timeline(visits)
    settings = RuleSettings(tz="UTC")
    last = tl.intervals[-1]
    wifi = heard(tl, last.reported_at, lte=False)
    lte = heard(tl, last.reported_at, lte=True)
    t_wifi = opens_at(wifi, settings, last.start_latest + SECOND_MS)
    d = rule(evaluate(lte, settings, t_wifi), "unusual_quiet")
    assert d.state == CLEAR and "LTE-M" in d.evidence  # where Wi-Fi opens, she may be fine
    t_lte = opens_at(lte, settings, t_wifi)
    hidden = lte.devices["bulb"].hidden_until
    assert hidden is not None and t_wifi < t_lte <= hidden + settings.learned_max_h * H + SECOND_MS


def heard(tl: Timeline, last_heard: int, lte: bool) -> Timeline:
    """The timeline with its bulb last heard at last_heard, over LTE-M (default gap) or Wi-Fi."""
    seen = replace(tl.devices["bulb"], last_heard=last_heard, lte=lte,
                   report_gap_ms=LTE_REPORT_GAP_MS if lte else 0)
    return Timeline(tl.intervals, {"bulb": seen})


def opens_at(tl: Timeline, settings: RuleSettings, t: int) -> int:
    """When unusual_quiet opens, following its next_check as the sweeper does."""
    for _ in range(50):
        d = rule(evaluate(tl, settings, t), "unusual_quiet")
        if d.state == OPEN:
            return t
        assert d.next_check is not None
        t = max(d.next_check, t + SECOND_MS)
    raise AssertionError("never opened")


def lte_week(received) -> Timeline:
    """A week of visits at 07, 09, ... 21 h of an LTE-M bulb; received(day, hour) -> arrival."""
    b = Bulb()
    for day in range(1, 8):
        for h in range(7, 23, 2):
            over_lte(b.visit(at(day, h), 60, off=True, received_at=received(day, h)))
    return b.timeline()


def test_lte_bulb_holding_visits_within_its_gap_is_not_flagged_for_poor_delivery():
    def gap6(day, h):  # 07, 13, 19 report; the others wait for the next of those
        nxt = {7: 7, 9: 13, 11: 13, 13: 13, 15: 19, 17: 19, 19: 19}.get(h)
        return at(day, nxt, 1) if nxt else at(day + 1, 7, 1)

    d = rule_of(evaluate(lte_week(gap6), FIXED, ms(at(8, 8))), "poor_delivery")
    assert d.state == CLEAR and d.detail["late"] == 0
    # the same bulb with no coverage all week: its visits arrive a week late, and that is flagged
    d = rule_of(evaluate(lte_week(lambda day, h: at(8, 7, 1)), FIXED, ms(at(8, 8))),
                "poor_delivery")
    assert d.state == OPEN and "check its signal" in d.evidence


def rule_of(decisions, name, subject="bulb-1"):
    (d,) = [x for x in decisions if x.rule == name and x.subject == subject]
    return d


# ---------------------------------------------------------------- the bulb honours the setting


def test_lte_bulb_honours_a_report_gap_pushed_by_the_server(rig: Rig, modem: Modem) -> None:
    store = Store.open(rig.db)
    store.set_settings(rig.device, {"lte_report_gap_s": 3600})
    store.close()
    b = rig.bulb(site=rig.site("lte", apn="iot.example"), uart={"1": modem.path})
    b.power_on(stop_at_s=20)  # first report: it brings the setting back
    assert modem.air.connections == 1
    assert json.loads((b.fs / "server.json").read_text()) == {"lte_report_gap_s": 3600}
    modem.faults.clock_offset_s = 2 * 3600  # two hours later: within the default 6 h, but due
    b.power_on(stop_at_s=20)
    assert modem.air.connections == 2, "the pushed 1 h gap, not the default 6 h"
    b.power_on(stop_at_s=20)  # minutes later by the network clock: within the 1 h gap
    assert modem.air.connections == 2 and modem.air.attaches == 3
    modem.faults.clock_offset_s = 3 * 3600 + 120  # past the gap again
    b.power_on(stop_at_s=20)
    assert modem.air.connections == 3
    stored = assert_delivered_exactly_once(rig, b)
    assert [r.boot for r in kinds(stored, record.K_POWER_ON)] == [1, 2, 3, 4]
