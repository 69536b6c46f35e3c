"""Run by test_concurrency.py in its own interpreter: workers sharing one Client(cache_cas=True) increment
one counter with gets() + cas(); a cas that succeeds must have been based on the value its own worker read.

    cas_race.py BUILD_PYTHON ADDR MODE WORKERS ROUNDS   (MODE: threads | greenlets)
Prints one JSON line: successful cas calls, the counter's final value, cas calls that failed.
"""
import json
import random
import sys

mode = sys.argv[3]
if mode == "greenlets":
    from gevent import monkey
    monkey.patch_all()
import time  # noqa: E402

sys.path.insert(0, sys.argv[1])
import memkit  # noqa: E402

addr, workers, rounds = sys.argv[2], int(sys.argv[4]), int(sys.argv[5])
mc = memkit.Client([addr], cache_cas=True)
assert mc.set("ctr", 0) is True
done = {"ok": 0, "lost": 0}


def worker(seed):
    rnd = random.Random(seed)
    for _ in range(rounds):
        v = mc.gets("ctr")
        time.sleep(rnd.random() * 0.002)   # let the others read and write in between
        if mc.cas("ctr", v + 1) is True:
            done["ok"] += 1
        else:
            done["lost"] += 1


if mode == "greenlets":
    import gevent
    gevent.joinall([gevent.spawn(worker, i) for i in range(workers)])
else:
    import threading
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
print(json.dumps({"ok": done["ok"], "final": mc.get("ctr"), "failed": done["lost"]}))
