# SPDX-License-Identifier: MIT
"""Figures of `make image`: what compiling the firmware to .mpy buys on the bulb.

Baseline, measured in the same run: the same firmware modules copied as .py source (what a
bulb gets when the files are copied as they are). Figures:

- vfs bytes of the firmware files (.mpy + main.py + config.json) vs all sources;
- the smallest MicroPython heap (in words, as -X heapsize=NwK; word size cancels out in the
  ratio) in which every firmware module imports, from the compiled tree vs the source tree:
  source must be compiled on the bulb, and the compiler's peak is what runs out first;
- the heap still allocated after importing everything and a gc.collect().
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from bench.run import figure
from tools import image

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
SHIMS = REPO / "sim" / "shims"
MICROPYTHON = str(REPO / ".venv" / "bin" / "micropython")


def _modules() -> list[str]:
    return sorted(p.stem for p in FIRMWARE.glob("*.py") if p.name not in image.KEEP_SOURCE)


def _import_all(tree: Path, state: Path, heap_wk: int, modules: list[str]) -> int | None:
    """gc.mem_alloc() after importing every module from tree, or None if it did not fit."""
    code = (
        "import gc\n"
        f"for m in {modules!r}:\n"
        "    __import__(m)\n"
        "gc.collect()\n"
        "print('ALLOC', gc.mem_alloc())\n"
    )
    env = dict(
        os.environ,
        MIMAMORI_SIM=str(state / "sim.json"),
        MICROPYPATH=f"{SHIMS}:{tree}:.frozen",
    )
    r = subprocess.run(
        [MICROPYTHON, "-X", f"heapsize={heap_wk}wK", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=state,
        timeout=60,
        check=False,
    )
    for line in r.stdout.splitlines():
        if line.startswith("ALLOC "):
            return int(line.split()[1])
    return None


def _min_heap(tree: Path, state: Path, modules: list[str]) -> tuple[int, int]:
    """Smallest heap (wK) in which all modules import, and the heap they keep (bytes)."""
    lo, hi = 1, 256
    kept = _import_all(tree, state, hi, modules)
    if kept is None:
        raise RuntimeError(f"the firmware modules do not import from {tree} even in {hi}wK")
    while lo < hi:
        mid = (lo + hi) // 2
        if _import_all(tree, state, mid, modules) is None:
            lo = mid + 1
        else:
            hi = mid
    return hi, kept


def figures() -> list[dict]:
    modules = _modules()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        compiled, source, state = t / "mpy", t / "py", t / "state"
        for d in (compiled, source, state):
            d.mkdir()
        (state / "sim.json").write_text(json.dumps({"state": str(state), "time": {}}))
        files = image.collect(FIRMWARE, t)
        for name, data in files.items():
            if name not in image.KEEP_SOURCE:
                (compiled / name).write_bytes(data)
        for src in FIRMWARE.glob("*.py"):
            (source / src.name).write_bytes(src.read_bytes())
        src_bytes = sum(p.stat().st_size for p in FIRMWARE.glob("*.py"))
        src_bytes += sum((FIRMWARE / n).stat().st_size for n in image.DATA_FILES
                         if (FIRMWARE / n).exists())  # fmt: skip
        heap_mpy, kept_mpy = _min_heap(compiled, state, modules)
        heap_py, kept_py = _min_heap(source, state, modules)
    n = len(modules)
    return [
        figure("image_firmware_bytes", sum(len(d) for d in files.values()), "bytes", src_bytes,
               f"{len(files)} files in vfs.bin (.mpy, main.py, config.json) vs the sources"),
        figure("image_import_min_heap", heap_mpy, "wK", heap_py,
               f"smallest -X heapsize in which all {n} firmware modules import (with the sim "
               "shims, same in both): .mpy vs .py"),
        figure("image_import_heap_kept", kept_mpy, "bytes", kept_py,
               f"gc.mem_alloc() after importing all {n} modules and gc.collect(): .mpy vs .py"),
    ]  # fmt: skip


if __name__ == "__main__":
    for f in figures():
        print(f)
