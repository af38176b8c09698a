# SPDX-License-Identifier: MIT
# Wi-Fi transport: network.WLAN station, one TCP (or TLS) connection through asyncio streams.
# It carries the uplink's bytes and nothing else: no HTTP, no retry policy.
# It must never wait without a deadline, and never talk TLS without checking the server's
# certificate against the CA from the site config (ca_cert).
import asyncio
import time

import statefiles
from micropython import const
from record import T_WIFI

_T_JOIN = const(15000)  # association + DHCP
_T_OPEN = const(10000)
_T_IO = const(15000)
# getaddrinfo blocks the VM: lwIP tries each DNS server 4 times over 7 s (about 14 s for two,
# 21 s for the three ESP-IDF allows); the watchdog is stretched to this for that call
_T_DNS = const(25000)


class Wifi:
    name = "wifi"
    code = T_WIFI

    def __init__(self, cfg):
        self._cfg = cfg
        self._wlan = None
        self._rssi = 0
        self._r = self._w = None
        self.clock = None  # Wi-Fi gives no network time; the server's answer does
        self.cert_failed = False  # the last attempt failed the server's certificate (or no CA)
        self._at = None  # (host, port) of the last open
        self._ip = None  # (host, ip): resolved once per boot
        self.clock_moved = False  # the last attempt moved the clock to the server's Date

    def signal(self):
        return self._rssi

    async def up(self):
        """Join the configured network; True when connected."""
        import network

        c = self._cfg
        if not c["wifi_ssid"]:
            return False
        try:
            if self._wlan is None:
                self._wlan = network.WLAN(network.STA_IF)
                self._wlan.active(True)
            w = self._wlan
            if not w.isconnected():
                w.connect(c["wifi_ssid"], c["wifi_password"])
                deadline = time.ticks_add(time.ticks_ms(), _T_JOIN)
                while not w.isconnected():
                    s = w.status()
                    if s == network.STAT_WRONG_PASSWORD or s == network.STAT_NO_AP_FOUND:
                        break
                    if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                        break
                    await asyncio.sleep_ms(100)
            if not w.isconnected():
                w.disconnect()
                return False
            self._rssi = w.status("rssi")
            return True
        except OSError as e:
            print("wifi: no link:", e)
            return False

    def _context(self):
        import ssl

        import clock

        clock.restore()  # the RTC reads 2000-01-01 after a power-on: mbedTLS checks dates on it
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # in the docs, not the stubs
        self.cert_failed = True  # until the CA is loaded: no CA, no TLS
        if not self._cfg["ca_cert"]:
            raise OSError("https needs the server's CA certificate: set 'ca_cert' in site.json")
        with open(self._cfg["ca_cert"], "rb") as f:
            ca = f.read()
        if ca.startswith(b"-----BEGIN"):  # PEM -> DER: the port's mbedTLS wants DER here
            import binascii

            ca = binascii.a2b_base64(b"".join(ca.split(b"-----")[2].split()))
        ctx.load_verify_locations(cadata=ca)
        self.cert_failed = False
        return ctx

    def _resolve(self, host):
        """The server's IP address. A name is resolved once per boot, the watchdog stretched
        over lwIP's blocking getaddrinfo; when the resolver fails, the last answer kept."""
        if self._ip and self._ip[0] == host:
            return self._ip[1]
        import socket

        import watchdog

        try:
            with watchdog.stretch(_T_DNS):
                ip = socket.getaddrinfo(host, 80)[0][-1][0]
        except OSError as e:
            try:
                with open(statefiles.DNS) as f:
                    name, ip = f.read().split()
            except (OSError, ValueError):
                name = ip = None
            if name != host:
                raise OSError(f"cannot resolve {host}: {e}") from None
            print("wifi: no DNS answer; the address kept from before:", ip)
        else:
            if ip != host:
                try:
                    with open(statefiles.DNS, "w") as f:
                        f.write(f"{host} {ip}")
                except OSError:
                    pass
        self._ip = (host, ip)
        return ip

    async def open(self, host, port, tls):
        self.cert_failed = False
        self.clock_moved = False
        self._at = (host, port)
        ctx = self._context() if tls else None
        ip = self._resolve(host)  # asyncio's getaddrinfo then gets an IP: no DNS, no wait
        self._r, self._w = await asyncio.wait_for_ms(
            asyncio.open_connection(ip, port, ssl=ctx, server_hostname=host), _T_OPEN
        )

    async def send(self, buf):
        try:  # the TLS handshake runs here, at the first write
            self._w.write(buf)
            await asyncio.wait_for_ms(self._w.drain(), _T_IO)
        except ValueError as e:  # the port's ssl: the server's certificate failed the check
            await self._refused(e)
            raise

    async def _refused(self, e):
        self.cert_failed = True
        if "future" in str(e):  # our clock is behind the certificate: ask the server's
            await self._date(*self._at)

    async def _date(self, host, port):
        """The server's HTTP Date, over TLS without verification, as a floor for the clock only
        (a forged one can only move it forward: a man in the middle could refuse us anyway).
        Nothing of the bulb's is sent on this connection. The next attempt verifies as usual."""
        import ssl

        import clock
        import protocol

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        w = None
        try:
            r, w = await asyncio.wait_for_ms(
                asyncio.open_connection(self._resolve(host), port, ssl=ctx, server_hostname=host),
                _T_OPEN,
            )
            w.write(b"HEAD %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                    % (protocol.PATH.encode(), host.encode()))
            await asyncio.wait_for_ms(w.drain(), _T_IO)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 1024:
                got = await asyncio.wait_for_ms(r.read(256), _T_IO)
                if not got:
                    break
                head += got
            for line in head.split(b"\r\n"):
                if line[:5].lower() == b"date:":
                    if clock.floor(clock.http_date(line[5:])):
                        self.clock_moved = True
                        print("wifi: clock behind the certificate; set from the server's Date")
                    break
        except Exception as e:  # noqa: BLE001 - no Date: the clock stays, the next attempt says
            print("wifi: no server Date:", e)
        if w:
            try:  # MicroPython's Stream.close() does nothing: wait_closed() closes the socket
                w.close()
                await asyncio.wait_for_ms(w.wait_closed(), 1000)
            except Exception:  # noqa: BLE001, S110 - closing a dead socket may fail any way
                pass

    async def recv_into(self, buf):
        # None is "nothing yet", not the end: a TLS stream wakes for a partial record or a
        # session ticket and has no data to give
        t0 = time.ticks_ms()
        while True:
            left = _T_IO - time.ticks_diff(time.ticks_ms(), t0)
            if left <= 0:
                raise OSError("no answer")
            try:  # the handshake may end here, and its certificate check with it
                got = await asyncio.wait_for_ms(self._r.readinto(buf), left)
            except ValueError as e:
                await self._refused(e)
                raise
            if got is not None:
                return got

    async def close(self):
        w, self._w, self._r = self._w, None, None
        if w:
            try:
                w.close()
                await asyncio.wait_for_ms(w.wait_closed(), 1000)
            except Exception as e:  # noqa: BLE001 - closing a dead socket may fail any way
                print("wifi: close:", e)
