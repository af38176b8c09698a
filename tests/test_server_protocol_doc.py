# SPDX-License-Identifier: MIT
"""docs/protocol.md's worked example is what the real code produces, byte for byte."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from mimamori.app import create_app
from mimamori.ingest import build_batch, signed_headers
from mimamori_firmware import protocol, record

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
KEY = bytes(range(32))
EPOCH = 0x5EED0001


def spaced(b: bytes | bytearray) -> str:
    return bytes(b).hex(" ")


def example():
    recs = [
        record.pack(17, 3, 412, record.K_POWER_ON, 1, 0, 1),
        record.pack(18, 3, 2310, record.K_LINK, record.T_WIFI, -61, 1850),
        record.pack(20, 3, 902310, record.K_ALIVE),
    ]
    first = build_batch(recs, EPOCH, 17, 3, 1, up_ms=902431)
    second = build_batch([record.pack(21, 3, 1802310, record.K_ALIVE)], EPOCH, 21, 3, 2,
                         up_ms=1802342)
    return recs, first, second


def test_the_documented_bytes_and_signatures_are_what_the_code_makes():
    recs, first, second = example()
    assert KEY.hex() in DOC
    assert spaced(first[: protocol.HEADER_SIZE]) in DOC
    for r in recs:
        assert spaced(r) in DOC
    assert protocol.sign(KEY, "POST", "/v1/batches?sv=0", "bulb-0001", first) in DOC
    assert spaced(second[: protocol.HEADER_SIZE]) in DOC
    assert spaced(second[protocol.HEADER_SIZE :]) in DOC
    assert protocol.sign(KEY, "POST", "/v1/batches?sv=1", "bulb-0001", second) in DOC
    assert f"Content-Length: {len(first)}" in DOC


def test_the_documented_answers_are_what_the_server_says(tmp_path):
    _, first, second = example()
    app = create_app(tmp_path / "m.db", clock=lambda: 1767257100.250)
    store = app.state.store
    store.register_device(0, "bulb-0001")
    with store.db.tx() as c:
        c.execute("UPDATE devices SET key = ? WHERE id = ?", (KEY.hex(), "bulb-0001"))
    store.set_settings("bulb-0001", {"brightness": 0.7, "heartbeat_s": 600})
    with TestClient(app) as client:
        answers = []
        for path, body in (("/v1/batches?sv=0", first), ("/v1/batches?sv=1", second),
                           ("/v1/batches?sv=1", second)):
            r = client.post(path, content=body,
                            headers=signed_headers("bulb-0001", KEY, path, body))
            answers.append(r)
    for r in answers:
        assert r.text in DOC
        assert f"content-length: {len(r.content)}" in DOC
    assert [r.status_code for r in answers] == [200, 200, 409]
