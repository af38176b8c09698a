# SPDX-License-Identifier: MIT
"""What a dashboard handler asks for, as FastAPI dependencies (each refuses with page.Refused).

    WebDep      the shared objects (app.state.web)
    PageDep     the request's Page: session, language, clock
    SignedIn    a signed-in watcher or the coordinator (anonymous: a GET is sent to /signin,
                a POST gets 401; a watcher removed since signing in: 403)
    Coordinator the signed-in coordinator (403 for a watcher)
    Checked     the form of a POST (at most MAX_FORM bytes read) with the session's CSRF token
                checked (403 otherwise), for anyone: signing in and out
    Posted      the same, from a signed-in person (401 first, then the CSRF check)
    Viewing     a household the signed-in person may see (403 for one they do not watch,
                whether it exists or not; 404 for the coordinator)
    acting(action, watcher_only=)  a POST's household and who acts in it, if their role may
                do `action` (roles.py; 403 saying why). watcher_only: the coordinator reads,
                watchers act (claim, hand back, resolve)

A POST's checks run in this order: signed in, CSRF, the household, the role. The handler then
writes in one transaction (`writing`), where a missing row is a 404 page, a role's limit a
403, a conflict 409 and bad input 400.

It must never let a POST through without its CSRF token, and never show a household to
someone who does not watch it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request

from mimamori import alerts, changes, roles, status
from mimamori import households as hh
from mimamori.web import auth
from mimamori.web.page import Page, Refused, Web

MAX_FORM = 8192


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


WebDep = Annotated[Web, Depends(web_of)]


def page(request: Request, web: WebDep) -> Page:
    p = Page(web, request)
    request.state.page = p  # for the exception handler: the refusal in the reader's language
    return p


PageDep = Annotated[Page, Depends(page)]


async def form(request: Request) -> dict[str, str]:
    raw = (await request.body())[:MAX_FORM].decode("utf-8", "replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


Form = Annotated[dict[str, str], Depends(form)]


def signed_in(p: PageDep) -> Page:
    if not p.session.signed_in:
        if p.request.method == "POST":
            raise Refused(401, "forbidden")
        raise Refused(303, "forbidden", "/signin")
    with p.web.db.read() as c:
        if p.session.role == auth.WATCHER:
            ws = auth.person_watchers(c, p.session.subject)
            if not ws:  # removed since signing in
                raise Refused(403, "forbidden")
            p.me = {"name": ws[0].name, "role": auth.WATCHER, "id": ws[0].id}
        else:
            p.me = {"name": p.session.subject, "role": auth.COORDINATOR}
    return p


SignedIn = Annotated[Page, Depends(signed_in)]


def coordinator(p: SignedIn) -> Page:
    if p.session.role != auth.COORDINATOR:
        raise Refused(403, "forbidden")
    return p


Coordinator = Annotated[Page, Depends(coordinator)]


def _csrf(p: Page, f: dict[str, str]) -> dict[str, str]:
    if not auth.csrf_ok(p.session, f.get("csrf")):
        raise Refused(403, "bad_csrf")
    return f


def checked(p: PageDep, f: Form) -> dict[str, str]:
    return _csrf(p, f)


def posted(p: SignedIn, f: Form) -> dict[str, str]:
    return _csrf(p, f)


Checked = Annotated[dict[str, str], Depends(checked)]
Posted = Annotated[dict[str, str], Depends(posted)]


@dataclass(frozen=True)
class Access:
    """A household as the signed-in person may see it."""

    home: hh.Household
    me: hh.Watcher | None  # their watcher row in it; None for the coordinator


def access(c: Any, p: Page, hid: str) -> Access:
    """The household if this person may see it, and their watcher row in it."""
    if p.session.role == auth.COORDINATOR:
        try:
            return Access(hh.household(c, hid), None)
        except hh.NotFound:
            raise Refused(404, "not_found") from None
    w = auth.watcher_for(c, p.session, hid)
    if w is None:  # also for a household that does not exist: nothing to learn here
        raise Refused(403, "forbidden")
    return Access(hh.household(c, hid), w)


def viewing(hid: str, p: SignedIn) -> Access:
    with p.web.db.read() as c:
        return access(c, p, hid)


Viewing = Annotated[Access, Depends(viewing)]


@dataclass(frozen=True)
class Acting(Access):
    """A household and who acts in it (named in its change record)."""

    who: changes.Actor


def acting(action: str | None, watcher_only: bool = False) -> Callable[..., Acting]:
    """The dependency that lets a POST act in household {hid}: the person may see it, is its
    watcher when `watcher_only`, and their role may do `action` (None: no role check)."""

    def check(hid: str, p: SignedIn, f: Posted) -> Acting:
        with p.web.db.read() as c:
            a = access(c, p, hid)
        if a.me is None and watcher_only:  # the coordinator reads; watchers act
            raise Refused(403, "forbidden")
        who = (changes.Actor.of(a.me) if a.me is not None else changes.Actor.coordinator(
            f"coordinator:{p.session.subject}", p.session.subject))
        if action is not None:
            try:
                roles.need(who.role, action)
            except roles.Forbidden as e:
                raise p.refuse(e) from None
        return Acting(a.home, a.me, who)

    return check


@contextmanager
def writing(p: Page, hid: str | None = None) -> Iterator[Any]:
    """A form action's transaction; with `hid`, the household's overview row is refreshed in
    it (a claim, resolve or pause shows on the overview at once). What the server's functions
    refuse becomes a page, with the API's status (alerts.refusal_status): 404, 403 (a role's
    limit), 409, 400 (bad input)."""
    try:
        with p.web.db.tx() as c:
            yield c
            if hid is not None:
                status.refresh(c, hid, p.now_ms)
    except roles.Forbidden as e:  # its own page: what the role may do instead
        raise p.refuse(e) from None
    except Exception as e:  # the API's statuses
        code = alerts.refusal_status(e)
        if code is None:  # a fault, not a refusal: the app's handler answers it
            raise
        raise Refused(code, "not_found" if code == 404 else "error", str(e)) from None


def client(request: Request) -> str:
    return request.client.host if request.client else "?"


def local_path(p: str | None) -> str:
    return p if p and p.startswith("/") and not p.startswith("//") and "\\" not in p else "/"
