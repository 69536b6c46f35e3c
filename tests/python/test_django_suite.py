"""Django's own cache test suite (its tests/cache/tests.py memcached test cases, for the installed Django) run
against memkit.django.MemkitCache and against Django's PyMemcacheCache: the same outcome for every test.
`make test` fetches the suite from Debian's source package (scripts/django-tests.sh)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import PYPATH, REPO

django = pytest.importorskip("django")

# Tests that exist only in PyMemcacheCacheTests: they inspect pymemcache's own objects.
PYMEMCACHE_ONLY = {"test_pymemcache_highest_pickle_version", "test_pymemcache_options"}


def django_tests_dir():
    out = subprocess.run([os.path.join(REPO, "scripts", "django-tests.sh"), os.path.join(REPO, "build", "django-src")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, "cannot get Django's test suite: " + out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_django_cache_suite_same_as_pymemcache(fresh_server):
    tests = django_tests_dir()
    pm, mk = fresh_server("memcached"), fresh_server("memkitd")
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "django_suite.py"), tests, PYPATH,
                          pm.addr, mk.addr], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    theirs, ours = r["pymemcache"], r["memkit"]
    assert len(ours) >= 50, ours                              # the suite did run
    assert set(theirs) - set(ours) == PYMEMCACHE_ONLY
    different = {t: (theirs.get(t), ours[t]) for t in ours if theirs.get(t) != ours[t]}
    assert different == {}, (different, {t: r["details"].get("MemkitCacheTests." + t) for t in different})
    assert sum(v == "ok" for v in ours.values()) >= 50
