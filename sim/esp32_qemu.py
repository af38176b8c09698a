# SPDX-License-Identifier: MIT
"""Boot the firmware on an emulated ESP32: Espressif's QEMU with stock MicroPython (no shims).

The emulator, its ROMs and a stock MicroPython .bin live in <shared>/tools/esp32-qemu (its
README says what is modelled: LEDC, the watchdogs, reset causes, RTC memory, the flash; no
radio). `assemble()` writes the 4 MB flash file exactly as `make flash` leaves a bulb: the
esptool steps of tools/flash.plan() applied to an erased chip. `Esp32.power_on()` is one
switch-on: one QEMU process, its serial console and LEDC trace read as they come, ended (a
power cut) when a condition on them is met. The flash file keeps what the chip wrote, so the
next power_on() is the next switch-on, and sim.journal_read reads the journal from it.

    chip = Esp32(assemble(tmp / "flash.bin"), tmp)
    on = chip.power_on(until=lambda on: 14 in on.boots[-1].leds, timeout=600)
    on.resets   # ["POWERON_RESET", ...]: every (re)boot the ROM printed

QEMU's timers follow the host's clock: waits are for what the chip printed or showed, with
generous timeouts, never for a fixed time.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sim.bulb import REPO, shared_dir
from tools import flash as flashtool
from tools import image as img
from tools import partition_table as pt

FIRMWARE_BIN = "ESP32_GENERIC-20240602-v1.23.0.bin"  # stock MicroPython v1.23.0
FLASH_SIZE = 4 * 1024 * 1024
_RST = re.compile(r"^rst:0x[0-9a-f]+ \((\w+)\)")
_LED = re.compile(r"led_set_intensity .*intensity: (\d+)%")


def qemu_dir() -> Path:
    return shared_dir() / "tools" / "esp32-qemu"


def missing() -> str:
    """Why the emulator cannot run here ("" when it can)."""
    exe = qemu_dir() / "qemu-system-xtensa"
    if not os.access(exe, os.X_OK):
        return f"the emulated ESP32 is absent: no {exe} (set MIMAMORI_SHARED)"
    if not (qemu_dir() / FIRMWARE_BIN).exists():
        return f"no stock MicroPython {qemu_dir() / FIRMWARE_BIN}"
    try:
        r = subprocess.run([str(exe), "-version"], capture_output=True, text=True, timeout=30,
                           check=False)
    except OSError as e:
        return f"{exe} does not start: {e}"
    if r.returncode:
        return (f"{exe} does not start ({r.stderr.strip()[:200]}); it needs Debian's "
                "libglib2.0-0 libpixman-1-0 libgcrypt20 libslirp0 libfdt1 (`make setup` as root)")
    return ""


def assemble(out: Path, build: Path | None = None, firmware_bin: Path | None = None,
             site: dict | None = None) -> Path:
    """The flash file `make flash` writes: `make image` (into build), then tools/flash.plan()'s
    erase-region and write-flash steps applied, in order, to an erased 4 MB chip. site: a
    site.json put into the vfs partition afterwards, as `make provision` does."""
    import json

    build = build or out.parent / "build"
    img.build(out=build)
    fw = firmware_bin or qemu_dir() / FIRMWARE_BIN
    parts = pt.load(img.CSV)
    chip = bytearray(b"\xff" * FLASH_SIZE)
    for cmd in flashtool.plan("qemu", fw, parts, build / "partitions.bin", build / "vfs.bin"):
        if "erase-region" in cmd:
            i = cmd.index("erase-region")
            off, size = int(cmd[i + 1], 0), int(cmd[i + 2], 0)
            chip[off : off + size] = b"\xff" * size
            continue
        args = cmd[cmd.index("write-flash") + 1 :]
        for off, name in zip(args[::2], args[1::2], strict=True):
            data = (REPO / name if not os.path.isabs(name) else Path(name)).read_bytes()
            o = int(off, 0)
            chip[o : o + len(data)] = data
    out.write_bytes(bytes(chip))
    if site is not None:
        img.put_files(out, {"site.json": json.dumps(site).encode()})
    return out


def launcher() -> tuple[list[str], str]:
    """The command prefix QEMU runs under, and what it gives: the real-time class where the
    host permits it, else nice -20 where permitted (nice(1) runs the command anyway when it is
    not, so the probe asks the niceness it got), else nothing."""
    probes = ((["chrt", "-r", "50"], "true", "real-time (chrt -r 50)"),
              (["nice", "-n", "-20"], 'test "$(nice)" = -20', "nice -20"))
    for cmd, check, how in probes:
        try:
            r = subprocess.run([*cmd, "sh", "-c", check], capture_output=True, timeout=30,
                               check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return cmd, how
    return [], "the caller's priority (neither chrt -r nor nice -20 permitted here)"


@dataclass
class Boot:
    """One (re)boot within a power-on: the ROM's reset reason, the LEDC levels (percent) and
    the console lines, in order."""

    reason: str
    leds: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class PowerOn:
    """What one switch-on showed, boot by boot (the ROM prints a reset reason at each)."""

    lines: list[str] = field(default_factory=list)  # console and LEDC trace, interleaved
    ended_by: str = ""  # "condition", "timeout" or "exit"

    @property
    def boots(self) -> list[Boot]:
        out: list[Boot] = []
        for line in self.lines:
            if m := _RST.match(line):
                out.append(Boot(m[1]))
            elif not out:
                continue
            elif m := _LED.search(line):
                out[-1].leds.append(int(m[1]))
            elif "led_" not in line:
                out[-1].lines.append(line)
        return out

    @property
    def text(self) -> str:
        return "\n".join(x for x in self.lines if "led_" not in x)

    @property
    def emulator_failed(self) -> bool:
        """QEMU itself aborted (not the chip): its multi-threaded TCG at times fails an
        assertion while the chip reboots after a panic (`mttcg_cpu_thread_fn: assertion
        failed: (cpu->halted)`). To the chip that is a power cut at that moment. (One host
        thread for both cores, `-accel tcg,thread=single`, avoids it but is no use: a core
        spinning for the other's acknowledgement of a flash operation then holds the thread
        and the firmware's watchdog fires at every boot.)"""
        return self.ended_by == "exit" and any(x.startswith("Bail out!") for x in self.lines)

    @property
    def resets(self) -> list[str]:
        """The ROM's reset reason of every boot, e.g. ["POWERON_RESET", "SW_CPU_RESET"]."""
        return [b.reason for b in self.boots]


class Esp32:
    """An emulated ESP32 with a flash file; each power_on() is a new QEMU process."""

    def __init__(self, flash: Path, workdir: Path) -> None:
        self.flash = Path(flash)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.power_ons: list[PowerOn] = []
        # extra QEMU arguments. "-global timer.esp32.timg.wdt_disable=true" was tried against
        # the chip's own boot and interrupt watchdogs firing at random on a loaded host (QEMU's
        # timers follow the host's clock): they still fire, so the test tolerates them instead
        self.qemu_args: list[str] = []
        # A real chip has its cores to itself; the emulated one shares the host's with whatever
        # else runs, while its timers (and so its watchdogs) follow the host's clock: on a
        # loaded host the guest's code runs slower against its own clock and the firmware's
        # watchdog fires. So QEMU runs in the real-time class (`chrt -r 50`: ahead of every
        # ordinary process, allowed to root or with CAP_SYS_NICE; the kernel's RT throttling
        # still leaves the rest of the host 5 % of each CPU) or, where that is not permitted,
        # at the highest ordinary priority (`nice -n -20`, else the caller's). `how` says
        # which it got; `sched()` what a process actually runs under.
        self.launcher, self.how = launcher()

    def power_on(self, until: Callable[[PowerOn], bool], timeout: float = 600.0) -> PowerOn:
        """Switch on; cut the power once until(on) holds (checked as output arrives) or after
        timeout real seconds (ended_by says which). The LEDC trace comes on QEMU's stderr,
        into the same pipe as the console, so the two stay in order."""
        n = len(self.power_ons) + 1
        on = PowerOn()
        self.power_ons.append(on)
        d = qemu_dir()
        proc = subprocess.Popen(
            [*self.launcher, str(d / "qemu-system-xtensa"), "-nographic",
             "-machine", "esp32", "-L",
             str(d / "pc-bios"), "-drive", f"file={self.flash},if=mtd,format=raw", "-nic", "none",
             "-d", "trace:led_set_intensity", *self.qemu_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = threading.Thread(target=self._read, args=(proc, on.lines,
                                                           self.workdir / f"serial{n}.log"),
                                  daemon=True)
        reader.start()
        end = time.monotonic() + timeout
        try:
            while True:
                if until(on):
                    on.ended_by = "condition"
                    break
                if proc.poll() is not None:
                    on.ended_by = "exit"
                    break
                if time.monotonic() > end:
                    on.ended_by = "timeout"
                    break
                time.sleep(0.2)
        finally:
            proc.kill()  # the power cut: nothing more reaches the flash
            proc.wait()
            reader.join(10)
        return on

    @staticmethod
    def _read(proc: subprocess.Popen[bytes], lines: list[str], log: Path) -> None:
        assert proc.stdout is not None
        with open(log, "w") as f:
            for raw in proc.stdout:
                line = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode(errors="replace")).rstrip()
                f.write(line + "\n")
                f.flush()
                lines.append(line)
