/* server/conn.c — a connection's bytes: read, hand input to its protocol, data blocks, batched writes of replies. */
#include "server/conn.h"
#include "server/watch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define RBUF_INIT MK_CONN_RBUF_INIT
#define RBUF_DATAGRAM 65536           /* the largest UDP payload (65507 bytes) fits */
#define WBUF_INIT 4096
#define OUTS_INIT 16
#define OUT_BACKLOG_MAX (4u << 20)    /* stop executing commands while this much output is unwritten */
#define MK_IOV_MAX 1024

/* -vv and -vvv print what memcached prints at those levels (stderr). */
static inline int verbosity(const mk_conn *c)
{
    return c->worker ? __atomic_load_n(&c->worker->srv->verbosity, __ATOMIC_RELAXED) : 0;
}

void mk_conn_set_state(mk_conn *c, mk_conn_state st)
{
    if (verbosity(c) > 2) {
        int old = __atomic_exchange_n(&c->state, (int)st, __ATOMIC_RELAXED);
        if (old != (int)st)
            fprintf(stderr, "%d: going from %s to %s\n", c->w.fd, mk_conn_state_name(old),
                    mk_conn_state_name((int)st));
        return;
    }
    __atomic_store_n(&c->state, (int)st, __ATOMIC_RELAXED);
}

const char *mk_conn_state_name(int st)
{
    switch (st) {
    case MK_CONN_PARSE: return "conn_parse_cmd";
    case MK_CONN_NREAD: return "conn_nread";
    case MK_CONN_SWALLOW: return "conn_swallow";
    case MK_CONN_CLOSING: return "conn_closing";
    case MK_CONN_READ: return "conn_read";
    case MK_CONN_WATCH: return "conn_watch";
    default: return "conn_unknown";
    }
}

mk_conn *mk_conn_create(mk_worker *wk, int fd, const char *peer, const char *listen_name)
{
    return mk_conn_create_on(wk, fd, &mk_transport_plain, mk_protocol_for_settings(wk->srv->settings), peer,
                             listen_name);
}

mk_conn *mk_conn_create_on(mk_worker *wk, int fd, const mk_transport *tr, const mk_protocol *proto,
                           const char *peer, const char *listen_name)
{
    mk_conn *c = calloc(1, sizeof(*c));
    size_t rsize = tr->datagram ? RBUF_DATAGRAM : RBUF_INIT;
    if (c) {
        c->rbuf = malloc(rsize);
        c->wbuf = malloc(WBUF_INIT);
        c->outs = malloc(OUTS_INIT * sizeof(*c->outs));
        c->pstate = calloc(1, proto->state_size ? proto->state_size : 1);
    }
    if (!c || !c->rbuf || !c->wbuf || !c->outs || !c->pstate) {
        mk_conn_free(c);
        close(fd);
        return NULL;
    }
    c->proto = c->proto0 = proto;
    c->tr = tr;
    c->rsize = rsize;
    c->state = tr->datagram ? MK_CONN_READ : MK_CONN_PARSE;
    c->resp_batch = true;
    c->wsize = WBUF_INIT;
    c->outs_cap = OUTS_INIT;
    c->worker = wk;
    c->w.fd = fd;
    c->w.cb = mk_conn_on_event;
    c->last_cmd = wk->now;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->listen_name = listen_name;
    if (mk_loop_add(wk->loop, &c->w, EPOLLIN) != 0) {
        mk_conn_free(c);
        close(fd);
        return NULL;
    }
    pthread_mutex_lock(&wk->conns_lock);
    c->next = wk->conns;
    if (wk->conns)
        wk->conns->prev = c;
    wk->conns = c;
    pthread_mutex_unlock(&wk->conns_lock);
    return c;
}

/* Release every queued output's item reference and forget the output. */
static void out_reset(mk_conn *c)
{
    mk_cache *cache = c->worker->srv->cache;
    for (size_t i = c->out_head; i < c->nouts; i++)
        mk_item_put(cache, c->outs[i].item);
    c->nouts = c->out_head = c->out_head_done = 0;
    c->wlen = 0;
    c->out_pending = 0;
    c->out_sent = 0;
    c->nresps = c->resp_head = 0;
}

void mk_conn_close(mk_conn *c)
{
    if (!c->closed && __atomic_load_n(&c->state, __ATOMIC_RELAXED) == MK_CONN_WATCH)
        mk_watch_remove(c->worker->srv, c);
    if (c->closed)
        return;
    mk_worker *wk = c->worker;
    mk_server *srv = wk->srv;
    c->closed = true;
    mk_loop_del(wk->loop, &c->w);
    c->tr->close(c);
    if (c->proto->release)
        c->proto->release(c);
    out_reset(c);
    mk_item_put(srv->cache, c->nitem);
    c->nitem = NULL;
    pthread_mutex_lock(&wk->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        wk->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&wk->conns_lock);
    if (!c->tr->datagram) {
        __atomic_fetch_sub(&srv->curr_conns, 1, __ATOMIC_RELAXED);
        if (__atomic_load_n(&srv->verbosity, __ATOMIC_RELAXED) > 1)
            fprintf(stderr, "<%d connection closed.\n", c->w.fd);
    }
    /* freed after the current batch of events (another event may still name it) */
    c->next = wk->dead;
    wk->dead = c;
}

/* Give the read-buffer budget back what this connection's rbuf grew past RBUF_INIT (see rbuf_make_room). */
static void rbuf_release(mk_conn *c)
{
    if (c->rsize > RBUF_INIT && !c->tr->datagram)
        __atomic_sub_fetch(&c->worker->srv->rbuf_grown, c->rsize - RBUF_INIT, __ATOMIC_RELAXED);
}

void mk_conn_free(mk_conn *c)
{
    if (!c)
        return;
    rbuf_release(c);
    free(c->rbuf);
    free(c->wbuf);
    free(c->outs);
    free(c->pstate);
    free(c->resps);
    free(c);
}

/* ---- output ---- */

static mk_out *out_slot(mk_conn *c)
{
    if (c->nouts == c->outs_cap) {
        size_t cap = c->outs_cap * 2;
        mk_out *o = realloc(c->outs, cap * sizeof(*o));
        if (!o)
            return NULL;
        c->outs = o;
        c->outs_cap = cap;
    }
    return &c->outs[c->nouts++];
}

bool mk_conn_wbuf_grow(mk_conn *c, size_t need)
{
    size_t sz = c->wsize;
    while (sz < need)
        sz *= 2;
    char *b = realloc(c->wbuf, sz);
    if (!b)
        return false;
    c->wbuf = b;
    c->wsize = sz;
    return true;
}

/* mk_conn_commit's slow path: the bytes start a new piece. */
bool mk_conn_commit_piece(mk_conn *c, size_t n)
{
    mk_out *o = out_slot(c);
    if (!o)
        return false;
    *o = (mk_out){.ptr = NULL, .off = c->wlen, .len = n, .item = NULL};
    c->wlen += n;
    c->out_pending += n;
    return true;
}

bool mk_conn_out(mk_conn *c, const char *p, size_t n)
{
    char *dst = mk_conn_reserve(c, n);
    if (!dst)
        return false;
    memcpy(dst, p, n);
    return mk_conn_commit(c, n);
}

bool mk_conn_reply(mk_conn *c, const char *line)
{
    if (verbosity(c) > 1)
        fprintf(stderr, ">%d %s\n", c->w.fd, line);
    size_t n = strlen(line);
    char *dst = mk_conn_reserve(c, n + 2);
    if (!dst)
        return false;
    memcpy(dst, line, n);
    dst[n] = '\r';
    dst[n + 1] = '\n';
    return mk_conn_commit(c, n + 2);
}

bool mk_conn_out_value(mk_conn *c, mk_item *it)
{
    return mk_conn_out_value_raw(c, it) && mk_conn_out(c, "\r\n", 2);
}

bool mk_conn_out_value_raw(mk_conn *c, mk_item *it)
{
    mk_cache *cache = c->worker->srv->cache;
    size_t n = mk_item_nbytes(it);
    if (n <= MK_CONN_INLINE_VALUE_MAX) {
        bool ok = mk_conn_out(c, mk_item_data(it), n);
        mk_item_put(cache, it);
        return ok;
    }
    /* one piece per contiguous part of the value (large values span segments); the last holds the reference */
    for (size_t off = 0; off < n;) {
        mk_out *o = out_slot(c);
        if (!o) {
            mk_item_put(cache, it);
            return false;
        }
        char *p;
        size_t k = mk_item_piece(it, off, &p);
        off += k;
        *o = (mk_out){.ptr = p, .off = 0, .len = k, .item = off == n ? it : NULL};
        c->out_pending += k;
    }
    return true;
}

mk_out_mark mk_conn_out_mark(const mk_conn *c)
{
    mk_out_mark m = {c->nouts, c->wlen, 0, c->out_pending, c->nresps, c->resp_batch};
    if (c->nouts > c->out_head)
        m.last_len = c->outs[c->nouts - 1].len;
    return m;
}

void mk_conn_out_rollback(mk_conn *c, const mk_out_mark *m)
{
    if (c->nresps > m->nresps && m->nresps >= c->resp_head) {
        /* the responses begun since the mark go with their bytes */
        c->nresps = m->nresps;
        c->resp_batch = m->resp_batch;
    }
    /* pieces before out_head are written, and so is part of out_head when out_head_done > 0 */
    size_t written = c->out_head + (c->out_head_done > 0 ? 1 : 0);
    if (m->nouts >= written) {
        for (size_t i = m->nouts; i < c->nouts; i++)
            mk_item_put(c->worker->srv->cache, c->outs[i].item);
        c->nouts = m->nouts;
        if (c->nouts > 0)
            c->outs[c->nouts - 1].len = m->last_len; /* undo an extension of the last piece */
        c->wlen = m->wlen;
        c->out_pending = m->pending;
        return;
    }
    /* part of what came after the mark is on the wire already: drop only the rest */
    for (size_t i = written; i < c->nouts; i++) {
        c->out_pending -= c->outs[i].len;
        mk_item_put(c->worker->srv->cache, c->outs[i].item);
    }
    c->nouts = written;
    const mk_out *last = &c->outs[written - 1];
    if (!last->ptr)
        c->wlen = last->off + last->len;
}

void mk_conn_mark_sent(mk_conn *c)
{
    c->resp_batch = true; /* memcached transmits here: what it queues next is a new batch */
    c->sent_mark = mk_conn_out_mark(c);
}

/* ---- responses (datagram transports) ---- */

void mk_conn_resp_begin_slow(mk_conn *c)
{
    if (c->nresps == c->resps_cap) {
        size_t cap = c->resps_cap ? c->resps_cap * 2 : 16;
        mk_resp *r = realloc(c->resps, cap * sizeof(*r));
        if (!r)
            return; /* out of memory: the bytes join the previous response */
        c->resps = r;
        c->resps_cap = cap;
    }
    c->resps[c->nresps++] = (mk_resp){.start = c->out_sent + c->out_pending, .batch_start = c->resp_batch};
    c->resp_batch = false;
}

/* Write queued output with writev until done or the socket is full. -1 on a write error. */
static int out_flush(mk_conn *c)
{
    c->resp_batch = true; /* (a flush is one of memcached's transmits) */
    while (c->out_head < c->nouts || c->resp_head < c->nresps) {
        struct iovec iov[MK_IOV_MAX];
        int n = 0;
        for (size_t i = c->out_head; i < c->nouts && n < MK_IOV_MAX; i++, n++) {
            const mk_out *o = &c->outs[i];
            const char *base = o->ptr ? o->ptr : c->wbuf + o->off;
            size_t skip = i == c->out_head ? c->out_head_done : 0;
            iov[n].iov_base = (void *)(base + skip);
            iov[n].iov_len = o->len - skip;
        }
        size_t head_before = c->resp_head;
        ssize_t w = c->tr->writev(c, iov, n);
        if (w == -1)
            return 0;
        if (w < 0)
            return -1;
        if (w == 0 && c->resp_head == head_before)
            return 0; /* no progress: wait for the socket (never expected) */
        MK_STAT_ADD(&c->worker->stats, bytes_written, (uint64_t)w);
        c->out_pending -= (size_t)w;
        c->out_sent += (size_t)w;
        size_t left = (size_t)w;
        while (left > 0) {
            mk_out *o = &c->outs[c->out_head];
            size_t rem = o->len - c->out_head_done;
            if (left < rem) {
                c->out_head_done += left;
                break;
            }
            left -= rem;
            mk_item_put(c->worker->srv->cache, o->item);
            o->item = NULL;
            c->out_head++;
            c->out_head_done = 0;
        }
    }
    c->nouts = c->out_head = c->out_head_done = 0;
    c->wlen = 0;
    c->out_sent = 0;
    c->nresps = c->resp_head = 0;
    c->sent_mark = (mk_out_mark){.resp_batch = true};
    return 0;
}

/* ---- data blocks ---- */

void mk_conn_start_nread(mk_conn *c, mk_item *it)
{
    c->nitem = it;
    c->ngot = 0;
    c->ntail_len = 2;
    mk_conn_set_state(c, MK_CONN_NREAD);
}

void mk_conn_start_nread_raw(mk_conn *c, mk_item *it)
{
    mk_conn_start_nread(c, it);
    c->ntail_len = 0;
}

void mk_conn_start_swallow(mk_conn *c, uint64_t n)
{
    c->swallow = n;
    if (n)
        mk_conn_set_state(c, MK_CONN_SWALLOW);
}

/* Store bytes into the value-then-tail of the data block being read. */
static void nread_take(mk_conn *c, const char *p, size_t n)
{
    size_t vlen = mk_item_nbytes(c->nitem);
    while (n > 0) {
        if (c->ngot < vlen) {
            size_t k = vlen - c->ngot < n ? vlen - c->ngot : n;
            mk_item_write(c->nitem, c->ngot, p, k);
            c->ngot += k, p += k, n -= k;
        } else {
            c->ntail[c->ngot - vlen] = *p;
            c->ngot++, p++, n--;
        }
    }
}

static size_t nread_need(const mk_conn *c)
{
    return mk_item_nbytes(c->nitem) + c->ntail_len - c->ngot;
}

/* ---- the state machine ---- */

/*
 * After execute() on a datagram connection, resps[resp] being the response
 * begun for the request: no request (r == 0) means no response; a protocol that
 * frames empty responses keeps it.
 */
static void resp_settle(mk_conn *c, size_t resp, ssize_t r)
{
    if (c->nresps != resp + 1)
        return; /* dropped by a rollback, or not begun (out of memory); later ones are the protocol's */
    if (r == 0 && c->resps[resp].start == c->out_sent + c->out_pending) {
        c->resp_batch = c->resps[resp].batch_start;
        c->nresps--;
    } else if (c->proto->frames_empty) {
        c->resps[resp].kept = true;
    }
}

/*
 * The end of a datagram: what it left unparsed goes, with a data block it did
 * not finish (memcached would read the next datagram into it), and the next one
 * is negotiated afresh. The replies have been written.
 */
static void datagram_end(mk_conn *c)
{
    c->rstart = c->rend = 0;
    mk_item_put(c->worker->srv->cache, c->nitem);
    c->nitem = NULL;
    c->swallow = 0;
    if (c->proto->release)
        c->proto->release(c);
    c->proto = c->proto0;
    memset(c->pstate, 0, c->proto0->state_size);
    mk_conn_set_state(c, MK_CONN_READ);
}

typedef enum { STEP_NEED_READ, STEP_YIELD, STEP_BLOCKED, STEP_CLOSE } step_result;

typedef enum { ROOM_OK, ROOM_TOO_LONG, ROOM_NO_MEMORY } room_result;

/*
 * Make room at the end of rbuf for reading: compact, then grow if the buffer is
 * full. Growing past RBUF_INIT draws on the server's read-buffer budget
 * (-o read_buf_mem_limit, all connections together): an unterminated request
 * line cannot make the server hold more than that, whatever the connections.
 */
static room_result rbuf_make_room(mk_conn *c)
{
    if (c->rstart > 0) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
    if (c->rend < c->rsize)
        return ROOM_OK;
    if (c->rsize >= MK_GET_LINE_MAX + RBUF_INIT || c->tr->datagram)
        return ROOM_TOO_LONG;
    mk_server *srv = c->worker->srv;
    uint64_t limit = srv->settings->read_buf_limit, add = c->rsize; /* (doubling adds rsize) */
    uint64_t grown = __atomic_add_fetch(&srv->rbuf_grown, add, __ATOMIC_RELAXED);
    char *b = limit && grown > limit ? NULL : realloc(c->rbuf, c->rsize * 2);
    if (!b) {
        __atomic_sub_fetch(&srv->rbuf_grown, add, __ATOMIC_RELAXED);
        return ROOM_NO_MEMORY;
    }
    c->rbuf = b;
    c->rsize *= 2;
    return ROOM_OK;
}

/* Give a grown, empty rbuf back (and its share of the budget): the long line it held is done. */
static void rbuf_shrink(mk_conn *c)
{
    char *b = realloc(c->rbuf, RBUF_INIT);
    if (!b)
        return;
    rbuf_release(c);
    c->rbuf = b;
    c->rsize = RBUF_INIT;
}

/*
 * Execute buffered input until it runs out, the -R budget (*budget, shared by
 * every read of one wake-up, as memcached counts it) is spent, output backs up
 * or the conn must close.
 */
static step_result conn_process(mk_conn *c, int *budget)
{
    c->worker->cur_fd = c->w.fd;
    for (;;) {
        if (c->out_pending > OUT_BACKLOG_MAX)
            return STEP_BLOCKED;
        size_t avail = c->rend - c->rstart;
        switch (__atomic_load_n(&c->state, __ATOMIC_RELAXED)) {
        case MK_CONN_READ:
            return STEP_NEED_READ;
        case MK_CONN_WATCH:
            c->rstart = c->rend; /* a watcher's input is not read as commands */
            return STEP_NEED_READ;
        case MK_CONN_PARSE: {
            /* the budget spent yields even with nothing left to parse, as memcached's conn_new_cmd
             * does (its conn_yields counts those too: t/issue_61.t) */
            if (*budget == 0) {
                MK_STAT_INC(&c->worker->stats, conn_yields);
                return STEP_YIELD;
            }
            if (avail == 0)
                return STEP_NEED_READ;
            size_t resp = c->nresps;
            mk_conn_resp_begin(c); /* memcached: one response object per request */
            ssize_t r = c->proto->execute(c, c->rbuf + c->rstart, avail);
            if (r == -2 && c->tr->datagram)
                r = -1; /* (a datagram is all the input there is) */
            if (c->tr->datagram)
                resp_settle(c, resp, r);
            c->unterminated = r == -2;
            if (r == 0 || r == -2)
                return STEP_NEED_READ;
            if (r < 0)
                return STEP_CLOSE;
            (*budget)--;
            __atomic_store_n(&c->last_cmd, c->worker->now, __ATOMIC_RELAXED);
            c->rstart += (size_t)r;
            break;
        }
        case MK_CONN_NREAD: {
            if (avail == 0 && nread_need(c) > 0) /* (an empty binary value needs no byte) */
                return STEP_NEED_READ;
            size_t k = nread_need(c) < avail ? nread_need(c) : avail;
            nread_take(c, c->rbuf + c->rstart, k);
            c->rstart += k;
            if (nread_need(c) == 0) {
                mk_item *it = c->nitem;
                c->nitem = NULL;
                mk_conn_set_state(c, MK_CONN_PARSE);
                c->proto->complete_nread(c, it, c->ntail_len == 0 || (c->ntail[0] == '\r' && c->ntail[1] == '\n'));
            }
            break;
        }
        case MK_CONN_SWALLOW: {
            if (avail == 0)
                return STEP_NEED_READ;
            size_t k = c->swallow < avail ? (size_t)c->swallow : avail;
            c->rstart += k;
            c->swallow -= k;
            if (c->swallow == 0)
                mk_conn_set_state(c, MK_CONN_PARSE);
            break;
        }
        case MK_CONN_CLOSING:
        default:
            return STEP_CLOSE;
        }
        if (c->rstart == c->rend) {
            c->rstart = c->rend = 0;
            if (c->rsize > RBUF_INIT && !c->tr->datagram)
                rbuf_shrink(c);
        }
    }
}

/* Read once from the socket (*asked: the room offered). >0 bytes, 0 EOF, -1 would block, -2 error,
 * -3 the request needs a larger read buffer than memory (or the budget) allows. */
static ssize_t conn_read(mk_conn *c, size_t *asked)
{
    int st = __atomic_load_n(&c->state, __ATOMIC_RELAXED);
    bool direct = st == MK_CONN_NREAD && c->rstart == c->rend &&
                  c->ngot < mk_item_nbytes(c->nitem) && nread_need(c) > RBUF_INIT;
    switch (rbuf_make_room(c)) {
    case ROOM_OK: break;
    case ROOM_TOO_LONG: return -2;
    case ROOM_NO_MEMORY: return -3;
    }
    /*
     * A large value is read straight into the item; the same readv continues into
     * rbuf, so the value's "\r\n" and the next commands need no second read.
     */
    struct iovec iov[5];
    int niov = 0;
    size_t room0 = 0;
    if (direct) {
        size_t vlen = mk_item_nbytes(c->nitem);
        for (size_t off = c->ngot; off < vlen && niov < 4;) { /* a large value's pieces, then rbuf */
            char *p;
            size_t k = mk_item_piece(c->nitem, off, &p);
            iov[niov++] = (struct iovec){p, k};
            room0 += k;
            off += k;
        }
    }
    size_t room = c->rsize - c->rend;
    if (st == MK_CONN_SWALLOW && c->swallow < room)
        room = (size_t)c->swallow; /* as memcached: the swallowed bytes only, so the line after them is
                                      read, and judged, with all the input there is behind it */
    iov[niov++] = (struct iovec){c->rbuf + c->rend, room};
    *asked = room0 + room;
    ssize_t n = c->tr->readv(c, iov, niov);
    if (n > 0) {
        MK_STAT_ADD(&c->worker->stats, bytes_read, (uint64_t)n);
        size_t k = (size_t)n < room0 ? (size_t)n : room0;
        c->ngot += k;
        c->rend += (size_t)n - k;
    }
    return n;
}

static void ready_push(mk_conn *c)
{
    if (c->in_ready)
        return;
    c->in_ready = true;
    c->ready_next = c->worker->ready;
    c->worker->ready = c;
}

/*
 * Run the connection as far as it can go now, executing at most `budget`
 * commands. memcached's batching decides which replies a failed multi-get can
 * still take back (see mk_conn_mark_sent), so it is copied: a wake-up that starts
 * with a read runs -R + 1 commands, a turn resumed after a yield runs -R, and
 * flushing replies before reading more costs one from the budget. Once a read
 * has come back short (the socket was drained) the turn ends when the input
 * runs out, as memcached's does; the level-triggered epoll starts the next.
 */
static void conn_drive(mk_conn *c, int budget)
{
    bool drained = false; /* a read this turn came back short: the socket was empty then */
    for (;;) {
        bool had_output = c->out_head < c->nouts;
        step_result st = conn_process(c, &budget);
        had_output = had_output || c->out_head < c->nouts;
        /* (a line that may be fatal holds the replies before it: memcached drops them if it closes) */
        if (!(st == STEP_NEED_READ && c->unterminated) && out_flush(c) < 0) {
            mk_conn_close(c);
            return;
        }
        bool out_left = c->out_head < c->nouts;
        switch (st) {
        case STEP_CLOSE:
            if (out_left) {
                /* let the last replies go out first */
                mk_conn_set_state(c, MK_CONN_CLOSING);
                mk_loop_mod(c->worker->loop, &c->w, EPOLLOUT);
                return;
            }
            if (c->tr->datagram) {
                /* memcached ends the datagram, not the socket, where a stream closes */
                datagram_end(c);
                mk_loop_mod(c->worker->loop, &c->w, EPOLLIN);
                return;
            }
            mk_conn_close(c);
            return;
        case STEP_YIELD:
            if (out_left)
                mk_loop_mod(c->worker->loop, &c->w, EPOLLOUT);
            else
                ready_push(c);
            return;
        case STEP_BLOCKED:
            if (out_left) {
                mk_loop_mod(c->worker->loop, &c->w, EPOLLOUT);
                return;
            }
            continue;
        case STEP_NEED_READ: {
            if (out_left && !c->unterminated) {
                /* read no more until the client takes its replies */
                mk_loop_mod(c->worker->loop, &c->w, EPOLLOUT);
                return;
            }
            mk_loop_mod(c->worker->loop, &c->w, EPOLLIN);
            if (c->tr->datagram && __atomic_load_n(&c->state, __ATOMIC_RELAXED) != MK_CONN_READ) {
                /* its input ran out: the next read is a new request buffer, in a turn of its own
                 * (a fresh -R budget, as memcached goes back to its loop after each datagram) */
                datagram_end(c);
                return;
            }
            if (drained && !c->unterminated) {
                /* the epoll is level-triggered: it reports the fd again once more input is
                 * there, so a read that would only say EAGAIN is not made (one syscall
                 * less per request). memcached also goes back to its event loop here. */
                return;
            }
            size_t room = 0;
            ssize_t n = drained ? -1 : conn_read(c, &room);
            if (n == -1 && c->unterminated) {
                /* nothing more came: the line is too long, as memcached decides; it closes after
                 * what it had transmitted, dropping the rest */
                mk_conn_out_rollback(c, &c->sent_mark);
                if (c->out_head < c->nouts) {
                    mk_conn_set_state(c, MK_CONN_CLOSING);
                    mk_loop_mod(c->worker->loop, &c->w, EPOLLOUT);
                    return;
                }
                mk_conn_close(c);
                return;
            }
            if (n > 0) {
                drained = (size_t)n < room;
                if (c->tr->datagram) {
                    mk_conn_set_state(c, MK_CONN_PARSE);
                    __atomic_store_n(&c->last_cmd, c->worker->now, __ATOMIC_RELAXED);
                }
                if (had_output && budget > 0)
                    budget--;
                continue;
            }
            if (n == -1)
                return;
            if (n == -3) {
                /* memcached's answer to a read buffer it cannot grow: say so, then close */
                MK_STAT_INC(&c->worker->stats, read_buf_oom);
                c->rstart = c->rend = 0;
                if (c->proto->out_of_memory)
                    c->proto->out_of_memory(c);
                mk_conn_set_state(c, MK_CONN_CLOSING);
                continue;
            }
            mk_conn_close(c);
            return;
        }
        }
    }
}

void mk_conn_on_event(mk_watch *w, uint32_t events)
{
    mk_conn *c = (mk_conn *)w;
    if (c->closed)
        return;
    if (events & EPOLLOUT) {
        if (out_flush(c) < 0) {
            mk_conn_close(c);
            return;
        }
        if (c->out_head < c->nouts)
            return;
        if (__atomic_load_n(&c->state, __ATOMIC_RELAXED) == MK_CONN_CLOSING) {
            if (c->tr->datagram) {
                datagram_end(c);
                mk_loop_mod(c->worker->loop, &c->w, EPOLLIN);
                return;
            }
            mk_conn_close(c);
            return;
        }
    }
    /* (a datagram socket's pending error is collected by its next read, and it stays open) */
    if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN) && !c->tr->datagram) {
        mk_conn_close(c);
        return;
    }
    conn_drive(c, c->worker->srv->settings->reqs_per_event + 1);
}

void mk_conn_resume(mk_conn *c)
{
    c->in_ready = false;
    if (!c->closed)
        conn_drive(c, c->worker->srv->settings->reqs_per_event);
}

void mk_conn_push(mk_conn *c)
{
    if (c->closed)
        return;
    if (out_flush(c) < 0) {
        mk_conn_close(c);
        return;
    }
    if (c->out_head < c->nouts)
        mk_loop_mod(c->worker->loop, &c->w, EPOLLOUT);
}
