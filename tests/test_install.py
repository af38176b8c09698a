# SPDX-License-Identifier: MIT
"""The server installs on its own, as docs/operations.md tells a pilot to: `pip install` of the
project into an empty venv gives the `mimamori` command, the packages `mimamori` and
`mimamori_firmware` and nothing else of ours (no `sim`, no `firmware`, no test tooling), and
`mimamori serve` answers over a socket from a folder that is not the source tree."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest

from sim.server_process import free_port, listening

REPO = Path(__file__).resolve().parent.parent
# what the copy leaves out: the developer's venv and everything made by a run or a build
_SKIP = shutil.ignore_patterns(".venv", ".git", "var", "build", "*.egg-info", "__pycache__",
                               ".pytest_cache", ".mypy_cache", ".hypothesis", "artifacts")


def _run(*args: str | Path, cwd: Path) -> str:
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]}{r.stderr[-3000:]}"
    return r.stdout


def _ours(site: Path) -> set[str]:
    """The top-level names the project's wheel put into site-packages (from its RECORD)."""
    (info,) = site.glob("mimamori-*.dist-info")
    lines = (info / "RECORD").read_text().splitlines()
    tops = {line.split(",")[0].split("/")[0] for line in lines}
    return {t for t in tops if not t.endswith(".dist-info") and t != ".."}


@pytest.mark.slow
def test_pip_install_gives_the_server_alone_and_it_serves(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_SKIP)  # a build writes into its tree: not into ours
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    _run(py, "-m", "pip", "install", "--quiet", src, cwd=tmp_path)

    (site,) = (env_dir / "lib").glob("python3*/site-packages")
    assert _ours(site) == {"mimamori", "mimamori_firmware"}
    assert (env_dir / "bin" / "mimamori").exists()
    run_dir = tmp_path / "pilot"
    run_dir.mkdir()
    probe = ("import importlib.util as u\n"
             "print(sorted(m for m in ('sim', 'firmware', 'playwright', 'pytest', 'mimamori')\n"
             "             if u.find_spec(m) is None))")
    assert _run(py, "-c", probe, cwd=run_dir).strip() == "['firmware', 'playwright', " \
        "'pytest', 'sim']"

    port = free_port()
    proc = subprocess.Popen([env_dir / "bin" / "mimamori", "--db", run_dir / "pilot.db", "serve",
                             "--port", str(port)], cwd=run_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        assert listening(proc, port, 60, "mimamori serve"), "mimamori serve never listened"
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/signin", timeout=10) as r:
            assert r.status == 200 and "<form" in r.read().decode()
        with urllib.request.urlopen(f"{base}/static/style.css", timeout=10) as r:
            assert r.status == 200  # the stylesheet is in the wheel
        bad = urllib.request.Request(f"{base}/v1/batches", data=b"not a batch", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=10)
        assert 400 <= e.value.code < 500
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # the bulb's settings schema comes from mimamori_firmware: the bulb's own checks and words
    cli = env_dir / "bin" / "mimamori"
    db = run_dir / "pilot.db"
    _run(cli, "--db", db, "household", "add", "sato", "--name", "Sato", cwd=run_dir)
    _run(cli, "--db", db, "device", "register", "--id", "s1", "--household", "sato", cwd=run_dir)
    r = subprocess.run([cli, "--db", db, "device", "settings", "s1", "brightness=7"], cwd=run_dir,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "'brightness' must be a number 0.05..1.0 (got 7)" in r.stderr
    assert "brightness" in _run(cli, "--db", db, "device", "settings", "s1", "brightness=0.5",
                                cwd=run_dir)
