# SPDX-License-Identifier: MIT
"""nginx from Debian in front of several server instances, as a deployment would put it: one
address for the bulbs and the browsers, requests spread over the instances, an instance that
is down skipped.

    with Nginx([8001, 8002, 8003]) as proxy:     # listens on a free loopback port
        httpx.post(proxy.url + "/v1/batches", ...)

`Nginx(ports, server_extra=...)` adds directives to the server block (the limits of
docs/operations.md: timeouts, body size, connections per address).

A request is passed on to the next instance only when it could not be sent to the first
(connection refused: the instance is down); one that reached an instance which then died gets
502, and the client tries again. The instances see the client's address in X-Forwarded-For
(the instances trust it when started with MIMAMORI_TRUSTED_PROXIES=127.0.0.1), so per-address
sign-in limits count per client.

It must never keep running after `stop()`, and never listen beyond loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from sim.server_process import free_port, listening

CONF = """\
{user}worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{http_extra}
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream mimamori {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64k;
        client_body_buffer_size 64k;
{server_extra}
        location / {{
            proxy_pass http://mimamori;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                     else None)


class Nginx:
    def __init__(self, upstreams: list[int], port: int | None = None, server_extra: str = "",
                 http_extra: str = ""):
        self.upstreams = upstreams
        self.server_extra, self.http_extra = server_extra, http_extra
        self.port = port or free_port()
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        exe = binary()
        if exe is None:
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light)")
        self.dir = Path(tempfile.mkdtemp(prefix="mimamori-nginx-"))
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;"
                            for p in self.upstreams)
        conf = self.dir / "nginx.conf"
        conf.write_text(CONF.format(dir=self.dir, servers=servers, port=self.port,
                                    server_extra=self.server_extra, http_extra=self.http_extra,
                                    user="user root;\n" if os.geteuid() == 0 else ""))
        self.proc = subprocess.Popen([exe, "-p", str(self.dir), "-c", str(conf),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        if not listening(self.proc, self.port, timeout, "nginx"):
            self.stop()
            raise RuntimeError(f"nginx did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
