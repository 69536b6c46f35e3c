/* tests/fuzz/fuzz_client.c — libFuzzer target for libmemkit's own parsers: server lists, the one-pass VALUE parser (against mk_parse_response), key checks, and distribution picks. */
#include "client/client.h"
#include "proto/lex.h"

#include <stdlib.h>
#include <string.h>

static void must(int cond)
{
    if (!cond)
        abort();
}

/* The server-list parser: whatever it accepts is a list the distributions can be built from. */
static void server_list(const char *text, const uint8_t *keys, size_t nkeys)
{
    mk_server_list sl;
    mk_servers_error err;
    mk_servers_status st = mk_servers_parse(text, &sl, &err);
    if (st != MK_SERVERS_OK) {
        must(sl.n == 0 && sl.servers == NULL);
        must(err.code == st && strlen(err.message) < sizeof err.message);
        return;
    }
    must(sl.n > 0);
    for (size_t i = 0; i < sl.n; i++) {
        const mk_server_spec *s = &sl.servers[i];
        must(s->host != NULL && s->host[0] != '\0');
        must(s->weight >= 1 && s->weight <= MK_WEIGHT_MAX);
        must(s->type == MK_SERVER_UNIX ? s->port == 0 : s->port >= 1);
    }
    if (sl.n <= 16) { /* every distribution over it; picks stay in range */
        for (int k = MK_DIST_KETAMA; k <= MK_DIST_RENDEZVOUS; k++) {
            mk_dist *d = mk_dist_create((mk_dist_kind)k, sl.servers, sl.n);
            if (d == NULL)
                continue;
            size_t pick = mk_dist_pick(d, (const char *)keys, nkeys);
            must(pick == MK_DIST_NONE || pick < sl.n);
            mk_dist_destroy(d);
        }
    }
    mk_servers_free(&sl);
}

/* The one-pass VALUE parser agrees with the protocol layer wherever it answers. */
static void value_lines(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mk_response fast, full;
        ssize_t f = mk__parse_value_fast(buf + off, len - off, &fast);
        ssize_t r = mk__parse_response_full(buf + off, len - off, &full);
        mk_response pub;
        must(mk_parse_response(buf + off, len - off, &pub) == (f == -2 ? r : f));
        must(f == -2 || f >= 0);
        if (f > 0) {
            must(r == f && full.type == MK_RESP_VALUE && fast.type == MK_RESP_VALUE);
            must(full.key.n == fast.key.n && full.key.p == fast.key.p);
            must(full.flags == fast.flags && full.vlen == fast.vlen);
            must(full.has_cas == fast.has_cas && (!fast.has_cas || full.cas == fast.cas));
        }
        if (f == 0)
            must(r <= 0); /* incomplete for both (or an error the full parser reports) */
        if (r <= 0)
            return;
        off += (size_t)r;
        if (full.type == MK_RESP_VALUE) { /* skip the data block */
            if (full.vlen > len - off || len - off - full.vlen < 2)
                return;
            off += full.vlen + 2;
        }
    }
}

/* The word-at-a-time key check against the rule, byte by byte. */
static void key_check(const char *k, size_t n)
{
    size_t off = 999;
    mk_key_status st = mk_key_check(k, n, &off);
    mk_key_status want = MK_KEY_OK;
    size_t at = 0;
    if (n == 0)
        want = MK_KEY_EEMPTY;
    else if (n > MK_KEY_MAX)
        want = MK_KEY_ETOO_LONG;
    else
        for (at = 0; at < n; at++) {
            unsigned char c = (unsigned char)k[at];
            if (c <= 0x20 || c == 0x7f) {
                want = c == ' ' ? MK_KEY_ESPACE : MK_KEY_ECONTROL;
                break;
            }
        }
    must(st == want);
    if (want == MK_KEY_ESPACE || want == MK_KEY_ECONTROL)
        must(off == at);
    must((mk_check_key(k, n) == 0) == (want == MK_KEY_OK));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0] % 3;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    if (mode == 0) {
        /* "list\0key": the list as text, the rest as a key to pick */
        char *text = malloc(n + 1);
        if (!text)
            return 0;
        memcpy(text, body, n);
        text[n] = '\0';
        size_t tl = strlen(text);
        server_list(text, (const uint8_t *)text + (tl < n ? tl + 1 : n), tl < n ? n - tl - 1 : 0);
        free(text);
    } else if (mode == 1) {
        char *copy = malloc(n ? n : 1); /* exact size: ASan sees any read past the end */
        if (!copy)
            return 0;
        memcpy(copy, body, n);
        value_lines(copy, n);
        free(copy);
    } else {
        key_check(body, n);
    }
    return 0;
}
