"""SASL authentication (-S) over the binary protocol: Debian's libsasl2 (PLAIN and CRAM-MD5 against a
sasldb made with saslpasswd2, configured by a memcached.conf as memcached is), memcached's password file
($MEMCACHED_SASL_PWDB), what an unauthenticated client may do, the counters, and real clients with
credentials (pylibmc, Dalli, php-memcached).

Passes against memcached 1.6.18 too (MEMKITD=/usr/bin/memcached), except the password-file tests:
Debian builds memcached without --enable-sasl-pwdb.
"""

import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import HOST, Server, binary_is_memcached
from test_binary import (BinConn, req, set_extras, run_dalli_script, DALLI_EXPECTED, GET, SET, NOOP, VERSION,
                         STAT)

SASL_LIST, SASL_AUTH, SASL_STEP = 0x20, 0x21, 0x22
AUTH_ERROR, AUTH_CONTINUE = 0x20, 0x21
SASLPASSWD2 = shutil.which("saslpasswd2") or ("/usr/sbin/saslpasswd2" if os.path.exists("/usr/sbin/saslpasswd2")
                                               else None)
USER, PASSWORD = "alice", "s3cret"


def plain(user, password):
    return b"\0" + user.encode() + b"\0" + password.encode()


@pytest.fixture(scope="module")
def sasl_conf():
    """A memcached.conf (mech_list: plain cram-md5) and a sasldb holding alice's password for this host's realm."""
    if SASLPASSWD2 is None:
        pytest.skip("saslpasswd2 is not installed (apt-get install sasl2-bin)")
    d = tempfile.mkdtemp(prefix="memkit-sasl-")
    db = os.path.join(d, "sasldb")
    with open(os.path.join(d, "memcached.conf"), "w") as f:
        f.write(f"mech_list: plain cram-md5\nsasldb_path: {db}\n")
    subprocess.run([SASLPASSWD2, "-f", db, "-a", "memcached", "-c", "-p", USER], input=PASSWORD.encode(),
                   check=True, timeout=30)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(monkeypatch, conf, *args, pwdb=None):
    monkeypatch.setenv("SASL_CONF_PATH", conf)
    if pwdb:
        monkeypatch.setenv("MEMCACHED_SASL_PWDB", pwdb)
    else:
        monkeypatch.delenv("MEMCACHED_SASL_PWDB", raising=False)
    return Server(["-S", *args])


@pytest.fixture
def sasl_server(sasl_conf, monkeypatch):
    s = start(monkeypatch, sasl_conf)
    yield s
    s.stop()


def auth(b, user=USER, password=PASSWORD, mech=b"PLAIN"):
    return b.call(SASL_AUTH, mech, value=plain(user, password))


def test_unauthenticated_requests_are_refused_and_the_connection_closed(sasl_server):
    for op, args in [(GET, (b"k",)), (SET, (b"k", set_extras(), b"v")), (NOOP, ()), (STAT, ())]:
        with BinConn(sasl_server.connect()) as b:
            f = b.call(op, *args)
            assert (f.status, f.value) == (AUTH_ERROR, b"Auth failure."), op
            assert b.is_closed(5.0)


def test_version_and_the_mechanism_list_need_no_authentication(sasl_server):
    with BinConn(sasl_server.connect()) as b:
        assert b.call(VERSION).status == 0
        f = b.call(SASL_LIST)
        assert f.status == 0 and set(f.value.split()) == {b"PLAIN", b"CRAM-MD5"}


def test_plain_with_the_right_password_opens_the_connection(sasl_server):
    with BinConn(sasl_server.connect()) as b:
        f = auth(b, password="wrong")
        assert (f.status, f.value) == (AUTH_ERROR, b"Auth failure.")
        assert not b.is_closed(0.3)  # a failed attempt keeps the connection: the client may try again
        f = auth(b)
        assert (f.status, f.value) == (0, b"Authenticated")
        b.set("sasl_k", b"v")
        assert b.value("sasl_k") == b"v"
        assert b.until_noop() == []


def test_unknown_user_and_step_without_start_fail(sasl_server):
    with BinConn(sasl_server.connect()) as b:
        assert auth(b, user="mallory").status == AUTH_ERROR
        assert b.call(SASL_STEP, b"PLAIN", value=plain(USER, PASSWORD)).status == AUTH_ERROR
        assert b.call(SASL_AUTH, b"NOSUCHMECH", value=b"x").status == AUTH_ERROR


def test_a_new_authentication_starts_unauthenticated(sasl_server):
    """memcached resets a connection's authentication at every SASL request: a failed one locks it again."""
    with BinConn(sasl_server.connect()) as b:
        assert auth(b).status == 0
        assert auth(b, password="wrong").status == AUTH_ERROR
        assert b.call(GET, b"k").status == AUTH_ERROR
        assert b.is_closed(5.0)


def test_cram_md5_takes_a_challenge_and_a_step(sasl_server):
    with BinConn(sasl_server.connect()) as b:
        f = b.call(SASL_AUTH, b"CRAM-MD5")
        assert f.status == AUTH_CONTINUE and f.value.startswith(b"<")
        digest = hmac.new(PASSWORD.encode(), f.value, hashlib.md5).hexdigest()
        f = b.call(SASL_STEP, b"CRAM-MD5", value=f"{USER} {digest}".encode())
        assert (f.status, f.value) == (0, b"Authenticated")
        assert b.call(GET, b"nothing").status == 0x0001


def stat_group(b, group=b""):
    """A binary STAT request's statistics, up to its empty terminator."""
    b.send(req(STAT, group))
    out = {}
    while True:
        f = b.read_frame()
        if f.keylen == 0:
            return out
        out[f.key] = f.value


def test_counters_and_settings(sasl_server):
    with BinConn(sasl_server.connect()) as b:
        auth(b, password="bad")
        auth(b, password="worse")
        assert auth(b).status == 0
        stats = stat_group(b)
        assert (stats[b"auth_cmds"], stats[b"auth_errors"]) == (b"3", b"2")
        settings = stat_group(b, b"settings")
        assert settings[b"auth_enabled_sasl"] == b"yes"
        assert settings[b"binding_protocol"] == b"binary"


def test_the_text_protocol_is_refused(sasl_server):
    with sasl_server.connect() as c:
        c.send(b"set k 0 0 1\r\nv\r\nget k1 k2 k3\r\n")  # 24 bytes or more: a binary header with a bad magic
        assert c.is_closed(5.0)
        assert c.buf == b""


@pytest.mark.parametrize("proto", ["ascii", "auto"])
def test_S_with_a_text_protocol_does_not_start(sasl_conf, monkeypatch, proto):
    monkeypatch.setenv("SASL_CONF_PATH", sasl_conf)
    from conftest import BIN, base_args, free_port
    p = subprocess.run([BIN, *base_args(free_port()), "-S", "-B", proto], capture_output=True, timeout=30)
    assert p.returncode != 0
    if not binary_is_memcached():
        lines = p.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "binary" in lines[0], lines


@pytest.mark.skipif(binary_is_memcached(), reason="memkitd's message")
def test_S_without_a_configuration_does_not_start(monkeypatch, tmp_path):
    if os.path.exists("/etc/sasl/memcached.conf") or os.path.exists("/etc/sasl2/memcached.conf"):
        pytest.skip("this machine has a system-wide memcached.conf")
    monkeypatch.delenv("SASL_CONF_PATH", raising=False)
    from conftest import BIN, base_args, free_port
    p = subprocess.run([BIN, *base_args(free_port()), "-S"], capture_output=True, timeout=30)
    assert p.returncode == 1
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "SASL_CONF_PATH" in lines[0], lines


# ------------------------------------------------------------------ memcached's password file

@pytest.fixture
def pwdb_server(monkeypatch, tmp_path):
    if binary_is_memcached():
        pytest.skip("Debian's memcached is built without --enable-sasl-pwdb")
    (tmp_path / "memcached.conf").write_text("mech_list: plain\n")
    host = socket.gethostname()
    (tmp_path / "pwdb").write_text(f"bob:pw2:ignored\ncarol@{host}:pw3\n")
    s = start(monkeypatch, str(tmp_path), pwdb=str(tmp_path / "pwdb"))
    yield s
    s.stop()


@pytest.mark.parametrize("user,password,ok", [("bob", "pw2", True), ("bob", "pw", False), ("bob", "pw22", False),
                                              ("carol", "pw3", True), ("dave", "pw2", False)])
def test_password_file(pwdb_server, user, password, ok):
    with BinConn(pwdb_server.connect()) as b:
        assert auth(b, user, password).status == (0 if ok else AUTH_ERROR)


# ------------------------------------------------------------------ real clients with credentials

def test_pylibmc_binary_with_username_and_password(sasl_server):
    import pylibmc
    good = pylibmc.Client([f"{HOST}:{sasl_server.port}"], binary=True, username=USER, password=PASSWORD)
    assert good.set("sasl_py", "v")
    assert good.get("sasl_py") == "v"
    assert good.get_multi(["sasl_py", "nope"]) == {"sasl_py": "v"}
    bad = pylibmc.Client([f"{HOST}:{sasl_server.port}"], binary=True, username=USER, password="nope")
    with pytest.raises(pylibmc.Error):
        bad.set("sasl_py", "w")
    assert good.get("sasl_py") == "v"


RUBY = shutil.which("ruby")


def test_ruby_dalli_with_username_and_password(sasl_server):
    if RUBY is None or subprocess.run([RUBY, "-e", 'require "dalli"'], capture_output=True,
                                      timeout=60).returncode != 0:
        pytest.skip("ruby or ruby-dalli is not installed")
    script = r'''
require "dalli"
port = ARGV[0]
good = Dalli::Client.new("127.0.0.1:#{port}", username: ARGV[1], password: ARGV[2], socket_max_failures: 1)
good.set("sasl_rb", "v", 0, raw: true)
puts "OUT " + good.get("sasl_rb", raw: true)
bad = Dalli::Client.new("127.0.0.1:#{port}", username: ARGV[1], password: "nope", socket_max_failures: 1)
begin
  bad.get("sasl_rb")
  puts "OUT no-error"
rescue Dalli::DalliError => e
  puts "OUT refused"
end
'''
    p = subprocess.run([RUBY, "-e", script, str(sasl_server.port), USER, PASSWORD], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    out = [line[4:] for line in p.stdout.decode().splitlines() if line.startswith("OUT ")]  # (Dalli logs too)
    assert out == ["v", "refused"]


def test_ruby_dalli_every_command_with_credentials(sasl_server):
    """Dalli's whole command list (get, set, add, replace, delete, incr/decr, cas, get_multi, touch,
    append, prepend, stats) on an authenticated connection answers as without SASL."""
    assert run_dalli_script(sasl_server.port, USER, PASSWORD) == DALLI_EXPECTED


PHP = shutil.which("php")


def test_php_memcached_with_sasl_auth_data(sasl_server):
    if PHP is None or subprocess.run([PHP, "-r", 'exit(class_exists("Memcached") && Memcached::HAVE_SASL ? 0 : 1);'],
                                     capture_output=True, timeout=60).returncode != 0:
        pytest.skip("php-memcached (with SASL) is not installed")
    script = r'''
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->addServer("127.0.0.1", (int)$argv[1]);
$m->setSaslAuthData($argv[2], $argv[3]);
var_export($m->set("sasl_php", "v")); echo "\n";
var_export($m->get("sasl_php")); echo "\n";
'''
    out = []
    for password in (PASSWORD, "nope"):
        p = subprocess.run([PHP, "-r", script, "--", str(sasl_server.port), USER, password], capture_output=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
        out.append(p.stdout.decode().split())
    assert out == [["true", "'v'"], ["false", "false"]]
