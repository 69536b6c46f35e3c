#!/usr/bin/python3
"""bench/server_compare.py — memkitd vs Debian's memcached on loopback, side by side (issue 6); not part of CI.

For each worker-thread count (-t 1 and 2 by default) both servers run with the
same options, pinned with taskset to cores the load generator (memkit-bench,
pinned to the other cores) does not use. Each case runs A B A B ... (memkitd,
memcached, alternating) and reports medians and the memkitd/memcached ratio of:
requests/s, the server's CPU seconds per million requests (utime+stime of the
server process from /proc/PID/stat, before and after each run), and for the
fixed-rate case the latency percentiles. The headline case is cross-checked
with Debian's memcaslap (libmemcached-tools).

    bench/server_compare.py                      # ~6-8 minutes on 2 cores
    bench/server_compare.py --seconds 5 --runs 5 # longer, steadier
    bench/server_compare.py --cases getset-p1,rate-20k --threads 1
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")

# name, description, memkit-bench arguments (the run length, server and output options are added)
CASES = [
    ("getset-p1", "get:set 10:1, pipeline 1", ["--ratio", "10:1", "-c", "32", "-P", "1"]),
    ("getset-p16", "get:set 10:1, pipeline 16", ["--ratio", "10:1", "-c", "8", "-P", "16"]),
    ("mget16", "multi-get of 16 keys", ["--ratio", "1:0", "--multiget", "16", "-c", "16"]),
    ("mget100", "multi-get of 100 keys", ["--ratio", "1:0", "--multiget", "100", "-c", "16"]),
    ("mget16-meta", "meta multi-get: 16 quiet mg + mn", ["--protocol=meta", "--ratio", "1:0", "--multiget", "16",
                                                         "-c", "16"]),
    ("mget100-meta", "meta multi-get: 100 quiet mg + mn", ["--protocol=meta", "--ratio", "1:0", "--multiget", "100",
                                                           "-c", "16"]),
    ("set-heavy", "set-heavy, get:set 1:9", ["--ratio", "1:9", "-c", "32"]),
    ("value-100k", "100 KiB values, get:set 10:1", ["--ratio", "10:1", "-c", "8", "--value-size", "100k",
                                                   "--key-space", "2000"]),
    ("idle-1000", "get:set 10:1 beside 1,000 idle conns", ["--ratio", "10:1", "-c", "32", "--idle-conns", "1000"]),
    ("rate-20k", "fixed rate 20,000 req/s, 10:1", ["--ratio", "10:1", "-c", "16", "-R", "20000"]),
]
HEADLINE = "getset-p1"
KEY_SPACE = "100000"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


class Server:
    def __init__(self, name, binary, threads, cpus):
        self.name, self.binary = name, binary
        self.port = free_port()
        argv = ["taskset", "-c", cpus, binary, "-u", "root", "-l", HOST, "-U", "0", "-p", str(self.port),
                "-t", str(threads), "-m", "1024", "-c", "4096"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise SystemExit(f"server_compare: {' '.join(argv)} did not start")

    @property
    def addr(self):
        return f"{HOST}:{self.port}"

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_bench(args, server, extra, seconds, client_cpus, client_threads):
    cmd = ["taskset", "-c", client_cpus, args.bench, "-s", server.addr, "--json", "-q",
           "-t", str(client_threads), "--key-space", KEY_SPACE] + extra + ["-d", str(seconds)]
    c0 = server.cpu()
    p = subprocess.run(cmd, capture_output=True, text=True)
    c1 = server.cpu()
    if p.returncode != 0:
        raise SystemExit(f"server_compare: {' '.join(cmd)}: rc {p.returncode}: {p.stderr.strip()}")
    r = json.loads(p.stdout)
    r["server_cpu_s"] = c1 - c0
    r["cpu_s_per_m"] = (c1 - c0) / r["requests"] * 1e6 if r["requests"] else float("nan")
    return r


def shape_args(extra):
    """the key and value shape of a case (what prepopulation must match), without its load shape"""
    keep = []
    for i, x in enumerate(extra):
        if x in ("--value-size", "--key-space", "--key-size"):
            keep += extra[i:i + 2]
    return keep


def prepopulate(args, server, extra, client_cpus):
    """set every key once (not measured): the measured runs then hit"""
    cmd = ["taskset", "-c", client_cpus, args.bench, "-s", server.addr, "-q", "--json", "--key-space", KEY_SPACE,
           "--prepopulate", "-n", "1", "-c", "8"] + shape_args(extra)
    subprocess.run(cmd, check=True, capture_output=True)


def cpu_list(spec):
    cpus = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def memcaslap(server, seconds, client_cpus, client_threads):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
    cfg.write("key\n16 16 1\nvalue\n32 32 1\ncmd\n0 0.0909\n1 0.9091\n")  # 0: set, 1: get -> 10:1
    cfg.close()
    cmd = ["taskset", "-c", client_cpus, "memcaslap", "-s", server.addr, "-T", str(client_threads),
           "-c", "32", "-t", f"{seconds}s", "-F", cfg.name]
    c0 = server.cpu()
    p = subprocess.run(cmd, capture_output=True, text=True)
    c1 = server.cpu()
    os.unlink(cfg.name)
    ops = tps = None
    for line in p.stdout.splitlines():
        if line.startswith("Run time:"):
            parts = line.split()
            ops, tps = int(parts[parts.index("Ops:") + 1]), float(parts[parts.index("TPS:") + 1])
    if tps is None:
        raise SystemExit(f"server_compare: memcaslap printed no result: {p.stdout[-300:]} {p.stderr[-300:]}")
    return {"ops_per_s": tps, "requests": ops, "cpu_s_per_m": (c1 - c0) / ops * 1e6 if ops else float("nan")}


def med(rs, f):
    vals = [f(r) for r in rs]
    return statistics.median(vals) if vals else float("nan")


def paired(a, b, f):
    """median of the per-run ratios: run i of each server ran back to back, so their ratio cancels most of
    what other load (and this VM's bimodal speed) did to both"""
    rs = [f(x) / f(y) for x, y in zip(a, b) if f(y)]
    return f"{statistics.median(rs):.2f}" if rs else "-"


def fmt(v, kind):
    if v != v:
        return "-"
    if kind == "rate":
        return f"{v / 1000:.1f}k"
    if kind == "cpu":
        return f"{v:.2f}"
    return f"{v:.1f}"


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memkitd", default=os.path.join(REPO, "build/memkitd"))
    ap.add_argument("--memcached", default=shutil.which("memcached") or "/usr/bin/memcached")
    ap.add_argument("--bench", default=os.path.join(REPO, "build/memkit-bench"))
    ap.add_argument("--threads", default="1,2", help="server worker-thread counts (-t), comma-separated [1,2]")
    ap.add_argument("--seconds", type=float, default=3, help="length of one run [3]")
    ap.add_argument("--runs", type=int, default=3, help="runs per server per case, alternating A B A B [3]")
    ap.add_argument("--cases", default=",".join(c[0] for c in CASES), help="comma-separated subset of the cases")
    ap.add_argument("--server-cpus", help="cores for the servers [the upper half]")
    ap.add_argument("--client-cpus", help="cores for the load generator [the lower half]")
    ap.add_argument("--no-memcaslap", action="store_true", help="skip the memcaslap cross-check")
    ap.add_argument("--json", metavar="FILE", help="also write every run's result to FILE")
    args = ap.parse_args()

    ncpu = os.cpu_count() or 1
    if ncpu < 2 and not (args.server_cpus and args.client_cpus):
        raise SystemExit("server_compare: needs two cores to pin server and load generator apart")
    half = ncpu // 2
    client_cpus = args.client_cpus or (f"0-{half - 1}" if half > 1 else "0")
    server_cpus = args.server_cpus or (f"{half}-{ncpu - 1}" if ncpu - half > 1 else str(half))
    client_threads = len(cpu_list(client_cpus))
    names = args.cases.split(",")
    unknown = set(names) - {c[0] for c in CASES}
    if unknown:
        raise SystemExit(f"server_compare: unknown case(s): {', '.join(sorted(unknown))}")
    cases = [c for c in CASES if c[0] in names]
    for b in (args.memkitd, args.memcached, args.bench):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"server_compare: {b} not found (make build/memkitd build/memkit-bench)")

    log(f"server cores {server_cpus}, load generator cores {client_cpus} ({client_threads} thread(s)), "
        f"{args.runs} x {args.seconds:g} s per server per case")
    results = {}
    rows = []
    for t in [int(x) for x in args.threads.split(",")]:
        servers = [Server("memkitd", args.memkitd, t, server_cpus), Server("memcached", args.memcached, t, server_cpus)]
        try:
            populated = set()
            for name, desc, extra in cases:
                shape = tuple(shape_args(extra))
                for s in servers:
                    if (s.name, shape) not in populated:
                        prepopulate(args, s, extra, client_cpus)
                        populated.add((s.name, shape))
                runs = {s.name: [] for s in servers}
                for i in range(args.runs):
                    for s in (servers if i % 2 == 0 else servers[::-1]):  # A B B A A B ...: no side always first
                        runs[s.name].append(run_bench(args, s, extra, args.seconds, client_cpus, client_threads))
                results[f"t{t}/{name}"] = runs
                a, b = runs["memkitd"], runs["memcached"]
                metrics = [("req/s", "rate", lambda r: r["ops_per_s"]),
                           ("server CPU s / M req", "cpu", lambda r: r["cpu_s_per_m"])]
                if "-R" in extra:
                    metrics += [("p50 us", "us", lambda r: r["latency_us"]["p50"]),
                                ("p99 us", "us", lambda r: r["latency_us"]["p99"]),
                                ("p99.9 us", "us", lambda r: r["latency_us"]["p99_9"])]
                else:
                    metrics += [("p99 us", "us", lambda r: r["latency_us"]["p99"])]
                for label, kind, f in metrics:
                    ma, mb = med(a, f), med(b, f)
                    rows.append((t, desc, label, fmt(ma, kind), fmt(mb, kind), f"{ma / mb:.2f}" if mb else "-",
                                 paired(a, b, f)))
                log(f"  -t {t} {desc}: memkitd {med(a, lambda r: r['ops_per_s']):.0f} req/s, "
                    f"memcached {med(b, lambda r: r['ops_per_s']):.0f} req/s")
            if not args.no_memcaslap and shutil.which("memcaslap") and HEADLINE in names:
                runs = {s.name: [] for s in servers}
                for i in range(args.runs):
                    for s in (servers if i % 2 == 0 else servers[::-1]):
                        runs[s.name].append(memcaslap(s, max(1, int(args.seconds)), client_cpus, client_threads))
                results[f"t{t}/memcaslap"] = runs
                a, b = runs["memkitd"], runs["memcached"]
                for label, kind, key in (("req/s", "rate", "ops_per_s"), ("server CPU s / M req", "cpu", "cpu_s_per_m")):
                    ma, mb = med(a, lambda r: r[key]), med(b, lambda r: r[key])
                    rows.append((t, "memcaslap get:set 10:1 (cross-check)", label, fmt(ma, kind), fmt(mb, kind),
                                 f"{ma / mb:.2f}" if mb else "-", paired(a, b, lambda r, k=key: r[k])))
        finally:
            for s in servers:
                s.stop()

    head = ("-t", "case", "metric", "memkitd", "memcached", "ratio", "paired")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    print(f"| {' | '.join(str(h).ljust(w[i]) for i, h in enumerate(head))} |")
    print(f"|{'|'.join('-' * (x + 2) for x in w)}|")
    last = None
    for r in rows:
        cells = list(r)
        if (r[0], r[1]) == last:
            cells[0], cells[1] = "", ""
        last = (r[0], r[1])
        print(f"| {' | '.join(str(c).ljust(w[i]) if i < 3 else str(c).rjust(w[i]) for i, c in enumerate(cells))} |")
    print(f"\nmedians of {args.runs} alternating runs of {args.seconds:g} s; ratio = memkitd / memcached of the medians, "
          f"paired = median of the ratios of runs made back to back (req/s: higher is better; CPU and latency: "
          f"lower is better)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
