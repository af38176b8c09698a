# SPDX-License-Identifier: MIT
"""What the server keeps between evaluations, so that one reads what is new and a bounded window.

    per bulb (bulb_tails)    the timeline's tail: the records of the bulb's last boots (at least
                             TAIL_BOOTS), the receipts of their batches, the bound the boot before
                             them gives the first of them, the bulb's summary (first and last
                             heard, last boot, LTE-M), and which of its batches are folded in
                             (storage numbers them); each visit before the tail is final, one
                             `visits` row, indexed by start
    per household            the learned model (models.HouseholdModel) through its last settled
    (household_models)       day, and what it was learned under (time zone, pauses, bulbs)

    prepare(c, hid, rs, now) the household brought up to date from its new batches: its
                             timeline over a bounded window, its model, the rows to write
    write(c, kept)           those rows, in the evaluation's short write transaction

A bulb's tail is updated from its new batches only. A visit is final once the boot after it is
in the tail and that boot's bounds no longer move (timeline._bound propagates bounds between
neighbouring boots). The model folds each newly settled day; it is learned again from all
visits when what it was learned under changed, or a visit before its last day changed.

Instants and spans are integer ms, as everywhere on the server. The kept rows have a format
(FORMAT, stored in each tail's state; models.VERSION in each model): a tail of another format is
rebuilt from the bulb's records, its visits rows with it, and a model of another version is
learned again, as when the records change under them.

It must never give an answer a rebuild from all records would not: a record of a boot before
the tail, an epoch heard out of order, a first LTE-M record (every receipt anchor changes), or a
first tail boot whose bounds moved rebuilds that bulb's state from its records.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mimamori import models as mdl
from mimamori import rules
from mimamori import settings as bulb_settings
from mimamori import timeline as tl_mod
from mimamori.clock import DAY_MS, to_ms
from mimamori.sql import Cursor, Database, migrate
from mimamori.timeline import DeviceSeen, Interval, StoredRecord, Timeline

TAIL_BOOTS = 8  # boots kept in a bulb's tail after it is cut (it grows to twice this, then cut)
WINDOW_DAYS = 10  # an evaluation reads the visits of this many days (and the tail, the model):
#                  the rules look back late_days (7) and the digest a week; the model the rest
# the format of bulb_tails.state and visits.data: a tail of another format (and its bulb's visits
# rows) is rebuilt from the records (1, no "format" key: float Unix seconds; 2: integer ms)
FORMAT = 2

SCHEMA: list[list[str]] = [
    [
        """CREATE TABLE bulb_tails (
            device TEXT PRIMARY KEY,
            version BIGINT NOT NULL,
            batches BIGINT NOT NULL,
            state TEXT NOT NULL
        )""",
        """CREATE TABLE visits (
            device TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            boot BIGINT NOT NULL,
            start_ms BIGINT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (device, epoch, boot)
        )""",
        "CREATE INDEX visits_start ON visits (device, start_ms)",
        """CREATE TABLE household_models (
            household TEXT PRIMARY KEY,
            version BIGINT NOT NULL,
            learned_under TEXT NOT NULL,
            model TEXT NOT NULL
        )""",
    ],
]


def open_kept(db: Database) -> None:
    migrate(db, "kept", SCHEMA)


# ---------------------------------------------------------------------------------------------
# one bulb


@dataclass
class BulbState:
    """The kept state of one bulb (JSON in bulb_tails.state)."""

    device: str
    batches: int = 0  # its batches folded in (devices.batches counts them)
    first_seen: dict[str, int] = field(default_factory=dict)  # epoch -> first record heard
    lte: bool = False
    first_heard: int | None = None
    last_heard: int | None = None
    last_boot: int | None = None
    cut: list[Any] | None = None  # order key of the first tail boot; visits before it are rows
    ctx: list[Any] | None = None  # [order key, lo] of the boot before the cut (its records kept)
    cut_hi: int | None = None  # the first tail boot's latest offset when the cut was made
    records: list[list[Any]] = field(default_factory=list)  # [epoch, seq, boot, up_ms, kind,
    #                                                          sub, aux, arg, received_at]
    receipts: list[list[Any]] = field(default_factory=list)  # [epoch, boot, req, up_ms,
    #                                                           received_at ms, up_wait_ms, from_seq]
    visits: list[list[Any]] = field(default_factory=list)  # the tail's visits (Interval fields)

    def to_json(self) -> str:
        # the fields as they are (plain values and lists): asdict would deep-copy the tail first
        return json.dumps({"format": FORMAT} | {f: getattr(self, f) for f in _STATE_FIELDS},
                          separators=(",", ":"))

    @staticmethod
    def from_json(s: str) -> BulbState:
        """The state a tail row holds; ValueError when it is of another format (rebuild it)."""
        d = json.loads(s)
        if d.pop("format", 1) != FORMAT:
            raise ValueError(f"bulb tail of another format: this code reads format {FORMAT}")
        return BulbState(**d)

    def seen(self, registered: int | None, settings: bulb_settings.BulbSettings) -> DeviceSeen:
        if self.first_heard is None:
            return DeviceSeen(self.device, registered, None, None, None)
        # the bulb's settings count seconds
        return DeviceSeen(self.device, registered, self.first_heard, self.last_heard,
                          self.last_boot, lte=self.lte,
                          report_gap_ms=to_ms(bulb_settings.lte_report_gap_s(settings))
                          if self.lte else 0,
                          heartbeat_ms=to_ms(bulb_settings.heartbeat_s(settings)))


@dataclass
class BulbUpdate:
    """What an evaluation would write for one bulb."""

    state: BulbState
    version: int | None  # the version it was computed from (None: no row yet)
    rebuilt: bool
    frozen: list[tuple[int, int, Interval]]  # new visits rows: epoch, boot, visit
    changed_from: float  # the earliest start (ms) of a visit that changed (inf: none)


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(BulbState))
_INTERVAL_FIELDS = tuple(f.name for f in dataclasses.fields(Interval))


def _interval(v: Sequence[Any]) -> Interval:
    return Interval(*v)


def _row(iv: Interval) -> list[Any]:
    return [getattr(iv, f) for f in _INTERVAL_FIELDS]  # (its fields are plain values)


def _stored(device: str, r: Sequence[Any]) -> StoredRecord:
    ep, seq, boot, up, kind, sub, aux, arg, rec = r
    return StoredRecord(device, seq, boot, up, kind, sub, aux, arg, rec, epoch=ep)


def _receipt(device: str, b: Sequence[Any], lte: bool) -> StoredRecord:
    ep, boot, _req, up, rec_ms, wait_ms, from_seq = b
    return tl_mod.receipt_anchor(device, ep, boot, up, rec_ms, wait_ms or 0, lte, seq=from_seq)


def _key(st: BulbState, epoch: int, boot: int) -> tuple[float, int, int]:
    return (st.first_seen.get(str(epoch), math.inf), epoch, boot)


def _heard(st: BulbState, at: int, boot: int) -> None:
    st.first_heard = at if st.first_heard is None else min(st.first_heard, at)
    st.last_heard = at if st.last_heard is None else max(st.last_heard, at)
    st.last_boot = boot if st.last_boot is None else max(st.last_boot, boot)


_REC_COLS = "epoch, seq, boot, up_ms, kind, sub, aux, arg, received_at"
_BATCH_COLS = "epoch, boot, req, up_ms, received_at, up_wait_ms, from_seq"


def _rebuild(c: Cursor, device: str, batches: int) -> BulbUpdate:
    """The bulb's state from all its records (the first evaluation, or a late record)."""
    st = BulbState(device, batches)
    recs = [list(r) for r in c.all(
        f"SELECT {_REC_COLS} FROM records WHERE device = ?", (device,))]
    st.lte = tl_mod.uses_lte(_stored(device, r) for r in recs)
    for r in recs:
        st.first_seen[str(r[0])] = min(st.first_seen.get(str(r[0]), math.inf), r[8])
        _heard(st, r[8], r[2])
    st.records = recs
    st.receipts = [list(b) for b in c.all(
        f"SELECT {_BATCH_COLS} FROM batches WHERE device = ? AND up_ms IS NOT NULL AND "
        "up_ms <> 0", (device,))]
    for b in st.receipts:
        _heard(st, b[4], b[1])
    frozen = _settle(st)
    assert frozen is not None  # nothing kept to disagree with
    return BulbUpdate(st, None, True, frozen, -math.inf)


def _advance(st: BulbState, recs: list[list[Any]], receipts: list[list[Any]]
             ) -> list[tuple[int, int, Interval]] | None:
    """Fold new records and receipts into the tail; the visits that became final, or None when
    only a rebuild gives the right answer."""
    have = {(r[0], r[1]) for r in st.records}
    recs = [r for r in recs if (r[0], r[1]) not in have]
    newest = max(st.first_seen.values(), default=-math.inf)
    for r in recs:
        ep = str(r[0])
        if ep in st.first_seen and r[8] < st.first_seen[ep]:
            return None  # an epoch heard earlier than it was: the boots' order may change
        if ep not in st.first_seen and r[8] < newest:
            return None
    if not st.lte and tl_mod.uses_lte(_stored(st.device, r) for r in recs):
        return None  # every receipt anchor of the bulb widens
    for r in recs:
        ep = str(r[0])
        st.first_seen[ep] = min(st.first_seen.get(ep, math.inf), r[8])
    got = {(b[0], b[1], b[2]) for b in st.receipts}
    receipts = [b for b in receipts if (b[0], b[1], b[2]) not in got]
    if st.ctx is not None:
        ctx = tuple(st.ctx[0])
        if any(_key(st, r[0], r[2]) <= ctx for r in recs):
            return None  # a late record of a final visit (or of the boot bounding the tail)
        if any(_key(st, b[0], b[1]) <= ctx for b in receipts):
            return None
    st.records += recs
    st.receipts += receipts
    for r in recs:
        _heard(st, r[8], r[2])
    for b in receipts:
        _heard(st, b[4], b[1])
    return _settle(st)


def _settle(st: BulbState) -> list[tuple[int, int, Interval]] | None:
    """Compute the tail's visits; cut the tail when it has grown. The visits that became
    final, or None when the first tail boot's bounds moved (the final visits would change)."""
    dev = st.device
    recs = [_stored(dev, r) for r in st.records]
    recs += [_receipt(dev, b, st.lte) for b in st.receipts]
    seen = {int(k): v for k, v in st.first_seen.items()}
    boots = tl_mod._boots_of(recs, first_seen=seen)
    keys = [_key(st, b.records[0].epoch, b.boot) for b in boots]
    start = 0
    if st.ctx is not None:
        if len(boots) < 2 or keys[0] != tuple(st.ctx[0]) or keys[1] != tuple(st.cut or ()):
            return None
        boots[0].lo = st.ctx[1]
        start = 1
    tl_mod._bound(boots)
    if st.ctx is not None and (boots[1].hi != st.cut_hi or boots[1].continues):
        return None
    firsts = [i for i in range(len(boots)) if i == 0 or not boots[i].continues]
    visits = tl_mod._visits(boots)
    mine = [(i, v) for i, v in zip(firsts, visits) if i >= start]
    frozen: list[tuple[int, int, Interval]] = []
    if len(boots) - start > 2 * TAIL_BOOTS:
        k = len(boots) - TAIL_BOOTS
        while k > start + 1 and boots[k].continues:
            k -= 1
        if not boots[k].continues and k > start:
            frozen = [(boots[i].records[0].epoch, boots[i].boot, v) for i, v in mine if i < k]
            mine = [(i, v) for i, v in mine if i >= k]
            st.ctx = [list(keys[k - 1]), boots[k - 1].lo]
            st.cut = list(keys[k])
            st.cut_hi = boots[k].hi
            keep = keys[k - 1]
            st.records = [r for r in st.records if _key(st, r[0], r[2]) >= keep]
            st.receipts = [b for b in st.receipts if _key(st, b[0], b[1]) >= keep]
    st.visits = [_row(v) for _, v in mine]
    return frozen


def bulb(c: Cursor, device: str) -> BulbUpdate:
    """The bulb's kept state brought up to date with its batches not folded in yet."""
    (batches,) = c.one("SELECT batches FROM devices WHERE id = ?", (device,)) or (0,)
    row = c.one("SELECT version, batches, state FROM bulb_tails WHERE device = ?", (device,))
    if row is None:
        up = _rebuild(c, device, batches)
        return up
    version, done, raw = row
    try:
        st = BulbState.from_json(raw)
    except ValueError:  # kept by another format: rebuilt (its visits rows too, at write)
        up = _rebuild(c, device, batches)
        up.version = version
        return up
    if batches <= done:
        return BulbUpdate(st, version, False, [], math.inf)
    new = c.all(f"SELECT {_BATCH_COLS}, stored FROM batches WHERE device = ? AND n > ? "
                "ORDER BY n", (device, done))
    if len(new) != batches - done:  # batches from before they were numbered
        up = _rebuild(c, device, batches)
        up.version = version
        return up
    recs: list[list[Any]] = []
    for b in new:
        if b[7]:
            recs += [list(r) for r in c.all(
                f"SELECT {_REC_COLS} FROM records WHERE device = ? AND epoch = ? AND "
                "received_at = ? AND seq >= ?", (device, b[0], b[4], b[6]))]
    old = list(st.visits)
    st.batches = batches
    frozen = _advance(st, recs, [list(b[:7]) for b in new if b[3]])
    if frozen is None:
        up = _rebuild(c, device, batches)
        up.version = version
        return up
    before = {tuple(v) for v in old}  # (a visit's fields are plain values)
    after = {tuple(_row(v)) for _, _, v in frozen} | {tuple(v) for v in st.visits}
    changed = [v[3] for v in before ^ after]
    return BulbUpdate(st, version, False, frozen, min(changed, default=math.inf))


# ---------------------------------------------------------------------------------------------
# one household


@dataclass
class Kept:
    """A household brought up to date: its timeline over a window, its model, what to write."""

    hid: str
    timeline: Timeline
    model: mdl.HouseholdModel
    bulbs: list[BulbUpdate]
    model_row: tuple[int | None, str, str] | None  # (version read, learned_under, model JSON)
    full: bool  # the timeline holds every visit (not a window)
    memo: rules.Memo  # what the rules derived from this model in earlier evaluations


def _day_end(day: int, tz: str) -> int:
    return mdl.day_start(day + 1, tz)


def _visit_rows(c: Cursor, devices: list[str], since_ms: int | None) -> list[Interval]:
    out: list[Interval] = []
    for d in devices:
        if since_ms is None:
            rows = c.all("SELECT data FROM visits WHERE device = ?", (d,))
        else:
            rows = c.all("SELECT data FROM visits WHERE device = ? AND start_ms >= ?",
                         (d, since_ms))
            rows += c.all("SELECT data FROM visits WHERE device = ? AND start_ms < ? "
                          "ORDER BY start_ms DESC LIMIT 1", (d, since_ms))
        out += [_visit(r[0]) for r in rows]
    return out


_VISITS: dict[str, Interval] = {}
VISITS_KEPT = 32_768  # visits rows kept parsed, by their text (a row's visit is final; about
#                       0.4 kB each: the windows of a few hundred households)


def _visit(text: str) -> Interval:
    """The visit of a visits row's data (parsed once while kept: evaluations of a household
    read the same window again and again; an Interval is immutable)."""
    iv = _VISITS.get(text)
    if iv is None:
        while len(_VISITS) >= VISITS_KEPT:
            del _VISITS[next(iter(_VISITS))]  # the oldest first
        iv = _VISITS[text] = _interval(json.loads(text))
    return iv


def _timeline(c: Cursor, ups: list[BulbUpdate], devs: list[tuple], since_ms: int | None
              ) -> Timeline:
    ivs: list[Interval] = []
    seen: dict[str, DeviceSeen] = {}
    for up, (dev, created, settings) in zip(ups, devs):
        st = up.state
        ivs += [_interval(v) for v in st.visits] + [v for _, _, v in up.frozen]
        seen[dev] = st.seen(created, json.loads(settings))
    # the rows already written (a rebuilt bulb's are all in up.frozen)
    ivs += [v for v in _visit_rows(c, [d[0] for d in devs if not _rebuilt(ups, d[0])],
                                   since_ms)]
    ivs.sort(key=lambda iv: (iv.start_latest, iv.device, iv.boot))
    return Timeline(tuple(ivs), seen)


def _rebuilt(ups: list[BulbUpdate], device: str) -> bool:
    return any(u.rebuilt and u.state.device == device for u in ups)


def _learned_under(rs: rules.RuleSettings, tl: Timeline) -> str:
    return json.dumps([rs.tz, [[p.start, p.end, p.until_on] for p in rs.pauses],
                       [repr(a) for a in rs.absences],
                       sorted([d, s.registered_at, s.report_gap_ms]
                              for d, s in tl.devices.items())])


def _spans(rs: rules.RuleSettings, tl: Timeline, now: int) -> list[tuple[float, float]]:
    ivs = rules._visible(tl, now)
    return [(p.start, p.end) for p in rules.expand(rs, ivs, now).pauses]


_MODELS: OrderedDict[tuple[str, str], tuple[mdl.HouseholdModel, rules.Memo]] = OrderedDict()
MODELS_KEPT = 128  # parsed models kept in memory (about 250 kB each; one changes once a day)


def _model(hid: str, text: str) -> tuple[mdl.HouseholdModel, rules.Memo] | None:
    """The stored model, parsed once per process while it is unchanged: the same object each
    time, with the memo of what the rules derived from it (rules.Memo; models.spell_masses),
    so that is derived once too. Never changed in place (models.learn folds into a copy)."""
    hit = _MODELS.get((hid, text))
    if hit is None:
        try:
            hit = mdl.HouseholdModel.from_json(json.loads(text)), rules.Memo()
        except ValueError:  # learned by another version of the models: learn it again
            return None
    _keep(hid, text, *hit)
    return hit


def _keep(hid: str, text: str, m: mdl.HouseholdModel, memo: rules.Memo) -> None:
    """Keep m as the parsed value of the model `text` of household hid (it equals it: a model
    is a JSON value), with its memo. Keyed by the text itself: a dict compares it only on a
    hash match."""
    k = (hid, text)
    _MODELS[k] = m, memo
    _MODELS.move_to_end(k)
    while len(_MODELS) > MODELS_KEPT:
        _MODELS.popitem(last=False)


def prepare(c: Cursor, hid: str, rs: rules.RuleSettings, now_ms: int) -> Kept:
    """The household brought up to date at now_ms (rs: its rule settings, not expanded)."""
    now = now_ms
    devs = c.all("SELECT id, created_at, settings FROM devices WHERE household = ? ORDER BY id",
                 (hid,))
    ups = [bulb(c, d[0]) for d in devs]
    row = c.one("SELECT version, learned_under, model FROM household_models WHERE household = ?",
                (hid,))
    changed = min((u.changed_from for u in ups), default=math.inf)
    hit = None if row is None else _model(hid, row[2])
    model, memo = hit if hit is not None else (None, rules.Memo())
    learning = (model is None or model.day is None or model.n_days < rs.learn_min_days
                or model.n_spells < 20)
    since_ms = None
    if not learning:
        assert model is not None and model.day is not None
        end = _day_end(model.day, rs.tz)
        since_ms = min(now_ms - int(max(WINDOW_DAYS, rs.late_days + 2) * DAY_MS),
                       end - DAY_MS)
    tl = _timeline(c, ups, devs, since_ms)
    under = _learned_under(rs, tl)
    valid = (model is not None and row is not None and row[1] == under and model.day is not None
             and changed >= _day_end(model.day, rs.tz))
    if not valid and since_ms is not None:
        tl = _timeline(c, ups, devs, None)
        since_ms = None
    if valid and model is not None and model.day == mdl.settled_through(rs.tz, now):
        m = model  # no new day has settled: nothing to fold
        model_row = None if row is None or row[1] == under else (row[0], under, row[2])
    else:
        # models.learn folds into a copy: the kept model stays as the rules read it
        m = mdl.learn(tl, rs.tz, _spans(rs, tl, now), now, model if valid else None,
                      deaf=rs.deaf)
        text = json.dumps(m.to_json(), separators=(",", ":"))
        model_row = (None if row is None else row[0], under, text)
        # the next evaluation reads this text: no parse, and what it derives is kept
        memo = rules.Memo()
        _keep(hid, text, m, memo)
    return Kept(hid, tl, m, ups, model_row, since_ms is None, memo)


def window(c: Cursor, hid: str, since_ms: int) -> Timeline:
    """The household's visits from since_ms on (and each bulb's one before), its bulbs' new
    batches folded in memory (a page reads; nothing is written)."""
    devs = c.all("SELECT id, created_at, settings FROM devices WHERE household = ? ORDER BY id",
                 (hid,))
    return _timeline(c, [bulb(c, d[0]) for d in devs], devs, since_ms)


def write(c: Cursor, k: Kept) -> None:
    """Write what prepare computed; a bulb or model another evaluation has written since is
    left as that one wrote it (it folded in at least as much)."""
    for up in k.bulbs:
        row = c.one("SELECT version, batches FROM bulb_tails WHERE device = ?",
                    (up.state.device,))
        if row is not None and (row[0] != up.version or row[1] > up.state.batches):
            continue
        if row is None and up.version is not None:
            continue
        if not up.frozen and not up.rebuilt and row is not None and row[1] == up.state.batches:
            continue  # nothing new
        if up.rebuilt:
            c.execute("DELETE FROM visits WHERE device = ?", (up.state.device,))
        c.executemany(
            "INSERT INTO visits (device, epoch, boot, start_ms, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (device, epoch, boot) DO UPDATE SET start_ms = excluded.start_ms, "
            "data = excluded.data",
            [(up.state.device, ep, boot, v.start_latest,
              json.dumps(_row(v))) for ep, boot, v in up.frozen])
        c.execute(
            "INSERT INTO bulb_tails (device, version, batches, state) VALUES (?, 1, ?, ?) "
            "ON CONFLICT (device) DO UPDATE SET version = bulb_tails.version + 1, "
            "batches = excluded.batches, state = excluded.state",
            (up.state.device, up.state.batches, up.state.to_json()))
    if k.model_row is not None:
        version, under, text = k.model_row
        row = c.one("SELECT version FROM household_models WHERE household = ?", (k.hid,))
        if (row[0] if row else None) == version:
            c.execute(
                "INSERT INTO household_models (household, version, learned_under, model) "
                "VALUES (?, 1, ?, ?) ON CONFLICT (household) DO UPDATE SET "
                "version = household_models.version + 1, learned_under = excluded.learned_under,"
                " model = excluded.model", (k.hid, under, text))


def forget(c: Cursor, device: str) -> None:
    """Drop a bulb's kept state (it is rebuilt from its records at the next evaluation)."""
    c.execute("DELETE FROM bulb_tails WHERE device = ?", (device,))
    c.execute("DELETE FROM visits WHERE device = ?", (device,))
