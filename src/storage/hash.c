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

static void table_free(uint64_t *t, unsigned power)
{
    if (t)
        munmap(t, ((size_t)1 << power) * sizeof(uint64_t));
}

bool mk_idx_init(mk_index *x, unsigned power)
{
    if (power > MAX_POWER)
        power = MAX_POWER;
    x->power = power;
    x->count = 0;
    x->slot = table_new(power);
    return x->slot != NULL;
}

void mk_idx_free(mk_index *x)
{
    table_free(x->slot, x->power);
    x->slot = NULL;
}

size_t mk_idx_bytes(const mk_index *x) { return ((size_t)1 << x->power) * sizeof(uint64_t); }

static inline size_t mask(const mk_index *x) { return ((size_t)1 << x->power) - 1; }
static inline uint64_t tag_of(uint64_t hv) { return hv & TAG_MASK; }
static inline uint64_t entry(const mk_cache *c, uint64_t hv, const mk_item *it)
{
    return tag_of(hv) << 40 | mk_off_of(c, it);
}
static inline size_t home(const mk_index *x, uint64_t e) { return (size_t)(e >> 40) & mask(x); }

mk_item *mk_idx_find_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey, size_t *pos)
{
    mk_index *x = &s->idx;
    size_t m = mask(x);
    uint64_t tag = tag_of(hv);
    for (size_t i = (size_t)tag & m;; i = (i + 1) & m) {
        uint64_t e = x->slot[i];
        if (!e)
            return NULL;
        if ((e >> 40) == tag) {
            mk_item *it = (mk_item *)(c->base + (e & MK_IDX_OFF_MASK));
            if (it->nkey == nkey && memcmp(mk_item_key(it), key, nkey) == 0) {
                *pos = i;
                return it;
            }
        }
    }
}

size_t mk_idx_find_item_locked(mk_cache *c, mk_shard *s, uint64_t hv, const mk_item *it)
{
    mk_index *x = &s->idx;
    size_t m = mask(x);
    uint64_t want = entry(c, hv, it);
    for (size_t i = (size_t)tag_of(hv) & m;; i = (i + 1) & m) {
        uint64_t e = x->slot[i];
        if (!e)
            return SIZE_MAX;
        if (e == want)
            return i;
    }
}

static void place(mk_index *x, uint64_t e)
{
    size_t m = mask(x);
    size_t i = home(x, e);
    while (x->slot[i])
        i = (i + 1) & m;
    x->slot[i] = e;
}

static void grow(mk_cache *c, mk_index *x)
{
    if (x->power >= MAX_POWER)
        return;
    uint64_t *old = x->slot;
    unsigned op = x->power;
    uint64_t *t = table_new(op + 1);
    if (!t)
        return;
    x->slot = t;
    x->power = op + 1;
    for (size_t i = 0; i < ((size_t)1 << op); i++)
        if (old[i])
            place(x, old[i]);
    table_free(old, op);
    atomic_fetch_add_explicit(&c->idx_bytes, ((size_t)1 << op) * sizeof(uint64_t), memory_order_relaxed);
}

bool mk_idx_insert_locked(mk_cache *c, mk_shard *s, uint64_t hv, const mk_item *it)
{
    mk_index *x = &s->idx;
    size_t cap = (size_t)1 << x->power;
    if (x->count + 1 > cap / 4 * 3)
        grow(c, x);
    cap = (size_t)1 << x->power;
    if (x->count + 1 >= cap)
        return false;
    place(x, entry(c, hv, it));
    x->count++;
    return true;
}

void mk_idx_set_locked(mk_cache *c, mk_shard *s, size_t pos, uint64_t hv, const mk_item *it)
{
    s->idx.slot[pos] = entry(c, hv, it);
}

/* Backward-shift deletion: pull later members of the probe run into the hole. */
void mk_idx_delete_locked(mk_shard *s, size_t pos)
{
    mk_index *x = &s->idx;
    size_t m = mask(x), hole = pos;
    for (size_t j = (pos + 1) & m;; j = (j + 1) & m) {
        uint64_t e = x->slot[j];
        if (!e)
            break;
        size_t h = home(x, e);
        /* e may move to the hole if its home is not in (hole, j] (cyclically) */
        bool in_range = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
        if (!in_range) {
            x->slot[hole] = e;
            hole = j;
        }
    }
    x->slot[hole] = 0;
    x->count--;
}
