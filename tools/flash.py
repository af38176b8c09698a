# SPDX-License-Identifier: MIT
"""`make flash PORT=...`: put stock MicroPython, the partition table and the vfs image on a bulb.

Three esptool runs, in this order (offsets from tools/partitions.csv):

    1. erase-region <journal offset> <journal size>      the journal starts empty, once
    2. write-flash 0x1000 <MicroPython ESP32_GENERIC .bin> stock bootloader + table + app
    3. write-flash 0x8000 build/partitions.bin <vfs offset> build/vfs.bin
                                                          our table replaces the stock one

Why not one write-flash: the MicroPython release .bin starts at 0x1000 and runs past 0x8000
(it contains the stock table and the app), and esptool refuses overlapping files ("Detected
overlap at address"). Runs 1 and 2 use `--after no-reset` so the bulb does not boot between
them; run 3 resets it into the new layout.

FIRMWARE is checked before anything is written: an ESP32 image (magic 0xE9) whose own table at
0x8000 has the factory app where ours has it, and an app that fits our factory partition.
Without FIRMWARE, the documented release is used from var/firmware/ if it is there, otherwise
downloaded when the machine is online; offline, the message names the file and URL.
DRY_RUN=1 prints the exact commands and runs nothing.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tools import partition_table as pt

REPO = Path(__file__).resolve().parent.parent
CSV = REPO / "tools" / "partitions.csv"
BUILD = REPO / "build"
FIRMWARE_DIR = REPO / "var" / "firmware"

# The documented MicroPython release (docs/flashing.md). Any later ESP32_GENERIC release works
# too as long as its factory app stays at 0x10000 and fits 0x1F0000 (checked below).
RELEASE = "v1.27.0"
RELEASE_FILE = "ESP32_GENERIC-20251209-v1.27.0.bin"
RELEASE_URL = f"https://micropython.org/resources/firmware/{RELEASE_FILE}"
RELEASE_PAGE = "https://micropython.org/download/ESP32_GENERIC/"

CHIP = "esp32"
FIRMWARE_OFFSET = 0x1000  # where the ESP32 ROM loads the second-stage bootloader
ESP_IMAGE_MAGIC = 0xE9
DEFAULT_BAUD = 460800


class FlashError(RuntimeError):
    """Flashing cannot go ahead; the message says what to do."""


def esptool() -> str:
    exe = Path(sys.executable).with_name("esptool")
    if exe.exists():
        try:
            return str(exe.relative_to(REPO))
        except ValueError:
            return str(exe)
    return shutil.which("esptool") or "esptool"


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def check_firmware(data: bytes, parts: list[pt.Partition], name: str = "FIRMWARE") -> None:
    """Refuse a file that is not a MicroPython ESP32 image for offset 0x1000 fitting our table."""
    if len(data) < 0x8000 or data[0] != ESP_IMAGE_MAGIC:
        raise FlashError(
            f"{name} is not an ESP32 firmware image for offset 0x1000 (first byte "
            f"{data[:1].hex() or 'missing'}, expected e9). Use the ESP32_GENERIC .bin from "
            f"{RELEASE_PAGE}, not the .app-bin, .elf or .uf2"
        )
    table_at = pt.TABLE_OFFSET - FIRMWARE_OFFSET
    try:
        stock = pt.from_binary(data[table_at : table_at + pt.TABLE_SIZE])
    except pt.TableError as e:
        raise FlashError(
            f"{name} has no valid partition table at 0x8000 ({e}); "
            "is it a full ESP32_GENERIC image?"
        ) from None
    ours = next(p for p in parts if p.type == 0 and p.subtype == 0)
    theirs = next((p for p in stock if p.type == 0 and p.subtype == 0), None)
    if theirs is None or theirs.offset != ours.offset:
        raise FlashError(
            f"{name} puts its factory app at "
            f"{f'{theirs.offset:#x}' if theirs else 'no address'}; tools/partitions.csv expects "
            f"{ours.offset:#x}. Use an ESP32_GENERIC build (not OTA, not SPIRAM variants)"
        )
    app = data[ours.offset - FIRMWARE_OFFSET :]
    if not app or app[0] != ESP_IMAGE_MAGIC:
        raise FlashError(f"{name} has no application image at {ours.offset:#x}")
    app_len = len(app.rstrip(b"\xff"))
    if app_len > ours.size:
        raise FlashError(
            f"{name}'s app is {app_len:#x} bytes; the factory partition holds {ours.size:#x}"
        )


def fetch_release(
    dest_dir: Path = FIRMWARE_DIR, fetch: Callable[[str], bytes] | None = None
) -> Path:
    """The documented release: from dest_dir if present, else downloaded there."""
    dest = dest_dir / RELEASE_FILE
    if dest.exists():
        return dest

    def _get(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.read()

    try:
        data = (fetch or _get)(RELEASE_URL)
    except OSError as e:
        raise FlashError(
            f"no FIRMWARE= given and MicroPython {RELEASE} could not be downloaded ({e}).\n"
            f"Download {RELEASE_FILE} from\n    {RELEASE_URL}\n(listed on {RELEASE_PAGE}), "
            f"then run:\n    make flash PORT=<port> FIRMWARE=<path to {RELEASE_FILE}>"
        ) from None
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def plan(
    port: str,
    firmware: Path | str,
    parts: list[pt.Partition],
    table: Path = BUILD / "partitions.bin",
    vfs: Path = BUILD / "vfs.bin",
    baud: int = DEFAULT_BAUD,
) -> list[list[str]]:
    """The esptool command lines, in the order they must run."""
    if not port:
        raise FlashError(
            "PORT= is required, e.g. make flash PORT=/dev/ttyUSB0 "
            "(list ports with: .venv/bin/pyserial-ports)"
        )
    journal = pt.find(parts, pt.JOURNAL_LABEL)
    vfs_part = pt.find(parts, pt.VFS_LABEL)
    assert journal is not None and vfs_part is not None  # pt.load() checked
    base = [esptool(), "--chip", CHIP, "--port", port, "--baud", str(baud)]
    fw = firmware if isinstance(firmware, str) else _rel(firmware)
    return [
        base + ["--after", "no-reset", "erase-region", hex(journal.offset), hex(journal.size)],
        base + ["--after", "no-reset", "write-flash", hex(FIRMWARE_OFFSET), fw],
        base + ["write-flash", hex(pt.TABLE_OFFSET), _rel(table), hex(vfs_part.offset), _rel(vfs)],
    ]


def main(
    argv: list[str] | None = None,
    run: Callable[[list[str]], int] | None = None,
    fetch: Callable[[str], bytes] | None = None,
) -> int:
    ap = argparse.ArgumentParser(description="Flash a Mimamori bulb (see docs/flashing.md)")
    ap.add_argument("--port", default="")
    ap.add_argument("--firmware", default="")
    ap.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--build", type=Path, default=BUILD)
    ap.add_argument("--firmware-dir", type=Path, default=FIRMWARE_DIR)
    a = ap.parse_args(argv)
    try:
        if not a.port:  # before anything is read or downloaded
            plan(a.port, "", [])
        parts = pt.load(a.csv)
        table, vfs = a.build / "partitions.bin", a.build / "vfs.bin"
        for f in (table, vfs):
            if not f.exists():
                raise FlashError(f"{_rel(f)} is missing; run `make image` first")
        if pt.from_binary(table.read_bytes()) != [
            pt.Partition(p.name, p.type, p.subtype, p.offset, p.size, p.flags) for p in parts
        ]:
            raise FlashError(f"{_rel(table)} does not match {_rel(a.csv)}; run `make image`")
        if a.firmware:
            fw: Path | str = Path(a.firmware)
            assert isinstance(fw, Path)
            if not fw.exists():
                raise FlashError(f"FIRMWARE={a.firmware}: no such file")
        else:
            where = _rel(a.firmware_dir / RELEASE_FILE)
            print(
                f"# FIRMWARE= not given: MicroPython {RELEASE}, {where}, downloaded when "
                f"missing from\n#   {RELEASE_URL}"
            )
            if a.dry_run and not (a.firmware_dir / RELEASE_FILE).exists():
                fw = where
            else:
                fw = fetch_release(a.firmware_dir, fetch)
        if isinstance(fw, Path):
            check_firmware(fw.read_bytes(), parts, f"FIRMWARE ({_rel(fw)})")
        cmds = plan(a.port, fw, parts, table, vfs, a.baud)
    except (pt.TableError, FlashError) as e:
        print(f"make flash: {e}", file=sys.stderr)
        return 2
    for c in cmds:
        print(shlex.join(c))
    if a.dry_run:
        return 0
    runner = run or (lambda c: subprocess.run(c, check=False, cwd=REPO).returncode)
    for i, c in enumerate(cmds, 1):
        rc = runner(c)
        if rc:
            print(
                f"make flash: step {i} of {len(cmds)} failed (esptool exit {rc}); the bulb "
                "may be half-flashed: fix the cause and run make flash again",
                file=sys.stderr,
            )
            return rc
    print("make flash: done. Next: make provision PORT=... (docs/flashing.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
