"""Herd protection: Client.get_or_set and invalidate (the meta protocol's vivify and stale-while-revalidate):
one recompute for a missing or stale value however many callers arrive at once, under threads, gevent and
Django; a plain get/compute/set through a server without the meta protocol (twemproxy)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import PYPATH, free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def slow_compute(counter, delay=0.3, value="page"):
    def compute():
        counter.append(1)
        time.sleep(delay)
        return "%s-%d" % (value, len(counter))
    return compute


def run_threads(n, fn):
    out, errs = [], []
    go = threading.Barrier(n)

    def body():
        go.wait()
        try:
            out.append(fn())
        except Exception as e:   # pragma: no cover - reported below
            errs.append(e)
    ts = [threading.Thread(target=body) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errs, errs
    return out


def test_100_threads_one_compute_for_a_missing_key(srv, memkit):
    mc = memkit.Client([srv.addr], pool_size=16)
    computes = []
    out = run_threads(100, lambda: mc.get_or_set("herd:t", slow_compute(computes), 60))
    assert len(computes) == 1
    assert out == ["page-1"] * 100
    assert mc.get("herd:t") == "page-1"


def test_100_greenlets_one_compute_with_default_settings(srv):
    pytest.importorskip("gevent")
    r = subprocess.run([sys.executable, os.path.join(HERE, "herd_green.py"), PYPATH, srv.addr, "100"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = json.loads(r.stdout.decode().splitlines()[-1])
    assert res["computes"] == 1
    assert res["results"] == ["page-1"]


def test_invalidate_serves_stale_while_one_caller_recomputes(srv, memkit):
    mc = memkit.Client([srv.addr], pool_size=16)
    mc.set("herd:s", "old", 60)
    assert mc.invalidate("herd:s", 30) is True
    computes = []
    t0 = time.monotonic()
    out = run_threads(40, lambda: (mc.get_or_set("herd:s", slow_compute(computes, 2.0, "new"), 60),
                                   time.monotonic() - t0))
    assert len(computes) == 1
    values = sorted(v for v, _ in out)
    assert values == ["new-1"] + ["old"] * 39
    # the others did not wait for the 2 s recompute (a margin for a loaded CI machine)
    assert max(dt for v, dt in out if v == "old") < 1.5
    assert mc.get("herd:s") == "new-1"
    assert mc.invalidate("herd:none") is False


def test_a_failing_compute_gives_the_claim_back(srv, memkit):
    mc = memkit.Client([srv.addr])

    def boom():
        raise ValueError("db down")
    with pytest.raises(ValueError):
        mc.get_or_set("herd:f", boom, 60)
    # the placeholder is gone: the next caller computes at once instead of waiting lock_time (10 s)
    t0 = time.monotonic()
    assert mc.get_or_set("herd:f", lambda: "ok", 60) == "ok"
    assert time.monotonic() - t0 < 5
    # the same for a stale value: the claim goes back to the next reader
    mc.invalidate("herd:f")
    with pytest.raises(ValueError):
        mc.get_or_set("herd:f", boom, 60)
    assert mc.get_or_set("herd:f", lambda: "again", 60) == "again"


def test_waiters_give_up_after_wait_time_and_compute_without_storing(srv, memkit):
    mc = memkit.Client([srv.addr])
    started = threading.Event()

    def slow():
        started.set()
        time.sleep(4)
        return "slow"
    t = threading.Thread(target=lambda: mc.get_or_set("herd:w", slow, 60))
    t.start()
    started.wait(5)
    t0 = time.monotonic()
    assert mc.get_or_set("herd:w", lambda: "mine", 60, wait_time=0.2) == "mine"
    assert time.monotonic() - t0 < 3   # gave up after wait_time, not after the 4 s compute
    t.join()
    assert mc.get("herd:w") == "slow"


def test_values_of_every_type_round_trip(srv, memkit):
    mc = memkit.Client([srv.addr])
    for i, v in enumerate([b"bytes", "text", 42, {"a": [1, 2]}, ""]):
        assert mc.get_or_set("herd:v%d" % i, lambda: v, 60) == v
        assert mc.get_or_set("herd:v%d" % i, lambda: "other", 60) == v


@pytest.fixture
def twemproxy(srv):
    if not shutil.which("nutcracker"):
        pytest.skip("nutcracker not installed")
    d = tempfile.mkdtemp(prefix="mk-herd-")
    port = free_port()
    conf = os.path.join(d, "nutcracker.yml")
    with open(conf, "w") as f:
        f.write("pool:\n  listen: 127.0.0.1:%d\n  hash: fnv1a_64\n  distribution: ketama\n"
                "  servers:\n    - %s:1\n" % (port, srv.addr))
    p = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(free_port()), "-o", os.path.join(d, "log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    import socket
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.time() < deadline and p.poll() is None, "nutcracker did not start"
            time.sleep(0.05)
    yield "127.0.0.1:%d" % port
    p.terminate()
    p.wait()
    shutil.rmtree(d, ignore_errors=True)


def test_without_the_meta_protocol_it_is_get_compute_set(twemproxy, memkit):
    mc = memkit.Client([twemproxy])
    assert mc._meta_get("herd:p") is None   # twemproxy answers ERROR to mg
    calls = []
    assert mc.get_or_set("herd:p", lambda: calls.append(1) or "v", 60) == "v"
    assert mc.get_or_set("herd:p", lambda: calls.append(1) or "w", 60) == "v"
    assert calls == [1]
    # the multi-get libmemkit sends (classic "get k1 k2 ...": see docs/client.md) works through the proxy too
    keys = ["herd:m%d" % i for i in range(20)]
    assert mc.set_multi({k: k.upper() for k in keys}, 60) == []
    assert mc.get_multi(keys + ["herd:absent"]) == {k: k.upper() for k in keys}


def test_django_get_or_set_callable_is_herd_protected(srv):
    pytest.importorskip("django")
    code = r'''
import sys, json, threading, time
sys.path.insert(0, %r)
import django
from django.conf import settings
settings.configure(CACHES={"default": {"BACKEND": "memkit.django.MemkitCache", "LOCATION": %r}})
django.setup()
from django.core.cache import caches
computes = []
def compute():
    computes.append(1); time.sleep(0.3); return {"html": "page"}
out = []
go = threading.Barrier(50)
def body():
    go.wait()
    out.append(caches["default"].get_or_set("herd:dj", compute, 60))   # a backend object per thread
ts = [threading.Thread(target=body) for _ in range(50)]
[t.start() for t in ts]; [t.join() for t in ts]
c = caches["default"]
c.invalidate("herd:dj", 30)
stale = c.get_or_set("herd:dj", lambda: {"html": "new"}, 60)
print(json.dumps({"computes": len(computes), "distinct": len({json.dumps(o) for o in out}), "after": stale,
                  "get": c.get("herd:dj")}))
''' % (PYPATH, srv.addr)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = json.loads(r.stdout.decode().splitlines()[-1])
    assert res == {"computes": 1, "distinct": 1, "after": {"html": "new"}, "get": {"html": "new"}}


def test_a_dead_server_computes_without_blocking(memkit):
    from conftest import dead_addr
    mc = memkit.Client([dead_addr()], socket_timeout=1)
    for _ in range(3):   # the first calls find it down; later ones fail fast (the circuit breaker)
        t0 = time.monotonic()
        assert mc.get_or_set("herd:dead", lambda: "computed", 60) == "computed"
        assert time.monotonic() - t0 < 2.5
    assert mc.invalidate("herd:dead") is False


def test_noreply_failures_never_answer_a_later_call(srv, memkit):
    """Regression (the classic noreply pitfall): a failed noreply write still gets a reply. To a server
    that speaks meta it goes quiet and closed by "mn"; its failure is counted, never read as the reply
    of the next call on the connection."""
    mc = memkit.Client([srv.addr], pool_size=1)
    assert mc.set("nr:a", "1")
    for _ in range(3):
        mc.add("nr:a", "2", noreply=True)              # not stored
        mc.replace("nr:none", "x", noreply=True)       # not stored
        mc.delete("nr:none", noreply=True)             # not found
        mc.incr("nr:none", noreply=True)               # not found
        assert mc.get("nr:a") == "1"
        assert mc.get("nr:none") is None
    assert mc.set_multi({"nr:m%d" % i: i for i in range(500)}, noreply=True) == []
    assert mc.get_multi(["nr:m0", "nr:m499"]) == {"nr:m0": 0, "nr:m499": 499}
    (counters,) = mc.counters().values()
    assert counters["noreply_failed"] == 12 and counters["errors"] == 0


def test_noreply_through_twemproxy_stays_classic(twemproxy, memkit):
    mc = memkit.Client([twemproxy])
    mc.set("nr:p", "v", noreply=True)
    mc.add("nr:p", "w", noreply=True)                  # NOT_STORED: nutcracker forwards noreply
    mc.delete("nr:none", noreply=True)
    assert mc.get("nr:p") == "v"
    (counters,) = mc.counters().values()
    assert counters["noreply_failed"] == 0 and counters["errors"] == 0
