/* storage/cache.h — the item store: hash index, memory bound, eviction, expiry, flush; knows nothing of sockets or the wire. */
#ifndef MK_STORAGE_CACHE_H
#define MK_STORAGE_CACHE_H

/*
 * One mk_cache is one memcached-style key/value store. It is a handle: two caches
 * can live in one process (the unit tests make several).
 *
 * Threading: every function is thread-safe unless it says otherwise. The store is
 * split into shards by key hash; each shard has its own lock, hash table and
 * recency list, so operations on different keys rarely contend and there is no
 * global lock on the get/set path. Memory use is one atomic counter.
 *
 * Time: callers pass `now`, in whole seconds of the server clock (unix seconds).
 * Expiry times (`exp_at`) are absolute in the same clock, 0 meaning never. An
 * item is expired once exp_at != 0 && exp_at <= now. Converting the wire's
 * exptime (relative, absolute, negative) to exp_at is the caller's job.
 *
 * Items: mk_item is reference counted. Every function that hands out an item
 * (mk_cache_get, mk_cache_gat, mk_cache_alloc) gives the caller one reference,
 * which the caller must release with mk_item_put(). A referenced item's memory
 * stays valid even after it is deleted, replaced, evicted or flushed, so a
 * connection can write its bytes to a socket without copying.
 *
 * Memory: mem_limit bounds the item arena (segments holding headers, keys and
 * values, including allocated-but-not-yet-stored items and items still
 * referenced after unlinking), large values kept outside it, and the part of
 * the hash index above a small allowance (mem_limit / 16 + 4 MiB). When an
 * allocation would exceed it, the oldest segment is evicted (its expired items
 * reclaimed, its recently used ones given a second chance) until it fits, or,
 * with evict == false, segments holding dead bytes (overwritten, deleted,
 * expired, flushed items) are compacted — live items copied forward with their
 * cas, flags and expiry — and the allocation fails with MK_C_NO_MEMORY only once
 * live items fill the limit. See docs/storage.md.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mk_cache mk_cache;
typedef struct mk_item mk_item;

struct mk_cache_entry; /* (below) */

typedef struct mk_cache_config {
    size_t mem_limit;       /* bytes for items (headers + keys + values); required > 0 */
    size_t item_size_max;   /* largest item accepted, header + key + value (memcached's -I) */
    bool evict;             /* false (-M): fail with MK_C_NO_MEMORY instead of evicting */
    bool use_cas;           /* false (-C): cas uniques are always 0 */
    unsigned nshards;       /* lock stripes, a power of two; 0 = default (64); 1 = exact global LRU */
    unsigned hashpower;     /* initial hash table size 2^hashpower buckets in all; 0 = default (16) */
    const char *mem_file;   /* item memory in this file (memcached's -e), restored if it holds a clean image; or NULL */
    int64_t now;            /* the clock at creation: restored items that have expired are dropped */
    bool dump_items;        /* true: item memory is included in core dumps (default false: MADV_DONTDUMP) */
    /* NULL, or called for every item evicted, under its shard lock (so: quick, and no call into the
     * cache); the entry is valid only during the call */
    void (*on_evict)(void *ctx, const struct mk_cache_entry *e);
    void *evict_ctx;
} mk_cache_config;

/* What creating a cache over a memory file found (docs/storage.md, "Warm restart"). */
typedef struct mk_cache_restart {
    bool file;                 /* the arena is in cfg.mem_file */
    bool warm;                 /* the cache was rebuilt from the image in it */
    uint64_t items;            /* items restored */
    uint64_t segments;         /* segments restored */
    uint64_t segments_dropped; /* segments in the image whose checksum or header was wrong (their items are lost) */
    uint64_t items_dropped;    /* items that ran into such a segment */
    double seconds;            /* how long the restore took */
    char why[160];             /* why the start was cold; empty when warm or when the file was new */
} mk_cache_restart;

/* Result codes. Values >= 0 are outcomes; none of them is a failure of the store itself. */
typedef enum mk_cache_rc {
    MK_C_OK = 0,        /* found / stored / deleted / touched / done */
    MK_C_MISS,          /* no such key */
    MK_C_EXPIRED,       /* the key existed but had expired (counts as a miss; reclaimed now) */
    MK_C_FLUSHED,       /* the key existed but was invalidated by flush_all (a miss) */
    MK_C_NOT_STORED,    /* add on existing key, replace/append/prepend on missing key */
    MK_C_EXISTS,        /* cas: the unique did not match */
    MK_C_NOT_FOUND,     /* cas on a missing key */
    MK_C_NON_NUMERIC,   /* incr/decr on a value that is not a decimal number */
    MK_C_TOO_LARGE,     /* the item would exceed item_size_max */
    MK_C_NO_MEMORY      /* no room and eviction disabled (or nothing evictable) */
} mk_cache_rc;

typedef enum mk_store_op {
    MK_STORE_SET = 0,
    MK_STORE_ADD,
    MK_STORE_REPLACE,
    MK_STORE_APPEND,
    MK_STORE_PREPEND,
    MK_STORE_CAS
} mk_store_op;

/* Counters the store keeps; a consistent-enough snapshot (each field read atomically). */
typedef struct mk_cache_stats {
    uint64_t curr_items;        /* items linked now */
    uint64_t total_items;       /* items ever stored */
    uint64_t bytes;             /* bytes of linked items (header + key + value) */
    uint64_t mem_used;          /* bytes charged against mem_limit now (includes unlinked-but-referenced) */
    uint64_t mem_limit;
    uint64_t evictions;         /* live items evicted to make room */
    uint64_t evicted_unfetched; /* of those, never fetched after being stored */
    uint64_t evicted_active;    /* reserved for a later policy: evictions of recently used items */
    uint64_t expired_unfetched; /* expired items reclaimed that were never fetched */
    uint64_t reclaimed;         /* expired/flushed items whose memory was reused */
    uint64_t hash_power_level;  /* log2 of the current total bucket count */
    uint64_t hash_bytes;        /* bytes of hash tables */
    bool hash_is_expanding;     /* some shard is migrating its index into a table twice the size (incremental growth) */
    /* the memory engine (docs/storage.md) */
    uint64_t payload_bytes;     /* keys + values of linked items */
    uint64_t segment_size;      /* arena segment size */
    uint64_t segments_used;     /* segments not free (open, sealed, or still referenced) */
    uint64_t segments_total;
    uint64_t segments_probation; /* of segments_used: small items on probation (new keys not yet asked for) */
    uint64_t segments_large;    /* of segments_used: items over 4 KiB */
    uint64_t sketch_bytes;      /* the frequency sketches that decide which new items skip probation */
    uint64_t live_bytes;        /* bytes of linked items in the arena (== bytes) */
    uint64_t index_allowance;   /* index and sketch bytes not charged against mem_limit */
    uint64_t reinserted;        /* items given a second chance (kept or copied forward) instead of evicted */
    uint64_t segment_evictions; /* segments given back by a walk (the three below together) */
    uint64_t segments_freed_empty;     /* ... holding nothing live: overwritten, deleted, expired, flushed */
    uint64_t segments_freed_compacted; /* ... after copying their live items forward (memory was short of dead bytes) */
    uint64_t segments_freed_evicted;   /* ... after evicting live items (memory was full of live data) */
    uint64_t compacted_items;   /* live items copied forward by compaction */
} mk_cache_stats;

/*
 * Create a store. Returns NULL if cfg is invalid (mem_limit 0), on allocation
 * failure, or if cfg.mem_file cannot be opened and mapped (errno says why). With
 * a memory file holding the clean image of a cache with the same mem_limit,
 * item_size_max and use_cas, the store starts with its items (warm); otherwise
 * it starts empty (mk_cache_restart_info says why).
 */
mk_cache *mk_cache_create(const mk_cache_config *cfg);

/* Destroy a store and every item in it. The caller must hold no item references. NULL is a no-op. */
void mk_cache_destroy(mk_cache *c);

/*
 * With a memory file: leave a consistent image of the cache in it (segment
 * checksums, then a header marked clean, then msync), so that the next
 * mk_cache_create with the same file and settings restores every item. Call
 * with no other thread using the store, right before mk_cache_destroy. False if
 * there is no memory file or msync failed. Until it is called the image is
 * marked unclean: a crash leaves a file the next start ignores.
 */
bool mk_cache_save(mk_cache *c, int64_t now);
void mk_cache_restart_info(const mk_cache *c, mk_cache_restart *out);

/* The nominal bytes of an item of this key and value length (a 7-byte header + key + value, +8 for a value
 * kept outside the arena); the arena stores 4 to 7 header bytes plus 4 for non-zero flags and 4-7 for an expiry. */
size_t mk_cache_item_size(size_t nkey, size_t nbytes);

/* ---- items (accessors never fail; `it` must be a referenced item) ---- */
const char *mk_item_key(const mk_item *it);
size_t mk_item_nkey(const mk_item *it);
/*
 * The value's first byte. The value is contiguous there for
 * mk_item_piece(it, 0, ...) bytes: all of it for items up to 4 KiB, while a
 * larger value may continue in other pieces. Writable only between
 * mk_cache_alloc and mk_cache_store.
 */
char *mk_item_data(mk_item *it);
/* The value from byte off (< nbytes): *p points at it; returns how many bytes are contiguous there (>= 1). */
size_t mk_item_piece(const mk_item *it, size_t off, char **p);
/* Copy n bytes into the value at off (between mk_cache_alloc and mk_cache_store) / out of it. */
void mk_item_write(mk_item *it, size_t off, const void *src, size_t n);
void mk_item_read(const mk_item *it, size_t off, void *dst, size_t n);
size_t mk_item_nbytes(const mk_item *it);
uint32_t mk_item_flags(const mk_item *it);
uint64_t mk_item_cas(const mk_item *it);
int64_t mk_item_exp_at(const mk_item *it);  /* 0 = never */

/* Release one reference. The last reference of an unlinked item frees it. NULL is a no-op. */
void mk_item_put(mk_cache *c, mk_item *it);

/* ---- operations ---- */

/*
 * Look up key. On MK_C_OK *out holds a new reference and the item counts as
 * fetched. MK_C_MISS, MK_C_EXPIRED and MK_C_FLUSHED are all misses (*out = NULL)
 * that tell the caller which stat to count.
 */
mk_cache_rc mk_cache_get(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_item **out);

/* What a reader needs of an item, read in one pass over its header. */
typedef struct mk_item_view {
    const char *data; /* the value */
    size_t nbytes;
    uint32_t flags;
    uint64_t cas;     /* 0 when the cache runs without cas */
} mk_item_view;

/*
 * Called by mk_cache_read with a hit, under the item's shard lock: copy what is
 * needed from *v and return false, or return true to be handed a reference to the
 * item instead. Must not call into the cache, block, or keep v->data.
 */
typedef bool (*mk_cache_read_fn)(void *ctx, const mk_item_view *v);

/*
 * A get that lets the caller copy a hit out while the lookup's lock is held, so
 * that no reference is taken and given back (a multi-get of small values). Same
 * lookup, lazy expiry and recency bits as mk_cache_get; fn is called only when
 * it returns MK_C_OK. *out is the item (release with mk_item_put) if fn returned
 * true, else NULL.
 */
mk_cache_rc mk_cache_read(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_cache_read_fn fn, void *ctx,
                          mk_item **out);

/* Like mk_cache_get, and on a hit also sets the item's expiry to exp_at (gat/gats). */
mk_cache_rc mk_cache_gat(mk_cache *c, const char *key, size_t nkey, int64_t exp_at, int64_t now,
                         mk_item **out);

/*
 * Allocate an unlinked item with room for nbytes of value; the caller fills
 * mk_item_data(*out) and then calls mk_cache_store() (or mk_item_put() to drop it).
 * Returns MK_C_OK, MK_C_TOO_LARGE (over item_size_max) or MK_C_NO_MEMORY.
 */
mk_cache_rc mk_cache_alloc(mk_cache *c, const char *key, size_t nkey, uint32_t flags, int64_t exp_at,
                           size_t nbytes, int64_t now, mk_item **out);

/*
 * mk_cache_alloc for an item whose cas unique is `cas`, chosen by the client
 * (meta E), instead of a fresh one. A value later derived from it by append or
 * prepend keeps that unique; a move by the engine keeps it too. It costs the
 * item 8 bytes. (With use_cas off the item's unique still reads 0.)
 */
mk_cache_rc mk_cache_alloc_cas(mk_cache *c, const char *key, size_t nkey, uint32_t flags, int64_t exp_at,
                               size_t nbytes, uint64_t cas, int64_t now, mk_item **out);

/*
 * Link a filled item under its key with memcached's semantics for op:
 *   SET always stores; ADD only if absent; REPLACE only if present;
 *   APPEND/PREPEND join the new bytes to the existing value (keeping the existing
 *   flags and expiry) and need it present; CAS stores only if the present item's
 *   unique equals cas_in (MK_C_EXISTS if not, MK_C_NOT_FOUND if absent).
 * Expired or flushed items count as absent. On MK_C_OK *cas_out (if non-NULL)
 * receives the stored item's new unique. The caller keeps its reference to `it`
 * and must still mk_item_put() it. APPEND/PREPEND may fail with MK_C_TOO_LARGE
 * or MK_C_NO_MEMORY when the joined item does not fit.
 */
mk_cache_rc mk_cache_store(mk_cache *c, mk_item *it, mk_store_op op, uint64_t cas_in, int64_t now,
                           uint64_t *cas_out);

/* ---- the meta protocol's item state (memcached's fetched, stale and token-sent bits) ---- */

/* What a meta lookup (mg) asks besides the value, and what it learns about the item. */
typedef struct mk_cache_meta {
    /* in */
    bool no_bump;             /* u: neither a fetch nor a recency change (nor a sketch count) */
    bool touch;               /* T: set the expiry to exp_at */
    int64_t exp_at;
    int64_t recache_at;       /* R: win when the item expires (non-zero) before this; 0: no R */
    bool recache_after_touch; /* R is judged on the expiry T sets (T came first on the line) */
    /* out, on a hit (filled before a read callback runs) */
    bool fetched;             /* h: fetched before this lookup */
    bool stale;               /* X: marked stale */
    bool token_sent;          /* Z: a win was handed out before this lookup */
    bool win;                 /* W: this lookup won the right to recache (the item now says token sent) */
    bool key_binary;          /* the item was stored with a base64 key (MK_ITEM_BINKEY) */
    int64_t exp_before;       /* expiry before this lookup (0 never) */
    int64_t stored_at;        /* when its segment was opened: when it was written, at the latest */
} mk_cache_meta;

/*
 * A lookup with mk_cache_read's contract (fn may be NULL: a hit is handed over
 * as a reference) that also does what *m asks and reports the item's meta state.
 * With m->touch the hit is always handed over as a reference.
 */
mk_cache_rc mk_cache_mget(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_cache_meta *m,
                          mk_cache_read_fn fn, void *ctx, mk_item **out);

/*
 * Set meta state on an unlinked item (between mk_cache_alloc and mk_cache_store):
 * MK_ITEM_WON, a vivified placeholder (mg N) whose creator recaches it; MK_ITEM_FETCHED,
 * fetched already; MK_ITEM_BINKEY, its key came base64-encoded (ms b).
 */
enum { MK_ITEM_WON = 1u << 0, MK_ITEM_FETCHED = 1u << 1, MK_ITEM_BINKEY = 1u << 2 };
void mk_item_set_meta(mk_item *it, unsigned what);

/* Options of mk_cache_store_ex beyond mk_cache_store's. */
enum {
    MK_STORE_X_CAS_JOIN = 1u << 0, /* APPEND/PREPEND with cas_in != 0: MK_C_EXISTS unless it matches */
    MK_STORE_X_STALE = 1u << 1,    /* CAS with a cas_in below the item's: store anyway, marked stale,
                                      keeping the old expiry and token-sent bit (ms I) */
};

/* mk_cache_store with the meta protocol's options (MK_STORE_X_*); *nbytes_out (if not NULL) receives the
 * stored value's length (the joined one after append/prepend). */
mk_cache_rc mk_cache_store_ex(mk_cache *c, mk_item *it, mk_store_op op, uint64_t cas_in, unsigned opts,
                              int64_t now, uint64_t *cas_out, size_t *nbytes_out);

/*
 * md with I: mark key's item stale, clear its token-sent bit and give it a new
 * unique (*cas_out): *ecas if ecas is not NULL (meta E), else a fresh one; with
 * set_exp also a new expiry. cas_in != 0 must match.
 * MK_C_OK, MK_C_MISS, MK_C_EXISTS or MK_C_NO_MEMORY.
 */
mk_cache_rc mk_cache_invalidate(mk_cache *c, const char *key, size_t nkey, uint64_t cas_in, bool set_exp,
                                int64_t exp_at, const uint64_t *ecas, int64_t now, uint64_t *cas_out);

/* delete, only if cas_in (non-zero) matches: MK_C_OK, MK_C_MISS or MK_C_EXISTS. */
mk_cache_rc mk_cache_delete_cas(mk_cache *c, const char *key, size_t nkey, uint64_t cas_in, int64_t now);

/* A peek for "me": the item's view and state without counting a fetch. MK_C_OK or a miss. */
typedef struct mk_cache_peek {
    uint64_t cas;
    int64_t exp_at, stored_at;
    bool fetched;
    size_t nbytes, size;    /* value bytes; bytes the item takes in the arena */
    unsigned cls;           /* its size class (stats items numbering) */
} mk_cache_peek;
mk_cache_rc mk_cache_peek_item(mk_cache *c, const char *key, size_t nkey, int64_t now, mk_cache_peek *out);

/* Remove key. MK_C_OK if a live item was removed, MK_C_MISS otherwise. */
mk_cache_rc mk_cache_delete(mk_cache *c, const char *key, size_t nkey, int64_t now);

/* Set a live item's expiry. MK_C_OK or MK_C_MISS. */
mk_cache_rc mk_cache_touch(mk_cache *c, const char *key, size_t nkey, int64_t exp_at, int64_t now);

/*
 * incr (incr == true) or decr the decimal value of key by delta, as memcached
 * does: 64-bit unsigned, incr wraps, decr stops at 0; the value must parse as an
 * unsigned decimal (leading whitespace allowed, the number must be followed by
 * whitespace or end). When the new number is no longer than the old value it is
 * written in place, padded with trailing spaces to the old length (memcached's
 * visible behaviour); otherwise the item is replaced by a new one of exact length.
 * Returns MK_C_OK (with *result), MK_C_MISS, MK_C_NON_NUMERIC or MK_C_NO_MEMORY.
 * *cas_out (if non-NULL) receives the new unique.
 */
mk_cache_rc mk_cache_arith(mk_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta,
                           int64_t now, uint64_t *result, uint64_t *cas_out);

/*
 * mk_cache_arith for ma: cas_in (non-zero) must match (MK_C_EXISTS); with
 * set_exp the new item expires at exp_at; *exp_out (if not NULL) receives the
 * expiry the item had before; the new number's unique is *ecas when ecas is not
 * NULL (meta E), else a fresh one.
 */
mk_cache_rc mk_cache_arith_ex(mk_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta, uint64_t cas_in,
                              bool set_exp, int64_t exp_at, const uint64_t *ecas, int64_t now, uint64_t *result,
                              uint64_t *cas_out, int64_t *exp_out);

/*
 * flush_all: with delay 0, every item stored so far becomes invalid now; with
 * delay > 0, every item stored before now + delay becomes invalid at now + delay
 * (memcached's semantics; a later flush replaces an earlier pending one).
 */
void mk_cache_flush(mk_cache *c, int64_t now, int64_t delay);

/* Unlink key if present (used when a set fails, so stale data does not survive). */
void mk_cache_unlink(mk_cache *c, const char *key, size_t nkey);

/* Fill *out with the current counters. */
void mk_cache_get_stats(mk_cache *c, mk_cache_stats *out);

/*
 * mk_cache_set_limit — change the memory limit at run time (memcached's cache_memlimit), to any
 * size from 8 MB up to the limit the cache was created with (whose memory is already reserved).
 * Lowering it takes effect as items are stored: each allocation over the new limit evicts first,
 * and free segments above it are given back to the system now. false if bytes is out of bounds.
 */
bool mk_cache_set_limit(mk_cache *c, uint64_t bytes);
/* The memory limit in force (the creation's, or mk_cache_set_limit's since). */
uint64_t mk_cache_limit(mk_cache *c);

/*
 * Per size class figures for "stats items" / "stats slabs": call cb once per
 * non-empty class, in increasing class order. The classes are accounting
 * buckets of item sizes (see docs/storage.md), not a slab allocator.
 */
typedef struct mk_cache_class_stats {
    unsigned id;              /* 1-based class number */
    uint64_t chunk_size;      /* largest item size in this class */
    uint64_t number;          /* linked items */
    uint64_t bytes;           /* bytes of those items */
    int64_t age;              /* now - when the oldest segment in the eviction FIFO was opened */
    uint64_t evicted;
    uint64_t evicted_unfetched;
    uint64_t expired_unfetched;
    uint64_t reclaimed;
    uint64_t evicted_nonzero;   /* evicted with an expiry time set */
    uint64_t outofmemory;
} mk_cache_class_stats;

typedef void (*mk_cache_class_cb)(const mk_cache_class_stats *cs, void *ctx);
void mk_cache_class_stats_each(mk_cache *c, int64_t now, mk_cache_class_cb cb, void *ctx);

/* One live item as mk_cache_each shows it: views valid only during the callback. */
typedef struct mk_cache_entry mk_cache_entry;
struct mk_cache_entry {
    const char *key;
    size_t nkey;
    size_t nbytes;     /* value bytes */
    int64_t exp_at;    /* absolute, 0 = never */
    uint64_t cas;
    bool fetched;      /* read since it was stored */
    unsigned cls;      /* its class in "stats items" */
    size_t size;       /* bytes it takes in the arena */
};

/* The "stats items" class of an item (a reference held). */
unsigned mk_cache_item_class(const mk_cache *c, const mk_item *it);
/* The class an item of this key and value length falls in, without flags or expiry (an estimate of the above). */
unsigned mk_cache_class_for(const mk_cache *c, size_t nkey, size_t nbytes);

/*
 * mk_cache_each — call cb for every live (unexpired, unflushed) item, shard by shard in index order,
 * until cb returns false. Each shard's lock is held while its items are shown, so cb must not call
 * into the cache, and should be quick (operators' key dumps: stats cachedump, lru_crawler metadump).
 * Items stored or removed meanwhile may or may not be shown.
 */
typedef bool (*mk_cache_each_cb)(void *ctx, const mk_cache_entry *e);
void mk_cache_each(mk_cache *c, int64_t now, mk_cache_each_cb cb, void *ctx);

/* Reset the resettable counters (evictions, reclaimed, ...), as "stats reset" does. */
void mk_cache_reset_stats(mk_cache *c);

/*
 * Maintenance step, called periodically (e.g. once a second) from any thread:
 * advances incremental hash-table resizes and reclaims some expired items.
 * Does a bounded amount of work per call.
 */
void mk_cache_maintain(mk_cache *c, int64_t now);

#endif /* MK_STORAGE_CACHE_H */
