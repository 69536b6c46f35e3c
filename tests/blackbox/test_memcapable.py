"""Debian's libmemcached `memccapable` conformance checker, ASCII protocol only (-a)."""

import re
import shutil
import subprocess

import pytest

MEMCCAPABLE = shutil.which("memccapable") or shutil.which("memcapable")

# The ASCII tests memccapable (libmemcached 1.1) runs; all must be reported.
EXPECTED = ["version", "quit", "verbosity", "set", "set noreply", "get", "gets", "mget", "flush",
            "flush noreply", "add", "add noreply", "replace", "replace noreply", "cas",
            "cas noreply", "delete", "delete noreply", "incr", "incr noreply", "decr",
            "decr noreply", "append", "append noreply", "prepend", "prepend noreply", "stat"]


@pytest.fixture
def memccapable_output(server_factory):
    if MEMCCAPABLE is None:
        pytest.fail("memccapable not installed (apt-get install libmemcached-tools)")
    s = server_factory()
    r = subprocess.run([MEMCCAPABLE, "-a", "-t", "5", "-h", "127.0.0.1", "-p", str(s.port)],
                       capture_output=True, timeout=120)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert s.alive(), f"server died under memccapable:\n{out}\n{s.stderr()}"
    return r.returncode, out


def test_memccapable_ascii_all_pass(memccapable_output):
    rc, out = memccapable_output
    results = dict(re.findall(r"^ascii (.+?)\s+\[(\w+)\]\s*$", out, re.M))
    missing = [t for t in EXPECTED if t not in results]
    failed = {t: v for t, v in results.items() if v != "pass"}
    assert not missing and not failed and rc == 0 and "All tests passed" in out, \
        f"memccapable rc={rc} missing={missing} failed={failed}\n{out}"
