#!/usr/bin/python3
"""bench/python_clients.py — memkit vs pylibmc, pymemcache and python-memcached from Python, one memkitd.

    /usr/bin/python3 bench/python_clients.py [--seconds 1.0] [--rounds 3] [--memkitd build/memkitd] [--no-pin]
                                             [--ops get,set,get_multi] [--threads 1,8] [--multi-keys 100]

For each operation (get of a hit, set, get_multi of 100 keys or --multi-keys) and each thread count (1, 8),
every client runs for --seconds; rounds alternate the client order and the table shows the
median ops/s (get_multi: calls/s) and memkit's ratio to each (the median of the ratios within
each round, whose runs were back to back). Clients: memkit.Client shared
by all threads (its pool); pylibmc and pymemcache one client per thread (neither is
thread-safe); python-memcached one shared Client (a threading.local). By default the server
runs on the upper half of the CPUs (-t = that many) and the clients on the lower half, so that
the server's work does not share a core with the client being measured (on 2 CPUs: one each);
--no-pin leaves both to the scheduler (memkitd -t 2). A second table gives each client's CPU
time per call (process_time of the benchmark process).

A fifth column, "floor", is not a client: one raw socket per thread through Python's socket
module, sending request bytes built in advance and reading until the reply ends (END\r\n or
\r\n), with no key check, no parsing and no decoding. It makes the same send and receive
calls every client makes, so floor/pylibmc is about the most any Python client can gain over
pylibmc on this machine (a C extension can save a little of the floor's interpreter work,
not the system calls). Not CI.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "build", "python"))

import memcache  # noqa: E402
import memkit  # noqa: E402
import pylibmc  # noqa: E402
from pymemcache.client.base import Client as PymClient  # noqa: E402
from pymemcache import serde  # noqa: E402

VALUE = "v" * 100
KEYS = ["bench:key:%d" % i for i in range(100)]


class RawSocket:
    """the floor: request bytes prepared once, replies read to their end and not parsed"""

    GET = b"get bench:key:1\r\n"
    SET = b"set bench:key:set 0 0 %d\r\n%s\r\n" % (len(VALUE), VALUE.encode())
    MULTI = ("get " + " ".join(KEYS) + "\r\n").encode()

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _roundtrip(self, req, tail):
        self.sock.sendall(req)
        reply = self.sock.recv(65536)
        while not reply.endswith(tail):
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError("server closed the connection")
            reply += more
        return reply

    def get(self, _key):
        return self._roundtrip(self.GET, b"END\r\n")

    def set(self, _key, _value):
        return self._roundtrip(self.SET, b"\r\n")

    def get_multi(self, _keys):
        return self._roundtrip(self.MULTI, b"END\r\n")


def make_clients(addr):
    host, port = addr.split(":")
    return {
        "memkit": lambda shared=[]: shared[0] if shared else shared.append(memkit.Client([addr])) or shared[0],
        "memkit-pipe": lambda shared=[]: (shared[0] if shared
                                          else shared.append(memkit.Client([addr], pipeline=True)) or shared[0]),
        "pylibmc": lambda: pylibmc.Client([addr]),
        "pymemcache": lambda: PymClient((host, int(port)), serde=serde.pickle_serde, default_noreply=False),
        "python-memcached": lambda shared=[]: (shared[0] if shared
                                               else shared.append(memcache.Client([addr])) or shared[0]),
        "floor": lambda: RawSocket(host, int(port)),
    }


def op_fn(name, client, op):
    if op == "get":
        return lambda: client.get("bench:key:1")
    if op == "set":
        return lambda: client.set("bench:key:set", VALUE)
    if name == "pymemcache":
        return lambda: client.get_many(KEYS)
    return lambda: client.get_multi(KEYS)


def run(factory, name, op, nthreads, seconds):
    fns = [op_fn(name, factory(), op) for _ in range(nthreads)]
    for f in fns:
        f()
    counts = [0] * nthreads
    stop = threading.Event()
    start = threading.Barrier(nthreads + 1)

    def worker(i):
        f = fns[i]
        start.wait()
        n = 0
        while not stop.is_set():
            for _ in range(20):
                f()
            n += 20
        counts[i] = n
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for t in ts:
        t.start()
    start.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    calls = sum(counts)
    return calls / (time.perf_counter() - t0), (time.process_time() - c0) / calls * 1e6 if calls else float("nan")


def print_table(results, names, field, cell, ops=("get", "set", "get_multi"), threads=(1, 8)):
    """one row per (op, threads): each client's median of results[...][field]; then memkit's ratio to
    the others and the floor's ratio to pylibmc (the most any client could gain over it here), each
    the median of the per-round ratios: a round runs every client back to back, so a ratio within
    a round compares runs that saw the same machine (this VM changes speed for minutes at a time)"""
    print("%-10s %3s  %12s %12s %12s %12s %12s %12s   %8s %8s %8s   %10s   %9s %9s" % (
        "op", "thr", "memkit", "memkit-pipe", "pylibmc", "pymemcache", "python-mc", "floor",
        "vs plmc", "vs pymc", "vs py-mc", "floor/plmc", "pipe/plmc", "pipe/pymc"))
    for op in ops:
        for nt in threads:
            m = {n: statistics.median(r[field] for r in results[(op, nt, n)]) for n in names}

            def paired(a, b):
                return statistics.median(x[field] / y[field] for x, y in zip(results[(op, nt, a)],
                                                                             results[(op, nt, b)]))
            print(("%-10s %3d  " + " ".join([cell] * 6) + "   %7.2fx %7.2fx %7.2fx   %9.2fx   %8.2fx %8.2fx") % (
                op, nt, m["memkit"], m["memkit-pipe"], m["pylibmc"], m["pymemcache"], m["python-memcached"],
                m["floor"], paired("memkit", "pylibmc"), paired("memkit", "pymemcache"),
                paired("memkit", "python-memcached"), paired("floor", "pylibmc"), paired("memkit-pipe", "pylibmc"),
                paired("memkit-pipe", "pymemcache")))


def start_memkitd(binary, threads, cpus=None):
    """memkitd on a free loopback port (pinned to cpus if given), once it accepts: (process, "host:port")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen([binary, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-u", "root", "-t", str(threads)])
    if cpus:
        os.sched_setaffinity(srv.pid, cpus)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    return srv, "127.0.0.1:%d" % port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memkitd", default=os.path.join(REPO, "build", "memkitd"))
    ap.add_argument("--no-pin", action="store_true", help="do not pin the server and the clients to separate CPUs")
    ap.add_argument("--ops", default="get,set,get_multi", help="comma-separated subset of get,set,get_multi")
    ap.add_argument("--threads", default="1,8", help="comma-separated thread counts")
    ap.add_argument("--multi-keys", type=int, default=100, help="keys of each get_multi")
    a = ap.parse_args()
    if a.multi_keys < 1:
        ap.error("--multi-keys takes a count >= 1")
    KEYS[:] = KEYS[:a.multi_keys] if a.multi_keys <= len(KEYS) else ["bench:key:%d" % i for i in range(a.multi_keys)]
    RawSocket.MULTI = ("get " + " ".join(KEYS) + "\r\n").encode()
    ops = [o for o in a.ops.split(",") if o]
    threads = [int(t) for t in a.threads.split(",") if t]
    if not ops or any(o not in ("get", "set", "get_multi") for o in ops) or not threads or min(threads) < 1:
        ap.error("--ops takes get, set, get_multi; --threads takes counts >= 1")
    cpus = sorted(os.sched_getaffinity(0))
    pin = not a.no_pin and len(cpus) >= 2
    server_cpus = cpus[len(cpus) // 2:] if pin else cpus
    nworkers = len(server_cpus) if pin else 2
    srv, addr = start_memkitd(a.memkitd, nworkers, server_cpus if pin else None)
    if pin:
        os.sched_setaffinity(0, cpus[:len(cpus) // 2])
    try:
        clients = make_clients(addr)
        seed = memcache.Client([addr])
        for k in KEYS:
            seed.set(k, VALUE)
        names = list(clients)
        results = {}
        for op in ops:
            for nt in threads:
                for r in range(a.rounds):
                    order = names[r % len(names):] + names[:r % len(names)]
                    for n in order:
                        results.setdefault((op, nt, n), []).append(run(clients[n], n, op, nt, a.seconds))
        where = ("server on CPUs %s, clients on CPUs %s" % (server_cpus, cpus[:len(cpus) // 2]) if pin
                 else "server and clients unpinned")
        print("\nmedian of %d rounds x %.1f s, memkitd -t %d, %s, Python %s"
              % (a.rounds, a.seconds, nworkers, where, sys.version.split()[0]))
        print_table(results, names, 0, "%12.0f", ops, threads)
        print("\nclient CPU per call, microseconds (median; lower is better)")
        print_table(results, names, 1, "%12.1f", ops, threads)
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
