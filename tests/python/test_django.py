"""memkit.django.MemkitCache through Django's cache API."""
import pytest

django = pytest.importorskip("django")


@pytest.fixture
def cache(srv):
    from django.conf import settings
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache.backends.base import BaseCache
    from memkit.django import MemkitCache
    c = MemkitCache(srv.addr, {"TIMEOUT": 300, "KEY_PREFIX": "app", "VERSION": 1})
    assert isinstance(c, BaseCache)
    c.clear()
    yield c
    c.close()


def test_basic_api(cache):
    assert cache.get("k") is None and cache.get("k", "dflt") == "dflt"
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert cache.has_key("k") and not cache.has_key("nope")
    assert cache.add("k", 2) is False and cache.add("k2", 2) is True
    assert cache.delete("k") is True and cache.delete("k") is False
    cache.set_many({"a": 1, "b": "two", "c": [3]})
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": "two", "c": [3]}
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": [3]}
    cache.set("n", 10)
    assert cache.incr("n") == 11 and cache.incr("n", 5) == 16 and cache.decr("n", 6) == 10
    assert cache.incr("n", -1) == 9
    with pytest.raises(ValueError):
        cache.incr("missing")
    assert cache.get_or_set("gs", "made") == "made" and cache.get("gs") == "made"
    cache.clear()
    assert cache.get("c") is None


def test_timeouts(cache):
    cache.set("zero", 1, timeout=0)                    # 0: do not cache
    assert cache.get("zero") is None
    cache.set("forever", 1, timeout=None)              # None: forever
    assert cache.get("forever") == 1
    cache.set("t", 1, timeout=100)
    assert cache.touch("t", 0) is True and cache.get("t") is None
    assert cache.touch("missing", 10) is False
    cache.set("t2", 1)
    assert cache.touch("t2", None) is True and cache.get("t2") == 1
    import time
    cache.set("short", 1, timeout=1)
    time.sleep(2.1)
    assert cache.get("short") is None
    cache.set("long", 1, timeout=60 * 60 * 24 * 40)    # > 30 days: absolute time
    assert cache.get("long") == 1


def test_versions_and_keys(cache, srv):
    from django.core.cache.backends.base import InvalidCacheKey
    cache.set("v", "one", version=1)
    cache.set("v", "two", version=2)
    assert cache.get("v", version=1) == "one" and cache.get("v", version=2) == "two"
    assert cache.incr_version("v", version=2) == 3 and cache.get("v", version=3) == "two"
    assert cache.get("v", version=2) is None
    with pytest.raises(InvalidCacheKey):
        cache.set("bad key", 1)
    with pytest.raises(InvalidCacheKey):
        cache.get("x" * 300)
    assert b"app:1:v" in srv.raw(b"get app:1:v\r\n")


def test_through_caches_setting(srv):
    from django.conf import settings
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache import CacheHandler
    handler = CacheHandler({"default": {"BACKEND": "memkit.django.MemkitCache", "LOCATION": srv.addr,
                                        "OPTIONS": {"pool_size": 4}}})
    c = handler["default"]
    c.set("through", "settings")
    assert c.get("through") == "settings"
    assert c._cache.pool_size == 4
