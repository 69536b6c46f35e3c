/* server/ascii.h — memcached's ASCII protocols on one connection: classic text (proto_text.c) and meta (proto_meta.c). */
#ifndef MK_SERVER_ASCII_H
#define MK_SERVER_ASCII_H

#include <stdbool.h>
#include <stdint.h>

#include "memkit/proto.h"
#include "server/conn.h"
#include "storage/cache.h"

/* A classic storage command waiting for its data block. */
typedef struct mk_text_pending {
    mk_cmd cmd;
    uint64_t cas;
    bool noreply;
} mk_text_pending;

/* An ms waiting for its data block: how to store it and what its reply echoes. */
typedef struct mk_meta_pending {
    mk_store_op op;
    unsigned opts;              /* MK_STORE_X_* */
    uint64_t cas_in;
    bool quiet;                 /* q: no "HD" */
    char ret[MK_MAX_TOKENS];    /* the return flags O, k, c in request order */
    size_t nret;
    char opaque[MK_META_OPAQUE_MAX];
    size_t nopaque;
    char key[MK_KEY_MAX];       /* the key (decoded when b64) */
    size_t nkey;
    bool key_b64;
} mk_meta_pending;

/* The ASCII protocol's per-connection state (mk_conn.pstate). */
typedef struct mk_ascii_state {
    bool meta_nread;            /* the data block being read belongs to an ms */
    uint64_t auth_wait;         /* -Y: bytes of an authentication block (with its "\r\n") awaited; 0: a line */
    mk_text_pending text;
    mk_meta_pending meta;
} mk_ascii_state;

/* Execute a meta command line (req->cmd MK_CMD_MG .. MK_CMD_ME), queueing its reply (proto_meta.c). */
void mk_meta_execute(mk_conn *c, const mk_request *req);

/* An ms data block is in (the protocol's complete_nread for ms). */
void mk_meta_complete_nread(mk_conn *c, mk_item *it, bool tail_ok);

static inline mk_ascii_state *mk_ascii(mk_conn *c)
{
    return (mk_ascii_state *)c->pstate;
}

#endif
