# SPDX-License-Identifier: MIT
"""The dashboard's pages and form actions (server-rendered HTML, Jinja2 templates), mounted on
the server by `install(app)`.

    signin.py       /, /signin, /in/{token}, /signout, /lang, /static/style.css
    household.py    /home, /h/{hid} and its chart, and every form action in a household
    coordinator.py  /coordinator and its bulbs, watchers, report and invitations
    deps.py         what a handler asks for: the session, the checked form, the household,
                    the role (FastAPI dependencies)
    page.py         the request's Page, the shared Web, Refused and its exception handler

Every POST needs the session's CSRF token. Anonymous visitors are sent to /signin (GET) or get
401 (POST); a watcher asking for a household they do not watch, or for a coordinator page, gets
403. What a watcher may change is their role's line in sim/server/roles.py (a 403 page
otherwise); the signed-in coordinator acts as "coordinator". Claim and resolve go through the
alert side's own functions (alerts.claim/resolve); rules, pauses, absences, tiers and roles
through sim/server/changes.py, which records each change and tells the other watchers, so
e-mail links, the API, the CLI and the dashboard are one flow.

It must never answer with a 500, never act on a GET (the language cookie aside), and never show
a household to someone who does not watch it.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from mimamori import notify
from mimamori.web import coordinator, household, signin
from mimamori.web.coordinator import OVERVIEW_PAGE
from mimamori.web.page import LANG_COOKIE, Refused, Web, _env, answer_refusal

# what others read from here: the link pages (api.py) share the language cookie and templates
__all__ = ["LANG_COOKIE", "OVERVIEW_PAGE", "ROUTERS", "_env", "install", "router"]

ROUTERS = (signin.router, household.router, coordinator.router)
router = APIRouter(include_in_schema=False)
for part in ROUTERS:
    router.include_router(part)


def install(app: FastAPI) -> None:
    """Mount the dashboard on the server (after api.install, which sets app.state.notify)."""
    app.state.web = Web(app.state.store, app.state.clock,
                        lambda: getattr(app.state, "notify", None) or notify.Config())
    app.add_exception_handler(Refused, answer_refusal)
    app.include_router(router)
