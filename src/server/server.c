/* server/server.c — listeners, the accept loop, worker threads and their loops, signals and the clock. */
#include "server/server.h"
#include "server/watch.h"
#include "server/version.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server/authfile.h"
#include "server/conn.h"
#include "server/tls.h"
#include "server/udp.h"

typedef struct mk_pending_conn {
    int fd;
    bool tls;
    char peer[80];
    const char *listen_name;
} mk_pending_conn;

static int64_t wall_now(void)
{
    return (int64_t)time(NULL);
}

/* ---- listeners ---- */

void mk_sockaddr_name(const struct sockaddr *sa, const char *proto, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%s:%d", proto, host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "%s6:[%s]:%d", proto, host, port);
    } else {
        snprintf(out, cap, "unix:");
    }
}

/*
 * TCP keepalive for accepted sockets, so that a peer that vanished (its host
 * died, the network was cut) gives its connection slot back: probed after
 * keepalive_idle seconds of silence, every keepalive_intvl seconds, closed
 * after keepalive_cnt unanswered probes; TCP_USER_TIMEOUT bounds the same wait
 * when replies are unacknowledged. About 2 minutes in all by default, where
 * memcached leaves the kernel's (2 hours 11 minutes). -o tcp_keepalive;
 * docs/security.md.
 */
static void set_keepalive(const mk_settings *s, int fd)
{
    int one = 1, idle = s->keepalive_idle, intvl = s->keepalive_intvl, cnt = s->keepalive_cnt;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    if (idle == 0)
        return; /* -o tcp_keepalive=0: the kernel's timers, as memcached */
    unsigned user_timeout = (unsigned)(idle + intvl * cnt) * 1000u;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}
/* (Set once on each TCP listener: Linux copies these options to every socket accept()
 * returns, so a short-lived client connection costs no extra system call.) */

static void on_accept(mk_watch *w, uint32_t events);

/* Stop watching the listeners until the next clock tick (EMFILE and friends). */
static void pause_accepting(mk_server *srv)
{
    if (srv->accept_paused)
        return;
    for (int i = 0; i < srv->nlisteners; i++)
        mk_loop_del(srv->loop, &srv->listeners[i].w);
    srv->accept_paused = true;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void resume_accepting(mk_server *srv)
{
    if (!srv->accept_paused)
        return;
    for (int i = 0; i < srv->nlisteners; i++)
        mk_loop_add(srv->loop, &srv->listeners[i].w, EPOLLIN);
    srv->accept_paused = false;
    int64_t since = __atomic_load_n(&srv->paused_since_us, __ATOMIC_RELAXED);
    if (since) { /* (a pause for descriptors, not the stop) */
        MK_STAT_ADD(&srv->main_stats, time_in_listen_disabled_us, (uint64_t)(mono_us() - since));
        __atomic_store_n(&srv->paused_since_us, 0, __ATOMIC_RELAXED);
    }
}

/* Make room for -c connections plus our own descriptors, as far as the hard limit allows. */
static void raise_fd_limit(const mk_settings *s)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)s->maxconns + (rlim_t)s->threads * 4 + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rlim_t soft = want;
    if (rl.rlim_max != RLIM_INFINITY && soft > rl.rlim_max)
        soft = rl.rlim_max;
    rl.rlim_cur = soft;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || soft < want)
        fprintf(stderr, "memkitd: warning: the open-file limit (%lu) is below what -c %d needs (%lu)\n",
                (unsigned long)soft, s->maxconns, (unsigned long)want);
}

static bool add_listener(mk_server *srv, int fd, const char *name, bool tls)
{
    mk_listener *ls = realloc(srv->listeners, (size_t)(srv->nlisteners + 1) * sizeof(*ls));
    if (!ls) {
        close(fd);
        return false;
    }
    srv->listeners = ls;
    mk_listener *l = &ls[srv->nlisteners++];
    memset(l, 0, sizeof(*l));
    l->w.fd = fd;
    l->w.cb = on_accept;
    l->srv = srv;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->tls = tls;
    return true;
}

/* Split "host", "host:port", "[v6]:port" or a bare IPv6 address into host and port strings. */
static bool split_listen(const char *spec, int default_port, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(spec, ':');
    snprintf(port, pcap, "%d", default_port);
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close)
            return false;
        snprintf(host, hcap, "%.*s", (int)(close - spec - 1), spec + 1);
        if (close[1] == ':')
            snprintf(port, pcap, "%s", close + 2);
        else if (close[1] != '\0')
            return false;
    } else if (colon && strchr(spec, ':') == colon) {
        snprintf(host, hcap, "%.*s", (int)(colon - spec), spec);
        snprintf(port, pcap, "%s", colon + 1);
    } else {
        snprintf(host, hcap, "%s", spec); /* a bare name, IPv4, or IPv6 without port */
    }
    return true;
}

/* As large a send buffer as the system allows (memcached does the same for UDP: replies burst). */
static void maximize_sndbuf(int fd)
{
    int cur = 0;
    socklen_t len = sizeof(cur);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &len) != 0)
        return;
    int lo = cur, hi = 256 * 1024 * 1024;
    while (lo < hi - 1024) { /* (the kernel stores twice what it is given, capped by wmem_max) */
        int mid = lo + (hi - lo) / 2, got = 0;
        socklen_t gl = sizeof(got);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &mid, sizeof(mid)) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &gl) == 0 && got >= mid)
            lo = mid;
        else
            hi = mid;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &lo, sizeof(lo));
}

static bool add_udp_socket(mk_server *srv, int fd, const char *name)
{
    mk_udp_socket *u = realloc(srv->udp, (size_t)(srv->nudp + 1) * sizeof(*u));
    if (!u) {
        close(fd);
        return false;
    }
    srv->udp = u;
    u[srv->nudp].fd = fd;
    snprintf(u[srv->nudp].name, sizeof(u[srv->nudp].name), "%s", name);
    srv->nudp++;
    return true;
}

/*
 * Listen on one -l entry: TCP at -p's port, or (udp) a UDP socket at -U's port;
 * the entry's own port, if it names one, wins (memcached's rule).
 */
static bool listen_inet(mk_server *srv, const char *spec, bool udp)
{
    const mk_settings *s = srv->settings;
    const char *what = udp ? "UDP " : "";
    char host[256], port[16];
    bool tls = s->tls && !udp;
    if (strncmp(spec, "notls:", 6) == 0) { /* memcached's prefix: this listener stays plain */
        spec += 6;
        tls = false;
    }
    if (!split_listen(spec, udp ? s->udp_port : s->port, host, sizeof(host), port, sizeof(port))) {
        fprintf(stderr, "memkitd: bad listen address \"%s\"\n", spec);
        return false;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "memkitd: cannot resolve listen address \"%s\": %s\n", spec, gai_strerror(rc));
        return false;
    }
    bool any = false;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (udp)
            maximize_sndbuf(fd);
        else
            set_keepalive(s, fd);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || (!udp && listen(fd, s->backlog) != 0)) {
            fprintf(stderr, "memkitd: cannot listen on %s %sport %s: %s\n", host, what, port, strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return false;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char name[128];
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        mk_sockaddr_name((struct sockaddr *)&ss, udp ? "udp" : "tcp", name, sizeof(name));
        if (!(udp ? add_udp_socket(srv, fd, name) : add_listener(srv, fd, name, tls)))
            break;
        any = true;
    }
    freeaddrinfo(res);
    if (!any)
        fprintf(stderr, "memkitd: no usable %saddress for \"%s\"\n", what, spec);
    return any;
}

static bool listen_unix(mk_server *srv)
{
    const mk_settings *s = srv->settings;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(s->unix_path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "memkitd: unix socket path too long: %s\n", s->unix_path);
        return false;
    }
    strcpy(sun.sun_path, s->unix_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    /* a stale socket file from an earlier run would make bind fail */
    struct stat st;
    if (lstat(s->unix_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(s->unix_path);
    mode_t old = umask((mode_t)(~s->unix_mask & 0777));
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc != 0 || listen(fd, s->backlog) != 0) {
        fprintf(stderr, "memkitd: cannot listen on %s: %s\n", s->unix_path, strerror(errno));
        close(fd);
        return false;
    }
    char name[128];
    snprintf(name, sizeof(name), "unix:%s", s->unix_path);
    return add_listener(srv, fd, name, false);
}

/* ---- accepting ---- */

static void hand_to_worker(mk_server *srv, int fd, bool tls, const char *peer, const char *listen_name)
{
    mk_worker *wk = &srv->workers[srv->next_worker++ % (unsigned)srv->nworkers];
    pthread_mutex_lock(&wk->queue_lock);
    if (wk->queue_len == wk->queue_cap) {
        size_t cap = wk->queue_cap ? wk->queue_cap * 2 : 16;
        mk_pending_conn *q = realloc(wk->queue, cap * sizeof(*q));
        if (!q) {
            pthread_mutex_unlock(&wk->queue_lock);
            close(fd);
            __atomic_fetch_sub(&srv->curr_conns, 1, __ATOMIC_RELAXED);
            return;
        }
        wk->queue = q;
        wk->queue_cap = cap;
    }
    mk_pending_conn *p = &wk->queue[wk->queue_len++];
    p->fd = fd;
    p->tls = tls;
    snprintf(p->peer, sizeof(p->peer), "%s", peer);
    p->listen_name = listen_name;
    pthread_mutex_unlock(&wk->queue_lock);
    uint64_t one = 1;
    if (write(wk->notify.fd, &one, sizeof(one)) < 0) {
        /* the eventfd counter cannot overflow in practice; the worker drains on its next wake */
    }
}

static void on_accept(mk_watch *w, uint32_t events)
{
    mk_listener *l = (mk_listener *)w;
    mk_server *srv = l->srv;
    mk_thread_stats *ts = &srv->main_stats;
    (void)events;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(w->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop accepting for a moment instead of spinning */
                if (srv->settings->verbose)
                    fprintf(stderr, "memkitd: accept: %s; pausing accepts\n", strerror(errno));
                if (!srv->accept_paused) {
                    MK_STAT_INC(ts, listen_disabled_num);
                    __atomic_store_n(&srv->paused_since_us, mono_us(), __ATOMIC_RELAXED);
                }
                pause_accepting(srv);
            }
            return;
        }
        if (__atomic_load_n(&srv->curr_conns, __ATOMIC_RELAXED) >= srv->settings->maxconns) {
            static const char msg[] = "ERROR Too many open connections\r\n";
            if (write(fd, msg, sizeof(msg) - 1) < 0) {
                /* the client is gone already */
            }
            close(fd);
            MK_STAT_INC(ts, rejected_conns);
            continue;
        }
        __atomic_fetch_add(&srv->curr_conns, 1, __ATOMIC_RELAXED);
        MK_STAT_INC(ts, total_conns);
        char peer[80];
        if (ss.ss_family == AF_UNIX) {
            snprintf(peer, sizeof(peer), "unix:%s", srv->settings->unix_path);
        } else {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            mk_sockaddr_name((struct sockaddr *)&ss, "tcp", peer, sizeof(peer));
        }
        if (__atomic_load_n(&srv->verbosity, __ATOMIC_RELAXED) > 1)
            fprintf(stderr, "<%d new client connection (%s)\n", fd, peer);
        hand_to_worker(srv, fd, l->tls, peer, l->name);
    }
}

/* ---- workers ---- */

static void worker_take_new(mk_worker *wk)
{
    pthread_mutex_lock(&wk->queue_lock);
    size_t n = wk->queue_len;
    mk_pending_conn batch[64];
    if (n > 64)
        n = 64;
    if (n > 0) {
        memcpy(batch, wk->queue, n * sizeof(*batch));
        memmove(wk->queue, wk->queue + n, (wk->queue_len - n) * sizeof(*batch));
        wk->queue_len -= n;
    }
    bool more = wk->queue_len > 0;
    pthread_mutex_unlock(&wk->queue_lock);
    for (size_t i = 0; i < n; i++) {
        mk_conn *c = mk_conn_create(wk, batch[i].fd, batch[i].peer, batch[i].listen_name);
        if (!c)
            __atomic_fetch_sub(&wk->srv->curr_conns, 1, __ATOMIC_RELAXED);
        else if (batch[i].tls && !mk_tls_conn_start(wk->srv->tls, c))
            mk_conn_close(c);
    }
    if (more) {
        uint64_t one = 1;
        if (write(wk->notify.fd, &one, sizeof(one)) < 0) {
            /* see hand_to_worker */
        }
    }
}

/* The store evicted an item (under its shard lock): a line for the watchers that want evictions. */
static void on_evict(void *ctx, const mk_cache_entry *e)
{
    mk_server *srv = ctx;
    if (mk_watching(srv, MK_WATCH_EVICTIONS))
        mk_watch_evict(srv, (mk_str){e->key, e->nkey}, e->fetched, e->exp_at ? e->exp_at - mk_server_now(srv) : -1,
                       e->cls, e->nbytes);
}

static void on_notify(mk_watch *w, uint32_t events)
{
    mk_worker *wk = (mk_worker *)((char *)w - offsetof(mk_worker, notify));
    uint64_t v;
    (void)events;
    if (read(w->fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing pending */
    }
    worker_take_new(wk);
    mk_watch_flush(wk);
}

static void worker_close_idle(mk_worker *wk)
{
    int idle = wk->srv->settings->idle_timeout;
    if (idle <= 0)
        return;
    mk_conn *c = wk->conns;
    while (c) {
        mk_conn *next = c->next;
        if (!c->tr->datagram && wk->now - __atomic_load_n(&c->last_cmd, __ATOMIC_RELAXED) > idle &&
            __atomic_load_n(&c->state, __ATOMIC_RELAXED) == MK_CONN_PARSE) {
            MK_STAT_INC(&wk->stats, idle_kicks);
            mk_conn_close(c);
        }
        c = next;
    }
}

/* Free the connections closed during the last batch of events. */
static void free_dead(mk_worker *wk)
{
    while (wk->dead) {
        mk_conn *c = wk->dead;
        wk->dead = c->next;
        mk_conn_free(c);
    }
}

static void close_all(mk_worker *wk)
{
    while (wk->conns)
        mk_conn_close(wk->conns);
    free_dead(wk);
}

/*
 * A worker that never finds its epoll empty is only switched out by the
 * scheduler's tick (4 ms at HZ=250). With more workers than cores, the
 * connections of a worker waiting behind a busy one stall that long: closed-loop
 * p99 at -t 2 on one core was 4.1 ms against memcached's 1.2-2.6 ms. So a worker
 * offers its core (sched_yield) at most once per YIELD_NS: with a core to itself
 * the call returns at once (one system call per millisecond at most).
 */
#define YIELD_NS 1000000
static void worker_maybe_yield(int64_t *last)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (now - *last >= YIELD_NS) {
        *last = now;
        sched_yield();
    }
}

static void *worker_main(void *arg)
{
    mk_worker *wk = arg;
    mk_server *srv = wk->srv;
    int64_t last_idle_check = 0, last_yield = 0;
    if (!mk_udp_worker_start(wk)) {
        srv->exit_status = 1;
        mk_server_stop(srv);
    }
    while (!__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE)) {
        worker_maybe_yield(&last_yield);
        mk_loop_run_once(wk->loop, wk->ready ? 0 : 1000);
        wk->now = mk_server_now(srv);
        /* connections that spent their -R budget with input left get another turn */
        mk_conn *r = wk->ready;
        wk->ready = NULL;
        while (r) {
            mk_conn *next = r->ready_next;
            mk_conn_resume(r);
            r = next;
        }
        if (wk->now != last_idle_check) {
            last_idle_check = wk->now;
            worker_close_idle(wk);
        }
        free_dead(wk);
    }
    /* stopping: close every connection this worker owns, then any still queued for it */
    close_all(wk);
    worker_take_new(wk);
    close_all(wk);
    return NULL;
}

/* ---- signals ---- */

/* SIGHUP with -Y: read the file again; if it cannot be used, the users loaded before stay (one line). */
static void reload_auth(mk_server *srv)
{
    const char *path = srv->settings->auth_file;
    if (!path) {
        if (srv->settings->verbose)
            fprintf(stderr, "memkitd: SIGHUP received, ignored\n");
        return;
    }
    char err[512];
    mk_authfile *a = mk_authfile_load(path, err, sizeof err);
    if (!a) {
        fprintf(stderr, "memkitd: SIGHUP: %s; the users loaded before stay\n", err);
        return;
    }
    pthread_rwlock_wrlock(&srv->auth_lock);
    mk_authfile *old = srv->auth;
    srv->auth = a;
    pthread_rwlock_unlock(&srv->auth_lock);
    mk_authfile_free(old);
    if (srv->settings->verbose)
        fprintf(stderr, "memkitd: SIGHUP: reloaded %s (%zu users)\n", path, mk_authfile_users(a));
}

static void on_signal(mk_watch *w, uint32_t events)
{
    mk_server *srv = (mk_server *)((char *)w - offsetof(mk_server, sigw));
    struct signalfd_siginfo si;
    (void)events;
    while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            /* memcached survives a hang-up too (a closed terminal, a log rotation's reload) and
             * reloads its -Y file; memkitd writes no log file of its own, so nothing else to do */
            reload_auth(srv);
            continue;
        }
        if (srv->settings->verbose)
            fprintf(stderr, "memkitd: signal %u received, stopping\n", si.ssi_signo);
        mk_server_stop(srv);
    }
}

/* ---- lifecycle ---- */

/* One line on what the memory file gave us (memcached's "[restart]" lines): always when it could not be used. */
static void report_restart(mk_server *srv)
{
    mk_cache_restart r;
    mk_cache_restart_info(srv->cache, &r);
    const char *file = srv->settings->memory_file;
    if (r.warm && (srv->verbosity > 0 || r.segments_dropped))
        fprintf(stderr, "[restart] restored %llu items from %s in %.3f s%s\n", (unsigned long long)r.items, file,
                r.seconds, r.segments_dropped ? " (some segments were damaged: their items are gone)" : "");
    else if (!r.warm && r.why[0])
        fprintf(stderr, "[restart] not using the image in %s: %s; starting with a clean cache\n", file, r.why);
    else if (!r.warm && srv->verbosity > 0)
        fprintf(stderr, "[restart] no image in %s, starting with a clean cache\n", file);
}

mk_server *mk_server_create(const mk_settings *s)
{
    mk_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return NULL;
    srv->settings = s;
    raise_fd_limit(s);
    srv->started = wall_now();
    srv->now = srv->started;
    srv->verbosity = s->verbose;
    srv->sigw.fd = -1;
    pthread_mutex_init(&srv->stats_lock, NULL);
    pthread_rwlock_init(&srv->auth_lock, NULL);
    if (s->tls) {
        char err[512];
        srv->tls = mk_tls_create(s, err, sizeof err);
        if (!srv->tls) {
            fprintf(stderr, "memkitd: %s\n", err);
            goto fail;
        }
    }
    if (s->auth_file) {
        char err[512];
        srv->auth = mk_authfile_load(s->auth_file, err, sizeof err);
        if (!srv->auth) {
            fprintf(stderr, "memkitd: %s\n", err);
            goto fail;
        }
    }

    mk_cache_config cc = {
        .mem_limit = s->maxbytes,
        .item_size_max = s->item_size_max,
        .evict = s->evict,
        .use_cas = s->use_cas,
        .hashpower = s->hashpower,
        .mem_file = s->memory_file,
        .now = srv->now,
        .dump_items = s->coredumps,
    };
    cc.on_evict = on_evict;
    cc.evict_ctx = srv;
    srv->watchers = mk_watchers_create();
    srv->cache = mk_cache_create(&cc);
    if (!srv->cache && s->memory_file) {
        fprintf(stderr, "memkitd: cannot use memory file %s: %s\n", s->memory_file, strerror(errno));
        goto fail;
    }
    srv->loop = mk_loop_create();
    if (!srv->cache || !srv->loop || !srv->watchers) {
        fprintf(stderr, "memkitd: out of memory creating the store\n");
        goto fail;
    }
    if (s->memory_file)
        report_restart(srv);

    if (s->unix_path) {
        if (!listen_unix(srv))
            goto fail;
    } else {
        for (int i = 0; i < s->nlisten; i++)
            if (!listen_inet(srv, s->listen[i], false))
                goto fail;
        /* -U: memcached's UDP, on the same addresses (not with -s, as in memcached) */
        for (int i = 0; s->udp_port > 0 && i < s->nlisten; i++)
            if (!listen_inet(srv, s->listen[i], true))
                goto fail;
    }

    srv->nworkers = s->threads;
    srv->workers = calloc((size_t)srv->nworkers, sizeof(*srv->workers));
    if (!srv->workers)
        goto fail;
    for (int i = 0; i < srv->nworkers; i++) {
        mk_worker *wk = &srv->workers[i];
        wk->id = i;
        wk->srv = srv;
        wk->now = srv->now;
        wk->notify.fd = -1;
        pthread_mutex_init(&wk->queue_lock, NULL);
        pthread_mutex_init(&wk->conns_lock, NULL);
        wk->loop = mk_loop_create();
        wk->notify.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        wk->notify.cb = on_notify;
        if (!wk->loop || wk->notify.fd < 0 || mk_loop_add(wk->loop, &wk->notify, EPOLLIN) != 0) {
            fprintf(stderr, "memkitd: cannot create worker %d: %s\n", i, strerror(errno));
            goto fail;
        }
    }
    return srv;
fail:
    mk_server_destroy(srv);
    return NULL;
}

void mk_server_stop(mk_server *srv)
{
    __atomic_store_n(&srv->stopping, true, __ATOMIC_RELEASE);
}

int mk_server_run(mk_server *srv)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGHUP);
    /* block them in every thread (workers inherit the mask); the main loop reads them */
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    srv->sigw.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    srv->sigw.cb = on_signal;
    if (srv->sigw.fd < 0 || mk_loop_add(srv->loop, &srv->sigw, EPOLLIN) != 0) {
        fprintf(stderr, "memkitd: signalfd: %s\n", strerror(errno));
        return 1;
    }
    for (int i = 0; i < srv->nlisteners; i++)
        if (mk_loop_add(srv->loop, &srv->listeners[i].w, EPOLLIN) != 0) {
            fprintf(stderr, "memkitd: epoll: %s\n", strerror(errno));
            return 1;
        }
    if (srv->settings->verbose) {
        /* -v: one line saying where it serves (stderr, where memcached's -v writes too) */
        char where[1024] = "";
        size_t n = 0;
        for (int i = 0; i < srv->nlisteners && n < sizeof where; i++)
            n += (size_t)snprintf(where + n, sizeof where - n, "%s%s%s", i ? ", " : "", srv->listeners[i].name,
                                  srv->listeners[i].tls ? " (TLS)" : "");
        for (int i = 0; i < srv->nudp && n < sizeof where; i++)
            n += (size_t)snprintf(where + n, sizeof where - n, ", %s", srv->udp[i].name);
        fprintf(stderr, "memkitd %s: listening on %s; %d threads, -m %zu MB\n", MK_VERSION, where,
                srv->settings->threads, srv->settings->maxbytes >> 20);
    }
    int started = 0;
    for (; started < srv->nworkers; started++) {
        if (pthread_create(&srv->workers[started].thread, NULL, worker_main, &srv->workers[started]) != 0) {
            fprintf(stderr, "memkitd: cannot start worker threads\n");
            mk_server_stop(srv);
            srv->exit_status = 1;
            break;
        }
    }
    while (!__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE)) {
        mk_loop_run_once(srv->loop, 100);
        resume_accepting(srv);
        int64_t now = wall_now();
        if (now != mk_server_now(srv)) {
            __atomic_store_n(&srv->now, now, __ATOMIC_RELAXED);
            mk_cache_maintain(srv->cache, now);
        }
    }
    /* stop accepting, then wake and join the workers */
    pause_accepting(srv);
    for (int i = 0; i < started; i++) {
        uint64_t one = 1;
        if (write(srv->workers[i].notify.fd, &one, sizeof(one)) < 0) {
            /* the worker wakes within a second anyway */
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(srv->workers[i].thread, NULL);
    return srv->exit_status; /* (mk_server_destroy saves the image for a restart) */
}

void mk_server_destroy(mk_server *srv)
{
    if (!srv)
        return;
    for (int i = 0; i < srv->nlisteners; i++)
        close(srv->listeners[i].w.fd);
    if (srv->settings->unix_path && srv->nlisteners > 0)
        unlink(srv->settings->unix_path);
    free(srv->listeners);
    for (int i = 0; i < srv->nudp; i++)
        close(srv->udp[i].fd); /* (each worker's connection closed its own descriptor for it) */
    free(srv->udp);
    for (int i = 0; srv->workers && i < srv->nworkers; i++) {
        mk_worker *wk = &srv->workers[i];
        if (wk->notify.fd >= 0)
            close(wk->notify.fd);
        mk_loop_destroy(wk->loop);
        free(wk->queue);
        free(wk->tls_wbuf);
        pthread_mutex_destroy(&wk->queue_lock);
        pthread_mutex_destroy(&wk->conns_lock);
    }
    free(srv->workers);
    if (srv->sigw.fd >= 0)
        close(srv->sigw.fd);
    mk_loop_destroy(srv->loop);
    mk_server_detail_clear(srv);
    mk_watchers_free(srv->watchers);
    /*
     * No thread touches the store now: leave an image a restart can serve again
     * (also when the server never ran — a port taken, a failed daemonize — so the
     * image stays as usable as it was found).
     */
    const char *file = srv->settings->memory_file;
    if (srv->cache && file && !mk_cache_save(srv->cache, wall_now()))
        fprintf(stderr, "[restart] could not save %s: %s\n", file, strerror(errno));
    else if (srv->cache && file && srv->verbosity > 0)
        fprintf(stderr, "[restart] saved the cache in %s\n", file);
    mk_cache_destroy(srv->cache);
    mk_authfile_free(srv->auth);
    mk_tls_free(srv->tls);
    pthread_rwlock_destroy(&srv->auth_lock);
    pthread_mutex_destroy(&srv->stats_lock);
    free(srv);
}

/* ---- stats over all workers ---- */

void mk_server_thread_stats(mk_server *srv, mk_thread_stats *out)
{
    mk_thread_stats sum = {0};
    mk_thread_stats_accumulate(&sum, &srv->main_stats);
    for (int i = 0; i < srv->nworkers; i++)
        mk_thread_stats_accumulate(&sum, &srv->workers[i].stats);
    pthread_mutex_lock(&srv->stats_lock);
    mk_thread_stats_sub(out, &sum, &srv->stats_base);
    pthread_mutex_unlock(&srv->stats_lock);
}

void mk_server_reset_stats(mk_server *srv)
{
    mk_thread_stats sum = {0};
    mk_thread_stats_accumulate(&sum, &srv->main_stats);
    for (int i = 0; i < srv->nworkers; i++)
        mk_thread_stats_accumulate(&sum, &srv->workers[i].stats);
    pthread_mutex_lock(&srv->stats_lock);
    srv->stats_base = sum;
    pthread_mutex_unlock(&srv->stats_lock);
    mk_cache_reset_stats(srv->cache);
}
