# SPDX-License-Identifier: MIT
"""`mimamori release` commands: firmware releases and their rollout (docs/ota.md).

    mimamori release add FOLDER                   register `make release`'s build/release/<v>/
    mimamori release list [--json]                the releases
    mimamori release rollout VERSION [--bulbs A,B | --share 0.1] [--spread-h 24]
    mimamori release show VERSION [--json]        the rollout's progress, rollbacks and reasons
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mimamori import clock as clocks
from mimamori import ota
from mimamori.storage import Store


def release_add(args: argparse.Namespace, store: Store) -> int:
    r = ota.add(store, Path(args.folder), clocks.ms(args.clock_fn))
    print(f"release {r.version} ({r.name}) added: {r.files} files, {r.size} bytes")
    print(f"roll it out with: mimamori release rollout {r.version} --share 0.1")
    return 0


def release_list(args: argparse.Namespace, store: Store) -> int:
    rs = ota.releases(store)
    if args.json:
        print(json.dumps([r.__dict__ for r in rs]))
        return 0
    if not rs:
        print("no releases yet: `make release`, then `mimamori release add build/release/<v>`")
    for r in rs:
        p = ota.progress(store, r.version)["counts"]
        print(f"{r.version:>8}  {r.name:<16} {r.size:>8} bytes  {r.files:>3} files  "
              + (", ".join(f"{k} {v}" for k, v in sorted(p.items())) or "not rolled out"))
    return 0


def release_rollout(args: argparse.Namespace, store: Store) -> int:
    bulbs = [b for b in args.bulbs.split(",") if b] if args.bulbs else None
    chosen = ota.rollout(store, args.version, clocks.ms(args.clock_fn), bulbs, args.share,
                         args.spread_h)
    print(f"release {args.version} rolled out to {len(chosen)} bulbs over {args.spread_h:g} h"
          + (f": {', '.join(chosen)}" if len(chosen) <= 10 else ""))
    return 0


def release_show(args: argparse.Namespace, store: Store) -> int:
    p: dict[str, Any] = ota.progress(store, args.version)
    if args.json:
        print(json.dumps(p))
        return 0
    print(f"release {args.version}: " + (", ".join(f"{k} {v}" for k, v in
                                                   sorted(p["counts"].items())) or "no bulbs"))
    for d, s in sorted(p["bulbs"].items()):
        why = p["reasons"].get(d)
        print(f"  {d:<20} {s}" + (f" ({why})" if why else ""))
    return 0


def add_commands(sub: Any) -> None:
    r = sub.add_parser("release", help="firmware releases and their rollout to bulbs")
    rs = r.add_subparsers(dest="release_command", required=True)
    p = rs.add_parser("add", help="register a release built by `make release`")
    p.add_argument("folder", help="build/release/<version>")
    p.set_defaults(func=release_add)
    p = rs.add_parser("list", help="the releases and how far each has gone")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=release_list)
    p = rs.add_parser("rollout", help="give a release to chosen bulbs or a share of them")
    p.add_argument("version", type=int)
    p.add_argument("--bulbs", help="comma-separated bulb ids (default: a share of all)")
    p.add_argument("--share", type=float, help="fraction of all bulbs, 0 < share <= 1")
    p.add_argument("--spread-h", type=float, default=24.0,
                   help="hours over which the bulbs start fetching (default 24)")
    p.set_defaults(func=release_rollout)
    p = rs.add_parser("show", help="a release's rollout: each bulb's state, rollbacks and why")
    p.add_argument("version", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=release_show)
