# SPDX-License-Identifier: MIT
"""Reminders that respect people, "needed help", absences and settings, through the JSON API,
the sweeper and the CLI at chosen server instants (the rig of tests/test_lifecycle.py)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from mimamori import alerts, households, notify
from mimamori.rules import OPEN, Decision
from tests.test_lifecycle import JST, World, family

H = 3600.0


def jst(day, hh, mm=0):
    return datetime(2026, 3, day, hh, mm, tzinfo=JST).timestamp()


@pytest.fixture
def w(db_url, monkeypatch):
    world = World(db_url, monkeypatch)
    yield world
    world.http.close()


def test_strong_alert_reminders_back_off_stop_at_the_cap_and_wait_for_quiet_hours(w):
    ws = w.household(watchers=("Aiko", "Ken"), reminder_h=2, reminder_max=3)
    w.t = jst(2, 13, 0)
    w.switch_on()
    for t in range(int(jst(3, 13, 0)), int(jst(5, 12, 0)), 1800):
        w.at(t)
    (a,) = w.api("GET", "/alerts?active=true")
    assert a["detail"]["strength"] == "strong"
    rem = [o for o in notify.outbox(w.db) if o.kind == "reminder" and o.watcher == ws["Aiko"]]
    assert len(rem) == 3  # at 2, 6 and 14 h: 15:00, 19:00, 03:00; then no more
    with w.db.tx() as c:
        due = [r[0] for r in c.all("SELECT next_attempt_at FROM outbox WHERE kind = 'reminder' "
                                   "AND watcher = ? ORDER BY created_at", (ws["Aiko"],))]
    assert all(jst(3, 15, 0) * 1000 <= d < jst(3, 22, 0) * 1000 for d in due[:2])  # sent
    assert due[2] == int(jst(4, 7, 0) * 1000)  # the one due in the night waits for 07:00


def _learning_alert(w, hours: tuple[int, ...], start: float, until: float) -> dict:
    """Her switch-ons at `hours` on days 2 to 4 (the rule still learning), then a sweep every
    half hour from `start` until the family alert opens (before `until`): that alert."""
    w.household(watchers=("Aiko", "Nao"), activity_rule="learned", reminder_h=2)
    for day in (2, 3, 4):
        for hh in hours:
            w.t = jst(day, hh, 0)
            w.switch_on()
    t = start
    while not family(w.api("GET", "/alerts?active=true")) and t < until:
        t += 1800
        w.at(t)
    (a,) = family(w.api("GET", "/alerts?active=true"))
    return a


def test_weak_alert_is_held_through_the_night_never_escalates_and_is_dropped_if_it_clears(w):
    # a room lit twice a day: still learning, waiting longer than a day
    a = _learning_alert(w, (11, 23), jst(6, 12, 0), jst(9, 0, 0))
    assert a["rule"] == "unusual_quiet" and a["detail"]["strength"] == "weak"
    assert "still learning" in a["evidence"] and a["detail"]["limit_h"] > 24
    assert not a["detail"].get("tell_now") and "tell_by" not in a["detail"]
    assert a["next_escalation_at"] is None  # weak evidence: never escalated
    opened = a["opened_at"] / 1000
    assert jst(7, 22, 0) <= opened < jst(8, 6, 0), "this history's deadline falls at night"
    with w.db.tx() as c:
        held = c.all("SELECT watcher, next_attempt_at FROM outbox WHERE kind = 'alert'")
    quiet_end = int(jst(8, 7, 0) * 1000)
    assert {n for _, n in held} == {quiet_end}  # held until the family's quiet hours end
    w.at(opened + 3 * H)
    assert not [o for o in notify.outbox(w.db) if o.kind == "escalated"]
    w.t = jst(8, 6, 30)  # she switches the light on before the family wakes up
    w.switch_on()
    got = w.api("GET", f"/alerts/{a['id']}")
    assert got["state"] == "cleared"
    # nobody was woken: the held alert is dropped, and nobody is told it cleared
    assert {o.state for o in notify.outbox(w.db) if o.kind == "alert"} == {"cancelled"}
    assert not [o for o in notify.outbox(w.db) if o.kind == "cleared"]
    assert not [o for o in notify.outbox(w.db) if o.kind == "reminder" and o.state != "cancelled"]


def test_a_busy_room_still_learning_tells_the_family_at_the_fixed_rules_hour_at_night(w):
    # while learning, a room used several times a day waits the fixed rule's 24 h: on weak
    # evidence (no escalation), yet never told later than the fixed rule would tell them
    # three days of a busy toilet
    a = _learning_alert(w, (8, 10, 12, 14, 16, 18, 20, 23), jst(5, 12, 0), jst(7, 0, 0))
    assert a["detail"]["strength"] == "weak" and "still learning" in a["evidence"]
    assert a["detail"]["tell_now"] and a["next_escalation_at"] is None
    opened = a["opened_at"]
    assert jst(5, 23, 0) * 1000 <= opened < jst(5, 23, 31) * 1000  # 24 h after 23:00, at night
    with w.db.tx() as c:
        held = c.all("SELECT next_attempt_at FROM outbox WHERE kind = 'alert'")
    assert held and all(n <= opened for (n,) in held)  # sent at once, not at 07:00


def test_a_weak_alert_held_for_the_night_goes_out_when_the_fixed_rule_would_alert(w):
    # the learned rule opens on weak evidence (the silence may be the radio) at 23:00, before
    # the fixed rule's deadline (01:30): held for quiet hours it would reach the family at
    # 07:00, five and a half hours after the fixed rule would have told them
    opened, fixed = int(jst(6, 23, 0) * 1000), int(jst(7, 1, 30) * 1000)
    held = {}
    for hid, tell in (("home-1", {"tell_by": fixed}), ("home-2", {})):
        ws = w.household(hid, watchers=("Aiko", "Ken"), activity_rule="learned")
        with w.db.tx() as c:
            d = Decision("unusual_quiet", OPEN, opened - 21 * 3_600_000, "no switch-on for 21 h",
                         None, at=opened - 21 * 3_600_000, strength="weak",
                         detail={"strength": "weak", "reasons": ["radio"], "fits": True} | tell)
            alerts.apply(c, households.household(c, hid), [d], opened, w.app.state.api.cfg)
            held[hid] = dict(c.all("SELECT watcher, next_attempt_at FROM outbox "
                                   "WHERE kind = 'alert' AND watcher IN (?, ?)",
                                   (ws["Aiko"], ws["Ken"])))
    assert set(held["home-1"].values()) == {fixed}  # at the fixed rule's instant
    assert set(held["home-2"].values()) == {int(jst(7, 7, 0) * 1000)}  # the end of quiet hours
    assert len(held["home-1"]) == len(held["home-2"]) == 2


def test_needed_help_pauses_until_the_next_switch_on_so_nobody_is_alerted_about_an_empty_home(w):
    ws = w.household()
    w.t = jst(2, 10, 0)
    w.switch_on()
    w.at(jst(3, 10, 30))
    (a,) = family(w.api("GET", "/alerts?active=true"))
    got = w.api("POST", f"/alerts/{a['id']}/resolve",
                json={"watcher": ws["Aiko"], "outcome": "needed_help",
                      "note": "ambulance called"})
    assert got["state"] == "resolved"
    (p,) = w.api("GET", "/households/home-1/pauses")
    assert p["until_switch_on"] and p["reason"] == "needed help: ambulance called"
    msg = next(o for o in w.outbox("resolved") if o.watcher == ws["Ken"])
    assert "次に電気がつくまで" in msg.body
    for day in (4, 5, 6, 7):  # in hospital: the empty home alerts nobody
        w.at(jst(day, 12, 0))
    assert len(family(w.api("GET", "/alerts"))) == 1
    w.t = jst(8, 15, 0)  # home again: the first switch-on ends the pause
    w.switch_on()
    (p,) = w.api("GET", "/households/home-1/pauses")
    assert abs(p["end_ms"] - jst(8, 15, 0) * 1000) < 5000
    w.at(jst(9, 15, 5))  # a day without switch-on after coming home alerts again
    assert len(family(w.api("GET", "/alerts?active=true"))) == 1
    # the watcher may decline the pause
    (b,) = family(w.api("GET", "/alerts?active=true"))
    w.api("POST", f"/alerts/{b['id']}/resolve", json={"watcher": ws["Aiko"],
                                                      "outcome": "needed_help", "pause": False})
    assert len(w.api("GET", "/households/home-1/pauses")) == 1


def test_recurring_absences_and_every_setting_are_set_through_the_api_and_nonsense_refused(w):
    ws = w.household()
    got = w.api("POST", "/households/home-1/absences", 201,
                json={"days": "tue,fri", "from": "09:00", "to": "17:00",
                      "reason": "day service"})
    assert got == [{"days": ["tue", "fri"], "from": "09:00", "to": "17:00",
                    "reason": "day service"}]
    assert w.api("GET", "/households/home-1/absences") == got
    st = w.api("PATCH", "/households/home-1/settings",
               json={"learned_max_h": 36, "days_per_false_alert": 300, "learn_min_days": 14,
                     "reminder_max": 2, "silent_h": 48, "on_days_per_false_alert": 400})
    assert (st["learned_max_h"], st["learn_min_days"], st["reminder_max"]) == (36, 14, 2)
    with w.db.tx() as c:  # what the rules read
        rs = households.household(c, "home-1").settings.rules("Asia/Tokyo")
    assert (rs.days_per_false_alert, rs.on_days_per_false_alert) == (300, 400)
    for body, want in (({"learned_max_h": "patient"}, "number of hours"),
                       ({"learn_min_days": 2.5}, "whole number"),
                       ({"reminder_max": -1}, "whole number"),
                       ({"absences": [{"days": "someday", "from": "09:00", "to": "17:00"}]},
                        "weekdays"),
                       ({"absences": [{"days": "mon", "from": "9am", "to": "17:00"}]},
                        "HH:MM"),
                       ({"on_days_per_false_alert": 2}, "number of days from 10"),
                       ({"learned_max_h": 4, "learned_min_h": 8}, "must not be below")):
        r = w.http.patch("/api/v1/households/home-1/settings", headers=w.auth, json=body)
        assert r.status_code == 400 and want in r.json()["detail"], (body, r.text)
    r = w.http.post("/api/v1/households/home-1/absences", headers=w.auth,
                    json={"days": "tue", "from": "09:00", "to": "09:00"})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    assert w.api("DELETE", "/households/home-1/absences/1") == []
    assert w.http.delete("/api/v1/households/home-1/absences/3",
                         headers=w.auth).status_code == 404
    got = w.api("PATCH", f"/watchers/{ws['Aiko']}", json={"quiet_hours": "21:30-06:30"})
    assert got["quiet_hours"] == "21:30-06:30"
    r = w.http.patch(f"/api/v1/watchers/{ws['Aiko']}", headers=w.auth,
                     json={"quiet_hours": "late"})
    assert r.status_code == 400 and "HH:MM-HH:MM" in r.json()["detail"]
    placement = w.api("GET", "/households/home-1/placement")
    assert placement[0]["verdict"] == "learning" and "still learning" in placement[0]["words"]


def test_the_cli_sets_the_patient_setting_absences_and_quiet_hours_and_refuses_nonsense(
        tmp_path, capsys):
    from mimamori.cli import main

    db = str(tmp_path / "cli.db")

    def mimamori(*argv, status=0):
        rc = main(["--db", db, "--clock", f"fixed:{jst(2, 9)}", *argv])
        out = capsys.readouterr()
        assert rc == status, out.err
        return out.out + out.err

    mimamori("household", "add", "sato")
    assert json.loads(mimamori("household", "settings", "sato",
                               "learned_max_h=36"))["learned_max_h"] == 36
    assert "must be a number of hours" in mimamori("household", "settings", "sato",
                                                   "learned_max_h=forever", status=2)
    assert "unknown household setting 'patience'" in mimamori(
        "household", "settings", "sato", "patience=3", status=2)
    assert "absence 1 added (tue,fri 09:00-17:00 (day service))" in mimamori(
        "household", "absence", "add", "sato", "--days", "Tue,Fri", "--from", "09:00",
        "--to", "17:00", "--reason", "day service")
    assert "1  tue,fri 09:00-17:00" in mimamori("household", "absence", "list", "sato")
    assert "weekdays" in mimamori("household", "absence", "add", "sato", "--days", "xyz",
                                  "--from", "09:00", "--to", "17:00", status=2)
    assert "no recurring absences" in mimamori("household", "absence", "remove", "sato", "1")
    out = mimamori("watcher", "invite", "sato", "Aiko", "--console", "--quiet-hours", "none")
    wid = out.split()[1]
    assert json.loads(mimamori("watcher", "set", wid, "quiet_hours=21:00-08:00"))[
        "quiet_hours"] == "21:00-08:00"
    assert "quiet_hours must be" in mimamori("watcher", "set", wid, "quiet_hours=always",
                                             status=2)
    assert "no bulb yet" in mimamori("household", "placement", "sato")


def test_reminder_schedule_backs_off_and_weak_evidence_gets_one_at_most():
    from mimamori.alerts import reminder_due
    from mimamori.households import HouseholdSettings

    s = HouseholdSettings(reminder_h=2, reminder_max=3)
    strong = [reminder_due(s, "strong", k, 0) for k in range(4)]
    assert strong == [2 * 3_600_000, 6 * 3_600_000, 14 * 3_600_000, None]
    assert [reminder_due(s, "weak", k, 0) for k in range(2)] == [4 * 3_600_000, None]
    assert reminder_due(HouseholdSettings(reminder_max=0), "strong", 0, 0) is None
