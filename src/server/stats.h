/* server/stats.h — per-worker command counters, and the "stats" replies built from them and the store. */
#ifndef MK_SERVER_STATS_H
#define MK_SERVER_STATS_H

#include <stdint.h>

/*
 * Counters a worker thread bumps as it serves commands. Each worker owns one
 * mk_thread_stats and is its only writer (MK_STAT_INC is a relaxed load + store,
 * no lock, no locked instruction); readers in other threads load each field
 * atomically, so a snapshot is per-field exact and near-consistent overall.
 * "stats reset" does not write these: it records a baseline that is subtracted.
 */
#define MK_THREAD_STATS_FIELDS(X)                                                          \
    X(get_cmds) X(get_hits) X(get_misses) X(get_expired) X(get_flushed) X(set_cmds)      \
    X(touch_cmds) X(touch_hits) X(touch_misses) X(delete_hits) X(delete_misses)           \
    X(incr_hits) X(incr_misses) X(decr_hits) X(decr_misses) X(cas_hits) X(cas_misses)     \
    X(cas_badval) X(flush_cmds) X(bytes_read) X(bytes_written) X(conn_yields)            \
    X(store_too_large) X(store_no_memory) X(total_conns) X(rejected_conns) X(auth_cmds) X(auth_errors) \
    X(idle_kicks) X(read_buf_oom) \
    X(listen_disabled_num) X(time_in_listen_disabled_us)

typedef struct mk_thread_stats {
#define MK_X(f) uint64_t f;
    MK_THREAD_STATS_FIELDS(MK_X)
#undef MK_X
} mk_thread_stats;

#define MK_STAT_ADD(ts, field, n)                                                             \
    __atomic_store_n(&(ts)->field, __atomic_load_n(&(ts)->field, __ATOMIC_RELAXED) + (n),     \
                     __ATOMIC_RELAXED)
#define MK_STAT_INC(ts, field) MK_STAT_ADD(ts, field, 1)

/* out += a snapshot of in (each field loaded atomically). */
void mk_thread_stats_accumulate(mk_thread_stats *out, const mk_thread_stats *in);

/* out = a - b, field by field (for subtracting the "stats reset" baseline). */
void mk_thread_stats_sub(mk_thread_stats *out, const mk_thread_stats *a, const mk_thread_stats *b);

#endif
