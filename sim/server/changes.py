# SPDX-License-Identifier: MIT
"""Changes to a household's rules, pauses, absences, tiers and roles: checked against the role
table (sim/server/roles.py), recorded (household_events) and told to the other watchers.

Every writer goes through here: the dashboard (sim/server/web/household.py), the API (api.py) and
the command line (cli_people.py). Each function takes the cursor of the caller's transaction
and an `Actor`, checks what the actor's role may do (roles.Forbidden otherwise), makes the
change with households.py's own functions, writes one event and puts one "changed" message per
other watcher in the outbox (notify.enqueue: the e-mail path, in each watcher's language, held
until their quiet hours end). A change that changes nothing records and tells nothing.

It must never tell the person who made the change, never skip the record of a change it made,
and never let a role past the table.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

from mimamori import households as hh
from mimamori import notify, roles
from mimamori.storage import Cursor

KINDS = ("settings", "pause_added", "pause_ended", "absence_added", "absence_removed", "tier",
         "role", "watcher_added")


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a watcher (their row in this household), or a coordinator (the
    dashboard's coordinator, an API token, the command line) who is no watcher here."""

    id: str  # the watcher id, or "coordinator:<name>", "token:<name>", "cli"
    name: str
    role: str
    watcher: str | None = None  # the acting watcher row: not told about their own change

    @classmethod
    def of(cls, w: hh.Watcher) -> Actor:
        return cls(w.id, w.name, w.role, w.id)

    @classmethod
    def coordinator(cls, ref: str, name: str) -> Actor:
        return cls(ref, name, "coordinator")


@dataclass(frozen=True)
class Event:
    id: str
    household: str
    at: int
    kind: str
    actor: str
    actor_name: str
    actor_role: str
    detail: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# the changes


def settings(c: Cursor, now_ms: int, actor: Actor, hid: str,
             changes: dict[str, Any]) -> hh.Household:
    """Change the household's alert settings (the rules)."""
    roles.need(actor.role, "rules")
    if not isinstance(changes, dict):
        raise ValueError(  # noqa: TRY004 - a bad setting is a ValueError everywhere here
            "settings are an object of key: value, e.g. {\"no_activity_h\": 12}")
    before = hh.settings_json(hh.household(c, hid).settings)
    home = hh.update_settings(c, hid, changes, now_ms)
    after = hh.settings_json(home.settings)
    diff = {k: [before[k], after[k]] for k in after if before.get(k) != after[k]}
    if diff:
        record(c, now_ms, home, actor, "settings", {"changes": diff})
    return home


def add_pause(c: Cursor, now_ms: int, actor: Actor, hid: str, first: date, last: date,
              reason: str = "") -> hh.PauseRow:
    roles.check_pause_days(actor.role, (last - first).days + 1 if last >= first else 1)
    p = hh.add_pause(c, now_ms, hid, first, last, reason)
    record(c, now_ms, hh.household(c, hid), actor, "pause_added",
           {"pause": p.id, "first": p.first_day, "last": p.last_day, "reason": p.reason})
    return p


def end_pause(c: Cursor, now_ms: int, actor: Actor, hid: str, pid: str, today: date) -> None:
    """End a pause early: one not started yet is removed, an ongoing one keeps the days already
    away (web/views.end_pause)."""
    from mimamori.web import views

    roles.need(actor.role, "end_pause")
    p = next((x for x in hh.pauses(c, hid) if x.id == pid), None)
    if p is None:
        raise hh.NotFound(f"no pause {pid!r} in household {hid!r}")
    days = pause_days(p)
    if days > roles.TABLE[actor.role].pause_days:  # a neighbour ends short pauses only
        raise roles.Forbidden(f"a {actor.role} may end pauses of "
                              f"{roles.TABLE[actor.role].pause_days} day(s) at most; this one "
                              f"is {days} days: ask the family or the coordinator",
                              actor.role, "pause", roles.TABLE[actor.role].pause_days)
    if p.until_switch_on and not p.last_day:  # "until the next switch-on", still open: now
        c.execute("UPDATE pauses SET end_ms = ?, last_day = ? WHERE id = ?",
                  (max(now_ms, p.start_ms), today.isoformat(), pid))
        hh.recheck_at(c, hid, now_ms)
    else:
        views.end_pause(c, hid, pid, today, now_ms)
    record(c, now_ms, hh.household(c, hid), actor, "pause_ended",
           {"pause": pid, "first": p.first_day, "last": p.last_day, "reason": p.reason,
            "ended": today.isoformat()})


def pause_days(p: hh.PauseRow) -> int:
    """How many days a pause spans (first to last day, both counted; "until the next
    switch-on" counts as one)."""
    if p.until_switch_on and (p.end_ms >= hh.OPEN_END_MS or not p.last_day):
        return 1
    return (date.fromisoformat(p.last_day) - date.fromisoformat(p.first_day)).days + 1


def add_absence(c: Cursor, now_ms: int, actor: Actor, hid: str,
                raw: dict[str, Any]) -> list[dict[str, Any]]:
    roles.need(actor.role, "rules")
    out = hh.add_absence(c, hid, raw, now_ms)
    record(c, now_ms, hh.household(c, hid), actor, "absence_added", {"absence": out[-1]})
    return out


def remove_absence(c: Cursor, now_ms: int, actor: Actor, hid: str,
                   number: int) -> list[dict[str, Any]]:
    roles.need(actor.role, "rules")
    before = list(hh.household(c, hid).settings.absences)
    out = hh.remove_absence(c, hid, number, now_ms)
    record(c, now_ms, hh.household(c, hid), actor, "absence_removed",
           {"absence": before[number - 1]})
    return out


def set_tier(c: Cursor, now_ms: int, actor: Actor, hid: str, wid: str,
             tier: int) -> hh.Watcher:
    """Move a watcher to tier 1, 2 or 3 (who is told first)."""
    from mimamori.web import views

    roles.need(actor.role, "tiers")
    old = _member(c, hid, wid)
    w = views.set_watcher_tier(c, hid, wid, tier, now_ms)
    if w.tier != old.tier:
        record(c, now_ms, hh.household(c, hid), actor, "tier",
               {"watcher": wid, "name": w.name, "old": old.tier, "new": w.tier})
    return w


def set_role(c: Cursor, now_ms: int, actor: Actor, hid: str, wid: str,
             role: str) -> hh.Watcher:
    """Give a watcher another role (and that role's tier)."""
    old = _member(c, hid, wid)
    if not isinstance(role, str):
        raise ValueError(  # noqa: TRY004 - a bad setting is a ValueError everywhere here
            f"role must be one of {', '.join(roles.ROLES)} (got {role!r})")
    roles.check_role_change(actor.role, old.role, role)
    if role == old.role:
        return old
    w, _ = hh.update_watcher(c, wid, {"role": role})
    hh.recheck_at(c, hid, now_ms)
    record(c, now_ms, hh.household(c, hid), actor, "role",
           {"watcher": wid, "name": w.name, "old": old.role, "new": w.role,
            "old_tier": old.tier, "new_tier": w.tier})
    return w


def update_watcher(c: Cursor, now_ms: int, actor: Actor, wid: str,
                   changes: dict[str, Any]) -> tuple[hh.Watcher, bool]:
    """households.update_watcher, with a role or tier change checked and told like the others
    (the API's and the CLI's `watcher set`)."""
    old = hh.watcher(c, wid)
    if "role" in changes:
        if not isinstance(changes["role"], str):
            raise ValueError(f"role must be one of {', '.join(roles.ROLES)} "
                             f"(got {changes['role']!r})")
        roles.check_role_change(actor.role, old.role, changes["role"])
    if "tier" in changes:
        roles.need(actor.role, "tiers")
    w, moved = hh.update_watcher(c, wid, changes)
    home = hh.household(c, w.household)
    if w.role != old.role:
        record(c, now_ms, home, actor, "role", {"watcher": wid, "name": w.name, "old": old.role,
                                                "new": w.role, "old_tier": old.tier,
                                                "new_tier": w.tier})
    elif w.tier != old.tier:
        record(c, now_ms, home, actor, "tier",
               {"watcher": wid, "name": w.name, "old": old.tier, "new": w.tier})
    if w.tier != old.tier:
        hh.recheck_at(c, w.household, now_ms)
    return w, moved


def add_watcher(c: Cursor, now_ms: int, actor: Actor, hid: str, name: str, role: str,
                **kw: Any) -> hh.Watcher:
    """Invite a watcher (households.add_watcher's keywords): they get the test message, and
    the change log says who joined and as what; the others are not mailed (setting up a
    household would mail each watcher once per other watcher). Only a coordinator adds a
    coordinator."""
    roles.need(actor.role, "invite")
    if not isinstance(role, str):
        raise ValueError(  # noqa: TRY004 - a bad setting is a ValueError everywhere here
            f"role must be one of {', '.join(roles.ROLES)} (got {role!r})")
    roles.role(role)
    if role not in roles.WATCHER_ROLES:
        roles.check_role_change(actor.role, "coordinator", role)
    w = hh.add_watcher(c, now_ms, hid, name, role, **kw)
    home = hh.household(c, hid)
    notify.invite(c, now_ms, home, w)  # the test message, with its "I received this" link
    record(c, now_ms, home, actor, "watcher_added",
           {"watcher": w.id, "name": w.name, "new": w.role}, tell=False)
    return w


def _member(c: Cursor, hid: str, wid: str) -> hh.Watcher:
    w = hh.watcher(c, wid)
    if w.household != hid or w.removed_at is not None:
        raise hh.NotFound(f"watcher {wid!r} does not watch household {hid!r}")
    return w


# ---------------------------------------------------------------------------------------------
# the record, and telling the others


def record(c: Cursor, now_ms: int, home: hh.Household, actor: Actor, kind: str,
           detail: dict[str, Any], tell: bool = True) -> Event:
    """Write the event and, unless tell is False, tell every other current watcher of the
    household (the coordinator watchers too; never the actor)."""
    if kind not in KINDS:
        raise ValueError(f"unknown change {kind!r}")
    ev = Event("e-" + secrets.token_hex(8), home.id, now_ms, kind, actor.id, actor.name,
               actor.role, detail)
    c.one("SELECT 1 FROM households WHERE id = ?" + c.for_update, (home.id,))  # n in order
    row = c.one("SELECT MAX(n) FROM household_events WHERE household = ?", (home.id,))
    c.execute("INSERT INTO household_events (id, household, n, at, kind, actor, actor_name, "
              "actor_role, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (ev.id, ev.household, (row[0] or 0) + 1 if row else 1, ev.at, ev.kind, ev.actor,
               ev.actor_name, ev.actor_role, json.dumps(detail, ensure_ascii=False)))
    if not tell:
        return ev
    ctx: dict[str, Any] = {"by": actor.name}
    for lang in hh.LANGS:
        ctx[f"by_role_{lang}"] = role_word(actor.role, lang)
        ctx[f"lines_{lang}"] = "\n".join("- " + x for x in describe(ev, lang, home.tz))
    for w in hh.watchers(c, home.id, max_tier=3, min_tier=0):
        if w.id == actor.watcher:
            continue
        notify.enqueue(c, now_ms, "changed", home, w, ctx,
                       not_before=hh.quiet_until(w.quiet_hours, home.tz, now_ms))
    return ev


def events(c: Cursor, hid: str, limit: int = 20) -> list[Event]:
    """The household's changes, newest first."""
    rows = c.all("SELECT id, household, at, kind, actor, actor_name, actor_role, detail "
                 "FROM household_events WHERE household = ? ORDER BY n DESC LIMIT ?",
                 (hid, limit))
    return [Event(*r[:7], json.loads(r[7])) for r in rows]


def role_word(role: str, lang: str) -> str:
    from mimamori.web import i18n

    return i18n.t(lang)(f"role_{role}")


def describe(ev: Event, lang: str, tz: str = "Asia/Tokyo") -> list[str]:
    """What changed, one line each, in `lang` (the dashboard's words, sim/server/web/i18n.py)."""
    from mimamori.web import i18n

    t = i18n.t(lang)
    d = ev.detail
    if ev.kind == "settings":
        return [t("ch_setting", what=_label(t, k), old=_value(t, k, old), new=_value(t, k, new))
                for k, (old, new) in sorted(d["changes"].items())]
    if ev.kind in ("pause_added", "pause_ended"):
        last = d["last"] or t("until_next_on")
        reason = f" ({d['reason']})" if d.get("reason") else ""
        return [t("ch_" + ev.kind, first=d["first"], last=last) + reason]
    if ev.kind in ("absence_added", "absence_removed"):
        a = d["absence"]
        days = ", ".join(t("wd_" + x) for x in a["days"])
        reason = f" ({a['reason']})" if a.get("reason") else ""
        return [t("ch_" + ev.kind, days=days, start=a["from"], end=a["to"]) + reason]
    if ev.kind == "tier":
        return [t("ch_tier", name=d["name"], old=t(f"tier_{d['old']}"),
                  new=t(f"tier_{d['new']}"))]
    if ev.kind == "watcher_added":
        return [t("ch_watcher_added", name=d["name"], new=t(f"role_{d['new']}"))]
    if ev.kind == "role":
        return [t("ch_role", name=d["name"], old=t(f"role_{d['old']}"),
                  new=t(f"role_{d['new']}"))]
    return [ev.kind]


def _label(t: Any, key: str) -> str:
    if key == "activity_rule":
        return t("rule")
    if key == "escalate_h":
        return f"{t('escalate_1')} / {t('escalate_2')}"
    if key in ("window_start", "absences"):
        return t(key)
    return t(f"set_{key}")


def _value(t: Any, key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key == "activity_rule":
        return t(f"rule_{v}")
    if key == "escalate_h":
        return " / ".join(f"{x:g}" for x in v)
    if key == "absences":
        return str(len(v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
