# SPDX-License-Identifier: MIT
# clock.py: the bulb's wall clock, set before any TLS. The ESP32 has no battery clock: its RTC
# reads 2000-01-01 after every power-on, and mbedTLS checks the server certificate's dates
# against it (CONFIG_MBEDTLS_HAVE_TIME_DATE), so an unset clock fails every HTTPS connection
# ("The certificate validity starts in the future"). Before TLS the RTC is put at the newest
# time the bulb knows: the last server or network time it kept (statefiles.CLOCK), or the time
# its firmware was built (_BUILT, rewritten by tools/image.py). When that is still behind the
# certificate (renewed while the bulb was off), floor() moves it to the server's HTTP Date.
# It must never move the clock backwards but to a verified server or network time, and the
# clock serves certificate dates only: records carry uptime, and anchors come from the uplink.
import time

import statefiles
from micropython import const

_BUILT = const(1796083200)  # Unix seconds, 2026-12-01: the source's floor; images carry newer
_EPOCH = const(946684800)  # 2000-01-01 in Unix seconds: the ESP32's time() epoch
_KEEP_S = const(21600)  # keep a learned time when it is this much newer than the kept one
_kept = None  # Unix seconds in the file (read once)
_MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec"


def now():
    """The RTC in Unix seconds."""
    return time.time() + _EPOCH


def _set(unix):
    import machine

    y, mo, d, h, mi, s, wd = time.gmtime(unix - _EPOCH)[:7]
    machine.RTC().datetime((y, mo, d, wd, h, mi, s, 0))


def kept():
    global _kept
    if _kept is None:
        try:
            with open(statefiles.CLOCK) as f:
                _kept = int(f.read())
        except (OSError, ValueError):
            _kept = 0
    return _kept


def floor(unix):
    """Move the clock forward to unix (never back). True when it moved."""
    if unix > now():
        _set(unix)
        return True
    return False


def restore():
    """Before TLS: the clock at least at the newest time the bulb knows."""
    floor(max(_BUILT, kept()))


def learn(unix):
    """A verified wall time (the server's answer over checked TLS, the network's clock): set
    the clock to it and keep it for the next power-on (a write every _KEEP_S at most)."""
    global _kept
    _set(unix)
    if unix - kept() >= _KEEP_S:
        try:
            with open(statefiles.CLOCK, "w") as f:
                f.write(str(unix))
            _kept = unix
        except OSError as e:
            print("clock: cannot keep the time:", e)


def http_date(line):
    """Unix seconds of an HTTP Date header's value (b"Fri, 04 Dec 2026 05:00:00 GMT"), or 0."""
    try:
        p = line.split()
        h, mi, s = p[4].split(b":")
        mo = _MONTHS.index(p[2].decode()) // 3 + 1
        t = (int(p[3]), mo, int(p[1]), int(h), int(mi), int(s), 0, 0)
        return time.mktime(t) + _EPOCH
    except (IndexError, ValueError):
        return 0
