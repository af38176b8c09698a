# SPDX-License-Identifier: MIT
# Shared core of the hardware shims (runs inside MicroPython): sim.json, the one bulb clock,
# the trace, waits, the host control channel, pins, the watchdog and power/reset.
# See docs/simulation.md. It must never keep big buffers (it shares the 96wK heap with the
# firmware) and never write a trace line in more than one write() call.
import json
import sys

_p = sys.path[:]
sys.path[:] = []
try:
    import os  # the built-in os (the os shim imports this module)
    import select as _rs  # the built-in poll
    import time as _rt  # the built-in clock
finally:
    sys.path[:] = _p
del _p

_PERIOD = 1 << 30  # ticks period, as on the ESP32 port
_POLLIN = 1

with open(os.getenv("MIMAMORI_SIM")) as _f:
    cfg = json.load(_f)
del _f
state_dir = cfg.get("state") or os.getenv("MIMAMORI_SIM").rsplit("/", 1)[0]
cause = int(os.getenv("MIMAMORI_CAUSE") or 1)  # machine.reset_cause() of this boot
boot_n = int(os.getenv("MIMAMORI_BOOT") or 1)  # power-on count
t0_ms = int(os.getenv("MIMAMORI_T0") or 0)  # bulb ms of this power-on before this boot (resets)
_tcfg = cfg.get("time") or {}
mode = _tcfg.get("mode", "virtual")
factor = _tcfg.get("factor", 1) if mode == "scaled" else 1
stop_at_ms = cfg.get("stop_at_ms")  # since the power-on, across resets
stop_us = None if stop_at_ms is None else (stop_at_ms - t0_ms) * 1000  # on this boot's clock
io_wait_ms = cfg.get("io_wait_ms", 500)  # virtual mode: real time a peer gets to answer
idle_io_ms = cfg.get("idle_io_ms", 10)  # ... when the bulb has not talked to it lately
_io_last = -(1 << 40)  # real us of the last byte sent or received (socket, UART)
_t0 = _rt.time_ns()  # restarted once this module is loaded (scaled time: every us counts)
_v_us = 0  # virtual clock, bulb us since power-on


def _real_us():
    return (_rt.time_ns() - _t0) // 1000


def now_us():
    """Bulb microseconds since power-on (not wrapped)."""
    if mode == "virtual":
        return _v_us
    if mode == "scaled":
        return int(_real_us() * factor)
    return _real_us()


def now_ms():
    return now_us() // 1000


def ticks_ms():
    return now_us() // 1000 & (_PERIOD - 1)


# --- heap accounting (sim.json "heap_probe": bench/figures_heap32.py) -------------------------
# What the shims hold is not the firmware's: on the ESP32 they are C code in flash, and mbedTLS
# allocates its sessions from the IDF heap, not MicroPython's. With the probe on, _boot.py notes
# the live heap once every shim is imported (shim_base), and the ssl shim counts what the TLS
# engine keeps (tls_bytes), so firmware bytes = gc.mem_alloc() - shim_base - tls_bytes.
heap_probe = bool(cfg.get("heap_probe"))
shim_base = 0
tls_bytes = 0


def held(fn, *args, **kw):
    """(fn(*args, **kw), live bytes it left allocated); the count only with the probe on."""
    if not heap_probe:
        return fn(*args, **kw), 0
    import gc

    gc.collect()
    a = gc.mem_alloc()
    r = fn(*args, **kw)
    gc.collect()
    return r, gc.mem_alloc() - a


# --- trace -----------------------------------------------------------------------------------
_tf = open(state_dir + "/trace.jsonl", "a")  # noqa: SIM115 - open for the whole run


def trace(ev, **fields):
    """Append one event to <state>/trace.jsonl, stamped with the bulb clock (ms)."""
    if "t" not in fields:
        fields["t"] = t0_ms + now_ms()
    fields["ev"] = ev
    _tf.write(json.dumps(fields) + "\n")  # one write(): a kill never tears more than one line


# --- power and reset -------------------------------------------------------------------------
def _pid():
    return int(open("/proc/self/stat").read().split(None, 1)[0])


def power_cut():
    """Hard kill of this process: nothing flushed, no finally runs (SIGKILL, as the runner's)."""
    os.system(f"kill -9 {_pid()}")
    while True:  # never reached: system() blocks until the kill lands
        pass


def reset(why):
    """Reboot with reset_cause() == why (2 HARD_RESET, 3 WDT_RESET), keeping RTC memory."""
    trace("reset", cause=why)
    if why == 1:  # a brown-out: the RTC domain lost power as well
        for name in ("/rtc_s", "/rtcmem.bin"):
            try:
                os.remove(state_dir + name)
            except OSError:
                pass
    else:
        with open(state_dir + "/rtc_s", "w") as f:
            f.write(str(rtc_base + now_ms() // 1000))
    with open(state_dir + "/reset", "w") as f:
        f.write(f"{why} {t0_ms + now_ms()}")
    power_cut()


# RTC wall clock: seconds since 2000-01-01 at bulb time 0 (kept over resets, lost on power cut)
rtc_base = 0
if cause != 1:
    try:
        with open(state_dir + "/rtc_s") as _f:
            rtc_base = int(_f.read())
        del _f
    except (OSError, ValueError):
        pass

# --- pins (inputs driven by the host) --------------------------------------------------------
pins = {}  # pin id -> level of an input, as set by the host
for _k, _v in (cfg.get("pins") or {}).items():
    pins[int(_k)] = _v
irqs = {}  # pin id -> (trigger mask, handler, Pin)


def set_pin(pin, level):
    old = pins.get(pin, 0)
    pins[pin] = level
    h = irqs.get(pin)
    if h is None or old == level:
        return False
    want = 1 if level else 2  # Pin.IRQ_RISING = 1, Pin.IRQ_FALLING = 2 (ESP32 values)
    if h[0] & want and h[1] is not None:
        import micropython

        try:
            micropython.schedule(h[1], h[2])
        except RuntimeError:  # the schedule queue is full: the ESP32 drops the edge too
            return False
        return True
    return False


world_gen = 0  # bumped by a control line {"world": 1}

# events scheduled at a bulb time: from sim.json "events" and control lines with "at_ms"
# (a panic or brown-out already happened when a boot after it starts at or past its time)
_events = sorted((e for e in cfg.get("events") or []
                  if e["at_ms"] > t0_ms or not ("panic" in e or "brownout" in e)),
                 key=lambda e: e["at_ms"])


def _apply(msg):
    """One control message: {"pin": P, "value": V} or {"at_ms": T, ...} to do it later."""
    global world_gen
    at = msg.get("at_ms")
    if at is not None and at > t0_ms + now_ms():
        _events.append(msg)
        _events.sort(key=lambda e: e["at_ms"])
        return False
    if "world" in msg:  # the runner rewrote world.json: the network shim re-reads it
        world_gen += 1
    if "panic" in msg:  # a C-level crash: the ESP32 reboots with ESP_RST_PANIC (HARD_RESET)
        reset(2)
    if "brownout" in msg:  # the supply dipped: ESP_RST_BROWNOUT reads as PWRON_RESET
        reset(1)
    if "pin" in msg:
        return set_pin(int(msg["pin"]), msg["value"])
    return False


def _due():
    fired = False
    n = t0_ms + now_ms()
    while _events and _events[0]["at_ms"] <= n:
        fired = _apply(_events.pop(0)) or fired
    return fired


# the control channel: JSON lines from the runner on stdin
_ctl = _rs.poll()
_ctl_open = True
try:
    _ctl.register(sys.stdin, _POLLIN)
except Exception:  # noqa: BLE001 - stdin cannot be polled: a run without a control channel
    _ctl_open = False


def _read_control():
    global _ctl_open
    fired = False
    while _ctl_open and _ctl.poll(0):
        line = sys.stdin.readline()
        if not line:
            _ctl_open = False
            _ctl.unregister(sys.stdin)
            break
        try:
            fired = _apply(json.loads(line)) or fired
        except ValueError:
            pass
    return fired


# --- watchdog --------------------------------------------------------------------------------
wdt_timeout = 0  # ms; 0: no watchdog started
wdt_fed_us = 0
_wdt_fed_real = 0
_beat_real = -1000000
_wdt_min_real_us = cfg.get("wdt_min_real_ms", 1000 if mode == "scaled" else 0) * 1000


def wdt_start(timeout):
    global wdt_timeout
    wdt_timeout = timeout
    wdt_feed()
    _beat(now=True)  # <state>/alive has the timeout before the trace says it started
    trace("wdt", op="start", timeout=timeout)


def wdt_feed():
    global wdt_fed_us, _wdt_fed_real
    wdt_fed_us = now_us()
    _wdt_fed_real = _real_us()
    _beat(True)


def _beat(force=False, now=False):
    """Tell the runner the bulb is alive (<state>/alive: bulb ms, watchdog timeout ms). The
    file is replaced by a rename, so a reader never sees it empty or half written."""
    global _beat_real
    r = _real_us()
    if not now and (force and r - _beat_real < 50000 or not force and r - _beat_real < 100000):
        return
    _beat_real = r
    with open(state_dir + "/alive.tmp", "w") as f:
        f.write(f"{t0_ms + now_ms()} {wdt_timeout}\n")
    os.rename(state_dir + "/alive.tmp", state_dir + "/alive")


def _wdt_check():
    starved = wdt_timeout and now_us() - wdt_fed_us >= wdt_timeout * 1000
    if starved and _real_us() - _wdt_fed_real >= _wdt_min_real_us:
        reset(3)


# --- waiting ---------------------------------------------------------------------------------
def io_touch():
    """A socket or the UART just moved bytes: a peer may be about to answer."""
    global _io_last
    _io_last = _real_us()


def wait(ms, real=None, soft=None):
    """Let `ms` of bulb time pass (ms < 0: forever), or less if something becomes ready.

    real: a built-in poll object over real fds (sockets, UART) or None; soft: a function
    returning a non-empty list when a shim-side object is ready. Returns what was ready
    ([] on timeout or when a host event fired an interrupt)."""
    global _v_us
    end = None if ms < 0 else now_us() + int(ms * 1000)
    while True:
        if _read_control() or _due():
            return []
        n = now_us()
        if stop_at_ms is not None and n >= stop_us:
            power_cut()
        _wdt_check()
        _beat()
        if soft is not None:
            got = soft()
            if got:
                return got
        if end is not None and n >= end:
            return []
        lim = end
        if stop_at_ms is not None and (lim is None or stop_us < lim):
            lim = stop_us
        if _events:
            e = (_events[0]["at_ms"] - t0_ms) * 1000
            if lim is None or e < lim:
                lim = max(n, e)
        if wdt_timeout:
            w = wdt_fed_us + wdt_timeout * 1000
            if lim is None or w < lim:
                lim = max(n, w)
        # how long to block in real time (us), in slices so control lines and beats get through
        if mode == "virtual":
            if real is None:
                rt = 0 if lim is not None else 100000
            else:
                talking = _real_us() - _io_last < io_wait_ms * 1000
                rt = (io_wait_ms if talking else idle_io_ms) * 1000
                rt = rt if lim is None else min(rt, lim - n)
        else:
            rt = 100000 if lim is None else min(100000, int((lim - n) / factor) + 1)
        r0 = _real_us()
        got = _block(real, rt) if rt > 0 or real is not None else None
        if mode == "virtual":
            spent = _real_us() - r0
            if got:
                _v_us += spent
                return got
            if lim is not None and (real is None or spent >= rt - 2000):
                _v_us = max(_v_us + spent, lim)
            else:
                _v_us += spent
        elif got:
            return got


def live(real, got):
    """Poll results without the control channel and without closed objects (POLLNVAL),
    which are dropped from the poller: a closed fd must not make every wait return at once."""
    out = []
    for g in got:
        if g[1] & 32:
            real.unregister(g[0])
        elif g[0] is sys.stdin:
            if not _ctl_open:
                real.unregister(sys.stdin)  # the runner closed the control channel
        else:
            out.append(g)
    return out


def _block(real, us):
    """Block up to `us` real microseconds on the real fds and the control channel."""
    ms = us // 1000
    if real is not None:
        got = real.poll(ms)
        if got:
            got = live(real, got)
        if got or ms:
            return got
    elif _ctl_open and ms:
        _ctl.poll(ms)
        return None
    elif ms:
        _rt.sleep_ms(ms)
        return None
    if us > 0:
        _rt.sleep_us(us)
    return None


_t0 = _rt.time_ns()
