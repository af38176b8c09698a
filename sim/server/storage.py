# SPDX-License-Identifier: MIT
"""The record store: devices, their journals, the records they sent, and the ingest transaction.

One SQLite file (WAL, foreign keys, synchronous=FULL so an acknowledged record survives a power
cut of the server) or one PostgreSQL database, behind the thin layer of sql.py (`Database`:
`tx()` writes, `read()` reads). The SQL is portable: standard types (BIGINT, INTEGER, TEXT), `?`
placeholders that the layer rewrites for psycopg, `INSERT ... ON CONFLICT (...) DO NOTHING`
(SQLite >= 3.24 and PostgreSQL >= 9.5), no AUTOINCREMENT/rowid, no `INSERT OR IGNORE`, no
`WITHOUT ROWID`, no `%`. A read that decides a write locks the row it read (`c.for_update`):
correctness never rests on SQLite's whole-file write lock (docs/scaling.md).

It must never acknowledge a record it has not committed, and never change anything for a
request it refuses (every refusal rolls the transaction back).

Times are Unix milliseconds (BIGINT), taken from the caller (`now_ms`), never from the clock.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimamori.sql import Cursor, Database, Migration, migrate
from mimamori_firmware import record

if TYPE_CHECKING:
    from mimamori.settings import BulbSettings

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
KEY_BYTES = 32
_ADVANCE_CHUNK = 512


# ---------------------------------------------------------------------------------------------
# migrations: one row per component, so other parts of the server (alerts, people) keep their
# own numbered steps next to their code and call migrate() with them at start (sql.migrate,
# importable from here too).

SCHEMA: list[Migration] = [
    # 1: devices, journals, records, batches, losses
    [
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL,
            household TEXT,
            created_at BIGINT NOT NULL,
            epoch BIGINT,
            last_boot BIGINT,
            last_req BIGINT,
            ack BIGINT,
            first_heard_at BIGINT,
            last_heard_at BIGINT,
            settings_version INTEGER NOT NULL DEFAULT 0,
            settings TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX devices_household ON devices (household)",
        """CREATE TABLE journals (
            device TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
            epoch BIGINT NOT NULL,
            last_boot BIGINT NOT NULL,
            last_req BIGINT NOT NULL,
            ack BIGINT NOT NULL,
            lost BIGINT NOT NULL DEFAULT 0,
            ordinal INTEGER NOT NULL,
            first_heard_at BIGINT NOT NULL,
            last_heard_at BIGINT NOT NULL,
            PRIMARY KEY (device, epoch)
        )""",
        """CREATE TABLE records (
            device TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            boot BIGINT NOT NULL,
            up_ms BIGINT NOT NULL,
            kind INTEGER NOT NULL,
            sub INTEGER NOT NULL,
            aux INTEGER NOT NULL,
            arg BIGINT NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (device, epoch, seq),
            FOREIGN KEY (device, epoch) REFERENCES journals (device, epoch) ON DELETE CASCADE
        )""",
        "CREATE INDEX records_received ON records (device, received_at)",
        """CREATE TABLE batches (
            device TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            boot BIGINT NOT NULL,
            req BIGINT NOT NULL,
            from_seq BIGINT NOT NULL,
            count INTEGER NOT NULL,
            stored INTEGER NOT NULL,
            ack BIGINT NOT NULL,
            bytes INTEGER NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (device, epoch, boot, req),
            FOREIGN KEY (device, epoch) REFERENCES journals (device, epoch) ON DELETE CASCADE
        )""",
        "CREATE INDEX batches_received ON batches (device, received_at)",
        """CREATE TABLE losses (
            device TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            first_seq BIGINT NOT NULL,
            last_seq BIGINT NOT NULL,
            missing BIGINT NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (device, epoch, first_seq),
            FOREIGN KEY (device, epoch) REFERENCES journals (device, epoch) ON DELETE CASCADE
        )""",
    ],
    # 2: the receipt anchor of each batch (docs/protocol.md "Receipt anchor"): the bulb's uptime
    # in the header (NULL: not given) and how long the server took from starting to handle the
    # request to received_at; the bulb's clock read up_ms at most that long (plus the transit)
    # before received_at
    [
        "ALTER TABLE batches ADD COLUMN up_ms BIGINT",
        "ALTER TABLE batches ADD COLUMN up_wait_ms BIGINT",
    ],
    # 3: losses counted exactly (docs/journal.md "Every loss reported"): a bulb's K_ACK entries
    # take no seq, so the seqs below from_seq the server never got are exactly the records
    # overwritten unsent (cause 'overwritten'), and each K_LOSS L_UNREADABLE record is one
    # record the bulb could not read (cause 'unreadable', at the report's seq); the bulb's own
    # running total from its newest K_LOSS beside it; a seq that arrives again with other
    # content is kept in seq_conflicts and counted, for the coordinator
    [
        "ALTER TABLE losses ADD COLUMN cause TEXT NOT NULL DEFAULT 'overwritten'",
        "ALTER TABLE journals ADD COLUMN reported_lost BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE journals ADD COLUMN conflicts BIGINT NOT NULL DEFAULT 0",
        """CREATE TABLE seq_conflicts (
            device TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            boot BIGINT NOT NULL,
            up_ms BIGINT NOT NULL,
            kind INTEGER NOT NULL,
            sub INTEGER NOT NULL,
            aux INTEGER NOT NULL,
            arg BIGINT NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (device, epoch, seq, boot, up_ms, kind, sub, aux, arg),
            FOREIGN KEY (device, epoch) REFERENCES journals (device, epoch) ON DELETE CASCADE
        )""",
    ],
    # 4: each device's batches numbered in the order accepted (under the device's row lock), so
    # the kept evaluation state (sim/server/kept.py) reads only the batches after the last it
    # folded in, whatever the instances' clocks say
    [
        "ALTER TABLE devices ADD COLUMN batches BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE batches ADD COLUMN n BIGINT",
        "CREATE INDEX batches_n ON batches (device, n)",
    ],
    # 5: a bulb's firmware-update records (kind 10, record.K_OTA) by device, a partial index:
    # the answer to an upload of a bulb an update is due for checks them (ota.on_upload), and
    # read through (device, kind) they were a scan of the bulb's whole history; no other record
    # is in the index, so it costs nothing per switch-on. Queries name kind 10 literally (a
    # bound parameter does not prove the index's WHERE on SQLite)
    [
        "CREATE INDEX records_ota ON records (device, seq) WHERE kind = 10",
    ],
]


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Device:
    id: str
    key: str  # 64 hex characters; the HMAC key is the 32 bytes they encode
    household: str | None
    created_at: int
    epoch: int | None  # journal epoch of the last accepted request
    last_boot: int | None
    last_req: int | None
    ack: int | None  # acknowledged position in that epoch's journal
    first_heard_at: int | None
    last_heard_at: int | None
    settings_version: int
    settings: BulbSettings = field(default_factory=dict)

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


_DEVICE_COLS = (
    "id, key, household, created_at, epoch, last_boot, last_req, ack, first_heard_at, "
    "last_heard_at, settings_version, settings"
)


def _device(row: tuple) -> Device:
    (id_, key, household, created_at, epoch, last_boot, last_req, ack, first_heard_at,
     last_heard_at, settings_version, settings) = row
    return Device(id_, key, household, created_at, epoch, last_boot, last_req, ack,
                  first_heard_at, last_heard_at, settings_version, json.loads(settings))


@dataclass(frozen=True)
class Record:
    """One stored journal record. (device, epoch, seq) is unique; `boot` restarts per epoch."""

    device: str
    epoch: int
    seq: int
    boot: int
    up_ms: int
    kind: int
    sub: int
    aux: int
    arg: int
    received_at: int


_RECORD_COLS = "device, epoch, seq, boot, up_ms, kind, sub, aux, arg, received_at"


@dataclass(frozen=True)
class Journal:
    """One journal epoch of a device: its replay counter, ack and losses so far."""

    device: str
    epoch: int
    ordinal: int  # 1 for the first journal heard from the device, then 2, ...
    last_boot: int
    last_req: int
    ack: int
    lost: int  # records this server will never get: overwritten unsent, or unreadable on the bulb
    first_heard_at: int
    last_heard_at: int
    reported_lost: int = 0  # the bulb's own running total (its newest K_LOSS record's arg)
    conflicts: int = 0  # records that arrived with a stored seq but other content


@dataclass(frozen=True)
class Loss:
    """Seqs first_seq..last_seq hold `missing` records the server will never get."""

    device: str
    epoch: int
    first_seq: int
    last_seq: int
    missing: int
    received_at: int
    cause: str = "overwritten"  # seqs below a batch's from_seq never received; "unreadable":
    # one record the bulb could not read, reported by the K_LOSS record at first_seq


@dataclass(frozen=True)
class Conflict:
    """A record that arrived with the seq of a stored one but other content (kept, not used)."""

    device: str
    epoch: int
    seq: int
    boot: int
    up_ms: int
    kind: int
    sub: int
    aux: int
    arg: int
    received_at: int


@dataclass(frozen=True)
class Delivery:
    """One accepted batch: when it came and what it brought (for delivery-quality rules)."""

    device: str
    epoch: int
    boot: int
    req: int
    from_seq: int
    count: int
    stored: int
    ack: int
    bytes: int
    received_at: int
    up_ms: int | None = None  # the bulb's uptime in the header when it sent (None: not given)
    up_wait_ms: int | None = None  # server time from handling the request to received_at


@dataclass(frozen=True)
class Batch:
    """A parsed, authenticated request body (see mimamori.ingest.parse_batch)."""

    device: str
    epoch: int
    from_seq: int
    boot: int
    req: int
    records: list[tuple[int, int, int, int, int, int, int]]  # record.unpack tuples
    size: int  # body bytes
    up_ms: int = 0  # the bulb's uptime when it sent (ms since this boot); 0: not given


@dataclass(frozen=True)
class Accepted:
    ack: int
    stored: int  # records new to the store
    settings_version: int
    settings: BulbSettings
    conflicts: int = 0  # records of this batch whose seq was stored with other content


class Replayed(Exception):
    """(boot, req) is not above the last accepted pair of that device's journal."""

    def __init__(self, epoch: int, last_boot: int, last_req: int):
        super().__init__(epoch, last_boot, last_req)
        self.epoch, self.last_boot, self.last_req = epoch, last_boot, last_req


class UnknownDevice(KeyError):
    pass


def site_snippet(dev: Device, server: str) -> dict[str, str]:
    """The site-config keys (fs/site.json) that let a bulb talk to this server."""
    return {"server": server, "device_id": dev.id, "device_key": dev.key}


# ---------------------------------------------------------------------------------------------
# the store


class Store:
    def __init__(self, db: Database):
        self.db = db
        migrate(db, "ingest", SCHEMA)
        from mimamori import kept  # the evaluation state kept per bulb (it reads this store)

        migrate(db, "kept", kept.SCHEMA)
        # (cursor, device id, now_ms) -> None, run inside the transaction of each accepted batch
        # that stored a record (the alert side marks the household for evaluation, so a crash
        # right after the commit cannot lose the evaluation a switch-on needs; a resend that
        # stored nothing changes nothing the rules read, so it evaluates nothing)
        self.in_ingest: list[Callable[[Cursor, str, int], None]] = []

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """A store on a SQLite file or a postgresql:// URL."""
        return cls(Database(path))

    def close(self) -> None:
        self.db.close()

    # -- registry -------------------------------------------------------------------------------

    def register_device(
        self, now_ms: int, device_id: str | None = None, household: str | None = None
    ) -> Device:
        """A new device with a fresh random key. Raises ValueError if the id is bad or taken."""
        if device_id is None:
            device_id = "bulb-" + secrets.token_hex(4)
        if not DEVICE_ID_RE.match(device_id):
            raise ValueError(
                f"device id {device_id!r}: use 1-32 letters, digits, '.', '_' or '-'"
            )
        key = secrets.token_bytes(KEY_BYTES).hex()
        with self.db.tx() as c:
            if not c.execute(
                "INSERT INTO devices (id, key, household, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (device_id, key, household, now_ms),
            ):
                raise ValueError(
                    f"device {device_id!r} is already registered: pick another --id, "
                    "or `mimamori device rekey` it"
                )
        dev = self.device(device_id)
        assert dev is not None
        return dev

    def rekey_device(self, device_id: str) -> Device:
        """A new key (the old one stops working at once); the journals and records stay."""
        key = secrets.token_bytes(KEY_BYTES).hex()
        with self.db.tx() as c:
            if not c.execute("UPDATE devices SET key = ? WHERE id = ?", (key, device_id)):
                raise UnknownDevice(device_id)
        dev = self.device(device_id)
        assert dev is not None
        return dev

    def set_settings(self, device_id: str, settings: BulbSettings) -> int:
        """Replace the settings pushed to the device (already validated); bumps the version."""
        with self.db.tx() as c:
            row = c.one("SELECT settings_version FROM devices WHERE id = ?" + c.for_update,
                        (device_id,))
            if row is None:
                raise UnknownDevice(device_id)
            version = row[0] + 1
            c.execute(
                "UPDATE devices SET settings = ?, settings_version = ? WHERE id = ?",
                (json.dumps(settings, sort_keys=True, separators=(",", ":")), version, device_id),
            )
        return version

    def device(self, device_id: str) -> Device | None:
        with self.db.read() as c:
            row = c.one(f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?", (device_id,))
        return _device(row) if row else None

    def devices(self, household: str | None = None) -> list[Device]:
        """All devices, or those of one household, by id."""
        with self.db.read() as c:
            if household is None:
                rows = c.all(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY id")
            else:
                rows = c.all(
                    f"SELECT {_DEVICE_COLS} FROM devices WHERE household = ? ORDER BY id",
                    (household,),
                )
        return [_device(r) for r in rows]

    def unassigned_devices(self) -> list[Device]:
        """Devices in no household yet (installers register bulbs first), by id."""
        with self.db.read() as c:
            rows = c.all(f"SELECT {_DEVICE_COLS} FROM devices WHERE household IS NULL "
                         "ORDER BY id")
        return [_device(r) for r in rows]

    # -- reading records ------------------------------------------------------------------------

    def records_for_device(
        self, device_id: str, since_received_ms: int | None = None
    ) -> list[Record]:
        """The device's records in journal order: journals in the order first heard, then seq.

        since_received_ms: only records that arrived at or after that server time (what is new
        since the last evaluation; late records keep their place by (epoch, seq)).
        """
        sql = (
            f"SELECT {', '.join('r.' + c.strip() for c in _RECORD_COLS.split(','))} "
            "FROM records r JOIN journals j ON j.device = r.device AND j.epoch = r.epoch "
            "WHERE r.device = ?"
        )
        params: list[Any] = [device_id]
        if since_received_ms is not None:
            sql += " AND r.received_at >= ?"
            params.append(since_received_ms)
        sql += " ORDER BY j.ordinal, r.seq"
        with self.db.read() as c:
            return [Record(*r) for r in c.all(sql, params)]

    def records_for_household(
        self, household: str, since_received_ms: int | None = None
    ) -> dict[str, list[Record]]:
        """Per device of the household (by id), its records as records_for_device gives them."""
        return {
            d.id: self.records_for_device(d.id, since_received_ms)
            for d in self.devices(household)
        }

    def journals(self, device_id: str) -> list[Journal]:
        """The device's journal epochs in the order first heard."""
        with self.db.read() as c:
            rows = c.all(
                "SELECT device, epoch, ordinal, last_boot, last_req, ack, lost, first_heard_at, "
                "last_heard_at, reported_lost, conflicts FROM journals WHERE device = ? "
                "ORDER BY ordinal",
                (device_id,),
            )
        return [Journal(*r) for r in rows]

    def losses(self, device_id: str) -> list[Loss]:
        with self.db.read() as c:
            rows = c.all(
                "SELECT device, epoch, first_seq, last_seq, missing, received_at, cause "
                "FROM losses WHERE device = ? ORDER BY received_at, epoch, first_seq",
                (device_id,),
            )
        return [Loss(*r) for r in rows]

    def conflicts(self, device_id: str) -> list[Conflict]:
        """Records that arrived with a stored seq but other content, oldest first."""
        with self.db.tx() as c:
            rows = c.all(
                f"SELECT {_RECORD_COLS} FROM seq_conflicts WHERE device = ? "
                "ORDER BY received_at, epoch, seq",
                (device_id,),
            )
        return [Conflict(*r) for r in rows]

    def deliveries(self, device_id: str, since_received_ms: int | None = None) -> list[Delivery]:
        """Accepted batches of the device, oldest first."""
        sql = (
            "SELECT device, epoch, boot, req, from_seq, count, stored, ack, bytes, received_at, "
            "up_ms, up_wait_ms FROM batches WHERE device = ?"
        )
        params: list[Any] = [device_id]
        if since_received_ms is not None:
            sql += " AND received_at >= ?"
            params.append(since_received_ms)
        with self.db.read() as c:
            return [Delivery(*r) for r in c.all(sql + " ORDER BY received_at, epoch, boot, req",
                                                params)]

    def dump(self) -> dict[str, list[tuple]]:
        """Every row of the ingest tables, sorted (tests compare dumps: 'nothing changed')."""
        out = {}
        with self.db.read() as c:
            for table in ("devices", "journals", "records", "batches", "losses",
                          "seq_conflicts"):
                out[table] = sorted(c.all(f"SELECT * FROM {table}"), key=repr)
        return out

    # -- ingest ---------------------------------------------------------------------------------

    def ingest(self, batch: Batch, now_ms: int, heard_ms: int | None = None) -> Accepted:
        """Store an authenticated batch once and return the acknowledged position.

        heard_ms: when the server started handling the request (received_at is now_ms); with
        the header's up_ms it makes the batch's receipt anchor (None: now_ms).

        Raises Replayed (nothing changed) when (boot, req) is not above the last pair accepted
        for this device and epoch. A never-seen epoch starts a new journal whose acknowledged
        position starts just below from_seq.
        """
        dev, ep = batch.device, batch.epoch
        with self.db.tx() as c:
            # one request of a device at a time, on any instance: the replay check, the new
            # journal's ordinal and the ack below are read-then-write under this row lock
            if c.one("SELECT id FROM devices WHERE id = ?" + c.for_update, (dev,)) is None:
                raise UnknownDevice(dev)
            ack, lost, reported = _journal_for(c, batch, now_ms)
            stored, conflicts, unreadable = _store_records(c, batch, now_ms)
            ack, missing = _count_gaps(c, batch, ack, now_ms)
            missing += unreadable
            ack = _advance(c, dev, ep, ack)
            for r in batch.records:  # the bulb's own count: its newest K_LOSS says it all
                if r[3] == record.K_LOSS:
                    reported = max(reported, r[6])
            c.execute(
                "UPDATE journals SET last_boot = ?, last_req = ?, ack = ?, lost = ?, "
                "reported_lost = ?, conflicts = conflicts + ?, last_heard_at = ? "
                "WHERE device = ? AND epoch = ?",
                (batch.boot, batch.req, ack, lost + missing, reported, conflicts, now_ms, dev,
                 ep),
            )
            wait = max(0, now_ms - (now_ms if heard_ms is None else heard_ms))
            c.execute(
                "UPDATE devices SET epoch = ?, last_boot = ?, last_req = ?, ack = ?, "
                "first_heard_at = COALESCE(first_heard_at, ?), last_heard_at = ?, "
                "batches = batches + 1 WHERE id = ?",
                (ep, batch.boot, batch.req, ack, now_ms, now_ms, dev),
            )
            row = c.one("SELECT settings_version, settings, batches FROM devices WHERE id = ?",
                        (dev,))
            assert row is not None
            c.execute(
                "INSERT INTO batches (device, epoch, boot, req, from_seq, count, stored, ack, "
                "bytes, received_at, up_ms, up_wait_ms, n) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (dev, ep, batch.boot, batch.req, batch.from_seq, len(batch.records), stored,
                 ack, batch.size, now_ms, batch.up_ms or None, wait if batch.up_ms else None,
                 row[2]),
            )
            if stored:
                for hook in self.in_ingest:
                    hook(c, dev, now_ms)
        return Accepted(ack=ack, stored=stored, settings_version=row[0],
                        settings=json.loads(row[1]), conflicts=conflicts)


def _journal_for(c: Cursor, batch: Batch, now_ms: int) -> tuple[int, int, int]:
    """(ack, lost, reported_lost) of the batch's journal, created at first contact (its ack
    just below from_seq); Replayed when (boot, req) is not above the last accepted pair."""
    dev, ep = batch.device, batch.epoch
    j = c.one(
        "SELECT last_boot, last_req, ack, lost, reported_lost FROM journals "
        "WHERE device = ? AND epoch = ?",
        (dev, ep),
    )
    if j is None:
        (ordinal,) = c.one(
            "SELECT COALESCE(MAX(ordinal), 0) FROM journals WHERE device = ?", (dev,)
        ) or (0,)
        c.execute(
            "INSERT INTO journals (device, epoch, last_boot, last_req, ack, lost, "
            "ordinal, first_heard_at, last_heard_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (dev, ep, batch.boot, batch.req, batch.from_seq - 1, ordinal + 1, now_ms, now_ms),
        )
        return batch.from_seq - 1, 0, 0
    last_boot, last_req, ack, lost, reported = j
    if (batch.boot, batch.req) <= (last_boot, last_req):
        raise Replayed(ep, last_boot, last_req)
    return ack, lost, reported


def _store_records(c: Cursor, batch: Batch, now_ms: int) -> tuple[int, int, int]:
    """Store the batch's new records; (stored, conflicts, unreadable). A seq stored before with
    the same content is a resend; with other content it is a conflict, kept in seq_conflicts.
    unreadable: new K_LOSS L_UNREADABLE records, each the bulb's report of one record it could
    not read (a seq missing inside a batch may also be an alive mark the uplink left out, so
    only the bulb can say), each kept as a losses row at the report's own seq."""
    if not batch.records:
        return 0, 0, 0
    dev, ep = batch.device, batch.epoch
    have = {
        row[0]: tuple(row[1:])
        for row in c.all(
            "SELECT seq, boot, up_ms, kind, sub, aux, arg FROM records "
            "WHERE device = ? AND epoch = ? AND seq >= ? AND seq <= ?",
            (dev, ep, batch.records[0][0], batch.records[-1][0]),
        )
    }
    new = [(dev, ep, *r, now_ms) for r in batch.records if r[0] not in have]
    unreadable = 0
    for r in batch.records:
        if r[0] not in have and r[3] == record.K_LOSS and r[4] == record.L_UNREADABLE:
            unreadable += c.execute(
                "INSERT INTO losses (device, epoch, first_seq, last_seq, missing, received_at, "
                "cause) VALUES (?, ?, ?, ?, 1, ?, 'unreadable') ON CONFLICT "
                "(device, epoch, first_seq) DO NOTHING",
                (dev, ep, r[0], r[0], now_ms),
            )
    stored = 0
    if new:
        stored = c.executemany(
            "INSERT INTO records (device, epoch, seq, boot, up_ms, kind, sub, aux, arg, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (device, epoch, seq) DO NOTHING",
            new,
        )
    conflicts = 0
    for r in batch.records:
        if r[0] in have and have[r[0]] != tuple(r[1:]):
            conflicts += c.execute(
                "INSERT INTO seq_conflicts (device, epoch, seq, boot, up_ms, kind, sub, aux, "
                "arg, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                "(device, epoch, seq, boot, up_ms, kind, sub, aux, arg) DO NOTHING",
                (dev, ep, *r, now_ms),
            )
    return stored, conflicts, unreadable


def _count_gaps(c: Cursor, batch: Batch, ack: int, now_ms: int) -> tuple[int, int]:
    """Move ack over what the batch says the bulb no longer has; (ack, records newly lost).

    Below from_seq, every seq not stored was overwritten on the bulb before it could send it:
    its K_ACK entries take no seq, so the count is exact, kept in a losses row. Seqs missing
    inside the batch are not holes to wait for: the batch carries everything the bulb still
    wants to send from from_seq on (left out: alive marks a later record supersedes, and
    records it could not read, which it reports itself)."""
    dev, ep = batch.device, batch.epoch
    lost = 0
    if batch.from_seq - 1 > ack:
        (have,) = c.one(
            "SELECT COUNT(*) FROM records WHERE device = ? AND epoch = ? AND seq > ? "
            "AND seq < ?",
            (dev, ep, ack, batch.from_seq),
        ) or (0,)
        lost = batch.from_seq - 1 - ack - have
        if lost > 0:
            c.execute(
                "INSERT INTO losses (device, epoch, first_seq, last_seq, missing, received_at, "
                "cause) VALUES (?, ?, ?, ?, ?, ?, 'overwritten') ON CONFLICT "
                "(device, epoch, first_seq) DO NOTHING",
                (dev, ep, ack + 1, batch.from_seq - 1, lost, now_ms),
            )
        ack = batch.from_seq - 1
    if batch.records:
        ack = max(ack, batch.records[-1][0])
    return ack, max(0, lost)


def _advance(c: Cursor, dev: str, ep: int, ack: int) -> int:
    """Move ack over the stored records that follow it without a hole."""
    while True:
        seqs = c.all(
            "SELECT seq FROM records WHERE device = ? AND epoch = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (dev, ep, ack, _ADVANCE_CHUNK),
        )
        for (s,) in seqs:
            if s != ack + 1:
                return ack
            ack = s
        if len(seqs) < _ADVANCE_CHUNK:
            return ack


