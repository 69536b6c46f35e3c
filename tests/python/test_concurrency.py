"""Threads share one Client through the bounded pool; a forked child opens its own connections."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import PYPATH

HERE = os.path.dirname(os.path.abspath(__file__))


def total_connections(s):
    return int(s.stats()["total_connections"])


def test_100_short_lived_threads_use_at_most_pool_size(memkit, fresh_server):
    for kind in ("memkitd", "memcached"):
        s = fresh_server(kind)
        mc = memkit.Client([s.addr])
        mc.set("k", "v")
        mc.disconnect_all()
        before = total_connections(s)
        results = []
        barrier = threading.Barrier(100)

        def one():
            barrier.wait()
            results.append(mc.get("k"))
        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["v"] * 100
        opened = total_connections(s) - before - 1   # minus our stats connection
        assert 1 <= opened <= mc.pool_size, (kind, opened)


def test_pool_size_option(memkit, fresh_server):
    s = fresh_server("memkitd")
    mc = memkit.Client([s.addr], pool_size=2)
    before = total_connections(s)
    ts = [threading.Thread(target=lambda: [mc.get("k%d" % i) for i in range(50)]) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert total_connections(s) - before - 1 <= 2


def test_threads_mixed_operations_no_crossed_replies(memkit, srv):
    mc = memkit.Client([srv.addr])
    errors = []

    def worker(n):
        for i in range(300):
            k = "t%d_%d" % (n, i % 10)
            v = {"n": n, "i": i}
            if mc.set(k, v) is not True or mc.get(k) != v:
                errors.append((k, i))
            if mc.get_multi([k, "t%d_x" % n]) != {k: v}:
                errors.append(("multi", k))
    ts = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def test_gil_released_while_waiting(memkit, fresh_server):
    """A frozen server: a get waits io_timeout with the GIL released; other threads run."""
    import signal
    s = fresh_server("memkitd")
    mc = memkit.Client([s.addr], socket_timeout=0.5)
    mc.set("k", 1)
    os.kill(s.proc.pid, signal.SIGSTOP)
    try:
        ticks = []
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(1)
                time.sleep(0.005)
        t = threading.Thread(target=ticker)
        t.start()
        t0 = time.time()
        assert mc.get("k") is None
        elapsed = time.time() - t0
        stop.set()
        t.join()
        assert 0.4 < elapsed < 1.0
        assert len(ticks) > 30
    finally:
        os.kill(s.proc.pid, signal.SIGCONT)


def in_child(check):
    """Run check() in a forked child: True if it returned true there."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, b"1" if check() else b"0")
        finally:
            os._exit(0)
    os.close(w)
    ok = os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)
    return ok


def test_fork_child_gets_fresh_connections(memkit, fresh_server):
    s = fresh_server("memkitd")
    mc = memkit.Client([s.addr], pool_size=1)
    assert mc.set("k", "parent") is True       # one pooled connection
    before = total_connections(s)
    assert in_child(lambda: mc.get("k") == "parent" and mc.set("c", "child") is True and mc.get("c") == "child")
    assert total_connections(s) - before - 1 == 1   # the child opened its own
    assert mc.get("c") == "child" and mc.get("k") == "parent"   # the parent's connection is intact
    assert total_connections(s) - before - 2 == 1   # ... and still the same one


def test_fork_many_children_in_parallel(memkit, srv):
    mc = memkit.Client([srv.addr])
    mc.set("shared", 0)
    pids = []
    for n in range(8):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for i in range(200):
                    if mc.set("c%d" % n, i) is not True or mc.get("c%d" % n) != i:
                        code = 1
                mc.incr("shared")
            except BaseException:
                code = 2
            os._exit(code)
        pids.append(pid)
    assert [os.waitpid(p, 0)[1] for p in pids] == [0] * 8
    assert mc.get("shared") == 8


def test_set_multi_and_delete_multi_pipeline_one_stream_per_server(memkit, fresh_server):
    """set_multi/delete_multi send one request stream per server: one connection
    each (not one per key in flight), every key gets its own reply."""
    for kind in ("memkitd", "memcached"):
        live = [fresh_server(kind) for _ in range(2)]
        mc = memkit.Client([s.addr for s in live], pool_size=8)
        before = [total_connections(s) for s in live]
        data = {"pm%d" % i: ("v%d" % i if i % 3 else i) for i in range(200)}
        data["too_big"] = "x" * (1024 * 1024 + 1)
        assert mc.set_multi(data) == ["too_big"]
        assert mc.get_multi(list(data)) == {k: v for k, v in data.items() if k != "too_big"}
        assert mc.delete_multi(list(data)) == 1
        assert mc.get_multi(list(data)) == {}
        opened = [total_connections(s) - b - 1 for s, b in zip(live, before)]   # minus the stats connection
        assert opened == [1, 1], (kind, opened)
        assert mc.set_multi({"a": 1, "b": 2}, noreply=True) == []
        assert mc.get_multi(["a", "b"]) == {"a": 1, "b": 2}


@pytest.mark.parametrize("mode", ["threads", "greenlets"])
def test_shared_cache_cas_no_lost_updates(srv, mode):
    """cas ids are per thread and per greenlet: a cas never uses the unique another worker fetched
    (the regression: one shared cas_ids dict let a stale increment succeed, 6 instead of 7)."""
    if mode == "greenlets":
        pytest.importorskip("gevent")
    out = subprocess.run([sys.executable, os.path.join(HERE, "cas_race.py"), PYPATH, srv.addr, mode, "16", "25"],
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    r = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert r["failed"] > 0, r                      # the workers did interleave
    assert r["final"] == r["ok"], r                # every successful cas was one increment


def pipelined_threads_on_one_connection(memkit, fresh_server, work, nthreads=16):
    """For memkitd and memcached: nthreads threads run work(mc, n, errors) on one pipeline=True client;
    no errors, and no connection opened beyond the one its first call took."""
    for kind in ("memkitd", "memcached"):
        s = fresh_server(kind)
        mc = memkit.Client([s.addr], pipeline=True)
        mc.set("warm", 1)
        before = total_connections(s)
        errors = []
        barrier = threading.Barrier(nthreads)

        def worker(n):
            barrier.wait()
            work(mc, n, errors)
        ts = [threading.Thread(target=worker, args=(n,)) for n in range(nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert errors == [], (kind, errors[:5])
        opened = total_connections(s) - before - 1   # minus our stats connection
        assert opened <= 1, (kind, opened)           # the first set's connection serves them all


def test_pipeline_threads_share_one_connection_no_crossed_replies(memkit, fresh_server):
    """Issue 17: with pipeline=True, 16 threads' gets, sets, incrs and deletes to one server go over one
    shared connection, and every call gets its own reply."""
    def work(mc, n, errors):
        mc.set("ctr%d" % n, 0)
        for i in range(300):
            k = "p%d_%d" % (n, i % 7)
            v = {"n": n, "i": i, "pad": "x" * (i % 50)}
            if mc.set(k, v) is not True or mc.get(k) != v:
                errors.append((k, i))
            if mc.incr("ctr%d" % n) != i + 1:
                errors.append(("incr", n, i))
            if i % 10 == 0 and (not mc.delete(k) or mc.get(k) is not None):
                errors.append(("delete", k))
    pipelined_threads_on_one_connection(memkit, fresh_server, work)


def test_pipeline_threads_multi_key_calls_share_the_connection(memkit, fresh_server):
    """Issue 17: with pipeline=True, 16 threads' get_multi, set_multi and delete_multi to one server go
    over the shared connection too, and each thread gets exactly its own keys' values."""
    def work(mc, n, errors):
        for i in range(150):
            keys = ["m%d_%d_%d" % (n, i % 5, j) for j in range(1 + i % 9)]
            vals = {k: "%s=%d" % (k, i) + "y" * (i % 40) for k in keys}
            if mc.set_multi(vals) != []:
                errors.append(("set_multi", n, i))
            got = mc.get_multi(keys + ["absent%d" % n])
            if got != vals:
                errors.append(("get_multi", n, i, sorted(set(got) ^ set(vals))))
            if i % 7 == 0 and (not mc.delete_multi(keys[:2]) or mc.get_multi(keys[:2]) != {}):
                errors.append(("delete_multi", n, i))
    pipelined_threads_on_one_connection(memkit, fresh_server, work)


def test_pipeline_threads_noreply_calls_share_the_connection(memkit, fresh_server):
    """Issue 17: with pipeline=True, 16 threads' noreply sets, incrs and deletes go out on the shared
    connection without waiting for their replies, and each thread reads its own writes back at once."""
    def work(mc, n, errors):
        mc.set("nctr%d" % n, 0)
        for i in range(200):
            k = "nr%d_%d" % (n, i % 7)
            v = {"n": n, "i": i}
            mc.set(k, v, noreply=True)
            mc.incr("nctr%d" % n, noreply=True)
            if mc.get(k) != v:
                errors.append((k, i))
            if i % 25 == 0:
                mc.delete(k, noreply=True)
                if mc.get(k) is not None:
                    errors.append(("delete", k))
        if mc.get("nctr%d" % n) != 200:
            errors.append(("incr", n, mc.get("nctr%d" % n)))
    pipelined_threads_on_one_connection(memkit, fresh_server, work)


def test_pipeline_fork_while_calls_are_in_flight(memkit, fresh_server):
    """Issue 17: a child forked while other threads are inside the pipe starts with an empty one."""
    s = fresh_server("memkitd")
    mc = memkit.Client([s.addr], pipeline=True)
    stop = threading.Event()
    errors = []

    def hammer(n):
        while not stop.is_set():
            mc.delete("gone%d" % n, noreply=True)   # ghosts in the pipe at the fork: the child frees them
            if mc.set("h%d" % n, n) is not True or mc.get("h%d" % n) != n:
                errors.append(n)
    ts = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    try:
        for _ in range(5):
            time.sleep(0.05)
            assert in_child(lambda: all(mc.set("c%d" % i, i) is True and mc.get("c%d" % i) == i for i in range(50)))
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert errors == []
