# SPDX-License-Identifier: MIT
"""Setup mode's captive-portal pages (firmware/portal.py), rendered by the real MicroPython
interpreter and read back with CPython's HTML parser, as a browser would see them."""

from __future__ import annotations

import json
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from sim.bulb import micropython_bin

REPO = Path(__file__).resolve().parent.parent
MICROPYTHON = micropython_bin()

RUN = f"""
import sys, json, binascii
sys.path.insert(0, {str(REPO / "firmware")!r})
import portal
req = json.loads(sys.stdin.read())
out = {{}}
if "scan" in req:
    scan = [(binascii.unhexlify(s), b"", 1, r, a, 0) for s, r, a in req["scan"]]
    nets = portal.networks(scan)
    out["chunks"] = list(portal.page(nets, req.get("state", "intro"), req.get("form"),
                                     req.get("rssi"), req.get("bulb", "")))
if "body" in req:
    form = portal.parse_form(req["body"].encode())
    ssid = portal.chosen_ssid(form)
    out["form"] = form
    out["ssid"] = None if ssid is None else binascii.hexlify(ssid).decode()
print(json.dumps(out))
"""


def mpy(req: dict) -> dict:
    r = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=96wK", "-c", RUN],
        input=json.dumps(req),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


class Page(HTMLParser):
    """What a browser builds from the page: tags, radios, inputs, visible text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.inputs: list[dict[str, str | None]] = []
        self.labels: list[str] = []
        self.text: list[str] = []
        self._label: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "input":
            self.inputs.append(dict(attrs))
        if tag == "label":
            self._label = []

    def handle_endtag(self, tag):
        if tag == "label" and self._label is not None:
            self.labels.append("".join(self._label).strip())
            self._label = None

    def handle_data(self, data):
        self.text.append(data)
        if self._label is not None:
            self._label.append(data)

    def radios(self) -> list[str]:
        return [str(i["value"]) for i in self.inputs if i.get("type") == "radio"]

    def visible(self) -> str:
        return " ".join(self.text)


def settle(client: httpx.Client, timeout: float, poll: float) -> Page:
    """GET / until the connection test is over (the page stops refreshing itself)."""
    end = time.monotonic() + timeout
    while True:
        r = client.get("/")
        assert r.status_code == 200
        if 'http-equiv="refresh"' not in r.text:
            return Page(r.text)
        assert time.monotonic() < end, "the connection test never finished"
        time.sleep(poll)


def render(scan: list[tuple[bytes, int, int]], **kw) -> tuple[Page, list[str]]:
    req = {"scan": [(s.hex(), r, a) for s, r, a in scan], **kw}
    chunks = mpy(req)["chunks"]
    return Page("".join(chunks)), chunks


def test_networks_are_listed_strongest_first_with_their_signal_in_both_languages():
    scan = [
        (b"home", -72, 3),
        (b"neighbour", -88, 3),
        (b"home", -58, 3),  # the same network heard twice: the stronger counts
        (b"", -40, 3),  # hidden
        (b"cafe-free", -70, 0),
    ]
    page, _ = render(scan)
    assert page.radios() == [b"home".hex(), b"cafe-free".hex(), b"neighbour".hex(), ""]
    home, cafe, neighbour = page.labels[:3]
    assert "home" in home and "強い / strong (-58 dBm)" in home and "open" not in home
    assert "オープン / open, 普通 / good (-70 dBm)" in cafe
    assert "とても弱い / very weak (-88 dBm)" in neighbour
    names = {i.get("name") for i in page.inputs}
    assert {"ssid", "other", "password", "server"} <= names
    password = next(i for i in page.inputs if i.get("name") == "password")
    assert password["type"] == "password"
    assert "見守り電球の設定" in page.visible() and "Mimamori bulb setup" in page.visible()


def test_a_hostile_network_name_is_shown_as_text_never_as_markup():
    evil = b"<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"
    page, _ = render([(evil, -60, 3)])
    assert "script" not in page.tags and "img" not in page.tags
    assert evil.decode() in page.labels[0]
    assert page.radios()[0] == evil.hex()


def test_a_network_name_that_is_not_utf8_can_still_be_chosen_exactly():
    raw = b"\xff\xfeNet\x01"
    page, _ = render([(raw, -60, 3)])
    assert "\\xff\\xfeNet\\x01" in page.labels[0]
    body = urlencode({"ssid": page.radios()[0], "password": "pw", "server": ""})
    assert mpy({"body": body})["ssid"] == raw.hex()


def test_the_form_decodes_what_a_browser_posts():
    fields = {
        "ssid": "",
        "other": "みまもりネット 2.4G",
        "password": "p@ss w&rd=100%+日本",
        "server": "https://mimamori.example.jp/",
    }
    out = mpy({"body": urlencode(fields)})
    assert out["form"] == fields
    assert bytes.fromhex(out["ssid"]) == fields["other"].encode()
    listed = mpy({"body": urlencode({"ssid": b"home".hex(), "other": "ignored"})})
    assert bytes.fromhex(listed["ssid"]) == b"home"
    broken = mpy({"body": "ssid=zz&password=%E6%97&other=%4"})
    assert broken["ssid"] is None  # a bad hex value chooses nothing
    assert "password" not in broken["form"]  # not UTF-8: dropped, never half-decoded
    assert broken["form"]["other"] == "%4"


def test_after_a_wrong_password_the_page_keeps_the_choice_but_never_the_password():
    form = {"ssid": b"home".hex(), "password": "hunter2-secret", "server": "https://srv.jp"}
    page, chunks = render([(b"home", -60, 3), (b"other", -70, 3)], state="wrong_password",
                          form=form)  # fmt: skip
    html = "".join(chunks)
    assert "hunter2-secret" not in html
    checked = [i["value"] for i in page.inputs if i.get("type") == "radio" and "checked" in i]
    assert checked == [b"home".hex()]
    server = next(i for i in page.inputs if i.get("name") == "server")
    assert server["value"] == "https://srv.jp"
    assert (
        "パスワードが違います。" in page.visible() and "The password is wrong." in page.visible()
    )


@pytest.mark.parametrize(
    "state,ja,en",
    [
        ("intro", "ネットワークを選び", "choose the network"),
        ("no_network", "見つかりません", "cannot be found"),
        ("no_server", "サーバーに届きません", "server cannot be reached"),
        ("failed", "つながりませんでした", "Could not connect"),
        ("nonsense", "つながりませんでした", "Could not connect"),
    ],
)
def test_every_result_is_said_in_japanese_and_english(state, ja, en):
    page, _ = render([(b"home", -60, 3)], state=state)
    assert ja in page.visible() and en in page.visible()
    assert "password" in {i.get("name") for i in page.inputs}  # the form is there to retry


def test_success_shows_the_signal_and_advises_a_better_socket_when_it_is_weak():
    strong, _ = render([], state="ok", rssi=-55)
    weak, _ = render([], state="ok", rssi=-82)  # weak on every screen (firmware/quality.py)
    assert "強い / strong" in strong.visible() and "-55 dBm" in strong.visible()
    assert "ルーターに近いソケット" not in strong.visible()
    assert "弱い / weak" in weak.visible()
    assert "ルーターに近いソケット" in weak.visible() and "closer to the router" in weak.visible()
    assert "input" not in strong.tags  # done: no form to resubmit


def test_while_testing_the_page_refreshes_itself_and_has_no_form():
    page, chunks = render([(b"home", -60, 3)], state="testing")
    assert '<meta http-equiv="refresh" content="3">' in "".join(chunks)
    assert "form" not in page.tags
    assert "接続を確かめています" in page.visible()


def test_the_page_is_written_in_small_chunks_even_with_many_long_names():
    scan = [(bytes([0x41 + i]) * 32, -50 - i, 3) for i in range(20)]
    page, chunks = render(scan, bulb="Mimamori-3F2A")
    assert len(page.radios()) == 12 + 1  # at most 12 networks, plus "other"
    assert max(len(c.encode()) for c in chunks) < 1024
    assert "Mimamori-3F2A" in page.visible()


def test_phones_probing_for_a_captive_portal_are_sent_to_the_page():
    code = (
        f"import sys\nsys.path.insert(0, {str(REPO / 'firmware')!r})\nimport portal\n"
        "print(portal.redirect('192.168.4.1').decode())\nprint(portal.PROBES)"
    )
    r = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    head, probes = r.stdout.decode().split("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 302 Found"
    assert "Location: http://192.168.4.1/" in lines
    for path in ("/generate_204", "/hotspot-detect.html", "/connecttest.txt"):
        assert path in probes
