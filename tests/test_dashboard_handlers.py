# SPDX-License-Identifier: MIT
"""How the dashboard's handlers are built: each a function at module level, and who may call it
declared as a dependency (sim/server/web/deps.py) rather than remembered in its body, so a new
page or form cannot forget the sign-in, the CSRF token, the household or the role check; and a
refusal answered with the API's status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.routing import APIRoute

from mimamori import alerts, notify, roles
from mimamori import households as hh
from mimamori.api import Api
from mimamori.storage import Database, Store
from mimamori.web import deps, routes
from mimamori.web.page import Refused

# what anyone may open: signing in, the language, the style sheet
PUBLIC = {"/", "/signin", "/in/{token}", "/signout", "/lang", "/static/style.css"}


def _routes() -> list[APIRoute]:
    found = [r for part in routes.ROUTERS for r in part.routes if isinstance(r, APIRoute)]
    assert len(found) > 20
    return found


def _calls(route: APIRoute) -> set[Callable[..., Any]]:
    """Every dependency the route runs, however deep."""
    out: set[Callable[..., Any]] = set()
    todo = list(route.dependant.dependencies)
    while todo:
        d = todo.pop()
        if d.call is not None:
            out.add(d.call)
        todo += d.dependencies
    return out


def _acts(calls: set[Callable[..., Any]]) -> bool:
    return any(getattr(c, "__qualname__", "").startswith("acting.") for c in calls)


@pytest.mark.parametrize("route", _routes(), ids=lambda r: f"{min(r.methods)} {r.path}")
def test_each_handler_is_a_module_level_function_with_its_checks_as_dependencies(
        route: APIRoute) -> None:
    fn = route.endpoint
    assert fn.__qualname__ == fn.__name__, f"{fn.__qualname__} is nested in another function"
    assert getattr(sys.modules[fn.__module__], fn.__name__) is fn
    calls, post = _calls(route), "POST" in (route.methods or ())
    if post:
        assert deps.checked in calls or deps.posted in calls, "a POST without the CSRF check"
    if route.path not in PUBLIC:
        assert deps.signed_in in calls, "a page without the session check"
    if route.path.startswith("/coordinator"):
        assert deps.coordinator in calls, "a coordinator page open to watchers"
    if route.path.startswith("/h/"):
        assert deps.viewing in calls or _acts(calls), "a household without the watcher check"
    if route.path.startswith("/h/") and post:
        assert _acts(calls), "a household action without the role check"


REFUSALS = [(lambda: hh.NotFound("no household 'x'"), 404),
            (lambda: roles.Forbidden("a neighbour may not pause"), 403),
            (lambda: alerts.Conflict("claimed by Aiko"), 409),
            (lambda: hh.Exists("household 'x' exists already"), 409),
            (lambda: ValueError("bad input"), 400)]


@pytest.mark.parametrize(("make", "status"), REFUSALS)
def test_a_refusal_gets_the_same_status_from_the_api_and_from_a_page(tmp_path, make, status):
    """One mapping (alerts.refusal_status): a form and the API refusing the same thing answer
    alike (a taken id was 409 from the API and 400 from a page)."""
    db = Database(str(tmp_path / "s.db"))
    api = Api(Store(db), lambda: 0.0, notify.NotifierSettings())

    def refuse(c: Any, now_ms: int) -> None:
        raise make()

    with pytest.raises(HTTPException) as got:
        api.run(refuse, write=True)
    assert got.value.status_code == status
    page = SimpleNamespace(web=SimpleNamespace(db=db), now_ms=0,
                           refuse=lambda e: Refused(403, "forbidden", str(e)))
    with pytest.raises(Refused) as shown, deps.writing(page):
        raise make()
    assert shown.value.status == status
    with pytest.raises(RuntimeError), deps.writing(page):  # a fault stays a fault (5xx)
        raise RuntimeError("the disk is full")
