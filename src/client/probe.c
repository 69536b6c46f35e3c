/* client/probe.c — probes: the circuit breaker's background thread that checks a dead server when its retry interval ends, so no caller ever waits on one; and the one-time question whether a server speaks the meta protocol. */
#include "client/client.h"
#include "memkit/binary.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/*
 * A server that failed failure_limit times in a row is dead: callers fail over
 * (auto_eject) or fail fast at once, and never try it themselves. One thread per
 * client, started when a server dies and gone when none is dead, wakes when a
 * dead server's retry interval ends and probes it: connect, `version` (and
 * `flush_all` with flush_on_rejoin, so that nothing written elsewhere while it
 * was away is served stale). Success: the server rejoins. Failure: it stays dead
 * for another interval. Only this thread touches the network for a dead server.
 *
 * probe_lock guards probe_running, probe_joinable and probe_stop; server state is
 * atomic (pool.c). The thread never holds probe_lock while probing.
 */

/* Wait for fd to be ready for `events` until deadline (monotonic ms): true if it is. */
static bool wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mk__now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
}

/* Connect conn to s (with TLS, handshake too) within connect_timeout_ms: 0 or an error. */
static int connect_wait(mk_client *c, mk_server *s, mk_conn *conn)
{
    int rc = mk__conn_connect(c, s, conn);
    int64_t deadline = mk__now_ms() + c->opt.connect_timeout_ms;
    while (rc == MK_EAGAIN)
        rc = wait_fd(conn->fd, conn->want, deadline) ? mk__conn_connect_finish(c, s, conn) : MK_ETIMEDOUT;
    return rc;
}

/* Send req[0..len) on conn before the deadline. */
static bool send_all(mk_conn *conn, const char *req, size_t len, int64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = mk__conn_send(conn, req + off, len - off, MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        else if (!wait_fd(conn->fd, conn->want, deadline))
            return false;
    }
    return true;
}

/* Receive more into buf[*got..cap) before the deadline; false on EOF, an error, a timeout or a full buffer. */
static bool recv_more(mk_conn *conn, char *buf, size_t *got, size_t cap, int64_t deadline)
{
    for (;;) {
        if (*got == cap)
            return false;
        ssize_t n = mk__conn_recv(conn, buf + *got, cap - *got, MSG_DONTWAIT);
        if (n > 0) {
            *got += (size_t)n;
            return true;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR) || !wait_fd(conn->fd, conn->want, deadline))
            return false;
    }
}

/* Send req on conn and read until the reply holds `want` lines, each starting with expect[i]. */
static bool exchange(mk_client *c, mk_conn *conn, const char *req, const char *const *expect, size_t want)
{
    int64_t deadline = mk__now_ms() + c->opt.io_timeout_ms;
    if (!send_all(conn, req, strlen(req), deadline))
        return false;
    char buf[512];
    size_t got = 0, lines = 0, start = 0;
    while (lines < want) {
        if (!recv_more(conn, buf, &got, sizeof buf, deadline))
            return false;
        for (size_t i = start; i + 1 < got && lines < want; i++) {
            if (buf[i] != '\r' || buf[i + 1] != '\n')
                continue;
            size_t el = strlen(expect[lines]);
            if (i - start < el || memcmp(buf + start, expect[lines], el) != 0)
                return false;
            lines++;
            start = i + 2;
            i++;
        }
    }
    return true;
}

/* Ask once whether s speaks the meta protocol: "mn" gets "MN" from a meta server, ERROR from an older
 * one, and a closed connection from twemproxy (it drops what it does not know). 1, 0, or an error. */
static int ask_meta(mk_client *c, mk_conn *conn)
{
    int64_t deadline = mk__now_ms() + c->opt.io_timeout_ms;
    char req[MK_AUTH_FRAME_MAX + 64];
    size_t len = c->opt.ascii_auth ? mk__ascii_auth_token(req, sizeof req, &c->opt) : 0, off = 0;
    memcpy(req + len, "mn\r\n", 4);
    len += 4;
    while (off < len) {
        ssize_t n = mk__conn_send(conn, req + off, len - off, MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 0; /* reset at once: not a meta server */
        else if (!wait_fd(conn->fd, conn->want, deadline))
            return MK_ETIMEDOUT;
    }
    char buf[128];
    size_t got = 0;
    bool token_answered = !c->opt.ascii_auth;
    while (got < sizeof buf) {
        ssize_t n = mk__conn_recv(conn, buf + got, sizeof buf - got, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return 0;
        if (n < 0) {
            if (!wait_fd(conn->fd, conn->want, deadline))
                return MK_ETIMEDOUT;
            continue;
        }
        got += (size_t)n;
        const char *nl = memchr(buf, '\n', got);
        if (nl && !token_answered) { /* the token's answer first */
            if (nl - buf != 7 || memcmp(buf, "STORED\r", 7) != 0)
                return MK_EAUTH;
            token_answered = true;
            got -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, got);
            nl = memchr(buf, '\n', got);
            if (!nl)
                continue;
        }
        if (nl)
            return nl - buf == 3 && memcmp(buf, "MN\r", 3) == 0;
    }
    return 0;
}

int mk__server_meta(mk_client *c, mk_server *s)
{
    if (c->opt.binary)
        return 0; /* a binary client sends no meta request (its servers may speak nothing else) */
    int known = atomic_load_explicit(&s->meta, memory_order_relaxed);
    if (known)
        return known > 0;
    mk_conn *conn = mk__conn_new();
    if (conn == NULL)
        return MK_ENOMEM;
    int rc = connect_wait(c, s, conn);
    if (rc == 0)
        rc = ask_meta(c, conn);
    mk__conn_free(conn);
    if (rc >= 0)
        atomic_store_explicit(&s->meta, rc ? 1 : -1, memory_order_relaxed);
    return rc;
}

/* One probe of server s: true if it answered (and, with flush_on_rejoin, was flushed). */
/* The binary protocol's probe: [SASL auth,] version [, flush]; every answer must say OK. */
static bool exchange_binary(mk_client *c, mk_conn *conn, bool flush)
{
    int64_t deadline = mk__now_ms() + c->opt.io_timeout_ms;
    char req[MK_AUTH_FRAME_MAX + 2 * MK_BIN_HDR];
    size_t len = 0, want = 0;
    if (c->opt.username) {
        len += mk__bin_auth_frame(req, sizeof req, c->opt.username, c->opt.password);
        want++;
    }
    mk_bin_compose_hdr((uint8_t *)req + len, MK_BIN_MAGIC_REQ, MK_BIN_VERSION, 0, 0, 0, 0, 0, 0);
    len += MK_BIN_HDR;
    want++;
    if (flush) {
        mk_bin_compose_hdr((uint8_t *)req + len, MK_BIN_MAGIC_REQ, MK_BIN_FLUSH, 0, 0, 0, 0, 0, 0);
        len += MK_BIN_HDR;
        want++;
    }
    if (!send_all(conn, req, len, deadline))
        return false;
    char buf[1024];
    size_t got = 0;
    while (want > 0) {
        mk_bin_frame f;
        ssize_t used = mk_bin_parse_res(buf, got, &f);
        if (used < 0 || (used > 0 && f.vbucket_or_status != MK_BIN_OK))
            return false;
        if (used > 0) {
            memmove(buf, buf + used, got - (size_t)used);
            got -= (size_t)used;
            want--;
            continue;
        }
        if (!recv_more(conn, buf, &got, sizeof buf, deadline))
            return false;
    }
    return true;
}

static bool probe(mk_client *c, mk_server *s)
{
    mk_conn *conn = mk__conn_new();
    if (conn == NULL)
        return false;
    bool ok = false;
    int rc = connect_wait(c, s, conn);
    if (rc == 0 && c->opt.binary) {
        ok = exchange_binary(c, conn, c->opt.flush_on_rejoin);
    } else if (rc == 0) {
        /* [-Y token,] version [, flush_all] */
        const char *expect[3];
        size_t n = 0, len = 0;
        char req[MK_AUTH_FRAME_MAX + 64];
        if (c->opt.ascii_auth) {
            len = mk__ascii_auth_token(req, sizeof req, &c->opt);
            expect[n++] = "STORED";
        }
        len += (size_t)snprintf(req + len, sizeof req - len, "version\r\n%s",
                                c->opt.flush_on_rejoin ? "flush_all\r\n" : "");
        expect[n++] = "VERSION ";
        if (c->opt.flush_on_rejoin)
            expect[n++] = "OK";
        ok = exchange(c, conn, req, expect, n);
    }
    mk__conn_free(conn);
    return ok;
}

static void *probe_main(void *arg)
{
    mk_client *c = arg;
    pthread_mutex_lock(&c->probe_lock);
    while (!c->probe_stop) {
        int64_t now = mk__now_ms(), next = INT64_MAX;
        mk_server *due = NULL;
        for (size_t i = 0; i < c->n && !due; i++) {
            mk_server *s = &c->servers[i];
            if (atomic_load(&s->dead_until) != MK_DEAD)
                continue;
            int64_t at = atomic_load(&s->probe_at);
            if (at <= now)
                due = s;
            else if (at < next)
                next = at;
        }
        if (due) {
            pthread_mutex_unlock(&c->probe_lock);
            atomic_fetch_add_explicit(&due->n.probes, 1, memory_order_relaxed);
            if (probe(c, due)) {
                mk__server_rejoin(due);
            } else {
                atomic_store(&due->probe_at, mk__now_ms() + c->opt.retry_interval_ms);
            }
            pthread_mutex_lock(&c->probe_lock);
            continue;
        }
        if (next == INT64_MAX)
            break;   /* nothing is dead: the next death starts a new thread */
        struct timespec ts = {.tv_sec = next / 1000, .tv_nsec = (next % 1000) * 1000000};
        pthread_cond_timedwait(&c->probe_cond, &c->probe_lock, &ts);
    }
    c->probe_running = false;
    pthread_mutex_unlock(&c->probe_lock);
    return NULL;
}

void mk__probe_kick(mk_client *c)
{
    pthread_mutex_lock(&c->probe_lock);
    if (c->probe_running) {
        pthread_cond_signal(&c->probe_cond);
    } else if (!c->probe_stop) {
        if (c->probe_joinable) {   /* a thread that found nothing dead and ended: reap it */
            pthread_join(c->probe_thread, NULL);
            c->probe_joinable = false;
        }
        if (pthread_create(&c->probe_thread, NULL, probe_main, c) == 0)
            c->probe_running = c->probe_joinable = true;
        /* else: no thread; the server stays dead until mk_server_revive (or the next failure elsewhere) */
    }
    pthread_mutex_unlock(&c->probe_lock);
}

void mk__probe_init(mk_client *c)
{
    pthread_mutex_init(&c->probe_lock, NULL);
    mk__cond_init_mono(&c->probe_cond);
    c->probe_running = c->probe_joinable = c->probe_stop = false;
}

void mk__probe_stop(mk_client *c)
{
    pthread_mutex_lock(&c->probe_lock);
    c->probe_stop = true;
    pthread_cond_signal(&c->probe_cond);
    bool join = c->probe_joinable;
    c->probe_joinable = false;
    pthread_mutex_unlock(&c->probe_lock);
    if (join)
        pthread_join(c->probe_thread, NULL);
    pthread_mutex_destroy(&c->probe_lock);
    pthread_cond_destroy(&c->probe_cond);
}

void mk__probe_after_fork(mk_client *c)
{
    mk__probe_init(c);   /* the parent's thread does not exist here */
    for (size_t i = 0; i < c->n; i++)
        if (atomic_load(&c->servers[i].dead_until) == MK_DEAD) {
            mk__probe_kick(c);
            break;
        }
}
