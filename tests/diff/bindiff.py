#!/usr/bin/python3
"""bindiff.py — differential tester for the BINARY protocol: memkitd vs memcached 1.6.18.

    bindiff.py --memkitd PATH --sequences N [--seed S] [--name bindiff]
               [--memcached /usr/bin/memcached] [--verbose] [--keep-going]
               [--exclude KIND,...] [--server-args "-m 64 -t 2"]

Both servers are started with the same options. For each sequence i (RNG seeded
with S+i, so `--seed S+i --sequences 1` reproduces sequence i alone) a random
stream of binary request frames is generated and sent byte-identically to both
servers over a fresh connection (after a text `flush_all` on a control
connection); the response frames are compared.

A sequence is cut into segments at "sync points". A normal segment is sent (with
send and receive interleaved, so big values cannot deadlock) followed by a
marker NOOP whose opaque is 0xFEED0000+segment number, and response frames (24-
byte header + bodylen) are read until the marker's response, EOF (or reset) or a
2 s stall. Sync points sit before requests whose bytes depend on an earlier
response (a CAS with the server's own right cas value, learnt from an earlier
get), around >1 MB values, and before the FINAL segment.

Only the last segment of a sequence may make the connection unusable: quit(q),
bad magic, a key over 250 bytes, keylen+extlen > bodylen, wrong extlen/keylen/
bodylen for an opcode (memcached answers EINVAL and closes), frames cut short,
lying lengths, a text line. It is sent, preceded by 0-3 small well-formed
requests, in ONE write followed by shutdown(SHUT_WR), and read until EOF: the
server must close. Doing these only after a sync point, and in one small write,
keeps memcached deterministic: what it has flushed when it closes depends on
how the bytes were split into reads (it flushes pending responses when it runs
out of a complete header, and on every error response and NOOP; it does not
flush while it waits for a value, and a bad magic drops unflushed responses).

Generated traffic (kinds; --exclude takes these names): get/getq/getk/getkq,
set/add/replace(q) with flags and expirations, append/prepend(q), delete(q),
incr/decr(q) with initial value and expiration (0xffffffff = don't create),
CAS on set/add/replace/append/prepend/delete/incr with each server's own right
cas or a wrong one, touch/gat/gatq/gatk/gatkq, noop, version, flush(q) with and
without the 4-byte expiration, stat (no key, settings, items, slabs, sizes,
detail on/off/dump, reset, unknown groups), verbosity and other unknown opcodes,
SASL opcodes (no SASL configured), keys of 1..250 bytes including binary bytes,
values of 0..100 KB, >1 MB values (E2BIG, value swallowed), random cas in
requests that ignore it, nonzero datatype/vbucket bytes, segments dribbled in
1..40-byte writes, a quiet prefill of keys at the start, and the FINAL kinds above.

Normalization (the only differences tolerated):
  * cas fields are numbered by first appearance within the sequence, per server
    (#1, #2, ...; 0 stays 0). Equal values must stay equal, different ones
    different; the numbers themselves (each server's counter) are not compared.
  * VERSION (opcode 0x0b, status 0) bodies -> "<v>".
  * STAT (opcode 0x10) responses with status 0 and a key are dropped: the stats
    differ between servers. The request's status, the opaque and the empty
    terminating STAT frame (or the error frame) are still compared.
  * incr/decr padding: a get-family value that is digits followed by spaces
    loses the spaces. memcached rewrites an incr/decr result in place, space-
    padded to the old length, only when it holds the sole reference to the item;
    an unsent get response or its LRU maintainer holding a reference makes it
    allocate an exact-length item instead, so memcached differs from itself
    here. (Keys touched by incr/decr are never appended/prepended to, so the
    padding never becomes visible anywhere else; tests/blackbox/test_binary.py
    pins the padding in the deterministic one-request-at-a-time case.)
  * EOF and connection reset both count as "closed".
Things avoided because memcached 1.6.18 is not deterministic there: values
>= 2^63 and all-whitespace values under incr/decr (safe_strtoull looks past the
item's data), delayed flushes not immediately followed by a flush (a delayed
flush cancels an earlier flush until the delay passes, so flushed items may or
may not have been reclaimed by the LRU maintainer in between), expirations that
would fire during a run, stat keys shorter than the group name they start
("re", "detail": memcached's strncmp(key, "reset", 5) etc. read past the key).
Left out as a memcached artefact: keys over ~16 KB (they overflow memcached's
16 KB read buffer and it closes without an answer; 251..4000 bytes are sent).

memcached 1.6.18 quirks the generator exercises on purpose (so a server that
matches it byte for byte must reproduce them):
  * an unknown opcode (0x1b VERBOSITY included) answers 0x0081 "Unknown command"
    and then discards `bodylen` bytes counted from the END of extras+key, i.e.
    keylen+extlen bytes of what follows the frame. The generator appends exactly
    that many zero bytes (a bad magic if they are not swallowed).
  * STAT, TOUCH and GAT(K)(Q) do not check bodylen: value bytes after the key are
    read as the next request (kind unchecked_body; with junk bytes: kind lying).
  * a nonzero cas turns ADD into a CAS store; APPEND/PREPEND compare a nonzero cas.
  * responses still queued when memcached closes for a bad magic, or at EOF while
    it waits for a value, are lost (see above). To leave that out:
    --exclude bad_magic,cut,lying,text_line
"""

import hashlib
import random
import select
import socket
import struct
import sys
import time

HOST = "127.0.0.1"
STALL = 2.0
HDR = struct.Struct(">BBHBBHII")       # without the cas (packed separately: it may be resolved late)
REQ_MAGIC, RES_MAGIC = 0x80, 0x81
MARKER_BASE = 0xFEED0000

OP = dict(GET=0x00, SET=0x01, ADD=0x02, REPLACE=0x03, DELETE=0x04, INCR=0x05, DECR=0x06, QUIT=0x07,
          FLUSH=0x08, GETQ=0x09, NOOP=0x0a, VERSION=0x0b, GETK=0x0c, GETKQ=0x0d, APPEND=0x0e,
          PREPEND=0x0f, STAT=0x10, SETQ=0x11, ADDQ=0x12, REPLACEQ=0x13, DELETEQ=0x14, INCRQ=0x15,
          DECRQ=0x16, QUITQ=0x17, FLUSHQ=0x18, APPENDQ=0x19, PREPENDQ=0x1a, VERBOSITY=0x1b,
          TOUCH=0x1c, GAT=0x1d, GATQ=0x1e, SASL_LIST=0x20, SASL_AUTH=0x21, SASL_STEP=0x22,
          GATK=0x23, GATKQ=0x24)
OPNAME = {v: k for k, v in OP.items()}
VALUE_OPS = {OP["GET"], OP["GETQ"], OP["GETK"], OP["GETKQ"], OP["GAT"], OP["GATQ"], OP["GATK"], OP["GATKQ"]}

# ----------------------------------------------------------------- servers

import harness  # noqa: E402  (tests/diff/harness.py)


# ----------------------------------------------------------------- frames

CasRef = harness.CasRef


def frame(op, key=b"", ext=b"", val=b"", cas=0, opaque=0, magic=REQ_MAGIC, keylen=None, extlen=None,
          bodylen=None, datatype=0, vbucket=0):
    """A request frame as parts: [header-before-cas, cas (int or CasRef), extras+key+value].
    keylen/extlen/bodylen override the header fields (lying lengths) without changing the bytes."""
    kl = len(key) if keylen is None else keylen
    el = len(ext) if extlen is None else extlen
    bl = len(ext) + len(key) + len(val) if bodylen is None else bodylen
    head = HDR.pack(magic, op, kl & 0xffff, el & 0xff, datatype, vbucket, bl & 0xffffffff, opaque)
    return [head, cas, ext + key + val]


def resolve(parts, table):
    out = []
    for p in parts:
        if isinstance(p, CasRef):
            u = p.value(table)
            out.append(struct.pack(">Q", u))
        elif isinstance(p, int):
            out.append(struct.pack(">Q", p))
        else:
            out.append(p)
    return b"".join(out)


def parse_frames(data):
    """Split response bytes into frames; returns (frames, trailing_bytes)."""
    frames = []
    i = 0
    while len(data) - i >= 24:
        magic, op, kl, el, dt, st, bl, opq = HDR.unpack_from(data, i)
        cas = struct.unpack_from(">Q", data, i + 16)[0]
        if len(data) - i - 24 < bl:
            break
        body = data[i + 24:i + 24 + bl]
        frames.append(dict(magic=magic, op=op, keylen=kl, extlen=el, dt=dt, st=st, bodylen=bl, opaque=opq,
                           cas=cas, ext=body[:el], key=body[el:el + kl], val=body[el + kl:]))
        i += 24 + bl
    return frames, data[i:]


# ----------------------------------------------------------------- generator

SYNC = object()          # segment boundary
FINAL = object()         # the segment holding this marker is the last one: one write + SHUT_WR, read to EOF
DRIBBLE = object()       # send this segment in small writes

# kind -> weight. The FINAL_KINDS end a sequence.
KINDS = {
    "get": 10, "getq": 4, "getk": 4, "getkq": 4, "set": 12, "setq": 3, "add": 4, "addq": 2,
    "replace": 4, "replaceq": 2, "append": 4, "prepend": 3, "appendq": 2, "prependq": 2,
    "delete": 5, "deleteq": 2, "incr": 6, "decr": 5, "incrq": 2, "decrq": 2, "number_set": 6,
    "cas_right": 4, "cas_wrong": 3, "cas_missing": 1, "touch": 3, "gat": 3, "gatq": 2, "gatk": 2,
    "gatkq": 2, "noop": 2, "version": 1, "flush": 1, "flush_delay": 0.7, "stat": 1.5,
    "unknown": 1.5, "sasl": 0.5, "ignored_cas": 1, "odd_header": 1, "big_value": 1.5, "too_large": 0.3,
    "multiget": 2, "dribble": 1, "prefill": 0.5, "unchecked_body": 0.7,
    # final kinds
    "quit": 0.4, "bad_magic": 0.4, "longkey": 0.4, "short_body": 0.4, "wrong_lengths": 1.0,
    "cut": 0.5, "lying": 0.5, "text_line": 0.2,
}
FINAL_KINDS = {"quit", "bad_magic", "longkey", "short_body", "wrong_lengths", "cut", "lying", "text_line"}

ALPHABET = b"abcdxyz0123456789_.-ABC"
# Stored numbers stay below 2^63 (see module doc); "" / "abc" / "12x" / 2^64 are non-numeric.
NUMBERS = [b"0", b"1", b"7", b"99", b"100", b"1000", b"007", b" 5", b"5 ", b"+3", b"abc", b"",
           b"18446744073709551616", b"184467440737095516150", b"4294967296", b"12x"]
DELTAS = [0, 1, 1, 5, 100, 2 ** 32]
INITIALS = [0, 1, 10, 99, 1000, 2 ** 32, 2 ** 40, 123456789]
INCR_EXP = [0, 0, 0xffffffff, 0xffffffff, 100, 2592001]
# 0 = never; 100/1000/2592000 relative (never fire during a run); 2592001 and 1000000000 are
# absolute times in the past (expired at once); 0xffffffff an absolute time far ahead.
EXPTIMES = [0] * 8 + [100, 1000, 2592000, 2592001, 1000000000, 0xffffffff]
FLAGS = [0, 0, 1, 42, 65535, 0x80000000, 0xffffffff]
FLUSH_DELAYS = [1, 100, 2592001, 0xffffffff]
STAT_KEYS = [b"", b"", b"settings", b"items", b"slabs", b"sizes", b"detail on", b"detail off", b"detail dump",
             b"reset", b"bogus", b"conns", b"detail xyz"]
UNKNOWN_OPS = [0x1b, 0x1b, 0x1f, 0x25, 0x30, 0x31, 0x3c, 0x3d, 0x48, 0x89, 0xfe]
KEYS = [b"k%d" % i for i in range(6)]                  # strings: set/append/prepend/get...
NKEYS = [b"n%d" % i for i in range(4)]                 # numbers: incr/decr; never appended to
SPECIAL_KEYS = [b"K" * 250, b"L" * 100, b"x", b"k\x00\r\n \xff", b"\x80\x81", b"get k0\r\n"]
MISSING = [b"m0", b"m1"]                        # never incremented (see module doc)
NMISSING = b"n_missing"
GETOPS = ["GET", "GETQ", "GETK", "GETKQ"]


class Gen:
    def __init__(self, rng, exclude):
        self.r = rng
        names = [k for k in KINDS if k not in exclude]
        self.kinds = names
        self.weights = [KINDS[k] for k in names]
        self.normal = [k for k in names if k not in FINAL_KINDS]
        self.normal_w = [KINDS[k] for k in self.normal]
        self.opq = rng.randint(1, 1000)
        self.excluded = exclude
        self.opkeys = {}        # opaque -> key, for learning cas values from responses

    # -- pieces
    def _opaque(self, key=None):
        self.opq += 1
        if key is not None:
            self.opkeys[self.opq] = key
        return self.opq

    def skey(self):
        r = self.r.random()
        if r < 0.06:
            return self.r.choice(SPECIAL_KEYS)
        if r < 0.12:
            return self.r.choice(MISSING)
        return self.r.choice(KEYS)

    def nkey(self):
        return self.r.choice(NKEYS + [NMISSING])

    def anykey(self):
        return self.nkey() if self.r.random() < 0.3 else self.skey()

    def value_for(self, key):
        """Keys under incr/decr get numbers or short strings (no big binary values)."""
        if key in NKEYS or key == NMISSING:
            return self.value(numeric=self.r.random() < 0.7, small=True)
        return self.value()

    def value(self, numeric=False, small=False):
        r = self.r.random()
        if numeric or r < 0.3:
            return self.r.choice(NUMBERS)
        if r < 0.33 and not small:
            n = self.r.choice([1000, 5000, 20000])
            return bytes(self.r.getrandbits(8) for _ in range(16)) * (n // 16)
        n = self.r.choice([0, 1, 2, 3, 5, 8, 13, 30, 100, 300])
        return bytes(self.r.choice(ALPHABET) for _ in range(n))

    def big_value(self):
        n = self.r.randint(30_000, 100_000)
        pat = bytes(self.r.getrandbits(8) for _ in range(64))
        return (pat * (n // 64 + 1))[:n]

    def storage(self, opname, key, value, cas=0):
        ext = struct.pack(">II", self.r.choice(FLAGS), self.r.choice(EXPTIMES))
        return frame(OP[opname], key, ext, value, cas=cas, opaque=self._opaque(key))

    def incr(self, opname, key, cas=0):
        ext = struct.pack(">QQI", self.r.choice(DELTAS), self.r.choice(INITIALS), self.r.choice(INCR_EXP))
        return frame(OP[opname], key, ext, cas=cas, opaque=self._opaque(key))

    def get(self, opname, key):
        return frame(OP[opname], key, opaque=self._opaque(key))

    def gat(self, opname, key):
        return frame(OP[opname], key, struct.pack(">I", self.r.choice(EXPTIMES)), opaque=self._opaque(key))

    # -- sequence
    def sequence(self):
        out = []
        n = self.r.randint(5, 40)
        for i in range(n):
            if i == 0:      # the first byte must be 0x80 for the connection to speak binary
                if self.r.random() < 0.7 and "prefill" not in self.excluded:
                    kind = "prefill"
                else:
                    kind = self.r.choices(self.normal, self.normal_w)[0]
            else:
                kind = self.r.choices(self.kinds, self.weights)[0]
            parts = self.command(kind)
            out.extend(parts)
            if kind in FINAL_KINDS:
                break
        return out

    def small_normal_frames(self):
        out = []
        for _ in range(self.r.choice([0, 0, 1, 2, 3])):
            k = self.r.choice(["get", "getq", "getk", "set", "setq", "delete", "noop", "incr"])
            if k == "set" or k == "setq":
                out += self.storage(k.upper(), self.skey(), self.value()[:100])
            elif k == "noop":
                out += frame(OP["NOOP"], opaque=self._opaque())
            elif k == "incr":
                out += self.incr("INCR", self.nkey())
            elif k == "delete":
                out += frame(OP["DELETE"], self.skey(), opaque=self._opaque())
            else:
                out += self.get(k.upper(), self.skey())
        return out

    def command(self, kind):  # noqa: C901 - a big dispatch is the clearest here
        r = self.r
        if kind in ("get", "getq", "getk", "getkq"):
            return self.get(kind.upper(), self.anykey())
        if kind in ("set", "setq", "add", "addq", "replace", "replaceq"):
            k = self.anykey()
            return self.storage(kind.upper(), k, self.value_for(k))
        if kind == "number_set":
            return self.storage(r.choice(["SET", "SET", "ADD", "REPLACE"]), self.nkey(), self.value(numeric=True))
        if kind in ("append", "prepend", "appendq", "prependq"):
            k = self.skey()
            return frame(OP[kind.upper()], k, val=self.value(), opaque=self._opaque(k))
        if kind in ("delete", "deleteq"):
            k = self.anykey()
            return frame(OP[kind.upper()], k, opaque=self._opaque(k))
        if kind in ("incr", "decr", "incrq", "decrq"):
            return self.incr(kind.upper(), self.nkey())
        if kind in ("touch", "gat", "gatq", "gatk", "gatkq"):
            return self.gat(kind.upper(), self.anykey())
        if kind == "prefill":
            # store a handful of keys quietly, so that later requests find something
            out = []
            for k in r.sample(KEYS + NKEYS, r.randint(3, 8)):
                out += self.storage(r.choice(["SETQ", "SETQ", "SET"]), k, self.value_for(k))
            return out
        if kind == "multiget":
            out = []
            for _ in range(r.randint(2, 30)):
                out += self.get(r.choice(["GETQ", "GETKQ", "GETKQ", "GETK"]), self.anykey())
            return out + self.get(r.choice(["GET", "GETK"]), self.anykey())
        if kind in ("cas_right", "cas_wrong", "cas_missing"):
            numeric = r.random() < 0.3
            k = r.choice(NKEYS) if numeric else r.choice(KEYS)
            if kind == "cas_missing":
                k = r.choice(MISSING)
            wrong = kind == "cas_wrong"
            ref = CasRef(k, wrong)
            if numeric:
                op = r.choice(["SET", "ADD", "REPLACE", "DELETE", "INCR", "DECR", "SETQ", "INCRQ"])
            else:
                op = r.choice(["SET", "ADD", "REPLACE", "APPEND", "PREPEND", "DELETE", "SETQ", "APPENDQ",
                               "DELETEQ"])
            if op in ("INCR", "DECR", "INCRQ"):
                f = self.incr(op, k, cas=ref)
            elif op in ("APPEND", "PREPEND", "APPENDQ"):
                f = frame(OP[op], k, val=self.value(), cas=ref, opaque=self._opaque(k))
            elif op in ("DELETE", "DELETEQ"):
                f = frame(OP[op], k, cas=ref, opaque=self._opaque(k))
            else:
                f = self.storage(op, k, self.value_for(k), cas=ref)
            if kind == "cas_right":
                return self.get(r.choice(["GET", "GETK"]), k) + [SYNC] + f
            return f
        if kind == "noop":
            return frame(OP["NOOP"], opaque=r.choice([0, 0xffffffff, self._opaque()]))
        if kind == "version":
            return frame(OP["VERSION"], opaque=self._opaque())
        if kind == "flush":
            op = OP[r.choice(["FLUSH", "FLUSHQ"])]
            ext = r.choice([b"", b"", b"\0\0\0\0"])
            return frame(op, ext=ext, opaque=self._opaque())
        if kind == "flush_delay":
            # a delayed flush, immediately overridden by a flush now (see module doc)
            d = struct.pack(">I", r.choice(FLUSH_DELAYS))
            return (frame(OP[r.choice(["FLUSH", "FLUSHQ"])], ext=d, opaque=self._opaque())
                    + frame(OP[r.choice(["FLUSH", "FLUSHQ"])], ext=r.choice([b"", b"\0\0\0\0"]),
                            opaque=self._opaque()))
        if kind == "stat":
            return frame(OP["STAT"], r.choice(STAT_KEYS), opaque=self._opaque())
        if kind == "unknown":
            # memcached swallows bodylen bytes *after* extras and key: keylen+extlen bytes too many.
            # The filler is exactly that long; zero bytes read as a bad magic if they are not swallowed.
            op = r.choice(UNKNOWN_OPS)
            if op == 0x1b:
                ext, key, val = struct.pack(">I", r.choice([0, 1, 5])), b"", b""
            else:
                ext = r.choice([b"", b"", b"abcd"])
                key = r.choice([b"", b"", b"k0"])
                val = r.choice([b"", b"val", b"v" * 40])
            return frame(op, key, ext, val, opaque=self._opaque()) + [b"\0" * (len(key) + len(ext))]
        if kind == "sasl":
            c = r.random()
            if c < 0.4:
                return frame(OP["SASL_LIST"], opaque=self._opaque())
            # with a mechanism key: UNKNOWN_COMMAND, the value (bodylen-keylen) swallowed exactly
            return frame(OP[r.choice(["SASL_AUTH", "SASL_STEP"])], b"PLAIN", val=r.choice([b"", b"\0u\0p"]),
                         opaque=self._opaque())
        if kind == "ignored_cas":
            # cas in requests that do not use it
            c = r.getrandbits(64)
            op = r.choice(["GET", "GETK", "TOUCH", "GAT", "NOOP", "VERSION", "STAT"])
            if op in ("GET", "GETK"):
                k = self.anykey()
                return frame(OP[op], k, cas=c, opaque=self._opaque(k))
            if op in ("TOUCH", "GAT"):
                k = self.anykey()
                return frame(OP[op], k, struct.pack(">I", 0), cas=c, opaque=self._opaque(k))
            return frame(OP[op], cas=c, opaque=self._opaque())
        if kind == "odd_header":
            # nonzero datatype / vbucket bytes in the request
            k = self.anykey()
            f = r.choice([self.get("GET", k), self.storage("SET", k, self.value_for(k)), self.get("GETK", k)])
            head = bytearray(f[0])
            head[5] = r.choice([1, 2, 0xff])
            head[6:8] = struct.pack(">H", r.choice([1, 0x1234, 0xffff]))
            return [bytes(head)] + f[1:]
        if kind == "big_value":
            k = self.skey()
            f = self.storage(r.choice(["SET", "SET", "ADD", "REPLACE"]), k, self.big_value())
            if r.random() < 0.5:
                f += self.get(r.choice(GETOPS), k)
            return f
        if kind == "too_large":
            k = self.skey()
            n = 1024 * 1024 + r.randint(1, 1000)
            op = r.choice(["SET", "SETQ", "ADD", "REPLACE", "APPEND", "PREPENDQ"])
            if op in ("APPEND", "PREPENDQ"):
                f = frame(OP[op], k, val=b"z" * n, opaque=self._opaque(k))
            else:
                f = self.storage(op, k, b"z" * n)
            return [SYNC] + f + self.get("GETK", k) + [SYNC]
        if kind == "unchecked_body":
            # STAT, TOUCH and GAT(K)(Q) do not check bodylen: the value bytes are read as the next request
            k = self.anykey()
            inner = r.choice([frame(OP["NOOP"], opaque=self._opaque()), self.get("GETK", k),
                              self.storage("SETQ", k, self.value_for(k)[:50])])
            op = r.choice(["STAT", "TOUCH", "GAT", "GATK", "GATQ", "GATKQ"])
            if op == "STAT":
                f = frame(OP[op], r.choice([b"", b"reset", b"settings", b"bogus"]), opaque=self._opaque())
            else:
                f = self.gat(op, k)
            f[2] += resolve(inner, {})
            head = bytearray(f[0])
            head[8:12] = struct.pack(">I", len(f[2]))
            return [bytes(head)] + f[1:]
        if kind == "dribble":
            out = [SYNC, DRIBBLE]
            for _ in range(r.randint(1, 6)):
                out += self.command(r.choice(["get", "set", "getkq", "incr", "append", "delete", "stat",
                                              "unknown", "gatk", "version"]))
            return out + [SYNC]

        # ---------------------------------------------------------- final kinds
        pre = [SYNC, FINAL] + self.small_normal_frames()
        if kind == "quit":
            return pre + frame(OP[r.choice(["QUIT", "QUITQ"])], opaque=self._opaque()) \
                + r.choice([[], frame(OP["NOOP"], opaque=self._opaque())])
        if kind == "bad_magic":
            magic = r.choice([0x81, 0x00, 0x7f, 0x8f, ord("g"), 0xff])
            f = frame(r.choice([OP["GET"], OP["NOOP"], OP["SET"]]), r.choice([b"", b"k0"]), magic=magic,
                      opaque=self._opaque())
            return pre + f + r.choice([[], frame(OP["NOOP"], opaque=self._opaque())])
        if kind == "longkey":
            n = r.choice([251, 252, 300, 1000, 4000])
            k = b"K" * n
            op = r.choice(["GET", "GETQ", "GETK", "SET", "ADDQ", "DELETE", "INCR", "TOUCH", "APPEND", "STAT",
                           "GATKQ"])
            if op in ("SET", "ADDQ"):
                f = self.storage(op, k, self.value())
            elif op == "INCR":
                f = self.incr(op, k)
            elif op in ("TOUCH", "GATKQ"):
                f = self.gat(op, k)
            elif op == "APPEND":
                f = frame(OP[op], k, val=b"x", opaque=self._opaque())
            else:
                f = frame(OP[op], k, opaque=self._opaque())
            return pre + f + frame(OP["NOOP"], opaque=self._opaque())
        if kind == "short_body":
            # keylen + extlen > bodylen (and keylen > bodylen): UNKNOWN_COMMAND, then close
            k = r.choice(KEYS)
            op = r.choice(["GET", "SET", "DELETE", "INCR", "NOOP", "STAT", "TOUCH", 0x40])
            opc = op if isinstance(op, int) else OP[op]
            ext = {"SET": b"\0" * 8, "INCR": b"\0" * 20, "TOUCH": b"\0" * 4}.get(op, b"")
            full = len(k) + len(ext)
            bl = r.randint(0, full - 1)
            return pre + frame(opc, k, ext, bodylen=bl, opaque=self._opaque()) + [b"\0" * r.choice([0, 8, 30])]
        if kind == "wrong_lengths":
            return pre + self.wrong_lengths() + r.choice([[], frame(OP["NOOP"], opaque=self._opaque())])
        if kind == "cut":
            # alone in its segment: memcached holds back the responses to complete requests while it waits
            # for the rest of a value, and drops them when the client hangs up; memkitd sends them first
            # (docs/protocol.md, binary protocol differences)
            k = self.anykey()
            f = r.choice([self.get("GET", k), self.storage("SET", k, self.value_for(k)), self.incr("INCR", k),
                          frame(OP["NOOP"], opaque=self._opaque()), frame(OP["APPEND"], k, val=b"abcdef")])
            b = resolve(f, {})
            return [SYNC, FINAL] + [b[:r.randint(1, len(b) - 1)]]
        if kind == "lying":
            if r.random() < 0.3:
                # requests that do not check bodylen, with junk after the key: read as the next header
                k = r.choice(KEYS)
                return pre + r.choice([frame(OP["STAT"], b"items", val=b"extra", opaque=self._opaque()),
                                       frame(OP["GATQ"], k, b"\0\0\0\x05", b"trailing", opaque=self._opaque()),
                                       frame(OP["TOUCH"], k, b"\0\0\0\0", b"\x80", opaque=self._opaque())])
            k = self.skey()
            v = self.value()
            f = self.storage(r.choice(["SET", "ADD", "SETQ"]), k, v)
            head = bytearray(f[0])
            real = 8 + len(k) + len(v)
            bl = r.choice([real + r.randint(1, 100), max(8 + len(k), real - r.randint(1, 30))])
            head[8:12] = struct.pack(">I", bl)
            tail = r.choice([[], frame(OP["NOOP"], opaque=self._opaque()), self.get("GETK", k)])
            if bl > real:  # the server waits for more value: alone in its segment, as "cut" (see there)
                pre = [SYNC, FINAL]
            return pre + [bytes(head)] + f[1:] + tail
        if kind == "text_line":
            return pre + [r.choice([b"get k0\r\n", b"version\r\n", b"set k0 0 0 1\r\nx\r\nget k0\r\n",
                                    b"stats\r\n" + b"x" * 20])]
        raise AssertionError(kind)

    def wrong_lengths(self):
        """A request whose extlen/keylen/bodylen combination memcached rejects (EINVAL, close)
        or accepts in a surprising way (value left unread and parsed as the next request)."""
        r = self.r
        k = r.choice(KEYS)
        e4, e8, e20 = b"\0\0\0\x05", struct.pack(">II", 1, 0), struct.pack(">QQI", 1, 0, 0)
        choices = [
            (OP["GET"], k, e4, b""), (OP["GETQ"], k, b"", b"val"), (OP["GETK"], b"", b"", b""),
            (OP["GET"], b"", b"", b"val"),
            (OP["SET"], k, b"", b"v"), (OP["SET"], k, e4, b"v"), (OP["ADD"], k, e20, b"v"),
            (OP["SETQ"], b"", e8, b"v"), (OP["REPLACE"], k, e8[:7], b"v"),
            (OP["DELETE"], k, e4, b""), (OP["DELETE"], k, b"", b"v"), (OP["DELETE"], b"", b"", b""),
            (OP["INCR"], k, e8, b""), (OP["DECR"], k, e20, b"x"), (OP["INCRQ"], b"", e20, b""),
            (OP["INCR"], k, e20 + b"\0", b""),
            (OP["TOUCH"], k, b"", b""), (OP["GAT"], k, e8, b""), (OP["GATK"], b"", e4, b""),
            (OP["APPEND"], k, e4, b"v"), (OP["PREPEND"], b"", b"", b"v"),
            (OP["FLUSH"], b"", b"\0\0", b""), (OP["FLUSH"], b"", e8, b""), (OP["FLUSHQ"], k, b"", b""),
            (OP["FLUSH"], b"", b"", b"v"),
            (OP["NOOP"], b"", e4, b""), (OP["NOOP"], b"", b"", b"v"), (OP["VERSION"], k, b"", b""),
            (OP["QUIT"], b"", b"", b"v"), (OP["QUITQ"], b"", e4, b""),
            (OP["STAT"], b"", e4, b""),
            (OP["SASL_LIST"], b"", b"", b"x"), (OP["SASL_AUTH"], b"", b"", b"x"),
            (OP["SASL_STEP"], b"PLAIN", e4, b"x"),
        ]
        op, key, ext, val = r.choice(choices)
        return frame(op, key, ext, val, opaque=self._opaque())


def segments(parts):
    """[(parts, final, dribble)]"""
    segs, cur, final, dribble = [], [], False, False
    for p in parts:
        if p is SYNC:
            if cur:
                segs.append((cur, final, dribble))
            cur, final, dribble = [], False, False
        elif p is FINAL:
            final = True
        elif p is DRIBBLE:
            dribble = True
        else:
            cur.append(p)
    if cur:
        segs.append((cur, final, dribble))
    return segs


# ----------------------------------------------------------------- normalization

def _short(b, n=80):
    if len(b) <= n:
        return repr(b)
    return f"<{len(b)} bytes sha1:{hashlib.sha1(b).hexdigest()[:12]} {b[:24]!r}...>"


def normalize(data, how, casmap):
    """Response bytes of one segment -> list of comparable lines."""
    frames, rest = parse_frames(data)
    out = []
    for f in frames:
        if f["op"] == OP["STAT"] and f["st"] == 0 and f["keylen"] > 0 and f["magic"] == RES_MAGIC:
            continue
        cas = f["cas"]
        if cas:
            if cas not in casmap:
                casmap[cas] = len(casmap) + 1
            cas = f"#{casmap[cas]}"
        val, bl = f["val"], f["bodylen"]
        if f["op"] == OP["VERSION"] and f["st"] == 0:
            val, bl = b"<v>", "<v>"
        elif f["op"] in VALUE_OPS and f["st"] == 0:
            s = val.rstrip(b" ")
            if s and s != val and s.isdigit():
                bl -= len(val) - len(s)
                val = s
        op = OPNAME.get(f["op"], hex(f["op"]))
        out.append(f"magic={f['magic']:#x} op={op} st={f['st']:#06x} dt={f['dt']} extlen={f['extlen']} "
                   f"keylen={f['keylen']} bodylen={bl} opaque={f['opaque']:#x} cas={cas} "
                   f"ext={f['ext'].hex()} key={_short(f['key'])} val={_short(val)}")
    if rest:
        out.append(f"TRAILING {_short(rest, 200)}")
    out.append(f"<{how}>")
    return out


def describe(data):
    """Raw response bytes -> human-readable lines (no normalization)."""
    frames, rest = parse_frames(data)
    out = []
    for f in frames:
        out.append(f"{OPNAME.get(f['op'], hex(f['op']))} st={f['st']:#06x} opaque={f['opaque']:#x} "
                   f"cas={f['cas']} ext={f['ext'].hex()} key={_short(f['key'])} val={_short(f['val'])}")
    if rest:
        out.append(f"TRAILING {_short(rest, 200)}")
    return out


# ----------------------------------------------------------------- running

def exchange(sock, data, marker, final, dribble):
    # dribble: None, or a random.Random giving the piece sizes
    """Send `data` (in small pieces when dribbling) while reading; stop at the marker's response,
    at EOF/reset, or after a STALL without progress. Returns (bytes, how, send_ok)."""
    sock.setblocking(False)
    buf = bytearray()
    sent = 0
    send_ok = True
    pos = 0
    deadline = time.monotonic() + STALL
    shut = False
    while True:
        if marker is not None:
            while len(buf) - pos >= 24:
                bl = struct.unpack_from(">I", buf, pos + 8)[0]
                if len(buf) - pos - 24 < bl:
                    break
                if buf[pos] == RES_MAGIC and buf[pos + 1] == OP["NOOP"] and \
                        struct.unpack_from(">I", buf, pos + 12)[0] == marker:
                    return bytes(buf), "ok", send_ok
                pos += 24 + bl
        if sent >= len(data) and final and not shut:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            shut = True
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(buf), "stall", send_ok
        wl = [sock] if sent < len(data) else []
        try:
            rl, wl, _ = select.select([sock], wl, [], min(left, 0.05 if dribble else left))
        except (OSError, ValueError):
            return bytes(buf), "closed", send_ok
        if wl:
            n = dribble.randint(1, 40) if dribble else 1 << 20
            try:
                k = sock.send(data[sent:sent + n])
                sent += k
                deadline = time.monotonic() + STALL
                if dribble:
                    time.sleep(0.0005)
            except (BrokenPipeError, ConnectionResetError, OSError):
                sent = len(data)
                send_ok = False
        if rl:
            try:
                d = sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except (ConnectionResetError, OSError):
                return bytes(buf), "closed", send_ok
            if not d:
                return bytes(buf), "closed", send_ok
            buf += d
            deadline = time.monotonic() + STALL


class Side(harness.SideBase):

    def begin(self, seed, opkeys):
        self.seed = seed
        harness.flush_all(self.server)
        self.sock = self.server.connect()
        self.closed = False
        self.table = {}
        self.casmap = {}
        self.opkeys = opkeys
        self.log = []       # (sent, raw_reply, how)

    def run_segment(self, idx, seg):
        parts, final, dribble = seg
        data = resolve(parts, self.table)
        marker = None
        if not final:
            marker = MARKER_BASE + idx
            data += resolve(frame(OP["NOOP"], opaque=marker), {})
        if self.closed:
            self.log.append((data, b"", "closed-before"))
            return
        rep, how, ok = exchange(self.sock, data, marker, final,
                                random.Random(f"{self.seed}/{idx}") if dribble else None)
        if how == "closed":
            self.closed = True
        self.learn(rep)
        self.log.append((data, rep, how))

    def learn(self, rep):
        frames, _ = parse_frames(rep)
        for f in frames:
            if f["magic"] == RES_MAGIC and f["st"] == 0 and f["cas"] and f["opaque"] in self.opkeys:
                self.table[self.opkeys[f["opaque"]]] = f["cas"]

    def normalized(self):
        return [normalize(rep, how, self.casmap) for _, rep, how in self.log]


def run_sequence(seed, parts, opkeys, sides):
    for s in sides:
        s.begin(seed, opkeys)

    def step(idx, seg):
        for s in sides:
            s.run_segment(idx, seg)
    return harness.play(sides, segments(parts), step)


def show_divergence(seed, sides, a, b, out):
    def replies(label, raw, how, out):
        out.write(f"{label} : [{how}]\n")
        for line in describe(raw):
            out.write(f"    {line}\n")

    harness.show_segments(seed, sides, a, b, out, lambda sent: _short(sent, 600), replies, lambda seg: seg)


def main():
    ap = harness.arg_parser(__doc__, "bindiff", KINDS)
    args = ap.parse_args()

    def run_seed(seed, exclude, sides):
        gen = Gen(random.Random(seed), exclude)
        return run_sequence(seed, gen.sequence(), gen.opkeys, sides)

    def write_log(side, out):
        for sent, rep, how in side.log:
            out.write(f"  > {_short(sent, 400)}\n")
            for line in describe(rep):
                out.write(f"  < {line}\n")
            out.write(f"  < [{how}]\n")

    return harness.run(ap, args, KINDS, Side, run_seed, show_divergence, write_log,
                       lambda n: f"note: {n} segment(s) of memcached ended by a {STALL}s stall instead of "
                                 f"the marker or EOF")


if __name__ == "__main__":
    sys.exit(main())
