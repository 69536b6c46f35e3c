"""memkit._loops -- event-loop drivers: the calls of one gevent hub or one asyncio loop share a connection
per server (libmemkit's mk_evpipe, the C type EvPipe); this module watches those connections with the
loop's own primitives and wakes each caller when its reply is in.

A driver, per hub or loop, has the interface the C extension calls (python/memkit/evloop.c):
waiter(), wait(w), submitted(ep) and wait_fd(fd, write, timeout). Requests submitted during one loop
iteration are written together at its end (the flush is scheduled behind the callers that are ready to
run), so N greenlets or tasks calling at once make one send and, usually, one receive.
"""
import weakref

from greenlet import getcurrent

from . import _memkit

POLLIN, POLLOUT = 1, 4

_green = [False]   # gevent cooperative mode is on (memkit.make_green)


class _Driver(object):
    """What the gevent and asyncio drivers share: the end-of-iteration flush and the pipe runs."""

    def __init__(self):
        self._dirty = []
        self._scheduled = False

    def submitted(self, ep, sent=False):
        if sent:           # written at once (the pipe was idle): the reply comes to the reader watcher
            self._arm(ep)
            return
        if not ep.flagged:
            ep.flagged = 1
            self._dirty.append(ep)
            if not self._scheduled:
                self._scheduled = True
                self._soon(self._flush)

    def _flush(self):
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for ep in dirty:
            ep.flagged = 0
            self._run(ep)

    def _run(self, ep, *unused):
        for w in ep.io():
            self._wake(w)
        self._arm(ep)

    def _timer(self, ep):   # (ep.watch[3]: the driver's timer, gone once it fired)
        ep.watch[3] = None
        self._run(ep)


class _GeventDriver(_Driver):
    aio = False

    def __init__(self, hub):
        _Driver.__init__(self)
        import gevent.hub
        from gevent.socket import wait_read, wait_write
        self._hub = hub
        self._loop = hub.loop
        self._Waiter = gevent.hub.Waiter
        self._wait_read, self._wait_write = wait_read, wait_write
        self._sleep = __import__("gevent").sleep

    def _soon(self, fn):
        self._loop.run_callback(fn)

    def waiter(self):
        return self._Waiter(self._hub)

    def wait(self, w):
        return w.get()

    def _wake(self, w):
        w.switch(None)

    def wait_fd(self, fd, write, timeout):
        if fd < 0:
            self._sleep(timeout)
            return
        try:
            (self._wait_write if write else self._wait_read)(fd, timeout=timeout)
        except Exception as e:  # gevent's socket.timeout: the op's own deadline says what happened
            if e.__class__.__name__ not in ("timeout", "TimeoutError"):
                raise

    def _arm(self, ep):
        fd, ev, t, gen = ep.state()
        st = ep.watch
        if st is None:
            st = ep.watch = [None, None, -1, None, 0.0]   # reader, writer, generation, timer, its time
        if gen != st[2]:
            for i in (0, 1):
                if st[i] is not None:
                    st[i].stop()
                    st[i] = None
            st[2] = gen
        if fd >= 0 and st[0] is None and ev & POLLIN:
            st[0] = self._loop.io(fd, 1)
            st[0].start(self._run, ep)
        if fd >= 0 and ev & POLLOUT:
            if st[1] is None:
                st[1] = self._loop.io(fd, 2)
                st[1].start(self._run, ep)
        elif st[1] is not None:
            st[1].stop()
            st[1] = None
        if t >= 0:
            at = self._loop.now() + t / 1000.0
            if st[3] is None or st[4] > at + 0.001:
                if st[3] is not None:
                    st[3].stop()
                st[3] = self._loop.timer(t / 1000.0 + 0.0005)
                st[3].start(self._timer, ep)
                st[4] = at


class _AioDriver(_Driver):
    aio = True

    def __init__(self, loop):
        _Driver.__init__(self)
        self._loop = loop
        self.bridges = []   # memkit.aio's idle bridge greenlets

    def thread_id(self):
        """The thread the loop is running in (None when it is not running; -1 when the loop class does not
        say: the caller then asks asyncio every time)."""
        return getattr(self._loop, "_thread_id", -1)

    def _soon(self, fn):
        self._loop.call_soon(fn)

    def waiter(self):
        return self._loop.create_future()

    def wait(self, w):
        # the calling greenlet is a bridge (memkit.aio): its parent awaits the future
        return getcurrent().parent.switch(w)

    def _wake(self, w):
        if not w.done():
            w.set_result(None)

    def _run(self, ep, *unused):
        for w in ep.io():
            if not w.done():           # (a cancelled caller's future is done already)
                w.set_result(None)
        self._arm(ep)

    def wait_fd(self, fd, write, timeout):
        import asyncio
        if fd < 0:
            return getcurrent().parent.switch(asyncio.sleep(timeout))
        loop = self._loop
        fut = loop.create_future()
        done = lambda: fut.done() or fut.set_result(None)
        (loop.add_writer if write else loop.add_reader)(fd, done)
        timer = loop.call_later(timeout, done)
        try:
            return getcurrent().parent.switch(fut)
        finally:
            timer.cancel()
            (loop.remove_writer if write else loop.remove_reader)(fd)

    def _arm(self, ep):
        fd, ev, t, gen = ep.state()
        st = ep.watch
        loop = self._loop
        if st is None:
            st = ep.watch = [-1, -1, -1, None, 0.0]   # reader fd, writer fd, generation, timer, its time
        if gen != st[2]:
            if st[0] >= 0:
                loop.remove_reader(st[0])
            if st[1] >= 0:
                loop.remove_writer(st[1])
            st[0] = st[1] = -1
            st[2] = gen
        if fd >= 0 and st[0] < 0 and ev & POLLIN:
            loop.add_reader(fd, self._run, ep)
            st[0] = fd
        if fd >= 0 and ev & POLLOUT:
            if st[1] < 0:
                loop.add_writer(fd, self._run, ep)
                st[1] = fd
        elif st[1] >= 0:
            loop.remove_writer(st[1])
            st[1] = -1
        if t >= 0:
            at = loop.time() + t / 1000.0
            if st[3] is None or st[4] > at + 0.001:
                if st[3] is not None:
                    st[3].cancel()
                st[3] = loop.call_at(at + 0.0005, self._timer, ep)
                st[4] = at


_gevent_drivers = weakref.WeakKeyDictionary()
_aio_drivers = weakref.WeakKeyDictionary()


def gevent_driver():
    import gevent
    hub = gevent.get_hub()
    d = _gevent_drivers.get(hub)
    if d is None:
        d = _gevent_drivers[hub] = _GeventDriver(hub)
    return d


def aio_driver(loop):
    try:
        return loop._memkit_driver     # (an attribute of the loop: found without a dictionary lookup)
    except AttributeError:
        pass
    d = _aio_drivers.get(loop)
    if d is None:
        d = _aio_drivers[loop] = _AioDriver(loop)
    try:
        loop._memkit_driver = d
    except AttributeError:             # a loop class with __slots__: the weak dictionary serves
        pass
    return d


def _hook():
    d = getattr(getcurrent(), "_mk_driver", None)
    if d is not None:
        return d
    if _green[0]:
        return gevent_driver()
    return None


def install(green=None):
    """Turn the loop hook on (memkit.make_green, memkit.aio's import); green: gevent mode on/off."""
    if green is not None:
        _green[0] = bool(green)
    _memkit._set_loop_hook(_hook)
