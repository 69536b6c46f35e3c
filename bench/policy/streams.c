/* bench/policy/streams.c — the simulator's key streams (Zipf, Zipf + scans, a shifting Zipf, replayed traces), keys renamed 0..n-1. */
#include "policy_sim.h"

#include "bench.h" /* rng and Zipf sampler: memkit-bench's tools/bench/keys.c */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* raw key -> dense id, open addressing; grows at half full */
typedef struct idmap {
    uint64_t *raw;
    uint32_t *id; /* UINT32_MAX: empty slot */
    size_t mask, n;
} idmap;

static int oom(void)
{
    fprintf(stderr, "policy_sim: out of memory\n");
    return -1;
}

static int idmap_alloc(idmap *m, size_t slots)
{
    m->raw = malloc(slots * sizeof(uint64_t));
    m->id = malloc(slots * sizeof(uint32_t));
    if (m->raw == NULL || m->id == NULL)
        return -1;
    memset(m->id, 0xff, slots * sizeof(uint32_t));
    m->mask = slots - 1;
    return 0;
}

static size_t idmap_slot(const idmap *m, uint64_t raw)
{
    uint64_t h = (raw ^ (raw >> 31)) * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 20) & m->mask;
    while (m->id[i] != UINT32_MAX && m->raw[i] != raw)
        i = (i + 1) & m->mask;
    return i;
}

static int idmap_grow(idmap *m)
{
    idmap g = {.n = m->n};
    if (idmap_alloc(&g, (m->mask + 1) * 2) != 0) {
        free(g.raw);
        free(g.id);
        return -1;
    }
    for (size_t i = 0; i <= m->mask; i++)
        if (m->id[i] != UINT32_MAX) {
            size_t j = idmap_slot(&g, m->raw[i]);
            g.raw[j] = m->raw[i];
            g.id[j] = m->id[i];
        }
    free(m->raw);
    free(m->id);
    *m = g;
    return 0;
}

/* Appends raw key `raw` to the stream (s->key has room). */
static int add(stream *s, idmap *m, uint64_t raw)
{
    if (2 * (m->n + 1) > m->mask + 1 && idmap_grow(m) != 0)
        return oom();
    size_t i = idmap_slot(m, raw);
    if (m->id[i] == UINT32_MAX) {
        if (m->n >= UINT32_MAX - 1) {
            fprintf(stderr, "policy_sim: more than 2^32 - 2 distinct keys\n");
            return -1;
        }
        m->raw[i] = raw;
        m->id[i] = (uint32_t)m->n++;
    }
    s->key[s->n++] = m->id[i];
    return 0;
}

enum gen { ZIPF, SCAN, SHIFT };

/* Zipf ranks 0..keys-1 (rank r is raw key r). SCAN: every scan_every requests (scans included, as in
 * bench/memory.py), scan_len keys never requested before or after. SHIFT: from the middle of the
 * stream on, rank r is key (r + keys/2) mod keys, so the popular keys are ones that were cold. */
static int generate(stream *s, idmap *m, enum gen g, double skew, const stream_opts *o)
{
    size_t total = o->warm + o->measure;
    s->key = malloc(total * sizeof(uint32_t) + 1);
    if (s->key == NULL)
        return oom();
    zipf z;
    rng r;
    zipf_init(&z, o->keys, skew);
    rng_seed(&r, o->seed * 1000003 + (uint64_t)(skew * 1000 + 0.5));
    uint64_t scan_key = o->keys;
    size_t next_scan = o->scan_every;
    while (s->n < total) {
        if (g == SCAN && s->n >= next_scan) {
            for (size_t j = 0; j < o->scan_len && s->n < total; j++)
                if (add(s, m, scan_key++) != 0)
                    return -1;
            next_scan += o->scan_every;
            continue;
        }
        uint64_t rank = zipf_sample(&z, &r);
        if (g == SHIFT && s->n >= total / 2)
            rank = (rank + o->keys / 2) % o->keys;
        if (add(s, m, rank) != 0)
            return -1;
    }
    return 0;
}

/* text: one decimal key id per line (any whitespace separates); binary: native uint64s */
static int read_trace(stream *s, idmap *m, const char *path, int binary)
{
    FILE *f = fopen(path, binary ? "rb" : "r");
    if (f == NULL) {
        fprintf(stderr, "policy_sim: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t room = 0;
    int rc = 0;
    for (;;) {
        uint64_t raw;
        int got = binary ? (int)fread(&raw, sizeof raw, 1, f) : fscanf(f, "%" SCNu64, &raw);
        if (got != 1) {
            if (!feof(f)) {
                fprintf(stderr, "policy_sim: %s: request %zu: not a key id\n", path, s->n + 1);
                rc = -1;
            }
            break;
        }
        if (s->n == room) {
            room = room ? 2 * room : 1 << 20;
            uint32_t *k = realloc(s->key, room * sizeof(uint32_t));
            if (k == NULL) {
                rc = oom();
                break;
            }
            s->key = k;
        }
        if ((rc = add(s, m, raw)) != 0)
            break;
    }
    fclose(f);
    return rc;
}

int stream_make(stream *s, const char *spec, const stream_opts *o)
{
    static const char *const kinds[] = {[ZIPF] = "zipf", [SCAN] = "scan", [SHIFT] = "shift"};
    *s = (stream){.warm = o->warm};
    const char *arg = strchr(spec, ':');
    size_t kl = arg ? (size_t)(arg - spec) : 0;
    char *end = NULL;
    double skew = arg ? strtod(arg + 1, &end) : 0;
    enum gen g = ZIPF;
    while (g <= SHIFT && !(strlen(kinds[g]) == kl && memcmp(spec, kinds[g], kl) == 0))
        g++;
    int trace = kl == 4 && memcmp(spec, "text", 4) == 0 ? 1 : kl == 3 && memcmp(spec, "bin", 3) == 0 ? 2 : 0;
    if (arg == NULL || arg[1] == 0 || (!trace && (g > SHIFT || *end || !(skew > 0)))) {
        fprintf(stderr, "policy_sim: bad stream '%s' (zipf:S, scan:S, shift:S, text:FILE, bin:FILE)\n", spec);
        return -1;
    }
    idmap m = {0};
    int rc = idmap_alloc(&m, 1 << 20) != 0 ? oom()
             : trace ? read_trace(s, &m, arg + 1, trace == 2)
                     : generate(s, &m, g, skew, o);
    if (trace)
        snprintf(s->name, sizeof s->name, "trace %s", arg + 1);
    else
        snprintf(s->name, sizeof s->name, "zipf %.1f%s", skew,
                 g == SCAN ? " + scans" : g == SHIFT ? ", shift at 1/2" : "");
    if (rc == 0 && s->warm >= s->n) { /* a trace no longer than --warm: warm up on its first half */
        s->warm = s->n / 2;
        fprintf(stderr, "policy_sim: %s: %zu requests, warm-up cut to %zu\n", s->name, s->n, s->warm);
    }
    s->nkeys = (uint32_t)m.n;
    free(m.raw);
    free(m.id);
    if (rc != 0)
        stream_free(s);
    return rc;
}

void stream_free(stream *s)
{
    free(s->key);
    s->key = NULL;
}
