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
"""

from __future__ import annotations

import logging
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
        _relearn(c, now_ms)
    return int(row[0]), int(row[1])


def _relearn(c: Cursor, now_ms: int) -> None:
    """Every household is evaluated at the next sweep, and its model learned again from its
    visits (the days of a span recorded after they were folded are folded anew)."""
    c.execute("UPDATE household_models SET learned_under = ''")
    c.execute("UPDATE households SET next_check = ? WHERE next_check IS NULL OR next_check > ?",
              (now_ms, now_ms))


def local_time(t: int, tz: str) -> str:
    """An instant as the outage commands write it: local YYYY-MM-DDTHH:MM."""
    return datetime.fromtimestamp(to_s(t), ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")
