# SPDX-License-Identifier: MIT
"""`mimamori` commands for households, watchers, pauses, alerts, the outbox and API tokens.

    mimamori household add ID [--name N] [--tz Asia/Tokyo] [--rule learned|fixed|daily_window]
    mimamori household list | show ID [--json]
    mimamori household settings ID [key=value ...]   (no_activity_h=12, learned_max_h=36, ...)
    mimamori household pause ID FIRST LAST [--reason R]   (dates YYYY-MM-DD, household time)
    mimamori household resume ID PAUSE_ID
    mimamori household absence add ID --days tue,fri --from 09:00 --to 17:00 [--reason R]
    mimamori household absence list ID | remove ID NUMBER
    mimamori household placement ID     (does each bulb's room give enough signal)
    mimamori watcher invite HOUSEHOLD NAME [--email A] [--webhook URL] [--console]
                                          [--role family|neighbour|commissioner|visit_service|
                                           coordinator] [--lang ja|en]
                                          [--quiet-hours 22:00-07:00|none]
    mimamori watcher list HOUSEHOLD | remove WATCHER_ID
    mimamori watcher set WATCHER_ID key=value ...   (quiet_hours=21:00-08:00, lang=en,
                                                     role=neighbour, tier=2, ...)
    mimamori watcher roles              (what each role may see and change: sim/server/roles.py)
    mimamori alert list [--household H] [--active] [--json]
    mimamori alert claim ALERT WATCHER | release ALERT WATCHER
                 | resolve ALERT WATCHER OUTCOME [--note N] [--no-pause]
    mimamori sweep | deliver            (one pass now; the server does both periodically)
    mimamori outbox [--state pending|sent|dead]
    mimamori token create NAME [--scope read|write|all] [--household H ...] [--days N]
    mimamori token list | revoke ID|NAME   (API tokens for the JSON API: sim/server/tokens.py)

Bulbs: `mimamori device register --household ID` (sim/server/cli.py).
The command line acts as the coordinator (`--by NAME` names who, default "coordinator"): its
changes to settings, pauses, absences, roles and tiers are recorded and told to the household's
watchers like the dashboard's (sim/server/changes.py).
Messages are written to the outbox; a running server delivers them (or `mimamori deliver`),
with MIMAMORI_SMTP / MIMAMORI_PUBLIC_URL / MIMAMORI_MAIL_FROM from the environment.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from mimamori import alerts, api, notify, roles, sweeper, tokens
from mimamori import changes as changes_
from mimamori import clock as clocks
from mimamori import households as hh
from mimamori.storage import Store


def _now(args: argparse.Namespace) -> int:
    return clocks.ms(args.clock_fn)


def _t(ms: int | None, tz: str) -> str:
    """A time in the household's own time zone, labelled (2026-03-16 10:30 JST): every list
    (households, alerts) reads the same way."""
    if ms is None:
        return "-"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(clocks.to_s(ms), ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _run(args: argparse.Namespace, store: Store, fn: Any) -> Any:
    hh.open_people(store.db)
    try:
        with store.db.tx() as c:
            return fn(c, _now(args))
    except hh.NotFound as e:
        raise ValueError(str(e)) from None
    except (alerts.Conflict, roles.Forbidden) as e:
        raise ValueError(str(e)) from None


def _by(args: argparse.Namespace) -> changes_.Actor:
    name = getattr(args, "by", None) or "coordinator"
    return changes_.Actor.coordinator(f"cli:{name}", name)


def _value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"{text!r}: write settings as key=value, e.g. no_activity_h=12")
    k, raw = text.split("=", 1)
    try:
        v = json.loads(raw)
    except ValueError:
        v = raw
    return k.strip(), v


def household_add(args: argparse.Namespace, store: Store) -> int:
    st = dict(_value(a) for a in args.set or [])
    if args.rule:
        st["activity_rule"] = args.rule
    h = _run(args, store, lambda c, now: hh.add_household(c, now, args.id, args.name or "",
                                                           args.tz, st))
    print(f"household {h.id} ({h.name}, {h.tz}) added; next: `mimamori watcher invite {h.id} "
          f"NAME --email ...` and `mimamori device register --household {h.id}`")
    return 0


def household_list(args: argparse.Namespace, store: Store) -> int:
    rows = _run(args, store, lambda c, now: [
        (h, len(alerts.list_alerts(c, h.id, active_only=True)), len(hh.watchers(c, h.id)))
        for h in hh.households(c)])
    if args.json:
        print(json.dumps([{**{k: v for k, v in h.__dict__.items() if k != "settings"},
                           "active_alerts": n, "watchers": nw} for h, n, nw in rows]))
        return 0
    if not rows:
        print("no households: add one with `mimamori household add ID`")
    for h, n, nw in rows:
        print(f"{h.id:<16} {h.name:<16} watchers {nw}  active alerts {n}  "
              f"next check {_t(h.next_check, h.tz)}")
    return 0


def household_show(args: argparse.Namespace, store: Store) -> int:
    st = _run(args, store, lambda c, now: api._status(hh.household(c, args.id), c, store))
    print(json.dumps(st, indent=1, ensure_ascii=False, default=str))
    return 0


def household_settings(args: argparse.Namespace, store: Store) -> int:
    if args.assignments:
        changes = dict(_value(a) for a in args.assignments)
        h = _run(args, store, lambda c, now: changes_.settings(c, now, _by(args), args.id,
                                                                changes))
    else:
        h = _run(args, store, lambda c, now: hh.household(c, args.id))
    print(json.dumps(hh.settings_json(h.settings), sort_keys=True))
    return 0


def household_pause(args: argparse.Namespace, store: Store) -> int:
    p = _run(args, store, lambda c, now: changes_.add_pause(
        c, now, _by(args), args.id, hh.parse_day(args.first), hh.parse_day(args.last),
        args.reason))
    print(f"household {args.id} paused from {p.first_day} to {p.last_day} inclusive "
          f"(pause {p.id}); alerts resume by themselves after that")
    return 0


def household_resume(args: argparse.Namespace, store: Store) -> int:
    def do(c: Any, now: int) -> None:
        home = hh.household(c, args.id)
        changes_.end_pause(c, now, _by(args), args.id, args.pause, hh.parse_day(
            hh.local_day(now, home.tz)))

    _run(args, store, do)
    print(f"pause {args.pause} ended: household {args.id} is watched again (days already away "
          "stay paused)")
    return 0


def household_absence(args: argparse.Namespace, store: Store) -> int:
    if args.absence_command == "add":
        raw = {"days": args.days, "from": args.start, "to": args.end, "reason": args.reason}
        got = _run(args, store, lambda c, now: changes_.add_absence(c, now, _by(args), args.id,
                                                                     raw))
        print(f"household {args.id}: absence {len(got)} added ({_absence(got[-1])}); no alert "
              "while away, quiet spells count from the return")
        return 0
    if args.absence_command == "remove":
        got = _run(args, store, lambda c, now: changes_.remove_absence(
            c, now, _by(args), args.id, args.number))
    else:
        got = _run(args, store, lambda c, now: list(hh.household(c, args.id).settings.absences))
    if not got:
        print(f"household {args.id}: no recurring absences")
    for i, a in enumerate(got, 1):
        print(f"{i}  {_absence(a)}")
    return 0


def _absence(a: dict[str, Any]) -> str:
    return (",".join(a["days"]) + f" {a['from']}-{a['to']}"
            + (f" ({a['reason']})" if a.get("reason") else ""))


def household_placement(args: argparse.Namespace, store: Store) -> int:
    got = _run(args, store, lambda c, now: sweeper.placement_of(
        store, c, hh.household(c, args.id), now))
    if not got:
        print(f"household {args.id}: no bulb yet (`mimamori device register --household "
              f"{args.id}`)")
    for p in got.values():
        print(f"{p.verdict:<8} {p.words}")
    return 0


def watcher_set(args: argparse.Namespace, store: Store) -> int:
    changes = dict(_value(a) for a in args.assignments)
    if "quiet_hours" in changes and not isinstance(changes["quiet_hours"], str):
        changes["quiet_hours"] = str(changes["quiet_hours"])

    def do(c: Any, now: int) -> tuple[hh.Watcher, bool]:
        w, moved = changes_.update_watcher(c, now, _by(args), args.id, changes)
        if moved:
            notify.invite(c, now, hh.household(c, w.household), w)
        return w, moved

    w, moved = _run(args, store, do)
    print(json.dumps({**w.public(), "test_message": moved}, ensure_ascii=False))
    return 0


def watcher_invite(args: argparse.Namespace, store: Store) -> int:
    def do(c: Any, now: int) -> hh.Watcher:
        w = hh.add_watcher(c, now, args.household, args.name, args.role, args.lang, args.email,
                           args.webhook, args.console, quiet_hours=args.quiet_hours)
        notify.invite(c, now, hh.household(c, args.household), w)
        return w

    w = _run(args, store, do)
    print(f"watcher {w.id} ({w.name}, {w.role}, tier {w.tier}, {w.lang}) added to "
          f"{w.household}; test message queued on: {', '.join(w.channels())}")
    if w.webhook_secret:
        print(f"webhook secret (HMAC-SHA256 key, hex; shown once): {w.webhook_secret}")
    return 0


def watcher_list(args: argparse.Namespace, store: Store) -> int:
    ws = _run(args, store, lambda c, now: (hh.household(c, args.household),
                                           hh.watchers(c, args.household))[1])
    for w in ws:
        print(f"{w.id:<16} {w.name:<12} {w.role:<13} tier {w.tier}  {w.lang}  "
              + ", ".join(f"{ch}" for ch in w.channels()))
    return 0


def watcher_roles(args: argparse.Namespace, store: Store) -> int:
    """The role table: who may see and change what (the same table as docs/roles.md)."""
    for r in roles.TABLE.values():
        may = ", ".join(a for a in roles.ACTIONS if a in r.may)
        pause = f"; pauses up to {r.pause_days} days" if r.pause_days else ""
        print(f"{r.name:<14} tier {r.tier}  {may}{pause}\n{'':<22}{r.why}")
    return 0


def watcher_remove(args: argparse.Namespace, store: Store) -> int:
    _run(args, store, lambda c, now: hh.remove_watcher(c, args.id, now))
    print(f"watcher {args.id} removed")
    return 0


def alert_list(args: argparse.Namespace, store: Store) -> int:
    rows = _run(args, store, lambda c, now: [alerts.public(c, a) for a in alerts.list_alerts(
        c, args.household, active_only=args.active)])
    tz = _run(args, store, lambda c, now: {h.id: h.tz for h in hh.households(c)})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print("no alerts")
    for a in rows:
        who = a.get("claimed_by_name") or ""
        print(f"{a['id']:<15} {a['household']:<12} {a['rule']:<14} {a['state']:<8} "
              f"{_t(a['opened_at'], tz.get(a['household'], 'UTC'))}  {who + ' is going to check  ' if who else ''}"
              f"{a['outcome'] or ''} {a['evidence']}")
    return 0


def alert_claim(args: argparse.Namespace, store: Store) -> int:
    a = _run(args, store, lambda c, now: alerts.public(c, alerts.claim(
        c, args.alert, args.watcher, now, notify.NotifierSettings.from_env())))
    print(f"alert {a['id']}: {a['claimed_by_name']} is going to check; the others are told")
    return 0


def alert_release(args: argparse.Namespace, store: Store) -> int:
    a = _run(args, store, lambda c, now: alerts.public(c, alerts.release(
        c, args.alert, args.watcher, now, notify.NotifierSettings.from_env())))
    print(f"alert {a['id']}: handed back, nobody is going to check now; the others are told")
    return 0


def alert_resolve(args: argparse.Namespace, store: Store) -> int:
    a = _run(args, store, lambda c, now: alerts.public(c, alerts.resolve(
        c, args.alert, args.watcher, args.outcome, args.note, now, notify.NotifierSettings.from_env(),
        pause=False if args.no_pause else None)))
    paused = args.outcome == "needed_help" and not args.no_pause
    print(f"alert {a['id']} resolved by {a['resolved_by_name']}: {a['outcome']}"
          + (f" ({a['note']})" if a["note"] else "") + "; everyone is told"
          + ("; alerts paused until the next switch-on" if paused else ""))
    return 0


def cmd_sweep(args: argparse.Namespace, store: Store) -> int:
    hh.open_people(store.db)
    r = sweeper.sweep(store.db, _now(args), notify.NotifierSettings.from_env())
    print(f"evaluated {len(r.evaluated)} household(s)"
          + "".join(f"\n  {h}: failed: {e}" for h, e in r.failed.items()))
    return 1 if r.failed else 0


def cmd_deliver(args: argparse.Namespace, store: Store) -> int:
    hh.open_people(store.db)
    r = notify.deliver_due(store.db, _now(args), notify.NotifierSettings.from_env())
    print(f"sent {r['sent']}, failed {r['failed']} (retried later), gave up {r['dead']}")
    return 0


def cmd_outbox(args: argparse.Namespace, store: Store) -> int:
    hh.open_people(store.db)
    for o in notify.outbox(store.db, state=args.state):
        print(f"{o.id}  {o.state:<7} {o.channel:<7} {o.kind:<9} to {o.payload['to']}: "
              f"{o.subject}" + (f"  [{o.last_error}]" if o.last_error else ""))
    return 0


def cmd_token(args: argparse.Namespace, store: Store) -> int:
    tok = api.create_token(store.db, args.name, clocks.now_ms(), args.scope,
                           args.household, args.days)
    limits = f"scope {args.scope}" + (f", households {', '.join(args.household)}"
                                      if args.household else "") + (
        f", {args.days:g} days" if args.days else ", no expiry")
    print(tok if args.quiet else f"API token for {args.name} ({limits}; shown once; send it as "
          f"'Authorization: Bearer <token>'):\n{tok}")
    return 0


def cmd_token_list(args: argparse.Namespace, store: Store) -> int:
    now = clocks.now_ms()
    rows = tokens.tokens(store.db)
    if args.json:
        print(json.dumps([{"id": t.id, "name": t.name, "state": t.state(now), "scope": t.scope,
                           "households": t.households, "created_at": t.created_at,
                           "expires_at": t.expires_at, "revoked_at": t.revoked_at}
                          for t in rows]))
        return 0
    if not rows:
        print("no API tokens: make one with `mimamori token create NAME`")
    for t in rows:
        exp = "never" if t.expires_at is None else time.strftime(
            "%Y-%m-%d", time.gmtime(clocks.to_s(t.expires_at)))
        print(f"{t.id}  {t.state(now):<7} {t.scope:<5} expires {exp:<10}  {t.name}"
              + (f"  (households {', '.join(t.households)})" if t.households else ""))
    return 0


def cmd_token_revoke(args: argparse.Namespace, store: Store) -> int:
    t = tokens.revoke(store.db, args.token, clocks.now_ms())
    print(f"token {t.id} ({t.name}) revoked: it no longer works")
    return 0


def add_commands(sub: Any) -> None:
    h = sub.add_parser("household", help="households: add, list, show, settings, pause, resume")
    hs = h.add_subparsers(dest="household_command", required=True)
    p = hs.add_parser("add", help="add a household")
    p.add_argument("id")
    p.add_argument("--name")
    p.add_argument("--tz", default="Asia/Tokyo")
    p.add_argument("--rule", choices=("learned", "fixed", "daily_window"))
    p.add_argument("--set", action="append", metavar="key=value", help="a setting (repeatable)")
    p.set_defaults(func=household_add)
    p = hs.add_parser("list", help="households, their alerts and next check")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=household_list)
    p = hs.add_parser("show", help="one household as JSON")
    p.add_argument("id")
    p.set_defaults(func=household_show)
    p = hs.add_parser("settings", help="show or change alert settings")
    p.add_argument("--by", help="who makes the change (told to the household's watchers)")
    p.add_argument("id")
    p.add_argument("assignments", nargs="*", metavar="key=value")
    p.set_defaults(func=household_settings)
    p = hs.add_parser("pause", help="planned absence from FIRST to LAST (YYYY-MM-DD)")
    p.add_argument("--by", help="who makes the change (told to the household's watchers)")
    p.add_argument("id")
    p.add_argument("first")
    p.add_argument("last")
    p.add_argument("--reason", default="")
    p.set_defaults(func=household_pause)
    p = hs.add_parser("resume", help="end a pause early")
    p.add_argument("--by", help="who makes the change (told to the household's watchers)")
    p.add_argument("id")
    p.add_argument("pause")
    p.set_defaults(func=household_resume)
    p = hs.add_parser("absence", help="recurring part-day absences (day service): add, list, "
                      "remove")
    ab = p.add_subparsers(dest="absence_command", required=True)
    q = ab.add_parser("add", help="e.g. --days tue,fri --from 09:00 --to 17:00")
    q.add_argument("--by", help="who makes the change (told to the household's watchers)")
    q.add_argument("id")
    q.add_argument("--days", required=True, help="weekdays, e.g. tue,fri")
    q.add_argument("--from", dest="start", required=True, help="HH:MM (household time)")
    q.add_argument("--to", dest="end", required=True, help="HH:MM")
    q.add_argument("--reason", default="")
    q.set_defaults(func=household_absence)
    q = ab.add_parser("list")
    q.add_argument("id")
    q.set_defaults(func=household_absence)
    q = ab.add_parser("remove")
    q.add_argument("--by", help="who makes the change (told to the household's watchers)")
    q.add_argument("id")
    q.add_argument("number", type=int, help="as numbered by `absence list`")
    q.set_defaults(func=household_absence)
    p = hs.add_parser("placement", help="does each bulb's room give enough signal to watch over")
    p.add_argument("id")
    p.set_defaults(func=household_placement)

    w = sub.add_parser("watcher", help="watchers: invite (sends a test message), list, remove")
    ws = w.add_subparsers(dest="watcher_command", required=True)
    p = ws.add_parser("invite", help="add a watcher and send them a test message")
    p.add_argument("household")
    p.add_argument("name")
    p.add_argument("--email")
    p.add_argument("--webhook")
    p.add_argument("--console", action="store_true")
    p.add_argument("--role", default=roles.DEFAULT_ROLE, choices=roles.ROLES,
                   help="what they may change (`mimamori watcher roles`)")
    p.add_argument("--lang", default="ja", choices=hh.LANGS)
    p.add_argument("--quiet-hours", default="22:00-07:00",
                   help="HH:MM-HH:MM, or none: reminders and weak alerts wait until they end")
    p.set_defaults(func=watcher_invite)
    p = ws.add_parser("set", help="change a watcher: key=value (quiet_hours, lang, email, role, "
                      "tier, ...)")
    p.add_argument("id")
    p.add_argument("assignments", nargs="+", metavar="key=value")
    p.add_argument("--by", help="who makes the change (told to the household's watchers)")
    p.set_defaults(func=watcher_set)
    p = ws.add_parser("roles", help="what each role may see and change")
    p.set_defaults(func=watcher_roles, needs_store=False)  # a table: no database
    p = ws.add_parser("list")
    p.add_argument("household")
    p.set_defaults(func=watcher_list)
    p = ws.add_parser("remove")
    p.add_argument("id")
    p.set_defaults(func=watcher_remove)

    a = sub.add_parser("alert", help="alerts: list, claim, resolve")
    asub = a.add_subparsers(dest="alert_command", required=True)
    p = asub.add_parser("list")
    p.add_argument("--household")
    p.add_argument("--active", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=alert_list)
    p = asub.add_parser("claim", help="WATCHER is going to check (the others are told)")
    p.add_argument("alert")
    p.add_argument("watcher")
    p.set_defaults(func=alert_claim)
    p = asub.add_parser("release", help="WATCHER claimed it but cannot go: open it again "
                        "(the others are told)")
    p.add_argument("alert")
    p.add_argument("watcher")
    p.set_defaults(func=alert_release)
    p = asub.add_parser("resolve", help="record the outcome (everyone is told)")
    p.add_argument("alert")
    p.add_argument("watcher")
    p.add_argument("outcome", choices=alerts.OUTCOMES)
    p.add_argument("--note", default="")
    p.add_argument("--no-pause", action="store_true",
                   help="needed_help: do not pause alerts until the next switch-on")
    p.set_defaults(func=alert_resolve)

    p = sub.add_parser("sweep", help="evaluate the due households now")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("deliver", help="send the pending messages now")
    p.set_defaults(func=cmd_deliver)
    p = sub.add_parser("outbox", help="messages and their delivery state")
    p.add_argument("--state", choices=("pending", "sent", "dead"))
    p.set_defaults(func=cmd_outbox)
    t = sub.add_parser("token", help="API tokens for the JSON API")
    ts = t.add_subparsers(dest="token_command", required=True)
    p = ts.add_parser("create", help="a new token (shown once)")
    p.add_argument("name")
    p.add_argument("--scope", choices=tokens.SCOPES, default="write",
                   help="read: GET only; write: also changes (default); all: also registers "
                        "bulbs (mints their keys)")
    p.add_argument("--household", action="append", metavar="H",
                   help="only this household (repeatable; default: all)")
    p.add_argument("--days", type=float, help="expires after this many days (default: never)")
    p.add_argument("--quiet", action="store_true", help="print only the token")
    p.set_defaults(func=cmd_token)
    p = ts.add_parser("list", help="tokens: id, state, scope, expiry, name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token_list)
    p = ts.add_parser("revoke", help="stop a token from working (by id or name)")
    p.add_argument("token", metavar="ID|NAME")
    p.set_defaults(func=cmd_token_revoke)
