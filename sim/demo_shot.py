# SPDX-License-Identifier: MIT
"""Screenshots of the dashboard after the demo (`python -m sim.demo --screenshot DIR`): Chromium
(/usr/bin/chromium) driven by Playwright signs in with the coordinator's one-time link, then
photographs the coordinator overview and the household where the resident fell.

It must never change anything on the server beyond that one sign-in (it only reads pages).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
SIZE: Any = {"width": 1280, "height": 800}  # playwright's ViewportSize


def screenshots(url: str, link: str, out: Path, household: str) -> list[Path]:
    """demo_coordinator.png and demo_household.png in `out` (what a 1280x800 screen shows)."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            ctx = b.new_context(viewport=SIZE, locale="en-GB")
            ctx.set_default_timeout(20_000)
            page = ctx.new_page()
            page.goto(link)
            page.wait_for_selector("#sign-in")
            page.click("#sign-in")
            page.wait_for_url(re.compile(r"/coordinator$"))
            page.goto(url + "/lang?to=en&next=/coordinator")
            page.wait_for_selector("#households")
            shots.append(out / "demo_coordinator.png")
            page.screenshot(path=str(shots[-1]))
            page.goto(f"{url}/h/{household}")
            page.wait_for_selector("svg.chart")
            shots.append(out / "demo_household.png")
            page.screenshot(path=str(shots[-1]))
        finally:
            b.close()
    return shots
