# SPDX-License-Identifier: MIT
"""`make demo`: a week in three homes in about two minutes, with the real firmware and server.

    python -m sim.demo [--days N] [--homes N] [--keep] [--sec-per-day S]

Starts the reference server (SQLite under var/demo/, a scaled clock: a simulated day in about
15 s), an SMTP sink that keeps the watchers' e-mails (var/demo/mail/), and the bulbs of each
home running the unmodified firmware in MicroPython (one process per switch-on; LTE-M bulbs
through the modem emulator). It plays the scripted week of sim/scenario.py, narrates it, lists
the e-mails, checks what each incident led to (sim/play.py `outcomes`) and exits with 0.
--keep (make demo KEEP=1) keeps the server and dashboard running afterwards until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from sim import scenario as sc
from sim.bulb import FIRMWARE, REPO
from sim.narrate import Narrator
from sim.outcomes import Outcome, coordinator_notices, delivered, outcomes, unexplained_alerts
from sim.play import Stage

VAR = REPO / "var" / "demo"


def run(days: int = 7, homes: int = 3, sec_per_day: float = 15.0, keep: bool = False,
        var: Path = VAR, out: TextIO | None = None,
        screenshot: Path | None = None) -> tuple[Stage, list[Outcome]]:
    """Play the demo; returns the stage (stopped unless keep) and the incidents' outcomes."""
    out = out or sys.stdout
    t_start = time.monotonic()
    s = sc.plan(days, homes)
    n = Narrator(s.start, s.end, out)
    n.text(f"Mimamori demo: {homes} home{'s' * (homes != 1)}, {days} day{'s' * (days != 1)} "
           f"from {s.start:%a %d %b %Y %H:%M} (Japan), "
           f"a day every {sec_per_day:g} s")
    n.text("  the real firmware/ in MicroPython, one process per switch-on; the reference server "
           "with a scaled clock; e-mails to a local SMTP sink")
    stage = Stage(s, var, sec_per_day, n)
    try:
        stage.start()
        n.text(f"  server {stage.url}  (database {_rel(stage.db)}, e-mails in "
               f"{_rel(var / 'mail')}, log {_rel(var / 'server.log')})")
        n.text("")
        for h in s.homes:
            radios = ", ".join(f"{b.room} ({'LTE-M' if b.transport == 'lte' else 'Wi-Fi'})"
                               for b in h.bulbs)
            n.text(f"  {h.name} ({h.person}): bulbs in the {radios}; watchers "
                   + ", ".join(f"{w.name} ({w.role}, {w.lang})" for w in h.watchers))
        if s.skipped:
            n.text(f"  not in this run (too few days or homes): {', '.join(s.skipped)}")
        n.text("")
        stage.play()
        outs = outcomes(stage)
        _summary(stage, outs, time.monotonic() - t_start)
        if keep or screenshot:
            stage.keep_serving()
        if screenshot:
            from sim.demo_shot import screenshots

            fell = next((h.id for h in s.homes if sc.FALL in h.incidents), s.homes[0].id)
            for path in screenshots(stage.url, stage.coordinator_link(), screenshot, fell):
                n.text(f"screenshot: {_rel(path)}")
        if keep:
            link = stage.coordinator_link()
            n.text("")
            n.text("The server keeps running (now at real speed from the week's end): "
                   + stage.url)
            n.text(f"  coordinator sign-in link (once, 24 h): {link}")
            homes = stage.scenario.homes
            home = next((h for h in homes if sc.FALL in h.incidents), homes[0])
            name, wlink = stage.watcher_link(home.id)
            n.text(f"  {name}'s sign-in link, a watcher of {home.name} (once, 14 days): {wlink}")
            n.text(f"  API: {stage.url}/openapi.json   token: {stage.token}")
            n.text("  Ctrl-C to stop.")
            signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
            signal.signal(signal.SIGINT, _interrupt)  # even where the shell started it ignoring
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                n.text("stopping")
        return stage, outs
    finally:
        stage.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def _summary(stage: Stage, outs: list[Outcome], seconds: float) -> None:
    n = stage.narrator
    assert n and stage.sink
    s = stage.scenario
    n.text("")
    n.text(f"E-mails sent ({len(stage.sink.all())}, kept in {_rel(stage.var / 'mail')}):")
    for m in stage.sink.all():
        to = ", ".join(m.to)
        n.text(f"  {m.n:3d} {m.kind:<9} {to:<34} {m.subject}")
    n.text("")
    n.text("What happened:")
    for h in s.homes:
        mine = [p for p in stage.players if p.plan.id in {b.id for b in h.bulbs}]
        made = sum(p.made for p in mine)
        missed = sum(p.missed for p in mine)
        planned = sum(len(b.visits) for b in h.bulbs)
        n.text(f"  {h.name}: {made} of {planned} planned switch-ons made"
               + (f" ({missed} missed: the host fell behind)" if missed else ""))
    got = delivered(stage)
    seen, have = sum(a for a, _ in got.values()), sum(b for _, b in got.values())
    n.text(f"  {seen} switch-ons recorded in the bulbs' flash, {have} of them on the server"
           + (f" (the other {seen - have} wait in a bulb's journal for its next switch-on)"
              if seen > have else ""))
    for o in outs:
        mark = "✓" if o.ok else "✗"
        n.text(f"  {mark} {o.incident:<10} {stage.scenario.home(o.home).name}: "
               f"{o.text}")
    false = unexplained_alerts(stage)
    n.text(f"  {'✓' if not false else '✗'} false alerts: "
           + (", ".join(f"{a['household']} {a['rule']}" for a in false) if false else "none"))
    for a in coordinator_notices(stage):
        n.text(f"  = coordinator notice ({a['rule']}, {a['state']}): {a['evidence']}")
    errors = [e for p in stage.players for e in p.errors]
    if errors:
        n.text(f"  bulb errors: {len(errors)} (first: {errors[0]})")
    n.text("")
    n.text(f"Dashboard: {stage.url}/  (coordinator view /coordinator; `make demo KEEP=1` keeps it "
           "running and prints a sign-in link)")
    n.text(f"Done in {seconds:.0f} s.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true",
                    help="keep the server and dashboard running afterwards until Ctrl-C")
    ap.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    ap.add_argument("--homes", type=int, default=3, help="homes (default 3; more are quiet)")
    ap.add_argument("--sec-per-day", type=float, default=15.0,
                    help="real seconds per simulated day (default 15)")
    ap.add_argument("--screenshot", type=Path, metavar="DIR",
                    help="afterwards, photograph the dashboard into DIR (Playwright, Chromium)")
    args = ap.parse_args(argv)
    if not (FIRMWARE / "main.py").exists():
        print("demo: firmware/main.py is missing: there is no bulb to boot")
        return 1
    try:
        run(args.days, args.homes, args.sec_per_day, args.keep, screenshot=args.screenshot)
    except ValueError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
