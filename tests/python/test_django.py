"""memkit.django.MemkitCache through Django's cache API."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

django = pytest.importorskip("django")


@pytest.fixture
def cache(srv):
    from django.conf import settings
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache.backends.base import BaseCache
    from memkit.django import MemkitCache
    c = MemkitCache(srv.addr, {"TIMEOUT": 300, "KEY_PREFIX": "app", "VERSION": 1})
    assert isinstance(c, BaseCache)
    c.clear()
    yield c
    c.close()


def test_basic_api(cache):
    assert cache.get("k") is None and cache.get("k", "dflt") == "dflt"
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert cache.has_key("k") and not cache.has_key("nope")
    assert cache.add("k", 2) is False and cache.add("k2", 2) is True
    assert cache.delete("k") is True and cache.delete("k") is False
    cache.set_many({"a": 1, "b": "two", "c": [3]})
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": "two", "c": [3]}
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": [3]}
    cache.set("n", 10)
    assert cache.incr("n") == 11 and cache.incr("n", 5) == 16 and cache.decr("n", 6) == 10
    assert cache.incr("n", -1) == 9
    with pytest.raises(ValueError):
        cache.incr("missing")
    assert cache.get_or_set("gs", "made") == "made" and cache.get("gs") == "made"
    cache.clear()
    assert cache.get("c") is None


def test_django_async_api_runs_on_the_event_loop(cache, srv):
    """aget/aset/... (Django 4.0's async cache API, on any Django): 100 tasks on one pipelined connection
    per loop, the loop never blocked, results as the sync methods'."""
    pytest.importorskip("greenlet")
    import asyncio
    before = int(srv.stats()["total_connections"])

    async def main():
        async def task(i):
            await cache.aset("as%d" % i, {"i": i})
            assert await cache.aget("as%d" % i) == {"i": i}
            assert await cache.aadd("as%d" % i, 0) is False
            assert await cache.ahas_key("as%d" % i)
            await cache.aset_many({"am%d" % i: i, "an%d" % i: -i})
            assert await cache.aget_many(["am%d" % i, "an%d" % i, "none"]) == {"am%d" % i: i, "an%d" % i: -i}
            assert await cache.aincr("am%d" % i, 2) == i + 2
            assert await cache.adelete("as%d" % i) is True and await cache.aget("as%d" % i, "gone") == "gone"
        await asyncio.gather(*[task(i) for i in range(100)])
    asyncio.run(main())
    assert int(srv.stats()["total_connections"]) - before <= 3   # this stats connection, the pipe, at most one more


def test_timeouts(cache):
    cache.set("zero", 1, timeout=0)                    # 0: do not cache
    assert cache.get("zero") is None
    cache.set("forever", 1, timeout=None)              # None: forever
    assert cache.get("forever") == 1
    cache.set("t", 1, timeout=100)
    assert cache.touch("t", 0) is True and cache.get("t") is None
    assert cache.touch("missing", 10) is False
    cache.set("t2", 1)
    assert cache.touch("t2", None) is True and cache.get("t2") == 1
    import time
    cache.set("short", 1, timeout=1)
    time.sleep(2.1)
    assert cache.get("short") is None
    cache.set("long", 1, timeout=60 * 60 * 24 * 40)    # > 30 days: absolute time
    assert cache.get("long") == 1


def test_versions_and_keys(cache, srv):
    from django.core.cache.backends.base import InvalidCacheKey
    cache.set("v", "one", version=1)
    cache.set("v", "two", version=2)
    assert cache.get("v", version=1) == "one" and cache.get("v", version=2) == "two"
    assert cache.incr_version("v", version=2) == 3 and cache.get("v", version=3) == "two"
    assert cache.get("v", version=2) is None
    with pytest.raises(InvalidCacheKey):
        cache.set("bad key", 1)
    with pytest.raises(InvalidCacheKey):
        cache.get("x" * 300)
    assert b"app:1:v" in srv.raw(b"get app:1:v\r\n")


def test_through_caches_setting(srv):
    from django.conf import settings
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache import CacheHandler
    handler = CacheHandler({"default": {"BACKEND": "memkit.django.MemkitCache", "LOCATION": srv.addr,
                                        "OPTIONS": {"pool_size": 4}}})
    c = handler["default"]
    c.set("through", "settings")
    assert c.get("through") == "settings"
    assert c._cache.pool_size == 4


def _configured():
    from django.conf import settings
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()


def _opened(s, before):
    return int(s.stats()["total_connections"]) - before - 1   # minus the stats connection itself


BACKENDS = {
    "memkit": ("memkit.django.MemkitCache", {}),
    "pymemcache": ("django.core.cache.backends.memcached.PyMemcacheCache", {}),
    "pylibmc": ("django.core.cache.backends.memcached.PyLibMCCache", {}),
    "python-memcached": ("django.core.cache.backends.memcached.MemcachedCache", {}),   # (bench/python_conns.py)
}


def django_threads_connections(s, backend, nthreads=200):
    """nthreads short-lived threads, each reaching the cache through Django's per-thread handler (as a
    request thread does) and closing it at the end (request_finished); connections the server accepted."""
    import threading
    from django.core.cache import CacheHandler
    name, opts = BACKENDS[backend]
    handler = CacheHandler({"default": {"BACKEND": name, "LOCATION": s.addr, "OPTIONS": opts}})
    handler["default"].set("k", "v")
    handler["default"].close()
    before = int(s.stats()["total_connections"])
    got, barrier = [], threading.Barrier(nthreads)

    def request():
        barrier.wait()
        c = handler["default"]          # a new backend object in every thread
        got.append(c.get("k"))
        c.close()
    ts = [threading.Thread(target=request) for _ in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got == ["v"] * nthreads
    return _opened(s, before)


def test_django_200_short_lived_threads_share_one_pool(fresh_server):
    """The regression: Django builds a backend per thread, and each built its own Client (200 threads,
    200 connections). One Client per (LOCATION, OPTIONS) per process: at most pool_size."""
    _configured()
    s = fresh_server("memkitd")
    opened = django_threads_connections(s, "memkit")
    assert 1 <= opened <= 8, opened


def test_client_shared_is_one_per_servers_and_options():
    import memkit
    a = memkit.Client.shared(["127.0.0.1:1"], pool_size=3, serializer=None)
    assert memkit.Client.shared(["127.0.0.1:1"], serializer=None, pool_size=3) is a
    assert memkit.Client.shared(["127.0.0.1:1"], pool_size=4) is not a
    assert memkit.Client.shared(["127.0.0.1:2"], pool_size=3, serializer=None) is not a
    assert memkit.Client.shared(("127.0.0.1:1",), pool_size=3, serializer=None) is not a   # a tuple is not a list


def test_django_parity_with_pymemcache(srv):
    """Where MemkitCache used to differ from Django's PyMemcacheCache."""
    import memkit
    from django.core.cache import CacheHandler
    _configured()
    handler = CacheHandler({"m": {"BACKEND": "memkit.django.MemkitCache", "LOCATION": srv.addr},
                            "p": {"BACKEND": BACKENDS["pymemcache"][0], "LOCATION": srv.addr, "KEY_PREFIX": "p"}})
    for alias in ("m", "p"):
        c = handler[alias]
        c.set("none", None)
        assert c.get("none", "dflt") is None, alias          # a stored None is a hit
        assert c.get("missing", "dflt") == "dflt", alias
        c.set("big", 2 ** 70)
        with pytest.raises(Exception) as e:
            c.incr("big")
        assert "non-numeric" in str(e.value), alias          # not "Key ... not found"
        assert not isinstance(e.value, KeyError)
        with pytest.raises(ValueError, match="not found"):
            c.incr("missing")
    with pytest.raises(memkit.NotNumericError):
        handler["m"].incr("big")
    dead = CacheHandler({"d": {"BACKEND": "memkit.django.MemkitCache", "LOCATION": "127.0.0.1:1"}})["d"]
    assert dead.add("k", 1) is False                          # a bool, not 0


def _app_env(s):
    from conftest import PYPATH
    return dict(os.environ, MK_CACHE_LOCATION=s.addr, MK_BUILD_PYTHON=PYPATH)


def test_django_gevent_pywsgi_app_one_pool(fresh_server):
    """The regression: a gevent pywsgi Django app serving 100 requests (20 at a time) opened 100
    connections (a backend, so a Client, per greenlet). Now one pool for the process."""
    s = fresh_server("memkitd")
    before = int(s.stats()["total_connections"])
    out = subprocess.run([sys.executable, os.path.join(HERE, "djapp_gevent.py"), "100", "20"], env=_app_env(s),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r == {"n": 100, "ok": True}, r
    assert 1 <= _opened(s, before) <= 8


@pytest.mark.skipif(not shutil.which("gunicorn"), reason="Debian's gunicorn is not installed")
def test_gunicorn_preload_workers_never_share_a_socket(fresh_server):
    """gunicorn --preload: the master imports the site (and uses the cache) before forking 3 workers; each
    worker opens its own connections on first use, and no reply ever reaches the wrong process."""
    from conftest import free_port
    import threading
    import urllib.request
    s = fresh_server("memkitd")
    port = free_port()
    g = subprocess.Popen(["gunicorn", "--preload", "-w", "3", "-b", "127.0.0.1:%d" % port, "--chdir", HERE,
                          "djapp:application"], env=_app_env(s), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/page" % port, timeout=5).read()
                break
            except OSError:
                assert time.time() < deadline and g.poll() is None, g.stderr.read().decode()[-2000:]
                time.sleep(0.1)
        results = []

        def client(t):
            for i in range(30):
                with urllib.request.urlopen("http://127.0.0.1:%d/page?n=%d-%d" % (port, t, i), timeout=30) as r:
                    results.append(json.load(r))
        ts = [threading.Thread(target=client, args=(t,)) for t in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(results) == 180 and all(r["ok"] and r["shared"] for r in results)
        pids = {r["pid"] for r in results}
        assert len(pids) >= 2, pids                               # several workers served
        assert g.pid not in pids
        assert int(s.stats()["curr_connections"]) - 1 <= 1 + 3 * 8  # master + workers, each within its pool
    finally:
        g.terminate()
        g.wait(10)
