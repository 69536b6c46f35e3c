"""memkit.Client's python-memcached API, call for call against the real python-memcached."""
import pickle
import time

import memcache
import pytest

from conftest import dead_addr


def both(memkit, addr, **kw):
    return memkit.Client([addr], **kw), memcache.Client([addr], **kw)


# Each scenario is a list of (method, args, kwargs); both clients run it on a flushed server
# and must return the same results, call for call.
SCENARIOS = {
    "set_get_types": [("set", ("s", "text"), {}), ("get", ("s",), {}), ("set", ("b", b"\x00\xffraw"), {}),
                      ("get", ("b",), {}), ("set", ("i", 42), {}), ("get", ("i",), {}),
                      ("set", ("n", -7), {}), ("get", ("n",), {}), ("set", ("big", 2 ** 64 + 1), {}),
                      ("get", ("big",), {}), ("set", ("t", True), {}), ("get", ("t",), {}),
                      ("set", ("f", 3.25), {}), ("get", ("f",), {}), ("set", ("d", {"a": [1, 2]}), {}),
                      ("get", ("d",), {}), ("set", ("none", None), {}), ("get", ("none",), {}),
                      ("set", ("u", "héllo ✓"), {}), ("get", ("u",), {}), ("set", ("e", ""), {}),
                      ("get", ("e",), {}), ("get", ("missing",), {})],
    "add_replace": [("add", ("k", 1), {}), ("add", ("k", 2), {}), ("get", ("k",), {}),
                    ("replace", ("k", 3), {}), ("replace", ("nope", 3), {}), ("get", ("k",), {})],
    "append_prepend": [("append", ("nope", "x"), {}), ("set", ("k", "mid"), {}),
                       ("append", ("k", "-end"), {}), ("prepend", ("k", "start-"), {}), ("get", ("k",), {})],
    "incr_decr": [("incr", ("c",), {}), ("set", ("c", 10), {}), ("incr", ("c",), {}),
                  ("incr", ("c", 5), {}), ("decr", ("c", 100), {}), ("decr", ("c",), {}),
                  ("set", ("c2", "7"), {}), ("incr", ("c2", 2 ** 63), {}), ("get", ("c2",), {}),
                  ("incr", ("c2",), {"noreply": True}), ("get", ("c2",), {})],
    "delete_touch": [("delete", ("k",), {}), ("set", ("k", 1), {}), ("delete", ("k",), {}),
                     ("get", ("k",), {}), ("touch", ("k", 10), {}), ("set", ("k", 1), {}),
                     ("touch", ("k", 10), {}), ("delete", ("k",), {"noreply": True}), ("get", ("k",), {})],
    "expiry": [("set", ("k", 1, -1), {}), ("get", ("k",), {}), ("set", ("k", 1), {"time": 100}),
               ("get", ("k",), {}), ("add", ("k", 2), {"time": 0}), ("touch", ("k", -1), {}),
               ("get", ("k",), {})],
    "noreply": [("set", ("k", "v"), {"noreply": True}), ("get", ("k",), {}),
                ("add", ("k", "w"), {"noreply": True}), ("get", ("k",), {})],
    "multi": [("set_multi", ({"a": 1, "b": "two", "c": [3]},), {}),
              ("get_multi", (["a", "b", "c", "zz"],), {}),
              ("set_multi", ({1: "x", 2: "y"},), {"key_prefix": "num_"}),
              ("get_multi", ([1, 2, 3],), {"key_prefix": "num_"}), ("get", ("num_1",), {}),
              ("delete_multi", (["a", "b"],), {}), ("get_multi", (["a", "b", "c"],), {}),
              ("delete_multi", ([1],), {"key_prefix": "num_"}), ("get_multi", ([1, 2],), {"key_prefix": "num_"}),
              ("get_multi", ([],), {}), ("set_multi", ({},), {}), ("set_multi", ({"q": 1},), {"noreply": True}),
              ("get", ("q",), {})],
    "cas_uncached": [("set", ("k", 1), {}), ("gets", ("k",), {}), ("cas", ("k", 2), {}), ("get", ("k",), {}),
                     ("cas", ("new", 5), {}), ("get", ("new",), {})],
    "compress": [("set", ("z", "x" * 1000), {"min_compress_len": 100}), ("get", ("z",), {}),
                 ("set", ("z2", b"abc" * 500), {"min_compress_len": 10}), ("get", ("z2",), {}),
                 ("set", ("z3", {"k": "v" * 500}), {"min_compress_len": 10}), ("get", ("z3",), {}),
                 ("set", ("n", 10 ** 40), {"min_compress_len": 1}), ("get", ("n",), {})],
    "tuple_keys": [("set", ((5, "tk"), "v"), {}), ("get", ((5, "tk"),), {}), ("get", ("tk",), {}),
                   ("get_multi", ([(5, "tk"), "tk"],), {})],
    "too_large": [("set", ("big", "x" * (1024 * 1024 + 1)), {}), ("get", ("big",), {}),
                  ("set_multi", ({"big": "x" * (1024 * 1024 + 1), "ok": 1},), {})],
    "unicode_keys": [("set", ("clé", "v"), {}), ("get", ("clé",), {}), ("get", ("clé".encode(),), {}),
                     ("get_multi", (["clé"],), {})],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_results_as_python_memcached(memkit, srv, name):
    results = []
    for client in both(memkit, srv.addr):
        srv.flush()
        out = []
        for meth, args, kw in SCENARIOS[name]:
            r = getattr(client, meth)(*args, **kw)
            out.append((meth, type(r).__name__, r if not isinstance(r, list) else sorted(map(str, r))))
        results.append(out)
    assert results[0] == results[1]


def test_cache_cas(memkit, srv):
    outs = []
    for mc in both(memkit, srv.addr, cache_cas=True):
        srv.flush()
        other = memcache.Client([srv.addr])
        out = [mc.set("k", 1), mc.gets("k"), mc.cas("k", 2), mc.get("k"), mc.gets("k")]
        other.set("k", 99)                      # the cached cas id is stale now
        out += [mc.cas("k", 3), mc.get("k"), sorted(mc.cas_ids)]
        mc.reset_cas()
        out += [mc.cas_ids, mc.cas("k", 4), mc.get("k")]
        outs.append(out)
    assert outs[0] == outs[1]
    assert outs[0][:4] == [True, 1, True, 2] and outs[0][5] is False


BAD_KEYS = ["", b"", None, 1, 1.5, "a b", "tab\tkey", "nl\nx", "k\x7f", "x" * 251, "é" * 126, ("a",), "\ud800", "ok\ud800"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
@pytest.mark.parametrize("meth", ["get", "gets", "set", "add", "delete", "incr", "touch", "get_multi",
                                  "set_multi", "delete_multi"])
def test_bad_keys_raise_the_same_exceptions(memkit, meth, key):
    errs = []
    for mc in (memkit.Client([dead_addr()]), memcache.Client([dead_addr()])):
        fn = getattr(mc, meth)
        args = {"set": (key, 1), "add": (key, 1), "get_multi": ([key],), "set_multi": ({key: 1},),
                "delete_multi": ([key],)}.get(meth, (key,))
        try:
            fn(*args)
            errs.append(None)
        except Exception as e:  # noqa: BLE001
            errs.append((type(e).__name__, str(e)))
    if meth in ("get_multi", "set_multi", "delete_multi") and isinstance(key, (int, float)):
        assert errs == [None, None]           # multi calls str() numbers, as python-memcached
    else:
        assert errs[0] == errs[1], errs
        assert errs[0] is not None


def test_exception_classes(memkit):
    C = memkit.Client
    for name in ("MemcachedKeyLengthError", "MemcachedKeyCharacterError", "MemcachedKeyNoneError",
                 "MemcachedKeyTypeError"):
        assert issubclass(getattr(C, name), C.MemcachedKeyError)
    assert issubclass(C.MemcachedKeyError, Exception)
    assert issubclass(C.MemcachedStringEncodingError, Exception)
    with pytest.raises(C.MemcachedKeyError):
        C([dead_addr()]).get("a b")
    mc = C([dead_addr()])
    with pytest.raises(C.MemcachedKeyNoneError):
        mc.check_key(None)
    with pytest.raises(C.MemcachedKeyNoneError):
        mc.check_key("")
    mc.check_key(b"fine")
    with pytest.raises(C.MemcachedKeyLengthError):
        mc.check_key(b"x" * 200, key_extra_len=51)


def test_check_keys_false_skips_checks(memkit, srv):
    mc = memkit.Client([srv.addr], check_keys=False)
    assert mc.get("a b") is None          # not sent: libmemkit refuses it, a miss for the caller
    assert mc.set("a b", 1) == 0


def _dead_results(mc):
    return [mc.get("k"), mc.gets("k"), mc.set("k", 1), mc.add("k", 1), mc.replace("k", 1),
            mc.append("k", "x"), mc.prepend("k", "x"), mc.cas("k", 1), mc.delete("k"), mc.touch("k", 1),
            mc.incr("k"), mc.decr("k"), mc.get_multi(["a", "b"]), sorted(mc.set_multi({"a": 1, "b": 2})),
            mc.delete_multi(["a"]), mc.flush_all(), mc.get_stats(), mc.set("k", 1, noreply=True)]


def test_dead_server_same_as_python_memcached(memkit):
    addr = dead_addr()
    a = _dead_results(memkit.Client([addr]))
    b = _dead_results(memcache.Client([addr]))
    assert [(type(x).__name__, x) for x in a] == [(type(x).__name__, x) for x in b]


def test_no_servers(memkit):
    a = _dead_results(memkit.Client([]))
    b = _dead_results(memcache.Client([]))
    assert a == b


def test_dead_server_fails_fast_then_retries(memkit, fresh_server):
    s = fresh_server("memkitd")
    mc = memkit.Client([s.addr], dead_retry=0.3, socket_timeout=0.5)
    assert mc.set("k", "v") is True
    s.stop()
    assert mc.get("k") is None            # marks it dead
    t = time.time()
    assert mc.get("k") is None and time.time() - t < 0.05   # dead: no network at all
    time.sleep(0.35)
    assert mc.get("k") is None


def test_dead_server_keys_move_like_python_memcached(memkit, fresh_server):
    """modula + a dead server: the rehash sends keys where python-memcached sends them."""
    live = [fresh_server("memkitd") for _ in range(3)]
    dead = dead_addr()
    servers = [live[0].addr, dead, live[1].addr, (live[2].addr, 2)]
    mk = memkit.Client(servers, distribution="modula")
    pm = memcache.Client(servers)
    keys = ["key%d" % i for i in range(60)]
    for k in keys:
        assert mk.set(k, "mk") is True
    for k in keys:
        assert pm.get(k) == "mk", k


def test_modula_shares_a_fleet_with_python_memcached(memkit, fresh_server):
    live = [fresh_server("memkitd") for _ in range(3)]
    servers = [live[0].addr, (live[1].addr, 3), live[2].addr]
    mk = memkit.Client(servers, distribution="modula")
    pm = memcache.Client(servers)
    for i in range(100):
        pm.set("pk%d" % i, i)
        mk.set("mk%d" % i, str(i))
    assert mk.get_multi(["pk%d" % i for i in range(100)]) == {"pk%d" % i: i for i in range(100)}
    assert all(pm.get("mk%d" % i) == str(i) for i in range(100))
    # (hash, key) tuples land where python-memcached puts them
    for h in range(20):
        pm.set((h, "tk%d" % h), h)
    assert all(mk.get((h, "tk%d" % h)) == h for h in range(20))


def test_ketama_default_spreads_and_reads_back(memkit, fresh_server):
    live = [fresh_server("memkitd") for _ in range(3)]
    mc = memkit.Client([s.addr for s in live])
    mc.set_multi({"k%d" % i: i for i in range(300)})
    assert mc.get_multi(["k%d" % i for i in range(300)]) == {"k%d" % i: i for i in range(300)}
    counts = [int(s.stats()["curr_items"]) for s in live]
    assert sum(counts) == 300 and min(counts) > 40


def test_get_stats_and_slabs(memkit, srv):
    mk, pm = both(memkit, srv.addr)
    a, b = mk.get_stats(), pm.get_stats()
    assert [n for n, _ in a] == [n for n, _ in b]
    assert set(a[0][1]) == set(b[0][1]) and a[0][1]["pid"] == b[0][1]["pid"]
    assert [n for n, _ in mk.get_stats("settings")] == [n for n, _ in pm.get_stats("settings")]
    mk.set("x", "y")
    assert [n for n, _ in mk.get_slabs()] == [n for n, _ in pm.get_stats()]   # python-memcached's get_slabs fails on Python 3
    assert isinstance(mk.get_slab_stats(), list)


def test_set_servers_disconnect_forget(memkit, srv, fresh_server):
    other = fresh_server("memkitd")
    mc = memkit.Client([dead_addr()])
    assert mc.set("k", 1) == 0
    mc.set_servers([other.addr])
    assert mc.set("k", 1) is True and mc.get("k") == 1
    mc.disconnect_all()
    assert mc.get("k") == 1
    mc.forget_dead_hosts()
    assert [str(s) for s in mc.servers] == ["inet:" + other.addr]


def test_server_specs(memkit, srv):
    host, port = srv.addr.split(":")
    for spec in (srv.addr, "inet:" + srv.addr, (srv.addr, 2)):
        mc = memkit.Client([spec])
        assert mc.set("k", "v") is True and mc.get("k") == "v"
    mc = memkit.Client(srv.addr)                       # libmemkit's list syntax
    assert mc.get("k") == "v"
    with pytest.raises(ValueError):
        memkit.Client(["host:notaport"])
    with pytest.raises(ValueError):
        memkit.Client([srv.addr], distribution="nope")
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="pool_timeout must be a positive number of seconds"):
            memkit.Client([srv.addr], pool_timeout=bad)
        with pytest.raises(ValueError, match="pool_timeout"):
            memkit.Client([srv.addr], checkout_timeout=bad)   # its old name


def test_options_pickle_serializer_raise(memkit, srv):
    mc = memkit.Client([srv.addr], pickleProtocol=pickle.HIGHEST_PROTOCOL)
    mc.set("p", {"x": 1})
    flags_line = srv.raw(b"get p\r\n").split(b"\r\n")[0]
    assert flags_line.split()[2] == b"1"
    assert srv.raw(b"get p\r\n").split(b"\r\n")[1][:2] == b"\x80\x05"

    import json
    ser = memkit.Client([srv.addr], serializer=lambda k, v: (json.dumps(v).encode(), 64),
                        deserializer=lambda k, b, f: ("json", f, json.loads(b)))
    assert ser.set("j", [1, 2]) is True
    assert ser.get("j") == ("json", 64, [1, 2])
    assert ser.get_multi(["j"]) == {"j": ("json", 64, [1, 2])}
    assert ser.set("s", "str stays text") and ser.get("s") == "str stays text"

    r = memkit.Client([dead_addr()], raise_errors=True)
    with pytest.raises(memkit.ConnectionError):
        r.get("k")
    with pytest.raises(memkit.Error):
        r.set("k", 1)
    assert issubclass(memkit.PoolTimeoutError, memkit.TimeoutError)


def test_client_level_min_compress_len(memkit, srv):
    mc = memkit.Client([srv.addr], min_compress_len=50)
    mc.set("z", "y" * 500)
    line = srv.raw(b"get z\r\n").split(b"\r\n")[0].split()
    assert int(line[2]) == 24 and int(line[3]) < 100
    assert mc.get("z") == "y" * 500


def test_unknown_flags_raise_value_error(memkit, srv):
    srv.raw(b"set odd 64 0 1\r\nx\r\n", b"STORED\r\n")
    for mc in both(memkit, srv.addr):
        with pytest.raises(ValueError):
            mc.get("odd")


def test_incr_errors_like_python_memcached(memkit, srv):
    for mc in both(memkit, srv.addr):
        mc.set("t", "text")
        with pytest.raises(ValueError):
            mc.incr("t")
        mc.set("n", 1)
        with pytest.raises(ValueError):
            mc.incr("n", -1)


def test_bad_pickle_reads_none(memkit, srv):
    srv.raw(b"set bp 1 0 3\r\nxyz\r\n", b"STORED\r\n")
    mk, pm = both(memkit, srv.addr)
    assert mk.get("bp") is None and pm.get("bp") is None


def test_drop_in_import(memkit, srv):
    memcache_ = memkit
    mc = memcache_.Client([srv.addr], debug=0)
    mc.set("some_key", "Some value")
    assert mc.get("some_key") == "Some value"
    mc.set("key", "1")
    assert mc.incr("key") == 2 and mc.decr("key") == 1
    assert mc.server_for_key("key") == 0 and mc.pool_size == 8
