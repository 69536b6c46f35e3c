/* server/dispatch.c — executes parsed text-protocol commands against the store and queues memcached's replies. */
#include "server/dispatch.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server/conn.h"
#include "server/stats_cmd.h"
#include "server/version.h"

#define REALTIME_MAXDELTA (60 * 60 * 24 * 30) /* exptimes above this are absolute unix times */

int64_t mk_exptime_to_abs(int64_t exptime, int64_t now)
{
    if (exptime == 0)
        return 0;
    if (exptime < 0)
        return 1; /* long past: already expired */
    if (exptime > REALTIME_MAXDELTA)
        return exptime <= 1 ? 1 : exptime;
    return now + exptime;
}

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

/* Reply with a protocol error and do what memcached does next. */
static void reply_perr(mk_conn *c, const mk_request *req)
{
    mk_conn_reply(c, mk_perr_text(req->err));
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

/* Adds one get/gat command's keys and hits to the worker's counters (gat/gats count as touches too). */
static void count_gets(mk_thread_stats *ts, bool touch, uint64_t nkeys, uint64_t hits)
{
    MK_STAT_ADD(ts, get_cmds, nkeys);
    MK_STAT_ADD(ts, get_hits, hits);
    MK_STAT_ADD(ts, get_misses, nkeys - hits);
    if (touch) {
        MK_STAT_ADD(ts, touch_cmds, nkeys);
        MK_STAT_ADD(ts, touch_hits, hits);
        MK_STAT_ADD(ts, touch_misses, nkeys - hits);
    }
}

static void do_get(mk_conn *c, const mk_request *req)
{
    mk_server *srv = c->worker->srv;
    mk_thread_stats *ts = &c->worker->stats;
    bool touch = req->cmd == MK_CMD_GAT || req->cmd == MK_CMD_GATS;
    bool with_cas = req->cmd == MK_CMD_GETS || req->cmd == MK_CMD_GATS;
    int64_t now = c->worker->now;
    int64_t exp_at = touch ? mk_exptime_to_abs(req->exptime, now) : 0;
    bool detail = __atomic_load_n(&srv->detail_enabled, __ATOMIC_RELAXED);
    mk_str rest = req->keys, key;
    uint64_t nkeys = 0, hits = 0; /* added to the counters once, at the end */

    while (mk_next_key(&rest, &key)) {
        if (key.n > MK_KEY_MAX) {
            /* memcached "kills stacked responses": this command's VALUEs and every
             * reply queued since its last transmit (after the last get) are dropped */
            count_gets(ts, touch, nkeys, hits);
            mk_conn_out_rollback(c, &c->sent_mark);
            mk_conn_reply(c, mk_perr_text(MK_PERR_BAD_FORMAT));
            return;
        }
        mk_item *it = NULL;
        mk_cache_rc rc;
        if (touch) {
            rc = mk_cache_gat(srv->cache, key.p, key.n, exp_at, now, &it);
        } else {
            get_copy g = {.c = c, .key = key, .with_cas = with_cas};
            rc = mk_cache_read(srv->cache, key.p, key.n, now, copy_hit, &g, &it);
            if (g.failed) {
                mk_conn_set_state(c, MK_CONN_CLOSING);
                nkeys++, hits++;
                goto out;
            }
        }
        nkeys++;
        if (rc == MK_C_OK) {
            hits++;
            if (it && !queue_item(c, key, with_cas, it)) {
                mk_conn_set_state(c, MK_CONN_CLOSING);
                goto out;
            }
        } else if (rc == MK_C_EXPIRED) {
            MK_STAT_INC(ts, get_expired);
        } else if (rc == MK_C_FLUSHED) {
            MK_STAT_INC(ts, get_flushed);
        }
        if (detail)
            mk_server_detail_count(srv, key.p, key.n, 'g', rc == MK_C_OK);
    }
    if (!c->noreply)
        mk_conn_out(c, "END\r\n", 5);
    mk_conn_mark_sent(c);
out:
    count_gets(ts, touch, nkeys, hits);
}

static void do_storage(mk_conn *c, const mk_request *req)
{
    mk_server *srv = c->worker->srv;
    int64_t now = c->worker->now;
    mk_item *it = NULL;
    mk_cache_rc rc = mk_cache_alloc(srv->cache, req->key.p, req->key.n, req->flags,
                                    mk_exptime_to_abs(req->exptime, now), req->vlen, now, &it);
    if (rc != MK_C_OK) {
        if (rc == MK_C_TOO_LARGE) {
            MK_STAT_INC(&c->worker->stats, store_too_large);
            mk_conn_reply(c, mk_perr_text(MK_PERR_TOO_LARGE));
        } else {
            MK_STAT_INC(&c->worker->stats, store_no_memory);
            mk_conn_reply(c, mk_perr_text(MK_PERR_OUT_OF_MEMORY));
        }
        /* memcached: a failed set must not leave the old value readable */
        if (req->cmd == MK_CMD_SET)
            mk_cache_unlink(srv->cache, req->key.p, req->key.n);
        mk_conn_start_swallow(c, req->vlen + 2);
        return;
    }
    mk_conn_start_nread(c, it, req->cmd, req->cas, req->noreply);
}

void mk_dispatch_complete_nread(mk_conn *c)
{
    mk_server *srv = c->worker->srv;
    mk_thread_stats *ts = &c->worker->stats;
    mk_item *it = c->nitem;
    c->nitem = NULL;
    c->noreply = c->nnoreply;
    MK_STAT_INC(ts, set_cmds);
    if (c->ntail[0] != '\r' || c->ntail[1] != '\n') {
        mk_conn_reply(c, mk_perr_text(MK_PERR_BAD_DATA_CHUNK));
        mk_item_put(srv->cache, it);
        c->noreply = false;
        return;
    }
    uint64_t cas = 0;
    mk_cache_rc rc = mk_cache_store(srv->cache, it, store_op(c->ncmd), c->ncas, c->worker->now, &cas);
    if (__atomic_load_n(&srv->detail_enabled, __ATOMIC_RELAXED))
        mk_server_detail_count(srv, mk_item_key(it), mk_item_nkey(it), 's', true);
    mk_item_put(srv->cache, it);
    const char *reply;
    switch (rc) {
    case MK_C_OK:
        reply = "STORED";
        if (c->ncmd == MK_CMD_CAS)
            MK_STAT_INC(ts, cas_hits);
        break;
    case MK_C_EXISTS:
        reply = "EXISTS";
        MK_STAT_INC(ts, cas_badval);
        break;
    case MK_C_NOT_FOUND:
        reply = "NOT_FOUND";
        MK_STAT_INC(ts, cas_misses);
        break;
    case MK_C_TOO_LARGE:
        reply = mk_perr_text(MK_PERR_TOO_LARGE);
        MK_STAT_INC(ts, store_too_large);
        break;
    case MK_C_NO_MEMORY:
        reply = mk_perr_text(MK_PERR_OUT_OF_MEMORY);
        MK_STAT_INC(ts, store_no_memory);
        break;
    default:
        reply = "NOT_STORED";
        break;
    }
    mk_conn_reply(c, reply);
    c->noreply = false;
}

static void do_delete(mk_conn *c, const mk_request *req)
{
    mk_server *srv = c->worker->srv;
    mk_cache_rc rc = mk_cache_delete(srv->cache, req->key.p, req->key.n, c->worker->now);
    if (rc == MK_C_OK) {
        MK_STAT_INC(&c->worker->stats, delete_hits);
        mk_conn_reply(c, "DELETED");
    } else {
        MK_STAT_INC(&c->worker->stats, delete_misses);
        mk_conn_reply(c, "NOT_FOUND");
    }
    if (__atomic_load_n(&srv->detail_enabled, __ATOMIC_RELAXED))
        mk_server_detail_count(srv, req->key.p, req->key.n, 'd', rc == MK_C_OK);
}

static void do_arith(mk_conn *c, const mk_request *req)
{
    mk_thread_stats *ts = &c->worker->stats;
    bool incr = req->cmd == MK_CMD_INCR;
    uint64_t result = 0;
    mk_cache_rc rc = mk_cache_arith(c->worker->srv->cache, req->key.p, req->key.n, incr,
                                    req->delta, c->worker->now, &result, NULL);
    switch (rc) {
    case MK_C_OK: {
        if (incr)
            MK_STAT_INC(ts, incr_hits);
        else
            MK_STAT_INC(ts, decr_hits);
        if (!c->noreply) {
            char buf[24];
            size_t n = mk_compose_u64_line(buf, sizeof(buf), result);
            mk_conn_out(c, buf, n);
        }
        break;
    }
    case MK_C_NON_NUMERIC:
        mk_conn_reply(c, "CLIENT_ERROR cannot increment or decrement non-numeric value");
        break;
    case MK_C_NO_MEMORY:
        mk_conn_reply(c, "SERVER_ERROR out of memory");
        break;
    default:
        if (incr)
            MK_STAT_INC(ts, incr_misses);
        else
            MK_STAT_INC(ts, decr_misses);
        mk_conn_reply(c, "NOT_FOUND");
        break;
    }
}

static void do_touch(mk_conn *c, const mk_request *req)
{
    mk_thread_stats *ts = &c->worker->stats;
    int64_t now = c->worker->now;
    mk_cache_rc rc = mk_cache_touch(c->worker->srv->cache, req->key.p, req->key.n,
                                    mk_exptime_to_abs(req->exptime, now), now);
    MK_STAT_INC(ts, touch_cmds);
    if (rc == MK_C_OK) {
        MK_STAT_INC(ts, touch_hits);
        mk_conn_reply(c, "TOUCHED");
    } else {
        MK_STAT_INC(ts, touch_misses);
        mk_conn_reply(c, "NOT_FOUND");
    }
}

static void do_flush_all(mk_conn *c, const mk_request *req)
{
    mk_server *srv = c->worker->srv;
    if (!srv->settings->flush_enabled) {
        c->noreply = false;
        mk_conn_reply(c, "CLIENT_ERROR flush_all not allowed");
        return;
    }
    MK_STAT_INC(&c->worker->stats, flush_cmds);
    int64_t now = c->worker->now;
    int64_t delay = 0;
    if (req->has_arg && req->arg > 0) {
        delay = mk_exptime_to_abs(req->arg, now) - now;
        if (delay < 0)
            delay = 0;
    }
    mk_cache_flush(srv->cache, now, delay);
    mk_conn_reply(c, "OK");
}

static void do_verbosity(mk_conn *c, const mk_request *req)
{
    __atomic_store_n(&c->worker->srv->verbosity, (int)(req->arg > 10 ? 10 : req->arg < 0 ? 0 : req->arg),
                     __ATOMIC_RELAXED);
    mk_conn_reply(c, "OK");
}

static void do_shutdown(mk_conn *c, const mk_request *req)
{
    mk_server *srv = c->worker->srv;
    (void)req;
    if (!srv->settings->shutdown_enabled) {
        mk_conn_reply(c, "ERROR: shutdown not enabled");
        return;
    }
    mk_server_stop(srv);
    mk_conn_set_state(c, MK_CONN_CLOSING);
}

static bool is_get_family(mk_cmd cmd)
{
    return cmd == MK_CMD_GET || cmd == MK_CMD_GETS || cmd == MK_CMD_GAT || cmd == MK_CMD_GATS;
}

void mk_dispatch(mk_conn *c, mk_request *req)
{
    c->noreply = req->noreply;
    if (req->err == MK_PERR_BAD_FORMAT && is_get_family(req->cmd)) {
        /* a key over 250 bytes: memcached looks up (and for gat touches) the keys
         * before it, then fails; do_get does the same and sends the error */
        do_get(c, req);
        return;
    }
    if (req->err != MK_PERR_NONE) {
        reply_perr(c, req);
        c->noreply = false;
        return;
    }
    switch (req->cmd) {
    case MK_CMD_GET:
    case MK_CMD_GETS:
    case MK_CMD_GAT:
    case MK_CMD_GATS:
        do_get(c, req);
        break;
    case MK_CMD_SET:
    case MK_CMD_ADD:
    case MK_CMD_REPLACE:
    case MK_CMD_APPEND:
    case MK_CMD_PREPEND:
    case MK_CMD_CAS:
        do_storage(c, req);
        break;
    case MK_CMD_DELETE:
        do_delete(c, req);
        break;
    case MK_CMD_INCR:
    case MK_CMD_DECR:
        do_arith(c, req);
        break;
    case MK_CMD_TOUCH:
        do_touch(c, req);
        break;
    case MK_CMD_FLUSH_ALL:
        do_flush_all(c, req);
        break;
    case MK_CMD_VERSION:
        mk_conn_reply(c, "VERSION " MK_WIRE_VERSION);
        break;
    case MK_CMD_VERBOSITY:
        do_verbosity(c, req);
        break;
    case MK_CMD_QUIT:
        mk_conn_set_state(c, MK_CONN_CLOSING);
        break;
    case MK_CMD_STATS:
        mk_stats_command(c, req->args);
        break;
    case MK_CMD_SHUTDOWN:
        do_shutdown(c, req);
        break;
    default:
        mk_conn_reply(c, "ERROR");
        break;
    }
    c->noreply = false;
}
