# SPDX-License-Identifier: MIT
"""Pages that read what they show, measured with households that have history.

Households with DAYS days of visits each (5 a day, POWER_ON + ANCHOR + OFF) are written by
direct bulk inserts, with a status row each (as their last evaluation left it: a few alerts,
silent bulbs and pauses); the households a page shows are evaluated once first (their kept
state, as a running server has it).

home_page_ms_10k: a watcher's /home at 10,000 households; baseline: the same page at 10.
coordinator_page_ms_10k: the coordinator's /coordinator (first page) at 10,000 households;
baseline: the same page at 10.
coordinator_page_ms_1000: the same page at 1,000 households; baseline: the same page
at 4 (the sample pilot's size). All in-process (TestClient), the median of REPEAT renders, each
right after the baseline's (the load of the shared cores weighs on both sides alike).
upload_wait_ms_during_coordinator_1000: one server process (SQLite, its sweeper on) with 1,000
households; while a client renders /coordinator over and over, bulbs post batches one after
another: the worst time one waited. Baseline: the median upload when nothing else runs.

`python -m bench.figures_pages` prints the figures.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from bench.run import figure
from mimamori import households as hh
from mimamori import notify, sweeper
from mimamori.app import create_app
from mimamori.clock import DAY_MS, HOUR_MS
from mimamori.storage import Database, Store
from mimamori.web import auth
from mimamori.web.routes import OVERVIEW_PAGE
from mimamori_firmware import record
from sim.batch_client import BatchSender
from sim.server_process import REPO, ServerProcess, free_port

DAYS = 30
REPEAT = 21  # renders timed per page (after WARM untimed ones: templates compiled, caches warm)
WARM = 2
UPLOADS = 60
EPOCH = 0x5EED
START = datetime.fromisoformat("2026-01-01T00:00:00+09:00")
HOURS = (7, 10, 13, 18, 21)


def _build(path: Path, homes: int) -> tuple[int, dict[str, bytes]]:
    """homes households with DAYS days each, bulk-inserted; (now ms, device -> key)."""
    db = Database(path)
    Store(db)
    auth.open_web(db)
    t0 = int(START.timestamp() * 1000)
    now = t0 + DAYS * DAY_MS + 6 * HOUR_MS
    rng = random.Random(homes)
    keys: dict[str, bytes] = {}
    all_status: list[tuple] = []
    with db.tx() as c:
        for h in range(homes):
            hid = f"home-{h:05d}"
            hh.add_household(c, t0, hid, name=f"Home {h}")
            hh.add_watcher(c, t0, hid, "Aiko", email=f"aiko{h}@example.org")
            hh.add_watcher(c, t0, hid, "Ken", email=f"ken{h}@example.org")
        c.executemany("UPDATE households SET next_check = NULL WHERE id = ?",
                      [(f"home-{h:05d}",) for h in range(homes)])
    for lo in range(0, homes, 500):
        rows, journals, devices, status = [], [], [], []
        for h in range(lo, min(homes, lo + 500)):
            dev = f"bulb-{h:05d}"
            key = secrets.token_bytes(32)
            keys[dev] = key
            seq = boot = 0
            for d in range(DAYS):
                for hour in HOURS:
                    start = t0 + d * DAY_MS + hour * HOUR_MS + rng.randint(0, 3_000_000)
                    length = rng.randint(60_000, 900_000)
                    boot += 1
                    at = start + length + 1000
                    rows += [(dev, EPOCH, seq, boot, 5, record.K_POWER_ON, 1, 0, 1, at),
                             (dev, EPOCH, seq + 1, boot, 1000, record.K_ANCHOR,
                              record.A_SERVER, 0, start // 1000 + 1, at),
                             (dev, EPOCH, seq + 2, boot, length, record.K_OFF, 0, 0, 0, at)]
                    seq += 3
            devices.append((dev, key.hex(), f"home-{h:05d}", t0, EPOCH, boot, 1, seq - 1))
            journals.append((dev, EPOCH, boot, 1, seq - 1, t0, now))
            r = rng.random()
            state = ("unanswered" if r < 0.02 else "checking" if r < 0.03 else "late"
                     if r < 0.05 else "paused" if r < 0.08 else "well")
            status.append((f"home-{h:05d}", state, sweeper.STATES.index(state), now, now))
        with db.tx() as c:
            c.executemany("INSERT INTO devices (id, key, household, created_at, epoch, "
                          "last_boot, last_req, ack) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", devices)
            c.executemany("INSERT INTO journals (device, epoch, last_boot, last_req, ack, lost, "
                          "ordinal, first_heard_at, last_heard_at) "
                          "VALUES (?, ?, ?, ?, ?, 0, 1, ?, ?)", journals)
            c.executemany("INSERT INTO records (device, epoch, seq, boot, up_ms, kind, sub, aux, "
                          "arg, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            c.executemany("UPDATE household_status SET state = ?, rank = ?, last_on_ms = ?, "
                          "updated_ms = ? WHERE household = ?",
                          [(st, rank, on, at, hid) for hid, st, rank, on, at in status])
        all_status += status
    cfg = notify.NotifierSettings(console=open(os.devnull, "w"))  # noqa: SIM115 - kept for the run
    with db.read() as c:
        shown, _ = sweeper.overview(c, 0, OVERVIEW_PAGE)
    for hid in {*shown, "home-00000"}:  # what the pages show, evaluated as a server would
        sweeper.evaluate_household(db, hid, now, cfg)
    with db.tx() as c:  # their status as set above (the page shows the same households)
        c.executemany("UPDATE household_status SET state = ?, rank = ? WHERE household = ?",
                      [(st, rank, hid) for hid, st, rank, _, _ in all_status
                       if hid in shown or hid == "home-00000"])
    db.close()
    return now, keys


def _signed_in(app_or_url: object, db: Database, now_ms: int, role: str, subject: str,
               client: httpx.Client | TestClient) -> None:
    with db.tx() as c:
        token = auth.make_link(c, role, subject, now_ms, HOUR_MS)
    page = client.get(f"/in/{token}")
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, page.text[:300]
    r = client.post(f"/in/{token}", data={"csrf": m.group(1)}, follow_redirects=False)
    if r.status_code != 303:
        raise RuntimeError(f"sign-in failed: {r.status_code} {r.text[:200]}")


def _fixed(now_ms: int) -> Callable[[], float]:
    """A clock stopped at now_ms (Unix seconds, as create_app reads it)."""
    return lambda: now_ms / 1000


def _pages(paths: dict[str, Path], pairs: list[tuple[str, str, str]]
           ) -> dict[tuple[str, str], float]:
    """Median ms of each page of each pair (baseline database, measured database, path),
    rendered alternately (baseline, measured, baseline, ...): the shared cores' load, which
    moves by a factor of two within a run here, weighs on both sides of a ratio alike."""
    os.environ["MIMAMORI_SWEEP_S"] = "0"
    with contextlib.ExitStack() as stack:
        clients: dict[tuple[str, str], TestClient] = {}
        for name, path in paths.items():
            now, _ = _build(path, int(name))
            app = create_app(path, clock=_fixed(now))
            stack.callback(app.state.store.close)
            db = app.state.store.db
            with db.read() as c:
                wid = hh.watchers(c, "home-00000")[0].id
            for role, subject, where in ((auth.WATCHER, wid, "/home"),
                                         (auth.COORDINATOR, "office", "/coordinator")):
                if not any(where == w and name in (x, y) for x, y, w in pairs):
                    continue
                cl = stack.enter_context(TestClient(app, raise_server_exceptions=True))
                _signed_in(app, db, now, role, subject, cl)
                clients[(name, where)] = cl
        out: dict[tuple[str, str], float] = {}
        for base, measured, where in pairs:
            times: dict[str, list[float]] = {base: [], measured: []}
            for i in range(WARM + REPEAT):
                for name in (base, measured):
                    t = time.perf_counter()
                    r = clients[(name, where)].get(where)
                    took = time.perf_counter() - t
                    mark = "home-00000" if where == "/home" else "data-household="
                    if r.status_code != 200 or mark not in r.text:
                        raise RuntimeError(f"{where}: {r.status_code}, not the signed-in page")
                    if i >= WARM:
                        times[name].append(took)
            for name in (base, measured):
                out[(name, where)] = 1000 * statistics.median(times[name])
    return out


def _upload(cl: httpx.Client, b: BatchSender, at_s: float) -> float:
    b.boot += 1
    b.req = 0
    b.up_ms = 0
    recs = [b.record(record.K_POWER_ON, arg=1, up_ms=5),
            b.record(record.K_ANCHOR, record.A_SERVER, 0, int(at_s) - 60, up_ms=1000),
            b.record(record.K_OFF, up_ms=60_000)]
    req = b.request(recs, sent_up_ms=61_000)
    t = time.perf_counter()
    r = cl.post(req.path, content=req.body, headers=req.headers)
    took = time.perf_counter() - t
    if r.status_code != 200:
        raise RuntimeError(f"upload: {r.status_code} {r.text[:200]}")
    return took


def _upload_wait(path: Path, homes: int) -> tuple[float, float, int]:
    """(worst upload ms while the overview renders, median idle upload ms, renders)."""
    now, keys = _build(path, homes)
    db = Database(path)
    with db.read() as c:
        heads = {d: (b, s) for d, b, s in c.all("SELECT id, last_boot, ack + 1 FROM devices")}
    db.close()
    bulbs = []
    for dev in list(keys)[:UPLOADS * 2]:
        boot, seq = heads[dev]
        bulbs.append(BatchSender(dev, keys[dev], epoch=EPOCH, boot=boot, req=1, next_seq=seq))
    srv = ServerProcess(path, port=free_port(), clock=f"fixed:{now / 1000:.0f}",
                        env={"MIMAMORI_SWEEP_S": "1"})
    srv.start(timeout=60)
    try:
        base = f"http://127.0.0.1:{srv.port}"
        with httpx.Client(base_url=base, timeout=120) as up:
            idle = [_upload(up, b, now / 1000) for b in bulbs[:UPLOADS]]
            stop = threading.Event()
            renders = [0]

            def overview() -> None:
                with httpx.Client(base_url=base, timeout=300) as cl:
                    db2 = Database(path)
                    _signed_in(None, db2, now, auth.COORDINATOR, "office", cl)
                    db2.close()
                    while not stop.is_set():
                        if cl.get("/coordinator").status_code != 200:
                            raise RuntimeError("/coordinator failed")
                        renders[0] += 1

            th = threading.Thread(target=overview)
            th.start()
            try:
                while renders[0] == 0 and th.is_alive():  # signed in and rendering
                    time.sleep(0.05)
                busy = [_upload(up, b, now / 1000) for b in bulbs[UPLOADS:]]
            finally:
                stop.set()
                th.join()
    finally:
        srv.stop()
    return 1000 * max(busy), 1000 * statistics.median(idle), renders[0]


def figures() -> list[dict]:
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-pages-", dir=REPO / "var"))
    keep = os.environ.get("MIMAMORI_SWEEP_S")
    try:
        ms = _pages({n: work / f"p{n}.db" for n in ("4", "10", "1000", "10000")},
                    [("10", "10000", "/home"), ("10", "10000", "/coordinator"),
                     ("4", "1000", "/coordinator")])
        home10, home10k = ms[("10", "/home")], ms[("10000", "/home")]
        coord10, coord10k = ms[("10", "/coordinator")], ms[("10000", "/coordinator")]
        coord4, coord1000 = ms[("4", "/coordinator")], ms[("1000", "/coordinator")]
        worst, idle, renders = _upload_wait(work / "u1000.db", 1000)
    finally:
        if keep is None:
            os.environ.pop("MIMAMORI_SWEEP_S", None)
        else:
            os.environ["MIMAMORI_SWEEP_S"] = keep
        shutil.rmtree(work, ignore_errors=True)
    what = (f"households with {DAYS} days of visits ({len(HOURS)} a day) by bulk insert and "
            f"a status row each; median of {REPEAT} renders, each alternating with the "
            "baseline's, in-process, SQLite")
    return [
        figure("home_page_ms_10k", round(home10k, 1), "ms", round(home10, 1),
               "a watcher's /home at 10,000 households; baseline: 10 households; " + what),
        figure("coordinator_page_ms_10k", round(coord10k, 1), "ms", round(coord10, 1),
               f"/coordinator (first page of {OVERVIEW_PAGE}, counts of all) at 10,000 "
               "households; "
               "baseline: 10 households; " + what),
        figure("coordinator_page_ms_1000", round(coord1000, 1), "ms", round(coord4, 1),
               f"/coordinator (first page of {OVERVIEW_PAGE}: most urgent first, counts by "
               "state) at 1,000 households; baseline: the 4-household page; " + what),
        figure("upload_wait_ms_during_coordinator_1000", round(worst, 1), "ms", round(idle, 1),
               f"worst of {UPLOADS} uploads sent one after another while /coordinator rendered "
               f"{renders} times (1,000 households x {DAYS} days, one server process on "
               "SQLite, its sweeper on); baseline: median upload when idle"),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
