# Stand-in for main.py in the uplink tests (runs in MicroPython with the shims): the calls
# main.py makes around the uplink -- settings, journal, power-on record, alive marks on the
# journal's schedule (every 10 s for 2 min, then every +9 %), uplink.run() -- and nothing else.
import asyncio

import config
import journal
import machine
import record
import uplink

cfg, faults = config.load()
j = journal.open()
j.append(record.K_POWER_ON, machine.reset_cause(), 0, 1)
for code, aux in faults:
    j.append(record.K_FAULT, code, aux, 0)


async def alive():
    import time

    t0 = time.ticks_ms()
    u = 0
    while True:
        u = u + 10000 if u < 120000 else u * 109 // 100
        await asyncio.sleep_ms(max(0, u - time.ticks_diff(time.ticks_ms(), t0)))
        j.append(record.K_ALIVE)
        j.prepare()


async def main():
    asyncio.create_task(alive())
    await uplink.Uplink(cfg, j, None).run()


asyncio.run(main())
