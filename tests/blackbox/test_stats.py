"""`stats` and its groups: memcached's field names, counters that move, END framing.

Every test gets a fresh server so counters start from zero."""

import re
import time

import pytest

from conftest import Server

GENERAL_FIELDS = """pid uptime time version curr_connections total_connections rejected_connections
cmd_get cmd_set cmd_flush cmd_touch get_hits get_misses get_expired get_flushed delete_hits
delete_misses incr_hits incr_misses decr_hits decr_misses cas_hits cas_misses cas_badval
touch_hits touch_misses bytes_read bytes_written limit_maxbytes threads curr_items total_items
bytes evictions expired_unfetched evicted_unfetched rusage_user rusage_system""".split()

SETTINGS_FIELDS = "maxbytes maxconns tcpport udpport verbosity evictions item_size_max num_threads cas_enabled".split()

STAT_LINE = re.compile(rb"^STAT [^ \r\n]+ [^\r\n]*$")


def _raw(c, line):
    c.send(line)
    return c.read_until(b"END\r\n")


def _check_framing(raw):
    assert raw.endswith(b"END\r\n")
    lines = raw[:-len(b"END\r\n")].split(b"\r\n")
    assert lines[-1] == b""
    for ln in lines[:-1]:
        assert STAT_LINE.match(ln), ln


def test_general_stats_has_memcached_field_names(fconn):
    raw = _raw(fconn, b"stats\r\n")
    _check_framing(raw)
    st = fconn.stats()
    missing = [f for f in GENERAL_FIELDS if f not in st]
    assert not missing, f"missing stats: {missing}"
    assert int(st["pid"]) > 0
    assert abs(int(st["time"]) - time.time()) < 5
    assert int(st["uptime"]) >= 0
    assert st["limit_maxbytes"] == str(64 * 1024 * 1024)
    assert int(st["threads"]) == 4
    assert re.match(r"^\d+\.\d{6}$", st["rusage_user"]), st["rusage_user"]
    assert re.match(r"^\d+\.\d{6}$", st["rusage_system"]), st["rusage_system"]


def test_pid_is_the_server_process(fresh_server):
    assert int(fresh_server.stats()["pid"]) == fresh_server.proc.pid


def test_get_hit_and_miss_counters(fconn):
    fconn.set("a", "1")
    fconn.set("b", "2")
    fconn.get(b"get a\r\n")
    fconn.get(b"get a b\r\n")            # 2 hits
    fconn.get(b"get x y\r\n")            # 2 misses
    st = fconn.stats()
    assert (st["get_hits"], st["get_misses"], st["cmd_get"]) == ("3", "2", "5")
    assert (st["cmd_set"], st["curr_items"], st["total_items"]) == ("2", "2", "2")


def test_delete_incr_decr_touch_counters(fconn):
    fconn.set("n", "5")
    fconn.cmd(b"delete nope\r\n")
    fconn.cmd(b"incr n 1\r\n")
    fconn.cmd(b"incr n 1\r\n")
    fconn.cmd(b"incr nope 1\r\n")
    fconn.cmd(b"decr n 1\r\n")
    fconn.cmd(b"decr nope 1\r\n")
    fconn.cmd(b"decr nope 1\r\n")
    fconn.cmd(b"touch n 100\r\n")
    fconn.cmd(b"touch nope 100\r\n")
    fconn.cmd(b"delete n\r\n")
    st = fconn.stats()
    got = {k: st[k] for k in ("delete_hits", "delete_misses", "incr_hits", "incr_misses",
                              "decr_hits", "decr_misses", "touch_hits", "touch_misses", "cmd_touch",
                              "curr_items")}
    assert got == {"delete_hits": "1", "delete_misses": "1", "incr_hits": "2", "incr_misses": "1",
                   "decr_hits": "1", "decr_misses": "2", "touch_hits": "1", "touch_misses": "1",
                   "cmd_touch": "2", "curr_items": "0"}


def test_cas_counters(fconn):
    fconn.set("c", "v")
    fconn.send(b"gets c\r\n")
    unique = int(fconn.read_until(b"END\r\n").split(b"\r\n")[0].split()[4])
    fconn.cmd(b"cas c 0 0 1 %d\r\nw\r\n" % (unique + 1))    # badval
    fconn.cmd(b"cas c 0 0 1 %d\r\nw\r\n" % unique)          # hit
    fconn.cmd(b"cas nope 0 0 1 1\r\nw\r\n")                 # miss
    fconn.cmd(b"cas nope 0 0 1 1\r\nw\r\n")                 # miss
    st = fconn.stats()
    assert (st["cas_hits"], st["cas_misses"], st["cas_badval"]) == ("1", "2", "1")


def test_flush_and_expired_counters(fconn):
    fconn.set("e", "v", exptime=-1)
    fconn.set("f", "v")
    fconn.cmd(b"flush_all\r\n")
    fconn.get(b"get f\r\n")
    st = fconn.stats()
    assert st["cmd_flush"] == "1"
    assert st["get_flushed"] == "1"
    assert st["get_misses"] == "1"


def test_get_expired_counter(fconn):
    fconn.set("x", "v", exptime=1)
    time.sleep(2.1)
    fconn.get(b"get x\r\n")
    st = fconn.stats()
    assert st["get_misses"] == "1"
    # Either the fetch found it expired, or a background reclaimer (memcached's LRU
    # crawler) removed it first and counted that instead.
    reclaimed = int(st.get("reclaimed", 0)) + int(st.get("crawler_reclaimed", 0))
    assert st["get_expired"] == "1" or (st["get_expired"] == "0" and reclaimed >= 1), st


def test_bytes_and_items_track_storage(fconn):
    st0 = fconn.stats()
    assert (st0["curr_items"], st0["bytes"]) == ("0", "0")
    fconn.set("k1", "x" * 100)
    st1 = fconn.stats()
    assert st1["curr_items"] == "1" and int(st1["bytes"]) >= 100
    fconn.cmd(b"delete k1\r\n")
    st2 = fconn.stats()
    assert (st2["curr_items"], st2["bytes"]) == ("0", "0")


def test_bytes_read_and_written_grow(fconn):
    st1 = fconn.stats()
    payload = b"set br 0 0 1000\r\n" + b"z" * 1000 + b"\r\n"
    fconn.cmd(payload)
    fconn.get(b"get br\r\n")
    st2 = fconn.stats()
    assert int(st2["bytes_read"]) - int(st1["bytes_read"]) >= len(payload)
    assert int(st2["bytes_written"]) - int(st1["bytes_written"]) >= 1000


def test_connection_counters(fresh_server):
    conns = [fresh_server.connect() for _ in range(5)]
    for c in conns:
        c.version_sync()
    st = fresh_server.stats()
    assert int(st["curr_connections"]) >= 6       # 5 + the stats connection
    total_before = int(st["total_connections"])
    for c in conns:
        c.close()
    time.sleep(0.3)
    st = fresh_server.stats()
    assert int(st["curr_connections"]) < 6
    assert int(st["total_connections"]) > total_before
    assert st["rejected_connections"] == "0"


def test_stats_settings(server_factory):
    s = server_factory("-m", "32", "-c", "512", "-t", "2")
    with s.connect() as c:
        raw = _raw(c, b"stats settings\r\n")
        _check_framing(raw)
        st = c.stats("settings")
    for f in SETTINGS_FIELDS:
        assert f in st, f
    assert st["maxbytes"] == str(32 * 1024 * 1024)
    assert st["maxconns"] == "512"
    assert st["tcpport"] == str(s.port)
    assert st["udpport"] == "0"
    assert st["item_size_max"] == "1048576"
    assert st["evictions"] == "on"
    assert st["num_threads"] == "2"
    assert st["cas_enabled"] == "yes"


def test_stats_settings_evictions_off_with_M(server_factory):
    s = server_factory("-M")
    assert s.stats("settings")["evictions"] == "off"


def test_stats_items(fconn):
    assert _raw(fconn, b"stats items\r\n") == b"END\r\n"      # empty cache
    fconn.set("i", "v")
    raw = _raw(fconn, b"stats items\r\n")
    _check_framing(raw)
    st = fconn.stats("items")
    numbers = {k: v for k, v in st.items() if re.match(r"^items:\d+:number$", k)}
    assert sum(int(v) for v in numbers.values()) == 1
    cls = next(iter(numbers)).split(":")[1]
    for f in ("age", "evicted", "outofmemory"):
        assert f"items:{cls}:{f}" in st


def test_stats_slabs(fconn):
    fconn.set("s", "v")
    raw = _raw(fconn, b"stats slabs\r\n")
    _check_framing(raw)
    st = fconn.stats("slabs")
    assert "active_slabs" in st and "total_malloced" in st
    assert int(st["active_slabs"]) >= 1
    assert any(re.match(r"^\d+:chunk_size$", k) for k in st)


def test_stats_conns(fresh_server):
    with fresh_server.connect() as a, fresh_server.connect() as b:
        a.version_sync()
        raw = _raw(b, b"stats conns\r\n")
        _check_framing(raw)
        st = b.stats("conns")
        addrs = [v for k, v in st.items() if k.endswith(":addr")]
        assert any(v == f"tcp:127.0.0.1:{fresh_server.port}" for v in addrs), addrs  # listener
        assert sum(1 for v in addrs if v.startswith("tcp:127.0.0.1:")
                   and v != f"tcp:127.0.0.1:{fresh_server.port}") >= 2
        assert any(k.endswith(":state") for k in st)


def test_stats_reset_zeroes_counters(fconn):
    fconn.set("r", "v")
    fconn.get(b"get r nope\r\n")
    fconn.cmd(b"delete nope\r\n")
    assert fconn.cmd(b"stats reset\r\n") == b"RESET\r\n"
    st = fconn.stats()
    for f in ("cmd_get", "cmd_set", "get_hits", "get_misses", "delete_misses", "total_items",
              "total_connections", "evictions"):
        assert st[f] == "0", (f, st[f])
    # gauges are not counters: the item is still there
    assert st["curr_items"] == "1"
    assert fconn.get(b"get r\r\n") == b"VALUE r 0 1\r\nv\r\nEND\r\n"


def test_stats_detail(fconn):
    assert fconn.cmd(b"stats detail on\r\n") == b"OK\r\n"
    fconn.set("pfx:a", "v")
    fconn.get(b"get pfx:a pfx:b\r\n")
    raw = _raw(fconn, b"stats detail dump\r\n")
    assert raw == b"PREFIX pfx get 2 hit 1 set 1 del 0\r\nEND\r\n"
    assert fconn.cmd(b"stats detail off\r\n") == b"OK\r\n"
    assert fconn.cmd(b"stats detail\r\n") == b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"
    assert fconn.cmd(b"stats detail bogus\r\n") == b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"


def test_stats_detail_dump_when_empty(fconn):
    assert _raw(fconn, b"stats detail dump\r\n") == b"END\r\n"


def test_unknown_stats_group_is_error(fconn):
    assert fconn.cmd(b"stats nosuchgroup\r\n") == b"ERROR\r\n"
    fconn.version_sync()


def test_stats_with_trailing_spaces_is_general_stats(fconn):
    raw = _raw(fconn, b"stats   \r\n")
    assert b"STAT pid " in raw and raw.endswith(b"END\r\n")


@pytest.mark.parametrize("group", [b"", b" settings", b" items", b" slabs", b" conns", b" sizes"])
def test_every_stats_reply_ends_with_end(fconn, group):
    fconn.set("x", "y")
    fconn.send(b"stats" + group + b"\r\nversion\r\n")
    raw = fconn.read_until(b"VERSION ")
    body = raw[:-len(b"VERSION ")]
    assert body.endswith(b"END\r\n") and body.count(b"END\r\n") == 1


def _stat_names(srv, group):
    """The names a server prints for "stats <group>", with class and connection numbers as N."""
    with srv.connect() as c:
        c.set("names:a", "v")
        c.get(b"get names:a\r\n")
        c.send(b"stats %s\r\n" % group.encode() if group else b"stats\r\n")
        raw = c.read_until(b"END\r\n").decode()
    names = set()
    for line in raw.splitlines():
        if line.startswith("STAT "):
            names.add(re.sub(r"^(items:)?\d+:", lambda m: (m.group(1) or "") + "N:", line.split()[1]))
    return names


@pytest.mark.parametrize("group", ["", "settings", "items", "slabs", "conns"])
def test_stats_names_are_a_superset_of_memcached_s(server, group, tmp_path):
    """Every name Debian's memcached 1.6.18 prints (asked now, not a copied list) is printed by the
    server under test too, so dashboards and exporters find what they read."""
    memcached = Server((), binary="/usr/bin/memcached", logdir=str(tmp_path))
    try:
        want = _stat_names(memcached, group)
    finally:
        memcached.stop()
    assert want, "memcached printed nothing for stats %s" % group
    missing = want - _stat_names(server, group)
    assert not missing, sorted(missing)
