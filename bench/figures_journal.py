# SPDX-License-Identifier: MIT
"""Journal figures (docs/journal.md), each against a baseline measured in the same run.

The event stream is a typical household's day (TYPICAL_DAY: visit lengths in seconds), turned
into records with the firmware's own ALIVE schedule (firmware/alive.py). The baseline store is
what a naive firmware would do: append each record to a file on LittleFS (vfs.VfsLfs2 on the same
esp32.Partition flash shim, same partition size) and flush it. Both run in MicroPython.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import figure

REPO = Path(__file__).resolve().parent.parent
MPY = REPO / ".venv" / "bin" / "micropython"
SECTORS = 64  # tools/partitions.csv: journal, 0x40000
# one day at a toilet or washroom light of a person living alone: ten switch-ons, seconds lit
TYPICAL_DAY = [45, 90, 120, 150, 180, 240, 300, 420, 600, 900]
DAYS = 3  # of events replayed into both stores
FLIP_TRIALS = 200  # per kind: one bit anywhere, two bits in one unit, three bits in one unit
WEAK_TRIALS = 60

SCRIPT = r"""
import sys, json, time, gc
sys.path.insert(0, "{repo}/sim/shims")
import esp32
sys.path.pop(0)
sys.path.insert(0, "{repo}/firmware")
import journal, record, vfs
SIZE = {sectors} * 4096
esp32.sim_setup(flash="{flash}", partitions=[("journal", 1, 0x40, 0, SIZE)], trace=False)
P = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="journal")[0]
VISITS = {visits}  # per visit: up_ms of each ALIVE mark

def wipe():
    for s in range(SIZE // 4096):
        esp32._raw_write(s * 4096, b"\xff" * 4096)

def counted(fn):
    a = esp32.sim_stats()
    events = fn()
    b = esp32.sim_stats()
    return {{"events": events, "programs": b["programs"] - a["programs"],
             "erases": b["erases"] - a["erases"], "bytes": b["prog_bytes"] - a["prog_bytes"]}}

PREFILL = SIZE // 4096 * 169 - 100  # both stores start nearly full: steady-state wear

def run_journal():
    n = 0
    for marks in VISITS:
        j = journal.Journal(P)           # the switch-on: a boot
        j.append(record.K_POWER_ON, 1)
        j.prepare()                      # the alive task's idle work
        for up in marks:
            j.append(record.K_ALIVE)
            j.prepare()
        n += 1 + len(marks)
    return n

def run_lfs():
    buf = bytearray(24)
    n = 0
    boot = 0
    for marks in VISITS:
        boot += 1
        fs = vfs.VfsLfs2(P)
        vfs.mount(fs, "/lfs")
        f = open("/lfs/events.bin", "ab")
        record.pack_into(buf, 0, n + 1, boot, 0, record.K_POWER_ON, 1)
        f.write(buf)
        f.flush()
        n += 1
        for up in marks:
            record.pack_into(buf, 0, n + 1, boot, up, record.K_ALIVE)
            f.write(buf)
            f.flush()
            n += 1
        vfs.umount("/lfs")               # the power cut: the file is never closed
    return n

def mount_ms(reps):
    t = time.ticks_us()
    for _ in range(reps):
        j = journal.Journal(P)
    return time.ticks_diff(time.ticks_us(), t) / reps / 1000, j

def prefill_journal():
    j = journal.Journal(P)
    for i in range(PREFILL):
        j.append(record.K_ALIVE)
        if i % 50 == 0:
            j.prepare()

def prefill_lfs():
    vfs.VfsLfs2.mkfs(P)
    vfs.mount(vfs.VfsLfs2(P), "/lfs")
    with open("/lfs/events.bin", "wb") as f:  # half the partition: LittleFS needs room
        for i in range(SIZE // 2 // 4096):
            f.write(bytes(4096))
    vfs.umount("/lfs")

out = {{}}
wipe()
prefill_journal()
out["journal"] = counted(run_journal)
wipe()
prefill_lfs()
out["lfs"] = counted(run_lfs)
wipe()
out["mount_empty_ms"], _ = mount_ms(20)
j = journal.Journal(P)
for i in range({sectors} * 169 + 200):
    j.append(record.K_ALIVE, 0, 0, i)
    if i % 50 == 0:
        j.prepare()
a = esp32.sim_stats()["reads"]
out["mount_full_ms"], j = mount_ms(20)
out["mount_full_reads"] = (esp32.sim_stats()["reads"] - a) // 20
out["capacity"] = j.stats()["capacity"]
gc.collect()
print(json.dumps(out))
"""


def alive_marks(length_s: float) -> list[int]:
    """up_ms of the ALIVE marks a visit of that length writes (the firmware's schedule)."""
    sys.path.insert(0, str(REPO / "firmware"))
    try:
        import alive
    finally:
        sys.path.pop(0)
    step, until, growth, most = alive.schedule({})
    t, out = step, []
    while t <= length_s * 1000:
        out.append(t)
        t = alive.next_mark_ms(t, step, until, growth, most)
    return out


def _run(args: list[str], timeout: float = 300) -> dict:
    got = subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)
    if got.returncode != 0:
        raise RuntimeError(f"{args[-1]}: {got.stdout[-2000:]}{got.stderr[-2000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def measure() -> dict:
    visits = [alive_marks(s) for s in TYPICAL_DAY] * DAYS
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench_journal.py"
        script.write_text(SCRIPT.format(repo=REPO, flash=Path(tmp) / "flash.bin",
                                        sectors=SECTORS, visits=json.dumps(visits)))
        out = _run([str(MPY), "-X", "heapsize=96wK", str(script)])
        out["sweep"] = _sweep(tmp, "sweep")
        out["flips"] = _sweep(tmp, "flips", FLIP_TRIALS)
        out["weak"] = _sweep(tmp, "weak", WEAK_TRIALS)["weak"]
        out["trusting"] = _sweep(tmp, "weak-trusting", WEAK_TRIALS)["weak"]
    out["day"] = bulb_day()
    return out


def _sweep(tmp: str, mode: str, trials: int = 0) -> dict:
    """tests/journal_sweep.py in MicroPython on a 4-sector ring (the tests run it too)."""
    args = [str(MPY), "-X", "heapsize=4M", str(REPO / "tests/journal_sweep.py"), str(REPO),
            str(Path(tmp) / f"{mode}.bin"), mode, "4"]
    return _run(args + ([str(trials)] if trials else []))


def bulb_day() -> dict:
    """One typical day of a provisioned bulb with no signal at all, the whole firmware in
    MicroPython (virtual time): how many records it writes, by kind."""
    from sim.bulb import Bulb, wifi_net
    from sim.journal_read import records

    site = {"server": "http://192.0.2.1:8080", "device_id": "bench", "transport": "wifi",
            "device_key": "00" * 16, "wifi_ssid": "home", "wifi_password": "pw-12345678"}
    with tempfile.TemporaryDirectory() as tmp:
        b = Bulb(Path(tmp) / "bulb", site=site, wifi=[wifi_net("home", "pw-12345678", up=False)])
        for s in TYPICAL_DAY:
            b.power_on(stop_at_s=s)
        recs = records(b.state_dir / "flash.bin")
    kinds: dict[str, int] = {}
    sys.path.insert(0, str(REPO / "firmware"))
    try:
        import record
    finally:
        sys.path.pop(0)
    for r in recs:
        name = record.KIND_NAMES.get(r[3], str(r[3]))
        kinds[name] = kinds.get(name, 0) + 1
    return {"records": len(recs), "kinds": kinds}


def figures() -> list[dict]:
    m = measure()
    jr, lf = m["journal"], m["lfs"]
    sw = m["sweep"]
    ev = jr["events"]
    # guaranteed to hold with nothing acknowledged: all sectors but the one erased ahead and
    # the one being filled (docs/journal.md)
    held = m["capacity"] - 169
    per_day = m["day"]["records"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(m["day"]["kinds"].items()))
    return [
        figure("journal_programs_per_event", round(jr["programs"] / ev, 4), "programs",
               round(lf["programs"] / lf["events"], 4),
               f"{ev} events ({DAYS} typical days); baseline: LittleFS file append + flush per "
               f"event on the same flash ({lf['bytes'] / lf['events']:.0f} vs "
               f"{jr['bytes'] / ev:.0f} bytes programmed per event)"),
        figure("journal_erases_per_1000_events", round(1000 * jr["erases"] / ev, 3), "erases",
               round(1000 * lf["erases"] / lf["events"], 3),
               "4 KiB sector erases, at steady state (journal full, LittleFS half full at the "
               "start); "
               "baseline: LittleFS file append + flush per event"),
        figure("journal_mount_ms_full", round(m["mount_full_ms"], 3), "ms",
               round(m["mount_empty_ms"], 3),
               f"host MicroPython; full {SECTORS}-sector journal: {m['mount_full_reads']} flash "
               f"reads (headers, then one sector); baseline: empty journal"),
        figure("journal_powerloss_cuts", sw["cuts"] - sw.get("failed_cuts", 0), "cuts", None,
               f"every program ({sw['programs']}) and erase ({sw['erases']}) of a workload "
               f"wrapping a 4-sector ring, not done and half done, {sw.get('bit_tears', 0)} "
               f"programs torn at random bits, erases also left as garbage, with only their end "
               f"erased, or reading erased with weak cells; lost {sw['lost']}, corrupt "
               f"{sw['corrupt']}, reused {sw['reused']}, failed checks {sw.get('bad', 0)}; "
               f"{sw['gone']} records the simulated server never got, unreported "
               f"{sw['unreported']}, over-counted {sw['overcounted']}"),
        *fault_figures(m),
        figure("journal_capacity_days", round(held / per_day, 1), "days", 1.0,
               f"{held} records held; a whole bulb, provisioned, no signal, {len(TYPICAL_DAY)} "
               f"switch-ons a day writes {per_day} records ({kinds}); baseline: the 24 h "
               f"no-activity alert horizon"),
    ]


def fault_figures(m: dict) -> list[dict]:
    """Faults beyond power cuts: bits flipped at rest, erases cut so they read done."""
    fl, weak, trusting = m["flips"], m["weak"], m["trusting"]
    one, more = fl["flips1"], [fl["flips2"], fl["flips3"]]
    trials = one["trials"] + sum(x["trials"] for x in more)
    beyond = one["lost_beyond"] + one["unit_lost"] + sum(x["lost_beyond"] for x in more)
    reused = one["reused"] + sum(x["reused"] for x in more)
    unreported = one["unreported"] + sum(x["unreported"] for x in more)
    over = one["overcounted"] + sum(x["overcounted"] for x in more)
    return [
        figure("journal_bitflip_trials", trials, "trials", None,
               f"lost {beyond} beyond the flipped record, reused {reused}, unreported "
               f"{unreported}; {one['trials']} single bits flipped at rest anywhere in a 4-sector "
               f"journal (1 in 4 in the newest header): {one['unit_lost']} records lost, all "
               f"corrected; {more[0]['trials']} two-bit and {more[1]['trials']} three-bit flips "
               f"in one header, slot or erase mark: {sum(x['unit_lost'] for x in more)} "
               f"damaged records lost, each counted once in a K_LOSS record if unsent "
               f"(over-counted {over}), "
               f"{fl.get('corrupt', 0)} returned changed"),
        figure("journal_weak_erase_trials", weak["trials"], "trials", None,
               f"lost {weak['lost']}, reused {weak['reused']}, unreported {weak['unreported']}; "
               f"the erase of the sector ahead cut so it reads erased with 1-4 weak cells, then "
               f"the bulb goes on past a ring: {weak['decayed']} weak cells decayed under "
               f"written data (every such sector erased again: no erase mark); a journal that "
               f"trusts a sector reading blank, same trials: {trusting['decayed']} decayed "
               f"under data, lost {trusting['lost']} (single-bit correction and read-back saved "
               f"them)"),
    ]


if __name__ == "__main__":
    for f in figures():
        print(f)
