"""Shared fixtures: simulated bulbs (sim/bulb.py) and MicroPython snippets with the shims.

    def test_light_is_full_at_power_on(bulb):
        b = bulb(site={...})                  # a Bulb in its own tmp dir; powered off at teardown
        b.power_on(stop_at_s=5)
        assert b.lamp_duties()[0] == (0, 65535)

    def test_ingest_stores_once(db_url):      # runs twice: a SQLite file, a PostgreSQL database
        store = Store.open(db_url)

    def test_record_packs(mpy_run):
        out = mpy_run("import record; print(record.SIZE)")   # runs in micropython, 96wK heap
        assert out.strip() == "24"
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sim import bulb as bulb_mod
from sim import pgserver
from sim.bulb import Bulb, run_snippet

# Tests that run the firmware in MicroPython: marked "firmware", so `make test` runs them again
# on the 32-bit interpreter (MIMAMORI_MPY=32, sim/bulb.py); there they skip, saying why, when it
# cannot run.
FIRMWARE_FIXTURES = {"bulb", "mpy_run", "rig", "tls_rig", "modem"}
FIRMWARE_NAMES = ("run_snippet", "journal_of", "MICROPYTHON", "MPY")  # module-level names


def _runs_firmware(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    for name in FIRMWARE_FIXTURES & set(getattr(item, "fixturenames", ())):
        defs = info.name2fixturedefs.get(name) if info else None
        where = defs[-1].func.__module__ if defs else ""  # not a test module's own "bulb"
        if where.endswith(("conftest", "uplink_rig", "test_tls")):
            return True
    mod = getattr(item, "module", None)
    return mod is not None and (getattr(mod, "Bulb", None) is bulb_mod.Bulb
                                or any(hasattr(mod, n) for n in FIRMWARE_NAMES))


def pytest_report_header(config: pytest.Config) -> str:
    which = bulb_mod.mpy_choice()
    return f"firmware interpreter: {bulb_mod.MPY32.get(which, 'the venv micropython (64-bit)')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    which = bulb_mod.mpy_choice()
    why = bulb_mod.mpy32_missing(which) if which else ""
    for item in items:
        if _runs_firmware(item):
            item.add_marker(pytest.mark.firmware)
            if why:
                item.add_marker(pytest.mark.skip(reason=f"{bulb_mod.MPY_ENV}={which}: {why}"))


@pytest.fixture
def bulb(tmp_path: Path) -> Any:
    """Factory: bulb(**Bulb kwargs) -> Bulb, each in tmp_path/bulbN. All are powered off at
    the end of the test."""
    made: list[Bulb] = []
    counter = itertools.count(1)

    def make(**kw: Any) -> Bulb:
        b = Bulb(tmp_path / f"bulb{next(counter)}", **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.power_off()


@pytest.fixture
def mpy_run(tmp_path: Path) -> Callable[..., str]:
    """mpy_run(code, heap="96wK", **Bulb kwargs) -> stdout: run MicroPython code as a bulb's
    main script (shims and firmware/ on the path, virtual time) until it ends. Raises
    sim.bulb.MpyError with the output if the code raised."""
    counter = itertools.count(1)

    def run(code: str, **kw: Any) -> str:
        return run_snippet(code, tmp_path / f"snippet{next(counter)}", **kw)

    return run


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    """One private PostgreSQL server for the session (sim/pgserver.py), started on first use."""
    why = pgserver.available()
    if why:
        pytest.skip(f"the PostgreSQL half is skipped: {why}")
    with pgserver.PgServer() as pg:
        yield pg


@pytest.fixture
def pg_url(pg_server: pgserver.PgServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped after it."""
    name = "t_" + secrets.token_hex(6)
    url = pg_server.create_db(name)
    yield url
    pg_server.drop_db(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store a test runs on: a SQLite file, then a PostgreSQL database (the same test, the
    same code and migrations on both)."""
    if request.param == "sqlite":
        return str(tmp_path / "mimamori.db")
    return request.getfixturevalue("pg_url")
