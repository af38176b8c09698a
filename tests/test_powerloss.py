# SPDX-License-Identifier: MIT
"""Whole bulbs (sim/bulb.py runner, the real firmware in MicroPython): switched on and off with no
network, cut by the wall switch and in the middle of flash writes; the journal in their flash is
then read on the host with the same firmware/journal.py, as a service tool would."""

from __future__ import annotations

from typing import Any

from mimamori_firmware import record
from sim.journal_read import records


def journal_records(b: Any) -> list[tuple[int, ...]]:
    return records(b.state_dir / "flash.bin")


def visits(recs: list[tuple[int, ...]]) -> list[dict[str, Any]]:
    """One entry per boot: the reset cause, the last ALIVE mark and the OFF record (ms)."""
    by: dict[int, dict[str, Any]] = {}
    for seq, boot, up, kind, sub, _aux, _arg in recs:
        v = by.setdefault(boot, {"boot": boot, "on": None, "alive": [], "off": None})
        if kind == record.K_POWER_ON:
            v["on"] = sub
        elif kind == record.K_ALIVE:
            v["alive"].append(up)
        elif kind == record.K_OFF:
            v["off"] = up
    return [by[k] for k in sorted(by)]


def test_visits_without_network_are_all_kept_in_order_across_power_cuts(bulb):
    b = bulb()  # no site: no network at all
    lengths = [3, 12, 45, 118, 160, 7, 600, 30, 2, 75]
    for s in lengths:
        b.power_on(stop_at_s=s)
    # power cuts in the middle of flash programs: the third, fourth... write of those visits
    for n in (2, 3, 4, 5):
        b.extra = {"flash": {"cut_at": n, "half": True}}
        b.power_on(stop_at_s=300)
    b.extra = {}
    b.power_on(stop_at_s=25)
    got = visits(journal_records(b))
    assert len(got) == len(lengths) + 5, got
    boots = [v["boot"] for v in got]
    assert boots == sorted(set(boots))  # in order, none repeated
    assert all(v["on"] == 1 for v in got)  # every one a power-on (PWRON_RESET)
    # the OFF time of each uncut visit from its last ALIVE mark: 10 s up to 2 min, else 10 %
    for v, s in zip(got[: len(lengths)], lengths, strict=True):
        last = max(v["alive"], default=0) / 1000
        assert s - last <= max(10, 0.1 * s), (s, v)
        assert last <= s
    assert max(got[-1]["alive"]) / 1000 == 20  # the visit after the cuts marks as usual


def test_mains_sense_pin_records_the_exact_off_time_with_one_program(bulb):
    b = bulb(site={"mains_sense_pin": 5}, pins={5: 1})
    b.extra = {"events": [{"at_ms": 33_500, "pin": 5, "value": 0}]}
    b.power_on(stop_at_s=33.6)
    v = visits(journal_records(b))[-1]
    assert v["off"] is not None and 33_500 <= v["off"] <= 33_550
    flash = [e for e in b.events("flash") if e["t"] >= 33_500]
    assert [e["op"] for e in flash] == ["program"]  # the dying gasp: no erase


def test_safe_mode_still_records_the_power_on_its_faults_and_alive_marks(bulb, tmp_path):
    from tests.test_boot import CRASHING_UPLINK, SITE, firmware_with

    b = bulb(site=SITE, firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    (b.fs / "crashes_left").write_text("3")
    b.power_on(stop_at_s=30)  # three crashed boots, then safe mode until the power goes
    recs = journal_records(b)
    boots = sorted({r[1] for r in recs})
    assert len(boots) == 4
    safe = [r for r in recs if r[1] == boots[-1]]
    kinds = [(r[3], r[4]) for r in safe]
    assert kinds[0] == (record.K_POWER_ON, b.boots[-1].cause)
    assert (record.K_FAULT, record.F_SAFE_MODE) in kinds
    assert (record.K_FAULT, record.F_CRASH) in kinds
    assert [r[3] for r in safe].count(record.K_ALIVE) >= 1


def test_one_bit_flipped_at_rest_in_every_header_and_record_loses_no_visit(bulb):
    from sim.bulb import partitions

    b = bulb()  # no network: everything stays in the journal
    for s in (3, 12, 45):
        b.power_on(stop_at_s=s)
    before = journal_records(b)
    jp = next(p for p in partitions() if p["label"] == "journal")
    headers = [[jp["offset"] + s * 4096 + 9, 3] for s in range(jp["size"] // 4096)]
    slots = [[jp["offset"] + 32 + 24 * i + i % 24, i % 8] for i in range(len(before))]
    b.extra = {"flash": {"flips": headers + slots}}  # the NOR model flips them before the boot
    raw = (b.state_dir / "flash.bin").read_bytes()
    b.power_on(stop_at_s=25)
    b.extra = {}
    flipped = (b.state_dir / "flash.bin").read_bytes()
    assert all(raw[a] ^ flipped[a] == 1 << bit for a, bit in slots)  # they stay flipped in flash
    after = journal_records(b)
    assert after[: len(before)] == before  # every one corrected, none lost or changed
    assert [r[3] for r in after].count(record.K_FAULT) == 0  # no damage left to report
    new = [r for r in after[len(before):] if r[3] == record.K_POWER_ON]
    assert len(new) == 1 and new[0][0] > before[-1][0] and new[0][1] > before[-1][1]


def server_visits(recs: list[tuple[int, ...]]) -> list[Any]:
    """The server's timeline (sim/server/timeline.py) of a journal, as if all of it had been
    delivered at one later instant."""
    from mimamori.timeline import StoredRecord, build_timeline

    heard = 1_800_000_000_000  # ms, as the server counts
    stored = [StoredRecord("b", seq, boot, up, kind, sub, aux, arg, received_at=heard)
              for seq, boot, up, kind, sub, aux, arg in recs]
    return list(build_timeline(stored).intervals)


def test_bulb_lit_for_13_days_gives_a_13_day_visit(bulb):
    # time.ticks_ms() wraps at 2^30 ms (12.4 days) on the ESP32; the server unwraps at that period
    days = 13
    b = bulb()  # no network: the journal alone says how long the lamp was lit
    b.power_on(stop_at_s=days * 86400 + 60, timeout=600)
    recs = journal_records(b)
    ups = [r[2] for r in recs]
    assert max(ups) < 1 << 30 and any(u < ups[i - 1] for i, u in enumerate(ups) if i)  # wrapped
    (iv,) = server_visits(recs)
    assert days * 86400 - 1800 <= iv.on_ms / 1000 <= days * 86400 + 60


def test_safe_mode_retries_are_not_counted_as_switch_ons(bulb, tmp_path):
    # each retry is machine.reset(): HARD_RESET, with the firmware's reason in the POWER_ON
    from tests.test_boot import CRASHING_UPLINK, SITE, firmware_with

    b = bulb(site=dict(SITE, safe_mode_s=60),
             firmware_dir=firmware_with(tmp_path, uplink=CRASHING_UPLINK))
    (b.fs / "crashes_left").write_text("100")
    b.power_on(stop_at_s=400)
    recs = journal_records(b)
    ons = [(r[4], r[5]) for r in recs if r[3] == record.K_POWER_ON]
    assert ons[0] == (1, record.R_NONE)
    assert ons.count((2, record.R_CRASH)) >= 6 and ons.count((2, record.R_RETRY)) >= 3
    assert {sub for sub, _ in ons[1:]} == {2}
    (iv,) = server_visits(recs)  # one switch-on, lit for the whole 400 s
    assert iv.boots == len(ons) and 360_000 <= iv.on_ms <= 400_000


def test_a_panic_is_not_a_switch_on_and_a_brownout_is(bulb):
    b = bulb(site={"fade_ms": 400})
    b.extra = {"events": [{"at_ms": 20_000, "panic": 1}, {"at_ms": 40_000, "brownout": 1}]}
    b.power_on(stop_at_s=60)
    assert [x.cause for x in b.boots] == [1, 2, 1]
    recs = journal_records(b)
    ons = [(r[4], r[5]) for r in recs if r[3] == record.K_POWER_ON]
    assert ons == [(1, record.R_NONE), (2, record.R_PANIC), (1, record.R_NONE)]
    first, second = server_visits(recs)
    assert first.boots == 2 and 15_000 <= first.on_ms <= 40_000  # the panic's boot extends the visit
    assert second.boots == 1
