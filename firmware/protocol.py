# SPDX-License-Identifier: MIT
# The upload protocol: one definition, used by the bulb (MicroPython) and the server (CPython).
# A batch is a 24-byte header followed by journal records exactly as they are in flash.
# It must never accept a request it cannot authenticate; see docs/protocol.md.
#
#  off  size  field
#    0   u8   version   VERSION
#    1   u8   flags     0
#    2   u16  count     number of records that follow
#    4   u32  epoch     journal identity (random, chosen when the journal is formatted)
#    8   u32  from_seq  records before this one that the server lacks are gone (overwritten)
#   12   u32  boot      the bulb's boot number when it sent the batch      } replay counter:
#   16   u32  req       request number within that boot, from 1           } strictly increasing
#   20   u32  up_ms     the bulb's uptime (ms since this boot, the journal's up_ms clock) when
#                       this request was signed; 0: not given. The server anchors the boot
#                       from its own receive time with it (docs/protocol.md "Receipt anchor").
#   24   ...  records   count * record.SIZE bytes
#
# Authorization: Mimamori <device>:<hex HMAC-SHA256(key, METHOD SP PATH LF device LF body)>
import hashlib
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


VERSION = const(1)
HEADER_SIZE = const(24)
_HEADER = "<BBHIIIII"
_UP_MS = const(20)  # offset of up_ms in the header
PATH = "/v1/batches"
MAX_RECORDS = const(200)  # per batch; the server refuses larger bodies with 413
_BLOCK = const(64)


def pack_header(buf, count, epoch, from_seq, boot, req, up_ms=0):
    struct.pack_into(_HEADER, buf, 0, VERSION, 0, count, epoch, from_seq, boot, req,
                     up_ms & 0xFFFFFFFF)


def stamp_up_ms(buf, up_ms):
    """Write the sender's uptime into a packed header (per send, just before signing)."""
    struct.pack_into("<I", buf, _UP_MS, up_ms & 0xFFFFFFFF)


def unpack_header(buf):
    """(version, flags, count, epoch, from_seq, boot, req, up_ms)."""
    return struct.unpack_from(_HEADER, buf, 0)


def _hmac_key(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    return key + bytes(_BLOCK - len(key))


class Signer:
    """HMAC-SHA256 (RFC 2104) of a request whose body comes in pieces: update(piece) for each,
    then hexdigest(). sign() is the one-piece case; a bulb checks a manifest read from flash in
    chunks this way, never holding it whole."""

    def __init__(self, key, method, path, device):
        self._k = k = _hmac_key(key)
        self._in = inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
        inner.update(method.encode() if isinstance(method, str) else method)
        inner.update(b" ")
        inner.update(path.encode() if isinstance(path, str) else path)
        inner.update(b"\n")
        inner.update(device.encode() if isinstance(device, str) else device)
        inner.update(b"\n")

    def update(self, piece):
        self._in.update(piece)

    def hexdigest(self):
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in self._k))
        outer.update(self._in.digest())
        return _hex(outer.digest())


def sign(key, method, path, device, body):
    """HMAC-SHA256 (RFC 2104) of the request, as lowercase hex. key: bytes."""
    s = Signer(key, method, path, device)
    s.update(body)
    return s.hexdigest()


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode()


def authorization(device, signature):
    return "Mimamori " + device + ":" + signature


# ---- firmware updates (docs/ota.md): the one definition both sides use
# The answer to a batch may carry OTA_KEY: {"v": version, "size": bundle bytes} when a release
# waits for this bulb. The bulb then GETs, signed like a batch with an empty body:
#   ota_target(v)          the manifest: 64 hex digits of HMAC-SHA256, "\n", the manifest JSON
#   ota_target(v, off, n)  bytes [off, off + n) of the bundle (the manifest's files, concatenated)
OTA_KEY = "ota"
OTA_PATH = "/v1/ota/"
PIECE = const(4096)  # bytes per GET of the bundle: what a bulb asks for at most


def ota_offer(version, size):
    """The answer's OTA_KEY value (server side)."""
    return {"v": version, "size": size}


def ota_offer_of(resp):
    """(version, size) from an answer, or None (bulb side)."""
    o = resp.get(OTA_KEY) if isinstance(resp, dict) else None
    if not isinstance(o, dict):
        return None
    v, n = o.get("v"), o.get("size")
    if isinstance(v, int) and isinstance(n, int) and 0 < v < 1 << 31 and 0 < n:
        return v, n
    return None


def ota_target(version, off=-1, n=0):
    """The GET target of a release's manifest (off < 0) or of one piece of its bundle."""
    base = OTA_PATH + str(version)
    if off < 0:
        return base + "/manifest"
    return base + "/bundle?off=" + str(off) + "&len=" + str(n)


def manifest_signer(key, device, version):
    """The Signer of a manifest for one bulb: HMAC-SHA256 with its device key, over a message
    no batch can have (method "OTA")."""
    return Signer(key, b"OTA", ota_target(version), device)


def sign_manifest(key, device, version, manifest):
    s = manifest_signer(key, device, version)
    s.update(manifest)
    return s.hexdigest()
