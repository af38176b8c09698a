# SPDX-License-Identifier: MIT
"""The coordinator's overview for many homes in a real browser (Chromium, Playwright), at phone
size in Japanese and in English: the counts by state, a count used as a filter, the search,
and the pages. The sample pilot plus 40 quiet homes, served by the real server process.

Screenshots go to tests/artifacts/ (dashboard_overview_*.png); the README's picture of the
overview is dashboard_overview_desktop.png. Waits are on selectors and URLs, never sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from mimamori import households as hh
from mimamori.storage import Database
from sim import sample_pilot as sample
from sim.server_process import ServerProcess
from tests.conftest import needs_chromium
from tests.test_browser_dashboard import (
    DESKTOP,
    PHONE,
    _cli,
    _context,
    _link,
    _shot,
    _sign_in,
)

pytestmark = needs_chromium
EXTRA = 40


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = str(tmp_path_factory.mktemp("overview") / "many.db")
    s = sample.build(db)
    d = Database(db)
    with d.tx() as c:
        for i in range(EXTRA):
            hh.add_household(c, int(s.now * 1000) - 86_400_000, f"kita-{i:02d}",
                             name=f"北 {i} さん宅（衣川 {i}-1）")
    d.close()
    srv = ServerProcess(db, clock=f"fixed:{s.now:.0f}", env={"MIMAMORI_SWEEP_S": "0"})
    srv.env["MIMAMORI_PUBLIC_URL"] = srv.url
    with srv:
        yield {"url": srv.url,
               "coordinator": lambda: _link(_cli(db, s.now, "coordinator", "link", "--name",
                                                 "Oshu welfare office", "--url", srv.url))}


def _count(page: Any, state: str) -> int:
    return int(page.locator(f'[data-count="{state}"] strong').inner_text())


def _rows(page: Any) -> list[str]:
    return page.locator("#households [data-household]").evaluate_all(
        "els => els.map(e => e.dataset.household)")


def _fits(page: Any) -> bool:
    """No sideways scrolling."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_phone_counts_filter_search_and_pages(
        many: dict, browser: Any, lang: str) -> None:
    ctx = _context(browser, PHONE, "ja-JP" if lang == "ja" else "en-US")
    try:
        page = ctx.new_page()
        _sign_in(page, many["coordinator"]())
        if lang == "en":
            page.goto(many["url"] + "/lang?to=en&next=/coordinator")
            page.wait_for_url(re.compile(r"/coordinator$"))
        page.wait_for_selector("#households")
        assert page.locator("html").get_attribute("lang") == lang
        assert _count(page, "all") == 4 + EXTRA
        assert [_count(page, s) for s in ("unanswered", "checking", "late", "paused", "well")
                ] == [1, 0, 2, 1, EXTRA]
        assert _rows(page)[:4] == ["sato", "suzuki", "yamada", "tanaka"]  # most urgent first
        words = page.locator('[data-household="sato"] .now').inner_text()
        assert ("未対応" if lang == "ja" else "nobody has answered") in words
        assert _fits(page)
        _shot(page, f"overview_phone_{lang}", full=False)

        page.click('[data-count="late"]')  # a count is a filter
        page.wait_for_url(re.compile(r"state=late"))
        assert _rows(page) == ["suzuki", "yamada"]
        assert page.locator('[data-count="late"]').get_attribute("aria-current") == "page"

        page.fill("#q", "aiko")  # a watcher's name
        page.click("#search")
        page.wait_for_url(re.compile(r"q=aiko"))
        assert sorted(_rows(page)) == ["sato", "suzuki"] and _count(page, "all") == 2
        page.click("#clear")
        page.wait_for_url(re.compile(r"/coordinator$"))

        assert len(_rows(page)) == 20
        page.click('a[rel="next"]')
        page.wait_for_url(re.compile(r"page=2"))
        assert len(_rows(page)) == 20 and _fits(page)
        page.click('a[rel="next"]')
        page.wait_for_url(re.compile(r"page=3"))
        assert _rows(page) == [f"kita-{i:02d}" for i in range(36, 40)]
        assert page.locator('a[rel="next"]').count() == 0
        page.click('a[rel="prev"]')
        page.wait_for_url(re.compile(r"page=2"))
        assert _rows(page)[0] == "kita-16"
    finally:
        ctx.close()


def test_desktop_overview_for_the_readme(
        many: dict, browser: Any) -> None:
    ctx = _context(browser, DESKTOP)
    try:
        page = ctx.new_page()
        _sign_in(page, many["coordinator"]())
        page.wait_for_selector("#households")
        assert _fits(page)
        _shot(page, "overview_desktop", full=False)  # the README's picture
        page.click("#to-bulbs")
        page.wait_for_selector("#bulbs")
        assert page.locator('#bulbs [data-bulb="suzuki-toilet"]').count() == 1
        page.goto(many["url"] + "/coordinator/watchers")
        assert page.locator("#watchers-check [data-watcher]").count() > 0
    finally:
        ctx.close()
