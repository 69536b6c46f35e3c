/* tools/bench/worker.c — memkit-bench's per-thread event loop: clients with a connection to each server, requests split by key placement, timetable, reply parsing, latency. */
#include "bench.h"
#include "memkit/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { OP_GET = 1, OP_SET = 2 };
#define PREPOP_DEPTH 64
#define DRAIN_NS 3000000000ull /* after the stop, how long in-flight requests may take */

/* A request: one command to each server that holds some of its keys; done when every part is. */
typedef struct req {
    uint64_t t_start;   /* sending time (closed loop) or scheduled time (open loop) */
    uint32_t nkeys;     /* keys asked for */
    uint32_t hits;
    uint32_t parts;     /* parts not answered yet */
    uint8_t op;
    uint8_t measured;   /* 0: prepopulation */
    uint8_t error;
} req;

/* The part of a request one connection carries. Replies come back in order, so a connection's
 * parts wait in a ring and each reply belongs to the oldest. */
typedef struct part {
    uint32_t req;       /* its request: an index into the client's reqs */
    uint32_t nkeys;     /* keys asked of this server (0: a set) */
    uint32_t hits;
} part;

struct client;

typedef struct conn {
    struct client *cl;
    int srv;            /* index into cfg->srv */
    int fd;
    char *rbuf;
    size_t rlen, rcap;
    uint64_t skip;      /* value bytes (and their "\r\n") still to discard */
    char *wbuf;
    size_t woff, wlen, wcap;
    part *ring;         /* a request has at most one part here, so room for every request in flight */
    unsigned head, count, cap;
    int want_out;
} conn;

/* One of -c: what an application's client is, a connection to every server, with up to -P requests
 * in flight over them. Request slots are preallocated: a request allocates nothing. */
typedef struct client {
    conn *conns;        /* one per server, in list order */
    req *reqs;
    uint32_t *free;     /* indices of the free slots of reqs */
    unsigned cap, nfree;
} client;

typedef struct wctx {
    worker *w;
    const bench_cfg *c;
    int ep, tfd;
    client *clients;
    int nclients;
    /* a get's keys while they are placed and grouped by server (multiget entries each; first and
     * fill nsrv + 1): preallocated */
    char *kbuf;         /* key i at kbuf + i * MK_KEY_MAX */
    const char **kptr;
    size_t *klen;
    int *where;         /* key i's server */
    uint32_t *order;    /* key positions, server by server: server s's are order[first[s] .. first[s + 1]) */
    unsigned *first, *fill;
    rng r;
    zipf z;
    uint64_t issued, inflight;
    int prepop;
    uint64_t pre_next, pre_end;
    int stopping;
    uint64_t t0, deadline, drain_deadline;
    double interval;    /* open loop: ns between this thread's requests */
    uint64_t armed;
    int rr;
} wctx;

static int fail(wctx *x, const char *fmt, const char *arg)
{
    fprintf(stderr, "memkit-bench: thread %d: ", x->w->id);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    x->w->fatal = 1;
    atomic_store(&bench_stop, 1);
    return -1;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_connect(const bench_server *s, char *err, size_t errlen)
{
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) != 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", s->name, strerror(errno));
        close(fd);
        return -1;
    }
    if (s->addr.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int bench_meta_probe(const bench_server *s, char *err, size_t errlen)
{
    int fd = bench_connect(s, err, errlen);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    size_t n = 0;
    if (write(fd, "mn\r\n", 4) != 4) {
        snprintf(err, errlen, "%s: write: %s", s->name, strerror(errno));
        close(fd);
        return -1;
    }
    while (n < sizeof buf - 1 && memchr(buf, '\n', n) == NULL) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (n >= 4 && memcmp(buf, "MN\r\n", 4) == 0)
        return 0;
    char *e = strpbrk(buf, "\r\n");
    if (e)
        *e = 0;
    snprintf(err, errlen, "--protocol=meta: %s does not speak the meta protocol (\"mn\" got \"%s\"); use --protocol=text",
             s->name, buf);
    return -1;
}

/* ---- buffers ---- */

static int wreserve(conn *k, size_t n)
{
    if (k->woff == k->wlen)
        k->woff = k->wlen = 0;
    if (k->wlen + n <= k->wcap)
        return 0;
    if (k->woff > 0) {
        memmove(k->wbuf, k->wbuf + k->woff, k->wlen - k->woff);
        k->wlen -= k->woff;
        k->woff = 0;
        if (k->wlen + n <= k->wcap)
            return 0;
    }
    size_t cap = k->wcap * 2;
    while (cap < k->wlen + n)
        cap *= 2;
    char *p = realloc(k->wbuf, cap);
    if (p == NULL)
        return -1;
    k->wbuf = p;
    k->wcap = cap;
    return 0;
}

static void wput(conn *k, const void *p, size_t n)
{
    memcpy(k->wbuf + k->wlen, p, n);
    k->wlen += n;
}

static int set_out(wctx *x, conn *k, int on)
{
    if (k->want_out == on)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = k};
    k->want_out = on;
    return epoll_ctl(x->ep, EPOLL_CTL_MOD, k->fd, &ev);
}

static int flush(wctx *x, conn *k)
{
    while (k->woff < k->wlen) {
        ssize_t n = send(k->fd, k->wbuf + k->woff, k->wlen - k->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return set_out(x, k, 1);
            return fail(x, "send: %s", strerror(errno));
        }
        k->woff += (size_t)n;
        x->w->st.bytes_out += (uint64_t)n;
    }
    k->woff = k->wlen = 0;
    return set_out(x, k, 0);
}

/* Send what a client has written to any of its servers. */
static int flush_client(wctx *x, client *cl)
{
    for (int i = 0; i < x->c->nsrv; i++) {
        conn *k = &cl->conns[i];
        if (k->wlen > k->woff && flush(x, k) != 0)
            return -1;
    }
    return 0;
}

/* ---- requests ---- */

static uint64_t pick_key(wctx *x)
{
    if (x->c->dist == DIST_ZIPF)
        return zipf_sample(&x->z, &x->r);
    return rng_next(&x->r) % x->c->key_space;
}

static unsigned in_flight(const client *cl)
{
    return cl->cap - cl->nfree;
}

static req *take_req(wctx *x, client *cl, int op, uint64_t t, int measured)
{
    req *r = &cl->reqs[cl->free[--cl->nfree]];
    x->inflight++;
    memset(r, 0, sizeof *r);
    r->op = (uint8_t)op;
    r->t_start = t;
    r->measured = (uint8_t)measured;
    return r;
}

/* r's part on server srv, answered after everything already waiting on that connection */
static part *push_part(client *cl, int srv, req *r)
{
    conn *k = &cl->conns[srv];
    part *p = &k->ring[(k->head + k->count) % k->cap];
    k->count++;
    r->parts++;
    p->req = (uint32_t)(r - cl->reqs);
    p->nkeys = p->hits = 0;
    return p;
}

static int place_failed(wctx *x, int rc)
{
    return fail(x, "cannot place a key on a server: %s", mk_strerror(rc));
}

static int issue_set(wctx *x, client *cl, uint64_t idx, uint64_t t, int measured)
{
    const bench_cfg *c = x->c;
    char key[MK_KEY_MAX + 1], line[MK_KEY_MAX + 96];
    mk_str ks = {key, key_write(c, idx, key)};
    int srv = servers_place_one(c, key, ks.n);
    if (srv < 0)
        return place_failed(x, srv);
    conn *k = &cl->conns[srv];
    uint64_t vlen = rng_range(&x->r, c->val_min, c->val_max);
    size_t n;
    if (c->proto == PROTO_META) {
        char ttl[16];
        int nt = c->expire ? snprintf(ttl, sizeof ttl, "T%u", c->expire) : 0;
        n = mk_compose_meta_req(line, sizeof line, MK_CMD_MS, ks, vlen, (mk_str){ttl, (size_t)nt});
    } else {
        n = mk_compose_req_storage(line, sizeof line, MK_CMD_SET, ks, 0, c->expire, vlen, 0, false);
    }
    if (n == 0)
        return fail(x, "%s", "cannot compose a set request");
    if (wreserve(k, n + vlen + 2) != 0)
        return fail(x, "%s", "out of memory");
    wput(k, line, n);
    wput(k, value_data(), vlen);
    wput(k, "\r\n", 2);
    push_part(cl, srv, take_req(x, cl, OP_SET, t, measured));
    return 0;
}

/* One server's part of a get: the n keys order[0..n) of the thread's key scratch, in one command. */
static int write_get(wctx *x, conn *k, const uint32_t *order, unsigned n)
{
    if (wreserve(k, (size_t)n * (MK_KEY_MAX + 16) + 8) != 0)
        return fail(x, "%s", "out of memory");
    char *p = k->wbuf + k->wlen;
    if (x->c->proto == PROTO_META) {
        /* one key: "mg <key> v" (VA or EN); several: quiet "mg <key> v q" each (misses say nothing), then "mn" */
        mk_str fl = n > 1 ? (mk_str){"v q", 3} : (mk_str){"v", 1};
        for (unsigned i = 0; i < n; i++) {
            mk_str ks = {x->kptr[order[i]], x->klen[order[i]]};
            p += mk_compose_meta_req(p, MK_KEY_MAX + 16, MK_CMD_MG, ks, 0, fl);
        }
        if (n > 1) {
            memcpy(p, "mn\r\n", 4);
            p += 4;
        }
    } else {
        memcpy(p, "get", 3);
        p += 3;
        for (unsigned i = 0; i < n; i++) {
            *p++ = ' ';
            memcpy(p, x->kptr[order[i]], x->klen[order[i]]);
            p += x->klen[order[i]];
        }
        memcpy(p, "\r\n", 2);
        p += 2;
    }
    k->wlen = (size_t)(p - k->wbuf);
    return 0;
}

/* A counting sort of the m keys' positions by server, into order[] and first[]. */
static void group_by_server(wctx *x, unsigned m)
{
    int nsrv = x->c->nsrv;
    memset(x->first, 0, (size_t)(nsrv + 1) * sizeof *x->first);
    for (unsigned i = 0; i < m; i++)
        x->first[x->where[i] + 1]++;
    for (int s = 0; s < nsrv; s++)
        x->first[s + 1] += x->first[s];
    memcpy(x->fill, x->first, (size_t)nsrv * sizeof *x->fill);
    for (unsigned i = 0; i < m; i++)
        x->order[x->fill[x->where[i]]++] = i;
}

/* A get of -multiget keys: each server holding some of them gets one command in this write round. */
static int issue_get(wctx *x, client *cl, uint64_t t)
{
    const bench_cfg *c = x->c;
    unsigned m = (unsigned)c->multiget;
    for (unsigned i = 0; i < m; i++)
        x->klen[i] = key_write(c, pick_key(x), x->kbuf + (size_t)i * MK_KEY_MAX);
    int rc = servers_place(c, x->kptr, x->klen, m, x->where);
    if (rc < 0)
        return place_failed(x, rc);
    group_by_server(x, m);
    req *r = take_req(x, cl, OP_GET, t, 1);
    r->nkeys = m;
    for (int s = 0; s < c->nsrv; s++) {
        unsigned n = x->first[s + 1] - x->first[s];
        if (n == 0)
            continue;
        if (write_get(x, &cl->conns[s], x->order + x->first[s], n) != 0)
            return -1;
        push_part(cl, s, r)->nkeys = n;
    }
    return 0;
}

static int issue_measured(wctx *x, client *cl, uint64_t t)
{
    const bench_cfg *c = x->c;
    x->issued++;
    uint64_t total = (uint64_t)c->ratio_get + c->ratio_set;
    if (rng_next(&x->r) % total < c->ratio_get)
        return issue_get(x, cl, t);
    return issue_set(x, cl, pick_key(x), t, 1);
}

static int can_issue(wctx *x)
{
    if (x->prepop)
        return x->pre_next < x->pre_end;
    return !x->stopping && (x->w->quota == 0 || x->issued < x->w->quota);
}

/* closed loop: fill the client's window */
static int refill(wctx *x, client *cl)
{
    unsigned depth = x->prepop ? (cl->cap < PREPOP_DEPTH ? cl->cap : PREPOP_DEPTH) : (unsigned)x->c->pipeline;
    if (!x->prepop && x->interval > 0)
        return 0; /* open loop: the timetable sends */
    uint64_t t = now_ns();
    while (in_flight(cl) < depth && can_issue(x)) {
        int rc = x->prepop ? issue_set(x, cl, x->pre_next++, t, 0) : issue_measured(x, cl, t);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* open loop: send every request whose time has come, on clients with room */
static uint64_t due_at(wctx *x, uint64_t j)
{
    return x->t0 + (uint64_t)((double)j * x->interval);
}

static int dispatch_due(wctx *x, uint64_t now)
{
    int sent = 0;
    while (x->w->quota == 0 || x->issued < x->w->quota) {
        uint64_t due = due_at(x, x->issued);
        if (due > now || (x->deadline && due >= x->deadline))
            break;
        client *cl = NULL;
        for (int i = 0; i < x->nclients; i++) {
            client *q = &x->clients[(x->rr + i) % x->nclients];
            if (in_flight(q) < (unsigned)x->c->pipeline) {
                cl = q;
                x->rr = (x->rr + i + 1) % x->nclients;
                break;
            }
        }
        if (cl == NULL)
            break; /* every window full: the request waits, its latency counting from 'due' */
        if (now - due > x->w->st.sched_lag_max)
            x->w->st.sched_lag_max = now - due;
        if (issue_measured(x, cl, due) != 0)
            return -1;
        sent++;
    }
    for (int i = 0; sent && i < x->nclients; i++)
        if (flush_client(x, &x->clients[i]) != 0)
            return -1;
    return 0;
}

/* ---- replies ---- */

/* The request's last part is answered: count it, with its latency up to now. */
static void finish(wctx *x, client *cl, req *s, uint64_t now)
{
    cl->free[cl->nfree++] = (uint32_t)(s - cl->reqs);
    x->inflight--;
    wstats *st = &x->w->st;
    if (!s->measured) {
        st->prepopulated++;
        if (s->error)
            st->errors++;
        return;
    }
    st->requests++;
    if (s->op == OP_GET) {
        st->gets++;
        st->get_keys += s->nkeys;
        st->hits += s->hits;
        st->misses += s->nkeys - s->hits;
    } else {
        st->sets++;
    }
    if (s->error)
        st->errors++;
    hist_record(&x->w->lat, now > s->t_start ? now - s->t_start : 0);
    st->t_last = now;
}

/* The oldest part waiting on k has its whole reply. */
static void part_done(wctx *x, conn *k, uint64_t now)
{
    part *p = &k->ring[k->head];
    k->head = (k->head + 1) % k->cap;
    k->count--;
    req *r = &k->cl->reqs[p->req];
    r->hits += p->hits;
    if (r->measured) {
        srv_stats *ss = &x->w->srv[k->srv];
        ss->requests++;
        if (r->op == OP_GET) {
            ss->get_keys += p->nkeys;
            ss->hits += p->hits;
        } else {
            ss->sets++;
        }
    }
    if (--r->parts == 0)
        finish(x, k->cl, r, now);
}

static void note_error(wctx *x, req *s, const char *line, size_t n)
{
    s->error = 1;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n >= sizeof x->w->st.last_error)
        n = sizeof x->w->st.last_error - 1;
    memcpy(x->w->st.last_error, line, n);
    x->w->st.last_error[n] = 0;
}

static int bad_reply(wctx *x, const char *p, size_t n)
{
    char line[96];
    size_t m = 0;
    for (size_t i = 0; i < n && m < sizeof line - 1 && p[i] != '\n'; i++)
        line[m++] = (p[i] >= 32 && p[i] < 127) ? p[i] : '?';
    line[m] = 0;
    return fail(x, "unexpected reply from the server: \"%s\"", line);
}

static int process(wctx *x, conn *k, uint64_t now)
{
    size_t off = 0;
    while (off < k->rlen) {
        if (k->skip) {
            size_t take = k->rlen - off < k->skip ? k->rlen - off : (size_t)k->skip;
            off += take;
            k->skip -= take;
            continue;
        }
        const char *p = k->rbuf + off;
        size_t avail = k->rlen - off;
        if (k->count == 0)
            return bad_reply(x, p, avail);
        part *pt = &k->ring[k->head];
        req *s = &k->cl->reqs[pt->req];
        if (x->c->proto == PROTO_META) {
            mk_meta_resp mr;
            ssize_t n = mk_parse_meta_response(p, avail, &mr);
            if (n == 0)
                break;
            bool multi = s->op == OP_GET && pt->nkeys > 1;
            if (n < 0 || (mr.code == MK_MC_MN && !multi) || mr.code == MK_MC_ME ||
                (mr.code == MK_MC_VA && s->op != OP_GET))
                return bad_reply(x, p, avail);
            off += (size_t)n;
            if (mr.code == MK_MC_VA) {
                pt->hits++;
                k->skip = mr.vlen + 2;
                if (multi)
                    continue; /* a quiet multi-get ends at MN */
            } else if (mr.code == MK_MC_ERROR || (s->op == OP_SET && mr.code != MK_MC_HD) ||
                       (s->op == OP_GET && mr.code == MK_MC_HD)) {
                note_error(x, s, p, (size_t)n);
            }
            part_done(x, k, now);
            continue;
        }
        mk_response r;
        ssize_t n = mk_parse_response(p, avail, &r);
        if (n == 0)
            break;
        if (n < 0)
            return bad_reply(x, p, avail);
        off += (size_t)n;
        switch (r.type) {
        case MK_RESP_VALUE:
            if (s->op != OP_GET)
                return bad_reply(x, p, avail);
            pt->hits++;
            k->skip = r.vlen + 2;
            break;
        case MK_RESP_END:
            if (s->op != OP_GET)
                return bad_reply(x, p, avail);
            part_done(x, k, now);
            break;
        case MK_RESP_STORED:
            if (s->op != OP_SET)
                return bad_reply(x, p, avail);
            part_done(x, k, now);
            break;
        case MK_RESP_NOT_STORED:
        case MK_RESP_EXISTS:
        case MK_RESP_NOT_FOUND:
        case MK_RESP_ERROR:
        case MK_RESP_CLIENT_ERROR:
        case MK_RESP_SERVER_ERROR:
            note_error(x, s, p, (size_t)n);
            part_done(x, k, now);
            break;
        default:
            return bad_reply(x, p, avail);
        }
    }
    if (off > 0) {
        memmove(k->rbuf, k->rbuf + off, k->rlen - off);
        k->rlen -= off;
    }
    return 0;
}

static int on_read(wctx *x, conn *k)
{
    if (k->rlen == k->rcap) { /* a reply line longer than the buffer: grow */
        char *p = realloc(k->rbuf, k->rcap * 2);
        if (p == NULL)
            return fail(x, "%s", "out of memory");
        k->rbuf = p;
        k->rcap *= 2;
    }
    ssize_t n = read(k->fd, k->rbuf + k->rlen, k->rcap - k->rlen);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return fail(x, "read: %s", strerror(errno));
    }
    if (n == 0)
        return fail(x, "%s", "the server closed a connection");
    x->w->st.bytes_in += (uint64_t)n;
    k->rlen += (size_t)n;
    if (process(x, k, now_ns()) != 0)
        return -1;
    if (refill(x, k->cl) != 0)
        return -1;
    return flush_client(x, k->cl);
}

/* ---- the loop ---- */

static void publish(wctx *x)
{
    atomic_store_explicit(&x->w->live_done, x->w->st.requests, memory_order_relaxed);
    atomic_store_explicit(&x->w->live_hits, x->w->st.hits, memory_order_relaxed);
    atomic_store_explicit(&x->w->live_keys, x->w->st.get_keys, memory_order_relaxed);
}

static int loop(wctx *x)
{
    struct epoll_event ev[256];
    int open_loop = !x->prepop && x->interval > 0;
    for (;;) {
        uint64_t now = now_ns();
        if (x->prepop) {
            if (x->pre_next >= x->pre_end && x->inflight == 0)
                return 0;
        } else {
            if (!x->stopping && (atomic_load_explicit(&bench_stop, memory_order_relaxed) ||
                                 (x->deadline && now >= x->deadline))) {
                x->stopping = 1;
                x->drain_deadline = now + DRAIN_NS;
            }
            if (open_loop && !x->stopping && dispatch_due(x, now) != 0)
                return -1;
            publish(x);
            if (x->inflight == 0 && (x->stopping || (x->w->quota && x->issued >= x->w->quota)))
                return 0;
            if (x->stopping && now >= x->drain_deadline) {
                fprintf(stderr, "memkit-bench: thread %d: %llu requests still unanswered %.1f s after the end\n",
                        x->w->id, (unsigned long long)x->inflight, DRAIN_NS / 1e9);
                return 0;
            }
        }
        int timeout = 100;
        if (!x->prepop && !x->stopping) {
            if (x->deadline) {
                uint64_t ms = (x->deadline - now + 999999) / 1000000;
                if (ms < (uint64_t)timeout)
                    timeout = (int)ms;
            }
            if (open_loop && (x->w->quota == 0 || x->issued < x->w->quota)) {
                uint64_t due = due_at(x, x->issued);
                if (due > now && due != x->armed) {
                    struct itimerspec its = {{0, 0}, {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)}};
                    timerfd_settime(x->tfd, TFD_TIMER_ABSTIME, &its, NULL);
                    x->armed = due;
                }
            }
        }
        int n = epoll_wait(x->ep, ev, 256, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(x, "epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            conn *k = ev[i].data.ptr;
            if (k == NULL) {
                uint64_t ticks;
                if (read(x->tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    return fail(x, "timerfd: %s", strerror(errno));
                x->armed = 0;
                continue;
            }
            if ((ev[i].events & EPOLLOUT) && flush(x, k) != 0)
                return -1;
            if ((ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && on_read(x, k) != 0)
                return -1;
        }
    }
}

static int conn_open(wctx *x, client *cl, int srv)
{
    const bench_cfg *c = x->c;
    conn *k = &cl->conns[srv];
    k->cl = cl;
    k->srv = srv;
    k->rcap = 16384;
    while (k->rcap < c->val_max + 512 && k->rcap < (1u << 20))
        k->rcap *= 2;
    k->wcap = 16384;
    k->cap = cl->cap;
    k->rbuf = malloc(k->rcap);
    k->wbuf = malloc(k->wcap);
    k->ring = calloc(k->cap, sizeof *k->ring);
    if (k->rbuf == NULL || k->wbuf == NULL || k->ring == NULL)
        return fail(x, "%s", "out of memory");
    char err[600];
    k->fd = bench_connect(&c->srv[srv], err, sizeof err);
    if (k->fd < 0)
        return fail(x, "%s", err);
    fcntl(k->fd, F_SETFL, fcntl(k->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
    if (epoll_ctl(x->ep, EPOLL_CTL_ADD, k->fd, &ev) != 0)
        return fail(x, "epoll_ctl: %s", strerror(errno));
    return 0;
}

static int client_open(wctx *x, client *cl)
{
    const bench_cfg *c = x->c;
    cl->cap = cl->nfree = (unsigned)c->pipeline > PREPOP_DEPTH ? (unsigned)c->pipeline : PREPOP_DEPTH;
    cl->conns = calloc((size_t)c->nsrv, sizeof *cl->conns);
    cl->reqs = calloc(cl->cap, sizeof *cl->reqs);
    cl->free = calloc(cl->cap, sizeof *cl->free);
    if (cl->conns == NULL || cl->reqs == NULL || cl->free == NULL)
        return fail(x, "%s", "out of memory");
    for (unsigned i = 0; i < cl->cap; i++)
        cl->free[i] = i;
    for (int i = 0; i < c->nsrv; i++)
        cl->conns[i].fd = -1; /* what teardown may close */
    for (int i = 0; i < c->nsrv; i++)
        if (conn_open(x, cl, i) != 0)
            return -1;
    return 0;
}

static int setup(wctx *x)
{
    const bench_cfg *c = x->c;
    x->ep = epoll_create1(EPOLL_CLOEXEC);
    x->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (x->ep < 0 || x->tfd < 0)
        return fail(x, "epoll/timerfd: %s", strerror(errno));
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(x->ep, EPOLL_CTL_ADD, x->tfd, &tev);
    size_t m = (size_t)c->multiget;
    x->kbuf = malloc(m * MK_KEY_MAX);
    x->kptr = calloc(m, sizeof *x->kptr);
    x->klen = calloc(m, sizeof *x->klen);
    x->where = calloc(m, sizeof *x->where);
    x->order = calloc(m, sizeof *x->order);
    x->first = calloc((size_t)c->nsrv + 1, sizeof *x->first);
    x->fill = calloc((size_t)c->nsrv + 1, sizeof *x->fill);
    x->clients = calloc((size_t)c->conns, sizeof *x->clients);
    if (!x->kbuf || !x->kptr || !x->klen || !x->where || !x->order || !x->first || !x->fill || !x->clients)
        return fail(x, "%s", "out of memory");
    for (size_t i = 0; i < m; i++)
        x->kptr[i] = x->kbuf + i * MK_KEY_MAX;
    x->nclients = c->conns;
    for (int i = 0; i < x->nclients; i++)
        if (client_open(x, &x->clients[i]) != 0)
            return -1;
    return 0;
}

static void teardown(wctx *x)
{
    for (int i = 0; i < x->nclients; i++) {
        client *cl = &x->clients[i];
        for (int j = 0; cl->conns && j < x->c->nsrv; j++) {
            conn *k = &cl->conns[j];
            if (k->fd >= 0)
                close(k->fd);
            free(k->rbuf);
            free(k->wbuf);
            free(k->ring);
        }
        free(cl->conns);
        free(cl->reqs);
        free(cl->free);
    }
    free(x->clients);
    free(x->kbuf);
    free(x->kptr);
    free(x->klen);
    free(x->where);
    free(x->order);
    free(x->first);
    free(x->fill);
    if (x->ep >= 0)
        close(x->ep);
    if (x->tfd >= 0)
        close(x->tfd);
}

/* Send every client's first window. */
static int start_clients(wctx *x)
{
    for (int i = 0; i < x->nclients; i++)
        if (refill(x, &x->clients[i]) != 0 || flush_client(x, &x->clients[i]) != 0)
            return -1;
    return 0;
}

/* Each key is set on its server, by whichever client of the thread has room. */
static int prepopulate(wctx *x)
{
    const bench_cfg *c = x->c;
    int T = c->threads, id = x->w->id;
    x->prepop = 1;
    x->pre_next = c->key_space * (uint64_t)id / (uint64_t)T;
    x->pre_end = c->key_space * (uint64_t)(id + 1) / (uint64_t)T;
    int rc = start_clients(x);
    if (rc == 0)
        rc = loop(x);
    x->prepop = 0;
    return rc;
}

void *worker_main(void *arg)
{
    worker *w = arg;
    wctx x;
    memset(&x, 0, sizeof x);
    x.w = w;
    x.c = w->cfg;
    x.ep = x.tfd = -1;
    rng_seed(&x.r, w->cfg->seed * 1000003u + (uint64_t)w->id * 7919u + 1);
    if (w->cfg->dist == DIST_ZIPF)
        zipf_init(&x.z, w->cfg->key_space, w->cfg->zipf_skew);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake up on time for the request timetable */

    int rc = setup(&x);
    if (rc == 0 && w->cfg->prepopulate)
        rc = prepopulate(&x);
    bench_barrier_wait(); /* everyone ready */
    bench_barrier_wait(); /* main has set bench_t0 */
    if (rc == 0 && !atomic_load(&bench_stop)) {
        x.t0 = atomic_load(&bench_t0);
        w->st.t_first = x.t0;
        w->st.t_last = x.t0;
        if (w->cfg->duration > 0)
            x.deadline = x.t0 + (uint64_t)(w->cfg->duration * 1e9);
        if (w->rate > 0)
            x.interval = 1e9 / w->rate;
        rc = start_clients(&x);
        if (rc == 0)
            rc = loop(&x);
        publish(&x);
    }
    teardown(&x);
    atomic_store(&w->finished, 1);
    return NULL;
}
