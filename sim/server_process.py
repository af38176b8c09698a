# SPDX-License-Identifier: MIT
"""The reference server as a real process on loopback, for tests, the bench and the demo.

    with ServerProcess(db_path) as srv:      # starts `python -m mimamori` on a free port
        httpx.post(srv.url + "/v1/batches", ...)
        srv.kill()                            # SIGKILL: nothing is flushed, like a power cut
        srv.start()                           # again, on the same database file

It must never leave a server running after the with-block, and never kill a process it did
not start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parents[1]


def listening(proc: subprocess.Popen[bytes], port: int, timeout: float, what: str) -> bool:
    """Wait until `proc` accepts connections on 127.0.0.1:port: True, or False after timeout
    seconds. A process that exits first raises RuntimeError with what it printed on stderr."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"{what} exited at start ({proc.returncode}): {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, db_path: str | Path, port: int | None = None, clock: str | None = None,
                 cert: str | None = None, key: str | None = None,
                 env: dict[str, str] | None = None):
        self.db_path = str(db_path)
        self.port = port or free_port()
        self.clock = clock
        self.cert, self.key = cert, key
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.cert else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        args = [sys.executable, "-m", "mimamori", "--db", self.db_path]
        if self.clock:
            args += ["--clock", self.clock]
        args += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.cert and self.key:
            args += ["--cert", self.cert, "--key", self.key]
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        if not listening(self.proc, self.port, timeout, "the server"):
            self.stop()
            raise RuntimeError(f"the server did not listen on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as on a power cut."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
