# SPDX-License-Identifier: MIT
# select shim: poll() whose waits follow the bulb clock (docs/simulation.md), so asyncio timers,
# time.ticks_ms and socket waits agree. Real fds (sockets, the UART's unix socket) are polled
# for real; shim objects with only an ioctl (asyncio.ThreadSafeFlag) are asked via ioctl(3).
# It must never sleep in real time for a wait that virtual time can skip.
import sys

import _sim

POLLIN = 1
POLLOUT = 4
POLLERR = 8
POLLHUP = 16
_MP_STREAM_POLL = 3


def _real(obj):
    """The built-in object to poll for real, or None for an ioctl-only object."""
    r = getattr(obj, "_s", None)
    if r is not None:
        return r
    if isinstance(obj, int) or hasattr(obj, "fileno"):
        return obj
    return None


class _Poll:
    def __init__(self):
        self._objs = {}  # registered object -> event mask
        self._back = {}  # id(built-in object) -> registered object
        self._rp = None  # built-in poll over the real fds (and the control channel)
        self._nreal = 0

    def register(self, obj, mask=POLLIN | POLLOUT):
        if obj in self._objs:
            return self.modify(obj, mask)
        self._objs[obj] = mask
        r = _real(obj)
        if r is not None:
            if self._rp is None:
                self._rp = _sim._rs.poll()
                if _sim._ctl_open:
                    self._rp.register(sys.stdin, POLLIN)
            self._rp.register(r, mask)
            self._back[id(r)] = obj
            self._nreal += 1

    def modify(self, obj, mask):
        if obj not in self._objs:
            raise OSError(2)  # ENOENT, as the built-in
        self._objs[obj] = mask
        r = _real(obj)
        if r is not None:
            self._rp.modify(r, mask)

    def unregister(self, obj):
        if self._objs.pop(obj, None) is None:
            return
        r = _real(obj)
        if r is not None:
            self._rp.unregister(r)
            del self._back[id(r)]
            self._nreal -= 1

    def _soft(self):
        got = []
        for obj, mask in self._objs.items():
            if _real(obj) is None:
                ev = obj.ioctl(_MP_STREAM_POLL, mask)
            elif hasattr(obj, "ioctl"):  # a shim over a real fd with data already buffered
                ev = obj.ioctl(_MP_STREAM_POLL, mask & POLLIN)
            else:
                continue
            if ev:
                got.append((obj, ev))
        return got

    def _now(self):
        got = self._soft()
        if self._nreal:
            for r, ev in _sim.live(self._rp, self._rp.poll(0)):
                o = self._back.get(id(r))
                if o is not None:
                    got.append((o, ev))
        return got

    def poll(self, timeout=-1):
        got = self._now()
        if got or timeout == 0:
            return got
        while True:  # a host event may end a wait early; an endless poll still never returns []
            got = _sim.wait(timeout, self._rp if self._nreal else None, self._soft)
            if got or timeout >= 0:
                break
        out = []
        for r, ev in got:
            o = self._back.get(id(r), r)
            out.append((o, ev))
        return out

    def ipoll(self, timeout=-1, flags=0):
        return self.poll(timeout)


def poll():
    return _Poll()


def select(rlist, wlist, xlist, timeout=None):
    p = _Poll()
    for o in rlist:
        p.register(o, POLLIN)
    for o in wlist:
        p.register(o, (p._objs.get(o, 0)) | POLLOUT)
    got = p.poll(-1 if timeout is None else int(timeout * 1000))
    r = [o for o, ev in got if ev & (POLLIN | POLLERR | POLLHUP) and o in rlist]
    w = [o for o, ev in got if ev & POLLOUT and o in wlist]
    return r, w, []
