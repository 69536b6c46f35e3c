"""memkit.aio -- an asyncio client over the same C core as memkit.Client.

    import memkit.aio
    mc = memkit.aio.Client(["127.0.0.1:11211"])
    await mc.set("k", {"a": 1})
    value = await mc.get("k")

Every method of memkit.Client that talks to a server is here as a coroutine with the same arguments
and results: the same distribution, failover, value encoding (reads what python-memcached, pylibmc and
pymemcache wrote) and errors. The tasks of one event loop share one connection per server: the
requests made during one loop iteration go out in one write and each task wakes when its own reply is
in (auto-pipelining; pipeline=False gives each call a pooled connection of its own, still without
blocking the loop). Cancelling a task (asyncio.wait_for, TaskGroup) while its request is on the wire
leaves the connection in step: the reply is read and dropped.

How: the synchronous client's C code runs in a greenlet; where it would wait, it hands the loop a
future (its reply, or its socket's readiness) and the coroutine awaits it. python3-greenlet is the
one dependency (Debian packages it with gevent).
"""
import asyncio
import functools
import threading

from greenlet import greenlet, getcurrent

import memkit
from . import _loops

__all__ = ["Client", "call"]

_loops.install()


class _Bridge(greenlet):
    """A greenlet that runs synchronous calls for tasks, one at a time; _mk_driver tells the C core it is in
    a loop. Bridges are reused (a new greenlet costs an mmap and munmap of its Python frame stack)."""
    __slots__ = ("_mk_driver",)


class _Result(object):
    __slots__ = ("ok", "value")

    def __init__(self, ok, value):
        self.ok, self.value = ok, value


def _bridge_main(fn, args, kw):
    while True:
        try:
            res = _Result(True, fn(*args, **kw))
        except BaseException as e:   # (the call's own error, or the task's cancellation it passed through)
            res = _Result(False, e)
        res = getcurrent().parent.switch(res)   # back to the task; the next job comes the same way
        fn, args, kw = res


_running = asyncio.get_running_loop
_get_ident = threading.get_ident
_tls = threading.local()
_MAX_IDLE_BRIDGES = 256


async def call(fn, *args, **kw):
    """await fn(*args, **kw) where fn is synchronous code whose waits are memkit's (a memkit.Client's calls,
    a Django cache backend's methods): it runs in a greenlet, and every memkit call it makes is pipelined
    and waited for by this event loop instead of blocking it. Other blocking code in fn would still block
    the loop."""
    # the driver of the loop running in this thread: remembered per thread (asyncio.get_running_loop()
    # makes a getpid() system call every time), checked against the loop's own thread mark
    d = getattr(_tls, "driver", None)
    if d is None or d.thread_id() != _get_ident():
        d = _tls.driver = _loops.aio_driver(_running())
    idle = d.bridges
    if idle:
        g = idle.pop()
        r = g.switch((fn, args, kw))
    else:
        g = _Bridge(_bridge_main, getcurrent())
        g._mk_driver = d
        r = g.switch(fn, args, kw)
    while r.__class__ is not _Result:
        try:
            v = await r
        except BaseException as e:   # cancelled: the call sees it where it waits, and leaves its pipe
            r = g.throw(e)
        else:
            r = g.switch(v)
    if len(idle) < _MAX_IDLE_BRIDGES and g.parent is getcurrent():
        idle.append(g)
    if r.ok:
        return r.value
    raise r.value


def _coroutine(name):
    sync = getattr(memkit.Client, name)

    @functools.wraps(sync)
    async def method(self, *args, **kw):
        return await call(sync, self._c, *args, **kw)
    method.__doc__ = "await: memkit.Client.%s%s" % (name, "" if not sync.__doc__ else "\n\n" + sync.__doc__)
    return method


class Client(object):
    """memkit.Client for asyncio: the same constructor arguments; every call that talks to a server is a
    coroutine. One Client may be used by any number of tasks (and event loops, one connection per server
    each)."""

    _CALLS = ("get", "gets", "set", "add", "replace", "append", "prepend", "cas", "delete", "incr", "decr",
              "touch", "get_multi", "set_multi", "delete_multi", "add_multi", "replace_multi", "get_many",
              "set_many", "delete_many", "get_stats", "get_slab_stats", "get_slabs", "flush_all",
              "invalidate")

    def __init__(self, servers, **options):
        self._c = memkit.Client(servers, **options)

    @property
    def sync(self):
        """The synchronous memkit.Client underneath (same servers, pool and options)."""
        return self._c

    def __getattr__(self, name):
        # settings and helpers that make no network call (server_for_key, counters, check_key, ...)
        return getattr(self._c, name)

    async def close(self):
        """Close every connection (they reopen on the next call)."""
        self._c.disconnect_all()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        return "<memkit.aio.Client %r>" % (self._c,)


for _name in Client._CALLS:
    if hasattr(memkit.Client, _name):
        setattr(Client, _name, _coroutine(_name))
del _name
