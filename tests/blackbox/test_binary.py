"""The binary protocol (magic 0x80), as memcached 1.6.18 serves it: raw frames with exact bytes,
per-connection protocol choice by the first byte, and real binary clients (pylibmc binary=True,
Ruby's dalli, php-memcached, libmemcached's memccapable -b).

Every test passes against memcached itself (MEMKITD=/usr/bin/memcached). tests/diff/bindiff.py
compares random binary streams with memcached byte for byte; this file pins what a client sees,
one request at a time, including memcached's surprising corners (each says so in its docstring).

Request header (24 bytes, big endian): magic 0x80, opcode, keylen(2), extlen, datatype,
vbucket(2), bodylen(4), opaque(4), cas(8); then extras, key, value. Responses: magic 0x81 and
status in place of vbucket. Error responses carry no extras or key, cas 0, and a text body.
"""

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import HOST

HDR = struct.Struct(">BBHBBHIIQ")

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION, GETK, GETKQ, \
    APPEND, PREPEND, STAT, SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ, QUITQ, FLUSHQ, APPENDQ, \
    PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(0x1f)
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = 0x20, 0x21, 0x22, 0x23, 0x24

ENOENT, EEXISTS, E2BIG, EINVAL, NOT_STORED, DELTA_BADVAL, UNKNOWN = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x81

ERRTEXT = {ENOENT: b"Not found", EEXISTS: b"Data exists for key.", E2BIG: b"Too large.",
           EINVAL: b"Invalid arguments", NOT_STORED: b"Not stored.",
           DELTA_BADVAL: b"Non-numeric server-side value for incr or decr", UNKNOWN: b"Unknown command"}

MB = 1024 * 1024


# ------------------------------------------------------------------ frames

def req(op, key=b"", extras=b"", value=b"", cas=0, opaque=0, magic=0x80, keylen=None, extlen=None,
        bodylen=None, datatype=0, vbucket=0):
    """A request frame; keylen/extlen/bodylen override the header fields without changing the bytes."""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(value, str):
        value = value.encode()
    kl = len(key) if keylen is None else keylen
    el = len(extras) if extlen is None else extlen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    return HDR.pack(magic, op, kl, el, datatype, vbucket, bl, opaque, cas) + extras + key + value


def res(op, status=0, key=b"", extras=b"", value=b"", cas=0, opaque=0):
    """The exact bytes of a response frame."""
    return HDR.pack(0x81, op, len(key), len(extras), 0, status, len(extras) + len(key) + len(value),
                    opaque, cas) + extras + key + value


def err(op, status, opaque=0):
    return res(op, status, value=ERRTEXT[status], opaque=opaque)


def set_extras(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def incr_extras(delta, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def exp_extras(exptime):
    return struct.pack(">I", exptime)


class Frame:
    def __init__(self, raw):
        (self.magic, self.op, self.keylen, self.extlen, self.datatype, self.status, self.bodylen,
         self.opaque, self.cas) = HDR.unpack(raw[:24])
        body = raw[24:]
        self.raw = raw
        self.extras = body[:self.extlen]
        self.key = body[self.extlen:self.extlen + self.keylen]
        self.value = body[self.extlen + self.keylen:]

    @property
    def flags(self):
        return struct.unpack(">I", self.extras)[0]

    @property
    def number(self):
        return struct.unpack(">Q", self.value)[0]

    def __repr__(self):
        return (f"<Frame op={self.op:#04x} status={self.status:#06x} opaque={self.opaque:#x} "
                f"cas={self.cas} extras={self.extras!r} key={self.key!r} value={self.value[:60]!r}"
                f"{'...' if len(self.value) > 60 else ''}>")


class BinConn:
    """A raw binary-protocol connection over conftest's Conn (reads have timeouts)."""

    def __init__(self, conn):
        self.c = conn

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.c.close()

    def send(self, data):
        self.c.send(data)

    def read_frame(self, timeout=None):
        head = self.c.read_exact(24, timeout)
        bodylen = struct.unpack(">I", head[8:12])[0]
        return Frame(head + self.c.read_exact(bodylen, timeout))

    def call(self, *a, **kw):
        """Send one request, return its one response frame."""
        self.send(req(*a, **kw))
        return self.read_frame()

    def raw_call(self, *a, **kw):
        return self.call(*a, **kw).raw

    def until_noop(self, opaque=0xabcdef):
        """Send a NOOP and return the frames that came before its response."""
        self.send(req(NOOP, opaque=opaque))
        out = []
        while True:
            f = self.read_frame()
            if f.op == NOOP and f.opaque == opaque:
                assert f.raw == res(NOOP, opaque=opaque)
                return out
            out.append(f)

    def set(self, key, value, flags=0, exptime=0, op=SET, cas=0):
        f = self.call(op, key, set_extras(flags, exptime), value, cas=cas)
        assert f.status == 0, f
        return f.cas

    def get(self, key, op=GET):
        return self.call(op, key)

    def value(self, key):
        f = self.call(GET, key)
        return None if f.status == ENOENT else f.value

    def in_sync(self):
        assert self.until_noop() == []

    def is_closed(self, timeout=5.0):
        return self.c.is_closed(timeout)


@pytest.fixture
def b(server):
    with BinConn(server.connect()) as c:
        yield c
    assert server.alive(), f"server died; stderr:\n{server.stderr()}"


@pytest.fixture
def fb(fresh_server):
    with BinConn(fresh_server.connect()) as c:
        yield c


# ------------------------------------------------------------------ get family

def test_get_miss_is_not_found_with_text_body(b):
    assert b.raw_call(GET, "bg_none", opaque=0x11223344) == \
        bytes.fromhex("81 00 0000 00 00 0001 00000009 11223344 0000000000000000") + b"Not found"


def test_set_then_get_returns_flags_value_and_the_same_cas(b):
    f = b.call(SET, "bg_a", set_extras(0xdeadbeef), b"hello", opaque=7)
    assert f.cas != 0
    assert f.raw == res(SET, cas=f.cas, opaque=7)
    assert b.raw_call(GET, "bg_a", opaque=8) == res(GET, extras=b"\xde\xad\xbe\xef", value=b"hello",
                                                     cas=f.cas, opaque=8)


def test_cas_changes_on_every_write(b):
    c1 = b.set("bg_c", "1")
    c2 = b.set("bg_c", "2")
    assert c1 != c2 and b.get("bg_c").cas == c2


def test_getk_echoes_key_on_hit_and_on_miss_without_error_text(b):
    cas = b.set("bg_k", "v", flags=3)
    assert b.raw_call(GETK, "bg_k", opaque=1) == res(GETK, key=b"bg_k", extras=b"\0\0\0\x03", value=b"v",
                                                      cas=cas, opaque=1)
    assert b.raw_call(GETK, "bg_k_none", opaque=2) == res(GETK, ENOENT, key=b"bg_k_none", opaque=2)


def test_getq_and_getkq_are_silent_on_miss_then_noop(b):
    cas = b.set("bg_q", "hit")
    b.send(req(GETQ, "bg_q_none", opaque=1) + req(GETKQ, "bg_q_none", opaque=2) +
           req(GETQ, "bg_q", opaque=3) + req(GETKQ, "bg_q", opaque=4))
    frames = b.until_noop()
    assert [f.raw for f in frames] == [res(GETQ, extras=b"\0\0\0\0", value=b"hit", cas=cas, opaque=3),
                                       res(GETKQ, key=b"bg_q", extras=b"\0\0\0\0", value=b"hit", cas=cas,
                                           opaque=4)]


def test_empty_value_and_binary_bytes_in_key_and_value(b):
    key = b"bg \x00\r\n\xff"
    val = bytes(range(256)) + b"\r\nEND\r\n"
    b.set(key, val)
    assert b.value(key) == val
    b.set("bg_empty", b"")
    f = b.get("bg_empty", GETK)
    assert f.status == 0 and f.value == b"" and f.key == b"bg_empty"


def test_key_of_250_bytes_works(b):
    k = b"k" * 250
    b.set(k, "x")
    assert b.get(k, GETK).key == k


def test_values_up_to_just_under_1mb_round_trip(b):
    for n in (100 * 1000, 1000 * 1000):
        v = os.urandom(n)
        b.set("bg_big%d" % n, v)
        assert b.value("bg_big%d" % n) == v


def test_pipelined_100_getkq_then_noop_returns_hits_in_request_order(b):
    cas = {}
    for i in range(0, 100, 2):
        cas[i] = b.set("bg_p%d" % i, "v%d" % i)
    b.send(b"".join(req(GETKQ, "bg_p%d" % i, opaque=i) for i in range(100)))
    frames = b.until_noop()
    assert [f.raw for f in frames] == [res(GETKQ, key=b"bg_p%d" % i, extras=b"\0\0\0\0", value=b"v%d" % i,
                                           cas=cas[i], opaque=i) for i in range(0, 100, 2)]


def test_frame_split_byte_by_byte_across_tcp_writes(b):
    data = req(SET, "bg_split", set_extras(9), b"split value", opaque=5) + req(GETK, "bg_split", opaque=6)
    for i in range(len(data)):
        b.send(data[i:i + 1])
        time.sleep(0.001)
    f = b.read_frame()
    assert f.raw == res(SET, cas=f.cas, opaque=5)
    assert b.read_frame().raw == res(GETK, key=b"bg_split", extras=b"\0\0\0\x09", value=b"split value",
                                     cas=f.cas, opaque=6)


def test_request_datatype_vbucket_and_cas_are_ignored_by_get(b):
    cas = b.set("bg_dt", "v")
    assert b.raw_call(GET, "bg_dt", cas=12345, datatype=1, vbucket=0x1234, opaque=3) == \
        res(GET, extras=b"\0\0\0\0", value=b"v", cas=cas, opaque=3)


# ------------------------------------------------------------------ storage

def test_add_existing_is_key_exists_and_add_missing_stores(b):
    b.set("bs_a", "1")
    assert b.raw_call(ADD, "bs_a", set_extras(), b"2", opaque=1) == err(ADD, EEXISTS, 1)
    f = b.call(ADD, "bs_a_new", set_extras(), b"2")
    assert f.raw == res(ADD, cas=f.cas) and f.cas
    assert b.value("bs_a") == b"1"


def test_replace_missing_is_not_found_and_replace_existing_stores(b):
    assert b.raw_call(REPLACE, "bs_r_none", set_extras(), b"x", opaque=2) == err(REPLACE, ENOENT, 2)
    b.set("bs_r", "1", flags=1)
    f = b.call(REPLACE, "bs_r", set_extras(2), b"new")
    assert f.status == 0
    g = b.get("bs_r")
    assert (g.flags, g.value, g.cas) == (2, b"new", f.cas)


def test_set_with_flags_max_and_exptime_far_absolute(b):
    b.set("bs_f", "v", flags=0xffffffff, exptime=0xffffffff)
    assert b.get("bs_f").flags == 0xffffffff


def test_quiet_storage_is_silent_on_success_but_errors_are_sent(b):
    b.send(req(SETQ, "bs_q", set_extras(), b"a", opaque=1) +
           req(ADDQ, "bs_q", set_extras(), b"b", opaque=2) +
           req(REPLACEQ, "bs_q_none", set_extras(), b"c", opaque=3) +
           req(APPENDQ, "bs_q", value=b"+", opaque=4) +
           req(PREPENDQ, "bs_q_none", value=b"-", opaque=5) +
           req(DELETEQ, "bs_q_none", opaque=6) +
           req(INCRQ, "bs_q", incr_extras(1), opaque=7) +
           req(ADDQ, "bs_q2", set_extras(), b"1", opaque=8) +
           req(INCRQ, "bs_q2", incr_extras(4), opaque=9))
    assert [f.raw for f in b.until_noop()] == [err(ADDQ, EEXISTS, 2), err(REPLACEQ, ENOENT, 3),
                                               err(PREPENDQ, NOT_STORED, 5), err(DELETEQ, ENOENT, 6),
                                               err(INCRQ, DELTA_BADVAL, 7)]
    assert b.value("bs_q") == b"a+"
    assert b.value("bs_q2") == b"5"
    b.send(req(DELETEQ, "bs_q2", opaque=10))
    assert b.until_noop() == []
    assert b.value("bs_q2") is None


def test_append_prepend_concatenate_and_keep_flags(b):
    b.set("bs_ap", "mid", flags=77)
    assert b.raw_call(APPEND, "bs_ap", value=b">>", opaque=1)[:16] == res(APPEND, opaque=1)[:16]
    assert b.call(PREPEND, "bs_ap", value=b"<<").status == 0
    g = b.get("bs_ap")
    assert (g.flags, g.value) == (77, b"<<mid>>")


def test_append_prepend_missing_key_is_not_stored(b):
    assert b.raw_call(APPEND, "bs_ap_none", value=b"x", opaque=3) == err(APPEND, NOT_STORED, 3)
    assert b.raw_call(PREPEND, "bs_ap_none", value=b"x", opaque=4) == err(PREPEND, NOT_STORED, 4)


def test_set_response_cas_is_the_new_items_cas_and_errors_have_cas_zero(b):
    cas = b.set("bs_c0", "v")
    f = b.call(ADD, "bs_c0", set_extras(), b"v")
    assert f.status == EEXISTS and f.cas == 0
    assert b.get("bs_c0").cas == cas


# ------------------------------------------------------------------ cas

def test_set_with_cas_right_wrong_and_missing(b):
    cas = b.set("bc_a", "v1")
    assert b.raw_call(SET, "bc_a", set_extras(), b"v2", cas=cas + 1000, opaque=1) == err(SET, EEXISTS, 1)
    f = b.call(SET, "bc_a", set_extras(), b"v3", cas=cas, opaque=2)
    assert f.raw == res(SET, cas=f.cas, opaque=2) and f.cas != cas
    assert b.value("bc_a") == b"v3"
    # the old cas no longer matches
    assert b.call(SET, "bc_a", set_extras(), b"v4", cas=cas).status == EEXISTS
    # cas on a missing key: Not found
    assert b.raw_call(SET, "bc_none", set_extras(), b"v", cas=cas, opaque=3) == err(SET, ENOENT, 3)


def test_replace_with_cas(b):
    cas = b.set("bc_r", "v1")
    assert b.call(REPLACE, "bc_r", set_extras(), b"x", cas=cas + 1).status == EEXISTS
    assert b.call(REPLACE, "bc_r", set_extras(), b"y", cas=cas).status == 0
    assert b.value("bc_r") == b"y"


def test_add_with_a_cas_behaves_like_a_cas_set(b):
    """memcached 1.6.18: a nonzero cas turns ADD into a CAS store (it no longer requires the key to be
    missing): right cas -> stored, wrong cas -> Data exists, missing key -> Not found."""
    cas = b.set("bc_add", "v1")
    assert b.call(ADD, "bc_add", set_extras(), b"x", cas=cas + 5).raw == err(ADD, EEXISTS)
    f = b.call(ADD, "bc_add", set_extras(), b"v2", cas=cas)
    assert f.raw == res(ADD, cas=f.cas)
    assert b.value("bc_add") == b"v2"
    assert b.call(ADD, "bc_add_none", set_extras(), b"x", cas=cas).raw == err(ADD, ENOENT)


def test_append_with_cas(b):
    cas = b.set("bc_ap", "a")
    assert b.call(APPEND, "bc_ap", value=b"b", cas=cas + 1).raw == err(APPEND, EEXISTS)
    f = b.call(APPEND, "bc_ap", value=b"c", cas=cas)
    assert f.raw == res(APPEND, cas=f.cas)
    assert b.value("bc_ap") == b"ac"


def test_delete_with_cas_wrong_then_right(b):
    cas = b.set("bc_d", "v")
    assert b.raw_call(DELETE, "bc_d", cas=cas + 1, opaque=1) == err(DELETE, EEXISTS, 1)
    assert b.raw_call(DELETE, "bc_d", cas=cas, opaque=2) == res(DELETE, opaque=2)    # cas 0 in the answer
    assert b.raw_call(DELETE, "bc_d", opaque=3) == err(DELETE, ENOENT, 3)


def test_delete_without_cas(b):
    b.set("bc_d2", "v")
    assert b.raw_call(DELETE, "bc_d2") == res(DELETE)
    assert b.value("bc_d2") is None


# ------------------------------------------------------------------ incr / decr

def test_incr_missing_key_creates_it_with_the_initial_value(b):
    f = b.call(INCR, "bi_new", incr_extras(5, initial=10), opaque=4)
    assert f.cas != 0
    assert f.raw == res(INCR, value=struct.pack(">Q", 10), cas=f.cas, opaque=4)
    g = b.get("bi_new")
    assert (g.value, g.flags, g.cas) == (b"10", 0, f.cas)
    f2 = b.call(INCR, "bi_new", incr_extras(5, initial=10))
    assert f2.number == 15 and f2.cas not in (0, f.cas)
    assert b.call(DECR, "bi_new", incr_extras(100)).number == 0        # floors at 0


def test_decr_missing_key_creates_initial_value_too(b):
    assert b.call(DECR, "bi_dnew", incr_extras(3, initial=7)).number == 7
    assert b.value("bi_dnew") == b"7"


def test_incr_missing_key_with_expiration_ffffffff_is_not_found(b):
    assert b.raw_call(INCR, "bi_nocreate", incr_extras(1, 5, 0xffffffff), opaque=9) == err(INCR, ENOENT, 9)
    assert b.raw_call(DECR, "bi_nocreate", incr_extras(1, 5, 0xffffffff), opaque=9) == err(DECR, ENOENT, 9)
    assert b.value("bi_nocreate") is None


def test_incr_decr_existing_number(b):
    b.set("bi_n", "41", flags=5)
    f = b.call(INCR, "bi_n", incr_extras(1, 0, 0xffffffff))
    assert f.number == 42 and f.extras == b"" and f.key == b""
    g = b.get("bi_n")
    assert (g.value, g.flags, g.cas) == (b"42", 5, f.cas)
    assert b.call(DECR, "bi_n", incr_extras(2)).number == 40


def test_incr_on_non_numeric_value(b):
    b.set("bi_nn", "abc")
    assert b.raw_call(INCR, "bi_nn", incr_extras(1), opaque=2) == err(INCR, DELTA_BADVAL, 2)
    assert b.raw_call(DECR, "bi_nn", incr_extras(1), opaque=2) == err(DECR, DELTA_BADVAL, 2)
    b.set("bi_empty", "")
    assert b.call(INCR, "bi_empty", incr_extras(1)).status == DELTA_BADVAL


def test_incr_with_wrong_cas_is_key_exists(b):
    cas = b.set("bi_c", "1")
    assert b.raw_call(INCR, "bi_c", incr_extras(1), cas=cas + 1, opaque=3) == err(INCR, EEXISTS, 3)
    f = b.call(INCR, "bi_c", incr_extras(1), cas=cas)
    assert f.status == 0 and f.number == 2


def test_decr_rewrites_in_place_padded_with_spaces(b):
    b.set("bi_pad", "100")
    assert b.call(DECR, "bi_pad", incr_extras(1)).number == 99
    assert b.value("bi_pad") == b"99 "
    assert b.call(INCR, "bi_pad", incr_extras(1)).number == 100
    assert b.value("bi_pad") == b"100"


def test_incrq_success_is_silent(b):
    b.set("bi_q", "1")
    b.send(req(INCRQ, "bi_q", incr_extras(1)) + req(DECRQ, "bi_q", incr_extras(5)))
    assert b.until_noop() == []
    assert b.value("bi_q") == b"0"


# ------------------------------------------------------------------ touch / gat

def test_touch_hit_returns_flags_only_and_miss_is_not_found(b):
    cas = b.set("bt_t", "v", flags=6)
    assert b.raw_call(TOUCH, "bt_t", exp_extras(100), opaque=1) == res(TOUCH, extras=b"\0\0\0\x06", cas=cas,
                                                                        opaque=1)
    assert b.raw_call(TOUCH, "bt_none", exp_extras(100), opaque=2) == err(TOUCH, ENOENT, 2)


def test_gat_gatk_return_value_and_quiet_variants_skip_misses(b):
    cas = b.set("bt_g", "val", flags=1)
    ext = b"\0\0\0\x01"
    assert b.raw_call(GAT, "bt_g", exp_extras(100), opaque=1) == res(GAT, extras=ext, value=b"val", cas=cas,
                                                                      opaque=1)
    assert b.raw_call(GATK, "bt_g", exp_extras(100), opaque=2) == res(GATK, key=b"bt_g", extras=ext,
                                                                       value=b"val", cas=cas, opaque=2)
    assert b.raw_call(GAT, "bt_none", exp_extras(100), opaque=3) == err(GAT, ENOENT, 3)
    assert b.raw_call(GATK, "bt_none", exp_extras(100), opaque=4) == res(GATK, ENOENT, key=b"bt_none", opaque=4)
    b.send(req(GATQ, "bt_none", exp_extras(0), opaque=5) + req(GATKQ, "bt_none", exp_extras(0), opaque=6) +
           req(GATQ, "bt_g", exp_extras(0), opaque=7) + req(GATKQ, "bt_g", exp_extras(0), opaque=8))
    assert [f.raw for f in b.until_noop()] == [
        res(GATQ, extras=ext, value=b"val", cas=cas, opaque=7),
        res(GATKQ, key=b"bt_g", extras=ext, value=b"val", cas=cas, opaque=8)]


def test_touch_with_absolute_time_in_the_past_expires_the_item(b):
    b.set("bt_past", "v")
    assert b.call(TOUCH, "bt_past", exp_extras(60 * 60 * 24 * 30 + 1)).status == 0
    assert b.value("bt_past") is None


def test_set_with_past_absolute_exptime_is_gone(b):
    b.set("bt_sp", "v", exptime=1000000000)
    assert b.value("bt_sp") is None
    b.set("bt_30d", "v", exptime=60 * 60 * 24 * 30)        # exactly 30 days: relative
    assert b.value("bt_30d") == b"v"


def test_expirations_set_gat_touch_incr_fire(fb):
    # each of these expires 2..3 s from now (memcached's clock ticks once a second), at most 3 s
    fb.set("e_set", "v", exptime=3)
    fb.set("e_gat", "v")
    fb.set("e_touch", "v")
    fb.set("e_keep", "v", exptime=100)
    assert fb.call(GAT, "e_gat", exp_extras(3)).value == b"v"
    assert fb.call(TOUCH, "e_touch", exp_extras(3)).status == 0
    assert fb.call(INCR, "e_incr", incr_extras(1, 5, 3)).number == 5
    for k in (b"e_set", b"e_gat", b"e_touch", b"e_keep", b"e_incr"):
        assert fb.get(k).status == 0, k
    time.sleep(5.5)
    for k in (b"e_set", b"e_gat", b"e_touch", b"e_incr"):
        assert fb.get(k).status == ENOENT, k
    assert fb.value("e_keep") == b"v"


# ------------------------------------------------------------------ flush / noop / version / stat / quit

def test_flush_and_quiet_flush(fb):
    fb.set("f1", "v")
    assert fb.raw_call(FLUSH, opaque=3) == res(FLUSH, opaque=3)
    assert fb.value("f1") is None
    fb.set("f2", "v")                          # stored after the flush: visible
    assert fb.value("f2") == b"v"
    fb.send(req(FLUSHQ, opaque=4))
    assert fb.until_noop() == []
    assert fb.value("f2") is None
    assert fb.raw_call(FLUSH, extras=exp_extras(0), opaque=5) == res(FLUSH, opaque=5)


def test_flush_with_a_delay_takes_effect_later(fb):
    fb.set("fd", "v")
    assert fb.raw_call(FLUSH, extras=exp_extras(4)) == res(FLUSH)
    assert fb.value("fd") == b"v"              # memcached: fires 2..3 s from now; at most 4 s
    time.sleep(6.5)
    assert fb.value("fd") is None


def test_noop_and_version(b):
    assert b.raw_call(NOOP, opaque=0xffffffff) == res(NOOP, opaque=0xffffffff)
    f = b.call(VERSION, opaque=2)
    assert re.fullmatch(rb"\d+\.\d+\.\d+\S*", f.value), f
    assert f.raw == res(VERSION, value=f.value, opaque=2)


def _stat_frames(b, group=b"", opaque=0x5a):
    b.send(req(STAT, group, opaque=opaque))
    out = []
    while True:
        f = b.read_frame()
        out.append(f)
        if f.status != 0 or (f.keylen == 0 and f.bodylen == 0):
            return out


def test_stat_sends_one_frame_per_stat_then_an_empty_terminator(b):
    frames = _stat_frames(b)
    assert frames[-1].raw == res(STAT, opaque=0x5a)
    stats = {f.key: f.value for f in frames[:-1]}
    assert all(f.op == STAT and f.status == 0 and f.opaque == 0x5a and f.cas == 0 and f.extlen == 0
               for f in frames[:-1])
    assert {b"pid", b"uptime", b"version", b"curr_connections", b"cmd_get"} <= set(stats)
    assert int(stats[b"pid"]) > 0


@pytest.mark.parametrize("group,must_have", [(b"settings", b"maxbytes"), (b"slabs", b"active_slabs"),
                                              (b"items", None), (b"sizes", None)])
def test_stat_groups(b, group, must_have):
    frames = _stat_frames(b, group)
    assert frames[-1].raw == res(STAT, opaque=0x5a)
    if must_have:
        assert must_have in {f.key for f in frames[:-1]}


@pytest.mark.parametrize("group", [b"reset", b"detail on", b"detail off"])
def test_stat_commands_answer_just_the_terminator(b, group):
    assert [f.raw for f in _stat_frames(b, group)] == [res(STAT, opaque=0x5a)]


@pytest.mark.parametrize("group", [b"bogus", b"detail nonsense"])
def test_stat_unknown_group_is_not_found(b, group):
    assert [f.raw for f in _stat_frames(b, group)] == [err(STAT, ENOENT, 0x5a)]
    b.in_sync()


def test_quit_answers_then_closes(b):
    b.send(req(GET, "bq_none", opaque=1) + req(QUIT, opaque=2) + req(NOOP, opaque=3))
    assert b.read_frame().raw == err(GET, ENOENT, 1)
    assert b.read_frame().raw == res(QUIT, opaque=2)
    assert b.is_closed()


def test_quitq_closes_silently(b):
    b.send(req(QUITQ, opaque=2))
    assert b.is_closed()
    assert b.c.buf == b""


# ------------------------------------------------------------------ unknown opcodes

@pytest.mark.parametrize("op", [0x1f, 0x25, 0x30, 0x48, 0xfe])
def test_unknown_opcode_is_unknown_command_and_its_value_is_swallowed(b, op):
    assert b.raw_call(op, value=b"junk value", opaque=9) == err(op, UNKNOWN, 9)
    b.in_sync()


def test_verbosity_is_an_unknown_command_in_memcached_1_6_18(b):
    assert b.raw_call(VERBOSITY, opaque=1) == err(VERBOSITY, UNKNOWN, 1)
    b.in_sync()


def test_unknown_opcode_swallows_bodylen_bytes_after_extras_and_key(b):
    """memcached 1.6.18 surprise: for an unknown opcode it discards `bodylen` bytes counted from the
    end of extras+key, i.e. keylen+extlen bytes of whatever follows the frame. A VERBOSITY request
    with its 4-byte extras therefore eats the first 4 bytes of the next frame."""
    b.send(req(VERBOSITY, extras=b"\0\0\0\x01", opaque=1) + b"JUNK")
    assert b.read_frame().raw == err(VERBOSITY, UNKNOWN, 1)
    b.in_sync()
    b.send(req(0x40, key=b"abc", value=b"VV", opaque=2) + b"xyz")
    assert b.read_frame().raw == err(0x40, UNKNOWN, 2)
    b.in_sync()


def test_sasl_opcodes_are_unknown_without_sasl(b):
    assert b.raw_call(SASL_LIST, opaque=1) == err(SASL_LIST, UNKNOWN, 1)
    assert b.raw_call(SASL_AUTH, "PLAIN", value=b"\0user\0pass", opaque=2) == err(SASL_AUTH, UNKNOWN, 2)
    b.in_sync()


# ------------------------------------------------------------------ malformed frames

@pytest.mark.parametrize("magic", [0x81, 0x00, 0x7f, 0xff])
def test_bad_magic_closes_the_connection_without_an_answer(b, magic):
    b.in_sync()
    b.send(req(NOOP, magic=magic) + req(NOOP))
    assert b.is_closed()
    assert b.c.buf == b""


def test_bad_magic_drops_responses_not_yet_flushed(b):
    """memcached 1.6.18: responses queued in the same read (a successful SET) are dropped when a bad
    magic follows; error responses and NOOP flush the queue, so those did go out."""
    b.send(req(SET, "bm_a", set_extras(), b"v", opaque=1) + req(NOOP, magic=0x81))
    assert b.is_closed()
    assert b.c.buf == b""


@pytest.mark.parametrize("op,extras,value", [(GET, b"", b""), (GETK, b"", b""), (SET, set_extras(), b"v"),
                                             (ADDQ, set_extras(), b"v"), (DELETE, b"", b""),
                                             (INCR, incr_extras(1), b""), (TOUCH, exp_extras(0), b""),
                                             (APPEND, b"", b"v"), (STAT, b"", b"")])
def test_key_of_251_bytes_is_einval_then_close(b, op, extras, value):
    b.send(req(op, b"k" * 251, extras, value, opaque=4) + req(NOOP))
    assert b.read_frame().raw == err(op, EINVAL, 4)
    assert b.is_closed()


@pytest.mark.parametrize("op,key,extras,bodylen", [(GET, b"abc", b"", 2), (SET, b"abc", set_extras(), 10),
                                                   (NOOP, b"abc", b"", 0), (0x40, b"k", b"", 0),
                                                   (INCR, b"k", incr_extras(1), 20)])
def test_keylen_plus_extlen_over_bodylen_is_unknown_command_then_close(b, op, key, extras, bodylen):
    b.send(req(op, key, extras, bodylen=bodylen, opaque=6))
    assert b.read_frame().raw == err(op, UNKNOWN, 6)
    assert b.is_closed()


@pytest.mark.parametrize("op,key,extras,value", [
    (GET, b"k", exp_extras(0), b""), (GET, b"", b"", b""), (GETQ, b"k", b"", b"v"),
    (SET, b"k", b"", b"v"), (SET, b"k", exp_extras(0), b"v"), (SET, b"", set_extras(), b"v"),
    (ADD, b"k", incr_extras(1), b"v"), (REPLACE, b"k", set_extras()[:7], b"v"),
    (DELETE, b"k", exp_extras(0), b""), (DELETE, b"k", b"", b"v"), (DELETE, b"", b"", b""),
    (INCR, b"k", set_extras(), b""), (DECR, b"k", incr_extras(1), b"x"), (INCR, b"", incr_extras(1), b""),
    (TOUCH, b"k", b"", b""), (GAT, b"k", set_extras(), b""), (GATK, b"", exp_extras(0), b""),
    (APPEND, b"k", exp_extras(0), b"v"), (PREPEND, b"", b"", b"v"),
    (FLUSH, b"", b"\0\0", b""), (FLUSH, b"", set_extras(), b""), (FLUSH, b"k", b"", b""), (FLUSH, b"", b"", b"v"),
    (NOOP, b"", exp_extras(0), b""), (NOOP, b"", b"", b"v"), (VERSION, b"k", b"", b""),
    (QUIT, b"", b"", b"v"), (STAT, b"", exp_extras(0), b""),
    (SASL_LIST, b"", b"", b"x"), (SASL_AUTH, b"", b"", b"x"),
])
def test_wrong_extras_key_or_value_for_the_opcode_is_einval_then_close(b, op, key, extras, value):
    b.send(req(op, key, extras, value, opaque=8))
    assert b.read_frame().raw == err(op, EINVAL, 8)
    assert b.is_closed()


def test_einval_flushes_earlier_responses_first(b):
    b.send(req(SET, "bm_e", set_extras(), b"v", opaque=1) + req(GET, "bm_e", opaque=2) + req(GET, "", opaque=3))
    f = b.read_frame()
    assert f.raw == res(SET, cas=f.cas, opaque=1)
    assert b.read_frame().raw == res(GET, extras=b"\0\0\0\0", value=b"v", cas=f.cas, opaque=2)
    assert b.read_frame().raw == err(GET, EINVAL, 3)
    assert b.is_closed()


def test_value_over_1mb_is_too_large_and_swallowed_and_the_connection_goes_on(b):
    b.set("bm_big", "old")
    big = b"z" * (MB + 10)
    b.send(req(SET, "bm_big", set_extras(), big, opaque=1) + req(GETK, "bm_big", opaque=2))
    assert b.read_frame(timeout=30).raw == err(SET, E2BIG, 1)
    # memcached drops the old value when a SET is too large
    assert b.read_frame().raw == res(GETK, ENOENT, key=b"bm_big", opaque=2)
    b.set("bm_big2", "keep")
    for op in (APPEND, PREPENDQ):
        b.send(req(op, "bm_big2", value=big, opaque=3))
        assert b.read_frame(timeout=30).raw == err(op, E2BIG, 3)
    b.send(req(SETQ, "bm_big3", set_extras(), big, opaque=4))
    assert b.read_frame(timeout=30).raw == err(SETQ, E2BIG, 4)
    assert b.value("bm_big2") == b"keep"
    b.in_sync()


def test_frame_cut_short_then_closed_stores_nothing(server, b):
    with BinConn(server.connect()) as c:
        c.send(req(SET, "bm_cut", set_extras(), b"value")[:-2])
        c.c.sock.shutdown(socket.SHUT_WR)
        assert c.is_closed()
        assert c.c.buf == b""
    assert b.value("bm_cut") is None


def test_bodylen_longer_than_sent_waits_for_the_rest(b):
    """A frame whose bodylen promises more bytes than were sent is not answered: the server waits."""
    b.send(req(SET, "bm_wait", set_extras(), b"abc", bodylen=8 + 7 + 3 + 4, opaque=1))
    assert b.c.read_available(quiet=0.5) == b""
    b.send(b"defg")                            # the rest of the value
    f = b.read_frame()
    assert f.raw == res(SET, cas=f.cas, opaque=1)
    assert b.value("bm_wait") == b"abcdefg"


def test_stat_value_bytes_are_parsed_as_the_next_request(b):
    """memcached 1.6.18 surprise: STAT checks only extlen == 0, and reads only extras+key; value bytes
    after the key are taken as the next request."""
    b.send(req(STAT, b"reset", value=req(NOOP, opaque=77), opaque=5))
    assert b.read_frame().raw == res(STAT, opaque=5)
    assert b.read_frame().raw == res(NOOP, opaque=77)
    b.in_sync()


# ------------------------------------------------------------------ protocol choice per connection

def test_first_byte_decides_the_protocol_per_connection(server):
    with server.connect() as text, BinConn(server.connect()) as binc:
        assert text.cmd(b"set pc_t 5 0 4\r\ntext\r\n") == b"STORED\r\n"
        cas = binc.set("pc_b", "binary", flags=9)
        g = binc.get("pc_t")
        assert (g.flags, g.value) == (5, b"text")
        assert text.get(b"gets pc_b\r\n") == b"VALUE pc_b 9 6 %d\r\nbinary\r\nEND\r\n" % cas
        assert text.cmd(b"version\r\n").startswith(b"VERSION ")
        binc.in_sync()


def test_text_after_binary_on_the_same_connection_is_read_as_binary_headers(b):
    """Once a connection spoke binary, text is read as 24-byte headers: a short line just waits for more
    bytes, and 24 bytes not starting with 0x80 are a bad magic: the connection closes without answer."""
    b.in_sync()
    b.send(b"get foo\r\n")
    assert b.c.read_available(quiet=0.5) == b""
    b.send(b"version\r\nget a b c d\r\n")
    assert b.is_closed()
    assert b.c.buf == b""


def test_binary_frame_after_text_on_the_same_connection_is_read_as_text(conn):
    """The reverse: a connection that started with text stays text. A NOOP frame's opcode byte 0x0a is a
    newline, so "\\x80\\n" is an unknown text command (ERROR) and the rest waits for a newline."""
    assert conn.cmd(b"version\r\n").startswith(b"VERSION ")
    conn.send(req(NOOP))
    assert conn.read_line() == b"ERROR\r\n"
    assert conn.read_available(quiet=0.3) == b""


def test_option_B_ascii_reads_binary_frames_as_text(server_factory):
    """-B ascii: every connection is text. A NOOP frame's 0x0a opcode byte ends a line: ERROR."""
    s = server_factory("-B", "ascii")
    with s.connect() as c:
        c.send(req(NOOP))
        assert c.read_line() == b"ERROR\r\n"
        assert c.read_available(quiet=0.3) == b""
    with s.connect() as c:
        assert c.cmd(b"version\r\n").startswith(b"VERSION ")


def test_option_B_binary_reads_text_as_binary_headers(server_factory):
    """-B binary: every connection is binary; a text command is a bad magic once 24 bytes are in."""
    s = server_factory("-B", "binary")
    with BinConn(s.connect()) as c:
        c.set("ob", "v")
        assert c.value("ob") == b"v"
    with s.connect() as c:
        c.send(b"version\r\n")
        assert c.read_available(quiet=0.5) == b""
        c.send(b"get a b c d e f g h i\r\n")
        assert c.is_closed(5.0)
        assert c.buf == b""


@pytest.mark.parametrize("args,name", [((), b"auto-negotiate"), (("-B", "ascii"), b"ascii"),
                                       (("-B", "binary"), b"binary")])
def test_stats_settings_names_the_binding_protocol(server_factory, args, name):
    s = server_factory(*args)
    if name == b"binary":
        with BinConn(s.connect()) as c:
            stats = {f.key: f.value for f in _stat_frames(c, b"settings")[:-1]}
        assert stats[b"binding_protocol"] == name
        return
    with s.connect() as c:
        c.send(b"stats settings\r\n")
        assert b"STAT binding_protocol " + name + b"\r\n" in c.read_until(b"END\r\n")


# ------------------------------------------------------------------ pylibmc, binary=True

@pytest.fixture
def plb(server):
    import pylibmc
    c = pylibmc.Client([f"{HOST}:{server.port}"], binary=True, behaviors={"cas": True})
    yield c
    c.disconnect_all()


def test_pylibmc_binary_set_get_multi_and_missing(plb):
    assert plb.set("plb_a", b"1")
    assert plb.set("plb_u", "héllo")
    assert plb.set("plb_o", {"x": [1, 2]})
    assert plb.set("plb_i", 42)
    assert plb.get("plb_a") == b"1"
    assert plb.get("plb_u") == "héllo"
    assert plb.get("plb_o") == {"x": [1, 2]}
    assert plb.get("plb_i") == 42
    assert plb.get("plb_missing") is None
    assert plb.get_multi(["plb_a", "plb_i", "plb_nope"]) == {"plb_a": b"1", "plb_i": 42}
    assert plb.set_multi({"plb_m1": b"x", "plb_m2": b"y"}) == []
    assert plb.get_multi(["plb_m1", "plb_m2"]) == {"plb_m1": b"x", "plb_m2": b"y"}


def test_pylibmc_binary_add_replace_delete(plb):
    import pylibmc
    assert plb.add("plb_ar", b"1")
    assert not plb.add("plb_ar", b"2")
    assert plb.replace("plb_ar", b"3")
    with pytest.raises(pylibmc.NotFound):
        plb.replace("plb_ar_none", b"x")
    assert plb.get("plb_ar") == b"3"
    assert plb.delete("plb_ar")
    assert not plb.delete("plb_ar")
    assert plb.get("plb_ar") is None


def test_pylibmc_binary_incr_decr(plb):
    import pylibmc
    plb.set("plb_n", 10)
    assert plb.incr("plb_n", 5) == 15
    assert plb.decr("plb_n", 20) == 0
    with pytest.raises(pylibmc.NotFound):
        plb.incr("plb_n_none", 1)
    plb.set("plb_s", b"abc")
    with pytest.raises(pylibmc.Error):
        plb.incr("plb_s", 1)


def test_pylibmc_binary_gets_cas(plb):
    import pylibmc
    plb.set("plb_c", b"x")
    val, cas = plb.gets("plb_c")
    assert val == b"x" and cas
    assert plb.cas("plb_c", b"y", cas)
    assert not plb.cas("plb_c", b"z", cas)
    assert plb.get("plb_c") == b"y"
    with pytest.raises(pylibmc.NotFound):
        plb.cas("plb_c_none", b"1", cas)


def test_pylibmc_binary_append_prepend_touch(plb):
    plb.set("plb_ap", b"mid")
    assert plb.append("plb_ap", b">")
    assert plb.prepend("plb_ap", b"<")
    assert plb.get("plb_ap") == b"<mid>"
    assert not plb.append("plb_ap_none", b"x")
    assert plb.touch("plb_ap", 100)
    assert not plb.touch("plb_ap_none", 100)


def test_pylibmc_binary_big_value_and_too_big(plb):
    import pylibmc
    big = os.urandom(500 * 1000)
    assert plb.set("plb_big", big)
    assert plb.get("plb_big") == big
    with pytest.raises(pylibmc.TooBig):
        plb.set("plb_huge", b"x" * (2 * MB))
    assert plb.get("plb_big") == big


def test_pylibmc_binary_stats(plb):
    (name, stats), = plb.get_stats()
    assert int(stats["pid"]) > 0 and "curr_connections" in stats


# ------------------------------------------------------------------ Ruby dalli (binary only)

RUBY = shutil.which("ruby")

DALLI_SCRIPT = r'''
require "dalli"
require "json"
opts = {serializer: JSON, compress: false, socket_timeout: 10}
opts.update(username: ARGV[1], password: ARGV[2]) if ARGV.length > 2   # SASL (test_sasl.py)
dc = Dalli::Client.new("127.0.0.1:#{ARGV[0]}", **opts)
r = {}
r["set"] = !!dc.set("rb_a", "hello")
r["get"] = dc.get("rb_a")
r["get_miss"] = dc.get("rb_missing")
r["add_exists"] = dc.add("rb_a", "x")
r["add_new"] = !!dc.add("rb_b", "two")
r["replace_miss"] = dc.replace("rb_zz", "1")
r["replace_hit"] = !!dc.replace("rb_b", "three")
r["get_b"] = dc.get("rb_b")
dc.set("rb_n", "10", 0, raw: true)
r["incr"] = dc.incr("rb_n", 5)
r["decr"] = dc.decr("rb_n", 100)
r["incr_miss"] = dc.incr("rb_nomiss", 1)
r["incr_create"] = dc.incr("rb_created", 1, 0, 7)
r["get_created"] = dc.get("rb_created", raw: true)
r["multi"] = dc.get_multi("rb_a", "rb_b", "rb_none")
r["cas"] = !!dc.cas("rb_b") { |v| v + "!" }
r["after_cas"] = dc.get("rb_b")
r["cas_miss"] = dc.cas("rb_none") { |v| "x" }
r["touch"] = dc.touch("rb_a", 100)
r["touch_miss"] = dc.touch("rb_none", 100)
dc.set("rb_s", "mid", 0, raw: true)
r["append"] = dc.append("rb_s", ">")
r["prepend"] = dc.prepend("rb_s", "<")
r["append_miss"] = dc.append("rb_none", "x")
r["get_s"] = dc.get("rb_s", raw: true)
r["delete"] = dc.delete("rb_a")
r["delete_again"] = dc.delete("rb_a")
r["get_deleted"] = dc.get("rb_a")
big = "x" * 500_000
r["set_big"] = !!dc.set("rb_big", big)
r["get_big_ok"] = dc.get("rb_big") == big
st = dc.stats.values.first
r["stats_pid"] = st["pid"].to_i > 0
r["version"] = dc.version.values.first
puts JSON.generate(r)
'''


def _have_dalli():
    if RUBY is None:
        return False
    return subprocess.run([RUBY, "-e", 'require "dalli"'], capture_output=True, timeout=60).returncode == 0


# What DALLI_SCRIPT prints, as memcached 1.6.18 answers (but "version", only checked non-empty).
DALLI_EXPECTED = {
    "set": True, "get": "hello", "get_miss": None, "add_exists": False, "add_new": True,
    # dalli returns the response's cas for a failed replace: 0
    "replace_miss": 0, "replace_hit": True, "get_b": "three",
    "incr": 15, "decr": 0, "incr_miss": None, "incr_create": 7, "get_created": "7",
    "multi": {"rb_a": "hello", "rb_b": "three"}, "cas": True, "after_cas": "three!", "cas_miss": None,
    "touch": True, "touch_miss": None, "append": True, "prepend": True, "append_miss": False,
    "get_s": "<mid>", "delete": True, "delete_again": None, "get_deleted": None,
    "set_big": True, "get_big_ok": True, "stats_pid": True,
}


def run_dalli_script(port, *credentials):
    """Run DALLI_SCRIPT (Debian's ruby-dalli, binary protocol) against port; its results, version checked."""
    if RUBY is None:
        pytest.skip("ruby is not installed (apt-get install ruby ruby-dalli)")
    if not _have_dalli():
        pytest.skip("the dalli gem is not installed (apt-get install ruby-dalli)")
    with tempfile.NamedTemporaryFile("w", suffix=".rb", delete=False) as f:
        f.write(DALLI_SCRIPT)
    try:
        p = subprocess.run([RUBY, f.name, str(port), *credentials], capture_output=True, timeout=120)
    finally:
        os.unlink(f.name)
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert r.pop("version")
    return r


def test_ruby_dalli_binary_client(server):
    assert run_dalli_script(server.port) == DALLI_EXPECTED


# ------------------------------------------------------------------ php-memcached

PHP = shutil.which("php")

PHP_SCRIPT = r'''<?php
$port = (int)$argv[1]; $bin = $argv[2] === "1";
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, $bin);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->addServer("127.0.0.1", $port);
$r = [];
$p = $bin ? "pb_" : "pa_";
$code = function() use ($m) {
    $c = $m->getResultCode();
    foreach (["SUCCESS", "NOTFOUND", "NOTSTORED", "DATA_EXISTS", "END"] as $n)
        if ($c == constant("Memcached::RES_$n")) return $n;
    return "code $c";
};
$r["binary"] = $m->getOption(Memcached::OPT_BINARY_PROTOCOL) ? true : false;
$r["set"] = $m->set("{$p}a", "hello");
$r["get"] = $m->get("{$p}a");
$r["get_miss"] = $m->get("{$p}missing");
$r["get_miss_code"] = $code();
$r["add_exists"] = $m->add("{$p}a", "x");
$r["add_exists_code"] = $code();
$r["add_new"] = $m->add("{$p}b", "two");
$r["replace_miss"] = $m->replace("{$p}zz", "1");
$r["replace_miss_code"] = $code();
$r["replace_hit"] = $m->replace("{$p}b", "three");
$r["set_n"] = $m->set("{$p}n", 10);
$r["incr"] = $m->increment("{$p}n", 5);
$r["decr"] = $m->decrement("{$p}n", 100);
$r["incr_miss"] = $m->increment("{$p}nomiss", 1);
$r["multi"] = $m->getMulti(["{$p}a", "{$p}b", "{$p}none"]);
$got = $m->get("{$p}b", null, Memcached::GET_EXTENDED);
$r["cas_ok"] = $m->cas($got["cas"], "{$p}b", "four");
$r["cas_stale"] = $m->cas($got["cas"], "{$p}b", "five");
$r["cas_stale_code"] = $code();
$r["after_cas"] = $m->get("{$p}b");
$r["touch"] = $m->touch("{$p}a", 100);
$r["touch_miss"] = $m->touch("{$p}none", 100);
$r["set_s"] = $m->set("{$p}s", "mid");
$r["append"] = $m->append("{$p}s", ">");
$r["prepend"] = $m->prepend("{$p}s", "<");
$r["append_miss"] = $m->append("{$p}none", "x");
$r["get_s"] = $m->get("{$p}s");
$r["delete"] = $m->delete("{$p}a");
$r["delete_again"] = $m->delete("{$p}a");
$r["delete_again_code"] = $code();
$r["get_deleted"] = $m->get("{$p}a");
$big = str_repeat("0123456789", 50000);
$r["set_big"] = $m->set("{$p}big", $big);
$r["get_big_ok"] = $m->get("{$p}big") === $big;
$st = array_values($m->getStats())[0];
$r["stats_pid"] = $st["pid"] > 0;
$r["version_ok"] = is_string(array_values($m->getVersion())[0]);
echo json_encode($r), "\n";
'''


def _have_php_memcached():
    if PHP is None:
        return False
    p = subprocess.run([PHP, "-r", 'echo class_exists("Memcached") ? "yes" : "no";'], capture_output=True,
                       timeout=60)
    return p.stdout.strip() == b"yes"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_php_memcached_client(server, binary):
    if PHP is None:
        pytest.skip("php is not installed (apt-get install php-cli php-memcached)")
    if not _have_php_memcached():
        pytest.skip("the php memcached extension is not installed (apt-get install php-memcached)")
    with tempfile.NamedTemporaryFile("w", suffix=".php", delete=False) as f:
        f.write(PHP_SCRIPT)
    try:
        p = subprocess.run([PHP, f.name, str(server.port), "1" if binary else "0"], capture_output=True,
                           timeout=120)
    finally:
        os.unlink(f.name)
    assert p.returncode == 0, (p.stdout + p.stderr).decode("utf-8", "replace")
    r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    pre = "pb_" if binary else "pa_"
    assert r == {
        "binary": binary, "set": True, "get": "hello", "get_miss": False, "get_miss_code": "NOTFOUND",
        "add_exists": False,
        # the binary protocol answers KEY_EEXISTS (0x0002) to an ADD of an existing key
        "add_exists_code": "DATA_EXISTS" if binary else "NOTSTORED",
        "add_new": True, "replace_miss": False, "replace_miss_code": "NOTFOUND" if binary else "NOTSTORED",
        "replace_hit": True, "set_n": True, "incr": 15, "decr": 0, "incr_miss": False,
        "multi": {pre + "a": "hello", pre + "b": "three"}, "cas_ok": True, "cas_stale": False,
        "cas_stale_code": "DATA_EXISTS", "after_cas": "four", "touch": True, "touch_miss": False,
        "set_s": True, "append": True, "prepend": True, "append_miss": False, "get_s": "<mid>",
        "delete": True, "delete_again": False, "delete_again_code": "NOTFOUND", "get_deleted": False,
        "set_big": True, "get_big_ok": True, "stats_pid": True, "version_ok": True,
    }, r


# ------------------------------------------------------------------ memccapable -b

MEMCCAPABLE = shutil.which("memccapable") or shutil.which("memcapable")

# The binary tests memccapable (libmemcached 1.1) runs; all must be reported.
EXPECTED_BINARY = ["noop", "quit", "quitq", "set", "setq", "flush", "flushq", "add", "addq", "replace",
                   "replaceq", "delete", "deleteq", "get", "getq", "getk", "getkq", "incr", "incrq", "decr",
                   "decrq", "version", "append", "appendq", "prepend", "prependq", "stat"]


def test_memccapable_binary_all_pass(server_factory):
    if MEMCCAPABLE is None:
        pytest.fail("memccapable not installed (apt-get install libmemcached-tools)")
    s = server_factory()
    r = subprocess.run([MEMCCAPABLE, "-b", "-t", "5", "-h", HOST, "-p", str(s.port)],
                       capture_output=True, timeout=120)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert s.alive(), f"server died under memccapable:\n{out}\n{s.stderr()}"
    results = dict(re.findall(r"^binary (.+?)\s+\[(\w+)\]\s*$", out, re.M))
    missing = [t for t in EXPECTED_BINARY if t not in results]
    failed = {t: v for t, v in results.items() if v != "pass"}
    assert not missing and not failed and r.returncode == 0 and "All tests passed" in out, \
        f"memccapable rc={r.returncode} missing={missing} failed={failed}\n{out}"


# ------------------------------------------------------------------ the binary protocol's known exploits

# The length lies behind memcached's binary-protocol CVEs, each as its advisory describes the frame:
# CVE-2016-8704 (append/prepend: keylen + extlen > bodylen made the value length negative),
# CVE-2016-8705 (set/add/replace: the same), CVE-2016-8706 (SASL auth: keylen > bodylen), and
# CVE-2020-10931 (1.6.0-1.6.1: extlen copied into a fixed buffer without a check).
CVE_FRAMES = {
    "CVE-2016-8704": req(APPEND, b"A" * 0xfa, value=b"", bodylen=2, opaque=1),
    "CVE-2016-8705": req(SET, b"A" * 0xfa, set_extras(), bodylen=8, opaque=1),
    "CVE-2016-8706": req(SASL_AUTH, b"PLAIN", keylen=0xfa, bodylen=5, opaque=1),
    "CVE-2020-10931": req(GET, b"k", extras=b"E" * 0xff, opaque=1),
}


@pytest.mark.parametrize("name", sorted(CVE_FRAMES))
def test_cve_length_lies_are_refused_and_the_server_lives_on(server, name):
    with BinConn(server.connect()) as c:
        c.send(CVE_FRAMES[name] + b"\0" * 300)
        op = CVE_FRAMES[name][1]
        assert c.read_frame().raw == err(op, EINVAL if name == "CVE-2020-10931" else UNKNOWN, 1)
        assert c.is_closed()
    with BinConn(server.connect()) as c:
        c.in_sync()
