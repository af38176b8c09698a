# SPDX-License-Identifier: MIT
# os shim: the built-in os, unchanged, except urandom() when sim.json has a "seed": then it is a
# seeded xorshift stream (different on every boot of the power-on, the same on every run), so a
# virtual-time run with random jitter can be repeated exactly. It must never change anything
# else the firmware sees of os.
import sys

_p = sys.path[:]
sys.path[:] = []
try:
    import os as _bos
finally:
    sys.path[:] = _p
del _p

_g = globals()
for _k in dir(_bos):
    if not _k.startswith("__"):
        _g[_k] = getattr(_bos, _k)
del _g, _k

_seed = None
if _bos.getenv("MIMAMORI_SIM"):
    import _sim

    if _sim.cfg.get("seed") is not None:
        _x = [(_sim.cfg["seed"] * 2654435761 ^ _sim.boot_n * 40503 ^ _sim.t0_ms) & 0xFFFFFFFF or 1]

        def urandom(n):
            out = bytearray(n)
            x = _x[0]
            for i in range(n):
                x ^= (x << 13) & 0xFFFFFFFF
                x ^= x >> 17
                x ^= (x << 5) & 0xFFFFFFFF
                out[i] = x & 0xFF
            _x[0] = x
            return bytes(out)
