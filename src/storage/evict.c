/* storage/evict.c — segment walkers: FIFO eviction with second chance for used items, compaction, reclaim of expired/flushed items. */
#include <string.h>

#include "storage/internal.h"

/* An indexed item at slot pos that has expired or been flushed is counted and unlinked; returns its validity. */
static mk_cache_rc reclaim_if_gone_locked(mk_cache *c, mk_shard *s, size_t pos, mk_item *it, int64_t now)
{
    mk_cache_rc v = mk_item_validity(c, it, now);
    if (v != MK_C_OK) {
        mk_count_gone_locked(c, s, it, v, false);
        mk_unlink_locked(c, s, pos, it);
    }
    return v;
}

/*
 * Copy a linked item into the compaction head, keeping its cas unique. NULL if there
 * is no room. A large value is not copied for a second chance; compaction moves its
 * stub (the copy points at the same external block).
 */
static mk_item *copy_forward(mk_cache *c, const mk_item *it, bool stubs, int64_t now)
{
    char *ext = mk_item_ext(it);
    if (ext && !stubs)
        return NULL;
    size_t nbytes = mk_item_nbytes(it);
    mk_item *cp = mk_arena_alloc(c, MK_NHEADS, mk_item_key(it), it->nkey, nbytes, mk_item_flags(it),
                                 mk_item_exp_at(it), true, mk_item_seq(it), ext, now);
    if (!cp)
        return NULL;
    if (!ext)
        memcpy(mk_item_data(cp), mk_item_data((mk_item *)it), nbytes);
    /* the index holds the copy, not us: drop the allocation's reference (the head's bias remains) */
    atomic_fetch_sub_explicit(&c->segm[mk_segid_of(c, cp)].refs, 1, memory_order_relaxed);
    return cp;
}

bool mk_seg_evict(mk_cache *c, uint32_t id, mk_ev_mode mode, int64_t now)
{
    mk_segm *m = &c->segm[id];
    char *b = mk_seg_base(c, id);
    bool kept = false; /* -M compaction: a live item that found no room stays where it is */
    /* From here on no store links an item allocated in this segment (cache.c checks `dead`). */
    atomic_store(&m->dead, 1);
    for (uint32_t off = MK_SEG_HDR; off < m->wpos;) {
        mk_item *it = (mk_item *)(b + off);
        off += (uint32_t)mk_item_arena_size(it);
        uint64_t hv = mk_key_hash(c, it);
        mk_shard *s = mk_shard_of(c, hv);
        pthread_mutex_lock(&s->lock);
        size_t pos = mk_idx_find_item_locked(c, s, hv, it);
        if (pos != SIZE_MAX && reclaim_if_gone_locked(c, s, pos, it, now) == MK_C_OK &&
            mode != MK_EV_RECLAIM) {
            unsigned freq = it->state & MK_S_FREQ;
            bool compact = mode == MK_EV_COMPACT;
            mk_item *cp = (compact || freq) ? copy_forward(c, it, compact, now) : NULL;
            if (cp) {
                uint8_t st = it->state;
                if (it->meta & MK_M_EXT)
                    mk_ext_ref(it); /* the value moves with its stub: keep it mapped across the swap */
                mk_replace_locked(c, s, hv, pos, it, cp);
                if (it->meta & MK_M_EXT)
                    mk_ext_unref(c, it);
                /* a second chance costs one unit of frequency; fetched-ness carries over */
                cp->state = (uint8_t)((st & ~MK_S_FREQ) | (freq ? freq - 1 : 0) | MK_S_STORED);
                s->n.total_items--; /* a move, not a store */
                s->n.reinserted++;
            } else if (compact && !c->cfg.evict) {
                kept = true;
            } else {
                mk_count_gone_locked(c, s, it, MK_C_OK, true);
                mk_unlink_locked(c, s, pos, it);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    if ((mode == MK_EV_RECLAIM || kept) && atomic_load(&m->live) != 0) {
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

/* -M compaction: how many segment ids one call looks at, and the least it must win to copy a segment. */
#define COMPACT_SCAN 1024u
#define COMPACT_MIN_GAIN (MK_SEG_SIZE / 32)

/* Bytes a segment's live items may take once copied (+8 for the kept cas, +3 for alignment of the expiry). */
static uint64_t copy_estimate(const mk_segm *m)
{
    return atomic_load_explicit(&m->live, memory_order_relaxed) +
           11 * (uint64_t)atomic_load_explicit(&m->nlive, memory_order_relaxed);
}

/* -M: take the sealed segment with the smallest copy estimate <= max_est off the FIFO (arena_lock held); -1 if none. */
static int32_t pick_sparse_locked(mk_cache *c, uint64_t max_est)
{
    int32_t best = -1;
    uint64_t best_est = max_est + 1;
    uint32_t scan = c->nseg < COMPACT_SCAN ? c->nseg : COMPACT_SCAN;
    for (uint32_t n = 0; n < scan && best_est > 0; n++) {
        uint32_t id = c->compact_pos++ % c->nseg;
        if (c->segm[id].state != MK_SEG_SEALED)
            continue;
        uint64_t est = copy_estimate(&c->segm[id]);
        if (est < best_est) {
            best_est = est;
            best = (int32_t)id;
        }
    }
    if (best >= 0)
        fifo_remove_locked(c, best);
    return best;
}

/* -M: copy segment id's live items forward and free it; false (it goes back on the FIFO) if some found no room. */
static bool compact_seg(mk_cache *c, int32_t id, int64_t now)
{
    if (mk_seg_evict(c, (uint32_t)id, MK_EV_COMPACT, now)) {
        mk_seg_unref(c, (uint32_t)id);
        return true;
    }
    pthread_mutex_lock(&c->arena_lock);
    fifo_push_locked(c, id);
    pthread_mutex_unlock(&c->arena_lock);
    return false;
}

/*
 * -M: make room without losing a live item. With a compaction head open, copy into
 * it a segment whose live items fit in its room (a whole segment is freed). Else
 * reclaim the oldest segment's expired and flushed items (freeing it if nothing is
 * left); failing that, copy the live items of the sparsest sealed segment among the
 * next COMPACT_SCAN into a fresh compaction head (one spare segment is reserved for
 * it) and free it, provided that wins at least COMPACT_MIN_GAIN bytes; the
 * allocation head then fills the rest of that head. Copies keep cas, expiry, flags
 * and external values. Fails only when every segment looked at is dense.
 */
static bool compact_one(mk_cache *c, int64_t now)
{
    int32_t comp = c->comp;
    if (comp >= 0) {
        uint64_t room = MK_SEG_SIZE - c->segm[comp].wpos;
        pthread_mutex_lock(&c->arena_lock);
        int32_t id = pick_sparse_locked(c, room);
        pthread_mutex_unlock(&c->arena_lock);
        if (id >= 0 && compact_seg(c, id, now))
            return true;
        c->comp = -1; /* nothing fits in what is left of it: seal it, its tail is dead bytes like any other */
        pthread_mutex_lock(&c->arena_lock);
        fifo_push_locked(c, comp);
        pthread_mutex_unlock(&c->arena_lock);
    }
    pthread_mutex_lock(&c->arena_lock);
    int32_t head = c->fifo_head;
    if (head >= 0)
        fifo_remove_locked(c, head);
    pthread_mutex_unlock(&c->arena_lock);
    if (head < 0)
        return false;
    if (mk_seg_evict(c, (uint32_t)head, MK_EV_RECLAIM, now)) {
        mk_seg_unref(c, (uint32_t)head);
        return true;
    }
    pthread_mutex_lock(&c->arena_lock);
    fifo_push_locked(c, head);
    int32_t id = pick_sparse_locked(c, MK_SEG_SIZE - MK_SEG_HDR - COMPACT_MIN_GAIN);
    pthread_mutex_unlock(&c->arena_lock);
    return id >= 0 && compact_seg(c, id, now);
}

bool mk_evict_one(mk_cache *c, int64_t now)
{
    pthread_mutex_lock(&c->evict_lock);
    if (!c->cfg.evict) {
        bool ok = compact_one(c, now);
        pthread_mutex_unlock(&c->evict_lock);
        return ok;
    }
    pthread_mutex_lock(&c->arena_lock);
    int32_t id = c->fifo_head;
    if (id >= 0)
        fifo_remove_locked(c, id);
    pthread_mutex_unlock(&c->arena_lock);
    bool gone = false;
    if (id >= 0) {
        gone = mk_seg_evict(c, (uint32_t)id, MK_EV_EVICT, now);
        if (gone)
            mk_seg_unref(c, (uint32_t)id); /* the bias: freed now, or by the last holder's put */
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
        if (pos != SIZE_MAX)
            reclaim_if_gone_locked(c, s, pos, it, now);
        pthread_mutex_unlock(&s->lock);
    }
    mk_seg_unref(c, (uint32_t)id);
}

/*
 * Advance incremental index growth (inserts do most of it; this finishes tables
 * of shards that see few inserts): about MIGRATE_BUDGET old slots per call over
 * all shards, at least MIGRATE_CHUNK per shard, MIGRATE_CHUNK per lock hold.
 */
#define MIGRATE_BUDGET ((size_t)1 << 18)
#define MIGRATE_CHUNK ((size_t)4096)
static void migrate_indexes(mk_cache *c)
{
    size_t nshards = (size_t)1 << c->shard_bits;
    size_t per_shard = MIGRATE_BUDGET / nshards > MIGRATE_CHUNK ? MIGRATE_BUDGET / nshards : MIGRATE_CHUNK;
    for (size_t i = 0; i < nshards; i++) {
        mk_shard *s = &c->shards[i];
        for (size_t done = 0; done < per_shard; done += MIGRATE_CHUNK) {
            pthread_mutex_lock(&s->lock);
            bool more = mk_idx_migrate_locked(c, &s->idx, MIGRATE_CHUNK);
            pthread_mutex_unlock(&s->lock);
            if (!more)
                break;
        }
    }
}

void mk_cache_maintain(mk_cache *c, int64_t now)
{
    mk_flush_tick(c, now);
    migrate_indexes(c);
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
        bool compact = !empty && atomic_load(&c->segm[id].live) < MK_SEG_SIZE / 4;
        if (!empty && !compact)
            continue;
        pthread_mutex_lock(&c->arena_lock);
        fifo_remove_locked(c, (int32_t)id);
        pthread_mutex_unlock(&c->arena_lock);
        if (compact && !mk_seg_evict(c, id, MK_EV_COMPACT, now)) {
            pthread_mutex_lock(&c->arena_lock); /* -M: items that found no room stay */
            fifo_push_locked(c, (int32_t)id);
            pthread_mutex_unlock(&c->arena_lock);
            continue;
        }
        mk_seg_unref(c, id);
    }
    pthread_mutex_unlock(&c->evict_lock);
}
