/* server/proto_binary.h — the binary protocol's per-connection state (mk_conn.pstate). */
#ifndef MK_SERVER_PROTO_BINARY_H
#define MK_SERVER_PROTO_BINARY_H

#include <stdbool.h>
#include <stdint.h>

#include "server/conn.h"

/* The storage request whose value is being read (NREAD). */
typedef struct mk_bin_state {
    uint8_t opcode;   /* as sent: echoed in the response */
    bool quiet;       /* a quiet variant: no response on success */
    uint32_t opaque;
    mk_store_op op;
    uint64_t cas_in;
    unsigned opts;    /* MK_STORE_X_* */
    /* SASL (-S) */
    struct mk_sasl_conn *sasl; /* made on the first SASL request, freed when the connection closes */
    bool authenticated;
} mk_bin_state;

#endif
