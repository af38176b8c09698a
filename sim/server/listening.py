# SPDX-License-Identifier: MIT
"""Whether the server was listening: its own outages, told apart from her silence.

    mark(db, now_ms)      the running server is listening now (each sweeper round); a gap since
                          the last mark longer than `after_ms` is recorded as a deaf span
    spans(c)              every deaf span, (start_ms, end_ms), oldest first
    add(db, ...), remove  an outage the marks could not see (its network cut while it ran, a
                          restore from a backup), or one recorded by mistake (a clock stepped
                          forward): `mimamori outage list | add FROM TO | remove FROM`
                          (cli_outage.py)

A bulb that cannot reach the server keeps its records in its journal and sends them with a
later visit (docs/uplink.md). While the server is down (stopped, crashed, its host or its network
cut) every bulb of every household is in that state at once. After such an outage, counting her
silence through it would alert every family whose last switch-on the server heard is a day old,
and the late reports it then receives would make every bulb's radio look poor. The rules read
the spans instead (rules.RuleSettings.deaf; docs/alerts.md "The server's own outage"):

- a switch-on may have happened as late as a span's end without the server hearing of it, so a
  quiet spell is counted from there, as from an LTE-M bulb's report gap;
- reports held by a span, and connection attempts that failed in it, are not the bulb's radio;
- the learned model leaves a span's hours out, as it leaves out her absences.

Only a running server marks: a tool or test that steps the clock (MIMAMORI_SWEEP_S=0) records
no span. Several instances mark the same row; the first that finds the gap records it.

A server that runs but hears nothing (its network or the city's firewall cut, a power cut over
the whole area) marks as usual. Its fleet tells it instead: each round `hear` counts the bulbs
heard since the last one into the fleet's rhythm of reports by hour of the day (`Rhythm`,
decayed with a half-life of two weeks). When no bulb has been heard for a time in which that
rhythm expected FLEET_SILENT_EXPECTED reports (about one chance in a million that a fleet of
well people and working radios is that quiet), and FLEET_MIN_HOMES households at least would
each have been heard by their own reports (her fall silences one home, never five at once),
the server is deaf from the last report it heard:
the span stays open, growing with each round, and ends at the first report heard again. A
fleet too small or too young to expect that many reports in a day never decides it: the
operator records such an outage with `mimamori outage add`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from mimamori.clock import DAY_MS, HOUR_MS, MINUTE_MS, to_s
from mimamori.storage import Cursor, Database

log = logging.getLogger("mimamori.listening")

DEAF_AFTER_MS = 10 * MINUTE_MS  # no mark for this long: the server was not listening

SCHEMA: list[list[str]] = [
    [
        "CREATE TABLE listening (id INTEGER PRIMARY KEY, at_ms BIGINT NOT NULL)",
        "CREATE TABLE deaf_spans (start_ms BIGINT PRIMARY KEY, end_ms BIGINT NOT NULL)",
    ],
    # 2: the fleet's rhythm of reports (Rhythm, as JSON), the round it counted to, and the
    # start of a fleet silence still going on (its span open) or dismissed by the operator
    [
        """CREATE TABLE fleet_rhythm (id INTEGER PRIMARY KEY, at_ms BIGINT NOT NULL,
            rhythm TEXT NOT NULL, silent_from BIGINT, dismissed_from BIGINT)""",
    ],
]


def mark(db: Database, now_ms: int, after_ms: int = DEAF_AFTER_MS) -> tuple[int, int] | None:
    """The server is listening at now_ms. Returns the deaf span this mark ends, if the last mark
    is more than after_ms old (None on the first mark ever, and while marks come in time)."""
    span = None
    with db.tx() as c:
        c.lock("mimamori listening")  # instances starting together: one records the span
        row = c.one("SELECT at_ms FROM listening WHERE id = 1")
        if row is None:
            c.execute("INSERT INTO listening (id, at_ms) VALUES (1, ?)", (now_ms,))
            return None
        last = row[0]
        if now_ms - last > after_ms:
            span = (last, now_ms)
            c.execute("INSERT INTO deaf_spans (start_ms, end_ms) VALUES (?, ?) "
                      "ON CONFLICT (start_ms) DO NOTHING", span)
        if now_ms > last:  # a clock stepped back never moves the mark back
            c.execute("UPDATE listening SET at_ms = ? WHERE id = 1", (now_ms,))
    if span is not None:
        log.warning("the server was not listening for %.1f h (since %s UTC): silences are "
                    "counted without that span", (span[1] - span[0]) / HOUR_MS,
                    local_time(span[0], "UTC"))
    return span


FLEET_SILENT_EXPECTED = 14.0  # reports the fleet's rhythm expected in a silence: e^-14, 1e-6
FLEET_KNOWN_MS = 5 * DAY_MS // 2  # known once the fleet was watched this long (decayed: 2.6 d)
FLEET_HOUR_KNOWN_MS = HOUR_MS  # ... and an hour of the day once watched this long
FLEET_DECAY_DAYS = 14.0  # the rhythm's half-life
# ...and the silence is of many homes at once, not of one (her fall is exactly one home's
# silence): at least this many households, each of which its own last FLEET_HOME_DAYS days of
# reports expected FLEET_HOME_EXPECTED times in the silence (each quiet by chance e^-3, 5 %)
FLEET_MIN_HOMES = 5
FLEET_HOME_EXPECTED = 3.0
FLEET_HOME_DAYS = 14


@dataclass
class Rhythm:
    """The fleet's reports by UTC hour of the day: bulbs heard in each round (one per bulb
    however many reports it sent), and the time watched, both decayed (FLEET_DECAY_DAYS).
    The server (`hear`) and the bench (bench/figures_outage.py) count with it alike."""

    heard: list[float] = field(default_factory=lambda: [0.0] * 24)
    watched_ms: list[float] = field(default_factory=lambda: [0.0] * 24)

    def add(self, a_ms: int, b_ms: int, n: int) -> None:
        """A round from a_ms to b_ms in which n bulbs were heard (the round's hour gets them)."""
        k = 0.5 ** ((b_ms - a_ms) / DAY_MS / FLEET_DECAY_DAYS)
        self.heard = [x * k for x in self.heard]
        self.watched_ms = [x * k for x in self.watched_ms]
        for h, piece in _pieces(a_ms, b_ms):
            self.watched_ms[h] += piece
        self.heard[_utc_hour(max(a_ms, b_ms - 1))] += n

    def known(self) -> bool:
        return sum(self.watched_ms) >= FLEET_KNOWN_MS

    def expected(self, a_ms: int, b_ms: int) -> float:
        """Reports the rhythm expects from a_ms to b_ms (an hour of the day not known yet
        expects none: never a silence decided on a guess)."""
        out = 0.0
        for h, piece in _pieces(a_ms, b_ms):
            if self.watched_ms[h] >= FLEET_HOUR_KNOWN_MS:
                out += piece * self.heard[h] / self.watched_ms[h]
        return out

    def silent(self, last_heard_ms: int, now_ms: int,
               deaf: tuple[tuple[int, int], ...] = ()) -> bool:
        """Whether hearing no bulb since last_heard_ms is improbable for a listening server:
        the hours of recorded deaf spans (the server stopped) are not counted."""
        if not self.known():
            return False
        lam = self.expected(last_heard_ms, now_ms)
        for s, e in deaf:
            if s < now_ms and e > last_heard_ms:
                lam -= self.expected(max(s, last_heard_ms), min(e, now_ms))
        return lam >= FLEET_SILENT_EXPECTED

    def to_json(self) -> str:
        return json.dumps({"heard": self.heard, "watched_ms": self.watched_ms})

    @staticmethod
    def from_json(text: str) -> Rhythm:
        d = json.loads(text)
        return Rhythm([float(x) for x in d["heard"]], [float(x) for x in d["watched_ms"]])


def _utc_hour(t: int) -> int:
    return int((t % DAY_MS) // HOUR_MS)


def _pieces(a_ms: int, b_ms: int) -> list[tuple[int, int]]:
    """[a_ms, b_ms) cut at UTC hours: (hour of the day, ms in it); a day or more at once is
    cut into whole days first (a stopped server's round: never many pieces)."""
    out: list[tuple[int, int]] = []
    if b_ms - a_ms >= DAY_MS:
        days = (b_ms - a_ms) // DAY_MS
        out = [(h, int(days * HOUR_MS)) for h in range(24)]
        a_ms += days * DAY_MS
    t = a_ms
    while t < b_ms:
        end = min(b_ms, (t // HOUR_MS + 1) * HOUR_MS)
        out.append((_utc_hour(t), end - t))
        t = end
    return out


def homes_expected(c: Cursor, a_ms: int, b_ms: int) -> int:
    """How many households its own reports of the last FLEET_HOME_DAYS days (by UTC hour of the
    day) expected FLEET_HOME_EXPECTED times or more from a_ms to b_ms (count_homes)."""
    return count_homes(c.all(
        "SELECT d.household, b.received_at FROM batches b JOIN devices d ON d.id = b.device "
        "WHERE d.household IS NOT NULL AND b.received_at >= ? AND b.received_at < ?",
        (a_ms - FLEET_HOME_DAYS * DAY_MS, a_ms)), a_ms, b_ms)


def count_homes(reports: Iterable[tuple[str, int]], a_ms: int, b_ms: int) -> int:
    """homes_expected from (household, received at) of reports: those of the FLEET_HOME_DAYS
    days before a_ms count (the bench counts its households alike)."""
    per: dict[str, list[float]] = {}
    first: dict[str, int] = {}
    since = a_ms - FLEET_HOME_DAYS * DAY_MS
    for home, at in reports:
        if not since <= at < a_ms:
            continue
        per.setdefault(home, [0.0] * 24)[_utc_hour(int(at))] += 1.0
        first[home] = min(first.get(home, a_ms), int(at))
    pieces = _pieces(a_ms, b_ms)
    n = 0
    for home, counts in per.items():
        days = max(2.0, (a_ms - first[home]) / DAY_MS)  # a home heard for a day: as if for two
        if sum(counts[h] * piece / HOUR_MS for h, piece in pieces) / days >= FLEET_HOME_EXPECTED:
            n += 1
    return n


def decides(rhythm: Rhythm, last_ms: int, now_ms: int, deaf: tuple[tuple[int, int], ...],
            homes: Callable[[int, int], int], going_on: bool = False) -> bool:
    """Whether hearing no bulb since last_ms is the server's deafness: improbable for the
    fleet's rhythm (deaf: spans whose hours it does not expect), and a silence of at least
    FLEET_MIN_HOMES homes (homes(a, b): how many its own reports expected FLEET_HOME_EXPECTED
    times; asked only then, and not for a silence already going_on). The server (`hear`) and
    the bench decide with it alike."""
    return rhythm.silent(last_ms, now_ms, deaf) and (
        going_on or homes(last_ms, now_ms) >= FLEET_MIN_HOMES)


def hear(db: Database, now_ms: int, after_ms: int = DEAF_AFTER_MS) -> tuple[int, int] | None:
    """A round of the running server (after `mark`): count the bulbs heard since the last
    round into the fleet's rhythm, and decide whether the server hears nothing it should. A
    round more than after_ms after the last (the server was stopped: `mark` recorded it) adds
    nothing to the rhythm. Returns the fleet silence's span while it is open, and the span it
    closed in the round that hears a bulb again; None otherwise."""
    with db.tx() as c:
        c.lock("mimamori listening")
        row = c.one("SELECT at_ms, rhythm, silent_from, dismissed_from FROM fleet_rhythm "
                    "WHERE id = 1")
        if row is None:
            c.execute("INSERT INTO fleet_rhythm (id, at_ms, rhythm) VALUES (1, ?, ?)",
                      (now_ms, Rhythm().to_json()))
            return None
        prev, rhythm, silent_from, dismissed = int(row[0]), Rhythm.from_json(row[1]), row[2], row[3]
        if now_ms <= prev:  # another instance's round, or a clock stepped back
            return None
        if now_ms - prev <= after_ms:
            (n,) = c.one("SELECT COUNT(*) FROM devices WHERE last_heard_at > ? AND "
                         "last_heard_at <= ?", (prev, now_ms))
            rhythm.add(prev, now_ms, int(n))
        (last,) = c.one("SELECT MAX(last_heard_at) FROM devices")
        span = None
        if silent_from is not None and last is not None and last > silent_from:
            # heard again: the silence ends at the first bulb heard after it began
            (end,) = c.one("SELECT MIN(last_heard_at) FROM devices WHERE last_heard_at > ?",
                           (silent_from,))
            span = (int(silent_from), int(end))
            c.execute("UPDATE deaf_spans SET end_ms = ? WHERE start_ms = ?", span[::-1])
            silent_from = None
            log.warning("bulbs heard again at %s UTC: the server heard none for %.1f h",
                        local_time(span[1], "UTC"), (span[1] - span[0]) / HOUR_MS)
        elif last is not None and last != dismissed and decides(
                rhythm, int(last), now_ms, tuple(sp for sp in spans(c) if sp[0] != silent_from),
                lambda a, b: homes_expected(c, a, b), going_on=silent_from == last):
            span = (int(last), now_ms)
            # the stopped server's own spans in it are part of this one
            c.execute("DELETE FROM deaf_spans WHERE start_ms > ? AND end_ms <= ?", span)
            c.execute("INSERT INTO deaf_spans (start_ms, end_ms) VALUES (?, ?) ON CONFLICT "
                      "(start_ms) DO UPDATE SET end_ms = excluded.end_ms", span)
            if silent_from is None:
                log.warning("no bulb heard since %s UTC (%.1f h) although the fleet's reports "
                            "would have come: the server's network, or a power cut over the "
                            "area; silences are not counted until bulbs are heard again",
                            local_time(span[0], "UTC"), (now_ms - span[0]) / HOUR_MS)
                # every household evaluated at once: an alert that opened in the silence
                # before it was decided is cleared, not reminded
                _all_due(c, now_ms)
            silent_from = span[0]
        c.execute("UPDATE fleet_rhythm SET at_ms = ?, rhythm = ?, silent_from = ? WHERE id = 1",
                  (now_ms, rhythm.to_json(), silent_from))
    return span


def silent_since(c: Cursor) -> int | None:
    """The start of the fleet silence going on now (its span open), if any."""
    row = c.one("SELECT silent_from FROM fleet_rhythm WHERE id = 1")
    return None if row is None or row[0] is None else int(row[0])


def spans(c: Cursor) -> tuple[tuple[int, int], ...]:
    """Every deaf span recorded, oldest first (one row per outage: the table stays small)."""
    rows = c.all("SELECT start_ms, end_ms FROM deaf_spans ORDER BY start_ms")
    return tuple((int(s), int(e)) for s, e in rows)


MAX_SPAN_MS = 30 * DAY_MS  # an outage longer than this is a mistyped date


def add(db: Database, start_ms: int, end_ms: int, now_ms: int, tz: str = "UTC"
        ) -> tuple[int, int]:
    """Record an outage by hand. Refused (ValueError, nothing changed): an end not after the
    start, one in the future, one longer than MAX_SPAN_MS, one overlapping a recorded span."""
    if not start_ms < end_ms:
        raise ValueError("an outage ends after it begins: write FROM before TO")
    if end_ms > now_ms:
        raise ValueError("an outage is recorded once it is over: its end is in the future")
    if end_ms - start_ms > MAX_SPAN_MS:
        raise ValueError(f"an outage of {(end_ms - start_ms) / DAY_MS:.0f} days: check the "
                         f"dates (at most {MAX_SPAN_MS // DAY_MS} days)")
    with db.tx() as c:
        c.lock("mimamori listening")
        for s, e in spans(c):
            if s < end_ms and start_ms < e:
                raise ValueError(f"it overlaps the outage recorded from {local_time(s, tz)} to "
                                 f"{local_time(e, tz)} ({tz}): remove that one first (`mimamori "
                                 "outage remove`)")
        c.execute("INSERT INTO deaf_spans (start_ms, end_ms) VALUES (?, ?)", (start_ms, end_ms))
        _relearn(c, now_ms)
    return start_ms, end_ms


def remove(db: Database, start_ms: int, now_ms: int, tz: str = "UTC") -> tuple[int, int]:
    """Forget the outage recorded as beginning at start_ms (ValueError when there is none)."""
    with db.tx() as c:
        c.lock("mimamori listening")
        row = c.one("SELECT start_ms, end_ms FROM deaf_spans WHERE start_ms = ?", (start_ms,))
        if row is None:
            raise ValueError(f"no outage begins at {local_time(start_ms, tz)} ({tz}): see "
                             "`mimamori outage list`")
        c.execute("DELETE FROM deaf_spans WHERE start_ms = ?", (start_ms,))
        # a fleet silence still going on, dismissed: `hear` does not decide it again
        c.execute("UPDATE fleet_rhythm SET silent_from = NULL, dismissed_from = ? "
                  "WHERE silent_from = ?", (start_ms, start_ms))
        _relearn(c, now_ms)
    return int(row[0]), int(row[1])


def _relearn(c: Cursor, now_ms: int) -> None:
    """Every household is evaluated at the next sweep, and its model learned again from its
    visits (the days of a span recorded after they were folded are folded anew)."""
    c.execute("UPDATE household_models SET learned_under = ''")
    _all_due(c, now_ms)


def _all_due(c: Cursor, now_ms: int) -> None:
    """Every household is evaluated at the next sweep (households.recheck_by, for all)."""
    c.execute("UPDATE households SET next_check = ? WHERE next_check IS NULL OR next_check > ?",
              (now_ms, now_ms))


def local_time(t: int, tz: str) -> str:
    """An instant as the outage commands write it: local YYYY-MM-DDTHH:MM."""
    return datetime.fromtimestamp(to_s(t), ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")
