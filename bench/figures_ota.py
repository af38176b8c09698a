# SPDX-License-Identifier: MIT
"""Figures of firmware updates over the air (docs/ota.md), the real firmware in MicroPython
through the modem emulator against the real server.

- ota_bytes_lte: bytes on the air (sim/modem.py AIR_MODEL) for one update over LTE-M: the
  visit that fetches the whole release, its own report included; baseline: the bundle's size.
- ota_visits_needed: 30 s visits over LTE-M until the update is verified and switched, with a
  visit's capacity modelled as (30 s - 10 s of attach and report) x 2 KB/s (weak-coverage
  LTE-M, about 16 kbit/s of payload) = 40,000 bytes of answer per connection (the emulator's
  drop_after_rx); baseline: the visits the bundle alone would fill, rounded up.
- ota_powerloss_cuts: tests/ota_sweep.py at every flash operation of an update on LittleFS
  (download, verification, switch, the trial boot, the confirmation).
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

from bench.run import figure
from mimamori import ota
from mimamori.storage import Store
from sim.modem import Modem
from tests.uplink_rig import Rig
from tools import release

REPO = Path(__file__).resolve().parent.parent
VISIT_BYTES = 40_000  # 20 s of payload at 2 KB/s in a 30 s visit


def _lte_update(tmp: Path, drop: int | None) -> tuple[int, int, int]:
    """(air bytes, visits, bundle bytes) of one update over LTE-M."""
    rig = Rig(tmp).start()
    modem = Modem(tmp / "uart1.sock").start()
    try:
        folder = release.write(release.bundle(7), tmp / "rel")
        st = Store.open(rig.db)
        ota.add(st, folder, 0)
        ota.rollout(st, 7, 0, [rig.device], spread_h=0)
        st.close()
        modem.faults.drop_after_rx = drop
        b = rig.bulb(site=rig.site("lte", apn="iot.example", lte_report_gap_s=0),
                     uart={"1": modem.path}, extra={"seed": 3})
        visits = 0
        while visits < 30 and "release 7 verified" not in b.stdout:
            b.power_on(stop_at_s=30, timeout=120)
            visits += 1
        if "release 7 verified" not in b.stdout:
            raise RuntimeError("the update did not complete in 30 visits:\n" + b.stdout[-2000:])
        return modem.air.total, visits, (folder / "bundle.bin").stat().st_size
    finally:
        modem.stop()
        rig.stop()


def _sweep(tmp: Path) -> dict:
    import hashlib

    rel = release.write(release.bundle(7), tmp / "rel")
    old = {"main.py": "print('five')\n", "app.py": "X = 5\n" * 40}
    man = {"version": 5, "size": 0, "files": [
        [n, len(t), hashlib.sha256(t.encode()).hexdigest()] for n, t in old.items()]}
    (rel / "v5.json").write_text(json.dumps({"manifest": man, "files": old}))
    out = subprocess.run(
        [str(REPO / ".venv/bin/micropython"), "-X", "heapsize=4M",
         str(REPO / "tests/ota_sweep.py"), str(REPO), str(tmp / "flash.bin"), str(rel), "ab" * 32, "1"],
        capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def figures() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="mimamori-ota-") as t:
        tmp = Path(t)
        air, _, size = _lte_update(tmp / "one", None)
        _, visits, _ = _lte_update(tmp / "short", VISIT_BYTES)
        s = _sweep(tmp / "sweep")
    bricked = s["bricked"] + s["resume_failed"]
    return [
        figure("ota_bytes_lte", air, "B", size,
               f"one update of {size} bytes ({s['ops']} flash ops) in one LTE-M visit, its "
               "report, the manifest and the pieces' requests, TCP included"),
        figure("ota_visits_needed", visits, "visits", math.ceil(size / VISIT_BYTES),
               "30 s LTE-M visits, 40,000 bytes each (2 KB/s for 20 s after attach and report); "
               "each resumes from flash"),
        figure("ota_powerloss_cuts", s["cuts"], "cuts", None,
               f"every flash op of an update; bricked {bricked}, mixed versions {s['mixed']}; "
               f"old version after {s['ok_old']}, new after {s['ok_new']}"),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
