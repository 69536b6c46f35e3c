#!/usr/bin/python3
"""difftest.py — differential tester: memkitd vs memcached 1.6.18, byte for byte.

    difftest.py --memkitd PATH --sequences N [--seed S] [--name diff]
                [--memcached /usr/bin/memcached] [--verbose] [--keep-going]
                [--exclude KIND,...] [--big-numbers] [--server-args "-m 64 -t 2"]

Both servers are started with the same options. For each sequence i (RNG seeded
with S+i, so `--seed S+i --sequences 1` reproduces sequence i alone) a random
command sequence is generated, sent byte-identically to both servers over a fresh
connection (after `flush_all` on a control connection), and the replies compared.

A sequence is cut into segments at "sync points"; each segment is sent in one
write followed by the sentinel `version\\r\\n`, and replies are read up to the
sentinel's `VERSION ...\\r\\n` line (or EOF, or a 2 s stall). Sync points sit
before commands whose reply depends on what came back earlier (a `cas` with the
right unique, which needs the unique from a previous `gets`) or on memcached's
internal request batching (a get-family command with a too-long key discards
the unwritten replies of earlier commands in the same batch; kind
"longkey_get"), and around lines that
depend on read-buffer boundaries (long lines, >1 MB values).

Normalization (the only differences tolerated):
  * `VERSION <anything>` lines -> `VERSION <v>` (version strings differ; the
    sentinel is a `version` command).
  * CAS uniques in `VALUE <key> <flags> <bytes> <cas>` lines -> `#1`, `#2`, ...
    numbered by first appearance within the sequence, per server. So equal
    uniques must stay equal and different ones different, but the numbers
    themselves (each server's own counter) are not compared.
  * `cas` commands that need a real unique are sent with each server's own
    unique (taken from that server's earlier `gets`/`gats` reply); a deliberately
    wrong unique is that unique + 10^12 (or 10^15 when none was seen).
  * incr/decr padding: in a VALUE data block, spaces right after a leading run
    of digits are removed (and the byte count adjusted). memcached rewrites an
    incr/decr result in place, space-padded to the old length, only when it holds
    the sole reference to the item (refcount == 2); if a pipelined get's unsent
    reply or its LRU maintainer thread holds a reference at that instant, it
    allocates a new, exact-length item instead. That is timing dependent, so
    memcached differs from itself here. (tests/blackbox checks the padding in
    the deterministic, one-command-at-a-time case.)
Everything else — error strings, reply order, connection closes — must match
exactly.
"""

import random
import re
import select
import sys
import time

HOST = "127.0.0.1"
SENTINEL = b"version\r\n"
SENTINEL_RE = re.compile(rb"VERSION [^\r\n]*\r\n\Z")
STALL = 2.0

# ----------------------------------------------------------------- servers

import harness  # noqa: E402  (tests/diff/harness.py)


def _read_reply(sock, until_sentinel=True):
    """Read until the sentinel reply, EOF or a stall. Returns (bytes, how)."""
    buf = b""
    deadline = time.monotonic() + STALL
    while True:
        if until_sentinel and SENTINEL_RE.search(buf):
            return buf, "ok"
        left = deadline - time.monotonic()
        if left <= 0:
            return buf, "stall"
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            d = sock.recv(1 << 20)
        except (ConnectionResetError, OSError):
            return buf, "eof"
        if not d:
            return buf, "eof"
        buf += d
        deadline = time.monotonic() + STALL


def _send(sock, data):
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, OSError):
        return False


# ----------------------------------------------------------------- generator

CasRef = harness.CasRef


SYNC = object()          # segment boundary
U64MAX = 2 ** 64 - 1

# Command kinds; --exclude takes these names.
KINDS = {
    "get": 10, "gets": 6, "gat": 4, "gats": 3, "set": 12, "add": 4, "replace": 4,
    "append": 4, "prepend": 4, "cas_right": 4, "cas_wrong": 3, "cas_missing": 1,
    "incr": 6, "decr": 5, "number_set": 6, "touch": 4, "delete": 5, "flush_all": 1,
    "verbosity": 1, "unknown": 2, "wrong_tokens": 3, "bad_numbers": 3, "longkey": 2,
    "longkey_get": 1, "ctrl_key": 2, "bad_chunk": 3, "noreply": 4, "spaces": 2, "bare_lf": 3,
    "empty_line": 2, "int_truncation": 1, "long_line": 1, "too_large": 0.2, "quit": 0.5,
    "long_noeol": 0.3, "multiget_big": 0.5, "legacy_bget": 1, "flush_all_past": 0.5, "swallow_long_line": 0.2,
    "fatal_mid": 0.3,
    "mg": 8, "ms": 8, "md": 3, "ma": 4, "mn": 1, "meta_cas": 3, "meta_stale": 2, "meta_bad": 3,
}
META_MG_FLAGS = [b"v", b"f", b"s", b"t", b"h", b"k", b"c", b"q", b"u", b"O123", b"Oabc", b"T30", b"T0", b"N30",
                 b"R30", b"l", b"b"]
META_MS_FLAGS = [b"T0", b"T100", b"F7", b"F0", b"q", b"k", b"c", b"O9", b"I", b"MS", b"ME", b"MA", b"MP", b"MR"]
META_MA_FLAGS = [b"N0", b"N100", b"J5", b"J0", b"D2", b"D0", b"MI", b"MD", b"M+", b"M-", b"q", b"v", b"t", b"c",
                 b"k", b"O7", b"T100"]
META_BAD = [b"mg", b"mg k0 zz", b"mg k0 v v", b"mg k0 Tx", b"mg k0 N", b"mg k0 R-", b"mx k0", b"mgg k0",
            b"ms k0", b"ms k0 abc", b"ms k0 -1", b"ms k0 2 MX\r\nhi", b"ms k0 2 Fx\r\nhi", b"ms k0 2 Cx\r\nhi",
            b"ms k0 2 O" + b"o" * 40 + b"\r\nhi", b"ms k0 2 v v\r\nhi", b"md k0 v v", b"md k0 Cx",
            b"md k0 O" + b"o" * 40, b"ma k0 MX", b"ma k0 Dx", b"ma k0 Jx", b"ma k0 M", b"md", b"ma",
            b"mg k0 O" + b"o" * 40, b"ma k0 O" + b"o" * 40, b"mg " + b"K" * 251 + b" v", b"ms k0 2 G5\r\nhi",
            b"mg k0 " + b" ".join(b"O%d" % i for i in range(25)), b"mg a?b v b", b"ms k0 2 T1 T2\r\nhi",
            b"mn extra tokens", b"ms k0 2\r\nhiX"]

# Stored bytes never contain '-': memcached 1.6.18's incr/decr, for a value >= 2^63,
# looks for a '-' with strchr() over the non-NUL-terminated item data, i.e. into
# stale slab memory, so its answer depends on what earlier items left behind.
ALPHABET = "abcdxyz0123456789_."         # cannot spell any command name; no '-'
NUMBERS = [b"0", b"1", b"7", b"99", b"100", b"1000", b"007", b" 5", b"5 ", b"+3", b"abc", b"",
           b"18446744073709551616",
           b"184467440737095516150", b"4294967296", b"12x"]
DELTAS = [b"0", b"1", b"5", b"100", b"4294967296"]
# Values >= 2^63 (stored, or reached by incr from 2^63-1) hit memcached's strchr-into-stale-memory bug described above
# even when no '-' was ever stored (item headers hold binary times and counters),
# so memcached's incr/decr on them is not reproducible. Only with --big-numbers.
BIG_NUMBERS = [b"18446744073709551615", b"18446744073709551614", b"18446744073709551610",
               b"9223372036854775808", b"9223372036854775807", b"9223372036854775806"]
BIG_DELTAS = [b"18446744073709551615", b"9223372036854775808"]
BAD_DELTAS = [b"abc", b"-1", b"18446744073709551616", b"1.5", b""]
EXPTIMES = [b"0", b"0", b"0", b"100", b"1000", b"-1", b"2592000", b"2592001", b"1000000000"]
FLAGS = [b"0", b"0", b"1", b"42", b"65535", b"4294967295"]
UNKNOWN = [b"foo", b"sett k 0 0 1", b"GET k0", b"Set k0 0 0 1", b"gett k0", b"incrr k0 1",
           b"x", b"123", b"delete_all", b"\x01\x02\x03", b"get_k0", b"flush", b"\x7f"]


class Gen:
    def __init__(self, rng, exclude, big_numbers=False):
        self.r = rng
        self.numbers = NUMBERS + (BIG_NUMBERS if big_numbers else [])
        self.deltas = DELTAS + (BIG_DELTAS if big_numbers else [])
        names = [k for k in KINDS if k not in exclude]
        self.kinds = names
        self.weights = [KINDS[k] for k in names]
        self.keys = [b"k%d" % i for i in range(6)]
        self.seen_cas_keys = set()

    def key(self):
        r = self.r.random()
        if r < 0.03 and "longkey" not in self.excl:
            return b"K" * 250
        return self.r.choice(self.keys)

    def value(self):
        r = self.r.random()
        if r < 0.35:
            return self.r.choice(self.numbers)
        n = self.r.choice([0, 1, 2, 3, 5, 8, 13, 30, 100])
        return "".join(self.r.choice(ALPHABET) for _ in range(n)).encode()

    def eol(self):
        return b"\n" if self.r.random() < 0.1 else b"\r\n"

    def nr(self, p=0.15):
        return b" noreply" if self.r.random() < p else b""

    def storage(self, verb, key=None, value=None, cas=None, noreply=b""):
        key = key or self.key()
        value = self.value() if value is None else value
        flags = self.r.choice(FLAGS)
        exp = self.r.choice(EXPTIMES)
        line = [b"%s %s %s %s %d" % (verb, key, flags, exp, len(value))]
        if verb == b"cas":
            line.append(b" ")
            line.append(cas)
        line.append(noreply)
        return line + [self.eol(), value + b"\r\n"]

    def sequence(self, exclude):
        self.excl = exclude
        out = []
        n = self.r.randint(5, 40)
        for _ in range(n):
            kind = self.r.choices(self.kinds, self.weights)[0]
            parts, terminal = self.command(kind)
            out.extend(parts)
            if terminal:
                break
        return out

    def keys_list(self, lo=1, hi=5):
        return b" ".join(self.key() for _ in range(self.r.randint(lo, hi)))

    def command(self, kind):  # noqa: C901 - a big dispatch is the clearest here
        r = self.r
        eol = self.eol()
        if kind in ("get", "gets"):
            return [b"%s %s%s" % (kind.encode(), self.keys_list(), eol)], False
        if kind in ("gat", "gats"):
            return [b"%s %s %s%s" % (kind.encode(), r.choice(EXPTIMES), self.keys_list(), eol)], False
        if kind in ("set", "add", "replace", "append", "prepend"):
            return self.storage(kind.encode(), noreply=self.nr(0.1)), False
        if kind == "number_set":
            v = r.choice(self.numbers)
            return self.storage(b"set", value=v), False
        if kind == "cas_right":
            k = r.choice(self.keys)
            # gets, then (next segment) cas with this server's unique
            return ([b"gets %s\r\n" % k, SYNC] +
                    self.storage(b"cas", key=k, cas=CasRef(k, False), noreply=self.nr(0.1))), False
        if kind == "cas_wrong":
            k = r.choice(self.keys)
            return self.storage(b"cas", key=k, cas=CasRef(k, True), noreply=self.nr(0.1)), False
        if kind == "cas_missing":
            return self.storage(b"cas", key=b"nokey%d" % r.randint(0, 9),
                                cas=r.choice([b"1", b"0", b"99999"])), False
        if kind in ("incr", "decr"):
            d = r.choice(self.deltas)
            return [b"%s %s %s%s%s" % (kind.encode(), self.key(), d, self.nr(0.1), eol)], False
        if kind == "touch":
            return [b"touch %s %s%s%s" % (self.key(), r.choice(EXPTIMES), self.nr(0.1), eol)], False
        if kind == "delete":
            tail = r.choice([b"", b"", b"", b" 0", b" noreply", b" 0 noreply", b" 5", b" x y"])
            return [b"delete %s%s%s" % (self.key(), tail, eol)], False
        if kind == "flush_all":
            # no positive delay: delayed flushes are time dependent
            a = r.choice([b"", b" 0", b" -1", b" noreply", b" 0 noreply", b" abc", b" 1 2 3"])
            return [b"flush_all%s%s" % (a, eol)], False
        if kind == "verbosity":
            a = r.choice([b" 0", b" 1", b" 0 noreply", b"", b" abc", b" 1 2", b" 1 2 3"])
            return [b"verbosity%s%s" % (a, eol)], False
        if kind == "unknown":
            return [r.choice(UNKNOWN) + eol], False
        if kind == "wrong_tokens":
            k = self.key()
            line = r.choice([b"set %s" % k, b"set %s 0 0" % k, b"set %s 0 0 1 2 3" % k,
                             b"cas %s 0 0 1" % k, b"get", b"gets", b"gat", b"gats", b"gat 0",
                             b"incr", b"incr %s" % k, b"decr %s 1 2 3" % k, b"touch",
                             b"touch %s" % k, b"touch %s 0 noreply x" % k, b"delete",
                             b"append %s 0" % k, b"verbosity"])
            follow = b"x\r\n" if r.random() < 0.5 else b""
            return [line + eol + follow], False
        if kind == "bad_numbers":
            k = self.key()
            line = r.choice([
                b"set %s 0 0 abc" % k, b"set %s 0 0 -1" % k, b"set %s abc 0 1" % k,
                b"set %s -1 0 1" % k, b"set %s 0 abc 1" % k, b"set %s 0 1.5 1" % k,
                b"cas %s 0 0 1 abc" % k, b"cas %s 0 0 1 -1" % k, b"touch %s abc" % k,
                b"gat abc %s" % k, b"gats -x %s" % k,
                b"incr %s %s" % (k, r.choice(BAD_DELTAS)), b"decr %s %s" % (k, r.choice(BAD_DELTAS)),
                b"flush_all xyz", b"verbosity -"])
            follow = b"x\r\n" if line.startswith((b"set", b"cas")) else b""
            return [line + eol + follow], False
        if kind == "longkey":
            k = b"L" * r.choice([250, 251, 251, 300])
            c = r.choice([b"set %s 0 0 1\r\nx\r\n", b"delete %s\r\n", b"incr %s 1\r\n",
                          b"touch %s 0\r\n", b"add %s 0 0 1 noreply\r\ny\r\n"])
            return [c % k], False
        if kind == "longkey_get":
            # memcached drops the not-yet-written replies of earlier pipelined commands
            # (those since its last transmit: after a get, every -R commands, or at a
            # read boundary) when a get-family key is too long. Read boundaries depend
            # on timing, so these stay at a segment start; tests/blackbox/
            # test_regressions.py pins the batching rule deterministically.
            k = b"L" * 251
            c = r.choice([b"get %s\r\n", b"gets k0 %s\r\n", b"gat 0 %s\r\n", b"gats 0 k1 %s k2\r\n"])
            return [SYNC, c % k], False
        if kind == "ctrl_key":
            k = r.choice([b"a\x01b", b"a\tb", b"\x7fkey", b"k\xff\xfe", b"k\x0b0", b"k\x0c"])
            return r.choice([self.storage(b"set", key=k), [b"get %s k0\r\n" % k],
                             [b"delete %s\r\n" % k], [b"incr %s 1\r\n" % k]]), False
        if kind == "bad_chunk":
            k = self.key()
            v = self.value() or b"v"
            how = r.randrange(4)
            if how == 0:      # one byte too many
                return [b"set %s 0 0 %d\r\n%sZ\r\n" % (k, len(v), v)], False
            if how == 1:      # one byte short, padded so the stream stays deterministic
                return [b"set %s 0 0 %d\r\n%s\r\n\r\n" % (k, len(v) + 1, v)], False
            if how == 2:      # wrong terminator
                return [b"%s %s 0 0 %d%s\r\n%sXY" % (r.choice([b"set", b"append", b"add"]), k, len(v),
                                                       self.nr(0.3), v)], False
            return [b"set %s 0 0 %d\r\n%s\n\r\n" % (k, len(v), v)], False
        if kind == "noreply":
            k = self.key()
            return r.choice([self.storage(r.choice([b"set", b"add", b"replace", b"append", b"prepend"]),
                                          key=k, noreply=b" noreply"),
                             [b"incr %s 1 noreply\r\n" % k], [b"decr %s 1 noreply\r\n" % k],
                             [b"touch %s 100 noreply\r\n" % k], [b"delete %s noreply\r\n" % k],
                             [b"incr %s abc noreply\r\n" % k],
                             [b"set %s 0 0 abc noreply\r\nx\r\n" % k]]), False
        if kind == "spaces":
            k = self.key()
            return [r.choice([b"get  %s   k1 \r\n" % k, b"  get %s\r\n" % k,
                              b"set  %s  0  0  1 \r\nx\r\n" % k, b"incr %s  1 \r\n" % k,
                              b"delete   %s\r\n" % k, b"touch %s 100  \r\n" % k])], False
        if kind == "bare_lf":
            # short keys only: "K"*250 + "\r" would be a too-long get key mid-segment
            k = r.choice(self.keys)
            return [r.choice([b"get %s\n" % k, b"set %s 0 0 1\nx\r\n" % k, b"incr %s 1\n" % k,
                              b"delete %s\n" % k, b"gets %s\r\r\n" % k, b"set %s 0 0 1\r\nx\n\r\n" % k])], False
        if kind == "empty_line":
            return [r.choice([b"\r\n", b"\n", b" \r\n", b"   \n", b"\r\r\n"])], False
        if kind == "int_truncation":
            # memcached parses flags/exptime/length with strtol/strtoul into 32-bit fields
            k = self.key()
            return [r.choice([b"set %s 0 0 4294967297\r\nx\r\n" % k,
                              b"set %s 4294967296 0 1\r\nx\r\n" % k,
                              b"set %s 0 4294967296 1\r\nx\r\n" % k,
                              b"set %s 0 4294967295 1\r\nx\r\n" % k,
                              b"touch %s 4294967296\r\n" % k])], False
        if kind == "long_line":
            n = r.choice([2100, 3000, 4000])
            line = r.choice([b"x" * n, b"set " + b"k" * n + b" 0 0 1", b"get " + b"k" * n,
                             b"delete " + b"d" * n])
            follow = b"x\r\n" if line.startswith(b"set") else b""
            return [SYNC, line + b"\r\n" + follow, SYNC], False
        if kind == "multiget_big":
            keys = b" ".join(r.choice(self.keys + [b"m%d" % i for i in range(50)]) for _ in range(900))
            return [SYNC, b"%s %s\r\n" % (r.choice([b"get", b"gets"]), keys), SYNC], False
        if kind == "too_large":
            n = 1024 * 1024 + r.randint(1, 1000)
            return [SYNC, b"%s %s 0 0 %d\r\n" % (r.choice([b"set", b"append"]), self.key(), n)
                    + b"z" * n + b"\r\n", SYNC], False
        if kind == "mg":
            flags = r.sample(META_MG_FLAGS, r.randint(0, 6))
            key = self.key()
            if b"b" in flags:
                key = r.choice([b"azA=", b"azE=", b"a2s=", b"azA"])  # base64 of k0 / k1 / kk, and a malformed one
            return [b"mg %s%s%s" % (key, b"".join(b" " + f for f in flags), eol)], False
        if kind == "ms":
            flags = r.sample(META_MS_FLAGS, r.randint(0, 4))
            v = self.value()
            return [b"ms %s %d%s%s%s\r\n" % (self.key(), len(v), b"".join(b" " + f for f in flags), eol, v)], False
        if kind == "md":
            flags = r.sample([b"q", b"k", b"O5", b"I", b"T30", b"C1"], r.randint(0, 3))
            return [b"md %s%s%s" % (self.key(), b"".join(b" " + f for f in flags), eol)], False
        if kind == "ma":
            flags = r.sample(META_MA_FLAGS, r.randint(0, 5))
            return [b"ma %s%s%s" % (self.key(), b"".join(b" " + f for f in flags), eol)], False
        if kind == "mn":
            return [b"mn%s" % eol], False
        if kind == "meta_cas":
            k = r.choice(self.keys)
            v = self.value()
            wrong = r.random() < 0.4
            cmd = r.choice([[b"ms %s %d C" % (k, len(v)), CasRef(k, wrong),
                             b"%s\r\n%s\r\n" % (r.choice([b"", b" I", b" MA", b" MP", b" MR", b" ME", b" c q"]), v)],
                            [b"md %s C" % k, CasRef(k, wrong), b"%s\r\n" % r.choice([b"", b" I", b" q", b" I T30"])],
                            [b"ma %s C" % k, CasRef(k, wrong), b"%s\r\n" % r.choice([b"", b" v", b" N0 J3"])]])
            return [b"gets %s\r\n" % k, SYNC] + cmd, False
        if kind == "meta_stale":
            k = r.choice(self.keys)
            return [b"ms %s 2 T100\r\nhi\r\nmd %s I T30\r\nmg %s v t c\r\nmg %s v\r\nms %s 3 T30\r\nnew\r\nmg %s v\r\n"
                    % (k, k, k, k, k, k)], False
        if kind == "meta_bad":
            return [r.choice(META_BAD).replace(b"\\r\\n", b"\r\n") + b"\r\n"], False
        if kind == "quit":
            return [b"quit\r\n"], True
        if kind == "long_noeol":
            return [SYNC, b"NOEOL:" + b"x" * 3000], True
        if kind == "legacy_bget":
            return [b"bget %s%s" % (self.keys_list(0, 3), eol)], False
        if kind == "flush_all_past":
            # an absolute time already past (over 30 days is absolute) flushes nothing. memcached also
            # brings back what an earlier flush_all hid (it moves its oldest-live mark back; memkitd
            # does not: docs/protocol.md), so an ordinary flush_all follows before anything is read.
            a = r.choice([b"1000000000", b"2592001", b"1500000000 noreply"])
            return [b"flush_all %s%sflush_all%s" % (a, eol, eol)], False
        if kind == "swallow_long_line":
            # a value over -I is swallowed, then a long line (in a write of its own: within one
            # write, where memcached's read boundaries fall decides whether it closes)
            n = 1024 * 1024 + r.randint(1, 1000)
            return [SYNC, b"set %s 0 0 %d\r\n" % (self.key(), n) + b"z" * n + b"\r\n", SYNC,
                    b"g" * r.choice([3000, 9000, 16000]) + b"\r\n", SYNC], False
        if kind == "fatal_mid":
            # replies queued before a fatal line: memcached drops those it had not transmitted
            before = self.storage(b"set") + r.choice([[], [b"get %s\r\n" % self.key()]]) + self.storage(b"set")
            fatal = r.choice([b"GET / HTTP/1.1\r\n", b"x" * 17000 + b"\r\n", b"y" * 3000])
            return [SYNC, b"".join(before) + fatal], True
        raise AssertionError(kind)


def segments(parts):
    segs, cur = [], []
    for p in parts:
        if p is SYNC:
            if cur:
                segs.append(cur)
            cur = []
        else:
            cur.append(p)
    if cur:
        segs.append(cur)
    return segs


# ----------------------------------------------------------------- replies

VALUE_RE = re.compile(rb"^VALUE (\S+) (\d+) (\d+)(?: (\d+))?$")


def parse_values(data):
    """Yield (line_start, line_end, match) for VALUE header lines, skipping data blocks."""
    i = 0
    n = len(data)
    while i < n:
        j = data.find(b"\r\n", i)
        if j < 0:
            return
        line = data[i:j]
        m = VALUE_RE.match(line) if line.startswith(b"VALUE ") else None
        if m:
            yield i, j, m
            i = j + 2 + int(m.group(3)) + 2
        else:
            i = j + 2


def learn_cas(data, table):
    for _, _, m in parse_values(data):
        if m.group(4) is not None:
            table[m.group(1)] = int(m.group(4))


PAD_RE = re.compile(rb"^(\d+) +")


META_RE = re.compile(rb"(?m)^(HD|VA|EN|NS|EX|NF)( [^\r\n]*)?\r\n")
META_CAS_RE = re.compile(rb" c(\d+)")


def normalize_meta(data, casmap):
    """Meta reply lines: cas values numbered as VALUE lines' are; last-access, TTL and hit-before
    figures blurred (l: memkitd keeps no per-item access time, see docs/protocol.md; t: the two
    servers' clocks tick at different instants; h: below), incr padding removed from VA blocks.
    tests/blackbox/test_meta.py checks l, t and h one command at a time."""
    out = []
    i = 0
    while True:
        m = META_RE.search(data, i)
        if not m:
            out.append(data[i:])
            return b"".join(out)
        out.append(data[i:m.start()])
        code, rest = m.group(1), m.group(2) or b""

        def cas(mm):
            u = int(mm.group(1))
            if u not in casmap:
                casmap[u] = len(casmap) + 1
            return b" c#%d" % casmap[u]
        rest = META_CAS_RE.sub(cas, rest)
        rest = re.sub(rb" l\d+", b" l#", rest)
        rest = re.sub(rb" t\d+", b" t#", rest)
        # h after an incr/decr: memcached keeps the fetched bit only when it rewrote the number in
        # place, which depends on who else held a reference at that instant (see incr padding above)
        rest = re.sub(rb" h[01]", b" h#", rest)
        i = m.end()
        if code == b"VA":
            n = int(rest.split()[0])
            block = data[i:i + n]
            p = PAD_RE.match(block)
            if p:
                block = p.group(1) + block[p.end():]
                rest = b" %d" % len(block) + rest[len(rest.split()[0]) + 1:]
            out.append(code + rest + b"\r\n" + block)
            i += n
        else:
            out.append(code + rest + b"\r\n")


def normalize(data, casmap):
    data = normalize_meta(data, casmap)
    out = []
    last = 0
    for s, e, m in parse_values(data):
        key, flags, n, cas = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        block = data[e + 2:e + 2 + n]
        # incr/decr padding: digits followed by spaces -> digits (see module doc)
        p = PAD_RE.match(block)
        if p:
            block = p.group(1) + block[p.end():]
        hdr = b"VALUE %s %s %d" % (key, flags, len(block))
        if cas is not None:
            u = int(cas)
            if u not in casmap:
                casmap[u] = len(casmap) + 1
            hdr += b" #%d" % casmap[u]
        out.append(data[last:s])
        out.append(hdr + b"\r\n" + block)
        last = e + 2 + n
    out.append(data[last:])
    data = b"".join(out)
    return re.sub(rb"(?m)^VERSION [^\r\n]*\r\n", b"VERSION <v>\r\n", data)


def resolve(seg, table):
    out = []
    for p in seg:
        if isinstance(p, CasRef):
            u = p.value(table)
            out.append(b"%d" % u)
        else:
            out.append(p)
    return b"".join(out)


# ----------------------------------------------------------------- running


class Side(harness.SideBase):

    def begin(self):
        harness.flush_all(self.server)
        self.sock = self.server.connect()
        self.closed = False
        self.table = {}
        self.casmap = {}
        self.log = []       # (sent, raw_reply, how)

    def send_segment(self, seg):
        data = resolve(seg, self.table)
        noeol = data.startswith(b"NOEOL:")
        if noeol:
            data = data[len(b"NOEOL:"):]
        if self.closed:
            self.log.append((data, b"", "closed-before"))
            return
        ok = _send(self.sock, data if noeol else data + SENTINEL)
        self.pending = (data if noeol else data + SENTINEL, noeol, ok)

    def read_segment(self):
        if self.closed:
            return
        data, noeol, ok = self.pending
        rep, how = _read_reply(self.sock, until_sentinel=not noeol)
        if not ok and how == "ok":
            how = "send-failed"
        if how == "eof":
            self.closed = True
        learn_cas(rep, self.table)
        self.log.append((data, rep, how))

    def normalized(self):
        return [(normalize(rep, self.casmap), how) for _, rep, how in self.log]


def run_sequence(seq_parts, sides):
    for s in sides:
        s.begin()

    def step(idx, seg):
        for s in sides:
            s.send_segment(seg)
        for s in sides:
            s.read_segment()
    return harness.play(sides, segments(seq_parts), step)


def show_divergence(seed, sides, a, b, out):
    def replies(label, raw, how, out):
        out.write(f"{label} : {raw!r} [{how}]\n")

    def lines(seg):
        return [repr(x) for x in seg[0].split(b"\r\n")] + [f"<{seg[1]}>"]

    harness.show_segments(seed, sides, a, b, out, repr, replies, lines)


def main():
    ap = harness.arg_parser(__doc__, "diff", KINDS)
    ap.add_argument("--big-numbers", action="store_true",
                    help="also store values >= 2^63 and use deltas >= 2^63 (memcached itself is "
                         "not reproducible there, see the module doc)")
    args = ap.parse_args()

    def run_seed(seed, exclude, sides):
        gen = Gen(random.Random(seed), exclude, args.big_numbers)
        return run_sequence(gen.sequence(exclude), sides)

    def write_log(side, out):
        for sent, rep, how in side.log:
            out.write(f"  > {sent!r}\n  < {rep!r} [{how}]\n")

    return harness.run(ap, args, KINDS, Side, run_seed, show_divergence, write_log,
                       lambda n: f"note: {n} segment(s) ended by a {STALL}s stall instead of the sentinel")


if __name__ == "__main__":
    sys.exit(main())
