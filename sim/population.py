# SPDX-License-Identifier: MIT
"""Households unlike the calibrated toilet of sim/household.py, and the radios they live with:
the population the alert rules are measured on (bench/figures_population.py).

    household(kind, delivery, seed, days)   one seeded household: its bulb's visits, its
                                            unregistered nights away, its registered absences
    World(h, visits)                        what the server knows of that bulb at any instant:
                                            the timeline as the rules would see it then

Kinds (one bulb each; every parameter drawn per household within its kind, so no rule can be
tuned to one shape): living_room (lit from dusk to bedtime), kitchen (meals), toilet (the
calibrated rhythm), rare_room (0.3 to 2 switch-ons a day, some days none), seasonal (lit at dusk
while dusk moves 2.5 h later over the months), day_service (a toilet; away two weekdays
09:00-17:00, registered as a recurring absence), irregular (a sleeper with no fixed hours).
Every household also has rare unregistered nights away (about one in 40 days), a visit now
and then two to four times longer than usual (one in a hundred), and about once in 150 days
the evening's light left on until the next morning (an assumption: no data give this rate).

Delivery (per household): good_wifi, router_nightly (switched off every night), router_20h_10d
(off 20 h every ten days), weak_wifi (30 % of attempts fail), lte (reports a power-on only when
the last report is 6 h old). A bulb tries at power-on, retries with back-off while lit, and
reports every heartbeat (900 s) while lit; a visit reaches the server with the first attempt
that succeeds, in that visit or a later one (the journal keeps it), and a visit that never
connected while lit is only bounded in time, as the server's timeline bounds it. The lamp's
lit time is known from the ALIVE marks delivered so far (10 s steps to 2 min, then +10 %).

The held-out population (`household(..., held_out=True)`; KINDS_HELD_OUT): other seeds and
wider ranges than the main one (Ranges: other meal times, longer nights, more outings, day
service one to three days a week at other hours, nights away one in 25 to 60 days, routers off
other hours and for 12 to 30 h every 6 to 15 days, 20 to 45 % failed attempts) and `two_rooms`,
a toilet and a kitchen bulb in one home. The rules are not tuned on it: it is run at the end.

Record level, not MicroPython: fast enough to replay months of many households. It must never
read the clock: every instant comes from the seed and the caller.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mimamori.clock import DAY_MS, HOUR_MS, SECOND_MS
from mimamori.timeline import HEARTBEAT_MS, LTE_REPORT_GAP_MS, DeviceSeen, Interval, Timeline
from sim.household import Household, Profile, Visit, ms

KINDS = ("living_room", "kitchen", "toilet", "rare_room", "seasonal", "day_service", "irregular")
KINDS_HELD_OUT = KINDS + ("two_rooms",)
DELIVERIES = ("good_wifi", "router_nightly", "router_20h_10d", "weak_wifi", "lte")
DEVICE = "bulb"
KITCHEN = "bulb-kitchen"  # the second bulb of a two_rooms home


@dataclass(frozen=True)
class Ranges:
    """The ranges a household's parameters are drawn from (main population: the defaults)."""

    bed: tuple[float, float] = (20.5, 22.8)  # living room: bedtime
    wake: tuple[float, float] = (5.5, 7.5)  # living room: getting up
    late_on: tuple[float, float] = (0.0, 0.6)
    breakfast: tuple[float, float] = (5.5, 8.0)  # kitchen
    dinner: tuple[float, float] = (16.5, 18.5)
    dinner_sd: tuple[float, float] = (0.6, 0.6)
    meals_p: tuple[float, float, float] | None = None  # breakfast, lunch, dinner; None: 0.9 .5 .95
    snacks: tuple[float, float] = (0.5, 2.5)
    rare: tuple[float, float] = (0.3, 2.0)
    dusk_shift_h: tuple[float, float] = (2.5, 2.5)
    shift: tuple[float, float] = (0.0, 0.0)  # toilet: extra shift of the day
    night: tuple[float, float] = (0.0, 0.0)  # toilet: extra hours of night (earlier to bed)
    outings: tuple[float, float] = (1.0, 1.0)  # toilet: outing length factor
    service_days: tuple[int, int] = (2, 2)
    service_from: tuple[float, float] = (9.0, 9.0)
    service_h: tuple[float, float] = (8.0, 8.0)
    away_every_d: tuple[float, float] = (40.0, 40.0)  # unregistered nights away: mean spacing
    forgot_every_d: tuple[float, float] = (150.0, 150.0)
    router_night: tuple[float, float, float, float] = (22.0, 24.0, 5.5, 7.0)  # off from, to
    outage_h: tuple[float, float] = (20.0, 20.0)
    outage_every_d: tuple[float, float] = (10.0, 10.0)
    weak_fail: tuple[float, float] = (0.3, 0.3)


MAIN = Ranges()
WIDE = Ranges(bed=(19.5, 23.5), wake=(4.5, 8.5), late_on=(0.0, 1.2), breakfast=(5.0, 9.5),
              dinner=(16.0, 20.0), dinner_sd=(0.3, 1.0), meals_p=(0.8, 0.3, 0.9),
              snacks=(0.2, 3.5), rare=(0.2, 2.5), dusk_shift_h=(1.5, 3.5), shift=(-1.5, 1.5),
              night=(0.0, 2.0), outings=(0.8, 2.0), service_days=(1, 3),
              service_from=(8.0, 10.0), service_h=(6.0, 9.0), away_every_d=(25.0, 60.0),
              forgot_every_d=(80.0, 250.0), router_night=(21.0, 24.0, 5.0, 8.0),
              outage_h=(12.0, 30.0), outage_every_d=(6.0, 15.0), weak_fail=(0.2, 0.45))


def _draw(rng: random.Random, r: tuple[float, float]) -> float:
    """A value in the range; a range of one value costs no draw (the main population's
    draws stay as they were)."""
    return r[0] if r[0] == r[1] else rng.uniform(r[0], r[1])
H = HOUR_MS
DAY = DAY_MS


@dataclass
class PopHousehold:
    kind: str
    delivery: str
    seed: int
    start: datetime  # local midnight of the first day (naive local time, kept as UTC)
    days: int
    visits: list[Visit]
    stays: list[tuple[int, int]]  # unregistered nights away (ms, as the server counts)
    absences: list[dict] = field(default_factory=list)  # registered (household settings)
    outage: tuple = ()  # the delivery condition's parameters
    forgotten: list[tuple[int, int]] = field(default_factory=list)  # lights left on overnight
    rooms: dict[str, list[Visit]] = field(default_factory=dict)  # more bulbs of the home
    fail_p: float = 0.0  # weak Wi-Fi: share of attempts that fail
    held_out: bool = False
    # the server's own outages (ms): every attempt fails then, whatever the household's radio
    # (bench/figures_outage.py)
    server_down: tuple[tuple[int, int], ...] = ()

    @property
    def bulbs(self) -> dict[str, list[Visit]]:
        """Every bulb's visits, the main bulb first."""
        return {DEVICE: self.visits} | self.rooms

    @property
    def t0(self) -> int:
        return ms(self.start)

    @property
    def t1(self) -> int:
        return ms(self.start + timedelta(days=self.days))


def _sunset_h(d: datetime, seasonal: bool, day: int, days: int, moves: float = 2.5) -> float:
    """Local hour of dusk: for the seasonal kind 16:40 moving `moves` h (2.5) later over the
    run; else Tokyo-like, 16:30 (winter) to 19:00 (summer) by day of the year."""
    if seasonal:
        return 16.67 + moves * day / max(1, days - 1)
    doy = d.timetuple().tm_yday
    return 17.75 - 1.25 * math.cos(2 * math.pi * (doy + 10) / 365.25)


def _long(rng: random.Random, minutes: float) -> float:
    """Now and then a visit much longer than usual (a long bath, a long call)."""
    return minutes * rng.uniform(2, 4) if rng.random() < 0.01 else minutes


def _visit(base: datetime, h: float, minutes: float) -> Visit:
    on = base + timedelta(hours=h)
    return Visit(on, on + timedelta(minutes=max(0.2, minutes)))


def _evenings(rng: random.Random, start: datetime, days: int, seasonal: bool,
              r: Ranges = MAIN) -> list[Visit]:
    """A room lit from dusk to bedtime (living room, seasonal), dark mornings too."""
    bed_mean = rng.uniform(*r.bed)
    wake_mean = rng.uniform(*r.wake)
    late_on = rng.uniform(*r.late_on)  # some switch on well after dusk
    moves = _draw(rng, r.dusk_shift_h)
    out: list[Visit] = []
    for d in range(days):
        base = start + timedelta(days=d)
        dr = random.Random(rng.random())
        dusk = _sunset_h(base, seasonal, d, days, moves)
        wake = wake_mean + dr.gauss(0, 0.4)
        sunrise = 23.3 - dusk  # dawn mirrors dusk around noon: mornings dark in winter
        if wake < sunrise - 0.2 and dr.random() < 0.6:
            out.append(_visit(base, wake, (sunrise - wake) * 60 + dr.uniform(0, 30)))
        if dr.random() < 0.03:  # out for the evening: lit briefly on coming back, or not at all
            if dr.random() < 0.5:
                out.append(_visit(base, bed_mean + dr.uniform(0, 1), dr.uniform(5, 30)))
            continue
        on = dusk + late_on + dr.uniform(-0.25, 0.5)
        off = max(on + 0.3, bed_mean + dr.gauss(0, 0.5))
        out.append(_visit(base, on, _long(dr, (off - on) * 60)))
        if dr.random() < 0.15:  # up in the night, a light on for a while
            out.append(_visit(base, off + dr.uniform(2, 5), dr.uniform(3, 20)))
    return out


def _kitchen(rng: random.Random, start: datetime, days: int, r: Ranges = MAIN,
             wake: float | None = None) -> list[Visit]:
    w = rng.uniform(*r.breakfast)
    wake = w if wake is None else wake
    dinner = rng.uniform(*r.dinner)
    snacks = rng.uniform(*r.snacks)
    sd = _draw(rng, r.dinner_sd)
    p_b, p_l, p_d = (0.9, 0.5, 0.95) if r.meals_p is None else (
        rng.uniform(r.meals_p[0], 0.98), rng.uniform(r.meals_p[1], 0.8),
        rng.uniform(r.meals_p[2], 0.99))
    out: list[Visit] = []
    for d in range(days):
        base = start + timedelta(days=d)
        dr = random.Random(rng.random())
        if dr.random() < p_b:
            out.append(_visit(base, wake + dr.uniform(0, 0.6), _long(dr, dr.uniform(10, 40))))
        if dr.random() < p_l:
            out.append(_visit(base, 12 + dr.gauss(0, 0.4), dr.uniform(10, 30)))
        if dr.random() < p_d:
            out.append(_visit(base, dinner + dr.gauss(0, sd), _long(dr, dr.uniform(40, 120))))
        for _ in range(_poisson(dr, snacks)):
            out.append(_visit(base, dr.uniform(wake + 1.5, 21), dr.uniform(3, 15)))
    return out


def _rare(rng: random.Random, start: datetime, days: int, r: Ranges = MAIN) -> list[Visit]:
    rate = rng.uniform(*r.rare)
    out: list[Visit] = []
    for d in range(days):
        base = start + timedelta(days=d)
        dr = random.Random(rng.random())
        for _ in range(_poisson(dr, rate)):
            out.append(_visit(base, dr.uniform(7.5, 21.5),
                              _long(dr, 10 * math.exp(dr.gauss(0, 1.0)))))
    return out


def _toilet(rng: random.Random, seed: int, start: datetime, days: int,
            irregular: bool = False, r: Ranges = MAIN) -> tuple[list[Visit], Profile]:
    prof = Profile().sample(rng)
    if r is not MAIN:  # another day, longer nights, longer outings
        shift, night = rng.uniform(*r.shift), rng.uniform(*r.night)
        prof = replace(prof, wake_h=prof.wake_h + shift, bed_h=prof.bed_h + shift - night,
                       outing_median_h=prof.outing_median_h * rng.uniform(*r.outings))
    if irregular:
        prof = Profile(wake_h=prof.wake_h, bed_h=prof.bed_h, wake_sd_h=rng.uniform(1.5, 3.0),
                       bed_sd_h=rng.uniform(1.0, 2.5), late_morning_p=rng.uniform(0.1, 0.25),
                       night_visits=rng.uniform(0.5, 2.5), day_rate_h=prof.day_rate_h,
                       outings_per_day=prof.outings_per_day * rng.uniform(0.8, 1.5),
                       outing_median_h=prof.outing_median_h * rng.uniform(1.0, 1.6),
                       weekend_rate=prof.weekend_rate)
    out = Household(seed, prof).events(start, days)
    dr = random.Random(seed * 7 + 1)
    return [Visit(v.on, v.on + (v.off - v.on) * (dr.uniform(2, 4) if dr.random() < 0.01 else 1))
            for v in out], prof


def _poisson(rng: random.Random, lam: float) -> int:
    n, t = 0, rng.expovariate(1.0) if lam > 0 else math.inf
    while t < lam:
        n += 1
        t += rng.expovariate(1.0)
    return n


def household(kind: str, delivery: str, seed: int, days: int | None = None,
              held_out: bool = False) -> PopHousehold:
    """One seeded household of this kind with this delivery, 60-120 days. held_out: from the
    held-out population (other seeds, Ranges WIDE, and the kind two_rooms)."""
    r = WIDE if held_out else MAIN
    rng = random.Random(("held-out/" if held_out else "") + f"{kind}/{delivery}/{seed}")
    days = days or rng.randrange(60, 121)
    start = datetime(2026, 1, 1) + timedelta(days=rng.randrange(0, 300))
    if kind == "seasonal":
        start = datetime(2025, 12, 22) + timedelta(days=rng.randrange(0, 20))
    s = rng.randrange(1_000_000)
    rooms: dict[str, list[Visit]] = {}
    if kind in ("living_room", "seasonal"):
        visits = _evenings(rng, start, days, kind == "seasonal", r)
    elif kind == "kitchen":
        visits = _kitchen(rng, start, days, r)
    elif kind == "rare_room":
        visits = _rare(rng, start, days, r)
    else:
        visits, prof = _toilet(rng, s, start, days, irregular=kind == "irregular", r=r)
        if kind == "two_rooms":  # her kitchen too: breakfast when she gets up
            rooms[KITCHEN] = _kitchen(rng, start, days, r, wake=(prof.wake_h % 24) + 0.3)
    absences: list[dict] = []
    away: list[tuple[datetime, datetime]] = []  # when she is out, registered or not
    if kind == "day_service":
        n = r.service_days[0] if r.service_days[0] == r.service_days[1] else rng.randint(
            *r.service_days)
        wd = sorted(rng.sample(range(5), n))
        names = ("mon", "tue", "wed", "thu", "fri")
        a = round(_draw(rng, r.service_from) * 4) / 4
        b = a + round(_draw(rng, r.service_h) * 4) / 4
        absences = [{"days": [names[i] for i in wd], "from": _hhmm(a), "to": _hhmm(b),
                     "reason": "day service"}]
        first = datetime(start.year, start.month, start.day)
        for k in range(days):  # the bus comes 15 min early and brings her back by 5 past
            d = first + timedelta(days=k)
            if d.weekday() in wd:
                away.append((d + timedelta(hours=a - 0.25), d + timedelta(hours=b + 1 / 12)))
    stays = []
    every = _draw(rng, r.away_every_d)
    d = rng.uniform(5, every)
    while d < days - 2:  # unregistered nights away, about one in forty days
        base = start + timedelta(days=int(d))
        a_ = base + timedelta(hours=rng.uniform(15, 19))
        b_ = base + timedelta(days=1, hours=rng.uniform(10, 14))
        stays.append((ms(a_), ms(b_)))
        away.append((a_, b_))
        d += rng.expovariate(1 / every) + 2
    visits = _home(visits, away)
    rooms = {dev: _home(vs, away) for dev, vs in rooms.items()}
    forgot = []  # about once in 150 days the light is left on until the next morning
    every = _draw(rng, r.forgot_every_d)
    d = rng.expovariate(1 / every)
    while d < days - 1:
        late = [v for v in visits if v.on.date() == (start + timedelta(days=int(d))).date()
                and v.on.hour >= 17]
        if late:
            v = late[-1]
            end = datetime(v.on.year, v.on.month, v.on.day) + timedelta(
                days=1, hours=rng.uniform(6.5, 9))
            forgot.append((v, Visit(v.on, end)))
        d += rng.expovariate(1 / every) + 1
    for old, new in forgot:
        visits = [v for v in visits if not (old.on < v.on < new.off)]
        visits[visits.index(old)] = new
    outage: tuple = ()
    if delivery == "router_nightly":
        n0, n1, m0, m1 = r.router_night
        outage = (rng.uniform(n0, n1), rng.uniform(m0, m1))
    elif delivery == "router_20h_10d":
        period = _draw(rng, r.outage_every_d)
        outage = (rng.uniform(0, period), rng.random(), _draw(rng, r.outage_h), period)
    fail_p = _draw(rng, r.weak_fail) if delivery == "weak_wifi" else 0.0
    left_on = [(ms(new.on), ms(new.off)) for _, new in forgot]
    return PopHousehold(kind, delivery, seed, start, days, _one_lamp(visits), stays, absences,
                        outage, left_on, {dev: _one_lamp(vs) for dev, vs in rooms.items()},
                        fail_p, held_out)


def _home(visits: list[Visit], away: list[tuple[datetime, datetime]]) -> list[Visit]:
    """Her visits while she is at home, in time order."""
    return sorted((v for v in visits if not any(a <= v.on < b for a, b in away)),
                  key=lambda v: v.on)


def _one_lamp(visits: list[Visit]) -> list[Visit]:
    """One lamp: a visit cannot start before the previous one ended."""
    clean: list[Visit] = []
    for v in visits:
        if clean and v.on <= clean[-1].off:
            continue
        clean.append(v)
    return clean


def _hhmm(h: float) -> str:
    return f"{int(h):02d}:{round(h % 1 * 60):02d}"


# ---------------------------------------------------------------------------------------------
# what the server knows


def _mark(u: int) -> int:
    """The last ALIVE mark (uptime ms) written by uptime u: 10 s steps to 120 s, then +10 %."""
    step, first = 10 * SECOND_MS, 120 * SECOND_MS
    if u < step:
        return 50
    if u <= first:
        return u // step * step
    return round(first * 1.1 ** math.floor(math.log(u / first) / math.log(1.1)))


class World:
    """One household's bulbs and radio: when each visit reached the server, and the timeline
    the server has at any instant."""

    def __init__(self, h: PopHousehold, visits: list[Visit] | Mapping[str, list[Visit]] |
                 None = None, lit_until: int | None = None, lit: str = DEVICE) -> None:
        """visits: the main bulb's (a list) or each bulb's (a mapping); default: the
        household's. lit_until: the `lit` bulb's last visit stays lit until then."""
        if visits is None:
            visits = h.bulbs
        elif not isinstance(visits, Mapping):
            visits = {DEVICE: visits} | {dev: vs for dev, vs in h.rooms.items()}
        self.h = h
        self.bulbs = {dev: _Bulb(h, dev, vs, lit_until if dev == lit else None)
                      for dev, vs in visits.items()}
        self.successes = sorted(t for b in self.bulbs.values() for t in b.successes)

    def timeline(self, t: int) -> Timeline:
        """What the server knows at t (ms, as every instant here)."""
        if len(self.bulbs) == 1:
            return next(iter(self.bulbs.values())).timeline(t)
        parts = [b.timeline(t) for b in self.bulbs.values()]
        ivs = sorted((iv for p in parts for iv in p.intervals), key=lambda iv: iv.start_latest)
        return Timeline(tuple(ivs), {d: s for p in parts for d, s in p.devices.items()})

    def arrivals(self, t0: int, t1: int) -> list[int]:
        """The instants reports reached the server in [t0, t1) (the server evaluates then)."""
        return self.successes[bisect.bisect_left(self.successes, t0):
                              bisect.bisect_left(self.successes, t1)]


class _Bulb:
    """One bulb and its radio."""

    def __init__(self, h: PopHousehold, device: str, vs: list[Visit],
                 lit_until: int | None = None) -> None:
        self.h, self.device = h, device
        self.on = [ms(v.on) for v in vs]
        self.off = [ms(v.off) for v in vs]
        if lit_until is not None and self.off:
            self.off[-1] = lit_until  # the last visit's lamp stays lit (a fall, light left on)
        self.lte = h.delivery == "lte"
        salt = "" if device == DEVICE else f"/{device}"
        self.rng = random.Random(f"radio/{h.kind}/{h.delivery}/{h.seed}{salt}"
                                 + ("/held-out" if h.held_out else ""))
        self.successes: list[int] = []  # every successful report, in time order
        self.links: list[tuple[int, int]] = []
        self._attempts()
        self.reported = []
        for on in self.on:
            k = bisect.bisect_left(self.successes, on)
            self.reported.append(self.successes[k] if k < len(self.successes) else math.inf)
        self.connected = [self._during(i) is not None for i in range(len(self.on))]
        self._bounds()
        self.final_at = [self.reported[i + 1] if i + 1 < len(self.on) else math.inf
                         for i in range(len(self.on))]
        self.finals = [self._interval(i, None) for i in range(len(self.on))]

    # -- the radio
    def _down(self, t: int) -> bool:
        h, d = self.h, self.h.delivery
        if d == "router_nightly":
            a, b = h.outage
            loc = ((t - h.t0) % DAY) / H
            day = int((t - h.t0) // DAY)
            jit = random.Random(f"{h.seed}/{day}").uniform(-0.25, 0.25)
            return loc >= a + jit or loc < b + jit
        if d == "router_20h_10d":
            phase, frac, hours, period = h.outage
            k = math.floor(((t - h.t0) / DAY - phase) / period)
            s = h.t0 + (phase + period * k) * DAY + frac * DAY
            return s <= t < s + hours * H
        return False

    def _ok(self, t: int) -> bool:
        p = {"weak_wifi": self.h.fail_p, "lte": 0.01}.get(self.h.delivery, 0.005)
        ok = not self._down(t) and self.rng.random() >= p
        # the server's outage last: the radio draws as it would without one
        return ok and not any(a <= t < b for a, b in self.h.server_down)

    def _attempts(self) -> None:
        last = -math.inf
        for on, off in zip(self.on, self.off):
            n = bad = 0
            t = on + (10 if self.lte else 3) * SECOND_MS
            due = not self.lte or on - last >= LTE_REPORT_GAP_MS
            if not due:
                t = on + HEARTBEAT_MS
            backoff = 30 * SECOND_MS
            while t <= off:
                n += 1
                if self._ok(t):
                    self.successes.append(t)
                    last = t
                    backoff = 30 * SECOND_MS
                    t += HEARTBEAT_MS
                else:
                    bad += 1
                    t += backoff
                    backoff = min(HEARTBEAT_MS, backoff * 2)
            self.links.append((n, bad))

    def _during(self, i: int) -> int | None:
        k = bisect.bisect_left(self.successes, self.on[i])
        if k < len(self.successes) and self.successes[k] <= self.off[i]:
            return self.successes[k]
        return None

    def _bounds(self) -> None:
        """Start bounds: exact for a visit that connected while lit; otherwise after the visit
        before it ended and before the next one began (what the server's timeline can say)."""
        n = len(self.on)
        self.lo: list[int | None] = list(self.on)
        self.hi = list(self.on)
        lit = [_mark(off - on) for on, off in zip(self.on, self.off)]
        for i in range(n - 1, -1, -1):
            if self.connected[i]:
                continue
            nxt = self.hi[i + 1] if i + 1 < n else self.reported[i]
            self.hi[i] = min(nxt, self.reported[i]) - lit[i] - SECOND_MS
            self.lo[i] = (self.on[i - 1] + lit[i - 1]) if i > 0 else None
            if self.lo[i] is not None and self.lo[i] > self.hi[i]:
                self.lo[i] = self.hi[i]
        self.lit = lit

    def _interval(self, i: int, t: int | None) -> Interval:
        """Visit i as the server knows it at t (None: once the next visit is known)."""
        lo, hi = self.lo[i], self.hi[i]
        n, bad = self.links[i]
        if t is None:
            u = self.lit[i]
            end_lo = hi + u if lo is None else lo + u
            return Interval(self.device, i + 1, lo, hi, end_lo,
                            hi + max(u + 10 * SECOND_MS, math.ceil(u / 0.9)), u, "alive",
                            self.connected[i], self.reported[i], 1, n, bad)
        k = bisect.bisect_right(self.successes, t) - 1
        s = self.successes[k] if k >= 0 else self.on[i]
        u = _mark(min(s, self.off[i]) - self.on[i]) if s >= self.on[i] else 50
        end_lo = (lo if lo is not None else hi) + u
        return Interval(self.device, i + 1, lo, hi, end_lo, None, u, "open", self.connected[i],
                        self.reported[i], 1, n, bad)

    def timeline(self, t: int) -> Timeline:
        """What the server knows at t."""
        n = bisect.bisect_right(self.reported, t)
        k = min(n, bisect.bisect_right(self.final_at, t))
        ivs = self.finals[:k] + [self._interval(i, t) for i in range(k, n)]  # in start order
        j = bisect.bisect_right(self.successes, t)
        heard = self.successes[j - 1] if j else None
        seen = DeviceSeen(self.device, self.h.t0, self.successes[0] if j else None, heard, n or None,
                          lte=self.lte, report_gap_ms=LTE_REPORT_GAP_MS if self.lte else 0)
        return Timeline(tuple(ivs), {self.device: seen})

    def arrivals(self, t0: int, t1: int) -> list[int]:
        """The instants reports reached the server in [t0, t1) (the server evaluates then)."""
        return self.successes[bisect.bisect_left(self.successes, t0):
                              bisect.bisect_left(self.successes, t1)]
