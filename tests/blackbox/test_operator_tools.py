"""Operators' tools against memkitd: key dumps (`stats cachedump`, what libmemcached's memcdump reads, and
`lru_crawler metadump` in memcached's line format), the crawler's control commands answered as memcached
1.6.18 answers them, and libmemcached's memcstat."""
import re
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import HOST, IS_MEMCACHED, memkitd_only

METADUMP_LINE = re.compile(r"^key=(\S+) exp=(-1|\d+) la=\d+ cas=\d+ fetch=(yes|no) cls=\d+ size=\d+$")


def _fill(conn, n):
    assert conn.cmd(b"flush_all\r\n") == b"OK\r\n"  # (the module's tests share a server)
    keys = {}
    for i in range(n):
        k = "dump:%d" % i if i % 3 else "raw%d" % i
        v = b"v" * (1 + (i * 37) % 3000)
        assert conn.cmd(b"set %s 0 %d %d\r\n" % (k.encode(), 0 if i % 2 else 3600, len(v)) + v + b"\r\n") \
            == b"STORED\r\n"
        keys[k] = len(v)
    return keys


@memkitd_only  # memcached's cachedump shows only its COLD LRU: fresh items are missing there
def test_memcdump_lists_every_key(server, conn):
    memcdump = shutil.which("memcdump")
    assert memcdump, "memcdump is not installed (apt-get install libmemcached-tools)"
    keys = _fill(conn, 600)
    assert conn.cmd(b"delete raw0\r\n") == b"DELETED\r\n"
    del keys["raw0"]
    out = subprocess.run([memcdump, "--servers=%s:%d" % (HOST, server.port)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == sorted(keys)


@memkitd_only
def test_stats_cachedump_shows_sizes_and_expiry_by_class(conn):
    keys = _fill(conn, 200)
    seen = {}
    for cls in range(64):
        reply = conn.cmd(b"stats cachedump %d 0\r\n" % cls, b"END\r\n").decode()
        for line in reply.splitlines()[:-1]:
            m = re.match(r"^ITEM (\S+) \[(\d+) b; (\d+) s\]$", line)
            assert m, line
            seen[m.group(1)] = int(m.group(2))
            # odd i were stored with exptime 0 (shown as 0), even i with 3600 (an absolute time)
            assert (m.group(3) == "0") == (int(re.sub(r"\D", "", m.group(1))) % 2 == 1)
    assert seen == keys
    one = conn.cmd(b"stats cachedump %d 1\r\n" % next(c for c in range(64)
                                                      if conn.cmd(b"stats cachedump %d 0\r\n" % c, b"END\r\n")
                                                      != b"END\r\n"), b"END\r\n")
    assert one.count(b"ITEM ") == 1


def test_stats_cachedump_refuses_bad_arguments(conn):
    assert conn.cmd(b"stats cachedump 64 0\r\n") == b"CLIENT_ERROR Illegal slab id\r\n"
    assert conn.cmd(b"stats cachedump 1\r\n") == b"CLIENT_ERROR bad command line\r\n"
    assert conn.cmd(b"stats cachedump x 0\r\n") == b"CLIENT_ERROR bad command line format\r\n"


def test_lru_crawler_metadump_lists_every_live_key_in_memcached_s_format(conn):
    keys = _fill(conn, 300)
    assert conn.cmd(b"set gone 0 0 1\r\nx\r\n") == b"STORED\r\n"
    assert conn.cmd(b"delete gone\r\n") == b"DELETED\r\n"
    assert conn.cmd(b"set odd%20key\x7f 0 0 1\r\nx\r\n") == b"STORED\r\n"
    keys["odd%20key\x7f"] = 1
    assert conn.cmd(b"get raw3\r\n", b"END\r\n").startswith(b"VALUE raw3 ")
    conn.send(b"lru_crawler metadump all\r\n")
    reply = conn.read_until(b"END\r\n", timeout=30).decode()
    lines = reply[:-len("END\r\n")].split("\n")[:-1]
    seen = {}
    for line in lines:
        m = METADUMP_LINE.match(line)
        assert m, line
        seen[urllib.parse.unquote(m.group(1))] = m.group(3)
    assert set(seen) == set(keys)
    assert seen["raw3"] == "yes" and seen["raw6"] == "no"
    assert "key=odd%2520key%7F " in reply  # URI-encoded as memcached writes keys


def test_lru_crawler_control_commands(conn):
    assert conn.cmd(b"lru_crawler crawl all\r\n") == b"OK\r\n"
    assert conn.cmd(b"lru_crawler crawl 1,2,3\r\n") == b"OK\r\n"
    assert conn.cmd(b"lru_crawler crawl 0\r\n") == b"BADCLASS invalid class id\r\n"
    assert conn.cmd(b"lru_crawler crawl 1,x\r\n") == b"BADCLASS invalid class id\r\n"
    assert conn.cmd(b"lru_crawler metadump 99\r\n") == b"BADCLASS invalid class id\r\n"
    assert conn.cmd(b"lru_crawler tocrawl 100\r\n") == b"OK\r\n"
    assert conn.cmd(b"lru_crawler tocrawl x\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    assert conn.cmd(b"lru_crawler sleep 100\r\n") == b"OK\r\n"
    assert conn.cmd(b"lru_crawler sleep 2000000\r\n") == b"CLIENT_ERROR sleep must be one second or less\r\n"
    assert conn.cmd(b"lru_crawler bogus\r\n") == b"ERROR\r\n"
    assert conn.cmd(b"lru_crawler HTTP/1.1\r\n") == b"ERROR\r\n"  # (not the HTTP close)
    assert conn.cmd(b"lru_crawler\r\n") == b"ERROR\r\n"
    assert conn.cmd(b"lru_crawler crawl all extra\r\n") == b"ERROR\r\n"


def test_metadump_refuses_to_follow_pipelined_replies(conn):
    conn.send(b"set p 0 0 1\r\nx\r\nlru_crawler metadump all\r\n")
    assert conn.read_until(b"\r\n") == b"STORED\r\n"
    assert conn.read_until(b"\r\n") == b"ERROR cannot pipeline other commands before metadump\r\n"


def test_memcstat_reads_every_statistic(server_factory):
    memcstat = shutil.which("memcstat")
    assert memcstat, "memcstat is not installed (apt-get install libmemcached-tools)"
    server = server_factory()
    conn = server.connect()
    _fill(conn, 10)
    out = subprocess.run([memcstat, "--servers=%s:%d" % (HOST, server.port)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    got = dict(line.strip().split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert got["curr_items"] == "10" and got["pid"] == str(server.proc.pid)
    assert set(conn.stats()) <= set(got)  # every name the server printed, parsed


def test_slabs_commands_answer_as_memcached(fresh_server):
    """memkitd has no slab pages: automove is recorded (stats settings shows it) and OK, reassign is
    checked as memcached checks it and always finds no spare page."""
    with fresh_server.connect() as conn:
        assert conn.cmd(b"slabs automove 2\r\n") == b"OK\r\n"
        assert conn.cmd(b"slabs automove 3\r\n") == b"ERROR\r\n"
        assert conn.cmd(b"slabs automove ratio 0.5\r\n") == b"OK\r\n"
        assert conn.cmd(b"slabs automove ratio x\r\n") == b"ERROR\r\n"
        settings = conn.stats("settings")
        assert settings["slab_automove"] == "2" and settings["slab_automove_ratio"] == "0.50"
        assert conn.cmd(b"slabs reassign 1 2\r\n") == b"NOSPARE source class has no spare pages\r\n"
        assert conn.cmd(b"slabs reassign 3 3\r\n") == b"SAME src and dst class are identical\r\n"
        assert conn.cmd(b"slabs reassign 1 99\r\n") == b"BADCLASS invalid src or dst class id\r\n"
        assert conn.cmd(b"slabs reassign x 2\r\n") == b"CLIENT_ERROR bad command line format\r\n"
        assert conn.cmd(b"slabs bogus\r\n") == b"ERROR\r\n"
        assert conn.cmd(b"slabs\r\n") == b"ERROR\r\n"


WATCH_LINE = re.compile(r"^ts=\d+\.\d+ gid=\d+ type=(item_get|item_store|eviction) (.*)$")


def _watch_lines(sock, until, timeout=10):
    """Lines a watcher received until one contains `until`."""
    sock.settimeout(timeout)
    buf = b""
    while until.encode() not in buf:
        d = sock.recv(1 << 20)
        assert d, buf
        buf += d
    return buf.decode().splitlines()


def test_watch_streams_fetches_stores_and_evictions(server_factory):
    """watch fetchers mutations evictions: OK, then memcached's line for every get, store and eviction,
    with URI-encoded keys; the watcher serves no more commands; other clients are not slowed by it."""
    srv = server_factory("-m", "2")
    w = socket.create_connection((HOST, srv.port))
    w.sendall(b"watch fetchers mutations evictions\r\n")
    assert w.recv(4) == b"OK\r\n"
    with srv.connect() as c:
        assert c.cmd(b"set a%b 0 100 5\r\nhello\r\n") == b"STORED\r\n"
        assert c.get(b"get a%b nokey\r\n") == b"VALUE a%b 0 5\r\nhello\r\nEND\r\n"
        assert c.cmd(b"add a%b 0 0 1\r\nx\r\n") == b"NOT_STORED\r\n"
        lines = _watch_lines(w, "type=item_store key=a%25b status=not_stored")
        parsed = [WATCH_LINE.match(line) for line in lines]
        assert all(parsed), lines
        body = [m.group(1) + " " + m.group(2) for m in parsed]
        assert any(b.startswith("item_store key=a%25b status=stored cmd=set ttl=100 clsid=") and b.endswith(
            " size=5") for b in body), body
        assert any(b.startswith("item_get key=a%25b status=found clsid=") for b in body), body
        assert any(b.startswith("item_get key=nokey status=not_found clsid=0") for b in body), body
        value = b"x" * 50000
        for i in range(100):  # 5 MB into 2 MB: evictions
            assert c.cmd(b"set big%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"
        lines = _watch_lines(w, "type=eviction")
        ev = next(line for line in lines if "type=eviction" in line)
        assert re.search(r"type=eviction key=big\d+ fetch=no ttl=-1 la=0 clsid=\d+ size=50000$", ev), ev
    w.sendall(b"version\r\n")  # a watcher's input is not served
    time.sleep(0.3)
    w.settimeout(0.3)
    try:
        rest = w.recv(1 << 20)
    except socket.timeout:
        rest = b""
    assert b"VERSION" not in rest
    w.close()


def test_watch_refusals(server):
    with server.connect() as c:
        assert c.cmd(b"watch bogus\r\n") == b"ERROR\r\n"
        c.send(b"set wp 0 0 1\r\nx\r\nwatch\r\n")
        assert c.read_until(b"\r\n") == b"STORED\r\n"
        assert c.read_until(b"\r\n") == b"ERROR cannot pipeline other commands before watch\r\n"
    watchers = [socket.create_connection((HOST, server.port)) for _ in range(21)]
    try:
        for i, s in enumerate(watchers):
            s.sendall(b"watch\r\n")
            s.settimeout(5)
            got = s.recv(100)
            assert got == (b"OK\r\n" if i < 20 else b"WATCHER_TOO_MANY log watcher limit reached\r\n"), (i, got)
    finally:
        for s in watchers:
            s.close()
    time.sleep(0.3)
    last = socket.create_connection((HOST, server.port))  # the closed watchers' places are free again
    last.sendall(b"watch\r\n")
    last.settimeout(5)
    assert last.recv(100) == b"OK\r\n"
    last.close()


@memkitd_only  # memcached also grows past -m; memkitd refuses that (its memory is reserved at start)
def test_cache_memlimit_shrinks_and_regrows_the_cache(server_factory):
    srv = server_factory("-m", "64")
    with srv.connect() as c:
        value = b"v" * 100_000
        for i in range(400):  # 40 MB
            assert c.cmd(b"set m%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"
        assert c.cmd(b"cache_memlimit 16\r\n") == b"OK\r\n"
        st = c.stats()
        assert st["limit_maxbytes"] == str(16 << 20) and c.stats("settings")["maxbytes"] == str(16 << 20)
        for i in range(400, 600):  # 20 MB more: the cache now keeps about 16 MB
            assert c.cmd(b"set m%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"
        st = c.stats()
        assert int(st["bytes"]) <= 16 << 20 and int(st["evictions"]) > 0, st
        assert c.get(b"get m599\r\n").startswith(b"VALUE m599 ")
        assert c.cmd(b"cache_memlimit 64\r\n") == b"OK\r\n"
        for i in range(600, 900):  # 30 MB: room again
            assert c.cmd(b"set m%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"
        assert int(c.stats()["bytes"]) > 24 << 20
        assert c.cmd(b"cache_memlimit 65\r\n") == b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"
        assert c.cmd(b"cache_memlimit 4\r\n") == b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
        assert c.cmd(b"cache_memlimit 2000000000\r\n") == \
            b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
        assert c.cmd(b"cache_memlimit abc\r\n") == b"ERROR\r\n"
        c.send(b"cache_memlimit 32 noreply\r\n")
        assert c.stats()["limit_maxbytes"] == str(32 << 20)


# ---- Prometheus' memcached_exporter (not packaged by Debian): its scrape, by its rules -----------------------
# memcached_exporter (github.com/prometheus/memcached_exporter, pkg/exporter/exporter.go) reads "stats",
# "stats slabs", "stats items" and "stats settings" through grobie/gomemcache and reports up=0 when a value it
# reads does not parse. _exporter_scrape follows those rules: which lines are kept, how a name with ':' is split
# into a class number, which names are read as floats, "sec.usec" times or yes/no, and which names missing
# make the scrape fail (cmd_set and the cas counters, in stats and per class).

_EXPORTER_STATS = (["%s_%s" % (op, r) for op in ("get", "delete", "incr", "decr", "cas", "touch")
                    for r in ("hits", "misses")] +
                   ["uptime", "time", "cas_badval", "cmd_flush", "bytes", "limit_maxbytes", "curr_items",
                    "total_items", "bytes_read", "bytes_written", "curr_connections", "total_connections",
                    "rejected_connections", "conn_yields", "listen_disabled_num", "evictions", "reclaimed",
                    "store_too_large", "store_no_memory", "lru_crawler_starts", "direct_reclaims",
                    "crawler_items_checked", "crawler_reclaimed", "moves_to_cold", "moves_to_warm",
                    "moves_within_lru", "total_malloced", "accepting_conns"])
_EXPORTER_ITEMS = ["number", "age", "hits_to_hot", "hits_to_warm", "hits_to_cold", "hits_to_temp",
                   "crawler_reclaimed", "evicted", "evicted_nonzero", "evicted_time", "evicted_unfetched",
                   "expired_unfetched", "outofmemory", "reclaimed", "store_too_large", "store_no_memory",
                   "tailrepairs", "mem_requested", "moves_to_cold", "moves_to_warm", "moves_within_lru",
                   "number_hot", "number_warm", "number_cold", "number_temp", "age_hot", "age_warm"]
_EXPORTER_SLABS = (["%s_hits" % op for op in ("get", "delete", "incr", "decr", "cas", "touch")] +
                   ["cas_badval", "chunk_size", "chunks_per_page", "total_pages", "total_chunks", "used_chunks",
                    "free_chunks", "free_chunks_end", "mem_requested"])
_EXPORTER_LRU_SETTINGS = ["lru_crawler_sleep", "lru_crawler_tocrawl", "hot_lru_pct", "warm_lru_pct",
                          "hot_max_factor", "warm_max_factor"]


def _exporter_scrape(port):
    """(errors, metrics): what memcached_exporter would find wrong, and the metric names it would export
    (per-class metrics without their class number)."""
    sock = socket.create_connection((HOST, port), timeout=10)
    f = sock.makefile("rb")

    def lines(cmd):
        sock.sendall(cmd)
        out = []
        while True:
            line = f.readline()
            assert line, "the server closed the connection"
            if line == b"END\r\n":
                return out
            out.append(line.decode())

    top, slabs, items, errors, metrics = {}, {}, {}, [], set()
    for cmd in (b"stats\r\n", b"stats slabs\r\n", b"stats items\r\n"):
        for line in lines(cmd):
            s = line.split(" ")
            if len(s) != 3 or not s[0].startswith("STAT"):
                continue
            f_ = s[1].split(":")
            if len(f_) == 1:
                top[s[1]] = s[2].strip()
            elif len(f_) == 2:
                slabs.setdefault(int(f_[0]), {})[f_[1]] = s[2].strip()
            elif len(f_) == 3:
                items.setdefault(int(f_[1]), {})[f_[2]] = s[2].strip()
    settings = {}
    for line in lines(b"stats settings\r\n"):
        s = line.split(" ", 2)
        if len(s) != 3 or s[0] != "STAT":
            errors.append("unexpected stats settings line %r" % line)
            continue
        settings[s[1]] = s[2].strip()
    sock.close()

    def read(table, name, where, kind="float", required=False):
        if name not in table:
            if required:
                errors.append("%s: %s missing" % (where, name))
            return
        v = table[name]
        try:
            if kind == "timeval":
                a, b = v.split(".")
                float(a), float(b)
            elif kind == "bool":
                if v not in ("yes", "no"):
                    raise ValueError(v)
            else:
                float(v)
        except ValueError:
            errors.append("%s: %s=%r does not parse" % (where, name, v))
            return
        metrics.add("%s:%s" % (where, name))

    for name in _EXPORTER_STATS:
        read(top, name, "stats")
    for name in ("cmd_set", "cas_misses", "cas_hits", "cas_badval"):
        read(top, name, "stats", required=True)
    for name in ("rusage_user", "rusage_system"):
        read(top, name, "stats", "timeval")
    for cls in items.values():
        for name in _EXPORTER_ITEMS:
            read(cls, name, "items")
    for cls in slabs.values():
        for name in _EXPORTER_SLABS:
            read(cls, name, "slabs")
        for name in ("cmd_set", "cas_hits", "cas_badval"):
            read(cls, name, "slabs", required=True)
    read(settings, "maxconns", "settings")
    if settings.get("lru_crawler") == "yes":
        read(settings, "lru_crawler", "settings", "bool")
        read(settings, "lru_maintainer_thread", "settings", "bool")
        for name in _EXPORTER_LRU_SETTINGS:
            read(settings, name, "settings")
    return errors, metrics


def test_memcached_exporter_scrapes_every_metric_memcached_gives_it(server_factory, tmp_path):
    """Prometheus' memcached_exporter, by its source's rules (Debian does not package it): memkitd's stats give it
    no parse error (it would report up=1) and every metric it exports from memcached 1.6.18 under the same load."""
    from conftest import Server
    reference = Server((), binary="/usr/bin/memcached", logdir=str(tmp_path))
    server = server_factory()
    try:
        found = {}
        for name, srv in (("memcached", reference), ("server", server)):
            c = srv.connect()
            _fill(c, 50)
            assert c.cmd(b"get dump:1 nothere\r\n", b"END\r\n").startswith(b"VALUE dump:1 ")
            assert c.cmd(b"gets dump:2\r\n", b"END\r\n").startswith(b"VALUE dump:2 ")
            assert c.cmd(b"cas dump:2 0 0 1 1\r\nx\r\n") in (b"EXISTS\r\n", b"STORED\r\n")
            assert c.cmd(b"incr nothere 1\r\n") == b"NOT_FOUND\r\n"
            assert c.cmd(b"delete dump:4\r\n") == b"DELETED\r\n"
            c.close()
            found[name] = _exporter_scrape(srv.port)
    finally:
        reference.stop()
    ref_errors, ref_metrics = found["memcached"]
    errors, metrics = found["server"]
    assert ref_errors == [], ref_errors      # the rules above, checked on the server they were written for
    assert errors == []
    # The exporter reads the LRU crawler's settings only from a server whose "lru_crawler" is "yes"; memkitd has
    # no crawler and says "no" (docs/operations.md), so those eight gauges are absent, as from a memcached
    # started with "-o no_lru_crawler". Every other metric is there.
    missing = ref_metrics - metrics
    if not IS_MEMCACHED:
        assert missing == {"settings:lru_crawler", "settings:lru_maintainer_thread"} | {
            "settings:" + n for n in _EXPORTER_LRU_SETTINGS}
    else:
        assert missing == set()
    assert len(metrics) > 60
