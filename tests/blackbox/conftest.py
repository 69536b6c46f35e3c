"""Black-box fixtures: start the server under test, talk to it over raw sockets.

The binary under test is $MEMKITD (default: build/memkitd relative to the repo
root). It is started exactly like memcached:

    <bin> -p <port> -l 127.0.0.1 -U 0 -u root [extra options]

Every suite here must pass with MEMKITD=/usr/bin/memcached (the reference,
Debian's 1.6.18); tests that only make sense for memkitd are marked
``memkitd_only`` and skipped when the binary is memcached.
"""

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST = "127.0.0.1"

# ---------------------------------------------------------------- the binary


def server_binary():
    path = os.environ.get("MEMKITD") or "build/memkitd"
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    return path


def binary_is_memcached(path=None):
    """True when the binary under test is the reference memcached itself."""
    if os.environ.get("MEMKITD_IS_MEMCACHED"):
        return os.environ["MEMKITD_IS_MEMCACHED"] not in ("", "0", "no")
    return os.path.basename(os.path.realpath(path or server_binary())).startswith("memcached")


def _binary_is_asan(path):
    if "/san/" in path or os.environ.get("MEMKITD_ASAN"):
        return True
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


IS_MEMCACHED = binary_is_memcached()
BIN = server_binary()
IS_ASAN = _binary_is_asan(BIN)
# Startup/shutdown allowances (ASan builds start noticeably slower).
START_TIMEOUT = 15.0 if IS_ASAN else 5.0
SLOW = 3.0 if IS_ASAN else 1.0

memkitd_only = pytest.mark.skipif(
    IS_MEMCACHED,
    reason="memkitd contract, not memcached behaviour (MEMKITD is memcached)")


def require_binary():
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        pytest.fail(f"server binary under test not found or not executable: {BIN} "
                    f"(build it, or set MEMKITD=/path/to/binary)", pytrace=False)


def base_args(port):
    return ["-p", str(port), "-l", HOST, "-U", "0", "-u", "root"]


def free_port():
    """A TCP port that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_accepts(port, host=HOST, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# Every process we start, so nothing leaks even when a fixture blows up.
_LIVE = set()


def _kill(proc, sig=signal.SIGTERM, wait=3.0):
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(wait * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except ProcessLookupError:
            pass
    _LIVE.discard(proc)


def _kill_all():
    for p in list(_LIVE):
        _kill(p, signal.SIGKILL)


atexit.register(_kill_all)


def _on_term(signum, frame):
    _kill_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


signal.signal(signal.SIGTERM, _on_term)


def pytest_sessionfinish(session, exitstatus):
    _kill_all()


# ---------------------------------------------------------------- the server


class Server:
    """One running server process on a fresh port, stderr logged to a file."""

    def __init__(self, extra=(), binary=None, logdir=None, port_args=True):
        require_binary()
        self.binary = binary or BIN
        self.extra = [str(a) for a in extra]
        self.logdir = logdir or tempfile.mkdtemp(prefix="memkit-bb-")
        self.proc = None
        self.port = None
        self._start(port_args)

    def _start(self, port_args):
        last = ""
        for attempt in range(5):
            port = free_port() if port_args else 11211
            self.log_path = os.path.join(self.logdir, f"server-{port}-{attempt}.stderr")
            self.argv = [self.binary] + (base_args(port) if port_args else []) + self.extra
            log = open(self.log_path, "wb")
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
            log.close()
            _LIVE.add(self.proc)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_accepts(port):
                    self.port = port
                    return
                time.sleep(0.02)
            rc = self.proc.poll()
            _kill(self.proc, signal.SIGKILL)
            last = self.stderr()
            # Port raced away from us: pick another one. Anything else is fatal.
            if rc is not None and ("in use" in last or "bind" in last.lower()
                                   or "listen" in last.lower()):
                continue
            raise RuntimeError(f"server did not start ({' '.join(self.argv)}), "
                               f"exit={rc}, stderr:\n{last}")
        raise RuntimeError(f"server did not start after 5 port attempts; stderr:\n{last}")

    def stderr(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def connect(self, timeout=5.0):
        return Conn(HOST, self.port, timeout=timeout)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None:
            _kill(self.proc, sig)
        return self.proc.returncode

    def stats(self, group=""):
        with self.connect() as c:
            return c.stats(group)

    def __repr__(self):
        return f"<Server {' '.join(self.argv)} pid={self.proc.pid}>"


class ConnectionClosed(Exception):
    pass


class Conn:
    """A raw text-protocol connection. All reads have a timeout."""

    def __init__(self, host=HOST, port=None, timeout=5.0, sock=None):
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for reply; have %r" % self.buf[-300:])
        self.sock.settimeout(remaining)
        d = self.sock.recv(1 << 20)
        if not d:
            raise ConnectionClosed("connection closed by server; have %r" % self.buf[-300:])
        self.buf += d

    def read_until(self, term=b"\r\n", timeout=None):
        """Bytes up to and including the first `term`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            i = self.buf.find(term)
            if i >= 0:
                out, self.buf = self.buf[:i + len(term)], self.buf[i + len(term):]
                return out
            self._fill(deadline)

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self, timeout=None):
        return self.read_until(b"\r\n", timeout)

    def read_available(self, quiet=0.3):
        """Whatever arrives until the stream has been quiet for `quiet` s (EOF ok)."""
        out = self.buf
        self.buf = b""
        self.sock.settimeout(quiet)
        try:
            while True:
                d = self.sock.recv(1 << 20)
                if not d:
                    break
                out += d
        except (socket.timeout, ConnectionResetError):
            pass
        return out

    def is_closed(self, timeout=2.0):
        """True if the server closes the connection within `timeout` s (unread data is discarded)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                d = self.sock.recv(1 << 20)
                if not d:
                    return True
                self.buf += d
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        return False

    # -- conveniences ---------------------------------------------------
    def cmd(self, data, term=b"\r\n"):
        """Send `data`, return the reply up to and including `term`."""
        self.send(data)
        return self.read_until(term)

    def get(self, data):
        """Send a get-family line, return the whole reply through END."""
        self.send(data)
        return self.read_until(b"END\r\n")

    def set(self, key, value, flags=0, exptime=0, cmd=b"set"):
        if isinstance(key, str):
            key = key.encode()
        if isinstance(value, str):
            value = value.encode()
        return self.cmd(b"%s %s %d %d %d\r\n%s\r\n" % (cmd, key, flags, exptime, len(value), value))

    def stats(self, group=""):
        line = b"stats" + ((b" " + group.encode()) if group else b"") + b"\r\n"
        self.send(line)
        raw = self.read_until(b"END\r\n")
        out = {}
        for ln in raw.split(b"\r\n"):
            if ln.startswith(b"STAT "):
                parts = ln.decode().split(" ", 2)
                out[parts[1]] = parts[2] if len(parts) > 2 else ""
        return out

    def version_sync(self):
        """Round-trip a `version` to prove the stream is in sync; returns the line."""
        line = self.cmd(b"version\r\n")
        assert line.startswith(b"VERSION "), line
        return line


# ---------------------------------------------------------------- fixtures


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _dump_logs(request, servers):
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    if failed:
        for s in servers:
            print(f"--- stderr of {s!r}:\n{s.stderr()}")


class Factory:
    def __init__(self, logdir):
        self.logdir = logdir
        self.servers = []

    def __call__(self, *extra, **kw):
        s = Server(extra, logdir=self.logdir, **kw)
        self.servers.append(s)
        return s

    def stop_all(self):
        for s in self.servers:
            s.stop()


@pytest.fixture
def server_factory(request, tmp_path):
    """Start servers with extra options: server_factory("-m", "1", "-M")."""
    f = Factory(str(tmp_path))
    yield f
    f.stop_all()
    _dump_logs(request, f.servers)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server (default options) shared by the tests of a module; use distinct keys."""
    s = Server((), logdir=str(tmp_path_factory.mktemp("srv")))
    yield s
    s.stop()


@pytest.fixture
def fresh_server(request, tmp_path):
    """A brand-new default server for one test (for tests where global state matters)."""
    s = Server((), logdir=str(tmp_path))
    yield s
    s.stop()
    _dump_logs(request, [s])


@pytest.fixture
def conn(request, server):
    c = server.connect()
    yield c
    c.close()
    if not server.alive():
        pytest.fail(f"server died during the test; stderr:\n{server.stderr()}")


@pytest.fixture
def fconn(fresh_server):
    """A connection to a fresh_server."""
    c = fresh_server.connect()
    yield c
    c.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "memkitd_only: a memkitd contract memcached does not follow")


def udp_ports_bound():
    """The UDP ports something on this machine has bound (from /proc/net/udp and udp6)."""
    ports = set()
    for f in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


@contextlib.contextmanager
def unix_socket_server(tmp_path, *args):
    """The server under test on a unix socket (-s) with these extra options, once the socket accepts;
    yields (process, socket path) and kills it afterwards. Its stderr goes to tmp_path/stderr."""
    require_binary()
    path = str(tmp_path / "mk.sock")
    with open(tmp_path / "stderr", "wb") as log:
        proc = subprocess.Popen([BIN, "-s", path, "-u", "root", *args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline, "the unix socket never accepted"
            with socket.socket(socket.AF_UNIX) as probe:
                if os.path.exists(path) and probe.connect_ex(path) == 0:
                    break
            time.sleep(0.02)
        yield proc, path
    finally:
        proc.terminate()
        try:
            proc.wait(5 * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

