/* server/sasl.h — SASL authentication for the binary protocol, through Debian's Cyrus libsasl2 as memcached does it. */
#ifndef MK_SERVER_SASL_H
#define MK_SERVER_SASL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * One process-wide SASL service named "memcached" (so its configuration is
 * memcached's: $SASL_CONF_PATH, else /etc/sasl/memcached.conf or
 * /etc/sasl2/memcached.conf, with mech_list, sasldb_path, ...). With
 * $MEMCACHED_SASL_PWDB set, plain-password mechanisms (PLAIN) also check that
 * file of "user:password" lines, as memcached built with --enable-sasl-pwdb
 * does. Every libsasl2 call is serialized here (authentication is rare).
 */

/* Start the service; false with a one-line reason in err (the server then refuses to start). */
bool mk_sasl_init(int verbose, char *err, size_t errlen);

/* A connection's authentication state; NULL when libsasl2 could not make one (every attempt then fails). */
typedef struct mk_sasl_conn mk_sasl_conn;
mk_sasl_conn *mk_sasl_conn_new(void);
void mk_sasl_conn_free(mk_sasl_conn *s); /* NULL is fine */

/* The mechanisms, space-separated ("PLAIN CRAM-MD5"); false on failure. */
bool mk_sasl_list_mechs(mk_sasl_conn *s, const char **out, unsigned *len);

typedef enum mk_sasl_rc { MK_SASL_OK, MK_SASL_CONTINUE, MK_SASL_FAIL } mk_sasl_rc;

/*
 * SASL_AUTH (start with mechanism mech, NUL-terminated) or SASL_STEP (step: a
 * start must have returned OK or CONTINUE on this connection before, else
 * FAIL). data, len: the client's bytes. *out, *outlen: what to send back (owned
 * by s, valid until its next call).
 */
mk_sasl_rc mk_sasl_auth(mk_sasl_conn *s, bool step, const char *mech, const char *data, unsigned len,
                        const char **out, unsigned *outlen);

#endif
