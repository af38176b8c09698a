# SPDX-License-Identifier: MIT
"""Every tracked source file says its licence in an SPDX line near its top (after a shebang),
as micropython-lib does, so a file copied out of the project keeps its terms."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPDX = "SPDX-License-Identifier: MIT"
SOURCE_SUFFIXES = {".py", ".sh", ".toml", ".ini", ".csv", ".css", ".html", ".js"}
SOURCE_NAMES = {"Makefile", ".ci/run"}  # JSON (firmware/config.json) has no comment syntax


def tracked_sources() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    names = [n for n in out.stdout.decode().split("\0") if n]
    return [n for n in names if Path(n).suffix in SOURCE_SUFFIXES or n in SOURCE_NAMES]


def test_every_tracked_source_file_opens_with_the_mit_spdx_line():
    files = tracked_sources()
    assert "firmware/main.py" in files and "Makefile" in files  # the listing itself works
    missing = []
    for name in files:
        head = (REPO / name).read_text(encoding="utf-8").splitlines()[:3]
        if not any(SPDX in line for line in head):
            missing.append(name)
    assert not missing, f"add '# {SPDX}' as the first line (after a shebang) of: {missing}"


def test_the_licence_file_is_the_mit_licence():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted" in text
