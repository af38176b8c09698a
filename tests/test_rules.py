# SPDX-License-Identifier: MIT
"""Alert rules at chosen instants: pure (timeline, settings, now) -> decisions."""

from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from statistics import median

import pytest

from mimamori import models
from mimamori.clock import HOUR_MS
from mimamori.rules import (
    CLEAR,
    OPEN,
    Pause,
    RuleSettings,
    due_at,
    evaluate,
    evaluate_rule,
    replay,
)
from sim.household import DATA, Household, Profile, Visit, exact_timeline, load_ordonez, unix
from tests.test_timeline import Bulb, ms

JST = timezone(timedelta(hours=9))
H = 3600.0  # the Bulb builder's lengths count seconds; the rules, ms (ms(): the edge)


def at(day, hh, mm=0):
    """Unix time (s) of 2026-03-<day> hh:mm in Japan."""
    return datetime(2026, 3, day, hh, mm, tzinfo=JST).timestamp()


def rule(decisions, name, subject=""):
    (d,) = [x for x in decisions if x.rule == name and x.subject == subject]
    return d


FIXED = RuleSettings(tz="Asia/Tokyo", activity_rule="fixed")


def test_no_switch_on_for_24_hours_alerts_exactly_at_the_deadline_with_evidence():
    tl = Bulb().visit(at(2, 10, 42), 120, off=True).timeline()
    before = rule(evaluate(tl, FIXED, ms(at(3, 10, 41))), "no_activity")
    assert before.state == CLEAR and before.next_check == ms(at(3, 10, 42))
    assert before.evidence == "light switched on yesterday at 10:42"
    d = rule(evaluate(tl, FIXED, ms(at(3, 10, 42))), "no_activity")
    assert d.state == OPEN and d.since == ms(at(3, 10, 42))
    assert d.evidence == "no switch-on for 24 h: last light switched on yesterday at 10:42"
    assert d.audience == "family"


def test_alert_clears_when_the_light_comes_on_and_says_when():
    b = Bulb().visit(at(2, 10, 42), 120, off=True)
    b.visit(at(3, 14, 5), 60, off=True)
    d = rule(evaluate(b.timeline(), FIXED, ms(at(3, 14, 10))), "no_activity")
    assert d.state == CLEAR and d.evidence == "light switched on at 14:05"


def test_late_unanchored_visit_clears_with_its_bounds_not_an_invented_time():
    b = Bulb().visit(at(1, 8, 0), 60, off=True)
    b.visit(at(2, 9, 0), 60, anchor=False, off=True, received_at=at(2, 12, 0))
    d = rule(evaluate(b.timeline(), FIXED, ms(at(2, 12, 1))), "no_activity")
    assert d.state == CLEAR
    assert "between yesterday 08:01 and 11:59 (reported late)" in d.evidence
    # before the late batch arrived the household looked quiet for 24 h
    early = Bulb().visit(at(1, 8, 0), 60, off=True).timeline()
    assert rule(evaluate(early, FIXED, ms(at(2, 9, 30))), "no_activity").state == OPEN


def test_daily_window_alerts_at_0900_when_no_switch_on_since_0900_yesterday():
    s = replace(FIXED, activity_rule="daily_window", window_start=time(9, 0), window_h=24)
    tl = Bulb().visit(at(2, 8, 50), 60, off=True).timeline()
    assert rule(evaluate(tl, s, ms(at(3, 8, 59))), "daily_window").state == CLEAR
    d = rule(evaluate(tl, s, ms(at(3, 9, 0))), "daily_window")
    assert d.state == OPEN and d.since == ms(at(3, 9, 0))  # 25 h after, not 24: the window rule
    tl2 = Bulb().visit(at(2, 9, 10), 60, off=True).timeline()
    d2 = rule(evaluate(tl2, s, ms(at(3, 9, 0))), "daily_window")
    assert d2.state == CLEAR and d2.next_check == ms(at(4, 9, 0))


def toilet(days=range(1, 9)):
    """A bulb with a week of short toilet visits (07:00 to 21:00 every two hours, 5 min)."""
    b = Bulb()
    for d in days:
        for h in range(7, 22, 2):
            b.visit(at(d, h, 3), 300, off=True)
    return b


def test_light_on_far_longer_than_this_bulb_usually_is_alerts_and_off_clears():
    b = toilet().visit(at(10, 20, 0), 4 * H, alive=(10, 3600, 7200, 3 * H + 60),
                       received_at=at(10, 23, 2))
    d = rule(evaluate(b.timeline(), FIXED, ms(at(10, 23, 5))), "on_too_long", "bulb-1")
    assert d.state == OPEN and "light on since 20:00, still on at 23:01" in d.evidence
    assert "usually last up to" in d.evidence
    short = toilet().visit(at(10, 20, 0), 2 * H, alive=(10, 7000), received_at=at(10, 22, 0))
    assert rule(evaluate(short.timeline(), FIXED, ms(at(10, 22, 5))), "on_too_long",
                "bulb-1").state == CLEAR
    b.visit(at(11, 7, 0), 60, off=True)
    assert rule(evaluate(b.timeline(), FIXED, ms(at(11, 7, 5))), "on_too_long",
                "bulb-1").state == CLEAR


def test_light_left_on_clears_saying_when_it_went_off_and_how_long_it_was_on():
    # 20:00 on; the marks up to 23:01 reached the server at 23:02: the alert is open
    lit = toilet().visit(at(10, 20, 0), 4 * H, alive=(10, 3600, 7200, 3 * H + 60),
                         received_at=at(10, 23, 2))
    assert rule(evaluate(lit.timeline(), FIXED, ms(at(10, 23, 5))), "on_too_long",
                "bulb-1").state == OPEN
    # switched off at 23:12 (the dying gasp), on again at 23:35 and still on
    b = toilet().visit(at(10, 20, 0), 3 * H + 12 * 60, alive=(10, 3600, 7200, 3 * H + 60),
                       off=True, received_at=at(10, 23, 36))
    b.visit(at(10, 23, 35), 600, alive=(10,), received_at=at(10, 23, 36))
    d = rule(evaluate(b.timeline(), FIXED, ms(at(10, 23, 40))), "on_too_long", "bulb-1")
    assert d.state == CLEAR
    assert d.evidence == "light switched off at 23:12 after 3 h 12 min; on again at 23:35"
    # no dying gasp: the switch-off is known between the last mark and its bound, not invented
    nogasp = toilet().visit(at(10, 20, 0), 4 * H, alive=(10, 3600, 7200, 3 * H + 60),
                            received_at=at(10, 23, 2))
    nogasp.visit(at(11, 7, 0), 60, alive=(10,), received_at=at(11, 7, 1))
    d = rule(evaluate(nogasp.timeline(), FIXED, ms(at(11, 7, 2))), "on_too_long", "bulb-1")
    assert d.state == CLEAR and "so far" not in d.evidence
    assert d.evidence.startswith("light switched off between yesterday 23:01 and yesterday ")
    assert d.evidence.endswith(" after 3 h 1 min or more; on again at 07:00")
    # one visit, off by itself
    alone = Bulb().visit(at(2, 20, 0), 45 * 60, off=True)
    assert (rule(evaluate(alone.timeline(), FIXED, ms(at(2, 21, 0))), "on_too_long",
                 "bulb-1").evidence == "light switched off at 20:45 after 45 min")


def test_registered_bulb_never_heard_alerts_the_coordinator_not_the_family():
    tl = Bulb().timeline(registered={"bulb-1": ms(at(1, 10))})
    assert rule(evaluate(tl, FIXED, ms(at(2, 9))), "bulb_silent", "bulb-1").state == CLEAR
    d = rule(evaluate(tl, FIXED, ms(at(2, 10))), "bulb_silent", "bulb-1")
    assert d.state == OPEN and d.audience == "coordinator" and "never heard" in d.evidence


def test_bulb_not_heard_for_three_days_is_flagged_silent():
    tl = Bulb().visit(at(1, 10), 60, off=True).timeline()
    assert rule(evaluate(tl, FIXED, ms(at(3, 10))), "bulb_silent", "bulb-1").state == CLEAR
    assert rule(evaluate(tl, FIXED, ms(at(4, 11))), "bulb_silent", "bulb-1").state == OPEN


def test_bulb_is_not_flagged_silent_right_after_a_planned_absence():
    # heard on the 1st; the household away (paused) from the 2nd to the 5th: an empty home's
    # bulb is not silent, so its silence counts from the end of the pause (midnight of the 6th)
    tl = Bulb().visit(at(1, 10), 60, off=True).timeline()
    pause = Pause.from_dates(date(2026, 3, 2), date(2026, 3, 5), "Asia/Tokyo")
    s = replace(FIXED, pauses=(pause,))
    during = rule(evaluate(tl, s, ms(at(5, 12))), "bulb_silent", "bulb-1")
    assert during.state == CLEAR and during.next_check == ms(at(6, 0))
    after = rule(evaluate(tl, s, ms(at(6, 0, 1))), "bulb_silent", "bulb-1")
    assert after.state == CLEAR and after.next_check == ms(at(9, 0))  # 72 h after the pause
    assert rule(evaluate(tl, s, ms(at(8, 23, 59))), "bulb_silent", "bulb-1").state == CLEAR
    late = rule(evaluate(tl, s, ms(at(9, 0))), "bulb_silent", "bulb-1")
    assert late.state == OPEN and late.since == ms(at(9, 0)) and late.audience == "coordinator"
    # without the pause the same bulb was flagged on the 4th
    assert rule(evaluate(tl, FIXED, ms(at(6, 0, 1))), "bulb_silent", "bulb-1").state == OPEN


def test_visits_that_keep_arriving_late_flag_poor_delivery_for_the_coordinator():
    b = Bulb()
    for d in range(1, 8):
        b.visit(at(d, 9), 60, off=True)  # on time
        b.visit(at(d, 15), 60, anchor=False, off=True, received_at=at(d + 1, 9) + 1)
    d = rule(evaluate(b.timeline(), FIXED, ms(at(8, 10))), "poor_delivery", "bulb-1")
    assert d.state == OPEN and d.audience == "coordinator" and "check its signal" in d.evidence
    good = Bulb()
    for day in range(1, 8):
        good.visit(at(day, 9), 60, off=True)
    assert rule(evaluate(good.timeline(), FIXED, ms(at(8, 10))), "poor_delivery",
                "bulb-1").state == CLEAR


def test_paused_household_never_alerts_and_resumes_by_itself():
    tl = Bulb().visit(at(2, 10), 60, off=True).timeline()
    pause = Pause.from_dates(date(2026, 3, 3), date(2026, 3, 6), "Asia/Tokyo")
    s = replace(FIXED, pauses=(pause,))
    during = rule(evaluate(tl, s, ms(at(5, 12))), "no_activity")
    assert during.state == CLEAR and during.next_check == ms(at(7, 0))
    assert "paused until" in during.evidence
    # after the pause the gap counts from its end: 24 h after midnight of the 7th
    assert rule(evaluate(tl, s, ms(at(7, 23, 59))), "no_activity").state == CLEAR
    assert rule(evaluate(tl, s, ms(at(8, 0, 0))), "no_activity").state == OPEN


def test_every_evaluation_says_when_to_look_next():
    tl = Bulb().visit(at(2, 10), 60, off=True).timeline(registered={"bulb-1": ms(at(1, 9))})
    ds = evaluate(tl, FIXED, ms(at(2, 11)))
    assert due_at(ds) == rule(ds, "no_activity").next_check == ms(at(3, 10))
    # the placement check speaks once the bulb's first week has settled into its model
    assert rule(ds, "placement", "bulb-1").next_check == ms(at(8, 0)) + models.SETTLE_MS


# ---------------------------------------------------------------- the learned rule

START = datetime(2026, 1, 5)  # a Monday; simulated times are taken as UTC
LEARN = RuleSettings(tz="UTC")


def _history(days=35, seed=3, **kw):
    visits = Household(seed, Profile(**kw)).events(START, days)
    return visits, exact_timeline(visits)


def test_learned_rule_falls_back_to_the_fixed_24h_while_history_is_short():
    visits, tl = _history(days=4)
    last = ms(unix(visits[-1].on))
    (d,) = evaluate_rule(tl, LEARN, last + HOUR_MS, "unusual_quiet")
    assert d.state == CLEAR and "still learning" in d.evidence
    assert d.detail["limit_h"] == 24 and d.detail["reasons"] == ["learning"]


def test_evening_fall_is_detected_sooner_than_24h_by_the_learned_rule():
    sooner = []
    for seed in range(6):
        visits, _ = _history(seed=seed)
        fall = START + timedelta(days=30, hours=21)
        tl = exact_timeline([v for v in visits if v.on < fall])
        t = ms(unix(fall))
        learned = replay(tl, LEARN, t, t + 72 * HOUR_MS, "unusual_quiet")
        fixed = replay(tl, LEARN, t, t + 72 * HOUR_MS, "no_activity")
        assert learned and fixed
        assert learned[0].opened <= fixed[0].opened  # never later than the fixed 24 h rule
        assert learned[0].opened - t >= LEARN.learned_min_h * HOUR_MS
        sooner.append(fixed[0].opened - learned[0].opened)
    # a missed bedtime and morning tell before the day is over, except in households that went
    # almost a day without a switch-on in the last weeks (alerting sooner would have been false)
    assert sum(1 for x in sooner if x > 2 * HOUR_MS) >= 3


def test_learned_rule_does_not_alert_a_late_riser_or_a_quiet_weekend():
    # a rhythm with weekend mornings 1.5 h later, much quieter weekends and late mornings
    _, tl = _history(days=56, weekend_shift_h=1.5, weekend_rate=0.5, late_morning_p=0.1)
    eps = replay(tl, LEARN, ms(unix(START)), ms(unix(START + timedelta(days=56))), "unusual_quiet")
    assert eps == []


def test_learned_rule_does_not_learn_from_paused_days():
    _, tl = _history(days=35)
    now = ms(unix(START + timedelta(days=35))) + models.SETTLE_MS
    full = models.learn(tl, "UTC", [], now)
    pause = (ms(unix(START + timedelta(days=20))), ms(unix(START + timedelta(days=30))))
    kept = exact_timeline([v for v in _history(days=35)[0]
                           if not pause[0] <= ms(unix(v.on)) < pause[1]])
    paused = models.learn(kept, "UTC", [pause], now)
    unpaused_gap = models.learn(kept, "UTC", [], now)
    assert full.n_days == paused.n_days == 35
    # the ten empty days would make the household look quiet; the pause keeps its rhythm
    assert sum(unpaused_gap.rates()) < 0.8 * sum(full.rates())
    assert abs(sum(paused.rates()) - sum(full.rates())) < 0.2 * sum(full.rates())
    assert paused.days < full.days - 2  # the paused days are not days watched


needs_logs = pytest.mark.skipif(
    not (DATA / "OrdonezA_Sensors.txt").exists(),
    reason=f"the Ordonez activity logs are not in {DATA} (../shared/data/activity)",
)


@needs_logs
@pytest.mark.parametrize("house", ["A", "B"])
def test_real_household_rhythm_gives_no_false_alert_and_earlier_detection(house):
    """Ordonez et al., Sensors 13(5):5460-5477, 2013: bathroom sensors as the bulb."""
    log = load_ordonez(house)
    tl = exact_timeline(log.visits)
    t0, t1 = ms(unix(log.visits[0].on)), ms(unix(log.visits[-1].off))
    assert replay(tl, LEARN, t0, t1, "unusual_quiet") == []
    assert replay(tl, LEARN, t0, t1, "no_activity") == []
    delays = {"unusual_quiet": [], "no_activity": []}
    for d in range(8, log.days - 1):
        for hour in (8, 13, 19, 23):
            fall = log.start + timedelta(days=d, hours=hour)
            part = exact_timeline([v for v in log.visits if v.on < fall])
            for r, ds in delays.items():
                t = ms(unix(fall))
                (first, *_) = replay(part, LEARN, t, t + 72 * HOUR_MS, r)
                ds.append(first.opened - t)
    assert median(delays["unusual_quiet"]) < median(delays["no_activity"]) - 2 * HOUR_MS
    assert max(delays["unusual_quiet"]) <= max(delays["no_activity"])


def test_visit_list_api_is_usable_for_driving_bulbs():
    visits, _ = _history(days=2)
    assert all(isinstance(v, Visit) and v.on < v.off for v in visits)


def test_a_late_visit_days_ago_reads_between_two_dated_times():
    b = Bulb().visit(at(1, 8, 0), 60, off=True)
    b.visit(at(2, 9, 0), 60, anchor=False, off=True, received_at=at(4, 12, 0))
    d = rule(evaluate(b.timeline(), FIXED, ms(at(4, 12, 1))), "no_activity")
    assert "between Sun 01 Mar 08:01 and " in d.evidence, d.evidence
    assert "between on" not in d.evidence and " and on " not in d.evidence, d.evidence
