# SPDX-License-Identifier: MIT
"""HTTPS from the bulb: the firmware in MicroPython with the ssl shim (sim/shims/ssl.py: the
built-in mbedTLS engine, its records carried and counted by the socket shim) against the
reference server serving TLS, with a CA and a server certificate made at test time."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mimamori_firmware import record
from sim.bulb import run_snippet, wifi_net
from tests.uplink_rig import Rig, assert_delivered_exactly_once, journal_of, kinds

BAD_CERT = 526  # F_UPLINK aux: TLS refused the server's certificate, or there was no CA


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(
    dir: Path, name: str = "ca"
) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA (P-256, valid 2 days): (its PEM file, its key, its certificate)."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Mimamori test {name}"))
        .issuer_name(_name(f"Mimamori test {name}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = dir / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(
    dir: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[Path, Path, bytes]:
    """A certificate for 127.0.0.1 signed by the CA: (cert PEM, key PEM, cert DER)."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cpath, kpath = dir / "server.pem", dir / "server.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cpath, kpath, cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def tls_rig(tmp_path: Path):
    ca_pem, ca_key, ca = make_ca(tmp_path)
    cert, key, der = make_server_cert(tmp_path, ca_key, ca)
    rig = Rig(tmp_path / "rig").start(cert=str(cert), key=str(key))
    rig.ca_pem = ca_pem  # type: ignore[attr-defined]
    rig.cert_der = der  # type: ignore[attr-defined]
    yield rig
    rig.stop()


def _faults(b) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    recs, _ = journal_of(b)
    return [r for r in recs if r[3] == record.K_FAULT and r[4] == record.F_UPLINK]


def _links(b) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    recs, _ = journal_of(b)
    return [r for r in recs if r[3] == record.K_LINK]


def test_bulb_with_the_servers_ca_delivers_over_https(tls_rig: Rig) -> None:
    rig = tls_rig
    assert rig.url.startswith("https://")
    b = rig.bulb(site=rig.site(ca_cert="ca.pem"))
    (b.fs / "ca.pem").write_bytes(rig.ca_pem.read_bytes())  # type: ignore[attr-defined]
    b.power_on(stop_at_s=10)
    stored = assert_delivered_exactly_once(rig, b)
    assert len(kinds(stored, record.K_POWER_ON)) == 1
    links = _links(b)
    assert len(links) == 1 and links[0][6] > 0, "the server answered over TLS"
    assert _faults(b) == []
    # what went over the air is TLS: the handshake brought the server's certificate, so the
    # bytes received are more than that certificate; the request went out encrypted
    net = b.events("net")
    assert sum(e["bytes"] for e in net if e["op"] == "recv") > len(rig.cert_der)  # type: ignore[attr-defined]
    assert any(e["op"] == "close" for e in net)


def test_bulb_with_another_ca_refuses_the_server_and_records_why(
    tls_rig: Rig, tmp_path: Path
) -> None:
    rig = tls_rig
    other, _, _ = make_ca(tmp_path, "other")
    b = rig.bulb(site=rig.site(ca_cert="ca.pem"))
    (b.fs / "ca.pem").write_bytes(other.read_bytes())
    b.power_on(stop_at_s=60)  # the first attempt and a few retries
    assert rig.stored() == [], "a server whose certificate the CA does not sign gets nothing"
    faults = _faults(b)
    assert [f[5] for f in faults] == [BAD_CERT], "one fault per boot says why"
    links = _links(b)
    assert links and all(r[6] == 0 for r in links), "every attempt: server not reached"
    assert b.events("exit") == [], "the bulb keeps running"


def test_https_url_without_a_ca_certificate_is_refused(tls_rig: Rig) -> None:
    rig = tls_rig
    b = rig.bulb(site=rig.site())  # ca_cert: null
    b.power_on(stop_at_s=10)
    assert rig.stored() == []
    assert [f[5] for f in _faults(b)] == [BAD_CERT]
    sent = [e for e in b.events("net") if e["op"] == "send"]
    assert sent == [], "no CA: nothing is sent at all"


def test_plain_http_url_to_an_https_server_fails_cleanly(tls_rig: Rig) -> None:
    rig = tls_rig
    b = rig.bulb(site=rig.site(url=rig.url.replace("https://", "http://")))
    b.power_on(stop_at_s=30)
    assert rig.stored() == []
    links = _links(b)
    assert links and all(r[6] == 0 for r in links)
    assert _faults(b) == [], "not a certificate problem"
    assert b.events("exit") == []


class _Dribble:
    """A TCP proxy that forwards the server's bytes a few at a time, with pauses: TLS records
    arrive in pieces, so the bulb's TLS stream wakes up with nothing whole to give."""

    def __init__(self, target_port: int, chunk: int = 7) -> None:
        self.target = ("127.0.0.1", target_port)
        self.chunk = chunk
        self._ls = socket.socket()
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(4)
        self.port = self._ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            s = socket.create_connection(self.target, timeout=10)
            threading.Thread(target=self._pipe, args=(c, s, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, self.chunk), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket, chunk: int) -> None:
        try:
            while d := a.recv(4096):
                if not chunk:
                    b.sendall(d)
                    continue
                for i in range(0, len(d), chunk):
                    b.sendall(d[i : i + chunk])
                    time.sleep(0.002)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._ls.close()


def test_https_answer_arriving_in_pieces_is_read_whole(tls_rig: Rig) -> None:
    rig = tls_rig
    assert rig.srv
    proxy = _Dribble(rig.srv.port)
    try:
        b = rig.bulb(site=rig.site(url=f"https://127.0.0.1:{proxy.port}", ca_cert="ca.pem"))
        (b.fs / "ca.pem").write_bytes(rig.ca_pem.read_bytes())  # type: ignore[attr-defined]
        b.power_on(stop_at_s=10)
        stored = assert_delivered_exactly_once(rig, b)
        assert len(kinds(stored, record.K_POWER_ON)) == 1
        assert all(r[6] > 0 for r in _links(b))
    finally:
        proxy.close()


_BLOCKING = """
import clock, network, socket, ssl, time
clock.floor(NOW)  # the certificate's dates are checked against the bulb's clock
w = network.WLAN(network.STA_IF); w.active(True); w.connect("home", "pw")
while not w.isconnected():
    time.sleep_ms(100)
s = socket.socket()
s.settimeout(5)
s.connect(socket.getaddrinfo("127.0.0.1", PORT)[0][-1])
t = ssl.wrap_socket(s, cadata=open("ca.der", "rb").read(), cert_reqs=ssl.CERT_REQUIRED,
                    server_hostname="127.0.0.1")
t.write(b"ping")
print("got", t.read(4))
w.disconnect()
try:
    t.write(b"ping")
    print("written without a link")
except OSError as e:
    print("refused", e.errno)
t.close()
"""


def test_tls_socket_carries_bytes_only_while_the_link_is_up(tmp_path: Path) -> None:
    _, ca_key, ca = make_ca(tmp_path)
    cert, key, _ = make_server_cert(tmp_path, ca_key, ca)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    seen: list[bytes] = []

    def serve() -> None:
        c, _ = ls.accept()
        try:
            with ctx.wrap_socket(c, server_side=True) as s:
                seen.append(s.recv(100))
                s.sendall(b"pong")
                seen.append(s.recv(100))
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    state = tmp_path / "bulb"
    (state / "fs").mkdir(parents=True)
    (state / "fs" / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    code = _BLOCKING.replace("PORT", str(ls.getsockname()[1])).replace("NOW", str(int(time.time())))
    out = run_snippet(code, state, wifi=[wifi_net("home", "pw")])
    ls.close()
    assert "got b'pong'" in out
    assert "refused 103" in out, out  # ECONNABORTED: the radio cannot carry it
    assert seen[0] == b"ping"


def test_https_server_that_never_answers_the_handshake_times_out_on_the_bulb_clock(
    tmp_path: Path,
) -> None:
    """A TCP peer that accepts and stays silent: the handshake waits for the server's hello
    (not for a writable socket), so the bulb's deadlines run and it backs off; it never hangs."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(ls.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    rig = Rig(tmp_path / "rig").start()
    try:
        url = f"https://127.0.0.1:{ls.getsockname()[1]}"
        b = rig.bulb(site=rig.site(url=url, ca_cert="ca.pem"), extra={"io_wait_ms": 200})
        (b.fs / "ca.pem").write_bytes(make_ca(tmp_path)[0].read_bytes())
        b.power_on(stop_at_s=60)
        assert [e for e in b.events("reset")] == [], "no hang, no watchdog"
        assert b.boots[-1].ended_by == "power_cut", "ran until the power went"
        links = _links(b)
        assert links and all(r[6] == 0 for r in links)
        assert _faults(b) == [], "a silent server is not a certificate problem"
    finally:
        ls.close()
        for c in held:
            c.close()
        rig.stop()


def test_https_from_a_power_on_with_the_clock_at_2000_sets_the_clock_and_delivers(
    tls_rig: Rig,
) -> None:
    # the ESP32's RTC reads 2000-01-01 after a power-on and mbedTLS checks the certificate's
    # dates against it: the firmware sets its clock first (kept time, build time, then the
    # server's Date when the certificate is newer than both)
    rig = tls_rig
    b = rig.bulb(site=rig.site(ca_cert="ca.pem"), kept_clock=False)
    (b.fs / "ca.pem").write_bytes(rig.ca_pem.read_bytes())  # type: ignore[attr-defined]
    b.power_on(stop_at_s=30)
    stored = assert_delivered_exactly_once(rig, b)
    assert len(kinds(stored, record.K_POWER_ON)) == 1
    assert "clock behind the certificate" in b.stdout
    # the refused attempt, the Date's HEAD, the verified one: each closed before the next
    # (MicroPython's Stream.close() alone closes nothing; a TLS session left to the GC holds
    # its socket, and on the ESP32 its mbedTLS buffers in the IDF heap, until a collection)
    opened = 0
    for e in b.events("net", 1):
        if e["op"] in ("connect", "close"):
            opened += 1 if e["op"] == "connect" else -1
            assert opened <= 1, "a connection opened while another was still open"
    assert "MemoryError" not in b.stdout  # a finaliser closing it during a collection
    links = _links(b)  # the refused attempt, then (in the same flush) the verified one
    assert [r[6] > 0 for r in links[:2]] == [False, True]
    secs = [e["secs"] for e in b.events("rtc")]
    assert secs and max(secs) + 946684800 >= time.time() - 3600  # at the certificate, or later
    assert int((b.state_files / "clock").read_text()) >= time.time() - 60  # the server's time, kept
    b.power_on(stop_at_s=10)  # the next power-on starts from the kept time: no failed attempt
    links = [r for r in _links(b) if r[1] == 2]
    assert len(links) == 1 and links[0][6] > 0


def test_shim_refuses_a_certificate_outside_the_bulbs_clock(tmp_path: Path) -> None:
    _, key, ca = make_ca(tmp_path)
    _, _, der = make_server_cert(tmp_path, key, ca)
    code = (
        "import ssl, binascii\n"
        f"der = binascii.unhexlify({der.hex()!r})\n"
        "nb, na = ssl.validity(der)\nprint(nb, na)\n"
        "import time\n"
        "try:\n    ssl._check_dates([(nb, na)])\nexcept ValueError as e:\n    print(repr(str(e)))\n"
    )
    out = run_snippet(code, tmp_path / "dates").splitlines()
    cert = x509.load_der_x509_certificate(der)
    assert out[0] == f"{int(cert.not_valid_before_utc.timestamp())} "\
        f"{int(cert.not_valid_after_utc.timestamp())}"
    assert out[1] == repr("\nThe certificate validity starts in the future\n")  # at 2000-01-01
