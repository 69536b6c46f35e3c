/* storage/stats.c — size classes (accounting only), counters, "stats items"/"stats slabs" figures, stats reset, and the walk over live items (mk_cache_each) for key dumps. */
#include <string.h>

#include "storage/internal.h"

/* Accounting buckets only. memcached's growth factor 1.25 from 16 bytes (small items are common here); was: smallest class 96 bytes, growth factor 1.25, 8-byte aligned. */
#define CLASS_MIN 16
#define CLASS_FACTOR 1.25

void mk_classes_init(mk_cache *c)
{
    uint64_t max = c->cfg.item_size_max, size = CLASS_MIN;
    unsigned id = 1;
    while (id < MK_MAX_CLASSES && size < max) {
        c->class_size[id++] = size;
        uint64_t next = (uint64_t)((double)size * CLASS_FACTOR);
        next = (next + 7) & ~(uint64_t)7;
        size = next > size ? next : size + 8;
    }
    c->class_size[id] = max; /* the last class takes everything up to item_size_max */
    c->nclasses = id;
}

unsigned mk_class_of(const mk_cache *c, size_t size)
{
    unsigned lo = 1, hi = c->nclasses;
    while (lo < hi) { /* first class whose chunk_size >= size */
        unsigned mid = (lo + hi) / 2;
        if (c->class_size[mid] >= size)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void mk_cache_get_stats(mk_cache *c, mk_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    size_t nshards = (size_t)1 << c->shard_bits;
    uint64_t slots = 0;
    for (size_t i = 0; i < nshards; i++) {
        mk_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        out->curr_items += s->n.curr_items;
        out->total_items += s->n.total_items;
        out->bytes += s->n.bytes;
        out->payload_bytes += s->n.payload;
        out->evictions += s->n.evictions;
        out->evicted_unfetched += s->n.evicted_unfetched;
        out->expired_unfetched += s->n.expired_unfetched;
        out->reclaimed += s->n.reclaimed;
        out->reinserted += s->n.reinserted;
        slots += (uint64_t)1 << s->idx.power;
        if (s->idx.old)
            out->hash_is_expanding = true;
        pthread_mutex_unlock(&s->lock);
    }
    while (slots > 1) {
        slots >>= 1;
        out->hash_power_level++;
    }
    out->hash_bytes = atomic_load_explicit(&c->idx_bytes, memory_order_relaxed);
    pthread_mutex_lock(&c->arena_lock);
    out->segments_used = c->inuse;
    out->segments_probation = c->inuse_kind[MK_KIND_PROB];
    out->segments_large = c->inuse_kind[MK_KIND_LARGE];
    out->mem_limit = c->limit;
    pthread_mutex_unlock(&c->arena_lock);
    out->sketch_bytes = atomic_load_explicit(&c->sketch_bytes, memory_order_relaxed);
    out->mem_used = mk_charged(c);
    out->segment_size = MK_SEG_SIZE;
    out->segments_total = c->nseg;
    out->index_allowance = c->idx_allowance;
    out->segment_evictions = atomic_load_explicit(&c->seg_evictions, memory_order_relaxed);
    out->segments_freed_empty = atomic_load_explicit(&c->seg_freed[MK_FREED_EMPTY], memory_order_relaxed);
    out->segments_freed_compacted = atomic_load_explicit(&c->seg_freed[MK_FREED_COMPACTED], memory_order_relaxed);
    out->segments_freed_evicted = atomic_load_explicit(&c->seg_freed[MK_FREED_EVICTED], memory_order_relaxed);
    out->compacted_items = atomic_load_explicit(&c->compacted_items, memory_order_relaxed);
    out->live_bytes = atomic_load_explicit(&c->live_bytes, memory_order_relaxed);
}

void mk_cache_class_stats_each(mk_cache *c, int64_t now, mk_cache_class_cb cb, void *ctx)
{
    size_t nshards = (size_t)1 << c->shard_bits;
    pthread_mutex_lock(&c->arena_lock);
    int64_t t0 = now;
    for (int k = 0; k < MK_NKINDS; k++)
        if (c->fifo_head[k] >= 0 && c->segm[c->fifo_head[k]].ctime < t0)
            t0 = c->segm[c->fifo_head[k]].ctime;
    pthread_mutex_unlock(&c->arena_lock);
    for (unsigned h = 0; h < MK_NHEADS; h++) {
        pthread_mutex_lock(&c->heads[h].lock);
        int32_t id = c->heads[h].seg;
        if (id >= 0 && c->segm[id].ctime < t0)
            t0 = c->segm[id].ctime;
        pthread_mutex_unlock(&c->heads[h].lock);
    }
    for (unsigned id = 1; id <= c->nclasses; id++) {
        mk_cache_class_stats cs = {.id = id, .chunk_size = c->class_size[id], .age = now - t0};
        bool any = false;
        for (size_t i = 0; i < nshards; i++) {
            mk_shard *s = &c->shards[i];
            pthread_mutex_lock(&s->lock);
            mk_class_counters *k = &s->cls[id];
            cs.number += k->number;
            cs.bytes += k->bytes;
            cs.evicted += k->evicted;
            cs.evicted_unfetched += k->evicted_unfetched;
            cs.expired_unfetched += k->expired_unfetched;
            cs.reclaimed += k->reclaimed;
            cs.evicted_nonzero += k->evicted_nonzero;
            if (k->number)
                any = true;
            pthread_mutex_unlock(&s->lock);
        }
        cs.outofmemory = atomic_load_explicit(&c->outofmemory[id], memory_order_relaxed);
        if (any) /* like memcached: only classes that hold items */
            cb(&cs, ctx);
    }
}

void mk_cache_reset_stats(mk_cache *c)
{
    size_t nshards = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < nshards; i++) {
        mk_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        s->n.total_items = 0;
        s->n.evictions = s->n.evicted_unfetched = s->n.expired_unfetched = s->n.reclaimed = s->n.reinserted = 0;
        for (unsigned id = 0; id <= MK_MAX_CLASSES; id++) {
            mk_class_counters *k = &s->cls[id];
            k->evicted = k->evicted_unfetched = k->expired_unfetched = k->reclaimed = k->evicted_nonzero = 0;
        }
        pthread_mutex_unlock(&s->lock);
    }
    for (unsigned id = 0; id <= MK_MAX_CLASSES; id++)
        atomic_store_explicit(&c->outofmemory[id], 0, memory_order_relaxed);
    atomic_store_explicit(&c->seg_evictions, 0, memory_order_relaxed);
    for (unsigned w = 0; w < MK_FREED_WHY; w++)
        atomic_store_explicit(&c->seg_freed[w], 0, memory_order_relaxed);
    atomic_store_explicit(&c->compacted_items, 0, memory_order_relaxed);
}

struct each_ctx {
    mk_cache *c;
    int64_t now;
    mk_cache_each_cb cb;
    void *ctx;
};

static bool each_item(void *p, mk_item *it)
{
    struct each_ctx *e = p;
    if (mk_item_validity(e->c, it, e->now) != MK_C_OK)
        return true;
    size_t size = mk_item_arena_size(it);
    mk_cache_entry v = {.key = mk_item_key(it), .nkey = it->nkey, .nbytes = mk_item_nbytes(it),
                        .exp_at = mk_item_exp_at(it), .cas = mk_item_cas(it),
                        .fetched = (it->state & MK_S_FETCHED) != 0, .cls = mk_class_of(e->c, size), .size = size};
    return e->cb(e->ctx, &v);
}

void mk_cache_each(mk_cache *c, int64_t now, mk_cache_each_cb cb, void *ctx)
{
    struct each_ctx e = {c, now, cb, ctx};
    for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
        mk_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        bool go_on = mk_idx_each_locked(c, s, each_item, &e);
        pthread_mutex_unlock(&s->lock);
        if (!go_on)
            return;
    }
}

unsigned mk_cache_item_class(const mk_cache *c, const mk_item *it)
{
    return mk_class_of(c, mk_item_arena_size(it));
}

unsigned mk_cache_class_for(const mk_cache *c, size_t nkey, size_t nbytes)
{
    return mk_class_of(c, mk_cache_item_size(nkey, nbytes));
}
