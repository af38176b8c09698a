# SPDX-License-Identifier: MIT
"""A household's rhythm: when the person switches the bathroom light on and off, day after day.

What it is for: driving simulated bulbs (demo, uplink bench) and measuring the alert rules.
`Household(seed, profile, incidents).events(start, days)` returns the visits (switch-on,
switch-off) in local wall-clock time; the same seed gives the same days. The default rhythm is
calibrated on real logs (UCI "ADLs Recognition Using Binary Sensors", F. J. Ordonez,
P. de Toledo, A. Sanchis, Sensors 13(5):5460-5477, 2013): `load_ordonez()` reads them from
../shared/data/activity/ (never copied into this repository) and `calibrate()` turns a log into
a Profile. It must never read the clock: every instant comes from the caller.

A day: wake up (jittered; later at weekends, now and then a late morning), a burst of visits
after waking, visits through the day at a rate, outings (no visits while out; durations from the
logs' `Leaving` periods), bed time, a few night visits. Incidents: a fall (no switch-on after
it), a hospital stay (nobody home for days; the caller pauses the household or not), a light
left on for hours.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean, median

from mimamori.clock import SECOND_MS, to_ms
from mimamori.timeline import (
    ALIVE_FRACTION,
    ALIVE_STEP_MS,
    PWRON_RESET,
    DeviceSeen,
    Interval,
    StoredRecord,
    Timeline,
)
from mimamori_firmware.record import A_SERVER, K_ALIVE, K_ANCHOR, K_OFF, K_POWER_ON
from sim.bulb import shared_dir

DATA = shared_dir() / "data" / "activity"  # MIMAMORI_SHARED, ../shared or /work/shared
CITATION = (
    "F. J. Ordonez, P. de Toledo, A. Sanchis, \"Activity Recognition Using Hybrid "
    "Generative/Discriminative Models on Home Environments Using Binary Sensors\", "
    "Sensors 13(5):5460-5477, 2013"
)


@dataclass(frozen=True, slots=True)
class Visit:
    on: datetime
    off: datetime


@dataclass(frozen=True, slots=True)
class Profile:
    """A rhythm. Hours are local clock hours (may exceed 24 for after midnight).

    Defaults: the mean of calibrate() over houses A and B of the Ordonez logs (rounded), except
    the weekend and late-morning terms, which 35 days of logs cannot estimate (assumptions).
    """

    wake_h: float = 10.3
    wake_sd_h: float = 1.0
    bed_h: float = 25.5
    bed_sd_h: float = 0.7
    weekend_shift_h: float = 0.7  # later mornings on Saturday and Sunday (assumption)
    weekend_rate: float = 0.8  # quieter weekends: day rate multiplier (assumption)
    late_morning_p: float = 0.05  # a day that starts much later than usual (assumption)
    late_morning_h: float = 2.5
    wake_burst: float = 2.0  # mean visits in the first hour awake
    bedtime_p: float = 0.7  # a visit just before going to bed
    day_rate_h: float = 0.47  # visits per hour awake and at home, after the first hour
    night_visits: float = 0.0  # mean visits while asleep (none in the logs)
    outings_per_day: float = 1.4
    outing_median_h: float = 1.85
    outing_sigma: float = 1.06  # log-normal spread of outing durations
    outing_max_h: float = 9.0
    away_night_p: float = 0.0  # an unannounced night away (not paused), per day
    visit_median_min: float = 0.9
    visit_sigma: float = 1.3

    def sample(self, rng: random.Random) -> Profile:
        """A different person around this rhythm (for many simulated households)."""
        shift = rng.uniform(-4.0, 0.5)  # earlier risers than the logs' two people
        return replace(
            self,
            wake_h=self.wake_h + shift,
            bed_h=self.bed_h + shift + rng.uniform(-0.5, 0.5),
            day_rate_h=self.day_rate_h * rng.uniform(0.6, 1.5),
            night_visits=rng.uniform(0.0, 1.5),  # nocturia: an assumption, not in the logs
            bedtime_p=rng.uniform(0.4, 0.95),
            outings_per_day=self.outings_per_day * rng.uniform(0.4, 1.3),
            outing_median_h=self.outing_median_h * rng.uniform(0.7, 1.4),
            weekend_rate=rng.uniform(0.6, 1.0),
            away_night_p=self.away_night_p,
        )


@dataclass(frozen=True, slots=True)
class Fall:
    """From `at` on, the person cannot switch the light on any more."""

    at: datetime


@dataclass(frozen=True, slots=True)
class HospitalStay:
    """Nobody home from start to end. paused: the family paused the household for it."""

    start: datetime
    end: datetime
    paused: bool = True


@dataclass(frozen=True, slots=True)
class LightLeftOn:
    """At `at` the light is switched on and stays on for `hours`."""

    at: datetime
    hours: float


Incident = Fall | HospitalStay | LightLeftOn


@dataclass
class Household:
    seed: int
    profile: Profile = field(default_factory=Profile)
    incidents: tuple[Incident, ...] = ()

    def pauses(self) -> list[tuple[datetime, datetime]]:
        return [(i.start, i.end) for i in self.incidents if isinstance(i, HospitalStay) and i.paused]

    def events(self, start: datetime, days: int) -> list[Visit]:
        """Visits from local midnight of `start`'s day for `days` days, sorted, non-overlapping."""
        p = self.profile
        day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
        visits: list[Visit] = []
        for d in range(-1, days):  # day -1 provides the night that spills into day 0
            rng = random.Random(self.seed * 1_000_003 + d)
            base = day0 + timedelta(days=d)
            visits.extend(self._day(rng, base, p))
        end = day0 + timedelta(days=days)
        visits = [v for v in visits if day0 <= v.on < end]
        visits = self._apply(visits)
        visits.sort(key=lambda v: v.on)
        out: list[Visit] = []
        for v in visits:  # one lamp: a visit cannot start before the previous one ended
            if out and v.on <= out[-1].off:
                continue
            out.append(v)
        return out

    def _day(self, rng: random.Random, base: datetime, p: Profile) -> list[Visit]:
        weekend = base.weekday() >= 5
        wake = p.wake_h + rng.gauss(0, p.wake_sd_h) + (p.weekend_shift_h if weekend else 0)
        if rng.random() < p.late_morning_p:
            wake += p.late_morning_h
        bed = max(wake + 8, p.bed_h + rng.gauss(0, p.bed_sd_h))
        rate = p.day_rate_h * (p.weekend_rate if weekend else 1.0)
        out_periods: list[tuple[float, float]] = []
        for _ in range(_poisson(rng, p.outings_per_day)):
            dur = min(p.outing_max_h, p.outing_median_h * math.exp(rng.gauss(0, p.outing_sigma)))
            s = rng.uniform(wake + 1.0, max(wake + 1.5, bed - dur - 0.5))
            out_periods.append((s, s + dur))
        if rng.random() < p.away_night_p:  # leaves in the evening, back next midday
            s = rng.uniform(wake + 6, bed)
            out_periods.append((s, 24 + p.wake_h + rng.uniform(3, 6)))
        hours: list[float] = []
        hours += [wake + rng.uniform(0, 1) for _ in range(max(1, _poisson(rng, p.wake_burst)))]
        t = wake + 1
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= bed:
                break
            hours.append(t)
        if rng.random() < p.bedtime_p:
            hours += [bed - rng.uniform(0, 0.3)]
        next_wake = 24 + p.wake_h
        hours += [rng.uniform(bed + 0.5, max(bed + 1, next_wake - 0.5))
                  for _ in range(_poisson(rng, p.night_visits))]
        visits = []
        for h in hours:
            if any(a <= h < b for a, b in out_periods):
                continue
            on = base + timedelta(hours=h)
            dur = p.visit_median_min * math.exp(rng.gauss(0, p.visit_sigma))
            visits.append(Visit(on, on + timedelta(minutes=min(dur, 45.0))))
        return visits

    def _apply(self, visits: list[Visit]) -> list[Visit]:
        for inc in self.incidents:
            if isinstance(inc, Fall):
                visits = [v for v in visits if v.on < inc.at]
                visits = [Visit(v.on, min(v.off, inc.at)) if v.off > inc.at else v for v in visits]
            elif isinstance(inc, HospitalStay):
                visits = [v for v in visits if not inc.start <= v.on < inc.end]
            elif isinstance(inc, LightLeftOn):
                end = inc.at + timedelta(hours=inc.hours)
                visits = [v for v in visits if not inc.at <= v.on < end]
                visits.append(Visit(inc.at, end))
        return visits


def _poisson(rng: random.Random, lam: float) -> int:
    n, t = 0, rng.expovariate(1.0) if lam > 0 else math.inf
    while t < lam:
        n += 1
        t += rng.expovariate(1.0)
    return n


# ---------------------------------------------------------------- the bulb's records of visits


def unix(t: datetime) -> float:
    """Unix seconds of a simulated local time (naive datetimes are taken as UTC)."""
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def ms(t: datetime) -> int:
    """A simulated local time as the server counts instants: ms since the epoch (the edge
    between the simulator's datetimes and the server's unit)."""
    return to_ms(unix(t))


def exact_timeline(visits: list[Visit], device: str = "bulb") -> Timeline:
    """The timeline a perfectly connected bulb with a dying gasp would give (for measurement)."""
    ivs = []
    for i, v in enumerate(visits):
        on, off = ms(v.on), ms(v.off)
        # reported at power-on, as a connected bulb does
        ivs.append(Interval(device, i + 1, on, on, off, off, off - on, "off", True,
                            on + 2 * SECOND_MS, 1))
    last = ms(visits[-1].off) if visits else None
    first = ms(visits[0].on) if visits else None
    seen = DeviceSeen(device, first, first, last, len(visits) or None)
    return Timeline(tuple(ivs), {device: seen})


def bulb_records(
    visits: list[Visit],
    device: str,
    *,
    seed: int = 0,
    connect_p: float = 0.95,
    dying_gasp: bool = False,
    first_seq: int = 1,
    first_boot: int = 1,
) -> list[StoredRecord]:
    """The journal records a bulb writes for these visits, as the server would store them.

    Each visit is a boot: POWER_ON, an ANCHOR when it connects (probability connect_p), ALIVE
    marks on the journal's schedule, OFF when the bulb has a dying gasp. A visit that connects
    delivers its records as they are written, and any earlier unsent ones right after power-on;
    a visit that does not connect waits for the next one that does.
    """
    rng = random.Random(seed)
    out: list[StoredRecord] = []
    unsent: list[tuple[int, int, int, int, int, int, int]] = []
    seq, boot = first_seq, first_boot
    for v in visits:
        t_on = unix(v.on)
        length = (v.off - v.on).total_seconds()
        rows = [(0.05, K_POWER_ON, PWRON_RESET, 0, 1)]
        connected = rng.random() < connect_p
        if connected:
            rows.append((2.0, K_ANCHOR, A_SERVER, 0, int(t_on + 2.0)))
        u = 0.0
        while True:
            u = u + ALIVE_STEP_MS / SECOND_MS if u < 120 else u * (1 + ALIVE_FRACTION * 0.9)
            if u >= length:
                break
            rows.append((u, K_ALIVE, 0, 0, 0))
        if dying_gasp:
            rows.append((length, K_OFF, 0, 0, 0))
        mine: list[tuple[int, int, int, int, int, int, int]] = []
        for up, kind, sub, aux, arg in rows:
            mine.append((seq, boot, int(up * 1000), kind, sub, aux, arg))
            seq += 1
        if connected:
            late = t_on + 2.0 + rng.uniform(0.5, 3.0)
            out += [StoredRecord(device, *r, received_at=to_ms(late)) for r in unsent]
            unsent = []
            for r in mine:
                up = r[2] / 1000
                out.append(StoredRecord(device, *r, received_at=to_ms(t_on + max(up, 2.0)
                                                                      + rng.uniform(0.5, 3.0))))
        else:
            unsent += mine
        boot += 1
    return out


# ---------------------------------------------------------------- the real logs


@dataclass(frozen=True, slots=True)
class RealLog:
    """One house of the Ordonez logs: bathroom visits, real outings, sleep periods."""

    house: str
    visits: list[Visit]
    outings: list[tuple[datetime, datetime]]
    sleeps: list[tuple[datetime, datetime]]
    start: datetime  # first local midnight covered
    days: int


def _rows(path: Path) -> list[list[str]]:
    rows = []
    for line in path.read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][:1].isdigit():
            rows.append(parts)
    return rows


def load_ordonez(house: str, root: Path = DATA, merge_s: float = 120.0) -> RealLog:
    """Bathroom sensor activations of house "A" or "B" merged into visits (a light switched on).

    Activations closer than merge_s belong to the same visit. Raises FileNotFoundError saying
    where the logs were expected.
    """
    sensors = root / f"Ordonez{house}_Sensors.txt"
    adls = root / f"Ordonez{house}_ADLs.txt"
    if not sensors.exists() or not adls.exists():
        raise FileNotFoundError(
            f"the Ordonez activity logs are not in {root} (expected {sensors.name}); they live in"
            " ../shared/data/activity/ next to the repository, never inside it"
        )
    spans = []
    for p in _rows(sensors):
        if p[-1] == "Bathroom":
            spans.append((datetime.fromisoformat(f"{p[0]} {p[1]}"),
                          datetime.fromisoformat(f"{p[2]} {p[3]}")))
    spans.sort()
    merged: list[list[datetime]] = []
    for s, e in spans:
        if merged and (s - merged[-1][1]).total_seconds() <= merge_s:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    outings, sleeps = [], []
    for p in _rows(adls):
        s = datetime.fromisoformat(f"{p[0]} {p[1]}")
        e = datetime.fromisoformat(f"{p[2]} {p[3]}")
        if p[4] == "Leaving":
            outings.append((s, e))
        elif p[4] == "Sleeping":
            sleeps.append((s, e))
    visits = [Visit(s, e) for s, e in merged]
    start = visits[0].on.replace(hour=0, minute=0, second=0)
    days = (visits[-1].on - start).days + 1
    return RealLog(house, visits, outings, sleeps, start, days)


def calibrate(log: RealLog) -> Profile:
    """A Profile whose rhythm matches a real log (wake, bed, rates, outings, visit lengths)."""
    mains = [(s, e) for s, e in log.sleeps if (e - s).total_seconds() > 4 * 3600]

    def hour(t: datetime, ref: datetime) -> float:
        return (t - ref.replace(hour=0, minute=0, second=0)).total_seconds() / 3600

    wakes = [hour(e, e) for _, e in mains]
    beds = [hour(s, s) + (24 if s.hour < 12 else 0) for s, _ in mains]
    night = [v for v in log.visits if any(s <= v.on < e for s, e in mains)]
    burst = [v for v in log.visits if any(0 <= (v.on - e).total_seconds() < 3600 for _, e in mains)]
    day = [v for v in log.visits if v not in night and v not in burst]
    awake_h = log.days * (mean(beds) - mean(wakes) - 1) - sum(
        (e - s).total_seconds() / 3600 for s, e in log.outings)
    durs = [(e - s).total_seconds() / 3600 for s, e in log.outings]
    vmins = [max(0.1, (v.off - v.on).total_seconds() / 60) for v in log.visits]
    return Profile(
        wake_h=mean(wakes),
        wake_sd_h=_sd(wakes),
        bed_h=mean(beds),
        bed_sd_h=_sd(beds),
        wake_burst=len(burst) / max(1, len(mains)),
        bedtime_p=sum(1 for s, _ in mains if any(0 <= (s - v.on).total_seconds() <= 3600
                                                 for v in log.visits)) / max(1, len(mains)),
        day_rate_h=len(day) / max(1.0, awake_h),
        night_visits=len(night) / max(1, len(mains)),
        outings_per_day=len(log.outings) / log.days,
        outing_median_h=median(durs),
        outing_sigma=_sd([math.log(d) for d in durs]),
        visit_median_min=median(vmins),
        visit_sigma=_sd([math.log(m) for m in vmins]),
    )


def _sd(xs: list[float]) -> float:
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / max(1, len(xs) - 1))
