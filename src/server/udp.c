/* server/udp.c — the UDP transport: one request datagram per read, replies framed per response with memcached's 8-byte header. */
#include "server/udp.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDP_DATA_SIZE (MK_UDP_MAX_PAYLOAD - MK_UDP_HEADER_SIZE) /* reply bytes a datagram carries */
#define UDP_READS_PER_CALL 64 /* datagrams dropped unread (too short, multi-packet) before yielding */

/* What a UDP connection keeps beyond mk_conn (mk_conn.tstate). */
typedef struct udp_state {
    /* the datagram being served: where its replies go (written under the worker's conns_lock) */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    uint16_t request_id;
    /* the response at resps[resp_head], while it is being sent */
    bool entered;       /* its count is computed and the batch rule applied */
    uint16_t seq;       /* next sequence number */
    uint16_t total;     /* its datagram count */
    /* a datagram has gone out in the current transmit batch: memcached then also
     * retires the empty responses that follow without framing them */
    bool sent_in_batch;
} udp_state;

int mk_udp_threads_per_socket(const mk_settings *s)
{
    return s->nlisten > 1 ? 1 : s->threads;
}

/* ---- reading ---- */

static ssize_t udp_readv(mk_conn *c, const struct iovec *iov, int n)
{
    udp_state *u = c->tstate;
    unsigned char hdr[MK_UDP_HEADER_SIZE];
    struct iovec v[8];
    if (n > 7)
        n = 7;
    v[0] = (struct iovec){hdr, sizeof(hdr)};
    memcpy(v + 1, iov, (size_t)n * sizeof(*iov));
    for (int tries = 0; tries < UDP_READS_PER_CALL; tries++) {
        struct sockaddr_storage from;
        struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = v, .msg_iovlen = (size_t)n + 1};
        ssize_t r = recvmsg(c->w.fd, &m, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN; or an error the socket had pending (an ICMP report), now collected: the socket
             * stays open either way, and the loop reports it again if datagrams are waiting */
            return -1;
        }
        if (r <= MK_UDP_HEADER_SIZE)
            continue; /* no request in it: memcached ignores it */
        MK_STAT_ADD(&c->worker->stats, bytes_read, (uint64_t)MK_UDP_HEADER_SIZE); /* (conn.c counts the rest) */
        if (hdr[4] != 0 || hdr[5] != 1) {
            /* a request in several datagrams: memcached (since 1.6.9) drops it without a word */
            MK_STAT_ADD(&c->worker->stats, bytes_read, (uint64_t)(r - MK_UDP_HEADER_SIZE));
            continue;
        }
        u->request_id = (uint16_t)(hdr[0] << 8 | hdr[1]);
        pthread_mutex_lock(&c->worker->conns_lock);
        memcpy(&u->peer, &from, m.msg_namelen <= sizeof(from) ? m.msg_namelen : sizeof(from));
        u->peer_len = m.msg_namelen;
        pthread_mutex_unlock(&c->worker->conns_lock);
        return r - MK_UDP_HEADER_SIZE;
    }
    return -1;
}

/* ---- writing ---- */

/* Send one datagram: the header for the current response, then len payload bytes. -1 would block. */
static int send_datagram(mk_conn *c, const unsigned char *payload, size_t len)
{
    udp_state *u = c->tstate;
    unsigned char buf[MK_UDP_MAX_PAYLOAD];
    buf[0] = (unsigned char)(u->request_id >> 8);
    buf[1] = (unsigned char)u->request_id;
    buf[2] = (unsigned char)(u->seq >> 8);
    buf[3] = (unsigned char)u->seq;
    buf[4] = (unsigned char)(u->total >> 8);
    buf[5] = (unsigned char)u->total;
    buf[6] = buf[7] = 0;
    memcpy(buf + MK_UDP_HEADER_SIZE, payload, len);
    for (;;) {
        ssize_t w = sendto(c->w.fd, buf, MK_UDP_HEADER_SIZE + len, 0, (struct sockaddr *)&u->peer, u->peer_len);
        if (w >= 0) {
            MK_STAT_ADD(&c->worker->stats, bytes_written, (uint64_t)MK_UDP_HEADER_SIZE); /* (conn.c counts the rest) */
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        /* anything else (the sender's address refused, a firewall): the datagram is lost, as
         * datagrams may be; the socket stays */
        if (__atomic_load_n(&c->worker->srv->verbosity, __ATOMIC_RELAXED) > 0)
            fprintf(stderr, "<%d udp send: %s\n", c->w.fd, strerror(errno));
        break;
    }
    u->seq++;
    u->sent_in_batch = true;
    return 0;
}

/* Copy up to want bytes from the iov cursor (*vi, *voff) into dst; returns the bytes copied. */
static size_t gather(const struct iovec *iov, int n, int *vi, size_t *voff, unsigned char *dst, size_t want)
{
    size_t got = 0;
    while (got < want && *vi < n) {
        size_t k = iov[*vi].iov_len - *voff;
        if (k > want - got)
            k = want - got;
        memcpy(dst + got, (const char *)iov[*vi].iov_base + *voff, k);
        got += k;
        *voff += k;
        if (*voff == iov[*vi].iov_len) {
            (*vi)++;
            *voff = 0;
        }
    }
    return got;
}

/*
 * Send the queue's responses from resps[resp_head] on, as memcached's
 * transmit_udp does: each response on its own, in datagrams of at most
 * UDP_DATA_SIZE reply bytes numbered from 0, all with the count of the whole
 * response; an empty response the protocol keeps is one bare header with count
 * 0, unless a datagram has gone out earlier in its transmit batch (memcached
 * retires such empty responses along with the one before them).
 */
static ssize_t udp_writev(mk_conn *c, const struct iovec *iov, int n)
{
    udp_state *u = c->tstate;
    size_t avail = 0;
    for (int i = 0; i < n; i++)
        avail += iov[i].iov_len;
    size_t pos = c->out_sent, qend = c->out_sent + c->out_pending, done = 0, voff = 0;
    int vi = 0;
    unsigned char payload[UDP_DATA_SIZE];
    while (c->resp_head < c->nresps) {
        const mk_resp *r = &c->resps[c->resp_head];
        size_t rend = c->resp_head + 1 < c->nresps ? c->resps[c->resp_head + 1].start : qend;
        size_t rlen = rend - r->start;
        if (!u->entered) {
            size_t total = (rlen + UDP_DATA_SIZE - 1) / UDP_DATA_SIZE;
            u->total = total > UINT16_MAX ? UINT16_MAX : (uint16_t)total;
            u->seq = 0;
            if (r->batch_start)
                u->sent_in_batch = false;
            u->entered = true;
        }
        if (rlen == 0 && r->kept && !u->sent_in_batch && send_datagram(c, payload, 0) < 0)
            return done > 0 ? (ssize_t)done : -1;
        while (pos < rend) {
            size_t want = rend - pos < UDP_DATA_SIZE ? rend - pos : UDP_DATA_SIZE;
            if (want > avail - done) {
                /* the iov stops short of this datagram (conn.c's iovec limit): the rest comes
                 * in the next call; a datagram is never cut (1024 pieces always hold more) */
                if (done > 0)
                    return (ssize_t)done;
                want = avail - done;
                if (want == 0)
                    return -1;
            }
            size_t k = gather(iov, n, &vi, &voff, payload, want);
            if (send_datagram(c, payload, k) < 0)
                return done > 0 ? (ssize_t)done : -1;
            pos += k;
            done += k;
        }
        c->resp_head++;
        u->entered = false;
    }
    return (ssize_t)done;
}

static void udp_close(mk_conn *c)
{
    close(c->w.fd);
    free(c->tstate);
    c->tstate = NULL;
}

const mk_transport mk_transport_udp = {
    .name = "udp",
    .datagram = true,
    .readv = udp_readv,
    .writev = udp_writev,
    .close = udp_close,
};

/* ---- the connections ---- */

bool mk_udp_worker_start(mk_worker *wk)
{
    mk_server *srv = wk->srv;
    bool one_each = mk_udp_threads_per_socket(srv->settings) == 1;
    for (int i = 0; i < srv->nudp; i++) {
        if (one_each && i % srv->nworkers != wk->id)
            continue;
        const mk_udp_socket *us = &srv->udp[i];
        udp_state *u = calloc(1, sizeof(*u));
        int fd = u ? fcntl(us->fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (fd < 0) {
            fprintf(stderr, "memkitd: cannot serve %s in worker %d: %s\n", us->name, wk->id,
                    u ? strerror(errno) : "out of memory");
            free(u);
            return false;
        }
        mk_conn *c = mk_conn_create_on(wk, fd, &mk_transport_udp, mk_protocol_for(MK_PROTO_AUTO), us->name,
                                       us->name);
        if (!c) {
            fprintf(stderr, "memkitd: cannot serve %s in worker %d: out of memory\n", us->name, wk->id);
            free(u);
            return false;
        }
        c->tstate = u;
        if (__atomic_load_n(&srv->verbosity, __ATOMIC_RELAXED) > 1)
            fprintf(stderr, "<%d server listening (udp)\n", fd);
    }
    return true;
}

void mk_udp_peer_name(mk_conn *c, char *out, size_t cap)
{
    const udp_state *u = c->tstate;
    if (u && u->peer_len > 0)
        mk_sockaddr_name((const struct sockaddr *)&u->peer, "udp", out, cap);
    else
        snprintf(out, cap, "%s", c->listen_name);
}
