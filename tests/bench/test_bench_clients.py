"""tests/bench/test_bench_clients.py — bench_clients (bench/client_compare.sh's runner): libmemkit, libmemcached and the syscall floor do real round trips and count what they get.

The floor is the ceiling the client benchmark quotes ("floor/libmemcached" is the most
any client could gain here), so these tests pin that it does the whole round trip: it
reads every reply to its end, finds every key where the libraries find it, and counts a
reply of the wrong length (a miss) instead of taking it for a hit; with ketama
placement computed per call (the default) or looked up (--floor-no-hash).
Runs build/bench/bench_clients (or $BENCH_CLIENTS) against one memcached and one
memkitd together (keys spread over both by ketama).
"""

import os
import subprocess

import pytest

from test_bench import MEMCACHED, MEMKITD, REPO, Server

BENCH_CLIENTS = os.environ.get("BENCH_CLIENTS") or "build/bench/bench_clients"
if not os.path.isabs(BENCH_CLIENTS):
    BENCH_CLIENTS = os.path.join(REPO, BENCH_CLIENTS)

LIBS = ["memkit", "libmemcached", "floor"]
NKEYS = 500


@pytest.fixture(scope="module")
def servers():
    a, b = Server(MEMCACHED), Server(MEMKITD)
    yield [a, b]
    a.stop()
    b.stop()


def run(servers, *args, check=True):
    if not os.access(BENCH_CLIENTS, os.X_OK):
        pytest.fail(f"{BENCH_CLIENTS} not built (make bench-client)", pytrace=False)
    cmd = [BENCH_CLIENTS, "--servers=" + ",".join(s.addr for s in servers), f"--keys={NKEYS}",
           "--value-size=100", "--seconds=0.2", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"rc={p.returncode} stderr={p.stderr!r}"
    return p


def result(servers, lib, test, threads=1):
    p = run(servers, f"--lib={lib}", f"--test={test}", f"--threads={threads}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(line) == 1, p.stdout
    f = line[0].split()
    assert f[1:4] == [lib, test, str(threads)]
    return {"ops_per_s": float(f[4]), "ops": int(f[7]), "errors": int(f[8]), "misses": int(f[9]),
            "cpu_us": float(f[10])}


@pytest.fixture()
def populated(servers):
    for s in servers:
        s.flush()
    p = run(servers, "--test=populate")
    assert f"populated {NKEYS} keys" in p.stdout
    return servers


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("test", ["get", "set", "mget"])
@pytest.mark.parametrize("lib", LIBS)
def test_every_call_hits(populated, lib, test, threads):
    r = result(populated, lib, test, threads)
    assert r["ops"] > 0 and r["ops_per_s"] > 0
    assert r["errors"] == 0
    assert r["misses"] == 0
    assert r["cpu_us"] > 0


@pytest.mark.parametrize("test", ["get", "mget"])
@pytest.mark.parametrize("lib", LIBS)
def test_warmup_misses_not_counted_empty_servers(servers, lib, test):
    for s in servers:
        s.flush()
    r = result(servers, lib, test)
    assert r["ops"] > 0 and r["errors"] == 0
    # get: every call misses; mget: libraries count missing keys, the floor a short reply
    per_call = {"get": 1, "mget": 1 if lib == "floor" else 100}[test]
    assert r["misses"] == r["ops"] * per_call


@pytest.mark.parametrize("test", ["get", "set", "mget"])
def test_floor_no_hash_every_call_hits(populated, test):
    # placements from the table made before the clock starts: the same servers
    p = run(populated, "--lib=floor", f"--test={test}", "--floor-no-hash")
    f = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][0].split()
    assert int(f[7]) > 0 and f[8:10] == ["0", "0"]


def test_floor_mget_counts_a_short_reply(populated):
    # one key gone: some 100-key calls come back a VALUE block short, which the floor
    # must see by length alone
    assert populated[0].command("delete bench:key:0000007") in ("DELETED\r\n", "NOT_FOUND\r\n")
    assert populated[1].command("delete bench:key:0000007") in ("DELETED\r\n", "NOT_FOUND\r\n")
    r = result(populated, "floor", "mget")
    assert r["errors"] == 0
    assert 0 < r["misses"] < r["ops"]


def test_floor_set_stores(populated):
    for s in populated:
        s.flush()
    result(populated, "floor", "set")
    # the floor's sets wrote real items that a library reads back
    r = result(populated, "memkit", "get")
    assert r["ops"] > 0 and r["errors"] == 0
    assert r["misses"] < r["ops"]


@pytest.mark.parametrize("args", [["--lib=nope"], ["--test=nope"], ["--threads=0"], ["--bogus"]])
def test_bad_arguments_exit_2(servers, args):
    p = run(servers, *args, check=False)
    assert p.returncode == 2
    assert "bench_clients:" in p.stderr


def test_floor_unreachable_server_exits_1():
    p = subprocess.run([BENCH_CLIENTS, "--servers=127.0.0.1:1", "--lib=floor", "--test=get", "--seconds=0.1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "cannot connect" in p.stderr
