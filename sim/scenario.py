# SPDX-License-Identifier: MIT
"""The demo's scripted week: who lives where, which bulbs they have, when they switch the light
on and off, and the incidents the system exists for. Pure: `plan(days, homes, start)` returns a
Scenario; the demo (sim/demo.py) plays it against the real server and the real firmware, and
the demo's summary and tests/test_demo.py check what each incident led to (sim/outcomes.py).

The visits come from the household simulator (sim/household.py: a rhythm calibrated on the
Ordonez activity logs, each home a different person around it). Incidents, by home:

- Sato (佐藤): a Wi-Fi bulb in the toilet and an LTE-M bulb in the washroom, both reporting; one
  evening the toilet light is left on for hours (the continuous-on alert; it clears itself when
  the light is switched off and on again).
- Suzuki (鈴木): the Wi-Fi router is off for most of a day (the bulb has no signal; its visits
  reach the server late, when the signal is back, and raise no alert); later in the week he
  falls and cannot reach the switch (the no-activity alert reaches both watchers; Aiko claims it
  from the link in her e-mail and records that he needed help).
- Takahashi (高橋): a planned hospital stay; the family pauses the household beforehand, so the
  empty days raise no alert, and it resumes by itself.
- Further homes (HOMES > 3): ordinary weeks, nothing happens.

It must never read the clock: every instant comes from `start`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sim.household import Fall, HospitalStay, Household, LightLeftOn, Profile, Visit

TZ = ZoneInfo("Asia/Tokyo")
DEFAULT_START = datetime(2026, 12, 7, 5, 0, tzinfo=TZ)  # a Monday, 05:00 in Japan

# incident keys (stable: the summary and the test refer to them)
LEFT_ON = "left_on"
NO_SIGNAL = "no_signal"
FALL = "fall"
HOSPITAL = "hospital"
TWO_RADIOS = "two_radios"
INCIDENTS = (FALL, LEFT_ON, NO_SIGNAL, HOSPITAL, TWO_RADIOS)


@dataclass(frozen=True)
class Watcher:
    name: str
    email: str
    lang: str  # "ja" or "en": the language of their e-mails
    role: str = "family"


@dataclass(frozen=True)
class BulbPlan:
    id: str  # device id on the server
    room: str
    transport: str  # "wifi" or "lte"
    visits: tuple[Visit, ...]


@dataclass(frozen=True)
class Step:
    """Something the script does at a simulated instant (besides the visits)."""

    at: datetime
    home: str
    kind: str  # wifi_down, wifi_up, pause, claim, resolve (claim/resolve: see demo), note
    text: str  # the narration line
    data: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Home:
    id: str
    name: str  # as watchers see it
    person: str  # narration
    watchers: tuple[Watcher, ...]
    bulbs: tuple[BulbPlan, ...]
    settings: dict = field(default_factory=dict, hash=False, compare=False)
    incidents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    start: datetime
    days: int
    homes: tuple[Home, ...]
    steps: tuple[Step, ...]  # sorted by time
    skipped: tuple[str, ...] = ()  # incidents that do not fit in this many days/homes

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def home(self, hid: str) -> Home:
        return next(h for h in self.homes if h.id == hid)

    def visits(self) -> int:
        return sum(len(b.visits) for h in self.homes for b in h.bulbs)


@dataclass(frozen=True)
class Days:
    """On which day (0-based, from the start) each incident happens."""

    no_signal: int | None
    left_on: int | None
    stay: tuple[int, int] | None  # first and last day away (paused)
    fall: int | None  # the alert comes a day later: needs two more days


def incident_days(days: int) -> Days:
    """A week spreads the incidents out; three to five days compress them; in two days all but
    the fall fit, in one day only the light left on."""
    if days >= 6:
        return Days(no_signal=1, left_on=2, stay=(3, 5), fall=days - 2)
    if days >= 3:
        return Days(no_signal=0, left_on=1, stay=(1, 2), fall=1)
    if days == 2:
        return Days(no_signal=0, left_on=0, stay=(1, 1), fall=None)
    return Days(no_signal=None, left_on=0, stay=None, fall=None)


def _at(start: datetime, day: int, hour: float) -> datetime:
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=day)
    return midnight + timedelta(hours=hour)


def _profile(seed: int) -> Profile:
    """Someone around the calibrated rhythm; elderly people here get up earlier than the logs'."""
    p = Profile().sample(random.Random(seed))
    shift = -p.wake_h + random.Random(seed + 1).uniform(5.5, 7.5)
    return replace(p, wake_h=p.wake_h + shift, bed_h=p.bed_h + shift)


def _visits(hh: Household, start: datetime, days: int) -> list[Visit]:
    """The household's visits from `start` (not from its midnight) to start + days."""
    end = start + timedelta(days=days)
    vs = hh.events(start, days + 1)
    return [v for v in vs if start <= v.on < end]


_NAMES = [("Sato", "佐藤さん", "Mrs Sato"), ("Suzuki", "鈴木さん", "Mr Suzuki"),
          ("Takahashi", "高橋さん", "Mrs Takahashi"), ("Tanaka", "田中さん", "Mr Tanaka"),
          ("Ito", "伊藤さん", "Mrs Ito"), ("Watanabe", "渡辺さん", "Mr Watanabe"),
          ("Yamamoto", "山本さん", "Mrs Yamamoto"),
          ("Nakamura", "中村さん", "Mr Nakamura")]
_WATCHERS = [("Aiko", "en", "family"), ("Ken", "ja", "family"), ("Nao", "ja", "neighbour")]


def _watchers(hid: str, n: int = 2) -> tuple[Watcher, ...]:
    return tuple(Watcher(name, f"{name.lower()}.{hid}@example.org", lang, role)
                 for name, lang, role in _WATCHERS[:n])


def plan(days: int = 7, homes: int = 3, start: datetime = DEFAULT_START,
         seed: int = 2026) -> Scenario:
    """The scripted week (or `days` days) in `homes` homes."""
    if days < 1 or homes < 1:
        raise ValueError("the demo needs at least one day and one home (DAYS>=1, HOMES>=1)")
    d = incident_days(days)
    out_homes: list[Home] = []
    steps: list[Step] = []
    skipped: list[str] = []
    for i in range(homes):
        base, name, person = _NAMES[i % len(_NAMES)]
        hid = base.lower() + ("" if i < len(_NAMES) else str(i // len(_NAMES) + 1))
        s = seed + 101 * i
        incs: list = []
        mine: list[str] = []
        bulbs: list[BulbPlan] = []
        extra: list[Visit] = []
        # Sato: the light left on one evening, switched off, then on again
        if i == 0 and d.left_on is not None:
            on = _at(start, d.left_on, 17.0)  # alerted before the family's quiet hours
            incs.append(LightLeftOn(on, 3.5))
            off = on + timedelta(hours=3.5)
            extra.append(Visit(off + timedelta(minutes=3), off + timedelta(minutes=5)))
            steps.append(Step(on, hid, "note", f"{person} switches the toilet light on and "
                              "dozes off in the armchair; the light stays on"))
            steps.append(Step(off, hid, "note", f"{person} wakes up and switches the toilet "
                              "light off; back there three minutes later"))
            mine.append(LEFT_ON)
        # Takahashi: a planned hospital stay, paused the evening before
        if i == 2 and d.stay is not None:
            first, last = d.stay
            leave = _at(start, first, 9.0)
            back = _at(start, last, 15.0)
            incs.append(HospitalStay(leave, back, paused=True))
            steps.append(Step(_at(start, first - 1, 20.0) if first > 0 else start, hid, "pause",
                              f"the family enters a planned absence for {person}: in "
                              f"hospital {_day(leave)} to {_day(back)}",
                              {"first": _date(leave).isoformat(), "last": _date(back).isoformat(),
                               "reason": "hospital"}))
            steps.append(Step(leave, hid, "note", f"{person} goes into hospital (planned)"))
            steps.append(Step(back, hid, "note", f"{person} is back home"))
            mine.append(HOSPITAL)
        if i == 0:
            mine.append(TWO_RADIOS)
        hh = Household(s, _profile(s), tuple(incs))
        main_visits = _visits(hh, start, days)
        up = start
        if i == 1 and d.no_signal is not None:  # Suzuki: most of a day without Wi-Fi
            down, up = _no_signal(main_visits, _at(start, d.no_signal, 9.0 if days >= 6 else 13.0))
            steps.append(Step(down, hid, "wifi_down", "the Wi-Fi router is switched off; the "
                              "bulb has no signal, it keeps recording every switch-on"))
            steps.append(Step(up, hid, "wifi_up", f"the router is back on after "
                              f"{(up - down).total_seconds() / 3600:.0f} h; the next switch-on "
                              "delivers what the bulb recorded meanwhile"))
            mine.append(NO_SIGNAL)
        # ... and later a fall: after the third visit of a morning
        if i == 1 and d.fall is not None:
            day_visits = [v for v in main_visits
                          if max(_at(start, d.fall, 5.0), up + timedelta(hours=1)) <= v.on
                          < _at(start, d.fall, 16.0)]
            last_ok = day_visits[min(2, len(day_visits) - 1)] if day_visits else None
            fall_at = (last_ok.off if last_ok else _at(start, d.fall, 8.0)) + timedelta(
                minutes=20)
            hh = Household(s, hh.profile, (*incs, Fall(fall_at)))
            main_visits = _visits(hh, start, days)
            steps.append(Step(fall_at, hid, "note", f"{person} falls in the hallway and cannot "
                              "get up; nobody switches the light on any more"))
            mine.append(FALL)
        bulbs.append(BulbPlan(f"{hid}-toilet", "toilet", "wifi",
                              tuple(_one_lamp(main_visits + extra))))
        if i == 0:  # Sato's second bulb, on LTE-M: the washroom, used less often
            wp = replace(hh.profile, day_rate_h=hh.profile.day_rate_h * 0.4, night_visits=0.0,
                         wake_burst=1.0, bedtime_p=0.5)
            wash = _visits(Household(s + 7, wp), start, days)
            bulbs.append(BulbPlan(f"{hid}-washroom", "washroom", "lte", tuple(wash)))
        out_homes.append(Home(hid, name, person, _watchers(hid), tuple(bulbs),
                              {}, tuple(mine)))
    have = {k for h in out_homes for k in h.incidents}
    skipped = [k for k in INCIDENTS if k not in have]
    steps.sort(key=lambda st: st.at)
    return Scenario(start, days, tuple(out_homes), tuple(steps), tuple(skipped))


def _no_signal(visits: list[Visit], down: datetime) -> tuple[datetime, datetime]:
    """When the router goes off and comes back: after at least one visit got through, and back
    shortly before a switch-on that comes less than 23 h after the last one the server saw, so
    that the outage alone cannot reach the 24 h no-activity limit (the point is late delivery)."""
    for v in visits:  # not in the middle of a visit
        if v.on <= down <= v.off + timedelta(minutes=10):
            down = v.off + timedelta(minutes=10)
    before = [v for v in visits if v.off + timedelta(minutes=10) <= down]
    if not before:
        down = visits[0].off + timedelta(minutes=30) if visits else down
        before = visits[:1]
    last = before[-1].on if before else down
    later = [v for v in visits if last + timedelta(hours=17) <= v.on <= last + timedelta(hours=22)]
    up = later[0].on - timedelta(minutes=15) if later else last + timedelta(hours=20)
    return down, max(up, down + timedelta(hours=6))


def _one_lamp(visits: list[Visit]) -> list[Visit]:
    """Sorted; a visit that starts before the previous one ended is dropped (one lamp)."""
    out: list[Visit] = []
    for v in sorted(visits, key=lambda v: v.on):
        if not out or v.on > out[-1].off:
            out.append(v)
    return out


def _date(t: datetime) -> date:
    return t.astimezone(TZ).date()


def _day(t: datetime) -> str:
    return t.astimezone(TZ).strftime("%a %d %b")
