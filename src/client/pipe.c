/* client/pipe.c — auto-pipelining: blocking calls to one server share a connection; requests go out together, one caller reads the replies and hands each to its caller in order. */
#include "client/client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/*
 * A server's pipe (mk_pipe, in client.h) holds the ops of the threads that are
 * calling it at the same time, in two queues:
 *
 *   q: requests not written yet; their bytes are copied, in order, into wbuf
 *   f: requests written; their replies come back in this order
 *
 * The work is done by the callers themselves, in three roles, each held by at
 * most one thread at a time, whose I/O runs with the lock released:
 *
 *   connecting  take a connection from the server's pool (connect it if new)
 *   writing     swap wbuf for the spare buffer, move q to f, write it all;
 *               again while q has filled meanwhile (requests queued during a
 *               write go out together in the next one)
 *   reading     recv, then hand every complete reply to f's head op in turn
 *               (parsed under the lock into that op: its item, number, text);
 *               the reader keeps the role until its own op is done
 *
 * A thread whose op waits and holds no role sleeps on the op's condition
 * variable; it is woken when its op is done or when a role it can take is free
 * (kick). When the last op leaves, the connection goes back to the pool.
 *
 * Failure. The connection is "broken" when a read or write fails, the server
 * closes it, a reply cannot be parsed, or an op whose request was written
 * times out (its reply may still come: the stream can no longer be matched).
 * A thread in I/O is woken with shutdown(); once no role is held, the pipe is
 * repaired: the connection is closed, and every op still in f is either sent
 * again on a new connection (requests that may be repeated -- get family, set,
 * touch --, once per op, the pool's stale-connection rule) or ends with the
 * cause (MK_EIO, MK_ETIMEDOUT, MK_EPROTO). So a timeout fails only its own
 * op, the ops behind it on a frozen or slow connection are retried on a fresh
 * one, and no op ever receives another's reply.
 *
 * noreply. A single-key noreply call is queued as a plain request. Once a
 * writer has taken its bytes, its caller returns and a ghost (a heap copy
 * holding no caller) takes its place in f: the ghost's reply is read and
 * dropped like any other, a failure counted in the server's noreply_failed.
 * With nobody left in the pipe but ghosts, the pipe keeps its connection (the
 * next caller reads their replies first). So noreply calls go out together
 * with the others, in order on the one connection, and never wait for a reply
 * -- except when ghosts fill half of pipeline_depth: then the caller waits for
 * its own reply, reading the ghosts' on the way.
 *
 * Bounds: at most pipeline_depth ops in a pipe, values of at most
 * pipeline_max_value bytes; other calls run on the pool's other connections.
 */

enum { P_NONE = 0, P_Q, P_F, P_DONE };

void mk__pipe_init(mk_pipe *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
}

/* Free the ghosts in f (their callers are gone; so is the stream they were reading). */
static void free_ghosts(mk_pipe *p)
{
    for (mk_op *x = p->fh, *next; x; x = next) {
        next = x->pnext;
        if (x->ghost)
            mk__op_ghost_free(x);
    }
}

void mk__pipe_destroy(mk_pipe *p)
{
    free_ghosts(p);
    if (p->conn)
        mk__conn_free(p->conn);
    free(p->wbuf);
    free(p->spare);
    pthread_mutex_destroy(&p->lock);
    memset(p, 0, sizeof *p);
}

void mk__pipe_after_fork(mk_pipe *p)
{
    /* the ops belong to parent threads that do not exist here; the connection is the parent's */
    free_ghosts(p);
    if (p->conn)
        mk__conn_free(p->conn);
    char *w = p->wbuf, *sp = p->spare;
    size_t wc = p->wcap, sc = p->spare_cap;
    memset(p, 0, sizeof *p);
    p->wbuf = w, p->wcap = wc, p->spare = sp, p->spare_cap = sc;
    pthread_mutex_init(&p->lock, NULL);
}

/* ---- the queues ---- */

/* Append op's request bytes to wbuf. 0 or MK_ENOMEM. */
static int append(mk_pipe *p, const mk_op *op)
{
    size_t need = mk__op_req_len(op);
    if (mk__buf_grow(&p->wbuf, &p->wcap, p->wlen + need, 4096) != 0)
        return MK_ENOMEM;
    mk__op_req_copy(op, p->wbuf + p->wlen);
    p->wlen += need;
    return 0;
}

/* wbuf again from q's ops (an op left q, or the connection was replaced). */
static void rebuild(mk_pipe *p)
{
    p->wlen = 0;
    for (mk_op *x = p->qh; x; x = x->pnext)
        if (append(p, x) != 0)
            break;   /* (cannot fail: the buffer already held at least these bytes) */
}

/* op is over (lock held): counters, its code, and its thread woken. A ghost is freed (a failure its
 * server replied is counted in noreply_failed). */
static void complete(mk_pipe *p, mk_op *op, int rc)
{
    if (op->ghost) {
        mk__count_noreply(op, rc);
        p->n--;
        p->ghosts--;
        mk__op_ghost_free(op);
        return;
    }
    op->pstate = P_DONE;
    mk__op_finish(op, rc);
    pthread_cond_signal(&op->pcond);
}

/* The first op from x on whose caller is waiting (ghosts have none). */
static mk_op *first_caller(mk_op *x)
{
    while (x && x->ghost)
        x = x->pnext;
    return x;
}

/* Wake the threads that can take a free role (lock held). */
static void kick(mk_pipe *p)
{
    if (p->broken) {
        if (!p->reading && !p->writing && !p->connecting) {
            mk_op *x = first_caller(p->fh);
            if (x == NULL)
                x = p->qh;
            if (x)
                pthread_cond_signal(&x->pcond);
        }
        return;
    }
    if (p->qh && !p->connecting && !p->writing)
        pthread_cond_signal(&p->qh->pcond);
    mk_op *r = p->conn && !p->reading ? first_caller(p->fh) : NULL;
    if (r)
        pthread_cond_signal(&r->pcond);
}

/* The connection failed (lock held): stop the I/O in progress; repair() follows once no role is held. */
static void set_broken(mk_pipe *p, int cause)
{
    if (!p->broken) {
        p->broken = true;
        p->cause = cause;
    }
    if ((p->reading || p->writing) && p->conn && p->conn->fd >= 0)
        shutdown(p->conn->fd, SHUT_RDWR);   /* the thread in recv/send returns at once */
}

/* A broken pipe, no role held (lock held): close the connection; ops in f go again or end. */
static void repair(mk_pipe *p, mk_client *c, mk_server *s)
{
    mk_op *f = p->fh;
    p->fh = p->ft = NULL;
    mk_op *again_h = NULL, *again_t = NULL;
    while (f) {
        mk_op *x = f;
        f = f->pnext;
        if (x->ghost) {   /* a noreply call that returned already: not sent again */
            complete(p, x, p->cause);
            continue;
        }
        /* (a multi-get whose callback has had hits would hand them out twice) */
        if (mk__op_repeatable(x) && !x->retried && p->cause != MK_EPROTO && !(x->a.value_cb && x->hits)) {
            x->retried = true;
            atomic_fetch_add_explicit(&x->s->n.retries, 1, memory_order_relaxed);
            mk_item_clear(&x->item);   /* what was parsed of its reply is forgotten */
            x->hits = x->kpos = 0;
            x->meta_state = 0;
            x->text[0] = '\0';
            x->pstate = P_Q;
            mk__opq_push(&again_h, &again_t, x);
        } else {
            complete(p, x, p->cause);
        }
    }
    if (again_h) {   /* the retried requests go first, in their order */
        again_t->pnext = p->qh;
        if (p->qt == NULL)
            p->qt = again_t;
        p->qh = again_h;
    }
    rebuild(p);
    if (p->conn) {
        mk__conn_close(p->conn);
        mk__pool_put(c, s, p->conn, false);
        p->conn = NULL;
    }
    p->broken = false;
    p->cause = 0;
}

/* A pooled connection that carried quiet (noreply) requests: close them with "mn" and read their
 * failures up to "MN" (counted in the server's noreply_failed, as op.c does), so that none is taken
 * for a reply. 0, or an error (the caller closes the connection). */
static int settle(mk_server *s, mk_conn *cn, int64_t deadline)
{
    if (cn->quiet_open) {
        if (send(cn->fd, "mn\r\n", 4, MSG_DONTWAIT | MSG_NOSIGNAL) != 4)
            return MK_EIO;
        cn->pending_mn++;
        cn->quiet_open = 0;
    }
    while (cn->pending_mn) {
        int rc = mk__conn_drain(s, cn);
        if (rc != 0)
            return rc;
        if (cn->pending_mn == 0)
            break;
        if (mk__conn_reserve(cn, 4096) != 0)
            return MK_ENOMEM;
        int64_t left = deadline - mk__now_ms();
        struct pollfd pf = {cn->fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return MK_ETIMEDOUT;
        ssize_t n = recv(cn->fd, cn->rbuf + cn->rlen, cn->rcap - cn->rlen, MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)))
            return MK_EIO;
        if (n > 0)
            cn->rlen += (size_t)n;
    }
    return 0;
}

/* ---- the roles (each entered and left with the lock held) ---- */

/* Take a connection from the pool for the ops in q, connecting it if it is new. */
static void take_connection(mk_pipe *p, mk_op *op)
{
    mk_client *c = op->c;
    mk_server *s = op->s;
    p->connecting = true;
    int64_t pool_deadline = op->t0 + c->opt.checkout_timeout_ms;
    pthread_mutex_unlock(&p->lock);
    mk_conn *cn = NULL;
    bool full = false;
    int rc = mk__pool_get(c, s, pool_deadline, true, &full, &cn);
    if (full)
        atomic_fetch_add_explicit(&s->n.pool_waits, 1, memory_order_relaxed);
    if (rc == 0 && cn->fd >= 0 && (cn->quiet_open || cn->pending_mn) &&
        settle(s, cn, mk__now_ms() + c->opt.io_timeout_ms) != 0)
        mk__conn_close(cn);   /* (a fresh one is opened below) */
    if (rc == 0 && cn->fd < 0) {
        int64_t deadline = mk__now_ms() + c->opt.connect_timeout_ms;
        rc = mk__conn_connect(c, s, cn);
        while (rc == MK_EAGAIN) {
            int64_t left = deadline - mk__now_ms();
            if (left <= 0) {
                rc = MK_ETIMEDOUT;
                break;
            }
            struct pollfd pf = {cn->fd, cn->want ? cn->want : POLLOUT, 0};
            poll(&pf, 1, (int)left);
            rc = mk__conn_connect_finish(c, s, cn);
        }
        if (rc != 0) {
            mk__conn_close(cn);
            mk__pool_put(c, s, cn, false);
            cn = NULL;
        }
    }
    if (cn)
        mk__conn_ready(c, cn);
    pthread_mutex_lock(&p->lock);
    p->connecting = false;
    if (rc != 0) {
        /* every queued request would meet the same refusal: they end with it (each counted) */
        while (p->qh) {
            mk_op *x = p->qh;
            mk__opq_unlink(&p->qh, &p->qt, x);
            complete(p, x, rc);
        }
        p->wlen = 0;
        return;
    }
    p->conn = cn;
    /* the wait for a connection is not I/O time: the queued ops' I/O deadlines start now */
    int64_t io_deadline = mk__now_ms() + c->opt.io_timeout_ms;
    for (mk_op *x = p->qh; x; x = x->pnext)
        if (x->deadline < io_deadline)
            x->deadline = io_deadline;
}

/* Write everything queued, in as few sends as the socket takes. */
static void write_queued(mk_pipe *p)
{
    mk_conn *cn = p->conn;
    p->writing = true;
    while (p->qh && !p->broken) {
        /* the queued bytes become the writer's; new requests fill the other buffer meanwhile */
        char *b = p->wbuf;
        size_t len = p->wlen, cap = p->wcap;
        p->wbuf = p->spare, p->wcap = p->spare_cap, p->wlen = 0;
        p->spare = b, p->spare_cap = cap;
        for (mk_op *x = p->qh; x; x = x->pnext) {
            x->pstate = P_F;
            if (x->forget)
                pthread_cond_signal(&x->pcond);   /* its bytes are taken: its caller may return */
        }
        if (p->ft)
            p->ft->pnext = p->qh;
        else
            p->fh = p->qh;
        p->ft = p->qt;
        p->qh = p->qt = NULL;
        int64_t deadline = p->fh->deadline;   /* the oldest request's: a write stuck longer breaks the pipe */
        kick(p);                              /* the reader can start on the first replies */
        pthread_mutex_unlock(&p->lock);
        size_t off = 0;
        int err = 0;
        while (off < len) {
            /* (plain sockets only: the reader and the writer use the socket at once, and TLS state is
             * not shared between two threads; so straight send/recv, which touch no field of cn) */
            ssize_t w = send(cn->fd, b + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                int64_t left = deadline - mk__now_ms();
                struct pollfd pf = {cn->fd, POLLOUT, 0};
                if (left > 0 && poll(&pf, 1, (int)left) >= 0 && !(pf.revents & (POLLERR | POLLHUP | POLLNVAL)))
                    continue;
                err = left > 0 ? MK_EIO : MK_ETIMEDOUT;
                break;
            }
            err = MK_EIO;
            break;
        }
        pthread_mutex_lock(&p->lock);
        if (err)
            set_broken(p, err);
    }
    p->writing = false;
}

/* Hand every complete reply in cn's buffer to f's ops, in order (lock held); *want: the bytes the next
 * reply still needs, when known. */
static void hand_out(mk_pipe *p, mk_conn *cn, size_t *want)
{
    while (p->fh && !p->broken) {
        mk_op *h = p->fh;
        int rc = mk__op_parse(h, cn, want);
        if (rc == 1)
            break;
        mk__opq_unlink(&p->fh, &p->ft, h);
        if (rc == MK_EPROTO) {
            complete(p, h, MK_EPROTO);
            set_broken(p, MK_EPROTO);
            break;
        }
        complete(p, h, rc);
    }
}

/* One read: recv what has come, then hand out every complete reply. */
static void read_replies(mk_pipe *p, mk_op *op)
{
    mk_conn *cn = p->conn;
    p->reading = true;
    size_t want = 4096;
    hand_out(p, cn, &want);   /* what is buffered first: replies that came with the last read */
    if (op->pstate == P_DONE || p->fh == NULL || p->broken) {
        p->reading = false;
        return;
    }
    int rc = mk__conn_reserve(cn, want < 4096 ? 4096 : want);
    int64_t left = op->deadline - mk__now_ms();
    pthread_mutex_unlock(&p->lock);
    ssize_t n = -1;
    int err = 0;
    if (rc != 0) {
        err = MK_ENOMEM;
    } else if (left > 0) {
        /* a blocking recv bounded by SO_RCVTIMEO (io_timeout_ms) when the deadline is that far; else poll first */
        int flags = 0;
        if (left < op->c->opt.io_timeout_ms - 1 || !cn->blocking) {
            struct pollfd pf = {cn->fd, POLLIN, 0};
            flags = MSG_DONTWAIT;
            if (poll(&pf, 1, (int)left) == 0)
                flags = -1;   /* nothing came in time */
        }
        if (flags >= 0) {
            n = recv(cn->fd, cn->rbuf + cn->rlen, cn->rcap - cn->rlen, flags);
            if (n == 0)
                err = MK_EIO;
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                err = MK_EIO;
        }
    }
    pthread_mutex_lock(&p->lock);
    if (n > 0) {
        cn->rlen += (size_t)n;
        hand_out(p, cn, &want);   /* before anyone looks at a deadline: the reply may be here */
    }
    if (err)
        set_broken(p, err);
    p->reading = false;
}

/* op's deadline passed before its reply came (lock held). */
static void timed_out(mk_pipe *p, mk_op *op)
{
    if (op->pstate == P_Q) {   /* never written: it just leaves */
        mk__opq_unlink(&p->qh, &p->qt, op);
        rebuild(p);
        complete(p, op, MK_ETIMEDOUT);
        return;
    }
    /* written: its reply may still come, and every reply behind it would be taken for the wrong op */
    mk__opq_unlink(&p->fh, &p->ft, op);
    complete(p, op, MK_ETIMEDOUT);
    set_broken(p, MK_ETIMEDOUT);
}

static void wait_until(mk_op *op, pthread_mutex_t *lock, int64_t deadline_ms)
{
    struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000L};
    pthread_cond_timedwait(&op->pcond, lock, &ts);
}

/* A noreply call whose bytes a writer has taken (lock held): a ghost takes its place in f to read its reply,
 * and the call is over (0). False if there is no memory for the ghost. */
static bool leave_as_ghost(mk_pipe *p, mk_op *op)
{
    mk_op *g = mk__op_ghost(op);
    if (g == NULL)
        return false;
    mk__opq_replace(&p->fh, &p->ft, op, g);
    g->retried = true;   /* never sent again */
    p->ghosts++;
    p->n++;              /* (the call's own count goes when it leaves) */
    op->pstate = P_DONE;
    mk__op_finish(op, 0);
    return true;
}

int mk__pipe_run(mk_op *op)
{
    mk_client *c = op->c;
    mk_server *s = op->s;
    mk_pipe *p = &s->pipe;
    if ((op->a.code == MK_OP_STORE && op->a.nvalue > c->opt.pipeline_max_value) ||
        mk__op_req_len(op) > c->opt.pipeline_max_value + 64 * 1024)
        return MK_EAGAIN;   /* not copied into the shared buffer: sent from the caller's own memory */
    pthread_mutex_lock(&p->lock);
    if (p->n >= (size_t)c->opt.pipeline_depth || append(p, op) != 0) {
        pthread_mutex_unlock(&p->lock);
        return MK_EAGAIN;   /* full: the pool's other connections serve it */
    }
    mk__cond_init_mono(&op->pcond);
    op->deadline = mk__now_ms() + c->opt.io_timeout_ms;
    op->pstate = P_Q;
    mk__opq_push(&p->qh, &p->qt, op);
    p->n++;
    /* a noreply call returns once a writer has its bytes, unless ghosts already fill half the pipe */
    bool may_leave = op->forget && p->ghosts * 2 < (size_t)c->opt.pipeline_depth;
    for (;;) {
        while (op->pstate != P_DONE && !(may_leave && op->pstate == P_F)) {
            if (p->broken) {
                if (!p->reading && !p->writing && !p->connecting)
                    repair(p, c, s);
                else
                    wait_until(op, &p->lock, op->deadline);   /* the thread in I/O returns (shutdown) */
                continue;
            }
            if (p->conn == NULL) {
                if (!p->connecting && p->qh)
                    take_connection(p, op);
                else
                    wait_until(op, &p->lock, op->deadline + c->opt.connect_timeout_ms);
                continue;
            }
            if (p->qh && !p->writing) {
                write_queued(p);
                continue;
            }
            if (p->fh && !p->reading) {
                read_replies(p, op);
                if (op->pstate != P_DONE && !p->broken && mk__now_ms() >= op->deadline)
                    timed_out(p, op);
                continue;
            }
            if (mk__now_ms() >= op->deadline) {
                timed_out(p, op);
                continue;
            }
            wait_until(op, &p->lock, op->deadline);
        }
        if (op->pstate == P_DONE || leave_as_ghost(p, op))
            break;
        may_leave = false;   /* no memory for a ghost: it waits for its reply */
    }
    if (op->forget && mk__op_replied(op->rc)) {   /* a noreply call: what the server said is not returned */
        mk__count_noreply(op, op->rc);
        op->rc = 0;
    }
    p->n--;
    if (p->n == p->ghosts && p->broken)
        repair(p, c, s);   /* no caller left in it: just closes the connection (and drops the ghosts) */
    if (p->n == 0 && p->conn) {
        /* the last caller out gives the connection back (reusable when nothing is left unread) */
        mk_conn *cn = p->conn;
        p->conn = NULL;
        bool clean = cn->rpos == cn->rlen;
        if (!clean)
            mk__conn_close(cn);
        mk__pool_put(c, s, cn, clean);
    }
    kick(p);
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&op->pcond);
    return op->rc;
}
