# SPDX-License-Identifier: MIT
"""Who may see and change what in a household: one table, read by the dashboard, the API, the
CLI and docs/roles.md (`markdown()` writes the docs' table; a test compares them).

    role           tier  may
    family         1     see, claim/resolve, pause (up to 30 days), end pauses, rules,
                         order (tiers), roles, invite, brightness
    neighbour      2     see, claim/resolve, a short pause (one day at most)
    commissioner   2     the same as a neighbour (the municipality's minsei-iin)
    visit_service  3     see, claim/resolve
    coordinator    0     everything, for the households it coordinates (pauses up to a year)

A role is kept per watcher row, so per household: the same person can be family in one home
and a neighbour in the next. The signed-in coordinator of the dashboard, an API token and the
`mimamori` command line act as "coordinator". The reasons for each line are in docs/roles.md.

The record of what was changed (household_events) is migrated here, as its own component
"roles", so its versions never collide with the people tables'; sim/server/changes.py writes
it and tells the other watchers.

It must never let a role do more than this table says, and imports nothing of the server.
"""

from __future__ import annotations

from dataclasses import dataclass

# what can be asked for; the words people read are in sim/server/web/i18n.py ("may_<action>")
ACTIONS = (
    "see",  # the household's page: status, activity, alerts, pauses, settings (read)
    "claim",  # claim an alert ("I will go and check") and record its outcome
    "pause",  # add a pause (planned absence), at most Role.pause_days long
    "end_pause",  # end a pause early (alerts resume)
    "rules",  # the alert rules and recurring absences (household settings)
    "tiers",  # who is told first (a watcher's tier)
    "roles",  # another watcher's role (never to or from coordinator, unless coordinator)
    "invite",  # add a watcher to the household
    "brightness",  # a bulb's brightness
    "device_health",  # the coordinator's alerts: silent bulbs, poor delivery, placement
)


@dataclass(frozen=True)
class Role:
    name: str
    tier: int  # who is told first: 1 family, 2 neighbours and commissioner, 3 visit service
    may: frozenset[str]
    pause_days: int = 0  # the longest pause this role may set (days, first to last day)
    why: str = ""  # one line for the docs' table


_WATCH = frozenset({"see", "claim"})
_FAMILY = _WATCH | {"pause", "end_pause", "rules", "tiers", "roles", "invite", "brightness"}

TABLE: dict[str, Role] = {r.name: r for r in (
    Role("family", 1, _FAMILY, 30,
         "the household's own people decide how it is watched; longer absences go "
         "through the coordinator"),
    Role("neighbour", 2, _WATCH | {"pause", "end_pause"}, 1,
         "checks in person; may stop alerts for today (a visit, an outing) but not change "
         "the family's rules"),
    Role("commissioner", 2, _WATCH | {"pause", "end_pause"}, 1,
         "the municipality's minsei-iin: like a neighbour, with the office behind them"),
    Role("visit_service", 3, _WATCH, 0,
         "the last escalation step: goes when called, changes nothing"),
    Role("coordinator", 0, frozenset(ACTIONS), 366,
         "runs the pilot for the households it coordinates; can undo any change"),
)}
ROLES = tuple(TABLE)
WATCHER_ROLES = ("family", "neighbour", "commissioner", "visit_service")  # set by the family
DEFAULT_ROLE = "family"  # a new watcher when none is given (CLI, API)
MIGRATION_ROLE = "neighbour"  # a stored role this table does not know becomes this (see SCHEMA)


class Forbidden(PermissionError):
    """The role may not do this (a 403 at the API and the dashboard); the message says who
    may. role and action say what was refused; limit, for a pause, the most days allowed."""

    def __init__(self, msg: str, role: str = "", action: str = "", limit: int | None = None):
        super().__init__(msg)
        self.role, self.action, self.limit = role, action, limit


def role(name: str) -> Role:
    r = TABLE.get(name)
    if r is None:
        raise ValueError(f"role {name!r}: use one of {', '.join(ROLES)}")
    return r


def may(name: str, action: str) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    r = TABLE.get(name)
    return r is not None and action in r.may


def who_may(action: str) -> list[str]:
    return [r.name for r in TABLE.values() if action in r.may]


def need(name: str, action: str) -> None:
    """Forbidden unless role `name` may do `action`."""
    if not may(name, action):
        raise Forbidden(f"a {name} may not {action.replace('_', ' ')} here; "
                        f"this is for: {', '.join(who_may(action))}", name, action)


def check_pause_days(name: str, days: int) -> None:
    """Forbidden when a pause of `days` days (first to last day, both counted) is longer than
    role `name` may set."""
    need(name, "pause")
    limit = TABLE[name].pause_days
    if days > limit:
        longer = [r.name for r in TABLE.values() if r.pause_days >= days]
        raise Forbidden(f"a {name} may pause for {limit} day{'s' if limit != 1 else ''} at most "
                        f"(this one is {days}); a longer absence is set by "
                        f"{' or '.join(longer) or 'nobody: at most 366 days'}",
                        name, "pause", limit)


def check_role_change(actor: str, old: str, new: str) -> None:
    """Forbidden unless `actor` may move a watcher from role `old` to `new`: the family sets
    the watcher roles; only a coordinator makes or unmakes a coordinator."""
    role(new)
    need(actor, "roles")
    if actor != "coordinator" and (old not in WATCHER_ROLES or new not in WATCHER_ROLES):
        raise Forbidden("only the coordinator makes a watcher coordinator or changes a "
                        "coordinator's role", actor, "roles")


def markdown() -> str:
    """The table as docs/roles.md shows it (one row per role, one column per action)."""
    head = ["role", "tier", *ACTIONS, "longest pause"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in TABLE.values():
        cells = [f"`{r.name}`", str(r.tier), *("yes" if a in r.may else "-" for a in ACTIONS),
                 f"{r.pause_days} day{'s' if r.pause_days != 1 else ''}" if r.pause_days
                 else "-"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


# household_events: every change to a household's rules, pauses, tiers and roles, numbered per
# household (n, from 1), with who made it (actor: a watcher id, or a coordinator's / token's name; actor_role from TABLE). Migration
# 2 gives a stored role this table does not know (a row written by an older tool) the role
# with the least power that still claims: MIGRATION_ROLE. Every known role is kept as it was
# invited (the CLI's and the API's default was, and is, family).
SCHEMA: list[list[str]] = [
    [
        """CREATE TABLE household_events (
            id TEXT PRIMARY KEY,
            household TEXT NOT NULL REFERENCES households (id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            actor_name TEXT NOT NULL,
            actor_role TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE UNIQUE INDEX household_events_n ON household_events (household, n)",
    ],
    [
        (f"UPDATE watchers SET role = '{MIGRATION_ROLE}', tier = {TABLE[MIGRATION_ROLE].tier} "
         f"WHERE role NOT IN ({', '.join(repr(r) for r in ROLES)})"),
    ],
]
