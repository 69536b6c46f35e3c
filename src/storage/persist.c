/* storage/persist.c — warm restart: the arena in a file mapping (memcached's -e), a consistent image at a clean stop, the cache rebuilt from it at start. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "storage/internal.h"

/*
 * The file is one page of header (mk_image_hdr), then the arena's segments, so
 * that item memory lives in the file: a restart finds the items where they were.
 * Only what the running cache keeps in the segments is needed to rebuild it: each
 * segment header has its sequence number (and so its items' cas uniques), its
 * chain link and where its first item starts; each item's state byte says
 * whether it is linked (MK_S_STORED and not MK_S_GONE).
 *
 * mk_cache_save (a clean stop, no other thread running) writes into each segment
 * header whether it is in use, its write position and a CRC-32 of the header and
 * of its items; then the image header with `clean` set; then msyncs. A start
 * clears `clean` (and msyncs) before it serves anything, so after a crash or a
 * kill -9 the file is never trusted. The index is rebuilt by walking the segments
 * (zlib's crc32 checks each; see docs/storage.md for why zlib).
 */

#define IMAGE_PAGE 4096u
#define IMAGE_VERSION 1u
static const char IMAGE_MAGIC[8] = {'M', 'K', 'I', 'M', 'A', 'G', 'E', '1'};

typedef struct mk_image_hdr {
    char magic[8];
    uint32_t version;
    uint32_t clean;        /* 1: written by mk_cache_save; 0 while a cache runs on it */
    uint64_t mem_limit;    /* the settings the image was made with: a restart needs the same */
    uint64_t item_size_max;
    uint32_t nseg, seg_size, seg_hdr;
    uint8_t use_cas, pad[3];
    uint64_t segseq;       /* the last segment sequence number handed out */
    uint64_t flush_seq;    /* flush_all state */
    int64_t flush_pending;
    int64_t saved_at;
    uint32_t crc;          /* of the fields above */
} mk_image_hdr;

static uint32_t crc_of(const void *p, size_t n, uint32_t crc)
{
    const unsigned char *b = p;
    while (n > 0) { /* zlib's length is a uInt */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, k);
        b += k, n -= k;
    }
    return crc;
}

static uint32_t hdr_crc(const mk_image_hdr *h) { return crc_of(h, offsetof(mk_image_hdr, crc), 0); }

static uint32_t seg_crc(const mk_seghdr *h)
{
    uint32_t crc = crc_of(h, offsetof(mk_seghdr, crc), 0);
    return crc_of((const char *)h + MK_SEG_HDR, h->wpos - MK_SEG_HDR, crc);
}

bool mk_persist_map(mk_cache *c)
{
    size_t file_len = IMAGE_PAGE + (size_t)c->nseg * MK_SEG_SIZE;
    c->mem_fd = open(c->cfg.mem_file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->mem_fd < 0)
        return false;
    struct stat st;
    if (fstat(c->mem_fd, &st) != 0)
        return false;
    if ((size_t)st.st_size != file_len) {
        if (st.st_size != 0)
            snprintf(c->restart.why, sizeof c->restart.why, "its size does not match -m (a different memory limit)");
        if (ftruncate(c->mem_fd, 0) != 0 || ftruncate(c->mem_fd, (off_t)file_len) != 0)
            return false;
    }
    /* reserve address space, then map the file so that the segments (after the header page) are aligned */
    c->map_len = file_len + MK_SEG_SIZE;
    c->map = mmap(NULL, c->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        return false;
    }
    c->base = (char *)(((uintptr_t)c->map + IMAGE_PAGE + MK_SEG_SIZE - 1) & ~(uintptr_t)(MK_SEG_SIZE - 1));
    void *at = mmap(c->base - IMAGE_PAGE, file_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, c->mem_fd, 0);
    if (at == MAP_FAILED)
        return false;
    c->image = c->base - IMAGE_PAGE;
    c->restart.file = true;
    return true;
}

void mk_persist_discard(mk_cache *c, uint32_t id)
{
    /* a file's pages stay in the page cache (or tmpfs) unless punched out */
    madvise(mk_seg_base(c, id), MK_SEG_SIZE, c->mem_fd >= 0 ? MADV_REMOVE : MADV_DONTNEED);
}

/* Write the image header: the settings, the flush and sequence state, and whether the image is clean. */
static void write_header(mk_cache *c, bool clean, int64_t now)
{
    mk_image_hdr *ih = (mk_image_hdr *)(void *)c->image;
    memset(ih, 0, sizeof *ih);
    memcpy(ih->magic, IMAGE_MAGIC, sizeof ih->magic);
    ih->version = IMAGE_VERSION;
    ih->clean = clean;
    ih->mem_limit = c->cfg.mem_limit;
    ih->item_size_max = c->cfg.item_size_max;
    ih->nseg = c->nseg;
    ih->seg_size = MK_SEG_SIZE;
    ih->seg_hdr = MK_SEG_HDR;
    ih->use_cas = c->cfg.use_cas;
    ih->segseq = atomic_load(&c->segseq);
    ih->flush_seq = atomic_load(&c->flush_seq);
    ih->flush_pending = atomic_load(&c->flush_pending);
    ih->saved_at = now;
    ih->crc = hdr_crc(ih);
}

bool mk_cache_save(mk_cache *c, int64_t now)
{
    if (c->mem_fd < 0)
        return false;
    for (uint32_t id = 0; id < c->nseg; id++) {
        mk_seghdr *h = (mk_seghdr *)mk_seg_base(c, id);
        const mk_segm *m = &c->segm[id];
        if (m->state == MK_SEG_FREE) {
            if (h->saved) /* (a free segment's pages may be gone: only touch the header if it says otherwise) */
                h->saved = 0;
            continue;
        }
        h->saved = 1;
        h->kind = m->kind;
        h->first = m->first;
        h->wpos = m->wpos;
        h->crc = seg_crc(h);
    }
    size_t len = IMAGE_PAGE + (size_t)c->nseg * MK_SEG_SIZE;
    if (msync(c->image, len, MS_SYNC) != 0) /* the segments first, then the header that vouches for them */
        return false;
    write_header(c, true, now);
    return msync(c->image, IMAGE_PAGE, MS_SYNC) == 0;
}

void mk_cache_restart_info(const mk_cache *c, mk_cache_restart *out) { *out = c->restart; }

/* Why the image cannot be used: NULL if it can, "" for a new file (nothing to report). */
static const char *image_problem(const mk_cache *c, const mk_image_hdr *h)
{
    static const char blank[sizeof h->magic];
    if (c->restart.why[0]) /* mk_persist_map found the file's size wrong */
        return c->restart.why;
    if (memcmp(h->magic, blank, sizeof blank) == 0)
        return "";
    if (memcmp(h->magic, IMAGE_MAGIC, sizeof h->magic) != 0 || h->version != IMAGE_VERSION)
        return "it holds no memkit image";
    if (h->crc != hdr_crc(h))
        return "its header is corrupt";
    if (!h->clean)
        return "the last stop was not clean (a crash or kill -9), so its contents cannot be trusted";
    if (h->mem_limit != c->cfg.mem_limit || h->nseg != c->nseg)
        return "it was made with another -m";
    if (h->item_size_max != c->cfg.item_size_max)
        return "it was made with another -I";
    if (h->seg_size != MK_SEG_SIZE || h->seg_hdr != MK_SEG_HDR)
        return "it was made by another memkit version";
    if (h->use_cas != c->cfg.use_cas)
        return "it was made with another -C setting";
    return NULL;
}

/* A segment header that is whole and says it was in use. */
static bool seg_ok(const mk_cache *c, uint32_t id, uint64_t segseq)
{
    const mk_seghdr *h = (const mk_seghdr *)mk_seg_base(c, id);
    if (!h->saved || h->id != id || h->seq == 0 || h->seq > segseq || h->kind >= MK_NKINDS)
        return false;
    if (h->wpos < MK_SEG_HDR || h->wpos > MK_SEG_SIZE || h->first < MK_SEG_HDR || h->first > h->wpos)
        return false;
    return h->crc == seg_crc(h);
}

/* The item at off in segment id parses within its bounds (a corrupted header must not send us astray). */
static bool item_sane(const mk_cache *c, uint32_t id, uint32_t off, uint32_t end, size_t *size)
{
    const mk_item *it = (const mk_item *)(mk_seg_base(c, id) + off);
    if (end - off < 4 || off + 8 > MK_SEG_SIZE || (it->meta & MK_M_VLEN) == 3 || it->nkey == 0 ||
        it->nkey > MK_KEY_MAX)
        return false;
    *size = mk_item_arena_size(it);
    if (*size > c->cfg.item_size_max + 64)
        return false;
    if (!(it->meta & MK_M_SPAN))
        return off + *size <= end;
    size_t room = MK_SEG_SIZE - off;
    return *size <= room ? off + *size <= end : end == MK_SEG_SIZE;
}

/* A large item's value runs through intact segments that each name it as the value spilling into them. */
static bool chain_intact(const mk_cache *c, const uint8_t *ok, const mk_item *it)
{
    const mk_seghdr *h = mk_seghdr_of(it);
    uint64_t seq = h->seq, owner = mk_off_of(c, it);
    size_t total = mk_item_arena_size(it), in = MK_SEG_SIZE - (size_t)((const char *)it - (const char *)h);
    for (size_t left = total > in ? total - in : 0; left > 0;) {
        if (h->next < 0 || (uint32_t)h->next >= c->nseg || !ok[h->next])
            return false;
        h = (const mk_seghdr *)mk_seg_base(c, (uint32_t)h->next);
        size_t k = left < MK_SEG_PAY ? left : MK_SEG_PAY;
        if (h->owner != owner || h->owner_seq != seq || h->first < MK_SEG_HDR + k)
            return false;
        left -= k;
    }
    return true;
}

/* Link one item found in the image; the newer of two versions of a key wins. */
static void relink(mk_cache *c, mk_item *it)
{
    uint64_t hv = mk_key_hash(c, it);
    mk_shard *s = mk_shard_of(c, hv);
    size_t pos;
    pthread_mutex_lock(&s->lock);
    mk_item *old = mk_idx_find_locked(c, s, hv, mk_item_key(it), it->nkey, &pos);
    bool linked = false;
    if (!old)
        linked = mk_link_locked(c, s, hv, it);
    else if (mk_item_seq(old) < mk_item_seq(it))
        linked = mk_replace_locked(c, s, hv, pos, old, it);
    if (linked && !old)
        c->restart.items++;
    pthread_mutex_unlock(&s->lock);
}

/* How many items the image holds that a restart would bring back (before chains are checked). */
static size_t count_items(mk_cache *c, const uint32_t *order, uint32_t n)
{
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = order[i];
        const char *b = mk_seg_base(c, id);
        for (uint32_t off = c->segm[id].first, end = c->segm[id].wpos; off < end;) {
            size_t size;
            if (!item_sane(c, id, off, end, &size))
                break;
            const mk_item *it = (const mk_item *)(b + off);
            off += (uint32_t)(size < end - off ? size : end - off);
            k += (it->state & MK_S_STORED) && !(it->state & MK_S_GONE) &&
                 mk_item_validity(c, it, c->cfg.now) == MK_C_OK;
        }
    }
    return k;
}

static int by_seq(const void *a, const void *b, void *arg)
{
    const mk_cache *c = arg;
    uint64_t x = ((const mk_seghdr *)mk_seg_base(c, *(const uint32_t *)a))->seq;
    uint64_t y = ((const mk_seghdr *)mk_seg_base(c, *(const uint32_t *)b))->seq;
    return x < y ? -1 : x > y;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

void mk_persist_restore(mk_cache *c)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mk_image_hdr *ih = (mk_image_hdr *)(void *)c->image;
    const char *why = image_problem(c, ih);
    uint64_t segseq = ih->segseq, flush_seq = ih->flush_seq;
    int64_t flush_pending = ih->flush_pending;
    if (!why) {
        /* restore the flush and sequence state before the header is rewritten */
        atomic_store(&c->segseq, segseq);
        atomic_store(&c->flush_seq, flush_seq);
        atomic_store(&c->flush_pending, flush_pending);
    }
    write_header(c, false, c->cfg.now); /* from here on a crash leaves a file the next start ignores */
    msync(c->image, IMAGE_PAGE, MS_SYNC);
    if (why) {
        if (why != c->restart.why)
            snprintf(c->restart.why, sizeof c->restart.why, "%s", why);
        return;
    }
    uint8_t *ok = calloc(c->nseg, 1);
    uint32_t *order = malloc(c->nseg * sizeof *order);
    if (!ok || !order) {
        free(ok);
        free(order);
        snprintf(c->restart.why, sizeof c->restart.why, "out of memory reading it");
        return;
    }
    uint32_t n = 0;
    for (uint32_t id = 0; id < c->nseg; id++) {
        const mk_seghdr *h = (const mk_seghdr *)mk_seg_base(c, id);
        ok[id] = seg_ok(c, id, segseq);
        if (ok[id])
            order[n++] = id;
        else if (h->saved)
            c->restart.segments_dropped++;
    }
    /* the FIFO in allocation order; the rest is free */
    qsort_r(order, n, sizeof *order, by_seq, c);
    c->free_head = -1;
    c->nfree = c->nfree_resident = 0;
    for (uint32_t id = c->nseg; id-- > 0;) {
        mk_segm *m = &c->segm[id];
        m->prev = -1;
        if (!ok[id]) {
            m->state = MK_SEG_FREE;
            m->next = c->free_head;
            c->free_head = (int32_t)id;
            c->nfree++;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = order[i];
        const mk_seghdr *h = (const mk_seghdr *)mk_seg_base(c, id);
        mk_segm *m = &c->segm[id];
        atomic_store(&m->refs, 1);
        m->wpos = h->wpos;
        m->first = h->first;
        m->kind = h->kind;
        m->ctime = c->cfg.now;
        m->resident = 1;
        mk_fifo_push_locked(c, (int32_t)id);
        c->inuse++;
        c->inuse_kind[m->kind]++;
    }
    atomic_store(&c->inuse_hint, c->inuse);
    c->restart.segments = n;
    /* size every shard's index for its share of the items at once: growing it item by item would hold an old
     * and a new table side by side at each doubling (a few MiB of RSS over the limit at -m 64) */
    size_t nshards = (size_t)1 << c->shard_bits, per = count_items(c, order, n) / nshards;
    for (size_t i = 0; i < nshards; i++) {
        pthread_mutex_lock(&c->shards[i].lock);
        mk_idx_presize_locked(c, &c->shards[i], per + per / 16 + 64);
        pthread_mutex_unlock(&c->shards[i].lock);
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = order[i];
        char *b = mk_seg_base(c, id);
        for (uint32_t off = c->segm[id].first, end = c->segm[id].wpos; off < end;) {
            size_t size;
            if (!item_sane(c, id, off, end, &size)) {
                c->segm[id].wpos = off; /* (not with a good checksum) walkers never see what follows */
                break;
            }
            mk_item *it = (mk_item *)(b + off);
            off += (uint32_t)(size < end - off ? size : end - off);
            if (!(it->state & MK_S_STORED) || (it->state & MK_S_GONE) ||
                mk_item_validity(c, it, c->cfg.now) != MK_C_OK)
                continue;
            if (!(it->meta & MK_M_SPAN) || chain_intact(c, ok, it))
                relink(c, it);
            else
                c->restart.items_dropped++;
        }
    }
    free(ok);
    free(order);
    c->restart.warm = true;
    c->restart.seconds = seconds_since(&t0);
}
