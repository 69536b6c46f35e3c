/* bench/policy/policy_sim.h — the simulator's shared types: a key stream (streams.c) and the policies (policies.c). */
#ifndef MEMKIT_POLICY_SIM_H
#define MEMKIT_POLICY_SIM_H

#include <stddef.h>
#include <stdint.h>

/* A request stream with its keys renamed 0..nkeys-1 in order of first use, so that
 * every policy can keep its per-key state in plain arrays. */
typedef struct stream {
    char name[80];
    uint32_t *key;
    size_t n;       /* requests */
    size_t warm;    /* the first `warm` requests are not counted */
    uint32_t nkeys; /* distinct keys */
} stream;

typedef struct stream_opts {
    uint64_t keys;          /* key space of the generated streams */
    size_t warm, measure;   /* requests; a trace uses all of its requests */
    size_t scan_every, scan_len;
    uint64_t seed;
} stream_opts;

/* Builds the stream a spec names: zipf:S, scan:S, shift:S, text:FILE or bin:FILE.
 * Returns 0, or -1 after printing why. */
int stream_make(stream *s, const char *spec, const stream_opts *o);
void stream_free(stream *s);

/* P_WINDOW: W-TinyLFU; P_OPT: Belady's; P_LFU: perfect-history LFU (policies.c) */
enum policy_kind { P_LRU, P_SIEVE, P_REINSERT, P_S3, P_WINDOW, P_OPT, P_LFU };

/* A policy and its parameters; policy_sim.c's table names the built-in ones and -p NAME:KEY=N:...
 * overrides their parameters (docs/bench.md). Unused parameters are 0. */
typedef struct policy {
    char name[96];
    enum policy_kind kind;
    unsigned seg;      /* items per segment (1 = item granularity, 0 = --segment) */
    unsigned maxfreq;  /* per-item counter ceiling (+1 a hit); 0: none, plain FIFO */
    /* P_S3, P_WINDOW: new keys enter a small FIFO holding `small` % of the capacity. P_S3: an item
     * leaving it with `move` hits goes to main, the others are evicted and their keys remembered in a
     * ghost (the last `ghost` % x capacity keys sent there); a missed key found in the ghost, or whose
     * sketch estimate is >= recall, enters main. P_WINDOW (W-TinyLFU): see evict_window(). */
    unsigned small, move, ghost, recall;
    unsigned carry;    /* P_S3: an item moving to main keeps its counter - 1 (0: starts main at 0) */
    /* P_REINSERT and main: when the cache is full the `merge` oldest segments leave together; of them,
     * the items whose score (rank 0: the counter, 1: the sketch's estimate) is >= keep, at most retain %
     * of them, the best first (the oldest first among equals), go back in at the head with their
     * counter - 1 (halve: / 2); the others are evicted. memkit: merge 1, keep 1, retain 100. */
    unsigned merge, keep, retain, halve, rank;
    /* a count-min sketch (4 rows of 4-bit counters, TinyLFU's aging) counts every request:
     * sketch = counters per row per cached item, 0: none */
    unsigned sketch;
    unsigned age;      /* the counters are halved every age x capacity counted increments (0: 10) */
    unsigned cu;       /* conservative update: only the counters at the estimate are incremented */
    unsigned admit;    /* a missed key is inserted only if its estimate is >= admit (0: always) */
    unsigned bypass;   /* P_OPT: a miss may decline to insert */
} policy;

typedef struct sim_result {
    uint64_t hits, counted;
    uint64_t copies;       /* measured items copied: back into the FIFO, or from the small queue to main */
    double ns;             /* the replay's CPU time per request */
    size_t first_eviction; /* request index of the first eviction; SIZE_MAX: never full */
} sim_result;

/* Replays s through a cache of `cap` items under p. Returns 0, or -1 when out of memory. */
int simulate(const policy *p, const stream *s, size_t cap, sim_result *r);

#endif
