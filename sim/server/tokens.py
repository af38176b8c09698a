# SPDX-License-Identifier: MIT
"""API tokens for the JSON API: made, listed, revoked, with an expiry and a scope.

    mimamori token create NAME [--scope read|write|all] [--household H ...] [--days N]
    mimamori token list
    mimamori token revoke ID|NAME

A token is shown once; only its SHA-256 is kept (table api_tokens). Its id is the first 12
hex digits of that digest. Scopes:

    read    GET only
    write   also changes households, watchers, pauses, alerts (not bulbs' keys)
    all     also registers bulbs (which mints their keys), attaches them to households and
            runs a sweep

`--household` limits a token to those households: their paths, their alerts and watchers;
lists across households and the sweep are refused. A token past its expiry or revoked is
refused like an unknown one (401); a request outside its scope gets 403.

It must never let a revoked or expired token through, nor a scoped one outside its scope.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass

from mimamori import households as hh
from mimamori.clock import DAY_MS
from mimamori.storage import Database, migrate

SCOPES = ("read", "write", "all")

SCHEMA: list[list[str]] = [
    [
        "ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT",
        "ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT",
        "ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'all'",
        "ALTER TABLE api_tokens ADD COLUMN households TEXT",
    ],
]

_COLS = "digest, name, created_at, expires_at, revoked_at, scope, households"


@dataclass(frozen=True)
class Token:
    digest: str
    name: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    scope: str
    households: tuple[str, ...] | None  # None: every household

    @property
    def id(self) -> str:
        return self.digest[:12]

    def state(self, now_ms: int) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now_ms > self.expires_at:
            return "expired"
        return "valid"


def open_tokens(db: Database) -> Database:
    hh.open_people(db)
    migrate(db, "tokens", SCHEMA)
    return db


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token(row: tuple) -> Token:
    d, name, created, expires, revoked, scope, homes = row
    return Token(d, name, created, expires, revoked, scope,
                 tuple(json.loads(homes)) if homes else None)


def create(db: Database, name: str, now_ms: int, scope: str = "all",
           households: list[str] | None = None, days: float | None = None) -> str:
    """A new token (shown once; only its digest is kept)."""
    open_tokens(db)
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: use read, write or all")
    if days is not None and not days > 0:
        raise ValueError(f"--days {days}: a token lasts a positive number of days")
    token = "mmr_" + secrets.token_urlsafe(24)
    with db.tx() as c:
        for hid in households or ():
            hh.household(c, hid)  # NotFound for a household that does not exist
        c.execute(f"INSERT INTO api_tokens ({_COLS}) VALUES (?, ?, ?, ?, NULL, ?, ?)",
                  (_digest(token), name, now_ms,
                   None if days is None else now_ms + int(days * DAY_MS), scope,
                   json.dumps(sorted(set(households))) if households else None))
    return token


def find(db: Database, token: str, now_ms: int) -> Token | None:
    """The token's row when it is valid now (not revoked, not expired), else None."""
    with db.read() as c:
        row = c.one(f"SELECT {_COLS} FROM api_tokens WHERE digest = ?", (_digest(token),))
    if row is None:
        return None
    t = _token(row)
    return t if t.state(now_ms) == "valid" else None


def tokens(db: Database) -> list[Token]:
    open_tokens(db)
    with db.read() as c:
        return [_token(r) for r in c.all(f"SELECT {_COLS} FROM api_tokens "
                                         "ORDER BY created_at, name")]


def revoke(db: Database, ref: str, now_ms: int) -> Token:
    """Revoke the token whose id starts with ref (at least 6 hex digits) or whose name is ref;
    ValueError when none or several match."""
    open_tokens(db)
    ref = ref.strip()
    hits = [t for t in tokens(db) if t.name == ref
            or (len(ref) >= 6 and t.digest.startswith(ref.lower()))]
    if not hits:
        raise ValueError(f"no token {ref!r}: see `mimamori token list`")
    if len(hits) > 1:
        raise ValueError(f"{ref!r} names {len(hits)} tokens: revoke by id ("
                         + ", ".join(t.id for t in hits) + ")")
    with db.tx() as c:
        c.execute("UPDATE api_tokens SET revoked_at = ? WHERE digest = ? AND revoked_at IS NULL",
                  (now_ms, hits[0].digest))
    return next(t for t in tokens(db) if t.digest == hits[0].digest)


_HOME = re.compile(r"^/api/v1/households/([^/]+)")
_ALERT = re.compile(r"^/api/v1/alerts/([^/]+)")
_WATCHER = re.compile(r"^/api/v1/watchers/([^/]+)")


def refusal(db: Database, t: Token, method: str, path: str, query: str) -> str | None:
    """Why this token may not make this request (a 403's detail), or None when it may."""
    writes = method not in ("GET", "HEAD", "OPTIONS")
    if writes and t.scope == "read":
        return f"token {t.id} is read-only: make one with --scope write to change things"
    # registering a bulb mints its key; attaching one moves it between households
    bulbs = re.match(r"^/api/v1/(households/[^/]+/)?bulbs(/|$)", path)
    if writes and t.scope != "all" and (bulbs or path.startswith(("/api/v1/sweep",
                                                                  "/api/v1/releases"))):
        return (f"token {t.id} may not register or attach bulbs, sweep or roll out firmware: "
                "make one with --scope all")
    if t.households is None:
        return None
    home = _home_of(db, path, query)
    if home is None or home not in t.households:
        return (f"token {t.id} is for household(s) {', '.join(t.households)} only"
                + ("" if home is None else f", not {home}"))
    return None


def _home_of(db: Database, path: str, query: str) -> str | None:
    """The household a request is about, or None when it spans households."""
    from urllib.parse import parse_qs

    m = _HOME.match(path)
    if m:
        return m.group(1)
    m = _ALERT.match(path)
    m2 = _WATCHER.match(path)
    with db.read() as c:
        if m:
            row = c.one("SELECT household FROM alerts WHERE id = ?", (m.group(1),))
            return row[0] if row else None
        if m2:
            row = c.one("SELECT household FROM watchers WHERE id = ?", (m2.group(1),))
            return row[0] if row else None
    if path.rstrip("/") == "/api/v1/alerts":
        homes = parse_qs(query).get("household", [])
        return homes[0] if len(homes) == 1 else None
    return None
