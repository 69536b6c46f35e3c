/* tests/unit/test_cache_latency.c — worst-case single-operation latency while a cache grows (index growth without a pause). */
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "storage/cache.h"

/*
 * Usage: test_cache_latency [ITEMS [MEM_MIB [THRESH_US]]]
 *   (no arguments: a quick run of 300,000 items at -m 64 that checks correctness
 *    and prints the figures; docs/storage.md quotes `20000000 4096`.)
 * Inserts ITEMS distinct small items (10-byte keys, 10-byte values) into a cache
 * of MEM_MIB with the default 64 shards and hashpower 16, timing each alloc+store
 * pair, calling mk_cache_maintain once per simulated second (every 100,000 ops,
 * timed separately). Prints the maximum, percentiles and the count of operations
 * slower than THRESH_US (default 1000), then checks every key is retrievable.
 */

#define T0 1000000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* log-linear latency histogram: 64 sub-buckets per power of two of nanoseconds */
#define SUB 64
static uint64_t hist[64 * SUB];

static unsigned bucket(uint64_t ns)
{
    if (ns < SUB)
        return (unsigned)ns;
    unsigned p = 63 - (unsigned)__builtin_clzll(ns); /* >= 6 */
    unsigned sub = (unsigned)((ns >> (p - 6)) & (SUB - 1));
    return (p - 5) * SUB + sub;
}

static uint64_t bucket_hi(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned p = b / SUB + 5, sub = b % SUB;
    return ((uint64_t)(SUB + sub + 1) << (p - 6)) - 1;
}

static uint64_t pct(uint64_t total, double q)
{
    uint64_t want = (uint64_t)((double)total * q), acc = 0;
    for (unsigned b = 0; b < 64 * SUB; b++) {
        acc += hist[b];
        if (acc > want)
            return bucket_hi(b);
    }
    return 0;
}

static uint64_t n = 300000, mib = 64, thresh = 1000 * 1000;

static void test_grow_latency(void)
{
    mk_cache_config cfg = {.mem_limit = (size_t)mib << 20, .evict = true, .use_cas = true};
    mk_cache *c = mk_cache_create(&cfg);
    CHECK(c != NULL);
    if (!c)
        return;
    char k[16];
    const char *v = "0123456789";
    uint64_t worst = 0, worst_at = 0, slow = 0, maint_worst = 0, stored = 0;
    bool saw_expanding = false;
    uint64_t t_start = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        int nk = snprintf(k, sizeof k, "k%09llu", (unsigned long long)i);
        int64_t now = T0 + (int64_t)(i / 100000);
        uint64_t t0 = now_ns();
        mk_item *it;
        mk_cache_rc rc = mk_cache_alloc(c, k, (size_t)nk, 0, 0, 10, now, &it);
        if (rc == MK_C_OK) {
            memcpy(mk_item_data(it), v, 10);
            stored += mk_cache_store(c, it, MK_STORE_SET, 0, now, NULL) == MK_C_OK;
            mk_item_put(c, it);
        }
        uint64_t dt = now_ns() - t0;
        hist[bucket(dt)]++;
        if (dt > worst) {
            worst = dt;
            worst_at = i;
        }
        slow += dt > thresh;
        if (i % 100000 == 99999) {
            mk_cache_stats st;
            mk_cache_get_stats(c, &st);
            saw_expanding |= st.hash_is_expanding;
            t0 = now_ns();
            mk_cache_maintain(c, now);
            dt = now_ns() - t0;
            if (dt > maint_worst)
                maint_worst = dt;
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    printf("items %llu at -m %llu: %.1f s (%.0f ns/op); max %.1f us (op %llu), p50 %.2f us, p99 %.2f us, "
           "p99.9 %.2f us, p99.99 %.1f us, p99.999 %.1f us; %llu ops > %llu us; maintain max %.1f us\n",
           (unsigned long long)n, (unsigned long long)mib, secs, secs * 1e9 / (double)n, (double)worst / 1e3,
           (unsigned long long)worst_at, (double)pct(n, 0.5) / 1e3, (double)pct(n, 0.99) / 1e3,
           (double)pct(n, 0.999) / 1e3, (double)pct(n, 0.9999) / 1e3, (double)pct(n, 0.99999) / 1e3,
           (unsigned long long)slow, (unsigned long long)(thresh / 1000), (double)maint_worst / 1e3);
    printf("curr_items %llu, evictions %llu, hash_power_level %llu, hash_bytes %llu, mem_used %llu, "
           "saw hash_is_expanding %d\n",
           (unsigned long long)st.curr_items, (unsigned long long)st.evictions,
           (unsigned long long)st.hash_power_level, (unsigned long long)st.hash_bytes,
           (unsigned long long)st.mem_used, saw_expanding);
    CHECK_EQ_U(stored, n);
    CHECK_EQ_U(st.curr_items + st.evictions, n);
    /* every key still there is the one stored (sampled for big runs) */
    uint64_t step = n > 1000000 ? 97 : 1, bad = 0, seen = 0;
    for (uint64_t i = 0; i < n; i += step) {
        int nk = snprintf(k, sizeof k, "k%09llu", (unsigned long long)i);
        mk_item *it;
        if (mk_cache_get(c, k, (size_t)nk, T0 + (int64_t)(n / 100000), &it) == MK_C_OK) {
            seen++;
            bad += mk_item_nbytes(it) != 10 || memcmp(mk_item_data(it), v, 10) != 0;
            mk_item_put(c, it);
        }
    }
    CHECK_EQ_U(bad, 0);
    if (st.evictions == 0)
        CHECK_EQ_U(seen, (n + step - 1) / step);
    mk_cache_destroy(c);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n = strtoull(argv[1], NULL, 10);
    if (argc > 2)
        mib = strtoull(argv[2], NULL, 10);
    if (argc > 3)
        thresh = strtoull(argv[3], NULL, 10) * 1000;
    RUN(test_grow_latency);
    return check_summary("test_cache_latency");
}
