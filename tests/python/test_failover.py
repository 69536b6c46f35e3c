"""Failing fast and visibly: the circuit breaker (a dead server is probed in the background, callers fail over
at once), flush_on_reconnect against stale reads, counters, the `memkit` logger, and python-memcached's debug
lines word for word."""
import logging
import os
import signal
import time

import memcache
import pytest

from conftest import dead_addr


def keys_on(mc, server_index, n, prefix="k"):
    out, i = [], 0
    while len(out) < n:
        k = "%s%d" % (prefix, i)
        if mc.server_for_key(k) == server_index:
            out.append(k)
        i += 1
    return out


def timed(fn, *a):
    t = time.monotonic()
    r = fn(*a)
    return r, time.monotonic() - t


def restart_on(port):
    """memkitd again on a port it had (conftest.Server picks a free one)."""
    import conftest
    pick = conftest.free_port
    conftest.free_port = lambda: port
    try:
        return conftest.Server("memkitd")
    finally:
        conftest.free_port = pick


def wait_for(cond, limit):
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("flush", [0, 1])
def test_sigstop_fails_over_at_once_and_rejoins(memkit, fresh_server, flush):
    """A frozen server costs one timeout, not one per call or per dead_retry; it rejoins when a background
    probe finds it back, flushed first with flush_on_reconnect=1 (else the values it kept are served stale:
    the regression served 1,160 stale values in 4 s)."""
    a, b = fresh_server("memkitd"), fresh_server("memkitd")
    mc = memkit.Client([a.addr, b.addr], socket_timeout=1.0, dead_retry=0.5, flush_on_reconnect=flush)
    ks = keys_on(mc, 0, 20)
    for k in ks:
        assert mc.set(k, "old") is True
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        slow, durations = 0, []
        end = time.monotonic() + 2.5             # five dead_retry intervals while frozen
        while time.monotonic() < end:
            for k in ks:
                r, dt = timed(mc.get, k)
                durations.append(dt)
                slow += dt > 0.5
            time.sleep(0.01)
        assert slow == 1, (slow, max(durations))  # the first call timed out; every other failed over at once
        for k in ks:
            assert mc.set(k, "new") is True       # written to the other server meanwhile
        n = mc.counters()[str(mc.servers[0])]
        assert n["timeouts"] == 1 and n["ejections"] == 1 and n["probes"] >= 1 and not n["alive"], n
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert wait_for(lambda: mc.counters()[str(mc.servers[0])]["alive"], 3.0)
    stale = sum(mc.get(k) == "old" for k in ks)
    if flush:
        assert stale == 0
    else:
        assert stale == len(ks)                   # what flush_on_reconnect is for
    n = mc.counters()[str(mc.servers[0])]
    assert n["rejoins"] == 1 and n["timeouts"] == 1, n


def test_kill_and_restart(memkit, fresh_server):
    """A killed server is refused at once (no timeout), keys move to the live one, and a restarted server
    rejoins through the probe."""
    a, b = fresh_server("memkitd"), fresh_server("memkitd")
    mc = memkit.Client([a.addr, b.addr], dead_retry=0.3)
    ks = keys_on(mc, 0, 5)
    a.stop()
    for k in ks:
        r, dt = timed(mc.set, k, "v")
        assert r is True and dt < 0.5             # refused, marked dead, the key moved to b
    assert all(mc.get(k) == "v" for k in ks)
    restarted = restart_on(a.port)
    try:
        assert wait_for(lambda: mc.counters()[str(mc.servers[0])]["alive"], 3.0)
        assert mc.set(ks[0], "back") is True and a.raw(b"get %s\r\n" % ks[0].encode()).startswith(b"VALUE")
    finally:
        restarted.stop()


def test_counters_and_logger(memkit, caplog):
    addr = dead_addr()
    mc = memkit.Client([addr])
    with caplog.at_level(logging.DEBUG, logger="memkit"):
        assert mc.get("k") is None
        assert mc.get("k") is None               # dead: not tried, not logged again
    recs = [r for r in caplog.records if r.name == "memkit"]
    assert len(recs) == 1 and recs[0].levelno == logging.WARNING, [r.getMessage() for r in recs]
    assert "marked dead" in recs[0].getMessage() and addr in recs[0].getMessage()
    n = mc.counters()["inet:" + addr]
    assert n["errors"] == 1 and n["ejections"] == 1 and n["alive"] is False


def debug_lines(capfd, client, srv_addr, dead):
    """python-memcached's debug output for calls the server refuses, and for a dead server."""
    mc = client.Client([srv_addr], debug=1, cache_cas=True)
    mc.set("k", "v")
    mc.add("k", "w")                             # NOT_STORED
    mc.replace("nope", "w")                      # NOT_STORED
    mc.gets("k")
    mc.set("k", "changed")
    mc.cas("k", "stale")                         # EXISTS
    mc.touch("nope", 10)                         # NOT_FOUND
    mc.delete_multi(["k", "nope"])               # one NOT_FOUND
    client.Client([dead], debug=1).get("x")      # connect refused
    return capfd.readouterr().err.splitlines()


def test_debug_messages_word_for_word(memkit, srv, capfd):
    dead = dead_addr()
    theirs = debug_lines(capfd, memcache, srv.addr, dead)
    srv.flush()
    ours = debug_lines(capfd, memkit, srv.addr, dead)
    assert ours == theirs
    assert "MemCached: while expecting 'STORED', got unexpected response 'NOT_STORED'" in ours
    assert "MemCached: MemCache: inet:%s: connect: [Errno 111] Connection refused.  Marking dead." % dead in ours
