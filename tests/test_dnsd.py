# SPDX-License-Identifier: MIT
"""Setup mode's DNS responder (firmware/dnsd.py), run in the real MicroPython interpreter.

A real DNS client (dnspython) builds the queries and parses the answers: over a real UDP
socket on loopback for the served path, and packet by packet for the malformed cases.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from sim.bulb import micropython_bin

REPO = Path(__file__).resolve().parent.parent
MICROPYTHON = micropython_bin()
AP_IP = "192.168.4.1"

HANDLE = f"""
import sys, json, binascii
sys.path.insert(0, {str(REPO / "firmware")!r})
import dnsd
srv = dnsd.DnsServer({AP_IP!r})
out = []
for h in json.loads(sys.stdin.read()):
    n = srv.handle(binascii.unhexlify(h))
    out.append(binascii.hexlify(srv._out[:n]).decode())
print(json.dumps({{"replies": out, "answered": srv.answered, "dropped": srv.dropped}}))
"""

SERVE = f"""
import sys, asyncio
sys.path.insert(0, {str(REPO / "firmware")!r})
import dnsd
srv = dnsd.DnsServer({AP_IP!r}, port=int(sys.argv[1]), bind="127.0.0.1")
srv.open()

async def main():
    task = asyncio.create_task(srv.run())
    print("READY")
    while srv.answered < int(sys.argv[2]):
        await asyncio.sleep_ms(10)
    task.cancel()
    await asyncio.sleep_ms(0)
    print("DONE", srv.answered, srv.dropped, srv.sock is None)

asyncio.run(main())
"""


def handle(packets: list[bytes]) -> dict:
    r = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=96wK", "-c", HANDLE],
        input=json.dumps([p.hex() for p in packets]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def query(name: str, rdtype: str = "A") -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype)


def test_every_name_resolves_to_the_bulbs_address():
    names = ["connectivitycheck.gstatic.com", "captive.apple.com", "www.msftconnecttest.com",
             "mimamori.setup", "xn--eckwd4c7c.xn--zckzah"]  # fmt: skip
    qs = [query(n) for n in names]
    out = handle([q.to_wire() for q in qs])
    for q, h in zip(qs, out["replies"], strict=True):
        r = dns.message.from_wire(bytes.fromhex(h))
        assert r.id == q.id
        assert r.flags & dns.flags.QR and r.flags & dns.flags.AA
        assert r.rcode() == dns.rcode.NOERROR
        assert r.question == q.question
        (rrset,) = r.answer
        assert rrset.name == q.question[0].name
        assert [rd.address for rd in rrset] == [AP_IP]
        assert rrset.ttl == 30
    assert out["answered"] == len(names)


def test_ipv6_and_other_types_get_no_data_so_phones_use_ipv4():
    for rdtype in ("AAAA", "MX", "TXT", "HTTPS"):
        q = query("captive.apple.com", rdtype)
        (h,) = handle([q.to_wire()])["replies"]
        r = dns.message.from_wire(bytes.fromhex(h))
        assert r.rcode() == dns.rcode.NOERROR and r.answer == [], rdtype
        assert r.question == q.question


def test_an_any_query_gets_the_address_too():
    q = query("example.org", "ANY")
    (h,) = handle([q.to_wire()])["replies"]
    (rrset,) = dns.message.from_wire(bytes.fromhex(h)).answer
    assert [rd.address for rd in rrset] == [AP_IP]


def _formerr_or_silent(h: str) -> str:
    if not h:
        return "silent"
    r = dns.message.from_wire(bytes.fromhex(h), question_only=True)
    return dns.rcode.to_text(r.rcode())


def test_garbage_responses_and_oversized_packets_are_never_answered_with_data():
    good = query("a.example").to_wire()
    response = bytearray(good)
    response[2] |= 0x80  # QR: somebody's answer, reflected at us
    cut_label = good[:12] + b"\x32" + b"a" * 10  # a 50-byte label in a 23-byte packet
    pointer = good[:12] + b"\xc0\x0c\x00\x01\x00\x01"
    two_questions = good[:5] + b"\x02" + good[6:] + good[12:]
    status = bytearray(good)
    status[2] = (status[2] & 0x87) | (2 << 3)  # opcode STATUS
    big = good[:12] + b"\x3f" + b"a" * 63 + b"\x00" * 600
    cases = {
        "empty": b"",
        "short header": good[:7],
        "response": bytes(response),
        "label past end": cut_label,
        "pointer in question": pointer,
        "two questions": two_questions,
        "status opcode": bytes(status),
        "oversized": big,
    }
    out = handle(list(cases.values()))
    got = dict(zip(cases, map(_formerr_or_silent, out["replies"]), strict=True))
    assert got == {
        "empty": "silent",
        "short header": "silent",
        "response": "silent",
        "label past end": "FORMERR",
        "pointer in question": "FORMERR",
        "two questions": "FORMERR",
        "status opcode": "NOTIMP",
        "oversized": "silent",
    }
    assert out["answered"] == 0


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_real_dns_client_gets_the_bulbs_address_over_udp():
    port = free_udp_port()
    proc = subprocess.Popen(
        [MICROPYTHON, "-X", "heapsize=96wK", "-c", SERVE, str(port), "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        garbage = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        garbage.sendto(b"\x00\x01garbage", ("127.0.0.1", port))  # must not stop the server
        garbage.close()
        answers = []
        for name, rdtype in (("connectivitycheck.gstatic.com", "A"), ("captive.apple.com", "A"),
                             ("captive.apple.com", "AAAA")):  # fmt: skip
            r = dns.query.udp(query(name, rdtype), "127.0.0.1", port=port, timeout=5)
            answers.append([rd.address for rrset in r.answer for rd in rrset])
        assert answers == [[AP_IP], [AP_IP], []]
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, out + err
        done = out.split()
        assert done[0] == "DONE" and done[1] == "3"
        assert int(done[2]) >= 1  # the garbage datagram was dropped, not fatal
        assert done[3] == "True"  # cancelling the task closed the socket
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("bad", ["192.168.4", "not.an.ip.addr"])
def test_a_bad_access_point_address_is_refused_at_start(bad):
    code = (
        f"import sys\nsys.path.insert(0, {str(REPO / 'firmware')!r})\nimport dnsd\n"
        f"try:\n    dnsd.DnsServer({bad!r})\nexcept ValueError as e:\n    print('refused', e)"
    )
    r = subprocess.run(
        [MICROPYTHON, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert r.stdout.startswith("refused"), r.stdout + r.stderr


IDLE = f"""
import sys, asyncio
sys.path.insert(0, {str(REPO / "firmware")!r})
import dnsd

class Counting(dnsd.DnsServer):
    reads = 0
    def serve_one(self):
        self.reads += 1
        return super().serve_one()

srv = Counting({AP_IP!r}, port=int(sys.argv[1]), bind="127.0.0.1")

async def main():
    task = asyncio.create_task(srv.run())
    await asyncio.sleep_ms(500)  # idle: nobody asks
    idle = srv.reads
    task.cancel()
    await asyncio.sleep_ms(0)
    print("READS", idle)

asyncio.run(main())
"""


def test_the_responder_waits_for_queries_without_polling():
    # served through asyncio's io queue: an idle responder never even tries to read
    r = subprocess.run(
        [MICROPYTHON, "-c", IDLE, str(free_udp_port())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["READS", "0"]
