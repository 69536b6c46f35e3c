"""memkit — a memcached client for Python over libmemkit (C): a drop-in for python-memcached,
thread-safe through a bounded connection pool, fork-safe, and cooperative under gevent.

    import memkit as memcache
    mc = memcache.Client(['127.0.0.1:11211'], debug=0)
    mc.set('some_key', 'Some value')
    mc.get('some_key')

See docs/python.md.
"""
import io
import os
import logging
import pickle
import sys
import threading
import time as _time
import weakref
import zlib

try:  # the running greenlet (each thread has its own main one), else the thread
    from greenlet import getcurrent as _current
except ImportError:  # pragma: no cover - greenlet is there whenever gevent is
    _current = threading.current_thread

from . import _memkit
from ._memkit import (  # noqa: F401  the error table's classes
    Error, ConnectionError, ResolveError, IOError, ServerDeadError, NoServerError, TimeoutError,
    PoolTimeoutError, ProtocolError, ServerReplyError, ClientErrorReply, ServerErrorReply, ErrorReply,
    NotNumericError, AuthError, TLSError, InvalidArgumentError, OutOfMemoryError, BadKeyError, ServerListError,
    MemcachedKeyError, MemcachedKeyLengthError, MemcachedKeyCharacterError, MemcachedKeyNoneError,
    MemcachedKeyTypeError, MemcachedStringEncodingError,
    set_wait_callback, get_wait_callback, libmemkit_version,
)

__version__ = "0.1.0"
__all__ = ["Client", "make_green", "make_blocking", "set_wait_callback", "get_wait_callback", "Error"]

_log = logging.getLogger("memkit")   # failures: WARNING when a server is marked dead, DEBUG for the others
_log.addHandler(logging.NullHandler())  # a library: silent until the application configures logging

SERVER_MAX_KEY_LENGTH = 250
SERVER_MAX_VALUE_LENGTH = 1024 * 1024
_DEAD_RETRY = 30
_SOCKET_TIMEOUT = 3


class _Server(object):
    """What python-memcached's Client.servers holds (_Host), minus the socket."""

    def __init__(self, spec):
        self.weight = 1
        if isinstance(spec, tuple):
            spec, self.weight = spec
            self.weight = int(self.weight)
        self.raw = spec
        self.ip = self.port = self.address = None
        if spec.startswith("unix:"):
            self.family, self.address = "unix", spec[5:]
        elif spec.startswith("inet6:"):
            rest = spec[6:]
            host, _, port = rest[1:].partition("]")
            self.family, self.ip = "inet6", host
            self.port = int(port[1:]) if port.startswith(":") else 11211
        else:
            rest = spec[5:] if spec.startswith("inet:") else spec
            host, sep, port = rest.partition(":")
            if not host or (sep and not port.isdigit()):
                raise ValueError('Unable to parse connection string: "%s"' % spec)
            self.family, self.ip = "inet", host
            self.port = int(port) if sep else 11211
        if self.address is None:
            self.address = (self.ip, self.port)

    def spec(self):
        """This server in libmemkit's list syntax."""
        if self.family == "unix":
            return self.address
        host = "[%s]" % self.ip if self.family == "inet6" else self.ip
        return "%s:%d:%d" % (host, self.port, self.weight)

    def stats_name(self):
        if self.family == "inet":
            return "%s:%s (%s)" % (self.ip, self.port, self.weight)
        if self.family == "inet6":
            return "[%s]:%s (%s)" % (self.ip, self.port, self.weight)
        return "unix:%s (%s)" % (self.address, self.weight)

    def __str__(self):
        if self.family == "inet":
            return "inet:%s:%d" % self.address
        if self.family == "inet6":
            return "inet6:[%s]:%d" % self.address
        return "unix:%s" % self.address


class Client(_memkit.Client):
    """A drop-in for python-memcached's memcache.Client, over libmemkit.

    One Client may be shared by any number of threads (at most pool_size connections per
    server), survives fork() (the child opens its own connections) and yields to the gevent
    hub in green mode (make_green(), automatic when gevent patched socket).

    Options beyond python-memcached's: distribution ('ketama' default, 'modula' =
    python-memcached's own placement, 'consistent', 'rendezvous', 'ketama_fnv1a'),
    connect_timeout, pool_size, failure_limit (failures before a server is dead),
    auto_eject (keys of a dead server move to the others, as python-memcached does),
    pool_timeout (longest wait for a pooled connection, 30 s; not charged to socket_timeout;
    checkout_timeout is its old name), min_compress_len (default threshold), serializer/deserializer
    (pymemcache-style: serializer(key, value) -> (bytes, flags), deserializer(key, bytes,
    flags) -> value, used for every value that is not bytes, str or int), raise_errors,
    pipeline (auto-pipelining, docs/python.md: None, the default, shares one connection per server
    among the greenlets of a gevent hub and the tasks of an asyncio loop (memkit.aio) and lets threads
    use the pool; True also shares one among threads; False never).
    """

    _FLAG_PICKLE = 1 << 0
    _FLAG_INTEGER = 1 << 1
    _FLAG_LONG = 1 << 2
    _FLAG_COMPRESSED = 1 << 3
    _FLAG_TEXT = 1 << 4
    _SERVER_RETRIES = 10

    def __init__(self, servers, debug=0, pickleProtocol=0, pickler=pickle.Pickler,
                 unpickler=pickle.Unpickler, compressor=zlib.compress, decompressor=zlib.decompress,
                 pload=None, pid=None, server_max_key_length=None, server_max_value_length=None,
                 dead_retry=_DEAD_RETRY, socket_timeout=_SOCKET_TIMEOUT, cache_cas=False,
                 flush_on_reconnect=0, check_keys=True, *, distribution="ketama", connect_timeout=None,
                 pool_size=8, failure_limit=1, auto_eject=True, pool_timeout=30.0, checkout_timeout=None,
                 min_compress_len=0, serializer=None, deserializer=None, raise_errors=False, binary=False,
                 username=None, password=None, ascii_auth=False, tls=False, tls_ca_file=None,
                 tls_cert_file=None, tls_key_file=None, tls_server_name=None, tls_verify=True, pipeline=None,
                 pipeline_depth=256):
        if compressor is not zlib.compress or decompressor is not zlib.decompress:
            raise ValueError("memkit compresses with zlib in C: custom compressor/decompressor "
                             "are not supported (use serializer/deserializer)")
        if server_max_key_length not in (None, 0, SERVER_MAX_KEY_LENGTH):
            raise ValueError("memkit checks keys against memcached's limit of 250 bytes")
        self.debug = debug
        self.dead_retry = dead_retry
        self.socket_timeout = socket_timeout
        self.flush_on_reconnect = flush_on_reconnect
        self.server_max_key_length = SERVER_MAX_KEY_LENGTH
        self._config = dict(distribution=distribution,
                            connect_timeout=float(connect_timeout if connect_timeout is not None
                                                  else socket_timeout),
                            timeout=float(socket_timeout), dead_retry=float(dead_retry),
                            failure_limit=failure_limit, pool_size=pool_size,
                            checkout_timeout=_positive("pool_timeout", pool_timeout if checkout_timeout is None
                                                       else checkout_timeout),
                            auto_eject=auto_eject, flush_on_rejoin=bool(flush_on_reconnect),
                            binary=bool(binary or (username and not ascii_auth)), username=username,
                            password=password, ascii_auth=bool(ascii_auth), tls=bool(tls),
                            tls_ca_file=_path(tls_ca_file), tls_cert_file=_path(tls_cert_file),
                            tls_key_file=_path(tls_key_file), tls_server_name=tls_server_name,
                            tls_verify=bool(tls_verify),
                            pipeline=None if pipeline is None else bool(pipeline),
                            pipeline_depth=pipeline_depth)
        self.set_servers(servers)
        self.stats = {}
        self.cache_cas = cache_cas
        self._cas_ids = weakref.WeakKeyDictionary()
        self.do_check_key = check_keys
        self.pickleProtocol = pickleProtocol
        self.pickler, self.unpickler = pickler, unpickler
        self.compressor, self.decompressor = compressor, decompressor
        self.persistent_load, self.persistent_id = pload, pid
        self.picklerIsKeyword = True
        self.server_max_value_length = (SERVER_MAX_VALUE_LENGTH if server_max_value_length is None
                                        else server_max_value_length)
        self.min_compress_len = min_compress_len
        self.raise_errors = raise_errors
        if serializer is None and (pickler is not pickle.Pickler or pid is not None):
            serializer = self._custom_pickle
        if deserializer is None and (unpickler is not pickle.Unpickler or pload is not None):
            deserializer = self._custom_unpickle
        self.serializer, self.deserializer = serializer, deserializer
        if get_wait_callback() is None and _gevent_patched():
            make_green()

    # python-memcached's pickler/unpickler/pid/pload hooks, as a serializer pair
    def _custom_pickle(self, key, value):
        f = io.BytesIO()
        p = self.pickler(f, protocol=self.pickleProtocol)
        if self.persistent_id:
            p.persistent_id = self.persistent_id
        p.dump(value)
        return f.getvalue(), self._FLAG_PICKLE

    def _custom_unpickle(self, key, data, flags):
        if not flags & self._FLAG_PICKLE:
            raise ValueError("Unknown flags on get: %x" % flags)
        try:
            u = self.unpickler(io.BytesIO(data))
            if self.persistent_load:
                u.persistent_load = self.persistent_load
            return u.load()
        except Exception as e:
            self.debuglog("Pickle error: %s\n" % e)
            return None

    @classmethod
    def shared(cls, servers, **options):
        """The process's one Client for these servers and options: the first call makes it, every later
        call (any thread or greenlet) gets the same object, so a framework that builds a client per
        thread or per request (Django does) still shares one pool of connections per server. Survives
        fork(): a child opens its own connections on first use."""
        key = (cls, _frozen(servers), _frozen(options))
        c = _shared.get(key)
        if c is None:
            with _shared_lock:   # held only to create the object: Client() opens no connection
                c = _shared.get(key)
                if c is None:
                    c = _shared[key] = cls(servers, **options)
        return c

    def set_servers(self, servers):
        """Servers: 'host:port', 'unix:/path', 'inet6:[::1]:port', or ('host:port', weight);
        a single string is taken as libmemkit's list ('h1:p1,h2:p2:weight')."""
        if isinstance(servers, str):
            self.servers = []
            spec, buckets = servers, None
        else:
            self.servers = [_Server(s) for s in servers]
            spec = ",".join(s.spec() for s in self.servers)
            buckets = [i for i, s in enumerate(self.servers) for _ in range(s.weight)]
        self._configure(spec, buckets=buckets, **self._config)

    def debuglog(self, str):
        if self.debug:
            sys.stderr.write("MemCached: %s\n" % str)

    def counters(self):
        """{server: {errors, timeouts, ejections, rejoins, probes, retries, pool_waits, pool_timeouts,
        noreply_failed, alive}} since the Client was made (noreply_failed: noreply writes a meta server
        did not carry out): what failed, how often a server was marked dead and came back
        (probes run in the background while it is dead), how often calls waited for the pool."""
        return dict(zip(self._server_strs(), self._counters()))

    def _server_strs(self):
        if self.servers:
            return [str(s) for s in self.servers]
        return list(self.server_names)

    def _failed(self, what, key, server, reason, dead):
        """Called by the C code for every call that failed on the network."""
        names = self._server_strs()
        name = names[server] if 0 <= server < len(names) else "?"
        if dead:
            self.debuglog("MemCache: %s: %s.  Marking dead." % (name, reason))
        _log.log(logging.WARNING if dead else logging.DEBUG, "%s%s on %s failed: %s%s", what,
                 "" if key is None else " %r" % (key,), name, reason,
                 "; server marked dead (probed in the background, calls fail over meanwhile)" if dead else "")

    # cas ids: python-memcached's Client is a threading.local, so each thread has its own; a shared memkit
    # Client keeps one dict per thread and per greenlet, or thread A's cas() would use the unique thread B
    # fetched and overwrite B's write (a lost update). Entries go with their thread or greenlet.
    @property
    def cas_ids(self):
        """key bytes -> cas id remembered by gets() (cache_cas), for the calling thread or greenlet."""
        me = _current()
        d = self._cas_ids.get(me)
        if d is None:
            d = self._cas_ids[me] = {}
        return d

    @cas_ids.setter
    def cas_ids(self, d):
        self._cas_ids[_current()] = d

    def reset_cas(self):
        """Forget the calling thread's (greenlet's) cas ids."""
        self.cas_ids = {}

    META_WIN, META_STALE, META_TOKEN = 1, 2, 4   # _meta_get's state bits (libmemkit's MK_META_*)

    def get_or_set(self, key, compute, time=0, lock_time=10, wait_time=None):
        """The value of key; when it is missing (or stale, see invalidate()), exactly one caller
        across every process and host runs compute() and stores what it returns for `time`
        seconds, while the others get the stale value at once or, for a missing one, wait for
        the winner (polling, up to wait_time seconds: lock_time by default) and then compute
        for themselves without storing. lock_time bounds how long a crashed winner blocks the
        others: its claim expires then. Needs the meta protocol (memkitd, memcached >= 1.6);
        against another server (twemproxy) it is a plain get, compute and set.
        Cooperative under gevent: the waits are time.sleep().
        """
        if not callable(compute):
            raise TypeError("get_or_set: compute must be callable")
        lock_time = max(1, int(lock_time))
        deadline = _time.monotonic() + (lock_time if wait_time is None else wait_time)
        delay = 0.002
        while True:
            r = self._meta_get(key, vivify=lock_time)
            if r is None:   # no meta protocol: no herd protection
                value = self.get(key)
                if value is None:
                    value = compute()
                    self.set(key, value, time)
                return value
            found, value, state, placeholder = r
            if state & self.META_WIN:
                # ours to recompute: a placeholder (a miss) or a stale value
                try:
                    value = compute()
                except BaseException:
                    # give the claim back so that the next reader recomputes
                    if placeholder:
                        self._delete(key)
                    else:
                        self.invalidate(key)
                    raise
                self.set(key, value, time)
                return value
            if found and not placeholder:
                return value   # fresh, or stale while its winner recomputes
            if not found:
                # a failure the client swallowed (raise_errors off), or no placeholder could be made
                return compute()
            if _time.monotonic() >= deadline:
                return compute()   # the winner is slow: do not wait longer, and leave the storing to it
            _time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def get_stats(self, stat_args=None):
        """[(server name, {stat: value})] for every reachable server, as python-memcached."""
        names = self._server_labels()
        return [(names[i], d) for i, d in self._stats(stat_args)]

    def get_slab_stats(self):
        data = []
        for name, stats in self._grouped("slabs"):
            d = {}
            for k, v in stats.items():
                if k in ("active_slabs", "total_malloced"):
                    d[k] = v
                else:
                    slab, _, field = k.partition(":")
                    d.setdefault(slab, {})[field] = v
            data.append((name, d))
        return data

    def get_slabs(self):
        data = []
        for name, stats in self._grouped("items"):
            d = {}
            for k, v in stats.items():
                parts = k.split(":", 2)
                if len(parts) == 3:
                    d.setdefault(parts[1], {})[parts[2]] = v
            data.append((name, d))
        return data

    def _grouped(self, group):
        names = self._server_labels()
        return [(names[i], d) for i, d in self._stats(group)]

    def _server_labels(self):
        if self.servers:
            return [s.stats_name() for s in self.servers]
        return ["%s (1)" % n for n in self.server_names]

    def __repr__(self):
        return "<memkit.Client %s>" % ",".join(self.server_names)


def _path(p):
    """A file name given as str, bytes or os.PathLike (None stays None)."""
    return None if p is None else os.fsdecode(p)


def _positive(name, v):
    v = float(v)
    if not v > 0:
        raise ValueError("%s must be a positive number of seconds" % name)
    return v


_shared = {}
_shared_lock = threading.Lock()


def _frozen(v):
    """A hashable stand-in for an option value (lists, dicts and sets by content, the rest as is)."""
    if isinstance(v, dict):
        return ("dict",) + tuple(sorted(((repr(k), _frozen(x)) for k, x in v.items()), key=lambda kv: kv[0]))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__,) + tuple(_frozen(x) for x in v)
    if isinstance(v, (set, frozenset)):
        return ("set",) + tuple(sorted(repr(x) for x in v))
    try:
        hash(v)
    except TypeError:
        return ("repr", repr(v))
    return v


def _gevent_patched():
    m = sys.modules.get("gevent.monkey")
    try:
        return m is not None and m.is_module_patched("socket")
    except Exception:
        return False


class _WaitTimeout(Exception):
    pass


_WAIT_TIMEOUT = _WaitTimeout()


def _make_gevent_wait():
    import gevent
    from gevent.socket import wait_read, wait_write

    def wait(fd, write, timeout):
        if fd < 0:   # the server's pool is full (used from other threads too): sleep cooperatively
            gevent.sleep(timeout)
            return
        try:
            (wait_write if write else wait_read)(fd, timeout=timeout, timeout_exc=_WAIT_TIMEOUT)
        except _WaitTimeout:
            pass     # the next step sees its deadline and fails with a timeout
    return wait


def make_green():
    """Cooperative mode for gevent: every network wait of every Client yields to the hub
    (wait_read/wait_write on the socket), and greenlets queue for a server's connections on
    a gevent semaphore of pool_size. Called automatically when gevent patched socket: at import, at
    Client(), and by the first call made after monkey.patch_all() (a Client made before patching)."""
    _memkit._auto_green(True)
    import gevent.lock
    set_wait_callback(_make_gevent_wait(), gevent.lock.BoundedSemaphore)
    from . import _loops
    _loops.install(green=True)


def make_blocking():
    """Back to the default: network waits block the calling thread with the GIL released. Also stops
    calls from turning cooperative mode on by themselves when they find gevent's patches."""
    _memkit._auto_green(False)
    set_wait_callback(None)
    if "memkit._loops" in sys.modules:
        sys.modules["memkit._loops"]._green[0] = False


if _gevent_patched():
    make_green()
