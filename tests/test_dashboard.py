# SPDX-License-Identifier: MIT
"""The dashboard over HTTP (in-process app, fixed clock): who may see and do what, sign-in links,
CSRF, the rate limit, the actions going through the alert lifecycle, the chart and the report.

The database is the sample pilot (sim/sample_pilot.py), built once per store (a SQLite file,
a PostgreSQL database) and copied per test.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mimamori import alerts, notify
from mimamori import households as hh
from mimamori.app import create_app
from mimamori.clock import HOUR_MS, SECOND_MS
from mimamori.timeline import Interval
from mimamori.web import auth, chart, views
from sim import sample_pilot as sample
from sim.household import ms as dt_ms

NOW = sample.NOW.timestamp()
NOW_MS = int(NOW * 1000)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def template_db(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sample pilot, built once per store: a SQLite file, or a PostgreSQL database that
    each test copies (CREATE DATABASE ... TEMPLATE)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("pilot") / "pilot.db"
        sample.build(path)
        yield str(path)
        return
    pg = request.getfixturevalue("pg_server")
    name = "pilot_" + secrets.token_hex(4)
    sample.build(pg.create_db(name))
    yield "pg:" + name
    pg.drop_db(name)


class Site:
    def __init__(self, db: Path | str):
        self.app = create_app(db, clock=lambda: self.now)
        self.now = NOW
        self.db = self.app.state.store.db
        with self.db.tx() as c:
            self.w = {(w.household, w.name): w.id for h in hh.households(c)
                      for w in hh.watchers(c, h.id, max_tier=3, min_tier=0)}
            self.alert = next(a.id for a in alerts.list_alerts(c, "sato", active_only=True)
                              if a.audience == "family")

    def client(self, base_url: str = "http://testserver") -> TestClient:
        return TestClient(self.app, base_url=base_url, raise_server_exceptions=False)

    def link(self, role: str, subject: str, valid_ms: int = 3_600_000) -> str:
        with self.db.tx() as c:
            return auth.make_link(c, role, subject, int(self.now * 1000), valid_ms)

    def sign_in(self, who: str | None, household: str = "sato") -> TestClient:
        """A client signed in as a watcher (name), the coordinator (None)."""
        cl = self.client()
        token = (self.link(auth.COORDINATOR, "office") if who is None
                 else self.link(auth.WATCHER, self.w[(household, who)]))
        r = cl.post(f"/in/{token}", data={"csrf": csrf(cl, f"/in/{token}")},
                    follow_redirects=False)
        assert r.status_code == 303, r.text
        return cl

    def get_alert(self, aid: str) -> alerts.Alert:
        with self.db.tx() as c:
            return alerts.get(c, aid)


def report_rows(content: bytes) -> dict[str, dict[str, str]]:
    """The CSV's rows by household, each keyed by views.CSV_COLUMNS (headers are localized)."""
    table = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert len(table[0]) == len(views.CSV_COLUMNS)
    return {x[0]: dict(zip(views.CSV_COLUMNS, x)) for x in table[1:]}


def csrf(cl: TestClient, path: str = "/signin") -> str:
    r = cl.get(path)
    m = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert m, r.text[:500]
    return m.group(1)


@pytest.fixture
def site(template_db: str, tmp_path: Path, request: pytest.FixtureRequest,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("MIMAMORI_SWEEP_S", "0")
    if template_db.startswith("pg:"):
        pg = request.getfixturevalue("pg_server")
        name = "t_" + secrets.token_hex(6)
        s = Site(pg.create_db(name, template=template_db[3:]))
        yield s
        s.app.state.store.close()
        pg.drop_db(name)
        return
    db = tmp_path / "pilot.db"
    shutil.copy(template_db, db)
    yield Site(db)


PAGES = ["/home", "/h/sato", "/h/sato/chart.svg", "/coordinator", "/coordinator/report.csv"]


def actions(site: Site) -> list[tuple[str, dict[str, str]]]:
    a = site.alert
    return [(f"/h/sato/alerts/{a}/claim", {}),
            (f"/h/sato/alerts/{a}/resolve", {"outcome": "fine"}),
            ("/h/sato/pauses", {"first": "2026-03-16", "last": "2026-03-17"}),
            ("/h/sato/settings", {"no_activity_h": "30"}),
            ("/h/sato/bulbs/sato-toilet/brightness", {"brightness": "60"}),
            (f"/h/sato/watchers/{site.w[('sato', 'Nao')]}/order", {"tier": "1"}),
            ("/coordinator/invite", {"watcher": site.w[("sato", "Ken")]})]


# ---------------------------------------------------------------------------------------------
# who may see and do what


def test_anonymous_visitors_are_sent_to_sign_in_and_cannot_act(site: Site) -> None:
    cl = site.client()
    for path in PAGES:
        r = cl.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/signin", path
    token = csrf(cl)  # even with a valid anonymous CSRF token
    for path, form in actions(site):
        r = cl.post(path, data={**form, "csrf": token}, follow_redirects=False)
        assert r.status_code == 401, path
    assert site.get_alert(site.alert).state == "open"


def test_a_watcher_sees_only_the_households_they_watch(site: Site) -> None:
    jiro = site.sign_in("Jiro", "tanaka")
    home = jiro.get("/home")
    assert home.status_code == 200
    assert 'data-household="tanaka"' in home.text and 'data-household="sato"' not in home.text
    for path in ["/h/sato", "/h/sato/chart.svg", "/h/suzuki", "/h/no-such-home",
                 "/coordinator", "/coordinator/report.csv"]:
        assert jiro.get(path).status_code == 403, path
    token = csrf(jiro, "/home")
    for path, form in actions(site):
        r = jiro.post(path, data={**form, "csrf": token}, follow_redirects=False)
        assert r.status_code == 403, path
    assert site.get_alert(site.alert).state == "open"
    with site.db.tx() as c:
        assert hh.pauses(c, "sato") == []


def test_a_person_with_one_address_sees_both_households_they_watch(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    r = aiko.get("/home")
    assert 'data-household="sato"' in r.text and 'data-household="suzuki"' in r.text
    assert aiko.get("/h/suzuki").status_code == 200
    assert aiko.get("/h/tanaka").status_code == 403


def test_forms_without_the_session_csrf_token_are_refused(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    other = csrf(site.client())  # a token from another (anonymous) session
    for path, form in actions(site)[:-1]:
        assert aiko.post(path, data=form, follow_redirects=False).status_code == 403, path
        r = aiko.post(path, data={**form, "csrf": other}, follow_redirects=False)
        assert r.status_code == 403, path
    assert site.get_alert(site.alert).state == "open"
    coord = site.sign_in(None)
    r = coord.post("/coordinator/invite", data={"watcher": site.w[("sato", "Ken")]})
    assert r.status_code == 403


def test_a_forged_or_expired_session_cookie_counts_as_signed_out(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    value = aiko.cookies.get(auth.COOKIE)
    body, mac = value.split(".")
    forged = auth._b64(auth._unb64(body).replace(b'"watcher"', b'"coordinator"'))
    cl = site.client()
    cl.cookies.set(auth.COOKIE, f"{forged}.{mac}")
    assert cl.get("/coordinator", follow_redirects=False).status_code == 303
    site.now += (auth.SESSION_DAYS + 1) * 86400
    assert aiko.get("/home", follow_redirects=False).status_code == 303


def test_the_coordinator_reads_households_but_does_not_claim_for_the_family(site: Site) -> None:
    coord = site.sign_in(None)
    assert coord.get("/coordinator").status_code == 200
    page = coord.get("/h/sato")
    assert page.status_code == 200 and 'name="claim"' not in page.text
    r = coord.post(f"/h/sato/alerts/{site.alert}/claim", data={"csrf": csrf(coord, "/h/sato")},
                   follow_redirects=False)
    assert r.status_code == 403
    assert coord.get("/h/no-such-home").status_code == 404


# ---------------------------------------------------------------------------------------------
# sign-in


def test_an_invitation_link_signs_in_once_and_a_mail_scanner_spends_nothing(site: Site) -> None:
    token = site.link(auth.WATCHER, site.w[("sato", "Ken")], auth.INVITE_DAYS * 86_400_000)
    scanner = site.client()
    assert scanner.get(f"/in/{token}").status_code == 200  # the confirm page only
    assert scanner.get(f"/in/{token}").status_code == 200
    cl = site.client()
    r = cl.post(f"/in/{token}", data={"csrf": csrf(cl, f"/in/{token}")},
                follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/home"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert cl.get("/h/sato").status_code == 200
    again = site.client()
    r = again.post(f"/in/{token}", data={"csrf": csrf(again)}, follow_redirects=False)
    assert r.status_code == 404 and ("使われました" in r.text or "used" in r.text)


def test_a_sign_in_link_needs_the_csrf_token_and_expires(site: Site) -> None:
    token = site.link(auth.WATCHER, site.w[("sato", "Ken")], 60_000)
    cl = site.client()
    assert cl.post(f"/in/{token}", data={}, follow_redirects=False).status_code == 403
    site.now += 120
    r = cl.post(f"/in/{token}", data={"csrf": csrf(cl)}, follow_redirects=False)
    assert r.status_code == 404 and "期限切れ" in r.text
    assert cl.get("/in/in_nonsense").status_code == 404


def test_session_cookie_is_secure_over_https(site: Site) -> None:
    token = site.link(auth.WATCHER, site.w[("sato", "Ken")])
    cl = site.client("https://testserver")
    r = cl.post(f"/in/{token}", data={"csrf": csrf(cl, f"/in/{token}")},
                follow_redirects=False)
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_asking_for_a_link_by_email_sends_one_and_is_rate_limited(site: Site) -> None:
    cl = site.client()
    token = csrf(cl)
    known = cl.post("/signin", data={"csrf": token, "email": "Ken@Example.org"})
    unknown = cl.post("/signin", data={"csrf": token, "email": "stranger@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert "登録されているアドレスなら" in known.text and "登録されているアドレスなら" in unknown.text
    sent = [o for o in notify.outbox(site.db) if o.kind == "signin"]
    assert [o.payload["to"] for o in sent] == ["ken@example.org"]
    link = re.search(r"/in/(\S+)", sent[0].body)
    assert link
    ken = site.client()
    r = ken.post(f"/in/{link.group(1)}", data={"csrf": csrf(ken)}, follow_redirects=False)
    assert r.status_code == 303
    for _ in range(2):
        assert cl.post("/signin", data={"csrf": token, "email": "ken@example.org"}
                       ).status_code == 200
    r = cl.post("/signin", data={"csrf": token, "email": "ken@example.org"})
    assert r.status_code == 429
    assert len([o for o in notify.outbox(site.db) if o.kind == "signin"]) == 3
    assert cl.post("/signin", data={"email": "ken@example.org"}).status_code == 403


def test_sign_in_requests_from_one_address_are_limited(site: Site) -> None:
    limit = auth.RateLimit(site.db, "test", 3, 60)
    assert [limit.allow("1.2.3.4", t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert limit.allow("5.6.7.8", 3)
    assert limit.allow("1.2.3.4", 61)


def test_sign_in_limits_are_shared_by_every_instance_on_the_database(site: Site) -> None:
    """Two servers on one database (two connections here, as two instances would have):
    hits counted by one count for the other, also when they arrive at the same moment."""
    from concurrent.futures import ThreadPoolExecutor

    from mimamori.storage import Database

    other = Database(site.db.url)
    try:
        a, b = (auth.RateLimit(db, "signin_ip", 10, 900) for db in (site.db, other))
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: (a if i % 2 else b).allow("9.9.9.9", 100 + i / 100),
                                range(16)))
        assert sum(got) == 10
        assert not a.allow("9.9.9.9", 200) and not b.allow("9.9.9.9", 200)
        assert a.allow("9.9.9.9", 1001) and b.allow("8.8.8.8", 200)
    finally:
        other.close()


# ---------------------------------------------------------------------------------------------
# actions go through the alert lifecycle


def test_claim_shows_who_is_going_to_everyone_and_a_second_claim_is_refused(site: Site) -> None:
    aiko, ken = site.sign_in("Aiko"), site.sign_in("Ken")
    r = aiko.post(f"/h/sato/alerts/{site.alert}/claim",
                  data={"csrf": csrf(aiko, "/home"), "next": "/home"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/home")
    a = site.get_alert(site.alert)
    assert a.state == "claimed" and a.claimed_by == site.w[("sato", "Aiko")]
    page = ken.get("/h/sato").text
    assert "Aiko さんが確認に行きます" in page
    told = {o.watcher for o in notify.outbox(site.db, alert=site.alert) if o.kind == "claimed"}
    assert site.w[("sato", "Ken")] in told and site.w[("sato", "Aiko")] not in told
    assert told <= {w for (h, _), w in site.w.items() if h == "sato"}
    r = ken.post(f"/h/sato/alerts/{site.alert}/claim", data={"csrf": csrf(ken, "/h/sato")})
    assert r.status_code == 409 and "Aiko" in r.text


def test_resolving_records_the_outcome_and_a_false_alarm_needs_a_reason(site: Site) -> None:
    ken = site.sign_in("Ken")
    token = csrf(ken, "/h/sato")
    url = f"/h/sato/alerts/{site.alert}/resolve"
    r = ken.post(url, data={"csrf": token, "outcome": "false_alarm", "note": " "})
    assert r.status_code == 400 and "note" in r.text
    assert ken.post(url, data={"csrf": token, "outcome": "maybe"}).status_code == 400
    r = ken.post(url, data={"csrf": token, "outcome": "false_alarm",
                            "note": "bulb in the spare room"}, follow_redirects=False)
    assert r.status_code == 303
    a = site.get_alert(site.alert)
    assert (a.state, a.outcome, a.note) == ("resolved", "false_alarm", "bulb in the spare room")
    page = ken.get("/h/sato").text
    assert "Ken さんが記録：誤報でした" in page
    assert ken.post(url, data={"csrf": token, "outcome": "fine"}).status_code == 409


def test_an_alert_of_another_household_cannot_be_acted_on_through_this_one(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    r = aiko.post(f"/h/suzuki/alerts/{site.alert}/claim", data={"csrf": csrf(aiko, "/home")})
    assert r.status_code == 404
    r = aiko.post("/h/sato/alerts/a-nothing/claim", data={"csrf": csrf(aiko, "/home")})
    assert r.status_code == 404
    assert site.get_alert(site.alert).state == "open"


def test_a_pause_is_added_and_ending_it_keeps_the_days_already_away(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    token = csrf(aiko, "/h/sato")
    r = aiko.post("/h/sato/pauses", data={"csrf": token, "first": "2026-03-14",
                                          "last": "2026-03-20", "reason": "travel"},
                  follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        (p,) = hh.pauses(c, "sato")
    assert "Paused now" in aiko.get("/h/sato").text  # Aiko reads English
    r = aiko.post(f"/h/sato/pauses/{p.id}/end", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        (q,) = hh.pauses(c, "sato")
    assert (q.first_day, q.last_day, q.reason) == ("2026-03-14", "2026-03-15", "travel")
    r = aiko.post("/h/sato/pauses", data={"csrf": token, "first": "2026-03-20",
                                          "last": "2026-03-18"})
    assert r.status_code == 400 and "swap" in r.text
    r = aiko.post("/h/sato/pauses", data={"csrf": token, "first": "next week", "last": ""})
    assert r.status_code == 400


def test_settings_brightness_and_order_are_changed_and_checked(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    token = csrf(aiko, "/h/sato")
    r = aiko.post("/h/sato/settings", data={"csrf": token, "activity_rule": "learned",
                                            "no_activity_h": "30", "escalate_1": "2",
                                            "escalate_2": "4"}, follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        s = hh.household(c, "sato").settings
    assert (s.activity_rule, s.no_activity_h, s.escalate_h) == ("learned", 30.0, (2.0, 4.0))
    for bad in ({"no_activity_h": "abc"}, {"no_activity_h": "0"}, {"window_start": "25:00"},
                {"activity_rule": "sometimes"}):
        assert aiko.post("/h/sato/settings", data={"csrf": token, **bad}).status_code == 400
    before = site.app.state.store.device("sato-toilet").settings_version
    r = aiko.post("/h/sato/bulbs/sato-toilet/brightness",
                  data={"csrf": token, "brightness": "60"}, follow_redirects=False)
    assert r.status_code == 303
    dev = site.app.state.store.device("sato-toilet")
    assert dev.settings["brightness"] == 0.6 and dev.settings_version == before + 1
    assert aiko.post("/h/sato/bulbs/sato-toilet/brightness",
                     data={"csrf": token, "brightness": "2"}).status_code == 400
    assert aiko.post("/h/sato/bulbs/suzuki-toilet/brightness",
                     data={"csrf": token, "brightness": "60"}).status_code == 404
    nao = site.w[("sato", "Nao")]
    r = aiko.post(f"/h/sato/watchers/{nao}/order", data={"csrf": token, "tier": "1"},
                  follow_redirects=False)
    assert r.status_code == 303
    with site.db.tx() as c:
        assert hh.watcher(c, nao).tier == 1
    assert aiko.post(f"/h/sato/watchers/{nao}/order",
                     data={"csrf": token, "tier": "7"}).status_code == 400
    mika = site.w[("suzuki", "Mika")]
    assert aiko.post(f"/h/sato/watchers/{mika}/order",
                     data={"csrf": token, "tier": "2"}).status_code == 404


def test_the_language_toggle_sticks_and_never_redirects_off_site(site: Site) -> None:
    ken = site.sign_in("Ken")
    assert '<html lang="ja">' in ken.get("/home").text
    r = ken.get("/lang", params={"to": "en", "next": "/h/sato"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/h/sato"
    page = ken.get("/h/sato").text
    assert '<html lang="en">' in page and "Light use over the last 14 days" in page
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = ken.get("/lang", params={"to": "ja", "next": evil}, follow_redirects=False)
        assert r.headers["location"] == "/"


def test_garbage_never_gets_a_server_error(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    token = csrf(aiko, "/home")
    for path in ("/h/%00", "/h/sato/alerts/%ff/claim", "/in/" + "x" * 5000, "/lang?to=xx",
                 "/h/sato/chart.svg?days=-1"):
        assert aiko.get(path).status_code < 500, path
    for path, form in actions(site):
        r = aiko.post(path, content=b"\xff\xfe" * 5000 + b"&csrf=" + token.encode(),
                      headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code < 500, path
        r = aiko.post(path, data={"csrf": token, **{k: "\x00" * 300 for k in form}})
        assert r.status_code < 500, path


def test_a_failure_inside_a_page_or_an_action_is_a_page_that_changes_nothing(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's own fault (here: a broken helper) is a 503 page in the reader's language,
    not a 500 or the API's JSON; the action's transaction is rolled back."""
    from mimamori import status

    aiko = site.sign_in("Aiko")
    token = csrf(aiko, "/h/sato")

    def broken(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(views, "household_card", broken)
    monkeypatch.setattr(status, "refresh", broken)  # after the pause was written
    r = aiko.get("/h/sato")
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    assert "That did not work" in r.text and "disk" not in r.text
    r = aiko.post("/h/sato/pauses", data={"csrf": token, "first": "2026-03-16",
                                          "last": "2026-03-17"}, follow_redirects=False)
    assert r.status_code == 503 and "That did not work" in r.text
    with site.db.read() as c:
        assert hh.pauses(c, "sato") == []


# ---------------------------------------------------------------------------------------------
# what the pages show


def test_home_shows_status_last_switch_on_and_the_open_alert_with_its_buttons(site: Site) -> None:
    ken = site.sign_in("Ken")
    page = ken.get("/home").text
    assert 'data-status="alert"' in page and "お知らせがあります" in page
    assert "最後に電気がついた時刻" in page and "3/15 01:11" in page
    assert 'name="claim"' in page and 'name="resolve"' in page
    jiro = site.sign_in("Jiro", "tanaka")
    assert 'data-status="paused"' in jiro.get("/home").text
    emi = site.client()
    token = site.link(auth.WATCHER, site.w[("yamada", "Emi")])
    emi.post(f"/in/{token}", data={"csrf": csrf(emi)})
    assert 'data-status="silent"' in emi.get("/home").text


def test_coordinator_overview_shows_bulb_health_from_the_records(site: Site) -> None:
    coord = site.sign_in(None)
    page = coord.get("/coordinator/bulbs").text
    row = page[page.index('data-bulb="suzuki-toilet"'):]
    row = row[:row.index("</tr>")]
    assert re.search(r"-1\d\d dBm", row)  # the K_LINK records' signal (about -103)
    assert "遅れがち" in row  # poor delivery flagged
    yamada = page[page.index('data-bulb="yamada-toilet"'):]
    assert "不明" in yamada[:yamada.index("</tr>")]  # never heard: nothing made up


def test_report_csv_counts_alerts_false_alarms_and_times(site: Site) -> None:
    coord = site.sign_in(None)
    coord.get("/lang", params={"to": "en", "next": "/coordinator"})  # English headers
    r = coord.get("/coordinator/report.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = report_rows(r.content)
    assert set(rows) == {"sato", "suzuki", "tanaka", "yamada", "total"}
    assert (rows["suzuki"]["alerts"], rows["suzuki"]["false_alerts"],
            rows["suzuki"]["cleared_by_themselves"]) == ("2", "1", "1")
    assert float(rows["suzuki"]["claim_median_min"]) == 20.0  # claimed 20 min after it opened
    assert float(rows["suzuki"]["resolve_median_min"]) == 65.0
    assert rows["yamada"]["delay_median_min"] == ""  # never heard: no figure
    assert int(rows["total"]["alerts"]) == sum(int(rows[h]["alerts"]) for h in
                                               ("sato", "suzuki", "tanaka", "yamada"))


def test_coordinator_sees_lost_records_and_reused_seqs_per_bulb_and_in_the_report(
        site: Site) -> None:
    from mimamori.ingest import parse_batch
    from mimamori_firmware import record
    from sim.batch_client import BatchSender

    store = site.app.state.store
    dev = store.device("yamada-toilet")  # never heard yet: a journal of its own
    bulb = BatchSender(dev.id, dev.key_bytes, epoch=0x0BADF00D)
    t = NOW_MS - 3_600_000
    store.ingest(parse_batch(dev.id, bulb.request([bulb.record(record.K_POWER_ON)]).body), t)
    for _ in range(4):
        bulb.record(record.K_ALIVE)  # overwritten on the bulb before it could send them
    late = [bulb.record(record.K_LOSS, record.L_OVERWRITTEN, 1, arg=4), bulb.new_boot()]
    store.ingest(parse_batch(dev.id, bulb.request(late).body), t + 1000)
    bulb.next_seq -= 1  # a bulb that rolled back: the same seq, another switch-on
    again = bulb.new_boot()
    store.ingest(parse_batch(dev.id, bulb.request([again]).body), t + 2000)
    coord = site.sign_in(None)
    page = coord.get("/coordinator/bulbs").text
    row = page[page.index('data-bulb="yamada-toilet"'):]
    row = row[: row.index("</tr>")]
    assert "<td>4" in row and "番号の重複 1 件" in row
    coord.get("/lang", params={"to": "en", "next": "/coordinator"})
    assert "1 reused seqs" in coord.get("/coordinator/bulbs").text
    r = coord.get("/coordinator/report.csv")
    rows = report_rows(r.content)
    assert (rows["yamada"]["records_lost"], rows["yamada"]["records_lost_bulb_count"],
            rows["yamada"]["seq_conflicts"]) == ("4", "4", "1")
    assert int(rows["total"]["records_lost"]) >= 4


# ---------------------------------------------------------------------------------------------
# the chart (pure)


def _iv(start: int, end: int, *, start_earliest: int | None = None) -> Interval:
    se = start if start_earliest is None else start_earliest
    return Interval("b", 1, se, start, se + (end - start), end, end - start, "off",
                    start_earliest is None, end + 5 * SECOND_MS)


def test_chart_draws_known_visits_solid_and_unknown_times_as_ranges() -> None:
    day = datetime(2026, 3, 16, tzinfo=sample.JST)
    now = dt_ms(day + timedelta(hours=22))
    exact = _iv(dt_ms(day + timedelta(hours=7)), dt_ms(day + timedelta(hours=7, minutes=2)))
    vague = _iv(dt_ms(day + timedelta(hours=15)), dt_ms(day + timedelta(hours=15, minutes=1)),
                start_earliest=dt_ms(day + timedelta(hours=9)))
    svg = chart.activity_svg([exact, vague], "Asia/Tokyo", now, "en")
    assert svg.count('class="on"') == 1 and svg.count('class="uncertain"') == 1
    m = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="10" '
                  r'fill="url\(#hatch\)"', svg)
    assert m
    x, w = float(m.group(1)), float(m.group(2))
    hour = chart.PW / 24
    assert abs(x - (chart.X0 + 9 * hour)) < 1 and abs(w - 6 * hour) < 2  # 09:00 to 15:01
    on = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="18" fill="#1d3f6e"',
                   svg)
    assert on and float(on.group(2)) >= chart.MIN_W  # a two-minute visit is still visible


def test_chart_splits_a_visit_over_midnight_and_shades_pauses() -> None:
    day = datetime(2026, 3, 16, tzinfo=sample.JST)
    now = dt_ms(day + timedelta(hours=12))
    late = _iv(dt_ms(day - timedelta(minutes=30)), dt_ms(day + timedelta(minutes=30)))
    pause = (dt_ms(day - timedelta(days=3)), dt_ms(day - timedelta(days=1)))
    svg = chart.activity_svg([late], "Asia/Tokyo", now, "ja", pauses=[pause],
                             alerts_at=[now - HOUR_MS])
    assert svg.count('class="on"') == 2  # the end of yesterday's row, the start of today's
    assert svg.count('fill="url(#paused)"') == 2  # two whole days
    assert "お休み" in svg and 'class="alert-mark"' in svg
    assert "3/16 月" in svg


def test_day_rows_count_switch_ons_per_day() -> None:
    day = datetime(2026, 3, 16, tzinfo=sample.JST)
    ivs = [_iv(dt_ms(day + timedelta(hours=h)), dt_ms(day + timedelta(hours=h, minutes=1)))
           for h in (7, 9, 21)]
    rows = chart.day_rows(ivs, "Asia/Tokyo", dt_ms(day + timedelta(hours=23)), days=2)
    assert [(d.day, n) for d, n, _, _ in rows] == [(16, 3), (15, 0)]


def test_pilot_report_rows_match_the_alerts(site: Site) -> None:
    with site.db.tx() as c:
        rows = views.pilot_report(c, site.app.state.store, NOW_MS)
    total = views.report_total(rows)
    assert total.alerts == sum(r.alerts for r in rows) and total.false_alerts == 1
    s: dict[str, Any] = views.summary(total)
    assert s["alerts_per_household_month"] == round(total.alerts / total.months, 2)


def test_the_coordinator_makes_an_invitation_link_that_signs_the_watcher_in(site: Site) -> None:
    coord = site.sign_in(None)
    token = csrf(coord, "/coordinator")
    r = coord.post("/coordinator/invite", data={"csrf": token,
                                                "watcher": site.w[("sato", "Nao")]})
    assert r.status_code == 200 and "Nao" in r.text
    m = re.search(r"http://127.0.0.1:8000/in/(in_[\w-]+)", r.text)  # MIMAMORI_PUBLIC_URL
    assert m
    nao = site.client()
    r = nao.post(f"/in/{m.group(1)}", data={"csrf": csrf(nao)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/home"
    assert 'data-household="sato"' in nao.get("/home").text
    r = coord.post("/coordinator/invite", data={"csrf": token, "watcher": "w-nobody"})
    assert r.status_code == 404
    r = coord.post("/coordinator/invite", data={"csrf": token, "send": "message",
                                                "watcher": site.w[("tanaka", "Jiro")]})
    assert r.status_code == 200 and "メール" in r.text and "email" not in r.text
    (sent,) = [o for o in notify.outbox(site.db) if o.kind == "signin"]
    assert sent.payload["to"] == "jiro@example.org" and "14日間" in sent.body
    m = re.search(r"/in/(in_[\w-]+)", sent.body)
    assert m
    jiro = site.client()
    r = jiro.post(f"/in/{m.group(1)}", data={"csrf": csrf(jiro)}, follow_redirects=False)
    assert r.status_code == 303


def test_signing_out_needs_the_csrf_token_and_ends_the_session(site: Site) -> None:
    aiko = site.sign_in("Aiko")
    assert aiko.post("/signout", data={}, follow_redirects=False).status_code == 403
    assert aiko.get("/home").status_code == 200
    r = aiko.post("/signout", data={"csrf": csrf(aiko, "/home")}, follow_redirects=False)
    assert r.status_code == 303
    assert aiko.get("/home", follow_redirects=False).status_code == 303


def test_a_removed_watcher_loses_access_at_once(site: Site) -> None:
    ken = site.sign_in("Ken")
    with site.db.tx() as c:
        hh.remove_watcher(c, site.w[("sato", "Ken")], NOW_MS)
    for path in ("/home", "/h/sato"):  # the session ended with the removal: sign in again
        r = ken.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/signin"


def test_the_message_links_confirm_page_shows_the_activity_chart(site: Site) -> None:
    with site.db.tx() as c:
        urls = notify.links(c, notify.NotifierSettings(public_url=""), site.alert,
                            site.w[("sato", "Ken")], NOW_MS)
    page = site.client().get(urls["claim_url"])
    assert page.status_code == 200
    assert "<svg" in page.text and 'class="on"' in page.text and "この14日間の点灯" in page.text
    assert site.get_alert(site.alert).state == "open"  # opening the link changed nothing


def test_pages_forbid_framing_scripts_and_caching(site: Site) -> None:
    r = site.sign_in("Aiko").get("/h/sato")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("spread_ms, shows_bound", [(2 * SECOND_MS, False), (HOUR_MS, True)])
def test_last_switch_on_is_a_time_when_known_to_the_minute_and_a_bound_otherwise(
        spread_ms: int, shows_bound: bool) -> None:
    """A visit anchored by its batch's receipt is known within seconds: the card shows the time,
    not "by HH:MM"; a visit made without signal is only bounded and says so."""
    from types import SimpleNamespace

    from mimamori.web import i18n
    from mimamori.web.routes import _env

    minute = 60 * SECOND_MS
    start = (NOW_MS // minute) * minute - 3 * HOUR_MS + 30 * SECOND_MS  # mid-minute: a 2 s
    #                                                                      spread stays in it
    iv = Interval("b", 1, start - spread_ms, start, start + minute, start + 70 * SECOND_MS,
                  minute, "alive", True, start + 5 * SECOND_MS)
    card = SimpleNamespace(last_on=iv, home=SimpleNamespace(tz="Asia/Tokyo"))
    tr = i18n.t("en")
    macro = _env().get_template("_ui.html").module.last_on  # type: ignore[attr-defined]
    html = str(macro(card, tr, lambda ms, tz: i18n.when(ms, tz, NOW_MS, "en"),
                     lambda ms: i18n.ago(ms, NOW_MS, "en")))
    shown = i18n.when(start, "Asia/Tokyo", NOW_MS, "en")
    assert shown in html
    assert ("by " + shown in html) is shows_bound
