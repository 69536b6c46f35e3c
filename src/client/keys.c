/* client/keys.c — key validation for the text protocol: length 1..250, no space or control bytes. */
#include "client/dist.h"

_Static_assert(MK_KEY_MAX == 250, "memcached's key limit is 250 bytes");

mk_key_status mk_key_check(const char *key, size_t nkey, size_t *bad_offset)
{
    if (nkey == 0)
        return MK_KEY_EEMPTY;
    if (key == NULL)
        return MK_KEY_EINVAL;
    if (nkey > MK_KEY_MAX)
        return MK_KEY_ETOO_LONG;
    const unsigned char *p = (const unsigned char *)key;
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
