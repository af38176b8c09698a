# SPDX-License-Identifier: MIT
"""Heap as the ESP32 has it: the firmware's live heap on the 32-bit MicroPython v1.27 build
(4-byte words, as on the bulb; <shared>/tools/micropython32), per mode: boot, a Wi-Fi HTTPS
delivery, an LTE-M delivery, setup mode with its portal open.

The shims are not the firmware's: on the ESP32 they are C code in flash, and mbedTLS keeps its
sessions in the IDF heap. With sim.json "heap_probe" the shims note their own bytes (_sim.py:
shim_base once they are all imported, tls_bytes for the TLS engine) and the probe below counts
gc.mem_alloc() minus those, after a gc.collect(), at every turn of the event loop (every 20 ms
of bulb time). Each mode runs twice:
  1. in a roomy heap: the firmware's live peak (heap32_peak_<mode>_bytes, baseline the 56 KiB
     the ESP32 port's GC heap starts with);
  2. in a heap of 56 KiB (or, when run 1's peak leaves less than 8 KiB of it, the grown heap of
     112 KiB: the ESP32 port adds a second area once) plus what run 1 saw the shims hold: the
     largest free block at the firmware's peak (heap32_free_block_<mode>_bytes, baseline 8 KiB),
     0 when the firmware ran out of that heap.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.run import figure
from mimamori.storage import Store
from sim.bulb import MPY_ENV, Bulb, mpy32_missing, wifi_net
from sim.modem import Modem
from sim.server_process import ServerProcess
from tools import image as img

ESP32_HEAP = 56 * 1024  # the ESP32 port's first GC heap area (it grows once, to about 112 KB)
SPARE = 8 * 1024
SHIM_SPARE = 8 * 1024  # the shims' passing buffers (a flash erase's 4 KiB, trace lines)
ROOMY = 112 * 1024 + 96 * 1024  # run 1: the grown heap and room for the shims
_BLOCK = 16  # bytes per GC block with 4-byte words
WIFI = [wifi_net("home", "pw", rssi=-61)]

PROBE_MAIN = """
import asyncio, gc, micropython, _sim
_run = asyncio.run
_peak = [0]


def _sample():
    gc.collect()
    live = gc.mem_alloc() - _sim.shim_base - _sim.tls_bytes
    if live > _peak[0]:
        _peak[0] = live
        micropython.mem_info()
        print("HEAP", live, gc.mem_alloc() + gc.mem_free(), _sim.shim_base, _sim.tls_bytes)


def _with_probe(coro):
    async def probe():
        while True:
            _sample()
            await asyncio.sleep_ms(20)

    async def both():
        _sample()
        asyncio.create_task(probe())
        await coro

    return _run(both())


asyncio.run = _with_probe
_code = compile(open({main!r}).read(), {main!r}, "exec")  # the source freed, as _boot.py does
exec(_code, {{"__name__": "__main__"}})
"""


def _heap_of(b: Bulb) -> dict[str, int]:
    """The last peak the probe printed: live, total, shims, tls and the largest free block."""
    out = b.stdout
    got = re.findall(r"max free sz: (\d+)\s*\n\s*HEAP (\d+) (\d+) (\d+) (-?\d+)", out)
    if not got:
        raise RuntimeError(f"the heap probe did not report; output:\n{out[-3000:]}{b.stderr}")
    free, live, total, shims, tls = (int(x) for x in got[-1])
    return {"live": live, "total": total, "shims": shims, "tls": tls, "free": free * _BLOCK,
            "oom": int("MemoryError" in out + b.stderr)}


def _bulb(d: Path, name: str, heap: int, files: dict[str, bytes] | None = None,
          **kw: object) -> Bulb:
    """A bulb booting the image `make image` builds (.mpy modules, as `make flash` writes
    them); heap: the whole -X heapsize (the shims' budget included)."""
    main = d / f"{name}-probe.py"
    main.write_text(PROBE_MAIN.format(main="/flash/main.py"))
    extra = {"heap_probe": True, "io_wait_ms": 3000, **kw.pop("extra", {})}  # type: ignore[dict-item]
    b = Bulb(d / name, heap=f"{heap}", shim_heap=0, main=main, image=d / "build" / "flash.bin",
             extra=extra, **kw)  # type: ignore[arg-type]
    if files:
        img.put_files(b.state_dir / "flash.bin", files)
    return b


def _self_signed(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "server.pem", d / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def _server(d: Path, name: str, tls: bool) -> tuple[ServerProcess, dict[str, object]]:
    db = d / f"{name}-server.db"
    store = Store.open(db)
    key = store.register_device(0, "bench-heap").key
    store.close()
    cert = keyf = None
    if tls:
        cert, keyf = _self_signed(d / name)
    srv = ServerProcess(db, cert=str(cert) if cert else None, key=str(keyf) if keyf else None)
    srv.start()
    site = {"server": srv.url, "device_id": "bench-heap", "device_key": key,
            "wifi_ssid": "home", "wifi_password": "pw", "heartbeat_s": 600}
    if cert:
        site["ca_cert"] = "ca.pem"
    return srv, site


def _boot(d: Path, name: str, heap: int) -> Bulb:
    b = _bulb(d, name, heap, site={"brightness": 0.5})
    b.power_on(stop_at_s=30, timeout=180)
    return b


def _wifi_https(d: Path, name: str, heap: int) -> Bulb:
    srv, site = _server(d, name, tls=True)
    try:
        b = _bulb(d, name, heap, {"ca.pem": (d / name / "server.pem").read_bytes()}, site=site,
                  wifi=WIFI)
        b.power_on(stop_at_s=20, timeout=180)
    finally:
        srv.stop()
    return b


def _lte(d: Path, name: str, heap: int) -> Bulb:
    srv, site = _server(d, name, tls=False)
    modem = Modem(d / f"{name}-uart1.sock").start()
    try:
        site = {**site, "transport": "lte", "apn": "iot.example"}
        b = _bulb(d, name, heap, site=site, uart={"1": modem.path}, extra={"seed": 14})
        b.power_on(stop_at_s=30, timeout=180)
    finally:
        modem.stop()
        srv.stop()
    return b


def _setup(d: Path, name: str, heap: int) -> Bulb:
    """A registered bulb that finds no network opens its portal; a phone loads its pages."""
    site = {"server": "http://127.0.0.1:9", "device_id": "bench-heap", "device_key": "ab" * 32,
            "ap_password": "kx7m2qp9rt"}
    b = _bulb(d, name, heap, site=site, wifi=[wifi_net("home", "pw"), wifi_net("cafe", "")])
    b.power_on(wait=False)
    try:
        port = b.wait_for(lambda tr: [e["real"] for e in tr if e["ev"] == "net"
                                      and e.get("op") == "bind" and e.get("port") == 80], 60)
        with httpx.Client(timeout=60) as c:
            for path in ("/", "/generate_204", "/"):
                c.get(f"http://127.0.0.1:{port[-1]}{path}")
    finally:
        b.power_off()
    return b


MODES: dict[str, Callable[[Path, str, int], Bulb]] = {
    "boot": _boot, "wifi_https": _wifi_https, "lte": _lte, "setup": _setup}


def measure(mode: str, d: Path) -> tuple[dict[str, int], dict[str, int], int]:
    """(run 1 in a roomy heap, run 2, the firmware's heap in run 2) for one mode. Run 2 gives
    the firmware 56 KiB or, when its peak does not fit that, the grown 112 KiB, plus the
    shims' bytes and SHIM_SPARE for their passing buffers (its largest free block is reported
    less SHIM_SPARE)."""
    run = MODES[mode]
    roomy = _heap_of(run(d, f"{mode}-roomy", ROOMY))
    heap = ESP32_HEAP if roomy["live"] + SPARE <= ESP32_HEAP else 2 * ESP32_HEAP
    total = heap + roomy["shims"] + max(roomy["tls"], 0) + SHIM_SPARE
    tight = _heap_of(run(d, f"{mode}-{heap // 1024}k", int(total / 0.977) + 64))
    tight["free"] = max(0, tight["free"] - SHIM_SPARE)
    return roomy, tight, heap


def figures() -> list[dict]:
    why = mpy32_missing("32")
    if why:
        print(f"figures_heap32: skipped: {why}")
        return []
    old = os.environ.get(MPY_ENV)
    os.environ[MPY_ENV] = "32"
    out = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-heap32-") as d:
            img.build(out=Path(d) / "build")
            for mode in MODES:
                roomy, tight, heap = measure(mode, Path(d))
                out.append(figure(
                    f"heap32_peak_{mode}_bytes", roomy["live"], "bytes", ESP32_HEAP,
                    f"firmware's live heap peak, 32-bit v1.27 (shims {roomy['shims']} B and TLS "
                    f"engine {roomy['tls']} B excluded); baseline: the ESP32's first 56 KiB"))
                free = 0 if tight["oom"] else tight["free"]
                out.append(figure(
                    f"heap32_free_block_{mode}_bytes", free, "bytes", SPARE,
                    f"largest free block at the peak with a firmware heap of {heap // 1024} KiB"
                    f"{' (the grown heap: the peak is over 48 KiB)' if heap > ESP32_HEAP else ''}"
                    f"{', ran out: MemoryError' if tight['oom'] else ''}; baseline: 8 KiB"))
    finally:
        if old is None:
            os.environ.pop(MPY_ENV, None)
        else:
            os.environ[MPY_ENV] = old
    return out
