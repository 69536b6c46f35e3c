#!/usr/bin/python3
"""bench/python_conns.py — connections a memcached server accepts from each Python client, the way web apps
reach it: Django's cache API from 200 short-lived threads, and a gevent pywsgi Django site serving 100
requests 20 at a time. memkit (memkit.django.MemkitCache) beside Django's PyMemcacheCache (pymemcache),
PyLibMCCache (pylibmc) and MemcachedCache (python-memcached). Run by hand after `make`:

    /usr/bin/python3 bench/python_conns.py
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "tests", "python")
sys.path.insert(0, TESTS)
from conftest import PYPATH, Server  # noqa: E402
from test_django import BACKENDS, django_threads_connections  # noqa: E402  (the same scenario as the test)

NAMES = ["memkit", "pymemcache", "pylibmc", "python-memcached"]


def accepted(s):
    return int(s.stats()["total_connections"])


def threads_case(name):
    import warnings
    warnings.simplefilter("ignore")   # MemcachedCache's deprecation
    s = Server("memkitd")
    try:
        return django_threads_connections(s, name)
    finally:
        s.stop()


def gevent_case(name):
    backend = BACKENDS[name][0]
    s = Server("memkitd")
    try:
        before = accepted(s)
        env = dict(os.environ, MK_CACHE_LOCATION=s.addr, MK_BUILD_PYTHON=PYPATH, MK_CACHE_BACKEND=backend)
        out = subprocess.run([sys.executable, os.path.join(TESTS, "djapp_gevent.py"), "100", "20"], env=env,
                             capture_output=True, text=True, timeout=300)
        ok = out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1])["ok"]
        return "%d%s" % (accepted(s) - before - 1, "" if ok else " (requests failed)")
    finally:
        s.stop()


def main():
    from django.conf import settings
    settings.configure(CACHES={}, USE_TZ=True)
    import django
    django.setup()
    print("| client (Django backend) | 200 short-lived threads | gevent pywsgi, 100 requests, 20 at a time |")
    print("|---|---:|---:|")
    for name in NAMES:
        print("| %s | %d | %s |" % (name, threads_case(name), gevent_case(name)), flush=True)


if __name__ == "__main__":
    main()
