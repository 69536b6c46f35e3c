/* server/detail.c — per-key-prefix counters for "stats detail on|off|dump". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/proto.h"
#include "server/server.h"

#define DETAIL_BUCKETS 256
#define DETAIL_MAX_PREFIXES 10000
#define DETAIL_DELIMITER ':'

typedef struct mk_prefix_stats mk_prefix_stats;
struct mk_prefix_stats {
    mk_prefix_stats *next;
    uint64_t gets, hits, sets, deletes;
    size_t n;
    char prefix[];
};

/* A chained hash table of prefixes, allocated on first use; guarded by srv->stats_lock. */
struct mk_detail {
    size_t count;
    mk_prefix_stats *buckets[DETAIL_BUCKETS];
};

/* The length of key's prefix: the bytes before its first ':'. A key without one (or with a NUL
 * before it) has no prefix and is not counted, as in memcached. SIZE_MAX then. */
static size_t prefix_len(const char *key, size_t nkey)
{
    for (size_t i = 0; i < nkey && key[i] != '\0'; i++)
        if (key[i] == DETAIL_DELIMITER)
            return i;
    return SIZE_MAX;
}

static unsigned bucket_of(const char *p, size_t n)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h % DETAIL_BUCKETS;
}

void mk_server_detail_count(mk_server *srv, const char *key, size_t nkey, char op, bool hit)
{
    size_t n = prefix_len(key, nkey);
    if (n == SIZE_MAX)
        return;
    pthread_mutex_lock(&srv->stats_lock);
    if (!srv->detail_enabled)
        goto out;
    if (!srv->detail && !(srv->detail = calloc(1, sizeof(*srv->detail))))
        goto out;
    mk_detail *d = srv->detail;
    unsigned b = bucket_of(key, n);
    mk_prefix_stats *ps = d->buckets[b];
    while (ps && !(ps->n == n && memcmp(ps->prefix, key, n) == 0))
        ps = ps->next;
    if (!ps) {
        if (d->count >= DETAIL_MAX_PREFIXES || !(ps = calloc(1, sizeof(*ps) + n + 1)))
            goto out;
        memcpy(ps->prefix, key, n);
        ps->n = n;
        ps->next = d->buckets[b];
        d->buckets[b] = ps;
        d->count++;
    }
    switch (op) {
    case 'g':
        ps->gets++;
        ps->hits += hit;
        break;
    case 's':
        ps->sets++;
        break;
    case 'd':
        ps->deletes++;
        break;
    }
out:
    pthread_mutex_unlock(&srv->stats_lock);
}

void mk_server_detail_dump(mk_server *srv, void (*emit)(void *ctx, const char *line), void *ctx)
{
    pthread_mutex_lock(&srv->stats_lock);
    mk_detail *d = srv->detail;
    for (unsigned b = 0; d && b < DETAIL_BUCKETS; b++) {
        for (mk_prefix_stats *ps = d->buckets[b]; ps; ps = ps->next) {
            char line[MK_KEY_MAX + 128];
            snprintf(line, sizeof(line), "PREFIX %.*s get %llu hit %llu set %llu del %llu",
                     (int)ps->n, ps->prefix, (unsigned long long)ps->gets,
                     (unsigned long long)ps->hits, (unsigned long long)ps->sets,
                     (unsigned long long)ps->deletes);
            emit(ctx, line);
        }
    }
    pthread_mutex_unlock(&srv->stats_lock);
}

void mk_server_detail_clear(mk_server *srv)
{
    pthread_mutex_lock(&srv->stats_lock);
    mk_detail *d = srv->detail;
    for (unsigned b = 0; d && b < DETAIL_BUCKETS; b++) {
        for (mk_prefix_stats *ps = d->buckets[b], *next; ps; ps = next) {
            next = ps->next;
            free(ps);
        }
    }
    free(d);
    srv->detail = NULL;
    pthread_mutex_unlock(&srv->stats_lock);
}
