/* storage/ext.c — external value blocks (values over a quarter segment): their mappings, their charge, and recycling. */
#include <string.h>
#include <sys/mman.h>

#include "storage/internal.h"

/*
 * A block is page-rounded: a 16-byte header (MK_EXT_HDR), then the value.
 *   [0, 4)   reference count (atomic): the index while linked, plus every holder
 *   [4, 8)   the block's size in pages (a recycled block may be a little larger than its value needs)
 *   [8, 16)  next block in a recycling bin, while free
 *
 * Freed blocks are kept for reuse, binned by page count, up to limit/32 bytes in
 * all: a fresh mmap costs a page fault per 4 KiB on first write and its munmap a
 * TLB flush on every core running a worker, which made a 100 KiB set cost more
 * than the rest of the request. Recycled blocks stay charged (they are resident
 * memory), and are all unmapped first whenever memory is short (mk_ext_trim),
 * before anything is evicted.
 */

#define PAGE 4096u

static uint32_t blk_pages(const char *e)
{
    uint32_t n;
    memcpy(&n, e + 4, sizeof n);
    return n;
}

static char *blk_next(const char *e)
{
    char *n;
    memcpy(&n, e + 8, sizeof n);
    return n;
}

static void blk_set_next(char *e, char *next) { memcpy(e + 8, &next, sizeof next); }

/* The page-rounded block a value of nbytes needs. */
static size_t ext_bytes(size_t nbytes) { return (MK_EXT_HDR + nbytes + PAGE - 1) & ~(size_t)(PAGE - 1); }

static uint64_t cache_cap(const mk_cache *c) { return c->limit / 32; }

bool mk_ext_trim(mk_cache *c)
{
    char *all = NULL;
    pthread_mutex_lock(&c->arena_lock);
    for (unsigned b = 0; b < MK_EXT_BINS; b++) {
        while (c->ext_bin[b]) {
            char *e = c->ext_bin[b];
            c->ext_bin[b] = blk_next(e);
            blk_set_next(e, all);
            all = e;
        }
    }
    c->ext_cached = 0;
    pthread_mutex_unlock(&c->arena_lock);
    bool any = all != NULL;
    while (all) {
        char *e = all;
        all = blk_next(e);
        munmap(e, (size_t)blk_pages(e) * PAGE);
    }
    return any;
}

/* Charge `bytes` for a new mapping: recycled blocks are dropped, then items evicted, until it fits. */
static bool charge(mk_cache *c, size_t bytes, int64_t now)
{
    for (uint32_t tries = 0; tries <= c->nseg + 2; tries++) {
        pthread_mutex_lock(&c->arena_lock);
        bool ok = mk_charged_locked(c) + bytes <= c->limit - MK_SEG_SIZE;
        if (ok)
            c->ext_bytes += bytes;
        pthread_mutex_unlock(&c->arena_lock);
        if (ok)
            return true;
        if (!mk_ext_trim(c) && !mk_evict_one(c, now) && !(mk_seal_heads(c) && mk_evict_one(c, now)))
            return false;
    }
    return false;
}

char *mk_ext_alloc(mk_cache *c, size_t nbytes, int64_t now)
{
    size_t bytes = ext_bytes(nbytes);
    if (bytes + MK_SEG_SIZE * 2 > c->limit)
        return NULL;
    size_t np = bytes / PAGE;
    char *e = NULL;
    if (np < MK_EXT_BINS) {
        size_t hi = np + np / 8; /* a recycled block up to an eighth larger will do */
        if (hi >= MK_EXT_BINS)
            hi = MK_EXT_BINS - 1;
        pthread_mutex_lock(&c->arena_lock);
        for (size_t b = np; b <= hi && !e; b++) {
            if (c->ext_bin[b]) {
                e = c->ext_bin[b];
                c->ext_bin[b] = blk_next(e);
                c->ext_cached -= (uint64_t)b * PAGE;
                c->ext_bytes += (uint64_t)b * PAGE; /* already charged: it moves from recycled to live */
            }
        }
        pthread_mutex_unlock(&c->arena_lock);
    }
    if (!e) {
        if (!charge(c, bytes, now))
            return NULL;
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            pthread_mutex_lock(&c->arena_lock);
            c->ext_bytes -= bytes;
            pthread_mutex_unlock(&c->arena_lock);
            return NULL;
        }
        e = p;
        uint32_t n = (uint32_t)np;
        memcpy(e + 4, &n, sizeof n);
    }
    atomic_init((_Atomic uint32_t *)(void *)e, 1); /* the allocating caller's reference */
    return e;
}

void mk_ext_free(mk_cache *c, char *e)
{
    size_t np = blk_pages(e), bytes = np * PAGE;
    pthread_mutex_lock(&c->arena_lock);
    c->ext_bytes -= bytes;
    bool keep = np < MK_EXT_BINS && c->ext_cached + bytes <= cache_cap(c);
    if (keep) {
        blk_set_next(e, c->ext_bin[np]);
        c->ext_bin[np] = e;
        c->ext_cached += bytes;
    }
    pthread_mutex_unlock(&c->arena_lock);
    if (!keep)
        munmap(e, bytes);
}

void mk_ext_ref(const mk_item *it)
{
    _Atomic uint32_t *r = (_Atomic uint32_t *)(void *)mk_item_ext(it);
    atomic_fetch_add_explicit(r, 1, memory_order_relaxed);
}

void mk_ext_unref(mk_cache *c, const mk_item *it)
{
    char *e = mk_item_ext(it);
    if (atomic_fetch_sub_explicit((_Atomic uint32_t *)(void *)e, 1, memory_order_acq_rel) == 1)
        mk_ext_free(c, e);
}
