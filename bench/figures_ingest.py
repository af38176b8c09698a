# SPDX-License-Identifier: MIT
"""Ingest throughput of the reference server, over loopback, in one run.

ingest_records_per_s: 1,000 simulated bulbs each post a day's batch of journal records as
signed requests to a real server process (uvicorn, SQLite file, synchronous=FULL) through a
few concurrent keep-alive connections. Baseline: the same bulbs posting one request per
record (the naive design), measured in the same run against the same server.
Requests are built and signed before the clock starts: the figure is the server's.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench.run import figure
from mimamori.storage import Store
from mimamori_firmware import record
from sim.batch_client import BatchSender, Request
from sim.server_process import REPO, ServerProcess

DEVICES = 1000
PER_BATCH = 24  # about a day of a typical household: power-ons, alive marks, links, anchors
SINGLES_PER_DEVICE = 2  # baseline requests per bulb (enough for a stable rate, well under 60 s)
CONNECTIONS = 4


def _raw(req: Request, port: int) -> bytes:
    head = (f"POST {req.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {req.headers['Content-Type']}\r\nContent-Length: {len(req.body)}\r\n"
            f"Authorization: {req.headers['Authorization']}\r\n\r\n")
    return head.encode() + req.body


def _day(bulb: BatchSender, n: int) -> list[bytearray]:
    recs = [bulb.record(record.K_POWER_ON, sub=1, arg=1, up_ms=40)]
    recs.append(bulb.record(record.K_LINK, sub=record.T_WIFI, aux=-70, arg=900))
    recs.append(bulb.record(record.K_ANCHOR, sub=record.A_SERVER, arg=1_767_225_600))
    while len(recs) < n:
        recs.append(bulb.record(record.K_ALIVE))
    return recs[:n]


def _send_all(port: int, per_bulb: list[list[bytes]],
              connections: int = CONNECTIONS) -> tuple[float, int]:
    """Post every bulb's requests, in order, over `connections` keep-alive sockets (a bulb
    keeps to one connection: its replay counter must arrive in order); (seconds, 200s)."""
    lanes: list[list[bytes]] = [[] for _ in range(connections)]
    for i, reqs in enumerate(per_bulb):
        lanes[i % connections].extend(reqs)
    ok = [0] * connections
    errors: list[Exception] = []

    def lane(i: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
                for raw in lanes[i]:
                    s.sendall(raw)
                    while b"\r\n\r\n" not in buf:
                        buf += s.recv(65536)
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    while len(buf) < length:
                        buf += s.recv(65536)
                    buf = buf[length:]
                    ok[i] += head.startswith(b"HTTP/1.1 200")
        except Exception as e:  # noqa: BLE001 -- re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed, sum(ok)


def figures() -> list[dict]:
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=REPO / "var"))
    try:
        db = work / "m.db"
        store = Store.open(db)
        bulbs = []
        for i in range(DEVICES):
            dev = store.register_device(0, f"bulb-{i:04d}")
            bulbs.append(BatchSender(dev.id, dev.key_bytes, epoch=0x1000 + i))
        store.close()
        with ServerProcess(db) as srv:
            batched = [[_raw(b.request(_day(b, PER_BATCH)), srv.port)] for b in bulbs]
            singles = [[_raw(b.request([r]), srv.port) for r in _day(b, SINGLES_PER_DEVICE)]
                       for b in bulbs]
            n_single = DEVICES * SINGLES_PER_DEVICE
            t_batch, ok_batch = _send_all(srv.port, batched)
            t_single, ok_single = _send_all(srv.port, singles)
        if ok_batch != DEVICES or ok_single != n_single:
            raise RuntimeError(f"only {ok_batch}/{DEVICES} batches and {ok_single}/"
                               f"{n_single} single-record requests were accepted")
        store = Store.open(db)
        try:
            stored = len(store.dump()["records"])
        finally:
            store.close()
        want = DEVICES * PER_BATCH + n_single
        if stored != want:
            raise RuntimeError(f"{stored} records stored, {want} sent")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = DEVICES * PER_BATCH / t_batch
    base = n_single / t_single
    return [
        figure("ingest_records_per_s", round(rate, 1), "rec/s", round(base, 1),
               f"{DEVICES} bulbs x {PER_BATCH}-record batches, {CONNECTIONS} keep-alive "
               f"connections, loopback, SQLite synchronous=FULL; baseline: one request per "
               f"record ({n_single} requests)"),
        figure("ingest_batches_per_s", round(DEVICES / t_batch, 1), "req/s",
               round(n_single / t_single, 1),
               f"signed {PER_BATCH}-record batches vs one-record requests, same server"),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
