/* client/op.c — mk_op: one request (or a pipelined batch) on one server as a non-blocking state machine (checkout, connect, write, read). */
#include "client/client.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/*
 * States, driven by one switch in mk_op_step():
 *
 *   CHECKOUT ─► CONNECT ─► WRITE ─► READ ─► DONE
 *      │  idle conn ─────────┘        │
 *      └ pool full: EAGAIN (fd -1)    └ noreply: DONE after WRITE
 *
 * Deadlines: CHECKOUT until start + checkout_timeout_ms; CONNECT for
 * connect_timeout_ms; WRITE and READ together for io_timeout_ms. A step that
 * would have to wait past its deadline fails with MK_ETIMEDOUT instead.
 * The connection goes back to the pool as soon as the op is done.
 *
 * Stale pooled connections (see pool.c for when a pooled connection is reused
 * without a liveness check): when such a reused connection fails before a
 * single reply byte arrived -- the send fails, or the first read sees EOF or a
 * reset -- the op is retried once, transparently, on a fresh connection:
 * always when nothing of the request was sent, and after a sent request only
 * for ops that are safe to repeat (get/gets/gat/gats, set, touch, flush_all,
 * version, stats). That failure is not counted against the server.
 *
 * Batches: MK_OP_STORE / MK_OP_DELETE / MK_OP_TOUCH with nkeyset > 0 send one
 * request per key in one write stream and read the replies in order into
 * args.results[].
 *
 * noreply (MK_NOREPLY) stores, deletes and incr/decr to a server that speaks
 * the meta protocol go in its quiet mode: "ms <key> <n> q ...", "md <key> q",
 * "ma <key> q ...". The server answers only what went wrong; the op is done
 * once written (conn->quiet_open counts them). The next call on the connection
 * that wants a reply first sends "mn" (conn->pending_mn) and reads everything
 * up to "MN" before its own reply (mk__conn_drain), counting each line there in
 * the server's noreply_failed. So a failed noreply request can never be taken
 * for the reply of a later one, the classic protocol's noreply pitfall (there a
 * stray error reply is caught only if it has arrived by the next checkout),
 * and a run of noreply writes costs the server no reply at all.
 */

#define MAX_VALUE (1ull << 31)   /* larger VALUE lengths are treated as garbage */
#define MAX_LINE 65536           /* a reply line longer than this is garbage */
#define MAX_IOV 1024             /* IOV_MAX on Linux */


void mk_op_args_init(mk_op_args *a)
{
    memset(a, 0, sizeof *a);
    a->server = -1;
}

static bool is_get(mk_opcode c)
{
    return c == MK_OP_GET || c == MK_OP_GETS || c == MK_OP_GAT || c == MK_OP_GATS;
}

static int build_iov(mk_op *op);

int mk__op_build_iov(mk_op *op)
{
    return build_iov(op);
}

static bool is_batch(const mk_op_args *a)
{
    return a->nkeyset && !is_get(a->code);
}

static bool is_meta(mk_opcode c)
{
    return c == MK_OP_MGET || c == MK_OP_INVALIDATE;
}

static bool keyed(mk_opcode c)
{
    return c != MK_OP_FLUSH_ALL && c != MK_OP_VERSION && c != MK_OP_STATS;
}

/* Ops whose request may be sent twice with the same outcome (the retry rule). */
static bool repeatable(const mk_op_args *a)
{
    switch (a->code) {
    case MK_OP_GET: case MK_OP_GETS: case MK_OP_GAT: case MK_OP_GATS:
    case MK_OP_TOUCH: case MK_OP_FLUSH_ALL: case MK_OP_VERSION: case MK_OP_STATS:
        return true;
    case MK_OP_STORE:
        return a->store_op == MK_STORE_SET;
    default:
        return false;
    }
}

static inline char *put_mem(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    return p + mk_compose_u64(p, v);
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

static const mk_cmd store_cmds[] = {
    [MK_STORE_SET] = MK_CMD_SET,         [MK_STORE_ADD] = MK_CMD_ADD,         [MK_STORE_REPLACE] = MK_CMD_REPLACE,
    [MK_STORE_APPEND] = MK_CMD_APPEND,   [MK_STORE_PREPEND] = MK_CMD_PREPEND, [MK_STORE_CAS] = MK_CMD_CAS,
};

/* The text protocol's name of a keyed op (delete, touch, incr, decr). */
static mk_cmd keyed_cmd(mk_opcode c)
{
    return c == MK_OP_DELETE ? MK_CMD_DELETE : c == MK_OP_TOUCH ? MK_CMD_TOUCH
         : c == MK_OP_INCR ? MK_CMD_INCR : MK_CMD_DECR;
}

/* Fill op->iov with the whole request (req, and values for stores, each followed by "\r\n" in the
 * text protocol; a binary frame's length says where its value ends). */
static int build_iov(mk_op *op)
{
    const mk_op_args *a = &op->a;
    bool tail = !op->binary;
    op->iovi = 0;
    if (a->code != MK_OP_STORE) {
        op->iov = op->iov_small;
        op->iov[0] = (struct iovec){op->req, op->nreq};
        op->niov = 1;
        return 0;
    }
    if (!is_batch(a)) {
        op->iov = op->iov_small;
        op->iov[0] = (struct iovec){op->req, op->nreq};
        op->iov[1] = (struct iovec){(void *)a->value, a->nvalue};
        op->iov[2] = (struct iovec){(void *)"\r\n", 2};
        op->niov = tail ? 3 : 2;
        return 0;
    }
    if (op->iov == NULL || op->iov == op->iov_small) {
        op->iov = malloc(3 * a->nkeyset * sizeof *op->iov);
        if (op->iov == NULL)
            return MK_ENOMEM;
    }
    size_t start = 0, k = 0;
    for (size_t i = 0; i < a->nkeyset; i++) {
        op->iov[k++] = (struct iovec){op->req + start, op->hdr_end[i] - start};
        if (a->nvalues[i])
            op->iov[k++] = (struct iovec){(void *)a->values[i], a->nvalues[i]};
        if (tail)
            op->iov[k++] = (struct iovec){(void *)"\r\n", 2};
        start = op->hdr_end[i];
    }
    op->niov = k;
    return 0;
}

/*
 * The quiet (meta) form of a noreply request: "ms <key> <n> q [F] [T] [M<mode>] [C]",
 * "md <key> q" or "ma <key> q [D<delta>] [MD]". Returns its length.
 */
static size_t compose_quiet(char *p, char *end, const mk_op_args *a, mk_str key, uint32_t fl, size_t nv)
{
    char f[96], *q = f;
    *q++ = 'q';
    mk_cmd cmd = MK_CMD_MD;
    if (a->code == MK_OP_STORE) {
        static const char modes[] = {[MK_STORE_ADD] = 'E', [MK_STORE_REPLACE] = 'R', [MK_STORE_APPEND] = 'A',
                                     [MK_STORE_PREPEND] = 'P'};
        cmd = MK_CMD_MS;
        if (fl)
            q = put_u64(put_mem(q, " F", 2), fl);
        if (a->exptime)
            q = put_i64(put_mem(q, " T", 2), a->exptime);
        if (a->store_op == MK_STORE_CAS)
            q = put_u64(put_mem(q, " C", 2), a->cas);
        else if (a->store_op != MK_STORE_SET)
            q = put_mem(put_mem(q, " M", 2), &modes[a->store_op], 1);
    } else if (a->code == MK_OP_INCR || a->code == MK_OP_DECR) {
        cmd = MK_CMD_MA;
        q = put_u64(put_mem(q, " D", 2), a->delta);
        if (a->code == MK_OP_DECR)
            q = put_mem(q, " MD", 3);
    }
    return mk_compose_meta_req(p, (size_t)(end - p), cmd, key, nv, (mk_str){f, (size_t)(q - f)});
}

/* Build the request text into op->req, then the iovecs. */
static int compose(mk_op *op)
{
    const mk_op_args *a = &op->a;
    if (op->binary)
        return mk__bin_compose(op);
    size_t need = 128 + (a->group ? strlen(a->group) : 0) + a->nkey;
    for (size_t i = 0; i < a->nkeyset; i++)
        need += a->nkeys[i] + (is_batch(a) ? 96 : 1);
    if (op->quiet)
        need += 64 * (a->nkeyset ? a->nkeyset : 1); /* " q F.. T.. C.." is longer than " noreply" */
    op->req = need <= sizeof op->small ? op->small : malloc(need);
    if (op->req == NULL)
        return MK_ENOMEM;
    /* every request line comes from src/proto's composers; `need` bounds them all */
    char *p = op->req, *end = op->req + need;
    bool noreply = (a->mode & MK_NOREPLY) != 0;
    const char *const *keys = a->nkeyset ? a->keys : &a->key;
    const size_t *nkeys = a->nkeyset ? a->nkeys : &a->nkey;
    size_t nk = a->nkeyset ? a->nkeyset : 1;
    switch (a->code) {
    case MK_OP_GET:
    case MK_OP_GETS:
    case MK_OP_GAT:
    case MK_OP_GATS: {
        static const mk_cmd cmds[] = {[MK_OP_GET] = MK_CMD_GET, [MK_OP_GETS] = MK_CMD_GETS,
                                      [MK_OP_GAT] = MK_CMD_GAT, [MK_OP_GATS] = MK_CMD_GATS};
        p += mk_compose_req_get(p, (size_t)(end - p), cmds[a->code], a->exptime, keys, nkeys, nk);
        break;
    }
    case MK_OP_STORE:
        if (a->nkeyset) {
            op->hdr_end = malloc(a->nkeyset * sizeof *op->hdr_end);
            if (op->hdr_end == NULL)
                return MK_ENOMEM;
        }
        for (size_t i = 0; i < nk; i++) {
            uint32_t fl = a->nkeyset && a->flagsv ? a->flagsv[i] : a->flags;
            size_t nv = a->nkeyset ? a->nvalues[i] : a->nvalue;
            if (op->quiet)
                p += compose_quiet(p, end, a, (mk_str){keys[i], nkeys[i]}, fl, nv);
            else
                p += mk_compose_req_storage(p, (size_t)(end - p), store_cmds[a->store_op],
                                            (mk_str){keys[i], nkeys[i]}, fl, a->exptime, nv, a->cas, noreply);
            if (a->nkeyset)
                op->hdr_end[i] = (size_t)(p - op->req);
        }
        break;
    case MK_OP_DELETE:
    case MK_OP_INCR:
    case MK_OP_DECR:
    case MK_OP_TOUCH:
        for (size_t i = 0; i < nk; i++)
            if (op->quiet)
                p += compose_quiet(p, end, a, (mk_str){keys[i], nkeys[i]}, 0, 0);
            else
                p += mk_compose_req_keyed(p, (size_t)(end - p), keyed_cmd(a->code), (mk_str){keys[i], nkeys[i]},
                                          a->exptime, a->delta, noreply);
        break;
    case MK_OP_FLUSH_ALL: {
        char d[24];
        size_t nd = a->exptime >= 0 ? (size_t)(put_i64(d, a->exptime) - d) : 0;
        p += mk_compose_req_cmd(p, (size_t)(end - p), MK_CMD_FLUSH_ALL, (mk_str){d, nd}, noreply);
        break;
    }
    case MK_OP_VERSION:
    case MK_OP_STATS: {
        mk_str g = {a->group ? a->group : "", a->code == MK_OP_STATS && a->group ? strlen(a->group) : 0};
        p += mk_compose_req_cmd(p, (size_t)(end - p), a->code == MK_OP_VERSION ? MK_CMD_VERSION : MK_CMD_STATS, g,
                                false);
        break;
    }
    case MK_OP_MGET:
    case MK_OP_INVALIDATE: {
        /* mg <key> v f c [N<vivify>] [R<recache>] O<token> / md <key> I [T<exptime>] O<token> */
        char fl[96], *q = fl;
        if (a->code == MK_OP_MGET) {
            q = put_mem(q, "v f c", 5);
            if (a->vivify > 0)
                q = put_u64(put_mem(q, " N", 2), (uint64_t)a->vivify);
            if (a->recache > 0)
                q = put_u64(put_mem(q, " R", 2), (uint64_t)a->recache);
        } else {
            *q++ = 'I';
            if (a->exptime > 0)
                q = put_u64(put_mem(q, " T", 2), (uint64_t)a->exptime);
        }
        /* the reply echoes the token: a reply taken for another request's is caught (read_meta) */
        op->opaque = atomic_fetch_add_explicit(&op->c->opaque_seq, 1, memory_order_relaxed) + 1;
        q = put_u64(put_mem(q, " O", 2), op->opaque);
        p += mk_compose_meta_req(p, (size_t)(end - p), a->code == MK_OP_MGET ? MK_CMD_MG : MK_CMD_MD,
                                 (mk_str){a->key, a->nkey}, 0, (mk_str){fl, (size_t)(q - fl)});
        break;
    }
    }
    op->nreq = (size_t)(p - op->req);
    return build_iov(op);
}

static int check_key(const char *key, size_t nkey)
{
    return mk_key_check(key, nkey, NULL) == MK_KEY_OK ? 0 : MK_EBADKEY;
}

/* Validate the arguments and pick the server: the server index or a negative code. */
static int validate(mk_client *c, const mk_op_args *a, bool keys_checked, int64_t now)
{
    if (c == NULL || a == NULL || (unsigned)a->code > MK_OP_INVALIDATE)
        return MK_EINVAL;
    if (is_meta(a->code) && (a->nkeyset || (a->mode & MK_NOREPLY) || a->vivify < 0 || a->recache < 0 ||
                             a->vivify > INT32_MAX || a->recache > INT32_MAX || a->exptime > INT32_MAX))
        return MK_EINVAL;
    bool noreply = (a->mode & MK_NOREPLY) != 0;
    if (noreply && (is_get(a->code) || a->code == MK_OP_VERSION || a->code == MK_OP_STATS))
        return MK_EINVAL;
    if (a->code == MK_OP_STORE && ((unsigned)a->store_op > MK_STORE_CAS || (a->value == NULL && a->nvalue)))
        return MK_EINVAL;
    if (a->nkeyset) {
        if (a->keys == NULL || a->nkeys == NULL)
            return MK_EINVAL;
        if (!is_get(a->code)) {
            if (a->code != MK_OP_STORE && a->code != MK_OP_DELETE && a->code != MK_OP_TOUCH)
                return MK_EINVAL;
            if (a->results == NULL || (a->code == MK_OP_STORE && (a->values == NULL || a->nvalues == NULL)))
                return MK_EINVAL;
            if (a->code == MK_OP_STORE)
                for (size_t i = 0; i < a->nkeyset; i++)
                    if (a->values[i] == NULL && a->nvalues[i])
                        return MK_EINVAL;
        }
    }
    if (a->code == MK_OP_STATS && a->group && strpbrk(a->group, "\r\n"))
        return MK_EINVAL;
    int server = a->server;
    if (server >= 0 && (size_t)server >= c->n)
        return MK_ERANGE;
    if (keyed(a->code)) {
        int rc = 0;
        if (keys_checked) {
            /* the caller (mk_mget) validated every key already */
        } else if (a->nkeyset) {
            for (size_t i = 0; i < a->nkeyset && rc == 0; i++)
                rc = check_key(a->keys[i], a->nkeys[i]);
        } else {
            rc = check_key(a->key, a->nkey);
        }
        if (rc)
            return rc;
        if (server < 0)
            server = a->nkeyset ? mk__pick_at(c, a->keys[0], a->nkeys[0], now) : mk__pick_at(c, a->key, a->nkey, now);
    } else if (server < 0) {
        return MK_ERANGE;
    }
    return server;
}

bool mk__quiet_capable(mk_opcode code)
{
    return code == MK_OP_STORE || code == MK_OP_DELETE || code == MK_OP_INCR || code == MK_OP_DECR;
}

/* Whether a noreply request goes in the quiet form: to a server known to speak meta, or binary.
 * (No I/O here: a server not asked yet gets classic noreply; the blocking calls ask first.) */
static bool quiet_form(const mk_op *op)
{
    mk_opcode code = op->a.code;
    return !op->expect_reply && (mk__quiet_capable(code) || code == MK_OP_FLUSH_ALL) &&
           (op->binary ||
            (code != MK_OP_FLUSH_ALL && atomic_load_explicit(&op->s->meta, memory_order_relaxed) > 0));
}


int mk__op_init(mk_client *c, const mk_op_args *args, mk_op *op, bool keys_checked)
{
    if (c == NULL)
        return MK_EINVAL;
    int64_t now = mk__now_ms();
    int server = validate(c, args, keys_checked, now);
    if (server < 0)
        return server;
    if (is_meta(args->code) && atomic_load_explicit(&c->servers[server].meta, memory_order_relaxed) < 0)
        return MK_EERROR; /* known not to speak the meta protocol: nothing is sent */
    /* not memset: text[] and small[] need no zeroing */
    op->c = c;
    op->a = *args;
    op->server = server;
    op->s = &c->servers[server];
    op->conn = NULL;
    op->state = ST_CHECKOUT;
    op->blocking = false;
    op->binary = c->opt.binary;
    op->auth_pending = false;
    op->expect_reply = !(args->mode & MK_NOREPLY);
    if (op->binary && args->code == MK_OP_TOUCH)
        op->expect_reply = true; /* the binary protocol has no quiet touch: its answer is read */
    /*
     * Auto-pipelining takes a single-key noreply call too: it goes as a plain request on the shared
     * connection, and once it is written the caller returns and a ghost reads its reply (pipe.c). If the
     * pipe cannot take it, it becomes a noreply request again (mk__op_unforget).
     */
    bool pipes = c->opt.pipeline && mk__pipelinable(c);
    op->forget = !op->expect_reply && pipes && args->nkeyset == 0 &&
                 (mk__quiet_capable(args->code) || args->code == MK_OP_TOUCH);
    if (op->forget) {
        op->expect_reply = true;
        op->a.mode &= ~MK_NOREPLY;
    }
    op->quiet = quiet_form(op);
    op->heap = false;
    op->reused = op->got_reply = op->retried = op->wait_eof = false;
    op->waits = (args->mode & MK_WAITS) != 0;
    op->waited = op->fresh = op->pool_waited = false;
    op->pstate = 0;
    op->pnext = NULL;
    op->ghost = false;
    op->pudata = NULL;
    /* auto-pipelining: plain text/meta requests with a reply, and no callback unless it may run on the
     * thread that reads the shared connection (stats: never, its lines would be handed out twice after a
     * retry) */
    op->piped = pipes && op->expect_reply && args->code != MK_OP_STATS &&
                (args->value_cb == NULL || (args->mode & MK_CB_ANY_THREAD));
    op->t0 = now;
    op->rc = 0;
    op->events = 0;
    op->req = NULL;
    op->nreq = 0;
    op->iov = NULL;
    op->iovi = op->niov = 0;
    op->hdr_end = NULL;
    op->kpos = op->hits = 0;
    memset(&op->item, 0, sizeof op->item);
    op->number = 0;
    op->meta_state = 0;
    op->text[0] = '\0';
    if (is_batch(args))
        for (size_t i = 0; i < args->nkeyset; i++)
            args->results[i] = MK_EAGAIN;
    op->deadline = now + c->opt.checkout_timeout_ms;
    int rc = compose(op);
    if (rc) {
        mk__op_release(op);
        return rc;
    }
    return 0;
}

int mk_op_start(mk_client *c, const mk_op_args *args, mk_op **out)
{
    return mk__op_start(c, args, out, false);
}

_Static_assert(sizeof(mk_op) <= MK_OP_STORAGE, "MK_OP_STORAGE too small for mk_op");

int mk_op_start_in(mk_client *c, const mk_op_args *args, void *storage, size_t size, mk_op **out)
{
    if (out == NULL)
        return MK_EINVAL;
    *out = NULL;
    if (storage == NULL || size < sizeof(mk_op))
        return storage == NULL ? MK_EINVAL : MK_ERANGE;
    mk_op *op = storage;
    int rc = mk__op_init(c, args, op, false);
    if (rc == 0)
        *out = op;
    return rc;
}

int mk__op_start(mk_client *c, const mk_op_args *args, mk_op **out, bool keys_checked)
{
    if (out == NULL)
        return MK_EINVAL;
    *out = NULL;
    mk_op *op = malloc(sizeof *op);
    if (op == NULL)
        return MK_ENOMEM;
    int rc = mk__op_init(c, args, op, keys_checked);
    if (rc) {
        free(op);
        return rc;
    }
    op->heap = true;
    *out = op;
    return 0;
}

void mk__op_set_blocking(mk_op *op, bool blocking)
{
    op->blocking = blocking;
}

/* The op found the server's pool full (once per op in its counters). */
static void count_pool_wait(mk_op *op)
{
    if (!op->pool_waited) {
        op->pool_waited = true;
        atomic_fetch_add_explicit(&op->s->n.pool_waits, 1, memory_order_relaxed);
    }
}

static int finish(mk_op *op, int rc);

int mk__op_finish(mk_op *op, int rc)
{
    return finish(op, rc);
}

size_t mk__op_req_len(const mk_op *op)
{
    size_t n = 0;
    for (size_t i = op->iovi; i < op->niov; i++)
        n += op->iov[i].iov_len;
    return n;
}

void mk__op_req_copy(const mk_op *op, char *dst)
{
    for (size_t i = op->iovi; i < op->niov; i++) {
        memcpy(dst, op->iov[i].iov_base, op->iov[i].iov_len);
        dst += op->iov[i].iov_len;
    }
}

mk_op *mk__op_ghost(const mk_op *op)
{
    const mk_op_args *a = &op->a;
    size_t extra = a->nkey;
    for (size_t i = 0; i < a->nkeyset; i++)
        extra += a->nkeys[i] + sizeof(char *) + sizeof(size_t);
    mk_op *g = malloc(sizeof *g + extra + 16);
    if (g == NULL)
        return NULL;
    memcpy(g, op, sizeof *g);
    char *mem = (char *)(g + 1);
    /* its request is already in wbuf: the ghost keeps only what parsing the reply reads (the keys) */
    if (a->nkeyset) {
        const char **keys = (const char **)mem;
        size_t *nkeys = (size_t *)(mem + a->nkeyset * sizeof(char *));
        char *kb = (char *)(nkeys + a->nkeyset);
        for (size_t i = 0; i < a->nkeyset; i++) {
            memcpy(kb, a->keys[i], a->nkeys[i]);
            keys[i] = kb;
            nkeys[i] = a->nkeys[i];
            kb += a->nkeys[i];
        }
        g->a.keys = keys;
        g->a.nkeys = nkeys;
    } else {
        memcpy(mem, a->key, a->nkey);
        g->a.key = mem;
    }
    g->a.value = NULL;
    g->a.value_cb = NULL;
    g->a.stat_cb = NULL;
    g->a.ctx = NULL;
    g->a.results = NULL;   /* (a batch's ghost counts its replies in kpos and keeps no outcomes) */
    g->req = NULL;
    g->iov = NULL;
    g->iovi = g->niov = 0;
    g->hdr_end = NULL;
    g->conn = NULL;
    memset(&g->item, 0, sizeof g->item);
    g->heap = true;
    g->ghost = true;
    g->pudata = NULL;
    return g;
}

void mk__op_ghost_free(mk_op *g)
{
    mk_item_clear(&g->item);
    free(g);
}

bool mk__op_replied(int rc)
{
    return rc == 0 || rc == MK_ENOTFOUND || rc == MK_ENOTSTORED || rc == MK_EEXISTS || rc == MK_ECLIENTERR ||
           rc == MK_ESERVERERR || rc == MK_EERROR || rc == MK_ENOTNUM;
}

void mk__count_noreply(const mk_op *op, int rc)
{
    if (rc != 0 && mk__op_replied(rc))
        atomic_fetch_add_explicit(&op->s->n.noreply_failed, 1, memory_order_relaxed);
}

bool mk__op_repeatable(const mk_op *op)
{
    return repeatable(&op->a);
}

/* The op is over: give the connection back (reusable only after a clean reply). */
static int finish(mk_op *op, int rc)
{
    bool net_fail = rc == MK_EIO || rc == MK_ETIMEDOUT || rc == MK_ECONNECT || rc == MK_EPROTO;
    if (op->conn) {
        bool clean = rc == 0 || rc == MK_ENOTFOUND || rc == MK_ENOTSTORED || rc == MK_EEXISTS;
        if (clean && op->conn->rpos != op->conn->rlen && !op->conn->pending_mn && !op->conn->quiet_open)
            clean = false;   /* bytes after the reply: out of sync (with quiet replies due, they are those) */
        if (!clean)
            mk__conn_close(op->conn);
        mk__pool_put_at(op->c, op->s, op->conn, clean, op->waited ? mk__now_ms() : op->t0);
        op->conn = NULL;
    }
    if (is_batch(&op->a) && rc != 0 && op->a.results)
        for (size_t i = op->kpos; i < op->a.nkeyset; i++)
            op->a.results[i] = rc;
    if (net_fail) {
        atomic_fetch_add_explicit(&op->s->n.errors, 1, memory_order_relaxed);
        if (rc == MK_ETIMEDOUT)
            atomic_fetch_add_explicit(&op->s->n.timeouts, 1, memory_order_relaxed);
        mk__server_failed(op->c, op->s);
    } else if (rc == MK_EPOOLTIMEOUT) {
        atomic_fetch_add_explicit(&op->s->n.pool_timeouts, 1, memory_order_relaxed);
    } else if (rc != MK_ENOMEM) {
        mk__server_ok(op->s);
    }
    op->state = ST_DONE;
    op->rc = rc;
    return rc;
}

static int start_write(mk_op *op);

/* With credentials, a new connection authenticates first: SASL PLAIN (one frame) or the -Y token
 * goes ahead of the request, and its answer is read before the request's. 0, or an error. */
static int authenticate(mk_op *op)
{
    char f[MK_AUTH_FRAME_MAX + 32];
    const mk_options *o = &op->c->opt;
    size_t n = o->ascii_auth ? mk__ascii_auth_token(f, sizeof f, o)
                             : mk__bin_auth_frame(f, sizeof f, o->username, o->password);
    if (n == 0)
        return MK_EINVAL;
    ssize_t w;
    do
        w = mk__conn_send(op->conn, f, n, MSG_DONTWAIT | MSG_MORE);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)n)
        return MK_EIO; /* (a new socket's buffer takes a few hundred bytes at once) */
    op->auth_pending = true;
    return 0;
}

/* The connection is connected: write. */
static int connected(mk_op *op)
{
    mk__conn_ready(op->c, op->conn);
    if (op->c->opt.username) {
        int rc = authenticate(op);
        if (rc)
            return finish(op, rc);
    }
    op->state = ST_WRITE;
    op->deadline = mk__now_ms() + op->c->opt.io_timeout_ms;
    op->fresh = true;
    return start_write(op);
}

/* Open a connection on op->conn (fd -1) and go on. */
static int connect_and_go(mk_op *op)
{
    op->deadline = mk__now_ms() + op->c->opt.connect_timeout_ms;
    int rc = mk__conn_connect(op->c, op->s, op->conn);
    if (rc == MK_EAGAIN) {
        op->state = ST_CONNECT;
        op->events = op->conn->want;
        return MK_EAGAIN;
    }
    if (rc)
        return finish(op, rc);
    return connected(op);
}

/* A network failure (rc) of a connection reused from the pool without a check:
 * retry once on a fresh connection when the rule allows (see the top). */
static int fail_io(mk_op *op, int rc, bool nothing_sent)
{
    if (op->reused && !op->retried && !op->got_reply && (nothing_sent || repeatable(&op->a))) {
        op->retried = true;
        atomic_fetch_add_explicit(&op->s->n.retries, 1, memory_order_relaxed);
        op->reused = false;
        mk__conn_close(op->conn);
        if (build_iov(op))
            return finish(op, MK_ENOMEM);
        return connect_and_go(op);
    }
    return finish(op, rc);
}

void mk__op_set_text(mk_op *op, const char *p, size_t n)
{
    if (n > sizeof op->text - 1)
        n = sizeof op->text - 1;
    memcpy(op->text, p, n);
    op->text[n] = '\0';
}

static void set_text(mk_op *op, mk_str t)
{
    mk__op_set_text(op, t.p, t.n);
}

/* A VALUE with its data block at data[0..vlen). Returns 0 or an error. */
static int on_value(mk_op *op, const mk_response *r, const char *data);

int mk__op_on_value(mk_op *op, const mk_response *r, const char *data)
{
    return on_value(op, r, data);
}

static int on_value(mk_op *op, const mk_response *r, const char *data)
{
    const mk_op_args *a = &op->a;
    size_t idx;
    if (a->nkeyset) {   /* replies come in request order: match forward */
        size_t j = op->kpos;
        while (j < a->nkeyset && !(a->nkeys[j] == r->key.n && memcmp(a->keys[j], r->key.p, r->key.n) == 0))
            j++;
        if (j == a->nkeyset)
            return MK_EPROTO;
        idx = j;
        op->kpos = j + 1;
    } else {
        if (op->hits || r->key.n != a->nkey || memcmp(r->key.p, a->key, a->nkey) != 0)
            return MK_EPROTO;
        idx = 0;
    }
    op->hits++;
    if (a->value_cb) {
        mk_item it = {a->nkeyset ? a->keys[idx] : a->key, a->nkeyset ? a->nkeys[idx] : a->nkey,
                      (char *)data, (size_t)r->vlen, r->flags, r->cas};
        a->value_cb(a->ctx, idx, &it);
        return 0;
    }
    if (op->item.value == NULL) {
        char *v = malloc((size_t)r->vlen + 1);
        if (v == NULL)
            return MK_ENOMEM;
        memcpy(v, data, (size_t)r->vlen);
        v[r->vlen] = '\0';
        op->item.key = a->key;
        op->item.nkey = a->nkey;
        op->item.value = v;
        op->item.nvalue = (size_t)r->vlen;
        op->item.flags = r->flags;
        op->item.cas = r->cas;
    }
    return 0;
}

/* A batch: one reply line for key kpos. Returns 1 to keep reading, else the op's final code. */
static int on_batch_reply(mk_op *op, const mk_response *r)
{
    mk_opcode code = op->a.code;
    int rc;
    switch (r->type) {
    case MK_RESP_STORED: rc = code == MK_OP_STORE ? 0 : MK_EPROTO; break;
    case MK_RESP_NOT_STORED: rc = code == MK_OP_STORE ? MK_ENOTSTORED : MK_EPROTO; break;
    case MK_RESP_EXISTS: rc = code == MK_OP_STORE ? MK_EEXISTS : MK_EPROTO; break;
    case MK_RESP_NOT_FOUND: rc = MK_ENOTFOUND; break;
    case MK_RESP_DELETED: rc = code == MK_OP_DELETE ? 0 : MK_EPROTO; break;
    case MK_RESP_TOUCHED: rc = code == MK_OP_TOUCH ? 0 : MK_EPROTO; break;
    case MK_RESP_ERROR: rc = MK_EERROR; break;
    case MK_RESP_CLIENT_ERROR: rc = MK_ECLIENTERR; break;
    case MK_RESP_SERVER_ERROR: rc = MK_ESERVERERR; break;
    default: rc = MK_EPROTO; break;
    }
    if (rc == MK_EPROTO)
        return MK_EPROTO;
    if (rc == MK_EERROR || rc == MK_ECLIENTERR || rc == MK_ESERVERERR)
        set_text(op, r->text);
    if (op->a.results)   /* (NULL: an event-loop pipe's ghost, whose caller left) */
        op->a.results[op->kpos] = rc;
    op->kpos++;
    return op->kpos == op->a.nkeyset ? 0 : 1;
}

/* Act on one reply line. Returns 1 to keep reading, else the op's final code. */
static int on_reply(mk_op *op, const mk_response *r)
{
    mk_opcode code = op->a.code;
    if (is_batch(&op->a))
        return on_batch_reply(op, r);
    switch (r->type) {
    case MK_RESP_END:
        if (is_get(code))
            return (op->a.nkeyset || op->hits) ? 0 : MK_ENOTFOUND;
        return code == MK_OP_STATS ? 0 : MK_EPROTO;
    case MK_RESP_STAT:
    case MK_RESP_PREFIX: /* "stats detail dump" lists prefixes instead of STAT lines */
        if (code != MK_OP_STATS)
            return MK_EPROTO;
        if (op->a.stat_cb)
            op->a.stat_cb(op->a.ctx, r->key.p, r->key.n, r->text.p, r->text.n);
        return 1;
    case MK_RESP_STORED:
        return code == MK_OP_STORE ? 0 : MK_EPROTO;
    case MK_RESP_NOT_STORED:
        return code == MK_OP_STORE ? MK_ENOTSTORED : MK_EPROTO;
    case MK_RESP_EXISTS:
        return code == MK_OP_STORE ? MK_EEXISTS : MK_EPROTO;
    case MK_RESP_NOT_FOUND:
        return (code == MK_OP_STORE || code == MK_OP_DELETE || code == MK_OP_INCR || code == MK_OP_DECR ||
                code == MK_OP_TOUCH) ? MK_ENOTFOUND : MK_EPROTO;
    case MK_RESP_DELETED:
        return code == MK_OP_DELETE ? 0 : MK_EPROTO;
    case MK_RESP_TOUCHED:
        return code == MK_OP_TOUCH ? 0 : MK_EPROTO;
    case MK_RESP_OK: /* "stats detail on|off" answers OK alone */
        return code == MK_OP_FLUSH_ALL || code == MK_OP_STATS ? 0 : MK_EPROTO;
    case MK_RESP_NUMBER:
        if (code != MK_OP_INCR && code != MK_OP_DECR)
            return MK_EPROTO;
        op->number = r->number;
        return 0;
    case MK_RESP_VERSION:
        if (code != MK_OP_VERSION)
            return MK_EPROTO;
        set_text(op, r->text);
        return 0;
    case MK_RESP_ERROR:
        set_text(op, r->text);
        return MK_EERROR;
    case MK_RESP_CLIENT_ERROR:
        set_text(op, r->text);
        if ((code == MK_OP_INCR || code == MK_OP_DECR) && strstr(op->text, "non-numeric"))
            return MK_ENOTNUM;
        return MK_ECLIENTERR;
    case MK_RESP_SERVER_ERROR:
        set_text(op, r->text);
        return MK_ESERVERERR;
    default:
        return MK_EPROTO;
    }
}

/* A meta reply line other than VA: the op's final code. */
static int on_meta_reply(mk_op *op, const mk_meta_resp *r)
{
    bool mg = op->a.code == MK_OP_MGET;
    switch (r->code) {
    case MK_MC_HD:
        return mg ? MK_EPROTO : 0;
    case MK_MC_EN:
        return mg ? MK_ENOTFOUND : MK_EPROTO;
    case MK_MC_NF:
        return mg ? MK_EPROTO : MK_ENOTFOUND;
    case MK_MC_EX:
        return mg ? MK_EPROTO : MK_EEXISTS;
    case MK_MC_ERROR:
        set_text(op, r->text);
        return r->text.n > 6 && r->text.p[0] == 'C' ? MK_ECLIENTERR : r->text.n > 6 ? MK_ESERVERERR : MK_EERROR;
    default:
        return MK_EPROTO;
    }
}

/* An mg hit: the value at data[0..vlen), with the meta state. */
static int on_meta_value(mk_op *op, const mk_meta_resp *mr, const char *data)
{
    op->meta_state = (mr->win ? MK_META_WIN : 0) | (mr->stale ? MK_META_STALE : 0) |
                     (mr->token_sent ? MK_META_TOKEN : 0);
    if (mr->vlen == 0 && mr->client_flags == 0 && (mr->win || mr->token_sent))
        op->meta_state |= MK_META_PLACEHOLDER;
    mk_response r = {.type = MK_RESP_VALUE, .key = {op->a.key, op->a.nkey}, .flags = mr->client_flags,
                     .vlen = mr->vlen, .has_cas = mr->has_cas, .cas = mr->cas};
    return on_value(op, &r, data);
}

/* A value's header line of `used` bytes at p, then vlen data bytes and "\r\n": 0 when all of it is in
 * p[0..avail) (*total: its length), 1 when more must be read (*want: how much), MK_EPROTO if malformed. */
static int whole_block(const char *p, size_t avail, size_t used, uint64_t vlen, size_t *total, size_t *want)
{
    if (vlen > MAX_VALUE)
        return MK_EPROTO;
    *total = used + (size_t)vlen + 2;
    if (avail < *total) {
        *want = *total - avail;
        return 1;
    }
    return p[*total - 2] == '\r' && p[*total - 1] == '\n' ? 0 : MK_EPROTO;
}

/* Whether a meta reply carries the O token of op's request (errors carry none). */
static bool opaque_echoed(const mk_op *op, const mk_meta_resp *mr)
{
    char t[16];
    size_t n = (size_t)(put_u64(t, op->opaque) - t);
    return mr->opaque.n == n && memcmp(mr->opaque.p, t, n) == 0;
}

/* Meta replies (MK_OP_MGET, MK_OP_INVALIDATE): 1 to read more (*want bytes), else the op's final code. */
static int read_meta(mk_op *op, mk_conn *cn, const char *p, size_t avail, size_t *want)
{
    mk_meta_resp mr;
    ssize_t used = mk_parse_meta_response(p, avail, &mr);
    if (used < 0 || (used == 0 && avail > MAX_LINE))
        return MK_EPROTO;
    if (used == 0)
        return 1;
    if (mr.code != MK_MC_ERROR && !opaque_echoed(op, &mr))
        return MK_EPROTO;   /* not this request's reply: the stream is out of step */
    if (mr.code != MK_MC_VA) {
        cn->rpos += (size_t)used;
        return on_meta_reply(op, &mr);
    }
    if (op->a.code != MK_OP_MGET)
        return MK_EPROTO;
    size_t total;
    int rc = whole_block(p, avail, (size_t)used, mr.vlen, &total, want);
    if (rc != 0)
        return rc;
    rc = on_meta_value(op, &mr, p + used);
    cn->rpos += total;
    return rc;
}

int mk__op_parse(mk_op *op, mk_conn *cn, size_t *want)
{
    for (;;) {
        size_t avail = cn->rlen - cn->rpos;
        if (avail == 0)
            return 1;
        if (is_meta(op->a.code))
            return read_meta(op, cn, cn->rbuf + cn->rpos, avail, want);
        const char *p = cn->rbuf + cn->rpos;
        mk_response r;
        ssize_t used = mk_parse_response(p, avail, &r);
        if (used < 0)
            return MK_EPROTO;
        if (used == 0)
            return avail > MAX_LINE ? MK_EPROTO : 1;
        if (r.type == MK_RESP_VALUE) {
            if (!is_get(op->a.code))
                return MK_EPROTO;
            size_t total;
            int rc = whole_block(p, avail, (size_t)used, r.vlen, &total, want);
            if (rc != 0)
                return rc;
            rc = on_value(op, &r, p + used);
            if (rc)
                return rc;
            cn->rpos += total;
            continue;
        }
        cn->rpos += (size_t)used;
        int rc = on_reply(op, &r);
        if (rc != 1)
            return rc;
    }
}

/* Parse what is buffered; read more when needed. */
static int do_read(mk_op *op)
{
    mk_conn *cn = op->conn;
    for (;;) {
        if (cn->pending_mn && mk__conn_drain(op->s, cn) != 0) /* earlier quiet requests' replies come first */
            return finish(op, MK_EPROTO);
        size_t avail = cn->pending_mn ? 0 : cn->rlen - cn->rpos;
        size_t want = 4096;
        if (avail && op->auth_pending && !op->binary) {
            /* the -Y token's answer comes before the op's own: STORED, or the refusal */
            const char *p = cn->rbuf + cn->rpos, *nl = memchr(p, '\n', avail);
            if (nl == NULL && avail > MAX_LINE)
                return finish(op, MK_EPROTO);
            if (nl != NULL) {
                bool ok = nl - p == 7 && memcmp(p, "STORED\r", 7) == 0;
                if (!ok)
                    set_text(op, (mk_str){p, (size_t)(nl - p) - (nl > p && nl[-1] == '\r')});
                cn->rpos += (size_t)(nl - p) + 1;
                op->auth_pending = false;
                if (!ok)
                    return finish(op, MK_EAUTH);
                if (!op->expect_reply)
                    return finish(op, 0);
                continue;
            }
        } else if (avail && op->binary) {
            size_t used;
            int rc = mk__bin_read(op, cn->rbuf + cn->rpos, avail, &used, &want);
            cn->rpos += used;
            if (rc != 1)
                return finish(op, rc);
            if (used)
                continue;
        } else if (avail) {
            int rc = mk__op_parse(op, cn, &want);
            if (rc != 1)
                return finish(op, rc);
        }
        if (op->wait_eof) {
            op->wait_eof = false;
            return fail_io(op, MK_EIO, false);
        }
        if (mk__conn_reserve(cn, want < 4096 ? 4096 : want))
            return finish(op, MK_ENOMEM);
        ssize_t n = mk__conn_recv(cn, cn->rbuf + cn->rlen, cn->rcap - cn->rlen, MSG_DONTWAIT);
        if (n > 0) {
            cn->rlen += (size_t)n;
            op->got_reply = true;
            continue;
        }
        if (n == 0)
            return fail_io(op, MK_EIO, false);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            op->events = cn->want;
            return MK_EAGAIN;
        }
        return fail_io(op, MK_EIO, false);
    }
}

/* Before a request that wants a reply: "mn" closes the quiet requests sent on the connection (their
 * failures and "MN" are read before the reply). 0, or -1 if it could not be sent at once. */
static int close_quiet(mk_op *op)
{
    mk_conn *cn = op->conn;
    char noop[24];
    const char *req = cn->binary ? noop : "mn\r\n";
    size_t len = cn->binary ? mk__bin_noop_frame(noop) : 4;
    ssize_t n;
    do
        n = mk__conn_send(cn, req, len, MSG_DONTWAIT | MSG_MORE);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len)
        return -1; /* (a partial "mn" leaves the stream unusable: the connection is replaced) */
    cn->pending_mn++;
    cn->quiet_open = 0;
    return 0;
}

static int do_write(mk_op *op)
{
    while (op->iovi < op->niov) {
        size_t cnt = op->niov - op->iovi;
        ssize_t w = mk__conn_sendv(op->conn, op->iov + op->iovi, cnt > MAX_IOV ? MAX_IOV : cnt, MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                op->events = op->conn->want;
                op->fresh = false;
                return MK_EAGAIN;
            }
            bool nothing_sent = op->iovi == 0 && op->iov[0].iov_base == (void *)op->req;
            return fail_io(op, MK_EIO, nothing_sent);
        }
        size_t left = (size_t)w;
        while (op->iovi < op->niov && left >= op->iov[op->iovi].iov_len)
            left -= op->iov[op->iovi++].iov_len;
        if (left) {
            op->iov[op->iovi].iov_base = (char *)op->iov[op->iovi].iov_base + left;
            op->iov[op->iovi].iov_len -= left;
        }
    }
    if (!op->expect_reply) {
        if (op->quiet) {
            /* now and then read the failures that came back, so that a long run of failing noreply
             * calls never fills the socket buffers (the server would stop reading) */
            if (++op->conn->quiet_open % 64 == 0) {
                int rc = mk__conn_drain_ready(op->s, op->conn);
                if (rc)
                    return finish(op, rc);
            }
        } else {
            op->conn->unsynced = true;
        }
        if (is_batch(&op->a)) {
            for (size_t i = 0; i < op->a.nkeyset; i++)
                op->a.results[i] = 0;
            op->kpos = op->a.nkeyset;
        }
        if (!op->auth_pending)
            return finish(op, 0);
        /* a new connection's SASL answer must still be read (mk__bin_read ends the op after it) */
    }
    op->state = ST_READ;
    if (op->blocking || op->waits) {
        /* A blocking caller (mk_op_run, mk_mget) waits next anyway: the reply has
         * almost never arrived yet, so a recv() now would only return EAGAIN
         * (one wasted syscall per request). Nothing is buffered: the receive
         * buffer is empty after every clean reply. */
        op->events = POLLIN;
        return MK_EAGAIN;
    }
    return do_read(op);
}

static int start_write(mk_op *op)
{
    return do_write(op);
}

int mk_op_step(mk_op *op)
{
    if (op == NULL)
        return MK_EINVAL;
    int rc;
    switch (op->state) {
    case ST_CHECKOUT:
        if (op->piped && (op->waits || op->blocking) && op->conn == NULL) {
            op->piped = false;    /* once: if the pipe is full, the pool serves the op */
            rc = mk__pipe_run(op);
            if (rc != MK_EAGAIN)
                return rc;
        }
        if (op->forget && (rc = mk__op_unforget(op)) != 0)   /* the pool sends it as noreply */
            return rc;
        if (op->conn == NULL) {   /* mk_op_wait may have checked one out already */
            bool full = false;
            rc = mk__pool_get_at(op->c, op->s, op->deadline, op->blocking, op->t0, &full, &op->conn);
            if (full)
                count_pool_wait(op);
            if (rc == MK_EAGAIN) {
                if (mk__now_ms() >= op->deadline)
                    return finish(op, MK_EPOOLTIMEOUT);
                op->events = 0;
                return MK_EAGAIN;
            }
            if (rc)
                return finish(op, rc);
        }
        if (op->conn->fd >= 0) {
            op->reused = true;
            if (op->expect_reply && op->conn->quiet_open && close_quiet(op) != 0)
                return fail_io(op, MK_EIO, true); /* on a fresh connection, once */
            op->state = ST_WRITE;
            /* no wait since t0 (and no pool wait inside this step): t0 is now */
            op->deadline = (op->waited || op->blocking ? mk__now_ms() : op->t0) + op->c->opt.io_timeout_ms;
            op->fresh = true;
            return start_write(op);
        }
        return connect_and_go(op);
    case ST_CONNECT:
        rc = mk__conn_connect_finish(op->c, op->s, op->conn);
        if (rc == MK_EAGAIN) {
            if (mk__now_ms() >= op->deadline)
                return finish(op, MK_ETIMEDOUT);
            op->events = op->conn->want;
            return MK_EAGAIN;
        }
        if (rc)
            return finish(op, rc);
        return connected(op);
    case ST_WRITE:
        rc = do_write(op);
        break;
    case ST_READ:
        rc = do_read(op);
        break;
    case ST_DONE:
    default:
        return op->rc;
    }
    if (rc == MK_EAGAIN && mk__now_ms() >= op->deadline)
        return finish(op, MK_ETIMEDOUT);
    return rc;
}

int mk_op_fd(const mk_op *op)
{
    return op && op->conn && op->state != ST_DONE ? op->conn->fd : -1;
}

short mk_op_events(const mk_op *op)
{
    return op ? op->events : 0;
}

int64_t mk__op_deadline(const mk_op *op)
{
    return op->deadline;
}

int mk_op_timeout_ms(const mk_op *op)
{
    if (op == NULL || op->state == ST_DONE)
        return 0;
    int64_t left = op->deadline - mk__now_ms();
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

int mk_op_rearm(mk_op *op)
{
    if (op == NULL || op->state != ST_CHECKOUT || op->conn != NULL)
        return MK_EINVAL;
    op->t0 = mk__now_ms();
    op->waited = false;
    op->deadline = op->t0 + op->c->opt.checkout_timeout_ms;
    return 0;
}

int mk_op_server(const mk_op *op)
{
    return op ? op->server : -1;
}

int mk_op_take_item(mk_op *op, mk_item *out)
{
    if (op == NULL || out == NULL)
        return MK_EINVAL;
    *out = op->item;
    memset(&op->item, 0, sizeof op->item);
    return out->value ? 0 : MK_ENOTFOUND;
}

unsigned mk_op_meta_state(const mk_op *op)
{
    return op ? op->meta_state : 0;
}

uint64_t mk_op_number(const mk_op *op)
{
    return op ? op->number : 0;
}

const char *mk_op_text(const mk_op *op)
{
    return op ? op->text : "";
}

/* Free what compose() built: the request text, the iovecs, a batch's header ends. */
static void free_request(mk_op *op)
{
    if (op->req != op->small)
        free(op->req);
    op->req = NULL;
    if (op->iov != op->iov_small)
        free(op->iov);
    op->iov = NULL;
    free(op->hdr_end);
    op->hdr_end = NULL;
}

void mk__op_release(mk_op *op)
{
    if (op->conn) {   /* abandoned mid-request (or checked out by mk_op_wait): out of sync */
        if (op->state != ST_CHECKOUT)
            mk__conn_close(op->conn);
        mk__pool_put(op->c, op->s, op->conn, op->state == ST_CHECKOUT);
        op->conn = NULL;
    }
    free_request(op);
    mk_item_clear(&op->item);
}

int mk__op_unforget(mk_op *op)
{
    op->forget = false;
    op->expect_reply = false;
    op->a.mode |= MK_NOREPLY;
    op->quiet = quiet_form(op);
    free_request(op);
    int rc = compose(op);
    return rc ? finish(op, rc) : 0;
}

void mk_op_destroy(mk_op *op)
{
    if (op == NULL)
        return;
    mk__op_release(op);
    if (op->heap)
        free(op);
}

/* One recv into the connection's buffer for mk_op_wait: bytes are kept for the next
 * step; end of stream or a hard error is left for that step to report. Returns 0 or
 * MK_ENOMEM. */
static int wait_recv(mk_op *op, mk_conn *cn, int flags)
{
    if (mk__conn_reserve(cn, 4096))
        return MK_ENOMEM;
    ssize_t n = mk__conn_recv(cn, cn->rbuf + cn->rlen, cn->rcap - cn->rlen, flags);
    if (n > 0) {
        cn->rlen += (size_t)n;
        op->got_reply = true;
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        op->wait_eof = true;
    }
    return 0;
}

/*
 * Wait, blocking, until the op can make progress or its phase times out. The
 * reply wait of a connection whose deadline is (nearly) a full io_timeout_ms away
 * is a blocking recv() bounded by SO_RCVTIMEO = io_timeout_ms (one syscall
 * instead of poll() + recv()); the bytes go to the receive buffer for the next
 * step. Other waits are poll() until the deadline; a full pool waits on its
 * condition variable and checks the connection out for the next step.
 */
int mk_op_wait(mk_op *op)
{
    if (op == NULL)
        return MK_EINVAL;
    if (op->state == ST_DONE)
        return 0;
    op->waited = true;
    if (op->state == ST_CHECKOUT) {
        if (op->conn)
            return 0;
        bool full = false;
        int rc = mk__pool_get(op->c, op->s, op->deadline, true, &full, &op->conn);
        if (full)
            count_pool_wait(op);
        return rc == MK_EPOOLTIMEOUT ? 0 : rc;   /* the next step reports the timeout */
    }
    mk_conn *cn = op->conn;
    bool fresh = op->fresh;
    op->fresh = false;
    /* fresh: the deadline was set (io_timeout_ms ahead) in the step that just sent
     * the request, so a recv bounded by SO_RCVTIMEO = io_timeout_ms ends by the
     * deadline plus the time of that send; no clock read needed */
    int64_t left = fresh ? op->c->opt.io_timeout_ms : op->deadline - mk__now_ms();
    if (left <= 0)
        return 0;
    if (op->state == ST_READ && cn->blocking && (fresh || left >= op->c->opt.io_timeout_ms - 1))
        return wait_recv(op, cn, 0);
    if (mk__conn_buffered(cn))
        return 0; /* TLS bytes already decrypted: the next step reads them */
    struct pollfd p = {cn->fd, op->events ? op->events : POLLIN, 0};
    int r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
    if (r > 0 && op->state == ST_READ && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
        /* readable: take the bytes now, so that the next step only parses */
        return wait_recv(op, cn, MSG_DONTWAIT);
    }
    return 0;
}

int mk_op_run(mk_op *op)
{
    if (op == NULL)
        return MK_EINVAL;
    bool was = op->waits;
    op->waits = true;
    int rc;
    while ((rc = mk_op_step(op)) == MK_EAGAIN) {
        int w = mk_op_wait(op);
        if (w)
            return finish(op, w);
    }
    op->waits = was;
    return rc;
}
