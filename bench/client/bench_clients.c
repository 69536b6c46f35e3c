/* bench/client/bench_clients.c — one benchmark run (libmemkit, libmemcached or the syscall floor: get/set/100-key mget, N threads); bench/client_compare.sh drives it. */
#include "memkit.h"

#include <libmemcached/memcached.h>
#include <libmemcachedutil-1.0/util.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * Usage:
 *   bench_clients --servers=127.0.0.1:P1,127.0.0.1:P2,... --lib=memkit|memkit-pipe|libmemcached|floor
 *                 --test=get|set|mget|populate [--threads=N] [--seconds=S] [--keys=N]
 *                 [--value-size=B] [--mget-keys=100] [--floor-no-hash]
 *
 * memkit-pipe is libmemkit with auto-pipelining (mk_options.pipeline).
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
 *
 * --lib=floor is not a client library but the least any client must do: each
 * thread owns one blocking TCP connection per server, request bytes are built
 * before the clock starts (per key; a multi-get's per-server requests are
 * assembled with memcpy), and a reply is read until it ends in END\r\n (get) or
 * \r\n (set) and checked only by its length. The same syscalls libmemkit makes
 * (one send per server, one poll, one receive per server for a multi-get; send
 * + blocking receive for a single call), with no parsing or copying of values.
 * It does compute every key's ketama placement per call (libmemkit's
 * mk_servers_for_keys: one MD5 per key), because placing keys where
 * libmemcached does is required of any client here; --floor-no-hash looks
 * placements up in a table made before the clock starts instead, the floor of
 * a client that places keys for free. floor/libmemcached is the most any
 * client can gain over libmemcached on this machine.
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
static bool g_floor_hash = true;   /* --floor-no-hash: placements from a table */

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

/* ------------------------------------------------------------ syscall floor */

static int g_nservers;
static struct sockaddr_storage g_addr[MAX_SERVERS];
static socklen_t g_addrlen[MAX_SERVERS];
static int *g_place;          /* key index -> server index (libmemkit's ketama, looked up once) */
static char **g_req;          /* key index -> "get KEY\r\n" or the whole "set ..." request */
static size_t *g_reqlen;
static size_t *g_replen;      /* key index -> bytes of its VALUE block in a get reply */

#define FLOOR_BUF (1u << 18)

typedef struct floor_conn {
    int fd[MAX_SERVERS];
    const char **keys;        /* a multi-get's keys, their lengths and servers */
    size_t *nkeys;
    int *place;
    char *out[MAX_SERVERS];   /* a multi-get's request per server */
    size_t nout[MAX_SERVERS], want[MAX_SERVERS];
    char *in;
} floor_conn;

static int floor_setup(void)
{
    char list[sizeof g_servers];
    snprintf(list, sizeof list, "%s", g_servers);
    for (char *save = NULL, *hp = strtok_r(list, ",", &save); hp; hp = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(hp, ':');
        if (colon == NULL || g_nservers == MAX_SERVERS)
            return -1;
        *colon = '\0';
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
        if (getaddrinfo(hp, colon + 1, &hints, &ai) != 0)
            return -1;
        memcpy(&g_addr[g_nservers], ai->ai_addr, ai->ai_addrlen);
        g_addrlen[g_nservers++] = ai->ai_addrlen;
        freeaddrinfo(ai);
    }
    g_place = calloc((size_t)g_nkeys, sizeof *g_place);
    g_req = calloc((size_t)g_nkeys, sizeof *g_req);
    g_reqlen = calloc((size_t)g_nkeys, sizeof *g_reqlen);
    g_replen = calloc((size_t)g_nkeys, sizeof *g_replen);
    bool set = strcmp(g_test, "set") == 0;
    for (int k = 0; k < g_nkeys; k++) {
        g_place[k] = mk_server_for_key(g_mk, g_keys[k], g_keylens[k]);
        if (g_place[k] < 0 || g_place[k] >= g_nservers)
            return -1;
        char hdr[128];
        int n = set ? snprintf(hdr, sizeof hdr, "set %s 0 0 %d\r\n", g_keys[k], g_vsize)
                    : snprintf(hdr, sizeof hdr, "get %s\r\n", g_keys[k]);
        g_reqlen[k] = (size_t)n + (set ? (size_t)g_vsize + 2 : 0);
        g_req[k] = malloc(g_reqlen[k]);
        memcpy(g_req[k], hdr, (size_t)n);
        if (set) {
            memcpy(g_req[k] + n, g_value, (size_t)g_vsize);
            memcpy(g_req[k] + n + g_vsize, "\r\n", 2);
        }
        g_replen[k] = (size_t)snprintf(hdr, sizeof hdr, "VALUE %s 0 %d\r\n", g_keys[k], g_vsize) +
                      (size_t)g_vsize + 2;
    }
    return 0;
}

static int floor_connect(floor_conn *c)
{
    c->in = malloc(FLOOR_BUF);
    c->keys = calloc((size_t)g_mget_keys, sizeof *c->keys);
    c->nkeys = calloc((size_t)g_mget_keys, sizeof *c->nkeys);
    c->place = calloc((size_t)g_mget_keys, sizeof *c->place);
    for (int s = 0; s < g_nservers; s++) {
        c->fd[s] = socket(g_addr[s].ss_family, SOCK_STREAM, 0);
        int one = 1;
        struct timeval tv = {1, 0};
        if (c->fd[s] < 0 || connect(c->fd[s], (struct sockaddr *)&g_addr[s], g_addrlen[s]) != 0 ||
            setsockopt(c->fd[s], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
            setsockopt(c->fd[s], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
            return -1;
        c->out[s] = malloc(FLOOR_BUF);
    }
    return 0;
}

static void floor_close(floor_conn *c)
{
    for (int s = 0; s < g_nservers; s++) {
        close(c->fd[s]);
        free(c->out[s]);
    }
    free(c->in);
    free(c->keys);
    free(c->nkeys);
    free(c->place);
}

/* Reads one reply on fd into c->in until it ends with tail; returns its length or -1. */
static ssize_t floor_read(floor_conn *c, int fd, const char *tail, size_t ntail, int flags)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, c->in + got, FLOOR_BUF - got, flags);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        if (got >= ntail && memcmp(c->in + got - ntail, tail, ntail) == 0)
            return (ssize_t)got;
        if (got == FLOOR_BUF)
            return -1;
    }
}

static void floor_one(worker *w, floor_conn *c)
{
    uint32_t k = rnd(w) % (uint32_t)g_nkeys;
    if (strcmp(g_test, "get") == 0 || strcmp(g_test, "set") == 0) {
        bool get = g_test[0] == 'g';
        int s = g_floor_hash ? mk_server_for_key(g_mk, g_keys[k], g_keylens[k]) : g_place[k];
        if (s != g_place[k]) {
            w->errors++;
            return;
        }
        if (send(c->fd[s], g_req[k], g_reqlen[k], MSG_NOSIGNAL) != (ssize_t)g_reqlen[k]) {
            w->errors++;
            return;
        }
        ssize_t n = get ? floor_read(c, c->fd[s], "END\r\n", 5, 0) : floor_read(c, c->fd[s], "\r\n", 2, 0);
        if (n < 0 || (!get && n != 8))
            w->errors++;
        else if (get && (size_t)n != g_replen[k] + 5)
            w->misses++;
        return;
    }
    /* mget: the same keys libmemkit and libmemcached ask for, one request per server */
    for (int i = 0; i < g_nservers; i++) {
        memcpy(c->out[i], "get", 3);
        c->nout[i] = 3;
        c->want[i] = 5;
    }
    for (int i = 0; i < g_mget_keys; i++) {
        uint32_t j = (k + (uint32_t)i * 7919u) % (uint32_t)g_nkeys;
        c->keys[i] = g_keys[j];
        c->nkeys[i] = g_keylens[j];
        c->place[i] = g_place[j];
    }
    if (g_floor_hash && mk_servers_for_keys(g_mk, c->keys, c->nkeys, (size_t)g_mget_keys, c->place) != 0) {
        w->errors++;
        return;
    }
    for (int i = 0; i < g_mget_keys; i++) {
        uint32_t j = (k + (uint32_t)i * 7919u) % (uint32_t)g_nkeys;
        int s = c->place[i];
        if (s != g_place[j]) {
            w->errors++;
            return;
        }
        c->out[s][c->nout[s]++] = ' ';
        memcpy(c->out[s] + c->nout[s], g_keys[j], g_keylens[j]);
        c->nout[s] += g_keylens[j];
        c->want[s] += g_replen[j];
    }
    struct pollfd pf[MAX_SERVERS];
    int npf = 0;
    for (int i = 0; i < g_nservers; i++) {
        if (c->nout[i] == 3)
            continue;
        memcpy(c->out[i] + c->nout[i], "\r\n", 2);
        if (send(c->fd[i], c->out[i], c->nout[i] + 2, MSG_NOSIGNAL) != (ssize_t)(c->nout[i] + 2)) {
            w->errors++;
            return;
        }
        pf[npf++] = (struct pollfd){.fd = c->fd[i], .events = POLLIN};
    }
    size_t got = 0, want = 0;
    for (int left = npf; left > 0;) {
        if (poll(pf, (nfds_t)npf, 1000) <= 0) {
            w->errors++;
            return;
        }
        for (int i = 0; i < npf; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & POLLIN))
                continue;
            int srv = 0;
            while (c->fd[srv] != pf[i].fd)
                srv++;
            /* a reply that arrives in pieces is read to its end before the next server's */
            ssize_t n = floor_read(c, pf[i].fd, "END\r\n", 5, 0);
            if (n < 0) {
                w->errors++;
                return;
            }
            got += (size_t)n;
            want += c->want[srv];
            pf[i].fd = -pf[i].fd - 1;
            left--;
        }
    }
    if (got != want)
        w->misses++;
}

/* -------------------------------------------------------------------- driver */

static void *run_worker(void *arg)
{
    worker *w = arg;
    const char **mkeys = calloc((size_t)g_mget_keys, sizeof *mkeys);
    size_t *mlens = calloc((size_t)g_mget_keys, sizeof *mlens);
    bool memkit = strncmp(g_lib, "memkit", 6) == 0, floor = strcmp(g_lib, "floor") == 0;
    floor_conn fc;
    if (floor && floor_connect(&fc) != 0) {
        fprintf(stderr, "bench_clients: floor: cannot connect\n");
        exit(1);
    }
    while (atomic_load(&g_phase) == 0)
        ;
    int ph;
    while ((ph = atomic_load_explicit(&g_phase, memory_order_relaxed)) != 3) {
        uint64_t t0 = now_ns(), e0 = w->errors, m0 = w->misses;
        if (memkit)
            mk_one(w, mkeys, mlens);
        else if (floor)
            floor_one(w, &fc);
        else
            lm_one(w, mkeys, mlens);
        if (ph == 2) {   /* only ops started in the measured interval count */
            record(w, now_ns() - t0);
            w->ops++;
        } else {         /* and only their errors and misses */
            w->errors = e0;
            w->misses = m0;
        }
    }
    if (floor)
        floor_close(&fc);
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
        else if (strcmp(argv[i], "--floor-no-hash") == 0)
            g_floor_hash = false;
        else {
            fprintf(stderr, "bench_clients: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (g_threads < 1 || g_nkeys < 1 || g_vsize < 1 || g_mget_keys < 1 || g_seconds <= 0 ||
        (strcmp(g_lib, "memkit") && strcmp(g_lib, "memkit-pipe") && strcmp(g_lib, "libmemcached") &&
         strcmp(g_lib, "floor")) ||
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

    bool need_mk = strcmp(g_lib, "libmemcached") != 0 || strcmp(g_test, "populate") == 0;
    bool need_lm = strcmp(g_lib, "libmemcached") == 0 || strcmp(g_test, "populate") == 0;
    if (need_mk) {
        mk_options opt;
        mk_options_init(&opt);
        opt.distribution = MK_DISTRIBUTION_KETAMA;
        opt.pool_size = g_threads > 8 ? g_threads : 8;
        opt.pipeline = strcmp(g_lib, "memkit-pipe") == 0;   /* auto-pipelining: threads share connections */
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

    if (strcmp(g_lib, "floor") == 0 && floor_setup() != 0) {
        fprintf(stderr, "bench_clients: floor: cannot use server list %s\n", g_servers);
        return 1;
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
    if (g_req)
        for (int k = 0; k < g_nkeys; k++)
            free(g_req[k]);
    free(g_req);
    free(g_reqlen);
    free(g_replen);
    free(g_place);
    free(g_value);
    free(g_keys);
    free(g_keylens);
    return status;
}
