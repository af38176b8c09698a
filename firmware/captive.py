# SPDX-License-Identifier: MIT
# captive.py: the setup-mode web server. Serves portal.py's page to the phone that joined the
# bulb's access point, redirects captive-portal probes to it, takes the submitted network,
# password and server, and runs the connection test in the background while the page refreshes
# itself, then shows the result.
# It must never block the event loop (one small request at a time, bounded reads with a
# timeout), never keep a password after the attempt that used it, and never let a request
# crash the server: a bad request gets a 400 and the next one is served.
import asyncio

import portal
from micropython import const

_HEAD = const(1536)  # longest request head (request line and headers) read
_HEADERS = const(32)  # most header lines read
_BODY = const(1024)  # longest form accepted
_READ_MS = const(5000)  # a client that stops sending is dropped


class BadRequest(Exception):
    pass


async def _discard(reader):
    """Read and drop what the client still sends: at most 4 KB, until it pauses 100 ms."""
    for _ in range(16):
        try:
            if not await asyncio.wait_for_ms(reader.read(256), 100):
                return
        except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has no built-in TimeoutError
            return


class Captive:
    """scan() -> WLAN.scan() tuples; attempt(ssid bytes, password, server) is a coroutine that
    returns (portal.MESSAGES key, rssi or None). ip: the access point's address."""

    def __init__(self, ip, scan, attempt, bulb="", server=""):
        self.ip = ip
        self._scan = scan
        self._attempt = attempt
        self.bulb = bulb
        self.state = "intro"
        self.form = {"server": server}
        self.rssi = None
        self.result = None  # (state, rssi) of the last finished attempt
        self._task = None
        self._server = None
        self.requests = 0

    async def start(self, host="0.0.0.0", port=80):
        self._server = await asyncio.start_server(self._client, host, port)
        return self._server

    def stop(self):
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._task is not None:
            self._task.cancel()

    async def _client(self, reader, writer):
        self.requests += 1
        try:
            try:
                method, path, length, body = await self._read_head(reader)
                if length > len(body):
                    more = reader.readexactly(length - len(body))
                    body += await asyncio.wait_for_ms(more, _READ_MS)
                await self._answer(writer, method, path, body)
            except (BadRequest, ValueError, IndexError):
                writer.write(portal.head("400 Bad Request", "text/plain"))
                writer.write(b"bad request\n")
                await writer.drain()
                await _discard(reader)  # unread input would turn the close into a reset
            await writer.drain()
        # asyncio.TimeoutError: MicroPython has no built-in TimeoutError
        except (asyncio.TimeoutError, OSError) as e:  # noqa: UP041 - phone gone or quiet
            print("captive:", repr(e))
        finally:
            writer.close()
            await writer.wait_closed()

    async def _read_head(self, reader):
        """Method, path, Content-Length and the body bytes read so far. Reads in small chunks
        up to _HEAD bytes: a line without an end cannot grow the heap."""
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > _HEAD:
                raise BadRequest("head too long")
            chunk = await asyncio.wait_for_ms(reader.read(256), _READ_MS)
            if not chunk:
                raise BadRequest("closed before the end of the head")
            buf += chunk
        lines = buf[:end].split(b"\r\n")
        body = buf[end + 4 :]
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or len(lines) > _HEADERS:
            raise BadRequest("request line or headers")
        length = 0
        for h in lines[1:]:
            name, _, value = h.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
                if not 0 <= length <= _BODY:
                    raise BadRequest("body too long")
        return str(parts[0], "ascii"), str(parts[1], "ascii").split("?", 1)[0], length, body

    async def _answer(self, writer, method, path, body):
        if path != "/" or method not in ("GET", "POST"):
            writer.write(portal.redirect(self.ip))  # probes and anything else: to the page
            return
        if method == "POST" and self.state != "testing":
            self._submit(portal.parse_form(body))
            writer.write(
                b"HTTP/1.1 303 See Other\r\nLocation: /\r\n"  # same host the form came from
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        writer.write(portal.head())
        nets = [] if self.state in ("testing", "ok") else portal.networks(self._scan())
        for chunk in portal.page(nets, self.state, self.form, self.rssi, self.bulb):
            writer.write(chunk.encode())
            await writer.drain()

    def _submit(self, form):
        ssid = portal.chosen_ssid(form)
        self.form = {k: v for k, v in form.items() if k != "password"}  # keep choices only
        if not ssid:
            self.state = "no_network"
            return
        self.state = "testing"
        self._task = asyncio.create_task(
            self._run(ssid, form.get("password", ""), form.get("server", ""))
        )

    async def _run(self, ssid, password, server):
        try:
            state, rssi = await self._attempt(ssid, password, server)
        except Exception as e:  # noqa: BLE001 - whatever broke, the page must say so
            print("captive: attempt:", repr(e))
            state, rssi = "failed", None
        self.state = state if state in portal.MESSAGES else "failed"
        self.rssi = rssi
        self.result = (self.state, rssi)
