# SPDX-License-Identifier: MIT
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
import math
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mimamori import listening, roles, rules, status, texts
from mimamori.clock import DAY_MS, to_ms, to_s
from mimamori.storage import Cursor, Database, migrate

ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
LANGS = ("ja", "en")
ROLES = {r.name: r.tier for r in roles.TABLE.values()}  # role -> its tier (sim/server/roles.py)

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
    [  # each watcher's quiet hours; "needed help" pauses that end at the next switch-on
        "ALTER TABLE watchers ADD COLUMN quiet_hours TEXT NOT NULL DEFAULT '22:00-07:00'",
        "ALTER TABLE pauses ADD COLUMN until_switch_on INTEGER NOT NULL DEFAULT 0",
    ],
    # leases (docs/scaling.md): a due household is claimed by one sweeper, an outbox row by
    # one delivery worker, until lease_until (real-time Unix ms)
    [
        "ALTER TABLE households ADD COLUMN lease_until BIGINT",
        "ALTER TABLE households ADD COLUMN lease_owner TEXT",
        "ALTER TABLE outbox ADD COLUMN lease_owner TEXT",
    ],
    # pages read what they show: a person's watcher rows found by their address
    # through an index; each household's status as its last evaluation left it, so that the
    # coordinator's overview pages and counts without building every household's timeline
    [
        "CREATE INDEX watchers_email ON watchers (lower(email))",
        """CREATE TABLE household_status (
            household TEXT PRIMARY KEY REFERENCES households (id) ON DELETE CASCADE,
            state TEXT NOT NULL,
            rank INTEGER NOT NULL,
            last_on_ms BIGINT,
            updated_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX household_status_rank ON household_status (rank, household)",
        ("INSERT INTO household_status (household, state, rank, last_on_ms, updated_ms) "
         "SELECT id, 'well', 3, NULL, created_at FROM households"),
    ],
]


# what the messages and their link pages need, a component of its own so it
# never collides with the steps above: an alert event as a code and parameters (rendered in
# the reader's language when shown; rows before it keep their English text), and the
# watchers' "I received this" answers to the invitation's test message (notify.confirmed_at)
NOTICES: list[list[str]] = [
    [
        "ALTER TABLE alert_events ADD COLUMN code TEXT",
        "ALTER TABLE alert_events ADD COLUMN params TEXT",
        """CREATE TABLE watcher_receipts (
            watcher TEXT PRIMARY KEY REFERENCES watchers (id) ON DELETE CASCADE,
            address TEXT,
            at BIGINT NOT NULL
        )""",
    ],
]


def open_people(db: Database) -> Database:
    """Apply the people/alerts migrations (idempotent); returns db."""
    migrate(db, "people", SCHEMA)
    migrate(db, "roles", roles.SCHEMA)  # who changed what (household_events), role defaults
    migrate(db, "notices", NOTICES)
    migrate(db, "status", status.SCHEMA)  # the overview's columns of household_status
    migrate(db, "listening", listening.SCHEMA)  # the server's own outages (the rules read them)
    return db


# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class HouseholdSettings:
    activity_rule: str = "learned"  # learned | fixed | daily_window
    no_activity_h: float = 24.0
    window_start: str = "09:00"
    window_h: float = 24.0
    on_too_long_h: float = 3.0  # while learning, and the most for a room whose visits are short
    reminder_h: float = 2.0  # the first reminder while nobody claims; each next one twice later
    reminder_max: int = 3  # reminders at most (strong evidence; weak evidence: one at most)
    escalate_h: tuple[float, float] = (1.0, 3.0)  # tier 1 -> 2 after, then 2 -> 3 after
    digest_days: float = 7.0  # the "all is well" digest, every this many days
    claim_timeout_h: float = 2.0  # a claim with no outcome after this is told to everyone
    learned_max_h: float | None = None  # the learned rule waits at most this (None: no_activity_h)
    learned_min_h: float = 4.0  # ... and at least this
    days_per_false_alert: float = 100.0  # the learned rule's target: one false alert in this
    on_days_per_false_alert: float = 200.0  # on_too_long's: one per bulb in this many days
    learn_min_days: int = 7  # days of history before the learned rule trusts its model
    never_heard_h: float = 24.0  # a registered bulb never heard this long: tell the coordinator
    silent_h: float = 72.0  # a bulb not heard this long: tell the coordinator
    absences: tuple[dict[str, Any], ...] = ()  # recurring part-day absences (check_absence)

    def rules(self, tz: str, pauses: tuple[rules.Pause, ...] = ()) -> rules.RuleSettings:
        hh, mm = (int(x) for x in self.window_start.split(":"))
        return rules.RuleSettings(
            tz=tz, activity_rule=self.activity_rule, no_activity_h=self.no_activity_h,
            window_start=time(hh, mm), window_h=self.window_h, on_too_long_h=self.on_too_long_h,
            learned_max_h=(self.no_activity_h if self.learned_max_h is None
                           else self.learned_max_h),
            learned_min_h=self.learned_min_h, days_per_false_alert=self.days_per_false_alert,
            on_days_per_false_alert=self.on_days_per_false_alert,
            learn_min_days=self.learn_min_days, never_heard_h=self.never_heard_h,
            silent_h=self.silent_h, pauses=pauses,
            absences=tuple(absence(a) for a in self.absences))


# key: (lowest, highest, what it is) -- the numbers a coordinator may set, and their ranges
_NUMBERS: dict[str, tuple[float, float, str]] = {
    "no_activity_h": (1, 24 * 14, "hours"), "window_h": (1, 72, "hours"),
    "on_too_long_h": (0.25, 48, "hours"), "reminder_h": (0.1, 48, "hours"),
    "digest_days": (1, 31, "days"), "claim_timeout_h": (0.25, 48, "hours"),
    "learned_max_h": (4, 24 * 14, "hours"), "learned_min_h": (1, 24, "hours"),
    "days_per_false_alert": (10, 10_000, "days"),
    "on_days_per_false_alert": (10, 10_000, "days"), "never_heard_h": (1, 24 * 14, "hours"),
    "silent_h": (6, 24 * 30, "hours"),
}
_COUNTS: dict[str, tuple[int, int]] = {"reminder_max": (0, 10), "learn_min_days": (3, 28)}
SETTING_KEYS = ("activity_rule", "learned", "window_start", "escalate_h", "absences",
                *_NUMBERS, *_COUNTS)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


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
        return _hhmm("window_start", value)
    if key == "escalate_h":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and 0.1 <= v <= 72 for v in value)):
            raise ValueError("escalate_h must be two delays in hours, e.g. [1, 3]: family -> "
                             f"neighbours, then -> visit service (got {value!r})")
        return (float(value[0]), float(value[1]))
    if key == "absences":
        if not isinstance(value, (list, tuple)) or len(value) > 10:
            raise ValueError("absences must be a list of at most 10 recurring absences, e.g. "
                             '[{"days": "tue,fri", "from": "09:00", "to": "17:00", '
                             f'"reason": "day service"}}] (got {value!r})')
        return tuple(check_absence(a) for a in value)
    if key == "learned_max_h" and value is None:
        return None  # follows no_activity_h
    if key in _NUMBERS:
        lo, hi, unit = _NUMBERS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"{key} must be a number of {unit} from {lo:g} to {hi:g} "
                             f"(got {value!r})")
        return float(value)
    if key in _COUNTS:
        lo, hi = _COUNTS[key]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or value != int(value) or not lo <= value <= hi):
            raise ValueError(f"{key} must be a whole number from {lo} to {hi} (got {value!r})")
        return int(value)
    raise ValueError(f"unknown household setting {key!r}; known: {', '.join(SETTING_KEYS)}")


def _hhmm(key: str, value: Any) -> str:
    m = _HHMM.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{key} must be HH:MM, e.g. 09:00 (got {value!r})")
    return f"{int(m.group(1)):02d}:{m.group(2)}"


_DAYS = {d: i for i, d in enumerate(rules.WEEKDAYS)}


def check_absence(a: Any) -> dict[str, Any]:
    """A recurring absence as kept: {"days": ["tue", "fri"], "from": "09:00", "to": "17:00",
    "reason": "day service"}; ValueError saying what is wrong otherwise."""
    if not isinstance(a, dict):
        raise ValueError(  # noqa: TRY004 - a bad setting is a ValueError everywhere here
            "an absence is {\"days\": \"tue,fri\", \"from\": \"09:00\", \"to\": \"17:00\", "
            f"\"reason\": \"day service\"}} (got {a!r})")
    bad = sorted(set(a) - {"days", "from", "to", "reason"})
    if bad:
        raise ValueError(f"an absence has days, from, to and reason (not {', '.join(bad)})")
    days = a.get("days")
    if isinstance(days, str):
        days = [d.strip() for d in days.split(",") if d.strip()]
    if (not isinstance(days, (list, tuple)) or not days
            or not all(isinstance(d, str) and d.strip().lower()[:3] in _DAYS for d in days)):
        raise ValueError("an absence's days are weekdays such as \"tue,fri\" (mon tue wed thu "
                         f"fri sat sun; got {a.get('days')!r})")
    start, end = _hhmm("an absence's from", a.get("from")), _hhmm("an absence's to", a.get("to"))
    if start == end:
        raise ValueError(f"an absence from {start} to {end} is empty: give the time it ends")
    reason = a.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 100:
        raise ValueError(f"an absence's reason is text of at most 100 characters (got {reason!r})")
    texts.check("an absence's reason", reason, 100)
    order = sorted({_DAYS[d.strip().lower()[:3]] for d in days})
    return {"days": [rules.WEEKDAYS[i] for i in order], "from": start, "to": end,
            "reason": reason.strip()}


def absence(a: dict[str, Any]) -> rules.Absence:
    (sh, sm), (eh, em) = ((int(x) for x in a[k].split(":")) for k in ("from", "to"))
    return rules.Absence(tuple(_DAYS[d] for d in a["days"]), time(sh, sm), time(eh, em),
                         a.get("reason", ""))


def parse_settings(raw: dict[str, Any]) -> HouseholdSettings:
    kw: dict[str, Any] = {}
    for k, v in raw.items():
        v = check_setting(k, v)
        if k == "learned":
            kw.setdefault("activity_rule", "learned" if v else "fixed")
        else:
            kw[k] = v
    st = HouseholdSettings(**kw)
    if st.learned_max_h is not None and st.learned_max_h < st.learned_min_h:
        raise ValueError(f"learned_max_h ({st.learned_max_h:g}) must not be below learned_min_h "
                         f"({st.learned_min_h:g})")
    return st


def settings_json(s: HouseholdSettings) -> dict[str, Any]:
    d = dict(s.__dict__)
    d["escalate_h"] = list(s.escalate_h)
    d["absences"] = [dict(a) for a in s.absences]
    return d


def check_quiet_hours(value: Any) -> str:
    """A watcher's quiet hours as kept: "22:00-07:00", or "" for none."""
    if value in (None, "", "none", "off"):
        return ""
    parts = value.split("-") if isinstance(value, str) else []
    if len(parts) != 2 or not all(_HHMM.match(x.strip()) for x in parts):
        raise ValueError("quiet_hours must be HH:MM-HH:MM, e.g. 22:00-07:00, or none "
                         f"(got {value!r})")
    a, b = (_hhmm("quiet_hours", x.strip()) for x in parts)
    if a == b:
        raise ValueError(f"quiet_hours {value!r} is empty: e.g. 22:00-07:00, or none")
    return f"{a}-{b}"


def quiet_until(quiet: str, tz: str, now_ms: int) -> int | None:
    """The end of the quiet hours (ms) when `now_ms` lies in them, else None."""
    if not quiet:
        return None
    a, b = quiet.split("-")
    z = ZoneInfo(tz)
    now = datetime.fromtimestamp(to_s(now_ms), z)
    (ah, am), (bh, bm) = ((int(x) for x in t.split(":")) for t in (a, b))
    start, end = now.replace(hour=ah, minute=am, second=0, microsecond=0), now.replace(
        hour=bh, minute=bm, second=0, microsecond=0)
    for day in (-1, 0):  # the quiet span that began yesterday or today
        s = start + timedelta(days=day)
        e = end + timedelta(days=day + (1 if end <= start else 0))
        if s <= now < e:
            return to_ms(e.timestamp())
    return None


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
    quiet_hours: str = "22:00-07:00"  # reminders and weak alerts wait until they end

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
    until_switch_on: bool = False  # ends at the next switch-on ("needed help")

    def rule(self) -> rules.Pause:
        """The pause as the rules see it (an open "until the next switch-on" pause has no end
        yet: the rules end it at that switch-on)."""
        if self.until_switch_on and self.end_ms >= OPEN_END_MS:
            return rules.Pause(self.start_ms, math.inf, True, self.reason)
        return rules.Pause(self.start_ms, self.end_ms, False, self.reason)


OPEN_END_MS = 253_402_300_799_000  # 9999-12-31: a pause until the next switch-on, not ended yet


class NotFound(KeyError):
    """A household, watcher, pause or alert that does not exist (the message says which)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Exists(ValueError):
    """Something with this id exists already (a 409 at the API)."""


_H_COLS = "id, name, tz, settings, created_at, evaluated_at, next_check, digest_due"
_W_COLS = ("id, household, name, role, tier, lang, email, webhook_url, webhook_secret, console, "
           "created_at, removed_at, quiet_hours")


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
    name = texts.name("a household's name", name)
    check_tz(tz)
    st = parse_settings(settings or {})
    if c.one("SELECT 1 FROM households WHERE id = ?", (hid,)):
        raise Exists(f"household {hid!r} exists already: pick another id, or change its "
                         "settings with `mimamori household settings`")
    c.execute(f"INSERT INTO households ({_H_COLS}) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
              (hid, name or hid, tz, json.dumps(settings_json(st)), now_ms, now_ms,
               now_ms + int(st.digest_days * DAY_MS)))
    c.execute("INSERT INTO household_status (household, state, rank, last_on_ms, updated_ms) "
              "VALUES (?, 'well', ?, NULL, ?)",
              (hid, status.STATES.index("well"), now_ms))  # until its first evaluation
    return household(c, hid)


def household(c: Cursor, hid: str) -> Household:
    row = c.one(f"SELECT {_H_COLS} FROM households WHERE id = ?", (hid,))
    if row is None:
        raise NotFound(f"no household {hid!r}: see `mimamori household list`")
    return _household(row)


def households(c: Cursor) -> list[Household]:
    return [_household(r) for r in c.all(f"SELECT {_H_COLS} FROM households ORDER BY id")]


def recheck_at(c: Cursor, hid: str, at_ms: int) -> int:
    """Evaluate the household again at at_ms, whatever was due before: what changed (its
    settings, people, bulbs or pauses) may move any deadline, and that evaluation sets the next
    one. The rows changed (0: no such household)."""
    return c.execute("UPDATE households SET next_check = ? WHERE id = ?", (at_ms, hid))


def recheck_by(c: Cursor, hid: str, at_ms: int) -> int:
    """Evaluate the household again at at_ms at the latest: next_check only moves earlier (a
    reminder or a claim coming due; the deadlines already set still hold)."""
    return c.execute("UPDATE households SET next_check = ? WHERE id = ? AND (next_check IS NULL "
                     "OR next_check > ?)", (at_ms, hid, at_ms))


def update_settings(c: Cursor, hid: str, changes: dict[str, Any], now_ms: int) -> Household:
    h = household(c, hid)
    merged = {**settings_json(h.settings), **changes}
    st = parse_settings(merged)
    c.execute("UPDATE households SET settings = ?, next_check = ? WHERE id = ?",
              (json.dumps(settings_json(st)), now_ms, hid))  # re-evaluate at the next sweep
    return household(c, hid)


def add_watcher(c: Cursor, now_ms: int, hid: str, name: str, role: str = "family",
                lang: str = "ja", email: str | None = None, webhook_url: str | None = None,
                console: bool = False, tier: int | None = None,
                quiet_hours: str | None = "22:00-07:00") -> Watcher:
    household(c, hid)
    t = _check_watcher(name, role, lang, email, webhook_url, console, tier)
    wid = new_id("w")
    secret = secrets.token_hex(32) if webhook_url else None
    quiet = check_quiet_hours(quiet_hours)
    c.execute(f"INSERT INTO watchers ({_W_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
              (wid, hid, name.strip(), role, t, lang, email, webhook_url, secret,
               1 if console else 0, now_ms, quiet))
    return watcher(c, wid)


def _check_watcher(name: str, role: str, lang: str, email: str | None, webhook_url: str | None,
                   console: bool, tier: int | None) -> int:
    """The watcher's tier; ValueError saying what to write instead otherwise."""
    if not name.strip():
        raise ValueError("a watcher needs a name (shown to the others: 'Aiko is going to check')")
    texts.name("a watcher's name", name)
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


_CHANGEABLE = ("name", "role", "lang", "email", "webhook_url", "console", "tier", "quiet_hours")


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
    quiet = check_quiet_hours(new["quiet_hours"])
    secret = w.webhook_secret
    if new["webhook_url"] and new["webhook_url"] != w.webhook_url:
        secret = secret or secrets.token_hex(32)
    c.execute("UPDATE watchers SET name = ?, role = ?, tier = ?, lang = ?, email = ?, "
              "webhook_url = ?, webhook_secret = ?, console = ?, quiet_hours = ? WHERE id = ?",
              (new["name"].strip(), new["role"], tier, new["lang"], new["email"],
               new["webhook_url"], secret, 1 if new["console"] else 0, quiet, wid))
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


def watchers_with_email(c: Cursor, email: str) -> list[Watcher]:
    """Every current watcher row with this e-mail address (any case), in every household, by
    household: one index lookup (watchers_email), however many households there are."""
    email = email.strip().lower()
    if not email:
        return []
    return [_watcher(r) for r in c.all(
        f"SELECT {_W_COLS} FROM watchers WHERE lower(email) = ? AND removed_at IS NULL "
        "ORDER BY household, tier, created_at, name, id", (email,))]


def remove_watcher(c: Cursor, wid: str, now_ms: int) -> None:
    watcher(c, wid)
    c.execute("UPDATE watchers SET removed_at = ? WHERE id = ?", (now_ms, wid))


def add_pause(c: Cursor, now_ms: int, hid: str, first: date, last: date,
              reason: str = "") -> PauseRow:
    h = household(c, hid)
    reason = texts.check("a pause's reason", reason, texts.REASON_MAX)
    if last < first:
        raise ValueError(f"the pause ends ({last}) before it starts ({first}): swap the dates")
    if (last - first).days > 366:
        raise ValueError("a pause is at most a year; add another one later if needed")
    p = rules.Pause.from_dates(first, last, h.tz)
    pid = new_id("p")
    c.execute("INSERT INTO pauses (id, household, first_day, last_day, start_ms, end_ms, reason, "
              "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              (pid, hid, first.isoformat(), last.isoformat(), p.start, p.end, reason, now_ms))
    recheck_at(c, hid, now_ms)
    return PauseRow(pid, hid, first.isoformat(), last.isoformat(), p.start, int(p.end), reason,
                    now_ms)


def pauses(c: Cursor, hid: str) -> list[PauseRow]:
    return [PauseRow(*r[:8], bool(r[8])) for r in c.all(
        "SELECT id, household, first_day, last_day, start_ms, end_ms, reason, created_at, "
        "until_switch_on FROM pauses WHERE household = ? ORDER BY start_ms", (hid,))]


def pause_until_switch_on(c: Cursor, now_ms: int, hid: str, reason: str = "") -> PauseRow:
    """Pause the household from now until the next switch-on (after "needed help": nobody is
    alerted about an empty home; the first switch-on ends it by itself)."""
    h = household(c, hid)
    pid = new_id("p")
    today = local_day(now_ms, h.tz)
    c.execute("INSERT INTO pauses (id, household, first_day, last_day, start_ms, end_ms, reason, "
              "created_at, until_switch_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
              (pid, hid, today, "", now_ms, OPEN_END_MS, reason[:200], now_ms))
    recheck_at(c, hid, now_ms)
    return next(p for p in pauses(c, hid) if p.id == pid)


def end_pauses_at_switch_on(c: Cursor, hid: str, tz: str, starts: list[int]) -> None:
    """Give each open "until the next switch-on" pause its end: the first switch-on after it
    began (starts: the household's switch-ons, ms, sorted)."""
    import bisect

    for p in pauses(c, hid):
        if p.until_switch_on and p.end_ms >= OPEN_END_MS:
            i = bisect.bisect_right(starts, p.start_ms)
            if i < len(starts):
                end = starts[i]
                c.execute("UPDATE pauses SET end_ms = ?, last_day = ? WHERE id = ?",
                          (end, local_day(end, tz), p.id))


def remove_pause(c: Cursor, hid: str, pid: str, now_ms: int) -> None:
    if not c.execute("DELETE FROM pauses WHERE id = ? AND household = ?", (pid, hid)):
        raise NotFound(f"no pause {pid!r} in household {hid!r}")
    recheck_at(c, hid, now_ms)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"date {text!r}: write it as YYYY-MM-DD") from None


def local_hhmm(ms: float | None, tz: str) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(to_s(ms), ZoneInfo(tz)).strftime("%H:%M")


def local_day(ms: float, tz: str) -> str:
    return datetime.fromtimestamp(to_s(ms), ZoneInfo(tz)).strftime("%Y-%m-%d")



def touch(db: Database, hid: str, now_ms: int) -> bool:
    """Look at the household again at the next sweep (a bulb was added outside the API);
    False if there is no such household."""
    open_people(db)
    with db.tx() as c:
        return bool(recheck_at(c, hid, now_ms))


# ---------------------------------------------------------------------------------------------
# recurring absences (kept in the household's settings: "absences")


def add_absence(c: Cursor, hid: str, raw: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
    """Add a recurring part-day absence ({"days": "tue,fri", "from": "09:00", "to": "17:00",
    "reason": "day service"}); the household's absences, numbered from 1 as listed."""
    h = household(c, hid)
    absences = [*settings_json(h.settings)["absences"], check_absence(raw)]
    return list(update_settings(c, hid, {"absences": absences}, now_ms).settings.absences)


def remove_absence(c: Cursor, hid: str, number: int, now_ms: int) -> list[dict[str, Any]]:
    """Remove absence `number` (1 = the first listed)."""
    h = household(c, hid)
    absences = settings_json(h.settings)["absences"]
    if not 1 <= number <= len(absences):
        raise NotFound(f"household {hid!r} has no absence {number}: "
                       f"see `mimamori household absence list {hid}`")
    del absences[number - 1]
    return list(update_settings(c, hid, {"absences": absences}, now_ms).settings.absences)


# ---------------------------------------------------------------------------------------------
# bulbs in households


def assign_bulb(c: Cursor, device_id: str, hid: str, now_ms: int) -> str | None:
    """Attach a registered bulb to a household (or move it from another): the one way the API,
    the CLI (`mimamori device assign`) and the coordinator's page do it. Both households are
    looked at again at the next sweep. Returns the household it was in (None: none);
    NotFound for an unknown bulb or household."""
    household(c, hid)
    row = c.one("SELECT household FROM devices WHERE id = ?" + c.for_update, (device_id,))
    if row is None:
        raise NotFound(f"no bulb {device_id!r}: register it first (`make provision` or "
                       "`mimamori device register`); `mimamori device list` shows the bulbs")
    c.execute("UPDATE devices SET household = ? WHERE id = ?", (hid, device_id))
    for h in sorted({hid, row[0] or hid}):  # and the household it left (rows in one order)
        recheck_at(c, h, now_ms)
    return row[0]
