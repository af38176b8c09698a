# SPDX-License-Identifier: MIT
"""`mimamori outage list | add FROM TO | remove FROM`: the server's own outages (listening.py)
that its marks cannot see (its network or the city's firewall cut while it ran, a restore from
a backup), and those recorded by mistake (a host clock stepped forward). Times are local
(--tz, default Asia/Tokyo); docs/operations.md section 7."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mimamori import households as hh
from mimamori import listening
from mimamori.clock import HOUR_MS, to_ms

when = listening.local_time


def _instant(text: str, tz: str) -> int:
    try:
        d = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"{text!r}: write a local time as YYYY-MM-DDTHH:MM") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=ZoneInfo(tz))
    return to_ms(d.timestamp())


def cmd_outage(args: argparse.Namespace, store: Any) -> int:
    db, tz = hh.open_people(store.db), args.tz  # the people tables hold the outages' too
    try:
        ZoneInfo(tz)
    except (ValueError, KeyError):
        raise ValueError(f"--tz {tz!r}: use an IANA name such as Asia/Tokyo") from None
    now_ms = to_ms(args.clock_fn())
    if args.outage_command == "add":
        s, e = listening.add(db, _instant(args.start, tz), _instant(args.end, tz), now_ms, tz)
        print(f"recorded: the server was not listening from {when(s, tz)} to "
              f"{when(e, tz)} ({tz}); every household is evaluated again at the next sweep")
        return 0
    if args.outage_command == "remove":
        s, e = listening.remove(db, _instant(args.start, tz), now_ms, tz)
        print(f"removed the outage from {when(s, tz)} to {when(e, tz)} ({tz})")
        return 0
    with db.read() as c:
        rows = listening.spans(c)
    for s, e in rows:
        print(f"{when(s, tz)}  {when(e, tz)}  {(e - s) / HOUR_MS:7.1f} h")
    if not rows:
        print("no outage recorded")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("outage", help="the server's own outages: list, add, remove")
    ps = p.add_subparsers(dest="outage_command", required=True)
    ls = ps.add_parser("list", help="the outages recorded (local times, --tz)")
    ad = ps.add_parser("add", help="record an outage the server could not see itself (its "
                       "network cut while it ran, a restore from a backup)")
    ad.add_argument("start", metavar="FROM", help="local time, e.g. 2026-12-04T10:00")
    ad.add_argument("end", metavar="TO")
    rm = ps.add_parser("remove", help="forget an outage recorded by mistake (a clock stepped "
                       "forward)")
    rm.add_argument("start", metavar="FROM", help="its start, as `mimamori outage list` shows")
    for q in (ls, ad, rm):
        q.add_argument("--tz", default="Asia/Tokyo", help="time zone of the times (default "
                       "Asia/Tokyo)")
        q.set_defaults(func=cmd_outage)
