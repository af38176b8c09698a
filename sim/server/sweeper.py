"""The sweeper: evaluates the households that are due, found through the index on next_check.

    sweep(db, now_ms, cfg)            one pass (tests call it at chosen instants)
    evaluate_household(db, hid, ...)  one household now (ingest calls it after a batch commits)
    run(app) / the server lifespan    every MIMAMORI_SWEEP_S real seconds, with the app's clock

One evaluation is one transaction: the records become a timeline, the rules decide, the alert
lifecycle applies the decisions and writes its notifications to the outbox, reminders,
escalations and the weekly digest that are due are written too, and the household's next_check
becomes the earliest of all their deadlines. A household whose nothing can change without new
records has next_check NULL and is only woken by ingest.

It must never scan every household: `due()` reads the index range next_check <= now only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sim.server import alerts, models, notify, rules
from sim.server import households as hh
from sim.server import settings as bulb_settings
from sim.server.storage import Cursor, Database, Store
from sim.server.timeline import (
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


def sweep(db: Database, now_ms: int, cfg: notify.Config, limit: int = 1000,
          full_scan: bool = False, chunk: int = 50) -> SweepResult:
    """Evaluate every due household (at most `limit` per call; the next call takes the rest),
    `chunk` households per transaction."""
    store = Store(db)
    with db.tx() as c:
        ids = (due_by_full_scan if full_scan else due)(c, now_ms, limit)
    out = SweepResult()
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        try:  # one commit (one fsync) for a chunk of households
            with db.tx():
                for hid in part:
                    evaluate_household(db, hid, now_ms, cfg, store)
            out.evaluated += part
            continue
        except Exception:  # noqa: BLE001, S110 - redo them one by one to find the broken one
            pass
        for hid in part:
            try:
                evaluate_household(db, hid, now_ms, cfg, store)
                out.evaluated.append(hid)
            except Exception as e:  # noqa: BLE001 - one bad household must not stop the others
                out.failed[hid] = f"{type(e).__name__}: {e}"
                with db.tx() as c:  # look again in an hour rather than in a hot loop
                    c.execute("UPDATE households SET next_check = ? WHERE id = ?",
                              (now_ms + hh.HOUR_MS, hid))
    return out

def device_records(store: Store, device_id: str) -> list[StoredRecord]:
    """What the timeline knows of one bulb: its stored records, then one receipt anchor per
    batch whose header carried the bulb's uptime (timeline.receipt_anchor). Every reader of a
    timeline goes through here (timeline_of), so they all place visits alike."""
    recs = [StoredRecord(r.device, r.seq, r.boot, r.up_ms, r.kind, r.sub, r.aux, r.arg,
                         r.received_at / 1000, epoch=r.epoch)
            for r in store.records_for_device(device_id)]
    lte = uses_lte(recs)
    recs += [receipt_anchor(b.device, b.epoch, b.boot, b.up_ms, b.received_at / 1000,
                            (b.up_wait_ms or 0) / 1000, lte, seq=b.from_seq)
             for b in store.deliveries(device_id) if b.up_ms]
    return recs


def timeline_of(store: Store, hid: str) -> Timeline:
    devs = store.devices(hid)
    recs: list[StoredRecord] = []
    for d in devs:
        recs += device_records(store, d.id)
    return build_timeline(recs, registered={d.id: d.created_at / 1000 for d in devs},
                          report_gaps={d.id: bulb_settings.lte_report_gap_s(d.settings)
                                       for d in devs},
                          heartbeats={d.id: bulb_settings.heartbeat_s(d.settings) for d in devs})


def rule_settings(c: Cursor, home: hh.Household) -> rules.Settings:
    return home.settings.rules(home.tz, tuple(p.rule() for p in hh.pauses(c, home.id)))


def evaluate_household(db: Database, hid: str, now_ms: int, cfg: notify.Config,
                       store: Store | None = None) -> list[rules.Decision]:
    store = store or Store(db)
    with db.tx() as c:
        home = hh.household(c, hid)
        tl = timeline_of(store, hid)
        hh.end_pauses_at_switch_on(c, hid, home.tz, [iv.start_latest for iv in tl.intervals
                                                     if iv.start_latest <= now_ms / 1000])
        decisions = rules.evaluate(tl, rule_settings(c, home), now_ms / 1000, key=hid)
        deadlines = [alerts.apply(c, home, decisions, now_ms, cfg),
                     alerts.tick(c, home, now_ms, cfg)]
        r = rules.due_at(decisions)
        deadlines.append(None if r is None else int(r * 1000))
        deadlines.append(_digest(c, home, tl, now_ms, cfg))
        nxt = min((t for t in deadlines if t is not None), default=None)
        if nxt is not None:
            nxt = max(nxt, now_ms + 1000)
        c.execute("UPDATE households SET next_check = ?, evaluated_at = ? WHERE id = ?",
                  (nxt, now_ms, hid))
    return decisions


def placement_of(store: Store, c: Cursor, home: hh.Household,
                 now_ms: int) -> dict[str, models.Placement]:
    """The placement check of each bulb of the household now (the dashboard, API and CLI)."""
    tl = timeline_of(store, home.id)
    st = rules.expand(rule_settings(c, home), list(tl.intervals), now_ms / 1000)
    m = rules.learn_model(tl, st, now_ms / 1000, home.id)
    ivs = [iv for iv in tl.intervals if iv.start_latest <= now_ms / 1000]
    return rules.placements(ivs, tl, m, now_ms / 1000)


def on_ingest(store: Store, device_id: str, now_ms: int, cfg: notify.Config) -> None:
    """After a batch is committed: re-evaluate the bulb's household (late records slot in, a
    switch-on clears an alert at once)."""
    dev = store.device(device_id)
    if dev is None or not dev.household:
        return
    with store.db.tx() as c:
        if c.one("SELECT 1 FROM households WHERE id = ?", (dev.household,)) is None:
            return
    evaluate_household(store.db, dev.household, now_ms, cfg, store)


# ---------------------------------------------------------------------------------------------
# the weekly "all is well" digest


def week_summary(c: Cursor, home: hh.Household, tl: Timeline, now_ms: int,
                 days: int = 7) -> dict[str, object]:
    t0 = now_ms / 1000 - days * 86400
    ivs = tl.starts_between(t0, now_ms / 1000)
    per_day: dict[str, list[float]] = {}
    for iv in ivs:
        per_day.setdefault(hh.local_day(iv.start_latest * 1000, home.tz), []).append(
            iv.start_latest)
    firsts = sorted(hh.local_hhmm(min(v) * 1000, home.tz) for v in per_day.values())
    usual = firsts[len(firsts) // 2] if firsts else None
    (n_alerts,) = c.one("SELECT COUNT(*) FROM alerts WHERE household = ? AND opened_at >= ? "
                        "AND audience = 'family'", (home.id, int(t0 * 1000))) or (0,)
    (n_open,) = c.one("SELECT COUNT(*) FROM alerts WHERE household = ? AND closed_at IS NULL "
                      "AND audience = 'family'", (home.id,)) or (0,)
    return {"switch_ons": len(ivs), "days": days, "active_days": min(len(per_day), days),
            "usual_first": usual, "alerts": n_alerts, "open": n_open}


def _digest(c: Cursor, home: hh.Household, tl: Timeline, now_ms: int,
            cfg: notify.Config) -> int | None:
    due_at = home.digest_due
    if due_at is None:
        return None
    period = int(home.settings.digest_days * hh.DAY_MS)
    if now_ms >= due_at:
        summary = week_summary(c, home, tl, now_ms, days=int(home.settings.digest_days))
        for w in hh.watchers(c, home.id, max_tier=2):
            notify.enqueue(c, now_ms, "digest", home, w, dict(summary))
        while due_at <= now_ms:
            due_at += period
        c.execute("UPDATE households SET digest_due = ? WHERE id = ?", (due_at, home.id))
    return due_at


def households_due(db: Database, now_ms: int) -> Iterable[str]:
    with db.tx() as c:
        return due(c, now_ms, 1_000_000)
