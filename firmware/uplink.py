# SPDX-License-Identifier: MIT
# Uplink: sends the journal's unacknowledged records to the server in batches, one HTTP/1.1
# request format built here into one preallocated buffer and carried by interchangeable
# transports (wifi.Wifi, lte.Lte: up/open/send/recv_into/close/signal). When: right after
# power-on (the power-on record is what clears an alert), then every heartbeat_s while lit, and
# at once when kick() says a change is worth telling; after a failure, capped exponential
# backoff with full jitter. See docs/uplink.md.
# It must never acknowledge a record in the journal before the server said it has it, never
# apply a server setting without config's checks, and never raise into main (that resets).
import asyncio
import os
import sys
import time

import otaboot
import protocol
import record
import statefiles
from micropython import const

_HEAD = const(320)  # room for the HTTP head, written right-aligned just before the body
_BATCH = const(100)  # records per request (2.4 KB)
_RXN = const(1024)  # the server's answer: head + a small JSON
_FIRST_MS = const(400)  # first send after power-on: jitter up to this
_BASE_MS = const(4000)  # backoff: full jitter in [0, min(cap, base * 2^failures)]
_CAP_MS = const(1800000)
_REFUSED_MS = const(3600000)  # after a 4xx: the same request would be refused again
_ANCHOR_MS = const(21600000)  # a new server time anchor within a boot every 6 h
_BAD_CERT = const(526)  # F_UPLINK aux: TLS refused the server's certificate (or had no CA)

DONE = const(0)  # everything unsent is acknowledged
FAIL = const(1)  # no link, no connection, dropped, 5xx: back off and retry
REFUSED = const(2)  # 4xx: recorded as a fault, retried only much later
BUSY = const(3)  # 429/503: the server sheds load; wait what it says (jittered)
AGAIN = const(4)  # progress made, more to send on a new connection
LATER = const(5)  # LTE-M power-on within the report gap: records wait for a later report


def _rand(n):
    """Uniform-ish random integer in [0, n)."""
    if n <= 1:
        return 0
    b = os.urandom(4)
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) % n


_bufs = None  # (batch buffer, answer buffer): made once per boot, see buffers()


def buffers():
    """The batch and answer buffers (3.5 KB in one piece, then 1 KB), made at the first call
    and kept for the boot: a heap that a captive portal or an update visit has cut into pieces
    may no longer hold 3.5 KB in one block, so set-up mode claims them before it serves a
    phone. One Uplink delivers at a time in a boot (main's, or set-up mode's test)."""
    global _bufs
    if _bufs is None:
        _bufs = (bytearray(_HEAD + protocol.HEADER_SIZE + _BATCH * record.SIZE), bytearray(_RXN))
    return _bufs


def _transports(cfg):
    out = []  # type: list
    for name in cfg["transport"].split(","):
        if name == "wifi":
            import wifi

            out.append(wifi.Wifi(cfg))
        elif name == "lte":
            import lte

            out.append(lte.Lte(cfg))
    return out


class Uplink:
    def __init__(self, cfg, journal, lamp):
        self._cfg = cfg
        self._j = journal
        self._lamp = lamp
        url = cfg["server"]
        self._tls = url.startswith("https://")
        host = url[8:] if self._tls else url[7:]
        host = host.split("/", 1)[0]
        port = 443 if self._tls else 80
        if ":" in host:
            host, p = host.rsplit(":", 1)
            try:
                port = int(p)
            except ValueError:
                print(f"uplink: server URL {url!r} has a bad port; fix 'server' in site.json")
                host = ""
        self._host, self._port = host, port
        import binascii

        self._key = binascii.unhexlify(cfg["device_key"])
        self._dev = cfg["device_id"]
        self._sv = self._read_sv()
        hostline = host if port in (80, 443) else f"{host}:{port}"
        self._target = None
        self._p2 = (
            " HTTP/1.1\r\nHost: " + hostline + "\r\nContent-Type: application/octet-stream"
            "\r\nContent-Length: "
        ).encode()
        self._p3 = ("\r\nAuthorization: Mimamori " + self._dev + ":").encode()
        self._buf, self._rx = buffers()
        self._mv = memoryview(self._buf)
        self._req = 0  # request number within this boot (replay counter with the boot)
        self._fails = 0
        self._anchored = None  # ticks_ms of the last server anchor this boot
        self._modem_anchored = False
        self._refused = 0  # last 4xx status recorded as a fault this boot
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._ts = _transports(cfg)
        self.outcome = None
        self._answered = False
        self._retry_ms = 0
        self._via = None  # the transport of the last delivery that got everything acknowledged
        self._ota = None  # firmware updates (docs/ota.md): ota.Ota once there is one
        try:
            os.stat(otaboot.STATE)  # an update was installed: report, and end a trial
            self._ota = self._updates()
        except OSError:
            pass

    def signal(self):
        """The signal (dBm) of the transport that carried the last delivery; -200: none yet."""
        return self._via.signal() if self._via else -200

    def ready(self):
        return bool(self._j and self._host and self._dev and self._key and self._ts)

    # ---- when to send
    async def run(self):
        if not self.ready():
            print("uplink: not provisioned (server, device_id, device_key, transport): idle")
            return
        await asyncio.sleep_ms(_rand(_FIRST_MS))
        first = True
        while True:
            wait = self._cfg["heartbeat_s"] * 1000
            try:
                got = await self.flush(first)
                first = False
                if got == FAIL:
                    wait = _rand(min(_CAP_MS, _BASE_MS << min(self._fails, 16))) + 500
                elif got == REFUSED:
                    wait = _REFUSED_MS + _rand(_REFUSED_MS // 4)
                elif got == BUSY:
                    wait = max(self._retry_ms, 1000) + _rand(max(self._retry_ms, 1000))
                elif got == AGAIN:
                    wait = 0
            except Exception as e:  # noqa: BLE001 - never into main (it resets): log, back off
                sys.print_exception(e)
                wait = _CAP_MS
            self._wake.clear()
            try:
                await asyncio.wait_for_ms(self._wake.wait(), wait)
            except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has no builtin one
                pass

    def kick(self):
        """A change worth telling (fault, setup, ...): send now instead of at the heartbeat."""
        self._wake.set()

    async def flush(self, power_on=False):
        """One delivery attempt of everything unsent; the outcome (DONE, FAIL, ...).
        power_on: the attempt right after power-on, which LTE-M may defer (LATER)."""
        async with self._lock:
            got = await self._deliver(power_on)
            if got == FAIL and any(getattr(t, "clock_moved", False) for t in self._ts):
                got = await self._deliver(power_on)  # the clock was behind the certificate
            self._fails = 0 if got in (DONE, AGAIN, LATER) else self._fails + 1
            if got == DONE and self._ota and self._ota.offer and self._via:
                try:  # a release waits: fetch what this visit allows (resumes next time)
                    await self._ota.visit(self._via, self._host, self._port, self._tls)
                except Exception as e:  # noqa: BLE001 - an update never stops the uplink
                    print("uplink: update:", e)
            self.outcome = got
            return got

    # ---- one attempt over the configured transports, in order
    async def _deliver(self, power_on=False):
        rec = self._mv[_HEAD + protocol.HEADER_SIZE :]
        if self._j.read_unsent(rec, 1)[0] == 0:
            return DONE
        got = FAIL
        for t in self._ts:
            t0 = time.ticks_ms()
            ok = await t.up()
            if t.clock and not self._modem_anchored:  # network time: anchor this boot
                wall, at = t.clock
                self._modem_anchored = True
                wall += time.ticks_diff(time.ticks_ms(), at) // 1000
                self._j.append(record.K_ANCHOR, record.A_MODEM, 2, wall)
                _learn(wall)
            if ok and power_on and t.code == record.T_LTE and not self._lte_due(t):
                return LATER
            ms = 0
            self._answered = False
            if ok:
                try:
                    await t.open(self._host, self._port, self._tls)
                    ms = max(1, time.ticks_diff(time.ticks_ms(), t0))
                    got = await self._exchange(t)
                except Exception as e:  # noqa: BLE001 - any failure of an attempt is a FAIL
                    print(f"uplink: {t.name}: {self._host}:{self._port}: {e}")
                    got = FAIL
            await t.close()
            if getattr(t, "cert_failed", False) and self._refused != _BAD_CERT:  # once per boot
                self._refused = _BAD_CERT
                self._j.append(record.K_FAULT, record.F_UPLINK, _BAD_CERT, 0)
            # one link record per attempt, once its outcome is known (it goes with the next
            # batch): connect time when the server answered, 0 when it could not be reached
            self._j.append(record.K_LINK, t.code, t.signal(), ms if self._answered else 0)
            if ok and got != FAIL:
                self._via = t
                if got == DONE and t.code == record.T_LTE and t.clock:
                    self._lte_reported(t.clock)
                break
        return got

    # ---- LTE-M report gap, the setting lte_report_gap_s (docs/uplink.md: bytes per month)
    def _lte_due(self, t):
        """True when this power-on should report over LTE-M: no network time to judge by, a
        record worth telling waiting (fault, loss, setup), or the last report is old."""
        if not t.clock:
            return True
        try:
            with open(statefiles.LTE_LAST) as f:
                last = int(f.read())
        except (OSError, ValueError):
            return True
        now = t.clock[0]
        if not 0 <= now - last < self._cfg["lte_report_gap_s"]:  # a setting the server may push
            return True
        rec = self._mv[_HEAD + protocol.HEADER_SIZE :]
        count, _ = self._j.read_unsent(rec, _BATCH)
        for i in range(count):
            k = rec[i * record.SIZE + 12]
            if k == record.K_FAULT or k == record.K_LOSS or k == record.K_SETUP:
                return True
        return False

    def _lte_reported(self, clock):
        try:
            with open(statefiles.LTE_LAST + ".tmp", "w") as f:
                f.write(str(clock[0]))
            os.rename(statefiles.LTE_LAST + ".tmp", statefiles.LTE_LAST)
        except OSError as e:
            print("uplink: cannot keep the last report time:", e)

    def _thin(self, count):
        """Drop alive marks followed by a later record of the same boot (which proves the lamp
        was lit later still): they tell the server nothing more. In place; the new count."""
        b = self._buf
        base = _HEAD + protocol.HEADER_SIZE
        n = 0
        for i in range(count):
            o = base + i * record.SIZE
            if (b[o + 12] == record.K_ALIVE and i + 1 < count
                    and b[o + 4 : o + 8] == b[o + 28 : o + 32]):
                continue
            if n != i:
                d = base + n * record.SIZE
                self._mv[d : d + record.SIZE] = self._mv[o : o + record.SIZE]
            n += 1
        return n

    def _head(self, n_body, keep):
        """Write the HTTP head right-aligned before the body; the request's start offset."""
        if self._target is None:  # path and query as sent: the signature covers both
            self._target = (protocol.PATH + "?sv=" + str(self._sv) + "&fw="
                            + str(otaboot.running())).encode()
        body = self._mv[_HEAD : _HEAD + n_body]
        # the uptime now, on the journal's up_ms clock (ticks_ms since boot): the server anchors
        # this boot from when it receives the request (0 means "not given": send at least 1)
        protocol.stamp_up_ms(body, time.ticks_ms() or 1)
        sig = protocol.sign(self._key, b"POST", self._target, self._dev, body)
        parts = (b"POST ", self._target, self._p2, str(n_body).encode(), self._p3, sig.encode(),
                 b"\r\nConnection: keep-alive\r\n\r\n" if keep else b"\r\nConnection: close\r\n\r\n")
        pos = _HEAD
        for p in parts:
            pos -= len(p)
        o = pos
        for p in parts:
            self._buf[o : o + len(p)] = p
            o += len(p)
        return pos

    async def _exchange(self, t):
        j = self._j
        while True:
            count, from_seq = j.read_unsent(self._mv[_HEAD + protocol.HEADER_SIZE :], _BATCH)
            if count == 0:
                return DONE
            last = record.seq_of(self._buf, _HEAD + protocol.HEADER_SIZE + (count - 1) * record.SIZE)
            more = count == _BATCH
            count = self._thin(count)
            self._req += 1
            body = self._mv[_HEAD:]
            protocol.pack_header(body, count, j.epoch, from_seq, j.boot, self._req)
            n_body = protocol.HEADER_SIZE + count * record.SIZE
            start = self._head(n_body, more)
            t_send = time.ticks_ms()
            await t.send(self._mv[start : _HEAD + n_body])
            status, resp, closed = await self._response(t)
            rtt = time.ticks_diff(time.ticks_ms(), t_send)
            if status == 200:
                ack = self._accept(resp, last, t_send, rtt)
                if ack < last:
                    print(f"uplink: the server acknowledged {ack} of {last}; stopping")
                    return FAIL
                if not more:
                    return DONE
                if closed:
                    return AGAIN
                continue
            print(f"uplink: server answered {status}: {resp}")
            if status in (429, 503):
                self._retry_ms = self._retry_after(resp)
                return BUSY
            if 400 <= status < 500:
                if self._refused != status:
                    self._refused = status
                    j.append(record.K_FAULT, record.F_UPLINK, status, 0)
                return REFUSED
            return FAIL

    async def _response(self, t):
        """(status, JSON value or None, closed) of the server's answer."""
        rx = self._rx
        mv = memoryview(rx)
        n = 0
        hend = -1
        clen = -1
        closed = False
        while True:
            if n == _RXN:
                raise OSError("answer too long")
            got = await t.recv_into(mv[n:])
            if not got:
                closed = True
                break
            n += got
            if hend < 0:
                hend = bytes(mv[:n]).find(b"\r\n\r\n")
                if hend >= 0:
                    head = bytes(mv[:hend]).lower()
                    i = head.find(b"\ncontent-length:")
                    if i >= 0:
                        clen = int(head[i + 16 : head.find(b"\r", i + 1)])
                    closed = b"\nconnection: close" in head
            if hend >= 0 and clen >= 0 and n >= hend + 4 + clen:
                break
        if hend < 0 or not rx.startswith(b"HTTP/1."):
            raise OSError("no HTTP answer")
        self._answered = True
        status = int(bytes(mv[9:12]))
        end = hend + 4 + clen if clen >= 0 else n
        if end > n:
            raise OSError("answer cut short")
        resp = None
        try:
            from config import loads  # refuses a truncated body on every MicroPython

            resp = loads(bytes(mv[hend + 4 : end]).decode())
        except ValueError:
            pass
        return status, resp, closed

    def _retry_after(self, resp):
        try:
            return min(_CAP_MS, int(resp["retry_s"]) * 1000)
        except (KeyError, TypeError, ValueError):
            return 60000

    # ---- what the server said
    def _accept(self, resp, last, t_send, rtt):
        """Acknowledge, anchor and apply settings from a 200 answer; the acknowledged seq."""
        j = self._j
        ack = resp.get("ack") if isinstance(resp, dict) else None
        if not isinstance(ack, int):
            return -1
        ack = min(ack, last)  # never past what this bulb sent: a confused server loses nothing
        if ack > j.acked:
            j.ack(ack)
        wall = resp.get("time_ms")
        now = time.ticks_ms()
        if isinstance(wall, int) and wall > 0 and not self._modem_anchored and (
            self._anchored is None or time.ticks_diff(now, self._anchored) > _ANCHOR_MS
        ):
            self._anchored = now
            mid = time.ticks_add(t_send, rtt // 2)
            wall = (wall + time.ticks_diff(now, mid)) // 1000
            j.append(record.K_ANCHOR, record.A_SERVER, rtt // 2000 + 1, wall)
            _learn(wall)
        if self._ota is None and protocol.ota_offer_of(resp):
            self._ota = self._updates()
        if self._ota:
            self._ota.answered(resp)
        settings = resp.get("settings")
        if isinstance(settings, dict) and settings:
            self._apply(settings)
        sv = resp.get("sv")
        if isinstance(sv, int) and sv != self._sv:
            self._sv = sv
            self._target = None
            self._write_sv(sv)
        return ack

    def _updates(self):
        try:
            import ota

            u = ota.Ota(self._cfg, self._j, self._key, self._dev)
            if self._j:
                u.report()  # what the loader did (a rollback) goes to the journal first
            return u
        except Exception as e:  # noqa: BLE001 - no updates this boot, the uplink still runs
            sys.print_exception(e)
            return None

    def _apply(self, settings):
        import config

        applied, faults = config.save_server(settings)
        for code, aux in faults:
            self._j.append(record.K_FAULT, code, aux, 0)
        if applied:
            self._cfg.update(applied)
            if self._lamp and ("brightness" in applied or "gamma" in applied):
                try:
                    self._lamp.configure(self._cfg)
                    asyncio.create_task(self._lamp.fade_to())
                except Exception as e:  # noqa: BLE001 - a lamp hiccup must not stop the uplink
                    sys.print_exception(e)

    def _read_sv(self):
        try:
            with open(statefiles.SV) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _write_sv(self, sv):
        try:
            with open(statefiles.SV + ".tmp", "w") as f:
                f.write(str(sv))
            os.rename(statefiles.SV + ".tmp", statefiles.SV)
        except OSError as e:
            print("uplink: cannot keep the settings version:", e)


def _learn(wall):
    """A verified wall time (Unix s): the RTC, and the floor for the next power-on's TLS."""
    import clock

    clock.learn(wall)
