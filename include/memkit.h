/* memkit.h — libmemkit, the memcached client: distribution, failover, a thread-safe pool, a non-blocking core. */
#ifndef MEMKIT_H
#define MEMKIT_H

/*
 * One mk_client talks to a list of memcached-compatible servers over the classic
 * text protocol. It spreads keys over the servers (ketama by default, matching
 * libmemcached / twemproxy / python-memcached key for key), keeps a bounded pool
 * of connections per server that any number of threads share, and marks a
 * server dead after a number of consecutive failures.
 *
 *   mk_options opt;
 *   mk_options_init(&opt);                   defaults, then change what you need
 *   mk_client *c;
 *   int rc = mk_client_create(&c, "10.0.0.1:11211,10.0.0.2:11211", &opt, err, sizeof err);
 *   rc = mk_set(c, "k", 1, "v", 1, 0, 0);     0, or a negative MK_E* code
 *   mk_item it;
 *   rc = mk_get(c, "k", 1, &it);             0 hit, MK_ENOTFOUND miss
 *   mk_item_clear(&it);
 *   mk_client_destroy(c);
 *
 * Errors: every int-returning function returns 0 (or a documented non-negative
 * value) on success and a negative MK_E* code on failure; mk_strerror() names it.
 *
 * Threads: an mk_client may be used by any number of threads at once, except
 * mk_client_destroy(), which must not race with anything. Every call is bounded:
 * it waits at most checkout_timeout_ms for a pooled connection, connect_timeout_ms
 * to connect, then io_timeout_ms for the request and its whole reply.
 *
 * Keys are byte strings (pointer + length), checked before anything is sent:
 * 1..250 bytes, no space, no control byte (< 0x20 or 0x7f). Values are bytes plus
 * 32-bit flags. exptime is memcached's: 0 never, up to 30 days relative seconds,
 * otherwise a unix time; negative expires at once.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MK_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ errors */

typedef enum mk_error {
    MK_OK = 0,
    MK_ENOTFOUND = -1,       /* miss: no such key (get, delete, incr, touch, cas) */
    MK_ENOTSTORED = -2,      /* add/replace/append/prepend condition not met */
    MK_EEXISTS = -3,         /* cas: the item changed since it was read */
    MK_EINVAL = -4,          /* bad argument (NULL, unknown op, bad option) */
    MK_ENOMEM = -5,          /* out of memory */
    MK_EBADKEY = -6,         /* key empty, longer than 250 bytes, or with a space/control byte */
    MK_EBADSERVERS = -7,     /* server list cannot be parsed */
    MK_ERESOLVE = -8,        /* a host name does not resolve */
    MK_ECONNECT = -9,        /* connection refused or failed */
    MK_ETIMEDOUT = -10,      /* connect or I/O timeout */
    MK_EIO = -11,            /* socket error or the server closed the connection */
    MK_EPROTO = -12,         /* the server's reply is not valid memcached protocol */
    MK_ESERVERDEAD = -13,    /* the key's server is marked dead (fail-fast mode) */
    MK_ENOSERVER = -14,      /* every server is marked dead */
    MK_EPOOLTIMEOUT = -15,   /* no pooled connection became free within checkout_timeout_ms */
    MK_ECLIENTERR = -16,     /* the server replied CLIENT_ERROR (e.g. bad data chunk) */
    MK_ESERVERERR = -17,     /* the server replied SERVER_ERROR (e.g. object too large, out of memory) */
    MK_EERROR = -18,         /* the server replied ERROR (command unknown to it) */
    MK_EAGAIN = -19,         /* non-blocking interface: wait for mk_op_fd()/mk_op_events(), then step again */
    MK_ERANGE = -20,         /* a server index out of range, or a buffer too small */
    MK_ENOTNUM = -21,        /* incr/decr on a value that is not a decimal number (CLIENT_ERROR) */
    MK_EAUTH = -22,          /* the server refused the credentials (or wants some: binary 0x20, -Y's
                                "CLIENT_ERROR unauthenticated") */
    MK_ETLS = -23            /* the TLS handshake was refused: the server's certificate is not trusted or
                                names another host, the server wants a client certificate, or it speaks
                                no TLS. Like MK_EAUTH, it does not mark the server dead. */
} mk_error;

/* mk_strerror — a static, human-readable string for an MK_E* code ("unknown error" otherwise). */
const char *mk_strerror(int err);

/* ----------------------------------------------------------------- options */

typedef enum mk_distribution {
    MK_DISTRIBUTION_KETAMA = 0,     /* libketama / libmemcached KETAMA_WEIGHTED / twemproxy ketama+md5 (default) */
    MK_DISTRIBUTION_MODULA,         /* python-memcached: crc32 buckets, weights by repetition, rehash on dead */
    MK_DISTRIBUTION_CONSISTENT,     /* libmemcached's default consistent (ketama, one-at-a-time hash) */
    MK_DISTRIBUTION_RENDEZVOUS,     /* pymemcache HashClient */
    MK_DISTRIBUTION_KETAMA_FNV1A    /* twemproxy's default: ketama + fnv1a_64 */
} mk_distribution;

/* Parse "ketama", "modula", "consistent", "rendezvous", "ketama_fnv1a". Returns 0 or MK_EINVAL. */
int mk_distribution_parse(const char *name, mk_distribution *out);

typedef struct mk_options {
    mk_distribution distribution; /* default MK_DISTRIBUTION_KETAMA */
    int connect_timeout_ms;       /* default 1000; > 0 */
    int io_timeout_ms;            /* default 1000; > 0: one request and its whole reply */
    int failure_limit;            /* default 2: consecutive failures before a server is marked dead; >= 1 */
    int retry_interval_ms;        /* default 2000: a dead server is probed (connect + version) in the
                                     background this long after it died, and again after every failed
                                     probe; it rejoins once a probe succeeds. Calls never try it meanwhile. */
    bool flush_on_rejoin;         /* default false: the probe flushes a server (flush_all) before it rejoins,
                                     so values written elsewhere while it was away are never served stale
                                     from it (python-memcached's flush_on_reconnect) */
    bool auto_eject;              /* default false: keys of a dead server fail fast with MK_ESERVERDEAD;
                                     true: they move to the live servers (continuum rebuilt over them) */
    int pool_size;                /* default 8: most connections open to one server; >= 1 */
    int checkout_timeout_ms;      /* default 1000: longest wait for a free pooled connection */
    bool tcp_nodelay;             /* default true */
    bool binary;                  /* default false: memcached's binary protocol instead of the text one
                                     (for servers that speak nothing else, and for SASL); no herd calls */
    const char *username;         /* default NULL: with password, SASL PLAIN on every new connection
                                     (binary protocol; copied by mk_client_create) */
    const char *password;
    bool ascii_auth;              /* default false: send username/password as memcached's -Y token (the
                                     text protocol's "set" with "user password") on every new connection,
                                     instead of SASL; neither may be empty or hold a space */
    bool tls;                     /* default false: TLS (OpenSSL, 1.2 or newer) on every TCP connection,
                                     probes included; unix sockets stay plain */
    const char *tls_ca_file;      /* default NULL: the system's CA store; else a PEM file of the CAs
                                     trusted to sign the servers' certificates (read by mk_client_create) */
    const char *tls_cert_file;    /* default NULL: a PEM client certificate (chain) for servers that ask
                                     for one (memcached's ssl_verify_mode 2/3); needs tls_key_file */
    const char *tls_key_file;     /* its PEM private key */
    const char *tls_server_name;  /* default NULL: each server is checked against its host as written in
                                     the list (a DNS name or an IP address, also sent as SNI for names);
                                     set: every server's certificate must name this host instead */
    bool tls_verify;              /* default true: refuse a server whose certificate is not signed by a
                                     trusted CA or does not name its host (MK_ETLS); false: encrypt
                                     without checking who answers (tests only: open to a man in the middle) */
    bool pipeline;                /* default false: auto-pipelining. Blocking calls (mk_get, mk_set, ... and
                                     mk_op_run) made at the same time from several threads to one server
                                     share one connection: requests queued while another is being written go
                                     out in the next write, one caller reads the replies and hands each to
                                     its caller in order. Applies on plain connections without SASL or -Y
                                     credentials to single-key calls, noreply ones included (sent as plain
                                     requests: the call returns once its bytes are taken for writing and
                                     the next reader drops its reply), and to multi-key ops run with
                                     mk_op_run (a value_cb needs MK_CB_ANY_THREAD); other calls, and calls
                                     beyond pipeline_depth, use the pool as before (docs/client.md) */
    int pipeline_depth;           /* default 64: most requests one pipelined connection carries at once */
    size_t pipeline_max_value;    /* default 16384: larger values are not copied into the shared write
                                     buffer; those stores use the pool */
} mk_options;

/* mk_options_init — fill *opt with the defaults above. */
void mk_options_init(mk_options *opt);

/* ------------------------------------------------------------------ client */

typedef struct mk_client mk_client;

/*
 * mk_client_create — a client for the servers in `servers`: entries separated by
 * commas or spaces, each "host", "host:port", "host:port:weight", "host:port weight",
 * "[v6addr]:port[:weight]", or a unix socket path ("/path" or "unix:/path").
 * Host names are resolved here, once (first address getaddrinfo returns).
 * No connection is opened until a call needs one.
 *
 * opt may be NULL (defaults); it is copied. On failure returns MK_EBADSERVERS,
 * MK_ERESOLVE, MK_EINVAL (bad options) or MK_ENOMEM, sets *out to NULL and, if
 * errbuf is non-NULL, writes a one-line NUL-terminated message into it.
 * Returns 0 and *out (free with mk_client_destroy) on success.
 */
int mk_client_create(mk_client **out, const char *servers, const mk_options *opt,
                     char *errbuf, size_t errlen);

/* mk_client_destroy — close every connection and free the client. NULL is fine.
 * No other call on this client may be in progress or follow. */
void mk_client_destroy(mk_client *c);

/* mk_client_after_fork — call in a child process right after fork(), before any
 * other call on c, while the child has one thread: the child forgets every
 * connection and lock inherited from the parent (idle sockets are closed in the
 * child only) and opens fresh connections as it needs them. The parent's
 * connections are unaffected. */
void mk_client_after_fork(mk_client *c);

/* mk_server_count — number of servers in the list (weights not expanded). */
size_t mk_server_count(const mk_client *c);

/* mk_server_name — "host:port" or the unix path of server i; NULL if out of range.
 * The string lives as long as the client. */
const char *mk_server_name(const mk_client *c, size_t i);

/* mk_server_weight — server i's weight as the list gave it (1 when it gave none); 0 if out of range. */
uint32_t mk_server_weight(const mk_client *c, size_t i);

/* mk_server_alive — false while server i is marked dead (until a probe finds it back). */
bool mk_server_alive(const mk_client *c, size_t i);

/* What happened on server i since the client was created (relaxed counters, thread-safe). */
typedef struct mk_server_counters {
    uint64_t errors;        /* calls that failed on the network: connect, I/O, timeout, bad reply */
    uint64_t timeouts;      /* of those, timeouts */
    uint64_t ejections;     /* times it was marked dead */
    uint64_t rejoins;       /* times a probe found it back */
    uint64_t probes;        /* probes sent while it was dead */
    uint64_t retries;       /* calls retried once on a fresh connection (a pooled one had gone stale) */
    uint64_t pool_waits;    /* calls that waited for a free pooled connection */
    uint64_t pool_timeouts; /* calls that gave up waiting (MK_EPOOLTIMEOUT) */
    uint64_t noreply_failed;/* MK_NOREPLY requests to a meta server that were not carried out (not
                               stored, not found, cas mismatch, an error): learnt from its quiet mode */
} mk_server_counters;

/* mk_server_counters_get — server i's counters into *out: 0, MK_EINVAL or MK_ERANGE. */
int mk_server_counters_get(const mk_client *c, size_t i, mk_server_counters *out);

/* mk_server_revive — forget server i's failures and end its dead interval now
 * (python-memcached's forget_dead_hosts); i == MK_ALL_SERVERS: every server.
 * Returns 0, MK_EINVAL (c NULL) or MK_ERANGE. Thread-safe (atomics; a call in
 * flight on that server may still count its own failure afterwards). */
#define MK_ALL_SERVERS ((size_t)-1)
int mk_server_revive(mk_client *c, size_t i);

/* mk_client_close_idle — close every idle pooled connection of every server
 * (python-memcached's disconnect_all). Connections checked out by calls in
 * progress are not touched; they return to the pool as usual. Thread-safe;
 * NULL is fine. */
void mk_client_close_idle(mk_client *c);

/*
 * mk_check_key — 0 if key may go on the text protocol's wire (1 to 250 bytes, no
 * space, control byte or DEL; other bytes, UTF-8 included, are fine), else
 * MK_EBADKEY. Every call that takes a key checks it this way. Pure; thread-safe.
 */
int mk_check_key(const char *key, size_t nkey);

/*
 * mk_server_for_key — the index of the server the next call on this key would use
 * (failover applied), or a negative code: MK_EBADKEY, MK_ESERVERDEAD, MK_ENOSERVER.
 * Thread-safe.
 */
int mk_server_for_key(mk_client *c, const char *key, size_t nkey);

/*
 * mk_servers_for_keys — mk_server_for_key for n keys at once (one clock read,
 * the distribution's batch lookup): out[i] is keys[i]'s server index or its
 * negative code. Returns 0, or MK_EINVAL (c, or an array with n > 0, is NULL;
 * out is then untouched). Thread-safe.
 */
int mk_servers_for_keys(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n, int *out);

/* ------------------------------------------------------------------ values */

/* An item read from a server. value is malloc'd, owned by the item, and followed
 * by a NUL byte not counted in nvalue (so text values can be printed). key is set
 * only by the multi-get callback (a view into the caller's key array). */
typedef struct mk_item {
    const char *key;
    size_t nkey;
    char *value;
    size_t nvalue;
    uint32_t flags;
    uint64_t cas;               /* gets/gats only; 0 otherwise */
} mk_item;

/* mk_item_clear — free item->value and zero the item. NULL is fine. */
void mk_item_clear(mk_item *item);

/* Mode bits for calls that take `mode`. */
#define MK_NOREPLY 1u  /* send with "noreply": returns 0 once the request is written;
                          the outcome is not returned. Stores, deletes and incr/decr to a
                          server that speaks meta go in its quiet mode (closed by "mn"):
                          a failure is counted in the server's noreply_failed and can never
                          be read as the reply of a later call; the blocking calls ask the
                          server once whether it speaks meta (docs/client.md, "noreply").
                          With mk_options.pipeline a blocking single-key noreply call goes
                          through the pipe instead (see there): it returns 0 once its
                          request is taken for writing */
#define MK_WAITS 2u    /* mk_op_args.mode: the caller calls mk_op_wait() after every MK_EAGAIN,
                          so once the request is sent mk_op_step returns MK_EAGAIN at once
                          instead of trying a recv() that would almost always find nothing.
                          Then callbacks (value_cb, stat_cb) run only in steps made after a
                          step returned MK_EAGAIN with POLLIN in mk_op_events() (the reply
                          phase): a caller may run the earlier steps without its lock. */
#define MK_CB_ANY_THREAD 4u /* mk_op_args.mode: value_cb may run on another thread. With
                          mk_options.pipeline, a blocking op (mk_op_run) that has a value_cb is
                          pipelined only with this bit: then the thread that reads the shared
                          connection's replies calls it, with the pipe's lock held, one call at a
                          time, all before mk_op_run returns. A multi-key get whose value_cb has
                          been called is not sent again after a broken connection */

/* ------------------------------------------------------- single-key calls */

/*
 * mk_get / mk_gets — read one key. Returns 0 and fills *out (release with
 * mk_item_clear), MK_ENOTFOUND on a miss (*out zeroed), or an error (*out zeroed).
 * mk_gets also fills out->cas. Thread-safe.
 */
int mk_get(mk_client *c, const char *key, size_t nkey, mk_item *out);
int mk_gets(mk_client *c, const char *key, size_t nkey, mk_item *out);

/* mk_gat / mk_gats — get and touch: as mk_get/mk_gets, also setting the expiry. */
int mk_gat(mk_client *c, const char *key, size_t nkey, int64_t exptime, mk_item *out);
int mk_gats(mk_client *c, const char *key, size_t nkey, int64_t exptime, mk_item *out);

typedef enum mk_store_op {
    MK_STORE_SET = 0,
    MK_STORE_ADD,
    MK_STORE_REPLACE,
    MK_STORE_APPEND,
    MK_STORE_PREPEND,
    MK_STORE_CAS
} mk_store_op;

/*
 * mk_store — set/add/replace/append/prepend/cas one item. value[0..nvalue) is
 * copied to the socket before the call returns (the caller keeps ownership).
 * cas is used only by MK_STORE_CAS. Returns 0 (STORED), MK_ENOTSTORED (add of an
 * existing key, replace/append/prepend of a missing one), MK_EEXISTS (cas:
 * changed), MK_ENOTFOUND (cas: missing), MK_ESERVERERR (e.g. too large) or an
 * error. With MK_NOREPLY, 0 means "sent". Thread-safe.
 */
int mk_store(mk_client *c, mk_store_op op, const char *key, size_t nkey, const void *value,
             size_t nvalue, uint32_t flags, int64_t exptime, uint64_t cas, unsigned mode);

/* Shorthands for mk_store without noreply. */
int mk_set(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
           uint32_t flags, int64_t exptime);
int mk_add(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
           uint32_t flags, int64_t exptime);
int mk_replace(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
               uint32_t flags, int64_t exptime);
int mk_append(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue);
int mk_prepend(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue);
int mk_cas(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
           uint32_t flags, int64_t exptime, uint64_t cas);

/* mk_delete — 0 (DELETED), MK_ENOTFOUND, or an error. Thread-safe. */
int mk_delete(mk_client *c, const char *key, size_t nkey, unsigned mode);

/*
 * mk_incr / mk_decr — add/subtract delta (decr stops at 0, as in memcached).
 * Returns 0 and the new value in *value (may be NULL; untouched with MK_NOREPLY),
 * MK_ENOTFOUND, MK_ENOTNUM (the value is not a number) or an error.
 */
int mk_incr(mk_client *c, const char *key, size_t nkey, uint64_t delta, uint64_t *value,
            unsigned mode);
int mk_decr(mk_client *c, const char *key, size_t nkey, uint64_t delta, uint64_t *value,
            unsigned mode);

/* mk_touch — set a new expiry. 0 (TOUCHED), MK_ENOTFOUND, or an error. */
int mk_touch(mk_client *c, const char *key, size_t nkey, int64_t exptime, unsigned mode);

/* ------------------------------------------- herd protection (meta protocol) */

/*
 * Against a thundering herd: when a popular value is missing or stale, exactly
 * one caller recomputes it while the others keep serving what is there. Needs a
 * server that speaks memcached 1.6's meta protocol (memkitd, memcached >= 1.6);
 * with another server (twemproxy, older memcached) these calls return MK_EERROR
 * and send nothing (see mk_server_speaks_meta).
 */
#define MK_META_WIN 1u    /* W: this caller won the right to recompute the value and store it */
#define MK_META_STALE 2u  /* X: the value is stale (mk_invalidate): serve it while someone recomputes */
#define MK_META_TOKEN 4u  /* Z: another caller already won; with a placeholder, wait or compute without storing */
#define MK_META_PLACEHOLDER 8u /* the hit is the empty item a vivifying get left (no bytes, flags 0, W or Z):
                                  no value yet, its winner is computing it */

/*
 * mk_server_speaks_meta — whether server i speaks the meta protocol: 1 or 0, or
 * an error when it could not be asked (connect or I/O failure; asked again next
 * time). It is asked once, on a connection of its own ("mn": a meta server says
 * MN, an older one ERROR, twemproxy closes the connection), and remembered.
 * mk_get_meta and mk_invalidate ask before their first request to a server; ops
 * MK_OP_MGET/MK_OP_INVALIDATE to a server known not to speak it fail with MK_EERROR
 * without sending anything; they do not ask a server marked dead (the op fails
 * fast on it). Blocks at most connect_timeout_ms + io_timeout_ms, once per server.
 */
int mk_server_speaks_meta(mk_client *c, size_t i);

/*
 * mk_get_meta — read one key, with herd protection. vivify > 0: on a miss the
 * server stores an empty placeholder (flags 0) living vivify seconds and this
 * caller alone wins; later callers find the placeholder with MK_META_TOKEN.
 * recache > 0: when the item expires within recache seconds, one caller wins
 * early. Returns 0 with *out (value, flags, cas; release with mk_item_clear)
 * and *state (MK_META_* bits; may be NULL), MK_ENOTFOUND on a miss without
 * vivify, or an error. Thread-safe.
 */
int mk_get_meta(mk_client *c, const char *key, size_t nkey, int64_t vivify, int64_t recache, mk_item *out,
                unsigned *state);

/*
 * mk_invalidate — mark key's value stale instead of deleting it (memcached's
 * "md <key> I"): readers keep getting it, with MK_META_STALE, and the first of
 * them wins (MK_META_WIN) and recomputes. exptime > 0 also sets a new expiry
 * (bounding how long the stale value is served). 0, MK_ENOTFOUND or an error.
 */
int mk_invalidate(mk_client *c, const char *key, size_t nkey, int64_t exptime);

/* ------------------------------------------------------------- multi-get */

/* Called once per hit, from the calling thread. item->key/value point into
 * buffers valid only during the call (copy what you keep; do not free).
 * index is the key's position in the caller's array. */
typedef void (*mk_mget_cb)(void *ctx, size_t index, const mk_item *item);

/*
 * mk_mget — get many keys: the keys are grouped by server, one pipelined
 * "get k1 k2 ..." (or "gets") goes to each server, and all servers are in flight
 * together (one poll() over all sockets), so the call costs about one round trip.
 * Every key is checked first: a bad key fails the whole call with MK_EBADKEY and
 * nothing is sent. Duplicated keys are fine (each occurrence gets its callback).
 *
 * Returns 0 when every server involved answered (misses simply get no callback),
 * or the first error met (hits from the servers that answered are still
 * delivered). Thread-safe.
 */
int mk_mget(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n, bool with_cas,
            mk_mget_cb cb, void *ctx);

/*
 * mk_mget_items — mk_mget into an array: items[i] receives key i's item
 * (release each with mk_item_clear; a miss leaves it zeroed with value NULL), and,
 * if rcs is non-NULL, rcs[i] gets 0 (hit), MK_ENOTFOUND (miss) or the error of
 * key i's server. Returns as mk_mget.
 */
int mk_mget_items(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n,
                  bool with_cas, mk_item *items, int *rcs);

/* ------------------------------------------------------ per-server calls */

/* mk_flush_all — flush_all [delay] on every server. Returns 0, or the first
 * error (every server is still tried). Thread-safe. */
int mk_flush_all(mk_client *c, int64_t delay, unsigned mode);

/* mk_version — server i's version string ("1.6.18") into buf (NUL-terminated).
 * Returns 0, MK_ERANGE (bad index or buf too small), or an error. */
int mk_version(mk_client *c, size_t server, char *buf, size_t cap);

/* One "STAT name value" line; the views are valid only during the call. */
typedef void (*mk_stat_cb)(void *ctx, const char *name, size_t nname, const char *value,
                           size_t nvalue);

/* mk_stats — "stats [group]" on server i (group NULL or "" for the general
 * stats); cb is called for each STAT line, on the calling thread. For group
 * "detail dump" each "PREFIX <prefix> get N hit N set N del N" line calls cb with
 * the prefix as name and "get N hit N set N del N" as value; a group the server
 * answers with OK alone ("detail on", "detail off") calls cb never and returns 0.
 * Returns 0 or an error. A dead server is tried anyway (stats are for operators). */
int mk_stats(mk_client *c, size_t server, const char *group, mk_stat_cb cb, void *ctx);

/* ------------------------------------------- non-blocking interface (event loops) */

/*
 * For event loops (the Python module's gevent mode): start an operation, then
 * drive it with mk_op_step() whenever its socket is ready. Every blocking call
 * above is exactly:
 *
 *   mk_op *op; int rc = mk_op_start(c, &args, &op);
 *   while (rc == 0 && (rc = mk_op_step(op)) == MK_EAGAIN)
 *       mk_op_wait(op);        (an event loop: wait for mk_op_fd()/mk_op_events() instead)
 *   ... read the result (mk_op_item, mk_op_number, ...) ...
 *   mk_op_destroy(op);
 *
 * mk_op_step never blocks: it returns MK_EAGAIN when it must wait for
 * mk_op_events() (POLLIN/POLLOUT) on mk_op_fd(), or the final code (0, MK_E*).
 * It checks the deadline itself: a step after mk_op_timeout_ms() reached 0
 * returns MK_ETIMEDOUT. When the server's pool is exhausted mk_op_fd() is -1:
 * wait a short while (at most mk_op_timeout_ms()) and step again.
 * An mk_op belongs to one thread at a time; different ops may run on different
 * threads at once.
 */
typedef struct mk_op mk_op;

typedef enum mk_opcode {
    MK_OP_GET = 0,   /* key, or keys/nkeys/nkeyset on an explicit server (multi-get) */
    MK_OP_GETS,
    MK_OP_GAT,       /* exptime */
    MK_OP_GATS,
    MK_OP_STORE,     /* store_op, value, nvalue, flags, exptime, cas */
    MK_OP_DELETE,
    MK_OP_INCR,      /* delta */
    MK_OP_DECR,
    MK_OP_TOUCH,     /* exptime */
    MK_OP_FLUSH_ALL, /* server, exptime = delay (< 0: none) */
    MK_OP_VERSION,   /* server */
    MK_OP_STATS,     /* server, group, stat_cb */
    MK_OP_MGET,      /* meta protocol: get with herd protection (vivify, recache); see mk_get_meta */
    MK_OP_INVALIDATE /* meta protocol: mark stale (exptime > 0: also a new expiry); see mk_invalidate */
} mk_opcode;

typedef struct mk_op_args {
    mk_opcode code;
    const char *key;                 /* single-key ops */
    size_t nkey;
    const char *const *keys;         /* MK_OP_GET/GETS with several keys: all on `server` */
    const size_t *nkeys;
    size_t nkeyset;                  /* number of keys in keys[]; 0 = use key */
    int server;                      /* -1: chosen from the key; else this server index */
    mk_store_op store_op;
    const void *value;               /* borrowed: must stay valid until the op is destroyed */
    size_t nvalue;
    uint32_t flags;
    int64_t exptime;
    uint64_t cas;
    uint64_t delta;
    int64_t vivify;                  /* MK_OP_MGET: > 0, a miss creates a placeholder living this long and
                                        this caller wins (MK_META_WIN) */
    int64_t recache;                 /* MK_OP_MGET: > 0, win when the item expires within this many seconds */
    unsigned mode;                   /* MK_NOREPLY */
    const char *group;               /* MK_OP_STATS */
    mk_stat_cb stat_cb;
    mk_mget_cb value_cb;             /* get-family: called per hit (else the first hit is kept) */
    void *ctx;
    /* Batches: MK_OP_STORE, MK_OP_DELETE or MK_OP_TOUCH with nkeyset > 0 send one
     * request per key (keys[i]; all to `server`, or to keys[0]'s server when it is -1)
     * in one pipelined write and read the replies in order. store_op, exptime and
     * mode apply to every key. */
    const void *const *values;       /* MK_OP_STORE batch: key i's value (borrowed) */
    const size_t *nvalues;
    const uint32_t *flagsv;          /* MK_OP_STORE batch: key i's flags (NULL: `flags` for all) */
    int *results;                    /* batch: key i's outcome (0, MK_ENOTSTORED, MK_EEXISTS,
                                        MK_ENOTFOUND, MK_ESERVERERR, ... or the op's network
                                        error for keys without a reply); required */
} mk_op_args;

/* mk_op_args_init — zero *a and set server = -1. */
void mk_op_args_init(mk_op_args *a);

/*
 * mk_op_start — validate the arguments and keys, pick the server, and create
 * the op (nothing is sent yet; no blocking). Returns 0 and *out (release with
 * mk_op_destroy), or MK_EINVAL, MK_EBADKEY, MK_ESERVERDEAD, MK_ENOSERVER,
 * MK_ERANGE, MK_ENOMEM with *out = NULL. args and the arrays it points to
 * (keys, value) must stay valid until the op is destroyed.
 */
int mk_op_start(mk_client *c, const mk_op_args *args, mk_op **out);

/*
 * mk_op_start_in — mk_op_start with the op placed in caller memory (no allocation):
 * storage must be aligned for any type (e.g. _Alignas(max_align_t)) and hold at
 * least MK_OP_STORAGE bytes (size), and stay valid until mk_op_destroy(*out),
 * which then releases the op without freeing storage. MK_ERANGE if size is too
 * small; otherwise as mk_op_start.
 */
#define MK_OP_STORAGE 2048
int mk_op_start_in(mk_client *c, const mk_op_args *args, void *storage, size_t size, mk_op **out);

/* mk_op_step — advance the op without blocking: MK_EAGAIN (wait), 0 or MK_E* (done).
 * Once done, further steps return the same code. */
int mk_op_step(mk_op *op);

int mk_op_fd(const mk_op *op);          /* the socket to wait on; -1 while waiting for the pool.
                                           Only wait on it: once connected it is in blocking mode
                                           (libmemkit itself always passes MSG_DONTWAIT) */
short mk_op_events(const mk_op *op);    /* POLLIN or POLLOUT */
int mk_op_timeout_ms(const mk_op *op);  /* milliseconds left before the current phase times out (>= 0) */
int mk_op_server(const mk_op *op);      /* the server index the op talks to */

/* mk_op_rearm — for an op that has no connection yet (still waiting for the
 * pool, or not stepped at all): its deadlines count from now. A caller that
 * queues ops behind its own limiter (a gevent semaphore of pool_size) calls it
 * once the op may go, so that queueing is not charged to the I/O timeout.
 * Returns 0, or MK_EINVAL if op is NULL or already has a connection. */
int mk_op_rearm(mk_op *op);

/* Results, valid after the op is done: the item of a single get (moved out:
 * the caller then owns it; MK_ENOTFOUND if none), the incr/decr value, the
 * version string, the message of a CLIENT_ERROR/SERVER_ERROR reply ("" if none). */
int mk_op_take_item(mk_op *op, mk_item *out);
uint64_t mk_op_number(const mk_op *op);
unsigned mk_op_meta_state(const mk_op *op); /* MK_OP_MGET: the MK_META_* bits of its reply */
const char *mk_op_text(const mk_op *op);

/*
 * mk_op_wait — block until mk_op_step can make progress or the current phase's
 * deadline passes (then the next step returns MK_ETIMEDOUT or MK_EPOOLTIMEOUT).
 * Call it after mk_op_step returned MK_EAGAIN; it is the only part of an op that
 * blocks, so a caller can drop a lock around it alone (the Python module holds
 * the GIL only for the steps that parse a reply, see MK_WAITS). A full pool is waited
 * for on the pool's condition variable (the connection is then checked out for
 * the next step); a reply is waited for with one blocking recv() bounded by
 * io_timeout_ms (the bytes are kept for the next step); anything else with poll().
 * Returns 0, or MK_ENOMEM / MK_EINVAL. An op belongs to one thread at a time.
 */
int mk_op_wait(mk_op *op);

/* mk_op_run — run a started op to completion on the calling thread:
 * while (mk_op_step(op) == MK_EAGAIN) mk_op_wait(op); returns the final code. */
int mk_op_run(mk_op *op);

/* mk_op_destroy — release the op: a clean connection goes back to the pool, one
 * left mid-request is closed. NULL is fine. Safe on an op that is not done. */
void mk_op_destroy(mk_op *op);


/*
 * Auto-pipelining for event loops (gevent, asyncio; see docs/client.md).
 *
 * An mk_evpipe is one connection to one server shared by the ops of one event
 * loop: their requests go out together and the replies are handed out in
 * order. It never blocks; the loop drives it:
 *
 *   mk_op_start(c, &args, &op);                    (args.server: any, the op's own)
 *   if (mk_evpipe_add(pipes[mk_op_server(op)], op, token) == 0)
 *       ... at the end of this loop iteration: mk_evpipe_io(pipe) ...
 *   ... whenever mk_evpipe_fd() is ready for mk_evpipe_events(), or
 *       mk_evpipe_timeout_ms() has passed: mk_evpipe_io(pipe), then
 *       while ((token = mk_evpipe_done(pipe, &op))) wake token's caller;
 *   ... the caller reads the results (mk_op_item, ...), then mk_op_destroy(op).
 *
 * An mk_evpipe and its ops belong to one thread. Every added op ends (once):
 * with its reply, with MK_ETIMEDOUT once io_timeout_ms has passed since it was
 * added (connect_timeout_ms / checkout_timeout_ms first while the connection is
 * being opened), or with the connection's failure. A written op that times
 * out, a read or write error and a reply that does not parse close the
 * connection; the other written ops are sent again on a fresh one (get family,
 * set, touch: once) or end with the cause. No op receives another's reply.
 */
typedef struct mk_evpipe mk_evpipe;

/* mk_evpipe_new — a pipe to server index `server` of c (no I/O yet). 0 and *out,
 * MK_ERANGE (no such server), MK_EINVAL (c is NULL or its connections are binary,
 * TLS or SASL: not pipelined), MK_ENOMEM. Free it before c. */
int mk_evpipe_new(mk_client *c, size_t server, mk_evpipe **out);

/* mk_evpipe_add — queue a started op (mk_op_start for this pipe's server, never
 * stepped) whose caller waits; token comes back from mk_evpipe_done. 0: queued
 * (the op must not be stepped or destroyed until mk_evpipe_done returned it, or
 * mk_evpipe_cancel / mk_evpipe_forget took it back). MK_EAGAIN: this op is not
 * pipelined (noreply, stats, a value over pipeline_max_value,
 * a request over pipeline_max_value + 64 KB) or the pipe holds pipeline_depth
 * ops: run it with mk_op_step as usual. Multi-gets and batches take part. MK_EINVAL: another
 * server's op; MK_ENOMEM. */
int mk_evpipe_add(mk_evpipe *p, mk_op *op, void *token);

/* mk_evpipe_io — everything that can be done now without blocking: connect,
 * write the queued requests, read and hand out the replies, end the ops past
 * their deadline. Returns 0 (failures end ops, never the pipe), MK_EINVAL. */
int mk_evpipe_io(mk_evpipe *p);

/* mk_evpipe_flush — write the queued requests now (connecting first if need be),
 * without reading: for a caller that finds the pipe idle, so that one lone call
 * does not wait for the end of the loop iteration. Completes no op (an I/O
 * failure leaves the ops for mk_evpipe_io to send again or end). 0, MK_EINVAL. */
int mk_evpipe_flush(mk_evpipe *p);

/* mk_evpipe_done — the next op that ended since the last call: its token (and
 * *op if op is not NULL); NULL when none. The op's code is mk_op_step(op)'s. */
void *mk_evpipe_done(mk_evpipe *p, mk_op **op);

/* mk_evpipe_cancel — the caller of an added op stops waiting: an op not written
 * yet is taken out; a written one is replaced by a private copy that reads its
 * reply and drops it, so the connection stays usable. The op is the caller's
 * again (destroy it). 0, MK_EINVAL (not in p), MK_ENOMEM (the connection was
 * closed instead). */
int mk_evpipe_cancel(mk_evpipe *p, mk_op *op);

/* mk_evpipe_forget — as mk_evpipe_cancel, but a request not written yet is
 * still sent (fire and forget: noreply without the protocol's noreply); a
 * failure its reply reports is counted in the server's noreply_failed. */
int mk_evpipe_forget(mk_evpipe *p, mk_op *op);

int mk_evpipe_fd(const mk_evpipe *p);          /* the socket to watch, or -1 (none yet / reconnecting) */
short mk_evpipe_events(const mk_evpipe *p);    /* POLLIN and/or POLLOUT to watch it for; 0: nothing */
int mk_evpipe_timeout_ms(const mk_evpipe *p);  /* call mk_evpipe_io within this many ms; -1: no op waits */
bool mk_evpipe_pending(const mk_evpipe *p);    /* ops added and not ended */
unsigned mk_evpipe_generation(const mk_evpipe *p); /* changes whenever the connection is replaced or closed
                                                      (a watcher on the old fd must be dropped: the number
                                                      may be reused by the new socket) */

/* mk_evpipe_after_fork — in a forked child (after mk_client_after_fork): drop
 * the parent's connection without a word (its ops in flight are sent again on
 * a connection of the child's own, or end with MK_EIO). */
void mk_evpipe_after_fork(mk_evpipe *p);

/* mk_evpipe_free — close the connection; ops still in it end with MK_EIO and are
 * forgotten (collect and destroy them first). NULL is fine. */
void mk_evpipe_free(mk_evpipe *p);

#ifdef __cplusplus
}
#endif

#endif /* MEMKIT_H */
