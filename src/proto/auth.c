/* proto/auth.c — memcached's ASCII authentication token (-Y): the "set" line an unauthenticated connection may send, and its "user password" block. */
#include <stdio.h>
#include <string.h>

#include "memkit/proto.h"

/* The next space-separated token of s[*i..n); false at the end. (memcached splits on ' ' only.) */
static bool next_token(const char *s, size_t n, size_t *i, mk_str *tok)
{
    while (*i < n && s[*i] == ' ')
        (*i)++;
    if (*i >= n)
        return false;
    size_t start = *i;
    while (*i < n && s[*i] != ' ')
        (*i)++;
    *tok = (mk_str){s + start, *i - start};
    return true;
}

/* memcached's safe_strtoul on a token: digits, then nothing or white space (the line's "\r"). */
static bool token_number(mk_str t, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < t.n && t.p[i] >= '0' && t.p[i] <= '9') {
        unsigned d = (unsigned)(t.p[i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d; /* (saturates: any such size is refused) */
        i++;
    }
    if (i == 0)
        return false;
    for (; i < t.n; i++)
        if (!(t.p[i] == '\r' || t.p[i] == '\t' || t.p[i] == '\v' || t.p[i] == '\f'))
            return false;
    *out = v;
    return true;
}

ssize_t mk_parse_auth_line(const char *buf, size_t len, mk_auth_line *out)
{
    if (len < 2)
        return 0; /* (memcached: no auth line is this short) */
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return len > MK_LINE_MAX ? -1 : 0;
    size_t n = (size_t)(nl - buf);
    const char *nul = memchr(buf, '\0', n);
    if (nul)
        n = (size_t)(nul - buf); /* memcached reads the line as a C string */
    mk_str tok[5];
    size_t i = 0, ntok = 0;
    while (ntok < 5 && next_token(buf, n, &i, &tok[ntok]))
        ntok++;
    out->is_set = false;
    out->size = 0;
    if (ntok == 5 && tok[0].n == 3 && memcmp(tok[0].p, "set", 3) == 0 && token_number(tok[4], &out->size))
        out->is_set = true;
    return (ssize_t)(nl - buf) + 1;
}

bool mk_parse_auth_token(const char *data, size_t n, mk_str *user, mk_str *pass)
{
    const char *nul = memchr(data, '\0', n);
    if (nul)
        n = (size_t)(nul - data);
    size_t i = 0;
    return next_token(data, n, &i, user) && next_token(data, n, &i, pass);
}

/* A credential the token can carry: not empty, no separator the server would split or stop at. */
static bool sendable(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' || s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return false;
    return true;
}

size_t mk_compose_auth_token(char *out, size_t cap, const char *user, size_t nuser, const char *pass,
                             size_t npass)
{
    if (!sendable(user, nuser) || !sendable(pass, npass) || nuser + npass + 1 > MK_AUTH_TOKEN_MAX)
        return 0;
    int h = snprintf(out, cap, "set auth 0 0 %zu\r\n", nuser + 1 + npass);
    if (h < 0 || (size_t)h + nuser + 1 + npass + 2 > cap)
        return 0;
    char *p = out + h;
    memcpy(p, user, nuser);
    p += nuser;
    *p++ = ' ';
    memcpy(p, pass, npass);
    p += npass;
    *p++ = '\r';
    *p++ = '\n';
    return (size_t)(p - out);
}
