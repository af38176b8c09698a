# SPDX-License-Identifier: MIT
"""The dashboard's pages and form actions (server-rendered HTML, Jinja2 templates).

    GET  /                          -> /home (watcher), /coordinator, or /signin
    GET  /signin   POST /signin     ask for a one-time link by e-mail (rate-limited)
    GET  /in/{token} POST /in/{token}   a sign-in link: confirm page, then sign in
    POST /signout
    GET  /lang?to=en&next=/path     language toggle (a cookie)
    GET  /home                      a watcher's households: status, last switch-on, open alerts
    GET  /h/{hid}                   a household: chart, alerts and history, absences, settings
    GET  /h/{hid}/chart.svg         the chart alone
    POST /h/{hid}/alerts/{aid}/claim | /release (hand it back) | /resolve
    POST /h/{hid}/pauses   POST /h/{hid}/pauses/{pid}/end
    POST /h/{hid}/settings   POST /h/{hid}/bulbs/{dev}/brightness
    POST /h/{hid}/absences   POST /h/{hid}/absences/{n}/remove   (recurring part-day absences)
    POST /h/{hid}/watchers/{wid}/quiet                          (a watcher's quiet hours)
    POST /h/{hid}/watchers/{wid}/order   POST /h/{hid}/watchers/{wid}/role
    POST /h/{hid}/watchers                                      (invite: the test message)
    GET  /coordinator               households, most urgent first: counts by state (filters),
                                    a search, pages (?state=&q=&page=)
    GET  /coordinator/bulbs         the same page's bulb health, placement and pilot report
    GET  /coordinator/watchers      watchers who never signed in or never confirmed their mail
    GET  /coordinator/report.csv    every household: outcomes, status, signal (reader's language)
    POST /coordinator/invite        an invitation link for a watcher
    GET  /static/style.css

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

import logging
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mimamori import alerts, changes, messages, notify, roles, rules, status, sweeper
from mimamori import clock as clocks
from mimamori import households as hh
from mimamori import settings as bulb_settings
from mimamori.storage import Store
from mimamori.web import auth, chart, i18n, views

log = logging.getLogger("mimamori.web")
ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
LANG_COOKIE = "mimamori_lang"
MAX_FORM = 8192


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
        self.me: dict[str, Any] | None = None
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
                        max_age=auth.SESSION_DAYS * 86400, path="/", httponly=True,
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

    # -- who may do what ------------------------------------------------------------------------

    def need_signed_in(self, post: bool = False) -> None:
        if not self.session.signed_in:
            if post:
                raise Refused(401, "forbidden")
            raise Refused(303, "forbidden", "/signin")
        with self.web.db.read() as c:
            if self.session.role == auth.WATCHER:
                ws = auth.person_watchers(c, self.session.subject)
                if not ws:  # removed since signing in
                    raise Refused(403, "forbidden")
                self.me = {"name": ws[0].name, "role": auth.WATCHER, "id": ws[0].id}
            else:
                self.me = {"name": self.session.subject, "role": auth.COORDINATOR}

    def need_coordinator(self, post: bool = False) -> None:
        self.need_signed_in(post)
        if self.session.role != auth.COORDINATOR:
            raise Refused(403, "forbidden")

    def household(self, c: Any, hid: str) -> tuple[hh.Household, hh.Watcher | None]:
        """The household if this person may see it, and their watcher row in it."""
        if self.session.role == auth.COORDINATOR:
            try:
                return hh.household(c, hid), None
            except hh.NotFound:
                raise Refused(404, "not_found") from None
        w = auth.watcher_for(c, self.session, hid)
        if w is None:  # also for a household that does not exist: nothing to learn here
            raise Refused(403, "forbidden")
        return hh.household(c, hid), w

    def actor(self, c: Any, hid: str, action: str) -> tuple[hh.Household, changes.Actor]:
        """The household and who acts in it, if their role may do `action` (roles.py)."""
        home, me = self.household(c, hid)
        who = (changes.Actor.of(me) if me is not None else changes.Actor.coordinator(
            f"coordinator:{self.session.subject}", self.session.subject))
        roles.need(who.role, action)
        return home, who

    def refuse(self, e: roles.Forbidden) -> Refused:
        """A role's refusal as a page in the reader's language."""
        if e.action == "pause" and e.limit is not None:
            return Refused(403, "pause_limit", "", n=e.limit)
        return Refused(403, "not_allowed", "", role=self.t(f"role_{e.role}"))


class Web:
    def __init__(self, store: Store, clock: clocks.Clock, cfg: Callable[[], notify.Config]):
        self.store, self.db, self.clock, self.cfg = store, store.db, clock, cfg
        auth.open_web(self.db)
        self.key = auth.session_key(self.db)
        self.env = _env()
        # kept in the database: every instance behind the load balancer counts the same hits
        self.signin_ip = auth.RateLimit(self.db, "signin_ip", 10, 900)  # per client address
        self.signin_email = auth.RateLimit(self.db, "signin_email", 3, 3600)  # links to one
        self.link_ip = auth.RateLimit(self.db, "link_ip", 20, 900)  # link attempts per address


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body())[:MAX_FORM].decode("utf-8", "replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _local_path(p: str | None) -> str:
    return p if p and p.startswith("/") and not p.startswith("//") and "\\" not in p else "/"


def router(web: Web) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    def page(fn: Callable[..., Response]) -> Callable[..., Response]:
        """Run fn(page, ...) with refusals and failures turned into pages, never a 500."""
        def run(request: Request, *a: Any) -> Response:
            p = Page(web, request)
            try:
                return fn(p, *a)
            except Refused as e:
                return p.refused(e)
            except Exception:
                log.exception("dashboard failed on %s %s", request.method, request.url.path)
                return p.render("message.html", status=503, title=p.t("error"),
                                text="", back=True)
        return run

    def action(fn: Callable[..., str]) -> Callable[..., Any]:
        """A form POST: signed in, CSRF checked, fn(page, c, form, ...) -> where to go next."""
        async def run(request: Request, *a: Any) -> Response:
            form = await _form(request)

            def inner(p: Page, *a: Any) -> Response:
                p.need_signed_in(post=True)
                if not auth.csrf_ok(p.session, form.get("csrf")):
                    raise Refused(403, "bad_csrf")
                try:
                    with web.db.tx() as c:
                        to = fn(p, c, form, *a)
                        if request.url.path.startswith("/h/") and a:
                            # a claim, resolve or pause shows on the overview at once
                            status.refresh(c, a[0], p.now_ms)
                except hh.NotFound as e:
                    raise Refused(404, "not_found", str(e)) from None
                except roles.Forbidden as e:
                    raise p.refuse(e) from None
                except alerts.Conflict as e:
                    raise Refused(409, "error", str(e)) from None
                except ValueError as e:
                    raise Refused(400, "error", str(e)) from None
                return p.redirect(to)
            return await run_in_threadpool(page(inner), request, *a)
        return run

    # -- sign-in --------------------------------------------------------------------------------

    @r.get("/")
    def root(request: Request) -> Response:
        def go(p: Page) -> Response:
            role = p.session.role
            return p.redirect("/home" if role == auth.WATCHER else
                              "/coordinator" if role == auth.COORDINATOR else "/signin")
        return page(go)(request)

    @r.get("/signin")
    def signin_form(request: Request) -> Response:
        return page(lambda p: p.render("signin.html", sent=False))(request)

    @r.post("/signin")
    async def signin_send(request: Request) -> Response:
        form = await _form(request)

        def go(p: Page) -> Response:
            if not auth.csrf_ok(p.session, form.get("csrf")):
                raise Refused(403, "bad_csrf")
            email = form.get("email", "").strip().lower()[:200]
            if not web.signin_ip.allow(_client(request)) or (
                    email and not web.signin_email.allow(email)):
                return p.render("signin.html", status=429, sent=False, error=p.t("too_many"))
            with web.db.tx() as c:
                ws = auth.watchers_by_email(c, email)
                if ws:
                    w = ws[0]
                    token = auth.make_link(c, auth.WATCHER, w.id, p.now_ms, auth.EMAIL_LINK_MS)
                    notify.enqueue(c, p.now_ms, "signin", hh.household(c, w.household), w,
                                   {"signin_url": auth.link_url(web.cfg().public_url, token)})
            return p.render("signin.html", sent=True)  # the same answer for any address
        return await run_in_threadpool(page(go), request)

    def bad_link(p: Page, request: Request, e: auth.BadLink) -> Response:
        """Only failed link attempts count against an address: a genuine invitation is never
        refused because others share the address (a proxy, a care home's network)."""
        if not web.link_ip.allow(_client(request)):
            return p.render("message.html", status=429, title=p.t("too_many"), text="",
                            back=False)
        return p.render("message.html", status=404, title=p.t(f"link_{e}"), text="",
                        back=False, signin=True)

    @r.get("/in/{token}")
    def link_page(request: Request, token: str) -> Response:
        def go(p: Page) -> Response:
            with web.db.read() as c:
                try:
                    role, subject = auth.peek_link(c, token[:200], p.now_ms)
                except auth.BadLink as e:
                    return bad_link(p, request, e)
                who = auth.describe(c, role, subject)
            if "lang" in who and not request.cookies.get(LANG_COOKIE):
                p.lang, p.t = who["lang"], i18n.t(who["lang"])
            return p.render("confirm.html", who=who, token=token)
        return page(go)(request)

    @r.post("/in/{token}")
    async def link_use(request: Request, token: str) -> Response:
        form = await _form(request)

        def go(p: Page) -> Response:
            if not auth.csrf_ok(p.session, form.get("csrf")):
                raise Refused(403, "bad_csrf")
            with web.db.tx() as c:
                try:
                    role, subject = auth.use_link(c, token[:200], p.now_ms)
                except auth.BadLink as e:
                    bad = e
                else:
                    bad = None
                    # a fresh session (its row checked on every request) and CSRF token
                    s = auth.start_session(c, p.now_ms, role, subject)
            if bad is not None:
                return bad_link(p, request, bad)
            resp = RedirectResponse("/home" if role == auth.WATCHER else "/coordinator", 303)
            p.new_cookie = False
            p.set_session(resp, s)
            return p.finish(resp)
        return await run_in_threadpool(page(go), request)

    @r.post("/signout")
    async def signout(request: Request) -> Response:
        form = await _form(request)

        def go(p: Page) -> Response:
            if not auth.csrf_ok(p.session, form.get("csrf")):
                raise Refused(403, "bad_csrf")
            auth.end_session(web.db, p.session, p.now_ms)  # the old cookie no longer works
            resp = RedirectResponse("/signin", 303)
            p.new_cookie = False
            p.set_session(resp, auth.new_session(p.now_ms))
            return p.finish(resp)
        return await run_in_threadpool(page(go), request)

    @r.get("/lang")
    def lang(request: Request, to: str = "ja", next: str = "/") -> Response:
        def go(p: Page) -> Response:
            resp = p.redirect(_local_path(next))
            resp.set_cookie(LANG_COOKIE, i18n.pick(to), max_age=365 * 86400, path="/",
                            httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
            return resp
        return page(go)(request)

    @r.get("/static/style.css")
    def style() -> Response:
        return Response((STATIC / "style.css").read_bytes(), media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})

    # -- the watcher's pages --------------------------------------------------------------------

    @r.get("/home")
    def home(request: Request) -> Response:
        def go(p: Page) -> Response:
            p.need_signed_in()
            if p.session.role == auth.COORDINATOR:
                return p.redirect("/coordinator")
            with web.db.read() as c:
                mine = auth.person_watchers(c, p.session.subject)
                cards = [views.household_card(c, web.store, hh.household(c, w.household),
                                              p.now_ms) for w in mine]
                texts = {a.id: _what(c, a, card.home, p) for card in cards
                         for a in card.open_alerts}
            return p.render("home.html", cards=cards, texts=texts,
                            mine={w.household: w for w in mine})
        return page(go)(request)

    @r.get("/h/{hid}")
    def household(request: Request, hid: str) -> Response:
        def go(p: Page) -> Response:
            p.need_signed_in()
            with web.db.read() as c:
                home, me = p.household(c, hid)
                tl = sweeper.recent_timeline(c, hid, p.now_ms, views.PAGE_DAYS)
                card = views.household_card(c, web.store, home, p.now_ms, tl)
                history = _history(c, hid, me)
                events = {a.id: _events(c, a, home, p) for a in history}
                texts = {a.id: _what(c, a, home, p) for a in history}
                ps = [x for x in hh.pauses(c, hid) if x.end_ms > p.now_ms]
                ws = hh.watchers(c, hid, max_tier=3, min_tier=1)
                bulbs = web.store.devices(hid)
                placed = sweeper.placement_of(web.store, c, home, p.now_ms)
                log_ = changes.events(c, hid)
            my_role = me.role if me is not None else "coordinator"
            may = {a: roles.may(my_role, a) for a in roles.ACTIONS}
            changed = [(e, changes.describe(e, p.lang, home.tz)) for e in log_]
            svg = _chart(web, p, home, tl, history)
            rows = chart.day_rows(tl.intervals, home.tz, p.now_ms / 1000)
            return p.render("household.html", home=home, me_w=me, card=card, history=history,
                            events=events, texts=texts, pauses=ps, watchers=ws, bulbs=bulbs,
                            svg=svg, rows=rows, settings=home.settings, placed=placed,
                            numbers=NUMBER_SETTINGS, may=may,
                            placed_words={d: messages.placement_words(pl, p.lang)
                                          for d, pl in placed.items()}, my_role=my_role,
                            pause_days=roles.TABLE[my_role].pause_days, changed=changed,
                            endable={x.id for x in ps if may["end_pause"] and changes.pause_days(
                                x) <= roles.TABLE[my_role].pause_days},
                            role_choices=(roles.ROLES if my_role == "coordinator"
                                          else roles.WATCHER_ROLES),
                            today=_today(home.tz, p.now_ms), done=request.query_params.get(
                                "done", ""))
        return page(go)(request)

    @r.get("/h/{hid}/chart.svg")
    def chart_svg(request: Request, hid: str) -> Response:
        def go(p: Page) -> Response:
            p.need_signed_in()
            with web.db.read() as c:
                home, me = p.household(c, hid)
                history = _history(c, hid, me)
                tl = sweeper.recent_timeline(c, hid, p.now_ms, views.PAGE_DAYS)
            svg = _chart(web, p, home, tl, history)
            return p.finish(Response(svg, media_type="image/svg+xml"))
        return page(go)(request)

    def _mine(p: Page, c: Any, hid: str) -> tuple[hh.Household, hh.Watcher]:
        home, me = p.household(c, hid)
        if me is None:  # the coordinator reads; watchers act
            raise Refused(403, "forbidden")
        return home, me

    def _alert_of(c: Any, hid: str, aid: str) -> alerts.Alert:
        a = alerts.get(c, aid)
        if a.household != hid:
            raise hh.NotFound(f"no alert {aid!r} in this household")
        return a

    @r.post("/h/{hid}/alerts/{aid}/claim")
    async def claim(request: Request, hid: str, aid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, aid: str) -> str:
            _, me = _mine(p, c, hid)
            roles.need(me.role, "claim")
            _alert_of(c, hid, aid)
            alerts.claim(c, aid, me.id, p.now_ms, web.cfg())
            return _back(form, f"/h/{hid}") + "#alert-" + aid
        return await action(do)(request, hid, aid)

    @r.post("/h/{hid}/alerts/{aid}/release")
    async def release(request: Request, hid: str, aid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, aid: str) -> str:
            _, me = _mine(p, c, hid)
            _alert_of(c, hid, aid)
            alerts.release(c, aid, me.id, p.now_ms, web.cfg())
            return _back(form, f"/h/{hid}") + "#alert-" + aid
        return await action(do)(request, hid, aid)

    @r.post("/h/{hid}/alerts/{aid}/resolve")
    async def resolve(request: Request, hid: str, aid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, aid: str) -> str:
            _, me = _mine(p, c, hid)
            roles.need(me.role, "claim")
            _alert_of(c, hid, aid)
            outcome = form.get("outcome", "")
            alerts.resolve(c, aid, me.id, outcome, form.get("note", "")[:500], p.now_ms,
                           web.cfg(), pause=None if "pause" not in form
                           else form["pause"] == "yes" and outcome == "needed_help")
            return _back(form, f"/h/{hid}") + "#alert-" + aid
        return await action(do)(request, hid, aid)

    @r.post("/h/{hid}/pauses")
    async def add_pause(request: Request, hid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str) -> str:
            _, who = p.actor(c, hid, "pause")
            changes.add_pause(c, p.now_ms, who, hid, hh.parse_day(form.get("first", "")),
                              hh.parse_day(form.get("last", "")), form.get("reason", "")[:200])
            return f"/h/{hid}?done=saved#pauses"
        return await action(do)(request, hid)

    @r.post("/h/{hid}/pauses/{pid}/end")
    async def end_pause(request: Request, hid: str, pid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, pid: str) -> str:
            home, who = p.actor(c, hid, "end_pause")
            changes.end_pause(c, p.now_ms, who, hid, pid, _today(home.tz, p.now_ms))
            return f"/h/{hid}?done=saved#pauses"
        return await action(do)(request, hid, pid)

    @r.post("/h/{hid}/settings")
    async def settings(request: Request, hid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str) -> str:
            _, who = p.actor(c, hid, "rules")  # the family and the coordinator set these
            new: dict[str, Any] = {}
            if form.get("activity_rule"):
                new["activity_rule"] = form["activity_rule"]
            if form.get("window_start"):
                new["window_start"] = form["window_start"]
            for k in NUMBER_SETTINGS:
                if form.get(k, "").strip():
                    new[k] = _number(k, form[k])
                    if k in ("reminder_max", "learn_min_days") and new[k] == int(new[k]):
                        new[k] = int(new[k])
            if form.get("escalate_1", "").strip() or form.get("escalate_2", "").strip():
                new["escalate_h"] = [_number("escalate_1", form.get("escalate_1", "")),
                                     _number("escalate_2", form.get("escalate_2", ""))]
            changes.settings(c, p.now_ms, who, hid, new)
            return f"/h/{hid}?done=saved#settings"
        return await action(do)(request, hid)

    @r.post("/h/{hid}/absences")
    async def add_absence(request: Request, hid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str) -> str:
            _, who = p.actor(c, hid, "rules")
            days = ",".join(d for d in rules.WEEKDAYS if form.get("day_" + d))
            changes.add_absence(c, p.now_ms, who, hid, {
                "days": days, "from": form.get("from", ""), "to": form.get("to", ""),
                "reason": form.get("reason", "")[:100]})
            return f"/h/{hid}?done=saved#pauses"
        return await action(do)(request, hid)

    @r.post("/h/{hid}/absences/{number}/remove")
    async def remove_absence(request: Request, hid: str, number: int) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, number: int) -> str:
            _, who = p.actor(c, hid, "rules")
            changes.remove_absence(c, p.now_ms, who, hid, number)
            return f"/h/{hid}?done=saved#pauses"
        return await action(do)(request, hid, number)

    @r.post("/h/{hid}/watchers/{wid}/quiet")
    async def quiet(request: Request, hid: str, wid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, wid: str) -> str:
            _, me = p.household(c, hid)
            w = hh.watcher(c, wid)
            if w.household != hid or (me is not None and me.id != wid):
                raise Refused(403, "forbidden")  # your own quiet hours, or the coordinator
            hh.update_watcher(c, wid, {"quiet_hours": form.get("quiet_hours", "")})
            return f"/h/{hid}?done=saved#settings"
        return await action(do)(request, hid, wid)

    @r.post("/h/{hid}/bulbs/{dev}/brightness")
    async def brightness(request: Request, hid: str, dev: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, dev: str) -> str:
            p.actor(c, hid, "brightness")
            d = web.store.device(dev)
            if d is None or d.household != hid:
                raise hh.NotFound(f"no bulb {dev!r} in this household")
            pct = _number("brightness", form.get("brightness", ""))
            merged = bulb_settings.merge(d.settings, {"brightness": round(pct / 100, 2)})
            web.store.set_settings(dev, merged)  # joins this transaction
            return f"/h/{hid}?done=saved#settings"
        return await action(do)(request, hid, dev)

    @r.post("/h/{hid}/watchers/{wid}/order")
    async def order(request: Request, hid: str, wid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, wid: str) -> str:
            _, who = p.actor(c, hid, "tiers")
            tier = _number("order", form.get("tier", ""))
            if tier != int(tier):
                raise ValueError(f"order {form.get('tier')!r}: 1 (first), 2 or 3 (last)")
            changes.set_tier(c, p.now_ms, who, hid, wid, int(tier))
            return f"/h/{hid}?done=saved#settings"
        return await action(do)(request, hid, wid)

    @r.post("/h/{hid}/watchers")
    async def add_watcher(request: Request, hid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str) -> str:
            _, who = p.actor(c, hid, "invite")
            email = form.get("email", "").strip()
            if not email:
                raise ValueError("a watcher needs an e-mail address (alerts go there)")
            changes.add_watcher(c, p.now_ms, who, hid, form.get("name", "")[:200],
                                form.get("role", ""), lang=form.get("lang", "ja"),
                                email=email[:200])
            return f"/h/{hid}?done=saved#settings"
        return await action(do)(request, hid)

    @r.post("/h/{hid}/watchers/{wid}/role")
    async def set_role(request: Request, hid: str, wid: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], hid: str, wid: str) -> str:
            _, who = p.actor(c, hid, "roles")
            changes.set_role(c, p.now_ms, who, hid, wid, form.get("role", ""))
            return f"/h/{hid}?done=saved#settings"
        return await action(do)(request, hid, wid)

    # -- the coordinator ------------------------------------------------------------------------

    @r.get("/coordinator")
    def coordinator(request: Request) -> Response:
        """What needs action first: counts by state (each a filter), a search, one page of
        households from their status rows (nothing here builds a household's timeline)."""
        def go(p: Page) -> Response:
            p.need_coordinator()
            f = _overview_query(request)
            with web.db.read() as c:
                found, counts = status.page(c, (f["page"] - 1) * OVERVIEW_PAGE, OVERVIEW_PAGE,
                                            f["state"], f["q"])
                homes = {r.household: hh.household(c, r.household) for r in found}
                lines = [views.overview_line(c, r, homes[r.household], p.now_ms)
                         for r in found]
                texts = {a.id: _what(c, a, line.home, p) for line in lines
                         for a in line.alerts}
                people = {hid: hh.watchers(c, hid, max_tier=3, min_tier=0) for hid in homes}
            return p.render("coordinator.html", lines=lines, texts=texts, people=people,
                            paging=_paging(f, counts, len(found)), f=f,
                            signal_words=views.signal_words)
        return page(go)(request)

    @r.get("/coordinator/bulbs")
    def coordinator_bulbs(request: Request) -> Response:
        """The same page of households (same filter, search and page number): each bulb's
        health and placement, and the pilot report's figures for them."""
        def go(p: Page) -> Response:
            p.need_coordinator()
            f = _overview_query(request)
            with web.db.read() as c:
                found, counts = status.page(c, (f["page"] - 1) * OVERVIEW_PAGE, OVERVIEW_PAGE,
                                            f["state"], f["q"])
                homes = [hh.household(c, r.household) for r in found]
                both = {h.id: sweeper.placed_timeline(c, h, p.now_ms) for h in homes}
                tls = {hid: tl for hid, (tl, _) in both.items()}
                rows = views.pilot_report(c, web.store, p.now_ms, tls, homes)
                placed = {dev: pl for _, pls in both.values() for dev, pl in pls.items()}
            health = [views.bulb_health(web.store, tls[h.id], d.id, p.now_ms)
                      for h in homes for d in web.store.devices(h.id)]
            if f["page"] == 1:  # bulbs in no household yet (installers register them first)
                health += [views.bulb_health(web.store, _EMPTY, d.id, p.now_ms)
                           for d in web.store.unassigned_devices()]
            total = views.report_total(rows)
            start = min((h.created_at for h in homes), default=p.now_ms)
            return p.render("coordinator_bulbs.html", health=health, rows=rows, total=total,
                            summary=views.summary, placed=placed,
                            paging=_paging(f, counts, len(homes)), f=f,
                            period=(start, p.now_ms))
        return page(go)(request)

    @r.get("/coordinator/watchers")
    def coordinator_watchers(request: Request) -> Response:
        """The weekly check (docs/operations.md): watchers who never signed in, or never
        confirmed that our e-mail reaches them."""
        def go(p: Page) -> Response:
            p.need_coordinator()
            f = _overview_query(request)
            with web.db.read() as c:
                checks, n = views.watchers_to_check(c, (f["page"] - 1) * WATCHERS_PAGE,
                                                    WATCHERS_PAGE, f["q"])
            pages = max(1, -(-n // WATCHERS_PAGE))
            paging = {"page": f["page"], "pages": pages, "total": n,
                      "first": (f["page"] - 1) * WATCHERS_PAGE + 1,
                      "last": (f["page"] - 1) * WATCHERS_PAGE + len(checks)}
            return p.render("coordinator_watchers.html", checks=checks, paging=paging, f=f,
                            link=lambda **kw: _overview_url("/coordinator/watchers", f, **kw))
        return page(go)(request)

    @r.get("/coordinator/report.csv")
    def report_csv(request: Request) -> Response:
        def go(p: Page) -> Response:
            p.need_coordinator()
            with web.db.read() as c:
                rows = views.pilot_report(c, web.store, p.now_ms)
                now = status.page(c, 0, 1_000_000)[0]  # every household's status row
            day = datetime.fromtimestamp(p.now_ms / 1000, ZoneInfo("Asia/Tokyo")).date()
            return p.finish(Response(
                "\ufeff" + views.report_csv(rows, p.lang, {r.household: r for r in now}),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition":
                         f'attachment; filename="mimamori-pilot-report-{day}.csv"'}))
        return page(go)(request)

    @r.post("/coordinator/bulbs/{dev}/household")
    async def assign_bulb(request: Request, dev: str) -> Response:
        def do(p: Page, c: Any, form: dict[str, str], dev: str) -> str:
            p.need_coordinator(post=True)
            hh.assign_bulb(c, dev, form.get("household", "").strip(), p.now_ms)
            return "/coordinator/bulbs?done=saved#bulbs"
        return await action(do)(request, dev)

    @r.post("/coordinator/invite")
    async def invite(request: Request) -> Response:
        form = await _form(request)

        def go(p: Page) -> Response:
            p.need_coordinator(post=True)
            if not auth.csrf_ok(p.session, form.get("csrf")):
                raise Refused(403, "bad_csrf")
            send = form.get("send") == "message"
            try:
                with web.db.tx() as c:
                    w = hh.watcher(c, form.get("watcher", ""))
                    token = auth.make_link(c, auth.WATCHER, w.id, p.now_ms,
                                           auth.INVITE_DAYS * 86_400_000)
                    # MIMAMORI_PUBLIC_URL, never the request's Host header
                    url = auth.link_url(web.cfg().public_url, token)
                    if send:  # through the outbox, on the watcher's own channels
                        notify.enqueue(c, p.now_ms, "signin", hh.household(c, w.household), w,
                                       {"signin_url": url, "valid_ja": f"{auth.INVITE_DAYS}日間",
                                        "valid_en": f"{auth.INVITE_DAYS} days"})
            except (hh.NotFound, ValueError) as e:
                raise Refused(404, "not_found", str(e)) from None
            if send:
                return p.render("message.html", title=p.t("invite_sent", name=w.name),
                                text=", ".join(p.t("ch_" + ch) for ch in w.channels()),
                                back=True)
            return p.render("message.html", title=p.t("invite_made", name=w.name), text=url,
                            back=True, copy=True)
        return await run_in_threadpool(page(go), request)

    return r


_EMPTY = sweeper.Timeline(())
OVERVIEW_PAGE = 20  # households per page of the coordinator's overview
WATCHERS_PAGE = 50  # watchers per page of the weekly check
SEARCH_MAX = 100  # characters of a search kept


def _overview_query(request: Request) -> dict[str, Any]:
    """The overview's filter (a state), search and page number from the query string; anything
    else is ignored (an unknown state shows all, a bad page number the first page)."""
    qp = request.query_params
    state = qp.get("state", "")
    try:
        number = max(1, min(1_000_000, int(qp.get("page", "1"))))
    except ValueError:
        number = 1
    return {"state": state if state in status.STATES else None,
            "q": qp.get("q", "").strip()[:SEARCH_MAX], "page": number}


def _overview_url(path: str, f: dict[str, Any], **change: Any) -> str:
    """The link to the same view with `change` applied (page 1 unless a page is given)."""
    merged = {**f, "page": 1, **change}
    query = [(k, str(merged[k])) for k in ("state", "q", "page")
             if merged.get(k) and not (k == "page" and merged[k] == 1)]
    return path + ("?" + urlencode(query) if query else "")


def _paging(f: dict[str, Any], counts: dict[str, int], shown: int) -> dict[str, Any]:
    matching = sum(counts.values())
    n = counts.get(f["state"], 0) if f["state"] else matching
    first = (f["page"] - 1) * OVERVIEW_PAGE
    return {"page": f["page"], "first": first + 1 if shown else 0, "last": first + shown,
            "total": n, "matching": matching, "pages": max(1, -(-n // OVERVIEW_PAGE)),
            "counts": counts,
            "link": lambda path="/coordinator", **kw: _overview_url(path, f, **kw)}
# the numeric household settings the page offers (households.py checks each)
NUMBER_SETTINGS = ("no_activity_h", "learned_max_h", "learned_min_h", "days_per_false_alert",
                   "learn_min_days", "window_h", "on_too_long_h", "reminder_h", "reminder_max",
                   "claim_timeout_h", "digest_days", "never_heard_h", "silent_h")


def _history(c: Any, hid: str, me: hh.Watcher | None) -> list[alerts.Alert]:
    """The household's last 50 alerts as this reader may see them: a watcher (me) sees the
    family's alerts, not device health; the coordinator (me None, or a watcher whose role may
    see device health) sees all."""
    history = alerts.list_alerts(c, hid, limit=50)
    if me is None or roles.may(me.role, "device_health"):  # a coordinator watcher too
        return history
    return [a for a in history if a.audience != "coordinator"]


def _what(c: Any, a: alerts.Alert, home: hh.Household, p: Page) -> str:
    """The alert's reason in the reader's language, as it stood when it closed (or now)."""
    at = a.closed_at if a.closed_at is not None else p.now_ms
    return messages.what(a.rule, p.lang, alerts.context(a, home, at))


def _events(c: Any, a: alerts.Alert, home: hh.Household, p: Page) -> list[dict[str, Any]]:
    """The alert's history with each entry's detail line in the reader's language."""
    out = []
    for e in alerts.events(c, a.id):
        ctx = alerts.context(a, home, e["at"])
        if e["params"] and e["params"].get("switched_on") is not None:
            ctx["cleared_on"] = alerts.when_text(e["params"]["switched_on"] * 1000, home.tz,
                                                 e["at"])
        out.append({**e, "detail": messages.event_detail(e["kind"], e["params"], e["text"],
                                                         p.lang, ctx)})
    return out


def _chart(web: Web, p: Page, home: hh.Household, tl: Any, history: list[alerts.Alert]) -> str:
    with web.db.read() as cur:
        ps = [(x.start_ms / 1000, x.end_ms / 1000) for x in hh.pauses(cur, home.id)]
    opened = [a.opened_at / 1000 for a in history if a.audience != "coordinator"]
    return chart.activity_svg(tl.intervals, home.tz, p.now_ms / 1000, p.lang, pauses=ps,
                              alerts_at=opened)


def _today(tz: str, now_ms: int) -> Any:
    return datetime.fromtimestamp(now_ms / 1000, ZoneInfo(tz)).date()


def _number(key: str, text: str) -> float:
    try:
        v = float(text.strip().replace(",", "."))
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"{key}: write a number (got {text!r})")
    return v


def _back(form: dict[str, str], default: str) -> str:
    nxt = form.get("next", "")
    return _local_path(nxt) if nxt else default


def install(app: FastAPI) -> None:
    """Mount the dashboard on the server (after api.install, which sets app.state.notify)."""
    store: Store = app.state.store
    clock: clocks.Clock = app.state.clock
    web = Web(store, clock, lambda: getattr(app.state, "notify", None) or notify.Config())
    app.state.web = web
    app.include_router(router(web))

