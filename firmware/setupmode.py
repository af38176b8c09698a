# SPDX-License-Identifier: MIT
# setupmode.py: field setup with a phone. The bulb becomes a Wi-Fi access point (Mimamori-XXXX,
# the password on its label), answers every DNS name with its own address (dnsd), serves the
# captive portal (captive + portal), and tests what the installer typed: joins the network,
# delivers the journal to the server (the setup record included), and only then saves the
# site config. The lamp breathes while setup mode runs, shows the result of each test, and the
# signal after a success. Setup mode ends after a success (restart into a normal boot) or after
# SETUP_MS without one. confirm() shows the signal on the first boot after a provisioning.
# It must never save a config that did not work, never keep a password that did not work,
# never leave the lamp dark or breathing once it is over, and never run in safe mode.
import asyncio
import gc
import time

import network
import record
from micropython import const

SETUP_MS = 600000  # setup mode gives up after 10 minutes without a success
_LINGER_MS = const(20000)  # after a success the result page stays up this long
_T_JOIN = const(15000)  # association + DHCP
_RESCAN_MS = const(20000)  # the page's network list is at most this old
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read from a label


def ap_name():
    import machine

    u = machine.unique_id()
    return f"Mimamori-{u[-2]:02X}{u[-1]:02X}"


def ap_password(cfg):
    """The access point's password: ap_password from the site config (make provision writes a
    random one and prints it on the label); else derived from the chip id and the device key
    (guessable when the bulb has no key: provision it at the bench)."""
    if len(cfg["ap_password"]) >= 8:
        return cfg["ap_password"]
    import hashlib

    import machine

    d = hashlib.sha256(b"mimamori-ap" + machine.unique_id() + cfg["device_key"].encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in d[:10])


class Setup:
    def __init__(self, cfg, journal, lamp):
        self._cfg = cfg
        self._j = journal
        self._lamp = lamp
        self._sta = None
        self._breath = None
        self._nets = None  # type: list | None  # the last scan
        self._scanned = time.ticks_ms()
        self.name = ap_name()

    def _breathe(self, on):
        if self._breath is not None:
            self._breath.cancel()
            self._breath = None
        if on:
            self._breath = asyncio.create_task(self._lamp.setup_mode())

    async def _show(self, ok, rssi):
        """The result on the lamp: 2 slow dips (then the signal bars) or 6 fast ones."""
        self._breathe(False)
        await asyncio.sleep_ms(0)  # the breathing ends (the lamp back at its level)
        await self._lamp.result(ok)
        if ok:
            await self._lamp.signal(rssi)
        else:
            self._breathe(True)

    def _scan(self):
        """The networks in range. A scan blocks the radio and the event loop for about two
        seconds (the lamp and DNS stop meanwhile): one every _RESCAN_MS at most, not one per
        page view."""
        now = time.ticks_ms()
        if self._nets is None or time.ticks_diff(now, self._scanned) > _RESCAN_MS:
            try:
                self._nets = self._sta.scan()
            except OSError as e:
                print("setup: scan failed:", e)
                return self._nets or []
            self._scanned = now
        return self._nets

    async def _join(self, ssid, password):
        """'ok', 'wrong_password', 'no_network' or 'failed'."""
        sta = self._sta
        sta.disconnect()
        sta.connect(ssid, password)
        deadline = time.ticks_add(time.ticks_ms(), _T_JOIN)
        while not sta.isconnected():
            s = sta.status()
            if s == network.STAT_WRONG_PASSWORD:
                return "wrong_password"
            if s == network.STAT_NO_AP_FOUND:
                return "no_network"
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return "failed"
            await asyncio.sleep_ms(100)
        return "ok"

    async def attempt(self, raw, password, server):
        """The portal's connection test: (portal.MESSAGES key, rssi or None)."""
        state, rssi = await self._test(raw, password, server)
        asyncio.create_task(self._show(state == "ok", rssi))
        return state, rssi

    async def _test(self, raw, password, server):
        import uplink

        got = _checked(raw, password, server)
        if isinstance(got, str):
            return got, None
        ssid, server = got
        server = server or self._cfg["server"]
        state = await self._join(ssid, password)
        if state != "ok":
            self._sta.disconnect()  # a password that did not work is not kept by the radio
            return state, None
        rssi = self._sta.status("rssi")
        cfg = dict(self._cfg)
        cfg.update(wifi_ssid=ssid, wifi_password=password, server=server, transport="wifi")
        if not server or not cfg["device_key"] or not cfg["device_id"]:
            print("setup: no device key: register this bulb at the bench (make provision)")
            return "no_server", None
        gc.collect()  # the join's garbage gone: what the delivery keeps goes low in the heap
        got = await uplink.Uplink(cfg, self._j, None).flush()  # its buffers: run() made them
        _forget("wifi", "clock")  # the delivery's transport: made again for another test
        if got != uplink.DONE and got != uplink.AGAIN:
            return "no_server", None
        import config

        config.save_site({"wifi_ssid": ssid, "wifi_password": password, "server": server,
                          "transport": "wifi"})
        del config
        _forget("config")  # the page stays up a while: without it
        _flag(rssi)
        print("setup: connected to", ssid, rssi, "dBm; settings saved")
        return "ok", rssi

    async def run(self, why):
        # what stays for the whole of setup mode, each into the holes the garbage before it
        # left (a phone's requests cut the heap up later): the modules, the test's buffers
        for name in ("captive", "dnsd", "uplink"):
            gc.collect()
            __import__(name)
        import captive
        import dnsd
        import uplink

        gc.collect()
        uplink.buffers()  # the connection test's 3.5 KB, while the heap is still in one piece
        self._j.append(record.K_SETUP, why)
        ap = network.WLAN(network.AP_IF)
        ap.active(True)
        ap.config(essid=self.name, password=ap_password(self._cfg),
                  authmode=network.AUTH_WPA2_PSK)
        ip = ap.ifconfig()[0]
        self._sta = network.WLAN(network.STA_IF)
        self._sta.active(True)
        dns = dnsd.DnsServer(ip)
        dns.open()
        tasks = [asyncio.create_task(dns.run())]
        self._breathe(True)
        web = captive.Captive(ip, self._scan, self.attempt, self.name, self._cfg["server"])
        await web.start()
        print("setup: access point", self.name, "at", ip)
        ok = False
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < SETUP_MS:
            await asyncio.sleep_ms(500)
            if web.result and web.result[0] == "ok":
                ok = True
                await asyncio.sleep_ms(_LINGER_MS)  # the phone shows the result
                break
        web.stop()
        for t in tasks:
            t.cancel()
        self._breathe(False)
        await asyncio.sleep_ms(0)
        ap.active(False)
        self._lamp.show()
        print("setup: done" if ok else "setup: no success in time; leaving setup mode")
        if ok or self._cfg["wifi_ssid"] or self._cfg["transport"] != "wifi":
            import safemode

            safemode.restart()  # a normal boot with the (new) settings


def _checked(raw, password, server):
    """(ssid, server or "") when config's checks pass, else a MESSAGES key. config (6 KB) is
    imported for the checks and dropped again, so the delivery runs without it."""
    import config

    try:
        try:
            ssid = raw.decode()
            config.check("wifi_ssid", ssid)
            config.check("wifi_password", password)
        except (UnicodeError, ValueError):
            return "failed"  # cannot be kept in site.json as text
        try:
            return ssid, config.check("server", server) if server else ""
        except ValueError:
            return "no_server"
    finally:
        _forget("config")


def _forget(*names):
    """Drop modules (imported again when needed) and collect what they held."""
    import sys

    for name in names:
        sys.modules.pop(name, None)
    gc.collect()


def run(cfg, journal, lamp, why):
    return Setup(cfg, journal, lamp).run(why)


def _flag(rssi):
    """Ask the next boot to confirm the provisioning (confirm())."""
    from statefiles import COMMISSION

    with open(COMMISSION, "w") as f:
        f.write(str(rssi))


async def confirm(link, lamp):
    """First boot after a provisioning: once the uplink has delivered, send again at once (the
    link record with the signal reaches the server now, not at the next heartbeat), show the
    signal on the lamp, and forget the request."""
    import os

    import uplink
    from statefiles import COMMISSION

    while link.outcome != uplink.DONE:
        await asyncio.sleep_ms(200)
    link.kick()
    rssi = link.signal()
    print("setup: provisioning confirmed; signal", rssi, "dBm")
    await lamp.signal(rssi)
    try:
        os.remove(COMMISSION)
    except OSError:
        pass
