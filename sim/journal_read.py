# SPDX-License-Identifier: MIT
"""Read a bulb's journal on the host, from its flash image, with the firmware's own code.

firmware/journal.py runs under CPython too; this gives it esp32.Partition's read side over a
flash.bin file (a simulated bulb's, or one read back from a real bulb with esptool read_flash).
`of_bulb` reads a simulated bulb's journal the other way: the firmware's journal.py running in
MicroPython, on a copy of the bulb's flash (the uplink tests and bench/figures_wire.py use it).
Read only: it never writes the image.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.bulb import Bulb

REPO = Path(__file__).resolve().parent.parent


def _firmware() -> tuple[Any, Any]:
    sys.path.insert(0, str(REPO / "firmware"))
    try:
        import journal
        import record
    finally:
        sys.path.pop(0)
    return journal, record


class FilePartition:
    """esp32.Partition's read side over a flash image (readblocks and ioctl 4/5)."""

    def __init__(self, flash: Path, offset: int, size: int) -> None:
        self.addr, self.size = offset, size
        self.data = Path(flash).read_bytes()

    def readblocks(self, block: int, buf: Any, offset: int = 0) -> None:
        a = self.addr + block * 4096 + offset
        buf[:] = self.data[a : a + len(buf)]

    def ioctl(self, op: int, arg: int) -> int:
        return {4: self.size // 4096, 5: 4096}[op]


def open_journal(flash: Path, label: str = "journal") -> Any:
    """The Journal in a flash image laid out by tools/partitions.csv."""
    from sim.bulb import partitions

    p = next(p for p in partitions() if p["label"] == label)
    journal, _ = _firmware()
    return journal.Journal(FilePartition(flash, p["offset"], p["size"]))


def records(flash: Path, acks: bool = True) -> list[tuple[int, ...]]:
    """Every record kept, oldest first: (seq, boot, up_ms, kind, sub, aux, arg)."""
    _, record = _firmware()
    j = open_journal(flash)
    buf = bytearray(24 * 100)
    out: list[tuple[int, ...]] = []
    after = 0
    while True:
        n, _ = j.read(buf, 100, after, acks)
        for i in range(n):
            r = record.unpack(buf, 24 * i)
            assert r is not None  # read() returns only records whose CRC matches
            out.append(r)
        if n < 100:
            return out
        after = out[-1][0]


_READ_JOURNAL = """
import journal, record
j = journal.open()
buf = bytearray(24 * 50)
after = 0
while True:
    n, _ = j.read(buf, 50, after)
    for i in range(n):
        print("R", " ".join(str(v) for v in record.unpack(buf, i * 24)))
    if n < 50:
        break
    after = record.seq_of(buf, (n - 1) * 24)
print("ACKED", j.acked)
"""


def of_bulb(b: Bulb) -> tuple[list[tuple[int, ...]], int]:
    """(every record in the bulb's journal except its ack entries, the acknowledged seq), read
    by the firmware in MicroPython. Powers the bulb off first; reads a copy of its flash in
    <state_dir>-read, so the bulb's own directory stays intact."""
    from sim.bulb import run_snippet

    b.power_off()
    look = b.state_dir.parent / (b.state_dir.name + "-read")
    shutil.rmtree(look, ignore_errors=True)
    look.mkdir()
    shutil.copyfile(b.state_dir / "flash.bin", look / "flash.bin")
    out = run_snippet(_READ_JOURNAL, look, wifi=[])
    recs = [tuple(int(x) for x in line.split()[1:]) for line in out.splitlines()
            if line.startswith("R ")]
    acked = int(next(line for line in out.splitlines() if line.startswith("ACKED")).split()[1])
    return recs, acked


if __name__ == "__main__":
    _, rec = _firmware()
    for r in records(Path(sys.argv[1])):
        print(r[0], r[1], r[2], rec.KIND_NAMES.get(r[3], r[3]), *r[4:])
