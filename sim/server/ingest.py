# SPDX-License-Identifier: MIT
"""Ingest, the pure part: read the Authorization header, check the signature, parse a batch.

No I/O here: the endpoint (mimamori.app) feeds bytes in and the store (mimamori.storage)
applies the result. Every refusal is a Reject carrying the HTTP status, a short error code and
a detail that says what was wrong and what to do; nothing else may escape for client input.

It must never accept a body it has not authenticated, nor a record whose CRC does not match.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence

from mimamori.storage import Batch
from mimamori_firmware import protocol, record

MAX_BODY = protocol.HEADER_SIZE + protocol.MAX_RECORDS * record.SIZE
CONTENT_TYPE = "application/octet-stream"
_AUTH_RE = re.compile(r"^Mimamori ([A-Za-z0-9_.-]{1,32}):([0-9a-f]{64})$")


class Reject(Exception):
    """A client error: HTTP status, error code, detail (and optional extra JSON fields)."""

    def __init__(self, status: int, error: str, detail: str, **extra: object):
        super().__init__(status, error, detail)
        self.status, self.error, self.detail, self.extra = status, error, detail, extra

    def body(self) -> dict[str, object]:
        return {"error": self.error, "detail": self.detail, **self.extra}


def parse_authorization(value: str | None) -> tuple[str, str]:
    """(device, signature hex) from 'Mimamori <device>:<64 lowercase hex>'."""
    if not value:
        raise Reject(401, "unauthenticated",
                     "no Authorization header: send 'Mimamori <device>:<hex HMAC-SHA256>'")
    m = _AUTH_RE.match(value.strip())
    if not m:
        raise Reject(401, "unauthenticated",
                     "Authorization must be 'Mimamori <device>:<64 lowercase hex digits>'")
    return m.group(1), m.group(2)


# the one answer for an unknown device and a wrong signature: nobody learns which ids exist
BAD_SIGNATURE = ("the signature does not match a key this server holds: register the device "
                 "(`mimamori device register`) and sign METHOD SP PATH?QUERY LF device LF body "
                 "with its key (protocol.sign)")
_NO_KEY = bytes(32)  # checked against for an unknown device, so both take the same time


def check_signature(key: bytes | None, method: str, path: bytes | str, device: str,
                    body: bytes, sig: str) -> None:
    """Reject 401 bad_signature, the same for an unknown device (key None) and a wrong key."""
    ok = signature_ok(key or _NO_KEY, method, path, device, body, sig)
    if key is None or not ok:
        raise Reject(401, "bad_signature", BAD_SIGNATURE)


def signature_ok(key: bytes, method: str, path: bytes | str, device: str, body: bytes,
                 sig: str) -> bool:
    """Constant-time comparison with protocol.sign over METHOD SP PATH LF device LF body."""
    want = protocol.sign(key, method, path, device, body)
    return hmac.compare_digest(want.encode(), sig.encode())


def parse_sv(query: list[tuple[str, str]]) -> int:
    """The settings version the bulb has applied (?sv=N, 0 when absent)."""
    values = [v for k, v in query if k == "sv"]
    if not values:
        return 0
    v = values[0]  # str.isdigit() also takes '²' and other digits int() refuses: ASCII only
    if len(values) > 1 or not (v.isascii() and v.isdigit()) or len(v) > 10:
        raise Reject(400, "bad_query", "sv must appear once, a whole number 0..4294967295 "
                     "(the settings version the bulb applied, 0 if none)")
    return int(values[0])


def parse_batch(device: str, body: bytes) -> Batch:
    """Check the header and every record; a Batch, or Reject (400/413) saying what is wrong."""
    n = len(body)
    if n < protocol.HEADER_SIZE:
        raise Reject(400, "malformed", f"the body is {n} bytes; a batch starts with a "
                     f"{protocol.HEADER_SIZE}-byte header")
    version, flags, count, epoch, from_seq, boot, req, up_ms = protocol.unpack_header(body)
    if version != protocol.VERSION:
        raise Reject(400, "unsupported_version", f"batch version {version}: this server speaks "
                     f"version {protocol.VERSION}")
    if flags != 0:
        raise Reject(400, "malformed", f"header flags are {flags:#04x}; version 1 defines none "
                     "(send 0)")
    if count > protocol.MAX_RECORDS:
        raise Reject(413, "too_many_records", f"count is {count}; send at most "
                     f"{protocol.MAX_RECORDS} records per batch")
    want = protocol.HEADER_SIZE + count * record.SIZE
    if n != want:
        raise Reject(400, "malformed", f"count says {count} records ({want} bytes with the "
                     f"header) but the body is {n} bytes")
    records: list[tuple[int, int, int, int, int, int, int]] = []
    last = -1
    for i in range(count):
        off = protocol.HEADER_SIZE + i * record.SIZE
        r = record.unpack(body, off)
        where = f"record {i} (body bytes {off}..{off + record.SIZE - 1})"
        if r is None:
            raise Reject(400, "bad_record", f"{where} is erased flash or its CRC does not match; "
                         "send only records that pass record.valid()")
        seq, kind = r[0], r[3]
        if seq == record.EMPTY:
            raise Reject(400, "bad_record", f"{where} has seq 0xFFFFFFFF, which marks an empty "
                         "slot")
        if kind == record.K_ACK:
            raise Reject(400, "bad_record", f"{where} is an ACK record; those stay in flash")
        if seq < from_seq:
            raise Reject(400, "bad_record", f"{where} has seq {seq}, below from_seq {from_seq}: "
                         "from_seq must be at most the first record's seq")
        if seq <= last:
            raise Reject(400, "bad_record", f"{where} has seq {seq} after seq {last}: records "
                         "must be in increasing seq order")
        last = seq
        records.append(r)
    return Batch(device=device, epoch=epoch, from_seq=from_seq, boot=boot, req=req,
                 records=records, size=n, up_ms=up_ms)


def build_batch(records: Sequence[bytes | bytearray], epoch: int, from_seq: int, boot: int,
                req: int, up_ms: int = 0) -> bytes:
    """A request body from packed records (tests, bench and docs use it; the bulb has its own).
    up_ms: the sender's uptime when sending (0: not given, no receipt anchor)."""
    head = bytearray(protocol.HEADER_SIZE)
    protocol.pack_header(head, len(records), epoch, from_seq, boot, req, up_ms)
    return bytes(head) + b"".join(bytes(r) for r in records)


def signed_headers(device: str, key: bytes, path_qs: str, body: bytes) -> dict[str, str]:
    """The headers a bulb sends for body posted at path_qs (path and query, exactly as sent)."""
    sig = protocol.sign(key, "POST", path_qs, device, body)
    return {"Authorization": protocol.authorization(device, sig), "Content-Type": CONTENT_TYPE}

