"""Households and the people who watch over them: watchers, tiers, channels, pauses, settings.

The tables of the alert side of the server live here (one migration list, component "people",
applied through storage.migrate next to the ingest tables; the SQL follows storage.py's portable
rules). Every household row carries `next_check`: the earliest instant (Unix ms) at which
anything about it can change without new records -- a rule deadline, a reminder, an escalation,
the weekly digest. The sweeper finds due households through the index on that column.

Tiers: 1 family, 2 neighbours and the welfare commissioner, 3 a visit service; tier 0 is the
coordinator (device health: silent bulbs, poor delivery), never woken for family alerts.

It must never let a bad setting reach the rules: every value is checked here, with a message
that says what to write instead.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sim.server import rules
from sim.server.storage import Cursor, Database, migrate

ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
LANGS = ("ja", "en")
ROLES = {"coordinator": 0, "family": 1, "neighbour": 2, "commissioner": 2, "visit_service": 3}
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

SCHEMA: list[list[str]] = [
    [
        """CREATE TABLE households (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            tz TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            created_at BIGINT NOT NULL,
            evaluated_at BIGINT,
            next_check BIGINT,
            digest_due BIGINT
        )""",
        "CREATE INDEX households_next_check ON households (next_check)",
        """CREATE TABLE watchers (
            id TEXT PRIMARY KEY,
            household TEXT NOT NULL REFERENCES households (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            tier INTEGER NOT NULL,
            lang TEXT NOT NULL,
            email TEXT,
            webhook_url TEXT,
            webhook_secret TEXT,
            console INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            removed_at BIGINT
        )""",
        "CREATE INDEX watchers_household ON watchers (household)",
        """CREATE TABLE pauses (
            id TEXT PRIMARY KEY,
            household TEXT NOT NULL REFERENCES households (id) ON DELETE CASCADE,
            first_day TEXT NOT NULL,
            last_day TEXT NOT NULL,
            start_ms BIGINT NOT NULL,
            end_ms BIGINT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL
        )""",
        "CREATE INDEX pauses_household ON pauses (household)",
        """CREATE TABLE alerts (
            id TEXT PRIMARY KEY,
            household TEXT NOT NULL REFERENCES households (id) ON DELETE CASCADE,
            rule TEXT NOT NULL,
            subject TEXT NOT NULL,
            audience TEXT NOT NULL,
            episode BIGINT NOT NULL,
            state TEXT NOT NULL,
            opened_at BIGINT NOT NULL,
            since BIGINT,
            evidence TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            tier INTEGER NOT NULL,
            reminders INTEGER NOT NULL DEFAULT 0,
            next_reminder_at BIGINT,
            next_escalation_at BIGINT,
            claimed_by TEXT,
            claimed_at BIGINT,
            resolved_by TEXT,
            resolved_at BIGINT,
            outcome TEXT,
            note TEXT,
            cleared_at BIGINT,
            clear_evidence TEXT,
            closed_at BIGINT
        )""",
        "CREATE UNIQUE INDEX alerts_episode ON alerts (household, rule, subject, episode)",
        "CREATE INDEX alerts_household ON alerts (household, closed_at)",
        """CREATE TABLE alert_events (
            alert TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT,
            text TEXT NOT NULL,
            PRIMARY KEY (alert, n)
        )""",
        """CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            household TEXT NOT NULL,
            alert TEXT,
            watcher TEXT NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT NOT NULL,
            lease_until BIGINT,
            sent_at BIGINT,
            last_error TEXT
        )""",
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
        "CREATE INDEX outbox_alert ON outbox (alert)",
        """CREATE TABLE server_secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE api_tokens (
            digest TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )""",
    ],
    # leases (docs/scaling.md): a due household is claimed by one sweeper, an outbox row by
    # one delivery worker, until lease_until (real-time Unix ms)
    [
        "ALTER TABLE households ADD COLUMN lease_until BIGINT",
        "ALTER TABLE households ADD COLUMN lease_owner TEXT",
        "ALTER TABLE outbox ADD COLUMN lease_owner TEXT",
    ],
]


def open_people(db: Database) -> Database:
    """Apply the people/alerts migrations (idempotent); returns db."""
    migrate(db, "people", SCHEMA)
    return db


# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class HouseholdSettings:
    activity_rule: str = "learned"  # learned | fixed | daily_window
    no_activity_h: float = 24.0
    window_start: str = "09:00"
    window_h: float = 24.0
    on_too_long_h: float = 3.0
    reminder_h: float = 2.0  # remind the notified watchers this often while nobody claims
    escalate_h: tuple[float, float] = (1.0, 3.0)  # tier 1 -> 2 after, then 2 -> 3 after
    digest_days: float = 7.0  # the "all is well" digest, every this many days
    claim_timeout_h: float = 2.0  # a claim with no outcome after this is told to everyone

    def rules(self, tz: str, pauses: tuple[rules.Pause, ...] = ()) -> rules.Settings:
        hh, mm = (int(x) for x in self.window_start.split(":"))
        return rules.Settings(tz=tz, activity_rule=self.activity_rule,
                              no_activity_h=self.no_activity_h, window_start=time(hh, mm),
                              window_h=self.window_h, on_too_long_h=self.on_too_long_h,
                              learned_max_h=self.no_activity_h, pauses=pauses)


_POSITIVE = {"no_activity_h": (1, 24 * 14), "window_h": (1, 72), "on_too_long_h": (0.25, 48),
             "reminder_h": (0.1, 48), "digest_days": (1, 31), "claim_timeout_h": (0.25, 48)}


def check_setting(key: str, value: Any) -> Any:
    """The value as it will be kept; ValueError saying what is wrong otherwise."""
    if key == "activity_rule":
        if value not in ("learned", "fixed", "daily_window"):
            raise ValueError(f"activity_rule must be learned, fixed or daily_window (got {value!r})")
        return value
    if key == "learned":  # the on/off switch of the learned rule
        if not isinstance(value, bool):
            raise ValueError(f"learned must be true or false (got {value!r})")
        return value
    if key == "window_start":
        m = re.match(r"^([01]?\d|2[0-3]):([0-5]\d)$", str(value))
        if not m:
            raise ValueError(f"window_start must be HH:MM, e.g. 09:00 (got {value!r})")
        return f"{int(m.group(1)):02d}:{m.group(2)}"
    if key == "escalate_h":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and 0.1 <= v <= 72 for v in value)):
            raise ValueError("escalate_h must be two delays in hours, e.g. [1, 3]: family -> "
                             f"neighbours, then -> visit service (got {value!r})")
        return (float(value[0]), float(value[1]))
    if key in _POSITIVE:
        lo, hi = _POSITIVE[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"{key} must be a number from {lo:g} to {hi:g} (got {value!r})")
        return float(value)
    raise ValueError(f"unknown household setting {key!r}; known: activity_rule, learned, "
                     + ", ".join(["window_start", "escalate_h", *_POSITIVE]))


def parse_settings(raw: dict[str, Any]) -> HouseholdSettings:
    kw: dict[str, Any] = {}
    for k, v in raw.items():
        v = check_setting(k, v)
        if k == "learned":
            kw.setdefault("activity_rule", "learned" if v else "fixed")
        else:
            kw[k] = v
    return HouseholdSettings(**kw)


def settings_json(s: HouseholdSettings) -> dict[str, Any]:
    d = dict(s.__dict__)
    d["escalate_h"] = list(s.escalate_h)
    return d


def check_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {tz!r} is unknown: use an IANA name such as Asia/Tokyo")
    return tz


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Household:
    id: str
    name: str
    tz: str
    settings: HouseholdSettings
    created_at: int
    evaluated_at: int | None
    next_check: int | None
    digest_due: int | None


@dataclass(frozen=True)
class Watcher:
    id: str
    household: str
    name: str
    role: str
    tier: int
    lang: str
    email: str | None
    webhook_url: str | None
    webhook_secret: str | None
    console: bool
    created_at: int
    removed_at: int | None = None

    def channels(self) -> list[str]:
        return ([c for c, v in (("email", self.email), ("webhook", self.webhook_url)) if v]
                + (["console"] if self.console else []))

    def public(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "webhook_secret"}
        d["channels"] = self.channels()
        return d


@dataclass(frozen=True)
class PauseRow:
    id: str
    household: str
    first_day: str
    last_day: str
    start_ms: int
    end_ms: int
    reason: str
    created_at: int


class NotFound(KeyError):
    """A household, watcher, pause or alert that does not exist (the message says which)."""

    def __str__(self) -> str:
        return str(self.args[0])


_H_COLS = "id, name, tz, settings, created_at, evaluated_at, next_check, digest_due"
_W_COLS = ("id, household, name, role, tier, lang, email, webhook_url, webhook_secret, console, "
           "created_at, removed_at")


def _household(row: tuple) -> Household:
    id_, name, tz, st, *rest = row
    return Household(id_, name, tz, parse_settings(json.loads(st)), *rest)


def _watcher(row: tuple) -> Watcher:
    r = list(row)
    r[9] = bool(r[9])
    return Watcher(*r)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


# ---------------------------------------------------------------------------------------------
# operations (each takes a cursor so callers compose them into one transaction)


def add_household(c: Cursor, now_ms: int, hid: str, name: str = "", tz: str = "Asia/Tokyo",
                  settings: dict[str, Any] | None = None) -> Household:
    if not ID_RE.match(hid):
        raise ValueError(f"household id {hid!r}: use 1-40 letters, digits, '.', '_' or '-'")
    check_tz(tz)
    st = parse_settings(settings or {})
    if c.one("SELECT 1 FROM households WHERE id = ?", (hid,)):
        raise ValueError(f"household {hid!r} exists already: pick another id, or change its "
                         "settings with `mimamori household settings`")
    c.execute(f"INSERT INTO households ({_H_COLS}) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
              (hid, name or hid, tz, json.dumps(settings_json(st)), now_ms, now_ms,
               now_ms + int(st.digest_days * DAY_MS)))
    return household(c, hid)


def household(c: Cursor, hid: str) -> Household:
    row = c.one(f"SELECT {_H_COLS} FROM households WHERE id = ?", (hid,))
    if row is None:
        raise NotFound(f"no household {hid!r}: see `mimamori household list`")
    return _household(row)


def households(c: Cursor) -> list[Household]:
    return [_household(r) for r in c.all(f"SELECT {_H_COLS} FROM households ORDER BY id")]


def update_settings(c: Cursor, hid: str, changes: dict[str, Any], now_ms: int) -> Household:
    h = household(c, hid)
    merged = {**settings_json(h.settings), **changes}
    st = parse_settings(merged)
    c.execute("UPDATE households SET settings = ?, next_check = ? WHERE id = ?",
              (json.dumps(settings_json(st)), now_ms, hid))  # re-evaluate at the next sweep
    return household(c, hid)


def add_watcher(c: Cursor, now_ms: int, hid: str, name: str, role: str = "family",
                lang: str = "ja", email: str | None = None, webhook_url: str | None = None,
                console: bool = False, tier: int | None = None) -> Watcher:
    household(c, hid)
    t = _check_watcher(name, role, lang, email, webhook_url, console, tier)
    wid = new_id("w")
    secret = secrets.token_hex(32) if webhook_url else None
    c.execute(f"INSERT INTO watchers ({_W_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
              (wid, hid, name.strip(), role, t, lang, email, webhook_url, secret,
               1 if console else 0, now_ms))
    return watcher(c, wid)


def _check_watcher(name: str, role: str, lang: str, email: str | None, webhook_url: str | None,
                   console: bool, tier: int | None) -> int:
    """The watcher's tier; ValueError saying what to write instead otherwise."""
    if not name.strip():
        raise ValueError("a watcher needs a name (shown to the others: 'Aiko is going to check')")
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if lang not in LANGS:
        raise ValueError(f"language {lang!r}: use ja or en")
    if email is not None and not EMAIL_RE.match(email):
        raise ValueError(f"e-mail address {email!r} does not look like name@example.org")
    if webhook_url is not None and not re.match(r"^https?://[^\s]+$", webhook_url):
        raise ValueError(f"webhook URL {webhook_url!r} must start with http:// or https://")
    if not (email or webhook_url or console):
        raise ValueError("a watcher needs at least one channel: --email, --webhook or --console")
    t = ROLES[role] if tier is None else tier
    if not 0 <= t <= 3:
        raise ValueError(f"tier {t}: 0 coordinator, 1 family, 2 neighbours, 3 visit service")
    return t


_CHANGEABLE = ("name", "role", "lang", "email", "webhook_url", "console", "tier")


def update_watcher(c: Cursor, wid: str, changes: dict[str, Any]) -> tuple[Watcher, bool]:
    """Change a watcher; (the watcher, whether a channel address changed: send a new test
    message so the first alert at the new address is no surprise)."""
    w = watcher(c, wid)
    bad = sorted(set(changes) - set(_CHANGEABLE))
    if bad:
        raise ValueError(f"cannot change {', '.join(bad)}; changeable: {', '.join(_CHANGEABLE)}")
    new = {k: getattr(w, k) for k in _CHANGEABLE} | changes
    if "role" in changes and "tier" not in changes:
        new["tier"] = None
    for k, typ in (("name", str), ("role", str), ("lang", str), ("console", bool)):
        if not isinstance(new[k], typ):
            raise ValueError(f"{k} must be a {typ.__name__} (got {new[k]!r})")  # noqa: TRY004
    for k in ("email", "webhook_url"):
        if new[k] is not None and not isinstance(new[k], str):
            raise ValueError(f"{k} must be text or null (got {new[k]!r})")
    if new["tier"] is not None and (isinstance(new["tier"], bool)
                                    or not isinstance(new["tier"], int)):
        raise ValueError(f"tier must be 0, 1, 2 or 3 (got {new['tier']!r})")
    tier = _check_watcher(new["name"], new["role"], new["lang"], new["email"],
                          new["webhook_url"], new["console"], new["tier"])
    secret = w.webhook_secret
    if new["webhook_url"] and new["webhook_url"] != w.webhook_url:
        secret = secret or secrets.token_hex(32)
    c.execute("UPDATE watchers SET name = ?, role = ?, tier = ?, lang = ?, email = ?, "
              "webhook_url = ?, webhook_secret = ?, console = ? WHERE id = ?",
              (new["name"].strip(), new["role"], tier, new["lang"], new["email"],
               new["webhook_url"], secret, 1 if new["console"] else 0, wid))
    moved = (new["email"], new["webhook_url"], bool(new["console"])) != (
        w.email, w.webhook_url, w.console) and bool(new["email"] or new["webhook_url"])
    return watcher(c, wid), moved


def watcher(c: Cursor, wid: str) -> Watcher:
    row = c.one(f"SELECT {_W_COLS} FROM watchers WHERE id = ?", (wid,))
    if row is None:
        raise NotFound(f"no watcher {wid!r}: see `mimamori watcher list HOUSEHOLD`")
    return _watcher(row)


def watchers(c: Cursor, hid: str, max_tier: int | None = None,
             min_tier: int = 1) -> list[Watcher]:
    sql = f"SELECT {_W_COLS} FROM watchers WHERE household = ? AND removed_at IS NULL"
    params: list[Any] = [hid]
    if max_tier is not None:
        sql += " AND tier >= ? AND tier <= ?"
        params += [min_tier, max_tier]
    return [_watcher(r) for r in c.all(sql + " ORDER BY tier, created_at, name, id", params)]


def remove_watcher(c: Cursor, wid: str, now_ms: int) -> None:
    watcher(c, wid)
    c.execute("UPDATE watchers SET removed_at = ? WHERE id = ?", (now_ms, wid))


def add_pause(c: Cursor, now_ms: int, hid: str, first: date, last: date,
              reason: str = "") -> PauseRow:
    h = household(c, hid)
    if last < first:
        raise ValueError(f"the pause ends ({last}) before it starts ({first}): swap the dates")
    if (last - first).days > 366:
        raise ValueError("a pause is at most a year; add another one later if needed")
    p = rules.Pause.from_dates(first, last, h.tz)
    pid = new_id("p")
    c.execute("INSERT INTO pauses (id, household, first_day, last_day, start_ms, end_ms, reason, "
              "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              (pid, hid, first.isoformat(), last.isoformat(), int(p.start * 1000),
               int(p.end * 1000), reason, now_ms))
    c.execute("UPDATE households SET next_check = ? WHERE id = ?", (now_ms, hid))
    return PauseRow(pid, hid, first.isoformat(), last.isoformat(), int(p.start * 1000),
                    int(p.end * 1000), reason, now_ms)


def pauses(c: Cursor, hid: str) -> list[PauseRow]:
    return [PauseRow(*r) for r in c.all(
        "SELECT id, household, first_day, last_day, start_ms, end_ms, reason, created_at "
        "FROM pauses WHERE household = ? ORDER BY start_ms", (hid,))]


def remove_pause(c: Cursor, hid: str, pid: str, now_ms: int) -> None:
    if not c.execute("DELETE FROM pauses WHERE id = ? AND household = ?", (pid, hid)):
        raise NotFound(f"no pause {pid!r} in household {hid!r}")
    c.execute("UPDATE households SET next_check = ? WHERE id = ?", (now_ms, hid))


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"date {text!r}: write it as YYYY-MM-DD") from None


def local_hhmm(ms: float | None, tz: str) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%H:%M")


def local_day(ms: float, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d")



def touch(db: Database, hid: str, now_ms: int) -> bool:
    """Look at the household again at the next sweep (a bulb was added outside the API);
    False if there is no such household."""
    open_people(db)
    with db.tx() as c:
        return bool(c.execute("UPDATE households SET next_check = ? WHERE id = ?",
                              (now_ms, hid)))
