/* client/probe.c — probes: the circuit breaker's background thread that checks a dead server when its retry interval ends, so no caller ever waits on one; and the one-time question whether a server speaks the meta protocol. */
#include "client/client.h"

#include <errno.h>
#include <poll.h>
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

/* Send req on conn and read until the reply holds `want` lines, each starting with expect[i]. */
static bool exchange(mk_client *c, mk_conn *conn, const char *req, const char *const *expect, size_t want)
{
    int64_t deadline = mk__now_ms() + c->opt.io_timeout_ms;
    size_t len = strlen(req), off = 0;
    while (off < len) {
        ssize_t n = send(conn->fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        else if (!wait_fd(conn->fd, POLLOUT, deadline))
            return false;
    }
    char buf[512];
    size_t got = 0, lines = 0, start = 0;
    while (lines < want) {
        if (got == sizeof buf)
            return false;
        ssize_t n = recv(conn->fd, buf + got, sizeof buf - got, MSG_DONTWAIT);
        if (n == 0)
            return false;
        if (n < 0) {
            if ((errno != EAGAIN && errno != EINTR) || !wait_fd(conn->fd, POLLIN, deadline))
                return false;
            continue;
        }
        got += (size_t)n;
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
    const char req[] = "mn\r\n";
    size_t off = 0;
    while (off < sizeof req - 1) {
        ssize_t n = send(conn->fd, req + off, sizeof req - 1 - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 0; /* reset at once: not a meta server */
        else if (!wait_fd(conn->fd, POLLOUT, deadline))
            return MK_ETIMEDOUT;
    }
    char buf[128];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = recv(conn->fd, buf + got, sizeof buf - got, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return 0;
        if (n < 0) {
            if (!wait_fd(conn->fd, POLLIN, deadline))
                return MK_ETIMEDOUT;
            continue;
        }
        got += (size_t)n;
        const char *nl = memchr(buf, '\n', got);
        if (nl)
            return nl - buf == 3 && memcmp(buf, "MN\r", 3) == 0;
    }
    return 0;
}

int mk__server_meta(mk_client *c, mk_server *s)
{
    int known = atomic_load_explicit(&s->meta, memory_order_relaxed);
    if (known)
        return known > 0;
    mk_conn *conn = mk__conn_new();
    if (conn == NULL)
        return MK_ENOMEM;
    int rc = mk__conn_connect(c, s, conn);
    int64_t deadline = mk__now_ms() + c->opt.connect_timeout_ms;
    while (rc == MK_EAGAIN)
        rc = wait_fd(conn->fd, POLLOUT, deadline) ? mk__conn_connect_finish(conn) : MK_ETIMEDOUT;
    if (rc == 0)
        rc = ask_meta(c, conn);
    mk__conn_free(conn);
    if (rc >= 0)
        atomic_store_explicit(&s->meta, rc ? 1 : -1, memory_order_relaxed);
    return rc;
}

/* One probe of server s: true if it answered (and, with flush_on_rejoin, was flushed). */
static bool probe(mk_client *c, mk_server *s)
{
    mk_conn *conn = mk__conn_new();
    if (conn == NULL)
        return false;
    bool ok = false;
    int rc = mk__conn_connect(c, s, conn);
    int64_t deadline = mk__now_ms() + c->opt.connect_timeout_ms;
    while (rc == MK_EAGAIN)
        rc = wait_fd(conn->fd, POLLOUT, deadline) ? mk__conn_connect_finish(conn) : MK_ETIMEDOUT;
    if (rc == 0) {
        static const char *const version[] = {"VERSION "}, *const flushed[] = {"VERSION ", "OK"};
        ok = c->opt.flush_on_rejoin ? exchange(c, conn, "version\r\nflush_all\r\n", flushed, 2)
                                    : exchange(c, conn, "version\r\n", version, 1);
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->probe_lock, NULL);
    pthread_cond_init(&c->probe_cond, &ca);
    pthread_condattr_destroy(&ca);
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
