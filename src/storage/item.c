/* storage/item.c — item layout, sizes, accessors and reference counting. */
#include <stdlib.h>
#include <string.h>

#include "storage/internal.h"

size_t mk_cache_item_size(size_t nkey, size_t nbytes)
{
    if (nkey > SIZE_MAX - MK_ITEM_HEADER || nbytes > SIZE_MAX - MK_ITEM_HEADER - nkey)
        return SIZE_MAX;
    return MK_ITEM_HEADER + nkey + nbytes;
}

mk_item *mk_item_new(size_t nkey, size_t nbytes)
{
    mk_item *it = malloc(MK_ITEM_HEADER + nkey + nbytes);
    if (!it)
        return NULL;
    memset(it, 0, MK_ITEM_HEADER);
    atomic_init(&it->refcount, 1);
    atomic_init(&it->exp_at, 0);
    it->nkey = (uint16_t)nkey;
    it->nbytes = (uint32_t)nbytes;
    return it;
}

void mk_item_free(mk_item *it)
{
    free(it);
}

const char *mk_item_key(const mk_item *it) { return it->data; }
size_t mk_item_nkey(const mk_item *it) { return it->nkey; }
char *mk_item_data(mk_item *it) { return it->data + it->nkey; }
size_t mk_item_nbytes(const mk_item *it) { return it->nbytes; }
uint32_t mk_item_flags(const mk_item *it) { return it->flags; }
int64_t mk_item_exp_at(const mk_item *it)
{
    return atomic_load_explicit(&((mk_item *)it)->exp_at, memory_order_relaxed);
}

/*
 * seq is the item's store sequence (always kept: flush_all needs it) and is its
 * cas unique unless the cache runs with use_cas == false. seq changes after
 * linking only in an in-place incr/decr, which happens only while nobody but the
 * table holds the item, so holders read it without the shard lock.
 */
uint64_t mk_item_cas(const mk_item *it)
{
    return it->nocas ? 0 : it->seq;
}

void mk_item_put(mk_cache *c, mk_item *it)
{
    if (!it)
        return;
    if (atomic_fetch_sub_explicit(&it->refcount, 1, memory_order_acq_rel) == 1) {
        size_t size = mk_cache_item_size(it->nkey, it->nbytes);
        mk_item_free(it);
        mk_mem_uncharge(c, size);
    }
}
