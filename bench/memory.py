#!/usr/bin/python3
# bench/memory.py — memkitd vs Debian's memcached at the same -m: items kept, overwrites, hit ratio, churn RSS (issue 5).
"""
Usage:  /usr/bin/python3 bench/memory.py [--only retained,fills,overwrite,hits,soak,churn,restart] [-m 64] [--quick]
                                         [--soak-seconds 120] [--churn-seconds 300] ...   (--help lists every option)

Starts build/memkitd (MEMKITD=path for another build) and /usr/bin/memcached with
the same options (-u root -l 127.0.0.1 -U 0 -p PORT -m M; memcached's default
-I 1m), runs each workload against both (fresh servers per case; which server goes
first alternates between cases), and prints each figure for memkit and memcached
with the memkit/memcached ratio, and each server's peak RSS (VmHWM). A peak over
1.1 x -m + 8 MiB is flagged "!!" and listed again at the end. The clients are raw
sockets speaking the text protocol, pipelined (noreply writes, batched multi-gets).
Sizes are decimal: 1 KB = 1000 bytes, 1 MB = 1,000,000 bytes.

  retained  write far past capacity, then multi-get every key written and count
            the values that come back byte-identical.
  fills     one value size per case, 10 B to 1 MB: distinct keys until --fill-factor
            x -m value bytes are written, then every key read back: items and value
            bytes kept byte-identical, value bytes kept / -m (the target is >= 0.9),
            `bytes`, `curr_items` and `evictions` from stats.
  overwrite 16 and 64 connections (a thread each) overwrite a fixed key set whose
            keys + values are 40% and then 60% of -m, every key --overwrite-rounds
            times in shuffled order, values of a fixed size or resized on each
            write (uniform 50%..150%), base sizes 100 B and 4 KB; then every key is
            read: evictions, keys lost (missing, or not the last value written),
            and the live fraction kept (key + value bytes intact / -m).
  hits      cache-aside loop (get; set on a miss) with Zipfian popularity over a
            key space ~10x what memcached holds; skew 0.6, 0.8, 1.0, 1.2, 1.0 with
            periodic one-off scans, and 1.0 with a shift: halfway through (at the
            start of the measured half) the ranks are remapped to other keys, so the
            figure is how well the cache recovers. Requests are pipelined in
            batches; a key missed and set earlier in the same batch counts as a hit
            when it recurs, as a sequential loop would see it.
  restart   (warm restart) fill -m with 100-byte values on an -e memory file,
            stop with SIGUSR1, start again on the same file: items before and
            after, and the seconds from the start to the first hit.
  soak      churn of mixed sizes (overwrites, deletes, TTLs) against both servers
            at once, RSS sampled every second.
  churn     both servers at once, each on its own threads, in lockstep (the same
            op stream at the same time), for --churn-seconds: --churn-writers
            connections, Zipf 0.9 popularity over a key space ~10x the cache,
            values 10 B..500 KB log-uniform (then a second run with values up to
            16 KB: --churn-max-sizes); 70% get (cache-aside: set on a miss), 15%
            set, 5% delete, 5% append, 5% add+incr on counter keys; each key's TTL
            is none or 5-120 s. Hits, misses, hit ratio, items at the end, and RSS
            and curr_items every --sample-seconds.

--quick shrinks everything (-m 8 unless -m is given, short runs, few requests) to
smoke-test the whole script in a few minutes.
"""
import argparse
import itertools
import math
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMKITD = os.environ.get("MEMKITD", os.path.join(ROOT, "build", "memkitd"))
MEMCACHED = os.environ.get("MEMCACHED", "/usr/bin/memcached")
MIB = 1 << 20

RAND = random.Random(12345)
BLOB = bytes(RAND.getrandbits(8) for _ in range(1 << 20)) * 2  # 2 MiB of incompressible bytes


def value_for(i, n):
    off = (i * 7919) % ((1 << 20) - 1)
    return BLOB[off:off + n]


def mix(i, j=0):
    """A 32-bit hash of (i, j): deterministic per-key sizes and TTLs."""
    return ((i * 2654435761) ^ (j * 0x9E3779B1)) * 0x85EBCA6B >> 7 & 0xFFFFFFFF


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Conn:
    """One text-protocol connection: pipelined writes, replies parsed from a buffer."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(600)  # non-blocking underneath: send() may send part, see send()
        self.buf = bytearray()
        self.pos = 0      # start of the unparsed replies in buf
        self.errors = 0   # SERVER_ERROR / CLIENT_ERROR lines (sent even for some noreply commands)

    def close(self):
        self.sock.close()

    def send(self, data):
        """sendall that reads replies meanwhile, so a big pipelined write never waits on a server
        that waits for us to read."""
        view = memoryview(data)
        while view:
            r, w, _ = select.select([self.sock], [self.sock], [], 600)
            if r:
                self._fill()
            if w:
                view = view[self.sock.send(view):]

    def _fill(self):
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        d = self.sock.recv(1 << 20)
        if not d:
            raise RuntimeError("connection closed")
        self.buf += d

    def _line(self):
        while True:
            eol = self.buf.find(b"\r\n", self.pos)
            if eol < 0:
                self._fill()
                continue
            line = bytes(self.buf[self.pos:eol])
            self.pos = eol + 2
            if not line.startswith((b"SERVER_ERROR", b"CLIENT_ERROR")):
                return line
            self.errors += 1

    def sync(self):
        """Round trip so that every noreply command sent before has been processed."""
        self.send(b"version\r\n")
        line = self._line()
        assert line.startswith(b"VERSION"), line

    def read_get(self):
        """Parse one multi-get reply; returns {key: value}."""
        out = {}
        while True:
            line = self._line()
            if line == b"END":
                return out
            parts = line.split()
            if parts[0] != b"VALUE":
                raise RuntimeError("unexpected reply %r" % line[:80])
            n = int(parts[3])
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            out[parts[1]] = bytes(self.buf[self.pos:self.pos + n])
            self.pos += n + 2

    def set_many(self, items):
        self.send(b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(v), v) for k, v in items))

    def store(self, items, chunk=MIB, sync_every=16 * MIB):
        """set every (key, value) of an iterable: noreply, ~chunk bytes a send, a round trip every sync_every."""
        batch, size, since = [], 0, 0
        for kv in items:
            batch.append(kv)
            size += len(kv[1]) + 40
            if size >= chunk:
                self.set_many(batch)
                batch, since, size = [], since + size, 0
                if since >= sync_every:
                    self.sync()
                    since = 0
        self.set_many(batch)
        self.sync()

    def get_many(self, keys, per=100, window=8):
        """Multi-get keys in batches of `per`, `window` batches in flight; returns {key: value}."""
        res = {}
        batches = [keys[i:i + per] for i in range(0, len(keys), per)]
        sent = 0
        done = 0
        while done < len(batches):
            while sent < len(batches) and sent - done < window:
                self.send(b"get " + b" ".join(batches[sent]) + b"\r\n")
                sent += 1
            res.update(self.read_get())
            done += 1
        return res

    def stats(self, group=b""):
        self.send(b"stats " + group + b"\r\n")
        out = {}
        while True:
            line = self._line()
            if line == b"END":
                return out
            p = line.split(b" ", 2)
            out[p[1].decode()] = p[2].decode()


class Server(Conn):
    """A server process and one connection to it (more with connect())."""

    def __init__(self, name, binary, mem, extra=()):
        self.name, self.binary, self.mem, self.extra = name, binary, mem, list(extra)

    def start(self, port=None):
        self.port = port or free_port()
        args = [self.binary, "-u", "root", "-l", "127.0.0.1", "-U", "0", "-p", str(self.port), "-m", str(self.mem)]
        self.proc = subprocess.Popen(args + self.extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                Conn.__init__(self, self.port)
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("%s did not start" % self.name)

    def connect(self):
        return Conn(self.port)

    def stop(self, sig=signal.SIGTERM):
        peak = self.rss("VmHWM")
        self.sock.close()
        self.proc.send_signal(sig)
        self.proc.wait()
        return peak

    def rss(self, field="VmRSS"):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


def verify(conn, ids, key, value, per=100, chunk=200_000):
    """Multi-get key(i) for every i in ids (a range); returns (values byte-identical to value(i), their bytes)."""
    ok = nbytes = 0
    for s in range(0, len(ids), chunk):
        part = ids[s:s + chunk]
        got = conn.get_many([key(i) for i in part], per)
        for i in part:
            v = got.get(key(i))
            if v is not None and v == value(i):
                ok += 1
                nbytes += len(v)
    return ok, nbytes


def run_threads(fns):
    """Run each fn on its own thread; returns their results, or re-raises the first exception."""
    results, errors = [None] * len(fns), []

    def wrap(j):
        try:
            results[j] = fns[j]()
        except BaseException as e:  # re-raised below, on the calling thread
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(j,), daemon=True) for j in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


def mb(x):
    return x / MIB


def size_label(n):
    for unit, div in (("MB", 1_000_000), ("KB", 1000)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


def cell(a, b, fmt="{:,}"):
    """'memkit / memcached (ratio)'."""
    ratio = "%.2fx" % (a / b) if b else ("=" if a == b else "-")
    return "%s / %s (%s)" % (fmt.format(a), fmt.format(b), ratio)


def print_table(title, header, rows):
    print("\n%s (each cell: memkit / memcached (memkit/memcached))\n" % title)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(flush=True)


class Runner:
    """Starts the server pairs (alternating which goes first), records peak RSS and flags it over the limit."""

    def __init__(self, mem, threads=None):
        self.mem = mem
        self.extra = ["-t", str(threads)] if threads else []
        self.limit = 1.1 * mem * MIB + 8 * MIB
        self.peak = {"memkit": 0, "memcached": 0}
        self.flags = []
        self.turn = 0

    def servers(self):
        pair = [Server("memkit", MEMKITD, self.mem, self.extra), Server("memcached", MEMCACHED, self.mem, self.extra)]
        self.turn += 1
        return pair if self.turn % 2 else pair[::-1]

    def stop(self, srv, label):
        peak = srv.stop()
        self.peak[srv.name] = max(self.peak[srv.name], peak)
        if peak > self.limit:
            self.flags.append("%s %s: peak RSS %.1f MiB > %.1f MiB" % (srv.name, label, mb(peak), mb(self.limit)))
            print("  !! %s" % self.flags[-1], flush=True)
        return peak

    def case(self, label, fn, fmt):
        """fn(server) on a fresh memkitd and a fresh memcached; returns ({name: result}, {name: peak RSS})."""
        res, peaks = {}, {}
        for srv in self.servers():
            srv.start()
            t0 = time.time()
            res[srv.name] = fn(srv)
            peaks[srv.name] = self.stop(srv, label)
            print("  %-10s %-22s %s  (%.0fs, peak RSS %.1f MiB)" % (srv.name, label, fmt(res[srv.name]),
                                                                     time.time() - t0, mb(peaks[srv.name])), flush=True)
        return res, peaks

    def rss_cell(self, peaks):
        flag = " !!" if max(peaks.values()) > self.limit else ""
        return cell(mb(peaks["memkit"]), mb(peaks["memcached"]), "{:.1f}") + flag


# ---------------- 1. retained items ----------------

def size_plan(kind, n):
    if kind == "10/10":
        return lambda i: 10
    if kind == "30/100":
        return lambda i: 100
    if kind == "50-1000":
        return lambda i: 50 + (i * 2654435761 >> 7) % 951
    if kind == "grow100-1000":
        return lambda i: (90 + (i * 2654435761 >> 7) % 21) if i < n // 2 else (900 + (i * 2654435761 >> 7) % 201)
    raise ValueError(kind)


def key_for(kind, i):
    if kind == "30/100":
        return b"k%029d" % i
    if kind == "10/10":
        return b"k%09d" % i
    return b"key:%012d" % i


def retained(srv, kind, mem):
    # enough writes to go well past capacity for either server
    avg = {"10/10": 20, "30/100": 130, "50-1000": 540, "grow100-1000": 560}[kind]
    n = int(4 * mem * MIB / (avg + 4))
    if kind == "grow100-1000":
        n = int(2 * 1.3 * mem * MIB / 105)  # first half alone fills the cache ~1.3x
    size = size_plan(kind, n)
    key = lambda i: key_for(kind, i)  # noqa: E731
    value = lambda i: value_for(i, size(i))  # noqa: E731
    srv.store((key(i), value(i)) for i in range(n))
    if kind != "grow100-1000":
        return verify(srv, range(n), key, value)[0], n
    # The calcification case is judged three ways: items of the new (large) mix
    # kept (the second half: what a cache serving the current workload needs),
    # all items kept, and value bytes kept.
    old, new = verify(srv, range(n // 2), key, value), verify(srv, range(n // 2, n), key, value)
    return new[0], n, old[0] + new[0], old[1] + new[1]


# ---------------- 2. single-size fills ----------------

def fill(srv, size, mem, factor):
    n = math.ceil(factor * mem * MIB / size)
    key = lambda i: b"key:%08d" % i  # noqa: E731
    value = lambda i: value_for(i, size)  # noqa: E731
    srv.store((key(i), value(i)) for i in range(n))
    st = srv.stats()
    kept, nbytes = verify(srv, range(n), key, value, per=max(1, min(100, MIB // size)))
    return kept, nbytes, int(st["bytes"]), int(st["curr_items"]), int(st["evictions"])


# ---------------- 3. overwrites from many connections ----------------

def overwrite(srv, conns, live, base, vary, rounds, mem):
    """conns threads overwrite a key set of live x -m; returns (evictions, keys lost, live bytes kept / -m, errors)."""
    nkeys = int(live * mem * MIB / (12 + base))
    key = lambda i: b"key:%08d" % i  # noqa: E731

    def value(i, r):
        return value_for(i + 1000003 * r, base // 2 + mix(i, r) % (base + 1) if vary else base)

    def writer(c):
        conn = srv.connect()
        mine = list(range(c, nkeys, conns))  # each key has one writer, so its last value is known
        rng = random.Random(c)
        for r in range(rounds):
            rng.shuffle(mine)
            conn.store((key(i), value(i, r)) for i in mine)
        conn.close()
        return conn.errors

    errors = sum(run_threads([lambda c=c: writer(c) for c in range(conns)]))
    ok, nbytes = verify(srv, range(nkeys), key, lambda i: value(i, rounds - 1))
    return int(srv.stats()["evictions"]), nkeys - ok, (12 * ok + nbytes) / (mem * MIB), errors


# ---------------- 4. hit ratio ----------------

class Zipf:
    """Zipf(skew) ranks over n keys: exact inverse CDF (a cumulative table) for n up to a few million,
    rejection-inversion (Hormann & Derflinger 1996, O(1) memory) for bigger key spaces."""

    def __init__(self, n, skew, seed):
        self.n, self.s = n, skew
        self.rng = random.Random(seed)
        self.perm_a = 2654435761
        self.cum = None
        if n <= 4_000_000:
            self.cum = list(itertools.accumulate(1.0 / (r ** skew) for r in range(1, n + 1)))
        else:
            self.hx1 = self._hint(1.5) - 1.0
            self.hn = self._hint(n + 0.5)
            self.sv = 2.0 - self._hinv(self._hint(2.5) - self._h(2.0))

    def _h(self, x):
        return math.exp(-self.s * math.log(x))

    def _hint(self, x):  # integral of h, shifted
        lx = math.log(x)
        t = (1.0 - self.s) * lx
        return (math.expm1(t) / t if abs(t) > 1e-8 else 1.0 + t / 2 * (1.0 + t / 3 * (1.0 + t / 4))) * lx

    def _hinv(self, x):
        t = max(x * (1.0 - self.s), -1.0)
        return math.exp((math.log1p(t) / t if abs(t) > 1e-8 else 1.0 - t * (0.5 - t * (1.0 / 3 - 0.25 * t))) * x)

    def _one(self):
        rnd, hn, span = self.rng.random, self.hn, self.hx1 - self.hn
        while True:
            u = hn + rnd() * span
            x = self._hinv(u)
            k = min(max(int(x + 0.5), 1), self.n)
            if k - x <= self.sv or u >= self._hint(k + 0.5) - self._h(k):
                return k - 1

    def sample(self, k):
        if self.cum is not None:
            ranks = self.rng.choices(range(self.n), cum_weights=self.cum, k=k)
        else:
            ranks = [self._one() for _ in range(k)]
        return [(r * self.perm_a) % self.n for r in ranks]  # scatter popular ranks over the key space


# label: (skew, scan every N requests, scan length, shift the popular set halfway)
HIT_CASES = {
    "zipf 0.6": (0.6, 0, 0, False),
    "zipf 0.8": (0.8, 0, 0, False),
    "zipf 1.0": (1.0, 0, 0, False),
    "zipf 1.2": (1.2, 0, 0, False),
    "zipf 1.0 + scans": (1.0, 100_000, 30_000, False),
    "zipf 1.0 + shift": (1.0, 0, 0, True),
}


def hit_ratio(srv, label, nkeys, warm, measure):
    skew, scan_every, scan_len, shift = HIT_CASES[label]
    z = Zipf(nkeys, skew, seed=int(skew * 1000) + scan_every)
    vlen = 100
    hits = total = 0
    B = 500
    done = 0
    scan_base = nkeys * 10
    scan_next = 0
    while done < warm + measure:
        ids = z.sample(B)
        if shift and done >= (warm + measure) // 2:
            ids = [(i + nkeys // 2) % nkeys for i in ids]  # each rank now names another key
        if scan_every and done // scan_every != (done + B) // scan_every:
            ids = ids + list(range(scan_base + scan_next, scan_base + scan_next + scan_len))
            scan_next += scan_len
        keys = [b"key:%d" % i for i in ids]
        uniq = list(dict.fromkeys(keys))
        got = srv.get_many(uniq, per=100, window=8)
        setnow = {}
        measuring = done >= warm
        for i, k in zip(ids, keys):
            hit = k in got or k in setnow
            if not hit:
                setnow[k] = value_for(i, vlen)
            if measuring:
                total += 1
                hits += hit
        srv.set_many(setnow.items())
        done += len(ids)
    srv.sync()
    ev = srv.stats().get("evictions", "?")
    print("  %-10s %s: %d keys, %d warm-up + %d measured requests, evictions %s (the cache was full: %s)" %
          (srv.name, label, nkeys, warm, measure, ev, "yes" if ev not in ("0", "?") else "NO"), flush=True)
    return hits / total


# ---------------- 5. churn soak ----------------

def sample_rss(srvs, every, stop, with_items=False):
    """Sample each server's RSS (and curr_items) every `every` s until stop is set; returns (rows, peaks)."""
    rows, peaks, t0 = [], {s.name: 0 for s in srvs}, time.time()

    def run():
        while not stop.wait(every):
            row = [time.time() - t0]
            for s in srvs:
                r = s.rss()
                peaks[s.name] = max(peaks[s.name], r)
                row += [r, int(s.stats()["curr_items"])] if with_items else [r]
            rows.append(row)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return rows, peaks, t


def soak(srvs, seconds):
    stop = threading.Event()
    samples, peaks, sampler = sample_rss(srvs, 1.0, stop)
    rng = random.Random(7)
    end = time.time() + seconds
    phase = 0
    nops = 0
    while time.time() < end:
        phase = int((time.time() - (end - seconds)) / 20)  # the size mix shifts every 20 s
        lo, hi = [(10, 200), (200, 2000), (1000, 20000), (50, 500), (2000, 200000)][phase % 5]
        parts = []
        for _ in range(300):
            i = rng.randrange(3_000_000)
            r = rng.random()
            if r < 0.05:
                parts.append(b"delete key:%d noreply\r\n" % i)
            else:
                n = rng.randrange(lo, hi)
                ttl = rng.choice((0, 0, 0, 2, 5, 30))
                parts.append(b"set key:%d 0 %d %d noreply\r\n%s\r\n" % (i, ttl, n, value_for(i, n)))
        data = b"".join(parts)
        for s in srvs:
            s.send(data)
        nops += 300
        if nops % 6000 == 0:
            for s in srvs:
                s.sync()
    for s in srvs:
        s.sync()
    stop.set()
    sampler.join()
    return peaks, {s.name: [row[1 + j] for row in samples] for j, s in enumerate(srvs)}, nops


# ---------------- 6. mixed-size churn with gets, TTLs, deletes, appends, incr ----------------

CHURN_SKEW = 0.9
CHURN_BATCH = 100
CHURN_MIX = (("get", 0.70), ("set", 0.15), ("delete", 0.05), ("append", 0.05), ("incr", 0.05))


def churn_batch(conn, ops, size):
    """Send one pipelined batch; gets are answered, then each miss is set (cache-aside). Returns (hits, misses)."""
    parts, gets = [], []
    for op, i in ops:
        if op == "get":
            parts.append(b"get key:%d\r\n" % i)
            gets.append(i)
        elif op == "set":
            parts.append(churn_set(i, size))
        elif op == "delete":
            parts.append(b"delete key:%d noreply\r\n" % i)
        elif op == "append":
            parts.append(b"append key:%d 0 0 %d noreply\r\n%s\r\n" % (i, 10 + i % 91, value_for(i, 10 + i % 91)))
        else:  # a counter: create it if missing, then increment
            parts.append(b"add num:%d 0 0 1 noreply\r\n0\r\nincr num:%d 1 noreply\r\n" % (i % 1000, i % 1000))
    conn.send(b"".join(parts))
    setnow = set()
    for i in gets:
        if not conn.read_get() and i not in setnow:
            setnow.add(i)
    conn.send(b"".join(churn_set(i, size) for i in setnow))
    return len(gets) - len(setnow), len(setnow)


def churn_set(i, size):
    """Key i's value has a fixed log-uniform size (10 B..size) and TTL (none for half the keys, else 5-120 s)."""
    h = mix(i, 1)
    n = int(10 * (size / 10) ** (h / 2 ** 32))
    ttl = 0 if h & 1 else 5 + mix(i, 2) % 116
    return b"set key:%d 0 %d %d noreply\r\n%s\r\n" % (i, ttl, n, value_for(i, n))


def churn(srvs, seconds, writers, size, every, mem):
    """Both servers, `writers` connections each, the same op stream in lockstep.
    Returns ({name: [hits, misses, ops, errors]}, RSS/curr_items samples, key space)."""
    avg = (size - 10) / math.log(size / 10)
    nkeys = int(10 * mem * MIB / avg)  # the key space holds ~10x the cache
    end = time.time() + seconds
    stop = threading.Event()
    samples, _, sampler = sample_rss(srvs, every, stop, with_items=True)
    done = {}  # writer w -> whether time is up, decided once per batch for both servers' writer w
    barriers = [threading.Barrier(len(srvs), action=lambda w=w: done.__setitem__(w, time.time() >= end))
                for w in range(writers)]

    def writer(srv, w):
        conn, rng, z = srv.connect(), random.Random(1000 + w), Zipf(nkeys, CHURN_SKEW, seed=w)
        kinds, weights = zip(*CHURN_MIX)
        hits = misses = nops = 0
        try:
            while True:
                barriers[w].wait()
                if done[w]:
                    break
                ops = list(zip(rng.choices(kinds, weights, k=CHURN_BATCH), z.sample(CHURN_BATCH)))
                h, m = churn_batch(conn, ops, size)
                hits, misses, nops = hits + h, misses + m, nops + len(ops)
            conn.sync()
        except BaseException:
            barriers[w].abort()  # the other server's writer w must not wait for this one
            raise
        conn.close()
        return hits, misses, nops, conn.errors

    res = run_threads([lambda s=s, w=w: writer(s, w) for s in srvs for w in range(writers)])
    stop.set()
    sampler.join()
    totals = {s.name: [sum(col) for col in zip(*res[j * writers:(j + 1) * writers])] for j, s in enumerate(srvs)}
    return totals, samples, nkeys


# ---------------- main ----------------

def ratio_row(figure, k, c, fmt="%d"):
    return (figure, fmt % k, fmt % c, "%.2fx" % (k / max(1, c)))


def run_retained(run, args, rows):
    print("== retained: items retrievable byte-identical after writing past capacity (-m %d)" % run.mem)
    for kind in ("10/10", "30/100", "50-1000", "grow100-1000"):
        r, _ = run.case("retained " + kind, lambda s, k=kind: retained(s, k, run.mem),
                        lambda x: "%9d of %d written" % x[:2] + ("" if len(x) == 2 else
                                  " (all items %d, %d value bytes)" % x[2:]))
        if kind != "grow100-1000":
            rows.append(ratio_row("retained " + kind, r["memkit"][0], r["memcached"][0]))
            continue
        for label, j in (("items of the new mix", 0), ("all items", 2), ("value bytes", 3)):
            rows.append(ratio_row("retained %s, %s" % (kind, label), r["memkit"][j], r["memcached"][j]))


def run_fills(run, args, rows):
    print("== fills: one value size per case, distinct keys until %.1f x -m value bytes are written" % args.fill_factor)
    m = run.mem * MIB
    table = []
    for size in map(int, args.fill_sizes.split(",")):
        r, peaks = run.case("fill " + size_label(size), lambda s, n=size: fill(s, n, run.mem, args.fill_factor),
                            lambda x: "kept %d items, %d value bytes (%.3f of -m); stats bytes %d, curr_items %d, "
                                      "evictions %d" % (x[0], x[1], x[1] / m, x[2], x[3], x[4]))
        k, c = r["memkit"], r["memcached"]
        table.append([size_label(size), cell(k[0], c[0]), cell(k[1] / m, c[1] / m, "{:.3f}")] +
                     [cell(k[j], c[j]) for j in (2, 3, 4)] + [run.rss_cell(peaks)])
    print_table("fills, -m %d, %.1f x -m value bytes written (target: value bytes kept / -m >= 0.9)" %
                (run.mem, args.fill_factor),
                ["value size", "items kept", "value bytes kept / -m", "stats bytes", "curr_items", "evictions",
                 "peak RSS MiB"], table)


def run_overwrite(run, args, rows):
    print("== overwrite: connections overwrite a fixed key set, each key %d times, then every key is read" %
          args.overwrite_rounds)
    table = []
    for conns, live, base, vary in itertools.product(map(int, args.overwrite_conns.split(",")),
                                                     map(float, args.overwrite_live.split(",")),
                                                     map(int, args.overwrite_sizes.split(",")), (False, True)):
        label = "%d conns, %.0f%%, %s %s" % (conns, 100 * live, size_label(base), "50-150%" if vary else "fixed")
        r, peaks = run.case(label, lambda s, a=(conns, live, base, vary): overwrite(s, *a, args.overwrite_rounds,
                                                                                      run.mem),
                            lambda x: "evictions %d, keys lost %d, live kept %.3f of -m, errors %d" % x)
        k, c = r["memkit"], r["memcached"]
        table.append([label, cell(k[0], c[0]), cell(k[1], c[1]), cell(k[2], c[2], "{:.3f}"), run.rss_cell(peaks)])
    print_table("overwrite, -m %d, %d writes of each key" % (run.mem, args.overwrite_rounds),
                ["connections, key set / -m, values", "evictions", "keys lost", "live kept / -m", "peak RSS MiB"],
                table)


def restart(name, binary, mem, items, size):
    """Fill a server that keeps its memory in a file, stop it with SIGUSR1 (the signal memcached saves on), start
    it again on the same file: (items written, seconds from start to the first hit, items read back intact,
    peak RSS)."""
    d = tempfile.mkdtemp(prefix="mk-restart-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(d, name + ".img")
    try:
        srv = Server(name, binary, mem, ["-e", path]).start()
        srv.store((b"r:%d" % i, value_for(i, size)) for i in range(items))
        written = int(srv.stats()["curr_items"])
        peak = srv.stop(signal.SIGUSR1)
        time.sleep(1.5)  # memcached refuses an image whose stop time is not in the past (whole seconds)
        t0 = time.monotonic()
        again = Server(name, binary, mem, ["-e", path]).start(srv.port)  # (memcached's image records the port)
        while not again.get_many([b"r:%d" % (items - 1)]):
            if time.monotonic() - t0 > 30:
                break
            time.sleep(0.005)
        seconds = time.monotonic() - t0
        ok, _ = verify(again, range(items), lambda i: b"r:%d" % i, lambda i: value_for(i, size))
        peak = max(peak, again.stop())
        return written, seconds, ok, peak
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def run_restart(run, args, rows):
    items = int(run.mem * MIB / 112)  # 100-byte values: past what either server holds
    print("== restart: fill -m %d with 100-byte values over %d keys, stop with SIGUSR1, start on the same -e file"
          % (run.mem, items))
    res = {}
    for name, binary in (("memkit", MEMKITD), ("memcached", MEMCACHED)):
        res[name] = restart(name, binary, run.mem, items, 100)
        run.peak[name] = max(run.peak[name], res[name][3])
        if res[name][3] > run.limit:  # (restart() stops its servers itself: check the limit here)
            run.flags.append("%s restart: peak RSS %.1f MiB > %.1f MiB" % (name, mb(res[name][3]), mb(run.limit)))
            print("  !! %s" % run.flags[-1], flush=True)
        print("  %-10s %d items before the stop, first hit %.3f s after the start, %d items back intact" %
              ((name,) + res[name][:3]), flush=True)
    k, c = res["memkit"], res["memcached"]
    rows.append(ratio_row("restart: items before the stop", k[0], c[0]))
    rows.append(ratio_row("restart: items back intact", k[2], c[2]))
    rows.append(("restart: seconds to the first hit", "%.3f" % k[1], "%.3f" % c[1], "%.2fx" % (k[1] / max(c[1], 1e-9))))


def run_hits(run, args, rows):
    print("== hits: hit ratio, cache-aside, Zipf over %d keys (zipf 1.2: %d keys, %d warm-up), 100-byte values" %
          (args.hit_keys, args.zipf12_keys, args.zipf12_warm))
    for label in args.hit_cases.split(","):
        nk, w = (args.zipf12_keys, args.zipf12_warm) if label == "zipf 1.2" else (args.hit_keys, args.hit_requests)
        r, _ = run.case(label, lambda s, a=label, nk=nk, w=w: hit_ratio(s, a, nk, w, args.hit_requests),
                        lambda x: "%.2f%%" % (100 * x))
        rows.append(("hit ratio " + label, "%.2f%%" % (100 * r["memkit"]), "%.2f%%" % (100 * r["memcached"]),
                     "%+.2f pt" % (100 * (r["memkit"] - r["memcached"]))))


def run_soak(run, args, rows):
    print("== soak: %d s, mixed shifting sizes, both servers at once" % args.soak_seconds)
    srvs = [s.start() for s in run.servers()]
    peaks, samples, nops = soak(srvs, args.soak_seconds)
    for s in srvs:
        st = s.stats()
        hwm = run.stop(s, "soak")
        print("  %-10s peak sampled RSS %.1f MiB, final %.1f MiB, VmHWM %.1f MiB, curr_items %s, evictions %s" %
              (s.name, mb(peaks[s.name]), mb(samples[s.name][-1] if samples[s.name] else 0), mb(hwm),
               st.get("curr_items"), st.get("evictions")), flush=True)
    rows.append(ratio_row("soak peak RSS (MiB)", mb(peaks["memkit"]), mb(peaks["memcached"]), "%.1f"))
    print("  soak: %d operations" % nops)


def run_churn(run, args, rows):
    table = []
    for size in map(int, args.churn_max_sizes.split(",")):
        label = "churn 10 B..%s" % size_label(size)
        print("== %s: %d s, %d connections per server, both servers at once" %
              (label, args.churn_seconds, args.churn_writers))
        srvs = [s.start() for s in run.servers()]
        totals, samples, nkeys = churn(srvs, args.churn_seconds, args.churn_writers, size, args.sample_seconds,
                                       run.mem)
        end = {}
        for s in srvs:
            st = s.stats()
            hits, misses, nops, errors = totals[s.name]
            e = end[s.name] = dict(hits=hits, misses=misses, ratio=100 * hits / max(1, hits + misses),
                                   items=int(st["curr_items"]), evictions=int(st["evictions"]), peak=run.stop(s, label))
            print("  %-10s %d ops over %d keys: %d hits, %d misses (%.2f%%), curr_items %d, evictions %d, errors %d, "
                  "VmHWM %.1f MiB" % (s.name, nops, nkeys, hits, misses, e["ratio"], e["items"], e["evictions"],
                                      errors, mb(e["peak"])), flush=True)
        print("  %5s" % "t (s)" + "".join("  %s RSS MiB  %s items" % (s.name, s.name) for s in srvs))
        for row in samples:
            print("  %5.0f" % row[0] + "".join("  %*.1f  %*d" % (len(s.name) + 8, mb(row[1 + 2 * j]), len(s.name) + 6,
                                                                row[2 + 2 * j]) for j, s in enumerate(srvs)))
        k, c = end["memkit"], end["memcached"]
        table.append([label] + [cell(k[f], c[f], fmt) for f, fmt in (("hits", "{:,}"), ("misses", "{:,}"),
                                                                      ("ratio", "{:.2f}%"), ("items", "{:,}"),
                                                                      ("evictions", "{:,}"))] +
                     [run.rss_cell({n: end[n]["peak"] for n in end})])
    print_table("churn, -m %d, %d s each, %d connections per server" % (run.mem, args.churn_seconds,
                                                                         args.churn_writers),
                ["values", "hits", "misses", "hit ratio", "items at the end", "evictions", "peak RSS MiB"], table)


WORKLOADS = {"retained": run_retained, "fills": run_fills, "overwrite": run_overwrite, "hits": run_hits,
             "soak": run_soak, "churn": run_churn, "restart": run_restart}

FULL = dict(m=64, soak_seconds=120, churn_seconds=300, sample_seconds=10, hit_requests=1_500_000,
            hit_keys=3_500_000, zipf12_keys=100_000_000, zipf12_warm=10_000_000, fill_factor=3.0, overwrite_rounds=20)
QUICK = dict(m=8, soak_seconds=10, churn_seconds=15, sample_seconds=5, hit_requests=200_000,
             hit_keys=350_000, zipf12_keys=1_000_000, zipf12_warm=500_000, fill_factor=1.5, overwrite_rounds=3)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: each default below becomes its --quick value")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="of: " + ",".join(WORKLOADS))
    ap.add_argument("-t", "--threads", type=int, default=None, help="worker threads (-t) of both servers [their default: 4]")

    def add(flag, typ, hlp):
        key = flag.lstrip("-").replace("-", "_")
        ap.add_argument(flag, type=typ, help="%s (default %s, --quick %s)" % (hlp, FULL[key], QUICK[key]))

    add("-m", int, "memory limit of both servers, MiB")
    add("--soak-seconds", int, "soak duration")
    add("--churn-seconds", int, "duration of each churn run")
    add("--sample-seconds", int, "churn: RSS and curr_items sampling period")
    add("--hit-requests", int, "measured requests of each hit-ratio case, and warm-up requests (but zipf 1.2)")
    add("--hit-keys", int, "key space of the hit-ratio cases (but zipf 1.2)")
    add("--zipf12-keys", int, "key space of the zipf 1.2 case: at that skew 3.5M keys never fill either cache")
    add("--zipf12-warm", int, "warm-up requests of the zipf 1.2 case")
    add("--fill-factor", float, "fills: value bytes written / -m")
    add("--overwrite-rounds", int, "overwrite: writes of each key")
    ap.add_argument("--hit-cases", default=",".join(HIT_CASES), help="of: " + ",".join(HIT_CASES))
    ap.add_argument("--fill-sizes", default="10,100,1000,4000,16000,20000,64000,100000,500000,1000000",
                    help="fills: value sizes, bytes")
    ap.add_argument("--overwrite-conns", default="16,64", help="overwrite: connections (threads)")
    ap.add_argument("--overwrite-live", default="0.4,0.6", help="overwrite: key set, key + value bytes / -m")
    ap.add_argument("--overwrite-sizes", default="100,4000", help="overwrite: base value sizes, bytes")
    ap.add_argument("--churn-writers", type=int, default=2, help="churn: connections (threads) per server")
    ap.add_argument("--churn-max-sizes", default="500000,16000", help="churn: one run per largest value size")
    args = ap.parse_args()
    for opt, given, known in (("--only", args.only, WORKLOADS), ("--hit-cases", args.hit_cases, HIT_CASES)):
        if set(given.split(",")) - set(known):
            ap.error("%s: unknown %s" % (opt, ", ".join(sorted(set(given.split(",")) - set(known)))))
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main():
    args = parse_args()
    run = Runner(args.m, args.threads)
    rows = []
    print("memkitd %s vs memcached %s, -m %d, RSS limit 1.1 x -m + 8 MiB = %.1f MiB" %
          (MEMKITD, MEMCACHED, args.m, mb(run.limit)), flush=True)
    for name in args.only.split(","):
        WORKLOADS[name](run, args, rows)
    rows.append(("peak RSS over all runs (MiB)", "%.1f" % mb(run.peak["memkit"]), "%.1f" % mb(run.peak["memcached"]),
                 "limit %.1f" % mb(run.limit)))
    print("\n| figure | memkit | memcached 1.6.18 | memkit/memcached |")
    print("|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)
    print("\npeak RSS over 1.1 x -m + 8 MiB: %s" % ("; ".join(run.flags) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
