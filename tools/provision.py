# SPDX-License-Identifier: MIT
"""Bench provisioning: put a flashed bulb on the network and see it report.

    make provision PORT=/dev/ttyUSB0 WIFI_SSID=home WIFI_PASSWORD=... SERVER=https://... \
         TOKEN=mmr_... HOUSEHOLD=sato
    make provision PORT=/dev/ttyUSB0 APN=iot.example SERVER=https://... TOKEN=...  # LTE-M
    python -m tools.provision --port socket://127.0.0.1:7000 ...                  # a simulated bulb

Steps: check the household on the server; read the bulb's chip id and current site config over
the REPL (`mpremote`); register the bulb through the server's API (`TOKEN=`, a token made with
`mimamori token create NAME --scope all`), in `HOUSEHOLD=`, or take `--key`/`--device` of a
bulb registered already (and attach it to `HOUSEHOLD=`); write site.json (server, device id and
key, network, and a random access-point password for setup mode) and a `state/commission`
request with `mpremote cp`; reset the bulb; wait until the server has acknowledged its first upload and
the link record carrying the signal; print the result and the text of the bulb's label.
Everything it asks of the server goes through the API (HTTP): never the server's database file.

It must never print the device key, the token or the Wi-Fi password, never write a site config the firmware
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

from mimamori_firmware.statefiles import COMMISSION, DIR

REPO = Path(__file__).resolve().parent.parent
AP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # as firmware/setupmode.py: no 0/o, 1/l/i
T_NAMES = {1: "Wi-Fi", 2: "LTE-M"}
READ_BULB = (
    "import machine, binascii, json\n"
    "try:\n    s = json.load(open('site.json'))\nexcept Exception:\n    s = {}\n"
    "print('MIMAMORI', json.dumps({'uid': binascii.hexlify(machine.unique_id()).decode(),"
    " 'site': s}))\n"
)
# the firmware makes its state directory at boot (and `make image` has it); a bulb interrupted
# before that still takes the commission request
STATE_DIR_MADE = f"import os\ntry:\n    os.mkdir('{DIR}')\nexcept OSError:\n    pass\n"


class ProvisionError(Exception):
    """What went wrong and what to do; printed as one line, exit status 2."""


# ---- pure parts ----------------------------------------------------------------------------
def signal_line(dbm: int) -> tuple[str, str]:
    """(the line printed, the level's key) for the signal, on the scale the lamp and every
    screen use (firmware/quality.py)."""
    from mimamori_firmware import quality

    row = quality.level(dbm)
    if row is None:
        return f"signal: no figure ({dbm} dBm)", "poor"
    return f"signal: {dbm} dBm, {row[5]} ({row[2]} of {quality.LEVELS[0][2]} dips)", row[3]


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
    household: str | None = None
    token: str | None = None


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
    elif not req.token:
        raise ProvisionError("TOKEN= is required to register the bulb: a token of the server's "
                             "API made with `mimamori token create installer --scope all`, or "
                             "give DEVICE= and KEY= of a bulb registered there")
    if req.household is not None and not req.token:
        raise ProvisionError("HOUSEHOLD= needs TOKEN= (the bulb is attached through the "
                             "server's API)")


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
        mpremote(port, "cp", str(Path(d) / "site.json"), ":site.json", "+", "exec", STATE_DIR_MADE,
                 "+", "cp", str(Path(d) / "commission"), f":{COMMISSION}", "+", "reset")


# ---- the server (its API, with a token) -------------------------------------------------------
class Api:
    """The server's JSON API (sim/server/api.py) as provisioning needs it."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url.rstrip("/"), token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            r = httpx.request(method, self.url + "/api/v1" + path, json=body, timeout=20,
                              headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as e:
            raise ProvisionError(f"the server at {self.url} cannot be reached ({e}): check "
                                 "SERVER= and that the server runs") from e
        if r.status_code == 401:
            raise ProvisionError(f"the server at {self.url} refused TOKEN=: make one there "
                                 "with `mimamori token create installer --scope all`")
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail") or r.text
            except ValueError:
                detail = r.text.strip()[:200]
            raise ProvisionError(f"the server said {r.status_code}: {detail}")
        return r.json()

    def household(self, hid: str) -> None:
        self.call("GET", f"/households/{hid}")

    def register(self, device: str, household: str | None, server: str) -> tuple[str, str]:
        try:
            got = self.call("POST", "/bulbs", {"id": device, "household": household,
                                               "server": server})
        except ProvisionError as e:
            if "already registered" in str(e):
                raise ProvisionError(f"{e}. Choose another DEVICE=, or pass its KEY= to "
                                     "provision it again") from None
            raise
        return got["id"], got["site"]["device_key"]

    def assign(self, device: str, household: str) -> None:
        self.call("PUT", f"/bulbs/{device}/household", {"household": household})

    def bulb(self, device: str, since: int | None = None) -> dict[str, Any]:
        return self.call("GET", f"/bulbs/{device}" + ("" if since is None else f"?since={since}"))


def first_report(api: Api, device: str, since_ms: int, timeout: float
                 ) -> tuple[int, dict[str, Any]]:
    """(records stored since since_ms (server time), the newest link record that connected)
    once the server has the bulb's power-on and a link record with the signal; ProvisionError
    after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        got = api.bulb(device, since_ms)["since"]
        if got["link"] and got["power_on"]:
            return got["records"], got["link"]
        if time.monotonic() > end:
            what = "records but no signal report yet" if got["records"] else "nothing"
            raise ProvisionError(
                f"the server got {what} from {device} in {timeout:.0f} s: check the network "
                "name and password (or APN), that the server address is reachable from the "
                "bulb's network, and the signal where the bulb is")
        time.sleep(0.5)


def provision(req: Request, api_url: str | None, timeout: float, out: Any = sys.stdout) -> int:
    check(req)
    api = Api(api_url or req.server, req.token) if req.token else None
    if api and req.household is not None:
        api.household(req.household)  # a clear error before the bulb is touched
    uid, old = read_bulb(req.port)
    from mimamori.settings import site_errors

    bad = site_errors(old)
    if bad:  # the bulb would fall back to defaults (lamp_pin on a flash pin: a dark bulb)
        raise ProvisionError("the bulb's site.json has settings it would refuse: "
                             + "; ".join(bad) + ". Fix them on the bulb (mpremote) first")
    if req.key is not None:
        device, key = str(req.device), req.key
        if api and req.household is not None:
            api.assign(device, req.household)
    else:
        assert api is not None  # check(): no key without a token
        device, key = api.register(req.device or f"bulb-{uid[-6:]}", req.household, req.server)
        print(f"registered {device} with the server", file=out)
    if req.household is not None:
        print(f"household: {req.household} (its watchers are told when the light stops)",
              file=out)
    site = site_config(req, device, key, old)
    since = api.bulb(device)["now_ms"] if api else 0
    write_bulb(req.port, site)
    net = req.apn and f"LTE-M (APN {req.apn})" or f"Wi-Fi {req.wifi_ssid!r}"
    print(f"site config written to the bulb ({net}, server {req.server}); restarted", file=out)
    if api is None:
        print(f"not waiting for the first upload (no TOKEN=): `mimamori device show {device}` "
              "on the server tells", file=out)
    else:
        n, link = first_report(api, device, since, timeout)
        print(f"first upload acknowledged: {n} records over "
              f"{T_NAMES.get(link['transport'], '?')}, connected in {link['connect_ms']} ms",
              file=out)
        line, level = signal_line(link["dbm"])
        print(line, file=out)
        if level in ("weak", "poor"):
            print("the signal is weak: try a socket closer to the router (or a window for "
                  "LTE-M) before installing; see docs/for-installers.md", file=out)
        if api.bulb(device)["household"] is None:
            print(f"NO HOUSEHOLD: the bulb raises no alert until it is attached: "
                  f"`mimamori device assign {device} HOUSEHOLD` on the server, or the "
                  "coordinator's page", file=out)
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
    ap.add_argument("--household", default=None,
                    help="the household the bulb watches over (attached through the API)")
    ap.add_argument("--token", default=None,
                    help="the server's API token, --scope all (default $MIMAMORI_TOKEN)")
    ap.add_argument("--api", default=None,
                    help="the server's URL as this machine reaches it (default --server)")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args(argv)
    import os

    req = Request(args.port, args.server, args.wifi_ssid, args.wifi_password, args.apn,
                  args.device, args.key, args.household or None,
                  args.token or os.environ.get("MIMAMORI_TOKEN") or None)
    try:
        return provision(req, args.api, args.timeout)
    except ProvisionError as e:
        print(f"provision: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
