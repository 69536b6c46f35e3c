"""Malformed input: exact error bytes, whether the connection stays open, and
whether the command stream stays in sync afterwards (checked with `version`)."""

import os
import random
import socket
import struct
import threading

import pytest


BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"


def _still_open_and_in_sync(conn):
    conn.version_sync()


@pytest.mark.parametrize("line", [b"foo", b"GET a", b"sett a 0 0 1", b"getx a", b"\x01\x02", b"", b"   "])
def test_unknown_command_is_error_and_connection_stays_open(conn, line):
    assert conn.cmd(line + b"\r\n") == b"ERROR\r\n"
    _still_open_and_in_sync(conn)


def test_key_of_250_bytes_accepted(conn):
    k = b"k" * 250
    assert conn.cmd(b"set %s 0 0 1\r\nx\r\n" % k) == b"STORED\r\n"
    assert conn.get(b"get %s\r\n" % k) == b"VALUE %s 0 1\r\nx\r\nEND\r\n" % k
    assert conn.cmd(b"delete %s\r\n" % k) == b"DELETED\r\n"


@pytest.mark.parametrize("tmpl", [b"get %s", b"gets %s", b"gat 0 %s", b"gats 0 %s", b"get a %s",
                                  b"delete %s", b"incr %s 1", b"decr %s 1", b"touch %s 0"])
def test_key_of_251_bytes_rejected(conn, tmpl):
    assert conn.cmd(tmpl % (b"k" * 251) + b"\r\n") == BAD_FORMAT
    _still_open_and_in_sync(conn)


@pytest.mark.parametrize("verb", [b"set", b"add", b"replace", b"append", b"prepend"])
def test_storage_key_of_251_bytes_rejected_and_data_line_is_parsed_as_command(conn, verb):
    # memcached does NOT swallow the data block of a rejected storage line:
    # the data line is read as a command ("x" -> ERROR).
    conn.send(b"%s %s 0 0 1\r\nx\r\n" % (verb, b"k" * 251))
    assert conn.read_line() == BAD_FORMAT
    assert conn.read_line() == b"ERROR\r\n"
    _still_open_and_in_sync(conn)


def test_control_bytes_in_keys_are_ordinary_key_bytes(conn):
    # Only ' ' separates tokens; tabs and other control bytes are part of the key.
    assert conn.cmd(b"set a\tb\x01 0 0 1\r\nx\r\n") == b"STORED\r\n"
    assert conn.get(b"get a\tb\x01\r\n") == b"VALUE a\tb\x01 0 1\r\nx\r\nEND\r\n"
    assert conn.get(b"get a\r\n") == b"END\r\n"


@pytest.mark.parametrize("line,reply", [
    (b"set bn 0 0 abc", BAD_FORMAT),         # bad length
    (b"set bn 0 0 -1", BAD_FORMAT),          # negative length
    (b"set bn abc 0 1", BAD_FORMAT),         # bad flags
    (b"set bn -1 0 1", BAD_FORMAT),          # negative flags
    (b"set bn 0 abc 1", BAD_FORMAT),         # bad exptime
    (b"cas bn 0 0 1 abc", BAD_FORMAT),       # bad cas unique
    (b"touch bn abc", b"CLIENT_ERROR invalid exptime argument\r\n"),
    (b"incr bn abc", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
    (b"decr bn -5", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
    (b"flush_all xyz", b"CLIENT_ERROR invalid exptime argument\r\n"),
    (b"verbosity xyz", BAD_FORMAT),
])
def test_bad_numbers(conn, line, reply):
    assert conn.cmd(line + b"\r\n") == reply
    # a rejected storage line leaves its data line to be parsed as a command
    if line.startswith((b"set", b"cas")):
        conn.send(b"1\r\n")
        assert conn.read_line() == b"ERROR\r\n"
    _still_open_and_in_sync(conn)


@pytest.mark.parametrize("line", [
    b"set", b"set k", b"set k 0", b"set k 0 0", b"set k 0 0 1 2 3",
    b"cas k 0 0 1", b"get", b"gets", b"gat", b"gats", b"incr", b"incr k", b"decr k",
    b"incr k 1 2 3", b"touch", b"touch k", b"delete", b"flush_all 1 2 3", b"verbosity",
    b"verbosity 1 2 3",
])
def test_wrong_token_counts_are_error(conn, line):
    assert conn.cmd(line + b"\r\n") == b"ERROR\r\n"
    _still_open_and_in_sync(conn)


def test_data_block_too_long_is_bad_data_chunk(conn):
    # vlen=3 but 4 bytes follow: memcached reads vlen+2 bytes ("abcd\r"), finds no
    # "\r\n" at the end, replies bad data chunk, and parses the leftover "\n" as an
    # (empty, unknown) command -> ERROR.
    conn.set("bd", "old")
    conn.send(b"set bd 0 0 3\r\nabcd\r\n")
    assert conn.read_line() == b"CLIENT_ERROR bad data chunk\r\n"
    assert conn.read_line() == b"ERROR\r\n"
    _still_open_and_in_sync(conn)
    assert conn.get(b"get bd\r\n") == b"VALUE bd 0 3\r\nold\r\nEND\r\n"   # not stored


def test_data_block_with_wrong_terminator_is_bad_data_chunk(conn):
    conn.send(b"set bd2 0 0 3\r\nabcXY")
    assert conn.read_line() == b"CLIENT_ERROR bad data chunk\r\n"
    _still_open_and_in_sync(conn)
    assert conn.get(b"get bd2\r\n") == b"END\r\n"


def test_data_block_short_then_blank_line(conn):
    conn.send(b"set bd3 0 0 3\r\nab\r\n\r\n")
    assert conn.read_line() == b"CLIENT_ERROR bad data chunk\r\n"
    assert conn.read_line() == b"ERROR\r\n"
    _still_open_and_in_sync(conn)


def test_item_over_item_size_max_rejected_and_stream_in_sync(server_factory):
    s = server_factory()
    with s.connect() as c:
        c.set("tl", "previous")
        big = 2 * 1024 * 1024
        c.send(b"set tl 0 0 %d\r\n" % big + b"x" * big + b"\r\nget tl\r\n")
        assert c.read_line() == b"SERVER_ERROR object too large for cache\r\n"
        # the data block was swallowed; and a failed *set* removes the old value
        assert c.read_until(b"END\r\n") == b"END\r\n"
        c.version_sync()


def test_too_large_append_keeps_old_value(server_factory):
    s = server_factory()
    with s.connect() as c:
        c.set("tla", "previous")
        big = 2 * 1024 * 1024
        c.send(b"append tla 0 0 %d\r\n" % big + b"x" * big + b"\r\n")
        assert c.read_line() == b"SERVER_ERROR object too large for cache\r\n"
        assert c.get(b"get tla\r\n") == b"VALUE tla 0 8\r\nprevious\r\nEND\r\n"


def test_long_line_without_newline_closes_connection(conn):
    # memcached: >2048 bytes buffered with no '\n' (and not a get/gets) -> close, no reply.
    conn.send(b"x" * 10240)
    assert conn.is_closed(3.0)
    assert conn.buf == b""


def test_long_set_line_without_newline_closes_connection(conn):
    conn.send(b"set " + b"k" * 10240)
    assert conn.is_closed(3.0)
    assert conn.buf == b""


def test_long_line_with_newline_is_just_an_error(conn):
    conn.send(b"x" * 3000 + b"\r\n")
    assert conn.read_line() == b"ERROR\r\n"
    _still_open_and_in_sync(conn)


def test_long_multiget_line_is_allowed(conn):
    keys = [b"lm%05d" % i for i in range(2000)]          # ~16 KB line
    conn.set("lm00007", "v")
    conn.send(b"get " + b" ".join(keys) + b"\r\n")
    assert conn.read_until(b"END\r\n") == b"VALUE lm00007 0 1\r\nv\r\nEND\r\n"


def test_long_get_line_without_newline_stays_open(conn):
    conn.send(b"get " + b"a" * 10240)
    assert not conn.is_closed(0.5)
    conn.send(b"\r\n")   # one 10240-byte key: too long
    assert conn.read_line() == BAD_FORMAT
    _still_open_and_in_sync(conn)


def test_nul_byte_ends_the_line(conn):
    conn.set("nul", "v")
    assert conn.get(b"get nul\x00junk\r\n") == b"VALUE nul 0 1\r\nv\r\nEND\r\n"


def test_leading_and_repeated_spaces_are_ignored(conn):
    conn.set("sp1", "v")
    assert conn.get(b"  get   sp1  \r\n") == b"VALUE sp1 0 1\r\nv\r\nEND\r\n"
    assert conn.cmd(b"set  sp1  0  0  1 \r\nw\r\n") == b"STORED\r\n"


def test_binary_garbage_does_not_hurt_server_or_other_connections(server):
    other = server.connect()
    other.set("bg", "safe")
    rng = random.Random(1234)
    for i in range(30):
        with server.connect() as c:
            n = rng.choice([1, 16, 100, 1000, 3000])
            data = bytes(rng.getrandbits(8) for _ in range(n))
            try:
                c.send(data)
                c.read_available(0.05)
            except OSError:
                pass
    # memcached binary-protocol magic byte followed by junk
    with server.connect() as c:
        try:
            c.send(b"\x80" + os.urandom(200))
            c.read_available(0.1)
        except OSError:
            pass
    assert server.alive(), server.stderr()
    assert other.get(b"get bg\r\n") == b"VALUE bg 0 4\r\nsafe\r\nEND\r\n"
    with server.connect() as c:
        c.version_sync()
    other.close()


def test_many_connections_open_and_close(server):
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", server.port))
        if i % 3 == 0:
            # abortive close (RST)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif i % 3 == 1:
            s.sendall(b"version\r\n")
        s.close()
    held = [server.connect() for _ in range(100)]
    for c in held:
        c.send(b"get x\r\n")
    for c in held:
        assert c.read_until(b"END\r\n") == b"END\r\n"
        c.close()
    assert server.alive()
    with server.connect() as c:
        c.version_sync()


def test_client_disconnect_mid_data_block(server):
    with server.connect() as c:
        c.send(b"set half 0 0 100\r\nonly-part")
    with server.connect() as c:
        assert c.get(b"get half\r\n") == b"END\r\n"


def test_concurrent_garbage_and_good_traffic(server):
    stop = threading.Event()

    def garbage():
        rng = random.Random(99)
        while not stop.is_set():
            try:
                with server.connect(timeout=1) as c:
                    c.send(bytes(rng.getrandbits(8) for _ in range(500)) + b"\r\n")
                    c.read_available(0.01)
            except OSError:
                pass

    t = threading.Thread(target=garbage)
    t.start()
    try:
        with server.connect() as c:
            for i in range(200):
                assert c.set("cg%d" % i, "v%d" % i) == b"STORED\r\n"
                assert c.get(b"get cg%d\r\n" % i) == b"VALUE cg%d 0 %d\r\nv%d\r\nEND\r\n" % (
                    i, len(b"v%d" % i), i)
    finally:
        stop.set()
        t.join()
    assert server.alive()
