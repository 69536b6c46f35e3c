/* server/protocol.h — a connection's two seams: the protocol it speaks and the transport its bytes take. */
#ifndef MK_SERVER_PROTOCOL_H
#define MK_SERVER_PROTOCOL_H

/*
 *            ┌──────────── mk_conn (conn.c): buffers, states, reply queue ───────────┐
 *   socket ◄─┤ transport: readv / writev / close      protocol: execute / nread done ├─► exec.c ─► store
 *            └────────────────────────────────────────────────────────────────────────┘
 *
 * conn.c moves bytes and knows no command: it hands buffered input to its
 * protocol's execute(), reads data blocks into the item the protocol asked for,
 * and writes the reply queue through its transport. A protocol (proto_text.c:
 * memcached's classic text and meta commands on one connection; proto_binary.c:
 * its binary protocol; negotiate.c picks one per connection) parses with
 * src/proto/, executes with exec.c, and queues the bytes its composer makes.
 * A transport (transport.c: a plain socket; udp.c: memcached's UDP datagrams)
 * is the only code that calls read/write/close on the connection's fd.
 *
 * A datagram transport (mk_transport.datagram) changes three things in conn.c:
 * each read is one whole request buffer (what a datagram leaves unparsed, a
 * partial data block included, is dropped before the next is read, and the
 * protocol is negotiated afresh); the reply queue is divided into memcached's
 * response objects (mk_conn_resp_begin/keep, conn.h), which the transport's
 * writev frames one by one; and "close" ends the datagram, not the socket.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct mk_conn mk_conn;
typedef struct mk_item mk_item;

typedef struct mk_protocol {
    const char *name;
    /*
     * Parse and execute one request at the start of in[0..len) (len > 0),
     * queueing its replies on c. Returns the bytes consumed (> 0; a data block
     * the request announces is read afterwards by the connection, see
     * mk_conn_start_nread), 0 when the request is not complete yet, -1 when the
     * connection must close now (queued replies are still sent).
     */
    ssize_t (*execute)(mk_conn *c, const char *in, size_t len);
    /*
     * The data block started by mk_conn_start_nread has been read into it:
     * tail_ok says whether the two bytes after it were "\r\n". Takes over the
     * item's reference.
     */
    void (*complete_nread)(mk_conn *c, mk_item *it, bool tail_ok);
    /* Bytes of per-connection state (mk_conn_pstate); zeroed when the connection is made. */
    size_t state_size;
    /* Release what the state holds beyond its bytes when the connection closes (NULL: nothing). */
    void (*release)(mk_conn *c);
    /*
     * A request this protocol answers with nothing still has a response in
     * memcached (an empty one, framed as an empty datagram over UDP): true for
     * the binary protocol's quiet commands. false: nothing queued means nothing
     * sent (the text protocol's noreply, meta's q). Only datagram transports look.
     */
    bool frames_empty;
    /* Queue the reply to a request the server has no memory to read (conn.c then closes; NULL: close
     * without one). */
    void (*out_of_memory)(mk_conn *c);
} mk_protocol;

/* memcached's ASCII protocols: classic text commands and meta commands (proto_text.c). */
extern const mk_protocol mk_protocol_ascii;

/*
 * memcached's ASCII authentication (-Y; proto_auth.c): what an ASCII connection
 * speaks until it has sent a "user password" of the file; then mk_protocol_ascii.
 */
extern const mk_protocol mk_protocol_ascii_auth;

/* memcached's binary protocol (proto_binary.c). */
extern const mk_protocol mk_protocol_binary;

/* The protocol a new connection starts with for -B (negotiate.c): ascii, binary, or one that
 * becomes either on the connection's first byte. */
#include "server/options.h"
const mk_protocol *mk_protocol_for(mk_proto_choice choice);

/* The protocol a new TCP or unix-socket connection starts with under these settings (-B, -Y). */
const mk_protocol *mk_protocol_for_settings(const mk_settings *s);

typedef struct mk_transport {
    const char *name;
    /*
     * true: each read returns one datagram, a whole request buffer, and never
     * 0; writev frames the queue's responses (mk_conn.resps) itself and advances
     * mk_conn.resp_head past each one it has sent (see above).
     */
    bool datagram;
    /* Read into iov: > 0 bytes, 0 end of stream, -1 would block, -2 error. */
    ssize_t (*readv)(mk_conn *c, const struct iovec *iov, int n);
    /*
     * Write iov, the head of the reply queue (it starts mk_conn.out_sent bytes
     * into the queue; n may be 0 on a datagram transport when only empty
     * responses are left): >= 0 bytes written, -1 would block, -2 error.
     */
    ssize_t (*writev)(mk_conn *c, const struct iovec *iov, int n);
    /* Close the connection's fd (and anything the transport keeps for it). */
    void (*close)(mk_conn *c);
} mk_transport;

/* A plain TCP or unix-domain socket (transport.c). */
extern const mk_transport mk_transport_plain;

#endif
