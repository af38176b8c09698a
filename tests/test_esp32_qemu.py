# SPDX-License-Identifier: MIT
"""The firmware on an emulated ESP32 (sim/esp32_qemu.py): Espressif's QEMU running stock
MicroPython v1.23.0 from a flash file written as `make flash` writes a bulb, no shims. What the
chip showed is read from its console, its LEDC trace and, after the power is cut, its flash.

One scenario, run once for the module (each boot takes one to three minutes of real time):
  1. a new bulb (site.json: brightness 0.5, the default wdt_ms) is switched on until the lamp is
     at its level: imports and the journal mount, seconds each in the emulator, all fed;
  2. it is given a Wi-Fi network and a server (safe_mode_after 1) and switched on again:
     starting the radio crashes the emulated chip (it has no radio), and the next boot runs in
     safe mode, lamp lit, journal only.

Run by `make test-esp32` (and by `.ci/run` where the emulator is present); skipped, saying why,
where it is absent. Nothing here waits a fixed time: every wait is for what the chip printed or
showed, with timeouts generous enough for a loaded 2-core host (the emulator's timers follow
the host's clock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mimamori_firmware import record
from sim import esp32_qemu as q
from sim.journal_read import records
from tools import image as img

pytestmark = [pytest.mark.esp32, pytest.mark.timeout(3600)]

WHY = q.missing()
if WHY:
    pytestmark.append(pytest.mark.skip(reason=f"no emulated ESP32 here: {WHY}"))

BRIGHTNESS = 0.5
LEVEL = int(100 * BRIGHTNESS**2.8)  # the LEDC trace's percent at the lamp's level (gamma 2.8)
BOOT_S = 1500.0  # real seconds a power-on may take on a loaded host (a boot is 1 to 3 minutes)
# machine.reset_cause() for each reset reason the ROM prints (ports/esp32/modmachine.c maps
# esp_reset_reason(): a panic and machine.reset() are SW_CPU_RESET in the ROM, HARD_RESET in
# MicroPython; the task watchdog, also SW_CPU_RESET, is WDT_RESET)
CAUSES = {"POWERON_RESET": {1}, "SW_CPU_RESET": {2, 3}, "TG0WDT_SYS_RESET": {3},
          "TG1WDT_SYS_RESET": {3}, "RTCWDT_SYS_RESET": {3}, "RTCWDT_RTC_RESET": {1, 3}}
RADIO = {"brightness": BRIGHTNESS, "safe_mode_after": 1, "transport": "wifi",
         "server": "http://192.168.1.10:8080", "device_id": "bulb-q", "device_key": "ab" * 32,
         "wifi_ssid": "home", "wifi_password": "pw"}


def at_level(on: q.PowerOn) -> bool:
    boots = on.boots
    return bool(boots) and LEVEL in boots[-1].leds


def safe_and_lit(on: q.PowerOn) -> bool:
    boots = on.boots
    return len(boots) > 1 and "safe mode" in boots[-1].text and LEVEL in boots[-1].leds


def crashed(on: q.PowerOn) -> list[int]:
    """The boots that ended in a C-level crash (the ROM's panic report)."""
    return [i for i, b in enumerate(on.boots) if "Guru Meditation" in b.text]


class Run:
    def __init__(self, tmp: Path) -> None:
        self.flash = q.assemble(tmp / "flash.bin", build=tmp / "build",
                                site={"brightness": BRIGHTNESS})
        self.chip = q.Esp32(self.flash, tmp)
        self.quiet = self.chip.power_on(until=at_level, timeout=BOOT_S)
        self.after_quiet = records(self.flash)
        img.put_files(self.flash, {"site.json": json.dumps(RADIO).encode()})
        for _ in range(3):  # the emulator's own watchdogs may reset a boot before the radio
            self.radio = self.chip.power_on(until=safe_and_lit, timeout=BOOT_S)
            if self.radio.ended_by != "condition" or crashed(self.radio):
                break
        self.records = records(self.flash)

    def why(self) -> str:
        return "\n".join(f"--- power-on {i}: {on.ended_by}\n{on.text[-3000:]}"
                         for i, on in enumerate(self.chip.power_ons, 1))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    r = Run(tmp_path_factory.mktemp("esp32"))
    assert r.quiet.ended_by == "condition", f"the lamp never reached its level:\n{r.why()}"
    assert r.radio.ended_by == "condition", f"no safe mode with the lamp lit:\n{r.why()}"
    return r


def power_ons(recs: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    return [r for r in recs if r[3] == record.K_POWER_ON]


def faults(recs: list[tuple[int, ...]], code: int) -> list[tuple[int, ...]]:
    return [r for r in recs if r[3] == record.K_FAULT and r[4] == code]


def test_the_image_is_what_make_flash_writes(run: Run) -> None:
    data = run.flash.read_bytes()
    fw = (q.qemu_dir() / q.FIRMWARE_BIN).read_bytes()
    build = run.flash.parent / "build"
    table = (build / "partitions.bin").read_bytes()
    assert data[0x1000 : 0x1000 + 0x7000] == fw[:0x7000]  # bootloader, up to the table
    assert data[0x8000 : 0x8000 + len(table)] == table
    assert data[0x10000 : 0x1000 + len(fw)] == fw[0xF000:]  # the application


def test_lamp_is_taken_over_at_full_and_never_below_its_level(run: Run) -> None:
    boots = [b for on in run.chip.power_ons for b in on.boots]
    assert len(boots) >= 3
    for b in boots:
        if 100 not in b.leds:  # reset before the take-over (the driver's pull-up holds it)
            assert b.leds in ([], [0]), b.leds
            continue
        first = b.leds.index(100)
        # stock v1.23 configures the channel at duty 0 before it applies duty_u16 (the PWM
        # start, docs/firmware.md): the only level below full before the take-over
        assert b.leds[:first] in ([], [0]), b.leds
        assert min(b.leds[first:]) >= LEVEL, b.leds
    assert LEVEL in run.chip.power_ons[0].boots[-1].leds


def test_the_firmwares_watchdog_is_fed_through_boot_at_the_default_timeout(run: Run) -> None:
    cfg = img.vfs_files(run.flash)
    assert json.loads(cfg["config.json"])["wdt_ms"] == 10000
    assert "wdt_ms" not in RADIO
    text = "\n".join(on.text for on in run.chip.power_ons)
    assert "task_wdt" not in text, "machine.WDT fired during a boot"
    assert "main: step" not in text, "a boot step failed"
    # the quiet power-on: one boot (or more after the emulator's own spurious watchdogs, which
    # the firmware does not feed) that got to the lamp's level, and its POWER_ON record
    assert run.quiet.boots[-1].reason in CAUSES
    assert power_ons(run.after_quiet), run.why()


def test_records_accumulate_over_power_ons(run: Run) -> None:
    before = power_ons(run.after_quiet)
    after = power_ons(run.records)
    assert after[: len(before)] == before, "the second power-on kept the first one's records"
    assert len(after) >= len(before) + 2, "the crashed boot and the safe-mode boot both recorded"
    assert [r[1] for r in after] == sorted({r[1] for r in after}), "boot numbers never repeat"
    seqs = [r[0] for r in run.records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_the_radio_crash_ends_in_safe_mode_with_the_lamp_lit(run: Run) -> None:
    boots = run.radio.boots
    crash = crashed(run.radio)
    assert crash, f"starting Wi-Fi did not crash the emulated chip:\n{run.why()}"
    last = boots[-1]
    assert crash[-1] < len(boots) - 1 and last.reason == "SW_CPU_RESET"
    assert "safe mode" in last.text and LEVEL in last.leds
    safe = faults(run.records, record.F_SAFE_MODE)
    assert safe and safe[-1][5] >= 1, "the safe-mode boot recorded why"


def test_each_boots_reset_reason_is_recorded(run: Run) -> None:
    """Every POWER_ON record's cause is the one the ROM printed for a boot, in order: a
    C-level crash leaves no F_CRASH (no Python code ran), its HARD_RESET is the record."""
    reasons = [b.reason for on in run.chip.power_ons for b in on.boots]
    causes = [r[4] for r in power_ons(run.records)]
    i = 0
    for cause in causes:  # each record matches a later boot (a boot reset early has none)
        while i < len(reasons) and cause not in CAUSES.get(reasons[i], set()):
            i += 1
        assert i < len(reasons), f"POWER_ON causes {causes} do not follow the boots {reasons}"
        i += 1
    assert causes[0] == 1 and causes[-1] == 2, (causes, reasons)
    if any(r in ("TG0WDT_SYS_RESET", "TG1WDT_SYS_RESET") for r in reasons):
        assert faults(run.records, record.F_WATCHDOG), "a watchdog reset is recorded as such"
