"""The meta protocol (mg ms md ma mn me) over a raw socket, one command at a time, asserting exact bytes.

These hold for memcached 1.6.18 too (MEMKITD=/usr/bin/memcached runs them against it), except
where a test says memkitd differs on purpose. tests/diff/difftest.py compares random meta
streams with memcached byte for byte; this file pins the behaviour a client relies on:
stale-while-revalidate, exactly one winner under concurrency, quiet pipelines, errors.
"""

import re
import threading
import time

import pytest

from conftest import Conn, binary_is_memcached


def cas_of(line):
    m = re.search(rb" c(\d+)", line)
    assert m, line
    return int(m.group(1))


# ------------------------------------------------------------------ mg / ms basics

def test_mg_miss_is_EN_and_quiet_miss_is_silent(conn):
    assert conn.cmd(b"mg mt_none v\r\n") == b"EN\r\n"
    assert conn.cmd(b"mg mt_none v q\r\nmn\r\n") == b"MN\r\n"


def test_ms_then_mg_value_flags_size_ttl(conn):
    assert conn.cmd(b"ms mt_a 5 F42 T0\r\nhello\r\n") == b"HD\r\n"
    conn.send(b"mg mt_a v f s t\r\n")
    assert conn.read_line() == b"VA 5 f42 s5 t-1\r\n"
    assert conn.read_line() == b"hello\r\n"
    assert conn.cmd(b"mg mt_a\r\n") == b"HD\r\n"


def test_mg_echoes_opaque_and_key_in_request_order(conn):
    conn.cmd(b"ms mt_o 1\r\nx\r\n")
    assert conn.cmd(b"mg mt_o Oab12 k\r\n") == b"HD Oab12 kmt_o\r\n"
    assert conn.cmd(b"mg mt_o k Oab12\r\n") == b"HD kmt_o Oab12\r\n"
    assert conn.cmd(b"mg mt_o_missing k O7\r\n") == b"EN kmt_o_missing O7\r\n"


def test_mg_cas_matches_gets(conn):
    conn.cmd(b"ms mt_c 1\r\nx\r\n")
    line = conn.cmd(b"mg mt_c c\r\n")
    assert conn.get(b"gets mt_c\r\n") == b"VALUE mt_c 0 1 %d\r\nx\r\nEND\r\n" % cas_of(line)


def test_mg_T_touches_and_t_reports_seconds_left(conn):
    conn.cmd(b"ms mt_t 1 T100\r\nx\r\n")
    assert conn.cmd(b"mg mt_t t\r\n") in (b"HD t100\r\n", b"HD t99\r\n")
    assert conn.cmd(b"mg mt_t T0 t\r\n") == b"HD t-1\r\n"
    # t before T shows the expiry T is about to replace, as memcached applies flags in order
    assert conn.cmd(b"mg mt_t t T30\r\n") == b"HD t-1\r\n"
    assert conn.cmd(b"mg mt_t t\r\n") in (b"HD t30\r\n", b"HD t29\r\n")


def test_mg_h_reports_hit_before_and_u_leaves_it(conn):
    conn.cmd(b"ms mt_h 1 T100\r\nx\r\n")
    assert conn.cmd(b"mg mt_h h u\r\n") == b"HD h0\r\n"
    assert conn.cmd(b"mg mt_h h\r\n") == b"HD h0\r\n"
    assert conn.cmd(b"mg mt_h h\r\n") == b"HD h1\r\n"


def test_mg_l_counts_seconds_since_written(conn):
    conn.cmd(b"ms mt_l 1\r\nx\r\n")
    time.sleep(2.2)
    line = conn.cmd(b"mg mt_l l\r\n")
    assert re.match(rb"^HD l([1-9]\d*)\r\n$", line), line


def test_ms_modes_add_replace_append_prepend(conn):
    assert conn.cmd(b"ms mt_m 1 MR\r\nx\r\n") == b"NS\r\n"
    assert conn.cmd(b"ms mt_m 1 ME\r\nb\r\n") == b"HD\r\n"
    assert conn.cmd(b"ms mt_m 1 ME\r\nz\r\n") == b"NS\r\n"
    assert conn.cmd(b"ms mt_m 1 MA\r\nc\r\n") == b"HD\r\n"
    assert conn.cmd(b"ms mt_m 1 MP\r\na\r\n") == b"HD\r\n"
    conn.send(b"mg mt_m v\r\n")
    assert conn.read_line() + conn.read_line() == b"VA 3\r\nabc\r\n"
    assert conn.cmd(b"ms mt_m 1 MR\r\nr\r\n") == b"HD\r\n"
    assert conn.cmd(b"ms mt_m_none 1 MA\r\nx\r\n") == b"NS\r\n"


def test_ms_cas_compare_and_return(conn):
    line = conn.cmd(b"ms mt_cas 1 c\r\nx\r\n")
    assert line.startswith(b"HD c")
    cas = cas_of(line)
    assert conn.cmd(b"ms mt_cas 1 C%d\r\ny\r\n" % (cas + 1)) == b"EX\r\n"
    assert conn.cmd(b"ms mt_cas_none 1 C5\r\ny\r\n") == b"NF\r\n"
    assert conn.cmd(b"ms mt_cas 1 C%d\r\ny\r\n" % cas) == b"HD\r\n"
    # append respects a supplied cas too
    assert conn.cmd(b"ms mt_cas 1 MA C%d\r\nz\r\n" % cas) == b"EX\r\n"


def test_ms_quiet_hides_only_HD(conn):
    assert conn.cmd(b"ms mt_q 1 q\r\nx\r\nms mt_q 1 q MR C1\r\ny\r\nmn\r\n") == b"EX\r\n"
    assert conn.read_line() == b"MN\r\n"


def test_ms_k_and_O_echo(conn):
    assert conn.cmd(b"ms mt_ko 1 k O99\r\nx\r\n") == b"HD kmt_ko O99\r\n"


def test_base64_keys_round_trip(conn):
    # "bWtfYg==" is base64 for "mk_b"
    assert conn.cmd(b"ms bWtfYg== 2 b\r\nhi\r\n") == b"HD\r\n"
    conn.send(b"mg bWtfYg== b k v\r\n")
    assert conn.read_line() + conn.read_line() == b"VA 2 kbWtfYg== b\r\nhi\r\n"
    # the classic protocol sees the decoded key
    assert conn.get(b"get mk_b\r\n") == b"VALUE mk_b 0 2\r\nhi\r\nEND\r\n"
    assert conn.cmd(b"mg !!!! b v\r\n") == b"CLIENT_ERROR error decoding key\r\n"


# ------------------------------------------------------------------ md / ma / mn / me

def test_md_delete_quiet_and_cas(conn):
    line = conn.cmd(b"ms mt_d 1 c\r\nx\r\n")
    cas = cas_of(line)
    assert conn.cmd(b"md mt_d C%d\r\n" % (cas + 1)) == b"EX\r\n"
    assert conn.cmd(b"md mt_d q k\r\nmd mt_d k O1\r\n") == b"NF kmt_d O1\r\n"
    assert conn.cmd(b"mg mt_d\r\n") == b"EN\r\n"


def test_ma_incr_decr_vivify_and_value(conn):
    assert conn.cmd(b"ma mt_n\r\n") == b"NF\r\n"
    assert conn.cmd(b"ma mt_n N0 J10 v\r\n") + conn.read_line() == b"VA 2\r\n10\r\n"
    assert conn.cmd(b"ma mt_n D5 v\r\n") + conn.read_line() == b"VA 2\r\n15\r\n"
    assert conn.cmd(b"ma mt_n MD D20 v\r\n") + conn.read_line() == b"VA 1\r\n0\r\n"
    assert conn.cmd(b"ma mt_n q\r\nmn\r\n") == b"MN\r\n"
    assert conn.cmd(b"ms mt_n 3\r\nabc\r\n") == b"HD\r\n"
    assert conn.cmd(b"ma mt_n\r\n") == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"


def test_ma_cas_mismatch_is_EX(conn):
    conn.cmd(b"ms mt_nc 1\r\n5\r\n")
    cas = cas_of(conn.cmd(b"mg mt_nc c\r\n"))
    assert conn.cmd(b"ma mt_nc C%d\r\n" % (cas + 7)) == b"EX\r\n"
    assert conn.cmd(b"ma mt_nc C%d v\r\n" % cas) + conn.read_line() == b"VA 1\r\n6\r\n"


def test_mn_closes_a_quiet_pipeline_with_opaques(conn):
    conn.cmd(b"ms mt_p1 1\r\na\r\n")
    conn.send(b"mg mt_p1 v q O1\r\nmg mt_p2 v q O2\r\nmg mt_p1 v q O3\r\nmn\r\n")
    got = conn.read_until(b"MN\r\n")
    assert got == b"VA 1 O1\r\na\r\nVA 1 O3\r\na\r\nMN\r\n"


def test_me_reports_item_or_EN(conn):
    conn.cmd(b"ms mt_me 3 T0\r\nabc\r\n")
    line = conn.cmd(b"me mt_me\r\n")
    assert re.match(rb"^ME mt_me exp=-1 la=\d+ cas=\d+ fetch=no cls=\d+ size=\d+\r\n$", line), line
    assert conn.cmd(b"me mt_me_none\r\n") == b"EN\r\n"


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("line,reply", [
    (b"mg\r\n", b"ERROR\r\n"),
    (b"mz key\r\n", b"ERROR\r\n"),
    (b"mg k zz\r\n", b"CLIENT_ERROR invalid flag\r\n"),
    (b"mg k v v\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
    (b"mg k Tx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
    (b"mg k O" + b"o" * 40 + b"\r\n", b"CLIENT_ERROR opaque token too long\r\n"),
    (b"mg " + b"K" * 251 + b" v\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"mg k " + b" ".join(b"O%d" % i for i in range(25)) + b"\r\n", b"CLIENT_ERROR options flags are too long\r\n"),
    (b"md k v v\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
    (b"ma k MX\r\n", b"CLIENT_ERROR invalid mode for ma M token\r\n"),
    (b"ma k Dx\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
    (b"ms k\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"ms k abc\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"me\r\n", b"CLIENT_ERROR bad command line format\r\n"),
])
def test_meta_errors_match_memcached(conn, line, reply):
    assert conn.cmd(line) == reply
    conn.version_sync()


def test_refused_ms_swallows_its_data_block(conn):
    assert conn.cmd(b"ms mt_e 2 MX\r\nhi\r\n") == b"CLIENT_ERROR invalid mode for ms M token\r\n"
    # a bad chunk is reported even to q; the byte after the 2 tail bytes is read as the next line
    assert conn.cmd(b"ms mt_e 2 q\r\nhiX\r\n") == b"CLIENT_ERROR bad data chunk\r\n"
    assert conn.read_line() == b"ERROR\r\n"
    conn.version_sync()


def test_errors_are_sent_even_when_quiet(conn):
    assert conn.cmd(b"mg k zz q\r\n") == b"CLIENT_ERROR invalid flag\r\n"


# ------------------------------------------------------------------ stale-while-revalidate

def test_md_I_marks_stale_and_one_client_wins(conn):
    conn.cmd(b"ms mt_s 2 T100\r\nv1\r\n")
    assert conn.cmd(b"md mt_s I T30\r\n") == b"HD\r\n"
    conn.send(b"mg mt_s v t\r\n")
    assert conn.read_line() in (b"VA 2 t30 X W\r\n", b"VA 2 t29 X W\r\n")
    assert conn.read_line() == b"v1\r\n"
    conn.send(b"mg mt_s v\r\n")
    assert conn.read_line() == b"VA 2 Z X\r\n"
    assert conn.read_line() == b"v1\r\n"
    # the winner recaches: the new value is fresh again
    assert conn.cmd(b"ms mt_s 2 T100\r\nv2\r\n") == b"HD\r\n"
    conn.send(b"mg mt_s v\r\n")
    assert conn.read_line() + conn.read_line() == b"VA 2\r\nv2\r\n"


def test_ms_I_with_an_older_cas_writes_a_stale_value(conn):
    cas = cas_of(conn.cmd(b"ms mt_si 2 T100 c\r\nv1\r\n"))
    assert conn.cmd(b"md mt_si I\r\n") == b"HD\r\n"   # new cas, stale
    assert conn.cmd(b"ms mt_si 2 I C%d\r\nv2\r\n" % cas) == b"HD\r\n"
    conn.send(b"mg mt_si v\r\n")
    assert conn.read_line() == b"VA 2 X W\r\n"
    assert conn.read_line() == b"v2\r\n"


def test_N_vivifies_a_miss_once(conn):
    assert conn.cmd(b"mg mt_v N30 s\r\n") == b"HD s0 W\r\n"
    assert conn.cmd(b"mg mt_v N30 s\r\n") == b"HD s0 Z\r\n"


def test_R_hands_out_a_win_when_the_ttl_runs_low(conn):
    conn.cmd(b"ms mt_r 1 T10\r\nx\r\n")
    assert conn.cmd(b"mg mt_r R5\r\n") == b"HD\r\n"
    assert conn.cmd(b"mg mt_r R30\r\n") == b"HD W\r\n"
    assert conn.cmd(b"mg mt_r R30\r\n") == b"HD Z\r\n"


def _race(port, nclients, line):
    """nclients connections send `line` at the same instant; returns their replies."""
    conns = [Conn(port=port) for _ in range(nclients)]
    go = threading.Barrier(nclients)
    out = [None] * nclients

    def run(i):
        go.wait()
        out[i] = conns[i].cmd(line)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(nclients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for c in conns:
        c.close()
    return out


@pytest.mark.parametrize("round_", range(3))
def test_herd_exactly_one_winner_for_a_miss(server, round_):
    key = b"mt_herd_miss_%d" % round_
    replies = _race(server.port, 64, b"mg %s N30 s\r\n" % key)
    assert sorted(replies) == sorted([b"HD s0 W\r\n"] + [b"HD s0 Z\r\n"] * 63)


@pytest.mark.parametrize("round_", range(3))
def test_herd_exactly_one_winner_for_a_stale_item(server, round_):
    key = b"mt_herd_stale_%d" % round_
    with Conn(port=server.port) as c:
        c.cmd(b"ms %s 1 T100\r\nx\r\n" % key)
        assert c.cmd(b"md %s I\r\n" % key) == b"HD\r\n"
    replies = _race(server.port, 64, b"mg %s\r\n" % key)
    assert sorted(replies) == sorted([b"HD X W\r\n"] + [b"HD Z X\r\n"] * 63)


def test_counters_count_meta_as_memcached(fconn):
    fconn.cmd(b"ms mt_st 1\r\nx\r\n")
    fconn.cmd(b"mg mt_st\r\n")
    fconn.cmd(b"mg mt_st_none\r\n")
    fconn.cmd(b"mg mt_st T30\r\n")
    st = fconn.stats()
    assert (st["cmd_set"], st["get_hits"], st["get_misses"], st["cmd_touch"], st["touch_hits"]) == \
        ("1", "1", "1", "1", "1")


@pytest.mark.skipif(binary_is_memcached(), reason="memkitd's documented difference")
def test_me_size_is_memkit_item_size(conn):
    conn.cmd(b"ms mt_me2 3\r\nabc\r\n")
    line = conn.cmd(b"me mt_me2\r\n")
    size = int(re.search(rb"size=(\d+)", line).group(1))
    assert 3 + 6 <= size <= 3 + 6 + 16, line


# ------------------------------------------------------------------ newer than 1.6.18: E, md x, ms s
# memcached 1.6.27 added these; 1.6.18 (the reference elsewhere) answers "CLIENT_ERROR invalid flag".
# The expected bytes follow memcached 1.6.27+'s proto_text.c/proto_parser.c.

newer = pytest.mark.skipif(binary_is_memcached(), reason="memcached 1.6.18 predates E, x and ms s")


def va(conn, line):
    """Send a request; its reply line, with the value line after it when the reply is VA."""
    head = conn.cmd(line)
    return head + conn.read_line() if head.startswith(b"VA ") else head


@newer
def test_E_sets_the_unique_of_every_kind_of_write(conn):
    assert conn.cmd(b"ms mt_e 1 E100 c\r\na\r\n") == b"HD c100\r\n"
    assert va(conn, b"mg mt_e c v\r\n") == b"VA 1 c100\r\na\r\n"
    assert conn.get(b"gets mt_e\r\n") == b"VALUE mt_e 0 1 100\r\na\r\nEND\r\n"
    # an explicit unique is a cas like any other
    assert conn.cmd(b"ms mt_e 1 C99\r\nb\r\n") == b"EX\r\n"
    assert conn.cmd(b"ms mt_e 1 C100 E7 c\r\nb\r\n") == b"HD c7\r\n"
    # append keeps E; without E the joined value gets a fresh unique
    assert conn.cmd(b"ms mt_e 1 MA E200 c\r\nc\r\n") == b"HD c200\r\n"
    fresh = cas_of(conn.cmd(b"ms mt_e 1 MA c\r\nd\r\n"))
    assert fresh not in (7, 200)
    # md I E: stale with that unique
    assert conn.cmd(b"md mt_e I E300\r\n") == b"HD\r\n"
    assert va(conn, b"mg mt_e c v\r\n") == b"VA 3 c300 X W\r\nbcd\r\n"
    # ma E, on a hit and when N creates the counter
    assert va(conn, b"ma mt_e_n N0 J5 E400 c v\r\n") == b"VA 1 c400\r\n5\r\n"
    assert va(conn, b"ma mt_e_n E500 c v\r\n") == b"VA 1 c500\r\n6\r\n"
    # mg N E: the vivified placeholder
    assert va(conn, b"mg mt_e_viv N30 E600 c v\r\n") == b"VA 0 c600 W\r\n\r\n"
    assert conn.cmd(b"ms mt_e 1 Exyz\r\nz\r\n") == b"CLIENT_ERROR bad token in command line format\r\n"


@newer
def test_E_regression_a_small_explicit_unique_is_not_taken_for_flushed(conn):
    # memkitd orders flush_all by allocation; a client's unique must not be read as an old allocation
    for value in (b"z", b"y"):  # before and after a flush_all
        assert conn.cmd(b"ms mt_e_f 1 E1\r\n%s\r\n" % value) == b"HD\r\n"
        assert va(conn, b"mg mt_e_f c v\r\n") == b"VA 1 c1\r\n%s\r\n" % value
        assert conn.cmd(b"flush_all\r\n") == b"OK\r\n"
        assert conn.cmd(b"mg mt_e_f v\r\n") == b"EN\r\n"


@newer
def test_md_x_keeps_the_key_with_an_empty_value(conn):
    c = cas_of(conn.cmd(b"ms mt_x 2 F7 T100 c\r\nhi\r\n"))
    assert conn.cmd(b"md mt_x x\r\n") == b"HD\r\n"
    # no flags, no expiry unless given, the old unique
    assert va(conn, b"mg mt_x c v f t\r\n") == b"VA 0 c%d f0 t-1\r\n\r\n" % c
    assert conn.cmd(b"md mt_x x F3 T50 E9\r\n") == b"HD\r\n"
    line = conn.cmd(b"mg mt_x c f t\r\n")
    assert re.fullmatch(rb"HD c9 f3 t(49|50)\r\n", line), line
    assert conn.cmd(b"md mt_x x C8\r\n") == b"EX\r\n"
    assert conn.cmd(b"md mt_x_none x\r\n") == b"NF\r\n"
    # with I the emptied item is also stale, with a new unique
    assert conn.cmd(b"md mt_x x I\r\n") == b"HD\r\n"
    line = va(conn, b"mg mt_x c v\r\n")
    assert line.startswith(b"VA 0 c") and line.endswith(b" X W\r\n\r\n") and cas_of(line) != 9, line


@newer
def test_ms_s_returns_the_stored_length(conn):
    assert conn.cmd(b"ms mt_s 3 s\r\nabc\r\n") == b"HD s3\r\n"
    assert conn.cmd(b"ms mt_s 2 MA s\r\nde\r\n") == b"HD s5\r\n"
    assert conn.cmd(b"ms mt_s 2 MP s k\r\nxy\r\n") == b"HD s7 kmt_s\r\n"
    assert conn.cmd(b"ms mt_s_none 2 MA s\r\nde\r\n") == b"NS\r\n"
