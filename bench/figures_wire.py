# SPDX-License-Identifier: MIT
"""Uplink figures: bytes on the wire per event over a month of a household (Wi-Fi and LTE-M),
LTE-M bytes per month, and how soon the server acknowledges a switch-on.

A month of visits comes from sim/household.py (one seed, ~7 visits a day). Every visit is a
boot of the unmodified firmware in MicroPython (virtual time; the visit's length is its
stop_at) talking to the reference server on loopback: over Wi-Fi (socket shim, bytes from the
trace) and over LTE-M (the modem emulator, whose network clock follows the simulated month).
Bytes "on the wire" = TCP payload + the same TCP/IP overhead model for both transports
(sim/modem.py AIR_MODEL: headers, handshake, ACKs, close; DNS when the host is a name).

Baseline: the naive design, one JSON POST per event (every journal record the bulb wrote),
each on its own connection, built realistically (headers, a bearer token, a JSON answer).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run import figure
from mimamori.storage import Store
from mimamori_firmware import record
from sim.bulb import Bulb, wifi_net
from sim.household import Household, unix
from sim.journal_read import of_bulb
from sim.modem import AIR_MODEL, MODEL_NOTE, Modem
from sim.server_process import ServerProcess

DAYS = 30
SEED = 7
START = datetime(2026, 1, 5, tzinfo=UTC)
HOST = "mimamori.example.jp"  # the server's name, as a deployment has (DNS is counted)
WIFI = [wifi_net("home", "pw", rssi=-62)]
ACK_RUNS = 5


def _segments(n: int) -> int:
    return (n + AIR_MODEL["mss"] - 1) // AIR_MODEL["mss"]


def tcp_overhead(connections: int, chunks: list[int]) -> int:
    """Overhead bytes of the model for these connections and data chunks (each way)."""
    seg = AIR_MODEL["seg"]
    per_conn = AIR_MODEL["syn"] + AIR_MODEL["syn_ack"] + seg + 4 * seg
    return connections * per_conn + sum(2 * seg * _segments(c) for c in chunks)


def naive_event_bytes(rec: tuple[int, ...], device: str = "bulb-1") -> int:
    """One JSON POST for one event, on its own connection, with its answer and TCP/IP."""
    seq, boot, up_ms, kind, sub, aux, arg = rec
    body = json.dumps({"device": device, "seq": seq, "boot": boot, "up_ms": up_ms,
                       "kind": record.KIND_NAMES.get(kind, str(kind)), "sub": sub, "aux": aux,
                       "arg": arg}, separators=(",", ":")).encode()
    head = ("POST /api/v1/events HTTP/1.1\r\nHost: " + HOST + "\r\nContent-Type: "
            "application/json\r\nContent-Length: " + str(len(body)) + "\r\nAuthorization: "
            "Bearer " + "0" * 64 + "\r\nConnection: close\r\n\r\n").encode()
    answer_body = b'{"ok":true,"time_ms":1767571200000}'
    answer = (b"HTTP/1.1 200 OK\r\ncontent-length: " + str(len(answer_body)).encode()
              + b"\r\ncontent-type: application/json\r\nConnection: close\r\n\r\n" + answer_body)
    req = head + body
    return len(req) + len(answer) + tcp_overhead(1, [len(req), len(answer)]) + dns_bytes()


def dns_bytes() -> int:
    """One lookup of HOST (query and answer), as sim/modem.py counts it."""
    return AIR_MODEL["dns_fixed"] * 2 + 2 * len(HOST) + AIR_MODEL["dns_answer"]


def _site(srv: ServerProcess, dev: str, key: str, transport: str) -> dict[str, Any]:
    return {"server": f"http://{HOST}:{srv.port}", "device_id": dev, "device_key": key, "transport": transport,
            "wifi_ssid": "home", "wifi_password": "pw", "apn": "iot.example"}


def _month(transport: str, visits: list[Any], tmp: Path, srv: ServerProcess, key: str,
           out: dict[str, Any]) -> None:
    dev = "wire-" + transport
    modem = None
    if transport == "lte":
        modem = Modem(tmp / f"{transport}.sock", hosts={HOST: "127.0.0.1"}).start()
    try:
        b = Bulb(tmp / dev, site=_site(srv, dev, key, transport), wifi=WIFI,
                 uart={"1": modem.path} if modem else {},
                 extra={"hosts": {HOST: "127.0.0.1"}, "io_wait_ms": 3000})
        for v in visits:
            if modem:
                modem.faults.clock_offset_s = unix(v.on) - time.time()
            b.power_on(stop_at_s=(v.off - v.on).total_seconds(), timeout=120)
        recs, _ = of_bulb(b)  # every record the bulb wrote (its ack entries excepted)
        if modem:
            air = modem.air
            wire = air.total
            conns = air.connections
        else:
            net = [e for e in b.trace() if e["ev"] == "net"]
            conns = sum(1 for e in net if e["op"] == "connect")
            chunks = [e["bytes"] for e in net if e["op"] in ("send", "recv") and e.get("bytes")]
            wire = sum(chunks) + tcp_overhead(conns, chunks) + conns * dns_bytes()
        store = Store.open(srv.db_path)
        stored = store.records_for_device(dev)
        store.close()
        out[transport] = {"wire": wire, "records": len(recs), "connections": conns,
                          "stored": len(stored), "naive": sum(naive_event_bytes(r) for r in recs),
                          "powerons": sum(1 for r in stored if r.kind == record.K_POWER_ON)}
    except Exception as e:  # noqa: BLE001 - re-raised by figures() in the main thread
        out[transport] = e
    finally:
        if modem:
            modem.stop()


def figures() -> list[dict]:
    visits = Household(SEED).events(START, DAYS)
    with tempfile.TemporaryDirectory(prefix="mimamori-wire-") as d:
        tmp = Path(d)
        db = tmp / "server.db"
        store = Store.open(db)
        keys = {}
        for dev in ("wire-wifi", "wire-lte", *(f"ack-{i}" for i in range(ACK_RUNS))):
            keys[dev] = store.register_device(0, dev).key
        store.close()
        with ServerProcess(db) as srv:
            out: dict[str, Any] = {}
            threads = [threading.Thread(target=_month, args=(t, visits, tmp, srv,
                                                             keys["wire-" + t], out))
                       for t in ("wifi", "lte")]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            for t in ("wifi", "lte"):
                if isinstance(out[t], Exception):
                    raise out[t]
            ack_ms, conn_ms = _power_on_to_ack_all(tmp, srv, keys)
    w, lte = out["wifi"], out["lte"]
    n = len(visits)
    note = (f"{DAYS} days, {n} visits (household seed {SEED}); events = journal records "
            f"written; baseline: one JSON POST per event; bytes: {MODEL_NOTE}")
    return [
        figure("wire_bytes_per_event_wifi", round(w["wire"] / w["records"], 1), "B/event",
               round(w["naive"] / w["records"], 1),
               note + f"; {w['records']} events, {w['connections']} connections"),
        figure("wire_bytes_per_event_lte", round(lte["wire"] / lte["records"], 1), "B/event",
               round(lte["naive"] / lte["records"], 1),
               note + f"; {lte['records']} events, {lte['connections']} connections "
               "(power-on reports at most every 6 h, heartbeats while lit)"),
        figure("lte_bytes_per_month", lte["wire"], "B", 100_000,
               f"target < 100 KB (the baseline column); LTE-M over {DAYS} days, everything "
               f"the modem sent and received: {MODEL_NOTE}; naive design: {lte['naive']} B"),
        figure("power_on_to_ack_ms", round(ack_ms, 1), "ms", round(conn_ms, 1),
               f"Wi-Fi, bulb clock (real time), median of {ACK_RUNS} first visits: power-on to "
               "the answer acknowledging the power-on record; baseline: power-on to the TCP "
               "connection (association, DHCP and connect included)"),
    ]


def _power_on_to_ack_all(tmp: Path, srv: ServerProcess, keys: dict[str, str]) -> tuple[float,
                                                                                        float]:
    acks, conns = [], []
    for i in range(ACK_RUNS):
        dev = f"ack-{i}"
        b = Bulb(tmp / dev, site=_site(srv, dev, keys[dev], "wifi"), wifi=WIFI,
                 time_mode="real", extra={"hosts": {HOST: "127.0.0.1"}})
        b.power_on(stop_at_s=4, timeout=60)
        net = [e for e in b.trace() if e["ev"] == "net"]
        conns.append(next(e["t"] for e in net if e["op"] == "connect"))
        acks.append(next(e["t"] for e in net if e["op"] == "recv"))
    return statistics.median(acks), statistics.median(conns)


if __name__ == "__main__":
    t0 = time.monotonic()
    for f in figures():
        print(json.dumps(f))
    print(f"{time.monotonic() - t0:.1f} s")
