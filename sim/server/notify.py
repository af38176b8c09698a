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

Webhook requests: POST JSON, headers `Idempotency-Key`, `X-Mimamori-Timestamp` (Unix s) and
`X-Mimamori-Signature: sha256=<hex HMAC-SHA256(watcher secret, timestamp "." body)>`.

Links in messages carry signed single-purpose tokens (`make_token`): they open a confirm page
and act only on its POST, so a mail scanner following links changes nothing.

It must never send a row twice from one worker, and never read the clock (now is passed in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import smtplib
import ssl
import sys
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, TextIO

import httpx

from sim.server import messages
from sim.server.households import Household, Watcher
from sim.server.storage import Cursor, Database

BACKOFF_S = (30, 60, 120, 300, 600, 1200, 3600)
LEASE_MS = 120_000
TOKEN_DAYS = 14


@dataclass
class Config:
    """Where messages go out. From the environment with `from_env()`:
    MIMAMORI_PUBLIC_URL (links in messages), MIMAMORI_SMTP (host:port), MIMAMORI_MAIL_FROM,
    MIMAMORI_SMTP_TLS (none | starttls | ssl), MIMAMORI_SMTP_USER / MIMAMORI_SMTP_PASSWORD,
    MIMAMORI_SMTP_CA (a CA file to trust instead of the system's)."""

    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = "mimamori@localhost"
    smtp_tls: str = "none"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_ca: str | None = None
    timeout_s: float = 10.0
    max_attempts: int = 10
    console: TextIO | None = None  # default: sys.stdout
    console_lines: list[str] = field(default_factory=list)  # what the console channel printed

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
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
        return cls(public_url=e.get("MIMAMORI_PUBLIC_URL", cls.public_url).rstrip("/"),
                   smtp_host=host, smtp_port=port,
                   mail_from=e.get("MIMAMORI_MAIL_FROM", cls.mail_from), smtp_tls=tls,
                   smtp_user=e.get("MIMAMORI_SMTP_USER") or None,
                   smtp_password=e.get("MIMAMORI_SMTP_PASSWORD"),
                   smtp_ca=e.get("MIMAMORI_SMTP_CA") or None)


# ---------------------------------------------------------------------------------------------
# signed links


def link_key(c: Cursor) -> bytes:
    """The server's secret for link tokens (made once, kept in the database)."""
    c.execute("INSERT INTO server_secrets (name, value) VALUES ('link_key', ?) "
              "ON CONFLICT (name) DO NOTHING", (secrets.token_hex(32),))
    row = c.one("SELECT value FROM server_secrets WHERE name = 'link_key'")
    assert row is not None
    return bytes.fromhex(row[0])


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(key: bytes, action: str, alert: str, watcher: str, expires_ms: int) -> str:
    body = f"{action}.{alert}.{watcher}.{expires_ms}".encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:16]
    return _b64(body) + "." + _b64(mac)


def read_token(key: bytes, token: str, now_ms: int) -> tuple[str, str, str]:
    """(action, alert, watcher) of a valid token; ValueError saying why not otherwise."""
    try:
        b, m = token.split(".")
        body = base64.urlsafe_b64decode(b + "=" * (-len(b) % 4))
        mac = base64.urlsafe_b64decode(m + "=" * (-len(m) % 4))
        action, alert, watcher, exp = body.decode().split(".")
        expires = int(exp)
    except ValueError:
        raise ValueError("this link is damaged: open it from the message again") from None
    want = hmac.new(key, body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(want, mac):
        raise ValueError("this link is not valid: open it from the message again")
    if now_ms > expires:
        raise ValueError("this link has expired: use the dashboard or ask the coordinator")
    return action, alert, watcher


def links(c: Cursor, cfg: Config, alert: str, watcher: str, now_ms: int) -> dict[str, str]:
    key = link_key(c)
    exp = now_ms + TOKEN_DAYS * 86_400_000
    return {f"{a}_url": f"{cfg.public_url}/a/{make_token(key, a, alert, watcher, exp)}"
            for a in ("claim", "resolve")}


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


def cancel_held(c: Cursor, alert: str, now_ms: int) -> set[str]:
    """Drop the messages about an alert still held for quiet hours (it closed before they were
    due: nobody needs them now); the watchers whose held alert message was dropped."""
    rows = c.all("SELECT watcher, kind FROM outbox WHERE alert = ? AND state = 'pending' "
                 "AND attempts = 0 AND next_attempt_at > ?", (alert, now_ms))
    c.execute("UPDATE outbox SET state = 'cancelled' WHERE alert = ? AND state = 'pending' "
              "AND attempts = 0 AND next_attempt_at > ?", (alert, now_ms))
    return {w for w, k in rows if k == "alert"}


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
    with db.tx() as c:
        return [_out(r) for r in c.all(sql + " ORDER BY created_at, id", params)]


class SendError(Exception):
    pass


def deliver_due(db: Database, now_ms: int, cfg: Config, limit: int = 100) -> dict[str, int]:
    """Send the pending rows that are due; {'sent': n, 'failed': n, 'dead': n}."""
    with db.tx() as c:
        rows = [_out(r) for r in c.all(
            f"SELECT {_O_COLS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
            "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_attempt_at, id LIMIT ?",
            (now_ms, now_ms, limit))]
        for o in rows:  # taken: another worker (the CLI's) leaves them alone meanwhile
            c.execute("UPDATE outbox SET lease_until = ? WHERE id = ?", (now_ms + LEASE_MS, o.id))
        secrets_ = {w: s for w, s in c.all(
            "SELECT id, webhook_secret FROM watchers WHERE webhook_secret IS NOT NULL")}
    out = {"sent": 0, "failed": 0, "dead": 0}
    for o in rows:
        try:
            send(o, cfg, now_ms, secrets_.get(o.watcher))
        except Exception as e:  # noqa: BLE001 - any failure of a channel is retried
            n = o.attempts + 1
            dead = n >= cfg.max_attempts
            delay = BACKOFF_S[min(n - 1, len(BACKOFF_S) - 1)] * 1000
            with db.tx() as c:
                c.execute("UPDATE outbox SET attempts = ?, state = ?, next_attempt_at = ?, "
                          "lease_until = NULL, last_error = ? WHERE id = ?",
                          (n, "dead" if dead else "pending", now_ms + delay,
                           f"{type(e).__name__}: {e}"[:500], o.id))
            out["dead" if dead else "failed"] += 1
            continue
        with db.tx() as c:
            c.execute("UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                      "lease_until = NULL, last_error = NULL WHERE id = ?", (now_ms, o.id))
        out["sent"] += 1
    return out


def send(o: Outgoing, cfg: Config, now_ms: int, webhook_secret: str | None) -> None:
    if o.channel == "email":
        send_email(o, cfg)
    elif o.channel == "webhook":
        if not webhook_secret:
            raise SendError(f"watcher {o.watcher} has no webhook secret")
        send_webhook(o, cfg, now_ms, webhook_secret)
    elif o.channel == "console":
        line = f"[mimamori] to {o.payload['to']} ({o.kind}): {o.subject}"
        cfg.console_lines.append(line)
        print(line, file=cfg.console or sys.stdout, flush=True)
    else:
        raise SendError(f"unknown channel {o.channel!r}")


def send_email(o: Outgoing, cfg: Config) -> None:
    if not cfg.smtp_host:
        raise SendError("no SMTP server configured: set MIMAMORI_SMTP=host:port")
    msg = EmailMessage()
    msg["From"] = cfg.mail_from
    msg["To"] = o.payload["to"]
    msg["Subject"] = o.subject
    msg["Message-ID"] = f"<{o.id}@mimamori>"
    msg["X-Mimamori-Kind"] = o.kind
    if o.alert:
        msg["X-Mimamori-Alert"] = o.alert
    msg.set_content(o.body)
    ctx = ssl.create_default_context(cafile=cfg.smtp_ca)
    if cfg.smtp_tls == "ssl":
        s: smtplib.SMTP = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s,
                                           context=ctx)
    else:
        s = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s)
    with s:
        if cfg.smtp_tls == "starttls":
            s.starttls(context=ctx)
        if cfg.smtp_user:
            s.login(cfg.smtp_user, cfg.smtp_password or "")
        s.send_message(msg)


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(bytes.fromhex(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send_webhook(o: Outgoing, cfg: Config, now_ms: int, secret: str) -> None:
    body = json.dumps(o.payload, ensure_ascii=False, sort_keys=True).encode()
    ts = str(now_ms // 1000)
    headers = {"Content-Type": "application/json", "Idempotency-Key": o.id,
               "X-Mimamori-Timestamp": ts, "X-Mimamori-Signature": sign_webhook(secret, ts, body)}
    r = httpx.post(o.payload["to"], content=body, headers=headers, timeout=cfg.timeout_s)
    if not 200 <= r.status_code < 300:
        raise SendError(f"the webhook answered {r.status_code}")
