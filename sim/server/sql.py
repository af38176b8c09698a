# SPDX-License-Identifier: MIT
"""The thin database layer: one SQL dialect, two stores (SQLite embedded, PostgreSQL for scale).

    db = connect("var/mimamori.db")                  # SQLite file (WAL)
    db = connect("postgresql://user@host/mimamori")   # PostgreSQL (psycopg 3, a pool)
    with db.tx() as c:        # a short write transaction; nested calls join it
        c.execute("UPDATE ... WHERE id = ?", (x,))
    with db.read() as c:      # a read-only snapshot; never waits for a writer
        rows = c.all("SELECT ...")

SQL is written once, with `?` placeholders (rewritten to `%s` for psycopg) and the portable
subset storage.py describes. What differs between the stores is named here, not spelled in the
callers: `c.for_update` (a row lock on PostgreSQL; on SQLite every write transaction already
holds the file), `c.skip_locked` (claim rows another worker holds no lock on), `c.lock(name)`
(a transaction-scoped advisory lock), `c.returning_ok`.

Reads and writes use different connections. On SQLite a write transaction is BEGIN IMMEDIATE on
the one write connection of the process (SQLite has one writer per file anyway), and each
thread reads through its own connection in WAL mode, so a page never waits for an upload. On
PostgreSQL both come from one pool; reads are READ ONLY REPEATABLE READ snapshots, writes READ
COMMITTED with explicit row locks where a read decides a write.

It must never leave a transaction open after its block, never commit a block that raised, and
never let a read-only block write.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

from mimamori.clock import now_ms

PG_SCHEMES = ("postgresql://", "postgres://")


def lease_now_ms() -> int:
    """The clock of leases (a sweeper's households, a delivery worker's outbox row): real time,
    whatever clock the alerts run on, since a lease is about a process being alive. Instances
    sharing a database keep NTP time; leases are minutes long."""
    return now_ms()


def is_postgres(url: str | Path) -> bool:
    return str(url).startswith(PG_SCHEMES)


def connect(url: str | Path) -> Database:
    """A database from a file path (SQLite) or a postgresql:// URL."""
    return Database(url)


class Cursor:
    """What code inside a transaction uses. SQL is written with `?` placeholders."""

    for_update = ""
    skip_locked = ""
    dialect = "sqlite"

    def __init__(self, db: Database, raw: Any, writable: bool):
        self.db = db
        self._raw = raw
        self.writable = writable

    def _sql(self, sql: str) -> str:
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        return self._raw.execute(self._sql(sql), tuple(params)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._raw.executemany(self._sql(sql), rows).rowcount

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._raw.execute(self._sql(sql), tuple(params)).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self._raw.execute(self._sql(sql), tuple(params)).fetchone()

    def lock(self, name: str) -> None:
        """Hold the named lock until the transaction ends (SQLite: the file lock already)."""

    def rows(self, sql: str, params: Sequence[Any] = (), size: int = 5000) -> Iterator[tuple]:
        """The rows of a query, fetched `size` at a time."""
        cur = self._raw.execute(self._sql(sql), tuple(params))
        while batch := cur.fetchmany(size):
            yield from batch

    def tables(self) -> list[str]:
        return [r[0] for r in self.all("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND substr(name, 1, 7) <> 'sqlite_' ORDER BY name")]

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.all(f"PRAGMA table_info({table})")]


class _Frame:
    """One open block of a thread: its cursor and whether it can write."""

    def __init__(self, cursor: Cursor, writable: bool):
        self.cursor, self.writable, self.depth = cursor, writable, 1


class Database:
    """A store: `tx()` for writes, `read()` for reads, `close()`."""

    dialect = "sqlite"
    url = ""

    def __new__(cls, *args: Any, **kw: Any) -> Self:
        kind: type = cls
        if cls is Database:  # Database(path_or_url) picks the store
            kind = PostgresDatabase if is_postgres(args[0] if args else kw["url"]) else (
                SqliteDatabase)
        return super().__new__(kind)

    def __init__(self, *args: Any) -> None:
        self._local = threading.local()

    def _stack(self) -> list[_Frame]:
        st = getattr(self._local, "stack", None)
        if st is None:
            st = self._local.stack = []
        return st

    @contextmanager
    def tx(self) -> Iterator[Cursor]:
        """A write transaction; a nested tx() joins it. Rolled back on any exception."""
        st = self._stack()
        for f in reversed(st):
            if f.writable:
                f.depth += 1
                try:
                    yield f.cursor
                finally:
                    f.depth -= 1
                return
        with self._write() as c:
            st.append(_Frame(c, True))
            try:
                yield c
            finally:
                st.pop()

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        """A read-only snapshot; inside a tx() or read() of the same thread it joins that one
        (and so sees the transaction's own writes)."""
        st = self._stack()
        if st:
            f = st[-1]
            f.depth += 1
            try:
                yield f.cursor
            finally:
                f.depth -= 1
            return
        with self._read() as c:
            st.append(_Frame(c, False))
            try:
                yield c
            finally:
                st.pop()

    def _write(self) -> Any:
        raise NotImplementedError

    def _read(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# SQLite


class SqliteDatabase(Database):
    """One SQLite file in WAL mode, synchronous=FULL (an acknowledged record survives a power cut
    of the server). One write connection per process behind a lock; one read connection per
    thread."""

    dialect = "sqlite"

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = self.url = str(path)
        self.memory = self.path == ":memory:"
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._open()
        self._lock = threading.RLock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    def _open(self, query_only: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        conn.execute("PRAGMA busy_timeout=30000")
        if not query_only:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        if query_only:
            conn.execute("PRAGMA query_only=ON")
        return conn

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Cursor(self, self._conn, True)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "reader", None)
        if conn is None:
            conn = self._local.reader = self._open(query_only=True)
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        if self.memory:  # one in-memory database per connection: read through the writer's
            with self._lock:
                yield Cursor(self, self._conn, False)
            return
        conn = self._reader()
        conn.execute("BEGIN")  # deferred: a snapshot from the first SELECT, no write lock
        try:
            yield Cursor(self, conn, False)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
        with self._readers_lock:
            for r in self._readers:
                r.close()
            self._readers.clear()


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@lru_cache(maxsize=2048)
def _pg_sql(sql: str) -> str:
    """`?` placeholders to psycopg's `%s`. Our SQL never puts a `?` or a `%` in a literal."""
    if "%" in sql:
        raise ValueError(f"write SQL without '%' (it is psycopg's placeholder): {sql[:80]}")
    return sql.replace("?", "%s")


class PgCursor(Cursor):
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    dialect = "postgresql"

    def _sql(self, sql: str) -> str:
        return _pg_sql(sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._raw.execute(self._sql(sql), tuple(params)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with self._raw.cursor() as cur:
            cur.executemany(self._sql(sql), [tuple(r) for r in rows])
            return cur.rowcount

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._raw.execute(self._sql(sql), tuple(params)).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self._raw.execute(self._sql(sql), tuple(params)).fetchone()

    def lock(self, name: str) -> None:
        self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(name.encode()),))

    def tables(self) -> list[str]:
        return [r[0] for r in self.all(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name")]

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.all(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = ? ORDER BY ordinal_position", (table,))]


class PostgresDatabase(Database):
    """A PostgreSQL database through a psycopg 3 connection pool (MIMAMORI_DB_POOL connections
    at most, default 10)."""

    dialect = "postgresql"

    def __init__(self, url: str):
        super().__init__()
        try:
            import psycopg  # noqa: F401 - fail here with a clear message
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ValueError("a postgresql:// database needs psycopg 3 and psycopg-pool: "
                             "pip install 'psycopg[binary]' psycopg-pool") from None
        self.url = url
        self.path = url
        size = int(os.environ.get("MIMAMORI_DB_POOL", "10"))
        self._pool = ConnectionPool(url, min_size=1, max_size=max(2, size), open=False,
                                    kwargs={"autocommit": True}, timeout=60.0)
        try:
            self._pool.open(wait=True, timeout=30.0)
        except Exception as e:  # noqa: BLE001 - say what to check, not a pool traceback
            self._pool.close()
            raise ValueError(f"cannot reach PostgreSQL at {_safe(url)}: {e}") from None

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        with self._pool.connection() as conn:
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            try:
                yield PgCursor(self, conn, True)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        with self._pool.connection() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield PgCursor(self, conn, False)
            finally:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        self._pool.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


# ---------------------------------------------------------------------------------------------
# migrations: numbered steps per component (storage.SCHEMA, kept.SCHEMA, ...), one row each in
# schema_versions

Migration = Sequence[str]


def migrate(db: Database, component: str, steps: Sequence[Migration]) -> int:
    """Apply the steps of `component` not applied yet (step i is version i + 1)."""
    with db.tx() as c:
        c.lock("mimamori schema")  # instances starting together migrate one after the other
        c.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions ("
            "component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = c.one("SELECT version FROM schema_versions WHERE component = ?", (component,))
        have = row[0] if row else 0
        if have > len(steps):
            raise RuntimeError(
                f"the database has {component} schema version {have} but this code knows only "
                f"{len(steps)}: run a newer mimamori, or use another --db"
            )
        for i in range(have, len(steps)):
            for sql in steps[i]:
                c.execute(sql)
        if row is None:
            c.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)",
                (component, len(steps)),
            )
        else:
            c.execute(
                "UPDATE schema_versions SET version = ? WHERE component = ?",
                (len(steps), component),
            )
    return len(steps)
