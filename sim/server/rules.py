"""The alert rules: (timeline, settings, now) in, decisions out. Pure: no clock, no I/O.

Every rule returns one Decision per subject (the household, or a bulb) with its state now and
`next_check`: the instant at which, absent new records, the answer could change. The sweeper
indexes households by min(next_check); new records trigger an evaluation anyway.

Activity is a switch-on. Where a visit's start is only bounded (a boot that never talked), the
rules use its latest possible start: an alert is raised only when the gap is certain.

Rules (names are stable keys for the alert lifecycle):
- no_activity    no switch-on for N hours (default 24)                        family
- daily_window   no switch-on within a daily window (default 09:00 + 24 h)      family
- unusual_quiet  a gap improbable under the household's own rhythm (learned)    family
- on_too_long    the lamp known lit for M hours straight (default 3)            family
- bulb_silent    a registered bulb never heard, or not heard for long           coordinator
- poor_delivery  visits keep reaching the server late (radio to fix)            coordinator
While a planned absence (pause) covers `now`, family rules are clear with "paused until ...";
gaps are counted from the end of the pause, and the learned rule does not learn from paused days.
A bulb's silence is counted from the end of a pause too (a bulb in an empty home is not silent).

LTE-M bulbs report a power-on only when their last report is lte_report_gap_s old, so a
switch-on may lie unreported up to last_heard + gap (`DeviceSeen.hidden_until`; any later
power-on reports at once). The gap rules count the quiet spell from that instant when it is
later than the last switch-on known: the no-activity deadline is
max(last_on + N, hidden_until + N), the learned rule takes the later of the deadlines from
both, and a daily window such a switch-on could fall in is not judged. Wi-Fi bulbs: unchanged.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sim.server.timeline import Interval, Timeline

OPEN = "open"
CLEAR = "clear"
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Pause:
    """A planned absence, [start, end) in Unix seconds; the household resumes by itself."""

    start: float
    end: float

    @staticmethod
    def from_dates(first: date, last: date, tz: str) -> Pause:
        """Paused from the start of `first` to the end of `last`, household-local dates."""
        z = ZoneInfo(tz)
        s = datetime.combine(first, time(0), z).timestamp()
        e = datetime.combine(last + timedelta(days=1), time(0), z).timestamp()
        return Pause(s, e)


@dataclass(frozen=True, slots=True)
class Settings:
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
    learned_max_h: float = 24.0  # never wait longer than this (the fixed rule's N)
    pauses: tuple[Pause, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str
    state: str  # OPEN or CLEAR
    since: float | None  # when the current state began, as far as the data tell
    evidence: str  # one line for people: "light switched on at 10:42"
    next_check: float | None  # when to look again if no record arrives (None: only on new data)
    audience: str = "family"  # or "coordinator"
    subject: str = ""  # the bulb for per-bulb rules; "" for the household
    at: float | None = None  # the instant the evidence is about (e.g. the last switch-on)
    detail: dict = field(default_factory=dict)  # numbers for templates and translations


def due_at(decisions: list[Decision]) -> float | None:
    """The household's next deadline for the sweeper's index."""
    ts = [d.next_check for d in decisions if d.next_check is not None]
    return min(ts) if ts else None


# ---------------------------------------------------------------- helpers


class _Clock:
    """Local wall-clock arithmetic for one evaluation (the offset at `now`; DST ignored)."""

    def __init__(self, tz: str, now: float) -> None:
        self.z = ZoneInfo(tz)
        off = datetime.fromtimestamp(now, self.z).utcoffset()
        self.off = off.total_seconds() if off else 0.0

    def hhmm(self, t: float, now: float) -> str:
        d = datetime.fromtimestamp(t + self.off, UTC)
        n = datetime.fromtimestamp(now + self.off, UTC)
        if d.date() == n.date():
            return d.strftime("%H:%M")
        if d.date() == (n - timedelta(days=1)).date():
            return d.strftime("yesterday %H:%M")
        return d.strftime("on %a %d %b %H:%M")

    def local_s(self, t: float) -> float:
        return t + self.off


def _paused(settings: Settings, t: float) -> Pause | None:
    for p in settings.pauses:
        if p.start <= t < p.end:
            return p
    return None


def _visible(tl: Timeline, now: float) -> list[Interval]:
    """Visits the server could know of at `now` (replays pass a timeline with later visits)."""
    keys = _starts(tl)
    return list(tl.intervals[: bisect.bisect_right(keys, now)])


_START_CACHE: dict[int, tuple[Timeline, list[float]]] = {}


def _starts(tl: Timeline) -> list[float]:
    hit = _START_CACHE.get(id(tl))
    if hit is None or hit[0] is not tl:
        if len(_START_CACHE) > 64:
            _START_CACHE.clear()
        hit = (tl, [iv.start_latest for iv in tl.intervals])
        _START_CACHE[id(tl)] = hit
    return hit[1]


def _at(t: float, clock: _Clock, now: float) -> str:
    """"at 14:05", "yesterday at 14:05", "on Mon 07 Dec at 14:05"."""
    day, _, hm = clock.hhmm(t, now).rpartition(" ")
    return f"{day} at {hm}" if day else f"at {hm}"


def _when(iv: Interval, clock: _Clock, now: float) -> str:
    if iv.exact_start or iv.start_earliest is None and iv.anchored or (
            iv.start_earliest is not None
            and clock.hhmm(iv.start_earliest, now) == clock.hhmm(iv.start_latest, now)):
        return _at(iv.start_latest, clock, now)  # known to the minute shown
    if iv.start_earliest is None:
        return f"some time before {clock.hhmm(iv.start_latest, now)} (reported late)"
    # a visit that learned the time itself (an anchor, at least its batch's receipt) was not
    # reported late: its range is the anchor's error
    late = "" if iv.anchored else " (reported late)"
    return (f"between {clock.hhmm(iv.start_earliest, now)} and "
            f"{clock.hhmm(iv.start_latest, now)}{late}")


def _hidden_until(tl: Timeline, now: float) -> float | None:
    """The latest instant at which a switch-on may have happened that no bulb has reported yet
    (LTE-M report gap; docs/alerts.md); None when every bulb reports each power-on at once."""
    ts = [h for d in tl.devices.values()
          if (h := d.hidden_until) is not None and d.last_heard is not None and d.last_heard <= now]
    return max(ts) if ts else None


def _gap_start(ivs: list[Interval], settings: Settings, now: float) -> tuple[float | None, Interval | None]:
    """Start of the current quiet spell: last switch-on, or the end of a pause after it."""
    last = ivs[-1] if ivs else None
    t = last.start_latest if last else None
    for p in settings.pauses:
        if p.end <= now and (t is None or p.end > t):
            t = p.end
    return t, last


# ---------------------------------------------------------------- the rules


def evaluate(tl: Timeline, settings: Settings, now: float) -> list[Decision]:
    """Every rule's decision for one household at `now` (Unix s)."""
    clock = _Clock(settings.tz, now)
    ivs = _visible(tl, now)
    out: list[Decision] = []
    pause = _paused(settings, now)
    hidden = _hidden_until(tl, now)
    if settings.activity_rule == "fixed":
        out.append(_no_activity(ivs, settings, now, clock, pause, hidden=hidden))
    elif settings.activity_rule == "daily_window":
        out.append(_daily_window(ivs, settings, now, clock, pause, hidden))
    else:
        out.append(unusual_quiet(ivs, settings, now, clock, pause, hidden))
    out.extend(_on_too_long(ivs, settings, now, clock, pause))
    out.extend(_bulb_silent(tl, settings, now, clock))
    out.extend(_poor_delivery(ivs, tl, settings, now))
    return out


def _paused_decision(rule: str, pause: Pause, clock: _Clock, now: float) -> Decision:
    return Decision(rule, CLEAR, pause.start, f"paused until {clock.hhmm(pause.end, now)}",
                    pause.end, detail={"paused_until": pause.end})


def _unreported(hidden: float | None, t0: float, clock: _Clock, now: float) -> str:
    """The evidence's note when the spell is counted from an LTE-M bulb's report gap."""
    if hidden is None or hidden <= t0:
        return ""
    return (f"; counted from {clock.hhmm(hidden, now)}: an LTE-M bulb may not have reported "
            f"switch-ons until then")


def _no_activity(ivs, settings, now, clock, pause, rule="no_activity", limit_h=None,
                 note="", hidden: float | None = None) -> Decision:
    if pause:
        return _paused_decision(rule, pause, clock, now)
    limit = (limit_h if limit_h is not None else settings.no_activity_h) * HOUR
    t0, last = _gap_start(ivs, settings, now)
    if t0 is None:
        return Decision(rule, CLEAR, None, "no switch-on recorded yet", None)
    # a switch-on an LTE-M bulb has not reported yet can be as late as `hidden`
    deadline = max(t0, hidden if hidden is not None else t0) + limit
    what = (f"light switched on {_when(last, clock, now)}" if last and last.start_latest == t0
            else f"pause ended at {clock.hhmm(t0, now)}")
    note += _unreported(hidden, t0, clock, now)
    detail = {"last_on": t0, "gap_h": (now - t0) / HOUR, "limit_h": (deadline - t0) / HOUR}
    if hidden is not None and hidden > t0:
        detail["unreported_until"] = hidden
    if now >= deadline:
        return Decision(rule, OPEN, deadline,
                        f"no switch-on for {(now - t0) / HOUR:.0f} h: last {what}{note}",
                        None, at=t0, detail=detail)
    return Decision(rule, CLEAR, t0, what + note, deadline, at=t0, detail=detail)


def _daily_window(ivs, settings, now, clock, pause, hidden: float | None = None) -> Decision:
    rule = "daily_window"
    if pause:
        return _paused_decision(rule, pause, clock, now)
    w = settings.window_start
    ws = w.hour * HOUR + w.minute * 60
    loc = clock.local_s(now)
    length = settings.window_h * HOUR
    # the latest window that has ended by now
    start = math.floor((loc - ws - length) / DAY) * DAY + ws
    end = start + length
    nxt_end = end + DAY
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
            ev += _unreported(hidden, t0, clock, now)
        return Decision(rule, CLEAR, t0, ev, nxt_end - clock.off, at=t0,
                        detail={"window": label})
    last_what = (f"last light switched on {_when(last, clock, now)}" if last
                 else "no switch-on recorded yet")
    return Decision(rule, OPEN, e_u,
                    f"no switch-on in the window from {clock.hhmm(s_u, now)} ({label}); "
                    f"{last_what}",
                    None, at=t0, detail={"window": label})


def _on_too_long(ivs, settings, now, clock, pause) -> list[Decision]:
    """Per bulb: the lamp is known lit for on_too_long_h straight (uptime, not guesses)."""
    out = []
    latest: dict[str, Interval] = {}
    before: dict[str, Interval] = {}  # each bulb's visit before its latest
    for iv in ivs:
        if iv.device in latest:
            before[iv.device] = latest[iv.device]
        latest[iv.device] = iv
    for dev, iv in sorted(latest.items()):
        limit = settings.on_too_long_h * HOUR
        if pause:
            out.append(_paused_decision("on_too_long", pause, clock, now))
            continue
        if iv.ended_by == "open" and iv.on_s >= limit:
            lit_until = (iv.end_earliest if iv.end_earliest is not None
                         else iv.start_latest + iv.on_s)
            out.append(Decision(
                "on_too_long", OPEN, iv.start_latest + limit,
                f"light on since {clock.hhmm(iv.start_latest, now)}, still on at "
                f"{clock.hhmm(lit_until, now)} ({iv.on_s / HOUR:.1f} h)",
                None, subject=dev, at=iv.start_latest, detail={"on_h": iv.on_s / HOUR}))
        else:
            prev = before.get(dev)
            if prev is not None and (iv.ended_by == "open" or prev.on_s >= limit):
                # lit again since the visit before ended (the one that was on too long, if any)
                ev = f"{_switched_off(prev, clock, now)}; on again {_when(iv, clock, now)}"
            elif iv.ended_by != "open":
                ev = _switched_off(iv, clock, now)
            else:
                ev = f"light on for {iv.on_s / 60:.0f} min so far"
            out.append(Decision("on_too_long", CLEAR, iv.start_latest, ev, None, subject=dev,
                                at=iv.start_latest))
    return out


def _lit_for(on_s: float) -> str:
    """"3 h 12 min", "3 h", "45 min"."""
    h, m = divmod(int(on_s // 60), 60)
    return f"{h} h {m} min" if h and m else f"{h} h" if h else f"{m} min"


def _switched_off(iv: Interval, clock: _Clock, now: float) -> str:
    """How an ended visit ended: "light switched off at 14:05 after 3 h 12 min"; when only
    bounded (no dying gasp), between the last mark and the bound, lit at least on_s."""
    assert iv.end_latest is not None  # an ended visit (not "open")
    lit = _lit_for(iv.on_s)
    if iv.ended_by != "off":
        lit += " or more"
    if iv.end_earliest is None:
        return f"light switched off by {clock.hhmm(iv.end_latest, now)} after {lit}"
    lo, hi = clock.hhmm(iv.end_earliest, now), clock.hhmm(iv.end_latest, now)
    if lo == hi:
        return f"light switched off {_at(iv.end_latest, clock, now)} after {lit}"
    return f"light switched off between {lo} and {hi} after {lit}"


def _silence_start(settings: Settings, t: float | None, now: float) -> float | None:
    """When a bulb's silence began: t (last heard, or registered), or the end of a pause that
    ended after it (a bulb in an empty home is not silent)."""
    if t is None:
        return None
    for p in settings.pauses:
        if t < p.end <= now:
            t = p.end
    return t


def _bulb_silent(tl: Timeline, settings, now, clock) -> list[Decision]:
    out = []
    for dev, seen in sorted(tl.devices.items()):
        if seen.last_heard is None:
            reg = seen.registered_at
            since = _silence_start(settings, reg, now)
            due = None if since is None else since + settings.never_heard_h * HOUR
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
        due = since + settings.silent_h * HOUR
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


def _delays(mine: list[Interval], gap: float) -> list[float]:
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


def _poor_delivery(ivs, tl: Timeline, settings, now) -> list[Decision]:
    out = []
    since = now - settings.late_days * DAY
    for dev in sorted(tl.devices):
        mine = [iv for iv in ivs if iv.device == dev]
        delays = _delays(mine, tl.devices[dev].report_gap_s)
        recent = [(iv, dl) for iv, dl in zip(mine, delays) if iv.start_latest >= since]
        late_d = [dl for _, dl in recent if dl > settings.late_after_s]
        late = [iv for iv, dl in recent if dl > settings.late_after_s]
        frac = len(late) / len(recent) if recent else 0.0
        detail = {"visits": len(recent), "late": len(late), "fraction": frac}
        if len(recent) >= settings.late_min_visits and frac >= settings.late_fraction:
            worst = max(late_d) / HOUR
            out.append(Decision(
                "poor_delivery", OPEN, late[0].reported_at,
                f"bulb {dev}: {len(late)} of {len(recent)} visits in {settings.late_days:g} days "
                f"reached the server more than {settings.late_after_s / 60:.0f} min late "
                f"(worst {worst:.1f} h): check its signal", None, "coordinator", dev,
                detail=detail))
        else:
            out.append(Decision("poor_delivery", CLEAR, None,
                                f"bulb {dev}: {len(late)} of {len(recent)} recent visits late",
                                None, "coordinator", dev, detail=detail))
    return out


# ---------------------------------------------------------------- the learned rhythm


@dataclass(frozen=True, slots=True)
class Rhythm:
    """What the learned rule knows about a household (exposed for the dashboard and tests)."""

    days: float  # unpaused days of history used
    rate: tuple[float, ...]  # switch-ons per hour, for each local hour of the day (24)
    gaps: int  # quiet spells in the history
    threshold: float  # expected switch-ons a quiet spell must exceed to alert (all spells)
    gaps_per_day: float
    by_hour: tuple[float, ...]  # the same threshold for spells that began near each local hour


def _mass_fn(rate: tuple[float, ...], off: float):
    """Expected switch-ons between two instants under the hourly rates (local time)."""
    cum = [0.0]
    for r in rate:
        cum.append(cum[-1] + r)
    total = cum[-1]

    def at(t: float) -> float:  # expected switch-ons from the epoch to t
        loc = (t + off) / HOUR
        days, h = divmod(loc, 24.0)
        i = int(h)
        return days * total + cum[i] + (h - i) * rate[i]

    return at


def learn(ivs: list[Interval], settings: Settings, now: float, off: float = 0.0) -> Rhythm | None:
    """The household's rhythm over the last learn_days, or None when history is too short."""
    t_from = now - settings.learn_days * DAY
    if ivs:
        t_from = max(t_from, ivs[0].start_latest)
    pauses = [p for p in settings.pauses if p.end > t_from and p.start < now]
    paused_s = sum(min(p.end, now) - max(p.start, t_from) for p in pauses)
    days = (now - t_from - paused_s) / DAY
    if days < settings.learn_min_days:
        return None
    starts = [iv.start_mid for iv in ivs if iv.start_latest >= t_from]
    starts = [t for t in starts if not any(p.start <= t < p.end for p in pauses)]
    counts = [0.0] * 24
    for t in starts:
        counts[int(((t + off) % DAY) // HOUR)] += 1
    mean_rate = len(starts) / max(days, 1e-9) / 24
    k = 2.0  # prior: two days at the household's mean rate
    raw = [(c + k * mean_rate) / (days + k) for c in counts]
    rate = tuple(max(0.01, 0.25 * raw[i - 1] + 0.5 * raw[i] + 0.25 * raw[(i + 1) % 24])
                 for i in range(24))
    mass = _mass_fn(rate, off)
    gaps: list[tuple[float, float]] = []  # (local hour the gap began, expected switch-ons in it)
    for a, b in itertools.pairwise(starts):
        if any(a < p.end and p.start < b for p in pauses):
            continue
        gaps.append((((a + off) % DAY) / HOUR, mass(b) - mass(a)))
    if len(gaps) < 20:
        return None
    gpd = len(gaps) / days
    all_es = [e for _, e in gaps]
    thr, beta = _tail_threshold(all_es, days, settings.days_per_false_alert)
    share = min(1.0, (2 * settings.bucket_h + 1) / 24)
    by_hour = []
    for h in range(24):  # quiet spells that began within +-bucket_h of each hour
        near = [e for a, e in gaps if min(abs(a - h - 0.5), 24 - abs(a - h - 0.5))
                <= settings.bucket_h]
        # a spell is tested against one bucket only: the bucket's share of the target; the
        # tail's scale comes from all spells (a few weeks are too few per hour to fit it)
        by_hour.append(_tail_threshold(near, days, settings.days_per_false_alert / share,
                                       beta)[0] if len(near) >= 15 else thr)
    return Rhythm(days, rate, len(gaps), thr, gpd, tuple(by_hour))


def _tail_threshold(es: list[float], days: float, days_per_false_alert: float,
                    beta: float | None = None) -> tuple[float, float]:
    """(threshold, tail scale): the quiet-spell size (in expected switch-ons) exceeded once in
    days_per_false_alert days, from an exponential tail fitted above the 80th percentile (peaks
    over threshold; `beta` imposes the tail's scale), never below the largest spell seen."""
    es = sorted(es)
    alpha = days / (len(es) * days_per_false_alert)  # per-spell probability allowed
    u = es[int(0.8 * len(es))]
    exc = [e - u for e in es if e > u]
    if beta is None:
        beta = max(sum(exc) / len(exc), 0.3) if exc else 0.5
    q = len(exc) / len(es)
    thr = u + beta * math.log(q / alpha) if q > alpha else u
    return max(thr, es[-1]), beta


def unusual_quiet(ivs, settings: Settings, now: float, clock: _Clock | None = None,
                  pause: Pause | None = None, hidden: float | None = None) -> Decision:
    """The learned rule: alert when the current quiet spell is improbable for this household.
    hidden: the latest instant of a switch-on not reported yet (LTE-M report gap), if any."""
    rule = "unusual_quiet"
    clock = clock or _Clock(settings.tz, now)
    if pause:
        return _paused_decision(rule, pause, clock, now)
    rh = learn(ivs, settings, now, clock.off)
    if rh is None:
        return _no_activity(ivs, settings, now, clock, pause, rule=rule,
                            note=f" (still learning this household's rhythm: fixed "
                                 f"{settings.no_activity_h:g} h rule)", hidden=hidden)
    t0, last = _gap_start(ivs, settings, now)
    if t0 is None:
        return Decision(rule, CLEAR, None, "no switch-on recorded yet", None)
    mass = _mass_fn(rh.rate, clock.off)
    deadline, thr = _learned_deadline(rh, mass, t0, settings, clock)
    if hidden is not None and hidden > t0:
        # the spell may have begun as late as `hidden`: alert only when it is improbable
        # however it began (the later of the two deadlines)
        later, thr_h = _learned_deadline(rh, mass, hidden, settings, clock)
        if later > deadline:
            deadline, thr = later, thr_h
    what = (f"light switched on {_when(last, clock, now)}" if last and last.start_latest == t0
            else f"pause ended at {clock.hhmm(t0, now)}")
    what += _unreported(hidden, t0, clock, now)
    detail = {"last_on": t0, "gap_h": (now - t0) / HOUR, "limit_h": (deadline - t0) / HOUR,
              "expected": mass(now) - mass(t0), "threshold": thr,
              "history_days": rh.days}
    if hidden is not None and hidden > t0:
        detail["unreported_until"] = hidden
    if now >= deadline:
        return Decision(
            rule, OPEN, deadline,
            f"no switch-on for {(now - t0) / HOUR:.0f} h: last {what}; on a usual day about "
            f"{mass(now) - mass(t0):.0f} switch-ons happen in that time (learned over "
            f"{rh.days:.0f} days)", None, at=t0, detail=detail)
    return Decision(rule, CLEAR, t0, what, deadline, at=t0, detail=detail)


def _learned_deadline(rh: Rhythm, mass, t0: float, settings: Settings,
                      clock: _Clock) -> tuple[float, float]:
    """(deadline, threshold) of a quiet spell that began at t0 under the learned rhythm."""
    thr = rh.by_hour[int(((t0 + clock.off) % DAY) // HOUR)]
    target = mass(t0) + thr
    # walk hour by hour to the instant the expected count reaches the threshold
    t = t0
    while mass(t + HOUR) < target and t - t0 < settings.learned_max_h * HOUR:
        t += HOUR
    lo, hi = t, t + HOUR
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mass(mid) < target else (lo, mid)
    return min(max(hi, t0 + settings.learned_min_h * HOUR),
               t0 + settings.learned_max_h * HOUR), thr


# ---------------------------------------------------------------- replay (measurement, dashboard)


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert of a rule, as a sweeper driven by next_check would have raised it."""

    rule: str
    opened: float  # Decision.since of the opening decision
    seen: float  # when the evaluation that opened it ran
    cleared: float | None


def replay(tl: Timeline, settings: Settings, start: float, end: float,
           rule: str) -> list[Episode]:
    """Alerts of one household rule between start and end, evaluating only when the sweeper
    would (at next_check) or a visit arrives (just after it starts), as the server does."""
    starts = _starts(tl)
    out: list[Episode] = []
    cur: Episode | None = None
    t = start
    while t < end:
        d = next(x for x in evaluate_rule(tl, settings, t, rule))
        if d.state == OPEN and cur is None:
            cur = Episode(rule, d.since if d.since is not None else t, t, None)
        elif d.state == CLEAR and cur is not None:
            out.append(Episode(rule, cur.opened, cur.seen, t))
            cur = None
        i = bisect.bisect_right(starts, t)
        nxt_visit = starts[i] + 1.0 if i < len(starts) else math.inf
        nxt = d.next_check if d.next_check is not None and d.next_check > t else math.inf
        t = min(nxt, nxt_visit, end)
    if cur is not None:
        out.append(cur)
    return out


def evaluate_rule(tl: Timeline, settings: Settings, now: float, rule: str) -> list[Decision]:
    """Only the household-level gap rule named (replay needs no other rule)."""
    clock = _Clock(settings.tz, now)
    ivs = _visible(tl, now)
    pause = _paused(settings, now)
    hidden = _hidden_until(tl, now)
    if rule == "no_activity":
        return [_no_activity(ivs, settings, now, clock, pause, hidden=hidden)]
    if rule == "daily_window":
        return [_daily_window(ivs, settings, now, clock, pause, hidden)]
    if rule == "unusual_quiet":
        return [unusual_quiet(ivs, settings, now, clock, pause, hidden)]
    raise ValueError(f"replay: unknown rule {rule!r} (no_activity, daily_window, unusual_quiet)")
