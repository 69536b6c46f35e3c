/* tests/unit/client/test_dist.c — key placement vs the real clients' vectors; server-list parsing; key validation; hashes. */
#include "check.h"
#include "client/dist.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>

/*
 * Expected placements are never written here. They come from
 *   - $MEMKIT_DIST_TSV, or `/usr/bin/python3 tests/tools/vectors_to_tsv.py`, which
 *     converts ../shared/vectors/distribution.json ($MEMKIT_VECTORS) -- the
 *     placements the real python-memcached, pylibmc/libmemcached, pymemcache and
 *     twemproxy made;
 *   - $MEMKIT_REHASH_TSV, or `/usr/bin/python3 tests/tools/pymc_rehash.py`, which
 *     asks the installed python-memcached where keys go when servers are dead.
 * The test runner starts test binaries from the repository root.
 */

#define PY "/usr/bin/python3"

/* ------------------------------------------------------------ TSV loading */

static char *read_stream(FILE *f)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    buf[len] = '\0';
    return buf;
}

/* Returns the TSV text, or NULL. *skipped is set when the generator says its
 * library is missing (exit 77). */
static char *load_tsv(const char *env, const char *cmd, bool *skipped)
{
    *skipped = false;
    const char *path = getenv(env);
    if (path && *path) {
        FILE *f = fopen(path, "r");
        if (!f) {
            fprintf(stderr, "  cannot open %s=%s: %s\n", env, path, strerror(errno));
            return NULL;
        }
        char *s = read_stream(f);
        fclose(f);
        return s;
    }
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "  cannot run %s: %s\n", cmd, strerror(errno));
        return NULL;
    }
    char *s = read_stream(p);
    int st = pclose(p);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 77)
            *skipped = true;
        else
            fprintf(stderr, "  `%s` failed (exit %d); run from the repo root, or set %s\n", cmd,
                    st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1, env);
        free(s);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------- case evaluation */

typedef struct mode_map {
    const char *library, *mode;
    mk_dist_kind kind;
} mode_map;

static const mode_map MODES[] = {
    {"python-memcached", "default", MK_DIST_MODULA},
    {"pylibmc", "modula", MK_DIST_MODULA_OAAT},
    {"pylibmc", "modula_crc", MK_DIST_MODULA_CRC},
    {"pylibmc", "ketama", MK_DIST_CONSISTENT},
    {"pylibmc", "consistent", MK_DIST_CONSISTENT},
    {"pylibmc", "ketama_md5", MK_DIST_CONSISTENT_MD5},
    {"pylibmc", "ketama_weighted", MK_DIST_KETAMA},
    {"twemproxy", "ketama_md5", MK_DIST_KETAMA},
    {"twemproxy", "ketama_fnv1a_64", MK_DIST_KETAMA_FNV1A},
    {"pymemcache", "hashclient_rendezvous", MK_DIST_RENDEZVOUS},
};

static int find_mode(const char *lib, const char *mode)
{
    for (size_t i = 0; i < sizeof MODES / sizeof MODES[0]; i++)
        if (strcmp(MODES[i].library, lib) == 0 && strcmp(MODES[i].mode, mode) == 0)
            return (int)i;
    return -1;
}

/* Split a line in place on tabs. */
static int split_tabs(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    return n;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool unhex(const char *h, char *out, size_t cap, size_t *n)
{
    size_t len = strlen(h);
    if (len % 2 || len / 2 > cap)
        return false;
    for (size_t i = 0; i < len / 2; i++) {
        int a = hexval(h[2 * i]), b = hexval(h[2 * i + 1]);
        if (a < 0 || b < 0)
            return false;
        out[i] = (char)(a << 4 | b);
    }
    *n = len / 2;
    return true;
}

typedef struct dead_set {
    bool dead[64];
} dead_set;

static bool is_alive(void *ctx, size_t i)
{
    const dead_set *d = ctx;
    return i >= 64 || !d->dead[i];
}

typedef struct tally {
    unsigned cases, skipped_cases, keys, ok;
    unsigned mode_ok[sizeof MODES / sizeof MODES[0]], mode_tot[sizeof MODES / sizeof MODES[0]];
} tally;

/*
 * Walk a TSV (see tests/tools/vectors_to_tsv.py) and check every key. With
 * use_dead, cases carry a "dead" line and keys go through mk_dist_pick_alive.
 */
static void run_tsv(char *text, tally *t)
{
    char *save = NULL;
    char *f[8];
    mk_server_spec specs[64];
    char hosts[64][MK_HOST_MAX + 1];
    size_t nspec = 0;
    int mode = -1;
    bool skip = false;
    char id[256] = "";
    mk_dist *d = NULL;
    dead_set dead;
    bool has_dead = false;
    unsigned c_ok = 0, c_tot = 0, c_keybad = 0;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || line[0] == '\0')
            continue;
        int nf = split_tabs(line, f, 8);
        if (strcmp(f[0], "case") == 0 && nf == 6) {
            snprintf(id, sizeof id, "%s", f[1]);
            mode = find_mode(f[2], f[3]);
            skip = mode < 0;
            nspec = 0;
            has_dead = false;
            memset(&dead, 0, sizeof dead);
            c_ok = c_tot = c_keybad = 0;
            t->cases++;
            if (skip) {
                t->skipped_cases++;
                printf("  %-45s SKIP (no memkit mode for %s/%s)\n", id, f[2], f[3]);
            }
        } else if (strcmp(f[0], "server") == 0 && nf == 4) {
            CHECK(nspec < 64);
            if (nspec >= 64)
                continue;
            snprintf(hosts[nspec], sizeof hosts[nspec], "%s", f[1]);
            specs[nspec] = (mk_server_spec){hosts[nspec], (uint16_t)atoi(f[2]), (uint32_t)atoi(f[3]), MK_SERVER_TCP};
            nspec++;
        } else if (strcmp(f[0], "dead") == 0 && nf >= 1) {
            has_dead = true;
            for (char *p = nf > 1 ? f[1] : ""; *p;) {
                long i = strtol(p, &p, 10);
                if (i >= 0 && i < 64)
                    dead.dead[i] = true;
                if (*p == ',')
                    p++;
                else
                    break;
            }
        } else if (strcmp(f[0], "key") == 0 && nf == 3) {
            if (skip)
                continue;
            if (!d) {
                d = mk_dist_create(MODES[mode].kind, specs, nspec);
                CHECK(d != NULL);
                if (!d) {
                    skip = true;
                    continue;
                }
            }
            char key[1024];
            size_t nkey = 0;
            CHECK(unhex(f[1], key, sizeof key, &nkey));
            size_t want = strcmp(f[2], "-") == 0 ? MK_DIST_NONE : (size_t)atoi(f[2]);
            if (want != MK_DIST_NONE || has_dead) {
                /* every key a real client placed is legal for us too */
                if (mk_key_check(key, nkey, NULL) != MK_KEY_OK)
                    c_keybad++;
            }
            size_t got = has_dead ? mk_dist_pick_alive(d, key, nkey, is_alive, &dead) : mk_dist_pick(d, key, nkey);
            c_tot++;
            if (got == want) {
                c_ok++;
            } else if (c_tot - c_ok <= 3) {
                fprintf(stderr, "  %s: key %s: got %zu, want %zu\n", id, f[1], got, want);
            }
        } else if (strcmp(f[0], "end") == 0) {
            if (!skip) {
                printf("  %-45s %3u/%u %s(%s)\n", id, c_ok, c_tot, c_ok == c_tot ? "" : "MISMATCH ",
                       mk_dist_kind_name(MODES[mode].kind));
                CHECK_EQ_U(c_ok, c_tot);
                CHECK(c_tot > 0);
                CHECK_EQ_U(c_keybad, 0);
                t->keys += c_tot;
                t->ok += c_ok;
                t->mode_ok[mode] += c_ok;
                t->mode_tot[mode] += c_tot;
            }
            mk_dist_destroy(d);
            d = NULL;
        } else {
            fprintf(stderr, "  bad TSV line: %s\n", f[0]);
            CHECK(0);
        }
    }
    mk_dist_destroy(d);
}

static void test_vectors(void)
{
    bool skipped;
    char *text = load_tsv("MEMKIT_DIST_TSV", PY " tests/tools/vectors_to_tsv.py", &skipped);
    CHECK(text != NULL);
    if (!text) {
        fprintf(stderr, "  no vectors: set MEMKIT_VECTORS or MEMKIT_DIST_TSV\n");
        return;
    }
    tally t = {0};
    printf("distribution vectors (../shared/vectors/distribution.json):\n");
    run_tsv(text, &t);
    printf("  per mode:\n");
    for (size_t i = 0; i < sizeof MODES / sizeof MODES[0]; i++)
        if (t.mode_tot[i])
            printf("    %-16s %-22s -> %-14s %5u/%u\n", MODES[i].library, MODES[i].mode,
                   mk_dist_kind_name(MODES[i].kind), t.mode_ok[i], t.mode_tot[i]);
    printf("  total: %u/%u key placements match over %u cases (%u skipped)\n", t.ok, t.keys,
           t.cases - t.skipped_cases, t.skipped_cases);
    CHECK(t.cases >= 51);
    CHECK(t.keys > 0);
    free(text);
}

static void test_rehash_vs_python_memcached(void)
{
    bool skipped;
    char *text = load_tsv("MEMKIT_REHASH_TSV", PY " tests/tools/pymc_rehash.py", &skipped);
    if (skipped) {
        printf("rehash on dead servers: SKIP (python3-memcache not installed; `make test` installs it)\n");
        return;
    }
    CHECK(text != NULL);
    if (!text)
        return;
    tally t = {0};
    printf("python-memcached rehash on dead servers (live python-memcached _get_server):\n");
    run_tsv(text, &t);
    printf("  total: %u/%u\n", t.ok, t.keys);
    CHECK(t.keys > 0);
    free(text);
}

/* --------------------------------------------------------------- hashes */

static void test_hash_reference_values(void)
{
    /* Published check values of the standard algorithms. */
    CHECK_EQ_U(mk_hash_crc32("123456789", 9), 0xCBF43926u);
    CHECK_EQ_U(mk_hash_crc32("", 0), 0);
    unsigned char md[16];
    CHECK(mk_hash_md5("abc", 3, md));
    static const unsigned char abc[16] = {0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0,
                                          0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1, 0x7f, 0x72};
    CHECK(memcmp(md, abc, 16) == 0);
    CHECK(mk_hash_md5(NULL, 0, md));
    CHECK(md[0] == 0xd4 && md[15] == 0x7e);      /* d41d8cd9...f8427e */
    CHECK_EQ_U(mk_hash_md5_le32("abc", 3, 0), 0x98500190u);
    CHECK_EQ_U(mk_hash_md5_le32("abc", 3, 3), 0x727fe128u);
    CHECK_EQ_U(mk_hash_murmur3_32("", 0, 0), 0);
    CHECK_EQ_U(mk_hash_murmur3_32("", 0, 1), 0x514E28B7u);
    CHECK_EQ_U(mk_hash_murmur3_32("\xff\xff\xff\xff", 4, 0), 0x76293B50u);
    CHECK_EQ_U(mk_hash_murmur3_32("\x21\x43\x65\x87", 4, 0), 0xF55B516Bu);
    CHECK_EQ_U(mk_hash_murmur3_32("\x21\x43\x65", 3, 0), 0x7E4A8634u);
    CHECK_EQ_U(mk_hash_murmur3_32("\x21\x43", 2, 0), 0xA0F7B07Au);
    CHECK_EQ_U(mk_hash_murmur3_32("\x21", 1, 0), 0x72661CF4u);
    /* FNV-1a 32 of "" is the (truncated) offset basis */
    CHECK_EQ_U(mk_hash_fnv1a_64_tw("", 0), 0x84222325u);
}

static void test_hash_crc_variants(void)
{
    /* the README's k25: libhashkit CRC 0, python-memcached's `or 1` makes it 1 */
    CHECK_EQ_U(mk_hash_crc15("k25", 3), 0);
    CHECK_EQ_U(mk_hash_cmemcache("k25", 3), 1);
    for (int i = 0; i < 1000; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "key%d", i);
        uint32_t c = mk_hash_crc15(k, (size_t)n);
        CHECK(c <= 0x7fff);
        CHECK_EQ_U(mk_hash_cmemcache(k, (size_t)n), c ? c : 1);
        CHECK_EQ_U(c, (mk_hash_crc32(k, (size_t)n) >> 16) & 0x7fff);
    }
}

static void test_hash_sign_extension(void)
{
    /* libhashkit adds (uint32_t)(signed char)b: for b >= 0x80 that is 0xFFFFFF00 | b.
     * One byte: v = sx; v += v<<10; v ^= v>>6; then the final mix. */
    uint32_t v = 0xFFFFFFE9u;
    v += v << 10;
    v ^= v >> 6;
    v += v << 3;
    v ^= v >> 11;
    v += v << 15;
    CHECK_EQ_U(mk_hash_oaat("\xe9", 1), v);
    uint32_t f = 0x84222325u;
    f ^= 0xFFFFFFE9u;
    f *= 0x000001B3u;
    CHECK_EQ_U(mk_hash_fnv1a_64_tw("\xe9", 1), f);
}

static void test_murmur_streaming(void)
{
    unsigned char buf[64];
    for (int i = 0; i < 64; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= 64; n++) {
        for (size_t cut = 0; cut <= n; cut += 3) {
            mk_murmur3 m;
            mk_murmur3_init(&m, 7);
            mk_murmur3_update(&m, buf, cut);
            mk_murmur3_update(&m, buf + cut, n - cut);
            CHECK_EQ_U(mk_murmur3_final(&m), mk_hash_murmur3_32(buf, n, 7));
        }
    }
}

/* ------------------------------------------------------------ continuum */

static void test_continuum_find(void)
{
    mk_dist_point pts[] = {{10, 0}, {20, 1}, {20, 2}, {30, 3}, {UINT32_MAX - 1, 4}};
    size_t n = sizeof pts / sizeof pts[0];
    CHECK_EQ_U(mk_dist_continuum_find(pts, n, 0), 0);
    CHECK_EQ_U(mk_dist_continuum_find(pts, n, 10), 0);
    CHECK_EQ_U(mk_dist_continuum_find(pts, n, 11), 1);
    CHECK_EQ_U(mk_dist_continuum_find(pts, n, 20), 1);   /* first of equal values */
    CHECK_EQ_U(mk_dist_continuum_find(pts, n, 21), 3);
    CHECK_EQ_U(mk_dist_continuum_find(pts, n, UINT32_MAX - 1), 4);
    CHECK_EQ_U(mk_dist_continuum_find(pts, n, UINT32_MAX), 0);   /* wraps */
    CHECK_EQ_U(mk_dist_continuum_find(pts, 1, 5), 0);
    CHECK_EQ_U(mk_dist_continuum_find(pts, 1, 11), 0);

    /* against a linear scan on a real continuum */
    mk_server_spec s[] = {{"10.0.0.1", 11211, 1, MK_SERVER_TCP}, {"10.0.0.2", 11300, 3, MK_SERVER_TCP},
                          {"cache-a", 11211, 2, MK_SERVER_TCP}};
    mk_dist_point *p;
    size_t np;
    CHECK(mk_dist_continuum_build(MK_CONTINUUM_WEIGHTED_MD5, s, 3, &p, &np) == 0);
    if (!p)
        return;
    for (size_t i = 1; i < np; i++)
        CHECK(p[i - 1].value <= p[i].value);
    uint32_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 1103515245u + 12345u;
        size_t lin = 0;
        while (lin < np && p[lin].value < x)
            lin++;
        if (lin == np)
            lin = 0;
        CHECK_EQ_U(mk_dist_continuum_find(p, np, x), lin);
    }
    free(p);
}

static void count_points(const mk_dist *d, size_t *per, size_t n)
{
    size_t np;
    const mk_dist_point *p = mk_dist_points(d, &np);
    memset(per, 0, n * sizeof *per);
    for (size_t i = 0; i < np; i++)
        per[p[i].server]++;
}

static void test_point_counts(void)
{
    mk_server_spec s[] = {{"127.0.0.2", 11211, 1, MK_SERVER_TCP}, {"127.0.0.3", 11211, 2, MK_SERVER_TCP},
                          {"127.0.0.4", 11211, 1, MK_SERVER_TCP}};
    size_t per[3];
    mk_dist *d = mk_dist_create(MK_DIST_KETAMA, s, 3);
    CHECK(d != NULL);
    count_points(d, per, 3);   /* 160 x share x n: 0.25*480, 0.5*480, 0.25*480 */
    CHECK_EQ_U(per[0], 120);
    CHECK_EQ_U(per[1], 240);
    CHECK_EQ_U(per[2], 120);
    mk_dist_destroy(d);

    s[1].weight = 1;
    d = mk_dist_create(MK_DIST_KETAMA, s, 3);
    count_points(d, per, 3);
    CHECK_EQ_U(per[0], 160);
    CHECK_EQ_U(per[1], 160);
    mk_dist_destroy(d);
    d = mk_dist_create(MK_DIST_CONSISTENT, s, 3);   /* unweighted: 100 each */
    count_points(d, per, 3);
    CHECK_EQ_U(per[0], 100);
    CHECK_EQ_U(per[2], 100);
    mk_dist_destroy(d);

    s[1].weight = 2;                                 /* weight > 1 switches to the 160-point continuum */
    d = mk_dist_create(MK_DIST_CONSISTENT, s, 3);
    count_points(d, per, 3);
    CHECK_EQ_U(per[1], 240);
    mk_dist_destroy(d);

    CHECK(mk_dist_points(NULL, &(size_t){0}) == NULL);
    d = mk_dist_create(MK_DIST_MODULA, s, 3);
    size_t np = 99;
    CHECK(mk_dist_points(d, &np) == NULL);
    CHECK_EQ_U(np, 0);
    mk_dist_destroy(d);
}

static void test_dist_create_errors(void)
{
    mk_server_spec s[] = {{"a", 11211, 1, MK_SERVER_TCP}, {"b", 1, 1, MK_SERVER_TCP}};
    errno = 0;
    CHECK(mk_dist_create(MK_DIST_KETAMA, s, 0) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(mk_dist_create(MK_DIST_KETAMA, NULL, 2) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(mk_dist_create((mk_dist_kind)99, s, 2) == NULL && errno == EINVAL);
    s[1].weight = 0;
    errno = 0;
    CHECK(mk_dist_create(MK_DIST_MODULA, s, 2) == NULL && errno == EINVAL);
    s[1].weight = MK_WEIGHT_MAX + 1;
    CHECK(mk_dist_create(MK_DIST_MODULA, s, 2) == NULL);
    s[1].weight = 1;
    s[1].host = "";
    CHECK(mk_dist_create(MK_DIST_CONSISTENT, s, 2) == NULL);
    s[1].host = NULL;
    CHECK(mk_dist_create(MK_DIST_CONSISTENT, s, 2) == NULL);
    CHECK(mk_dist_kind_name((mk_dist_kind)99) == NULL);
    CHECK(mk_dist_pick(NULL, "k", 1) == MK_DIST_NONE);
    mk_dist_destroy(NULL);
}

static bool all_dead(void *ctx, size_t i)
{
    (void)ctx;
    (void)i;
    return false;
}

static bool odd_alive(void *ctx, size_t i)
{
    (void)ctx;
    return i % 2 == 1;
}

static void test_pick_properties(void)
{
    mk_server_spec s[] = {{"10.0.0.1", 11212, 1, MK_SERVER_TCP}, {"10.0.0.2", 11213, 2, MK_SERVER_TCP},
                          {"::1", 11211, 1, MK_SERVER_TCP},      {"/tmp/mc.sock", 0, 1, MK_SERVER_UNIX},
                          {"cache-b", 11211, 3, MK_SERVER_TCP}};
    for (int k = 0; k < MK_DIST_KIND_COUNT_; k++) {
        mk_dist *d = mk_dist_create((mk_dist_kind)k, s, 5);
        CHECK(d != NULL);
        if (!d)
            continue;
        CHECK_EQ_U(mk_dist_count(d), 5);
        CHECK(mk_dist_get_kind(d) == (mk_dist_kind)k);
        CHECK(mk_dist_kind_name((mk_dist_kind)k) != NULL);
        size_t hits[5] = {0};
        for (int i = 0; i < 2000; i++) {
            char key[32];
            int n = snprintf(key, sizeof key, "prop:%d", i);
            size_t p = mk_dist_pick(d, key, (size_t)n);
            CHECK(p < 5);
            if (p < 5)
                hits[p]++;
            CHECK_EQ_U(mk_dist_pick_alive(d, key, (size_t)n, NULL, NULL), p);
            size_t a = mk_dist_pick_alive(d, key, (size_t)n, odd_alive, NULL);
            CHECK(a == MK_DIST_NONE || a % 2 == 1);
            if (k != MK_DIST_MODULA)
                CHECK_EQ_U(a, p % 2 == 1 ? p : MK_DIST_NONE);
            CHECK_EQ_U(mk_dist_pick_alive(d, key, (size_t)n, all_dead, NULL), MK_DIST_NONE);
        }
        /* every server gets some keys (FNV-1a is skewed on similar keys, but not to 0) */
        for (int i = 0; i < 5; i++)
            CHECK(hits[i] > 0);
        mk_dist_destroy(d);
    }
    /* a single server takes every key */
    for (int k = 0; k < MK_DIST_KIND_COUNT_; k++) {
        mk_dist *d = mk_dist_create((mk_dist_kind)k, s, 1);
        CHECK(d && mk_dist_pick(d, "anything", 8) == 0);
        mk_dist_destroy(d);
    }
}

typedef struct thr_arg {
    const mk_dist *d;
    size_t mismatches;
} thr_arg;

static void *thr_pick(void *p)
{
    thr_arg *a = p;
    for (int i = 0; i < 20000; i++) {
        char key[32];
        int n = snprintf(key, sizeof key, "t:%d", i % 500);
        size_t want = mk_dist_pick(a->d, key, (size_t)n), got = mk_dist_pick(a->d, key, (size_t)n);
        a->mismatches += want != got;
    }
    return NULL;
}

static void test_shared_handle_threads(void)
{
    mk_server_spec s[] = {{"10.0.0.1", 11211, 1, MK_SERVER_TCP}, {"10.0.0.2", 11211, 2, MK_SERVER_TCP}};
    mk_dist *d = mk_dist_create(MK_DIST_KETAMA, s, 2);
    CHECK(d != NULL);
    pthread_t th[4];
    thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg){d, 0};
        CHECK(pthread_create(&th[i], NULL, thr_pick, &a[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_U(a[i].mismatches, 0);
    }
    mk_dist_destroy(d);
}

/* -------------------------------------------------------------- servers */

static void expect_server(const mk_server_list *l, size_t i, const char *host, unsigned port, unsigned weight,
                          mk_server_type type)
{
    CHECK(i < l->n);
    if (i >= l->n)
        return;
    CHECK_MEM(l->servers[i].host, strlen(l->servers[i].host), host);
    CHECK_EQ_U(l->servers[i].port, port);
    CHECK_EQ_U(l->servers[i].weight, weight);
    CHECK_EQ_I(l->servers[i].type, type);
}

static void test_servers_parse_good(void)
{
    mk_server_list l;
    mk_servers_error e;
    CHECK_EQ_I(mk_servers_parse("127.0.0.2", &l, &e), MK_SERVERS_OK);
    CHECK_EQ_U(l.n, 1);
    expect_server(&l, 0, "127.0.0.2", 11211, 1, MK_SERVER_TCP);
    mk_servers_free(&l);
    CHECK(l.servers == NULL && l.n == 0);

    CHECK_EQ_I(mk_servers_parse("  a:1, b:2:3 c:4 5,\t[::1]:11212:7 [fe80::1%eth0] /tmp/x.sock 2\n"
                                "unix:/run/mc.sock,[2001:db8::1]:65535 cache.example.com ",
                                &l, &e),
               MK_SERVERS_OK);
    CHECK_EQ_U(l.n, 9);
    expect_server(&l, 0, "a", 1, 1, MK_SERVER_TCP);
    expect_server(&l, 1, "b", 2, 3, MK_SERVER_TCP);
    expect_server(&l, 2, "c", 4, 5, MK_SERVER_TCP);
    expect_server(&l, 3, "::1", 11212, 7, MK_SERVER_TCP);
    expect_server(&l, 4, "fe80::1%eth0", 11211, 1, MK_SERVER_TCP);
    expect_server(&l, 5, "/tmp/x.sock", 0, 2, MK_SERVER_UNIX);
    expect_server(&l, 6, "/run/mc.sock", 0, 1, MK_SERVER_UNIX);
    expect_server(&l, 7, "2001:db8::1", 65535, 1, MK_SERVER_TCP);
    expect_server(&l, 8, "cache.example.com", 11211, 1, MK_SERVER_TCP);
    mk_servers_free(&l);

    /* hosts that start with digits are hosts, not weights */
    CHECK_EQ_I(mk_servers_parse("10.0.0.1:11211 10.0.0.2 2 1host", &l, &e), MK_SERVERS_OK);
    CHECK_EQ_U(l.n, 3);
    expect_server(&l, 1, "10.0.0.2", 11211, 2, MK_SERVER_TCP);
    expect_server(&l, 2, "1host", 11211, 1, MK_SERVER_TCP);
    mk_servers_free(&l);

    CHECK_EQ_I(mk_servers_parse("h:01:0065535", &l, &e), MK_SERVERS_OK);   /* leading zeros */
    expect_server(&l, 0, "h", 1, 65535, MK_SERVER_TCP);
    mk_servers_free(&l);

    /* the parsed list drives mk_dist directly */
    CHECK_EQ_I(mk_servers_parse("127.0.0.2:11211:1,127.0.0.3:11211:2,127.0.0.4:11211:1", &l, NULL), MK_SERVERS_OK);
    mk_dist *d = mk_dist_create(MK_DIST_KETAMA, l.servers, l.n);
    mk_servers_free(&l);   /* the handle copied what it needs */
    CHECK(d && mk_dist_pick(d, "key0", 4) < 3);
    mk_dist_destroy(d);
    mk_servers_free(NULL);
}

static void test_servers_parse_bad(void)
{
    static const struct {
        const char *text;
        mk_servers_status code;
        size_t offset, entry;
    } cases[] = {
        {"", MK_SERVERS_EEMPTY_LIST, 0, 0},
        {" \t\n", MK_SERVERS_EEMPTY_LIST, 0, 0},
        {":11211", MK_SERVERS_EEMPTY_HOST, 0, 0},
        {"a:1,:2", MK_SERVERS_EEMPTY_HOST, 4, 1},
        {"a,,b", MK_SERVERS_EEMPTY_HOST, 2, 1},
        {",a", MK_SERVERS_EEMPTY_HOST, 0, 0},
        {"a,", MK_SERVERS_EEMPTY_HOST, 1, 1},
        {"[]:11211", MK_SERVERS_EEMPTY_HOST, 0, 0},
        {"unix:", MK_SERVERS_EEMPTY_HOST, 0, 0},
        {"h:0", MK_SERVERS_EBAD_PORT, 2, 0},
        {"h:65536", MK_SERVERS_EBAD_PORT, 2, 0},
        {"h:99999999999999999999", MK_SERVERS_EBAD_PORT, 2, 0},
        {"h:abc", MK_SERVERS_EBAD_PORT, 2, 0},
        {"h:12a", MK_SERVERS_EBAD_PORT, 2, 0},
        {"h:", MK_SERVERS_EBAD_PORT, 2, 0},
        {"h:-1", MK_SERVERS_EBAD_PORT, 2, 0},
        {"a b:1:", MK_SERVERS_EBAD_WEIGHT, 6, 1},
        {"[::1]:0", MK_SERVERS_EBAD_PORT, 6, 0},
        {"h::2", MK_SERVERS_EBAD_PORT, 2, 0},
        {"h:1:0", MK_SERVERS_EBAD_WEIGHT, 4, 0},
        {"h:1:-3", MK_SERVERS_EBAD_WEIGHT, 4, 0},
        {"h:1:x", MK_SERVERS_EBAD_WEIGHT, 4, 0},
        {"h:1:65536", MK_SERVERS_EBAD_WEIGHT, 4, 0},
        {"a:1 b:2 0", MK_SERVERS_EBAD_WEIGHT, 8, 1},
        {"h:1 -2", MK_SERVERS_EBAD_WEIGHT, 4, 0},
        {"h:1 +2", MK_SERVERS_EBAD_WEIGHT, 4, 0},
        {"h:1:2 3", MK_SERVERS_EBAD_WEIGHT, 6, 0},
        {"h:1 2 3", MK_SERVERS_EBAD_WEIGHT, 6, 0},
        {"[::1", MK_SERVERS_EUNTERMINATED_BRACKET, 0, 0},
        {"a [::1:11211", MK_SERVERS_EUNTERMINATED_BRACKET, 2, 1},
        {"[::1]x", MK_SERVERS_EBAD_ENTRY, 5, 0},
        {"::1", MK_SERVERS_EEMPTY_HOST, 0, 0},
        {"fe80::1:11211", MK_SERVERS_EBAD_PORT, 5, 0},
        {"a:1:2:3", MK_SERVERS_EBAD_ENTRY, 0, 0},
        {"a]:1", MK_SERVERS_EBAD_ENTRY, 0, 0},
        {"3", MK_SERVERS_EBAD_ENTRY, 0, 0},
        {"a:1, 3", MK_SERVERS_EBAD_ENTRY, 5, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mk_server_list l = {(mk_server_spec *)&l, 42, NULL};
        mk_servers_error e;
        mk_servers_status rc = mk_servers_parse(cases[i].text, &l, &e);
        if (rc != cases[i].code || e.offset != cases[i].offset || e.entry != cases[i].entry)
            fprintf(stderr, "  \"%s\": got %d (%s) at %zu entry %zu: %s\n", cases[i].text, rc, mk_servers_strerror(rc),
                    e.offset, e.entry, e.message);
        CHECK_EQ_I(rc, cases[i].code);
        CHECK_EQ_I(e.code, cases[i].code);
        CHECK_EQ_U(e.offset, cases[i].offset);
        CHECK_EQ_U(e.entry, cases[i].entry);
        CHECK(e.message[0] != '\0');
        CHECK(l.servers == NULL && l.n == 0);
    }
    /* too long */
    char big[600];
    memset(big, 'h', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mk_server_list l;
    CHECK_EQ_I(mk_servers_parse(big, &l, NULL), MK_SERVERS_ETOO_LONG);
    big[0] = '/';
    CHECK_EQ_I(mk_servers_parse(big, &l, NULL), MK_SERVERS_ETOO_LONG);
    CHECK_EQ_I(mk_servers_parse(NULL, &l, NULL), MK_SERVERS_EINVAL);
    CHECK_EQ_I(mk_servers_parse("a", NULL, NULL), MK_SERVERS_EINVAL);
    CHECK(strcmp(mk_servers_strerror(MK_SERVERS_EBAD_PORT), "bad port") == 0);
    CHECK(strcmp(mk_servers_strerror((mk_servers_status)99), "unknown server-list status") == 0);
}

/* ----------------------------------------------------------------- keys */

/* Every byte value at every position of keys of 1..40 bytes, in a key of bytes that are all fine
 * (the word-at-a-time check must flag exactly what the byte-by-byte rule flags, at the first bad offset). */
static void test_keys_every_byte_every_position(void)
{
    char k[40];
    int wrong = 0;
    for (size_t n = 1; n <= sizeof k; n++) {
        for (size_t at = 0; at < n; at++) {
            for (int b = 0; b < 256; b++) {
                for (size_t i = 0; i < n; i++)
                    k[i] = (char)(i % 2 ? 0x80 + (int)(i * 7 % 128) : 0x21 + (int)(i * 13 % 94)); /* all fine */
                k[at] = (char)b;
                size_t off = 999;
                mk_key_status want = b == ' ' ? MK_KEY_ESPACE : (b < 0x20 || b == 0x7f) ? MK_KEY_ECONTROL : MK_KEY_OK;
                mk_key_status got = mk_key_check(k, n, &off);
                if (got != want || (want != MK_KEY_OK && off != at))
                    wrong++;
            }
        }
    }
    CHECK_EQ_I(wrong, 0);
}

static void test_keys(void)
{
    size_t off = 999;
    CHECK_EQ_I(mk_key_check("key0", 4, &off), MK_KEY_OK);
    CHECK_EQ_U(off, 999);
    CHECK_EQ_I(mk_key_check("cl\xc3\xa9", 4, NULL), MK_KEY_OK);     /* UTF-8 as-is */
    CHECK_EQ_I(mk_key_check("\x80\xff", 2, NULL), MK_KEY_OK);
    CHECK_EQ_I(mk_key_check("!~", 2, NULL), MK_KEY_OK);
    CHECK_EQ_I(mk_key_check("", 0, NULL), MK_KEY_EEMPTY);
    CHECK_EQ_I(mk_key_check(NULL, 0, NULL), MK_KEY_EEMPTY);
    CHECK_EQ_I(mk_key_check(NULL, 3, NULL), MK_KEY_EINVAL);
    char k[252];
    memset(k, 'k', sizeof k);
    CHECK_EQ_I(mk_key_check(k, 250, NULL), MK_KEY_OK);
    CHECK_EQ_I(mk_key_check(k, 251, NULL), MK_KEY_ETOO_LONG);
    k[5] = ' ';
    CHECK_EQ_I(mk_key_check(k, 251, &off), MK_KEY_ETOO_LONG);   /* length first */
    CHECK_EQ_I(mk_key_check(k, 250, &off), MK_KEY_ESPACE);
    CHECK_EQ_U(off, 5);
    CHECK_EQ_I(mk_key_check("a\tb", 3, &off), MK_KEY_ECONTROL);
    CHECK_EQ_U(off, 1);
    CHECK_EQ_I(mk_key_check("ab\r\n", 4, &off), MK_KEY_ECONTROL);
    CHECK_EQ_U(off, 2);
    CHECK_EQ_I(mk_key_check("a\0b", 3, &off), MK_KEY_ECONTROL);
    CHECK_EQ_I(mk_key_check("\x7f", 1, &off), MK_KEY_ECONTROL);
    CHECK_EQ_I(mk_key_check("\x1f", 1, NULL), MK_KEY_ECONTROL);
    CHECK_EQ_I(mk_key_check("\x21", 1, NULL), MK_KEY_OK);
    CHECK(strcmp(mk_key_strerror(MK_KEY_ESPACE), "key contains a space") == 0);
    CHECK(strcmp(mk_key_strerror((mk_key_status)99), "unknown key status") == 0);
}

/* The vector-lane MD5 and mk_dist_pick_many agree with the scalar path for every key length. */
static void test_md5_many_and_pick_many(void)
{
    enum { N = 300 };
    static char buf[N][260];
    const char *keys[N];
    size_t lens[N];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < N; i++) {
        lens[i] = (size_t)(i % 251);   /* 0..250: one block up to 55, two above */
        for (size_t j = 0; j < lens[i]; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i][j] = (char)(33 + x % 94);
        }
        keys[i] = buf[i];
    }
    uint32_t h[N];
    mk_hash_md5_le32_many(keys, lens, N, h);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += h[i] != mk_hash_md5_le32(keys[i], lens[i], 0);
    CHECK_EQ_I(bad, 0);
    mk_hash_md5_le32_many(keys, lens, 3, h);   /* a partial set of lanes */
    CHECK(h[2] == mk_hash_md5_le32(keys[2], lens[2], 0));
    mk_server_list sl;
    CHECK_EQ_I(mk_servers_parse("10.0.0.1:11211,10.0.0.2:11211:2,10.0.0.3:11300,10.0.0.4:1", &sl, NULL),
               MK_SERVERS_OK);
    for (int k = 0; k < MK_DIST_KIND_COUNT_; k++) {
        mk_dist *d = mk_dist_create((mk_dist_kind)k, sl.servers, sl.n);
        CHECK(d != NULL);
        if (d == NULL)
            continue;
        size_t out[N];
        mk_dist_pick_many(d, keys + 1, lens + 1, N - 1, out);   /* keys[0] is empty */
        int diff = 0;
        for (int i = 1; i < N; i++)
            diff += out[i - 1] != mk_dist_pick(d, keys[i], lens[i]);
        CHECK_EQ_I(diff, 0);
        /* the continuum lookup table agrees with the binary search for any hash */
        size_t np;
        const mk_dist_point *pts = mk_dist_points(d, &np);
        if (pts && np) {
            int off = 0;
            for (uint32_t t = 0; t < 200000; t++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                uint32_t hv = t < 4 ? (uint32_t[]){0, 1, UINT32_MAX, pts[0].value}[t]
                              : t < 4 + np ? pts[t - 4].value + (t & 1) : (uint32_t)x;
                off += mk_dist_point_for_hash(d, hv) != mk_dist_continuum_find(pts, np, hv);
            }
            CHECK_EQ_I(off, 0);
        }
        mk_dist_destroy(d);
    }
    mk_servers_free(&sl);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* keep per-case lines in order with failures on stderr */
    RUN(test_hash_reference_values);
    RUN(test_hash_crc_variants);
    RUN(test_hash_sign_extension);
    RUN(test_murmur_streaming);
    RUN(test_continuum_find);
    RUN(test_point_counts);
    RUN(test_dist_create_errors);
    RUN(test_pick_properties);
    RUN(test_shared_handle_threads);
    RUN(test_servers_parse_good);
    RUN(test_servers_parse_bad);
    RUN(test_keys);
    RUN(test_keys_every_byte_every_position);
    RUN(test_md5_many_and_pick_many);
    RUN(test_vectors);
    RUN(test_rehash_vs_python_memcached);
    return check_summary("test_dist");
}
