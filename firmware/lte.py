# SPDX-License-Identifier: MIT
# LTE-M transport: a SIMCom SIM7080G-class modem on machine.UART, driven by AT commands.
# It carries the uplink's bytes over one TCP connection (AT+CAOPEN/CASEND/CARECV/CACLOSE) and
# nothing else: no HTTP, no retry policy. The modem is powered with the bulb, so up() wakes it,
# waits for registration and attaches (AT+CNACT) on every visit, and reads the network time.
# It must never wait without a deadline: every command has a timeout, a silent or confused
# modem ends the attempt (AtError), never the bulb. See docs/uplink.md for a transcript.
import asyncio
import time

from micropython import const
from record import T_LTE

_T_CMD = const(2000)  # ordinary command
_T_ATTACH = const(20000)  # AT+CNACT until +APP PDP: 0,ACTIVE
_T_OPEN = const(30000)  # AT+CAOPEN (DNS + TCP handshake over the air)
_T_SEND = const(10000)  # one AT+CASEND
_T_RECV = const(20000)  # the server's answer
_REG_MS = const(60000)  # registration wait (AT+CEREG?)
_REG_POLL = const(2000)
_CHUNK = const(1460)  # AT+CASEND maximum
_RECV = const(1000)  # AT+CARECV request: leaves room in _RX for the framing and a URC or two
_RX = const(1600)


def _unix(y, m, d):
    """Unix seconds at 00:00 UTC of a date (days-from-civil; no epoch-dependent mktime)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468) * 86400


class AtError(Exception):
    pass


class Lte:
    name = "lte"
    code = T_LTE

    def __init__(self, cfg):
        self._cfg = cfg
        self._uart = None
        self._rx = bytearray(_RX)
        self._mv = memoryview(self._rx)
        self._n = 0  # bytes in _rx
        self._rssi = 0
        self._attached = False
        self._data = False  # +CADATAIND seen
        self._closed = True  # +CASTATE: 0,0 seen, or never opened
        self._opened = False  # AT+CAOPEN succeeded and AT+CACLOSE is still due
        self._pdp = False
        self.clock = None  # (unix seconds, ticks_ms) from AT+CCLK?, when the network gave one

    def signal(self):
        return self._rssi

    # ---- the AT layer
    def _start(self):
        if self._uart is None:
            import machine

            c = self._cfg
            self._uart = machine.UART(
                1, baudrate=c["uart_baud"], tx=c["uart_tx"], rx=c["uart_rx"], rxbuf=2048
            )
            self._r = asyncio.StreamReader(self._uart)
            self._w = asyncio.StreamWriter(self._uart, {})

    async def _fill(self, deadline):
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0 or self._n >= _RX:
            raise AtError("timeout")
        try:
            got = await asyncio.wait_for_ms(self._r.readinto(self._mv[self._n :]), left)
        except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has no builtin one
            raise AtError("timeout")
        if not got:
            raise AtError("uart closed")
        self._n += got

    def _take(self, k):
        """Drop the first k bytes of the receive buffer."""
        n = self._n - k
        self._mv[0:n] = self._mv[k : self._n]
        self._n = n

    async def _line(self, deadline):
        """The next non-empty line (bytes, without CR LF); a '>' prompt counts as a line."""
        while True:
            i = 0
            while i < self._n and self._rx[i] in (13, 10):
                i += 1
            if i:
                self._take(i)
            if self._n and self._rx[0] == 62:  # '>' of AT+CASEND
                self._take(1)
                return b">"
            i = bytes(self._mv[: self._n]).find(b"\n")
            if i >= 0:
                line = bytes(self._mv[:i]).strip()
                self._take(i + 1)
                if line:
                    return line
                continue
            await self._fill(deadline)

    def _urc(self, line):
        if line.startswith(b"+CADATAIND"):
            self._data = True
        elif line.startswith(b"+CASTATE: 0,0"):
            self._closed = True
        elif line.startswith(b"+APP PDP: 0,ACTIVE"):
            self._pdp = True
        elif line.startswith(b"+APP PDP: 0,DEACTIVE"):
            self._pdp = False
            self._attached = False

    async def _write(self, b):
        self._w.write(b)
        await self._w.drain()

    async def cmd(self, c, want=None, timeout=_T_CMD):
        """Send AT command c; the info line starting with `want` (or b"OK"). AtError on
        ERROR, +CME ERROR or when no final result comes within timeout ms."""
        await self._write(c + b"\r")
        return await self._result(want, time.ticks_add(time.ticks_ms(), timeout))

    async def _result(self, want, deadline):
        got = None
        while True:
            line = await self._line(deadline)
            if line == b"OK":
                return got if want else line
            if line == b"ERROR" or line.startswith(b"+CME ERROR"):
                raise AtError(line.decode())
            if want and line.startswith(want):
                got = line
            elif not line.startswith(b"AT"):  # echo before ATE0 takes effect
                self._urc(line)

    # ---- link: wake, register, attach
    async def up(self):
        """Attach to the network; True when TCP can be opened. Reads signal and network time."""
        if self._attached and self._pdp:
            return True
        try:
            self._start()
            for _ in range(10):  # the modem boots with the bulb: wait until it answers
                try:
                    await self.cmd(b"AT", None, 500)
                    break
                except AtError:
                    pass
            else:
                return False
            await self.cmd(b"ATE0")
            line = await self.cmd(b"AT+CPIN?", b"+CPIN:", 5000)
            if not line or b"READY" not in line:
                return False
            deadline = time.ticks_add(time.ticks_ms(), _REG_MS)
            while True:
                line = await self.cmd(b"AT+CEREG?", b"+CEREG:")
                stat = line.split(b",")[1][:1] if line and b"," in line else b"0"
                if stat in (b"1", b"5"):  # home or roaming
                    break
                if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                    return False
                await asyncio.sleep_ms(_REG_POLL)
            await self._csq()
            if self._cfg["apn"]:
                await self.cmd(b'AT+CNCFG=0,1,"' + self._cfg["apn"].encode() + b'"')
            self._pdp = False
            await self.cmd(b"AT+CNACT=0,1", None, _T_ATTACH)
            deadline = time.ticks_add(time.ticks_ms(), _T_ATTACH)
            while not self._pdp:
                self._urc(await self._line(deadline))
            self._attached = True
            await self._cclk()
            return True
        except (AtError, ValueError, IndexError) as e:
            print("lte: no link:", e)
            return False

    async def _csq(self):
        line = await self.cmd(b"AT+CSQ", b"+CSQ:")
        v = int(line[5:].split(b",")[0])
        self._rssi = 0 if v == 99 else -113 + 2 * v  # 3GPP 27.007: 0 -> -113 dBm, 31 -> -51

    async def _cclk(self):
        """Network time (NITZ) as (unix seconds, ticks_ms); None when the network gave none."""
        try:
            line = await self.cmd(b"AT+CCLK?", b"+CCLK:")
            s = line[line.find(b'"') + 1 :]  # yy/MM/dd,hh:mm:ss+zz (zz: quarter hours)
            yy = int(s[0:2])
            if yy < 24 or yy > 79:  # 80/01/06: the modem's default, no network time
                return
            t = _unix(2000 + yy, int(s[3:5]), int(s[6:8]))
            t += int(s[9:11]) * 3600 + int(s[12:14]) * 60 + int(s[15:17])
            q = int(s[18:20]) * 900
            self.clock = (t - q if s[17:18] == b"+" else t + q, time.ticks_ms())
        except (AtError, ValueError, IndexError):
            self.clock = None

    # ---- one TCP connection
    async def open(self, host, port, tls):
        if tls:
            raise AtError("TLS over LTE-M needs the CA in the modem (AT+CSSLCFG): not done")
        self._data = False
        self._closed = False
        c = b'AT+CAOPEN=0,0,"TCP","' + host.encode() + b'",' + str(port).encode()
        line = await self.cmd(c, b"+CAOPEN:", _T_OPEN)
        if not line or not line.endswith(b",0"):
            self._closed = True
            raise AtError("open: " + (line or b"no result").decode())
        self._opened = True

    async def send(self, buf):
        mv = memoryview(buf)
        off = 0
        while off < len(mv):
            k = min(_CHUNK, len(mv) - off)
            deadline = time.ticks_add(time.ticks_ms(), _T_SEND)
            await self._write(b"AT+CASEND=0," + str(k).encode() + b"\r")
            while True:
                line = await self._line(deadline)
                if line == b">":
                    break
                if line == b"ERROR" or line.startswith(b"+CME ERROR"):
                    raise AtError("send: " + line.decode())
                self._urc(line)
            await self._write(mv[off : off + k])
            await self._result(None, deadline)
            off += k

    async def recv_into(self, buf):
        """Bytes of the answer into buf; 0 when the server closed and nothing is left."""
        deadline = time.ticks_add(time.ticks_ms(), _T_RECV)
        while True:
            if self._data or self._closed:
                self._data = False
                got = await self._carecv(buf, deadline)
                if got:
                    return got
                if self._closed:
                    return 0
            else:
                self._urc(await self._line(deadline))

    async def _carecv(self, buf, deadline):
        k = min(len(buf), _RECV)
        await self._write(b"AT+CARECV=0," + str(k).encode() + b"\r")
        while True:  # lines before the answer are URCs; then +CARECV: <len>,<data by length>
            i = 0
            while i < self._n and self._rx[i] in (13, 10):
                i += 1
            if i:
                self._take(i)
            if self._n >= 9 and bytes(self._mv[:9]) == b"+CARECV: ":
                j = 9
                while j < self._n and self._rx[j] not in (44, 13):  # ',' or CR
                    j += 1
                if j < self._n:
                    n = int(bytes(self._mv[9:j]))
                    start = j + 1 if n else j
                    while self._n < start + n:
                        await self._fill(deadline)
                    buf[:n] = self._mv[start : start + n]
                    self._take(start + n)
                    await self._result(None, deadline)
                    if n == k:
                        self._data = True  # there may be more waiting
                    return n
            elif self._n >= 9 or (self._n and self._rx[0] != 43):  # a whole other line?
                i = bytes(self._mv[: self._n]).find(b"\n")
                if i >= 0:
                    head = bytes(self._mv[:i]).strip()
                    self._take(i + 1)
                    if head == b"ERROR" or head.startswith(b"+CME ERROR"):
                        raise AtError("recv: " + head.decode())
                    self._urc(head)
                    continue
            await self._fill(deadline)

    async def close(self):
        """Release the connection (also after the server closed it: the modem keeps the
        context until AT+CACLOSE)."""
        if self._opened:
            self._opened = False
            self._closed = True
            try:
                await self.cmd(b"AT+CACLOSE=0")
            except AtError:
                pass
