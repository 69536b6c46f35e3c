/* server/authfile.c — memcached's -Y authentication file: parse "user:password" lines into digests; check a pair against all of them. */
#include "server/authfile.h"

#include <errno.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES 4096 /* a longer line is refused as malformed */

struct mk_authfile {
    uint8_t (*digest)[SHA256_DIGEST_SIZE];
    size_t n;
};

/* SHA-256 of (user length, 8 bytes big-endian) user pass: two pairs collide only if they are equal. */
static void pair_digest(const char *user, size_t nuser, const char *pass, size_t npass, uint8_t out[SHA256_DIGEST_SIZE])
{
    struct sha256_ctx h;
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)nuser >> (56 - 8 * i));
    sha256_init(&h);
    sha256_update(&h, sizeof len, len);
    sha256_update(&h, nuser, (const uint8_t *)user);
    sha256_update(&h, npass, (const uint8_t *)pass);
    sha256_digest(&h, SHA256_DIGEST_SIZE, out);
}

mk_authfile *mk_authfile_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open the authentication file %s: %s", path, strerror(errno));
        return NULL;
    }
    mk_authfile *a = calloc(1, sizeof(*a));
    size_t cap = 0;
    char *line = malloc(LINE_MAX_BYTES + 2);
    unsigned lineno = 0;
    if (!a || !line)
        goto oom;
    while (fgets(line, LINE_MAX_BYTES + 2, f)) {
        lineno++;
        size_t n = strlen(line);
        bool eol = n > 0 && line[n - 1] == '\n';
        if (!eol && !feof(f)) {
            snprintf(err, errlen, "authentication file %s, line %u: longer than %d bytes", path, lineno,
                     LINE_MAX_BYTES);
            goto fail;
        }
        if (eol)
            line[--n] = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0)
            continue;
        const char *colon = memchr(line, ':', n);
        if (!colon || colon == line || memchr(line, '\0', n)) {
            snprintf(err, errlen, "authentication file %s, line %u: not \"user:password\"", path, lineno);
            goto fail;
        }
        if (a->n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            void *d = realloc(a->digest, ncap * sizeof(*a->digest));
            if (!d)
                goto oom;
            a->digest = d;
            cap = ncap;
        }
        size_t nuser = (size_t)(colon - line);
        pair_digest(line, nuser, colon + 1, n - nuser - 1, a->digest[a->n++]);
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read the authentication file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (a->n == 0) {
        snprintf(err, errlen, "authentication file %s has no \"user:password\" line", path);
        goto fail;
    }
    explicit_bzero(line, LINE_MAX_BYTES + 2);
    free(line);
    fclose(f);
    return a;
oom:
    snprintf(err, errlen, "out of memory reading the authentication file %s", path);
fail:
    if (line)
        explicit_bzero(line, LINE_MAX_BYTES + 2);
    free(line);
    mk_authfile_free(a);
    fclose(f);
    return NULL;
}

void mk_authfile_free(mk_authfile *a)
{
    if (!a)
        return;
    free(a->digest);
    free(a);
}

size_t mk_authfile_users(const mk_authfile *a)
{
    return a->n;
}

bool mk_authfile_check(const mk_authfile *a, const char *user, size_t nuser, const char *pass, size_t npass)
{
    uint8_t d[SHA256_DIGEST_SIZE];
    pair_digest(user, nuser, pass, npass, d);
    int ok = 0;
    for (size_t i = 0; i < a->n; i++)
        ok |= memeql_sec(d, a->digest[i], SHA256_DIGEST_SIZE);
    return ok != 0;
}
