"""Run by test_gevent.py in its own interpreter: N greenlets doing gets through memkit under gevent.

    green_check.py BUILD_PYTHON ADDR POOL_SIZE GREENLETS MODE   (MODE: patch | make_green | timeout)
Prints one JSON line with the timings and counters.
"""
import json
import sys
import time

mode = sys.argv[5]
if mode in ("patch", "timeout"):
    from gevent import monkey
    monkey.patch_all()
import gevent  # noqa: E402

sys.path.insert(0, sys.argv[1])
import memkit  # noqa: E402

addr, pool, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "make_green":
    memkit.make_green()
mc = memkit.Client([addr], pool_size=pool, socket_timeout=30)
out = {"green": memkit.get_wait_callback() is not None}
running = True
ticks = 0


def ticker():
    global ticks
    while running:
        ticks += 1
        gevent.sleep(0.01)


tk = gevent.spawn(ticker)
if mode == "timeout":
    t0 = time.time()
    with gevent.Timeout(0.05, False):
        mc.get("interrupted")
    out["interrupted_after"] = time.time() - t0
    out["after_timeout"] = mc.get("again")
t0 = time.time()
gs = [gevent.spawn(mc.get, "k%d" % i) for i in range(n)]
gevent.joinall(gs)
out["elapsed"] = time.time() - t0
out["ok"] = all(g.value == "k%d" % i for i, g in enumerate(gs))
t1 = time.time()
multi = gevent.spawn(mc.get_multi, ["m%d" % i for i in range(50)]).get()
out["multi_elapsed"] = time.time() - t1
out["multi_ok"] = multi == {"m%d" % i: "m%d" % i for i in range(50)}
running = False
tk.join()
out["ticks"] = ticks
print(json.dumps(out))
