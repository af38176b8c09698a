# SPDX-License-Identifier: MIT
"""One signal scale (firmware/quality.py) on every screen: the lamp's dips and the setup page
run the firmware in MicroPython; the coordinator's page, the API, the CLI and `make provision`
read the same table on the server. Two cases the pilot found must read the same everywhere:
-82 dBm is "weak" (2 dips), and -100 dBm with 16 of 50 reports late is "very weak" (1 dip)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mimamori import cli, tokens
from mimamori import households as hh
from mimamori.app import create_app
from mimamori.ingest import parse_batch
from mimamori.storage import Store
from mimamori.web import auth
from mimamori_firmware import record
from sim.batch_client import BatchSender
from sim.bulb import run_snippet
from tests.test_portal import render
from tools import provision

NOW_S = 1_773_640_000  # a fixed instant: every screen reads the same records
DAY = 86_400
# (device, dBm, visits, late visits) -> (English, Japanese, lamp dips)
CASES = {
    ("b82", -82, 12, 0): ("weak", "弱い", 2),
    ("b100", -100, 50, 16): ("very weak", "とても弱い", 1),
}


def _visits(store: Store, dev: str, dbm: int, n: int, late: int) -> None:
    """n visits 3 h apart ending now, each reporting its signal; `late` of them (spread out)
    reach the server two hours after the switch-on, the others within a minute."""
    d = store.device(dev)
    assert d is not None
    s = BatchSender(dev, d.key_bytes)
    late_ones = set(range(0, 3 * late, 3))
    for i in range(n):
        on = NOW_S - (n - i) * 3 * 3600
        recs = [s.new_boot(),
                s.record(record.K_LINK, record.T_WIFI, dbm, 900, up_ms=1500),
                s.record(record.K_ANCHOR, record.A_SERVER, 0, on + 2, up_ms=2000),
                s.record(record.K_OFF, up_ms=60_000)]
        at = on + (7200 if i in late_ones else 61)
        store.ingest(parse_batch(dev, s.request(recs).body), at * 1000)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MIMAMORI_SWEEP_S", "0")
    path = tmp_path / "scale.db"
    store = Store.open(path)
    hh.open_people(store.db)
    created = (NOW_S - 10 * DAY) * 1000
    for (dev, dbm, n, late) in CASES:
        with store.db.tx() as c:
            hh.add_household(c, created, f"h-{dev}", dev, "Asia/Tokyo", {})
        store.register_device(created, dev, f"h-{dev}")
        _visits(store, dev, dbm, n, late)
    store.close()
    yield path


def _coordinator(app: object) -> TestClient:
    cl = TestClient(app, raise_server_exceptions=False)  # type: ignore[arg-type]
    with app.state.store.db.tx() as c:  # type: ignore[attr-defined]
        token = auth.make_link(c, auth.COORDINATOR, "office", NOW_S * 1000, 3_600_000)
    page = cl.get(f"/in/{token}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    r = cl.post(f"/in/{token}", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert r.status_code == 303
    return cl


def _cell(page: str, dev: str) -> str:
    row = page[page.index(f'data-bulb="{dev}"'):]
    row = row[:row.index("</tr>")]
    m = re.search(r'<td class="signal"[^>]*>(.*?)</td>', row, re.DOTALL)
    assert m, row
    return re.sub(r"<[^>]+>", " ", m.group(1))


def test_the_dashboard_the_api_and_the_cli_read_the_same_word(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(db, clock=lambda: NOW_S)
    coord = _coordinator(app)
    ja = coord.get("/coordinator/bulbs").text
    coord.get("/lang", params={"to": "en", "next": "/coordinator"})
    en = coord.get("/coordinator/bulbs").text
    token = tokens.create(app.state.store.db, "t", NOW_S * 1000, "read")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert cli.main(["--db", str(db), "--clock", f"fixed:{NOW_S}", "device", "list"]) == 0
    listed = capsys.readouterr().out
    for (dev, dbm, n, late), (word_en, word_ja, _) in CASES.items():
        row = en[en.index(f'data-bulb="{dev}"'):]
        assert f"{late} / {n}" in row[:row.index("</tr>")]  # the figures the word comes from
        assert _cell(en, dev).split()[:len(word_en.split())] == word_en.split()
        assert f"{dbm} dBm" in _cell(en, dev)
        assert _cell(ja, dev).split()[0] == word_ja
        got = api.get(f"/api/v1/bulbs/{dev}").json()["signal"]
        assert (got["words"]["en"], got["words"]["ja"]) == (word_en, word_ja)
        line = next(x for x in listed.splitlines() if x.startswith(dev + " "))
        figures = f"{dbm} dBm, {late} of {n} reports late"
        assert line.endswith(f"  {word_en} ({figures})"), line
        assert cli.main(["--db", str(db), "--clock", f"fixed:{NOW_S}", "device", "show",
                         dev]) == 0
        assert f"signal: {word_en} ({figures})" in capsys.readouterr().out


def test_the_lamp_the_setup_page_and_make_provision_read_the_same_word(tmp_path: Path) -> None:
    for (dev, dbm, _, _), (word_en, word_ja, dips) in CASES.items():
        # the bulb knows only the dBm: -100 dBm is very weak on its own too
        page, _ = render([], state="ok", rssi=dbm)
        assert f"{word_ja} / {word_en} ({dbm} dBm)" in " ".join(page.visible().split())
        out = run_snippet(f"import quality\nprint(quality.dips({dbm}))", tmp_path / dev)
        assert int(out.strip()) == dips
        assert provision.signal_line(dbm)[0] == f"signal: {dbm} dBm, {word_en} ({dips} of 4 dips)"


def test_late_reports_make_a_strong_signal_read_worse_and_few_reports_say_nothing(
        tmp_path: Path) -> None:
    code = ("import quality\n"
            "print([(quality.level(d, l, n) or (0, 0, 0, None))[3] for d, l, n in "
            "((-60, 0, 50), (-60, 16, 50), (-60, 4, 50), (-60, 3, 5), (0, 16, 50), (0, 1, 5),"
            " (None, 0, 0))])")
    out = run_snippet(code, tmp_path / "q")
    assert out.strip() == ("['strong', 'poor', 'good', 'strong', 'poor', None, None]")
