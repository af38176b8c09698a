# SPDX-License-Identifier: MIT
"""Each household's one status, kept as its last evaluation left it: what the coordinator's
overview sorts, counts, filters and searches without building any household's timeline.

    STATES                   most urgent first: unanswered (a family alert nobody claimed),
                             checking (an alert someone is going to check), late (a bulb
                             silent, poor delivery, or 3 in 10 of the week's visits reported
                             late), paused (a planned absence now), well
    state_of(...)            the one rule that picks a household's status (pure)
    keep(c, hid, k, now)     write the household's row (the evaluation's transaction)
    refresh(c, hid, now)     the row again after a claim, resolve or pause (no timeline needed)
    page(c, ...)             one page of rows, filtered by state and a search, and the counts

One row per household (`household_status`, created with the people tables), so the overview
reads 20 rows and one count per state at 10 or 10,000 households. It must never need a
household's records or timeline to answer a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mimamori.clock import DAY_MS, HOUR_MS
from mimamori.sql import Cursor
from mimamori_firmware import record

STATES = ("unanswered", "checking", "late", "paused", "well")  # the overview's order
LATE_MS = HOUR_MS  # a visit reported later than this counts as late (the rules' late_after_s)
LATE_DAYS = 7  # the lateness shown is over this many days
TROUBLE_RULES = ("bulb_silent", "poor_delivery")  # coordinator notices that mean "late"

# the overview's own columns and the states before there were five (component "status", so
# it never collides with the people tables' own migrations)
SCHEMA: list[list[str]] = [
    [
        "ALTER TABLE household_status ADD COLUMN late_7d INTEGER",
        "ALTER TABLE household_status ADD COLUMN visits_7d INTEGER",
        "ALTER TABLE household_status ADD COLUMN dbm INTEGER",
        "UPDATE household_status SET state = 'unanswered', rank = 0 WHERE state = 'alert'",
        "UPDATE household_status SET state = 'late', rank = 2 WHERE state = 'silent'",
        "UPDATE household_status SET rank = 3 WHERE state = 'paused'",
        "UPDATE household_status SET rank = 4 WHERE state = 'well'",
    ],
]


def late_flag(late: int | None, visits: int | None) -> bool:
    """Often late: at least 3 in 10 of the week's visits reached the server late."""
    return bool(visits) and (late or 0) * 10 >= (visits or 0) * 3


def state_of(family: list[str], trouble: bool, late: bool, paused: bool) -> str:
    """One status per household, most urgent first. family: the states of its active family
    alerts (open, claimed); trouble: a bulb_silent or poor_delivery notice is active; late:
    late_flag of its week; paused: a planned absence covers now."""
    if "open" in family:
        return "unanswered"
    if family:
        return "checking"
    if trouble or late:
        return "late"
    return "paused" if paused else "well"


def _alerts(c: Cursor, hid: str) -> tuple[list[str], bool]:
    rows = c.all("SELECT state, audience, rule FROM alerts WHERE household = ? AND "
                 "closed_at IS NULL AND state IN ('open', 'claimed')", (hid,))
    family = [s for s, aud, _ in rows if aud != "coordinator"]
    return family, any(aud == "coordinator" and rule in TROUBLE_RULES for _, aud, rule in rows)


def _paused(c: Cursor, hid: str, now_ms: int) -> bool:
    return c.one("SELECT 1 FROM pauses WHERE household = ? AND start_ms <= ? AND end_ms > ?",
                 (hid, now_ms, now_ms)) is not None


def _week(tl: Any, now_ms: int) -> tuple[int, int]:
    mine = [iv for iv in tl.intervals if now_ms - LATE_DAYS * DAY_MS <= iv.start_latest <= now_ms]
    return sum(1 for iv in mine if iv.reported_at - iv.start_mid > LATE_MS), len(mine)


def _dbm(bulbs: list[Any]) -> int | None:
    """The weakest of the bulbs' latest signal readings (K_LINK aux, dBm), from their kept
    tails (kept.BulbState.records: epoch, seq, boot, up_ms, kind, sub, aux, arg, received)."""
    out = []
    for up in bulbs:
        links = [r for r in up.state.records if r[4] == record.K_LINK and r[6] != 0]
        if links:
            out.append(max(links, key=lambda r: (r[8], r[0], r[1]))[6])
    return min(out, default=None)


def keep(c: Cursor, hid: str, k: Any, now_ms: int) -> str:
    """Write the household's row from its evaluation (k: kept.Kept); its state."""
    family, trouble = _alerts(c, hid)
    late, visits = _week(k.timeline, now_ms)
    state = state_of(family, trouble, late_flag(late, visits), _paused(c, hid, now_ms))
    seen = [iv.start_latest for iv in k.timeline.intervals if iv.start_latest <= now_ms]
    c.execute("INSERT INTO household_status (household, state, rank, last_on_ms, updated_ms, "
              "late_7d, visits_7d, dbm) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
              "ON CONFLICT (household) DO UPDATE SET state = excluded.state, "
              "rank = excluded.rank, last_on_ms = excluded.last_on_ms, "
              "updated_ms = excluded.updated_ms, late_7d = excluded.late_7d, "
              "visits_7d = excluded.visits_7d, dbm = excluded.dbm",
              (hid, state, STATES.index(state), max(seen) if seen else None,
               now_ms, late, visits, _dbm(k.bulbs)))
    return state


def refresh(c: Cursor, hid: str, now_ms: int) -> str | None:
    """The row's state again from the alerts and pauses now (after a claim, a resolve or a
    pause), keeping its week's lateness; None when the household has no row."""
    row = c.one("SELECT late_7d, visits_7d FROM household_status WHERE household = ?", (hid,))
    if row is None:
        return None
    family, trouble = _alerts(c, hid)
    state = state_of(family, trouble, late_flag(*row), _paused(c, hid, now_ms))
    c.execute("UPDATE household_status SET state = ?, rank = ? WHERE household = ?",
              (state, STATES.index(state), hid))
    return state


@dataclass
class Row:
    household: str
    name: str
    tz: str
    state: str
    last_on_ms: int | None
    late_7d: int | None
    visits_7d: int | None
    dbm: int | None

    @property
    def often_late(self) -> bool:
        return late_flag(self.late_7d, self.visits_7d)


def _like(q: str) -> str:
    esc = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{esc}%"


def page(c: Cursor, offset: int, limit: int, state: str | None = None, q: str = ""
         ) -> tuple[list[Row], dict[str, int]]:
    """One page of households, most urgent first (then by id), in `state` if given, matching
    the search q if given (a fragment of the household's id or name, which holds its address,
    or of a current watcher's name or e-mail address); and how many match in each state."""
    where, args = "", list[Any]()
    q = q.strip()
    if q:
        like = _like(q)
        where = (" AND (lower(h.id) LIKE ? ESCAPE '\\' OR lower(h.name) LIKE ? ESCAPE '\\' OR "
                 "EXISTS (SELECT 1 FROM watchers w WHERE w.household = h.id AND "
                 "w.removed_at IS NULL AND (lower(w.name) LIKE ? ESCAPE '\\' OR "
                 "lower(coalesce(w.email, '')) LIKE ? ESCAPE '\\')))")
        args = [like] * 4
    counts = dict.fromkeys(STATES, 0)
    if q:
        found = c.all("SELECT s.rank, COUNT(*) FROM household_status s JOIN households h "
                      f"ON h.id = s.household WHERE 1 = 1{where} GROUP BY s.rank", args)
    else:  # the rank index alone covers it (every status row has its household)
        found = c.all("SELECT rank, COUNT(*) FROM household_status GROUP BY rank")
    for rank, n in found:
        if 0 <= rank < len(STATES):
            counts[STATES[rank]] += n
    if state in STATES:
        where += " AND s.rank = ?"
        args.append(STATES.index(state))
    rows = c.all("SELECT s.household, h.name, h.tz, s.state, s.last_on_ms, s.late_7d, "
                 "s.visits_7d, s.dbm FROM household_status s JOIN households h ON "
                 f"h.id = s.household WHERE 1 = 1{where} ORDER BY s.rank, s.household "
                 "LIMIT ? OFFSET ?", [*args, limit, offset])
    return [Row(*r) for r in rows], counts
