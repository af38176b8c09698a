# SPDX-License-Identifier: MIT
"""A host-side stand-in for a bulb's uplink, for tests, the bench and the protocol doc.

It builds and signs requests exactly as docs/protocol.md says (the real bulb does the same in
firmware/uplink.py, in MicroPython). It keeps a journal's identity (epoch), the boot number,
the request counter and the next seq.

It must never be used by the server itself: it is the client side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mimamori.ingest import build_batch, signed_headers
from mimamori_firmware import protocol, record


@dataclass
class Request:
    path: str  # path and query, exactly as signed
    headers: dict[str, str]
    body: bytes


@dataclass
class BatchSender:
    device: str
    key: bytes
    epoch: int = 0x5EED0001
    boot: int = 1
    req: int = 0
    next_seq: int = 0
    up_ms: int = 0
    sent: list[bytearray] = field(default_factory=list)

    def record(self, kind: int, sub: int = 0, aux: int = 0, arg: int = 0,
               up_ms: int | None = None) -> bytearray:
        """A new journal record (the next seq of this boot; a K_ACK entry, as in the bulb's
        journal, takes no seq of its own: it has the seq of the record before it)."""
        self.up_ms = self.up_ms + 1000 if up_ms is None else up_ms
        share = kind == record.K_ACK
        r = record.pack(self.next_seq - share, self.boot, self.up_ms, kind, sub, aux, arg)
        self.next_seq += not share
        return r

    def new_boot(self) -> bytearray:
        self.boot += 1
        self.req = 0
        self.up_ms = 0
        return self.record(record.K_POWER_ON, arg=1, up_ms=5)

    def request(self, records: list[bytearray], from_seq: int | None = None, sv: int = 0,
                req: int | None = None, sent_up_ms: int = 0) -> Request:
        """A signed POST for these records; from_seq defaults to the first record's seq.
        sent_up_ms: the uptime the header says it was sent at (0: not given)."""
        if req is None:
            self.req += 1
            req = self.req
        if from_seq is None:
            from_seq = record.seq_of(records[0]) if records else self.next_seq
        body = build_batch(records, self.epoch, from_seq, self.boot, req, sent_up_ms)
        path = f"{protocol.PATH}?sv={sv}"
        return Request(path, signed_headers(self.device, self.key, path, body), body)
