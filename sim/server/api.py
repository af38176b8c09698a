# SPDX-License-Identifier: MIT
"""The JSON API for households, bulbs, watchers, settings, pauses and alerts, and the watchers'
link pages; `install(app)` mounts it on the server and starts the sweeper and the delivery worker.

    /api/v1/...   coordinator API: `Authorization: Bearer <token>` (`mimamori token create`)
    /a/{token}    what the links in messages open: GET shows the alert's page (templates/
                  link.html) with the actions that can be taken now (a mail scanner fetching
                  the link changes nothing), POST acts: claim, or resolve with an outcome;
                  the watcher who claimed can hand it back from either link; the invitation's
                  link confirms that mail arrives. The token is signed and good for one
                  alert, one watcher and one action (notify.make_token).

Roles (sim/server/roles.py): a token acts as the coordinator. Changes to settings, pauses,
absences and watchers may name the watcher they are made for (`?watcher=ID`, e.g. a family's
own app): that watcher's role is checked (403 otherwise), they are named in the household's
change record and the other watchers are told (sim/server/changes.py). Claim and resolve check
the claiming watcher's role. GET /api/v1/roles gives the table.

Errors use the server's shape {"error", "detail"} with 400/401/403/404/409; never a 500.

It must never act on a GET, and never let a watcher's link act on another alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mimamori import alerts, changes, listening, messages, notify, roles, sweeper, tokens
from mimamori import clock as clocks
from mimamori import households as hh
from mimamori.storage import Database, Store, site_snippet
from mimamori.web import chart, i18n, routes, views

log = logging.getLogger("mimamori.alerts")


# ---------------------------------------------------------------------------------------------
# coordinator tokens


def create_token(db: Database, name: str, now_ms: int, scope: str = "all",
                 households: list[str] | None = None, days: float | None = None) -> str:
    """A new API token (shown once; only its digest is kept): sim/server/tokens.py."""
    return tokens.create(db, name, now_ms, scope, households, days)


def _token(db: Database, h: str) -> tokens.Token | None:
    """The valid token in an Authorization header (expiry and revocation on real time, as
    they were given)."""
    if not h.startswith("Bearer "):
        return None
    return tokens.find(db, h[7:].strip(), clocks.now_ms())


_NO_TOKEN = ("send 'Authorization: Bearer <token>'; make a token with "
             "`mimamori token create NAME`")


def _gate(db: Database, scope: dict[str, Any]) -> tuple[int, str, str, dict[str, str]] | None:
    """Before the body is read: a 401 unless the request carries a valid token."""
    h = next((v.decode("latin-1") for k, v in scope.get("headers", [])
              if k == b"authorization"), "")
    t = _token(db, h)
    if t is None:
        return 401, "unauthenticated", _NO_TOKEN, {"WWW-Authenticate": "Bearer"}
    why = tokens.refusal(db, t, scope.get("method", "GET"), scope.get("path", ""),
                         scope.get("query_string", b"").decode("latin-1"))
    return None if why is None else (403, "forbidden", why, {})


# ---------------------------------------------------------------------------------------------
# bodies


class HouseholdIn(BaseModel):
    id: str
    name: str = ""
    tz: str = "Asia/Tokyo"
    settings: dict[str, Any] = Field(default_factory=dict)


class WatcherIn(BaseModel):
    name: str
    role: str = "family"
    lang: str = "ja"
    email: str | None = None
    webhook_url: str | None = None
    console: bool = False
    tier: int | None = None
    quiet_hours: str | None = Field("22:00-07:00", description="HH:MM-HH:MM or none: "
                                    "reminders and weak-evidence alerts wait until they end")


class BulbIn(BaseModel):
    id: str | None = None
    server: str | None = None


class NewBulbIn(BulbIn):
    household: str | None = Field(None, description="the household it watches over (none: "
                                  "attach it later with PUT /bulbs/{id}/household)")


class AssignIn(BaseModel):
    household: str


class PauseIn(BaseModel):
    first: str = Field(description="first paused day, YYYY-MM-DD (household time)")
    last: str = Field(description="last paused day, YYYY-MM-DD; it resumes by itself after")
    reason: str = ""


class AbsenceIn(BaseModel):
    days: str | list[str] = Field(description="weekdays, e.g. \"tue,fri\"")
    from_: str = Field(alias="from", description="HH:MM, household time")
    to: str = Field(description="HH:MM (before `from`: the next day)")
    reason: str = ""


class ClaimIn(BaseModel):
    watcher: str


class ResolveIn(BaseModel):
    watcher: str
    outcome: str = Field(description="fine | needed_help | false_alarm")
    note: str = ""
    pause: bool | None = Field(None, description="pause the household until the next switch-on "
                               "(default: yes for needed_help)")


# ---------------------------------------------------------------------------------------------
# the router


def _status(home: hh.Household, c: Any, store: Store) -> dict[str, Any]:
    return {**{k: v for k, v in home.__dict__.items() if k != "settings"},
            "settings": hh.settings_json(home.settings),
            "watchers": _watchers(c, home.id),
            "bulbs": [{k: v for k, v in d.__dict__.items() if k != "key"}
                      for d in store.devices(home.id)],
            "pauses": [p.__dict__ for p in hh.pauses(c, home.id)],
            "alerts": [alerts.public(c, a) for a in alerts.list_alerts(c, home.id,
                                                                         active_only=True)]}


def _bulb_status(store: Store, did: str, since: int | None, now: int) -> dict[str, Any]:
    """GET /bulbs/{id}: the bulb without its key, its signal on the one scale
    (firmware/quality.py), and with `since` the records stored from then on: how many, whether
    a power-on is among them, and the newest link record that connected."""
    from mimamori.web.views import device_health
    from mimamori_firmware import quality, record

    dev = store.device(did)
    if dev is None:
        raise HTTPException(404, f"no bulb {did!r}: see `mimamori device list`")
    h = device_health(store, did, now)
    row = quality.level(h.dbm, h.late_7d, h.visits_7d)
    out: dict[str, Any] = {
        **{k: v for k, v in dev.__dict__.items() if k != "key"}, "now_ms": now,
        "signal": {"dbm": h.dbm, "late": h.late_7d, "reports": h.visits_7d,
                   "level": row and row[3], "bars": row and row[2],
                   "words": row and {"ja": row[4], "en": row[5]}},
        "faults": h.faults}
    if since is not None:
        recs = store.records_for_device(did, since_received_ms=since)
        links = [r for r in recs if r.kind == record.K_LINK and r.arg > 0]
        out["since"] = {"records": len(recs),
                        "power_on": any(r.kind == record.K_POWER_ON for r in recs),
                        "link": None if not links else {
                            "transport": links[-1].sub, "dbm": links[-1].aux,
                            "connect_ms": links[-1].arg}}
    return out


def _watchers(c: Any, hid: str) -> list[dict[str, Any]]:
    """The household's watchers, each with confirmed_at: when they pressed "I received this"
    in the test message to their current address (None: never)."""
    seen = notify.confirmations(c, hid)
    return [{**w.public(), "confirmed_at": seen.get(w.id)} for w in hh.watchers(c, hid)]


@dataclass
class Api:
    """What the JSON API's handlers share (app.state.api): the store, the clock and the
    notifier's settings."""

    store: Store
    clock: clocks.Clock
    cfg: notify.NotifierSettings

    def run(self, fn: Callable[..., Any], write: bool) -> Any:
        """fn(cursor, now_ms) in one transaction; the store's refusals as HTTP statuses."""
        try:
            with self.store.db.tx() if write else self.store.db.read() as c:  # reads never wait
                return fn(c, clocks.ms(self.clock))
        except Exception as e:
            code = alerts.refusal_status(e)
            if code is None:  # a fault, not a refusal: the app's handler answers it
                raise
            raise HTTPException(code, str(e)) from None

    async def call(self, fn: Callable[..., Any], write: bool = True) -> Any:
        return await run_in_threadpool(self.run, fn, write)


def _api(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


ApiDep = Annotated[Api, Depends(_api)]


def auth(request: Request, api: ApiDep) -> None:
    """Every /api/v1 route (ota_api's too): a valid bearer token (401 otherwise), kept for
    _actor."""
    t = _token(api.store.db, request.headers.get("authorization", ""))
    if t is None:
        raise HTTPException(401, _NO_TOKEN, headers={"WWW-Authenticate": "Bearer"})
    request.state.token = t


def _actor(c: Any, request: Request, hid: str | None) -> changes.Actor:
    """Who makes a change: the watcher named by ?watcher= (in this household), else the
    token, as the coordinator."""
    wid = request.query_params.get("watcher")
    if wid is None:
        t = request.state.token
        return changes.Actor.coordinator(f"token:{t.name}", t.name)
    w = hh.watcher(c, wid)
    if w.removed_at is not None or (hid is not None and w.household != hid):
        raise hh.NotFound(f"watcher {wid!r} does not watch household {hid!r}")
    return changes.Actor.of(w)


router = APIRouter(prefix="/api/v1", tags=["households and alerts"],
                   dependencies=[Depends(auth)])



@router.post("/households", status_code=201, summary="Add a household")
async def add_household(api: ApiDep, body: HouseholdIn) -> dict[str, Any]:
    return await api.call(lambda c, now: _status(
        hh.add_household(c, now, body.id, body.name, body.tz, body.settings), c, api.store))


@router.get("/households", summary="All households with their next check")
async def list_households(api: ApiDep) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: [
        {**{k: v for k, v in h.__dict__.items() if k != "settings"},
         "active_alerts": len(alerts.list_alerts(c, h.id, active_only=True))}
        for h in hh.households(c)], write=False)


@router.get("/households/{hid}", summary="A household: settings, watchers, bulbs, pauses, alerts")
async def get_household(api: ApiDep, hid: str) -> dict[str, Any]:
    return await api.call(lambda c, now: _status(hh.household(c, hid), c, api.store), write=False)


@router.get("/roles", summary="What each watcher role may see and change (sim/server/roles.py)")
async def list_roles() -> list[dict[str, Any]]:
    return [{"role": x.name, "tier": x.tier, "may": [a for a in roles.ACTIONS if a in x.may],
             "pause_days": x.pause_days, "why": x.why} for x in roles.TABLE.values()]


@router.patch("/households/{hid}/settings", summary="Change alert settings (the others are told)")
async def set_settings(api: ApiDep, hid: str, body: dict[str, Any], request: Request,
                       watcher: str | None = None) -> dict[str, Any]:
    return await api.call(lambda c, now: hh.settings_json(changes.settings(
        c, now, _actor(c, request, hid), hid, body).settings))


@router.post("/households/{hid}/watchers", status_code=201,
             summary="Invite a watcher (sends a test message)")
async def invite(api: ApiDep, hid: str, body: WatcherIn, request: Request,
                 watcher: str | None = None) -> dict[str, Any]:
    def do(c: Any, now: int) -> dict[str, Any]:
        w = changes.add_watcher(c, now, _actor(c, request, hid), hid, body.name, body.role,
                                lang=body.lang, email=body.email,
                                webhook_url=body.webhook_url, console=body.console,
                                tier=body.tier, quiet_hours=body.quiet_hours)
        return {**w.public(), "webhook_secret": w.webhook_secret}
    return await api.call(do)


@router.get("/households/{hid}/watchers",
            summary="Watchers of a household (confirmed_at: when they confirmed receiving mail)")
async def list_watchers(api: ApiDep, hid: str) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: (hh.household(c, hid), _watchers(c, hid))[1],
                      write=False)


@router.patch("/watchers/{wid}", summary="Change a watcher (a new address gets a test message; "
              "a new role or tier is told to the others)")
async def update_watcher(api: ApiDep, wid: str, body: dict[str, Any], request: Request,
                         watcher: str | None = None) -> dict[str, Any]:
    def do(c: Any, now: int) -> dict[str, Any]:
        who = _actor(c, request, hh.watcher(c, wid).household)
        if who.watcher is not None and set(body) - {"role", "tier"} and who.watcher != wid:
            raise roles.Forbidden("a watcher changes another watcher's role and tier only",
                                  who.role, "roles")
        w, moved = changes.update_watcher(c, now, who, wid, body)
        if moved:
            notify.invite(c, now, hh.household(c, w.household), w, api.cfg.public_url)
        return {**w.public(), "test_message": moved}
    return await api.call(do)


@router.delete("/watchers/{wid}", status_code=204, summary="Remove a watcher")
async def remove_watcher(api: ApiDep, wid: str) -> None:
    await api.call(lambda c, now: hh.remove_watcher(c, wid, now))


@router.post("/households/{hid}/bulbs", status_code=201,
             summary="Register a bulb for the household (its key and site config, shown once)")
async def add_bulb(api: ApiDep, hid: str, body: BulbIn) -> dict[str, Any]:
    def do(c: Any, now: int) -> dict[str, Any]:
        hh.household(c, hid)
        dev = api.store.register_device(now, body.id, hid)
        hh.recheck_at(c, hid, now)
        return {"id": dev.id, "household": hid,
                "site": site_snippet(dev, body.server or api.cfg.public_url)}
    return await api.call(do)


@router.get("/households/{hid}/bulbs", summary="Bulbs of a household")
async def list_bulbs(api: ApiDep, hid: str) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: (hh.household(c, hid), [
        {k: v for k, v in d.__dict__.items() if k != "key"} for d in api.store.devices(hid)])[1],
        write=False)


@router.post("/bulbs", status_code=201,
             summary="Register a bulb, in a household or none yet (its key, shown once)")
async def register_bulb(api: ApiDep, body: NewBulbIn) -> dict[str, Any]:
    def do(c: Any, now: int) -> dict[str, Any]:
        if body.household is not None:
            hh.household(c, body.household)  # a clear 404 before any key is minted
        dev = api.store.register_device(now, body.id, body.household)
        if body.household is not None:
            hh.recheck_at(c, body.household, now)
        return {"id": dev.id, "household": dev.household,
                "site": site_snippet(dev, body.server or api.cfg.public_url)}
    return await api.call(do)


@router.get("/bulbs/{did}", summary="A bulb: its household, when it was heard, its signal, and "
            "what it sent since a time (`since`, server ms: the provisioning's first upload)")
async def get_bulb(api: ApiDep, did: str, since: int | None = None) -> dict[str, Any]:
    return await run_in_threadpool(_bulb_status, api.store, did, since, clocks.ms(api.clock))


@router.put("/bulbs/{did}/household", summary="Attach a bulb to a household (or move it)")
async def assign_bulb(api: ApiDep, did: str, body: AssignIn) -> dict[str, Any]:
    def do(c: Any, now: int) -> dict[str, Any]:
        before = hh.assign_bulb(c, did, body.household, now)
        return {"id": did, "household": body.household, "was": before}
    return await api.call(do)


@router.post("/households/{hid}/pauses", status_code=201,
             summary="Pause (planned absence; the others are told)")
async def add_pause(api: ApiDep, hid: str, body: PauseIn, request: Request,
                    watcher: str | None = None) -> dict[str, Any]:
    return await api.call(lambda c, now: changes.add_pause(
        c, now, _actor(c, request, hid), hid, hh.parse_day(body.first),
        hh.parse_day(body.last), body.reason).__dict__)


@router.get("/households/{hid}/pauses", summary="Pauses of a household")
async def list_pauses(api: ApiDep, hid: str) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: [p.__dict__ for p in hh.pauses(c, hid)], write=False)


@router.delete("/households/{hid}/pauses/{pid}", status_code=204,
               summary="End a pause early (the days already away stay paused)")
async def remove_pause(api: ApiDep, hid: str, pid: str, request: Request,
                       watcher: str | None = None) -> None:
    def do(c: Any, now: int) -> None:
        home = hh.household(c, hid)
        today = datetime.fromtimestamp(clocks.to_s(now), ZoneInfo(home.tz)).date()
        changes.end_pause(c, now, _actor(c, request, hid), hid, pid, today)
    await api.call(do)


@router.post("/households/{hid}/absences", status_code=201,
             summary="Add a recurring part-day absence (e.g. day service Tue and Fri 09-17)")
async def add_absence(api: ApiDep, hid: str, body: AbsenceIn, request: Request,
                      watcher: str | None = None) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: changes.add_absence(
        c, now, _actor(c, request, hid), hid,
        {"days": body.days, "from": body.from_, "to": body.to, "reason": body.reason}))


@router.get("/households/{hid}/absences", summary="Recurring absences (numbered from 1)")
async def list_absences(api: ApiDep, hid: str) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: list(hh.household(c, hid).settings.absences))


@router.delete("/households/{hid}/absences/{number}", summary="Remove a recurring absence")
async def remove_absence(api: ApiDep, hid: str, number: int, request: Request,
                         watcher: str | None = None) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: changes.remove_absence(
        c, now, _actor(c, request, hid), hid, number))


@router.get("/households/{hid}/placement",
            summary="The placement check of each bulb: does its room give enough signal")
async def placement(api: ApiDep, hid: str) -> list[dict[str, Any]]:
    return await api.call(lambda c, now: [
        {**p.__dict__, "words": p.words}
        for p in sweeper.placement_of(api.store, c, hh.household(c, hid), now).values()])


@router.get("/alerts", summary="Alerts, newest first")
async def list_alerts(api: ApiDep, household: str | None = None,
                      active: bool = False) -> list[dict]:
    return await api.call(lambda c, now: [alerts.public(c, a) for a in alerts.list_alerts(
        c, household, active_only=active)], write=False)


@router.get("/alerts/{aid}", summary="One alert with its history")
async def get_alert(api: ApiDep, aid: str) -> dict[str, Any]:
    return await api.call(lambda c, now: {**alerts.public(c, alerts.get(c, aid)),
                                      "events": alerts.events(c, aid)}, write=False)


@router.post("/alerts/{aid}/claim", summary="A watcher is going to check (everyone is told)")
async def claim(api: ApiDep, aid: str, body: ClaimIn) -> dict[str, Any]:
    def do(c: Any, now: int) -> dict[str, Any]:
        roles.need(hh.watcher(c, body.watcher).role, "claim")
        return alerts.public(c, alerts.claim(c, aid, body.watcher, now, api.cfg))
    return await api.call(do)


@router.post("/alerts/{aid}/release",
             summary="The watcher who claimed cannot go: the alert is open again (others told)")
async def release(api: ApiDep, aid: str, body: ClaimIn) -> dict[str, Any]:
    return await api.call(lambda c, now: alerts.public(
        c, alerts.release(c, aid, body.watcher, now, api.cfg)))


@router.post("/alerts/{aid}/resolve", summary="Record the outcome (everyone is told)")
async def resolve(api: ApiDep, aid: str, body: ResolveIn) -> dict[str, Any]:
    def do(c: Any, now: int) -> dict[str, Any]:
        roles.need(hh.watcher(c, body.watcher).role, "claim")
        return alerts.public(c, alerts.resolve(c, aid, body.watcher, body.outcome,
                                               body.note, now, api.cfg, pause=body.pause))
    return await api.call(do)


@router.post("/sweep", summary="Evaluate the due households now (normally periodic)")
async def sweep_now(api: ApiDep) -> dict[str, Any]:
    res = await run_in_threadpool(sweeper.sweep, api.store.db, clocks.ms(api.clock), api.cfg)
    return {"evaluated": res.evaluated, "failed": res.failed}


# ---------------------------------------------------------------------------------------------
# the watchers' link pages


def _current(c: Any, wid: str) -> hh.Watcher:
    """The watcher a link was made for, while they still watch: a removed watcher's links are
    dead (NotFound, a 404 page)."""
    w = hh.watcher(c, wid)
    if w.removed_at is not None:
        raise hh.NotFound("this link is no longer valid: ask the coordinator")
    return w


# what each link's POST may do: a claim link claims, a resolve link records the outcome, and
# either hands the alert back for the watcher who claimed it; the invitation's link confirms
LINK_ACTS = {"claim": ("claim", "release"), "resolve": ("resolve", "release"),
             "received": ("received",)}
LINK_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'self'; "
                "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
                "base-uri 'none'"}


class _Answer(Exception):
    """Show the link page with this notice and status instead of going on."""

    def __init__(self, status: int, key: str, **kw: Any):
        super().__init__(key)
        self.status, self.key, self.kw = status, key, kw


@functools.cache
def _link_env() -> jinja2.Environment:
    """The dashboard's templates, made once (link.html is one of them)."""
    return routes._env()


# The pages the links in messages open, rendered from the dashboard's templates
# (templates/link.html) in the watcher's language (the dashboard's language cookie, when
# set, wins): what the alert says, its state in words, and only the actions that can be taken
# now. A claim that lost the race gets a 409 page saying who claimed it; errors are pages in
# the reader's language.
links = APIRouter(tags=["watcher links"])


def _reader_lang(request: Request, w: hh.Watcher | None) -> str:
    chosen = request.cookies.get(routes.LANG_COOKIE)
    if chosen in i18n.LANGS:
        return chosen
    if w is not None:
        return i18n.pick(w.lang)
    accept = request.headers.get("accept-language", "").lower()
    return "en" if accept.startswith("en") else "ja"


def _link_render(api: Api, request: Request, lang: str, status: int = 200,
                 **kw: Any) -> HTMLResponse:
    now = clocks.ms(api.clock)
    ctx = {"t": i18n.t(lang), "lang": lang, "me": None, "csrf": "",
           "path": request.url.path, "home": None, "a": None, "notice": "",
           "warn": False, "svg": "", "action": "",
           "when": lambda ms, tz: i18n.when(ms, tz, now, lang), **kw}
    page = _link_env().get_template("link.html").render(**ctx)
    return HTMLResponse(page, status_code=status, headers=LINK_HEADERS)


def _link_error(api: Api, request: Request, lang: str, key: str, status: int) -> HTMLResponse:
    return _link_render(api, request, lang, status, notice=i18n.t(lang)(key), warn=True)


def _link_bad_link(api: Api, request: Request, e: notify.BadLink) -> HTMLResponse:
    """An expired link is still authentic: its watcher's language; else the browser's."""
    w = None
    if e.watcher:
        with api.store.db.read() as c, contextlib.suppress(hh.NotFound):
            w = hh.watcher(c, e.watcher)
    return _link_error(api, request, _reader_lang(request, w), f"a_link_{e.why}", 404)


def _link_show(api: Api, request: Request, token: str, status: int = 200, notice: str = "",
         warn: bool = False, form: dict[str, str] | None = None) -> HTMLResponse:
    now = clocks.ms(api.clock)
    try:
        with api.store.db.read() as c:
            action, aid, wid = notify.read_token(notify.link_key(c), token, now)
            w = _current(c, wid)
            lang = _reader_lang(request, w)
            if action == "received":
                at = notify.confirmed_at(c, w)
                home = hh.household(c, w.household)
                return _link_render(api, request, lang, status, action=action, token=token,
                              notice=notice, warn=warn, confirmed=None if at is None
                              else i18n.when(at, home.tz, now, lang))
            a = alerts.get(c, aid)
            home = hh.household(c, a.household)
            names = views.names(c, home.id)
            tl = sweeper.recent_timeline(c, home.id, now, views.PAGE_DAYS)
            ps = [(p.start_ms, p.end_ms) for p in hh.pauses(c, home.id)]
            opened = [x.opened_at for x in alerts.list_alerts(c, home.id, limit=50)
                      if x.audience != "coordinator"]
    except notify.BadLink as e:
        return _link_bad_link(api, request, e)
    except hh.NotFound:
        return _link_error(api, request, _reader_lang(request, None), "a_link_removed", 404)
    at = a.closed_at if a.closed_at is not None else now
    ctx = alerts.context(a, home, at)
    svg = chart.activity_svg(tl.intervals, home.tz, now, lang, pauses=ps,
                             alerts_at=opened)
    form = form or {}
    return _link_render(api, request, lang, status, action=action, token=token, a=a, home=home,
                  line=messages.what(a.rule, lang, ctx),
                  details=messages.details(a.rule, lang, ctx), mine=a.claimed_by == wid,
                  claimer=names.get(a.claimed_by or "", "?"),
                  resolver=names.get(a.resolved_by or "", "?"), notice=notice, warn=warn,
                  outcomes=alerts.OUTCOMES, chosen=form.get("outcome") or "fine",
                  note=form.get("note", ""), svg=svg)


def _link_act(api: Api, request: Request, token: str, form: dict[str, str]) -> HTMLResponse:
    now = clocks.ms(api.clock)
    lang = _reader_lang(request, None)
    try:
        with api.store.db.tx() as c:
            action, aid, wid = notify.read_token(notify.link_key(c), token, now)
            w = _current(c, wid)
            lang = _reader_lang(request, w)
            tr = i18n.t(lang)
            do = form.get("do") or action  # a form from before "do" acted as its link
            if do not in LINK_ACTS.get(action, ()):
                raise _Answer(400, "a_not_allowed")
            if do == "received":
                notify.confirm_receipt(c, wid, w.email, now)
                msg = tr("a_received_done")
            else:
                msg = _link_do(api, c, do, aid, w, form, now, lang)
    except notify.BadLink as e:
        return _link_bad_link(api, request, e)
    except hh.NotFound:
        return _link_error(api, request, lang, "a_link_removed", 404)
    except _Answer as e:  # nothing was changed: the page as it stands, and why
        return _link_show(api, request, token, e.status, i18n.t(lang)(e.key, **e.kw), warn=True,
                    form=form)
    except alerts.Conflict:  # lost a race the checks did not see: say how it stands
        return _link_show(api, request, token, 409, _link_taken(api, token, lang), warn=True)
    except ValueError:  # the note did not pass the input rules (texts.py)
        return _link_show(api, request, token, 400, i18n.t(lang)("a_bad_input"), warn=True,
                    form=form)
    return _link_show(api, request, token, notice=msg)


def _link_taken(api: Api, token: str, lang: str) -> str:
    now = clocks.ms(api.clock)
    with api.store.db.read() as c:
        _, aid, wid = notify.read_token(notify.link_key(c), token, now)
        a = alerts.get(c, aid)
        if a.state == "claimed" and a.claimed_by != wid:
            home = hh.household(c, a.household)
            return i18n.t(lang)("a_taken", name=hh.watcher(c, a.claimed_by or "").name,
                                when=i18n.when(a.claimed_at, home.tz, now, lang))
    return i18n.t(lang)("a_closed")


def _link_do(api: Api, c: Any, do: str, aid: str, w: hh.Watcher, form: dict[str, str], now: int,
        lang: str) -> str:
    """Claim, hand back or resolve, in the caller's transaction; the page's notice."""
    tr = i18n.t(lang)
    wid = w.id
    a = alerts.get(c, aid)
    home = hh.household(c, a.household)
    if do == "claim":
        if a.state == "claimed" and a.claimed_by != wid:
            raise _Answer(409, "a_taken", name=hh.watcher(c, a.claimed_by or "").name,
                          when=i18n.when(a.claimed_at, home.tz, now, lang))
        if not a.active:
            raise _Answer(409, "a_closed")
        alerts.claim(c, aid, wid, now, api.cfg)
        msg = tr("a_done_claim", name=w.name)
    elif do == "release":
        if not a.active:
            raise _Answer(409, "a_closed")
        if a.state != "claimed" or a.claimed_by != wid:
            raise _Answer(409, "a_not_allowed")
        alerts.release(c, aid, wid, now, api.cfg)
        msg = tr("a_released")
    else:
        outcome, note = form.get("outcome", ""), form.get("note", "")
        if not a.active:
            raise _Answer(409, "a_closed")
        if outcome not in alerts.OUTCOMES:
            raise _Answer(400, "a_bad_outcome")
        if outcome == "false_alarm" and not note.strip():
            raise _Answer(400, "a_note_needed")
        alerts.resolve(c, aid, wid, outcome, note, now, api.cfg,
                       pause=None if "pause" not in form  # the default
                       else form["pause"] == "yes" and outcome == "needed_help")
        msg = tr("a_done_resolve")
    return msg


@links.get("/a/{token}", response_class=HTMLResponse, summary="Confirm page of a message link")
async def link_get(token: str, request: Request, api: ApiDep) -> HTMLResponse:
    return await run_in_threadpool(_link_show, api, request, token[:400])


@links.post("/a/{token}", response_class=HTMLResponse, summary="Act on a message link")
async def link_post(token: str, request: Request, api: ApiDep) -> HTMLResponse:
    raw = (await request.body())[:4096].decode("utf-8", "replace")
    form = dict(parse_qsl(raw, keep_blank_values=True))
    return await run_in_threadpool(_link_act, api, request, token[:400], form)


# ---------------------------------------------------------------------------------------------
# mounting and the periodic work


def install(app: FastAPI, cfg: notify.NotifierSettings | None = None) -> None:
    """Mount the API and the link pages, re-evaluate households after ingest, and run the
    sweeper every MIMAMORI_SWEEP_S real seconds (default 30; a sweeper holds the households it
    claimed for MIMAMORI_SWEEP_LEASE_S, default 300) and, apart from it,
    MIMAMORI_DELIVERY_WORKERS (default 4) delivery workers that wake after each sweep: a slow
    receiver holds one worker at most until its send deadline, never the sweeper, and its
    circuit (notify.Circuits) then keeps its messages out of the others' way. Each sweeper
    round first marks that the server listens (listening.py: a long gap since the last mark is
    an outage of the server, which the rules do not count as anyone's silence), then counts the
    bulbs heard into the fleet's rhythm (a fleet silence that rhythm makes improbable is the
    server's network cut while it runs, counted alike)."""
    store: Store = app.state.store
    clock: clocks.Clock = app.state.clock
    cfg = cfg or notify.NotifierSettings.from_env()
    tokens.open_tokens(store.db)
    app.state.notify = cfg
    app.state.api = Api(store, clock, cfg)
    app.include_router(router)
    gates = getattr(app.state, "gates", None)
    if gates is not None:  # the token is checked before the body is read (guard.Guard)
        gates.append(("/api/v1/", lambda scope: run_in_threadpool(_gate, store.db, scope)))
    app.include_router(links)
    if sweeper.mark_due not in store.in_ingest:
        store.in_ingest.append(sweeper.mark_due)
    raw = os.environ.get("MIMAMORI_SWEEP_S", "30")
    try:
        interval = float(raw)
    except ValueError:
        raise ValueError(f"MIMAMORI_SWEEP_S={raw!r}: write the seconds between sweeps, e.g. 30 "
                         "(0 turns the sweeper off)") from None
    raw = os.environ.get("MIMAMORI_SWEEP_LEASE_S", str(sweeper.LEASE_MS // clocks.SECOND_MS))
    try:
        lease_ms = clocks.to_ms(float(raw))
    except ValueError:
        lease_ms = 0
    if lease_ms <= 0:
        raise ValueError(f"MIMAMORI_SWEEP_LEASE_S={raw!r}: write the seconds a sweeper holds the "
                         "households it claimed, e.g. 300")
    raw = os.environ.get("MIMAMORI_DELIVERY_WORKERS", "4")
    workers = int(raw) if raw.isascii() and raw.isdigit() else 0
    if workers < 1:
        raise ValueError(f"MIMAMORI_DELIVERY_WORKERS={raw!r}: write how many messages may be "
                         "sent at once, e.g. 4")
    inner = app.router.lifespan_context
    # a batch that stored records marked its household due (in its own transaction); the
    # evaluation runs off the request path: the batch wakes the worker, which sweeps what is
    # due (many batches of one household before it runs: one evaluation). With the sweeper
    # off (MIMAMORI_SWEEP_S=0: tools and tests that step the clock) it runs after the commit.
    wake: dict[str, Any] = {}

    def after_ingest(st: Store, dev: str, now_ms: int) -> None:
        loop, event = wake.get("loop"), wake.get("event")
        if loop is None or event is None:
            sweeper.on_ingest(st, dev, now_ms, cfg)
        else:
            loop.call_soon_threadsafe(event.set)

    hooks = getattr(app.state, "after_ingest", None)
    if hooks is not None:
        hooks.append(after_ingest)

    wakes = [asyncio.Event() for _ in range(workers)]  # a sweep ran: messages may be due

    # the server is listening: a round that finds the last mark older than deaf_after() records
    # the span it was not (listening.py), which the rules then do not count as her silence. The
    # limit is real time (DEAF_AFTER_MS, or four rounds) at the app clock's rate: a demo's
    # scaled clock runs a round's many minutes, a test's fixed one none
    born: list[tuple[float, int]] = []  # (monotonic s, app ms) of the first round

    def deaf_after(now_ms: int) -> int:
        if not born:
            born.append((time.monotonic(), now_ms))
        real_ms = clocks.to_ms(time.monotonic() - born[0][0])
        rate = (now_ms - born[0][1]) / real_ms if real_ms > clocks.SECOND_MS else 1.0
        return int(max(1.0, rate) * max(listening.DEAF_AFTER_MS, clocks.to_ms(4 * interval)))

    async def sweeping(event: asyncio.Event) -> None:  # deciding: never waits on a channel
        while True:
            event.clear()
            try:
                now_ms = clocks.ms(clock)
                after = deaf_after(now_ms)
                await run_in_threadpool(listening.mark, store.db, now_ms, after)
                # ...and whether it hears the bulbs it should (a network cut while it runs)
                await run_in_threadpool(listening.hear, store.db, now_ms, after)
                await run_in_threadpool(sweeper.sweep, store.db, now_ms, cfg,
                                        lease_ms=lease_ms)
            except Exception:
                log.exception("sweep failed; trying again next round")
            for w in wakes:
                w.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), interval)

    async def delivering(n: int) -> None:  # telling: `workers` of these, each its own sends
        while True:
            wakes[n].clear()  # a sweep from now on wakes this worker again
            try:
                got = await run_in_threadpool(notify.deliver_due, store.db, clocks.ms(clock),
                                              cfg, 20)
            except Exception:
                log.exception("delivery failed; trying again next round")
                got = {}
            if got.get("sent") or got.get("failed") or got.get("dead"):
                continue  # there may be more due right now
            try:
                await asyncio.wait_for(wakes[n].wait(), interval)
            except TimeoutError:
                pass

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            tasks: list[asyncio.Task[None]] = []
            if interval > 0:
                wake["event"] = asyncio.Event()
                wake["loop"] = asyncio.get_running_loop()
                tasks = ([asyncio.create_task(sweeping(wake["event"]))]
                         + [asyncio.create_task(delivering(i)) for i in range(workers)])
            try:
                yield state
            finally:
                wake.clear()
                for task in tasks:
                    task.cancel()

    app.router.lifespan_context = lifespan
