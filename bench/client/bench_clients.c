/* bench/client/bench_clients.c — one benchmark run (libmemkit or libmemcached: get/set/100-key mget, N threads); bench/client_compare.sh drives it. */
#include "memkit.h"

#include <libmemcached/memcached.h>
#include <libmemcachedutil-1.0/util.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/*
 * Usage:
 *   bench_clients --servers=127.0.0.1:P1,127.0.0.1:P2,... --lib=memkit|libmemcached
 *                 --test=get|set|mget|populate [--threads=N] [--seconds=S] [--keys=N]
 *                 [--value-size=B] [--mget-keys=100]
 *
 * Prints one line:
 *   RESULT lib test threads ops_per_s p50_us p99_us ops errors misses cpu_us_per_op
 * where an "op" is one call (one get, one set, one 100-key multi-get), and
 * cpu_us_per_op is this process's CPU time (user + system, all threads) over the
 * measured interval divided by its ops: the client's own cost, which, unlike
 * throughput, hardly depends on what else the machine is running.
 *
 * Both libraries use ketama (libmemcached: MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED;
 * libmemkit: MK_DISTRIBUTION_KETAMA) and TCP_NODELAY, so every key lives on the
 * same server for both. libmemcached: one memcached_pool_st (a memcached_st per
 * thread, fetched and released around every call, as a threaded user does);
 * libmemkit: one mk_client shared by every thread.
 */

#define MAX_SERVERS 64
#define MAX_SAMPLES (1u << 22)

static const char *g_lib = "memkit";
static const char *g_test = "get";
static char g_servers[4096] = "127.0.0.1:11211";
static int g_threads = 1;
static double g_seconds = 2.0;
static int g_nkeys = 10000;
static int g_vsize = 100;
static int g_mget_keys = 100;

static char *g_value;
static char (*g_keys)[32];
static size_t *g_keylens;

static mk_client *g_mk;
static memcached_pool_st *g_pool;

static atomic_int g_phase;   /* 0 wait, 1 warm-up, 2 measure, 3 stop */

typedef struct worker {
    pthread_t th;
    uint64_t ops, errors, misses;
    uint32_t *lat_ns;    /* per-op latency samples */
    size_t nlat, caplat;
    uint64_t rng;
} worker;

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t rnd(worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return (uint32_t)(w->rng >> 16);
}

static void record(worker *w, uint64_t ns)
{
    if (w->nlat < w->caplat)
        w->lat_ns[w->nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* ------------------------------------------------------------------ libmemkit */

static void mk_count_cb(void *ctx, size_t index, const mk_item *item)
{
    (void)index;
    size_t *hits = ctx;
    if (item->nvalue == (size_t)g_vsize)
        (*hits)++;
}

static void mk_one(worker *w, const char *const *mkeys, size_t *mlens)
{
    uint32_t k = rnd(w) % (uint32_t)g_nkeys;
    int rc;
    if (strcmp(g_test, "get") == 0) {
        mk_item it;
        rc = mk_get(g_mk, g_keys[k], g_keylens[k], &it);
        if (rc == MK_ENOTFOUND)
            w->misses++;
        else if (rc)
            w->errors++;
        else if (it.nvalue != (size_t)g_vsize)
            w->errors++;
        mk_item_clear(&it);
    } else if (strcmp(g_test, "set") == 0) {
        rc = mk_set(g_mk, g_keys[k], g_keylens[k], g_value, (size_t)g_vsize, 0, 0);
        if (rc)
            w->errors++;
    } else {   /* mget */
        for (int i = 0; i < g_mget_keys; i++) {
            uint32_t j = (k + (uint32_t)i * 7919u) % (uint32_t)g_nkeys;
            ((const char **)mkeys)[i] = g_keys[j];
            mlens[i] = g_keylens[j];
        }
        size_t hits = 0;
        rc = mk_mget(g_mk, mkeys, mlens, (size_t)g_mget_keys, false, mk_count_cb, &hits);
        if (rc)
            w->errors++;
        w->misses += (uint64_t)g_mget_keys - hits;
    }
}

/* --------------------------------------------------------------- libmemcached */

static void lm_one(worker *w, const char **mkeys, size_t *mlens)
{
    uint32_t k = rnd(w) % (uint32_t)g_nkeys;
    memcached_return_t rc;
    memcached_st *m = memcached_pool_fetch(g_pool, NULL, &rc);
    if (m == NULL) {
        w->errors++;
        return;
    }
    if (strcmp(g_test, "get") == 0) {
        size_t vlen = 0;
        uint32_t flags = 0;
        char *v = memcached_get(m, g_keys[k], g_keylens[k], &vlen, &flags, &rc);
        if (rc == MEMCACHED_NOTFOUND)
            w->misses++;
        else if (rc != MEMCACHED_SUCCESS || v == NULL || vlen != (size_t)g_vsize)
            w->errors++;
        free(v);
    } else if (strcmp(g_test, "set") == 0) {
        rc = memcached_set(m, g_keys[k], g_keylens[k], g_value, (size_t)g_vsize, 0, 0);
        if (rc != MEMCACHED_SUCCESS)
            w->errors++;
    } else {   /* mget */
        for (int i = 0; i < g_mget_keys; i++) {
            uint32_t j = (k + (uint32_t)i * 7919u) % (uint32_t)g_nkeys;
            mkeys[i] = g_keys[j];
            mlens[i] = g_keylens[j];
        }
        size_t hits = 0;
        rc = memcached_mget(m, mkeys, mlens, (size_t)g_mget_keys);
        if (rc != MEMCACHED_SUCCESS) {
            w->errors++;
        } else {
            memcached_result_st res_mem, *res = memcached_result_create(m, &res_mem);
            memcached_return_t frc;
            while (memcached_fetch_result(m, res, &frc) != NULL) {
                if (memcached_result_length(res) == (size_t)g_vsize)
                    hits++;
            }
            if (frc != MEMCACHED_END && frc != MEMCACHED_SUCCESS && frc != MEMCACHED_NOTFOUND)
                w->errors++;
            memcached_result_free(res);
        }
        w->misses += (uint64_t)g_mget_keys - hits;
    }
    memcached_pool_release(g_pool, m);
}

/* -------------------------------------------------------------------- driver */

static void *run_worker(void *arg)
{
    worker *w = arg;
    const char **mkeys = calloc((size_t)g_mget_keys, sizeof *mkeys);
    size_t *mlens = calloc((size_t)g_mget_keys, sizeof *mlens);
    bool memkit = strcmp(g_lib, "memkit") == 0;
    while (atomic_load(&g_phase) == 0)
        ;
    int ph;
    while ((ph = atomic_load_explicit(&g_phase, memory_order_relaxed)) != 3) {
        uint64_t t0 = now_ns();
        if (memkit)
            mk_one(w, mkeys, mlens);
        else
            lm_one(w, mkeys, mlens);
        if (ph == 2) {   /* only ops started in the measured interval count */
            record(w, now_ns() - t0);
            w->ops++;
        }
    }
    free(mkeys);
    free(mlens);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int populate(void)
{
    for (int i = 0; i < g_nkeys; i++) {
        int rc = mk_set(g_mk, g_keys[i], g_keylens[i], g_value, (size_t)g_vsize, 0, 0);
        if (rc) {
            fprintf(stderr, "populate: %s: %s\n", g_keys[i], mk_strerror(rc));
            return 1;
        }
    }
    /* Check that every pooled memcached_st maps every key where libmemkit does. */
    memcached_return_t rc;
    memcached_st *all[64];
    int got = 0, moved = 0;
    while (got < 64 && (all[got] = memcached_pool_pop(g_pool, false, &rc)) != NULL)
        got++;
    for (int j = 0; j < got; j++)
        for (int i = 0; i < g_nkeys; i++)
            if ((int)memcached_generate_hash(all[j], g_keys[i], g_keylens[i]) !=
                mk_server_for_key(g_mk, g_keys[i], g_keylens[i]))
                moved++;
    for (int j = 0; j < got; j++)
        memcached_pool_release(g_pool, all[j]);
    if (moved) {
        fprintf(stderr, "populate: %d key placements differ between libmemcached and libmemkit\n", moved);
        return 1;
    }
    /* And read them all back through libmemcached. */
    memcached_st *m = memcached_pool_fetch(g_pool, NULL, &rc);
    if (m == NULL)
        return 1;
    int miss = 0;
    for (int i = 0; i < g_nkeys; i++) {
        size_t vlen;
        uint32_t flags;
        char *v = memcached_get(m, g_keys[i], g_keylens[i], &vlen, &flags, &rc);
        if (v == NULL && miss++ < 3)
            fprintf(stderr, "populate: libmemcached get %s: %s\n", g_keys[i], memcached_strerror(m, rc));
        free(v);
    }
    memcached_pool_release(g_pool, m);
    if (miss) {
        fprintf(stderr, "populate: libmemcached misses %d of %d keys libmemkit wrote: distributions differ\n",
                miss, g_nkeys);
        return 1;
    }
    printf("populated %d keys of %d bytes; libmemcached finds all of them\n", g_nkeys, g_vsize);
    return 0;
}

static const char *arg(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && a[n] == '=' ? a + n + 1 : NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = arg(argv[i], "--servers")))
            snprintf(g_servers, sizeof g_servers, "%s", v);
        else if ((v = arg(argv[i], "--lib")))
            g_lib = v;
        else if ((v = arg(argv[i], "--test")))
            g_test = v;
        else if ((v = arg(argv[i], "--threads")))
            g_threads = atoi(v);
        else if ((v = arg(argv[i], "--seconds")))
            g_seconds = atof(v);
        else if ((v = arg(argv[i], "--keys")))
            g_nkeys = atoi(v);
        else if ((v = arg(argv[i], "--value-size")))
            g_vsize = atoi(v);
        else if ((v = arg(argv[i], "--mget-keys")))
            g_mget_keys = atoi(v);
        else {
            fprintf(stderr, "bench_clients: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (g_threads < 1 || g_nkeys < 1 || g_vsize < 1 || g_mget_keys < 1 || g_seconds <= 0 ||
        (strcmp(g_lib, "memkit") && strcmp(g_lib, "libmemcached")) ||
        (strcmp(g_test, "get") && strcmp(g_test, "set") && strcmp(g_test, "mget") &&
         strcmp(g_test, "populate"))) {
        fprintf(stderr, "bench_clients: bad arguments\n");
        return 2;
    }

    g_value = malloc((size_t)g_vsize);
    for (int i = 0; i < g_vsize; i++)
        g_value[i] = (char)('a' + i % 26);
    g_keys = calloc((size_t)g_nkeys, sizeof *g_keys);
    g_keylens = calloc((size_t)g_nkeys, sizeof *g_keylens);
    for (int i = 0; i < g_nkeys; i++)
        g_keylens[i] = (size_t)snprintf(g_keys[i], sizeof g_keys[i], "bench:key:%07d", i);

    bool need_mk = strcmp(g_lib, "memkit") == 0 || strcmp(g_test, "populate") == 0;
    bool need_lm = strcmp(g_lib, "libmemcached") == 0 || strcmp(g_test, "populate") == 0;
    if (need_mk) {
        mk_options opt;
        mk_options_init(&opt);
        opt.distribution = MK_DISTRIBUTION_KETAMA;
        opt.pool_size = g_threads > 8 ? g_threads : 8;
        char err[256];
        int rc = mk_client_create(&g_mk, g_servers, &opt, err, sizeof err);
        if (rc) {
            fprintf(stderr, "mk_client_create: %s\n", err);
            return 1;
        }
    }
    memcached_st *master = NULL;
    if (need_lm) {
        master = memcached_create(NULL);
        memcached_server_st *list = memcached_servers_parse(g_servers);
        if (master == NULL || list == NULL || memcached_server_push(master, list) != MEMCACHED_SUCCESS) {
            fprintf(stderr, "libmemcached: cannot use server list %s\n", g_servers);
            return 1;
        }
        memcached_server_list_free(list);
        memcached_behavior_set(master, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
        memcached_behavior_set(master, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
        uint32_t n = (uint32_t)(g_threads > 8 ? g_threads : 8);
        g_pool = memcached_pool_create(master, n, n);
        if (g_pool == NULL) {
            fprintf(stderr, "memcached_pool_create failed\n");
            return 1;
        }
        /* libmemcached 1.1.4: memcached_clone() (which the pool uses) keeps
         * DISTRIBUTION_CONSISTENT_WEIGHTED but builds a different continuum from
         * the master's (~64% of keys move). Set KETAMA_WEIGHTED again on every
         * pooled memcached_st so that they map keys like the master does. */
        memcached_st *all[1024];
        uint32_t got = 0;
        memcached_return_t prc;
        while (got < n && got < 1024 && (all[got] = memcached_pool_pop(g_pool, false, &prc)) != NULL) {
            memcached_behavior_set(all[got], MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
            memcached_behavior_set(all[got], MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
            got++;
        }
        for (uint32_t i = 0; i < got; i++)
            memcached_pool_release(g_pool, all[i]);
    }

    int status = 0;
    if (strcmp(g_test, "populate") == 0) {
        status = populate();
    } else {
        worker *ws = calloc((size_t)g_threads, sizeof *ws);
        size_t cap = (size_t)(MAX_SAMPLES / (unsigned)g_threads);
        for (int i = 0; i < g_threads; i++) {
            ws[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + (uint64_t)now_ns();
            ws[i].caplat = cap;
            ws[i].lat_ns = malloc(cap * sizeof *ws[i].lat_ns);
            pthread_create(&ws[i].th, NULL, run_worker, &ws[i]);
        }
        /* warm-up (connections opened, caches warm), then the measured interval */
        atomic_store(&g_phase, 1);
        struct timespec warm = {0, 300 * 1000000};
        nanosleep(&warm, NULL);
        uint64_t m0 = now_ns();
        double c0 = cpu_s();
        atomic_store(&g_phase, 2);
        struct timespec d = {(time_t)g_seconds, (long)((g_seconds - (double)(time_t)g_seconds) * 1e9)};
        nanosleep(&d, NULL);
        atomic_store(&g_phase, 3);
        uint64_t m1 = now_ns();
        double c1 = cpu_s();
        uint64_t ops = 0, errors = 0, misses = 0, nsamp = 0;
        for (int i = 0; i < g_threads; i++) {
            pthread_join(ws[i].th, NULL);
            ops += ws[i].ops;
            errors += ws[i].errors;
            misses += ws[i].misses;
            nsamp += ws[i].nlat;
        }
        uint32_t *all = malloc((nsamp ? nsamp : 1) * sizeof *all);
        size_t na = 0;
        for (int i = 0; i < g_threads; i++) {
            memcpy(all + na, ws[i].lat_ns, ws[i].nlat * sizeof *all);
            na += ws[i].nlat;
        }
        qsort(all, na, sizeof *all, cmp_u32);
        double p50 = na ? all[na / 2] / 1000.0 : 0, p99 = na ? all[(na * 99) / 100] / 1000.0 : 0;
        double secs = (double)(m1 - m0) / 1e9;
        printf("RESULT %s %s %d %.0f %.1f %.1f %llu %llu %llu %.2f\n", g_lib, g_test, g_threads,
               (double)ops / secs, p50, p99, (unsigned long long)ops, (unsigned long long)errors,
               (unsigned long long)misses, ops ? (c1 - c0) * 1e6 / (double)ops : 0.0);
        if (errors)
            status = 1;
        free(all);
        for (int i = 0; i < g_threads; i++)
            free(ws[i].lat_ns);
        free(ws);
    }
    if (g_pool)
        memcached_pool_destroy(g_pool);
    memcached_free(master);
    mk_client_destroy(g_mk);
    free(g_value);
    free(g_keys);
    free(g_keylens);
    return status;
}
