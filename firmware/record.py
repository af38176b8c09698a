# SPDX-License-Identifier: MIT
# The journal record: one definition, used by the bulb (MicroPython) and the server (CPython).
# A record is 24 bytes, stored in flash and sent on the wire exactly as they are.
# It must never change shape without a new VERSION: bulbs in the field keep the old one.
#
#  off  size  field
#    0   u32  seq      sequence number, strictly increasing over the journal's life (K_ACK: the
#                      seq of the record before it, see below)
#    4   u32  boot     boot number (one per power-on), never repeats
#    8   u32  up_ms    time since this boot, milliseconds: time.ticks_ms(), which wraps at
#                      UP_WRAP_MS (2^30 on the ESP32 and every 32-bit port: 12.4 days)
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
# The period of up_ms (and of the batch header's up_ms): MicroPython's ticks period,
# MICROPY_PY_TIME_TICKS_PERIOD = MP_SMALL_INT_POSITIVE_MASK + 1 = 2^30 on a 32-bit port. The
# server unwraps uptimes with it; a bulb must write a record at least this often while lit.
UP_WRAP_MS = const(1 << 30)
EMPTY = const(0xFFFFFFFF)

K_POWER_ON = const(1)  # sub: machine.reset_cause(); aux: R_* why; arg: firmware version
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
K_OTA = const(10)  # a firmware update step (docs/ota.md): sub O_*; aux: reason U_*; arg: version

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
    10: "ota",
}

# why a boot that was not a power-on happened (aux of K_POWER_ON; safemode.py keeps the reason
# in RTC memory across the reset). machine.reset_cause() alone cannot tell them apart: the
# ESP32 port reports machine.reset() and a panic both as HARD_RESET, and a brown-out as
# PWRON_RESET (ports/esp32/modmachine.c mp_machine_reset_cause).
R_NONE = const(0)  # a power-on (or a brown-out: the same to the bulb), or a watchdog reset
R_CRASH = const(1)  # the firmware reset itself after an exception (counted towards safe mode)
R_RETRY = const(2)  # safe mode's retry of a normal boot after safe_mode_s
R_RESTART = const(3)  # a deliberate restart: new settings, provisioning done
R_PANIC = const(4)  # HARD_RESET with no reason left: a panic (a C-level crash), not ours

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


# firmware updates (sub of K_OTA; docs/ota.md). arg: the version concerned; aux: U_* or 0
O_INSTALLED = const(1)  # verified and switched to: the next boot runs it; aux: version left
O_CONFIRMED = const(2)  # the new version reached the server: its trial is over
O_ROLLBACK = const(3)  # back to the previous version by itself; aux: U_CRASH, U_NO_SERVER, U_BROKEN
O_REFUSED = const(4)  # a release not installed; aux: U_SIGNATURE, U_DIGEST, U_RUNTIME, U_SPACE...
U_CRASH = const(1)  # safe_mode_after failed boots in a row on the new version
U_NO_SERVER = const(2)  # the new version never reached the server within its trial boots
U_BROKEN = const(3)  # its main.py is missing or let an exception out
U_SIGNATURE = const(4)  # the manifest's HMAC is not this bulb's server's
U_DIGEST = const(5)  # a downloaded file's SHA-256 or size differs from the manifest
U_RUNTIME = const(6)  # the release needs a newer MicroPython than the bulb runs
U_SPACE = const(7)  # not enough room on the filesystem beside the running version
U_MANIFEST = const(8)  # the manifest is not a valid one (JSON, fields, names)
OTA_NAMES = {1: "installed", 2: "confirmed", 3: "rollback", 4: "refused"}
REASON_NAMES = {1: "crash", 2: "no_server", 3: "broken", 4: "signature", 5: "digest",
                6: "runtime", 7: "space", 8: "manifest"}
