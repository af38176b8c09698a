# SPDX-License-Identifier: MIT
"""Settings the server pushes to a bulb, validated against the bulb's own schema.

The schema is firmware/config.py's SCHEMA, imported (not copied): the module is the bulb's own
code, importable from CPython too (installed as `mimamori_firmware`). Only keys the bulb lets the
server set (the _SERVER flag) are accepted, with the same ranges and the same messages the bulb
prints.

It must never hand the bulb a value the bulb would refuse.
"""

from __future__ import annotations

import json
from typing import Any

from mimamori_firmware import config

SERVER_KEYS: tuple[str, ...] = tuple(r[0] for r in config.SCHEMA if r[6] & config._SERVER)


BulbSettings = dict[str, Any]
"""The settings the server pushes to one bulb: key -> value, as firmware/config.py's SCHEMA
names and checks them (only the keys the server may set)."""


def lte_report_gap_s(pushed: BulbSettings) -> float:
    """The LTE-M report gap a bulb uses: the value pushed to it when valid, else the bulb's
    default (the rules wait this much longer for LTE-M bulbs: docs/alerts.md)."""
    try:
        return float(config.check("lte_report_gap_s", pushed["lte_report_gap_s"]))
    except (KeyError, ValueError):
        return float(config.defaults()["lte_report_gap_s"])


def heartbeat_s(pushed: BulbSettings) -> float:
    """How often a lit bulb reports (the pushed value when valid, else the bulb's default): the
    rules read a lit bulb whose reports stop as probably switched off (docs/alerts.md)."""
    try:
        return float(config.check("heartbeat_s", pushed["heartbeat_s"]))
    except (KeyError, ValueError):
        return float(config.defaults()["heartbeat_s"])


def check(key: str, value: Any) -> Any:
    """The value as the bulb will keep it; ValueError saying what is wrong otherwise."""
    if key not in SERVER_KEYS:
        raise ValueError(
            f"setting {key!r} cannot be set from the server; the server may set: "
            + ", ".join(SERVER_KEYS)
        )
    try:
        return config.check(key, value)
    except ValueError as e:
        msg = str(e).split("; using the default")[0].replace("config: ", "")
        raise ValueError(msg) from None


def parse_assignment(text: str) -> tuple[str, Any]:
    """'brightness=0.6' -> ('brightness', 0.6), checked. Values are JSON, or else plain text."""
    if "=" not in text:
        raise ValueError(f"{text!r}: write settings as key=value, e.g. heartbeat_s=600")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, check(key, value)


def merge(current: BulbSettings, changes: BulbSettings) -> BulbSettings:
    """The full settings the bulb gets next: current ones with the changes, all checked."""
    out = {k: check(k, v) for k, v in current.items()}
    out.update({k: check(k, v) for k, v in changes.items()})
    return out


def site_errors(site: BulbSettings) -> list[str]:
    """What the bulb would refuse in a site config (firmware/config.py's checks, the same code
    the bulb runs): one message per bad or unknown key; [] when all is well."""
    out = []
    for key, value in site.items():
        try:
            config.check(key, value)
        except ValueError as e:
            out.append(str(e).split("; using the default")[0].replace("config: ", ""))
    return out
