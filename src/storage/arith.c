/* storage/arith.c — incr/decr with memcached 1.6's do_add_delta semantics (parsing, wrap/floor, in-place padding). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/internal.h"

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/*
 * memcached's safe_strtoull over a value that is not NUL-terminated, with
 * strtoull's rules: leading whitespace, an optional sign, at least one digit,
 * overflow is an error; the number must be followed by whitespace, a NUL or the
 * end of the value (memcached sees the "\r\n" there). A '-' is accepted by
 * strtoull (it negates), so memcached rejects only results that look negative
 * as signed: "-1" fails, "-0" is 0.
 */
static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
    size_t i = 0;
    while (i < n && is_space(p[i]))
        i++;
    bool neg = false;
    if (i < n && (p[i] == '+' || p[i] == '-'))
        neg = p[i++] == '-';
    size_t digits = i;
    uint64_t v = 0;
    bool overflow = false;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    if (i == digits || overflow)
        return false;
    if (neg)
        v = (uint64_t)0 - v;
    if (i < n && !is_space(p[i]) && p[i] != '\0')
        return false;
    if ((int64_t)v < 0 && memchr(p, '-', i) != NULL)
        return false;
    *out = v;
    return true;
}

/* parse_u64 over an item's value, which may be in pieces (a large item). */
static bool parse_item(const mk_item *it, size_t n, uint64_t *out)
{
    char *p;
    if (mk_item_piece(it, 0, &p) == n)
        return parse_u64(p, n, out);
    char *copy = malloc(n);
    if (!copy)
        return false;
    mk_item_read(it, 0, copy, n);
    bool ok = parse_u64(copy, n, out);
    free(copy);
    return ok;
}

/*
 * The new number always goes into a new item (readers may be writing the old
 * one's bytes to a socket): padded with spaces to the old length when it is no
 * longer (memcached's visible in-place behaviour), else of exact length. It
 * keeps the flags and expiry and gets a new cas unique.
 */
mk_cache_rc mk_cache_arith(mk_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta,
                           int64_t now, uint64_t *result, uint64_t *cas_out)
{
    return mk_cache_arith_ex(c, key, nkey, incr, delta, 0, false, 0, NULL, now, result, cas_out, NULL);
}

mk_cache_rc mk_cache_arith_ex(mk_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta, uint64_t cas_in,
                              bool set_exp, int64_t exp_at_new, const uint64_t *ecas, int64_t now, uint64_t *result,
                              uint64_t *cas_out, int64_t *exp_out)
{
    mk_flush_tick(c, now);
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    for (;;) {
        mk_cache_rc why;
        size_t pos;
        uint64_t value;

        pthread_mutex_lock(&s->lock);
        mk_sketch_add_locked(s, hv); /* a read of the number: a counter in use skips probation when rewritten */
        mk_item *it = mk_find_valid_locked(c, s, hv, key, nkey, now, &why, &pos);
        size_t n = it ? mk_item_nbytes(it) : 0;
        if (it && n > 0 && cas_in != 0 && mk_item_cas(it) != cas_in) { /* memcached: empty, then cas, then number */
            pthread_mutex_unlock(&s->lock);
            return MK_C_EXISTS;
        }
        if (!it || n == 0 || !parse_item(it, n, &value)) {
            pthread_mutex_unlock(&s->lock);
            return it ? MK_C_NON_NUMERIC : MK_C_MISS;
        }
        if (incr)
            value += delta; /* wraps at 2^64 */
        else
            value = delta > value ? 0 : value - delta;
        char buf[24];
        size_t len = (size_t)snprintf(buf, sizeof buf, "%llu", (unsigned long long)value);
        size_t newlen = len <= n ? n : len;
        uint32_t flags = mk_item_flags(it);
        int64_t exp_old = mk_item_exp_at(it);
        int64_t exp_at = set_exp ? exp_at_new : exp_old;
        mk_item_ref(c, it);
        pthread_mutex_unlock(&s->lock);

        mk_item *fresh;
        mk_cache_rc rc = mk_alloc_x(c, key, nkey, hv, flags, exp_at, newlen, ecas ? MK_XCAS_EXPLICIT : MK_XCAS_NONE,
                                    ecas ? *ecas : 0, now, &fresh);
        if (rc != MK_C_OK) {
            mk_item_put(c, it);
            return rc;
        }
        char *d = mk_item_data(fresh);
        memcpy(d, buf, len);
        memset(d + len, ' ', newlen - len);

        pthread_mutex_lock(&s->lock);
        mk_item *cur = mk_find_valid_locked(c, s, hv, key, nkey, now, &why, &pos);
        bool same = cur == it;
        if (same) {
            /* memcached rewrites a number that still fits in place: the item stays fetched (a new number is
             * a new value, so it is no longer stale: memcached's own answer here depends on timing) */
            if (len <= n)
                fresh->state |= it->state & (MK_S_FETCHED | MK_S_BINKEY);
            if (mk_unlinkable(c, fresh) || !mk_replace_locked(c, s, hv, pos, it, fresh))
                mk_unlink_locked(c, s, pos, it); /* stored and at once evicted/flushed */
            if (cas_out)
                *cas_out = mk_item_cas(fresh);
        }
        pthread_mutex_unlock(&s->lock);
        mk_item_put(c, fresh);
        mk_item_put(c, it);
        if (same) {
            if (result)
                *result = value;
            if (exp_out)
                *exp_out = exp_old;
            return MK_C_OK;
        }
        /* The item changed while we allocated: recompute from the current one. */
    }
}
