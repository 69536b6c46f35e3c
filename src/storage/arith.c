/* storage/arith.c — incr/decr with memcached 1.6's do_add_delta semantics (parsing, wrap/floor, in-place padding). */
#include <stdio.h>
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

mk_cache_rc mk_cache_arith(mk_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta,
                           int64_t now, uint64_t *result, uint64_t *cas_out)
{
    uint64_t hv = mk_hash64(key, nkey, c->seed);
    mk_shard *s = mk_shard_of(c, hv);
    for (;;) {
        mk_cache_rc why;
        mk_item *dead;
        uint64_t value;

        pthread_mutex_lock(&s->lock);
        mk_item *it = mk_find_valid_locked(c, s, hv, key, nkey, now, &why, &dead);
        if (!it || it->nbytes == 0 || !parse_u64(mk_item_val(it), it->nbytes, &value)) {
            pthread_mutex_unlock(&s->lock);
            mk_item_put(c, dead);
            return it ? MK_C_NON_NUMERIC : MK_C_MISS;
        }
        if (incr)
            value += delta; /* wraps at 2^64 */
        else
            value = delta > value ? 0 : value - delta;
        char buf[24];
        size_t len = (size_t)snprintf(buf, sizeof buf, "%llu", (unsigned long long)value);

        /*
         * In place when it fits and only the table holds the item (nobody can be
         * reading its bytes; new readers need this lock): memcached's refcount == 2.
         */
        if (len <= it->nbytes && atomic_load_explicit(&it->refcount, memory_order_acquire) == 1) {
            char *d = mk_item_val(it);
            memcpy(d, buf, len);
            memset(d + len, ' ', it->nbytes - len);
            it->seq = atomic_fetch_add_explicit(&c->seq, 1, memory_order_relaxed) + 1;
            mk_lru_bump_locked(s, it, now);
            if (cas_out)
                *cas_out = mk_item_cas(it);
            pthread_mutex_unlock(&s->lock);
            if (result)
                *result = value;
            return MK_C_OK;
        }

        /* Otherwise a new item of exact length, keeping flags and expiry; allocate unlocked. */
        atomic_fetch_add_explicit(&it->refcount, 1, memory_order_relaxed);
        pthread_mutex_unlock(&s->lock);
        mk_item *fresh;
        mk_cache_rc rc = mk_alloc_hv(c, key, nkey, hv, it->flags, mk_item_exp_at(it), len, now, &fresh);
        if (rc != MK_C_OK) {
            mk_item_put(c, it);
            return rc;
        }
        memcpy(mk_item_val(fresh), buf, len);

        pthread_mutex_lock(&s->lock);
        mk_item *cur = mk_find_valid_locked(c, s, hv, key, nkey, now, &why, &dead);
        bool same = cur == it;
        if (same) {
            mk_unlink_locked(s, it);
            mk_link_locked(c, s, fresh, now);
            if (cas_out)
                *cas_out = mk_item_cas(fresh);
        }
        pthread_mutex_unlock(&s->lock);
        mk_item_put(c, dead);
        mk_item_put(c, fresh);
        if (same)
            mk_item_put(c, it); /* the table's reference */
        mk_item_put(c, it);     /* ours */
        if (same) {
            if (result)
                *result = value;
            return MK_C_OK;
        }
        /* The item changed while we allocated: recompute from the current one. */
    }
}
