/* server/transport.c — the plain transport: a connection's bytes over its TCP or unix-domain socket. */
#include <errno.h>
#include <unistd.h>

#include "server/conn.h"

static ssize_t plain_readv(mk_conn *c, const struct iovec *iov, int n)
{
    for (;;) {
        ssize_t r = n == 1 ? read(c->w.fd, iov[0].iov_base, iov[0].iov_len) : readv(c->w.fd, iov, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
}

static ssize_t plain_writev(mk_conn *c, const struct iovec *iov, int n)
{
    for (;;) {
        ssize_t w = writev(c->w.fd, iov, n);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
}

static void plain_close(mk_conn *c)
{
    close(c->w.fd);
}

const mk_transport mk_transport_plain = {
    .name = "plain",
    .readv = plain_readv,
    .writev = plain_writev,
    .close = plain_close,
};
