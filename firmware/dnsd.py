# SPDX-License-Identifier: MIT
# dnsd.py: the setup-mode DNS responder. While the bulb is a Wi-Fi access point, every name a
# phone asks for resolves to the bulb's own address, so the phone's captive-portal check (and
# any page the installer types) lands on the bulb's setup page.
# It must never answer a response or a malformed packet (no reflection, no crash on garbage),
# never read past the end of a packet, and never block the event loop: one datagram at a time,
# waiting on the socket through asyncio.
import socket

from micropython import const

_PORT = const(53)
_MAX = const(512)  # classic DNS over UDP; longer queries are not ours to answer
_HDR = const(12)
_TTL = const(30)  # short: once the bulb leaves setup mode, phones forget this answer quickly
_T_A = const(1)
_T_ANY = const(255)
_C_IN = const(1)
_C_ANY = const(255)
_R_FORMERR = const(1)
_R_NOTIMP = const(4)


class DnsServer:
    """Answers every A query with `ip`. handle() is pure (bytes in, reply length out)."""

    def __init__(self, ip, port=_PORT, bind="0.0.0.0"):
        self.ip = bytes(int(x) for x in ip.split("."))
        if len(self.ip) != 4:
            raise ValueError("ip must be dotted IPv4: " + ip)
        self.port = port
        self.bind = bind
        self.sock = None
        self.answered = 0  # queries answered (A or not)
        self.dropped = 0  # packets ignored
        self._out = bytearray(_MAX)

    def handle(self, q):
        """Reply to one datagram into self._out; returns its length, or 0 to stay silent."""
        n = len(q)
        if n < _HDR + 5 or n > _MAX:
            return 0
        flags = q[2]
        if flags & 0x80:  # QR set: a response, never answer it (no loops, no reflection)
            return 0
        qd = q[4] << 8 | q[5]
        opcode = (flags >> 3) & 0x0F
        # the question: labels up to a zero byte; compression pointers are not valid here
        i = _HDR
        end = 0
        if qd == 1:
            while i < n:
                ln = q[i]
                if ln == 0:
                    end = i + 5  # zero byte + QTYPE + QCLASS
                    break
                if ln & 0xC0 or i + 1 + ln > n:
                    break
                i += 1 + ln
        if end == 0 or end > n or i - _HDR > 255:
            return self._error(q, _R_FORMERR, flags)
        if opcode != 0:
            return self._error(q, _R_NOTIMP, flags)
        qtype = q[end - 4] << 8 | q[end - 3]
        qclass = q[end - 2] << 8 | q[end - 1]
        o = self._out
        o[0:2] = q[0:2]  # same ID
        o[2] = 0x84 | (flags & 0x01)  # QR, AA, RD copied
        o[3] = 0x80  # RA, NOERROR
        o[4:6] = b"\x00\x01"
        answer = qtype in (_T_A, _T_ANY) and qclass in (_C_IN, _C_ANY)
        o[6:8] = b"\x00\x01" if answer else b"\x00\x00"  # AAAA etc.: no data, use IPv4
        o[8:12] = b"\x00\x00\x00\x00"
        o[_HDR:end] = q[_HDR:end]
        if not answer:
            self.answered += 1
            return end
        a = end
        o[a : a + 2] = b"\xc0\x0c"  # the name: pointer to the question's
        o[a + 2 : a + 4] = b"\x00\x01"  # A
        o[a + 4 : a + 6] = b"\x00\x01"  # IN
        o[a + 6 : a + 10] = bytes((0, 0, 0, _TTL))
        o[a + 10 : a + 12] = b"\x00\x04"
        o[a + 12 : a + 16] = self.ip
        self.answered += 1
        return a + 16

    def _error(self, q, rcode, flags):
        o = self._out
        o[0:2] = q[0:2]
        o[2] = 0x80 | (flags & 0x79)  # QR, opcode and RD echoed
        o[3] = rcode
        o[4:12] = b"\x00" * 8  # no sections: the question may be what was wrong
        self.dropped += 1
        return _HDR

    def open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(socket.getaddrinfo(self.bind, self.port)[0][-1])
        s.setblocking(False)
        self.sock = s
        return s

    def serve_one(self):
        """Read and answer one waiting datagram; False when none was waiting."""
        try:
            q, addr = self.sock.recvfrom(_MAX)
        except OSError:  # EAGAIN: nothing waiting
            return False
        n = self.handle(q)
        if n:
            try:
                self.sock.sendto(memoryview(self._out)[:n], addr)
            except OSError:
                self.dropped += 1
        else:
            self.dropped += 1
        return True

    async def run(self):
        """Serve until cancelled (setup mode ends by cancelling this task)."""
        # wait on the socket as asyncio's own streams do (asyncio/stream.py): frozen in the
        # ESP32 port since uasyncio v3, absent from the stubs
        from asyncio import core  # type: ignore[attr-defined]

        if self.sock is None:
            self.open()
        try:
            while True:
                yield core._io_queue.queue_read(self.sock)
                while self.serve_one():
                    pass
        finally:
            self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
