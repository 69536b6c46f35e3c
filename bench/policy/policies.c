/* bench/policy/policies.c — the replacement policies: LRU, SIEVE, FIFO with reinsertion (FIFO, CLOCK, memkit's
 * segments and their frequency-aware variants: wider counters, merges, a TinyLFU sketch), S3-FIFO, Belady's OPT. */
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

/* ---- a count-min sketch as in TinyLFU / Caffeine: 4 rows of 4-bit counters (one byte each here),
 *      all halved once `period` increments were counted ---- */

enum { ROWS = 4, CMAX = 15 };

typedef struct sketch {
    uint8_t *ctr;      /* ROWS rows of mask + 1 counters */
    size_t mask;
    uint64_t added, period;
} sketch;

static void sketch_slots(const sketch *m, uint32_t k, size_t *at)
{
    uint64_t h = ((uint64_t)k + 1) * 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
    uint64_t h2 = (h >> 32) | 1;
    for (size_t j = 0; j < ROWS; j++)
        at[j] = j * (m->mask + 1) + ((h + j * h2) & m->mask);
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

static void sketch_add(sketch *m, uint32_t k)
{
    size_t at[ROWS];
    int added = 0;
    sketch_slots(m, k, at);
    for (size_t j = 0; j < ROWS; j++)
        if (m->ctr[at[j]] < CMAX) {
            m->ctr[at[j]]++;
            added = 1;
        }
    if ((m->added += (uint64_t)added) < m->period)
        return;
    for (size_t i = 0; i < ROWS * (m->mask + 1); i++)
        m->ctr[i] >>= 1;
    m->added /= 2;
}

typedef struct sim {
    const policy *p;
    size_t cap, evictions;
    uint16_t *st;
    ring small, main;       /* FIFO with reinsertion: main; S3-FIFO: both */
    size_t main_cap;        /* S3-FIFO: main's share of cap */
    uint32_t *ghost;        /* S3-FIFO: per key, its stamp when it entered the ghost (0: never) */
    uint32_t ghost_now, ghost_len;
    uint32_t *newer, *older; /* LRU, SIEVE: a list over key ids, newest at head */
    uint32_t head, tail, hand;
    size_t n;
    sketch sk;
    uint32_t *batch;        /* the items evicted together, and their scores */
    uint8_t *score;
    size_t batch_len, dry;  /* items per eviction; items gone back in since the last eviction */
    const uint32_t *req;    /* OPT: the stream, the request being served, each request's next use */
    size_t nreq, now, *next;
    size_t *heap;           /* OPT: the cached keys' next uses, a max-heap */
    uint32_t *pos;          /* OPT: per key, its place in the heap (NIL: not cached) */
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
    return c->p->sketch ? sketch_estimate(&c->sk, k) : c->st[k] & FREQ;
}

static void evict_main(sim *c)
{
    const policy *p = c->p;
    size_t m = c->main.n < c->batch_len ? c->main.n : c->batch_len, count[FREQ + 1] = {0};
    for (size_t i = 0; i < m; i++) {
        c->batch[i] = ring_pop(&c->main);
        count[c->score[i] = (uint8_t)score(c, c->batch[i])]++;
    }
    /* items scoring >= cut all survive, then those scoring cut - 1 (if >= keep) while `left` lasts;
     * after a whole turn of the cache without an eviction, none survive */
    size_t left = c->dry >= c->main.n + m ? 0 : m * p->retain / 100;
    unsigned cut = FREQ + 1;
    while (cut > p->keep && count[cut - 1] <= left)
        left -= count[--cut];
    size_t kept = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t k = c->batch[i];
        unsigned sc = c->score[i], f = c->st[k] & FREQ;
        if (sc >= cut || (sc + 1 == cut && sc >= p->keep && left > 0 && left--)) {
            c->st[k] = (uint16_t)(MAIN | (p->halve ? f / 2 : f - (f > 0)));
            ring_push(&c->main, k);
            kept++;
        } else {
            c->st[k] = 0;
            c->evictions++;
        }
    }
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

/* ---- S3-FIFO: new keys enter the small queue (10% of cap), keys found in the ghost enter main;
 *      an item leaving small with `move` hits goes to main (counter reset), the others are evicted
 *      and remembered in the ghost (the last 90% of cap keys sent there); main is FIFO with reinsertion ---- */

static void evict_small(sim *c)
{
    size_t m = c->small.n < c->p->seg ? c->small.n : c->p->seg;
    for (size_t i = 0; i < m; i++) {
        uint32_t k = ring_pop(&c->small);
        if ((c->st[k] & FREQ) >= c->p->move) {
            c->st[k] = MAIN;
            ring_push(&c->main, k);
        } else {
            c->st[k] = 0;
            c->evictions++;
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

static int access_s3(sim *c, uint32_t k)
{
    if (hit(c, k) || !admitted(c, k))
        return c->st[k] != 0;
    while (c->small.n + c->main.n >= c->cap) {
        if (c->main.n > c->main_cap || c->small.n == 0)
            evict_main(c);
        else
            evict_small(c);
    }
    int to_main = ghost_take(c, k);
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

/* ---- Belady's OPT: a miss with the cache full evicts the item whose next use is the furthest away;
 *      with bypass, a key whose next use is later than all of theirs is not inserted ---- */

/* a heap value is a next use: a request index, or nreq + key for "never" */
static void heap_set(sim *c, size_t i, size_t v)
{
    c->heap[i] = v;
    c->pos[v < c->nreq ? c->req[v] : v - c->nreq] = (uint32_t)i;
}

static void sift_up(sim *c, size_t i, size_t v)
{
    for (; i > 0 && c->heap[(i - 1) / 2] < v; i = (i - 1) / 2)
        heap_set(c, i, c->heap[(i - 1) / 2]);
    heap_set(c, i, v);
}

static void sift_down(sim *c, size_t i, size_t v)
{
    for (size_t j; (j = 2 * i + 1) < c->n; i = j) {
        j += j + 1 < c->n && c->heap[j + 1] > c->heap[j];
        if (c->heap[j] <= v)
            break;
        heap_set(c, i, c->heap[j]);
    }
    heap_set(c, i, v);
}

static int access_opt(sim *c, uint32_t k)
{
    size_t next = c->next[c->now];
    if (c->pos[k] != NIL) {
        sift_up(c, c->pos[k], next); /* its value was `now` */
        return 1;
    }
    if (c->n < c->cap) {
        sift_up(c, c->n++, next);
    } else if (!c->p->bypass || next < c->heap[0]) {
        size_t top = c->heap[0];
        c->pos[top < c->nreq ? c->req[top] : top - c->nreq] = NIL;
        c->evictions++;
        sift_down(c, 0, next);
    }
    return 0;
}

static int opt_init(sim *c, const stream *s)
{
    size_t *last = malloc((size_t)s->nkeys * sizeof(size_t) + 1);
    c->req = s->key;
    c->nreq = s->n;
    c->next = malloc(s->n * sizeof(size_t) + 1);
    c->heap = malloc(c->cap * sizeof(size_t) + 1);
    c->pos = malloc((size_t)s->nkeys * sizeof(uint32_t) + 1);
    int ok = last && c->next && c->heap && c->pos;
    if (ok) {
        memset(last, 0xff, (size_t)s->nkeys * sizeof(size_t));
        memset(c->pos, 0xff, (size_t)s->nkeys * sizeof(uint32_t));
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
    free(c->pos);
}

static int sim_init(sim *c, const policy *p, const stream *s, size_t cap)
{
    uint32_t nkeys = s->nkeys;
    *c = (sim){.p = p, .cap = cap, .head = NIL, .tail = NIL, .hand = NIL};
    size_t ring_cap = cap < nkeys ? cap : nkeys; /* a queue never holds more */
    c->st = calloc(nkeys ? nkeys : 1, sizeof *c->st);
    int ok = c->st != NULL;
    if (p->kind == P_OPT) {
        ok = ok && opt_init(c, s);
    } else if (p->kind == P_LRU || p->kind == P_SIEVE) {
        c->newer = malloc((size_t)nkeys * sizeof(uint32_t) + 1);
        c->older = malloc((size_t)nkeys * sizeof(uint32_t) + 1);
        ok = ok && c->newer && c->older;
    } else {
        c->main = (ring){.key = malloc(ring_cap * sizeof(uint32_t) + 1), .cap = ring_cap};
        c->batch_len = (size_t)p->seg * (p->merge ? p->merge : 1);
        c->batch = malloc(c->batch_len * sizeof(uint32_t));
        c->score = malloc(c->batch_len);
        ok = ok && c->main.key && c->batch && c->score;
    }
    if (p->kind == P_S3) {
        c->small = (ring){.key = malloc(ring_cap * sizeof(uint32_t) + 1), .cap = ring_cap};
        c->main_cap = cap - cap / 10;
        c->ghost_len = c->main_cap > UINT32_MAX ? UINT32_MAX : (uint32_t)c->main_cap;
        c->ghost = calloc(nkeys ? nkeys : 1, sizeof(uint32_t));
        ok = ok && c->small.key && c->ghost;
    }
    if (p->sketch) {
        size_t w = 1;
        while (w < cap * p->sketch)
            w *= 2;
        c->sk = (sketch){.ctr = calloc(ROWS, w), .mask = w - 1, .period = (uint64_t)cap * (p->age ? p->age : 10)};
        ok = ok && c->sk.ctr;
    }
    if (!ok)
        sim_free(c);
    return ok ? 0 : -1;
}

int simulate(const policy *p, const stream *s, size_t cap, sim_result *r)
{
    static int (*const access[])(sim *, uint32_t) = {[P_LRU] = access_lru,           [P_SIEVE] = access_sieve,
                                                    [P_REINSERT] = access_reinsert, [P_S3] = access_s3,
                                                    [P_OPT] = access_opt};
    sim c;
    if (cap == 0 || sim_init(&c, p, s, cap) != 0)
        return -1;
    int (*const fn)(sim *, uint32_t) = access[p->kind];
    *r = (sim_result){.counted = s->n - s->warm, .first_eviction = SIZE_MAX};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < s->n; i++) {
        if (p->sketch)
            sketch_add(&c.sk, s->key[i]);
        c.now = i;
        int h = fn(&c, s->key[i]);
        if (i >= s->warm)
            r->hits += (uint64_t)h;
        if (r->first_eviction == SIZE_MAX && c.evictions)
            r->first_eviction = i;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->ns = s->n ? ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)s->n : 0;
    sim_free(&c);
    return 0;
}
