# SPDX-License-Identifier: MIT
"""A flood of malformed, truncated, oversized, mutated, forged and replayed requests (Hypothesis)
against the live server process: every one gets a 4xx, the store stays exactly as it was, and
the server keeps accepting the real bulb afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mimamori.ingest import CONTENT_TYPE, MAX_BODY, build_batch, signed_headers
from mimamori.storage import Store
from mimamori_firmware import protocol, record
from sim.batch_client import BatchSender, Request
from sim.server_process import ServerProcess

H = protocol.HEADER_SIZE


@dataclass
class World:
    srv: ServerProcess
    http: httpx.Client
    store: Store
    bulb: BatchSender
    captured: list[Request]  # requests the server already accepted


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    db = tmp_path_factory.mktemp("flood") / "m.db"
    store = Store.open(db)
    dev = store.register_device(0, "bulb-1", "home-1")
    bulb = BatchSender("bulb-1", dev.key_bytes)
    with ServerProcess(db) as srv, httpx.Client(base_url=srv.url, timeout=10) as http:
        captured = []
        for n in (1, 3, 5):
            req = bulb.request([bulb.record(record.K_ALIVE) for _ in range(n)])
            assert http.post(req.path, content=req.body, headers=req.headers).status_code == 200
            captured.append(req)
        yield World(srv, http, store, bulb, captured)
    store.close()


def signed(w: World, body: bytes, sv: str = "0") -> tuple[str, dict[str, str], bytes]:
    path = protocol.PATH + "?sv=" + sv
    return path, signed_headers(w.bulb.device, w.bulb.key, path, body), body


def fresh_records(w: World, n: int) -> list[bytearray]:
    """Records the server has not seen (seqs above everything sent), not counted by the bulb."""
    base = w.bulb.next_seq + 100
    return [record.pack(base + i, w.bulb.boot, 1000 * i, record.K_ALIVE) for i in range(n)]


@st.composite
def attack(draw, w: World) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of a request the server must refuse without a change."""
    bulb = w.bulb
    kind = draw(st.sampled_from([
        "replay", "mutated_unsigned", "replayed_counter", "corrupt_record", "bad_header",
        "truncated", "oversized", "bad_auth", "bad_content_type", "bad_sv", "bad_method",
        "bad_records", "random_signed",
    ]))
    base = draw(st.sampled_from(w.captured))
    n = draw(st.integers(1, 6))
    fresh = build_batch(fresh_records(w, n), bulb.epoch, bulb.next_seq + 100, bulb.boot,
                        bulb.req + draw(st.integers(1, 1000)))
    if kind == "replay":
        return "POST", base.path, base.headers, base.body
    if kind == "mutated_unsigned":  # a captured request altered in transit: signature breaks
        body = bytearray(base.body)
        op = draw(st.sampled_from(["flip", "cut", "extend"]))
        if op == "flip":
            i = draw(st.integers(0, len(body) - 1))
            body[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            body = body[: draw(st.integers(0, len(body) - 1))]
        else:
            body += draw(st.binary(min_size=1, max_size=100))
        return "POST", base.path, base.headers, bytes(body)
    if kind == "replayed_counter":  # genuine signature, new records, old (boot, req)
        req = draw(st.integers(0, bulb.req))
        body = build_batch(fresh_records(w, n), bulb.epoch, bulb.next_seq + 100, bulb.boot, req)
        return "POST", *signed(w, body)
    if kind == "corrupt_record":
        body = bytearray(fresh)
        i = draw(st.integers(H, len(body) - 1))
        body[i] ^= draw(st.integers(1, 255))
        return "POST", *signed(w, bytes(body))
    if kind == "bad_header":
        body = bytearray(fresh)
        field = draw(st.sampled_from(["version", "flags", "count"]))
        if field == "version":
            body[0] = draw(st.integers(0, 255).filter(lambda v: v != protocol.VERSION))
        elif field == "flags":
            body[1] = draw(st.integers(1, 255))
        else:
            body[2:4] = draw(st.integers(0, 65535).filter(lambda c: c != n)).to_bytes(2, "little")
        return "POST", *signed(w, bytes(body))
    if kind == "truncated":
        cut = draw(st.integers(0, len(fresh) - 1))
        return "POST", *signed(w, fresh[:cut])
    if kind == "oversized":
        extra = draw(st.integers(1, 3 * MAX_BODY))
        return "POST", *signed(w, fresh + bytes(extra) + b"x" * (MAX_BODY - len(fresh)))
    if kind == "bad_auth":
        path, headers, body = signed(w, fresh)
        auth = draw(st.one_of(
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                    max_size=120).map(str.strip),
            st.just("Mimamori bulb-2:" + headers["Authorization"].split(":")[1]),
            st.just(headers["Authorization"].upper()),
            st.just(headers["Authorization"][:-1] + ("1" if headers["Authorization"][-1] == "0"
                                                       else "0")),
        ))
        return "POST", path, {**headers, "Authorization": auth}, body
    if kind == "bad_content_type":
        path, headers, body = signed(w, fresh)
        ctype = draw(st.sampled_from(["application/json", "text/plain", "", "octet-stream",
                                      "multipart/form-data; boundary=x"]))
        return "POST", path, {**headers, "Content-Type": ctype}, body
    if kind == "bad_sv":
        sv = draw(st.sampled_from(["", "-1", "x", "1.5", "1&sv=2", "99999999999", "0x10"]))
        return "POST", *signed(w, fresh, sv)
    if kind == "bad_method":
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]))
        # not "/": that is the dashboard's page (a redirect to its login), not the upload API
        path = draw(st.sampled_from([protocol.PATH, "/v1", "/v1/batch", "/v1/batches/1"]))
        return method, path, signed(w, fresh)[1], fresh
    if kind == "bad_records":
        recs = fresh_records(w, 3)
        defect = draw(st.sampled_from(["ack", "empty_seq", "below_from", "unordered", "erased"]))
        from_seq = record.seq_of(recs[0])
        if defect == "ack":
            recs[1] = record.pack(record.seq_of(recs[1]), bulb.boot, 5, record.K_ACK, arg=3)
        elif defect == "empty_seq":
            recs[2] = record.pack(record.EMPTY, bulb.boot, 5, record.K_ALIVE)
        elif defect == "below_from":
            from_seq += 1
        elif defect == "unordered":
            recs[0], recs[1] = recs[1], recs[0]
        else:
            recs[1] = bytearray(b"\xff" * record.SIZE)
        body = build_batch(recs, bulb.epoch, from_seq, bulb.boot, bulb.req + 1)
        return "POST", *signed(w, body)
    # random_signed: random bytes, correctly signed; too short for a header or not a whole
    # number of records, so the count can never match
    body = draw(st.binary(max_size=H + 3 * record.SIZE).filter(
        lambda b: len(b) < H or (len(b) - H) % record.SIZE))
    return "POST", *signed(w, body)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_flood_of_bad_requests_gets_4xx_and_leaves_the_store_unchanged(world, data):
    before = world.store.dump()
    method, path, headers, body = data.draw(attack(world))
    r = world.http.request(method, path, content=body, headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if r.headers.get("content-type", "").startswith("application/json"):
        assert set(r.json()) >= {"error", "detail"}
        event(f"{r.status_code} {r.json()['error']}")
    assert world.store.dump() == before


def test_after_the_flood_the_real_bulb_is_still_accepted(world):
    bulb = world.bulb
    req = bulb.request([bulb.record(record.K_POWER_ON)])
    r = world.http.post(req.path, content=req.body, headers=req.headers)
    assert r.status_code == 200 and r.json()["ack"] == bulb.next_seq - 1
    assert CONTENT_TYPE == "application/octet-stream"
