/* server/udp.h — memcached's UDP protocol (-U): the datagram transport, the connections that serve a UDP socket, reply framing. */
#ifndef MK_SERVER_UDP_H
#define MK_SERVER_UDP_H

/*
 * Every datagram, both ways, starts with memcached's 8-byte frame header, four
 * big-endian 16-bit fields: request id, sequence number, datagram count,
 * reserved (0). A request is one datagram (count 1; sequence and reserved are
 * not looked at); its payload is a whole request buffer for the text, meta or
 * binary protocol, chosen by its first byte. Each of memcached's response
 * objects (protocol.h, conn.h) goes back to the sender as datagrams of at most
 * MK_UDP_MAX_PAYLOAD bytes, header included, with the request's id, sequence
 * 0..n-1 and count n; an empty response that memcached frames is one header
 * with count 0. docs/protocol.md §11 has the rules and the risks.
 *
 * One UDP socket per -l address (server.c binds them); each worker thread
 * serves it through a datagram connection of its own (a dup of the socket's
 * descriptor, in its own epoll loop), as memcached does; with several -l
 * addresses each socket has one worker (memcached's num_threads_per_udp).
 */

#include <stdbool.h>
#include <stddef.h>

#include "server/conn.h"

#define MK_UDP_HEADER_SIZE 8
#define MK_UDP_MAX_PAYLOAD 1400 /* memcached's UDP_MAX_PAYLOAD_SIZE: a reply datagram, header included */

/* The UDP transport: readv takes one valid request datagram, writev frames and sends responses. */
extern const mk_transport mk_transport_udp;

/* How many workers serve each UDP socket: all of them, or one when there are several -l addresses. */
int mk_udp_threads_per_socket(const mk_settings *s);

/*
 * Called by worker wk in its own thread before its loop starts: a datagram
 * connection in wk's loop on each UDP socket wk serves. false after writing one
 * line to stderr (out of descriptors or memory).
 */
bool mk_udp_worker_start(mk_worker *wk);

/*
 * The sender of the datagram a UDP connection is serving, as memcached names it
 * in "stats conns" ("udp:1.2.3.4:5678", "udp6:[::1]:5678"). Call with the
 * connection's worker's conns_lock held (the worker writes it under that lock).
 */
void mk_udp_peer_name(mk_conn *c, char *out, size_t cap);

#endif
