# SPDX-License-Identifier: MIT
"""`make release`: a firmware update bundle for bulbs in the field (docs/ota.md).

Outputs, in build/release/<version>/:

    manifest.json  {"version", "name", "micropython": [major, minor, micro] at least,
                    "files": [[name, size, sha256 hex], ...], "size": bundle bytes}
    bundle.bin     the files' bytes, concatenated in the manifest's order

The files are those `make image` puts in the vfs (firmware/*.py as .mpy, main.py as source),
less what stays as flashed: boot.py and otaboot (the loader is never updated over the air) and
config.json (the defaults; a bulb's settings stay in its root). The manifest is not signed
here: the server signs it for each bulb with that bulb's key when the bulb fetches it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools import image

REPO = image.REPO
OUT = image.BUILD / "release"
STAYS = ("boot.py", "otaboot.mpy", "config.json")  # the loader and the defaults, as flashed
MICROPYTHON_MIN = (1, 24, 0)  # the .mpy format (v6) and asyncio the firmware needs


@dataclass(frozen=True)
class Release:
    version: int
    manifest: bytes
    bundle: bytes
    files: list[tuple[str, int, str]]


def git_version() -> int:
    """The default version: the number of commits on this branch (it only grows)."""
    r = subprocess.run(["git", "-C", str(REPO), "rev-list", "--count", "HEAD"],
                       capture_output=True, text=True, check=False)
    return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else 1


def bundle(version: int, firmware: Path = image.FIRMWARE, name: str = "") -> Release:
    if not 0 < version < 1 << 31:
        raise image.ImageError(f"version {version}: use a whole number 1..2147483647")
    with tempfile.TemporaryDirectory() as tmp:
        files = image.collect(firmware, Path(tmp))
    if "main.py" not in files:
        raise image.ImageError(f"{firmware} has no main.py; a bundle needs one")
    listed = [(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in files.items()
              if n not in STAYS]
    listed.sort(key=lambda f: (f[0] == "main.py", f[0]))  # main.py last: the rest first
    blob = b"".join(files[n] for n, _, _ in listed)
    manifest = {"version": version, "name": name or f"r{version}",
                "micropython": list(MICROPYTHON_MIN), "files": [list(f) for f in listed],
                "size": len(blob)}
    return Release(version, json.dumps(manifest, separators=(",", ":")).encode(), blob, listed)


def write(rel: Release, out: Path = OUT) -> Path:
    d = out / str(rel.version)
    d.mkdir(parents=True, exist_ok=True)
    (d / "manifest.json").write_bytes(rel.manifest)
    (d / "bundle.bin").write_bytes(rel.bundle)
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", type=int, default=0, help="default: commits on this branch")
    ap.add_argument("--name", default="")
    ap.add_argument("--firmware", type=Path, default=image.FIRMWARE)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    try:
        rel = bundle(a.version or git_version(), a.firmware, a.name)
    except image.ImageError as e:
        print(f"make release: {e}", file=sys.stderr)
        return 1
    d = write(rel, a.out)
    print(f"{d}: release {rel.version}, {len(rel.files)} files, {len(rel.bundle)} bytes")
    print(f"register it with: mimamori release add {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
