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

/* ------------------------------------------------ MD5 of many short keys at once */

/*
 * Ketama hashes every key of a multi-get with MD5 (libketama's placement), and
 * that was a fifth of a 100-key multi-get's client CPU. MD5 is 64 steps of
 * 32-bit adds, rotates and boolean ops on one 64-byte block for any key of up to
 * 55 bytes, so MD5_LANES keys are hashed side by side in vector registers
 * (GCC/Clang vector extensions: SSE2 on any x86-64, NEON on arm64), one key per
 * lane. Only the first digest word is computed (the one ketama uses). Keys
 * longer than 55 bytes take the scalar path. Tested against nettle for every
 * length in tests/unit/client/test_dist.c.
 */
#define MD5_LANES 8
typedef uint32_t md5v __attribute__((vector_size(4 * MD5_LANES)));

static const uint32_t md5_k[64] = {
    0xd76aa478u, 0xe8c7b756u, 0x242070dbu, 0xc1bdceeeu, 0xf57c0fafu, 0x4787c62au, 0xa8304613u, 0xfd469501u,
    0x698098d8u, 0x8b44f7afu, 0xffff5bb1u, 0x895cd7beu, 0x6b901122u, 0xfd987193u, 0xa679438eu, 0x49b40821u,
    0xf61e2562u, 0xc040b340u, 0x265e5a51u, 0xe9b6c7aau, 0xd62f105du, 0x02441453u, 0xd8a1e681u, 0xe7d3fbc8u,
    0x21e1cde6u, 0xc33707d6u, 0xf4d50d87u, 0x455a14edu, 0xa9e3e905u, 0xfcefa3f8u, 0x676f02d9u, 0x8d2a4c8au,
    0xfffa3942u, 0x8771f681u, 0x6d9d6122u, 0xfde5380cu, 0xa4beea44u, 0x4bdecfa9u, 0xf6bb4b60u, 0xbebfbc70u,
    0x289b7ec6u, 0xeaa127fau, 0xd4ef3085u, 0x04881d05u, 0xd9d4d039u, 0xe6db99e5u, 0x1fa27cf8u, 0xc4ac5665u,
    0xf4292244u, 0x432aff97u, 0xab9423a7u, 0xfc93a039u, 0x655b59c3u, 0x8f0ccc92u, 0xffeff47du, 0x85845dd1u,
    0x6fa87e4fu, 0xfe2ce6e0u, 0xa3014314u, 0x4e0811a1u, 0xf7537e82u, 0xbd3af235u, 0x2ad7d2bbu, 0xeb86d391u,
};

#define MD5_ROTL(x, r) (((x) << (r)) | ((x) >> (32 - (r))))
#define MD5_F(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define MD5_G(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define MD5_H(b, c, d) ((b) ^ (c) ^ (d))
#define MD5_I(b, c, d) ((c) ^ ((b) | ~(d)))
/* one step; the four state words rotate roles instead of being moved */
#define MD5_STEP(f, a, b, c, d, g, r, i)                   \
    do {                                                   \
        a += MD5_##f(b, c, d) + md5_k[i] + m[g];           \
        a = b + MD5_ROTL(a, r);                            \
    } while (0)

/* m[w][lane]: message word w of each lane's single padded block. Returns word 0 per lane. */
static void md5_lanes(const md5v m[16], uint32_t out[MD5_LANES])
{
    md5v a = {0}, b = {0}, c = {0}, d = {0};
    a += 0x67452301u;
    b += 0xefcdab89u;
    c += 0x98badcfeu;
    d += 0x10325476u;
    MD5_STEP(F, a, b, c, d, 0, 7, 0);
    MD5_STEP(F, d, a, b, c, 1, 12, 1);
    MD5_STEP(F, c, d, a, b, 2, 17, 2);
    MD5_STEP(F, b, c, d, a, 3, 22, 3);
    MD5_STEP(F, a, b, c, d, 4, 7, 4);
    MD5_STEP(F, d, a, b, c, 5, 12, 5);
    MD5_STEP(F, c, d, a, b, 6, 17, 6);
    MD5_STEP(F, b, c, d, a, 7, 22, 7);
    MD5_STEP(F, a, b, c, d, 8, 7, 8);
    MD5_STEP(F, d, a, b, c, 9, 12, 9);
    MD5_STEP(F, c, d, a, b, 10, 17, 10);
    MD5_STEP(F, b, c, d, a, 11, 22, 11);
    MD5_STEP(F, a, b, c, d, 12, 7, 12);
    MD5_STEP(F, d, a, b, c, 13, 12, 13);
    MD5_STEP(F, c, d, a, b, 14, 17, 14);
    MD5_STEP(F, b, c, d, a, 15, 22, 15);
    MD5_STEP(G, a, b, c, d, 1, 5, 16);
    MD5_STEP(G, d, a, b, c, 6, 9, 17);
    MD5_STEP(G, c, d, a, b, 11, 14, 18);
    MD5_STEP(G, b, c, d, a, 0, 20, 19);
    MD5_STEP(G, a, b, c, d, 5, 5, 20);
    MD5_STEP(G, d, a, b, c, 10, 9, 21);
    MD5_STEP(G, c, d, a, b, 15, 14, 22);
    MD5_STEP(G, b, c, d, a, 4, 20, 23);
    MD5_STEP(G, a, b, c, d, 9, 5, 24);
    MD5_STEP(G, d, a, b, c, 14, 9, 25);
    MD5_STEP(G, c, d, a, b, 3, 14, 26);
    MD5_STEP(G, b, c, d, a, 8, 20, 27);
    MD5_STEP(G, a, b, c, d, 13, 5, 28);
    MD5_STEP(G, d, a, b, c, 2, 9, 29);
    MD5_STEP(G, c, d, a, b, 7, 14, 30);
    MD5_STEP(G, b, c, d, a, 12, 20, 31);
    MD5_STEP(H, a, b, c, d, 5, 4, 32);
    MD5_STEP(H, d, a, b, c, 8, 11, 33);
    MD5_STEP(H, c, d, a, b, 11, 16, 34);
    MD5_STEP(H, b, c, d, a, 14, 23, 35);
    MD5_STEP(H, a, b, c, d, 1, 4, 36);
    MD5_STEP(H, d, a, b, c, 4, 11, 37);
    MD5_STEP(H, c, d, a, b, 7, 16, 38);
    MD5_STEP(H, b, c, d, a, 10, 23, 39);
    MD5_STEP(H, a, b, c, d, 13, 4, 40);
    MD5_STEP(H, d, a, b, c, 0, 11, 41);
    MD5_STEP(H, c, d, a, b, 3, 16, 42);
    MD5_STEP(H, b, c, d, a, 6, 23, 43);
    MD5_STEP(H, a, b, c, d, 9, 4, 44);
    MD5_STEP(H, d, a, b, c, 12, 11, 45);
    MD5_STEP(H, c, d, a, b, 15, 16, 46);
    MD5_STEP(H, b, c, d, a, 2, 23, 47);
    MD5_STEP(I, a, b, c, d, 0, 6, 48);
    MD5_STEP(I, d, a, b, c, 7, 10, 49);
    MD5_STEP(I, c, d, a, b, 14, 15, 50);
    MD5_STEP(I, b, c, d, a, 5, 21, 51);
    MD5_STEP(I, a, b, c, d, 12, 6, 52);
    MD5_STEP(I, d, a, b, c, 3, 10, 53);
    MD5_STEP(I, c, d, a, b, 10, 15, 54);
    MD5_STEP(I, b, c, d, a, 1, 21, 55);
    MD5_STEP(I, a, b, c, d, 8, 6, 56);
    MD5_STEP(I, d, a, b, c, 15, 10, 57);
    MD5_STEP(I, c, d, a, b, 6, 15, 58);
    MD5_STEP(I, b, c, d, a, 13, 21, 59);
    MD5_STEP(I, a, b, c, d, 4, 6, 60);
    MD5_STEP(I, d, a, b, c, 11, 10, 61);
    MD5_STEP(I, c, d, a, b, 2, 15, 62);
    MD5_STEP(I, b, c, d, a, 9, 21, 63);
    a += 0x67452301u;
    for (int l = 0; l < MD5_LANES; l++)
        out[l] = a[l];
}

void mk_hash_md5_le32_many(const char *const *keys, const size_t *nkeys, size_t n, uint32_t *out)
{
    size_t i = 0;
    while (i < n) {
        /* words[w][lane], filled with plain stores, then loaded as vectors */
        _Alignas(32) uint32_t words[16][MD5_LANES];
        memset(words, 0, sizeof words);
        size_t lane_key[MD5_LANES];
        int lanes = 0;
        while (lanes < MD5_LANES && i < n) {
            size_t len = nkeys[i];
            if (len > 55 || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__) {   /* two blocks: the scalar path */
                out[i] = mk_hash_md5_le32(keys[i], len, 0);
                i++;
                continue;
            }
            /* the padded block as little-endian words, read straight from the key
             * (no byte copy into a block: that stalls store-to-load forwarding) */
            const unsigned char *k = (const unsigned char *)keys[i];
            size_t full = len / 4, rem = len % 4;
            for (size_t w = 0; w < full; w++) {
                uint32_t v;
                memcpy(&v, k + 4 * w, 4);
                words[w][lanes] = v;
            }
            uint32_t t = 0x80u << (8 * rem);
            for (size_t j = 0; j < rem; j++)
                t |= (uint32_t)k[4 * full + j] << (8 * j);
            words[full][lanes] = t;
            words[14][lanes] = (uint32_t)(len * 8);
            lane_key[lanes++] = i++;
        }
        if (lanes == 0)
            continue;
        md5v m[16];
        memcpy(m, words, sizeof m);
        uint32_t res[MD5_LANES];
        md5_lanes(m, res);
        for (int l = 0; l < lanes; l++)
            out[lane_key[l]] = res[l];
    }
}
