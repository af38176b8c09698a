# SPDX-License-Identifier: MIT
# ssl shim: the ESP32 port's ssl (micropython-lib's ssl.py over the built-in mbedTLS module
# `tls`) for sockets of the socket shim. The built-in TLS engine does the real handshake and
# certificate check; its records travel through the socket shim, so the trace counts what goes
# over the air (TLS records, handshake included) and a link that is down refuses them.
# Non-blocking use (asyncio.open_connection(..., ssl=ctx)) works: `_s` is what the select shim
# polls, and it asks for the direction the engine waits for, as the port's SSLSocket does.
# It must never let a handshake through that the built-in engine did not verify.
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


class _Wire(io.IOBase):
    """The stream mbedTLS reads and writes: TLS records, through the socket shim (traced as
    net send/recv, refused when the radio cannot carry them). Errors are returned as negative
    errnos (an exception must not unwind through mbedTLS) and kept in `err`."""

    def __init__(self, sock):
        self.sock = sock
        self.want = 0  # the direction that was not ready when the engine last gave up
        self.err = 0

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

    def __init__(self, t, wire):
        self._t = t
        self._w = wire
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
            r = fn(*args)
        except OSError:
            if w.err:  # the socket shim said why (ECONNABORTED: no link, ...)
                raise OSError(w.err) from None
            raise
        self._need = w.want if r is None else 0
        return r

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
        if t is not None:
            t.close()  # the engine closes the wire, which closes the shim socket (traced)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class SSLContext:
    """micropython-lib's SSLContext: verify_mode CERT_NONE until set (as on the port)."""

    def __init__(self, *args):
        self._context = tls.SSLContext(*args)
        self._context.verify_mode = CERT_NONE

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
        self._context.load_verify_locations(cadata)

    def wrap_socket(
        self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None
    ):
        wire = _Wire(sock)
        try:
            t = self._context.wrap_socket(
                wire,
                server_side=server_side,
                do_handshake_on_connect=do_handshake_on_connect,
                server_hostname=server_hostname,
            )
        except OSError:
            if wire.err:
                raise OSError(wire.err) from None
            raise
        return SSLSocket(t, wire)


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
