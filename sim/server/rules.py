# SPDX-License-Identifier: MIT
"""The alert rules: (timeline, settings, now) in, decisions out. Pure: no clock, no I/O, no
state kept between calls (what they derive from a model is kept in the caller's Memo).

Every rule returns one Decision per subject (the household, or a bulb) with its state now and
`next_check`: the instant at which, absent new records, the answer could change. The sweeper
indexes households by min(next_check); new records trigger an evaluation anyway.

Activity is a switch-on. Where a visit's start is only bounded (a boot that never talked), the
rules use its latest possible start: an alert is raised only when the gap is certain.

The rules reason with the household's model (sim/server/models.py: per bulb and per local hour,
switch-on rates, visit lengths, unused days, delivery), learned from the settled days of the
same timeline, or passed in by the caller (a server that keeps it, the population bench).

Rules (names are stable keys for the alert lifecycle):
- no_activity    no switch-on for N hours (default 24)                        family
- daily_window   no switch-on within a daily window (default 09:00 + 24 h)      family
- unusual_quiet  a quiet spell improbable under the household's own rhythm      family
- on_too_long    a bulb lit unusually long for that bulb at that hour, while    family
                 its heartbeats say it is still lit
- bulb_silent    a registered bulb never heard, or not heard for long           coordinator
- poor_delivery  visits reach the server late, or connection attempts fail      coordinator
- placement      the bulb's room gives too little signal to watch over          coordinator
Each OPEN decision says how strong its evidence is: "weak" while learning, when the silence may
be the radio, or when the room is not used every day (the lifecycle then neither escalates nor
reminds through the night); "strong" otherwise.

Absences: a Pause covers [start, end); `until_on` pauses ("needed help") end at the next
switch-on; recurring part-day absences (Absence: weekdays and a local time range) are expanded
into pauses. While one covers `now`, family rules are clear with "paused until ..."; gaps are
counted from the end of the pause, and the models do not learn from paused hours. A bulb's
silence is counted from the end of a pause too (a bulb in an empty home is not silent).

LTE-M bulbs report a power-on only when their last report is lte_report_gap_s old, so a
switch-on may lie unreported up to last_heard + gap (`DeviceSeen.hidden_until`; any later
power-on reports at once). The gap rules count the quiet spell from that instant when it is
later than the last switch-on known: the no-activity deadline is
max(last_on + N, hidden_until + N), the learned rule takes the later of the deadlines from
both, and a daily window such a switch-on could fall in is not judged. Wi-Fi bulbs: unchanged.

The server's own outages (RuleSettings.deaf, recorded by listening.py) hide every bulb: a
switch-on during one reaches the server only with her next visit. The learned rule leaves their
hours out of her spell (models.Listened: the expected switch-ons, learned_min_h and the cap
count the hours the server listened); the fixed rule, the learned one while learning, the daily
window and a bulb's silence count from the outage's end, as from an LTE-M report gap. The
reports an outage held (and the attempts that failed in it) are not the bulb's radio, and the
models leave its hours out as they leave out pauses.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Container, Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mimamori import models as mdl
from mimamori.clock import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, to_ms, to_s
from mimamori.timeline import Interval, Timeline

OPEN = "open"
CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class Pause:
    """A planned absence, [start, end) in ms; the household resumes by itself.
    until_on: it ends at the first switch-on after start (end is then math.inf until known)."""

    start: int
    end: float  # ms, or math.inf
    until_on: bool = False
    reason: str = ""

    @staticmethod
    def from_dates(first: date, last: date, tz: str) -> Pause:
        """Paused from the start of `first` to the end of `last`, household-local dates."""
        z = ZoneInfo(tz)
        s = datetime.combine(first, time(0), z).timestamp()
        e = datetime.combine(last + timedelta(days=1), time(0), z).timestamp()
        return Pause(to_ms(s), to_ms(e))


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Absence:
    """A recurring part-day absence: on these weekdays (0 Monday), from `start` to `end` local
    time (an end before the start runs into the next day), e.g. day service."""

    weekdays: tuple[int, ...]
    start: time
    end: time
    reason: str = ""

    def spans(self, tz: str, t0: int, t1: int) -> list[Pause]:
        """Its occurrences overlapping [t0, t1) (ms), as pauses."""
        z = ZoneInfo(tz)
        d = datetime.fromtimestamp(to_s(t0), z).date() - timedelta(days=1)
        last = datetime.fromtimestamp(to_s(t1), z).date()
        out = []
        while d <= last:
            if d.weekday() in self.weekdays:
                s = to_ms(datetime.combine(d, self.start, z).timestamp())
                e_day = d if self.end > self.start else d + timedelta(days=1)
                e = to_ms(datetime.combine(e_day, self.end, z).timestamp())
                if s < t1 and e > t0:
                    out.append(Pause(s, e, reason=self.reason))
            d += timedelta(days=1)
        return out

    def text(self) -> str:
        days = ", ".join(WEEKDAYS[i].capitalize() for i in self.weekdays)
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}" + (
            f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """What the rules read of one household: its time zone, the thresholds of its rules and
    its absences. Made from the stored households.HouseholdSettings (`.rules(tz, pauses)`),
    which also hold what the alert lifecycle reads (reminders, escalation, digests)."""

    tz: str = "Asia/Tokyo"
    activity_rule: str = "learned"  # "learned", "fixed" or "daily_window": which gap rule runs
    no_activity_h: float = 24.0
    window_start: time = time(9, 0)
    window_h: float = 24.0
    on_too_long_h: float = 3.0
    never_heard_h: float = 24.0  # a registered bulb never heard this long after registration
    silent_h: float = 72.0  # a bulb not heard for this long (activity was expected)
    late_after_s: float = 3600.0  # a visit reaching the server later than this is late
    late_fraction: float = 0.3
    late_min_visits: int = 5
    late_days: float = 7.0
    learn_days: int = 28  # history the learned rule looks at
    learn_min_days: int = 7  # below this, the learned rule uses the fixed no_activity_h
    days_per_false_alert: float = 100.0  # the learned threshold's target false-alert spacing
    bucket_h: float = 3.0  # spells that began within this many hours of the current one
    learned_min_h: float = 4.0  # never alert on a gap shorter than this
    learned_max_h: float = 24.0  # wait at most this long, unless this household's own recent
    #                              quiet spells were longer (a room not used every day)
    on_days_per_false_alert: float = 200.0  # on_too_long: target spacing per bulb
    pauses: tuple[Pause, ...] = ()
    absences: tuple[Absence, ...] = ()
    # the server's own outages, (start, end) ms (listening.py): not her silence, not the radio
    deaf: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str
    state: str  # OPEN or CLEAR
    since: int | None  # when the current state began, as far as the data tell (ms)
    evidence: str  # one line for people: "light switched on at 10:42"
    next_check: int | None  # when to look again if no record arrives (None: only on new data)
    audience: str = "family"  # or "coordinator"
    subject: str = ""  # the bulb for per-bulb rules; "" for the household
    at: int | None = None  # the instant the evidence is about (e.g. the last switch-on)
    detail: dict = field(default_factory=dict)  # numbers for templates and translations
    strength: str = "strong"  # "weak": learning, maybe the radio, a room not used every day


def due_at(decisions: list[Decision]) -> int | None:
    """The household's next deadline for the sweeper's index."""
    ts = [d.next_check for d in decisions if d.next_check is not None]
    return min(ts) if ts else None


# ---------------------------------------------------------------- helpers


def _ms(t: float) -> int:
    """An instant or a span computed in fractions (hours of a setting, a learned rate) as whole
    ms, rounded up: a deadline is never earlier than the fraction it comes from."""
    return math.ceil(t)


class _Clock:
    """Local wall-clock arithmetic for one evaluation (the offset at `now`, in ms; DST
    ignored)."""

    def __init__(self, tz: str, now: int) -> None:
        self.z = ZoneInfo(tz)
        off = datetime.fromtimestamp(to_s(now), self.z).utcoffset()
        self.off = to_ms(off.total_seconds()) if off else 0

    def hhmm(self, t: float, now: int) -> str:
        d = datetime.fromtimestamp(to_s(t + self.off), UTC)
        n = datetime.fromtimestamp(to_s(now + self.off), UTC)
        if d.date() == n.date():
            return d.strftime("%H:%M")
        if d.date() == (n - timedelta(days=1)).date():
            return d.strftime("yesterday %H:%M")
        return d.strftime("on %a %d %b %H:%M")

    def local_ms(self, t: int) -> int:
        return t + self.off


def _paused(settings: RuleSettings, t: float) -> Pause | None:
    for p in settings.pauses:
        if p.start <= t < p.end:
            return p
    return None


def _visible(tl: Timeline, now: int, memo: Memo | None = None) -> list[Interval]:
    """Visits the server could know of at `now` (replays pass a timeline with later visits)."""
    keys = (memo or Memo()).starts(tl)
    return list(tl.intervals[: bisect.bisect_right(keys, now)])


class Memo:
    """What the rules derive from one household's model and timeline, kept between evaluations
    by the caller that owns them (the server beside its parsed model, a replay for its run), so
    that a replay asking again and again derives it once. It holds the objects it was derived
    from and starts afresh when asked about another one: never stale, never another's."""

    def __init__(self) -> None:
        self._tl: Timeline | None = None
        self._starts: list[float] = []
        self._model: mdl.HouseholdModel | None = None
        self._held: list[list[tuple[float, float]]] | None = None
        self._held_known = False
        # (max_h) -> (key, all spells, {hour: spells near it}, spells per hour)
        self._pooled: dict[float, tuple[tuple, list[float], dict[int, list[float]],
                                        list[list[float]]]] = {}
        self._deadlines: dict[tuple, tuple[float, float, float, bool]] = {}

    def starts(self, tl: Timeline) -> list[float]:
        """The latest possible start of each visit of tl, in its order."""
        if self._tl is not tl:
            self._tl, self._starts = tl, [iv.start_latest for iv in tl.intervals]
        return self._starts

    def of(self, m: mdl.HouseholdModel) -> Memo:
        """This memo, about model m (what it kept of another model is dropped)."""
        if self._model is not m:
            self._model, self._held, self._held_known = m, None, False
            self._pooled, self._deadlines = {}, {}
        return self


@dataclass(frozen=True, slots=True)
class Context:
    """One evaluation of one household: what every rule reads."""

    tl: Timeline
    settings: RuleSettings  # expanded: every absence a concrete pause (see expand)
    now: int
    clock: _Clock
    ivs: list[Interval]  # the visits the server could know of at now
    pause: Pause | None  # the pause covering now, if any
    hidden: int | None  # the latest instant of a switch-on not reported yet (_hidden_until)
    model: mdl.HouseholdModel | None  # None when no rule evaluated needs it
    memo: Memo


def context(tl: Timeline, settings: RuleSettings, now: int,
            model: mdl.HouseholdModel | None = None, memo: Memo | None = None,
            key: Hashable | None = None, learn: bool = True) -> Context:
    """The context of an evaluation at `now` (ms): settings expanded, the visible visits,
    the pause and the report gap at now, and the model (learned from `tl` when not given and
    `learn`; key names the household for models' cache of learned models)."""
    memo = memo or Memo()
    ivs = _visible(tl, now, memo)
    settings = expand(settings, ivs, now)
    if model is None and learn:
        model = learn_model(tl, settings, now, key)
    return Context(tl, settings, now, _Clock(settings.tz, now), ivs, _paused(settings, now),
                   _hidden_until(tl, now, settings.deaf), model, memo)


def _at(t: float, clock: _Clock, now: int) -> str:
    """"at 14:05", "yesterday at 14:05", "on Mon 07 Dec at 14:05"."""
    day, _, hm = clock.hhmm(t, now).rpartition(" ")
    return f"{day} at {hm}" if day else f"at {hm}"


def _when(iv: Interval, clock: _Clock, now: int) -> str:
    if iv.exact_start or iv.start_earliest is None and iv.anchored or (
            iv.start_earliest is not None
            and clock.hhmm(iv.start_earliest, now) == clock.hhmm(iv.start_latest, now)):
        return _at(iv.start_latest, clock, now)  # known to the minute shown
    if iv.start_earliest is None:
        return f"some time before {_bare(clock.hhmm(iv.start_latest, now))} (reported late)"
    # a visit that learned the time itself (an anchor, at least its batch's receipt) was not
    # reported late: its range is the anchor's error
    late = "" if iv.anchored else " (reported late)"
    return (f"between {_bare(clock.hhmm(iv.start_earliest, now))} and "
            f"{_bare(clock.hhmm(iv.start_latest, now))}{late}")


def _bare(when: str) -> str:
    """ "on Sun 15 Mar 10:00" as "Sun 15 Mar 10:00", after "between" or "before"."""
    return when.removeprefix("on ")


def _hidden_until(tl: Timeline, now: int, deaf: Sequence[tuple[int, int]] = ()) -> int | None:
    """The latest instant at which a switch-on may have happened that no bulb has reported yet
    (LTE-M report gap; docs/alerts.md), or the end of the server's last outage (listening.py):
    a bulb sends what it kept then only with its next visit. None when neither applies."""
    ts = [h for d in tl.devices.values()
          if (h := d.hidden_until) is not None and d.last_heard is not None and d.last_heard <= now]
    ts += [e for _, e in deaf if e <= now]
    return max(ts) if ts else None


def _gap_start(ivs: list[Interval], settings: RuleSettings, now: int) -> tuple[float | None, Interval | None]:
    """Start of the current quiet spell: last switch-on, or the end of a pause after it."""
    last = ivs[-1] if ivs else None
    t = last.start_latest if last else None
    for p in settings.pauses:
        if p.end <= now and (t is None or p.end > t):
            t = p.end
    return t, last


# ---------------------------------------------------------------- the rules


def evaluate(tl: Timeline, settings: RuleSettings, now: int,
             model: mdl.HouseholdModel | None = None,
             key: Hashable | None = None, only: Container[str] | None = None,
             memo: Memo | None = None) -> list[Decision]:
    """Every rule's decision for one household at `now` (ms). model: the household's model
    learned through the last settled day (learned here from `tl` when not given; key names the
    household for the in-process cache of models). only: just these rules (measurement).
    memo: what earlier evaluations derived from this model and timeline (see Memo)."""
    needs = {"unusual_quiet", "on_too_long", "placement"}
    cx = context(tl, settings, now, model, memo, key,
                 learn=only is None or any(r in only for r in needs))
    out: list[Decision] = []
    gap = {"fixed": "no_activity", "daily_window": "daily_window"}.get(settings.activity_rule,
                                                                      "unusual_quiet")
    if only is None or gap in only:
        out.append(_GAP_RULES[gap](cx))
    if only is None or "on_too_long" in only:
        out.extend(_on_too_long(cx))
    if only is None or "bulb_silent" in only:
        out.extend(_bulb_silent(cx))
    if only is None or "poor_delivery" in only:
        out.extend(_poor_delivery(cx))
    if only is None or "placement" in only:
        out.extend(_placement(cx))
    return out


def expand(settings: RuleSettings, ivs: list[Interval], now: int) -> RuleSettings:
    """The settings with every absence as a concrete pause: "until the next switch-on" pauses
    end at that switch-on (or never, yet), recurring absences become their occurrences from the
    first visit (or a day ago) to a week ahead."""
    ps: list[Pause] = []
    starts = [iv.start_latest for iv in ivs]
    for p in settings.pauses:
        if p.until_on:
            i = bisect.bisect_right(starts, p.start)
            end = starts[i] if i < len(starts) else math.inf
            ps.append(Pause(p.start, end, True, p.reason))
        else:
            ps.append(p)
    if settings.absences:
        t0 = min(starts[0] if starts else now, now - DAY_MS)
        for a in settings.absences:
            ps.extend(a.spans(settings.tz, t0, now + 8 * DAY_MS))
    return replace(settings, pauses=tuple(sorted(ps, key=lambda p: (p.start, p.end))),
                   absences=())


def learn_model(tl: Timeline, settings: RuleSettings, now: int,
                key: Hashable | None = None) -> mdl.HouseholdModel:
    """The household's model at `now` (models.learn over the settled days, pauses left out),
    through the in-process cache of models: only new days are folded when the history is
    unchanged. settings: expanded (see expand)."""
    spans = [(p.start, p.end) for p in settings.pauses]
    return mdl.learn_cached(key if key is not None else id(tl), tl, settings.tz, spans, now,
                            settings.deaf)


def _paused_decision(rule: str, pause: Pause, cx: Context) -> Decision:
    clock, now = cx.clock, cx.now
    why = f" ({pause.reason})" if pause.reason else ""
    if math.isinf(pause.end):
        return Decision(rule, CLEAR, pause.start, f"paused until the next switch-on{why}", None,
                        detail={"paused_until": None, "until_on": True})
    return Decision(rule, CLEAR, pause.start, f"paused until {clock.hhmm(pause.end, now)}{why}",
                    pause.end, detail={"paused_until": pause.end})


def _unreported(t0: int, cx: Context, hidden: int | None = None) -> str:
    """The evidence's note when the spell is counted from an LTE-M bulb's report gap, or from
    the end of the server's own outage (hidden: cx.hidden unless given)."""
    clock, now = cx.clock, cx.now
    hidden = cx.hidden if hidden is None else hidden
    if hidden is None or hidden <= t0:
        return ""
    deaf = [(s, e) for s, e in cx.settings.deaf if e == hidden]
    if deaf:
        return (f"; counted from {clock.hhmm(hidden, now)}: the server was not listening from "
                f"{_bare(clock.hhmm(deaf[0][0], now))} until then, and a switch-on in that time "
                "reaches it only with her next one")
    return (f"; counted from {clock.hhmm(hidden, now)}: an LTE-M bulb may not have reported "
            f"switch-ons until then")


def _no_activity(cx: Context) -> Decision:
    ivs, settings, now, clock, pause, hidden = (cx.ivs, cx.settings, cx.now, cx.clock, cx.pause,
                                                cx.hidden)
    rule, note = "no_activity", ""
    if pause:
        return _paused_decision(rule, pause, cx)
    limit = settings.no_activity_h * HOUR_MS
    t0, last = _gap_start(ivs, settings, now)
    if t0 is None:
        return Decision(rule, CLEAR, None, "no switch-on recorded yet", None)
    # a switch-on an LTE-M bulb has not reported yet can be as late as `hidden`
    deadline = _ms(max(t0, hidden if hidden is not None else t0) + limit)
    what = (f"light switched on {_when(last, clock, now)}" if last and last.start_latest == t0
            else f"pause ended at {clock.hhmm(t0, now)}")
    note += _unreported(t0, cx)
    detail = {"last_on": t0, "gap_h": (now - t0) / HOUR_MS, "limit_h": (deadline - t0) / HOUR_MS}
    if hidden is not None and hidden > t0:
        detail["unreported_until"] = hidden
    if now >= deadline:
        return Decision(rule, OPEN, deadline,
                        f"no switch-on for {(now - t0) / HOUR_MS:.0f} h: last {what}{note}",
                        None, at=t0, detail=detail)
    return Decision(rule, CLEAR, t0, what + note, deadline, at=t0, detail=detail)


def _daily_window(cx: Context) -> Decision:
    ivs, settings, now, clock, pause, hidden = (cx.ivs, cx.settings, cx.now, cx.clock, cx.pause,
                                                cx.hidden)
    rule = "daily_window"
    if pause:
        return _paused_decision(rule, pause, cx)
    w = settings.window_start
    ws = w.hour * HOUR_MS + w.minute * MINUTE_MS
    loc = clock.local_ms(now)
    length = _ms(settings.window_h * HOUR_MS)
    # the latest window that has ended by now
    start = math.floor((loc - ws - length) / DAY_MS) * DAY_MS + ws
    end = start + length
    nxt_end = end + DAY_MS
    s_u, e_u = start - clock.off, end - clock.off
    t0, last = _gap_start(ivs, settings, now)
    in_window = [iv for iv in ivs if s_u <= iv.start_latest < e_u]
    overlaps_pause = any(p.start < e_u and p.end > s_u for p in settings.pauses)
    label = f"{w.strftime('%H:%M')} + {settings.window_h:g} h"
    # a switch-on an LTE-M bulb has not reported may lie in the window (or after it)
    unreported = hidden is not None and t0 is not None and hidden > max(t0, s_u)
    if (in_window or overlaps_pause or t0 is None or (t0 is not None and t0 >= e_u)
            or unreported):
        ev = (f"light switched on {_when(last, clock, now)}" if last else "no switch-on yet")
        if unreported and not in_window and t0 is not None and t0 < e_u:
            ev += _unreported(t0, cx)
        return Decision(rule, CLEAR, t0, ev, nxt_end - clock.off, at=t0,
                        detail={"window": label})
    last_what = (f"last light switched on {_when(last, clock, now)}" if last
                 else "no switch-on recorded yet")
    return Decision(rule, OPEN, e_u,
                    f"no switch-on in the window from {clock.hhmm(s_u, now)} ({label}); "
                    f"{last_what}",
                    None, at=t0, detail={"window": label})


def _on_too_long(cx: Context) -> list[Decision]:
    """Per bulb: its open visit known lit (uptime, delivered heartbeats) for longer than that
    bulb's visits starting at that hour usually last. When the heartbeats stop, the lamp is
    probably off (or the radio is down): said so, and the alert is not kept open."""
    ivs, tl, now, clock, pause, m = cx.ivs, cx.tl, cx.now, cx.clock, cx.pause, cx.model
    assert m is not None
    out = []
    latest: dict[str, Interval] = {}
    before: dict[str, Interval] = {}  # each bulb's visit before its latest
    for iv in ivs:
        if iv.device in latest:
            before[iv.device] = latest[iv.device]
        latest[iv.device] = iv
    for dev, iv in sorted(latest.items()):
        if pause:
            out.append(replace(_paused_decision("on_too_long", pause, cx), subject=dev))
            continue
        bm = m.bulbs.get(dev)
        mine = [x for x in ivs if x.device == dev]
        limit, usual, learning = on_threshold(cx, bm, mine, iv)
        seen = tl.devices.get(dev)
        if iv.ended_by == "open" and iv.on_ms >= limit:
            lit_until = (iv.end_earliest if iv.end_earliest is not None
                         else iv.start_latest + iv.on_ms)
            quiet_for = _stale_after(bm, seen.heartbeat_ms if seen else 15 * MINUTE_MS)
            heard = seen.last_heard if seen and seen.last_heard is not None else lit_until
            detail = {"on_h": iv.on_ms / HOUR_MS, "limit_h": limit / HOUR_MS, "usual_h": usual / HOUR_MS,
                      "lit_until": lit_until}
            if now - heard > quiet_for:  # its heartbeats stopped: probably switched off
                out.append(Decision(
                    "on_too_long", CLEAR, heard,
                    f"no report from the bulb since {clock.hhmm(heard, now)} (light on since "
                    f"{clock.hhmm(iv.start_latest, now)}, {iv.on_ms / HOUR_MS:.1f} h until then): "
                    "the light was probably switched off, or its radio is down",
                    None, subject=dev, at=iv.start_latest,
                    detail=detail | {"probably_off": True}))
                continue
            why = (f"; this bulb's visits starting then usually last up to {_lit_for(usual)}"
                   if usual > 0 else "")
            if learning:
                why += " (still learning this bulb's room)"
            out.append(Decision(
                "on_too_long", OPEN, _ms(iv.start_latest + limit),
                f"light on since {clock.hhmm(iv.start_latest, now)}, still on at "
                f"{clock.hhmm(lit_until, now)} ({iv.on_ms / HOUR_MS:.1f} h){why}",
                heard + quiet_for, subject=dev, at=iv.start_latest,
                detail=detail | {"strength": "weak" if learning else "strong"},
                strength="weak" if learning else "strong"))
        else:
            prev = before.get(dev)
            if prev is not None and (iv.ended_by == "open" or prev.on_ms >= limit):
                # lit again since the visit before ended (the one that was on too long, if any)
                ev = f"{_switched_off(prev, clock, now)}; on again {_when(iv, clock, now)}"
            elif iv.ended_by != "open":
                ev = _switched_off(iv, clock, now)
            else:
                ev = f"light on for {iv.on_ms / MINUTE_MS:.0f} min so far"
            out.append(Decision("on_too_long", CLEAR, iv.start_latest, ev, None, subject=dev,
                                at=iv.start_latest, detail={"limit_h": limit / HOUR_MS}))
    return out


COLD_ON_H = 8.0  # before a bulb shows its room: a lamp lit a whole evening is not unusual yet
COLD_VISITS = 3  # ... it shows its room with this many visits (a toilet: by its first noon)
ON_MIN_MS = 30 * MINUTE_MS  # never call a visit too long under half an hour


def on_threshold(cx: Context, bm: mdl.BulbModel | None, mine: list[Interval],
                 iv: Interval) -> tuple[float, float, bool]:
    """(ms lit that make this visit unusually long, the longest such visit seen, learning)
    for a visit of this bulb starting when `iv` did: the tail of its visit lengths near that
    hour, never below 1.2 x the longest seen there, at most on_too_long_h unless this bulb's
    visits are that long already (then 1.5 x the longest)."""
    settings, clock = cx.settings, cx.clock
    h = mdl._hour(iv.start_latest, clock.off)
    folded_to = 0  # visits not folded into the model yet count toward the longest seen
    if bm is not None and bm.recent:
        folded_to = mdl.day_start(int(bm.recent[-1][0]) + 1, settings.tz)
    near = [_length_of(x) for x in mine if x is not iv and x.ended_by != "open"
            and x.start_latest >= folded_to
            and min(abs(mdl._hour(x.start_latest, clock.off) - h),
                    24 - abs(mdl._hour(x.start_latest, clock.off) - h)) <= 2]
    base = settings.on_too_long_h * HOUR_MS
    if bm is None or bm.n_days == 0:
        # no settled day yet: once the bulb has shown a few visits, all short, it is not a room
        # lit for whole evenings; before that, a lit evening is not unusual yet
        ended = [_length_of(x) for x in mine if x is not iv and x.ended_by != "open"]
        seen = max(ended, default=0.0)
        cold = 0.0 if len(ended) >= COLD_VISITS else COLD_ON_H * HOUR_MS
        return max(base, cold, 1.5 * seen), seen, True
    pooled = bm.durations(h, 2)
    if sum(pooled) < 5:
        pooled = bm.durations(h, 12)
    seen = max([mdl.longest(pooled, mdl.DUR_EDGES)] + near)
    alpha = 1.0 / (max(bm.per_day(), 0.1) * settings.on_days_per_false_alert)
    thr, _ = mdl.tail(pooled, mdl.DUR_EDGES, alpha, floor=0.15, log=True)
    thr = min(max(thr, 1.2 * seen), max(base, 1.5 * seen))
    return max(thr, ON_MIN_MS), seen, bm.n_days < settings.learn_min_days


def _length_of(iv: Interval) -> float:
    return iv.on_ms / 0.95 if iv.ended_by == "alive" else iv.on_ms


def _stale_after(bm: mdl.BulbModel | None, heartbeat_ms: int) -> int:
    """How long a lit bulb may go unheard before its lamp is read as probably off: enough
    heartbeats that all of them failing is a one-in-a-thousand event for this bulb's radio."""
    f = 0.05
    if bm is not None and bm.attempts >= 5:
        f = min(0.7, max(0.05, bm.fails / bm.attempts))
    k = max(2, math.ceil(math.log(0.001) / math.log(f)))
    return k * heartbeat_ms + 5 * MINUTE_MS


def _lit_for(on_ms: float) -> str:
    """"3 h 12 min", "3 h", "45 min"."""
    h, m = divmod(int(on_ms // MINUTE_MS), 60)
    return f"{h} h {m} min" if h and m else f"{h} h" if h else f"{m} min"


def _switched_off(iv: Interval, clock: _Clock, now: int) -> str:
    """How an ended visit ended: "light switched off at 14:05 after 3 h 12 min"; when only
    bounded (no dying gasp), between the last mark and the bound, lit at least on_ms."""
    assert iv.end_latest is not None  # an ended visit (not "open")
    lit = _lit_for(iv.on_ms)
    if iv.ended_by != "off":
        lit += " or more"
    if iv.end_earliest is None:
        return f"light switched off by {clock.hhmm(iv.end_latest, now)} after {lit}"
    lo, hi = clock.hhmm(iv.end_earliest, now), clock.hhmm(iv.end_latest, now)
    if lo == hi:
        return f"light switched off {_at(iv.end_latest, clock, now)} after {lit}"
    return f"light switched off between {lo} and {hi} after {lit}"


def _silence_start(settings: RuleSettings, t: float | None, now: int) -> float | None:
    """When a bulb's silence began: t (last heard, or registered), or the end of a pause that
    ended after it (a bulb in an empty home is not silent)."""
    if t is None:
        return None
    for end in sorted([p.end for p in settings.pauses] + [e for _, e in settings.deaf]):
        if t < end <= now:  # ... or of the server's own outage (it heard no one then)
            t = end
    return t


def _bulb_silent(cx: Context) -> list[Decision]:
    tl, settings, now, clock = cx.tl, cx.settings, cx.now, cx.clock
    out = []
    for dev, seen in sorted(tl.devices.items()):
        if seen.last_heard is None:
            reg = seen.registered_at
            since = _silence_start(settings, reg, now)
            due = None if since is None else _ms(since + settings.never_heard_h * HOUR_MS)
            paused = _paused(settings, now)
            if due is not None and now >= due and not paused:
                out.append(Decision("bulb_silent", OPEN, due,
                                    f"bulb {dev} registered {clock.hhmm(reg, now)}, never heard",
                                    None, "coordinator", dev))
            else:
                nxt = paused.end if paused and due is not None and now >= due else due
                out.append(Decision("bulb_silent", CLEAR, reg, f"bulb {dev} not heard yet", nxt,
                                    "coordinator", dev))
            continue
        since = _silence_start(settings, seen.last_heard, now)
        assert since is not None
        due = _ms(since + settings.silent_h * HOUR_MS)
        paused = _paused(settings, now)
        if now >= due and not paused:
            out.append(Decision("bulb_silent", OPEN, due,
                                f"bulb {dev} last heard {clock.hhmm(seen.last_heard, now)}",
                                None, "coordinator", dev, at=seen.last_heard))
        else:
            nxt = paused.end if paused and now >= due else due
            out.append(Decision("bulb_silent", CLEAR, seen.last_heard,
                                f"bulb {dev} heard {clock.hhmm(seen.last_heard, now)}", nxt,
                                "coordinator", dev, at=seen.last_heard))
    return out


def _delays(mine: list[Interval], gap: int) -> list[float]:
    """How late each visit of one bulb reached the server, beyond what its reporting explains.
    A visit's delay counts from the middle of its start bounds (exact when anchored). An LTE-M
    bulb holds power-ons for up to `gap` after a report: its visit is late only when it arrived
    after the first later visit that started `gap` after it (that one was due to report)."""
    if gap <= 0:
        return [iv.reported_at - iv.start_mid for iv in mine]
    starts = [iv.start_latest for iv in mine]
    out = []
    for iv in mine:
        j = bisect.bisect_left(starts, iv.start_latest + gap)
        out.append(iv.reported_at - starts[j] if j < len(starts) else -math.inf)
    return out


LATE_IN_A_ROW = 3  # so many visits in a row reaching the server late: an outage


def _poor_delivery(cx: Context) -> list[Decision]:
    """Per bulb, over the last late_days: visits that reached the server late (beyond what an
    LTE-M bulb's report gap explains), or connection attempts that failed (K_LINK records): a
    router switched off at night or for a day, weak signal. One outage is enough (LATE_IN_A_ROW
    visits held one after another): the coordinator hears of it when its reports arrive,
    before the next one can raise a family alert. For the coordinator only."""
    ivs, tl, settings, now, clock = cx.ivs, cx.tl, cx.settings, cx.now, cx.clock
    out = []
    since = now - settings.late_days * DAY_MS
    for dev in sorted(tl.devices):
        # what the server's own outage held is not the bulb's radio (listening.py)
        mine = [iv for iv in ivs if iv.device == dev
                and not mdl.held_by_server(settings.deaf, iv)]
        delays = _delays(mine, tl.devices[dev].report_gap_ms)
        late_after = settings.late_after_s * SECOND_MS
        recent = [(iv, dl) for iv, dl in zip(mine, delays) if iv.start_latest >= since]
        late_d = [dl for _, dl in recent if dl > late_after]
        late = [iv for iv, dl in recent if dl > late_after]
        frac = len(late) / len(recent) if recent else 0.0
        tries = sum(iv.links for iv, _ in recent)
        failed = sum(iv.links_failed for iv, _ in recent)
        run = in_a_row = 0  # visits held one after another: an outage, not a short visit
        for _, dl in recent:
            run = run + 1 if dl > late_after else 0
            in_a_row = max(in_a_row, run)
        detail = {"visits": len(recent), "late": len(late), "fraction": frac,
                  "attempts": tries, "failed": failed, "late_in_a_row": in_a_row}
        late_open = len(recent) >= settings.late_min_visits and frac >= settings.late_fraction
        fail_open = failed >= 3 and failed >= 0.1 * tries
        if late_open or fail_open or in_a_row >= LATE_IN_A_ROW:
            parts = []
            if late:
                parts.append(f"{len(late)} of {len(recent)} visits in {settings.late_days:g} "
                             f"days reached the server more than "
                             f"{late_after / MINUTE_MS:.0f} min late "
                             f"(worst {max(late_d) / HOUR_MS:.1f} h)")
            if failed:
                parts.append(f"{failed} of {tries} connection attempts failed"
                             + _when_failing([iv for iv, _ in recent if iv.links_failed], clock))
            out.append(Decision(
                "poor_delivery", OPEN, (late or [iv for iv, _ in recent if iv.links_failed])[0]
                .reported_at, f"bulb {dev}: " + "; ".join(parts) + ": check its signal "
                "and the router", None, "coordinator", dev, detail=detail))
        else:
            out.append(Decision("poor_delivery", CLEAR, None,
                                f"bulb {dev}: {len(late)} of {len(recent)} recent visits late, "
                                f"{failed} of {tries} connection attempts failed",
                                None, "coordinator", dev, detail=detail))
    return out


def _when_failing(failing: list[Interval], clock: _Clock) -> str:
    """' (mostly between 23:00 and 06:00)' when most failures fall in one part of the day."""
    if len(failing) < 3:
        return ""
    hours = sorted({mdl._hour(iv.start_latest, clock.off) for iv in failing})
    counts = [0] * 24
    for iv in failing:
        counts[mdl._hour(iv.start_latest, clock.off)] += 1
    best = None
    for h0 in range(24):  # the shortest window of the day holding 80 % of the failures
        for n in range(1, 13):
            if sum(counts[(h0 + k) % 24] for k in range(n)) >= 0.8 * len(failing):
                if best is None or n < best[1]:
                    best = (h0, n)
                break
    if best is None or len(hours) < 2 and best[1] > 1:
        return ""
    h0, n = best
    return f" (mostly between {h0:02d}:00 and {(h0 + n) % 24:02d}:00)"


def _placement(cx: Context) -> list[Decision]:
    """Per bulb, the placement check (models.placement); a coordinator notice opens when no bulb
    of the household gives enough signal (one good bulb is enough to watch over it)."""
    ivs, tl, settings, now, m = cx.ivs, cx.tl, cx.settings, cx.now, cx.model
    assert m is not None
    checks = placements(ivs, tl, m, now)
    best = min((mdl.RANK[p.verdict] for p in checks.values()), default=mdl.RANK["learning"])
    out = []
    for dev, p in sorted(checks.items()):
        detail = {"verdict": p.verdict, "days": p.days, "used_days": p.used_days,
                  "per_day": p.per_day, "longest_gap_h": p.longest_gap_h,
                  "held_h": p.held_h, "held_days": p.held_days}
        weak = p.verdict in ("poor", "limited") and best >= mdl.RANK["limited"]
        nxt = None  # a verdict changes with new visits, or with days of quiet the gap rules see
        if p.verdict == "learning":  # it speaks once its first PLACEMENT_DAYS have settled
            bm = m.bulbs.get(dev)
            left = mdl.PLACEMENT_DAYS - (bm.n_days if bm else 0)
            nxt = mdl.next_fold(settings.tz, now) + max(0, left - 1) * DAY_MS
        out.append(Decision("placement", OPEN if weak else CLEAR, None, p.words, nxt,
                            "coordinator", dev, detail=detail))
    return out


def placements(ivs: list[Interval], tl: Timeline, m: mdl.HouseholdModel,
               now: int) -> dict[str, mdl.Placement]:
    """The placement check of each bulb of the household (its gap still open counts)."""
    last: dict[str, float] = {}
    for iv in ivs:
        last[iv.device] = iv.start_latest
    out = {}
    for dev in sorted(set(tl.devices) | set(m.bulbs)):
        bm = m.bulbs.get(dev) or mdl.BulbModel(dev)
        seen = tl.devices.get(dev)
        since = last.get(dev, seen.registered_at if seen else None)
        out[dev] = mdl.placement(bm, (now - since) / HOUR_MS if since is not None else 0.0)
    return out


# ---------------------------------------------------------------- the learned rule


def _unusual_quiet(cx: Context) -> Decision:
    """The learned rule: alert when the current quiet spell is improbable for this household.
    cx.hidden: the latest instant of a switch-on not reported yet (LTE-M report gap), if any."""
    rule = "unusual_quiet"
    ivs, tl, settings, now, clock, pause, hidden, m = (
        cx.ivs, cx.tl, cx.settings, cx.now, cx.clock, cx.pause, cx.hidden, cx.model)
    assert m is not None
    if pause:
        return _paused_decision(rule, pause, cx)
    t0, last = _gap_start(ivs, settings, now)
    if t0 is None:
        return Decision(rule, CLEAR, None, "no switch-on recorded yet", None)
    checks = placements(ivs, tl, m, now)
    mass = mdl.Mass(m.rates(), clock.off)
    # the server's own outages in her spell: the learned rule leaves their hours out (Listened);
    # the fixed rule, and this one while learning, count from the last one's end (`hidden`)
    deaf = [(max(s, t0), e) for s, e in settings.deaf if e > t0 and s < now]
    fixed_from = hidden if hidden is not None and hidden > t0 else t0
    later = fixed_from
    reasons: list[str] = []
    note = ""
    thr = None
    fits = False
    as_fixed = False  # the wait is the fixed rule's own (a busy room while learning)
    if m.n_days < settings.learn_min_days or m.n_spells < 20:
        wait_h = learning_wait_h(ivs, tl, settings, t0)
        as_fixed = wait_h <= settings.no_activity_h
        deadline = _ms(later + wait_h * HOUR_MS)
        reasons.append("learning")
        note = (f" (still learning this household's rhythm: the fixed "
                f"{settings.no_activity_h:g} h rule until then)" if wait_h <= settings.no_activity_h
                else f" (still learning this household's rhythm: waiting {wait_h:.0f} h, as its "
                f"rooms are not used several times a day)")
    else:
        if deaf:
            mass = mdl.Listened(mass, deaf)
            lte = _hidden_until(tl, now)  # an LTE-M bulb's report gap alone
            later = lte if lte is not None and lte > t0 else t0
            off_h = sum(e - s for s, e in deaf) / HOUR_MS
            note += (f"; the {off_h:.0f} h the server was not listening (from "
                     f"{_bare(clock.hhmm(deaf[0][0], now))} to {clock.hhmm(deaf[-1][1], now)}) "
                     "are not counted: a switch-on then reaches it only with her next one")
        recent = _recent_spells(cx, mass)
        # a household watched through a room used every day keeps the promise of
        # learned_max_h; one whose rooms go long unused waits as long as its own recent spells
        fits = any(p.verdict == "good" for p in checks.values())
        deadline, rhythm, thr, suspect = _learned_deadline(cx, mass, t0, recent, fits)
        if later > t0:  # the spell may have begun as late as `hidden`: the later deadline
            d2, r2, thr2, s2 = _learned_deadline(cx, mass, later, recent, fits)
            if d2 > deadline:
                deadline, rhythm, thr, suspect = d2, r2, thr2, s2
        if suspect:  # its radio's delays call for a longer wait than the rhythm's
            radio = max(m.bulbs.values(), key=lambda b: b.longest_held_h())
            reasons.append("radio")
            note += (f"; bulb {radio.device}'s reports have reached the server up to "
                     f"{radio.longest_held_h():.0f} h late before: this silence may be its "
                     "radio")
            radio_h = radio.longest_held_h()
        rhythm_h = (rhythm - t0) / HOUR_MS
    if checks and min(mdl.RANK[p.verdict] for p in checks.values()) == mdl.RANK["poor"]:
        reasons.append("placement")
        note += "; the bulb's room is not used every day (see its placement check)"
    what = (f"light switched on {_when(last, clock, now)}" if last and last.start_latest == t0
            else f"pause ended at {clock.hhmm(t0, now)}")
    what += _unreported(t0, cx, later)  # the instant this rule counts from
    expected = mass.at(now) - mass.at(t0)
    detail = {"last_on": t0, "gap_h": (now - t0) / HOUR_MS, "limit_h": (deadline - t0) / HOUR_MS,
              "expected": expected, "threshold": thr, "history_days": m.days,
              "reasons": reasons, "fits": fits}
    if hidden is not None and hidden > t0:
        detail["unreported_until"] = hidden
    if "radio" in reasons:
        detail["radio_h"] = radio_h
        detail["rhythm_h"] = rhythm_h  # the wait the rhythm alone would give
    if now >= deadline:
        firm = t0 + 2 * (deadline - t0)  # weak evidence firms up at twice the wait
        strength = "weak" if reasons and now < firm else "strong"
        fixed_at = _ms(fixed_from + settings.no_activity_h * HOUR_MS)  # the fixed rule's alert
        # where the household fits, or while learning a busy room waits the fixed rule's own
        # hours, the family is never told later than the fixed rule would tell them
        promise = fits or as_fixed
        if strength == "weak" and promise and now >= fixed_at:
            # the fixed rule would tell the family now: an alert on weak evidence is not held
            # for their quiet hours then (it still neither reminds at night nor escalates)
            detail["tell_now"] = True
        elif strength == "weak" and promise:
            # held for quiet hours, but never past the instant the fixed rule would tell them
            detail["tell_by"] = fixed_at
        usual = ("" if thr is None else
                 f"; on a usual day about {expected:.0f} switch-ons happen in that time "
                 f"(learned over {m.days:.0f} days)")
        return Decision(
            rule, OPEN, deadline,
            f"no switch-on for {(now - t0) / HOUR_MS:.0f} h: last {what}{usual}{note}",
            firm if strength == "weak" else None, at=t0,
            detail=detail | {"strength": strength}, strength=strength)
    return Decision(rule, CLEAR, t0, what + note,
                    min(deadline, mdl.next_fold(settings.tz, now)), at=t0, detail=detail)


GP_SHAPE = 0.5  # while learning: a weak Gamma(0.5, 0.25 day) prior on the daily switch-on rate
GP_DAYS = 0.25
LEARNING_MAX = 3.0  # ... and never more than this many times no_activity_h
LEARNING_BUSY = 2.5  # switch-ons a day from which a learning room gets the fixed rule


def learning_wait_h(ivs: list[Interval], tl: Timeline, settings: RuleSettings, t0: int) -> float:
    """While learning: a room used several times a day so far (LEARNING_BUSY switch-ons a day
    or more) gets the fixed rule's no_activity_h. Otherwise: how many hours of quiet are
    improbable enough from the switch-ons seen so far (a Gamma-Poisson prediction), at least
    no_activity_h and at most LEARNING_MAX x no_activity_h (with a handful of switch-ons the
    prediction alone would wait for weeks: the first pass gave a short history 113452 h); or,
    when longer, 1.25 x the longest quiet spell seen so far, as the learned rule waits in a
    room not used every day (so never more than the history itself tells). A room used once a
    day so waits longer than the fixed rule, which would alert on every late evening of it
    before the placement check can speak (docs/alerts.md section 4)."""
    regs = [d.registered_at for d in tl.devices.values() if d.registered_at is not None]
    first = min([ivs[0].start_latest] + regs) if ivs else t0
    paused = sum(max(0.0, min(p.end, t0) - max(p.start, first)) for p in settings.pauses)
    n = sum(1 for iv in ivs if iv.start_latest < t0)
    a = GP_SHAPE + n
    b = GP_DAYS + max(0.0, t0 - first - paused) / DAY_MS
    n_h = settings.no_activity_h
    if n / b >= LEARNING_BUSY:
        return n_h
    alpha = 1.0 / (a / b * settings.days_per_false_alert)
    days = b * (alpha ** (-1.0 / a) - 1.0) if a * 50 > -math.log(alpha) else math.inf
    starts = [iv.start_latest for iv in ivs if iv.start_latest <= t0]
    longest = max((y - x for x, y in itertools.pairwise(starts)
                   if not any(x < p.end and p.start < y for p in settings.pauses)), default=0.0)
    return max(min(max(n_h, days * 24.0), LEARNING_MAX * n_h), 1.25 * longest / HOUR_MS)


def _recent_spells(cx: Context, mass: mdl.Mass) -> list[tuple[float, float, float]]:
    """(start, expected switch-ons, hours) of the quiet spells ended since the model's last
    day (not folded yet: they join the spells the rule is judged against)."""
    ivs, m, settings = cx.ivs, cx.model, cx.settings
    assert m is not None
    if m.day is None:
        return []
    end = mdl.day_start(m.day + 1, settings.tz)
    ts = sorted(iv.start_mid for iv in ivs if iv.start_mid >= end)  # as models.days_of
    prev, out = m.last_on, []
    for t in ts:
        if prev is not None and t > prev and not any(prev < p.end and p.start < t
                                                     for p in settings.pauses):
            out.append((prev, mass.at(t) - mass.at(prev), (t - prev) / HOUR_MS))
        prev = t
    return out


@dataclass(frozen=True, slots=True)
class Spells:
    """The quiet spells a spell begun at one local hour is judged against, in expected
    switch-ons under the current rhythm: those that began within +-bucket_h of that hour (all
    of them when too few), their 80th percentile `u`, an exponential tail above it with scale
    `beta` (fitted on all spells: peaks over threshold), and `alpha`, the chance of exceeding
    that makes one false alert in days_per_false_alert household-days."""

    hist: tuple[float, ...]
    total: float
    u: float
    beta: float
    alpha: float

    def survival(self, x: float) -> float:
        """P(a spell lasts `x` expected switch-ons or more): the histogram below u (log-linear
        within a bin, as models.quantile), the fitted tail above."""
        if x <= 0:
            return 1.0
        if x >= self.u:
            return mdl.TAIL_Q * math.exp(-(x - self.u) / self.beta)
        edges = mdl.MASS_EDGES
        i = mdl._bin(edges, x)
        above = sum(self.hist[i + 1:])
        lo = edges[i - 1] if i > 0 else edges[0] / (edges[1] / edges[0])
        hi = mdl._upper(edges, i)
        frac = 1.0 - math.log(max(x, lo) / lo) / math.log(hi / lo) if x > 0 else 1.0
        return min(1.0, (above + frac * self.hist[i]) / self.total)

    @property
    def threshold(self) -> float:
        """The spell (expected switch-ons) exceeded with probability alpha."""
        if self.alpha >= mdl.TAIL_Q:
            return self.u
        return self.u + self.beta * math.log(mdl.TAIL_Q / self.alpha)


def spells_near(cx: Context, mass: mdl.Mass, t0: int,
                recent: list[tuple[float, float, float]], max_h: float = math.inf) -> Spells:
    """The spells a quiet spell begun at t0 is judged against (see Spells): those shorter than
    max_h hours. A household whose deadline is capped at learned_max_h passes that cap: a
    longer spell (a night away) alerts whatever the tail says, so it is counted apart and does
    not stretch the tail that sets the shorter deadlines; otherwise every spell is data."""
    m, settings, clock = cx.model, cx.settings, cx.clock
    assert m is not None
    h = mdl._hour(t0, clock.off)
    b = int(settings.bucket_h)
    every, pooled = _pooled(m, mass, h, b, max_h, cx.memo)
    if not any(every) and math.isfinite(max_h):  # no short spell at all: every spell
        every, pooled = _pooled(m, mass, h, b, math.inf, cx.memo)
    recent = [r for r in recent if r[2] < max_h]
    if recent:
        every, pooled = list(every), list(pooled)
        for s, e, _ in recent:
            i = mdl._bin(mdl.MASS_EDGES, e)
            every[i] += 1.0
            if min((mdl._hour(s, clock.off) - h) % 24, (h - mdl._hour(s, clock.off)) % 24) <= b:
                pooled[i] += 1.0
    total = sum(every)
    days = m.days + len({int((s + clock.off) // DAY_MS) for s, _, _ in recent})
    _, beta = mdl.tail(every, mdl.MASS_EDGES, days / (total * settings.days_per_false_alert),
                       floor=0.3)
    n = sum(pooled)
    if n >= 15:
        share = min(1.0, (2 * b + 1) / 24)
        hist, alpha = pooled, days * share / (n * settings.days_per_false_alert)
    else:
        hist, n, alpha = every, total, days / (total * settings.days_per_false_alert)
    u = mdl.quantile(hist, mdl.MASS_EDGES, 1 - mdl.TAIL_Q)
    return Spells(tuple(hist), n, u, beta if math.isfinite(beta) else 0.3, alpha)


def _pooled(m: mdl.HouseholdModel, mass: mdl.Mass, h: int, b: int,
            max_h: float = math.inf, memo: Memo | None = None
            ) -> tuple[list[float], list[float]]:
    """(all spells, spells begun within +-b hours of h) of the model shorter than max_h hours,
    in expected switch-ons under `mass` (kept in the memo per hour: a replay asks again and
    again)."""
    kept = (memo or Memo()).of(m)._pooled
    key = (m.day, m.n_spells, tuple(mass.rates), b, max_h)
    hit = kept.get(max_h)
    if hit is None or hit[0] != key:
        by_hour = mdl.spell_masses(m, mass, max_h)
        hit = kept[max_h] = (key, [sum(col) for col in zip(*by_hour)], {}, by_hour)
    _, every, per_hour, by_hour = hit
    if h not in per_hour:
        per_hour[h] = [sum(col) for col in zip(*(by_hour[(h + k) % 24]
                                                 for k in range(-b, b + 1)))]
    return every, per_hour[h]


def held(m: mdl.HouseholdModel, memo: Memo | None = None
         ) -> list[list[tuple[float, float]]] | None:
    """Per local hour k: [(hours, share)]: the chance that the household's next switch-on, at
    hour k, has its report held that many hours (its bulbs' delay histories, weighted by their
    use at that hour). None when no bulb has reported late."""
    memo = (memo or Memo()).of(m)
    if memo._held_known:
        return memo._held
    out: list[list[tuple[float, float]]] | None = None
    rates = {dev: bm.rates() for dev, bm in m.bulbs.items()}
    tot = [sum(r[k] for r in rates.values()) for k in range(24)]
    for dev, bm in m.bulbs.items():
        if not any(bm.late) or bm.longest_held_h() <= 0:
            continue
        out = out or [[] for _ in range(24)]
        for k, pairs in enumerate(bm.held_shares()):
            w = rates[dev][k] / tot[k] if tot[k] > 0 else 0.0
            out[k].extend((e, w * p) for e, p in pairs)
    memo._held, memo._held_known = out, True
    return out


def _learned_deadline(cx: Context, mass: mdl.Mass, t0: int,
                      recent: list[tuple[float, float, float]],
                      fits: bool = True) -> tuple[float, float, float, bool]:
    """(deadline, the deadline the rhythm alone gives, threshold, whether the radio is suspect)
    of a quiet spell that began at t0.

    The rhythm: the instant its expected count of switch-ons reaches the threshold of the
    spells begun near that hour (Spells: a household that fits judges only against its spells
    shorter than learned_max_h), at least learned_min_h; at most the cap: learned_max_h, or
    (fits False: no room of the household is used every day, several times) 1.25 x this
    household's longest recent spell when that is longer.

    The radio: the server hears of a switch-on only when its report arrives. The chance that
    it has heard nothing by t although she is well is the chance that no switch-on happened
    (the rhythm's survival) plus, for each hour j in which the spell could have ended, the
    chance it ended then times the chance that this switch-on's report is still held at t (the
    delays its bulb's visits begun near that hour have shown: a delay runs until the next
    report, so it holds the wait for the next switch-on after an outage too). The deadline is
    the first hour at which that sum is below alpha (or the chance the capped rhythm deadline
    accepts) plus alpha / 2: a radio that adds less than half the budget does not move it.
    When it would move it, the radio is suspect at this hour (the alert is then weak and says
    it may be the radio): the deadline is the radio's, up to learned_max_h plus the longest
    delay seen, plus a day; where the household fits, never past learned_max_h (never slower
    than the fixed rule)."""
    m, settings = cx.model, cx.settings
    assert m is not None
    key = (m.day, m.n_spells, t0, fits, tuple(recent), mass.rates[0], settings,
           getattr(mass, "spans", ()))
    hit = cx.memo.of(m)._deadlines
    if key in hit:
        return hit[key]
    sp = spells_near(cx, mass, t0, recent,
                     settings.learned_max_h if fits else math.inf)
    window = [x for r in m.spell_recent if m.day is not None
              and r[0] > m.day - settings.learn_days for _, x in r[1]]
    longest = max(window + [x for _, _, x in recent] + [0.0])
    cap_h = settings.learned_max_h if fits else max(settings.learned_max_h, 1.25 * longest)
    thr = sp.threshold
    rhythm = max(mass.until(t0, thr, cap_h * HOUR_MS),
                 _ms(mass.after(t0, settings.learned_min_h * HOUR_MS)))
    out = rhythm, rhythm, thr, False
    g = held(m, cx.memo)
    if g is not None:
        radio = _radio_deadline(sp, mass, t0, rhythm, cap_h, g, cx.clock)
        if radio > rhythm:
            most = _ms(mass.after(t0, cap_h * HOUR_MS)) if fits else math.inf
            out = max(rhythm, min(radio, most)), rhythm, thr, True
    if len(hit) > 4096:
        hit.clear()
    hit[key] = out
    return out


def _radio_deadline(sp: Spells, mass: mdl.Mass, t0: int, rhythm: float, cap_h: float,
                    g: list[list[tuple[float, float]]], clock: _Clock) -> float:
    """The deadline with the radio's delays (see _learned_deadline), on an hourly grid from
    t0: weight[b] is the chance that the spell ended and its report was held until hour b
    (hours rounded up: never kinder)."""
    longest_held = max((e for row in g for e, _ in row), default=0.0)
    n_max = math.ceil(cap_h + longest_held) + 24
    base = mass.at(t0)
    cum = [mass.at(t0 + j * HOUR_MS) - base for j in range(n_max + 1)]
    surv = [sp.survival(x) for x in cum]
    weight = [0.0] * (n_max + 1)
    for j in range(n_max):
        f = surv[j] - surv[j + 1]
        if f <= sp.alpha * 1e-3:
            continue
        for e, p in g[mdl._hour(t0 + (j + 0.5) * HOUR_MS, clock.off)]:
            weight[min(n_max, j + 1 + math.ceil(e))] += f * p
    # the chance the rhythm deadline accepts (more than alpha when capped); a radio that adds
    # less than half of alpha to it does not move the deadline
    level = max(sp.alpha, sp.survival(mass.at(rhythm) - base)) + sp.alpha / 2
    n = first = max(1, math.ceil((rhythm - t0) / HOUR_MS - 1e-9))
    held_now = sum(weight[n:])  # spells over, whose report is still held at hour n
    while n < n_max:
        if surv[n] + held_now <= level:
            break
        held_now -= weight[n]
        n += 1
    return rhythm if n == first else max(rhythm, t0 + n * HOUR_MS)


# ---------------------------------------------------------------- replay (measurement, dashboard)


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert of a rule, as a sweeper driven by next_check would have raised it."""

    rule: str
    opened: int  # Decision.since of the opening decision
    seen: int  # when the evaluation that opened it ran
    cleared: int | None


def replay(tl: Timeline, settings: RuleSettings, start: float, end: float,
           rule: str, memo: Memo | None = None) -> list[Episode]:
    """Alerts of one household rule between start and end, evaluating only when the sweeper
    would (at next_check) or a visit arrives (just after it starts), as the server does."""
    memo = memo or Memo()
    starts = memo.starts(tl)
    out: list[Episode] = []
    cur: Episode | None = None
    t = start
    while t < end:
        d = next(x for x in evaluate_rule(tl, settings, t, rule, memo=memo))
        if d.state == OPEN and cur is None:
            cur = Episode(rule, d.since if d.since is not None else t, t, None)
        elif d.state == CLEAR and cur is not None:
            out.append(Episode(rule, cur.opened, cur.seen, t))
            cur = None
        i = bisect.bisect_right(starts, t)
        nxt_visit = starts[i] + SECOND_MS if i < len(starts) else math.inf
        nxt = d.next_check if d.next_check is not None and d.next_check > t else math.inf
        t = min(nxt, nxt_visit, end)
    if cur is not None:
        out.append(cur)
    return out


def evaluate_rule(tl: Timeline, settings: RuleSettings, now: int, rule: str,
                  model: mdl.HouseholdModel | None = None,
                  memo: Memo | None = None) -> list[Decision]:
    """Only the household-level gap rule named (replay needs no other rule)."""
    if rule not in _GAP_RULES:
        raise ValueError(f"replay: unknown rule {rule!r} (no_activity, daily_window, "
                         "unusual_quiet)")
    cx = context(tl, settings, now, model, memo, learn=rule == "unusual_quiet")
    return [_GAP_RULES[rule](cx)]


# the household-level gap rules (RuleSettings.activity_rule chooses one), by name
_GAP_RULES: dict[str, Callable[[Context], Decision]] = {
    "no_activity": _no_activity, "daily_window": _daily_window, "unusual_quiet": _unusual_quiet}
