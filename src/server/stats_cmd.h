/* server/stats_cmd.h — the "stats" command and its groups (settings, items, slabs, conns, reset, detail). */
#ifndef MK_SERVER_STATS_CMD_H
#define MK_SERVER_STATS_CMD_H

#include "memkit/proto.h"

typedef struct mk_conn mk_conn;

/* Reply to "stats <args>" on c, exactly as memcached frames it (every reply ends with END, RESET or OK, or is an error). */
void mk_stats_command(mk_conn *c, mk_str args);

#endif
