"""Real client libraries drive the server; values must round-trip byte-identically."""

import os

import memcache           # python-memcached
import pylibmc
import pytest
from pymemcache.client.base import Client as PymemcacheClient

BIG = os.urandom(1000 * 1000)                       # ~1 MB, below the 1 MiB item limit
NON_ASCII = "héllo wörld ✓ 日本語".encode("utf-8") + bytes(range(256))


@pytest.fixture
def pymc(server):
    c = PymemcacheClient(("127.0.0.1", server.port), connect_timeout=5, timeout=10)
    yield c
    c.close()


def test_pymemcache_set_get(pymc):
    assert pymc.set("pm_a", b"value") is True
    assert pymc.get("pm_a") == b"value"
    assert pymc.get("pm_missing") is None


def test_pymemcache_binary_and_big_values(pymc):
    assert pymc.set("pm_bin", NON_ASCII)
    assert pymc.get("pm_bin") == NON_ASCII
    assert pymc.set("pm_big", BIG)
    assert pymc.get("pm_big") == BIG


def test_pymemcache_gets_cas(pymc):
    pymc.set("pm_c", b"1")
    val, token = pymc.gets("pm_c")
    assert val == b"1" and token
    assert pymc.cas("pm_c", b"2", token) is True
    assert pymc.cas("pm_c", b"3", token) is False           # EXISTS
    assert pymc.cas("pm_nocas", b"3", b"1") is None           # NOT_FOUND
    assert pymc.get("pm_c") == b"2"


def test_pymemcache_incr_decr_delete(pymc):
    pymc.set("pm_n", b"10")
    assert pymc.incr("pm_n", 5) == 15
    assert pymc.decr("pm_n", 20) == 0
    assert pymc.incr("pm_none", 1) is None
    assert pymc.delete("pm_n", noreply=False) is True
    assert pymc.delete("pm_n", noreply=False) is False


def test_pymemcache_get_many_and_touch(pymc):
    pymc.set_many({"pm_m1": b"1", "pm_m2": b"2", "pm_m3": b"3"})
    assert pymc.get_many(["pm_m1", "pm_m3", "pm_mX"]) == {"pm_m1": b"1", "pm_m3": b"3"}
    assert pymc.touch("pm_m1", 100, noreply=False) is True
    assert pymc.touch("pm_mX", 100, noreply=False) is False


def test_pymemcache_add_replace_append_prepend(pymc):
    assert pymc.add("pm_ar", b"mid", noreply=False) is True
    assert pymc.add("pm_ar", b"x", noreply=False) is False
    assert pymc.append("pm_ar", b">", noreply=False) is True
    assert pymc.prepend("pm_ar", b"<", noreply=False) is True
    assert pymc.get("pm_ar") == b"<mid>"
    assert pymc.replace("pm_ar", b"new", noreply=False) is True
    assert pymc.replace("pm_arX", b"new", noreply=False) is False
    assert pymc.get("pm_ar") == b"new"


def test_python_memcached_client(server):
    mc = memcache.Client([f"127.0.0.1:{server.port}"])
    try:
        assert mc.set("pym_a", "text")
        assert mc.get("pym_a") == "text"
        assert mc.set("pym_obj", {"a": [1, 2, 3]})            # pickled, flags set
        assert mc.get("pym_obj") == {"a": [1, 2, 3]}
        assert mc.set("pym_bytes", NON_ASCII)
        assert mc.get("pym_bytes") == NON_ASCII
        assert mc.set("pym_n", 5)
        assert mc.incr("pym_n", 3) == 8
        assert mc.decr("pym_n", 10) == 0
        assert mc.get_multi(["pym_a", "pym_n", "pym_nope"]) == {"pym_a": "text", "pym_n": 0}
        assert mc.delete("pym_a")
        assert mc.get("pym_a") is None
        assert mc.add("pym_add", "1") and not mc.add("pym_add", "2")
        mc.cache_cas = True
        assert mc.gets("pym_add") == "1"
        assert mc.cas("pym_add", "3")
        assert mc.get("pym_add") == "3"
        assert mc.get_stats() and mc.get_stats()[0][1]["curr_connections"]
    finally:
        mc.disconnect_all()


def test_python_memcached_big_value(server):
    mc = memcache.Client([f"127.0.0.1:{server.port}"], server_max_value_length=2 * 1024 * 1024)
    try:
        assert mc.set("pym_big", BIG)
        assert mc.get("pym_big") == BIG
    finally:
        mc.disconnect_all()


@pytest.fixture
def plm(server):
    c = pylibmc.Client([f"127.0.0.1:{server.port}"], binary=False, behaviors={"cas": True})
    yield c
    c.disconnect_all()


def test_pylibmc_set_get_multi(plm):
    assert plm.set("pl_a", b"1")
    assert plm.set("pl_b", NON_ASCII)
    assert plm.get("pl_a") == b"1"
    assert plm.get("pl_b") == NON_ASCII
    assert plm.get_multi(["pl_a", "pl_b", "pl_c"]) == {"pl_a": b"1", "pl_b": NON_ASCII}


def test_pylibmc_incr_delete(plm):
    plm.set("pl_n", 10)
    assert plm.incr("pl_n", 5) == 15
    assert plm.decr("pl_n", 1) == 14
    with pytest.raises(pylibmc.NotFound):
        plm.incr("pl_none", 1)
    assert plm.delete("pl_n")
    assert not plm.delete("pl_n")
    assert plm.get("pl_n") is None


def test_pylibmc_cas(plm):
    plm.set("pl_c", b"x")
    val, cas = plm.gets("pl_c")
    assert val == b"x"
    assert plm.cas("pl_c", b"y", cas)
    assert not plm.cas("pl_c", b"z", cas)
    assert plm.get("pl_c") == b"y"


def test_pylibmc_big_value(plm):
    assert plm.set("pl_big", BIG)
    assert plm.get("pl_big") == BIG
