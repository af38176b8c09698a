# SPDX-License-Identifier: MIT
"""The bulb's partition table: read tools/partitions.csv, check it, write the ESP-IDF binary.

The binary is what the ESP32 bootloader and `esp32.Partition.find()` read at flash offset
0x8000. Layout (ESP-IDF "Partition Tables", gen_esp32part.py), all integers little-endian:

    one 32-byte row per partition:
      off size field
        0    2 magic    0x50AA (bytes AA 50)
        2    1 type     0x00 app, 0x01 data
        3    1 subtype  app: 0x00 factory, 0x10+n ota_n, 0x20 test; data: see DATA_SUBTYPES
        4    4 offset   absolute flash address
        8    4 size     bytes
       12   16 label    UTF-8, NUL-padded (exactly 16 bytes: no NUL when 16 long)
       28    4 flags    bit 0 encrypted, bit 1 readonly
    then one MD5 row: EB EB, 14 x FF, MD5 (16 bytes) of all partition rows before it
    then 0xFF up to 0xC00 bytes (the table area; 0x8C00..0x8FFF stays erased too)

Checks come in two layers: `validate()` refuses what no ESP32 would accept (overlap,
alignment, flash size, labels), `check_design()` refuses what breaks stock MicroPython or
the journal (DESIGN.md section 3). Numbers always come from the CSV, never from here.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


def _firmware_journal() -> ModuleType:
    """firmware/journal.py, imported as the bulb imports it (its limits are the tools')."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))
    try:
        import journal
    finally:
        sys.path.pop(0)
    return journal


_journal = _firmware_journal()

TABLE_OFFSET = 0x8000
TABLE_SIZE = 0xC00  # max 95 rows + MD5 row
ROW = struct.Struct("<2sBBII16sI")
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
MD5_ROW_PREFIX = MD5_MAGIC + b"\xff" * 14
MAX_ROWS = (TABLE_SIZE // ROW.size) - 1
FLASH_SIZE_DEFAULT = 4 * 1024 * 1024
SECTOR = 0x1000
APP_ALIGN = 0x10000
FIRST_FREE = TABLE_OFFSET + SECTOR  # partitions start after the table's sector

TYPES = {"app": 0x00, "data": 0x01}
APP_SUBTYPES = {"factory": 0x00, "test": 0x20, **{f"ota_{n}": 0x10 + n for n in range(16)}}
DATA_SUBTYPES = {
    "ota": 0x00,
    "phy": 0x01,
    "nvs": 0x02,
    "coredump": 0x03,
    "nvs_keys": 0x04,
    "efuse": 0x05,
    "undefined": 0x06,
    "esphttpd": 0x80,
    "fat": 0x81,
    "spiffs": 0x82,
    "littlefs": 0x83,
}
FLAGS = {"encrypted": 0x1, "readonly": 0x2}
ROMFS_SUBTYPE = 0x8F  # MicroPython >= 1.25 mounts data/0x8f as a read-only ROMFS

# DESIGN.md section 3: what stock MicroPython and the firmware need.
FACTORY_OFFSET = 0x10000
FACTORY_MIN_SIZE = 0x1F0000
VFS_LABEL = "vfs"
JOURNAL_LABEL = "journal"
# the journal's own limits (firmware/journal.py, one definition): a table the firmware would
# refuse never gets flashed
JOURNAL_MIN_SECTORS = _journal.MIN_SECTORS
JOURNAL_MAX_SECTORS = _journal.MAX_SECTORS


class TableError(ValueError):
    """The partition table is wrong; the message says where and what to change."""


@dataclass(frozen=True)
class Partition:
    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0
    line: int = 0  # CSV line number, for error messages (0 when parsed from binary)

    @property
    def end(self) -> int:
        return self.offset + self.size

    def where(self) -> str:
        return f"line {self.line} ({self.name!r})" if self.line else repr(self.name)


def _int(text: str, what: str, line: int) -> int:
    t = text.strip()
    mult = 1
    if t[-1:].upper() in ("K", "M"):
        mult = 1024 if t[-1].upper() == "K" else 1024 * 1024
        t = t[:-1]
    try:
        return int(t, 0) * mult
    except ValueError:
        raise TableError(
            f"partitions.csv line {line}: {what} must be a number like 0x10000 or 64K "
            f"(got {text.strip()!r})"
        ) from None


def parse_csv(text: str) -> list[Partition]:
    """Rows of an ESP-IDF partition CSV. Offsets must be explicit: the layout is a contract."""
    parts: list[Partition] = []
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].strip().startswith("#"):
            continue
        cells = [c.strip() for c in row] + [""] * 6
        name, ptype, sub, off, size, flags = cells[:6]
        if ptype in TYPES:
            t = TYPES[ptype]
        else:
            t = _int(ptype, "Type (app, data or a number)", line_no)
        if not 0 <= t <= 0xFE:
            raise TableError(f"partitions.csv line {line_no}: Type {ptype!r} out of range 0..0xFE")
        names = APP_SUBTYPES if t == 0 else DATA_SUBTYPES if t == 1 else {}
        if sub in names:
            st = names[sub]
        else:
            st = _int(sub, f"SubType (one of {', '.join(names) or 'a number'})", line_no)
        if not 0 <= st <= 0xFE:
            raise TableError(
                f"partitions.csv line {line_no}: SubType {sub!r} out of range 0..0xFE"
            )
        if not off:
            raise TableError(
                f"partitions.csv line {line_no} ({name!r}): Offset is empty; give every "
                "partition an explicit offset so the layout cannot move between builds"
            )
        if not size:
            raise TableError(f"partitions.csv line {line_no} ({name!r}): Size is empty")
        fl = 0
        for f in filter(None, (x.strip() for x in flags.split(":"))):
            if f not in FLAGS:
                raise TableError(
                    f"partitions.csv line {line_no} ({name!r}): unknown flag {f!r} "
                    f"(known: {', '.join(FLAGS)}; separate several with ':')"
                )
            fl |= FLAGS[f]
        parts.append(
            Partition(
                name, t, st, _int(off, "Offset", line_no), _int(size, "Size", line_no), fl, line_no
            )
        )
    return parts


def validate(parts: list[Partition], flash_size: int = FLASH_SIZE_DEFAULT) -> None:
    """Refuse a table no ESP32 bootloader would use correctly."""
    if not parts:
        raise TableError("partitions.csv has no partitions")
    if len(parts) > MAX_ROWS:
        raise TableError(f"partitions.csv has {len(parts)} partitions; the table holds {MAX_ROWS}")
    seen: dict[str, Partition] = {}
    for p in parts:
        label = p.name.encode()
        if not label:
            raise TableError(f"partitions.csv line {p.line}: a partition has no name")
        if len(label) > 16:
            raise TableError(
                f"partitions.csv {p.where()}: name is {len(label)} bytes; the label field "
                "holds 16 at most - shorten it"
            )
        if p.name in seen:
            raise TableError(
                f"partitions.csv {p.where()}: name also used by {seen[p.name].where()}; "
                "names must be unique (Partition.find looks them up by label)"
            )
        seen[p.name] = p
        align = APP_ALIGN if p.type == TYPES["app"] else SECTOR
        if p.offset % align:
            kind = "app" if p.type == 0 else "data"
            raise TableError(
                f"partitions.csv {p.where()}: offset {p.offset:#x} is not aligned to {align:#x} "
                f"({kind} partitions must start on a {align:#x} boundary)"
            )
        if p.size <= 0 or p.size % SECTOR:
            raise TableError(
                f"partitions.csv {p.where()}: size {p.size:#x} must be a positive multiple of "
                f"the {SECTOR:#x}-byte flash sector"
            )
        if p.offset < FIRST_FREE:
            raise TableError(
                f"partitions.csv {p.where()}: offset {p.offset:#x} is below {FIRST_FREE:#x}; "
                f"the bootloader and the partition table itself live there"
            )
        if p.end > flash_size:
            raise TableError(
                f"partitions.csv {p.where()}: ends at {p.end:#x}, past the end of the "
                f"{flash_size // (1024 * 1024)} MB flash ({flash_size:#x})"
            )
    ordered = sorted(parts, key=lambda p: p.offset)
    for a, b in itertools.pairwise(ordered):
        if b.offset < a.end:
            raise TableError(
                f"partitions.csv {b.where()} at {b.offset:#x} overlaps {a.where()} "
                f"({a.offset:#x}..{a.end:#x}); move it to {a.end:#x} or shrink {a.name!r}"
            )


def find(parts: list[Partition], label: str) -> Partition | None:
    return next((p for p in parts if p.name == label), None)


def check_design(parts: list[Partition]) -> None:
    """Refuse a table that breaks stock MicroPython or the journal (DESIGN.md section 3)."""
    factory = next(
        (p for p in parts if p.type == 0 and p.subtype == APP_SUBTYPES["factory"]), None
    )
    if factory is None or factory.offset != FACTORY_OFFSET:
        raise TableError(
            f"partitions.csv: the factory app must be at {FACTORY_OFFSET:#x}, where the stock "
            "MicroPython image puts it"
            + (f" (found at {factory.offset:#x})" if factory else " (no app/factory row)")
        )
    if factory.size < FACTORY_MIN_SIZE:
        raise TableError(
            f"partitions.csv {factory.where()}: factory is {factory.size:#x} bytes; stock "
            f"MicroPython for ESP32_GENERIC needs at least {FACTORY_MIN_SIZE:#x}"
        )
    for p in parts:
        if p.type == TYPES["data"] and p.subtype == ROMFS_SUBTYPE:
            raise TableError(
                f"partitions.csv {p.where()}: data subtype 0x8f is ROMFS; MicroPython would "
                "try to mount it. Choose another subtype (the journal uses 0x40)"
            )
    for label in (VFS_LABEL, JOURNAL_LABEL):
        found = find(parts, label)
        if found is None or found.type != TYPES["data"]:
            why = (
                "declare it explicitly, or MicroPython >= 1.26 creates it from the end of "
                "the last partition"
                if label == VFS_LABEL
                else "the firmware finds it with Partition.find(Partition.TYPE_DATA, "
                "label='journal')"
            )
            raise TableError(f"partitions.csv: no data partition labelled {label!r}; {why}")
    journal = find(parts, JOURNAL_LABEL)
    assert journal is not None
    if journal.size < JOURNAL_MIN_SECTORS * SECTOR:
        raise TableError(
            f"partitions.csv {journal.where()}: the journal needs at least "
            f"{JOURNAL_MIN_SECTORS} sectors ({JOURNAL_MIN_SECTORS * SECTOR:#x} bytes): one "
            "being written, one erased ahead, one of history"
        )
    if journal.size > JOURNAL_MAX_SECTORS * SECTOR:
        raise TableError(
            f"partitions.csv {journal.where()}: the journal uses at most "
            f"{JOURNAL_MAX_SECTORS} sectors ({JOURNAL_MAX_SECTORS * SECTOR:#x} bytes); the rest "
            "would lie unused: give it to vfs"
        )
    if journal.subtype in DATA_SUBTYPES.values():
        raise TableError(
            f"partitions.csv {journal.where()}: subtype {journal.subtype:#x} belongs to an "
            "ESP-IDF component that may format it; use a custom one such as 0x40"
        )


def to_binary(parts: list[Partition]) -> bytes:
    """The 0xC00-byte table in ESP-IDF format, MD5 row included."""
    rows = b"".join(
        ROW.pack(MAGIC, p.type, p.subtype, p.offset, p.size, p.name.encode(), p.flags)
        for p in parts
    )
    out = rows + MD5_ROW_PREFIX + hashlib.md5(rows).digest()
    return out + b"\xff" * (TABLE_SIZE - len(out))


def from_binary(data: bytes) -> list[Partition]:
    """Parse a table as the bootloader does; refuses a missing or wrong MD5 row."""
    if len(data) < ROW.size:
        raise TableError(f"partition table is {len(data)} bytes; expected {TABLE_SIZE:#x}")
    parts: list[Partition] = []
    pos = 0
    while pos + ROW.size <= min(len(data), TABLE_SIZE):
        row = data[pos : pos + ROW.size]
        if row[:2] == MAGIC:
            _, t, st, off, size, label, flags = ROW.unpack(row)
            parts.append(Partition(label.rstrip(b"\x00").decode(), t, st, off, size, flags))
            pos += ROW.size
            continue
        if row[:2] == MD5_MAGIC:
            if row[:16] != MD5_ROW_PREFIX:
                raise TableError(f"partition table: malformed MD5 row at {pos:#x}")
            if row[16:] != hashlib.md5(data[:pos]).digest():
                raise TableError("partition table: MD5 row does not match the entries")
            return parts
        if row == b"\xff" * ROW.size:
            raise TableError("partition table: no MD5 row after the entries")
        raise TableError(f"partition table: unexpected bytes {row[:2].hex()} at {pos:#x}")
    raise TableError("partition table: no end (MD5 row) within 0xC00 bytes")


def load(csv_path: Path, flash_size: int = FLASH_SIZE_DEFAULT) -> list[Partition]:
    """Parse, validate and design-check; the one entry point for the other tools."""
    parts = parse_csv(Path(csv_path).read_text())
    validate(parts, flash_size)
    check_design(parts)
    return parts


def describe(parts: list[Partition]) -> str:
    lines = [f"{'name':<10} {'type':>4} {'sub':>4} {'offset':>9} {'size':>9}"]
    for p in parts:
        lines.append(f"{p.name:<10} {p.type:>#4x} {p.subtype:>#4x} {p.offset:>#9x} {p.size:>#9x}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tools.partition_table [csv]: check and print
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("partitions.csv"))
    try:
        print(describe(load(path)))
    except TableError as e:
        sys.exit(f"error: {e}")
