/* storage/lru.c — recency lists, linking/unlinking items in a shard, memory charging and eviction. */
#include "storage/internal.h"

/* How many items from an LRU tail one eviction attempt looks at (memcached uses 5). */
#define EVICT_SEARCH 5

void mk_lru_link_locked(mk_shard *s, mk_item *it)
{
    it->prev = NULL;
    it->next = s->lru_head;
    if (s->lru_head)
        s->lru_head->prev = it;
    s->lru_head = it;
    if (!s->lru_tail)
        s->lru_tail = it;

    unsigned id = it->clsid;
    it->cprev = NULL;
    it->cnext = s->chead[id];
    if (s->chead[id])
        s->chead[id]->cprev = it;
    s->chead[id] = it;
    if (!s->ctail[id])
        s->ctail[id] = it;
}

void mk_lru_unlink_locked(mk_shard *s, mk_item *it)
{
    if (it->prev) it->prev->next = it->next; else s->lru_head = it->next;
    if (it->next) it->next->prev = it->prev; else s->lru_tail = it->prev;
    it->prev = it->next = NULL;

    unsigned id = it->clsid;
    if (it->cprev) it->cprev->cnext = it->cnext; else s->chead[id] = it->cnext;
    if (it->cnext) it->cnext->cprev = it->cprev; else s->ctail[id] = it->cprev;
    it->cprev = it->cnext = NULL;
}

void mk_lru_bump_locked(mk_shard *s, mk_item *it, int64_t now)
{
    it->atime = now;
    if (s->lru_head != it || s->chead[it->clsid] != it) {
        mk_lru_unlink_locked(s, it);
        mk_lru_link_locked(s, it);
    }
}

void mk_link_locked(mk_cache *c, mk_shard *s, mk_item *it, int64_t now)
{
    size_t size = mk_cache_item_size(it->nkey, it->nbytes);
    it->seq = atomic_fetch_add_explicit(&c->seq, 1, memory_order_relaxed) + 1;
    it->atime = now;
    it->iflags = MK_IT_LINKED | MK_IT_STORED;
    atomic_fetch_add_explicit(&it->refcount, 1, memory_order_relaxed); /* the table's reference */
    mk_htab_insert_locked(&s->ht, it);
    mk_lru_link_locked(s, it);
    s->n.curr_items++;
    s->n.bytes += size;
    s->n.total_items++;
    s->cls[it->clsid].number++;
    s->cls[it->clsid].bytes += size;
    mk_htab_step_locked(&s->ht, 4);
}

void mk_unlink_locked(mk_shard *s, mk_item *it)
{
    size_t size = mk_cache_item_size(it->nkey, it->nbytes);
    mk_htab_remove_locked(&s->ht, it);
    mk_lru_unlink_locked(s, it);
    it->iflags &= (uint8_t)~MK_IT_LINKED;
    s->n.curr_items--;
    s->n.bytes -= size;
    s->cls[it->clsid].number--;
    s->cls[it->clsid].bytes -= size;
}

void mk_reclaim_locked(mk_shard *s, mk_item *it, mk_cache_rc why, bool count)
{
    if (count && why == MK_C_EXPIRED && !(it->iflags & MK_IT_FETCHED)) {
        s->n.expired_unfetched++;
        s->cls[it->clsid].expired_unfetched++;
    }
    mk_unlink_locked(s, it);
}

/*
 * Free room in one shard: look at up to EVICT_SEARCH items from the LRU tail,
 * skipping those someone holds (unlinking them would free nothing). An invalid
 * (expired/flushed) one is reclaimed in preference; otherwise the least recently
 * used free one is evicted. Returns the unlinked item (the caller drops the link
 * reference after unlocking) or NULL.
 */
static mk_item *evict_one_locked(mk_cache *c, mk_shard *s, int64_t now)
{
    mk_item *victim = NULL;
    int n = 0;
    for (mk_item *it = s->lru_tail; it && n < EVICT_SEARCH; it = it->prev, n++) {
        if (atomic_load_explicit(&it->refcount, memory_order_acquire) != 1)
            continue;
        mk_cache_rc v = mk_item_validity(c, it, now);
        if (v != MK_C_OK) {
            mk_reclaim_locked(s, it, v, true);
            s->n.reclaimed++;
            s->cls[it->clsid].reclaimed++;
            return it;
        }
        if (!victim)
            victim = it;
    }
    if (!victim || !c->cfg.evict)
        return NULL;
    s->n.evictions++;
    s->cls[victim->clsid].evicted++;
    if (!(victim->iflags & MK_IT_FETCHED)) {
        s->n.evicted_unfetched++;
        s->cls[victim->clsid].evicted_unfetched++;
    }
    mk_unlink_locked(s, victim);
    return victim;
}

/* Try to free one item, starting at shard `start` and going round the others. */
static bool free_one(mk_cache *c, size_t start, int64_t now)
{
    size_t nshards = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < nshards; i++) {
        mk_shard *s = &c->shards[(start + i) & (nshards - 1)];
        pthread_mutex_lock(&s->lock);
        mk_item *it = evict_one_locked(c, s, now);
        pthread_mutex_unlock(&s->lock);
        if (it) {
            mk_item_put(c, it); /* the link reference: frees it and uncharges */
            return true;
        }
    }
    return false;
}

static bool try_charge(mk_cache *c, uint64_t size)
{
    uint64_t cur = atomic_load_explicit(&c->mem_used, memory_order_relaxed);
    while (cur + size <= c->cfg.mem_limit)
        if (atomic_compare_exchange_weak_explicit(&c->mem_used, &cur, cur + size,
                                                  memory_order_relaxed, memory_order_relaxed))
            return true;
    return false;
}

mk_cache_rc mk_mem_charge(mk_cache *c, size_t size, uint64_t hv, int64_t now)
{
    if (size > c->cfg.mem_limit)
        return MK_C_NO_MEMORY;
    size_t start = c->shard_bits ? (size_t)(hv >> (64 - c->shard_bits)) : 0;
    while (!try_charge(c, size)) {
        /* Even with -M, expired and flushed items at the tails are reclaimed. */
        if (!free_one(c, start, now))
            return MK_C_NO_MEMORY;
    }
    return MK_C_OK;
}

void mk_mem_uncharge(mk_cache *c, size_t size)
{
    atomic_fetch_sub_explicit(&c->mem_used, size, memory_order_relaxed);
}
