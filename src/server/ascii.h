/* server/ascii.h — memcached's ASCII protocols on one connection: classic text (proto_text.c) and meta (proto_meta.c). */
#ifndef MK_SERVER_ASCII_H
#define MK_SERVER_ASCII_H

#include <stdbool.h>
#include <stdint.h>

#include "memkit/proto.h"
#include "server/conn.h"

/* A classic storage command waiting for its data block. */
typedef struct mk_text_pending {
    mk_cmd cmd;
    uint64_t cas;
    bool noreply;
} mk_text_pending;

/* The ASCII protocol's per-connection state (mk_conn.pstate). */
typedef struct mk_ascii_state {
    mk_text_pending text;
} mk_ascii_state;

static inline mk_ascii_state *mk_ascii(mk_conn *c)
{
    return (mk_ascii_state *)c->pstate;
}

#endif
