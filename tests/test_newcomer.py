# SPDX-License-Identifier: MIT
"""What a newcomer meets first: the README's commands as printed, `make setup`'s packaging,
one-line errors for a bad --db (the CLI and the server) and a missing PORT=, times labelled
with their zone, and sign-in links that point at the server's real port (`make demo KEEP=1`
prints a watcher's too)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from mimamori.cli import main
from sim import sample_pilot as sample
from sim.server_process import ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's console scripts: .venv/bin/mimamori


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- packaging and the README ---------------------------------------------------------------


def test_every_folder_with_package_data_is_a_listed_package() -> None:
    # setuptools warns (about 90 lines at `make setup`) for data in a folder not in `packages`
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])

    def folder_of(pkg: str) -> Path:  # where package-dir maps a package (or its parent) from
        parts = pkg.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in cfg["package-dir"]:
                return REPO / cfg["package-dir"][".".join(parts[:n])] / "/".join(parts[n:])
        return REPO / "/".join(parts)

    for pkg, patterns in cfg["package-data"].items():
        assert pkg in listed
        folder = folder_of(pkg)
        assert all("/" not in p for p in patterns)  # the package's own files, not a subfolder's
        assert any(f for p in patterns for f in folder.glob(p)), (pkg, patterns)
    for pkg in listed:
        for sub in folder_of(pkg).iterdir():
            data = sub.is_dir() and sub.name != "__pycache__" and any(
                f.is_file() and f.suffix != ".py" for f in sub.iterdir())
            assert not data or f"{pkg}.{sub.name}" in listed, f"{sub} holds data: list it"


def _readme_blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)


def test_the_readme_spells_every_command_so_it_runs_without_an_activated_venv() -> None:
    for block in _readme_blocks():
        for line in block.splitlines():
            first = line.split(" ", 1)[0]
            assert first not in ("mimamori", "python", "python3", "pytest", "pip"), line


def test_the_readmes_dashboard_commands_run_as_printed(tmp_path: Path) -> None:
    block = next(b for b in _readme_blocks() if "dashboard invite" in b)
    lines = [x.split("#")[0].strip() for x in block.splitlines() if x.strip()]
    db = tmp_path / "sample.db"
    env = {**os.environ, "MIMAMORI_DB": str(db)}
    env.pop("MIMAMORI_PUBLIC_URL", None)

    def sh(cmd: str) -> str:
        r = subprocess.run(cmd, shell=True, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.returncode == 0 and not r.stderr, (cmd, r.stdout, r.stderr)
        return r.stdout

    sample_cmd = next(x for x in lines if "sim.sample_pilot" in x)
    assert sh(sample_cmd.replace("var/sample.db", str(db))).startswith(f"sample pilot in {db}")
    clock = f"fixed:{sample.NOW.timestamp():.0f}"
    env["MIMAMORI_CLOCK"] = clock
    watchers = sh(next(x for x in lines if "watcher list" in x).replace("HOUSEHOLD", "sato"))
    wid = watchers.splitlines()[0].split()[0]  # the first column: the watcher's id
    out = sh(next(x for x in lines if "dashboard invite" in x).replace("WATCHER_ID", wid))
    assert "/in/" in out
    assert "/in/" in sh(next(x for x in lines if "coordinator link" in x))


# ---- a bad --db, a missing PORT= -------------------------------------------------------------


def test_the_cli_never_makes_a_folder_or_an_empty_database_for_a_mistyped_db(
        tmp_path: Path, capsys) -> None:
    db = tmp_path / "no" / "such" / "x.db"
    code, out, err = run(capsys, "--db", str(db), "household", "list")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        (f"mimamori: no database at {db}: the directory {db.parent} does not exist; check --db "
        "(or MIMAMORI_DB), or start the server with it first (`make server`)")]
    assert not (tmp_path / "no").exists()


def test_a_db_under_a_file_or_naming_a_folder_is_one_line_naming_it(tmp_path: Path,
                                                                      capsys) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    code, _, err = run(capsys, "--db", str(afile / "x.db"), "alert", "list")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"the database {afile / 'x.db'} cannot be made: {afile} is not a directory" in err
    code, _, err = run(capsys, "--db", str(tmp_path), "device", "list")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"mimamori: the database {tmp_path} is a directory")


def test_the_server_with_an_unusable_db_says_so_in_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    bad = afile / "var" / "mimamori.db"
    r = subprocess.run([sys.executable, "-m", "mimamori", "--db", str(bad), "--port",
                        str(free_port())], cwd=REPO, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        (f"mimamori: the database {bad} cannot be made: cannot create {bad.parent} (Not a "
        "directory); check --db (or MIMAMORI_DB)")]


def test_make_flash_without_port_says_so_before_building_or_downloading() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MAKEFLAGS")}
    r = subprocess.run(["make", "flash"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == (
        "make flash: PORT= is required, e.g. make flash PORT=/dev/ttyUSB0 (list ports with: "
        ".venv/bin/pyserial-ports)")
    assert "tools.image" not in r.stdout and "FIRMWARE" not in r.stdout + r.stderr


# ---- times, links ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("pilot") / "pilot.db"
    sample.build(db)
    return db


def test_alert_list_and_household_list_show_household_time_labelled(pilot: Path,
                                                                     capsys) -> None:
    clock = f"fixed:{sample.NOW.timestamp():.0f}"
    code, out, _ = run(capsys, "--db", str(pilot), "--clock", clock, "household", "list")
    assert code == 0
    assert re.search(r"next check \d{4}-\d\d-\d\d \d\d:\d\d JST", out), out
    code, out, _ = run(capsys, "--db", str(pilot), "--clock", clock, "alert", "list",
                       "--json")
    opened = {a["id"]: a["opened_at"] for a in json.loads(out)}
    code, out, _ = run(capsys, "--db", str(pilot), "--clock", clock, "alert", "list")
    assert code == 0 and opened
    for line in out.splitlines():
        aid = line.split()[0]
        local = time.strftime("%Y-%m-%d %H:%M", time.gmtime(opened[aid] / 1000 + 9 * 3600))
        assert f"{local} JST" in line, line  # Asia/Tokyo: UTC+9, labelled


def test_invite_links_point_at_the_port_the_server_runs_on(pilot: Path, capsys,
                                                           monkeypatch) -> None:
    monkeypatch.delenv("MIMAMORI_PUBLIC_URL", raising=False)
    clock = f"fixed:{sample.NOW.timestamp():.0f}"
    with ServerProcess(pilot, port=free_port(), clock=clock) as srv:
        code, out, _ = run(capsys, "--db", str(pilot), "--clock", clock, "coordinator", "link")
        assert code == 0
        link = out.splitlines()[-1]
        assert link.startswith(f"{srv.url}/in/"), (link, srv.url)
        assert httpx.get(link, timeout=20).status_code == 200  # the server's confirm page
    monkeypatch.setenv("MIMAMORI_PUBLIC_URL", "https://mimamori.example.jp/")
    code, out, _ = run(capsys, "--db", str(pilot), "--clock", clock, "coordinator", "link")
    assert out.splitlines()[-1].startswith("https://mimamori.example.jp/in/")


@pytest.mark.slow
def test_make_demo_keep_prints_a_watchers_link_that_signs_in(tmp_path: Path) -> None:
    code = ("from pathlib import Path\nfrom sim.demo import run\n"
            f"run(days=2, homes=1, sec_per_day=5, keep=True, var=Path({str(tmp_path)!r}))\n")
    p = subprocess.Popen([sys.executable, "-u", "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        text = "".join(lines)
        m = re.search(r"(\S+)'s sign-in link, a watcher of .*: (http://127\.0\.0\.1:\d+/in/\S+)",
                      text)
        assert m, text[-2000:]
        server = re.search(r"keeps running .*: (http://127\.0\.0\.1:\d+)", text)
        assert server and m.group(2).startswith(server.group(1) + "/in/")
        page = httpx.get(m.group(2), timeout=20)
        assert page.status_code == 200 and m.group(1) in page.text
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
