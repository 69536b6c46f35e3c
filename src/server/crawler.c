/* server/crawler.c — operators' commands for memcached's internals: key dumps ("lru_crawler metadump", "stats cachedump", over mk_cache_each), the crawler and slab controls. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/conn.h"
#include "server/crawler.h"
#include "server/server.h"
#include "storage/cache.h"

#define MAX_CLASSES 64             /* memcached's MAX_NUMBER_OF_SLAB_CLASSES: class ids 1..63 */
#define CACHEDUMP_MAX (2u << 20)   /* memcached's cachedump buffer: a dump stops before 2 MB */

/* The next space-separated word of *rest (advanced past it); n = 0 at the end. */
static mk_str next_word(mk_str *rest)
{
    mk_str w = {NULL, 0};
    mk_next_key(rest, &w);
    return w;
}

/* A decimal number in [lo, hi] as memcached's safe_strtoul / safe_strtol take it. */
static bool num_of(mk_str w, long long lo, long long hi, long long *out)
{
    char buf[24];
    if (w.n == 0 || w.n >= sizeof buf)
        return false;
    memcpy(buf, w.p, w.n);
    buf[w.n] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (*end || (lo >= 0 && buf[0] == '-') || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool u32_of(mk_str w, uint32_t *out)
{
    long long v;
    if (!num_of(w, 0, UINT32_MAX, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* The classes a crawl names: "all", "hash" (every item, by the hash table), or ids "1,2,3" (empty
 * pieces skipped, as memcached's strtok does). */
static bool classes_of(mk_str w, bool want[MAX_CLASSES])
{
    if (mk_str_is(w, "all") || mk_str_is(w, "hash")) {
        for (int i = 0; i < MAX_CLASSES; i++)
            want[i] = true;
        return true;
    }
    memset(want, 0, MAX_CLASSES * sizeof want[0]);
    bool any = false;
    while (w.n) {
        size_t k = 0;
        while (k < w.n && w.p[k] != ',')
            k++;
        uint32_t id;
        if (k && (!u32_of((mk_str){w.p, k}, &id) || id == 0 || id >= MAX_CLASSES))
            return false;
        if (k)
            want[id] = any = true;
        w.p += k + (k < w.n);
        w.n -= k + (k < w.n);
    }
    return any;
}

size_t mk_uri_encode(const char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    char *q = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~') {
            *q++ = (char)ch;
        } else {
            *q++ = '%';
            *q++ = hex[ch >> 4];
            *q++ = hex[ch & 15];
        }
    }
    *q = '\0';
    return (size_t)(q - out);
}

/* ---- lru_crawler metadump: memcached's line per item */

struct metadump {
    mk_conn *c;
    const bool *want;
    int64_t started; /* the server's start, wall clock: memcached's la= is a wall-clock time too */
};

static bool metadump_item(void *p, const mk_cache_entry *e)
{
    struct metadump *d = p;
    if (e->cls >= MAX_CLASSES || !d->want[e->cls])
        return true;
    char line[3 * 256 + 160], *q = line + 4;
    memcpy(line, "key=", 4);
    q += mk_uri_encode(e->key, e->nkey, q);
    /* la: memkit keeps no access time; the server's start is the honest earliest (docs/operations.md) */
    q += snprintf(q, (size_t)(line + sizeof line - q), " exp=%" PRId64 " la=%" PRId64 " cas=%" PRIu64
                  " fetch=%s cls=%u size=%zu\n", e->exp_at ? e->exp_at : -1, d->started, e->cas,
                  e->fetched ? "yes" : "no", e->cls, e->size);
    mk_conn_out(d->c, line, (size_t)(q - line));
    return true;
}

static void metadump(mk_conn *c, mk_str which)
{
    bool want[MAX_CLASSES];
    if (!classes_of(which, want)) {
        mk_conn_reply(c, "BADCLASS invalid class id");
        return;
    }
    if (c->out_head < c->nouts) {
        mk_conn_reply(c, "ERROR cannot pipeline other commands before metadump");
        return;
    }
    mk_server *srv = c->worker->srv;
    struct metadump d = {c, want, srv->started};
    mk_cache_each(srv->cache, c->worker->now, metadump_item, &d);
    mk_conn_out(c, "END\r\n", 5);
}

void mk_lru_crawler_command(mk_conn *c, mk_str args)
{
    mk_str rest = args, sub = next_word(&rest), arg = next_word(&rest), extra = next_word(&rest);
    uint32_t v;
    bool want[MAX_CLASSES];
    if (extra.n || !sub.n) {
        mk_conn_reply(c, "ERROR");
    } else if (arg.n && mk_str_is(sub, "metadump")) {
        metadump(c, arg);
    } else if (arg.n && mk_str_is(sub, "crawl")) {
        /* memkitd reclaims expired items as it goes (docs/storage.md): there is no pass to start */
        mk_conn_reply(c, classes_of(arg, want) ? "OK" : "BADCLASS invalid class id");
    } else if (arg.n && mk_str_is(sub, "tocrawl")) {
        mk_conn_reply(c, u32_of(arg, &v) ? "OK" : "CLIENT_ERROR bad command line format");
    } else if (arg.n && mk_str_is(sub, "sleep")) {
        mk_conn_reply(c, !u32_of(arg, &v) ? "CLIENT_ERROR bad command line format"
                         : v > 1000000    ? "CLIENT_ERROR sleep must be one second or less"
                                          : "OK");
    } else if (!arg.n && (mk_str_is(sub, "enable") || mk_str_is(sub, "disable"))) {
        mk_conn_reply(c, "OK");
    } else {
        mk_conn_reply(c, "ERROR");
    }
}

/* ---- stats cachedump <class> <limit> */

struct cachedump {
    mk_conn *c;
    unsigned cls;
    uint32_t limit, shown;
    size_t bytes;
};

static bool cachedump_item(void *p, const mk_cache_entry *e)
{
    struct cachedump *d = p;
    if (e->cls != d->cls)
        return true;
    if (d->limit && d->shown >= d->limit)
        return false;
    char line[300];
    int n = snprintf(line, sizeof line, "ITEM %.*s [%zu b; %" PRId64 " s]\r\n", (int)e->nkey, e->key, e->nbytes,
                     e->exp_at);
    if (n <= 0 || d->bytes + (size_t)n + 6 > CACHEDUMP_MAX)
        return false;
    mk_conn_out(d->c, line, (size_t)n);
    d->bytes += (size_t)n;
    d->shown++;
    return true;
}

void mk_cachedump_command(mk_conn *c, mk_str args)
{
    mk_str rest = args;
    next_word(&rest); /* "cachedump" */
    mk_str a = next_word(&rest), b = next_word(&rest);
    uint32_t id, limit;
    if (!b.n) {
        mk_conn_reply(c, "CLIENT_ERROR bad command line");
        return;
    }
    if (!u32_of(a, &id) || !u32_of(b, &limit)) {
        mk_conn_reply(c, "CLIENT_ERROR bad command line format");
        return;
    }
    if (id >= MAX_CLASSES) {
        mk_conn_reply(c, "CLIENT_ERROR Illegal slab id");
        return;
    }
    struct cachedump d = {c, id, limit, 0, 0};
    mk_cache_each(c->worker->srv->cache, c->worker->now, cachedump_item, &d);
    mk_conn_out(c, "END\r\n", 5);
}

/* ---- slabs automove / reassign */

void mk_slabs_command(mk_conn *c, mk_str args)
{
    mk_server *srv = c->worker->srv;
    mk_str rest = args, sub = next_word(&rest), a = next_word(&rest), b = next_word(&rest), extra = next_word(&rest);
    if (mk_str_is(sub, "reassign") && b.n && !extra.n) {
        long long src, dst;
        if (!num_of(a, INT32_MIN, INT32_MAX, &src) || !num_of(b, INT32_MIN, INT32_MAX, &dst))
            mk_conn_reply(c, "CLIENT_ERROR bad command line format");
        else if (src == dst)
            mk_conn_reply(c, "SAME src and dst class are identical");
        else if (src < -1 || src >= MAX_CLASSES || dst < 0 || dst >= MAX_CLASSES)
            mk_conn_reply(c, "BADCLASS invalid src or dst class id");
        else
            mk_conn_reply(c, "NOSPARE source class has no spare pages");
    } else if (mk_str_is(sub, "automove") && a.n) {
        uint32_t level;
        if (mk_str_is(a, "ratio")) {
            char buf[32];
            char *end = NULL;
            double r = 0;
            if (b.n && b.n < sizeof buf) {
                memcpy(buf, b.p, b.n);
                buf[b.n] = '\0';
                r = strtod(buf, &end);
            }
            if (!end || *end || r < 0 || r > 1e6) {
                mk_conn_reply(c, "ERROR");
                return;
            }
            __atomic_store_n(&srv->slab_automove_ratio_pm, (int)(r * 1000 + 0.5), __ATOMIC_RELAXED);
        } else if (!u32_of(a, &level) || level > 2) {
            mk_conn_reply(c, "ERROR");
            return;
        } else {
            __atomic_store_n(&srv->slab_automove, (int)level, __ATOMIC_RELAXED);
        }
        mk_conn_reply(c, "OK");
    } else {
        mk_conn_reply(c, "ERROR");
    }
}
