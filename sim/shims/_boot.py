# SPDX-License-Identifier: MIT
# The simulated bulb's power-on (docs/simulation.md): what the ESP32 does before and around
# main.py. Traces the power-on and the lamp at full (the LED driver's pull-up), then runs the
# firmware's boot.py and main.py as __main__. When main.py ends, the bulb sits at the REPL
# as a real one would: lit as it was, until the watchdog, stop_at_ms or the runner ends it.
# It must never run firmware code before the power-on and the lamp's t=0 level are traced.
import sys

import _sim

# both at the very instant of power-on (in scaled time even these microseconds count)
_sim.trace("power_on", cause=_sim.cause, n=_sim.boot_n, t=_sim.t0_ms)
if _sim.cfg.get("lamp_pin") is not None:
    _sim.trace("lamp", pin=_sim.cfg["lamp_pin"], duty=65535, freq=0, t=_sim.t0_ms)
# asyncio timers on the bulb clock: the C _asyncio stamps tasks with the host's own ticks
import _asyncio_py

sys.modules["_asyncio"] = _asyncio_py
del _asyncio_py


def _run(path):
    try:
        f = open(path)  # noqa: SIM115 - only a missing file means "no main.py"
    except OSError:
        return False
    code = compile(f.read(), path, "exec")  # the source is freed before the firmware runs
    f.close()
    exec(code, {"__name__": "__main__", "__file__": path})  # noqa: S102 - as the ESP32 runs it
    return True


# Every shim in the heap before the firmware runs: the ESP32 has these modules in ROM, so none
# of them may compile or allocate in the middle of the firmware's heap later, where a lazy
# import would fragment it in ways a bulb never sees (and fail a 1.3 KB block at random).
import gc

for _m in ("esp32", "machine", "network", "os", "select", "socket", "ssl", "time"):
    __import__(_m)
del _m
gc.collect()
if _sim.heap_probe:  # the count starts here (bench/figures_heap32.py)
    _sim.shim_base = gc.mem_alloc()
if _sim.cfg.get("image"):  # flash.bin from `make image`: mount vfs as the ESP32 _boot.py does
    import os

    import esp32
    import vfs

    vfs.mount(esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")[0], "/flash")
    os.chdir("/flash")  # the ESP32's cwd is the root of this filesystem
    _i = sys.path.index(".frozen") if ".frozen" in sys.path else len(sys.path)
    sys.path.insert(_i, "/flash")  # after the shims, like the ESP32's "" (cwd) entry
    del esp32, os, vfs, _i
_fw = _sim.cfg.get("firmware", ".")
_end = 0
try:
    _run(_fw + "/boot.py")
    if _run(_sim.cfg.get("main") or _fw + "/main.py"):
        _sim.trace("exit", how="return")
    else:
        _sim.trace("exit", how="no main.py")
except SystemExit as e:
    _end = e.value if isinstance(e.value, int) else 1
    _sim.trace("exit", how="sys.exit", code=_end)
except BaseException as e:  # noqa: B036, BLE001 - the ESP32 prints it and drops to the REPL
    sys.print_exception(e)
    _sim.trace("exit", how="exception", msg=repr(e))
    _end = 1
if _sim.cfg.get("exit_at_end"):  # unit-test snippets: end the process, with a status
    sys.exit(_end)
_sim.wait(-1)  # the REPL: nothing runs, the lamp stays as it was
