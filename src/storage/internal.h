/* storage/internal.h — private types of the item store: compact item layout, segment arena, per-shard index, the cache handle. */
#ifndef MK_STORAGE_INTERNAL_H
#define MK_STORAGE_INTERNAL_H

/*
 * Lock rules (the whole store), in the only order they may nest:
 *
 *   relocate_lock -> head lock -> evict_lock -> shard lock -> arena_lock / flush_lock
 *
 *   - relocate_lock (relocate.c) lets one allocating thread at a time empty a
 *     large-log segment; it is taken with no other lock held.
 *   - heads[i].lock guards allocation head i: its open segment and that
 *     segment's write position. Allocation writes the item header and key
 *     under it, so a sealed segment only ever holds parseable items. A thread
 *     holds at most one head lock.
 *   - evict_lock serialises everything that walks a sealed segment's items and
 *     unlinks or moves them (eviction, compaction, the maintenance sweep), the
 *     compaction head (`comp`) they copy survivors into, and the per-log hit
 *     measure (`hit_rate`, `hits_seen`).
 *   - A shard lock guards that shard's index, counters, and the `state` byte
 *     (freq, fetched, stored, gone) of every item whose key hashes to the shard.
 *   - arena_lock guards the segment lists (each log's FIFO of sealed segments,
 *     the free list), segment states and kinds, and the memory charge (segments
 *     in use). It is a leaf: nothing else is taken while holding it.
 *   - flush_lock serialises writers of the flush state; it is a leaf too.
 *   - A thread never holds two shard locks, and never allocates while holding
 *     one (allocation may evict, which takes shard locks). Operations that need
 *     a new item while looking at an old one take a reference, unlock,
 *     allocate, re-lock and re-validate.
 *   - Lock-free: segment refcounts and live-byte counts, an item's expiry (a
 *     4-byte-aligned atomic), the flush state for readers, the sequence counter.
 *   - Functions that need the caller to hold a shard lock end in `_locked`.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/cache.h"

/* ---- segments ---- */

#define MK_SEG_BITS 16                     /* 64 KiB segments, aligned to their size */
#define MK_SEG_SIZE ((size_t)1 << MK_SEG_BITS)
#define MK_SEG_HDR 48                      /* inline header: mk_seghdr */
#define MK_SEG_PAY (MK_SEG_SIZE - MK_SEG_HDR) /* bytes a segment holds */
#define MK_SEG_MIN 8                       /* the arena has at least this many segments */
#define MK_LARGE_MIN 4096                  /* items larger than this go to the large log (and may span segments) */
#define MK_HEAD_SMALL 0                    /* allocation heads: small items, never spanning (MK_KIND_SMALL) */
#define MK_HEAD_LARGE 1                    /* large items, packed back to back across segment boundaries */
#define MK_HEAD_PROB 2                     /* small items on probation: new keys the sketch has not seen often (MK_KIND_PROB) */
#define MK_NHEADS 3
#define MK_HEAD_COMP MK_NHEADS             /* mk_arena_alloc's name for the compaction head */

/*
 * The logs, each a FIFO of sealed segments. Small items live in two of them, as
 * in S3-FIFO: new keys enter probation (MK_KIND_PROB); an item asked for while
 * there moves to the main log (MK_KIND_SMALL) when its segment leaves, the
 * others are evicted; main gives items in use a second chance. A new item whose
 * key the sketch (sketch.c) has seen asked for often enters main at once.
 */
enum { MK_KIND_SMALL = 0, MK_KIND_LARGE = 1, MK_KIND_PROB = 2, MK_NKINDS = 3 };

/*
 * At the start of every segment; readable from an item pointer alone. A large
 * item's value continues from the end of its segment into `next`, and on
 * through that segment's `next`: [MK_SEG_HDR, first) of a segment is the part
 * of a value spilling in, the items that start in it begin at `first`.
 */
typedef struct mk_seghdr {
    uint64_t seq;   /* segment sequence number: items' cas = seq << 24 | offset */
    uint32_t id;    /* this segment's number in the arena (so a pointer finds the arena) */
    int32_t next;   /* the segment a value spanning out of this one continues in; -1 none */
    uint32_t first; /* offset of the first item starting here (MK_SEG_SIZE: none) */
    uint8_t nocas;  /* the cache runs with use_cas == false */
    uint8_t kind;   /* MK_KIND_* */
    uint8_t saved;  /* image (persist.c): in use when the image was written */
    uint8_t pad;
    uint64_t owner;     /* arena offset of the item whose value spills in at MK_SEG_HDR (first > MK_SEG_HDR) */
    uint64_t owner_seq; /* the sequence number of the owner's segment then (it is reused under a new one) */
    uint32_t wpos;      /* image: end of its items when the image was written */
    uint32_t crc;       /* image: CRC-32 of this header (up to here) and of bytes [MK_SEG_HDR, wpos) */
} mk_seghdr;
_Static_assert(sizeof(mk_seghdr) == MK_SEG_HDR, "the segment header is MK_SEG_HDR bytes");

enum { MK_SEG_FREE = 0, MK_SEG_ACTIVE, MK_SEG_SEALED, MK_SEG_BUSY };

/* Per-segment bookkeeping, outside the segment (so free segments can be given back to the kernel). */
typedef struct mk_segm {
    _Atomic uint32_t refs;  /* references; 1 bias while in use (not free, not evicted) */
    _Atomic uint32_t live;  /* bytes of linked items in it (a spanning item counts its bytes in each segment) */
    _Atomic uint32_t nlive; /* linked items starting in it (compaction estimates a copy's size from both) */
    uint32_t wpos;          /* bytes written (head/comp owner while open; fixed once sealed) */
    int32_t prev, next;     /* FIFO or free list (arena_lock) */
    uint8_t state;          /* MK_SEG_* (arena_lock) */
    uint8_t resident;       /* pages may be resident (arena_lock) */
    uint8_t kind;           /* MK_KIND_* (set when opened) */
    uint32_t first;         /* where its first item starts (set when opened, or by the large head) */
    _Atomic uint8_t dead;   /* evicted: its items are unlinked and must not be linked again */
    int64_t ctime;          /* when it was opened */
} mk_segm;

/* ---- items (item.c) ----
 *
 *   byte 0  meta (immutable): vlen width code (bits 0-1: 1, 2 or 4 bytes), MK_M_* bits
 *   byte 1  state (shard lock): freq (bits 0-1), MK_S_FETCHED, MK_S_STORED, MK_S_GONE, MK_S_STALE, MK_S_WON,
 *           MK_S_BINKEY
 *   byte 2  key length
 *   vlen    1, 2 or 4 bytes, little endian
 *   [flags] 4 bytes, only when non-zero
 *   [exp]   4 bytes at the next 4-aligned address (atomic), only when the item has an expiry
 *   [cas]   8 bytes, only on an item moved by the engine (it keeps its original unique and
 *           its place in flush order) or given an explicit unique by a client (meta E,
 *           MK_M_ECAS: its flush order is still its place)
 *   key, then value; with MK_M_SPAN (large log) the value may run past the end of
 *   the segment and continue through the segment chain (mk_seghdr.next)
 */
enum {
    MK_M_VLEN = 3u,
    MK_M_FLAGS = 1u << 2,
    MK_M_EXP = 1u << 3,
    MK_M_XCAS = 1u << 4,
    MK_M_SPAN = 1u << 5,
    MK_M_ECAS = 1u << 6, /* with MK_M_XCAS: the cas field is a client's explicit unique (meta E) */
};

/* What an allocation's cas field holds. */
typedef enum mk_xcas {
    MK_XCAS_NONE,     /* no field: the unique and the flush order are the item's place */
    MK_XCAS_KEEP,     /* a moved item: the unique it had, which is also its flush order */
    MK_XCAS_EXPLICIT, /* a client's unique (meta E); the flush order is the item's place */
} mk_xcas;
enum {
    MK_S_FREQ = 3u,
    MK_S_FETCHED = 1u << 2,
    MK_S_STORED = 1u << 3,
    MK_S_GONE = 1u << 4, /* unlinked (or stored and at once evicted): a restart must not bring it back */
    MK_S_STALE = 1u << 5, /* meta: marked stale (md I, ms I): lookups report X */
    MK_S_WON = 1u << 6,   /* meta: a lookup was handed the right to recache (W); later ones see Z */
    MK_S_BINKEY = 1u << 7, /* meta: stored by ms with b; k replies re-encode the key (memcached's ITEM_KEY_BINARY) */
    MK_S_META = MK_S_STALE | MK_S_WON | MK_S_BINKEY, /* the bits a link keeps */
};

struct mk_item {
    uint8_t meta;
    uint8_t state;
    uint8_t nkey;
    uint8_t rest[];
};

#define MK_KEY_MAX 250

/* Layout of an item with these fields. */
typedef struct mk_layout {
    uint8_t meta;
    size_t nkey, nbytes;
    size_t size;      /* bytes in the arena (header + key + value) */
    size_t hdr;       /* header + key */
} mk_layout;

/* Plan an item at arena address `at` (the exp field's padding depends on it). */
void mk_layout_plan(mk_layout *l, uintptr_t at, size_t nkey, size_t nbytes, bool flags, bool exp, mk_xcas xcas,
                    bool span);
/* Bytes an item occupies in the arena (parsed from its header), all segments together. */
size_t mk_item_arena_size(const mk_item *it);
/* Write the header of a planned item. */
void mk_item_init(mk_item *it, const mk_layout *l, const char *key, uint32_t flags, int64_t exp_at,
                  uint64_t xcas);
/* The item's place in flush order (its allocation's, or the one a move kept). */
uint64_t mk_item_seq(const mk_item *it);
/* The item's cas unique, also when use_cas is off. */
uint64_t mk_item_unique(const mk_item *it);
/* How a copy that stands for the same item keeps its unique: MK_XCAS_KEEP or, for an explicit one, MK_XCAS_EXPLICIT. */
mk_xcas mk_item_xmode(const mk_item *it);
/* How a new value derived from `it` (append, a rewrite) inherits an explicit unique: MK_XCAS_EXPLICIT or NONE. */
static inline mk_xcas mk_item_xinherit(const mk_item *it) { return (it->meta & MK_M_ECAS) ? MK_XCAS_EXPLICIT : MK_XCAS_NONE; }
bool mk_item_has_exp(const mk_item *it);
void mk_item_set_exp(mk_item *it, int64_t exp_at); /* only if mk_item_has_exp */
void mk_item_view_of(const mk_item *it, mk_item_view *v); /* value, length, flags and cas in one pass */
/* Copy n value bytes from src (from soff) into dst (at doff), piece by piece. */
void mk_item_copy(mk_item *dst, size_t doff, const mk_item *src, size_t soff, size_t n);

/* ---- spanning items of the large log (span.c) ---- */

/* Call f(c, segment, bytes of the item in it, arg) for every segment the item occupies. */
void mk_span_each(mk_cache *c, const mk_item *it, void (*f)(mk_cache *c, uint32_t id, uint32_t bytes, void *arg),
                  void *arg);
/* Count a spanning item's bytes as live in the segments after its first; false (nothing counted) if one of
 * them is being evicted. Pairs with mk_seg_evict's check of `live` after setting `dead`. */
bool mk_span_claim(mk_cache *c, const mk_item *it);
void mk_span_unclaim(mk_cache *c, const mk_item *it); /* undo a claim */

static inline mk_seghdr *mk_seghdr_of(const void *p)
{
    return (mk_seghdr *)((uintptr_t)p & ~(uintptr_t)(MK_SEG_SIZE - 1));
}
/* The header of the segment a value continues in after h's (h->next >= 0). */
static inline mk_seghdr *mk_seghdr_next(const mk_seghdr *h)
{
    return (mk_seghdr *)((const char *)h + ((intptr_t)h->next - (intptr_t)h->id) * (intptr_t)MK_SEG_SIZE);
}

/* ---- hashing and the per-shard index (hash.c) ---- */

uint64_t mk_hash64(const void *key, size_t len, uint64_t seed);

/*
 * Open addressing, linear probing, 8-byte slots: bits 0-39 the item's offset in
 * the arena, bits 40-63 the low 24 bits of the key hash (the tag, which also
 * gives the home slot: a doubling needs no key re-hashing). 0 is empty.
 * Deletion shifts back, so there are no tombstones.
 *
 * Growth is incremental (no stop-the-world copy): past 3/4 full a table twice
 * the size becomes `slot` and the old one `old`; every insert moves the probe
 * runs at the front of `old` (at least MK_IDX_STEP slots) into `slot`, and
 * mk_cache_maintain moves more. Old slots [0, cursor) are empty (and are
 * unmapped in MK_IDX_CHUNK pieces as the cursor passes them); a lookup tries
 * `slot`, then `old`. A position in `old` has MK_IDX_OLD set.
 */
#define MK_IDX_TAG_BITS 24
#define MK_IDX_OFF_MASK (((uint64_t)1 << 40) - 1)
#define MK_IDX_STEP 32                       /* old slots migrated per insert while expanding */
#define MK_IDX_CHUNK ((size_t)8192)          /* old slots unmapped at a time (64 KiB) */
#define MK_IDX_OLD ((size_t)1 << (sizeof(size_t) * 8 - 2))
typedef struct mk_index {
    uint64_t *slot;     /* the table inserts go to */
    unsigned power;
    size_t count;       /* entries in both tables */
    uint64_t *old;      /* the table being migrated out of; NULL when not expanding */
    unsigned old_power;
    size_t cursor;      /* old slots below are empty */
    size_t unmapped;    /* old slots below are unmapped (a multiple of MK_IDX_CHUNK) */
} mk_index;

bool mk_idx_init(mk_index *x, unsigned power);
void mk_idx_free(mk_index *x);
size_t mk_idx_bytes(const mk_index *x); /* bytes of the current table (not the old one) */

/* ---- size classes and stats (stats.c) ---- */

#define MK_MAX_CLASSES 64

typedef struct mk_class_counters {
    uint64_t number, bytes;
    uint64_t evicted, evicted_unfetched, expired_unfetched, reclaimed;
    uint64_t evicted_nonzero; /* evicted with an expiry time set */
    int64_t oldest; /* unused */
} mk_class_counters;

typedef struct mk_shard_counters {
    uint64_t curr_items, bytes, payload, total_items;
    uint64_t evictions, evicted_unfetched, expired_unfetched, reclaimed, reinserted;
    uint64_t hits[2]; /* hits on small and large items: eviction weighs the two by hits per byte */
} mk_shard_counters;

/* A count-min sketch of lookups by key hash, 4-bit counters (sketch.c). */
typedef struct mk_sketch {
    uint8_t *ctr;     /* two counters a byte; NULL only if its allocation failed */
    size_t blocks;    /* of 64 counters */
    unsigned power;   /* the index's power it was sized for */
    uint64_t added, period; /* increments since the last halving; halve at period */
} mk_sketch;

/* ---- shards and the cache ---- */

typedef struct mk_shard {
    pthread_mutex_t lock; /* guards everything below and its items' state bytes */
    mk_index idx;
    mk_sketch sk;
    mk_class_counters cls[MK_MAX_CLASSES + 1];
    mk_shard_counters n;
} mk_shard;

/* Size the shard's sketch for its index: at create and whenever the index changes size (a fresh one; the old
 * one stays if that allocation fails). False if it has none (shard lock held, or at create). */
bool mk_sketch_fit(mk_cache *c, mk_shard *s);
/* Count a lookup of the key with hash hv (shard lock held). */
void mk_sketch_add_locked(mk_shard *s, uint64_t hv);
/* How often the key was looked up lately, 0..15 (shard lock held). */
unsigned mk_sketch_estimate_locked(const mk_shard *s, uint64_t hv);
void mk_sketch_free(mk_cache *c, mk_sketch *k);
/* A new small item of a key with at least this estimate skips probation. */
#define MK_SK_RECALL 4
/* An empty shard's index (and sketch) made big enough for n entries at once, so that filling it does not go
 * through the doublings (each holds the old table beside the new one for a while): warm restart. */
bool mk_idx_presize_locked(mk_cache *c, mk_shard *s, size_t n);
/* Call fn for every item the shard's index holds (both tables while it grows), until fn returns false.
 * False if it was stopped. */
bool mk_idx_each_locked(mk_cache *c, mk_shard *s, bool (*fn)(void *ctx, mk_item *it), void *ctx);

/* Why a segment was given back: everything in it was dead, its live items were copied forward, or evicted. */
typedef enum { MK_FREED_EMPTY = 0, MK_FREED_COMPACTED, MK_FREED_EVICTED, MK_FREED_WHY } mk_freed_why;

typedef struct mk_head {
    pthread_mutex_t lock; /* guards seg and segm[seg].wpos while open */
    int32_t seg;          /* open segment, -1 = none */
    uint8_t kind;         /* MK_KIND_* of the segments it opens */
} mk_head;

struct mk_cache {
    mk_cache_config cfg;  /* normalised copy (defaults filled in) */
    unsigned shard_bits;  /* nshards == 1 << shard_bits */
    mk_shard *shards;
    uint64_t seed;        /* hash seed, random per cache */

    /* arena */
    char *base;           /* segment 0, aligned to MK_SEG_SIZE */
    void *map;            /* the mapping (base rounded down) and its length */
    size_t map_len;
    int mem_fd;           /* the memory file (cfg.mem_file), or -1: the arena is anonymous memory */
    char *image;          /* with a memory file: its first page (mk_image_hdr), just before base */
    mk_cache_restart restart; /* what the start found in the memory file (persist.c) */
    uint32_t nseg;
    mk_segm *segm;
    mk_head heads[MK_NHEADS];
    pthread_mutex_t arena_lock;  /* lists, states, the charge; a leaf lock */
    int32_t fifo_head[MK_NKINDS], fifo_tail[MK_NKINDS]; /* sealed segments of each log (MK_KIND_*), oldest first */
    uint32_t inuse_kind[MK_NKINDS]; /* segments in use by each log (arena_lock) */
    double hit_rate[2];          /* hits per maintain call on small and large items, smoothed (evict_lock) */
    uint64_t hits_seen[2];       /* hit counts at the last maintain call */
    int32_t free_head;
    uint32_t nfree, nfree_resident, inuse;
    _Atomic uint32_t inuse_hint; /* inuse, readable without arena_lock */
    pthread_mutex_t relocate_lock; /* one relocation at a time (relocate.c); taken with trylock, no lock held */
    _Atomic uint64_t live_bytes; /* bytes of linked items, all segments */
    _Atomic uint64_t idx_bytes;  /* all index tables */
    _Atomic uint64_t sketch_bytes; /* all sketches (sketch.c) */
    uint64_t idx_allowance;      /* index and sketch bytes not charged against mem_limit */
    uint64_t limit;              /* effective mem_limit (at least MK_SEG_MIN segments) */

    pthread_mutex_t evict_lock;  /* segment walkers and the compaction head */
    int32_t comp;                /* compaction head segment, -1 = none (evict_lock) */
    uint32_t sweep_pos;          /* maintain: next segment to look at (evict_lock) */
    uint32_t compact_pos;        /* -M: next segment id compaction looks at (evict_lock) */

    _Atomic uint64_t segseq;     /* last segment sequence number handed out */

    /* flush state (expiry.c) */
    pthread_mutex_t flush_lock;
    _Atomic uint64_t flush_seq;    /* items with seq below are flushed */
    _Atomic int64_t flush_pending; /* delayed flush due at this time, 0 = none */

    unsigned nclasses;
    uint64_t class_size[MK_MAX_CLASSES + 1];
    _Atomic uint64_t outofmemory[MK_MAX_CLASSES + 1];
    _Atomic uint64_t seg_evictions; /* segments evicted or compacted */
    _Atomic uint64_t seg_freed[MK_FREED_WHY]; /* segments given back, by why (mk_freed_why) */
    _Atomic uint64_t compacted_items;         /* live items copied forward to free a segment */
};

static inline mk_shard *mk_shard_of(mk_cache *c, uint64_t hv)
{
    return &c->shards[c->shard_bits ? (size_t)(hv >> (64 - c->shard_bits)) : 0];
}
static inline uint64_t mk_off_of(const mk_cache *c, const void *p) { return (uint64_t)((const char *)p - c->base); }
static inline uint32_t mk_segid_of(const mk_cache *c, const void *p)
{
    return (uint32_t)(mk_off_of(c, p) >> MK_SEG_BITS);
}
static inline char *mk_seg_base(const mk_cache *c, uint32_t id) { return c->base + ((size_t)id << MK_SEG_BITS); }

/* hash.c: index operations; hv is the full key hash */
mk_item *mk_idx_find_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey, size_t *pos);
/* Find the slot holding exactly this item; SIZE_MAX if it is not linked. */
size_t mk_idx_find_item_locked(mk_cache *c, mk_shard *s, uint64_t hv, const mk_item *it);
/* Insert (a key not present). False if the table is full and cannot grow. */
bool mk_idx_insert_locked(mk_cache *c, mk_shard *s, uint64_t hv, const mk_item *it);
void mk_idx_set_locked(mk_cache *c, mk_shard *s, size_t pos, uint64_t hv, const mk_item *it);
void mk_idx_delete_locked(mk_shard *s, size_t pos);
/* Migrate at least `budget` old slots (whole probe runs) of an expanding index; true if still expanding. */
bool mk_idx_migrate_locked(mk_cache *c, mk_index *x, size_t budget);

/* stats.c */
void mk_classes_init(mk_cache *c);
unsigned mk_class_of(const mk_cache *c, size_t size);

/* expiry.c */
mk_cache_rc mk_item_validity(mk_cache *c, const mk_item *it, int64_t now);
/* Turn a delayed flush that is due into an immediate one. Call with no lock held. */
void mk_flush_tick(mk_cache *c, int64_t now);

/* cache.c */
uint64_t mk_key_hash(const mk_cache *c, const mk_item *it);
mk_item *mk_find_valid_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey,
                              int64_t now, mk_cache_rc *why, size_t *pos);
/* The same; reclaim: a dead item found is counted as reclaimed (a store is taking its key). */
mk_item *mk_find_valid_ex_locked(mk_cache *c, mk_shard *s, uint64_t hv, const char *key, size_t nkey,
                                 int64_t now, mk_cache_rc *why, size_t *pos, bool reclaim);
mk_cache_rc mk_alloc_hv(mk_cache *c, const char *key, size_t nkey, uint64_t hv, uint32_t flags,
                        int64_t exp_at, size_t nbytes, int64_t now, mk_item **out);
/* mk_alloc_hv with a cas field (xcas, cas as mk_arena_alloc takes them). */
mk_cache_rc mk_alloc_x(mk_cache *c, const char *key, size_t nkey, uint64_t hv, uint32_t flags, int64_t exp_at,
                       size_t nbytes, mk_xcas xcas, uint64_t cas, int64_t now, mk_item **out);
/* Allocate a copy of `it` (value not copied) with expiry exp_at and its cas unique. */
mk_cache_rc mk_alloc_copy(mk_cache *c, const mk_item *it, uint64_t hv, int64_t exp_at, int64_t now, mk_item **out);
/*
 * Link `it` (a key not in the index), or put it in place of `old` at slot pos.
 * False, and nothing changed, if part of a large value is in a segment being
 * evicted (mk_span_claim): the caller decides whether that loses the key.
 */
bool mk_link_locked(mk_cache *c, mk_shard *s, uint64_t hv, mk_item *it);
bool mk_replace_locked(mk_cache *c, mk_shard *s, uint64_t hv, size_t pos, mk_item *old, mk_item *it);
/* `it` can no longer be linked: its segment was evicted, or a flush came after its allocation. */
bool mk_unlinkable(mk_cache *c, const mk_item *it);
/* Unlink the item at slot pos: counters and live bytes. */
void mk_unlink_locked(mk_cache *c, mk_shard *s, size_t pos, mk_item *it);
/* Counters for an item leaving the index: reclaimed/expired_unfetched or evicted. */
void mk_count_gone_locked(mk_cache *c, mk_shard *s, const mk_item *it, mk_cache_rc why, bool evicted);
void mk_item_ref(mk_cache *c, mk_item *it);

/* arena.c */
bool mk_arena_init(mk_cache *c);
void mk_arena_free(mk_cache *c);
/*
 * Allocate a new item of this shape from head h (or, with h == MK_HEAD_COMP, from
 * the compaction head: evict_lock held, never evicts, small items only). Writes
 * header and key; the caller gets one reference (on every segment it spans).
 * NULL if no room can be made.
 */
mk_item *mk_arena_alloc(mk_cache *c, unsigned h, const char *key, size_t nkey, size_t nbytes, uint32_t flags,
                        int64_t exp_at, mk_xcas xcas, uint64_t cas, int64_t now);
/*
 * A segment of kind `kind`: for an allocation head (the compaction head's, if
 * one is open, else a free one, evicting for it), for the rest of a spanning
 * value (a free one, evicting for it), or for the compaction head (a free one
 * from the reserve, never evicting). -1 if none can be had.
 */
typedef enum { MK_SEG_FOR_HEAD, MK_SEG_FOR_SPILL, MK_SEG_FOR_COMP } mk_seg_use;
int32_t mk_seg_get(mk_cache *c, mk_seg_use use, uint8_t kind, int64_t now);
/* Put a filled (or emptied) segment at the FIFO's tail: it becomes evictable. */
void mk_seg_seal(mk_cache *c, int32_t id);
/* Append a segment to its log's FIFO (SEALED) / take it off (BUSY); arena_lock held. */
void mk_fifo_push_locked(mk_cache *c, int32_t id);
void mk_fifo_remove_locked(mk_cache *c, int32_t id);
/* Drop one segment reference; the last one frees the segment. */
void mk_seg_unref(mk_cache *c, uint32_t id);
/* Index and sketch bytes beyond the allowance: they count against the limit. */
uint64_t mk_meta_excess(const mk_cache *c);
/* Bytes charged against the limit now (mk_charged_locked: arena_lock held). */
uint64_t mk_charged(mk_cache *c);
uint64_t mk_charged_locked(const mk_cache *c);

/* span.c: the large head's allocation of an item spanning segments (large head lock held) */
mk_item *mk_span_alloc(mk_cache *c, mk_head *hd, const mk_layout *l, const char *key, uint32_t flags,
                       int64_t exp_at, uint64_t cas, int64_t now);

/* persist.c: warm restart */
/* Map the arena onto cfg.mem_file (header page, then the segments). False (errno set) if it cannot be. */
bool mk_persist_map(mk_cache *c);
/* Rebuild the cache from a clean image in the file, if it has one (at create, single-threaded). */
void mk_persist_restore(mk_cache *c);
/* Give free segment memory back: the file's pages with a memory file, anonymous pages otherwise. */
void mk_persist_discard(mk_cache *c, uint32_t id);

/* relocate.c (no lock held) */
/*
 * When free segments run low while most of the arena is dead bytes, move the live
 * items out of the sparsest large-log segment through the ordinary allocation
 * path (keeping their cas, flags and expiry) and free it. Large-log segments
 * cannot be compacted under evict_lock: their items may span segments.
 */
void mk_relocate_maybe(mk_cache *c, int64_t now);
/* Whether live items take at most 7/8 of the arena (so memory is short of dead bytes, not of live ones). */
bool mk_mostly_dead(const mk_cache *c);
/* evict.c: the least-live sealed large-log segment among the next `scan` ids, taken off the FIFO; -1 if none
 * has at most max_live live bytes (evict_lock held) */
int32_t mk_pick_sparse_large(mk_cache *c, uint32_t scan, uint64_t max_live);
/* evict.c: give a segment taken off the FIFO back: freed if nothing in it is live, else back on the FIFO. */
void mk_seg_done(mk_cache *c, uint32_t id, bool moved, int64_t now);

/* evict.c (evict_lock held) */
/* EVICT: second chance for items in use; FORCE: none; COMPACT: move, never evict; RECLAIM: only expired/flushed. */
typedef enum { MK_EV_EVICT, MK_EV_FORCE, MK_EV_COMPACT, MK_EV_RECLAIM } mk_ev_mode;
/*
 * Walk a BUSY segment. Returns true if nothing in it is live any more (the caller
 * drops its bias reference); false if it must stay (-M items that found no room,
 * a reclaim walk that left live items, or a large-log segment still holding a
 * live item's bytes: those go back on the FIFO).
 */
bool mk_seg_evict(mk_cache *c, uint32_t id, mk_ev_mode mode, int64_t now);
/*
 * Make room for one segment: while live items fill at most 7/8 of the arena (or
 * always with -M) compact a sparse segment instead (nothing live is lost); else
 * take the oldest sealed segment off the FIFO and evict it. False if no room
 * could be made.
 */
bool mk_evict_one(mk_cache *c, bool whole, int64_t now); /* whole: a free segment is needed, not room in a head */

#endif /* MK_STORAGE_INTERNAL_H */
