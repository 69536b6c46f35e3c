/* server/stats_cmd.c — the "stats" command: general counters and the settings/items/slabs/sizes/conns/reset/detail groups. */
#include "server/stats_cmd.h"
#include "server/crawler.h"

#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server/conn.h"
#include "server/tls.h"
#include "server/udp.h"
#include "server/version.h"

/* Hand one statistic, its value printf-formatted, to the sink. */
static void stat(const mk_stat_sink *k, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stat(const mk_stat_sink *k, const char *name, const char *fmt, ...)
{
    char val[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    k->stat(k->ctx, name, val);
}

/* Descriptors the process holds (memcached's reserved_fds: those not serving a client). */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* (the directory's own) */
}

static void stats_general(mk_server *srv, const mk_stat_sink *k)
{
    const mk_settings *s = srv->settings;
    int64_t now = mk_server_now(srv);
    mk_thread_stats ts;
    mk_cache_stats cs;
    struct rusage ru;

    mk_server_thread_stats(srv, &ts);
    mk_cache_get_stats(srv->cache, &cs);
    getrusage(RUSAGE_SELF, &ru);

    stat(k, "pid", "%ld", (long)getpid());
    stat(k, "uptime", "%" PRId64, now - srv->started);
    stat(k, "time", "%" PRId64, now);
    stat(k, "version", "%s", MK_WIRE_VERSION);
    stat(k, "pointer_size", "%d", (int)(8 * sizeof(void *)));
    stat(k, "rusage_user", "%ld.%06ld", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
    stat(k, "rusage_system", "%ld.%06ld", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    stat(k, "max_connections", "%d", s->maxconns);
    stat(k, "curr_connections", "%d", __atomic_load_n(&srv->curr_conns, __ATOMIC_RELAXED));
    stat(k, "total_connections", "%" PRIu64, ts.total_conns);
    stat(k, "rejected_connections", "%" PRIu64, ts.rejected_conns);
    stat(k, "connection_structures", "%d", __atomic_load_n(&srv->curr_conns, __ATOMIC_RELAXED));
    stat(k, "read_buf_oom", "%" PRIu64, ts.read_buf_oom);
    stat(k, "cmd_get", "%" PRIu64, ts.get_cmds);
    stat(k, "cmd_set", "%" PRIu64, ts.set_cmds);
    stat(k, "cmd_flush", "%" PRIu64, ts.flush_cmds);
    stat(k, "cmd_touch", "%" PRIu64, ts.touch_cmds);
    stat(k, "cmd_meta", "%d", 0);
    stat(k, "get_hits", "%" PRIu64, ts.get_hits);
    stat(k, "get_misses", "%" PRIu64, ts.get_misses);
    stat(k, "get_expired", "%" PRIu64, ts.get_expired);
    stat(k, "get_flushed", "%" PRIu64, ts.get_flushed);
    stat(k, "delete_misses", "%" PRIu64, ts.delete_misses);
    stat(k, "delete_hits", "%" PRIu64, ts.delete_hits);
    stat(k, "incr_misses", "%" PRIu64, ts.incr_misses);
    stat(k, "incr_hits", "%" PRIu64, ts.incr_hits);
    stat(k, "decr_misses", "%" PRIu64, ts.decr_misses);
    stat(k, "decr_hits", "%" PRIu64, ts.decr_hits);
    stat(k, "cas_misses", "%" PRIu64, ts.cas_misses);
    stat(k, "cas_hits", "%" PRIu64, ts.cas_hits);
    stat(k, "cas_badval", "%" PRIu64, ts.cas_badval);
    stat(k, "touch_hits", "%" PRIu64, ts.touch_hits);
    stat(k, "touch_misses", "%" PRIu64, ts.touch_misses);
    stat(k, "store_too_large", "%" PRIu64, ts.store_too_large);
    stat(k, "store_no_memory", "%" PRIu64, ts.store_no_memory);
    stat(k, "auth_cmds", "%" PRIu64, ts.auth_cmds);
    stat(k, "auth_errors", "%" PRIu64, ts.auth_errors);
    if (s->idle_timeout) /* (memcached shows it only then) */
        stat(k, "idle_kicks", "%" PRIu64, ts.idle_kicks);
    stat(k, "bytes_read", "%" PRIu64, ts.bytes_read);
    stat(k, "bytes_written", "%" PRIu64, ts.bytes_written);
    stat(k, "limit_maxbytes", "%" PRIu64, cs.mem_limit); /* (-m, or what cache_memlimit set since) */
    stat(k, "accepting_conns", "%d",
         __atomic_load_n(&srv->stopping, __ATOMIC_RELAXED) || __atomic_load_n(&srv->paused_since_us, __ATOMIC_RELAXED)
             ? 0 : 1);
    stat(k, "listen_disabled_num", "%" PRIu64, ts.listen_disabled_num);
    stat(k, "time_in_listen_disabled_us", "%" PRIu64, ts.time_in_listen_disabled_us);
    if (srv->tls) {
        stat(k, "ssl_handshake_errors", "%" PRIu64, mk_tls_handshake_errors(srv->tls));
        stat(k, "ssl_ktls_connections", "%" PRIu64, mk_tls_ktls_connections(srv->tls));
        stat(k, "time_since_server_cert_refresh", "%" PRId64, mk_tls_since_refresh(srv->tls, (int64_t)time(NULL)));
    }
    stat(k, "threads", "%d", s->threads);
    stat(k, "conn_yields", "%" PRIu64, ts.conn_yields);
    stat(k, "hash_power_level", "%" PRIu64, cs.hash_power_level);
    stat(k, "hash_bytes", "%" PRIu64, cs.hash_bytes);
    stat(k, "hash_is_expanding", "%d", cs.hash_is_expanding ? 1 : 0);
    stat(k, "expired_unfetched", "%" PRIu64, cs.expired_unfetched);
    stat(k, "evicted_unfetched", "%" PRIu64, cs.evicted_unfetched);
    stat(k, "evicted_active", "%" PRIu64, cs.evicted_active);
    stat(k, "evictions", "%" PRIu64, cs.evictions);
    stat(k, "reclaimed", "%" PRIu64, cs.reclaimed);
    stat(k, "curr_items", "%" PRIu64, cs.curr_items);
    stat(k, "total_items", "%" PRIu64, cs.total_items);
    stat(k, "bytes", "%" PRIu64, cs.bytes);
    stat(k, "memory_used", "%" PRIu64, cs.mem_used);
    /* memkit's memory engine (docs/storage.md) */
    stat(k, "payload_bytes", "%" PRIu64, cs.payload_bytes);
    stat(k, "overhead_per_item", "%.1f",
         cs.curr_items ? (double)(cs.mem_used + cs.hash_bytes + cs.sketch_bytes - cs.payload_bytes) /
                             (double)cs.curr_items
                       : 0.0);
    stat(k, "segment_size", "%" PRIu64, cs.segment_size);
    stat(k, "segments_used", "%" PRIu64, cs.segments_used);
    stat(k, "segments_total", "%" PRIu64, cs.segments_total);
    stat(k, "segments_probation", "%" PRIu64, cs.segments_probation);
    stat(k, "segments_large", "%" PRIu64, cs.segments_large);
    stat(k, "sketch_bytes", "%" PRIu64, cs.sketch_bytes);
    stat(k, "segment_evictions", "%" PRIu64, cs.segment_evictions);
    stat(k, "reinserted", "%" PRIu64, cs.reinserted);
    stat(k, "segments_freed_empty", "%" PRIu64, cs.segments_freed_empty);
    stat(k, "segments_freed_compacted", "%" PRIu64, cs.segments_freed_compacted);
    stat(k, "segments_freed_evicted", "%" PRIu64, cs.segments_freed_evicted);
    stat(k, "compacted_items", "%" PRIu64, cs.compacted_items);
    mk_cache_restart r;
    mk_cache_restart_info(srv->cache, &r);
    stat(k, "restart_warm", "%d", r.warm ? 1 : 0);         /* this start served the image of the last (-e) */
    stat(k, "restart_items", "%" PRIu64, r.items);

    /* memcached's names for what memkitd has too, measured its way (docs/operations.md) */
    int conns = __atomic_load_n(&srv->curr_conns, __ATOMIC_RELAXED);
    stat(k, "libevent", "%s", "none"); /* (memkitd's loops are its own, over epoll) */
    stat(k, "reserved_fds", "%d", open_fds() - conns);
    stat(k, "read_buf_count", "%d", conns);
    stat(k, "read_buf_bytes", "%" PRIu64,
         (uint64_t)conns * MK_CONN_RBUF_INIT + __atomic_load_n(&srv->rbuf_grown, __ATOMIC_RELAXED));
    stat(k, "read_buf_bytes_free", "%d", 0);
    /* memcached's names for its slab mover, LRU maintainer, LRU crawler, log watchers, response
     * object cache and NAPI: memkitd has none of them, so nothing is counted (0) */
    static const char *const none[] = {
        "malloc_fails", "response_obj_oom", "response_obj_count", "response_obj_bytes", "round_robin_fallback",
        "unexpected_napi_ids", "log_worker_dropped", "log_worker_written", "log_watcher_skipped",
        "log_watcher_sent", "log_watchers", "slab_reassign_rescues", "slab_reassign_chunk_rescues",
        "slab_reassign_evictions_nomem", "slab_reassign_inline_reclaim", "slab_reassign_busy_items",
        "slab_reassign_busy_deletes", "slab_reassign_running", "slabs_moved", "lru_crawler_running",
        "lru_crawler_starts", "lru_maintainer_juggles", "slab_global_page_pool", "crawler_reclaimed",
        "crawler_items_checked", "lrutail_reflocked", "moves_to_cold", "moves_to_warm", "moves_within_lru",
        "direct_reclaims", "lru_bumps_dropped"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        stat(k, none[i], "%d", 0);
}

static void stats_settings(mk_server *srv, const mk_stat_sink *k)
{
    const mk_settings *s = srv->settings;
    char inter[512] = "";
    for (int i = 0; i < s->nlisten; i++) {
        size_t len = strlen(inter);
        snprintf(inter + len, sizeof(inter) - len, "%s%s", i ? "," : "", s->listen[i]);
    }
    stat(k, "maxbytes", "%" PRIu64, mk_cache_limit(srv->cache)); /* (-m, or cache_memlimit's since) */
    stat(k, "maxconns", "%d", s->maxconns);
    stat(k, "tcpport", "%d", s->unix_path ? 0 : s->port);
    stat(k, "udpport", "%d", s->unix_path ? 0 : s->udp_port);
    stat(k, "inter", "%s", s->unix_path ? "NULL" : inter);
    stat(k, "verbosity", "%d", __atomic_load_n(&srv->verbosity, __ATOMIC_RELAXED));
    stat(k, "oldest", "%d", 0);
    stat(k, "evictions", "%s", s->evict ? "on" : "off");
    stat(k, "domain_socket", "%s", s->unix_path ? s->unix_path : "NULL");
    stat(k, "umask", "%o", (unsigned)s->unix_mask);
    stat(k, "shutdown_command", "%s", s->shutdown_enabled ? "yes" : "no");
    stat(k, "num_threads", "%d", s->threads);
    stat(k, "num_threads_per_udp", "%d", mk_udp_threads_per_socket(s));
    stat(k, "stat_key_prefix", "%c", ':');
    stat(k, "detail_enabled", "%s",
         __atomic_load_n(&srv->detail_enabled, __ATOMIC_RELAXED) ? "yes" : "no");
    stat(k, "reqs_per_event", "%d", s->reqs_per_event);
    stat(k, "cas_enabled", "%s", s->use_cas ? "yes" : "no");
    stat(k, "tcp_backlog", "%d", s->backlog);
    stat(k, "binding_protocol", "%s", mk_protocol_choice_name(s->protocol));
    stat(k, "auth_enabled_sasl", "%s", s->sasl ? "yes" : "no");
    stat(k, "auth_enabled_ascii", "%s", s->auth_file ? s->auth_file : "no");
    stat(k, "item_size_max", "%zu", s->item_size_max);
    stat(k, "maxconns_fast", "%s", s->maxconns_fast ? "yes" : "no");
    stat(k, "hashpower_init", "%u", s->hashpower);
    stat(k, "flush_enabled", "%s", s->flush_enabled ? "yes" : "no");
    stat(k, "idle_timeout", "%d", s->idle_timeout);
    stat(k, "read_buf_mem_limit", "%" PRIu64, s->read_buf_limit >> 20);
    stat(k, "tcp_keepalive", "%d:%d:%d", s->keepalive_idle, s->keepalive_intvl, s->keepalive_cnt);
    static const char *const tls_versions[] = {"tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"};
    stat(k, "ssl_enabled", "%s", s->tls ? "yes" : "no");
    stat(k, "ssl_chain_cert", "%s", s->ssl_chain_cert ? s->ssl_chain_cert : "(null)");
    stat(k, "ssl_key", "%s", s->ssl_key ? s->ssl_key : "(null)");
    static const int verify_bits[] = {0, 1, 3, 7}; /* (memcached prints OpenSSL's SSL_VERIFY_* bits) */
    stat(k, "ssl_verify_mode", "%d", verify_bits[s->ssl_verify_mode]);
    stat(k, "ssl_keyformat", "%d", s->ssl_keyformat);
    stat(k, "ssl_ciphers", "%s", s->ssl_ciphers ? s->ssl_ciphers : "NULL");
    stat(k, "ssl_ca_cert", "%s", s->ssl_ca_cert ? s->ssl_ca_cert : "NULL");
    stat(k, "ssl_session_cache", "%s", s->ssl_session_cache ? "yes" : "no");
    stat(k, "ssl_kernel_tls", "%s", s->ssl_kernel_tls ? "yes" : "no");
    stat(k, "ssl_min_version", "%s", tls_versions[s->ssl_min_version]);
    stat(k, "ssl_wbuf_size", "%zu", s->ssl_wbuf_size);
    stat(k, "evictions_policy", "%s", "segment-fifo-2nd-chance");
    stat(k, "memory_file", "%s", s->memory_file ? s->memory_file : "(null)");
    stat(k, "dump_enabled", "%s", "yes");
    stat(k, "growth_factor", "%.2f", 1.25);  /* of the size classes "stats items" counts in */
    stat(k, "chunk_size", "%d", 16);         /* the smallest of them */
    stat(k, "slab_chunk_max", "%zu", s->item_size_max); /* items are never split into chunks */
    stat(k, "hash_algorithm", "%s", "murmur2_64");
    stat(k, "inline_ascii_response", "%s", "no");
    /* memcached's settings for its LRU threads, slab mover, extstore, log buffers and NAPI: memkitd
     * has none of them (their -o options are accepted with a note and change nothing) */
    static const char *const no[] = {"lru_crawler", "lru_maintainer_thread", "lru_segmented", "slab_reassign",
                                     "temp_lru", "track_sizes"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        stat(k, no[i], "%s", "no");
    static const char *const zero[] = {
        "lru_crawler_sleep", "lru_crawler_tocrawl", "tail_repair_time", "hot_lru_pct", "warm_lru_pct",
        "hot_max_factor", "warm_max_factor", "temporary_ttl",
        "slab_automove_window", "slab_automove_freeratio", "watcher_logbuf_size", "worker_logbuf_size",
        "num_napi_ids", "ext_item_size", "ext_item_age", "ext_low_ttl", "ext_recache_rate", "ext_wbuf_size",
        "ext_compact_under", "ext_drop_under", "ext_max_sleep", "ext_max_frag", "ext_drop_unread"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        stat(k, zero[i], "%d", 0);
    /* as "slabs automove" last set them (memkitd has no slab pages to move: docs/operations.md) */
    stat(k, "slab_automove", "%d", __atomic_load_n(&srv->slab_automove, __ATOMIC_RELAXED));
    stat(k, "slab_automove_ratio", "%.2f", __atomic_load_n(&srv->slab_automove_ratio_pm, __ATOMIC_RELAXED) / 1000.0);
}

static void class_items(const mk_cache_class_stats *cs, void *ctx)
{
    const mk_stat_sink *k = ctx;
    char name[64];
#define ITEM_STAT(field, fmt, val)                                  \
    snprintf(name, sizeof(name), "items:%u:" field, cs->id);       \
    stat(k, name, fmt, val);
    ITEM_STAT("number", "%" PRIu64, cs->number);
    ITEM_STAT("age", "%" PRId64, cs->age);
    ITEM_STAT("mem_requested", "%" PRIu64, cs->bytes);
    ITEM_STAT("evicted", "%" PRIu64, cs->evicted);
    ITEM_STAT("outofmemory", "%" PRIu64, cs->outofmemory);
    ITEM_STAT("reclaimed", "%" PRIu64, cs->reclaimed);
    ITEM_STAT("expired_unfetched", "%" PRIu64, cs->expired_unfetched);
    ITEM_STAT("evicted_unfetched", "%" PRIu64, cs->evicted_unfetched);
    ITEM_STAT("evicted_nonzero", "%" PRIu64, cs->evicted_nonzero);
    /* memcached's segmented LRU (hot/warm/cold/temp), its maintainer and crawler: memkitd has none,
     * so nothing is in them or moved between them (0); see docs/operations.md */
    static const char *const none[] = {"number_hot", "number_warm", "number_cold", "age_hot", "age_warm",
                                       "evicted_time", "evicted_active", "crawler_reclaimed",
                                       "crawler_items_checked", "lrutail_reflocked", "moves_to_cold",
                                       "moves_to_warm", "moves_within_lru", "direct_reclaims", "hits_to_hot",
                                       "hits_to_warm", "hits_to_cold", "hits_to_temp", "tailrepairs"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        snprintf(name, sizeof(name), "items:%u:%s", cs->id, none[i]);
        stat(k, name, "%d", 0);
    }
#undef ITEM_STAT
}

typedef struct slab_ctx {
    const mk_stat_sink *k;
    unsigned active;
} slab_ctx;

static void class_slabs(const mk_cache_class_stats *cs, void *ctx)
{
    slab_ctx *sc = ctx;
    char name[64];
    snprintf(name, sizeof(name), "%u:chunk_size", cs->id);
    stat(sc->k, name, "%" PRIu64, cs->chunk_size);
    snprintf(name, sizeof(name), "%u:used_chunks", cs->id);
    stat(sc->k, name, "%" PRIu64, cs->number);
    snprintf(name, sizeof(name), "%u:mem_requested", cs->id);
    stat(sc->k, name, "%" PRIu64, cs->bytes);
    snprintf(name, sizeof(name), "%u:total_chunks", cs->id); /* every item is its own chunk */
    stat(sc->k, name, "%" PRIu64, cs->number);
    /* memcached's slab pages, free chunks and per-class command counts: memkitd has no pages or
     * free lists and counts commands server-wide only (0; docs/operations.md) */
    static const char *const none[] = {"chunks_per_page", "total_pages", "free_chunks", "free_chunks_end",
                                       "get_hits", "cmd_set", "delete_hits", "incr_hits", "decr_hits",
                                       "cas_hits", "cas_badval", "touch_hits"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        snprintf(name, sizeof(name), "%u:%s", cs->id, none[i]);
        stat(sc->k, name, "%d", 0);
    }
    sc->active++;
}

/*
 * One connection's lines, as memcached writes them. A UDP one says so first; while
 * it waits for a datagram its address is the socket's own (and it has no
 * listen_addr), while it serves one it is the sender's. Called under o's
 * worker's conns_lock.
 */
static void conn_lines(const mk_stat_sink *k, mk_conn *o, int64_t now)
{
    int fd = o->w.fd;
    int st = __atomic_load_n(&o->state, __ATOMIC_RELAXED);
    char name[64], peer[128];
    const char *addr = o->peer;
    bool listening = false;
    if (o->tr->datagram) {
        snprintf(name, sizeof(name), "%d:UDP", fd);
        stat(k, name, "%s", "UDP");
        listening = st == MK_CONN_READ;
        if (!listening) {
            mk_udp_peer_name(o, peer, sizeof(peer));
            addr = peer;
        }
    }
    snprintf(name, sizeof(name), "%d:addr", fd);
    stat(k, name, "%s", addr);
    if (!listening) {
        snprintf(name, sizeof(name), "%d:listen_addr", fd);
        stat(k, name, "%s", o->listen_name);
    }
    snprintf(name, sizeof(name), "%d:state", fd);
    stat(k, name, "%s", mk_conn_state_name(st));
    snprintf(name, sizeof(name), "%d:secs_since_last_cmd", fd);
    stat(k, name, "%" PRId64, now - __atomic_load_n(&o->last_cmd, __ATOMIC_RELAXED));
}

static void stats_conns(mk_server *srv, const mk_stat_sink *k)
{
    int64_t now = mk_server_now(srv);
    char name[64];
    for (int i = 0; i < srv->nlisteners; i++) {
        int fd = srv->listeners[i].w.fd;
        snprintf(name, sizeof(name), "%d:addr", fd);
        stat(k, name, "%s", srv->listeners[i].name);
        snprintf(name, sizeof(name), "%d:state", fd);
        stat(k, name, "%s", "conn_listening");
    }
    /* the UDP connections in descriptor order, as memcached lists them, then the clients */
    for (int fd = -1;;) {
        int next = INT_MAX, next_w = -1;
        for (int w = 0; w < srv->nworkers; w++) {
            mk_worker *wk = &srv->workers[w];
            pthread_mutex_lock(&wk->conns_lock);
            for (mk_conn *o = wk->conns; o; o = o->next)
                if (o->tr->datagram && o->w.fd > fd && o->w.fd < next)
                    next = o->w.fd, next_w = w;
            pthread_mutex_unlock(&wk->conns_lock);
        }
        if (next_w < 0)
            break;
        mk_worker *wk = &srv->workers[next_w];
        pthread_mutex_lock(&wk->conns_lock); /* (found again under the lock: it may have closed since) */
        for (mk_conn *o = wk->conns; o; o = o->next)
            if (o->tr->datagram && o->w.fd == next)
                conn_lines(k, o, now);
        pthread_mutex_unlock(&wk->conns_lock);
        fd = next;
    }
    for (int w = 0; w < srv->nworkers; w++) {
        mk_worker *wk = &srv->workers[w];
        pthread_mutex_lock(&wk->conns_lock);
        for (mk_conn *o = wk->conns; o; o = o->next)
            if (!o->tr->datagram)
                conn_lines(k, o, now);
        pthread_mutex_unlock(&wk->conns_lock);
    }
}

mk_stats_result mk_stats_group(mk_server *srv, mk_str args, const mk_stat_sink *k)
{
    mk_str rest = args, w1 = {0}, w2 = {0};
    mk_next_key(&rest, &w1);
    mk_next_key(&rest, &w2);

    if (w1.n == 0) {
        stats_general(srv, k);
    } else if (mk_str_is(w1, "settings")) {
        stats_settings(srv, k);
    } else if (mk_str_is(w1, "items")) {
        mk_cache_class_stats_each(srv->cache, mk_server_now(srv), class_items, (void *)k);
    } else if (mk_str_is(w1, "slabs")) {
        slab_ctx sc = {k, 0};
        mk_cache_stats cs;
        mk_cache_class_stats_each(srv->cache, mk_server_now(srv), class_slabs, &sc);
        mk_cache_get_stats(srv->cache, &cs);
        stat(k, "active_slabs", "%u", sc.active);
        stat(k, "total_malloced", "%" PRIu64, cs.mem_used);
    } else if (mk_str_is(w1, "sizes")) {
        stat(k, "sizes_status", "%s", "disabled");
    } else if (mk_str_is(w1, "conns")) {
        stats_conns(srv, k);
    } else if (mk_str_is(w1, "cachedump")) {
        return MK_STATS_CACHEDUMP; /* (lines of its own: crawler.c) */
    } else if (mk_str_is(w1, "reset")) {
        mk_server_reset_stats(srv);
        mk_server_detail_clear(srv); /* memcached's reset clears the prefix counters too (t/stats-detail.t) */
        return MK_STATS_RESET;
    } else if (mk_str_is(w1, "detail")) {
        if (mk_str_is(w2, "on") || mk_str_is(w2, "off")) {
            pthread_mutex_lock(&srv->stats_lock);
            __atomic_store_n(&srv->detail_enabled, mk_str_is(w2, "on"), __ATOMIC_RELAXED);
            pthread_mutex_unlock(&srv->stats_lock);
            return MK_STATS_OK;
        }
        if (!mk_str_is(w2, "dump"))
            return MK_STATS_USAGE;
        return MK_STATS_DUMP;
    } else {
        return MK_STATS_UNKNOWN;
    }
    return MK_STATS_END;
}

/* The text protocol's sink: "STAT <name> <value>\r\n". */
static void text_stat(void *ctx, const char *name, const char *value)
{
    char line[512];
    size_t n = mk_compose_stat(line, sizeof(line), name, value);
    mk_conn_out(ctx, line, n);
}

static void emit_line(void *ctx, const char *line)
{
    mk_conn *c = ctx;
    mk_conn_out(c, line, strlen(line));
    mk_conn_out(c, "\r\n", 2);
}

void mk_stats_command(mk_conn *c, mk_str args)
{
    mk_server *srv = c->worker->srv;
    mk_stat_sink k = {text_stat, c};
    switch (mk_stats_group(srv, args, &k)) {
    case MK_STATS_RESET:
        mk_conn_reply(c, "RESET");
        return;
    case MK_STATS_OK:
        mk_conn_reply(c, "OK");
        return;
    case MK_STATS_USAGE:
        mk_conn_reply(c, "CLIENT_ERROR usage: stats detail on|off|dump");
        return;
    case MK_STATS_UNKNOWN:
        mk_conn_reply(c, "ERROR");
        return;
    case MK_STATS_DUMP:
        mk_server_detail_dump(srv, emit_line, c);
        break;
    case MK_STATS_CACHEDUMP:
        mk_cachedump_command(c, args);
        return;
    case MK_STATS_END:
        break;
    }
    mk_conn_reply(c, "END");
}
