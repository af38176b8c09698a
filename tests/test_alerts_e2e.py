# SPDX-License-Identifier: MIT
"""End to end: the real firmware in MicroPython talks to a real server process (clock scaled so
half an hour passes in a second); the switch-ons stop, the alert reaches both watchers' inboxes on
a real SMTP server, one claims from the link in her e-mail, the other is told who goes, the
light comes on and both are told it cleared, with the time it came on."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from mimamori.cli import main as mimamori
from sim.bulb import Bulb, wifi_net
from sim.server_process import ServerProcess, free_port
from tests.alerts_rig import Inboxes

WIFI = [wifi_net("home", "pw", rssi=-61)]
FACTOR = 1800  # server time: half an hour per real second (the alert: 6 s after)
AIKO, KEN = "aiko@example.org", "ken@example.org"


@pytest.fixture
def inboxes():
    ib = Inboxes().start()
    yield ib
    ib.stop()


def cli(db, capsys, *argv) -> str:
    assert mimamori(["--db", str(db), *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_quiet_home_alerts_both_watchers_one_claims_the_other_sees_it_and_the_light_clears_it(
        tmp_path, inboxes, capsys):
    db = tmp_path / "server.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MIMAMORI_SMTP": inboxes.address, "MIMAMORI_PUBLIC_URL": url,
           "MIMAMORI_SWEEP_S": "0.2", "MIMAMORI_MAIL_FROM": "mimamori@sato.example"}
    srv = ServerProcess(db, port=port, clock=f"scaled:{FACTOR}", env=env)
    srv.start()
    bulbs: list[Bulb] = []
    try:
        token = cli(db, capsys, "token", "create", "coordinator", "--quiet").strip()
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        r = http.post("/api/v1/households", json={
            "id": "sato", "name": "佐藤さん", "settings": {
                "activity_rule": "fixed", "no_activity_h": 3, "reminder_h": 24,
                "claim_timeout_h": 24}})
        assert r.status_code == 201, r.text
        for name, addr, lang in (("Aiko", AIKO, "en"), ("Ken", KEN, "ja")):
            r = http.post("/api/v1/households/sato/watchers",
                          json={"name": name, "email": addr, "lang": lang})
            assert r.status_code == 201, r.text
        inboxes.wait(lambda: inboxes.of(AIKO, "invite") and inboxes.of(KEN, "invite"))
        assert "test message" in inboxes.of(AIKO, "invite")[0].subject

        for room in ("toilet", "washroom"):
            site = json.loads(cli(db, capsys, "device", "register", "--id", room, "--household",
                                  "sato", "--server", url, "--json"))
            site |= {"transport": "wifi", "wifi_ssid": "home", "wifi_password": "pw",
                     "heartbeat_s": 600}
            bulbs.append(Bulb(tmp_path / room, site=site, wifi=WIFI))
        toilet, washroom = bulbs

        # a morning: both lights used a few times, then nothing more
        for b in (toilet, washroom, toilet):
            b.power_on(stop_at_s=30)
        got = http.get("/api/v1/households/sato/bulbs").json()
        assert all(b["last_heard_at"] for b in got), got
        assert not http.get("/api/v1/alerts?active=true").json()

        alert_aiko = inboxes.wait(lambda: inboxes.of(AIKO, "alert"))[0]
        alert_ken = inboxes.wait(lambda: inboxes.of(KEN, "alert"))[0]
        assert "佐藤さん: no light switched on for" in alert_aiko.subject
        assert "電気がつけられていません" in alert_ken.subject
        (alert,) = http.get("/api/v1/alerts?active=true").json()
        assert alert["rule"] == "no_activity" and alert["state"] == "open"

        # Aiko claims from the link in her e-mail: the link shows a page, the button acts
        link = re.search(r"I will go and check: (\S+)", alert_aiko.body).group(1)
        assert link.startswith(url + "/a/")
        page = httpx.get(link)
        assert page.status_code == 200 and "<form" in page.text
        assert http.get(f"/api/v1/alerts/{alert['id']}").json()["state"] == "open"
        done = httpx.post(link)
        assert done.status_code == 200 and "Aiko is going to check" in done.text
        claimed = inboxes.wait(lambda: inboxes.of(KEN, "claimed"))[0]
        assert claimed.subject == "【みまもり電球】佐藤さん：Aiko さんが確認に行きます"
        assert not inboxes.of(AIKO, "claimed")  # she knows; the others are told

        # the light comes on: the alert clears itself at once, and both are told when
        washroom.power_on(stop_at_s=30)
        en = inboxes.wait(lambda: inboxes.of(AIKO, "cleared"))[0]
        ja = inboxes.wait(lambda: inboxes.of(KEN, "cleared"))[0]
        got = http.get(f"/api/v1/alerts/{alert['id']}").json()
        assert got["state"] == "cleared" and got["claimed_by_name"] == "Aiko"
        hhmm = re.search(r"light switched on at (\d\d:\d\d)", en.subject).group(1)
        assert f"{hhmm}に電気がつきました" in ja.subject
        cleared = datetime.fromtimestamp(got["cleared_at"] / 1000, ZoneInfo("Asia/Tokyo"))
        on = datetime.strptime(hhmm, "%H:%M").replace(year=cleared.year, month=cleared.month,
                                                     day=cleared.day, tzinfo=cleared.tzinfo)
        lag_min = (cleared - on).total_seconds() / 60 % (24 * 60)
        assert lag_min <= 60, (hhmm, cleared)  # the switch-on just before it cleared
        assert got["clear_evidence"]
        assert [m.kind for m in inboxes.of(AIKO)] == ["invite", "alert", "cleared"]
        assert [m.kind for m in inboxes.of(KEN)] == ["invite", "alert", "claimed", "cleared"]
        assert len({m.message_id for m in inboxes.mails}) == len(inboxes.mails)
        http.close()
    finally:
        for b in bulbs:
            b.power_off()
        srv.stop()
