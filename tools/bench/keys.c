/* tools/bench/keys.c — memkit-bench's random numbers, Zipf sampler, and key and value generation. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64: small, fast, good enough for load generation */
void rng_seed(rng *r, uint64_t seed)
{
    r->s = seed ^ 0x9e3779b97f4a7c15ull;
}

uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t rng_range(rng *r, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo + 1;
    return lo + (span == 0 ? rng_next(r) : rng_next(r) % span);
}

/*
 * Zipf over ranks 1..n with exponent s (any s > 0), by rejection-inversion
 * (W. Hörmann, G. Derflinger, "Rejection-inversion to generate variates from
 * monotone discrete distributions", 1996): O(1) per sample, no table, so key
 * spaces of any size cost nothing to set up.
 */
static double helper1(double x) /* log1p(x)/x */
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double helper2(double x) /* expm1(x)/x */
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

static double zh(const zipf *z, double x)
{
    return exp(-z->s * log(x));
}

static double zH(const zipf *z, double x)
{
    double lx = log(x);
    return helper2((1.0 - z->s) * lx) * lx;
}

static double zHinv(const zipf *z, double x)
{
    double t = x * (1.0 - z->s);
    if (t < -1.0)
        t = -1.0;
    return exp(helper1(t) * x);
}

void zipf_init(zipf *z, uint64_t n, double s)
{
    z->s = s;
    z->n = (double)n;
    z->hx1 = zH(z, 1.5) - 1.0;
    z->hn = zH(z, z->n + 0.5);
    z->scoef = 2.0 - zHinv(z, zH(z, 2.5) - zh(z, 2.0));
}

uint64_t zipf_sample(zipf *z, rng *r)
{
    for (;;) {
        double u = z->hn + rng_unit(r) * (z->hx1 - z->hn);
        double x = zHinv(z, u);
        double k = floor(x + 0.5);
        if (k < 1.0)
            k = 1.0;
        else if (k > z->n)
            k = z->n;
        if (k - x <= z->scoef || u >= zH(z, k + 0.5) - zh(z, k))
            return (uint64_t)k - 1;
    }
}

static unsigned digits(uint64_t v)
{
    unsigned d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

unsigned key_min_len(uint64_t key_space)
{
    return 1 + digits(key_space ? key_space - 1 : 0);
}

/* A key's length depends only on its index, so a key is always the same string. */
unsigned key_len(const bench_cfg *c, uint64_t idx)
{
    if (c->key_min == c->key_max)
        return c->key_min;
    rng r;
    rng_seed(&r, idx * 0x2545f4914f6cdd1dull + c->seed);
    return (unsigned)rng_range(&r, c->key_min, c->key_max);
}

/* "k" then the index in decimal, zero-padded to the key's length: "k0000000042" */
unsigned key_write(const bench_cfg *c, uint64_t idx, char *out)
{
    unsigned len = key_len(c, idx);
    out[0] = 'k';
    char *p = out + len;
    for (unsigned i = 1; i < len; i++) {
        *--p = (char)('0' + idx % 10);
        idx /= 10;
    }
    return len;
}

static char *vdata;

const char *value_data(void)
{
    return vdata;
}

int value_data_init(uint64_t max)
{
    vdata = malloc(max + 1);
    if (vdata == NULL)
        return -1;
    for (uint64_t i = 0; i < max; i++)
        vdata[i] = (char)('a' + i % 26);
    vdata[max] = 0;
    return 0;
}

void value_data_free(void)
{
    free(vdata);
    vdata = NULL;
}
