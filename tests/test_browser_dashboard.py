# SPDX-License-Identifier: MIT
"""The dashboard in a real browser: Chromium (Debian's, /usr/bin/chromium) driven by Playwright,
against the real server process on loopback serving a sample pilot (sim/sample_pilot.py)
at a fixed instant.

Two watchers of one household sign in through their invitation links in separate browser
contexts: one claims the open alert and the other sees who is going to check, then resolves it;
a household is paused; the language is switched; the coordinator downloads the pilot report.
Screenshots of each page at phone (390x844) and desktop (1280x800) size go to tests/artifacts/.
Waits are on selectors and URLs, never on sleeps.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from mimamori import cli
from mimamori.web import views
from sim import sample_pilot as sample
from sim.server_process import ServerProcess
from tests.conftest import ARTIFACTS, needs_chromium

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
pytestmark = needs_chromium


def _cli(db: str, now: float, *argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["--db", db, "--clock", f"fixed:{now:.0f}", *argv]) == 0
    return out.getvalue()


def _link(text: str) -> str:
    m = re.search(r"(http://\S+/in/\S+)", text)
    assert m, text
    return m.group(1)


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = str(tmp_path_factory.mktemp("dash") / "pilot.db")
    s = sample.build(db)
    srv = ServerProcess(db, clock=f"fixed:{s.now:.0f}", env={"MIMAMORI_SWEEP_S": "0"})
    srv.env["MIMAMORI_PUBLIC_URL"] = srv.url
    with srv:
        yield {"url": srv.url, "db": db, "sample": s,
               "invite": lambda name: _link(_cli(db, s.now, "dashboard", "invite",
                                                 s.watchers[name], "--url", srv.url)),
               "coordinator": lambda: _link(_cli(db, s.now, "coordinator", "link", "--name",
                                                 "Oshu welfare office", "--url", srv.url))}




def _context(browser: Any, size: dict[str, int], lang: str = "ja-JP") -> Any:
    ctx = browser.new_context(viewport=size, locale=lang, accept_downloads=True)
    ctx.set_default_timeout(15_000)
    return ctx


def _sign_in(page: Any, link: str, shot: str = "") -> None:
    page.goto(link)
    page.wait_for_selector("#sign-in")
    if shot:
        _shot(page, shot)
    page.click("#sign-in")
    page.wait_for_url(re.compile(r"/(home|coordinator)$"))


def _shot(page: Any, name: str, full: bool = True) -> Path:
    """tests/artifacts/dashboard_<name>.png: the whole page, or what the screen shows."""
    path = ARTIFACTS / f"dashboard_{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path


def test_coordinator_sees_every_household_and_downloads_the_report(pilot: dict,
                                                                   browser: Any) -> None:
    ctx = _context(browser, DESKTOP)
    try:
        page = ctx.new_page()
        _sign_in(page, pilot["coordinator"]())
        page.wait_for_selector("#households")
        rows = page.locator("#households [data-household]")
        assert rows.count() == 4
        assert page.locator('#households [data-household="yamada"] [data-status="late"]'
                            ).is_visible()
        assert page.locator('#households [data-household="tanaka"] [data-status="paused"]'
                            ).is_visible()
        _shot(page, "coordinator_desktop", full=False)
        _shot(page, "coordinator_desktop_full")
        with page.expect_download() as dl:
            page.click("#csv")
        text = Path(dl.value.path()).read_text(encoding="utf-8-sig")
        table = [dict(zip(views.CSV_COLUMNS, r)) for r in csv.reader(io.StringIO(text))][1:]
        assert [r["household"] for r in table] == ["sato", "suzuki", "tanaka", "yamada",
                                                   "合計"]  # the reader's language: Japanese
        suzuki = next(r for r in table if r["household"] == "suzuki")
        assert int(suzuki["false_alerts"]) == 1
        page.click("#to-bulbs")
        bulb = page.locator('#bulbs [data-bulb="suzuki-toilet"]').inner_text()
        assert "dBm" in bulb
        page.goto(pilot["url"] + "/coordinator")
        assert dl.value.suggested_filename.endswith(".csv")
        page.set_viewport_size(PHONE)
        page.reload()
        _shot(page, "coordinator_phone")
        # the coordinator reads a household's page too (read-only: no claim buttons)
        page.goto(pilot["url"] + "/h/yamada")
        page.wait_for_selector("svg.chart")
        assert page.locator("button[name=claim]").count() == 0
    finally:
        ctx.close()


def test_watchers_claim_resolve_pause_and_switch_language(pilot: dict, browser: Any) -> None:
    aiko = _context(browser, DESKTOP)
    ken = _context(browser, PHONE)
    try:
        a, k = aiko.new_page(), ken.new_page()
        a.goto(pilot["url"] + "/signin")
        _shot(a, "signin_desktop")
        a.goto(pilot["invite"]("Aiko"))
        a.wait_for_selector("#sign-in")
        _shot(a, "confirm_desktop")
        a.click("#sign-in")
        a.wait_for_url(re.compile(r"/home$"))
        # Aiko's language is English; she watches two households with one address
        assert a.locator("html").get_attribute("lang") == "en"
        homes = a.locator("[data-household]")
        assert sorted(homes.evaluate_all("els => els.map(e => e.dataset.household)")) == [
            "sato", "suzuki"]
        sato = a.locator('[data-household="sato"]')
        assert sato.locator('[data-status="alert"]').is_visible()
        assert "Alert" in sato.locator(".status").inner_text()
        _shot(a, "home_desktop")

        _sign_in(k, pilot["invite"]("Ken"), shot="confirm_phone")
        assert k.locator("html").get_attribute("lang") == "ja"
        _shot(k, "home_phone")

        # the household page: the chart is drawn, with its legend in words
        a.goto(pilot["url"] + "/h/suzuki")
        a.wait_for_selector("svg.chart")
        assert a.locator("svg.chart rect.on").count() > 20
        assert a.locator("svg.chart rect.uncertain").count() > 0  # late reports drawn as ranges
        assert "time not known" in a.locator(".legend").inner_text()
        _shot(a, "household_suzuki_desktop")
        a.goto(pilot["url"] + "/h/sato")
        a.wait_for_selector("svg.chart")
        _shot(a, "household_desktop", full=False)  # the README's picture
        _shot(a, "household_desktop_full")

        # Aiko claims from her home page; Ken, on his phone, sees who is going to check
        a.goto(pilot["url"] + "/home")
        box = a.locator('[data-household="sato"] [data-alert]')
        box.locator("button[name=claim]").click()
        a.wait_for_selector('[data-household="sato"] [data-state="claimed"]')
        assert "Aiko is going to check" in a.locator('[data-household="sato"]').inner_text()
        k.goto(pilot["url"] + "/h/sato")
        claimed = k.locator(".household [data-alert] .claimed")
        assert "Aiko さんが確認に行きます" in claimed.inner_text()
        _shot(k, "household_phone")

        # Ken records the outcome; Aiko sees it
        alert = k.locator(".household [data-alert]")
        alert.locator("details.resolve summary").click()
        alert.locator("input[name=outcome][value=fine]").check()
        alert.locator("button[name=resolve]").click()
        k.wait_for_selector('#alerts [data-state="resolved"]')
        a.goto(pilot["url"] + "/h/sato")
        a.wait_for_selector('#alerts [data-state="resolved"]')
        assert "Ken recorded: All fine" in a.locator("#alerts").inner_text()
        assert a.locator(".household [data-alert]").count() == 0

        # Aiko pauses the household for a planned absence (today to in three days)
        a.fill("input[name=last]", "2026-03-19")
        a.fill("input[name=reason]", "visiting family")
        a.click("button[name=add-pause]")
        a.wait_for_selector("#pauses [data-pause]")
        assert "2026-03-16 – 2026-03-19" in a.locator("#pauses").inner_text()
        assert a.locator('.household [data-status="paused"]').is_visible()
        assert "Paused" in a.locator(".household .status").inner_text()

        # one tap switches the language, and it stays switched on the next page
        a.click("a.lang")
        a.wait_for_selector('html[lang="ja"]')
        assert "お休み中" in a.locator(".household .status").inner_text()
        a.goto(pilot["url"] + "/home")
        assert a.locator("html").get_attribute("lang") == "ja"
        assert "見守っている家" in a.locator("h1").inner_text()
        a.click("a.lang")
        a.wait_for_selector('html[lang="en"]')

        # phone-size screenshots of the pages Aiko saw
        ph = aiko.new_page()
        ph.set_viewport_size(PHONE)
        for path, name in (("/home", "home_phone_en"), ("/h/suzuki", "household_suzuki_phone")):
            ph.goto(pilot["url"] + path)
            _shot(ph, name)
        ph.goto(pilot["url"] + "/signin")
        _shot(ph, "signin_phone")
    finally:
        aiko.close()
        ken.close()


def test_pages_stay_usable_with_twice_the_text_size_on_a_phone(pilot: dict,
                                                                browser: Any) -> None:
    ctx = browser.new_context(viewport=PHONE, bypass_csp=True)  # to enlarge the text
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        _sign_in(page, pilot["invite"]("Aiko"))
        for path in ("/home", "/h/sato", "/h/suzuki"):
            page.goto(pilot["url"] + path)
            page.add_style_tag(content="html { font-size: 225% !important; }")
            page.wait_for_selector(".status")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width} px wide: it scrolls sideways"
            assert page.locator(".status").first.is_visible()
        _shot(page, "household_suzuki_phone_large_text", full=False)
    finally:
        ctx.close()
