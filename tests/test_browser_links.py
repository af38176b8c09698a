# SPDX-License-Identifier: MIT
"""The pages opened from the links in alert e-mails, in a real browser at phone size: Chromium
(/usr/bin/chromium) driven by Playwright against the real server process serving the sample
pilot (sim/sample_pilot.py) at a fixed instant.

sato's open alert: Ken (Japanese) and Nao (Japanese) race for the claim from pages they opened
before either pressed; Nao's press loses and her page says, in Japanese, that Ken is going.
Ken cannot go after all and hands it back; Nao's page offers the claim again; Aiko (English)
sees who is going and has nothing to press. Screenshots go to tests/artifacts/links_*.png.
Waits are on selectors, never on sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from mimamori import alerts, notify
from mimamori.storage import Database
from sim import sample_pilot as sample
from sim.server_process import ServerProcess
from tests.conftest import ARTIFACTS, needs_chromium

PHONE = {"width": 390, "height": 844}
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = str(tmp_path_factory.mktemp("links") / "pilot.db")
    s = sample.build(db)
    srv = ServerProcess(db, clock=f"fixed:{s.now:.0f}", env={"MIMAMORI_SWEEP_S": "0"})
    srv.env["MIMAMORI_PUBLIC_URL"] = srv.url
    now_ms = int(s.now * 1000)

    def links(who: str) -> dict[str, str]:
        database = Database(db)
        try:
            with database.tx() as c:
                return notify.links(c, notify.NotifierSettings(public_url=srv.url), s.alert,
                                    s.watchers[who], now_ms)
        finally:
            database.close()

    def alert() -> alerts.Alert:
        database = Database(db)
        try:
            with database.read() as c:
                return alerts.get(c, s.alert)
        finally:
            database.close()

    with srv:
        yield {"url": srv.url, "sample": s, "links": links, "alert": alert}




def _phone(browser: Any, locale: str) -> Any:
    ctx = browser.new_context(viewport=PHONE, locale=locale, is_mobile=True, has_touch=True)
    ctx.set_default_timeout(15_000)
    return ctx


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"links_{name}.png"), full_page=True)


def _thumb_sized(page: Any, selector: str) -> None:
    """A button a thumb hits: most of the phone's width, at least 48 px tall, no sideways
    scroll."""
    box = page.locator(selector).bounding_box()
    assert box is not None and box["height"] >= 48 and box["width"] >= 0.7 * PHONE["width"], box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_link_page_stays_usable_with_twice_the_text_size(pilot: dict, browser: Any) -> None:
    ctx = browser.new_context(viewport=PHONE, locale="ja-JP", bypass_csp=True)  # to enlarge
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        page.goto(pilot["links"]("Ken")["resolve_url"])
        page.add_style_tag(content="html { font-size: 225% !important; }")
        page.wait_for_selector("#resolve")  # before the race test below resolves it
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the link page is {width} px wide: it scrolls sideways"
        _shot(page, "resolve_phone_ja_large_text")
    finally:
        ctx.close()


def test_the_claim_race_and_the_hand_back_on_phones_in_japanese_and_english(
        pilot: dict, browser: Any) -> None:
    ken_links, nao_links = pilot["links"]("Ken"), pilot["links"]("Nao")
    aiko_links = pilot["links"]("Aiko")
    ken_ctx, nao_ctx, aiko_ctx = (_phone(browser, "ja-JP"), _phone(browser, "ja-JP"),
                                  _phone(browser, "en-GB"))
    try:
        ken, nao, aiko = ken_ctx.new_page(), nao_ctx.new_page(), aiko_ctx.new_page()
        # both open the link from their e-mail before either presses
        for page, link in ((ken, ken_links), (nao, nao_links)):
            page.goto(link["claim_url"])
            page.wait_for_selector("#claim")
            assert page.locator("#state [data-state=open]").inner_text().strip() == "未対応"
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") != \
                "rgba(0, 0, 0, 0)"  # the dashboard's stylesheet is applied
            _thumb_sized(page, "#claim")
        _shot(nao, "claim_phone_ja")

        ken.click("#claim")
        ken.wait_for_selector("#release")
        assert "Ken さんが確認に行きます" in ken.locator("#notice").inner_text()
        assert ken.locator("#claim").count() == 0
        _thumb_sized(ken, "#release")
        _shot(ken, "claimed_phone_ja")

        with nao.expect_response(lambda r: r.request.method == "POST") as answer:
            nao.click("#claim")  # her page is stale: the claim is Ken's
        assert answer.value.status == 409
        nao.wait_for_selector("#notice")
        assert "ひと足先に Ken さんが" in nao.locator("#notice").inner_text()
        assert nao.locator("#claim").count() == 0 and nao.locator("#release").count() == 0
        assert "claimed" not in nao.locator("body").inner_text()
        _shot(nao, "race_lost_phone_ja")
        assert pilot["alert"]().claimed_by == pilot["sample"].watchers["Ken"]

        aiko.goto(aiko_links["claim_url"])
        aiko.wait_for_selector("#claimer")
        assert "Ken is going to check" in aiko.locator("#claimer").inner_text()
        assert aiko.locator("#claim").count() == 0
        assert aiko.locator("#state [data-state=claimed]").inner_text().strip() == \
            "Being checked"
        _shot(aiko, "claimed_phone_en")

        # Ken cannot go after all: he hands it back; the others can claim again
        ken.click("#release")
        ken.wait_for_selector("#notice")
        assert "お返ししました" in ken.locator("#notice").inner_text()
        assert ken.locator("#claim").count() == 1 and ken.locator("#release").count() == 0
        assert pilot["alert"]().state == "open"
        nao.goto(nao_links["claim_url"])
        nao.wait_for_selector("#claim")
        nao.click("#claim")
        nao.wait_for_selector("#release")
        assert pilot["alert"]().claimed_by == pilot["sample"].watchers["Nao"]

        # Aiko records the outcome from her English resolve link
        aiko.goto(aiko_links["resolve_url"])
        aiko.wait_for_selector("#resolve")
        labels = aiko.locator("#resolve-form fieldset").inner_text()
        assert all(w in labels for w in ("All fine", "Needed help", "False alarm"))
        _thumb_sized(aiko, "#resolve")
        _shot(aiko, "resolve_phone_en")
        aiko.check("input[value=fine]")
        aiko.click("#resolve")
        aiko.wait_for_selector("#notice")
        assert "Recorded" in aiko.locator("#notice").inner_text()
        assert re.search(r"Aiko recorded: All fine", aiko.locator("body").inner_text())
        assert aiko.locator("#resolve").count() == 0
        ken.goto(ken_links["claim_url"])
        ken.wait_for_selector("#state")
        assert "無事でした" in ken.locator("body").inner_text()
        assert ken.locator("#claim").count() == 0
        _shot(ken, "resolved_phone_ja")
    finally:
        for ctx in (ken_ctx, nao_ctx, aiko_ctx):
            ctx.close()


def test_a_broken_link_is_a_styled_page_in_the_readers_language(pilot: dict,
                                                                browser: Any) -> None:
    for locale, words in (("ja-JP", "このリンクは壊れています"), ("en-GB", "This link is damaged")):
        ctx = _phone(browser, locale)
        try:
            page = ctx.new_page()
            r = page.goto(pilot["url"] + "/a/not-a-token")
            assert r is not None and r.status == 404
            assert words in page.locator("#notice").inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        finally:
            ctx.close()

