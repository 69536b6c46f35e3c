/* client/dist.c — mk_dist: continuum build and O(log n) lookup, modula buckets with python-memcached rehash, rendezvous. */
#include "client/dist.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mk_dist {
    mk_dist_kind kind;
    size_t n;                   /* servers */
    mk_dist_point *points;      /* continuum kinds: sorted points */
    size_t npoints;
    uint32_t *buckets;          /* MK_DIST_MODULA: server index per bucket */
    size_t nbuckets;
    char **nodes;               /* MK_DIST_RENDEZVOUS: "host:port" (or path), as pymemcache names it */
    size_t *node_len;
    unsigned char **node_cp;    /* the node's characters as pymemcache's murmur3 sees them */
    size_t *node_cp_len;
    uint32_t *lut;              /* continuum kinds: lut[b] = first point with value >= b << lut_shift */
    unsigned lut_shift;
};

static const char *const kind_names[MK_DIST_KIND_COUNT_] = {
    [MK_DIST_KETAMA] = "ketama",
    [MK_DIST_CONSISTENT] = "consistent",
    [MK_DIST_CONSISTENT_MD5] = "consistent_md5",
    [MK_DIST_MODULA] = "modula",
    [MK_DIST_MODULA_OAAT] = "modula_oaat",
    [MK_DIST_MODULA_CRC] = "modula_crc",
    [MK_DIST_KETAMA_FNV1A] = "ketama_fnv1a",
    [MK_DIST_RENDEZVOUS] = "rendezvous",
};

const char *mk_dist_kind_name(mk_dist_kind kind)
{
    return (unsigned)kind < MK_DIST_KIND_COUNT_ ? kind_names[kind] : NULL;
}

/* ---------------------------------------------------------------- continuum */

static int point_cmp(const void *a, const void *b)
{
    const mk_dist_point *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    if (x->server != y->server)
        return x->server < y->server ? -1 : 1;
    return 0;
}

/* "host-i" when port is 11211, else "host:port-i" (libmemcached hosts.cc, twemproxy nc_ketama.c). */
static int point_name(char *buf, size_t cap, const mk_server_spec *s, uint32_t i)
{
    int len = s->port == MK_DEFAULT_PORT ? snprintf(buf, cap, "%s-%u", s->host, (unsigned)i)
                                         : snprintf(buf, cap, "%s:%u-%u", s->host, (unsigned)s->port, (unsigned)i);
    return (len < 0 || (size_t)len >= cap) ? -1 : len;
}

/* Points libketama gives server s: floor(float(w/W * 160 / 4 * n) + 1e-10) * 4,
 * in the float arithmetic of libmemcached and twemproxy (pct is a float, the
 * 1e-10 is a double, the sum is cast back to float before floor). */
static uint32_t ketama_points(uint32_t weight, uint64_t total_weight, size_t n)
{
    float pct = (float)weight / (float)total_weight;
    float x = pct * 160;
    x = x / 4;
    x = x * (float)n;
    float y = (float)((double)x + 0.0000000001);
    return (uint32_t)floorf(y) * 4;
}

int mk_dist_continuum_build(mk_continuum_kind kind, const mk_server_spec *servers, size_t n,
                            mk_dist_point **out, size_t *npoints)
{
    *out = NULL;
    *npoints = 0;
    if (n == 0 || n > UINT32_MAX || servers == NULL) {
        errno = EINVAL;
        return -1;
    }
    uint64_t total_weight = 0;
    for (size_t s = 0; s < n; s++)
        total_weight += servers[s].weight;

    size_t cap = 0;
    for (size_t s = 0; s < n; s++) {
        size_t p = kind == MK_CONTINUUM_WEIGHTED_MD5 ? ketama_points(servers[s].weight, total_weight, n) : 100;
        if (p > SIZE_MAX / sizeof(mk_dist_point) - cap) {
            errno = ENOMEM;
            return -1;
        }
        cap += p;
    }
    mk_dist_point *pts = malloc((cap ? cap : 1) * sizeof *pts);
    if (pts == NULL) {
        errno = ENOMEM;
        return -1;
    }

    size_t k = 0;
    char name[MK_HOST_MAX + MK_UNIX_PATH_MAX + 64];
    for (size_t s = 0; s < n; s++) {
        const mk_server_spec *sv = &servers[s];
        uint32_t names = kind == MK_CONTINUUM_WEIGHTED_MD5 ? ketama_points(sv->weight, total_weight, n) / 4 : 100;
        for (uint32_t i = 0; i < names; i++) {
            int len = point_name(name, sizeof name, sv, i);
            if (len < 0) {
                free(pts);
                errno = EINVAL;
                return -1;
            }
            if (kind == MK_CONTINUUM_POINTS100_OAAT) {
                pts[k++] = (mk_dist_point){mk_hash_oaat(name, (size_t)len), (uint32_t)s};
                continue;
            }
            unsigned char d[16];
            if (!mk_hash_md5(name, (size_t)len, d)) {
                free(pts);
                errno = ENOSYS;
                return -1;
            }
            unsigned words = kind == MK_CONTINUUM_WEIGHTED_MD5 ? 4 : 1;
            for (unsigned w = 0; w < words; w++) {
                const unsigned char *b = d + 4 * w;
                uint32_t v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
                pts[k++] = (mk_dist_point){v, (uint32_t)s};
            }
        }
    }
    qsort(pts, k, sizeof *pts, point_cmp);
    *out = pts;
    *npoints = k;
    return 0;
}

size_t mk_dist_continuum_find(const mk_dist_point *points, size_t npoints, uint32_t h)
{
    /* Branch-free lower bound (the step is a mask, not a jump): the
     * comparisons of a ketama lookup are coin flips, and mispredicting half of
     * ~10 branches per key was a tenth of a 100-key multi-get's CPU.
     * Invariant: the answer lies in [base, base + len]. */
    if (npoints == 0)
        return 0;
    const mk_dist_point *base = points;
    size_t len = npoints;
    while (len > 1) {
        size_t half = len / 2;
        base += half & (0 - (size_t)(base[half - 1].value < h));   /* no branch: a mask */
        len -= half;
    }
    size_t lo = (size_t)(base - points) + (base->value < h);
    return lo == npoints ? 0 : lo;
}

/* --------------------------------------------------------------- rendezvous */

/* Is p[0..n-1] strict UTF-8, as Python's bytes.decode("utf-8") accepts it
 * (no overlongs, no surrogates, nothing above U+10FFFF)? */
static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t j = 1; j < len; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* Feed pymemcache's view of a string to murmur3: one byte (code point & 0xff)
 * per character when valid UTF-8, else the raw bytes. */
static void murmur_feed_chars(mk_murmur3 *m, const unsigned char *p, size_t n)
{
    if (!utf8_valid(p, n)) {
        mk_murmur3_update(m, p, n);
        return;
    }
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            mk_murmur3_byte(m, c);
            i++;
            continue;
        }
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        /* the low 8 bits of the code point: 2 bits of the byte before last, 6 of the last */
        unsigned char low = (unsigned char)((p[i + len - 2] & 0x03) << 6 | (p[i + len - 1] & 0x3F));
        mk_murmur3_byte(m, low);
        i += len;
    }
}

/* --------------------------------------------------------------------- API */

void mk_dist_destroy(mk_dist *d)
{
    if (d == NULL)
        return;
    free(d->points);
    free(d->lut);
    free(d->buckets);
    if (d->nodes) {
        for (size_t i = 0; i < d->n; i++) {
            free(d->nodes[i]);
            free(d->node_cp[i]);
        }
    }
    free(d->nodes);
    free(d->node_len);
    free(d->node_cp);
    free(d->node_cp_len);
    free(d);
}

static bool any_weight_above_one(const mk_server_spec *servers, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (servers[i].weight > 1)
            return true;
    return false;
}

static int build_rendezvous(mk_dist *d, const mk_server_spec *servers)
{
    size_t n = d->n;
    d->nodes = calloc(n, sizeof *d->nodes);
    d->node_len = calloc(n, sizeof *d->node_len);
    d->node_cp = calloc(n, sizeof *d->node_cp);
    d->node_cp_len = calloc(n, sizeof *d->node_cp_len);
    if (!d->nodes || !d->node_len || !d->node_cp || !d->node_cp_len)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const mk_server_spec *s = &servers[i];
        size_t cap = strlen(s->host) + 8;
        d->nodes[i] = malloc(cap);
        d->node_cp[i] = malloc(cap);
        if (!d->nodes[i] || !d->node_cp[i])
            return -1;
        /* pymemcache: '%s:%s' % (host, port) for (host, port) servers; a unix path is its own name */
        int len = s->type == MK_SERVER_UNIX ? snprintf(d->nodes[i], cap, "%s", s->host)
                                            : snprintf(d->nodes[i], cap, "%s:%u", s->host, (unsigned)s->port);
        if (len < 0 || (size_t)len >= cap)
            return -1;
        d->node_len[i] = (size_t)len;
        /* Pre-compute the node's characters as murmur3 sees them. */
        const unsigned char *p = (const unsigned char *)d->nodes[i];
        size_t o = 0;
        if (!utf8_valid(p, (size_t)len)) {
            memcpy(d->node_cp[i], p, (size_t)len);
            o = (size_t)len;
        } else {
            for (size_t j = 0; j < (size_t)len;) {
                unsigned char c = p[j];
                if (c < 0x80) {
                    d->node_cp[i][o++] = c;
                    j++;
                    continue;
                }
                size_t cl = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
                d->node_cp[i][o++] = (unsigned char)((p[j + cl - 2] & 0x03) << 6 | (p[j + cl - 1] & 0x3F));
                j += cl;
            }
        }
        d->node_cp_len[i] = o;
    }
    return 0;
}

/* A lookup table over the sorted continuum: the top bits of a hash give the range
 * of points to search (about one point), instead of a ~10-step binary search. */
static int build_lut(mk_dist *d)
{
    unsigned bits = 1;
    while (bits < 16 && ((size_t)1 << bits) < 2 * d->npoints)
        bits++;
    size_t nb = (size_t)1 << bits;
    d->lut = malloc((nb + 1) * sizeof *d->lut);
    if (d->lut == NULL)
        return -1;
    d->lut_shift = 32 - bits;
    size_t p = 0;
    for (size_t b = 0; b < nb; b++) {
        uint64_t start = (uint64_t)b << d->lut_shift;
        while (p < d->npoints && d->points[p].value < start)
            p++;
        d->lut[b] = (uint32_t)p;
    }
    d->lut[nb] = (uint32_t)d->npoints;
    return 0;
}

/* mk_dist_continuum_find through the lookup table. */
static inline size_t lut_find(const mk_dist *d, uint32_t h)
{
    size_t b = h >> d->lut_shift;
    size_t i = d->lut[b], end = d->lut[b + 1];
    while (i < end && d->points[i].value < h)
        i++;
    return i == d->npoints ? 0 : i;
}

mk_dist *mk_dist_create(mk_dist_kind kind, const mk_server_spec *servers, size_t n)
{
    if ((unsigned)kind >= MK_DIST_KIND_COUNT_ || servers == NULL || n == 0 || n > UINT32_MAX) {
        errno = EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const mk_server_spec *s = &servers[i];
        if (s->host == NULL || s->host[0] == '\0' || s->weight == 0 || s->weight > MK_WEIGHT_MAX ||
            strlen(s->host) > (s->type == MK_SERVER_UNIX ? MK_UNIX_PATH_MAX : MK_HOST_MAX)) {
            errno = EINVAL;
            return NULL;
        }
    }
    mk_dist *d = calloc(1, sizeof *d);
    if (d == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    d->kind = kind;
    d->n = n;

    bool weighted = any_weight_above_one(servers, n);
    int rc = 0;
    switch (kind) {
    case MK_DIST_KETAMA:
    case MK_DIST_KETAMA_FNV1A:
        rc = mk_dist_continuum_build(MK_CONTINUUM_WEIGHTED_MD5, servers, n, &d->points, &d->npoints);
        break;
    case MK_DIST_CONSISTENT:
        /* libmemcached server_add(): a weight > 1 turns on weighted ketama, key hash unchanged */
        rc = mk_dist_continuum_build(weighted ? MK_CONTINUUM_WEIGHTED_MD5 : MK_CONTINUUM_POINTS100_OAAT,
                                     servers, n, &d->points, &d->npoints);
        break;
    case MK_DIST_CONSISTENT_MD5:
        rc = mk_dist_continuum_build(weighted ? MK_CONTINUUM_WEIGHTED_MD5 : MK_CONTINUUM_POINTS100_MD5,
                                     servers, n, &d->points, &d->npoints);
        break;
    case MK_DIST_MODULA: {
        size_t total = 0;
        bool overflow = false;
        for (size_t i = 0; i < n; i++) {
            if (servers[i].weight > SIZE_MAX / sizeof *d->buckets - total)
                overflow = true;
            else
                total += servers[i].weight;
        }
        d->buckets = overflow ? NULL : malloc(total * sizeof *d->buckets);
        if (d->buckets == NULL) {
            rc = -1;
            errno = ENOMEM;
            break;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            for (uint32_t w = 0; w < servers[i].weight; w++)
                d->buckets[k++] = (uint32_t)i;
        d->nbuckets = total;
        break;
    }
    case MK_DIST_MODULA_OAAT:
    case MK_DIST_MODULA_CRC:
        break;
    case MK_DIST_RENDEZVOUS:
        if (build_rendezvous(d, servers) != 0) {
            rc = -1;
            errno = ENOMEM;
        }
        break;
    default:
        rc = -1;
        errno = EINVAL;
        break;
    }
    if (rc == 0 && d->points && d->npoints && build_lut(d) != 0) {
        rc = -1;
        errno = ENOMEM;
    }
    if (rc != 0) {
        int e = errno;
        mk_dist_destroy(d);
        errno = e;
        return NULL;
    }
    return d;
}

/* The key hash of the kind; false only if MD5 is unavailable. */
static bool key_hash(const mk_dist *d, const char *key, size_t nkey, uint32_t *h)
{
    unsigned char md[16];
    switch (d->kind) {
    case MK_DIST_KETAMA:
    case MK_DIST_CONSISTENT_MD5:
        if (!mk_hash_md5(key, nkey, md))
            return false;
        *h = (uint32_t)md[0] | (uint32_t)md[1] << 8 | (uint32_t)md[2] << 16 | (uint32_t)md[3] << 24;
        return true;
    case MK_DIST_CONSISTENT:
    case MK_DIST_MODULA_OAAT:
        *h = mk_hash_oaat(key, nkey);
        return true;
    case MK_DIST_MODULA:
        *h = mk_hash_cmemcache(key, nkey);
        return true;
    case MK_DIST_MODULA_CRC:
        *h = mk_hash_crc15(key, nkey);
        return true;
    case MK_DIST_KETAMA_FNV1A:
        *h = mk_hash_fnv1a_64_tw(key, nkey);
        return true;
    default:
        *h = 0;
        return true;
    }
}

uint32_t mk_dist_key_hash(const mk_dist *d, const char *key, size_t nkey)
{
    uint32_t h = 0;
    (void)key_hash(d, key, nkey, &h);
    return h;
}

static size_t pick_rendezvous(const mk_dist *d, const char *key, size_t nkey)
{
    /* pymemcache RendezvousHash.get_node: highest murmur3_32("%s-%s" % (node, key)),
     * seed 0; on a tie the greater node name (Python str order = UTF-8 byte order). */
    size_t winner = MK_DIST_NONE;
    uint32_t best = 0;
    for (size_t i = 0; i < d->n; i++) {
        mk_murmur3 m;
        mk_murmur3_init(&m, 0);
        mk_murmur3_update(&m, d->node_cp[i], d->node_cp_len[i]);
        mk_murmur3_byte(&m, '-');
        murmur_feed_chars(&m, (const unsigned char *)key, nkey);
        uint32_t score = mk_murmur3_final(&m);
        if (winner == MK_DIST_NONE || score > best) {
            winner = i;
            best = score;
        } else if (score == best) {
            size_t a = d->node_len[i], b = d->node_len[winner];
            int c = memcmp(d->nodes[i], d->nodes[winner], a < b ? a : b);
            if (c > 0 || (c == 0 && a > b))
                winner = i;
        }
    }
    return winner;
}

size_t mk_dist_pick(const mk_dist *d, const char *key, size_t nkey)
{
    if (d == NULL)
        return MK_DIST_NONE;
    if (key == NULL)
        nkey = 0;
    uint32_t h;
    switch (d->kind) {
    case MK_DIST_RENDEZVOUS:
        return pick_rendezvous(d, key, nkey);
    case MK_DIST_MODULA:
        (void)key_hash(d, key, nkey, &h);
        return d->buckets[h % d->nbuckets];
    case MK_DIST_MODULA_OAAT:
    case MK_DIST_MODULA_CRC:
        (void)key_hash(d, key, nkey, &h);
        return h % d->n;
    default:
        /* libmemcached answers 0 for a single server without hashing. */
        if (d->n == 1)
            return 0;
        if (!key_hash(d, key, nkey, &h))
            return MK_DIST_NONE;
        return d->points[d->lut ? lut_find(d, h) : mk_dist_continuum_find(d->points, d->npoints, h)].server;
    }
}

size_t mk_dist_point_for_hash(const mk_dist *d, uint32_t h)
{
    if (d == NULL || d->npoints == 0)
        return 0;
    return d->lut ? lut_find(d, h) : mk_dist_continuum_find(d->points, d->npoints, h);
}

void mk_dist_pick_many(const mk_dist *d, const char *const *keys, const size_t *nkeys, size_t n, size_t *out)
{
    if (d && d->n > 1 && d->lut && (d->kind == MK_DIST_KETAMA || d->kind == MK_DIST_CONSISTENT_MD5)) {
        uint32_t h[64];
        for (size_t i = 0; i < n; i += 64) {
            size_t m = n - i < 64 ? n - i : 64;
            mk_hash_md5_le32_many(keys + i, nkeys + i, m, h);
            for (size_t j = 0; j < m; j++)
                out[i + j] = d->points[lut_find(d, h[j])].server;
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = mk_dist_pick(d, keys[i], nkeys[i]);
}

size_t mk_dist_pick_alive(const mk_dist *d, const char *key, size_t nkey, mk_dist_alive_fn alive, void *ctx)
{
    if (d == NULL)
        return MK_DIST_NONE;
    if (key == NULL)
        nkey = 0;
    if (d->kind != MK_DIST_MODULA) {
        size_t i = mk_dist_pick(d, key, nkey);
        return (i == MK_DIST_NONE || alive == NULL || alive(ctx, i)) ? i : MK_DIST_NONE;
    }
    /* python-memcached Client._get_server */
    uint32_t h = mk_hash_cmemcache(key, nkey);
    for (unsigned i = 0; i < MK_DIST_PYMC_RETRIES; i++) {
        size_t s = d->buckets[h % d->nbuckets];
        if (alive == NULL || alive(ctx, s))
            return s;
        char buf[32];   /* str(serverhash) + str(i), ASCII */
        int len = snprintf(buf, sizeof buf, "%u%u", (unsigned)h, i);
        h = mk_hash_cmemcache(buf, (size_t)len);
    }
    return MK_DIST_NONE;
}

size_t mk_dist_count(const mk_dist *d)
{
    return d ? d->n : 0;
}

mk_dist_kind mk_dist_get_kind(const mk_dist *d)
{
    return d->kind;
}

const mk_dist_point *mk_dist_points(const mk_dist *d, size_t *npoints)
{
    *npoints = d ? d->npoints : 0;
    return d ? d->points : NULL;
}
