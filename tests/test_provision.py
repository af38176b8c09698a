# SPDX-License-Identifier: MIT
"""Bench provisioning (tools/provision.py, `make provision`) with the real `mpremote` against a
simulated bulb: its raw REPL is served on a socket by sim/repl.py over the bulb's own
filesystem, the firmware runs in MicroPython with the shims, and a real server process stores
what the bulb reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimamori import tokens
from mimamori.storage import Store
from mimamori_firmware import record
from sim.bulb import Bulb, wifi_net
from sim.modem import Modem
from sim.repl import ReplServer
from tests.uplink_rig import Rig, kinds, rig_fixture  # noqa: F401  (the rig fixture)
from tools import provision as prov

REPO = Path(__file__).resolve().parent.parent
WIFI_PW = "home-wifi-pw"


def mpremote(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", url, *args],
                          check=False, capture_output=True, text=True, timeout=60)


def test_mpremote_copies_into_the_bulbs_filesystem_runs_code_and_resets_it(tmp_path: Path) -> None:
    # the longest watchdog: the whole session fits in its timeout (the REPL would reset it)
    b = Bulb(tmp_path / "bulb", site={"wdt_ms": 60000}, wifi=[wifi_net("home", "pw")])
    b.power_on(wait=False)  # main.py runs; mpremote interrupts it as on a board
    src = tmp_path / "hello.json"
    src.write_text('{"brightness": 0.5}')
    try:
        with ReplServer(b) as repl:
            r = mpremote(repl.url, "cp", str(src), ":site.json", "+", "fs", "cat", ":site.json")
            assert r.returncode == 0, r.stderr
            assert '{"brightness": 0.5}' in r.stdout
            assert (b.fs / "site.json").read_text() == '{"brightness": 0.5}'  # the bulb's own fs
            assert not b.is_running(), "Ctrl-C stopped the firmware"
            r = mpremote(repl.url, "exec", "import machine; print(machine.unique_id().hex())")
            assert r.stdout.strip() == b.unique_id
            r = mpremote(repl.url, "exec", "x = 1 // 0")
            assert r.returncode != 0 and "ZeroDivisionError" in r.stdout + r.stderr
            boots = len(b.boots)
            assert mpremote(repl.url, "reset").returncode == 0
            b.wait_for(lambda tr: sum(e["ev"] == "power_on" for e in tr) > boots, 20)
            assert repl.resets == 1 and b.is_running(), "machine.reset() boots the firmware again"
    finally:
        b.power_off()


def _wdt_started(trace: list[dict[str, Any]]) -> bool:
    return any(e["ev"] == "wdt" for e in trace)


def test_interrupted_main_leaves_the_watchdog_running_and_the_bulb_resets(tmp_path: Path) -> None:
    # as on the ESP32: Ctrl-C stops main.py, not its watchdog; within wdt_ms the bulb resets
    b = Bulb(tmp_path / "bulb", site={"wdt_ms": 2000}, wifi=[wifi_net("home", "pw")])
    b.power_on(wait=False)
    try:
        b.wait_for(_wdt_started, 30)
        with ReplServer(b) as repl:
            r = mpremote(repl.url, "exec", "print('at the REPL')")
            assert r.returncode == 0 and "at the REPL" in r.stdout, r.stderr
            b.wait_for(lambda tr: repl.watchdog_resets == 1 and b.is_running(), 30)
            b.wait_for(lambda tr: sum(e["ev"] == "wdt" for e in tr) == 2, 30)
            assert b.boots[-1].cause == 3  # WDT_RESET: main.py runs again
    finally:
        b.power_off()


def test_nowdt_file_gives_one_boot_without_a_watchdog_for_a_developer(tmp_path: Path) -> None:
    # 8 s: mpremote writes the flag within the timeout even on a loaded machine
    b = Bulb(tmp_path / "bulb", site={"wdt_ms": 8000}, wifi=[wifi_net("home", "pw")])
    b.power_on(wait=False)
    try:
        b.wait_for(_wdt_started, 120)
        with ReplServer(b) as repl:
            r = mpremote(repl.url, "exec", "open('state/nowdt', 'w').close()")
            assert r.returncode == 0, r.stderr
            # the watchdog still resets this boot; the next one starts none
            b.wait_for(lambda tr: repl.watchdog_resets == 1 and b.is_running(), 120)
            b.wait_for(lambda tr: "no watchdog this boot" in b.stdout, 120)
            assert not (b.state_files / "nowdt").exists(), "the flag lasts one boot"
            r = mpremote(repl.url, "exec", "print('working')")
            assert "working" in r.stdout
            time.sleep(10)  # longer than the watchdog's timeout: nothing may reset the bulb
            assert repl.watchdog_resets == 1 and not b.is_running()
            r = mpremote(repl.url, "exec", "print('still here')")
            assert "still here" in r.stdout
    finally:
        b.power_off()


def _installer(rig: Rig, household: str | None = None) -> str:
    """An API token with --scope all (as `mimamori token create installer --scope all` makes
    one), and the household added through the API."""
    store = Store.open(rig.db)
    try:
        token = tokens.create(store.db, "installer", int(time.time() * 1000), "all")
    finally:
        store.close()
    if household:
        r = httpx.post(f"{rig.url}/api/v1/households", json={"id": household, "name": "Sato"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=20)
        assert r.status_code == 201, r.text
    return token


def _bulb(rig: Rig, token: str, device: str) -> dict[str, Any]:
    r = httpx.get(f"{rig.url}/api/v1/bulbs/{device}", timeout=20,
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_make_provision_registers_the_bulb_in_its_household_and_reports_the_signal(
    tmp_path: Path, rig: Rig
) -> None:
    token = _installer(rig, "sato")
    # a Wi-Fi password the label's random one can never contain ('-' is not in its alphabet)
    b = Bulb(tmp_path / "bench", wifi=[wifi_net("home", WIFI_PW, rssi=-58)])
    b.power_on(wait=False)  # flashed, never provisioned: lit, nothing to report to
    try:
        with ReplServer(b) as repl:
            r = subprocess.run(
                ["make", "-s", "provision", f"PORT={repl.url}", "WIFI_SSID=home",
                 f"WIFI_PASSWORD={WIFI_PW}", f"SERVER={rig.url}", f"TOKEN={token}", "HOUSEHOLD=sato",
                 "DEVICE=kitchen-1", "TIMEOUT=60"],
                cwd=REPO, check=False, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            assert repl.resets == 1
    finally:
        b.power_off()
    out = r.stdout
    assert "registered kitchen-1 with the server" in out
    assert "household: sato" in out and "NO HOUSEHOLD" not in out
    assert "first upload acknowledged" in out and "over Wi-Fi" in out
    assert "signal: -58 dBm, strong (4 of 4 dips)" in out
    site = json.loads((b.fs / "site.json").read_text())
    assert site["wifi_ssid"] == "home" and site["device_id"] == "kitchen-1"
    assert f"Mimamori-{b.unique_id[-4:].upper()}" in out and site["ap_password"] in out
    assert site["device_key"] not in out and WIFI_PW not in out
    assert token not in out + r.stderr
    # the server process itself attached it: its API says so, and so does the household
    assert _bulb(rig, token, "kitchen-1")["household"] == "sato"
    home = httpx.get(f"{rig.url}/api/v1/households/sato", timeout=20,
                     headers={"Authorization": f"Bearer {token}"}).json()
    assert [x["id"] for x in home["bulbs"]] == ["kitchen-1"]
    stored = _stored(rig, "kitchen-1")
    assert kinds(stored, record.K_POWER_ON)
    assert [r.aux for r in kinds(stored, record.K_LINK) if r.arg > 0][:1] == [-58]
    assert not (b.state_files / "commission").exists(), "the bulb confirmed the provisioning"
    # and showed the signal of the link that carried its delivery on the lamp
    assert "provisioning confirmed; signal -58 dBm" in b.stdout, b.stdout[-1500:]


def _stored(rig: Rig, device: str) -> list[Any]:
    from mimamori.storage import Store

    store = Store.open(rig.db)
    try:
        return store.records_for_device(device)
    finally:
        store.close()


def test_provision_over_lte_m_with_a_key_registered_on_the_server(tmp_path: Path, rig: Rig) -> None:
    token = _installer(rig)
    modem = Modem(tmp_path / "uart1.sock").start()
    b = Bulb(tmp_path / "lte", uart={"1": modem.path})
    b.power_on(wait=False)
    try:
        with ReplServer(b) as repl:
            r = subprocess.run(
                [sys.executable, "-m", "tools.provision", "--port", repl.url, "--apn",
                 "iot.example", "--server", rig.url, "--device", rig.device, "--key", rig.key,
                 "--timeout", "60"],
                cwd=REPO, check=False, capture_output=True, text=True, timeout=120,
                env={**os.environ, "MIMAMORI_TOKEN": token})
    finally:
        b.power_off()
        modem.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "registered" not in r.stdout  # the key was given
    assert "over LTE-M" in r.stdout, r.stdout
    assert "signal: -73 dBm, good (3 of 4 dips)" in r.stdout, r.stdout
    assert "closer to the router" not in r.stdout
    # no HOUSEHOLD=: said in words, with the command that fixes it
    assert f"NO HOUSEHOLD: the bulb raises no alert until it is attached: `mimamori device " \
        f"assign {rig.device} HOUSEHOLD`" in r.stdout
    site = json.loads((b.fs / "site.json").read_text())
    assert site["transport"] == "lte" and site["apn"] == "iot.example"
    assert kinds(rig.stored(), record.K_POWER_ON)


def _provision(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.provision", "--wifi-ssid", "home", *args],
        cwd=REPO, check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "MIMAMORI_TOKEN": token})


def test_an_unknown_household_is_refused_before_the_bulb_is_touched(rig: Rig) -> None:
    token = _installer(rig)
    # no bulb on this port: the household is checked first, so the error is about it
    r = _provision("--port", "socket://127.0.0.1:9", "--server", rig.url, "--household",
                   "nobody", token=token)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "provision: the server said 404: no household 'nobody': see `mimamori household list`"]


def test_a_wrong_token_is_one_line_naming_the_server(rig: Rig) -> None:
    r = _provision("--port", "socket://127.0.0.1:9", "--server", rig.url, "--household",
                   "sato", token="mmr_not-a-token")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        (f"provision: the server at {rig.url} refused TOKEN=: make one there with "
         "`mimamori token create installer --scope all`")]


@pytest.mark.parametrize(
    ("req", "says"),
    [
        (prov.Request("", "http://s"), "PORT= is required"),
        (prov.Request("p", "ftp://s", wifi_ssid="h"), "SERVER= must be"),
        (prov.Request("p", "http://s"), "either WIFI_SSID="),
        (prov.Request("p", "http://s", wifi_ssid="h", apn="a"), "either WIFI_SSID="),
        (prov.Request("p", "http://s", wifi_ssid="h", key="zz", device="d"), "KEY= must be"),
        (prov.Request("p", "http://s", wifi_ssid="h", key="abcd"), "KEY= needs DEVICE="),
        (prov.Request("p", "http://s", wifi_ssid="h"), "TOKEN= is required"),
        (prov.Request("p", "http://s", wifi_ssid="h", key="abcd", device="d", household="x"),
         "HOUSEHOLD= needs TOKEN="),
    ],
)
def test_bad_provisioning_requests_say_what_to_fix(req: prov.Request, says: str) -> None:
    with pytest.raises(prov.ProvisionError, match=says):
        prov.check(req)


def test_a_port_with_no_bulb_is_a_clear_error() -> None:
    r = _provision("--port", "socket://127.0.0.1:9", "--server", "http://127.0.0.1:8000",
                   "--device", "d", "--key", "abcd")
    assert r.returncode == 2
    assert r.stderr.startswith("provision: mpremote on socket://127.0.0.1:9 failed")
    assert "check PORT=" in r.stderr


def test_provisioning_again_keeps_the_label_password_and_other_settings() -> None:
    req = prov.Request("p", "https://srv.example", wifi_ssid="new", wifi_password="pw2")
    old = {"brightness": 0.4, "ap_password": "abcdefgh23", "wifi_ssid": "old"}
    site = prov.site_config(req, "bulb-1", "ab" * 32, old)
    assert site["ap_password"] == "abcdefgh23" and site["brightness"] == 0.4
    assert site["wifi_ssid"] == "new" and site["transport"] == "wifi"
    fresh = prov.site_config(req, "bulb-1", "ab" * 32, {})
    assert len(fresh["ap_password"]) == 10 and set(fresh["ap_password"]) <= set(prov.AP_ALPHABET)

