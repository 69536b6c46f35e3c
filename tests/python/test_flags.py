"""Values across clients: ../shared/vectors/flags.json (what python-memcached and pylibmc store),
and live round trips with python-memcached, pylibmc and pymemcache."""
import json
import os
import pickle

import memcache
import pylibmc
import pytest
from pymemcache.client.base import Client as PymemcacheClient
from pymemcache import serde

from conftest import REPO

VECTORS = os.path.join(REPO, "..", "shared", "vectors", "flags.json")
if not os.path.exists(VECTORS):
    VECTORS = "/work/shared/vectors/flags.json"
with open(VECTORS) as f:
    ITEMS = [it for it in json.load(f)["items"] if it.get("stored")]

# Python values of the records by value name (the json keeps only truncated reprs);
# the same list as ../shared/vectors/tools/gen_flags.py.
VALUES = {
    "str_ascii": "hello world", "str_unicode": "h\u00e9llo w\u00f6rld \u2713", "str_empty": "",
    "bytes": b"raw\x00\x01\xffbytes", "bytes_empty": b"", "int_small": 42, "int_zero": 0, "int_negative": -7,
    "int_2pow64_plus1": 2 ** 64 + 1, "int_10pow40": 10 ** 40, "bool_true": True, "bool_false": False,
    "none": None, "float": 3.25, "dict": {"a": 1, "b": [1, 2, 3]}, "list": [1, "two", 3.0],
    "str_x100": "x" * 100, "str_x101": "x" * 101, "str_a1000": "a" * 1000, "bytes_abc500": b"abc" * 500,
    "dict_big": {"k%d" % i: "v" * 20 for i in range(50)},
}


def expected(it):
    return VALUES[it["value_name"]]


def test_vectors_cover_everything():
    writers = {it["writer"] for it in ITEMS}
    assert {"python-memcached", "pylibmc"} <= writers
    for it in ITEMS:
        assert it["value"]["repr"].startswith(repr(VALUES[it["value_name"]])[:40]), it["value_name"]
        assert it["value"]["type"] == type(VALUES[it["value_name"]]).__name__


@pytest.mark.parametrize("it", ITEMS, ids=lambda it: "%s/%s/%s" % (it["writer"], it["variant"][:5], it["value_name"]))
def test_reads_stored_bytes(memkit, srv, it):
    """Store the record's exact (flags, bytes), read them with memkit."""
    data = bytes.fromhex(it["hex"])
    key = "v"
    srv.raw(b"set %s %d 0 %d\r\n%s\r\n" % (key.encode(), it["flags"], len(data), data), b"STORED\r\n")
    mc = memkit.Client([srv.addr])
    got = mc.get(key)
    want = expected(it)
    if it["writer"] in ("python-memcached", "pylibmc", "pymemcache(pickle_serde)"):
        if it["writer"] == "pylibmc" and isinstance(want, bool):
            # pylibmc stores bools as INTEGER "1"/"0", the flags python-memcached uses for ints:
            # read back as ints (pylibmc reads them so too), equal by value
            assert type(got) is int and got == want
        else:
            assert type(got) is type(want) and got == want
    else:   # pymemcache's default serde writes bytes with flags 0 (str(value)): bytes come back
        assert got == data
    assert mc.get_multi([key]) == {key: got}


@pytest.mark.parametrize("it", [i for i in ITEMS if i["writer"] == "python-memcached"],
                         ids=lambda it: "%s/%s" % (it["variant"][:5], it["value_name"]))
def test_writes_python_memcached_bytes(memkit, srv, it):
    """memkit writes exactly the flags and bytes python-memcached writes."""
    mc = memkit.Client([srv.addr])
    kw = {"min_compress_len": 100} if it["variant"].startswith("min_compress") else {}
    assert mc.set("w", expected(it), **kw) is True
    head, _, rest = srv.raw(b"get w\r\n").partition(b"\r\n")
    flags, length = int(head.split()[2]), int(head.split()[3])
    assert flags == it["flags"]
    data = rest[:length]
    if flags & 1 and flags & 8:   # compressed pickles: compare what they inflate to
        import zlib
        assert zlib.decompress(data).hex() == it["inflated_hex"]
    else:
        assert data.hex() == it["hex"]


def _values():
    return {"s": "text ✓", "b": b"\x00bytes", "i": 42, "n": -3, "big": 2 ** 70, "f": 1.5,
            "d": {"a": [1, (2, 3)]}, "none": None, "long": "z" * 5000}


def test_live_python_memcached_both_ways(memkit, srv):
    pm, mk = memcache.Client([srv.addr]), memkit.Client([srv.addr])
    for writer, reader in ((pm, mk), (mk, pm)):
        srv.flush()
        for k, v in _values().items():
            assert writer.set(k, v, min_compress_len=100)
        got = reader.get_multi(list(_values()))
        assert got == _values() and all(type(got[k]) is type(v) for k, v in _values().items())
    assert mk.set("t", True) and pm.get("t") is True


def test_live_pylibmc_both_ways(memkit, srv):
    pl, mk = pylibmc.Client([srv.addr]), memkit.Client([srv.addr])
    for k, v in _values().items():
        pl.set(k, v, min_compress_len=100)
    assert mk.get_multi(list(_values())) == _values()
    srv.flush()
    for k, v in _values().items():
        mk.set(k, v, min_compress_len=100)
    assert pl.get_multi(list(_values())) == _values()
    pl.set("bool", True)
    assert mk.get("bool") == 1          # pylibmc's bool flags are python-memcached's int flags


def test_live_pymemcache_both_ways(memkit, srv):
    pc = PymemcacheClient((srv.addr.split(":")[0], int(srv.addr.split(":")[1])), serde=serde.pickle_serde, default_noreply=False)
    mk = memkit.Client([srv.addr])
    for k, v in _values().items():
        pc.set(k, v)
    assert mk.get_multi(list(_values())) == _values()
    srv.flush()
    for k, v in _values().items():
        mk.set(k, v)
    assert pc.get_many(list(_values())) == _values()
    plain = PymemcacheClient((srv.addr.split(":")[0], int(srv.addr.split(":")[1])), default_noreply=False)
    plain.set("raw", b"bytes")
    assert mk.get("raw") == b"bytes"
    mk2 = memkit.Client([srv.addr], pickleProtocol=pickle.HIGHEST_PROTOCOL)
    mk2.set("p5", {"x": 1})
    assert pc.get("p5") == {"x": 1}
