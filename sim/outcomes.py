# SPDX-License-Identifier: MIT
"""What the demo's incidents led to, read back from the server (its JSON API and its database)
and from the watchers' inboxes: one Outcome per incident, family alerts no incident explains,
the coordinator's notices, and how many of the bulbs' switch-ons reached the server. The demo's
summary prints these; tests/test_demo.py asserts the same things from the database directly.

It must never change anything on the server (it reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mimamori import sweeper
from mimamori.clock import to_ms
from mimamori.storage import Store
from mimamori_firmware import record
from sim import scenario as sc
from sim.play import Stage, offline_visits


@dataclass
class Outcome:
    incident: str
    home: str
    ok: bool
    text: str


def outcomes(stage: Stage) -> list[Outcome]:
    """Each incident's outcome, checked from the server (API, store) and the inboxes."""
    s = stage.scenario
    assert stage.sink
    alerts = stage.api("GET", "/api/v1/alerts")
    store = Store.open(stage.db)
    try:
        tls = {h.id: sweeper.timeline_of(store, h.id) for h in s.homes}
        records = {bp.id: store.records_for_device(bp.id) for h in s.homes for bp in h.bulbs}
    finally:
        store.close()
    out: list[Outcome] = []
    for home in s.homes:
        mine = [a for a in alerts if a["household"] == home.id]
        family = [a for a in mine if a["audience"] == "family"]
        emails = [w.email for w in home.watchers]
        for inc in home.incidents:
            if inc == sc.FALL:
                fall = next(st.at for st in s.steps if st.home == home.id and "falls" in st.text)
                gap = [a for a in family if a["rule"] in ("no_activity", "unusual_quiet",
                                                          "daily_window")
                       and a["opened_at"] / 1000 > fall.timestamp()]
                a = gap[0] if gap else None
                told = a is not None and all(stage.sink.of(e, "alert", a["id"]) for e in emails)
                ok = bool(a and told and a["state"] == "resolved"
                          and a.get("claimed_by_name") == home.watchers[0].name
                          and a.get("outcome") == "needed_help"
                          and stage.sink.of(home.watchers[1].email, "claimed", a["id"])
                          and stage.sink.of(home.watchers[1].email, "resolved", a["id"]))
                text = ("no alert after the fall" if a is None else
                        f"{a['rule']} alert {_hhmm(a['opened_at'])} "
                        f"({(a['opened_at'] / 1000 - fall.timestamp()) / 3600:.1f} h after the "
                        f"fall), e-mailed to {len(home.watchers)} watchers, claimed by "
                        f"{a.get('claimed_by_name')}, {a['state']}: {a.get('outcome')}")
                out.append(Outcome(inc, home.id, ok, text))
            elif inc == sc.LEFT_ON:
                on = [a for a in family if a["rule"] == "on_too_long"]
                a = on[0] if on else None
                told = a is not None and all(stage.sink.of(e, "alert", a["id"]) for e in emails)
                cleared = a is not None and a["state"] == "cleared" and all(
                    stage.sink.of(e, "cleared", a["id"]) for e in emails)
                ok = bool(a and told and cleared and len(on) == 1)
                text = ("no continuous-on alert" if a is None else
                        f"on_too_long alert {_hhmm(a['opened_at'])}: \"{a['evidence']}\"; "
                        f"{a['state']} {_hhmm(a.get('cleared_at'))}, watchers told both times")
                out.append(Outcome(inc, home.id, ok, text))
            elif inc == sc.NO_SIGNAL:
                down = next(st.at for st in s.steps if st.home == home.id
                            and st.kind == "wifi_down").timestamp()
                up = next(st.at for st in s.steps if st.home == home.id
                          and st.kind == "wifi_up").timestamp()
                bp = home.bulbs[0]
                made = [v for v in bp.visits if down <= v.on.timestamp() < up]
                late = offline_visits(tls[home.id], bp.id, up)
                false = [a for a in family if down <= a["opened_at"] / 1000 < up + 6 * 3600]
                ok = bool(made) and len(late) >= len(made) and not false
                text = (f"{len(made)} switch-ons while the router was off; {len(late)} visits "
                        "reached the server once it was back, each placed between bounds; "
                        + (f"FALSE ALERTS: {[a['rule'] for a in false]}" if false
                           else "no family alert"))
                out.append(Outcome(inc, home.id, ok, text))
            elif inc == sc.HOSPITAL:
                pauses = stage.api("GET", f"/api/v1/households/{home.id}/pauses")
                back = next(st.at for st in s.steps if st.home == home.id
                            and "back home" in st.text).timestamp()
                after = [iv for iv in tls[home.id].intervals if iv.start_latest >= to_ms(back)]
                ok = bool(pauses) and not family and bool(after)
                text = (f"paused {pauses[0]['first_day']}..{pauses[0]['last_day']}; "
                        if pauses else "no pause; ") + (
                    f"{len(family)} family alerts; " if family else "no alert while away; ") + (
                    f"{len(after)} switch-ons after coming back")
                out.append(Outcome(inc, home.id, ok, text))
            elif inc == sc.TWO_RADIOS:
                parts = []
                ok = True
                for bp in home.bulbs:
                    n = sum(1 for iv in tls[home.id].intervals if iv.device == bp.id)
                    # which radio carried it: link records (sent with the next report) or the
                    # kind of time anchor (the LTE-M network's time comes in the same batch)
                    kinds = {(r.kind, r.sub) for r in records[bp.id]}
                    via = ("LTE-M" if kinds & {(record.K_LINK, record.T_LTE),
                                               (record.K_ANCHOR, record.A_MODEM)}
                           else "Wi-Fi" if kinds & {(record.K_LINK, record.T_WIFI),
                                                    (record.K_ANCHOR, record.A_SERVER)}
                           else "?")
                    parts.append(f"{bp.room} ({via}): {n} of {len(bp.visits)} switch-ons")
                    ok = ok and n > 0 and via == ("LTE-M" if bp.transport == "lte" else "Wi-Fi")
                out.append(Outcome(inc, home.id, ok, "; ".join(parts)))
    return out


def delivered(stage: Stage) -> dict[str, tuple[int, int]]:
    """Per bulb: (switch-ons its hardware saw, i.e. power-ons traced with PWRON_RESET; boots whose
    POWER_ON record the server holds)."""
    store = Store.open(stage.db)
    try:
        out = {}
        for dev, b in stage.bulbs.items():
            seen = sum(1 for e in b.events("power_on") if e.get("cause") == 1)
            got = len({r.boot for r in store.records_for_device(dev)
                       if r.kind == record.K_POWER_ON})
            out[dev] = (seen, got)
        return out
    finally:
        store.close()


def coordinator_notices(stage: Stage) -> list[dict[str, Any]]:
    return [a for a in stage.api("GET", "/api/v1/alerts") if a["audience"] == "coordinator"]


def unexplained_alerts(stage: Stage) -> list[dict[str, Any]]:
    """Family alerts no incident accounts for (false alerts)."""
    expected: set[tuple[str, str]] = set()
    for h in stage.scenario.homes:
        if sc.FALL in h.incidents:
            expected |= {(h.id, r) for r in ("no_activity", "unusual_quiet", "daily_window")}
        if sc.LEFT_ON in h.incidents:
            expected.add((h.id, "on_too_long"))
    return [a for a in stage.api("GET", "/api/v1/alerts") if a["audience"] == "family"
            and (a["household"], a["rule"]) not in expected]


def _hhmm(ms: float | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, sc.TZ).strftime("%a %H:%M")
