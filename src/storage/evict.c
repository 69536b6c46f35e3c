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

/* Copy a linked small item into the compaction head, keeping its cas unique. NULL if there is no room. */
static mk_item *copy_forward(mk_cache *c, const mk_item *it, int64_t now)
{
    size_t nbytes = mk_item_nbytes(it);
    mk_item *cp = mk_arena_alloc(c, MK_HEAD_COMP, mk_item_key(it), it->nkey, nbytes, mk_item_flags(it),
                                 mk_item_exp_at(it), mk_item_xmode(it), mk_item_unique(it), now);
    if (!cp)
        return NULL;
    memcpy(mk_item_data(cp), mk_item_data((mk_item *)it), nbytes);
    /* the index holds the copy, not us: drop the allocation's reference (the head's bias remains) */
    atomic_fetch_sub_explicit(&c->segm[mk_segid_of(c, cp)].refs, 1, memory_order_relaxed);
    return cp;
}

/*
 * What happens to a live, valid item of a walked segment. Small items move:
 * copied forward into the main log for a second chance (freq > 0), which for
 * an item leaving probation is its promotion, or by compaction. So do large
 * items in use that lie within the segment. One that runs into other segments
 * does not move (it would have to be re-allocated across segments, and it pins
 * no more than its own bytes): it keeps its place, and so does its segment,
 * which goes back on the FIFO with the frequency spent.
 */
static void walk_item_locked(mk_cache *c, mk_shard *s, uint64_t hv, size_t pos, mk_item *it, mk_ev_mode mode,
                             int64_t now, bool *evicted, bool *moved)
{
    unsigned freq = it->state & MK_S_FREQ;
    bool keep = mode == MK_EV_COMPACT || (mode == MK_EV_EVICT && freq);
    unsigned left = freq ? freq - 1 : 0; /* the frequency it keeps */
    bool span = it->meta & MK_M_SPAN;
    /* a large item in use that lies within its segment is moved too: copying it costs at most the segment that
     * keeping it in place would pin, dead bytes included, for as many passes as it has frequency */
    bool movable = !span || (mode == MK_EV_EVICT &&
                             (uintptr_t)it - (uintptr_t)mk_seghdr_of(it) + mk_item_arena_size(it) <= MK_SEG_SIZE);
    if (keep && movable) {
        mk_item *cp = copy_forward(c, it, now);
        if (cp) {
            uint8_t st = it->state;
            mk_replace_locked(c, s, hv, pos, it, cp); /* (the copy is small-log: always true) */
            /* a second chance costs one unit of frequency; fetched-ness carries over */
            cp->state = (uint8_t)((st & ~MK_S_FREQ) | left | MK_S_STORED);
            s->n.total_items--; /* a move, not a store */
            if (mode == MK_EV_EVICT)
                s->n.reinserted++;
            else
                atomic_fetch_add_explicit(&c->compacted_items, 1, memory_order_relaxed);
            *moved = true;
            return;
        }
    }
    /* not moved: a large item kept keeps its place with the frequency spent; compaction that found no room for
     * a small one leaves it too; either way its segment stays */
    if (keep && (span || mode == MK_EV_COMPACT)) {
        if (span) {
            it->state = (uint8_t)((it->state & ~MK_S_FREQ) | left);
            if (mode == MK_EV_EVICT)
                s->n.reinserted++;
        }
        return;
    }
    mk_count_gone_locked(c, s, it, MK_C_OK, true);
    mk_unlink_locked(c, s, pos, it);
    *evicted = true;
}

bool mk_seg_evict(mk_cache *c, uint32_t id, mk_ev_mode mode, int64_t now)
{
    mk_segm *m = &c->segm[id];
    char *b = mk_seg_base(c, id);
    bool evicted = false, moved = false;
    /* From here on no store links an item allocated in this segment (cache.c checks `dead`; span.c too). */
    atomic_store(&m->dead, 1);
    for (uint32_t off = m->first; off < m->wpos;) {
        mk_item *it = (mk_item *)(b + off);
        off += (uint32_t)mk_item_arena_size(it);
        uint64_t hv = mk_key_hash(c, it);
        mk_shard *s = mk_shard_of(c, hv);
        pthread_mutex_lock(&s->lock);
        size_t pos = mk_idx_find_item_locked(c, s, hv, it);
        if (pos != SIZE_MAX && reclaim_if_gone_locked(c, s, pos, it, now) == MK_C_OK &&
            mode != MK_EV_RECLAIM)
            walk_item_locked(c, s, hv, pos, it, mode, now, &evicted, &moved);
        pthread_mutex_unlock(&s->lock);
    }
    /* seq_cst, after `dead`: a large item claiming bytes here is either seen now or sees `dead` (span.c) */
    if (atomic_load(&m->live) != 0) {
        atomic_store(&m->dead, 0);
        return false;
    }
    mk_freed_why why = evicted ? MK_FREED_EVICTED : moved ? MK_FREED_COMPACTED : MK_FREED_EMPTY;
    atomic_fetch_add_explicit(&c->seg_freed[why], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->seg_evictions, 1, memory_order_relaxed);
    return true; /* the caller takes it off the FIFO and drops the bias */
}

/*
 * Which log of small items gives up a segment, as S3-FIFO decides: probation,
 * unless main has grown past 19/20 of the small items' segments or probation has
 * nothing sealed (arena_lock held). With few reads main stays small and
 * probation takes the whole share.
 */
static int small_victim_locked(const mk_cache *c)
{
    if (c->fifo_head[MK_KIND_PROB] < 0)
        return MK_KIND_SMALL;
    if (c->fifo_head[MK_KIND_SMALL] < 0)
        return MK_KIND_PROB;
    uint64_t main = c->inuse_kind[MK_KIND_SMALL], all = main + c->inuse_kind[MK_KIND_PROB];
    return main * 20 > all * 19 ? MK_KIND_SMALL : MK_KIND_PROB;
}

static uint64_t seq_of(const mk_cache *c, int32_t id) { return ((mk_seghdr *)mk_seg_base(c, (uint32_t)id))->seq; }

/*
 * Take the oldest sealed segment of the log eviction should take from off its
 * FIFO; -1 if there is none (evict_lock held: it reads the hit measure). Small or
 * large items: those that earn fewer hits per segment, so a stream of large
 * values does not push out many small items that are asked for as often. The
 * hits are the last seconds' (mk_cache_maintain measures them), the segments
 * those each log holds now: a log that shrinks earns more per segment at once,
 * and eviction turns to the other log before the next measure. (Deciding once a
 * second overshot: under churn the cache turns over in seconds, so a whole
 * second of evicting one log emptied it, and the logs swung between ~2 and ~1000
 * large segments.) Without a measure yet, the older of the two. Among small
 * items, small_victim_locked decides.
 */
static int32_t fifo_take_oldest(mk_cache *c)
{
    pthread_mutex_lock(&c->arena_lock);
    int32_t s = c->fifo_head[small_victim_locked(c)], l = c->fifo_head[MK_KIND_LARGE];
    int32_t id;
    if (s < 0 || l < 0) {
        id = s >= 0 ? s : l;
    } else if (c->hit_rate[0] + c->hit_rate[1] > 0) {
        double small = (double)(c->inuse_kind[MK_KIND_SMALL] + c->inuse_kind[MK_KIND_PROB]);
        double large = (double)c->inuse_kind[MK_KIND_LARGE];
        id = c->hit_rate[1] * small <= c->hit_rate[0] * large ? l : s; /* large's hits/segment <= small's */
    } else {
        id = seq_of(c, s) < seq_of(c, l) ? s : l;
    }
    if (id >= 0)
        mk_fifo_remove_locked(c, id);
    pthread_mutex_unlock(&c->arena_lock);
    return id;
}

/* After a walk: a segment with nothing live loses its bias (freed now or by its last holder), else it goes back
 * on the FIFO's tail. Returns `gone`. */
static bool seg_walked(mk_cache *c, int32_t id, bool gone)
{
    if (gone) {
        mk_seg_unref(c, (uint32_t)id);
    } else {
        pthread_mutex_lock(&c->arena_lock);
        mk_fifo_push_locked(c, id);
        pthread_mutex_unlock(&c->arena_lock);
    }
    return gone;
}

/* -M compaction: how many segment ids one call looks at, and the least it must win to copy a segment. */
#define COMPACT_SCAN 1024u
#define COMPACT_MIN_GAIN (MK_SEG_SIZE / 32)

/*
 * Bytes a segment's live items may take once copied (+8 for the kept cas, +3 for
 * alignment of the expiry). Large items are not copied: a large-log segment can
 * only be freed this way once nothing in it is live.
 */
static uint64_t copy_estimate(const mk_segm *m)
{
    uint64_t live = atomic_load_explicit(&m->live, memory_order_relaxed);
    if (m->kind == MK_KIND_LARGE)
        return live ? UINT64_MAX : 0;
    return live + 11 * (uint64_t)atomic_load_explicit(&m->nlive, memory_order_relaxed);
}

/* -M: take the sealed segment with the smallest copy estimate <= max_est off the FIFO (arena_lock held); -1 if none. */
/* Bytes the live items of a large-log segment would cost to move elsewhere (relocate.c); small ones are not. */
static uint64_t relocate_estimate(const mk_segm *m)
{
    return m->kind == MK_KIND_LARGE ? atomic_load_explicit(&m->live, memory_order_relaxed) : UINT64_MAX;
}

/*
 * Take off the FIFO the sealed segment with the smallest cost(segment) <= max
 * among the next `scan` segment ids (arena_lock held); -1 if none. A segment held
 * by a reader or a writer is passed over: it would only be freed when they let go.
 */
static int32_t pick_locked(mk_cache *c, uint32_t scan, uint64_t max, uint64_t (*cost)(const mk_segm *))
{
    int32_t best = -1;
    uint64_t best_cost = max + 1; /* max < UINT64_MAX */
    if (scan > c->nseg)
        scan = c->nseg;
    for (uint32_t n = 0; n < scan && best_cost > 0; n++) {
        uint32_t id = c->compact_pos++ % c->nseg;
        const mk_segm *m = &c->segm[id];
        if (m->state != MK_SEG_SEALED || atomic_load_explicit(&m->refs, memory_order_relaxed) > 1)
            continue;
        uint64_t est = cost(m);
        if (est < best_cost) {
            best_cost = est;
            best = (int32_t)id;
        }
    }
    if (best >= 0)
        mk_fifo_remove_locked(c, best);
    return best;
}

static int32_t pick_sparse_locked(mk_cache *c, uint64_t max_est)
{
    return pick_locked(c, COMPACT_SCAN, max_est, copy_estimate);
}

int32_t mk_pick_sparse_large(mk_cache *c, uint32_t scan, uint64_t max_live)
{
    pthread_mutex_lock(&c->arena_lock);
    int32_t id = pick_locked(c, scan, max_live, relocate_estimate);
    pthread_mutex_unlock(&c->arena_lock);
    return id;
}

void mk_seg_done(mk_cache *c, uint32_t id, bool moved, int64_t now)
{
    pthread_mutex_lock(&c->evict_lock);
    if (seg_walked(c, (int32_t)id, mk_seg_evict(c, id, MK_EV_RECLAIM, now)) && moved) {
        /* counted as found empty: it was emptied by moving its items */
        atomic_fetch_sub_explicit(&c->seg_freed[MK_FREED_EMPTY], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->seg_freed[MK_FREED_COMPACTED], 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&c->evict_lock);
}

/* -M: copy segment id's live items forward and free it; false (it goes back on the FIFO) if some found no room. */
static bool compact_seg(mk_cache *c, int32_t id, int64_t now)
{
    return seg_walked(c, id, mk_seg_evict(c, (uint32_t)id, MK_EV_COMPACT, now));
}

/*
 * Free a segment by moving live items, not evicting them. With a compaction head
 * open, copy into it a segment whose live items fit in its room (a whole segment
 * is freed); else copy the sparsest sealed segment among the next COMPACT_SCAN
 * into a fresh compaction head (one spare segment is reserved for it), provided
 * that wins at least COMPACT_MIN_GAIN bytes; the allocation head then fills the
 * rest of that head. A large-log segment is taken only once nothing in it is
 * live. Copies keep cas, expiry and flags. False when every segment looked at is
 * too dense.
 */
typedef enum { COMPACT_NONE, COMPACT_ROOM, COMPACT_SEGMENT } compact_rc;

/* COMPACT_SEGMENT: a segment is free; COMPACT_ROOM: one was freed but a fresh compaction head took its place. */
static compact_rc compact_sparse(mk_cache *c, int64_t now)
{
    int32_t comp = c->comp;
    if (comp >= 0) {
        uint64_t room = MK_SEG_SIZE - c->segm[comp].wpos;
        pthread_mutex_lock(&c->arena_lock);
        int32_t id = pick_sparse_locked(c, room);
        pthread_mutex_unlock(&c->arena_lock);
        if (id >= 0 && compact_seg(c, id, now))
            return COMPACT_SEGMENT;
        c->comp = -1; /* nothing fits in what is left of it: seal it, its tail is dead bytes like any other */
        pthread_mutex_lock(&c->arena_lock);
        mk_fifo_push_locked(c, comp);
        pthread_mutex_unlock(&c->arena_lock);
    }
    pthread_mutex_lock(&c->arena_lock);
    int32_t id = pick_sparse_locked(c, MK_SEG_SIZE - MK_SEG_HDR - COMPACT_MIN_GAIN);
    pthread_mutex_unlock(&c->arena_lock);
    if (id < 0 || !compact_seg(c, id, now))
        return COMPACT_NONE;
    return c->comp >= 0 ? COMPACT_ROOM : COMPACT_SEGMENT; /* (a segment with nothing live needs no head) */
}

/*
 * -M: make room without losing a live item: compact; failing that, reclaim the
 * oldest segment's expired and flushed items (freeing it if nothing is left).
 */
static bool compact_one(mk_cache *c, int64_t now)
{
    if (compact_sparse(c, now) != COMPACT_NONE)
        return true;
    int32_t head = fifo_take_oldest(c);
    if (head < 0)
        return false;
    if (seg_walked(c, head, mk_seg_evict(c, (uint32_t)head, MK_EV_RECLAIM, now)))
        return true;
    return compact_sparse(c, now) != COMPACT_NONE;
}

/*
 * Memory is short because of dead bytes, not live ones, while live items take at
 * most this share of the arena: then segments are compacted rather than evicted.
 */
#define COMPACT_LIVE_NUM 7
#define COMPACT_LIVE_DEN 8

bool mk_mostly_dead(const mk_cache *c)
{
    uint64_t live = atomic_load_explicit(&c->live_bytes, memory_order_relaxed);
    uint64_t cap = (uint64_t)c->nseg * MK_SEG_PAY;
    return live * COMPACT_LIVE_DEN <= cap * COMPACT_LIVE_NUM;
}

bool mk_evict_one(mk_cache *c, bool whole, int64_t now)
{
    pthread_mutex_lock(&c->evict_lock);
    if (!c->cfg.evict) {
        bool ok = compact_one(c, now);
        pthread_mutex_unlock(&c->evict_lock);
        return ok;
    }
    /* Room in the compaction head serves an allocation head (it takes the head over), not a spanning value's next segment. */
    for (int i = 0; i < 3 && mk_mostly_dead(c); i++) {
        compact_rc rc = compact_sparse(c, now);
        if (rc == COMPACT_SEGMENT || (rc == COMPACT_ROOM && !whole)) {
            pthread_mutex_unlock(&c->evict_lock);
            return true;
        }
        if (rc == COMPACT_NONE)
            break;
    }
    /*
     * The oldest segment goes. A large-log segment that keeps live bytes (an item
     * in use, or part of a value that starts in a younger segment) goes back to the
     * FIFO's tail with the frequency spent, and the next one is tried; after four
     * rounds of that, items in use are evicted too.
     */
    bool gone = false;
    for (uint32_t n = 0; !gone && n <= 5 * c->nseg; n++) {
        int32_t id = fifo_take_oldest(c);
        if (id < 0)
            break;
        gone = seg_walked(c, id, mk_seg_evict(c, (uint32_t)id, n < 4 * c->nseg ? MK_EV_EVICT : MK_EV_FORCE, now));
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
    uint32_t start = id >= 0 ? c->segm[id].first : 0; /* before it: a value spilling in */
    if (id >= 0) /* keeps it from being freed if it is sealed and evicted meanwhile */
        atomic_fetch_add_explicit(&c->segm[id].refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&c->heads[h].lock);
    if (id < 0)
        return;
    char *b = mk_seg_base(c, (uint32_t)id);
    for (uint32_t off = start; off < end;) {
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

/*
 * The hit measure eviction weighs the logs by (fifo_take_oldest): hits on small
 * and on large items over the last seconds (an exponentially weighted mean,
 * halved each call). Items are asked for regardless of their size, so a byte of
 * small items usually serves more hits than a byte of large ones; weighing keeps
 * a stream of large values from pushing out many small items (memcached's
 * per-class memory does the same thing by accident), and gives memory back to
 * the large log when its bytes earn more.
 */
static void weigh_logs(mk_cache *c)
{
    pthread_mutex_lock(&c->evict_lock); /* (guards hit_rate and hits_seen: maintain may run on several threads) */
    uint64_t hits[2] = {0, 0};
    size_t nshards = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < nshards; i++) {
        mk_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        hits[0] += s->n.hits[0];
        hits[1] += s->n.hits[1];
        pthread_mutex_unlock(&s->lock);
    }
    for (int k = 0; k < 2; k++) {
        c->hit_rate[k] = c->hit_rate[k] / 2 + (double)(hits[k] - c->hits_seen[k]) / 2;
        c->hits_seen[k] = hits[k];
    }
    pthread_mutex_unlock(&c->evict_lock);
}

void mk_cache_maintain(mk_cache *c, int64_t now)
{
    mk_flush_tick(c, now);
    migrate_indexes(c);
    weigh_logs(c);
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
        bool compact = !empty && c->segm[id].kind != MK_KIND_LARGE &&
                       atomic_load(&c->segm[id].live) < MK_SEG_SIZE / 4;
        if (!empty && !compact)
            continue;
        pthread_mutex_lock(&c->arena_lock);
        mk_fifo_remove_locked(c, (int32_t)id);
        pthread_mutex_unlock(&c->arena_lock);
        seg_walked(c, (int32_t)id, empty || mk_seg_evict(c, id, MK_EV_COMPACT, now)); /* items with no room stay */
    }
    pthread_mutex_unlock(&c->evict_lock);
}
