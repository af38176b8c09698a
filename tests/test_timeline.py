# SPDX-License-Identifier: MIT
"""The timeline: bulbs' records -> on-intervals in wall-clock time, with bounds, never guesses."""

import random
from dataclasses import replace

from mimamori.clock import SECOND_MS
from mimamori.timeline import (
    HARD_RESET,
    PWRON_RESET,
    WDT_RESET,
    StoredRecord,
    build_timeline,
)
from mimamori_firmware.record import A_SERVER, K_ALIVE, K_ANCHOR, K_LINK, K_OFF, K_POWER_ON

T0 = 1_780_000_000  # a wall-clock instant (Unix s)


def ms(s: float) -> int:
    """The tests write instants in Unix seconds, as the anchor records count them; the
    timeline counts ms, as the whole server: the one conversion."""
    return round(s * SECOND_MS)


class Bulb:
    """Hand-built records of one bulb: each boot's records, then when they reached the server."""

    def __init__(self, device="bulb-1"):
        self.device, self.seq, self.boot, self.records = device, 1, 0, []

    def visit(self, start, length_s, *, anchor=True, off=False, received_at=None, alive=(),
              cause=PWRON_RESET, err=0):
        """A boot at wall time `start` lasting length_s; records arrive at received_at."""
        self.boot += 1
        rows = [(50, K_POWER_ON, cause, 0, 1)]
        if anchor:
            rows.append((2000, K_ANCHOR, A_SERVER, err, int(start + 2)))
        rows += [(int(a * 1000), K_ALIVE, 0, 0, 0) for a in alive]
        if off:
            rows.append((int(length_s * 1000), K_OFF, 0, 0, 0))
        at = start + length_s + 1 if received_at is None else received_at
        for up, kind, sub, aux, arg in rows:
            self.records.append(StoredRecord(self.device, self.seq, self.boot, up, kind, sub, aux,
                                             arg, received_at=ms(at)))
            self.seq += 1
        return self

    def timeline(self, registered=None):
        return build_timeline(self.records, registered)


def test_anchored_visit_with_dying_gasp_is_exact():
    b = Bulb().visit(T0, 300, off=True, alive=(10, 20, 120))
    (iv,) = build_timeline(b.records).intervals
    assert iv.start_earliest == iv.start_latest == ms(T0)
    assert iv.end_earliest == iv.end_latest == ms(T0 + 300)
    assert iv.ended_by == "off" and iv.exact_start


def test_visit_without_off_ends_within_alive_schedule_once_the_next_boot_is_known():
    b = Bulb().visit(T0, 200, alive=(10, 20, 180)).visit(T0 + 3600, 60, alive=(10,))
    first, second = build_timeline(b.records).intervals
    assert first.end_earliest == ms(T0 + 180)  # last mark: surely lit until then
    assert first.ended_by == "alive"
    assert ms(T0 + 180) < first.end_latest <= ms(T0 + 200 + 1)  # within 10 % of the visit
    assert second.ended_by == "open" and second.end_latest is None  # may still be on


def test_boot_that_never_talked_is_bounded_by_its_neighbours_not_given_an_instant():
    b = Bulb()
    b.visit(T0, 120, off=True)
    b.visit(T0 + 5000, 90, anchor=False, off=True, received_at=T0 + 9000 + 3)
    b.visit(T0 + 9000, 60, off=True)
    _, mid, _ = build_timeline(b.records).intervals
    assert not mid.anchored
    assert mid.start_earliest == ms(T0 + 120)  # after the previous visit ended
    assert mid.start_latest == ms(T0 + 9000 - 90)  # ended (90 s later) before the next one began
    assert mid.start_earliest < ms(T0 + 5000) < mid.start_latest
    assert mid.on_ms == ms(90)


def test_unanchored_last_boot_is_bounded_by_when_its_records_arrived():
    b = Bulb().visit(T0, 60, off=True)
    b.visit(T0 + 4000, 100, anchor=False, alive=(10, 50), received_at=T0 + 7200)
    _, last = build_timeline(b.records).intervals
    assert last.start_earliest == ms(T0 + 60)
    assert last.start_latest == ms(T0 + 7200 - 50)  # the 50 s mark was written before it was sent
    assert last.reported_at == ms(T0 + 7200)


def test_first_boot_that_never_talked_has_no_invented_earliest_start():
    b = Bulb().visit(T0, 30, anchor=False, received_at=T0 + 600).visit(T0 + 600, 30)
    first, _ = build_timeline(b.records).intervals
    assert first.start_earliest is None and first.end_earliest is None
    assert first.start_latest <= ms(T0 + 600)


def test_late_batch_slots_into_place_and_tightens_its_neighbours():
    b = Bulb()
    b.visit(T0, 60, off=True)
    b.visit(T0 + 3000, 60, anchor=False, off=True, received_at=T0 + 86400 * 3)  # days late
    b.visit(T0 + 7000, 60, off=True)
    early = [r for r in b.records if r.boot != 2]
    before = build_timeline(early).intervals
    after = build_timeline(b.records).intervals
    assert len(before) == 2 and len(after) == 3
    assert after[1].start_earliest == ms(T0 + 60) and after[1].start_latest == ms(T0 + 7000 - 60)
    assert after[1].reported_at - after[1].start_latest > ms(86400)  # the delivery was late


def test_out_of_order_and_duplicated_batches_give_the_same_timeline():
    b = Bulb()
    for i in range(6):
        b.visit(T0 + i * 3600, 100 + i, anchor=i % 2 == 0, alive=(10, 90), off=i == 5,
                received_at=T0 + i * 3600 + 200 if i % 2 == 0 else T0 + (i + 1) * 3600 + 200)
    shuffled = b.records + b.records[:7]
    random.Random(1).shuffle(shuffled)
    assert build_timeline(shuffled) == build_timeline(b.records)


def test_several_bulbs_in_one_household_merge_in_time_order():
    a = Bulb("toilet").visit(T0, 60, off=True).visit(T0 + 7200, 60, off=True)
    w = Bulb("washroom").visit(T0 + 3600, 60, off=True)
    tl = build_timeline(a.records + w.records, {"toilet": ms(T0 - 86400),
                                                "washroom": ms(T0 - 86400),
                                                "kitchen": ms(T0 - 86400)})
    assert [iv.device for iv in tl.intervals] == ["toilet", "washroom", "toilet"]
    assert tl.devices["kitchen"].last_heard is None  # registered, never heard
    assert tl.devices["toilet"].last_heard == ms(T0 + 7200 + 61)


def test_uptime_wrap_after_12_days_is_unwrapped_within_a_boot():
    dev, wrap = "bulb-1", 1 << 30  # time.ticks_ms() on the ESP32
    recs = [
        StoredRecord(dev, 1, 1, 50, K_POWER_ON, PWRON_RESET, received_at=ms(T0 + 3)),
        StoredRecord(dev, 2, 1, 2000, K_ANCHOR, A_SERVER, 0, T0 + 2, received_at=ms(T0 + 3)),
        StoredRecord(dev, 3, 1, wrap - 1000, K_ALIVE, received_at=ms(T0) + wrap),
        StoredRecord(dev, 4, 1, 5000, K_ALIVE, received_at=ms(T0 + 10) + wrap),
    ]
    (iv,) = build_timeline(recs).intervals
    assert iv.on_ms == wrap + 5000  # about 12.4 days lit, not 5 s
    assert iv.end_earliest == ms(T0) + wrap + 5000


def test_watchdog_reset_while_lit_is_not_a_new_switch_on():
    b = Bulb().visit(T0, 600, alive=(10, 590))
    b.visit(T0 + 601, 300, cause=WDT_RESET, off=True)
    (iv,) = build_timeline(b.records).intervals
    assert iv.boots == 2 and iv.on_ms == ms(590 + 300)  # known lit: to the last mark, then 300 s
    assert iv.start_latest == ms(T0) and iv.end_latest == ms(T0 + 601 + 300)


def test_hourly_hard_resets_of_safe_mode_are_one_visit_and_a_power_on_is_a_new_one():
    # machine.reset() and a panic report HARD_RESET on the ESP32: the lamp stayed lit
    b = Bulb().visit(T0, 3600, alive=(10, 3590))
    for h in range(1, 4):
        b.visit(T0 + h * 3601, 3600, cause=HARD_RESET, alive=(10, 3590))
    b.visit(T0 + 5 * 3601, 60, off=True)  # switched off and on again: PWRON_RESET
    first, second = build_timeline(b.records).intervals
    assert first.boots == 4 and first.start_latest == ms(T0)
    assert second.boots == 1 and second.start_latest == ms(T0 + 5 * 3601)


def test_anchor_error_bound_widens_the_start():
    b = Bulb().visit(T0, 60, off=True, err=30, received_at=T0 + 600)
    (iv,) = build_timeline(b.records).intervals
    assert iv.start_earliest == ms(T0 - 30) and iv.start_latest == ms(T0 + 30)
    assert not iv.exact_start


def test_records_other_than_alive_also_prove_the_lamp_was_lit():
    b = Bulb().visit(T0, 100, alive=(10,))
    b.records.append(StoredRecord("bulb-1", 99, 1, 80_000, K_LINK, 1, -70, 900,
                                  received_at=ms(T0 + 90)))
    b.visit(T0 + 3600, 10)
    first, _ = build_timeline(b.records).intervals
    assert first.end_earliest == ms(T0 + 80)


def test_reformatted_journal_restarts_boot_numbers_without_mixing_visits():
    old = Bulb().visit(T0, 60, off=True).visit(T0 + 3600, 60, off=True)
    new = Bulb().visit(T0 + 86400, 60, off=True)  # boot 1 again, in a new journal
    recs = [replace(r, epoch=0xA1) for r in old.records]
    recs += [replace(r, epoch=0x07) for r in new.records]
    ivs = build_timeline(recs).intervals
    assert [iv.start_latest for iv in ivs] == [ms(T0), ms(T0 + 3600), ms(T0 + 86400)]
    assert all(iv.ended_by == "off" for iv in ivs)
