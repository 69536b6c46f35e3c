/* client/tls.c — libmemkit's TLS (OpenSSL): the client's context, a connection's handshake, and the byte moves of every connection, plain or TLS. */
#include "client/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/*
 * Why OpenSSL: it is what memcached and memkitd speak TLS with, Debian ships it,
 * and it checks certificate chains and host names (RFC 6125) for us.
 *
 * A TLS connection is always non-blocking: the op state machine (op.c) steps it
 * like a plain one, and an SSL_read/SSL_write that cannot go on says which way it
 * waits (conn->want: a TLS read may have to write, a write may have to read).
 * OpenSSL's own socket BIO writes with write(), which raises SIGPIPE on a closed
 * peer inside the caller's process; ours sends with MSG_NOSIGNAL, as every plain
 * send of libmemkit does.
 */

/* ---- the socket BIO: send(MSG_NOSIGNAL) / recv on the fd kept as the BIO's data */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = recv(bio_fd(b), buf, (size_t)len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;   /* nothing is buffered here */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_init_once(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "memkit socket");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        bio_method = m;
    else if (m)
        BIO_meth_free(m);
}

/* ---- the context */

static int tls_fail(char *errbuf, size_t errlen, int rc, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "tls: %s%s%s%s%s", what, file ? " " : "", file ? file : "", e ? ": " : "", reason);
    return rc;
}

int mk__tls_create(mk_client *c, char *errbuf, size_t errlen)
{
    const mk_options *o = &c->opt;
    pthread_once(&bio_once, bio_init_once);
    if (bio_method == NULL)
        return tls_fail(errbuf, errlen, MK_ENOMEM, "cannot set up OpenSSL", NULL);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return tls_fail(errbuf, errlen, MK_ENOMEM, "cannot set up OpenSSL", NULL);
    c->tls = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* a write may end short and go on from another address; a peer that closes without
     * close_notify is an end of stream (memcached servers do) */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (o->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, o->tls_ca_file, NULL) != 1
                       : SSL_CTX_set_default_verify_paths(ctx) != 1)
        return tls_fail(errbuf, errlen, MK_EINVAL, "cannot load the CA file", o->tls_ca_file);
    if (o->tls_cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1)
            return tls_fail(errbuf, errlen, MK_EINVAL, "cannot load the client certificate", o->tls_cert_file);
        if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key_file, SSL_FILETYPE_PEM) != 1)
            return tls_fail(errbuf, errlen, MK_EINVAL, "cannot load the client key", o->tls_key_file);
        if (SSL_CTX_check_private_key(ctx) != 1)
            return tls_fail(errbuf, errlen, MK_EINVAL, "the client key does not match its certificate",
                            o->tls_key_file);
    }
    SSL_CTX_set_verify(ctx, o->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return 0;
}

void mk__tls_destroy(mk_client *c)
{
    SSL_CTX_free(c->tls);
    c->tls = NULL;
}

/* ---- a connection */

static bool is_ip(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int mk__tls_attach(mk_client *c, mk_server *s, mk_conn *conn)
{
    if (c->tls == NULL || s->is_unix)
        return 0;
    SSL *ssl = SSL_new(c->tls);
    BIO *bio = ssl ? BIO_new(bio_method) : NULL;
    if (bio == NULL) {
        SSL_free(ssl);
        ERR_clear_error();
        return MK_ENOMEM;
    }
    BIO_set_data(bio, (void *)(intptr_t)conn->fd);
    SSL_set_bio(ssl, bio, bio);
    const char *host = c->tls_name ? c->tls_name : c->specs[s - c->servers].host;
    bool ok = true;
    if (c->opt.tls_verify) {
        if (!c->tls_name && is_ip(host))
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
        else
            ok = SSL_set1_host(ssl, host) == 1;
    }
    if (ok && !is_ip(host))
        ok = SSL_set_tlsext_host_name(ssl, host) == 1;
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return MK_ENOMEM;
    }
    SSL_set_connect_state(ssl);
    conn->ssl = ssl;
    conn->connecting = true;
    return 0;
}

/* An SSL call that returned r <= 0: EAGAIN with conn->want, or another errno. Returns -1, or 0 for
 * the end of the stream. */
static ssize_t tls_result(mk_conn *conn, int r)
{
    switch (SSL_get_error(conn->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        conn->want = POLLIN;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        conn->want = POLLOUT;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0 || errno == EAGAIN)
            errno = EIO;
        return -1;
    default:
        ERR_clear_error();
        errno = EIO;
        return -1;
    }
}

int mk__tls_handshake(mk_conn *conn)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(conn->ssl);
    if (r == 1) {
        conn->connecting = false;
        return 0;
    }
    int e = SSL_get_error(conn->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        conn->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return MK_EAGAIN;
    }
    ERR_clear_error();
    /* refused by either side (alert, certificate, protocol): MK_ETLS; the peer gone: a network failure */
    return e == SSL_ERROR_SSL ? MK_ETLS : MK_EIO;
}

void mk__tls_forget(mk_conn *conn)
{
    SSL_free(conn->ssl);   /* never SSL_shutdown: a forked child must not write on its parent's socket */
    conn->ssl = NULL;
}

bool mk__conn_buffered(const mk_conn *conn)
{
    return conn->ssl && SSL_pending(conn->ssl) > 0;
}

/* ---- byte moves */

ssize_t mk__conn_recv(mk_conn *conn, void *buf, size_t len, int flags)
{
    if (conn->ssl == NULL) {
        conn->want = POLLIN;
        return recv(conn->fd, buf, len, flags);
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(conn->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    return r > 0 ? r : tls_result(conn, r);
}

ssize_t mk__conn_send(mk_conn *conn, const void *buf, size_t len, int flags)
{
    if (conn->ssl == NULL) {
        conn->want = POLLOUT;
        return send(conn->fd, buf, len, flags | MSG_NOSIGNAL);
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(conn->ssl, buf, len > MK_TLS_CHUNK ? MK_TLS_CHUNK : (int)len);
    return r > 0 ? r : tls_result(conn, r);
}

ssize_t mk__conn_sendv(mk_conn *conn, const struct iovec *iov, size_t cnt, int flags)
{
    if (conn->ssl == NULL) {
        conn->want = POLLOUT;
        struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = cnt};
        return sendmsg(conn->fd, &m, flags | MSG_NOSIGNAL);
    }
    /* a large first piece goes as it is; small ones are gathered into one record. A retry after
     * EAGAIN sees the same iov and so writes the same bytes, as OpenSSL requires. */
    if (cnt == 0)
        return 0;
    if (iov[0].iov_len >= MK_TLS_CHUNK)
        return mk__conn_send(conn, iov[0].iov_base, iov[0].iov_len, flags);
    char chunk[MK_TLS_CHUNK];
    size_t n = 0;
    for (size_t i = 0; i < cnt && n < sizeof chunk; i++) {
        size_t take = iov[i].iov_len < sizeof chunk - n ? iov[i].iov_len : sizeof chunk - n;
        memcpy(chunk + n, iov[i].iov_base, take);
        n += take;
    }
    return mk__conn_send(conn, chunk, n, flags);
}
