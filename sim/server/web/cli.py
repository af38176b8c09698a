# SPDX-License-Identifier: MIT
"""`mimamori` commands for the dashboard's sign-in links.

    mimamori dashboard invite WATCHER_ID [--url URL]   an invitation link (14 days, works once)
    mimamori coordinator link [--name N] [--url URL]   a coordinator sign-in link (1 day, once)

URL is where people reach the server: --url, else $MIMAMORI_PUBLIC_URL, else the address the
server last started on with this database (`mimamori serve` records it: `make demo`'s port,
too), else http://127.0.0.1:8000. It must never print a link for a removed watcher.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from mimamori import clock as clocks
from mimamori import households as hh
from mimamori import notify
from mimamori.storage import Database, Store
from mimamori.web import auth


def record_served_url(db: Database, url: str) -> None:
    """Remember where the server listens (at `mimamori serve`), for the links printed here."""
    hh.open_people(db)
    with db.tx() as c:
        c.execute("INSERT INTO server_secrets (name, value) VALUES ('served_url', ?) "
                  "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (url,))


def _url(args: argparse.Namespace, store: Store) -> str:
    if args.url or os.environ.get("MIMAMORI_PUBLIC_URL"):
        return (args.url or notify.NotifierSettings.from_env().public_url).rstrip("/")
    with store.db.read() as c:
        row = c.one("SELECT value FROM server_secrets WHERE name = 'served_url'")
    return (row[0] if row else notify.NotifierSettings.public_url).rstrip("/")


def dashboard_invite(args: argparse.Namespace, store: Store) -> int:
    auth.open_web(store.db)
    now = clocks.ms(args.clock_fn)
    try:
        with store.db.tx() as c:
            w = hh.watcher(c, args.watcher)
            token = auth.make_link(c, auth.WATCHER, w.id, now, auth.INVITE_DAYS * clocks.DAY_MS)
    except hh.NotFound as e:
        raise ValueError(str(e)) from None
    print(f"invitation for {w.name} ({w.household}); valid {auth.INVITE_DAYS} days, works once:")
    print(auth.link_url(_url(args, store), token))
    return 0


def coordinator_link(args: argparse.Namespace, store: Store) -> int:
    auth.open_web(store.db)
    now = clocks.ms(args.clock_fn)
    with store.db.tx() as c:
        token = auth.make_link(c, auth.COORDINATOR, args.name, now, auth.COORDINATOR_LINK_MS)
    print("coordinator sign-in link; valid 24 hours, works once:")
    print(auth.link_url(_url(args, store), token))
    return 0


def add_commands(sub: Any) -> None:
    d = sub.add_parser("dashboard", help="dashboard: invitation links for watchers")
    ds = d.add_subparsers(dest="dashboard_command", required=True)
    p = ds.add_parser("invite", help="a sign-in link for a watcher (send it to them)")
    p.add_argument("watcher", help="watcher id (see `mimamori watcher list HOUSEHOLD`)")
    p.add_argument("--url", help="the server's public URL")
    p.set_defaults(func=dashboard_invite)
    c = sub.add_parser("coordinator", help="the coordinator's sign-in link")
    cs = c.add_subparsers(dest="coordinator_command", required=True)
    p = cs.add_parser("link", help="a one-time sign-in link to the coordinator overview")
    p.add_argument("--name", default="coordinator", help="shown on the pages (default coordinator)")
    p.add_argument("--url", help="the server's public URL")
    p.set_defaults(func=coordinator_link)
