# SPDX-License-Identifier: MIT
"""Moving a pilot's data to another store: `mimamori --db var/mimamori.db db copy --to URL`.

A pilot that starts on SQLite and grows onto PostgreSQL keeps everything: bulbs and their keys,
every record, households, watchers, alerts and their history, the outbox, sign-in links, API
tokens, the link key (so links already sent keep working). Both stores are migrated to this
code's schema first; the source is read in one snapshot (the server may keep running on it,
though what arrives after the snapshot is not copied: stop the server for the last copy); the
destination is written in one transaction, so a failed copy leaves it empty.

It must never write into a destination that already holds data, and never change the source
beyond migrating it.
"""

from __future__ import annotations

import argparse
from typing import Any

from mimamori import tokens
from mimamori.storage import Database, Store
from mimamori.web import auth

# parents before children (foreign keys); tables not named here (added by later migrations)
# come after, in name order
ORDER = ("devices", "journals", "records", "batches", "losses", "households", "watchers",
         "pauses", "alerts", "alert_events", "outbox", "server_secrets", "api_tokens",
         "web_links")
SKIP = ("schema_versions", "rate_limits")  # made by the migrations; counts that expire anyway
CHUNK = 5000


def _open(url: str) -> Database:
    db = Database(url)
    Store(db)
    auth.open_web(db)  # and the people tables
    tokens.open_tokens(db)
    return db


def copy(src_url: str, dst_url: str) -> dict[str, int]:
    """Copy every table; {table: rows}. ValueError when the destination is not empty."""
    src, dst = _open(src_url), _open(dst_url)
    try:
        with src.read() as s, dst.tx() as d:
            mine = dict(s.all("SELECT component, version FROM schema_versions"))
            theirs = dict(d.all("SELECT component, version FROM schema_versions"))
            if mine != theirs:
                raise ValueError(f"the stores' schemas differ ({mine} vs {theirs}): run the "
                                 "same mimamori on both")
            tables = [t for t in s.tables() if t not in SKIP]
            order = [t for t in ORDER if t in tables] + sorted(set(tables) - set(ORDER))
            for t in order:
                if d.one(f"SELECT 1 FROM {t} LIMIT 1"):
                    raise ValueError(f"{dst_url}: table {t} already has rows; copy into an "
                                     "empty database")
            out = {}
            for t in order:
                out[t] = _table(s, d, t)
        return out
    finally:
        src.close()
        dst.close()


def _table(s: Any, d: Any, table: str) -> int:
    cols = s.columns(table)
    missing = sorted(set(cols) - set(d.columns(table)))
    if missing:
        raise ValueError(f"table {table}: the destination has no column {', '.join(missing)}")
    names = ", ".join(cols)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})"
    n, chunk = 0, []
    for row in s.rows(f"SELECT {names} FROM {table}", size=CHUNK):
        chunk.append(row)
        if len(chunk) >= CHUNK:
            n += d.executemany(insert, chunk)
            chunk = []
    if chunk:
        n += d.executemany(insert, chunk)
    return n


def cmd_copy(args: argparse.Namespace, store: Store) -> int:
    src = store.db.url
    store.close()
    counts = copy(src, args.to)
    total = sum(counts.values())
    print(f"copied {total} rows into {args.to.split('@')[-1]}: "
          + ", ".join(f"{t} {n}" for t, n in counts.items() if n))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("db", help="the database: copy it to another store")
    ps = p.add_subparsers(dest="db_command", required=True)
    c = ps.add_parser("copy", help="copy everything from --db into an empty database (e.g. "
                      "from the pilot's SQLite file to PostgreSQL)")
    c.add_argument("--to", required=True, help="the destination: a file or postgresql://...")
    c.set_defaults(func=cmd_copy)
