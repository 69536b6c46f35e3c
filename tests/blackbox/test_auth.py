"""-Y: memcached's ASCII authentication. Until a connection sends "set <any key> <flags> <exptime> <n>"
with "<user> <password>" as its data, every line is answered "CLIENT_ERROR unauthenticated"; users come
from a file of "user:password" lines, reloaded on SIGHUP. The exact replies are memcached 1.6.18's
(these tests pass against it too, but for the few marked memkitd_only).
"""

import signal
import subprocess
import time

import pytest

from conftest import BIN, SLOW, base_args, free_port, memkitd_only, require_binary


def auth_line(user, password):
    token = b"%s %s" % (user, password)
    return b"set auth 0 0 %d\r\n%s\r\n" % (len(token), token)


@pytest.fixture
def authfile(tmp_path):
    p = tmp_path / "authfile"
    p.write_bytes(b"alice:s3cret\nbob:pa:ss\ncarol:x y\n")
    return p


@pytest.fixture
def auth_server(server_factory, authfile):
    return server_factory("-Y", str(authfile))


def test_unauthenticated_commands_are_refused_and_the_connection_kept(auth_server):
    with auth_server.connect() as c:
        for line in (b"get foo\r\n", b"version\r\n", b"stats\r\n", b"mg foo v\r\n", b"delete foo\r\n",
                     b"set foo 0 0\r\n", b"gets a b c d e f\r\n", b"flush_all\r\n"):
            assert c.cmd(line) == b"CLIENT_ERROR unauthenticated\r\n", line
        # memcached's own first check: a set whose data is not "user password"
        assert c.cmd(b"set foo 0 0 2\r\nhi\r\n") == b"CLIENT_ERROR bad authentication token format\r\n"
        assert c.cmd(auth_line(b"alice", b"s3cret")) == b"STORED\r\n"
        assert c.cmd(b"get foo\r\n") == b"END\r\n"          # nothing was stored before


def test_wrong_credentials_are_refused_and_counted(auth_server):
    with auth_server.connect() as c:
        for user, pw in ((b"alice", b"wrong"), (b"alice", b"s3cre"), (b"alice", b"s3crett"), (b"nobody", b"s3cret"),
                         (b"alice:s3cret", b"x"), (b"bob", b"pa")):
            assert c.cmd(auth_line(user, pw)) == b"CLIENT_ERROR authentication failure\r\n", (user, pw)
        assert c.cmd(b"get foo\r\n") == b"CLIENT_ERROR unauthenticated\r\n"
        assert c.cmd(auth_line(b"alice", b"s3cret")) == b"STORED\r\n"
        st = c.stats()
        assert (st["auth_cmds"], st["auth_errors"]) == ("7", "6")


def test_several_users_and_a_password_holding_a_colon(auth_server):
    for user, pw in ((b"alice", b"s3cret"), (b"bob", b"pa:ss")):
        with auth_server.connect() as c:
            assert c.cmd(auth_line(user, pw)) == b"STORED\r\n", user
            assert c.set(b"who_" + user, user) == b"STORED\r\n"
            assert c.get(b"get who_alice\r\n").startswith(b"VALUE who_alice 0 5\r\nalice\r\n")


def test_only_two_tokens_are_read_and_extra_ones_ignored(auth_server):
    """memcached reads the first two space-separated tokens: carol's "x y" password cannot be sent."""
    with auth_server.connect() as c:
        assert c.cmd(b"set a 0 0 7\r\ncarol x\r\n") == b"CLIENT_ERROR authentication failure\r\n"
        assert c.cmd(b"set a 0 0 17\r\nalice s3cret junk\r\n") == b"STORED\r\n"


def test_data_block_must_end_in_crlf(auth_server):
    with auth_server.connect() as c:
        assert c.cmd(b"set a 0 0 12\r\nalice s3cretXY") == b"CLIENT_ERROR bad command line termination\r\n"
        assert c.cmd(b"get a\r\n") == b"CLIENT_ERROR unauthenticated\r\n"


def test_authenticated_connection_speaks_text_and_meta(auth_server):
    with auth_server.connect() as c:
        c.send(auth_line(b"alice", b"s3cret") + b"set k 5 0 2\r\nhi\r\nmg k v f\r\nincr n 1\r\n")
        assert c.read_line() == b"STORED\r\n"
        assert c.read_line() == b"STORED\r\n"
        assert c.read_line() == b"VA 2 f5\r\n"
        assert c.read_line() == b"hi\r\n"
        assert c.read_line() == b"NOT_FOUND\r\n"


def test_stats_settings_names_the_file(auth_server, authfile):
    with auth_server.connect() as c:
        c.cmd(auth_line(b"alice", b"s3cret"))
        st = c.stats("settings")
        assert st["auth_enabled_ascii"] == str(authfile)
        assert st["binding_protocol"] == "ascii"


def test_sighup_reloads_the_file(auth_server, authfile):
    authfile.write_bytes(b"dave:newpw\n")
    auth_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5 * SLOW        # (memcached reloads on its next clock tick)
    while True:
        with auth_server.connect() as c:
            if c.cmd(auth_line(b"dave", b"newpw")) == b"STORED\r\n":
                break
        assert time.monotonic() < deadline, "dave never accepted"
        time.sleep(0.1)
    with auth_server.connect() as c:
        assert c.cmd(auth_line(b"alice", b"s3cret")) == b"CLIENT_ERROR authentication failure\r\n"
    # a file that cannot be used keeps the users loaded before
    authfile.write_bytes(b"no colon here\n")
    auth_server.proc.send_signal(signal.SIGHUP)
    time.sleep(1.5 * SLOW)
    assert auth_server.proc.poll() is None
    with auth_server.connect() as c:
        assert c.cmd(auth_line(b"dave", b"newpw")) == b"STORED\r\n"


@memkitd_only
def test_pipelined_refusals_each_get_their_reply(auth_server):
    """memcached 1.6.18 writes every refusal of one read into the same reply buffer, so the
    first is overwritten by the last (garbled bytes); memkitd answers each line in order."""
    with auth_server.connect() as c:
        c.send(b"set foo 0 0 2\r\nhi\r\nget foo\r\n" + auth_line(b"alice", b"s3cret") + b"get foo\r\n")
        assert c.read_line() == b"CLIENT_ERROR bad authentication token format\r\n"
        assert c.read_line() == b"CLIENT_ERROR unauthenticated\r\n"
        assert c.read_line() == b"STORED\r\n"
        assert c.read_line() == b"END\r\n"


@memkitd_only
def test_crlf_line_ends_and_blank_lines_in_the_file(server_factory, tmp_path):
    """memcached 1.6.18 calls such a file malformed; memkitd reads it as meant."""
    f = tmp_path / "authfile"
    f.write_bytes(b"\nalice:s3cret\r\n\r\nbob:pw\r\n")
    s = server_factory("-Y", str(f))
    for user, pw in ((b"alice", b"s3cret"), (b"bob", b"pw")):
        with s.connect() as c:
            assert c.cmd(auth_line(user, pw)) == b"STORED\r\n", user


@memkitd_only
def test_an_oversized_token_is_refused_and_the_connection_closed(auth_server):
    """memcached waits for all n bytes of an unauthenticated client's block (up to 4 GB); memkitd
    refuses blocks over 4096 bytes at once."""
    with auth_server.connect() as c:
        assert c.cmd(b"set a 0 0 1000000000\r\n") == b"CLIENT_ERROR bad authentication token format\r\n"
        assert c.is_closed()


@memkitd_only
def test_a_long_line_without_newline_closes_the_connection(auth_server):
    with auth_server.connect() as c:
        c.send(b"x" * 3000)
        assert c.is_closed()


def _start_fails(*args):
    require_binary()
    return subprocess.run([BIN, *base_args(free_port()), *args], capture_output=True, timeout=30)


@pytest.mark.parametrize("extra", [("-B", "binary"), ("-B", "auto"), ("-U", "11299")],
                         ids=["binary", "auto", "udp"])
def test_Y_with_binary_or_udp_does_not_start(authfile, extra):
    p = _start_fails("-Y", str(authfile), *extra)
    assert p.returncode != 0


@memkitd_only
@pytest.mark.parametrize("content", [b"no colon\n", b":nouser\n", b""], ids=["no-colon", "no-user", "empty"])
def test_unusable_file_does_not_start_with_one_line(tmp_path, content):
    f = tmp_path / "authfile"
    f.write_bytes(content)
    for path in (str(f), str(tmp_path / "missing")):
        p = _start_fails("-Y", path)
        assert p.returncode == 1
        lines = p.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and path in lines[0], lines
