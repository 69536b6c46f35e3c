/* server/watch.c — memcached's "watch": live logs of fetches, stores and evictions, streamed to watcher connections. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "server/crawler.h"
#include "server/watch.h"

/*
 * Any worker (and the store, for evictions, under a shard lock) formats an event
 * line and appends it to the buffer of each watcher that wants that kind, under
 * one mutex that guards nothing else (a leaf: no other lock is taken under it).
 * A buffer that was empty wakes the watcher's worker (its notify eventfd), which
 * moves the lines into the connection's output (mk_watch_flush). A watcher that
 * reads too slowly loses lines, as memcached's do; nobody else waits on it.
 * srv->watch_kinds (the watchers' kinds together) keeps the cost at one relaxed
 * load per operation when nobody watches.
 */

#define WATCHERS_MAX 20              /* memcached's limit */
#define WATCH_BUF (256 * 1024)       /* lines a watcher may have pending */

typedef struct watcher {
    mk_conn *c;                      /* NULL: a free slot */
    mk_worker *wk;
    unsigned kinds;
    char *buf;
    size_t len;
} watcher;

struct mk_watchers {
    pthread_mutex_t lock;
    uint64_t gid;                    /* events logged, memcached's gid */
    watcher w[WATCHERS_MAX];
};

mk_watchers *mk_watchers_create(void)
{
    mk_watchers *w = calloc(1, sizeof *w);
    if (w)
        pthread_mutex_init(&w->lock, NULL);
    return w;
}

void mk_watchers_free(mk_watchers *w)
{
    if (!w)
        return;
    for (int i = 0; i < WATCHERS_MAX; i++)
        free(w->w[i].buf);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

static void recompute_kinds_locked(mk_server *srv)
{
    unsigned k = 0;
    for (int i = 0; i < WATCHERS_MAX; i++)
        if (srv->watchers->w[i].c)
            k |= srv->watchers->w[i].kinds;
    __atomic_store_n(&srv->watch_kinds, k, __ATOMIC_RELAXED);
}

void mk_watch_command(mk_conn *c, mk_str args)
{
    mk_server *srv = c->worker->srv;
    unsigned kinds = 0;
    if (c->out_head < c->nouts) { /* (checked first, as memcached does) */
        mk_conn_reply(c, "ERROR cannot pipeline other commands before watch");
        return;
    }
    for (mk_str rest = args, w; mk_next_key(&rest, &w);) {
        if (mk_str_is(w, "fetchers"))
            kinds |= MK_WATCH_FETCHERS;
        else if (mk_str_is(w, "mutations"))
            kinds |= MK_WATCH_MUTATIONS;
        else if (mk_str_is(w, "evictions"))
            kinds |= MK_WATCH_EVICTIONS;
        else {
            /* memcached's other streams (rawcmds, sysevents, connevents, proxy*) are not kept here */
            mk_conn_reply(c, "ERROR");
            return;
        }
    }
    if (!kinds)
        kinds = MK_WATCH_FETCHERS;
    mk_watchers *ws = srv->watchers;
    pthread_mutex_lock(&ws->lock);
    watcher *slot = NULL;
    for (int i = 0; i < WATCHERS_MAX && !slot; i++)
        if (!ws->w[i].c)
            slot = &ws->w[i];
    if (slot && !slot->buf)
        slot->buf = malloc(WATCH_BUF);
    if (slot && slot->buf) {
        *slot = (watcher){.c = c, .wk = c->worker, .kinds = kinds, .buf = slot->buf, .len = 0};
        recompute_kinds_locked(srv);
    }
    pthread_mutex_unlock(&ws->lock);
    if (!slot) {
        mk_conn_reply(c, "WATCHER_TOO_MANY log watcher limit reached");
        return;
    }
    if (!slot->buf) {
        mk_conn_reply(c, "WATCHER_FAILED failed to add log watcher");
        return;
    }
    mk_conn_out(c, "OK\r\n", 4);
    mk_conn_set_state(c, MK_CONN_WATCH);
}

void mk_watch_remove(mk_server *srv, mk_conn *c)
{
    mk_watchers *ws = srv->watchers;
    pthread_mutex_lock(&ws->lock);
    for (int i = 0; i < WATCHERS_MAX; i++)
        if (ws->w[i].c == c) {
            ws->w[i].c = NULL;
            ws->w[i].len = 0;
        }
    recompute_kinds_locked(srv);
    pthread_mutex_unlock(&ws->lock);
}

/* Append "ts=... gid=... " + body to every watcher of this kind; wake the workers of those that were idle. */
static void emit(mk_server *srv, unsigned kind, const char *body, int blen)
{
    if (blen <= 0)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    mk_watchers *ws = srv->watchers;
    mk_worker *wake[WATCHERS_MAX];
    int nwake = 0;
    pthread_mutex_lock(&ws->lock);
    uint64_t gid = ++ws->gid;
    char head[64];
    int hlen = snprintf(head, sizeof head, "ts=%lld.%d gid=%llu ", (long long)tv.tv_sec, (int)tv.tv_usec,
                        (unsigned long long)gid);
    for (int i = 0; i < WATCHERS_MAX; i++) {
        watcher *w = &ws->w[i];
        if (!w->c || !(w->kinds & kind) || w->len + (size_t)hlen + (size_t)blen > WATCH_BUF)
            continue; /* (a full buffer: the line is lost for this watcher, as in memcached) */
        if (w->len == 0)
            wake[nwake++] = w->wk;
        memcpy(w->buf + w->len, head, (size_t)hlen);
        memcpy(w->buf + w->len + hlen, body, (size_t)blen);
        w->len += (size_t)hlen + (size_t)blen;
    }
    pthread_mutex_unlock(&ws->lock);
    for (int i = 0; i < nwake; i++) {
        uint64_t one = 1;
        if (write(wake[i]->notify.fd, &one, sizeof one) < 0) { /* (already signalled) */
        }
    }
}

static char *key_uri(mk_str key, char *out)
{
    mk_uri_encode(key.p, key.n, out);
    return out;
}

void mk_watch_fetch(mk_worker *wk, mk_str key, const char *status, unsigned cls, size_t nbytes)
{
    char k[3 * MK_KEY_MAX + 1], body[3 * MK_KEY_MAX + 128];
    int n = snprintf(body, sizeof body, "type=item_get key=%s status=%s clsid=%u cfd=%d size=%zu\n",
                     key_uri(key, k), status, cls, wk->cur_fd, nbytes);
    emit(wk->srv, MK_WATCH_FETCHERS, body, n);
}

void mk_watch_store(mk_worker *wk, mk_str key, const char *status, const char *cmd, int64_t ttl, unsigned cls,
                    size_t nbytes)
{
    char k[3 * MK_KEY_MAX + 1], body[3 * MK_KEY_MAX + 160];
    int n = snprintf(body, sizeof body, "type=item_store key=%s status=%s cmd=%s ttl=%u clsid=%u cfd=%d size=%zu\n",
                     key_uri(key, k), status, cmd, (unsigned)ttl, cls, wk->cur_fd, nbytes);
    emit(wk->srv, MK_WATCH_MUTATIONS, body, n);
}

void mk_watch_evict(mk_server *srv, mk_str key, bool fetched, int64_t ttl, unsigned cls, size_t nbytes)
{
    /* la: memkitd keeps no access time (0, as for an item read just now; docs/operations.md) */
    char k[3 * MK_KEY_MAX + 1], body[3 * MK_KEY_MAX + 160];
    int n = snprintf(body, sizeof body, "type=eviction key=%s fetch=%s ttl=%lld la=0 clsid=%u size=%zu\n",
                     key_uri(key, k), fetched ? "yes" : "no", (long long)ttl, cls, nbytes);
    emit(srv, MK_WATCH_EVICTIONS, body, n);
}

void mk_watch_flush(mk_worker *wk)
{
    mk_watchers *ws = wk->srv->watchers;
    mk_conn *push[WATCHERS_MAX];
    int npush = 0;
    pthread_mutex_lock(&ws->lock);
    for (int i = 0; i < WATCHERS_MAX; i++) {
        watcher *w = &ws->w[i];
        /* (a watcher that does not read keeps at most WATCH_BUF unsent: then its lines wait here, and
         * new ones are lost once this buffer is full too) */
        if (w->c && w->wk == wk && w->len && w->c->out_pending <= WATCH_BUF) {
            mk_conn_out(w->c, w->buf, w->len); /* (only this worker touches its connections) */
            w->len = 0;
            push[npush++] = w->c;
        }
    }
    pthread_mutex_unlock(&ws->lock);
    for (int i = 0; i < npush; i++)
        mk_conn_push(push[i]);
}
