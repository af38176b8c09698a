# SPDX-License-Identifier: MIT
# Shim of the ESP32 port's `esp32` module for the MicroPython unix port: the SPI flash behind
# esp32.Partition, with NOR semantics (erase sets a 4 KiB sector to 0xFF, programming only
# clears bits), kept in <state>/flash.bin outside the MicroPython heap, plus mcu_temperature().
# It must never let a program set a bit, never erase on writeblocks(..., offset), and never hold
# the flash image in the heap: every access seeks and reads or writes just the bytes needed.
#
# Test hooks (names start with "sim_", absent on a real bulb):
#   sim_setup(flash=path, partitions=[(label, type, subtype, offset, size)], cut_at=N, half=b)
#   sim_stats() -> dict of counters; sim_cut_at(N, half, erase_rest) arms a power cut at the
#   N-th program or erase (1-based, counted since sim_setup); sim_set_hook(fn) calls
#   fn(n, op, addr, data_or_len) before every program/erase (the power-loss sweep uses it).
# Faults real NOR flash has besides power cuts (docs/journal.md, "Fault model"):
#   sim_flip(addr, bit) flips one bit at rest (retention loss or disturb, either direction);
#   an erase cut with erase_rest="weak" reads all 0xFF but leaves 1 to 4 weak cells that decay
#   to 0 on the 1st to 3rd program into that sector after it (a later full erase heals them);
#   sim_weak() / sim_weak(cells) read or restore them. In a whole bulb, weak cells persist in
#   <flash>.weak, and sim.json "flash": {"flips": [[offset, bit], ...]} flips bits at rest
#   (offsets in the flash) before the boot's first flash access.
import os

_sim = None
if os.getenv("MIMAMORI_SIM"):  # a whole bulb under the runner: H1's shared helpers
    import _sim

SECTOR = 4096


class PowerCut(BaseException):
    """The power went during a flash operation (in-process harnesses catch it and remount)."""


_st = {
    "path": None, "table": None, "reads": 0, "read_bytes": 0, "programs": 0,
    "prog_bytes": 0, "erases": 0, "ops": 0, "cut_at": 0, "half": False,
    "erase_rest": "old", "hook": None, "trace": True, "rng": 12345,
    "weak": None,  # {sector address: [[byte address, bit, programs left], ...]}
    "decayed": 0,
}
_f = None


def _config():
    if _sim is not None:
        return _sim.cfg
    p = os.getenv("MIMAMORI_SIM")
    if not p:
        return {}
    try:
        import json

        with open(p) as f:
            return json.load(f)
    except OSError:
        return {}


def _state_dir():
    if _sim is not None:
        return _sim.state_dir
    p = os.getenv("MIMAMORI_SIM")
    if p and "/" in p:
        return p.rsplit("/", 1)[0]
    return "."


def _here():
    f = globals().get("__file__") or ""
    return f.rsplit("/", 1)[0] if "/" in f else "."


def _parse_csv(path):
    names = {"app": 0, "data": 1, "factory": 0, "ota_0": 0x10, "ota_1": 0x11, "ota": 0,
             "phy": 1, "nvs": 2, "coredump": 3, "nvs_keys": 4, "efuse": 5, "fat": 0x81,
             "spiffs": 0x82, "littlefs": 0x83, "undefined": 0x80}
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            c = [x.strip() for x in line.split(",")]
            t = names[c[1]] if c[1] in names else int(c[1], 0)
            s = names[c[2]] if c[2] in names else int(c[2], 0)
            out.append((c[0], t, s, int(c[3], 0), int(c[4], 0)))
    return out


def _table():
    if _st["table"] is None:
        cfg = _config()
        parts = cfg.get("partitions")
        if isinstance(parts, list):
            _st["table"] = [tuple(p) if not isinstance(p, dict) else
                            (p["label"], p["type"], p["subtype"], p["offset"], p["size"])
                            for p in parts]
        else:
            csv = parts if isinstance(parts, str) else _here() + "/../../tools/partitions.csv"
            _st["table"] = _parse_csv(csv)
        fl = cfg.get("flash") or {}
        if fl.get("cut_at") and not _st["cut_at"]:
            sim_cut_at(fl["cut_at"], fl.get("half", False), fl.get("erase_rest", "old"))
    return _st["table"]


def _file():
    global _f
    if _f is None:
        path = _st["path"] or os.getenv("MIMAMORI_FLASH") or _state_dir() + "/flash.bin"
        _st["path"] = path
        try:
            _f = open(path, "r+b")  # noqa: SIM115 - kept open for the whole run
        except OSError:
            _f = open(path, "w+b")  # noqa: SIM115
        _f.seek(0, 2)
        size = _f.tell()
        end = _config().get("flash_size") or max(p[3] + p[4] for p in _table())
        if size < end:  # flash never written reads as erased
            blank = b"\xff" * SECTOR
            while size < end:
                _f.write(blank)
                size += SECTOR
            _f.flush()
        _load_weak()
        for addr, bit in (_config().get("flash") or {}).get("flips") or []:
            sim_flip(addr, bit)
    return _f


def _raw_read(addr, buf):
    f = _file()
    f.seek(addr)
    f.readinto(buf)


def _raw_write(addr, data):
    f = _file()
    f.seek(addr)
    f.write(data)
    f.flush()


# The port's erase and program are C (esp_partition_erase_range/write): they take nothing from
# the Python heap. The shim's buffers are made once, at import, in the shims' own budget, so an
# erase or a 4 KB program in the middle of a download never asks the firmware's heap for 4 KB.
_BLANK = b"\xff" * SECTOR
_SCRATCH = bytearray(SECTOR)


def _program(addr, data, n=None):
    """NOR program: new = old & data, for the first n bytes of data."""
    n = len(data) if n is None else n
    old = memoryview(_SCRATCH)
    for off in range(0, n, SECTOR):
        k = min(SECTOR, n - off)
        _raw_read(addr + off, old[:k])
        for i in range(k):
            old[i] &= data[off + i]
        _raw_write(addr + off, old[:k])
    _decay(addr - addr % SECTOR)


def sim_flip(addr, bit):
    """Flip one bit at rest (absolute flash address): retention loss or a disturb."""
    b = bytearray(1)
    _raw_read(addr, b)
    b[0] ^= 1 << bit
    _raw_write(addr, b)


def _weak_path():
    return (_st["path"] or _state_dir() + "/flash.bin") + ".weak"


def _load_weak():
    if _st["weak"] is not None:
        return
    _st["weak"] = {}
    if _sim is None:  # in-process harnesses keep them in memory (sim_weak)
        return
    try:
        import json

        with open(_weak_path()) as f:
            for k, v in json.load(f).items():
                _st["weak"][int(k)] = v
    except (OSError, ValueError):
        pass


def _save_weak():
    if _sim is None:
        return
    import json

    with open(_weak_path(), "w") as f:
        json.dump({str(k): v for k, v in _st["weak"].items()}, f)


def _decay(sector):
    """A program into a sector with weak cells: each decays to 0 on its last program."""
    weak = _st["weak"]
    cells = weak.get(sector) if weak else None
    if not cells:
        return
    keep = []
    for c in cells:
        c[2] -= 1
        if c[2] <= 0:
            b = bytearray(1)
            _raw_read(c[0], b)
            b[0] &= ~(1 << c[1]) & 0xFF
            _raw_write(c[0], b)
            _st["decayed"] += 1
        else:
            keep.append(c)
    if keep:
        weak[sector] = keep
    else:
        del weak[sector]
    _save_weak()


def sim_weak(cells=None):
    """The weak cells left by interrupted erases (a copy), or restore them from such a copy."""
    _load_weak()
    if cells is None:
        return {k: [list(c) for c in v] for k, v in _st["weak"].items()}
    _st["weak"] = {k: [list(c) for c in v] for k, v in cells.items()}
    _save_weak()
    return None


def _rand():
    x = _st["rng"]
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    _st["rng"] = x
    return x


def _erase(addr, length, part=None):
    """Erase [addr, addr+length); part: None = all, else (done_bytes, rest) for a torn erase."""
    blank = memoryview(_BLANK)
    for a in range(addr, addr + length, SECTOR):
        if part is None:
            _raw_write(a, blank)
            _load_weak()
            if _st["weak"].pop(a, None) is not None:  # a full erase heals weak cells
                _save_weak()
            continue
        done, rest = part
        _raw_write(a, blank[:done])
        if rest == "garbage":  # partly erased bits: old | random
            old = bytearray(SECTOR - done)
            _raw_read(a + done, old)
            for i in range(len(old)):
                old[i] |= _rand() & 0xFF
            _raw_write(a + done, old)


def apply_partial(op, addr, data, half=True, erase_rest="old"):
    """Do what a torn op leaves behind: half a program (or, erase_rest="bits", a random part of
    its bits), or part of an erase (erase_rest: "old", "garbage" or "tail", see _erase; "weak":
    every byte reads 0xFF but 1 to 4 cells are weak, see _weaken)."""
    if op == "program":
        if erase_rest == "bits":  # a random part of the bits to clear got cleared
            _program(addr, bytes(d | (_rand() & 0xFF) for d in data))
        elif half:
            _program(addr, data, len(data) // 2)
    else:
        length = data
        if erase_rest == "weak":
            for a in range(addr, addr + length, SECTOR):
                _erase(a, SECTOR)
                _weaken(a, 0, SECTOR)
        elif erase_rest == "tail":  # the end of the sector erased, the start left as it was
            for a in range(addr, addr + length, SECTOR):
                _raw_write(a + SECTOR // 2, b"\xff" * (SECTOR // 2))
        elif half or erase_rest == "garbage":
            _erase(addr, length, (SECTOR // 2 if half else 0, erase_rest))


def _weaken(sector, lo, hi):
    """1 to 4 cells in [lo, hi) of a sector whose erase was cut off: they read 1 now and decay
    to 0 on the 1st to 3rd program into the sector after it (never on a read alone, so the
    read-back check right after the program that wakes them may or may not see it)."""
    _load_weak()
    cells = []
    for _ in range(1 + _rand() % 4):
        cells.append([sector + lo + _rand() % (hi - lo), _rand() % 8, 1 + _rand() % 3])
    _st["weak"][sector] = cells
    _save_weak()


def _trace(**kw):
    if not _st["trace"]:
        return
    if _sim is not None:
        _sim.trace("flash", **kw)


def _before(op, addr, data, label, off):
    _st["ops"] += 1
    n = _st["ops"]
    if _st["hook"] is not None:
        _st["hook"](n, op, addr, data)
    if n == _st["cut_at"]:
        if _st["half"] or _st["erase_rest"] != "old":
            apply_partial(op, addr, data, _st["half"], _st["erase_rest"])
        _st["cut_at"] = 0
        _power_cut()


def _power_cut():
    if _sim is not None:
        _sim.power_cut()  # a whole bulb: SIGKILL, nothing flushed, no finally runs
    raise PowerCut()  # in-process harness: it catches this and remounts


def sim_setup(flash=None, partitions=None, cut_at=0, half=False, erase_rest="old", trace=True):
    """In-process configuration: flash file, partition table, power cut; counters reset."""
    global _f
    if _f is not None:
        _f.close()
        _f = None
    _st["path"] = flash
    _st["table"] = partitions
    _st["trace"] = trace
    _st["hook"] = None
    _st["weak"] = None
    for k in ("reads", "read_bytes", "programs", "prog_bytes", "erases", "ops", "decayed"):
        _st[k] = 0
    sim_cut_at(cut_at, half, erase_rest)


def sim_cut_at(n, half=False, erase_rest="old"):
    """Cut the power at the n-th program or erase from now on (0: never)."""
    _st["cut_at"] = _st["ops"] + n if n else 0
    _st["half"] = bool(half)
    _st["erase_rest"] = erase_rest


def sim_set_hook(fn):
    _st["hook"] = fn


def sim_stats():
    return {k: _st[k] for k in ("reads", "read_bytes", "programs", "prog_bytes", "erases", "ops",
                                "decayed")}


_stats = _st  # the raw counters, as esp32._stats


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        for p in _table():
            if (id == Partition.RUNNING or id == Partition.BOOT) and p[1] == 0 and p[2] == 0:
                break
            if p[0] == id:
                break
        else:
            raise ValueError("partition not found")
        self._label, self._type, self._sub, self._addr, self._size = p
        self._bs = block_size

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        out = []
        for p in _table():
            if p[1] == type and (subtype == 0xFF or p[2] == subtype) and (
                label is None or p[0] == label
            ):
                out.append(Partition(p[0], block_size))
        return out

    def info(self):
        return (self._type, self._sub, self._addr, self._size, self._label, False)

    def _addr_of(self, block, offset, n):
        a = block * self._bs + offset
        if a < 0 or a + n > self._size:
            raise OSError(22)  # EINVAL, as esp_partition_* reports out-of-range access
        return self._addr + a

    def readblocks(self, block, buf, offset=0):
        a = self._addr_of(block, offset, len(buf))
        _st["reads"] += 1
        _st["read_bytes"] += len(buf)
        _raw_read(a, buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the ESP32 port erases the blocks first, then programs
            a = self._addr_of(block, 0, len(buf))
            for s in range(0, len(buf), SECTOR):
                self._erase_at(a + s)
            offset = 0
        a = self._addr_of(block, offset, len(buf))
        _before("program", a, buf, self._label, a - self._addr)
        _st["programs"] += 1
        _st["prog_bytes"] += len(buf)
        _program(a, buf)
        _trace(op="program", part=self._label, off=a - self._addr, len=len(buf))

    def _erase_at(self, a):
        _before("erase", a, SECTOR, self._label, a - self._addr)
        _st["erases"] += 1
        _erase(a, SECTOR)
        _trace(op="erase", part=self._label, off=a - self._addr, len=SECTOR)

    def ioctl(self, op, arg):
        if op == 4:
            return self._size // self._bs
        if op == 5:
            return self._bs
        if op == 6:
            self._erase_at(self._addr_of(arg, 0, self._bs))
            return 0
        return None  # 1 init, 2 deinit, 3 sync: nothing to do

    def set_boot(self):
        pass

    def get_next_update(self):
        raise OSError(2)

    @staticmethod
    def mark_app_valid_cancel_rollback():
        pass

    @classmethod
    def stats(cls):
        return sim_stats()


def mcu_temperature():
    """Chip temperature in degrees C: sim.json "mcu_temperature" (default 45)."""
    return int(_config().get("mcu_temperature", 45))


class NVS:
    """Minimal esp32.NVS (namespace of ints and blobs), kept in RAM for the run."""

    _store = {}  # noqa: RUF012 - one store per run, like the chip's NVS partition

    def __init__(self, namespace):
        self._ns = NVS._store.setdefault(namespace, {})

    def set_i32(self, key, value):
        self._ns[key] = value

    def get_i32(self, key):
        if key not in self._ns:
            raise OSError(-0x1102)  # ESP_ERR_NVS_NOT_FOUND
        return self._ns[key]

    def set_blob(self, key, value):
        self._ns[key] = bytes(value)

    def get_blob(self, key, buf):
        v = self._ns.get(key)
        if v is None:
            raise OSError(-0x1102)
        buf[: len(v)] = v
        return len(v)

    def erase_key(self, key):
        self._ns.pop(key, None)

    def commit(self):
        pass
