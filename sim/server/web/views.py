# SPDX-License-Identifier: MIT
"""What the dashboard pages show, assembled from the store and the alert side's own functions.

    household_card(...)   status now (well / alert / paused / silent), last switch-on, open alerts
    bulb_health(...)      per bulb: last heard, signal (K_LINK dBm), late reports, records lost
                          (and the bulb's own count), seq conflicts, firmware (K_POWER_ON arg),
                          faults (K_FAULT)
    pilot_report(...)     per household and in total: alerts per household-month, false alerts,
                          time to claim and to resolve, delivery delay, records lost; and its CSV

Everything is read through Store, households.py, alerts.py and the kept timeline the rules see
(sweeper.recent_timeline: the days a page shows; sweeper.timeline_of for the report's export).
The few writes the dashboard needs that the alert side has no function for are here too,
clearly named: set_watcher_tier (who is told in which order) and end_pause
(end an ongoing absence today, keeping the days already away).

It must never compute a figure the data do not give: unknown values are None and the page says
"unknown".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import statistics
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from mimamori import alerts, notify, ota, status, sweeper
from mimamori import households as hh
from mimamori.clock import DAY_MS, MINUTE_MS
from mimamori.storage import Cursor, Store
from mimamori.timeline import Interval, Timeline
from mimamori_firmware import quality, record

PAGE_DAYS = 15  # a page reads this many days of visits (the chart shows 14 local days)
LATE_MS = status.LATE_MS  # a visit reported later than this counts as late (rules' late_after_s)
# a firmware fault (K_FAULT sub, firmware/record.py) -> its name; the dashboard's words are
# i18n "fault_<name>", the CLI's are FAULT_WHAT
FAULT_NAMES = {
    record.F_CONFIG: "config", record.F_CONFIG_FILE: "config_file", record.F_CRASH: "crash",
    record.F_SAFE_MODE: "safe_mode", record.F_WATCHDOG: "watchdog", record.F_JOURNAL: "journal",
    record.F_UPLINK: "uplink",
}
FAULT_WHAT = {
    "config": "a setting was missing, corrupt or out of range (the default was used)",
    "config_file": "a config file could not be read (the defaults were used)",
    "crash": "the firmware stopped on an error and restarted",
    "safe_mode": "it started in safe mode after failed starts (light and journal only)",
    "watchdog": "it hung and the watchdog restarted it",
    "journal": "unreadable journal slots were found (skipped, never sent as data)",
    "uplink": "the server refused a batch",
}


def fault_name(sub: int) -> str:
    return FAULT_NAMES.get(sub, f"fault_{sub}")


TRANSPORTS = {record.T_WIFI: "Wi-Fi", record.T_LTE: "LTE-M"}


@dataclass
class Card:
    home: hh.Household
    state: str  # alert | silent | paused | well
    last_on: Interval | None
    open_alerts: list[alerts.Alert]  # family alerts, newest first
    coordinator_alerts: list[alerts.Alert]
    pause: hh.PauseRow | None  # the pause covering now
    names: dict[str, str] = field(default_factory=dict)  # watcher id -> name (claimers)


def current_pause(c: Cursor, hid: str, now_ms: int) -> hh.PauseRow | None:
    for p in hh.pauses(c, hid):
        if p.start_ms <= now_ms < p.end_ms:
            return p
    return None


def names(c: Cursor, hid: str) -> dict[str, str]:
    """Every watcher ever in the household (removed ones too: history keeps their name)."""
    out = {}
    for a in alerts.list_alerts(c, hid, limit=500):
        for wid in (a.claimed_by, a.resolved_by):
            if wid and wid not in out:
                try:
                    out[wid] = hh.watcher(c, wid).name
                except hh.NotFound:
                    out[wid] = "?"
    out.update({w.id: w.name for w in hh.watchers(c, hid)})
    return out


def household_card(c: Cursor, store: Store, home: hh.Household, now_ms: int,
                   tl: Timeline | None = None) -> Card:
    tl = tl if tl is not None else sweeper.recent_timeline(c, home.id, now_ms, PAGE_DAYS)
    active = alerts.list_alerts(c, home.id, active_only=True)
    family = [a for a in active if a.audience != "coordinator"]
    coord = [a for a in active if a.audience == "coordinator"]
    pause = current_pause(c, home.id, now_ms)
    silent = any(a.rule == "bulb_silent" for a in coord)
    state = "alert" if family else "silent" if silent else "paused" if pause else "well"
    visible = [iv for iv in tl.intervals if iv.start_latest <= now_ms]
    return Card(home, state, visible[-1] if visible else None, family, coord, pause,
                names(c, home.id))


@dataclass
class Line:
    """One household on the coordinator's overview: its one status, and what the row shows."""

    home: hh.Household
    row: status.Row  # its kept status row: order, last switch-on, the week's lateness, signal
    state: str  # status.STATES: the row's state as the alerts and pauses are now
    alerts: list[alerts.Alert]  # active: the family's (newest first), then coordinator notices
    names: dict[str, str]  # claimer id -> name


def overview_line(c: Cursor, row: status.Row, home: hh.Household, now_ms: int) -> Line:
    """The row of one household, read from its status row and its active alerts (a few
    indexed reads; never its records or timeline)."""
    active = alerts.list_alerts(c, home.id, active_only=True)
    family = [a for a in active if a.audience != "coordinator"]
    coord = [a for a in active if a.audience == "coordinator"]
    state = status.state_of([a.state for a in family],
                            any(a.rule in status.TROUBLE_RULES for a in coord),
                            row.often_late, current_pause(c, home.id, now_ms) is not None)
    names = {}
    for a in family:
        if a.claimed_by and a.claimed_by not in names:
            try:
                names[a.claimed_by] = hh.watcher(c, a.claimed_by).name
            except hh.NotFound:
                names[a.claimed_by] = "?"
    return Line(home, row, state, family + coord, names)


# ---------------------------------------------------------------------------------------------
# the weekly check: watchers who never signed in or never confirmed their mail


@dataclass
class WatcherCheck:
    watcher: hh.Watcher
    household_name: str
    signed_in_ms: int | None  # their last sign-in (any household of the same address)
    mail_confirmed_ms: int | None  # when they showed that our e-mail reaches them

    @property
    def has_email(self) -> bool:
        return bool(self.watcher.email)


def mail_confirmed_at(c: Cursor, watchers: list[hh.Watcher]) -> dict[str, int]:
    """When each watcher showed that our e-mail reaches them (watcher id -> ms; absent: never).

    The one accessor for "confirmed they receive mail". Today's evidence in the store: they
    used a sign-in link that was only ever sent to them by e-mail (an invitation sent as a
    message, or a link asked for on the sign-in page). The "I received this" link of the
    invitation's test message (notify.confirmations: pressed for their current address) counts
    too: the earlier of the two."""
    sent: dict[str, str] = {}  # link digest -> the address it was sent to
    for (payload,) in c.all("SELECT payload FROM outbox WHERE kind = 'signin' AND "
                            "channel = 'email'"):
        msg = json.loads(payload)
        token = msg.get("links", {}).get("signin_url", "").rsplit("/", 1)[-1]
        if token and msg.get("to"):
            sent[hashlib.sha256(token.encode()).hexdigest()] = msg["to"].lower()
    at_address: dict[str, int] = {}  # one person, one address: every household they watch
    if sent:
        for digest, at in c.all("SELECT digest, used_at FROM web_links WHERE role = "
                                "'watcher' AND used_at IS NOT NULL"):
            to = sent.get(digest)
            if to is not None:
                at_address[to] = min(at, at_address.get(to, at))
    got = {w.id: at_address[w.email.lower()] for w in watchers
           if w.email and w.email.lower() in at_address}
    wanted = {w.id for w in watchers}
    for wid, at in notify.confirmations(c).items():  # "I received this" (notify.invite)
        if wid in wanted:
            got[wid] = min(at, got.get(wid, at))
    return got


def watchers_to_check(c: Cursor, offset: int, limit: int, q: str = ""
                      ) -> tuple[list[WatcherCheck], int]:
    """Current watchers (not the coordinator's notice rows) who never signed in, or who have an
    e-mail address and never confirmed that it reaches them; by household, then name. One
    page of them and how many in all. q: a fragment of the watcher's or household's name or
    id, or of the e-mail address."""
    rows = c.all("SELECT w.id, h.name FROM watchers w JOIN households h ON h.id = w.household "
                 "WHERE w.removed_at IS NULL AND w.tier > 0 ORDER BY w.household, w.name, w.id")
    homes = dict(rows)
    ws = [hh.watcher(c, wid) for wid, _ in rows]
    signed: dict[str, int] = {}
    by_email: dict[str, int] = {}
    for subject, email, at in c.all("SELECT subject, email, MAX(created_at) FROM web_sessions "
                                    "WHERE role = 'watcher' GROUP BY subject, email"):
        signed[subject] = max(at, signed.get(subject, at))
        if email:
            by_email[email.lower()] = max(at, by_email.get(email.lower(), at))
    confirmed = mail_confirmed_at(c, ws)
    needle = q.strip().lower()
    out = []
    for w in ws:
        s_at = max([x for x in (signed.get(w.id), by_email.get((w.email or "").lower()))
                    if x is not None], default=None)
        m_at = confirmed.get(w.id)
        if s_at is not None and (m_at is not None or not w.email):
            continue
        if needle and not any(needle in (x or "").lower() for x in
                              (w.name, w.email, w.household, homes[w.id])):
            continue
        out.append(WatcherCheck(w, homes[w.id], s_at, m_at))
    return out[offset:offset + limit], len(out)


# ---------------------------------------------------------------------------------------------
# bulb health


@dataclass
class BulbHealth:
    device: str
    household: str | None
    last_heard_ms: int | None
    dbm: int | None
    transport: str | None
    link_ok: bool | None  # the last connection attempt worked (K_LINK arg != 0)
    visits_7d: int
    late_7d: int
    lost: int  # records the server will never get (counted exactly from the seqs)
    backlog: int | None  # records stored beyond a hole in the current journal (waiting)
    firmware: int | None
    faults_14d: int
    last_fault: str | None
    faults: dict[str, int]  # fault name -> how many in 14 days, the newest last
    settings: dict[str, Any]
    lost_reported: int = 0  # what the bulb's own LOSS records count (it may know of more)
    conflicts: int = 0  # records that came with a stored seq but other content: a fault
    update: str | None = None  # the last rollback or refusal of an update, with its reason

    @property
    def signal(self) -> str | None:
        """The level's key on the one scale (firmware/quality.py): the signal and this week's
        late reports together; None when neither gives a figure."""
        row = quality.level(self.dbm, self.late_7d, self.visits_7d)
        return None if row is None else row[3]

    def signal_text(self, lang: str) -> str | None:
        """The level in words, in the reader's language (the table's own words)."""
        row = quality.level(self.dbm, self.late_7d, self.visits_7d)
        return None if row is None else row[4 if lang == "ja" else 5]


def signal_words(dbm: int | None, late: int | None, visits: int | None, lang: str
                 ) -> str | None:
    """A household's signal in words on the one scale (firmware/quality.py): its weakest bulb's
    latest dBm and the week's late reports (a status row's); None when neither gives a figure."""
    row = quality.level(dbm, late or 0, visits or 0)
    return None if row is None else row[4 if lang == "ja" else 5]


def bulb_health(store: Store, tl: Timeline, dev_id: str, now_ms: int) -> BulbHealth:
    dev = store.device(dev_id)
    assert dev is not None
    since14 = now_ms - 14 * DAY_MS
    with store.db.read() as c:  # what the row shows, not the bulb's whole history
        link = _last(c, dev_id, record.K_LINK)
        power = _last(c, dev_id, record.K_POWER_ON)
        faults = fault_records(c, dev_id, since14)
        backlog = None
        if dev.epoch is not None and dev.ack is not None:
            (backlog,) = c.one("SELECT COUNT(*) FROM records WHERE device = ? AND epoch = ? "
                               "AND seq > ?", (dev_id, dev.epoch, dev.ack)) or (0,)
    since7 = now_ms - 7 * DAY_MS
    mine = [iv for iv in tl.intervals if iv.device == dev_id and iv.start_latest >= since7
            and iv.start_latest <= now_ms]
    late = [iv for iv in mine if iv.reported_at - iv.start_mid > LATE_MS]
    journals = store.journals(dev_id)
    if not journals:
        backlog = None
    return BulbHealth(
        device=dev_id, household=dev.household, last_heard_ms=dev.last_heard_at,
        dbm=link[1] if link is not None and link[1] != 0 else None,
        transport=TRANSPORTS.get(link[0]) if link is not None else None,
        link_ok=(link[2] != 0) if link is not None else None,
        visits_7d=len(mine), late_7d=len(late), lost=sum(j.lost for j in journals),
        backlog=backlog, firmware=_firmware(store, dev_id, power),
        faults_14d=len(faults),
        last_fault=fault_name(faults[-1][1]) if faults else None,
        faults=_fault_counts([f[1] for f in faults]),
        settings=dict(dev.settings), lost_reported=sum(j.reported_lost for j in journals),
        conflicts=sum(j.conflicts for j in journals), update=ota.last_problem(store, dev_id))


def device_health(store: Store, dev_id: str, now_ms: int) -> BulbHealth:
    """bulb_health for one bulb on its own (the CLI): its household's recent timeline, or none
    for a bulb in no household yet."""
    dev = store.device(dev_id)
    tl = Timeline(())
    if dev is not None and dev.household:
        with store.db.read() as c:
            tl = sweeper.recent_timeline(c, dev.household, now_ms, 8)
    return bulb_health(store, tl, dev_id, now_ms)


def fault_records(c: Cursor, dev_id: str, since_ms: int) -> list[tuple[int, int, int]]:
    """(received_at, sub, aux) of the bulb's fault records that arrived since since_ms."""
    return [(r[0], r[1], r[2]) for r in c.all(
        "SELECT received_at, sub, aux FROM records WHERE device = ? AND received_at >= ? AND "
        "kind = ? ORDER BY received_at, epoch, seq", (dev_id, since_ms, record.K_FAULT))]


def _fault_counts(subs: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sub in subs:
        name = fault_name(sub)
        counts[name] = counts.pop(name, 0) + 1  # re-inserted: the newest comes last
    return counts


def _firmware(store: Store, dev_id: str, power: Any) -> int | None:
    """The version the bulb's uploads say it runs (docs/ota.md), else its power-on's arg."""
    running = ota.running(store, dev_id)
    if running is not None:
        return running
    return power[2] if power is not None else None


def _last(c: Cursor, dev_id: str, kind: int) -> tuple[int, int, int] | None:
    """(sub, aux, arg) of the bulb's newest record of this kind (journal order: the journal
    heard last, then seq), read backwards from its newest arrival."""
    row = c.one("SELECT r.sub, r.aux, r.arg FROM records r JOIN journals j ON j.device = "
                "r.device AND j.epoch = r.epoch WHERE r.device = ? AND r.kind = ? "
                "ORDER BY j.ordinal DESC, r.seq DESC LIMIT 1", (dev_id, kind))
    return None if row is None else (row[0], row[1], row[2])


# ---------------------------------------------------------------------------------------------
# the pilot report


@dataclass
class ReportRow:
    household: str
    name: str
    months: float
    alerts: int
    false_alerts: int
    cleared: int
    claim_ms: list[int]
    resolve_ms: list[int]
    delays_ms: list[int]
    lost: int = 0  # records of the household's bulbs the server will never get
    lost_reported: int = 0  # ...as the bulbs' own LOSS records count them
    conflicts: int = 0  # records that came with a stored seq but other content
    needed_help: int = 0  # alerts resolved as "needed help" (the pilot's key figure)
    fine: int = 0  # ...as "fine" (someone checked; all was well)

    @property
    def per_month(self) -> float | None:
        return self.alerts / self.months if self.months > 0 else None

    @property
    def late_share(self) -> float | None:
        if not self.delays_ms:
            return None
        return sum(1 for d in self.delays_ms if d > LATE_MS) / len(self.delays_ms)


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _p90(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


def pilot_report(c: Cursor, store: Store, now_ms: int,
                 timelines: dict[str, Timeline] | None = None,
                 homes: list[hh.Household] | None = None) -> list[ReportRow]:
    """Per household (all, or `homes`), from its whole history (the CSV export; the overview
    passes the households of its page)."""
    rows = []
    for home in hh.households(c) if homes is None else homes:
        tl = (timelines or {}).get(home.id) or sweeper.timeline_of(store, home.id)
        fam = [a for a in alerts.list_alerts(c, home.id, limit=100_000)
               if a.audience != "coordinator"]
        months = max(0.0, (now_ms - home.created_at) / (30.44 * DAY_MS))
        journals = [j for d in store.devices(home.id) for j in store.journals(d.id)]
        delays = [max(0, iv.reported_at - iv.start_mid) for iv in tl.intervals
                  if iv.start_latest <= now_ms]
        rows.append(ReportRow(
            household=home.id, name=home.name, months=months, alerts=len(fam),
            false_alerts=sum(1 for a in fam if a.outcome == "false_alarm"),
            needed_help=sum(1 for a in fam if a.outcome == "needed_help"),
            fine=sum(1 for a in fam if a.outcome == "fine"),
            cleared=sum(1 for a in fam if a.state == "cleared"),
            claim_ms=[a.claimed_at - a.opened_at for a in fam
                     if a.claimed_at is not None],  # resolving unclaimed also answers
            resolve_ms=[a.resolved_at - a.opened_at for a in fam
                       if a.resolved_at is not None],
            delays_ms=delays, lost=sum(j.lost for j in journals),
            lost_reported=sum(j.reported_lost for j in journals),
            conflicts=sum(j.conflicts for j in journals)))
    return rows


def report_total(rows: list[ReportRow]) -> ReportRow:
    return ReportRow("total", "", sum(r.months for r in rows), sum(r.alerts for r in rows),
                     sum(r.false_alerts for r in rows), sum(r.cleared for r in rows),
                     [x for r in rows for x in r.claim_ms],
                     [x for r in rows for x in r.resolve_ms],
                     [x for r in rows for x in r.delays_ms], sum(r.lost for r in rows),
                     sum(r.lost_reported for r in rows), sum(r.conflicts for r in rows),
                     sum(r.needed_help for r in rows), sum(r.fine for r in rows))


def summary(r: ReportRow) -> dict[str, float | None]:
    """The figures of one row, in minutes where they are durations."""
    def m(x: float | None) -> float | None:
        return None if x is None else round(x / MINUTE_MS, 1)
    return {"months": round(r.months, 2),
            "alerts_per_household_month": None if r.per_month is None else round(r.per_month, 2),
            "claim_median_min": m(_median(r.claim_ms)),
            "resolve_median_min": m(_median(r.resolve_ms)),
            "delay_median_min": m(_median(r.delays_ms)), "delay_p90_min": m(_p90(r.delays_ms)),
            "late_share": None if r.late_share is None else round(r.late_share, 3)}


# the CSV's columns: each header is the translation of "csv_" + the key, in the reader's
# language (web/i18n.py)
CSV_COLUMNS = ("household", "name", "status", "last_on", "signal_dbm", "signal", "late_7d",
               "visits_7d", "household_months", "alerts", "alerts_per_household_month",
               "needed_help", "fine", "false_alerts", "cleared_by_themselves", "claims",
               "claim_median_min", "resolves", "resolve_median_min", "switch_ons",
               "delay_median_min", "delay_p90_min", "late_share", "records_lost",
               "records_lost_bulb_count", "seq_conflicts")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads such a cell as a formula


def safe_cell(x: Any) -> Any:
    """A text cell a spreadsheet shows as text: one that starts like a formula gets a leading
    apostrophe (OWASP's CSV injection advice); numbers are left as they are."""
    if isinstance(x, str) and x.startswith(FORMULA_START):
        return "'" + x
    return x


def report_csv(rows: list[ReportRow], lang: str = "en",
               statuses: dict[str, status.Row] | None = None) -> str:
    """The pilot report as CSV: headers in the reader's language, every household's outcomes
    (needed help / fine / false alarm), its status now and its weakest bulb's signal."""
    from mimamori.web import i18n

    tr = i18n.t(lang)
    statuses = statuses or {}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([tr("csv_" + k) for k in CSV_COLUMNS])
    for r in [*rows, report_total(rows)]:
        s = summary(r)
        st = statuses.get(r.household)
        now_cols: list[Any] = ["", "", "", "", "", ""]
        if st is not None:  # the local time of the household, as a spreadsheet reads a date
            on = i18n.local(st.last_on_ms, st.tz)
            now_cols = [tr("st_" + st.state), "" if on is None else f"{on:%Y-%m-%d %H:%M}",
                        _blank(st.dbm),
                        signal_words(st.dbm, st.late_7d, st.visits_7d, lang) or "",
                        _blank(st.late_7d), _blank(st.visits_7d)]
        total = r.household == "total" and not r.name
        w.writerow([safe_cell(x) for x in [
            tr("csv_total") if total else r.household, r.name, *now_cols, s["months"],
            r.alerts, _blank(s["alerts_per_household_month"]), r.needed_help, r.fine,
            r.false_alerts, r.cleared, len(r.claim_ms), _blank(s["claim_median_min"]),
            len(r.resolve_ms), _blank(s["resolve_median_min"]), len(r.delays_ms),
            _blank(s["delay_median_min"]), _blank(s["delay_p90_min"]),
            _blank(s["late_share"]), r.lost, r.lost_reported, r.conflicts]])
    return buf.getvalue()


def _blank(x: float | None) -> str | float:
    return "" if x is None else x


# ---------------------------------------------------------------------------------------------
# writes the alert side has no function for (yet)


def set_watcher_tier(c: Cursor, hid: str, wid: str, tier: int, now_ms: int) -> hh.Watcher:
    """Move a watcher of household hid to tier 1, 2 or 3 (the order in which people are told).
    households.py has no such function; this is the one place that changes a watcher's tier."""
    w = hh.watcher(c, wid)
    if w.household != hid or w.removed_at is not None:
        raise hh.NotFound(f"watcher {wid!r} does not watch household {hid!r}")
    if w.tier == 0:
        raise ValueError("the coordinator is not in the family's order")
    if tier not in (1, 2, 3):
        raise ValueError(f"order {tier!r}: 1 (first), 2 or 3 (last)")
    c.execute("UPDATE watchers SET tier = ? WHERE id = ?", (tier, wid))
    hh.recheck_at(c, hid, now_ms)
    return hh.watcher(c, wid)


def end_pause(c: Cursor, hid: str, pid: str, today: date, now_ms: int) -> None:
    """End a planned absence: one not started yet is removed; an ongoing one keeps the days
    already away (so no alert fires for them) and ends at the start of today. Built from
    households.remove_pause and add_pause."""
    p = next((x for x in hh.pauses(c, hid) if x.id == pid), None)
    if p is None:
        raise hh.NotFound(f"no pause {pid!r} in household {hid!r}")
    first = date.fromisoformat(p.first_day)
    hh.remove_pause(c, hid, pid, now_ms)
    if first < today and p.start_ms <= now_ms:
        hh.add_pause(c, now_ms, hid, first, min(date.fromisoformat(p.last_day),
                                                today - timedelta(days=1)), p.reason)
