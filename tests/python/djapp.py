"""A minimal Django site for the process-model tests (gevent pywsgi, gunicorn --preload): one view that
writes and reads back a per-request key through django.core.cache, as a page cache would.

Configured from the environment: MK_CACHE_LOCATION (memkitd's address), MK_CACHE_BACKEND (default
memkit.django.MemkitCache), MK_BUILD_PYTHON (where memkit is built). Importing it warms the cache once, so a
preloading master (gunicorn --preload) holds pooled connections before it forks.
"""
import os
import sys

sys.path.insert(0, os.environ.get("MK_BUILD_PYTHON", ""))

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        SECRET_KEY="memkit-djapp", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, MIDDLEWARE=[], USE_TZ=False,
        CACHES={"default": {"BACKEND": os.environ.get("MK_CACHE_BACKEND", "memkit.django.MemkitCache"),
                            "LOCATION": os.environ["MK_CACHE_LOCATION"]}},
    )
import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def page(request):
    n = request.GET.get("n", "0")
    key = "page:%d:%s" % (os.getpid(), n)
    value = {"pid": os.getpid(), "n": n, "body": "x" * 200}
    cache.set(key, value, 60)
    back = cache.get(key)
    return JsonResponse({"pid": os.getpid(), "ok": back == value, "shared": cache.get("warm") == "yes"})


urlpatterns = [path("page", page)]
cache.set("warm", "yes")          # the importing process (a preloading master) now holds pooled connections
application = WSGIHandler()
