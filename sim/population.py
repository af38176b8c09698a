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

Record level, not MicroPython: fast enough to replay months of many households. It must never
read the clock: every instant comes from the seed and the caller.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sim.household import Household, Profile, Visit, unix
from sim.server.timeline import HEARTBEAT_S, LTE_REPORT_GAP_S, DeviceSeen, Interval, Timeline

KINDS = ("living_room", "kitchen", "toilet", "rare_room", "seasonal", "day_service", "irregular")
DELIVERIES = ("good_wifi", "router_nightly", "router_20h_10d", "weak_wifi", "lte")
DEVICE = "bulb"
H = 3600.0
DAY = 86400.0


@dataclass
class PopHousehold:
    kind: str
    delivery: str
    seed: int
    start: datetime  # local midnight of the first day (naive local time, kept as UTC)
    days: int
    visits: list[Visit]
    stays: list[tuple[float, float]]  # unregistered nights away (Unix s)
    absences: list[dict] = field(default_factory=list)  # registered (household settings)
    outage: tuple = ()  # the delivery condition's parameters

    @property
    def t0(self) -> float:
        return unix(self.start)

    @property
    def t1(self) -> float:
        return unix(self.start + timedelta(days=self.days))


def _sunset_h(d: datetime, seasonal: bool, day: int, days: int) -> float:
    """Local hour of dusk: for the seasonal kind 16:40 moving 2.5 h later over the run; else
    Tokyo-like, 16:30 (winter) to 19:00 (summer) by day of the year."""
    if seasonal:
        return 16.67 + 2.5 * day / max(1, days - 1)
    doy = d.timetuple().tm_yday
    return 17.75 - 1.25 * math.cos(2 * math.pi * (doy + 10) / 365.25)


def _long(rng: random.Random, minutes: float) -> float:
    """Now and then a visit much longer than usual (a long bath, a long call)."""
    return minutes * rng.uniform(2, 4) if rng.random() < 0.01 else minutes


def _visit(base: datetime, h: float, minutes: float) -> Visit:
    on = base + timedelta(hours=h)
    return Visit(on, on + timedelta(minutes=max(0.2, minutes)))


def _evenings(rng: random.Random, start: datetime, days: int, seasonal: bool) -> list[Visit]:
    """A room lit from dusk to bedtime (living room, seasonal), dark mornings too."""
    bed_mean = rng.uniform(20.5, 22.8)
    wake_mean = rng.uniform(5.5, 7.5)
    late_on = rng.uniform(0, 0.6)  # some switch on well after dusk
    out: list[Visit] = []
    for d in range(days):
        base = start + timedelta(days=d)
        dr = random.Random(rng.random())
        dusk = _sunset_h(base, seasonal, d, days)
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


def _kitchen(rng: random.Random, start: datetime, days: int) -> list[Visit]:
    wake = rng.uniform(5.5, 8.0)
    dinner = rng.uniform(16.5, 18.5)
    snacks = rng.uniform(0.5, 2.5)
    out: list[Visit] = []
    for d in range(days):
        base = start + timedelta(days=d)
        dr = random.Random(rng.random())
        if dr.random() < 0.9:
            out.append(_visit(base, wake + dr.uniform(0, 0.6), _long(dr, dr.uniform(10, 40))))
        if dr.random() < 0.5:
            out.append(_visit(base, 12 + dr.gauss(0, 0.4), dr.uniform(10, 30)))
        if dr.random() < 0.95:
            out.append(_visit(base, dinner + dr.gauss(0, 0.6), _long(dr, dr.uniform(40, 120))))
        for _ in range(_poisson(dr, snacks)):
            out.append(_visit(base, dr.uniform(wake + 1.5, 21), dr.uniform(3, 15)))
    return out


def _rare(rng: random.Random, start: datetime, days: int) -> list[Visit]:
    rate = rng.uniform(0.3, 2.0)
    out: list[Visit] = []
    for d in range(days):
        base = start + timedelta(days=d)
        dr = random.Random(rng.random())
        for _ in range(_poisson(dr, rate)):
            out.append(_visit(base, dr.uniform(7.5, 21.5),
                              _long(dr, 10 * math.exp(dr.gauss(0, 1.0)))))
    return out


def _toilet(rng: random.Random, seed: int, start: datetime, days: int,
            irregular: bool = False) -> list[Visit]:
    prof = Profile().sample(rng)
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
            for v in out]


def _poisson(rng: random.Random, lam: float) -> int:
    n, t = 0, rng.expovariate(1.0) if lam > 0 else math.inf
    while t < lam:
        n += 1
        t += rng.expovariate(1.0)
    return n


def household(kind: str, delivery: str, seed: int, days: int | None = None) -> PopHousehold:
    """One seeded household of this kind with this delivery, 60-120 days."""
    rng = random.Random(f"{kind}/{delivery}/{seed}")
    days = days or rng.randrange(60, 121)
    start = datetime(2026, 1, 1) + timedelta(days=rng.randrange(0, 300))
    if kind == "seasonal":
        start = datetime(2025, 12, 22) + timedelta(days=rng.randrange(0, 20))
    s = rng.randrange(1_000_000)
    if kind in ("living_room", "seasonal"):
        visits = _evenings(rng, start, days, kind == "seasonal")
    elif kind == "kitchen":
        visits = _kitchen(rng, start, days)
    elif kind == "rare_room":
        visits = _rare(rng, start, days)
    else:
        visits = _toilet(rng, s, start, days, irregular=kind == "irregular")
    absences: list[dict] = []
    if kind == "day_service":
        wd = sorted(rng.sample(range(5), 2))
        names = ("mon", "tue", "wed", "thu", "fri")
        absences = [{"days": [names[i] for i in wd], "from": "09:00", "to": "17:00",
                     "reason": "day service"}]
        keep = []
        for v in visits:
            d = v.on.date()
            away = (v.on.weekday() in wd
                    and datetime(d.year, d.month, d.day, 8, 45) <= v.on
                    < datetime(d.year, d.month, d.day, 17, 5))
            if not away:
                keep.append(v)
        visits = keep
    stays = []
    d = rng.uniform(5, 40)
    while d < days - 2:  # unregistered nights away, about one in forty days
        base = start + timedelta(days=int(d))
        a = base + timedelta(hours=rng.uniform(15, 19))
        b = base + timedelta(days=1, hours=rng.uniform(10, 14))
        stays.append((unix(a), unix(b)))
        visits = [v for v in visits if not (a <= v.on < b)]
        d += rng.expovariate(1 / 40) + 2
    visits.sort(key=lambda v: v.on)
    forgot = []  # about once in 150 days the light is left on until the next morning
    d = rng.expovariate(1 / 150)
    while d < days - 1:
        late = [v for v in visits if v.on.date() == (start + timedelta(days=int(d))).date()
                and v.on.hour >= 17]
        if late:
            v = late[-1]
            end = datetime(v.on.year, v.on.month, v.on.day) + timedelta(
                days=1, hours=rng.uniform(6.5, 9))
            forgot.append((v, Visit(v.on, end)))
        d += rng.expovariate(1 / 150) + 1
    for old, new in forgot:
        visits = [v for v in visits if not (old.on < v.on < new.off)]
        visits[visits.index(old)] = new
    clean: list[Visit] = []
    for v in visits:  # one lamp: a visit cannot start before the previous one ended
        if clean and v.on <= clean[-1].off:
            continue
        clean.append(v)
    if delivery == "router_nightly":
        outage: tuple = (rng.uniform(22.0, 24.0), rng.uniform(5.5, 7.0))
    elif delivery == "router_20h_10d":
        outage = (rng.uniform(0, 10), rng.random())
    else:
        outage = ()
    return PopHousehold(kind, delivery, seed, start, days, clean, stays, absences, outage)


# ---------------------------------------------------------------------------------------------
# what the server knows


def _mark(u: float) -> float:
    """The last ALIVE mark (uptime s) written by uptime u: 10 s steps to 120 s, then +10 %."""
    if u < 10:
        return 0.05
    if u <= 120:
        return math.floor(u / 10) * 10
    return 120 * 1.1 ** math.floor(math.log(u / 120) / math.log(1.1))


class World:
    """One household's bulb and radio: when each visit reached the server, and the timeline
    the server has at any instant."""

    def __init__(self, h: PopHousehold, visits: list[Visit] | None = None,
                 lit_until: float | None = None) -> None:
        self.h = h
        vs = h.visits if visits is None else visits
        self.on = [unix(v.on) for v in vs]
        self.off = [unix(v.off) for v in vs]
        if lit_until is not None and self.off:
            self.off[-1] = lit_until  # the last visit's lamp stays lit (a fall, light left on)
        self.lte = h.delivery == "lte"
        self.rng = random.Random(f"radio/{h.kind}/{h.delivery}/{h.seed}")
        self.successes: list[float] = []  # every successful report, in time order
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
    def _down(self, t: float) -> bool:
        h, d = self.h, self.h.delivery
        if d == "router_nightly":
            a, b = h.outage
            loc = ((t - h.t0) % DAY) / H
            day = int((t - h.t0) // DAY)
            jit = random.Random(f"{h.seed}/{day}").uniform(-0.25, 0.25)
            return loc >= a + jit or loc < b + jit
        if d == "router_20h_10d":
            phase, frac = h.outage
            k = math.floor(((t - h.t0) / DAY - phase) / 10)
            s = h.t0 + (phase + 10 * k) * DAY + frac * DAY
            return s <= t < s + 20 * H
        return False

    def _ok(self, t: float) -> bool:
        p = {"weak_wifi": 0.3, "lte": 0.01}.get(self.h.delivery, 0.005)
        return not self._down(t) and self.rng.random() >= p

    def _attempts(self) -> None:
        last = -math.inf
        for on, off in zip(self.on, self.off):
            n = bad = 0
            t = on + (10.0 if self.lte else 3.0)
            due = not self.lte or on - last >= LTE_REPORT_GAP_S
            if not due:
                t = on + HEARTBEAT_S
            backoff = 30.0
            while t <= off:
                n += 1
                if self._ok(t):
                    self.successes.append(t)
                    last = t
                    backoff = 30.0
                    t += HEARTBEAT_S
                else:
                    bad += 1
                    t += backoff
                    backoff = min(HEARTBEAT_S, backoff * 2)
            self.links.append((n, bad))

    def _during(self, i: int) -> float | None:
        k = bisect.bisect_left(self.successes, self.on[i])
        if k < len(self.successes) and self.successes[k] <= self.off[i]:
            return self.successes[k]
        return None

    def _bounds(self) -> None:
        """Start bounds: exact for a visit that connected while lit; otherwise after the visit
        before it ended and before the next one began (what the server's timeline can say)."""
        n = len(self.on)
        self.lo: list[float | None] = list(self.on)
        self.hi = list(self.on)
        lit = [_mark(off - on) for on, off in zip(self.on, self.off)]
        for i in range(n - 1, -1, -1):
            if self.connected[i]:
                continue
            nxt = self.hi[i + 1] if i + 1 < n else self.reported[i]
            self.hi[i] = min(nxt, self.reported[i]) - lit[i] - 1.0
            self.lo[i] = (self.on[i - 1] + lit[i - 1]) if i > 0 else None
            if self.lo[i] is not None and self.lo[i] > self.hi[i]:
                self.lo[i] = self.hi[i]
        self.lit = lit

    def _interval(self, i: int, t: float | None) -> Interval:
        """Visit i as the server knows it at t (None: once the next visit is known)."""
        lo, hi = self.lo[i], self.hi[i]
        n, bad = self.links[i]
        if t is None:
            u = self.lit[i]
            end_lo = hi + u if lo is None else lo + u
            return Interval(DEVICE, i + 1, lo, hi, end_lo, hi + max(u + 10, u / 0.9), u, "alive",
                            self.connected[i], self.reported[i], 1, n, bad)
        k = bisect.bisect_right(self.successes, t) - 1
        s = self.successes[k] if k >= 0 else self.on[i]
        u = _mark(min(s, self.off[i]) - self.on[i]) if s >= self.on[i] else 0.05
        end_lo = (lo if lo is not None else hi) + u
        return Interval(DEVICE, i + 1, lo, hi, end_lo, None, u, "open", self.connected[i],
                        self.reported[i], 1, n, bad)

    def timeline(self, t: float) -> Timeline:
        """What the server knows at t."""
        n = bisect.bisect_right(self.reported, t)
        k = min(n, bisect.bisect_right(self.final_at, t))
        ivs = self.finals[:k] + [self._interval(i, t) for i in range(k, n)]  # in start order
        j = bisect.bisect_right(self.successes, t)
        heard = self.successes[j - 1] if j else None
        seen = DeviceSeen(DEVICE, self.h.t0, self.successes[0] if j else None, heard, n or None,
                          lte=self.lte, report_gap_s=LTE_REPORT_GAP_S if self.lte else 0.0)
        return Timeline(tuple(ivs), {DEVICE: seen})

    def arrivals(self, t0: float, t1: float) -> list[float]:
        """The instants reports reached the server in [t0, t1) (the server evaluates then)."""
        return self.successes[bisect.bisect_left(self.successes, t0):
                              bisect.bisect_left(self.successes, t1)]
