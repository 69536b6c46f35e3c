/* tools/memkit/top.c — memkit top: every server's stats sampled each interval, shown as per-second rates. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { F_HITS, F_MISSES, F_SETS, F_EVICT, F_TCONN, F_CONNS, F_READ, F_WRITTEN, F_BYTES, F_ITEMS, NF };
static const char *const stat_names[NF] = {
    "get_hits", "get_misses", "cmd_set", "evictions", "total_connections",
    "curr_connections", "bytes_read", "bytes_written", "bytes", "curr_items",
};

typedef struct sample {
    bool ok;
    uint64_t v[NF];
} sample;

static void on_stat(void *ctx, const char *name, size_t nn, const char *val, size_t nv)
{
    sample *s = ctx;
    for (int f = 0; f < NF; f++) {
        if (strlen(stat_names[f]) == nn && memcmp(stat_names[f], name, nn) == 0) {
            char tmp[32];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(nv < 31 ? nv : 31), val);
            s->v[f] = strtoull(tmp, NULL, 10);
        }
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void take(mk_client *c, sample *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].ok = mk_stats(c, i, NULL, on_stat, &out[i]) == 0;
    }
}

/* 1234 -> "1.2K"; keeps columns narrow. */
static const char *human(char *buf, double v)
{
    static const char units[] = " KMGTP";
    int u = 0;
    while (v >= 10000 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, 16, "%.0f", v);
    else
        snprintf(buf, 16, "%.1f%c", v, units[u]);
    return buf;
}

static double rate(const sample *a, const sample *b, int f, double dt)
{
    return b->v[f] >= a->v[f] ? (double)(b->v[f] - a->v[f]) / dt : 0;   /* a restart resets counters */
}

int cli_top(mk_client *c, int interval_ms, int iterations)
{
    size_t n = mk_server_count(c);
    sample *prev = calloc(n + 1, sizeof *prev), *cur = calloc(n + 1, sizeof *cur);
    if (!prev || !cur)
        return EXIT_ERR;
    bool tty = isatty(STDOUT_FILENO);
    take(c, prev, n);
    double t0 = now_s();
    int status = 0;
    for (int it = 0; iterations <= 0 || it < iterations; it++) {
        struct timespec ts = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        take(c, cur, n);
        double t1 = now_s(), dt = t1 - t0;
        if (dt <= 0)
            dt = 1e-3;
        if (tty)
            fputs("\033[H\033[J", stdout);
        else if (it)
            putchar('\n');
        time_t wall = time(NULL);
        char when[32];
        strftime(when, sizeof when, "%H:%M:%S", localtime(&wall));
        printf("memkit top - %zu server%s - every %.1f s - %s\n", n, n == 1 ? "" : "s", interval_ms / 1000.0, when);
        printf("%-24s %9s %9s %9s %9s %8s %6s %9s %9s %9s %9s\n", "SERVER", "HITS/s", "MISSES/s", "SETS/s",
               "EVICT/s", "CONN/s", "CONNS", "READ/s", "WRITE/s", "BYTES", "ITEMS");
        double tot[NF] = {0};
        bool all_ok = true;
        for (size_t i = 0; i < n; i++) {
            const char *name = mk_server_name(c, i);
            if (!cur[i].ok) {
                printf("%-24.24s %9s\n", name, "down");
                all_ok = false;
                continue;
            }
            if (!prev[i].ok)
                prev[i] = cur[i];   /* just came up: rates from the next frame on */
            double r[NF];
            for (int f = 0; f < NF; f++)
                r[f] = (f == F_CONNS || f == F_BYTES || f == F_ITEMS) ? (double)cur[i].v[f]
                                                                        : rate(&prev[i], &cur[i], f, dt);
            for (int f = 0; f < NF; f++)
                tot[f] += r[f];
            char b[NF][16];
            printf("%-24.24s %9s %9s %9s %9s %8s %6s %9s %9s %9s %9s\n", name, human(b[0], r[F_HITS]),
                   human(b[1], r[F_MISSES]), human(b[2], r[F_SETS]), human(b[3], r[F_EVICT]),
                   human(b[4], r[F_TCONN]), human(b[5], r[F_CONNS]), human(b[6], r[F_READ]),
                   human(b[7], r[F_WRITTEN]), human(b[8], r[F_BYTES]), human(b[9], r[F_ITEMS]));
        }
        if (n > 1) {
            char b[NF][16];
            printf("%-24s %9s %9s %9s %9s %8s %6s %9s %9s %9s %9s\n", "total", human(b[0], tot[F_HITS]),
                   human(b[1], tot[F_MISSES]), human(b[2], tot[F_SETS]), human(b[3], tot[F_EVICT]),
                   human(b[4], tot[F_TCONN]), human(b[5], tot[F_CONNS]), human(b[6], tot[F_READ]),
                   human(b[7], tot[F_WRITTEN]), human(b[8], tot[F_BYTES]), human(b[9], tot[F_ITEMS]));
        }
        fflush(stdout);
        if (!all_ok)
            status = EXIT_ERR;
        sample *t = prev;
        prev = cur;
        cur = t;
        t0 = t1;
    }
    free(prev);
    free(cur);
    return status;
}
