#!/usr/bin/python3
"""bench/python_loops.py -- memkit in event loops: asyncio tasks and gevent greenlets, against the clients
those users have. One memkitd (or --server HOST:PORT); each client runs in its own interpreter, rounds
alternate, medians are printed with the ratio to the first alternative. Not a CI test.

    /usr/bin/python3 bench/python_loops.py [--seconds 1] [--rounds 5] [--callers 1,8,32,128] [--ops get,mix] [--pin]

asyncio: memkit.aio (pipelined, the default) and memkit.aio(pipeline=False) vs pylibmc and pymemcache run
in the loop's thread pool (loop.run_in_executor; Debian packages no asyncio memcached client).
gevent (monkey-patched): memkit pipeline=True and memkit's default (pool of 8) vs pymemcache's
PooledClient and python-memcached (a client per greenlet, cooperative through gevent's sockets), and
pylibmc (a client per greenlet; its C sockets block the hub for each call).
mix: 10 gets to 1 set. Values are 100 bytes; 1,000 keys.
--pin: memkitd on the upper half of the CPUs (-t that many), the clients on the lower half (as
bench/python_clients.py does by default), so that client and server never share a core.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "bench"))

CHILD = r'''
import sys, time, json
sys.path.insert(0, %(pypath)r)
kind, client, addr, n, secs, ops = %(kind)r, %(client)r, %(addr)r, %(n)d, %(secs)f, %(ops)r
host, port = addr.split(":")
keys = ["bk%%d" %% i for i in range(1000)]
val = "v" * 100
if kind == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    if client == "memkit-pipe":
        import memkit; mc = memkit.Client([addr], pipeline=True); mk = lambda: mc
    elif client == "memkit":
        import memkit; mc = memkit.Client([addr]); mk = lambda: mc
    elif client == "pylibmc":
        import pylibmc; mk = lambda: pylibmc.Client([addr])
    elif client == "pymemcache":
        from pymemcache.client.base import PooledClient
        mc = PooledClient((host, int(port)), max_pool_size=n); mk = lambda: mc
    else:
        import memcache; mk = lambda: memcache.Client([addr])
    mk().set_many({k: val for k in keys}) if client == "pymemcache" else mk().set_multi({k: val for k in keys})
    count = [0]
    end = time.time() + secs   # (one deadline for all: pylibmc never yields, its greenlets run one by one)
    def worker(i):
        c = mk(); j = i
        while time.time() < end:
            for _ in range(50):
                j += 1
                if ops == "mix" and j %% 11 == 0: c.set(keys[j %% 1000], val)
                else: c.get(keys[j %% 1000])
            count[0] += 50
    t0 = time.time(); gevent.joinall([gevent.spawn(worker, i) for i in range(n)]); el = time.time() - t0
else:
    import asyncio
    async def main():
        loop = asyncio.get_running_loop()
        if client.startswith("memkit"):
            import memkit.aio
            mc = memkit.aio.Client([addr], pipeline=None if client == "memkit-aio" else False)
            await mc.set_multi({k: val for k in keys})
            get, set_ = mc.get, mc.set
        else:
            from concurrent.futures import ThreadPoolExecutor
            ex = ThreadPoolExecutor(max_workers=n)
            import threading; tl = threading.local()
            if client == "pylibmc":
                import pylibmc
                def c():
                    if not hasattr(tl, "c"): tl.c = pylibmc.Client([addr], binary=False)
                    return tl.c
            else:
                from pymemcache.client.base import Client as PC
                def c():
                    if not hasattr(tl, "c"): tl.c = PC((host, int(port)))
                    return tl.c
            c().set_many({k: val for k in keys}) if client == "pymemcache" else c().set_multi({k: val for k in keys})
            get = lambda k: loop.run_in_executor(ex, lambda: c().get(k))
            set_ = lambda k, v: loop.run_in_executor(ex, lambda: c().set(k, v))
        count = [0]
        end = time.time() + secs
        async def worker(i):
            j = i
            while time.time() < end:
                for _ in range(50):
                    j += 1
                    if ops == "mix" and j %% 11 == 0: await set_(keys[j %% 1000], val)
                    else: await get(keys[j %% 1000])
                count[0] += 50
        t0 = time.time(); await asyncio.gather(*[worker(i) for i in range(n)])
        return count, time.time() - t0
    count, el = asyncio.run(main())
print(json.dumps({"ops_s": count[0] / el}))
'''

CLIENTS = {"asyncio": ["pylibmc", "pymemcache", "memkit-aio", "memkit-aio-nopipe"],
           "gevent": ["pymemcache", "python-memcached", "pylibmc", "memkit", "memkit-pipe"]}


def run_child(kind, client, addr, n, secs, ops):
    code = CHILD % dict(pypath=os.path.join(REPO, "build", "python"), kind=kind, client=client, addr=addr, n=n,
                        secs=secs, ops=ops)
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])["ops_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callers", default="1,8,32,128")
    ap.add_argument("--ops", default="get,mix")
    ap.add_argument("--loops", default="asyncio,gevent")
    ap.add_argument("--server")
    ap.add_argument("--pin", action="store_true", help="memkitd and the clients on separate CPUs")
    a = ap.parse_args()
    proc = None
    cpus = sorted(os.sched_getaffinity(0))
    pin = a.pin and len(cpus) >= 2
    if a.server:
        addr = a.server
    else:
        from python_clients import start_memkitd
        half = cpus[len(cpus) // 2:]
        proc, addr = start_memkitd(os.path.join(REPO, "build", "memkitd"), len(half) if pin else 2,
                                   half if pin else None)
    if pin:
        os.sched_setaffinity(0, cpus[:len(cpus) // 2])   # (the clients' interpreters inherit it)
        print("memkitd on CPUs %s, clients on CPUs %s" % (cpus[len(cpus) // 2:], cpus[:len(cpus) // 2]))
    try:
        for kind in a.loops.split(","):
            for ops in a.ops.split(","):
                for n in [int(x) for x in a.callers.split(",")]:
                    res = {c: [] for c in CLIENTS[kind]}
                    names = CLIENTS[kind]
                    for r in range(a.rounds):   # the order turns each round
                        for c in names[r % len(names):] + names[:r % len(names)]:
                            res[c].append(run_child(kind, c, addr, n, a.seconds, ops))
                    med = {c: statistics.median(v) for c, v in res.items()}
                    base = CLIENTS[kind][0]
                    line = "  ".join("%s %7.0f/s (%.2fx)" % (c, med[c], med[c] / med[base]) for c in CLIENTS[kind])
                    print("%-7s %-3s %3d callers: %s" % (kind, ops, n, line), flush=True)
    finally:
        if proc:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
