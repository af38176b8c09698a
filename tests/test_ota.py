# SPDX-License-Identifier: MIT
"""Firmware updates over the air (docs/ota.md): the bulb's side in MicroPython with the shims,
against the real server; a power cut at flash operations of an update; the server's rollout
and reporting through its API."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mimamori import api, ota
from mimamori.app import create_app
from mimamori.storage import Store
from mimamori_firmware import protocol, record
from sim.batch_client import BatchSender
from sim.bulb import run_snippet, wifi_net
from sim.modem import Modem
from tests.uplink_rig import (  # noqa: F401  (the rig and modem fixtures)
    Rig,
    kinds,
    modem_fixture,
    rig_fixture,
)
from tools import release

REPO = Path(__file__).resolve().parents[1]
WIFI_BACK = [wifi_net("home", "pw", rssi=-61)]
MPY = REPO / ".venv" / "bin" / "micropython"
# the loader's state file (firmware/otaboot.py; MicroPython only, so read from its source)
STATE = re.search(r'\nSTATE = "([^"]+)"', (REPO / "firmware/otaboot.py").read_text())[1]
SWEEP_STEP = 40  # the download's flash ops one in 40; the first 64, the verification and the
# switch every one (`make bench` runs every op: ota_powerloss_cuts)


def _release(tmp: Path, version: int, firmware: Path = REPO / "firmware") -> Path:
    return release.write(release.bundle(version, firmware), tmp / "rel")


def _roll(rig: Rig, folder: Path, version: int) -> None:
    st = Store.open(rig.db)
    try:
        ota.add(st, folder, 0)
        ota.rollout(st, version, 0, [rig.device], spread_h=0)
    finally:
        st.close()


def _events(rig: Rig) -> list[dict]:
    st = Store.open(rig.db)
    try:
        return ota.events(st, rig.device)
    finally:
        st.close()


def _running(rig: Rig) -> int | None:
    st = Store.open(rig.db)
    try:
        return ota.bulbs(st)[rig.device]["running"]
    finally:
        st.close()


def _ota_state(flash: Path) -> dict:
    """state/ota.json as the bulb's LittleFS holds it in its flash."""
    from tools import image
    from tools import partition_table as pt

    data = flash.read_bytes()
    v = pt.find(image.table_of(data), pt.VFS_LABEL)
    assert v is not None
    fs = image._mount(data[v.offset : v.end])
    with fs.open(STATE, "r") as f:
        return json.loads(f.read())


def _never_dark(b) -> None:
    duties = b.lamp_duties()
    assert duties and min(d for _, d in duties) > 0, "the lamp went dark"


# ---- power cuts --------------------------------------------------------------------------

def sweep(tmp: Path, step: int) -> dict:
    """tests/ota_sweep.py on the real release: counts of the cut points."""
    rel = _release(tmp, 7)
    old = {"main.py": "print('five')\n", "app.py": "X = 5\n" * 40}
    import hashlib

    man = {"version": 5, "size": 0, "files": [
        [n, len(t), hashlib.sha256(t.encode()).hexdigest()] for n, t in old.items()]}
    (rel / "v5.json").write_text(json.dumps({"manifest": man, "files": old}))
    out = subprocess.run(
        [str(MPY), "-X", "heapsize=4M", str(REPO / "tests/ota_sweep.py"), str(REPO),
         str(tmp / "flash.bin"), str(rel), "ab" * 32, str(step)],
        capture_output=True, text=True, timeout=1800, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_power_cut_at_flash_ops_of_an_update_boots_old_or_new_complete(tmp_path: Path) -> None:
    if not MPY.exists():
        pytest.skip("micropython not installed: run make setup")
    got = sweep(tmp_path, SWEEP_STEP)
    assert got["fails"] == []
    assert got["bricked"] == 0 and got["mixed"] == 0 and got["resume_failed"] == 0
    assert got["ok_old"] > 64 and got["ok_new"] >= 2  # cuts before and after the switch
    assert got["cuts"] == got["ok_old"] + got["ok_new"]
    assert got["final"] == 7 and got["final_ok"]


# ---- whole bulbs against the server ------------------------------------------------------

def test_update_over_wifi_runs_at_the_next_power_on_and_the_server_sees_it(rig: Rig) -> None:
    _roll(rig, _release(rig.tmp, 7), 7)
    b = rig.bulb(site=rig.site())
    b.power_on(stop_at_s=40)
    assert "release 7 verified" in b.stdout
    assert _running(rig) == 0  # this visit still ran the flashed version
    b.power_on(stop_at_s=40)
    b.power_on(stop_at_s=40)
    assert _running(rig) == 7
    ev = [(e["event"], e["version"]) for e in _events(rig)]
    assert ("installed", 7) in ev and ("confirmed", 7) in ev
    _never_dark(b)


def test_update_over_many_short_lte_visits_stays_within_its_byte_budget(
        rig: Rig, modem: Modem) -> None:
    folder = _release(rig.tmp, 7)
    size = (folder / "bundle.bin").stat().st_size
    _roll(rig, folder, 7)
    modem.faults.drop_after_rx = 9000  # every connection dies after 9000 bytes: short visits
    b = rig.bulb(site=rig.site("lte", apn="iot.example", lte_report_gap_s=0),
                 uart={"1": modem.path}, extra={"seed": 3})
    visits = 0
    while visits < 20 and "release 7 verified" not in b.stdout:
        b.power_on(stop_at_s=30)
        visits += 1
    assert "release 7 verified" in b.stdout
    assert visits >= size // 9000  # it took many visits, each resuming from flash
    air = modem.air
    # nothing fetched twice: the bundle, the manifest (2 KB) and the answers' heads only
    assert air.payload_rx < size + 2500 + visits * 2000, (air.as_dict(), size, visits)
    # all bytes of the update, the visits' own reports included: the bundle, 30 % for the
    # pieces' requests, heads and TCP, and per visit two connections (report, update)
    assert air.total < size * 1.3 + visits * 2 * 1400, (air.as_dict(), size, visits)
    modem.faults.drop_after_rx = None
    b.power_on(stop_at_s=30)
    b.power_on(stop_at_s=30)
    assert _running(rig) == 7
    _never_dark(b)


def test_a_corrupt_bundle_is_refused_with_its_reason_reported(rig: Rig) -> None:
    folder = _release(rig.tmp, 7)
    _roll(rig, folder, 7)
    st = Store.open(rig.db)
    blob = bytearray((folder / "bundle.bin").read_bytes())
    blob[100] ^= 0x40  # one bit of one file, after the server checked it
    with st.db.tx() as c:
        c.execute("UPDATE releases SET bundle = ? WHERE version = 7", (bytes(blob),))
    st.close()
    rig.srv.stop()  # its cache held the good bytes
    rig.srv.start()
    b = rig.bulb(site=rig.site())
    b.power_on(stop_at_s=40)
    b.power_on(stop_at_s=40)
    ev = _events(rig)
    assert {"device": rig.device, "event": "refused", "version": 7, "reason": "digest"} in [
        {k: e[k] for k in ("device", "event", "version", "reason") if k in e} for e in ev]
    assert _running(rig) == 0
    assert not (b.fs / "v" / "7").exists()
    _never_dark(b)


def test_manifest_signature_and_fields_are_checked_on_the_bulb(tmp_path: Path) -> None:
    man = json.dumps({"version": 7, "micropython": [1, 24, 0], "size": 3,
                      "files": [["main.py", 3, "0" * 64]]}, separators=(",", ":")).encode()
    mine, other = bytes(range(32)), bytes(range(1, 33))
    cases = {
        "good": protocol.sign_manifest(mine, "bulb-1", 7, man).encode() + b"\n" + man,
        "foreign": protocol.sign_manifest(other, "bulb-1", 7, man).encode() + b"\n" + man,
        "other_bulb": protocol.sign_manifest(mine, "bulb-2", 7, man).encode() + b"\n" + man,
        "tampered": protocol.sign_manifest(mine, "bulb-1", 7, man).encode() + b"\n"
        + man.replace(b'"size":3', b'"size":4'),
        "runtime": None,
    }
    newer = man.replace(b"[1,24,0]", b"[9,0,0]")
    cases["runtime"] = protocol.sign_manifest(mine, "bulb-1", 7, newer).encode() + b"\n" + newer
    code = ["import ota", "key = bytes(range(32))"]
    for name, body in cases.items():
        code.append(f"try:\n    ota.parse_manifest({body!r}, key, 'bulb-1', 7, 3)\n"
                    f"    print('{name}', 'ok')\nexcept ota.Refused as e:\n"
                    f"    print('{name}', e.args[0])")
    out = run_snippet("\n".join(code), tmp_path / "snip")
    got = dict(line.split() for line in out.splitlines() if line.strip())
    assert got == {"good": "ok", "foreign": str(record.U_SIGNATURE),
                   "other_bulb": str(record.U_SIGNATURE), "tampered": str(record.U_SIGNATURE),
                   "runtime": str(record.U_RUNTIME)}


def test_a_new_version_crashing_at_boot_is_rolled_back_by_itself(rig: Rig) -> None:
    fw = rig.tmp / "fw-crash"
    shutil.copytree(REPO / "firmware", fw)
    main = (fw / "main.py").read_text()
    main, n = re.subn(r"\ndef _settings\(b\):\n",
                      "\ndef _settings(b):\n    raise RuntimeError('r8 broken')\n", main)
    assert n == 1
    (fw / "main.py").write_text(main)
    _roll(rig, _release(rig.tmp, 8, fw), 8)
    b = rig.bulb(site=rig.site())
    b.power_on(stop_at_s=40)
    assert "release 8 verified" in b.stdout
    b.power_on(stop_at_s=60)  # r8 crashes, resets, ... then the flashed version runs again
    assert "r8 broken" in b.stderr + b.stdout
    b.power_on(stop_at_s=40)
    ev = [(e["event"], e["version"], e.get("reason")) for e in _events(rig)]
    assert ("rollback", 8, "crash") in ev
    assert _running(rig) == 0
    st = json.loads((b.fs / STATE).read_text())
    assert st["v"] == 0 and st["bad"] == 8
    _never_dark(b)


# ---- the server's rollout and reporting through its API ----------------------------------

def test_rollout_spreads_bulbs_and_the_api_reports_progress_and_rollbacks(
        tmp_path: Path) -> None:
    t = [1_767_225_600_000]
    app = create_app(tmp_path / "s.db", clock=lambda: t[0] / 1000)
    store: Store = app.state.store
    keys = {f"b{i}": store.register_device(0, f"b{i}").key_bytes for i in range(20)}
    token = api.create_token(store.db, "test", 0)
    hdr = {"Authorization": f"Bearer {token}"}
    folder = _release(tmp_path, 9)
    with TestClient(app) as client:
        ota.add(store, folder, t[0])
        assert [r["version"] for r in client.get("/api/v1/releases", headers=hdr).json()] == [9]
        r = client.post("/api/v1/releases/9/rollout", json={"share": 0.5, "spread_h": 12},
                        headers=hdr)
        chosen = r.json()["bulbs"]
        assert 3 <= len(chosen) <= 17 and set(chosen) <= set(keys)
        targets = ota.bulbs(store)
        starts = sorted(targets[d]["not_before"] - t[0] for d in chosen)
        assert starts[0] >= 0 and starts[-1] < 12 * 3_600_000 and len(set(starts)) == len(chosen)

        senders = {d: BatchSender(d, k) for d, k in keys.items()}

        def upload(dev: str, fw: int, recs: list[tuple[int, int, int]] = ()) -> dict:
            s = senders[dev]
            rs = [s.record(record.K_POWER_ON, sub=1)] + [s.record(record.K_OTA, *x)
                                                         for x in recs]
            req = s.request(rs)
            path = req.path + f"&fw={fw}"
            from mimamori.ingest import signed_headers

            got = client.post(path, content=req.body,
                              headers=signed_headers(dev, keys[dev], path, req.body))
            assert got.status_code == 200, got.text
            return got.json()

        first = chosen[0]
        assert protocol.OTA_KEY not in upload(first, 0)  # not due yet
        t[0] += 12 * 3_600_000
        offer = upload(first, 0)[protocol.OTA_KEY]
        assert offer == {"v": 9, "size": (folder / "bundle.bin").stat().st_size}
        outsider = next(d for d in keys if d not in chosen)
        assert protocol.OTA_KEY not in upload(outsider, 0)
        # the bulb's GETs: signed with its key; another bulb's signature is refused
        target = protocol.ota_target(9)
        sig = protocol.sign(keys[first], b"GET", target, first, b"")
        m = client.get(target, headers={"Authorization": protocol.authorization(first, sig)})
        assert m.status_code == 200
        assert m.content[:64] == protocol.sign_manifest(keys[first], first, 9,
                                                        m.content[65:]).encode()
        bad = protocol.sign(keys[outsider], b"GET", target, first, b"")
        assert client.get(target, headers={
            "Authorization": protocol.authorization(first, bad)}).status_code == 401
        piece = protocol.ota_target(9, 100, 50)
        sig = protocol.sign(keys[first], b"GET", piece, first, b"")
        p = client.get(piece, headers={"Authorization": protocol.authorization(first, sig)})
        assert p.content == (folder / "bundle.bin").read_bytes()[100:150]
        sig = protocol.sign(keys[outsider], b"GET", piece, outsider, b"")
        assert client.get(piece, headers={
            "Authorization": protocol.authorization(outsider, sig)}).status_code == 404
        # what the bulbs report comes back as progress
        upload(first, 9, [(record.O_INSTALLED, 0, 9), (record.O_CONFIRMED, 0, 9)])
        second = chosen[1]
        upload(second, 0, [(record.O_INSTALLED, 0, 9), (record.O_ROLLBACK, record.U_CRASH, 9)])
        assert protocol.OTA_KEY not in upload(second, 0)  # never offered again
        prog = client.get("/api/v1/releases/9", headers=hdr).json()
        assert prog["bulbs"][first] == "running" and prog["bulbs"][second] == "rolled_back"
        assert prog["reasons"] == {second: "crash"}
        assert prog["counts"]["running"] == 1 and prog["counts"]["rolled_back"] == 1
        over = client.get("/api/v1/ota", headers=hdr).json()
        assert over["bulbs"][first]["running"] == 9
        assert {"device": second, "event": "rollback", "version": 9, "reason": "crash"} in [
            {k: e[k] for k in ("device", "event", "version", "reason") if k in e}
            for e in over["events"]]


def test_whole_bulbs_cut_during_an_update_boot_old_or_new_and_lit(rig: Rig) -> None:
    """From `make image`'s flash (LittleFS on the flash shim): the power cut at chosen flash
    operations of the update visit (spread over the download, and the last ones: the switch),
    then power-ons: each lit, each running the old or the new version, the new one at the end."""
    from sim.bulb import Bulb
    from tests.uplink_rig import WIFI
    from tools import image

    built = image.build(out=rig.tmp / "build")
    _roll(rig, _release(rig.tmp, 7), 7)
    extra = {"io_wait_ms": 3000}
    ref = Bulb(rig.tmp / "ref", site=rig.site(), image=built.flash, wifi=WIFI, extra=extra)
    ref.power_on(stop_at_s=40)
    assert "release 7 verified" in ref.stdout
    ops = [e for e in ref.trace() if e["ev"] == "flash"]
    vfs = [i + 1 for i, e in enumerate(ops) if e["part"] == "vfs"]
    assert len(vfs) > 100
    cuts = sorted(set(vfs[:: len(vfs) // 5] + vfs[-3:]))
    for n in cuts:
        b = Bulb(rig.tmp / f"cut{n}", site=rig.site(), image=built.flash, wifi=WIFI,
                 extra={**extra, "flash": {"cut_at": n, "half": n % 2 == 0}})
        b.power_on(stop_at_s=40)
        assert b.boots[-1].ended_by == "power_cut", n
        b.extra = extra
        for _ in range(3):
            b.power_on(stop_at_s=40)
            boot = max(e["boot"] for e in b.trace())
            duties = [d for _, d in b.lamp_duties(boot)]
            assert duties and min(duties) > 0, f"cut at {n}: dark"
            assert "Traceback" not in b.boots[-1].stdout, (n, b.boots[-1].stdout[-800:])
            assert _running(rig) in (0, 7), n  # what this boot's upload said it runs
        assert _ota_state(b.state_dir / "flash.bin")["v"] == 7, n
    assert _running(rig) == 7


def test_a_new_version_that_never_reaches_the_server_goes_back_and_says_why(rig: Rig) -> None:
    _roll(rig, _release(rig.tmp, 7), 7)
    b = rig.bulb(site=rig.site())
    b.power_on(stop_at_s=40)
    assert "release 7 verified" in b.stdout
    b.world([])  # the Wi-Fi is gone: the new version cannot reach the server
    trial = int(re.search(r"TRIAL_BOOTS = const\((\d+)\)",
                          (REPO / "firmware/otaboot.py").read_text())[1])
    for _ in range(trial):
        b.power_on(stop_at_s=20)
        assert json.loads((b.fs / STATE).read_text())["v"] == 7
    b.world(WIFI_BACK)
    b.power_on(stop_at_s=40)  # the loader goes back; the flashed version reports why
    st = json.loads((b.fs / STATE).read_text())
    assert st["v"] == 0 and st["bad"] == 7
    assert ("rollback", 7, "no_server") in [
        (e["event"], e["version"], e.get("reason")) for e in _events(rig)]
    assert _running(rig) == 0
    _never_dark(b)
