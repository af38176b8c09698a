# SPDX-License-Identifier: MIT
# network shim: WLAN (STA_IF, AP_IF) of the ESP32 port over the networks the test defines
# (sim.json "wifi", overridden by <state>/world.json while the bulb runs). Connecting takes bulb
# time; the outcome follows the world at that moment, and a lost network drops the link.
# It must never report a link the world does not offer (the socket shim relies on it).
import _sim
from micropython import const

STA_IF = const(0)
AP_IF = const(1)
STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)
STAT_BEACON_TIMEOUT = const(200)
STAT_NO_AP_FOUND = const(201)
STAT_WRONG_PASSWORD = const(202)
STAT_ASSOC_FAIL = const(203)
STAT_CONNECT_FAIL = const(203)
STAT_HANDSHAKE_TIMEOUT = const(204)
AUTH_OPEN = const(0)
AUTH_WPA2_PSK = const(3)

_CONNECT_MS = _sim.cfg.get("wifi_connect_ms", 1200)  # association + DHCP, bulb time
_SCAN_MS = _sim.cfg.get("wifi_scan_ms", 1500)
_AP_IP = "192.168.4.1"
_world = [None, -1, _sim.cfg.get("wifi") or []]  # (mtime, size), control generation, networks


def _nets():
    """The networks in range now: world.json if present, else sim.json "wifi"."""
    import os

    try:
        st = os.stat(_sim.state_dir + "/world.json")
        key = (st[8], st[6])
    except OSError:
        key = None
    if key != _world[0] or _sim.world_gen != _world[1]:
        _world[0], _world[1] = key, _sim.world_gen
        if key is not None:
            import json

            try:
                with open(_sim.state_dir + "/world.json") as f:
                    _world[2] = json.load(f).get("wifi", [])
            except (OSError, ValueError):
                pass  # a half-written file: keep the last world
    return _world[2]


def _find(ssid):
    for n in _nets():
        if n.get("ssid") == ssid and n.get("up", True):
            return n
    return None


def _mac(i):
    import binascii

    m = bytearray(binascii.unhexlify(_sim.cfg.get("unique_id", "a4cf12000001")))
    m[-1] = (m[-1] + i) & 0xFF
    return bytes(m)


class _If:
    def __init__(self, i):
        self.i = i
        self.active = False
        self.want = None  # (ssid, key) asked by connect()
        self.since = 0  # bulb ms when the current attempt started
        self.status = STAT_IDLE
        self.ip = None  # static ifconfig, if set
        self.conf = {"essid": "", "password": "", "channel": 1, "hostname": "mimamori",
                     "reconnects": -1, "txpower": 20, "pm": 1, "authmode": 0,
                     "max_clients": 4}


_ifs = (_If(STA_IF), _If(AP_IF))


def _radio(i, state, **kw):
    kw["if"] = "sta" if i == STA_IF else "ap"
    _sim.trace("radio", state=state, **kw)


def _update():
    """Advance the STA's state machine to now: connecting -> connected/failed, lost, back."""
    s = _ifs[STA_IF]
    if not s.active or s.want is None:
        return s
    n = _find(s.want[0])
    now = _sim.now_ms()
    if s.status == STAT_GOT_IP:
        if n is None or n.get("password", "") != s.want[1]:
            s.status = STAT_BEACON_TIMEOUT
            s.since = now
            _radio(STA_IF, "lost")
        return s
    if s.status != STAT_CONNECTING:
        # lost or not found: the ESP32 keeps retrying; a wrong password stops it
        if n is None or s.status == STAT_WRONG_PASSWORD:
            return s
        s.status = STAT_CONNECTING
        s.since = now
        _radio(STA_IF, "connecting", ssid=s.want[0])
    if now - s.since < _CONNECT_MS:
        return s
    if n is None:
        s.status = STAT_NO_AP_FOUND
    elif n.get("password", "") != s.want[1]:
        s.status = STAT_WRONG_PASSWORD
    else:
        s.status = STAT_GOT_IP
        _radio(STA_IF, "connected", ssid=s.want[0], rssi=n.get("rssi", -60))
        return s
    _radio(STA_IF, "failed", status=s.status)
    return s


def connected():
    """True when the STA has a link now (the socket shim asks before every connection)."""
    return _update().status == STAT_GOT_IP


def ap_active():
    return _ifs[AP_IF].active


class WLAN:
    IF_STA = const(0)
    IF_AP = const(1)
    PM_NONE = const(0)
    PM_PERFORMANCE = const(1)
    PM_POWERSAVE = const(2)

    def __init__(self, interface_id=STA_IF):
        self._f = _ifs[interface_id]

    def active(self, is_active=None):
        f = self._f
        if is_active is None:
            return f.active
        is_active = bool(is_active)
        if is_active != f.active:
            f.active = is_active
            _radio(f.i, "up" if is_active else "down")
            if not is_active:
                f.want = None
                f.status = STAT_IDLE

    def _sta(self):
        if self._f.i != STA_IF:
            raise OSError("AP doesn't support this")
        if not self._f.active:
            raise OSError("STA must be active")

    def connect(self, ssid=None, key=None, *, bssid=None):
        self._sta()
        f = self._f
        if ssid is None:
            ssid, key = f.conf["essid"], f.conf["password"]
        f.want = (ssid, key or "")
        f.status = STAT_CONNECTING
        f.since = _sim.now_ms()
        _radio(STA_IF, "connecting", ssid=ssid)

    def disconnect(self):
        f = self._f
        if f.want is not None:
            f.want = None
            f.status = STAT_IDLE
            _radio(f.i, "disconnected")

    def isconnected(self):
        if self._f.i == AP_IF:
            return False  # no station ever joins the simulated access point
        return connected()

    def status(self, param=None):
        f = self._f
        if param is None:
            return _update().status if f.i == STA_IF else STAT_IDLE
        if param == "rssi":
            if f.i != STA_IF or not connected():
                raise OSError("STA must be connected")
            return _find(f.want[0]).get("rssi", -60)
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    def scan(self):
        self._sta()
        _sim.wait(_SCAN_MS)  # the ESP32 blocks while it scans every channel
        out = []
        for k, n in enumerate(_nets()):
            if n.get("up", True):
                sec = AUTH_WPA2_PSK if n.get("password") else AUTH_OPEN
                bssid = bytes((0x02, 0, 0, 0, 0, k + 1))
                out.append((n["ssid"].encode(), bssid, n.get("channel", 6), n.get("rssi", -60),
                            sec, False))
        _sim.trace("radio", state="scan", found=len(out), **{"if": "sta"})
        return out

    def _addr(self):
        f = self._f
        if f.ip is not None:
            return f.ip
        if f.i == AP_IF:
            return (_AP_IP, "255.255.255.0", _AP_IP, _AP_IP) if f.active else ("0.0.0.0",) * 4
        if connected():
            return (f"192.168.1.{20 + _mac(0)[-1] % 200}", "255.255.255.0", "192.168.1.1",
                    "192.168.1.1")
        return ("0.0.0.0",) * 4

    def ifconfig(self, cfg=None):
        if cfg is None:
            return self._addr()
        self._f.ip = tuple(cfg)

    def ipconfig(self, *args, **kw):
        if args:
            a = self._addr()
            if args[0] == "addr4":
                return (a[0], a[1])
            if args[0] == "gw4":
                return a[2]
            if args[0] == "dhcp4":
                return self._f.ip is None
            raise ValueError("unexpected key")
        if "addr4" in kw:
            a = kw["addr4"]
            ip, mask = a if isinstance(a, tuple) else (a, "255.255.255.0")
            self._f.ip = (ip, mask, kw.get("gw4", ip), ip)

    def config(self, *args, **kw):
        f = self._f
        if args:
            p = args[0]
            if p == "mac":
                return _mac(f.i)
            if p == "rssi":
                return self.status("rssi")
            if p in ("ssid", "essid"):
                if f.i == STA_IF and f.want is not None:
                    return f.want[0]
                return f.conf["essid"]
            if p == "security":
                return f.conf["authmode"]
            if p == "dhcp_hostname":
                p = "hostname"
            if p in f.conf:
                return f.conf[p]
            raise ValueError("unknown config param")
        for k, v in kw.items():
            if k == "ssid":
                k = "essid"
            if k in ("security",):
                k = "authmode"
            if k == "dhcp_hostname":
                k = "hostname"
            if k not in f.conf and k != "mac":
                raise ValueError("unknown config param")
            f.conf[k] = v
        if f.i == AP_IF and ("essid" in kw or "ssid" in kw):
            _radio(f.i, "config", ssid=f.conf["essid"])


def hostname(name=None):
    if name is None:
        return _ifs[STA_IF].conf["hostname"]
    _ifs[STA_IF].conf["hostname"] = name


def country(code=None):
    return "JP" if code is None else None


def ipconfig(*args, **kw):
    if args and args[0] == "dns":
        return "192.168.1.1"
    if args and args[0] == "prefer":
        return 4
    return None
