# SPDX-License-Identifier: MIT
"""The MicroPython REPL of a simulated bulb on a TCP socket: what the USB cable of a bulb on the
bench offers, so the real `mpremote` works against the simulation:

    mpremote connect socket://127.0.0.1:PORT cp site.json :site.json + reset

The raw REPL protocol is served here (Ctrl-C interrupt, Ctrl-A raw mode, Ctrl-D execute or soft
reset, Ctrl-B friendly mode; raw-paste is declined with "R\\x00", which mpremote handles). The
code runs in a real `micropython` process with the hardware shims and the firmware on its path,
its cwd the bulb's own filesystem (`<state>/fs`), and its globals kept between commands as on a
board (mpremote's file copy relies on that). Ctrl-C stops the firmware if it runs (main.py is
interrupted); `machine.reset()` ends the REPL process the way the shim resets a bulb, and the
bulb boots its firmware again (a runner power-on: RTC memory is not kept, unlike a real reset).
The watchdog keeps running at the REPL, as on the ESP32 (the task watchdog cannot be stopped):
when main.py had started one, the REPL resets the bulb `wdt_ms` of real time after the Ctrl-C
(the upper bound: the firmware fed it at most a quarter of that before), killing whatever the
REPL runs, and the firmware boots again with WDT_RESET. docs/firmware.md says how a developer
stops main.py safely.

It must never run a command in the host's Python, and never leave a `micropython` process behind
when it is closed. See docs/for-installers.md (bench provisioning) and docs/simulation.md.

    python -m sim.repl STATE_DIR [--port 0] [--wifi SSID:PASSWORD:RSSI ...]   # a bench bulb
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Self

from sim.bulb import (
    HARD_RESET,
    SHIMS,
    WDT_RESET,
    Bulb,
    heap_bytes,
    micropython_bin,
    wifi_net,
)

BANNER = b"MicroPython (simulated Mimamori bulb) on esp32\r\nType \"help()\" for more information.\r\n"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"

# Runs in the REPL's micropython process: reads "<length>\n<code>" from a FIFO, runs the code in
# one globals dict and writes, on stdout, the raw REPL's answer: output, \x04, traceback, \x04.
DRIVER = r"""
import io, os, sys
_fin = open(os.getenv("MIMAMORI_REPL_IN"), "rb")
_g = {"__name__": "__main__"}
while True:
    _h = _fin.readline()
    if not _h:
        break
    _n = int(_h)
    _code = b""
    while len(_code) < _n:
        _more = _fin.read(_n - len(_code))
        if not _more:
            break
        _code += _more
    _err = ""
    try:
        exec(_code.decode(), _g)
    except BaseException as _e:
        _s = io.StringIO()
        sys.print_exception(_e, _s)
        _err = _s.getvalue()
    sys.stdout.write("\x04" + _err + "\x04")
"""


class _Interpreter:
    """One REPL process: the shims and firmware on MICROPYPATH, cwd the bulb's fs/."""

    def __init__(self, bulb: Bulb) -> None:
        self.bulb = bulb
        self._dir = tempfile.mkdtemp(prefix="mimamori-repl-")
        self._fifo = os.path.join(self._dir, "in")
        os.mkfifo(self._fifo)
        cfg = bulb.sim_json()
        for key in ("stop_at_ms", "events", "exit_at_end"):  # the REPL is not a visit
            cfg.pop(key, None)
        sim = bulb.state_dir / "repl.json"
        sim.write_text(json.dumps(cfg, indent=1))
        env = dict(os.environ)
        env.update({
            "MIMAMORI_SIM": str(sim), "MIMAMORI_CAUSE": str(HARD_RESET),
            "MIMAMORI_BOOT": str(max(1, bulb.power_ons)), "MIMAMORI_T0": "0", "TZ": "UTC",
            "MICROPYPATH": f"{SHIMS}:{bulb.firmware_dir}:.frozen",
            "MIMAMORI_REPL_IN": self._fifo,
        })
        heap = heap_bytes(bulb.heap) + bulb.shim_bytes()
        self.proc = subprocess.Popen(
            [micropython_bin(), "-X", f"heapsize={heap}", "-c", DRIVER],
            cwd=bulb.fs, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        self._w = open(self._fifo, "wb")  # noqa: SIM115 - open as long as the process lives

    def run(self, code: bytes, out: socket.socket) -> bool:
        """Run code; stream the raw REPL answer to `out`. False when the process ended (reset)."""
        assert self.proc.stdout is not None
        try:
            self._w.write(b"%d\n" % len(code) + code)
            self._w.flush()
        except BrokenPipeError:
            return False
        eots = 0
        while eots < 2:
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                _send(out, b"\x04" * (2 - eots))
                return False
            eots += chunk.count(b"\x04")
            _send(out, chunk)
        return True

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self._w, self.proc.stdin, self.proc.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        try:
            os.unlink(self._fifo)
            os.rmdir(self._dir)
        except OSError:
            pass


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the host went away; the session ends at its next read


class ReplServer:
    """The bulb's REPL on host:port, one client at a time (as a serial port is)."""

    def __init__(self, bulb: Bulb, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bulb = bulb
        self._sock = socket.create_server((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self._interp: _Interpreter | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="repl", daemon=True)
        self.resets = 0
        self.watchdog_resets = 0
        self._dog: threading.Timer | None = None  # the watchdog still running at the REPL
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._disarm()
        self._sock.close()
        self._thread.join(5)
        self._end_interp()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one connection at a time -------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._session(conn)
                except OSError:
                    pass

    def _end_interp(self) -> None:
        if self._interp is not None:
            self._interp.close()
            self._interp = None

    def _interrupt(self) -> None:
        """Ctrl-C: the running program (main.py) stops; its watchdog does not."""
        if self.bulb.is_running():
            timeout_ms = self._watchdog_ms()
            self.bulb.power_off()
            if timeout_ms and self._dog is None:
                self._dog = threading.Timer(timeout_ms / 1000, self._bite)
                self._dog.daemon = True
                self._dog.start()

    def _watchdog_ms(self) -> int:
        """The running firmware's watchdog timeout (<state>/alive: "<t_ms> <timeout ms>")."""
        try:
            return int((self.bulb.state_dir / "alive").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def _disarm(self) -> None:
        if self._dog is not None:
            self._dog.cancel()
            self._dog = None

    def _bite(self) -> None:
        """The watchdog fires at the REPL: whatever runs there dies, the firmware boots again."""
        with self._lock:
            if self._dog is None or self._stop.is_set():
                return
            self._dog = None
            if self._interp is not None:
                self._interp.proc.kill()  # the session sees it end; its command is lost
            self.watchdog_resets += 1
            if not self.bulb.is_running():
                self.bulb.power_on(wait=False, cause=WDT_RESET)

    def _session(self, conn: socket.socket) -> None:
        raw = False
        buf = bytearray()
        while True:
            data = conn.recv(4096)
            if not data:
                return
            for c in data:
                ch = bytes((c,))
                if ch == b"\x03":  # Ctrl-C: interrupt whatever runs, drop the line
                    self._interrupt()
                    buf.clear()
                    if not raw:
                        _send(conn, b"\r\n>>> ")
                elif ch == b"\x01":  # Ctrl-A: raw REPL
                    self._interrupt()
                    raw = True
                    buf.clear()
                    _send(conn, RAW_BANNER + b">")
                elif ch == b"\x02":  # Ctrl-B: friendly REPL
                    raw = False
                    buf.clear()
                    _send(conn, b"\r\n" + BANNER + b">>> ")
                elif not raw:
                    continue  # the friendly REPL's line editor is not simulated
                elif ch == b"\x04":  # Ctrl-D: run the line, or a soft reset when it is empty
                    if buf:
                        self._exec(conn, bytes(buf))
                        buf.clear()
                    else:
                        self._end_interp()
                        _send(conn, b"OK\r\nMPY: soft reboot\r\n" + RAW_BANNER + b">")
                else:
                    buf += ch
                    if buf == b"\x05A\x01":  # raw-paste mode: not offered
                        buf.clear()
                        _send(conn, b"R\x00")

    def _exec(self, conn: socket.socket, code: bytes) -> None:
        _send(conn, b"OK")
        if self._interp is None:
            self._interp = _Interpreter(self.bulb)
        if self._interp.run(code, conn):
            _send(conn, b">")
            return
        self._end_interp()
        marker = self.bulb.state_dir / "reset"
        with self._lock:
            if marker.exists():  # machine.reset(): the bulb boots its firmware again
                marker.unlink()
                self._disarm()  # a reset stops the watchdog; the firmware starts its own
                self.resets += 1
                if not self.bulb.is_running():
                    self.bulb.power_on(wait=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.repl", description=__doc__.split("\n\n")[0])
    ap.add_argument("state", type=Path, help="the simulated bulb's state directory")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--wifi", action="append", default=[], metavar="SSID:PASSWORD:RSSI")
    ap.add_argument("--off", action="store_true", help="do not start the firmware first")
    args = ap.parse_args(argv)
    nets = []
    for w in args.wifi:
        ssid, password, rssi = (w.split(":") + ["", "-60"])[:3]
        nets.append(wifi_net(ssid, password, rssi=int(rssi)))
    bulb = Bulb(args.state, wifi=nets)
    if not args.off:
        bulb.power_on(wait=False)
    with ReplServer(bulb, port=args.port) as repl:
        print(f"bulb {args.state}: REPL at {repl.url}  (Ctrl-C here to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    bulb.power_off()
    return 0


if __name__ == "__main__":
    sys.exit(main())
