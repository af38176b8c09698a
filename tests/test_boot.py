# SPDX-License-Identifier: MIT
"""Boot: the firmware in MicroPython (96wK heap, virtual time) with the hardware shims, judged
by what the lamp did (the trace): no dip at power-on, a fade to the configured level, light
kept through failures, the watchdog, safe mode in and out, and bad settings.

Failures are injected by booting a copy of firmware/ in which one module is replaced by a
broken one: nothing in the shipped firmware exists only for tests.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mimamori_firmware import record
from sim.bulb import FIRMWARE, HARD_RESET, PWRON_RESET, WDT_RESET, Bulb, partitions

LEVEL = 0.5
LEVEL_DUTY = 9410  # 0.5 ** 2.8 * 65535
SITE = {"brightness": LEVEL, "fade_ms": 400}


def firmware_with(tmp_path: Path, **modules: str) -> Path:
    """A copy of firmware/ with the given modules (name=source) replaced."""
    d = tmp_path / "firmware"
    if not d.exists():
        shutil.copytree(FIRMWARE, d, ignore=shutil.ignore_patterns("__pycache__", "*.mpy"))
    for name, src in modules.items():
        (d / f"{name}.py").write_text(src)
    return d


def duties(b: Bulb, boot: int | None = None) -> list[int]:
    return [d for _, d in b.lamp_duties(boot)]


def boot_numbers(b: Bulb) -> list[int]:
    return sorted({e["boot"] for e in b.trace()})


def assert_never_below(b: Bulb, duty: int) -> None:
    """In every boot, from power-on on, the lamp started at full and only ever went down, never
    below duty (no status pattern runs in these boots)."""
    for n in boot_numbers(b):
        seen = duties(b, n)
        assert seen and seen[0] == 65535, f"boot {n} did not start at full: {seen[:3]}"
        assert seen == sorted(seen, reverse=True), f"boot {n} dipped and came back: {seen}"
        assert min(seen) >= duty, f"boot {n} dipped to {min(seen)} (< {duty}): {seen}"


def journal(b: Bulb) -> list[tuple[int, ...]]:
    """(seq, boot, up_ms, kind, sub, aux, arg) of every valid record in the bulb's journal
    partition (docs/journal.md: 4 KiB sectors, a 32-byte header, then 24-byte slots)."""
    part = next(p for p in partitions() if p["label"] == "journal")
    with open(b.state_dir / "flash.bin", "rb") as f:
        f.seek(part["offset"])
        flash = f.read(part["size"])
    recs = []
    for sector in range(0, len(flash), 4096):
        for slot in range(sector + 32, sector + 4096 - record.SIZE + 1, record.SIZE):
            r = record.unpack(flash, slot)
            if r is not None:
                recs.append(r)
    return sorted(recs)


def faults_by_boot(b: Bulb) -> list[list[tuple[int, int]]]:
    """For each power-on record in the journal, the (code, aux) of the faults that follow it."""
    out: list[list[tuple[int, int]]] = []
    for _, _, _, kind, sub, aux, _ in journal(b):
        if kind == record.K_POWER_ON:
            out.append([])
        elif kind == record.K_FAULT and out:
            out[-1].append((sub, aux))
    return out


BROKEN_IMPORT = 'raise RuntimeError("injected: this module is broken")\n'

# An uplink that fails its first N runs (N in <fs>/crashes_left), then runs and says so.
CRASHING_UPLINK = """
import asyncio


def _crash_now():
    try:
        n = int(open("crashes_left").read())
    except OSError:
        return False
    open("crashes_left", "w").write(str(n - 1))
    return n > 0


class Uplink:
    def __init__(self, cfg, journal, lamp):
        self.crash = _crash_now()

    async def run(self):
        await asyncio.sleep_ms(2000)
        if self.crash:
            raise RuntimeError("injected: the uplink task failed")
        print("uplink ran")

    async def flush(self):
        pass
"""

# An uplink that restarts the bulb on purpose (as after new settings) its first N runs.
RESTARTING_UPLINK = """
import asyncio
import safemode


class Uplink:
    def __init__(self, cfg, journal, lamp):
        pass

    async def run(self):
        await asyncio.sleep_ms(2000)
        n = int(open("restarts_left").read())
        if n > 0:
            open("restarts_left", "w").write(str(n - 1))
            safemode.restart()
        print("uplink ran")

    async def flush(self):
        pass
"""

# An uplink whose task blocks (a socket read with no timeout would): the loop stops.
BLOCKING_UPLINK = """
import time


class Uplink:
    def __init__(self, cfg, journal, lamp):
        pass

    async def run(self):
        print("uplink blocks")
        while True:
            time.sleep_ms(100)

    async def flush(self):
        pass
"""

# An uplink that spins without ever reading the clock: only the watchdog's own timer ends it.
SPINNING_UPLINK = BLOCKING_UPLINK.replace("time.sleep_ms(100)", "pass")


# --- power-on ----------------------------------------------------------------------------------
def test_lamp_fades_from_full_to_the_configured_level_without_a_dip(bulb: Any) -> None:
    b = bulb(site=SITE)
    b.power_on(stop_at_s=10)
    seen = duties(b)
    assert seen[:2] == [65535, 65535]  # the pull-up, then the take-over at the same level
    assert seen[-1] == LEVEL_DUTY
    assert seen == sorted(seen, reverse=True)  # only ever down, never below the level
    assert len(seen) > 5  # a fade, not a jump
    assert b.boots[0].ended_by == "power_cut"


def test_firmware_boots_and_runs_a_long_visit_in_an_esp32_sized_heap(bulb: Any) -> None:
    b = bulb(site=SITE, heap="96wK")
    b.power_on(stop_at_s=600)  # ten minutes lit: the fade, the journal, alive marks, the uplink
    assert "MemoryError" not in b.stdout + b.stderr
    assert b.boots[0].ended_by == "power_cut"
    assert duties(b)[-1] == LEVEL_DUTY
    kinds = [r[3] for r in journal(b)]
    assert kinds[0] == record.K_POWER_ON and kinds.count(record.K_ALIVE) >= 5


def test_takeover_uses_the_flicker_free_frequency(bulb: Any) -> None:
    b = bulb(site=SITE)
    b.power_on(stop_at_s=5)
    freqs = {e["freq"] for e in b.events("lamp")[1:]}
    assert freqs == {20000}


def test_full_brightness_setting_keeps_the_lamp_at_full(bulb: Any) -> None:
    b = bulb(site={"brightness": 1.0})
    b.power_on(stop_at_s=5)
    assert set(duties(b)) == {65535}


def test_lamp_on_another_pin_is_lit_there_before_the_default_pin_is_released(
    bulb: Any,
) -> None:
    b = bulb(site=dict(SITE, lamp_pin=13))  # the runner wires the lamp to pin 13
    b.power_on(stop_at_s=5)
    seen = duties(b)
    assert seen[0] == 65535 and seen[-1] == LEVEL_DUTY
    assert min(seen) == LEVEL_DUTY
    old = [e for e in b.trace() if e["ev"] == "pwm" and e["pin"] == 4]
    first_new = next(e for e in b.trace() if e["ev"] == "lamp" and e.get("freq"))
    assert old and b.trace().index(first_new) < b.trace().index(old[-1])


# --- failures ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "source", "expect_boots", "final"),
    [
        # the boot history itself is broken: no reset (it could not be counted), stay lit
        ("safemode", BROKEN_IMPORT, 1, 65535),
        # settings code broken: the lamp stays at the take-over level; resets, then safe mode
        ("config", BROKEN_IMPORT, 4, 65535),
        # the uplink cannot even be imported: resets, then safe mode lights without it
        ("uplink", BROKEN_IMPORT, 4, LEVEL_DUTY),
        # the uplink task fails while running
        ("uplink", CRASHING_UPLINK, 4, LEVEL_DUTY),
    ],
    ids=["boot-history", "config", "uplink-import", "uplink-task"],
)
def test_exception_in_a_later_step_keeps_the_light_on(
    bulb: Any, tmp_path: Path, module: str, source: str, expect_boots: int, final: int
) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, **{module: source}))
    (b.fs / "crashes_left").write_text("99")
    b.power_on(stop_at_s=30)
    assert len(b.boots) == expect_boots, b.stdout
    assert "injected" in b.stdout + b.stderr
    assert_never_below(b, LEVEL_DUTY)
    assert duties(b, -1)[-1] == final  # still lit when the power finally went
    assert b.boots[-1].ended_by == "power_cut"
    assert [x.ended_by for x in b.boots[:-1]] == ["reset"] * (expect_boots - 1)


def test_exception_in_the_journal_step_keeps_the_light_on(bulb: Any, tmp_path: Path) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, journal=BROKEN_IMPORT))
    b.power_on(stop_at_s=30)
    assert "injected" in b.stdout + b.stderr
    assert_never_below(b, LEVEL_DUTY)
    assert duties(b, -1)[-1] == LEVEL_DUTY
    # three resets, then safe mode: it records too, so it fails the same way, and stays lit
    assert [x.ended_by for x in b.boots] == ["reset"] * 3 + ["power_cut"]
    assert "safe mode" in b.boots[-1].stdout and "the lamp stays lit" in b.boots[-1].stdout


def test_watchdog_resets_a_bulb_whose_loop_blocks_then_safe_mode_lights_it(
    bulb: Any, tmp_path: Path
) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, uplink=BLOCKING_UPLINK))
    b.power_on(stop_at_s=60)
    assert [x.ended_by for x in b.boots] == ["watchdog"] * 3 + ["power_cut"]
    assert [x.cause for x in b.boots] == [PWRON_RESET] + [WDT_RESET] * 3
    resets = b.events("reset")
    assert [r["cause"] for r in resets] == [WDT_RESET] * 3
    assert all(r["t"] >= 10000 for r in resets)  # not before the 10 s timeout
    assert "safe mode" in b.boots[-1].stdout and "uplink" not in b.boots[-1].stdout
    assert_never_below(b, LEVEL_DUTY)
    assert duties(b, -1)[-1] == LEVEL_DUTY


def test_watchdog_resets_a_bulb_that_spins_without_reading_the_clock(
    bulb: Any, tmp_path: Path
) -> None:
    site = dict(SITE, safe_mode_after=1, wdt_ms=2000)
    b = bulb(site=site, firmware_dir=firmware_with(tmp_path, uplink=SPINNING_UPLINK))
    b.power_on(stop_at_s=30)
    assert [x.ended_by for x in b.boots] == ["hang", "power_cut"]
    assert b.boots[1].cause == WDT_RESET
    assert "safe mode" in b.boots[1].stdout
    assert_never_below(b, LEVEL_DUTY)


# --- safe mode in and out --------------------------------------------------------------------
def test_safe_mode_after_three_crashed_boots_lights_and_never_starts_the_radio(
    bulb: Any, tmp_path: Path
) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    (b.fs / "crashes_left").write_text("3")
    b.power_on(stop_at_s=30)
    assert [x.cause for x in b.boots] == [PWRON_RESET] + [HARD_RESET] * 3
    assert "3 failed boots in a row: safe mode" in b.boots[3].stdout
    assert "uplink" not in b.boots[3].stdout  # the radio is never started in safe mode
    assert (b.fs / "crashes_left").read_text() == "0"  # no 4th attempt
    assert duties(b, -1)[-1] == LEVEL_DUTY


def test_power_cut_leaves_safe_mode(bulb: Any, tmp_path: Path) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    (b.fs / "crashes_left").write_text("3")
    b.power_on(stop_at_s=30)
    assert "safe mode" in b.boots[-1].stdout
    b.power_on(stop_at_s=30)  # switched off and on at the wall
    assert len(b.boots) == 5
    assert b.boots[4].cause == PWRON_RESET
    assert "safe mode" not in b.boots[4].stdout and "uplink ran" in b.boots[4].stdout


def test_safe_mode_retries_a_normal_boot_after_running_safe_mode_s(
    bulb: Any, tmp_path: Path
) -> None:
    site = dict(SITE, safe_mode_s=60)
    b = bulb(site=site, firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    (b.fs / "crashes_left").write_text("3")
    b.power_on(stop_at_s=90)
    safe, retry = b.boots[3], b.boots[4]
    assert "safe mode" in safe.stdout and safe.ended_by == "reset"
    assert b.events("reset", 4)[0]["t"] >= 60000
    assert "safe mode" not in retry.stdout and "uplink ran" in retry.stdout
    assert_never_below(b, LEVEL_DUTY)


def test_retry_that_fails_again_goes_straight_back_to_safe_mode(bulb: Any, tmp_path: Path) -> None:
    site = dict(SITE, safe_mode_s=60)
    b = bulb(site=site, firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    (b.fs / "crashes_left").write_text("4")
    b.power_on(stop_at_s=90)
    assert "safe mode" in b.boots[3].stdout  # after 3 crashes
    assert "injected" in b.boots[4].stdout  # the one retry crashed too
    assert "safe mode" in b.boots[5].stdout  # back at once, not after 3 more


def test_deliberate_restarts_never_count_as_failed_boots(bulb: Any, tmp_path: Path) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, uplink=RESTARTING_UPLINK))
    (b.fs / "restarts_left").write_text("5")
    b.power_on(stop_at_s=30)
    assert [x.ended_by for x in b.boots] == ["reset"] * 5 + ["power_cut"]
    assert "safe mode" not in b.stdout
    assert "uplink ran" in b.boots[-1].stdout
    assert faults_by_boot(b) == [[]] * 6


def test_power_cuts_never_count_as_failed_boots(bulb: Any, tmp_path: Path) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    for _ in range(6):  # short visits, each cut before the boot could prove itself stable
        b.power_on(stop_at_s=3)
    (b.fs / "crashes_left").write_text("2")  # then two crashes in the next visit
    b.power_on(stop_at_s=30)
    (b.fs / "crashes_left").write_text("2")  # and two more after a power cut
    b.power_on(stop_at_s=30)
    assert "safe mode" not in b.stdout
    assert b.stdout.count("uplink ran") == 6 + 2
    assert [x.ended_by for x in b.boots].count("power_cut") == 8


# --- bad settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("files", "message", "fault"),
    [
        ({"config.json": None}, "config.json is missing", (2, 0)),
        ({"config.json": "{not json"}, "config.json is not valid JSON", (2, 0)),
        ({"site.json": '{"brightness": 0.5, '}, "site.json is not valid JSON", (2, 1)),
        ({"site.json": {"brightness": "dim"}}, "'brightness' must be a number", (1, "brightness")),
        (
            {"site.json": {"brightness": 0}},
            "'brightness' must be a number 0.05..1.0 (got 0)",
            (1, "brightness"),
        ),
        ({"site.json": {"brightnes": 0.5}}, "unknown setting 'brightnes'", (1, -1)),
        (
            {"server.json": {"gamma": -1}},
            "'gamma' must be a number 1.0..4.0 (got -1)",
            (1, "gamma"),
        ),
    ],
    ids=[
        "missing-defaults",
        "corrupt-defaults",
        "corrupt-site",
        "wrong-type",
        "out-of-range",
        "unknown-key",
        "bad-server-value",
    ],
)
def test_bad_settings_fall_back_to_defaults_and_the_lamp_is_unaffected(
    bulb: Any, files: dict[str, Any], message: str, fault: tuple[int, int | str]
) -> None:
    b = bulb()
    for name, content in files.items():
        if content is None:
            (b.fs / name).unlink()
        else:
            text = content if isinstance(content, str) else json.dumps(content)
            (b.fs / name).write_text(text)
    b.power_on(stop_at_s=10)
    assert message in b.stdout
    assert "default" in b.stdout or "ignored" in b.stdout
    assert set(duties(b)) == {65535}  # the default brightness: full, never a dip
    assert len(b.boots) == 1 and b.boots[0].ended_by == "power_cut"
    code, aux = fault  # record.F_CONFIG_FILE (aux: the file) or F_CONFIG (aux: the setting)
    assert faults_by_boot(b) == [[(code, schema_index(aux) if isinstance(aux, str) else aux)]]


def test_bad_value_next_to_good_ones_keeps_the_good_ones(bulb: Any) -> None:
    b = bulb(site=dict(SITE, heartbeat_s="ten", fade_ms=-3))
    b.power_on(stop_at_s=10)
    assert "'heartbeat_s' must be a whole number of seconds 60..86400 (got \"ten\")" in b.stdout
    assert "using the default 800" in b.stdout
    assert duties(b)[-1] == LEVEL_DUTY
    assert min(duties(b)) == LEVEL_DUTY


# --- faults kept for reporting (the journal records what boot found) --------------------------
def schema_index(key: str) -> int:
    keys = re.findall(r'^    \("(\w+)",', (FIRMWARE / "config.py").read_text(), re.MULTILINE)
    return keys.index(key)


def test_bad_settings_are_recorded_as_faults_naming_the_setting(bulb: Any) -> None:
    b = bulb(site=dict(SITE, heartbeat_s="ten"))
    (b.fs / "server.json").write_text("{oops")
    b.power_on(stop_at_s=5)
    (faults,) = faults_by_boot(b)
    assert sorted(faults) == [
        (record.F_CONFIG, schema_index("heartbeat_s")),
        (record.F_CONFIG_FILE, 2),
    ]


def test_crash_watchdog_and_safe_mode_are_recorded_by_the_boots_after_them(
    bulb: Any, tmp_path: Path
) -> None:
    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    (b.fs / "crashes_left").write_text("3")
    b.power_on(stop_at_s=30)
    S_RUN = 5  # main.S_RUN: the uplink task failed while running
    assert faults_by_boot(b) == [
        [],
        [(record.F_CRASH, S_RUN)],
        [(record.F_CRASH, S_RUN)],
        [(record.F_CRASH, S_RUN), (record.F_SAFE_MODE, 3)],
    ]
    causes = [r[4] for r in journal(b) if r[3] == record.K_POWER_ON]
    assert causes == [PWRON_RESET, HARD_RESET, HARD_RESET, HARD_RESET]


def test_watchdog_reset_is_recorded_by_the_next_boot(bulb: Any, tmp_path: Path) -> None:
    site = dict(SITE, safe_mode_after=1)
    b = bulb(site=site, firmware_dir=firmware_with(tmp_path, uplink=BLOCKING_UPLINK))
    b.power_on(stop_at_s=30)
    assert faults_by_boot(b) == [[], [(record.F_WATCHDOG, 0), (record.F_SAFE_MODE, 1)]]
