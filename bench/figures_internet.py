# SPDX-License-Identifier: MIT
"""The server on the open internet: what a slow receiver, idle sockets and large
unauthenticated bodies cost the bulbs and the families. Each figure against a baseline measured
in the same run, on a real server process on loopback.

    alert_delay_s_slow_webhook      seconds from when another household's alert is due until it
                                    reaches its webhook, while one household's three receivers
                                    answer one byte every 5 s (baseline: no trickle)
    bulb_ok_under_1100_idle_conns   share of a bulb's batches accepted while 1,100 sockets hold
                                    half-sent request heads (baseline: no idle sockets)
    rss_growth_mb_200mb_unauth_body the server's memory growth after a 200 MB body without
                                    credentials, the worst route of six (baseline: 1 KB bodies)

`python -m bench.figures_internet` prints them.
"""

from __future__ import annotations

import resource
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.run import figure
from mimamori import api
from mimamori import households as hh
from mimamori.ingest import parse_batch
from mimamori.storage import Database, Store
from mimamori_firmware import protocol, record
from sim.batch_client import BatchSender
from sim.server_process import ServerProcess

H = 3600.0
NOW = 1_772_000_000.0
ROUTES = ["/signin", "/a/sometoken", "/h/home-1/pauses", "/api/v1/households", "/in/in_x",
          protocol.PATH]


# ---------------------------------------------------------------------------------------------
# receivers


class _Hits:
    def __init__(self) -> None:
        self.first: float | None = None


def _receiver(hits: _Hits) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if hits.first is None and self.path == "/hook":  # the other household's
                hits.first = time.monotonic()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class _Trickle:
    """Answers every request one byte every `every_s` seconds (a receiver that trickles)."""

    def __init__(self, every_s: float = 5.0):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.every_s = every_s
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        try:
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if self.stop.wait(self.every_s):
                    break
                conn.sendall(bytes([b]))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# alert_delay_s_slow_webhook


def _visit(store: Store, s: BatchSender, start_s: float) -> None:
    recs = [s.new_boot(),
            s.record(record.K_ANCHOR, record.A_SERVER, 0, int(start_s) + 1, up_ms=1000),
            s.record(record.K_OFF, up_ms=121_000)]
    store.ingest(parse_batch(s.device, s.request(recs).body), int((start_s + 122) * 1000))


def _alert_delay(tmp: Path, slow_urls: list[str], fast_url: str, hits: _Hits,
                 lead_s: float = 15.0) -> float:
    """Seconds from when the other household's alert is due (24 h after its last switch-on,
    lead_s after the setup, on the real clock) until it reaches its webhook."""
    db_path = tmp / f"delay-{len(list(tmp.iterdir()))}.db"
    db = Database(db_path)
    store = Store(db)
    hh.open_people(db)
    now = float(int(time.time()))  # whole seconds: the anchor record holds whole seconds
    born = int((now - 30 * H) * 1000)
    with db.tx() as c:
        hh.add_household(c, born, "slow", settings={"activity_rule": "fixed"})
        for i, url in enumerate(slow_urls):
            hh.add_watcher(c, born, "slow", f"S{i}", webhook_url=url, quiet_hours="none")
        hh.add_household(c, born, "other", settings={"activity_rule": "fixed"})
        hh.add_watcher(c, born, "other", "O", webhook_url=fast_url, quiet_hours="none")
        c.execute("UPDATE outbox SET state = 'sent'")  # the invitations: not measured
    for hid in ("slow", "other"):
        dev = store.register_device(born, f"bulb-{hid}", hid)
        # switched on (powered on) at `start`: 24 h quiet from then is due lead_s from now
        _visit(store, BatchSender(dev.id, dev.key_bytes), now - 24 * H + lead_s)
    db.close()
    srv = ServerProcess(db_path, env={"MIMAMORI_SWEEP_S": "0.2"})
    srv.start(timeout=60)
    t0 = time.monotonic() + (now + lead_s - time.time())  # when it is due
    try:
        deadline = t0 + 300
        while hits.first is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if hits.first is None:
            raise RuntimeError("the other household's alert never reached its webhook")
        return hits.first - t0
    finally:
        srv.stop()


def alert_delay() -> tuple[float, float]:
    """(with a trickling receiver, baseline) seconds."""
    hits = _Hits()
    fast = _receiver(hits)
    fast_url = f"http://127.0.0.1:{fast.server_address[1]}/hook"
    trickle = _Trickle()
    try:
        with tempfile.TemporaryDirectory() as d:
            base = _alert_delay(Path(d), [fast_url.replace("/hook", "/slow")] * 3, fast_url,
                                hits)
            hits.first = None
            slow = _alert_delay(Path(d), [f"http://127.0.0.1:{trickle.port}/hook"] * 3,
                                fast_url, hits)
    finally:
        trickle.close()
        fast.shutdown()
        fast.server_close()
    return slow, base


# ---------------------------------------------------------------------------------------------
# bulb_ok_under_1100_idle_conns


def _bulb_share(srv: ServerProcess, bulb: BatchSender, n: int = 20) -> float:
    import httpx

    ok = 0
    recs = [bulb.new_boot()]
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        for _ in range(n):
            req = bulb.request(recs)
            try:
                ok += http.post(req.path, content=req.body, headers=req.headers
                                ).status_code == 200
            except httpx.HTTPError:
                pass
            recs = [bulb.record(record.K_OFF)]
    return ok / n


def idle_conns(n_idle: int = 1100) -> tuple[float, float, int]:
    """(share accepted with idle sockets, baseline share, server log bytes)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "m.db")
        store = Store(db)
        dev = store.register_device(0, "bulb-1", None)
        db.close()
        bulb = BatchSender(dev.id, dev.key_bytes)
        # the server starts with the usual 1,024 open files (it raises its own limit itself)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        srv = ServerProcess(Path(d) / "m.db", env={"MIMAMORI_SWEEP_S": "0"})
        try:
            srv.start(timeout=60)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
        idle: list[socket.socket] = []
        try:
            base = _bulb_share(srv, bulb)
            for _ in range(n_idle):
                try:
                    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                    s.sendall(b"POST /v1/batches HTTP/1.1\r\nHost: x\r\n")  # never ends it
                    idle.append(s)
                except OSError:
                    break
            share = _bulb_share(srv, bulb)
        finally:
            for s in idle:
                s.close()
            proc = srv.proc
            srv.stop()
            err = proc.stderr.read() if proc and proc.stderr else b""
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return share, base, len(err)


# ---------------------------------------------------------------------------------------------
# rss_growth_mb_200mb_unauth_body


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _post_body(port: int, path: str, size: int) -> None:
    """POST `size` bytes without credentials, streamed in 1 MB pieces until the server stops
    reading (it answers and closes) or all is sent."""
    piece = b"x" * min(size, 1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {size}\r\n\r\n".encode())
        sent = 0
        try:
            while sent < size:
                s.sendall(piece[:size - sent])
                sent += len(piece[:size - sent])
        except OSError:
            pass  # refused early: the server closed the connection
        try:
            s.recv(4096)
        except OSError:
            pass


def rss_growth() -> tuple[float, float, str]:
    """(worst growth MB after a 200 MB body, worst growth MB after 1 KB bodies, worst route)."""
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "m.db")
        hh.open_people(db)
        api.create_token(db, "bench", 0)
        db.close()
        with ServerProcess(Path(d) / "m.db", env={"MIMAMORI_SWEEP_S": "0"}) as srv:
            assert srv.proc is not None
            pid = srv.proc.pid
            for path in ROUTES:  # warm every route up first
                _post_body(srv.port, path, 1024)
            base = 0.0
            for path in ROUTES:
                before = _rss_kb(pid)
                _post_body(srv.port, path, 1024)
                time.sleep(0.2)
                base = max(base, (_rss_kb(pid) - before) / 1024)
            worst, where = 0.0, ""
            start = _rss_kb(pid)
            for path in ROUTES:
                _post_body(srv.port, path, 200 * 1024 * 1024)
                time.sleep(0.2)
                grown = (_rss_kb(pid) - start) / 1024
                if grown >= worst:
                    worst, where = grown, path
    return worst, base, where


def figures() -> list[dict]:
    slow, base = alert_delay()
    share, share_base, log_bytes = idle_conns()
    rss, rss_base, where = rss_growth()
    return [
        figure("alert_delay_s_slow_webhook", round(slow, 2), "s", round(base, 2),
               "another household's alert, from due to its webhook, while one "
               "household's 3 receivers trickle 1 byte/5 s (baseline: they answer at once; "
               "sweeps every 0.2 s; goal ratio <= 2)"),
        figure("bulb_ok_under_1100_idle_conns", share, "share", share_base,
               f"20 bulb batches while 1,100 sockets hold half-sent heads, server started at "
               f"1,024 open files (baseline: no idle sockets; server log {log_bytes} bytes; "
               "goal 1.0)"),
        figure("rss_growth_mb_200mb_unauth_body", round(max(rss, 0.0), 2), "MB",
               round(max(rss_base, 0.01), 2),
               f"the server's RSS growth after a 200 MB body without credentials to each of "
               f"{len(ROUTES)} routes, worst {where} (baseline: 1 KB bodies; goal < 10 MB)"),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
