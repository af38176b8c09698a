# SPDX-License-Identifier: MIT
"""The alert lifecycle: open -> claimed (by whom) -> resolved (outcome), or cleared by itself.

    open      a rule said OPEN; the watchers of tier 1 (family) are told, with claim links.
              While nobody claims, on strong evidence: reminders to those already told after
              reminder_h, then twice as long after each (at most reminder_max), and after
              escalate_h[0] the tier-2 watchers (neighbours, welfare commissioner) are told too,
              after escalate_h[1] more the tier-3 visit service. On weak evidence (learning, the
              silence may be the radio, a room not used every day): one reminder at most and no
              escalation, until the rule says the evidence is strong. Reminders, and alerts on
              weak evidence, wait for the end of each watcher's quiet hours. Coordinator alerts
              (a bulb silent, poor delivery, placement) go to tier 0 only and neither remind
              nor escalate.
    claimed   the first watcher to claim is shown to everyone told: "Aiko is going to check".
              If no outcome is recorded within claim_timeout_h, everyone told hears so, once.
    resolved  a watcher records the outcome: fine, needed_help, false_alarm (with why).
              "needed help" pauses the household until the next switch-on by default, so
              nobody is alerted about an empty home.
    cleared   the rule went CLEAR (the light came on): everyone told hears it, with the evidence.

An alert belongs to an episode (the rule, the subject and the instant the quiet spell or visit
began), so an alert resolved as "fine" is not reopened for the same spell at the next sweep; if
the spell goes on for another no_activity_h after the resolution, a new alert opens.

Every change and its notifications are written in the caller's transaction (the outbox), and
every change is one alert_events row (the history the dashboard shows).

It must never tell a watcher about a household they do not watch, and never open two alerts for
one rule and subject at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mimamori import households as hh
from mimamori import messages, notify, roles, texts
from mimamori.clock import HOUR_MS, to_ms, to_s
from mimamori.rules import CLEAR, OPEN, Decision
from mimamori.storage import Cursor

ACTIVE = ("open", "claimed")
OUTCOMES = ("fine", "needed_help", "false_alarm")  # their words: web/i18n.py, the one table
GAP_RULES = ("no_activity", "unusual_quiet", "daily_window")


class Conflict(Exception):
    """The alert is not in a state that allows this (the message says who did what)."""


def refusal_status(e: BaseException) -> int | None:
    """The HTTP status of a refusal by the server's functions, the one mapping the API
    (api.Api.run) and the pages (web/deps.writing) answer with: 404 not found, 403 a role's
    limit, 409 a conflict (an alert's state, an id taken), 400 bad input; None for anything
    else (a fault, never a client's error)."""
    if isinstance(e, hh.NotFound):
        return 404
    if isinstance(e, roles.Forbidden):
        return 403
    if isinstance(e, (Conflict, hh.Exists)):
        return 409
    if isinstance(e, ValueError):
        return 400
    return None


@dataclass(frozen=True)
class Alert:
    id: str
    household: str
    rule: str
    subject: str
    audience: str
    episode: int
    state: str
    opened_at: int
    since: int | None
    evidence: str
    detail: dict[str, Any]
    tier: int
    reminders: int
    next_reminder_at: int | None
    next_escalation_at: int | None
    claimed_by: str | None
    claimed_at: int | None
    resolved_by: str | None
    resolved_at: int | None
    outcome: str | None
    note: str | None
    cleared_at: int | None
    clear_evidence: str | None
    closed_at: int | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


_COLS = ("id, household, rule, subject, audience, episode, state, opened_at, since, evidence, "
         "detail, tier, reminders, next_reminder_at, next_escalation_at, claimed_by, claimed_at, "
         "resolved_by, resolved_at, outcome, note, cleared_at, clear_evidence, closed_at")


def _alert(row: tuple) -> Alert:
    r = list(row)
    r[10] = json.loads(r[10])
    return Alert(*r)


def lock_household(c: Cursor, hid: str) -> None:
    """Hold the household's row until the transaction ends. Every change to a household's alerts
    (open, clear, remind, escalate, claim, resolve, the digest) takes it first, on any instance,
    so the read that decides the change is never stale and alert_events numbers never collide.
    (On SQLite a write transaction holds the whole file already.)"""
    c.one("SELECT id FROM households WHERE id = ?" + c.for_update, (hid,))


def get(c: Cursor, aid: str) -> Alert:
    row = c.one(f"SELECT {_COLS} FROM alerts WHERE id = ?", (aid,))
    if row is None:
        raise hh.NotFound(f"no alert {aid!r}: see `mimamori alert list`")
    return _alert(row)


def list_alerts(c: Cursor, household: str | None = None, active_only: bool = False,
                limit: int = 200) -> list[Alert]:
    sql, params = f"SELECT {_COLS} FROM alerts WHERE 1 = 1", []
    if household:
        sql, params = sql + " AND household = ?", [household]
    if active_only:
        sql += " AND closed_at IS NULL"
    return [_alert(r) for r in c.all(sql + " ORDER BY opened_at DESC, id LIMIT ?",
                                     [*params, limit])]


def events(c: Cursor, aid: str) -> list[dict[str, Any]]:
    """The alert's history, oldest first: at, kind, actor, text (English, for logs and the
    CLI) and params (what a page renders in its reader's language: messages.event_detail;
    None on rows written before events kept them)."""
    return [{"at": at, "kind": k, "actor": a, "text": t,
             "params": json.loads(p) if p else None} for at, k, a, t, p in c.all(
        "SELECT at, kind, actor, text, params FROM alert_events WHERE alert = ? ORDER BY n",
        (aid,))]


def _event(c: Cursor, aid: str, now_ms: int, kind: str, text: str, actor: str | None = None,
           **params: Any) -> None:
    """One history row: the kind is its code, params what a page needs to say it in any
    language; text is the English line for logs and the CLI."""
    (n,) = c.one("SELECT COUNT(*) FROM alert_events WHERE alert = ?", (aid,)) or (0,)
    c.execute("INSERT INTO alert_events (alert, n, at, kind, actor, text, code, params) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              (aid, n + 1, now_ms, kind, actor, text, kind,
               json.dumps(params, ensure_ascii=False)))


# ---------------------------------------------------------------------------------------------
# what the messages say

TIME_UNIT = "ms"  # kept with the instants of an alert's detail and of its events' params


def stored_instant(d: Mapping[str, Any], key: str) -> int | None:
    """The instant d[key] of an alert's stored detail or an event's params, in ms: rows written
    before the alert engine counted ms hold Unix seconds there (and no "time_unit")."""
    x = d.get(key)
    if x is None:
        return None
    return x if d.get("time_unit") == TIME_UNIT else to_ms(x)


def when_text(ms: float | None, tz: str, now_ms: int) -> str:
    """'10:42' today, '11/27 10:42' another day (household time)."""
    if ms is None:
        return "?"
    z = ZoneInfo(tz)
    d = datetime.fromtimestamp(to_s(ms), z)
    n = datetime.fromtimestamp(to_s(now_ms), z)
    return d.strftime("%H:%M") if d.date() == n.date() else f"{d.month}/{d.day} {d:%H:%M}"


def context(a: Alert, home: hh.Household, now_ms: int) -> dict[str, Any]:
    d = a.detail
    ctx: dict[str, Any] = {"rule": a.rule, "subject": a.subject, "alert": a.id,
                           "evidence": a.evidence}
    if "last_on" in d:
        last_on = stored_instant(d, "last_on")
        ctx["last_on"] = when_text(last_on, home.tz, now_ms)
        ctx["gap_h"] = (now_ms - last_on) / HOUR_MS if last_on is not None else 0.0
    elif d.get("at") is not None:
        ctx["last_on"] = when_text(stored_instant(d, "at"), home.tz, now_ms)
    if "on_h" in d:
        ctx["on_h"] = d["on_h"] + max(0.0, (now_ms - a.opened_at) / HOUR_MS)
    if d.get("radio_h"):
        ctx["radio_h"] = d["radio_h"]
    if d.get("unreported_until"):
        ctx["unreported_until"] = when_text(stored_instant(d, "unreported_until"), home.tz,
                                            now_ms)
    for k in ("limit_h", "usual_h", "visits", "late", "days", "used_days"):  # for details
        if isinstance(d.get(k), (int, float)):
            ctx[k] = d[k]
    if "strength" in d:
        ctx["strength"] = d["strength"]
    return ctx


def recipients(c: Cursor, a: Alert, tier: int | None = None,
               min_tier: int | None = None) -> list[hh.Watcher]:
    if a.audience == "coordinator":
        return hh.watchers(c, a.household, max_tier=0, min_tier=0)
    top = a.tier if tier is None else tier
    return hh.watchers(c, a.household, max_tier=top, min_tier=1 if min_tier is None else min_tier)


def _tell(c: Cursor, now_ms: int, kind: str, a: Alert, home: hh.Household,
          to: list[hh.Watcher], cfg: notify.NotifierSettings, extra: dict[str, Any] | None = None) -> None:
    base = context(a, home, now_ms) | (extra or {})
    everyone = recipients(c, a) if kind in ("alert", "reminder", "escalated") else []
    for w in to:
        ctx = dict(base)
        if everyone:
            names = [x.name for x in everyone if x.id != w.id]
            ctx["others"] = ("、".join(f"{n} さん" for n in names) if w.lang == "ja"
                             else ", ".join(names))
        if kind in ("alert", "reminder", "escalated", "released", "claimed", "overdue"):
            ctx |= notify.links(c, cfg, a.id, w.id, now_ms)
            if kind in ("claimed", "overdue"):
                ctx.pop("claim_url", None)
        notify.enqueue(c, now_ms, kind, home, w, ctx, alert=a.id,
                       not_before=_held_until(kind, a, w, home, now_ms))


def _held_until(kind: str, a: Alert, w: hh.Watcher, home: hh.Household, now_ms: int) -> int | None:
    """Until when a message waits for the watcher's quiet hours (None: sent at once). A
    reminder waits; so does an alert on weak evidence, unless the fixed rule would tell them
    now (`tell_now`), and never past the instant it would (`tell_by`)."""
    if not (kind == "reminder" or kind == "alert" and strength(a) == "weak"
            and not a.detail.get("tell_now")):
        return None
    return hold(hh.quiet_until(w.quiet_hours, home.tz, now_ms), now_ms,
                a.detail.get("tell_by") if kind == "alert" else None)


def hold(quiet_end: int | None, now_ms: int, by: int | None) -> int | None:
    """A message held until `quiet_end` (None: not in quiet hours), but never past `by`, nor
    before now. Pure: the population bench holds its modelled messages with it."""
    if quiet_end is None or by is None:
        return quiet_end
    return max(now_ms, min(quiet_end, int(by)))


def strength(a: Alert) -> str:
    """How strong the evidence of an alert is ("strong" for alerts older than the notion)."""
    return a.detail.get("strength", "strong")


def reminder_due(s: hh.HouseholdSettings, evidence: str, sent: int, opened_ms: int) -> int | None:
    """When reminder number sent + 1 of an unclaimed alert is due (ms), or None: on strong
    evidence reminder_h after the alert, then twice as long after each (2, 4, 8 h: at 2, 6,
    14 h), at most reminder_max; on weak evidence one, 2 x reminder_h after the alert."""
    cap = s.reminder_max if evidence == "strong" else min(1, s.reminder_max)
    if sent >= cap:
        return None
    first = s.reminder_h * (1 if evidence == "strong" else 2)
    return opened_ms + int(first * (2 ** (sent + 1) - 1) * HOUR_MS)


# ---------------------------------------------------------------------------------------------
# the rules' decisions -> alerts


def _episode(d: Decision, now_ms: int) -> int:
    t = d.since if d.rule == "daily_window" or d.at is None else d.at
    return t if t is not None else now_ms


def _next_tier(c: Cursor, hid: str, above: int) -> int | None:
    row = c.one("SELECT MIN(tier) FROM watchers WHERE household = ? AND removed_at IS NULL "
                "AND tier > ?", (hid, above))
    return row[0] if row and row[0] is not None else None


def apply(c: Cursor, home: hh.Household, decisions: list[Decision], now_ms: int,
          cfg: notify.NotifierSettings) -> int | None:
    """Open alerts for new OPEN decisions, clear active ones whose rule is CLEAR. Returns when
    a resolved quiet spell that goes on would alert again (ms), if any."""
    again: list[int] = []
    active = {(a.rule, a.subject): a for a in list_alerts(c, home.id, active_only=True)}
    for d in decisions:
        a = active.get((d.rule, d.subject))
        if d.state == OPEN and a is None:
            episode = _episode(d, now_ms)
            last = c.one("SELECT episode, closed_at, state, detail FROM alerts WHERE household = ? "
                         "AND rule = ? AND subject = ? ORDER BY opened_at DESC, id LIMIT 1",
                         (home.id, d.rule, d.subject))
            if last is not None and json.loads(last[3]).get("spell") == episode:
                # the same quiet spell: resolved by a watcher, alert again only when it has
                # gone on for another no_activity_h since (found fine, then nothing more);
                # cleared by new settings, alert again as soon as the rule says so
                if d.rule == "on_too_long" and last[2] == "cleared":
                    # its heartbeats had stopped ("probably off"); they came back and the lamp
                    # is still lit: alert again
                    _open(c, home, d, episode, now_ms, cfg, key=last[1])
                    continue
                if d.rule not in GAP_RULES:
                    continue
                wait = home.settings.no_activity_h if last[2] == "resolved" else 0
                at = last[1] + int(wait * HOUR_MS)
                if now_ms < at:
                    again.append(at)
                    continue
                _open(c, home, d, episode, now_ms, cfg, key=last[1])
            else:
                _open(c, home, d, episode, now_ms, cfg)
        elif d.state == CLEAR and a is not None:
            _clear(c, home, a, d, now_ms, cfg)
        elif (d.state == OPEN and a is not None and d.strength == "strong"
              and strength(a) == "weak"):
            _firm_up(c, home, a, d, now_ms)
    return min(again) if again else None


def _firm_up(c: Cursor, home: hh.Household, a: Alert, d: Decision, now_ms: int) -> None:
    """The evidence of an open alert became strong (the quiet went on): reminders and
    escalation as for a strong alert from now on."""
    detail = a.detail | {"strength": "strong"}
    nxt = _next_tier(c, home.id, a.tier) if a.state == "open" else None
    c.execute("UPDATE alerts SET detail = ?, evidence = ?, next_escalation_at = ?, "
              "next_reminder_at = ? WHERE id = ?",
              (json.dumps(detail), d.evidence,
               now_ms + int(home.settings.escalate_h[0] * HOUR_MS) if nxt else None,
               (reminder_due(home.settings, "strong", a.reminders, now_ms) if a.state == "open"
                else a.next_reminder_at), a.id))
    _event(c, a.id, now_ms, "firmed", f"evidence now strong: {d.evidence}",
           evidence=d.evidence)


def _open(c: Cursor, home: hh.Household, d: Decision, spell: int, now_ms: int,
          cfg: notify.NotifierSettings, key: int | None = None) -> Alert | None:
    aid = "a-" + secrets.token_hex(6)
    s = home.settings
    family = d.audience != "coordinator"
    tier = 1 if family else 0
    nxt_tier = _next_tier(c, home.id, 1) if family else None
    detail = (dict(d.detail) | ({"at": d.at} if d.at is not None else {}) | {"spell": spell}
              | {"strength": d.strength, "time_unit": TIME_UNIT})
    strong = d.strength == "strong"
    n = c.execute(
        f"INSERT INTO alerts ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, 0, ?, ?, "
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) "
        "ON CONFLICT (household, rule, subject, episode) DO NOTHING",
        (aid, home.id, d.rule, d.subject, d.audience, spell if key is None else key, now_ms,
         d.since, d.evidence, json.dumps(detail), tier,
         reminder_due(s, d.strength, 0, now_ms) if family else None,
         now_ms + int(s.escalate_h[0] * HOUR_MS) if nxt_tier and strong else None))
    if not n:  # this episode already had its alert (resolved by someone): not again
        return None
    a = get(c, aid)
    _event(c, aid, now_ms, "opened", d.evidence, evidence=d.evidence)
    _tell(c, now_ms, "alert", a, home, recipients(c, a), cfg)
    return a


def _clear(c: Cursor, home: hh.Household, a: Alert, d: Decision, now_ms: int,
           cfg: notify.NotifierSettings) -> None:
    unheard = notify.cancel_unsent(c, a.id, now_ms)  # never told: not told it cleared
    c.execute("UPDATE alerts SET state = 'cleared', cleared_at = ?, clear_evidence = ?, "
              "closed_at = ?, next_reminder_at = NULL, next_escalation_at = NULL WHERE id = ?",
              (now_ms, d.evidence, now_ms, a.id))
    a = get(c, a.id)
    extra: dict[str, Any] = {"evidence": d.evidence}
    if "paused_until" in d.detail:
        extra["why"] = "paused"
    elif a.rule in GAP_RULES and d.at is not None and d.at != a.detail.get("spell"):
        extra["cleared_on"] = when_text(d.at, home.tz, now_ms)
    elif a.rule in GAP_RULES:  # no new switch-on: the settings (or the learned rhythm) changed
        extra["why"] = "rule"
    elif a.rule == "on_too_long" and d.detail.get("probably_off"):
        extra["why"] = "probably_off"
    else:
        extra["why"] = {"on_too_long": "light_off", "bulb_silent": "heard",
                        "placement": "placement"}.get(a.rule, "other")
    _event(c, a.id, now_ms, "cleared", d.evidence, evidence=d.evidence, why=extra.get("why"),
           switched_on=d.at if "cleared_on" in extra else None, time_unit=TIME_UNIT)
    _tell(c, now_ms, "cleared", a, home, [w for w in recipients(c, a) if w.id not in unheard],
          cfg, extra)


def tick(c: Cursor, home: hh.Household, now_ms: int, cfg: notify.NotifierSettings) -> int | None:
    """Reminders and escalations that are due; returns the next such deadline (ms) or None."""
    nxt: list[int] = []
    for a in list_alerts(c, home.id, active_only=True):
        if a.state == "claimed":
            if a.next_reminder_at is not None and now_ms >= a.next_reminder_at:
                # the claimer has not recorded an outcome: everyone told hears it, once
                c.execute("UPDATE alerts SET next_reminder_at = NULL WHERE id = ?", (a.id,))
                claimer = hh.watcher(c, a.claimed_by or "")
                _event(c, a.id, now_ms, "overdue", f"no outcome from {claimer.name} yet",
                       claimer=claimer.id)
                _tell(c, now_ms, "overdue", get(c, a.id), home, recipients(c, a), cfg,
                      {"claimer": claimer.name,
                       "claimed_on": when_text(a.claimed_at, home.tz, now_ms)})
            elif a.next_reminder_at is not None:
                nxt.append(a.next_reminder_at)
            continue
        if a.next_escalation_at is not None and now_ms >= a.next_escalation_at:
            new = _next_tier(c, home.id, a.tier)
            if new is not None:
                after = _next_tier(c, home.id, new)
                delay = home.settings.escalate_h[min(new - 1, 1)]
                c.execute("UPDATE alerts SET tier = ?, next_escalation_at = ? WHERE id = ?",
                          (new, now_ms + int(delay * HOUR_MS) if after else None, a.id))
                _event(c, a.id, now_ms, "escalated", f"told tier {new}", tier=new)
                a = get(c, a.id)
                _tell(c, now_ms, "escalated", a, home, recipients(c, a, min_tier=a.tier), cfg)
            else:
                c.execute("UPDATE alerts SET next_escalation_at = NULL WHERE id = ?", (a.id,))
                a = get(c, a.id)
        if a.next_reminder_at is not None and now_ms >= a.next_reminder_at:
            c.execute("UPDATE alerts SET reminders = reminders + 1, next_reminder_at = ? "
                      "WHERE id = ?",
                      (reminder_due(home.settings, strength(a), a.reminders + 1, a.opened_at),
                       a.id))
            _event(c, a.id, now_ms, "reminded", f"reminder {a.reminders + 1}",
                   number=a.reminders + 1)
            a = get(c, a.id)
            _tell(c, now_ms, "reminder", a, home, recipients(c, a, tier=a.tier), cfg)
        nxt += [t for t in (a.next_reminder_at, a.next_escalation_at) if t is not None]
    return min(nxt) if nxt else None


# ---------------------------------------------------------------------------------------------
# what watchers do


def _watcher_of(c: Cursor, a: Alert, wid: str) -> hh.Watcher:
    w = hh.watcher(c, wid)
    if w.household != a.household or w.removed_at is not None:
        raise hh.NotFound(f"watcher {wid!r} does not watch household {a.household!r}")
    return w


def claim(c: Cursor, aid: str, wid: str, now_ms: int, cfg: notify.NotifierSettings) -> Alert:
    """The watcher is going to check; everyone told hears who. Claiming twice is a no-op."""
    lock_household(c, get(c, aid).household)
    a = get(c, aid)
    w = _watcher_of(c, a, wid)
    if a.state == "claimed" and a.claimed_by == wid:
        return a
    if a.state == "claimed":
        other = hh.watcher(c, a.claimed_by or "")
        raise Conflict(f"{other.name} is already going to check (since "
                       f"{when_text(a.claimed_at, hh.household(c, a.household).tz, now_ms)})")
    if a.state != "open":
        raise Conflict(f"this alert is already {a.state}: nothing to claim")
    home = hh.household(c, a.household)
    c.execute("UPDATE alerts SET state = 'claimed', claimed_by = ?, claimed_at = ?, "
              "next_reminder_at = ?, next_escalation_at = NULL WHERE id = ?",
              (wid, now_ms, now_ms + int(home.settings.claim_timeout_h * HOUR_MS), aid))
    # the sweeper must look again when the claim is overdue
    hh.recheck_by(c, a.household, now_ms)
    _event(c, aid, now_ms, "claimed", f"{w.name} is going to check", wid)
    a = get(c, aid)
    others = [x for x in recipients(c, a) if x.id != wid]
    _tell(c, now_ms, "claimed", a, home, others, cfg, {"claimer": w.name})
    return a


def resolve(c: Cursor, aid: str, wid: str, outcome: str, note: str, now_ms: int,
            cfg: notify.NotifierSettings, pause: bool | None = None) -> Alert:
    """Record what the watcher found; everyone told hears it. The alert is closed.
    pause: pause the household until the next switch-on (default: for "needed help", so
    nobody is alerted about the empty home while she is in hospital)."""
    lock_household(c, get(c, aid).household)
    a = get(c, aid)
    w = _watcher_of(c, a, wid)
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}: use fine, needed_help or false_alarm")
    texts.check("the note", note, texts.NOTE_MAX, lines=True)
    if outcome == "false_alarm" and not note.strip():
        raise ValueError("a false alarm needs a note saying why (e.g. 'bulb in a room not used "
                         "daily'): it is how the settings get fixed")
    if not a.active:
        raise Conflict(f"this alert is already {a.state}"
                       + (f" ({a.outcome})" if a.outcome else "") + ": nothing to resolve")
    c.execute("UPDATE alerts SET state = 'resolved', resolved_by = ?, resolved_at = ?, "
              "outcome = ?, note = ?, closed_at = ?, next_reminder_at = NULL, "
              "next_escalation_at = NULL, claimed_by = COALESCE(claimed_by, ?), "
              "claimed_at = COALESCE(claimed_at, ?) WHERE id = ?",
              (wid, now_ms, outcome, note.strip(), now_ms, wid, now_ms, aid))
    _event(c, aid, now_ms, "resolved", f"{w.name}: {outcome}" + (f" ({note})" if note else ""),
           wid, outcome=outcome)
    paused = pause if pause is not None else outcome == "needed_help"
    if paused:
        # the pause's reason is kept as text: in the words of the watcher who paused
        why = messages.outcome(outcome, w.lang) + (f": {note.strip()}" if note.strip() else "")
        hh.pause_until_switch_on(c, now_ms, a.household, why)
        _event(c, aid, now_ms, "paused", f"household paused until the next switch-on ({why})",
               wid, outcome=outcome)
    hh.recheck_at(c, a.household, now_ms)
    a = get(c, aid)
    home = hh.household(c, a.household)
    _tell(c, now_ms, "resolved", a, home, [x for x in recipients(c, a) if x.id != wid], cfg,
          {"resolver": w.name, "outcome": outcome, "note": note.strip(), "paused": paused})
    return a


def release(c: Cursor, aid: str, wid: str, now_ms: int, cfg: notify.NotifierSettings) -> Alert:
    """The watcher who claimed cannot go after all: the alert is open again, its reminders and
    escalation start over from now, and everyone told hears that nobody is going yet (with the
    claim link again). Only the claimer can hand it back."""
    lock_household(c, get(c, aid).household)
    a = get(c, aid)
    w = _watcher_of(c, a, wid)
    if a.state != "claimed":
        raise Conflict(f"this alert is {a.state}: nothing to hand back")
    if a.claimed_by != wid:
        other = hh.watcher(c, a.claimed_by or "")
        raise Conflict(f"{other.name} claimed it, not {w.name}: only they can hand it back")
    home = hh.household(c, a.household)
    s = home.settings
    nxt = _next_tier(c, home.id, a.tier) if a.audience != "coordinator" else None
    due = reminder_due(s, strength(a), 0, now_ms) if a.audience != "coordinator" else None
    c.execute("UPDATE alerts SET state = 'open', claimed_by = NULL, claimed_at = NULL, "
              "next_reminder_at = ?, next_escalation_at = ? WHERE id = ?",
              (due, now_ms + int(s.escalate_h[min(a.tier - 1, 1)] * HOUR_MS)
               if nxt and strength(a) == "strong" else None, aid))
    hh.recheck_by(c, a.household, now_ms)
    _event(c, aid, now_ms, "released", f"{w.name} handed it back (cannot go)", wid)
    a = get(c, aid)
    others = [x for x in recipients(c, a) if x.id != wid]
    _tell(c, now_ms, "released", a, home, others, cfg, {"releaser": w.name})
    return a


def public(c: Cursor, a: Alert) -> dict[str, Any]:
    """The alert as the API and the CLI show it (names of who claimed and resolved)."""
    d = dict(a.__dict__)
    for k in ("claimed_by", "resolved_by"):
        if a.__dict__[k]:
            try:
                d[k + "_name"] = hh.watcher(c, a.__dict__[k]).name
            except hh.NotFound:
                d[k + "_name"] = None
    return d
