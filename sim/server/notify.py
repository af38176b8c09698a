# SPDX-License-Identifier: MIT
"""The outbox and its delivery worker: e-mail (SMTP), signed webhooks, the console.

Deciding and telling are split by a table. Whoever decides that people must be told (an alert
opens, a watcher claims, the light comes back) calls `enqueue` inside the same transaction as
the decision, so either both are committed or neither. `deliver_due(db, now_ms, cfg)` then sends
the pending rows and marks each one sent; a failure is retried with backoff (30 s, 1 min, 2 min,
... at most 1 h apart, `max_attempts` times) and then kept as "dead" with its last error.

Never lost, never doubled: the outbox row's id is the idempotency key. It is the e-mail's
Message-ID and the webhook's `Idempotency-Key` header, so when the process dies after a
receiver accepted a message but before the row was marked sent, the one resend on restart
carries the same key and the receiver drops it. A crash before sending loses nothing: the row
is pending and the next worker run sends it once.

Any number of workers (the loop of every server instance, `mimamori deliver` beside them) share
the outbox: each claims one row at a time with a lease (real time, `lease_s`) and every send
ends, cut off if need be, at a total deadline a margin shorter than the lease (`Deadline`), so
no row is ever held by two workers at once. A worker that dies mid-send leaves its row to the
others when the lease runs out.

Webhook requests: POST JSON, headers `Idempotency-Key`, `X-Mimamori-Timestamp` (Unix s) and
`X-Mimamori-Signature: sha256=<hex HMAC-SHA256(watcher secret, timestamp "." body)>`.

Links in messages carry signed single-purpose tokens (`make_token`): they open a confirm page
and act only on its POST, so a mail scanner following links changes nothing. The invitation's
test message carries a "received" link: its use is kept (`confirm_receipt`) and the
coordinator sees it (`confirmed_at`, `confirmations`).

E-mails carry Date, a Message-ID in the public URL's domain (MIMAMORI_PUBLIC_URL; the host's
name without one), and a From with a display name ("みまもり電球" or "Mimamori bulb", in the
reader's language, unless MIMAMORI_MAIL_FROM has its own).

It must never send a row that another worker holds, never let a send outlive its lease, and never
read the alerts' clock (now is passed in; leases run on real time, sql.lease_now_ms).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import secrets
import smtplib
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Self, TextIO
from urllib.parse import urlsplit

from mimamori import messages, sql, texts
from mimamori.clock import DAY_MS, SECOND_MS, to_ms, to_s
from mimamori.households import Household, Watcher
from mimamori.storage import Cursor, Database

log = logging.getLogger("mimamori.notify")

BACKOFF_S = (30, 60, 120, 300, 600, 1200, 3600)
LEASE_MARGIN_S = 1.0  # a send ends at least this long before its row's lease does
TOKEN_DAYS = 14


@dataclass
class NotifierSettings:
    """Where messages go out. From the environment with `from_env()`:
    MIMAMORI_PUBLIC_URL (links in messages), MIMAMORI_SMTP (host:port), MIMAMORI_MAIL_FROM,
    MIMAMORI_SMTP_TLS (none | starttls | ssl), MIMAMORI_SMTP_USER / MIMAMORI_SMTP_PASSWORD,
    MIMAMORI_SMTP_CA (a CA file to trust instead of the system's), MIMAMORI_SEND_DEADLINE_S
    (one whole send, default 60) and MIMAMORI_DELIVERY_LEASE_S (how long a worker holds the
    row it sends, default 300; at least the deadline plus 1 s)."""

    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = "mimamori@localhost"
    smtp_tls: str = "none"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_ca: str | None = None
    timeout_s: float = 10.0  # per network operation
    send_deadline_s: float = 60.0  # one whole send, connection to last byte
    lease_s: float = 300.0  # how long a worker holds the row it sends (longer than any send)
    max_attempts: int = 10
    console: TextIO | None = None  # default: sys.stdout
    console_lines: list[str] = field(default_factory=list)  # what the console channel printed

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> NotifierSettings:
        e = os.environ if env is None else env
        host, port = None, 25
        if e.get("MIMAMORI_SMTP"):
            h, _, p = e["MIMAMORI_SMTP"].rpartition(":")
            if not h or not p.isdigit():
                raise ValueError(f"MIMAMORI_SMTP={e['MIMAMORI_SMTP']!r}: write host:port, "
                                 "e.g. localhost:25")
            host, port = h, int(p)
        tls = e.get("MIMAMORI_SMTP_TLS", "none")
        if tls not in ("none", "starttls", "ssl"):
            raise ValueError(f"MIMAMORI_SMTP_TLS={tls!r}: use none, starttls or ssl")
        deadline = _seconds(e, "MIMAMORI_SEND_DEADLINE_S", cls.send_deadline_s)
        lease = _seconds(e, "MIMAMORI_DELIVERY_LEASE_S", cls.lease_s)
        if deadline + LEASE_MARGIN_S > lease:
            raise ValueError(f"MIMAMORI_SEND_DEADLINE_S={deadline:g} must end "
                             f"{LEASE_MARGIN_S:g} s before MIMAMORI_DELIVERY_LEASE_S={lease:g} "
                             "(a send that outlives its lease can be sent again by another "
                             "worker)")
        return cls(public_url=e.get("MIMAMORI_PUBLIC_URL", cls.public_url).rstrip("/"),
                   smtp_host=host, smtp_port=port,
                   mail_from=e.get("MIMAMORI_MAIL_FROM", cls.mail_from), smtp_tls=tls,
                   smtp_user=e.get("MIMAMORI_SMTP_USER") or None,
                   smtp_password=e.get("MIMAMORI_SMTP_PASSWORD"),
                   smtp_ca=e.get("MIMAMORI_SMTP_CA") or None,
                   send_deadline_s=deadline, lease_s=lease)


def _seconds(e: Any, name: str, default: float) -> float:
    raw = e.get(name)
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise ValueError(f"{name}={raw!r}: write a number of seconds, e.g. {default:g}")
    return v


# ---------------------------------------------------------------------------------------------
# signed links


def link_key(c: Cursor) -> bytes:
    """The server's secret for link tokens (made once, kept in the database; every instance
    reads the same). Works in a read-only block too: the first call makes it in its own
    write."""
    row = c.one("SELECT value FROM server_secrets WHERE name = 'link_key'")
    if row is None:
        with c.db.tx() as w:  # joins c when c is a write transaction
            w.execute("INSERT INTO server_secrets (name, value) VALUES ('link_key', ?) "
                      "ON CONFLICT (name) DO NOTHING", (secrets.token_hex(32),))
            row = w.one("SELECT value FROM server_secrets WHERE name = 'link_key'")
    assert row is not None
    return bytes.fromhex(row[0])


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(key: bytes, action: str, alert: str, watcher: str, expires_ms: int) -> str:
    body = f"{action}.{alert}.{watcher}.{expires_ms}".encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:16]
    return _b64(body) + "." + _b64(mac)


class BadLink(ValueError):
    """A message link that cannot be used; `why` (damaged, invalid, expired) names the page's
    words for it (i18n "a_link_<why>")."""

    def __init__(self, why: str, text: str, watcher: str | None = None):
        super().__init__(text)
        self.why = why
        self.watcher = watcher  # of an authentic but expired link: whose language to speak


def read_token(key: bytes, token: str, now_ms: int) -> tuple[str, str, str]:
    """(action, alert, watcher) of a valid token; BadLink saying why not otherwise."""
    try:
        b, m = token.split(".")
        body = base64.urlsafe_b64decode(b + "=" * (-len(b) % 4))
        mac = base64.urlsafe_b64decode(m + "=" * (-len(m) % 4))
        action, alert, watcher, exp = body.decode().split(".")
        expires = int(exp)
    except ValueError:
        raise BadLink("damaged", "this link is damaged: open it from the message again") from None
    want = hmac.new(key, body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(want, mac):
        raise BadLink("invalid", "this link is not valid: open it from the message again")
    if now_ms > expires:
        raise BadLink("expired", "this link has expired: use the dashboard or ask the "
                      "coordinator", watcher)
    return action, alert, watcher


def links(c: Cursor, cfg: NotifierSettings, alert: str, watcher: str, now_ms: int) -> dict[str, str]:
    """The claim and resolve links of an alert message for one watcher, and the household's
    dashboard page (which asks for a sign-in link when needed)."""
    key = link_key(c)
    exp = now_ms + TOKEN_DAYS * DAY_MS
    out = {f"{a}_url": f"{cfg.public_url}/a/{make_token(key, a, alert, watcher, exp)}"
           for a in ("claim", "resolve")}
    row = c.one("SELECT household FROM alerts WHERE id = ?", (alert,))
    if row is not None:
        out["dashboard_url"] = f"{cfg.public_url}/h/{row[0]}"
    return out


def invite(c: Cursor, now_ms: int, home: Household, w: Watcher,
           public_url: str | None = None) -> list[str]:
    """The test message to a new watcher (or a new address), with its "I received this"
    link (links to public_url, default MIMAMORI_PUBLIC_URL)."""
    base = (public_url or NotifierSettings.from_env().public_url).rstrip("/")
    token = make_token(link_key(c), "received", "", w.id, now_ms + TOKEN_DAYS * DAY_MS)
    return enqueue(c, now_ms, "invite", home, w, {"received_url": f"{base}/a/{token}"})


def confirm_receipt(c: Cursor, wid: str, address: str | None, now_ms: int) -> None:
    """The watcher pressed "I received this" in the test message sent to `address`."""
    c.execute("DELETE FROM watcher_receipts WHERE watcher = ?", (wid,))
    c.execute("INSERT INTO watcher_receipts (watcher, address, at) VALUES (?, ?, ?)",
              (wid, address, now_ms))


def confirmed_at(c: Cursor, w: Watcher) -> int | None:
    """When the watcher confirmed that messages reach them (ms), None if never, or not since
    their address changed."""
    row = c.one("SELECT address, at FROM watcher_receipts WHERE watcher = ?", (w.id,))
    return row[1] if row is not None and row[0] == w.email else None


def confirmations(c: Cursor, household: str | None = None) -> dict[str, int]:
    """watcher id -> when they confirmed receiving mail (ms), for the current watchers of one
    household or all; a watcher missing here never confirmed their current address."""
    sql = ("SELECT w.id, r.at FROM watcher_receipts r JOIN watchers w ON w.id = r.watcher "
           "WHERE w.removed_at IS NULL AND (r.address = w.email OR "
           "(r.address IS NULL AND w.email IS NULL))")
    rows = (c.all(sql + " AND w.household = ?", (household,)) if household
            else c.all(sql))
    return {wid: at for wid, at in rows}


# ---------------------------------------------------------------------------------------------
# the outbox


def enqueue(c: Cursor, now_ms: int, kind: str, home: Household, w: Watcher,
            ctx: dict[str, Any], alert: str | None = None,
            not_before: int | None = None) -> list[str]:
    """One outbox row per channel of the watcher, in the caller's transaction; their ids.
    not_before: hold the message until then (the end of the watcher's quiet hours)."""
    subject, body = messages.render(kind, w.lang, {**ctx, "home": home.name, "watcher": w.name})
    ids = []
    for ch in w.channels():
        oid = "m-" + secrets.token_hex(12)
        to = w.email if ch == "email" else w.webhook_url if ch == "webhook" else w.name
        payload = {"id": oid, "kind": kind, "household": home.id, "alert": alert,
                   "watcher": w.id, "lang": w.lang, "to": to, "subject": subject, "text": body,
                   "links": {k: v for k, v in ctx.items() if k.endswith("_url")},
                   "data": {k: v for k, v in ctx.items()
                            if isinstance(v, (str, int, float)) and not k.endswith("_url")}}
        c.execute(
            "INSERT INTO outbox (id, household, alert, watcher, channel, kind, subject, body, "
            "payload, created_at, state, attempts, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
            (oid, home.id, alert, w.id, ch, kind, subject, body,
             json.dumps(payload, ensure_ascii=False), now_ms, max(now_ms, not_before or now_ms)))
        ids.append(oid)
    return ids


def cancel_unsent(c: Cursor, alert: str, now_ms: int) -> set[str]:
    """Drop every message about an alert that has not gone out (held for quiet hours, waiting
    for a worker, or to be retried after its channel failed): the alert closed, and a late
    "no switch-on for 26 h" after she was seen again only frightens. A message being sent this
    moment (leased) goes on. Returns the watchers whose alert message was held for quiet hours:
    they never heard of it, so they are not told it cleared. One whose message was due, or
    tried and failed, may yet have got it (or asks why the channel was silent): that watcher is
    told it cleared."""
    cond = "alert = ? AND state = 'pending' AND (lease_until IS NULL OR lease_until <= ?)"
    params = (alert, sql.lease_now_ms())
    rows = c.all(f"SELECT watcher, kind, attempts, next_attempt_at FROM outbox WHERE {cond}",
                 params)
    c.execute(f"UPDATE outbox SET state = 'cancelled' WHERE {cond}", params)
    return {w for w, k, n, due in rows if k == "alert" and n == 0 and due > now_ms}


@dataclass(frozen=True)
class Outgoing:
    id: str
    household: str
    alert: str | None
    watcher: str
    channel: str
    kind: str
    subject: str
    body: str
    payload: dict[str, Any]
    attempts: int
    state: str = "pending"
    sent_at: int | None = None
    last_error: str | None = None


_O_COLS = ("id, household, alert, watcher, channel, kind, subject, body, payload, attempts, "
           "state, sent_at, last_error")


def _out(row: tuple) -> Outgoing:
    r = list(row)
    r[8] = json.loads(r[8])
    return Outgoing(*r)


def outbox(db: Database, state: str | None = None, alert: str | None = None) -> list[Outgoing]:
    sql, params = f"SELECT {_O_COLS} FROM outbox WHERE 1 = 1", list[str]()
    if state:
        sql, params = sql + " AND state = ?", [*params, state]
    if alert:
        sql, params = sql + " AND alert = ?", [*params, alert]
    with db.read() as c:
        return [_out(r) for r in c.all(sql + " ORDER BY created_at, id", params)]


class SendError(Exception):
    pass


# failures worth another try later; any other (a header the mail library refuses, a payload
# that cannot be encoded) fails the same way every time: the row is given up at once
TRANSIENT = (SendError, OSError, smtplib.SMTPException, http.client.HTTPException)


KEEPS_FAILING = 3  # failed tries of one message after which the coordinators are told
CIRCUIT_FAILURES = 2  # failures in a row that open a destination's circuit
CIRCUIT_S = (30.0, 60.0, 120.0, 300.0, 600.0)  # how long it stays open, each time longer
PER_DESTINATION = 2  # sends at once to one destination (per process)


def destination(o: Outgoing, cfg: NotifierSettings) -> str | None:
    """Where a send goes: the SMTP relay, the webhook's host, None for the console."""
    if o.channel == "email":
        return f"smtp://{cfg.smtp_host}:{cfg.smtp_port}"
    if o.channel == "webhook":
        u = urlsplit(str(o.payload.get("to", "")))
        return f"{u.scheme}://{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}"
    return None


class Circuits:
    """A circuit per destination, in this process: after CIRCUIT_FAILURES failures in a row
    its messages wait (30 s, then longer each time) instead of tying up a worker on a receiver
    that trickles or a relay that is down; at most PER_DESTINATION sends to it at once. The
    first send after the wait tries again; a success closes the circuit. A failure that is
    the message's own (not TRANSIENT) says nothing about the destination. Times are the
    outbox's (now_ms), like its backoff."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fails: dict[str, int] = {}
        self._opened: dict[str, int] = {}  # times opened since the last success
        self._until: dict[str, int] = {}
        self._busy: dict[str, int] = {}
        self._watchers: dict[str, set[str]] = {}  # the watchers whose webhooks go there

    def blocked(self, now_ms: int) -> tuple[bool, set[str]]:
        """What the next claim should pass over: (e-mail, watchers' webhooks) whose destination
        is open or has PER_DESTINATION sends going, so no worker picks up a row it must put
        back."""
        with self._lock:
            shut = {d for d, t in self._until.items() if t > now_ms}
            shut |= {d for d, n in self._busy.items() if n >= PER_DESTINATION}
            email = any(d.startswith("smtp://") for d in shut)
            hooks = set().union(*(self._watchers.get(d, set()) for d in shut))
        return email, hooks

    def note(self, dest: str | None, watcher: str) -> None:
        if dest is not None and not dest.startswith("smtp://"):
            with self._lock:
                self._watchers.setdefault(dest, set()).add(watcher)

    def take(self, dest: str | None, now_ms: int) -> float:
        """0 when a send may start now (it is counted busy until `done`); else the seconds
        to wait."""
        if dest is None:
            return 0.0
        with self._lock:
            wait = to_s(self._until.get(dest, 0) - now_ms)
            if wait > 0:
                return wait
            if self._busy.get(dest, 0) >= PER_DESTINATION:
                return 5.0
            self._busy[dest] = self._busy.get(dest, 0) + 1
            return 0.0

    def done(self, dest: str | None, ok: bool, now_ms: int) -> bool:
        """Record a send's end; True when this failure opened the circuit."""
        if dest is None:
            return False
        with self._lock:
            self._busy[dest] = max(0, self._busy.get(dest, 0) - 1)
            if ok:
                for d in (self._fails, self._opened, self._until):
                    d.pop(dest, None)
                return False
            n = self._fails[dest] = self._fails.get(dest, 0) + 1
            if n < CIRCUIT_FAILURES:
                return False
            k = self._opened[dest] = self._opened.get(dest, 0) + 1
            self._until[dest] = now_ms + to_ms(CIRCUIT_S[min(k - 1, len(CIRCUIT_S) - 1)])
            self._fails[dest] = 0
            return True

    def open(self, now_ms: int) -> dict[str, float]:
        """Destinations whose circuit is open, with the seconds left."""
        with self._lock:
            return {d: to_s(t - now_ms) for d, t in self._until.items() if t > now_ms}


CIRCUITS = Circuits()


def tell_coordinators(c: Cursor, now_ms: int, o: Outgoing, error: str, attempts: int = 1,
                      given_up: bool = True) -> list[str]:
    """A message was given up, or keeps failing: tell the household's coordinators (tier 0
    watchers) on their own channels, in the caller's transaction, and log it. Never about a
    notice itself."""
    from mimamori import households as hh

    log.warning("outbox %s (%s to watcher %s by %s) %s after %d tries: %s", o.id, o.kind,
                o.watcher, o.channel, "given up" if given_up else "keeps failing", attempts,
                error)
    if o.kind == "undeliverable":
        return []
    try:
        home = hh.household(c, o.household)
        whom = hh.watcher(c, o.watcher).name
    except hh.NotFound:
        return []
    ids: list[str] = []
    for w in hh.watchers(c, home.id, max_tier=0, min_tier=0):
        if w.id != o.watcher:
            ids += enqueue(c, now_ms, "undeliverable", home, w,
                           {"whom": whom, "channel": o.channel, "error": error[:200],
                            "failed_kind": o.kind, "attempts": attempts,
                            "given_up": given_up})
    return ids


def claim_next(db: Database, now_ms: int, owner: str, lease_ms: int,
               skip: tuple[bool, set[str]] = (False, set())
               ) -> tuple[Outgoing, str | None, int] | None:
    """Take the next due row no other worker holds, with a lease until (real-time ms); on
    PostgreSQL FOR UPDATE SKIP LOCKED, so workers claiming at the same instant take different
    rows. (the row, its watcher's webhook secret, lease end), or None when nothing is due.
    skip: (pass over e-mail, pass over these watchers' webhooks): Circuits.blocked."""
    lease = sql.lease_now_ms()
    no_email, hooks = skip
    where, params = "", [now_ms, lease]
    if no_email:
        where += " AND channel <> 'email'"
    if hooks:
        where += (" AND NOT (channel = 'webhook' AND watcher IN ("
                  + ", ".join("?" * len(hooks)) + "))")
        params += sorted(hooks)
    with db.tx() as c:
        row = c.one(f"SELECT {_O_COLS} FROM outbox WHERE state = 'pending' AND "
                    "next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
                    + where + " ORDER BY next_attempt_at, id LIMIT 1" + c.skip_locked, params)
        if row is None:
            return None
        o = _out(row)
        c.execute("UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id = ?",
                  (lease + lease_ms, owner, o.id))
        sec = c.one("SELECT webhook_secret FROM watchers WHERE id = ?", (o.watcher,))
    return o, (sec[0] if sec else None), lease + lease_ms


def deliver_due(db: Database, now_ms: int, cfg: NotifierSettings, limit: int = 100,
                owner: str | None = None, circuits: Circuits | None = None) -> dict[str, int]:
    """Send the pending rows that are due, one claimed at a time; {'sent', 'failed', 'dead',
    'waiting'} (waiting: put back because its destination's circuit is open or busy).

    Exactly once under any number of workers (this loop in every server instance, `mimamori
    deliver` beside them): a row is claimed with a lease of cfg.lease_s just before it is
    sent, and the send is cut off at a total deadline shorter than the lease, so no other
    worker can take the row while it is being sent. Marking it sent ends the lease."""
    owner = owner or f"{os.getpid()}:{secrets.token_hex(4)}"
    lease_ms = to_ms(cfg.lease_s)
    out = {"sent": 0, "failed": 0, "dead": 0, "waiting": 0}
    circuits = CIRCUITS if circuits is None else circuits
    for _ in range(limit):
        got = claim_next(db, now_ms, owner, lease_ms, circuits.blocked(now_ms))
        if got is None:
            break
        o, secret, until = got
        dest = destination(o, cfg)
        circuits.note(dest, o.watcher)
        wait = circuits.take(dest, now_ms)
        if wait > 0:  # its receiver is failing or busy: the row is given back as it was (the
            # next claims pass its destination over while so), this worker goes on
            with db.tx() as c:
                c.execute("UPDATE outbox SET lease_until = NULL, lease_owner = NULL "
                          "WHERE id = ? AND state = 'pending'", (o.id,))
            out["waiting"] += 1
            continue
        # the whole send, connection to last byte, ends a margin before the lease does
        budget = min(cfg.send_deadline_s, to_s(until - sql.lease_now_ms()) - LEASE_MARGIN_S)
        try:
            if budget <= 0:
                raise SendError("no time left in the lease to send (the claim took too long)")
            send(o, cfg, now_ms, secret, budget)
        except Exception as e:  # noqa: BLE001 - any failure of a channel is retried
            if circuits.done(dest, ok=not isinstance(e, TRANSIENT), now_ms=now_ms):
                log.warning("%s keeps failing: its messages wait %.0f s (%s)", dest,
                            circuits.open(now_ms).get(dest or "", 0.0),
                            f"{type(e).__name__}: {e}")
            n = o.attempts + 1
            # a message that cannot be sent as it stands (not a network fault) is given up now
            dead = n >= cfg.max_attempts or not isinstance(e, TRANSIENT)
            delay = to_ms(BACKOFF_S[min(n - 1, len(BACKOFF_S) - 1)])
            error = f"{type(e).__name__}: {e}"[:500]
            with db.tx() as c:
                c.execute("UPDATE outbox SET attempts = ?, state = ?, next_attempt_at = ?, "
                          "lease_until = NULL, lease_owner = NULL, last_error = ? "
                          "WHERE id = ? AND state = 'pending'",
                          (n, "dead" if dead else "pending", now_ms + delay, error, o.id))
                if dead or n == KEEPS_FAILING:
                    tell_coordinators(c, now_ms, o, error, n, given_up=dead)
            out["dead" if dead else "failed"] += 1
            continue
        circuits.done(dest, ok=True, now_ms=now_ms)
        with db.tx() as c:
            held = c.one("SELECT lease_owner FROM outbox WHERE id = ?" + c.for_update, (o.id,))
            c.execute("UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                      "lease_until = NULL, lease_owner = NULL, last_error = NULL "
                      "WHERE id = ? AND state = 'pending'", (now_ms, o.id))
        if not held or held[0] != owner:  # cannot happen while sends end before leases
            log.warning("outbox %s: the lease was lost while sending (held by %s)", o.id,
                        held[0] if held else None)
        out["sent"] += 1
    return out


def send(o: Outgoing, cfg: NotifierSettings, now_ms: int, webhook_secret: str | None,
         budget_s: float | None = None) -> None:
    """Send one message; raises on any failure. budget_s: the total time allowed, connection
    to last byte (default cfg.send_deadline_s); a slower peer is cut off."""
    budget = cfg.send_deadline_s if budget_s is None else budget_s
    if o.channel == "email":
        send_email(o, cfg, budget)
    elif o.channel == "webhook":
        if not webhook_secret:
            raise SendError(f"watcher {o.watcher} has no webhook secret")
        send_webhook(o, cfg, now_ms, webhook_secret, budget)
    elif o.channel == "console":
        line = f"[mimamori] to {o.payload['to']} ({o.kind}): {o.subject}"
        cfg.console_lines.append(line)
        print(line, file=cfg.console or sys.stdout, flush=True)
    else:
        raise SendError(f"unknown channel {o.channel!r}")


class Deadline:
    """A total time limit for one send: at the end, the sockets it watches are shut down, so a
    peer that trickles (each read within the per-operation timeout, the whole far beyond it)
    is cut off. Socket timeouts alone bound each operation, not the send."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def left(self, cap: float) -> float:
        return max(0.01, min(cap, self.end - time.monotonic()))

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for s in self._socks:
                _shut(s)

    def check(self, e: BaseException | None = None) -> None:
        if self.fired:
            raise SendError(f"the send took longer than {self.seconds:.0f} s and was cut off "
                            "(retried later)") from e

    def __enter__(self) -> Self:
        return self

    def __exit__(self, typ: object, e: BaseException | None, tb: object) -> None:
        self._timer.cancel()
        if e is not None and not isinstance(e, SendError):
            self.check(e)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Smtp(smtplib.SMTP):
    """smtplib.SMTP whose socket is watched by a Deadline from the moment it exists (the
    greeting is read inside the constructor)."""

    def __init__(self, dl: Deadline, *a: Any, **kw: Any) -> None:
        self._dl = dl
        super().__init__(*a, **kw)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        self._dl.watch(sock)
        return sock


class _SmtpSsl(smtplib.SMTP_SSL):
    def __init__(self, dl: Deadline, *a: Any, **kw: Any) -> None:
        self._dl = dl
        super().__init__(*a, **kw)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        raw = socket.create_connection((host, port), timeout, self.source_address)
        self._dl.watch(raw)  # during the handshake
        sock = self.context.wrap_socket(raw, server_hostname=self._host)
        self._dl.watch(sock)
        return sock


SENDER_NAME = {"ja": "みまもり電球", "en": "Mimamori bulb"}


def mail_domain(cfg: NotifierSettings) -> str:
    """The domain of Message-IDs: the public URL's host, else this machine's name."""
    host = urlsplit(cfg.public_url).hostname or ""
    if not host or host in ("localhost", "127.0.0.1", "::1"):
        host = socket.getfqdn() or host or "localhost"
    return host


def sender(cfg: NotifierSettings, lang: str) -> str:
    """The From header: MIMAMORI_MAIL_FROM as given when it has a display name, else the
    address with the project's name in the reader's language."""
    name, addr = parseaddr(cfg.mail_from)
    if name or not addr:
        return cfg.mail_from
    return str(Address(SENDER_NAME.get(lang, SENDER_NAME["ja"]), addr_spec=addr))


def send_email(o: Outgoing, cfg: NotifierSettings, budget_s: float | None = None) -> None:
    if not cfg.smtp_host:
        raise SendError("no SMTP server configured: set MIMAMORI_SMTP=host:port")
    msg = EmailMessage()
    msg["From"] = sender(cfg, str(o.payload.get("lang", "ja")))
    msg["To"] = o.payload["to"]
    msg["Subject"] = texts.header(o.subject)  # names kept before the input rules: one line
    msg["Date"] = formatdate(localtime=True)  # when it is sent (a resend: its own time)
    msg["Message-ID"] = f"<{o.id}@{mail_domain(cfg)}>"
    msg["X-Mimamori-Kind"] = o.kind
    if o.alert:
        msg["X-Mimamori-Alert"] = o.alert
    msg.set_content(o.body)
    ctx = ssl.create_default_context(cafile=cfg.smtp_ca)
    with Deadline(cfg.send_deadline_s if budget_s is None else budget_s) as dl:
        timeout = dl.left(cfg.timeout_s)
        if cfg.smtp_tls == "ssl":
            s: smtplib.SMTP = _SmtpSsl(dl, cfg.smtp_host, cfg.smtp_port, timeout=timeout,
                                       context=ctx)
        else:
            s = _Smtp(dl, cfg.smtp_host, cfg.smtp_port, timeout=timeout)
        with s:
            if cfg.smtp_tls == "starttls":
                s.starttls(context=ctx)
                dl.watch(s.sock)  # the TLS socket took the connection over
            if cfg.smtp_user:
                s.login(cfg.smtp_user, cfg.smtp_password or "")
            s.send_message(msg)
        dl.check()


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(bytes.fromhex(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send_webhook(o: Outgoing, cfg: NotifierSettings, now_ms: int, secret: str,
                 budget_s: float | None = None) -> None:
    body = json.dumps(o.payload, ensure_ascii=False, sort_keys=True).encode()
    ts = str(now_ms // SECOND_MS)  # the webhook's header counts Unix seconds
    headers = {"Content-Type": "application/json", "Idempotency-Key": o.id,
               "X-Mimamori-Timestamp": ts, "X-Mimamori-Signature": sign_webhook(secret, ts, body)}
    u = urlsplit(o.payload["to"])
    if u.scheme not in ("http", "https") or not u.hostname:
        raise SendError(f"webhook URL {o.payload['to']!r} is not http(s)://host/...")
    with Deadline(cfg.send_deadline_s if budget_s is None else budget_s) as dl:
        timeout = dl.left(cfg.timeout_s)
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                        context=ssl.create_default_context())
            if u.scheme == "https" else http.client.HTTPConnection(u.hostname, u.port,
                                                                   timeout=timeout))
        try:
            conn.connect()
            dl.watch(conn.sock)
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            conn.request("POST", path, body=body, headers=headers)
            status = conn.getresponse().status
        finally:
            conn.close()
        dl.check()
    if not 200 <= status < 300:
        raise SendError(f"the webhook answered {status}")
