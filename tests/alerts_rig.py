# SPDX-License-Identifier: MIT
"""Test rig of the alert tests: a real SMTP server (aiosmtpd) with inboxes, a real HTTP webhook
receiver that can fail on purpose, and helpers that put a household with records in a database.

It must never assert on timings; waits are polls with a generous real-time limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mimamori.ingest import parse_batch
from mimamori.storage import Store
from mimamori_firmware import record
from sim.batch_client import BatchSender
from sim.smtp_sink import SmtpSink
from tests.waiting import wait_for


class Inboxes(SmtpSink):
    """The SMTP sink of sim/smtp_sink.py (loopback, keeps every message in memory), with a
    wait that fails the test when a mail does not come."""

    def wait(self, pred: Callable[[], Any], timeout: float = 30.0) -> Any:
        try:
            return wait_for(pred, "the mail", timeout)
        except AssertionError:
            raise AssertionError(f"not delivered within {timeout} s; inbox: "
                                 + "; ".join(f"{m.to} {m.subject}" for m in self.mails)) from None


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint on loopback; `fail` is a list of statuses to answer first."""

    fail: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)

    def start(self) -> Receiver:
        rig = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                status = rig.fail.pop(0) if rig.fail else 200
                rig.hits.append(Hit({k: v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signature_ok(secret: str, hit: Hit) -> bool:
    ts = hit.headers["X-Mimamori-Timestamp"]
    want = "sha256=" + hmac.new(bytes.fromhex(secret), ts.encode() + b"." + hit.body,
                                hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, hit.headers["X-Mimamori-Signature"])


def visit(store: Store, sender: BatchSender, start_s: float, length_s: float = 120.0,
          received_s: float | None = None) -> None:
    """One anchored visit of a bulb, stored as the ingest endpoint would store it (when the
    lamp goes off, or at received_s for a late report)."""
    recs = [sender.new_boot(),
            sender.record(record.K_ANCHOR, record.A_SERVER, 0, int(start_s) + 1, up_ms=1000),
            sender.record(record.K_OFF, up_ms=int(length_s * 1000))]
    req = sender.request(recs)
    at = start_s + length_s + 1 if received_s is None else received_s
    store.ingest(parse_batch(sender.device, req.body), int(at * 1000))
