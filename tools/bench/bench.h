/* tools/bench/bench.h — memkit-bench's shared types: configuration, server list, histogram, key generator, per-thread worker. */
#ifndef MEMKIT_BENCH_H
#define MEMKIT_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "memkit.h"

/* ---- configuration (filled by main.c from the command line) ---- */

enum bench_proto { PROTO_TEXT, PROTO_META };
enum bench_dist { DIST_UNIFORM, DIST_ZIPF };

typedef struct bench_server {
    const char *name;          /* "host:port", "[v6]:port" or the unix socket path, for messages */
    unsigned weight;           /* as written in the list (1 if none) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} bench_server;

typedef struct bench_cfg {
    const char *server;        /* the -s list or the -S path, as given */
    bench_server *srv;         /* the servers, in list order (servers.c) */
    int nsrv;
    mk_client *client;         /* libmemkit places keys on servers; NULL with -S (one server) */
    mk_distribution distribution;
    const char *distribution_name;
    int threads;               /* worker threads */
    int conns;                 /* clients per thread, each with a connection to every server */
    int pipeline;              /* requests in flight per client */
    unsigned ratio_get, ratio_set;
    int multiget;              /* keys per get request */
    enum bench_dist dist;
    double zipf_skew;
    unsigned key_min, key_max; /* key length */
    uint64_t val_min, val_max; /* value length */
    uint64_t key_space;        /* distinct keys */
    bool prepopulate;
    double duration;           /* seconds; 0: bounded by requests only */
    uint64_t requests;         /* total requests; 0: bounded by duration only */
    double rate;               /* requests/s over all threads; 0: closed loop */
    enum bench_proto proto;
    int idle_conns;            /* extra connections to each server, opened and left idle */
    uint64_t seed;
    uint32_t expire;           /* exptime of sets */
} bench_cfg;

/* ---- the server list (servers.c) ---- */

/* -s: a libmemkit client over the list with c->distribution, and each server's name, weight and
 * address. Returns 0, or -1 with a one-line message in err (a bad list or a name that does not resolve). */
int servers_from_list(bench_cfg *c, const char *list, char *err, size_t errlen);
/* -S: the one unix socket. Returns 0, or -1 with err. */
int servers_from_unix(bench_cfg *c, const char *path, char *err, size_t errlen);
void servers_free(bench_cfg *c);
/* The server of each of keys[0..n): where[i], as the clients place them. Returns 0, or a negative
 * MK_E* code. */
int servers_place(const bench_cfg *c, const char *const *keys, const size_t *nkeys, size_t n, int *where);
/* The server of one key, or a negative MK_E* code. */
int servers_place_one(const bench_cfg *c, const char *key, size_t nkey);

/* ---- latency histogram (hist.c): log-bucketed, 2 significant digits, nanoseconds up to ~18 minutes ---- */

#define HIST_SUB_BITS 7                      /* 128 sub-buckets: relative error < 1/64 */
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
#define HIST_MAX_SHIFT 34                    /* values up to 2^(34+7) ns */
#define HIST_BUCKETS ((HIST_MAX_SHIFT + 2) * HIST_HALF)

typedef struct hist {
    uint64_t count;
    uint64_t min, max;      /* exact, ns */
    double sum;             /* ns */
    uint64_t c[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_record(hist *h, uint64_t ns);
void hist_merge(hist *into, const hist *from);
/* The value (ns) at percentile p (0..100): the highest value of the bucket holding it, capped at max. */
uint64_t hist_percentile(const hist *h, double p);

/* ---- random numbers and keys (keys.c) ---- */

typedef struct rng {
    uint64_t s;
} rng;

void rng_seed(rng *r, uint64_t seed);
uint64_t rng_next(rng *r);
double rng_unit(rng *r);                          /* [0, 1) */
uint64_t rng_range(rng *r, uint64_t lo, uint64_t hi); /* [lo, hi] */

typedef struct zipf {
    double s, n, hx1, hn, scoef;
} zipf;

void zipf_init(zipf *z, uint64_t n, double s);
uint64_t zipf_sample(zipf *z, rng *r);              /* 0 .. n-1, 0 the most popular */

unsigned key_len(const bench_cfg *c, uint64_t idx);
/* Write key idx into out (MK_KEY_MAX bytes available); returns its length. */
unsigned key_write(const bench_cfg *c, uint64_t idx, char *out);
/* The smallest key length that can hold every index of key_space. */
unsigned key_min_len(uint64_t key_space);
/* A read-only buffer of at least val_max bytes of value data. */
const char *value_data(void);
int value_data_init(uint64_t max);
void value_data_free(void);

/* ---- a worker thread (worker.c) ---- */

typedef struct srv_stats {   /* one server's share of a thread's measured requests */
    uint64_t requests;         /* parts answered: a get's keys on this server, or a set */
    uint64_t get_keys, hits, sets;
} srv_stats;

typedef struct wstats {
    uint64_t requests, gets, sets, get_keys, hits, misses, errors;
    uint64_t bytes_out, bytes_in;
    uint64_t prepopulated;
    uint64_t t_first, t_last;  /* monotonic ns: start of the measured phase, last completion */
    uint64_t sched_lag_max;    /* open loop: the largest delay between a request's scheduled and its sending time */
    char last_error[160];      /* text of the last error reply */
} wstats;

typedef struct worker {
    int id;
    const bench_cfg *cfg;
    uint64_t quota;            /* requests this thread issues (0: unbounded) */
    double rate;               /* this thread's share of the rate */
    hist lat;
    wstats st;
    srv_stats *srv;            /* cfg->nsrv entries */
    _Atomic uint64_t live_done;   /* completed requests, for the progress line */
    _Atomic uint64_t live_hits, live_keys;
    _Atomic int finished;
    int fatal;                 /* nonzero: the thread stopped on an error (message printed) */
} worker;

/* Shared between main and the workers. */
extern _Atomic int bench_stop;       /* set by SIGINT or the main thread: stop issuing, drain, finish */
extern _Atomic uint64_t bench_t0;    /* monotonic ns at which the measured phase starts (set after the barrier) */

void *worker_main(void *arg);
int bench_barrier_wait(void);        /* main.c: all workers connected and prepopulated */
uint64_t now_ns(void);
int bench_connect(const bench_server *s, char *err, size_t errlen);  /* blocking connect; -1 with err */
/* The meta protocol's probe of one server: "mn" must answer "MN". Returns 0, or -1 with err. */
int bench_meta_probe(const bench_server *s, char *err, size_t errlen);

#endif /* MEMKIT_BENCH_H */
