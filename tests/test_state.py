# SPDX-License-Identifier: MIT
"""The bulb's state files (firmware/statefiles.py): in their own directory, moved there from
the root after an update from an older firmware (firmware/statemove.py), and never lost or in
the way when the power is cut during that move. Whole bulbs run the real firmware in
MicroPython (sim/bulb.py)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mimamori_firmware import statefiles
from sim.bulb import micropython_bin

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
LOADER = (FIRMWARE / "otaboot.py").read_text()  # MicroPython only: read, not imported
STATE = re.search(r'\nSTATE = "([^"]+)"', LOADER)[1]
# the names an older firmware kept at the root (statemove.py imports statefiles as the bulb
# does, so CPython reads it rather than importing it)
MOVED = ast.literal_eval(
    re.search(r"\n_OLD = (\(.*?\))\n", (FIRMWARE / "statemove.py").read_text())[1])
QUICK_S = 0.8  # a visit past taps.ARM_MS and before taps.CLOSE_MS: it counts one quick visit
OLD = {  # what an older firmware kept at the root, and what it holds there
    "taps": "2",
    "clock": "1796083200",
    "dns": "mimamori.example 192.0.2.1",
    "sv": "3",
    "lte_last": "1796000000",
}


def _names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def _lit(b: Any) -> None:
    duties = b.lamp_duties()
    assert duties and min(d for _, d in duties) > 0, "the lamp went dark"


def test_every_state_file_is_named_in_the_state_directory() -> None:
    names = [v for k, v in vars(statefiles).items() if k.isupper() and k[0] != "_" and k != "DIR"]
    assert len(names) >= 7
    assert all(n.startswith(statefiles.DIR + "/") for n in names + [STATE]), names
    # the move knows them all: each one an older firmware kept at the root
    assert sorted(n.split("/", 1)[1] for n in names) == sorted(MOVED)


def test_no_module_is_shadowed_by_a_directory_on_the_bulb() -> None:
    # MicroPython imports a directory as a package before a .py or .mpy of the same name: a
    # module named like the state directory would never load from the bulb's root
    dirs = {statefiles.DIR, STATE.split("/")[0], "v"}
    assert not dirs & {p.stem for p in FIRMWARE.glob("*.py")}


def test_a_bulb_makes_its_state_directory_and_keeps_its_state_there(bulb: Any) -> None:
    b = bulb()
    shutil.rmtree(b.state_files)  # as a bulb whose filesystem predates it
    root = _names(b.fs)
    b.power_on(stop_at_s=QUICK_S)
    assert (b.state_files / "taps").read_text() == "1"  # the quick visit, counted
    assert _names(b.fs) - root == {statefiles.DIR}, "a state file written at the root"
    _lit(b)


def test_the_first_boot_after_an_update_moves_the_older_state_files_in(bulb: Any) -> None:
    b = bulb()
    for name, text in OLD.items():
        (b.fs / name).write_text(text)
    (b.state_files / "sv").write_text("1")  # an older copy: the root's was written after it
    (b.fs / "sv.tmp").write_text("4")  # an older firmware's write, cut before its rename
    (b.fs / "ota.json").write_text(json.dumps({"v": 0, "prev": 0, "trial": -1, "bad": 7}))
    (b.fs / "nowdt").touch()  # a developer asked the older firmware for a boot without one
    b.power_on(stop_at_s=QUICK_S)
    assert not _names(b.fs) & {*OLD, "sv.tmp", "ota.json", "nowdt"}, _names(b.fs)
    # the gesture counted on from the count the older firmware kept: 2 quick visits, now 3
    assert (b.state_files / "taps").read_text() == "3"
    for name in ("clock", "dns", "sv", "lte_last"):
        assert (b.state_files / name).read_text() == OLD[name], name
    assert json.loads((b.state_files / "ota.json").read_text())["bad"] == 7
    # the flag was moved before the watchdog looked for it: honoured once, then gone
    assert "no watchdog this boot" in b.stdout
    assert not (b.state_files / "nowdt").exists()
    _lit(b)


def test_a_version_run_by_an_older_loader_leaves_the_loaders_file_at_the_root(
    bulb: Any, tmp_path: Path
) -> None:
    """An update over the air: the flashed loader (boot.py, otaboot) stays, and it keeps
    ota.json at the root; the new version it runs from v/1 moves its own files only."""
    older = tmp_path / "older"
    shutil.copytree(FIRMWARE, older)
    (older / "otaboot.py").write_text(
        LOADER.replace(f'STATE = "{STATE}"', 'STATE = "ota.json"')
        .replace('_TMP = "state/ota.json.tmp"', '_TMP = "ota.json.tmp"'))
    b = bulb(firmware_dir=older)
    shutil.rmtree(b.state_files)  # the older firmware never made it
    v1 = b.fs / "v" / "1"
    shutil.copytree(FIRMWARE, v1, ignore=shutil.ignore_patterns("config.json"))
    (v1 / "manifest.json").write_text("{}")
    (b.fs / "ota.json").write_text(json.dumps({"v": 1, "prev": 0, "trial": 0, "after": 3}))
    for name, text in OLD.items():
        (b.fs / name).write_text(text)
    for _ in range(2):
        b.power_on(stop_at_s=QUICK_S)
    # the loader found its file at both boots and counted both trial boots of version 1
    assert json.loads((b.fs / "ota.json").read_text())["trial"] == 2
    assert not (b.state_files / "ota.json").exists()
    assert (b.state_files / "taps").read_text() == "4"  # 2 + the two quick visits
    assert (b.state_files / "sv").read_text() == OLD["sv"]
    assert not _names(b.fs) & set(OLD)
    _lit(b)


def test_a_power_cut_anywhere_in_the_move_loses_nothing_and_hides_nothing(
    tmp_path: Path,
) -> None:
    """tests/state_sweep.py: a cut before each flash program and erase of the move, on the
    ESP32's LittleFS over the flash shim; then the next boot's move."""
    out = subprocess.run(
        [micropython_bin(), "-X", "heapsize=4M", str(REPO / "tests/state_sweep.py"), str(REPO),
         str(tmp_path / "flash.bin")],
        capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["fails"] == [] and got["final"] == []
    assert got["lost"] == got["hidden"] == got["unfinished"] == 0
    assert got["cuts"] == got["ops"] >= 2 * (len(MOVED) + 1)  # each file: a write, a remove
