/* bench/policy/policies.c — the replacement policies: LRU, SIEVE, FIFO with reinsertion (FIFO, CLOCK, memkit's
 * segments and their variants: wider counters, merges, a TinyLFU sketch), S3-FIFO, W-TinyLFU, Belady's OPT, LFU. */
#include "policy_sim.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NIL UINT32_MAX

/* A FIFO of key ids in a ring, the oldest at key[head]. */
typedef struct ring {
    uint32_t *key;
    size_t cap, head, n;
} ring;

static void ring_push(ring *q, uint32_t k)
{
    size_t i = q->head + q->n++;
    q->key[i < q->cap ? i : i - q->cap] = k;
}

static uint32_t ring_pop(ring *q)
{
    uint32_t k = q->key[q->head];
    if (++q->head == q->cap)
        q->head = 0;
    q->n--;
    return k;
}

/* A key's state: where it is (0: not cached) and its frequency counter (SIEVE: the visited bit). */
enum { FREQ = 0xff, SMALL = 0x100, MAIN = 0x200 };

/* ---- a count-min sketch as in TinyLFU / Caffeine: 4-bit counters (a byte each here), a key's 4 in one
 *      block of 4 rows of 16 (one cache line holds two blocks of 4-bit counters); all are halved once
 *      `period` increments were counted ---- */

enum { ROWS = 4, CMAX = 15, BLOCK = 64 };

typedef struct sketch {
    uint8_t *ctr;      /* blocks of BLOCK counters */
    size_t blocks;
    uint64_t added, period;
} sketch;

static void sketch_slots(const sketch *m, uint32_t k, size_t *at)
{
    uint64_t h = ((uint64_t)k + 1) * 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
    size_t block = (size_t)(((h >> 32) * m->blocks) >> 32); /* (h >> 32) / 2^32 of the blocks */
    for (size_t j = 0; j < ROWS; j++)
        at[j] = block * BLOCK + j * (BLOCK / ROWS) + ((h >> (4 * j)) & (BLOCK / ROWS - 1));
}

static unsigned sketch_estimate(const sketch *m, uint32_t k)
{
    size_t at[ROWS];
    sketch_slots(m, k, at);
    unsigned e = CMAX;
    for (size_t j = 0; j < ROWS; j++)
        e = m->ctr[at[j]] < e ? m->ctr[at[j]] : e;
    return e;
}

/* conservative: only the counters at the estimate are incremented */
static void sketch_add(sketch *m, uint32_t k, int conservative)
{
    size_t at[ROWS];
    int added = 0;
    unsigned e = conservative ? sketch_estimate(m, k) : 0;
    sketch_slots(m, k, at);
    for (size_t j = 0; j < ROWS; j++)
        if (m->ctr[at[j]] < CMAX && (!conservative || m->ctr[at[j]] == e)) {
            m->ctr[at[j]]++;
            added = 1;
        }
    if ((m->added += (uint64_t)added) < m->period)
        return;
    for (size_t i = 0; i < BLOCK * m->blocks; i++)
        m->ctr[i] >>= 1;
    m->added /= 2;
}

typedef struct sim {
    const policy *p;
    size_t cap, evictions;
    uint16_t *st;
    ring small, main;       /* FIFO with reinsertion: main; S3-FIFO, W-TinyLFU: both */
    size_t main_cap;        /* S3-FIFO, W-TinyLFU: main's share of cap */
    uint32_t *ghost;        /* S3-FIFO: per key, its stamp when it entered the ghost (0: never) */
    uint32_t ghost_now, ghost_len;
    uint32_t *newer, *older; /* LRU, SIEVE: a list over key ids, newest at head */
    uint32_t head, tail, hand;
    size_t n, copies;       /* copies: items that went back in, or from small to main */
    sketch sk;
    uint32_t *batch;        /* the items evicted together, and their scores */
    uint8_t *score;
    size_t batch_len, dry;  /* items per eviction; items gone back in since the last eviction */
    size_t now, *next;      /* OPT, LFU: the request being served; OPT: each request's next use */
    uint32_t *count;        /* LFU: per key, its requests so far */
    uint64_t *heap;         /* OPT, LFU: the cached keys' ranks, a max-heap, and their keys */
    uint32_t *hkey, *pos;   /* pos: per key, its place in the heap (NIL: not cached) */
} sim;

static int hit(sim *c, uint32_t k)
{
    uint16_t s = c->st[k];
    if (s == 0)
        return 0;
    if ((s & FREQ) < c->p->maxfreq)
        c->st[k] = (uint16_t)(s + 1);
    return 1;
}

/* ---- FIFO with reinsertion: the oldest segments leave; the best of them by score (policy_sim.h)
 *      go back in at the head with their counter decayed, the others are evicted ---- */

static unsigned score(const sim *c, uint32_t k)
{
    return c->p->rank ? sketch_estimate(&c->sk, k) : c->st[k] & FREQ;
}

/* Pops up to n items of q into the batch from index `at`, with their scores; returns how many. */
static size_t take(sim *c, ring *q, size_t at, size_t n)
{
    n = q->n < n ? q->n : n;
    for (size_t i = at; i < at + n; i++) {
        c->batch[i] = ring_pop(q);
        c->score[i] = (uint8_t)score(c, c->batch[i]);
    }
    return n;
}

/* Of the m items of the batch, at most `quota` scoring >= keep go to main's head, the best first (the
 * earliest first among equals), with their counter decayed; the others are evicted. Returns how many went. */
static size_t sift(sim *c, size_t m, size_t quota)
{
    const policy *p = c->p;
    size_t count[FREQ + 1], kept = 0;
    unsigned cut = p->rank ? CMAX + 1 : p->maxfreq + 1; /* above every score */
    memset(count, 0, cut * sizeof *count);
    for (size_t i = 0; i < m; i++)
        count[c->score[i]]++;
    /* items scoring >= cut all go, then those scoring cut - 1 (if >= keep) while quota lasts */
    while (cut > p->keep && count[cut - 1] <= quota)
        quota -= count[--cut];
    for (size_t i = 0; i < m; i++) {
        uint32_t k = c->batch[i];
        unsigned sc = c->score[i], f = c->st[k] & FREQ;
        if (sc >= cut || (sc + 1 == cut && sc >= p->keep && quota > 0 && quota--)) {
            c->st[k] = (uint16_t)(MAIN | (p->halve ? f / 2 : f - (f > 0)));
            ring_push(&c->main, k);
            kept++;
        } else {
            c->st[k] = 0;
            c->evictions++;
        }
    }
    c->copies += kept;
    return kept;
}

/* The `merge` oldest segments of main leave, retain % of them at most come back; after a whole turn
 * of the cache without an eviction, none do. */
static void evict_main(sim *c)
{
    size_t m = take(c, &c->main, 0, c->batch_len);
    size_t kept = sift(c, m, c->dry >= c->main.n + m ? 0 : m * c->p->retain / 100);
    c->dry = kept == m ? c->dry + m : 0;
}

/* TinyLFU's admission: with `admit` set, a missed key whose estimate is under it is not inserted */
static int admitted(const sim *c, uint32_t k)
{
    return c->p->admit == 0 || sketch_estimate(&c->sk, k) >= c->p->admit;
}

static int access_reinsert(sim *c, uint32_t k)
{
    if (hit(c, k) || !admitted(c, k))
        return c->st[k] != 0;
    while (c->main.n >= c->cap)
        evict_main(c);
    c->st[k] = MAIN;
    ring_push(&c->main, k);
    return 0;
}

/* ---- S3-FIFO: new keys enter the small queue (`small` % of cap), keys found in the ghost or with a
 *      sketch estimate >= recall enter main; an item leaving small with `move` hits goes to main
 *      (counter reset), the others are evicted and remembered in the ghost (the last `ghost` % of cap
 *      keys sent there); main is FIFO with reinsertion ---- */

static void evict_small(sim *c)
{
    size_t m = c->small.n < c->p->seg ? c->small.n : c->p->seg;
    for (size_t i = 0; i < m; i++) {
        uint32_t k = ring_pop(&c->small);
        if ((c->st[k] & FREQ) >= c->p->move) {
            c->st[k] = (uint16_t)(MAIN | (c->p->carry && (c->st[k] & FREQ) ? (c->st[k] & FREQ) - 1 : 0));
            ring_push(&c->main, k);
            c->copies++;
        } else {
            c->st[k] = 0;
            c->evictions++;
            if (c->ghost == NULL)
                continue;
            if (++c->ghost_now == 0) /* 0 means "never" */
                c->ghost_now = 1;
            c->ghost[k] = c->ghost_now;
        }
    }
}

static int ghost_take(sim *c, uint32_t k)
{
    uint32_t at = c->ghost[k];
    if (at == 0 || c->ghost_now - at >= c->ghost_len)
        return 0;
    c->ghost[k] = 0;
    return 1;
}

/* W-TinyLFU at segment granularity (small is the window): the window's oldest segment leaves; with
 * main full, main's oldest segment leaves too, and of both the items main has room for go to main,
 * the best scores first (main's items first among equals: TinyLFU admits a candidate only if it
 * beats the victim); the others are evicted. */
static void evict_window(sim *c)
{
    size_t room = c->main_cap > c->main.n ? c->main_cap - c->main.n : 0;
    size_t v = room < c->p->seg ? take(c, &c->main, 0, c->p->seg) : 0;
    size_t m = take(c, &c->small, v, c->p->seg);
    sift(c, v + m, room + v);
}

/* S3-FIFO and W-TinyLFU: new keys enter the small queue, keys found in S3's ghost enter main */
static int access_small_main(sim *c, uint32_t k)
{
    if (hit(c, k) || !admitted(c, k))
        return c->st[k] != 0;
    while (c->small.n + c->main.n >= c->cap) {
        if (c->main.n > c->main_cap || c->small.n == 0)
            evict_main(c);
        else if (c->p->kind == P_S3)
            evict_small(c);
        else
            evict_window(c);
    }
    int to_main = c->p->kind == P_S3 && ((c->ghost && ghost_take(c, k)) ||
                                         (c->p->recall && sketch_estimate(&c->sk, k) >= c->p->recall));
    c->st[k] = to_main ? MAIN : SMALL;
    ring_push(to_main ? &c->main : &c->small, k);
    return 0;
}

/* ---- LRU and SIEVE over a doubly linked list of key ids ---- */

static void list_unlink(sim *c, uint32_t k)
{
    uint32_t nw = c->newer[k], od = c->older[k];
    if (nw != NIL)
        c->older[nw] = od;
    else
        c->head = od;
    if (od != NIL)
        c->newer[od] = nw;
    else
        c->tail = nw;
    c->n--;
}

static void list_push(sim *c, uint32_t k)
{
    c->newer[k] = NIL;
    c->older[k] = c->head;
    if (c->head != NIL)
        c->newer[c->head] = k;
    else
        c->tail = k;
    c->head = k;
    c->n++;
}

static void list_evict(sim *c, uint32_t k)
{
    list_unlink(c, k);
    c->st[k] = 0;
    c->evictions++;
}

static int access_lru(sim *c, uint32_t k)
{
    int h = c->st[k] != 0;
    if (h)
        list_unlink(c, k);
    else if (c->n >= c->cap)
        list_evict(c, c->tail);
    c->st[k] = MAIN;
    list_push(c, k);
    return h;
}

/* SIEVE: a hit sets the visited bit; the hand walks from the oldest item toward the newest,
 * clearing bits, evicts the first unvisited item and stays there; new items enter at the head. */
static int access_sieve(sim *c, uint32_t k)
{
    if (hit(c, k))
        return 1;
    if (c->n >= c->cap) {
        uint32_t o = c->hand != NIL ? c->hand : c->tail;
        while (c->st[o] & FREQ) {
            c->st[o] = MAIN;
            o = c->newer[o] != NIL ? c->newer[o] : c->tail;
        }
        c->hand = c->newer[o];
        list_evict(c, o);
    }
    c->st[k] = MAIN;
    list_push(c, k);
    return 0;
}

/* ---- Belady's OPT and perfect-history LFU: a max-heap of the cached keys by rank; a miss with the
 *      cache full evicts the top. OPT's rank is the next use (a request index, or nreq + key for "never");
 *      with bypass, a key whose next use is later than all of theirs is not inserted. LFU's rank falls
 *      with the key's requests since the start (evicted or not), then with its last one. ---- */

static uint64_t heap_rank(sim *c, uint32_t k)
{
    if (c->p->kind == P_OPT)
        return c->next[c->now];
    return (uint64_t)(UINT32_MAX - ++c->count[k]) << 32 | (UINT32_MAX - (uint32_t)c->now); /* < 2^32 requests */
}

static void heap_set(sim *c, size_t i, uint64_t v, uint32_t k)
{
    c->heap[i] = v;
    c->hkey[i] = k;
    c->pos[k] = (uint32_t)i;
}

/* puts rank v of key k at heap index i and restores the heap order */
static void heap_fix(sim *c, size_t i, uint64_t v, uint32_t k)
{
    for (; i > 0 && c->heap[(i - 1) / 2] < v; i = (i - 1) / 2)
        heap_set(c, i, c->heap[(i - 1) / 2], c->hkey[(i - 1) / 2]);
    for (size_t j; (j = 2 * i + 1) < c->n; i = j) {
        j += j + 1 < c->n && c->heap[j + 1] > c->heap[j];
        if (c->heap[j] <= v)
            break;
        heap_set(c, i, c->heap[j], c->hkey[j]);
    }
    heap_set(c, i, v, k);
}

static int access_heap(sim *c, uint32_t k)
{
    uint64_t v = heap_rank(c, k);
    if (c->pos[k] != NIL) {
        heap_fix(c, c->pos[k], v, k);
        return 1;
    }
    if (c->n < c->cap) {
        heap_fix(c, c->n++, v, k);
    } else if (!c->p->bypass || v < c->heap[0]) {
        c->pos[c->hkey[0]] = NIL;
        c->evictions++;
        heap_fix(c, 0, v, k);
    }
    return 0;
}

static int heap_init(sim *c, const stream *s)
{
    size_t *last = c->p->kind == P_OPT ? malloc((size_t)s->nkeys * sizeof(size_t) + 1) : NULL;
    size_t room = c->cap < s->nkeys ? c->cap : s->nkeys; /* the heap never holds more */
    c->heap = malloc(room * sizeof(uint64_t) + 1);
    c->hkey = malloc(room * sizeof(uint32_t) + 1);
    c->pos = malloc((size_t)s->nkeys * sizeof(uint32_t) + 1);
    if (c->p->kind == P_OPT)
        c->next = malloc(s->n * sizeof(size_t) + 1);
    else
        c->count = calloc(s->nkeys ? s->nkeys : 1, sizeof(uint32_t));
    int ok = c->heap && c->hkey && c->pos && (c->p->kind == P_OPT ? last && c->next : c->count != NULL);
    if (ok)
        memset(c->pos, 0xff, (size_t)s->nkeys * sizeof(uint32_t));
    if (ok && last) {
        memset(last, 0xff, (size_t)s->nkeys * sizeof(size_t));
        for (size_t i = s->n; i-- > 0;) {
            c->next[i] = last[s->key[i]] != SIZE_MAX ? last[s->key[i]] : s->n + s->key[i];
            last[s->key[i]] = i;
        }
    }
    free(last);
    return ok;
}

/* ---- the replay ---- */

static void sim_free(sim *c)
{
    free(c->st);
    free(c->small.key);
    free(c->main.key);
    free(c->ghost);
    free(c->newer);
    free(c->older);
    free(c->sk.ctr);
    free(c->batch);
    free(c->score);
    free(c->next);
    free(c->heap);
    free(c->hkey);
    free(c->pos);
    free(c->count);
}

static int sim_init(sim *c, const policy *p, const stream *s, size_t cap)
{
    uint32_t nkeys = s->nkeys;
    *c = (sim){.p = p, .cap = cap, .head = NIL, .tail = NIL, .hand = NIL};
    size_t ring_cap = cap < nkeys ? cap : nkeys; /* a queue never holds more */
    c->st = calloc(nkeys ? nkeys : 1, sizeof *c->st);
    int ok = c->st != NULL;
    if (p->kind == P_OPT || p->kind == P_LFU) {
        ok = ok && heap_init(c, s);
    } else if (p->kind == P_LRU || p->kind == P_SIEVE) {
        c->newer = malloc((size_t)nkeys * sizeof(uint32_t) + 1);
        c->older = malloc((size_t)nkeys * sizeof(uint32_t) + 1);
        ok = ok && c->newer && c->older;
    } else {
        c->main = (ring){.key = malloc(ring_cap * sizeof(uint32_t) + 1), .cap = ring_cap};
        c->batch_len = (size_t)p->seg * (p->merge ? p->merge : 1);
        c->batch = malloc((c->batch_len + p->seg) * sizeof(uint32_t)); /* + W-TinyLFU's window segment */
        c->score = malloc(c->batch_len + p->seg);
        ok = ok && c->main.key && c->batch && c->score;
    }
    if (p->kind == P_S3 || p->kind == P_WINDOW) {
        c->small = (ring){.key = malloc(ring_cap * sizeof(uint32_t) + 1), .cap = ring_cap};
        c->main_cap = cap - cap * p->small / 100;
        ok = ok && c->small.key;
    }
    if (p->kind == P_S3 && p->ghost) {
        size_t len = cap * p->ghost / 100;
        c->ghost_len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
        c->ghost = calloc(nkeys ? nkeys : 1, sizeof(uint32_t));
        ok = ok && c->ghost;
    }
    if (p->sketch) { /* ROWS x cap x sketch counters, rounded up to a block */
        size_t blocks = (ROWS * cap * p->sketch + BLOCK - 1) / BLOCK;
        c->sk = (sketch){.ctr = calloc(blocks, BLOCK), .blocks = blocks,
                         .period = (uint64_t)cap * (p->age ? p->age : 10)};
        ok = ok && c->sk.ctr;
    }
    if (!ok)
        sim_free(c);
    return ok ? 0 : -1;
}

int simulate(const policy *p, const stream *s, size_t cap, sim_result *r)
{
    static int (*const access[])(sim *, uint32_t) = {[P_LRU] = access_lru,           [P_SIEVE] = access_sieve,
                                                    [P_REINSERT] = access_reinsert, [P_S3] = access_small_main,
                                                    [P_WINDOW] = access_small_main,
                                                    [P_OPT] = access_heap, [P_LFU] = access_heap};
    sim c;
    if (cap == 0 || sim_init(&c, p, s, cap) != 0)
        return -1;
    int (*const fn)(sim *, uint32_t) = access[p->kind];
    *r = (sim_result){.counted = s->n - s->warm, .first_eviction = SIZE_MAX};
    struct timespec t0, t1; /* the thread's CPU time: other load on the machine does not count */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    size_t copies = 0; /* before measuring */
    for (size_t i = 0; i < s->n; i++) {
        if (i == s->warm)
            copies = c.copies;
        if (p->sketch)
            sketch_add(&c.sk, s->key[i], p->cu);
        c.now = i;
        int h = fn(&c, s->key[i]);
        if (i >= s->warm)
            r->hits += (uint64_t)h;
        if (r->first_eviction == SIZE_MAX && c.evictions)
            r->first_eviction = i;
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    r->copies = c.copies - copies;
    r->ns = s->n ? ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)s->n : 0;
    sim_free(&c);
    return 0;
}
