/* client/client.h — libmemkit internals: the client, its servers and pools, connections, the op state machine. */
#ifndef MK_CLIENT_CLIENT_H
#define MK_CLIENT_CLIENT_H

/*
 *   mk_client ──► mk_server[i] ──► pool: idle connections (bounded by pool_size)
 *       │            └─ failover state: consecutive failures, dead_until, probe_at, counters
 *       ├─ probe thread (only while a server is dead)
 *       └─ mk_dist (all servers) + live dist (auto-eject: rebuilt over live ones)
 *
 *   call ──► mk_op_start (validate, pick server) ──► step: checkout ─► connect ─► write ─► read ─► done
 *                                                         (pool.c)    (conn.c)        (op.c)
 *
 * Files: client.c (create/destroy, resolve, options, strerror), pool.c (pool and
 * failover state), probe.c (the thread that probes dead servers), conn.c
 * (sockets), tls.c (TLS: the context, the handshake, every byte a connection
 * moves), op.c (the state machine and reply parsing), pipe.c (auto-pipelining:
 * concurrent blocking calls sharing a connection), ops.c (blocking calls),
 * mget.c (multi-get over all servers at once).
 */

#include "memkit.h"
#include "client/dist.h"
#include "memkit/proto.h"

#include <pthread.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* A connection. Owned by exactly one op while checked out, else by its pool. */
typedef struct mk_conn {
    int fd;                     /* -1: not connected yet */
    bool connecting;            /* non-blocking connect() in progress, or its TLS handshake */
    struct ssl_st *ssl;         /* TLS (tls.c), or NULL: plain */
    short want;                 /* POLLIN or POLLOUT: what the last I/O call that returned EAGAIN
                                   waits for (TLS may need to write to read, and to read to write) */
    bool unsynced;              /* a classic noreply request was sent: a stray reply may follow */
    bool binary;                /* speaks the binary protocol (the client's binary option) */
    uint32_t quiet_open;        /* quiet requests (noreply: meta q, or binary quiet opcodes) since the last "mn"/noop */
    uint32_t pending_mn;        /* "mn"s sent whose "MN" has not been read yet: the failures of the quiet
                                   requests before them, then "MN", come before any other reply */
    bool blocking;              /* O_NONBLOCK cleared and SO_RCVTIMEO = io_timeout_ms set (mk_op_wait) */
    int64_t idle_since;         /* mk__now_ms() when it was last returned to the pool */
    char *rbuf;                 /* received bytes: [rpos, rlen) not parsed yet */
    size_t rpos, rlen, rcap;
} mk_conn;

/* Auto-pipelining (pipe.c): the calls to one server that share a connection. lock guards every field
 * and the pipe fields of the ops in q and f. */
typedef struct mk_pipe {
    pthread_mutex_t lock;
    mk_conn *conn;              /* checked out of the pool while n > 0, else NULL */
    struct mk_op *qh, *qt;      /* requests not written yet, oldest first (their bytes are in wbuf) */
    struct mk_op *fh, *ft;      /* requests written, their replies due in this order */
    size_t n;                   /* ops in the pipe (q, f, and done ops whose thread has not left yet) */
    size_t ghosts;              /* of them, ghosts in f: noreply calls whose callers returned */
    char *wbuf;                 /* q's request bytes, in order */
    size_t wlen, wcap;
    char *spare;                /* the writer's buffer: wbuf and spare swap when a write starts */
    size_t spare_cap;
    int cause;                  /* broken: why (MK_EIO, MK_ETIMEDOUT, MK_EPROTO) */
    bool connecting, writing, reading;   /* roles: one thread each, doing I/O without the lock */
    bool broken;                /* the connection failed: repaired once no role is held */
} mk_pipe;

typedef struct mk_server {
    char *name;                 /* "host:port" or the unix path */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool is_unix;

    /* pool: lock protects idle, nidle and total */
    pthread_mutex_t lock;
    struct mk_pool_waiter *wh, *wt; /* callers waiting for a connection, oldest first (pool.c) */
    mk_conn **idle;             /* stack of idle connections, capacity pool_size */
    size_t nidle;
    size_t total;               /* connections that exist (idle + checked out) */

    /* failover, lock-free */
    atomic_int failures;        /* consecutive failures */
    _Atomic int64_t dead_until; /* alive when now >= dead_until: 0, or MK_DEAD until a probe succeeds */
    _Atomic int64_t probe_at;   /* dead: monotonic ms when probe.c tries it next */
    atomic_int meta;            /* speaks the meta protocol: 0 not asked yet, 1 yes, -1 no (probe.c) */
    mk_pipe pipe;               /* auto-pipelining (mk_options.pipeline) */
    struct {                    /* mk_server_counters, relaxed atomics */
        _Atomic uint64_t errors, timeouts, ejections, rejoins, probes, retries, pool_waits, pool_timeouts,
            noreply_failed;
    } n;
} mk_server;

#define MK_DEAD INT64_MAX       /* dead_until of a dead server: only the probe (or mk_server_revive) ends it */

struct mk_client {
    mk_options opt;             /* opt.username/password point into cred */
    char *cred;                 /* the SASL user name and password, NUL-separated (or NULL) */
    mk_server *servers;
    size_t n;
    mk_dist_kind kind;
    mk_dist *dist;              /* over all servers */
    mk_server_spec *specs;      /* copy of the parsed list (strings in spec_strings) */
    char *spec_strings;

    /* auto-eject: a dist over the live servers, rebuilt when the live set changes */
    pthread_rwlock_t live_lock;
    unsigned char *live_set;    /* 1 per live server at the last rebuild */
    mk_dist *live_dist;         /* NULL when all servers are live (use dist) or none is */
    size_t *live_map;           /* live_dist index -> server index */
    size_t nlive;

    /* probe.c: the thread that probes dead servers (probe_lock guards the flags) */
    pthread_mutex_t probe_lock;
    pthread_cond_t probe_cond;
    pthread_t probe_thread;
    bool probe_running;         /* the thread is in its loop */
    bool probe_joinable;        /* a thread was started and not joined yet */
    bool probe_stop;            /* mk_client_destroy: end it */

    struct ssl_ctx_st *tls;     /* opt.tls: the TLS context (CA, client certificate), else NULL */
    _Atomic uint32_t opaque_seq;/* op.c: the last O token given to a meta request */
    char *tls_name;             /* opt.tls_server_name copied, or NULL */
};

/* ---- time ---- */
int64_t mk__now_ms(void);
/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines (mk__now_ms() values). */
void mk__cond_init_mono(pthread_cond_t *cond);

/* ---- pool.c ---- */
/* Get a connection for server s: an idle one, a new unconnected one (fd -1) while
 * total < pool_size, else wait until deadline_ms (blocking) or return MK_EAGAIN.
 * *full is set when the pool had no connection to give at once. */
int mk__pool_get(mk_client *c, mk_server *s, int64_t deadline_ms, bool blocking, bool *full, mk_conn **out);
/* The same; now: the caller's recent mk__now_ms() (idle-connection rule). */
int mk__pool_get_at(mk_client *c, mk_server *s, int64_t deadline_ms, bool blocking, int64_t now, bool *full,
                    mk_conn **out);
/* Return a connection: reusable (kept idle) or not (closed). */
void mk__pool_put(mk_client *c, mk_server *s, mk_conn *conn, bool reusable);
/* The same with the caller's recent mk__now_ms(). */
void mk__pool_put_at(mk_client *c, mk_server *s, mk_conn *conn, bool reusable, int64_t now);
void mk__pool_close_idle(mk_server *s);
bool mk__server_alive(const mk_server *s, int64_t now);
void mk__server_ok(mk_server *s);
void mk__server_failed(mk_client *c, mk_server *s);
/* A probe found dead server s back: it is alive, its failures forgotten. */
void mk__server_rejoin(mk_server *s);

/* ---- probe.c ---- */
void mk__probe_init(mk_client *c);
/* A server just died: make sure the probe thread runs (and looks at it). */
void mk__probe_kick(mk_client *c);
/* Stop and join the thread (mk_client_destroy). */
void mk__probe_stop(mk_client *c);
/* In a forked child: the parent's thread is not there; start one if a server is dead. */
void mk__probe_after_fork(mk_client *c);
/* The server for a key with failover applied, or MK_ESERVERDEAD / MK_ENOSERVER. */
int mk__pick(mk_client *c, const char *key, size_t nkey);
/* The same, with the caller's mk__now_ms() (one clock read for a whole multi-get). */
int mk__pick_at(mk_client *c, const char *key, size_t nkey, int64_t now);
/* srv[i] = mk__pick_at(c, keys[i], nkeys[i], now) for i < n (ketama hashes in vector lanes). */
void mk__pick_many(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n, int64_t now, int *srv);

/* ---- conn.c ---- */
mk_conn *mk__conn_new(void);
void mk__conn_free(mk_conn *conn);
void mk__conn_close(mk_conn *conn);
/* Start a non-blocking connect (and, with TLS, its handshake): 0 connected, MK_EAGAIN in progress
 * (wait for conn->want), or MK_ECONNECT / MK_ETLS / MK_EIO. */
int mk__conn_connect(mk_client *c, mk_server *s, mk_conn *conn);
/* Go on with a connect in progress: the same results. */
int mk__conn_connect_finish(mk_client *c, mk_server *s, mk_conn *conn);
/* A pooled connection about to be reused: false if it has stray data or EOF pending (one poll());
 * the replies of its quiet requests that have arrived are read first (mk__conn_drain). */
bool mk__conn_usable(mk_server *s, mk_conn *conn);
/*
 * Read the buffered replies of quiet requests (while pending_mn or quiet_open):
 * an "MN" settles one pending "mn"; any other line is a quiet request not
 * carried out (not stored, not found, cas mismatch, an error), counted in s's
 * noreply_failed. Returns 0 or MK_EPROTO.
 */
int mk__conn_drain(mk_server *s, mk_conn *conn);
/* mk__conn_drain over what has arrived, reading without waiting: 0, MK_EPROTO, MK_EIO (EOF) or MK_ENOMEM. */
int mk__conn_drain_ready(mk_server *s, mk_conn *conn);
/* A connection just connected: make it blocking with SO_RCVTIMEO = io_timeout_ms, so that
 * mk_op_wait can wait for a reply with one recv(). Every other send/recv uses MSG_DONTWAIT.
 * A TLS connection stays non-blocking (OpenSSL's reads and writes take no flags). */
void mk__conn_ready(mk_client *c, mk_conn *conn);
/* Make room for at least `want` more bytes in rbuf. 0 or MK_ENOMEM. */
int mk__conn_reserve(mk_conn *conn, size_t want);
/* Grow *buf (capacity *cap, `initial` when it has none) by doubling until it holds `total` bytes.
 * 0 or MK_ENOMEM (then *buf is unchanged). The receive buffers and the pipes' write buffers use it. */
int mk__buf_grow(char **buf, size_t *cap, size_t total, size_t initial);

/* ---- tls.c ---- */
/* Build c->tls from c->opt (CA file or the system's, client certificate and key, verification):
 * 0, or MK_EINVAL / MK_ENOMEM with a one-line message in errbuf. */
int mk__tls_create(mk_client *c, char *errbuf, size_t errlen);
void mk__tls_destroy(mk_client *c);
/* The TCP connection is up: start TLS on it when the client uses TLS and s is not a unix socket
 * (conn->ssl set, conn->connecting kept true). 0 or MK_ENOMEM. */
int mk__tls_attach(mk_client *c, mk_server *s, mk_conn *conn);
/* One step of the handshake: 0 done, MK_EAGAIN (wait for conn->want), MK_ETLS (refused: the
 * certificate, the host name, the protocol) or MK_EIO (the peer went away). */
int mk__tls_handshake(mk_conn *conn);
/* Free the TLS state without a word on the wire (close, and a forked child's inherited sockets). */
void mk__tls_forget(mk_conn *conn);
/*
 * The byte moves of every connection, plain or TLS, with recv()/send() results: bytes moved, 0 at
 * the end of the stream (recv), or -1 with errno (EAGAIN: wait for conn->want; EIO: a TLS error).
 * flags are MSG_DONTWAIT / MSG_MORE / 0 for a plain socket (MSG_NOSIGNAL is always added); TLS
 * sockets are always non-blocking and ignore them. mk__conn_sendv writes from iov[0..cnt), at most
 * MK_TLS_CHUNK bytes a call over TLS (callers loop, as for a short sendmsg).
 */
ssize_t mk__conn_recv(mk_conn *conn, void *buf, size_t len, int flags);
ssize_t mk__conn_send(mk_conn *conn, const void *buf, size_t len, int flags);
ssize_t mk__conn_sendv(mk_conn *conn, const struct iovec *iov, size_t cnt, int flags);
/* TLS only: decrypted bytes buffered inside OpenSSL that a poll() on the socket would not show. */
bool mk__conn_buffered(const mk_conn *conn);
#define MK_TLS_CHUNK 16384

/* Pooled connections idle for less than this are reused without a poll() check: a
 * stale one (closed by the server meanwhile) is caught by its first read or write
 * and the op retried once on a fresh connection (op.c). */
#define MK_IDLE_CHECK_MS 100

/* ---- op.c ---- */
/* The op (defined here so that blocking calls can keep one on the stack). */
enum op_state { ST_CHECKOUT, ST_CONNECT, ST_WRITE, ST_READ, ST_DONE };

struct mk_op {
    mk_client *c;
    mk_op_args a;
    int server;
    mk_server *s;
    mk_conn *conn;
    enum op_state state;
    bool blocking;
    bool expect_reply;
    bool quiet;                 /* noreply sent in meta quiet mode and closed by "mn" (pending_mn) */
    bool binary;                /* the binary protocol (client option) */
    bool auth_pending;          /* a SASL auth went ahead of the request: its answer comes first */
    bool heap;                  /* allocated by mk_op_start (freed by mk_op_destroy) */
    bool reused;                /* the connection came from the pool without a liveness check */
    bool got_reply;             /* a reply byte arrived for this op */
    bool retried;               /* the one transparent retry on a fresh connection was used */
    bool wait_eof;              /* mk_op_wait's blocking recv saw EOF or a reset */
    bool waits;                 /* the caller calls mk_op_wait after every MK_EAGAIN (MK_WAITS, mk_op_run) */
    bool waited;                /* mk_op_wait ran since the op started (t0 is stale) */
    bool pool_waited;           /* counted in the server's pool_waits */
    bool fresh;                 /* the I/O deadline was set in this step and nothing waited since */
    bool piped;                 /* eligible for the server's pipe (pipe.c) when run blocking */
    bool ghost;                 /* evpipe.c, pipe.c: a left caller's stand-in that reads its reply and drops it */
    bool forget;                /* pipe.c: a noreply call sent as a plain request; its ghost reads the reply */
    unsigned char pstate;       /* pipe.c: P_NONE, P_Q, P_F, P_DONE */
    struct mk_op *pnext;        /* pipe.c, evpipe.c: next in q or f */
    void *pudata;               /* evpipe.c: the caller's token, given back by mk_evpipe_done */
    pthread_cond_t pcond;       /* pipe.c: the caller's thread waits here */
    int64_t t0;                 /* mk__now_ms() at start: the one clock read of a fast call */
    int rc;
    int64_t deadline;
    short events;

    char *req;                  /* the request line(s): small[] or malloc'd */
    size_t nreq;
    struct iovec *iov;          /* what is left to write: iov[iovi..niov) (iov_small or malloc'd) */
    size_t iovi, niov;
    struct iovec iov_small[4];
    size_t *hdr_end;            /* batch store: end offset of header i in req (malloc'd) */

    size_t kpos;                /* multi-get: next key position to match; batch: next reply's key */
    size_t hits;
    mk_item item;               /* single get without value_cb: the hit */
    uint64_t number;
    unsigned meta_state;        /* MK_OP_MGET: MK_META_* */
    uint32_t opaque;            /* MK_OP_MGET, MK_OP_INVALIDATE: the request's O token (its reply must echo it) */
    char text[256];
    char small[1024];
};


/* The op queues of pipe.c and evpipe.c (linked through pnext): append op at the tail; take op out
 * (true if it was there). */
static inline void mk__opq_push(mk_op **h, mk_op **t, mk_op *op)
{
    op->pnext = NULL;
    if (*t)
        (*t)->pnext = op;
    else
        *h = op;
    *t = op;
}

static inline bool mk__opq_unlink(mk_op **h, mk_op **t, mk_op *op)
{
    mk_op *prev = NULL;
    for (mk_op *x = *h; x; prev = x, x = x->pnext) {
        if (x != op)
            continue;
        if (prev)
            prev->pnext = x->pnext;
        else
            *h = x->pnext;
        if (*t == x)
            *t = prev;
        x->pnext = NULL;
        return true;
    }
    return false;
}

/* Put g in op's place in the queue h..t (op must be in it); op leaves it. */
static inline void mk__opq_replace(mk_op **h, mk_op **t, mk_op *op, mk_op *g)
{
    g->pnext = op->pnext;
    if (*h == op) {
        *h = g;
    } else {
        mk_op *prev = *h;
        while (prev->pnext != op)
            prev = prev->pnext;
        prev->pnext = g;
    }
    if (*t == op)
        *t = g;
    op->pnext = NULL;
}

/* Whether c's connections can be pipelined: plain text connections, without TLS or SASL/-Y credentials
 * (pipe.c and evpipe.c share one socket between callers; the binary protocol and TLS state do not). */
static inline bool mk__pipelinable(const mk_client *c)
{
    return !c->opt.binary && c->tls == NULL && c->opt.username == NULL;
}

/* The bytes of op's request not written yet (iov[iovi..niov)), and a copy of them into dst. */
size_t mk__op_req_len(const mk_op *op);
void mk__op_req_copy(const mk_op *op, char *dst);
/* Parse op's text or meta reply from cn's buffer (no binary, authentication or quiet replies):
 * 1 when more bytes are needed (*want: at least this many, if known), else the op's final code. */
int mk__op_parse(mk_op *op, mk_conn *cn, size_t *want);
/* End op with rc: server counters, batch results, ST_DONE (its connection, if any, back to the pool). */
int mk__op_finish(mk_op *op, int rc);
/* May op's request be sent twice with the same outcome (get family, set, touch, flush_all, version, stats)? */
bool mk__op_repeatable(const mk_op *op);
/* Whether rc is a code the server gave (a reply was read), not a failure to talk to it. */
bool mk__op_replied(int rc);
/* A noreply call's outcome rc, read from its reply: a failure the server replied is counted in its
 * server's noreply_failed. */
void mk__count_noreply(const mk_op *op, int rc);
/* A ghost: a heap copy of a written op whose caller left (or, pipe.c, a noreply call that returned), which
 * reads the op's reply and drops it. It keeps only what parsing the reply reads (the keys); no value, no
 * callbacks, no outcomes, no request. NULL: no memory. mk__op_ghost_free frees it. */
mk_op *mk__op_ghost(const mk_op *op);
/* A forget op (mk_op.forget) the pipe could not take: back to a noreply request for the pool. 0, or the
 * op ends with an error (its code). */
int mk__op_unforget(mk_op *op);
void mk__op_ghost_free(mk_op *g);

/* ---- pipe.c: auto-pipelining ---- */
void mk__pipe_init(mk_pipe *p);
void mk__pipe_destroy(mk_pipe *p);
/* A forked child: forget the parent's ops, close its copy of the connection. No lock taken. */
void mk__pipe_after_fork(mk_pipe *p);
/* Run a piped op to completion on the calling thread, sharing the server's connection with the
 * other callers: its final code. MK_EAGAIN: the pipe is full; run the op on the pool instead. */
int mk__pipe_run(mk_op *op);

/* Whether s speaks the meta protocol (asked once on a connection of its own, remembered): 1, 0, or an error. */
int mk__server_meta(mk_client *c, mk_server *s);

/* Ops that have a quiet meta form for MK_NOREPLY (store, delete, incr, decr). */
bool mk__quiet_capable(mk_opcode code);

/* ---- binop.c: the binary protocol (mk_options.binary) ---- */
#define MK_CRED_MAX 255                               /* longest SASL user name or password */
#define MK_AUTH_FRAME_MAX (24 + 5 + 2 + 2 * MK_CRED_MAX) /* a SASL_AUTH PLAIN request */

/* The -Y token for the client's credentials into out (mk_compose_auth_token); its length, 0 if it does not fit. */
static inline size_t mk__ascii_auth_token(char *out, size_t cap, const mk_options *o)
{
    return mk_compose_auth_token(out, cap, o->username, strlen(o->username), o->password, strlen(o->password));
}
/* Compose op's request frames into op->req and its iovecs. 0 or MK_ENOMEM. */
int mk__bin_compose(mk_op *op);
/* A SASL_AUTH PLAIN frame for user/password into out; its length, 0 if cap is too small. */
size_t mk__bin_auth_frame(char *out, size_t cap, const char *user, const char *password);
/*
 * Act on the reply frame at p[0..avail): 1 to read more (*want bytes at least,
 * when known), else the op's final code. *used: the bytes consumed.
 */
int mk__bin_read(mk_op *op, const char *p, size_t avail, size_t *used, size_t *want);
/* One frame of a quiet stream at p: 1 (consumed *used bytes; *noop: it answers a noop), 0 incomplete, -1 garbage. */
int mk__bin_drain_frame(const char *p, size_t avail, size_t *used, bool *noop);
/* A NOOP request (closes a stream of quiet requests); returns 24. */
size_t mk__bin_noop_frame(char *out);
/* op.c helpers the codecs share: the iovecs over op->req and the values, a value hit, and the text of
 * an error or version reply. */
int mk__op_build_iov(mk_op *op);
int mk__op_on_value(mk_op *op, const mk_response *r, const char *data);
void mk__op_set_text(mk_op *op, const char *p, size_t n);

/* mk_op_start for callers that already checked every key (mk_mget): no second check. */
int mk__op_start(mk_client *c, const mk_op_args *args, mk_op **out, bool keys_checked);
/* Initialise a caller-provided op (e.g. on the stack: no allocation); release with
 * mk__op_release. Same codes as mk_op_start. */
int mk__op_init(mk_client *c, const mk_op_args *args, mk_op *op, bool keys_checked);
void mk__op_release(mk_op *op);
/* Where an op of an mget wants to wait: fd, events and deadline. */
int64_t mk__op_deadline(const mk_op *op);
void mk__op_set_blocking(mk_op *op, bool blocking);

#endif /* MK_CLIENT_CLIENT_H */
