# SPDX-License-Identifier: MIT
"""Roles: what family, neighbour, commissioner, visit service and coordinator may
change, through the dashboard's forms and the API; every change recorded and told to the other
watchers in their language (at a real SMTP server too); the roles migration on SQLite and
PostgreSQL; the docs' table is the code's.

The policy the tests hold the code to is written out here (ALLOWED), not read from
sim/server/roles.py, so a change to the table that loosens a role fails a test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mimamori import changes, notify, roles, sql
from mimamori import households as hh
from mimamori.api import create_token
from mimamori.storage import migrate
from sim.smtp_sink import SmtpSink
from tests.test_dashboard import NOW_MS, Site, csrf, site, template_db  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]

# who signs in as what in household "sato" (Aiko and Nao come with the sample pilot)
ACTORS = {"family": "Aiko", "neighbour": "Nao", "commissioner": "Sachi",
          "visit_service": "Care Co", "coordinator": "Office", "dashboard": None}
EXTRA = [("Sachi", "commissioner", "ja", "sachi@example.org"),
         ("Care Co", "visit_service", "en", "care@example.org"),
         ("Office", "coordinator", "en", "office-sato@example.org"),
         ("Target", "neighbour", "ja", "target@example.org")]  # whose tier and role change
FAMILY_AND_UP = {"family", "coordinator", "dashboard"}
SHORT_PAUSERS = {"family", "neighbour", "commissioner", "coordinator", "dashboard"}
ALLOWED = {
    "pause_1_day": SHORT_PAUSERS,
    "pause_7_days": FAMILY_AND_UP,
    "pause_60_days": {"coordinator", "dashboard"},
    "end_short_pause": SHORT_PAUSERS,
    "end_long_pause": FAMILY_AND_UP,
    "settings": FAMILY_AND_UP,
    "absence": FAMILY_AND_UP,
    "tier": FAMILY_AND_UP,
    "role": FAMILY_AND_UP,
    "brightness": FAMILY_AND_UP,
    "invite": FAMILY_AND_UP,
}


@pytest.fixture
def pilot(site: Site) -> Site:  # noqa: F811 - the fixture
    """The sample pilot with a watcher of every role in household sato."""
    with site.db.tx() as c:
        for name, role, lang, email in EXTRA:
            site.w[("sato", name)] = hh.add_watcher(c, NOW_MS, "sato", name, role, lang,
                                                    email).id
    return site


def _events(s: Site) -> int:
    with s.db.read() as c:
        return len(changes.events(c, "sato", limit=1000))


def _setup_pause(s: Site, first: str, last: str) -> str:
    with s.db.tx() as c:
        return hh.add_pause(c, NOW_MS, "sato", hh.parse_day(first), hh.parse_day(last)).id


def _attempts(s: Site, i: int) -> dict[str, tuple[str, dict[str, str]]]:
    """One form POST per action; i makes each actor's values differ from the last one's."""
    target = s.w[("sato", "Target")]
    with s.db.read() as c:
        other = "commissioner" if hh.watcher(c, target).role == "neighbour" else "neighbour"
    short, long_ = _setup_pause(s, "2026-04-01", "2026-04-01"), _setup_pause(
        s, "2026-04-01", "2026-04-05")
    return {
        "pause_1_day": ("/h/sato/pauses", {"first": "2026-03-20", "last": "2026-03-20"}),
        "pause_7_days": ("/h/sato/pauses", {"first": "2026-03-20", "last": "2026-03-26"}),
        "pause_60_days": ("/h/sato/pauses", {"first": "2026-03-20", "last": "2026-05-18"}),
        "end_short_pause": (f"/h/sato/pauses/{short}/end", {}),
        "end_long_pause": (f"/h/sato/pauses/{long_}/end", {}),
        "settings": ("/h/sato/settings", {"no_activity_h": str(20 + i)}),
        "absence": ("/h/sato/absences", {"day_tue": "1", "from": f"{9 + i:02d}:00",
                                         "to": "17:00"}),
        "tier": (f"/h/sato/watchers/{target}/order", {"tier": str((1, 3)[i % 2])}),
        "role": (f"/h/sato/watchers/{target}/role", {"role": other}),
        "brightness": ("/h/sato/bulbs/sato-toilet/brightness", {"brightness": str(40 + 10 * i)}),
        "invite": ("/h/sato/watchers", {"name": f"New {i}", "email": f"new{i}@example.org",
                                        "role": "neighbour", "lang": "ja"}),
    }


def test_each_role_may_change_what_the_table_says_and_nothing_else(pilot: Site) -> None:
    for i, (who, name) in enumerate(ACTORS.items()):
        cl = pilot.sign_in(name)
        token = csrf(cl, "/h/sato")
        for action, (path, form) in _attempts(pilot, i).items():
            before = _events(pilot)
            r = cl.post(path, data={**form, "csrf": token}, follow_redirects=False)
            if who in ALLOWED[action]:
                assert r.status_code == 303, (who, action, r.status_code, r.text[:300])
                if action != "brightness":  # a bulb setting, not a rule: not in the record
                    assert _events(pilot) == before + 1, (who, action)
            else:
                assert r.status_code == 403, (who, action, r.status_code)
                assert _events(pilot) == before, (who, action)  # nothing changed, nobody told
        # the code's table says the same as the policy above
        role = "coordinator" if who == "dashboard" else who
        assert roles.may(role, "rules") == (who in ALLOWED["settings"])
        assert roles.may(role, "tiers") == (who in ALLOWED["tier"])


def test_every_watcher_role_may_claim_but_the_dashboards_coordinator_reads(pilot: Site) -> None:
    claimed = 0
    for who, name in ACTORS.items():
        cl = pilot.sign_in(name)
        r = cl.post(f"/h/sato/alerts/{pilot.alert}/claim",
                    data={"csrf": csrf(cl, "/h/sato")}, follow_redirects=False)
        if who == "dashboard":
            assert r.status_code == 403
        else:  # the first claims; the others find it claimed (a 409, not a refusal)
            assert r.status_code in (303, 409), (who, r.status_code)
            claimed += r.status_code == 303
    assert claimed == 1


def test_a_neighbour_pauses_a_day_at_most_and_is_told_why_in_their_language(pilot: Site) -> None:
    nao = pilot.sign_in("Nao")  # reads Japanese
    r = nao.post("/h/sato/pauses", data={"csrf": csrf(nao, "/h/sato"), "first": "2026-03-16",
                                         "last": "2026-03-17"})
    assert r.status_code == 403 and "1日まで" in r.text
    aiko = pilot.sign_in("Aiko")  # reads English
    r = aiko.post("/h/sato/pauses", data={"csrf": csrf(aiko, "/h/sato"),
                                          "first": "2026-03-16", "last": "2027-03-16"})
    assert r.status_code == 403 and "30 day(s) at most" in r.text
    with pilot.db.read() as c:
        assert [p.id for p in hh.pauses(c, "sato")] == []


def test_the_page_shows_a_neighbour_no_rule_tier_or_role_controls(pilot: Site) -> None:
    nao = pilot.sign_in("Nao").get("/h/sato").text
    assert 'action="/h/sato/settings"' not in nao and 'name="tier"' not in nao
    assert "/role\"" not in nao and 'action="/h/sato/absences"' not in nao
    assert 'action="/h/sato/pauses"' in nao  # a short pause is theirs to set
    assert "近所の方" in nao and "民生委員" in nao  # everyone's role, in words
    aiko = pilot.sign_in("Aiko").get("/h/sato").text
    assert 'action="/h/sato/settings"' in aiko and 'name="tier"' in aiko
    choices = re.findall(r'<option value="(\w+)"', aiko.split('name="role"')[1].split("</select>")[0])
    assert choices == list(roles.WATCHER_ROLES)  # the family never makes a coordinator
    office = pilot.sign_in("Office").get("/h/sato").text
    assert '<option value="coordinator"' in office


def test_the_family_adds_a_watcher_who_gets_the_test_message(pilot: Site) -> None:
    aiko = pilot.sign_in("Aiko")
    token = csrf(aiko, "/h/sato")
    r = aiko.post("/h/sato/watchers", data={"csrf": token, "name": "Yuki", "role": "neighbour",
                                             "email": "yuki@example.org", "lang": "en"},
                  follow_redirects=False)
    assert r.status_code == 303
    with pilot.db.read() as c:
        (yuki,) = [w for w in hh.watchers(c, "sato") if w.name == "Yuki"]
        (ev,) = changes.events(c, "sato")
    assert (yuki.role, yuki.tier, yuki.lang) == ("neighbour", 2, "en")
    assert [o.kind for o in notify.outbox(pilot.db) if o.watcher == yuki.id] == ["invite"]
    assert (ev.kind, ev.actor_name) == ("watcher_added", "Aiko")
    assert "Yuki now watches over (neighbour)" in aiko.get("/h/sato").text
    for bad, status in (({"role": "coordinator"}, 403), ({"role": "boss"}, 400),
                        ({"email": ""}, 400), ({"email": "not-an-address"}, 400),
                        ({"name": ""}, 400), ({"lang": "fr"}, 400)):
        form = {"csrf": token, "name": "Z", "role": "neighbour", "email": "z@example.org",
                "lang": "ja", **bad}
        assert aiko.post("/h/sato/watchers", data=form).status_code == status, bad
    assert 'id="add-watcher"' not in pilot.sign_in("Nao").get("/h/sato").text


def test_a_family_cannot_make_or_unmake_a_coordinator(pilot: Site) -> None:
    aiko = pilot.sign_in("Aiko")
    token = csrf(aiko, "/h/sato")
    target, office = pilot.w[("sato", "Target")], pilot.w[("sato", "Office")]
    r = aiko.post(f"/h/sato/watchers/{target}/role", data={"csrf": token, "role": "coordinator"})
    assert r.status_code == 403
    r = aiko.post(f"/h/sato/watchers/{office}/role", data={"csrf": token, "role": "family"})
    assert r.status_code == 403
    with pilot.db.read() as c:
        assert (hh.watcher(c, target).role, hh.watcher(c, office).role) == (
            "neighbour", "coordinator")


def test_nonsense_values_get_a_clear_error_and_never_a_server_error(pilot: Site) -> None:
    aiko = pilot.sign_in("Aiko")
    token = csrf(aiko, "/h/sato")
    target = pilot.w[("sato", "Target")]
    for path, form in [(f"/h/sato/watchers/{target}/role", {"role": "boss"}),
                       (f"/h/sato/watchers/{target}/role", {}),
                       (f"/h/sato/watchers/{target}/order", {"tier": "inf"}),
                       (f"/h/sato/watchers/{target}/order", {"tier": "1.5"}),
                       (f"/h/sato/watchers/{target}/order", {"tier": "nan"}),
                       ("/h/sato/settings", {"no_activity_h": "nan"}),
                       ("/h/sato/settings", {"escalate_1": "-inf", "escalate_2": "3"}),
                       ("/h/sato/pauses", {"first": "2026-03-20", "last": "tomorrow"}),
                       ("/h/sato/bulbs/sato-toilet/brightness", {"brightness": "1e999"})]:
        r = aiko.post(path, data={"csrf": token, **form})
        assert r.status_code == 400, (path, form, r.status_code)
    r = aiko.post("/h/sato/watchers/w-nobody/role", data={"csrf": token, "role": "neighbour"})
    assert r.status_code == 404
    assert _events(pilot) == 0


def test_a_change_is_recorded_and_told_to_the_others_in_their_language(pilot: Site) -> None:
    aiko = pilot.sign_in("Aiko")
    r = aiko.post("/h/sato/settings", data={"csrf": csrf(aiko, "/h/sato"),
                                            "no_activity_h": "12"}, follow_redirects=False)
    assert r.status_code == 303
    got = {o.watcher: o for o in notify.outbox(pilot.db) if o.kind == "changed"}
    ids = {n: pilot.w[("sato", n)] for n in ("Aiko", "Ken", "Nao", "Sachi", "Care Co",
                                            "Office", "Target")}
    assert ids["Aiko"] not in got  # not the one who made it
    assert set(got) == set(ids.values()) - {ids["Aiko"]}
    ken, office = got[ids["Ken"]], got[ids["Office"]]
    assert "Aiko さん（家族）" in ken.body and "24 → 12" in ken.body, ken.body
    assert "点灯がないとお知らせするまでの時間" in ken.body
    assert "Aiko (family)" in office.body and "24 → 12" in office.body
    assert "Alert after this long without a switch-on" in office.body
    page = aiko.get("/h/sato").text
    assert 'data-kind="settings"' in page and "24 → 12" in page
    # the same values again change nothing: no record, no mail
    n = len(notify.outbox(pilot.db))
    aiko.post("/h/sato/settings", data={"csrf": csrf(aiko, "/h/sato"), "no_activity_h": "12"})
    assert len(notify.outbox(pilot.db)) == n and _events(pilot) == 1


def test_a_change_waits_for_the_end_of_a_watchers_quiet_hours(pilot: Site) -> None:
    with pilot.db.tx() as c:
        hh.update_watcher(c, pilot.w[("sato", "Ken")], {"quiet_hours": "10:00-12:00"})
    aiko = pilot.sign_in("Aiko")  # the sample's now is 10:30 in Tokyo
    aiko.post("/h/sato/settings", data={"csrf": csrf(aiko, "/h/sato"), "no_activity_h": "12"})
    with pilot.db.read() as c:
        due = dict(c.all("SELECT watcher, next_attempt_at FROM outbox WHERE kind = 'changed'"))
    noon = NOW_MS + 90 * 60_000
    assert (due[pilot.w[("sato", "Ken")]], due[pilot.w[("sato", "Nao")]]) == (noon, NOW_MS)


def test_a_change_reaches_the_others_at_a_real_smtp_server(pilot: Site) -> None:
    sink = SmtpSink().start()
    try:
        nao = pilot.sign_in("Nao")
        r = nao.post("/h/sato/pauses", data={"csrf": csrf(nao, "/h/sato"),
                                             "first": "2026-03-17", "last": "2026-03-17",
                                             "reason": "通院に付き添い"}, follow_redirects=False)
        assert r.status_code == 303
        cfg = notify.NotifierSettings(smtp_host="127.0.0.1", smtp_port=sink.port)
        got = notify.deliver_due(pilot.db, NOW_MS, cfg, 100)
        assert got.get("sent", 0) >= 2, got
        (ken,) = sink.of("ken@example.org", kind="changed")
        (aiko,) = sink.of("aiko@example.org", kind="changed")
        assert sink.of("nao@example.org", kind="changed") == []  # she made it
        assert "Nao さんが見守りの設定を変えました" in ken.subject
        assert "お休みを追加：2026-03-17 – 2026-03-17 (通院に付き添い)" in ken.body
        assert "Nao changed how" in aiko.subject
        assert "Nao (neighbour)" in aiko.body and "Pause added: 2026-03-17" in aiko.body
    finally:
        sink.stop()


# ---------------------------------------------------------------------------------------------
# the API


def _api(s: Site) -> tuple[TestClient, dict[str, str]]:
    token = create_token(s.db, "family-app", NOW_MS)
    return s.client(), {"Authorization": f"Bearer {token}"}


def test_the_api_checks_the_role_of_the_watcher_it_acts_for(pilot: Site) -> None:
    cl, auth = _api(pilot)
    w = pilot.w
    body = {"no_activity_h": 30}
    r = cl.patch("/api/v1/households/sato/settings", params={"watcher": w[("sato", "Nao")]},
                 json=body, headers=auth)
    assert r.status_code == 403 and "family" in r.json()["detail"]
    r = cl.patch("/api/v1/households/sato/settings", params={"watcher": w[("sato", "Aiko")]},
                 json=body, headers=auth)
    assert r.status_code == 200 and r.json()["no_activity_h"] == 30
    # a watcher of another household cannot act here
    r = cl.patch("/api/v1/households/sato/settings", params={"watcher": w[("suzuki", "Mika")]},
                 json={"no_activity_h": 31}, headers=auth)
    assert r.status_code == 404
    for who, days, status in [("Nao", ("2026-03-20", "2026-03-20"), 201),
                              ("Nao", ("2026-03-20", "2026-03-21"), 403),
                              ("Care Co", ("2026-03-20", "2026-03-20"), 403),
                              ("Aiko", ("2026-03-20", "2026-04-18"), 201),
                              ("Aiko", ("2026-03-20", "2026-04-19"), 403),
                              (None, ("2026-03-20", "2027-03-20"), 201)]:
        params = {"watcher": w[("sato", who)]} if who else {}
        r = cl.post("/api/v1/households/sato/pauses", params=params, headers=auth,
                    json={"first": days[0], "last": days[1]})
        assert r.status_code == status, (who, days, r.text)
    target = w[("sato", "Target")]
    for who, change, status in [("Nao", {"tier": 1}, 403), ("Nao", {"role": "family"}, 403),
                                ("Aiko", {"role": "coordinator"}, 403),
                                ("Aiko", {"role": "commissioner"}, 200),
                                ("Aiko", {"email": "x@example.org"}, 403),
                                (None, {"role": "coordinator"}, 200),
                                ("Aiko", {"role": "boss"}, 400)]:
        params = {"watcher": w[("sato", who)]} if who else {}
        r = cl.patch(f"/api/v1/watchers/{target}", params=params, headers=auth, json=change)
        assert r.status_code == status, (who, change, r.text)
    with pilot.db.read() as c:
        evs = changes.events(c, "sato", limit=100)
    assert [(e.kind, e.actor_name, e.actor_role) for e in evs][:2] == [
        ("role", "family-app", "coordinator"), ("role", "Aiko", "family")]
    roles_doc = cl.get("/api/v1/roles", headers=auth).json()
    assert {x["role"]: x["pause_days"] for x in roles_doc} == {
        "family": 30, "neighbour": 1, "commissioner": 1, "visit_service": 0,
        "coordinator": 366}


def test_the_api_lets_every_watcher_role_claim(pilot: Site) -> None:
    cl, auth = _api(pilot)
    r = cl.post(f"/api/v1/alerts/{pilot.alert}/claim", headers=auth,
                json={"watcher": pilot.w[("sato", "Care Co")]})
    assert r.status_code == 200 and r.json()["claimed_by"] == pilot.w[("sato", "Care Co")]


# ---------------------------------------------------------------------------------------------
# the table, the docs, the migration


def test_the_docs_show_the_codes_table() -> None:
    doc = (ROOT / "docs" / "roles.md").read_text()
    assert roles.markdown() in doc, "docs/roles.md: paste roles.markdown() again"
    for r in roles.ROLES:
        assert f"`{r}`" in doc


def test_the_roles_migration_keeps_known_roles_and_gives_unknown_ones_the_least(
        db_url: str) -> None:
    db = sql.connect(db_url)
    try:
        migrate(db, "people", hh.SCHEMA)  # a database from before roles
        with db.tx() as c:
            hh.add_household(c, NOW_MS, "old")
            for wid, role, tier in (("w-1", "family", 1), ("w-2", "commissioner", 2),
                                    ("w-3", "helper", 1), ("w-4", "coordinator", 0)):
                c.execute("INSERT INTO watchers (id, household, name, role, tier, lang, email, "
                          "console, created_at) VALUES (?, 'old', ?, ?, ?, 'ja', ?, 0, ?)",
                          (wid, wid, role, tier, f"{wid}@example.org", NOW_MS))
        hh.open_people(db)
        hh.open_people(db)  # twice: nothing more happens
        with db.read() as c:
            got = {w.id: (w.role, w.tier) for w in hh.watchers(c, "old", 3, 0)}
            assert changes.events(c, "old") == []
        assert got == {"w-1": ("family", 1), "w-2": ("commissioner", 2),
                       "w-3": ("neighbour", 2), "w-4": ("coordinator", 0)}
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------
# the command line


def test_the_command_line_prints_the_table_and_tells_its_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mimamori import cli
    from sim import sample_pilot as sample

    db = str(tmp_path / "pilot.db")
    s = sample.build(db)
    base = ["--db", db, "--clock", f"fixed:{s.now:.0f}"]
    capsys.readouterr()
    assert cli.main(["watcher", "roles"]) == 0
    out = capsys.readouterr().out
    assert [ln.split()[0] for ln in out.splitlines() if not ln.startswith(" ")] == list(
        roles.ROLES)
    assert "pauses up to 30 days" in out and "rules" in out.splitlines()[0]
    assert cli.main([*base, "household", "settings", "sato", "no_activity_h=12", "--by",
                     "Oshu office"]) == 0
    nao = s.watchers["Nao"]
    assert cli.main([*base, "watcher", "set", nao, "role=commissioner"]) == 0
    assert cli.main([*base, "watcher", "set", nao, "role=boss"]) == 2
    assert "role 'boss'" in capsys.readouterr().err
    assert cli.main([*base, "household", "pause", "sato", "2026-03-20", "2027-03-25"]) == 2
    assert "366 days at most" in capsys.readouterr().err
    store = sql.connect(db)
    try:
        with store.read() as c:
            evs = changes.events(c, "sato")
            told = {r[0] for r in c.all("SELECT watcher FROM outbox WHERE kind = 'changed'")}
        assert [(e.kind, e.actor_name, e.actor_role) for e in evs] == [
            ("role", "coordinator", "coordinator"), ("settings", "Oshu office", "coordinator")]
        assert told == {s.watchers[n] for n in ("Aiko", "Ken", "Nao")}
    finally:
        store.close()


def test_a_neighbour_ends_a_pause_until_the_next_switch_on(pilot: Site) -> None:
    with pilot.db.tx() as c:
        p = hh.pause_until_switch_on(c, NOW_MS - 3_600_000, "sato", "needed help")
    nao = pilot.sign_in("Nao")
    r = nao.post(f"/h/sato/pauses/{p.id}/end", data={"csrf": csrf(nao, "/h/sato")},
                 follow_redirects=False)
    assert r.status_code == 303
    with pilot.db.read() as c:
        (q,) = hh.pauses(c, "sato")
        (ev,) = changes.events(c, "sato")
    assert (q.end_ms, q.last_day) == (NOW_MS, "2026-03-16")
    assert ev.kind == "pause_ended" and ev.actor_name == "Nao"
