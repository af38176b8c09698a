# SPDX-License-Identifier: MIT
# ssl shim: the ESP32 port's ssl (micropython-lib's ssl.py over the built-in mbedTLS module
# `tls`) for sockets of the socket shim. The built-in TLS engine does the real handshake and
# certificate check; its records travel through the socket shim, so the trace counts what goes
# over the air (TLS records, handshake included) and a link that is down refuses them.
# Non-blocking use (asyncio.open_connection(..., ssl=ctx)) works: `_s` is what the select shim
# polls, and it asks for the direction the engine waits for, as the port's SSLSocket does.
# It must never let a handshake through that the built-in engine did not verify, nor one whose
# certificates' dates the ESP32 would refuse: the stock build checks them against the bulb's
# own clock (CONFIG_MBEDTLS_HAVE_TIME_DATE, ports/esp32/main.c platform_mbedtls_time: the RTC,
# 2000-01-01 after a power-on), while the unix port's engine reads the host's. So the shim
# checks notBefore/notAfter of the server's certificate and of the CA against the bulb clock.
import errno
import io

import _sim
import tls
from tls import (  # noqa: F401 - the port's ssl exports them
    CERT_NONE,
    CERT_OPTIONAL,
    CERT_REQUIRED,
    MBEDTLS_VERSION,
    PROTOCOL_TLS_CLIENT,
    PROTOCOL_TLS_SERVER,
)

_IN = 1
_OUT = 4
_NVAL = 32
_EPOCH = 946684800  # 2000-01-01 in Unix seconds: the ESP32's RTC epoch
# mbedtls_x509_crt_verify_info() texts, as the port raises them (extmod/modtls_mbedtls.c)
_FUTURE = "\nThe certificate validity starts in the future\n"
_EXPIRED = "\nThe certificate validity has expired\n"


def _der(b, i):
    """(tag, start of content, end of content) of the DER element at i."""
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k, n = n & 0x7F, 0
        for _ in range(k):
            n = n << 8 | b[i]
            i += 1
    return tag, i, i + n


def _unix(s):
    """UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) in Unix seconds."""
    if len(s) == 13:
        y = int(s[0:2])
        s = ("20" if y < 50 else "19") + s
    y, mo, d = int(s[0:4]), int(s[4:6]), int(s[6:8])
    y -= mo <= 2  # days from the civil date (proleptic Gregorian)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + int(s[8:10]) * 3600 + int(s[10:12]) * 60 + int(s[12:14])


def validity(der):
    """(notBefore, notAfter) of an X.509 certificate in DER, Unix seconds."""
    _, i, _ = _der(der, 0)  # Certificate
    _, i, _ = _der(der, i)  # tbsCertificate
    if der[i] == 0xA0:  # [0] version
        i = _der(der, i)[2]
    for _ in range(3):  # serialNumber, signature, issuer
        i = _der(der, i)[2]
    c = _der(der, i)[1]  # validity
    _, a, ae = _der(der, c)
    _, b, be = _der(der, ae)
    return _unix(bytes(der[a:ae]).decode()), _unix(bytes(der[b:be]).decode())


def _check_dates(dates):
    """Raise as the port does when the bulb's clock is outside a certificate's validity."""
    import time

    now = time.time() + _EPOCH
    for nb, na in dates:
        if now < nb:
            raise ValueError(_FUTURE)
        if now > na:
            raise ValueError(_EXPIRED)


class _Wire(io.IOBase):
    """The stream mbedTLS reads and writes: TLS records, through the socket shim (traced as
    net send/recv, refused when the radio cannot carry them). Errors are returned as negative
    errnos (an exception must not unwind through mbedTLS) and kept in `err`."""

    def __init__(self, sock, watch=False):
        self.sock = sock
        self.want = 0  # the direction that was not ready when the engine last gave up
        self.err = 0
        # The server's certificate, read off the wire: the unix port's engine is built without
        # MBEDTLS_SSL_KEEP_PEER_CERTIFICATE (no getpeercert), but TLS 1.2 sends it in clear.
        self.peer = None
        self._rx = bytearray() if watch else None  # records not yet parsed
        self._hs = bytearray()  # handshake bytes so far

    def _watch(self, data):
        """Collect the server's handshake records until its Certificate message is whole."""
        rx = self._rx
        rx.extend(data)
        while len(rx) >= 5:
            n = rx[3] << 8 | rx[4]
            if len(rx) < 5 + n:
                return
            if rx[0] != 22:  # anything but a handshake record: no certificate coming
                self._rx = None
                return
            self._hs.extend(rx[5 : 5 + n])
            rx[:] = rx[5 + n :]
            hs = self._hs
            while len(hs) >= 4:
                m = hs[1] << 16 | hs[2] << 8 | hs[3]
                if len(hs) < 4 + m:
                    break
                if hs[0] == 11:  # Certificate: list length (3), then each length (3) + DER
                    k = hs[7] << 16 | hs[8] << 8 | hs[9]
                    self.peer = bytes(hs[10 : 10 + k])
                    self._rx = None
                    self._hs = bytearray()
                    return
                hs[:] = hs[4 + m :]

    def _fail(self, e):
        self.err = e.errno if isinstance(e.errno, int) else errno.EIO
        return -(abs(self.err) or errno.EIO)

    def readinto(self, buf):
        try:
            n = self.sock.readinto(buf)
        except OSError as e:
            return self._fail(e)
        if n is None:
            self.want = _IN
        elif n and self._rx is not None:
            self._watch(memoryview(buf)[:n])
        return n

    def write(self, buf):
        try:
            n = self.sock.write(buf)
        except OSError as e:
            return self._fail(e)
        if n is None:
            self.want = _OUT
        return n

    def ioctl(self, req, arg):
        if req == 4:  # MP_STREAM_CLOSE, from the engine's close
            self.sock.close()
            return 0
        return -errno.EINVAL  # no poll here: SSLSocket's _s answers the select shim

    def setblocking(self, flag):
        self.sock.setblocking(flag)


class _Poll(io.IOBase):
    """What the select shim polls for an SSLSocket (its `_s`): the real socket, in the direction
    the engine waits for during a handshake, and readable while decrypted bytes may be left."""

    def __init__(self, ss, real):
        self._ss = ss
        self._p = _sim._rs.poll()
        self._p.register(real, 0)

    def ioctl(self, req, arg):
        if req != 3:  # MP_STREAM_POLL only; GET_FILENO fails: polled through this ioctl
            return -errno.EINVAL
        ss = self._ss
        if ss._t is None:
            return _NVAL
        ask = arg
        need = ss._need
        if need and arg & (_IN | _OUT):
            ask = (arg & ~(_IN | _OUT)) | need
        ret = _IN if ask & _IN and ss._more else 0
        self._p.modify(ss._real, ask)
        for _, ev in self._p.poll(0):
            ret |= ev
        if need and ret & need:
            ret |= arg & (_IN | _OUT)  # let the caller call again so the handshake moves on
        return ret


class SSLSocket:
    """The port's SSLSocket: read/readinto/readline/write/setblocking/close/cipher/getpeercert."""

    def __init__(self, t, wire, ca_dates=None, kept=0):
        self._t = t
        self._kept = kept  # heap probe: bytes the engine holds for this socket and its context
        self._w = wire
        self._ca_dates = ca_dates  # None: no date check (not CERT_REQUIRED, or done)
        self._real = wire.sock._s
        self._need = 0  # direction the engine waits for (0: none)
        self._more = False  # the last read filled the buffer: decrypted bytes may be left
        self._s = _Poll(self, self._real)

    def _call(self, fn, *args):
        if self._t is None:
            raise OSError(errno.EBADF)
        w = self._w
        w.want = 0
        w.err = 0
        try:
            r, kept = _sim.held(fn, *args)
        except OSError:
            if w.err:  # the socket shim said why (ECONNABORTED: no link, ...)
                raise OSError(w.err) from None
            raise
        if kept:  # the handshake's state, the peer's certificate: not what a read returns
            kept -= len(r) if isinstance(r, bytes) else 0
            self._kept += kept
            _sim.tls_bytes += kept
        self._need = w.want if r is None else 0
        if self._ca_dates is not None:
            self._dates()
        return r

    def _dates(self):
        """Once the server's certificate is in: its dates and the CA's against the bulb clock,
        as mbedTLS checks every certificate of the chain (x509_crt_verify_chain)."""
        peer = self._w.peer
        if peer is None:
            return
        dates = self._ca_dates + [validity(peer)]
        self._ca_dates = None
        try:
            _check_dates(dates)
        except ValueError:
            self.close()
            raise

    def write(self, buf):
        return self._call(self._t.write, buf)

    def readinto(self, buf, n=-1):
        if n >= 0:
            buf = memoryview(buf)[:n]
        got = self._call(self._t.readinto, buf)
        self._more = bool(got) and got == len(buf)
        return got

    def read(self, n=-1):
        got = self._call(self._t.read, n) if n >= 0 else self._call(self._t.read)
        self._more = bool(got) and n >= 0 and len(got) == n
        return got

    def readline(self):
        return self._call(self._t.readline)

    def setblocking(self, flag):
        self._w.setblocking(flag)

    def cipher(self):
        return self._t.cipher()

    def getpeercert(self, binary_form=False):
        return self._t.getpeercert(binary_form)

    def close(self):
        t, self._t = self._t, None
        _sim.tls_bytes -= self._kept
        self._kept = 0
        if t is not None:
            t.close()  # the engine closes the wire, which closes the shim socket (traced)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class SSLContext:
    """micropython-lib's SSLContext: verify_mode CERT_NONE until set (as on the port)."""

    def __init__(self, *args):
        self._context, self._kept = _sim.held(tls.SSLContext, *args)
        _sim.tls_bytes += self._kept
        self._context.verify_mode = CERT_NONE
        self._ca_dates = []  # (notBefore, notAfter) of each CA loaded

    @property
    def verify_mode(self):
        return self._context.verify_mode

    @verify_mode.setter
    def verify_mode(self, val):
        self._context.verify_mode = val

    def load_cert_chain(self, certfile, keyfile):
        if isinstance(certfile, str):
            with open(certfile, "rb") as f:
                certfile = f.read()
        if isinstance(keyfile, str):
            with open(keyfile, "rb") as f:
                keyfile = f.read()
        self._context.load_cert_chain(certfile, keyfile)

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile:
            with open(cafile, "rb") as f:
                cadata = f.read()
        _, kept = _sim.held(self._context.load_verify_locations, cadata)
        self._kept += kept  # the parsed CA chain: mbedTLS's, in the IDF heap on the ESP32
        _sim.tls_bytes += kept
        try:
            self._ca_dates.append(validity(memoryview(cadata)))
        except (IndexError, ValueError):
            pass  # not one DER certificate: the engine judges it

    def wrap_socket(
        self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None
    ):
        check = self.verify_mode == CERT_REQUIRED and not server_side
        wire = _Wire(sock, check)
        try:
            t, kept = _sim.held(
                self._context.wrap_socket,
                wire,
                server_side=server_side,
                do_handshake_on_connect=do_handshake_on_connect,
                server_hostname=server_hostname,
            )
        except OSError:
            if wire.err:
                raise OSError(wire.err) from None
            raise
        # the socket answers for its engine and for the context, which goes with it
        _sim.tls_bytes += kept
        self._kept, kept = 0, kept + self._kept
        ss = SSLSocket(t, wire, list(self._ca_dates) if check else None, kept)
        if check:
            ss._dates()  # a blocking handshake is over: check now, as the port's would have
        return ss


def wrap_socket(
    sock,
    server_side=False,
    key=None,
    cert=None,
    cert_reqs=CERT_NONE,
    cadata=None,
    server_hostname=None,
    do_handshake=True,
):
    con = SSLContext(PROTOCOL_TLS_SERVER if server_side else PROTOCOL_TLS_CLIENT)
    if cert or key:
        con.load_cert_chain(cert, key)
    if cadata:
        con.load_verify_locations(cadata=cadata)
    con.verify_mode = cert_reqs
    return con.wrap_socket(
        sock,
        server_side=server_side,
        do_handshake_on_connect=do_handshake,
        server_hostname=server_hostname,
    )
