/* server/watch.h — memcached's "watch": live logs of fetches, stores and evictions, streamed to watcher connections. */
#ifndef MK_SERVER_WATCH_H
#define MK_SERVER_WATCH_H

#include <stdint.h>

#include "memkit/proto.h"
#include "server/conn.h"
#include "server/server.h"

enum { MK_WATCH_FETCHERS = 1, MK_WATCH_MUTATIONS = 2, MK_WATCH_EVICTIONS = 4 };

/* The server's watchers (a handle in mk_server). NULL if it cannot be allocated. */
mk_watchers *mk_watchers_create(void);
void mk_watchers_free(mk_watchers *w);

/* Some watcher wants events of this kind (one relaxed load: the cost when nobody watches). */
static inline bool mk_watching(const mk_server *srv, unsigned kind)
{
    return (__atomic_load_n(&srv->watch_kinds, __ATOMIC_RELAXED) & kind) != 0;
}

/*
 * Reply on c to "watch [fetchers] [mutations] [evictions]" as memcached 1.6.18 does: OK, then the
 * connection serves no more commands and receives one line per event of those kinds (fetchers when
 * none is named), each "ts=SEC.USEC gid=N type=...". Other words are ERROR; after other replies in
 * the same write, "ERROR cannot pipeline other commands before watch"; past 20 watchers,
 * "WATCHER_TOO_MANY log watcher limit reached".
 */
void mk_watch_command(mk_conn *c, mk_str args);

/* Events, from any worker (they take the watchers' lock, a leaf: nothing is called under it). */
void mk_watch_fetch(mk_worker *wk, mk_str key, const char *status, unsigned cls, size_t nbytes);
void mk_watch_store(mk_worker *wk, mk_str key, const char *status, const char *cmd, int64_t ttl, unsigned cls,
                    size_t nbytes);
void mk_watch_evict(mk_server *srv, mk_str key, bool fetched, int64_t ttl, unsigned cls, size_t nbytes);

/* A worker writes its watcher connections' pending lines (called when its notify fires). */
void mk_watch_flush(mk_worker *wk);
/* c is closing: it watches no more. */
void mk_watch_remove(mk_server *srv, mk_conn *c);

#endif
