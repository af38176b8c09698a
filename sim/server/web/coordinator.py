# SPDX-License-Identifier: MIT
"""The coordinator's pages: every household at a glance, the bulbs, the weekly check, the
pilot report, and invitations.

    GET  /coordinator               households, most urgent first: counts by state (filters),
                                    a search, pages (?state=&q=&page=)
    GET  /coordinator/bulbs         the same page's bulb health, placement and pilot report
    GET  /coordinator/watchers      watchers who never signed in or never confirmed their mail
    GET  /coordinator/report.csv    every household: outcomes, status, signal (reader's language)
    POST /coordinator/bulbs/{dev}/household   attach a bulb to a household
    POST /coordinator/invite        an invitation link for a watcher

Only the signed-in coordinator gets here (deps.Coordinator: 403 for a watcher).

It must never build a household's timeline for the overview (its status rows say enough), and
never take the invitation's address from the request's Host header.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mimamori import households as hh
from mimamori import listening, notify, status, sweeper
from mimamori.clock import DAY_MS, to_s
from mimamori.web import auth, views
from mimamori.web.deps import Coordinator, Posted, writing
from mimamori.web.household import alert_line
from mimamori.web.page import PageRoute, Refused

router = APIRouter(include_in_schema=False, route_class=PageRoute)

_EMPTY = sweeper.Timeline(())
OVERVIEW_PAGE = 20  # households per page of the coordinator's overview
WATCHERS_PAGE = 50  # watchers per page of the weekly check
SEARCH_MAX = 100  # characters of a search kept
OUTAGES_SHOWN_MS = 7 * DAY_MS  # the server's own outages stay on the overview this long
TZ = "Asia/Tokyo"  # the office's time zone (the report's days, the outages)
UNHEARD_SHOWN = 20  # homes named under an outage, the longest silent first


@router.get("/coordinator")
def coordinator(request: Request, p: Coordinator) -> Response:
    """What needs action first: counts by state (each a filter), a search, one page of
    households from their status rows (nothing here builds a household's timeline)."""
    f = _overview_query(request)
    with p.web.db.read() as c:
        found, counts = status.page(c, (f["page"] - 1) * OVERVIEW_PAGE, OVERVIEW_PAGE,
                                    f["state"], f["q"])
        homes = {r.household: hh.household(c, r.household) for r in found}
        lines = [views.overview_line(c, r, homes[r.household], p.now_ms) for r in found]
        texts = {a.id: alert_line(a, line.home, p) for line in lines for a in line.alerts}
        people = {hid: hh.watchers(c, hid, max_tier=3, min_tier=0) for hid in homes}
        # the server's own outages of the last OUTAGES_SHOWN_MS (listening.py), and the homes
        # not heard from since before the last one began (not away): whom to call
        outages = [sp for sp in listening.spans(c) if sp[1] >= p.now_ms - OUTAGES_SHOWN_MS]
        ongoing = listening.silent_since(c)  # the fleet silence going on now (its span open)
        unheard = c.all(
            "SELECT s.household, h.name FROM household_status s JOIN households h ON "
            "h.id = s.household WHERE s.last_on_ms < ? AND s.state <> 'paused' "
            "ORDER BY s.last_on_ms LIMIT ?", (outages[-1][0], UNHEARD_SHOWN + 1)
        ) if outages else []
    return p.render("coordinator.html", lines=lines, texts=texts, people=people,
                    paging=_paging(f, counts, len(found)), f=f,
                    signal_words=views.signal_words, outages=outages, ongoing=ongoing, tz=TZ,
                    unheard=unheard[:UNHEARD_SHOWN], more=len(unheard) > UNHEARD_SHOWN)


@router.get("/coordinator/bulbs")
def coordinator_bulbs(request: Request, p: Coordinator) -> Response:
    """The same page of households (same filter, search and page number): each bulb's
    health and placement, and the pilot report's figures for them."""
    store = p.web.store
    f = _overview_query(request)
    with p.web.db.read() as c:
        found, counts = status.page(c, (f["page"] - 1) * OVERVIEW_PAGE, OVERVIEW_PAGE,
                                    f["state"], f["q"])
        homes = [hh.household(c, r.household) for r in found]
        both = {h.id: sweeper.placed_timeline(c, h, p.now_ms) for h in homes}
        tls = {hid: tl for hid, (tl, _) in both.items()}
        rows = views.pilot_report(c, store, p.now_ms, tls, homes)
        placed = {dev: pl for _, pls in both.values() for dev, pl in pls.items()}
    health = [views.bulb_health(store, tls[h.id], d.id, p.now_ms)
              for h in homes for d in store.devices(h.id)]
    if f["page"] == 1:  # bulbs in no household yet (installers register them first)
        health += [views.bulb_health(store, _EMPTY, d.id, p.now_ms)
                   for d in store.unassigned_devices()]
    total = views.report_total(rows)
    start = min((h.created_at for h in homes), default=p.now_ms)
    return p.render("coordinator_bulbs.html", health=health, rows=rows, total=total,
                    summary=views.summary, placed=placed,
                    paging=_paging(f, counts, len(homes)), f=f, period=(start, p.now_ms))


@router.get("/coordinator/watchers")
def coordinator_watchers(request: Request, p: Coordinator) -> Response:
    """The weekly check (docs/operations.md): watchers who never signed in, or never
    confirmed that our e-mail reaches them."""
    f = _overview_query(request)
    with p.web.db.read() as c:
        checks, n = views.watchers_to_check(c, (f["page"] - 1) * WATCHERS_PAGE, WATCHERS_PAGE,
                                            f["q"])
    pages = max(1, -(-n // WATCHERS_PAGE))
    paging = {"page": f["page"], "pages": pages, "total": n,
              "first": (f["page"] - 1) * WATCHERS_PAGE + 1,
              "last": (f["page"] - 1) * WATCHERS_PAGE + len(checks)}
    return p.render("coordinator_watchers.html", checks=checks, paging=paging, f=f,
                    link=lambda **kw: _overview_url("/coordinator/watchers", f, **kw))


@router.get("/coordinator/report.csv")
def report_csv(p: Coordinator) -> Response:
    with p.web.db.read() as c:
        rows = views.pilot_report(c, p.web.store, p.now_ms)
        now = status.page(c, 0, 1_000_000)[0]  # every household's status row
    day = datetime.fromtimestamp(to_s(p.now_ms), ZoneInfo(TZ)).date()
    return p.finish(Response(
        "\ufeff" + views.report_csv(rows, p.lang, {r.household: r for r in now}),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition":
                 f'attachment; filename="mimamori-pilot-report-{day}.csv"'}))


@router.post("/coordinator/bulbs/{dev}/household")
def assign_bulb(dev: str, p: Coordinator, form: Posted) -> Response:
    with writing(p) as c:
        hh.assign_bulb(c, dev, form.get("household", "").strip(), p.now_ms)
    return p.redirect("/coordinator/bulbs?done=saved#bulbs")


@router.post("/coordinator/invite")
def invite(p: Coordinator, form: Posted) -> Response:
    send = form.get("send") == "message"
    cfg = p.web.cfg()
    try:
        with p.web.db.tx() as c:
            w = hh.watcher(c, form.get("watcher", ""))
            token = auth.make_link(c, auth.WATCHER, w.id, p.now_ms,
                                   auth.INVITE_DAYS * DAY_MS)
            url = auth.link_url(cfg.public_url, token)  # MIMAMORI_PUBLIC_URL, never Host
            if send:  # through the outbox, on the watcher's own channels
                notify.enqueue(c, p.now_ms, "signin", hh.household(c, w.household), w,
                               {"signin_url": url, "valid_ja": f"{auth.INVITE_DAYS}日間",
                                "valid_en": f"{auth.INVITE_DAYS} days"})
    except (hh.NotFound, ValueError) as e:
        raise Refused(404, "not_found", str(e)) from None
    if send:
        return p.render("message.html", title=p.t("invite_sent", name=w.name),
                        text=", ".join(p.t("ch_" + ch) for ch in w.channels()), back=True)
    return p.render("message.html", title=p.t("invite_made", name=w.name), text=url,
                    back=True, copy=True)


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
