# SPDX-License-Identifier: MIT
"""The lamp (firmware/lamp.py) in MicroPython with the machine shim, judged by the PWM duty the
hardware saw: take-over at full, gamma-corrected fades, and status patterns that always end
with the lamp back at its level, never dark."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.bulb import read_trace, run_snippet

SETTINGS = {"gamma": 2.8, "fade_ms": 400, "brightness": 0.5, "lamp_pin": 4, "pwm_freq": 20000}


FLOOR = 1 << 5  # one step of the LEDC's 11 bits at 20 kHz: raw duty 1


def duty(level: float, gamma: float = 2.8) -> int:
    return 65535 if level >= 1 else max(FLOOR, int(level**gamma * 65535 + 0.5))


def run_lamp(tmp_path: Path, body: str, settings: dict | None = None) -> tuple[str, list[int]]:
    """Run `body` (statements inside a coroutine, using `l`: a configured Lamp, already faded
    to its level) in MicroPython; (stdout, every duty the lamp showed after that fade)."""
    cfg = dict(SETTINGS, **(settings or {}))
    code = (
        "import asyncio, lamp\n"
        "l = lamp.Lamp()\n"
        f"l.configure({cfg!r})\n"
        "async def go():\n"
        "    await l.fade_to()\n"
        + "".join(f"    {line}\n" for line in body.strip().splitlines())
        + "asyncio.run(go())\n"
    )
    state = tmp_path / "lamp"
    out = run_snippet(code, state)
    seen = [e["duty"] for e in read_trace(state / "trace.jsonl") if e["ev"] == "lamp"]
    start = seen.index(duty(cfg["brightness"], cfg["gamma"]))  # the first fade's end
    return out, seen[start + 1 :]


def lamp_duties(tmp_path: Path, code: str) -> list[int]:
    state = tmp_path / "raw"
    run_snippet(code, state)
    return [e["duty"] for e in read_trace(state / "trace.jsonl") if e["ev"] == "lamp"]


def test_takeover_writes_full_duty_and_nothing_else(tmp_path: Path) -> None:
    seen = lamp_duties(tmp_path, f"import lamp\nl = lamp.Lamp()\nl.configure({SETTINGS!r})\n")
    assert seen == [65535, 65535]  # the pull-up at power-on, then the take-over


@pytest.mark.parametrize(
    ("level", "gamma"), [(0.5, 2.8), (0.5, 1.0), (0.05, 2.8), (0.8, 2.2), (1.0, 2.8)]
)
def test_fade_goes_down_to_the_gamma_corrected_level(
    tmp_path: Path, level: float, gamma: float
) -> None:
    settings = dict(SETTINGS, brightness=level, gamma=gamma)
    seen = lamp_duties(
        tmp_path,
        f"import asyncio, lamp\nl = lamp.Lamp()\nl.configure({settings!r})\n"
        "asyncio.run(l.fade_to())\n",
    )
    assert seen[-1] == duty(level, gamma)
    assert seen == sorted(seen, reverse=True)
    if level < 1:
        assert len(seen) >= 400 // 20  # a fade in steps, not a jump


def test_brighter_setting_fades_up(tmp_path: Path) -> None:
    _, seen = run_lamp(tmp_path, "await l.fade_to(0.8)")
    assert seen[-1] == duty(0.8)
    assert seen == sorted(seen) and len(seen) > 5


LOW = duty(0.5 * 0.15)


@pytest.mark.parametrize(
    ("call", "dips"),
    [
        ("l.result(True)", 2),
        ("l.result(False)", 6),
        ("l.blink(10, 150, 150)", 10),
        ("l.signal(-70)", 3),
        ("l.signal(-55)", 4),
        ("l.signal(-82)", 2),
        ("l.signal(-120)", 1),
        ("l.signal(-200)", 1),  # no figure: one long dip
        ("l.blink(4)", 4),
    ],
)
def test_status_pattern_ends_at_the_level_and_never_goes_dark(
    tmp_path: Path, call: str, dips: int
) -> None:
    _, seen = run_lamp(tmp_path, f"await {call}")
    assert seen.count(LOW) == dips
    assert min(seen) == LOW > 0
    assert seen[-1] == duty(0.5)


def test_setup_mode_breathes_until_cancelled_then_returns_to_the_level(tmp_path: Path) -> None:
    body = """
t = asyncio.create_task(l.setup_mode())
await asyncio.sleep_ms(4500)
t.cancel()
await asyncio.sleep_ms(100)
"""
    _, seen = run_lamp(tmp_path, body)
    assert seen.count(LOW) == 2  # two slow breaths in 4.5 s
    assert min(seen) > 0
    assert seen[-1] == duty(0.5)


@pytest.mark.parametrize("after_ms", [50, 350, 1000])
def test_pattern_cancelled_half_way_puts_the_lamp_back_at_its_level(
    tmp_path: Path, after_ms: int
) -> None:
    body = f"""
t = asyncio.create_task(l.blink(10, 150, 150))
await asyncio.sleep_ms({after_ms})
t.cancel()
await asyncio.sleep_ms(1000)
"""
    _, seen = run_lamp(tmp_path, body)
    assert LOW in seen
    assert seen[-1] == duty(0.5)


def test_patterns_asked_at_once_run_one_after_the_other(tmp_path: Path) -> None:
    body = """
await asyncio.gather(l.blink(2), l.blink(3))
"""
    _, seen = run_lamp(tmp_path, body)
    # no interleaving: every dip is followed by the level before the next dip
    assert seen == [LOW, duty(0.5)] * 5


def test_signal_dips_come_from_the_one_scale(tmp_path: Path) -> None:
    state = tmp_path / "bars"
    out = run_snippet(
        "import quality\nprint([quality.dips(d) for d in (-200, 0, -120, -86, -85, -82, -76,"
        " -75, -70, -67, -40)])",
        state,
    )
    assert out.strip() == "[0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]"


def test_new_pwm_frequency_keeps_the_duty(tmp_path: Path) -> None:
    state = tmp_path / "freq"
    settings = dict(SETTINGS, pwm_freq=25000, brightness=1.0)
    run_snippet(f"import lamp\nl = lamp.Lamp()\nl.configure({settings!r})\n", state)
    lamp = [e for e in read_trace(state / "trace.jsonl") if e["ev"] == "lamp"]
    assert lamp[-1]["freq"] == 25000
    assert {e["duty"] for e in lamp} == {65535}


@pytest.mark.parametrize("level", [0.05, 0.1, 0.2, 0.3, 0.4, 1.0])
def test_dim_levels_and_patterns_never_reach_raw_duty_zero(tmp_path: Path, level: float) -> None:
    # at 20 kHz the LEDC keeps 11 bits (duty_u16 >> 5): a lit lamp must never be at raw 0
    body = """
await l.blink(2)
await l.result(False)
await l.signal(-120)
t = asyncio.create_task(l.setup_mode())
await asyncio.sleep_ms(2500)
t.cancel()
await asyncio.sleep_ms(100)
"""
    state = tmp_path / "dim"
    cfg = dict(SETTINGS, brightness=level)
    code = (
        "import asyncio, lamp\nl = lamp.Lamp()\n"
        f"l.configure({cfg!r})\n"
        "async def go():\n    await l.fade_to()\n"
        + "".join(f"    {line}\n" for line in body.strip().splitlines())
        + "asyncio.run(go())\n"
    )
    run_snippet(code, state)
    lamp = [e for e in read_trace(state / "trace.jsonl") if e["ev"] == "lamp"]
    assert len(lamp) > 10 and all(e["bits"] == 11 for e in lamp[1:])
    assert min(e["raw"] for e in lamp[1:]) >= 1
    assert lamp[-1]["raw"] == duty(level) >> 5 or level == 1.0


def test_pwm_shim_quantizes_like_the_ledc(tmp_path: Path) -> None:
    state = tmp_path / "ledc"
    out = run_snippet(
        "from machine import PWM, Pin\n"
        "p = PWM(Pin(4), freq=20000, duty_u16=31)\n"
        "print(p.duty_u16())\n"
        "p.duty_u16(1000)\nprint(p.duty_u16())\n"
        "p.freq(5000)\nprint(p.duty_u16())\n"
        "p.duty_u16(65535)\nprint(p.duty_u16())\n",
        state,
    )
    assert out.split() == ["0", str(1000 >> 5 << 5), str(1000 >> 2 << 2), "65535"]
    lamp = [e for e in read_trace(state / "trace.jsonl") if e["ev"] == "lamp"][1:]
    # 80 MHz / 20 kHz = 4000: 11 bits; / 5 kHz = 16000: 13 bits; 65535 is fully on (2^bits)
    assert [(e["raw"], e["bits"]) for e in lamp] == [(0, 11), (1000 >> 5, 11), (1000 >> 3, 13), (8192, 13)]
