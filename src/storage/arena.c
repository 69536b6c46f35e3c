/* storage/arena.c — the segment arena: allocation heads, the memory charge, free list and FIFO, segment release. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "storage/internal.h"

bool mk_arena_init(mk_cache *c)
{
    size_t limit = c->cfg.mem_limit;
    if (limit < MK_SEG_MIN * MK_SEG_SIZE)
        limit = MK_SEG_MIN * MK_SEG_SIZE;
    c->nseg = (uint32_t)(limit / MK_SEG_SIZE);
    c->limit = (uint64_t)c->nseg * MK_SEG_SIZE;

    c->mem_fd = -1;
    if (c->cfg.mem_file) {
        if (!mk_persist_map(c))
            return false;
    } else {
        c->map_len = ((size_t)c->nseg + 1) * MK_SEG_SIZE;
        c->map = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (c->map == MAP_FAILED) {
            c->map = NULL;
            return false;
        }
        c->base = (char *)(((uintptr_t)c->map + MK_SEG_SIZE - 1) & ~(uintptr_t)(MK_SEG_SIZE - 1));
    }
    /* items stay out of core dumps unless asked (memkitd -r): a crash report should not carry the
     * cache's sessions and tokens (it is advice: a kernel without it dumps them) */
    if (!c->cfg.dump_items)
        (void)madvise(c->map, c->map_len, MADV_DONTDUMP);
    c->segm = calloc(c->nseg, sizeof *c->segm);
    if (!c->segm)
        return false;
    for (uint32_t i = 0; i < c->nseg; i++) {
        c->segm[i].next = i + 1 < c->nseg ? (int32_t)i + 1 : -1;
        c->segm[i].prev = -1;
    }
    c->free_head = 0;
    c->nfree = c->nseg;
    for (int k = 0; k < MK_NKINDS; k++)
        c->fifo_head[k] = c->fifo_tail[k] = -1;
    c->comp = -1;
    for (unsigned h = 0; h < MK_NHEADS; h++) {
        pthread_mutex_init(&c->heads[h].lock, NULL);
        c->heads[h].seg = -1;
        c->heads[h].kind = h == MK_HEAD_LARGE ? MK_KIND_LARGE : h == MK_HEAD_PROB ? MK_KIND_PROB : MK_KIND_SMALL;
    }
    pthread_mutex_init(&c->arena_lock, NULL);
    pthread_mutex_init(&c->evict_lock, NULL);
    pthread_mutex_init(&c->relocate_lock, NULL);
    /* the index (as memcached's hash table, outside -m up to a point) and the sketches (at most 1/32: sketch.c) */
    c->idx_allowance = c->cfg.mem_limit / 16 + ((uint64_t)4 << 20) + c->cfg.mem_limit / 32;
    return true;
}

void mk_arena_free(mk_cache *c)
{
    if (c->segm) {
        free(c->segm);
    }
    if (c->map)
        munmap(c->map, c->map_len);
    if (c->mem_fd >= 0)
        close(c->mem_fd);
    for (unsigned h = 0; h < MK_NHEADS; h++)
        pthread_mutex_destroy(&c->heads[h].lock);
    pthread_mutex_destroy(&c->arena_lock);
    pthread_mutex_destroy(&c->evict_lock);
    pthread_mutex_destroy(&c->relocate_lock);
}

uint64_t mk_meta_excess(const mk_cache *c)
{
    uint64_t meta = atomic_load_explicit(&c->idx_bytes, memory_order_relaxed) +
                    atomic_load_explicit(&c->sketch_bytes, memory_order_relaxed);
    return meta > c->idx_allowance ? meta - c->idx_allowance : 0;
}

uint64_t mk_charged_locked(const mk_cache *c)
{
    return (uint64_t)c->inuse * MK_SEG_SIZE + mk_meta_excess(c);
}

uint64_t mk_charged(mk_cache *c)
{
    pthread_mutex_lock(&c->arena_lock);
    uint64_t v = mk_charged_locked(c);
    pthread_mutex_unlock(&c->arena_lock);
    return v;
}

/*
 * Normal allocations leave segments for the compaction head: two (one when the
 * arena is tiny), so that compaction can go on while the segment it last emptied
 * is still held by a reader and the head it filled was taken over by allocation.
 */
static uint64_t usable(const mk_cache *c, bool reserve)
{
    return reserve ? c->limit : c->limit - (c->nseg >= 32 ? 2 : 1) * MK_SEG_SIZE;
}

static int32_t take_free_locked(mk_cache *c, bool reserve, uint8_t kind, int64_t now)
{
    if (c->free_head < 0 || mk_charged_locked(c) + MK_SEG_SIZE > usable(c, reserve))
        return -1;
    int32_t id = c->free_head;
    mk_segm *m = &c->segm[id];
    c->free_head = m->next;
    c->nfree--;
    if (m->resident)
        c->nfree_resident--;
    c->inuse++;
    c->inuse_kind[kind]++;
    atomic_store_explicit(&c->inuse_hint, c->inuse, memory_order_relaxed);
    m->state = MK_SEG_ACTIVE;
    m->prev = m->next = -1;
    m->resident = 1;
    atomic_store_explicit(&m->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&m->live, 0, memory_order_relaxed);
    atomic_store_explicit(&m->nlive, 0, memory_order_relaxed);
    atomic_store_explicit(&m->dead, 0, memory_order_relaxed);
    m->wpos = m->first = MK_SEG_HDR;
    m->kind = kind;
    m->ctime = now;
    mk_seghdr *h = (mk_seghdr *)mk_seg_base(c, (uint32_t)id);
    h->seq = atomic_fetch_add_explicit(&c->segseq, 1, memory_order_relaxed) + 1;
    h->id = (uint32_t)id;
    h->next = -1;
    h->first = MK_SEG_HDR;
    h->owner = h->owner_seq = 0;
    h->nocas = !c->cfg.use_cas;
    h->kind = kind;
    return id;
}

int32_t mk_seg_get(mk_cache *c, mk_seg_use use, uint8_t kind, int64_t now)
{
    bool for_comp = use == MK_SEG_FOR_COMP;
    for (uint32_t tries = 0; tries <= c->nseg + 2; tries++) {
        if (use == MK_SEG_FOR_HEAD && kind != MK_KIND_PROB) {
            /*
             * Survivors of eviction and compaction went into the compaction head: an
             * allocation head takes it over and fills it up, so copied items rejoin
             * the FIFO with the next segment, no half-empty segment is left behind,
             * and the room compaction made is used by whoever needed it. Not the
             * probation head: the survivors of probation were promoted to main.
             */
            pthread_mutex_lock(&c->evict_lock);
            int32_t comp = c->comp;
            c->comp = -1;
            if (comp >= 0) { /* a large head may start a spanning item in it */
                pthread_mutex_lock(&c->arena_lock);
                c->inuse_kind[c->segm[comp].kind]--;
                c->inuse_kind[kind]++;
                c->segm[comp].kind = kind;
                ((mk_seghdr *)mk_seg_base(c, (uint32_t)comp))->kind = kind;
                pthread_mutex_unlock(&c->arena_lock);
            }
            pthread_mutex_unlock(&c->evict_lock);
            if (comp >= 0)
                return comp;
        }
        pthread_mutex_lock(&c->arena_lock);
        int32_t id = take_free_locked(c, for_comp, kind, now);
        pthread_mutex_unlock(&c->arena_lock);
        if (id >= 0 || for_comp)
            return id;
        /* (room in the compaction head is no use to a spill or to probation: they need a free segment) */
        if (!mk_evict_one(c, use == MK_SEG_FOR_SPILL || kind == MK_KIND_PROB, now))
            return -1;
    }
    return -1;
}

void mk_fifo_push_locked(mk_cache *c, int32_t id)
{
    mk_segm *m = &c->segm[id];
    int32_t *head = &c->fifo_head[m->kind], *tail = &c->fifo_tail[m->kind];
    m->state = MK_SEG_SEALED;
    m->next = -1;
    m->prev = *tail;
    if (*tail >= 0)
        c->segm[*tail].next = id;
    else
        *head = id;
    *tail = id;
}

void mk_fifo_remove_locked(mk_cache *c, int32_t id)
{
    mk_segm *m = &c->segm[id];
    if (m->prev >= 0)
        c->segm[m->prev].next = m->next;
    else
        c->fifo_head[m->kind] = m->next;
    if (m->next >= 0)
        c->segm[m->next].prev = m->prev;
    else
        c->fifo_tail[m->kind] = m->prev;
    m->prev = m->next = -1;
    m->state = MK_SEG_BUSY;
}

/* Hand a filled segment to the FIFO: it becomes evictable (it keeps its bias reference). */
void mk_seg_seal(mk_cache *c, int32_t id)
{
    pthread_mutex_lock(&c->arena_lock);
    mk_fifo_push_locked(c, id);
    pthread_mutex_unlock(&c->arena_lock);
}

mk_item *mk_arena_alloc(mk_cache *c, unsigned h, const char *key, size_t nkey, size_t nbytes, uint32_t flags,
                        int64_t exp_at, mk_xcas xcas, uint64_t cas, int64_t now)
{
    bool comp = h == MK_HEAD_COMP;
    mk_head *hd = comp ? NULL : &c->heads[h];
    int32_t *segp = comp ? &c->comp : &hd->seg;
    bool large = !comp && hd->kind == MK_KIND_LARGE;
    if (!comp)
        pthread_mutex_lock(&hd->lock);
    mk_item *it = NULL;
    mk_layout l;
    for (int attempt = 0; attempt < 3; attempt++) {
        int32_t id = *segp;
        if (id >= 0) {
            mk_segm *m = &c->segm[id];
            char *at = mk_seg_base(c, (uint32_t)id) + m->wpos;
            mk_layout_plan(&l, (uintptr_t)at, nkey, nbytes, flags != 0, exp_at != 0, xcas, large);
            uint64_t fseq = atomic_load_explicit(&c->flush_seq, memory_order_relaxed);
            /* an item whose flush order is its place must not land in a segment older than a flush */
            bool stale = xcas != MK_XCAS_KEEP && (((mk_seghdr *)mk_seg_base(c, (uint32_t)id))->seq << 24) < fseq;
            if (!stale && m->wpos + l.size <= MK_SEG_SIZE) {
                it = (mk_item *)at;
                m->wpos += (uint32_t)l.size;
                mk_item_init(it, &l, key, flags, exp_at, cas);
                atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
                break;
            }
            if (!stale && large && m->wpos + l.hdr < MK_SEG_SIZE) {
                it = mk_span_alloc(c, hd, &l, key, flags, exp_at, cas, now); /* runs on into fresh segments */
                break;
            }
            *segp = -1;
            mk_seg_seal(c, id);
        }
        int32_t fresh = mk_seg_get(c, comp ? MK_SEG_FOR_COMP : MK_SEG_FOR_HEAD, comp ? MK_KIND_SMALL : hd->kind, now);
        if (fresh < 0)
            break;
        *segp = fresh;
    }
    if (!comp)
        pthread_mutex_unlock(&hd->lock);
    return it;
}

/* The last reference is gone: give the segment back. */
static void seg_release(mk_cache *c, uint32_t id)
{
    mk_segm *m = &c->segm[id];
    pthread_mutex_lock(&c->arena_lock);
    m->state = MK_SEG_FREE;
    c->inuse--;
    c->inuse_kind[m->kind]--;
    atomic_store_explicit(&c->inuse_hint, c->inuse, memory_order_relaxed);
    /* Free segments stay resident (no page faults when reused) while that keeps RSS within the limit. */
    if ((uint64_t)(c->inuse + c->nfree_resident + 1) * MK_SEG_SIZE + mk_meta_excess(c) <= c->limit) {
        c->nfree_resident++;
        m->resident = 1;
    } else {
        mk_persist_discard(c, id);
        m->resident = 0;
    }
    m->prev = -1;
    m->next = c->free_head;
    c->free_head = (int32_t)id;
    c->nfree++;
    pthread_mutex_unlock(&c->arena_lock);
}

void mk_seg_unref(mk_cache *c, uint32_t id)
{
    if (atomic_fetch_sub_explicit(&c->segm[id].refs, 1, memory_order_acq_rel) == 1)
        seg_release(c, id);
}

bool mk_cache_set_limit(mk_cache *c, uint64_t bytes)
{
    uint64_t max = (uint64_t)c->nseg * MK_SEG_SIZE, want = bytes / MK_SEG_SIZE * MK_SEG_SIZE;
    if (bytes < ((uint64_t)8 << 20) || want > max || want < 4 * (uint64_t)MK_SEG_SIZE)
        return false;
    pthread_mutex_lock(&c->arena_lock);
    c->limit = want;
    /* free segments kept resident past the new limit go back to the system */
    for (int32_t id = c->free_head; id >= 0 && c->nfree_resident > 0 &&
                                    (uint64_t)(c->inuse + c->nfree_resident) * MK_SEG_SIZE > want;
         id = c->segm[id].next) {
        if (c->segm[id].resident) {
            mk_persist_discard(c, (uint32_t)id);
            c->segm[id].resident = 0;
            c->nfree_resident--;
        }
    }
    pthread_mutex_unlock(&c->arena_lock);
    return true;
}

uint64_t mk_cache_limit(mk_cache *c)
{
    pthread_mutex_lock(&c->arena_lock);
    uint64_t v = c->limit;
    pthread_mutex_unlock(&c->arena_lock);
    return v;
}
