"""-Z: TLS on the TCP listeners, configured with memcached's -o ssl_* options: the text, meta and binary
protocols over TLS from Python's ssl module, `openssl s_client` and pymemcache's tls_context; mutual TLS
(ssl_verify_mode=2 with ssl_ca_cert); refresh_certs; "notls:" listeners; the oldest version accepted.
Certificates are made with the openssl command for each run. Passes against Debian's memcached 1.6.18
(built with TLS) too, but for the tests marked memkitd_only."""

import os
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import (BIN, HOST, IS_MEMCACHED, base_args, free_port, memkitd_only, require_binary,
                      unix_socket_server)

OPENSSL = shutil.which("openssl")


def _openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _issue(d, name, cn, ca, ext=None):
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2"]
    if ext:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        args += ["-extfile", f"{name}.ext"]
    _openssl(*args, cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A server CA with two server certificates (CN localhost and localhost-2, for 127.0.0.1), and a
    client CA with one client certificate."""
    if OPENSSL is None:
        pytest.fail("openssl is not installed (apt-get install openssl; scripts/deps.sh test)")
    d = str(tmp_path_factory.mktemp("tls"))
    for ca in ("ca", "clientca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "2", "-subj", f"/CN=memkit test {ca}", cwd=d)
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    _issue(d, "srv", "localhost", "ca", san)
    _issue(d, "srv2", "localhost-2", "ca", san)
    _issue(d, "client", "memkit client", "clientca")
    return d


def tls_args(d, chain="srv.crt", key="srv.key", extra=""):
    return ["-Z", "-o", f"ssl_chain_cert={os.path.join(d, chain)},ssl_key={os.path.join(d, key)}" + extra]


def client_ctx(d, cert=False, maximum=None):
    ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))
    if cert:
        ctx.load_cert_chain(os.path.join(d, "client.crt"), os.path.join(d, "client.key"))
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def tls_conn(port, ctx):
    raw = socket.create_connection((HOST, port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def exchange(s, data, until=b"\r\n"):
    s.sendall(data)
    buf = b""
    while not buf.endswith(until):
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d
    return buf


def peer_cn(s):
    return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def test_text_meta_and_binary_over_tls(server_factory, certs):
    srv = server_factory(*tls_args(certs))
    ctx = client_ctx(certs)
    with tls_conn(srv.port, ctx) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        assert peer_cn(s) == "localhost"
        assert exchange(s, b"set t 3 0 5\r\nhello\r\n") == b"STORED\r\n"
        assert exchange(s, b"get t\r\n", b"END\r\n") == b"VALUE t 3 5\r\nhello\r\nEND\r\n"
        assert exchange(s, b"mg t v f\r\n", b"hello\r\n") == b"VA 5 f3\r\nhello\r\n"
        big = os.urandom(700_000).hex().encode()[:1_000_000]
        assert exchange(s, b"set big 0 0 %d\r\n%s\r\n" % (len(big), big)) == b"STORED\r\n"
        got = exchange(s, b"get big\r\n", b"END\r\n")
        assert got == b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(big), big)
    with tls_conn(srv.port, ctx) as b:  # the binary protocol, negotiated after the handshake
        b.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x0b, 0, 0, 0, 0, 0, 7, 0))  # VERSION
        hdr = b.recv(24)
        assert hdr[:2] == b"\x81\x0b" and struct.unpack(">I", hdr[12:16])[0] == 7


@memkitd_only
def test_a_long_pipeline_over_tls_is_answered_whole(server_factory, certs):
    """2,000 sets in one write: memcached 1.6.18 stops answering partway (observed: the client waits
    forever); memkitd reads every TLS record it was sent."""
    srv = server_factory(*tls_args(certs))
    with tls_conn(srv.port, client_ctx(certs)) as s:
        pipeline = b"".join(b"set p%d 0 0 1\r\nx\r\n" % i for i in range(2000))
        assert exchange(s, pipeline, b"STORED\r\n" * 2000) == b"STORED\r\n" * 2000
        gets = b"".join(b"get p%d\r\n" % i for i in range(2000))
        want = b"".join(b"VALUE p%d 0 1\r\nx\r\nEND\r\n" % i for i in range(2000))
        assert exchange(s, gets, b"VALUE p1999 0 1\r\nx\r\nEND\r\n") == want


def test_openssl_s_client(server_factory, certs):
    srv = server_factory(*tls_args(certs))
    p = subprocess.run([OPENSSL, "s_client", "-connect", f"{HOST}:{srv.port}", "-CAfile",
                        os.path.join(certs, "ca.crt"), "-verify_return_error", "-quiet"],
                       input=b"set sc 0 0 2\r\nok\r\nget sc\r\nquit\r\n", capture_output=True, timeout=30)
    assert b"STORED\r\nVALUE sc 0 2\r\nok\r\nEND\r\n" in p.stdout, (p.stdout, p.stderr[-500:])


def test_pymemcache_tls_context(server_factory, certs):
    from pymemcache.client.base import Client
    srv = server_factory(*tls_args(certs))
    c = Client((HOST, srv.port), tls_context=client_ctx(certs), connect_timeout=10, timeout=10)
    assert c.set("pm", b"via pymemcache")
    assert c.get("pm") == b"via pymemcache"
    assert c.get_many(["pm", "none"]) == {"pm": b"via pymemcache"}
    c.close()


def test_a_plain_client_on_a_tls_port_gets_nothing_and_is_counted(server_factory, certs):
    srv = server_factory(*tls_args(certs))
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(b"version\r\n")
        try:
            got = s.recv(100)
        except OSError:
            got = b""
        assert not got.startswith(b"VERSION")
    with tls_conn(srv.port, client_ctx(certs)) as s:
        st = exchange(s, b"stats\r\n", b"END\r\n").decode()
        # (memcached counts only the failures of the accept-time SSL_accept, which a slow peer escapes)
        assert IS_MEMCACHED or "STAT ssl_handshake_errors 1\r\n" in st


def test_mutual_tls_requires_a_client_certificate(server_factory, certs):
    srv = server_factory(*tls_args(certs, extra=f",ssl_verify_mode=2,ssl_ca_cert={certs}/clientca.crt"))
    with tls_conn(srv.port, client_ctx(certs, cert=True)) as s:
        assert exchange(s, b"version\r\n").startswith(b"VERSION ")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with tls_conn(srv.port, client_ctx(certs)) as s:  # no certificate (TLS 1.3 tells at the first read)
            got = exchange(s, b"version\r\n")
            if not got:
                raise ConnectionError("closed")


def test_oldest_version_is_enforced(server_factory, certs):
    srv = server_factory(*tls_args(certs, extra=",ssl_min_version=3"))  # (memkitd also takes tlsv1.3)
    with tls_conn(srv.port, client_ctx(certs)) as s:
        assert s.version() == "TLSv1.3"
    with pytest.raises((ssl.SSLError, OSError)):
        tls_conn(srv.port, client_ctx(certs, maximum=ssl.TLSVersion.TLSv1_2)).close()


def test_refresh_certs_loads_new_certificates_for_new_connections(server_factory, certs, tmp_path):
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    shutil.copy(os.path.join(certs, "srv.crt"), chain)
    shutil.copy(os.path.join(certs, "srv.key"), key)
    srv = server_factory("-Z", "-o", f"ssl_chain_cert={chain},ssl_key={key}")
    ctx = client_ctx(certs)
    old = tls_conn(srv.port, ctx)
    try:
        assert peer_cn(old) == "localhost"
        shutil.copy(os.path.join(certs, "srv2.crt"), chain)
        shutil.copy(os.path.join(certs, "srv2.key"), key)
        assert exchange(old, b"refresh_certs\r\n") == b"OK\r\n"
        with tls_conn(srv.port, ctx) as s:
            assert peer_cn(s) == "localhost-2"
        assert exchange(old, b"version\r\n").startswith(b"VERSION ")  # the old connection goes on
        # an unusable file: the reason, and the certificates loaded before stay
        chain.write_text("not a certificate\n")
        got = exchange(old, b"refresh_certs\r\n")
        assert got.startswith(b"Error loading the certificate chain: %s : " % str(chain).encode()), got
        with tls_conn(srv.port, ctx) as s:
            assert peer_cn(s) == "localhost-2"
        # noreply silences OK, not the reason (as in memcached)
        assert exchange(old, b"refresh_certs noreply\r\nversion\r\n").startswith(b"Error loading")
        shutil.copy(os.path.join(certs, "srv2.crt"), chain)
        assert exchange(old, b"refresh_certs noreply\r\nversion\r\n").startswith(b"VERSION ")
    finally:
        old.close()


def test_der_key_cipher_list_session_cache_and_ktls_options(server_factory, certs, tmp_path):
    """ssl_keyformat=2 takes a DER key; ssl_ciphers is the cipher a TLS 1.2 client gets;
    ssl_session_cache resumes a session; ssl_kernel_tls starts and serves (kTLS where the kernel can)."""
    der = tmp_path / "srv.der"
    _openssl("pkey", "-in", os.path.join(certs, "srv.key"), "-outform", "DER", "-out", str(der), cwd=str(tmp_path))
    cipher = "ECDHE-RSA-AES128-GCM-SHA256"
    srv = server_factory("-Z", "-o", f"ssl_chain_cert={certs}/srv.crt,ssl_key={der},ssl_keyformat=2,"
                         f"ssl_ciphers={cipher},ssl_session_cache,ssl_kernel_tls")
    ctx = client_ctx(certs, maximum=ssl.TLSVersion.TLSv1_2)
    with tls_conn(srv.port, ctx) as s:
        assert s.cipher()[0] == cipher
        assert exchange(s, b"version\r\n").startswith(b"VERSION ")
        session = s.session
    raw = socket.create_connection((HOST, srv.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        assert exchange(s, b"version\r\n").startswith(b"VERSION ")
        assert s.session_reused


@memkitd_only
def test_ssl_ktls_connections_says_whether_the_kernel_encrypts(server_factory, certs):
    """ssl_kernel_tls with an AES-GCM cipher: every connection's records go to the kernel when it
    offers the tls ULP (/proc/sys/net/ipv4/tcp_available_ulp), none when it does not, and
    ssl_ktls_connections says which; without ssl_kernel_tls it is always 0."""
    with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
        kernel_tls = "tls" in f.read().split()
    for opt, want in (("ssl_kernel_tls,", 4 if kernel_tls else 0), ("", 0)):  # 3 + the stats one
        srv = server_factory("-Z", "-o", f"{opt}ssl_chain_cert={certs}/srv.crt,ssl_key={certs}/srv.key,"
                             "ssl_ciphers=ECDHE-RSA-AES128-GCM-SHA256")
        ctx = client_ctx(certs, maximum=ssl.TLSVersion.TLSv1_2)
        for _ in range(3):
            with tls_conn(srv.port, ctx) as s:
                assert exchange(s, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        with tls_conn(srv.port, ctx) as s:
            st = exchange(s, b"stats\r\n", b"END\r\n").decode()
            assert "STAT ssl_ktls_connections %d\r\n" % want in st, (opt, kernel_tls)


def test_refresh_certs_without_tls(server_factory):
    srv = server_factory()
    with srv.connect() as c:
        assert c.cmd(b"refresh_certs\r\n") == b"Error TLS not enabled\r\n"


def test_notls_listener_stays_plain(server_factory, certs):
    plain = free_port()
    srv = server_factory(*tls_args(certs), "-l", f"notls:{HOST}:{plain}")
    with socket.create_connection((HOST, plain), timeout=5) as s:
        assert exchange(s, b"version\r\n").startswith(b"VERSION ")
    with tls_conn(srv.port, client_ctx(certs)) as s:
        st = exchange(s, b"stats settings\r\n", b"END\r\n").decode()
        assert "STAT ssl_enabled yes\r\n" in st
        assert "STAT ssl_verify_mode 0\r\n" in st and "STAT ssl_min_version tlsv1.2\r\n" in st


def test_the_unix_socket_stays_plain(certs, tmp_path):
    with unix_socket_server(tmp_path, "-U", "0", *tls_args(certs)) as (_, path):
        with socket.socket(socket.AF_UNIX) as u:
            u.settimeout(5)
            u.connect(path)
            assert exchange(u, b"version\r\n").startswith(b"VERSION ")


def _start_fails(*args):
    require_binary()
    return subprocess.run([BIN, *base_args(free_port()), *args], capture_output=True, timeout=30)


@memkitd_only
@pytest.mark.parametrize("args", [
    ("-Z",),
    ("-Z", "-o", "ssl_chain_cert=/nonexistent/chain.pem,ssl_key=/nonexistent/key.pem"),
    ("-l", "notls:127.0.0.1:11999"),
    ("-o", "ssl_verify_mode=7"),
    ("-o", "ssl_min_version=tlsv9"),
], ids=["no-certificate", "missing-files", "notls-without-Z", "bad-verify-mode", "bad-version"])
def test_bad_tls_options_do_not_start_with_one_line(args):
    p = _start_fails(*args)
    assert p.returncode == 1
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines


@memkitd_only
def test_Z_with_udp_is_refused(certs):
    p = _start_fails(*tls_args(certs), "-U", "11998")
    assert p.returncode == 1 and b"UDP" in p.stderr


def test_many_tls_clients_at_once(server_factory, certs):
    srv = server_factory(*tls_args(certs), "-t", "4")
    ctx = client_ctx(certs)
    conns = [tls_conn(srv.port, ctx) for _ in range(40)]
    try:
        for i, s in enumerate(conns):
            s.sendall(b"set m%d 0 0 %d\r\n%d\r\n" % (i, len(str(i)), i))
        for s in conns:
            assert exchange(s, b"") == b"STORED\r\n"
        t0 = time.monotonic()
        for i, s in enumerate(conns):
            assert exchange(s, b"get m%d\r\n" % i, b"END\r\n") == b"VALUE m%d 0 %d\r\n%d\r\nEND\r\n" % (i, len(str(i)), i)
        assert time.monotonic() - t0 < 30
    finally:
        for s in conns:
            s.close()
