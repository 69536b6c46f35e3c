/* src/proto/lex.h — internals of src/proto (pure, no allocation): memcached's tokenizer and number rules, the VALUE fast path. */
#ifndef MK_PROTO_LEX_H
#define MK_PROTO_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memkit/proto.h"

typedef struct mk_tok {
    const char *p; /* NULL in the terminator slot when the whole line was scanned */
    size_t n;
} mk_tok;

/*
 * Cut s[0..len) into tokens separated by ' ' as memcached's tokenize_command
 * does: at most MK_MAX_TOKENS-1 tokens, then a terminator slot (p NULL when the
 * whole line was scanned, else the unscanned rest). Returns the slots used,
 * terminator included. t must hold MK_MAX_TOKENS entries.
 */
size_t mk_tokenize(const char *s, size_t len, mk_tok *t);

/* The token is exactly lit. */
bool mk_tok_is(const mk_tok *t, const char *lit);

/* memcached's safe_strtoull (64-bit), safe_strtoul truncated to 32 bits, safe_strtol truncated to int32_t. */
bool mk_num_u64(const mk_tok *t, uint64_t *out);
bool mk_num_u32(const mk_tok *t, uint32_t *out);
bool mk_num_i32(const mk_tok *t, int32_t *out);

/*
 * response.c: a plain "VALUE <key> <flags> <bytes>[ <cas>]\r\n" line in one pass: its length, 0 for an
 * incomplete line, -2 for anything else. mk_parse_response tries it first and otherwise uses the full
 * parser, mk__parse_response_full; where the fast one returns a length, the full one returns the same
 * length and fields (tests/fuzz/fuzz_client.c checks that).
 */
ssize_t mk__parse_value_fast(const char *buf, size_t len, mk_response *r);
ssize_t mk__parse_response_full(const char *buf, size_t len, mk_response *resp);

#endif
