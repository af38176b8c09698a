# SPDX-License-Identifier: MIT
"""A local SMTP server (aiosmtpd) that keeps every e-mail it accepts: the demo's watchers'
inboxes. Each message is kept in memory (`mails`) and written to `<dir>/NNN-<kind>.eml`, so
the e-mails of a demo can be read afterwards with any mail reader.

    sink = SmtpSink(Path("var/demo/mail")).start()
    env = {"MIMAMORI_SMTP": sink.address}          # the server sends here
    sink.of("aiko.suzuki@example.org", kind="alert")

It must never relay anything anywhere: it listens on loopback only and only stores.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, AnyStr, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from sim.server_process import free_port


@dataclass
class Mail:
    n: int  # order of arrival, from 1
    to: list[str]
    msg: EmailMessage
    received: float  # host time.time() when it arrived

    @property
    def subject(self) -> str:
        return str(self.msg["Subject"])

    @property
    def kind(self) -> str:
        """invite, alert, reminder, escalated, claimed, overdue, resolved, cleared, digest..."""
        return str(self.msg["X-Mimamori-Kind"] or "")

    @property
    def alert(self) -> str | None:
        a = self.msg["X-Mimamori-Alert"]
        return str(a) if a else None

    @property
    def message_id(self) -> str:
        return str(self.msg["Message-ID"])

    @property
    def body(self) -> str:
        part = self.msg.get_body(("plain",))
        return part.get_content() if part is not None else ""

    def links(self) -> list[str]:
        """The action links in the body, in order (claim first, then record the outcome)."""
        return re.findall(r"(https?://\S+/a/\S+)", self.body)


class _Trickle(SMTP):
    """An SMTP session that answers slowly: each reply byte by byte, `trickle_s` apart (every
    read of the client returns data long before its socket timeout, the whole reply late);
    with `stall`, the greeting never ends (continuation lines for ever)."""

    trickle_s = 0.0
    stall = False

    async def push(self, status: AnyStr) -> None:
        if not self.trickle_s:
            await super().push(status)
            return
        data = (status.encode() if isinstance(status, str) else status) + b"\r\n"
        while True:
            if self.stall and data.startswith(b"220 "):
                chunk = b"220-still here\r\n"  # a greeting that never comes to its last line
            else:
                chunk, data = data, b""
            for i in range(len(chunk)):
                self._writer.write(chunk[i:i + 1])
                await self._writer.drain()
                await asyncio.sleep(self.trickle_s)
            if not data:
                return


class _Controller(Controller):
    def __init__(self, handler: Any, trickle_s: float, stall: bool, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.trickle_s, self.stall = trickle_s, stall

    def factory(self) -> SMTP:
        smtp = _Trickle(self.handler, **self.SMTP_kwargs)
        smtp.trickle_s, smtp.stall = self.trickle_s, self.stall
        return smtp


class SmtpSink:
    def __init__(self, directory: Path | None = None, port: int | None = None,
                 trickle_s: float = 0.0, stall: bool = False, **smtp: Any) -> None:
        """directory: where to write each mail as .eml (None: keep them in memory only);
        port: None picks a free one; trickle_s: a slow relay, each reply byte `trickle_s`
        seconds apart; stall: a relay whose greeting never ends; smtp: aiosmtpd Controller
        options, e.g. tls_context=, require_starttls=, authenticator=, auth_require_tls= (the
        notify tests use them)."""
        self.dir = directory
        self.port = port or free_port()
        self.mails: list[Mail] = []
        self._lock = threading.Lock()
        self._ctl = _Controller(self, trickle_s, stall, hostname="127.0.0.1", port=self.port,
                                **smtp)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self._lock:
            m = Mail(len(self.mails) + 1, list(envelope.rcpt_tos), msg,  # type: ignore[arg-type]
                     time.time())
            self.mails.append(m)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / f"{m.n:03d}-{m.kind or 'mail'}.eml").write_bytes(raw)
        return "250 OK"

    def start(self) -> Self:
        self._ctl.start()
        return self

    def stop(self) -> None:
        self._ctl.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def all(self) -> list[Mail]:
        with self._lock:
            return list(self.mails)

    def since(self, n: int) -> list[Mail]:
        """Mails that arrived after the n-th."""
        with self._lock:
            return self.mails[n:]

    def of(self, addr: str, kind: str | None = None, alert: str | None = None) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if addr in m.to and (kind is None or m.kind == kind)
                    and (alert is None or m.alert == alert)]
