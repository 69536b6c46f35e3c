/* storage/hash.c — the key hash and the per-shard index: open addressing over 8-byte slots (offset + hash tag). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "storage/internal.h"

/*
 * MurmurHash64A (Austin Appleby's public-domain design), written from the
 * algorithm description: 8-byte blocks mixed with a multiply/shift/multiply
 * step, a tail, and a final avalanche. Fast, and good enough for bucket and
 * shard selection; the per-cache random seed makes collisions unpredictable.
 */
uint64_t mk_hash64(const void *key, size_t len, uint64_t seed)
{
    const uint64_t m = 0xc6a4a7935bd1e995ULL;
    const int r = 47;
    const unsigned char *p = key;
    uint64_t h = seed ^ (len * m);

    for (size_t n = len / 8; n; n--, p += 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        k *= m;
        k ^= k >> r;
        k *= m;
        h ^= k;
        h *= m;
    }
    size_t rest = len & 7;
    if (rest) {
        uint64_t t = 0;
        for (size_t i = 0; i < rest; i++)
            t |= (uint64_t)p[i] << (8 * i);
        h ^= t;
        h *= m;
    }
    h ^= h >> r;
    h *= m;
    h ^= h >> r;
    return h;
}


#define TAG_MASK (((uint64_t)1 << MK_IDX_TAG_BITS) - 1)
#define MAX_POWER MK_IDX_TAG_BITS

static uint64_t *table_new(unsigned power)
{
    size_t bytes = ((size_t)1 << power) * sizeof(uint64_t);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Unmap slots [from, to) of table t (from is 0 or a multiple of MK_IDX_CHUNK, so page-aligned). */
static void table_unmap(uint64_t *t, size_t from, size_t to)
{
    if (t && to > from)
        munmap(t + from, (to - from) * sizeof(uint64_t));
}

bool mk_idx_init(mk_index *x, unsigned power)
{
    if (power > MAX_POWER)
        power = MAX_POWER;
    memset(x, 0, sizeof *x);
    x->power = power;
    x->slot = table_new(power);
    return x->slot != NULL;
}

void mk_idx_free(mk_index *x)
{
    table_unmap(x->slot, 0, (size_t)1 << x->power);
    if (x->old)
        table_unmap(x->old, x->unmapped, (size_t)1 << x->old_power);
    x->slot = x->old = NULL;
}

size_t mk_idx_bytes(const mk_index *x) { return ((size_t)1 << x->power) * sizeof(uint64_t); }

bool mk_idx_presize_locked(mk_cache *c, mk_shard *s, size_t n)
{
    mk_index *x = &s->idx;
    if (x->count != 0 || x->old)
        return false;
    unsigned p = x->power;
    while (p < MAX_POWER && ((size_t)1 << p) / 4 * 3 < n)
        p++;
    if (p == x->power)
        return true;
    uint64_t *t = table_new(p);
    if (t == NULL)
        return false;
    atomic_fetch_sub_explicit(&c->idx_bytes, mk_idx_bytes(x), memory_order_relaxed);
    table_unmap(x->slot, 0, (size_t)1 << x->power);
    x->slot = t;
    x->power = p;
    atomic_fetch_add_explicit(&c->idx_bytes, mk_idx_bytes(x), memory_order_relaxed);
    mk_sketch_fit(c, s);
    return true;
}

static inline size_t mask_of(unsigned power) { return ((size_t)1 << power) - 1; }
static inline uint64_t tag_of(uint64_t hv) { return hv & TAG_MASK; }
static inline uint64_t entry(const mk_cache *c, uint64_t hv, const mk_item *it)
{
    return tag_of(hv) << 40 | mk_off_of(c, it);
}
static inline size_t home(size_t m, uint64_t e) { return (size_t)(e >> 40) & m; }
/* Old slots below the cursor are empty (and may be unmapped): never read them. */
static inline uint64_t old_at(const mk_index *x, size_t i) { return i < x->cursor ? 0 : x->old[i]; }

/* Probe one table for the entry `want` (want != 0) or for key; its slot (MK_IDX_OLD set in `old`) or SIZE_MAX. */
static size_t probe(const mk_cache *c, const mk_index *x, bool old, uint64_t tag, uint64_t want, const char *key,
                    size_t nkey)
{
    const uint64_t *t = old ? x->old : x->slot;
    size_t m = mask_of(old ? x->old_power : x->power);
    for (size_t i = (size_t)tag & m;; i = (i + 1) & m) {
        uint64_t e = old ? old_at(x, i) : t[i];
        if (!e)
            return SIZE_MAX;
        bool hit;
        if (want) {
            hit = e == want;
        } else {
            const mk_item *it = (const mk_item *)(c->base + (e & MK_IDX_OFF_MASK));
            hit = (e >> 40) == tag && it->nkey == nkey && memcmp(mk_item_key(it), key, nkey) == 0;
        }
        if (hit)
            return old ? i | MK_IDX_OLD : i;
    }
}

static size_t find(const mk_cache *c, const mk_index *x, uint64_t tag, uint64_t want, const char *key, size_t nkey)
{
    size_t p = probe(c, x, false, tag, want, key, nkey);
    if (p == SIZE_MAX && x->old)
        p = probe(c, x, true, tag, want, key, nkey);
    return p;
}

static uint64_t slot_get(const mk_index *x, size_t pos)
{
    return (pos & MK_IDX_OLD) ? x->old[pos & ~MK_IDX_OLD] : x->slot[pos];
}

mk_item *mk_idx_find_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey, size_t *pos)
{
    size_t p = find(c, &s->idx, tag_of(hv), 0, key, nkey);
    if (p == SIZE_MAX)
        return NULL;
    *pos = p;
    return (mk_item *)(c->base + (slot_get(&s->idx, p) & MK_IDX_OFF_MASK));
}

size_t mk_idx_find_item_locked(mk_cache *c, mk_shard *s, uint64_t hv, const mk_item *it)
{
    return find(c, &s->idx, tag_of(hv), entry(c, hv, it), NULL, 0);
}

static void place(uint64_t *t, unsigned power, uint64_t e)
{
    size_t m = mask_of(power);
    size_t i = home(m, e);
    while (t[i])
        i = (i + 1) & m;
    t[i] = e;
}

/* The old table is empty: unmap what is left of it. */
static void finish(mk_cache *c, mk_index *x)
{
    size_t cap = (size_t)1 << x->old_power;
    table_unmap(x->old, x->unmapped, cap);
    atomic_fetch_sub_explicit(&c->idx_bytes, (cap - x->unmapped) * sizeof(uint64_t), memory_order_relaxed);
    x->old = NULL;
    x->cursor = x->unmapped = 0;
}

/*
 * Move whole probe runs from the front of the old table. The slot before the
 * cursor is empty, so the run starting at the cursor holds every entry whose
 * probe path crosses it (at cursor 0 that includes entries wrapped around from
 * the end); moving the whole run and advancing past it keeps every remaining
 * entry reachable from its home without any shifting.
 */
bool mk_idx_migrate_locked(mk_cache *c, mk_index *x, size_t budget)
{
    if (!x->old)
        return false;
    size_t cap = (size_t)1 << x->old_power, done = 0;
    while (done < budget && x->cursor < cap) {
        size_t i = x->cursor;
        while (i < cap && x->old[i]) {
            place(x->slot, x->power, x->old[i]);
            x->old[i] = 0;
            i++;
        }
        done += i - x->cursor + 1;
        x->cursor = i + 1 < cap ? i + 1 : cap; /* skip the empty slot that ended the run */
        size_t upto = x->cursor / MK_IDX_CHUNK * MK_IDX_CHUNK;
        if (upto > x->unmapped && upto < cap) {
            table_unmap(x->old, x->unmapped, upto);
            atomic_fetch_sub_explicit(&c->idx_bytes, (upto - x->unmapped) * sizeof(uint64_t),
                                      memory_order_relaxed);
            x->unmapped = upto;
        }
    }
    if (x->cursor >= cap)
        finish(c, x);
    return x->old != NULL;
}

static bool grow(mk_cache *c, mk_index *x)
{
    if (x->power >= MAX_POWER)
        return false;
    uint64_t *t = table_new(x->power + 1);
    if (!t)
        return false;
    x->old = x->slot;
    x->old_power = x->power;
    x->cursor = x->unmapped = 0;
    x->slot = t;
    x->power++;
    atomic_fetch_add_explicit(&c->idx_bytes, ((size_t)1 << x->power) * sizeof(uint64_t), memory_order_relaxed);
    return true;
}

bool mk_idx_insert_locked(mk_cache *c, mk_shard *s, uint64_t hv, const mk_item *it)
{
    mk_index *x = &s->idx;
    mk_idx_migrate_locked(c, x, MK_IDX_STEP);
    size_t cap = (size_t)1 << x->power;
    if (x->count + 1 > cap / 4 * 3) {
        /* Unreachable in practice (a migration ends long before the new table is 3/4 full); kept as a bound. */
        if (x->old)
            mk_idx_migrate_locked(c, x, SIZE_MAX);
        if (grow(c, x)) {
            mk_idx_migrate_locked(c, x, MK_IDX_STEP);
            mk_sketch_fit(c, s);
        }
        cap = (size_t)1 << x->power;
    }
    if (x->count + 1 >= cap)
        return false;
    place(x->slot, x->power, entry(c, hv, it));
    x->count++;
    return true;
}

void mk_idx_set_locked(mk_cache *c, mk_shard *s, size_t pos, uint64_t hv, const mk_item *it)
{
    if (pos & MK_IDX_OLD)
        s->idx.old[pos & ~MK_IDX_OLD] = entry(c, hv, it);
    else
        s->idx.slot[pos] = entry(c, hv, it);
}

/* Backward-shift deletion: pull later members of the probe run into the hole. */
void mk_idx_delete_locked(mk_shard *s, size_t pos)
{
    mk_index *x = &s->idx;
    bool old = (pos & MK_IDX_OLD) != 0;
    uint64_t *t = old ? x->old : x->slot;
    size_t m = mask_of(old ? x->old_power : x->power), hole = pos & ~MK_IDX_OLD;
    for (size_t j = (hole + 1) & m;; j = (j + 1) & m) {
        uint64_t e = old ? old_at(x, j) : t[j];
        if (!e)
            break;
        size_t h = home(m, e);
        /* e may move to the hole if its home is not in (hole, j] (cyclically) */
        bool in_range = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
        if (!in_range) {
            t[hole] = e;
            hole = j;
        }
    }
    t[hole] = 0;
    x->count--;
}

bool mk_idx_each_locked(mk_cache *c, mk_shard *s, bool (*fn)(void *ctx, mk_item *it), void *ctx)
{
    const mk_index *x = &s->idx;
    for (size_t i = 0, n = (size_t)1 << x->power; i < n; i++)
        if (x->slot[i] && !fn(ctx, (mk_item *)(c->base + (x->slot[i] & MK_IDX_OFF_MASK))))
            return false;
    for (size_t i = x->cursor, n = x->old ? (size_t)1 << x->old_power : 0; i < n; i++)
        if (x->old[i] && !fn(ctx, (mk_item *)(c->base + (x->old[i] & MK_IDX_OFF_MASK))))
            return false;
    return true;
}
