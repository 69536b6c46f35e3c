/* client/keys.c — key validation for the text protocol: length 1..250, no space or control bytes. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "client/dist.h"

_Static_assert(MK_KEY_MAX == 250, "memcached's key limit is 250 bytes");

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether any byte is a space, a control byte (< 0x20) or DEL: eight bytes per step (a byte is flagged when
 * it is below 0x21 — bytes >= 0x80 never are — or when it equals 0x7f). Exact, no false positives. */
static bool any_bad_byte(const unsigned char *p, size_t n)
{
    uint64_t bad = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        uint64_t y = x ^ (0x7f * ONES);
        bad |= ((x - 0x21 * ONES) & ~x & HIGHS) | ((y - ONES) & ~y & HIGHS);
    }
    if (i < n && n >= 8) { /* the last 8 bytes again: overlapping is fine for "any" */
        uint64_t x;
        memcpy(&x, p + n - 8, 8);
        uint64_t y = x ^ (0x7f * ONES);
        bad |= ((x - 0x21 * ONES) & ~x & HIGHS) | ((y - ONES) & ~y & HIGHS);
    } else {
        for (; i < n; i++)
            bad |= p[i] <= 0x20 || p[i] == 0x7f;
    }
    return bad != 0;
}

mk_key_status mk_key_check(const char *key, size_t nkey, size_t *bad_offset)
{
    if (nkey == 0)
        return MK_KEY_EEMPTY;
    if (key == NULL)
        return MK_KEY_EINVAL;
    if (nkey > MK_KEY_MAX)
        return MK_KEY_ETOO_LONG;
    const unsigned char *p = (const unsigned char *)key;
    if (!any_bad_byte(p, nkey))   /* the common case: eight bytes per step */
        return MK_KEY_OK;
    for (size_t i = 0; i < nkey; i++) {
        unsigned char c = p[i];
        if (c > 0x20 && c != 0x7f)   /* the common case, bytes >= 0x80 included */
            continue;
        if (bad_offset)
            *bad_offset = i;
        return c == 0x20 ? MK_KEY_ESPACE : MK_KEY_ECONTROL;
    }
    return MK_KEY_OK;
}

const char *mk_key_strerror(mk_key_status code)
{
    switch (code) {
    case MK_KEY_OK:
        return "ok";
    case MK_KEY_EEMPTY:
        return "empty key";
    case MK_KEY_ETOO_LONG:
        return "key longer than 250 bytes";
    case MK_KEY_ESPACE:
        return "key contains a space";
    case MK_KEY_ECONTROL:
        return "key contains a control character";
    case MK_KEY_EINVAL:
        return "NULL key";
    }
    return "unknown key status";
}
