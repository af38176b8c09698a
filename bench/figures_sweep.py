# SPDX-License-Identifier: MIT
"""Sweeper figures: one sweep over 100,000 households with 1 % due, through the next_check index,
against a full scan that reads every household's next_check (same database, same run).

Each household has a watcher and a bulb with one visit, so a due household's evaluation is real
(timeline, rules, alert lifecycle, next_check update). The two sweeps run on identical copies of
the database file: the first sweep of each evaluates the same 1,000 households.

`python -m bench.figures_sweep` prints the figures.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.run import figure
from mimamori import households as hh
from mimamori import models, notify, sweeper
from mimamori.storage import Database, Store

N = 100_000
DUE = N // 100
T0_MS = 1_772_415_720_000  # 2026-03-02 10:42 JST


def _build(path: Path) -> None:
    db = Database(path)
    Store(db)
    hh.open_people(db)
    st = json.dumps(hh.settings_json(hh.parse_settings({"activity_rule": "fixed"})))
    now = T0_MS
    with db.tx() as c:
        c.executemany(
            "INSERT INTO households (id, name, tz, settings, created_at, evaluated_at, "
            "next_check, digest_due) VALUES (?, ?, 'Asia/Tokyo', ?, ?, ?, ?, ?)",
            [(f"h{i:06d}", f"home {i}", st, now, now,
              now - 1000 if i % 100 == 0 else now + 3_600_000 + i * 1000, now + 7 * 86_400_000)
             for i in range(N)])
        c.executemany(
            "INSERT INTO watchers (id, household, name, role, tier, lang, console, created_at) "
            "VALUES (?, ?, 'Aiko', 'family', 1, 'ja', 1, ?)",
            [(f"w{i:06d}", f"h{i:06d}", now) for i in range(N)])
        c.executemany("INSERT INTO devices (id, key, household, created_at) VALUES (?, ?, ?, ?)",
                      [(f"b{i:06d}", "00" * 32, f"h{i:06d}", now) for i in range(N)])
    db.close()


def _sweep_ms(path: Path, full_scan: bool) -> tuple[float, float, int]:
    models.clear_cache()  # each sweep learns its households' models from scratch
    db = Database(path)
    cfg = notify.NotifierSettings()
    with db.tx() as c:
        t = time.perf_counter()
        ids = (sweeper.due_by_full_scan if full_scan else sweeper.due)(c, T0_MS, 1_000_000)
        find = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    r = sweeper.sweep(db, T0_MS, cfg, limit=1_000_000, full_scan=full_scan)
    total = (time.perf_counter() - t) * 1000
    db.close()
    assert len(ids) == DUE and len(r.evaluated) == DUE and not r.failed, (len(ids), r.failed)
    return total, find, len(r.evaluated)


def figures() -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="mimamori-sweep-"))
    try:
        base = tmp / "base.db"
        _build(base)
        for name in ("index.db", "scan.db"):
            shutil.copyfile(base, tmp / name)
            for ext in ("-wal", "-shm"):
                if (tmp / f"base.db{ext}").exists():
                    shutil.copyfile(tmp / f"base.db{ext}", tmp / f"{name}{ext}")
        idx_total, idx_find, n = _sweep_ms(tmp / "index.db", full_scan=False)
        scan_total, scan_find, _ = _sweep_ms(tmp / "scan.db", full_scan=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    note = (f"{N:,} households, {n:,} due (1 %), each evaluated (timeline, rules, lifecycle); "
            "baseline: the same sweep finding them by reading every next_check")
    return [
        figure("alert_sweep_ms_100k", round(idx_total, 1), "ms", round(scan_total, 1), note),
        figure("alert_sweep_find_ms_100k", round(idx_find, 2), "ms", round(scan_find, 2),
               "finding the 1,000 due households only: index range vs full scan"),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
