# SPDX-License-Identifier: MIT
"""Single-bit correction with the journal's CRC-32 (firmware/crcfix.py), measured: it corrects
every single-bit error in a 8-, 24- or 32-byte unit (erase mark, record, sector header) and
never takes an error of 2 or 3 bits (in a 24-byte record: up to 4) for one. The proof is
exhaustive over the syndromes (the CRC is linear); fix() itself is run on every single-bit
error and on samples of 2- and 3-bit errors, in CPython and in MicroPython."""

from __future__ import annotations

import binascii
import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from sim.bulb import micropython_bin

REPO = Path(__file__).resolve().parent.parent
MPY = Path(micropython_bin())
sys.path.insert(0, str(REPO / "firmware"))
try:
    import crcfix
finally:
    sys.path.pop(0)

UNITS = (8, 24, 32)  # erase mark, record, sector header


def unit(n: int, rng: random.Random) -> bytearray:
    b = bytearray(rng.randbytes(n - 4))
    return b + binascii.crc32(b).to_bytes(4, "little")


def syndromes(n: int) -> list[int]:
    """The syndrome of a flip of each bit of an n-byte unit (data bits, then CRC bits)."""
    t = crcfix.syndromes()
    d = n - 4
    data = [t[8 * (d - 1 - i) + b] for i in range(d) for b in range(8)]
    return data + [1 << k for k in range(32)]


@pytest.mark.parametrize("n", UNITS)
def test_no_error_of_up_to_three_bits_looks_like_a_single_bit_one(n):
    s = syndromes(n)
    single = set(s)
    assert len(single) == 8 * n and 0 not in single  # each bit has its own syndrome
    pairs = set()
    for a, b in itertools.combinations(s, 2):
        x = a ^ b
        assert x not in single and x != 0  # 2 bits: detected, never "corrected"
        assert x not in pairs  # 2 bits + 1 correction never reach another codeword (3 bits)
        pairs.add(x)
    if n <= 24:  # 3 bits + 1 correction: no weight-4 codeword (Hamming distance 6)
        for a, b, c in itertools.combinations(s, 3):
            assert a ^ b ^ c not in pairs


@pytest.mark.parametrize("n", UNITS)
def test_fix_corrects_every_single_bit_and_refuses_samples_of_two_and_three(n):
    rng = random.Random(n)
    good = unit(n, rng)
    for bit in range(8 * n):
        b = bytearray(good)
        b[bit // 8] ^= 1 << (bit % 8)
        assert crcfix.fix(b, 0, n) == 1 and b == good, bit
    for k in (2, 3):
        for _ in range(2000):
            b = bytearray(good)
            for bit in rng.sample(range(8 * n), k):
                b[bit // 8] ^= 1 << (bit % 8)
            before = bytes(b)
            assert crcfix.fix(b, 0, n) == -1 and bytes(b) == before
    assert crcfix.fix(bytearray(good), 0, n) == 0


def test_an_erased_or_voided_slot_is_never_one_bit_from_a_record():
    # the journal reads a slot with at most 3 zero (or one) bits as erased (or voided) before
    # it tries a correction; an all-0xFF or all-0 slot is 3 or more bits from any record
    s = syndromes(24)
    near = set(s) | {a ^ b for a, b in itertools.combinations(s, 2)}
    for fill in (b"\xff" * 24, bytes(24)):
        syn = crcfix.check(bytearray(fill), 0, 24)
        assert syn != 0 and syn not in near


def test_the_same_code_corrects_the_same_way_in_micropython(tmp_path):
    script = tmp_path / "fix.py"
    script.write_text(f"""
import sys, json, binascii
sys.path.insert(0, "{REPO}/firmware")
import crcfix
good = bytearray(range(20))
good += binascii.crc32(good).to_bytes(4, "little")
fixed = 0
for bit in range(192):
    b = bytearray(good)
    b[bit // 8] ^= 1 << (bit % 8)
    fixed += crcfix.fix(b, 0, 24) == 1 and b == good
refused = 0
for i in range(0, 192, 7):
    for j in range(i + 1, 192, 5):
        b = bytearray(good)
        b[i // 8] ^= 1 << (i % 8)
        b[j // 8] ^= 1 << (j % 8)
        refused += crcfix.fix(b, 0, 24) == -1
print(json.dumps({{"fixed": fixed, "refused": refused, "table": list(crcfix.syndromes())}}))
""")
    out = subprocess.run([str(MPY), "-X", "heapsize=96wK", str(script)], check=True,
                         capture_output=True, text=True, timeout=120)
    got = json.loads(out.stdout)
    assert got["fixed"] == 192
    pairs = sum(1 for i in range(0, 192, 7) for j in range(i + 1, 192, 5))
    assert got["refused"] == pairs
    assert got["table"] == list(crcfix.syndromes())
