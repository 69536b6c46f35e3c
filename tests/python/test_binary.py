"""The Python module over memcached's binary protocol (binary=True) and with SASL credentials
(username=, password=: what a pylibmc user with binary=True, username=..., password=... passes), against
memkitd and Debian's memcached: the python-memcached API behaves as over the text protocol."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import Server, WANTED

SASLPASSWD2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"


def test_the_whole_api_over_the_binary_protocol(srv, memkit):
    mc = memkit.Client([srv.addr], binary=True)
    assert mc.set("b:a", "hello") and mc.get("b:a") == "hello"
    assert mc.set("b:obj", {"x": [1, 2]}) and mc.get("b:obj") == {"x": [1, 2]}
    assert mc.get("b:none") is None
    assert not mc.add("b:a", "x") and mc.add("b:b", "two")
    assert not mc.replace("b:none", "x") and mc.replace("b:b", "three")
    assert mc.append("b:a", "!") and mc.prepend("b:a", ">") and mc.get("b:a") == ">hello!"
    assert mc.set("b:n", 10) and mc.incr("b:n", 5) == 15 and mc.decr("b:n", 100) == 0
    assert mc.incr("b:nonum") is None
    assert mc.set_multi({"b:m%d" % i: i for i in range(50)}, noreply=False) == []
    assert mc.get_multi(["b:m0", "b:m49", "b:none"]) == {"b:m0": 0, "b:m49": 49}
    assert mc.delete_multi(["b:m0", "b:m1"])
    assert mc.get_multi(["b:m0", "b:m1", "b:m2"]) == {"b:m2": 2}
    mc.cache_cas = True
    assert mc.gets("b:b") == "three"
    assert mc.cas("b:b", "four")
    assert not mc.cas("b:b", "five")  # the cached unique is old now
    assert mc.get("b:b") == "four"
    assert mc.touch("b:b", 100)
    assert mc.delete("b:b") and mc.get("b:b") is None
    assert mc.set("b:neg", "v", time=-1) and mc.get("b:neg") is None  # already expired, as in text
    big = os.urandom(500_000)
    assert mc.set("b:big", big) and mc.get("b:big") == big
    ((name, stats),) = mc.get_stats()
    assert int(stats["pid"]) > 0 and name.startswith("127.0.0.1:")
    # noreply: quiet opcodes, their failures counted (never taken for a later answer)
    mc.add("b:a", "x", noreply=True)
    mc.delete("b:none", noreply=True)
    assert mc.get("b:a") == ">hello!"
    (counters,) = mc.counters().values()
    assert counters["noreply_failed"] == 2 and counters["errors"] == 0
    # herd protection needs the meta protocol: get_or_set falls back to get, compute, set
    calls = []
    assert mc.get_or_set("b:gos", lambda: calls.append(1) or "v", 60) == "v"
    assert mc.get_or_set("b:gos", lambda: calls.append(1) or "w", 60) == "v"
    assert calls == [1]
    mc.flush_all()
    assert mc.get("b:a") is None


@pytest.fixture(scope="module")
def sasl_servers():
    """A memkitd and a memcached with -S, and the sasldb they share (alice / s3cret)."""
    if not os.path.exists(SASLPASSWD2):
        pytest.fail("saslpasswd2 is missing: apt-get install sasl2-bin (scripts/deps.sh test)")
    d = tempfile.mkdtemp(prefix="memkit-pysasl-")
    with open(os.path.join(d, "memcached.conf"), "w") as f:
        f.write("mech_list: plain\nsasldb_path: %s/sasldb\n" % d)
    subprocess.run([SASLPASSWD2, "-f", os.path.join(d, "sasldb"), "-a", "memcached", "-c", "-p", "alice"],
                   input=b"s3cret", check=True, timeout=30)
    old = os.environ.get("SASL_CONF_PATH")
    os.environ["SASL_CONF_PATH"] = d
    try:
        servers = {kind: Server(kind, ["-S"]) for kind in WANTED}
    finally:
        if old is None:
            del os.environ["SASL_CONF_PATH"]
        else:
            os.environ["SASL_CONF_PATH"] = old
    yield servers
    for s in servers.values():
        s.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("kind", WANTED)
def test_sasl_credentials_as_pylibmc_users_pass_them(sasl_servers, memkit, kind):
    addr = sasl_servers[kind].addr
    mc = memkit.Client([addr], username="alice", password="s3cret")  # credentials imply binary
    assert mc.set("s:a", "v") and mc.get("s:a") == "v"
    assert mc.get_multi(["s:a", "s:none"]) == {"s:a": "v"}
    bad = memkit.Client([addr], username="alice", password="nope")
    assert bad.get("s:a") is None and not bad.set("s:a", "w")  # python-memcached swallows failures
    strict = memkit.Client([addr], username="alice", password="nope", raise_errors=True)
    with pytest.raises(memkit.AuthError):
        strict.get("s:a")
    none = memkit.Client([addr], binary=True, raise_errors=True)
    with pytest.raises(memkit.AuthError):
        none.set("s:a", "x")
    assert mc.get("s:a") == "v"
    (counters,) = bad.counters().values()
    assert counters["alive"] and counters["errors"] == 0  # refused credentials do not mark the server dead
