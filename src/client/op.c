/* client/op.c — mk_op: one request on one server as a non-blocking state machine (checkout, connect, write, read). */
#include "client/client.h"

#include <errno.h>
#include <inttypes.h>
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
 */
enum op_state { ST_CHECKOUT, ST_CONNECT, ST_WRITE, ST_READ, ST_DONE };

#define MAX_VALUE (1ull << 31)   /* larger VALUE lengths are treated as garbage */
#define MAX_LINE 65536           /* a reply line longer than this is garbage */

struct mk_op {
    mk_client *c;
    mk_op_args a;
    int server;
    mk_server *s;
    mk_conn *conn;
    enum op_state state;
    bool blocking;
    int rc;
    int64_t deadline;
    short events;
    bool expect_reply;

    char *req;                  /* the request line(s): small[] or malloc'd */
    size_t nreq;
    char small[384];
    size_t wpos;                /* bytes of req + value + "\r\n" written */

    size_t kpos;                /* multi-get: next key position to match */
    size_t hits;
    mk_item item;               /* single get without value_cb: the hit */
    uint64_t number;
    char text[256];
};

void mk_op_args_init(mk_op_args *a)
{
    memset(a, 0, sizeof *a);
    a->server = -1;
}

static bool is_get(mk_opcode c)
{
    return c == MK_OP_GET || c == MK_OP_GETS || c == MK_OP_GAT || c == MK_OP_GATS;
}

static bool keyed(mk_opcode c)
{
    return c != MK_OP_FLUSH_ALL && c != MK_OP_VERSION && c != MK_OP_STATS;
}

static const mk_cmd store_cmds[] = {
    [MK_STORE_SET] = MK_CMD_SET,         [MK_STORE_ADD] = MK_CMD_ADD,
    [MK_STORE_REPLACE] = MK_CMD_REPLACE, [MK_STORE_APPEND] = MK_CMD_APPEND,
    [MK_STORE_PREPEND] = MK_CMD_PREPEND, [MK_STORE_CAS] = MK_CMD_CAS,
};

/* Build the request text into op->req. */
static int compose(mk_op *op)
{
    const mk_op_args *a = &op->a;
    const char *nr = (a->mode & MK_NOREPLY) ? " noreply" : "";
    size_t need = 128 + (a->group ? strlen(a->group) : 0) + a->nkey;
    for (size_t i = 0; i < a->nkeyset; i++)
        need += a->nkeys[i] + 1;
    op->req = need <= sizeof op->small ? op->small : malloc(need);
    if (op->req == NULL)
        return MK_ENOMEM;
    char *p = op->req;
    int k = (int)a->nkey;
    switch (a->code) {
    case MK_OP_GET:
    case MK_OP_GETS:
    case MK_OP_GAT:
    case MK_OP_GATS: {
        static const char *const names[] = {"get", "gets", "gat", "gats"};
        p += sprintf(p, "%s", names[a->code - MK_OP_GET]);
        if (a->code == MK_OP_GAT || a->code == MK_OP_GATS)
            p += sprintf(p, " %" PRId64, a->exptime);
        if (a->nkeyset == 0) {
            *p++ = ' ';
            memcpy(p, a->key, a->nkey);
            p += a->nkey;
        }
        for (size_t i = 0; i < a->nkeyset; i++) {
            *p++ = ' ';
            memcpy(p, a->keys[i], a->nkeys[i]);
            p += a->nkeys[i];
        }
        memcpy(p, "\r\n", 2);
        p += 2;
        break;
    }
    case MK_OP_STORE: {
        mk_str key = {a->key, a->nkey};
        size_t n = mk_compose_req_storage(p, need, store_cmds[a->store_op], key, a->flags, a->exptime,
                                          a->nvalue, a->cas, (a->mode & MK_NOREPLY) != 0);
        if (n == 0)
            return MK_EINVAL;
        p += n;
        break;
    }
    case MK_OP_DELETE:
        p += sprintf(p, "delete %.*s%s\r\n", k, a->key, nr);
        break;
    case MK_OP_INCR:
    case MK_OP_DECR:
        p += sprintf(p, "%s %.*s %" PRIu64 "%s\r\n", a->code == MK_OP_INCR ? "incr" : "decr", k, a->key,
                     a->delta, nr);
        break;
    case MK_OP_TOUCH:
        p += sprintf(p, "touch %.*s %" PRId64 "%s\r\n", k, a->key, a->exptime, nr);
        break;
    case MK_OP_FLUSH_ALL:
        if (a->exptime >= 0)
            p += sprintf(p, "flush_all %" PRId64 "%s\r\n", a->exptime, nr);
        else
            p += sprintf(p, "flush_all%s\r\n", nr);
        break;
    case MK_OP_VERSION:
        p += sprintf(p, "version\r\n");
        break;
    case MK_OP_STATS:
        if (a->group && a->group[0])
            p += sprintf(p, "stats %s\r\n", a->group);
        else
            p += sprintf(p, "stats\r\n");
        break;
    }
    op->nreq = (size_t)(p - op->req);
    return 0;
}

static int check_key(const char *key, size_t nkey)
{
    return mk_key_check(key, nkey, NULL) == MK_KEY_OK ? 0 : MK_EBADKEY;
}

int mk_op_start(mk_client *c, const mk_op_args *args, mk_op **out)
{
    return mk__op_start(c, args, out, false);
}

int mk__op_start(mk_client *c, const mk_op_args *args, mk_op **out, bool keys_checked)
{
    if (out == NULL)
        return MK_EINVAL;
    *out = NULL;
    if (c == NULL || args == NULL || (unsigned)args->code > MK_OP_STATS)
        return MK_EINVAL;
    const mk_op_args *a = args;
    bool noreply = (a->mode & MK_NOREPLY) != 0;
    if (noreply && (is_get(a->code) || a->code == MK_OP_VERSION || a->code == MK_OP_STATS))
        return MK_EINVAL;
    if (a->code == MK_OP_STORE && ((unsigned)a->store_op > MK_STORE_CAS || (a->value == NULL && a->nvalue)))
        return MK_EINVAL;
    if (a->nkeyset && (!is_get(a->code) || a->keys == NULL || a->nkeys == NULL))
        return MK_EINVAL;
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
        if (server < 0) {
            server = a->nkeyset ? mk__pick(c, a->keys[0], a->nkeys[0]) : mk__pick(c, a->key, a->nkey);
            if (server < 0)
                return server;
        }
    } else if (server < 0) {
        return MK_ERANGE;
    }
    mk_op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return MK_ENOMEM;
    op->c = c;
    op->a = *a;
    op->server = server;
    op->s = &c->servers[server];
    op->state = ST_CHECKOUT;
    op->blocking = false;
    op->expect_reply = !noreply;
    op->deadline = mk__now_ms() + c->opt.checkout_timeout_ms;
    int rc = compose(op);
    if (rc) {
        mk_op_destroy(op);
        return rc;
    }
    *out = op;
    return 0;
}

void mk__op_set_blocking(mk_op *op, bool blocking)
{
    op->blocking = blocking;
}

/* The op is over: give the connection back (reusable only after a clean reply). */
static int finish(mk_op *op, int rc)
{
    bool net_fail = rc == MK_EIO || rc == MK_ETIMEDOUT || rc == MK_ECONNECT || rc == MK_EPROTO;
    if (op->conn) {
        bool clean = rc == 0 || rc == MK_ENOTFOUND || rc == MK_ENOTSTORED || rc == MK_EEXISTS;
        if (clean && op->conn->rpos != op->conn->rlen)
            clean = false;   /* bytes after the reply: out of sync */
        if (!clean)
            mk__conn_close(op->conn);
        mk__pool_put(op->c, op->s, op->conn, clean);
        op->conn = NULL;
    }
    if (net_fail)
        mk__server_failed(op->c, op->s);
    else if (rc != MK_EPOOLTIMEOUT && rc != MK_ENOMEM)
        mk__server_ok(op->s);
    op->state = ST_DONE;
    op->rc = rc;
    return rc;
}

static void set_text(mk_op *op, mk_str t)
{
    size_t n = t.n < sizeof op->text - 1 ? t.n : sizeof op->text - 1;
    memcpy(op->text, t.p, n);
    op->text[n] = '\0';
}

/* A VALUE with its data block at data[0..vlen). Returns 0 or an error. */
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

/* Act on one reply line. Returns 1 to keep reading, else the op's final code. */
static int on_reply(mk_op *op, const mk_response *r)
{
    mk_opcode code = op->a.code;
    switch (r->type) {
    case MK_RESP_END:
        if (is_get(code))
            return (op->a.nkeyset || op->hits) ? 0 : MK_ENOTFOUND;
        return code == MK_OP_STATS ? 0 : MK_EPROTO;
    case MK_RESP_STAT:
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
    case MK_RESP_OK:
        return code == MK_OP_FLUSH_ALL ? 0 : MK_EPROTO;
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

/* Parse what is buffered; read more when needed. */
static int do_read(mk_op *op)
{
    mk_conn *cn = op->conn;
    for (;;) {
        size_t avail = cn->rlen - cn->rpos;
        size_t want = 4096;
        if (avail) {
            const char *p = cn->rbuf + cn->rpos;
            mk_response r;
            ssize_t used = mk_parse_response(p, avail, &r);
            if (used < 0)
                return finish(op, MK_EPROTO);
            if (used > 0 && r.type == MK_RESP_VALUE) {
                if (!is_get(op->a.code) || r.vlen > MAX_VALUE)
                    return finish(op, MK_EPROTO);
                size_t total = (size_t)used + (size_t)r.vlen + 2;
                if (avail >= total) {
                    if (p[total - 2] != '\r' || p[total - 1] != '\n')
                        return finish(op, MK_EPROTO);
                    int rc = on_value(op, &r, p + used);
                    if (rc)
                        return finish(op, rc);
                    cn->rpos += total;
                    continue;
                }
                want = total - avail;
            } else if (used > 0) {
                cn->rpos += (size_t)used;
                int rc = on_reply(op, &r);
                if (rc != 1)
                    return finish(op, rc);
                continue;
            } else if (avail > MAX_LINE) {
                return finish(op, MK_EPROTO);
            }
        }
        if (mk__conn_reserve(cn, want < 4096 ? 4096 : want))
            return finish(op, MK_ENOMEM);
        ssize_t n = recv(cn->fd, cn->rbuf + cn->rlen, cn->rcap - cn->rlen, 0);
        if (n > 0) {
            cn->rlen += (size_t)n;
            continue;
        }
        if (n == 0)
            return finish(op, MK_EIO);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            op->events = POLLIN;
            return MK_EAGAIN;
        }
        return finish(op, MK_EIO);
    }
}

static int do_write(mk_op *op)
{
    const mk_op_args *a = &op->a;
    bool with_value = a->code == MK_OP_STORE;
    size_t total = op->nreq + (with_value ? a->nvalue + 2 : 0);
    while (op->wpos < total) {
        struct iovec iov[3];
        int n = 0;
        size_t off = op->wpos;
        if (off < op->nreq) {
            iov[n++] = (struct iovec){op->req + off, op->nreq - off};
            off = 0;
        } else {
            off -= op->nreq;
        }
        if (with_value) {
            if (off < a->nvalue) {
                iov[n++] = (struct iovec){(char *)a->value + off, a->nvalue - off};
                off = 0;
            } else {
                off -= a->nvalue;
            }
            iov[n++] = (struct iovec){(char *)"\r\n" + off, 2 - off};
        }
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(op->conn->fd, &m, MSG_NOSIGNAL);
        if (w >= 0) {
            op->wpos += (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            op->events = POLLOUT;
            return MK_EAGAIN;
        }
        return finish(op, MK_EIO);
    }
    if (!op->expect_reply) {
        op->conn->unsynced = true;
        return finish(op, 0);
    }
    op->state = ST_READ;
    if (op->blocking) {
        /* A blocking caller (mk__op_run, mk_mget) polls next anyway: the reply has
         * almost never arrived yet, so a recv() now would only return EAGAIN
         * (one wasted syscall per request). Nothing is buffered: the receive
         * buffer was emptied at checkout/connect. */
        op->events = POLLIN;
        return MK_EAGAIN;
    }
    return do_read(op);
}

int mk_op_step(mk_op *op)
{
    if (op == NULL)
        return MK_EINVAL;
    int rc;
    switch (op->state) {
    case ST_CHECKOUT:
        rc = mk__pool_get(op->c, op->s, op->deadline, op->blocking, &op->conn);
        if (rc == MK_EAGAIN) {
            if (mk__now_ms() >= op->deadline)
                return finish(op, MK_EPOOLTIMEOUT);
            op->events = 0;
            return MK_EAGAIN;
        }
        if (rc)
            return finish(op, rc);
        if (op->conn->fd >= 0) {
            op->state = ST_WRITE;
            op->deadline = mk__now_ms() + op->c->opt.io_timeout_ms;
            return do_write(op);
        }
        op->deadline = mk__now_ms() + op->c->opt.connect_timeout_ms;
        rc = mk__conn_connect(op->c, op->s, op->conn);
        if (rc == MK_EAGAIN) {
            op->state = ST_CONNECT;
            op->events = POLLOUT;
            return MK_EAGAIN;
        }
        if (rc)
            return finish(op, rc);
        op->state = ST_WRITE;
        op->deadline = mk__now_ms() + op->c->opt.io_timeout_ms;
        return do_write(op);
    case ST_CONNECT:
        rc = mk__conn_connect_finish(op->conn);
        if (rc == MK_EAGAIN) {
            if (mk__now_ms() >= op->deadline)
                return finish(op, MK_ETIMEDOUT);
            return MK_EAGAIN;
        }
        if (rc)
            return finish(op, rc);
        op->state = ST_WRITE;
        op->deadline = mk__now_ms() + op->c->opt.io_timeout_ms;
        return do_write(op);
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

uint64_t mk_op_number(const mk_op *op)
{
    return op ? op->number : 0;
}

const char *mk_op_text(const mk_op *op)
{
    return op ? op->text : "";
}

void mk_op_destroy(mk_op *op)
{
    if (op == NULL)
        return;
    if (op->conn) {   /* abandoned mid-request: the connection is out of sync */
        mk__conn_close(op->conn);
        mk__pool_put(op->c, op->s, op->conn, false);
    }
    if (op->req != op->small)
        free(op->req);
    mk_item_clear(&op->item);
    free(op);
}

int mk__op_run(mk_op *op)
{
    op->blocking = true;
    int rc;
    while ((rc = mk_op_step(op)) == MK_EAGAIN) {
        struct pollfd p = {mk_op_fd(op), mk_op_events(op), 0};
        if (p.fd < 0)
            continue;   /* cannot happen when blocking: the pool wait is in the step */
        poll(&p, 1, mk_op_timeout_ms(op));
    }
    return rc;
}
