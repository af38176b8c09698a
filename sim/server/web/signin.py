# SPDX-License-Identifier: MIT
"""Signing in and out, the language toggle and the style sheet.

    GET  /                          -> /home (watcher), /coordinator, or /signin
    GET  /signin   POST /signin     ask for a one-time link by e-mail (rate-limited)
    GET  /in/{token} POST /in/{token}   a sign-in link: confirm page, then sign in
    POST /signout
    GET  /lang?to=en&next=/path     language toggle (a cookie)
    GET  /static/style.css

It must never tell a stranger whether an e-mail address is known, never spend a link on a
GET, and never redirect off the site.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from mimamori import households as hh
from mimamori import notify
from mimamori.clock import DAY_MS, to_s
from mimamori.web import auth, i18n
from mimamori.web.deps import Checked, PageDep, client, local_path
from mimamori.web.page import LANG_COOKIE, STATIC, Page, PageRoute

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@router.get("/")
def root(p: PageDep) -> Response:
    role = p.session.role
    return p.redirect("/home" if role == auth.WATCHER else
                      "/coordinator" if role == auth.COORDINATOR else "/signin")


@router.get("/signin")
def signin_form(p: PageDep) -> Response:
    return p.render("signin.html", sent=False)


@router.post("/signin")
def signin_send(request: Request, p: PageDep, form: Checked) -> Response:
    web = p.web
    email = form.get("email", "").strip().lower()[:200]
    if not web.signin_ip.allow(client(request)) or (
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


def _bad_link(p: Page, e: auth.BadLink) -> Response:
    """Only failed link attempts count against an address: a genuine invitation is never
    refused because others share the address (a proxy, a care home's network)."""
    if not p.web.link_ip.allow(client(p.request)):
        return p.render("message.html", status=429, title=p.t("too_many"), text="",
                        back=False)
    return p.render("message.html", status=404, title=p.t(f"link_{e}"), text="",
                    back=False, signin=True)


@router.get("/in/{token}")
def link_page(request: Request, token: str, p: PageDep) -> Response:
    with p.web.db.read() as c:
        try:
            role, subject = auth.peek_link(c, token[:200], p.now_ms)
        except auth.BadLink as e:
            return _bad_link(p, e)
        who = auth.describe(c, role, subject)
    if "lang" in who and not request.cookies.get(LANG_COOKIE):
        p.lang, p.t = who["lang"], i18n.t(who["lang"])
    return p.render("confirm.html", who=who, token=token)


@router.post("/in/{token}")
def link_use(token: str, p: PageDep, form: Checked) -> Response:
    bad: auth.BadLink | None = None
    with p.web.db.tx() as c:
        try:
            role, subject = auth.use_link(c, token[:200], p.now_ms)
        except auth.BadLink as e:
            bad = e
        else:
            # a fresh session (its row checked on every request) and CSRF token
            s = auth.start_session(c, p.now_ms, role, subject)
    if bad is not None:
        return _bad_link(p, bad)
    resp = RedirectResponse("/home" if role == auth.WATCHER else "/coordinator", 303)
    p.new_cookie = False
    p.set_session(resp, s)
    return p.finish(resp)


@router.post("/signout")
def signout(p: PageDep, form: Checked) -> Response:
    auth.end_session(p.web.db, p.session, p.now_ms)  # the old cookie no longer works
    resp = RedirectResponse("/signin", 303)
    p.new_cookie = False
    p.set_session(resp, auth.new_session(p.now_ms))
    return p.finish(resp)


@router.get("/lang")
def lang(request: Request, p: PageDep, to: str = "ja", next: str = "/") -> Response:
    resp = p.redirect(local_path(next))
    resp.set_cookie(LANG_COOKIE, i18n.pick(to), max_age=int(to_s(365 * DAY_MS)), path="/",
                    httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return resp


@router.get("/static/style.css")
def style() -> Response:
    return Response((STATIC / "style.css").read_bytes(), media_type="text/css",
                    headers={"Cache-Control": "max-age=3600"})
