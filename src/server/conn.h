/* server/conn.h — one client connection: buffers, state machine, reply queue; its protocol and transport plug in (protocol.h). */
#ifndef MK_SERVER_CONN_H
#define MK_SERVER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memkit/proto.h"
#include "server/protocol.h"
#include "server/server.h"

/*
 * Connection states, driven by conn_process() in one switch:
 *
 *   PARSE ──storage cmd──► NREAD ──data + 2 bytes read──► PARSE
 *     │ ──refused data───► SWALLOW ──bytes discarded───► PARSE
 *     └──quit / fatal────► CLOSING (flush replies, then close)
 *
 * A datagram connection (UDP) waits in READ between datagrams; a datagram read
 * makes it PARSE, and the end of the datagram (any state: its input ran out, or
 * CLOSING once the replies are written) makes it READ again.
 */
typedef enum mk_conn_state {
    MK_CONN_PARSE = 0,  /* handing input to the protocol's execute() */
    MK_CONN_NREAD,      /* reading a data block into an item, then the protocol's complete_nread() */
    MK_CONN_SWALLOW,    /* discarding the data block of a refused storage command */
    MK_CONN_CLOSING,    /* no more input; close once the replies are written */
    MK_CONN_READ,       /* datagram connections: waiting for the next datagram */
    MK_CONN_WATCH       /* "watch": no more commands (input discarded); log lines are written to it */
} mk_conn_state;

/* A piece of output: bytes in the conn's wbuf (ptr == NULL) or in an item's memory. */
typedef struct mk_out {
    const char *ptr;    /* NULL: the bytes are wbuf[off .. off+len) */
    size_t off, len;
    mk_item *item;      /* reference held until the bytes are written (or NULL) */
} mk_out;

/* A position in the reply queue, to take back what a failing command queued. */
typedef struct mk_out_mark {
    size_t nouts, wlen, last_len, pending;
    size_t nresps;              /* datagram connections: responses begun before it */
    bool resp_batch;            /* ... and whether the next one starts a transmit batch */
} mk_out_mark;

/*
 * One of memcached's response objects in the reply queue (datagram connections
 * only): the bytes from start to the next response's start (or the queue's end).
 * Over UDP each is sent as its own datagrams, numbered from 0.
 */
typedef struct mk_resp {
    size_t start;               /* offset in the reply queue (counting written bytes) */
    bool batch_start;           /* first of what memcached transmits at once */
    bool kept;                  /* framed (an empty datagram) even when it holds no byte */
} mk_resp;

struct mk_conn {
    mk_watch w;                 /* fd and epoll registration */
    mk_worker *worker;
    mk_conn *prev, *next;       /* worker's conns list (under conns_lock) */
    mk_conn *ready_next;        /* worker's ready list (worker thread only) */
    bool in_ready;
    bool closed;                /* closed; memory freed after the loop batch */
    bool unterminated;          /* the protocol said -2: a line too long without a newline, to be closed
                                   unless a read brings more input at once (memcached reads all there is
                                   before it decides) */
    int state;                  /* mk_conn_state (atomic access: stats conns reads it) */

    /* input: unprocessed bytes are rbuf[rstart .. rend) */
    char *rbuf;
    size_t rsize, rstart, rend;

    const mk_protocol *proto;   /* what the bytes mean */
    const mk_protocol *proto0;  /* the one it started with (a datagram starts with it again) */
    const mk_transport *tr;     /* how the bytes move */
    void *pstate;               /* the protocol's per-connection state (proto0->state_size bytes) */
    void *tstate;               /* the transport's per-connection state (NULL: none; its close frees it) */

    /* the data block being read (NREAD): the value, then (text protocols) two bytes that should be "\r\n" */
    mk_item *nitem;
    size_t ngot;                /* bytes of value + tail read so far */
    char ntail[2];              /* the two bytes after the value */
    uint8_t ntail_len;          /* 2, or 0 for a binary value (no "\r\n" after it) */
    uint64_t swallow;           /* SWALLOW: bytes still to discard */

    /* output */
    char *wbuf;
    size_t wsize, wlen;
    mk_out *outs;
    size_t nouts, outs_cap, out_head, out_head_done;
    size_t out_pending;         /* bytes queued and not yet written */
    size_t out_sent;            /* bytes of the queue written (it empties when all are) */

    /* datagram connections: the queue's responses, resps[resp_head ..] not yet sent */
    mk_resp *resps;
    size_t nresps, resps_cap, resp_head;
    bool resp_batch;            /* the next response begun starts a transmit batch */

    mk_out_mark sent_mark;      /* end of what memcached would have transmitted already:
                                   the queue at the last get-family reply or flush */
    int64_t last_cmd;           /* server clock at the last command (atomic access) */
    char peer[80];              /* "tcp:1.2.3.4:5678" / "unix:path" (datagrams: see udp.h) */
    const char *listen_name;
};

/* Create a connection on an accepted, non-blocking fd and start watching it; NULL on failure (fd closed). */
mk_conn *mk_conn_create(mk_worker *wk, int fd, const char *peer, const char *listen_name);

/*
 * mk_conn_create with a transport and a starting protocol of the caller's
 * choice. A datagram connection (tr->datagram) is not a client connection: it
 * is not counted in curr_conns, idle_timeout leaves it alone, and it starts in
 * READ with a read buffer that holds the largest datagram.
 */
mk_conn *mk_conn_create_on(mk_worker *wk, int fd, const mk_transport *tr, const mk_protocol *proto,
                           const char *peer, const char *listen_name);

/* The epoll callback for a connection. */
void mk_conn_on_event(mk_watch *w, uint32_t events);

/* Continue a connection that yielded with input left (-R budget spent). */
void mk_conn_resume(mk_conn *c);

/* Close now: stop watching, close the fd, release items; memory freed by mk_conn_free(). */
void mk_conn_close(mk_conn *c);

#define MK_CONN_RBUF_INIT 16384 /* a connection's read buffer until a long line grows it */

/* Write what c has queued now, from its worker (watch lines); the rest when the socket takes it. */
void mk_conn_push(mk_conn *c);

/* Free a closed connection's memory. */
void mk_conn_free(mk_conn *c);

/* ---- used by protocols to queue replies ---- */

/* Queue bytes (copied). Returns false on allocation failure. */
bool mk_conn_out(mk_conn *c, const char *p, size_t n);

/* Values up to this size are copied into the reply buffer, larger ones referenced. */
#define MK_CONN_INLINE_VALUE_MAX 1024

bool mk_conn_wbuf_grow(mk_conn *c, size_t need);
bool mk_conn_commit_piece(mk_conn *c, size_t n);

/*
 * Room for n more bytes at the end of the reply buffer, to compose a reply in
 * place (no copy); NULL on allocation failure. mk_conn_commit(c, k) then queues
 * the first k <= n bytes written there. Nothing else may queue in between.
 */
static inline char *mk_conn_reserve(mk_conn *c, size_t n)
{
    if (c->wlen + n > c->wsize && !mk_conn_wbuf_grow(c, c->wlen + n))
        return NULL;
    return c->wbuf + c->wlen;
}

static inline bool mk_conn_commit(mk_conn *c, size_t n)
{
    if (c->nouts > c->out_head) {
        mk_out *last = &c->outs[c->nouts - 1];
        if (!last->ptr && last->off + last->len == c->wlen) {
            /* extend the last piece: it is the wbuf bytes just before these */
            last->len += n;
            c->wlen += n;
            c->out_pending += n;
            return true;
        }
    }
    return mk_conn_commit_piece(c, n);
}

/* Queue a reply line plus "\r\n" (false on allocation failure). */
bool mk_conn_reply(mk_conn *c, const char *line);

/* Queue an item's value followed by "\r\n", referencing (not copying) large values; takes over the reference. */
bool mk_conn_out_value(mk_conn *c, mk_item *it);

/* mk_conn_out_value without the "\r\n" (the binary protocol's framing). */
bool mk_conn_out_value_raw(mk_conn *c, mk_item *it);

/* Remember where the reply queue ends now. */
mk_out_mark mk_conn_out_mark(const mk_conn *c);

/* Drop everything queued since mark (releasing item references); never anything already written. */
void mk_conn_out_rollback(mk_conn *c, const mk_out_mark *mark);

/*
 * memcached transmits its reply queue after every get-family command; a later
 * failure that "kills stacked responses" drops only what was queued since.
 * Record that point now (the text protocol calls this after a get-family reply).
 */
void mk_conn_mark_sent(mk_conn *c);

/*
 * Begin reading a data block of it's size, plus two tail bytes, into the item
 * (takes over the reference); the protocol's complete_nread() gets it back.
 */
void mk_conn_start_nread(mk_conn *c, mk_item *it);

/* mk_conn_start_nread for a value with no "\r\n" after it (binary protocol): complete_nread's tail_ok is true. */
void mk_conn_start_nread_raw(mk_conn *c, mk_item *it);

/* Discard n bytes of input next. */
void mk_conn_start_swallow(mk_conn *c, uint64_t n);

/*
 * memcached's response objects, which only a datagram transport sees (UDP sends
 * each as its own numbered datagrams); no-ops on other connections. conn.c
 * begins one before each request it hands to execute(); a protocol begins more
 * where memcached does (a multi-key get: one per key) and keeps an empty one
 * where memcached sends it anyway (a get's miss before another key, quit).
 */
void mk_conn_resp_begin_slow(mk_conn *c);

/* A new response starts at the end of the reply queue. */
static inline void mk_conn_resp_begin(mk_conn *c)
{
    if (c->tr->datagram)
        mk_conn_resp_begin_slow(c);
}

/* The current response is framed even if it ends up holding no byte. */
static inline void mk_conn_resp_keep(mk_conn *c)
{
    if (c->tr->datagram && c->nresps > c->resp_head)
        c->resps[c->nresps - 1].kept = true;
}

/* Set the state (atomic store). */
void mk_conn_set_state(mk_conn *c, mk_conn_state st);

/* The state's name for "stats conns" (memcached's names). */
const char *mk_conn_state_name(int st);

#endif
