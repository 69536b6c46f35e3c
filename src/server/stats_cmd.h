/* server/stats_cmd.h — the "stats" command and its groups (settings, items, slabs, conns, reset, detail). */
#ifndef MK_SERVER_STATS_CMD_H
#define MK_SERVER_STATS_CMD_H

#include "memkit/proto.h"

#include "server/server.h"

typedef struct mk_conn mk_conn;

/* Where statistics go, one name and value at a time (each protocol frames them its own way). */
typedef struct mk_stat_sink {
    void (*stat)(void *ctx, const char *name, const char *value);
    void *ctx;
} mk_stat_sink;

/* How a stats request ends. */
typedef enum mk_stats_result {
    MK_STATS_END,     /* its statistics went to the sink (text: END) */
    MK_STATS_RESET,   /* "reset": the counters were reset (text: RESET) */
    MK_STATS_OK,      /* "detail on|off" (text: OK) */
    MK_STATS_DUMP,    /* "detail dump": the caller writes mk_server_detail_dump's lines */
    MK_STATS_CACHEDUMP, /* "cachedump <class> <limit>": the caller answers (mk_cachedump_command) */
    MK_STATS_USAGE,   /* "detail <other>" */
    MK_STATS_UNKNOWN, /* not a group memkitd has (text: ERROR) */
} mk_stats_result;

/* Run "stats <args>" (args: the group and its words), sending each statistic to k. */
mk_stats_result mk_stats_group(mk_server *srv, mk_str args, const mk_stat_sink *k);

/* Reply to "stats <args>" on c, exactly as memcached frames it (every reply ends with END, RESET or OK, or is an error). */
void mk_stats_command(mk_conn *c, mk_str args);

#endif
