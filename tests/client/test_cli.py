"""tests/client/test_cli.py — the memkit CLI (output and exit status of each command) and twemproxy key placement.

Servers: $MK_SERVER (default /usr/bin/memcached; build/memkitd works too), started on free
loopback ports as "<bin> -u root -p PORT -l 127.0.0.1 -U 0". The CLI is $MEMKIT_CLI
(default build/memkit).
"""

import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("MEMKIT_CLI") or os.path.join(REPO, "build", "memkit")
SERVER = os.environ.get("MK_SERVER") or "/usr/bin/memcached"
if not os.path.isabs(SERVER):
    SERVER = os.path.join(REPO, SERVER)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def start_server():
    port = free_port()
    p = subprocess.Popen([SERVER, "-u", "root", "-p", str(port), "-l", "127.0.0.1", "-U", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


@pytest.fixture(scope="module")
def servers():
    procs = [start_server() for _ in range(3)]
    yield [port for _, port in procs]
    for p, _ in procs:
        p.kill()
        p.wait()


def mk(servers, *args, stdin=None):
    lst = ",".join(f"127.0.0.1:{p}" for p in servers)
    r = subprocess.run([CLI, f"--servers={lst}", "--timeout=2000", *args], input=stdin,
                       capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def raw(port, line):
    """Send one request straight to a server, return the reply bytes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(line)
    data = b""
    while not (data.endswith(b"END\r\n") or data.endswith(b"STORED\r\n") or data.endswith(b"OK\r\n")):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def test_set_get(servers):
    assert mk(servers, "flush") == (0, "", "")
    assert mk(servers, "set", "k", "hello") == (0, "", "")
    assert mk(servers, "get", "k") == (0, "hello\n", "")


def test_set_from_stdin_and_flags(servers):
    assert mk(servers, "set", "s", "--flags=42", stdin=b"line1\nline2") == (0, "", "")
    assert mk(servers, "get", "s") == (0, "line1\nline2\n", "")
    owner = mk(servers, "locate", "s")[1].strip()
    port = int(owner.rsplit(":", 1)[1])
    assert raw(port, b"get s\r\n").startswith(b"VALUE s 42 11\r\n")


def test_get_miss(servers):
    rc, out, err = mk(servers, "get", "missing")
    assert (rc, out) == (1, "")
    assert err == "memkit: get missing: not found\n"


def test_multi_get(servers):
    mk(servers, "set", "m1", "one")
    mk(servers, "set", "m2", "two")
    rc, out, err = mk(servers, "get", "m1", "nope", "m2")
    assert rc == 1
    assert sorted(out.splitlines()) == ["m1 one", "m2 two"]
    assert err == "memkit: get nope: not found\n"
    assert mk(servers, "get", "m1", "m2")[0] == 0


def test_add_replace_append_prepend(servers):
    mk(servers, "delete", "a")
    assert mk(servers, "add", "a", "1")[0] == 0
    rc, _, err = mk(servers, "add", "a", "2")
    assert rc == 1 and err == "memkit: add a: not stored\n"
    assert mk(servers, "replace", "a", "r")[0] == 0
    assert mk(servers, "replace", "nope", "r")[0] == 1
    assert mk(servers, "append", "a", ">")[0] == 0
    assert mk(servers, "prepend", "a", "<")[0] == 0
    assert mk(servers, "append", "nope", ">")[0] == 1
    assert mk(servers, "get", "a") == (0, "<r>\n", "")


def test_delete(servers):
    mk(servers, "set", "d", "x")
    assert mk(servers, "delete", "d") == (0, "", "")
    assert mk(servers, "delete", "d") == (1, "", "memkit: delete d: not found\n")


def test_incr_decr(servers):
    mk(servers, "delete", "n")
    assert mk(servers, "incr", "n")[0] == 1
    mk(servers, "set", "n", "10")
    assert mk(servers, "incr", "n") == (0, "11\n", "")
    assert mk(servers, "incr", "n", "9") == (0, "20\n", "")
    assert mk(servers, "decr", "n", "25") == (0, "0\n", "")
    rc, _, err = mk(servers, "incr", "n", "x")
    assert rc == 2 and "bad delta" in err
    mk(servers, "set", "t", "text")
    rc, _, err = mk(servers, "incr", "t")
    assert rc == 2 and err.count("\n") == 1 and "not a number" in err


def test_touch(servers):
    mk(servers, "set", "tt", "x")
    assert mk(servers, "touch", "tt", "100") == (0, "", "")
    assert mk(servers, "touch", "nope", "100")[0] == 1
    assert mk(servers, "touch", "--", "tt", "-1")[0] == 0   # "--": a negative number is not an option
    assert mk(servers, "get", "tt")[0] == 1


def test_exptime(servers):
    assert mk(servers, "set", "e", "x", "--exptime=-1")[0] == 0
    assert mk(servers, "get", "e")[0] == 1


def test_flush(servers):
    mk(servers, "set", "f", "x")
    assert mk(servers, "flush") == (0, "", "")
    assert mk(servers, "get", "f")[0] == 1


def test_version(servers):
    rc, out, _ = mk(servers, "version")
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 3
    for line, port in zip(lines, servers):
        name, ver = line.split(" ", 1)
        assert name == f"127.0.0.1:{port}" and ver.startswith("1.6")


def test_stats(servers):
    rc, out, _ = mk(servers[:1], "stats")
    assert rc == 0
    names = [line.split(" ")[0] for line in out.splitlines()]
    assert "pid" in names and "get_hits" in names
    rc, out, _ = mk(servers, "stats", "settings")
    assert rc == 0
    assert out.count("# 127.0.0.1:") == 3


def test_top(servers):
    rc, out, err = mk(servers, "top", "--iterations=2", "--interval=100")
    assert rc == 0, err
    frames = out.strip().split("\n\n")
    assert len(frames) == 2
    for f in frames:
        lines = f.splitlines()
        assert lines[0].startswith("memkit top - 3 servers")
        assert lines[1].split() == ["SERVER", "GETS/s", "HIT%", "SETS/s", "EVICT/s", "CONNS", "IN/s", "OUT/s",
                                    "ITEMS", "MEM%"]
        assert max(len(line) for line in lines) <= 80
        assert [l.split()[0] for l in lines[2:]] == [f"127.0.0.1:{p}" for p in servers] + ["total"]


def test_top_rates(servers):
    # a background writer makes the SETS/s column move
    p = subprocess.Popen([CLI, f"--servers=127.0.0.1:{servers[0]}", "top", "--iterations=1", "--interval=500"],
                         stdout=subprocess.PIPE)
    for i in range(50):
        mk(servers[:1], "set", f"r{i}", "x")
    out = p.communicate(timeout=10)[0].decode()
    row = out.splitlines()[2].split()
    assert float(row[3].rstrip("K")) > 0   # SETS/s


def _top_in_a_terminal(servers, cols):
    """Run memkit top on a pseudo-terminal of cols x 24 until its first frame: the lines of its screen
    (escapes removed). Then type q: it must end with status 0."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    p = subprocess.Popen([CLI, "--servers=" + ",".join(f"127.0.0.1:{x}" for x in servers), "top",
                          "--interval=200"], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    try:
        screen, deadline = b"", time.time() + 10
        while b"total" not in screen and time.time() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                screen += os.read(master, 65536)
        os.write(master, b"q")
        assert p.wait(timeout=5) == 0
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", screen.decode())
    return [line for line in text.replace("\r", "").split("\n") if line]


def test_top_quits_on_q_and_fits_80_columns(servers):
    """Regression (issue 16): top ignored q (only Ctrl-C quit, exit 130) and its rows wrapped in 80 columns."""
    lines = _top_in_a_terminal(servers, 80)
    assert any(line.startswith("SERVER") for line in lines) and "q quits" in lines[0]
    assert max(len(line) for line in lines) <= 80, lines


def test_top_uses_a_wider_terminal_for_server_names(servers):
    header = next(line for line in _top_in_a_terminal(servers, 120) if line.startswith("SERVER"))
    assert len(header) == 119  # (the last column is left free: some terminals wrap a full line)


def test_top_shows_the_hottest_prefixes_when_the_server_collects_them(servers):
    """Issue 16: top lists the busiest key prefixes ("stats detail dump", summed over the servers) while
    "stats detail on"; the busier prefix first, hit ratio per prefix; nothing of the kind while it is off."""
    rc, out, _ = mk(servers, "top", "--iterations=1", "--interval=100")
    assert rc == 0 and "PREFIX" not in out
    for port in servers:
        assert mk([port], "stats", "detail on")[0] == 0
    try:
        p = subprocess.Popen([CLI, "--servers=" + ",".join(f"127.0.0.1:{x}" for x in servers), "top",
                              "--iterations=1", "--interval=1500"], stdout=subprocess.PIPE)
        time.sleep(0.3)
        conns = [socket.create_connection(("127.0.0.1", port)) for port in servers]
        for i in range(30):
            for s in conns:
                s.sendall(b"set hot:%d 0 0 1\r\nx\r\nget hot:%d\r\nget hot:miss\r\nget cold:%d\r\n" % (i, i, i))
                want = b"STORED\r\nVALUE hot:%d 0 1\r\nx\r\nEND\r\nEND\r\nEND\r\n" % i
                got = b""
                while len(got) < len(want):
                    got += s.recv(4096)
                assert got == want
        for s in conns:
            s.close()
        out = p.communicate(timeout=15)[0].decode()
        lines = out.splitlines()
        i = next(k for k, line in enumerate(lines) if line.startswith("PREFIX"))
        assert lines[i].split() == ["PREFIX", "GETS/s", "HIT%", "SETS/s", "DELS/s"]
        hot, cold = lines[i + 1].split(), lines[i + 2].split()
        assert hot[0] == "hot" and hot[2] == "50%" and hot[3] != "0"   # 2 gets, 1 hit, 1 set per round
        assert cold[0] == "cold" and cold[2] == "0%" and cold[3] == "0"
        assert max(len(line) for line in lines) <= 80
    finally:
        for port in servers:
            mk([port], "stats", "detail off")


def test_top_down_server(servers):
    dead = free_port()
    rc, out, _ = mk([servers[0], dead], "top", "--iterations=1", "--interval=50")
    assert rc == 2
    assert f"127.0.0.1:{dead}" in out and "down" in out


def test_errors(servers):
    rc, _, err = mk(servers, "get", "a b")
    assert rc == 2 and "invalid key" in err and err.count("\n") == 1
    rc, _, err = mk(servers, "bogus")
    assert rc == 2 and "unknown command" in err
    rc, _, err = mk(servers, "get")
    assert rc == 2 and "wrong number of arguments" in err
    rc, _, err = mk([free_port()], "get", "k")
    assert rc == 2 and "connection failed" in err and err.count("\n") == 1
    r = subprocess.run([CLI, "--servers=127.0.0.1:0", "get", "k"], capture_output=True)
    assert r.returncode == 2 and b"bad server list" in r.stderr
    r = subprocess.run([CLI, "--distribution=nope", "get", "k"], capture_output=True)
    assert r.returncode == 2 and b"unknown distribution" in r.stderr
    r = subprocess.run([CLI, "--help"], capture_output=True)
    assert r.returncode == 0 and b"usage: memkit" in r.stdout


def test_timeout_honoured(servers):
    # a listener that never answers: the CLI gives up after --timeout
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    port = s.getsockname()[1]
    t0 = time.time()
    r = subprocess.run([CLI, f"--servers=127.0.0.1:{port}", "--timeout=300", "get", "k"], capture_output=True)
    dt = time.time() - t0
    s.close()
    assert r.returncode == 2 and b"timed out" in r.stderr
    assert dt < 1.5


def test_distributions_place_keys_on_the_located_server(servers):
    for dist in ("ketama", "modula", "consistent"):
        mk(servers, "flush")
        for i in range(20):
            key = f"{dist}-{i}"
            assert mk(servers, f"--distribution={dist}", "set", key, "v")[0] == 0
            owner = mk(servers, f"--distribution={dist}", "locate", key)[1].strip()
            port = int(owner.rsplit(":", 1)[1])
            for p in servers:
                assert (mk([p], "get", key)[0] == 0) == (p == port)


# ------------------------------------------------------------------ twemproxy

@pytest.fixture(scope="module")
def twemproxy(servers):
    port, stats_port = free_port(), free_port()
    d = tempfile.mkdtemp()
    conf = os.path.join(d, "nutcracker.yml")
    with open(conf, "w") as f:
        f.write(f"""memkit:
  listen: 127.0.0.1:{port}
  hash: md5
  distribution: ketama
  timeout: 2000
  auto_eject_hosts: false
  servers:
""" + "".join(f"   - 127.0.0.1:{p}:1\n" for p in servers))
    p = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(stats_port), "-o", os.path.join(d, "log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    yield port
    p.kill()
    p.wait()


def test_twemproxy_ketama_md5_placement(servers, twemproxy):
    """A key written through twemproxy is read directly from the server libmemkit picks."""
    mk(servers, "flush")
    per = {p: 0 for p in servers}
    for i in range(60):
        key = f"tw:{i}:key"
        assert mk([twemproxy], "set", key, f"via-proxy-{i}") == (0, "", "")
        owner = mk(servers, "locate", key)[1].strip()
        port = int(owner.rsplit(":", 1)[1])
        per[port] += 1
        # read straight from the server libmemkit picks, and through the client
        assert mk([port], "get", key) == (0, f"via-proxy-{i}\n", "")
        assert mk(servers, "get", key) == (0, f"via-proxy-{i}\n", "")
        for p in servers:
            if p != port:
                assert mk([p], "get", key)[0] == 1
    assert all(n > 5 for n in per.values()), per


# ------------------------------------------------------------------ herd protection

def test_lease_and_invalidate(servers):
    k = "cli:lease"
    # a miss: this caller wins (3) and must recompute; the next one waits for it (4), nothing printed
    assert mk(servers, "lease", k, "--lock=30") == (3, "", "")
    assert mk(servers, "lease", k) == (4, "", "")
    assert mk(servers, "set", k, "page") == (0, "", "")
    assert mk(servers, "lease", k) == (0, "page\n", "")
    # invalidated: the stale value is printed to everyone; the first one wins
    assert mk(servers, "invalidate", k, "--exptime=60") == (0, "", "")
    assert mk(servers, "lease", k) == (3, "page\n", "")
    assert mk(servers, "lease", k) == (4, "page\n", "")
    assert mk(servers, "set", k, "page2") == (0, "", "")
    assert mk(servers, "lease", k) == (0, "page2\n", "")
    # recache: a value expiring within the window hands out one early win
    assert mk(servers, "set", "cli:rc", "v", "--exptime=10") == (0, "", "")
    assert mk(servers, "lease", "cli:rc", "--recache=30") == (3, "v\n", "")
    assert mk(servers, "lease", "cli:rc", "--recache=30") == (0, "v\n", "")
    rc, out, err = mk(servers, "invalidate", "cli:none")
    assert (rc, out) == (1, "") and "not found" in err
    assert mk(servers, "lease", k, "--lock=0")[0] == 2


def test_lease_through_twemproxy_says_no_meta(servers, twemproxy):
    rc, out, err = mk([twemproxy], "lease", "cli:tw")
    assert (rc, out) == (2, "")
    assert err == "memkit: lease cli:tw: the server does not speak the meta protocol\n"
    # and the proxy still serves the next command on a fresh connection
    assert mk([twemproxy], "set", "cli:tw", "x") == (0, "", "")


def cli_with_password(port, env):
    """A runner of the CLI against 127.0.0.1:port with env ($MEMKIT_PASSWORD): (rc, stdout, stderr)."""
    def run(*args, env=env):
        r = subprocess.run([CLI, f"--servers=127.0.0.1:{port}", *args], capture_output=True, timeout=30, env=env)
        return r.returncode, r.stdout.decode(), r.stderr.decode()
    return run


def test_binary_protocol_and_sasl_credentials(tmp_path):
    """--binary speaks memcached's binary protocol; --username (password from $MEMKIT_PASSWORD) authenticates
    with SASL against a server started with -S."""
    saslpasswd2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
    (tmp_path / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {tmp_path}/sasldb\n")
    subprocess.run([saslpasswd2, "-f", str(tmp_path / "sasldb"), "-a", "memcached", "-c", "-p", "ops"],
                   input=b"pw", check=True, timeout=30)
    port = free_port()
    p = subprocess.Popen([SERVER, "-u", "root", "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-S"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "SASL_CONF_PATH": str(tmp_path)})
    try:
        wait_port(port)
        env = {**os.environ, "MEMKIT_PASSWORD": "pw"}
        run = cli_with_password(port, env)
        assert run("--username=ops", "set", "cli:k", "v")[0] == 0
        assert run("--username=ops", "get", "cli:k")[:2] == (0, "v\n")
        rc, out, _ = run("--username=ops", "stats")
        assert rc == 0 and "auth_cmds" in out
        rc, _, err = run("--binary", "get", "cli:k")
        assert rc == 2 and "authentication" in err
        rc, _, err = run("--username=ops", "get", "cli:k", env={k: v for k, v in env.items() if k != "MEMKIT_PASSWORD"})
        assert rc == 2 and "MEMKIT_PASSWORD" in err
    finally:
        p.kill()
        p.wait()


def test_ascii_auth_credentials(tmp_path):
    """--username --ascii-auth (password from $MEMKIT_PASSWORD) sends memcached's -Y token first."""
    (tmp_path / "users").write_text("ops:pw\n")
    port = free_port()
    p = subprocess.Popen([SERVER, "-u", "root", "-p", str(port), "-l", "127.0.0.1", "-U", "0",
                          "-Y", str(tmp_path / "users")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        env = {**os.environ, "MEMKIT_PASSWORD": "pw"}
        run = cli_with_password(port, env)
        assert run("--username=ops", "--ascii-auth", "set", "cli:y", "v")[0] == 0
        assert run("--username=ops", "--ascii-auth", "get", "cli:y")[:2] == (0, "v\n")
        rc, out, _ = run("--username=ops", "--ascii-auth", "stats")
        assert rc == 0 and "auth_cmds" in out
        rc, _, err = run("--username=ops", "--ascii-auth", "get", "cli:y", env={**env, "MEMKIT_PASSWORD": "no"})
        assert rc == 2 and "authentication" in err
        rc, _, err = run("get", "cli:y")
        assert rc == 2
    finally:
        p.kill()
        p.wait()


def test_binary_protocol_without_sasl(servers):
    assert mk(servers, "--binary", "set", "bin:k", "v")[0] == 0
    assert mk(servers, "--binary", "get", "bin:k")[:2] == (0, "v\n")
    assert mk(servers, "get", "bin:k")[:2] == (0, "v\n")  # the same item, whatever the protocol
    assert mk(servers, "--binary", "incr", "bin:n")[0] == 1  # a miss
    rc, out, _ = mk(servers, "--binary", "version")
    assert rc == 0 and "1.6" in out


def test_tls_options(tmp_path):
    """--tls with --tls-ca: the server's certificate must be signed by that CA and name the host given in
    --servers (or --tls-server-name); --tls-cert/--tls-key for mutual TLS; TLS options without --tls refused."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not installed (apt-get install openssl; scripts/deps.sh test)"

    def ssl(*args):
        subprocess.run([openssl, *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    for ca in ("ca", "clientca"):
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
            "-days", "2", "-subj", f"/CN=cli {ca}")
    for name, ca in (("srv", "ca"), ("client", "clientca")):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        (tmp_path / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    port = free_port()
    p = subprocess.Popen([SERVER, "-u", "root", "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-Z", "-o",
                          f"ssl_chain_cert={tmp_path}/srv.crt,ssl_key={tmp_path}/srv.key,ssl_verify_mode=2,"
                          f"ssl_ca_cert={tmp_path}/clientca.crt"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        run = cli_with_password(port, dict(os.environ))
        tls = ["--tls", f"--tls-ca={tmp_path}/ca.crt", f"--tls-cert={tmp_path}/client.crt",
               f"--tls-key={tmp_path}/client.key"]
        assert run(*tls, "set", "cli:t", "v")[0] == 0
        assert run(*tls, "get", "cli:t")[:2] == (0, "v\n")
        rc, out, _ = run(*tls, "stats")
        assert rc == 0 and "total_connections" in out
        rc, _, err = run(*tls, "--tls-server-name=cache.example", "get", "cli:t")
        assert rc == 2 and "TLS handshake failed" in err
        rc, _, err = run(*tls[:2], "get", "cli:t")       # no client certificate: refused by the server
        assert rc == 2
        rc, _, err = run("--tls-ca=/x.pem", "get", "cli:t")
        assert rc == 2 and "need tls" in err
        rc, _, err = run("--tls", "--tls-ca=/nonexistent.pem", "get", "cli:t")
        assert rc == 2 and "/nonexistent.pem" in err
    finally:
        p.kill()
        p.wait()
