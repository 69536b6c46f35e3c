/* client/servers.c — server-list parsing: "host[:port[:weight]]", "[v6]:port", unix paths, space weights; no DNS. */
#include "client/dist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *text;
    mk_server_list *out;
    size_t cap;                 /* allocated entries in out->servers */
    char *strings;              /* next free byte in out->strings_ */
    mk_servers_error *err;
    size_t entry;               /* entries so far */
    bool last_has_weight;       /* the previous entry had an explicit weight */
} parser;

static bool is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static mk_servers_status fail(parser *ps, mk_servers_status code, size_t offset, const char *fmt, ...)
{
    if (ps->err) {
        ps->err->code = code;
        ps->err->offset = offset;
        ps->err->entry = ps->entry;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err->message, sizeof ps->err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Token text for messages: at most 64 bytes of it. */
#define TOK(p, n) (int)((n) > 64 ? 64 : (n)), (p)

/* Digits only, value 1..max. Returns false on anything else. */
static bool parse_uint(const char *p, size_t n, unsigned long max, unsigned long *out)
{
    if (n == 0)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(p[i] - '0');
        if (v > max)
            return false;
    }
    if (v == 0)
        return false;
    *out = v;
    return true;
}

static mk_servers_status parse_port(parser *ps, const char *p, size_t n, uint16_t *port)
{
    unsigned long v;
    if (!parse_uint(p, n, 65535, &v))
        return fail(ps, MK_SERVERS_EBAD_PORT, (size_t)(p - ps->text),
                    "entry %zu: bad port \"%.*s\" (want 1..65535)", ps->entry, TOK(p, n));
    *port = (uint16_t)v;
    return MK_SERVERS_OK;
}

static mk_servers_status parse_weight(parser *ps, const char *p, size_t n, uint32_t *weight)
{
    unsigned long v;
    if (!parse_uint(p, n, MK_WEIGHT_MAX, &v))
        return fail(ps, MK_SERVERS_EBAD_WEIGHT, (size_t)(p - ps->text),
                    "entry %zu: bad weight \"%.*s\" (want 1..%d)", ps->entry, TOK(p, n), MK_WEIGHT_MAX);
    *weight = (uint32_t)v;
    return MK_SERVERS_OK;
}

/* Copy a host/path into the string store; the store has room by construction. */
static const char *store(parser *ps, const char *p, size_t n)
{
    char *s = ps->strings;
    memcpy(s, p, n);
    s[n] = '\0';
    ps->strings += n + 1;
    return s;
}

static mk_servers_status push(parser *ps, const mk_server_spec *spec)
{
    mk_server_list *out = ps->out;
    if (out->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        mk_server_spec *v = realloc(out->servers, cap * sizeof *v);
        if (v == NULL)
            return fail(ps, MK_SERVERS_ENOMEM, 0, "out of memory");
        out->servers = v;
        ps->cap = cap;
    }
    out->servers[out->n++] = *spec;
    ps->entry++;
    return MK_SERVERS_OK;
}

/* One entry token t[0..n-1] (no separators inside). */
static mk_servers_status parse_entry(parser *ps, const char *t, size_t n)
{
    size_t off = (size_t)(t - ps->text);
    mk_server_spec spec = {.host = NULL, .port = MK_DEFAULT_PORT, .weight = 1, .type = MK_SERVER_TCP};
    mk_servers_status rc;
    ps->last_has_weight = false;

    /* unix sockets: "/path" or "unix:path" (python-memcached's spelling) */
    if (t[0] == '/' || (n >= 5 && memcmp(t, "unix:", 5) == 0)) {
        const char *path = t[0] == '/' ? t : t + 5;
        size_t plen = n - (size_t)(path - t);
        if (plen == 0)
            return fail(ps, MK_SERVERS_EEMPTY_HOST, off, "entry %zu: empty unix socket path", ps->entry);
        if (plen > MK_UNIX_PATH_MAX)
            return fail(ps, MK_SERVERS_ETOO_LONG, off, "entry %zu: unix socket path longer than %d bytes",
                        ps->entry, MK_UNIX_PATH_MAX);
        spec.type = MK_SERVER_UNIX;
        spec.port = 0;
        spec.host = store(ps, path, plen);
        return push(ps, &spec);
    }

    const char *host, *rest;    /* rest: what follows the host, "" or ":port[:weight]" */
    size_t hlen;
    if (t[0] == '[') {
        const char *close = memchr(t, ']', n);
        if (close == NULL)
            return fail(ps, MK_SERVERS_EUNTERMINATED_BRACKET, off, "entry %zu: unterminated '[' in \"%.*s\"",
                        ps->entry, TOK(t, n));
        host = t + 1;
        hlen = (size_t)(close - host);
        if (hlen == 0)
            return fail(ps, MK_SERVERS_EEMPTY_HOST, off, "entry %zu: empty address in \"[]\"", ps->entry);
        if (memchr(host, '[', hlen))
            return fail(ps, MK_SERVERS_EBAD_ENTRY, off, "entry %zu: '[' inside brackets in \"%.*s\"", ps->entry,
                        TOK(t, n));
        rest = close + 1;
        if (rest < t + n && *rest != ':')
            return fail(ps, MK_SERVERS_EBAD_ENTRY, (size_t)(rest - ps->text),
                        "entry %zu: expected ':' after ']' in \"%.*s\"", ps->entry, TOK(t, n));
    } else {
        const char *colon = memchr(t, ':', n);
        host = t;
        hlen = colon ? (size_t)(colon - t) : n;
        rest = t + hlen;
        if (memchr(t, ']', n) || memchr(t, '[', n))
            return fail(ps, MK_SERVERS_EBAD_ENTRY, off, "entry %zu: stray bracket in \"%.*s\"", ps->entry,
                        TOK(t, n));
        if (hlen == 0)
            return fail(ps, MK_SERVERS_EEMPTY_HOST, off, "entry %zu: empty host in \"%.*s\"", ps->entry, TOK(t, n));
    }
    if (hlen > MK_HOST_MAX)
        return fail(ps, MK_SERVERS_ETOO_LONG, off, "entry %zu: host longer than %d bytes", ps->entry, MK_HOST_MAX);

    const char *end = t + n;
    if (rest < end) {           /* ":port[:weight]" */
        const char *port = rest + 1;
        const char *c2 = memchr(port, ':', (size_t)(end - port));
        const char *pend = c2 ? c2 : end;
        if ((rc = parse_port(ps, port, (size_t)(pend - port), &spec.port)) != MK_SERVERS_OK)
            return rc;
        if (c2) {
            const char *w = c2 + 1;
            if (memchr(w, ':', (size_t)(end - w)))
                return fail(ps, MK_SERVERS_EBAD_ENTRY, off,
                            "entry %zu: too many ':' in \"%.*s\" (write IPv6 addresses as [addr]:port)",
                            ps->entry, TOK(t, n));
            if ((rc = parse_weight(ps, w, (size_t)(end - w), &spec.weight)) != MK_SERVERS_OK)
                return rc;
            ps->last_has_weight = true;
        }
    }
    spec.host = store(ps, host, hlen);
    return push(ps, &spec);
}

/* A token that reads as a weight for the entry before it. */
static bool weight_like(const char *t, size_t n)
{
    if (t[0] == '-' || t[0] == '+')
        return true;
    for (size_t i = 0; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return false;
    return true;
}

mk_servers_status mk_servers_parse(const char *text, mk_server_list *out, mk_servers_error *err)
{
    if (err) {
        memset(err, 0, sizeof *err);
    }
    if (out == NULL || text == NULL) {
        if (out)
            *out = (mk_server_list){NULL, 0, NULL};
        if (err) {
            err->code = MK_SERVERS_EINVAL;
            snprintf(err->message, sizeof err->message, "NULL argument");
        }
        return MK_SERVERS_EINVAL;
    }
    *out = (mk_server_list){NULL, 0, NULL};
    size_t len = strlen(text);
    parser ps = {.text = text, .out = out, .err = err};
    /* Every stored string is a piece of the text plus a NUL, pieces don't overlap. */
    out->strings_ = malloc(len + 1);
    if (out->strings_ == NULL)
        return fail(&ps, MK_SERVERS_ENOMEM, 0, "out of memory");
    ps.strings = out->strings_;

    mk_servers_status rc = MK_SERVERS_OK;
    size_t i = 0;
    bool comma_since_token = false;     /* a ',' between the previous token and this one */
    bool any_token = false;
    size_t commas_in_gap = 0, last_comma = 0;
    while (rc == MK_SERVERS_OK) {
        commas_in_gap = 0;
        comma_since_token = false;
        while (i < len && is_sep(text[i])) {
            if (text[i] == ',') {
                /* ",," or a leading/trailing ',' is an empty entry */
                if (commas_in_gap > 0 || !any_token) {
                    rc = fail(&ps, MK_SERVERS_EEMPTY_HOST, i, "entry %zu: empty entry at ','", ps.entry);
                    break;
                }
                commas_in_gap++;
                comma_since_token = true;
                last_comma = i;
            }
            i++;
        }
        if (rc != MK_SERVERS_OK)
            break;
        if (i >= len) {
            if (comma_since_token)
                rc = fail(&ps, MK_SERVERS_EEMPTY_HOST, last_comma, "entry %zu: empty entry after trailing ','",
                          ps.entry);
            break;
        }
        size_t start = i;
        while (i < len && !is_sep(text[i]))
            i++;
        const char *t = text + start;
        size_t n = i - start;

        if (weight_like(t, n)) {
            /* "host:port 3": only after whitespace, never after a ',' */
            if (!any_token || comma_since_token) {
                rc = fail(&ps, MK_SERVERS_EBAD_ENTRY, start, "entry %zu: weight \"%.*s\" without a server",
                          ps.entry, TOK(t, n));
            } else if (ps.last_has_weight) {
                ps.entry--;
                rc = fail(&ps, MK_SERVERS_EBAD_WEIGHT, start, "entry %zu: weight given twice (\"%.*s\")", ps.entry,
                          TOK(t, n));
            } else {
                ps.entry--;     /* errors name the entry the weight belongs to */
                rc = parse_weight(&ps, t, n, &out->servers[out->n - 1].weight);
                ps.entry++;
                ps.last_has_weight = true;
            }
        } else {
            rc = parse_entry(&ps, t, n);
        }
        any_token = true;
    }
    if (rc == MK_SERVERS_OK && out->n == 0)
        rc = fail(&ps, MK_SERVERS_EEMPTY_LIST, 0, "no servers in the list");
    if (rc != MK_SERVERS_OK)
        mk_servers_free(out);
    return rc;
}

void mk_servers_free(mk_server_list *list)
{
    if (list == NULL)
        return;
    free(list->servers);
    free(list->strings_);
    *list = (mk_server_list){NULL, 0, NULL};
}

const char *mk_servers_strerror(mk_servers_status code)
{
    switch (code) {
    case MK_SERVERS_OK:
        return "ok";
    case MK_SERVERS_EEMPTY_LIST:
        return "empty server list";
    case MK_SERVERS_EEMPTY_HOST:
        return "empty host";
    case MK_SERVERS_EBAD_PORT:
        return "bad port";
    case MK_SERVERS_EBAD_WEIGHT:
        return "bad weight";
    case MK_SERVERS_EUNTERMINATED_BRACKET:
        return "unterminated '['";
    case MK_SERVERS_EBAD_ENTRY:
        return "malformed server entry";
    case MK_SERVERS_ETOO_LONG:
        return "host or path too long";
    case MK_SERVERS_ENOMEM:
        return "out of memory";
    case MK_SERVERS_EINVAL:
        return "invalid argument";
    }
    return "unknown server-list status";
}
