/* storage/internal.h — private types of the item store: item header, per-shard hash table and LRU, the cache handle. */
#ifndef MK_STORAGE_INTERNAL_H
#define MK_STORAGE_INTERNAL_H

/*
 * Lock rules (the whole store):
 *   - Each shard has one mutex, `mk_shard.lock`. It guards everything in the
 *     shard (hash table, LRU lists, counters) and the mutable header fields of
 *     every item linked in that shard (links, atime, iflags, seq).
 *   - A thread never holds two shard locks at once, and never allocates
 *     (which may evict from any shard) while holding one. Operations that need a
 *     new item while looking at an old one (append/prepend, arith growth) take a
 *     reference, unlock, allocate, re-lock and re-validate.
 *   - Functions that require the caller to hold the shard lock end in `_locked`.
 *   - mem_used, the cas/sequence counter, the flush state, an item's refcount and
 *     exp_at are atomics and need no lock. flush_lock only serialises writers of
 *     the flush state; it is never held together with a shard lock.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/cache.h"

/* ---- items (item.c) ---- */

enum {
    MK_IT_LINKED = 1u << 0,  /* in its shard's hash table and LRU lists (holds one reference) */
    MK_IT_STORED = 1u << 1,  /* has been linked once; an item is never linked twice */
    MK_IT_FETCHED = 1u << 2, /* read (get/gat/touch) since it was stored */
};

struct mk_item {
    mk_item *h_next;           /* hash chain (shard lock) */
    mk_item *prev, *next;      /* shard LRU, head = most recently used (shard lock) */
    mk_item *cprev, *cnext;    /* shard per-class LRU, for class stats age (shard lock) */
    uint64_t hv;               /* hash of the key (immutable) */
    uint64_t seq;              /* store sequence number; the cas unique when use_cas (shard lock) */
    _Atomic int64_t exp_at;    /* absolute expiry, 0 = never (atomic: read by holders without lock) */
    int64_t atime;             /* last access, server seconds (shard lock) */
    _Atomic uint32_t refcount; /* references; linked state holds one */
    uint32_t flags;            /* client flags (immutable after alloc) */
    uint32_t nbytes;           /* value length (immutable) */
    uint8_t nkey;              /* key length, at most MK_KEY_MAX (immutable) */
    uint8_t clsid;             /* size class, 1-based (immutable) */
    uint8_t nocas;             /* the cache has use_cas == false: mk_item_cas() says 0 (immutable) */
    uint8_t iflags;            /* MK_IT_* (shard lock) */
    char data[];               /* key, then value */
};

#define MK_ITEM_HEADER sizeof(struct mk_item)
#define MK_KEY_MAX 255 /* the protocol allows 250 */

/* Allocate an unlinked item with refcount 1; memory must already be charged. NULL on malloc failure. */
mk_item *mk_item_new(size_t nkey, size_t nbytes);
/* Free an item's memory (no accounting). */
void mk_item_free(mk_item *it);
static inline char *mk_item_val(mk_item *it) { return it->data + it->nkey; }

/* ---- hashing and the per-shard table (hash.c) ---- */

uint64_t mk_hash64(const void *key, size_t len, uint64_t seed);

/*
 * A chained hash table that doubles incrementally: while `old` is non-NULL,
 * buckets of `old` below `migrated` have moved to `cur`; the others are still
 * in `old`. Every key lives in exactly one bucket.
 */
typedef struct mk_htab {
    mk_item **cur;      /* 2^power buckets */
    mk_item **old;      /* 2^(power-1) buckets while expanding, else NULL */
    unsigned power;
    size_t migrated;    /* next bucket of `old` to migrate */
    size_t count;       /* items in the table */
} mk_htab;

bool mk_htab_init(mk_htab *ht, unsigned power);
void mk_htab_free(mk_htab *ht);
mk_item *mk_htab_find_locked(mk_htab *ht, uint64_t hv, const char *key, size_t nkey);
void mk_htab_insert_locked(mk_htab *ht, mk_item *it);
void mk_htab_remove_locked(mk_htab *ht, mk_item *it);
/* Start a doubling when the load factor is over 1.5, then migrate up to nbuckets old buckets. */
void mk_htab_step_locked(mk_htab *ht, size_t nbuckets);
size_t mk_htab_bytes(const mk_htab *ht);

/* ---- size classes and stats (stats.c) ---- */

#define MK_MAX_CLASSES 64

typedef struct mk_class_counters {
    uint64_t number, bytes;
    uint64_t evicted, evicted_unfetched, expired_unfetched, reclaimed;
} mk_class_counters;

typedef struct mk_shard_counters {
    uint64_t curr_items, bytes, total_items;
    uint64_t evictions, evicted_unfetched, expired_unfetched, reclaimed;
} mk_shard_counters;

/* ---- shards and the cache ---- */

typedef struct mk_shard {
    pthread_mutex_t lock;               /* guards everything below and its items' mutable fields */
    mk_htab ht;
    mk_item *lru_head, *lru_tail;       /* all items of the shard, by recency */
    mk_item *chead[MK_MAX_CLASSES + 1]; /* per-class recency lists (index = clsid) */
    mk_item *ctail[MK_MAX_CLASSES + 1];
    mk_class_counters cls[MK_MAX_CLASSES + 1];
    mk_shard_counters n;
    size_t sweep_pos;                   /* maintain: next bucket of ht.cur to sweep */
} mk_shard;

struct mk_cache {
    mk_cache_config cfg;        /* normalised copy (defaults filled in) */
    unsigned shard_bits;        /* nshards == 1 << shard_bits */
    mk_shard *shards;
    uint64_t seed;              /* hash seed, random per cache */

    _Atomic uint64_t mem_used;  /* bytes charged against cfg.mem_limit */
    _Atomic uint64_t seq;       /* last store sequence / cas unique handed out */

    /* Flush state (see expiry.c). Written under flush_lock, read lock-free. */
    pthread_mutex_t flush_lock;
    _Atomic uint64_t flush_seq;     /* items with seq < flush_seq are flushed (immediate flush) */
    _Atomic int64_t flush_dead;     /* items last used before this time are flushed (past delayed flushes) */
    _Atomic int64_t flush_pending;  /* delayed flush: from this time, items used before it are flushed */

    unsigned nclasses;
    uint64_t class_size[MK_MAX_CLASSES + 1];        /* class_size[id] = largest item of class id */
    _Atomic uint64_t outofmemory[MK_MAX_CLASSES + 1];
};

static inline mk_shard *mk_shard_of(mk_cache *c, uint64_t hv)
{
    return &c->shards[c->shard_bits ? (size_t)(hv >> (64 - c->shard_bits)) : 0];
}

/* stats.c */
void mk_classes_init(mk_cache *c);
unsigned mk_class_of(const mk_cache *c, size_t size);

/* expiry.c: why a linked item is no longer valid (MK_C_OK = valid, MK_C_EXPIRED, MK_C_FLUSHED). */
mk_cache_rc mk_item_validity(mk_cache *c, const mk_item *it, int64_t now);

/* cache.c */
/*
 * Find key and check it is still valid. An expired or flushed item is unlinked
 * on the spot (*why says which) and handed back in *dead, whose link reference
 * the caller drops after unlocking. *why is MK_C_OK when an item is returned.
 */
mk_item *mk_find_valid_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey,
                              int64_t now, mk_cache_rc *why, mk_item **dead);
/* mk_cache_alloc with the key's hash already known. Call with no shard lock held. */
mk_cache_rc mk_alloc_hv(mk_cache *c, const char *key, size_t nkey, uint64_t hv, uint32_t flags,
                        int64_t exp_at, size_t nbytes, int64_t now, mk_item **out);

/* lru.c */
void mk_lru_link_locked(mk_shard *s, mk_item *it);
void mk_lru_unlink_locked(mk_shard *s, mk_item *it);
void mk_lru_bump_locked(mk_shard *s, mk_item *it, int64_t now);
/* Link a filled item into its shard: hash table, LRU, counters, new sequence number. */
void mk_link_locked(mk_cache *c, mk_shard *s, mk_item *it, int64_t now);
/* Unlink from table and lists; the caller must later drop the link reference with mk_item_put(). */
void mk_unlink_locked(mk_shard *s, mk_item *it);
/* Unlink an expired/flushed item found by an operation or sweep; counts expired_unfetched when asked. */
void mk_reclaim_locked(mk_shard *s, mk_item *it, mk_cache_rc why, bool count);
/* Charge size bytes against mem_limit, evicting if allowed. MK_C_OK or MK_C_NO_MEMORY. */
mk_cache_rc mk_mem_charge(mk_cache *c, size_t size, uint64_t hv, int64_t now);
void mk_mem_uncharge(mk_cache *c, size_t size);

#endif /* MK_STORAGE_INTERNAL_H */
