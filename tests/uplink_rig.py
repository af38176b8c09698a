# SPDX-License-Identifier: MIT
"""Test rig of the uplink tests: a real server process on loopback with one registered bulb,
simulated bulbs running the firmware in MicroPython, a cutting TCP proxy, and the oracle that
compares what the server stored with what the bulb's journal holds.

It must never assert on timings; only on what the server stored and what the hardware saw.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mimamori.storage import Record, Store
from mimamori_firmware import record
from sim.bulb import Bulb, wifi_net
from sim.journal_read import of_bulb as journal_of
from sim.modem import Modem
from sim.server_process import ServerProcess

WIFI = [wifi_net("home", "pw", rssi=-61)]


@dataclass
class Rig:
    tmp: Path
    device: str = "bulb-1"
    key: str = ""
    srv: ServerProcess | None = None
    bulbs: list[Bulb] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.tmp / "server.db"

    def start(self, cert: str | None = None, key: str | None = None) -> Rig:
        """Register the bulb and start the server (HTTPS with cert/key)."""
        store = Store.open(self.db)
        self.key = store.register_device(0, self.device).key
        store.close()
        self.srv = ServerProcess(self.db, cert=cert, key=key)
        self.srv.start()
        return self

    def stop(self) -> None:
        for b in self.bulbs:
            b.power_off()
        if self.srv:
            self.srv.stop()

    @property
    def url(self) -> str:
        assert self.srv
        return self.srv.url

    def site(self, transport: str = "wifi", url: str | None = None, **kw: Any) -> dict[str, Any]:
        return {"server": url or self.url, "device_id": self.device, "device_key": self.key,
                "transport": transport, "wifi_ssid": "home", "wifi_password": "pw",
                "heartbeat_s": 600, **kw}

    def bulb(self, name: str = "bulb", wifi: list[dict[str, Any]] | None = None,
             kept_clock: bool = True, **kw: Any) -> Bulb:
        """A bulb of this rig. kept_clock: it has talked before and kept the server's time
        (fs/state/clock, firmware/clock.py), so its first TLS handshake after a power-on passes the
        certificate's dates; False: a bulb fresh from its image (its build time only)."""
        # io_wait_ms: real time a peer (server, modem) gets to answer before virtual time jumps
        # to the bulb's next timer; generous, so a loaded machine never turns into a timeout
        kw["extra"] = {"io_wait_ms": 3000, **kw.get("extra", {})}
        b = Bulb(self.tmp / name, wifi=WIFI if wifi is None else wifi, **kw)  # firmware main.py
        if kept_clock:
            (b.state_files / "clock").write_text(str(int(time.time())))
        self.bulbs.append(b)
        return b

    def stored(self) -> list[Record]:
        store = Store.open(self.db)
        try:
            return store.records_for_device(self.device)
        finally:
            store.close()

    def deliveries(self) -> list[Any]:
        store = Store.open(self.db)
        try:
            return store.deliveries(self.device)
        finally:
            store.close()


@pytest.fixture(name="rig")
def rig_fixture(tmp_path: Path) -> Iterator[Rig]:
    """The `rig` fixture: a started Rig in the test's tmp_path; its bulbs and server are stopped
    afterwards. A test module takes it with `from tests.uplink_rig import rig_fixture`."""
    r = Rig(tmp_path).start()
    yield r
    r.stop()


@pytest.fixture(name="modem")
def modem_fixture(tmp_path: Path) -> Iterator[Modem]:
    """The `modem` fixture: the modem emulator on tmp_path/uart1.sock (a bulb's uart={"1": modem.path})."""
    m = Modem(tmp_path / "uart1.sock").start()
    yield m
    m.stop()


def self_signed(dir: Path, name: str = "server") -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, self-signed: the certificate is its own CA."""
    import subprocess

    cert, key = dir / f"{name}.pem", dir / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def superseded(recs: list[tuple[int, ...]]) -> set[int]:
    """Seqs of alive marks that a later record of the same boot makes redundant (not sent)."""
    out = set()
    for a, b in itertools.pairwise(recs):
        if a[3] == record.K_ALIVE and a[1] == b[1]:
            out.add(a[0])
    return out


def assert_delivered_exactly_once(rig: Rig, b: Bulb) -> list[Record]:
    """The server holds every record the bulb has seen acknowledged, once, in journal order,
    unaltered (alive marks superseded within their boot excepted); nothing the bulb never wrote;
    and the bulb's acknowledged position is the server's. Records written after the last
    acknowledgement (pending) may be there or not."""
    recs, acked = journal_of(b)
    stored = rig.stored()
    seqs = [r.seq for r in stored]
    assert seqs == sorted(set(seqs)), "server records out of order or duplicated"
    by_seq = {r.seq: r for r in stored}
    mine = {r[0]: r for r in recs}
    extra = set(by_seq) - set(mine)
    assert not extra, f"server has records the bulb never wrote: {sorted(extra)[:5]}"
    for seq, s in by_seq.items():
        assert (s.boot, s.up_ms, s.kind, s.sub, s.aux, s.arg) == mine[seq][1:], (s, mine[seq])
    skip = superseded(recs)
    want = [r for r in recs if r[0] <= acked and r[0] not in skip]
    missing = [r for r in want if r[0] not in by_seq]
    assert not missing, f"acknowledged records the server does not have: {missing[:5]}"
    last_by_boot: dict[int, int] = {}
    for r in recs:
        if r[0] <= acked:
            last_by_boot[r[1]] = r[0]
    assert all(seq in by_seq for seq in last_by_boot.values()), "a boot's last record is missing"
    server_ack = max((d.ack for d in rig.deliveries()), default=0)
    assert acked == server_ack, (acked, server_ack)
    return stored


def acked_records(b: Bulb) -> int:
    return journal_of(b)[1]


def kinds(stored: list[Record], kind: int) -> list[Record]:
    return [r for r in stored if r.kind == kind]


class CutProxy:
    """A TCP proxy on loopback between the bulb and the server that can cut a connection.

    cut_request_after: forward this many bytes of the request, then reset both sides.
    cut_response_after: forward this many bytes of the answer, then reset both sides.
    on_answer: called (in the proxy thread) when the server's answer starts, before any of it
    is forwarded; e.g. to kill the server between its commit and the bulb's acknowledgement.
    `once`: the cut applies to the next connection only.
    """

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.cut_request_after: int | None = None
        self.cut_response_after: int | None = None
        self.on_answer: Callable[[], None] | None = None
        self.once = True
        self.cuts = 0
        self.connections = 0
        self._ls = socket.socket()
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(8)
        self.port = self._ls.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self._ls.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._pipe, args=(c,), daemon=True).start()

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                s.close()
            except OSError:
                pass

    def _pipe(self, c: socket.socket) -> None:
        try:
            s = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._reset(c)
            return
        req_cut, resp_cut, hook = self.cut_request_after, self.cut_response_after, self.on_answer
        if self.once and (req_cut is not None or resp_cut is not None or hook is not None):
            self.cut_request_after = self.cut_response_after = self.on_answer = None
        done = threading.Event()

        def up() -> None:  # bulb -> server
            sent = 0
            try:
                while True:
                    d = c.recv(4096)
                    if not d:
                        s.shutdown(socket.SHUT_WR)
                        return
                    if req_cut is not None and sent + len(d) >= req_cut:
                        s.sendall(d[: req_cut - sent])
                        self.cuts += 1
                        self._reset(s, c)
                        done.set()
                        return
                    s.sendall(d)
                    sent += len(d)
            except OSError:
                pass

        threading.Thread(target=up, daemon=True).start()
        got = 0
        try:
            while not done.is_set():
                d = s.recv(4096)
                if not d:
                    c.shutdown(socket.SHUT_WR)
                    break
                if got == 0 and hook is not None:
                    hook()
                    self.cuts += 1
                    self._reset(s, c)
                    return
                if resp_cut is not None and got + len(d) >= resp_cut:
                    c.sendall(d[: resp_cut - got])
                    self.cuts += 1
                    self._reset(s, c)
                    return
                c.sendall(d)
                got += len(d)
        except OSError:
            self._reset(s, c)
