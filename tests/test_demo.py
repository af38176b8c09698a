# SPDX-License-Identifier: MIT
"""`make demo`, shortened to three days (the incidents compressed into them): the real firmware in
MicroPython, the real server with a scaled clock, the SMTP sink. Every incident's outcome is read
back from the server's database (alerts, their events, the outbox, the timeline) and from the
inboxes, not from the narration."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest

from mimamori import alerts, notify, sweeper
from mimamori import households as hh
from mimamori.clock import to_ms
from mimamori.storage import Store
from mimamori_firmware import record
from sim import scenario as sc
from sim.demo import run
from sim.outcomes import delivered

GAP_RULES = ("no_activity", "unusual_quiet", "daily_window")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = io.StringIO()
    stage, outs = run(days=3, homes=3, var=tmp_path_factory.mktemp("demo") / "var", out=out)
    store = Store.open(stage.db)
    yield stage, outs, out.getvalue(), store
    store.close()


def _alerts(store: Store, hid: str) -> list[alerts.Alert]:
    with store.db.tx() as c:
        return alerts.list_alerts(c, hid)


def _events(store: Store, aid: str) -> list[str]:
    with store.db.tx() as c:
        return [e["kind"] for e in alerts.events(c, aid)]


def _watcher(store: Store, hid: str, name: str) -> hh.Watcher:
    with store.db.tx() as c:
        return next(w for w in hh.watchers(c, hid) if w.name == name)


def _step(stage, hid: str, kind: str, text: str = "") -> datetime:
    return next(st.at for st in stage.scenario.steps
                if st.home == hid and st.kind == kind and text in st.text)


def test_demo_runs_the_days_and_ends_with_a_summary_where_every_incident_is_checked(demo):
    stage, outs, text, _ = demo
    assert "What happened:" in text and "E-mails sent" in text and "Dashboard: http" in text
    assert "── Wed 09 Dec" in text
    assert {o.incident for o in outs} == set(sc.INCIDENTS)
    assert [o for o in outs if not o.ok] == []
    made = sum(p.made for p in stage.players)
    assert made >= stage.scenario.visits() - 2  # at most the week's last ones cut by its end


def test_no_switch_on_is_lost_between_the_bulbs_flash_and_the_server(demo):
    stage, _, _, _ = demo
    end = stage.scenario.end
    for dev, (seen, on_server) in delivered(stage).items():
        plan = next(b for h in stage.scenario.homes for b in h.bulbs if b.id == dev)
        # waiting in flash for the next switch-on: a last visit that ended before its first
        # report; on LTE-M also the power-ons within the report gap (6 h) of the last report
        pending = 1 + (sum(1 for v in plan.visits if v.on >= end - timedelta(hours=6))
                       if plan.transport == "lte" else 0)
        assert seen - pending <= on_server <= seen, dev


def test_resident_who_stops_switching_on_alerts_both_watchers_aiko_claims_and_resolves(demo):
    stage, _, _, store = demo
    fall = _step(stage, "suzuki", "note", "falls")
    (a,) = [a for a in _alerts(store, "suzuki") if a.rule in GAP_RULES]
    assert a.opened_at / 1000 > fall.timestamp()
    aiko, ken = _watcher(store, "suzuki", "Aiko"), _watcher(store, "suzuki", "Ken")
    assert a.state == "resolved" and a.claimed_by == aiko.id and a.resolved_by == aiko.id
    assert a.outcome == "needed_help" and "hallway" in (a.note or "")
    assert _events(store, a.id)[:1] == ["opened"]
    # "needed help" pauses the household until her next switch-on
    assert "claimed" in _events(store, a.id) and _events(store, a.id)[-2:] == ["resolved",
                                                                               "paused"]
    sink = stage.sink
    assert sink.of(aiko.email, "alert", a.id) and sink.of(ken.email, "alert", a.id)
    assert sink.of(ken.email, "claimed", a.id) and sink.of(ken.email, "resolved", a.id)
    assert not sink.of(aiko.email, "claimed", a.id)  # she knows she is going
    # the demo acted as Aiko through the links of her e-mail: confirm page, then the buttons
    assert [(x["do"], x["status"]) for x in stage.actions] == [("claim", 200), ("resolve", 200)]
    assert stage.actions[0]["confirm_page"] == 200


def test_light_left_on_for_hours_alerts_then_clears_when_it_is_switched_off_and_on(demo):
    stage, _, _, store = demo
    on = _step(stage, "sato", "note", "stays on")
    (a,) = [a for a in _alerts(store, "sato") if a.rule == "on_too_long"]
    assert a.subject == "sato-toilet"
    assert a.opened_at / 1000 >= on.timestamp() + 3 * 3600  # the lamp known lit for 3 h
    assert a.state == "cleared" and a.cleared_at is not None
    for w in stage.scenario.home("sato").watchers:
        assert stage.sink.of(w.email, "alert", a.id) and stage.sink.of(w.email, "cleared", a.id)


def test_a_day_without_signal_is_delivered_late_and_raises_no_family_alert(demo):
    stage, _, _, store = demo
    down = _step(stage, "suzuki", "wifi_down").timestamp()
    up = _step(stage, "suzuki", "wifi_up").timestamp()
    bulb = stage.scenario.home("suzuki").bulbs[0]
    offline = [v for v in bulb.visits if down <= v.on.timestamp() < up]
    assert offline
    tl = sweeper.timeline_of(store, "suzuki")
    late = [iv for iv in tl.intervals if iv.reported_at >= to_ms(up)
            and iv.start_earliest is not None and iv.start_earliest < to_ms(up)]
    assert len(late) >= len(offline)
    fall = _step(stage, "suzuki", "note", "falls").timestamp()
    assert [a.rule for a in _alerts(store, "suzuki")
            if a.audience == "family" and a.opened_at / 1000 < fall] == []


def test_planned_hospital_stay_pauses_the_household_and_raises_no_alert(demo):
    stage, _, _, store = demo
    with store.db.tx() as c:
        (p,) = hh.pauses(c, "takahashi")
    leave = _step(stage, "takahashi", "note", "hospital")
    assert p.start_ms / 1000 <= leave.timestamp() and p.reason == "hospital"
    assert [a.rule for a in _alerts(store, "takahashi") if a.audience == "family"] == []
    back = _step(stage, "takahashi", "note", "back home").timestamp()
    tl = sweeper.timeline_of(store, "takahashi")
    assert [iv for iv in tl.intervals if iv.start_latest >= to_ms(back)]  # resumed by itself


def test_lte_m_bulb_and_wifi_bulb_of_one_home_both_report(demo):
    stage, _, _, store = demo
    links = {}
    for dev in ("sato-toilet", "sato-washroom"):
        recs = store.records_for_device(dev)
        links[dev] = {r.sub for r in recs if r.kind == record.K_LINK and r.aux}
        assert any(r.kind == record.K_POWER_ON for r in recs)
    assert links == {"sato-toilet": {record.T_WIFI}, "sato-washroom": {record.T_LTE}}
    anchors = {r.sub for r in store.records_for_device("sato-washroom")
               if r.kind == record.K_ANCHOR}
    assert record.A_MODEM in anchors  # the LTE-M network's time, on the server's scaled clock
    modem = stage.modems["sato-washroom"]
    assert modem.air.connections > 0


def test_every_e_mail_decided_was_delivered_once(demo):
    stage, _, _, store = demo
    rows = notify.outbox(store.db)
    # held for quiet hours and dropped when the alert cleared first: never sent
    emails = [o for o in rows if o.channel == "email" and o.state != "cancelled"]
    assert emails and all(o.state == "sent" for o in emails)
    ids = [m.message_id for m in stage.sink.all()]
    assert len(ids) == len(set(ids)) == len(emails)
    assert {m.kind for m in stage.sink.all()} >= {"invite", "alert", "claimed", "resolved",
                                                  "cleared"}


def test_no_family_alert_that_no_incident_explains(demo):
    stage, _, _, store = demo
    unexplained = [(a.household, a.rule) for h in stage.scenario.homes
                   for a in _alerts(store, h.id) if a.audience == "family"
                   and not (a.household == "suzuki" and a.rule in GAP_RULES)
                   and not (a.household == "sato" and a.rule == "on_too_long")]
    assert unexplained == []
