# SPDX-License-Identifier: MIT
"""Settings: firmware/config.py run in MicroPython, layer by layer, each kind of bad input.

The module is pure (files in, dict out), so these tests run it in the real interpreter without
the hardware shims: the firmware directory on MICROPYPATH, a temporary bulb filesystem as cwd
holding config.json as flashing leaves it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sim.bulb import MPY32, micropython_bin, mpy32_missing, shared_dir

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
MICROPYTHON = Path(micropython_bin())
F_CONFIG, F_CONFIG_FILE = 1, 2  # record.py
DEFAULTS = json.loads((FIRMWARE / "config.json").read_text())


def mpy(code: str, fs: Path) -> tuple[object, str]:
    """Run code in micropython (96wK heap) with cwd=fs; (the value it printed last, stdout)."""
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:.frozen")
    run = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=96wK", "-c", code],
        cwd=fs,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    *lines, last = run.stdout.strip().splitlines()
    return json.loads(last), "\n".join(lines)


LOAD = "import config, json\ncfg, faults = config.load()\nprint(json.dumps([cfg, faults]))"


def load(fs: Path) -> tuple[dict, list, str]:
    (cfg, faults), out = mpy(LOAD, fs)
    return cfg, [tuple(f) for f in faults], out


def schema_index(fs: Path, key: str) -> int:
    keys, _ = mpy("import config, json\nprint(json.dumps([r[0] for r in config.SCHEMA]))", fs)
    return keys.index(key)


@pytest.fixture
def fs(tmp_path: Path) -> Path:
    d = tmp_path / "fs"
    d.mkdir()
    shutil.copy(FIRMWARE / "config.json", d / "config.json")
    return d


def write(path: Path, obj: object) -> None:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_shipped_defaults_cover_every_setting_and_are_all_valid(fs: Path) -> None:
    code = (
        "import config, json\n"
        "print(json.dumps([[r[0], r[5], config.check(r[0], r[5])] for r in config.SCHEMA]))"
    )
    rows, _ = mpy(code, fs)
    assert {key: default for key, default, _ in rows} == DEFAULTS
    assert all(default == checked for _, default, checked in rows)
    cfg, faults, out = load(fs)
    assert cfg == DEFAULTS
    assert faults == []
    assert out == ""


def test_site_file_overrides_defaults_and_server_file_overrides_both(fs: Path) -> None:
    write(fs / "site.json", {"brightness": 0.6, "wifi_ssid": "home", "heartbeat_s": 600})
    write(fs / "server.json", {"heartbeat_s": 1800})
    cfg, faults, _ = load(fs)
    assert faults == []
    assert cfg["brightness"] == 0.6
    assert cfg["wifi_ssid"] == "home"
    assert cfg["heartbeat_s"] == 1800
    assert cfg["gamma"] == DEFAULTS["gamma"]


def test_unprovisioned_bulb_without_site_file_is_not_a_fault(fs: Path) -> None:
    cfg, faults, _ = load(fs)
    assert (cfg, faults) == (DEFAULTS, [])


def test_wrong_type_falls_back_to_default_with_a_message_naming_key_value_and_default(
    fs: Path,
) -> None:
    write(fs / "site.json", {"heartbeat_s": "ten", "brightness": 0.5})
    cfg, faults, out = load(fs)
    assert cfg["heartbeat_s"] == 900
    assert cfg["brightness"] == 0.5  # the good settings of the same file still apply
    assert faults == [(F_CONFIG, schema_index(fs, "heartbeat_s"))]
    assert out == (
        "config: 'heartbeat_s' must be a whole number of seconds 60..86400 (got \"ten\"); "
        "using the default 900"
    )


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("brightness", 0.01),
        ("brightness", 1.5),
        ("gamma", 9),
        ("pwm_freq", 100),
        ("fade_ms", 2.5),
        ("lamp_pin", -1),
        ("lamp_pin", None),
        ("transport", "carrier pigeon"),
        ("server", "ftp://example.org"),
        ("device_key", "xyz"),
        ("wdt_ms", True),
    ],
)
def test_out_of_range_value_falls_back_to_its_default(fs: Path, key: str, bad: object) -> None:
    write(fs / "site.json", {key: bad})
    cfg, faults, out = load(fs)
    assert cfg[key] == DEFAULTS[key]
    assert faults == [(F_CONFIG, schema_index(fs, key))]
    assert f"'{key}'" in out and f"using the default {json.dumps(DEFAULTS[key])}" in out


def test_unknown_setting_is_ignored_and_reported(fs: Path) -> None:
    write(fs / "site.json", {"brightnes": 0.3})
    cfg, faults, out = load(fs)
    assert cfg == DEFAULTS
    assert faults == [(F_CONFIG, -1)]
    assert "unknown setting 'brightnes'" in out


def test_corrupt_site_file_keeps_defaults_and_names_the_file(fs: Path) -> None:
    write(fs / "site.json", '{"brightness": 0.4,')
    write(fs / "server.json", {"heartbeat_s": 1200})
    cfg, faults, out = load(fs)
    assert cfg["brightness"] == DEFAULTS["brightness"]
    assert cfg["heartbeat_s"] == 1200  # the next layer still applies
    assert faults == [(F_CONFIG_FILE, 1)]
    assert "site.json is not valid JSON" in out


def test_site_file_that_is_not_an_object_is_a_corrupt_file(fs: Path) -> None:
    write(fs / "site.json", [1, 2])
    cfg, faults, _ = load(fs)
    assert (cfg, faults) == (DEFAULTS, [(F_CONFIG_FILE, 1)])


def test_missing_defaults_file_uses_built_in_defaults(fs: Path) -> None:
    (fs / "config.json").unlink()
    write(fs / "site.json", {"brightness": 0.7})
    cfg, faults, out = load(fs)
    assert cfg == dict(DEFAULTS, brightness=0.7)
    assert faults == [(F_CONFIG_FILE, 0)]
    assert "config.json is missing" in out


def test_corrupt_defaults_file_uses_built_in_defaults(fs: Path) -> None:
    write(fs / "config.json", "\x00\xff not json")
    cfg, faults, out = load(fs)
    assert (cfg, faults) == (DEFAULTS, [(F_CONFIG_FILE, 0)])
    assert "config.json is not valid JSON" in out


def test_setting_missing_from_defaults_file_uses_the_schema_default(fs: Path) -> None:
    partial = {k: v for k, v in DEFAULTS.items() if k != "wdt_ms"}
    write(fs / "config.json", dict(partial, gamma=2.2))
    cfg, faults, out = load(fs)
    assert cfg == dict(DEFAULTS, gamma=2.2)
    assert faults == [(F_CONFIG, schema_index(fs, "wdt_ms"))]
    assert "'wdt_ms' is missing from config.json" in out


def test_secrets_are_never_printed(fs: Path) -> None:
    write(fs / "site.json", {"wifi_password": "x" * 80 + "hunter2", "device_key": "hunter2"})
    cfg, faults, out = load(fs)
    assert len(faults) == 2
    assert "hunter2" not in out
    assert cfg["wifi_password"] == "" and cfg["device_key"] == ""


def test_check_raises_the_message_others_print(fs: Path) -> None:
    code = (
        "import config, json\n"
        "out = [config.check('brightness', 1)]\n"
        "try:\n    config.check('safe_mode_after', 0)\nexcept ValueError as e:\n"
        "    out.append(str(e))\n"
        "print(json.dumps(out))"
    )
    got, _ = mpy(code, fs)
    assert got == [
        1.0,
        (
            "config: 'safe_mode_after' must be a whole number of boots 1..20 (got 0); "
            "using the default 3"
        ),
    ]


SAVE = (
    "import config, json\n"
    "applied, faults = config.save_server(json.loads({arg!r}))\n"
    "print(json.dumps([applied, faults]))"
)


def save_server(fs: Path, settings: dict) -> tuple[dict, list]:
    (applied, faults), _ = mpy(SAVE.format(arg=json.dumps(settings)), fs)
    return applied, [tuple(f) for f in faults]


def test_server_settings_are_checked_persisted_and_seen_by_the_next_boot(fs: Path) -> None:
    write(fs / "server.json", {"heartbeat_s": 1200})
    applied, faults = save_server(
        fs, {"brightness": 0.8, "fade_ms": -5, "lamp_pin": 5, "colour": "red"}
    )
    assert applied == {"brightness": 0.8}
    assert sorted(faults) == sorted(
        [
            (F_CONFIG, schema_index(fs, "fade_ms")),
            (F_CONFIG, schema_index(fs, "lamp_pin")),
            (F_CONFIG, -1),
        ]
    )
    assert json.loads((fs / "server.json").read_text()) == {"heartbeat_s": 1200, "brightness": 0.8}
    assert not list(fs.glob("*.tmp"))  # no temp file left
    cfg, faults, _ = load(fs)
    assert (cfg["brightness"], cfg["heartbeat_s"], faults) == (0.8, 1200, [])


def test_server_settings_replace_a_corrupt_server_file(fs: Path) -> None:
    write(fs / "server.json", "{{{")
    applied, faults = save_server(fs, {"heartbeat_s": 3600})
    assert (applied, faults) == ({"heartbeat_s": 3600}, [])
    assert json.loads((fs / "server.json").read_text()) == {"heartbeat_s": 3600}


@pytest.mark.parametrize("pin", [6, 7, 11, 34, 36, 39])
def test_lamp_pin_on_a_flash_or_input_only_pin_is_refused(fs: Path, pin: int) -> None:
    # GPIO 6..11 are the ESP32's SPI flash, 34..39 have no output driver: a dark bulb
    write(fs / "site.json", {"lamp_pin": pin, "mains_sense_pin": 36})
    cfg, faults, out = load(fs)
    assert cfg["lamp_pin"] == 4 and cfg["mains_sense_pin"] == 36  # an input may be 34..39
    assert faults == [(F_CONFIG, schema_index(fs, "lamp_pin"))]
    assert out == (
        f"config: 'lamp_pin' must be a GPIO number 0..48, not 6..11 (the flash) or 34..39 "
        f"(input only) (got {pin}); using the default 4"
    )


def test_the_server_side_refuses_the_same_pins_with_the_bulbs_own_check() -> None:
    from mimamori.settings import site_errors

    assert site_errors({"lamp_pin": 5, "mains_sense_pin": 34, "uart_rx": 35}) == []
    assert site_errors({"lamp_pin": 9}) == [
        ("'lamp_pin' must be a GPIO number 0..48, not 6..11 (the flash) or 34..39 (input only) "
         "(got 9)")
    ]
    assert len(site_errors({"mains_sense_pin": 8, "uart_tx": 35})) == 2


def _old_micropython() -> str:
    """The oldest MicroPython the firmware supports (v1.24.1, 32-bit unix port) from the shared
    tools (sim.bulb.shared_dir); skipped, saying why, where it cannot run."""
    why = mpy32_missing("32-1.24")
    if why:
        pytest.skip(why)
    return str(shared_dir() / "tools" / "micropython32" / MPY32["32-1.24"])


@pytest.mark.parametrize(
    "torn", ['{"brightness": 0.5, "lamp_pin": 5', '{"brightness": 0.5,', '{"fade_ms": {"a": 1}']
)
def test_truncated_site_file_is_refused_on_the_oldest_supported_micropython(
    fs: Path, torn: str
) -> None:
    # v1.24's json.loads returns what it read of an object cut short: the firmware checks
    exe = _old_micropython()
    write(fs / "site.json", {})
    (fs / "site.json").write_text(torn)
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE))
    r = subprocess.run([exe, "-c", LOAD], cwd=fs, env=env, capture_output=True, text=True,
                       check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    cfg, faults = json.loads(r.stdout.splitlines()[-1])
    assert cfg == DEFAULTS
    assert faults == [[F_CONFIG_FILE, 1]]
    assert "site.json is not valid JSON (cut short)" in r.stdout
