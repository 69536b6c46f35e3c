/* tools/memkit/top.c — memkit top: every server's stats sampled each interval, shown as per-second rates, and the hottest key prefixes. */
#include "cli.h"

#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

enum { F_HITS, F_MISSES, F_SETS, F_EVICT, F_TCONN, F_CONNS, F_READ, F_WRITTEN, F_BYTES, F_ITEMS, F_LIMIT, NF };
static const char *const stat_names[NF] = {
    "get_hits", "get_misses", "cmd_set", "evictions", "total_connections",
    "curr_connections", "bytes_read", "bytes_written", "bytes", "curr_items", "limit_maxbytes",
};

/* ---- the terminal: keys without Enter or echo while top runs, restored however it ends */

static struct termios saved_tty;
static bool tty_raw;

static void tty_restore(void)
{
    if (tty_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
    tty_raw = false;
}

static void on_interrupt(int sig)
{
    tty_restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void tty_keys(void)
{
    struct termios t;
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return;
    t = saved_tty;
    t.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tty_raw = true;
        atexit(tty_restore);
        signal(SIGINT, on_interrupt);
        signal(SIGTERM, on_interrupt);
    }
}

/* Sleep ms, or less if 'q' (or Q) is typed on a terminal: true then. */
static bool wait_or_quit(int ms)
{
    if (!tty_raw) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        return false;
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = ms - (long)((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0)
            return false;
        struct pollfd p = {STDIN_FILENO, POLLIN, 0};
        if (poll(&p, 1, (int)left) > 0) {
            char ch;
            if (read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
                return true;
        }
    }
}

/* Columns to draw in: the terminal's width, else 80. */
static int columns(void)
{
    struct winsize w;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col >= 40)
        return w.ws_col;
    return 80;
}

static const char *human(char *buf, double v);

/* Lines to draw in: the terminal's height, 0 when it is not a terminal (no limit). */
static int rows(void)
{
    struct winsize w;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_row > 0)
        return w.ws_row;
    return 0;
}

/* ---- the hottest key prefixes: "stats detail dump", which a server fills while "stats detail on" */

enum { P_GET, P_HIT, P_SET, P_DEL, NP };
#define PFX_NAME 64          /* longer prefixes are cut for the screen (and merged if they then collide) */
#define PFX_SHOWN_MAX 10

typedef struct pfx {
    char name[PFX_NAME];
    uint64_t v[NP];          /* counters summed over the servers */
    double r[NP];            /* per second since the last frame */
} pfx;

typedef struct pfx_set {
    pfx *p;
    size_t n, cap;
} pfx_set;

/* "get 3 hit 2 set 1 del 0" -> v; false if the line does not read so */
static bool pfx_counters(const char *val, size_t nv, uint64_t *v)
{
    static const char *const names[NP] = {"get", "hit", "set", "del"};
    char buf[160];
    snprintf(buf, sizeof buf, "%.*s", (int)(nv < sizeof buf - 1 ? nv : sizeof buf - 1), val);
    char *save = NULL, *tok = strtok_r(buf, " ", &save);
    for (int f = 0; f < NP; f++) {
        char *num = strtok_r(NULL, " ", &save);
        if (tok == NULL || num == NULL || strcmp(tok, names[f]) != 0)
            return false;
        v[f] = strtoull(num, NULL, 10);
        tok = strtok_r(NULL, " ", &save);
    }
    return true;
}

static void on_prefix(void *ctx, const char *name, size_t nn, const char *val, size_t nv)
{
    pfx_set *s = ctx;
    pfx e;
    memset(&e, 0, sizeof e);
    if (!pfx_counters(val, nv, e.v))
        return;
    snprintf(e.name, sizeof e.name, "%.*s", (int)(nn < PFX_NAME - 1 ? nn : PFX_NAME - 1), name);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        pfx *p = realloc(s->p, cap * sizeof *p);
        if (p == NULL)
            return;   /* out of memory: this frame shows fewer prefixes */
        s->p = p;
        s->cap = cap;
    }
    s->p[s->n++] = e;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const pfx *)a)->name, ((const pfx *)b)->name);
}

static int by_rank(const void *a, const void *b)
{
    const pfx *p = a, *q = b;
    double x = p->r[P_GET] + p->r[P_SET], y = q->r[P_GET] + q->r[P_SET];   /* the busiest first */
    return x < y ? 1 : x > y ? -1 : by_name(a, b);
}

/* Every server's prefixes, one entry per name (the servers' counters summed), sorted by name. */
static void take_prefixes(mk_client *c, size_t n, pfx_set *out)
{
    out->n = 0;
    for (size_t i = 0; i < n; i++)
        mk_stats(c, i, "detail dump", on_prefix, out);   /* a server without detail lists nothing */
    qsort(out->p, out->n, sizeof *out->p, by_name);
    size_t w = 0;
    for (size_t r = 0; r < out->n; r++) {
        if (w > 0 && strcmp(out->p[w - 1].name, out->p[r].name) == 0) {
            for (int f = 0; f < NP; f++)
                out->p[w - 1].v[f] += out->p[r].v[f];
        } else {
            out->p[w++] = out->p[r];
        }
    }
    out->n = w;
}

/* The busiest prefixes since the last frame, at most `room` of them (cur's rates are set here). */
static void show_prefixes(const pfx_set *prev, pfx_set *cur, double dt, int namew, int room)
{
    size_t active = 0;
    for (size_t i = 0; i < cur->n; i++) {
        pfx *e = &cur->p[i];
        const pfx *o = prev->n ? bsearch(e, prev->p, prev->n, sizeof *e, by_name) : NULL;
        for (int f = 0; f < NP; f++)   /* (a counter below its last value: the server restarted) */
            e->r[f] = (double)(e->v[f] - (o && o->v[f] <= e->v[f] ? o->v[f] : 0)) / dt;
        active += e->r[P_GET] + e->r[P_SET] > 0;
    }
    if (active == 0 || room <= 0)
        return;
    qsort(cur->p, cur->n, sizeof *cur->p, by_rank);
    printf("\n%-*s %7s %5s %7s %7s\n", namew, "PREFIX", "GETS/s", "HIT%", "SETS/s", "DELS/s");
    for (size_t i = 0; i < active && (int)i < room; i++) {
        const pfx *e = &cur->p[i];
        const double *r = e->r;
        char b[3][16], hit[16];
        if (r[P_GET] > 0)
            snprintf(hit, sizeof hit, "%.0f%%", 100.0 * r[P_HIT] / r[P_GET]);
        else
            snprintf(hit, sizeof hit, "-");
        printf("%-*.*s %7s %5s %7s %7s\n", namew, namew, e->name, human(b[0], r[P_GET]), hit, human(b[1], r[P_SET]),
               human(b[2], r[P_DEL]));
    }
    qsort(cur->p, cur->n, sizeof *cur->p, by_name);   /* the next frame looks names up in it */
}

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
    else if (v < 100)
        snprintf(buf, 16, "%.1f%c", v, units[u]);
    else
        snprintf(buf, 16, "%.0f%c", v, units[u]);   /* at most "9999K": five characters */
    return buf;
}

static double rate(const sample *a, const sample *b, int f, double dt)
{
    return b->v[f] >= a->v[f] ? (double)(b->v[f] - a->v[f]) / dt : 0;   /* a restart resets counters */
}

/* One row: the server (or "total") in `namew` columns, then the figures in 63 more. */
static void row(int namew, const char *name, const double *r)
{
    char b[NF][16], hit[16];
    double gets = r[F_HITS] + r[F_MISSES];
    if (gets > 0)
        snprintf(hit, sizeof hit, "%.0f%%", 100.0 * r[F_HITS] / gets);
    else
        snprintf(hit, sizeof hit, "-");
    char mem[16];
    if (r[F_LIMIT] > 0)
        snprintf(mem, sizeof mem, "%.0f%%", 100.0 * r[F_BYTES] / r[F_LIMIT]);
    else
        snprintf(mem, sizeof mem, "-");
    printf("%-*.*s %7s %5s %7s %7s %5s %6s %6s %6s %5s\n", namew, namew, name, human(b[0], gets), hit,
           human(b[1], r[F_SETS]), human(b[2], r[F_EVICT]), human(b[3], r[F_CONNS]), human(b[4], r[F_READ]),
           human(b[5], r[F_WRITTEN]), human(b[6], r[F_ITEMS]), mem);
}

int cli_top(mk_client *c, int interval_ms, int iterations)
{
    size_t n = mk_server_count(c);
    sample *prev = calloc(n + 1, sizeof *prev), *cur = calloc(n + 1, sizeof *cur);
    if (!prev || !cur)
        return EXIT_ERR;
    bool tty = isatty(STDOUT_FILENO);
    if (tty)
        tty_keys();
    take(c, prev, n);
    pfx_set pprev = {0}, pcur = {0};
    take_prefixes(c, n, &pprev);
    double t0 = now_s();
    int status = 0;
    for (int it = 0; iterations <= 0 || it < iterations; it++) {
        if (wait_or_quit(interval_ms))
            break;
        take(c, cur, n);
        double t1 = now_s(), dt = t1 - t0;
        if (dt <= 0)
            dt = 1e-3;
        if (tty)
            fputs("\033[H\033[J", stdout);
        else if (it)
            putchar('\n');
        int namew = columns() - 64;  /* 16 in 80 columns, the last one left free (a full line wraps on some
                                        terminals); the server names get what is wider */
        time_t wall = time(NULL);
        char when[32];
        strftime(when, sizeof when, "%H:%M:%S", localtime(&wall));
        printf("memkit top - %zu server%s - every %.1f s - %s%s\n", n, n == 1 ? "" : "s", interval_ms / 1000.0,
               when, tty_raw ? " - q quits" : "");
        printf("%-*s %7s %5s %7s %7s %5s %6s %6s %6s %5s\n", namew, "SERVER", "GETS/s", "HIT%", "SETS/s",
               "EVICT/s", "CONNS", "IN/s", "OUT/s", "ITEMS", "MEM%");
        double tot[NF] = {0};
        bool all_ok = true;
        for (size_t i = 0; i < n; i++) {
            const char *name = mk_server_name(c, i);
            if (!cur[i].ok) {
                printf("%-*.*s %7s\n", namew, namew, name, "down");
                all_ok = false;
                continue;
            }
            if (!prev[i].ok)
                prev[i] = cur[i];   /* just came up: rates from the next frame on */
            double r[NF];
            for (int f = 0; f < NF; f++)
                r[f] = (f == F_CONNS || f == F_BYTES || f == F_ITEMS || f == F_LIMIT)
                           ? (double)cur[i].v[f] : rate(&prev[i], &cur[i], f, dt);
            for (int f = 0; f < NF; f++)
                tot[f] += r[f];
            row(namew, name, r);
        }
        if (n > 1)
            row(namew, "total", tot);
        /* what is left of the screen (the last line stays free): a blank line, a header, the prefixes */
        int height = rows(), used = 2 + (int)n + (n > 1);
        take_prefixes(c, n, &pcur);
        show_prefixes(&pprev, &pcur, dt, namew, height ? (height - used - 3 < PFX_SHOWN_MAX ? height - used - 3
                                                                                           : PFX_SHOWN_MAX)
                                                    : PFX_SHOWN_MAX);
        pfx_set pt = pprev;
        pprev = pcur;
        pcur = pt;
        fflush(stdout);
        if (!all_ok)
            status = EXIT_ERR;
        sample *t = prev;
        prev = cur;
        cur = t;
        t0 = t1;
    }
    tty_restore();
    free(pprev.p);
    free(pcur.p);
    free(prev);
    free(cur);
    return status;
}
