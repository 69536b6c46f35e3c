"""memkit.aio (asyncio) and gevent pipelining: tasks and greenlets share one connection per server,
every reply is its caller's, cancellation and timeouts leave the connection in step, fork with calls in
flight. Against memkitd and Debian's memcached (the `srv` fixture)."""
import asyncio
import json
import os
import subprocess
import sys

import pytest

from conftest import PYPATH, slow_server

pytest.importorskip("greenlet")
HERE = os.path.dirname(os.path.abspath(__file__))


def total_connections(srv):
    return int(srv.stats()["total_connections"])


def test_aio_every_call_and_values_other_clients_wrote(srv):
    import memkit.aio
    import memcache
    import pylibmc
    memcache.Client([srv.addr]).set("aio:pm", {"from": "python-memcached"})
    pylibmc.Client([srv.addr]).set("aio:pl", [1, 2, 3])

    async def main():
        mc = memkit.aio.Client([srv.addr])
        assert await mc.get("aio:pm") == {"from": "python-memcached"}
        assert await mc.get("aio:pl") == [1, 2, 3]
        assert await mc.set("aio:a", "A") is True
        assert await mc.add("aio:a", "B") is False
        assert await mc.get("aio:a") == "A"
        assert await mc.get("aio:none") is None and await mc.get("aio:none", 7) == 7
        assert await mc.set("aio:n", 5) and await mc.incr("aio:n", 3) == 8 and await mc.decr("aio:n") == 7
        assert await mc.append("aio:a", "a") and await mc.get("aio:a") == "Aa"
        mc.cache_cas = True
        assert await mc.gets("aio:a") == "Aa"
        assert await mc.cas("aio:a", "new") is True
        assert await mc.get_multi(["aio:a", "aio:n", "aio:none", "aio:pl"]) == \
            {"aio:a": "new", "aio:n": 7, "aio:pl": [1, 2, 3]}
        assert await mc.set_multi({"aio:m1": 1, "aio:m2": b"x" * 100000}) == []
        assert await mc.get_multi(["aio:m1", "aio:m2"]) == {"aio:m1": 1, "aio:m2": b"x" * 100000}
        assert await mc.set("aio:q", "quiet", noreply=True) is True   # sent; nobody waits for the reply
        assert await mc.delete("aio:a") and await mc.get("aio:a") is None
        assert await mc.touch("aio:q", 100) and await mc.get("aio:q") == "quiet"
        assert await mc.delete_multi(["aio:m1", "aio:m2"]) and await mc.get_multi(["aio:m1", "aio:m2"]) == {}
        stats = await mc.get_stats()
        assert len(stats) == 1 and "curr_items" in stats[0][1]
        await mc.close()
    asyncio.run(main())


def test_aio_noreply_failures_are_counted(srv):
    """A noreply call on the loop's pipe is a plain request whose reply is dropped; a failure it reports
    (not stored, not found) is counted in the server's noreply_failed, as a quiet one's is."""
    import memkit.aio

    async def main():
        mc = memkit.aio.Client([srv.addr])
        assert await mc.set("aio:nf", "kept") is True
        for _ in range(5):
            await mc.add("aio:nf", "not stored", noreply=True)
            await mc.delete("aio:nf-none", noreply=True)
        assert await mc.get("aio:nf") == "kept"   # (read after the ten replies on the one connection)
        failed = sum(c["noreply_failed"] for c in mc.counters().values())
        await mc.close()
        return failed
    assert asyncio.run(main()) == 10


def test_aio_200_tasks_share_one_connection_and_get_their_own_replies(srv):
    import memkit.aio
    before = total_connections(srv)

    async def main():
        mc = memkit.aio.Client([srv.addr])
        wrong = 0

        async def worker(i):
            nonlocal wrong
            for j in range(30):
                key = "aio:t%d" % i
                await mc.set(key, "%d-%d" % (i, j))
                wrong += await mc.get(key) != "%d-%d" % (i, j)
                wrong += await mc.incr("aio:ctr") is None
                got = await mc.get_multi([key, "aio:missing"])
                wrong += got != {key: "%d-%d" % (i, j)}
        await mc.set("aio:ctr", 0)
        await asyncio.gather(*[worker(i) for i in range(200)])
        assert wrong == 0
        assert await mc.get("aio:ctr") == 200 * 30
    asyncio.run(main())
    # this stats connection, the loop's pipe, and at most one more (not the pool's 8)
    assert total_connections(srv) - before <= 3


def test_aio_cancelled_tasks_leave_the_connection_usable(srv):
    """Regression (issue 17): tasks cancelled while their requests are on the wire; the others get their
    own replies on the same connection, and the next calls too."""
    import memkit.aio
    before = total_connections(srv)

    async def main():
        mc = memkit.aio.Client([srv.addr])
        await mc.set("aio:c", "C")
        await mc.set("aio:big", b"v" * 500000)
        tasks = [asyncio.ensure_future(mc.get("aio:big" if i % 2 else "aio:c")) for i in range(100)]
        await asyncio.sleep(0)          # every request queued
        await asyncio.sleep(0)          # ... and written
        for t in tasks[::3]:
            t.cancel()
        res = await asyncio.gather(*tasks, return_exceptions=True)
        for i, r in enumerate(res):
            if i % 3 == 0:
                assert isinstance(r, asyncio.CancelledError) or r == (b"v" * 500000 if i % 2 else "C")
            else:
                assert r == (b"v" * 500000 if i % 2 else "C"), (i, r)
        for _ in range(20):
            assert await mc.get("aio:c") == "C"
        assert mc.counters()[list(mc.counters())[0]]["errors"] == 0
    asyncio.run(main())
    # this stats connection, the pipe, and one pooled connection for the 500 KB set (values over
    # pipeline_max_value are sent from the caller's memory, not copied into the shared buffer)
    assert total_connections(srv) - before <= 3


@pytest.fixture
def slow():
    yield from slow_server(0.3)


def test_aio_timeouts_and_wait_for(slow):
    """A server that answers every get after 300 ms: socket_timeout 0.1 fails the call with a timeout;
    asyncio.wait_for cancels one; the loop never blocks; the client keeps working."""
    import memkit
    import memkit.aio

    async def main():
        mc = memkit.aio.Client([slow], socket_timeout=0.1, raise_errors=True, failure_limit=100)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)
        tk = asyncio.ensure_future(ticker())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(memkit.Error) as e:
            await mc.get("t1")
        assert "timed out" in str(e.value) or "timeout" in str(e.value).lower()
        assert loop.time() - t0 < 0.25
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mc.get("t2"), 0.05)
        # pipelined, the server answers one request after the other: 5 x 300 ms on one connection
        mc2 = memkit.aio.Client([slow], socket_timeout=3)
        assert await asyncio.gather(*[mc2.get("k%d" % i) for i in range(5)]) == ["k%d" % i for i in range(5)]
        # pipeline=False: each call on a pooled connection of its own (8), every wait the loop's
        mc3 = memkit.aio.Client([slow], socket_timeout=3, pipeline=False)
        t1 = loop.time()
        assert await asyncio.gather(*[mc3.get("p%d" % i) for i in range(16)]) == ["p%d" % i for i in range(16)]
        assert loop.time() - t1 < 4 * 0.3   # two rounds of 8
        elapsed = loop.time() - t0
        tk.cancel()
        assert ticks >= elapsed / 0.01 * 0.5, (ticks, elapsed)
    asyncio.run(main())


def run_green(addr, n, mode):
    out = subprocess.run([sys.executable, os.path.join(HERE, "green_pipe.py"), PYPATH, addr, str(n), mode],
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def test_gevent_pipeline_greenlets_share_one_connection(srv):
    before = total_connections(srv)
    r = run_green(srv.addr, 200, "mixed")
    assert r["wrong"] == 0 and r["done"] == 200 * 20, r
    assert total_connections(srv) - before <= 3, r   # this stats connection, the pipe (not the pool's 8)


def test_gevent_pipeline_killed_greenlets_and_fork(srv):
    """Greenlets killed mid-request leave the connection in step; a fork while requests are in flight:
    the child's greenlets get their replies on the child's own connection, the parent's on its own."""
    r = run_green(srv.addr, 100, "kill_fork")
    assert r["wrong"] == 0 and r["after_kill_ok"], r
    assert r["child_ok"] and r["parent_ok"], r
