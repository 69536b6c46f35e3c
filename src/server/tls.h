/* server/tls.h — TLS for memkitd's TCP connections through OpenSSL (-Z): the server's context, certificate reload, and the TLS transport. */
#ifndef MK_SERVER_TLS_H
#define MK_SERVER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/conn.h"

/*
 * One OpenSSL context per server, built from -o ssl_*: certificate chain and
 * key, client CAs and verification mode (mutual TLS), oldest version, cipher
 * list, session cache, kTLS. Renegotiation is refused. Connections accepted
 * on a TLS listener get an SSL object on it (mk_tls_conn_new) and the TLS
 * transport; the handshake runs inside their first reads.
 */
typedef struct mk_tls mk_tls;

/* Build the context; NULL with a one-line reason in err. */
mk_tls *mk_tls_create(const mk_settings *s, char *err, size_t errlen);

/* Free it; NULL is a no-op. No connection may still use it. */
void mk_tls_free(mk_tls *t);

/*
 * Load the certificate chain, key and client CAs again from the same files
 * (memcached's refresh_certs): connections accepted from then on present the
 * new ones. false with memcached's message in err (the old ones stay).
 */
bool mk_tls_refresh(mk_tls *t, char *err, size_t errlen);

/* Seconds since the certificates were last loaded. */
int64_t mk_tls_since_refresh(mk_tls *t, int64_t now);

/* Handshakes that failed. */
uint64_t mk_tls_handshake_errors(mk_tls *t);

/* Connections whose sending OpenSSL handed to the kernel (ssl_kernel_tls on a kernel with the tls
 * ULP and a cipher it offloads), counted at each connection's first request. */
uint64_t mk_tls_ktls_connections(mk_tls *t);

/*
 * Put connection c (just created on an accepted socket, plain transport) on
 * TLS: false if no SSL object could be made (the caller closes it).
 */
bool mk_tls_conn_start(mk_tls *t, mk_conn *c);

/* The TLS transport (tstate: the connection's SSL object). */
extern const mk_transport mk_transport_tls;

#endif
