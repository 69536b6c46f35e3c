#!/usr/bin/python3
"""bench/tls_client.py — what TLS costs: requests per second of the memkit Python client over one pooled
connection, the time to open a new connection, and pipelined gets (batches of 100 written at once on a raw
socket) with the server's CPU per get, plain vs TLS, against memkitd and Debian's memcached (each started
twice: plain, and with -Z; -t 1). Runs alternate (plain, TLS, plain, TLS ...); medians printed with ratios.

    /usr/bin/python3 bench/tls_client.py [--requests 20000] [--connects 200] [--pipelined 200000] [--rounds 3]
"""
import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "build", "python"))
import memkit  # noqa: E402

SERVERS = {"memkitd": os.path.join(REPO, "build", "memkitd"), "memcached": "/usr/bin/memcached"}


def certs(d):
    def ssl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=bench ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=srv")
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "srv.crt", "-days", "2", "-extfile", "srv.ext")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, extra):
    port = free_port()
    p = subprocess.Popen([binary, "-u", "root", "-l", "127.0.0.1", "-U", "0", "-t", "1", "-p", str(port), *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, port
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("%s did not start" % binary)


def run_requests(addr, n, tls):
    mc = memkit.Client([addr], raise_errors=True, **tls)
    mc.set("bench:k", b"x" * 100)
    t = time.perf_counter()
    for _ in range(n):
        mc.get("bench:k")
    return n / (time.perf_counter() - t)


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run_pipelined(proc, port, n, tls, batch=100):
    """(gets/s, server CPU us per get) for n gets of a 100-byte value, written batch at a time."""
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        ctx = ssl.create_default_context(cafile=tls["tls_ca_file"])
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    with s:
        s.sendall(b"set bench:k 0 0 100\r\n" + b"x" * 100 + b"\r\n")
        s.recv(100)
        want = (len(b"VALUE bench:k 0 100\r\n") + 102 + 5) * batch
        c0, t0 = cpu_s(proc.pid), time.perf_counter()
        for _ in range(n // batch):
            s.sendall(b"get bench:k\r\n" * batch)
            got = 0
            while got < want:
                got += len(s.recv(1 << 20))
        return n / (time.perf_counter() - t0), (cpu_s(proc.pid) - c0) / n * 1e6


def run_connects(addr, n, tls):
    t = time.perf_counter()
    for _ in range(n):
        memkit.Client([addr], raise_errors=True, **tls).get("bench:k")
    return (time.perf_counter() - t) / n * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--connects", type=int, default=200)
    ap.add_argument("--pipelined", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="memkit-tlsbench-")
    certs(d)
    ztls = ["-Z", "-o", "ssl_chain_cert=%s/srv.crt,ssl_key=%s/srv.key" % (d, d)]
    ctls = {"tls": True, "tls_ca_file": os.path.join(d, "ca.crt")}
    procs, res = [], {}
    try:
        ports, proc = {}, {}
        for name, binary in SERVERS.items():
            for mode, extra in (("plain", []), ("tls", ztls)):
                p, port = start(binary, extra)
                procs.append(p)
                proc[name, mode] = (p, port)
                ports[name, mode] = "127.0.0.1:%d" % port
        for _ in range(a.rounds):
            for name in SERVERS:
                for mode in ("plain", "tls"):
                    tls = ctls if mode == "tls" else {}
                    res.setdefault((name, mode, "rps"), []).append(run_requests(ports[name, mode], a.requests, tls))
                    res.setdefault((name, mode, "conn"), []).append(run_connects(ports[name, mode], a.connects, tls))
                    rate, cpu = run_pipelined(*proc[name, mode], a.pipelined, tls)
                    res.setdefault((name, mode, "pipe"), []).append(rate)
                    res.setdefault((name, mode, "cpu"), []).append(cpu)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    med = {k: statistics.median(v) for k, v in res.items()}
    print("medians of %d alternating rounds; memkit Python client, one thread, 100-byte gets" % a.rounds)
    print("%-10s %14s %14s %8s %16s %16s %8s" % ("server", "plain get/s", "TLS get/s", "TLS/pl",
                                                 "plain conn ms", "TLS conn ms", "TLS/pl"))
    for name in SERVERS:
        pr, tr = med[name, "plain", "rps"], med[name, "tls", "rps"]
        pc, tc = med[name, "plain", "conn"], med[name, "tls", "conn"]
        print("%-10s %14.0f %14.0f %8.2f %16.3f %16.3f %8.1f" % (name, pr, tr, tr / pr, pc, tc, tc / pc))
    print("TLS get/s memkitd/memcached: %.2f" % (med["memkitd", "tls", "rps"] / med["memcached", "tls", "rps"]))
    print("pipelined gets, batches of 100 (raw socket):")
    print("%-10s %14s %14s %16s %16s" % ("server", "plain get/s", "TLS get/s", "plain CPU us/get",
                                         "TLS CPU us/get"))
    for name in SERVERS:
        print("%-10s %14.0f %14.0f %16.2f %16.2f" % (name, med[name, "plain", "pipe"], med[name, "tls", "pipe"],
                                                    med[name, "plain", "cpu"], med[name, "tls", "cpu"]))
    print("TLS pipelined get/s memkitd/memcached: %.2f" % (med["memkitd", "tls", "pipe"] /
                                                         med["memcached", "tls", "pipe"]))


if __name__ == "__main__":
    main()
