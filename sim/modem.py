# SPDX-License-Identifier: MIT
"""LTE-M modem emulator: a SIM7080G-class modem on the bulb's UART, for tests, bench and demo.

The UART shim (sim/shims/machine.py) connects to a unix socket; this emulator listens there and
speaks the AT subset the firmware uses (docs/uplink.md has a transcript):

    AT  ATE0/ATE1  AT+CPIN?  AT+CSQ  AT+CEREG?  AT+CNCFG=0,1,"apn"  AT+CNACT=0,1 / 0,0  AT+CNACT?
    AT+CCLK?  AT+CAOPEN=0,0,"TCP","host",port  AT+CASEND=0,n (then n raw bytes after "> ")
    AT+CARECV=0,n  AT+CACLOSE=0   URCs: +APP PDP: 0,ACTIVE  +CADATAIND: 0  +CASTATE: 0,0

Every power-on of the bulb is a new UART connection and a freshly booted modem (it is powered
with the bulb): not registered, not attached, echo on. AT+CAOPEN opens a real TCP connection
(loopback server). Faults are set on `Modem.faults` (a Faults), read at each use.

Bytes "over the air" (what an LTE-M data plan bills) are counted in `Modem.air`: TCP payload both
ways plus an estimate of TCP/IP overhead per connection (model in AIR_MODEL, docs/uplink.md).
Attach and registration signalling (RRC/NAS) is not IP traffic and is not counted.

It must never leave a TCP connection open after the bulb's UART goes away (power cut).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

# The TCP/IP overhead model (IPv4, bytes). Headers with the timestamp option; one pure ACK from
# the other side per data segment (no delayed-ACK savings); FIN/ACK both ways at close.
AIR_MODEL = {
    "syn": 60,  # 20 IP + 20 TCP + 20 options (MSS, SACK-permitted, timestamps, window scale)
    "syn_ack": 60,
    "seg": 52,  # 20 IP + 20 TCP + 12 timestamps, per data segment and per pure ACK
    "mss": 1400,  # LTE MTU 1500 minus headers, rounded down (carrier tunnels eat some)
    "dns_fixed": 20 + 8 + 12 + 2 + 4,  # IP + UDP + DNS header + name framing + qtype/qclass
    "dns_answer": 16,  # one A record in the answer (name pointer, type, class, TTL, rdata)
}
MODEL_NOTE = (
    "TCP payload + IPv4/TCP headers (52 B/segment with timestamps, SYN/SYN-ACK 60 B, one ACK "
    "per segment, FIN/ACK both ways) + DNS when the host is a name; no RRC/NAS signalling"
)


@dataclass
class Faults:
    """What goes wrong; read at each use, so a test can change it while the bulb runs."""

    register: bool = True  # False: AT+CEREG? says searching (0,2) forever
    register_after_s: float = 0.0  # registration completes this long after power-on (real s)
    open_error: int | None = None  # AT+CAOPEN answers "+CME ERROR: <n>"
    open_result: int = 0  # AT+CAOPEN answers "+CAOPEN: 0,<n>" (0 ok; 23 remote refused ...)
    drop_after_tx: int | None = None  # cut TCP after forwarding this many bytes of the bulb's
    drop_after_rx: int | None = None  # cut TCP after passing this many bytes of the answer
    slow_ms: int = 0  # delay before every final result code (OK/ERROR)
    csq: int = 20  # AT+CSQ rssi index 0..31 (dBm = -113 + 2*csq), 99 = unknown
    network_time: bool = True  # False: AT+CCLK? gives the modem's default 80/01/06
    clock_offset_s: float = 0.0  # network time = host time + this (tests of the report gap)
    once: bool = False  # the TCP faults apply to the next connection only


@dataclass
class Air:
    """Bytes over the air (both directions) and on the UART."""

    payload_tx: int = 0  # TCP payload bulb -> server
    payload_rx: int = 0  # TCP payload server -> bulb
    overhead_tx: int = 0  # IP/TCP/DNS headers and control segments sent by the modem
    overhead_rx: int = 0
    connections: int = 0
    attaches: int = 0
    uart_tx: int = 0  # bytes the modem wrote to the UART (responses, URCs, data)
    uart_rx: int = 0  # bytes the bulb wrote to the UART (commands, data)

    @property
    def total(self) -> int:
        return self.payload_tx + self.payload_rx + self.overhead_tx + self.overhead_rx

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def _segments(n: int) -> int:
    return (n + AIR_MODEL["mss"] - 1) // AIR_MODEL["mss"]


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    inbox: bytearray = field(default_factory=bytearray)
    closed: bool = False
    sent: int = 0
    passed: int = 0
    task: asyncio.Task | None = None


class _Session:
    """One power-on of the modem: one UART connection."""

    def __init__(self, modem: Modem, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.m = modem
        self.r, self.w = reader, writer
        self.t0 = time.monotonic()
        self.echo = True
        self.pdp = False
        self.apn = ""
        self.conn: _Conn | None = None

    # -- UART out
    def out(self, b: bytes) -> None:
        self.m.air.uart_tx += len(b)
        self.m.log("<", b)
        self.w.write(b)

    def info(self, text: str) -> None:
        self.out(b"\r\n" + text.encode() + b"\r\n")

    async def final(self, ok: bool | str = True) -> None:
        if self.m.faults.slow_ms:
            await asyncio.sleep(self.m.faults.slow_ms / 1000)
        self.out(b"\r\nOK\r\n" if ok is True else b"\r\n" + (ok or "ERROR").encode() + b"\r\n")
        await self.w.drain()

    # -- the session loop
    async def run(self) -> None:
        buf = b""
        want: int | None = None  # bytes still expected after a "> " prompt
        try:
            while True:
                data = await self.r.read(2048)
                if not data:
                    break
                self.m.air.uart_rx += len(data)
                self.m.log(">", data)
                buf += data
                while buf:
                    if want is not None:
                        if len(buf) < want:
                            break
                        payload, buf, want = buf[:want], buf[want:], None
                        await self.casend(payload)
                        continue
                    i = buf.find(b"\r")
                    if i < 0:
                        break
                    line, buf = buf[:i].strip(b"\n "), buf[i + 1 :]
                    if not line:
                        continue
                    if self.echo:
                        self.out(line + b"\r\n")
                    want = await self.command(line.decode(errors="replace"))
        except (ConnectionError, OSError):
            pass
        finally:
            await self.drop_tcp(count_fin=False)  # power cut: the modem dies with the bulb
            self.w.close()

    async def command(self, c: str) -> int | None:
        """Handle one AT command line; the byte count when it opens a data prompt."""
        f = self.m.faults
        u = c.upper()
        if u in ("AT", "ATE0", "ATE1"):
            if u != "AT":
                self.echo = u == "ATE1"
            await self.final()
        elif u == "AT+CPIN?":
            self.info("+CPIN: READY")
            await self.final()
        elif u == "AT+CSQ":
            self.info(f"+CSQ: {f.csq},99")
            await self.final()
        elif u == "AT+CEREG?":
            self.info(f"+CEREG: 0,{1 if self.registered() else 2}")
            await self.final()
        elif u.startswith("AT+CNCFG="):
            self.apn = c.split(",", 2)[-1].strip('"')
            await self.final()
        elif u == "AT+CNACT=0,1":
            if not self.registered():
                await self.final("+CME ERROR: 3")
                return None
            await self.final()
            self.pdp = True
            self.m.air.attaches += 1
            self.info("+APP PDP: 0,ACTIVE")
            await self.w.drain()
        elif u == "AT+CNACT=0,0":
            self.pdp = False
            await self.drop_tcp()
            await self.final()
            self.info("+APP PDP: 0,DEACTIVE")
        elif u == "AT+CNACT?":
            ip = "10.64.0.2" if self.pdp else "0.0.0.0"
            self.info(f'+CNACT: 0,{int(self.pdp)},"{ip}"')
            await self.final()
        elif u == "AT+CCLK?":
            if f.network_time and self.registered():
                t = time.gmtime(time.time() + f.clock_offset_s)
                self.info(time.strftime('+CCLK: "%y/%m/%d,%H:%M:%S+00"', t))
            else:
                self.info('+CCLK: "80/01/06,00:00:00+00"')
            await self.final()
        elif u.startswith("AT+CAOPEN="):
            await self.caopen(c)
        elif u.startswith("AT+CASEND="):
            n = self.int_arg(c, 1)
            if self.conn is None or self.conn.closed or n is None or not 0 < n <= 1460:
                await self.final(False)
                return None
            self.out(b"\r\n> ")
            await self.w.drain()
            return n
        elif u.startswith("AT+CARECV="):
            await self.carecv(self.int_arg(c, 1) or 0)
        elif u.startswith("AT+CACLOSE="):
            if self.conn is None:
                await self.final(False)
            else:
                await self.drop_tcp()
                await self.final()
        else:
            await self.final(False)
        return None

    @staticmethod
    def int_arg(c: str, i: int) -> int | None:
        try:
            return int(c.split("=", 1)[1].split(",")[i])
        except (IndexError, ValueError):
            return None

    def registered(self) -> bool:
        f = self.m.faults
        return f.register and time.monotonic() - self.t0 >= f.register_after_s

    # -- TCP
    async def caopen(self, c: str) -> None:
        f = self.m.faults
        try:
            args = c.split("=", 1)[1].split(",")
            host, port = args[3].strip('"'), int(args[4])
        except (IndexError, ValueError):
            await self.final(False)
            return
        if not self.pdp:
            self.info("+CAOPEN: 0,21")  # network not active
            await self.final()
            return
        if self.conn is not None and not self.conn.closed:
            self.info("+CAOPEN: 0,1")
            await self.final()
            return
        if f.open_error is not None:
            await self.final(f"+CME ERROR: {f.open_error}")
            return
        if f.open_result:
            self.info(f"+CAOPEN: 0,{f.open_result}")
            await self.final()
            return
        air = self.m.air
        try:
            ipaddress.ip_address(host)
        except ValueError:  # a DNS lookup over the air first
            q = AIR_MODEL["dns_fixed"] + len(host)
            air.overhead_tx += q
            air.overhead_rx += q + AIR_MODEL["dns_answer"]
        try:
            addr = self.m.hosts.get(host, host)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), 10)
        except (TimeoutError, OSError):
            air.overhead_tx += AIR_MODEL["syn"] * 3  # SYN retries, no answer / refused
            self.info("+CAOPEN: 0,23")  # remote refused / unreachable
            await self.final()
            return
        air.connections += 1
        air.overhead_tx += AIR_MODEL["syn"] + AIR_MODEL["seg"]  # SYN, ACK
        air.overhead_rx += AIR_MODEL["syn_ack"]
        self.conn = _Conn(reader, writer)
        self.conn.task = asyncio.ensure_future(self.pump(self.conn))
        self.info("+CAOPEN: 0,0")
        await self.final()

    async def casend(self, payload: bytes) -> None:
        f, conn, air = self.m.faults, self.conn, self.m.air
        if conn is None or conn.closed:
            await self.final(False)
            return
        cut = None
        if f.drop_after_tx is not None and conn.sent + len(payload) > f.drop_after_tx:
            cut = max(0, f.drop_after_tx - conn.sent)
            payload = payload[:cut]
        if payload:
            conn.writer.write(payload)
            await conn.writer.drain()
            conn.sent += len(payload)
            segs = _segments(len(payload))
            air.payload_tx += len(payload)
            air.overhead_tx += segs * AIR_MODEL["seg"]
            air.overhead_rx += segs * AIR_MODEL["seg"]  # the server's ACKs
        await self.final()
        if cut is not None:
            self.fault_used()
            await self.lose(conn)

    async def pump(self, conn: _Conn) -> None:
        """Server -> modem buffer; URCs tell the bulb data came or the peer closed."""
        f, air = self.m.faults, self.m.air
        try:
            while True:
                data = await conn.reader.read(4096)
                if not data:
                    break
                if f.drop_after_rx is not None:
                    left = f.drop_after_rx - conn.passed
                    if len(data) > left:
                        data = data[: max(0, left)]
                        self.deliver(conn, data)
                        self.fault_used()
                        await self.lose(conn)
                        return
                self.deliver(conn, data)
        except (ConnectionError, OSError):
            pass
        if not conn.closed:
            conn.closed = True
            air.overhead_rx += 2 * AIR_MODEL["seg"]  # the server's FIN and ACK
            air.overhead_tx += 2 * AIR_MODEL["seg"]
            self.info("+CASTATE: 0,0")
            await self.w.drain()

    def deliver(self, conn: _Conn, data: bytes) -> None:
        if not data:
            return
        air = self.m.air
        conn.passed += len(data)
        segs = _segments(len(data))
        air.payload_rx += len(data)
        air.overhead_rx += segs * AIR_MODEL["seg"]
        air.overhead_tx += segs * AIR_MODEL["seg"]
        was_empty = not conn.inbox
        conn.inbox += data
        if was_empty:
            self.info("+CADATAIND: 0")

    async def lose(self, conn: _Conn) -> None:
        """The radio link dies under the connection: reset it, tell the bulb it closed."""
        conn.closed = True
        self.m.cuts += 1
        sock = conn.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
        conn.writer.close()
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()
        self.info("+CASTATE: 0,0")
        await self.w.drain()

    def fault_used(self) -> None:
        f = self.m.faults
        if f.once:
            f.drop_after_tx = f.drop_after_rx = None

    async def carecv(self, n: int) -> None:
        conn = self.conn
        if conn is None:
            await self.final(False)
            return
        n = max(0, min(n, 1460, len(conn.inbox)))
        data = bytes(conn.inbox[:n])
        del conn.inbox[:n]
        if n:
            self.out(b"\r\n+CARECV: " + str(n).encode() + b"," + data + b"\r\n")
        else:
            self.info("+CARECV: 0")
        await self.final()

    async def drop_tcp(self, count_fin: bool = True) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if not conn.closed and count_fin:
            self.m.air.overhead_tx += 2 * AIR_MODEL["seg"]
            self.m.air.overhead_rx += 2 * AIR_MODEL["seg"]
        conn.closed = True
        if conn.task is not None:
            conn.task.cancel()
        try:
            conn.writer.close()
        except (ConnectionError, OSError):
            pass


class Modem:
    """The emulator, listening on a unix socket in a background thread.

        with Modem(state / "uart1.sock") as modem:
            modem.faults.register = False
            ...  boot a bulb whose sim.json has "uart": {"1": str(modem.path)}
            modem.air.total
    """

    def __init__(self, path: str | Path, faults: Faults | None = None, keep_log: int = 400,
                 hosts: dict[str, str] | None = None):
        self.path = str(path)
        self.hosts = hosts or {}  # name -> address the "network" resolves it to (loopback)
        self.faults = faults or Faults()
        self.air = Air()
        self.cuts = 0  # connections cut by drop_after_tx / drop_after_rx
        self.transcript: list[tuple[str, bytes]] = []
        self._keep = keep_log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None

    def log(self, way: str, b: bytes) -> None:
        if len(self.transcript) < self._keep:
            self.transcript.append((way, b))

    async def _main(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        self._ready.set()
        async with self._server:
            await self._server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Session(self, reader, writer).run()

    def start(self) -> Self:
        def go() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._main())
            except asyncio.CancelledError:
                pass
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=go, name="modem", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the modem emulator did not listen on {self.path}")
        return self

    def stop(self) -> None:
        if self._loop and self._server:
            self._loop.call_soon_threadsafe(self._server.close)
            for task in asyncio.all_tasks(self._loop):
                self._loop.call_soon_threadsafe(task.cancel)
        if self._thread:
            self._thread.join(5)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def transcript_text(self) -> str:
        """The AT dialogue as lines: '> ' what the bulb wrote, '< ' what the modem answered."""
        out = []
        for way, b in self.transcript:
            for part in b.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
                if part:
                    out.append(f"{way} {part.decode(errors='replace')}")
        return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sim.modem",
                                description="LTE-M modem emulator on a unix socket")
    p.add_argument("path", help="unix socket the bulb's UART shim connects to")
    p.add_argument("--faults", default="{}", help='JSON, e.g. {"register": false}')
    args = p.parse_args(argv)
    m = Modem(args.path, Faults(**json.loads(args.faults))).start()
    print(f"modem listening on {args.path}; Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(5)
            print(json.dumps(m.air.as_dict()), flush=True)
    except KeyboardInterrupt:
        m.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
