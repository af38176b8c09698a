# SPDX-License-Identifier: MIT
# The journal: every event the bulb records, kept in a log-structured ring on a raw flash partition
# (esp32.Partition), 24-byte records (record.py) behind a 32-byte header in each 4 KiB sector.
# It must never erase on the append path when the sector ahead is ready (an append is one
# program into erased space), never return a torn or corrupt record, never reuse a sequence or
# boot number that anyone could have seen, never write into a sector whose erase it has not
# seen finish, and never lose an unsent record without counting it in a K_LOSS record.
# Layout, recovery and the fault model: docs/journal.md.
import struct

import crcfix
import record

try:
    from micropython import const
except ImportError:  # CPython: host tools read a journal image with this same code

    def const(x):
        return x


# the partition sizes it works with, shared with tools/partition_table.py: one sector being
# written, one erased ahead, one of history at least; at most 128 (a K_LOSS names a sector in 7
# bits), more is left unused
MIN_SECTORS = 3
MAX_SECTORS = 128
_SECTOR = const(4096)
_HDR = const(32)
_SLOTS = const(169)  # (4096 - 32) // 24 records per sector
_CHUNK = const(13)  # slots read at a time when scanning (169 = 13 * 13)
_MARK = const(4088)  # the erase mark: the 8 bytes after the last slot
_MAGIC = const(0x4A4D)  # b"MJ"
_VERSION = const(2)
_HFMT = "<HBBIIIIIII"  # magic, version, flags, sseq, epoch, first_seq, boot, acked, lost, crc
_KIND = const(12)
_EMPTY = const(0xFFFFFFFF)
_ZERO = b"\x00" * 24
# what a slot holds
_FREE = const(0)  # erased
_REC = const(1)  # a record (its CRC checks, maybe after one bit was corrected)
_VOID = const(2)  # programmed to 0 on purpose: damage already counted
_NEAR = const(3)  # erased but for a few bits: flipped at rest, or a write cut as it began
_BAD = const(4)  # unreadable
_TRIES = const(3)


def _crc(mv, seed=0):
    import binascii

    return binascii.crc32(mv, seed) & 0xFFFFFFFF


def _nothing():
    pass


class Journal:
    def __init__(self, partition, feed=None):
        """feed: called at least once per sector read or erased (a watchdog feed, for one)."""
        self._p = partition
        self._feed = feed or _nothing
        self._n = min(MAX_SECTORS, partition.ioctl(4, 0) * partition.ioctl(5, 0) // _SECTOR)
        if self._n < MIN_SECTORS:
            raise ValueError(f"journal partition needs at least {MIN_SECTORS} sectors of 4 KiB")
        self._buf = bytearray(_HDR + record.SIZE)  # header + first record: one program
        self._rec = memoryview(self._buf)[_HDR:]
        self._scan = bytearray(_CHUNK * record.SIZE)
        self._chk = bytearray(_HDR + record.SIZE)  # read-back of every program
        self._mk = bytearray(8)
        from array import array

        self._sseq = array("I", bytes(4 * self._n))  # 0: not part of the journal
        self._first = array("I", bytes(4 * self._n))
        self.erases = self.erases_on_append = self.skipped = self.lost = 0
        self.corrected = self.voided = self.lost_total = 0
        self._busy = False  # an append or prepare() is running (an interrupt may come in)
        self._later = []  # appends an interrupt deferred
        self._dmg = []  # [sector, slot, counts as lost] found damaged, to count and void
        self._dropping = False
        self._mount()

    # ---- reading flash ---------------------------------------------------------------------
    def _header(self, s):
        """(sseq, epoch, first_seq, boot, acked, lost); None: erased; False: damaged."""
        b = self._buf
        self._p.readblocks(s, memoryview(b)[:_HDR], 0)
        if b[0] == 0xFF and _blank(b, _HDR):
            return None
        f = struct.unpack_from(_HFMT, b, 0)
        if f[9] != _crc(memoryview(b)[: _HDR - 4]):
            if _zeros(b, _HDR) <= 3 or crcfix.fix(b, 0, _HDR) < 0:
                return False
            self.corrected += 1
            f = struct.unpack_from(_HFMT, b, 0)
        if f[0] != _MAGIC or f[1] != _VERSION or f[3] == 0:
            return False
        return f[3:9]

    def _mark(self, s):
        """The sseq the sector's erase mark was written for (0: none that checks)."""
        mk = self._mk
        self._p.readblocks(s, mk, _MARK)
        if _zeros(mk, 8) <= 3 or crcfix.fix(mk, 0, 8, self._seed) < 0:
            return 0
        return struct.unpack_from("<I", mk, 0)[0]

    def _slots(self, s, start=0):
        """Yield (slot, memoryview of 24 bytes) for the slots of sector s from start."""
        self._feed()
        mv = memoryview(self._scan)
        for c in range(start - start % _CHUNK, _SLOTS, _CHUNK):
            self._p.readblocks(s, self._scan, _HDR + c * record.SIZE)
            for k in range(_CHUNK):
                if c + k >= start:
                    yield c + k, mv[k * record.SIZE : (k + 1) * record.SIZE]

    def _what(self, mv):
        """What a slot holds (_FREE, _REC, ...); a single flipped bit is corrected in mv."""
        if mv[0] == 0xFF and record.seq_of(mv) == _EMPTY and record.is_empty(mv):
            return _FREE
        if record.valid(mv):
            return _REC
        z = _zeros(mv, record.SIZE)
        if z <= 3:
            return _NEAR
        if z >= 8 * record.SIZE - 3:
            return _VOID
        if crcfix.fix(mv, 0, record.SIZE) > 0:
            self.corrected += 1
            return _REC
        return _BAD

    # ---- recovery --------------------------------------------------------------------------
    def _mount(self):
        n = self._n
        hdrs = [None] * n  # type: list
        best, top = -1, 0
        for s in range(n):
            self._feed()
            h = self._header(s)
            hdrs[s] = h
            if h and h[0] > top:
                best, top = s, h[0]
        if best < 0:
            return self._format()
        self.epoch = hdrs[best][1]
        self._seed = _crc(struct.pack("<I", self.epoch), 0x4D4A)
        for s in range(n):
            h = hdrs[s]
            if h and h[1] == self.epoch and top - n < h[0] <= top:
                self._sseq[s], self._first[s] = h[0], h[2]
            elif h is False:  # a damaged header: the erase mark still names the sector
                tag = self._mark(s)
                if top - n < tag <= top:
                    self._sseq[s], self._first[s] = tag, 0
        head, s1 = best, (best + 1) % n
        prev = -1
        if hdrs[s1] is False and self._mark(s1) == top + 1 and self._opened(s1):
            prev, head = best, s1  # a damaged header after the head is a damaged head
            self._sseq[s1] = top + 1
        self._recover(head, prev, hdrs[best])
        self._ahead(hdrs)
        self._firsts()

    def _opened(self, s):
        for _, mv in self._slots(s):
            if not (mv[0] == 0xFF and record.is_empty(mv)):
                return True
        return False

    def _format(self):
        """A blank or foreign partition: a new journal (random epoch), sector 0 first. Nothing
        in it is trusted to be erased: the first append erases sector 0."""
        import os

        self.epoch = struct.unpack("<I", os.urandom(4))[0] or 1
        self._seed = _crc(struct.pack("<I", self.epoch), 0x4D4A)
        self._sseq_next, self.next_seq, self.acked, self.boot = 1, 1, 0, 1
        self.head, self._slot, self._ready, self._fresh = self._n - 1, _SLOTS, False, True

    def _recover(self, head, prev, h):
        """Counters from the head (and the sector before it when the head's header is damaged):
        the largest values among the CRC-valid records, past every unreadable slot."""
        # state while scanning: [seq_hi, boot_hi, ack_hi, lost_hi, drop, void, prev_seq,
        #                        last slot used, unreadable at the end, odd at the end]
        st = [h[2] - 1, h[3], h[4], h[5], -1, -1, h[2] - 1, -1, 0, 0]
        if prev >= 0:
            self._survey(prev, st, None)
            st[7], st[8], st[9] = -1, 0, 0
        dmg = []
        self._survey(head, st, dmg)
        self.head, self._sseq_next = head, self._sseq[head] + 1
        self.next_seq = st[0] + 1 + st[8]  # past every slot that may have held a seq
        self.boot = st[1] + 1 + st[8] + st[9]  # past every write that may have been a boot's
        self.acked, self.lost_total, self._slot = st[2], st[3], st[7] + 1
        if st[4] >= 0:  # a sector whose lost records were counted, erase cut short: not ours
            for s in range(self._n):
                if self._sseq[s] and self._sseq[s] & 0x7FFF == st[4] and s != head:
                    self._sseq[s] = 0
        done = False
        for s, i, p, holds in dmg:
            loss = holds and p >= self.acked
            if st[5] == (s & 0x7F) << 8 | i:  # counted by the last boot, not voided yet
                loss, done = None, True
            else:
                self.skipped += 1  # new damage: main records an F_JOURNAL fault
            self._dmg.append([s, i, loss])
        if st[5] >= 0 and not done:  # the last counted slot may be in an older sector
            self._dmg.append([st[5] >> 8, st[5] & 0xFF, None])

    def _survey(self, s, st, dmg):
        """Scan sector s, updating st (see _recover); damaged slots go to dmg."""
        run = []
        for i, mv in self._slots(s):
            w = self._what(mv)
            if w == _FREE:
                continue
            st[7] = i
            if w == _REC:
                seq, b, _, kind, sub, aux, arg = struct.unpack_from(record._FMT, mv, 0)
                _settle(run, st[6], seq)
                run = []
                st[0], st[1], st[6] = max(st[0], seq), max(st[1], b), seq
                st[8] = st[9] = 0
                if kind == record.K_ACK:
                    st[2] = max(st[2], arg)
                elif kind == record.K_LOSS:
                    st[3] = max(st[3], arg)
                    if sub == record.L_OVERWRITTEN:
                        st[4] = aux
                    elif sub == record.L_UNREADABLE:
                        st[5] = aux
            elif w == _BAD:
                st[8] += 1
                e = [s, i, st[6], True]
                run.append(e)
                if dmg is not None:
                    dmg.append(e)
            elif w == _NEAR:
                st[9] += 1
        _settle(run, st[6], 0)

    def _ahead(self, hdrs):
        """Is the sector after the head ready (erased, and marked so after its erase)? When the
        head is full, an opening or erase cut short there may have taken a boot number's only
        trace: skip one."""
        s1 = (self.head + 1) % self._n
        h = hdrs[s1]
        self._ready = h is None and self._mark(s1) == self._sseq_next
        if not self._ready and (h is None or h is False) and self._slot >= _SLOTS:
            self.boot += 1
        self._fresh = False

    def _firsts(self):
        """A sector whose header is damaged gets, as first_seq, the smallest seq of a record in
        it (ACK entries aside: they share the seq before them), else the next sector's: from_seq
        is then never above a record the bulb still sends, and a reader starts in time."""
        nxt = self.next_seq
        for k in range(self._n):
            s = (self.head - k) % self._n
            if not self._sseq[s]:
                continue
            if self._first[s] == 0:
                low = nxt
                for _, mv in self._slots(s):
                    if self._what(mv) == _REC and mv[_KIND] != record.K_ACK:
                        low = min(low, record.seq_of(mv))
                self._first[s] = low
            nxt = self._first[s]

    # ---- writing ---------------------------------------------------------------------------
    def append(self, kind, sub=0, aux=0, arg=0):
        """Record one event; returns its sequence number once it is in flash.

        Called from a scheduled interrupt (the mains-sense pin) while another append or
        prepare() is in progress, it is deferred to the end of that call and returns 0."""
        if self._busy:
            self._later.append((kind, sub, aux, arg))
            return 0
        self._busy = True
        try:
            seq = self._append(kind, sub, aux, arg)
        finally:
            self._busy = False
        self._deferred()
        return seq

    def _deferred(self):
        while self._later:
            k = self._later.pop(0)
            self.append(k[0], k[1], k[2], k[3])
        if self._dmg and not self._busy:
            self._record_damage()

    def _append(self, kind, sub, aux, arg):
        if (self._slot >= _SLOTS - 1 and not self._ready and not self._dropping
                and (self._slot >= _SLOTS or self._unsent_ahead())):
            # the last slot is kept for the loss record a drop may need: ready the sector ahead
            if not self._fresh:
                self.erases_on_append += 1
            self._make_ready()
        share = kind == record.K_ACK  # an ACK takes no seq of its own
        seq = self.next_seq - 1 if share else self.next_seq
        record.pack_into(self._rec, 0, seq, self.boot, _ticks(), kind, sub, aux, arg)
        for _ in range(_TRIES):
            if self._slot >= _SLOTS:
                if self._dropping:  # a loss record finds no slot: _make_ready writes it later
                    return 0
                self._open()
                break
            ok = self._put(self.head, _HDR + self._slot * record.SIZE, self._rec)
            self._slot += 1
            if ok:
                break
            self._void(self.head, self._slot - 1)  # it did not take: never read it, try the next
        if not share:
            self.next_seq = seq + 1
        return seq

    def _unsent_ahead(self):
        """May the sector ahead hold records the server does not have? (from the headers)"""
        s = (self.head + 1) % self._n
        if not self._sseq[s]:
            return False
        for k in range(2, self._n + 1):
            t = (self.head + k) % self._n
            if self._sseq[t]:
                return self._first[t] - 1 > self.acked
        return True

    def _open(self):
        """Open the sector ahead with the record in _rec: header and record in one program."""
        s = (self.head + 1) % self._n
        if not self._ready:
            self._make_ready()
        first = self.next_seq
        for _ in range(_TRIES):
            struct.pack_into(_HFMT, self._buf, 0, _MAGIC, _VERSION, 0, self._sseq_next,
                             self.epoch, first, self.boot, self.acked, self.lost_total, 0)
            struct.pack_into("<I", self._buf, _HDR - 4, _crc(memoryview(self._buf)[: _HDR - 4]))
            if self._put(s, 0, self._buf):
                break
            self._erase(s)  # the sector did not take it: erase and mark it again
        self._sseq[s], self._first[s] = self._sseq_next, first
        self._sseq_next += 1
        self.head, self._slot, self._ready, self._fresh = s, 1, False, False

    def _put(self, s, off, buf):
        """Program buf at (s, off), read it back: True when flash holds exactly buf."""
        n = len(buf)
        self._p.writeblocks(s, buf, off)
        chk = memoryview(self._chk)[:n]
        self._p.readblocks(s, chk, off)
        for i in range(n):
            if chk[i] != buf[i]:
                return False
        return True

    def _void(self, s, i):
        self._p.writeblocks(s, _ZERO, _HDR + i * record.SIZE)
        self.voided += 1

    def _make_ready(self):
        """Drop the sector ahead: count its unsent records in a K_LOSS record written before
        anything is erased, then erase it and mark the erase done."""
        s = (self.head + 1) % self._n
        later = 0
        if self._sseq[s]:
            lost = self._unsent(s)
            if lost:
                self.lost += lost
                self.lost_total += lost
                self._dropping = True
                try:
                    done = self._append(record.K_LOSS, record.L_OVERWRITTEN,
                                        self._sseq[s] & 0x7FFF, self.lost_total)
                finally:
                    self._dropping = False
                if not done:  # a full head and no sector ready (found so at mount)
                    later = self._sseq[s] & 0x7FFF
            self._sseq[s] = 0
        self._erase(s)
        self._ready = True
        if later:
            self._later.append((record.K_LOSS, record.L_OVERWRITTEN, later, self.lost_total))

    def _erase(self, s):
        """Erase sector s and mark it erased for the sseq it will be opened with."""
        for _ in range(_TRIES):
            self._feed()
            self._p.ioctl(6, s)
            self.erases += 1
            struct.pack_into("<I", self._mk, 0, self._sseq_next)
            struct.pack_into("<I", self._mk, 4, _crc(memoryview(self._mk)[:4], self._seed))
            if self._put(s, _MARK, self._mk):
                return

    def _unsent(self, s):
        """How many records of sector s the server does not have (by this journal's acked)."""
        lost = 0
        run = []
        p = self._first[s] - 1
        for _, mv in self._slots(s):
            w = self._what(mv)
            if w == _REC:
                seq = record.seq_of(mv)
                lost += _settle(run, p, seq, self.acked)
                run = []
                if mv[_KIND] != record.K_ACK and seq > self.acked:
                    lost += 1
                p = seq
            elif w == _BAD:
                run.append([s, 0, p, True])
        return lost + _settle(run, p, 0, self.acked)

    def _record_damage(self):
        """Count each damaged unsent slot in a K_LOSS record, then void it (never again)."""
        dmg, self._dmg = self._dmg, []
        for s, i, loss in dmg:
            if not self._sseq[s]:
                continue
            self._p.readblocks(s, memoryview(self._scan)[: record.SIZE], _HDR + i * record.SIZE)
            if self._what(memoryview(self._scan)[: record.SIZE]) != _BAD:
                continue
            if loss:
                self.lost += 1
                self.lost_total += 1
                self.append(record.K_LOSS, record.L_UNREADABLE, (s & 0x7F) << 8 | i,
                            self.lost_total)
            self._void(s, i)

    def prepare(self):
        """Make the sector ahead ready (erased and marked) so the next appends never wait for
        an erase. Call from an idle task; returns True when it erased."""
        if self._ready or self._busy:
            return False
        self._busy = True
        try:
            self._make_ready()
        finally:
            self._busy = False
        self._deferred()
        return True

    def ack(self, seq):
        """The server has every record up to seq: persist it (a K_ACK record)."""
        seq = min(seq, self.next_seq - 1)
        if seq > self.acked:
            self.append(record.K_ACK, 0, 0, seq)
            self.acked = seq

    # ---- reading ---------------------------------------------------------------------------
    def _order(self):
        """Sectors holding records, oldest first."""
        n = self._n
        for k in range(1, n + 1):
            s = (self.head + k) % n
            if self._sseq[s]:
                yield s

    def oldest(self):
        for s in self._order():
            return self._first[s]
        return self.next_seq

    def read(self, buf, max_records, after, acks=False):
        """Copy up to max_records raw records with seq > after into buf; (count, from_seq).
        Damaged unsent slots it passes are noted; read_unsent() counts them."""
        start = None
        for s in self._order():
            if start is None or self._first[s] <= after + 1:
                start = s
        if start is None:
            return 0, self.next_seq
        count, s, top, p = 0, start, after, self._first[start] - 1
        run = []
        while count < max_records:
            end = self._slot if s == self.head else _SLOTS
            for i, mv in self._slots(s):
                if i >= end or count >= max_records:
                    break
                w = self._what(mv)
                if w == _BAD:
                    run.append([s, i, p, True])
                    continue
                if w != _REC:
                    continue
                seq, ack = record.seq_of(mv), mv[_KIND] == record.K_ACK
                self._note(run, p, seq)
                run, p = [], seq
                if seq <= after or (ack and not acks) or (not ack and seq <= top):
                    continue  # an ACK entry, or a second copy of a record (a retried program)
                o = count * record.SIZE
                buf[o : o + record.SIZE] = mv
                count += 1
                top = max(top, seq) if not ack else top
            if s == self.head:
                break
            s = (s + 1) % self._n
        if count < max_records:
            self._note(run, p, 0)
        return count, max(after + 1, self.oldest())

    def _note(self, run, p, q):
        if run:
            _settle(run, p, q)
            for s, i, before, holds in run:
                if holds and before >= self.acked and len(self._dmg) < 16 and not [
                        d for d in self._dmg if d[0] == s and d[1] == i]:
                    self._dmg.append([s, i, True])

    def read_unsent(self, buf, max_records):
        """Records the server does not have yet (K_ACK excluded), oldest first. Damaged unsent
        slots found on the way are counted (K_LOSS) once the read is done."""
        got = self.read(buf, max_records, self.acked)
        if self._dmg and not self._busy:
            self._record_damage()
        return got

    def stats(self):
        used = sum(1 for _ in self._order())
        return {
            "capacity": (self._n - 1) * _SLOTS,
            "used": max(0, self.next_seq - self.oldest()),
            "unsent": max(0, self.next_seq - 1 - max(self.acked, self.oldest() - 1)),
            "sectors": self._n, "sectors_used": used, "erases": self.erases,
            "erases_on_append": self.erases_on_append, "wear": self._sseq_next // self._n,
            "skipped": self.skipped, "lost": self.lost, "lost_total": self.lost_total,
            "corrected": self.corrected, "voided": self.voided, "boot": self.boot,
            "next_seq": self.next_seq, "acked": self.acked, "epoch": self.epoch,
        }


def _settle(run, p, q, acked=None):
    """A run of unreadable slots [sector, slot, p, holds] after seq p, before seq q (0: none
    after them). Only as many of them held a seq of their own as q leaves room for (the others
    were ACK entries or retried copies): sets holds. Returns how many held a seq above acked
    (records lost, by what this journal knows the server has)."""
    room = len(run) if q == 0 else q - p - 1
    lost = 0
    for k in range(len(run)):
        run[k][3] = k < room
        if k < room and acked is not None and p >= acked:
            lost += 1
    return lost


def _zeros(b, n):
    z = 0
    for i in range(n):
        x = ~b[i] & 0xFF
        while x:
            x &= x - 1
            z += 1
    return z


def _blank(b, n):
    for i in range(n):
        if b[i] != 0xFF:
            return False
    return True


def _ticks():
    import time

    return time.ticks_ms()


def open(label="journal", feed=None):
    """The journal on the data partition with that label; feed: see Journal."""
    import esp32

    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
    if not found:
        raise OSError("no data partition labelled '" + label + "': flash tools/partitions.csv")
    return Journal(found[0], feed)
