# SPDX-License-Identifier: MIT
# Runs inside MicroPython (not CPython): the journal's fault sweep, LittleFS style.
# A workload of appends, uploads (read_unsent, then ack), erase-ahead and boots wraps a small ring
# several times; a simulated server keeps what each upload delivered. Modes:
#   sweep  before EVERY flash program and erase: snapshot, apply the cut (not done, half done,
#          random bits of a program, an erase left as garbage, with only its end erased, or
#          looking finished but with weak cells), remount, check, append, remount, check,
#          restore the snapshot and let the op go on;
#   raise  replay with a real esp32.PowerCut at every step-th op, check, then run the workload
#          on to its end and check that every record the server never got is counted as lost;
#   flips  trials of bits flipped at rest (one bit; or two or three in one unit);
#   weak   trials of an erase cut so that it reads finished but leaves weak cells.
# Prints one JSON line with the counts.
# usage: micropython journal_sweep.py <repo> <flash file> <mode> [sectors] [step | trials]
import json
import sys

REPO, FLASH, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
NSECT = int(sys.argv[4]) if len(sys.argv) > 4 else 4
ARG = int(sys.argv[5]) if len(sys.argv) > 5 else 0
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
        self.where = {}  # seq -> sector it was programmed into
        self.pending = {}  # records programmed by the call in progress
        self.last = 0  # highest returned seq
        self.max_boot = 0  # highest boot of any append that returned
        self.try_boot = 0  # boot of the record being programmed when the power went
        self.acked = 0  # acked position after the last ack() that returned
        self.ack_try = 0
        self.server = set()  # seqs the simulated server stored
        self.sent = set()  # seqs of the upload in progress
        self.opens = 0  # sectors opened by appends that returned
        self.opening = 0
        self.epoch = None  # the journal's epoch (a new epoch is a new journal: boots restart)

    def on_program(self, addr, data):
        off = addr % 4096
        if off == 0:  # header + first record
            off, data = 32, memoryview(data)[32:]
            self.opening = 1
        if len(data) != 24 or off >= 4088:
            return  # an erase mark
        r = bytes(data)
        if r == bytes(24):
            return  # a damaged slot voided
        u = record.unpack(r)
        if u is None:
            return
        self.try_boot = u[1]
        if u[3] != record.K_ACK:
            self.pending[u[0]] = r
            self.where[u[0]] = addr // 4096

    def returned(self):
        for s, r in self.pending.items():
            self.done[s] = r
            self.last = max(self.last, s)
            self.max_boot = max(self.max_boot, record.unpack(r)[1])
        self.pending = {}
        self.opens += self.opening
        self.opening = 0
        if self.ack_try > self.acked:  # the ack() returned: the server's answer is kept
            self.acked = self.ack_try
            self.server |= self.sent
        self.sent = set()
        if len(self.done) > NSECT * SLOTS + 200:  # forget what the ring cannot hold any more
            for s in [s for s in self.done if s < self.last - NSECT * SLOTS]:
                del self.done[s]
                self.where.pop(s, None)


M = Model()
BUF = bytearray(24 * 40)
ALL = bytearray(24 * NSECT * SLOTS)
stats = {"cuts": 0, "programs": 0, "erases": 0, "lost": 0, "corrupt": 0, "skipped": 0,
         "mounts": 0, "unreported": 0, "overcounted": 0, "reused": 0}
fails = []


def fail(msg):
    stats["bad"] = stats.get("bad", 0) + 1
    if len(fails) < 20:
        fails.append(msg)


def read_all(j, after=0):
    out = []
    first = None
    while True:
        n, frm = j.read(BUF, 40, after)
        if first is None:
            first = frm
        for i in range(n):
            r = bytes(BUF[24 * i : 24 * i + 24])
            out.append(r)
            after = record.seq_of(r)
        if n < 40:
            return out, first


def check(where, torn=False, dropping=-1):
    """Remount after a cut and check everything the journal promises."""
    stats["mounts"] += 1
    bad = stats.get("bad", 0)
    check_one(where, torn, dropping)
    if stats.get("bad", 0) > bad:
        stats["failed_cuts"] = stats.get("failed_cuts", 0) + 1


def check_one(where, torn, dropping):
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
            if M.where.get(s) == dropping and s <= j.acked:
                continue  # the oldest sector, its erase cut short: the server has these
            stats["lost"] += 1
            fail(f"{where}: returned append {s} missing (oldest {oldest})")
    # the ring keeps every sector but the one erased ahead (ACK entries and voided slots take
    # slots but no seqs, so this is counted in sectors, not seqs)
    if j.stats()["sectors_used"] < min(NSECT - 1, M.opens):
        fail(f"{where}: {j.stats()['sectors_used']} sectors kept after {M.opens} opened: "
             "dropped more than needed")
    if j.next_seq <= M.last:
        stats["reused"] += 1
        fail(f"{where}: next seq {j.next_seq} reuses a returned seq (last {M.last})")
    # a torn program left evidence: its boot is used up too; a program that never started did not
    used = max(M.max_boot, M.try_boot if torn else 0, max([record.unpack(r)[1] for r in recs] + [0]))
    if j.boot <= used and j.epoch == M.epoch:
        fail(f"{where}: boot {j.boot} repeats (max used {used})")
    if not (M.acked <= j.acked <= max(M.acked, M.ack_try)):
        fail(f"{where}: acked {j.acked}, expected {M.acked}..{M.ack_try}")
    stats["skipped"] += j.skipped
    n, frm = j.read(BUF, 40, j.acked)
    if n and frm > record.seq_of(BUF):  # the server would refuse the batch
        fail(f"{where}: from_seq {frm} above the first unsent record {record.seq_of(BUF)}")
    # appends work again, and survive the next mount
    a = j.append(record.K_POWER_ON, 1)
    j.prepare()
    b = j.append(record.K_ALIVE)
    if not (a > prev and b > a > M.last):
        fail(f"{where}: new seqs {a}, {b} not after {prev} / {M.last}")
    j2 = journal.Journal(P)
    n, _ = j2.read(BUF, 40, prev)
    got = [record.unpack(BUF, 24 * i) for i in range(n)]
    if [g[0] for g in got if g[3] in (record.K_POWER_ON, record.K_ALIVE)] != [a, b]:
        fail(f"{where}: appends after the cut not kept: {got!r}")
    if j2.boot <= j.boot:
        fail(f"{where}: boot after remount {j2.boot} not above {j.boot}")
    if j2.skipped:
        fail(f"{where}: the same damage counted again at the next mount ({j2.skipped})")


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
            cut_here(n, op, addr, data)
    finally:
        inside[0] = False


def cut_here(n, op, addr, data):
    esp32._raw_read(0, SAVE)
    weak = esp32.sim_weak()
    variants = (("none", False, "old"), ("half", True, "old"))
    if op == "erase":
        variants += (("garbage", False, "garbage"), ("tail", False, "tail"),
                     ("weak", False, "weak"))
        stats["erases"] += 1
    else:
        stats["programs"] += 1
        if n % 8 == 0:  # and on every 8th op: random bits of the program programmed
            variants += (("bits", False, "bits"),)
            stats["bit_tears"] = stats.get("bit_tears", 0) + 1
    for name, half, rest in variants:
        if name != "none":
            esp32.apply_partial(op, addr, data, half, rest)
        check(f"op {n} {op} {name}", torn=(op == "program" and name != "none"),
              dropping=addr // 4096 if op == "erase" else -1)
        stats["cuts"] += 1
        esp32._raw_write(0, SAVE)
        esp32.sim_weak(weak)


class Rng:
    def __init__(self, seed):
        self.x = seed

    def next(self, m):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % m


def upload(j, rng):
    """What the uplink does: read unsent records, the server stores them, the bulb acks."""
    n, _ = j.read_unsent(BUF, 1 + rng.next(40))
    M.returned()  # read_unsent may have counted damage (K_LOSS): those appends returned
    if not n:
        return
    M.sent = {record.seq_of(BUF, 24 * i) for i in range(n)}
    M.ack_try = record.seq_of(BUF, 24 * (n - 1))
    j.ack(M.ack_try)


def workload(wraps, rng=None, j=None, signal_until=1.2):
    """Appends, uploads, erase-ahead and boots until the ring has wrapped `wraps` times; the
    server is reachable until `signal_until` rings, then long stretches of no signal follow."""
    rng = rng or Rng(7)
    j = j or journal.Journal(P)
    M.epoch = j.epoch
    M.returned()
    while M.last < wraps * NSECT * SLOTS:
        c = rng.next(100)
        if c < 4:  # a boot: the wall switch
            j = journal.Journal(P)
            M.epoch = j.epoch
            j.append(record.K_POWER_ON, 1, 0, 1)
        elif c < 12 and M.last and (M.last < signal_until * NSECT * SLOTS or c < 5):
            if rng.next(3):
                upload(j, rng)
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


def accounted(where, j):
    """Every seq the server never got and the journal cannot send any more is counted in the
    journal's running total of lost records; nothing else is."""
    recs, _ = read_all(j, j.acked)
    can = {record.seq_of(r) for r in recs}
    gone = [s for s in range(1, j.next_seq) if s not in M.server and s not in can]
    # seqs the journal never used: skipped past an unreadable slot it also counted, so equal
    if len(gone) > j.lost_total:
        stats["unreported"] += len(gone) - j.lost_total
        fail(f"{where}: {len(gone)} seqs never delivered, {j.lost_total} counted as lost")
    elif len(gone) < j.lost_total:
        stats["overcounted"] += j.lost_total - len(gone)
        fail(f"{where}: {len(gone)} seqs never delivered, but {j.lost_total} counted as lost")
    stats["gone"] = stats.get("gone", 0) + len(gone)
    return max(0, len(gone) - j.lost_total)


def units():
    """Where the CRC units of the partition are: (address, length) of each header and slot."""
    out = []
    for s in range(NSECT):
        out.append((s * 4096, 32))
        for i in range(SLOTS):
            out.append((s * 4096 + 32 + 24 * i, 24))
        out.append((s * 4096 + 4088, 8))
    return out


def flip_trials(trials, bits):
    """From one journal state, flip `bits` bits at rest per trial: one bit anywhere in the
    partition (every 4th trial in the newest sector's header), or 2 or 3 bits in one unit
    (a header, a slot or an erase mark). Remount, append, remount: nothing lost beyond the
    damaged unit, no seq reused, every unsent record gone counted, nothing returned changed."""
    esp32._raw_write(0, b"\xff" * SIZE)
    M.__init__()
    rng = Rng(99 + bits)
    j = workload(0.9, Rng(5), signal_until=0.6)
    base = bytearray(SIZE)
    esp32._raw_read(0, base)
    at = {}  # record bytes -> address in the base image
    for a, n in units():
        if n == 24:
            at[bytes(base[a : a + 24])] = a
    before, _ = read_all(j)
    total0, last0, acked0, head = j.lost_total, j.next_seq - 1, j.acked, j.head
    all_units = units()
    out = {"trials": 0, "lost_beyond": 0, "reused": 0, "unreported": 0, "overcounted": 0,
           "corrupt": 0, "unit_lost": 0}
    for t in range(trials):
        esp32._raw_write(0, base)
        if bits == 1:
            a0, n = (head * 4096, 32) if t % 4 == 0 else (rng.next(SIZE), 1)
        else:
            a0, n = all_units[rng.next(len(all_units))]
        hit = set()
        while len(hit) < bits:
            hit.add((a0 + rng.next(n), rng.next(8)))
        for a, b in hit:
            esp32.sim_flip(a, b)
        k = journal.Journal(P)
        a1 = k.append(record.K_POWER_ON, 1)
        k.prepare()
        a2 = k.append(record.K_ALIVE)
        n, frm = k.read_unsent(ALL, NSECT * SLOTS)  # what the uplink reads when it connects
        if n and frm > record.seq_of(ALL):
            out["from_seq_above"] = out.get("from_seq_above", 0) + 1
            fail(f"{bits}-bit trial {t} at {a0}: from_seq {frm} above the first record sent")
        k = journal.Journal(P)
        after, _ = read_all(k)
        seqs = {record.seq_of(r): r for r in after}
        out["trials"] += 1
        if a1 <= last0 or a2 <= a1 or a1 not in seqs or a2 not in seqs:
            out["reused"] += 1
            fail(f"{bits}-bit trial {t} at {a0}: new seqs {a1} {a2} after {last0}")
        gone = 0
        for r in before:
            s = record.seq_of(r)
            if seqs.get(s) == r:
                continue
            if s in seqs:
                out["corrupt"] += 1
                fail(f"{bits}-bit trial {t}: record {s} returned changed")
            elif a0 <= at.get(r, -1) < a0 + max(n, 1) and bits > 1:
                out["unit_lost"] += 1
                gone += s > acked0
            else:
                out["lost_beyond"] += 1
                fail(f"{bits}-bit trial {t} at {a0}: record {s} lost beyond the damaged unit")
        d = k.lost_total - total0 - gone
        if d < 0:
            out["unreported"] -= d
            fail(f"{bits}-bit trial {t} at {a0}: {gone} unsent records gone, "
                 f"{k.lost_total - total0} counted")
        out["overcounted"] += max(0, d)
    return out


ARMED = [False]


def cut_weak(n, op, addr, data):
    """The next erase is cut so that it reads finished but leaves weak cells."""
    if op == "program":
        M.on_program(addr, data)
    if op == "erase" and ARMED[0]:
        ARMED[0] = False
        esp32.apply_partial(op, addr, data, False, "weak")
        raise esp32.PowerCut()


def weak_trials(trials):
    """An erase of the sector ahead cut so that it reads finished, with weak cells; the bulb
    boots again and goes on: no returned record lost, no seq reused."""
    out = {"trials": 0, "lost": 0, "reused": 0, "unreported": 0, "reerased": 0, "decayed": 0}
    for t in range(trials):
        esp32._raw_write(0, b"\xff" * SIZE)
        esp32.sim_weak({})
        M.__init__()
        rng = Rng(300 + t)
        j = workload(0.3 + 0.1 * (t % 17), rng, signal_until=0.5)
        ARMED[0] = True
        esp32.sim_set_hook(cut_weak)
        try:
            while ARMED[0]:
                j.append(record.K_ALIVE)
                M.returned()
                j.prepare()
                M.returned()
        except esp32.PowerCut:
            pass
        esp32.sim_set_hook(hook)
        e0 = esp32.sim_stats()["erases"]
        d0 = esp32.sim_stats()["decayed"]
        M.pending = {}
        j = workload(M.last / (NSECT * SLOTS) + 0.8, rng, signal_until=0)
        out["reerased"] += esp32.sim_stats()["erases"] > e0
        out["decayed"] += esp32.sim_stats()["decayed"] - d0  # weak cells that bit written data
        recs, oldest = read_all(journal.Journal(P))
        seen = {record.seq_of(r): r for r in recs}
        out["trials"] += 1
        for s, r in M.done.items():
            if s >= oldest and seen.get(s) != r:
                out["lost"] += 1
                fail(f"weak trial {t}: returned append {s} missing")
        if sorted(seen) != [record.seq_of(r) for r in recs]:
            out["reused"] += 1
        out["unreported"] += accounted(f"weak trial {t}", j)
    return out


esp32.sim_set_hook(hook)
if MODE == "sweep":
    j = workload(2.5)
    accounted("sweep end", j)
elif MODE == "raise":
    # replay from a blank partition with a real PowerCut at every `step`-th op, then go on
    step = ARG or 37
    n = 1
    while True:
        esp32._raw_write(0, b"\xff" * SIZE)
        M.__init__()
        esp32.sim_setup(flash=FLASH, partitions=[("jtest", 1, 0x40, 0, SIZE)], trace=False,
                        cut_at=n, half=(n % 2 == 0))
        esp32.sim_set_hook(hook)
        rng = Rng(7)
        try:
            workload(1.6, rng)
            break  # the workload finished before op n: every cut point tried
        except esp32.PowerCut:
            pass
        inside[0] = True
        check(f"raise at op {n}", torn=(n % 2 == 0))
        inside[0] = False
        stats["cuts"] += 1
        M.pending = {}
        j = workload(1.6, rng)  # the bulb goes on after the cut
        accounted(f"raise at op {n}, at the end", j)
        n += step
elif MODE == "flips":
    for bits in (1, 2, 3):
        stats[f"flips{bits}"] = flip_trials(ARG or 100, bits)
elif MODE == "weak":
    stats["weak"] = weak_trials(ARG or 40)
elif MODE == "weak-trusting":  # the same trials with the rule before erase marks: a sector that
    # reads blank is used as it is (the bench's baseline)

    def trusting(self, hdrs):
        s1 = (self.head + 1) % self._n
        self._ready = hdrs[s1] is None and not self._opened(s1)
        self._fresh = False

    journal.Journal._ahead = trusting
    stats["weak"] = weak_trials(ARG or 40)
esp32.sim_set_hook(None)
stats["wraps"] = M.last / (NSECT * SLOTS)
stats["fails"] = fails
stats["ops"] = esp32.sim_stats()["ops"]
print(json.dumps(stats))
