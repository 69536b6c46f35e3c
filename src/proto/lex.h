/* src/proto/lex.h — internals of src/proto (pure, no allocation): memcached's tokenizer and number rules, the VALUE fast path. */
#ifndef MK_PROTO_LEX_H
#define MK_PROTO_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "memkit/proto.h"

typedef struct mk_tok {
    const char *p; /* NULL in the terminator slot when the whole line was scanned */
    size_t n;
} mk_tok;

/*
 * Cut s[0..len) into tokens separated by ' ' as memcached's tokenize_command
 * does: at most MK_MAX_TOKENS-1 tokens, then a terminator slot (p NULL when the
 * whole line was scanned, else the unscanned rest). Returns the slots used,
 * terminator included. t must hold MK_MAX_TOKENS entries. (Inline, with
 * mk_tok_is: they run on every request line, and mk_tok_is's literals fold.)
 */
static inline size_t mk_tokenize(const char *s, size_t len, mk_tok *t)
{
    size_t nt = 0, i = 0;
    for (;;) {
        while (i < len && s[i] == ' ')
            i++;
        if (i == len)
            break;
        /* the end of the token: memchr rather than a byte loop (this runs over every key of every get) */
        const char *sp = memchr(s + i, ' ', len - i);
        size_t e = sp ? (size_t)(sp - s) : len;
        t[nt].p = s + i;
        t[nt].n = e - i;
        nt++;
        i = e;
        if (nt == MK_MAX_TOKENS - 1) {
            if (i < len)
                i++; /* the rest starts after the one space that ended this token */
            break;
        }
    }
    /* terminator: NULL when everything was scanned, else the first unscanned byte */
    t[nt].p = (i < len) ? s + i : NULL;
    t[nt].n = (i < len) ? len - i : 0;
    nt++;
    return nt;
}

/* The token is exactly lit. */
static inline bool mk_tok_is(const mk_tok *t, const char *lit)
{
    size_t n = strlen(lit);
    return t->p != NULL && t->n == n && memcmp(t->p, lit, n) == 0;
}

/* ---- numbers: the strto* + safe_strto* semantics of memcached on 64-bit Linux ---- */

/* memcached's safe_strtoull (64-bit), safe_strtoul truncated to 32 bits, safe_strtol truncated to int32_t. */
bool mk_num_u64(const mk_tok *t, uint64_t *out);
bool mk_num_u32(const mk_tok *t, uint32_t *out);
bool mk_num_i32(const mk_tok *t, int32_t *out);

/* A reply's strict unsigned decimal: 1..20 digits, no sign, no spaces, at most max. */
bool mk_dec_u64(const char *p, size_t n, uint64_t max, uint64_t *out);

/*
 * response.c: a plain "VALUE <key> <flags> <bytes>[ <cas>]\r\n" line in one pass: its length, 0 for an
 * incomplete line, -2 for anything else. mk_parse_response tries it first and otherwise uses the full
 * parser, mk__parse_response_full; where the fast one returns a length, the full one returns the same
 * length and fields (tests/fuzz/fuzz_client.c checks that).
 */
ssize_t mk__parse_value_fast(const char *buf, size_t len, mk_response *r);
ssize_t mk__parse_response_full(const char *buf, size_t len, mk_response *resp);

#endif
