# SPDX-License-Identifier: MIT
"""The `mimamori` command: the tasks people do with the reference server.

    mimamori [--db var/mimamori.db] serve [--host H] [--port P] [--cert F --key F] [--clock C]
    mimamori device register [--id ID] [--household H] [--server URL] [--json] [--out FILE]
    mimamori device list [--household H] [--json]
    mimamori device show ID [--last N] [--json]
    mimamori device assign ID HOUSEHOLD
    mimamori device settings ID [key=value ...]
    mimamori device rekey ID [--server URL]

--db defaults to $MIMAMORI_DB or var/mimamori.db; --clock to $MIMAMORI_CLOCK or real.
Other parts of the server add their own command groups: a module in COMMANDS with
`add_commands(sub)` where each parser sets `func(args, store) -> int`.
Errors are printed as one line saying what was wrong and what to do; the exit status is 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mimamori import clock as clocks
from mimamori import settings as bulb_settings
from mimamori.storage import Device, Store, UnknownDevice, site_snippet

DEFAULT_DB = "var/mimamori.db"
DEFAULT_SERVER = "http://127.0.0.1:8000"
# Modules that add command groups (`add_commands(subparsers)`); others append theirs here.
COMMANDS: list[str] = ["mimamori.cli_people", "mimamori.web.cli", "mimamori.dbcopy",
                      "mimamori.cli_ota", "mimamori.cli_outage"]


def _db_path(args: argparse.Namespace) -> str:
    return args.db or os.environ.get("MIMAMORI_DB") or DEFAULT_DB


def db_problem(path: str, make_dirs: bool) -> str | None:
    """Why the SQLite database at `path` cannot be used, in one line naming it, or None. The
    server (make_dirs) creates missing directories, as `make server` does for var/; the other
    commands never create a directory (a mistyped --db would leave an empty database behind)."""
    from mimamori.sql import is_postgres

    if path == ":memory:" or is_postgres(path):
        return None
    p = Path(path)
    fix = "check --db (or MIMAMORI_DB)"
    if p.is_dir():
        return f"the database {path} is a directory: --db names a file, e.g. {p / 'mimamori.db'}"
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        return f"the database {path} cannot be made: {parent} is not a directory; {fix}"
    if not parent.exists():
        if not make_dirs:
            return (f"no database at {path}: the directory {parent} does not exist; {fix}, "
                    "or start the server with it first (`make server`)")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return (f"the database {path} cannot be made: cannot create {parent} "
                    f"({e.strerror}); {fix}")
    target = p if p.exists() else parent
    if not os.access(target, os.W_OK):
        return f"the database {path} is not writable: {target} is read-only for this user; {fix}"
    return None


def open_store(path: str, make_dirs: bool = False) -> Store:
    """The store at path, or ValueError with one line naming the path and what to do."""
    import sqlite3

    problem = db_problem(path, make_dirs)
    if problem:
        raise ValueError(problem)
    try:
        return Store.open(path)
    except sqlite3.Error as e:
        raise ValueError(f"the database {path} cannot be opened ({e}): check --db (or "
                         "MIMAMORI_DB)") from None


def _print_registered(dev: Device, server: str, args: argparse.Namespace, verb: str) -> None:
    snippet = site_snippet(dev, server)
    if args.out:
        out = Path(args.out)
        merged: dict[str, Any] = {}
        if out.exists():
            merged = json.loads(out.read_text())
        merged.update(snippet)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(merged, indent=1) + "\n")
    if args.json:
        print(json.dumps(snippet))
        return
    print(f"device {dev.id} {verb}" + (f" (household {dev.household})" if dev.household else ""))
    print(f"key: {dev.key}")
    print("site config for the bulb (fs/site.json):" if not args.out
          else f"site config written to {args.out}:")
    print(json.dumps(snippet, indent=1))


def cmd_register(args: argparse.Namespace, store: Store) -> int:
    dev = store.register_device(clocks.ms(args.clock_fn), args.id, args.household)
    from mimamori.households import touch  # the alert side looks at the household again

    if dev.household and not touch(store.db, dev.household, clocks.ms(args.clock_fn)):
        print(f"note: household {dev.household!r} is not set up for alerts yet: "
              f"`mimamori household add {dev.household}`", file=sys.stderr)
    _print_registered(dev, args.server, args, "registered")
    return 0


def cmd_rekey(args: argparse.Namespace, store: Store) -> int:
    dev = store.rekey_device(args.id)
    _print_registered(dev, args.server, args, "has a new key (the old one no longer works)")
    return 0


def _ms_text(ms: int | None) -> str:
    if ms is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(clocks.to_s(ms)))


NO_HOUSEHOLD = "NO HOUSEHOLD"  # a bulb that can raise no alert: `mimamori device assign`


def signal_text(store: Store, dev_id: str, now_ms: int) -> str:
    """The bulb's signal on the one scale (firmware/quality.py), with its figures."""
    from mimamori.web.views import device_health
    from mimamori_firmware import quality

    h = device_health(store, dev_id, now_ms)
    row = quality.level(h.dbm, h.late_7d, h.visits_7d)
    figures = ([] if h.dbm is None else [f"{h.dbm} dBm"]) + (
        [f"{h.late_7d} of {h.visits_7d} reports late"] if h.visits_7d else [])
    return (row[5] if row else "unknown") + (f" ({', '.join(figures)})" if figures else "")


def cmd_list(args: argparse.Namespace, store: Store) -> int:
    devs = store.devices(args.household)
    if args.json:
        print(json.dumps([{k: v for k, v in d.__dict__.items() if k != "key"} for d in devs]))
        return 0
    if not devs:
        print("no devices: register one with `mimamori device register`")
        return 0
    now = clocks.ms(args.clock_fn)
    print(f"{'id':<20} {'household':<14} {'ack':>8} {'epoch':>10} {'sv':>3}  "
          f"{'last heard':<20}  signal")
    for d in devs:
        ack = "-" if d.ack is None else str(d.ack)
        epoch = "-" if d.epoch is None else f"{d.epoch:08x}"
        print(f"{d.id:<20} {d.household or NO_HOUSEHOLD:<14} {ack:>8} {epoch:>10} "
              f"{d.settings_version:>3}  {_ms_text(d.last_heard_at):<20}  "
              f"{signal_text(store, d.id, now)}")
    if any(d.household is None for d in devs):
        print(f"{NO_HOUSEHOLD}: the bulb raises no alert until `mimamori device assign DEVICE "
              "HOUSEHOLD`")
    return 0


def cmd_show(args: argparse.Namespace, store: Store) -> int:
    dev = store.device(args.id)
    if dev is None:
        raise UnknownDevice(args.id)
    journals = store.journals(dev.id)
    losses = store.losses(dev.id)
    conflicts = store.conflicts(dev.id)
    deliveries = store.deliveries(dev.id)[-args.last:]
    if args.json:
        print(json.dumps({
            "device": {k: v for k, v in dev.__dict__.items() if k != "key"},
            "journals": [j.__dict__ for j in journals],
            "losses": [x.__dict__ for x in losses],
            "conflicts": [x.__dict__ for x in conflicts],
            "deliveries": [x.__dict__ for x in deliveries],
        }))
        return 0
    print(f"device {dev.id}  household {dev.household or NO_HOUSEHOLD}  registered "
          f"{_ms_text(dev.created_at)}  settings v{dev.settings_version} "
          f"{json.dumps(dev.settings, sort_keys=True)}")
    print(f"first heard {_ms_text(dev.first_heard_at)}, last heard {_ms_text(dev.last_heard_at)}")
    if dev.household is None:
        print(f"{NO_HOUSEHOLD}: it raises no alert until `mimamori device assign {dev.id} "
              "HOUSEHOLD`")
    now = clocks.ms(args.clock_fn)
    print(f"signal: {signal_text(store, dev.id, now)}")
    from mimamori.web.views import FAULT_WHAT, fault_name, fault_records

    with store.db.read() as c:
        faults = fault_records(c, dev.id, now - 14 * clocks.DAY_MS)
    print(f"faults in 14 days: {len(faults)}" + (":" if faults else ""))
    for at, sub, aux in faults:
        name = fault_name(sub)
        print(f"  {_ms_text(at)}  {name}: {FAULT_WHAT.get(name, 'unknown fault')} (detail {aux})")
    for j in journals:
        print(f"journal {j.ordinal} epoch {j.epoch:08x}: ack {j.ack}, last boot {j.last_boot} "
              f"req {j.last_req}, {j.lost} records lost (the bulb counts {j.reported_lost}), "
              f"heard {_ms_text(j.first_heard_at)} .. {_ms_text(j.last_heard_at)}")
        if j.conflicts:
            print(f"  {j.conflicts} records came with a stored seq but other content (kept "
                  "apart, not used): the bulb reused seqs; see docs/journal.md")
    for x in losses:
        print(f"  lost seqs {x.first_seq}..{x.last_seq} ({x.missing} missing, {x.cause}), "
              f"learnt {_ms_text(x.received_at)}")
    for k in conflicts:
        print(f"  conflict: seq {k.seq} came as boot {k.boot} up {k.up_ms} ms kind {k.kind} "
              f"sub {k.sub} aux {k.aux} arg {k.arg}, {_ms_text(k.received_at)}")
    if deliveries:
        print(f"last {len(deliveries)} deliveries (received, boot/req, records new/sent, ack, "
              "bytes):")
    for d in deliveries:
        print(f"  {_ms_text(d.received_at)}  {d.boot}/{d.req}  {d.stored}/{d.count}  "
              f"ack {d.ack}  {d.bytes} B")
    return 0


def cmd_assign(args: argparse.Namespace, store: Store) -> int:
    from mimamori import households as hh

    hh.open_people(store.db)
    try:
        with store.db.tx() as c:
            before = hh.assign_bulb(c, args.id, args.household, clocks.ms(args.clock_fn))
    except hh.NotFound as e:
        raise ValueError(str(e)) from None
    print(f"device {args.id} now watches over household {args.household}"
          + (f" (it was in {before})" if before and before != args.household else ""))
    return 0


def cmd_settings(args: argparse.Namespace, store: Store) -> int:
    dev = store.device(args.id)
    if dev is None:
        raise UnknownDevice(args.id)
    if args.assignments:
        changes = dict(bulb_settings.parse_assignment(a) for a in args.assignments)
        merged = bulb_settings.merge(dev.settings, changes)
        version = store.set_settings(dev.id, merged)
        print(f"device {dev.id}: settings version {version}, sent with its next acknowledgement:")
        print(json.dumps(merged, sort_keys=True))
    else:
        print(f"device {dev.id}: settings version {dev.settings_version}")
        print(json.dumps(dev.settings, sort_keys=True))
        print("settable: " + ", ".join(bulb_settings.SERVER_KEYS))
    return 0


def cmd_serve(args: argparse.Namespace, store: Store | None) -> int:
    import uvicorn

    from mimamori import guard
    from mimamori.app import create_app

    if bool(args.cert) != bool(args.key):
        raise ValueError("--cert and --key go together (the server's certificate and its key)")
    from mimamori.web.cli import record_served_url

    scheme = "https" if args.cert else "http"
    store = open_store(_db_path(args), make_dirs=True)  # a bad --db: one line, no traceback
    try:  # the links `mimamori dashboard invite` prints point here (or MIMAMORI_PUBLIC_URL)
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        record_served_url(store.db, f"{scheme}://{host}:{args.port}")
    finally:
        store.close()
    app = create_app(_db_path(args), clock=args.clock_fn)
    print(f"mimamori server on {scheme}://{args.host}:{args.port} db={_db_path(args)}",
          flush=True)
    proxies = os.environ.get("MIMAMORI_TRUSTED_PROXIES", "").strip()
    config = uvicorn.Config(
        app, host=args.host, port=args.port, ssl_certfile=args.cert, ssl_keyfile=args.key,
        log_level=args.log_level, access_log=False,
        # every byte counts on LTE-M: no Server or Date header in answers
        server_header=False, date_header=False,
        # head deadline and a connection cap that keeps room for bulbs (sim/server/guard.py)
        http=guard.protocol(), timeout_keep_alive=5,
        # X-Forwarded-For only from the proxies named in MIMAMORI_TRUSTED_PROXIES
        proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None)
    guard.raise_open_file_limit()
    guard.install_log_filter()
    uvicorn.Server(config).run()
    return 0


def add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("MIMAMORI_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("MIMAMORI_PORT", "8000")))
    p.add_argument("--cert", help="TLS certificate (PEM): serve https")
    p.add_argument("--key", help="TLS private key (PEM) of --cert")
    p.add_argument("--log-level", default="warning")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mimamori", description="Mimamori reference server")
    p.add_argument("--db", help=f"database file (default $MIMAMORI_DB or {DEFAULT_DB})")
    p.add_argument("--clock", default=os.environ.get("MIMAMORI_CLOCK"),
                   help="real | scaled:F[@UNIX_S] | fixed:UNIX_S (default $MIMAMORI_CLOCK)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP(S) server")
    add_serve_options(serve)
    serve.set_defaults(func=cmd_serve, needs_store=False)

    dev = sub.add_parser("device", help="bulbs: register, list, show, settings, rekey")
    dsub = dev.add_subparsers(dest="device_command", required=True)
    srv = os.environ.get("MIMAMORI_SERVER", DEFAULT_SERVER)

    reg = dsub.add_parser("register", help="register a bulb; prints its key and site config")
    reg.add_argument("--id", help="device id (default: bulb-<random>)")
    reg.add_argument("--household")
    reg.add_argument("--server", default=srv, help=f"URL the bulb posts to (default {srv})")
    reg.add_argument("--json", action="store_true", help="print only the site-config JSON")
    reg.add_argument("--out", help="merge the site config into this JSON file")
    reg.set_defaults(func=cmd_register)

    rk = dsub.add_parser("rekey", help="give a bulb a new key")
    rk.add_argument("id")
    rk.add_argument("--server", default=srv)
    rk.add_argument("--json", action="store_true")
    rk.add_argument("--out")
    rk.set_defaults(func=cmd_rekey)

    ls = dsub.add_parser("list", help="registered bulbs and when they were last heard")
    ls.add_argument("--household")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    sh = dsub.add_parser("show", help="one bulb: journals, losses, recent deliveries")
    sh.add_argument("id")
    sh.add_argument("--last", type=int, default=10, help="deliveries to show (default 10)")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)

    asg = dsub.add_parser("assign", help="attach a bulb to a household (or move it)")
    asg.add_argument("id")
    asg.add_argument("household")
    asg.set_defaults(func=cmd_assign)

    st = dsub.add_parser("settings", help="show or change what the server pushes to a bulb")
    st.add_argument("id")
    st.add_argument("assignments", nargs="*", metavar="key=value")
    st.set_defaults(func=cmd_settings)

    for name in COMMANDS:
        importlib.import_module(name).add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.clock_fn = clocks.parse(args.clock)
        if not getattr(args, "needs_store", True):
            return args.func(args, None)
        store = open_store(_db_path(args))
        try:
            return args.func(args, store)
        finally:
            store.close()
    except UnknownDevice as e:
        print(f"mimamori: no device {e.args[0]!r}: see `mimamori device list`", file=sys.stderr)
    except ValueError as e:
        print(f"mimamori: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
