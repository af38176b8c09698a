# SPDX-License-Identifier: MIT
"""A private PostgreSQL server for tests and the bench: Debian's own binaries, a throw-away
cluster in a temporary folder, listening on loopback on a free port.

    with PgServer() as pg:                      # initdb + pg_ctl start (about 2 s)
        url = pg.create_db("t1")                # postgresql://mimamori@127.0.0.1:PORT/t1
        ...
        pg.drop_db("t1")

initdb and postgres refuse to run as root: as root the cluster belongs to the `postgres` user
that Debian's package creates, and every server command runs through `runuser`.
MIMAMORI_TEST_PG=postgresql://... uses a server you run instead (it must let that role create
databases). `available()` says why PostgreSQL cannot be used, or None.

It must never touch a cluster it did not create, and never leave its server running after
`stop()`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from sim.server_process import free_port

ROLE = "mimamori"


def bindir() -> Path | None:
    """Where Debian's PostgreSQL server binaries are (the newest major version)."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found and shutil.which("initdb") else None


def available() -> str | None:
    """None when a server can be used; otherwise why not (for a skip message)."""
    if os.environ.get("MIMAMORI_TEST_PG"):
        return None
    if bindir() is None:
        return ("no PostgreSQL server binaries (Debian: apt-get install postgresql; `make setup` "
                "does it as root), and MIMAMORI_TEST_PG is not set")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to own the cluster"
    return None


class PgServer:
    def __init__(self, fsync: bool = False, max_connections: int = 200):
        self.fsync = fsync
        self.max_connections = max_connections
        self.external = os.environ.get("MIMAMORI_TEST_PG") or None
        self.port = 0
        self.dir: Path | None = None
        self._as: list[str] = []

    def _run(self, args: list[str], timeout: float = 120.0) -> str:
        p = subprocess.run(self._as + args, capture_output=True, text=True, timeout=timeout,
                           check=False, cwd="/")
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({p.returncode}): "
                               f"{p.stderr.strip() or p.stdout.strip()}")
        return p.stdout

    def start(self) -> None:
        if self.external:
            return
        why = available()
        if why:
            raise RuntimeError(why)
        b = bindir()
        assert b is not None
        self.dir = Path(tempfile.mkdtemp(prefix="mimamori-pg-"))
        if os.geteuid() == 0:  # initdb: "cannot be run as root"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run([str(b / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust",
                   "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
        self.port = free_port()
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                f"-c max_connections={self.max_connections} -c shared_buffers=32MB "
                f"-c fsync={'on' if self.fsync else 'off'} "
                f"-c synchronous_commit={'on' if self.fsync else 'off'}")
        if not self.fsync:  # tests: the cluster is thrown away, a crash of the OS is no case
            opts += " -c full_page_writes=off"
        self._run([str(b / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-o", opts,
                   "-w", "-t", "60", "start"])

    def stop(self) -> None:
        if self.dir is None:
            return
        b = bindir()
        try:
            if b is not None:
                self._run([str(b / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                           "-w", "stop"], timeout=60)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def url(self, dbname: str = "postgres") -> str:
        if self.external:
            base = self.external.rsplit("/", 1)[0] if self.external.count("/") > 2 else (
                self.external)
            return f"{base}/{dbname}"
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    conn.execute(sql)
                return
            except psycopg.errors.ObjectInUse:  # another test's template copy: try again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_db(self, name: str, template: str = "template0") -> str:
        """A new database, empty or a copy of `template` (a database nobody is connected to);
        its URL."""
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}" ENCODING \'UTF8\'')
        return self.url(name)

    def drop_db(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
