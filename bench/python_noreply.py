#!/usr/bin/python3
"""bench/python_noreply.py -- noreply writes from threads: memkit.Client's pool against pipeline=True (the
threads' pipe takes noreply calls as plain requests whose replies a later reader drops). Not a CI test.

    /usr/bin/python3 bench/python_noreply.py [--threads 1,8,32] [--calls 4000] [--rounds 5]

Each thread makes --calls set(key, 100-byte value, noreply=True) calls and then one get (so the pipe's
last replies are read inside the timing). memkitd runs on the upper half of the CPUs, the threads on
the lower half; pool and pipe alternate within each round; medians of calls/s and of the per-round
ratios are printed.
"""
import argparse
import os
import statistics
import sys
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "build", "python"))
sys.path.insert(0, os.path.join(REPO, "bench"))

import memkit  # noqa: E402
from python_clients import start_memkitd  # noqa: E402


def run(addr, pipe, nthreads, calls):
    mc = memkit.Client([addr], pipeline=pipe)
    mc.set("warm", 1)
    start = threading.Barrier(nthreads + 1)

    def writer(t):
        start.wait()
        for i in range(calls):
            mc.set("nr%d_%d" % (t, i % 100), "v" * 100, noreply=True)
        mc.get("warm")
    ts = [threading.Thread(target=writer, args=(t,)) for t in range(nthreads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return nthreads * calls / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,8,32")
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    half = cpus[len(cpus) // 2:] if len(cpus) >= 2 else cpus
    proc, addr = start_memkitd(os.path.join(REPO, "build", "memkitd"), len(half), half if len(cpus) >= 2 else None)
    if len(cpus) >= 2:
        os.sched_setaffinity(0, cpus[:len(cpus) // 2])
    try:
        for n in [int(x) for x in a.threads.split(",")]:
            res = {False: [], True: []}
            for r in range(a.rounds):
                for pipe in ((False, True) if r % 2 == 0 else (True, False)):
                    res[pipe].append(run(addr, pipe, n, a.calls))
            ratio = statistics.median(b / p for p, b in zip(res[False], res[True]))
            print("%2d threads: noreply sets/s  pool %8.0f  pipe %8.0f  pipe/pool %.2fx" %
                  (n, statistics.median(res[False]), statistics.median(res[True]), ratio), flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
