# SPDX-License-Identifier: MIT
"""The uplink over Wi-Fi, end to end: the firmware in MicroPython (virtual time), the reference
server as a real process on loopback, real sockets. Every test checks the server's store against
the bulb's own journal: every record exactly once, in order, unaltered (tests/uplink_rig.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

from mimamori_firmware import record
from tests.uplink_rig import (
    Rig,
    assert_delivered_exactly_once,
    journal_of,
    kinds,
    rig_fixture,  # noqa: F401  (the rig fixture)
)


def test_switch_on_reaches_the_server_and_is_acknowledged(rig: Rig) -> None:
    b = rig.bulb(site=rig.site())
    b.power_on(stop_at_s=45)
    stored = assert_delivered_exactly_once(rig, b)
    assert len(kinds(stored, record.K_POWER_ON)) == 1
    recs, _ = journal_of(b)  # link and anchor records go with the next batch
    links = [r for r in recs if r[3] == record.K_LINK]
    assert len(links) == 1 and links[0][4:6] == (record.T_WIFI, -61) and links[0][6] > 0
    anchors = [r for r in recs if r[3] == record.K_ANCHOR]
    assert len(anchors) == 1 and anchors[0][4] == record.A_SERVER and anchors[0][6] > 1.7e9
    sent = [e for e in b.events("net") if e["op"] == "send"]
    assert sent, "nothing went over the radio"
    # the power-on went out in the first request, right after the link came up
    first = rig.deliveries()[0]
    assert first.boot == 1 and first.from_seq == 1


def test_refused_request_is_recorded_as_a_fault_without_a_retry_storm(rig: Rig) -> None:
    site = rig.site()
    site["device_key"] = "00" * 32  # wrong key: 401 every time
    b = rig.bulb(site=site)
    b.power_on(stop_at_s=1800)  # half an hour lit
    connects = [e for e in b.events("net") if e["op"] == "connect"]
    assert 1 <= len(connects) <= 2, "a refused bulb retries at most hourly"
    assert rig.stored() == []
    recs, _ = journal_of(b)
    faults = [r for r in recs if r[3] == record.K_FAULT and r[4] == record.F_UPLINK]
    assert len(faults) == 1 and faults[0][5] == 401


def test_settings_from_the_server_are_checked_and_kept(rig: Rig) -> None:
    from mimamori.storage import Store

    store = Store.open(rig.db)
    store.set_settings(rig.device, {"heartbeat_s": 120, "brightness": 0.6})
    store.close()
    b = rig.bulb(site=rig.site())
    b.power_on(stop_at_s=10)
    import json

    kept = json.loads((b.fs / "server.json").read_text())
    assert kept == {"heartbeat_s": 120, "brightness": 0.6}
    b.power_on(stop_at_s=10)
    assert rig.deliveries()[-1].boot == 2
    assert_delivered_exactly_once(rig, b)


class _Canned:
    """An HTTP listener that keeps the raw requests and answers each with a canned JSON."""

    def __init__(self, answer: dict, status: str = "200 OK") -> None:
        import json
        import socket
        import threading

        self.raw = b""  # the first request
        self.requests = 0
        self._ls = socket.socket()
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(4)
        self.port = self._ls.getsockname()[1]
        body = json.dumps(answer).encode()
        self._answer = (f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode()
                        + b"content-type: application/json\r\nconnection: close\r\n\r\n" + body)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            c.settimeout(5)
            raw = b""
            while b"\r\n\r\n" not in raw:
                raw += c.recv(4096)
            head, _, body = raw.partition(b"\r\n\r\n")
            n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < n:
                body += c.recv(4096)
            if not self.requests:
                self.raw = head + b"\r\n\r\n" + body
            self.requests += 1
            c.sendall(self._answer)
            c.close()

    def close(self) -> None:
        self._ls.close()


def test_request_is_one_signed_http_post_of_raw_journal_records(rig: Rig) -> None:
    from mimamori_firmware import protocol

    canned = _Canned({"ack": 0, "time_ms": 1_767_571_200_000})
    b = rig.bulb(site=rig.site(url=f"http://127.0.0.1:{canned.port}"))
    b.power_on(stop_at_s=10)
    canned.close()
    head, _, body = canned.raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/batches?sv=0&fw=0 HTTP/1.1"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert fields["Host"] == f"127.0.0.1:{canned.port}"
    assert fields["Content-Type"] == "application/octet-stream"
    assert int(fields["Content-Length"]) == len(body)
    assert fields["Connection"] == "close"
    device, sig = fields["Authorization"].removeprefix("Mimamori ").split(":")
    assert device == rig.device
    assert sig == protocol.sign(bytes.fromhex(rig.key), "POST", "/v1/batches?sv=0&fw=0", device,
                                body)
    version, flags, count, _epoch, from_seq, boot, req, up_ms = protocol.unpack_header(body)
    assert (version, flags, from_seq, boot, req) == (1, 0, 1, 1, 1)
    assert len(body) == protocol.HEADER_SIZE + count * record.SIZE
    recs, acked = journal_of(b)
    assert body[protocol.HEADER_SIZE :] == b"".join(
        record.pack(*r) for r in recs[:count]), "records go exactly as they are in flash"
    # the uptime when sent, on the records' clock: after every record it carries (the server
    # anchors the boot with it: docs/protocol.md "Receipt anchor")
    assert up_ms > 0 and up_ms >= max(r[2] for r in recs[:count])
    assert acked == 0, "an answer acknowledging nothing acknowledges nothing"


def test_server_down_while_lit_backs_off_instead_of_hammering(rig: Rig) -> None:
    assert rig.srv
    rig.srv.stop()
    b = rig.bulb(site=rig.site())
    b.power_on(stop_at_s=2 * 3600)  # two hours lit, the server unreachable all along
    connects = [e["t"] for e in b.events("net") if e["op"] == "connect"]
    assert 5 <= len(connects) <= 20, "keeps trying, exponentially less often, capped"
    gaps = [b - a for a, b in itertools.pairwise(connects)]
    assert max(gaps) > 8 * min(gaps)
    assert max(gaps) <= 31 * 60 * 1000, "never waits more than the cap (30 min)"


def test_https_server_is_reached_only_with_its_ca_certificate(tmp_path: Path) -> None:
    from tests.uplink_rig import self_signed

    cert, key = self_signed(tmp_path)
    other, _ = self_signed(tmp_path, "other")
    rig = Rig(tmp_path / "tls").start(cert=str(cert), key=str(key))
    try:
        assert rig.url.startswith("https://")
        wrong = rig.bulb("wrong", site=rig.site(ca_cert="ca.pem"))
        (wrong.fs / "ca.pem").write_bytes(other.read_bytes())
        wrong.power_on(stop_at_s=5)
        assert rig.stored() == [], "a server whose certificate the CA does not sign is refused"
        b = rig.bulb(site=rig.site(ca_cert="ca.pem"))
        (b.fs / "ca.pem").write_bytes(cert.read_bytes())
        b.power_on(stop_at_s=10)
        stored = assert_delivered_exactly_once(rig, b)
        assert len(kinds(stored, record.K_POWER_ON)) == 1
    finally:
        rig.stop()


def test_server_shedding_load_is_obeyed_for_as_long_as_it_asks(rig: Rig) -> None:
    busy = _Canned({"error": "busy", "detail": "try later", "retry_s": 600},
                   "503 Service Unavailable")
    try:
        b = rig.bulb(site=rig.site(url=f"http://127.0.0.1:{busy.port}"))
        b.power_on(stop_at_s=3600)  # an hour lit while the server sheds load
        # 600 s asked: each wait is 600..1200 s, so at most 6 requests in the hour, not a storm
        assert 3 <= busy.requests <= 6
        recs, acked = journal_of(b)
        assert acked == 0
        assert not [r for r in recs if r[3] == record.K_FAULT], "busy is not a fault"
    finally:
        busy.close()


def test_dead_dns_resolver_blocks_but_never_starves_the_watchdog(rig: Rig) -> None:
    # getaddrinfo blocks like lwIP's (about 14 s with a dead resolver, longer than the default
    # 10 s watchdog): the bulb resolves once, with the watchdog stretched over the call, and
    # then delivers to the address it kept from an earlier answer
    url = rig.url.replace("127.0.0.1", "mimamori.example")
    b = rig.bulb(site=rig.site(url=url), extra={"hosts": {"mimamori.example": "127.0.0.1"}})
    b.power_on(stop_at_s=10)
    assert (b.state_files / "dns").read_text() == "mimamori.example 127.0.0.1"
    b.extra = {"hosts": {}, "dns": "dead"}
    b.power_on(stop_at_s=60)
    assert [x.ended_by for x in b.boots] == ["power_cut", "power_cut"]  # no watchdog reset
    dns = [e for e in b.trace(-1) if e["ev"] == "net" and e.get("op") == "dns"]
    assert len(dns) == 1 and dns[0]["ok"] is False  # resolved once per boot, not every attempt
    assert "the address kept from before" in b.boots[-1].stdout
    stored = assert_delivered_exactly_once(rig, b)
    assert len(kinds(stored, record.K_POWER_ON)) == 2


def test_dead_dns_resolver_without_a_kept_address_fails_without_a_watchdog_reset(
    rig: Rig,
) -> None:
    url = rig.url.replace("127.0.0.1", "mimamori.example")
    b = rig.bulb(site=rig.site(url=url), extra={"dns": "dead"})
    b.power_on(stop_at_s=90)
    assert [x.ended_by for x in b.boots] == ["power_cut"]
    assert [x.cause for x in b.boots] == [1]
    assert "cannot resolve mimamori.example" in b.stdout
    assert not rig.stored()
