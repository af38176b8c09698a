# SPDX-License-Identifier: MIT
"""A model is a value: learning from a kept model leaves that model as it was, and what the rules
derive from a model (its spells in expected switch-ons, its bulbs' held reports) is derived from
that model, never from another one that happened to live at the same address before it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from mimamori import models, rules
from mimamori.clock import DAY_MS, HOUR_MS
from mimamori.timeline import Timeline
from sim.household import Household, Profile, exact_timeline, ms

START = datetime(2026, 1, 5)
DAY, N_SPELLS = 740_000, 10  # what the caches compared: equal in the old and the new model


def _text(m: models.HouseholdModel) -> str:
    return json.dumps(m.to_json(), sort_keys=True)


def test_learning_from_a_kept_model_leaves_the_kept_model_as_it_was():
    tl = exact_timeline(Household(4, Profile()).events(START, 20))
    kept = models.learn(tl, "UTC", [], ms(START + timedelta(days=10)) + models.SETTLE_MS)
    before = _text(kept)
    later = models.learn(tl, "UTC", [], ms(START + timedelta(days=20)) + models.SETTLE_MS, kept)
    assert later.n_days == 20 and kept.n_days == 10
    assert _text(kept) == before  # the rules still read it (kept.py keeps it parsed)
    day = next(models.days_of(tl, "UTC", [], ms(START + timedelta(days=20)), after=later.day
                              - 3))
    folded = models.fold(kept, day)
    assert folded.day == day.day
    assert _text(kept) == before


def _spells(half_hour: int) -> list[list[float]]:
    out = [[0.0] * (len(models.SPELL_EDGES_H) + 1) for _ in range(48)]
    out[half_hour][40] = 10.0  # ten spells of about 2 h, begun at that half-hour
    return out


def _bulb(late: bool) -> dict[str, models.BulbModel]:
    bm = models.BulbModel("bulb", installed=0.0, n_days=30, days=30.0, full_days=30.0,
                          on=[2.0] * 24, seen=[30.0] * 24, sent=[2.0] * 24)
    if late:  # half its reports held about 3 h, at every hour (a router off now and then)
        for h in range(24):
            bm.late[h] = 1.0
            bm.held[h][10] = 1.0
    return {"bulb": bm}


def _model(spells: list[list[float]], bulbs: dict[str, models.BulbModel]
           ) -> models.HouseholdModel:
    return models.HouseholdModel(bulbs, DAY, 30, 30.0, N_SPELLS, spells, [], None)


def _at_a_freed_id(old: Callable[[], tuple], new: Callable[[], tuple],
                   derive: Callable[[models.HouseholdModel], Any]) -> tuple[Any, Any, Any]:
    """(what derive gives for an old model, for a new model that took the old one's id after it
    was freed, for an equal new model elsewhere). The new model's parts are made before the old
    one is freed, so the new object itself is what lands at the freed address (CPython)."""
    for _ in range(50):
        first = _model(*old())
        got_old = derive(first)
        where = id(first)
        parts = new()
        del first
        second = _model(*parts)
        if id(second) == where:
            return got_old, derive(second), derive(_model(*new()))
        del second
    raise AssertionError("no freed id was reused in 50 tries: this test needs CPython")


def test_spell_masses_are_the_new_models_own_at_a_reused_id():
    mass = models.Mass([0.5] * 24, 0.0)
    old, got, want = _at_a_freed_id(lambda: (_spells(2), {}), lambda: (_spells(30), {}),
                                    lambda m: models.spell_masses(m, mass))
    assert got == want and got != old


def _in_one_memo(old: Callable[[], tuple], new: Callable[[], tuple],
                 derive: Callable[[models.HouseholdModel, rules.Memo], Any]
                 ) -> tuple[Any, Any, Any]:
    """(what derive gives for an old model, for a new one asked of the same memo after it --
    the caches' keys are equal for both --, for an equal new model with a memo of its own)."""
    memo = rules.Memo()
    got_old = derive(_model(*old()), memo)
    return got_old, derive(_model(*new()), memo), derive(_model(*new()), rules.Memo())


def test_pooled_spells_are_the_new_models_own_in_a_memo_kept_across_models():
    mass = models.Mass([0.5] * 24, 0.0)
    old, got, want = _in_one_memo(lambda: (_spells(2), {}), lambda: (_spells(30), {}),
                                  lambda m, memo: rules._pooled(m, mass, 15, 1, math.inf,
                                                                memo)[1])
    assert got == want and got != old


def test_held_reports_are_the_new_models_own_in_a_memo_kept_across_models():
    old, got, want = _in_one_memo(lambda: (_spells(2), _bulb(True)),
                                  lambda: (_spells(2), _bulb(False)), rules.held)
    assert old is not None  # the old model's bulb had reports held
    assert got is None and want is None  # the new one's never were


def test_learned_deadlines_are_the_new_models_own_in_a_memo_kept_across_models():
    s = rules.RuleSettings(tz="UTC")
    t0 = 20_000 * DAY_MS + 15 * HOUR_MS  # a quiet spell begun at 15:00 UTC

    def deadline(m: models.HouseholdModel, memo: rules.Memo) -> tuple:
        cx = rules.context(Timeline(()), s, 0, model=m, memo=memo)
        return rules._learned_deadline(cx, models.Mass(m.rates(), 0), t0, [])

    old, got, want = _in_one_memo(lambda: (_spells(30), _bulb(True)),
                                  lambda: (_spells(30), _bulb(False)), deadline)
    assert got == want and got != old


def test_no_rule_keeps_a_cache_of_its_own():
    """What the rules derive is kept only in the Memo their caller owns: the rules module holds
    no mutable state between evaluations."""
    mutable = {k for k, v in vars(rules).items()
               if isinstance(v, (dict, list, set)) and not k.startswith("__")
               and k not in ("_GAP_RULES",)}
    assert mutable == set()
