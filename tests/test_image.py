# SPDX-License-Identifier: MIT
"""`make image`: the partition table and the vfs LittleFS image a real bulb gets.

The table is checked byte by byte against the ESP-IDF format (rows unpacked here with their
own offsets, not with the builder's struct), the design rules of DESIGN.md section 3 are
enforced, bad CSVs are refused with messages that say what to change, and the vfs image is
mounted by MicroPython's own vfs.VfsLfs2, both over the image file and through the esp32 flash
shim over the whole-flash image (the bytes a simulated bulb boots from).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from sim.bulb import micropython_bin
from tools import image
from tools import partition_table as pt

REPO = Path(__file__).resolve().parent.parent
MICROPYTHON = Path(micropython_bin())
CSV_TEXT = (REPO / "tools" / "partitions.csv").read_text()
_PARTS = pt.parse_csv(CSV_TEXT)
J = next(p for p in _PARTS if p.name == "journal")  # H3 may resize it: derive, never assume
V = next(p for p in _PARTS if p.name == "vfs")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> image.Built:
    return image.build(out=tmp_path_factory.mktemp("build"))


def u16(b: bytes, o: int) -> int:
    return b[o] | b[o + 1] << 8


def u32(b: bytes, o: int) -> int:
    return b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24


def csv_rows() -> list[list[str]]:
    rows = []
    for line in CSV_TEXT.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append([c.strip() for c in line.split(",")])
    return rows


# ---- partition table bytes -------------------------------------------------------------


def test_partition_table_bytes_follow_the_esp_idf_format(built):
    data = built.table.read_bytes()
    assert len(data) == 0xC00
    rows = csv_rows()
    types = {"app": 0, "data": 1}
    subtypes = {"nvs": 2, "phy": 1, "factory": 0, "fat": 0x81}
    for i, (name, ptype, sub, off, size, *_) in enumerate(rows):
        r = data[32 * i : 32 * (i + 1)]
        assert r[0:2] == b"\xaa\x50", f"row {i}: magic"
        assert r[2] == types[ptype]
        assert r[3] == (subtypes[sub] if sub in subtypes else int(sub, 0))
        assert u32(r, 4) == int(off, 0)
        assert u32(r, 8) == int(size, 0)
        assert r[12:28] == name.encode().ljust(16, b"\x00")
        assert u32(r, 28) == 0
    n = len(rows)
    md5_row = data[32 * n : 32 * (n + 1)]
    assert md5_row[:2] == b"\xeb\xeb" and md5_row[2:16] == b"\xff" * 14
    assert md5_row[16:] == hashlib.md5(data[: 32 * n]).digest()
    assert set(data[32 * (n + 1) :]) == {0xFF}, "the rest of the table area must read erased"


def test_partition_table_parses_back_to_the_csv(built):
    parsed = pt.from_binary(built.table.read_bytes())
    want = [(p.name, p.type, p.subtype, p.offset, p.size) for p in pt.parse_csv(CSV_TEXT)]
    assert [(p.name, p.type, p.subtype, p.offset, p.size) for p in parsed] == want


def test_a_corrupted_table_is_refused_by_its_md5_row(built):
    data = bytearray(built.table.read_bytes())
    data[8] ^= 0x01  # nvs size
    with pytest.raises(pt.TableError, match="MD5"):
        pt.from_binary(bytes(data))
    no_md5 = bytes(data[: 32 * len(csv_rows())]).ljust(0xC00, b"\xff")
    with pytest.raises(pt.TableError, match="no MD5 row"):
        pt.from_binary(no_md5)


def test_the_shipped_table_keeps_stock_micropython_and_the_journal_working():
    parts = pt.load(REPO / "tools" / "partitions.csv")
    factory = next(p for p in parts if p.type == 0 and p.subtype == 0)
    assert factory.offset == 0x10000 and factory.size >= 0x1F0000
    vfs = pt.find(parts, "vfs")
    journal = pt.find(parts, "journal")
    assert vfs is not None and vfs.type == 1
    assert journal is not None and journal.type == 1
    assert all(not (p.type == 1 and p.subtype == 0x8F) for p in parts)
    # Partition.find(TYPE_DATA, label="journal") must find exactly one partition
    assert [p.name for p in parts if p.type == 1 and p.name == "journal"] == ["journal"]


# ---- refusing bad tables -----------------------------------------------------------------


def _with(line_from: str, line_to: str) -> str:
    assert line_from in CSV_TEXT
    return CSV_TEXT.replace(line_from, line_to)


def _row(name: str) -> str:
    return next(line for line in CSV_TEXT.splitlines() if line.startswith(name + ","))


BAD = [
    (
        "overlap",
        lambda: CSV_TEXT + f"extra, data, 0x41, {J.offset + 0x1000:#x}, 0x1000,\n",
        r"'extra'.*overlaps.*'journal'",
    ),
    (
        "app misaligned",
        lambda: CSV_TEXT + "ota, app, ota_0, 0x3C8000, 0x10000,\n",
        r"'ota'.*not aligned to 0x10000",
    ),
    (
        "data misaligned",
        lambda: _with(_row("journal"), "journal, data, 0x40, 0x3C0800, 0x3F000,"),
        r"'journal'.*0x3c0800 is not aligned to 0x1000",
    ),
    (
        "past 4 MB",
        lambda: _with(_row("journal"), "journal, data, 0x40, 0x3C0000, 0x80000,"),
        r"'journal'.*past the end of the 4 MB flash",
    ),
    (
        "label too long",
        lambda: CSV_TEXT.replace(_row("nvs"), "nvs_storage_bulb1,data, nvs, 0x9000, 0x6000,"),
        r"17 bytes.*16 at most",
    ),
    ("duplicate", lambda: CSV_TEXT.replace("phy_init,", "nvs,", 1), r"'nvs'.*unique"),
    (
        "no offset",
        lambda: _with(_row("journal"), "journal, data, 0x40, , 0x40000,"),
        r"Offset is empty",
    ),
    (
        "bad number",
        lambda: _with(_row("journal"), "journal, data, 0x40, 0x3C0000, big,"),
        r"Size must be a number.*'big'",
    ),
    (
        "unknown flag",
        lambda: _with(_row("journal"), "journal, data, 0x40, 0x3C0000, 0x40000, secret"),
        r"unknown flag 'secret'",
    ),
    (
        "over the table",
        lambda: _with(_row("nvs"), "nvs, data, nvs, 0x8000, 0x7000,"),
        r"below 0x9000",
    ),
    (
        "size not sectors",
        lambda: _with(_row("journal"), "journal, data, 0x40, 0x3C0000, 0x3FF00,"),
        r"multiple of the 0x1000",
    ),
]


@pytest.mark.parametrize("case,text,message", BAD, ids=[b[0] for b in BAD])
def test_an_invalid_partition_csv_is_refused_with_a_clear_message(case, text, message):
    with pytest.raises(pt.TableError, match=message):
        pt.validate(pt.parse_csv(text()))


DESIGN_BAD = [
    (
        "factory moved",
        lambda: _with(_row("factory"), "factory, app, factory, 0x20000, 0x1E0000,"),
        r"factory app must be at 0x10000",
    ),
    (
        "factory small",
        lambda: _with(_row("factory"), "factory, app, factory, 0x10000, 0x100000,"),
        r"needs at least 0x1f0000",
    ),
    (
        "vfs implicit",
        lambda: CSV_TEXT.replace(_row("vfs"), ""),
        r"no data partition labelled 'vfs'.*1\.26",
    ),
    (
        "romfs",
        lambda: CSV_TEXT.replace(_row("vfs"), f"vfs, data, 0x8f, {V.offset:#x}, {V.size:#x},"),
        r"0x8f is ROMFS",
    ),
    (
        "no journal",
        lambda: CSV_TEXT.replace(_row("journal"), ""),
        r"no data partition labelled 'journal'",
    ),
    (
        "tiny journal",  # two sectors: firmware/journal.py would refuse to mount it
        lambda: _with(_row("journal"), f"journal, data, 0x40, {J.offset:#x}, 0x2000,"),
        r"at least 3 sectors",
    ),
    (
        "idf subtype",
        lambda: _with(_row("journal"), f"journal, data, nvs, {J.offset:#x}, {J.size:#x},"),
        r"subtype 0x2 belongs to an ESP-IDF component",
    ),
]


@pytest.mark.parametrize("case,text,message", DESIGN_BAD, ids=[b[0] for b in DESIGN_BAD])
def test_a_table_that_breaks_stock_micropython_or_the_journal_is_refused(case, text, message):
    parts = pt.parse_csv(text())
    with pytest.raises(pt.TableError, match=message):
        pt.validate(parts)
        pt.check_design(parts)


def test_make_image_fails_with_the_csv_error_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "partitions.csv"
    bad.write_text(CSV_TEXT + f"extra, data, 0x41, {J.offset + 0x1000:#x}, 0x1000,\n")
    assert image.main(["--csv", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "overlaps" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_journal_size_comes_from_the_csv_not_from_the_tools(tmp_path):
    # H3 may resize the journal: the images must follow the CSV
    csv = tmp_path / "partitions.csv"
    csv.write_text(
        _with(_row("vfs"), "vfs, data, fat, 0x200000, 0x1A0000,").replace(
            _row("journal"), "journal, data, 0x40, 0x3A0000, 0x60000,"
        )
    )
    b = image.build(csv_path=csv, out=tmp_path / "out")
    assert b.vfs.stat().st_size == 0x1A0000
    flash = b.flash.read_bytes()
    assert pt.from_binary(flash[0x8000:0x8C00])[-1].size == 0x60000
    assert flash[0x200000 : 0x200000 + 0x1A0000] == b.vfs.read_bytes()


# ---- the vfs image ---------------------------------------------------------------------------


def test_main_and_boot_stay_source_other_modules_become_mpy(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text("import lampish\n")
    (fw / "boot.py").write_text("# boot\n")
    (fw / "lampish.py").write_text("LEVEL = 7\n")
    (fw / "config.json").write_text('{"brightness": 80}')
    b = image.build(firmware=fw, out=tmp_path / "out")
    assert list(b.files) == ["boot.py", "config.json", "lampish.mpy", "main.py"]


def test_a_module_that_does_not_compile_stops_the_build_with_its_error(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "broken.py").write_text("def f(:\n")
    with pytest.raises(image.ImageError, match=r"mpy-cross could not compile .*broken\.py"):
        image.build(firmware=fw, out=tmp_path / "out")


def test_a_corrupt_config_json_stops_the_build(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "x.py").write_text("X = 1\n")
    (fw / "config.json").write_text("{brightness: 80")
    with pytest.raises(image.ImageError, match="config.json is not valid JSON"):
        image.build(firmware=fw, out=tmp_path / "out")


def test_firmware_too_big_for_the_vfs_partition_is_refused(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "config.json").write_text(json.dumps({"pad": "x" * 40000}))
    (fw / "x.py").write_text("X = 1\n")
    csv = tmp_path / "partitions.csv"
    csv.write_text(_with(_row("vfs"), "vfs, data, fat, 0x200000, 0x4000,"))
    with pytest.raises(image.ImageError, match="does not fit in the vfs partition"):
        image.build(csv_path=csv, firmware=fw, out=tmp_path / "out")


def test_the_same_sources_give_the_same_image_bytes(built, tmp_path):
    again = image.build(out=tmp_path)
    assert again.vfs.read_bytes() == built.vfs.read_bytes()
    assert again.table.read_bytes() == built.table.read_bytes()


def test_the_whole_flash_image_is_erased_except_table_and_vfs(built):
    flash = built.flash.read_bytes()
    parts = pt.load(REPO / "tools" / "partitions.csv")
    vfs, journal = pt.find(parts, "vfs"), pt.find(parts, "journal")
    assert vfs is not None and journal is not None
    assert len(flash) == 4 * 1024 * 1024
    assert flash[0x8000:0x8C00] == built.table.read_bytes()
    assert flash[vfs.offset : vfs.end] == built.vfs.read_bytes()
    assert flash[journal.offset : journal.end] == b"\xff" * journal.size
    assert flash[:0x8000] == b"\xff" * 0x8000  # MicroPython itself is not ours to place here


MOUNT_SCRIPT = r"""
import json, sys, vfs

class FileBlocks:
    # a block device over an image file, with the ESP32 Partition's extended interface
    def __init__(self, path):
        self.f = open(path, "r+b")
        self.f.seek(0, 2)
        self.n = self.f.tell() // 4096
    def readblocks(self, block, buf, off=0):
        self.f.seek(block * 4096 + off)
        self.f.readinto(buf)
    def writeblocks(self, block, buf, off=0):
        self.f.seek(block * 4096 + off)
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return 4096
        if op == 6:
            self.f.seek(arg * 4096)
            self.f.write(b"\xff" * 4096)
            return 0

dev = FileBlocks(sys.argv[1])
fs = vfs.VfsLfs2(dev)  # the defaults the ESP32 port uses when it mounts "/"
vfs.mount(fs, "/bulb")
out = {"files": sorted(name for name, *_ in vfs.VfsLfs2.ilistdir(fs, "/"))}
out["statvfs"] = list(fs.statvfs("/"))
with open("/bulb/config.json") as f:
    out["config"] = json.load(f)
sys.path.insert(0, "/bulb")
import record
buf = record.pack(5, 2, 1234, record.K_POWER_ON, 1, -70, 42)
out["record"] = bytes(buf).hex()
out["record_from"] = record.__file__ if hasattr(record, "__file__") else None
with open("/bulb/site.json", "w") as f:  # the bulb writes its site config into this fs
    f.write('{"ssid": "home"}')
vfs.umount("/bulb")
fs2 = vfs.VfsLfs2(dev)
with fs2.open("/site.json", "r") as f:
    out["site"] = f.read()
print(json.dumps(out))
"""


def run_micropython(script: str, *args: str, env: dict | None = None, cwd=None) -> dict:
    r = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=96wK", "-c", script, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_vfs_image_mounts_in_micropython_vfslfs2_and_imports_mpy(built, tmp_path):
    import mimamori_firmware.record as host_record

    img = tmp_path / "vfs.bin"
    img.write_bytes(built.vfs.read_bytes())
    out = run_micropython(MOUNT_SCRIPT, str(img))
    assert out["files"] == sorted([*built.files, image.STATE_DIR])  # the state files' home
    assert "record.mpy" in out["files"] and "record.py" not in out["files"]
    assert out["statvfs"][0] == 4096 and out["statvfs"][2] == img.stat().st_size // 4096
    assert out["statvfs"][9] == 255  # name_max
    if (REPO / "firmware" / "config.json").exists():
        assert out["config"] == json.loads((REPO / "firmware" / "config.json").read_text())
    assert out["record_from"] in (None, "/bulb/record.mpy")
    want = host_record.pack(5, 2, 1234, host_record.K_POWER_ON, 1, -70, 42)
    assert bytes.fromhex(out["record"]) == bytes(want)
    assert out["site"] == '{"ssid": "home"}'


SHIM_SCRIPT = r"""
import json, sys, os, vfs, esp32
# what the ESP32 port's _boot.py + flashbdev.py do, through the flash shim over flash.bin
parts = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
vfs.mount(parts[0], "/bulb")
os.chdir("/bulb")
sys.path.insert(0, "/bulb")
with open("config.json") as f:
    cfg = json.load(f)
import record
journal = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="journal")[0]
first = bytearray(32)
journal.readblocks(0, first)
print(json.dumps({"files": sorted(os.listdir()), "cfg_keys": sorted(cfg),
                  "journal_blocks": journal.ioctl(4, 0), "journal_head": bytes(first).hex(),
                  "size": record.SIZE}))
"""


def test_a_simulated_bulb_mounts_its_filesystem_from_the_flash_image_bytes(built, tmp_path):
    state = tmp_path / "state"
    (state / "fs").mkdir(parents=True)
    (state / "flash.bin").write_bytes(built.flash.read_bytes())
    table = pt.from_binary(built.flash.read_bytes()[0x8000:0x8C00])  # the table as flashed
    (state / "sim.json").write_text(
        json.dumps(
            {
                "time": {"mode": "virtual"},
                "partitions": [[p.name, p.type, p.subtype, p.offset, p.size] for p in table],
            }
        )
    )
    env = dict(
        os.environ,
        MIMAMORI_SIM=str(state / "sim.json"),
        MICROPYPATH=f"{REPO / 'sim' / 'shims'}:.frozen",
    )
    want_cfg = sorted(json.loads((REPO / "firmware" / "config.json").read_text()))
    out = run_micropython(SHIM_SCRIPT, env=env, cwd=state / "fs")
    assert out["files"] == sorted([*built.files, image.STATE_DIR])
    assert out["cfg_keys"] == want_cfg
    journal = pt.find(table, "journal")
    assert journal is not None
    assert out["journal_blocks"] == journal.size // 4096
    assert out["journal_head"] == "ff" * 32  # erased, as make flash leaves it
    assert out["size"] == 24


# ---- a simulated bulb booting from the image (sim/bulb.py Bulb(image=...)) -----------------

PROBE_MAIN = """\
import json, os, sys
import probe
with open("config.json") as f:
    cfg = json.load(f)
with open("site.json") as f:
    site = json.load(f)
with open("written.txt", "w") as f:
    f.write("the bulb wrote this")
print("PROBE " + json.dumps({"main": __file__, "probe": probe.__file__, "cwd": os.getcwd(),
                             "cfg": cfg, "site": site, "level": probe.LEVEL}))
"""


def test_a_simulated_bulb_runs_main_py_and_mpy_modules_from_the_image(bulb, tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text(PROBE_MAIN)
    (fw / "probe.py").write_text("LEVEL = 42\n")
    (fw / "config.json").write_text('{"brightness": 0.5}')
    built = image.build(firmware=fw, out=tmp_path / "out")
    b = bulb(image=built.flash, site={"wifi_ssid": "home"})
    b.power_on(stop_at_s=2)
    line = next(x for x in b.stdout.splitlines() if x.startswith("PROBE "))
    out = json.loads(line[6:])
    assert out["main"] == "/flash/main.py"
    assert out["probe"] == "/flash/probe.mpy"  # compiled module, from the image, not firmware/
    assert out["cwd"] == "/flash"
    assert out["cfg"] == {"brightness": 0.5} and out["site"] == {"wifi_ssid": "home"}
    assert out["level"] == 42
    # what the bulb wrote went through esp32.Partition into the flash bytes, as LittleFS
    files = image.vfs_files(b.state_dir / "flash.bin")
    assert files["written.txt"] == b"the bulb wrote this"
    assert any(e.get("part") == "vfs" and e.get("op") == "program" for e in b.events("flash"))
    assert not (b.fs / "written.txt").exists()


def test_the_firmware_boots_from_the_image_as_it_does_from_the_source_tree(bulb, built):
    from_image = bulb(image=built.flash, site={"wifi_ssid": "home"})
    from_source = bulb(site={"wifi_ssid": "home"})
    for b in (from_image, from_source):
        b.power_on(stop_at_s=20)
    assert from_image.lamp_duties() == from_source.lamp_duties()
    assert from_image.lamp_duties()[0] == (0, 65535)
    # the same hardware was touched (timings may differ: the uplink's jitter is random)
    kinds = [{e["ev"] for e in b.trace() if e["ev"] != "flash"} for b in (from_image, from_source)]
    assert kinds[0] == kinds[1]

    def raw_flash(b):  # the journal's flash use; files go to vfs only when booted from the image
        return {(e.get("part"), e.get("op")) for e in b.events("flash") if e.get("part") != "vfs"}

    assert raw_flash(from_image) == raw_flash(from_source)
    assert not [e for e in from_image.events("exit") if e.get("how") == "exception"]
    assert "Traceback" not in from_image.stdout + from_image.stderr
