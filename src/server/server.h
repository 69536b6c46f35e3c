/* server/server.h — the server handle: listeners, worker threads, the shared store and clock. */
#ifndef MK_SERVER_SERVER_H
#define MK_SERVER_SERVER_H

/*
 *   main thread                        worker threads (-t), one epoll loop each
 *   ───────────                        ─────────────────────────────────────────
 *   listeners ──accept──► round robin ──► queue + eventfd ──► mk_conn (conn.c)
 *   signalfd (INT/TERM/USR1)                  transport (transport.c) │ protocol (proto_text.c)
 *   1 s tick: clock, store upkeep                                     │ execute (exec.c)
 *                                                                     ▼ storage (mk_cache)
 *
 * Lock rules: the store locks itself (storage/cache.h). Each worker's conn list is
 * guarded by its conns_lock, taken only to add/remove a connection and by
 * "stats conns". The new-connection queue is guarded by queue_lock. Everything
 * else a worker touches is its own.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/loop.h"
#include "server/options.h"
#include "server/stats.h"
#include "storage/cache.h"

typedef struct mk_server mk_server;
typedef struct mk_conn mk_conn;

typedef struct mk_listener {
    mk_watch w;
    mk_server *srv;
    char name[128];     /* "tcp:127.0.0.1:11211" or "unix:/path", for stats conns */
    bool tls;           /* -Z and not "notls:": its connections speak TLS */
} mk_listener;

/* A UDP socket (-U) bound on one -l address; its datagram connections are udp.c's. */
typedef struct mk_udp_socket {
    int fd;
    char name[128];     /* "udp:127.0.0.1:11211", for stats conns */
} mk_udp_socket;

typedef struct mk_worker {
    int id;
    mk_server *srv;
    pthread_t thread;
    mk_loop *loop;
    mk_watch notify;            /* eventfd: new connections queued, or stop */

    pthread_mutex_t queue_lock; /* guards queue* */
    struct mk_pending_conn *queue;
    size_t queue_len, queue_cap;

    pthread_mutex_t conns_lock; /* guards the conns list links (not the conns' contents) */
    mk_conn *conns;             /* doubly linked via mk_conn.prev/next */
    mk_conn *ready;             /* conns with buffered input left after their turn (-R) */
    mk_conn *dead;              /* closed conns, freed after the current loop batch */

    int64_t now;                /* this thread's copy of the clock, refreshed every wake-up */
    mk_thread_stats stats;      /* written only by this worker */
    char *tls_wbuf;             /* -o ssl_wbuf_size: where small TLS replies are gathered into one record */
    int cur_fd;                 /* the connection whose input is being executed (watch lines' cfd=) */
} mk_worker;

typedef struct mk_watchers mk_watchers; /* watch.c */

/* Per-prefix counters for "stats detail" (enabled with "stats detail on"); see detail.c. */
typedef struct mk_detail mk_detail;

struct mk_server {
    const mk_settings *settings;
    mk_cache *cache;
    mk_watchers *watchers;      /* "watch" connections (watch.c) */
    unsigned watch_kinds;       /* the kinds they want, together (atomic): 0 when nobody watches */
    mk_loop *loop;              /* main thread: listeners and signals */
    mk_listener *listeners;
    int nlisteners;
    mk_udp_socket *udp;         /* -U: bound in mk_server_create, served by the workers (udp.h) */
    int nudp;
    mk_watch sigw;              /* signalfd */
    mk_worker *workers;
    int nworkers;
    unsigned next_worker;
    bool accept_paused;         /* listeners unwatched after EMFILE (main thread only) */
    int64_t paused_since_us;    /* monotonic time of that pause, 0 when not paused for descriptors (atomic) */

    int64_t started;            /* unix time at start */
    int64_t now;                /* the clock, updated by the main thread (atomic access) */
    int curr_conns;             /* client connections open now (atomic access) */
    uint64_t rbuf_grown;        /* bytes of read buffers grown past their first 16 KB, all connections (atomic) */
    int verbosity;              /* "verbosity" command / -v (atomic access) */
    bool stopping;              /* set once; workers exit their loops (atomic access) */
    int exit_status;

    struct mk_tls *tls;         /* -Z: the TLS context (tls.h) */
    struct mk_authfile *auth;   /* -Y: the users (authfile.h); swapped by a SIGHUP reload under auth_lock */
    pthread_rwlock_t auth_lock;

    mk_thread_stats main_stats; /* connection counters, written only by the main thread */
    pthread_mutex_t stats_lock; /* guards stats_base and the detail table */
    mk_thread_stats stats_base; /* sum of all counters at the last "stats reset" */
    bool detail_enabled;        /* atomic access */
    int slab_automove;          /* "slabs automove N" (atomic): recorded for stats settings; no effect */
    int slab_automove_ratio_pm; /* "slabs automove ratio R", in thousandths (atomic); the same */
    mk_detail *detail;          /* allocated on first count */
};

/*
 * Create the server: the store, the listeners (bound and listening: the port is
 * taken when this returns) and the worker threads' loops (not yet running).
 * Returns NULL after writing one line to stderr on failure.
 */
mk_server *mk_server_create(const mk_settings *s);

/* Start the workers and run the main loop until SIGINT/SIGTERM/SIGUSR1 or "shutdown". Returns the exit status. */
int mk_server_run(mk_server *srv);

/* Ask the server to stop (any thread). */
void mk_server_stop(mk_server *srv);

/* Free everything; the server must not be running. NULL is a no-op. */
void mk_server_destroy(mk_server *srv);

/*
 * A socket address as memcached writes it in "stats conns": proto ("tcp",
 * "udp") then ":1.2.3.4:port", or proto "6" then ":[v6]:port".
 */
void mk_sockaddr_name(const struct sockaddr *sa, const char *proto, char *out, size_t cap);

/* The server clock (unix seconds). */
static inline int64_t mk_server_now(mk_server *srv)
{
    return __atomic_load_n(&srv->now, __ATOMIC_RELAXED);
}

/* Sum of all workers' counters minus the reset baselines. */
void mk_server_thread_stats(mk_server *srv, mk_thread_stats *out);

/* "stats reset". */
void mk_server_reset_stats(mk_server *srv);

/* "stats detail": count one operation on key's prefix (no-op when disabled). op: 'g' get (hit=true/false), 's' set, 'd' delete. */
void mk_server_detail_count(mk_server *srv, const char *key, size_t nkey, char op, bool hit);

/* "stats detail dump": call emit with one "PREFIX ..." line (no "\r\n") per prefix. */
void mk_server_detail_dump(mk_server *srv, void (*emit)(void *ctx, const char *line), void *ctx);

/* Forget every prefix counter ("stats detail off" keeps them; this is for shutdown). */
void mk_server_detail_clear(mk_server *srv);

#endif
