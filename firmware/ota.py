# SPDX-License-Identifier: MIT
# ota.py: firmware updates over the air, the running firmware's half (docs/ota.md). When the
# server's answer offers a release, the uplink hands this module the open transport after its
# batches: it fetches the manifest (HMAC-SHA256 with this bulb's key), then the bundle's bytes
# in pieces appended to the files in v/<version>/, resuming at every visit from the sizes in
# flash, checks each file's size and SHA-256, and switches with one atomic write of ota.json
# (otaboot.save). The next power-on runs it; otaboot goes back by itself if it fails.
# It must never hold a file in RAM, never switch to a file it has not verified, never touch the
# journal partition or the running version's files, and never raise into the uplink.
import os
import sys

import otaboot
import protocol
import record
from micropython import const

_RX = const(512)  # receive buffer: the answer's head, then the body in chunks to flash
_MANIFEST_MAX = const(8192)  # about 90 bytes per file
_MARGIN = const(16384)  # free space kept on the filesystem beyond the download


class Refused(Exception):
    """A release this bulb will not install; args[0] is the reason (record.U_*)."""


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _rmtree(d):
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        try:
            os.remove(d + "/" + n)
        except OSError:
            _rmtree(d + "/" + n)
    try:
        os.rmdir(d)
    except OSError:
        pass


def _mkdir(d):
    try:
        os.mkdir(d)
    except OSError:
        pass


def parse_manifest(body, key, device, v, size):
    """The manifest from the server's answer (signature line + JSON); Refused if not valid."""
    import io

    return check_manifest(io.BytesIO(body), key, device, v, size, bytearray(_RX))


def check_manifest(f, key, device, v, size, buf):
    """The manifest in stream f (signature line + JSON, as the server sends it), checked in
    chunks of buf: never the whole in RAM, so a fragmented heap cannot refuse an update.
    Refused if not valid; else the manifest, with f left at the JSON's start."""
    import json

    mv = memoryview(buf)
    if f.readinto(mv[:65]) != 65 or buf[64] != 0x0A:
        raise Refused(record.U_MANIFEST)
    want = bytes(mv[:64])
    s = protocol.manifest_signer(key, device, v)
    while True:
        got = f.readinto(buf)
        if not got:
            break
        s.update(mv[:got])
    if s.hexdigest().encode() != want:
        raise Refused(record.U_SIGNATURE)
    f.seek(65)
    try:
        m = json.load(f)
        f.seek(65)
        files = m["files"]
        total = 0
        for name, n, digest in files:
            if "/" in name or name[:1] in ("", ".") or name == "manifest.json" or n < 0 \
                    or len(digest) != 64:
                raise ValueError
            total += n
        ok = m["version"] == v and total == size and any(x[0] == "main.py" for x in files)
        need = tuple(m.get("micropython") or (0,))
    except (ValueError, KeyError, TypeError):
        raise Refused(record.U_MANIFEST) from None
    if not ok:
        raise Refused(record.U_MANIFEST)
    if tuple(sys.implementation.version[:3]) < need:
        raise Refused(record.U_RUNTIME)
    return m


async def _digest_ok(path, n, want):
    """The file has n bytes whose SHA-256 is want (hex); read in chunks, yielding between."""
    import binascii
    import hashlib

    if _size(path) != n:
        return False
    h = hashlib.sha256()
    buf = bytearray(_RX)
    mv = memoryview(buf)
    with open(path, "rb") as f:  # noqa: ASYNC230 - MicroPython files are synchronous
        while True:
            got = f.readinto(buf)
            if not got:
                break
            h.update(mv[:got])
            await _yield()
    return binascii.hexlify(h.digest()).decode() == want


async def _yield():
    import asyncio

    await asyncio.sleep_ms(0)


class Ota:
    """One per boot, owned by the uplink: report(), answered(resp), then visit(t) when due."""

    def __init__(self, cfg, journal, key, device):
        self._cfg = cfg
        self._j = journal
        self._key = key
        self._dev = device
        self.offer = None  # (version, size) from the last answer
        self.fetched = 0  # bundle bytes received this boot
        self.version = otaboot.running()
        self._rx = bytearray(_RX)
        self._req = None  # the request head (bytes) being sent

    def report(self):
        """Write what the loader and earlier boots left in ota.json's log to the journal."""
        st = otaboot.load()
        log = st.get("log")
        if not log:
            return
        for sub, aux, arg in log:
            self._j.append(record.K_OTA, sub, aux, arg)
        del st["log"]
        otaboot.save(st)

    def answered(self, resp):
        """A 200 from the server: the trial of a new version is over; note an offer."""
        st = otaboot.load()
        if st["v"] and st["v"] == self.version and st.get("trial", -1) >= 0:
            st["trial"] = -1
            otaboot.save(st)
            self._j.append(record.K_OTA, record.O_CONFIRMED, 0, self.version)
        o = protocol.ota_offer_of(resp)
        if o and o[0] != self.version and o[0] != st.get("bad") and o[0] != st["v"]:
            self.offer = o
        else:
            self.offer = None

    async def visit(self, t, host, port, tls):
        """Fetch what this visit allows of the offered release; switch when complete. Any
        failure leaves what is in flash for the next visit."""
        v, size = self.offer
        d = otaboot.vdir(v)
        try:
            self._tidy(v)
            await t.open(host, port, tls)
            m = await self._manifest(t, v, size, d)
            for name, n, _ in m["files"]:
                await self._file(t, v, m, name, n, d)
            for name, n, digest in m["files"]:
                if not await _digest_ok(d + "/" + name, n, digest):
                    raise Refused(record.U_DIGEST)
            self._switch(v)
        except Refused as r:
            why = r.args[0]
            print(f"ota: release {v} refused (reason {why}); staying on {self.version}")
            _rmtree(d)
            st = otaboot.load()
            st["bad"] = v
            otaboot.save(st)
            self._j.append(record.K_OTA, record.O_REFUSED, why, v)
            self.offer = None
        finally:
            await t.close()

    def _tidy(self, v):
        """Room for v: remove version directories neither running, chosen, previous nor v."""
        st = otaboot.load()
        keep = (str(v), str(st["v"]), str(st.get("prev", 0)), str(self.version))
        _mkdir(otaboot.VDIR)
        for n in os.listdir(otaboot.VDIR):
            if n not in keep:
                _rmtree(otaboot.VDIR + "/" + n)
        _mkdir(otaboot.vdir(v))

    async def _manifest(self, t, v, size, d):
        import json

        path = d + "/manifest.json"
        try:
            with open(path) as f:  # noqa: ASYNC230 - a small file, synchronous
                return json.load(f)  # written only after its signature was checked
        except (OSError, ValueError):
            pass
        st = os.statvfs(".")
        if st[0] * st[3] < size + _MARGIN:
            raise Refused(record.U_SPACE)
        got = path + ".dl"  # the answer as it came, signature line first
        try:
            os.remove(got)
        except OSError:
            pass
        await self._get(t, protocol.ota_target(v), got, _MANIFEST_MAX)
        rx = self._rx
        with open(got, "rb") as f, open(path + ".tmp", "wb") as out:  # noqa: ASYNC230
            m = check_manifest(f, self._key, self._dev, v, size, rx)
            while True:  # the JSON alone, as `make release` wrote it
                n = f.readinto(rx)
                if not n:
                    break
                out.write(memoryview(rx)[:n])
        os.remove(got)  # a cut from here on: manifest.json absent, fetched again next visit
        os.rename(path + ".tmp", path)
        return m

    async def _file(self, t, v, m, name, n, d):
        """Append the missing pieces of one file (its offset in the bundle: the files before)."""
        base = 0
        for other, k, _ in m["files"]:
            if other == name:
                break
            base += k
        path = d + "/" + name
        have = _size(path)
        if have > n:  # cannot be a prefix of the right file
            os.remove(path)
            have = -1
        while have < n:
            have = max(have, 0)
            k = min(protocol.PIECE, n - have)
            await self._get(t, protocol.ota_target(v, base + have, k), path, k)
            have = _size(path)

    def _switch(self, v):
        """The one atomic step: ota.json names v (on trial) and the running version to go back
        to. A power cut before the rename: the old version runs; after it: the new one."""
        st = otaboot.load()
        log = st.get("log") or []
        st = {"v": v, "prev": self.version, "trial": 0, "after": self._cfg["safe_mode_after"],
              "log": log}
        otaboot.save(st)
        self._j.append(record.K_OTA, record.O_INSTALLED, self.version, v)
        print(f"ota: release {v} verified; the next power-on runs it")
        self.offer = None

    # ---- one signed GET over the open transport, the body streamed to a file
    async def _get(self, t, target, path, most):
        sig = protocol.sign(self._key, b"GET", target, self._dev, b"")
        req = ("GET " + target + " HTTP/1.1\r\nHost: " + self._host_line() +
               "\r\nAuthorization: " + protocol.authorization(self._dev, sig) +
               "\r\nConnection: keep-alive\r\n\r\n").encode()
        await t.send(req)
        rx = self._rx
        mv = memoryview(rx)
        n = 0
        while True:
            if n == _RX:
                raise OSError("ota: answer head too long")
            got = await t.recv_into(mv[n:])
            if not got:
                raise OSError("ota: connection closed")
            n += got
            hend = bytes(mv[:n]).find(b"\r\n\r\n")
            if hend >= 0:
                break
        head = bytes(mv[:hend]).lower()
        if not head.startswith(b"http/1.") or head[9:12] != b"200":
            raise OSError("ota: server answered " + head[9:12].decode())
        i = head.find(b"\ncontent-length:")
        if i < 0:
            raise OSError("ota: no content-length")
        e = head.find(b"\r", i + 1)
        clen = int(head[i + 16 : e if e > 0 else len(head)])
        if clen > most:
            raise OSError("ota: answer longer than asked")
        body = mv[hend + 4 : n]
        left = clen
        with open(path, "ab") as f:  # noqa: ASYNC230 - committed at close: a cut keeps the size
            while True:
                k = min(len(body), left)
                f.write(body[:k])
                left -= k
                self.fetched += k
                if not left:
                    break
                got = await t.recv_into(mv)
                if not got:
                    raise OSError("ota: answer cut short")
                body = mv[:got]

    def _host_line(self):
        url = self._cfg["server"]
        return url.split("//", 1)[-1].split("/", 1)[0]
