"""Connections that cannot hold the server's memory hostage: read buffers grown past 16 KB for long
request lines draw on one budget for all connections (-o read_buf_mem_limit, default 64 MB); a request
that would exceed it gets memcached's "SERVER_ERROR out of memory reading request" and its connection
is closed, counted as read_buf_oom, while every other client is served."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import HOST, SLOW, memkitd_only

MB = 1 << 20


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def long_get_line(nbytes):
    """An unterminated get line of about nbytes: many keys, no newline."""
    keys = b" ".join(b"k%07d" % i for i in range(nbytes // 9))
    return b"get " + keys


def send_some(sock, data, deadline):
    """Send as much of data as the server takes before the deadline; the bytes sent."""
    sock.setblocking(False)
    sent = 0
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.005)
        except OSError:
            break
    return sent


def read_reply(sock, timeout=10.0):
    sock.setblocking(True)
    sock.settimeout(timeout)
    buf = b""
    try:
        while b"\n" not in buf:
            d = sock.recv(4096)
            if not d:
                break
            buf += d
    except OSError:
        pass
    return buf


def _closed(sock):
    """True if the server has closed sock (EOF or reset), without waiting for more."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@memkitd_only
def test_unterminated_long_lines_share_one_budget_and_others_are_served(server_factory):
    s = server_factory("-o", "read_buf_mem_limit=4", "-t", "2")
    line = long_get_line(600_000)  # grows a read buffer to 1 MB: 1008 KB over its first 16 KB
    base = rss_kb(s.proc.pid)
    socks = []
    try:
        for _ in range(12):
            c = socket.create_connection((HOST, s.port))
            send_some(c, line, time.monotonic() + 2 * SLOW)
            socks.append(c)
        time.sleep(0.3)
        # at most 4 MB of grown buffers: three or four lines held, the others refused and closed
        # (the refusal's line may be lost to the reset a close with unread input makes)
        replies = {c: read_reply(c, timeout=0.5 * SLOW) for c in socks}
        assert all(r in (b"", b"SERVER_ERROR out of memory reading request\r\n") for r in replies.values()), replies
        refused = [c for c in socks if replies[c]] + [c for c in socks if not replies[c] and _closed(c)]
        assert 12 - len(refused) <= 4 and refused, len(refused)
        assert rss_kb(s.proc.pid) - base < 16 * 1024, (base, rss_kb(s.proc.pid))
        with s.connect() as n:  # a normal client meanwhile
            assert n.set(b"lim", b"v") == b"STORED\r\n"
            assert n.get(b"get lim\r\n") == b"VALUE lim 0 1\r\nv\r\nEND\r\n"
            st = n.stats()
            assert int(st["read_buf_oom"]) == len(refused)
            assert n.stats("settings")["read_buf_mem_limit"] == "4"
        # the lines held are finished and answered; their buffers go back to the budget
        held = [c for c in socks if c not in refused]
        for c in held:
            c.setblocking(True)
            c.sendall(b"\r\n")
            c.settimeout(10)
            got = b""
            while not got.endswith(b"END\r\n"):
                d = c.recv(65536)
                assert d, got[-100:]
                got += d
            assert got == b"END\r\n"
        c = socket.create_connection((HOST, s.port))
        socks.append(c)
        c.sendall(line + b"\r\n")
        assert read_reply(c) == b"END\r\n"
    finally:
        for c in socks:
            c.close()


@memkitd_only
def test_read_buf_mem_limit_zero_means_no_limit(server_factory):
    s = server_factory("-o", "read_buf_mem_limit=0")
    line = long_get_line(600_000) + b"\r\n"
    socks = [socket.create_connection((HOST, s.port)) for _ in range(6)]
    try:
        for c in socks:
            send_some(c, line[:-2], time.monotonic() + 2 * SLOW)
        for c in socks:
            c.setblocking(True)
            c.sendall(b"\r\n")
            assert read_reply(c) == b"END\r\n"
        assert s.stats()["read_buf_oom"] == "0"
    finally:
        for c in socks:
            c.close()


@pytest.mark.parametrize("bad", ["read_buf_mem_limit", "read_buf_mem_limit=-1", "read_buf_mem_limit=x"])
def test_read_buf_mem_limit_needs_megabytes(server_factory, bad):
    from conftest import BIN, base_args, free_port
    p = subprocess.run([BIN, *base_args(free_port()), "-o", bad], capture_output=True, timeout=30)
    assert p.returncode != 0


# ------------------------------------------------------------------ peers that vanish

NS, VETH, PEER = "mkvanish", "mkvan0", "mkvan1"
SRV_IP, CLI_IP = "10.231.77.1", "10.231.77.2"


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def vanishing_link():
    """A veth pair: this side 10.231.77.1, the other in network namespace mkvanish (10.231.77.2).
    Deleting the link makes every peer behind it vanish without a FIN or a reset."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("needs root and ip (iproute2): network namespaces for vanished peers")
    _ip("netns", "del", NS, check=False)
    _ip("link", "del", VETH, check=False)
    _ip("netns", "add", NS)
    try:
        _ip("link", "add", VETH, "type", "veth", "peer", "name", PEER)
        _ip("link", "set", PEER, "netns", NS)
        _ip("addr", "add", SRV_IP + "/24", "dev", VETH)
        _ip("link", "set", VETH, "up")
        _ip("netns", "exec", NS, "ip", "addr", "add", CLI_IP + "/24", "dev", PEER)
        _ip("netns", "exec", NS, "ip", "link", "set", PEER, "up")
        _ip("netns", "exec", NS, "ip", "link", "set", "lo", "up")
        yield
    finally:
        _ip("link", "del", VETH, check=False)
        _ip("netns", "del", NS, check=False)


HOLDER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"version\r\n")
assert s.recv(100).startswith(b"VERSION")
print("connected", flush=True)
time.sleep(120)
"""


@memkitd_only
def test_vanished_peers_give_their_slots_back_within_the_keepalive_bound(server_factory, vanishing_link):
    """Two clients behind a link that is then deleted (their host gone, no FIN, no reset) hold both
    slots of -c 2; keepalive (here 2 s idle, 1 s x 2 probes) frees them, and new clients get in."""
    s = server_factory("-l", SRV_IP, "-c", "2", "-o", "tcp_keepalive=2:1:2")  # (and the usual 127.0.0.1)
    holders = [subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", HOLDER, SRV_IP, str(s.port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        for h in holders:
            assert h.stdout.readline() == b"connected\n", h.stderr.read()
        with s.connect() as c:  # the third client: over -c 2
            assert c.read_line() == b"ERROR Too many open connections\r\n"
        _ip("link", "del", VETH)  # the peers vanish
        t0 = time.monotonic()
        while True:
            try:
                with s.connect() as c:
                    c.send(b"version\r\n")
                    if c.read_line().startswith(b"VERSION"):
                        break
            except Exception:
                pass
            assert time.monotonic() - t0 < 30 * SLOW, "the vanished peers' slots were never freed"
            time.sleep(0.5)
        # bound: 2 s idle + 2 probes 1 s apart (+ the kernel's timer granularity and a loaded machine)
        assert time.monotonic() - t0 < 15 * SLOW
    finally:
        for h in holders:
            h.kill()
            h.wait()


# ------------------------------------------------------------------ clients that stop reading

def test_a_client_that_stops_reading_holds_little_and_others_are_served(server_factory):
    """A client asks for 2,000 copies of a 1 MB value (2 GB of replies) and reads nothing: memkitd
    stops executing its requests once 4 MB of replies wait unsent, so its memory barely grows and
    every other client is served meanwhile."""
    s = server_factory("-m", "64", "-t", "2")
    with s.connect() as c:
        assert c.set(b"big", b"x" * 1000_000) == b"STORED\r\n"
    base = rss_kb(s.proc.pid)
    hog = socket.create_connection((HOST, s.port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        send_some(hog, b"get big\r\n" * 2000, time.monotonic() + 3 * SLOW)
        time.sleep(0.5)
        with s.connect() as c:
            for i in range(50):
                assert c.set(b"o%d" % i, b"v") == b"STORED\r\n"
                assert c.get(b"get o%d\r\n" % i) == b"VALUE o%d 0 1\r\nv\r\nEND\r\n" % i
        assert rss_kb(s.proc.pid) - base < 24 * 1024, (base, rss_kb(s.proc.pid))
    finally:
        hog.close()
    with s.connect() as c:  # and the server lets the hog go cleanly
        assert c.get(b"get o1\r\n") == b"VALUE o1 0 1\r\nv\r\nEND\r\n"


# ------------------------------------------------------------------ idle connections

def test_thousands_of_idle_connections_are_kicked_by_idle_timeout(server_factory):
    """1,500 connections that say nothing, with -o idle_timeout=2: every one is closed and counted
    as an idle kick, while a client that keeps talking stays."""
    import resource
    n = 1500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 500), hard))
    s = server_factory("-c", str(n + 100), "-o", "idle_timeout=2")
    idle = []
    try:
        for _ in range(n):
            idle.append(socket.create_connection((HOST, s.port)))
        with s.connect() as active:
            assert int(active.stats()["curr_connections"]) >= n
            deadline = time.monotonic() + 20 * SLOW
            while True:
                st = active.stats()  # (talking keeps this one alive)
                if int(st["idle_kicks"]) >= n:
                    break
                assert time.monotonic() < deadline, st["idle_kicks"]
                time.sleep(0.5)
            assert int(st["idle_kicks"]) == n
            assert all(_closed_eventually(c) for c in idle)
            assert active.cmd(b"version\r\n").startswith(b"VERSION")
    finally:
        for c in idle:
            c.close()


def _closed_eventually(sock, timeout=5.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


# ------------------------------------------------------------------ out of descriptors

@memkitd_only
def test_running_out_of_descriptors_pauses_accepting_and_is_counted(server_factory):
    """The running server's descriptor limit drops to 64 (prlimit); a flood of connections makes
    accept fail (EMFILE): the server stops accepting for a moment instead of spinning, counts it in
    listen_disabled_num and time_in_listen_disabled_us as memcached does, and takes the waiting
    clients once descriptors are free again. (memcached also counts these, but shrinks its listen
    backlog to 0 meanwhile, so this flood's connects time out there.)"""
    import resource
    s = server_factory("-c", "1000", "-t", "2")
    with s.connect() as watcher:
        resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE, (64, 64))
        flood = []
        try:
            for _ in range(90):
                flood.append(socket.create_connection((HOST, s.port), timeout=5))  # (the backlog takes them)
            time.sleep(0.5)
            st = watcher.stats()
            assert int(st["listen_disabled_num"]) >= 1, st["listen_disabled_num"]
        finally:
            for c in flood:
                c.close()
        time.sleep(0.5)
        with s.connect() as late:  # descriptors free again: accepting resumed
            assert late.cmd(b"version\r\n").startswith(b"VERSION")
        st = watcher.stats()
        assert int(st["time_in_listen_disabled_us"]) > 0 and st["accepting_conns"] == "1"


# ------------------------------------------------------------------ -R: one connection cannot starve the others

def _fairness_run(s, n):
    """A hog streams n pipelined gets of a missing key on its own connection (reading its replies in
    another thread) while a second client does 20 gets: True if all 20 were answered while the hog's
    pipeline was still being served."""
    import threading
    hog = socket.create_connection((HOST, s.port))
    done = threading.Event()
    started = threading.Event()
    want = 5 * n  # "END\r\n" each

    def read():
        got = 0
        while got < want:
            d = hog.recv(1 << 20)
            if not d:
                break
            got += len(d)
            started.set()
        done.set()

    reader = threading.Thread(target=read)
    reader.start()
    sender = threading.Thread(target=hog.sendall, args=(b"get nokey\r\n" * n,))
    sender.start()
    try:
        assert started.wait(30 * SLOW)
        with s.connect() as c:
            for i in range(20):
                assert c.get(b"get o%d\r\n" % i) == b"END\r\n"
        return not done.is_set()
    finally:
        sender.join()
        reader.join()
        hog.close()


def test_reqs_per_event_keeps_a_pipelining_client_from_starving_others(server_factory):
    """-t 1 (one worker for both connections), -R 20: a client streaming 2,000,000 pipelined gets does
    not hold the worker; another client's 20 gets are answered while the stream is still being served.
    Two bounds make that so: the -R budget of requests per wake-up (its yields are counted in
    conn_yields; with -R ignored there would be none) and one read per wake-up."""
    s = server_factory("-t", "1", "-R", "20")
    assert _fairness_run(s, 2_000_000)
    with s.connect() as c:
        assert int(c.stats()["conn_yields"]) > 1000
