# SPDX-License-Identifier: MIT
"""Firmware releases and their rollout to bulbs (docs/ota.md).

A release is `make release`'s manifest and bundle, kept in the database. A rollout gives chosen
bulbs (or a share of them) a target version, each with its own `not_before` spread over
`spread_h` hours, so a town's bulbs do not fetch at once. The answer to a batch offers the
target once it is due (`offer`); the bulb then GETs the manifest, signed here with its own key
(`protocol.sign_manifest`), and the bundle in pieces (`piece`). What the bulbs did comes back in
their journals (`K_OTA` records: installed, confirmed, rolled back and why, refused and why) and
in every upload's `fw` query (the version it runs); `progress` puts them together.

It must never offer a bulb a release it cannot fetch, never serve a piece to a device that was
not given that release, and never sign a manifest with another device's key.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimamori.clock import HOUR_MS
from mimamori.sql import Database
from mimamori.storage import Store, migrate
from mimamori_firmware import protocol, record

SCHEMA = [
    [
        """CREATE TABLE releases (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            manifest TEXT NOT NULL,
            size BIGINT NOT NULL,
            bundle BYTEA NOT NULL,
            added_at BIGINT NOT NULL
        )""",
        # one target per bulb: the release it should run, not offered before not_before
        """CREATE TABLE ota_targets (
            device TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
            version BIGINT NOT NULL REFERENCES releases (version),
            not_before BIGINT NOT NULL,
            set_at BIGINT NOT NULL
        )""",
        # what each bulb says it runs (the fw query of its uploads) and what it fetched
        """CREATE TABLE ota_bulbs (
            device TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
            running BIGINT NOT NULL DEFAULT 0,
            seen_at BIGINT NOT NULL DEFAULT 0,
            fetched BIGINT NOT NULL DEFAULT 0,
            fetching BIGINT NOT NULL DEFAULT 0
        )""",
    ],
]

_BUNDLES: dict[int, bytes] = {}  # version -> bundle bytes (releases never change)


class ReleaseError(ValueError):
    """A release or rollout request that cannot be done; the message says what to do."""


@dataclass(frozen=True)
class Release:
    version: int
    name: str
    size: int
    files: int
    added_at: int


# databases this process migrated already (weakly: an id() would be taken over by a database
# opened after this one is freed, which would then never get its tables)
_MIGRATED: weakref.WeakSet[Database] = weakref.WeakSet()


def open_ota(store: Store) -> None:
    if store.db not in _MIGRATED:
        migrate(store.db, "ota", SCHEMA)
        _MIGRATED.add(store.db)


def _check_manifest(manifest: bytes, bundle: bytes) -> dict[str, Any]:
    try:
        m = json.loads(manifest)
        files = m["files"]
        version = int(m["version"])
    except (ValueError, KeyError, TypeError) as e:
        raise ReleaseError(f"manifest.json is not a release manifest ({e}); build it with "
                           "`make release`") from None
    if sum(f[1] for f in files) != len(bundle) or m.get("size") != len(bundle):
        raise ReleaseError(f"bundle.bin has {len(bundle)} bytes but the manifest lists "
                           f"{sum(f[1] for f in files)}: use the two files of one `make release`")
    off = 0
    for name, n, digest in files:
        if hashlib.sha256(bundle[off : off + n]).hexdigest() != digest:
            raise ReleaseError(f"bundle.bin: {name} does not match its digest in the manifest")
        off += n
    if not 0 < version < 1 << 31:
        raise ReleaseError(f"version {version} is out of range 1..2147483647")
    return m


def add(store: Store, folder: Path, now_ms: int) -> Release:
    """Register build/release/<v>/ (manifest.json, bundle.bin)."""
    open_ota(store)
    try:
        manifest = (folder / "manifest.json").read_bytes()
        bundle = (folder / "bundle.bin").read_bytes()
    except OSError as e:
        raise ReleaseError(f"{folder}: {e.strerror} ({e.filename}); give the folder "
                           "`make release` printed") from None
    m = _check_manifest(manifest, bundle)
    v = int(m["version"])
    with store.db.tx() as c:
        if c.one("SELECT 1 FROM releases WHERE version = ?", (v,)):
            raise ReleaseError(f"release {v} is registered already; build a new version "
                               "(`make release VERSION=...`)")
        c.execute("INSERT INTO releases (version, name, manifest, size, bundle, added_at) "
                  "VALUES (?, ?, ?, ?, ?, ?)",
                  (v, str(m.get("name", "")), manifest.decode(), len(bundle), bundle, now_ms))
    return Release(v, str(m.get("name", "")), len(bundle), len(m["files"]), now_ms)


def releases(store: Store) -> list[Release]:
    open_ota(store)
    with store.db.read() as c:
        rows = c.all("SELECT version, name, manifest, size, added_at FROM releases "
                     "ORDER BY version")
    return [Release(v, n, s, len(json.loads(m)["files"]), a) for v, n, m, s, a in rows]


def _spread(device: str, version: int, spread_ms: int) -> int:
    """A bulb's own delay in [0, spread_ms): the same on every server instance."""
    h = hashlib.sha256(f"{device}/{version}".encode()).digest()
    return int.from_bytes(h[:8], "big") % spread_ms if spread_ms > 0 else 0


def _in_share(device: str, version: int, share: float) -> bool:
    h = hashlib.sha256(f"share/{device}/{version}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < share


def rollout(store: Store, version: int, now_ms: int, devices: list[str] | None = None,
            share: float | None = None, spread_h: float = 24.0) -> list[str]:
    """Give a release to chosen bulbs, or to a share (0..1) of all bulbs; the bulbs chosen."""
    open_ota(store)
    if share is not None and not 0 < share <= 1:
        raise ReleaseError(f"share {share}: give a fraction of the bulbs, 0 < share <= 1")
    if spread_h < 0:
        raise ReleaseError(f"spread {spread_h} h: give 0 or more hours")
    with store.db.tx() as c:
        if not c.one("SELECT 1 FROM releases WHERE version = ?", (version,)):
            raise ReleaseError(f"no release {version}: `mimamori release list` shows them")
        known = [r[0] for r in c.all("SELECT id FROM devices ORDER BY id")]
        if devices:
            unknown = [d for d in devices if d not in known]
            if unknown:
                raise ReleaseError(f"unknown bulbs: {', '.join(unknown)} "
                                   "(`mimamori device list` shows them)")
            chosen = list(devices)
        else:
            chosen = [d for d in known if _in_share(d, version, share if share else 1.0)]
        spread_ms = int(spread_h * HOUR_MS)
        for d in chosen:
            c.execute("DELETE FROM ota_targets WHERE device = ?", (d,))
            c.execute("INSERT INTO ota_targets (device, version, not_before, set_at) "
                      "VALUES (?, ?, ?, ?)", (d, version, now_ms + _spread(d, version, spread_ms),
                                              now_ms))
    return chosen


# ---- the bulb's side of the server: what an upload is answered, what a GET gets

def parse_fw(query: list[tuple[str, str]]) -> int | None:
    vals = [v for k, v in query if k == "fw"]
    if len(vals) != 1 or not vals[0].isdigit() or len(vals[0]) > 10:
        return None
    return int(vals[0])


_K_OTA = int(record.K_OTA)  # written into the SQL: the partial index records_ota (storage.py)
assert _K_OTA == 10, "records_ota indexes kind 10: a new migration must follow K_OTA"


def _bad(c: Any, device: str) -> set[int]:
    """Versions this bulb rolled back or refused (never offered again)."""
    rows = c.all(f"SELECT arg FROM records WHERE device = ? AND kind = {_K_OTA} AND sub IN "
                 "(?, ?)", (device, record.O_ROLLBACK, record.O_REFUSED))
    return {r[0] for r in rows}


def on_upload(store: Store, device: str, fw: int | None, now_ms: int) -> dict[str, int] | None:
    """Note the version a bulb runs; the offer for its answer, when one is due. Reads only,
    unless the bulb reports another version than before (no extra commit per upload)."""
    open_ota(store)
    with store.db.read() as c:
        row = c.one("SELECT running, seen_at FROM ota_bulbs WHERE device = ?", (device,))
        t = c.one("SELECT t.version, t.not_before, r.size FROM ota_targets t "
                  "JOIN releases r ON r.version = t.version WHERE t.device = ?", (device,))
        due = t is not None and t[1] <= now_ms and t[0] != fw and t[0] not in _bad(c, device)
    if fw is not None and (row is None or row[0] != fw or not row[1]):
        with store.db.tx() as c:  # seen_at: since when it runs this version
            if c.execute("UPDATE ota_bulbs SET running = ?, seen_at = ? WHERE device = ?",
                         (fw, now_ms, device)) == 0:
                c.execute("INSERT INTO ota_bulbs (device, running, seen_at) VALUES (?, ?, ?)",
                          (device, fw, now_ms))
    return protocol.ota_offer(t[0], t[2]) if due and t is not None else None


def _target_ok(c: Any, device: str, version: int) -> bool:
    return c.one("SELECT 1 FROM ota_targets WHERE device = ? AND version = ?",
                 (device, version)) is not None


def manifest_for(store: Store, device: str, key: bytes, version: int) -> bytes | None:
    """The signed manifest answer for this bulb, or None (not its release)."""
    open_ota(store)
    with store.db.read() as c:
        if not _target_ok(c, device, version):
            return None
        row = c.one("SELECT manifest FROM releases WHERE version = ?", (version,))
    if row is None:
        return None
    man = row[0].encode()
    return protocol.sign_manifest(key, device, version, man).encode() + b"\n" + man


def piece(store: Store, device: str, version: int, off: int, n: int) -> bytes | None:
    """Bytes [off, off + n) of the bundle for this bulb, or None (not its release or range)."""
    open_ota(store)
    if off < 0 or not 0 < n <= protocol.PIECE:
        return None
    with store.db.tx() as c:
        if not _target_ok(c, device, version):
            return None
        blob = _BUNDLES.get(version)
        if blob is None:
            row = c.one("SELECT bundle FROM releases WHERE version = ?", (version,))
            if row is None:
                return None
            blob = _BUNDLES.setdefault(version, bytes(row[0]))
        if off + n > len(blob):
            return None
        if c.execute("UPDATE ota_bulbs SET fetched = fetched + ?, fetching = ? WHERE device = ?",
                     (n, version, device)) == 0:
            c.execute("INSERT INTO ota_bulbs (device, fetched, fetching) VALUES (?, ?, ?)",
                      (device, n, version))
    return blob[off : off + n]


# ---- what the coordinator sees

def events(store: Store, device: str | None = None) -> list[dict[str, Any]]:
    """Every K_OTA record (installed, confirmed, rollback, refused, with its reason)."""
    open_ota(store)
    sql = f"SELECT device, sub, aux, arg, received_at FROM records WHERE kind = {_K_OTA}"
    params: list[Any] = []
    if device:
        sql += " AND device = ?"
        params.append(device)
    with store.db.read() as c:
        rows = c.all(sql + " ORDER BY received_at, device", params)
    out = []
    for d, sub, aux, arg, at in rows:
        e: dict[str, Any] = {"device": d, "event": record.OTA_NAMES.get(sub, str(sub)),
                             "version": arg, "received_at": at}
        if sub in (record.O_ROLLBACK, record.O_REFUSED):
            e["reason"] = record.REASON_NAMES.get(aux, str(aux))
        elif sub == record.O_INSTALLED:
            e["from"] = aux
        out.append(e)
    return out


def running(store: Store, device: str) -> int | None:
    """The version the bulb's last upload said it runs (None: it never said)."""
    open_ota(store)
    with store.db.read() as c:
        row = c.one("SELECT running, seen_at FROM ota_bulbs WHERE device = ?", (device,))
    return int(row[0]) if row and row[1] else None


def last_problem(store: Store, device: str) -> str | None:
    """The bulb's last rollback or refusal, e.g. "rollback r8: crash" (the coordinator page)."""
    bad = [e for e in events(store, device) if e["event"] in ("rollback", "refused")]
    if not bad:
        return None
    e = bad[-1]
    return f"{e['event']} r{e['version']}: {e['reason']}"


def bulbs(store: Store) -> dict[str, dict[str, Any]]:
    """Per bulb: the version it runs, its target, bytes fetched."""
    open_ota(store)
    with store.db.read() as c:
        rows = c.all("SELECT d.id, b.running, b.seen_at, b.fetched, t.version, t.not_before "
                     "FROM devices d LEFT JOIN ota_bulbs b ON b.device = d.id "
                     "LEFT JOIN ota_targets t ON t.device = d.id ORDER BY d.id")
    return {d: {"running": run, "seen_at": seen, "fetched": fetched or 0, "target": tv,
                "not_before": nb} for d, run, seen, fetched, tv, nb in rows}


def progress(store: Store, version: int) -> dict[str, Any]:
    """Where a release's rollout stands: each targeted bulb's state and the counts."""
    by = bulbs(store)
    ev = events(store)
    state: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for d, b in by.items():
        if b["target"] != version and b["running"] != version:
            continue
        s = "waiting"
        if b["running"] == version:
            s = "running"
        elif b["fetched"]:
            s = "downloading"
        for e in ev:
            if e["device"] == d and e["version"] == version:
                if e["event"] in ("rollback", "refused"):
                    s = "rolled_back" if e["event"] == "rollback" else "refused"
                    reasons[d] = e["reason"]
                elif e["event"] == "installed" and s != "running":
                    s = "installed"
        state[d] = s
    counts: dict[str, int] = {}
    for s in state.values():
        counts[s] = counts.get(s, 0) + 1
    return {"version": version, "bulbs": state, "reasons": reasons, "counts": counts}

