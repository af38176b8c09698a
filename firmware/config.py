# SPDX-License-Identifier: MIT
# Settings: one schema table, three layers, all files at the filesystem root (the cwd): the
# defaults in config.json (flashed with the firmware), overlaid by site.json (written at
# provisioning), overlaid by server.json (settings the server pushed, written through
# save_server()). Every value is checked against SCHEMA.
# It must never stop the light or raise on bad input: a missing, corrupt or out-of-range value
# falls back to its default with a printed message naming the key, the bad value and the
# default, and a fault (record.F_CONFIG, aux = the key's index in SCHEMA; or
# record.F_CONFIG_FILE, aux = the file's index in FILES) the journal records later.
import json
import os

try:
    from micropython import const
except ImportError:  # CPython: the server checks pushed settings against this same SCHEMA
    def const(x):
        return x


try:
    from record import F_CONFIG, F_CONFIG_FILE
except ImportError:  # CPython: the server imports this module as mimamori_firmware.config
    from .record import F_CONFIG, F_CONFIG_FILE  # type: ignore[import-not-found, no-redef]

FILES = ("config.json", "site.json", "server.json")  # F_CONFIG_FILE aux: index here
UNKNOWN = const(-1)  # F_CONFIG aux for a key the schema does not know

_NUM = const(0)  # a number lo..hi
_INT = const(1)  # a whole number lo..hi
_PIN = const(2)  # a GPIO number lo..hi but no flash pin, or null when the default is null
_ONE_OF = const(3)  # one of the texts in lo
_TEXT = const(4)  # a text of lo..hi characters
_HEX = const(5)  # hex digits, lo..hi of them (0: not provisioned yet)
_URL = const(6)  # an http:// or https:// URL, or "" when not provisioned
_FILE = const(7)  # a file name, or null
_OUT = const(8)  # as _PIN, and able to drive a level (not an input-only pin)
# ESP32 (the reference bulb's chip): GPIO 6..11 are wired to the SPI flash (using one stops the
# chip), 34..39 are inputs only (no output driver: a lamp there never lights)
_FLASH_PINS = (6, 11)
_INPUT_ONLY = (34, 39)

_SERVER = const(1)  # the server may set it (server.json)
_SECRET = const(2)  # never printed

# Add new settings at the end: a fault's aux is the index of its key here.
# fmt: off
SCHEMA = (
    # key               kind     lo      hi      unit       default                 flags
    ("brightness",      _NUM,    0.05,   1.0,    "",        1.0,                    _SERVER),
    ("gamma",           _NUM,    1.0,    4.0,    "",        2.8,                    _SERVER),
    ("fade_ms",         _INT,    0,      10000,  " of ms",  800,                    _SERVER),
    ("pwm_freq",        _INT,    2000,   40000,  " of Hz",  20000,                  0),
    ("lamp_pin",        _OUT,    0,      48,     "",        4,                      0),
    ("mains_sense_pin", _PIN,    0,      48,     "",        None,                   0),
    ("wdt_ms",          _INT,    2000,   60000,  " of ms",  10000,                  0),
    ("safe_mode_after", _INT,    1,      20,     " of boots", 3,                    0),
    ("stable_s",        _INT,    10,     86400,  " of seconds", 300,                0),
    ("safe_mode_s",     _INT,    60,     86400,  " of seconds", 3600,               0),
    ("heartbeat_s",     _INT,    60,     86400,  " of seconds", 900,                _SERVER),
    ("transport",       _ONE_OF, ("wifi", "lte", "wifi,lte", "lte,wifi"), 0, "", "wifi", _SERVER),
    ("server",          _URL,    0,      200,    "",        "",                     0),
    ("device_id",       _TEXT,   0,      32,     "",        "",                     0),
    ("device_key",      _HEX,    0,      128,    "",        "",                     _SECRET),
    ("wifi_ssid",       _TEXT,   0,      32,     "",        "",                     0),
    ("wifi_password",   _TEXT,   0,      64,     "",        "",                     _SECRET),
    ("apn",             _TEXT,   0,      64,     "",        "",                     0),
    ("ca_cert",         _FILE,   1,      64,     "",        None,                   0),
    ("uart_tx",         _OUT,    0,      48,     "",        17,                     0),
    ("uart_rx",         _PIN,    0,      48,     "",        16,                     0),
    ("uart_baud",       _INT,    9600,   921600, " of bits/s", 115200,              0),
    # ALIVE marks while lit (alive.py, docs/journal.md): every alive_step_s up to
    # alive_until_s, then each alive_growth times the last, at most alive_max_s apart
    ("alive_step_s",    _INT,    1,      60,     " of seconds", 10,                 _SERVER),
    ("alive_until_s",   _INT,    0,      3600,   " of seconds", 120,                _SERVER),
    ("alive_growth",    _NUM,    1.01,   2.0,    "",        1.1,                    _SERVER),
    ("alive_max_s",     _INT,    60,     86400,  " of seconds", 1800,               _SERVER),
    # setup mode's access point password (on the bulb's label; setupmode.py, docs/setup_mode.md)
    ("ap_password",     _TEXT,   0,      63,     "",        "",                     _SECRET),
    # LTE-M: a power-on reports only when the last report is this old (uplink.py; the server
    # adds it to its no-activity deadlines for LTE-M bulbs: docs/uplink.md section 6)
    ("lte_report_gap_s", _INT,   0,      43200,  " of seconds", 21600,              _SERVER),
)
# fmt: on


def _find(key):
    for i in range(len(SCHEMA)):
        if SCHEMA[i][0] == key:
            return i
    return UNKNOWN


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ok(row, v):
    _, kind, lo, hi, _, default, _ = row
    if kind == _NUM:
        return _number(v) and lo <= v <= hi
    if kind == _INT or kind == _PIN or kind == _OUT:
        if v is None:
            return kind != _INT and default is None
        if not (_number(v) and v == int(v) and lo <= v <= hi):
            return False
        if kind == _INT:
            return True
        if _FLASH_PINS[0] <= v <= _FLASH_PINS[1]:
            return False
        return kind == _PIN or not _INPUT_ONLY[0] <= v <= _INPUT_ONLY[1]
    if kind == _ONE_OF:
        return v in lo
    if v is None:
        return kind == _FILE
    if not isinstance(v, str) or not lo <= len(v) <= hi:
        return False
    if kind == _HEX:
        return len(v) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in v)
    if kind == _URL:
        return v == "" or v.startswith("http://") or v.startswith("https://")  # noqa: PIE810 (no tuple in MicroPython)
    return True


def _wanted(row):
    _, kind, lo, hi, unit, default, _ = row
    if kind == _NUM:
        return f"a number{unit} {lo}..{hi}"
    if kind == _INT:
        return f"a whole number{unit} {lo}..{hi}"
    if kind == _PIN or kind == _OUT:
        no = "6..11 (the flash)" + (" or 34..39 (input only)" if kind == _OUT else "")
        return f"a GPIO number {lo}..{hi}, not {no}" + (" or null" if default is None else "")
    if kind == _ONE_OF:
        return "one of " + ", ".join([json.dumps(c) for c in lo])
    if kind == _HEX:
        return f"an even count of hex digits, at most {hi}"
    if kind == _URL:
        return "an http:// or https:// URL"
    if kind == _FILE:
        return "a file name or null"
    return f"a text of at most {hi} characters"


def _shown(row, v):
    if row[6] & _SECRET:
        return "a hidden value"
    return json.dumps(v)


def check(key, value):
    """The value when the schema accepts it for key; else ValueError with the message."""
    i = _find(key)
    if i == UNKNOWN:
        raise ValueError(f"config: unknown setting '{key}' (got {json.dumps(value)}); ignored")
    row = SCHEMA[i]
    if not _ok(row, value):
        raise ValueError(
            f"config: '{key}' must be {_wanted(row)} (got {_shown(row, value)}); "
            f"using the default {json.dumps(row[5])}"
        )
    if row[1] == _NUM:
        return float(value)
    if row[1] == _INT or (row[1] in (_PIN, _OUT) and value is not None):
        return int(value)
    return value


def defaults():
    return {row[0]: row[5] for row in SCHEMA}


def loads(text):
    """json.loads that refuses a truncated document on every MicroPython: up to v1.24 `json`
    returns what it read of an object cut short ('{"a": 1, "b": 2' is {'a': 1, 'b': 2}), so a
    file torn by a power cut would pass. ValueError unless every { and [ is closed."""
    depth = 0
    quoted = escaped = False
    for c in text:
        if quoted:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "{" or c == "[":
            depth += 1
        elif c == "}" or c == "]":
            depth -= 1
    if depth or quoted:
        raise ValueError("cut short")
    return json.loads(text)


def _read(n, faults):
    """The settings in FILES[n] as a dict; None (+ a fault) when unreadable; {} when absent."""
    try:
        with open(FILES[n]) as f:
            got = loads(f.read())
        if isinstance(got, dict):
            return got
        print(f"config: {FILES[n]} is not a JSON object; its settings are ignored")
    except OSError:
        if n == 0:  # the defaults file ships with the firmware: missing is a fault
            print(f"config: {FILES[n]} is missing; using the built-in defaults")
            faults.append((F_CONFIG_FILE, n))
        return {}
    except ValueError as e:
        print(f"config: {FILES[n]} is not valid JSON ({e}); its settings are ignored")
    faults.append((F_CONFIG_FILE, n))
    return None


def _overlay(cfg, got, faults):
    for key in got:
        try:
            cfg[key] = check(key, got[key])
        except ValueError as e:
            print(e)
            faults.append((F_CONFIG, _find(key)))


def load():
    """(cfg, faults): every SCHEMA key with a valid value, and what was wrong on the way."""
    faults = []  # type: list
    cfg = defaults()
    base = _read(0, faults)
    if base:
        for i in range(len(SCHEMA)):
            key, default = SCHEMA[i][0], SCHEMA[i][5]
            if key not in base:
                print(
                    f"config: '{key}' is missing from {FILES[0]}; using the default "
                    + json.dumps(default)
                )
                faults.append((F_CONFIG, i))
    for n, got in enumerate((base, _read(1, faults), _read(2, faults))):
        if got:
            _overlay(cfg, got, faults)
    return cfg, faults


def save_server(settings):
    """Check and persist settings the server pushed. (applied, faults): what was accepted;
    refused keys (not settable by the server, unknown or invalid) are left as they were."""
    faults = []  # type: list
    applied = {}
    for key in settings:
        i = _find(key)
        try:
            if i != UNKNOWN and not SCHEMA[i][6] & _SERVER:
                raise ValueError(f"config: the server may not set '{key}'; ignored")
            applied[key] = check(key, settings[key])
        except ValueError as e:
            print(e)
            faults.append((F_CONFIG, i))
    if applied:
        _merge(2, applied)
    return applied, faults


def save_site(settings):
    """Check settings and merge them into site.json (setup mode, after a working connection
    test). Every key must pass check(): ValueError (nothing written) otherwise. Atomic."""
    return _merge(1, {key: check(key, settings[key]) for key in settings})


def _merge(n, changes):
    """Merge changes into FILES[n] and return its settings; atomic: the old file or the new."""
    kept = _read(n, []) or {}
    kept.update(changes)
    tmp = FILES[n] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(kept, f)
    try:
        os.rename(tmp, FILES[n])  # atomic on LittleFS: the old file or the new one
    except OSError:  # FAT will not rename onto an existing file
        os.remove(FILES[n])
        os.rename(tmp, FILES[n])
    return kept
