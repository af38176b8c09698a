# SPDX-License-Identifier: MIT
"""Roles in a real browser (Chromium, phone size), against the real server process serving the
sample pilot: a neighbour sees the household but no rule, order or role controls, and may add
a one-day pause; the family sees and uses them, and the change shows, in Japanese, in the
neighbour's change log. Screenshots go to tests/artifacts/dashboard_roles_*.png.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import needs_chromium
from tests.test_browser_dashboard import (  # noqa: F401 (fixtures)
    PHONE,
    _context,
    _shot,
    _sign_in,
    pilot,
)

pytestmark = needs_chromium


def test_a_neighbour_on_a_phone_sees_no_rule_or_tier_controls(pilot: dict,  # noqa: F811
                                                             browser: Any) -> None:
    nao = _context(browser, PHONE)
    aiko = _context(browser, PHONE, "en-GB")
    try:
        n = nao.new_page()
        _sign_in(n, pilot["invite"]("Nao"))
        n.goto(pilot["url"] + "/h/sato")
        n.wait_for_selector("#settings")
        assert n.locator("html").get_attribute("lang") == "ja"
        assert n.locator('form[action="/h/sato/settings"]').count() == 0
        assert n.locator("input[name=activity_rule], input[name=no_activity_h], "
                         "input[name=escalate_1], select[name=tier]").count() == 0
        assert n.locator("select[name=brightness]:enabled").count() == 0
        assert n.locator("select[name=role]").count() == 0
        assert n.locator('form[action="/h/sato/absences"], #add-watcher').count() == 0
        assert "ご家族とコーディネーター" in n.locator("#settings").inner_text()
        order = n.locator("ol.order").inner_text()
        assert "近所の方" in order and "家族" in order  # everyone's role, in words
        assert "1日まで" in n.locator("#pauses .pause-limit").inner_text()
        assert n.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        _shot(n, "roles_neighbour_phone")

        # a one-day pause is hers to set
        n.fill("input[name=first]", "2026-03-18")
        n.fill("input[name=last]", "2026-03-18")
        n.click("button[name=add-pause]")
        n.wait_for_selector('#pauses [data-pause]')
        assert "2026-03-18 – 2026-03-18" in n.locator("#pauses").inner_text()

        a = aiko.new_page()
        _sign_in(a, pilot["invite"]("Aiko"))
        a.goto(pilot["url"] + "/h/sato")
        a.wait_for_selector('form[action="/h/sato/settings"]')
        assert a.locator("select[name=tier]").count() >= 3
        assert a.locator("select[name=role]").count() >= 3
        assert "Nao (neighbour): Pause added: 2026-03-18" in a.locator("#changes").inner_text()
        a.fill("input[name=no_activity_h]", "12")
        a.click("button[name=save-settings]")
        a.wait_for_selector('#changes [data-kind="settings"]')
        assert a.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        _shot(a, "roles_family_phone")
        a.locator("#changes").scroll_into_view_if_needed()
        a.locator("ol.order").screenshot(path=str(_shot(a, "roles_family_phone").with_name(
            "dashboard_roles_family_order.png")))

        n.reload()
        n.wait_for_selector('#changes [data-kind="settings"]')
        change = n.locator('#changes [data-kind="settings"]').inner_text()
        assert "Aiko（家族）" in change or "Aiko (家族)" in change
        assert "24 → 12" in change
    finally:
        nao.close()
        aiko.close()
