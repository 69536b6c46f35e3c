/* tools/bench/servers.c — memkit-bench's server list: libmemkit parses it, names the servers and places keys; the bench resolves their addresses for its own sockets. */
#include "bench.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int unix_address(bench_server *s, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&s->addr;
    if (*path == 0 || strlen(path) >= sizeof un->sun_path)
        return fail(err, errlen, "path empty or too long: '%s'", path);
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, path);
    s->addrlen = sizeof *un;
    return 0;
}

/* A TCP server's name is libmemkit's "host:port" or "[v6]:port": split it again for getaddrinfo. */
static int tcp_address(bench_server *s, char *err, size_t errlen)
{
    char host[300];
    const char *colon = strrchr(s->name, ':'), *h = s->name, *end = colon;
    if (colon && *h == '[')
        h++, end--; /* "[v6]:port": the host ends at ']' */
    if (colon == NULL || end < h || (size_t)(end - h) >= sizeof host)
        return fail(err, errlen, "unexpected server name '%s'", s->name);
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0)
        return fail(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
    memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
    s->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int servers_from_list(bench_cfg *c, const char *list, char *err, size_t errlen)
{
    mk_options opt;
    mk_options_init(&opt);
    opt.distribution = c->distribution;
    if (mk_client_create(&c->client, list, &opt, err, errlen) != 0)
        return -1; /* no connection yet: libmemkit connects only for calls, and the bench makes none */
    c->server = list;
    c->nsrv = (int)mk_server_count(c->client);
    c->srv = calloc((size_t)c->nsrv, sizeof *c->srv);
    if (c->srv == NULL)
        return fail(err, errlen, "out of memory");
    for (int i = 0; i < c->nsrv; i++) {
        bench_server *s = &c->srv[i];
        s->name = mk_server_name(c->client, (size_t)i);
        s->weight = mk_server_weight(c->client, (size_t)i);
        if ((s->name[0] == '/' ? unix_address(s, s->name, err, errlen) : tcp_address(s, err, errlen)) != 0)
            return -1;
    }
    return 0;
}

int servers_from_unix(bench_cfg *c, const char *path, char *err, size_t errlen)
{
    c->server = path;
    c->nsrv = 1;
    c->srv = calloc(1, sizeof *c->srv);
    if (c->srv == NULL)
        return fail(err, errlen, "out of memory");
    c->srv[0].name = path;
    c->srv[0].weight = 1;
    return unix_address(&c->srv[0], path, err, errlen);
}

void servers_free(bench_cfg *c)
{
    mk_client_destroy(c->client);
    c->client = NULL;
    free(c->srv);
    c->srv = NULL;
}

int servers_place(const bench_cfg *c, const char *const *keys, const size_t *nkeys, size_t n, int *where)
{
    if (c->nsrv == 1) { /* every distribution agrees, and -S has no client to ask */
        memset(where, 0, n * sizeof *where);
        return 0;
    }
    int rc = mk_servers_for_keys(c->client, keys, nkeys, n, where);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (where[i] < 0)
            rc = where[i];
    return rc;
}

int servers_place_one(const bench_cfg *c, const char *key, size_t nkey)
{
    return c->nsrv == 1 ? 0 : mk_server_for_key(c->client, key, nkey);
}
