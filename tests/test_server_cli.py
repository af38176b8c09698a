# SPDX-License-Identifier: MIT
"""The `mimamori` command as an operator uses it (in-process: cli.main with a real db file)."""

from __future__ import annotations

import json

import pytest

from mimamori import clock as clocks
from mimamori.__main__ import _argv
from mimamori.cli import main
from mimamori.storage import Store


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_register_prints_the_key_and_a_site_config_the_bulb_can_use(tmp_path, capsys):
    db = str(tmp_path / "m.db")
    code, out, _ = run(capsys, "--db", db, "device", "register", "--id", "toilet-1",
                       "--household", "sato", "--server", "https://m.example:8443")
    assert code == 0
    assert "device toilet-1 registered (household sato)" in out
    key = out.split("key: ")[1].split()[0]
    site = json.loads(out[out.index("{"):])
    assert site == {"server": "https://m.example:8443", "device_id": "toilet-1",
                    "device_key": key}
    assert len(bytes.fromhex(key)) == 32
    store = Store.open(db)
    assert store.device("toilet-1").key == key
    store.close()


def test_register_can_merge_into_an_existing_site_file(tmp_path, capsys):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"wifi_ssid": "home", "device_id": "old"}))
    code, out, _ = run(capsys, "--db", str(tmp_path / "m.db"), "device", "register", "--json",
                       "--out", str(site))
    assert code == 0
    got = json.loads(site.read_text())
    assert got["wifi_ssid"] == "home" and got["device_id"].startswith("bulb-")
    assert json.loads(out)["device_key"] == got["device_key"]


def test_taken_or_bad_ids_are_refused_with_what_to_do(tmp_path, capsys):
    db = str(tmp_path / "m.db")
    assert run(capsys, "--db", db, "device", "register", "--id", "a")[0] == 0
    code, _, err = run(capsys, "--db", db, "device", "register", "--id", "a")
    assert code == 2 and "already registered" in err
    code, _, err = run(capsys, "--db", db, "device", "register", "--id", "a b/c")
    assert code == 2 and "use 1-32 letters" in err


def test_settings_are_checked_against_the_bulbs_ranges_and_bump_the_version(tmp_path, capsys):
    db = str(tmp_path / "m.db")
    run(capsys, "--db", db, "device", "register", "--id", "b1")
    code, out, _ = run(capsys, "--db", db, "device", "settings", "b1", "brightness=0.5")
    assert code == 0 and "settings version 1" in out
    code, out, _ = run(capsys, "--db", db, "device", "settings", "b1", "heartbeat_s=600",
                       "transport=lte")
    assert code == 0 and "settings version 2" in out
    for bad, says in (("heartbeat_s=5", "60..86400"), ("wdt_ms=4000", "cannot be set"),
                      ("colour=red", "cannot be set"), ("brightness", "key=value")):
        code, _, err = run(capsys, "--db", db, "device", "settings", "b1", bad)
        assert code == 2 and says in err, err
    store = Store.open(db)
    dev = store.device("b1")
    store.close()
    assert dev.settings_version == 2
    assert dev.settings == {"brightness": 0.5, "heartbeat_s": 600, "transport": "lte"}
    code, out, _ = run(capsys, "--db", db, "device", "settings", "b1")
    assert "settings version 2" in out and "settable: brightness" in out
    code, _, err = run(capsys, "--db", db, "device", "settings", "nope", "brightness=0.5")
    assert code == 2 and "no device 'nope'" in err


def test_list_and_rekey(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIMAMORI_DB", str(tmp_path / "env.db"))
    run(capsys, "device", "register", "--id", "b1", "--household", "h")
    run(capsys, "device", "register", "--id", "b2")
    _, out, _ = run(capsys, "device", "list")
    assert "b1" in out and "b2" in out and "never" in out
    _, out, _ = run(capsys, "device", "list", "--household", "h", "--json")
    listed = json.loads(out)
    assert [d["id"] for d in listed] == ["b1"] and "key" not in listed[0]
    store = Store.open(tmp_path / "env.db")
    old = store.device("b1").key
    store.close()
    code, out, _ = run(capsys, "device", "rekey", "b1", "--json")
    assert code == 0 and json.loads(out)["device_key"] != old


def test_make_server_args_become_the_serve_command():
    assert _argv([]) == ["serve"]
    assert _argv(["--port", "9000"]) == ["serve", "--port", "9000"]
    assert _argv(["--db", "x.db", "--cert", "c", "--key", "k"]) == [
        "--db", "x.db", "serve", "--cert", "c", "--key", "k"]
    assert _argv(["--db", "x.db", "device", "list"]) == ["--db", "x.db", "device", "list"]


def test_clock_specs():
    assert clocks.parse("fixed:100.5")() == 100.5
    fast = clocks.parse("scaled:1000@5000")
    assert 5000 <= fast() < 5000 + 1000 * 60
    for bad in ("slow", "scaled:0", "fixed:x"):
        with pytest.raises(ValueError, match="use real, scaled"):
            clocks.parse(bad)


def test_show_tells_an_installer_what_arrived_and_what_was_lost(tmp_path, capsys):
    from mimamori.ingest import parse_batch
    from mimamori_firmware import record
    from sim.batch_client import BatchSender

    db = str(tmp_path / "m.db")
    run(capsys, "--db", db, "device", "register", "--id", "b1")
    store = Store.open(db)
    bulb = BatchSender("b1", store.device("b1").key_bytes)
    first = [bulb.record(record.K_POWER_ON), bulb.record(record.K_ALIVE)]
    store.ingest(parse_batch("b1", bulb.request(first).body), 1_767_225_600_000)
    for _ in range(5):
        bulb.record(record.K_ALIVE)  # overwritten before it could be sent
    late = [bulb.record(record.K_LOSS, arg=5)]
    store.ingest(parse_batch("b1", bulb.request(late).body), 1_767_229_200_000)
    store.close()
    code, out, _ = run(capsys, "--db", db, "device", "show", "b1")
    assert code == 0
    assert "ack 7" in out and "5 records lost (the bulb counts 5)" in out
    assert "lost seqs 2..6 (5 missing, overwritten)" in out
    assert "2026-01-01 01:00:00Z  1/2  1/1  ack 7" in out
    code, out, _ = run(capsys, "--db", db, "device", "show", "b1", "--json")
    got = json.loads(out)
    assert got["journals"][0]["lost"] == 5 and "key" not in got["device"]
