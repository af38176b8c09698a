# Runs inside MicroPython (not CPython): the journal's power-loss sweep, LittleFS style.
# A workload of appends, acks, erase-ahead and boots wraps a small ring several times; before
# EVERY flash program and erase the harness snapshots the partition, applies the cut (the op not
# done, half done, or for an erase: left as garbage or with only its end erased), remounts, checks,
# restores the snapshot and lets the op go on. A second mode replays the workload with a real
# esp32.PowerCut raised at chosen ops. Prints one JSON line with the counts.
# usage: micropython journal_sweep.py <repo> <flash file> <mode: sweep|raise|flips> [sectors]
import json
import sys

REPO, FLASH, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
NSECT = int(sys.argv[4]) if len(sys.argv) > 4 else 4
sys.path.insert(0, REPO + "/sim/shims")
import esp32

sys.path.pop(0)
sys.path.insert(0, REPO + "/firmware")
import journal
import record

SIZE = NSECT * 4096
SLOTS = 169
esp32.sim_setup(flash=FLASH, partitions=[("jtest", 1, 0x40, 0, SIZE)], trace=False)
P = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="jtest")[0]
esp32._raw_write(0, b"\xff" * SIZE)


class Model:
    def __init__(self):
        self.done = {}  # seq -> record bytes, for every append whose call returned
        self.pending = {}  # records programmed by the call in progress
        self.last = 0  # highest returned seq
        self.max_boot = 0  # highest boot of any append that returned
        self.try_boot = 0  # boot of the record being programmed when the power went
        self.acked = 0  # acked position after the last ack() that returned
        self.ack_try = 0

    def on_program(self, addr, data):
        off = addr % 4096
        if off == 0:  # header + first record
            off, data = 32, memoryview(data)[32:]
        for k in range(0, len(data), 24):
            r = bytes(data[k : k + 24])
            seq, boot = record.seq_of(r), record.unpack(r)[1]
            self.pending[seq] = r
            self.try_boot = boot

    def returned(self):
        for s, r in self.pending.items():
            self.done[s] = r
            self.last = max(self.last, s)
            self.max_boot = max(self.max_boot, record.unpack(r)[1])
        self.pending = {}
        self.acked = max(self.acked, self.ack_try)
        if len(self.done) > NSECT * SLOTS + 200:  # forget what the ring cannot hold any more
            for s in [s for s in self.done if s < self.last - NSECT * SLOTS]:
                del self.done[s]


M = Model()
BUF = bytearray(24 * 40)
stats = {"cuts": 0, "programs": 0, "erases": 0, "lost": 0, "corrupt": 0, "skipped": 0,
         "mounts": 0}
fails = []


def fail(msg):
    stats["bad"] = stats.get("bad", 0) + 1
    if len(fails) < 20:
        fails.append(msg)


def read_all(j):
    out = []
    after = 0
    first = None
    while True:
        n, frm = j.read(BUF, 40, after, True)
        if first is None:
            first = frm
        for i in range(n):
            r = bytes(BUF[24 * i : 24 * i + 24])
            out.append(r)
            after = record.seq_of(r)
        if n < 40:
            return out, first


def check(where, torn=False):
    """Remount after a cut and check everything the journal promises."""
    stats["mounts"] += 1
    bad = stats.get("bad", 0)
    check_one(where, torn)
    if stats.get("bad", 0) > bad:
        stats["failed_cuts"] = stats.get("failed_cuts", 0) + 1


def check_one(where, torn):
    j = journal.Journal(P)
    recs, oldest = read_all(j)
    prev = 0
    seen = {}
    for r in recs:
        s = record.seq_of(r)
        if s <= prev:
            fail(f"{where}: seq {s} after {prev}")
        prev = s
        seen[s] = r
        if M.done.get(s) != r and M.pending.get(s) != r:
            stats["corrupt"] += 1
            fail(f"{where}: record {s} was never appended as read: {r.hex()}")
    for s, r in M.done.items():
        if s >= oldest and seen.get(s) != r:
            stats["lost"] += 1
            fail(f"{where}: returned append {s} missing (oldest {oldest})")
    if oldest > max(1, M.last - (NSECT - 2) * SLOTS + 2):
        fail(f"{where}: oldest kept {oldest}, last {M.last}: dropped more than needed")
    # a torn program left evidence: its boot is used up too; a program that never started did not
    used = max(M.max_boot, M.try_boot if torn else 0, max([record.unpack(r)[1] for r in recs] + [0]))
    if j.boot <= used:
        fail(f"{where}: boot {j.boot} repeats (max used {used})")
    if not (M.acked <= j.acked <= max(M.acked, M.ack_try)):
        fail(f"{where}: acked {j.acked}, expected {M.acked}..{M.ack_try}")
    stats["skipped"] += j.skipped
    # appends work again, and survive the next mount
    a = j.append(record.K_POWER_ON, 1)
    j.prepare()
    b = j.append(record.K_ALIVE)
    if not (a > prev and b > a):
        fail(f"{where}: new seqs {a}, {b} not after {prev}")
    j2 = journal.Journal(P)
    n, _ = j2.read(BUF, 40, prev, True)
    got = [record.unpack(BUF, 24 * i) for i in range(n)]
    if [g[0] for g in got if g[3] in (record.K_POWER_ON, record.K_ALIVE)] != [a, b]:
        fail(f"{where}: appends after the cut not kept: {got!r}")
    if j2.boot <= j.boot:
        fail(f"{where}: boot after remount {j2.boot} not above {j.boot}")


SAVE = bytearray(SIZE)
inside = [False]


def hook(n, op, addr, data):
    if inside[0]:
        return
    inside[0] = True
    try:
        if op == "program":
            M.on_program(addr, data)
        if MODE == "sweep":
            esp32._raw_read(0, SAVE)
            variants = (("none", False, "old"), ("half", True, "old"))
            if op == "erase":
                variants += (("garbage", False, "garbage"), ("tail", False, "tail"))
                stats["erases"] += 1
            else:
                stats["programs"] += 1
                if n % 8 == 0:  # and on every 8th op: random bits of the program programmed
                    variants += (("bits", False, "bits"),)
                    stats["bit_tears"] = stats.get("bit_tears", 0) + 1
            for name, half, rest in variants:
                if name != "none":
                    esp32.apply_partial(op, addr, data, half, rest)
                check(f"op {n} {op} {name}",
                      torn=(op == "program" and (half or rest == "bits")))
                stats["cuts"] += 1
                esp32._raw_write(0, SAVE)
    finally:
        inside[0] = False


class Rng:
    def __init__(self, seed):
        self.x = seed

    def next(self, m):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % m


def workload(wraps):
    """Appends, acks, erase-ahead and boots until the ring has wrapped `wraps` times."""
    rng = Rng(7)
    j = journal.Journal(P)
    M.returned()
    while M.last < wraps * NSECT * SLOTS:
        c = rng.next(100)
        if c < 4:  # a boot: the wall switch
            j = journal.Journal(P)
            j.append(record.K_POWER_ON, 1, 0, 1)
        elif c < 12 and M.last and M.last < 1.2 * NSECT * SLOTS:
            # uplink: the server has up to somewhere between acked and last; sometimes nothing
            # (long stretches without signal let the ring overwrite unsent records)
            if rng.next(3):
                M.ack_try = min(M.last, j.acked + rng.next(120))
                j.ack(M.ack_try)
        elif c < 30:
            j.prepare()
        else:
            j.append(record.K_ALIVE, 0, rng.next(200) - 100, rng.next(1 << 30))
        M.returned()
        if j.lost:
            stats["loss_records"] = stats.get("loss_records", 0) + 1
            stats["lost_unsent"] = stats.get("lost_unsent", 0) + j.lost
            j.lost = 0
    return j


esp32.sim_set_hook(hook)
if MODE == "sweep":
    workload(2.5)
elif MODE == "raise":
    # replay from a blank partition with a real PowerCut at every `step`-th op
    total = esp32.sim_stats()["ops"]
    step = int(sys.argv[5]) if len(sys.argv) > 5 else 37
    n = 1
    while True:
        esp32._raw_write(0, b"\xff" * SIZE)
        M.__init__()
        esp32.sim_setup(flash=FLASH, partitions=[("jtest", 1, 0x40, 0, SIZE)], trace=False,
                        cut_at=n, half=(n % 2 == 0))
        esp32.sim_set_hook(hook)
        try:
            workload(1.3)
            break  # the workload finished before op n: every cut point tried
        except esp32.PowerCut:
            pass
        inside[0] = True
        check(f"raise at op {n}", torn=(n % 2 == 0))
        inside[0] = False
        stats["cuts"] += 1
        n += step
elif MODE == "flips":
    j = workload(0.8)
    recs, _ = read_all(j)
    rng = Rng(99)
    flipped = set()
    for k in range(60):  # flip one bit in 60 different stored records
        while True:
            s = (rng.next(NSECT)) * 4096
            slot = rng.next(SLOTS)
            addr = s + 32 + slot * 24
            one = bytearray(24)
            esp32._raw_read(addr, one)
            if record.seq_of(one) != 0xFFFFFFFF and addr not in flipped:
                break
        bit = rng.next(24 * 8)
        one[bit // 8] ^= 1 << (bit % 8)
        esp32._raw_write(addr, one)
        flipped.add(addr)
    j = journal.Journal(P)
    got, _ = read_all(j)
    for r in got:
        if M.done.get(record.seq_of(r)) != r:
            stats["corrupt"] += 1
            fail(f"flipped record returned: {r.hex()}")
    stats["flipped"] = len(flipped)
    stats["returned"] = len(got)
    stats["kept_before"] = len(recs)
    stats["skipped"] = j.skipped
esp32.sim_set_hook(None)
stats["wraps"] = M.last / (NSECT * SLOTS)
stats["fails"] = fails
stats["ops"] = esp32.sim_stats()["ops"]
print(json.dumps(stats))
