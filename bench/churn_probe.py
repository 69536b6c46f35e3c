#!/usr/bin/python3
"""bench/churn_probe.py — memkitd alone under bench/memory.py's mixed-size churn, sampling `stats` every 10 s:
items, live bytes, bytes in used segments and their ratio (how much of the arena dead bytes hold), large-log
and probation segments, evictions, segments freed by compaction or found empty; then hits and misses.
Used to choose the compaction threshold (docs/storage.md). Run by hand after `make`:

    /usr/bin/python3 bench/churn_probe.py [SECONDS [LARGEST_VALUE]]      (default 90 s, 500000 bytes)
    MEMKITD=/path/to/memkitd /usr/bin/python3 bench/churn_probe.py      (another build)
"""
import importlib.util
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("memory_bench", os.path.join(HERE, "memory.py"))
mb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mb)


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 90
    largest = int(sys.argv[2]) if len(sys.argv) > 2 else 500000
    srv = mb.Server("memkit", mb.MEMKITD, 64).start()
    stop = threading.Event()

    def watch():
        conn = srv.connect()
        while not stop.wait(10):
            st = conn.stats()
            seg = int(st["segments_used"]) * int(st["segment_size"])
            print("items %s  live %.1f MB  in used segments %.1f MB  live/used %.2f  large %s  probation %s  "
                  "evictions %s  freed compacted %s  freed empty %s" %
                  (st["curr_items"], int(st["bytes"]) / 1e6, seg / 1e6, int(st["bytes"]) / seg,
                   st["segments_large"], st["segments_probation"], st["evictions"],
                   st["segments_freed_compacted"], st["segments_freed_empty"]), flush=True)
    threading.Thread(target=watch, daemon=True).start()
    totals, _, nkeys = mb.churn([srv], seconds, 2, largest, 10, 64)
    stop.set()
    hits, misses, nops, errors = totals["memkit"]
    print("%d ops over %d keys: %d hits, %d misses (%.2f%%), errors %d" %
          (nops, nkeys, hits, misses, 100 * hits / max(1, hits + misses), errors))
    srv.stop()


if __name__ == "__main__":
    main()
