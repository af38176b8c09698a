# SPDX-License-Identifier: MIT
"""The LTE-M modem emulator on its own (CPython): the AT dialogue a SIM7080G-class modem has,
binary data through AT+CASEND/AT+CARECV, each injectable failure, and the byte accounting."""

from __future__ import annotations

import socket
import socketserver
import threading
from pathlib import Path

import pytest

from sim.modem import AIR_MODEL, Modem
from tests.waiting import wait_for


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            d = self.request.recv(4096)
            if not d:
                return
            self.request.sendall(d)


@pytest.fixture
def echo():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def modem(tmp_path: Path):
    m = Modem(tmp_path / "uart.sock").start()
    yield m
    m.stop()


class Uart:
    """The bulb's end of the UART, blocking, for tests."""

    def __init__(self, path: str):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.s.settimeout(5)
        self.buf = b""

    def until(self, token: bytes) -> bytes:
        while token not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        i = self.buf.index(token) + len(token)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def at(self, cmd: str, end: bytes = b"OK\r\n") -> bytes:
        self.s.sendall(cmd.encode() + b"\r")
        return self.until(end)

    def attach(self) -> None:
        self.at("ATE0")
        assert b"+CEREG: 0,1" in self.at("AT+CEREG?")
        self.at("AT+CNACT=0,1")
        self.until(b"+APP PDP: 0,ACTIVE\r\n")


def test_at_dialogue_carries_binary_data_both_ways(modem: Modem, echo: int) -> None:
    u = Uart(modem.path)
    assert u.at("AT").endswith(b"OK\r\n")
    u.attach()
    assert b"+CSQ: 20,99" in u.at("AT+CSQ")
    assert b'+CCLK: "' in u.at("AT+CCLK?")
    assert b"+CAOPEN: 0,0" in u.at(f'AT+CAOPEN=0,0,"TCP","127.0.0.1",{echo}')
    data = bytes(range(256)) + b"\r\nOK\r\n"  # CR LF and OK inside the payload
    u.s.sendall(f"AT+CASEND=0,{len(data)}\r".encode())
    u.until(b"> ")
    u.s.sendall(data)
    u.until(b"OK\r\n")
    u.until(b"+CADATAIND: 0\r\n")  # the first bytes are in; the echo may come in parts
    wait_for(lambda: modem.air.payload_rx >= len(data), "the whole echo in the modem")
    u.s.sendall(f"AT+CARECV=0,{len(data)}\r".encode())
    head = u.until(b",")
    assert head.endswith(f"+CARECV: {len(data)},".encode())
    while len(u.buf) < len(data):
        u.buf += u.s.recv(4096)
    assert u.buf[: len(data)] == data
    u.buf = u.buf[len(data) :]
    u.until(b"OK\r\n")
    assert u.at("AT+CACLOSE=0").endswith(b"OK\r\n")
    air = modem.air
    assert air.payload_tx == air.payload_rx == len(data)
    assert air.connections == 1 and air.attaches == 1
    # SYN, SYN-ACK, ACK; one segment and its ACK each way; FIN/ACK both ways
    seg = AIR_MODEL["seg"]
    assert air.overhead_tx + air.overhead_rx == (
        AIR_MODEL["syn"] + AIR_MODEL["syn_ack"] + seg + 4 * seg + 4 * seg)


def test_without_registration_attach_fails_with_cme_error(modem: Modem) -> None:
    modem.faults.register = False
    u = Uart(modem.path)
    u.at("ATE0")
    assert b"+CEREG: 0,2" in u.at("AT+CEREG?")
    assert b"+CME ERROR: 3" in u.at("AT+CNACT=0,1", b"\r\n+CME ERROR: 3\r\n")
    assert b'"80/01/06' in u.at("AT+CCLK?")  # no network time either


def test_open_can_fail_with_cme_error_or_a_result_code(modem: Modem, echo: int) -> None:
    u = Uart(modem.path)
    u.attach()
    modem.faults.open_error = 559
    got = u.at(f'AT+CAOPEN=0,0,"TCP","127.0.0.1",{echo}', b"ERROR: 559\r\n")
    assert b"+CME ERROR: 559" in got
    modem.faults.open_error = None
    modem.faults.open_result = 23
    assert b"+CAOPEN: 0,23" in u.at(f'AT+CAOPEN=0,0,"TCP","127.0.0.1",{echo}')
    assert modem.air.connections == 0


def test_drop_mid_send_closes_the_connection_and_says_so(modem: Modem, echo: int) -> None:
    modem.faults.drop_after_tx = 5
    u = Uart(modem.path)
    u.attach()
    u.at(f'AT+CAOPEN=0,0,"TCP","127.0.0.1",{echo}')
    u.s.sendall(b"AT+CASEND=0,10\r")
    u.until(b"> ")
    u.s.sendall(b"0123456789")
    u.until(b"+CASTATE: 0,0\r\n")
    assert modem.cuts == 1 and modem.air.payload_tx == 5
    assert b"ERROR" in u.at("AT+CASEND=0,3", b"ERROR\r\n")


def test_power_cut_closes_the_tcp_connection(modem: Modem) -> None:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    u = Uart(modem.path)
    u.attach()
    u.at(f'AT+CAOPEN=0,0,"TCP","127.0.0.1",{ls.getsockname()[1]}')
    c, _ = ls.accept()
    c.settimeout(5)
    u.s.close()  # the bulb (and the modem with it) lose power
    assert c.recv(10) == b""
    ls.close()


def test_slow_modem_answers_completely_and_weak_signal_shows(modem: Modem) -> None:
    modem.faults.slow_ms = 200
    modem.faults.csq = 3
    u = Uart(modem.path)
    got = u.at("AT+CSQ")
    assert got.endswith(b"\r\n+CSQ: 3,99\r\n\r\nOK\r\n")
