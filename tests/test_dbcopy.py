# SPDX-License-Identifier: MIT
"""A pilot grows out of its SQLite file: `mimamori db copy --to postgresql://...` moves
everything, and the server goes on from where it was on the new store."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mimamori.app import create_app
from mimamori.cli import main
from mimamori.storage import Database
from mimamori.web import auth
from sim import sample_pilot as sample
from sim.batch_client import BatchSender


def _tables(url: str) -> dict[str, list[tuple]]:
    db = Database(url)
    try:
        with db.read() as c:
            return {t: sorted(c.all(f"SELECT {', '.join(c.columns(t))} FROM {t}"), key=repr)
                    for t in c.tables() if t not in ("schema_versions", "rate_limits")}
    finally:
        db.close()


def test_a_pilot_moves_from_sqlite_to_postgresql_whole_and_goes_on_there(tmp_path, pg_url,
                                                                         capsys, monkeypatch):
    pilot = str(tmp_path / "pilot.db")
    s = sample.build(pilot)
    assert main(["--db", pilot, "db", "copy", "--to", pg_url]) == 0
    assert "copied" in capsys.readouterr().out
    before, after = _tables(pilot), _tables(pg_url)
    assert before == after and before["records"] and before["alerts"] and before["outbox"]

    # a second copy into the now full database is refused and changes nothing
    assert main(["--db", pilot, "db", "copy", "--to", pg_url]) == 2
    assert "already has rows" in capsys.readouterr().err
    assert _tables(pg_url) == after

    # the server on PostgreSQL: the bulbs' keys and replay counters, the sign-in links and the
    # dashboard came along
    monkeypatch.setenv("MIMAMORI_SWEEP_S", "0")
    app = create_app(pg_url, clock=lambda: s.now)
    store = app.state.store
    dev = store.device("sato-toilet")
    assert dev is not None and dev.last_boot is not None
    bulb = BatchSender(dev.id, dev.key_bytes, epoch=dev.epoch, boot=dev.last_boot,
                       req=dev.last_req or 0, next_seq=(dev.ack or 0) + 1)
    with TestClient(app) as http:
        stale = bulb.request([], req=dev.last_req)  # the last request again: a replay
        assert http.post(stale.path, content=stale.body, headers=stale.headers
                         ).status_code == 409
        req = bulb.request([bulb.new_boot()])
        r = http.post(req.path, content=req.body, headers=req.headers)
        assert r.status_code == 200 and r.json()["ack"] == bulb.next_seq - 1
        with store.db.tx() as c:
            token = auth.make_link(c, auth.COORDINATOR, "office", int(s.now * 1000), 60_000)
        page = http.get(f"/in/{token}")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        assert http.post(f"/in/{token}", data={"csrf": csrf}).status_code == 200
        assert "佐藤" in http.get("/coordinator").text
    store.close()
