/* server/dispatch.h — executes parsed text-protocol commands for a connection. */
#ifndef MK_SERVER_DISPATCH_H
#define MK_SERVER_DISPATCH_H

#include <stdint.h>

#include "memkit/proto.h"

typedef struct mk_conn mk_conn;

/* Execute one parsed request line (replying to protocol errors as memcached does). */
void mk_dispatch(mk_conn *c, mk_request *req);

/* A storage command's data block has been read into c->nitem: check it and store it. */
void mk_dispatch_complete_nread(mk_conn *c);

/*
 * memcached's exptime rule: 0 never; up to 30 days, seconds from now; beyond that
 * an absolute unix time; negative, already expired. Returns the absolute expiry
 * (0 = never, a time <= now = expired).
 */
int64_t mk_exptime_to_abs(int64_t exptime, int64_t now);

#endif
