"""Many clients at once, and deep pipelines, with no crossed or reordered replies."""

import random
import threading

N_THREADS = 50
OPS = 200


def _worker(server, tid, errors):
    rng = random.Random(tid)
    try:
        with server.connect(timeout=20) as c:
            mine = {}
            for op in range(OPS):
                k = b"w%d_%d" % (tid, rng.randrange(10))
                r = rng.random()
                if r < 0.35:
                    v = b"%d:%d:%s" % (tid, op, b"x" * rng.randrange(0, 300))
                    assert c.cmd(b"set %s %d 0 %d\r\n%s\r\n" % (k, tid, len(v), v)) == b"STORED\r\n"
                    mine[k] = v
                elif r < 0.7:
                    got = c.get(b"get %s\r\n" % k)
                    want = (b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (k, tid, len(mine[k]), mine[k])
                            if k in mine else b"END\r\n")
                    assert got == want, (got[:100], want[:100])
                elif r < 0.8:
                    want = b"DELETED\r\n" if k in mine else b"NOT_FOUND\r\n"
                    assert c.cmd(b"delete %s\r\n" % k) == want
                    mine.pop(k, None)
                elif r < 0.9:
                    ck = b"ctr_%d" % tid
                    if op == 0 or ck not in mine:
                        c.cmd(b"set %s 0 0 1\r\n0\r\n" % ck)
                        mine[ck] = 0
                    mine[ck] += 3
                    assert c.cmd(b"incr %s 3\r\n" % ck) == b"%d\r\n" % mine[ck]
                else:
                    # shared key everyone hammers: reply must be well-formed
                    c.send(b"set shared 0 0 %d\r\n%d\r\n" % (len(str(tid)), tid))
                    assert c.read_line() == b"STORED\r\n"
                    got = c.get(b"get shared\r\n")
                    assert got.startswith(b"VALUE shared 0 ") and got.endswith(b"\r\nEND\r\n"), got
            c.version_sync()
    except Exception as e:   # noqa: BLE001
        errors.append((tid, repr(e)))


def test_50_threads_mixed_ops_no_crossed_replies(server):
    errors = []
    threads = [threading.Thread(target=_worker, args=(server, t, errors)) for t in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "workers hung"
    assert not errors, errors[:5]
    assert server.alive()


def test_pipelined_1000_commands_answered_in_order(conn):
    req = []
    want = []
    for i in range(1000):
        k = b"p%d" % ((i // 4) % 50)
        if i % 4 == 0:
            v = b"v%d" % i
            req.append(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
            want.append(b"STORED\r\n")
            last = v
        elif i % 4 == 1:
            req.append(b"get %s\r\n" % k)
            want.append(b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(last), last))
        elif i % 4 == 2:
            req.append(b"delete %s\r\n" % k)
            want.append(b"DELETED\r\n")
        else:
            req.append(b"get %s\r\n" % k)
            want.append(b"END\r\n")
    conn.send(b"".join(req))
    expected = b"".join(want)
    got = conn.read_exact(len(expected), timeout=30)
    assert got == expected
    assert conn.read_available(0.1) == b""


def test_pipelined_mixed_with_noreply_and_errors(conn):
    req = b"".join(b"set q%d 0 0 1 noreply\r\n%d\r\nbogus\r\nincr q%d 1\r\n" % (i, i % 10, i)
                   for i in range(300))
    want = b"".join(b"ERROR\r\n%d\r\n" % (i % 10 + 1) for i in range(300))
    conn.send(req)
    assert conn.read_exact(len(want), timeout=30) == want


def test_big_pipeline_written_faster_than_read(conn):
    """Client sends a lot before reading anything: the server must not deadlock."""
    conn.set("bp", b"y" * 10000)
    n = 500
    sender = threading.Thread(target=conn.send, args=(b"get bp\r\n" * n,))
    sender.start()
    one = b"VALUE bp 0 10000\r\n" + b"y" * 10000 + b"\r\nEND\r\n"
    got = conn.read_exact(len(one) * n, timeout=60)
    sender.join(30)
    assert got == one * n
