# SPDX-License-Identifier: MIT
# The journal record: one definition, used by the bulb (MicroPython) and the server (CPython).
# A record is 24 bytes, stored in flash and sent on the wire exactly as they are.
# It must never change shape without a new VERSION: bulbs in the field keep the old one.
#
#  off  size  field
#    0   u32  seq      sequence number, strictly increasing over the journal's life (K_ACK: the
#                      seq of the record before it, see below)
#    4   u32  boot     boot number (one per power-on), never repeats
#    8   u32  up_ms    time since this boot, milliseconds (wraps after 49.7 days)
#   12   u8   kind     what happened (K_* below)
#   13   u8   sub      small argument: reset cause, fault code, transport, ...
#   14   i16  aux      signed argument: signal in dBm, fault detail, ...
#   16   u32  arg      wide argument: wall-clock seconds, a count, ...
#   20   u32  crc      CRC-32 (binascii.crc32) of bytes 0..19
# Erased flash reads 0xFF: a slot whose seq is 0xFFFFFFFF is empty, never a record.
import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


VERSION = const(1)
SIZE = const(24)
_BODY = const(20)
_FMT = "<IIIBBhI"
EMPTY = const(0xFFFFFFFF)

K_POWER_ON = const(1)  # sub: machine.reset_cause(); arg: firmware version
K_ALIVE = const(2)  # the lamp is still lit at up_ms
K_OFF = const(3)  # dying gasp from the mains-sense pin: the power went at up_ms
K_ANCHOR = const(4)  # arg: wall-clock Unix seconds at up_ms; sub: source; aux: error bound in s
K_FAULT = const(5)  # sub: fault code (F_*); aux: detail (e.g. which setting)
K_LOSS = const(6)  # sub: L_* cause; aux: where (L_*); arg: the journal's running total of lost
K_SETUP = const(7)  # the bulb entered setup mode
K_LINK = const(8)  # sub: transport (T_*); aux: signal dBm; arg: connect time in ms (0: failed)
K_ACK = const(9)  # the server acknowledged up to seq arg (kept in flash; never sent); it takes
# no seq of its own (its seq is the record's before it), so the seqs a server sees have no gaps
# but lost records

KIND_NAMES = {
    1: "power_on",
    2: "alive",
    3: "off",
    4: "anchor",
    5: "fault",
    6: "loss",
    7: "setup",
    8: "link",
    9: "ack",
}

# anchor sources
A_SERVER = const(1)
A_NTP = const(2)
A_MODEM = const(3)
A_RECEIPT = const(4)  # server side only, never in a journal: a batch's header up_ms + arrival

# causes of a loss (sub of K_LOSS; docs/journal.md "Every loss reported"). arg is the running
# total of unsent records the journal could not deliver (all causes, this epoch): the newest
# K_LOSS says it all, so an older one overwritten in turn loses no count.
L_OVERWRITTEN = const(1)  # unsent records of the oldest sector erased; aux: its sseq & 0x7FFF
L_UNREADABLE = const(2)  # an unsent slot no CRC check can read; aux: (sector & 0x7F) << 8 | slot

# transports
T_WIFI = const(1)
T_LTE = const(2)

# fault codes (sub of K_FAULT)
F_CONFIG = const(1)  # a setting was missing, corrupt or out of range; aux: setting index
F_CONFIG_FILE = const(2)  # a config file could not be read or parsed; aux: which file
F_CRASH = const(3)  # the previous boot ended in an exception; aux: step
F_SAFE_MODE = const(4)  # this boot runs in safe mode; aux: consecutive failed boots
F_WATCHDOG = const(5)  # the previous boot was ended by the watchdog
F_JOURNAL = const(6)  # new damage (unreadable slots) found at mount; aux: count
F_UPLINK = const(7)  # the server refused a batch; aux: HTTP status


def pack_into(buf, off, seq, boot, up_ms, kind, sub=0, aux=0, arg=0):
    """Write one record with its CRC into buf at off (no allocation)."""
    struct.pack_into(_FMT, buf, off, seq, boot, up_ms & 0xFFFFFFFF, kind, sub, aux, arg)
    mv = memoryview(buf)
    struct.pack_into("<I", buf, off + _BODY, binascii.crc32(mv[off : off + _BODY]) & 0xFFFFFFFF)


def pack(seq, boot, up_ms, kind, sub=0, aux=0, arg=0):
    buf = bytearray(SIZE)
    pack_into(buf, 0, seq, boot, up_ms, kind, sub, aux, arg)
    return buf


def is_empty(buf, off=0):
    """True when the slot is still erased flash (all 0xFF)."""
    for i in range(off, off + SIZE):
        if buf[i] != 0xFF:
            return False
    return True


def valid(buf, off=0):
    """True when the slot holds a record whose CRC matches."""
    mv = memoryview(buf)
    (crc,) = struct.unpack_from("<I", buf, off + _BODY)
    return crc == binascii.crc32(mv[off : off + _BODY]) & 0xFFFFFFFF


def unpack(buf, off=0):
    """(seq, boot, up_ms, kind, sub, aux, arg), or None for an empty or corrupt slot."""
    if not valid(buf, off) or is_empty(buf, off):
        return None
    return struct.unpack_from(_FMT, buf, off)


def seq_of(buf, off=0):
    return struct.unpack_from("<I", buf, off)[0]
