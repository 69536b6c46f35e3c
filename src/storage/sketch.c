/* storage/sketch.c — per-shard count-min sketch of how often keys are asked for (TinyLFU's frequency filter): it sends a new small item of a popular key straight to the main log. */
#include <stdlib.h>
#include <string.h>

#include "storage/internal.h"

/*
 * Counters are 4 bits, packed two to a byte, in blocks of 64 (4 rows of 16,
 * 32 bytes: half a cache line). A key's 4 counters are in one block, one per
 * row; its estimate is the least of them. Increments are conservative (only
 * the counters at the estimate go up), which keeps the estimate of a rare key
 * that shares counters with popular ones low. Every MK_SK_AGE x (index slots)
 * increments all counters are halved, so the sketch follows a popular set that
 * changes. Sized with the shard's index: 4 counters (2 bytes) per index slot,
 * about 8 per cached item (the policy simulator loses 0.7 point of hit ratio
 * at zipf 1.0 with half that), but at most 1/MK_SK_SHARE of mem_limit in all:
 * with values of a few bytes the index has 8 slots per 100 bytes of values and
 * a full-width sketch would cost more items than it wins. The index's growth replaces it with a fresh
 * sketch of the new size, so its memory is charged while items are still being
 * allocated (arena.c: the index allowance covers both).
 */
#define MK_SK_ROWS 4
#define MK_SK_BLOCK 32u /* bytes per block */
#define MK_SK_AGE 5u    /* halve after this many increments per index slot (~10 per item) */
#define MK_SK_MAX 15u
#define MK_SK_SHARE 32  /* all sketches together take at most 1/32 of mem_limit (the allowance in arena.c) */

static void slots(const mk_sketch *k, uint64_t hv, size_t at[MK_SK_ROWS])
{
    /* hv's top bits chose the shard and its low 24 the index slot: remix before use */
    uint64_t h = (hv ^ (hv >> 31)) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    size_t block = (size_t)(((h >> 32) * (uint64_t)k->blocks) >> 32);
    for (size_t j = 0; j < MK_SK_ROWS; j++) /* counter index within the block: row j, column from h */
        at[j] = block * MK_SK_BLOCK * 2 + j * 16 + ((h >> (4 * j)) & 15);
}

static unsigned get(const mk_sketch *k, size_t i) { return (k->ctr[i / 2] >> (4 * (i & 1))) & 15u; }

static unsigned estimate(const mk_sketch *k, const size_t at[MK_SK_ROWS])
{
    unsigned e = MK_SK_MAX;
    for (size_t j = 0; j < MK_SK_ROWS; j++) {
        unsigned v = get(k, at[j]);
        e = v < e ? v : e;
    }
    return e;
}

bool mk_sketch_fit(mk_cache *c, mk_shard *s)
{
    mk_sketch *k = &s->sk;
    if (k->ctr && k->power == s->idx.power)
        return true;
    size_t bytes = ((size_t)1 << s->idx.power) * 2;
    size_t most = c->cfg.mem_limit / MK_SK_SHARE / ((size_t)1 << c->shard_bits);
    if (bytes > most)
        bytes = most / MK_SK_BLOCK * MK_SK_BLOCK;
    if (bytes < MK_SK_BLOCK)
        bytes = MK_SK_BLOCK;
    uint8_t *ctr = calloc(bytes, 1);
    if (!ctr)
        return k->ctr != NULL; /* keep counting in the old one */
    mk_sketch_free(c, k);
    atomic_fetch_add_explicit(&c->sketch_bytes, bytes, memory_order_relaxed);
    *k = (mk_sketch){.ctr = ctr, .blocks = bytes / MK_SK_BLOCK, .power = s->idx.power,
                     .period = ((uint64_t)1 << s->idx.power) * MK_SK_AGE};
    return true;
}

void mk_sketch_free(mk_cache *c, mk_sketch *k)
{
    if (!k->ctr)
        return;
    atomic_fetch_sub_explicit(&c->sketch_bytes, k->blocks * MK_SK_BLOCK, memory_order_relaxed);
    free(k->ctr);
    memset(k, 0, sizeof *k);
}

void mk_sketch_add_locked(mk_shard *s, uint64_t hv)
{
    mk_sketch *k = &s->sk;
    if (!k->ctr)
        return; /* (its allocation failed: no policy input, nothing else lost) */
    size_t at[MK_SK_ROWS];
    slots(k, hv, at);
    unsigned e = estimate(k, at);
    if (e >= MK_SK_MAX)
        return;
    for (size_t j = 0; j < MK_SK_ROWS; j++)
        if (get(k, at[j]) == e)
            k->ctr[at[j] / 2] = (uint8_t)(k->ctr[at[j] / 2] + (1u << (4 * (at[j] & 1))));
    if (++k->added < k->period)
        return;
    size_t bytes = k->blocks * MK_SK_BLOCK;
    for (size_t i = 0; i < bytes; i += 8) { /* halve every counter: shift each nibble right, drop the carry */
        uint64_t w;
        memcpy(&w, k->ctr + i, 8);
        w = (w >> 1) & 0x7777777777777777ull;
        memcpy(k->ctr + i, &w, 8);
    }
    k->added /= 2;
}

unsigned mk_sketch_estimate_locked(const mk_shard *s, uint64_t hv)
{
    const mk_sketch *k = &s->sk;
    if (!k->ctr)
        return 0;
    size_t at[MK_SK_ROWS];
    slots(k, hv, at);
    return estimate(k, at);
}
