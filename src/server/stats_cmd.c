/* server/stats_cmd.c — the "stats" command: general counters and the settings/items/slabs/sizes/conns/reset/detail groups. */
#include "server/stats_cmd.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "server/conn.h"
#include "server/version.h"

/* Queue "STAT <name> <printf value>\r\n". */
static void stat(mk_conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stat(mk_conn *c, const char *name, const char *fmt, ...)
{
    char val[256], line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    size_t n = mk_compose_stat(line, sizeof(line), name, val);
    mk_conn_out(c, line, n);
}

static void stats_general(mk_conn *c)
{
    mk_server *srv = c->worker->srv;
    const mk_settings *s = srv->settings;
    int64_t now = mk_server_now(srv);
    mk_thread_stats ts;
    mk_cache_stats cs;
    struct rusage ru;

    mk_server_thread_stats(srv, &ts);
    mk_cache_get_stats(srv->cache, &cs);
    getrusage(RUSAGE_SELF, &ru);

    stat(c, "pid", "%ld", (long)getpid());
    stat(c, "uptime", "%" PRId64, now - srv->started);
    stat(c, "time", "%" PRId64, now);
    stat(c, "version", "%s", MK_WIRE_VERSION);
    stat(c, "pointer_size", "%d", (int)(8 * sizeof(void *)));
    stat(c, "rusage_user", "%ld.%06ld", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
    stat(c, "rusage_system", "%ld.%06ld", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    stat(c, "max_connections", "%d", s->maxconns);
    stat(c, "curr_connections", "%d", __atomic_load_n(&srv->curr_conns, __ATOMIC_RELAXED));
    stat(c, "total_connections", "%" PRIu64, ts.total_conns);
    stat(c, "rejected_connections", "%" PRIu64, ts.rejected_conns);
    stat(c, "connection_structures", "%d", __atomic_load_n(&srv->curr_conns, __ATOMIC_RELAXED));
    stat(c, "cmd_get", "%" PRIu64, ts.get_cmds);
    stat(c, "cmd_set", "%" PRIu64, ts.set_cmds);
    stat(c, "cmd_flush", "%" PRIu64, ts.flush_cmds);
    stat(c, "cmd_touch", "%" PRIu64, ts.touch_cmds);
    stat(c, "cmd_meta", "%d", 0);
    stat(c, "get_hits", "%" PRIu64, ts.get_hits);
    stat(c, "get_misses", "%" PRIu64, ts.get_misses);
    stat(c, "get_expired", "%" PRIu64, ts.get_expired);
    stat(c, "get_flushed", "%" PRIu64, ts.get_flushed);
    stat(c, "delete_misses", "%" PRIu64, ts.delete_misses);
    stat(c, "delete_hits", "%" PRIu64, ts.delete_hits);
    stat(c, "incr_misses", "%" PRIu64, ts.incr_misses);
    stat(c, "incr_hits", "%" PRIu64, ts.incr_hits);
    stat(c, "decr_misses", "%" PRIu64, ts.decr_misses);
    stat(c, "decr_hits", "%" PRIu64, ts.decr_hits);
    stat(c, "cas_misses", "%" PRIu64, ts.cas_misses);
    stat(c, "cas_hits", "%" PRIu64, ts.cas_hits);
    stat(c, "cas_badval", "%" PRIu64, ts.cas_badval);
    stat(c, "touch_hits", "%" PRIu64, ts.touch_hits);
    stat(c, "touch_misses", "%" PRIu64, ts.touch_misses);
    stat(c, "store_too_large", "%" PRIu64, ts.store_too_large);
    stat(c, "store_no_memory", "%" PRIu64, ts.store_no_memory);
    stat(c, "auth_cmds", "%d", 0);
    stat(c, "auth_errors", "%d", 0);
    stat(c, "bytes_read", "%" PRIu64, ts.bytes_read);
    stat(c, "bytes_written", "%" PRIu64, ts.bytes_written);
    stat(c, "limit_maxbytes", "%zu", s->maxbytes);
    stat(c, "accepting_conns", "%d", __atomic_load_n(&srv->stopping, __ATOMIC_RELAXED) ? 0 : 1);
    stat(c, "listen_disabled_num", "%d", 0);
    stat(c, "threads", "%d", s->threads);
    stat(c, "conn_yields", "%" PRIu64, ts.conn_yields);
    stat(c, "hash_power_level", "%" PRIu64, cs.hash_power_level);
    stat(c, "hash_bytes", "%" PRIu64, cs.hash_bytes);
    stat(c, "hash_is_expanding", "%d", cs.hash_is_expanding ? 1 : 0);
    stat(c, "expired_unfetched", "%" PRIu64, cs.expired_unfetched);
    stat(c, "evicted_unfetched", "%" PRIu64, cs.evicted_unfetched);
    stat(c, "evicted_active", "%" PRIu64, cs.evicted_active);
    stat(c, "evictions", "%" PRIu64, cs.evictions);
    stat(c, "reclaimed", "%" PRIu64, cs.reclaimed);
    stat(c, "curr_items", "%" PRIu64, cs.curr_items);
    stat(c, "total_items", "%" PRIu64, cs.total_items);
    stat(c, "bytes", "%" PRIu64, cs.bytes);
    stat(c, "memory_used", "%" PRIu64, cs.mem_used);
    /* memkit's memory engine (docs/storage.md) */
    stat(c, "payload_bytes", "%" PRIu64, cs.payload_bytes);
    stat(c, "overhead_per_item", "%.1f",
         cs.curr_items ? (double)(cs.mem_used + cs.hash_bytes + cs.sketch_bytes - cs.payload_bytes) /
                             (double)cs.curr_items
                       : 0.0);
    stat(c, "segment_size", "%" PRIu64, cs.segment_size);
    stat(c, "segments_used", "%" PRIu64, cs.segments_used);
    stat(c, "segments_total", "%" PRIu64, cs.segments_total);
    stat(c, "segments_probation", "%" PRIu64, cs.segments_probation);
    stat(c, "segments_large", "%" PRIu64, cs.segments_large);
    stat(c, "sketch_bytes", "%" PRIu64, cs.sketch_bytes);
    stat(c, "segment_evictions", "%" PRIu64, cs.segment_evictions);
    stat(c, "reinserted", "%" PRIu64, cs.reinserted);
    stat(c, "segments_freed_empty", "%" PRIu64, cs.segments_freed_empty);
    stat(c, "segments_freed_compacted", "%" PRIu64, cs.segments_freed_compacted);
    stat(c, "segments_freed_evicted", "%" PRIu64, cs.segments_freed_evicted);
    stat(c, "compacted_items", "%" PRIu64, cs.compacted_items);
    mk_cache_restart r;
    mk_cache_restart_info(srv->cache, &r);
    stat(c, "restart_warm", "%d", r.warm ? 1 : 0);         /* this start served the image of the last (-e) */
    stat(c, "restart_items", "%" PRIu64, r.items);
}

static void stats_settings(mk_conn *c)
{
    mk_server *srv = c->worker->srv;
    const mk_settings *s = srv->settings;
    char inter[512] = "";
    for (int i = 0; i < s->nlisten; i++) {
        size_t len = strlen(inter);
        snprintf(inter + len, sizeof(inter) - len, "%s%s", i ? "," : "", s->listen[i]);
    }
    stat(c, "maxbytes", "%zu", s->maxbytes);
    stat(c, "maxconns", "%d", s->maxconns);
    stat(c, "tcpport", "%d", s->unix_path ? 0 : s->port);
    stat(c, "udpport", "%d", 0);
    stat(c, "inter", "%s", s->unix_path ? "NULL" : inter);
    stat(c, "verbosity", "%d", __atomic_load_n(&srv->verbosity, __ATOMIC_RELAXED));
    stat(c, "oldest", "%d", 0);
    stat(c, "evictions", "%s", s->evict ? "on" : "off");
    stat(c, "domain_socket", "%s", s->unix_path ? s->unix_path : "NULL");
    stat(c, "umask", "%o", (unsigned)s->unix_mask);
    stat(c, "shutdown_command", "%s", s->shutdown_enabled ? "yes" : "no");
    stat(c, "num_threads", "%d", s->threads);
    stat(c, "stat_key_prefix", "%c", ':');
    stat(c, "detail_enabled", "%s",
         __atomic_load_n(&srv->detail_enabled, __ATOMIC_RELAXED) ? "yes" : "no");
    stat(c, "reqs_per_event", "%d", s->reqs_per_event);
    stat(c, "cas_enabled", "%s", s->use_cas ? "yes" : "no");
    stat(c, "tcp_backlog", "%d", s->backlog);
    stat(c, "binding_protocol", "%s", "ascii");
    stat(c, "auth_enabled_sasl", "%s", "no");
    stat(c, "auth_enabled_ascii", "%s", "no");
    stat(c, "item_size_max", "%zu", s->item_size_max);
    stat(c, "maxconns_fast", "%s", s->maxconns_fast ? "yes" : "no");
    stat(c, "hashpower_init", "%u", s->hashpower);
    stat(c, "flush_enabled", "%s", s->flush_enabled ? "yes" : "no");
    stat(c, "idle_timeout", "%d", s->idle_timeout);
    stat(c, "evictions_policy", "%s", "segment-fifo-2nd-chance");
}

static void class_items(const mk_cache_class_stats *cs, void *ctx)
{
    mk_conn *c = ctx;
    char name[64];
#define ITEM_STAT(field, fmt, val)                                  \
    snprintf(name, sizeof(name), "items:%u:" field, cs->id);       \
    stat(c, name, fmt, val);
    ITEM_STAT("number", "%" PRIu64, cs->number);
    ITEM_STAT("age", "%" PRId64, cs->age);
    ITEM_STAT("mem_requested", "%" PRIu64, cs->bytes);
    ITEM_STAT("evicted", "%" PRIu64, cs->evicted);
    ITEM_STAT("outofmemory", "%" PRIu64, cs->outofmemory);
    ITEM_STAT("reclaimed", "%" PRIu64, cs->reclaimed);
    ITEM_STAT("expired_unfetched", "%" PRIu64, cs->expired_unfetched);
    ITEM_STAT("evicted_unfetched", "%" PRIu64, cs->evicted_unfetched);
#undef ITEM_STAT
}

typedef struct slab_ctx {
    mk_conn *c;
    unsigned active;
} slab_ctx;

static void class_slabs(const mk_cache_class_stats *cs, void *ctx)
{
    slab_ctx *sc = ctx;
    char name[64];
    snprintf(name, sizeof(name), "%u:chunk_size", cs->id);
    stat(sc->c, name, "%" PRIu64, cs->chunk_size);
    snprintf(name, sizeof(name), "%u:used_chunks", cs->id);
    stat(sc->c, name, "%" PRIu64, cs->number);
    snprintf(name, sizeof(name), "%u:mem_requested", cs->id);
    stat(sc->c, name, "%" PRIu64, cs->bytes);
    sc->active++;
}

static void stats_conns(mk_conn *c)
{
    mk_server *srv = c->worker->srv;
    int64_t now = mk_server_now(srv);
    char name[64];
    for (int i = 0; i < srv->nlisteners; i++) {
        int fd = srv->listeners[i].w.fd;
        snprintf(name, sizeof(name), "%d:addr", fd);
        stat(c, name, "%s", srv->listeners[i].name);
        snprintf(name, sizeof(name), "%d:state", fd);
        stat(c, name, "%s", "conn_listening");
    }
    for (int w = 0; w < srv->nworkers; w++) {
        mk_worker *wk = &srv->workers[w];
        pthread_mutex_lock(&wk->conns_lock);
        for (mk_conn *o = wk->conns; o; o = o->next) {
            int fd = o->w.fd;
            snprintf(name, sizeof(name), "%d:addr", fd);
            stat(c, name, "%s", o->peer);
            snprintf(name, sizeof(name), "%d:listen_addr", fd);
            stat(c, name, "%s", o->listen_name);
            snprintf(name, sizeof(name), "%d:state", fd);
            stat(c, name, "%s", mk_conn_state_name(__atomic_load_n(&o->state, __ATOMIC_RELAXED)));
            snprintf(name, sizeof(name), "%d:secs_since_last_cmd", fd);
            stat(c, name, "%" PRId64, now - __atomic_load_n(&o->last_cmd, __ATOMIC_RELAXED));
        }
        pthread_mutex_unlock(&wk->conns_lock);
    }
}

static void emit_line(void *ctx, const char *line)
{
    mk_conn *c = ctx;
    mk_conn_out(c, line, strlen(line));
    mk_conn_out(c, "\r\n", 2);
}

static bool word_is(mk_str w, const char *s)
{
    return w.n == strlen(s) && memcmp(w.p, s, w.n) == 0;
}

void mk_stats_command(mk_conn *c, mk_str args)
{
    mk_server *srv = c->worker->srv;
    mk_str rest = args, w1 = {0}, w2 = {0};
    mk_next_key(&rest, &w1);
    mk_next_key(&rest, &w2);

    if (w1.n == 0) {
        stats_general(c);
    } else if (word_is(w1, "settings")) {
        stats_settings(c);
    } else if (word_is(w1, "items")) {
        mk_cache_class_stats_each(srv->cache, mk_server_now(srv), class_items, c);
    } else if (word_is(w1, "slabs")) {
        slab_ctx sc = {c, 0};
        mk_cache_stats cs;
        mk_cache_class_stats_each(srv->cache, mk_server_now(srv), class_slabs, &sc);
        mk_cache_get_stats(srv->cache, &cs);
        stat(c, "active_slabs", "%u", sc.active);
        stat(c, "total_malloced", "%" PRIu64, cs.mem_used);
    } else if (word_is(w1, "sizes")) {
        stat(c, "sizes_status", "%s", "disabled");
    } else if (word_is(w1, "conns")) {
        stats_conns(c);
    } else if (word_is(w1, "cachedump")) {
        /* memkitd does not dump items by class; memcached answers END for an empty class */
    } else if (word_is(w1, "reset")) {
        mk_server_reset_stats(srv);
        mk_conn_reply(c, "RESET");
        return;
    } else if (word_is(w1, "detail")) {
        if (word_is(w2, "on") || word_is(w2, "off")) {
            pthread_mutex_lock(&srv->stats_lock);
            __atomic_store_n(&srv->detail_enabled, word_is(w2, "on"), __ATOMIC_RELAXED);
            pthread_mutex_unlock(&srv->stats_lock);
            mk_conn_reply(c, "OK");
            return;
        }
        if (word_is(w2, "dump")) {
            mk_server_detail_dump(srv, emit_line, c);
        } else {
            mk_conn_reply(c, "CLIENT_ERROR usage: stats detail on|off|dump");
            return;
        }
    } else {
        mk_conn_reply(c, "ERROR");
        return;
    }
    mk_conn_reply(c, "END");
}
