"""memkit.django — MemkitCache, a Django CACHES backend over memkit.Client.

    CACHES = {"default": {"BACKEND": "memkit.django.MemkitCache",
                          "LOCATION": ["127.0.0.1:11211"],          # or "h1:p1;h2:p2"
                          "OPTIONS": {"pool_size": 8}}}             # memkit.Client keyword arguments
"""
import pickle

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.utils.functional import cached_property

import memkit


class _NeverRaised(Exception):
    """BaseMemcachedCache turns the library's "not found" exception into "Key not found"; memkit's incr/decr
    return None for a miss, and a non-numeric value must not be reported as missing."""


class MemkitCache(BaseMemcachedCache):
    """Django's memcached backend contract (timeouts: None forever, 0 do not cache; key validation;
    versioning) on one pooled memkit.Client per process for each (LOCATION, OPTIONS): Django builds a
    backend object per thread (and per greenlet under gevent), and they all share its connections."""

    def __init__(self, server, params):
        super().__init__(server, params, library=memkit, value_not_found_exception=_NeverRaised)
        self._options = {"pickleProtocol": pickle.HIGHEST_PROTOCOL, **self._options}

    @cached_property
    def _cache(self):
        return self._class.shared(self.client_servers, **self._options)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return bool(self._cache.add(key, value, self.get_backend_timeout(timeout)))

    def get_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        """Django's get_or_set, with herd protection when default is callable: when the key is
        missing (or was invalidated, see invalidate()), exactly one caller, in any process,
        computes it; the others wait for its value (or keep the stale one) instead of all
        recomputing at once. memkit.Client.get_or_set does the work."""
        if not callable(default) or timeout == 0:
            return super().get_or_set(key, default, timeout=timeout, version=version)
        key = self.make_key(key, version=version)
        self.validate_key(key)
        # (a computed None is stored, as Django's own get_or_set stores it)
        return self._cache.get_or_set(key, default, self.get_backend_timeout(timeout))

    def invalidate(self, key, timeout=None, version=None):
        """Mark key's value stale instead of deleting it: readers keep getting it while the first
        get_or_set() caller recomputes it (timeout: serve the stale value at most this long)."""
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return self._cache.invalidate(key, int(timeout or 0))

    def delete(self, key, version=None):
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return self._cache._delete(key)   # whether the key existed (python-memcached's delete says 1 either way)

    def close(self, **kwargs):
        # Django calls close() after every request; the pool is shared by every thread of the process,
        # so connections are kept (as Django's pylibmc backend does).
        pass


def _async_method(name):
    sync_name = name[1:]

    async def method(self, *args, **kwargs):
        from memkit.aio import call
        # the sync method's memkit calls run on this event loop's pipelined connections, never blocking it
        return await call(getattr(self, sync_name), *args, **kwargs)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = "Django's async cache API (4.0+): %s without blocking the event loop (memkit.aio)." % sync_name
    return method


# Django 4.0's async cache API (Debian 12's Django 3.2 has none: these are memkit's own, with Django's names).
# Not aget_or_set: get_or_set's herd waits are time.sleep (newer Django builds it from aget and aadd).
for _name in ("aadd", "aget", "aset", "atouch", "adelete", "aget_many", "ahas_key", "aincr",
              "adecr", "aset_many", "adelete_many", "aclear", "aincr_version", "adecr_version"):
    setattr(MemkitCache, _name, _async_method(_name))
del _name
