"""Run by test_django_suite.py in its own interpreter: Django's own cache test suite (tests/cache/tests.py of
the installed Django's source) for its memcached backends, against Django's PyMemcacheCache and against
memkit.django.MemkitCache, each on its own server.

    django_suite.py DJANGO_TESTS_DIR BUILD_PYTHON PYMEMCACHE_ADDR MEMKIT_ADDR
Prints one JSON line: {"pymemcache": {test: outcome}, "memkit": {test: outcome}, "details": {test: text}}.
"""
import json
import sys
import unittest

tests_dir, build_py, pm_addr, mk_addr = sys.argv[1:5]
sys.path.insert(0, build_py)
sys.path.insert(0, tests_dir)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    SECRET_KEY="memkit-django-suite",
    USE_TZ=False,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                    "django.contrib.messages", "cache"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    # Django's module reads the configured memcached backends from here when it is imported
    CACHES={"default": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": pm_addr}},
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
    MIDDLEWARE=[],
)
django.setup()

import memkit  # noqa: E402
from cache import tests as T  # noqa: E402  (Django's tests/cache/tests.py)
from django.test import TestCase, override_settings  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402

MemkitCache_params = {"BACKEND": "memkit.django.MemkitCache", "LOCATION": mk_addr}


@override_settings(CACHES=T.caches_setting_for_tests(base=MemkitCache_params, exclude=T.memcached_excluded_caches))
class MemkitCacheTests(T.BaseMemcachedTests, TestCase):
    base_params = MemkitCache_params
    # one pooled client per process: close() keeps the connections (as PyLibMCCache's tests say for pylibmc)
    should_disconnect_on_close = False
    incr_decr_type_error = memkit.NotNumericError


class Recording(unittest.TextTestResult):
    outcomes, details = {}, {}

    def _put(self, test, outcome, err=None):
        name = "%s.%s" % (type(test).__name__, test._testMethodName)
        if getattr(test, "_subtest", None) is not None or outcome != "ok" or name not in self.outcomes:
            prev = self.outcomes.get(name)
            if prev in (None, "ok"):
                self.outcomes[name] = outcome
        if err is not None:
            self.details[name] = self._exc_info_to_string(err, test)[-1500:]

    def addSuccess(self, test):
        super().addSuccess(test)
        self._put(test, "ok")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._put(test, "fail", err)

    def addError(self, test, err):
        super().addError(test, err)
        self._put(test, "error", err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._put(test, "skip")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._put(test, "fail", err)


runner = DiscoverRunner(verbosity=0, interactive=False)
runner.setup_test_environment()
old = runner.setup_databases()
loader = unittest.TestLoader()
suite = unittest.TestSuite()
suite.addTests(loader.loadTestsFromTestCase(T.PyMemcacheCacheTests))
suite.addTests(loader.loadTestsFromTestCase(MemkitCacheTests))
unittest.TextTestRunner(verbosity=0, resultclass=Recording, stream=sys.stderr).run(suite)
runner.teardown_databases(old)
runner.teardown_test_environment()
out = {"pymemcache": {}, "memkit": {}, "details": Recording.details}
for name, outcome in Recording.outcomes.items():
    cls, meth = name.split(".", 1)
    out["memkit" if cls == "MemkitCacheTests" else "pymemcache"][meth] = outcome
print(json.dumps(out))
