/* storage/relocate.c — freeing large-log segments that are mostly dead bytes: their live items move through the ordinary allocation path. */
#include "storage/internal.h"

/*
 * Small segments are compacted under evict_lock into the compaction head. A
 * large-log segment cannot be: an item starting in it may run on into other
 * segments, and the item whose value spills into it starts in an earlier one. So
 * when free segments run low while live items take at most 7/8 of the arena, an
 * allocating thread (holding no lock) takes the least-live large-log segment off
 * the FIFO, re-allocates each live item touching it (the items starting in it
 * and the one spilling in) with the same key, value, flags, expiry and cas
 * unique, swaps it in if it is still the linked one, and then frees the segment.
 */

#define RELOCATE_SCAN 128u                 /* segment ids looked at per relocation */
#define RELOCATE_MAX_LIVE (MK_SEG_PAY / 2) /* only segments that are at least half dead bytes */

/* Free segments at or below this start relocation: the reserve plus a margin. */
static uint32_t low_mark(const mk_cache *c) { return 4 + c->nseg / 64; }

/* Move `it` (linked under hv, if it still is) to a new place; true if moved. */
static bool move_item(mk_cache *c, mk_item *it, uint64_t hv, int64_t now)
{
    mk_shard *s = mk_shard_of(c, hv);
    pthread_mutex_lock(&s->lock);
    size_t pos = mk_idx_find_item_locked(c, s, hv, it);
    bool linked = pos != SIZE_MAX && mk_item_validity(c, it, now) == MK_C_OK;
    if (linked)
        mk_item_ref(c, it); /* all its segments stay while we copy */
    pthread_mutex_unlock(&s->lock);
    if (!linked)
        return false;
    mk_item *cp = NULL;
    size_t n = mk_item_nbytes(it);
    bool moved = false;
    if (mk_alloc_copy(c, it, hv, mk_item_exp_at(it), now, &cp) == MK_C_OK) {
        mk_item_copy(cp, 0, it, 0, n);
        pthread_mutex_lock(&s->lock);
        pos = mk_idx_find_item_locked(c, s, hv, it);
        uint8_t st = it->state;
        if (pos != SIZE_MAX && !mk_unlinkable(c, cp) && mk_replace_locked(c, s, hv, pos, it, cp)) {
            cp->state = (uint8_t)(st | MK_S_STORED);
            s->n.total_items--; /* a move, not a store */
            moved = true;
        }
        pthread_mutex_unlock(&s->lock);
        mk_item_put(c, cp);
    }
    mk_item_put(c, it);
    if (moved)
        atomic_fetch_add_explicit(&c->compacted_items, 1, memory_order_relaxed);
    return moved;
}

/* The item spilling into segment id, referenced, if it is still the one written there; NULL if none. */
static mk_item *spill_owner(mk_cache *c, uint32_t id)
{
    const mk_seghdr *h = (const mk_seghdr *)mk_seg_base(c, id);
    if (c->segm[id].first == MK_SEG_HDR || h->owner_seq == 0)
        return NULL;
    uint32_t oid = (uint32_t)(h->owner >> MK_SEG_BITS);
    mk_item *it = NULL;
    /* its segment must not be reopened under us: check and pin under arena_lock (take_free sets refs there) */
    pthread_mutex_lock(&c->arena_lock);
    if (oid < c->nseg && c->segm[oid].state != MK_SEG_FREE &&
        ((const mk_seghdr *)mk_seg_base(c, oid))->seq == h->owner_seq) {
        atomic_fetch_add_explicit(&c->segm[oid].refs, 1, memory_order_relaxed);
        it = (mk_item *)(c->base + h->owner);
    }
    pthread_mutex_unlock(&c->arena_lock);
    return it;
}

static _Thread_local bool relocating; /* this thread's allocations are the moves themselves */

static bool low(const mk_cache *c)
{
    return atomic_load_explicit(&c->inuse_hint, memory_order_relaxed) + low_mark(c) >= c->nseg;
}

/* Move what touches one sparse large-log segment and free it; false if there was none. */
static bool relocate_one(mk_cache *c, int64_t now)
{
    pthread_mutex_lock(&c->evict_lock);
    int32_t id = mk_pick_sparse_large(c, RELOCATE_SCAN, RELOCATE_MAX_LIVE);
    pthread_mutex_unlock(&c->evict_lock);
    if (id >= 0) {
        /* It is off the FIFO and we hold its bias: its bytes stay put while we read them. */
        bool moved = false;
        mk_segm *m = &c->segm[id];
        mk_item *owner = spill_owner(c, (uint32_t)id);
        if (owner) {
            moved |= move_item(c, owner, mk_key_hash(c, owner), now);
            mk_seg_unref(c, mk_segid_of(c, owner));
        }
        char *b = mk_seg_base(c, (uint32_t)id);
        for (uint32_t off = m->first; off < m->wpos;) {
            mk_item *it = (mk_item *)(b + off);
            off += (uint32_t)mk_item_arena_size(it);
            moved |= move_item(c, it, mk_key_hash(c, it), now);
        }
        mk_seg_done(c, (uint32_t)id, moved, now);
    }
    return id >= 0;
}

void mk_relocate_maybe(mk_cache *c, int64_t now)
{
    if (relocating || !c->cfg.evict || !low(c) || !mk_mostly_dead(c))
        return;
    /*
     * Writers wait here rather than evict: memory is short of dead bytes, and one
     * of them frees it. Each does a little, so no one waits for long.
     */
    pthread_mutex_lock(&c->relocate_lock);
    relocating = true;
    for (int n = 0; n < 4 && low(c) && relocate_one(c, now); n++)
        ;
    relocating = false;
    pthread_mutex_unlock(&c->relocate_lock);
}
