# SPDX-License-Identifier: MIT
# machine shim: the ESP32 port's Pin, PWM, UART, WDT, RTC and reset functions, over _sim
# (docs/simulation.md). Every output the hardware would show is traced; inputs and interrupts
# come from the host. It must never pretend a reset or power cut was softer than on a bulb.
import _sim
from micropython import const

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

_LAMP = _sim.cfg.get("lamp_pin")
_freq = 160000000


def _pin_id(p):
    return p._id if isinstance(p, Pin) else p


class Pin:
    IN = const(1)
    OUT = const(3)
    OPEN_DRAIN = const(7)
    PULL_DOWN = const(1)
    PULL_UP = const(2)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        self._id = id
        self._mode = 1
        self._pull = -1
        self._out = 0
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def value(self, x=None):
        if x is None:
            if self._mode == Pin.OUT:
                return self._out
            default = 1 if self._pull == Pin.PULL_UP else 0
            return _sim.pins.get(self._id, default)
        self._out = 1 if x else 0
        if self._mode != Pin.IN:
            _sim.trace("pin", pin=self._id, value=self._out)
            if self._id == _LAMP:
                _sim.trace("lamp", pin=self._id, duty=65535 * self._out, freq=0)

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def toggle(self):
        self.value(1 - self._out)

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        _sim.irqs[self._id] = (trigger, handler, self)
        return self

    def __repr__(self):
        return f"Pin({self._id})"


def ledc_bits(freq):
    """The LEDC duty resolution the ESP32 port configures for `freq` (machine_pwm.c set_freq,
    find_suitable_duty_resolution; ESP-IDF ledc_find_suitable_duty_resolution): the timer's
    source clock (APB 80 MHz, the 1 MHz REF_TICK below EMPIRIC_FREQ = 10 Hz) divided by the
    frequency, rounded, its log2 rounded down, at most 16 (the duty_u16 interface)."""
    src = 1000000 if freq < 10 else 80000000
    div = (src + freq // 2) // freq
    bits = 0
    while div > 1:
        div >>= 1
        bits += 1
    return min(bits, 16)


def _raw(duty_u16, bits):
    """What apply_duty gives the channel: check_duty_u16 turns 65535 into 65536 (fully on)."""
    return (65536 if duty_u16 >= 65535 else duty_u16) >> (16 - bits)


class PWM:
    # The ESP32 port's PWM (ports/esp32/machine_pwm.c): duty_u16 is kept as written, but the
    # channel gets `duty_u16 >> (16 - resolution)` (apply_duty), and duty_u16() reads the raw
    # duty back shifted up (get_duty_u16). The trace has both: `duty` written, `raw` applied.
    def __init__(self, dest, *, freq=5000, duty=None, duty_u16=None, duty_ns=None, invert=False):
        self._pin = _pin_id(dest)
        self._freq = freq
        self._duty = 32768  # the ESP32 port's default when no duty is given: 50 %
        if duty_u16 is not None:
            self._duty = duty_u16
        elif duty is not None:
            self._duty = duty * 65535 // 1023
        elif duty_ns is not None:
            self._duty = min(65535, duty_ns * freq * 65535 // 1000000000)
        self._write()

    def _write(self):
        ev = "lamp" if self._pin == _LAMP else "pwm"
        bits = ledc_bits(self._freq)
        raw = _raw(self._duty, bits)
        _sim.trace(ev, pin=self._pin, duty=self._duty, freq=self._freq, raw=raw, bits=bits)

    def init(self, *, freq=None, duty_u16=None, duty_ns=None, invert=False):
        if freq is not None:
            self._freq = freq
        if duty_u16 is not None:
            self._duty = duty_u16
        self._write()

    def freq(self, value=None):
        if value is None:
            return self._freq
        if not 1 <= value <= 40000000:
            raise ValueError("frequency must be from 1Hz to 40MHz")
        self._freq = value
        self._write()

    def duty_u16(self, value=None):
        if value is None:  # get_duty_u16: the channel's raw duty, shifted back up
            bits = ledc_bits(self._freq)
            return min(65535, _raw(self._duty, bits) << (16 - bits))
        value = int(value)
        if not 0 <= value <= 65535:  # check_duty_u16
            raise ValueError("duty_u16 must be from 0 to 65536")
        self._duty = value
        self._write()

    def duty(self, value=None):
        if value is None:
            return self.duty_u16() >> 6
        if not 0 <= value <= 1023:  # check_duty_u10: 1023 is fully on
            raise ValueError("duty must be from 0 to 1023")
        self.duty_u16(65535 if value == 1023 else value << 6)

    def duty_ns(self, value=None):
        if value is None:
            return self.duty_u16() * 1000000000 // 65535 // self._freq
        self.duty_u16(value * self._freq * 65535 // 1000000000)

    def deinit(self):
        # ledc_stop() with idle level 0: the pin is driven low
        self._duty = 0
        self._write()


class UART:
    # a UART wired to a unix socket (sim.json "uart": {"1": path}): the modem emulator's end
    INV_TX = const(32)
    INV_RX = const(4)
    RTS = const(1)
    CTS = const(2)

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, **kw):
        self._id = id
        self._s = None
        self._rx = b""
        self._timeout = 0
        self.init(baudrate, bits, parity, stop, **kw)
        path = (_sim.cfg.get("uart") or {}).get(str(id))
        if path:
            _p = _sim.sys.path[:]
            _sim.sys.path[:] = []  # the built-in socket: the socket shim is for the radio
            try:
                import socket
            finally:
                _sim.sys.path[:] = _p
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                import struct  # the unix port takes a raw sockaddr_un for AF_UNIX

                s.connect(struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0")
                s.setblocking(False)
                self._s = s
                _sim.trace("radio", state="up", rssi=0, **{"if": "uart"})
            except OSError:
                s.close()

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, *, timeout=None, **kw):
        self._baud = baudrate
        if timeout is not None:
            self._timeout = timeout

    def deinit(self):
        if self._s is not None:
            self._s.close()
            self._s = None

    def _pull(self, wait_ms, more=False):
        """Move what the peer sent into the rx buffer, waiting up to wait_ms bulb ms for it
        when the buffer is empty (or when `more` is needed)."""
        if self._s is None:
            if wait_ms > 0:
                _sim.wait(wait_ms)
            return
        if wait_ms > 0 and (more or not self._rx):
            p = _sim._rs.poll()
            p.register(self._s, 1)
            _sim.wait(wait_ms, p)
        try:
            d = self._s.read(256)
        except OSError:
            d = None
        if d == b"":  # the peer hung up: from now on nothing is attached
            self.deinit()
            _sim.trace("radio", state="down", **{"if": "uart"})
            return
        if d:
            _sim.io_touch()
            _sim.trace("uart", op="rx", bytes=len(d))
            self._rx += d

    def _pull_until(self, enough):
        """Pull more, each time waiting up to the timeout, until enough() or nothing comes."""
        while not enough() and self._timeout > 0:
            had = len(self._rx)
            self._pull(self._timeout, True)
            if len(self._rx) == had:
                break

    def any(self):
        self._pull(0)
        return len(self._rx)

    def read(self, n=-1):
        self._pull(self._timeout)
        if n is not None and n >= 0:
            self._pull_until(lambda: len(self._rx) >= n)
        if not self._rx:
            return None
        if n is None or n < 0:
            n = len(self._rx)
        d, self._rx = self._rx[:n], self._rx[n:]
        return d

    def readinto(self, buf, n=-1):
        d = self.read(len(buf) if n < 0 else min(n, len(buf)))
        if not d:
            return None
        buf[: len(d)] = d
        return len(d)

    def readline(self):
        self._pull(0)
        self._pull_until(lambda: b"\n" in self._rx)
        if not self._rx:
            return None
        i = self._rx.find(b"\n")
        i = len(self._rx) if i < 0 else i + 1
        d, self._rx = self._rx[:i], self._rx[i:]
        return d

    def write(self, buf):
        if self._s is not None:
            _sim.io_touch()
            _sim.trace("uart", op="tx", bytes=len(buf))
            try:
                self._s.write(buf)
            except OSError:
                pass
        return len(buf)

    def flush(self):
        pass

    def txdone(self):
        return True

    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL: data already buffered counts as readable
            return (1 if self._rx and arg & 1 else 0) | (arg & 4)
        return 0


class WDT:
    def __init__(self, id=0, timeout=5000):
        _sim.wdt_start(timeout)

    def feed(self):
        _sim.wdt_feed()


class RTC:
    def __init__(self, id=0, datetime=None):
        if datetime is not None:
            self.datetime(datetime)

    def init(self, datetime):
        self.datetime(datetime)

    def datetime(self, dt=None):
        import time

        if dt is None:
            us = _sim.now_us()
            y, mo, d, h, mi, s, wd, _ = time.gmtime(_sim.rtc_base + us // 1000000)
            return (y, mo, d, wd, h, mi, s, us % 1000000)
        secs = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        _sim.rtc_base = secs - _sim.now_us() // 1000000
        _sim.trace("rtc", secs=secs)

    def memory(self, data=None):
        path = _sim.state_dir + "/rtcmem.bin"
        if data is None:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError:
                return b""
        if len(data) > 2048:
            raise ValueError("buffer too long")
        with open(path, "wb") as f:
            f.write(data)


def unique_id():
    import binascii

    return binascii.unhexlify(_sim.cfg.get("unique_id", "a4cf12000001"))


def reset():
    _sim.reset(HARD_RESET)


def soft_reset():
    _sim.reset(SOFT_RESET)


def deepsleep(time_ms=0):
    _sim.reset(DEEPSLEEP_RESET)


def lightsleep(time_ms=-1):
    _sim.wait(time_ms)


def reset_cause():
    return _sim.cause


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    _freq = hz


def idle():
    _sim.wait(1)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass
