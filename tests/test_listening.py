# SPDX-License-Identifier: MIT
"""The server's own outage is not her silence, nor the bulbs' radio (listening.py).

A server down for 30 h: at its restart, the family of every household whose last switch-on it
heard was a day old would be alerted, and every bulb's held reports would blame its radio. The
running server marks that it listens; a gap between marks is a deaf span, which the rules read.
Checked at chosen instants on a household of the population (its bulb's radio as
sim/population.py models it), through the sweeper on a real store, and through the real
server process stopped and started again.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bench import figures_outage as fo
from bench import figures_population as fp
from mimamori import alerts, cli, listening, models, rules, sweeper
from mimamori.clock import HOUR_MS, MINUTE_MS, to_s
from sim import population as pop
from sim.server_process import ServerProcess
from tests.alerts_rig import visit
from tests.test_sweeper import CFG, MS, T0, H, next_checks, world


def test_a_gap_between_marks_is_recorded_once_as_a_deaf_span(db_url):
    db, _, _ = world(db_url)
    t = int(T0 * MS)
    assert listening.mark(db, t) is None  # the first mark ever: nothing to compare with
    assert listening.mark(db, t + MINUTE_MS) is None
    span = (t + MINUTE_MS, t + 3 * HOUR_MS)
    assert listening.mark(db, t + 3 * HOUR_MS) == span
    assert listening.mark(db, t + 3 * HOUR_MS) is None  # a second instance, the same round
    assert listening.mark(db, t + 2 * HOUR_MS) is None  # a clock stepped back...
    assert listening.mark(db, t + 3 * HOUR_MS + 5 * MINUTE_MS) is None  # ...moves no mark back
    assert listening.mark(db, t + 4 * HOUR_MS, after_ms=HOUR_MS) is None  # within the limit
    with db.read() as c:
        assert listening.spans(c) == (span,)


def _outage_household(kind: str = "toilet", delivery: str = "good_wifi", seed: int = 0):
    h = pop.household(kind, delivery, seed)
    span = fo.outage(h)
    return replace(h, server_down=(span,)), span


@pytest.mark.parametrize("rule", ["fixed", "learned"])
def test_at_the_restart_her_silence_counts_from_the_outage_end(rule):
    h, (s, e) = _outage_household()
    w = pop.World(h)
    unaware = replace(fp._settings(h), activity_rule=rule)
    aware = replace(unaware, deaf=((s, e),))
    name = "no_activity" if rule == "fixed" else "unusual_quiet"
    now = e + MINUTE_MS
    tl = w.timeline(now)
    last = max(iv.start_latest for iv in tl.intervals)
    assert (now - last) / HOUR_MS > 24  # as the server saw it: no switch-on for over a day
    (d,) = rules.evaluate_rule(tl, unaware, now, name)
    assert d.state == rules.OPEN  # the server before: the family alerted about its own outage
    (d,) = rules.evaluate_rule(tl, aware, now, name)
    assert d.state == rules.CLEAR, d.evidence
    assert d.detail["unreported_until"] == e
    assert "the server was not listening" in d.evidence
    if rule == "fixed":  # 24 h of her silence the server could have heard
        assert d.next_check == e + 24 * HOUR_MS
        (d,) = rules.evaluate_rule(tl, aware, e + 24 * HOUR_MS, name)
        assert d.state == rules.OPEN  # no switch-on a day after the restart: she is alerted on
        assert "the server was not listening from" in d.evidence


def test_reports_the_outage_held_are_not_the_bulbs_radio():
    h, (s, e) = _outage_household()
    w = pop.World(h)
    unaware = fp._settings(h)
    aware = replace(unaware, deaf=((s, e),))
    now = e + 2 * 24 * HOUR_MS
    tl = w.timeline(now)
    held = [iv for iv in tl.intervals if iv.reported_at - iv.start_mid > HOUR_MS
            and s - HOUR_MS <= iv.start_latest <= e + 12 * HOUR_MS]
    assert len(held) >= 3 and all(models.held_by_server(((s, e),), iv) for iv in held)
    for st, blamed in ((unaware, True), (aware, False)):
        models.clear_cache()
        got = {d.rule: d for d in rules.evaluate(tl, st, now, only=("poor_delivery",
                                                                     "placement"))}
        assert (got["poor_delivery"].state == rules.OPEN) is blamed, got["poor_delivery"]
        assert (got["placement"].detail["held_h"] >= models.RADIO_NOTE_H) is blamed
        assert ("may be the radio" in got["placement"].evidence) is blamed


@pytest.mark.parametrize("deaf", [True, False])
def test_through_the_sweeper_the_outage_alerts_no_family(db_url, deaf):
    db, store, (b,) = world(db_url)
    visit(store, b, T0)  # her last switch-on the server heard
    t = int(T0 * MS)
    if deaf:
        listening.mark(db, t + HOUR_MS)  # the server listens an hour later, then stops
    listening.mark(db, t + 30 * HOUR_MS)  # and starts again 29 h later
    sweeper.sweep(db, t + 30 * HOUR_MS, CFG)
    with db.read() as c:
        active = alerts.list_alerts(c, active_only=True)
    if not deaf:  # no earlier mark: the server cannot tell, and alerts as it always did
        assert [a.rule for a in active] == ["no_activity"]
        return
    assert active == []
    assert next_checks(db) == {"h0": t + 54 * HOUR_MS}
    # her switch-on during the outage comes in with her next visit: the spell still counts
    # from the outage's end (nothing says she was up after it)
    visit(store, b, T0 + 10 * H, received_s=T0 + 31 * H)
    sweeper.on_ingest(store, b.device, t + 31 * HOUR_MS, CFG)
    assert next_checks(db) == {"h0": t + 54 * HOUR_MS}
    sweeper.sweep(db, t + 54 * HOUR_MS + MINUTE_MS, CFG)
    with db.read() as c:
        (a,) = alerts.list_alerts(c, active_only=True)
    assert a.rule == "no_activity" and "the server was not listening from" in a.evidence


def test_the_real_server_stopped_for_a_day_records_it_and_alerts_no_one(tmp_path):
    path = tmp_path / "s.db"
    db, store, (b,) = world(str(path))
    visit(store, b, T0)
    env = {"MIMAMORI_SWEEP_S": "0.1"}

    def run_until(now_s: float, done) -> None:
        with ServerProcess(path, clock=f"fixed:{now_s}", env=env):
            end = time.monotonic() + 30
            while not done():
                assert time.monotonic() < end, "the server never swept"
                time.sleep(0.1)

    def marked(at_s: float):
        def done() -> bool:
            with db.read() as c:
                row = c.one("SELECT at_ms FROM listening WHERE id = 1")
            return row is not None and row[0] == int(at_s * MS)
        return done

    run_until(T0 + 1 * H, marked(T0 + 1 * H))
    run_until(T0 + 30 * H, lambda: next_checks(db)["h0"] == int((T0 + 54 * H) * MS))
    with db.read() as c:
        assert listening.spans(c) == ((int((T0 + H) * MS), int((T0 + 30 * H) * MS)),)
        assert alerts.list_alerts(c, active_only=True) == []


def test_the_learned_rule_counts_only_the_hours_the_server_listened():
    """models.Listened: no switch-on is expected in an outage, and limits count listened hours."""
    base = models.Mass([1.0] * 24, 0)  # one switch-on an hour, every hour
    t0, s, e = 0, 5 * HOUR_MS, 35 * HOUR_MS
    lm = models.Listened(base, [(s, e)])
    assert lm.at(e) - lm.at(t0) == pytest.approx(5.0)  # the 30 h outage adds nothing
    assert lm.at(e + 3 * HOUR_MS) - lm.at(t0) == pytest.approx(8.0)
    assert lm.after(t0, 8 * HOUR_MS) == e + 3 * HOUR_MS
    assert lm.until(t0, 8.0, 24 * HOUR_MS) == e + 3 * HOUR_MS
    assert lm.until(t0, 100.0, 24 * HOUR_MS) == e + 19 * HOUR_MS  # the cap: 24 listened hours
    assert base.until(t0, 8.0, 24 * HOUR_MS) == 8 * HOUR_MS  # without the outage


def test_an_operator_records_an_outage_the_marks_could_not_see_and_nonsense_changes_nothing(
        tmp_path, capsys):
    """`mimamori outage add | list | remove`: the server's network cut while it ran, known to
    the operator only. A recorded outage makes every household due (its silence is judged
    again) and its model learned again; a refused one changes nothing."""
    path = str(tmp_path / "s.db")
    db, store, (b,) = world(path)
    visit(store, b, T0)
    sweeper.sweep(db, int((T0 + H) * MS), CFG)
    assert next_checks(db) == {"h0": int((T0 + 24 * H) * MS)}
    now = f"fixed:{T0 + 2 * H}"

    def run(*argv: str) -> tuple[int, str]:
        rc = cli.main(["--db", path, "--clock", now, "outage", *argv])
        out = capsys.readouterr()
        return rc, out.out + out.err

    start, end = int((T0 - 5 * H) * MS), int((T0 + H) * MS)
    rc, said = run("add", _local(start), _local(end))
    assert rc == 0 and "every household is evaluated again" in said
    with db.read() as c:
        assert listening.spans(c) == ((start, end),)
        assert {r[0] for r in c.all("SELECT learned_under FROM household_models")} <= {""}
    assert next_checks(db) == {"h0": int((T0 + 2 * H) * MS)}
    for argv, why in [(("add", _local(start + HOUR_MS), _local(end + HOUR_MS)), "overlaps"),
                      (("add", _local(end + 2 * HOUR_MS), _local(end + HOUR_MS)), "FROM before TO"),
                      (("add", _local(end), _local(end + 9 * HOUR_MS)), "in the future"),
                      (("add", _local(start - 40 * 24 * HOUR_MS), _local(start - HOUR_MS)),
                       "check the dates"),
                      (("add", "yesterday", _local(start)), "YYYY-MM-DDTHH:MM"),
                      (("remove", _local(start + HOUR_MS)), "no outage begins"),
                      (("list", "--tz", "Mars/Base"), "IANA")]:
        rc, said = run(*argv)
        assert rc == 2 and why in said, (argv, said)
        with db.read() as c:
            assert listening.spans(c) == ((start, end),)
    rc, said = run("list")
    assert rc == 0 and said.split()[:3] == [_local(start), _local(end), "6.0"]
    rc, said = run("remove", _local(start))
    assert rc == 0
    with db.read() as c:
        assert listening.spans(c) == ()


def _local(t_ms: int) -> str:
    return datetime.fromtimestamp(to_s(t_ms), ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%dT%H:%M")


# ---------------------------------------------------------------- a network cut while it runs

FLEET = 16  # bulbs of a small city's fleet
ROUND_MS = 10 * MINUTE_MS


def _fleet_days(db, store, bulbs, days: int) -> int:
    """`days` days of a fleet heard as it usually is: each bulb switched on every 3 h from
    07:00 to 22:00 JST (staggered), each visit reported as the lamp goes off; a sweeper round
    (listening.hear) every ROUND_MS. Returns the instant reached (ms)."""
    day0 = int(T0 * MS) - (int(T0 * MS) + 9 * HOUR_MS) % (24 * HOUR_MS)  # JST midnight
    visits = sorted((day0 + d * 24 * HOUR_MS + (7 + 3 * k) * HOUR_MS + i * 10 * MINUTE_MS, i)
                    for d in range(days) for k in range(6) for i in range(len(bulbs)))
    t = day0
    for at, i in visits:
        while t + ROUND_MS <= at:
            t += ROUND_MS
            assert listening.hear(db, t) is None  # a well fleet is never silent
        visit(store, bulbs[i], at / MS)
    return t


def test_a_fleet_silence_its_rhythm_makes_improbable_is_the_servers_network(db_url):
    db, store, bulbs = world(db_url, n=FLEET)
    t = _fleet_days(db, store, bulbs, 4)
    sweeper.sweep(db, t, CFG)
    assert min(next_checks(db).values()) > t + 12 * HOUR_MS
    with db.read() as c:
        (last,) = c.one("SELECT MAX(last_heard_at) FROM devices")
        assert listening.spans(c) == ()
    # day 5 from 07:00 JST: the city's firewall drops every report; the server runs on
    cut = t + 9 * HOUR_MS
    decided = None
    while decided is None:
        t += ROUND_MS
        decided = listening.hear(db, t)
        assert t < cut + 12 * HOUR_MS, "a day's silence of a whole fleet goes unnoticed"
    assert decided == (last, t)  # deaf from the last report the server heard
    # ...only once five homes' own reports (at 07:00, 10:00, ... here) expected three each:
    # after 10:00, though the fleet's rhythm alone found the silence improbable by 08:00
    assert t >= cut + 3 * HOUR_MS
    with db.read() as c:
        assert listening.homes_expected(c, last, cut + 2 * HOUR_MS) == 0
        assert listening.homes_expected(c, last, t) >= listening.FLEET_MIN_HOMES
        (row,) = c.all("SELECT rhythm FROM fleet_rhythm")
    assert listening.Rhythm.from_json(row[0]).silent(last, cut + HOUR_MS)
    assert set(next_checks(db).values()) == {t}  # every household evaluated at once
    for _ in range(3):  # the span grows with each round while nothing is heard
        t += ROUND_MS
        assert listening.hear(db, t) == (last, t)
    # the first bulb heard again closes it at its report; the rhythm is not disturbed
    back = t + 5 * MINUTE_MS
    visit(store, bulbs[3], back / MS - 121)
    assert listening.hear(db, t + ROUND_MS) == (last, back)
    assert listening.hear(db, t + 2 * ROUND_MS) is None
    with db.read() as c:
        assert listening.spans(c) == ((last, back),)


def test_through_the_sweeper_a_network_cut_of_a_day_alerts_no_family(db_url):
    db, store, bulbs = world(db_url, n=FLEET)
    t = _fleet_days(db, store, bulbs, 4)
    sweeper.sweep(db, t, CFG)
    end = t + 30 * HOUR_MS  # the cut lasts 30 h; every family's last switch-on is a day old
    while t < end:
        t += ROUND_MS
        listening.hear(db, t)
        sweeper.sweep(db, t, CFG)
    with db.read() as c:
        assert alerts.list_alerts(c, active_only=True) == []
        ((s, e),) = listening.spans(c)
    assert e == t and t - s > 29 * HOUR_MS
    # without the fleet's rhythm (a server before this change) the same sweep alerts everyone
    with db.tx() as c:
        c.execute("DELETE FROM deaf_spans")
        c.execute("UPDATE households SET next_check = ?", (t,))
    sweeper.sweep(db, t, CFG)
    with db.read() as c:
        assert len(alerts.list_alerts(c, active_only=True)) == FLEET


def test_a_fleet_too_small_decides_nothing(db_url):
    """Four homes quiet at once may be four homes' business: their rules decide, not the fleet
    (its rhythm alone, 64 reports a day, would have decided within the day)."""
    db, store, bulbs = world(db_url, n=4)
    t = _fleet_days(db, store, bulbs, 4)
    for _ in range(48 * 6):
        t += ROUND_MS
        assert listening.hear(db, t) is None
    with db.read() as c:
        (last,) = c.one("SELECT MAX(last_heard_at) FROM devices")
        assert listening.homes_expected(c, last, t) == 4
        (row,) = c.all("SELECT rhythm FROM fleet_rhythm")
    assert listening.Rhythm.from_json(row[0]).silent(last, t)


def test_a_young_rhythm_decides_nothing_and_counts_each_bulb_once_a_round():
    r = listening.Rhythm()
    t = 0
    for _ in range(2 * 24 * 6):  # two days, 100 bulbs heard every round: not known yet
        r.add(t, t + ROUND_MS, 100)
        t += ROUND_MS
    assert not r.silent(t, t + 12 * HOUR_MS)
    for _ in range(24 * 6):
        r.add(t, t + ROUND_MS, 100)
        t += ROUND_MS
    assert r.known() and r.silent(t, t + HOUR_MS)
    assert r.expected(t, t + HOUR_MS) == pytest.approx(600, rel=0.01)
    # the hours of a stopped server's span are not expected of the fleet
    assert not r.silent(t, t + HOUR_MS, deaf=((t - MINUTE_MS, t + 59 * MINUTE_MS),))
    assert listening.Rhythm.from_json(r.to_json()) == r


def test_an_operator_dismisses_a_fleet_silence_and_it_is_not_decided_again(db_url):
    db, store, bulbs = world(db_url, n=FLEET)
    t = _fleet_days(db, store, bulbs, 4) + 9 * HOUR_MS  # the silence begins in the morning
    while listening.hear(db, t) is None:
        t += ROUND_MS
    with db.read() as c:
        ((s, _),) = listening.spans(c)
    # the coordinator knows better (the whole town went to the festival): `outage remove`
    listening.remove(db, s, t)
    for _ in range(12):
        t += ROUND_MS
        assert listening.hear(db, t) is None
    with db.read() as c:
        assert listening.spans(c) == ()
    # a bulb heard again; a later silence of the fleet is decided as before
    visit(store, bulbs[0], t / MS)
    heard = t + 121 * 1000
    t += 24 * HOUR_MS
    assert listening.hear(db, t) == (heard, t)


def test_the_real_server_decides_a_fleet_silence_in_its_sweeper_round(tmp_path):
    path = tmp_path / "s.db"
    db, store, bulbs = world(str(path), n=FLEET)
    t = _fleet_days(db, store, bulbs, 4)
    with db.read() as c:
        (last,) = c.one("SELECT MAX(last_heard_at) FROM devices")
    now = t + 20 * HOUR_MS  # the next day, 18:00 JST, and nothing heard since last night

    def decided() -> bool:
        with db.read() as c:
            return listening.spans(c) == ((last, now),)

    with ServerProcess(path, clock=f"fixed:{now / MS}", env={"MIMAMORI_SWEEP_S": "0.1"}):
        end = time.monotonic() + 30
        while not decided():
            assert time.monotonic() < end, "the running server never decided the silence"
            time.sleep(0.1)
