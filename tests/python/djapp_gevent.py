"""Run by test_django.py in its own interpreter: djapp (a Django site on MemkitCache) served by gevent's
pywsgi, N requests, C at a time, from greenlets of the same process. Prints one JSON line.

    djapp_gevent.py N C     (djapp reads MK_CACHE_LOCATION and MK_BUILD_PYTHON)
"""
from gevent import monkey

monkey.patch_all()
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import urllib.request  # noqa: E402

import gevent.pool  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import djapp  # noqa: E402

n, c = int(sys.argv[1]), int(sys.argv[2])
server = WSGIServer(("127.0.0.1", 0), djapp.application, log=None)
server.start()


def fetch(i):
    with urllib.request.urlopen("http://127.0.0.1:%d/page?n=%d" % (server.server_port, i), timeout=30) as r:
        return json.load(r)


res = gevent.pool.Pool(c).map(fetch, range(n))
server.stop()
print(json.dumps({"n": len(res), "ok": all(r["ok"] and r["shared"] for r in res)}))
