# SPDX-License-Identifier: MIT
# Runs inside MicroPython (not CPython): the firmware update's power-cut sweep, as the journal's
# (tests/journal_sweep.py). A LittleFS filesystem (vfs.VfsLfs2, the ESP32 port's) on the flash
# shim holds a running version (5, confirmed, in v/5) and a leftover (v/3). The workload is an
# update to version 7 through the real firmware/ota.py over a fake network: a first visit cut
# off after part of the bundle, a second that completes, verifies and switches; then the boot
# (otaboot.choose: the trial count) and the server's answer (the trial ends).
# Before EVERY flash program and erase of the workload, the hook: snapshots the partition,
# applies the cut (nothing done; or half of a program / half of an erase, every other cut),
# mounts the filesystem again as a new boot would, lets otaboot choose, and checks that the
# chosen version is the old or the new one with every file of its manifest present and right
# (bricked: nothing complete to run; mixed: a file that is not its version's). Then, on that
# same cut flash, it runs visits until the update is done and checks that the new version is
# chosen, complete. Then it restores the snapshot and lets the operation go on.
# Prints one JSON line with the counts.
# usage: micropython ota_sweep.py <repo> <flash file> <dir with manifest.sig.json, bundle.bin,
#        v5.json> <key hex> [step]
import json
import sys

REPO, FLASH, REL, KEYHEX = sys.argv[1:5]
STEP = int(sys.argv[5]) if len(sys.argv) > 5 else 1
sys.path.insert(0, REPO + "/sim/shims")
import esp32

sys.path.pop(0)
sys.path.insert(0, REPO + "/firmware")
import binascii
import hashlib
import os

import vfs


class _Safemode:  # the RTC boot history: no crash loop in this sweep
    @staticmethod
    def failed_before():
        return 0

    @staticmethod
    def clear():
        pass


sys.modules["safemode"] = _Safemode
import ota
import otaboot
import protocol


async def _no_yield():
    pass


ota._yield = _no_yield  # the fake network never waits: coroutines are driven by hand

SIZE = 96 * 4096
esp32.sim_setup(flash=FLASH, partitions=[("vfs", 1, 0x81, 0, SIZE)], trace=False)
P = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")[0]
esp32._raw_write(0, b"\xff" * SIZE)
KEY = binascii.unhexlify(KEYHEX)
DEV = "bulb-ota"
with open(REL + "/bundle.bin", "rb") as f:
    BUNDLE = f.read()
with open(REL + "/manifest.json", "rb") as f:
    MAN = f.read()
NEW = json.loads(MAN)
V = NEW["version"]
BODY = protocol.sign_manifest(KEY, DEV, V, MAN).encode() + b"\n" + MAN
with open(REL + "/v5.json") as f:
    OLD = json.load(f)  # {"manifest": {...}, "files": {name: text}}
CFG = {"server": "http://192.0.2.1:8000", "safe_mode_after": 3}


def drive(coro):
    try:
        while True:
            coro.send(None)
    except StopIteration as e:
        return e.value


class Net:
    """The server as the bulb's transport sees it: answers signed GETs from memory. budget:
    bytes of answers this visit may still receive (then the visit ends: power off)."""

    def __init__(self, budget=1 << 30):
        self.budget = budget
        self.out = b""
        self.pos = 0

    async def open(self, host, port, tls):
        pass

    async def send(self, buf):
        line = bytes(buf).split(b"\r\n", 1)[0].decode()
        target = line.split(" ")[1]
        if target.endswith("/manifest"):
            body = BODY
        else:
            q = target.split("?", 1)[1]
            kv = dict(p.split("=") for p in q.split("&"))
            off, n = int(kv["off"]), int(kv["len"])
            body = BUNDLE[off : off + n]
        self.out = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        self.pos = 0

    async def recv_into(self, mv):
        if self.budget <= 0:
            raise OSError("the visit is over")
        k = min(len(mv), len(self.out) - self.pos, self.budget)
        mv[:k] = self.out[self.pos : self.pos + k]
        self.pos += k
        self.budget -= k
        return k

    async def close(self):
        pass


class Journal:
    def __init__(self):
        self.recs = []

    def append(self, kind, sub=0, aux=0, arg=0):
        self.recs.append((kind, sub, aux, arg))


def mount(at):
    fs = vfs.VfsLfs2(P)
    vfs.mount(fs, at)
    os.chdir(at)


def umount(at):
    os.chdir("/")
    try:
        vfs.umount(at)
    except OSError:
        pass


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def setup():
    vfs.VfsLfs2.mkfs(P)
    mount("/fs")
    write("main.py", b"print('root')\n")
    for d in ("state", "v", "v/3", "v/5"):  # state: as `make image` has it
        os.mkdir(d)
    write("v/3/main.py", b"print('three')\n")
    for name, text in OLD["files"].items():
        write("v/5/" + name, text.encode())
    write("v/5/manifest.json", json.dumps(OLD["manifest"]).encode())
    otaboot.save({"v": 5, "prev": 0, "trial": -1})


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return binascii.hexlify(h.digest()).decode()


def verdict(v):
    """'ok', 'mixed' (a file of another content) or 'bricked' (nothing complete to run)."""
    if v == 5:
        files = OLD["manifest"]["files"]
    elif v == V:
        files = NEW["files"]
    else:
        return "bricked"
    for name, _, digest in files:
        try:
            got = sha(otaboot.vdir(v) + "/" + name)
        except OSError:
            return "bricked"
        if got != digest:
            return "mixed"
    return "ok"


def update(u, budget=1 << 30):
    """One visit with an offer, as the uplink makes it."""
    u.answered({"ack": 1, protocol.OTA_KEY: protocol.ota_offer(V, len(BUNDLE))})
    if u.offer:
        try:
            drive(u.visit(Net(budget), "192.0.2.1", 8000, False))
        except OSError:
            pass


def workload():
    u = ota.Ota(CFG, Journal(), KEY, DEV)
    u.version = 5
    update(u, len(BUNDLE) // 2)  # the visit ends half-way
    update(u)  # the rest, verification, switch
    v = otaboot.choose()  # the next power-on
    u2 = ota.Ota(CFG, Journal(), KEY, DEV)
    u2.version = v
    u2.answered({"ack": 2})  # the new version reached the server
    return v


counts = {"cuts": 0, "ok_old": 0, "ok_new": 0, "bricked": 0, "mixed": 0, "resume_failed": 0,
          "ops": 0}
FAILS = []
CHECKING = [False]
SWITCHING = [False]  # every op from the verification on is cut, whatever the step
_digest_ok = ota._digest_ok


async def _verifying(path, n, want):
    if not CHECKING[0]:
        SWITCHING[0] = True
    return await _digest_ok(path, n, want)


ota._digest_ok = _verifying


def check(_, op, addr, data):
    counts["ops"] += 1
    n = counts["ops"]  # the workload's own operations (the checks' are not counted)
    if (n - 1) % STEP and n > 64 and not SWITCHING[0]:
        return
    esp32.sim_set_hook(None)
    CHECKING[0] = True
    snap = bytearray(SIZE)
    esp32._raw_read(0, snap)
    half = n % 2 == 0
    if half:
        esp32.apply_partial(op, addr, data, True, "old")
    counts["cuts"] += 1
    try:
        mount("/chk")
        v = otaboot.choose()
        got = verdict(v)
        if got == "ok":
            counts["ok_new" if v == V else "ok_old"] += 1
        else:
            counts[got] += 1
            FAILS.append((n, op, v, got))
        u = ota.Ota(CFG, Journal(), KEY, DEV)
        u.version = v
        for _ in range(3):
            if otaboot.load()["v"] == V:
                break
            update(u)
        v2 = otaboot.choose()
        if v2 != V or verdict(v2) != "ok":
            counts["resume_failed"] += 1
            FAILS.append((n, op, v2, "resume"))
    except Exception as e:  # noqa: BLE001 - counted and shown
        sys.print_exception(e)
        counts["bricked"] += 1
        FAILS.append((n, op, -1, repr(e)))
    umount("/chk")
    esp32._raw_write(0, snap)
    os.chdir("/fs")
    CHECKING[0] = False
    esp32.sim_set_hook(check)


setup()
esp32.sim_set_hook(check)
final = workload()
esp32.sim_set_hook(None)
counts["final"] = final
counts["final_ok"] = verdict(final) == "ok"
counts["fails"] = FAILS[:10]
print(json.dumps(counts))
