# SPDX-License-Identifier: MIT
"""Attaching a bulb to a household after it was registered: `mimamori device assign`, the API
(PUT /api/v1/bulbs/{id}/household) and the coordinator's page, all through
households.assign_bulb; a bulb in no household is shown in words, never as a "-"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mimamori import households as hh
from mimamori import tokens
from mimamori.app import create_app
from mimamori.cli import main
from mimamori.ingest import parse_batch
from mimamori.storage import Store
from mimamori.web import auth
from mimamori_firmware import record
from sim.batch_client import BatchSender

NOW_S = 1_773_640_000


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Household "sato" and two bulbs in no household yet."""
    monkeypatch.setenv("MIMAMORI_SWEEP_S", "0")
    path = tmp_path / "m.db"
    store = Store.open(path)
    hh.open_people(store.db)
    with store.db.tx() as c:
        hh.add_household(c, NOW_S * 1000 - 86_400_000, "sato", "Sato", "Asia/Tokyo", {})
    store.register_device(NOW_S * 1000 - 3_600_000, "toilet-1")
    store.register_device(NOW_S * 1000 - 3_600_000, "toilet-2")
    store.close()
    yield path


def run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--db", str(db), "--clock", f"fixed:{NOW_S}", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _household(db: Path, dev: str) -> str | None:
    store = Store.open(db)
    try:
        d = store.device(dev)
        assert d is not None
        return d.household
    finally:
        store.close()


def test_device_assign_attaches_and_list_says_no_household_in_words(db, capsys) -> None:
    code, out, _ = run(capsys, db, "device", "list")
    assert code == 0
    rows = [x for x in out.splitlines() if x.startswith("toilet-")]
    assert all(" NO HOUSEHOLD " in x for x in rows) and " - " not in rows[0][:36]
    assert "`mimamori device assign DEVICE HOUSEHOLD`" in out
    code, out, _ = run(capsys, db, "device", "assign", "toilet-1", "sato")
    assert (code, out) == (0, "device toilet-1 now watches over household sato\n")
    assert _household(db, "toilet-1") == "sato"
    code, out, _ = run(capsys, db, "device", "list")
    row = next(x for x in out.splitlines() if x.startswith("toilet-1 "))
    assert " sato " in row and "NO HOUSEHOLD" not in row
    code, out, _ = run(capsys, db, "device", "show", "toilet-2")
    assert "household NO HOUSEHOLD" in out
    assert "`mimamori device assign toilet-2 HOUSEHOLD`" in out


@pytest.mark.parametrize(("args", "says"), [
    (("toilet-9", "sato"), "mimamori: no bulb 'toilet-9': register it first"),
    (("toilet-1", "nobody"), "mimamori: no household 'nobody': see `mimamori household list`"),
])
def test_assigning_an_unknown_bulb_or_household_is_one_line_and_exit_2(
        db, capsys, args: tuple[str, str], says: str) -> None:
    code, out, err = run(capsys, db, "device", "assign", *args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(says), err
    assert _household(db, "toilet-1") is None


def _api(app: object, scope: str) -> TestClient:
    token = tokens.create(app.state.store.db, scope, NOW_S * 1000, scope)  # type: ignore[attr-defined]
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})  # type: ignore[arg-type]


def test_the_api_attaches_a_bulb_with_an_all_scope_token_only(db) -> None:
    app = create_app(db, clock=lambda: NOW_S)
    r = _api(app, "write").put("/api/v1/bulbs/toilet-1/household", json={"household": "sato"})
    assert r.status_code == 403 and "--scope all" in r.json()["detail"]
    api = _api(app, "all")
    r = api.put("/api/v1/bulbs/toilet-1/household", json={"household": "sato"})
    assert r.status_code == 200 and r.json() == {"id": "toilet-1", "household": "sato",
                                                 "was": None}
    assert [b["id"] for b in api.get("/api/v1/households/sato").json()["bulbs"]] == ["toilet-1"]
    r = api.put("/api/v1/bulbs/toilet-9/household", json={"household": "sato"})
    assert r.status_code == 404 and "no bulb 'toilet-9'" in r.json()["detail"]
    r = api.put("/api/v1/bulbs/toilet-2/household", json={"household": "nobody"})
    assert r.status_code == 404 and "no household 'nobody'" in r.json()["detail"]
    assert api.get("/api/v1/bulbs/toilet-2").json()["household"] is None
    # registering without a household, then with an unknown one: no key minted for that
    r = api.post("/api/v1/bulbs", json={"id": "toilet-3"})
    assert r.status_code == 201 and r.json()["household"] is None
    r = api.post("/api/v1/bulbs", json={"id": "toilet-4", "household": "nobody"})
    assert r.status_code == 404
    assert api.get("/api/v1/bulbs/toilet-4").status_code == 404


def _coordinator(app: object) -> tuple[TestClient, str]:
    cl = TestClient(app, raise_server_exceptions=False)  # type: ignore[arg-type]
    with app.state.store.db.tx() as c:  # type: ignore[attr-defined]
        token = auth.make_link(c, auth.COORDINATOR, "office", NOW_S * 1000, 3_600_000)
    m = re.search(r'name="csrf" value="([^"]+)"', cl.get(f"/in/{token}").text)
    assert m
    assert cl.post(f"/in/{token}", data={"csrf": m.group(1)},
                   follow_redirects=False).status_code == 303
    page = cl.get("/coordinator").text
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m
    return cl, m.group(1)


def _row(page: str, dev: str) -> str:
    row = page[page.index(f'data-bulb="{dev}"'):]
    return row[:row.index("</tr>")]


def test_the_coordinator_attaches_a_bulb_from_its_row(db) -> None:
    app = create_app(db, clock=lambda: NOW_S)
    cl, csrf = _coordinator(app)
    cl.get("/lang", params={"to": "en", "next": "/coordinator"})
    row = _row(cl.get("/coordinator/bulbs").text, "toilet-1")
    assert "no household: no alerts" in row
    assert 'action="/coordinator/bulbs/toilet-1/household"' in row
    r = cl.post("/coordinator/bulbs/toilet-1/household",
                data={"csrf": csrf, "household": "nobody"}, follow_redirects=False)
    assert r.status_code == 404 and "no household &#39;nobody&#39;" in r.text
    r = cl.post("/coordinator/bulbs/toilet-1/household", data={"household": "sato"},
                follow_redirects=False)
    assert r.status_code == 403  # no CSRF token: nothing changes
    assert _household(db, "toilet-1") is None
    r = cl.post("/coordinator/bulbs/toilet-1/household",
                data={"csrf": csrf, "household": "sato"}, follow_redirects=False)
    assert r.status_code == 303
    assert _household(db, "toilet-1") == "sato"
    page = cl.get("/coordinator/bulbs").text
    assert "no household" not in _row(page, "toilet-1")
    assert "no household: no alerts" in _row(page, "toilet-2")


def test_a_watcher_cannot_attach_bulbs(db) -> None:
    app = create_app(db, clock=lambda: NOW_S)
    with app.state.store.db.tx() as c:
        w = hh.add_watcher(c, NOW_S * 1000, "sato", "Ken", "family", "en", "ken@example.org")
        token = auth.make_link(c, auth.WATCHER, w.id, NOW_S * 1000, 3_600_000)
    cl = TestClient(app, raise_server_exceptions=False)
    m = re.search(r'name="csrf" value="([^"]+)"', cl.get(f"/in/{token}").text)
    assert m
    cl.post(f"/in/{token}", data={"csrf": m.group(1)}, follow_redirects=False)
    m = re.search(r'name="csrf" value="([^"]+)"', cl.get("/home").text)
    assert m
    r = cl.post("/coordinator/bulbs/toilet-1/household",
                data={"csrf": m.group(1), "household": "sato"}, follow_redirects=False)
    assert r.status_code == 403
    assert _household(db, "toilet-1") is None


def test_device_show_names_each_fault(db, capsys) -> None:
    store = Store.open(db)
    d = store.device("toilet-1")
    assert d is not None
    s = BatchSender("toilet-1", d.key_bytes)
    recs = [s.new_boot(), s.record(record.K_FAULT, record.F_CONFIG, 3),
            s.record(record.K_FAULT, record.F_WATCHDOG)]
    store.ingest(parse_batch("toilet-1", s.request(recs).body), NOW_S * 1000 - 60_000)
    store.close()
    code, out, _ = run(capsys, db, "device", "show", "toilet-1")
    assert code == 0
    assert "faults in 14 days: 2:" in out
    assert re.search(r"config: a setting was missing, corrupt or out of range .*\(detail 3\)",
                     out)
    assert "watchdog: it hung and the watchdog restarted it" in out
