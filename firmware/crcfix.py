# SPDX-License-Identifier: MIT
# crcfix.py: single-bit correction for the journal's CRC-32 units (a 24-byte record, a 32-byte
# sector header, an 8-byte erase mark): data, then binascii.crc32 of it, little-endian.
# CRC-32 has Hamming distance 6 up to 268 bits, so in a unit of at most 32 bytes every single-
# bit error has its own syndrome and no error of 2 to 4 bits shares one (docs/journal.md,
# "Single-bit correction"; tests/test_crcfix.py checks it exhaustively).
# It must never change a unit unless exactly one bit position explains the CRC mismatch, and
# never allocate on the path of a unit that is intact.
import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython: host tools and tests use the same code

    def const(x):
        return x


MAX_DATA = const(28)  # the longest data part (the sector header); table: 224 words, built once
_table = None


def syndromes():
    """The syndrome of each data bit, indexed 8 * (bytes from the end of the data) + bit."""
    global _table
    if _table is None:
        from array import array

        t = array("I", bytes(4 * 8 * MAX_DATA))
        z = bytearray(MAX_DATA)
        base = binascii.crc32(z)
        for r in range(MAX_DATA):
            i = MAX_DATA - 1 - r
            for b in range(8):
                z[i] = 1 << b
                t[8 * r + b] = (binascii.crc32(z) ^ base) & 0xFFFFFFFF
            z[i] = 0
        _table = t
    return _table


def check(buf, off, n, seed=0):
    """0 when the n-byte unit at buf[off:] is intact; else its syndrome (computed ^ stored)."""
    d = n - 4
    (stored,) = struct.unpack_from("<I", buf, off + d)
    got = binascii.crc32(memoryview(buf)[off : off + d], seed) & 0xFFFFFFFF
    return got ^ stored


def fix(buf, off, n, seed=0):
    """Check the n-byte unit at buf[off:] (n <= MAX_DATA + 4): 0 when it is intact, 1 when
    one flipped bit was found and flipped back in buf, -1 when no single bit explains it."""
    syn = check(buf, off, n, seed)
    if syn == 0:
        return 0
    d = n - 4
    if syn & (syn - 1) == 0:  # one bit of the stored CRC itself
        k = 0
        while syn >> k != 1:
            k += 1
        buf[off + d + (k >> 3)] ^= 1 << (k & 7)
        return 1
    t = syndromes()
    for j in range(8 * d):
        if t[j] == syn:
            buf[off + d - 1 - (j >> 3)] ^= 1 << (j & 7)
            return 1
    return -1
