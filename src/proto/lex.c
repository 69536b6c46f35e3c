/* src/proto/lex.c — memcached's tokenizer and safe_strto* number rules, shared by the text and meta parsers. */
#include "proto/lex.h"

#include <string.h>

static bool c_isspace(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/*
 * Scan like strtoull(): leading white space, optional sign, decimal digits.
 * *mag gets the magnitude (saturated), *ovf whether it exceeded 2^64-1.
 * Returns false unless memcached's checks pass: at least one digit, and the
 * byte after the digits is the end of the token or white space.
 */
static bool scan_num(const mk_tok *t, bool *neg, uint64_t *mag, bool *ovf)
{
    size_t i = 0, d0;
    uint64_t v = 0;
    *neg = false;
    *ovf = false;
    if (t->p == NULL)
        return false;
    while (i < t->n && c_isspace((unsigned char)t->p[i]))
        i++;
    if (i < t->n && (t->p[i] == '+' || t->p[i] == '-')) {
        *neg = t->p[i] == '-';
        i++;
    }
    d0 = i;
    while (i < t->n && t->p[i] >= '0' && t->p[i] <= '9') {
        unsigned dig = (unsigned)(t->p[i] - '0');
        if (v > (UINT64_MAX - dig) / 10)
            *ovf = true;
        else
            v = v * 10 + dig;
        i++;
    }
    if (i == d0)
        return false; /* no conversion: endptr == str */
    if (i < t->n && !c_isspace((unsigned char)t->p[i]))
        return false;
    *mag = v;
    return true;
}

/* safe_strtoull / safe_strtoul (unsigned long is 64-bit): "-N" wraps, but is refused when the result looks negative. */
bool mk_num_u64(const mk_tok *t, uint64_t *out)
{
    bool neg, ovf;
    uint64_t m;
    if (!scan_num(t, &neg, &m, &ovf) || ovf)
        return false;
    uint64_t v = neg ? (uint64_t)0 - m : m;
    if (neg && v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

/* safe_strtoul into a uint32_t: the 64-bit result is truncated. */
bool mk_num_u32(const mk_tok *t, uint32_t *out)
{
    uint64_t v;
    if (!mk_num_u64(t, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* safe_strtol: strtol (64-bit long, ERANGE fails), then truncated to int32_t. */
bool mk_num_i32(const mk_tok *t, int32_t *out)
{
    bool neg, ovf;
    uint64_t m;
    if (!scan_num(t, &neg, &m, &ovf) || ovf)
        return false;
    if (!neg && m > (uint64_t)INT64_MAX)
        return false;
    if (neg && m > (uint64_t)INT64_MAX + 1)
        return false;
    uint64_t v = neg ? (uint64_t)0 - m : m;
    *out = (int32_t)(uint32_t)v;
    return true;
}

/* Strict unsigned decimal: 1..20 digits, no sign, no spaces, fits the bound. */
bool mk_dec_u64(const char *p, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
