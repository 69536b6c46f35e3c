"""Reference counts and memory stay flat over many calls (hits, misses, errors, multi calls)."""
import gc
import sys
import tracemalloc

import pytest

from conftest import dead_addr


def _rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def _exercise(mc, memkit, n):
    key, val, big = "leak-key", {"a": [1, 2]}, "x" * 5000
    for i in range(n):
        mc.set(key, val)
        mc.get(key)
        mc.get("miss")
        mc.set("big", big, min_compress_len=100)
        mc.get("big")
        mc.set_multi({"m1": 1, "m2": b"b", "m3": "s"}, key_prefix="p:")
        mc.get_multi(["m1", "m2", "m3", "nope"], key_prefix="p:")
        mc.delete_multi(["m1"], key_prefix="p:")
        mc.incr("ctr") if i else mc.set("ctr", 0)
        mc.gets(key)
        mc.cas(key, val)
        mc.touch(key, 100)
        mc.delete("gone")
        try:
            mc.get("bad key")
        except memkit.Client.MemcachedKeyError:
            pass


def test_refcounts_stable(memkit, srv):
    mc = memkit.Client([srv.addr], cache_cas=True)
    key, val = "leak-key", {"a": [1, 2]}
    _exercise(mc, memkit, 10)
    before = (sys.getrefcount(key), sys.getrefcount(val), sys.getrefcount(mc), sys.getrefcount(None),
              sys.getrefcount(True))
    for _ in range(2000):
        mc.set(key, val)
        mc.get(key)
        mc.get_multi([key])
        mc.set_multi({key: val})
    after = (sys.getrefcount(key), sys.getrefcount(val), sys.getrefcount(mc), sys.getrefcount(None),
             sys.getrefcount(True))
    assert before[:3] == after[:3]
    assert abs(after[3] - before[3]) < 50 and abs(after[4] - before[4]) < 50


def test_no_memory_growth(memkit, srv):
    mc = memkit.Client([srv.addr], cache_cas=False)
    _exercise(mc, memkit, 200)
    gc.collect()
    tracemalloc.start()
    snap1 = tracemalloc.take_snapshot()
    _exercise(mc, memkit, 2000)
    gc.collect()
    snap2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in snap2.compare_to(snap1, "filename"))
    assert growth < 64 * 1024, growth
    rss0 = _rss_kb()
    _exercise(mc, memkit, 3000)       # C allocations (libmemkit, zlib) show in RSS only
    assert _rss_kb() - rss0 < 2048


def test_clients_and_failures_do_not_leak(memkit, srv):
    addr = dead_addr()
    for _ in range(50):
        memkit.Client([srv.addr]).get("k")
    gc.collect()
    rss0 = _rss_kb()
    for _ in range(2000):
        c = memkit.Client([srv.addr, addr], socket_timeout=0.2)
        c.set("k", 1)
        c.get_multi(["a", "b", "c"])
        del c
    r = memkit.Client([addr], raise_errors=True)
    for _ in range(2000):
        with pytest.raises(memkit.Error):
            r.get("k")
    gc.collect()
    assert _rss_kb() - rss0 < 4096
