#!/usr/bin/python3
# bench/memory.py — memkitd vs Debian's memcached at the same -m: retained items, hit ratio, churn RSS (issue 5).
"""
Usage:  /usr/bin/python3 bench/memory.py [--only retained,hits,soak] [--soak-seconds 120] [-m 64]

Starts build/memkitd and /usr/bin/memcached with the same options
(-u root -l 127.0.0.1 -U 0 -p PORT -m M), runs each workload against one and
then the other (a fresh server per workload), and prints each figure, the
memkit/memcached ratio and each server's peak RSS (VmHWM).

  retained  write far past capacity, then multi-get every key written and count
            the values that come back byte-identical.
  hits      cache-aside loop (get; set on a miss) with Zipfian popularity over a
            key space ~10x what memcached holds; skew 0.8, 1.0, 1.2 and a mix
            with periodic one-off scans. Requests are pipelined in batches; a key
            missed and set earlier in the same batch counts as a hit when it
            recurs, as a sequential loop would see it.
  soak      churn of mixed sizes (overwrites, deletes, TTLs) against both servers
            at once, RSS sampled every second.
"""
import argparse
import bisect
import itertools
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMKITD = os.environ.get("MEMKITD", os.path.join(ROOT, "build", "memkitd"))
MEMCACHED = os.environ.get("MEMCACHED", "/usr/bin/memcached")

RAND = random.Random(12345)
BLOB = bytes(RAND.getrandbits(8) for _ in range(1 << 20)) * 2  # 2 MiB of incompressible bytes


def value_for(i, n):
    off = (i * 7919) % ((1 << 20) - 1)
    return BLOB[off:off + n]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, name, binary, mem, extra=()):
        self.name, self.binary, self.mem, self.extra = name, binary, mem, list(extra)

    def start(self):
        self.port = free_port()
        args = [self.binary, "-u", "root", "-l", "127.0.0.1", "-U", "0", "-p", str(self.port), "-m", str(self.mem)]
        self.proc = subprocess.Popen(args + self.extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError("%s did not start" % self.name)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        return self

    def stop(self):
        peak = self.rss("VmHWM")
        self.sock.close()
        self.proc.terminate()
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

    # ---- raw pipelined protocol ----
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise RuntimeError("connection closed")
        self.buf += d

    def sync(self):
        """Round trip so that every noreply command sent before has been processed."""
        self.send(b"mn\r\n" if False else b"version\r\n")
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        assert line.startswith(b"VERSION"), line

    def read_get(self):
        """Parse one multi-get reply; returns {key: value}."""
        out = {}
        pos = 0
        while True:
            while True:
                eol = self.buf.find(b"\r\n", pos)
                if eol >= 0:
                    break
                self._fill()
            line = self.buf[pos:eol]
            if line == b"END":
                self.buf = self.buf[eol + 2:]
                return out
            parts = line.split()
            if parts[0] != b"VALUE":
                raise RuntimeError("unexpected reply %r" % line[:80])
            n = int(parts[3])
            while len(self.buf) < eol + 2 + n + 2:
                self._fill()
            out[parts[1]] = self.buf[eol + 2:eol + 2 + n]
            pos = eol + 2 + n + 2

    def set_many(self, items):
        parts = []
        for k, v in items:
            parts.append(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(v), v))
        self.send(b"".join(parts))

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
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line == b"END":
                return out
            p = line.split(b" ", 2)
            out[p[1].decode()] = p[2].decode()


def servers(mem):
    return [Server("memkit", MEMKITD, mem), Server("memcached", MEMCACHED, mem)]


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
    n = int(4 * mem * (1 << 20) / (avg + 4))
    if kind == "grow100-1000":
        n = int(2 * 1.3 * mem * (1 << 20) / 105)  # first half alone fills the cache ~1.3x
    size = size_plan(kind, n)
    B = 2000
    for s in range(0, n, B):
        srv.set_many((key_for(kind, i), value_for(i, size(i))) for i in range(s, min(n, s + B)))
        if (s // B) % 16 == 15:
            srv.sync()
    srv.sync()
    ok = ok_new = nbytes = 0
    C = 200000
    # The calcification case is judged three ways: items of the new (large) mix
    # kept (the second half: what a cache serving the current workload needs),
    # all items kept, and value bytes kept.
    half = n // 2 if kind == "grow100-1000" else 0
    for s in range(0, n, C):
        keys = [key_for(kind, i) for i in range(s, min(n, s + C))]
        got = srv.get_many(keys)
        for i in range(s, min(n, s + C)):
            v = got.get(key_for(kind, i))
            if v is not None and v == value_for(i, size(i)):
                ok += 1
                nbytes += len(v)
                ok_new += i >= half
    if kind == "grow100-1000":
        return ok_new, n, ok, nbytes
    return ok, n


# ---------------- 2. hit ratio ----------------

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


def hit_ratio(srv, skew, nkeys, warm, measure, scan_every=0, scan_len=0):
    z = Zipf(nkeys, skew, seed=int(skew * 1000) + scan_every)
    vlen = 100
    hits = total = 0
    B = 500
    done = 0
    scan_base = nkeys * 10
    scan_next = 0
    while done < warm + measure:
        ids = z.sample(B)
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
    print("  %-10s zipf %.1f: %d keys, %d warm-up + %d measured requests, evictions %s (the cache was full: %s)" %
          (srv.name, skew, nkeys, warm, measure, ev, "yes" if ev not in ("0", "?") else "NO"), flush=True)
    return hits / total


# ---------------- 3. churn soak ----------------

def soak(srvs, seconds):
    peaks = {s.name: 0 for s in srvs}
    samples = {s.name: [] for s in srvs}
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            for s in srvs:
                r = s.rss()
                samples[s.name].append(r)
                peaks[s.name] = max(peaks[s.name], r)
            stop.wait(1.0)

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
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
    t.join()
    return peaks, samples, nops


def mb(x):
    return x / (1 << 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", type=int, default=64)
    ap.add_argument("--only", default="retained,hits,soak")
    ap.add_argument("--soak-seconds", type=int, default=120)
    ap.add_argument("--hit-cases", default="zipf 0.8,zipf 1.0,zipf 1.2,zipf 1.0 + scans")
    ap.add_argument("--hit-requests", type=int, default=1_500_000, help="measured requests per hit-ratio case")
    ap.add_argument("--zipf12-keys", type=int, default=100_000_000,
                    help="key space of the zipf 1.2 case: at that skew 3.5M keys never fill either cache")
    ap.add_argument("--zipf12-warm", type=int, default=10_000_000, help="warm-up requests of the zipf 1.2 case")
    args = ap.parse_args()
    only = args.only.split(",")
    mem = args.m
    limit = 1.1 * mem * (1 << 20) + 8 * (1 << 20)
    peak_all = {"memkit": 0, "memcached": 0}
    rows = []

    def run_case(label, fn, fmt):
        res = {}
        for srv in servers(mem):
            srv.start()
            t0 = time.time()
            res[srv.name] = fn(srv)
            peak = srv.stop()
            peak_all[srv.name] = max(peak_all[srv.name], peak)
            print("  %-10s %-22s %s  (%.0fs, peak RSS %.1f MiB)" % (srv.name, label, fmt(res[srv.name]),
                                                                     time.time() - t0, mb(peak)), flush=True)
        return res

    if "retained" in only:
        print("== 1. items retrievable byte-identical after writing past capacity (-m %d)" % mem)
        for kind in ("10/10", "30/100", "50-1000", "grow100-1000"):
            r = run_case("retained " + kind, lambda s, k=kind: retained(s, k, mem),
                         lambda x: "%9d of %d written" % x[:2] + ("" if len(x) == 2 else
                                   " (all items %d, %d value bytes)" % x[2:]))
            if kind == "grow100-1000":
                for label, j in (("items of the new mix", 0), ("all items", 2), ("value bytes", 3)):
                    rows.append(("retained %s, %s" % (kind, label), "%d" % r["memkit"][j], "%d" % r["memcached"][j],
                                 "%.2fx" % (r["memkit"][j] / max(1, r["memcached"][j]))))
                continue
            rows.append(("retained " + kind, "%d" % r["memkit"][0], "%d" % r["memcached"][0],
                         "%.2fx" % (r["memkit"][0] / max(1, r["memcached"][0]))))
    if "hits" in only:
        print("== 2. hit ratio, cache-aside, Zipf over 3.5M keys (zipf 1.2: %dM keys, %dM warm-up), 100-byte values" %
              (args.zipf12_keys // 1_000_000, args.zipf12_warm // 1_000_000))
        nkeys = 3_500_000
        warm = args.hit_requests
        for label, skew, se, sl in (("zipf 0.8", 0.8, 0, 0), ("zipf 1.0", 1.0, 0, 0), ("zipf 1.2", 1.2, 0, 0),
                                    ("zipf 1.0 + scans", 1.0, 100_000, 30_000)):
            if label not in args.hit_cases.split(","):
                continue
            nk, w = (args.zipf12_keys, args.zipf12_warm) if skew == 1.2 else (nkeys, warm)
            r = run_case(label, lambda s, a=skew, b=se, c=sl, nk=nk, w=w: hit_ratio(s, a, nk, w, args.hit_requests, b, c),
                         lambda x: "%.2f%%" % (100 * x))
            rows.append(("hit ratio " + label, "%.2f%%" % (100 * r["memkit"]), "%.2f%%" % (100 * r["memcached"]),
                         "%+.2f pt" % (100 * (r["memkit"] - r["memcached"]))))
    if "soak" in only:
        print("== 3. churn soak, %d s, mixed shifting sizes, both servers at once" % args.soak_seconds)
        srvs = [s.start() for s in servers(mem)]
        peaks, samples, nops = soak(srvs, args.soak_seconds)
        for s in srvs:
            st = s.stats()
            hwm = s.stop()
            peak_all[s.name] = max(peak_all[s.name], hwm)
            print("  %-10s peak sampled RSS %.1f MiB, final %.1f MiB, VmHWM %.1f MiB, curr_items %s, evictions %s" %
                  (s.name, mb(peaks[s.name]), mb(samples[s.name][-1] if samples[s.name] else 0), mb(hwm),
                   st.get("curr_items"), st.get("evictions")), flush=True)
        rows.append(("soak peak RSS (MiB)", "%.1f" % mb(peaks["memkit"]), "%.1f" % mb(peaks["memcached"]),
                     "%.2fx" % (peaks["memkit"] / max(1, peaks["memcached"]))))
        print("  soak: %d operations" % nops)
    rows.append(("peak RSS over all runs (MiB)", "%.1f" % mb(peak_all["memkit"]), "%.1f" % mb(peak_all["memcached"]),
                 "limit %.1f" % mb(limit)))
    print("\n| figure | memkit | memcached 1.6.18 | memkit/memcached |")
    print("|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
