# SPDX-License-Identifier: MIT
"""The sweeper: evaluates the households that are due, found through the index on next_check.

    sweep(db, now_ms, cfg)            one pass (tests call it at chosen instants)
    evaluate_household(db, hid, ...)  one household now
    api.install(app)                  runs sweep() in the server's lifespan every
                                      MIMAMORI_SWEEP_S real seconds (app clock), and at once
                                      when a batch that stored records wakes it; delivery
                                      workers send what the sweeps wrote to the outbox

One evaluation reads a snapshot (read connection: no write lock): the household's kept state
(kept.py) brought up to date from its new batches only, its timeline over a bounded window and
its kept model; the rules decide; then one short write transaction takes the household's row lock,
checks that what was decided on has not changed (or decides again inside the lock), and the
alert lifecycle applies the decisions and writes its notifications to the outbox; reminders,
escalations and the weekly digest that are due are written too, and the household's next_check
becomes the earliest of all their deadlines. A household whose nothing can change without new
records has next_check NULL and is only woken by ingest.

Several instances sweep the same database: each claims due households a chunk at a time with a
lease (`claim_due`), so a household is evaluated by one sweeper, and one that died leaves its
chunk to the others when the lease runs out. Correctness does not rest on the lease: any
evaluation writes under the household's row lock on what is committed.

It must never scan every household: `due()` reads the index range next_check <= now only.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from dataclasses import dataclass, field

from mimamori import alerts, kept, listening, models, notify, rules, sql, status
from mimamori import households as hh
from mimamori import settings as bulb_settings
from mimamori.clock import DAY_MS, HOUR_MS, SECOND_MS, to_ms
from mimamori.storage import Cursor, Database, Store
from mimamori.timeline import (
    StoredRecord,
    Timeline,
    build_timeline,
    receipt_anchor,
    uses_lte,
)


@dataclass
class SweepResult:
    evaluated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


LEASE_MS = 300_000  # due households claimed by one sweeper are its own for this long (real time)


def worker_id() -> str:
    """Who holds a lease: host, process and a random part (a restarted process is new)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{_TOKEN}"


_TOKEN = secrets.token_hex(4)


def due(c: Cursor, now_ms: int, limit: int) -> list[str]:
    """Households whose next_check has come, earliest first (an index range scan)."""
    return [r[0] for r in c.all(
        "SELECT id FROM households WHERE next_check <= ? ORDER BY next_check LIMIT ?",
        (now_ms, limit))]


def due_by_full_scan(c: Cursor, now_ms: int, limit: int) -> list[str]:
    """The reference approach the bench compares with: read every household's next_check."""
    rows = [(n, i) for i, n in c.all("SELECT id, next_check FROM households")
            if n is not None and n <= now_ms]
    return [i for _, i in sorted(rows)[:limit]]


def claim_due(db: Database, now_ms: int, limit: int, owner: str,
              lease_ms: int = LEASE_MS, full_scan: bool = False) -> list[str]:
    """Take up to `limit` due households that no other sweeper holds, earliest first, with a
    lease: on PostgreSQL FOR UPDATE SKIP LOCKED (instances claiming at the same instant take
    different rows), on SQLite the write transaction itself. A lease that ran out (its holder
    died) is taken over. full_scan: find them by reading every row (the bench's reference)."""
    lease = sql.lease_now_ms()
    with db.tx() as c:
        if full_scan:
            rows = [(n, i) for i, n, u in c.all(
                "SELECT id, next_check, lease_until FROM households")
                if n is not None and n <= now_ms and (u is None or u <= lease)]
            ids = [i for _, i in sorted(rows)[:limit]]
        else:
            ids = [r[0] for r in c.all(
                "SELECT id FROM households WHERE next_check <= ? AND (lease_until IS NULL OR "
                "lease_until <= ?) ORDER BY next_check, id LIMIT ?" + c.skip_locked,
                (now_ms, lease, limit))]
        if ids:
            c.executemany("UPDATE households SET lease_until = ?, lease_owner = ? WHERE id = ?",
                          [(lease + lease_ms, owner, hid) for hid in ids])
    return ids


def sweep(db: Database, now_ms: int, cfg: notify.NotifierSettings, limit: int = 1000,
          full_scan: bool = False, chunk: int = 50, lease_ms: int = LEASE_MS) -> SweepResult:
    """Evaluate the due households (at most `limit` per call; the next call takes the rest),
    claimed `chunk` at a time with a lease so that sweepers of several instances share them.
    A chunk is read outside any write transaction, then written in one short transaction."""
    store = Store(db)
    owner = worker_id()
    out = SweepResult()
    while len(out.evaluated) + len(out.failed) < limit:
        ids = claim_due(db, now_ms, min(chunk, limit - len(out.evaluated) - len(out.failed)),
                        owner, lease_ms, full_scan)
        if not ids:
            break
        _chunk(db, store, ids, now_ms, cfg, owner, out)
    return out


def _chunk(db: Database, store: Store, ids: list[str], now_ms: int, cfg: notify.NotifierSettings,
           owner: str, out: SweepResult) -> None:
    try:  # the reads and the rules outside the write lock, then one commit for the chunk
        ready = [_prepare(db, store, hid, now_ms) for hid in ids]
        with db.tx() as c:
            for p in ready:
                _commit(c, store, p, now_ms, cfg, owner)
        out.evaluated += ids
        return
    except Exception:  # noqa: BLE001, S110 - redo them one by one to find the broken one
        pass
    for hid in ids:
        try:
            evaluate_household(db, hid, now_ms, cfg, store, owner)
            out.evaluated.append(hid)
        except Exception as e:  # noqa: BLE001 - one bad household must not stop the others
            out.failed[hid] = f"{type(e).__name__}: {e}"
            with db.tx() as c:  # look again in an hour rather than in a hot loop
                c.execute("UPDATE households SET next_check = ?, lease_until = NULL, "
                          "lease_owner = NULL WHERE id = ?", (now_ms + HOUR_MS, hid))


def device_records(store: Store, device_id: str) -> list[StoredRecord]:
    """What the timeline knows of one bulb: its stored records, then one receipt anchor per
    batch whose header carried the bulb's uptime (timeline.receipt_anchor). Every reader of a
    timeline goes through here (timeline_of), so they all place visits alike."""
    recs = [StoredRecord(r.device, r.seq, r.boot, r.up_ms, r.kind, r.sub, r.aux, r.arg,
                         r.received_at, epoch=r.epoch)
            for r in store.records_for_device(device_id)]
    lte = uses_lte(recs)
    recs += [receipt_anchor(b.device, b.epoch, b.boot, b.up_ms, b.received_at,
                            b.up_wait_ms or 0, lte, seq=b.from_seq)
             for b in store.deliveries(device_id) if b.up_ms]
    return recs


def timeline_of(store: Store, hid: str) -> Timeline:
    """The household's timeline from every record it has (the pilot report's export, the
    simulations' outcomes, and what tests compare the kept state with); evaluations and pages
    read the kept state instead (kept.prepare, recent_timeline)."""
    devs = store.devices(hid)
    recs: list[StoredRecord] = []
    for d in devs:
        recs += device_records(store, d.id)
    # the bulb's settings count seconds
    return build_timeline(recs, registered={d.id: d.created_at for d in devs},
                          report_gaps={d.id: to_ms(bulb_settings.lte_report_gap_s(d.settings))
                                       for d in devs},
                          heartbeats={d.id: to_ms(bulb_settings.heartbeat_s(d.settings))
                                      for d in devs})


def rule_settings(c: Cursor, home: hh.Household) -> rules.RuleSettings:
    """What the rules read of the household: its settings, its pauses, and the server's own
    outages (listening.py)."""
    rs = home.settings.rules(home.tz, tuple(p.rule() for p in hh.pauses(c, home.id)))
    return dataclasses.replace(rs, deaf=listening.spans(c))


@dataclass
class _Prepared:
    """One household read and decided outside the write lock, and what it was decided on."""

    hid: str
    inputs: tuple
    kept: kept.Kept
    decisions: list[rules.Decision]


def _inputs(c: Cursor, hid: str) -> tuple:
    """What an evaluation is decided on, besides the alerts (read again when writing): the
    household's settings, its bulbs and their batches (every accepted batch changes them), its
    pauses. Equal at write time means the decision is still the right one."""
    return (c.one("SELECT settings, tz FROM households WHERE id = ?", (hid,)),
            tuple(c.all("SELECT id, created_at, epoch, batches, last_heard_at, "
                        "settings_version FROM devices WHERE household = ? ORDER BY id", (hid,))),
            tuple(c.all("SELECT id, start_ms, end_ms FROM pauses WHERE household = ? "
                        "ORDER BY id", (hid,))))


def _decide(c: Cursor, hid: str, now_ms: int) -> tuple[kept.Kept, list[rules.Decision]]:
    """The household's kept state brought up to date (its new batches only) and the rules'
    decisions on its bounded window."""
    home = hh.household(c, hid)
    rs = rule_settings(c, home)
    k = kept.prepare(c, hid, rs, now_ms)
    return k, rules.evaluate(k.timeline, rs, now_ms, model=k.model, memo=k.memo)


def _prepare(db: Database, store: Store, hid: str, now_ms: int) -> _Prepared:
    with db.read() as c:  # one snapshot: inputs and records agree
        seen = _inputs(c, hid)
        k, decisions = _decide(c, hid, now_ms)
    return _Prepared(hid, seen, k, decisions)


def _commit(c: Cursor, store: Store, p: _Prepared, now_ms: int, cfg: notify.NotifierSettings,
            owner: str | None) -> list[rules.Decision]:
    """Apply a prepared evaluation under the household's row lock; if its inputs changed since
    (a batch, new settings, a pause), decide again inside the lock."""
    hid = p.hid
    alerts.lock_household(c, hid)
    k, decisions = p.kept, p.decisions
    home = hh.household(c, hid)
    # a "until the next switch-on" pause ends at the first switch-on after it began (a write:
    # under the lock; it changes the inputs, so the household is decided again below)
    hh.end_pauses_at_switch_on(c, hid, home.tz, [iv.start_latest for iv in k.timeline.intervals
                                                 if iv.start_latest <= now_ms])
    if _inputs(c, hid) != p.inputs:
        k, decisions = _decide(c, hid, now_ms)
    kept.write(c, k)
    tl = k.timeline
    deadlines = [alerts.apply(c, home, decisions, now_ms, cfg),
                 alerts.tick(c, home, now_ms, cfg)]
    deadlines.append(rules.due_at(decisions))
    deadlines.append(_digest(c, home, tl, now_ms, cfg))
    status.keep(c, hid, k, now_ms)
    nxt = min((t for t in deadlines if t is not None), default=None)
    if nxt is not None:
        nxt = max(nxt, now_ms + SECOND_MS)
    c.execute("UPDATE households SET next_check = ?, evaluated_at = ?, "
              "lease_until = CASE WHEN lease_owner = ? THEN NULL ELSE lease_until END, "
              "lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END "
              "WHERE id = ?", (nxt, now_ms, owner or "", owner or "", hid))
    return decisions


STATES = status.STATES  # the overview's order (most urgent first; sim/server/status.py)


def overview(c: Cursor, offset: int, limit: int, state: str | None = None, q: str = ""
             ) -> tuple[list[str], dict[str, int]]:
    """One page of household ids for the coordinator, most urgent first (status rows, read
    through their index; a household not evaluated yet is well), and how many households are
    in each state (status.page has the rows themselves)."""
    rows, counts = status.page(c, offset, limit, state, q)
    return [r.household for r in rows], counts


def recent_timeline(c: Cursor, hid: str, now_ms: int, days: float = 14) -> Timeline:
    """The household's timeline over its last `days` (and each bulb's visit before them), from
    the kept state: what a page shows, without reading the whole history."""
    return kept.window(c, hid, now_ms - int(days * DAY_MS))


def evaluate_household(db: Database, hid: str, now_ms: int, cfg: notify.NotifierSettings,
                       store: Store | None = None, owner: str | None = None
                       ) -> list[rules.Decision]:
    """Evaluate one household now: read and decide outside the write lock, then write the
    decisions in a short transaction that holds the household's row (any instance may run
    this for any household at any time; two at once write one after the other, each on
    what is committed)."""
    store = store or Store(db)
    p = _prepare(db, store, hid, now_ms)
    with db.tx() as c:
        return _commit(c, store, p, now_ms, cfg, owner)


def mark_due(c: Cursor, device_id: str, now_ms: int) -> None:
    """In a batch's own transaction: the bulb's household is due now. on_ingest evaluates it
    right after the commit; if the instance dies first, the next sweep of any instance does."""
    c.execute("UPDATE households SET next_check = ? WHERE id = (SELECT household FROM devices "
              "WHERE id = ?) AND (next_check IS NULL OR next_check > ?)",
              (now_ms, device_id, now_ms))


def placement_of(store: Store, c: Cursor, home: hh.Household,
                 now_ms: int) -> dict[str, models.Placement]:
    """The placement check of each bulb of the household now (the dashboard, API and CLI),
    from the kept state and model (nothing is written)."""
    return placed_timeline(c, home, now_ms)[1]


def placed_timeline(c: Cursor, home: hh.Household, now_ms: int
                    ) -> tuple[Timeline, dict[str, models.Placement]]:
    """The household's kept timeline (the evaluation's window: 10 days or more) and the
    placement check of each bulb now, read together (the coordinator's overview)."""
    k = kept.prepare(c, home.id, rule_settings(c, home), now_ms)
    ivs = [iv for iv in k.timeline.intervals if iv.start_latest <= now_ms]
    return k.timeline, rules.placements(ivs, k.timeline, k.model, now_ms)


def on_ingest(store: Store, device_id: str, now_ms: int, cfg: notify.NotifierSettings) -> None:
    """After a batch is committed: re-evaluate the bulb's household (late records slot in, a
    switch-on clears an alert at once)."""
    dev = store.device(device_id)
    if dev is None or not dev.household:
        return
    with store.db.read() as c:
        if c.one("SELECT 1 FROM households WHERE id = ?", (dev.household,)) is None:
            return
    evaluate_household(store.db, dev.household, now_ms, cfg, store)


# ---------------------------------------------------------------------------------------------
# the weekly "all is well" digest


def week_summary(c: Cursor, home: hh.Household, tl: Timeline, now_ms: int,
                 days: int = 7) -> dict[str, object]:
    since_ms = now_ms - days * DAY_MS
    ivs = tl.starts_between(since_ms, now_ms)
    per_day: dict[str, list[int]] = {}
    for iv in ivs:
        per_day.setdefault(hh.local_day(iv.start_latest, home.tz), []).append(iv.start_latest)
    firsts = sorted(hh.local_hhmm(min(v), home.tz) for v in per_day.values())
    usual = firsts[len(firsts) // 2] if firsts else None
    (n_alerts,) = c.one("SELECT COUNT(*) FROM alerts WHERE household = ? AND opened_at >= ? "
                        "AND audience = 'family'", (home.id, since_ms)) or (0,)
    (n_open,) = c.one("SELECT COUNT(*) FROM alerts WHERE household = ? AND closed_at IS NULL "
                      "AND audience = 'family'", (home.id,)) or (0,)
    # days without a switch-on that the family's own pauses cover: away, not a worry
    paused = {hh.local_day(ms, home.tz)
              for p in hh.pauses(c, home.id)
              for ms in range(max(p.start_ms, since_ms), min(p.end_ms, now_ms), HOUR_MS)}
    (heard,) = c.one("SELECT COUNT(*) FROM devices WHERE household = ? AND last_heard_at IS "
                     "NOT NULL", (home.id,)) or (0,)
    return {"switch_ons": len(ivs), "days": days, "active_days": min(len(per_day), days),
            "paused_days": min(len(paused - set(per_day)), days - min(len(per_day), days)),
            "usual_first": usual, "alerts": n_alerts, "open": n_open, "heard": heard > 0}


def _digest(c: Cursor, home: hh.Household, tl: Timeline, now_ms: int,
            cfg: notify.NotifierSettings) -> int | None:
    due_at = home.digest_due
    if due_at is None:
        return None
    period = int(home.settings.digest_days * DAY_MS)
    if now_ms >= due_at:
        summary = week_summary(c, home, tl, now_ms, days=int(home.settings.digest_days))
        for w in hh.watchers(c, home.id, max_tier=2):
            notify.enqueue(c, now_ms, "digest", home, w, dict(summary))
        while due_at <= now_ms:
            due_at += period
        c.execute("UPDATE households SET digest_due = ? WHERE id = ?", (due_at, home.id))
    return due_at
