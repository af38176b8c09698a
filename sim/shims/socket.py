# SPDX-License-Identifier: MIT
# socket shim: real sockets over the host's loopback, with the ESP32 port's address format
# (("1.2.3.4", port) tuples), connections refused while no interface is up (the network shim
# decides), waits on the bulb clock, and every byte counted in the trace ("net" events).
# Ports a bulb listens on are mapped to free host ports (sim.json "ports", traced as "listen").
# It must never let a connection through that the simulated radio could not carry.
import errno

import _sim

_p = _sim.sys.path[:]
_sim.sys.path[:] = []
try:
    import socket as _bs
finally:
    _sim.sys.path[:] = _p
del _p

AF_INET = _bs.AF_INET
AF_INET6 = _bs.AF_INET6
SOCK_STREAM = _bs.SOCK_STREAM
SOCK_DGRAM = _bs.SOCK_DGRAM
SOCK_RAW = _bs.SOCK_RAW
SOL_SOCKET = _bs.SOL_SOCKET
SO_REUSEADDR = _bs.SO_REUSEADDR
SO_BROADCAST = _bs.SO_BROADCAST
IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_NODELAY = 1
_HOSTS = _sim.cfg.get("hosts") or {}
_PORTS = _sim.cfg.get("ports") or {}
_AP_NET = "192.168.4."
# A resolver that never answers (sim.json "dns": "dead"): lwIP asks each DNS server
# DNS_MAX_RETRIES (4) times, waiting 1, 1, 2 and 3 DNS_TMR_INTERVALs (1 s) (src/core/dns.c
# dns_check_entry), 7 s a server; DHCP gives two ("dns_servers"): about 14 s, blocking.
_DNS_DEAD = _sim.cfg.get("dns") == "dead"
_DNS_SERVERS = _sim.cfg.get("dns_servers", 2)
_DNS_SERVER_MS = 7000


def _is_ip(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def _route(ip):
    """OSError unless the simulated radio can reach ip (STA link, or the AP's own net)."""
    import network

    if ip.startswith(_AP_NET) and network.ap_active():
        return
    if not network.connected():
        raise OSError(errno.ECONNABORTED)


def _host_ip(ip):
    # the AP's own addresses and the bulb's are this host's loopback
    return "127.0.0.1" if ip.startswith(_AP_NET) or ip == "0.0.0.0" else ip


def _raw(addr):
    """ESP32-style ("ip", port) -> the unix port's sockaddr bytes."""
    if isinstance(addr, tuple):
        return _bs.getaddrinfo(addr[0], addr[1])[0][-1]
    return addr


def _tuple(raw):
    a = _bs.sockaddr(raw)
    return (_bs.inet_ntop(a[0], a[1]), a[2])


def _client(addr):
    """A host peer stands for a client on a bulb network: an AP station while the AP is up."""
    import network

    return (_AP_NET + "2", addr[1]) if network.ap_active() else addr


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    ip = _HOSTS.get(host, host)
    if ip == "localhost":
        ip = "127.0.0.1"
    if not _is_ip(ip):
        import network

        if not network.connected():
            raise OSError(-202)  # lwIP: no DNS without a link
        if _DNS_DEAD:  # lwip_getaddrinfo blocks the VM (GIL released), then EAI_FAIL
            end = _sim.now_ms() + _DNS_SERVERS * _DNS_SERVER_MS
            while _sim.now_ms() < end:
                _sim.wait(end - _sim.now_ms())
            _sim.trace("net", op="dns", host=host, ok=False)
            raise OSError(-202)
        ip = _bs.inet_ntop(AF_INET, _bs.sockaddr(_bs.getaddrinfo(ip, port)[0][-1])[1])
    return [(AF_INET, type or SOCK_STREAM, proto or IPPROTO_TCP, "", (ip, port))]


def _trace(op, n=None, addr=None):
    _sim.io_touch()
    if n is None:
        _sim.trace("net", op=op, addr=addr)
    else:
        _sim.trace("net", op=op, bytes=n)


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0, _s=None, _peer=None):
        self._s = _s if _s is not None else _bs.socket(af, type)
        self._s.setblocking(False)
        self._timeout = None  # None: blocking; 0: non-blocking; else seconds
        self._peer = _peer
        self._p = None

    def _wait(self, ev):
        """Block (bulb clock) until the socket is ready for ev; ETIMEDOUT after the timeout."""
        if self._timeout == 0:
            return
        if self._p is None:
            self._p = _sim._rs.poll()
            self._p.register(self._s, ev)
        else:
            self._p.modify(self._s, ev)
        if self._p.poll(0):
            return
        ms = -1 if self._timeout is None else int(self._timeout * 1000)
        if not _sim.wait(ms, self._p):
            raise OSError(errno.ETIMEDOUT)

    def _io(self, ev, fn, *args):
        while True:
            self._wait(ev)
            try:
                return fn(*args)
            except OSError as e:
                if e.errno != errno.EAGAIN or self._timeout == 0:
                    raise

    def settimeout(self, t):
        self._timeout = t

    def setblocking(self, flag):
        self._timeout = None if flag else 0

    def setsockopt(self, level, opt, val):
        if level == SOL_SOCKET:
            self._s.setsockopt(level, opt, val)

    def fileno(self):
        return self._s.fileno()

    def connect(self, addr):
        ip, port = addr if isinstance(addr, tuple) else _tuple(addr)
        _route(ip)
        self._peer = (ip, port)
        _trace("connect", addr=f"{ip}:{port}")
        try:
            self._s.connect(_raw((_host_ip(ip), port)))
        except OSError as e:
            if e.errno != errno.EINPROGRESS:
                raise
            if self._timeout == 0:
                raise
            self._wait(4)
            if self._p.poll(0)[0][1] & 24:  # POLLERR | POLLHUP: nobody listens there
                raise OSError(errno.ECONNREFUSED)

    def bind(self, addr):
        port = addr[1] if isinstance(addr, tuple) else _tuple(addr)[1]
        self._port = port
        real = _PORTS.get(str(port), 0) if port else 0
        if real:
            self._s.bind(_raw(("127.0.0.1", real)))
        else:  # a free host port of our choosing, so that it can be traced
            import random

            for _ in range(100):
                real = random.randint(20000, 60000)
                try:
                    self._s.bind(_raw(("127.0.0.1", real)))
                    break
                except OSError as e:
                    if e.errno != errno.EADDRINUSE:
                        raise
        self._real = real
        _sim.trace("net", op="bind", port=port, real=real)

    def listen(self, backlog=1):
        self._s.listen(backlog)
        _sim.trace("net", op="listen", port=getattr(self, "_port", 0), real=self._real)

    def accept(self):
        s, raw = self._io(1, self._s.accept)
        peer = _client(_tuple(raw))
        _trace("accept", addr=f"{peer[0]}:{peer[1]}")
        return socket(_s=s, _peer=peer), peer

    def send(self, buf):
        _route(self._peer[0] if self._peer else "0")
        n = self._io(4, self._s.send, buf)
        if n:
            _trace("send", n)
        return n

    def sendall(self, buf):
        mv = memoryview(buf)
        while mv:
            n = self.send(mv)
            mv = mv[n:]

    def write(self, buf):
        if self._timeout == 0:
            _route(self._peer[0] if self._peer else "0")
            try:
                n = self._s.write(buf)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return None
                raise
            if n:
                _trace("send", n)
            return n
        self.sendall(buf)
        return len(buf)

    def recv(self, n):
        d = self._io(1, self._s.recv, n)
        if d:
            _trace("recv", len(d))
        return d

    def read(self, n=-1):
        if self._timeout == 0:
            d = self._s.read(n) if n >= 0 else self._s.read()
        elif n < 0:
            parts = []
            while True:
                d = self.recv(1024)
                if not d:
                    break
                parts.append(d)
            return b"".join(parts)
        else:
            d = self._io(1, self._s.read, n)
        if d:
            _trace("recv", len(d))
        return d

    def readinto(self, buf, n=-1):
        if n >= 0:
            buf = memoryview(buf)[:n]
        if self._timeout == 0:
            k = self._s.readinto(buf)
        else:
            k = self._io(1, self._s.readinto, buf)
        if k:
            _trace("recv", k)
        return k

    def readline(self):
        if self._timeout == 0:
            d = self._s.readline()
            if d:
                _trace("recv", len(d))
            return d
        out = b""
        while not out.endswith(b"\n"):
            c = self._io(1, self._s.read, 1)
            if not c:
                break
            out += c
        if out:
            _trace("recv", len(out))
        return out

    def recvfrom(self, n):
        d, raw = self._io(1, self._s.recvfrom, n)
        if d:
            _trace("recv", len(d))
        return d, _client(_tuple(raw))

    def sendto(self, buf, addr):
        _route(addr[0])
        n = self._s.sendto(buf, _raw((_host_ip(addr[0]), addr[1])))
        _trace("send", n)
        return n

    def makefile(self, mode="rb", buffering=0):
        return self

    def close(self):
        if self._s is not None:
            self._s.close()
            p = self._peer
            _trace("close", addr=f"{p[0]}:{p[1]}" if p else None)
            self._s = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
