# SPDX-License-Identifier: MIT
"""What the alert rules know about each bulb and each household: explicit values, learned by
folding one local day at a time.

    BulbModel         per local hour: how often the bulb is switched on, how long visits that
                      start then last (a histogram, so the rules read its tail, not its mean);
                      how often a whole day goes unused; its delivery (how late its visits reach
                      the server, by the hour they began: a histogram of the delays, so the rules
                      know which silences its radio has caused; failed connection attempts); its
                      last days, for the placement check
    HouseholdModel    its bulbs, and the quiet spells between switch-ons of any bulb, kept by
                      the local half-hour they began and their length (the rules measure them in
                      expected switch-ons under the current rhythm, so old spells follow it)
    fold(model, day)  one more local day; older days weigh less (half-life HALF_LIFE_DAYS), so a
                      bulb whose use moves with dusk follows the season
    learn(...)        folding every settled day of a timeline, from an empty model or from a
                      model kept earlier: the same value either way
    placement(...)    the placement check: does this bulb's room give enough signal, in words

A day is folded once it has settled: SETTLE_S after its local end, with the visits the server had
heard of by then (later reports are left out of that day). So a model is a function of the
history alone, whenever it is computed; the server may keep it and fold each new day.

It must never read the clock or the database, and never need more than the new day to update.
"""

from __future__ import annotations

import bisect
import math
import statistics
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mimamori.clock import DAY_MS, HOUR_MS, SECOND_MS, to_ms, to_s
from mimamori.timeline import Interval, Timeline

HALF_LIFE_DAYS = 14.0
DECAY = 0.5 ** (1.0 / HALF_LIFE_DAYS)
HALF_HOUR_MS = HOUR_MS // 2  # the quiet spells are kept per local half-hour they began
SETTLE_MS = 30 * HOUR_MS  # a day is folded this long after it ended (late reports get in)
LATE_MS = HOUR_MS  # a visit that reached the server later than this was reported late
RECENT_DAYS = 28  # per-day figures kept (placement, longest spells, delivery)
PLACEMENT_DAYS = 7  # the placement check speaks after this many folded days
PLACEMENT_WINDOW = 14  # ... about the last this many days
RADIO_NOTE_H = 6.0  # reports this late in that window: the check speaks of the radio too
# visit lengths in ms and quiet spells in expected switch-ons: log-spaced bin edges
DUR_EDGES: tuple[float, ...] = tuple(30.0 * SECOND_MS * 1.25 ** k for k in range(38))  # 30 s .. 32 h
MASS_EDGES: tuple[float, ...] = tuple(0.01 * 1.1 ** k for k in range(111))  # 0.01 .. 380
SPELL_EDGES_H: tuple[float, ...] = tuple(1 / 6 * 1.07 ** k for k in range(112))  # 10 min .. 13 d
DELAY_EDGES_H: tuple[float, ...] = tuple(0.5 * 1.2 ** k for k in range(27))  # 30 min .. 2.7 d
LONG_SPELL_H = 3.0  # spells at least this long are kept one by one for RECENT_DAYS
# the rate before a bulb has shown its own: a weak prior (6 hours of watching, 1 switch-on)
PRIOR_SEEN_H = 6.0
PRIOR_ON = 1.0
# a bin "seen recently" when its weight is at least this (one visit about 32 days ago)
RECENT_WEIGHT = 0.2
TAIL_Q = 0.2  # tails are fitted to the share of values above the 80th percentile
# the meaning of a stored model: a model of another version is learned again from the records
# (2: delays kept as a histogram by hour, `held`; 3: a visit folded on the day of the middle
# of its start bounds, not of their end; 4: instants and visit lengths in ms, not seconds)
VERSION = 4


def _bins(edges: Sequence[float]) -> list[float]:
    return [0.0] * (len(edges) + 1)


def _bin(edges: Sequence[float], x: float) -> int:
    return bisect.bisect_right(edges, x)


def _upper(edges: Sequence[float], i: int) -> float:
    """Upper edge of bin i (the open last bin: a step beyond the last edge)."""
    return edges[i] if i < len(edges) else edges[-1] * (edges[1] / edges[0])


def _mid(edges: Sequence[float], i: int) -> float:
    lo = edges[i - 1] if i > 0 else edges[0] / (edges[1] / edges[0])
    return math.sqrt(lo * _upper(edges, i))


# ---------------------------------------------------------------------------------------------
# the values


@dataclass
class BulbModel:
    """One bulb, from its folded days. Hour lists are indexed by local hour of the day."""

    device: str
    installed: int | None = None  # from when the bulb watches (registered or first visit)
    n_days: int = 0  # days folded
    days: float = 0.0  # decayed days watched (paused hours left out)
    full_days: float = 0.0  # decayed whole days watched
    unused: float = 0.0  # ... of which without a switch-on
    on: list[float] = field(default_factory=lambda: [0.0] * 24)  # switch-ons by start hour
    seen: list[float] = field(default_factory=lambda: [0.0] * 24)  # days each hour was watched
    dur: list[list[float]] = field(default_factory=lambda: [_bins(DUR_EDGES) for _ in range(24)])
    sent: list[float] = field(default_factory=lambda: [0.0] * 24)  # visits reported, by hour
    late: list[float] = field(default_factory=lambda: [0.0] * 24)  # ... more than LATE_MS late
    # ... their delays (h, DELAY_EDGES_H), by the hour the visit began
    held: list[list[float]] = field(default_factory=lambda: [_bins(DELAY_EDGES_H)
                                                              for _ in range(24)])
    attempts: float = 0.0  # connection attempts the bulb recorded
    fails: float = 0.0  # ... that could not reach the server
    # last RECENT_DAYS days: [day ordinal, switch-ons, share watched, longest gap of this bulb
    # that ended that day (h), longest delivery delay (h), attempts, failed attempts, longest
    # wait the server saw (h: from the last switch-on it knew of to a report of a later one)]
    recent: list[list[float]] = field(default_factory=list)
    last_on: int | None = None  # the bulb's last switch-on folded
    batch: list[int] | None = None  # [reported at, latest switch-on in that report]

    def rates(self) -> list[float]:
        """Switch-ons per hour for each local hour: a prior of PRIOR_SEEN_H hours at the bulb's
        mean rate per hour, smoothed over neighbouring hours; never zero."""
        mean = (sum(self.on) + PRIOR_ON) / (sum(self.seen) + PRIOR_SEEN_H)
        raw = [(self.on[h] + 2.0 * mean) / (self.seen[h] + 2.0) for h in range(24)]
        floor = 0.02 * mean
        return [max(floor, 0.25 * raw[h - 1] + 0.5 * raw[h] + 0.25 * raw[(h + 1) % 24])
                for h in range(24)]

    def per_day(self) -> float:
        return sum(self.rates()) if self.days <= 0 else sum(self.on) / self.days

    def durations(self, hour: int, spread: int = 2) -> list[float]:
        """The visit-length histogram of visits that began within +-spread hours of `hour`."""
        out = _bins(DUR_EDGES)
        for k in range(-spread, spread + 1):
            for i, w in enumerate(self.dur[(hour + k) % 24]):
                out[i] += w
        return out

    def radio_hours(self) -> list[bool]:
        """Local hours whose visits have reached the server late (its outage pattern)."""
        out = []
        for h in range(24):
            sent = sum(self.sent[(h + k) % 24] for k in (-1, 0, 1))
            late = sum(self.late[(h + k) % 24] for k in (-1, 0, 1))
            out.append(late >= 0.5 and late >= 0.05 * sent)
        return out

    def held_shares(self) -> list[list[tuple[float, float]]]:
        """Per local hour k: [(hours, share)]: the share of this bulb's visits begun near hour
        k whose report was held that many hours (the upper edge of its bin: never kinder).
        "Near": a report held e hours was held by an outage that could as well have begun
        e/2 hours earlier or later, so a delay is pooled over the hours within e/2 of its own
        (at least 1, at most 12): a router off every night keeps its delays at night, one off
        for a day at any hour spreads them over the day."""
        out: list[list[tuple[float, float]]] = [[] for _ in range(24)]
        for i in range(len(DELAY_EDGES_H) + 1):
            col = [self.held[k][i] for k in range(24)]
            if not any(col):
                continue
            e = _upper(DELAY_EDGES_H, i)
            w = min(12, max(1, round(e / 2)))
            for k in range(24):
                near = [(k + d) % 24 for d in range(-w, w + 1)][:24]
                sent = sum(self.sent[j] for j in near)
                share = sum(col[j] for j in near) / sent if sent > 0 else 0.0
                if share > 0:
                    out[k].append((e, share))
        return out

    def longest_held_h(self) -> float:
        """The longest delay of its visits the model holds (upper bin edge; 0 when none)."""
        return max((longest(col, DELAY_EDGES_H, 0.05) for col in self.held), default=0.0)

    def longest_delay_h(self) -> float:
        return max((r[4] for r in self.recent), default=0.0)

    def longest_wait_h(self) -> float:
        """The longest the server waited, in the last RECENT_DAYS, from the last switch-on it
        knew of to the report of a later one (a quiet spell plus the radio's delay)."""
        return max((r[7] for r in self.recent), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> BulbModel:
        return BulbModel(**{k: d[k] for k in BulbModel.__dataclass_fields__ if k in d})


@dataclass
class HouseholdModel:
    """A household: its bulbs and the quiet spells between switch-ons of any of them."""

    bulbs: dict[str, BulbModel] = field(default_factory=dict)
    day: int | None = None  # last local day folded (date ordinal)
    n_days: int = 0
    days: float = 0.0
    n_spells: int = 0
    # quiet spells by the local half-hour they began (48) and their length (SPELL_EDGES_H)
    spells: list[list[float]] = field(default_factory=lambda: [_bins(SPELL_EDGES_H)
                                                                for _ in range(48)])
    # last RECENT_DAYS days: [day ordinal, [[start, hours] of each spell ended that day that
    # lasted LONG_SPELL_H or more]]
    spell_recent: list[list[Any]] = field(default_factory=list)
    last_on: int | None = None  # start of the spell still open at the end of `day`

    def rates(self) -> list[float]:
        """Switch-ons per hour of all bulbs together, by local hour."""
        out = [0.0] * 24
        for bm in self.bulbs.values():
            for h, r in enumerate(bm.rates()):
                out[h] += r
        return out

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "bulbs"}
        d["bulbs"] = {k: b.to_json() for k, b in self.bulbs.items()}
        d["version"] = VERSION
        return d

    def copy(self) -> HouseholdModel:
        """An equal model that shares no list with this one (fold changes lists in place)."""
        return HouseholdModel.from_json(_copy(self.to_json()))

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> HouseholdModel:
        if d.get("version") != VERSION:
            raise ValueError(f"household model version {d.get('version')!r}: this code reads "
                             f"version {VERSION}; learn it again from the records")
        kw = {k: d[k] for k in HouseholdModel.__dataclass_fields__ if k in d and k != "bulbs"}
        return HouseholdModel(bulbs={k: BulbModel.from_json(b) for k, b in d["bulbs"].items()},
                              **kw)


def _copy(x: Any) -> Any:
    """A JSON-like value copied down to its numbers (no list or dict shared with x)."""
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_copy(v) if isinstance(v, (list, dict)) else v for v in x]
    return x


@dataclass(frozen=True)
class Day:
    """One local day to fold: its bounds, its UTC offset, the visits that began in it (as known
    SETTLE_MS after it ended), the paused spans overlapping it and when each bulb was installed."""

    day: int  # date ordinal
    start: int
    end: int
    offset: int
    visits: tuple[Interval, ...]
    paused: tuple[tuple[float, float], ...] = ()  # ms (an open pause ends at math.inf)
    installed: Mapping[str, int | None] = field(default_factory=dict)
    lit: frozenset[tuple[str, int]] = frozenset()  # (bulb, boot) still lit: length unknown
    # the server's own outages (listening.py), also in `paused` where they overlap the day: the
    # reports they held are not the bulb's radio
    deaf: tuple[tuple[float, float], ...] = ()


# ---------------------------------------------------------------------------------------------
# folding


class Mass:
    """Expected switch-ons between two instants under hourly rates (local hours at `offset`)."""

    def __init__(self, rates: Sequence[float], offset: int) -> None:
        self.rates, self.off = list(rates), offset
        self.cum = [0.0]
        for r in self.rates:
            self.cum.append(self.cum[-1] + r)

    def at(self, t: float) -> float:
        days, h = divmod((t + self.off) / HOUR_MS, 24.0)
        i = int(h)
        return days * self.cum[24] + self.cum[i] + (h - i) * self.rates[i]

    def until(self, t0: int, target: float, limit_ms: float) -> int:
        """The instant after t0 at which the expected count since t0 reaches `target` (at most
        t0 + limit_ms), rounded up to the millisecond."""
        base = self.at(t0) + target
        t = t0
        while self.at(t + HOUR_MS) < base and t - t0 < limit_ms:
            t += HOUR_MS
        lo, hi = t, t + HOUR_MS
        for _ in range(24):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.at(mid) < base else (lo, mid)
        return math.ceil(min(hi, t0 + limit_ms))

    def after(self, t0: float, span_ms: float) -> float:
        """The instant span_ms after t0 (of time the server listened: see Listened)."""
        return t0 + span_ms


class Listened(Mass):
    """Expected switch-ons in the hours the server listened: its own outages (listening.py)
    left out. A switch-on during one reaches the server only with her next visit, so no news by
    t means no switch-on before the outage and none after it: the spell's chance is that of the
    hours around it, and its limits (learned_min_h, the cap) count listened hours too."""

    def __init__(self, base: Mass, spans: Sequence[tuple[float, float]]) -> None:
        super().__init__(base.rates, base.off)
        self.spans = tuple(sorted(spans))

    def at(self, t: float) -> float:
        x = super().at(t)
        for s, e in self.spans:
            if s < t:
                x -= super().at(min(t, e)) - super().at(s)
        return x

    def until(self, t0: int, target: float, limit_ms: float) -> int:
        return super().until(t0, target, self.after(t0, limit_ms) - t0)

    def after(self, t0: float, span_ms: float) -> float:
        t, left = t0, span_ms
        for s, e in self.spans:
            if e <= t:
                continue
            if s > t:
                if s - t >= left:
                    break
                left -= s - t
            t = max(t, e)
        return t + left


def _hour(t: float, offset: int) -> int:
    return int(((t + offset) % DAY_MS) // HOUR_MS)


def _half_hour(t: float, offset: int) -> int:
    return int(((t + offset) % DAY_MS) // HALF_HOUR_MS)


def spell_masses(m: HouseholdModel, mass: Mass, max_h: float = math.inf) -> list[list[float]]:
    """The household's quiet spells measured in expected switch-ons under `mass` (the current
    rhythm), by the local hour they began: 24 histograms over MASS_EDGES. max_h: only spells
    shorter than this many hours (the middle of their bin)."""
    key = (m.day, m.n_spells, tuple(mass.rates), max_h)
    hit = _MASS_CACHE.get((id(m), max_h))
    if hit is not None and hit[0] == key and hit[2]() is m:  # (a freed model's id is reused)
        return hit[1]
    out = [_bins(MASS_EDGES) for _ in range(24)]
    ref = -mass.off  # local midnight of the epoch's day
    for s, hist in enumerate(m.spells):
        a = ref + (s + 0.5) * HALF_HOUR_MS
        base = mass.at(a)
        for i, w in enumerate(hist):
            if w > 0 and _mid(SPELL_EDGES_H, i) < max_h:
                e = mass.at(a + _mid(SPELL_EDGES_H, i) * HOUR_MS) - base
                out[s // 2][_bin(MASS_EDGES, e)] += w
    if len(_MASS_CACHE) > 1024:
        _MASS_CACHE.clear()
    _MASS_CACHE[(id(m), max_h)] = (key, out, weakref.ref(m))
    return out


# per model object (id and a weak reference: the entry is its model's while that lives)
_MASS_CACHE: dict[tuple[int, float], tuple[tuple, list[list[float]],
                                           weakref.ref[HouseholdModel]]] = {}


def _watched(start: int, end: int, since: int | None,
             paused: Iterable[tuple[float, float]]) -> float:
    """Milliseconds of [start, end) after `since` and outside the paused spans."""
    a = max(start, since) if since is not None else start
    if a >= end:
        return 0.0
    total = end - a
    for ps, pe in paused:
        total -= max(0.0, min(end, pe) - max(a, ps))
    return max(0.0, total)


def _length(iv: Interval) -> float:
    """How long the visit was lit: exact with a dying gasp, else its known lit time (the end
    lies within 10 % more: ALIVE schedule), a lower bound while it may still be on."""
    if iv.ended_by == "alive":
        return iv.on_ms / 0.95
    return iv.on_ms


def held_by_server(deaf: Sequence[tuple[float, float]], iv: Interval) -> bool:
    """Whether the visit's report may have been held by the server's own outage: it may have
    begun during a deaf span, or within LATE_MS before one (its report could be due in it). A
    visit reported only after an outage is bounded by its neighbours: where those bounds reach
    into the span, the server cannot tell, and does not blame the bulb."""
    lo = iv.start_earliest if iv.start_earliest is not None else -math.inf
    return any(lo < e and iv.start_latest >= s - LATE_MS for s, e in deaf)


def _delay(iv: Interval, gap: int) -> int:
    """How late the visit reached the server beyond what its reporting explains (an LTE-M bulb
    holds power-ons up to its report gap by design)."""
    return max(0, iv.reported_at - iv.start_mid - gap)


def _fold_bulb(bm: BulbModel, day: Day, visits: list[Interval], gap: int) -> None:
    """One day of one bulb (its visits that began that day)."""
    for lst in (bm.on, bm.seen, bm.sent, bm.late):
        for h in range(24):
            lst[h] *= DECAY
    for hists in (bm.dur, bm.held):
        for hist in hists:
            for i in range(len(hist)):
                hist[i] *= DECAY
    bm.days *= DECAY
    bm.full_days *= DECAY
    bm.unused *= DECAY
    bm.attempts *= DECAY
    bm.fails *= DECAY
    total = 0.0
    for h in range(24):
        a = day.start + h * HOUR_MS
        w = _watched(a, a + HOUR_MS, bm.installed, day.paused) / HOUR_MS
        bm.seen[(h + _hour(day.start, day.offset)) % 24] += w
        total += w
    bm.days += total / 24
    if total >= 23.5:
        bm.full_days += 1
        if not visits:
            bm.unused += 1
    longest_gap = max_delay = seen_wait = 0.0
    attempts = fails = 0
    for iv in visits:
        if bm.batch is None or iv.reported_at > bm.batch[0]:  # a new report
            if bm.batch is not None:
                seen_wait = max(seen_wait, (iv.reported_at - bm.batch[1]) / HOUR_MS)
            bm.batch = [iv.reported_at, iv.start_mid]
        else:
            bm.batch[1] = max(bm.batch[1], iv.start_mid)
        h = _hour(iv.start_mid, day.offset)
        bm.on[h] += 1
        if (iv.device, iv.boot) not in day.lit:  # a visit still lit is the one being judged
            bm.dur[h][_bin(DUR_EDGES, _length(iv))] += 1
        excused = held_by_server(day.deaf, iv)  # the server was down, not its radio
        dl = 0 if excused else _delay(iv, gap)
        bm.sent[h] += 1
        if dl > LATE_MS:
            bm.late[h] += 1
            bm.held[h][_bin(DELAY_EDGES_H, dl / HOUR_MS)] += 1
        max_delay = max(max_delay, dl / HOUR_MS)
        if not excused:
            attempts += iv.links
            fails += iv.links_failed
        t = iv.start_mid
        if bm.last_on is not None and not any(bm.last_on < pe and ps < t
                                               for ps, pe in day.paused):
            longest_gap = max(longest_gap, (t - bm.last_on) / HOUR_MS)
        bm.last_on = t
    bm.attempts += attempts
    bm.fails += fails
    bm.n_days += 1
    bm.recent.append([day.day, len(visits), total / 24, longest_gap, max_delay, attempts, fails,
                      seen_wait])
    del bm.recent[:-RECENT_DAYS]


def fold(model: HouseholdModel, day: Day, gaps: Mapping[str, int] | None = None,
         copy: bool = True) -> HouseholdModel:
    """The model with one more local day (the next one after model.day). gaps: each LTE-M
    bulb's report gap (its visits may wait that long by design). Returns a new model unless
    copy is False."""
    m = model.copy() if copy else model
    for dev, at in day.installed.items():
        if dev not in m.bulbs and at is not None and at < day.end:
            m.bulbs[dev] = BulbModel(dev, installed=at)
    for iv in day.visits:
        if iv.device not in m.bulbs:
            m.bulbs[iv.device] = BulbModel(iv.device, installed=day.installed.get(iv.device)
                                           or iv.start_earliest or iv.start_latest)
    for dev, bm in m.bulbs.items():
        mine = [iv for iv in day.visits if iv.device == dev]
        _fold_bulb(bm, day, mine, (gaps or {}).get(dev, 0))
    for hist in m.spells:
        for i in range(len(hist)):
            hist[i] *= DECAY
    m.days = m.days * DECAY + _watched(day.start, day.end, None, day.paused) / DAY_MS
    events = sorted([(ps, 0, pe) for ps, pe in day.paused] + [(iv.start_mid, 1, 0)
                                                                for iv in day.visits])
    long: list[list[float]] = []
    for t, kind, _ in events:
        if kind == 0:  # a pause breaks the spell: the next one starts at the next switch-on
            m.last_on = None
            continue
        if m.last_on is not None and t > m.last_on:
            hours = (t - m.last_on) / HOUR_MS
            m.spells[_half_hour(m.last_on, day.offset)][_bin(SPELL_EDGES_H, hours)] += 1
            m.n_spells += 1
            if hours >= LONG_SPELL_H:
                long.append([m.last_on, hours])
        m.last_on = t
    m.spell_recent.append([day.day, long])
    del m.spell_recent[:-RECENT_DAYS]
    m.day = day.day
    m.n_days += 1
    return m


# ---------------------------------------------------------------------------------------------
# learning from a timeline: folding its settled days


def local_days(tz: str, first: int, now: int) -> Iterator[tuple[int, int, int, int]]:
    """(date ordinal, start, end, UTC offset) of each local day from the one holding `first`
    whose end is SETTLE_MS or more before `now`."""
    z = ZoneInfo(tz)
    d = datetime.fromtimestamp(to_s(first), z).date()
    while True:
        s = datetime(d.year, d.month, d.day, tzinfo=z)
        n = d + timedelta(days=1)
        e = to_ms(datetime(n.year, n.month, n.day, tzinfo=z).timestamp())
        if e + SETTLE_MS > now:
            return
        off = s.utcoffset()
        yield d.toordinal(), to_ms(s.timestamp()), e, to_ms(off.total_seconds()) if off else 0
        d = n


def settled_through(tz: str, now: int) -> int:
    """The last local day (ordinal) a model learned at `now` has folded."""
    z = ZoneInfo(tz)
    return (datetime.fromtimestamp(to_s(now - SETTLE_MS), z).date()
            - timedelta(days=1)).toordinal()


def next_fold(tz: str, now: int) -> int:
    """When the next local day settles (a learned model changes then)."""
    z = ZoneInfo(tz)
    d = datetime.fromtimestamp(to_s(now - SETTLE_MS), z).date() + timedelta(days=1)
    return day_start(d.toordinal(), tz) + SETTLE_MS


def day_start(ordinal: int, tz: str) -> int:
    """The instant the local day `ordinal` (a date ordinal) begins in tz."""
    return to_ms(datetime.fromordinal(ordinal).replace(tzinfo=ZoneInfo(tz)).timestamp())


def _start(tl: Timeline) -> int | None:
    ts = [iv.start_latest for iv in tl.intervals[:1]]
    ts += [d.registered_at for d in tl.devices.values() if d.registered_at is not None]
    return min(ts) if ts else None


def days_of(tl: Timeline, tz: str, pauses: Sequence[tuple[float, float]], now: int,
            after: int | None = None, deaf: Sequence[tuple[float, float]] = ()
            ) -> Iterator[Day]:
    """The settled local days of a timeline (those after day ordinal `after`), ready to fold.
    deaf: the server's own outages (listening.py): left out as pauses are, and what they held
    is not counted as late."""
    first = _start(tl)
    if first is None:
        return
    # a visit belongs to the day of the middle of its start bounds: a switch-on reported only
    # after an outage is bounded by the report, and counting it on that day would leave the
    # days of the outage looking unused (the placement check then calls a toilet "poor")
    mids = sorted((iv.start_mid, k) for k, iv in enumerate(tl.intervals))
    keys = [x for x, _ in mids]
    installed = {d: s.registered_at for d, s in tl.devices.items()}
    heard = {d: s.last_heard for d, s in tl.devices.items()}
    for ordinal, s, e, off in local_days(tz, first, now):
        if after is not None and ordinal <= after:
            continue
        lo, hi = bisect.bisect_left(keys, s), bisect.bisect_left(keys, e)
        vis = tuple(tl.intervals[k] for k in sorted(k for _, k in mids[lo:hi])
                    if tl.intervals[k].reported_at <= e + SETTLE_MS)
        paused = _merged([(max(ps, s), min(pe, e)) for ps, pe in [*pauses, *deaf]
                          if ps < e and pe > s])
        # a visit still open whose bulb is heard close to (or after) the fold: still lit
        lit = frozenset((iv.device, iv.boot) for iv in vis if iv.ended_by == "open"
                        and (heard.get(iv.device) or 0) >= e + SETTLE_MS - 2 * HOUR_MS)
        # every outage: a visit reported after one is bounded by its neighbours, and may be
        # folded on a later day than the outage's (held_by_server)
        yield Day(ordinal, s, e, off, vis, paused, installed, lit, tuple(deaf))


def _merged(spans: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The spans, sorted, overlapping ones joined (a pause during an outage is left out once)."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def learn(tl: Timeline, tz: str, pauses: Sequence[tuple[float, float]], now: int,
          model: HouseholdModel | None = None, deaf: Sequence[tuple[float, float]] = ()
          ) -> HouseholdModel:
    """The household's model at `now`: every settled day of the timeline folded into `model`
    (the days after model.day), or into an empty model. deaf: the server's own outages."""
    m = model.copy() if model is not None else HouseholdModel()
    gaps = {d: s.report_gap_ms for d, s in tl.devices.items()}
    for day in days_of(tl, tz, pauses, now, after=m.day, deaf=deaf):
        fold(m, day, gaps, copy=False)
    return m


_CACHE: OrderedDict[tuple, tuple[int, int, HouseholdModel]] = OrderedDict()


def _fingerprint(tl: Timeline, before: int) -> int:
    """The visits of the days before `before` (by the middle of their start, as days_of)."""
    return hash(tuple((iv.device, iv.boot, iv.start_latest, iv.reported_at, iv.on_ms)
                      for iv in tl.intervals if iv.start_mid < before))


def learn_cached(key: Any, tl: Timeline, tz: str, pauses: Sequence[tuple[float, float]],
                 now: int, deaf: Sequence[tuple[float, float]] = ()) -> HouseholdModel:
    """learn(), keeping the last model of each household in memory: when the history up to the
    kept model's last day is unchanged, only the new days are folded (what the server would do
    with a stored model). key: the household's identity in this process."""
    k = (key, tz, tuple(pauses), tuple(deaf), tuple(sorted((d, s.registered_at, s.report_gap_ms)
                                              for d, s in tl.devices.items())))
    hit = _CACHE.get(k)
    through = settled_through(tz, now)
    if hit is not None:
        day, fp, m = hit
        if day <= through:
            end = day_start(day + 1, tz)
            if _fingerprint(tl, end) == fp:
                if day == through:
                    _CACHE.move_to_end(k)
                    return m
                m = learn(tl, tz, pauses, now, m, deaf)
                _store(k, m, tl, tz)
                return m
    m = learn(tl, tz, pauses, now, deaf=deaf)
    _store(k, m, tl, tz)
    return m


def clear_cache() -> None:
    """Forget the kept models (measurements that must learn from scratch)."""
    _CACHE.clear()
    _MASS_CACHE.clear()


def _store(k: tuple, m: HouseholdModel, tl: Timeline, tz: str) -> None:
    if m.day is None:
        return
    end = day_start(m.day + 1, tz)
    _CACHE[k] = (m.day, _fingerprint(tl, end), m)
    _CACHE.move_to_end(k)
    while len(_CACHE) > 512:
        _CACHE.popitem(last=False)


# ---------------------------------------------------------------------------------------------
# reading the models


def quantile(hist: Sequence[float], edges: Sequence[float], q: float) -> float:
    """The q-quantile of a histogram, interpolated log-linearly within its bin."""
    total = sum(hist)
    want = q * total
    acc = 0.0
    for i, w in enumerate(hist):
        if w > 0 and acc + w >= want:
            lo = edges[i - 1] if i > 0 else edges[0] / (edges[1] / edges[0])
            hi = _upper(edges, i)
            f = (want - acc) / w
            return lo * (hi / lo) ** f
        acc += w
    return _upper(edges, len(hist) - 1)


def longest(hist: Sequence[float], edges: Sequence[float], weight: float = RECENT_WEIGHT) -> float:
    """The upper edge of the highest bin holding at least `weight` (0 when none does)."""
    for i in range(len(hist) - 1, -1, -1):
        if hist[i] >= weight:
            return _upper(edges, i)
    return 0.0


def tail(hist: Sequence[float], edges: Sequence[float], alpha: float, floor: float,
         log: bool = False, beta: float | None = None) -> tuple[float, float]:
    """(threshold, tail scale): the value exceeded with probability `alpha`, from an exponential
    tail fitted above the histogram's 80th percentile (peaks over threshold; in log units when
    `log`, i.e. a power-law tail). `beta` imposes the scale; `floor` is its smallest value.
    With nothing seen above the 80th percentile the tail is unknown: math.inf."""
    total = sum(hist)
    if total <= 0:
        return math.inf, floor
    u = quantile(hist, edges, 1 - TAIL_Q)
    f = math.log if log else (lambda x: x)
    above = [(f(_mid(edges, i)) - f(u), w) for i, w in enumerate(hist)
             if w > 0 and _mid(edges, i) > u]
    wa = sum(w for _, w in above)
    if beta is None:
        if wa <= 0:
            return math.inf, floor
        beta = max(floor, sum(x * w for x, w in above) / wa)
    q = TAIL_Q
    x = f(u) + beta * math.log(q / alpha) if q > alpha else f(u)
    return (math.exp(x) if log else x), beta


# ---------------------------------------------------------------------------------------------
# the placement check


@dataclass(frozen=True)
class Placement:
    """Whether a bulb's room gives enough signal to watch over, and what to do."""

    device: str
    verdict: str  # learning | good | limited | poor
    days: int  # days looked at
    used_days: int  # of which with a switch-on
    per_day: float  # median switch-ons on a day it was used
    longest_gap_h: float
    fixed_alerts_per_100_days: float  # what the fixed 24 h rule would raise here (estimate)
    held_h: float = 0.0  # the longest its reports reached the server late in those days (h)
    held_days: int = 0  # days on which a report came RADIO_NOTE_H or more late

    @property
    def words(self) -> str:
        room, radio = self._room_words(), self.radio_words()
        return room.rstrip(".") + ". " + radio if radio else room

    def radio_words(self) -> str:
        """What its radio means for the alerts, once reports have come hours late (a room
        fits or not; a router off for a day hides her as a fall would)."""
        if self.held_h < RADIO_NOTE_H:
            return ""
        return (f"Its reports reached the server up to {_hours(self.held_h)} late, on "
                f"{self.held_days} of {self.days} days: a silence that long may be the radio, "
                "not her, and such alerts say so, but one that outlasts a day still alerts the "
                "family. Check the router and the signal where the bulb is (keep the router "
                "on day and night), or fit an LTE-M bulb.")

    def _room_words(self) -> str:
        if self.verdict == "learning":
            return (f"bulb {self.device}: still learning its room ({self.days} of "
                    f"{PLACEMENT_DAYS} days)")
        head = (f"bulb {self.device}: used on {self.used_days} of {self.days} days, about "
                f"{self.per_day:.0f} switch-on{'s' if round(self.per_day) != 1 else ''} a day; "
                f"longest time without one {_hours(self.longest_gap_h)}")
        if self.verdict == "poor":
            return (head + ". This room is not used every day, so a quiet day cannot tell that "
                    "something is wrong: move the bulb to the toilet or the room used every day "
                    "(or add one there). Here the learned rule waits as long as this room's own "
                    "quiet days; the fixed 24 h rule would alert about "
                    f"{self.fixed_alerts_per_100_days:.0f} times in 100 days.")
        if self.verdict == "limited":
            why = ("Used only once or twice a day" if self.per_day < 2.5 else
                   "Days with a day-long gap come back here")
            return (head + f". {why}: an alert can come only after the usual switch-on is "
                    "missed, often a day later. For faster help put a bulb in the toilet; in "
                    "this room keep the learned rule (the fixed 24 h rule would alert whenever "
                    "the usual time comes late).")
        return head + ": fits."


def _hours(h: float) -> str:
    return f"{h / 24:.1f} days" if h >= 36 else f"{h:.0f} h"


def placement(bm: BulbModel, open_gap_h: float = 0.0) -> Placement:
    """The placement check of one bulb from its last PLACEMENT_WINDOW folded days (and the gap
    still open now, open_gap_h)."""
    days = [r for r in bm.recent[-PLACEMENT_WINDOW:] if r[2] >= 0.5]
    used = [r for r in days if r[1] > 0]
    gap = max([r[3] for r in days] + [open_gap_h, 0.0])
    per_day = statistics.median([r[1] for r in used]) if used else 0.0
    n = len(days)
    # the fixed rule alerts on about every day without a switch-on
    fixed = 100.0 * (n - len(used)) / n if n else 0.0
    # one gap of a day and a half is an absence (a night or two away), not the room: it must
    # come back to tell
    long_gaps = sum(1 for g in [r[3] for r in days] + [open_gap_h] if g >= 36)
    # two unused days, or two long gaps, make any window of PLACEMENT_WINDOW days "poor" (12 of
    # 14 is under 90 %): said as soon as they are seen, from the third day, not on day 8
    early = n >= 3 and (n - len(used) >= 2 or long_gaps >= 2)
    if (bm.n_days < PLACEMENT_DAYS or n < PLACEMENT_DAYS // 2) and not early:
        verdict = "learning"
    elif len(used) < 0.9 * n or long_gaps >= 2:
        verdict = "poor"
    elif per_day < 2.5 or sum(1 for r in days if r[3] >= 24) >= 2:
        verdict = "limited"
    else:
        verdict = "good"
    held = [r[4] for r in days]
    return Placement(bm.device, verdict, n, len(used), per_day, gap, fixed, max(held + [0.0]),
                     sum(1 for x in held if x >= RADIO_NOTE_H))


RANK = {"good": 0, "limited": 1, "learning": 2, "poor": 3}
