"""Run by test_gevent.py in its own interpreter: N greenlets doing gets through memkit under gevent.

    green_check.py BUILD_PYTHON ADDR POOL_SIZE GREENLETS MODE
MODE: patch | make_green | timeout (pool POOL_SIZE, socket_timeout 30 s), defaults (every Client option at
its default; POOL_SIZE unused), early (the same, the Client made before monkey.patch_all(), as a module-level
client imported early is). Prints one JSON line with the timings and counters.
"""
import json
import sys
import time

mode = sys.argv[5]
sys.path.insert(0, sys.argv[1])
addr, pool, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "early":
    import memkit
    mc = memkit.Client([addr])
    green_before_patch = memkit.get_wait_callback() is not None
if mode in ("patch", "timeout", "defaults", "early"):
    from gevent import monkey
    monkey.patch_all()
import gevent  # noqa: E402

import memkit  # noqa: E402,F811

if mode == "make_green":
    memkit.make_green()
if mode == "defaults":
    mc = memkit.Client([addr])
elif mode != "early":
    mc = memkit.Client([addr], pool_size=pool, socket_timeout=30)
out = {"green": memkit.get_wait_callback() is not None}
if mode == "early":
    out["green_before_first_call"] = green_before_patch or out["green"]
running = True
ticks = 0
max_gap = 0.0


def ticker():
    global ticks, max_gap
    last = time.monotonic()
    while running:
        ticks += 1
        gevent.sleep(0.01)
        now = time.monotonic()
        max_gap = max(max_gap, now - last - 0.01)   # how long the hub was kept from running us
        last = now


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
out["errors"] = sum(g.value != "k%d" % i for i, g in enumerate(gs))
out["green_after"] = memkit.get_wait_callback() is not None
t1 = time.time()
multi = gevent.spawn(mc.get_multi, ["m%d" % i for i in range(50)]).get()
out["multi_elapsed"] = time.time() - t1
out["multi_ok"] = multi == {"m%d" % i: "m%d" % i for i in range(50)}
running = False
tk.join()
out["ticks"] = ticks
out["max_hub_block"] = max_gap
print(json.dumps(out))
