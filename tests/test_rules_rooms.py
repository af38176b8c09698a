# SPDX-License-Identifier: MIT
"""The rules per bulb and per room, at chosen instants: rooms lit for hours every evening,
rarely used rooms, dusk moving with the season, radios that fail, absences people have."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone

import pytest

from bench import figures_population as fp
from mimamori import models
from mimamori.clock import DAY_MS, HOUR_MS, MINUTE_MS
from mimamori.rules import (
    CLEAR,
    OPEN,
    Absence,
    Pause,
    RuleSettings,
    evaluate,
    evaluate_rule,
    replay,
)
from sim import population as pop
from sim.household import Visit, exact_timeline
from sim.household import ms as dt_ms
from tests.test_rules import toilet
from tests.test_timeline import ms

JST = timezone(timedelta(hours=9))
H = 3600.0  # the Bulb builder counts seconds (ms(): the edge); the populations count ms
UTC = RuleSettings(tz="UTC")


def at(day, hh, mm=0):
    return datetime(2026, 3, day, hh, mm, tzinfo=JST).timestamp()


def one(decisions, name, subject=""):
    (d,) = [x for x in decisions if x.rule == name and x.subject == subject]
    return d


def lit_world(h: pop.PopHousehold, day: int) -> tuple[pop.World, int]:
    """The household's life until its first visit on `day`, which then stays lit."""
    t = h.t0 + day * DAY_MS + 15 * HOUR_MS
    v = next(v for v in h.visits if dt_ms(v.on) >= t)
    before = [x for x in h.visits if x.on < v.on]
    on = dt_ms(v.on)
    return pop.World(h, before + [Visit(v.on, v.on + timedelta(days=3))], on + 3 * DAY_MS), on


def test_living_room_lit_all_evening_is_normal_but_lit_long_past_bedtime_alerts():
    h = pop.household("living_room", "good_wifi", 3, days=50)
    w, on = lit_world(h, 40)
    m = models.learn(w.timeline(on), "UTC", [], on)
    for hours, state in ((3, CLEAR), (5, CLEAR), (12, OPEN)):
        t = on + hours * HOUR_MS
        d = one(evaluate(w.timeline(t), UTC, t, model=m), "on_too_long", "bulb")
        assert d.state == state, (hours, d.evidence)
    assert "usually last up to" in d.evidence and d.strength == "strong"
    # the old fixed 3 h rule would have alerted on this room every evening
    assert d.detail["limit_h"] > 3 * 1.5


def test_lamp_whose_reports_stop_is_probably_off_and_the_alert_is_not_kept_open():
    b = toilet().visit(at(10, 20, 0), 4 * H, alive=(10, 3600, 7200, 3 * H + 60),
                       received_at=at(10, 23, 2))
    tl = b.timeline()
    assert one(evaluate(tl, UTC, ms(at(10, 23, 5))), "on_too_long", "bulb-1").state == OPEN
    d = one(evaluate(tl, UTC, ms(at(11, 1, 0))), "on_too_long", "bulb-1")  # nothing since 23:02
    assert d.state == CLEAR and d.detail["probably_off"]
    assert "probably switched off, or its radio is down" in d.evidence
    assert "no report from the bulb since" in d.evidence


def test_rarely_used_room_does_not_alert_after_a_quiet_day_and_the_placement_check_says_so():
    h = pop.household("rare_room", "good_wifi", 1, days=60)
    w = pop.World(h)
    opened = []
    for day in range(2, 60):
        t = h.t0 + day * DAY_MS + 12 * HOUR_MS
        ds = evaluate(w.timeline(t), UTC, t, key=("rare", h.seed))
        q = one(ds, "unusual_quiet")
        if q.state == OPEN:
            opened.append(q.detail["gap_h"])
        if day == 10:
            p = one(ds, "placement", "bulb")
            assert p.state == OPEN and p.audience == "coordinator"
            assert "move the bulb to the toilet" in p.evidence
    assert all(g > 48 for g in opened), opened  # a day or two unused is this room's normal
    fixed = replay(exact_timeline(h.visits), replace(UTC, activity_rule="fixed"), h.t0, h.t1,
                   "no_activity")
    assert len(fixed) > 10 * max(1, len(opened))


def test_dusk_bulb_following_the_season_does_not_cross_an_alert_line_every_few_days():
    h = pop.household("seasonal", "good_wifi", 0, days=110)
    res, _ = fp.replay_life(h, [])
    assert res.alerts <= 1
    fixed = replay(exact_timeline(h.visits), UTC, h.t0, h.t1, "no_activity")
    assert len(fixed) >= 10  # what the fixed 24 h rule does to it


@pytest.mark.slow
def test_a_bulb_with_late_reports_waits_as_long_as_its_delays_reach_and_says_why():
    # second pass: no blanket 24 h floor for every bulb that was ever late; the wait covers
    # the delays this bulb has shown (tests/test_rules_quiet.py: weak Wi-Fi, outages)
    h = pop.household("toilet", "router_20h_10d", 2, days=60)
    w = pop.World(h)
    radio = 0
    for k in range(300):
        t = h.t0 + 20 * DAY_MS + round(k * 1.3 * HOUR_MS)
        d = evaluate_rule(w.timeline(t), UTC, t, "unusual_quiet")[0]
        if "radio" in d.detail.get("reasons", ()):
            radio += 1
            assert d.detail["limit_h"] > d.detail["rhythm_h"]
            assert "may be its radio" in d.evidence
    assert radio > 50
    # a fall: the alert comes, weak, and says the silence may be the radio
    fall = h.t0 + 45 * DAY_MS + 10 * HOUR_MS
    vs = [x for x in h.visits if dt_ms(x.on) < fall]
    wf = pop.World(h, vs)
    t = fall
    for _ in range(200):
        d = evaluate_rule(wf.timeline(t), UTC, t, "unusual_quiet")[0]
        if d.state == OPEN:
            break
        t = max(t + MINUTE_MS, min(d.next_check or math.inf, t + 6 * HOUR_MS))
    assert d.state == OPEN and "may be its radio" in d.evidence, d.evidence
    assert d.detail["limit_h"] >= 24


def test_poor_delivery_fires_for_a_router_off_at_night_or_for_a_day_not_for_good_wifi():
    fired = {}
    for delivery in ("good_wifi", "router_nightly", "router_20h_10d", "weak_wifi"):
        h = pop.household("toilet", delivery, 1, days=40)
        w = pop.World(h)
        fired[delivery] = []
        for day in range(5, 40):
            t = h.t0 + day * DAY_MS + 12 * HOUR_MS
            d = one(evaluate(w.timeline(t), UTC, t, only=("poor_delivery",)), "poor_delivery",
                    "bulb")
            if d.state == OPEN:
                fired[delivery].append(d.evidence)
    assert not fired["good_wifi"]
    assert len(fired["router_nightly"]) > 20
    assert any("mostly between" in e for e in fired["router_nightly"])
    assert fired["router_20h_10d"] and fired["weak_wifi"]
    assert all("connection attempts failed" in e for e in fired["weak_wifi"])


def test_day_service_absence_holds_alerts_and_the_quiet_spell_counts_from_the_return():
    # 2026-03-10 is a Tuesday; day service on Tuesdays and Fridays 09:00-17:00
    s = RuleSettings(tz="Asia/Tokyo", activity_rule="fixed", no_activity_h=6,
                 absences=(Absence((1, 4), time(9, 0), time(17, 0), "day service"),))
    tl = toilet(days=range(1, 10)).visit(at(10, 8, 30), 60, off=True).timeline()
    away = one(evaluate(tl, s, ms(at(10, 12, 0))), "no_activity")
    assert away.state == CLEAR and away.evidence == "paused until 17:00 (day service)"
    assert away.next_check == ms(at(10, 17, 0))
    back = one(evaluate(tl, s, ms(at(10, 22, 0))), "no_activity")
    assert back.state == CLEAR and back.evidence == "pause ended at 17:00"
    assert one(evaluate(tl, s, ms(at(10, 23, 0))), "no_activity").state == OPEN  # 6 h after 17:00
    # without the absence she would have been alerted at 14:30, while at the day service
    plain = replace(s, absences=())
    assert one(evaluate(tl, plain, ms(at(10, 14, 31))), "no_activity").state == OPEN


def test_needed_help_pause_holds_alerts_until_the_next_switch_on_ends_it():
    b = toilet(days=range(1, 10))
    s = replace(UTC, tz="Asia/Tokyo", pauses=(Pause(ms(at(9, 22, 0)), math.inf, True,
                                                    "needed help: ambulance"),))
    d = one(evaluate(b.timeline(), s, ms(at(12, 9, 0))), "unusual_quiet")
    assert d.state == CLEAR and d.evidence == ("paused until the next switch-on "
                                               "(needed help: ambulance)")
    assert d.next_check is None  # only her return (a switch-on) changes it
    b.visit(at(13, 15, 0), 120, off=True)  # home again
    d = one(evaluate(b.timeline(), s, ms(at(13, 16, 0))), "unusual_quiet")
    assert d.state == CLEAR and "paused" not in d.evidence


def test_short_visit_rooms_alert_on_a_light_left_on_in_their_first_week_a_living_room_not():
    for day in (0, 2, 5):  # its first afternoon, before any day has settled; then learning
        h = pop.household("toilet", "good_wifi", 0, days=20)
        w, on = lit_world(h, day)
        t = on + 4 * HOUR_MS
        d = one(evaluate(w.timeline(t), UTC, t, key=("first-week", day)), "on_too_long", "bulb")
        assert d.state == OPEN and d.strength == "weak", (day, d.evidence)
        assert d.detail["limit_h"] <= 3
        h = pop.household("living_room", "good_wifi", 0, days=20)
        w, on = lit_world(h, day)
        t = on + 5 * HOUR_MS  # a lit evening: not unusual while its room is not known
        d = one(evaluate(w.timeline(t), UTC, t, key=("first-week-lr", day)), "on_too_long",
                "bulb")
        assert d.state == CLEAR, (day, d.evidence)
