/* tools/bench/main.c — memkit-bench: command line, threads, live progress line, and the final report (text or JSON, per server too). */
#include "bench.h"
#include "memkit/proto.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_VERSION "0.1.0"

_Atomic int bench_stop;
_Atomic uint64_t bench_t0;
static pthread_barrier_t barrier;

int bench_barrier_wait(void)
{
    return pthread_barrier_wait(&barrier);
}

static const char usage[] =
    "usage: memkit-bench [options]\n"
    "Load generator for memcached-protocol servers (memkitd, memcached), one or a cluster.\n"
    "\n"
    "target:\n"
    "  -s, --servers=LIST         servers, in libmemkit's syntax, comma-separated:    [127.0.0.1:11211]\n"
    "                             host, host:port, host:port:weight, [v6]:port, /unix/path\n"
    "      --distribution=NAME    key placement as the clients do it: ketama, modula, [ketama]\n"
    "                             consistent, rendezvous, ketama_fnv1a\n"
    "  -S, --unix=PATH            connect to one unix socket instead\n"
    "      --protocol=text|meta   classic text protocol, or meta commands (mg/ms)      [text]\n"
    "load shape:\n"
    "  -t, --threads=N            worker threads, one epoll loop each                 [1]\n"
    "  -c, --conns=N              clients per thread (a connection to each server)    [4]\n"
    "  -P, --pipeline=N           requests in flight per client                       [1]\n"
    "      --ratio=GET:SET        mix of get and set requests                         [10:1]\n"
    "      --multiget=N           keys per get request (split by server)              [1]\n"
    "      --idle-conns=N         extra connections to each server, left idle         [0]\n"
    "keys and values:\n"
    "      --key-space=N          distinct keys                                       [100000]\n"
    "      --key-dist=uniform|zipf[:S]  key popularity                                [uniform]\n"
    "      --zipf-skew=S          Zipf exponent (> 0)                                 [0.99]\n"
    "      --key-size=N|MIN-MAX   key length in bytes (1-250)                         [16]\n"
    "      --value-size=N|MIN-MAX value length in bytes (k/m suffixes)                [32]\n"
    "      --expire=S             exptime of sets                                     [0]\n"
    "      --prepopulate          set every key once before measuring\n"
    "length and rate:\n"
    "  -d, --duration=SECONDS     run for this long                                   [10, unless -n]\n"
    "  -n, --requests=N           run this many requests in all (k/m suffixes)\n"
    "  -R, --rate=N               open loop: N requests/s in all, on a fixed timetable;\n"
    "                             latency counts from each request's scheduled time\n"
    "output:\n"
    "  -j, --json                 print the result as one JSON object\n"
    "  -q, --quiet                no progress line\n"
    "      --seed=N               random seed                                         [1]\n"
    "  -V, --version              print the version\n"
    "  -h, --help                 print this help\n";

static _Noreturn void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("memkit-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    exit(2);
}

/* unsigned integer with an optional k/m/g suffix (powers of 1000 unless binary) */
static int parse_u64(const char *s, uint64_t *out, int binary)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    uint64_t mul = 1, base = binary ? 1024 : 1000;
    if (*end == 'k' || *end == 'K')
        mul = base, end++;
    else if (*end == 'm' || *end == 'M')
        mul = base * base, end++;
    else if (*end == 'g' || *end == 'G')
        mul = base * base * base, end++;
    if (*end != 0 || (mul > 1 && v > UINT64_MAX / mul))
        return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

static uint64_t opt_uint(const char *name, const char *s, uint64_t lo, uint64_t hi, int binary)
{
    uint64_t v;
    if (parse_u64(s, &v, binary) != 0 || v < lo || v > hi)
        usage_error("%s: expected an integer from %llu to %llu, got '%s'", name, (unsigned long long)lo,
                    (unsigned long long)hi, s);
    return v;
}

static double opt_pos_double(const char *name, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != 0 || !(v > 0) || !isfinite(v))
        usage_error("%s: expected a positive number, got '%s'", name, s);
    return v;
}

static void opt_range(const char *name, const char *s, uint64_t lo, uint64_t hi, uint64_t *a, uint64_t *b)
{
    char buf[64];
    const char *dash = strchr(s, '-');
    if (dash == NULL) {
        *a = *b = opt_uint(name, s, lo, hi, 1);
        return;
    }
    size_t n = (size_t)(dash - s);
    if (n == 0 || n >= sizeof buf)
        usage_error("%s: expected N or MIN-MAX, got '%s'", name, s);
    memcpy(buf, s, n);
    buf[n] = 0;
    *a = opt_uint(name, buf, lo, hi, 1);
    *b = opt_uint(name, dash + 1, lo, hi, 1);
    if (*a > *b)
        usage_error("%s: MIN is larger than MAX in '%s'", name, s);
}

enum {
    O_PROTOCOL = 256, O_RATIO, O_MULTIGET, O_IDLE, O_KEYSPACE, O_KEYDIST, O_SKEW,
    O_KEYSIZE, O_VALSIZE, O_EXPIRE, O_PREPOP, O_SEED, O_DISTRIBUTION
};

/* The server list (-s) or socket (-S), once every option is read: --distribution may come after it. */
static void make_servers(bench_cfg *c, const char *list, const char *unix_path)
{
    char err[512];
    if (list && unix_path)
        usage_error("--servers and --unix are exclusive");
    if (unix_path ? servers_from_unix(c, unix_path, err, sizeof err) != 0
                  : servers_from_list(c, list ? list : "127.0.0.1:11211", err, sizeof err) != 0)
        usage_error("%s: %s", unix_path ? "--unix" : "--servers", err);
}

static void parse_args(int argc, char **argv, bench_cfg *c, int *json, int *quiet)
{
    static const struct option longs[] = {
        {"servers", required_argument, 0, 's'},   {"unix", required_argument, 0, 'S'},
        {"distribution", required_argument, 0, O_DISTRIBUTION}, {"protocol", required_argument, 0, O_PROTOCOL},
        {"threads", required_argument, 0, 't'},   {"conns", required_argument, 0, 'c'},
        {"pipeline", required_argument, 0, 'P'},  {"ratio", required_argument, 0, O_RATIO},
        {"multiget", required_argument, 0, O_MULTIGET}, {"idle-conns", required_argument, 0, O_IDLE},
        {"key-space", required_argument, 0, O_KEYSPACE}, {"key-dist", required_argument, 0, O_KEYDIST},
        {"zipf-skew", required_argument, 0, O_SKEW}, {"key-size", required_argument, 0, O_KEYSIZE},
        {"value-size", required_argument, 0, O_VALSIZE}, {"expire", required_argument, 0, O_EXPIRE},
        {"prepopulate", no_argument, 0, O_PREPOP},
        {"duration", required_argument, 0, 'd'},  {"requests", required_argument, 0, 'n'},
        {"rate", required_argument, 0, 'R'},      {"json", no_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},           {"seed", required_argument, 0, O_SEED},
        {"version", no_argument, 0, 'V'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *list = NULL, *unix_path = NULL;
    uint64_t a, b;
    opterr = 0;
    for (;;) {
        int prev = optind;
        int o = getopt_long(argc, argv, ":s:S:t:c:P:d:n:R:jqVh", longs, NULL);
        if (o == -1)
            break;
        const char *bad = argv[optind - 1 > prev ? optind - 1 : prev];
        switch (o) {
        case 's': list = optarg; break;
        case 'S': unix_path = optarg; break;
        case O_DISTRIBUTION:
            if (mk_distribution_parse(optarg, &c->distribution) != 0)
                usage_error("--distribution: expected ketama, modula, consistent, rendezvous or ketama_fnv1a, got '%s'",
                            optarg);
            c->distribution_name = optarg;
            break;
        case O_PROTOCOL:
            if (strcmp(optarg, "text") == 0 || strcmp(optarg, "ascii") == 0)
                c->proto = PROTO_TEXT;
            else if (strcmp(optarg, "meta") == 0)
                c->proto = PROTO_META;
            else
                usage_error("--protocol: expected text or meta, got '%s'", optarg);
            break;
        case 't': c->threads = (int)opt_uint("--threads", optarg, 1, 1024, 0); break;
        case 'c': c->conns = (int)opt_uint("--conns", optarg, 1, 100000, 0); break;
        case 'P': c->pipeline = (int)opt_uint("--pipeline", optarg, 1, 4096, 0); break;
        case O_RATIO: {
            const char *colon = strchr(optarg, ':');
            char g[32];
            if (colon == NULL || (size_t)(colon - optarg) >= sizeof g || colon == optarg)
                usage_error("--ratio: expected GET:SET, got '%s'", optarg);
            memcpy(g, optarg, (size_t)(colon - optarg));
            g[colon - optarg] = 0;
            c->ratio_get = (unsigned)opt_uint("--ratio: GET", g, 0, 1000000, 0);
            c->ratio_set = (unsigned)opt_uint("--ratio: SET", colon + 1, 0, 1000000, 0);
            if (c->ratio_get + c->ratio_set == 0)
                usage_error("--ratio: GET and SET cannot both be 0");
            break;
        }
        case O_MULTIGET: c->multiget = (int)opt_uint("--multiget", optarg, 1, 10000, 0); break;
        case O_IDLE: c->idle_conns = (int)opt_uint("--idle-conns", optarg, 0, 100000, 0); break;
        case O_KEYSPACE: c->key_space = opt_uint("--key-space", optarg, 1, 1000000000000ull, 0); break;
        case O_KEYDIST:
            if (strcmp(optarg, "uniform") == 0)
                c->dist = DIST_UNIFORM;
            else if (strcmp(optarg, "zipf") == 0)
                c->dist = DIST_ZIPF;
            else if (strncmp(optarg, "zipf:", 5) == 0) {
                c->dist = DIST_ZIPF;
                c->zipf_skew = opt_pos_double("--key-dist: zipf skew", optarg + 5);
            } else
                usage_error("--key-dist: expected uniform, zipf or zipf:SKEW, got '%s'", optarg);
            break;
        case O_SKEW: c->zipf_skew = opt_pos_double("--zipf-skew", optarg); break;
        case O_KEYSIZE:
            opt_range("--key-size", optarg, 1, MK_KEY_MAX, &a, &b);
            c->key_min = (unsigned)a, c->key_max = (unsigned)b;
            break;
        case O_VALSIZE: opt_range("--value-size", optarg, 0, 1ull << 30, &c->val_min, &c->val_max); break;
        case O_EXPIRE: c->expire = (uint32_t)opt_uint("--expire", optarg, 0, 0x7fffffff, 0); break;
        case O_PREPOP: c->prepopulate = true; break;
        case 'd': c->duration = opt_pos_double("--duration", optarg); break;
        case 'n': c->requests = opt_uint("--requests", optarg, 1, UINT64_MAX / 2, 0); break;
        case 'R': c->rate = opt_pos_double("--rate", optarg); break;
        case O_SEED: c->seed = opt_uint("--seed", optarg, 0, UINT64_MAX / 2, 0); break;
        case 'j': *json = 1; break;
        case 'q': *quiet = 1; break;
        case 'V': printf("memkit-bench %s\n", BENCH_VERSION); exit(0);
        case 'h': fputs(usage, stdout); exit(0);
        case ':': usage_error("option '%s' needs a value", bad);
        default: usage_error("unknown option '%s'", bad);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    unsigned need = key_min_len(c->key_space);
    if (c->key_min < need)
        usage_error("--key-size: keys of %u bytes cannot name %llu distinct keys (at least %u needed)", c->key_min,
                    (unsigned long long)c->key_space, need);
    if ((uint64_t)c->multiget * (c->key_max + 1) + 6 > MK_GET_LINE_MAX)
        usage_error("--multiget: %d keys of up to %u bytes make a get line over %u bytes", c->multiget, c->key_max,
                    MK_GET_LINE_MAX);
    if (c->multiget > 1 && c->ratio_get == 0)
        usage_error("--multiget: no gets with --ratio=0:%u", c->ratio_set);
    if (c->duration == 0 && c->requests == 0)
        c->duration = 10;
    if (c->rate > 0 && c->rate < c->threads)
        usage_error("--rate: %g requests/s is less than one per thread (%d threads)", c->rate, c->threads);
    make_servers(c, list, unix_path); /* last: the other options are checked before any name is resolved */
}

/* --protocol=meta: every server must speak it. Returns 0, or -1 with the message printed. */
static int probe_servers(const bench_cfg *c)
{
    char err[700];
    for (int i = 0; i < c->nsrv; i++) {
        if (bench_meta_probe(&c->srv[i], err, sizeof err) != 0) {
            fprintf(stderr, "memkit-bench: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static void close_idle(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
}

/* --idle-conns: n connections, spread over the servers in turn, open until the end. NULL: the
 * message is printed. */
static int *open_idle(const bench_cfg *c, int n)
{
    char err[700];
    int *fds = calloc((size_t)n + 1, sizeof *fds);
    if (fds == NULL) {
        fprintf(stderr, "memkit-bench: out of memory\n");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        fds[i] = bench_connect(&c->srv[i % c->nsrv], err, sizeof err);
        if (fds[i] < 0) {
            fprintf(stderr, "memkit-bench: idle connection %d: %s\n", i / c->nsrv + 1, err);
            close_idle(fds, i);
            return NULL;
        }
    }
    return fds;
}

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store(&bench_stop, 1);
}

static void snapshot(worker *ws, int n, uint64_t *done, uint64_t *hits, uint64_t *keys)
{
    *done = *hits = *keys = 0;
    for (int i = 0; i < n; i++) {
        *done += atomic_load_explicit(&ws[i].live_done, memory_order_relaxed);
        *hits += atomic_load_explicit(&ws[i].live_hits, memory_order_relaxed);
        *keys += atomic_load_explicit(&ws[i].live_keys, memory_order_relaxed);
    }
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

/* A JSON string: '"' and '\\' escaped, control bytes as \\u00XX. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void json_servers(const bench_cfg *c, const srv_stats *ss)
{
    printf("\"servers\":[");
    for (int i = 0; i < c->nsrv; i++) {
        printf("%s{\"server\":", i ? "," : "");
        json_str(c->srv[i].name);
        printf(",\"weight\":%u,\"requests\":%llu,\"get_keys\":%llu,\"hits\":%llu,\"sets\":%llu}", c->srv[i].weight,
               (unsigned long long)ss[i].requests, (unsigned long long)ss[i].get_keys,
               (unsigned long long)ss[i].hits, (unsigned long long)ss[i].sets);
    }
    printf("],");
}

/* The header's target: the servers, and how keys are placed when there are several. */
static void text_target(const bench_cfg *c)
{
    for (int i = 0; i < c->nsrv; i++)
        printf("%s%s", i ? "," : "", c->srv[i].name);
    const char *proto = c->proto == PROTO_META ? "meta" : "text";
    if (c->nsrv > 1)
        printf(" (%s, %s)", c->distribution_name, proto);
    else
        printf(" (%s)", proto);
}

static int width(uint64_t v)
{
    return snprintf(NULL, 0, "%llu", (unsigned long long)v);
}

/* One line per server: the parts it answered, the keys asked of it, its hits, its share of the keys. */
static void text_servers(const bench_cfg *c, const srv_stats *ss)
{
    uint64_t keys = 0;
    int wn = 0, wr = 0, wk = 0;
    for (int i = 0; i < c->nsrv; i++) {
        keys += ss[i].get_keys;
        if ((int)strlen(c->srv[i].name) > wn)
            wn = (int)strlen(c->srv[i].name);
        if (width(ss[i].requests) > wr)
            wr = width(ss[i].requests);
        if (width(ss[i].get_keys) > wk)
            wk = width(ss[i].get_keys);
    }
    for (int i = 0; i < c->nsrv; i++)
        printf("server     %-*s  requests %*llu  keys %*llu  hits %*llu  %5.1f%% of keys\n", wn, c->srv[i].name, wr,
               (unsigned long long)ss[i].requests, wk, (unsigned long long)ss[i].get_keys, wk,
               (unsigned long long)ss[i].hits, keys ? 100.0 * (double)ss[i].get_keys / (double)keys : 0.0);
}

static void human(double v, char *out, size_t n)
{
    if (v >= 1e6)
        snprintf(out, n, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(out, n, "%.1fk", v / 1e3);
    else
        snprintf(out, n, "%.0f", v);
}

int main(int argc, char **argv)
{
    bench_cfg cfg = {
        .threads = 1, .conns = 4, .pipeline = 1, .ratio_get = 10, .ratio_set = 1, .multiget = 1,
        .dist = DIST_UNIFORM, .zipf_skew = 0.99, .key_min = 16, .key_max = 16, .val_min = 32, .val_max = 32,
        .key_space = 100000, .seed = 1, .proto = PROTO_TEXT,
        .distribution = MK_DISTRIBUTION_KETAMA, .distribution_name = "ketama", /* libmemkit's default */
    };
    int json = 0, quiet = 0;
    parse_args(argc, argv, &cfg, &json, &quiet);
    int tty = isatty(2) && !quiet;

    /* room for every connection */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (value_data_init(cfg.val_max) != 0) {
        fprintf(stderr, "memkit-bench: out of memory\n");
        return 1;
    }
    int nidle = cfg.idle_conns * cfg.nsrv, *idle = NULL;
    if ((cfg.proto == PROTO_META && probe_servers(&cfg) != 0) || (idle = open_idle(&cfg, nidle)) == NULL) {
        servers_free(&cfg);
        value_data_free();
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int T = cfg.threads;
    worker *ws = calloc((size_t)T, sizeof *ws);
    pthread_t *tids = calloc((size_t)T, sizeof *tids);
    if (ws == NULL || tids == NULL) {
        fprintf(stderr, "memkit-bench: out of memory\n");
        return 1;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)T + 1);
    for (int i = 0; i < T; i++) {
        ws[i].id = i;
        ws[i].cfg = &cfg;
        ws[i].quota = cfg.requests ? cfg.requests / (uint64_t)T + ((uint64_t)i < cfg.requests % (uint64_t)T) : 0;
        ws[i].rate = cfg.rate / T;
        ws[i].srv = calloc((size_t)cfg.nsrv, sizeof *ws[i].srv);
        hist_init(&ws[i].lat);
        if (ws[i].srv == NULL) {
            fprintf(stderr, "memkit-bench: out of memory\n");
            return 1;
        }
        if (pthread_create(&tids[i], NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "memkit-bench: cannot start thread: %s\n", strerror(errno));
            return 1;
        }
    }
    if (tty && cfg.prepopulate)
        fprintf(stderr, "\rprepopulating %llu keys...", (unsigned long long)cfg.key_space);
    /* every worker waits here until its connections are up and its keys are set */
    bench_barrier_wait();
    atomic_store(&bench_t0, now_ns()); /* every thread starts on the same timetable */
    bench_barrier_wait();
    uint64_t t0 = atomic_load(&bench_t0);
    uint64_t last_t = t0, last_done = 0, t_print = t0;
    for (;;) {
        int all = 1;
        for (int i = 0; i < T; i++)
            all &= atomic_load(&ws[i].finished);
        if (all)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        uint64_t now = now_ns();
        if (tty && now - t_print >= 500000000ull) {
            uint64_t done, hits, keys;
            snapshot(ws, T, &done, &hits, &keys);
            double el = (double)(now - t0) / 1e9, cur = (double)(done - last_done) / ((double)(now - last_t) / 1e9);
            char a[32], b[32], c[32];
            human((double)done, a, sizeof a);
            human(cur, b, sizeof b);
            human(el > 0 ? (double)done / el : 0, c, sizeof c);
            char goal[48] = "";
            if (cfg.duration > 0)
                snprintf(goal, sizeof goal, " / %.0fs", cfg.duration);
            fprintf(stderr, "\r\033[K[%6.1fs%s] %s requests  %s req/s now  %s req/s avg  hits %.1f%%", el, goal, a, b,
                    c, keys ? 100.0 * (double)hits / (double)keys : 0.0);
            if (cfg.requests)
                fprintf(stderr, "  %.0f%% done", 100.0 * (double)done / (double)cfg.requests);
            fflush(stderr);
            last_t = now;
            last_done = done;
            t_print = now;
        }
    }
    if (tty)
        fprintf(stderr, "\r\033[K");
    int fatal = 0;
    wstats tot;
    memset(&tot, 0, sizeof tot);
    hist *lat = malloc(sizeof *lat);
    srv_stats *stot = calloc((size_t)cfg.nsrv, sizeof *stot);
    if (lat == NULL || stot == NULL) {
        fprintf(stderr, "memkit-bench: out of memory\n");
        return 1;
    }
    hist_init(lat);
    uint64_t t_end = t0;
    for (int i = 0; i < T; i++) {
        pthread_join(tids[i], NULL);
        wstats *s = &ws[i].st;
        fatal |= ws[i].fatal;
        tot.requests += s->requests, tot.gets += s->gets, tot.sets += s->sets, tot.get_keys += s->get_keys;
        tot.hits += s->hits, tot.misses += s->misses, tot.errors += s->errors;
        tot.bytes_in += s->bytes_in, tot.bytes_out += s->bytes_out, tot.prepopulated += s->prepopulated;
        if (s->sched_lag_max > tot.sched_lag_max)
            tot.sched_lag_max = s->sched_lag_max;
        if (s->last_error[0])
            memcpy(tot.last_error, s->last_error, sizeof tot.last_error);
        if (s->t_last > t_end)
            t_end = s->t_last;
        hist_merge(lat, &ws[i].lat);
        for (int j = 0; j < cfg.nsrv; j++) {
            stot[j].requests += ws[i].srv[j].requests, stot[j].get_keys += ws[i].srv[j].get_keys;
            stot[j].hits += ws[i].srv[j].hits, stot[j].sets += ws[i].srv[j].sets;
        }
        free(ws[i].srv);
    }
    close_idle(idle, nidle);
    free(ws);
    free(tids);
    pthread_barrier_destroy(&barrier);
    if (fatal) {
        free(lat);
        free(stot);
        servers_free(&cfg);
        return 1;
    }
    double dur = (double)(t_end - t0) / 1e9;
    double ops = dur > 0 ? (double)tot.requests / dur : 0;
    static const double pcts[] = {50, 90, 99, 99.9};
    static const char *pnames[] = {"p50", "p90", "p99", "p99_9"};
    uint64_t pv[4];
    for (int i = 0; i < 4; i++)
        pv[i] = hist_percentile(lat, pcts[i]);
    double mean = lat->count ? lat->sum / (double)lat->count : 0;
    uint64_t lmin = lat->count ? lat->min : 0;

    if (json) {
        printf("{\"version\":\"%s\",\"config\":{\"server\":", BENCH_VERSION);
        json_str(cfg.server);
        printf(",\"distribution\":\"%s\",\"protocol\":\"%s\",\"threads\":%d,\"conns_per_thread\":%d,\"pipeline\":%d,\"ratio_get\":%u,\"ratio_set\":%u,\"multiget\":%d,"
               "\"key_dist\":\"%s\",\"zipf_skew\":%g,\"key_size_min\":%u,\"key_size_max\":%u,"
               "\"value_size_min\":%llu,\"value_size_max\":%llu,\"key_space\":%llu,\"prepopulate\":%s,"
               "\"duration_s\":%g,\"requests\":%llu,\"rate\":%g,\"idle_conns\":%d,\"expire\":%u,\"seed\":%llu},",
               cfg.distribution_name, cfg.proto == PROTO_META ? "meta" : "text", cfg.threads, cfg.conns,
               cfg.pipeline, cfg.ratio_get, cfg.ratio_set, cfg.multiget, cfg.dist == DIST_ZIPF ? "zipf" : "uniform",
               cfg.zipf_skew, cfg.key_min, cfg.key_max, (unsigned long long)cfg.val_min,
               (unsigned long long)cfg.val_max, (unsigned long long)cfg.key_space, cfg.prepopulate ? "true" : "false",
               cfg.duration, (unsigned long long)cfg.requests, cfg.rate, cfg.idle_conns, cfg.expire,
               (unsigned long long)cfg.seed);
        printf("\"duration_s\":%.6f,\"requests\":%llu,\"ops_per_s\":%.1f,\"gets\":%llu,\"sets\":%llu,"
               "\"get_keys\":%llu,\"keys_per_s\":%.1f,\"hits\":%llu,\"misses\":%llu,\"errors\":%llu,"
               "\"prepopulated\":%llu,\"bytes_sent\":%llu,\"bytes_received\":%llu,",
               dur, (unsigned long long)tot.requests, ops, (unsigned long long)tot.gets, (unsigned long long)tot.sets,
               (unsigned long long)tot.get_keys, dur > 0 ? (double)tot.get_keys / dur : 0,
               (unsigned long long)tot.hits, (unsigned long long)tot.misses, (unsigned long long)tot.errors,
               (unsigned long long)tot.prepopulated, (unsigned long long)tot.bytes_out,
               (unsigned long long)tot.bytes_in);
        json_servers(&cfg, stot);
        if (cfg.rate > 0)
            printf("\"rate\":{\"target\":%g,\"achieved\":%.1f,\"send_lag_max_us\":%.1f},", cfg.rate, ops,
                   us(tot.sched_lag_max));
        printf("\"latency_us\":{\"count\":%llu,\"min\":%.1f,\"mean\":%.1f", (unsigned long long)lat->count,
               us(lmin), mean / 1000.0);
        for (int i = 0; i < 4; i++)
            printf(",\"%s\":%.1f", pnames[i], us(pv[i]));
        printf(",\"max\":%.1f}", us(lat->max));
        if (tot.last_error[0]) {
            printf(",\"last_error\":");
            json_str(tot.last_error);
        }
        printf("}\n");
    } else {
        char mix[64];
        snprintf(mix, sizeof mix, "get:set %u:%u", cfg.ratio_get, cfg.ratio_set);
        printf("memkit-bench %s  ", BENCH_VERSION);
        text_target(&cfg);
        printf("  %d thread%s x %d %s%s, pipeline %d, %s, multiget %d, %s keys%s\n", T, T == 1 ? "" : "s", cfg.conns,
               cfg.nsrv > 1 ? "client" : "conn", cfg.conns == 1 ? "" : "s", cfg.pipeline, mix, cfg.multiget,
               cfg.dist == DIST_ZIPF ? "zipf" : "uniform", cfg.rate > 0 ? ", fixed rate" : "");
        printf("requests   %llu in %.3f s: %.0f req/s  (gets %llu, sets %llu)\n", (unsigned long long)tot.requests,
               dur, ops, (unsigned long long)tot.gets, (unsigned long long)tot.sets);
        if (cfg.rate > 0)
            printf("rate       target %.0f req/s, achieved %.0f req/s, largest send delay %.1f us\n", cfg.rate, ops,
                   us(tot.sched_lag_max));
        printf("keys       %llu asked: hits %llu, misses %llu (%.1f%% hits), %.0f keys/s\n",
               (unsigned long long)tot.get_keys, (unsigned long long)tot.hits, (unsigned long long)tot.misses,
               tot.get_keys ? 100.0 * (double)tot.hits / (double)tot.get_keys : 0.0,
               dur > 0 ? (double)tot.get_keys / dur : 0);
        if (cfg.nsrv > 1)
            text_servers(&cfg, stot);
        if (tot.errors)
            printf("errors     %llu (last: %s)\n", (unsigned long long)tot.errors, tot.last_error);
        printf("latency us p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f, min %.1f)\n", us(pv[0]),
               us(pv[1]), us(pv[2]), us(pv[3]), us(lat->max), mean / 1000.0, us(lmin));
        printf("traffic    %.1f MB sent, %.1f MB received\n", (double)tot.bytes_out / 1e6,
               (double)tot.bytes_in / 1e6);
    }
    free(lat);
    free(stot);
    servers_free(&cfg);
    value_data_free();
    if (tot.errors && tot.errors == tot.requests) {
        fprintf(stderr, "memkit-bench: every request got an error reply (last: %s)\n", tot.last_error);
        return 1;
    }
    return 0;
}
