# SPDX-License-Identifier: MIT
"""The household simulator: a real rhythm, reproducible days, and the incidents it can inject."""

import itertools
import random
from datetime import datetime, timedelta
from statistics import mean

import pytest

from mimamori.clock import SECOND_MS
from mimamori.timeline import build_timeline
from sim.household import (
    DATA,
    Fall,
    HospitalStay,
    Household,
    LightLeftOn,
    Profile,
    bulb_records,
    calibrate,
    load_ordonez,
    ms,
)

START = datetime(2026, 1, 5)


def test_same_seed_gives_the_same_days_and_another_seed_does_not():
    a = Household(1).events(START, 7)
    assert a == Household(1).events(START, 7)
    assert a != Household(2).events(START, 7)


def test_visits_are_ordered_non_overlapping_and_inside_the_days_asked():
    vs = Household(5, Profile().sample(random.Random(5))).events(START, 14)
    assert all(v.on < v.off for v in vs)
    assert all(a.off < b.on for a, b in itertools.pairwise(vs))
    assert START <= vs[0].on and vs[-1].on < START + timedelta(days=14)
    per_day = len(vs) / 14
    assert 3 <= per_day <= 15


def test_nights_are_quiet_and_mornings_busy():
    vs = Household(3).events(START, 28)
    wake = Profile().wake_h
    night = [v for v in vs if (v.on.hour - (Profile().bed_h - 24) - 1) % 24 < wake - 3]
    morning = [v for v in vs if wake - 1 <= v.on.hour + v.on.minute / 60 <= wake + 2]
    assert len(morning) > 3 * len(night)


def test_fall_stops_every_switch_on_after_it():
    fall = START + timedelta(days=3, hours=14)
    vs = Household(4, incidents=(Fall(fall),)).events(START, 7)
    assert vs and all(v.on < fall for v in vs)
    assert Household(4).events(START, 7)[: len(vs)] == vs


def test_hospital_stay_empties_the_house_and_reports_its_pause():
    s, e = START + timedelta(days=2), START + timedelta(days=5)
    hh = Household(4, incidents=(HospitalStay(s, e, paused=True),))
    vs = hh.events(START, 7)
    assert not [v for v in vs if s <= v.on < e]
    assert [v for v in vs if v.on >= e]
    assert hh.pauses() == [(s, e)]
    assert Household(4, incidents=(HospitalStay(s, e, paused=False),)).pauses() == []


def test_light_left_on_for_hours():
    t = START + timedelta(days=1, hours=20)
    vs = Household(4, incidents=(LightLeftOn(t, 5),)).events(START, 3)
    (v,) = [v for v in vs if v.on == t]
    assert v.off - v.on == timedelta(hours=5)


def test_bulb_records_of_visits_rebuild_the_same_timeline():
    vs = Household(6).events(START, 5)
    recs = bulb_records(vs, "bulb-1", seed=1, connect_p=0.7)
    ivs = build_timeline(recs).intervals
    # visits after the last one that connected are still in the bulb's journal, not sent yet
    assert 0 <= len(vs) - len(ivs) < 5 and len(ivs) > 20
    for iv, v in zip(ivs, vs, strict=False):
        assert iv.start_latest >= ms(v.on) - SECOND_MS
        assert iv.start_earliest is None or iv.start_earliest <= ms(v.on) + SECOND_MS
        assert iv.on_ms <= (v.off - v.on) / timedelta(milliseconds=1) + SECOND_MS


@pytest.mark.skipif(not (DATA / "OrdonezA_Sensors.txt").exists(),
                    reason=f"the Ordonez activity logs are not in {DATA} (../shared/data/activity)")
def test_simulated_rhythm_matches_the_real_logs_it_was_calibrated_on():
    """Ordonez et al., Sensors 13(5):5460-5477, 2013: bathroom visits per day and wake time."""
    for house in "AB":
        log = load_ordonez(house)
        prof = calibrate(log)
        vs = Household(11, prof).events(START, 28)
        real_rate = len(log.visits) / log.days
        assert abs(len(vs) / 28 - real_rate) < 0.35 * real_rate
        first_real = mean(min(v.on.hour + v.on.minute / 60 for v in log.visits
                              if v.on.date() == d and v.on.hour >= 6)
                          for d in {v.on.date() for v in log.visits if v.on.hour >= 6})
        first_sim = mean(min(v.on.hour + v.on.minute / 60 for v in vs
                             if v.on.date() == d and v.on.hour >= 6)
                         for d in {v.on.date() for v in vs if v.on.hour >= 6})
        assert abs(first_sim - first_real) < 1.5
