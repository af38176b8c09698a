# SPDX-License-Identifier: MIT
"""One request to the dashboard: who asks, in which language, and how it is answered.

    Web        the shared objects (store, clock, notifier config, templates, rate limits),
               made once by routes.install and kept as app.state.web
    Page       one request's context: the session (a new anonymous one when there is none),
               the language, the clock reading; render(), redirect() and the headers every
               answer carries
    Refused    raised anywhere in a handler or a dependency (deps.py) to answer with a page,
               a 303 to /signin, or a status; `answer_refusal` is the one exception handler
    PageRoute  the dashboard's route class: an unexpected failure becomes Refused(503)

It must never answer with a 500 or a stack trace, and never set a session cookie it did not
sign.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from mimamori import clock as clocks
from mimamori import households as hh
from mimamori import notify, roles
from mimamori.clock import DAY_MS, to_s
from mimamori.storage import Store
from mimamori.web import auth, chart, i18n

log = logging.getLogger("mimamori.web")
ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
LANG_COOKIE = "mimamori_lang"


class Refused(Exception):
    """Answer with a page (or redirect) instead of going on."""

    def __init__(self, status: int, key: str, detail: str = "", **kw: Any):
        super().__init__(key)
        self.status, self.key, self.detail, self.kw = status, key, detail, kw


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "svg"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals["legend"] = chart.legend_svg
    return env


class Web:
    """What every handler shares: made once per app (routes.install), reached through
    deps.web_of (request.app.state.web)."""

    def __init__(self, store: Store, clock: clocks.Clock, cfg: Callable[[], notify.Config]):
        self.store, self.db, self.clock, self.cfg = store, store.db, clock, cfg
        auth.open_web(self.db)
        self.key = auth.session_key(self.db)
        self.env = _env()
        # kept in the database: every instance behind the load balancer counts the same hits
        self.signin_ip = auth.RateLimit(self.db, "signin_ip", 10, 900)  # per client address
        self.signin_email = auth.RateLimit(self.db, "signin_email", 3, 3600)  # links to one
        self.link_ip = auth.RateLimit(self.db, "link_ip", 20, 900)  # link attempts per address


class Page:
    """One request's context: the session, the language, the clock, and how to answer."""

    def __init__(self, web: Web, request: Request):
        self.web, self.request = web, request
        self.now_ms = clocks.ms(web.clock)
        raw = request.cookies.get(auth.COOKIE)
        s = auth.load_session(web.key, raw, self.now_ms)
        if s is not None and not auth.session_live(web.db, s, self.now_ms):
            s = None  # signed out, removed, or the address changed: a new anonymous session
        self.new_cookie = s is None
        self.session = s or auth.new_session(self.now_ms)
        self.me: dict[str, Any] | None = None  # who is signed in, for the page's header
        self.lang = i18n.pick(request.cookies.get(LANG_COOKIE) or self._own_lang())
        self.t = i18n.t(self.lang)

    def _own_lang(self) -> str:
        if self.session.role != auth.WATCHER:
            return ""
        with self.web.db.read() as c:
            try:
                return hh.watcher(c, self.session.subject).lang
            except hh.NotFound:
                return ""

    def finish(self, resp: Response) -> Response:
        if self.new_cookie:
            self.set_session(resp, self.session)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"  # sign-in tokens stay out of logs
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    def set_session(self, resp: Response, s: auth.Session) -> None:
        resp.set_cookie(auth.COOKIE, auth.dump_session(self.web.key, s),
                        max_age=int(to_s(auth.SESSION_DAYS * DAY_MS)), path="/", httponly=True,
                        samesite="lax", secure=self.request.url.scheme == "https")

    def render(self, template: str, status: int = 200, **kw: Any) -> Response:
        ctx = {"t": self.t, "lang": self.lang, "session": self.session,
               "csrf": self.session.csrf, "me": self.me, "path": self.request.url.path,
               "now_ms": self.now_ms, "when": self.when, "ago": self.ago,
               "hhmm": lambda ms, tz: f"{i18n.local(ms, tz):%H:%M}",
               "duration": lambda ms: i18n.duration(ms, self.lang), **kw}
        html = self.web.env.get_template(template).render(**ctx)
        return self.finish(HTMLResponse(html, status_code=status))

    def when(self, ms: float | None, tz: str) -> str:
        return i18n.when(ms, tz, self.now_ms, self.lang)

    def ago(self, ms: float | None) -> str:
        return i18n.ago(ms, self.now_ms, self.lang)

    def refused(self, r: Refused) -> Response:
        if r.status == 303:
            return self.finish(RedirectResponse(r.detail or "/signin", status_code=303))
        return self.render("message.html", status=r.status, title=self.t(r.key, **r.kw),
                           text=r.detail, back=True)

    def redirect(self, to: str) -> Response:
        return self.finish(RedirectResponse(to, status_code=303))

    def refuse(self, e: roles.Forbidden) -> Refused:
        """A role's refusal as a page in the reader's language."""
        if e.action == "pause" and e.limit is not None:
            return Refused(403, "pause_limit", "", n=e.limit)
        return Refused(403, "not_allowed", "", role=self.t(f"role_{e.role}"))


# what the server's own handlers answer (app.py): a bad path parameter, a body cut short
_PASS = (Refused, HTTPException, RequestValidationError, ClientDisconnect)


class PageRoute(APIRoute):
    """A dashboard route: any failure that is not a refusal is logged and shown as a 503 page
    (the transaction was rolled back), never a 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _PASS:
                raise
            except Exception:
                log.exception("dashboard failed on %s %s", request.method, request.url.path)
                raise Refused(503, "error") from None

        return run


async def answer_refusal(request: Request, exc: Exception) -> Response:
    """The exception handler for Refused: the page in the reader's language (with the session
    cookie a new visitor gets), or the redirect to /signin."""
    assert isinstance(exc, Refused)
    p: Page | None = getattr(request.state, "page", None)
    if p is None:  # refused before the page was made (deps.page makes it first)
        p = await run_in_threadpool(Page, request.app.state.web, request)
    return await run_in_threadpool(p.refused, exc)
