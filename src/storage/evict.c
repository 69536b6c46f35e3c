/* storage/evict.c — segment walkers: FIFO eviction with second chance for used items, compaction, reclaim of expired/flushed items. */
#include <string.h>

#include "storage/internal.h"

/* Copy a linked item into the compaction head, keeping its cas unique. NULL if there is no room. */
static mk_item *copy_forward(mk_cache *c, const mk_item *it, int64_t now)
{
    if (it->meta & MK_M_EXT) /* large values are not copied: no second chance */
        return NULL;
    size_t nbytes = mk_item_nbytes(it);
    mk_item *cp = mk_arena_alloc(c, MK_NHEADS, mk_item_key(it), it->nkey, nbytes, mk_item_flags(it),
                                 mk_item_exp_at(it), true, mk_item_seq(it), NULL, now);
    if (!cp)
        return NULL;
    memcpy(mk_item_data(cp), mk_item_data((mk_item *)it), nbytes);
    /* the index holds the copy, not us: drop the allocation's reference (the head's bias remains) */
    atomic_fetch_sub_explicit(&c->segm[mk_segid_of(c, cp)].refs, 1, memory_order_relaxed);
    return cp;
}

bool mk_seg_evict(mk_cache *c, uint32_t id, mk_ev_mode mode, int64_t now)
{
    mk_segm *m = &c->segm[id];
    char *b = mk_seg_base(c, id);
    /* From here on no store links an item allocated in this segment (cache.c checks `dead`). */
    atomic_store(&m->dead, 1);
    for (uint32_t off = MK_SEG_HDR; off < m->wpos;) {
        mk_item *it = (mk_item *)(b + off);
        off += (uint32_t)mk_item_arena_size(it);
        uint64_t hv = mk_key_hash(c, it);
        mk_shard *s = mk_shard_of(c, hv);
        pthread_mutex_lock(&s->lock);
        size_t pos = mk_idx_find_item_locked(c, s, hv, it);
        if (pos != SIZE_MAX) {
            mk_cache_rc v = mk_item_validity(c, it, now);
            if (v != MK_C_OK) {
                mk_count_gone_locked(c, s, it, v, false);
                mk_unlink_locked(c, s, pos, it);
            } else if (mode != MK_EV_RECLAIM) {
                unsigned freq = it->state & MK_S_FREQ;
                mk_item *cp = (mode == MK_EV_COMPACT || freq) ? copy_forward(c, it, now) : NULL;
                if (cp) {
                    uint8_t st = it->state;
                    mk_unlink_locked(c, s, pos, it);
                    mk_link_locked(c, s, hv, SIZE_MAX, cp);
                    /* a second chance costs one unit of frequency; fetched-ness carries over */
                    cp->state = (uint8_t)((st & ~MK_S_FREQ) | (freq ? freq - 1 : 0) | MK_S_STORED);
                    s->n.total_items--; /* a move, not a store */
                    s->n.reinserted++;
                } else {
                    mk_count_gone_locked(c, s, it, MK_C_OK, true);
                    mk_unlink_locked(c, s, pos, it);
                }
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (mode == MK_EV_RECLAIM && atomic_load(&m->live) != 0) {
        atomic_store(&m->dead, 0);
        return false;
    }
    atomic_fetch_add_explicit(&c->seg_evictions, 1, memory_order_relaxed);
    return true; /* the caller takes it off the FIFO and drops the bias */
}

/* Take segment id off the FIFO (arena_lock held). */
static void fifo_remove_locked(mk_cache *c, int32_t id)
{
    mk_segm *m = &c->segm[id];
    if (m->prev >= 0) c->segm[m->prev].next = m->next; else c->fifo_head = m->next;
    if (m->next >= 0) c->segm[m->next].prev = m->prev; else c->fifo_tail = m->prev;
    m->prev = m->next = -1;
    m->state = MK_SEG_BUSY;
}

static void fifo_push_locked(mk_cache *c, int32_t id)
{
    mk_segm *m = &c->segm[id];
    m->state = MK_SEG_SEALED;
    m->next = -1;
    m->prev = c->fifo_tail;
    if (c->fifo_tail >= 0) c->segm[c->fifo_tail].next = id; else c->fifo_head = id;
    c->fifo_tail = id;
}

bool mk_evict_one(mk_cache *c, int64_t now)
{
    pthread_mutex_lock(&c->evict_lock);
    pthread_mutex_lock(&c->arena_lock);
    int32_t id = c->fifo_head;
    if (id >= 0)
        fifo_remove_locked(c, id);
    pthread_mutex_unlock(&c->arena_lock);
    bool gone = false;
    if (id >= 0) {
        gone = mk_seg_evict(c, (uint32_t)id, c->cfg.evict ? MK_EV_EVICT : MK_EV_RECLAIM, now);
        if (gone) {
            mk_seg_unref(c, (uint32_t)id); /* the bias: freed now, or by the last holder's put */
        } else { /* -M: live items stay; look at the next segment next time */
            pthread_mutex_lock(&c->arena_lock);
            fifo_push_locked(c, id);
            pthread_mutex_unlock(&c->arena_lock);
        }
    }
    pthread_mutex_unlock(&c->evict_lock);
    return gone;
}

/* Unlink expired/flushed items of an open segment up to its current write position. */
static void sweep_open(mk_cache *c, unsigned h, int64_t now)
{
    pthread_mutex_lock(&c->heads[h].lock);
    int32_t id = c->heads[h].seg;
    uint32_t end = id >= 0 ? c->segm[id].wpos : 0;
    if (id >= 0) /* keeps it from being freed if it is sealed and evicted meanwhile */
        atomic_fetch_add_explicit(&c->segm[id].refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&c->heads[h].lock);
    if (id < 0)
        return;
    char *b = mk_seg_base(c, (uint32_t)id);
    for (uint32_t off = MK_SEG_HDR; off < end;) {
        mk_item *it = (mk_item *)(b + off);
        off += (uint32_t)mk_item_arena_size(it);
        uint64_t hv = mk_key_hash(c, it);
        mk_shard *s = mk_shard_of(c, hv);
        pthread_mutex_lock(&s->lock);
        size_t pos = mk_idx_find_item_locked(c, s, hv, it);
        if (pos != SIZE_MAX) {
            mk_cache_rc v = mk_item_validity(c, it, now);
            if (v != MK_C_OK) {
                mk_count_gone_locked(c, s, it, v, false);
                mk_unlink_locked(c, s, pos, it);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    mk_seg_unref(c, (uint32_t)id);
}

void mk_cache_maintain(mk_cache *c, int64_t now)
{
    mk_flush_tick(c, now);
    /*
     * Open segments (heads, sealed only when full) are swept on every call. Then a
     * cursor walks the sealed segments: expired and flushed items are unlinked;
     * a segment left empty is freed, one left mostly dead (< 1/4 live) is compacted.
     */
    for (unsigned h = 0; h < MK_NHEADS; h++)
        sweep_open(c, h, now); /* head lock, then shard locks: not under evict_lock */
    pthread_mutex_lock(&c->evict_lock);
    uint32_t budget = c->nseg / 16;
    if (budget < 16) budget = 16;
    if (budget > 256) budget = 256;
    for (uint32_t n = 0; n < budget && n < c->nseg; n++) {
        uint32_t id = c->sweep_pos++ % c->nseg;
        pthread_mutex_lock(&c->arena_lock);
        bool sealed = c->segm[id].state == MK_SEG_SEALED; /* only evict_lock holders change that */
        pthread_mutex_unlock(&c->arena_lock);
        if (!sealed)
            continue;
        bool empty = mk_seg_evict(c, id, MK_EV_RECLAIM, now); /* in place, keeping its FIFO position */
        bool compact = !empty && c->cfg.evict && atomic_load(&c->segm[id].live) < MK_SEG_SIZE / 4;
        if (!empty && !compact)
            continue;
        pthread_mutex_lock(&c->arena_lock);
        fifo_remove_locked(c, (int32_t)id);
        pthread_mutex_unlock(&c->arena_lock);
        if (compact)
            mk_seg_evict(c, id, MK_EV_COMPACT, now);
        mk_seg_unref(c, id);
    }
    pthread_mutex_unlock(&c->evict_lock);
}
