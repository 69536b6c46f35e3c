#!/usr/bin/python3
"""bench/noreply_cost.py — what libmemkit's quiet noreply costs a server next to classic noreply; not part of CI.

libmemkit sends a noreply write to a meta server as "ms <key> <n> q" (no "mn"
until a later call wants a reply), where the classic protocol sends
"set <key> 0 0 <n> noreply". This sends N of each, one send() per request as a
client making noreply calls does, to memkitd and to Debian's memcached (each
with -t 1), and reports the server's CPU microseconds per request (utime+stime
from /proc/PID/stat). Runs alternate classic, quiet, classic, ...; medians.

    bench/noreply_cost.py                  # 5 runs of 100,000 per case, ~30 s
    bench/noreply_cost.py --runs 9 --n 200000
"""

import argparse
import os
import socket
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def server_cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def one_run(binary, quiet, n):
    port = free_port()
    p = subprocess.Popen([binary, "-u", "root", "-p", str(port), "-t", "1", "-U", "0", "-l", "127.0.0.1"])
    try:
        deadline = time.time() + 10
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c0 = server_cpu(p.pid)
        for i in range(n):
            if quiet:
                s.sendall(b"ms k%d 1 q\r\nx\r\n" % (i % 1000))
            else:
                s.sendall(b"set k%d 0 0 1 noreply\r\nx\r\n" % (i % 1000))
        s.sendall(b"mn\r\nversion\r\n" if quiet else b"version\r\n")
        buf = b""
        while b"VERSION" not in buf:
            buf += s.recv(65536)
        assert buf.startswith(b"MN\r\n" if quiet else b"VERSION"), buf[:80]  # nothing failed
        return (server_cpu(p.pid) - c0) * 1e6 / n
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memkitd", default=os.path.join(REPO, "build", "memkitd"))
    ap.add_argument("--memcached", default="/usr/bin/memcached")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=100000)
    a = ap.parse_args()
    print("server CPU us per noreply write (median of %d, %d writes each)" % (a.runs, a.n))
    for name, binary in (("memkitd", a.memkitd), ("memcached", a.memcached)):
        res = {False: [], True: []}
        for _ in range(a.runs):
            for quiet in (False, True):
                res[quiet].append(one_run(binary, quiet, a.n))
        c, q = statistics.median(res[False]), statistics.median(res[True])
        print("%-10s classic %.2f  quiet %.2f  quiet/classic %.2f" % (name, c, q, q / c))


if __name__ == "__main__":
    main()
