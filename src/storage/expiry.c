/* storage/expiry.c — when an item stops being valid: expiry times and flush_all (immediate and delayed). */
#include "storage/internal.h"

/*
 * Flush state:
 *   flush_seq      an immediate flush takes a fresh segment sequence number S and
 *                  sets flush_seq = S << 24. Every item allocated before it has a
 *                  smaller sequence (segment seq << 24 | offset, or a moved item's
 *                  kept unique) and is invalid; allocation heads open a new
 *                  segment for the next item. Exact within the second, with -C too.
 *   flush_pending  a delayed flush due at that time. The first operation at or
 *                  after it (every entry point calls mk_flush_tick first, and so
 *                  does maintain) turns it into an immediate flush, so everything
 *                  stored before the due time is invalid and nothing after it.
 *                  A later flush replaces a pending one that is not yet due.
 */
mk_cache_rc mk_item_validity(mk_cache *c, const mk_item *it, int64_t now)
{
    if (mk_item_seq(it) < atomic_load_explicit(&c->flush_seq, memory_order_acquire))
        return MK_C_FLUSHED;
    int64_t exp = mk_item_exp_at(it);
    if (exp != 0 && exp <= now)
        return MK_C_EXPIRED;
    return MK_C_OK;
}

static void flush_now_locked(mk_cache *c)
{
    uint64_t s = atomic_fetch_add_explicit(&c->segseq, 1, memory_order_relaxed) + 1;
    atomic_store_explicit(&c->flush_seq, s << 24, memory_order_release);
    atomic_store_explicit(&c->flush_pending, 0, memory_order_release);
}

void mk_flush_tick(mk_cache *c, int64_t now)
{
    int64_t p = atomic_load_explicit(&c->flush_pending, memory_order_acquire);
    if (!p || p > now)
        return;
    pthread_mutex_lock(&c->flush_lock);
    p = atomic_load_explicit(&c->flush_pending, memory_order_relaxed);
    if (p && p <= now)
        flush_now_locked(c);
    pthread_mutex_unlock(&c->flush_lock);
}

void mk_cache_flush(mk_cache *c, int64_t now, int64_t delay)
{
    pthread_mutex_lock(&c->flush_lock);
    int64_t p = atomic_load_explicit(&c->flush_pending, memory_order_relaxed);
    if (p && p <= now)
        flush_now_locked(c); /* a pending flush that is due stays in effect */
    if (delay > 0)
        atomic_store_explicit(&c->flush_pending, now + delay, memory_order_release);
    else
        flush_now_locked(c);
    pthread_mutex_unlock(&c->flush_lock);
}
