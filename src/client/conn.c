/* client/conn.c — client connections: non-blocking sockets, connect in progress, receive buffer, stale checks. */
#include "client/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MK_DRAIN_LINE_MAX 65536 /* a longer line while draining quiet replies is garbage */

#define RBUF_INIT 16384

mk_conn *mk__conn_new(void)
{
    mk_conn *conn = calloc(1, sizeof *conn);
    if (conn)
        conn->fd = -1;
    return conn;
}

void mk__conn_close(mk_conn *conn)
{
    if (conn->ssl)
        mk__tls_forget(conn);
    if (conn->fd >= 0)
        close(conn->fd);
    conn->fd = -1;
    conn->connecting = false;
    conn->unsynced = false;
    conn->pending_mn = conn->quiet_open = 0;
    conn->blocking = false;
    conn->rpos = conn->rlen = 0;
}

void mk__conn_free(mk_conn *conn)
{
    if (conn == NULL)
        return;
    mk__conn_close(conn);
    free(conn->rbuf);
    free(conn);
}

int mk__conn_reserve(mk_conn *conn, size_t want)
{
    if (conn->rpos == conn->rlen)
        conn->rpos = conn->rlen = 0;
    if (conn->rcap - conn->rlen >= want)
        return 0;
    if (conn->rpos > 0) {   /* slide the unparsed bytes to the front */
        memmove(conn->rbuf, conn->rbuf + conn->rpos, conn->rlen - conn->rpos);
        conn->rlen -= conn->rpos;
        conn->rpos = 0;
        if (conn->rcap - conn->rlen >= want)
            return 0;
    }
    return mk__buf_grow(&conn->rbuf, &conn->rcap, conn->rlen + want, RBUF_INIT);
}

int mk__buf_grow(char **buf, size_t *cap, size_t total, size_t initial)
{
    if (total <= *cap)
        return 0;
    size_t c = *cap ? *cap : initial;
    while (c < total)
        c *= 2;
    char *b = realloc(*buf, c);
    if (b == NULL)
        return MK_ENOMEM;
    *buf = b;
    *cap = c;
    return 0;
}

static int tls_start(mk_client *c, mk_server *s, mk_conn *conn);

int mk__conn_connect(mk_client *c, mk_server *s, mk_conn *conn)
{
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return MK_ECONNECT;
    if (!s->is_unix && c->opt.tcp_nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    conn->fd = fd;
    conn->rpos = conn->rlen = 0;
    conn->unsynced = false;
    conn->binary = c->opt.binary;
    conn->want = POLLOUT;
    if (connect(fd, (struct sockaddr *)&s->addr, s->addrlen) == 0)
        return tls_start(c, s, conn);
    if (errno == EINPROGRESS || errno == EINTR) {
        conn->connecting = true;
        return MK_EAGAIN;
    }
    mk__conn_close(conn);
    return MK_ECONNECT;
}

/* TCP is up: plain, done; TLS, its handshake begins. */
static int tls_start(mk_client *c, mk_server *s, mk_conn *conn)
{
    conn->connecting = false;
    int rc = mk__tls_attach(c, s, conn);
    if (rc == 0 && conn->ssl)
        rc = mk__tls_handshake(conn);
    if (rc && rc != MK_EAGAIN)
        mk__conn_close(conn);
    return rc;
}

int mk__conn_connect_finish(mk_client *c, mk_server *s, mk_conn *conn)
{
    if (conn->ssl) {
        int rc = mk__tls_handshake(conn);
        if (rc && rc != MK_EAGAIN)
            mk__conn_close(conn);
        return rc;
    }
    struct pollfd p = {conn->fd, POLLOUT, 0};
    int r = poll(&p, 1, 0);
    if (r == 0)
        return MK_EAGAIN;
    int err = 0;
    socklen_t len = sizeof err;
    if (r < 0 || getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        mk__conn_close(conn);
        return MK_ECONNECT;
    }
    return tls_start(c, s, conn);
}

void mk__conn_ready(mk_client *c, mk_conn *conn)
{
    if (conn->blocking || conn->ssl)
        return;
    int fl = fcntl(conn->fd, F_GETFL);
    int ms = c->opt.io_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (fl >= 0 && setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
        fcntl(conn->fd, F_SETFL, fl & ~O_NONBLOCK) == 0)
        conn->blocking = true;
}

int mk__conn_drain(mk_server *s, mk_conn *conn)
{
    uint64_t failed = 0;
    int rc = 0;
    while ((conn->pending_mn || conn->quiet_open) && conn->rpos < conn->rlen) {
        size_t avail = conn->rlen - conn->rpos, used = 0;
        bool closes; /* the answer to "mn" (a noop in binary) */
        if (conn->binary) {
            int r = mk__bin_drain_frame(conn->rbuf + conn->rpos, avail, &used, &closes);
            if (r < 0) {
                rc = MK_EPROTO;
                break;
            }
        } else {
            mk_meta_resp r;
            ssize_t n = mk_parse_meta_response(conn->rbuf + conn->rpos, avail, &r);
            if (n < 0 || (n > 0 && r.code == MK_MC_VA) || (n == 0 && avail > MK_DRAIN_LINE_MAX)) {
                rc = MK_EPROTO; /* quiet ms/md/ma never answer with a value */
                break;
            }
            used = (size_t)(n > 0 ? n : 0);
            closes = n > 0 && r.code == MK_MC_MN;
        }
        if (used == 0)
            break;
        conn->rpos += used;
        if (!closes) {
            failed++;
        } else if (conn->pending_mn == 0) {
            rc = MK_EPROTO; /* an MN nobody asked for */
            break;
        } else {
            conn->pending_mn--;
        }
    }
    if (failed)
        atomic_fetch_add_explicit(&s->n.noreply_failed, failed, memory_order_relaxed);
    return rc;
}

int mk__conn_drain_ready(mk_server *s, mk_conn *conn)
{
    for (;;) {
        int rc = mk__conn_drain(s, conn);
        if (rc || (conn->pending_mn == 0 && conn->quiet_open == 0))
            return rc;
        if (mk__conn_reserve(conn, 4096))
            return MK_ENOMEM;
        ssize_t n = mk__conn_recv(conn, conn->rbuf + conn->rlen, conn->rcap - conn->rlen, MSG_DONTWAIT);
        if (n > 0)
            conn->rlen += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : MK_EIO;
    }
}

bool mk__conn_usable(mk_server *s, mk_conn *conn)
{
    if (conn->fd < 0 || conn->connecting)
        return false;
    if (conn->pending_mn || conn->quiet_open) {
        if (mk__conn_drain_ready(s, conn) != 0)
            return false;
        if (conn->pending_mn || conn->quiet_open)
            return true; /* the rest is read by the next call, after it sends "mn" */
        if (conn->rpos != conn->rlen)
            return false; /* bytes past the last MN are stray */
    }
    struct pollfd p = {conn->fd, POLLIN, 0};
    /* readable while idle means EOF, an error, or a reply nobody asked for (noreply); over TLS it
     * may also be the server's session tickets (TLS 1.3 sends them after the handshake), which a
     * read takes in without a byte for us */
    if (mk__conn_buffered(conn))
        return false;
    if (poll(&p, 1, 0) != 0) {
        if (conn->ssl == NULL || mk__conn_reserve(conn, 4096) != 0)
            return false;
        ssize_t n = mk__conn_recv(conn, conn->rbuf + conn->rlen, conn->rcap - conn->rlen, MSG_DONTWAIT);
        if (n >= 0 || errno != EAGAIN || conn->want != POLLIN || mk__conn_buffered(conn))
            return false;
    }
    conn->unsynced = false;
    conn->rpos = conn->rlen = 0;
    return true;
}
