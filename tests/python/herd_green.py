"""Run by test_herd.py in its own interpreter: N greenlets call get_or_set on one missing key under gevent,
every Client option at its default. Prints one JSON line: computes, distinct results, seconds."""
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
from gevent import monkey  # noqa: E402

monkey.patch_all()
import gevent  # noqa: E402

import memkit  # noqa: E402

addr, n = sys.argv[2], int(sys.argv[3])
mc = memkit.Client([addr])
computes = []


def compute():
    computes.append(1)
    gevent.sleep(0.3)   # a slow page: every greenlet arrives while it is being computed
    return "page-%d" % len(computes)


t0 = time.time()
gs = [gevent.spawn(mc.get_or_set, "herd:green", compute, 60) for _ in range(n)]
gevent.joinall(gs, raise_error=True)
print(json.dumps({"computes": len(computes), "results": sorted({g.value for g in gs}),
                  "seconds": time.time() - t0}))
