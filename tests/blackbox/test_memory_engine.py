"""The memory engine seen from the wire: every value size uses -m, concurrent
overwriters do not evict, and a memory file (-e) brings the cache back after a
clean stop and never serves a damaged item (issue 11)."""

import os
import random
import re
import signal
import tempfile
import threading
import time

import pytest

from conftest import SLOW, memkitd_only

MB = 1 << 20


def value(i, n, ver=0):
    """n bytes that depend on (i, ver): a wrong or stale value never passes for the right one."""
    seed = b"%d:%d:" % (i, ver)
    return (seed * (n // len(seed) + 1))[:n]


def set_many(c, items, flags=0, exptime=0):
    """Pipelined noreply sets, then a round trip to know they were all read."""
    buf = []
    for k, v in items:
        buf.append(b"set %s %d %d %d noreply\r\n%s\r\n" % (k, flags, exptime, len(v), v))
        if len(buf) >= 64:
            c.send(b"".join(buf))
            buf = []
    c.send(b"".join(buf))
    c.version_sync()


def get_value(c, key):
    """(flags, value, cas) or None."""
    c.send(b"gets %s\r\n" % key)
    line = c.read_line()
    if line == b"END\r\n":
        return None
    m = re.match(rb"VALUE \S+ (\d+) (\d+) (\d+)\r\n", line)
    assert m, line
    data = c.read_exact(int(m.group(2)) + 2)[:-2]
    assert c.read_line() == b"END\r\n"
    return int(m.group(1)), data, int(m.group(3))


@memkitd_only
@pytest.mark.parametrize("size", [20_000, 100_000, 1_000_000])
def test_large_values_fill_the_memory_limit(server_factory, size):
    # 20 KB .. 1 MB values stalled near half of -m: each was a page-rounded block behind a stub,
    # and evicting a segment of stubs dropped dozens of them at once
    srv = server_factory("-m", "32")
    keys = [b"fill:%d" % i for i in range(3 * 32 * MB // size)]
    with srv.connect(timeout=20) as c:
        for i, k in enumerate(keys):
            set_many(c, [(k, value(i, size))])
        kept = sum(size for i, k in enumerate(keys) if (get_value(c, k) or (0, b"", 0))[1] == value(i, size))
    assert kept >= 0.9 * 32 * MB, f"{kept / MB:.1f} MiB of values kept at -m 32"


def overwrite(srv, keys, sizes, writes_per_key, threads=16):
    """`threads` connections each overwrite their share of `keys`, every key writes_per_key times."""

    def worker(part):
        rnd = random.Random(part)
        mine = keys[part::threads]
        with srv.connect(timeout=30) as c:
            for r in range(writes_per_key):
                rnd.shuffle(mine)
                for at in range(0, len(mine), 32):
                    set_many(c, [(k, value(at, sizes(rnd), r)) for k in mine[at:at + 32]])

    ts = [threading.Thread(target=worker, args=(p,)) for p in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


@pytest.mark.parametrize("changing", [False, True], ids=["fixed-size", "changing-size"])
@pytest.mark.parametrize("base", [100, 3000], ids=["100B", "3KB"])
def test_concurrent_overwriters_at_40_percent_live_never_evict(server_factory, base, changing):
    # 16 connections overwriting a key set with live data at 40% of -m caused 437 evictions
    srv = server_factory("-m", "16", "-t", "4")
    nkeys = int(0.4 * 16 * MB / (base + 48))
    keys = [b"ow:%d" % i for i in range(nkeys)]

    def sizes(rnd):
        return rnd.randint(base // 2, base * 3 // 2) if changing else base

    overwrite(srv, keys, sizes, writes_per_key=6)
    st = srv.stats()
    assert int(st["evictions"]) == 0, st
    with srv.connect(timeout=20) as c:
        missing = [k for k in keys if get_value(c, k) is None]
    assert not missing, f"{len(missing)} keys lost"


# ---------------------------------------------------------------- warm restart (-e)


@pytest.fixture
def memfile():
    d = tempfile.mkdtemp(prefix="memkit-img-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(d, "cache.img")
    yield path
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def sizes_for(i):
    return 100_000 + i if i % 97 == 0 else 6000 + i if i % 13 == 0 else 1 + i % 700


def populate(srv, n=4000):
    """n keys of mixed sizes (some spanning segments), flags = i, every third with a TTL; returns {key: (flags, value, cas)}."""
    with srv.connect(timeout=20) as c:
        for i in range(n):
            exptime = 3600 if i % 3 == 0 else 0
            set_many(c, [(b"k:%d" % i, value(i, sizes_for(i)))], flags=i, exptime=exptime)
        for i in range(0, n, 10):
            assert c.cmd(b"delete k:%d\r\n" % i) == b"DELETED\r\n"
        return {b"k:%d" % i: get_value(c, b"k:%d" % i) for i in range(n)}


def check_all(srv, want):
    with srv.connect(timeout=20) as c:
        got = {k: get_value(c, k) for k in want}
    wrong = [k for k in want if got[k] != want[k]]
    assert not wrong, f"{len(wrong)} keys differ, e.g. {wrong[:3]}"


@memkitd_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT], ids=["TERM", "USR1", "INT"])
def test_warm_restart_brings_every_item_back(server_factory, memfile, sig):
    srv = server_factory("-e", memfile, "-m", "32")
    want = populate(srv)
    assert srv.stop(sig) == 0
    again = server_factory("-e", memfile, "-m", "32", "-v")
    check_all(again, want)  # values, flags and cas; deleted keys stay deleted
    st = again.stats()
    assert st["restart_warm"] == "1"
    assert int(st["restart_items"]) == sum(1 for v in want.values() if v) == int(st["curr_items"])
    assert "[restart] restored" in again.stderr()
    # and it goes on serving and restarting
    with again.connect() as c:
        assert c.set("after", "restart") == b"STORED\r\n"
    again.stop()
    third = server_factory("-e", memfile, "-m", "32")
    with third.connect() as c:
        assert get_value(c, b"after")[1] == b"restart"


@memkitd_only
def test_kill_9_mid_writes_starts_empty(server_factory, memfile):
    srv = server_factory("-e", memfile, "-m", "16")
    stop = threading.Event()

    def writer():
        with srv.connect(timeout=5) as c:
            i = 0
            try:
                while not stop.is_set():
                    c.send(b"set w:%d 0 0 %d noreply\r\n%s\r\n" % (i, 3000, value(i, 3000)))
                    i += 1
            except OSError:
                pass

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5 * SLOW)
    srv.stop(signal.SIGKILL)
    stop.set()
    t.join()
    again = server_factory("-e", memfile, "-m", "16")
    assert "not clean" in again.stderr()
    assert again.stderr().count("[restart]") == 1  # one line
    st = again.stats()
    assert st["restart_warm"] == "0" and st["curr_items"] == "0"
    with again.connect() as c:
        assert get_value(c, b"w:1") is None


@memkitd_only
@pytest.mark.parametrize("change", [("-m", "24"), ("-I", "512k"), ("-C",)], ids=["m", "I", "C"])
def test_other_settings_start_empty_with_one_line(server_factory, memfile, change):
    srv = server_factory("-e", memfile, "-m", "16")
    populate(srv, 300)
    srv.stop()
    args = ["-e", memfile, "-m", "16"]
    if change[0] == "-m":
        args[-1] = change[1]
    else:
        args += list(change)
    again = server_factory(*args)
    lines = [ln for ln in again.stderr().splitlines() if "[restart]" in ln]
    assert len(lines) == 1 and "clean cache" in lines[0], again.stderr()
    assert again.stats()["curr_items"] == "0"


@memkitd_only
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flipped_bytes_serve_only_intact_items(server_factory, memfile, seed):
    srv = server_factory("-e", memfile, "-m", "16")
    want = populate(srv, 3000)
    srv.stop()
    rnd = random.Random(seed)
    size = os.path.getsize(memfile)
    with open(memfile, "r+b") as f:
        for _ in range(20):
            at = rnd.randrange(4096, size)  # past the header page: damaged segments are dropped
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ (1 << rnd.randrange(8))]))
    again = server_factory("-e", memfile, "-m", "16")
    with again.connect(timeout=20) as c:
        got = {k: get_value(c, k) for k in want}
    wrong = [k for k in want if got[k] is not None and got[k] != want[k]]
    assert not wrong, f"{len(wrong)} damaged items served"
    assert again.alive()


@memkitd_only
def test_full_64mb_cache_back_quickly(server_factory, memfile):
    srv = server_factory("-e", memfile, "-m", "64")
    with srv.connect(timeout=60) as c:
        for base in range(0, 600_000, 2000):
            set_many(c, [(b"f:%d" % i, value(i, 100)) for i in range(base, base + 2000)])
    items = int(srv.stats()["curr_items"])
    assert srv.stop() == 0
    t0 = time.monotonic()
    again = server_factory("-e", memfile, "-m", "64", "-v")
    with again.connect() as c:
        assert get_value(c, b"f:599999")[1] == value(599999, 100)
    elapsed = time.monotonic() - t0
    m = re.search(r"restored (\d+) items from .* in ([0-9.]+) s", again.stderr())
    assert m and int(m.group(1)) == items, again.stderr()
    assert float(m.group(2)) < 1.0 * SLOW * 3  # 0.145 s measured on the 2-core box; generous under load
    assert elapsed < 10 * SLOW
