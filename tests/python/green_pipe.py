"""Run by test_aio.py in its own interpreter: N greenlets through one memkit.Client(pipeline=True) under gevent.

    green_pipe.py BUILD_PYTHON ADDR GREENLETS MODE
MODE: mixed (sets, gets, incr, multi-gets, noreply sets) | kill_fork (greenlets killed mid-request, then
a fork with requests in flight). Prints one JSON line.
"""
import json
import os
import sys

sys.path.insert(0, sys.argv[1])
from gevent import monkey  # noqa: E402
monkey.patch_all()
import gevent  # noqa: E402

import memkit  # noqa: E402

addr, n, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
mc = memkit.Client([addr], pipeline=True, pipeline_depth=2048)   # (noreply calls do not wait: 2 per greenlet)
out = {"wrong": 0, "done": 0}


def worker(i):
    for j in range(5):
        key = "gp:%d" % i
        out["wrong"] += mc.set(key, "%d-%d" % (i, j)) is not True
        out["wrong"] += mc.get(key) != "%d-%d" % (i, j)
        out["wrong"] += mc.get_multi([key, "gp:none"]) != {key: "%d-%d" % (i, j)}
        mc.set("gp:q%d" % i, j, noreply=True)
        out["wrong"] += mc.incr("gp:ctr") is None
        out["done"] += 4


if mode == "mixed":
    mc.set("gp:ctr", 0)
    gevent.joinall([gevent.spawn(worker, i) for i in range(n)])
    out["wrong"] += mc.get("gp:ctr") != n * 5
    out["wrong"] += mc.get("gp:q7") != 4
else:
    mc.set("gp:v", "V")
    gs = [gevent.spawn(mc.get, "gp:v") for i in range(n)]
    gevent.sleep(0)                     # all queued and written
    gevent.killall(gs[::2])             # half of them leave while their requests are on the wire
    gevent.joinall(gs[1::2])
    out["wrong"] += sum(g.value != "V" for g in gs[1::2])
    out["after_kill_ok"] = all(mc.get("gp:v") == "V" for _ in range(20))
    mc.set("gp:w", "W")
    gs = [gevent.spawn(mc.get, "gp:w") for i in range(n)]
    gevent.sleep(0)                     # queued: the flush runs at the end of this iteration
    pid = os.fork()
    if pid == 0:                        # the child: its copies of the greenlets finish on its own connection
        gevent.joinall(gs)
        ok = all(g.value == "W" for g in gs) and mc.get("gp:v") == "V"
        os._exit(0 if ok else 3)
    gevent.joinall(gs)
    out["parent_ok"] = all(g.value == "W" for g in gs) and mc.get("gp:v") == "V"
    _, status = os.waitpid(pid, 0)
    out["child_ok"] = os.WEXITSTATUS(status) == 0
print(json.dumps(out))
