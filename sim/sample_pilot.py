# SPDX-License-Identifier: MIT
"""A small pilot in a database: four households, their watchers and two weeks of bulb records.

For the dashboard's tests, its screenshots and anyone who wants to look at the pages:

    .venv/bin/python -m sim.sample_pilot var/sample.db   # prints how to serve it

Everything goes through the real code: households, watchers, pauses, claims and resolutions
through households.py and alerts.py, records through Store.ingest as signed batches from a
BatchSender, alerts through sweeper.evaluate_household at the instants they would have been
raised. Visits come from the household simulator (sim/household.py).

    sato     a fall yesterday morning: an open "no switch-on" alert (fixed 24 h rule)
    suzuki   a weak radio: some visits reach the server late (drawn as ranges); a past alert
             resolved as a false alarm and one that cleared by itself; poor delivery
    tanaka   in hospital: paused from three days ago until four days ahead
    yamada   a bulb installed two days ago and never heard (bulb silent)

Aiko watches sato and suzuki with one e-mail address. It must never read the clock: `now` is
the caller's.
"""

from __future__ import annotations

import io
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mimamori import alerts, notify, sweeper
from mimamori import households as hh
from mimamori.ingest import parse_batch
from mimamori.storage import Store
from mimamori.web import auth
from mimamori_firmware import record
from sim.batch_client import BatchSender
from sim.household import Fall, HospitalStay, Household, Visit, unix

TZ = "Asia/Tokyo"
JST = ZoneInfo(TZ)
NOW = datetime(2026, 3, 16, 10, 30, tzinfo=JST)  # a Monday morning
DAYS = 15


@dataclass
class Sample:
    db_path: str
    now: float  # Unix s: serve with --clock fixed:<now>
    watchers: dict[str, str] = field(default_factory=dict)  # name -> watcher id (sato's Aiko)
    households: list[str] = field(default_factory=list)
    alert: str = ""  # sato's open alert


class _Bulb:
    """A BatchSender that turns visits into journal records and ingests them as the server
    would have received them (late when the bulb could not connect)."""

    def __init__(self, store: Store, dev_id: str, dbm: int, connect_p: float, seed: int):
        d = store.device(dev_id)
        assert d is not None
        self.store, self.dbm, self.connect_p = store, dbm, connect_p
        self.s = BatchSender(dev_id, d.key_bytes)
        self.rng = random.Random(seed)
        self.held: list[bytearray] = []

    def visit(self, v: Visit) -> None:
        on, off = unix(v.on), unix(v.off)
        length = max(5.0, off - on)
        s = self.s
        recs = [s.new_boot()]
        ok = self.rng.random() < self.connect_p
        recs.append(s.record(record.K_LINK, record.T_WIFI, self.dbm + self.rng.randint(-3, 3),
                             900 if ok else 0, up_ms=1500))
        if ok:
            recs.append(s.record(record.K_ANCHOR, record.A_SERVER, 0, int(on) + 2, up_ms=2000))
        recs.append(s.record(record.K_OFF, up_ms=int(length * 1000)))
        if not ok:
            self.held += recs
            return
        batch = self.held + recs
        self.held = []
        req = s.request(batch)
        self.store.ingest(parse_batch(s.device, req.body), int((on + length + 1) * 1000))

    def flush(self, at_s: float) -> None:
        """The held records finally get through (a later visit with signal)."""
        if self.held:
            req = self.s.request(self.held)
            self.held = []
            self.store.ingest(parse_batch(self.s.device, req.body), int(at_s * 1000))


def build(db_path: str | Path, now: datetime = NOW) -> Sample:
    store = Store.open(db_path)
    auth.open_web(store.db)
    cfg = notify.NotifierSettings(console=io.StringIO())  # nothing is delivered here: the outbox keeps it
    now_s = now.timestamp()
    start = (now - timedelta(days=DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    created = int(unix(start) * 1000)
    out = Sample(str(db_path), now_s)

    def tx(fn):  # type: ignore[no-untyped-def]
        with store.db.tx() as c:
            return fn(c)

    homes: list[tuple[str, str, dict[str, Any]]] = [("sato", "佐藤 ハナさん宅", {"activity_rule": "fixed"}),
             ("suzuki", "鈴木 タロウさん宅", {"activity_rule": "fixed", "no_activity_h": 12}),
             ("tanaka", "田中 ヨシさん宅", {"activity_rule": "fixed"}),
             ("yamada", "山田 キクさん宅", {"activity_rule": "fixed"})]
    with store.db.tx() as c:
        for hid, name, st in homes:
            hh.add_household(c, created, hid, name, TZ, st)
            out.households.append(hid)
    people = [("sato", "Aiko", "family", "en", "aiko@example.org"),
              ("sato", "Ken", "family", "ja", "ken@example.org"),
              ("sato", "Nao", "neighbour", "ja", "nao@example.org"),
              ("suzuki", "Aiko", "family", "en", "aiko@example.org"),
              ("suzuki", "Mika", "family", "ja", "mika@example.org"),
              ("tanaka", "Jiro", "family", "ja", "jiro@example.org"),
              ("yamada", "Emi", "family", "ja", "emi@example.org"),
              ("yamada", "Welfare office", "commissioner", "ja", "office@example.org")]
    ids: dict[tuple[str, str], str] = {}
    with store.db.tx() as c:
        for hid, name, role, lang, email in people:
            ids[(hid, name)] = hh.add_watcher(c, created, hid, name, role, lang, email).id
    out.watchers = {n: i for (h, n), i in ids.items() if h == "sato"}
    out.watchers["Mika"] = ids[("suzuki", "Mika")]
    out.watchers["Jiro"] = ids[("tanaka", "Jiro")]
    for hid in ("sato", "suzuki", "tanaka"):
        store.register_device(created, f"{hid}-toilet", hid)
    store.register_device(int((now_s - 2 * 86400) * 1000), "yamada-toilet", "yamada")

    # tanaka: in hospital from three days ago, paused until four days ahead
    pause_from = (now - timedelta(days=3)).replace(hour=0, minute=0)
    pause_to = now + timedelta(days=4)
    tx(lambda c: hh.add_pause(c, created, "tanaka", pause_from.date(), pause_to.date(),
                              "入院"))
    # suzuki's two quiet spells: one unannounced visit to the daughter (a false alarm), one
    # long lie-in that ended by itself
    away = now - timedelta(days=5)
    away_s = away.replace(hour=6, minute=0)
    away_e = away.replace(hour=23, minute=30)
    lie = now - timedelta(days=9)
    lie_s, lie_e = (lie - timedelta(days=1)).replace(hour=23), lie.replace(hour=13, minute=10)
    plans = {
        "sato": (Household(11, incidents=(Fall(now - timedelta(hours=26)),)), -67, 0.97),
        "suzuki": (Household(12, incidents=(HospitalStay(away_s, away_e, paused=False),
                                            HospitalStay(lie_s, lie_e, paused=False))),
                   -103, 0.65),
        "tanaka": (Household(13, incidents=(HospitalStay(pause_from, pause_to),)), -80, 0.95),
    }
    for i, (hid, (sim, dbm, p)) in enumerate(plans.items()):
        b = _Bulb(store, f"{hid}-toilet", dbm, p, seed=i)
        for v in sim.events(start, DAYS + 1):
            if unix(v.off) < now_s - 60:
                b.visit(v)
        b.flush(now_s - 600)

    def at(t: datetime) -> None:
        for hid in out.households:
            sweeper.evaluate_household(store.db, hid, int(t.timestamp() * 1000), cfg, store)

    # suzuki's history: raised during the spells; one resolved, one cleared by the light
    at(lie_s + timedelta(hours=12, minutes=10))
    at(lie_e + timedelta(hours=3))
    at(away_s + timedelta(hours=14))
    mika = ids[("suzuki", "Mika")]
    a = next(x for x in tx(lambda c: alerts.list_alerts(c, "suzuki", active_only=True))
             if x.audience == "family")
    t1 = int((away_s + timedelta(hours=14, minutes=20)).timestamp() * 1000)
    tx(lambda c: alerts.claim(c, a.id, mika, t1, cfg))
    t2 = int((away_s + timedelta(hours=15, minutes=5)).timestamp() * 1000)
    tx(lambda c: alerts.resolve(c, a.id, mika, "false_alarm",
                                "娘の家に泊まっていました（連絡忘れ）", t2, cfg))
    # after the false alarm the family gave the quiet spells more room
    tx(lambda c: hh.update_settings(c, "suzuki", {"no_activity_h": 24}, t2))
    at(now - timedelta(hours=2))
    at(now)
    sato = [x for x in tx(lambda c: alerts.list_alerts(c, "sato", active_only=True))
            if x.audience == "family"]
    out.alert = sato[0].id if sato else ""
    store.close()
    return out


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "var/sample.db"
    if Path(path).exists():
        print(f"{path} exists: remove it or name another file", file=sys.stderr)
        return 2
    s = build(path)
    print(f"sample pilot in {path}; serve it with:\n  .venv/bin/python -m mimamori --db {path} "
          f"--clock fixed:{s.now:.0f}\nthen sign in with the link of\n  .venv/bin/mimamori --db {path} "
          f"--clock fixed:{s.now:.0f} coordinator link")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
