/* bench/policy/policy_sim.c — the simulator's command line, the runs (policy x capacity, in threads) and the tables. */
#include "policy_sim.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: policy_sim [options]\n"
    "Hit ratio of cache replacement policies holding the same number of items, on the same\n"
    "cache-aside key streams (a miss inserts the key). Numbers take k/M/G suffixes (powers of 1000).\n"
    "  -c, --capacity=N     items the cache holds                                 [350k]\n"
    "  -n, --keys=N         key space of the generated streams                    [3.5M]\n"
    "  -S, --segment=N      items per segment (memkit: 64 KiB / item size)        [500]\n"
    "  -w, --warm=N         warm-up requests, not counted                         [3M]\n"
    "  -m, --measure=N      measured requests (generated streams)                 [3M]\n"
    "      --scan-every=N   scan streams: every N requests (scans included) ...   [100k]\n"
    "      --scan-len=N     ... a scan of N keys never requested before or after  [30k]\n"
    "  -x, --packing=LIST   a table at capacity x X for each X (0: none)          [1.43,1.68]\n"
    "  -s, --streams=LIST   zipf:S, scan:S (Zipf S + scans), shift:S (the popular keys move\n"
    "                       halfway), text:FILE (a key id per line), bin:FILE (uint64s)\n"
    "                                        [zipf:0.6,zipf:0.8,zipf:1.0,zipf:1.2,scan:1.0,shift:1.0]\n"
    "  -p, --policies=LIST  columns of the first table                            [all]\n"
    "  -P, --packed=LIST    columns of the packed tables\n"
    "         [memkit-seg,S3-seg/1,CLOCK4-seg,merge3-seg,TinyLFU-seg,W-TinyLFU-seg,S3-sketch-seg,LFU,OPT]\n"
    "  -j, --jobs=N         threads                                               [cores]\n"
    "      --seed=N         seed of the generated streams                         [1]\n"
    "      --cost           add rows: CPU ns per request, items copied per request\n"
    "Policies: LRU FIFO CLOCK SIEVE S3-FIFO S3-FIFO/1 memkit-seg S3-seg S3-seg/1 CLOCK4-seg\n"
    "  merge3-seg TinyLFU-seg W-TinyLFU-seg S3-sketch-seg OPT OPT-bypass LFU (docs/bench.md);\n"
    "  NAME:KEY=N:... sets parameters (bench/policy/policy_sim.h): seg max small move ghost\n"
    "  recall merge keep retain halve rank sketch age cu admit bypass carry\n";

/* the built-in policies; seg 0: --segment */
#define CLOCK_SEG .maxfreq = 3, .merge = 1, .keep = 1, .retain = 100
#define SKETCH2 .sketch = 2, .cu = 1
static const policy builtin[] = {
    {"LRU", P_LRU, .seg = 1},
    {"FIFO", P_REINSERT, .seg = 1, .merge = 1, .keep = 1, .retain = 100},
    {"CLOCK", P_REINSERT, .seg = 1, CLOCK_SEG},
    {"SIEVE", P_SIEVE, .seg = 1, .maxfreq = 1},
    {"S3-FIFO", P_S3, .seg = 1, .small = 10, .ghost = 90, .move = 2, CLOCK_SEG},
    {"S3-FIFO/1", P_S3, .seg = 1, .small = 10, .ghost = 90, .move = 1, CLOCK_SEG},
    {"memkit-seg", P_REINSERT, CLOCK_SEG},
    {"S3-seg", P_S3, .small = 10, .ghost = 90, .move = 2, CLOCK_SEG},
    {"S3-seg/1", P_S3, .small = 10, .ghost = 90, .move = 1, CLOCK_SEG},
    {"CLOCK4-seg", P_REINSERT, .maxfreq = 15, .merge = 1, .keep = 2, .retain = 100},
    {"merge3-seg", P_REINSERT, .maxfreq = 3, .merge = 3, .retain = 33},
    {"TinyLFU-seg", P_REINSERT, .maxfreq = 3, .merge = 1, .keep = 2, .retain = 90, .rank = 1, SKETCH2},
    {"W-TinyLFU-seg", P_WINDOW, .small = 1, .maxfreq = 3, .merge = 1, .rank = 1, SKETCH2},
    {"S3-sketch-seg", P_S3, .small = 10, .move = 1, .recall = 4, .carry = 1, CLOCK_SEG, SKETCH2},
    {"OPT", P_OPT, .seg = 1},
    {"OPT-bypass", P_OPT, .seg = 1, .bypass = 1},
    {"LFU", P_LFU, .seg = 1},
};
#define NPOL (sizeof builtin / sizeof builtin[0])
#define MAXCOLS 64
#define MAXPACK 8
static double packing[MAXPACK] = {1.43, 1.68};
static int npacking = 2;

/* a policy's parameters that -p NAME:KEY=N:... may set, and their largest values */
static const struct param {
    const char *key;
    size_t off;
    unsigned max;
} params[] = {
#define PARAM(key, field, max) {key, offsetof(policy, field), max}
    PARAM("seg", seg, 1u << 20),  PARAM("max", maxfreq, 255), PARAM("small", small, 99),
    PARAM("move", move, 255),     PARAM("ghost", ghost, 1000), PARAM("recall", recall, 16),
    PARAM("merge", merge, 1000),  PARAM("keep", keep, 256),   PARAM("retain", retain, 100),
    PARAM("halve", halve, 1),     PARAM("rank", rank, 1),     PARAM("sketch", sketch, 64),
    PARAM("age", age, 1000),      PARAM("cu", cu, 1),         PARAM("admit", admit, 16),
    PARAM("bypass", bypass, 1),   PARAM("carry", carry, 1),
#undef PARAM
};
#define NPARAMS (sizeof params / sizeof params[0])

typedef struct job {
    const policy *p;
    size_t cap;
    sim_result r;
    int rc;
} job;

typedef struct pool {
    const stream *s;
    job *jobs;
    size_t njobs, next;
    pthread_mutex_t lock;
} pool;

static void *worker(void *arg)
{
    pool *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        size_t i = w->next++;
        pthread_mutex_unlock(&w->lock);
        if (i >= w->njobs)
            return NULL;
        w->jobs[i].rc = simulate(w->jobs[i].p, w->s, w->jobs[i].cap, &w->jobs[i].r);
    }
}

static int run_jobs(const stream *s, job *jobs, size_t njobs, int threads)
{
    pool w = {.s = s, .jobs = jobs, .njobs = njobs, .lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t t[64];
    int started = 0;
    while (started < threads && pthread_create(&t[started], NULL, worker, &w) == 0)
        started++;
    if (started == 0)
        worker(&w);
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < njobs; i++)
        if (jobs[i].rc != 0) {
            fprintf(stderr, "policy_sim: %s: %s: out of memory\n", s->name, jobs[i].p->name);
            return -1;
        }
    return 0;
}

static int parse_num(const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    const char *suf = "kMG";
    const char *u = *end ? strchr(suf, *end) : NULL;
    if (u != NULL && end[1] == 0)
        x *= pow(1000, (double)(u - suf + 1));
    else if (*end || end == v)
        x = -1;
    if (!(x >= 0) || x > 1e15) {
        fprintf(stderr, "policy_sim: bad number '%s'\n", v);
        return -1;
    }
    *out = x;
    return 0;
}

/* Comma-separated packing factors (0: none) -> packing[]; returns their count or -1. */
static int parse_packing(const char *list)
{
    int n = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n >= 0; t = strtok_r(NULL, ",", &save))
        if (n == MAXPACK) {
            fprintf(stderr, "policy_sim: at most %d packing factors\n", MAXPACK);
            n = -1;
        } else {
            n = parse_num(t, &packing[n]) != 0 ? -1 : n + (packing[n] > 0);
        }
    free(copy);
    return n;
}

/* One policy: a built-in name, then :KEY=N for each parameter it overrides. Returns 0 or -1. */
static int parse_policy(char *spec, policy *p)
{
    char *save = NULL, *t = strtok_r(spec, ":", &save);
    size_t i = 0;
    while (t && i < NPOL && strcmp(builtin[i].name, t) != 0)
        i++;
    if (t == NULL || i == NPOL) {
        fprintf(stderr, "policy_sim: unknown policy '%s'\n", t ? t : "");
        return -1;
    }
    *p = builtin[i];
    while ((t = strtok_r(NULL, ":", &save)) != NULL) {
        char key[16], end;
        unsigned v = 0;
        size_t j = NPARAMS;
        if (sscanf(t, "%15[a-z]=%u%c", key, &v, &end) == 2)
            for (j = 0; j < NPARAMS && strcmp(params[j].key, key) != 0; j++)
                ;
        if (j == NPARAMS || v > params[j].max) {
            fprintf(stderr, "policy_sim: bad parameter '%s' of %s\n", t, p->name);
            return -1;
        }
        *(unsigned *)((char *)p + params[j].off) = v;
        snprintf(p->name + strlen(p->name), sizeof p->name - strlen(p->name), ":%s", t);
    }
    if (p->sketch == 0 && (p->admit || p->recall || p->rank)) {
        fprintf(stderr, "policy_sim: %s: admit, recall and rank need a sketch\n", p->name);
        return -1;
    }
    return 0;
}

/* Comma-separated policies -> into[]; returns the count or -1. */
static int parse_policies(const char *list, policy *into)
{
    int n = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == MAXCOLS || parse_policy(t, &into[n]) != 0) {
            n = -1;
            break;
        }
        n++;
    }
    free(copy);
    return n;
}

/* the tables' columns: cols at the capacity, packed at capacity x each packing factor */
static policy cols[MAXCOLS], packed[MAXCOLS];
static int ncols, npacked, show_cost;

typedef struct row {
    char name[80];
    size_t warm;
    uint32_t nkeys;
    job *jobs; /* cols at cap, then packed at cap x packing[0], packed at cap x packing[1], ... */
} row;

static int find_policy(const policy *p, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return i;
    return -1;
}

static double ratio(const job *j)
{
    return j->r.counted ? 100.0 * (double)j->r.hits / (double)j->r.counted : 0.0;
}

static int starred;

/* a hit ratio, starred when the cache was not yet full as measuring began */
static void cell(const job *j, size_t warm)
{
    int star = j->r.first_eviction > warm;
    starred |= star;
    printf(" %.2f%s |", ratio(j), star ? "*" : "");
}

/* Table t: 0 the columns at capacity cap, t > 0 the packed columns at cap x packing[t - 1] = capt,
 * with the policy and packing gains of memkit-seg where LRU and memkit-seg are columns of both. */
static void print_table(const row *rows, size_t nrows, int t, size_t cap, size_t capt)
{
    const policy *p = t ? packed : cols;
    int np = t ? npacked : ncols, lru = find_policy(cols, ncols, "LRU"), mk = find_policy(cols, ncols, "memkit-seg");
    int mkx = find_policy(packed, npacked, "memkit-seg"), gains = t && lru >= 0 && mk >= 0 && mkx >= 0;
    size_t off = t ? (size_t)ncols + (size_t)(t - 1) * (size_t)npacked : 0;
    char x[24] = "";
    if (t) {
        snprintf(x, sizeof x, " x%g", packing[t - 1]);
        printf("\nhit ratio %% at capacity%s = %zu items", x, capt);
    } else {
        printf("hit ratio %% at capacity %zu items", cap);
    }
    if (gains)
        printf("; policy gain = memkit-seg - LRU at x1, packing gain = memkit-seg%s - x1", x);
    printf("\n\n| stream |%s", t == 0 ? " keys |" : gains ? " LRU x1 | memkit-seg x1 |" : "");
    for (int i = 0; i < np; i++)
        printf(" %s%s |", p[i].name, x);
    printf("%s\n|---|", gains ? " policy gain | packing gain |" : "");
    for (int i = 0; i < np + (t == 0) + 4 * gains; i++)
        printf("---|");
    for (const row *r = rows; r < rows + nrows; r++) {
        printf("\n| %s |", r->name);
        if (t == 0)
            printf(" %u |", r->nkeys);
        if (gains) {
            cell(&r->jobs[lru], r->warm);
            cell(&r->jobs[mk], r->warm);
        }
        for (int i = 0; i < np; i++)
            cell(&r->jobs[off + i], r->warm);
        if (gains)
            printf(" %+.2f | %+.2f |", ratio(&r->jobs[mk]) - ratio(&r->jobs[lru]),
                   ratio(&r->jobs[off + mkx]) - ratio(&r->jobs[mk]));
    }
    for (int m = 0; m < 2 * show_cost && nrows > 0; m++) { /* means over the streams */
        printf("\n| %s |%s%s", m ? "copies/request" : "ns/request", t == 0 || gains ? " |" : "", gains ? " |" : "");
        for (int i = 0; i < np; i++) {
            double sum = 0;
            for (const row *r = rows; r < rows + nrows; r++) {
                const sim_result *res = &r->jobs[off + i].r;
                sum += !m ? res->ns : res->counted ? (double)res->copies / (double)res->counted : 0;
            }
            printf(m ? " %.2f |" : " %.0f |", sum / (double)nrows);
        }
        printf("%s", gains ? " | |" : "");
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    stream_opts o = {.keys = 3500000, .warm = 3000000, .measure = 3000000, .scan_every = 100000,
                     .scan_len = 30000, .seed = 1};
    double cap = 350000, seg = 500;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    const char *streams = "zipf:0.6,zipf:0.8,zipf:1.0,zipf:1.2,scan:1.0,shift:1.0";
    for (size_t i = 0; i < NPOL; i++)
        cols[ncols++] = builtin[i];
    npacked = parse_policies("memkit-seg,S3-seg/1,CLOCK4-seg,merge3-seg,TinyLFU-seg,W-TinyLFU-seg,S3-sketch-seg,LFU,OPT",
                             packed);

    enum { O_SCAN_EVERY = 256, O_SCAN_LEN, O_SEED, O_COST };
    static const struct option lo[] = {
        {"capacity", 1, 0, 'c'},  {"keys", 1, 0, 'n'},     {"segment", 1, 0, 'S'},
        {"warm", 1, 0, 'w'},      {"measure", 1, 0, 'm'},  {"scan-every", 1, 0, O_SCAN_EVERY},
        {"scan-len", 1, 0, O_SCAN_LEN}, {"packing", 1, 0, 'x'}, {"streams", 1, 0, 's'},
        {"policies", 1, 0, 'p'},  {"packed", 1, 0, 'P'},   {"jobs", 1, 0, 'j'},
        {"seed", 1, 0, O_SEED},   {"cost", 0, 0, O_COST},      {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:n:S:w:m:x:s:p:P:j:h", lo, NULL)) != -1) {
        double v = 0;
        if (optarg && !strchr("spPx", c) && parse_num(optarg, &v) != 0)
            return 2;
        switch (c) {
        case 'c': cap = floor(v); break;
        case 'n': o.keys = (uint64_t)v; break;
        case 'S': seg = floor(v); break;
        case 'w': o.warm = (size_t)v; break;
        case 'm': o.measure = (size_t)v; break;
        case O_SCAN_EVERY: o.scan_every = (size_t)v; break;
        case O_SCAN_LEN: o.scan_len = (size_t)v; break;
        case 'x':
            if ((npacking = parse_packing(optarg)) < 0)
                return 2;
            break;
        case 's': streams = optarg; break;
        case 'p': ncols = parse_policies(optarg, cols); break;
        case 'P': npacked = parse_policies(optarg, packed); break;
        case 'j': threads = (int)v; break;
        case O_SEED: o.seed = (uint64_t)v; break;
        case O_COST: show_cost = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (ncols < 1 || npacked < 0) {
            if (ncols == 0)
                fprintf(stderr, "policy_sim: --policies: no policy\n");
            return 2;
        }
    }
    if (optind < argc || cap < 1 || seg < 1 || seg > 1e9 || o.keys < 1 || o.scan_every < 1 || threads < 1 ||
        o.warm + o.measure == 0) {
        fprintf(stderr, "policy_sim: capacity, segment, keys, scan-every, jobs and warm+measure must be >= 1\n%s",
                usage);
        return 2;
    }
    if (threads > 64)
        threads = 64;
    if (npacking == 0)
        npacked = 0;
    for (int i = 0; i < ncols + npacked; i++) {
        policy *p = i < ncols ? &cols[i] : &packed[i - ncols];
        if (p->seg == 0)
            p->seg = (unsigned)seg;
    }
    size_t capt[MAXPACK + 1] = {(size_t)cap};
    for (int t = 1; t <= npacking; t++)
        if ((capt[t] = (size_t)floor(cap * packing[t - 1] + 0.5)) < 1 && npacked > 0) {
            fprintf(stderr, "policy_sim: capacity x packing is under one item\n");
            return 2;
        }

    /* a row per stream: the first table's columns at cap, then the packed columns at each capt[t] */
    size_t per = (size_t)ncols + (size_t)npacked * (size_t)npacking, nrows = 1, done = 0;
    for (const char *q = streams; *q; q++)
        nrows += *q == ',';
    row *rows = calloc(nrows, sizeof *rows);
    job *jobs = calloc(nrows * per, sizeof *jobs);
    char *specs = strdup(streams), *save = NULL;
    int rc = rows && jobs && specs ? 0 : 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (char *spec = rc ? NULL : strtok_r(specs, ",", &save); spec; spec = strtok_r(NULL, ",", &save)) {
        stream s;
        row *r = &rows[done];
        r->jobs = jobs + done * per;
        for (size_t i = 0; i < per; i++) {
            size_t t = i < (size_t)ncols ? 0 : (i - (size_t)ncols) / (size_t)npacked + 1;
            r->jobs[i] = (job){.p = t ? &packed[(i - (size_t)ncols) % (size_t)npacked] : &cols[i], .cap = capt[t]};
        }
        if ((rc = stream_make(&s, spec, &o)) != 0)
            break;
        rc = run_jobs(&s, r->jobs, per, threads);
        memcpy(r->name, s.name, sizeof r->name);
        r->warm = s.warm;
        r->nkeys = s.nkeys;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fprintf(stderr, "policy_sim: %s done (%zu requests, %u keys) at %.1f s\n", s.name, s.n, s.nkeys,
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        stream_free(&s);
        if (rc != 0)
            break;
        done++;
    }
    if (rc == 0) {
        printf("policy_sim: capacity %.0f items, segments of %.0f items; generated streams: %llu keys, "
               "%zu warm-up + %zu measured requests, seed %llu\n\n",
               cap, seg, (unsigned long long)o.keys, o.warm, o.measure, (unsigned long long)o.seed);
        for (int t = 0; t <= npacking * (npacked > 0); t++)
            print_table(rows, done, t, (size_t)cap, capt[t]);
        if (starred)
            printf("\n* the cache was not full yet when measuring began (no eviction during the warm-up)\n");
    } else if (!(rows && jobs && specs)) {
        fprintf(stderr, "policy_sim: out of memory\n");
    }
    free(specs);
    free(jobs);
    free(rows);
    return rc ? 1 : 0;
}
