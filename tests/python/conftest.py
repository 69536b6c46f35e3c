"""Fixtures for the Python module's tests: servers on free loopback ports, the built module.

The module is imported from build/python (run `make` first). Servers: build/memkitd and
Debian's memcached, both started as `<bin> -p PORT -l 127.0.0.1 -U 0 -u root`; most tests
run against each (the `server` fixture is parametrized), $MK_PY_SERVERS narrows it
("memkitd", "memcached" or both, comma-separated).
"""
import os
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST = "127.0.0.1"
PYPATH = os.path.join(REPO, "build", "python")
sys.path.insert(0, PYPATH)

BINARIES = {"memkitd": os.path.join(REPO, "build", "memkitd"), "memcached": "/usr/bin/memcached"}
WANTED = [s for s in os.environ.get("MK_PY_SERVERS", "memkitd,memcached").split(",") if s]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A memcached-compatible server on a free port, stopped by pid."""

    def __init__(self, kind, extra=()):
        self.kind = kind
        self.port = free_port()
        self.addr = "%s:%d" % (HOST, self.port)
        self.proc = subprocess.Popen([BINARIES[kind], "-p", str(self.port), "-l", HOST, "-U", "0",
                                      "-u", "root", *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("%s did not start on %d" % (kind, self.port))
                time.sleep(0.02)

    def raw(self, data, until=b"END\r\n"):
        """Send raw protocol bytes and read until `until` (or EOF)."""
        with socket.create_connection((HOST, self.port), timeout=5) as s:
            s.sendall(data)
            buf = b""
            while not buf.endswith(until):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf

    def stats(self):
        out = self.raw(b"stats\r\n").decode()
        return {ln.split()[1]: ln.split()[2] for ln in out.splitlines() if ln.startswith("STAT ")}

    def flush(self):
        self.raw(b"flush_all\r\n", b"OK\r\n")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_servers = {}


def _get_server(kind):
    if kind not in _servers:
        if not os.access(BINARIES[kind], os.X_OK):
            pytest.skip("%s not available" % BINARIES[kind])
        _servers[kind] = Server(kind)
    return _servers[kind]


@pytest.fixture(scope="session", params=WANTED)
def server(request):
    s = _get_server(request.param)
    yield s


@pytest.fixture
def srv(server):
    """The session server, flushed."""
    server.flush()
    return server


@pytest.fixture
def fresh_server(request):
    """A private server for tests that count connections or stop it."""
    made = []

    def make(kind="memkitd", extra=()):
        s = Server(kind, extra)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def pytest_sessionfinish(session, exitstatus):
    for s in _servers.values():
        s.stop()


@pytest.fixture(scope="session")
def memkit():
    import memkit as m
    return m


def dead_addr():
    """An address nothing listens on."""
    return "%s:%d" % (HOST, free_port())


def slow_server(delay):
    """Generator for a fixture: tests/python/slow_server.py answering every get after `delay` seconds;
    yields its "host:port" and stops it afterwards."""
    port = free_port()
    p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "slow_server.py"), str(port),
                          str(delay)], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    yield "%s:%d" % (HOST, port)
    p.terminate()
    p.wait()
