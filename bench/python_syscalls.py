#!/usr/bin/python3
"""bench/python_syscalls.py — system calls per get for each Python client, from N threads, counted by strace.

    /usr/bin/python3 bench/python_syscalls.py [--threads 8] [--gets 2000] [--memkitd build/memkitd]

Starts one memkitd (-t 1), then for each client runs THREADS threads doing GETS gets each of one
100-byte value under `strace -f -c` and prints, per get, the calls that matter: sends, receives, polls,
futex (thread hand-overs and the GIL), and all system calls together. Clients: memkit.Client shared by
all threads (its pool), memkit.Client(pipeline=True) (auto-pipelining, issue 17), pylibmc and pymemcache
one client per thread, python-memcached one shared Client (a threading.local). Interpreter start-up
counts too (a few hundred calls: small against THREADS x GETS). Then the same for event loops, THREADS
callers each: asyncio tasks (memkit.aio, pipelined; pylibmc through the loop's thread pool) and gevent
greenlets (memkit pipeline=True; memkit's pool; pymemcache's PooledClient). Not CI.
"""
import argparse
import os
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_clients import start_memkitd  # noqa: E402

CHILD = r"""
import sys, threading
sys.path.insert(0, %(pypath)r)
kind, n, gets, addr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
host, port = addr.split(":")
if kind in ("memkit", "memkit-pipe"):
    import memkit
    c = memkit.Client([addr], pipeline=kind == "memkit-pipe")
    clients = [c] * n
elif kind == "pylibmc":
    import pylibmc
    clients = [pylibmc.Client([addr]) for _ in range(n)]
elif kind == "pymemcache":
    from pymemcache.client.base import Client
    clients = [Client((host, int(port))) for _ in range(n)]
else:
    import memcache
    c = memcache.Client([addr])
    clients = [c] * n
clients[0].set("bench:key:1", "v" * 100)
def work(i):
    for _ in range(gets):
        clients[i].get("bench:key:1")
ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
for t in ts:
    t.start()
for t in ts:
    t.join()
"""

CHILD_LOOP = r"""
import sys
sys.path.insert(0, %(pypath)r)
kind, n, gets, addr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
host, port = addr.split(":")
loop, client = kind.split(" ")
if loop == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    if client.startswith("memkit"):
        import memkit
        c = memkit.Client([addr], pipeline=client == "memkit-pipe")
    else:
        from pymemcache.client.base import PooledClient
        c = PooledClient((host, int(port)), max_pool_size=n)
    c.set("bench:key:1", "v" * 100)
    def work():
        for _ in range(gets):
            c.get("bench:key:1")
    gevent.joinall([gevent.spawn(work) for _ in range(n)])
else:
    import asyncio
    async def main():
        if client == "memkit":
            import memkit.aio
            c = memkit.aio.Client([addr])
            get = c.get
        else:
            import pylibmc, threading
            from concurrent.futures import ThreadPoolExecutor
            ex, tl, loop = ThreadPoolExecutor(max_workers=n), threading.local(), asyncio.get_running_loop()
            def cl():
                if not hasattr(tl, "c"):
                    tl.c = pylibmc.Client([addr])
                return tl.c
            get = lambda k: loop.run_in_executor(ex, lambda: cl().get(k))
            cl().set("bench:key:1", "v" * 100)
        if client == "memkit":
            await c.set("bench:key:1", "v" * 100)
        async def work():
            for _ in range(gets):
                await get("bench:key:1")
        await asyncio.gather(*[work() for _ in range(n)])
    asyncio.run(main())
"""

GROUPS = {
    "send": ("sendto", "sendmsg", "write", "writev", "send"),
    "recv": ("recvfrom", "recvmsg", "read", "recv"),
    "poll": ("poll", "ppoll", "epoll_wait", "select", "pselect6"),
    "futex": ("futex",),
}


def count(kind, threads, gets, addr):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "strace")
        prog = os.path.join(d, "child.py")
        with open(prog, "w") as f:
            f.write((CHILD_LOOP if " " in kind else CHILD) % {"pypath": os.path.join(REPO, "build", "python")})
        subprocess.run(["strace", "-f", "-c", "-o", out, sys.executable, prog, kind, str(threads), str(gets), addr],
                       check=True, stdout=subprocess.DEVNULL)
        calls = {}
        for line in open(out):
            p = line.split()
            if len(p) >= 5 and p[3].isdigit() and p[-1] != "total":
                calls[p[-1]] = int(p[3])
    n = threads * gets
    row = {g: sum(calls.get(c, 0) for c in names) / n for g, names in GROUPS.items()}
    row["all"] = sum(calls.values()) / n
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--memkitd", default=os.path.join(REPO, "build", "memkitd"))
    a = ap.parse_args()
    srv, addr = start_memkitd(a.memkitd, 1)
    try:
        print("system calls per get, %d threads x %d gets, one memkitd (strace -f -c)" % (a.threads, a.gets))
        print("%-25s %7s %7s %7s %7s %7s" % ("client (threads, or loop and client)", "send", "recv", "poll",
                                               "futex", "all"))
        for kind in ("memkit", "memkit-pipe", "pylibmc", "pymemcache", "python-memcached",
                     "asyncio memkit", "asyncio pylibmc-executor",
                     "gevent memkit-pipe", "gevent memkit", "gevent pymemcache"):
            r = count(kind, a.threads, a.gets, addr)
            print("%-25s %7.2f %7.2f %7.2f %7.2f %7.2f" % (kind, r["send"], r["recv"], r["poll"], r["futex"], r["all"]))
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
