# SPDX-License-Identifier: MIT
"""The alert lifecycle through the JSON API and the message links, at chosen server instants.

The server app runs in-process with a clock the test moves; bulbs are BatchSenders posting
signed batches to the real ingest endpoint; sweeps are one-shot (POST /api/v1/sweep). What the
watchers would receive is read from the outbox (delivery itself is tested in test_notify.py).
"""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimamori import api, notify
from mimamori.app import create_app
from mimamori_firmware import record
from sim.batch_client import BatchSender

JST = timezone(timedelta(hours=9))
H = 3600.0
T0 = datetime(2026, 3, 2, 10, 42, tzinfo=JST).timestamp()  # a Monday, 10:42 in Japan


class World:
    def __init__(self, db_url, monkeypatch):
        monkeypatch.setenv("MIMAMORI_SWEEP_S", "0")  # no background task: sweeps are explicit
        self.t = T0 - 3 * H
        self.app = create_app(db_url, clock=lambda: self.t)
        self.http = TestClient(self.app)
        self.db = self.app.state.store.db
        token = api.create_token(self.db, "test", 0)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.bulbs: dict[str, BatchSender] = {}

    def api(self, method: str, path: str, status: int = 200, **kw):
        r = self.http.request(method, "/api/v1" + path, headers=self.auth, **kw)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def household(self, hid="home-1", *, watchers=("Aiko", "Ken"), **settings):
        st = {"activity_rule": "fixed", **settings}
        self.api("POST", "/households", 201, json={"id": hid, "name": "Sato", "settings": st})
        ws = {}
        for name in watchers:
            role = {"Nao": "neighbour", "Visit": "visit_service"}.get(name, "family")
            lang = "en" if name != "Ken" else "ja"
            ws[name] = self.api("POST", f"/households/{hid}/watchers", 201,
                                json={"name": name, "role": role, "lang": lang,
                                      "console": True})["id"]
        bulb = self.api("POST", f"/households/{hid}/bulbs", 201, json={"id": f"{hid}-toilet"})
        self.bulbs[hid] = BatchSender(bulb["id"], bytes.fromhex(bulb["site"]["device_key"]))
        return ws

    def switch_on(self, hid="home-1", length_s=120.0):
        """A visit starting now, anchored, reported when the lamp goes off."""
        b = self.bulbs[hid]
        recs = [b.new_boot(), b.record(record.K_ANCHOR, record.A_SERVER, 0, int(self.t) + 1,
                                       up_ms=1000),
                b.record(record.K_OFF, up_ms=int(length_s * 1000))]
        self.t += length_s + 1
        req = b.request(recs)
        r = self.http.post(req.path, content=req.body, headers=req.headers)
        assert r.status_code == 200, r.text

    def at(self, t: float) -> None:
        self.t = t
        self.api("POST", "/sweep")

    def outbox(self, kind=None):
        rows = notify.outbox(self.db)
        return [o for o in rows if kind is None or o.kind == kind]

    def to(self, kind, ws):
        names = {v: k for k, v in ws.items()}
        return sorted(names[o.watcher] for o in self.outbox(kind))


def family(alerts):
    return [a for a in alerts if a["audience"] == "family"]


def quiet_day_alert(w):
    """A household (Aiko, Ken) whose last switch-on was 25 h ago: its watchers and the family
    alert that opened (fixed 24 h rule)."""
    ws = w.household()
    w.t = T0
    w.switch_on()
    w.at(T0 + 25 * H)
    (a,) = family(w.api("GET", "/alerts?active=true"))
    return ws, a


@pytest.fixture
def w(db_url, monkeypatch):
    world = World(db_url, monkeypatch)
    yield world
    world.http.close()


def test_invited_watchers_get_a_test_message_in_their_language_before_any_alert(w):
    ws = w.household()
    assert w.to("invite", ws) == ["Aiko", "Ken"]
    ja = next(o for o in w.outbox("invite") if o.watcher == ws["Ken"])
    assert "テスト" in ja.subject and "Ken" in ja.body
    en = next(o for o in w.outbox("invite") if o.watcher == ws["Aiko"])
    assert "test message" in en.subject
    assert not w.outbox("alert")


def test_a_day_without_switch_on_alerts_claim_is_shown_to_others_and_resolution_to_all(w):
    ws = w.household(watchers=("Aiko", "Ken", "Mari"))
    w.t = T0
    w.switch_on()
    w.at(T0 + 24 * H - 60)
    assert not w.outbox("alert")
    w.at(T0 + 24 * H + 5)
    (a,) = w.api("GET", "/alerts?active=true")
    assert a["rule"] == "no_activity" and a["state"] == "open"
    assert w.to("alert", ws) == ["Aiko", "Ken", "Mari"]
    aiko = next(o for o in w.outbox("alert") if o.watcher == ws["Aiko"])
    assert "last switched on" in aiko.body and "10:42" in aiko.body
    assert "Also sent to: Ken, Mari." in aiko.body
    ken = next(o for o in w.outbox("alert") if o.watcher == ws["Ken"])
    assert "このお知らせは Aiko さん、Mari さんにも届いています。" in ken.body
    assert aiko.payload["links"]["claim_url"].startswith("http")

    got = w.api("POST", f"/alerts/{a['id']}/claim", json={"watcher": ws["Aiko"]})
    assert got["state"] == "claimed" and got["claimed_by_name"] == "Aiko"
    assert w.to("claimed", ws) == ["Ken", "Mari"]
    assert all("Aiko" in o.subject for o in w.outbox("claimed"))
    assert "Aiko さんが確認に行きます" in next(o.subject for o in w.outbox("claimed")
                                         if o.watcher == ws["Ken"])
    # a second watcher claiming is told who already goes
    r = w.http.post(f"/api/v1/alerts/{a['id']}/claim", headers=w.auth,
                    json={"watcher": ws["Ken"]})
    assert r.status_code == 409 and "Aiko is already going to check" in r.json()["detail"]

    r = w.http.post(f"/api/v1/alerts/{a['id']}/resolve", headers=w.auth,
                    json={"watcher": ws["Aiko"], "outcome": "false_alarm"})
    assert r.status_code == 400 and "why" in r.json()["detail"]
    done = w.api("POST", f"/alerts/{a['id']}/resolve",
                 json={"watcher": ws["Aiko"], "outcome": "fine", "note": "was asleep"})
    assert done["state"] == "resolved" and done["outcome"] == "fine"
    assert w.to("resolved", ws) == ["Ken", "Mari"]
    hist = [e["kind"] for e in w.api("GET", f"/alerts/{a['id']}")["events"]]
    assert hist == ["opened", "claimed", "resolved"]
    # the same quiet spell does not alert again after it was resolved
    w.at(T0 + 30 * H)
    assert len(w.api("GET", "/alerts")) == 1 and len(w.outbox("alert")) == 3
    # but if nothing is switched on for another day after she found all fine, it alerts again
    w.at(T0 + 48 * H + 10)
    again, first = w.api("GET", "/alerts")
    assert first["id"] == a["id"] and again["state"] == "open"
    assert w.to("alert", ws) == ["Aiko", "Aiko", "Ken", "Ken", "Mari", "Mari"]


def test_switch_on_clears_the_alert_at_once_and_tells_everyone_when(w):
    ws = w.household()
    w.t = T0
    w.switch_on()
    w.at(T0 + 25 * H)
    (a,) = w.api("GET", "/alerts?active=true")
    w.api("POST", f"/alerts/{a['id']}/claim", json={"watcher": ws["Ken"]})
    w.t = datetime(2026, 3, 3, 12, 5, tzinfo=JST).timestamp()
    w.switch_on()  # ingest re-evaluates the household: no sweep needed
    got = w.api("GET", f"/alerts/{a['id']}")
    assert got["state"] == "cleared" and "12:05" in got["clear_evidence"]
    assert w.to("cleared", ws) == ["Aiko", "Ken"]
    en = next(o for o in w.outbox("cleared") if o.watcher == ws["Aiko"])
    assert "light switched on at 12:05" in en.subject
    ja = next(o for o in w.outbox("cleared") if o.watcher == ws["Ken"])
    assert "12:05に電気がつきました" in ja.subject


def test_unclaimed_alert_reminds_then_escalates_to_neighbours_then_the_visit_service(w):
    ws = w.household(watchers=("Aiko", "Nao", "Visit"), reminder_h=2, escalate_h=[1, 3])
    w.t = T0
    w.switch_on()
    opened = T0 + 24 * H  # Tuesday 10:42
    w.at(opened)
    assert w.to("alert", ws) == ["Aiko"]
    hh = w.api("GET", "/households/home-1")
    assert hh["next_check"] == int((opened + 1 * H) * 1000)  # the index knows the escalation
    w.at(opened + 1 * H)
    assert w.to("escalated", ws) == ["Nao"]
    w.at(opened + 2 * H)
    assert w.to("reminder", ws) == ["Aiko", "Nao"]
    w.at(opened + 4 * H)
    assert w.to("escalated", ws) == ["Nao", "Visit"]
    assert w.to("reminder", ws) == ["Aiko", "Nao"]  # the next reminder backs off: 4 h later
    w.at(opened + 6 * H)
    assert w.to("reminder", ws) == ["Aiko", "Aiko", "Nao", "Nao", "Visit"]
    (a,) = w.api("GET", "/alerts?active=true")
    w.at(opened + 6.5 * H)
    w.api("POST", f"/alerts/{a['id']}/claim", json={"watcher": ws["Nao"]})
    assert w.to("claimed", ws) == ["Aiko", "Visit"]
    w.at(opened + 8.4 * H)  # claimed: no more reminders
    assert len(w.outbox("reminder")) == 5 and not w.outbox("overdue")
    w.at(opened + 8.5 * H)  # two hours and no outcome from Nao: everyone hears it, once
    assert w.to("overdue", ws) == ["Aiko", "Nao", "Visit"]
    assert "no outcome from Nao yet" in w.outbox("overdue")[0].subject
    w.at(opened + 20 * H)
    assert len(w.outbox("overdue")) == 3 and len(w.outbox("reminder")) == 5


def test_paused_household_does_not_alert_and_resumes_by_itself(w):
    ws = w.household()
    w.t = T0
    w.switch_on()
    p = w.api("POST", "/households/home-1/pauses", 201,
              json={"first": "2026-03-03", "last": "2026-03-05", "reason": "hospital"})
    w.at(T0 + 3 * 24 * H)
    assert not family(w.api("GET", "/alerts"))
    end = datetime(2026, 3, 6, 0, 0, tzinfo=JST).timestamp()
    assert p["end_ms"] == end * 1000
    w.at(end + 23 * H)
    assert not family(w.api("GET", "/alerts"))
    w.at(end + 24 * H + 1)  # 24 h after the pause ended, still no switch-on
    (a,) = family(w.api("GET", "/alerts?active=true"))
    assert a["rule"] == "no_activity"
    assert w.to("alert", ws) == ["Aiko", "Ken"]


def test_links_in_messages_show_a_confirm_page_and_act_only_on_post(w):
    ws = w.household()
    w.t = T0
    w.switch_on()
    w.at(T0 + 25 * H)
    msg = next(o for o in w.outbox("alert") if o.watcher == ws["Aiko"])
    claim = msg.payload["links"]["claim_url"].split("testserver")[-1]
    claim = re.sub(r"^https?://[^/]+", "", claim)
    page = w.http.get(claim)
    assert page.status_code == 200 and "<form method=\"post\"" in page.text
    (a,) = w.api("GET", "/alerts")
    assert a["state"] == "open"  # a GET (mail scanner) changed nothing
    done = w.http.post(claim)
    assert done.status_code == 200 and "Aiko is going to check" in done.text
    assert w.api("GET", f"/alerts/{a['id']}")["claimed_by_name"] == "Aiko"
    ken = next(o for o in w.outbox("claimed") if o.watcher == ws["Ken"])
    resolve = re.sub(r"^https?://[^/]+", "", ken.payload["links"]["resolve_url"])
    r = w.http.post(resolve, content="outcome=needed_help&note=fell+in+the+kitchen",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    got = w.api("GET", f"/alerts/{a['id']}")
    assert got["outcome"] == "needed_help" and got["resolved_by_name"] == "Ken"
    assert got["note"] == "fell in the kitchen"
    forged = claim[:-3] + ("AAA" if not claim.endswith("AAA") else "BBB")
    assert w.http.post(forged).status_code == 404
    # a claim link cannot resolve, and a closed alert cannot be claimed again
    assert w.http.post(claim).status_code == 409


def test_api_needs_a_token_refuses_bad_input_with_4xx_and_is_in_the_openapi_document(w):
    assert w.http.get("/api/v1/households").status_code == 401
    r = w.http.get("/api/v1/households", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "mimamori token create" in r.json()["detail"]
    w.household()
    for path, body, want in [
        ("/households", {"id": "bad id!"}, "letters"),
        ("/households", {"id": "h2", "tz": "Mars/Olympus"}, "IANA"),
        ("/households", {"id": "h3", "settings": {"no_activity_h": "ten"}}, "number"),
        ("/households/home-1/watchers", {"name": "X", "lang": "fr", "console": True}, "ja or en"),
        ("/households/home-1/watchers", {"name": "X"}, "channel"),
        ("/households/home-1/pauses", {"first": "2026-03-05", "last": "2026-03-01"}, "swap"),
        ("/households/home-1/pauses", {"first": "5 March", "last": "2026-03-01"}, "YYYY-MM-DD"),
    ]:
        r = w.http.post("/api/v1" + path, headers=w.auth, json=body)
        assert r.status_code == 400 and want in r.json()["detail"], (path, r.text)
    r = w.http.post("/api/v1/households", headers=w.auth, json={"id": "home-1"})
    assert r.status_code == 409 and "exists already" in r.json()["detail"]  # a conflict
    assert w.http.get("/api/v1/households/nope", headers=w.auth).status_code == 404
    assert w.http.post("/api/v1/alerts/a-x/claim", headers=w.auth,
                       json={"watcher": "w"}).status_code == 404
    r = w.http.post("/api/v1/households", headers=w.auth, content=b"{not json")
    assert r.status_code == 400
    paths = w.http.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/households", "/api/v1/households/{hid}/watchers",
              "/api/v1/alerts/{aid}/claim", "/api/v1/alerts/{aid}/resolve",
              "/api/v1/households/{hid}/pauses", "/api/v1/households/{hid}/bulbs"):
        assert p in paths


def test_cli_reads_like_the_tasks_from_household_to_resolved_alert(db_url, capsys):
    from mimamori.cli import main

    db = db_url
    now = T0 + 25 * H

    def mimamori(*argv, clock=now, status=0):
        rc = main(["--db", db, "--clock", f"fixed:{clock}", *argv])
        out = capsys.readouterr()
        assert rc == status, out.err
        return out.out + out.err

    assert "added" in mimamori("household", "add", "home-1", "--name", "Sato", "--rule", "fixed",
                               clock=T0 - H)
    out = mimamori("watcher", "invite", "home-1", "Aiko", "--email", "aiko@example.org",
                   "--lang", "en", clock=T0 - H)
    wid = re.search(r"watcher (w-[0-9a-f]+)", out).group(1)
    assert "test message queued on: email" in out
    mimamori("watcher", "invite", "home-1", "Ken", "--console", clock=T0 - H)
    assert "no_activity_h" in mimamori("household", "settings", "home-1", "no_activity_h=12",
                                       clock=T0 - H)
    assert "must be a number" in mimamori("household", "settings", "home-1", "no_activity_h=x",
                                          status=2)
    key = json.loads(mimamori("device", "register", "--id", "toilet", "--household", "home-1",
                              "--json", clock=T0 - H))["device_key"]
    from mimamori.storage import Database, Store
    from tests.alerts_rig import visit

    store = Store(Database(db))
    visit(store, BatchSender("toilet", bytes.fromhex(key)), T0)
    store.close()
    assert "evaluated 1" in mimamori("sweep")
    out = mimamori("alert", "list", "--active")
    aid = re.search(r"(a-[0-9a-f]+)\s+home-1\s+no_activity\s+open", out).group(1)
    assert "Aiko is going to check" in mimamori("alert", "claim", aid, wid)
    assert "no watcher 'w-nobody'" in mimamori("alert", "claim", aid, "w-nobody", status=2)
    assert "resolved by Aiko: fine" in mimamori("alert", "resolve", aid, wid, "fine")
    out = mimamori("outbox", "--state", "pending")
    assert out.count("invite") == 2 and "claimed" in out and "resolved" in out
    assert "paused from 2026-03-10 to 2026-03-12" in mimamori(
        "household", "pause", "home-1", "2026-03-10", "2026-03-12", "--reason", "travel")
    assert "YYYY-MM-DD" in mimamori("household", "pause", "home-1", "10/3", "2026-03-12",
                                    status=2)
    assert mimamori("token", "create", "ops", "--quiet").startswith("mmr_")


def test_pausing_a_household_with_an_open_alert_clears_it_and_says_why(w):
    ws, a = quiet_day_alert(w)
    w.api("POST", "/households/home-1/pauses", 201,
          json={"first": "2026-03-03", "last": "2026-03-04", "reason": "hospital"})
    w.api("POST", "/sweep")
    got = w.api("GET", f"/alerts/{a['id']}")
    assert got["state"] == "cleared" and got["clear_evidence"].startswith("paused until")
    en = next(o for o in w.outbox("cleared") if o.watcher == ws["Aiko"])
    assert en.subject.startswith("[Mimamori] Sato: the household was paused (paused until")
    ja = next(o for o in w.outbox("cleared") if o.watcher == ws["Ken"])
    assert "見守りが一時停止されたため" in ja.subject and "電気がつきました" not in ja.subject


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
FIELDS = st.sampled_from(["id", "name", "tz", "settings", "role", "lang", "email", "webhook_url",
                          "console", "tier", "first", "last", "reason", "watcher", "outcome",
                          "note", "no_activity_h", "escalate_h", "window_start"])


@pytest.mark.slow
def test_api_answers_any_json_with_a_2xx_or_a_4xx_never_a_server_error(db_url, monkeypatch):
    world = World(db_url, monkeypatch)
    wid = world.household()["Aiko"]
    paths = ["/households", "/households/home-1/watchers", "/households/home-1/pauses",
             "/households/home-1/bulbs", "/alerts/a-x/claim", "/alerts/a-x/resolve"]

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(path=st.sampled_from(paths), body=st.dictionaries(FIELDS, JSON, max_size=6) | JSON)
    def post(path, body):
        r = world.http.post("/api/v1" + path, headers=world.auth, json=body)
        assert r.status_code < 500, (path, body, r.text)
        assert set(r.json()) >= ({"error", "detail"} if r.status_code >= 400 else set())
        for patch in ("/households/home-1/settings", f"/watchers/{wid}"):
            r = world.http.patch("/api/v1" + patch, headers=world.auth, json=body)
            assert r.status_code < 500, (patch, body, r.text)

    post()
    world.http.close()


def test_changing_a_watchers_address_sends_a_test_message_there_and_alerts_follow(w):
    ws = w.household()
    got = w.api("PATCH", f"/watchers/{ws['Aiko']}", json={"email": "aiko@new.example.org",
                                                          "lang": "ja"})
    assert got["test_message"] and got["email"] == "aiko@new.example.org"
    (mail,) = [o for o in w.outbox("invite") if o.watcher == ws["Aiko"] and o.channel == "email"]
    assert mail.payload["to"] == "aiko@new.example.org" and "テスト" in mail.subject
    got = w.api("PATCH", f"/watchers/{ws['Aiko']}", json={"name": "Aiko Sato"})
    assert not got["test_message"]
    for bad, want in (({"email": "nope"}, "name@example.org"), ({"tier": "x"}, "tier"),
                      ({"key": 1}, "cannot change key"), ({"console": False, "email": None},
                                                          "at least one channel")):
        r = w.http.patch(f"/api/v1/watchers/{ws['Aiko']}", headers=w.auth, json=bad)
        assert r.status_code == 400 and want in r.json()["detail"], r.text
    w.t = T0
    w.switch_on()
    w.at(T0 + 25 * H)
    alert = next(o for o in w.outbox("alert") if o.watcher == ws["Aiko"] and o.channel == "email")
    assert alert.payload["to"] == "aiko@new.example.org" and "Aiko Sato" in alert.body


def test_raising_the_threshold_clears_without_claiming_the_light_came_on(w):
    ws, a = quiet_day_alert(w)
    w.api("PATCH", "/households/home-1/settings", json={"no_activity_h": 36})
    w.api("POST", "/sweep")
    assert w.api("GET", f"/alerts/{a['id']}")["state"] == "cleared"
    en = next(o for o in w.outbox("cleared") if o.watcher == ws["Aiko"])
    assert "no longer an alert under the current settings" in en.subject
    assert "switched on at" not in en.subject
    w.at(T0 + 36 * H - 60)
    assert not family(w.api("GET", "/alerts?active=true"))
    w.at(T0 + 36 * H + 1)  # the same quiet spell reaches the new threshold: alert again
    (b,) = family(w.api("GET", "/alerts?active=true"))
    assert b["id"] != a["id"] and w.to("alert", ws) == ["Aiko", "Aiko", "Ken", "Ken"]


def test_an_alert_kept_before_the_engine_counted_ms_still_says_when_she_was_last_seen():
    # alerts opened before the upgrade hold Unix seconds in their detail; read as ms they
    # would say 1970 in every reminder
    from types import SimpleNamespace

    from mimamori import alerts

    now_ms = int(datetime(2026, 3, 3, 12, 0, tzinfo=JST).timestamp() * 1000)
    on_s = datetime(2026, 3, 2, 10, 42, tzinfo=JST).timestamp()
    home = SimpleNamespace(tz="Asia/Tokyo")

    def ctx(detail: dict) -> dict:
        a = SimpleNamespace(rule="no_activity", subject="", id="a-1", evidence="",
                            detail=detail, opened_at=now_ms)
        return alerts.context(a, home, now_ms)  # type: ignore[arg-type]

    old = ctx({"last_on": on_s, "unreported_until": on_s + 3600})
    new = ctx({"last_on": int(on_s * 1000), "unreported_until": int((on_s + 3600) * 1000),
               "time_unit": alerts.TIME_UNIT})
    assert old["last_on"] == new["last_on"] == "3/2 10:42"
    assert old["unreported_until"] == new["unreported_until"] == "3/2 11:42"
    assert old["gap_h"] == pytest.approx(new["gap_h"]) and 25 < new["gap_h"] < 26


class _Down(io.StringIO):
    """A channel that cannot be reached (a relay down): every write fails."""

    def write(self, s: str) -> int:
        raise OSError("the relay is down")


def test_an_alert_that_clears_before_its_message_got_out_is_never_sent_late(w):
    ws, a = quiet_day_alert(w)
    down = notify.deliver_due(w.db, int(w.t * 1000), notify.NotifierSettings(console=_Down()))
    assert down["failed"] >= 2  # both alert messages tried, and waiting to be tried again
    w.t = T0 + 26 * H
    w.switch_on()  # she is seen again while the relay is still down
    assert w.api("GET", f"/alerts/{a['id']}")["state"] == "cleared"
    w.t = T0 + 30 * H  # the relay is back: what goes out now
    out = io.StringIO()
    notify.deliver_due(w.db, int(w.t * 1000), notify.NotifierSettings(console=out))
    sent = [o for o in w.outbox() if o.alert == a["id"] and o.state == "sent"]
    assert sorted(o.kind for o in sent) == ["cleared", "cleared"]  # no stale "no switch-on"
    assert {o.kind for o in w.outbox() if o.state == "cancelled"} == {"alert"}
    assert w.to("cleared", ws) == ["Aiko", "Ken"]  # tried, maybe got it: told it is over
