# SPDX-License-Identifier: MIT
# Wi-Fi transport: network.WLAN station, one TCP (or TLS) connection through asyncio streams.
# It carries the uplink's bytes and nothing else: no HTTP, no retry policy.
# It must never wait without a deadline, and never talk TLS without checking the server's
# certificate against the CA from the site config (ca_cert).
import asyncio
import time

from micropython import const
from record import T_WIFI

_T_JOIN = const(15000)  # association + DHCP
_T_OPEN = const(10000)
_T_IO = const(15000)


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

    async def open(self, host, port, tls):
        self.cert_failed = False
        ctx = self._context() if tls else None
        self._r, self._w = await asyncio.wait_for_ms(
            asyncio.open_connection(host, port, ssl=ctx), _T_OPEN
        )

    async def send(self, buf):
        try:  # the TLS handshake runs here, at the first write
            self._w.write(buf)
            await asyncio.wait_for_ms(self._w.drain(), _T_IO)
        except ValueError:  # the port's ssl: the server's certificate failed the CA check
            self.cert_failed = True
            raise

    async def recv_into(self, buf):
        # None is "nothing yet", not the end: a TLS stream wakes for a partial record or a
        # session ticket and has no data to give
        t0 = time.ticks_ms()
        while True:
            left = _T_IO - time.ticks_diff(time.ticks_ms(), t0)
            if left <= 0:
                raise OSError("no answer")
            got = await asyncio.wait_for_ms(self._r.readinto(buf), left)
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
