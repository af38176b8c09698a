# SPDX-License-Identifier: MIT
"""Bench provisioning: put a flashed bulb on the network and see it report.

    make provision PORT=/dev/ttyUSB0 WIFI_SSID=home WIFI_PASSWORD=... SERVER=https://...
    make provision PORT=/dev/ttyUSB0 APN=iot.example SERVER=https://...          # LTE-M
    python -m tools.provision --port socket://127.0.0.1:7000 ...                  # a simulated bulb

Steps: read the bulb's chip id and current site config over the REPL (`mpremote`); register the
bulb with the server (in the server's database, `--db`, as `mimamori device register` does) or
take `--key`/`--device`; write site.json (server, device id and key, network, and a random
access-point password for setup mode) and a `commission` request with `mpremote cp`; reset the
bulb; wait until the server has acknowledged its first upload and the link record carrying the
signal; print the result and the text of the bulb's label.

It must never print the device key or the Wi-Fi password, never write a site config the firmware
would refuse (every value is checked here first), and never report success before the server
has stored the bulb's records.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
AP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # as firmware/setupmode.py: no 0/o, 1/l/i
K_POWER_ON, K_LINK = 1, 8  # firmware/record.py
T_NAMES = {1: "Wi-Fi", 2: "LTE-M"}
READ_BULB = (
    "import machine, binascii, json\n"
    "try:\n    s = json.load(open('site.json'))\nexcept Exception:\n    s = {}\n"
    "print('MIMAMORI', json.dumps({'uid': binascii.hexlify(machine.unique_id()).decode(),"
    " 'site': s}))\n"
)


class ProvisionError(Exception):
    """What went wrong and what to do; printed as one line, exit status 2."""


# ---- pure parts ----------------------------------------------------------------------------
def bars(dbm: int) -> int:
    """Signal bars 0..5, as the lamp shows them (firmware/lamp.py)."""
    return sum(1 for edge in (-95, -85, -75, -67, -60) if dbm >= edge)


def signal_words(dbm: int) -> str:
    """As the setup page says it (firmware/portal.py)."""
    for floor, words in ((-60, "strong"), (-70, "good"), (-80, "weak")):
        if dbm >= floor:
            return words
    return "very weak"


def ap_name(uid_hex: str) -> str:
    return "Mimamori-" + uid_hex[-4:].upper()


def new_ap_password() -> str:
    return "".join(secrets.choice(AP_ALPHABET) for _ in range(10))


@dataclass
class Request:
    port: str
    server: str
    wifi_ssid: str = ""
    wifi_password: str = ""
    apn: str = ""
    device: str | None = None
    key: str | None = None


def check(req: Request) -> None:
    if not req.port:
        raise ProvisionError("PORT= is required: the bulb's USB serial port (e.g. /dev/ttyUSB0)")
    if not re.match(r"^https?://[^/\s]+", req.server or ""):
        raise ProvisionError(f"SERVER= must be the server's http:// or https:// URL "
                             f"(got {req.server!r})")
    if bool(req.wifi_ssid) == bool(req.apn):
        raise ProvisionError("give either WIFI_SSID= (and WIFI_PASSWORD=) for Wi-Fi or APN= for "
                             "LTE-M")
    if len(req.wifi_ssid) > 32 or len(req.wifi_password) > 64 or len(req.apn) > 64:
        raise ProvisionError("WIFI_SSID= is at most 32 characters, WIFI_PASSWORD= and APN= 64")
    if req.key is not None:
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2}){1,64}", req.key):
            raise ProvisionError("KEY= must be the device key in hex, as `mimamori device "
                                 "register` printed it")
        if not req.device:
            raise ProvisionError("KEY= needs DEVICE=, the id the key was registered for")


def site_config(req: Request, device: str, key: str, old: dict[str, Any]) -> dict[str, Any]:
    """The new site.json: the old one with the server, identity and network replaced."""
    site = dict(old)
    site.update(server=req.server, device_id=device, device_key=key)
    if req.apn:
        site.update(transport="lte", apn=req.apn)
    else:
        site.update(transport="wifi", wifi_ssid=req.wifi_ssid, wifi_password=req.wifi_password)
    if len(str(site.get("ap_password", ""))) < 8:
        site["ap_password"] = new_ap_password()
    return site


def label(uid_hex: str, device: str, site: dict[str, Any]) -> str:
    return (f"  Mimamori bulb {device}\n  setup Wi-Fi: {ap_name(uid_hex)}\n"
            f"  password:    {site['ap_password']}\n  chip id:     {uid_hex}")


# ---- the bulb (mpremote) ---------------------------------------------------------------------
def mpremote(port: str, *args: str, timeout: float = 60) -> str:
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise ProvisionError(f"the bulb on {port} did not answer in {timeout:.0f} s: is it "
                             "powered and is this its port?") from e
    if r.returncode != 0:
        msg = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise ProvisionError(f"mpremote on {port} failed ({msg[0]}): check PORT= and the cable; "
                             "close any other program using the port")
    return r.stdout


def read_bulb(port: str) -> tuple[str, dict[str, Any]]:
    out = mpremote(port, "exec", READ_BULB)
    for line in out.splitlines():
        if line.startswith("MIMAMORI "):
            got = json.loads(line[9:])
            return got["uid"], got["site"] if isinstance(got["site"], dict) else {}
    raise ProvisionError(f"the bulb on {port} answered but not as a Mimamori bulb: flash it "
                         "first (make flash PORT=...)")


def write_bulb(port: str, site: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "site.json").write_text(json.dumps(site))
        (Path(d) / "commission").write_text("bench")
        mpremote(port, "cp", str(Path(d) / "site.json"), ":site.json", "+",
                 "cp", str(Path(d) / "commission"), ":commission", "+", "reset")


# ---- the server ------------------------------------------------------------------------------
def register(db: Path, device: str | None) -> tuple[str, str]:
    from sim.server.storage import Store

    store = Store.open(db)
    try:
        dev = store.register_device(int(time.time() * 1000), device)
    except ValueError as e:
        raise ProvisionError(f"{e}: choose another DEVICE=, or pass its KEY= to provision it "
                             "again") from e
    finally:
        store.close()
    return dev.id, dev.key


def first_report(db: Path, device: str, since_ms: int, timeout: float) -> tuple[int, Any]:
    """(records stored since since_ms, the newest link record) once the server has the bulb's
    power-on and a link record with the signal; ProvisionError after timeout seconds."""
    from sim.server.storage import Store

    end = time.monotonic() + timeout
    while True:
        store = Store.open(db)
        try:
            recs = store.records_for_device(device, since_received_ms=since_ms)
        finally:
            store.close()
        links = [r for r in recs if r.kind == K_LINK and r.arg > 0]
        if links and any(r.kind == K_POWER_ON for r in recs):
            return len(recs), links[-1]
        if time.monotonic() > end:
            what = "records but no signal report yet" if recs else "nothing"
            raise ProvisionError(
                f"the server got {what} from {device} in {timeout:.0f} s: check the network "
                "name and password (or APN), that the server address is reachable from the "
                "bulb's network, and the signal where the bulb is")
        time.sleep(0.5)


def provision(req: Request, db: Path | None, timeout: float, out: Any = sys.stdout) -> int:
    check(req)
    uid, old = read_bulb(req.port)
    from sim.server.settings import site_errors

    bad = site_errors(old)
    if bad:  # the bulb would fall back to defaults (lamp_pin on a flash pin: a dark bulb)
        raise ProvisionError("the bulb's site.json has settings it would refuse: "
                             + "; ".join(bad) + ". Fix them on the bulb (mpremote) first")
    if req.key is not None:
        device, key = str(req.device), req.key
    elif db is None or not db.exists():
        raise ProvisionError(f"no server database at {db}: give DB= (the server's "
                             "var/mimamori.db), or register on the server with `mimamori device "
                             "register` and pass DEVICE= and KEY=")
    else:
        device, key = register(db, req.device or f"bulb-{uid[-6:]}")
        print(f"registered {device} with the server", file=out)
    site = site_config(req, device, key, old)
    since = int(time.time() * 1000)
    write_bulb(req.port, site)
    net = req.apn and f"LTE-M (APN {req.apn})" or f"Wi-Fi {req.wifi_ssid!r}"
    print(f"site config written to the bulb ({net}, server {req.server}); restarted", file=out)
    if db is None or not db.exists():
        print(f"not waiting for the first upload (no server database here): "
              f"`mimamori device show {device}` on the server tells", file=out)
    else:
        n, link = first_report(db, device, since, timeout)
        dbm = link.aux
        print(f"first upload acknowledged: {n} records over {T_NAMES.get(link.sub, '?')}, "
              f"connected in {link.arg} ms", file=out)
        print(f"signal: {dbm} dBm, {signal_words(dbm)} ({bars(dbm)} of 5 bars)", file=out)
        if signal_words(dbm) in ("weak", "very weak"):
            print("the signal is weak: try a socket closer to the router (or a window for "
                  "LTE-M) before installing; see docs/installing.md", file=out)
    print("label:\n" + label(uid, device, site), file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.provision", description=__doc__.split(
        "\n\n")[0])
    ap.add_argument("--port", default="", help="serial port, or socket://host:port (simulation)")
    ap.add_argument("--server", default="", help="the server's URL, as the bulb reaches it")
    ap.add_argument("--wifi-ssid", default="")
    ap.add_argument("--wifi-password", default="")
    ap.add_argument("--apn", default="", help="LTE-M access point name (instead of Wi-Fi)")
    ap.add_argument("--device", default=None, help="device id (default bulb-<chip id>)")
    ap.add_argument("--key", default=None, help="device key registered already (with --device)")
    ap.add_argument("--db", type=Path, default=None,
                    help="the server's database, to register and to watch the first upload "
                         "(default $MIMAMORI_DB or var/mimamori.db)")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args(argv)
    import os

    db = args.db or Path(os.environ.get("MIMAMORI_DB", "var/mimamori.db"))
    req = Request(args.port, args.server, args.wifi_ssid, args.wifi_password, args.apn,
                  args.device, args.key)
    try:
        return provision(req, db, args.timeout)
    except ProvisionError as e:
        print(f"provision: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
