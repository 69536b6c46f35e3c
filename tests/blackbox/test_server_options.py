"""Command-line options and process behaviour (memcached's option set).

Observed memcached 1.6.18 semantics that these tests encode:
  * -m N: memory limit in MiB; with -m 1 memcached refuses to start unless -I is
    lowered too (item size max must be <= half of -m), so tests use -m 2.
  * -I below 512k needs memcached's "-o slab_chunk_max=..." as well; that extra
    option is added only when the binary under test is memcached (see mc_only_opts).
  * -c N counts file descriptors, not clients: memcached rejects a new connection
    when curr_conns + reserved_fds >= N - 1, where reserved_fds covers its own
    internal fds (with -t 1 that leaves N - 12 client connections; -c below ~11
    makes memcached fail to start at all). The rejected client receives exactly
    "ERROR Too many open connections\\r\\n" and is closed. The generic test asserts
    that semantics with the limit L observed (1 <= L <= N); the memkitd contract
    (exactly N clients) is a separate memkitd-only test.
"""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import (BIN, HOST, IS_MEMCACHED, SLOW, START_TIMEOUT, Conn, base_args, free_port,
                      memkitd_only, port_accepts, require_binary, udp_ports_bound,
                      unix_socket_server)


def mc_only_opts(*opts):
    """Options only memcached needs to accept an otherwise identical command line."""
    return list(opts) if IS_MEMCACHED else []


def run_bin(args, timeout=10):
    require_binary()
    return subprocess.run([BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout * SLOW)


# ---------------------------------------------------------------- memory


def test_m_bounds_memory_and_evicts_oldest(server_factory):
    s = server_factory("-m", "2")
    value = b"v" * 1024
    n = 3 * 2 * 1024           # 3x the limit in 1 KB values
    with s.connect() as c:
        for start in range(0, n, 500):
            batch = b"".join(b"set mem%d 0 0 1024\r\n%s\r\n" % (i, value)
                             for i in range(start, min(n, start + 500)))
            c.send(batch)
            for i in range(start, min(n, start + 500)):
                assert c.read_line() == b"STORED\r\n", i
        st = c.stats()
        assert int(st["limit_maxbytes"]) == 2 * 1024 * 1024
        assert int(st["bytes"]) <= int(st["limit_maxbytes"])
        assert int(st["evictions"]) > 0
        assert int(st["curr_items"]) < n
        # the newest keys survive
        for i in range(n - 100, n):
            assert c.get(b"get mem%d\r\n" % i) == b"VALUE mem%d 0 1024\r\n%s\r\nEND\r\n" % (i, value)
        # the oldest are gone
        assert c.get(b"get mem0 mem1 mem2\r\n") == b"END\r\n"


def test_M_returns_out_of_memory_instead_of_evicting(server_factory):
    s = server_factory("-m", "2", "-M")
    value = b"v" * 1024
    with s.connect() as c:
        errors = 0
        for i in range(3 * 2 * 1024):
            r = c.cmd(b"set oom%d 0 0 1024\r\n%s\r\n" % (i, value))
            if r != b"STORED\r\n":
                assert r == b"SERVER_ERROR out of memory storing object\r\n"
                errors += 1
                if errors >= 5:
                    break
        assert errors == 5
        c.version_sync()                                   # data block was swallowed
        st = c.stats()
        assert st["evictions"] == "0"
        assert int(st["bytes"]) <= int(st["limit_maxbytes"])
        assert c.get(b"get oom0\r\n").startswith(b"VALUE oom0 0 1024\r\n")   # nothing evicted


def test_I_limits_item_size(server_factory):
    s = server_factory("-I", "2k", *mc_only_opts("-o", "slab_chunk_max=1024"))
    with s.connect() as c:
        assert c.stats("settings")["item_size_max"] == "2048"
        assert c.set("small", b"x" * 1000) == b"STORED\r\n"
        c.send(b"set big 0 0 3000\r\n" + b"x" * 3000 + b"\r\n")
        assert c.read_line() == b"SERVER_ERROR object too large for cache\r\n"
        c.version_sync()
        assert c.get(b"get big\r\n") == b"END\r\n"
        assert c.get(b"get small\r\n") == b"VALUE small 0 1000\r\n" + b"x" * 1000 + b"\r\nEND\r\n"


# ---------------------------------------------------------------- connections


def _fill_connections(s, limit):
    """Open connections until one is rejected; return (accepted, rejected_reply, closed)."""
    accepted = []
    for _ in range(limit + 50):
        c = s.connect(timeout=2)
        c.send(b"version\r\n")
        try:
            line = c.read_line(timeout=2)
        except Exception as e:      # noqa: BLE001 - closed without reply counts as rejection
            line = repr(e).encode()
        if line.startswith(b"VERSION "):
            accepted.append(c)
            continue
        return accepted, line, c.is_closed(2.0)
    raise AssertionError(f"no connection rejected after {len(accepted)} with -c {limit}")


def test_c_rejects_connections_over_the_limit(server_factory):
    n = 30
    s = server_factory("-c", str(n), "-t", "1")
    accepted, line, closed = _fill_connections(s, n)
    try:
        assert 1 <= len(accepted) <= n
        assert line == b"ERROR Too many open connections\r\n"
        assert closed
        # existing connections still work
        for c in accepted:
            c.version_sync()
        # closing one frees a slot
        accepted.pop().close()
        time.sleep(0.3)
        c = s.connect()
        accepted.append(c)
        c.version_sync()
        st = c.stats()
        assert int(st["rejected_connections"]) >= 1
    finally:
        for c in accepted:
            c.close()


@memkitd_only
def test_c_allows_exactly_n_clients(server_factory):
    """memkitd contract: with -c N exactly N client connections are served; the
    (N+1)th gets "ERROR Too many open connections" and is closed."""
    n = 5
    s = server_factory("-c", str(n))
    accepted, line, closed = _fill_connections(s, n)
    try:
        assert len(accepted) == n
        assert line == b"ERROR Too many open connections\r\n" and closed
    finally:
        for c in accepted:
            c.close()


# ---------------------------------------------------------------- threads


@pytest.mark.parametrize("threads", ["1", "4"])
def test_t_sets_worker_threads(server_factory, threads):
    s = server_factory("-t", threads)
    conns = [s.connect() for _ in range(8)]
    for i, c in enumerate(conns):
        assert c.set(f"t{i}", str(i)) == b"STORED\r\n"
    for i, c in enumerate(conns):
        assert c.get(b"get t%d\r\n" % ((i + 1) % 8)) == b"VALUE t%d 0 1\r\n%d\r\nEND\r\n" % (
            (i + 1) % 8, (i + 1) % 8)
    assert conns[0].stats()["threads"] == threads
    for c in conns:
        c.close()


# ---------------------------------------------------------------- process behaviour


def test_h_prints_help_and_exits_0():
    r = run_bin(["-h"])
    assert r.returncode == 0, r.stderr
    assert b"-p" in r.stdout and b"-m" in r.stdout


def test_V_prints_version_and_exits_0():
    r = run_bin(["-V"])
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert out and len(out.splitlines()) == 1, out


def test_bad_option_fails_to_start():
    port = free_port()
    r = run_bin(base_args(port) + ["--no-such-option"])
    assert r.returncode != 0
    assert r.stderr.strip() != b""
    assert not port_accepts(port)


@memkitd_only
@pytest.mark.parametrize("bad", [["--no-such-option"], ["-Z"], ["-m", "abc"], ["-c", "0"],
                                 ["-t", "0"], ["-p"], ["-I", "banana"]])
def test_bad_option_exits_1_with_one_stderr_line(bad):
    port = free_port()
    r = run_bin(base_args(port) + bad)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout == b""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to run as root")
def test_refuses_to_run_as_root_without_u():
    require_binary()
    port = free_port()
    args = [BIN, "-p", str(port), "-l", HOST, "-U", "0"]
    try:
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=5 * SLOW)
    except subprocess.TimeoutExpired:
        pytest.fail("server started as root without -u")
    assert r.returncode != 0
    assert r.stderr.strip() != b""
    assert not port_accepts(port)


def test_u_drops_root_to_that_user(tmp_path):
    """Started as root with -u nobody, the serving process runs as nobody (uid, gid, no groups)."""
    require_binary()
    if os.geteuid() != 0:
        pytest.fail("this test starts the server as root (CI runs as root)")
    import pwd
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    p = subprocess.Popen([BIN, "-p", str(port), "-l", HOST, "-U", "0", "-u", "nobody"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not port_accepts(port):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
            time.sleep(0.02)
        status = open(f"/proc/{p.pid}/status").read()
        ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if line[:4] in ("Uid:", "Gid:")}
        assert ids["Uid"] == [str(nobody.pw_uid)] * 4, ids
        assert ids["Gid"] == [str(nobody.pw_gid)] * 4, ids
        groups = [line for line in status.splitlines() if line.startswith("Groups:")][0].split()[1:]
        assert groups in ([], [str(nobody.pw_gid)]), groups
        with Conn(port=port) as c:
            assert c.set(b"asnobody", b"v") == b"STORED\r\n"
    finally:
        p.terminate()
        p.wait(5 * SLOW)


def test_d_daemonizes_and_writes_pidfile(tmp_path):
    pidfile = tmp_path / "memkitd.pid"
    port = free_port()
    r = run_bin(base_args(port) + ["-d", "-P", str(pidfile)])
    assert r.returncode == 0, r.stderr
    pid = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not (pidfile.exists() and port_accepts(port)):
            time.sleep(0.05)
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)                                   # alive
        with Conn(port=port) as c:
            c.version_sync()
            assert int(c.stats()["pid"]) == pid
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        assert ppid != os.getpid()                        # detached from us
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5 * SLOW
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)


@memkitd_only  # memcached 1.6.18 exits 0 and no server runs
def test_d_with_a_pid_file_that_cannot_be_written_exits_1_with_the_reason(tmp_path):
    """Regression (issue 16): -d -P into a missing directory exited 0 with no server running; in the
    foreground the same is a clear error. Now the shell waits for the daemon to be ready or fail."""
    port = free_port()
    r = run_bin(base_args(port) + ["-d", "-P", str(tmp_path / "missing" / "memkitd.pid")])
    assert r.returncode == 1
    assert b"cannot write pid file" in r.stderr and b"No such file or directory" in r.stderr
    time.sleep(0.2)
    assert not port_accepts(port)


def test_s_serves_over_unix_socket(tmp_path):
    with unix_socket_server(tmp_path, "-U", "0") as (_, path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        c = Conn.__new__(Conn)
        c.sock, c.timeout, c.buf = sock, 5.0, b""
        c.version_sync()
        assert c.set("us", "unix") == b"STORED\r\n"
        assert c.get(b"get us\r\n") == b"VALUE us 0 4\r\nunix\r\nEND\r\n"
        c.close()


def _non_loopback_ipv4():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
            return None if ip.startswith("127.") else ip
    except OSError:
        return None


@memkitd_only
def test_default_listen_is_loopback_only_and_udp_off(tmp_path):
    require_binary()
    port = free_port()
    log = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen([BIN, "-p", str(port), "-u", "root"], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not port_accepts(port):
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            time.sleep(0.02)
        assert port_accepts(port)
        ip = _non_loopback_ipv4()
        if ip:
            assert not port_accepts(port, host=ip), f"listening on {ip}"
        assert port not in udp_ports_bound()
    finally:
        proc.terminate()
        proc.wait(5 * SLOW)
        log.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1],
                         ids=["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_stops_server_promptly_with_status_0(server_factory, sig):
    s = server_factory()
    with s.connect() as c:
        c.set("sig", "v")
        t0 = time.monotonic()
        s.proc.send_signal(sig)
        rc = s.proc.wait(3 * SLOW)
        assert rc == 0, s.stderr()
        assert time.monotonic() - t0 < 3 * SLOW
        assert c.is_closed(2.0)
    assert not port_accepts(s.port)


def test_sighup_does_not_stop_the_server(server_factory):
    """memcached survives SIGHUP (a closed terminal, a logrotate reload); memkitd used to exit 129."""
    s = server_factory()
    with s.connect() as c:
        c.set(b"hup", b"v")
        for _ in range(3):
            s.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert s.proc.poll() is None, s.stderr()
        assert c.get(b"get hup\r\n") == b"VALUE hup 0 1\r\nv\r\nEND\r\n"
    with s.connect() as c2:
        assert c2.get(b"get hup\r\n") == b"VALUE hup 0 1\r\nv\r\nEND\r\n"


def _keepalive_timers(port):
    """ss's timers on the server side of the established connections to port: [(name, seconds)]."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    timers = []
    for m in re.finditer(r"timer:\((\w+),(?:(\d+)min)?(\d+(?:\.\d+)?)?(ms|sec)?", out):
        secs = int(m.group(2) or 0) * 60 + float(m.group(3) or 0) / (1000 if m.group(4) == "ms" else 1)
        timers.append((m.group(1), secs))
    return timers


@memkitd_only
def test_accepted_connections_are_probed_by_tcp_keepalive_within_a_minute(server_factory):
    """A peer that vanishes gives its slot back: keepalive probes start after 60 s of silence
    (memcached leaves the kernel's 2 hours), docs/security.md."""
    if shutil.which("ss") is None:
        pytest.skip("ss is not installed (apt-get install iproute2)")
    s = server_factory()
    with s.connect() as c:
        c.set(b"ka", b"v")
        timers = _keepalive_timers(s.port)
        assert timers and all(name == "keepalive" and 0 < secs <= 60 for name, secs in timers), timers


def _flags_of_mappings(pid, size_kb):
    """The VmFlags of the process's mappings of exactly size_kb, from /proc/PID/smaps."""
    out, size = [], 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("VmFlags:") and size == size_kb:
                out.append(line.split()[1:])
    return out


def _core_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4]
    raise AssertionError("no core limit")


@memkitd_only
def test_item_memory_is_left_out_of_core_dumps_unless_r(server_factory):
    """A crash dump should not carry the cache's sessions and tokens: the arena is MADV_DONTDUMP;
    -r (memcached's "maximize core file limit") raises the core limit and keeps items in dumps."""
    arena_kb = 37 * 1024 + 64  # -m 37: 592 segments of 64 KB, and one more for alignment
    s = server_factory("-m", "37")
    arena = _flags_of_mappings(s.proc.pid, arena_kb)
    assert arena and all("dd" in flags for flags in arena), arena
    r = server_factory("-m", "37", "-r")
    arena = _flags_of_mappings(r.proc.pid, arena_kb)
    assert arena and not any("dd" in flags for flags in arena), arena
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]  # (the server inherits the tests' hard limit)
    assert _core_limit(r.proc.pid) == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard))


@pytest.mark.parametrize("mode", [b"foo", b"GRACEFUL", b"1", b"noreply", b"graceful now"])
def test_shutdown_with_an_unknown_mode_is_refused_and_the_server_stays_up(server_factory, mode):
    """Regression (issue 16): with -A, any word after "shutdown" stopped memkitd; memcached accepts only
    "shutdown" and "shutdown graceful" and answers anything else with an error."""
    s = server_factory("-A")
    with s.connect() as c:
        assert c.cmd(b"shutdown " + mode + b"\r\n") == b"CLIENT_ERROR invalid shutdown mode\r\n"
        assert c.cmd(b"version\r\n").startswith(b"VERSION ")
    assert s.proc.poll() is None


@pytest.mark.parametrize("line", [b"shutdown\r\n", b"shutdown graceful\r\n"])
def test_shutdown_and_shutdown_graceful_stop_the_server(server_factory, line):
    s = server_factory("-A")
    with s.connect() as c:
        c.send(line)
        assert c.is_closed(5.0)
    assert s.proc.wait(10) == 0 or IS_MEMCACHED


def test_shutdown_without_A_is_refused(server_factory):
    s = server_factory()
    with s.connect() as c:
        assert c.cmd(b"shutdown\r\n") == b"ERROR: shutdown not enabled\r\n"
        assert c.cmd(b"shutdown graceful\r\n") == b"ERROR: shutdown not enabled\r\n"


def test_sigusr1_lets_in_flight_request_finish(server_factory):
    """Graceful stop: a request already sent before SIGUSR1 is answered."""
    s = server_factory()
    with s.connect() as c:
        c.send(b"set g 0 0 1\r\nv\r\n")
        assert c.read_line() == b"STORED\r\n"
        s.proc.send_signal(signal.SIGUSR1)
        assert s.proc.wait(3 * SLOW) == 0


@pytest.mark.parametrize("level", ["-vv", "-vvv"])
def test_vv_logs_commands_and_replies_and_vvv_state_changes(server_factory, level):
    """-vv prints each command and each reply as memcached does ("<fd command", ">fd reply",
    ">fd sending key K"); -vvv also the connection's state changes and each key found or not."""
    srv = server_factory(level)
    with srv.connect() as c:
        assert c.cmd(b"set vkey 0 0 1\r\nx\r\n") == b"STORED\r\n"
        assert c.get(b"get vkey nokey\r\n") == b"VALUE vkey 0 1\r\nx\r\nEND\r\n"
        assert c.cmd(b"delete nokey\r\n") == b"NOT_FOUND\r\n"
    deadline = time.monotonic() + 5 * SLOW
    while "NOT_FOUND" not in srv.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = srv.stderr()
    for line in ("set vkey 0 0 1", "STORED", "get vkey nokey", "sending key vkey", "END", "NOT_FOUND"):
        assert re.search(r"^[<>]\d+ " + re.escape(line) + "$", log, re.M), (line, log)
    if level == "-vvv":
        assert re.search(r"^\d+: going from conn_parse_cmd to conn_nread$", log, re.M), log
        assert "> FOUND KEY vkey" in log and "> NOT FOUND nokey" in log
    else:
        assert "going from" not in log
