/* client/client.c — mk_client create/destroy: options, server list, name resolution, distribution; mk_strerror. */
#include "client/client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

int64_t mk__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *mk_strerror(int err)
{
    switch (err) {
    case MK_OK: return "success";
    case MK_ENOTFOUND: return "not found";
    case MK_ENOTSTORED: return "not stored";
    case MK_EEXISTS: return "exists (cas mismatch)";
    case MK_EINVAL: return "invalid argument";
    case MK_ENOMEM: return "out of memory";
    case MK_EBADKEY: return "invalid key (empty, longer than 250 bytes, or contains a space or control character)";
    case MK_EBADSERVERS: return "invalid server list";
    case MK_ERESOLVE: return "host name does not resolve";
    case MK_ECONNECT: return "connection failed";
    case MK_ETIMEDOUT: return "timed out";
    case MK_EIO: return "I/O error or connection closed by server";
    case MK_EPROTO: return "invalid reply from server";
    case MK_ESERVERDEAD: return "server marked dead";
    case MK_ENOSERVER: return "no live server";
    case MK_EPOOLTIMEOUT: return "timed out waiting for a pooled connection";
    case MK_ECLIENTERR: return "server replied CLIENT_ERROR";
    case MK_ESERVERERR: return "server replied SERVER_ERROR";
    case MK_EERROR: return "server replied ERROR";
    case MK_EAGAIN: return "operation would block";
    case MK_ERANGE: return "out of range";
    case MK_ENOTNUM: return "value is not a number";
    case MK_EAUTH: return "authentication failed";
    case MK_ETLS: return "TLS handshake failed (certificate not trusted or for another host, client certificate "
                         "missing or refused, or no TLS on the server)";
    default: return "unknown error";
    }
}

void mk_options_init(mk_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->distribution = MK_DISTRIBUTION_KETAMA;
    opt->connect_timeout_ms = 1000;
    opt->io_timeout_ms = 1000;
    opt->failure_limit = 2;
    opt->retry_interval_ms = 2000;
    opt->auto_eject = false;
    opt->pool_size = 8;
    opt->checkout_timeout_ms = 1000;
    opt->tcp_nodelay = true;
    opt->flush_on_rejoin = false;
    opt->tls_verify = true;
    opt->pipeline = false;
    opt->pipeline_depth = 64;
    opt->pipeline_max_value = 16384;
}

static const struct {
    const char *name;
    mk_distribution d;
    mk_dist_kind kind;
} dists[] = {
    {"ketama", MK_DISTRIBUTION_KETAMA, MK_DIST_KETAMA},
    {"modula", MK_DISTRIBUTION_MODULA, MK_DIST_MODULA},
    {"consistent", MK_DISTRIBUTION_CONSISTENT, MK_DIST_CONSISTENT},
    {"rendezvous", MK_DISTRIBUTION_RENDEZVOUS, MK_DIST_RENDEZVOUS},
    {"ketama_fnv1a", MK_DISTRIBUTION_KETAMA_FNV1A, MK_DIST_KETAMA_FNV1A},
};

int mk_distribution_parse(const char *name, mk_distribution *out)
{
    for (size_t i = 0; name && i < sizeof dists / sizeof dists[0]; i++) {
        if (strcmp(name, dists[i].name) == 0) {
            *out = dists[i].d;
            return 0;
        }
    }
    return MK_EINVAL;
}

static int fail(char *errbuf, size_t errlen, int rc, const char *fmt, ...)
{
    if (errbuf && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int resolve(mk_server *s, const mk_server_spec *sp, char *errbuf, size_t errlen)
{
    if (sp->type == MK_SERVER_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)&s->addr;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", sp->host);
        s->addrlen = sizeof *un;
        s->is_unix = true;
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)sp->port);
    int e = getaddrinfo(sp->host, port, &hints, &res);
    if (e != 0 || res == NULL)
        return fail(errbuf, errlen, MK_ERESOLVE, "cannot resolve %s: %s", sp->host, gai_strerror(e));
    memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
    s->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int mk_client_create(mk_client **out, const char *servers, const mk_options *opt, char *errbuf,
                     size_t errlen)
{
    if (out == NULL)
        return MK_EINVAL;
    *out = NULL;
    if (servers == NULL)
        return fail(errbuf, errlen, MK_EINVAL, "no server list");
    mk_options o;
    if (opt)
        o = *opt;
    else
        mk_options_init(&o);
    if (o.connect_timeout_ms <= 0 || o.io_timeout_ms <= 0 || o.failure_limit < 1 ||
        o.retry_interval_ms < 0 || o.pool_size < 1 || o.checkout_timeout_ms < 0 || o.pipeline_depth < 1)
        return fail(errbuf, errlen, MK_EINVAL, "invalid options (timeouts, pool size, pipeline depth and failure limit must be positive)");
    if ((o.username == NULL) != (o.password == NULL) ||
        (o.username && (strlen(o.username) > MK_CRED_MAX || strlen(o.password) > MK_CRED_MAX)))
        return fail(errbuf, errlen, MK_EINVAL, "SASL needs both a user name and a password (each at most 255 bytes)");
    if (!o.tls && (o.tls_ca_file || o.tls_cert_file || o.tls_key_file || o.tls_server_name || !o.tls_verify))
        return fail(errbuf, errlen, MK_EINVAL, "tls_ca_file, tls_cert_file, tls_key_file, tls_server_name and "
                                               "tls_verify need tls");
    if ((o.tls_cert_file == NULL) != (o.tls_key_file == NULL))
        return fail(errbuf, errlen, MK_EINVAL, "a TLS client certificate needs both tls_cert_file and tls_key_file");
    if (o.ascii_auth) {
        char probe[64 + 2 * MK_CRED_MAX];
        if (!o.username || o.binary ||
            !mk_compose_auth_token(probe, sizeof probe, o.username, strlen(o.username), o.password, strlen(o.password)))
            return fail(errbuf, errlen, MK_EINVAL, "ascii_auth needs a user name and a password without spaces, "
                                                   "and the text protocol (not binary)");
    } else if (o.username) {
        o.binary = true; /* SASL exists only in the binary protocol */
    }
    mk_dist_kind kind = MK_DIST_KIND_COUNT_;
    for (size_t i = 0; i < sizeof dists / sizeof dists[0]; i++)
        if (dists[i].d == o.distribution)
            kind = dists[i].kind;
    if (kind == MK_DIST_KIND_COUNT_)
        return fail(errbuf, errlen, MK_EINVAL, "unknown distribution");

    mk_server_list list;
    mk_servers_error perr;
    mk_servers_status st = mk_servers_parse(servers, &list, &perr);
    if (st != MK_SERVERS_OK)
        return fail(errbuf, errlen, st == MK_SERVERS_ENOMEM ? MK_ENOMEM : MK_EBADSERVERS,
                    "bad server list: %s", perr.message);

    mk_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        mk_servers_free(&list);
        return fail(errbuf, errlen, MK_ENOMEM, "out of memory");
    }
    c->opt = o;
    if (o.username) { /* copied: the caller's strings may go */
        c->opt.username = c->cred = malloc(strlen(o.username) + strlen(o.password) + 2);
        if (c->cred == NULL) {
            mk_servers_free(&list);
            free(c);
            return fail(errbuf, errlen, MK_ENOMEM, "out of memory");
        }
        strcpy(c->cred, o.username);
        c->opt.password = strcpy(c->cred + strlen(o.username) + 1, o.password);
    }
    c->kind = kind;
    c->n = list.n;
    c->specs = list.servers;
    c->spec_strings = list.strings_;
    pthread_rwlock_init(&c->live_lock, NULL);
    mk__probe_init(c);
    c->servers = calloc(list.n, sizeof *c->servers);
    c->live_set = malloc(list.n);
    if (c->servers == NULL || c->live_set == NULL) {
        mk_client_destroy(c);
        return fail(errbuf, errlen, MK_ENOMEM, "out of memory");
    }
    memset(c->live_set, 1, list.n);
    for (size_t i = 0; i < list.n; i++) {
        mk_server *s = &c->servers[i];
        const mk_server_spec *sp = &list.servers[i];
        pthread_mutex_init(&s->lock, NULL);
        s->wh = s->wt = NULL;
        mk__pipe_init(&s->pipe);
        atomic_init(&s->failures, 0);
        atomic_init(&s->dead_until, 0);
        atomic_init(&s->probe_at, 0);
        size_t nn = strlen(sp->host) + 16;
        s->name = malloc(nn);
        s->idle = calloc((size_t)o.pool_size, sizeof *s->idle);
        if (s->name == NULL || s->idle == NULL) {
            mk_client_destroy(c);
            return fail(errbuf, errlen, MK_ENOMEM, "out of memory");
        }
        if (sp->type == MK_SERVER_UNIX)
            snprintf(s->name, nn, "%s", sp->host);
        else if (strchr(sp->host, ':'))
            snprintf(s->name, nn, "[%s]:%u", sp->host, (unsigned)sp->port);
        else
            snprintf(s->name, nn, "%s:%u", sp->host, (unsigned)sp->port);
    }
    for (size_t i = 0; i < list.n; i++) {
        int rc = resolve(&c->servers[i], &list.servers[i], errbuf, errlen);
        if (rc) {
            mk_client_destroy(c);
            return rc;
        }
    }
    if (o.tls) {
        int rc = mk__tls_create(c, errbuf, errlen);
        c->opt.tls_ca_file = c->opt.tls_cert_file = c->opt.tls_key_file = NULL; /* loaded: not kept */
        c->opt.tls_server_name = NULL;
        if (rc == 0 && o.tls_server_name && (c->tls_name = strdup(o.tls_server_name)) == NULL)
            rc = fail(errbuf, errlen, MK_ENOMEM, "out of memory");
        if (rc) {
            mk_client_destroy(c);
            return rc;
        }
    }
    c->dist = mk_dist_create(kind, list.servers, list.n);
    if (c->dist == NULL) {
        int e = errno;
        mk_client_destroy(c);
        return fail(errbuf, errlen, e == ENOMEM ? MK_ENOMEM : MK_EINVAL, "cannot build distribution: %s",
                    strerror(e));
    }
    *out = c;
    return 0;
}

void mk_client_destroy(mk_client *c)
{
    if (c == NULL)
        return;
    mk__probe_stop(c);   /* before the servers go: the thread reads them */
    if (c->servers) {
        for (size_t i = 0; i < c->n; i++) {
            mk_server *s = &c->servers[i];
            if (s->idle) {
                mk__pool_close_idle(s);
                free(s->idle);
            }
            free(s->name);
            mk__pipe_destroy(&s->pipe);
            pthread_mutex_destroy(&s->lock);
        }
        free(c->servers);
    }
    mk__tls_destroy(c);   /* after the connections: each SSL holds the context */
    free(c->tls_name);
    mk_dist_destroy(c->dist);
    mk_dist_destroy(c->live_dist);
    free(c->live_map);
    free(c->live_set);
    pthread_rwlock_destroy(&c->live_lock);
    mk_server_list l = {c->specs, c->n, c->spec_strings};
    mk_servers_free(&l);
    free(c->cred);
    free(c);
}

size_t mk_server_count(const mk_client *c)
{
    return c ? c->n : 0;
}

const char *mk_server_name(const mk_client *c, size_t i)
{
    return c && i < c->n ? c->servers[i].name : NULL;
}

uint32_t mk_server_weight(const mk_client *c, size_t i)
{
    return c && i < c->n ? c->specs[i].weight : 0;
}

bool mk_server_alive(const mk_client *c, size_t i)
{
    return c && i < c->n && mk__server_alive(&c->servers[i], mk__now_ms());
}

int mk_check_key(const char *key, size_t nkey)
{
    return mk_key_check(key, nkey, NULL) == MK_KEY_OK ? 0 : MK_EBADKEY;
}

int mk_server_for_key(mk_client *c, const char *key, size_t nkey)
{
    if (c == NULL)
        return MK_EINVAL;
    if (mk_key_check(key, nkey, NULL) != MK_KEY_OK)
        return MK_EBADKEY;
    return mk__pick(c, key, nkey);
}

int mk_servers_for_keys(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n, int *out)
{
    if (c == NULL || (n > 0 && (keys == NULL || nkeys == NULL || out == NULL)))
        return MK_EINVAL;
    if (n == 0)
        return 0;
    mk__pick_many(c, keys, nkeys, n, mk__now_ms(), out);
    for (size_t i = 0; i < n; i++)
        if (mk_key_check(keys[i], nkeys[i], NULL) != MK_KEY_OK)
            out[i] = MK_EBADKEY;
    return 0;
}

void mk_item_clear(mk_item *item)
{
    if (item == NULL)
        return;
    free(item->value);
    memset(item, 0, sizeof *item);
}
