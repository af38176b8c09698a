# SPDX-License-Identifier: MIT
"""Who is asking: sign-in links, signed session cookies, CSRF tokens and the sign-in rate limit.

    sign-in link   /in/<token>: made by `mimamori dashboard invite WATCHER` (an invitation, 14
                   days), by the sign-in page (a one-time link e-mailed to a known address, 1 h),
                   or by `mimamori coordinator link` (the coordinator, 1 day). Only the token's
                   SHA-256 is stored (table web_links); a link works once. Opening it shows a
                   button; only the button's POST signs in, so a mail scanner that fetches the
                   link signs nobody in and spends nothing.
    session        cookie `mimamori_session` = base64(JSON) "." base64(HMAC-SHA256), HttpOnly,
                   SameSite=Lax, Secure when the request came over https, 30 days. It holds the
                   role ("watcher" with the watcher id, "coordinator" with a name, or "" for
                   an anonymous visitor) and the CSRF token every form must send back. A
                   signed-in cookie also names a row of web_sessions, checked on every request
                   (`session_live`): sign-out ends it, and so do removing the watcher and
                   changing their e-mail address.
    people         a watcher is one row per household (households.py); the person behind it is
                   the e-mail address, so a person who watches two households sees both.

It must never accept a session whose signature does not match, never sign in twice with one
link, and never tell a stranger whether an e-mail address is known.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from mimamori import households as hh
from mimamori import notify
from mimamori.clock import DAY_MS, HOUR_MS, to_ms
from mimamori.storage import Cursor, Database, migrate

COOKIE = "mimamori_session"
SESSION_DAYS = 30
INVITE_DAYS = 14
EMAIL_LINK_MS = HOUR_MS
COORDINATOR_LINK_MS = DAY_MS
WATCHER, COORDINATOR = "watcher", "coordinator"

SCHEMA: list[list[str]] = [
    [
        """CREATE TABLE web_links (
            digest TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            subject TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            used_at BIGINT
        )""",
    ],
    # 2: sign-in rate limits shared by every instance (one row per limited key, its recent
    # hits; the key is a digest, so no address or e-mail is kept in clear)
    [
        """CREATE TABLE rate_limits (
            bucket TEXT PRIMARY KEY,
            hits TEXT NOT NULL,
            until_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX rate_limits_until ON rate_limits (until_ms)",
    ],
    # 3: server-side sessions: a signed-in cookie names one of these rows, checked
    # on every request; sign-out ends it, and a watcher's session also ends when the watcher is
    # removed or their e-mail address changes (the address at sign-in is kept to compare)
    [
        """CREATE TABLE web_sessions (
            digest TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            subject TEXT NOT NULL,
            email TEXT,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            ended_at BIGINT
        )""",
        "CREATE INDEX web_sessions_subject ON web_sessions (role, subject)",
    ],
]


def open_web(db: Database) -> None:
    """Apply the dashboard's migrations (idempotent)."""
    hh.open_people(db)
    migrate(db, "web", SCHEMA)


def session_key(db: Database) -> bytes:
    """The cookie-signing key, derived from the server's link secret (kept in the database)."""
    with db.tx() as c:
        return hmac.new(notify.link_key(c), b"mimamori web session v1", hashlib.sha256).digest()


# ---------------------------------------------------------------------------------------------
# sign-in links


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_link(c: Cursor, role: str, subject: str, now_ms: int, valid_ms: int) -> str:
    """A new one-time sign-in token for a watcher (subject: watcher id) or the coordinator."""
    if role == WATCHER:
        w = hh.watcher(c, subject)
        if w.removed_at is not None:
            raise ValueError(f"watcher {subject!r} was removed: invite them again first")
    elif role != COORDINATOR:
        raise ValueError(f"role {role!r}: watcher or coordinator")
    token = "in_" + secrets.token_urlsafe(24)
    c.execute("INSERT INTO web_links (digest, role, subject, created_at, expires_at, used_at) "
              "VALUES (?, ?, ?, ?, ?, NULL)", (_digest(token), role, subject, now_ms,
                                               now_ms + valid_ms))
    return token


class BadLink(ValueError):
    pass


def peek_link(c: Cursor, token: str, now_ms: int) -> tuple[str, str]:
    """(role, subject) of a usable link; BadLink saying why not."""
    row = c.one("SELECT role, subject, expires_at, used_at FROM web_links WHERE digest = ?",
                (_digest(token),))
    if row is None:
        raise BadLink("unknown")
    role, subject, expires, used = row
    if used is not None:
        raise BadLink("used")
    if now_ms > expires:
        raise BadLink("expired")
    if role == WATCHER:
        try:
            if hh.watcher(c, subject).removed_at is not None:
                raise BadLink("unknown")
        except hh.NotFound:
            raise BadLink("unknown") from None
    return role, subject


def use_link(c: Cursor, token: str, now_ms: int) -> tuple[str, str]:
    """Spend the link (in the caller's transaction); (role, subject)."""
    role, subject = peek_link(c, token, now_ms)
    c.execute("UPDATE web_links SET used_at = ? WHERE digest = ? AND used_at IS NULL",
              (now_ms, _digest(token)))
    return role, subject


# ---------------------------------------------------------------------------------------------
# sessions


@dataclass(frozen=True)
class Session:
    role: str  # "", "watcher" or "coordinator"
    subject: str  # watcher id or coordinator name ("" when anonymous)
    csrf: str
    expires_ms: int
    lang: str = ""  # the language chosen with the toggle ("" = not chosen)
    sid: str = ""  # a signed-in session's id (its row in web_sessions), "" when anonymous

    @property
    def signed_in(self) -> bool:
        return self.role in (WATCHER, COORDINATOR)


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_session(now_ms: int, role: str = "", subject: str = "", lang: str = "") -> Session:
    return Session(role, subject, secrets.token_urlsafe(18),
                   now_ms + SESSION_DAYS * DAY_MS, lang)


def dump_session(key: bytes, s: Session) -> str:
    body = json.dumps({"r": s.role, "s": s.subject, "c": s.csrf, "e": s.expires_ms,
                       "l": s.lang, "i": s.sid}, separators=(",", ":")).encode()
    return _b64(body) + "." + _b64(hmac.new(key, body, hashlib.sha256).digest())


def load_session(key: bytes, value: str | None, now_ms: int) -> Session | None:
    """The session in a cookie, or None when missing, forged, damaged or expired."""
    if not value or value.count(".") != 1:
        return None
    b, m = value.split(".")
    try:
        body, mac = _unb64(b), _unb64(m)
        if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), mac):
            return None
        d = json.loads(body)
        s = Session(str(d["r"]), str(d["s"]), str(d["c"]), int(d["e"]), str(d.get("l", "")),
                    str(d.get("i", "")))
    except (ValueError, KeyError, TypeError):
        return None
    if s.expires_ms < now_ms or s.role not in ("", WATCHER, COORDINATOR) or not s.csrf:
        return None
    return s


def start_session(c: Cursor, now_ms: int, role: str, subject: str, lang: str = "") -> Session:
    """A signed-in session: its row (in the caller's transaction) and the cookie's content."""
    email = hh.watcher(c, subject).email if role == WATCHER else None
    sid = secrets.token_urlsafe(18)
    s = Session(role, subject, secrets.token_urlsafe(18), now_ms + SESSION_DAYS * DAY_MS,
                lang, sid)
    c.execute("INSERT INTO web_sessions (digest, role, subject, email, created_at, expires_at, "
              "ended_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
              (_digest(sid), role, subject, (email or "").lower(), now_ms, s.expires_ms))
    c.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now_ms,))  # long gone
    return s


def session_live(db: Database, s: Session, now_ms: int) -> bool:
    """Whether a signed-in session still stands: its row exists and was not ended, and for a
    watcher the watcher is not removed and still has the address they signed in with."""
    if not s.signed_in:
        return True
    if not s.sid:
        return False  # a cookie from before server-side sessions: sign in again
    with db.read() as c:
        row = c.one("SELECT role, subject, email, expires_at, ended_at FROM web_sessions "
                    "WHERE digest = ?", (_digest(s.sid),))
        if row is None or row[4] is not None or row[3] < now_ms or (row[0], row[1]) != (
                s.role, s.subject):
            return False
        if s.role == WATCHER:
            try:
                w = hh.watcher(c, s.subject)
            except hh.NotFound:
                return False
            if w.removed_at is not None or (w.email or "").lower() != (row[2] or ""):
                return False
    return True


def end_session(db: Database, s: Session, now_ms: int) -> None:
    if s.sid:
        with db.tx() as c:
            c.execute("UPDATE web_sessions SET ended_at = ? WHERE digest = ? AND ended_at IS NULL",
                      (now_ms, _digest(s.sid)))


def end_sessions(c: Cursor, role: str, subject: str, now_ms: int) -> int:
    """End every session of one person (a watcher removed, a coordinator leaving)."""
    return c.execute("UPDATE web_sessions SET ended_at = ? WHERE role = ? AND subject = ? "
                     "AND ended_at IS NULL", (now_ms, role, subject))


def csrf_ok(s: Session | None, sent: str | None) -> bool:
    return bool(s and sent and hmac.compare_digest(s.csrf.encode(), sent.encode()))


# ---------------------------------------------------------------------------------------------
# people


def person_watchers(c: Cursor, wid: str) -> list[hh.Watcher]:
    """The watcher rows of the person signed in as `wid` (same e-mail address), one per
    household they watch; [] when the watcher was removed."""
    try:
        me = hh.watcher(c, wid)
    except hh.NotFound:
        return []
    if me.removed_at is not None:
        return []
    if not me.email:
        return [me]
    return hh.watchers_with_email(c, me.email)


def watcher_for(c: Cursor, s: Session, hid: str) -> hh.Watcher | None:
    """The signed-in person's watcher row in household hid, or None if they do not watch it."""
    if s.role != WATCHER:
        return None
    for w in person_watchers(c, s.subject):
        if w.household == hid:
            return w
    return None


def watchers_by_email(c: Cursor, email: str) -> list[hh.Watcher]:
    return hh.watchers_with_email(c, email)


# ---------------------------------------------------------------------------------------------
# rate limit


class RateLimit:
    """At most `limit` events per `window_s` seconds per key: a sliding window kept in the
    database, so every instance behind a load balancer counts the same hits. The key's row is
    locked while it is counted (two instances never both let the last one through)."""

    def __init__(self, db: Database, name: str, limit: int, window_s: float):
        self.db, self.name, self.limit, self.window_s = db, name, limit, window_s

    def allow(self, key: str, now_s: float | None = None) -> bool:
        now = to_ms(time.time() if now_s is None else now_s)
        window = to_ms(self.window_s)
        bucket = hashlib.sha256(f"{self.name}\n{key}".encode()).hexdigest()[:40]
        with self.db.tx() as c:
            c.execute("INSERT INTO rate_limits (bucket, hits, until_ms) VALUES (?, '[]', 0) "
                      "ON CONFLICT (bucket) DO NOTHING", (bucket,))
            row = c.one("SELECT hits FROM rate_limits WHERE bucket = ?" + c.for_update,
                        (bucket,))
            hits = [t for t in json.loads(row[0] if row else "[]") if t > now - window]
            ok = len(hits) < self.limit
            if ok:
                hits.append(now)
            c.execute("UPDATE rate_limits SET hits = ?, until_ms = ? WHERE bucket = ?",
                      (json.dumps(hits), max(hits, default=now) + window, bucket))
            c.execute("DELETE FROM rate_limits WHERE until_ms < ?", (now,))  # forgotten keys
        return ok


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/in/{token}"


def describe(c: Cursor, role: str, subject: str) -> dict[str, Any]:
    """Who a link or session is for, for the confirm page."""
    if role == COORDINATOR:
        return {"name": subject, "role": role}
    w = hh.watcher(c, subject)
    return {"name": w.name, "role": role, "lang": w.lang}
