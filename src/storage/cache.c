/* storage/cache.c — the cache handle (create/destroy) and the key operations: get, gat, alloc, store, delete, touch, unlink. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "storage/internal.h"

#define DEFAULT_NSHARDS 64
#define DEFAULT_HASHPOWER 16
#define DEFAULT_ITEM_SIZE_MAX (1024 * 1024)
#define MAX_SHARD_BITS 16

static unsigned log2_ceil(unsigned long long n)
{
    unsigned b = 0;
    while ((1ULL << b) < n)
        b++;
    return b;
}

mk_cache *mk_cache_create(const mk_cache_config *cfg)
{
    if (!cfg || cfg->mem_limit == 0)
        return NULL;
    mk_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->mem_fd = -1;
    if (c->cfg.item_size_max == 0)
        c->cfg.item_size_max = DEFAULT_ITEM_SIZE_MAX;
    if (c->cfg.item_size_max > UINT32_MAX)
        c->cfg.item_size_max = UINT32_MAX;
    c->shard_bits = log2_ceil(cfg->nshards ? cfg->nshards : DEFAULT_NSHARDS);
    if (c->shard_bits > MAX_SHARD_BITS)
        c->shard_bits = MAX_SHARD_BITS;
    c->cfg.nshards = 1u << c->shard_bits;
    if (c->cfg.hashpower == 0)
        c->cfg.hashpower = DEFAULT_HASHPOWER;
    if (c->cfg.hashpower > 32)
        c->cfg.hashpower = 32;
    /* Split the requested slot count over the shards, at least 16 slots each. */
    unsigned power = c->cfg.hashpower > c->shard_bits + 4 ? c->cfg.hashpower - c->shard_bits : 4;

    if (getrandom(&c->seed, sizeof c->seed, GRND_NONBLOCK) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
    mk_classes_init(c);
    pthread_mutex_init(&c->flush_lock, NULL);
    c->shards = calloc(c->cfg.nshards, sizeof *c->shards);
    if (!c->shards || !mk_arena_init(c)) {
        mk_cache_destroy(c);
        return NULL;
    }
    for (unsigned i = 0; i < c->cfg.nshards; i++) {
        pthread_mutex_init(&c->shards[i].lock, NULL);
        if (!mk_idx_init(&c->shards[i].idx, power)) {
            mk_cache_destroy(c);
            return NULL;
        }
        atomic_fetch_add_explicit(&c->idx_bytes, mk_idx_bytes(&c->shards[i].idx), memory_order_relaxed);
        mk_sketch_fit(c, &c->shards[i]);
    }
    if (c->mem_fd >= 0)
        mk_persist_restore(c);
    return c;
}

void mk_cache_destroy(mk_cache *c)
{
    if (!c)
        return;
    if (c->shards) {
        for (unsigned i = 0; i < c->cfg.nshards; i++) {
            mk_idx_free(&c->shards[i].idx);
            mk_sketch_free(c, &c->shards[i].sk);
            pthread_mutex_destroy(&c->shards[i].lock);
        }
        free(c->shards);
    }
    mk_arena_free(c);
    pthread_mutex_destroy(&c->flush_lock);
    free(c);
}

uint64_t mk_key_hash(const mk_cache *c, const mk_item *it)
{
    return mk_hash64(mk_item_key(it), it->nkey, c->seed);
}

/* ---- linking and counters ---- */

static void live_sub(mk_cache *c, uint32_t id, uint32_t bytes, void *arg)
{
    (void)arg;
    atomic_fetch_sub_explicit(&c->segm[id].live, bytes, memory_order_release); /* (pairs with the evictor's load) */
}

/*
 * Counters and live bytes of an item entering or leaving the index. A large
 * item's bytes in the segments after its first are added by mk_span_claim
 * before it is linked; all of them are taken off when it leaves.
 */
static void account(mk_cache *c, mk_shard *s, const mk_item *it, bool add)
{
    size_t size = mk_item_arena_size(it), payload = it->nkey + mk_item_nbytes(it);
    mk_class_counters *k = &s->cls[mk_class_of(c, size)];
    mk_segm *m = &c->segm[mk_segid_of(c, it)];
    size_t first = size;
    if (it->meta & MK_M_SPAN) {
        size_t room = MK_SEG_SIZE - (size_t)((const char *)it - (const char *)mk_seghdr_of(it));
        first = size < room ? size : room;
    }
    if (add) {
        s->n.curr_items++;
        s->n.bytes += size;
        s->n.payload += payload;
        k->number++;
        k->bytes += size;
        atomic_fetch_add_explicit(&m->live, (uint32_t)first, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->nlive, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->live_bytes, size, memory_order_relaxed);
    } else {
        ((mk_item *)it)->state |= MK_S_GONE; /* (shard lock held) a restart must not bring it back */
        s->n.curr_items--;
        s->n.bytes -= size;
        s->n.payload -= payload;
        k->number--;
        k->bytes -= size;
        if (it->meta & MK_M_SPAN)
            mk_span_each(c, it, live_sub, NULL);
        else
            atomic_fetch_sub_explicit(&m->live, (uint32_t)size, memory_order_release);
        atomic_fetch_sub_explicit(&m->nlive, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&c->live_bytes, size, memory_order_relaxed);
    }
}

/* Link a claimed item (see mk_span_claim). */
static void link_claimed(mk_cache *c, mk_shard *s, uint64_t hv, size_t pos, mk_item *it)
{
    if (pos == SIZE_MAX) {
        if (!mk_idx_insert_locked(c, s, hv, it)) {
            if (it->meta & MK_M_SPAN)
                mk_span_unclaim(c, it);
            it->state = MK_S_STORED | MK_S_GONE;
            return; /* index full and cannot grow: as if stored and evicted at once */
        }
    } else {
        mk_idx_set_locked(c, s, pos, hv, it);
    }
    it->state = (uint8_t)(MK_S_STORED | (it->state & (MK_S_META | MK_S_FETCHED)));
    account(c, s, it, true);
    s->n.total_items++;
}

void mk_unlink_locked(mk_cache *c, mk_shard *s, size_t pos, mk_item *it)
{
    mk_idx_delete_locked(s, pos);
    account(c, s, it, false);
}

bool mk_link_locked(mk_cache *c, mk_shard *s, uint64_t hv, mk_item *it)
{
    if ((it->meta & MK_M_SPAN) && !mk_span_claim(c, it))
        return false;
    link_claimed(c, s, hv, SIZE_MAX, it);
    return true;
}

bool mk_replace_locked(mk_cache *c, mk_shard *s, uint64_t hv, size_t pos, mk_item *old, mk_item *it)
{
    if ((it->meta & MK_M_SPAN) && !mk_span_claim(c, it))
        return false;
    account(c, s, old, false);
    link_claimed(c, s, hv, pos, it);
    return true;
}

void mk_count_gone_locked(mk_cache *c, mk_shard *s, const mk_item *it, mk_cache_rc why, bool evicted)
{
    unsigned cls = mk_class_of(c, mk_item_arena_size(it));
    mk_class_counters *k = &s->cls[cls];
    bool fetched = it->state & MK_S_FETCHED;
    if (evicted && c->cfg.on_evict) {
        mk_cache_entry e = {.key = mk_item_key(it), .nkey = it->nkey, .nbytes = mk_item_nbytes(it),
                            .exp_at = mk_item_exp_at(it), .cas = mk_item_cas(it), .fetched = fetched, .cls = cls,
                            .size = mk_item_arena_size(it)};
        c->cfg.on_evict(c->cfg.evict_ctx, &e);
    }
    if (evicted) {
        s->n.evictions++;
        k->evicted++;
        if (mk_item_exp_at(it) != 0)
            k->evicted_nonzero++;
        if (!fetched) {
            s->n.evicted_unfetched++;
            k->evicted_unfetched++;
        }
        return;
    }
    s->n.reclaimed++;
    k->reclaimed++;
    if (why == MK_C_EXPIRED && !fetched) {
        s->n.expired_unfetched++;
        k->expired_unfetched++;
    }
}

mk_item *mk_find_valid_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey,
                              int64_t now, mk_cache_rc *why, size_t *pos)
{
    return mk_find_valid_ex_locked(c, s, hv, key, nkey, now, why, pos, false);
}

mk_item *mk_find_valid_ex_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey,
                                 int64_t now, mk_cache_rc *why, size_t *pos, bool reclaim)
{
    *why = MK_C_MISS;
    mk_item *it = mk_idx_find_locked(c, s, hv, key, nkey, pos);
    if (!it)
        return NULL;
    mk_cache_rc v = mk_item_validity(c, it, now);
    if (v != MK_C_OK) {
        if (reclaim) /* a store takes the key of a dead item: memcached's reclaimed (t/issue_183.t) */
            mk_count_gone_locked(c, s, it, v, false);
        mk_unlink_locked(c, s, *pos, it); /* found dead by a lookup: gone now */
        *why = v;
        return NULL;
    }
    *why = MK_C_OK;
    return it;
}

/* ---- allocation ---- */

/*
 * memcached's measure of an item against -I (item_size_max): its 48-byte header, 8 bytes for the
 * cas unique unless -C, the key and a NUL, 4 bytes for non-zero flags, the value and its "\r\n".
 * Measured so, the same values fit in both servers, to the byte (tests/blackbox
 * test_the_largest_value_is_memcached_s); memkit's own item is smaller.
 */
static bool over_limit(const mk_cache *c, size_t nkey, size_t nbytes, uint32_t flags)
{
    size_t over = 48 + (c->cfg.use_cas ? 8 : 0) + nkey + 1 + (flags ? 4 : 0) + 2;
    return nbytes > c->cfg.item_size_max || nbytes + over > c->cfg.item_size_max;
}

static mk_cache_rc alloc_full(mk_cache *c, const char *key, size_t nkey, uint64_t hv, uint32_t flags,
                              int64_t exp_at, size_t nbytes, mk_xcas xcas, uint64_t cas, int64_t now, mk_item **out)
{
    *out = NULL;
    size_t size = mk_cache_item_size(nkey, nbytes);
    if (nkey > MK_KEY_MAX || size > c->cfg.item_size_max || over_limit(c, nkey, nbytes, flags))
        return MK_C_TOO_LARGE;
    mk_relocate_maybe(c, now);
    unsigned h = MK_HEAD_LARGE;
    if (size <= MK_LARGE_MIN) {
        /* a small item starts on probation unless its key is asked for often (or it is a copy of one in use) */
        h = MK_HEAD_SMALL;
        if (xcas != MK_XCAS_KEEP && c->cfg.evict) { /* (with -M nothing is evicted: there is no policy to apply) */
            mk_shard *s = mk_shard_of(c, hv);
            pthread_mutex_lock(&s->lock);
            if (mk_sketch_estimate_locked(s, hv) < MK_SK_RECALL)
                h = MK_HEAD_PROB;
            pthread_mutex_unlock(&s->lock);
        }
    }
    mk_item *it = mk_arena_alloc(c, h, key, nkey, nbytes, flags, exp_at, xcas, cas, now);
    if (!it) {
        atomic_fetch_add_explicit(&c->outofmemory[mk_class_of(c, size)], 1, memory_order_relaxed);
        return MK_C_NO_MEMORY;
    }
    *out = it;
    return MK_C_OK;
}

mk_cache_rc mk_alloc_hv(mk_cache *c, const char *key, size_t nkey, uint64_t hv, uint32_t flags,
                        int64_t exp_at, size_t nbytes, int64_t now, mk_item **out)
{
    mk_flush_tick(c, now);
    return alloc_full(c, key, nkey, hv, flags, exp_at, nbytes, MK_XCAS_NONE, 0, now, out);
}

mk_cache_rc mk_alloc_x(mk_cache *c, const char *key, size_t nkey, uint64_t hv, uint32_t flags, int64_t exp_at,
                       size_t nbytes, mk_xcas xcas, uint64_t cas, int64_t now, mk_item **out)
{
    mk_flush_tick(c, now);
    return alloc_full(c, key, nkey, hv, flags, exp_at, nbytes, xcas, cas, now, out);
}

mk_cache_rc mk_cache_alloc(mk_cache *c, const char *key, size_t nkey, uint32_t flags, int64_t exp_at,
                           size_t nbytes, int64_t now, mk_item **out)
{
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    return mk_alloc_hv(c, key, nkey, hv, flags, exp_at, nbytes, now, out);
}

mk_cache_rc mk_cache_alloc_cas(mk_cache *c, const char *key, size_t nkey, uint32_t flags, int64_t exp_at,
                               size_t nbytes, uint64_t cas, int64_t now, mk_item **out)
{
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    return mk_alloc_x(c, key, nkey, hv, flags, exp_at, nbytes, MK_XCAS_EXPLICIT, cas, now, out);
}

mk_cache_rc mk_alloc_copy(mk_cache *c, const mk_item *it, uint64_t hv, int64_t exp_at, int64_t now, mk_item **out)
{
    return alloc_full(c, mk_item_key(it), it->nkey, hv, mk_item_flags(it), exp_at, mk_item_nbytes(it),
                      mk_item_xmode(it), mk_item_unique(it), now, out);
}

/* A copy of `it` with another expiry and the same cas unique (touch/gat on an item without an expiry field). */
static mk_item *clone_exp(mk_cache *c, mk_item *it, uint64_t hv, int64_t exp_at, int64_t now)
{
    mk_item *cp;
    if (mk_alloc_copy(c, it, hv, exp_at, now, &cp) != MK_C_OK)
        return NULL;
    mk_item_copy(cp, 0, it, 0, mk_item_nbytes(it));
    return cp;
}

/* ---- lookups ---- */

/* Under the shard lock, on a hit: report the item's meta state and hand out a win (mk_cache_meta). */
static void meta_hit_locked(mk_cache *c, mk_item *it, mk_cache_meta *m)
{
    uint8_t st = it->state;
    m->fetched = (st & MK_S_FETCHED) != 0;
    m->stale = (st & MK_S_STALE) != 0;
    m->token_sent = (st & MK_S_WON) != 0;
    m->key_binary = (st & MK_S_BINKEY) != 0;
    m->exp_before = mk_item_exp_at(it);
    int64_t exp = m->touch && m->recache_after_touch ? m->exp_at : m->exp_before;
    m->win = !m->token_sent && (m->stale || (m->recache_at != 0 && exp != 0 && exp < m->recache_at));
    if (m->win)
        it->state |= MK_S_WON;
    m->stored_at = c->segm[mk_segid_of(c, it)].ctime;
}

/* A lookup's effect on the item: more frequent, fetched (unless a meta lookup said u). */
static inline __attribute__((always_inline)) void bump_locked(mk_shard *s, mk_item *it, const mk_cache_meta *m)
{
    if (!m || !m->no_bump) {
        unsigned f = it->state & MK_S_FREQ;
        it->state = (uint8_t)((it->state & ~MK_S_FREQ) | (f < 3 ? f + 1 : 3) | MK_S_FETCHED);
    }
    s->n.hits[(it->meta & MK_M_SPAN) != 0]++;
}

static mk_cache_rc fetch(mk_cache *c, const char *key, size_t nkey, bool set_exp, int64_t exp_at, int64_t now,
                         mk_item **out, mk_cache_meta *m)
{
    *out = NULL;
    mk_flush_tick(c, now);
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    for (bool counted = false;; counted = true) {
        mk_cache_rc rc;
        size_t pos;
        pthread_mutex_lock(&s->lock);
        if (!counted && !(m && m->no_bump)) /* one lookup, however many times a clone race retries it */
            mk_sketch_add_locked(s, hv);
        mk_item *it = mk_find_valid_locked(c, s, hv, key, nkey, now, &rc, &pos);
        bool clone = false;
        if (it) {
            if (m)
                meta_hit_locked(c, it, m);
            if (set_exp && mk_item_has_exp(it))
                mk_item_set_exp(it, exp_at);
            else if (set_exp && exp_at != 0)
                clone = true;
            bump_locked(s, it, m);
            mk_item_ref(c, it);
        }
        pthread_mutex_unlock(&s->lock);
        if (!clone) {
            *out = it;
            return rc;
        }
        /* The item has no room for an expiry: replace it by a copy that has one. */
        mk_item *cp = clone_exp(c, it, hv, exp_at, now);
        if (!cp) {
            *out = it; /* no memory for the copy: serve the hit, expiry unchanged */
            return MK_C_OK;
        }
        pthread_mutex_lock(&s->lock);
        mk_item *cur = mk_find_valid_locked(c, s, hv, key, nkey, now, &rc, &pos);
        bool same = cur == it && !atomic_load(&c->segm[mk_segid_of(c, cp)].dead);
        uint8_t st = it->state;
        if (same && !mk_replace_locked(c, s, hv, pos, it, cp)) {
            *out = it; /* the copy is being evicted already: serve the hit, expiry unchanged */
            pthread_mutex_unlock(&s->lock);
            mk_item_put(c, cp);
            return MK_C_OK;
        }
        if (same) {
            s->n.total_items--;
            cp->state = st;
        }
        pthread_mutex_unlock(&s->lock);
        mk_item_put(c, it);
        if (same) {
            *out = cp;
            return MK_C_OK;
        }
        mk_item_put(c, cp);
    }
}

mk_cache_rc mk_cache_get(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_item **out)
{
    return fetch(c, key, nkey, false, 0, now, out, NULL);
}

/*
 * Hash key, lock its shard and find its valid item (*it NULL: *why says which
 * miss); a read (`count`) is counted in the sketch. Returns the shard, locked.
 */
static mk_shard *lock_find(mk_cache *c, const char *key, size_t nkey, bool count, int64_t now, mk_item **it,
                           mk_cache_rc *why, size_t *pos)
{
    mk_flush_tick(c, now);
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    pthread_mutex_lock(&s->lock);
    if (count)
        mk_sketch_add_locked(s, hv);
    *it = mk_find_valid_locked(c, s, hv, key, nkey, now, why, pos);
    return s;
}

/* (always inlined: mk_cache_read, the hot one, gets a copy with m == NULL folded away) */
static inline __attribute__((always_inline)) mk_cache_rc read_meta(mk_cache *c, const char *key, size_t nkey,
                                                                   int64_t now, mk_cache_meta *m,
                                                                   mk_cache_read_fn fn, void *ctx, mk_item **out)
{
    *out = NULL;
    mk_cache_rc rc;
    size_t pos;
    mk_item *it;
    mk_shard *s = lock_find(c, key, nkey, !(m && m->no_bump), now, &it, &rc, &pos);
    if (it) {
        if (m)
            meta_hit_locked(c, it, m);
        bump_locked(s, it, m);
        mk_item_view v;
        if (fn)
            mk_item_view_of(it, &v);
        if (!fn || fn(ctx, &v)) {
            mk_item_ref(c, it);
            *out = it;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

mk_cache_rc mk_cache_read(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_cache_read_fn fn, void *ctx,
                          mk_item **out)
{
    return read_meta(c, key, nkey, now, NULL, fn, ctx, out);
}

mk_cache_rc mk_cache_gat(mk_cache *c, const char *key, size_t nkey, int64_t exp_at, int64_t now, mk_item **out)
{
    return fetch(c, key, nkey, true, exp_at, now, out, NULL);
}

mk_cache_rc mk_cache_mget(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_cache_meta *m,
                          mk_cache_read_fn fn, void *ctx, mk_item **out)
{
    if (m->touch)
        return fetch(c, key, nkey, true, m->exp_at, now, out, m);
    return read_meta(c, key, nkey, now, m, fn, ctx, out);
}

void mk_item_set_meta(mk_item *it, unsigned what)
{
    /* unlinked: nobody else sees it yet */
    it->state |= (uint8_t)(((what & MK_ITEM_WON) ? MK_S_WON : 0) | ((what & MK_ITEM_FETCHED) ? MK_S_FETCHED : 0) |
                           ((what & MK_ITEM_BINKEY) ? MK_S_BINKEY : 0));
}

/* ---- stores ---- */

/* Build old+it (append) or it+old (prepend) as a new item with old's flags and expiry. */
static mk_cache_rc join(mk_cache *c, mk_item *old, mk_item *it, uint64_t hv, bool append, int64_t now,
                        mk_item **out)
{
    size_t no = mk_item_nbytes(old), ni = mk_item_nbytes(it);
    mk_cache_rc rc = alloc_full(c, mk_item_key(it), it->nkey, hv, mk_item_flags(old), mk_item_exp_at(old), no + ni,
                                mk_item_xinherit(it), mk_item_unique(it), now, out);
    if (rc != MK_C_OK)
        return rc;
    mk_item *first = append ? old : it, *second = append ? it : old;
    size_t nf = append ? no : ni;
    mk_item_copy(*out, 0, first, 0, nf);
    mk_item_copy(*out, nf, second, 0, no + ni - nf);
    return MK_C_OK;
}

/* An item that can no longer be linked: its segment was evicted, or a flush came after its allocation. */
bool mk_unlinkable(mk_cache *c, const mk_item *it)
{
    return atomic_load(&c->segm[mk_segid_of(c, it)].dead) ||
           mk_item_seq(it) < atomic_load_explicit(&c->flush_seq, memory_order_relaxed);
}

mk_cache_rc mk_cache_store(mk_cache *c, mk_item *it, mk_store_op op, uint64_t cas_in, int64_t now,
                           uint64_t *cas_out)
{
    return mk_cache_store_ex(c, it, op, cas_in, 0, now, cas_out, NULL);
}

mk_cache_rc mk_cache_store_ex(mk_cache *c, mk_item *it, mk_store_op op, uint64_t cas_in, unsigned opts,
                              int64_t now, uint64_t *cas_out, size_t *nbytes_out)
{
    mk_flush_tick(c, now);
    uint64_t hv = mk_key_hash(c, it);
    mk_shard *s = mk_shard_of(c, hv);
    /*
     * cand is what SET/ADD/REPLACE/CAS link: `it`, or a copy of it when a flush_all
     * came between its allocation and this store. memcached judges an item by the
     * cas it gets when linked, so a store after a flush must survive it; `it`'s
     * sequence (allocation order) says "flushed", the copy's does not.
     */
    mk_item *cand = it, *copy = NULL;
    for (;;) {
        mk_cache_rc rc = MK_C_OK, why;
        mk_item *joined = NULL, *old_ref = NULL, *linked = NULL;
        size_t pos = SIZE_MAX;

        pthread_mutex_lock(&s->lock);
        if (it->state & MK_S_STORED) { /* an item is linked at most once */
            pthread_mutex_unlock(&s->lock);
            mk_item_put(c, copy);
            return MK_C_NOT_STORED;
        }
        mk_item *old = mk_find_valid_ex_locked(c, s, hv, mk_item_key(it), it->nkey, now, &why, &pos, true);
        if (!old)
            pos = SIZE_MAX;
        bool dead = mk_unlinkable(c, cand);
        switch (op) {
        case MK_STORE_SET:
            linked = cand;
            break;
        case MK_STORE_ADD:
            if (old) {
                unsigned f = old->state & MK_S_FREQ; /* memcached promotes the existing item */
                old->state = (uint8_t)((old->state & ~MK_S_FREQ) | (f < 3 ? f + 1 : 3));
                rc = MK_C_NOT_STORED;
            } else {
                linked = cand;
            }
            break;
        case MK_STORE_REPLACE:
            if (!old)
                rc = MK_C_NOT_STORED;
            else
                linked = cand;
            break;
        case MK_STORE_CAS:
            if (!old) {
                rc = MK_C_NOT_FOUND;
            } else if (mk_item_cas(old) == cas_in) {
                linked = cand;
            } else if ((opts & MK_STORE_X_STALE) && cas_in < mk_item_cas(old)) {
                /* an older value written back (ms I): kept, marked stale, with the current expiry */
                int64_t oexp = mk_item_exp_at(old);
                if (mk_item_exp_at(cand) != oexp && !mk_item_has_exp(cand)) {
                    pthread_mutex_unlock(&s->lock);
                    mk_item *fresh;
                    size_t n = mk_item_nbytes(it);
                    mk_cache_rc arc = alloc_full(c, mk_item_key(it), it->nkey, hv, mk_item_flags(it), oexp, n,
                                                 mk_item_xinherit(it), mk_item_unique(it), now, &fresh);
                    if (arc != MK_C_OK) {
                        mk_item_put(c, copy);
                        return arc;
                    }
                    mk_item_copy(fresh, 0, it, 0, n);
                    mk_item_put(c, copy);
                    cand = copy = fresh;
                    continue;
                }
                if (mk_item_exp_at(cand) != oexp)
                    mk_item_set_exp(cand, oexp);
                cand->state = (uint8_t)((cand->state & ~MK_S_WON) | MK_S_STALE | (old->state & MK_S_WON));
                linked = cand;
            } else {
                rc = MK_C_EXISTS;
            }
            break;
        case MK_STORE_APPEND:
        case MK_STORE_PREPEND:
            if (!old) {
                rc = MK_C_NOT_STORED;
                break;
            }
            if ((opts & MK_STORE_X_CAS_JOIN) && cas_in != 0 && mk_item_cas(old) != cas_in) {
                rc = MK_C_EXISTS;
                break;
            }
            /* Allocation may evict from any shard: build the joined item unlocked, then re-check. */
            mk_item_ref(c, old);
            old_ref = old;
            pthread_mutex_unlock(&s->lock);
            rc = join(c, old_ref, it, hv, op == MK_STORE_APPEND, now, &joined);
            if (rc != MK_C_OK) {
                mk_item_put(c, old_ref);
                mk_item_put(c, copy);
                return rc;
            }
            pthread_mutex_lock(&s->lock);
            old = mk_find_valid_locked(c, s, hv, mk_item_key(it), it->nkey, now, &why, &pos);
            if (old != old_ref || (it->state & MK_S_STORED)) {
                pthread_mutex_unlock(&s->lock);
                mk_item_put(c, joined);
                mk_item_put(c, old_ref);
                continue; /* changed meanwhile: start over */
            }
            it->state |= MK_S_STORED; /* `it` itself is consumed by the join */
            linked = joined;
            dead = mk_unlinkable(c, joined);
            break;
        default:
            rc = MK_C_NOT_STORED;
            break;
        }
        if (linked && linked == cand && dead && !atomic_load(&c->segm[mk_segid_of(c, cand)].dead)) {
            /* flushed after its allocation, not evicted: link a copy allocated after the flush */
            pthread_mutex_unlock(&s->lock);
            mk_item *fresh;
            size_t n = mk_item_nbytes(it);
            if (alloc_full(c, mk_item_key(it), it->nkey, hv, mk_item_flags(it), mk_item_exp_at(cand), n,
                           mk_item_xinherit(it), mk_item_unique(it), now, &fresh) == MK_C_OK) {
                mk_item_copy(fresh, 0, it, 0, n);
                fresh->state |= cand->state & MK_S_META;
                mk_item_put(c, copy);
                cand = copy = fresh;
                continue;
            }
            pthread_mutex_lock(&s->lock); /* no memory for the copy: stored and flushed at once, as before */
            if (it->state & MK_S_STORED) {
                pthread_mutex_unlock(&s->lock);
                mk_item_put(c, copy);
                return MK_C_NOT_STORED;
            }
            old = mk_find_valid_locked(c, s, hv, mk_item_key(it), it->nkey, now, &why, &pos);
        }
        if (linked) {
            if (linked == copy)
                it->state |= MK_S_STORED; /* `it` is stored through its copy */
            if (!dead && !(old ? mk_replace_locked(c, s, hv, pos, old, linked) : mk_link_locked(c, s, hv, linked))) {
                dead = true; /* part of a large value is in a segment being evicted */
                s->n.evictions++;
                s->n.evicted_unfetched++;
            }
            if (dead) {
                /* stored, and at once evicted/flushed: the old value must not survive either */
                linked->state |= MK_S_STORED | MK_S_GONE;
                if (old)
                    mk_unlink_locked(c, s, pos, old);
            }
            if (cas_out)
                *cas_out = mk_item_cas(linked);
            if (nbytes_out)
                *nbytes_out = mk_item_nbytes(linked);
        }
        pthread_mutex_unlock(&s->lock);
        mk_item_put(c, joined);
        mk_item_put(c, old_ref);
        mk_item_put(c, copy);
        return rc;
    }
}

mk_cache_rc mk_cache_delete(mk_cache *c, const char *key, size_t nkey, int64_t now)
{
    mk_cache_rc why;
    size_t pos;
    mk_item *it;
    mk_shard *s = lock_find(c, key, nkey, false, now, &it, &why, &pos);
    if (it)
        mk_unlink_locked(c, s, pos, it);
    pthread_mutex_unlock(&s->lock);
    return it ? MK_C_OK : MK_C_MISS;
}

mk_cache_rc mk_cache_delete_cas(mk_cache *c, const char *key, size_t nkey, uint64_t cas_in, int64_t now)
{
    mk_cache_rc why;
    size_t pos;
    mk_item *it;
    mk_shard *s = lock_find(c, key, nkey, false, now, &it, &why, &pos);
    mk_cache_rc rc = !it ? MK_C_MISS : cas_in != 0 && mk_item_cas(it) != cas_in ? MK_C_EXISTS : MK_C_OK;
    if (rc == MK_C_OK)
        mk_unlink_locked(c, s, pos, it);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

mk_cache_rc mk_cache_invalidate(mk_cache *c, const char *key, size_t nkey, uint64_t cas_in, bool set_exp,
                                int64_t exp_at, const uint64_t *ecas, int64_t now, uint64_t *cas_out)
{
    mk_flush_tick(c, now);
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    for (;;) {
        mk_cache_rc why;
        size_t pos;
        pthread_mutex_lock(&s->lock);
        mk_item *it = mk_find_valid_locked(c, s, hv, key, nkey, now, &why, &pos);
        if (!it || (cas_in != 0 && mk_item_cas(it) != cas_in)) {
            pthread_mutex_unlock(&s->lock);
            return it ? MK_C_EXISTS : MK_C_MISS;
        }
        mk_item_ref(c, it);
        pthread_mutex_unlock(&s->lock);
        /* a new unique needs a new place: copy the item (the value is unchanged) */
        mk_item *cp;
        size_t n = mk_item_nbytes(it);
        mk_cache_rc rc = alloc_full(c, key, nkey, hv, mk_item_flags(it), set_exp ? exp_at : mk_item_exp_at(it), n,
                                    ecas ? MK_XCAS_EXPLICIT : MK_XCAS_NONE, ecas ? *ecas : 0, now, &cp);
        if (rc != MK_C_OK) {
            mk_item_put(c, it);
            return rc;
        }
        mk_item_copy(cp, 0, it, 0, n);
        pthread_mutex_lock(&s->lock);
        mk_item *cur = mk_find_valid_locked(c, s, hv, key, nkey, now, &why, &pos);
        bool same = cur == it;
        if (same) {
            uint8_t st = it->state;
            if (mk_unlinkable(c, cp) || !mk_replace_locked(c, s, hv, pos, it, cp)) {
                mk_unlink_locked(c, s, pos, it); /* stored and at once evicted/flushed */
            } else {
                cp->state = (uint8_t)(MK_S_STORED | (st & (MK_S_FREQ | MK_S_FETCHED | MK_S_BINKEY)) | MK_S_STALE);
                s->n.total_items--; /* the same item, not a new one */
            }
            if (cas_out)
                *cas_out = mk_item_cas(cp);
        }
        pthread_mutex_unlock(&s->lock);
        mk_item_put(c, cp);
        mk_item_put(c, it);
        if (same)
            return MK_C_OK;
    }
}

mk_cache_rc mk_cache_peek_item(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_cache_peek *out)
{
    mk_cache_rc why;
    size_t pos;
    mk_item *it;
    mk_shard *s = lock_find(c, key, nkey, false, now, &it, &why, &pos);
    if (it) {
        size_t size = mk_item_arena_size(it);
        *out = (mk_cache_peek){.cas = mk_item_cas(it), .exp_at = mk_item_exp_at(it),
                               .stored_at = c->segm[mk_segid_of(c, it)].ctime,
                               .fetched = (it->state & MK_S_FETCHED) != 0, .nbytes = mk_item_nbytes(it),
                               .size = size, .cls = mk_class_of(c, size)};
    }
    pthread_mutex_unlock(&s->lock);
    return it ? MK_C_OK : why;
}

mk_cache_rc mk_cache_touch(mk_cache *c, const char *key, size_t nkey, int64_t exp_at, int64_t now)
{
    mk_item *it;
    mk_cache_rc rc = fetch(c, key, nkey, true, exp_at, now, &it, NULL);
    mk_item_put(c, it);
    return rc == MK_C_OK ? MK_C_OK : MK_C_MISS;
}

void mk_cache_unlink(mk_cache *c, const char *key, size_t nkey)
{
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    size_t pos;
    pthread_mutex_lock(&s->lock);
    mk_item *it = mk_idx_find_locked(c, s, hv, key, nkey, &pos);
    if (it)
        mk_unlink_locked(c, s, pos, it);
    pthread_mutex_unlock(&s->lock);
}
