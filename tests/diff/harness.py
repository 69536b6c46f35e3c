"""harness.py — what every differential test shares: its command line, the two servers it drives
(memkitd and memcached, started on free ports with the same options and stopped however the test
exits) and the loop that runs sequences on both and reports. Used by difftest.py (text and meta
protocols) and bindiff.py (binary protocol); each brings its own generator and comparison."""

import argparse
import atexit
import difflib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
TOOL = os.path.splitext(os.path.basename(sys.argv[0]))[0] or "diff"  # names the tool in error messages

_PROCS = []


def _cleanup():
    for p in _PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_cleanup)


def _on_term(signum, frame):
    _cleanup()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)
signal.signal(signal.SIGHUP, _on_term)


def _free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class StartError(Exception):
    pass


class Server:
    def __init__(self, label, binary, extra, logdir):
        self.label = label
        self.binary = binary
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise StartError(f"{TOOL}: {label} binary not found or not executable: {binary}")
        asan = "/san/" in binary
        for attempt in range(5):
            self.port = _free_port()
            self.log = os.path.join(logdir, f"{label}-{self.port}.stderr")
            argv = [binary, "-p", str(self.port), "-l", HOST, "-U", "0", "-u", "root"] + extra
            with open(self.log, "wb") as lf:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                             start_new_session=True)
            _PROCS.append(self.proc)
            deadline = time.monotonic() + (15 if asan else 5)
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection((HOST, self.port), timeout=0.2).close()
                    self.argv = argv
                    return
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            err = self.stderr()
            if "in use" in err or "bind" in err.lower():
                continue
            raise StartError(f"{TOOL}: {label} did not start: {' '.join(argv)}\n{err}")
        raise StartError(f"{TOOL}: {label} did not start (port conflicts)")

    def stderr(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def connect(self):
        s = socket.create_connection((HOST, self.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s




class CasRef:
    """A cas unique resolved per server at send time, from that server's earlier replies."""
    __slots__ = ("key", "wrong")

    def __init__(self, key, wrong):
        self.key, self.wrong = key, wrong

    def value(self, table):
        """The unique to send, from table (key -> the server's unique): right, or deliberately wrong
        (the right one + 10^12, or 10^15 when none was seen)."""
        u = table.get(self.key)
        if self.wrong:
            return (u + 10 ** 12) if u is not None else 10 ** 15
        return u if u is not None else 10 ** 15 + 1


class SideBase:
    """One server's side of a sequence: its connection (sock) and what it answered (log)."""

    def __init__(self, server):
        self.server = server
        self.sock = None
        self.log = []

    def end(self):
        try:
            if self.sock is not None:
                self.sock.close()
        except OSError:
            pass


def flush_all(server):
    """flush_all on a control connection of its own (before a sequence)."""
    ctl = server.connect()
    try:
        ctl.sendall(b"flush_all\r\n")
        buf = b""
        while not buf.endswith(b"\r\n"):
            d = ctl.recv(100)
            if not d:
                break
            buf += d
    finally:
        ctl.close()
    if buf != b"OK\r\n":
        raise RuntimeError(f"flush_all on control connection replied {buf!r}")


def arg_parser(doc, name, kinds):
    """The options every differential test takes (--memkitd, --sequences, --seed, ...)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--memkitd", required=True, help="binary under test")
    ap.add_argument("--memcached", default="/usr/bin/memcached", help="reference binary")
    ap.add_argument("--sequences", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", default=name)
    ap.add_argument("--verbose", action="store_true", help="print every sequence's bytes and replies")
    ap.add_argument("--keep-going", action="store_true", help="don't stop at the first divergence")
    ap.add_argument("--exclude", default="", help="comma-separated generator kinds to leave out: "
                    + ",".join(kinds))
    ap.add_argument("--server-args", default="-m 64 -t 2", help="options for both servers")
    return ap


def run(ap, args, kinds, make_side, run_seed, show_divergence, write_log, stall_note):
    """
    Start both servers, run args.sequences sequences and report "NAME: X passed, Y failed".
    run_seed(seed, exclude, sides) -> (same, a, b) runs one sequence on both sides (make_side(server)
    each; side.log lists (sent, reply, how)); show_divergence(seed, sides, a, b, out) explains a
    difference; write_log(side, out) prints one side's log (--verbose). Returns the exit status.
    """
    exclude = {x for x in args.exclude.split(",") if x}
    bad = exclude - set(kinds)
    if bad:
        ap.error(f"unknown kinds: {sorted(bad)}")
    extra = args.server_args.split()
    logdir = tempfile.mkdtemp(prefix=f"memkit-{args.name}-")
    try:
        ref = Server("memcached", os.path.abspath(args.memcached), extra, logdir)
        test = Server("memkitd", os.path.abspath(args.memkitd), extra, logdir)
    except StartError as e:
        print(e)
        print(f"{args.name}: 0 passed, 1 failed")
        return 1
    sides = [make_side(ref), make_side(test)]

    passed = failed = stalls = 0
    t0 = time.monotonic()
    out = sys.stdout
    try:
        for i in range(args.sequences):
            seed = args.seed + i
            try:
                same, a, b = run_seed(seed, exclude, sides)
            except (OSError, RuntimeError) as e:
                same, a, b = False, [], []
                out.write(f"\n=== ERROR in sequence seed {seed}: {e!r}\n")
            stalls += sum(1 for _, _, how in sides[0].log if how == "stall")
            if args.verbose:
                out.write(f"--- seed {seed}: {'match' if same else 'DIVERGED'}\n")
                write_log(sides[0], out)
            dead = [s.server for s in sides if not s.server.alive()]
            if same and not dead:
                passed += 1
            else:
                failed += 1
                if a or b:
                    show_divergence(seed, sides, a, b, out)
                for d in dead:
                    out.write(f"\n=== {d.label} DIED (exit {d.proc.returncode}); stderr:\n{d.stderr()[-4000:]}\n")
                if dead or not args.keep_going:
                    break
            if (i + 1) % 1000 == 0 and args.sequences >= 5000:
                out.write(f"... {i + 1}/{args.sequences} sequences, {failed} failed, "
                          f"{time.monotonic() - t0:.0f}s\n")
                out.flush()
    finally:
        ref.stop()
        test.stop()
    if stalls:
        out.write(stall_note(stalls) + "\n")
    out.write(f"{args.name}: {passed} passed, {failed} failed\n")
    return 1 if failed else 0


def play(sides, segs, step):
    """
    Play a sequence's segments on both sides (step(index, segment) sends one to both and reads what
    comes back) until both connections are closed, then end it: (same, ref's normalized replies,
    memkitd's).
    """
    try:
        for idx, seg in enumerate(segs):
            step(idx, seg)
            if all(s.closed for s in sides):
                break
    finally:
        for s in sides:
            s.end()
    a, b = (s.normalized() for s in sides)
    return a == b, a, b


def show_segments(seed, sides, a, b, out, show_sent, show_replies, diff_lines):
    """
    Explain a divergence segment by segment: what was sent (show_sent(bytes) -> str), each server's
    replies where they differ (show_replies(label, raw, how, out)) and a unified diff of
    diff_lines(normalized segment) for both.
    """
    out.write(f"\n=== DIVERGENCE in sequence with seed {seed} "
              f"(reproduce: --seed {seed} --sequences 1 --verbose)\n")
    ref, test = sides
    for i, ((sent, raw_ref, how_ref), (sent_t, raw_t, how_t)) in enumerate(zip(ref.log, test.log)):
        same = (a[i] == b[i]) if i < len(a) and i < len(b) else False
        out.write(f"--- segment {i} {'(same)' if same else '(DIFFERENT)'}\n")
        out.write(f"sent      : {show_sent(sent)}\n")
        if sent_t != sent:
            out.write(f"sent(test): {show_sent(sent_t)}\n")
        if same:
            continue
        show_replies("memcached", raw_ref, how_ref, out)
        show_replies("memkitd  ", raw_t, how_t, out)
        if i < len(a) and i < len(b):
            for line in difflib.unified_diff(diff_lines(a[i]), diff_lines(b[i]), "memcached (normalized)",
                                             "memkitd (normalized)", lineterm="", n=2):
                out.write(line + "\n")
