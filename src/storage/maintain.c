/* storage/maintain.c — periodic work: advance incremental hash-table doublings and sweep out expired/flushed items. */
#include "storage/internal.h"

/* Per call, over all shards together (each shard gets its share, at least the minimum). */
#define REHASH_BUCKETS_PER_CALL 65536
#define SWEEP_BUCKETS_PER_CALL 16384
#define MIN_PER_SHARD 16

void mk_cache_maintain(mk_cache *c, int64_t now)
{
    size_t nshards = (size_t)1 << c->shard_bits;
    size_t rehash = REHASH_BUCKETS_PER_CALL >> c->shard_bits;
    size_t sweep = SWEEP_BUCKETS_PER_CALL >> c->shard_bits;
    if (rehash < MIN_PER_SHARD)
        rehash = MIN_PER_SHARD;
    if (sweep < MIN_PER_SHARD)
        sweep = MIN_PER_SHARD;

    for (size_t i = 0; i < nshards; i++) {
        mk_shard *s = &c->shards[i];
        mk_item *dead = NULL; /* unlinked items, chained through h_next (free once unlinked) */

        pthread_mutex_lock(&s->lock);
        mk_htab_step_locked(&s->ht, rehash);
        /*
         * Sweep buckets of the current table from a cursor. While a doubling is
         * in progress, items still in unmigrated old buckets are skipped this
         * round; the sweep is best effort and lookups reclaim what it misses.
         */
        size_t nb = (size_t)1 << s->ht.power;
        for (size_t k = 0; k < sweep && k < nb; k++) {
            size_t b = s->sweep_pos++ & (nb - 1);
            mk_item *it = s->ht.cur[b];
            while (it) {
                mk_item *next = it->h_next;
                mk_cache_rc v = mk_item_validity(c, it, now);
                if (v != MK_C_OK) {
                    mk_reclaim_locked(s, it, v, true);
                    s->n.reclaimed++; /* proactive reclaim shows in "stats" reclaimed */
                    it->h_next = dead;
                    dead = it;
                }
                it = next;
            }
        }
        pthread_mutex_unlock(&s->lock);

        while (dead) {
            mk_item *next = dead->h_next;
            mk_item_put(c, dead);
            dead = next;
        }
    }
}
