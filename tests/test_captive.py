# SPDX-License-Identifier: MIT
"""Setup mode's web server (firmware/captive.py) in the real MicroPython interpreter, driven
by a real HTTP client (httpx) and, where Chromium is installed, by Chromium (screenshots in
tests/artifacts/). The Wi-Fi connection test is a stand-in coroutine here: wiring the real one
(network.WLAN) belongs to setup mode itself."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from sim.bulb import micropython_bin
from tests.test_portal import Page, settle

REPO = Path(__file__).resolve().parent.parent
MICROPYTHON = micropython_bin()
ARTIFACTS = REPO / "tests" / "artifacts"
AP_IP = "192.168.4.1"
SERVER = "https://mimamori.example.jp"

SERVE = f"""
import sys, asyncio, json
sys.path.insert(0, {str(REPO / "firmware")!r})
import captive

def scan():
    return [(b"home", b"", 1, -58, 3, 0), (b"cafe", b"", 6, -75, 0, 0), (b"home", b"", 1, -70, 3, 0)]

async def attempt(ssid, password, server):
    print("ATTEMPT " + json.dumps([ssid.hex(), password, server]))
    await asyncio.sleep_ms(300)
    if password == "boom":
        raise RuntimeError("the radio broke")
    if password == "right":
        return "ok", -58
    return "wrong_password", None

c = captive.Captive({AP_IP!r}, scan, attempt, bulb="Mimamori-3F2A", server={SERVER!r})

async def main():
    await c.start("127.0.0.1", int(sys.argv[1]))
    print("READY")
    while True:
        await asyncio.sleep(1)

asyncio.run(main())
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def portal_server():
    port = free_port()
    proc = subprocess.Popen(
        [MICROPYTHON, "-X", "heapsize=96wK", "-c", SERVE, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    out: dict = {"port": port, "proc": proc}
    yield out
    proc.kill()
    rest, err = proc.communicate(timeout=10)
    out["stdout"], out["stderr"] = rest, err


def attempts(proc_out: str) -> list[list[str]]:
    return [json.loads(x[8:]) for x in proc_out.splitlines() if x.startswith("ATTEMPT ")]


def test_wrong_password_then_right_password_through_the_portal(portal_server):
    base = f"http://127.0.0.1:{portal_server['port']}"
    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as client:
        for probe in ("/generate_204", "/hotspot-detect.html", "/connecttest.txt?x=1", "/x.png"):
            r = client.get(probe)
            assert r.status_code == 302, probe
            assert r.headers["location"] == f"http://{AP_IP}/"
        page = Page(client.get("/").text)
        assert page.radios() == [b"home".hex(), b"cafe".hex(), ""]
        server = next(i for i in page.inputs if i.get("name") == "server")
        assert server["value"] == SERVER
        assert "Mimamori-3F2A" in page.visible()

        form = {"ssid": b"home".hex(), "password": "wrong", "server": SERVER}
        r = client.post("/", data=form)
        assert r.status_code == 303 and r.headers["location"] == "/"
        again = client.post("/", data={**form, "password": "second"})  # while testing
        assert again.status_code == 200 and 'http-equiv="refresh"' in again.text
        testing = client.get("/")
        assert 'http-equiv="refresh"' in testing.text and "<form" not in testing.text
        page = settle(client, 10.0, 0.1)
        assert "パスワードが違います。" in page.visible()
        assert "The password is wrong." in page.visible()
        checked = [i["value"] for i in page.inputs if i.get("type") == "radio" and "checked" in i]
        assert checked == [b"home".hex()]
        assert "wrong" not in [i.get("value") for i in page.inputs]

        r = client.post("/", data={**form, "password": "right"})
        assert r.status_code == 303
        page = settle(client, 10.0, 0.1)
        assert "つながりました。" in page.visible() and "Connected." in page.visible()
        assert "強い / strong" in page.visible() and "-58 dBm" in page.visible()
        assert "form" not in page.tags
    proc = portal_server["proc"]
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    assert attempts(out) == [
        [b"home".hex(), "wrong", SERVER],
        [b"home".hex(), "right", SERVER],
    ]


def test_a_failing_connection_test_is_reported_and_the_portal_keeps_serving(portal_server):
    base = f"http://127.0.0.1:{portal_server['port']}"
    with httpx.Client(base_url=base, timeout=10) as client:
        client.post("/", data={"ssid": b"cafe".hex(), "password": "boom", "server": SERVER})
        page = settle(client, 10.0, 0.1)
        assert "つながりませんでした" in page.visible() and "Could not connect" in page.visible()
        client.post("/", data={"ssid": "", "other": "", "password": "x"})  # nothing chosen
        page = settle(client, 10.0, 0.1)
        assert "見つかりません" in page.visible()
        assert client.get("/").status_code == 200


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_or_oversized_requests_get_400_and_the_next_request_is_served(portal_server):
    port = portal_server["port"]
    assert raw(port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    big = b"POST / HTTP/1.1\r\nContent-Length: 50000\r\n\r\n" + b"a" * 100
    assert raw(port, big).startswith(b"HTTP/1.1 400")
    long_line = b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n"
    assert raw(port, long_line).startswith(b"HTTP/1.1 400")
    many = b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 40 + b"\r\n"
    assert raw(port, many).startswith(b"HTTP/1.1 400")
    ok = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200") and "見守り電球の設定".encode() in ok


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: chromium)")
def test_chromium_fills_the_portal_form_and_sees_the_result(portal_server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{portal_server['port']}/"
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.goto(base)
            page.screenshot(path=str(ARTIFACTS / "portal_networks.png"), full_page=True)
            page.check(f"input[name=ssid][value='{b'home'.hex()}']")
            page.fill("input[name=password]", "wrong")
            page.click("button[type=submit]")
            page.wait_for_selector("text=The password is wrong.", timeout=15000)
            page.screenshot(path=str(ARTIFACTS / "portal_wrong_password.png"), full_page=True)
            page.fill("input[name=password]", "right")
            page.click("button[type=submit]")
            page.wait_for_selector("text=Connected.", timeout=15000)
            page.screenshot(path=str(ARTIFACTS / "portal_connected.png"), full_page=True)
            assert "-58 dBm" in page.inner_text("body")
        finally:
            browser.close()
    assert (ARTIFACTS / "portal_connected.png").stat().st_size > 0
