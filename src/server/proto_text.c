/* server/proto_text.c — memcached's classic text protocol on a connection: parse a line, execute it (exec.c), queue its reply. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server/ascii.h"
#include "server/crawler.h"
#include "server/watch.h"
#include "server/tls.h"
#include "server/exec.h"
#include "server/stats_cmd.h"
#include "server/version.h"

static mk_store_op store_op(mk_cmd cmd)
{
    switch (cmd) {
    case MK_CMD_ADD: return MK_STORE_ADD;
    case MK_CMD_REPLACE: return MK_STORE_REPLACE;
    case MK_CMD_APPEND: return MK_STORE_APPEND;
    case MK_CMD_PREPEND: return MK_STORE_PREPEND;
    case MK_CMD_CAS: return MK_STORE_CAS;
    default: return MK_STORE_SET;
    }
}

/* Queue a reply line unless the command said noreply. */
static void reply(mk_conn *c, bool noreply, const char *line)
{
    if (!noreply)
        mk_conn_reply(c, line);
}

/* Reply with a protocol error and do what memcached does next. */
static void reply_perr(mk_conn *c, const mk_request *req)
{
    reply(c, req->noreply, mk_perr_text(req->err));
    switch (req->action) {
    case MK_PA_SWALLOW:
        mk_conn_start_swallow(c, req->swallow);
        break;
    case MK_PA_CLOSE:
        mk_conn_set_state(c, MK_CONN_CLOSING);
        break;
    default:
        break;
    }
}

/* A get hit copied into the reply under the store's lock (mk_cache_read): small values only. */
typedef struct get_copy {
    mk_conn *c;
    mk_str key;
    bool with_cas;
    bool failed; /* no room for the reply: the connection closes */
} get_copy;

/* Queue "VALUE key flags bytes [cas]\r\n", the value and "\r\n" as one append; false: the connection must close. */
static bool queue_value(mk_conn *c, mk_str key, bool with_cas, const mk_item_view *v)
{
    char *p = mk_conn_reserve(c, MK_VALUE_HDR_MAX + v->nbytes + 2);
    if (!p)
        return false;
    size_t n = mk_compose_value_hdr(p, MK_VALUE_HDR_MAX, key, v->flags, v->nbytes, with_cas, v->cas);
    memcpy(p + n, v->data, v->nbytes);
    p[n + v->nbytes] = '\r';
    p[n + v->nbytes + 1] = '\n';
    return mk_conn_commit(c, n + v->nbytes + 2);
}

static bool copy_hit(void *ctx, const mk_item_view *v)
{
    get_copy *g = ctx;
    if (v->nbytes > MK_CONN_INLINE_VALUE_MAX)
        return true; /* large: the reply references the item instead of copying it */
    if (!queue_value(g->c, g->key, g->with_cas, v))
        g->failed = true;
    return false;
}

/* Queue a hit the caller holds a reference to (gat, or a large value); the reference is consumed. */
static bool queue_item(mk_conn *c, mk_str key, bool with_cas, mk_item *it)
{
    mk_cache *cache = c->worker->srv->cache;
    mk_item_view v = {.data = mk_item_data(it), .nbytes = mk_item_nbytes(it), .flags = mk_item_flags(it),
                      .cas = mk_item_cas(it)};
    if (v.nbytes <= MK_CONN_INLINE_VALUE_MAX) {
        bool ok = queue_value(c, key, with_cas, &v);
        mk_item_put(cache, it);
        return ok;
    }
    char hdr[MK_VALUE_HDR_MAX];
    size_t n = mk_compose_value_hdr(hdr, sizeof(hdr), key, v.flags, v.nbytes, with_cas, v.cas);
    if (!mk_conn_out(c, hdr, n)) {
        mk_item_put(cache, it);
        return false;
    }
    return mk_conn_out_value(c, it); /* takes the reference */
}

static void do_get(mk_conn *c, const mk_request *req)
{
    mk_worker *wk = c->worker;
    bool touch = req->cmd == MK_CMD_GAT || req->cmd == MK_CMD_GATS;
    bool with_cas = req->cmd == MK_CMD_GETS || req->cmd == MK_CMD_GATS;
    mk_get_opts o = {.touch = touch, .count_touch = touch,
                     .exp_at = touch ? mk_exptime_to_abs(req->exptime, wk->now) : 0};
    mk_str rest = req->keys, key;
    bool first = true;
    int verbose = __atomic_load_n(&wk->srv->verbosity, __ATOMIC_RELAXED); /* -vv, -vvv: memcached's lines */

    while (mk_next_key(&rest, &key)) {
        if (!first) {
            /* memcached: a response object per key, sent even if the key missed (UDP frames each) */
            mk_conn_resp_keep(c);
            mk_conn_resp_begin(c);
        }
        first = false;
        if (key.n > MK_KEY_MAX) {
            /* memcached "kills stacked responses": this command's VALUEs and every
             * reply queued since its last transmit (after the last get) are dropped */
            mk_conn_out_rollback(c, &c->sent_mark);
            mk_conn_resp_begin(c); /* (the error is a response of its own) */
            reply(c, req->noreply, mk_perr_text(MK_PERR_BAD_FORMAT));
            return;
        }
        mk_item *it = NULL;
        get_copy g = {.c = c, .key = key, .with_cas = with_cas};
        mk_status st = mk_exec_get(wk, key, &o, copy_hit, &g, &it);
        if (g.failed || (st == MK_ST_OK && it && !queue_item(c, key, with_cas, it))) {
            mk_conn_set_state(c, MK_CONN_CLOSING);
            return;
        }
        if (verbose > 2)
            fprintf(stderr, "> %s %.*s\n", st == MK_ST_OK ? "FOUND KEY" : "NOT FOUND", (int)key.n, key.p);
        if (st == MK_ST_OK && verbose > 1)
            fprintf(stderr, ">%d sending key %.*s\n", c->w.fd, (int)key.n, key.p);
    }
    if (verbose > 1)
        fprintf(stderr, ">%d END\n", c->w.fd);
    if (!req->noreply)
        mk_conn_out(c, "END\r\n", 5);
    mk_conn_mark_sent(c);
}

static void do_storage(mk_conn *c, const mk_request *req)
{
    mk_item *it = NULL;
    mk_status st = mk_exec_alloc(c->worker, req->key, req->flags, req->exptime, req->vlen, store_op(req->cmd), &it);
    if (st != MK_ST_OK) {
        reply(c, req->noreply, mk_text_status_line(req->cmd, st));
        mk_conn_start_swallow(c, req->vlen + 2);
        return;
    }
    mk_ascii(c)->text = (mk_text_pending){.cmd = req->cmd, .cas = req->cas, .noreply = req->noreply};
    mk_ascii(c)->meta_nread = false;
    mk_conn_start_nread(c, it);
}

/* The data block of a classic storage command is in: store it and reply. */
static void text_complete_nread(mk_conn *c, mk_item *it, bool tail_ok)
{
    if (mk_ascii(c)->meta_nread) {
        mk_meta_complete_nread(c, it, tail_ok);
        return;
    }
    const mk_text_pending *p = &mk_ascii(c)->text;
    if (!tail_ok) {
        reply(c, p->noreply, mk_text_status_line(p->cmd, mk_exec_store_bad_chunk(c->worker, it)));
        return;
    }
    mk_status st = mk_exec_store(c->worker, it, store_op(p->cmd), p->cas, NULL);
    mk_item_put(c->worker->srv->cache, it);
    reply(c, p->noreply, mk_text_status_line(p->cmd, st));
}

static void do_arith(mk_conn *c, const mk_request *req)
{
    uint64_t result = 0;
    mk_status st = mk_exec_arith(c->worker, req->key, req->cmd == MK_CMD_INCR, req->delta, &result, NULL);
    if (st != MK_ST_OK) {
        reply(c, req->noreply, mk_text_status_line(req->cmd, st));
    } else if (!req->noreply) {
        char buf[24];
        mk_conn_out(c, buf, mk_compose_u64_line(buf, sizeof(buf), result));
    }
}

static void text_dispatch(mk_conn *c, const mk_request *req)
{
    mk_worker *wk = c->worker;
    bool noreply = req->noreply;
    if (mk_cmd_is_storage(req->cmd)) {
        do_storage(c, req);
        return;
    }
    switch (req->cmd) {
    case MK_CMD_GET:
    case MK_CMD_GETS:
    case MK_CMD_GAT:
    case MK_CMD_GATS:
        do_get(c, req);
        break;
    case MK_CMD_DELETE:
        reply(c, noreply, mk_text_status_line(req->cmd, mk_exec_delete(wk, req->key)));
        break;
    case MK_CMD_INCR:
    case MK_CMD_DECR:
        do_arith(c, req);
        break;
    case MK_CMD_TOUCH:
        reply(c, noreply, mk_text_status_line(req->cmd, mk_exec_touch(wk, req->key, req->exptime)));
        break;
    case MK_CMD_FLUSH_ALL:
        if (mk_exec_flush(wk, req->has_arg, req->arg))
            reply(c, noreply, "OK");
        else
            reply(c, false, "CLIENT_ERROR flush_all not allowed");
        break;
    case MK_CMD_VERSION:
        reply(c, noreply, "VERSION " MK_WIRE_VERSION);
        break;
    case MK_CMD_VERBOSITY:
        mk_exec_verbosity(wk, req->arg);
        reply(c, noreply, "OK");
        break;
    case MK_CMD_QUIT:
        mk_conn_resp_keep(c); /* memcached transmits its (empty) response: an empty datagram over UDP */
        mk_conn_set_state(c, MK_CONN_CLOSING);
        break;
    case MK_CMD_STATS:
        mk_stats_command(c, req->args);
        break;
    case MK_CMD_LRU_CRAWLER:
        mk_lru_crawler_command(c, req->args);
        break;
    case MK_CMD_SLABS:
        mk_slabs_command(c, req->args);
        break;
    case MK_CMD_WATCH:
        mk_watch_command(c, req->args);
        break;
    case MK_CMD_CACHE_MEMLIMIT:
        /* memcached's checks and words; memkitd can go down to 8 MB and back up to -m, whose memory it
         * reserved at start (mk_cache_set_limit) */
        if (req->arg < 8)
            reply(c, noreply, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m");
        else if (req->arg > 1000000000)
            reply(c, noreply, "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes");
        else if (!mk_cache_set_limit(wk->srv->cache, (uint64_t)req->arg << 20))
            reply(c, noreply, "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust");
        else {
            if (wk->srv->settings->verbose)
                fprintf(stderr, "maxbytes adjusted to %llum\n", (unsigned long long)req->arg);
            reply(c, noreply, "OK");
        }
        break;
    case MK_CMD_MG:
    case MK_CMD_MS:
    case MK_CMD_MD:
    case MK_CMD_MA:
    case MK_CMD_MN:
    case MK_CMD_ME:
        mk_meta_execute(c, req);
        break;
    case MK_CMD_REFRESH_CERTS: {
        /* memcached's replies: OK, or the reason (the certificates loaded before stay) */
        char err[1024];
        if (!wk->srv->tls)
            mk_conn_reply(c, "Error TLS not enabled"); /* (memcached sends its errors even with noreply) */
        else if (mk_tls_refresh(wk->srv->tls, err, sizeof err))
            reply(c, noreply, "OK");
        else
            mk_conn_reply(c, err);
        break;
    }
    case MK_CMD_SHUTDOWN:
        /* memcached's modes: "shutdown" and "shutdown graceful"; any other word is refused and the
         * server stays up */
        if (!wk->srv->settings->shutdown_enabled)
            mk_conn_reply(c, "ERROR: shutdown not enabled");
        else if (req->args.n != 0 && !(req->args.n == 8 && memcmp(req->args.p, "graceful", 8) == 0))
            mk_conn_reply(c, "CLIENT_ERROR invalid shutdown mode");
        else if (mk_exec_shutdown(wk))
            mk_conn_set_state(c, MK_CONN_CLOSING);
        break;
    default:
        reply(c, noreply, "ERROR");
        break;
    }
}

static bool is_get_family(mk_cmd cmd)
{
    return cmd == MK_CMD_GET || cmd == MK_CMD_GETS || cmd == MK_CMD_GAT || cmd == MK_CMD_GATS;
}

/* Execute one parsed request line (replying to protocol errors as memcached does). */
static void text_execute_request(mk_conn *c, const mk_request *req)
{
    if (req->err == MK_PERR_BAD_FORMAT && is_get_family(req->cmd)) {
        /* a key over 250 bytes: memcached looks up (and for gat touches) the keys
         * before it, then fails; do_get does the same and sends the error */
        do_get(c, req);
        return;
    }
    if (req->err != MK_PERR_NONE) {
        reply_perr(c, req);
        return;
    }
    text_dispatch(c, req);
}

static ssize_t ascii_execute(mk_conn *c, const char *in, size_t len)
{
    mk_request req;
    ssize_t r = mk_parse_request(in, len, &req);
    if (r == -1) /* a fatal line: memcached closes, dropping the replies it had not transmitted */
        mk_conn_out_rollback(c, &c->sent_mark);
    if (r <= 0)
        return r;
    if (__atomic_load_n(&c->worker->srv->verbosity, __ATOMIC_RELAXED) > 1)
        fprintf(stderr, "<%d %.*s\n", c->w.fd, (int)(r > 2 && in[r - 2] == '\r' ? r - 2 : r - 1), in);
    text_execute_request(c, &req);
    return r;
}

static void ascii_out_of_memory(mk_conn *c)
{
    mk_conn_reply(c, "SERVER_ERROR out of memory reading request"); /* memcached's words */
}

const mk_protocol mk_protocol_ascii = {
    .name = "ascii",
    .execute = ascii_execute,
    .complete_nread = text_complete_nread,
    .state_size = sizeof(mk_ascii_state),
    .out_of_memory = ascii_out_of_memory,
};
