# SPDX-License-Identifier: MIT
"""A household's timeline: the bulbs' journal records turned into on-intervals in wall-clock time.

Pure: `build_timeline(records, ...)` is a function of all the records the server holds for a
household, in any order, with duplicates. Re-evaluation after a late or out-of-order batch is
calling it again. It never invents an instant: a boot that never learned the wall-clock time
gets bounds from its neighbours and from when its records reached the server.

How a boot becomes an interval (one bulb, boots in boot-number order):

- every boot is a power-on, so the lamp was lit from uptime 0;
- ANCHOR records give the boot's offset (wall = offset + uptime) within +-aux seconds (the
  record's fields count Unix seconds; the timeline, like the whole server, milliseconds); besides
  the bulb's own, every batch whose header carries the bulb's uptime gives a receipt anchor
  (sub A_RECEIPT, made by `receipt_anchor` from the server's receive time: a measurement with
  an honest bound, never an invented instant), so a boot's first batch places it at once;
- the previous boot ended before this one started, and this one ended before the next started;
- a record reached the server (received_at) after it was written: offset + up <= received_at;
- OFF (dying gasp) gives the exact end in uptime; otherwise the last record of the boot is the
  last moment known lit, and the end is bounded by the ALIVE schedule (a mark every 10 s, then
  every 10 % of the visit) once a later boot proves the boot is over.
- a boot whose POWER_ON says hard, watchdog or software reset is not a new switch-on: the lamp
  stayed lit through it (the driver's pull-up lights it while the ESP32 resets), so it extends
  the previous visit. On the ESP32 HARD_RESET is machine.reset() or a panic (aux of the
  POWER_ON says which: record.R_*), never a power-on; a brown-out reports PWRON_RESET and
  counts as a switch-on (the bulb cannot tell it from one).

What the server has not been told yet: an LTE-M bulb reports a power-on only when its last
report is `lte_report_gap_s` old (firmware/uplink.py), so it may hold visits up to that long
after it was last heard. `DeviceSeen.report_gap_ms` is that gap for bulbs known to use LTE-M
(a K_LINK with sub T_LTE or a K_ANCHOR from the modem's clock), 0 for the others; the rules
count quiet spells from `hidden_until` at the earliest.

Uptime is the bulb's ticks_ms, which wraps at UP_WRAP_MS (2^30 ms, 12.4 days; firmware/record.py):
it is unwrapped within a boot (the bulb writes an ALIVE mark at least every alive_max_s).

Every instant here is integer milliseconds since the epoch, every duration integer milliseconds
(sim/server/clock.py): the server's one time unit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mimamori.clock import HOUR_MS, SECOND_MS, to_s
from mimamori_firmware.record import (
    A_MODEM,
    A_RECEIPT,
    K_ANCHOR,
    K_LINK,
    K_OFF,
    K_POWER_ON,
    T_LTE,
    UP_WRAP_MS,
)

WRAP_MS = UP_WRAP_MS
# ESP32 machine.reset_cause() values; a boot caused by these kept the lamp lit (no switch-off).
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
SOFT_RESET = 5
_CONTINUES_VISIT = (HARD_RESET, WDT_RESET, SOFT_RESET)
# The ALIVE schedule (firmware/alive.py, docs/alerts.md): the off time is known within 10 s up
# to 2 minutes, then within 10 % of the visit's length.
ALIVE_STEP_MS = 10 * SECOND_MS
ALIVE_FRACTION = 0.10
# The bulb's default lte_report_gap_s (firmware/config.py SCHEMA; tests/test_lte_gap.py checks
# they agree): used for an LTE-M bulb whose gap the caller does not give.
LTE_REPORT_GAP_MS = 6 * HOUR_MS
# Receipt anchors: the longest a request may take from the bulb reading its uptime (just before
# signing) to the server starting to handle it (signing, the head's transit, the server's
# queue). An assumption, documented in docs/protocol.md; LTE-M latency is seconds.
RECEIPT_TRANSIT_MS = 2 * SECOND_MS
RECEIPT_TRANSIT_LTE_MS = 10 * SECOND_MS
# The bulb's default heartbeat_s (firmware/config.py): a lit bulb reports this often.
HEARTBEAT_MS = 15 * 60 * SECOND_MS


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One journal record as the server stores it (firmware/record.py fields + arrival time)."""

    device: str
    seq: int
    boot: int
    up_ms: int
    kind: int
    sub: int = 0
    aux: int = 0
    arg: int = 0
    received_at: int = 0  # server wall-clock (ms) when the batch carrying it arrived
    epoch: int = 0  # journal identity: seq and boot restart when a bulb's journal is reformatted


def receipt_anchor(device: str, epoch: int, boot: int, up_ms: int, received_at: int,
                   wait_ms: int, lte: bool, seq: int = 0) -> StoredRecord:
    """The anchor a batch gives its boot: the bulb read `up_ms` at most `wait_ms` (the server's
    own handling, measured) + the transit allowance before `received_at` (ms), and not after.
    As a K_ANCHOR (sub A_RECEIPT) in whole seconds, as the bulb's own anchors: arg +- aux covers
    that whole range."""
    hi = received_at
    lo = received_at - max(0, wait_ms) - (RECEIPT_TRANSIT_LTE_MS if lte else RECEIPT_TRANSIT_MS)
    mid = to_s(lo + hi) / 2
    arg = round(mid)
    aux = math.ceil(to_s(hi - lo) / 2 + abs(arg - mid))
    return StoredRecord(device, seq, boot, up_ms, K_ANCHOR, A_RECEIPT, aux, arg,
                        received_at=received_at, epoch=epoch)


def _is_receipt(r: StoredRecord) -> bool:
    return r.kind == K_ANCHOR and r.sub == A_RECEIPT


@dataclass(frozen=True, slots=True)
class Interval:
    """One visit: the lamp on from start to end, each known within [earliest, latest] (ms).

    start_earliest and end_earliest are None when nothing before the visit bounds it (a bulb's
    first boot that never talked). end_latest is None while the lamp may still be on (no OFF record and no later
    boot yet). on_ms is how long the lamp is known to have been lit (exact, from the bulb's own
    uptime clock, whatever the anchors).
    """

    device: str
    boot: int
    start_earliest: int | None
    start_latest: int
    end_earliest: int | None
    end_latest: int | None
    on_ms: int
    ended_by: str  # "off" (dying gasp: exact), "alive" (bounded by marks), "open" (maybe still on)
    anchored: bool  # the wall-clock offset came from an anchor in this visit
    reported_at: int  # when the server first heard of this visit (earliest received_at)
    boots: int = 1  # boots merged into this visit (watchdog resets while lit)
    links: int = 0  # connection attempts the bulb recorded during the visit (K_LINK)
    links_failed: int = 0  # of which the server could not be reached (K_LINK arg 0)

    @property
    def exact_start(self) -> bool:
        return self.start_earliest is not None and self.start_latest - self.start_earliest < SECOND_MS

    @property
    def start_mid(self) -> int:
        if self.start_earliest is None:
            return self.start_latest
        return (self.start_earliest + self.start_latest) // 2


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    device: str
    registered_at: int | None
    first_heard: int | None
    last_heard: int | None  # latest received_at of any record
    last_boot: int | None
    lte: bool = False  # the bulb has reported over LTE-M (K_LINK T_LTE) or used its clock
    report_gap_ms: int = 0  # visits may wait this long after last_heard (LTE-M), else 0
    heartbeat_ms: int = HEARTBEAT_MS  # while lit, the bulb reports at least this often

    @property
    def hidden_until(self) -> int | None:
        """The latest instant of a switch-on the bulb may hold unreported (None: none can be):
        any power-on after last_heard + report_gap_ms reports at once."""
        if self.last_heard is None or self.report_gap_ms <= 0:
            return None
        return self.last_heard + self.report_gap_ms


@dataclass(frozen=True, slots=True)
class Timeline:
    intervals: tuple[Interval, ...]  # all bulbs merged, by start_latest
    devices: Mapping[str, DeviceSeen] = field(default_factory=dict)

    def starts_between(self, t0: int, t1: int) -> list[Interval]:
        """Visits whose latest possible start is in [t0, t1)."""
        return [iv for iv in self.intervals if t0 <= iv.start_latest < t1]


@dataclass(slots=True)
class _Boot:
    device: str
    boot: int
    records: list[StoredRecord]
    ups: list[int] = field(default_factory=list)  # unwrapped uptime (ms) per record
    lo: float = -math.inf  # bounds on the boot's offset (ms): wall = offset + uptime
    hi: float = math.inf  # (infinite while unbounded, else integer ms)
    anchored: bool = False
    last_up: int = 0
    off_up: int | None = None
    continues: bool = False


def _unwrap(records: list[StoredRecord]) -> list[int]:
    out: list[int] = []
    add = 0
    prev = -1
    for r in records:
        if r.up_ms < prev:
            add += WRAP_MS
        prev = r.up_ms
        out.append(r.up_ms + add)
    return out


def _anchor(bt: _Boot, r: StoredRecord, up: int) -> None:
    err = max(0, r.aux) * SECOND_MS  # the record counts Unix seconds
    at = r.arg * SECOND_MS
    bt.lo = max(bt.lo, at - up - err) if bt.anchored else at - up - err
    bt.hi = min(bt.hi, at - up + err) if bt.anchored else at - up + err
    bt.anchored = True


def _receipt_up(bt: _Boot, rc: StoredRecord) -> int:
    """The receipt's uptime unwrapped: not before any record of the boot that reached the
    server with or before it (those were written before the bulb sent)."""
    floor = max((up for r, up in zip(bt.records, bt.ups) if r.received_at <= rc.received_at),
                default=0)
    up = rc.up_ms
    while up < floor:
        up += WRAP_MS
    return up


def _boots_of(records: list[StoredRecord],
              first_seen: Mapping[int, int] | None = None) -> list[_Boot]:
    """The boots of one bulb in order. first_seen: when each epoch was first heard, if the
    records given are not all of them (a kept tail: sim/server/kept.py)."""
    by_boot: dict[tuple[int, int], dict[int, StoredRecord]] = {}
    receipts: dict[tuple[int, int], list[StoredRecord]] = {}
    seen: dict[int, float] = {}  # ms (math.inf before the first)
    for r in records:  # a duplicate (epoch, seq) keeps the first copy
        if _is_receipt(r):  # not a journal record: no seq of its own
            receipts.setdefault((r.epoch, r.boot), []).append(r)
            continue
        by_boot.setdefault((r.epoch, r.boot), {}).setdefault(r.seq, r)
        seen[r.epoch] = min(seen.get(r.epoch, math.inf), r.received_at)
    # epochs are random identities: a reformatted journal's boots come after the older journal's
    if first_seen is not None:
        seen = {**seen, **first_seen}
    order = sorted(by_boot, key=lambda k: (seen[k[0]], k[0], k[1]))
    boots: list[_Boot] = []
    for key in order:
        recs = [by_boot[key][s] for s in sorted(by_boot[key])]
        bt = _Boot(recs[0].device, key[1], recs)
        bt.ups = _unwrap(recs)
        bt.last_up = bt.ups[-1]
        for r, up in zip(recs, bt.ups):
            if r.kind == K_ANCHOR:
                _anchor(bt, r, up)
            elif r.kind == K_OFF:
                bt.off_up = up
            elif r.kind == K_POWER_ON and r.sub in _CONTINUES_VISIT:
                bt.continues = True
            # the record reached the server after it was written
            bt.hi = min(bt.hi, r.received_at - up)
        for rc in receipts.get(key, ()):  # the bulb was running (lit) when it sent the batch
            up = _receipt_up(bt, rc)
            _anchor(bt, rc, up)
            bt.hi = min(bt.hi, rc.received_at - up)
            bt.last_up = max(bt.last_up, up)
        if bt.anchored and bt.lo > bt.hi:  # anchor contradicts arrival: trust arrival
            bt.lo = bt.hi
        boots.append(bt)
    return boots


def _end_up(bt: _Boot) -> int:
    """The uptime until which the lamp is known lit."""
    return bt.off_up if bt.off_up is not None else bt.last_up


def _bound(boots: list[_Boot]) -> None:
    """Propagate neighbour bounds: boots of one bulb do not overlap."""
    for prev, cur in itertools.pairwise(boots):  # forward: cur starts after prev ended
        floor = prev.lo + _end_up(prev)
        if floor > cur.lo and floor <= cur.hi:
            cur.lo = floor
        elif floor > cur.hi:  # inconsistent anchors: keep cur's own
            pass
    for cur, nxt in zip(reversed(boots[:-1]), reversed(boots[1:])):  # backward
        ceil = nxt.hi - _end_up(cur)
        if ceil < cur.hi and ceil >= cur.lo:
            cur.hi = ceil


def _max_end_up(bt: _Boot) -> int:
    u = bt.last_up
    return max(u + ALIVE_STEP_MS, math.ceil(u / (1.0 - ALIVE_FRACTION)))


def device_intervals(records: list[StoredRecord]) -> list[Interval]:
    """The visits of one bulb (records of one device, any order, duplicates allowed)."""
    boots = _boots_of(records)
    _bound(boots)
    return _visits(boots)


def _visits(boots: list[_Boot]) -> list[Interval]:
    """The visits of one bulb's bounded boots."""
    out: list[Interval] = []
    i = 0
    while i < len(boots):
        first = boots[i]
        j = i
        while j + 1 < len(boots) and boots[j + 1].continues:
            j += 1
        last = boots[j]
        nxt = boots[j + 1] if j + 1 < len(boots) else None
        start_lo = None if math.isinf(first.lo) else int(first.lo)
        start_hi = int(first.hi)
        on_ms = sum(_end_up(b) for b in boots[i : j + 1])
        end_lo = None if math.isinf(last.lo) else int(last.lo) + _end_up(last)
        if last.off_up is not None:
            end_hi: int | None = int(last.hi) + last.off_up
            ended_by = "off"
        elif nxt is not None:
            end_hi = int(min(nxt.hi, last.hi + _max_end_up(last)))
            ended_by = "alive"
        else:
            end_hi = None
            ended_by = "open"
        if end_hi is not None and end_lo is not None:
            end_hi = max(end_hi, end_lo)
        out.append(
            Interval(
                device=first.device,
                boot=first.boot,
                start_earliest=start_lo,
                start_latest=start_hi,
                end_earliest=end_lo,
                end_latest=end_hi,
                on_ms=on_ms,
                ended_by=ended_by,
                anchored=first.anchored,
                reported_at=min(r.received_at for b in boots[i : j + 1] for r in b.records),
                boots=j - i + 1,
                links=sum(1 for b in boots[i : j + 1] for r in b.records if r.kind == K_LINK),
                links_failed=sum(1 for b in boots[i : j + 1] for r in b.records
                                 if r.kind == K_LINK and r.arg == 0),
            )
        )
        i = j + 1
    return out


def uses_lte(records: Iterable[StoredRecord]) -> bool:
    """True when a bulb's records show LTE-M: a link record over LTE-M, or a modem time anchor."""
    return any((r.kind == K_LINK and r.sub == T_LTE) or (r.kind == K_ANCHOR and r.sub == A_MODEM)
               for r in records)


def build_timeline(
    records: Iterable[StoredRecord],
    registered: Mapping[str, int | None] | None = None,
    report_gaps: Mapping[str, int] | None = None,
    heartbeats: Mapping[str, int] | None = None,
) -> Timeline:
    """The household's timeline from all its bulbs' records.

    registered: device -> registration time (ms, or None), so that a bulb never heard
    still appears in `devices` (the bulb-silent rule needs it).
    report_gaps: device -> its lte_report_gap_s setting (the one pushed to it) in ms; bulbs not
    named get LTE_REPORT_GAP_MS. Applies only to bulbs whose records show LTE-M (Wi-Fi reports
    at once). heartbeats: device -> its heartbeat_s setting in ms (how often it reports while
    lit); default HEARTBEAT_MS.
    """
    per_dev: dict[str, list[StoredRecord]] = {}
    for r in records:
        per_dev.setdefault(r.device, []).append(r)
    intervals: list[Interval] = []
    devices: dict[str, DeviceSeen] = {}
    for dev, recs in per_dev.items():
        intervals.extend(device_intervals(recs))
        devices[dev] = DeviceSeen(
            device=dev,
            registered_at=(registered or {}).get(dev),
            first_heard=min(r.received_at for r in recs),
            last_heard=max(r.received_at for r in recs),
            last_boot=max(r.boot for r in recs),
            lte=(lte := uses_lte(recs)),
            report_gap_ms=int((report_gaps or {}).get(dev, LTE_REPORT_GAP_MS)) if lte else 0,
            heartbeat_ms=int((heartbeats or {}).get(dev, HEARTBEAT_MS)),
        )
    for dev, at in (registered or {}).items():
        devices.setdefault(dev, DeviceSeen(dev, at, None, None, None))
    intervals.sort(key=lambda iv: (iv.start_latest, iv.device, iv.boot))
    return Timeline(tuple(intervals), devices)
