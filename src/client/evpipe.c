/* client/evpipe.c — auto-pipelining for event loops: the ops of one loop's callers to one server share a connection; never blocks, driven by the loop's readiness callbacks. */
#include "client/client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * An mk_evpipe belongs to one event loop (one thread: gevent's hub, an asyncio
 * loop) and one server. The loop's callers (greenlets, tasks) add started ops;
 * the loop calls mk_evpipe_io() when the socket is ready, at the end of the
 * iteration in which ops were added (so that the requests of one iteration go
 * out in one send), and when mk_evpipe_timeout_ms() runs out. Nothing blocks.
 *
 *   q: ops added, not written; their request bytes are at the end of wbuf
 *   f: ops written (all or part of their bytes handed to the kernel); replies come in this order
 *   d: ops done, not yet collected with mk_evpipe_done()
 *
 * A caller that stops waiting (a cancelled task, a killed greenlet, a noreply
 * call that never waits) calls mk_evpipe_forget() or mk_evpipe_cancel(): an op
 * not written yet just leaves; a written one becomes a "ghost", a private copy
 * that reads its reply and drops it, so the connection stays in step.
 *
 * Failure (a read or write error, EOF, a reply that does not parse, a written
 * op past its deadline): the connection is closed and each op still in f is
 * queued again for a fresh connection (get family, set, touch: once per op) or
 * ends with the cause, as in pipe.c. An op never receives another's reply.
 */

enum { P_NONE = 0, P_Q, P_F, P_DONE };

struct mk_evpipe {
    mk_client *c;
    mk_server *s;
    mk_conn *conn;              /* NULL until the first op; kept while the pipe lives */
    bool connecting;            /* conn's connect is in progress */
    int64_t connect_deadline;
    int64_t pool_retry;         /* > 0: the pool had no connection; try again then (mk__now_ms()) */
    int64_t pool_deadline;
    mk_op *qh, *qt, *fh, *ft, *dh, *dt;   /* deadlines never decrease along f then q: an op's is set when
                                            it is added (io_timeout_ms from then, the same for all), retried
                                            ops go back to the head, and a new connection only raises q's
                                            to at least now + io_timeout_ms */
    size_t n;                   /* ops in q and f, ghosts included */
    unsigned gen;               /* changes whenever conn is replaced or closed (mk_evpipe_generation) */
    char *wbuf;                 /* [wpos, wlen): bytes not handed to the kernel yet */
    size_t wpos, wlen, wcap;
};

int mk_evpipe_new(mk_client *c, size_t server, mk_evpipe **out)
{
    if (out == NULL)
        return MK_EINVAL;
    *out = NULL;
    if (c == NULL || server >= c->n)
        return c == NULL ? MK_EINVAL : MK_ERANGE;
    if (!mk__pipelinable(c))
        return MK_EINVAL;   /* binary, TLS and SASL connections are not pipelined */
    mk_evpipe *p = calloc(1, sizeof *p);
    if (p == NULL)
        return MK_ENOMEM;
    p->c = c;
    p->s = &c->servers[server];
    *out = p;
    return 0;
}

/* ---- the queues ---- */

/* Room for `need` more bytes at the end of wbuf (what was written is dropped first). 0 or MK_ENOMEM. */
static int reserve(mk_evpipe *p, size_t need)
{
    if (p->wpos == p->wlen)
        p->wpos = p->wlen = 0;
    if (p->wpos > 0 && p->wlen + need > p->wcap) {   /* what was written goes first */
        memmove(p->wbuf, p->wbuf + p->wpos, p->wlen - p->wpos);
        p->wlen -= p->wpos;
        p->wpos = 0;
    }
    return mk__buf_grow(&p->wbuf, &p->wcap, p->wlen + need, 4096);
}

/* Append op's request bytes (0 or MK_ENOMEM). */
static int append(mk_evpipe *p, const mk_op *op)
{
    size_t need = mk__op_req_len(op);
    if (reserve(p, need) != 0)
        return MK_ENOMEM;
    mk__op_req_copy(op, p->wbuf + p->wlen);
    p->wlen += need;
    return 0;
}

/* op is over: its code; its caller finds it with mk_evpipe_done (a ghost is freed). */
static void complete(mk_evpipe *p, mk_op *op, int rc)
{
    p->n--;
    if (op->ghost) {
        if (op->forget)   /* a forgotten (noreply) call's failure is counted, as a quiet one's */
            mk__count_noreply(op, rc);
        mk__op_ghost_free(op);
        return;
    }
    op->pstate = P_DONE;
    mk__op_finish(op, rc);
    mk__opq_push(&p->dh, &p->dt, op);
}

static void close_conn(mk_evpipe *p)
{
    if (p->conn == NULL)
        return;
    p->gen++;
    mk__conn_close(p->conn);
    mk__pool_put(p->c, p->s, p->conn, false);
    p->conn = NULL;
    p->connecting = false;
}

/* The connection failed with cause: close it; the ops in f go again on a fresh one or end. */
static void broken(mk_evpipe *p, int cause)
{
    close_conn(p);
    mk_op *f = p->fh;
    p->fh = p->ft = NULL;
    mk_op *again_h = NULL, *again_t = NULL;
    size_t again_bytes = 0;
    while (f) {
        mk_op *x = f;
        f = f->pnext;
        if (!x->ghost && mk__op_repeatable(x) && !x->retried && cause != MK_EPROTO && x->niov > 0) {
            x->retried = true;
            atomic_fetch_add_explicit(&x->s->n.retries, 1, memory_order_relaxed);
            mk_item_clear(&x->item);   /* what was parsed of its reply is forgotten */
            x->hits = x->kpos = 0;
            x->meta_state = 0;
            x->text[0] = '\0';
            x->pstate = P_Q;
            mk__opq_push(&again_h, &again_t, x);
            again_bytes += mk__op_req_len(x);
        } else {
            complete(p, x, cause);
        }
    }
    /* wbuf: the retried requests, then q's (the unwritten tail of wbuf is exactly q's bytes) */
    size_t qbytes = 0;
    for (mk_op *x = p->qh; x; x = x->pnext)
        qbytes += mk__op_req_len(x);
    char *tail = NULL;
    if (qbytes) {
        tail = malloc(qbytes);
        if (tail)
            memcpy(tail, p->wbuf + p->wlen - qbytes, qbytes);
    }
    p->wpos = p->wlen = 0;
    if (again_h) {
        again_t->pnext = p->qh;
        if (p->qt == NULL)
            p->qt = again_t;
        p->qh = again_h;
        for (mk_op *x = again_h; x != again_t->pnext; x = x->pnext)
            if (append(p, x) != 0)
                break;   /* (cannot fail: wbuf held at least these bytes before) */
    }
    if (qbytes && tail && reserve(p, qbytes) == 0) {
        memcpy(p->wbuf + p->wlen, tail, qbytes);
        p->wlen += qbytes;
    } else if (qbytes) {   /* no memory for the copy: q's ops end */
        while (p->qh && p->qh != (again_t ? again_t->pnext : NULL)) {
            mk_op *x = p->qh;
            mk__opq_unlink(&p->qh, &p->qt, x);
            complete(p, x, MK_ENOMEM);
        }
    }
    free(tail);
}

/* Every op in q ends with rc (the connection could not be had). */
static void fail_queued(mk_evpipe *p, int rc)
{
    while (p->qh) {
        mk_op *x = p->qh;
        mk__opq_unlink(&p->qh, &p->qt, x);
        complete(p, x, rc);
    }
    p->wpos = p->wlen = 0;
}

/* ---- I/O steps, none of which blocks ---- */

/* Get (or go on connecting) a connection. 0: connected; MK_EAGAIN: not yet. */
static int get_conn(mk_evpipe *p, int64_t now)
{
    mk_client *c = p->c;
    mk_server *s = p->s;
    int rc;
    if (p->conn == NULL) {
        if (p->pool_retry && now < p->pool_retry)
            return MK_EAGAIN;
        if (p->pool_retry == 0)
            p->pool_deadline = now + c->opt.checkout_timeout_ms;
        bool full = false;
        mk_conn *cn = NULL;
        rc = mk__pool_get(c, s, now, false, &full, &cn);
        if (rc == MK_EAGAIN) {
            if (now >= p->pool_deadline) {
                p->pool_retry = 0;
                atomic_fetch_add_explicit(&s->n.pool_waits, 1, memory_order_relaxed);
                fail_queued(p, MK_EPOOLTIMEOUT);
                return MK_EAGAIN;
            }
            p->pool_retry = now + 2;
            return MK_EAGAIN;
        }
        p->pool_retry = 0;
        if (rc != 0) {
            fail_queued(p, rc);
            return MK_EAGAIN;
        }
        p->gen++;
        if (cn->fd >= 0 && (cn->quiet_open || cn->pending_mn || cn->unsynced || !mk__conn_usable(s, cn)))
            mk__conn_close(cn);   /* replies of someone else's requests may follow: a fresh one */
        p->conn = cn;
        if (cn->fd >= 0) {
            mk__conn_ready(c, cn);
            return 0;
        }
        p->connecting = true;
        p->connect_deadline = now + c->opt.connect_timeout_ms;
        rc = mk__conn_connect(c, s, cn);
    } else if (p->connecting) {
        rc = mk__conn_connect_finish(c, s, p->conn);
    } else {
        return 0;
    }
    if (rc == MK_EAGAIN) {
        if (now < p->connect_deadline)
            return MK_EAGAIN;
        rc = MK_ETIMEDOUT;
    }
    p->connecting = false;
    if (rc != 0) {
        close_conn(p);
        fail_queued(p, rc == MK_ETIMEDOUT ? MK_ETIMEDOUT : rc);
        return MK_EAGAIN;
    }
    mk__conn_ready(c, p->conn);
    /* the wait for the connection is not I/O time: the queued ops' deadlines start now */
    int64_t io_deadline = now + c->opt.io_timeout_ms;
    for (mk_op *x = p->qh; x; x = x->pnext)
        if (x->deadline < io_deadline)
            x->deadline = io_deadline;
    return 0;
}

/* Write what the socket takes; q moves to f. 0, or an error (the connection is broken). */
static int flush(mk_evpipe *p)
{
    if (p->qh) {
        for (mk_op *x = p->qh; x; x = x->pnext)
            x->pstate = P_F;
        if (p->ft)
            p->ft->pnext = p->qh;
        else
            p->fh = p->qh;
        p->ft = p->qt;
        p->qh = p->qt = NULL;
    }
    while (p->wpos < p->wlen) {
        ssize_t w = send(p->conn->fd, p->wbuf + p->wpos, p->wlen - p->wpos, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p->wpos += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return MK_EIO;
    }
    p->wpos = p->wlen = 0;
    return 0;
}

/* Hand every complete reply in the buffer to f's ops. 0, or MK_EPROTO. */
static int hand_out(mk_evpipe *p, size_t *want)
{
    mk_conn *cn = p->conn;
    while (p->fh) {
        mk_op *h = p->fh;
        int rc = mk__op_parse(h, cn, want);
        if (rc == 1)
            break;
        mk__opq_unlink(&p->fh, &p->ft, h);
        complete(p, h, rc);
        if (rc == MK_EPROTO)
            return MK_EPROTO;
    }
    if (cn->rpos == cn->rlen)
        cn->rpos = cn->rlen = 0;
    return 0;
}

/* Read what has come and hand it out. 0, or an error. */
static int read_replies(mk_evpipe *p)
{
    mk_conn *cn = p->conn;
    for (int rounds = 0; rounds < 64; rounds++) {
        size_t want = 4096;
        if (hand_out(p, &want) != 0)
            return MK_EPROTO;
        if (p->fh == NULL)   /* every reply is in (a recv now would find nothing); more is stray */
            return cn->rpos == cn->rlen ? 0 : MK_EPROTO;
        if (mk__conn_reserve(cn, want < 4096 ? 4096 : want) != 0)
            return MK_ENOMEM;
        size_t room = cn->rcap - cn->rlen;
        ssize_t n = recv(cn->fd, cn->rbuf + cn->rlen, room, MSG_DONTWAIT);
        if (n > 0) {
            cn->rlen += (size_t)n;
            if ((size_t)n < room) {   /* the socket is drained */
                want = 4096;
                return hand_out(p, &want);
            }
            continue;
        }
        if (n == 0)
            return MK_EIO;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return MK_EIO;
    }
    return 0;
}

/* Where op's bytes sit in wbuf when it is in q (the tail of wbuf is q's, in order). */
static size_t q_offset(const mk_evpipe *p, const mk_op *op)
{
    size_t after = 0;
    bool seen = false;
    for (mk_op *x = p->qh; x; x = x->pnext) {
        if (seen)
            after += mk__op_req_len(x);
        if (x == op)
            seen = true;
    }
    return p->wlen - after - mk__op_req_len(op);
}

/* Take op out of q and its bytes out of wbuf (not counted in n any more). */
static void withdraw(mk_evpipe *p, mk_op *op)
{
    size_t off = q_offset(p, op), len = mk__op_req_len(op);
    memmove(p->wbuf + off, p->wbuf + off + len, p->wlen - off - len);
    p->wlen -= len;
    mk__opq_unlink(&p->qh, &p->qt, op);
    op->pstate = P_NONE;
    p->n--;
}

/* Ops past their deadline end with MK_ETIMEDOUT; a written one breaks the connection. */
static void expire(mk_evpipe *p, int64_t now)
{
    if (p->conn == NULL || p->connecting)
        return;   /* connect_deadline / pool_deadline govern */
    /* (deadlines grow along f, then q: only the heads need looking at) */
    if (p->fh && now >= p->fh->deadline) {
        /* every written op past its deadline ends; the others go again on a fresh connection */
        while (p->fh && now >= p->fh->deadline) {
            mk_op *x = p->fh;
            mk__opq_unlink(&p->fh, &p->ft, x);
            complete(p, x, MK_ETIMEDOUT);
        }
        broken(p, MK_ETIMEDOUT);
    }
    while (p->qh && now >= p->qh->deadline) {   /* never written: it just leaves */
        mk_op *x = p->qh;
        withdraw(p, x);
        p->n++;   /* (complete counts it out) */
        complete(p, x, MK_ETIMEDOUT);
    }
}

int mk_evpipe_io(mk_evpipe *p)
{
    if (p == NULL)
        return MK_EINVAL;
    int64_t now = mk__now_ms();
    for (int round = 0; round < 4; round++) {
        if (p->qh == NULL && p->fh == NULL && p->wpos == p->wlen) {
            if (p->conn && !p->connecting && p->conn->fd >= 0) {
                /* idle: only EOF or stray bytes can come; either way the connection goes */
                char b;
                ssize_t n = recv(p->conn->fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
                if (n == 0 || n > 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                    close_conn(p);
            }
            return 0;
        }
        if (get_conn(p, now) != 0)
            break;
        int rc = flush(p);
        if (rc == 0 && p->fh)
            rc = read_replies(p);
        if (rc != 0) {
            broken(p, rc);
            continue;   /* retried requests go out on a fresh connection at once */
        }
        break;
    }
    expire(p, now);
    return 0;
}

int mk_evpipe_flush(mk_evpipe *p)
{
    if (p == NULL)
        return MK_EINVAL;
    if (p->qh == NULL || get_conn(p, mk__now_ms()) != 0)
        return 0;
    int rc = flush(p);
    if (rc != 0)
        broken(p, rc);   /* (mk_evpipe_io sends them again) */
    return 0;
}

int mk_evpipe_add(mk_evpipe *p, mk_op *op, void *udata)
{
    if (p == NULL || op == NULL || op->c != p->c || op->s != p->s)
        return MK_EINVAL;
    if (op->state != ST_CHECKOUT || op->conn != NULL || !op->expect_reply || op->forget || op->binary ||
        op->pstate != P_NONE)
        return MK_EAGAIN;   /* not pipelined: run it with mk_op_step (a noreply call: see mk_evpipe_forget) */
    mk_opcode code = op->a.code;
    if (code == MK_OP_STATS)
        return MK_EAGAIN;   /* (its stat_cb context may live on a stack the loop has switched away from) */
    if (p->n >= (size_t)p->c->opt.pipeline_depth)
        return MK_EAGAIN;   /* full */
    if ((code == MK_OP_STORE && op->a.nvalue > p->c->opt.pipeline_max_value) ||
        mk__op_req_len(op) > p->c->opt.pipeline_max_value + 64 * 1024)
        return MK_EAGAIN;   /* not copied into the shared buffer: sent from the caller's own memory */
    if (append(p, op) != 0)
        return MK_ENOMEM;
    op->deadline = mk__now_ms() + p->c->opt.io_timeout_ms;
    op->pstate = P_Q;
    op->pudata = udata;
    mk__opq_push(&p->qh, &p->qt, op);
    p->n++;
    return 0;
}

void *mk_evpipe_done(mk_evpipe *p, mk_op **op)
{
    if (op)
        *op = NULL;
    if (p == NULL || p->dh == NULL)
        return NULL;
    mk_op *x = p->dh;
    mk__opq_unlink(&p->dh, &p->dt, x);
    x->pstate = P_NONE;
    if (op)
        *op = x;
    return x->pudata;
}

static int leave(mk_evpipe *p, mk_op *op, bool take_back)
{
    if (p == NULL || op == NULL)
        return MK_EINVAL;
    if (op->pstate == P_DONE) {
        mk__opq_unlink(&p->dh, &p->dt, op);
        op->pstate = P_NONE;
        if (!take_back)
            mk__count_noreply(op, op->rc);
        return 0;
    }
    if (op->pstate == P_Q && take_back) {
        withdraw(p, op);
        return 0;
    }
    if (op->pstate != P_Q && op->pstate != P_F)
        return MK_EINVAL;
    mk_op *g = mk__op_ghost(op);
    if (g == NULL) {   /* no memory for the ghost: the stream cannot be followed; start over */
        if (op->pstate == P_Q) {
            withdraw(p, op);
        } else {
            mk__opq_unlink(&p->fh, &p->ft, op);
            op->pstate = P_NONE;
            p->n--;
            broken(p, MK_ENOMEM);
        }
        return MK_ENOMEM;
    }
    /* the ghost takes op's place in its queue */
    if (op->pstate == P_Q)
        mk__opq_replace(&p->qh, &p->qt, op, g);
    else
        mk__opq_replace(&p->fh, &p->ft, op, g);
    /* a ghost in q keeps its request for a retry: mk__op_req_len(g) must still count its bytes */
    if (op->pstate == P_Q) {
        g->iov = g->iov_small;
        g->iov_small[0] = (struct iovec){NULL, mk__op_req_len(op)};
        g->iovi = 0, g->niov = 1;
    }
    g->retried = true;   /* never sent twice */
    g->forget = !take_back;
    op->pstate = P_NONE;
    op->pnext = NULL;
    return 0;
}

int mk_evpipe_forget(mk_evpipe *p, mk_op *op)
{
    return leave(p, op, false);
}

int mk_evpipe_cancel(mk_evpipe *p, mk_op *op)
{
    return leave(p, op, true);
}

int mk_evpipe_fd(const mk_evpipe *p)
{
    return p && p->conn ? p->conn->fd : -1;
}

short mk_evpipe_events(const mk_evpipe *p)
{
    if (p == NULL || p->conn == NULL || p->conn->fd < 0)
        return 0;
    if (p->connecting)
        return p->conn->want ? p->conn->want : POLLOUT;
    short ev = POLLIN;   /* replies, or (idle) the server closing it */
    if (p->wpos < p->wlen)
        ev |= POLLOUT;
    return ev;
}

unsigned mk_evpipe_generation(const mk_evpipe *p)
{
    return p ? p->gen : 0;
}

bool mk_evpipe_pending(const mk_evpipe *p)
{
    return p && (p->qh != NULL || p->fh != NULL);
}

int mk_evpipe_timeout_ms(const mk_evpipe *p)
{
    if (p == NULL || (p->qh == NULL && p->fh == NULL))
        return -1;
    int64_t now = mk__now_ms(), until;
    if (p->conn == NULL)
        until = p->pool_retry ? p->pool_retry : now;
    else if (p->connecting)
        until = p->connect_deadline;
    else
        until = p->fh ? p->fh->deadline : p->qh->deadline;   /* the earliest (see expire) */
    return until <= now ? 0 : (int)(until - now);
}

void mk_evpipe_after_fork(mk_evpipe *p)
{
    if (p == NULL || p->conn == NULL)
        return;
    /* the socket is the parent's too: close this process's copy without a word, outside the pool
     * (mk_client_after_fork reset it); the requests in flight go again on a connection of our own */
    if (p->conn->fd >= 0)
        close(p->conn->fd);
    p->conn->fd = -1;
    p->gen++;
    mk__conn_free(p->conn);
    p->conn = NULL;
    p->connecting = false;
    broken(p, MK_EIO);
}

void mk_evpipe_free(mk_evpipe *p)
{
    if (p == NULL)
        return;
    close_conn(p);
    /* ops still in it end with MK_EIO (their callers find them with mk_evpipe_done before this) */
    while (p->fh) {
        mk_op *x = p->fh;
        mk__opq_unlink(&p->fh, &p->ft, x);
        if (x->ghost)
            mk__op_ghost_free(x);
        else
            mk__op_finish(x, MK_EIO), x->pstate = P_NONE;
    }
    while (p->qh) {
        mk_op *x = p->qh;
        mk__opq_unlink(&p->qh, &p->qt, x);
        if (x->ghost)
            mk__op_ghost_free(x);
        else
            mk__op_finish(x, MK_EIO), x->pstate = P_NONE;
    }
    while (p->dh) {
        mk_op *x = p->dh;
        mk__opq_unlink(&p->dh, &p->dt, x);
        x->pstate = P_NONE;
    }
    free(p->wbuf);
    free(p);
}
