# SPDX-License-Identifier: MIT
"""Connection discipline for a server on the open internet: what a stranger can hold.

Two layers, both installed by `mimamori serve`:

    Guard (ASGI)       before any route reads a byte of body: a byte limit per route
                       (Content-Length checked first, chunked bodies counted as they come),
                       the gates that authenticate before parsing (the JSON API's token), a total
                       time for the whole body, and the answer 413 / 408 / 401 with
                       `Connection: close`. Every page also gets the security headers here.
    GuardedH11Protocol  (uvicorn's HTTP protocol, subclassed) a time limit for the request
                       head, and a cap on open connections kept under the open-file limit: when
                       it is reached, the connection that has waited longest for its request head
                       is closed, so a bulb (which sends its head at once) always finds room.

`RepeatFilter` turns a burst of identical log lines ("Too many open files", a failing
webhook) into the first few and then one line a minute saying how many were held back.

Why not uvicorn's own options: `limit_concurrency` answers 503 to everyone once the count of
connections (idle ones included) reaches it, so 1,000 idle sockets would lock bulbs out as
before; `timeout_keep_alive` only starts after a response, never for a head that is being
trickled. The knobs are environment variables (docs/operations.md):
MIMAMORI_HEAD_TIMEOUT_S (10), MIMAMORI_BODY_TIMEOUT_S (30), MIMAMORI_MAX_CONNECTIONS (900, and
never more than the open-file limit less 100).

It must never read a body past its route's limit, never hand an unauthenticated body to the
JSON API, and never close a connection that is in the middle of a request to make room.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("mimamori.guard")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# a gate: (scope) -> None to let the request through, or (status, error, detail, headers)
Gate = Callable[[Scope], Awaitable[tuple[int, str, str, dict[str, str]] | None]]

FORM_LIMIT = 8192  # forms, sign-in, link pages, anything without its own limit
API_LIMIT = 65536  # the JSON API

SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}
HSTS = "max-age=31536000"


def env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise ValueError(f"{name}={raw!r}: write a number of seconds, e.g. {default:g}")
    return v


class Guard:
    """ASGI middleware: byte limits, gates, a body deadline and security headers."""

    def __init__(self, app: Any, limits: Sequence[tuple[str, int]] = (),
                 default_limit: int = FORM_LIMIT, body_timeout_s: float | None = None,
                 gates: Sequence[tuple[str, Gate]] = (), bare: Sequence[str] = ()):
        self.app = app
        # paths only bulbs call (their protocol, their updates): no browser headers, whose
        # 300 bytes a bulb would pay for on every LTE-M answer and never read
        self.bare = tuple(bare)
        self.limits = sorted(limits, key=lambda x: -len(x[0]))  # the longest prefix wins
        self.default_limit = default_limit
        self.body_timeout_s = (env_seconds("MIMAMORI_BODY_TIMEOUT_S", 30.0)
                               if body_timeout_s is None else body_timeout_s)
        self.gates = gates  # kept by reference: parts of the server add theirs at install

    def limit_for(self, path: str) -> int:
        for prefix, n in self.limits:
            if path == prefix or path.startswith(prefix):
                return n
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") == "https"
        path = scope.get("path", "")
        dress = _with_headers if not path.startswith(self.bare) else _bare
        answered = False
        sent_start = False

        async def send_guarded(msg: Message) -> None:
            nonlocal sent_start
            if answered:
                return  # the guard has answered already: the route's answer goes nowhere
            if msg["type"] == "http.response.start":
                sent_start = True
                msg = {**msg, "headers": dress(msg.get("headers", []), tls)}
            await send(msg)

        async def refuse(status: int, error: str, detail: str,
                         headers: dict[str, str] | None = None) -> None:
            nonlocal answered
            if sent_start or answered:
                answered = True
                return
            answered = True
            body = json.dumps({"error": error, "detail": detail}).encode()
            hs = [(b"content-type", b"application/json"), (b"connection", b"close"),
                  (b"content-length", str(len(body)).encode())]
            hs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
            await send({"type": "http.response.start", "status": status,
                        "headers": dress(hs, tls)})
            await send({"type": "http.response.body", "body": body})

        limit = self.limit_for(path)
        length = _header(scope, b"content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()) or len(length) > 15:
                await refuse(400, "bad_request", f"Content-Length {length!r} is not a number "
                             "of bytes")
                return
            if int(length) > limit:
                await refuse(413, "too_large", f"the body is {length} bytes; {path} takes at "
                             f"most {limit}")
                return
        for prefix, gate in self.gates:
            if path.startswith(prefix):
                no = await gate(scope)
                if no is not None:
                    await refuse(*no)
                    return
        got = 0
        deadline: float | None = None

        async def receive_guarded() -> Message:
            nonlocal got, deadline
            if answered:
                return {"type": "http.disconnect"}
            if deadline is None:
                deadline = time.monotonic() + self.body_timeout_s
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await refuse(408, "timeout", f"the body did not arrive within "
                             f"{self.body_timeout_s:g} s: send it at once")
                return {"type": "http.disconnect"}
            if msg["type"] == "http.request":
                got += len(msg.get("body", b""))
                if got > limit:
                    await refuse(413, "too_large", f"the body exceeds {limit} bytes, the most "
                                 f"{path} takes")
                    return {"type": "http.disconnect"}
                if not msg.get("more_body"):
                    deadline = float("inf")  # the body is in: waits for a disconnect are fine
            return msg

        await self.app(scope, receive_guarded, send_guarded)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def _bare(headers: Any, tls: bool) -> list[tuple[bytes, bytes]]:
    return list(headers)


def _with_headers(headers: Any, tls: bool) -> list[tuple[bytes, bytes]]:
    hs = list(headers)
    have = {k.lower() for k, _ in hs}
    for k, v in SECURITY_HEADERS.items():
        if k.encode() not in have:
            hs.append((k.encode(), v.encode()))
    if tls and b"strict-transport-security" not in have:
        hs.append((b"strict-transport-security", HSTS.encode()))
    return hs


# ---------------------------------------------------------------------------------------------
# connections


def max_connections() -> int:
    """MIMAMORI_MAX_CONNECTIONS (default 900), never above the open-file limit less 100 (the
    database, logs and accept itself need descriptors too)."""
    raw = os.environ.get("MIMAMORI_MAX_CONNECTIONS", "900")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"MIMAMORI_MAX_CONNECTIONS={raw!r}: write a number of connections, "
                         "e.g. 900")
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            n = min(n, max(16, soft - 100))
    except (ImportError, OSError):
        pass
    return n


def raise_open_file_limit() -> None:
    """The soft open-file limit up to the hard one (the cap stays below whichever holds)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft != resource.RLIM_INFINITY and want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, OSError, ValueError):
        pass


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection cap that sheds the
    connection waiting longest for its head. Set head_timeout_s and max_conns on a subclass
    (`protocol()`)."""

    head_timeout_s = 10.0
    max_conns = 900

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._seen_cycle: object = None
        self._wait_for_head()
        if len(self.connections) > self.max_conns:
            self._shed()

    def _waiting(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _wait_for_head(self) -> None:
        self._waiting_since = time.monotonic()
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self._waiting() and not self.transport.is_closing():
            self.transport.close()

    def _shed(self) -> None:
        idle = [c for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c._waiting()
                and not c.transport.is_closing()]
        if not idle:
            self.transport.close()  # all busy with requests: this one waits its turn
            return
        oldest = min(idle, key=lambda c: c._waiting_since)
        oldest.transport.close()
        _shed_log.warning("connections at the cap (%d): closed one idle for %.1f s",
                          self.max_conns, time.monotonic() - oldest._waiting_since)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle  # a whole request head has arrived
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_head()  # the next request's head (keep-alive ends it sooner)

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()  # type: ignore[union-attr]
            self._head_timer = None
        super().connection_lost(exc)


_shed_log = logging.getLogger("mimamori.guard.connections")


def protocol(head_timeout_s: float | None = None,
             max_conns: int | None = None) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn.Config(http=...), from the environment by default."""
    return type("MimamoriH11Protocol", (GuardedH11Protocol,), {
        "head_timeout_s": (env_seconds("MIMAMORI_HEAD_TIMEOUT_S", 10.0)
                           if head_timeout_s is None else head_timeout_s),
        "max_conns": max_connections() if max_conns is None else max_conns})


# ---------------------------------------------------------------------------------------------
# logs


class RepeatFilter(logging.Filter):
    """At most `burst` lines per (logger, message template) in `window_s`; the first line of
    the next window says how many like it were held back."""

    def __init__(self, burst: int = 5, window_s: float = 60.0):
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        w = self._seen.get(key)
        if w is None or now - w[0] >= self.window_s:
            held = int(w[1]) - self.burst if w is not None else 0
            if len(self._seen) > 1000:  # forget the oldest windows, not every key at once
                for k in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[k]
            self._seen[key] = [now, 1.0]
            if held > 0:
                record.msg = f"{record.msg} [{held} more like this held back in the last " \
                             f"{self.window_s:.0f} s]"
            return True
        w[1] += 1
        return w[1] <= self.burst


def install_log_filter(loggers: Sequence[str] = ("", "uvicorn", "uvicorn.error", "asyncio")
                       ) -> RepeatFilter:
    """Put one RepeatFilter on every handler of these loggers (root: a stderr handler if it
    has none)."""
    f = RepeatFilter()
    root = logging.getLogger()
    if not root.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
    for name in loggers:
        for h in logging.getLogger(name).handlers:
            h.addFilter(f)
    return f
