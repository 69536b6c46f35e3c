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
    /* Split the requested bucket count over the shards, at least 4 buckets each. */
    unsigned power = c->cfg.hashpower > c->shard_bits + 2 ? c->cfg.hashpower - c->shard_bits : 2;

    if (getrandom(&c->seed, sizeof c->seed, GRND_NONBLOCK) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
    mk_classes_init(c);
    pthread_mutex_init(&c->flush_lock, NULL);

    c->shards = calloc(c->cfg.nshards, sizeof *c->shards);
    if (!c->shards) {
        free(c);
        return NULL;
    }
    for (unsigned i = 0; i < c->cfg.nshards; i++) {
        pthread_mutex_init(&c->shards[i].lock, NULL);
        if (!mk_htab_init(&c->shards[i].ht, power)) {
            mk_cache_destroy(c);
            return NULL;
        }
    }
    return c;
}

void mk_cache_destroy(mk_cache *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->cfg.nshards; i++) {
        mk_shard *s = &c->shards[i];
        for (mk_item *it = s->lru_head, *next; it; it = next) {
            next = it->next;
            mk_item_free(it);
        }
        mk_htab_free(&s->ht);
        pthread_mutex_destroy(&s->lock);
    }
    pthread_mutex_destroy(&c->flush_lock);
    free(c->shards);
    free(c);
}

mk_item *mk_find_valid_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey,
                              int64_t now, mk_cache_rc *why, mk_item **dead)
{
    *dead = NULL;
    *why = MK_C_MISS;
    mk_item *it = mk_htab_find_locked(&s->ht, hv, key, nkey);
    if (!it)
        return NULL;
    mk_cache_rc v = mk_item_validity(c, it, now);
    if (v != MK_C_OK) {
        mk_reclaim_locked(s, it, v, false);
        *dead = it;
        *why = v;
        return NULL;
    }
    *why = MK_C_OK;
    return it;
}

static mk_cache_rc fetch(mk_cache *c, const char *key, size_t nkey, bool set_exp, int64_t exp_at, int64_t now,
                         mk_item **out)
{
    *out = NULL;
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    mk_cache_rc rc;
    mk_item *dead;

    pthread_mutex_lock(&s->lock);
    mk_item *it = mk_find_valid_locked(c, s, hv, key, nkey, now, &rc, &dead);
    if (it) {
        if (set_exp)
            atomic_store_explicit(&it->exp_at, exp_at, memory_order_relaxed);
        it->iflags |= MK_IT_FETCHED;
        mk_lru_bump_locked(s, it, now);
        atomic_fetch_add_explicit(&it->refcount, 1, memory_order_relaxed);
        *out = it;
    }
    mk_htab_step_locked(&s->ht, 1);
    pthread_mutex_unlock(&s->lock);
    mk_item_put(c, dead);
    return rc;
}

mk_cache_rc mk_cache_get(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_item **out)
{
    return fetch(c, key, nkey, false, 0, now, out);
}

mk_cache_rc mk_cache_gat(mk_cache *c, const char *key, size_t nkey, int64_t exp_at, int64_t now, mk_item **out)
{
    return fetch(c, key, nkey, true, exp_at, now, out);
}

mk_cache_rc mk_alloc_hv(mk_cache *c, const char *key, size_t nkey, uint64_t hv, uint32_t flags,
                        int64_t exp_at, size_t nbytes, int64_t now, mk_item **out)
{
    *out = NULL;
    size_t size = mk_cache_item_size(nkey, nbytes);
    if (nkey > MK_KEY_MAX || size > c->cfg.item_size_max)
        return MK_C_TOO_LARGE;
    unsigned clsid = mk_class_of(c, size);
    mk_item *it = NULL;
    if (mk_mem_charge(c, size, hv, now) == MK_C_OK) {
        it = mk_item_new(nkey, nbytes);
        if (!it)
            mk_mem_uncharge(c, size);
    }
    if (!it) {
        atomic_fetch_add_explicit(&c->outofmemory[clsid], 1, memory_order_relaxed);
        return MK_C_NO_MEMORY;
    }
    memcpy(it->data, key, nkey);
    it->hv = hv;
    it->flags = flags;
    atomic_store_explicit(&it->exp_at, exp_at, memory_order_relaxed);
    it->clsid = (uint8_t)clsid;
    it->nocas = !c->cfg.use_cas;
    *out = it;
    return MK_C_OK;
}

mk_cache_rc mk_cache_alloc(mk_cache *c, const char *key, size_t nkey, uint32_t flags, int64_t exp_at,
                           size_t nbytes, int64_t now, mk_item **out)
{
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    return mk_alloc_hv(c, key, nkey, hv, flags, exp_at, nbytes, now, out);
}

/* Put `it` in place of `old` (which may be NULL). */
static void replace_locked(mk_cache *c, mk_shard *s, mk_item *old, mk_item *it, int64_t now)
{
    if (old)
        mk_unlink_locked(s, old);
    mk_link_locked(c, s, it, now);
}

/* Build old+it (append) or it+old (prepend) as a new item with old's flags and expiry. */
static mk_cache_rc join(mk_cache *c, mk_item *old, mk_item *it, bool append, int64_t now, mk_item **out)
{
    size_t n = (size_t)old->nbytes + it->nbytes;
    mk_cache_rc rc = mk_alloc_hv(c, it->data, it->nkey, it->hv, old->flags, mk_item_exp_at(old), n, now, out);
    if (rc != MK_C_OK)
        return rc;
    char *d = mk_item_val(*out);
    mk_item *first = append ? old : it, *second = append ? it : old;
    memcpy(d, mk_item_val(first), first->nbytes);
    memcpy(d + first->nbytes, mk_item_val(second), second->nbytes);
    return MK_C_OK;
}

mk_cache_rc mk_cache_store(mk_cache *c, mk_item *it, mk_store_op op, uint64_t cas_in, int64_t now,
                           uint64_t *cas_out)
{
    mk_shard *s = mk_shard_of(c, it->hv);
    for (;;) {
        mk_cache_rc rc = MK_C_OK, why;
        mk_item *dead, *joined = NULL, *old_ref = NULL, *linked = NULL;

        pthread_mutex_lock(&s->lock);
        if (it->iflags & MK_IT_STORED) { /* an item is linked at most once */
            pthread_mutex_unlock(&s->lock);
            return MK_C_NOT_STORED;
        }
        mk_item *old = mk_find_valid_locked(c, s, it->hv, it->data, it->nkey, now, &why, &dead);
        switch (op) {
        case MK_STORE_SET:
            replace_locked(c, s, old, it, now);
            linked = it;
            break;
        case MK_STORE_ADD:
            if (old) {
                mk_lru_bump_locked(s, old, now); /* memcached promotes the existing item */
                rc = MK_C_NOT_STORED;
                old = NULL;
            } else {
                replace_locked(c, s, NULL, it, now);
                linked = it;
            }
            break;
        case MK_STORE_REPLACE:
            if (!old) {
                rc = MK_C_NOT_STORED;
            } else {
                replace_locked(c, s, old, it, now);
                linked = it;
            }
            break;
        case MK_STORE_CAS:
            if (!old) {
                rc = MK_C_NOT_FOUND;
            } else if (mk_item_cas(old) != cas_in) {
                rc = MK_C_EXISTS;
                old = NULL;
            } else {
                replace_locked(c, s, old, it, now);
                linked = it;
            }
            break;
        case MK_STORE_APPEND:
        case MK_STORE_PREPEND:
            if (!old) {
                rc = MK_C_NOT_STORED;
                break;
            }
            /* Allocation may evict from any shard: build the joined item unlocked, then re-check. */
            atomic_fetch_add_explicit(&old->refcount, 1, memory_order_relaxed);
            old_ref = old;
            pthread_mutex_unlock(&s->lock);
            mk_item_put(c, dead);
            dead = NULL;
            rc = join(c, old_ref, it, op == MK_STORE_APPEND, now, &joined);
            if (rc != MK_C_OK) {
                mk_item_put(c, old_ref);
                return rc;
            }
            pthread_mutex_lock(&s->lock);
            old = mk_find_valid_locked(c, s, it->hv, it->data, it->nkey, now, &why, &dead);
            if (old != old_ref || (it->iflags & MK_IT_STORED)) {
                /* Changed meanwhile: start over (a missing key now gives NOT_STORED). */
                pthread_mutex_unlock(&s->lock);
                mk_item_put(c, dead);
                mk_item_put(c, joined);
                mk_item_put(c, old_ref);
                continue;
            }
            replace_locked(c, s, old, joined, now);
            it->iflags |= MK_IT_STORED; /* `it` itself is consumed by the join */
            linked = joined;
            break;
        default:
            rc = MK_C_NOT_STORED;
            old = NULL;
            break;
        }
        if (linked && cas_out)
            *cas_out = mk_item_cas(linked);
        /* `old` here is non-NULL only if it was unlinked: drop its link reference. */
        pthread_mutex_unlock(&s->lock);
        if (linked && old)
            mk_item_put(c, old);
        mk_item_put(c, dead);
        mk_item_put(c, joined);
        mk_item_put(c, old_ref);
        return rc;
    }
}

mk_cache_rc mk_cache_delete(mk_cache *c, const char *key, size_t nkey, int64_t now)
{
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    mk_cache_rc why;
    mk_item *dead;

    pthread_mutex_lock(&s->lock);
    mk_item *it = mk_find_valid_locked(c, s, hv, key, nkey, now, &why, &dead);
    if (it)
        mk_unlink_locked(s, it);
    pthread_mutex_unlock(&s->lock);
    mk_item_put(c, dead);
    mk_item_put(c, it);
    return it ? MK_C_OK : MK_C_MISS;
}

mk_cache_rc mk_cache_touch(mk_cache *c, const char *key, size_t nkey, int64_t exp_at, int64_t now)
{
    mk_item *it;
    mk_cache_rc rc = fetch(c, key, nkey, true, exp_at, now, &it);
    mk_item_put(c, it);
    return rc == MK_C_OK ? MK_C_OK : MK_C_MISS;
}

void mk_cache_unlink(mk_cache *c, const char *key, size_t nkey)
{
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    pthread_mutex_lock(&s->lock);
    mk_item *it = mk_htab_find_locked(&s->ht, hv, key, nkey);
    if (it)
        mk_unlink_locked(s, it);
    pthread_mutex_unlock(&s->lock);
    mk_item_put(c, it);
}
