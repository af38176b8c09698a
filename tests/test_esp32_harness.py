# SPDX-License-Identifier: MIT
"""The emulated ESP32's harness (sim/esp32_qemu.py) without the emulator: how QEMU is started
on a host that does or does not permit the real-time class, and how a QEMU abort is told from
what the chip did. Fake `chrt` and `nice` commands stand for what the host permits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim import esp32_qemu as q

CHRT_OK = "#!/bin/sh\nshift 2\nexec \"$@\"\n"
CHRT_DENIED = "#!/bin/sh\necho 'chrt: failed to set pid 0's policy: Operation not permitted' >&2\nexit 1\n"
# nice(1) runs the command even when it may not raise the priority; without arguments it prints
# the niceness the process has (here the one it got)
NICE = "#!/bin/sh\nif [ $# -eq 0 ]; then echo {got}; exit 0; fi\nshift 2\nexec \"$@\"\n"


def fake_host(tmp: Path, monkeypatch: pytest.MonkeyPatch, chrt: str, nice_got: int) -> None:
    bin_ = tmp / "bin"
    bin_.mkdir()
    for name, text in (("chrt", chrt), ("nice", NICE.format(got=nice_got))):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")


def test_qemu_runs_in_the_real_time_class_where_permitted(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake_host(tmp_path, monkeypatch, CHRT_OK, 0)
    cmd, how = q.launcher()
    assert cmd == ["chrt", "-r", "50"]
    assert "real-time" in how


def test_without_the_real_time_class_qemu_runs_at_nice_minus_20(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_host(tmp_path, monkeypatch, CHRT_DENIED, -20)
    assert q.launcher() == (["nice", "-n", "-20"], "nice -20")


def test_where_neither_is_permitted_qemu_runs_as_the_caller_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_host(tmp_path, monkeypatch, CHRT_DENIED, 0)
    cmd, how = q.launcher()
    assert cmd == []
    assert "neither" in how


def test_a_qemu_abort_is_told_from_the_chips_own_resets() -> None:
    panic = ["rst:0x1 (POWERON_RESET),boot:0x12 (SPI_FAST_FLASH_BOOT)",
             "Guru Meditation Error: Core  0 panic'ed (LoadStorePIFAddrError).",
             "rst:0xc (SW_CPU_RESET),boot:0x12 (SPI_FAST_FLASH_BOOT)"]
    why = "ERROR:../qemu-src/accel/tcg/tcg-accel-ops-mttcg.c:110: assertion failed"
    aborted = q.PowerOn(lines=[*panic, why, f"Bail out! {why}"], ended_by="exit")
    assert aborted.emulator_failed
    assert aborted.resets == ["POWERON_RESET", "SW_CPU_RESET"]
    assert not q.PowerOn(lines=panic, ended_by="condition").emulator_failed
    assert not q.PowerOn(lines=panic, ended_by="exit").emulator_failed
