/* tools/bench/hist.c — memkit-bench's latency histogram: HdrHistogram-like log buckets, 2 significant digits. */
#include "bench.h"

#include <string.h>

/*
 * Values below 128 ns have a bucket each. Above, a value v with its highest set
 * bit at position b (b >= 7) falls in "half-bucket" shift = b - 6, sub-bucket
 * v >> shift (64..127): index = 64 * shift + (v >> shift). Every bucket spans
 * 2^shift ns at values of at least 64 * 2^shift ns, so the relative error is
 * below 1/64 (two significant decimal digits), from nanoseconds to minutes,
 * in a fixed 2,304 counters.
 */
static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * HIST_HALF)
        return (unsigned)v;
    unsigned b = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = b - (HIST_SUB_BITS - 1);
    if (shift > HIST_MAX_SHIFT)
        return HIST_BUCKETS - 1;
    return HIST_HALF * shift + (unsigned)(v >> shift);
}

static uint64_t bucket_high(unsigned i)
{
    if (i < 2 * HIST_HALF)
        return i;
    unsigned shift = i / HIST_HALF - 1;
    uint64_t sub = i % HIST_HALF + HIST_HALF;
    return ((sub + 1) << shift) - 1;
}

void hist_init(hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_record(hist *h, uint64_t ns)
{
    h->c[bucket_of(ns)]++;
    h->count++;
    h->sum += (double)ns;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
}

void hist_merge(hist *into, const hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->c[i] += from->c[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_percentile(const hist *h, double p)
{
    if (h->count == 0)
        return 0;
    /* the rank of the value at p: ceil(p% of count), at least 1 */
    double r = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->c[i];
        if (seen >= rank) {
            uint64_t v = bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}
