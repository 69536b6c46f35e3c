/* storage/hash.c — the key hash and the per-shard chained hash table with incremental doubling. */
#include <stdlib.h>
#include <string.h>

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

static inline size_t mask_of(unsigned power) { return ((size_t)1 << power) - 1; }

bool mk_htab_init(mk_htab *ht, unsigned power)
{
    memset(ht, 0, sizeof *ht);
    ht->power = power;
    ht->cur = calloc((size_t)1 << power, sizeof *ht->cur);
    return ht->cur != NULL;
}

void mk_htab_free(mk_htab *ht)
{
    free(ht->cur);
    free(ht->old);
    memset(ht, 0, sizeof *ht);
}

/* The bucket that holds (or would hold) hv. */
static mk_item **bucket_of(mk_htab *ht, uint64_t hv)
{
    if (ht->old) {
        size_t ob = (size_t)hv & mask_of(ht->power - 1);
        if (ob >= ht->migrated)
            return &ht->old[ob];
    }
    return &ht->cur[(size_t)hv & mask_of(ht->power)];
}

mk_item *mk_htab_find_locked(mk_htab *ht, uint64_t hv, const char *key, size_t nkey)
{
    for (mk_item *it = *bucket_of(ht, hv); it; it = it->h_next)
        if (it->hv == hv && it->nkey == nkey && memcmp(it->data, key, nkey) == 0)
            return it;
    return NULL;
}

void mk_htab_insert_locked(mk_htab *ht, mk_item *it)
{
    mk_item **b = bucket_of(ht, it->hv);
    it->h_next = *b;
    *b = it;
    ht->count++;
}

void mk_htab_remove_locked(mk_htab *ht, mk_item *it)
{
    for (mk_item **pp = bucket_of(ht, it->hv); *pp; pp = &(*pp)->h_next) {
        if (*pp == it) {
            *pp = it->h_next;
            it->h_next = NULL;
            ht->count--;
            return;
        }
    }
}

void mk_htab_step_locked(mk_htab *ht, size_t nbuckets)
{
    if (!ht->old) {
        size_t n = (size_t)1 << ht->power;
        if (ht->count <= n + n / 2 || ht->power >= sizeof(size_t) * 8 - 2)
            return;
        /* calloc of a large table is fresh zero pages: no O(n) pause here. */
        mk_item **bigger = calloc(n * 2, sizeof *bigger);
        if (!bigger)
            return; /* keep the current table; try again on a later step */
        ht->old = ht->cur;
        ht->cur = bigger;
        ht->power++;
        ht->migrated = 0;
    }
    size_t nold = (size_t)1 << (ht->power - 1), newmask = mask_of(ht->power);
    for (; nbuckets && ht->migrated < nold; nbuckets--, ht->migrated++) {
        mk_item *it = ht->old[ht->migrated];
        ht->old[ht->migrated] = NULL;
        while (it) {
            mk_item *next = it->h_next;
            mk_item **b = &ht->cur[(size_t)it->hv & newmask];
            it->h_next = *b;
            *b = it;
            it = next;
        }
    }
    if (ht->migrated == nold) {
        free(ht->old);
        ht->old = NULL;
        ht->migrated = 0;
    }
}

size_t mk_htab_bytes(const mk_htab *ht)
{
    size_t n = (size_t)1 << ht->power;
    return (n + (ht->old ? n / 2 : 0)) * sizeof(mk_item *);
}
