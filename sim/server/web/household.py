# SPDX-License-Identifier: MIT
"""A watcher's pages and what they can do in a household.

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

Who may do what is checked by the dependencies (deps.py: signed in, CSRF, the household, the
role's line in roles.py); the coordinator acts as "coordinator". Claim and resolve go through
alerts.claim/resolve; rules, pauses, absences, tiers and roles through changes.py, which
records each change and tells the other watchers.

It must never act on a GET, and never show a household to someone who does not watch it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from mimamori import alerts, changes, messages, roles, rules, sweeper
from mimamori import households as hh
from mimamori import settings as bulb_settings
from mimamori.clock import to_s
from mimamori.web import auth, chart, views
from mimamori.web.deps import (
    Acting,
    Posted,
    SignedIn,
    Viewing,
    acting,
    local_path,
    writing,
)
from mimamori.web.page import Page, PageRoute, Refused

router = APIRouter(include_in_schema=False, route_class=PageRoute)

# the numeric household settings the page offers (households.py checks each)
NUMBER_SETTINGS = ("no_activity_h", "learned_max_h", "learned_min_h", "days_per_false_alert",
                   "on_days_per_false_alert", "learn_min_days", "window_h", "on_too_long_h", "reminder_h", "reminder_max",
                   "claim_timeout_h", "digest_days", "never_heard_h", "silent_h")


# who acts in the household of a POST (deps.acting): their role may do the action named
Claiming = Annotated[Acting, Depends(acting("claim", watcher_only=True))]  # claim, resolve
Claimer = Annotated[Acting, Depends(acting(None, watcher_only=True))]  # alerts.release checks
Member = Annotated[Acting, Depends(acting(None))]  # a watcher, or the coordinator
Pausing = Annotated[Acting, Depends(acting("pause"))]
Ending = Annotated[Acting, Depends(acting("end_pause"))]
Ruling = Annotated[Acting, Depends(acting("rules"))]  # the alert rules and absences
Dimming = Annotated[Acting, Depends(acting("brightness"))]
Ordering = Annotated[Acting, Depends(acting("tiers"))]
Inviting = Annotated[Acting, Depends(acting("invite"))]
Assigning = Annotated[Acting, Depends(acting("roles"))]  # another watcher's role


# -- pages ----------------------------------------------------------------------------------


@router.get("/home")
def home(p: SignedIn) -> Response:
    if p.session.role == auth.COORDINATOR:
        return p.redirect("/coordinator")
    web = p.web
    with web.db.read() as c:
        mine = auth.person_watchers(c, p.session.subject)
        cards = [views.household_card(c, web.store, hh.household(c, w.household), p.now_ms)
                 for w in mine]
        texts = {a.id: alert_line(a, card.home, p) for card in cards for a in card.open_alerts}
    return p.render("home.html", cards=cards, texts=texts, mine={w.household: w for w in mine})


@router.get("/h/{hid}")
def household(request: Request, hid: str, p: SignedIn, seen: Viewing) -> Response:
    web, home, me = p.web, seen.home, seen.me
    with web.db.read() as c:
        tl = sweeper.recent_timeline(c, hid, p.now_ms, views.PAGE_DAYS)
        card = views.household_card(c, web.store, home, p.now_ms, tl)
        history = _history(c, hid, me)
        events = {a.id: _events(c, a, home, p) for a in history}
        texts = {a.id: alert_line(a, home, p) for a in history}
        ps = [x for x in hh.pauses(c, hid) if x.end_ms > p.now_ms]
        ws = hh.watchers(c, hid, max_tier=3, min_tier=1)
        bulbs = web.store.devices(hid)
        placed = sweeper.placement_of(web.store, c, home, p.now_ms)
        log_ = changes.events(c, hid)
    my_role = me.role if me is not None else "coordinator"
    may = {a: roles.may(my_role, a) for a in roles.ACTIONS}
    longest = roles.TABLE[my_role].pause_days
    return p.render("household.html", home=home, me_w=me, card=card, history=history,
                    events=events, texts=texts, pauses=ps, watchers=ws, bulbs=bulbs,
                    svg=_chart(p, home, tl, history),
                    rows=chart.day_rows(tl.intervals, home.tz, p.now_ms),
                    settings=home.settings, placed=placed, numbers=NUMBER_SETTINGS, may=may,
                    placed_words={d: messages.placement_words(pl, p.lang)
                                  for d, pl in placed.items()}, my_role=my_role,
                    pause_days=longest,
                    changed=[(e, changes.describe(e, p.lang, home.tz)) for e in log_],
                    endable={x.id for x in ps if may["end_pause"]
                             and changes.pause_days(x) <= longest},
                    role_choices=(roles.ROLES if my_role == "coordinator"
                                  else roles.WATCHER_ROLES),
                    today=_today(home.tz, p.now_ms), done=request.query_params.get("done", ""))


@router.get("/h/{hid}/chart.svg")
def chart_svg(hid: str, p: SignedIn, seen: Viewing) -> Response:
    with p.web.db.read() as c:
        history = _history(c, hid, seen.me)
        tl = sweeper.recent_timeline(c, hid, p.now_ms, views.PAGE_DAYS)
    svg = _chart(p, seen.home, tl, history)
    return p.finish(Response(svg, media_type="image/svg+xml"))


# -- alerts ---------------------------------------------------------------------------------


@router.post("/h/{hid}/alerts/{aid}/claim")
def claim(hid: str, aid: str, p: SignedIn, form: Posted, a: Claiming) -> Response:
    assert a.me is not None  # Claiming is a watcher's
    with writing(p, hid) as c:
        _alert_of(c, hid, aid)
        alerts.claim(c, aid, a.me.id, p.now_ms, p.web.cfg())
    return p.redirect(_back(form, f"/h/{hid}") + "#alert-" + aid)


@router.post("/h/{hid}/alerts/{aid}/release")
def release(hid: str, aid: str, p: SignedIn, form: Posted, a: Claimer) -> Response:
    assert a.me is not None
    with writing(p, hid) as c:
        _alert_of(c, hid, aid)
        alerts.release(c, aid, a.me.id, p.now_ms, p.web.cfg())
    return p.redirect(_back(form, f"/h/{hid}") + "#alert-" + aid)


@router.post("/h/{hid}/alerts/{aid}/resolve")
def resolve(hid: str, aid: str, p: SignedIn, form: Posted, a: Claiming) -> Response:
    assert a.me is not None
    outcome = form.get("outcome", "")
    with writing(p, hid) as c:
        _alert_of(c, hid, aid)
        alerts.resolve(c, aid, a.me.id, outcome, form.get("note", "")[:500], p.now_ms,
                       p.web.cfg(), pause=None if "pause" not in form
                       else form["pause"] == "yes" and outcome == "needed_help")
    return p.redirect(_back(form, f"/h/{hid}") + "#alert-" + aid)


# -- pauses, rules and absences -------------------------------------------------------------


@router.post("/h/{hid}/pauses")
def add_pause(hid: str, p: SignedIn, form: Posted, a: Pausing) -> Response:
    with writing(p, hid) as c:
        changes.add_pause(c, p.now_ms, a.who, hid, hh.parse_day(form.get("first", "")),
                          hh.parse_day(form.get("last", "")), form.get("reason", "")[:200])
    return p.redirect(f"/h/{hid}?done=saved#pauses")


@router.post("/h/{hid}/pauses/{pid}/end")
def end_pause(hid: str, pid: str, p: SignedIn, a: Ending) -> Response:
    with writing(p, hid) as c:
        changes.end_pause(c, p.now_ms, a.who, hid, pid, _today(a.home.tz, p.now_ms))
    return p.redirect(f"/h/{hid}?done=saved#pauses")


@router.post("/h/{hid}/settings")
def settings(hid: str, p: SignedIn, form: Posted, a: Ruling) -> Response:
    """The alert rules: the family and the coordinator set these."""
    with writing(p, hid) as c:
        changes.settings(c, p.now_ms, a.who, hid, _settings_form(form))
    return p.redirect(f"/h/{hid}?done=saved#settings")


@router.post("/h/{hid}/absences")
def add_absence(hid: str, p: SignedIn, form: Posted, a: Ruling) -> Response:
    days = ",".join(d for d in rules.WEEKDAYS if form.get("day_" + d))
    with writing(p, hid) as c:
        changes.add_absence(c, p.now_ms, a.who, hid, {
            "days": days, "from": form.get("from", ""), "to": form.get("to", ""),
            "reason": form.get("reason", "")[:100]})
    return p.redirect(f"/h/{hid}?done=saved#pauses")


@router.post("/h/{hid}/absences/{number}/remove")
def remove_absence(hid: str, number: int, p: SignedIn, a: Ruling) -> Response:
    with writing(p, hid) as c:
        changes.remove_absence(c, p.now_ms, a.who, hid, number)
    return p.redirect(f"/h/{hid}?done=saved#pauses")


# -- watchers and bulbs ---------------------------------------------------------------------


@router.post("/h/{hid}/watchers/{wid}/quiet")
def quiet(hid: str, wid: str, p: SignedIn, form: Posted, a: Member) -> Response:
    with writing(p, hid) as c:
        w = hh.watcher(c, wid)
        if w.household != hid or (a.me is not None and a.me.id != wid):
            raise Refused(403, "forbidden")  # your own quiet hours, or the coordinator
        hh.update_watcher(c, wid, {"quiet_hours": form.get("quiet_hours", "")})
    return p.redirect(f"/h/{hid}?done=saved#settings")


@router.post("/h/{hid}/bulbs/{dev}/brightness")
def brightness(hid: str, dev: str, p: SignedIn, form: Posted, a: Dimming) -> Response:
    store = p.web.store
    with writing(p, hid):
        d = store.device(dev)
        if d is None or d.household != hid:
            raise hh.NotFound(f"no bulb {dev!r} in this household")
        pct = _number("brightness", form.get("brightness", ""))
        merged = bulb_settings.merge(d.settings, {"brightness": round(pct / 100, 2)})
        store.set_settings(dev, merged)  # joins this transaction
    return p.redirect(f"/h/{hid}?done=saved#settings")


@router.post("/h/{hid}/watchers/{wid}/order")
def order(hid: str, wid: str, p: SignedIn, form: Posted, a: Ordering) -> Response:
    with writing(p, hid) as c:
        tier = _number("order", form.get("tier", ""))
        if tier != int(tier):
            raise ValueError(f"order {form.get('tier')!r}: 1 (first), 2 or 3 (last)")
        changes.set_tier(c, p.now_ms, a.who, hid, wid, int(tier))
    return p.redirect(f"/h/{hid}?done=saved#settings")


@router.post("/h/{hid}/watchers")
def add_watcher(hid: str, p: SignedIn, form: Posted, a: Inviting) -> Response:
    with writing(p, hid) as c:
        email = form.get("email", "").strip()
        if not email:
            raise ValueError("a watcher needs an e-mail address (alerts go there)")
        changes.add_watcher(c, p.now_ms, a.who, hid, form.get("name", "")[:200],
                            form.get("role", ""), lang=form.get("lang", "ja"),
                            email=email[:200])
    return p.redirect(f"/h/{hid}?done=saved#settings")


@router.post("/h/{hid}/watchers/{wid}/role")
def set_role(hid: str, wid: str, p: SignedIn, form: Posted, a: Assigning) -> Response:
    with writing(p, hid) as c:
        changes.set_role(c, p.now_ms, a.who, hid, wid, form.get("role", ""))
    return p.redirect(f"/h/{hid}?done=saved#settings")


# -- helpers --------------------------------------------------------------------------------


def alert_line(a: alerts.Alert, home: hh.Household, p: Page) -> str:
    """The alert's reason in the reader's language, as it stood when it closed (or now)."""
    at = a.closed_at if a.closed_at is not None else p.now_ms
    return messages.what(a.rule, p.lang, alerts.context(a, home, at))


def _history(c: Any, hid: str, me: hh.Watcher | None) -> list[alerts.Alert]:
    """The household's last 50 alerts as this reader may see them: a watcher (me) sees the
    family's alerts, not device health; the coordinator (me None, or a watcher whose role may
    see device health) sees all."""
    history = alerts.list_alerts(c, hid, limit=50)
    if me is None or roles.may(me.role, "device_health"):  # a coordinator watcher too
        return history
    return [a for a in history if a.audience != "coordinator"]


def _events(c: Any, a: alerts.Alert, home: hh.Household, p: Page) -> list[dict[str, Any]]:
    """The alert's history with each entry's detail line in the reader's language."""
    out = []
    for e in alerts.events(c, a.id):
        ctx = alerts.context(a, home, e["at"])
        if e["params"] and e["params"].get("switched_on") is not None:
            ctx["cleared_on"] = alerts.when_text(alerts.stored_instant(e["params"], "switched_on"),
                                                 home.tz, e["at"])
        out.append({**e, "detail": messages.event_detail(e["kind"], e["params"], e["text"],
                                                         p.lang, ctx)})
    return out


def _chart(p: Page, home: hh.Household, tl: Any, history: list[alerts.Alert]) -> str:
    with p.web.db.read() as cur:
        ps = [(x.start_ms, x.end_ms) for x in hh.pauses(cur, home.id)]
    opened = [a.opened_at for a in history if a.audience != "coordinator"]
    return chart.activity_svg(tl.intervals, home.tz, p.now_ms, p.lang, pauses=ps,
                              alerts_at=opened)


def _alert_of(c: Any, hid: str, aid: str) -> alerts.Alert:
    a = alerts.get(c, aid)
    if a.household != hid:
        raise hh.NotFound(f"no alert {aid!r} in this household")
    return a


def _settings_form(form: dict[str, str]) -> dict[str, Any]:
    """The settings form's filled-in fields (an empty field keeps its setting)."""
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
    return new


def _today(tz: str, now_ms: int) -> Any:
    return datetime.fromtimestamp(to_s(now_ms), ZoneInfo(tz)).date()


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
    return local_path(nxt) if nxt else default
