/* server/exec.c — protocol-neutral command execution against the store, with memcached's counters. */
#include "server/exec.h"
#include "server/watch.h"

#include <inttypes.h>
#include <stdio.h>

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

/* mk_cache_alloc, or mk_cache_alloc_cas with an explicit unique (ecas not NULL). */
static inline mk_cache_rc alloc_e(mk_cache *cache, mk_str key, uint32_t flags, int64_t exp_at, size_t n,
                                  const uint64_t *ecas, int64_t now, mk_item **it)
{
    if (ecas)
        return mk_cache_alloc_cas(cache, key.p, key.n, flags, exp_at, n, *ecas, now, it);
    return mk_cache_alloc(cache, key.p, key.n, flags, exp_at, n, now, it);
}

static inline mk_status alloc_item(mk_worker *wk, mk_str key, uint32_t flags, int64_t exptime, uint64_t vlen,
                                   bool unlink_on_fail, const uint64_t *ecas, mk_item **it)
{
    mk_cache *cache = wk->srv->cache;
    *it = NULL;
    mk_cache_rc rc = vlen > SIZE_MAX - 2 ? MK_C_TOO_LARGE
                                         : alloc_e(cache, key, flags, mk_exptime_to_abs(exptime, wk->now),
                                                   (size_t)vlen, ecas, wk->now, it);
    if (rc == MK_C_OK)
        return MK_ST_OK;
    /* memcached: a failed set must not leave the old value readable */
    if (unlink_on_fail)
        mk_cache_unlink(cache, key.p, key.n);
    if (rc == MK_C_TOO_LARGE) {
        MK_STAT_INC(&wk->stats, store_too_large);
        return MK_ST_TOO_LARGE;
    }
    MK_STAT_INC(&wk->stats, store_no_memory);
    return MK_ST_NO_MEMORY;
}

mk_status mk_exec_alloc(mk_worker *wk, mk_str key, uint32_t flags, int64_t exptime, uint64_t vlen,
                        mk_store_op op, mk_item **it)
{
    return alloc_item(wk, key, flags, exptime, vlen, op == MK_STORE_SET, NULL, it);
}

mk_status mk_exec_alloc_any(mk_worker *wk, mk_str key, uint32_t flags, int64_t exptime, uint64_t vlen,
                            const uint64_t *ecas, mk_item **it)
{
    return alloc_item(wk, key, flags, exptime, vlen, true, ecas, it);
}

/* A hit copied out by the caller's fn: its size for the watch line, then fn. */
typedef struct watched_read {
    mk_cache_read_fn fn;
    void *ctx;
    size_t nbytes;
    unsigned cls;
    mk_cache *cache;
} watched_read;

static bool watched_fn(void *p, const mk_item_view *v)
{
    watched_read *w = p;
    w->nbytes = v->nbytes;
    return w->fn(w->ctx, v);
}

mk_status mk_exec_get_watched(mk_worker *wk, mk_str key, const mk_get_opts *o, mk_cache_read_fn fn, void *ctx,
                              mk_item **it)
{
    watched_read w = {fn, ctx, 0, 0, wk->srv->cache};
    mk_cache_rc rc;
    mk_status st = mk_exec_get_rc(wk, key, o, fn ? watched_fn : NULL, &w, it, &rc);
    if (mk_watching(wk->srv, MK_WATCH_FETCHERS)) {
        /* memcached's item_get statuses; a hit copied out (no reference kept) gets its class from its sizes */
        static const char *const status[] = {[MK_C_OK] = "found", [MK_C_MISS] = "not_found",
                                             [MK_C_EXPIRED] = "expired", [MK_C_FLUSHED] = "flushed"};
        const char *s = rc <= MK_C_FLUSHED && status[rc] ? status[rc] : "not_found";
        size_t n = *it ? mk_item_nbytes(*it) : w.nbytes;
        unsigned cls = *it ? mk_cache_item_class(wk->srv->cache, *it)
                     : rc == MK_C_OK ? mk_cache_class_for(wk->srv->cache, key.n, n) : 0;
        mk_watch_fetch(wk, key, s, cls, rc == MK_C_OK ? n : 0);
    }
    return st;
}

/* "watch mutations": memcached's item_store line for a store's outcome. */
static void watch_store(mk_worker *wk, mk_item *it, mk_store_op op, mk_cache_rc rc)
{
    const char *st = rc == MK_C_OK ? "stored" : rc == MK_C_EXISTS ? "exists" : rc == MK_C_NOT_FOUND ? "not_found"
                   : rc == MK_C_TOO_LARGE ? "too_large" : rc == MK_C_NO_MEMORY ? "no_memory" : "not_stored";
    static const char *const cmd[] = {[MK_STORE_SET] = "set", [MK_STORE_ADD] = "add", [MK_STORE_REPLACE] = "replace",
                                      [MK_STORE_APPEND] = "append", [MK_STORE_PREPEND] = "prepend",
                                      [MK_STORE_CAS] = "cas"};
    int64_t exp = mk_item_exp_at(it);
    mk_watch_store(wk, (mk_str){mk_item_key(it), mk_item_nkey(it)}, st,
                   (unsigned)op < sizeof cmd / sizeof cmd[0] && cmd[op] ? cmd[op] : "na", exp ? exp - wk->now : 0,
                   mk_cache_item_class(wk->srv->cache, it), mk_item_nbytes(it));
}

static inline mk_status store_item(mk_worker *wk, mk_item *it, mk_store_op op, uint64_t cas_in, unsigned opts,
                                   uint64_t *cas, size_t *nbytes)
{
    mk_thread_stats *ts = &wk->stats;
    uint64_t ncas = 0;
    MK_STAT_INC(ts, set_cmds);
    mk_cache_rc rc = mk_cache_store_ex(wk->srv->cache, it, op, cas_in, opts, wk->now, &ncas, nbytes);
    if (mk_watching(wk->srv, MK_WATCH_MUTATIONS))
        watch_store(wk, it, op, rc);
    if (mk_exec_detail_on(wk))
        mk_server_detail_count(wk->srv, mk_item_key(it), mk_item_nkey(it), 's', true);
    if (cas)
        *cas = rc == MK_C_OK ? ncas : 0;
    switch (rc) {
    case MK_C_OK:
        if (op == MK_STORE_CAS)
            MK_STAT_INC(ts, cas_hits);
        return MK_ST_STORED;
    case MK_C_EXISTS:
        MK_STAT_INC(ts, cas_badval);
        return MK_ST_EXISTS;
    case MK_C_NOT_FOUND:
        MK_STAT_INC(ts, cas_misses);
        return MK_ST_NOT_FOUND;
    case MK_C_TOO_LARGE:
        /* an append or prepend that would pass -I: memcached's NOT_STORED (its new item cannot be
         * allocated), where a value too large on its own is refused when it arrives */
        if (op == MK_STORE_APPEND || op == MK_STORE_PREPEND)
            return MK_ST_NOT_STORED;
        MK_STAT_INC(ts, store_too_large);
        return MK_ST_TOO_LARGE;
    case MK_C_NO_MEMORY:
        MK_STAT_INC(ts, store_no_memory);
        return MK_ST_NO_MEMORY;
    default:
        return MK_ST_NOT_STORED;
    }
}

mk_status mk_exec_store(mk_worker *wk, mk_item *it, mk_store_op op, uint64_t cas_in, uint64_t *cas)
{
    return store_item(wk, it, op, cas_in, 0, cas, NULL);
}

mk_status mk_exec_store_ex(mk_worker *wk, mk_item *it, mk_store_op op, uint64_t cas_in, unsigned opts,
                           uint64_t *cas, size_t *nbytes)
{
    return store_item(wk, it, op, cas_in, opts, cas, nbytes);
}

mk_status mk_exec_store_bad_chunk(mk_worker *wk, mk_item *it)
{
    MK_STAT_INC(&wk->stats, set_cmds);
    mk_item_put(wk->srv->cache, it);
    return MK_ST_BAD_CHUNK;
}

mk_status mk_exec_delete(mk_worker *wk, mk_str key)
{
    return mk_exec_delete_cas(wk, key, 0);
}

mk_status mk_exec_delete_cas(mk_worker *wk, mk_str key, uint64_t cas_in)
{
    mk_cache_rc rc = cas_in ? mk_cache_delete_cas(wk->srv->cache, key.p, key.n, cas_in, wk->now)
                            : mk_cache_delete(wk->srv->cache, key.p, key.n, wk->now);
    if (rc == MK_C_EXISTS)
        return MK_ST_EXISTS; /* (memcached counts neither a hit nor a miss) */
    if (rc == MK_C_OK)
        MK_STAT_INC(&wk->stats, delete_hits);
    else
        MK_STAT_INC(&wk->stats, delete_misses);
    if (mk_exec_detail_on(wk))
        mk_server_detail_count(wk->srv, key.p, key.n, 'd', rc == MK_C_OK);
    return rc == MK_C_OK ? MK_ST_DELETED : MK_ST_NOT_FOUND;
}

mk_status mk_exec_arith(mk_worker *wk, mk_str key, bool incr, uint64_t delta, uint64_t *result, uint64_t *cas)
{
    mk_thread_stats *ts = &wk->stats;
    mk_cache_rc rc = mk_cache_arith(wk->srv->cache, key.p, key.n, incr, delta, wk->now, result, cas);
    switch (rc) {
    case MK_C_OK:
        if (incr)
            MK_STAT_INC(ts, incr_hits);
        else
            MK_STAT_INC(ts, decr_hits);
        return MK_ST_OK;
    case MK_C_NON_NUMERIC:
        return MK_ST_NON_NUMERIC;
    case MK_C_NO_MEMORY:
        return MK_ST_NO_MEMORY;
    default:
        if (incr)
            MK_STAT_INC(ts, incr_misses);
        else
            MK_STAT_INC(ts, decr_misses);
        return MK_ST_NOT_FOUND;
    }
}

mk_status mk_exec_touch(mk_worker *wk, mk_str key, int64_t exptime)
{
    mk_thread_stats *ts = &wk->stats;
    mk_cache_rc rc = mk_cache_touch(wk->srv->cache, key.p, key.n, mk_exptime_to_abs(exptime, wk->now), wk->now);
    MK_STAT_INC(ts, touch_cmds);
    if (rc == MK_C_OK) {
        MK_STAT_INC(ts, touch_hits);
        return MK_ST_TOUCHED;
    }
    MK_STAT_INC(ts, touch_misses);
    return MK_ST_NOT_FOUND;
}

bool mk_exec_flush(mk_worker *wk, bool has_arg, int64_t arg)
{
    mk_server *srv = wk->srv;
    if (!srv->settings->flush_enabled)
        return false;
    MK_STAT_INC(&wk->stats, flush_cmds);
    /* memcached's realtime(): an absolute time at or before the server's start (which it dates 62 s
     * early) becomes "1 second after start", and a flush to then flushes nothing. (A script that
     * sends a computed, stale timestamp must not wipe the cache.) */
    if (has_arg && arg > 60 * 60 * 24 * 30 && arg <= srv->started - 62)
        return true;
    int64_t delay = 0;
    if (has_arg && arg > 0) {
        delay = mk_exptime_to_abs(arg, wk->now) - wk->now;
        if (delay < 0)
            delay = 0;
    }
    mk_cache_flush(srv->cache, wk->now, delay);
    return true;
}

void mk_exec_verbosity(mk_worker *wk, int64_t level)
{
    __atomic_store_n(&wk->srv->verbosity, (int)(level > 10 ? 10 : level < 0 ? 0 : level), __ATOMIC_RELAXED);
}

bool mk_exec_shutdown(mk_worker *wk)
{
    if (!wk->srv->settings->shutdown_enabled)
        return false;
    mk_server_stop(wk->srv);
    return true;
}

mk_status mk_exec_mget(mk_worker *wk, mk_str key, mk_mget *g, mk_cache_read_fn fn, void *ctx, mk_item **it)
{
    mk_cache *cache = wk->srv->cache;
    mk_thread_stats *ts = &wk->stats;
    g->created = false;
    mk_cache_rc rc = mk_cache_mget(cache, key.p, key.n, wk->now, &g->m, fn, ctx, it);
    while (rc != MK_C_OK && g->vivify) {
        /* N: the first to miss links an empty placeholder and wins the right to fill it */
        mk_item *viv;
        if (alloc_e(cache, key, 0, g->viv_exp_at, 0, g->ecas, wk->now, &viv) != MK_C_OK)
            break;
        /* the lookup that made it fetched it (unless u), as memcached's delayed bump does */
        mk_item_set_meta(viv, MK_ITEM_WON | (g->m.no_bump ? 0 : MK_ITEM_FETCHED));
        mk_cache_rc src = mk_cache_store(cache, viv, MK_STORE_ADD, 0, wk->now, NULL);
        if (src == MK_C_OK) {
            g->created = true;
            g->m.fetched = g->m.stale = g->m.token_sent = g->m.key_binary = false;
            g->m.win = true;
            g->m.exp_before = 0;
            g->m.stored_at = wk->now;
            *it = viv;
            rc = MK_C_OK;
            break;
        }
        mk_item_put(cache, viv);
        if (src != MK_C_NOT_STORED)
            break;
        rc = mk_cache_mget(cache, key.p, key.n, wk->now, &g->m, fn, ctx, it); /* someone else made it */
    }
    bool hit = rc == MK_C_OK;
    if (rc == MK_C_EXPIRED)
        MK_STAT_INC(ts, get_expired);
    else if (rc == MK_C_FLUSHED)
        MK_STAT_INC(ts, get_flushed);
    if (g->count_touch) {
        MK_STAT_INC(ts, touch_cmds);
        if (hit)
            MK_STAT_INC(ts, touch_hits);
        else
            MK_STAT_INC(ts, touch_misses);
    } else {
        MK_STAT_INC(ts, get_cmds);
        if (hit)
            MK_STAT_INC(ts, get_hits);
        else
            MK_STAT_INC(ts, get_misses);
    }
    return hit ? MK_ST_OK : MK_ST_NOT_FOUND;
}

/*
 * md x: put an empty value with d's flags and expiry (none without T) in place of
 * the item, keeping its unique unless E gives one. MK_C_OK, MK_C_MISS, MK_C_EXISTS
 * (cas_in did not match) or MK_C_NO_MEMORY; *cas receives the tombstone's unique.
 */
static mk_cache_rc tombstone(mk_worker *wk, mk_str key, const mk_mdelete *d, uint64_t *cas)
{
    mk_cache *cache = wk->srv->cache;
    int64_t exp_at = d->set_exp ? mk_exptime_to_abs(d->exptime, wk->now) : 0;
    for (;;) {
        mk_cache_peek pk;
        if (mk_cache_peek_item(cache, key.p, key.n, wk->now, &pk) != MK_C_OK)
            return MK_C_MISS;
        if (d->cas_in != 0 && pk.cas != d->cas_in)
            return MK_C_EXISTS;
        uint64_t unique = d->ecas ? *d->ecas : pk.cas;
        mk_item *it;
        mk_cache_rc rc = mk_cache_alloc_cas(cache, key.p, key.n, d->flags, exp_at, 0, unique, wk->now, &it);
        if (rc != MK_C_OK)
            return MK_C_NO_MEMORY;
        /* in place of the item we looked at and no other: by its unique when the cache keeps them */
        rc = mk_cache_store(cache, it, pk.cas ? MK_STORE_CAS : MK_STORE_REPLACE, pk.cas, wk->now, cas);
        mk_item_put(cache, it);
        if (rc == MK_C_OK)
            return MK_C_OK;
        if (rc == MK_C_TOO_LARGE || rc == MK_C_NO_MEMORY)
            return MK_C_NO_MEMORY;
        /* it changed or went meanwhile: look again */
    }
}

mk_status mk_exec_mdelete(mk_worker *wk, mk_str key, const mk_mdelete *d)
{
    mk_cache *cache = wk->srv->cache;
    uint64_t cas_in = d->cas_in;
    mk_cache_rc rc = MK_C_OK;
    if (d->remove_value) {
        uint64_t ncas = 0;
        rc = tombstone(wk, key, d, &ncas);
        cas_in = ncas;
    }
    if (rc == MK_C_OK && d->stale)
        rc = mk_cache_invalidate(cache, key.p, key.n, cas_in, d->set_exp, mk_exptime_to_abs(d->exptime, wk->now),
                                 d->ecas, wk->now, NULL);
    else if (rc == MK_C_OK && !d->remove_value)
        rc = mk_cache_delete_cas(cache, key.p, key.n, cas_in, wk->now);
    switch (rc) {
    case MK_C_OK:
        if (!d->stale)
            MK_STAT_INC(&wk->stats, delete_hits);
        return MK_ST_DELETED;
    case MK_C_EXISTS:
        MK_STAT_INC(&wk->stats, delete_misses);
        return MK_ST_EXISTS;
    case MK_C_NO_MEMORY:
        return MK_ST_NO_MEMORY;
    default:
        MK_STAT_INC(&wk->stats, delete_misses);
        return MK_ST_NOT_FOUND;
    }
}

mk_status mk_exec_marith(mk_worker *wk, mk_str key, mk_marith *a)
{
    mk_cache *cache = wk->srv->cache;
    mk_thread_stats *ts = &wk->stats;
    a->created = false;
    for (int tries = 0;; tries++) {
        mk_cache_rc rc = mk_cache_arith_ex(cache, key.p, key.n, a->incr, a->delta, a->cas_in, a->set_exp, a->exp_at,
                                           a->ecas, wk->now, &a->result, &a->cas, &a->exp_before);
        switch (rc) {
        case MK_C_OK:
            if (a->incr)
                MK_STAT_INC(ts, incr_hits);
            else
                MK_STAT_INC(ts, decr_hits);
            return MK_ST_OK;
        case MK_C_EXISTS:
            return MK_ST_EXISTS;
        case MK_C_NON_NUMERIC:
            return MK_ST_NON_NUMERIC;
        case MK_C_NO_MEMORY:
            return MK_ST_NO_MEMORY;
        default:
            break;
        }
        if (!a->vivify || tries > 0) {
            if (a->incr)
                MK_STAT_INC(ts, incr_misses);
            else
                MK_STAT_INC(ts, decr_misses);
            return MK_ST_NOT_FOUND;
        }
        /* N: create the counter at its initial value */
        char num[24];
        int n = snprintf(num, sizeof(num), "%" PRIu64, a->initial);
        mk_item *it;
        if (alloc_e(cache, key, 0, a->viv_exp_at, (size_t)n, a->ecas, wk->now, &it) != MK_C_OK)
            return MK_ST_NO_MEMORY;
        mk_item_write(it, 0, num, (size_t)n);
        rc = mk_cache_store(cache, it, MK_STORE_ADD, 0, wk->now, &a->cas);
        mk_item_put(cache, it);
        if (rc == MK_C_OK) {
            a->created = true;
            a->result = a->initial;
            a->exp_before = 0;
            return MK_ST_OK;
        }
        /* made by someone else meanwhile: apply the delta to theirs */
    }
}
