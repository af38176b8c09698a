# SPDX-License-Identifier: MIT
"""Field setup mode end to end in the simulation: the unmodified firmware in MicroPython with
the shims, a real server process, a real DNS client (dnspython), a real HTTP client (httpx) and
Chromium on the bulb's portal. The wall switch is the only input: the gesture is made of
power-ons of chosen lengths (docs/setup_mode.md: 4 quick visits, each lit 0.25..1.5 s, then a
switch-on). Flicker (blips shorter than the boot) and a brown-out loop (the supply collapses
each time the radio starts) must not enter setup mode."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest

from mimamori_firmware import record
from sim.bulb import Bulb, wifi_net
from tests.test_portal import Page, settle
from tests.uplink_rig import Rig, journal_of, kinds, rig_fixture  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
AP_IP = "192.168.4.1"
LABEL_PASSWORD = "kx7m2qp9rt"
HOME = [wifi_net("home", "pw", rssi=-61), wifi_net("cafe", "", rssi=-80)]
QUICK_S = 0.8  # a quick visit: the light on for less than a second
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def ap_events(b: Bulb, boot: int | None = None) -> list[dict[str, Any]]:
    return [e for e in b.events("radio", boot) if e.get("if") == "ap"]


def real_port(b: Bulb, port: int, boot: int = -1) -> int:
    """The host port behind the bulb's listening socket `port` (the shim binds a free one)."""
    got = b.wait_for(lambda tr: [e["real"] for e in tr if e["ev"] == "net" and e.get("op") == "bind"
                                 and e.get("port") == port and e["boot"] == boots(tr)], 60)
    return int(got[-1])


def boots(trace: list[dict[str, Any]]) -> int:
    return max((e["boot"] for e in trace), default=0)


def gesture(b: Bulb) -> None:
    for _ in range(4):
        b.power_on(stop_at_s=QUICK_S)


def lamp_levels(b: Bulb, boot: int) -> list[int]:
    return [d for _, d in b.lamp_duties(boot)]


def test_quick_switching_enters_setup_mode_then_the_phone_connects_the_bulb(rig: Rig) -> None:
    """The router was replaced: the bulb's old network is gone. The installer switches the
    light on and off quickly four times, then on; joins Mimamori-XXXX; the phone's DNS check
    lands on the bulb; a wrong password, then the right one; the bulb restarts and reports."""
    site = rig.site(wifi_ssid="old-router", ap_password=LABEL_PASSWORD)
    b = rig.bulb(site=site, wifi=HOME)
    gesture(b)
    assert not any(ap_events(b)), "quick visits alone never open the access point"
    b.power_on(wait=False, timeout=120)
    dns_port, web_port = real_port(b, 53), real_port(b, 80)
    setup_boot = boots(b.trace())  # boot numbers count reboots too (a slow host's watchdog)
    ap = ap_events(b, setup_boot)
    assert len(ap) >= 2, [e for e in b.trace() if e["ev"] in ("power_on", "radio", "reset")]
    name = "Mimamori-" + b.unique_id[-4:].upper()
    assert ap[0]["state"] == "up" and ap[1] == dict(ap[1], state="config", ssid=name)

    # a real DNS client: every name is the bulb
    for qname in ("connectivitycheck.gstatic.com", "captive.apple.com", "example.jp"):
        reply = dns.query.udp(dns.message.make_query(qname, "A"), "127.0.0.1", port=dns_port,
                              timeout=5)
        assert [a.to_text() for rr in reply.answer for a in rr] == [AP_IP], qname

    with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=20) as client:
        probe = client.get("/generate_204")
        assert probe.status_code == 302 and probe.headers["location"] == f"http://{AP_IP}/"
        page = Page(client.get("/").text)
        assert page.radios() == [b"home".hex(), b"cafe".hex(), ""]  # strongest first
        assert name in page.visible() and "-61 dBm" in page.visible()
        server = next(i for i in page.inputs if i.get("name") == "server")
        assert server["value"] == rig.url  # the registered server is filled in

        form = {"ssid": b"home".hex(), "password": "not-the-password", "server": rig.url}
        assert client.post("/", data=form).status_code == 303
        page = settle(client, 30.0, 0.2)
        assert "The password is wrong." in page.visible(), page.visible()[:600] + b.stdout[-1500:]
        assert "old-router" in (b.fs / "site.json").read_text(), "nothing saved after a failure"

        assert client.post("/", data={**form, "password": "pw"}).status_code == 303
        page = settle(client, 30.0, 0.2)
        assert "Connected." in page.visible() and "-61 dBm" in page.visible(), b.stdout[-3000:]

    # the bulb leaves setup mode by itself and restarts into a normal boot that reports
    b.wait_for(lambda tr: any(e["ev"] == "power_on" and e["boot"] > setup_boot for e in tr), 60)
    stored = b.wait_for(lambda _: [r for r in rig.stored() if r.kind == record.K_LINK
                                   and r.boot == journal_boot(rig)], 60)
    # a normal visit ends any streak once it has lasted CLOSE_MS of uptime (taps.py); on a
    # loaded host the report can be stored before that, so wait for the visit to get there
    taps_file = b.state_files / "taps"
    b.wait_for(lambda _: taps_file.exists() and taps_file.read_text() == "0", 60)
    b.power_off()
    site_now = (b.fs / "site.json").read_text()
    assert '"wifi_ssid": "home"' in site_now and '"wifi_password": "pw"' in site_now
    records = rig.stored()
    setup = kinds(records, record.K_SETUP)
    assert [r.sub for r in setup] == [1]  # entered by the gesture, once
    assert stored[0].aux == -61 and stored[0].arg > 0  # the commissioning record: the signal
    assert taps_file.read_text() == "0"  # nothing left to count after a power-off

    scans = [e for e in b.events("radio", setup_boot) if e.get("state") == "scan"]
    assert 1 <= len(scans) <= 2, "a scan stops the bulb for seconds: one serves many page views"

    # the lamp: breathing while in setup mode, never dark, then dips for the results
    levels = lamp_levels(b, setup_boot)
    assert min(levels) > 0, "setup mode never darkens the room"
    assert min(levels) < 65535 * 0.2 ** 2.8 * 1.5, "the lamp breathes down to about 15 %"
    assert lamp_levels(b, setup_boot + 1)[-1] == 65535, "back at its level afterwards"
    recs, _ = journal_of(b)
    assert any(r[3] == record.K_SETUP for r in recs)


def journal_boot(rig: Rig) -> int:
    """The journal's boot number of the newest power-on the server has."""
    ons = kinds(rig.stored(), record.K_POWER_ON)
    return ons[-1].boot if ons else -1


def test_flickering_supply_never_enters_setup_mode(rig: Rig) -> None:
    """Power blips shorter than the firmware's boot (tens of ms): many in a row, then a visit."""
    b = rig.bulb(site=rig.site(ap_password=LABEL_PASSWORD), wifi=HOME)
    for _ in range(10):
        b.power_on(stop_at_s=0.05)
    b.power_on(stop_at_s=0.8)  # then a quick visit between two bursts of flicker
    for _ in range(10):
        b.power_on(stop_at_s=0.05)
    assert (b.state_files / "taps").read_text() == "1", "the blips counted for nothing"
    b.power_on(stop_at_s=8)
    assert not ap_events(b), "the access point never opened"
    assert b.wait_for(lambda _: kinds(rig.stored(), record.K_POWER_ON), 10)
    assert not kinds(rig.stored(), record.K_SETUP)


def test_brown_out_loop_when_the_radio_starts_never_enters_setup_mode(rig: Rig) -> None:
    """A weak supply collapses each time the radio draws its surge (the classic ESP32 brown-out
    loop: MicroPython reports it as a power-on). Real time here, so the cut follows the radio."""
    b = rig.bulb(site=rig.site(ap_password=LABEL_PASSWORD), wifi=HOME, time_mode="real")
    for n in range(1, 7):
        b.power_on(wait=False)
        b.wait_for(lambda tr, n=n: [e for e in tr if e["ev"] == "radio" and e["boot"] == n
                                    and e.get("if") == "sta"], 20)
        b.power_off()  # brown-out: the chip resets as the radio starts
    taps = b.state_files / "taps"  # absent when every cut came before a visit counted (ARM_MS): 0
    assert (taps.read_text() if taps.exists() else "0") in ("0", "1"), \
        "the streak never grows past one visit"
    b.time_mode = "virtual"
    b.power_on(stop_at_s=8)
    assert not ap_events(b), "the access point never opened"


def test_a_registered_bulb_without_a_network_starts_setup_mode_by_itself(bulb: Any) -> None:
    site = {"server": "http://127.0.0.1:9", "device_id": "bulb-x", "device_key": "ab" * 32,
            "ap_password": LABEL_PASSWORD}
    b = bulb(site=site, wifi=HOME)
    b.power_on(wait=False)
    b.wait_for(lambda _: "setup: access point Mimamori-" in b.stdout, 20)
    b.power_off()
    assert ap_events(b)[1]["ssid"].startswith("Mimamori-")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: chromium)")
def test_chromium_on_the_bulbs_portal_sees_networks_and_the_result(rig: Rig) -> None:
    from playwright.sync_api import sync_playwright

    b = rig.bulb(site=rig.site(wifi_ssid="", ap_password=LABEL_PASSWORD), wifi=HOME)
    b.power_on(wait=False, timeout=120)  # registered, no network: setup mode by itself
    port = real_port(b, 80)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(f"http://127.0.0.1:{port}/")
            page.screenshot(path=str(ARTIFACTS / "setup_mode_networks.png"), full_page=True)
            page.check(f"input[name=ssid][value='{b'home'.hex()}']")
            page.fill("input[name=password]", "wrong")
            page.click("button[type=submit]")
            page.wait_for_selector("text=The password is wrong.", timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "setup_mode_wrong_password.png"), full_page=True)
            page.fill("input[name=password]", "pw")
            page.click("button[type=submit]")
            try:
                page.wait_for_selector("text=Connected.", timeout=30000)
            except Exception:
                print(page.inner_text("body"), b.stdout[-3000:])
                raise
            page.screenshot(path=str(ARTIFACTS / "setup_mode_connected.png"), full_page=True)
            assert "-61 dBm" in page.inner_text("body")
        finally:
            browser.close()
    b.wait_for(lambda _: kinds(rig.stored(), record.K_SETUP), 60)
    b.power_off()
    assert [r.sub for r in kinds(rig.stored(), record.K_SETUP)] == [2]  # by itself


GIVE_UP = """
import asyncio, config, journal, lamp, setupmode
light = lamp.Lamp()
cfg, _ = config.load()
light.configure(cfg)
setupmode.SETUP_MS = 5000  # 10 minutes on a bulb
asyncio.run(setupmode.run(cfg, journal.open(), light, 2))
print("LEFT", light.at_level())
"""


def test_setup_mode_without_a_success_closes_the_access_point_and_keeps_the_light(
    mpy_run: Any, tmp_path: Path
) -> None:
    site = {"device_id": "bulb-x", "device_key": "ab" * 32, "brightness": 0.6,
            "ap_password": LABEL_PASSWORD}
    out = mpy_run(GIVE_UP, site=site, wifi=HOME)
    assert "LEFT True" in out and "no success in time" in out
    b = Bulb(next(tmp_path.glob("snippet*")))
    ap = [e["state"] for e in ap_events(b)]
    assert ap[0] == "up" and ap[-1] == "down"
    levels = [d for _, d in b.lamp_duties()]
    assert min(levels) > 0 and levels[-1] == round(0.6 ** 2.8 * 65535)
    closes = [e for e in b.events("net") if e.get("op") == "close"]
    assert len(closes) >= 2, "the DNS and web sockets are closed"
