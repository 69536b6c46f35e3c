/* tests/client/test_client.c — libmemkit against real servers: every call, multi-get, pool, failover (kill, SIGSTOP), 32 threads. */
/*
 * Starts its own servers on free loopback ports: $MK_SERVER (default
 * /usr/bin/memcached; build/memkitd works too) as "<bin> -u root -p PORT -l 127.0.0.1 -U 0".
 * $MK_THREAD_OPS (default 10000) sets the operations per thread of the 32-thread test.
 * Prints "<suite>: N passed, N failed" with suite = $MK_SUITE (default client).
 */
#include "check.h"
#include "memkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- servers */

typedef struct srv {
    pid_t pid;
    int port;
    char path[108];   /* unix socket, or "" */
    const char *sasl_conf; /* non-NULL: started with -S, SASL_CONF_PATH set to this directory */
    const char *auth_file; /* non-NULL: started with -Y and this file */
    const char *tls_opts;  /* non-NULL: started with -Z -o tls_opts */
} srv;

static const char *server_bin;
#define NSRV 4
static srv S[NSRV];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static bool can_connect(const srv *s)
{
    int fd;
    int ok;
    if (s->path[0]) {
        struct sockaddr_un u = {.sun_family = AF_UNIX};
        snprintf(u.sun_path, sizeof u.sun_path, "%s", s->path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ok = connect(fd, (struct sockaddr *)&u, sizeof u) == 0;
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET, SOCK_STREAM, 0);
        ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    }
    close(fd);
    return ok;
}

static void srv_start(srv *s)
{
    if (!s->path[0] && s->port == 0)
        s->port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    s->pid = fork();
    if (s->pid == 0) {
        freopen("/dev/null", "w", stdout);
        if (s->path[0])
            execl(server_bin, server_bin, "-u", "root", "-s", s->path, "-U", "0", (char *)NULL);
        else if (s->tls_opts)
            execl(server_bin, server_bin, "-u", "root", "-p", port, "-l", "127.0.0.1", "-U", "0", "-Z", "-o",
                  s->tls_opts, (char *)NULL);
        else if (s->auth_file)
            execl(server_bin, server_bin, "-u", "root", "-p", port, "-l", "127.0.0.1", "-U", "0", "-Y", s->auth_file,
                  (char *)NULL);
        else if (s->sasl_conf && setenv("SASL_CONF_PATH", s->sasl_conf, 1) == 0)
            execl(server_bin, server_bin, "-u", "root", "-p", port, "-l", "127.0.0.1", "-U", "0", "-S",
                  (char *)NULL);
        else
            execl(server_bin, server_bin, "-u", "root", "-p", port, "-l", "127.0.0.1", "-U", "0", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !can_connect(s); i++)
        sleep_ms(10);
}

static void srv_stop(srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

/* SIGSTOP and wait until the kernel has really stopped it (kill() is asynchronous). */
static void freeze(pid_t pid)
{
    kill(pid, SIGSTOP);
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        if (p && (p[2] == 'T' || p[2] == 't'))
            return;
        sleep_ms(1);
    }
}

static char *server_list(int n)
{
    static char buf[512];
    buf[0] = '\0';
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s127.0.0.1:%d", i ? "," : "", S[i].port);
    return buf;
}

static bool use_binary; /* client() makes binary-protocol clients (the binary runs of the tests) */

static mk_client *client(int n, const mk_options *o)
{
    mk_client *c = NULL;
    char err[256];
    mk_options bo;
    if (use_binary) {
        if (o)
            bo = *o;
        else
            mk_options_init(&bo);
        bo.binary = true;
        o = &bo;
    }
    int rc = mk_client_create(&c, server_list(n), o, err, sizeof err);
    if (rc)
        fprintf(stderr, "mk_client_create: %s\n", err);
    return c;
}

#define K(s) (s), strlen(s)

/* ---------------------------------------------------------------- tests */

static void test_create_errors(void)
{
    mk_client *c = (mk_client *)1;
    char err[256] = "";
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:0", NULL, err, sizeof err), MK_EBADSERVERS);
    CHECK(c == NULL);
    CHECK(strstr(err, "port") != NULL);
    CHECK_EQ_I(mk_client_create(&c, "", NULL, err, sizeof err), MK_EBADSERVERS);
    CHECK_EQ_I(mk_client_create(&c, "no-such-host.invalid:11211", NULL, err, sizeof err), MK_ERESOLVE);
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 0;
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1", &o, err, sizeof err), MK_EINVAL);
    CHECK(strcmp(mk_strerror(MK_ETIMEDOUT), "timed out") == 0);
    mk_distribution d;
    CHECK_EQ_I(mk_distribution_parse("modula", &d), 0);
    CHECK_EQ_I(d, MK_DISTRIBUTION_MODULA);
    CHECK_EQ_I(mk_distribution_parse("nope", &d), MK_EINVAL);
    CHECK_EQ_I(mk_client_create(&c, "localhost:1,[::1]:2 3,/tmp/x.sock", NULL, err, sizeof err), 0);
    CHECK_EQ_U(mk_server_count(c), 3);
    CHECK(strcmp(mk_server_name(c, 1), "[::1]:2") == 0);
    CHECK(strcmp(mk_server_name(c, 2), "/tmp/x.sock") == 0);
    CHECK(mk_server_name(c, 3) == NULL);
    CHECK_EQ_U(mk_server_weight(c, 0), 1);
    CHECK_EQ_U(mk_server_weight(c, 1), 3);
    CHECK_EQ_U(mk_server_weight(c, 2), 1);
    CHECK_EQ_U(mk_server_weight(c, 3), 0);
    mk_client_destroy(c);
    mk_client_destroy(NULL);
}

static void test_every_op(void)
{
    mk_client *c = client(NSRV, NULL);
    CHECK(c != NULL);
    if (!c)
        return;
    mk_item it;
    CHECK_EQ_I(mk_flush_all(c, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("a"), &it), MK_ENOTFOUND);
    CHECK(it.value == NULL);
    CHECK_EQ_I(mk_set(c, K("a"), "hello", 5, 0xFFFFFFFFu, 0), 0);
    CHECK_EQ_I(mk_get(c, K("a"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "hello");
    CHECK_EQ_U(it.flags, 0xFFFFFFFFu);
    mk_item_clear(&it);
    /* binary-safe values */
    const char bin[] = "a\r\nEND\r\n\0b";
    CHECK_EQ_I(mk_set(c, K("bin"), bin, sizeof bin, 1, 0), 0);
    CHECK_EQ_I(mk_get(c, K("bin"), &it), 0);
    CHECK(it.nvalue == sizeof bin && memcmp(it.value, bin, sizeof bin) == 0);
    mk_item_clear(&it);
    /* empty and large values */
    CHECK_EQ_I(mk_set(c, K("empty"), "", 0, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("empty"), &it), 0);
    CHECK_EQ_U(it.nvalue, 0);
    mk_item_clear(&it);
    size_t big = 900 * 1024;
    char *bv = malloc(big);
    for (size_t i = 0; i < big; i++)
        bv[i] = (char)(i * 31);
    CHECK_EQ_I(mk_set(c, K("big"), bv, big, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("big"), &it), 0);
    CHECK(it.nvalue == big && memcmp(it.value, bv, big) == 0);
    mk_item_clear(&it);
    char *huge = calloc(1, 2 << 20);
    CHECK_EQ_I(mk_set(c, K("huge"), huge, 2 << 20, 0, 0), MK_ESERVERERR);
    free(huge);
    free(bv);
    CHECK_EQ_I(mk_get(c, K("a"), &it), 0);   /* the connection is still good after SERVER_ERROR */
    mk_item_clear(&it);
    /* add / replace / append / prepend */
    CHECK_EQ_I(mk_add(c, K("a"), "x", 1, 0, 0), MK_ENOTSTORED);
    CHECK_EQ_I(mk_add(c, K("b"), "B", 1, 7, 0), 0);
    CHECK_EQ_I(mk_replace(c, K("nope"), "x", 1, 0, 0), MK_ENOTSTORED);
    CHECK_EQ_I(mk_replace(c, K("b"), "bb", 2, 8, 0), 0);
    CHECK_EQ_I(mk_append(c, K("b"), ">", 1), 0);
    CHECK_EQ_I(mk_prepend(c, K("b"), "<", 1), 0);
    CHECK_EQ_I(mk_append(c, K("nope"), ">", 1), MK_ENOTSTORED);
    CHECK_EQ_I(mk_get(c, K("b"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "<bb>");
    CHECK_EQ_U(it.flags, 8);
    mk_item_clear(&it);
    /* gets / cas */
    CHECK_EQ_I(mk_gets(c, K("b"), &it), 0);
    uint64_t cas = it.cas;
    CHECK(cas != 0);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_cas(c, K("b"), "c1", 2, 0, 0, cas + 1000), MK_EEXISTS);
    CHECK_EQ_I(mk_cas(c, K("b"), "c1", 2, 0, 0, cas), 0);
    CHECK_EQ_I(mk_cas(c, K("b"), "c2", 2, 0, 0, cas), MK_EEXISTS);
    CHECK_EQ_I(mk_cas(c, K("nope"), "c2", 2, 0, 0, 1), MK_ENOTFOUND);
    /* delete */
    CHECK_EQ_I(mk_delete(c, K("b"), 0), 0);
    CHECK_EQ_I(mk_delete(c, K("b"), 0), MK_ENOTFOUND);
    /* incr / decr */
    uint64_t v = 0;
    CHECK_EQ_I(mk_incr(c, K("n"), 1, &v, 0), MK_ENOTFOUND);
    CHECK_EQ_I(mk_set(c, K("n"), "10", 2, 0, 0), 0);
    CHECK_EQ_I(mk_incr(c, K("n"), 5, &v, 0), 0);
    CHECK_EQ_U(v, 15);
    CHECK_EQ_I(mk_decr(c, K("n"), 100, &v, 0), 0);
    CHECK_EQ_U(v, 0);
    CHECK_EQ_I(mk_incr(c, K("a"), 1, &v, 0), MK_ENOTNUM);
    CHECK_EQ_I(mk_set(c, K("n"), "18446744073709551615", 20, 0, 0), 0);
    CHECK_EQ_I(mk_incr(c, K("n"), 1, &v, 0), 0);
    CHECK_EQ_U(v, 0);   /* wraps, as in memcached */
    /* touch / gat / gats */
    CHECK_EQ_I(mk_touch(c, K("a"), 100, 0), 0);
    CHECK_EQ_I(mk_touch(c, K("nope"), 100, 0), MK_ENOTFOUND);
    CHECK_EQ_I(mk_gat(c, K("a"), 100, &it), 0);
    CHECK_MEM(it.value, it.nvalue, "hello");
    mk_item_clear(&it);
    CHECK_EQ_I(mk_gats(c, K("a"), 100, &it), 0);
    CHECK(it.cas != 0);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_gat(c, K("nope"), 100, &it), MK_ENOTFOUND);
    CHECK_EQ_I(mk_set(c, K("exp"), "x", 1, 0, -1), 0);
    CHECK_EQ_I(mk_get(c, K("exp"), &it), MK_ENOTFOUND);
    /* noreply variants */
    CHECK_EQ_I(mk_store(c, MK_STORE_SET, K("nr"), "1", 1, 0, 0, 0, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_store(c, MK_STORE_ADD, K("nr"), "2", 1, 0, 0, 0, MK_NOREPLY), 0);  /* NOT_STORED, unseen */
    CHECK_EQ_I(mk_incr(c, K("nr"), 5, &v, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_get(c, K("nr"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "6");
    mk_item_clear(&it);
    CHECK_EQ_I(mk_decr(c, K("nr"), 1, NULL, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_touch(c, K("nr"), 50, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_delete(c, K("nr"), MK_NOREPLY), 0);
    CHECK_EQ_I(mk_get(c, K("nr"), &it), MK_ENOTFOUND);
    CHECK_EQ_I(mk_delete(c, K("nr"), MK_NOREPLY), 0);   /* NOT_FOUND, unseen */
    CHECK_EQ_I(mk_set(c, K("after"), "ok", 2, 0, 0), 0);
    /* bad keys: refused before anything is sent */
    char longkey[252];
    memset(longkey, 'k', sizeof longkey);
    CHECK_EQ_I(mk_set(c, longkey, 251, "x", 1, 0, 0), MK_EBADKEY);
    CHECK_EQ_I(mk_set(c, longkey, 250, "x", 1, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("a b"), &it), MK_EBADKEY);
    CHECK_EQ_I(mk_get(c, "a\nb", 3, &it), MK_EBADKEY);
    CHECK_EQ_I(mk_delete(c, "", 0, 0), MK_EBADKEY);
    CHECK_EQ_I(mk_incr(c, "\x7f", 1, 1, &v, 0), MK_EBADKEY);
    CHECK_EQ_I(mk_server_for_key(c, K("a b")), MK_EBADKEY);
    CHECK_EQ_I(mk_set(c, K("utf8-\xc3\xa9"), "e", 1, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("utf8-\xc3\xa9"), &it), 0);
    mk_item_clear(&it);
    /* version and stats per server */
    for (size_t i = 0; i < NSRV; i++) {
        char ver[64];
        CHECK_EQ_I(mk_version(c, i, ver, sizeof ver), 0);
        CHECK(strncmp(ver, "1.6", 3) == 0);
    }
    char tiny[2];
    CHECK_EQ_I(mk_version(c, 0, tiny, sizeof tiny), MK_ERANGE);
    CHECK_EQ_I(mk_version(c, NSRV, tiny, sizeof tiny), MK_ERANGE);
    CHECK_EQ_I(mk_flush_all(c, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("a"), &it), MK_ENOTFOUND);
    CHECK_EQ_I(mk_flush_all(c, 0, MK_NOREPLY), 0);
    mk_client_destroy(c);
}

static void count_stat(void *ctx, const char *name, size_t nn, const char *val, size_t nv)
{
    (void)val;
    (void)nv;
    int *n = ctx;
    (*n)++;
    if (nn == 3 && memcmp(name, "pid", 3) == 0)
        n[1] = 1;
}

static void test_stats(void)
{
    mk_client *c = client(2, NULL);
    int n[2] = {0, 0};
    CHECK_EQ_I(mk_stats(c, 1, NULL, count_stat, n), 0);
    CHECK(n[0] > 20);
    CHECK(n[1] == 1);
    n[0] = 0;
    CHECK_EQ_I(mk_stats(c, 0, "settings", count_stat, n), 0);
    CHECK(n[0] > 10);
    CHECK_EQ_I(mk_stats(c, 0, "bad\r\nversion", count_stat, n), MK_EINVAL);
    CHECK_EQ_I(mk_stats(c, 5, NULL, count_stat, n), MK_ERANGE);
    mk_client_destroy(c);
}

/* Each key lives on exactly the server mk_server_for_key names. */
static void test_placement(void)
{
    mk_client *c = client(NSRV, NULL);
    mk_client *one[NSRV];
    for (int i = 0; i < NSRV; i++) {
        char l[64];
        snprintf(l, sizeof l, "127.0.0.1:%d", S[i].port);
        CHECK_EQ_I(mk_client_create(&one[i], l, NULL, NULL, 0), 0);
    }
    mk_flush_all(c, 0, 0);
    int per[NSRV] = {0};
    for (int k = 0; k < 200; k++) {
        char key[32];
        snprintf(key, sizeof key, "place-%d", k);
        int s = mk_server_for_key(c, K(key));
        CHECK(s >= 0 && s < NSRV);
        if (s < 0)
            continue;
        per[s]++;
        CHECK_EQ_I(mk_set(c, K(key), "v", 1, 0, 0), 0);
        for (int i = 0; i < NSRV; i++) {
            mk_item it;
            CHECK_EQ_I(mk_get(one[i], K(key), &it), i == s ? 0 : MK_ENOTFOUND);
            mk_item_clear(&it);
        }
    }
    for (int i = 0; i < NSRV; i++) {
        CHECK(per[i] > 10);
        mk_client_destroy(one[i]);
    }
    mk_client_destroy(c);
}

typedef struct hitlog {
    int count[200];
    char ok[200];
} hitlog;

static void on_hit(void *ctx, size_t i, const mk_item *it)
{
    hitlog *h = ctx;
    char want[64];
    snprintf(want, sizeof want, "value-%.*s", (int)it->nkey, it->key);
    h->count[i]++;
    h->ok[i] = it->nvalue == strlen(want) && memcmp(it->value, want, it->nvalue) == 0 && it->flags == (uint32_t)i;
}

static void test_mget(void)
{
    mk_client *c = client(NSRV, NULL);
    mk_flush_all(c, 0, 0);
    char keybuf[200][16];
    const char *keys[200];
    size_t nkeys[200];
    for (int i = 0; i < 100; i++) {
        snprintf(keybuf[i], sizeof keybuf[i], "mg%d", i);
        keys[i] = keybuf[i];
        nkeys[i] = strlen(keybuf[i]);
        if (i % 2 == 0) {
            char v[64];
            snprintf(v, sizeof v, "value-%.16s", keybuf[i]);
            CHECK_EQ_I(mk_set(c, K(keybuf[i]), v, strlen(v), (uint32_t)i, 0), 0);
        }
    }
    /* the same keys again at 100..199: duplicates */
    for (int i = 100; i < 200; i++) {
        keys[i] = keys[i - 100];
        nkeys[i] = nkeys[i - 100];
    }
    hitlog h;
    memset(&h, 0, sizeof h);
    CHECK_EQ_I(mk_mget(c, keys, nkeys, 100, false, on_hit, &h), 0);
    for (int i = 0; i < 100; i++) {
        CHECK_EQ_I(h.count[i], i % 2 == 0);
        if (i % 2 == 0)
            CHECK(h.ok[i]);
    }
    mk_item items[200];
    int rcs[200];
    CHECK_EQ_I(mk_mget_items(c, keys, nkeys, 200, true, items, rcs), 0);
    for (int i = 0; i < 200; i++) {
        int k = i % 100;
        CHECK_EQ_I(rcs[i], k % 2 == 0 ? 0 : MK_ENOTFOUND);
        CHECK((items[i].value != NULL) == (k % 2 == 0));
        if (items[i].value)
            CHECK(items[i].cas != 0 && items[i].flags == (uint32_t)k);
        mk_item_clear(&items[i]);
    }
    const char *bad[2] = {"ok", "not ok"};
    size_t nbad[2] = {2, 6};
    CHECK_EQ_I(mk_mget(c, bad, nbad, 2, false, on_hit, &h), MK_EBADKEY);
    CHECK_EQ_I(mk_mget(c, keys, nkeys, 0, false, on_hit, &h), 0);
    mk_client_destroy(c);
}

/* Bytes that arrived and are still unread on the server side of connections to `port` (/proc/net/tcp). */
static long unread_at_port(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    long total = 0;
    if (!f)
        return -1;
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        unsigned lport, st;
        unsigned long txq, rxq;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %lx:%lx", &lport, &st, &txq, &rxq) == 4 &&
            (int)lport == port && st == 1 /* ESTABLISHED */)
            total += (long)rxq;
    }
    fclose(f);
    return total;
}

typedef struct mget_job {
    mk_client *c;
    const char **keys;
    size_t *nkeys;
    mk_item *items;
    int rc;
} mget_job;

static void *mget_thread(void *arg)
{
    mget_job *j = arg;
    j->rc = mk_mget_items(j->c, j->keys, j->nkeys, 100, false, j->items, NULL);
    return NULL;
}

/*
 * A 100-key multi-get over 4 servers has a request in flight to every server at
 * once: with all four frozen (SIGSTOP), each one's socket soon holds an unread
 * request. A client that asked the servers one after another would have only
 * one outstanding, however long we wait. (Checked on the kernel's receive
 * queues, so a busy machine cannot make this flaky.)
 */
static void test_mget_parallel(void)
{
    mk_client *c = client(NSRV, NULL);
    const char *keys[100];
    size_t nkeys[100];
    char kb[100][16];
    for (int i = 0; i < 100; i++) {
        snprintf(kb[i], sizeof kb[i], "par%d", i);
        keys[i] = kb[i];
        nkeys[i] = strlen(kb[i]);
        mk_set(c, K(kb[i]), "v", 1, 0, 0);
    }
    for (int i = 0; i < NSRV; i++)
        freeze(S[i].pid);
    mk_item items[100];
    mget_job job = {c, keys, nkeys, items, -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, mget_thread, &job) == 0);
    int waiting = 0;
    for (int tries = 0; tries < 400 && waiting < NSRV; tries++) {
        sleep_ms(5);
        waiting = 0;
        for (int i = 0; i < NSRV; i++)
            waiting += unread_at_port(S[i].port) > 0;
    }
    CHECK_EQ_I(waiting, NSRV); /* a request queued at every frozen server at the same time */
    for (int i = 0; i < NSRV; i++)
        kill(S[i].pid, SIGCONT);
    pthread_join(t, NULL);
    CHECK_EQ_I(job.rc, 0);
    for (int i = 0; i < 100; i++) {
        CHECK(items[i].value != NULL);
        mk_item_clear(&items[i]);
    }
    mk_client_destroy(c);
}

static void test_unix_socket(void)
{
    srv u = {0};
    snprintf(u.path, sizeof u.path, "/tmp/memkit-test-%d.sock", (int)getpid());
    srv_start(&u);
    mk_client *c = NULL;
    char list[160];
    snprintf(list, sizeof list, "unix:%s", u.path);
    CHECK_EQ_I(mk_client_create(&c, list, NULL, NULL, 0), 0);
    CHECK_EQ_I(mk_set(c, K("u"), "unix", 4, 0, 0), 0);
    mk_item it;
    CHECK_EQ_I(mk_get(c, K("u"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "unix");
    mk_item_clear(&it);
    mk_client_destroy(c);
    srv_stop(&u);
    unlink(u.path);
}

/* mk_op_rearm: time an op spent queued before its first step is not charged to it; once it has a
 * connection it cannot be re-armed. */
static void test_op_rearm(void)
{
    mk_options o;
    mk_options_init(&o);
    o.checkout_timeout_ms = 300;
    mk_client *c = client(1, &o);
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_GET;
    a.key = "ra";
    a.nkey = 2;
    mk_op *op;
    CHECK_EQ_I(mk_op_start(c, &a, &op), 0);
    usleep(200 * 1000); /* queued behind someone else's limiter */
    CHECK(mk_op_timeout_ms(op) <= 100);
    CHECK_EQ_I(mk_op_rearm(op), 0);
    CHECK(mk_op_timeout_ms(op) > 250);
    int rc;
    while ((rc = mk_op_step(op)) == MK_EAGAIN) {
        CHECK_EQ_I(mk_op_rearm(op), MK_EINVAL); /* it has its connection now */
        struct pollfd p = {mk_op_fd(op), mk_op_events(op), 0};
        poll(&p, 1, mk_op_timeout_ms(op));
    }
    CHECK_EQ_I(rc, MK_ENOTFOUND);
    CHECK_EQ_I(mk_op_rearm(op), MK_EINVAL);
    CHECK_EQ_I(mk_op_rearm(NULL), MK_EINVAL);
    mk_op_destroy(op);
    mk_client_destroy(c);
}

/* The non-blocking interface driven by our own poll loop. */
static void test_nonblocking(void)
{
    mk_client *c = client(2, NULL);
    CHECK_EQ_I(mk_set(c, K("nb"), "event", 5, 3, 0), 0);
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_GET;
    a.key = "nb";
    a.nkey = 2;
    mk_op *op;
    CHECK_EQ_I(mk_op_start(c, &a, &op), 0);
    CHECK_EQ_I(mk_op_server(op), mk_server_for_key(c, K("nb")));
    int rc, waits = 0;
    while ((rc = mk_op_step(op)) == MK_EAGAIN) {
        struct pollfd p = {mk_op_fd(op), mk_op_events(op), 0};
        CHECK(p.fd >= 0);
        CHECK(p.events == POLLIN || p.events == POLLOUT);
        poll(&p, 1, mk_op_timeout_ms(op));
        waits++;
    }
    CHECK_EQ_I(rc, 0);
    (void)waits;   /* 0 is possible: a pooled connection can get its reply within the first step */
    CHECK_EQ_I(mk_op_step(op), 0);   /* done: same code again */
    mk_item it;
    CHECK_EQ_I(mk_op_take_item(op, &it), 0);
    CHECK_MEM(it.value, it.nvalue, "event");
    CHECK_EQ_U(it.flags, 3);
    mk_item_clear(&it);
    mk_op_destroy(op);
    /* incr through the op interface */
    mk_set(c, K("nbn"), "41", 2, 0, 0);
    mk_op_args_init(&a);
    a.code = MK_OP_INCR;
    a.key = "nbn";
    a.nkey = 3;
    a.delta = 1;
    CHECK_EQ_I(mk_op_start(c, &a, &op), 0);
    while ((rc = mk_op_step(op)) == MK_EAGAIN) {
        struct pollfd p = {mk_op_fd(op), mk_op_events(op), 0};
        poll(&p, 1, mk_op_timeout_ms(op));
    }
    CHECK_EQ_I(rc, 0);
    CHECK_EQ_U(mk_op_number(op), 42);
    mk_op_destroy(op);
    /* argument errors */
    mk_op_args_init(&a);
    a.code = MK_OP_GET;
    a.key = "bad key";
    a.nkey = 7;
    CHECK_EQ_I(mk_op_start(c, &a, &op), MK_EBADKEY);
    CHECK(op == NULL);
    a.code = MK_OP_VERSION;
    CHECK_EQ_I(mk_op_start(c, &a, &op), MK_ERANGE);   /* needs a server */
    a.server = 1;
    a.mode = MK_NOREPLY;
    CHECK_EQ_I(mk_op_start(c, &a, &op), MK_EINVAL);
    mk_client_destroy(c);
}

/* pool_size 1: while an op holds the connection, a blocking call waits
 * checkout_timeout_ms and fails with MK_EPOOLTIMEOUT; then it proceeds. */
static void test_pool_checkout_timeout(void)
{
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 1;
    o.checkout_timeout_ms = 150;
    mk_client *c = client(1, &o);
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_GET;
    a.key = "held";
    a.nkey = 4;
    mk_op *op;
    CHECK_EQ_I(mk_op_start(c, &a, &op), 0);
    int rc = mk_op_step(op);   /* connection checked out, request under way */
    CHECK(rc == MK_EAGAIN);
    CHECK(mk_op_fd(op) >= 0);
    mk_item it;
    int64_t t0 = now_ms();
    CHECK_EQ_I(mk_get(c, K("other"), &it), MK_EPOOLTIMEOUT);
    int64_t dt = now_ms() - t0;
    CHECK(dt >= 140 && dt < 400);
    mk_server_counters n;
    CHECK_EQ_I(mk_server_counters_get(c, 0, &n), 0);
    CHECK_EQ_U(n.pool_waits, 1);
    CHECK_EQ_U(n.pool_timeouts, 1);
    /* a non-blocking op reports the pool wait as fd -1; counted once however often it is stepped */
    mk_op *op2;
    CHECK_EQ_I(mk_op_start(c, &a, &op2), 0);
    CHECK_EQ_I(mk_op_step(op2), MK_EAGAIN);
    CHECK_EQ_I(mk_op_fd(op2), -1);
    CHECK_EQ_I(mk_op_step(op2), MK_EAGAIN);
    mk_op_destroy(op2);
    /* a multi-get's checkout blocks inside its step: counted too */
    const char *ks[1] = {"other"};
    size_t nk[1] = {5};
    mk_item items[1];
    int rcs[1];
    CHECK_EQ_I(mk_mget_items(c, ks, nk, 1, false, items, rcs), MK_EPOOLTIMEOUT);
    mk_item_clear(&items[0]);
    CHECK_EQ_I(mk_server_counters_get(c, 0, &n), 0);
    CHECK_EQ_U(n.pool_waits, 3);
    CHECK_EQ_U(n.pool_timeouts, 2);
    while ((rc = mk_op_step(op)) == MK_EAGAIN) {
        struct pollfd p = {mk_op_fd(op), mk_op_events(op), 0};
        poll(&p, 1, mk_op_timeout_ms(op));
    }
    CHECK_EQ_I(rc, MK_ENOTFOUND);
    mk_op_destroy(op);
    CHECK_EQ_I(mk_set(c, K("held"), "x", 1, 0, 0), 0);   /* the pooled connection is back */
    mk_client_destroy(c);
}

struct want {
    const char *name;
    long v;
};

static void cb(void *ctx, const char *n, size_t nn, const char *v, size_t nv)
{
    struct want *w = ctx;
    if (strlen(w->name) == nn && memcmp(w->name, n, nn) == 0) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%.*s", (int)nv, v);
        w->v = atol(tmp);
    }
}

static int stat_value(mk_client *c, size_t server, const char *name)
{
    struct want want = {name, -1};
    mk_stats(c, server, NULL, cb, &want);
    return (int)want.v;
}

static void *short_thread(void *arg)
{
    mk_client *c = arg;
    mk_item it;
    for (int i = 0; i < 5; i++) {
        mk_set(c, K("st"), "1", 1, 0, 0);
        mk_get(c, K("st"), &it);
        mk_item_clear(&it);
    }
    return NULL;
}

/* Threads that come and go reuse the pooled connections. */
static void test_pool_reuse(void)
{
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 4;
    mk_client *c = client(1, &o);
    mk_client *probe = client(1, NULL);
    int before = stat_value(probe, 0, "total_connections");
    for (int round = 0; round < 25; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, short_thread, c);
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
    }
    int after = stat_value(probe, 0, "total_connections");
    CHECK(before > 0);
    CHECK(after - before <= 5);   /* 4 pooled + the probe's own stats connection at most */
    mk_client_destroy(c);
    mk_client_destroy(probe);
}

/* Find a key that lands on server `want`. */
static void key_on(mk_client *c, int want, char *key, size_t cap)
{
    for (int i = 0;; i++) {
        snprintf(key, cap, "key-%d-%d", want, i);
        if (mk_server_for_key(c, key, strlen(key)) == want)
            return;
    }
}

/* SIGSTOP one server: calls return within io timeout + slack, the server is
 * ejected after failure_limit timeouts, calls then fail fast, and after
 * SIGCONT it rejoins once the retry interval is over. */
static void test_freeze(void)
{
    mk_options o;
    mk_options_init(&o);
    o.io_timeout_ms = 300;
    o.connect_timeout_ms = 300;
    o.failure_limit = 2;
    o.retry_interval_ms = 700;
    mk_client *c = client(NSRV, &o);
    char key[32], other[32];
    key_on(c, 1, key, sizeof key);
    key_on(c, 2, other, sizeof other);
    CHECK_EQ_I(mk_set(c, K(key), "v", 1, 0, 0), 0);
    freeze(S[1].pid);
    mk_item it;
    for (int i = 0; i < 2; i++) {
        int64_t t0 = now_ms();
        CHECK_EQ_I(mk_get(c, K(key), &it), MK_ETIMEDOUT);
        int64_t dt = now_ms() - t0;
        CHECK(dt >= 290 && dt <= 300 + 150);
    }
    CHECK(!mk_server_alive(c, 1));
    int64_t t0 = now_ms();
    CHECK_EQ_I(mk_get(c, K(key), &it), MK_ESERVERDEAD);
    CHECK_EQ_I(mk_set(c, K(key), "v", 1, 0, 0), MK_ESERVERDEAD);
    CHECK(now_ms() - t0 < 20);
    CHECK_EQ_I(mk_set(c, K(other), "o", 1, 0, 0), 0);   /* the others keep working */
    /* a multi-get over the frozen and the live servers returns in time */
    const char *ks[2] = {key, other};
    size_t nk[2] = {strlen(key), strlen(other)};
    mk_item items[2];
    int rcs[2];
    CHECK_EQ_I(mk_mget_items(c, ks, nk, 2, false, items, rcs), MK_ESERVERDEAD);
    CHECK_EQ_I(rcs[0], MK_ESERVERDEAD);
    CHECK_EQ_I(rcs[1], 0);
    mk_item_clear(&items[0]);
    mk_item_clear(&items[1]);
    /* after the interval, still frozen: the background probe times out, not a caller (the circuit
     * breaker); calls keep failing fast */
    sleep_ms(750);
    for (int i = 0; i < 5; i++) {
        t0 = now_ms();
        CHECK_EQ_I(mk_get(c, K(key), &it), MK_ESERVERDEAD);
        CHECK(now_ms() - t0 < 20);
        sleep_ms(100);
    }
    CHECK(!mk_server_alive(c, 1));
    mk_server_counters n;
    CHECK_EQ_I(mk_server_counters_get(c, 1, &n), 0);
    CHECK_EQ_U(n.timeouts, 2);
    CHECK_EQ_U(n.ejections, 1);
    CHECK(n.probes >= 1);
    CHECK_EQ_U(n.rejoins, 0);
    kill(S[1].pid, SIGCONT);
    /* the next probe finds it back: it rejoins without a caller paying anything */
    int64_t until = now_ms() + 3000;
    while (!mk_server_alive(c, 1) && now_ms() < until)
        sleep_ms(20);
    CHECK(mk_server_alive(c, 1));
    CHECK_EQ_I(mk_get(c, K(key), &it), 0);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_server_counters_get(c, 1, &n), 0);
    CHECK_EQ_U(n.rejoins, 1);
    CHECK_EQ_U(n.timeouts, 2);
    CHECK_EQ_I(mk_server_counters_get(c, 99, &n), MK_ERANGE);
    mk_client_destroy(c);
}

/* A frozen server in a multi-get: the call returns within the io timeout,
 * with the live servers' hits. */
static void test_freeze_mget(void)
{
    mk_options o;
    mk_options_init(&o);
    o.io_timeout_ms = 250;
    mk_client *c = client(NSRV, &o);
    char kb[40][16];
    const char *keys[40];
    size_t nkeys[40];
    for (int i = 0; i < 40; i++) {
        snprintf(kb[i], sizeof kb[i], "fm%d", i);
        keys[i] = kb[i];
        nkeys[i] = strlen(kb[i]);
        CHECK_EQ_I(mk_set(c, K(kb[i]), "v", 1, 0, 0), 0);
    }
    freeze(S[3].pid);
    mk_item items[40];
    int rcs[40];
    int64_t t0 = now_ms();
    CHECK_EQ_I(mk_mget_items(c, keys, nkeys, 40, false, items, rcs), MK_ETIMEDOUT);
    int64_t dt = now_ms() - t0;
    CHECK(dt >= 240 && dt <= 250 + 150);
    int hits = 0;
    for (int i = 0; i < 40; i++) {
        int s = mk_server_for_key(c, keys[i], nkeys[i]);
        CHECK_EQ_I(rcs[i], s == 3 ? MK_ETIMEDOUT : 0);
        hits += items[i].value != NULL;
        mk_item_clear(&items[i]);
    }
    CHECK(hits > 10 && hits < 40);
    kill(S[3].pid, SIGCONT);
    mk_client_destroy(c);
}

/* Kill a server: connection refused -> ejected. Fail-fast mode answers
 * MK_ESERVERDEAD; auto-eject moves the keys to the live servers. Restart it:
 * it rejoins after the retry interval. */
static void test_kill(void)
{
    mk_options o;
    mk_options_init(&o);
    o.failure_limit = 2;
    o.retry_interval_ms = 500;
    mk_client *ff = client(NSRV, &o);
    o.auto_eject = true;
    mk_client *ae = client(NSRV, &o);
    char key[32];
    key_on(ff, 0, key, sizeof key);
    CHECK_EQ_I(mk_server_for_key(ae, K(key)), 0);
    CHECK_EQ_I(mk_set(ff, K(key), "before", 6, 0, 0), 0);
    srv_stop(&S[0]);
    mk_item it;
    int rc1 = mk_get(ff, K(key), &it);
    CHECK(rc1 == MK_ECONNECT || rc1 == MK_EIO);   /* a pooled connection sees EOF, a new one is refused */
    CHECK_EQ_I(mk_get(ff, K(key), &it), MK_ECONNECT);
    CHECK_EQ_I(mk_get(ff, K(key), &it), MK_ESERVERDEAD);
    CHECK(strcmp(mk_strerror(MK_ESERVERDEAD), "server marked dead") == 0);
    /* auto-eject: two failures, then the key moves */
    for (int i = 0; i < 2; i++) {
        int rc = mk_set(ae, K(key), "moved", 5, 0, 0);
        CHECK(rc == MK_ECONNECT || rc == MK_EIO);
    }
    int moved = mk_server_for_key(ae, K(key));
    CHECK(moved > 0);
    CHECK_EQ_I(mk_set(ae, K(key), "moved", 5, 0, 0), 0);
    CHECK_EQ_I(mk_get(ae, K(key), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "moved");
    mk_item_clear(&it);
    /* keys of live servers did not move */
    char k2[32];
    key_on(ff, 2, k2, sizeof k2);
    CHECK_EQ_I(mk_server_for_key(ae, K(k2)), 2);
    /* restart on the same port; rejoin after the interval */
    srv_start(&S[0]);
    sleep_ms(550);
    CHECK_EQ_I(mk_server_for_key(ae, K(key)), 0);
    CHECK_EQ_I(mk_get(ff, K(key), &it), MK_ENOTFOUND);   /* a fresh, empty server */
    CHECK_EQ_I(mk_set(ff, K(key), "back", 4, 0, 0), 0);
    CHECK_EQ_I(mk_get(ae, K(key), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "back");
    mk_item_clear(&it);
    /* all dead with auto-eject: MK_ENOSERVER */
    mk_client_destroy(ff);
    mk_client_destroy(ae);
}

static void test_all_dead(void)
{
    mk_options o;
    mk_options_init(&o);
    o.failure_limit = 1;
    o.auto_eject = true;
    char list[64];
    snprintf(list, sizeof list, "127.0.0.1:%d", free_port());
    mk_client *c = NULL;
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    mk_item it;
    CHECK_EQ_I(mk_get(c, K("x"), &it), MK_ECONNECT);
    CHECK_EQ_I(mk_get(c, K("x"), &it), MK_ENOSERVER);
    mk_client_destroy(c);
    /* connect timeout: a listener whose accept queue is full drops our SYN */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    bind(lfd, (struct sockaddr *)&a, sizeof a);
    listen(lfd, 0);
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    sleep_ms(50);
    snprintf(list, sizeof list, "127.0.0.1:%d", ntohs(a.sin_port));
    o.connect_timeout_ms = 200;
    o.auto_eject = false;
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    int64_t t0 = now_ms();
    int rc = mk_get(c, K("x"), &it);
    int64_t dt = now_ms() - t0;
    CHECK_EQ_I(rc, MK_ETIMEDOUT);
    CHECK(dt >= 190 && dt <= 200 + 150);
    mk_client_destroy(c);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

static mk_client *shared;
static atomic_int crossed, errors;
static int thread_ops = 10000;

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    char key[48], val[400], ck[48];
    snprintf(ck, sizeof ck, "ctr-%d", t);
    mk_set(shared, K(ck), "0", 1, 0, 0);
    uint64_t last = 0;
    for (int i = 0; i < thread_ops; i++) {
        snprintf(key, sizeof key, "t%d-k%d", t, i % 64);
        int n = snprintf(val, sizeof val, "t%d-i%d-", t, i);
        int pad = i % 300;
        memset(val + n, 'a' + t % 26, (size_t)pad);
        n += pad;
        int kind = i % 10;
        if (kind < 4) {
            if (mk_set(shared, K(key), val, (size_t)n, (uint32_t)(t * 100000 + i), 0))
                atomic_fetch_add(&errors, 1);
            mk_item it;
            int rc = mk_get(shared, K(key), &it);
            if (rc)
                atomic_fetch_add(&errors, 1);
            else if (it.nvalue != (size_t)n || memcmp(it.value, val, (size_t)n) ||
                     it.flags != (uint32_t)(t * 100000 + i))
                atomic_fetch_add(&crossed, 1);
            mk_item_clear(&it);
            i++;
        } else if (kind < 6) {
            uint64_t v;
            if (mk_incr(shared, K(ck), 1, &v, 0))
                atomic_fetch_add(&errors, 1);
            else if (v != last + 1)
                atomic_fetch_add(&crossed, 1);
            last = v;
        } else if (kind == 6) {
            char k1[48], k2[48];
            snprintf(k1, sizeof k1, "t%d-mg1", t);
            snprintf(k2, sizeof k2, "t%d-mg2", t);
            mk_set(shared, K(k1), k1, strlen(k1), 1, 0);
            mk_set(shared, K(k2), k2, strlen(k2), 2, 0);
            const char *ks[3] = {k1, "missing-key", k2};
            size_t nk[3] = {strlen(k1), 11, strlen(k2)};
            mk_item items[3];
            int rcs[3];
            if (mk_mget_items(shared, ks, nk, 3, false, items, rcs))
                atomic_fetch_add(&errors, 1);
            if (rcs[0] || rcs[2] || rcs[1] != MK_ENOTFOUND || !items[0].value || !items[2].value ||
                strcmp(items[0].value, k1) || strcmp(items[2].value, k2))
                atomic_fetch_add(&crossed, 1);
            for (int j = 0; j < 3; j++)
                mk_item_clear(&items[j]);
            i += 2;
        } else {
            mk_item it;
            int rc = mk_get(shared, K(key), &it);
            if (rc == 0 && (strncmp(it.value, val, (size_t)snprintf(NULL, 0, "t%d-i", t)) != 0))
                atomic_fetch_add(&crossed, 1);
            else if (rc && rc != MK_ENOTFOUND)
                atomic_fetch_add(&errors, 1);
            mk_item_clear(&it);
        }
    }
    return NULL;
}

/* 32 threads run worker() on a client of options o (2 servers); returns it (crossed/errors counted). */
static mk_client *run_workers(const mk_options *o, const char *label)
{
    shared = client(2, o);
    atomic_store(&crossed, 0);
    atomic_store(&errors, 0);
    pthread_t th[32];
    int64_t t0 = now_ms();
    for (int t = 0; t < 32; t++)
        pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
    for (int t = 0; t < 32; t++)
        pthread_join(th[t], NULL);
    int64_t dt = now_ms() - t0;
    printf("  %s32 threads x %d ops: %lld ms, %d crossed, %d errors\n", label, thread_ops, (long long)dt,
           atomic_load(&crossed), atomic_load(&errors));
    CHECK_EQ_I(atomic_load(&crossed), 0);
    CHECK_EQ_I(atomic_load(&errors), 0);
    return shared;
}

static void test_threads(void)
{
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 6;
    o.io_timeout_ms = 5000;
    o.checkout_timeout_ms = 10000;
    run_workers(&o, "");
    /* the pool bound held: at most pool_size connections per server from us */
    mk_client *probe = client(2, NULL);
    for (int s = 0; s < 2; s++)
        CHECK(stat_value(probe, (size_t)s, "curr_connections") <= 6 + 1 + 2);
    mk_client_destroy(probe);
    mk_client_destroy(shared);
}

/* Auto-pipelining (issue 17): 32 threads share one pipelined connection per server for their gets,
 * sets and incrs (multi-gets use the pool): every reply is its caller's own, nothing fails. */
static void test_pipeline_threads(void)
{
    mk_options o;
    mk_options_init(&o);
    o.pipeline = true;
    o.pool_size = 6;
    o.io_timeout_ms = 5000;
    o.checkout_timeout_ms = 10000;
    run_workers(&o, "pipelined: ");
    mk_server_counters sc;
    for (size_t i = 0; i < 2; i++) {
        CHECK_EQ_I(mk_server_counters_get(shared, i, &sc), 0);
        CHECK_EQ_U(sc.errors, 0);
        CHECK_EQ_U(sc.timeouts, 0);
    }
    mk_client_destroy(shared);
    shared = NULL;
    o.pipeline_depth = 0;
    char err[256];
    mk_client *bad = NULL;
    CHECK_EQ_I(mk_client_create(&bad, "127.0.0.1:1", &o, err, sizeof err), MK_EINVAL);
}

/* Arguments of a multi-key get of keys[0..n) to one server, each hit handed to cb(ctx, i, item). */
static void mget_args(mk_op_args *a, const char **keys, size_t *nkeys, size_t n, int server, mk_mget_cb cb,
                      void *ctx)
{
    mk_op_args_init(a);
    a->code = MK_OP_GET;
    a->keys = keys;
    a->nkeys = nkeys;
    a->nkeyset = n;
    a->server = server;
    a->value_cb = cb;
    a->ctx = ctx;
}

/* Multi-key ops run with mk_op_run from many threads (issue 17): with MK_CB_ANY_THREAD their value_cb
 * may be called by whichever thread reads the shared connection; each op still gets exactly its own
 * keys' values, and the whole run uses one connection to the server. */
#define MG_THREADS 16
#define MG_KEYS 6
typedef struct mg_seen {
    int t;                     /* the thread whose keys these are */
    int hits[MG_KEYS];
    int wrong;
} mg_seen;

static void mg_on_hit(void *ctx, size_t i, const mk_item *it)
{
    mg_seen *m = ctx;
    char want[48];
    snprintf(want, sizeof want, "mg%d-%zu", m->t, i);
    if (i >= MG_KEYS || it->nkey != strlen(want) || memcmp(it->key, want, it->nkey) != 0 ||
        it->nvalue != it->nkey || memcmp(it->value, want, it->nvalue) != 0 || it->flags != (uint32_t)(m->t * 10 + i))
        m->wrong++;
    else
        m->hits[i]++;
}

static void *mg_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    char kb[MG_KEYS][48];
    const char *ks[MG_KEYS];
    size_t nk[MG_KEYS];
    for (int i = 0; i < MG_KEYS; i++) {
        snprintf(kb[i], sizeof kb[i], "mg%d-%d", t, i);
        ks[i] = kb[i];
        nk[i] = strlen(kb[i]);
        if (i != 3 && mk_set(shared, kb[i], nk[i], kb[i], nk[i], (uint32_t)(t * 10 + i), 0))
            atomic_fetch_add(&errors, 1);   /* key 3 stays a miss */
    }
    for (int round = 0; round < 200; round++) {
        mg_seen m = {.t = t};
        mk_op_args a;
        mget_args(&a, ks, nk, MG_KEYS, 0, mg_on_hit, &m);
        a.mode = MK_CB_ANY_THREAD;
        mk_op *op;
        if (mk_op_start(shared, &a, &op) != 0) {
            atomic_fetch_add(&errors, 1);
            continue;
        }
        if (mk_op_run(op) != 0)
            atomic_fetch_add(&errors, 1);
        mk_op_destroy(op);
        for (int i = 0; i < MG_KEYS; i++)
            if (m.hits[i] != (i != 3))
                m.wrong++;
        if (m.wrong)
            atomic_fetch_add(&crossed, 1);
    }
    return NULL;
}

/* A pipelined client of one server in `shared`; nthreads (at most 64) threads run worker(t): no crossed
 * reply, no error, and no connection opened beyond the pipe's. The caller destroys `shared`. */
static void pipelined_threads_one_server(void *(*worker)(void *), int nthreads)
{
    mk_options o;
    mk_options_init(&o);
    o.pipeline = true;
    o.io_timeout_ms = 5000;
    o.checkout_timeout_ms = 10000;
    shared = client(1, &o);
    atomic_store(&crossed, 0);
    atomic_store(&errors, 0);
    mk_client *probe = client(1, NULL);
    CHECK_EQ_I(mk_set(shared, K("pipe-warm"), "1", 1, 0, 0), 0);   /* the pipe's connection opens here */
    int before = stat_value(probe, 0, "total_connections");
    pthread_t th[64];
    for (int t = 0; t < nthreads && t < 64; t++)
        pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
    for (int t = 0; t < nthreads && t < 64; t++)
        pthread_join(th[t], NULL);
    CHECK_EQ_I(atomic_load(&crossed), 0);
    CHECK_EQ_I(atomic_load(&errors), 0);
    /* every call went over the pipe's connection: none opened (the probe's stats call reuses its own) */
    CHECK_EQ_I(stat_value(probe, 0, "total_connections") - before, 0);
    mk_client_destroy(probe);
}

static void test_pipeline_threads_multi_get_with_callback(void)
{
    pipelined_threads_one_server(mg_worker, MG_THREADS);
    mk_client_destroy(shared);
    shared = NULL;
}

/* noreply calls through the pipe (issue 17): 16 threads' noreply sets, adds, deletes and incrs go out on
 * the shared connection with their gets; each thread reads its own noreply writes back at once (one
 * connection, so in order), every failure is counted in noreply_failed, no connection is opened. */
#define NR_THREADS 16
#define NR_ROUNDS 200

static void *nr_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    char key[32], val[32], ctr[32];
    snprintf(ctr, sizeof ctr, "nr%d-ctr", t);
    if (mk_set(shared, K(ctr), "0", 1, 0, 0))
        atomic_fetch_add(&errors, 1);
    for (int i = 0; i < NR_ROUNDS; i++) {
        snprintf(key, sizeof key, "nr%d-%d", t, i % 7);
        snprintf(val, sizeof val, "v%d-%d", t, i);
        int rc = mk_store(shared, MK_STORE_SET, K(key), val, strlen(val), (uint32_t)i, 0, 0, MK_NOREPLY);
        rc |= mk_incr(shared, K(ctr), 1, NULL, MK_NOREPLY);
        if (i % 20 == 0) {   /* two that fail on the server: counted, not returned */
            rc |= mk_store(shared, MK_STORE_ADD, K(key), "x", 1, 0, 0, 0, MK_NOREPLY);
            rc |= mk_delete(shared, K("nr-never-set"), MK_NOREPLY);
        }
        if (rc)
            atomic_fetch_add(&errors, 1);
        if (i % 5 == 4) {
            mk_item it;
            if (mk_get(shared, K(key), &it) != 0 || it.nvalue != strlen(val) || memcmp(it.value, val, it.nvalue) ||
                it.flags != (uint32_t)i)
                atomic_fetch_add(&crossed, 1);
            mk_item_clear(&it);
        }
    }
    uint64_t v = 0;
    if (mk_incr(shared, K(ctr), 0, &v, 0) != 0 || v != NR_ROUNDS)
        atomic_fetch_add(&crossed, 1);
    return NULL;
}

static void test_pipeline_noreply_calls_share_the_connection(void)
{
    if (use_binary)
        return;
    pipelined_threads_one_server(nr_worker, NR_THREADS);
    /* a lone thread's noreply calls return before their replies are read; the next call reads them */
    for (int i = 0; i < 10; i++)
        CHECK_EQ_I(mk_delete(shared, K("nr-never-set"), MK_NOREPLY), 0);
    mk_item it;
    CHECK_EQ_I(mk_get(shared, K("pipe-warm"), &it), 0);
    mk_item_clear(&it);
    mk_server_counters sc;
    CHECK_EQ_I(mk_server_counters_get(shared, 0, &sc), 0);
    CHECK_EQ_U(sc.noreply_failed, (uint64_t)NR_THREADS * 2 * (NR_ROUNDS / 20) + 10);
    CHECK_EQ_U(sc.errors, 0);
    /* noreply calls left unread when the client goes: freed with it (ASan) */
    for (int i = 0; i < 5; i++)
        CHECK_EQ_I(mk_delete(shared, K("nr-never-set"), MK_NOREPLY), 0);
    mk_client_destroy(shared);
    shared = NULL;
}

/* Regression (issue 17): the pipe took a pooled connection that still carried quiet noreply requests
 * and read their failure lines as the replies of its gets. */
static void test_pipeline_after_quiet_noreply_requests(void)
{
    if (use_binary)
        return;
    mk_options o;
    mk_options_init(&o);
    o.pipeline = true;
    o.pool_size = 1;   /* the noreply requests and the gets share the one connection */
    o.pipeline_max_value = 1;   /* the noreply adds' 2-byte values go on the pool, in quiet mode: */
    mk_client *c = client(1, &o);
    CHECK_EQ_I(mk_server_speaks_meta(c, 0), 1);   /* (asked here: with pipelining the calls do not ask) */
    CHECK_EQ_I(mk_set(c, K("pq:a"), "1", 1, 0, 0), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_I(mk_store(c, MK_STORE_ADD, K("pq:a"), "22", 2, 0, 0, 0, MK_NOREPLY), 0);  /* not stored */
        CHECK_EQ_I(mk_delete(c, K("pq:none"), MK_NOREPLY), 0);                               /* not found */
        mk_item it;
        CHECK_EQ_I(mk_get(c, K("pq:a"), &it), 0);
        CHECK(it.nvalue == 1 && it.value[0] == '1');
        mk_item_clear(&it);
        CHECK_EQ_I(mk_get(c, K("pq:none"), &it), MK_ENOTFOUND);
    }
    mk_server_counters sc;
    CHECK_EQ_I(mk_server_counters_get(c, 0, &sc), 0);
    CHECK_EQ_U(sc.noreply_failed, 6);
    CHECK_EQ_U(sc.errors, 0);
    mk_client_destroy(c);
}

/* ---- a fake server for the pipeline's failure tests: "get K" answers K's value (K itself), after
 * 1.5 s when K starts with "slow"; "set K F E N" takes its data and answers STORED; "mn" answers MN;
 * "mg K ... O<token>" answers EN with the token, or with another one when K starts with "wrongo"; while
 * fake_frozen it reads and answers nothing. One thread per connection. */
static atomic_int fake_frozen;

static void *fake_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            size_t used = (size_t)(nl - buf) + 1;
            char line[512], key[256], out[1024];
            snprintf(line, sizeof line, "%.*s", (int)(used > 2 ? used - 2 : 0), buf);
            unsigned f, e, nb;
            int m = 0;
            if (sscanf(line, "set %255s %u %u %u", key, &f, &e, &nb) == 4) {
                if (len < used + nb + 2)
                    break;   /* the data block is not all here yet */
                used += nb + 2;
                m = snprintf(out, sizeof out, "STORED\r\n");
            } else if (strcmp(line, "mn") == 0) {
                m = snprintf(out, sizeof out, "MN\r\n");
            } else if (sscanf(line, "mg %255s", key) == 1) {
                const char *o = strstr(line, " O");
                m = snprintf(out, sizeof out, "EN O%s\r\n",
                             strncmp(key, "wrongo", 6) == 0 || o == NULL ? "999999999" : o + 2);
            } else if (sscanf(line, "get %255s", key) == 1) {
                if (strncmp(key, "slow", 4) == 0)
                    usleep(1500 * 1000);
                m = snprintf(out, sizeof out, "VALUE %s 0 %zu\r\n%s\r\nEND\r\n", key, strlen(key), key);
            } else {
                m = snprintf(out, sizeof out, "ERROR\r\n");
            }
            memmove(buf, buf + used, len - used);
            len -= used;
            if (!atomic_load(&fake_frozen) && write(fd, out, (size_t)m) != m)
                goto out;
        }
    }
out:
    close(fd);
    return NULL;
}

static void *fake_accept(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t t;
        pthread_create(&t, NULL, fake_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

/* Start the fake server; its port. (It lives until the test binary exits.) */
static int fake_start(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 64) != 0)
        return -1;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    pthread_t t;
    pthread_create(&t, NULL, fake_accept, (void *)(intptr_t)lfd);
    pthread_detach(t);
    return ntohs(a.sin_port);
}

static mk_client *fake_client(int port, int io_timeout_ms)
{
    char list[64], err[256];
    snprintf(list, sizeof list, "127.0.0.1:%d", port);
    mk_options o;
    mk_options_init(&o);
    o.pipeline = true;
    o.io_timeout_ms = io_timeout_ms;
    o.failure_limit = 1000;   /* the failures here must not mark the server dead */
    o.pool_size = 4;
    mk_client *c = NULL;
    if (mk_client_create(&c, list, &o, err, sizeof err) != 0)
        fprintf(stderr, "mk_client_create: %s\n", err);
    return c;
}

static atomic_int fake_ok, fake_bad, fake_timeouts;

/* n gets of keys "k<t>-<i>" (t: the thread's number): each must come back as itself */
static void *fake_getter(void *arg)
{
    int t = (int)(intptr_t)arg & 0xffff, n = (int)((intptr_t)arg >> 16);
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "k%d-%d", t, i);
        mk_item it;
        int rc = mk_get(shared, K(key), &it);
        if (rc == 0 && it.nvalue == strlen(key) && memcmp(it.value, key, it.nvalue) == 0)
            atomic_fetch_add(&fake_ok, 1);
        else if (rc == MK_ETIMEDOUT)
            atomic_fetch_add(&fake_timeouts, 1);
        else
            atomic_fetch_add(&fake_bad, 1);
        mk_item_clear(&it);
    }
    return NULL;
}

static void *slow_getter(void *arg)
{
    mk_item it;
    int64_t t0 = now_ms();
    int rc = mk_get(shared, K("slowkey"), &it);
    mk_item_clear(&it);
    *(int64_t *)arg = rc == MK_ETIMEDOUT ? now_ms() - t0 : -1;
    return NULL;
}

/* Regression (issue 17): a request the server is slow to answer times out alone; the requests written
 * behind it on the shared connection are sent again on a fresh one and get their own replies. */
static void test_pipeline_slow_request_times_out_alone(void)
{
    int port = fake_start();
    CHECK(port > 0);
    shared = fake_client(port, 500);
    atomic_store(&fake_ok, 0), atomic_store(&fake_bad, 0), atomic_store(&fake_timeouts, 0);
    int64_t slow_ms = 0;
    pthread_t slow, th[8];
    pthread_create(&slow, NULL, slow_getter, &slow_ms);
    usleep(150 * 1000);   /* the slow request is written first: the others queue behind it */
    for (int t = 0; t < 8; t++)
        pthread_create(&th[t], NULL, fake_getter, (void *)(intptr_t)(t | (200 << 16)));
    pthread_join(slow, NULL);
    for (int t = 0; t < 8; t++)
        pthread_join(th[t], NULL);
    printf("  slow request timed out after %lld ms; others: %d ok, %d wrong, %d timed out\n", (long long)slow_ms,
           atomic_load(&fake_ok), atomic_load(&fake_bad), atomic_load(&fake_timeouts));
    CHECK(slow_ms >= 450 && slow_ms < 1400);
    CHECK_EQ_I(atomic_load(&fake_ok), 8 * 200);
    CHECK_EQ_I(atomic_load(&fake_bad), 0);
    mk_server_counters sc;
    CHECK_EQ_I(mk_server_counters_get(shared, 0, &sc), 0);
    CHECK_EQ_U(sc.timeouts, 1);
    CHECK(sc.retries >= 1);   /* the requests behind the slow one went again */
    mk_client_destroy(shared);
    shared = NULL;
}

/* Regression (issue 17): while the server answers nothing, every pipelined call times out (none gets
 * another's reply); once it answers again, every call gets its own reply on a fresh connection. */
static void test_pipeline_frozen_server(void)
{
    int port = fake_start();
    CHECK(port > 0);
    shared = fake_client(port, 200);
    atomic_store(&fake_ok, 0), atomic_store(&fake_bad, 0), atomic_store(&fake_timeouts, 0);
    pthread_t th[8];
    for (int t = 0; t < 8; t++)
        pthread_create(&th[t], NULL, fake_getter, (void *)(intptr_t)(t | (50 << 16)));
    for (int t = 0; t < 8; t++)
        pthread_join(th[t], NULL);
    CHECK_EQ_I(atomic_load(&fake_ok), 8 * 50);
    atomic_store(&fake_frozen, 1);
    atomic_store(&fake_ok, 0);
    for (int t = 0; t < 8; t++)
        pthread_create(&th[t], NULL, fake_getter, (void *)(intptr_t)(t | (3 << 16)));
    for (int t = 0; t < 8; t++)
        pthread_join(th[t], NULL);
    CHECK_EQ_I(atomic_load(&fake_timeouts), 8 * 3);
    CHECK_EQ_I(atomic_load(&fake_ok), 0);
    atomic_store(&fake_frozen, 0);
    for (int t = 0; t < 8; t++)
        pthread_create(&th[t], NULL, fake_getter, (void *)(intptr_t)(t | (50 << 16)));
    for (int t = 0; t < 8; t++)
        pthread_join(th[t], NULL);
    CHECK_EQ_I(atomic_load(&fake_ok), 8 * 50);
    CHECK_EQ_I(atomic_load(&fake_bad), 0);
    mk_client_destroy(shared);
    shared = NULL;
}

/* ---- auto-pipelining for event loops (mk_evpipe), driven here by a poll() loop ---- */

typedef struct evcall {
    mk_op *op;
    int rc;
    bool done;
} evcall;

/* Drive the pipes until every call counted in *left ended (or `limit_ms` passed). */
static void ev_run(mk_evpipe **pipes, size_t np, int *left, int limit_ms)
{
    int64_t end = now_ms() + limit_ms;
    for (size_t i = 0; i < np; i++)
        mk_evpipe_io(pipes[i]);   /* "the end of the loop iteration": the queued requests go out */
    while (*left > 0 && now_ms() < end) {
        struct pollfd pf[8];
        int timeout = 100;
        size_t n = 0;
        for (size_t i = 0; i < np; i++) {
            int t = mk_evpipe_timeout_ms(pipes[i]);
            if (t >= 0 && t < timeout)
                timeout = t;
            pf[n++] = (struct pollfd){mk_evpipe_fd(pipes[i]), mk_evpipe_events(pipes[i]), 0};
        }
        poll(pf, n, timeout);
        for (size_t i = 0; i < np; i++) {
            mk_evpipe_io(pipes[i]);
            mk_op *op;
            evcall *ec;
            while ((ec = mk_evpipe_done(pipes[i], &op)) != NULL) {
                CHECK(op == ec->op);
                ec->rc = mk_op_step(op);
                ec->done = true;
                (*left)--;
            }
        }
    }
}

/* Start an op and add it to its server's pipe (the op runs alone if the pipe does not take it). */
static int ev_add(mk_client *c, mk_evpipe **pipes, const mk_op_args *a, evcall *ec)
{
    memset(ec, 0, sizeof *ec);
    int rc = mk_op_start(c, a, &ec->op);
    if (rc != 0)
        return rc;
    return mk_evpipe_add(pipes[mk_op_server(ec->op)], ec->op, ec);
}

/* 200 callers on one loop, each with its own keys: sets, gets, incr, meta gets, multi-gets, deletes, in
 * rounds whose requests share the writes; every reply must be its caller's (two servers, one pipe each). */
static void test_evpipe_loop(void)
{
    if (use_binary)
        return;
    mk_options o;
    mk_options_init(&o);
    o.pipeline_depth = 256;
    mk_client *c = client(2, &o);
    mk_evpipe *pipes[2];
    for (size_t i = 0; i < 2; i++)
        CHECK_EQ_I(mk_evpipe_new(c, i, &pipes[i]), 0);
    enum { N = 200 };
    static evcall calls[N];
    static char keys[N][32], vals[N][32];
    static const char *mkeys[N][3];
    static size_t mnkeys[N][3];
    int bad = 0;
    for (int round = 0; round < 6; round++) {
        int left = 0;
        for (int i = 0; i < N; i++) {
            snprintf(keys[i], sizeof keys[i], "ev:%d", i);
            snprintf(vals[i], sizeof vals[i], "v%d-%d", i, round);
            mk_op_args a;
            mk_op_args_init(&a);
            a.key = keys[i], a.nkey = strlen(keys[i]);
            switch (round) {
            case 0: case 4: a.code = MK_OP_STORE, a.store_op = MK_STORE_SET, a.value = vals[i], a.nvalue = strlen(vals[i]), a.flags = (uint32_t)i; break;
            case 1: a.code = i % 2 ? MK_OP_GET : MK_OP_MGET; break;
            case 2: a.code = MK_OP_INCR, a.delta = 1; break;
            case 3:
                /* a multi-get of three keys of the same server */
                a.code = MK_OP_GET;
                a.server = mk_server_for_key(c, keys[i], strlen(keys[i]));
                for (int j = 0; j < 3; j++) {
                    mkeys[i][j] = keys[i];
                    mnkeys[i][j] = strlen(keys[i]);
                }
                mkeys[i][1] = "ev:none";
                mnkeys[i][1] = 7;
                a.keys = mkeys[i], a.nkeys = mnkeys[i], a.nkeyset = 3;
                a.key = NULL, a.nkey = 0;
                break;
            case 5: a.code = MK_OP_DELETE; break;
            }
            int rc = ev_add(c, pipes, &a, &calls[i]);
            if (rc == 0)
                left++;
            else
                bad++, fprintf(stderr, "  round %d call %d: %d\n", round, i, rc);
        }
        ev_run(pipes, 2, &left, 10000);
        CHECK_EQ_I(left, 0);
        for (int i = 0; i < N; i++) {
            evcall *ec = &calls[i];
            mk_item it;
            switch (round) {
            case 0: case 4: case 5: bad += ec->rc != 0; break;
            case 1:
                bad += ec->rc != 0 || mk_op_take_item(ec->op, &it) != 0;
                if (ec->rc == 0) {
                    snprintf(vals[i], sizeof vals[i], "v%d-0", i);
                    bad += it.nvalue != strlen(vals[i]) || memcmp(it.value, vals[i], it.nvalue) != 0 ||
                           it.flags != (uint32_t)i;
                    mk_item_clear(&it);
                }
                break;
            case 2: bad += ec->rc != MK_ENOTNUM; break;   /* "v.." is not a number */
            case 3: bad += ec->rc != 0; break;
            }
            mk_op_destroy(ec->op);
        }
    }
    CHECK_EQ_I(bad, 0);
    /* a lone call into an idle pipe: mk_evpipe_flush writes it at once; then only POLLIN is wanted */
    {
        mk_op_args a;
        mk_op_args_init(&a);
        a.code = MK_OP_GET;
        a.key = keys[0], a.nkey = strlen(keys[0]);
        evcall one;
        CHECK_EQ_I(ev_add(c, pipes, &a, &one), 0);
        mk_evpipe *p0 = pipes[mk_op_server(one.op)];
        CHECK_EQ_I(mk_evpipe_flush(p0), 0);
        CHECK_EQ_I(mk_evpipe_events(p0), POLLIN);
        struct pollfd pf = {mk_evpipe_fd(p0), POLLIN, 0};
        CHECK_EQ_I(poll(&pf, 1, 5000), 1);   /* the reply comes: the request was sent */
        int left = 1;
        for (int k = 0; k < 100 && left; k++) {
            mk_evpipe_io(p0);
            if (mk_evpipe_done(p0, NULL) == &one)
                left = 0;
            else
                poll(&pf, 1, 10);
        }
        CHECK_EQ_I(left, 0);
        CHECK_EQ_I(mk_op_step(one.op), MK_ENOTFOUND);   /* (round 5 deleted it) */
        mk_op_destroy(one.op);
    }
    mk_server_counters sc;
    for (size_t i = 0; i < 2; i++) {
        CHECK_EQ_I(mk_server_counters_get(c, i, &sc), 0);
        CHECK_EQ_U(sc.errors, 0);
        CHECK_EQ_U(sc.retries, 0);
    }
    for (size_t i = 0; i < 2; i++)
        mk_evpipe_free(pipes[i]);
    mk_client_destroy(c);
}

/* Regression (issue 17): a task cancelled while its request is on the wire leaves the connection in
 * step: the requests behind it get their own replies and the same connection serves the next ones. */
static void test_evpipe_cancel_keeps_the_connection(void)
{
    if (use_binary)
        return;
    mk_client *c = client(1, NULL);
    mk_evpipe *p;
    CHECK_EQ_I(mk_evpipe_new(c, 0, &p), 0);
    CHECK_EQ_I(mk_set(c, K("evc:a"), "A", 1, 0, 0), 0);
    CHECK_EQ_I(mk_set(c, K("evc:b"), "BB", 2, 0, 0), 0);
    enum { N = 40 };
    evcall calls[N];
    int left = 0;
    for (int i = 0; i < N; i++) {
        mk_op_args a;
        mk_op_args_init(&a);
        a.code = MK_OP_GET;
        a.key = i % 2 ? "evc:b" : "evc:a";
        a.nkey = 5;
        CHECK_EQ_I(ev_add(c, &p, &a, &calls[i]), 0);
        left++;
    }
    mk_evpipe_io(p);   /* written (all of them fit in one send) */
    int fd = mk_evpipe_fd(p);
    CHECK(fd >= 0);
    for (int i = 0; i < N; i += 3) {   /* every third caller gives up: ghosts read their replies */
        CHECK_EQ_I(mk_evpipe_cancel(p, calls[i].op), 0);
        mk_op_destroy(calls[i].op);
        calls[i].op = NULL;
        left--;
    }
    /* one more, queued and then cancelled before it is written: it never goes out */
    evcall extra;
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_DELETE;
    a.key = "evc:a", a.nkey = 5;
    CHECK_EQ_I(ev_add(c, &p, &a, &extra), 0);
    CHECK_EQ_I(mk_evpipe_cancel(p, extra.op), 0);
    mk_op_destroy(extra.op);
    ev_run(&p, 1, &left, 5000);
    CHECK_EQ_I(left, 0);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        if (calls[i].op == NULL)
            continue;
        mk_item it;
        bad += calls[i].rc != 0 || mk_op_take_item(calls[i].op, &it) != 0;
        if (calls[i].rc == 0) {
            bad += it.nvalue != (size_t)(i % 2 ? 2 : 1);
            mk_item_clear(&it);
        }
        mk_op_destroy(calls[i].op);
    }
    CHECK_EQ_I(bad, 0);
    /* the same connection serves the next call; the cancelled delete never ran */
    mk_op_args_init(&a);
    a.code = MK_OP_GET;
    a.key = "evc:a", a.nkey = 5;
    CHECK_EQ_I(ev_add(c, &p, &a, &extra), 0);
    left = 1;
    ev_run(&p, 1, &left, 5000);
    CHECK_EQ_I(extra.rc, 0);
    CHECK_EQ_I(mk_evpipe_fd(p), fd);
    mk_op_destroy(extra.op);
    /* a batch (three sets in one op) cancelled once written: its ghost reads the three replies */
    {
        static const char *bk[3] = {"evc:b1", "evc:b2", "evc:b3"};
        static const size_t bn[3] = {6, 6, 6};
        static const void *bv[3] = {"1", "2", "3"};
        static const size_t bl[3] = {1, 1, 1};
        int results[3];
        mk_op_args_init(&a);
        a.code = MK_OP_STORE, a.store_op = MK_STORE_SET;
        a.keys = bk, a.nkeys = bn, a.nkeyset = 3, a.values = bv, a.nvalues = bl, a.results = results;
        CHECK_EQ_I(ev_add(c, &p, &a, &extra), 0);
        mk_evpipe_io(p);
        CHECK_EQ_I(mk_evpipe_cancel(p, extra.op), 0);
        mk_op_destroy(extra.op);
        mk_op_args_init(&a);
        a.code = MK_OP_GET;
        a.key = "evc:b3", a.nkey = 6;
        CHECK_EQ_I(ev_add(c, &p, &a, &extra), 0);
        left = 1;
        ev_run(&p, 1, &left, 5000);
        CHECK_EQ_I(extra.rc, 0);
        mk_item it3;
        CHECK_EQ_I(mk_op_take_item(extra.op, &it3), 0);
        CHECK(it3.nvalue == 1 && it3.value[0] == '3');
        mk_item_clear(&it3);
        mk_op_destroy(extra.op);
        CHECK_EQ_I(mk_evpipe_fd(p), fd);
    }
    /* forget: a call nobody waits for still goes out (noreply without the protocol's noreply) */
    mk_op_args_init(&a);
    a.code = MK_OP_STORE, a.store_op = MK_STORE_SET;
    a.key = "evc:f", a.nkey = 5, a.value = "F", a.nvalue = 1;
    CHECK_EQ_I(ev_add(c, &p, &a, &extra), 0);
    CHECK_EQ_I(mk_evpipe_forget(p, extra.op), 0);
    mk_op_destroy(extra.op);
    mk_evpipe_io(p);
    for (int i = 0; i < 100 && mk_evpipe_pending(p); i++) {
        struct pollfd pf = {mk_evpipe_fd(p), mk_evpipe_events(p), 0};
        poll(&pf, 1, 50);
        mk_evpipe_io(p);
    }
    CHECK(!mk_evpipe_pending(p));
    mk_item it;
    CHECK_EQ_I(mk_get(c, K("evc:f"), &it), 0);
    mk_item_clear(&it);
    mk_server_counters sc;
    CHECK_EQ_I(mk_server_counters_get(c, 0, &sc), 0);
    CHECK_EQ_U(sc.errors, 0);
    mk_evpipe_free(p);
    mk_client_destroy(c);
}

/* noreply ghosts when the server goes away (issue 17): the next call finds the connection broken, the
 * ghosts are dropped (not sent again), a noreply call to the stopped server reports it, and once the
 * server is back the pipe serves calls again. */
static void test_pipeline_noreply_server_restart(void)
{
    if (use_binary)
        return;
    mk_options o;
    mk_options_init(&o);
    o.pipeline = true;
    o.failure_limit = 1000;   /* not marked dead: the pipe itself must recover */
    mk_client *c = client(1, &o);
    char key[32];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "nrs%d", i);
        CHECK_EQ_I(mk_store(c, MK_STORE_SET, K(key), "x", 1, 0, 0, 0, MK_NOREPLY), 0);
    }
    srv_stop(&S[0]);
    mk_item it;
    int rc = mk_get(c, K("nrs0"), &it);
    CHECK(rc == MK_EIO || rc == MK_ECONNECT);
    CHECK_EQ_I(mk_store(c, MK_STORE_SET, K("nrs-down"), "y", 1, 0, 0, 0, MK_NOREPLY), MK_ECONNECT);
    srv_start(&S[0]);
    CHECK_EQ_I(mk_store(c, MK_STORE_SET, K("nrs-up"), "z", 1, 0, 0, 0, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_get(c, K("nrs-up"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "z");
    mk_item_clear(&it);
    CHECK_EQ_I(mk_get(c, K("nrs0"), &it), MK_ENOTFOUND);   /* a fresh server */
    mk_client_destroy(c);
}

/* version and flush_all take part in both pipes too (issue 17); stats does not (its callback). */
static char vf_version[64];

static void *vf_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    char key[32], buf[64];
    snprintf(key, sizeof key, "vf%d", t);
    for (int i = 0; i < 100; i++) {
        if (mk_version(shared, 0, buf, sizeof buf) != 0 || strcmp(buf, vf_version) != 0)
            atomic_fetch_add(&crossed, 1);
        mk_item it;
        if (mk_set(shared, K(key), key, strlen(key), 0, 0) != 0 || mk_get(shared, K(key), &it) != 0 ||
            it.nvalue != strlen(key) || memcmp(it.value, key, it.nvalue) != 0)
            atomic_fetch_add(&crossed, 1);
        mk_item_clear(&it);
    }
    return NULL;
}

static void test_pipeline_version_and_flush_all(void)
{
    if (use_binary)
        return;
    mk_client *plain = client(1, NULL);
    CHECK_EQ_I(mk_version(plain, 0, vf_version, sizeof vf_version), 0);
    mk_client_destroy(plain);
    pipelined_threads_one_server(vf_worker, 8);
    CHECK_EQ_I(mk_flush_all(shared, 0, 0), 0);
    mk_item it;
    CHECK_EQ_I(mk_get(shared, K("vf0"), &it), MK_ENOTFOUND);
    /* an event loop's pipe: a set, version, flush_all and a get of the key set, in one write, in order */
    mk_evpipe *p;
    CHECK_EQ_I(mk_evpipe_new(shared, 0, &p), 0);
    evcall calls[4];
    mk_op_args a[4];
    for (int i = 0; i < 4; i++)
        mk_op_args_init(&a[i]);
    a[0].code = MK_OP_STORE, a[0].key = "vf-ev", a[0].nkey = 5, a[0].value = "1", a[0].nvalue = 1;
    a[1].code = MK_OP_VERSION, a[1].server = 0;
    a[2].code = MK_OP_FLUSH_ALL, a[2].server = 0;
    a[3].code = MK_OP_GET, a[3].key = "vf-ev", a[3].nkey = 5;
    int left = 0;
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_I(ev_add(shared, &p, &a[i], &calls[i]), 0);   /* 0: the pipe took it */
        left++;
    }
    ev_run(&p, 1, &left, 5000);
    CHECK_EQ_I(left, 0);
    CHECK_EQ_I(calls[0].rc, 0);
    CHECK_EQ_I(calls[1].rc, 0);
    CHECK(strcmp(mk_op_text(calls[1].op), vf_version) == 0);
    CHECK_EQ_I(calls[2].rc, 0);
    CHECK_EQ_I(calls[3].rc, MK_ENOTFOUND);   /* flushed: the flush went after the set, before the get */
    for (int i = 0; i < 4; i++)
        mk_op_destroy(calls[i].op);
    mk_evpipe_free(p);
    mk_client_destroy(shared);
    shared = NULL;
}

/* Meta replies are matched by their O token too (issue 17): a reply that echoes another request's token
 * is not taken for this one's (MK_EPROTO), the connection is replaced, and the next calls are served. */
static void test_pipeline_meta_reply_with_another_token(void)
{
    if (use_binary)
        return;
    int port = fake_start();
    CHECK(port > 0);
    mk_client *c = fake_client(port, 500);
    mk_item it;
    unsigned st;
    CHECK_EQ_I(mk_get_meta(c, K("fine"), 0, 0, &it, &st), MK_ENOTFOUND);
    CHECK_EQ_I(mk_get_meta(c, K("wrongo"), 0, 0, &it, &st), MK_EPROTO);
    CHECK_EQ_I(mk_get_meta(c, K("fine-again"), 0, 0, &it, &st), MK_ENOTFOUND);
    CHECK_EQ_I(mk_get(c, K("after"), &it), 0);
    CHECK(it.nvalue == 5 && memcmp(it.value, "after", 5) == 0);
    mk_item_clear(&it);
    mk_client_destroy(c);
}

/* Regression (issue 17): on an event loop, a request the server is slow to answer times out alone
 * (the requests behind it go again on a fresh connection); a frozen server times every call out; once
 * it answers again, every call gets its own reply. */
static void test_evpipe_slow_and_frozen_server(void)
{
    int port = fake_start();
    CHECK(port > 0);
    mk_client *c = fake_client(port, 500);
    mk_evpipe *p;
    CHECK_EQ_I(mk_evpipe_new(c, 0, &p), 0);
    enum { N = 60 };   /* (pipeline_depth 64) */
    static evcall calls[N + 1];
    static char keys[N + 1][32];
    for (int phase = 0; phase < 3; phase++) {
        atomic_store(&fake_frozen, phase == 1);
        int left = 0;
        int64_t t0 = now_ms();
        for (int i = 0; i <= N; i++) {
            snprintf(keys[i], sizeof keys[i], i == 0 && phase == 0 ? "slowkey" : "k%d-%d", phase, i);
            mk_op_args a;
            mk_op_args_init(&a);
            a.code = MK_OP_GET;
            a.key = keys[i], a.nkey = strlen(keys[i]);
            CHECK_EQ_I(ev_add(c, &p, &a, &calls[i]), 0);
            left++;
            if (i == 0) {   /* the slow one goes first, alone (connected, written): the others queue behind it */
                mk_evpipe_io(p);
                for (int k = 0; k < 100 && (mk_evpipe_events(p) & POLLOUT); k++) {
                    struct pollfd pf = {mk_evpipe_fd(p), mk_evpipe_events(p), 0};
                    poll(&pf, 1, 10);
                    mk_evpipe_io(p);
                }
                usleep(50 * 1000);
            }
        }
        ev_run(&p, 1, &left, 5000);
        int64_t took = now_ms() - t0;
        CHECK_EQ_I(left, 0);
        int ok = 0, timeouts = 0, bad = 0;
        for (int i = 0; i <= N; i++) {
            mk_item it;
            int rc = calls[i].rc;
            if (rc == 0 && mk_op_take_item(calls[i].op, &it) == 0) {
                ok += it.nvalue == strlen(keys[i]) && memcmp(it.value, keys[i], it.nvalue) == 0;
                bad += !(it.nvalue == strlen(keys[i]) && memcmp(it.value, keys[i], it.nvalue) == 0);
                mk_item_clear(&it);
            } else if (rc == MK_ETIMEDOUT) {
                timeouts++;
            } else {
                bad++;
            }
            mk_op_destroy(calls[i].op);
        }
        printf("  evpipe phase %d: %d ok, %d timed out, %d wrong in %lld ms\n", phase, ok, timeouts, bad,
               (long long)took);
        CHECK_EQ_I(bad, 0);
        if (phase == 0) {
            CHECK_EQ_I(timeouts, 1);   /* the slow one alone */
            CHECK_EQ_I(ok, N);
            CHECK(took >= 450 && took < 1400);
        } else if (phase == 1) {
            CHECK_EQ_I(timeouts, N + 1);
        } else {
            CHECK_EQ_I(ok, N + 1);
        }
    }
    mk_server_counters sc;
    CHECK_EQ_I(mk_server_counters_get(c, 0, &sc), 0);
    CHECK(sc.retries >= 1);
    mk_evpipe_free(p);
    mk_client_destroy(c);
}

static void batch_hit(void *ctx, size_t i, const mk_item *it)
{
    int *got = ctx;
    char want[32];
    snprintf(want, sizeof want, "batch-%zu", i);
    size_t wn = i == 7 ? 0 : strlen(want);
    got[0]++;
    got[1] += !(it->nvalue == wn && memcmp(it->value, want, wn) == 0 && it->flags == (uint32_t)i);
}

/* Batches (one pipelined request stream per op), mk_op_start_in + mk_op_wait,
 * mk_client_close_idle, mk_server_revive, and the stale-connection rule: a pooled
 * connection whose server restarted is retried transparently, not counted as a failure. */
static void test_batches_and_public_helpers(void)
{
    mk_options o;
    mk_options_init(&o);
    o.failure_limit = 1;
    o.retry_interval_ms = 60000;
    mk_client *c = client(NSRV, &o);
    enum { NB = 60 };
    char kbuf[NB][32];
    const char *keys[NB];
    size_t nkeys[NB], nvals[NB];
    const void *vals[NB];
    uint32_t flags[NB];
    int res[NB];
    for (int i = 0; i < NB; i++) {
        snprintf(kbuf[i], sizeof kbuf[i], "batch-%d", i);
        keys[i] = kbuf[i];
        nkeys[i] = strlen(kbuf[i]);
        vals[i] = kbuf[i];
        nvals[i] = i == 7 ? 0 : nkeys[i];   /* an empty value too */
        flags[i] = (uint32_t)i;
    }
    /* a store batch on server 1 (placement is the caller's business here) */
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_STORE;
    a.store_op = MK_STORE_SET;
    a.keys = keys;
    a.nkeys = nkeys;
    a.nkeyset = NB;
    a.values = vals;
    a.nvalues = nvals;
    a.flagsv = flags;
    a.results = res;
    a.server = 1;
    mk_op *op;
    CHECK_EQ_I(mk_op_start(c, &a, &op), 0);
    CHECK_EQ_I(mk_op_run(op), 0);
    mk_op_destroy(op);
    int bad = 0;
    for (int i = 0; i < NB; i++)
        bad += res[i] != 0;
    CHECK_EQ_I(bad, 0);
    /* read them back directly from server 1 with a multi-key get op */
    int got[2] = {0, 0};
    mk_op_args g;
    mget_args(&g, keys, nkeys, NB, 1, batch_hit, got);
    CHECK_EQ_I(mk_op_start(c, &g, &op), 0);
    CHECK_EQ_I(mk_op_run(op), 0);
    mk_op_destroy(op);
    CHECK_EQ_I(got[0], NB);
    CHECK_EQ_I(got[1], 0);
    /* add batch: every key exists -> MK_ENOTSTORED each */
    a.store_op = MK_STORE_ADD;
    _Alignas(max_align_t) char storage[MK_OP_STORAGE];
    CHECK_EQ_I(mk_op_start_in(c, &a, storage, 16, &op), MK_ERANGE);
    CHECK_EQ_I(mk_op_start_in(c, &a, storage, sizeof storage, &op), 0);
    int rc;
    while ((rc = mk_op_step(op)) == MK_EAGAIN)
        CHECK_EQ_I(mk_op_wait(op), 0);
    CHECK_EQ_I(rc, 0);
    mk_op_destroy(op);
    bad = 0;
    for (int i = 0; i < NB; i++)
        bad += res[i] != MK_ENOTSTORED;
    CHECK_EQ_I(bad, 0);
    /* delete batch twice: DELETED, then NOT_FOUND */
    mk_op_args d;
    mk_op_args_init(&d);
    d.code = MK_OP_DELETE;
    d.keys = keys;
    d.nkeys = nkeys;
    d.nkeyset = NB;
    d.results = res;
    d.server = 1;
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_I(mk_op_start(c, &d, &op), 0);
        CHECK_EQ_I(mk_op_run(op), 0);
        mk_op_destroy(op);
        bad = 0;
        for (int i = 0; i < NB; i++)
            bad += res[i] != (round ? MK_ENOTFOUND : 0);
        CHECK_EQ_I(bad, 0);
    }
    /* a batch without results is refused */
    d.results = NULL;
    CHECK_EQ_I(mk_op_start(c, &d, &op), MK_EINVAL);

    /* mk_client_close_idle: the next call opens a new connection */
    int t1 = stat_value(c, 2, "total_connections");
    int t2 = stat_value(c, 2, "total_connections");
    CHECK_EQ_I(t2, t1);   /* the pooled connection was reused */
    mk_client_close_idle(c);
    int t3 = stat_value(c, 2, "total_connections");
    CHECK_EQ_I(t3, t2 + 1);

    /* the server behind a pooled connection restarts: the get is retried on a
     * fresh connection and the server is not marked dead (failure_limit 1) */
    char key[32];
    key_on(c, 3, key, sizeof key);
    CHECK_EQ_I(mk_set(c, K(key), "x", 1, 0, 0), 0);
    srv_stop(&S[3]);
    srv_start(&S[3]);
    mk_item it;
    CHECK_EQ_I(mk_get(c, K(key), &it), MK_ENOTFOUND);   /* a fresh server */
    CHECK(mk_server_alive(c, 3));

    /* mk_server_revive: a dead server is alive again at once */
    srv_stop(&S[3]);
    CHECK(mk_get(c, K(key), &it) < 0);
    CHECK(!mk_server_alive(c, 3));
    CHECK_EQ_I(mk_get(c, K(key), &it), MK_ESERVERDEAD);
    CHECK_EQ_I(mk_server_revive(c, 99), MK_ERANGE);
    CHECK_EQ_I(mk_server_revive(NULL, 0), MK_EINVAL);
    CHECK_EQ_I(mk_server_revive(c, 3), 0);
    CHECK(mk_server_alive(c, 3));
    srv_start(&S[3]);
    CHECK_EQ_I(mk_set(c, K(key), "y", 1, 0, 0), 0);
    CHECK_EQ_I(mk_server_revive(c, MK_ALL_SERVERS), 0);
    mk_client_close_idle(NULL);
    mk_client_destroy(c);
}


/* ---- herd protection (meta protocol): mk_get_meta, mk_invalidate ---- */

typedef struct herd_arg {
    mk_client *c;
    const char *key;
    pthread_barrier_t *go;
    unsigned state;
    int rc;
    size_t nvalue;
} herd_arg;

static void *herd_thread(void *p)
{
    herd_arg *h = p;
    mk_item it;
    pthread_barrier_wait(h->go);
    h->rc = mk_get_meta(h->c, h->key, strlen(h->key), 30, 0, &it, &h->state);
    h->nvalue = it.nvalue;
    mk_item_clear(&it);
    return NULL;
}

/* nthreads callers at once: how many won (each must have got a hit). */
static int herd_race(mk_client *c, const char *key, int nthreads)
{
    pthread_t t[32];
    herd_arg h[32];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        h[i] = (herd_arg){.c = c, .key = key, .go = &go};
        pthread_create(&t[i], NULL, herd_thread, &h[i]);
    }
    int wins = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_I(h[i].rc, 0);
        wins += (h[i].state & MK_META_WIN) != 0;
        CHECK(h[i].state & (MK_META_WIN | MK_META_TOKEN));
    }
    pthread_barrier_destroy(&go);
    return wins;
}

static void test_herd(void)
{
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 32;
    mk_client *c = client(1, &o);
    CHECK(c != NULL);
    if (c == NULL)
        return;
    mk_item it;
    unsigned st = 99;
    /* a plain miss: no placeholder without vivify */
    CHECK_EQ_I(mk_get_meta(c, K("herd:none"), 0, 0, &it, &st), MK_ENOTFOUND);
    CHECK(st == 0 && it.value == NULL);
    /* a miss with vivify: this caller wins an empty placeholder, the next one sees the token */
    CHECK_EQ_I(mk_get_meta(c, K("herd:viv"), 30, 0, &it, &st), 0);
    CHECK(st == (MK_META_WIN | MK_META_PLACEHOLDER) && it.nvalue == 0 && it.flags == 0);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_get_meta(c, K("herd:viv"), 30, 0, &it, &st), 0);
    CHECK(st == (MK_META_TOKEN | MK_META_PLACEHOLDER));
    mk_item_clear(&it);
    /* the winner stores; then everyone gets the value, no flags */
    CHECK_EQ_I(mk_set(c, K("herd:viv"), "v1", 2, 5, 100), 0);
    CHECK_EQ_I(mk_get_meta(c, K("herd:viv"), 30, 0, &it, &st), 0);
    CHECK(st == 0 && it.nvalue == 2 && memcmp(it.value, "v1", 2) == 0 && it.flags == 5 && it.cas != 0);
    mk_item_clear(&it);
    /* invalidate: the value is still served, stale; one reader wins */
    CHECK_EQ_I(mk_invalidate(c, K("herd:viv"), 60), 0);
    CHECK_EQ_I(mk_get_meta(c, K("herd:viv"), 0, 0, &it, &st), 0);
    CHECK(st == (MK_META_WIN | MK_META_STALE) && it.nvalue == 2);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_get_meta(c, K("herd:viv"), 0, 0, &it, &st), 0);
    CHECK(st == (MK_META_TOKEN | MK_META_STALE));
    mk_item_clear(&it);
    CHECK_EQ_I(mk_invalidate(c, K("herd:missing"), 0), MK_ENOTFOUND);
    /* recache: a value expiring within the window hands out one early win */
    CHECK_EQ_I(mk_set(c, K("herd:rc"), "x", 1, 0, 10), 0);
    CHECK_EQ_I(mk_get_meta(c, K("herd:rc"), 0, 5, &it, &st), 0);
    CHECK(st == 0);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_get_meta(c, K("herd:rc"), 0, 30, &it, &st), 0);
    CHECK(st == MK_META_WIN);
    mk_item_clear(&it);
    /* bad arguments */
    CHECK_EQ_I(mk_get_meta(c, K("bad key"), 0, 0, &it, &st), MK_EBADKEY);
    CHECK_EQ_I(mk_get_meta(c, K("k"), -1, 0, &it, &st), MK_EINVAL);
    /* many callers at once: exactly one wins, for a miss and for a stale value */
    for (int round = 0; round < 3; round++) {
        char key[32];
        snprintf(key, sizeof key, "herd:race%d", round);
        CHECK_EQ_I(herd_race(c, key, 24), 1);
        CHECK_EQ_I(mk_set(c, K(key), "v", 1, 0, 100), 0);
        CHECK_EQ_I(mk_invalidate(c, K(key), 0), 0);
        CHECK_EQ_I(herd_race(c, key, 24), 1);
    }
    mk_client_destroy(c);
}

/*
 * Regression, the classic noreply pitfall: a noreply request that fails still
 * gets a reply, which a later call on the same connection could take for its
 * own. To a meta server noreply goes in quiet mode closed by "mn"; the failures
 * are read (and counted) before the next call's reply, never instead of it.
 */
static void test_noreply_failure_never_answers_a_later_call(void)
{
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 1; /* every call on the one connection */
    mk_client *c = client(1, &o);
    CHECK(c != NULL);
    if (c == NULL)
        return;
    CHECK_EQ_I(mk_server_speaks_meta(c, 0), 1);
    CHECK_EQ_I(mk_set(c, K("q:a"), "1", 1, 0, 0), 0);
    mk_item cur;
    CHECK_EQ_I(mk_gets(c, K("q:a"), &cur), 0);
    uint64_t wrong_cas = cur.cas + 1000;
    mk_item_clear(&cur);
    size_t nbig = (size_t)2 << 20; /* over the server's 1 MB item limit: SERVER_ERROR */
    char *big = calloc(1, nbig);
    CHECK(big != NULL);
    if (big == NULL)
        return;
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_I(mk_store(c, MK_STORE_ADD, K("q:a"), "2", 1, 0, 0, 0, MK_NOREPLY), 0);   /* not stored */
        CHECK_EQ_I(mk_store(c, MK_STORE_SET, K("q:big"), big, nbig, 0, 0, 0, MK_NOREPLY), 0); /* too large */
        CHECK_EQ_I(mk_delete(c, K("q:none"), MK_NOREPLY), 0);                                 /* not found */
        CHECK_EQ_I(mk_incr(c, K("q:none"), 1, NULL, MK_NOREPLY), 0);                          /* not found */
        CHECK_EQ_I(mk_store(c, MK_STORE_CAS, K("q:a"), "3", 1, 0, 0, wrong_cas, MK_NOREPLY), 0); /* cas mismatch */
        if (round == 1)
            usleep(150 * 1000); /* idle past the pool's check: the replies are read at checkout */
        mk_item it;
        CHECK_EQ_I(mk_get(c, K("q:a"), &it), 0);
        CHECK_MEM(it.value, it.nvalue, "1");
        mk_item_clear(&it);
        CHECK_EQ_I(mk_get(c, K("q:big"), &it), MK_ENOTFOUND);
        mk_server_counters n;
        mk_server_counters_get(c, 0, &n);
        CHECK_EQ_U(n.noreply_failed, 5u * (unsigned)(round + 1));
        CHECK_EQ_U(n.errors, 0);
    }
    free(big);
    /* a long run of noreply writes: every one carried out, the "MN"s read as they come */
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "q:run%d", i);
        CHECK_EQ_I(mk_store(c, MK_STORE_SET, K(key), key, strlen(key), 7, 0, 0, MK_NOREPLY), 0);
    }
    CHECK_EQ_I(mk_store(c, MK_STORE_APPEND, K("q:run0"), "+", 1, 0, 0, 0, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_decr(c, K("q:a"), 1, NULL, MK_NOREPLY), 0);
    mk_item it;
    CHECK_EQ_I(mk_get(c, K("q:run19999"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "q:run19999");
    CHECK_EQ_U(it.flags, 7);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_get(c, K("q:run0"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "q:run0+");
    mk_item_clear(&it);
    CHECK_EQ_I(mk_get(c, K("q:a"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "0");
    mk_item_clear(&it);
    mk_server_counters n;
    mk_server_counters_get(c, 0, &n);
    CHECK_EQ_U(n.noreply_failed, 10);
    CHECK_EQ_U(n.errors, 0);
    mk_client_destroy(c);
}

/*
 * The same calls over memcached's binary protocol (mk_options.binary): every op,
 * stats, multi-gets, batches; noreply as quiet opcodes whose failures are read
 * (and counted) before the next call's answer; herd calls refused up front.
 */
static void test_binary_protocol(void)
{
    use_binary = true;
    test_every_op();
    test_stats();
    test_mget();
    test_batches_and_public_helpers();
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 1;
    mk_client *c = client(1, &o);
    CHECK(c != NULL);
    if (c == NULL) {
        use_binary = false;
        return;
    }
    CHECK_EQ_I(mk_server_speaks_meta(c, 0), 0); /* a binary client sends no meta request */
    mk_item it;
    unsigned st;
    CHECK_EQ_I(mk_get_meta(c, K("bq:a"), 10, 0, &it, &st), MK_EERROR);
    CHECK_EQ_I(mk_set(c, K("bq:a"), "1", 1, 0, 0), 0);
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_I(mk_store(c, MK_STORE_ADD, K("bq:a"), "2", 1, 0, 0, 0, MK_NOREPLY), 0);  /* exists */
        CHECK_EQ_I(mk_delete(c, K("bq:none"), MK_NOREPLY), 0);                            /* not found */
        CHECK_EQ_I(mk_incr(c, K("bq:none"), 1, NULL, MK_NOREPLY), 0);                      /* not found */
        CHECK_EQ_I(mk_get(c, K("bq:a"), &it), 0);
        CHECK_MEM(it.value, it.nvalue, "1");
        mk_item_clear(&it);
        mk_server_counters n;
        mk_server_counters_get(c, 0, &n);
        CHECK_EQ_U(n.noreply_failed, 3u * (unsigned)(round + 1));
        CHECK_EQ_U(n.errors, 0);
    }
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "bq:run%d", i);
        CHECK_EQ_I(mk_store(c, MK_STORE_SET, K(key), key, strlen(key), 3, 0, 0, MK_NOREPLY), 0);
    }
    CHECK_EQ_I(mk_get(c, K("bq:run4999"), &it), 0);
    CHECK(it.flags == 3 && it.nvalue == 10 && memcmp(it.value, "bq:run4999", 10) == 0);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_flush_all(c, 0, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_get(c, K("bq:a"), &it), MK_ENOTFOUND);
    mk_client_destroy(c);
    use_binary = false;
}

/*
 * SASL: a server started with -S and a sasldb made by saslpasswd2 (Debian's
 * sasl2-bin). A client with the right credentials authenticates every new
 * connection (PLAIN, ahead of its first request) and works, noreply included;
 * wrong ones get MK_EAUTH, and so does a client with none.
 */
/* An authenticated client's calls work, a noreply one on a new connection included (it reads the
 * authentication's answer first): sets "auth:a" = v and "auth:b" = w. */
static void check_authenticated_client(mk_client *c)
{
    mk_item it;
    CHECK_EQ_I(mk_set(c, K("auth:a"), "v", 1, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("auth:a"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "v");
    mk_item_clear(&it);
    mk_client_close_idle(c);
    CHECK_EQ_I(mk_store(c, MK_STORE_SET, K("auth:b"), "w", 1, 0, 0, 0, MK_NOREPLY), 0);
    CHECK_EQ_I(mk_get(c, K("auth:b"), &it), 0);
    CHECK_MEM(it.value, it.nvalue, "w");
    mk_item_clear(&it);
    char ver[64];
    CHECK_EQ_I(mk_version(c, 0, ver, sizeof ver), 0);
}

/* -Y: the token goes ahead of the first request of every new connection, the probe's and the meta
 * question's included; wrong credentials are MK_EAUTH and do not mark the server dead. */
static void test_ascii_auth(void)
{
    char file[] = "/tmp/mk-authfile-XXXXXX";
    int fd = mkstemp(file);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "alice:s3cret\nbob:pa:ss\n", 23) == 23);
    close(fd);
    srv s = {.auth_file = file};
    srv_start(&s);
    char list[64];
    snprintf(list, sizeof list, "127.0.0.1:%d", s.port);
    mk_options o;
    mk_options_init(&o);
    o.username = "bob";
    o.password = "pa:ss";
    o.ascii_auth = true;
    o.pool_size = 2;
    mk_client *c = NULL;
    mk_item it;
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    if (c) {
        check_authenticated_client(c);
        /* a multi-get on new connections, and the meta question (herd calls) */
        mk_client_close_idle(c);
        const char *keys[] = {"auth:a", "auth:b", "auth:none"};
        size_t nkeys[] = {6, 6, 9};
        mk_item items[3];
        int rcs[3];
        CHECK_EQ_I(mk_mget_items(c, keys, nkeys, 3, false, items, rcs), 0);
        CHECK(rcs[0] == 0 && rcs[1] == 0 && rcs[2] == MK_ENOTFOUND);
        for (int i = 0; i < 3; i++)
            mk_item_clear(&items[i]);
        CHECK_EQ_I(mk_server_speaks_meta(c, 0), 1);
        mk_client_destroy(c);
    }
    o.password = "wrong";
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    if (c) {
        CHECK_EQ_I(mk_get(c, K("auth:a"), &it), MK_EAUTH);
        CHECK(mk_server_alive(c, 0));
        CHECK(mk_server_speaks_meta(c, 0) == MK_EAUTH);
        mk_client_destroy(c);
    }
    o.username = o.password = NULL;
    o.ascii_auth = false; /* no credentials: the server's refusal is an error, never a value */
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    if (c) {
        CHECK(mk_get(c, K("auth:a"), &it) < 0);
        mk_client_destroy(c);
    }
    char err[128];
    o.ascii_auth = true; /* refused: no credentials, a space, the binary protocol */
    CHECK_EQ_I(mk_client_create(&c, list, &o, err, sizeof err), MK_EINVAL);
    o.username = "al ice";
    o.password = "x";
    CHECK_EQ_I(mk_client_create(&c, list, &o, err, sizeof err), MK_EINVAL);
    o.username = "alice";
    o.binary = true;
    CHECK_EQ_I(mk_client_create(&c, list, &o, err, sizeof err), MK_EINVAL);
    srv_stop(&s);
    unlink(file);
}

static void test_binary_sasl(void)
{
    char dir[] = "/tmp/mk-sasl-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], cmd[512];
    snprintf(path, sizeof path, "%s/memcached.conf", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fprintf(f, "mech_list: plain cram-md5\nsasldb_path: %s/sasldb\n", dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "echo s3cret | saslpasswd2 -f %s/sasldb -a memcached -c -p alice", dir);
    CHECK_EQ_I(system(cmd), 0); /* (saslpasswd2: Debian's sasl2-bin, installed by scripts/deps.sh test) */
    srv s = {.sasl_conf = dir};
    srv_start(&s);
    char list[64];
    snprintf(list, sizeof list, "127.0.0.1:%d", s.port);
    mk_options o;
    mk_options_init(&o);
    o.username = "alice";
    o.password = "s3cret";
    o.pool_size = 2;
    mk_client *c = NULL;
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    mk_item it;
    if (c) {
        check_authenticated_client(c);
        mk_client_destroy(c);
    }
    o.password = "wrong";
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    if (c) {
        CHECK_EQ_I(mk_get(c, K("auth:a"), &it), MK_EAUTH);
        mk_server_counters n;
        mk_server_counters_get(c, 0, &n);
        CHECK_EQ_U(n.errors, 0); /* refused credentials are not a dead server */
        CHECK(mk_server_alive(c, 0));
        mk_client_destroy(c);
    }
    o.username = o.password = NULL;
    o.binary = true;
    CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
    if (c) {
        CHECK_EQ_I(mk_set(c, K("auth:a"), "x", 1, 0, 0), MK_EAUTH);
        mk_client_destroy(c);
    }
    o.username = "alice"; /* a user name without a password is refused */
    char err[128];
    CHECK_EQ_I(mk_client_create(&c, list, &o, err, sizeof err), MK_EINVAL);
    srv_stop(&s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_I(system(cmd), 0);
}

/* ---------------------------------------------------------------- TLS */

/* Certificates for one run, made with the openssl command in dir: ca (signs srv: localhost and
 * 127.0.0.1), other (an unrelated CA), clientca (signs client). false if openssl failed. */
static bool make_certs(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(cd %s && for ca in ca other clientca; do openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key "
             "-out $ca.crt -days 2 -subj \"/CN=memkit test $ca\" || exit 1; done && "
             "issue() { openssl req -newkey rsa:2048 -nodes -keyout $1.key -out $1.csr -subj \"/CN=$2\" && "
             "printf 'subjectAltName=%%s\\n' \"$4\" > $1.ext && openssl x509 -req -in $1.csr -CA $3.crt -CAkey $3.key "
             "-CAcreateserial -out $1.crt -days 2 -extfile $1.ext; } && "
             "issue srv localhost ca DNS:localhost,IP:127.0.0.1 && issue client client clientca DNS:client)"
             " >/dev/null 2>&1",
             dir);
    return system(cmd) == 0;
}

static mk_client *tls_client(const char *host, int port, mk_options *o)
{
    char list[128];
    snprintf(list, sizeof list, "%s:%d", host, port);
    mk_client *c = NULL;
    char err[256] = "";
    int rc = mk_client_create(&c, list, o, err, sizeof err);
    if (rc)
        fprintf(stderr, "    mk_client_create: %s\n", err);
    CHECK_EQ_I(rc, 0);
    return c;
}

/* Every kind of call over TLS: stores, a value of 1 MB (many records each way), a multi-get, the meta
 * question and a herd call, and connections that go back to the pool and are reused. */
static void tls_calls(mk_client *c)
{
    size_t big = 1000000;
    char *v = malloc(big);
    CHECK(v != NULL);
    if (v == NULL)
        return;
    for (size_t i = 0; i < big; i++)
        v[i] = (char)('a' + i % 23);
    mk_item it;
    CHECK_EQ_I(mk_set(c, K("tls:small"), "hello", 5, 7, 0), 0);
    CHECK_EQ_I(mk_get(c, K("tls:small"), &it), 0);
    CHECK(it.nvalue == 5 && memcmp(it.value, "hello", 5) == 0 && it.flags == 7);
    mk_item_clear(&it);
    CHECK_EQ_I(mk_set(c, K("tls:big"), v, big, 0, 0), 0);
    CHECK_EQ_I(mk_get(c, K("tls:big"), &it), 0);
    CHECK(it.nvalue == big && memcmp(it.value, v, big) == 0);
    mk_item_clear(&it);
    free(v);
    const char *keys[64];
    size_t nkeys[64];
    char names[64][16];
    for (int i = 0; i < 64; i++) {
        nkeys[i] = (size_t)snprintf(names[i], sizeof names[i], "tls:m%d", i);
        keys[i] = names[i];
        if (i % 2 == 0)
            CHECK_EQ_I(mk_set(c, names[i], nkeys[i], names[i], nkeys[i], 0, 0), 0);
    }
    mk_item items[64];
    int rcs[64];
    CHECK_EQ_I(mk_mget_items(c, keys, nkeys, 64, false, items, rcs), 0);
    for (int i = 0; i < 64; i++) {
        CHECK_EQ_I(rcs[i], i % 2 == 0 ? 0 : MK_ENOTFOUND);
        if (rcs[i] == 0)
            CHECK(items[i].nvalue == nkeys[i] && memcmp(items[i].value, names[i], nkeys[i]) == 0);
        mk_item_clear(&items[i]);
    }
    uint64_t n = 0;
    CHECK_EQ_I(mk_set(c, K("tls:n"), "41", 2, 0, 0), 0);
    CHECK_EQ_I(mk_incr(c, K("tls:n"), 1, &n, 0), 0);
    CHECK(n == 42);
    if (!use_binary)
        CHECK_EQ_I(mk_server_speaks_meta(c, 0), 1);
    /* the pool keeps its TLS connections: 50 calls open none (TLS 1.3 session tickets that arrive on an
     * idle connection do not make it look unusable) */
    int before = stat_value(c, 0, "total_connections");
    for (int i = 0; i < 50; i++) {
        CHECK_EQ_I(mk_get(c, K("tls:small"), &it), 0);
        mk_item_clear(&it);
    }
    CHECK_EQ_I(stat_value(c, 0, "total_connections"), before);
}

/* tls: the server's certificate is checked against the CA file and the host as written in the list (an
 * IP address or a name) or tls_server_name; an untrusted or misnamed server is MK_ETLS and stays alive;
 * mutual TLS; TLS options without tls are refused. */
static void test_tls(void)
{
    char dir[] = "/tmp/mk-tls-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    if (!make_certs(dir)) {
        CHECK(!"openssl could not make the test certificates (apt-get install openssl)");
        return;
    }
    char path[6][160], opts[1024];
    const char *names[] = {"ca.crt", "other.crt", "client.crt", "client.key", "srv.crt", "srv.key"};
    for (int i = 0; i < 6; i++)
        snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
    snprintf(opts, sizeof opts, "ssl_chain_cert=%s,ssl_key=%s", path[4], path[5]);
    srv s = {.tls_opts = opts};
    srv_start(&s);
    mk_options o;
    mk_options_init(&o);
    CHECK(o.tls_verify && !o.tls);
    o.tls = true;
    o.tls_ca_file = path[0];
    o.failure_limit = 1;
    o.pool_size = 4;
    o.io_timeout_ms = 5000;
    o.checkout_timeout_ms = 10000;
    mk_client *c = tls_client("127.0.0.1", s.port, &o);
    if (c) {
        tls_calls(c);
        /* 8 threads on a pool of 4 TLS connections: every answer is the caller's own */
        int saved = thread_ops;
        thread_ops = saved < 2000 ? saved : 2000;
        shared = c;
        atomic_store(&crossed, 0);
        atomic_store(&errors, 0);
        pthread_t th[8];
        for (int t = 0; t < 8; t++)
            pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
        for (int t = 0; t < 8; t++)
            pthread_join(th[t], NULL);
        thread_ops = saved;
        CHECK_EQ_I(atomic_load(&crossed), 0);
        CHECK_EQ_I(atomic_load(&errors), 0);
        CHECK(stat_value(c, 0, "curr_connections") <= 4 + 1);
        mk_client_destroy(c);
    }
    use_binary = true;
    o.binary = true;
    c = tls_client("localhost", s.port, &o);   /* a DNS name, and the binary protocol */
    if (c) {
        tls_calls(c);
        mk_client_destroy(c);
    }
    use_binary = false;
    o.binary = false;
    mk_item it;
    o.tls_server_name = "memcache.example";    /* the certificate does not name it */
    c = tls_client("127.0.0.1", s.port, &o);
    if (c) {
        CHECK_EQ_I(mk_get(c, K("tls:small"), &it), MK_ETLS);
        CHECK(mk_server_alive(c, 0));
        CHECK_EQ_I(mk_server_speaks_meta(c, 0), MK_ETLS);
        mk_client_destroy(c);
    }
    o.tls_verify = false;                      /* not checked: encrypted, answered */
    c = tls_client("127.0.0.1", s.port, &o);
    if (c) {
        CHECK_EQ_I(mk_get(c, K("tls:small"), &it), 0);
        mk_item_clear(&it);
        mk_client_destroy(c);
    }
    o.tls_verify = true;
    o.tls_server_name = NULL;
    o.tls_ca_file = path[1];                   /* signed by a CA not trusted */
    c = tls_client("127.0.0.1", s.port, &o);
    if (c) {
        CHECK_EQ_I(mk_get(c, K("tls:small"), &it), MK_ETLS);
        CHECK(mk_server_alive(c, 0));
        mk_client_destroy(c);
    }
    o.tls_ca_file = path[0];
    c = tls_client("127.0.0.1", S[0].port, &o); /* a plain server: an error, never a value */
    if (c) {
        CHECK(mk_get(c, K("tls:small"), &it) < 0);
        mk_client_destroy(c);
    }
    srv_stop(&s);

    /* mutual TLS: the server wants a certificate signed by clientca */
    snprintf(opts, sizeof opts, "ssl_chain_cert=%s,ssl_key=%s,ssl_verify_mode=2,ssl_ca_cert=%s/clientca.crt",
             path[4], path[5], dir);
    srv m = {.tls_opts = opts};
    srv_start(&m);
    c = tls_client("127.0.0.1", m.port, &o);
    if (c) {
        CHECK(mk_set(c, K("tls:mutual"), "x", 1, 0, 0) < 0);
        mk_client_destroy(c);
    }
    o.tls_cert_file = path[2];
    o.tls_key_file = path[3];
    c = tls_client("127.0.0.1", m.port, &o);
    if (c) {
        CHECK_EQ_I(mk_set(c, K("tls:mutual"), "x", 1, 0, 0), 0);
        CHECK_EQ_I(mk_get(c, K("tls:mutual"), &it), 0);
        mk_item_clear(&it);
        mk_client_destroy(c);
    }
    srv_stop(&m);

    /* refused options: each with a one-line reason */
    char err[256];
    o.tls_key_file = NULL;
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1", &o, err, sizeof err), MK_EINVAL);
    CHECK(strstr(err, "tls_key_file") != NULL);
    o.tls_cert_file = NULL;
    o.tls_ca_file = "/nonexistent/ca.pem";
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1", &o, err, sizeof err), MK_EINVAL);
    CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
    o.tls = false;
    o.tls_ca_file = path[0];
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1", &o, err, sizeof err), MK_EINVAL);
    CHECK(strstr(err, "need tls") != NULL);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    server_bin = getenv("MK_SERVER") ? getenv("MK_SERVER") : "/usr/bin/memcached";
    if (getenv("MK_THREAD_OPS"))
        thread_ops = atoi(getenv("MK_THREAD_OPS"));
    const char *suite = getenv("MK_SUITE") ? getenv("MK_SUITE") : "client";
    const char *only = argc > 1 ? argv[1] : NULL;
    for (int i = 0; i < NSRV; i++)
        srv_start(&S[i]);
#define T(fn)                                          \
    if (!only || strcmp(only, #fn) == 0) {             \
        int64_t t0__ = now_ms();                       \
        RUN(fn);                                       \
        fprintf(stderr, "  %-28s %5lld ms\n", #fn, (long long)(now_ms() - t0__)); \
    }
    T(test_create_errors);
    T(test_every_op);
    T(test_stats);
    T(test_placement);
    T(test_mget);
    T(test_mget_parallel);
    T(test_unix_socket);
    T(test_op_rearm);
    T(test_nonblocking);
    T(test_pool_checkout_timeout);
    T(test_pool_reuse);
    T(test_freeze);
    T(test_freeze_mget);
    T(test_kill);
    T(test_batches_and_public_helpers);
    T(test_all_dead);
    T(test_threads);
    T(test_pipeline_threads);
    T(test_pipeline_threads_multi_get_with_callback);
    T(test_pipeline_noreply_calls_share_the_connection);
    T(test_pipeline_after_quiet_noreply_requests);
    T(test_pipeline_slow_request_times_out_alone);
    T(test_pipeline_frozen_server);
    T(test_evpipe_loop);
    T(test_evpipe_cancel_keeps_the_connection);
    T(test_evpipe_slow_and_frozen_server);
    T(test_pipeline_meta_reply_with_another_token);
    T(test_pipeline_version_and_flush_all);
    T(test_pipeline_noreply_server_restart);
    T(test_herd);
    T(test_noreply_failure_never_answers_a_later_call);
    T(test_binary_protocol);
    T(test_binary_sasl);
    T(test_ascii_auth);
    T(test_tls);
    for (int i = 0; i < NSRV; i++)
        srv_stop(&S[i]);
    return check_summary(suite);
}
