# SPDX-License-Identifier: MIT
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

import functools
import inspect
import itertools
import os
import secrets
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sim import bulb as sim_bulb
from sim import nginx, pgserver, server_process
from sim.bulb import Bulb, run_snippet
from sim.server_process import ServerProcess


def pytest_report_header(config: pytest.Config) -> str:
    which = sim_bulb.mpy_choice()
    return f"firmware interpreter: {sim_bulb.MPY32.get(which, 'the venv micropython (64-bit)')}"


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


# --- the browser ------------------------------------------------------------------------------
# The dashboard's browser tests drive Debian's Chromium (`make setup` installs it; Playwright
# never downloads one). A module marks itself `pytestmark = needs_chromium` and asks for
# `browser`; screenshots go to ARTIFACTS.
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
_CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="Chromium is not installed: `make setup` installs "
                                           "it (Debian package chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=_CHROMIUM_ARGS)
        yield b
        b.close()


# --- kinds ------------------------------------------------------------------------------------
# Every test gets its kinds here, from what it uses, so nobody has to remember a decorator
# (the markers are described in pyproject.toml): `pytest -m unit`, `pytest -m "not browser"`.
# What a test uses is read from its code, its fixtures' code and the code of this repository
# they call (helpers, rigs, the harness in sim/), following global names. A test that uses
# several things has several kinds; `unit` means none of them. `slow` is marked on the test.
_FIRMWARE = {sim_bulb.Bulb, sim_bulb.run_snippet, sim_bulb.micropython_bin}
_E2E = {ServerProcess, server_process.listening, pgserver.PgServer, nginx.Nginx}
_BROWSER_NAMES = {"sync_playwright", "async_playwright"}
_REPO = Path(__file__).resolve().parents[1]


def _ours(obj: Any) -> bool:
    """A function or class of this repository (its code is read too), not of a library."""
    try:
        path = Path(inspect.getfile(obj)).resolve()
    except (TypeError, OSError):
        return False
    return path.is_relative_to(_REPO) and not path.is_relative_to(_REPO / ".venv")


@functools.cache
def _reached(root: Any) -> tuple[frozenset[str], tuple[Any, ...]]:
    """The global names the root's code uses and the objects they name, following functions and
    classes of this repository (a test's helpers, fixtures and rigs, and the harness in sim/)."""
    names: set[str] = set()
    objects: list[Any] = []
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, type):
            todo += [v for v in vars(obj).values() if inspect.isfunction(v)]
            continue
        fn = inspect.unwrap(obj) if callable(obj) else obj
        code = getattr(fn, "__code__", None)
        if code is None:
            continue
        scope = getattr(fn, "__globals__", {})
        codes = [code]
        while codes:
            co = codes.pop()
            codes += [c for c in co.co_consts if isinstance(c, types.CodeType)]
            names.update(co.co_names)
            for name in co.co_names:
                value = scope.get(name)
                if value is None:
                    continue
                objects.append(value)
                if isinstance(value, types.ModuleType):
                    objects += [getattr(value, n) for n in co.co_names if hasattr(value, n)]
                elif (inspect.isfunction(value) or isinstance(value, type)) and _ours(value):
                    todo.append(value)
    return frozenset(names), tuple(objects)


def _micropython_path(obj: Any) -> bool:
    """The interpreter's path: the venv's `micropython`, or the 32-bit build chosen."""
    return isinstance(obj, str | Path) and (Path(obj).name == "micropython"
                                            or Path(obj).name in sim_bulb.MPY32.values())


def _kinds(item: pytest.Item) -> set[str]:
    roots: list[Any] = [getattr(item, "obj", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name, defs in (info.name2fixturedefs.items() if info else []):
        # the closest definition wins; it reaches the one it overrides only by asking for it
        i = len(defs) - 1
        roots.append(defs[i].func)
        while i > 0 and name in defs[i].argnames:
            i -= 1
            roots.append(defs[i].func)
    names: set[str] = set()
    objects: list[Any] = []
    for root in roots:
        if root is not None:
            n, o = _reached(root)
            names |= n
            objects += o
    kinds = set()
    if any(_hashable_in(o, _FIRMWARE) or _micropython_path(o) for o in objects):
        kinds.add("firmware")
    if names & _BROWSER_NAMES:
        kinds.add("browser")
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(_hashable_in(o, _E2E) for o in objects) or "postgresql" in params.values():
        kinds.add("e2e")  # the database fixtures ask for PostgreSQL at run time, by parameter
    return kinds or {"unit"}


def _hashable_in(obj: Any, group: set[Any]) -> bool:
    try:
        return obj in group
    except TypeError:
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make test` runs the firmware tests again on the 32-bit interpreter (MIMAMORI_MPY=32,
    # sim/bulb.py); there they skip, saying why, where it cannot run
    which = sim_bulb.mpy_choice()
    why = sim_bulb.mpy32_missing(which) if which else ""
    for item in items:
        # the emulated ESP32's tests are their own kind (`make test-esp32`), never `unit`
        kinds = set() if item.get_closest_marker("esp32") else _kinds(item)
        for kind in sorted(kinds):
            item.add_marker(kind)
        if why and "firmware" in kinds:
            item.add_marker(pytest.mark.skip(reason=f"{sim_bulb.MPY_ENV}={which}: {why}"))
