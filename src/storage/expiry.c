/* storage/expiry.c — when an item stops being valid: expiry times and flush_all (immediate and delayed). */
#include "storage/internal.h"

/*
 * Flush state, three values (docs/storage.md, "Expiry and flush"):
 *   flush_seq      an immediate flush draws a fresh sequence number; every item
 *                  stored before it (seq < flush_seq) is invalid. Exact within the
 *                  second, like memcached's oldest_cas, but kept even with -C.
 *   flush_pending  a delayed flush due at that time; once now >= it, items last
 *                  used (so: stored, as every use re-checks validity first) before
 *                  it are invalid. A later flush replaces a pending one.
 *   flush_dead     pending flushes that had already taken effect when they were
 *                  replaced are folded in here so their victims stay dead.
 * Writers serialise on flush_lock and publish flush_pending last (release);
 * readers load flush_pending first (acquire), so they never see a replaced
 * pending flush without the flush_dead that preserves it.
 */
mk_cache_rc mk_item_validity(mk_cache *c, const mk_item *it, int64_t now)
{
    int64_t pending = atomic_load_explicit(&c->flush_pending, memory_order_acquire);
    int64_t dead = atomic_load_explicit(&c->flush_dead, memory_order_relaxed);
    uint64_t fseq = atomic_load_explicit(&c->flush_seq, memory_order_relaxed);

    if (it->seq < fseq || it->atime < dead || (pending && pending <= now && it->atime < pending))
        return MK_C_FLUSHED;
    int64_t exp = atomic_load_explicit(&((mk_item *)it)->exp_at, memory_order_relaxed);
    if (exp != 0 && exp <= now)
        return MK_C_EXPIRED;
    return MK_C_OK;
}

void mk_cache_flush(mk_cache *c, int64_t now, int64_t delay)
{
    pthread_mutex_lock(&c->flush_lock);
    int64_t pending = atomic_load_explicit(&c->flush_pending, memory_order_relaxed);
    if (pending && pending <= now) {
        int64_t dead = atomic_load_explicit(&c->flush_dead, memory_order_relaxed);
        if (pending > dead)
            atomic_store_explicit(&c->flush_dead, pending, memory_order_relaxed);
    }
    if (delay > 0) {
        atomic_store_explicit(&c->flush_pending, now + delay, memory_order_release);
    } else {
        /* Items linked from now on get seq >= this value and survive. */
        uint64_t s = atomic_fetch_add_explicit(&c->seq, 1, memory_order_relaxed) + 1;
        atomic_store_explicit(&c->flush_seq, s, memory_order_relaxed);
        atomic_store_explicit(&c->flush_pending, 0, memory_order_release);
    }
    pthread_mutex_unlock(&c->flush_lock);
}
