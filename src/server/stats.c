/* server/stats.c — arithmetic over per-worker counter blocks. */
#include "server/stats.h"

void mk_thread_stats_accumulate(mk_thread_stats *out, const mk_thread_stats *in)
{
#define MK_X(f) out->f += __atomic_load_n(&in->f, __ATOMIC_RELAXED);
    MK_THREAD_STATS_FIELDS(MK_X)
#undef MK_X
}

void mk_thread_stats_sub(mk_thread_stats *out, const mk_thread_stats *a, const mk_thread_stats *b)
{
#define MK_X(f) out->f = a->f - b->f;
    MK_THREAD_STATS_FIELDS(MK_X)
#undef MK_X
}
