/* src/proto/response.c — client-side parsing of memcached's text-protocol reply lines (mk_parse_response). */
#include "memkit/proto.h"

#include "proto/lex.h"

#include <string.h>

static bool line_is(const char *p, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    return n == m && memcmp(p, lit, m) == 0;
}

/* lit followed by one space (rest -> *text); the text may be empty but the space is required. */
static bool line_prefix(const char *p, size_t n, const char *lit, mk_str *text)
{
    size_t m = strlen(lit);
    if (n < m + 1 || memcmp(p, lit, m) != 0 || p[m] != ' ')
        return false;
    text->p = p + m + 1;
    text->n = n - m - 1;
    return true;
}

/* next space-separated field of a VALUE line: exactly one space between fields */
static bool field(const char **p, const char *end, mk_str *f)
{
    const char *s = *p;
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    const char *e = sp ? sp : end;
    if (e == s)
        return false;
    f->p = s;
    f->n = (size_t)(e - s);
    *p = sp ? sp + 1 : end;
    return sp == NULL || sp + 1 < end; /* a trailing space is malformed */
}

static bool parse_value(const char *p, size_t n, mk_response *r)
{
    const char *end = p + n, *q = p;
    mk_str key, fl, nb, cas;
    if (!field(&q, end, &key) || q == end || !field(&q, end, &fl) || q == end || !field(&q, end, &nb))
        return false;
    uint64_t v;
    if (key.n > MK_KEY_MAX)
        return false;
    if (!mk_dec_u64(fl.p, fl.n, UINT32_MAX, &v))
        return false;
    r->flags = (uint32_t)v;
    if (!mk_dec_u64(nb.p, nb.n, UINT64_MAX, &r->vlen))
        return false;
    if (q != end) {
        if (!field(&q, end, &cas) || q != end)
            return false;
        if (!mk_dec_u64(cas.p, cas.n, UINT64_MAX, &r->cas))
            return false;
        r->has_cas = true;
    }
    r->key = key;
    r->type = MK_RESP_VALUE;
    return true;
}

/* A VALUE line in one pass; 0: incomplete line; -2: anything unusual (the caller
 * then uses mk_parse_response, which decides). Accepts exactly what
 * mk_parse_response accepts for plain "VALUE <key> <flags> <bytes>[ <cas>]\r\n". */
ssize_t mk__parse_value_fast(const char *buf, size_t len, mk_response *r)
{
    if (len < 6 || memcmp(buf, "VALUE ", 6) != 0)
        return -2;
    const char *p = buf + 6, *end = buf + len, *k = p, *d;
    while (p < end && *p != ' ' && *p != '\r' && *p != '\n')
        p++;
    if (p == end)
        return 0;
    size_t nk = (size_t)(p - k);
    if (nk == 0 || nk > MK_KEY_MAX || *p != ' ')
        return -2;
    uint64_t num[3] = {0, 0, 0};
    int nf = 0;
    while (nf < 3) {
        d = ++p;
        uint64_t v = 0;
        while (p < end && (unsigned)(*p - '0') < 10)
            v = v * 10 + (uint64_t)(*p++ - '0');
        if (p == end)
            return 0;
        if (p == d || p - d > 19)
            return -2;
        num[nf++] = v;
        if (*p != ' ')
            break;
    }
    if (nf < 2 || num[0] > UINT32_MAX || *p != '\r')
        return -2;
    if (++p == end)
        return 0;
    if (*p != '\n')
        return -2;
    memset(r, 0, sizeof *r);
    r->type = MK_RESP_VALUE;
    r->key.p = k;
    r->key.n = nk;
    r->flags = (uint32_t)num[0];
    r->vlen = num[1];
    if (nf == 3) {
        r->cas = num[2];
        r->has_cas = true;
    }
    return (ssize_t)(p + 1 - buf);
}

ssize_t mk_parse_response(const char *buf, size_t len, mk_response *resp)
{
    if (len > 0 && buf[0] == 'V') {
        /* the common reply of a get: "VALUE <key> <flags> <bytes>[ <cas>]\r\n", in one pass */
        ssize_t f = mk__parse_value_fast(buf, len, resp);
        if (f != -2)
            return f;
    }
    return mk__parse_response_full(buf, len, resp);
}

ssize_t mk__parse_response_full(const char *buf, size_t len, mk_response *resp)
{
    memset(resp, 0, sizeof *resp);
    const char *nl = memchr(buf, '\n', len);
    if (nl == NULL)
        return 0;
    size_t nlpos = (size_t)(nl - buf);
    if (nlpos == 0 || buf[nlpos - 1] != '\r')
        return -1; /* memcached always ends reply lines with "\r\n" */
    const char *p = buf;
    size_t n = nlpos - 1;
    ssize_t used = (ssize_t)(nlpos + 1);
    mk_str text;

    if (n >= 6 && memcmp(p, "VALUE ", 6) == 0)
        return parse_value(p + 6, n - 6, resp) ? used : -1;

    static const struct {
        const char *lit;
        mk_resp_type type;
    } simple[] = {
        {"END", MK_RESP_END},         {"STORED", MK_RESP_STORED},   {"NOT_STORED", MK_RESP_NOT_STORED},
        {"EXISTS", MK_RESP_EXISTS},   {"NOT_FOUND", MK_RESP_NOT_FOUND}, {"DELETED", MK_RESP_DELETED},
        {"TOUCHED", MK_RESP_TOUCHED}, {"OK", MK_RESP_OK},           {"ERROR", MK_RESP_ERROR},
    };
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        if (line_is(p, n, simple[i].lit)) {
            resp->type = simple[i].type;
            return used;
        }
    }
    if (n > 0 && p[0] >= '0' && p[0] <= '9') {
        if (!mk_dec_u64(p, n, UINT64_MAX, &resp->number))
            return -1;
        resp->type = MK_RESP_NUMBER;
        return used;
    }
    if (line_prefix(p, n, "VERSION", &text)) {
        resp->type = MK_RESP_VERSION;
        resp->text = text;
        return used;
    }
    bool stat = line_prefix(p, n, "STAT", &text);
    if (stat || line_prefix(p, n, "PREFIX", &text)) {
        const char *sp = memchr(text.p, ' ', text.n);
        if (sp == NULL || sp == text.p)
            return -1;
        resp->type = stat ? MK_RESP_STAT : MK_RESP_PREFIX;
        resp->key.p = text.p;
        resp->key.n = (size_t)(sp - text.p);
        resp->text.p = sp + 1;
        resp->text.n = text.n - resp->key.n - 1;
        return used;
    }
    if (line_prefix(p, n, "CLIENT_ERROR", &text)) {
        resp->type = MK_RESP_CLIENT_ERROR;
        resp->text = text;
        return used;
    }
    if (line_prefix(p, n, "SERVER_ERROR", &text)) {
        resp->type = MK_RESP_SERVER_ERROR;
        resp->text = text;
        return used;
    }
    /* "ERROR: shutdown not enabled" and similar: an ERROR with a message */
    if (n > 5 && memcmp(p, "ERROR", 5) == 0 && (p[5] == ':' || p[5] == ' ')) {
        size_t i = 5;
        if (p[i] == ':')
            i++;
        while (i < n && p[i] == ' ')
            i++;
        resp->type = MK_RESP_ERROR;
        resp->text.p = p + i;
        resp->text.n = n - i;
        return used;
    }
    return -1;
}
