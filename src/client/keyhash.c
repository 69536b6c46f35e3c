/* client/keyhash.c — the key/point hash functions of the real memcached clients (one-at-a-time, MD5, CRC, FNV-1a, murmur3). */
#include "client/dist.h"

#include <limits.h>
#include <string.h>

#include <nettle/md5.h>
#include <zlib.h>

/*
 * libhashkit reads key bytes through `const char *`, and `char` is signed on the
 * platforms the vectors come from, so a byte >= 0x80 enters the sum as
 * 0xFFFFFF80..0xFFFFFFFF. We do that explicitly, whatever our own char is.
 */
static inline uint32_t sext8(unsigned char c)
{
    return c >= 0x80 ? (uint32_t)c | 0xFFFFFF00u : (uint32_t)c;
}

uint32_t mk_hash_oaat(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        v += sext8(p[i]);
        v += v << 10;
        v ^= v >> 6;
    }
    v += v << 3;
    v ^= v >> 11;
    v += v << 15;
    return v;
}

/*
 * MD5 comes from nettle (Debian's nettle-dev): it runs once per key on every call
 * (ketama picks), so it must not allocate or lock. OpenSSL 3's
 * EVP_Digest(..., EVP_md5(), ...) does both (an implicit provider fetch under a
 * global rwlock, two allocations and atomic refcounts per call: a fifth of a
 * 100-key multi-get's CPU, and a lock shared by every thread). nettle's md5 is a
 * plain context on the stack with an assembly core. The distribution vectors
 * (tests/unit/client) pin the result down.
 */
bool mk_hash_md5(const void *data, size_t len, unsigned char out[16])
{
    struct md5_ctx ctx;
    md5_init(&ctx);
    md5_update(&ctx, len, data);
    md5_digest(&ctx, MD5_DIGEST_SIZE, out);
    return true;
}

uint32_t mk_hash_md5_le32(const void *data, size_t len, unsigned word)
{
    unsigned char d[16];
    if (word > 3 || !mk_hash_md5(data, len, d))
        return 0;
    const unsigned char *b = d + 4 * word;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

uint32_t mk_hash_crc32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uLong crc = crc32(0L, Z_NULL, 0);
    while (len > 0) {   /* zlib takes uInt lengths */
        uInt chunk = len > UINT_MAX ? UINT_MAX : (uInt)len;
        crc = crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return (uint32_t)crc;
}

uint32_t mk_hash_crc15(const void *data, size_t len)
{
    return (mk_hash_crc32(data, len) >> 16) & 0x7fffu;
}

uint32_t mk_hash_cmemcache(const void *data, size_t len)
{
    uint32_t h = mk_hash_crc15(data, len);
    return h ? h : 1;
}

uint32_t mk_hash_fnv1a_64_tw(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = (uint32_t)0xCBF29CE484222325ull;        /* FNV-64 offset basis, truncated */
    const uint32_t prime = (uint32_t)0x100000001B3ull;   /* FNV-64 prime, truncated */
    for (size_t i = 0; i < len; i++) {
        h ^= sext8(p[i]);
        h *= prime;
    }
    return h;
}

static inline uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint32_t murmur3_mix_k(uint32_t k)
{
    k *= 0xcc9e2d51u;
    k = rotl32(k, 15);
    k *= 0x1b873593u;
    return k;
}

void mk_murmur3_init(mk_murmur3 *m, uint32_t seed)
{
    m->h = seed;
    m->k = 0;
    m->len = 0;
}

void mk_murmur3_byte(mk_murmur3 *m, unsigned char b)
{
    unsigned fill = (unsigned)(m->len & 3);
    m->k |= (uint32_t)b << (8 * fill);
    m->len++;
    if (fill == 3) {            /* a whole little-endian block */
        m->h ^= murmur3_mix_k(m->k);
        m->h = rotl32(m->h, 13);
        m->h = m->h * 5 + 0xe6546b64u;
        m->k = 0;
    }
}

void mk_murmur3_update(mk_murmur3 *m, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        mk_murmur3_byte(m, p[i]);
}

uint32_t mk_murmur3_final(const mk_murmur3 *m)
{
    uint32_t h = m->h;
    if (m->len & 3)             /* the tail: 1..3 bytes already packed into k */
        h ^= murmur3_mix_k(m->k);
    h ^= (uint32_t)m->len;      /* murmur3 mixes the length mod 2^32 */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t mk_hash_murmur3_32(const void *data, size_t len, uint32_t seed)
{
    mk_murmur3 m;
    mk_murmur3_init(&m, seed);
    mk_murmur3_update(&m, data, len);
    return mk_murmur3_final(&m);
}

/* ------------------------------------------------ MD5 of many keys */

/*
 * Ketama hashes every key of a multi-get with MD5. A vectorised multi-lane MD5
 * was measured (MD5 went from ~20% to ~8% of a 100-key multi-get's client CPU)
 * and not kept: it is a hand-written digest, and no Debian library provides a
 * multi-buffer MD5 for plain data, so each key goes through nettle.
 */
void mk_hash_md5_le32_many(const char *const *keys, const size_t *nkeys, size_t n, uint32_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = mk_hash_md5_le32(keys[i], nkeys[i], 0);
}
