# The journal: every event the bulb records, kept in a log-structured ring on a raw flash partition
# (esp32.Partition), 24-byte records (record.py) behind a 32-byte header in each 4 KiB sector.
# It must never erase on the append path when the sector ahead is ready (an append is one
# program into erased space), never return a torn or corrupt record, and never reuse a sequence
# or boot number that anyone could have seen. Layout and recovery: docs/journal.md.
import struct

import record

try:
    from micropython import const
except ImportError:  # CPython: host tools read a journal image with this same code

    def const(x):
        return x


_SECTOR = const(4096)
_HDR = const(32)
_SLOTS = const(169)  # (4096 - 32) // 24 records per sector
_CHUNK = const(13)  # slots read at a time when scanning (169 = 13 * 13)
_MAGIC = const(0x4C4E4A4D)  # b"MJNL"
_HFMT = "<IBBHIIIIII"  # magic, version, flags, rsv, sseq, epoch, first_seq, boot, acked, crc
_KIND = const(12)
_EMPTY = const(0xFFFFFFFF)
_ZERO = b"\x00\x00\x00\x00"


def _crc(mv):
    import binascii

    return binascii.crc32(mv) & 0xFFFFFFFF


class Journal:
    def __init__(self, partition):
        self._p = partition
        self._n = partition.ioctl(4, 0) * partition.ioctl(5, 0) // _SECTOR
        if self._n < 3:
            raise ValueError("journal partition needs at least 3 sectors of 4 KiB")
        self._buf = bytearray(_HDR + record.SIZE)  # header + first record: one program
        self._rec = memoryview(self._buf)[_HDR:]
        self._scan = bytearray(_CHUNK * record.SIZE)
        from array import array

        self._sseq = array("I", bytes(4 * self._n))  # 0: no valid header
        self._first = array("I", bytes(4 * self._n))
        self.erases = 0
        self.erases_on_append = 0
        self.skipped = 0
        self.lost = 0
        self._busy = False  # an append or prepare() is running (an interrupt may come in)
        self._later = None  # type: tuple | None  # the append an interrupt deferred
        self._mount()

    # ---- recovery -------------------------------------------------------------------------
    def _read_header(self, s):
        """(sseq, epoch, first_seq, boot, acked) or None; also None for a blank sector."""
        b = self._buf
        self._p.readblocks(s, memoryview(b)[:_HDR], 0)
        f = struct.unpack_from(_HFMT, b, 0)
        if f[0] != _MAGIC or f[9] != _crc(memoryview(b)[: _HDR - 4]) or f[4] == 0:
            return None
        return f[4:9]

    def _mount(self):
        n = self._n
        best, top = -1, 0
        hdrs = [None] * n  # type: list
        for s in range(n):
            h = self._read_header(s)
            hdrs[s] = h
            if h is not None and h[0] > top:
                best, top = s, h[0]
        self.head = best
        if best < 0:  # blank or foreign partition: format lazily, sector 0 first
            import os

            self.epoch = struct.unpack("<I", os.urandom(4))[0] or 1
            self._sseq_next, self.next_seq, self.acked, boot = 1, 1, 0, 0
            self._slot = _SLOTS
            self.head = n - 1
            self._ready = self._blank(0)
            self.boot = boot + 1 + (0 if self._ready else 1)
            return
        sseq, self.epoch, first, boot, self.acked = hdrs[best]
        for s in range(n):
            h = hdrs[s]
            if h is not None and h[1] == self.epoch and h[0] <= sseq and h[0] > sseq - n:
                self._sseq[s], self._first[s] = h[0], h[2]
        self._sseq_next = sseq + 1
        # the head sector: last valid record, first free slot, torn slots after the last record
        nxt, torn, last = first, 0, -1
        for i, mv in self._slots(best):
            if _is_empty(mv):
                continue
            if not record.valid(mv):
                torn += 1
                self.skipped += 1
                last = i
                continue
            seq, b, _, kind, _, _, arg = struct.unpack_from(record._FMT, mv, 0)
            torn, last = 0, i
            nxt = seq + 1
            boot = max(boot, b)
            if kind == record.K_ACK and arg > self.acked:
                self.acked = arg
        self.next_seq = nxt
        self._slot = last + 1
        s1 = (best + 1) % n
        bump = torn + (0 if hdrs[s1] is not None or self._blank(s1, 1) else 1)
        self.boot = boot + 1 + bump
        # the sector ahead is checked or erased by prepare(), or now if the head is full (the
        # power-on record will open it)
        self._ready = self._slot >= _SLOTS and hdrs[s1] is None and self._blank(s1)

    def _slots(self, s, start=0):
        """Yield (slot, memoryview of 24 bytes) for the slots of sector s from start."""
        mv = memoryview(self._scan)
        for c in range(start - start % _CHUNK, _SLOTS, _CHUNK):
            self._p.readblocks(s, self._scan, _HDR + c * record.SIZE)
            for k in range(_CHUNK):
                if c + k >= start:
                    yield c + k, mv[k * record.SIZE : (k + 1) * record.SIZE]

    def _blank(self, s, chunks=_SLOTS):
        """True when the sector's header and first `chunks` chunks are still erased."""
        b = self._buf
        self._p.readblocks(s, memoryview(b)[:_HDR], 0)
        for i in range(_HDR):
            if b[i] != 0xFF:
                return False
        for i, mv in self._slots(s):
            if i >= chunks * _CHUNK:
                break
            if not _is_empty(mv):
                return False
        return True

    # ---- writing --------------------------------------------------------------------------
    def append(self, kind, sub=0, aux=0, arg=0):
        """Record one event; returns its sequence number once it is in flash.

        Called from a scheduled interrupt (the mains-sense pin) while another append or
        prepare() is in progress, it is deferred to the end of that call and returns 0."""
        if self._busy:
            self._later = (kind, sub, aux, arg)
            return 0
        self._busy = True
        try:
            seq = self._append(kind, sub, aux, arg)
        finally:
            self._busy = False
        self._deferred()
        return seq

    def _deferred(self):
        if self._later is not None:
            k = self._later
            self._later = None
            self.append(k[0], k[1], k[2], k[3])

    def _append(self, kind, sub, aux, arg):
        seq = self.next_seq
        record.pack_into(self._rec, 0, seq, self.boot, _ticks(), kind, sub, aux, arg)
        if self._slot < _SLOTS:
            self._p.writeblocks(self.head, self._rec, _HDR + self._slot * record.SIZE)
            self._slot += 1
        else:
            s = (self.head + 1) % self._n
            if not self._ready and (self._sseq[s] or not self._blank(s)):
                # nobody prepared the sector ahead: erase it now (counted)
                self.erases_on_append += 1
                lost = self._drop(s)
                if lost:
                    self.lost += lost
                    self._later = (record.K_LOSS, 0, 0, lost)
            struct.pack_into(_HFMT, self._buf, 0, _MAGIC, 1, 0, 0, self._sseq_next, self.epoch,
                             seq, self.boot, self.acked, 0)
            mv = memoryview(self._buf)
            struct.pack_into("<I", self._buf, _HDR - 4, _crc(mv[: _HDR - 4]))
            self._p.writeblocks(s, self._buf, 0)  # header and first record in one program
            self._sseq[s], self._first[s] = self._sseq_next, seq
            self._sseq_next += 1
            self.head, self._slot, self._ready = s, 1, False
        self.next_seq = seq + 1
        return seq

    def _drop(self, s):
        """Erase sector s (the oldest); returns how many unsent records it held."""
        lost = 0
        if self._sseq[s]:
            for _, mv in self._slots(s):
                unsent = record.seq_of(mv) > self.acked and mv[_KIND] != record.K_ACK
                if unsent and not _is_empty(mv) and record.valid(mv):
                    lost += 1
            # tombstone: clear the magic first, so a torn erase never leaves a sector that
            # claims records it no longer holds (the loss then shows in from_seq)
            self._p.writeblocks(s, _ZERO, 0)
            self._sseq[s] = 0
        self._p.ioctl(6, s)
        self.erases += 1
        self._sseq[s] = 0
        self._ready = True
        return lost

    def prepare(self):
        """Make the sector ahead ready (erased) so the next appends never wait for an erase.
        Call from an idle task; returns True when it erased. Records a loss if it had to."""
        if self._ready or self._busy:
            return False
        self._busy = True
        try:
            s = (self.head + 1) % self._n
            if not self._sseq[s] and self._blank(s):
                self._ready = True
                lost = -1
            else:
                lost = self._drop(s)
        finally:
            self._busy = False
        self._deferred()
        if lost < 0:
            return False
        if lost:
            self.lost += lost
            self.append(record.K_LOSS, 0, 0, lost)
        return True

    def ack(self, seq):
        """The server has every record up to seq: persist it (a K_ACK record)."""
        seq = min(seq, self.next_seq - 1)
        if seq > self.acked:
            self.append(record.K_ACK, 0, 0, seq)
            self.acked = seq

    # ---- reading --------------------------------------------------------------------------
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
        """Copy up to max_records raw records with seq > after into buf; (count, from_seq)."""
        start = None
        for s in self._order():
            if start is None or self._first[s] <= after + 1:
                start = s
        count = 0
        if start is None:
            return 0, self.next_seq
        s = start
        while count < max_records:
            end = self._slot if s == self.head else _SLOTS
            for i, mv in self._slots(s):
                if i >= end or count >= max_records:
                    break
                if _is_empty(mv):
                    continue
                if not record.valid(mv):
                    self.skipped += 1
                    continue
                if record.seq_of(mv) <= after or (mv[_KIND] == record.K_ACK and not acks):
                    continue
                o = count * record.SIZE
                buf[o : o + record.SIZE] = mv
                count += 1
            if s == self.head:
                break
            s = (s + 1) % self._n
        return count, max(after + 1, self.oldest())

    def read_unsent(self, buf, max_records):
        """Records the server does not have yet (K_ACK excluded), oldest first."""
        return self.read(buf, max_records, self.acked)

    def stats(self):
        used = sum(1 for _ in self._order())
        return {
            "capacity": (self._n - 1) * _SLOTS,
            "used": max(0, self.next_seq - self.oldest()),
            "unsent": max(0, self.next_seq - 1 - max(self.acked, self.oldest() - 1)),
            "sectors": self._n, "sectors_used": used, "erases": self.erases,
            "erases_on_append": self.erases_on_append, "wear": self._sseq_next // self._n,
            "skipped": self.skipped, "lost": self.lost, "boot": self.boot,
            "next_seq": self.next_seq, "acked": self.acked, "epoch": self.epoch,
        }


def _is_empty(mv):
    return record.seq_of(mv) == _EMPTY and mv[_KIND] == 0xFF and record.is_empty(mv)


def _ticks():
    import time

    return time.ticks_ms()


def open(label="journal"):
    """The journal on the data partition with that label."""
    import esp32

    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
    if not found:
        raise OSError("no data partition labelled '" + label + "': flash tools/partitions.csv")
    return Journal(found[0])
