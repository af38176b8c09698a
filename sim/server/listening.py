# SPDX-License-Identifier: MIT
"""Whether the server was listening: its own outages, told apart from her silence.

    mark(db, now_ms)      the running server is listening now (each sweeper round); a gap since
                          the last mark longer than `after_ms` is recorded as a deaf span
    spans(c)              every deaf span, (start_ms, end_ms), oldest first

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
from datetime import UTC, datetime

from mimamori.clock import HOUR_MS, MINUTE_MS, to_s
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
                    _utc(span[0]))
    return span


def spans(c: Cursor) -> tuple[tuple[int, int], ...]:
    """Every deaf span recorded, oldest first (one row per outage: the table stays small)."""
    rows = c.all("SELECT start_ms, end_ms FROM deaf_spans ORDER BY start_ms")
    return tuple((int(s), int(e)) for s, e in rows)


def _utc(t: int) -> str:
    return datetime.fromtimestamp(to_s(t), UTC).strftime("%Y-%m-%d %H:%M")
