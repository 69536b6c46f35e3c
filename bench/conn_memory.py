#!/usr/bin/python3
"""bench/conn_memory.py — memory a server holds for connections that send long request lines and never end them.

N connections each send an unterminated get line of SIZE bytes (the hostile case of issue 15); the
server's RSS growth is read from /proc once the sends stall. Runs memkitd (its default read-buffer
budget, or -o read_buf_mem_limit=MB) and Debian's memcached 1.6.18 side by side, alternating, and prints
the medians and the ratio.

    /usr/bin/python3 bench/conn_memory.py [--conns 300] [--size 1048576] [--runs 3]
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_run(binary, extra, conns, size):
    port = free_port()
    p = subprocess.Popen([binary, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-u", "root", "-c", str(conns + 50),
                          *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.01)
        time.sleep(0.2)
        base = rss_kb(p.pid)
        line = b"get " + b" ".join(b"k%07d" % i for i in range(size // 9))
        socks, sent_total = [], 0
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            socks.append(s)
            off, idle = 0, 0
            while off < len(line) and idle < 20:
                try:
                    n = s.send(line[off:off + 262144])
                    off += n
                    idle = 0
                except BlockingIOError:
                    idle += 1
                    time.sleep(0.005)
                except OSError:
                    break
            sent_total += off
        time.sleep(1.0)
        grown = rss_kb(p.pid) - base
        alive = 0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"version\r\n")
            alive = c.recv(100).startswith(b"VERSION")
        for s in socks:
            s.close()
        return grown, sent_total, alive
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=300)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memkitd", default=os.path.join(REPO, "build", "memkitd"))
    ap.add_argument("--memcached", default="/usr/bin/memcached")
    ap.add_argument("--memkitd-opts", default="", help='extra memkitd options, e.g. "-o read_buf_mem_limit=0"')
    a = ap.parse_args()
    res = {"memkitd": [], "memcached": []}
    for r in range(a.runs):
        for name, binary, extra in (("memkitd", a.memkitd, a.memkitd_opts.split()), ("memcached", a.memcached, [])):
            grown, sent, alive = one_run(binary, extra, a.conns, a.size)
            res[name].append(grown)
            print(f"run {r + 1} {name:9s} RSS +{grown / 1024:8.1f} MB  ({sent / 1048576:.0f} MB sent, "
                  f"{'serving' if alive else 'NOT serving'} other clients)", flush=True)
    mk, mc = statistics.median(res["memkitd"]), statistics.median(res["memcached"])
    print(f"median RSS growth, {a.conns} connections x {a.size} B unterminated get lines: "
          f"memkitd {mk / 1024:.1f} MB, memcached {mc / 1024:.1f} MB, ratio {mk / mc if mc else float('nan'):.2f}")


if __name__ == "__main__":
    sys.exit(main())
