/* server/exec.h — protocol-neutral command execution: store semantics and counters, once for every protocol. */
#ifndef MK_SERVER_EXEC_H
#define MK_SERVER_EXEC_H

/*
 *   protocol (proto_text.c, proto_meta.c)        exec (this file)           store
 *   parse a request ──► mk_exec_*(wk, ...) ──► mk_cache_* ──► outcome ──► compose its bytes
 *
 * Every function runs on a worker thread with that worker's handle: it reads the
 * worker's clock, counts into the worker's counters (and "stats detail" when it
 * is on) exactly as memcached counts the command, and returns an mk_status. No
 * function here writes a byte to a connection, so the same set, get or incr has
 * one implementation whatever protocol asked for it.
 */

#include <stdbool.h>
#include <stdint.h>

#include "memkit/proto.h"
#include "server/server.h"

/*
 * memcached's exptime rule: 0 never; up to 30 days, seconds from now; beyond that
 * an absolute unix time; negative, already expired. Returns the absolute expiry
 * (0 = never, a time <= now = expired).
 */
int64_t mk_exptime_to_abs(int64_t exptime, int64_t now);

/* Extra things a lookup may do (meta's mg flags; get/gets need none). */
typedef struct mk_get_opts {
    bool touch;          /* set the expiry to exp_at on a hit (gat, mg T) */
    int64_t exp_at;      /* with touch: absolute expiry, 0 = never */
    bool count_touch;    /* count touch_cmds/hits/misses as well (gat/gats) */
    bool touch_only;     /* with count_touch: count only those (the binary protocol's touch/gat) */
} mk_get_opts;

/*
 * Look up one key and count it (get_cmds, get_hits/get_misses, get_expired,
 * get_flushed; touch counters with count_touch; "stats detail"). On a hit without
 * touch, fn (if not NULL) is first offered the value under the store's lock to copy
 * it (mk_cache_read's contract): if it takes it, *it stays NULL; otherwise *it
 * receives a reference (release with mk_item_put). Returns MK_ST_OK (hit) or
 * MK_ST_NOT_FOUND (miss).
 */
/* "stats detail" is on (then every operation is counted per key prefix). */
static inline bool mk_exec_detail_on(const mk_worker *wk)
{
    return __atomic_load_n(&wk->srv->detail_enabled, __ATOMIC_RELAXED);
}

/* The watched path of mk_exec_get (exec.c): the same, and a "watch fetchers" line. */
mk_status mk_exec_get_watched(mk_worker *wk, mk_str key, const mk_get_opts *o, mk_cache_read_fn fn, void *ctx,
                              mk_item **it);

/* mk_exec_get's work; *rcp: the store's answer (found, missing, expired, flushed). */
static inline mk_status mk_exec_get_rc(mk_worker *wk, mk_str key, const mk_get_opts *o, mk_cache_read_fn fn,
                                       void *ctx, mk_item **it, mk_cache_rc *rcp)
{
    mk_cache *cache = wk->srv->cache;
    mk_thread_stats *ts = &wk->stats;
    mk_cache_rc rc;
    *it = NULL;
    if (o && o->touch)
        rc = mk_cache_gat(cache, key.p, key.n, o->exp_at, wk->now, it);
    else if (fn)
        rc = mk_cache_read(cache, key.p, key.n, wk->now, fn, ctx, it);
    else
        rc = mk_cache_get(cache, key.p, key.n, wk->now, it);
    bool hit = rc == MK_C_OK;
    if (!(o && o->touch_only)) {
        MK_STAT_INC(ts, get_cmds);
        if (hit) {
            MK_STAT_INC(ts, get_hits);
        } else {
            MK_STAT_INC(ts, get_misses);
            if (rc == MK_C_EXPIRED)
                MK_STAT_INC(ts, get_expired);
            else if (rc == MK_C_FLUSHED)
                MK_STAT_INC(ts, get_flushed);
        }
    }
    if (o && o->count_touch) {
        MK_STAT_INC(ts, touch_cmds);
        if (hit)
            MK_STAT_INC(ts, touch_hits);
        else
            MK_STAT_INC(ts, touch_misses);
    }
    if (mk_exec_detail_on(wk))
        mk_server_detail_count(wk->srv, key.p, key.n, 'g', hit);
    *rcp = rc;
    return hit ? MK_ST_OK : MK_ST_NOT_FOUND;
}

/* (inline: it runs for every key of every get) */
static inline mk_status mk_exec_get(mk_worker *wk, mk_str key, const mk_get_opts *o, mk_cache_read_fn fn,
                                    void *ctx, mk_item **it)
{
    if (__builtin_expect(__atomic_load_n(&wk->srv->watch_kinds, __ATOMIC_RELAXED) != 0, 0))
        return mk_exec_get_watched(wk, key, o, fn, ctx, it);
    mk_cache_rc rc;
    return mk_exec_get_rc(wk, key, o, fn, ctx, it, &rc);
}

/*
 * Allocate the item a storage command will fill (exptime as sent on the wire).
 * MK_ST_OK with *it referenced; MK_ST_TOO_LARGE or MK_ST_NO_MEMORY (counted),
 * and then, as memcached does, a failed set unlinks the key's old value so that
 * it cannot be read any more.
 */
mk_status mk_exec_alloc(mk_worker *wk, mk_str key, uint32_t flags, int64_t exptime, uint64_t vlen,
                        mk_store_op op, mk_item **it);

/*
 * Store a filled item (mk_exec_alloc's) with op's semantics (mk_cache_store) and
 * count it (set_cmds, cas_hits/cas_badval/cas_misses, "stats detail"). The caller
 * keeps its reference. *cas (if not NULL) receives the stored item's unique.
 * MK_ST_STORED, MK_ST_NOT_STORED, MK_ST_EXISTS, MK_ST_NOT_FOUND (cas on a
 * missing key), MK_ST_TOO_LARGE or MK_ST_NO_MEMORY (append/prepend).
 */
mk_status mk_exec_store(mk_worker *wk, mk_item *it, mk_store_op op, uint64_t cas_in, uint64_t *cas);

/* A data block that did not end in "\r\n": counts the set and drops the item (consumes the reference). */
mk_status mk_exec_store_bad_chunk(mk_worker *wk, mk_item *it);

/* ---- the meta protocol's operations (proto_meta.c) ---- */

/* An mg lookup: the store's meta options and report (m), and what exec adds. */
typedef struct mk_mget {
    mk_cache_meta m;      /* in: u, T, R; out: h X Z W and the expiry before */
    bool count_touch;     /* T was given: counted as a touch (touch_cmds, touch_hits/misses), not a get */
    bool vivify;          /* N: a miss links an empty item expiring at viv_exp_at and wins */
    int64_t viv_exp_at;
    const uint64_t *ecas; /* E: the unique a vivified item gets (NULL: a fresh one) */
    bool created;         /* out: N made the item (*it is it) */
} mk_mget;

/*
 * mg: look up key as *g asks (mk_cache_mget; fn/ctx/it as in mk_exec_get) and
 * count it as memcached counts mg. MK_ST_OK (hit, or created) or MK_ST_NOT_FOUND.
 */
mk_status mk_exec_mget(mk_worker *wk, mk_str key, mk_mget *g, mk_cache_read_fn fn, void *ctx, mk_item **it);

/*
 * mk_exec_alloc for ms: a failed allocation unlinks the key's old value whatever
 * the mode (memcached's ms). With ecas (meta E) the item's unique is *ecas.
 */
mk_status mk_exec_alloc_any(mk_worker *wk, mk_str key, uint32_t flags, int64_t exptime, uint64_t vlen,
                            const uint64_t *ecas, mk_item **it);

/* mk_exec_store with mk_cache_store_ex's options (MK_STORE_X_*); *nbytes (if not NULL) the stored length. */
mk_status mk_exec_store_ex(mk_worker *wk, mk_item *it, mk_store_op op, uint64_t cas_in, unsigned opts,
                           uint64_t *cas, size_t *nbytes);

/* An md request. */
typedef struct mk_mdelete {
    uint64_t cas_in;       /* C: non-zero must match */
    bool stale;            /* I: mark stale with a new unique instead of deleting */
    bool set_exp;          /* T: with I (or x), the new expiry, exptime as sent */
    int64_t exptime;
    bool remove_value;     /* x: keep the key with an empty value (flags below, expiry T's or none) */
    uint32_t flags;
    const uint64_t *ecas;  /* E: the unique the item gets (with I or x; NULL: x keeps the old one, I makes one) */
} mk_mdelete;

/*
 * md: delete key; with x put an empty value in its place; with stale (also after
 * x) mark it stale with a new unique. MK_ST_DELETED (also for x and a stale mark),
 * MK_ST_NOT_FOUND, MK_ST_EXISTS or MK_ST_NO_MEMORY; counted as memcached counts.
 */
mk_status mk_exec_mdelete(mk_worker *wk, mk_str key, const mk_mdelete *d);

/* An ma request beyond incr/decr's. */
typedef struct mk_marith {
    bool incr;
    uint64_t delta, cas_in;      /* cas_in non-zero must match */
    bool set_exp;                /* T: the item's new expiry (absolute) */
    int64_t exp_at;
    bool vivify;                 /* N: a miss creates the item holding `initial`, expiring at viv_exp_at */
    uint64_t initial;
    int64_t viv_exp_at;
    const uint64_t *ecas;        /* E: the new number's unique (NULL: a fresh one) */
    /* out */
    uint64_t result, cas;
    int64_t exp_before;          /* the expiry before (0 for a created item) */
    bool created;
} mk_marith;

/* ma: MK_ST_OK (a->result, a->cas), MK_ST_NOT_FOUND, MK_ST_EXISTS, MK_ST_NON_NUMERIC, MK_ST_NO_MEMORY; counted. */
mk_status mk_exec_marith(mk_worker *wk, mk_str key, mk_marith *a);

/* delete: MK_ST_DELETED or MK_ST_NOT_FOUND (counted). */
mk_status mk_exec_delete(mk_worker *wk, mk_str key);

/* delete only if cas_in (non-zero) matches: also MK_ST_EXISTS (not counted, as memcached's binary delete). */
mk_status mk_exec_delete_cas(mk_worker *wk, mk_str key, uint64_t cas_in);

/*
 * incr/decr by delta (mk_cache_arith's rules), counted. MK_ST_OK with *result
 * (and *cas if not NULL), MK_ST_NOT_FOUND, MK_ST_NON_NUMERIC or MK_ST_NO_MEMORY.
 */
mk_status mk_exec_arith(mk_worker *wk, mk_str key, bool incr, uint64_t delta, uint64_t *result, uint64_t *cas);

/* touch (exptime as sent), counted: MK_ST_TOUCHED or MK_ST_NOT_FOUND. */
mk_status mk_exec_touch(mk_worker *wk, mk_str key, int64_t exptime);

/*
 * flush_all, with a delay as sent on the wire (has_arg false: none). False when
 * flush_all is disabled (-F): nothing happens and nothing is counted.
 */
bool mk_exec_flush(mk_worker *wk, bool has_arg, int64_t arg);

/* verbosity: clamp to 0..10 and set it. */
void mk_exec_verbosity(mk_worker *wk, int64_t level);

/* shutdown: false when not enabled (-A); otherwise the server starts stopping. */
bool mk_exec_shutdown(mk_worker *wk);

#endif
