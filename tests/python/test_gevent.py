"""gevent: every network wait yields to the hub. A server that answers each get after 200 ms;
200 greenlets finish in a small multiple of 200 ms with at most pool_size sockets."""
import json
import os
import subprocess
import sys

import pytest

from conftest import PYPATH, slow_server

pytest.importorskip("gevent")
HERE = os.path.dirname(os.path.abspath(__file__))
DELAY = 0.2


@pytest.fixture
def slow():
    yield from slow_server(DELAY)


def server_stats(addr):
    import socket
    h, p = addr.split(":")
    with socket.create_connection((h, int(p))) as s:
        s.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            buf += s.recv(4096)
    return {ln.split()[1]: int(ln.split()[2]) for ln in buf.decode().splitlines() if ln.startswith("STAT")}


def run(addr, pool, n, mode):
    out = subprocess.run([sys.executable, os.path.join(HERE, "green_check.py"), PYPATH, addr, str(pool),
                          str(n), mode], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["patch", "make_green"])
def test_200_greenlets_pool_200(slow, mode):
    r = run(slow, 200, 200, mode)
    st = server_stats(slow)
    assert r["green"] and r["ok"] and r["multi_ok"]
    assert r["elapsed"] < 4 * DELAY, r                 # all 200 in flight together: ~1 x 200 ms
    assert r["ticks"] >= r["elapsed"] / 0.01 * 0.5     # the hub kept running other greenlets
    assert r["multi_elapsed"] < 3 * DELAY
    assert st["max_connections"] <= 200 + 1 and st["total_connections"] <= 200 + 1


def test_200_greenlets_default_pool(slow):
    """Pool of 8: 25 rounds of 200 ms (blocking would be 200 x 200 ms = 40 s), 8 sockets."""
    r = run(slow, 8, 200, "patch")
    st = server_stats(slow)
    assert r["ok"] and 200 / 8 * DELAY * 0.9 < r["elapsed"] < 200 / 8 * DELAY * 1.5, r
    assert r["ticks"] >= r["elapsed"] / 0.01 * 0.5
    assert st["max_connections"] <= 8 + 1, st          # + this stats connection


def test_gevent_timeout_interrupts_a_get(slow):
    r = run(slow, 8, 20, "timeout")
    assert r["interrupted_after"] < 0.15, r            # gevent.Timeout cancels the wait
    assert r["after_timeout"] == "again" and r["ok"]


def test_300_greenlets_default_settings(slow):
    """The regression: with every option at its default, 300 greenlets against a 200 ms server got
    TimeoutErrors (waiting for the pool was charged to socket_timeout) and the server accepted 188
    connections for a pool of 8. Now: no error, the pool's bound holds, the hub keeps running."""
    r = run(slow, 0, 300, "defaults")
    st = server_stats(slow)
    assert r["green"] and r["errors"] == 0 and r["ok"], r
    assert st["total_connections"] <= 2 * 8 + 1, st              # + this stats connection
    assert r["max_hub_block"] < 0.15, r                          # blocked, it would be >= 200 ms


def test_client_made_before_monkey_patch_turns_green(slow):
    """The regression: a module-level Client made before monkey.patch_all() blocked the hub (257 ms
    stalls behind a slow server). Its first call after patching turns cooperative mode on."""
    r = run(slow, 0, 40, "early")
    st = server_stats(slow)
    assert not r["green"] and not r["green_before_first_call"], r   # nothing made it green until a call
    assert r["green_after"] and r["errors"] == 0 and r["ok"], r
    assert 40 / 8 * DELAY * 0.9 < r["elapsed"] < 40 / 8 * DELAY * 2, r   # 8 at a time, in rounds
    assert r["max_hub_block"] < 0.15, r
    assert st["max_connections"] <= 8 + 1, st
