# SPDX-License-Identifier: MIT
# Runs inside MicroPython (not CPython): the power-cut sweep of the first boot after an update
# from an older firmware, which kept its state files at the root: firmware/statemove.py run()
# creates state/ and moves them in, as tests/ota_sweep.py sweeps an update. A LittleFS
# filesystem (vfs.VfsLfs2, the ESP32 port's) on the flash shim holds the older layout: the state
# files at the root, no state/, a leftover of a cut write (sv.tmp), modules and settings.
# Before EVERY flash program and erase of run(), the hook: snapshots the partition, applies
# the cut (nothing done; or half of a program / half of an erase, every other cut), mounts the
# filesystem again as the next boot would, checks that each state file is whole at the root or
# in state/ (lost: in neither) and that the modules and settings read back (hidden: they do not,
# before anything is written), runs run() there as the next boot does and checks that every
# one is in state/, whole, and gone from the root, the rest untouched (unfinished). Then it
# restores the snapshot and lets the operation go on.
# Prints one JSON line with the counts.
# usage: micropython state_sweep.py <repo> <flash file>
import json
import sys

REPO, FLASH = sys.argv[1:3]
sys.path.insert(0, REPO + "/sim/shims")
import esp32

sys.path.pop(0)
sys.path.insert(0, REPO + "/firmware")
import os

import statefiles
import statemove
import vfs

OLD = {
    "taps": b"3",
    "commission": b"bench",
    "clock": b"1796083200",
    "dns": b"mimamori.example 192.0.2.1",
    "sv": b"4",
    "lte_last": b"1796000000",
    "nowdt": b"",
    "ota.json": b'{"v": 0, "prev": 0, "trial": -1, "bad": 7}',
}
# what was flashed and configured, between the state files in LittleFS's order of names
KEEP = {n: n.encode() * 3 for n in ("config.json", "journal.mpy", "lamp.mpy", "main.py",
                                     "otaboot.mpy", "site.json", "uplink.mpy")}

SIZE = 32 * 4096
esp32.sim_setup(flash=FLASH, partitions=[("vfs", 1, 0x81, 0, SIZE)], trace=False)
P = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")[0]
esp32._raw_write(0, b"\xff" * SIZE)


def mount(at):
    vfs.mount(vfs.VfsLfs2(P), at)
    os.chdir(at)


def umount(at):
    os.chdir("/")
    try:
        vfs.umount(at)
    except OSError:
        pass


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def setup():
    vfs.VfsLfs2.mkfs(P)
    mount("/fs")
    for name, data in list(OLD.items()) + list(KEEP.items()) + [("sv.tmp", b"5")]:
        with open(name, "wb") as f:
            f.write(data)


def lost():
    """State files whole neither at the root nor in state/."""
    return [n for n, d in OLD.items() if d not in (read(n), read(statefiles.DIR + "/" + n))]


def hidden():
    """Flashed or configured files that do not read back as they are."""
    return [n for n, d in KEEP.items() if read(n) != d]


def unfinished():
    """What is not as the move must leave it."""
    bad = [n for n, d in OLD.items() if read(statefiles.DIR + "/" + n) != d or read(n) is not None]
    if read("sv.tmp") is not None:
        bad.append("sv.tmp")
    return bad + hidden()


counts = {"cuts": 0, "lost": 0, "hidden": 0, "unfinished": 0, "ops": 0}
FAILS = []


def check(_, op, addr, data):
    counts["ops"] += 1
    n = counts["ops"]
    esp32.sim_set_hook(None)
    snap = bytearray(SIZE)
    esp32._raw_read(0, snap)
    if n % 2 == 0:
        esp32.apply_partial(op, addr, data, True, "old")
    counts["cuts"] += 1
    try:
        mount("/chk")
        gone = lost()
        if gone:
            counts["lost"] += 1
            FAILS.append((n, op, "lost", gone))
        gone = hidden()  # what the next boot reads before it writes anything (main.py...)
        if gone:
            counts["hidden"] += 1
            FAILS.append((n, op, "hidden", gone))
        statemove.run()  # the next boot
        bad = unfinished()
        if bad:
            counts["unfinished"] += 1
            FAILS.append((n, op, "unfinished", bad))
    except Exception as e:  # noqa: BLE001 - counted and shown
        sys.print_exception(e)
        counts["unfinished"] += 1
        FAILS.append((n, op, repr(e)))
    umount("/chk")
    esp32._raw_write(0, snap)
    os.chdir("/fs")
    esp32.sim_set_hook(check)


setup()
esp32.sim_set_hook(check)
statemove.run()
esp32.sim_set_hook(None)
counts["final"] = unfinished()
counts["fails"] = FAILS[:10]
print(json.dumps(counts))
