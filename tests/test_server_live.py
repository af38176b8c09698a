# SPDX-License-Identifier: MIT
"""The server as a real uvicorn process on loopback, over real sockets: what a bulb meets."""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mimamori.storage import Store
from mimamori_firmware import protocol, record
from sim.batch_client import BatchSender, Request
from sim.server_process import REPO, ServerProcess


def register(db: Path, device: str = "bulb-1") -> BatchSender:
    store = Store.open(db)
    try:
        dev = store.register_device(0, device, "home-1")
    finally:
        store.close()
    return BatchSender(device, dev.key_bytes)


def dump(db: Path) -> dict[str, list[tuple]]:
    store = Store.open(db)
    try:
        return store.dump()
    finally:
        store.close()


def post(http: httpx.Client, req: Request) -> httpx.Response:
    return http.post(req.path, content=req.body, headers=req.headers)


def alive(bulb: BatchSender, n: int) -> list[bytearray]:
    return [bulb.record(record.K_ALIVE) for _ in range(n)]


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "mimamori.db"


def test_records_sent_twice_over_http_are_stored_once(db):
    bulb = register(db)
    with ServerProcess(db) as srv, httpx.Client(base_url=srv.url) as http:
        recs = [bulb.record(record.K_POWER_ON, up_ms=30)] + alive(bulb, 9)
        r = post(http, bulb.request(recs))
        assert r.status_code == 200 and r.json()["ack"] == 9
        assert abs(r.json()["time_ms"] - time.time() * 1000) < 60_000
        r = post(http, bulb.request(recs + alive(bulb, 5)))
        assert r.json()["ack"] == 14
    assert sorted(row[2] for row in dump(db)["records"]) == list(range(15))


def test_replayed_and_forged_requests_over_http_change_nothing(db):
    bulb = register(db)
    with ServerProcess(db) as srv, httpx.Client(base_url=srv.url) as http:
        captured = bulb.request(alive(bulb, 3))
        assert post(http, captured).status_code == 200
        before = dump(db)
        r = post(http, captured)
        assert r.status_code == 409 and r.json()["error"] == "replayed"
        forged = Request(captured.path, captured.headers, captured.body[:-1] + b"\0")
        assert post(http, forged).status_code == 401
        assert dump(db) == before


def test_server_killed_after_commit_before_answering_dedups_the_resend(db):
    """Power cut at the server between storing a batch and the bulb reading the answer."""
    bulb = register(db)
    srv = ServerProcess(db)
    srv.start()
    try:
        recs = [bulb.record(record.K_POWER_ON, up_ms=20)] + alive(bulb, 4)
        req = bulb.request(recs)
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(
                f"POST {req.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(req.body)}\r\n"
                f"Content-Type: {req.headers['Content-Type']}\r\n"
                f"Authorization: {req.headers['Authorization']}\r\n\r\n".encode() + req.body
            )
            ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            deadline = time.monotonic() + 20
            while ro.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0:
                assert time.monotonic() < deadline, "the server never committed the batch"
                time.sleep(0.005)
            ro.close()
            srv.kill()  # the answer is never read
        srv.start()  # same database file
        with httpx.Client(base_url=srv.url) as http:
            # the bulb never saw the ack: it sends the same records again (next request number)
            r = post(http, bulb.request(recs + alive(bulb, 1)))
            assert r.status_code == 200 and r.json()["ack"] == 5
    finally:
        srv.stop()
    d = dump(db)
    assert sorted(row[2] for row in d["records"]) == [0, 1, 2, 3, 4, 5]
    assert sorted((row[5], row[6]) for row in d["batches"]) == [(5, 5), (6, 1)]  # count, stored


def test_broken_http_and_cut_connections_get_4xx_and_the_server_keeps_answering(db):
    bulb = register(db)
    with ServerProcess(db) as srv:
        before = dump(db)
        for must_answer, raw in enumerate((
            b"GARBAGE\r\n\r\n",
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 500\r\nAuthorization: Mimamori bulb-1:" + b"0" * 64 +
            b"\r\n\r\n" + b"\x01" * 10,  # then the line drops mid-body
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40,  # TLS to a plain port
        )):
            must_answer = must_answer < 2
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
            assert answer or not must_answer
            if answer:
                status = int(answer.split(b" ", 2)[1])
                assert 400 <= status < 500, answer
        assert dump(db) == before
        with httpx.Client(base_url=srv.url) as http:
            assert post(http, bulb.request(alive(bulb, 1))).status_code == 200


def test_https_works_for_a_bulb_that_has_the_ca_certificate(db, tmp_path):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    bulb = register(db)
    with ServerProcess(db, cert=str(cert), key=str(key)) as srv:
        assert srv.url.startswith("https://")
        ca = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=srv.url, verify=ca) as http:
            r = post(http, bulb.request(alive(bulb, 2)))
            assert r.status_code == 200 and r.json()["ack"] == 1
        # without the CA the bulb refuses the server
        with httpx.Client(base_url=srv.url) as http, pytest.raises(httpx.ConnectError):
            post(http, bulb.request(alive(bulb, 1)))


def mimamori(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mimamori.cli", "--db", str(db), *args],
                          check=False, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_cli_registered_bulb_talks_and_gets_the_settings_set_for_it(db):
    out = mimamori(db, "device", "register", "--id", "toilet", "--household", "sato",
                   "--server", "http://127.0.0.1:9", "--json")
    assert out.returncode == 0, out.stderr
    site = json.loads(out.stdout)
    assert site["device_id"] == "toilet" and site["server"] == "http://127.0.0.1:9"
    bulb = BatchSender("toilet", bytes.fromhex(site["device_key"]))
    bad = mimamori(db, "device", "settings", "toilet", "brightness=3")
    assert bad.returncode == 2 and "'brightness' must be a number 0.05..1.0" in bad.stderr
    assert mimamori(db, "device", "settings", "toilet", "brightness=0.7",
                    "heartbeat_s=600").returncode == 0
    with ServerProcess(db) as srv, httpx.Client(base_url=srv.url) as http:
        r = post(http, bulb.request([bulb.record(record.K_POWER_ON)]))
        assert r.json()["sv"] == 1
        assert r.json()["settings"] == {"brightness": 0.7, "heartbeat_s": 600}
        r = post(http, bulb.request(alive(bulb, 1), sv=1))
        assert "settings" not in r.json()
    listed = mimamori(db, "device", "list")
    assert "toilet" in listed.stdout and "sato" in listed.stdout
    assert protocol.PATH == "/v1/batches"
