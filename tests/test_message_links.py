# SPDX-License-Identifier: MIT
"""The pages the links in messages open (/a/<token>) and the words of the messages, on the
sample pilot (sim/sample_pilot.py) in-process: the state in words, only the actions that
can be taken, a lost claim race, handing an alert back, errors in the reader's language, the
"I received this" link, and no English in what a Japanese watcher reads.

sato's open alert is watched by Aiko (English), Ken and Nao (Japanese).
"""

from __future__ import annotations

import html
import re

from mimamori import alerts, api, messages, notify, sweeper
from mimamori import households as hh
from tests import test_dashboard
from tests.test_dashboard import NOW_MS, Site

template_db = test_dashboard.template_db  # the sample pilot, per store, and a copy per test
site = test_dashboard.site

# English words a Japanese reader must never see in a page or message of these flows
ENGLISH = re.compile(
    r"\b(open|claimed|resolved|cleared|email|e-mail|needed help|false alarm|all fine|"
    r"alert\(s\)|alerts?|between|on (Mon|Tue|Wed|Thu|Fri|Sat|Sun)|Details|I will go|"
    r"Record the outcome|no switch-on|switched on|family|neighbour|commissioner|"
    r"going to check|hand it back|expired|damaged)\b", re.IGNORECASE)


def _text(page: str) -> str:
    """What a reader sees: the body without tags, the language toggle's own name and links."""
    body = page.split("<body>", 1)[-1]
    body = re.sub(r"<(svg|style|script)\b.*?</\1>", " ", body, flags=re.DOTALL)
    body = re.sub(r"<[^>]+>", " ", body)
    body = html.unescape(body).replace("English", " ")
    return re.sub(r"https?://\S+", " ", body)


def _links(site: Site, who: str) -> dict[str, str]:
    with site.db.tx() as c:
        urls = notify.links(c, notify.NotifierSettings(public_url=""), site.alert, site.w[("sato", who)],
                            NOW_MS)
    return urls


def test_the_link_page_says_the_state_in_words_and_offers_the_claim_only_while_it_can_be_taken(
        site: Site) -> None:
    ken, nao, aiko = (_links(site, n) for n in ("Ken", "Nao", "Aiko"))
    cl = site.client()
    page = cl.get(ken["claim_url"])
    assert page.status_code == 200
    assert '<link rel="stylesheet" href="/static/style.css">' in page.text
    assert 'id="claim"' in page.text and 'data-state="open"' in page.text
    assert "未対応" in page.text and "まだ誰も確認に向かっていません" in page.text
    assert not ENGLISH.search(_text(page.text)), ENGLISH.search(_text(page.text))
    assert site.get_alert(site.alert).state == "open"  # the GET changed nothing

    done = cl.post(ken["claim_url"], data={"do": "claim"})
    assert done.status_code == 200 and "Ken さんが確認に行きます" in done.text
    assert 'id="claim"' not in done.text and 'id="release"' in done.text

    # Nao pressed on the page she opened before Ken claimed: a 409 page, in Japanese, naming him
    lost = cl.post(nao["claim_url"], data={"do": "claim"})
    assert lost.status_code == 409
    assert "ひと足先に Ken さんが" in lost.text and 'id="claim"' not in lost.text
    assert not ENGLISH.search(_text(lost.text)), ENGLISH.search(_text(lost.text))
    assert site.get_alert(site.alert).claimed_by == site.w[("sato", "Ken")]

    seen = cl.get(aiko["claim_url"])  # Aiko reads English, and has nothing to press
    assert "Ken is going to check" in seen.text and 'id="claim"' not in seen.text
    assert 'id="release"' not in seen.text


def test_the_watcher_who_claimed_hands_it_back_and_the_others_are_told(site: Site) -> None:
    ken, nao = _links(site, "Ken"), _links(site, "Nao")
    cl = site.client()
    assert cl.post(nao["claim_url"], data={"do": "release"}).status_code == 409  # not hers
    cl.post(ken["claim_url"], data={"do": "claim"})
    before = {o.id for o in notify.outbox(site.db)}
    back = cl.post(ken["resolve_url"], data={"do": "release"})  # from either of his links
    assert back.status_code == 200 and "お返ししました" in back.text
    a = site.get_alert(site.alert)
    assert a.state == "open" and a.claimed_by is None and a.next_reminder_at is not None
    told = [o for o in notify.outbox(site.db) if o.id not in before]
    assert {o.kind for o in told} == {"released"}
    assert {o.watcher for o in told} == {site.w[("sato", "Aiko")], site.w[("sato", "Nao")]}
    nao_msg = next(o for o in told if o.watcher == site.w[("sato", "Nao")])
    assert "Ken さんが確認に行けなくなりました" in nao_msg.body and "/a/" in nao_msg.body
    assert not ENGLISH.search(re.sub(r"https?://\S+", " ", nao_msg.subject + nao_msg.body))
    again = cl.post(nao["claim_url"], data={"do": "claim"})
    assert again.status_code == 200
    assert site.get_alert(site.alert).claimed_by == site.w[("sato", "Nao")]
    with site.db.read() as c:
        assert [e["kind"] for e in alerts.events(c, site.alert)][-3:] == [
            "claimed", "released", "claimed"]
    # the dashboard shows the hand-back to the claimer only
    page = site.sign_in("Nao").get("/h/sato")
    assert f"/alerts/{site.alert}/release" in page.text
    assert f"/alerts/{site.alert}/release" not in site.sign_in("Ken").get("/h/sato").text


def test_errors_are_pages_in_the_readers_language(site: Site) -> None:
    cl = site.client()
    ja = cl.get("/a/garbage", headers={"Accept-Language": "ja-JP"})
    assert ja.status_code == 404 and "このリンクは壊れています" in ja.text
    assert 'href="/static/style.css"' in ja.text
    en = cl.get("/a/garbage", headers={"Accept-Language": "en-GB,en"})
    assert en.status_code == 404 and "This link is damaged" in en.text
    with site.db.tx() as c:
        old = notify.make_token(notify.link_key(c), "claim", site.alert, site.w[("sato", "Ken")],
                                NOW_MS - 1)
    late = cl.post(f"/a/{old}", data={"do": "claim"}, headers={"Accept-Language": "en"})
    assert late.status_code == 404 and "期限切れ" in late.text  # Ken's own language
    ken = _links(site, "Ken")
    bad = cl.post(ken["resolve_url"], data={"do": "resolve", "outcome": "false_alarm"})
    assert bad.status_code == 400 and "理由をメモに書いてください" in bad.text
    assert not ENGLISH.search(_text(bad.text)), ENGLISH.search(_text(bad.text))
    assert site.get_alert(site.alert).state == "open"
    wrong = cl.post(ken["claim_url"], data={"do": "resolve", "outcome": "fine"})
    assert wrong.status_code == 400 and "このリンクではその操作はできません" in wrong.text
    with site.db.tx() as c:
        hh.remove_watcher(c, site.w[("sato", "Ken")], NOW_MS)
    gone = cl.get(ken["claim_url"], headers={"Accept-Language": "ja"})
    assert gone.status_code == 404 and "もう使えません" in gone.text and "佐藤" not in gone.text


def test_a_japanese_watcher_reads_no_english_in_the_pages_and_messages_of_the_flow(
        site: Site) -> None:
    ken = _links(site, "Ken")
    cl = site.client()
    pages = [cl.get(ken["claim_url"]), cl.get(ken["resolve_url"])]
    pages.append(cl.post(ken["claim_url"], data={"do": "claim"}))
    pages.append(cl.post(ken["claim_url"], data={"do": "release"}))
    nao = _links(site, "Nao")
    pages.append(cl.post(nao["claim_url"], data={"do": "claim"}))
    pages.append(cl.post(ken["claim_url"], data={"do": "claim"}))  # lost to Nao: 409
    assert pages[-1].status_code == 409
    pages.append(cl.post(ken["resolve_url"], data={"do": "resolve", "outcome": "needed_help",
                                                   "note": "救急車を呼びました"}))
    pages.append(cl.get(ken["claim_url"]))
    assert "助けが必要でした" in pages[-1].text and 'id="claim"' not in pages[-1].text
    # the household pages with their alert history (suzuki: resolved and cleared alerts)
    pages.append(site.sign_in("Ken").get("/h/sato"))
    pages.append(site.sign_in("Mika", "suzuki").get("/h/suzuki"))
    for p in pages:
        assert p.status_code in (200, 409), p.text[:300]
        hit = ENGLISH.search(_text(p.text))
        assert not hit, (p.url, hit, _text(p.text)[max(0, hit.start() - 80):hit.end() + 80])
    assert "最後に点灯" in pages[-1].text  # history details, from the event's numbers
    for p in pages[-2:]:  # the household pages: no English word at all, names and ids aside
        words = set(re.findall(r"[A-Za-z][A-Za-z'-]{2,}", _text(p.text)))
        assert words <= {"Aiko", "Ken", "Nao", "Mika", "none", "sato-toilet",
                         "suzuki-toilet"}, words
    with site.db.tx() as c:  # the test message and the week's summary too
        for who in ("Ken", "Nao"):
            w = hh.watcher(c, site.w[("sato", who)])
            home = hh.household(c, "sato")
            notify.invite(c, NOW_MS, home, w, "http://x.example")
            tl = sweeper.recent_timeline(c, "sato", NOW_MS, 8)
            notify.enqueue(c, NOW_MS, "digest", home, w, sweeper.week_summary(c, home, tl,
                                                                              NOW_MS))
    japanese = {w for (h, n), w in site.w.items() if n not in ("Aiko",)}
    mails = [o for o in notify.outbox(site.db) if o.watcher in japanese]
    assert {"alert", "claimed", "released", "resolved", "cleared", "invite", "digest"} <= {
        o.kind for o in mails}
    for o in mails:
        text = re.sub(r"https?://\S+", " ", o.subject + "\n" + o.body)
        hit = ENGLISH.search(text)
        assert not hit, (o.kind, hit, text)
    cleared = [o for o in mails if o.kind == "cleared"]
    assert all("詳細：" in o.body for o in cleared)


def test_an_event_written_before_codes_still_shows_its_text(site: Site) -> None:
    with site.db.tx() as c:
        a = next(x for x in alerts.list_alerts(c, "suzuki") if x.state == "cleared")
        c.execute("UPDATE alert_events SET code = NULL, params = NULL, text = ? "
                  "WHERE alert = ? AND kind = 'opened'", ("old evidence line", a.id))
    page = site.sign_in("Mika", "suzuki").get("/h/suzuki")
    assert page.status_code == 200 and "old evidence line" in page.text


def test_the_invitations_i_received_this_link_is_kept_for_the_coordinator(site: Site) -> None:
    wid = site.w[("sato", "Nao")]
    with site.db.tx() as c:
        w = hh.watcher(c, wid)
        notify.invite(c, NOW_MS, hh.household(c, "sato"), w, "http://x.example")
    msg = [o for o in notify.outbox(site.db) if o.kind == "invite" and o.watcher == wid][-1]
    url = re.search(r"http://x\.example(/a/\S+)", msg.body).group(1)
    cl = site.client()
    page = cl.get(url)
    assert page.status_code == 200 and 'id="received"' in page.text
    with site.db.read() as c:
        assert notify.confirmed_at(c, hh.watcher(c, wid)) is None  # a GET is not an answer
    done = cl.post(url, data={"do": "received"})
    assert done.status_code == 200 and "記録しました" in done.text
    with site.db.read() as c:
        assert notify.confirmed_at(c, hh.watcher(c, wid)) == NOW_MS
        assert notify.confirmations(c, "sato") == {wid: NOW_MS}
    assert 'id="received"' not in cl.get(url).text
    bearer = {"Authorization": "Bearer " + api.create_token(site.db, "t", 0)}
    got = {w["name"]: w["confirmed_at"] for w in
           cl.get("/api/v1/households/sato/watchers", headers=bearer).json()}
    assert got == {"Aiko": None, "Ken": None, "Nao": NOW_MS}
    with site.db.tx() as c:  # a new address has not been confirmed yet
        hh.update_watcher(c, wid, {"email": "nao2@example.org"})
        assert notify.confirmed_at(c, hh.watcher(c, wid)) is None
        assert notify.confirmations(c) == {}


def test_the_digest_does_not_worry_about_a_paused_home_nor_guess_for_a_silent_bulb(
        site: Site) -> None:
    with site.db.read() as c:
        tanaka = hh.household(c, "tanaka")
        tl = sweeper.recent_timeline(c, "tanaka", NOW_MS, 8)
        summary = sweeper.week_summary(c, tanaka, tl, NOW_MS)
        yamada = hh.household(c, "yamada")
        silent = sweeper.week_summary(c, yamada, sweeper.recent_timeline(c, "yamada", NOW_MS, 8),
                                      NOW_MS)
    assert summary["paused_days"] >= 3
    for lang in ("ja", "en"):
        subject, _ = messages.render("digest", lang, {**summary, "home": "T", "watcher": "J"})
        assert "ご確認ください" not in subject and "please have a look" not in subject
    assert silent["usual_first"] is None and silent["heard"] is False
    _, body = messages.render("digest", "ja", {**silent, "home": "Y", "watcher": "E"})
    assert "だいたい" not in body and " -" not in body and "一度も連絡がありません" in body
    _, body = messages.render("digest", "en", {**silent, "home": "Y", "watcher": "E",
                                                "alerts": 1})
    assert "alert(s)" not in body and "1 alert," not in body and "1 alert" in body


def test_the_cli_hands_a_claimed_alert_back_too(site: Site, capsys) -> None:
    from mimamori import cli

    ken = site.w[("sato", "Ken")]
    base = ["--db", site.db.url, "--clock", f"fixed:{NOW_MS / 1000:.0f}", "alert"]
    assert cli.main([*base, "claim", site.alert, ken]) == 0
    assert cli.main([*base, "release", site.alert, site.w[("sato", "Nao")]]) == 2  # not hers
    assert "only they can hand it back" in capsys.readouterr().err
    assert cli.main([*base, "release", site.alert, ken]) == 0
    assert "handed back" in capsys.readouterr().out
    assert site.get_alert(site.alert).state == "open"
