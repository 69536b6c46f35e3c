/* server/tls.c — TLS through OpenSSL: the context from -o ssl_*, refresh_certs, and the transport over SSL_read/SSL_write. */
#include "server/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"

struct mk_tls {
    SSL_CTX *ctx;
    const mk_settings *s;
    pthread_mutex_t lock;       /* certificate loads against SSL_new (memcached's SSL_LOCK) */
    int64_t loaded_at;          /* wall clock of the last certificate load (atomic) */
    uint64_t handshake_errors;  /* atomic */
    uint64_t ktls;              /* atomic: connections whose records the kernel encrypts (kTLS) */
};

/* The newest OpenSSL error as text (and the queue drained). */
static const char *ssl_error_text(char *buf, size_t n)
{
    unsigned long e = ERR_get_error(), more;
    buf[0] = '\0';
    if (e)
        ERR_error_string_n(e, buf, n);
    while ((more = ERR_get_error()) != 0)
        (void)more;
    return buf;
}

/* Load chain, key and client CAs into t->ctx (t->lock held); memcached's messages. */
static bool load_certificates(mk_tls *t, char *err, size_t errlen)
{
    const mk_settings *s = t->s;
    char e[256];
    if (!SSL_CTX_use_certificate_chain_file(t->ctx, s->ssl_chain_cert)) {
        snprintf(err, errlen, "Error loading the certificate chain: %s : %s", s->ssl_chain_cert,
                 ssl_error_text(e, sizeof e));
        return false;
    }
    if (!SSL_CTX_use_PrivateKey_file(t->ctx, s->ssl_key, s->ssl_keyformat == 2 ? SSL_FILETYPE_ASN1 : SSL_FILETYPE_PEM)) {
        snprintf(err, errlen, "Error loading the key: %s : %s", s->ssl_key, ssl_error_text(e, sizeof e));
        return false;
    }
    if (!SSL_CTX_check_private_key(t->ctx)) {
        snprintf(err, errlen, "Error validating the certificate: %s", ssl_error_text(e, sizeof e));
        return false;
    }
    if (s->ssl_ca_cert) {
        if (!SSL_CTX_load_verify_locations(t->ctx, s->ssl_ca_cert, NULL)) {
            snprintf(err, errlen, "Error loading the CA certificate: %s : %s", s->ssl_ca_cert,
                     ssl_error_text(e, sizeof e));
            return false;
        }
        SSL_CTX_set_client_CA_list(t->ctx, SSL_load_client_CA_file(s->ssl_ca_cert));
    }
    __atomic_store_n(&t->loaded_at, (int64_t)time(NULL), __ATOMIC_RELAXED);
    return true;
}

mk_tls *mk_tls_create(const mk_settings *s, char *err, size_t errlen)
{
    static const int versions[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION};
    mk_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->s = s;
    pthread_mutex_init(&t->lock, NULL);
    t->ctx = SSL_CTX_new(TLS_server_method());
    char e[256];
    if (!t->ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ssl_error_text(e, sizeof e));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, versions[s->ssl_min_version]);
    if (!load_certificates(t, err, errlen))
        goto fail;
    /* memcached's 0..3: none, request, require, require once */
    static const int verify[] = {SSL_VERIFY_NONE, SSL_VERIFY_PEER, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                                 SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE};
    SSL_CTX_set_verify(t->ctx, verify[s->ssl_verify_mode], NULL);
    if (s->ssl_ciphers && !SSL_CTX_set_cipher_list(t->ctx, s->ssl_ciphers)) {
        snprintf(err, errlen, "Error setting the provided cipher(s): %s", s->ssl_ciphers);
        goto fail;
    }
    if (s->ssl_session_cache) {
        static const unsigned char sid[] = "memkitd";
        SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_set_session_id_context(t->ctx, sid, sizeof sid - 1);
    } else {
        SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    }
#ifdef SSL_OP_ENABLE_KTLS
    if (s->ssl_kernel_tls)
        SSL_CTX_set_options(t->ctx, SSL_OP_ENABLE_KTLS);
#else
    if (s->ssl_kernel_tls) {
        snprintf(err, errlen, "Kernel TLS offload is not available in this OpenSSL");
        goto fail;
    }
#endif
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
    /* partial writes: the reply queue is written as far as the socket takes it, like writev */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    return t;
fail:
    mk_tls_free(t);
    return NULL;
}

void mk_tls_free(mk_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

bool mk_tls_refresh(mk_tls *t, char *err, size_t errlen)
{
    pthread_mutex_lock(&t->lock);
    bool ok = load_certificates(t, err, errlen);
    pthread_mutex_unlock(&t->lock);
    return ok;
}

int64_t mk_tls_since_refresh(mk_tls *t, int64_t now)
{
    return now - __atomic_load_n(&t->loaded_at, __ATOMIC_RELAXED);
}

uint64_t mk_tls_handshake_errors(mk_tls *t)
{
    return __atomic_load_n(&t->handshake_errors, __ATOMIC_RELAXED);
}

uint64_t mk_tls_ktls_connections(mk_tls *t)
{
    return __atomic_load_n(&t->ktls, __ATOMIC_RELAXED);
}

/* What a connection keeps: its SSL object, and the context's counters. */
typedef struct tls_state {
    SSL *ssl;
    mk_tls *t;
    bool handshaken;
} tls_state;

bool mk_tls_conn_start(mk_tls *t, mk_conn *c)
{
    tls_state *st = calloc(1, sizeof(*st));
    if (!st)
        return false;
    pthread_mutex_lock(&t->lock);
    st->ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    if (!st->ssl || !SSL_set_fd(st->ssl, c->w.fd)) {
        SSL_free(st->ssl);
        free(st);
        return false;
    }
    SSL_set_accept_state(st->ssl);
    st->t = t;
    c->tstate = st;
    c->tr = &mk_transport_tls;
    return true;
}

/* An SSL_read/SSL_write result that is not data: -1 wait (the loop watches the fd), -2 error, 0 closed. */
static ssize_t ssl_result(tls_state *st, int r)
{
    int e = SSL_get_error(st->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify: the end of the stream */
    default:
        /* a handshake the peer got wrong (a peer that only connected and left is not counted) */
        if (e == SSL_ERROR_SSL && !st->handshaken && !SSL_is_init_finished(st->ssl) &&
            ERR_GET_REASON(ERR_peek_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            __atomic_fetch_add(&st->t->handshake_errors, 1, __ATOMIC_RELAXED);
            st->handshaken = true; /* (counted once) */
        }
        ERR_clear_error();
        return -2;
    }
}

/*
 * Fill the pieces in order. A short SSL_read means the record it came from is
 * used up (no read-ahead), so nothing decrypted is left behind in OpenSSL
 * where the event loop could not see it; a full piece goes on to the next.
 */
static ssize_t tls_readv(mk_conn *c, const struct iovec *iov, int n)
{
    tls_state *st = c->tstate;
    size_t got = 0;
    for (int i = 0; i < n; i++) {
        size_t want = iov[i].iov_len > INT32_MAX ? INT32_MAX : iov[i].iov_len;
        if (want == 0)
            continue;
        ERR_clear_error();
        int r = SSL_read(st->ssl, iov[i].iov_base, (int)want);
        if (r <= 0) {
            ssize_t x = ssl_result(st, r);
            return got > 0 ? (ssize_t)got : x;
        }
        if (!st->handshaken && BIO_get_ktls_send(SSL_get_wbio(st->ssl)))
            __atomic_fetch_add(&st->t->ktls, 1, __ATOMIC_RELAXED);
        st->handshaken = true;
        got += (size_t)r;
        if ((size_t)r < want)
            break;
    }
    return (ssize_t)got;
}

/*
 * Write the pieces in order. A reply is several small pieces (a header, the
 * value, "\r\nEND\r\n"), and each SSL_write is a TLS record of its own (with
 * 22 or more bytes of framing and an encryption call): pieces smaller than
 * ssl_wbuf_size are gathered into the worker's buffer first, so a get's reply,
 * or a pipeline's replies, go as one record, as memcached's ssl_wbuf does. A
 * piece at least that large goes as it is. After a write that could not go on,
 * the next call starts at the same byte and gathers at least as many (the queue
 * only grows at its end): the retry OpenSSL requires.
 */
static ssize_t tls_writev(mk_conn *c, const struct iovec *iov, int n)
{
    tls_state *st = c->tstate;
    size_t cap = c->worker->srv->settings->ssl_wbuf_size;
    if (c->worker->tls_wbuf == NULL && (c->worker->tls_wbuf = malloc(cap)) == NULL)
        cap = 0; /* (no buffer: every piece as it is) */
    size_t done = 0, off = 0;
    int i = 0;
    while (i < n) {
        size_t left = iov[i].iov_len - off;
        if (left == 0) {
            i++, off = 0;
            continue;
        }
        const char *p = (const char *)iov[i].iov_base + off;
        size_t len = left > (1u << 20) ? 1u << 20 : left;
        if (left < cap) {
            char *b = c->worker->tls_wbuf;
            memcpy(b, p, left);
            len = left;
            for (int j = i + 1; j < n && len < cap; j++) {
                size_t take = iov[j].iov_len < cap - len ? iov[j].iov_len : cap - len;
                memcpy(b + len, iov[j].iov_base, take);
                len += take;
            }
            p = b;
        }
        ERR_clear_error();
        int w = SSL_write(st->ssl, p, (int)len);
        if (w <= 0) {
            ssize_t x = ssl_result(st, w);
            if (done > 0)
                return (ssize_t)done;
            return x == 0 ? -2 : x;
        }
        done += (size_t)w;
        for (size_t adv = (size_t)w; adv > 0;) {   /* move (i, off) on by w bytes */
            size_t in = iov[i].iov_len - off;
            if (adv < in) {
                off += adv;
                break;
            }
            adv -= in;
            i++, off = 0;
        }
        if ((size_t)w < len)
            return (ssize_t)done; /* the socket took no more */
    }
    return (ssize_t)done;
}

static void tls_close(mk_conn *c)
{
    tls_state *st = c->tstate;
    if (st) {
        if (SSL_is_init_finished(st->ssl))
            (void)SSL_shutdown(st->ssl); /* one close_notify, without waiting for the peer's */
        SSL_free(st->ssl);
        free(st);
        c->tstate = NULL;
    }
    close(c->w.fd);
}

const mk_transport mk_transport_tls = {
    .name = "tls",
    .readv = tls_readv,
    .writev = tls_writev,
    .close = tls_close,
};
