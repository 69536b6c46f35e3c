"""The Python module over TLS (tls=True, tls_ca_file=..., client certificates) against memkitd and Debian's
memcached, both started with -Z: python-memcached's API, multi-gets and herd calls work as in plain text;
an untrusted or misnamed server is memkit.TLSError, never a value; mutual TLS; under gevent with its
default settings; through Django's cache API. Certificates are made with the openssl command."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import PYPATH, Server, WANTED

OPENSSL = shutil.which("openssl")


def _openssl(d, *args):
    subprocess.run([OPENSSL, *args], cwd=d, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """ca signs srv (localhost, 127.0.0.1); other is an unrelated CA; clientca signs client."""
    if OPENSSL is None:
        pytest.fail("openssl is not installed (apt-get install openssl; scripts/deps.sh test)")
    d = str(tmp_path_factory.mktemp("pytls"))
    for ca in ("ca", "other", "clientca"):
        _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key", "-out", ca + ".crt",
                 "-days", "2", "-subj", "/CN=memkit test " + ca)
    for name, ca, san in (("srv", "ca", "DNS:localhost,IP:127.0.0.1"), ("client", "clientca", "DNS:client")):
        _openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + name)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        _openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                 "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext")
    return d


def _p(d, name):
    return os.path.join(d, name)


@pytest.fixture(scope="module")
def tls_servers(certs):
    opt = "ssl_chain_cert=%s,ssl_key=%s" % (_p(certs, "srv.crt"), _p(certs, "srv.key"))
    servers = {kind: Server(kind, ["-Z", "-o", opt]) for kind in WANTED}
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture(scope="module")
def mutual_servers(certs):
    opt = "ssl_chain_cert=%s,ssl_key=%s,ssl_verify_mode=2,ssl_ca_cert=%s" % (
        _p(certs, "srv.crt"), _p(certs, "srv.key"), _p(certs, "clientca.crt"))
    servers = {kind: Server(kind, ["-Z", "-o", opt]) for kind in WANTED}
    yield servers
    for s in servers.values():
        s.stop()


@pytest.mark.parametrize("kind", WANTED)
def test_the_python_memcached_api_over_tls(tls_servers, certs, memkit, kind):
    mc = memkit.Client([tls_servers[kind].addr], tls=True, tls_ca_file=_p(certs, "ca.crt"), raise_errors=True)
    assert mc.set("t:a", "v") and mc.get("t:a") == "v"
    big = os.urandom(500_000)
    assert mc.set("t:big", big) and mc.get("t:big") == big
    assert mc.set_multi({"t:m%d" % i: i for i in range(50)}) == []
    assert mc.get_multi(["t:a", "t:m49", "t:none"]) == {"t:a": "v", "t:m49": 49}
    assert mc.incr("t:m1", 41) == 42
    assert mc.get_or_set("t:gos", lambda: "computed", 60) == "computed"   # meta over TLS
    mc.set("t:nr", "w", noreply=True)
    assert mc.get("t:nr") == "w" and mc.delete("t:nr")
    (counters,) = mc.counters().values()
    assert counters["errors"] == 0


@pytest.mark.parametrize("kind", WANTED)
def test_a_server_that_cannot_prove_who_it_is_is_refused(tls_servers, certs, memkit, kind):
    addr = tls_servers[kind].addr
    memkit.Client([addr], tls=True, tls_ca_file=_p(certs, "ca.crt")).set("t:who", "secret")
    for options in ({"tls_ca_file": _p(certs, "other.crt")},                    # an untrusted CA
                    {"tls_ca_file": _p(certs, "ca.crt"), "tls_server_name": "cache.example"},  # another name
                    {}):                                                         # the system's CAs
        mc = memkit.Client([addr], tls=True, raise_errors=True, **options)
        with pytest.raises(memkit.TLSError):
            mc.get("t:who")
        assert memkit.Client([addr], tls=True, **options).get("t:who") is None
    # not checked: encrypted, and answered by whoever is there
    assert memkit.Client([addr], tls=True, tls_verify=False).get("t:who") == "secret"
    # a plain client to a TLS port gets an error, never a value
    with pytest.raises(memkit.Error):
        memkit.Client([addr], raise_errors=True, socket_timeout=1).get("t:who")


@pytest.mark.parametrize("kind", WANTED)
def test_mutual_tls_wants_the_client_certificate(mutual_servers, certs, memkit, kind):
    addr = mutual_servers[kind].addr
    ca = _p(certs, "ca.crt")
    with pytest.raises(memkit.Error):
        memkit.Client([addr], tls=True, tls_ca_file=ca, raise_errors=True).set("t:m", "x")
    mc = memkit.Client([addr], tls=True, tls_ca_file=ca, tls_cert_file=_p(certs, "client.crt"),
                       tls_key_file=_p(certs, "client.key"), raise_errors=True)
    assert mc.set("t:m", "x") and mc.get("t:m") == "x"


def test_tls_options_are_checked_when_the_client_is_made(certs, memkit):
    with pytest.raises(ValueError, match="need tls"):
        memkit.Client(["127.0.0.1:1"], tls_ca_file=_p(certs, "ca.crt"))
    with pytest.raises(ValueError, match="nonexistent"):
        memkit.Client(["127.0.0.1:1"], tls=True, tls_ca_file="/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="tls_key_file"):
        memkit.Client(["127.0.0.1:1"], tls=True, tls_cert_file=_p(certs, "client.crt"))
    with pytest.raises(ValueError, match="client key .*mismatch"):
        memkit.Client(["127.0.0.1:1"], tls=True, tls_cert_file=_p(certs, "client.crt"),
                      tls_key_file=_p(certs, "srv.key"))


@pytest.mark.parametrize("kind", WANTED)
def test_a_forked_child_leaves_its_parents_tls_connections_alone(tls_servers, certs, memkit, kind):
    """gunicorn's pattern: a client used before fork(); the child opens its own TLS connections and never
    writes on the parent's (a stray close_notify or a record from the child would break the parent's)."""
    mc = memkit.Client([tls_servers[kind].addr], tls=True, tls_ca_file=_p(certs, "ca.crt"), raise_errors=True)
    assert mc.set("f:parent", "p")
    def connections():
        return int(mc.get_stats()[0][1]["total_connections"])
    before = connections()
    pid = os.fork()
    if pid == 0:
        ok = mc.set("f:child", "c") and mc.get("f:parent") == "p"
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for _ in range(20):
        assert mc.get("f:child") == "c" and mc.get("f:parent") == "p"
    (counters,) = mc.counters().values()
    assert counters["errors"] == 0
    # the parent kept its connection; the child opened one of its own
    assert connections() == before + 1


def test_greenlets_share_tls_connections_under_gevent(tls_servers, certs):
    """gevent with its default settings: 200 greenlets, a pool of 8 TLS connections, every answer right."""
    kind = WANTED[0]
    script = textwrap.dedent("""
        import sys
        from gevent import monkey; monkey.patch_all()
        import gevent
        sys.path.insert(0, sys.argv[1])
        import memkit
        mc = memkit.Client([sys.argv[2]], tls=True, tls_ca_file=sys.argv[3], raise_errors=True)
        def work(i):
            for j in range(20):
                k = "g:%d:%d" % (i, j)
                assert mc.set(k, i * j) and mc.get(k) == i * j
            assert mc.get_multi(["g:%d:%d" % (i, j) for j in range(20)]) == {"g:%d:%d" % (i, j): i * j
                                                                           for j in range(20)}
        gevent.joinall([gevent.spawn(work, i) for i in range(200)], raise_error=True)
        (c,) = mc.counters().values()
        print("ok", c["errors"])
    """)
    out = subprocess.run(["/usr/bin/python3", "-c", script, PYPATH, tls_servers[kind].addr, _p(certs, "ca.crt")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "0"]


def test_django_cache_over_tls(tls_servers, certs):
    """Django's cache API on MemkitCache with the TLS options in OPTIONS."""
    kind = WANTED[0]
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import django
        from django.conf import settings
        settings.configure(CACHES={"default": {"BACKEND": "memkit.django.MemkitCache", "LOCATION": sys.argv[2],
                                               "OPTIONS": {"tls": True, "tls_ca_file": sys.argv[3]}}})
        django.setup()
        from django.core.cache import cache
        cache.set("d:k", {"a": 1}, 30)
        cache.set_many({"d:x": 1, "d:y": "two"})
        print(cache.get("d:k") == {"a": 1}, cache.get_many(["d:x", "d:y"]) == {"d:x": 1, "d:y": "two"},
              cache.incr("d:x") == 2)
    """)
    out = subprocess.run([sys.executable if sys.executable.startswith("/usr/bin") else "/usr/bin/python3", "-c",
                          script, PYPATH, tls_servers[kind].addr, _p(certs, "ca.crt")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]
