"""memkit.django — MemkitCache, a Django CACHES backend over memkit.Client.

    CACHES = {"default": {"BACKEND": "memkit.django.MemkitCache",
                          "LOCATION": ["127.0.0.1:11211"],          # or "h1:p1;h2:p2"
                          "OPTIONS": {"pool_size": 8}}}             # memkit.Client keyword arguments
"""
import pickle

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.memcached import BaseMemcachedCache

import memkit


class MemkitCache(BaseMemcachedCache):
    """Django's memcached backend contract (timeouts: None forever, 0 do not cache; key
    validation; versioning) on one thread-safe, pooled memkit.Client per cache alias."""

    def __init__(self, server, params):
        super().__init__(server, params, library=memkit, value_not_found_exception=ValueError)
        self._options = {"pickleProtocol": pickle.HIGHEST_PROTOCOL, **self._options}

    def get(self, key, default=None, version=None):
        key = self.make_key(key, version=version)
        self.validate_key(key)
        val = self._cache.get(key)
        return default if val is None else val

    def delete(self, key, version=None):
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return self._cache._delete(key)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_key(key, version=version)
        self.validate_key(key)
        return bool(self._cache.touch(key, self.get_backend_timeout(timeout)))

    def close(self, **kwargs):
        # Django calls close() after every request; the pool is shared by every thread,
        # so connections are kept (as Django's pylibmc backend does).
        pass
