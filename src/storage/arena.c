/* storage/arena.c — the segment arena: allocation heads, the memory charge, free list and FIFO, segment release. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "storage/internal.h"

bool mk_arena_init(mk_cache *c)
{
    size_t limit = c->cfg.mem_limit;
    if (limit < MK_SEG_MIN * MK_SEG_SIZE)
        limit = MK_SEG_MIN * MK_SEG_SIZE;
    c->nseg = (uint32_t)(limit / MK_SEG_SIZE);
    c->limit = (uint64_t)c->nseg * MK_SEG_SIZE;
    if (c->limit < c->cfg.mem_limit) /* the part of a segment left over is still usable by externals */
        c->limit = c->cfg.mem_limit;
    c->map_len = ((size_t)c->nseg + 1) * MK_SEG_SIZE;
    c->map = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        return false;
    }
    c->base = (char *)(((uintptr_t)c->map + MK_SEG_SIZE - 1) & ~(uintptr_t)(MK_SEG_SIZE - 1));
    c->segm = calloc(c->nseg, sizeof *c->segm);
    if (!c->segm)
        return false;
    for (uint32_t i = 0; i < c->nseg; i++) {
        c->segm[i].next = i + 1 < c->nseg ? (int32_t)i + 1 : -1;
        c->segm[i].prev = -1;
    }
    c->free_head = 0;
    c->nfree = c->nseg;
    c->fifo_head = c->fifo_tail = -1;
    c->comp = -1;
    for (unsigned h = 0; h < MK_NHEADS; h++) {
        pthread_mutex_init(&c->heads[h].lock, NULL);
        c->heads[h].seg = -1;
    }
    pthread_mutex_init(&c->arena_lock, NULL);
    pthread_mutex_init(&c->evict_lock, NULL);
    c->idx_allowance = c->cfg.mem_limit / 16 + ((uint64_t)4 << 20);
    return true;
}

void mk_arena_free(mk_cache *c)
{
    if (c->ext_cached) /* only ever set once the arena is fully initialised */
        mk_ext_trim(c);
    if (c->segm) {
        free(c->segm);
    }
    if (c->map)
        munmap(c->map, c->map_len);
    for (unsigned h = 0; h < MK_NHEADS; h++)
        pthread_mutex_destroy(&c->heads[h].lock);
    pthread_mutex_destroy(&c->arena_lock);
    pthread_mutex_destroy(&c->evict_lock);
}

uint64_t mk_charged_locked(const mk_cache *c)
{
    uint64_t idx = atomic_load_explicit(&c->idx_bytes, memory_order_relaxed);
    uint64_t excess = idx > c->idx_allowance ? idx - c->idx_allowance : 0;
    return (uint64_t)c->inuse * MK_SEG_SIZE + c->ext_bytes + c->ext_cached + excess;
}

uint64_t mk_charged(mk_cache *c)
{
    pthread_mutex_lock(&c->arena_lock);
    uint64_t v = mk_charged_locked(c);
    pthread_mutex_unlock(&c->arena_lock);
    return v;
}

/* Normal allocations leave one segment for the compaction head. */
static uint64_t usable(const mk_cache *c, bool reserve) { return reserve ? c->limit : c->limit - MK_SEG_SIZE; }

static int32_t take_free_locked(mk_cache *c, bool reserve, int64_t now)
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
    m->state = MK_SEG_ACTIVE;
    m->prev = m->next = -1;
    m->resident = 1;
    atomic_store_explicit(&m->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&m->live, 0, memory_order_relaxed);
    atomic_store_explicit(&m->nlive, 0, memory_order_relaxed);
    atomic_store_explicit(&m->dead, 0, memory_order_relaxed);
    m->wpos = MK_SEG_HDR;
    m->ctime = now;
    mk_seghdr *h = (mk_seghdr *)mk_seg_base(c, (uint32_t)id);
    h->seq = atomic_fetch_add_explicit(&c->segseq, 1, memory_order_relaxed) + 1;
    h->nocas = !c->cfg.use_cas;
    return id;
}

/* A free segment, evicting for it unless for_comp. -1 if none can be had. */
static int32_t seg_get(mk_cache *c, bool for_comp, int64_t now)
{
    for (uint32_t tries = 0; tries <= c->nseg + 2; tries++) {
        if (!for_comp) {
            /*
             * Survivors of eviction went into the compaction head: an allocation head
             * takes it over and fills it up, so copied items rejoin the FIFO with the
             * next segment and no half-empty segment is left behind.
             */
            pthread_mutex_lock(&c->evict_lock);
            int32_t comp = c->comp;
            c->comp = -1;
            pthread_mutex_unlock(&c->evict_lock);
            if (comp >= 0)
                return comp;
        }
        pthread_mutex_lock(&c->arena_lock);
        int32_t id = take_free_locked(c, for_comp, now);
        pthread_mutex_unlock(&c->arena_lock);
        if (id >= 0 || for_comp)
            return id;
        if (!mk_ext_trim(c) && !mk_evict_one(c, now))
            return -1;
    }
    return -1;
}

/* Hand a filled segment to the FIFO: it becomes evictable (it keeps its bias reference). */
static void seg_seal(mk_cache *c, int32_t id)
{
    mk_segm *m = &c->segm[id];
    pthread_mutex_lock(&c->arena_lock);
    m->state = MK_SEG_SEALED;
    m->next = -1;
    m->prev = c->fifo_tail;
    if (c->fifo_tail >= 0)
        c->segm[c->fifo_tail].next = id;
    else
        c->fifo_head = id;
    c->fifo_tail = id;
    pthread_mutex_unlock(&c->arena_lock);
}

mk_item *mk_arena_alloc(mk_cache *c, unsigned h, const char *key, size_t nkey, size_t nbytes, uint32_t flags,
                        int64_t exp_at, bool xcas, uint64_t cas, char *ext, int64_t now)
{
    bool comp = h == MK_NHEADS;
    int32_t *segp = comp ? &c->comp : &c->heads[h].seg;
    if (!comp)
        pthread_mutex_lock(&c->heads[h].lock);
    mk_item *it = NULL;
    mk_layout l;
    for (int attempt = 0; attempt < 3; attempt++) {
        int32_t id = *segp;
        if (id >= 0) {
            mk_segm *m = &c->segm[id];
            char *at = mk_seg_base(c, (uint32_t)id) + m->wpos;
            mk_layout_plan(&l, (uintptr_t)at, nkey, nbytes, flags != 0, exp_at != 0, xcas, ext != NULL);
            uint64_t fseq = atomic_load_explicit(&c->flush_seq, memory_order_relaxed);
            bool stale = !xcas && (((mk_seghdr *)mk_seg_base(c, (uint32_t)id))->seq << 24) < fseq;
            if (!stale && m->wpos + l.size <= MK_SEG_SIZE) {
                it = (mk_item *)at;
                m->wpos += (uint32_t)l.size;
                mk_item_init(it, &l, key, flags, exp_at, cas, ext);
                atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
                break;
            }
            *segp = -1;
            seg_seal(c, id);
        }
        int32_t fresh = seg_get(c, comp, now);
        if (fresh < 0)
            break;
        *segp = fresh;
    }
    if (!comp)
        pthread_mutex_unlock(&c->heads[h].lock);
    return it;
}

/* Seal the open segments so that they become evictable (their stubs may pin large external values). */
bool mk_seal_heads(mk_cache *c)
{
    bool any = false;
    for (unsigned h = 0; h < MK_NHEADS; h++) {
        pthread_mutex_lock(&c->heads[h].lock);
        int32_t id = c->heads[h].seg;
        if (id >= 0) {
            c->heads[h].seg = -1;
            seg_seal(c, id);
            any = true;
        }
        pthread_mutex_unlock(&c->heads[h].lock);
    }
    return any;
}

/* The last reference is gone: give the segment back (external values have their own counts). */
static void seg_release(mk_cache *c, uint32_t id)
{
    mk_segm *m = &c->segm[id];
    pthread_mutex_lock(&c->arena_lock);
    m->state = MK_SEG_FREE;
    c->inuse--;
    if (c->nfree_resident < MK_FREE_RESIDENT) {
        c->nfree_resident++;
        m->resident = 1;
    } else {
        madvise(mk_seg_base(c, id), MK_SEG_SIZE, MADV_DONTNEED);
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
