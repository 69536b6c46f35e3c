/* client/dist.h — libmemkit's private key-placement layer: server-list parsing, key validation, hashing, distribution. */
#ifndef MK_CLIENT_DIST_H
#define MK_CLIENT_DIST_H

/*
 * This header is the contract of four files:
 *
 *   servers.c  text like "10.0.0.1:11211:2, [::1]:11212 3, /tmp/mc.sock" -> mk_server_spec[]
 *   keys.c     is this key legal on the wire? (length 1..250, no space/control bytes)
 *   keyhash.c  the hash functions the real clients use (one-at-a-time, MD5, CRC, FNV-1a, murmur3)
 *   dist.c     mk_dist: a server list + a distribution mode -> "which server gets this key"
 *
 * Every distribution reproduces one real client library bit for bit; see
 * docs/distribution.md and the vectors in ../shared/vectors/distribution.json.
 *
 * Nothing here does I/O or DNS. Names are prefixed mk_ so they can move to the
 * public include/memkit.h unchanged.
 *
 * Threading: the hash functions and mk_key_check are pure. mk_servers_parse
 * touches only its arguments. An mk_dist is immutable after mk_dist_create(), so
 * one handle may be shared by any number of threads calling mk_dist_pick*() at
 * once, without locks; mk_dist_destroy() must not race with those calls.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ servers */

#define MK_DEFAULT_PORT 11211
#define MK_HOST_MAX 255         /* longest host name / address literal we accept */
#define MK_UNIX_PATH_MAX 107    /* sizeof(sockaddr_un.sun_path) - 1 on Linux */
#define MK_WEIGHT_MAX 65535     /* python-memcached repeats a server weight times */

typedef enum mk_server_type {
    MK_SERVER_TCP = 0,          /* host (name, IPv4 or IPv6 literal) + port */
    MK_SERVER_UNIX = 1          /* unix-domain socket: host is the path, port is 0 */
} mk_server_type;

/* One server. For TCP, host is exactly what the user wrote (an IPv6 literal
 * without its brackets): ketama hashes this string, so "localhost" and
 * "127.0.0.1" are different points even though they resolve alike. */
typedef struct mk_server_spec {
    const char *host;           /* NUL-terminated; never NULL or empty */
    uint16_t port;              /* 1..65535 for TCP; 0 for unix */
    uint32_t weight;            /* 1..MK_WEIGHT_MAX */
    mk_server_type type;
} mk_server_spec;

/* A parsed list. The host strings live in storage owned by the list. */
typedef struct mk_server_list {
    mk_server_spec *servers;
    size_t n;
    char *strings_;             /* private: backing store of the host strings */
} mk_server_list;

typedef enum mk_servers_status {
    MK_SERVERS_OK = 0,
    MK_SERVERS_EEMPTY_LIST,          /* the text holds no entry at all */
    MK_SERVERS_EEMPTY_HOST,          /* ":11211", "[]:1", "unix:", or an empty entry "a,,b" */
    MK_SERVERS_EBAD_PORT,            /* not 1..65535 digits: "h:0", "h:65536", "h:x", "h:" */
    MK_SERVERS_EBAD_WEIGHT,          /* not 1..MK_WEIGHT_MAX digits: "h:1:0", "h:1 -2", "h:1:x", twice */
    MK_SERVERS_EUNTERMINATED_BRACKET,/* "[::1" */
    MK_SERVERS_EBAD_ENTRY,           /* junk after ']', stray ']', too many ':', weight with no server */
    MK_SERVERS_ETOO_LONG,            /* host > MK_HOST_MAX or unix path > MK_UNIX_PATH_MAX bytes */
    MK_SERVERS_ENOMEM,
    MK_SERVERS_EINVAL                /* NULL text or out */
} mk_servers_status;

typedef struct mk_servers_error {
    mk_servers_status code;
    size_t offset;              /* byte offset in the text of the offending token */
    size_t entry;               /* 0-based index of the entry being parsed */
    char message[192];          /* human-readable, names the offending token */
} mk_servers_error;

/*
 * mk_servers_parse — parse a server list.
 *
 * Entries are separated by commas and/or whitespace. Each entry is one of
 *   host                 port 11211, weight 1
 *   host:port            weight 1
 *   host:port:weight
 *   [v6addr] [v6addr]:port [v6addr]:port:weight
 *   /path/to/sock        unix socket (also "unix:/path/to/sock")
 * and any entry may be followed by whitespace and a weight: "host:port 3".
 * A whitespace-separated token made only of digits, or starting with '-' or
 * '+', is read as the weight of the entry before it (an error if there is
 * none, a comma intervenes, or that entry already has one); any other token
 * is a new entry. Unbracketed IPv6 is an error (too many ':').
 *
 * On success returns MK_SERVERS_OK and fills *out (free with
 * mk_servers_free). On failure returns the code, leaves *out empty
 * ({NULL, 0, NULL}), and if err is non-NULL fills it. No DNS, no I/O.
 */
mk_servers_status mk_servers_parse(const char *text, mk_server_list *out, mk_servers_error *err);

/* mk_servers_free — release a list from mk_servers_parse; resets it to empty. NULL is fine. */
void mk_servers_free(mk_server_list *list);

/* mk_servers_strerror — a static string naming a status ("bad port", ...). */
const char *mk_servers_strerror(mk_servers_status code);

/* --------------------------------------------------------------------- keys */

#ifndef MK_KEY_MAX
#define MK_KEY_MAX 250          /* longest key memcached accepts (also in memkit/proto.h) */
#endif

typedef enum mk_key_status {
    MK_KEY_OK = 0,
    MK_KEY_EEMPTY,              /* length 0 */
    MK_KEY_ETOO_LONG,           /* length > MK_KEY_MAX */
    MK_KEY_ESPACE,              /* contains ' ' (0x20) */
    MK_KEY_ECONTROL,            /* contains a byte < 0x20 or 0x7f */
    MK_KEY_EINVAL               /* key == NULL with nkey > 0 */
} mk_key_status;

/*
 * mk_key_check — may this key go on the text protocol wire?
 * Length is checked first, then bytes left to right; bytes >= 0x80 are allowed
 * (UTF-8 keys are sent as-is). If bad_offset is non-NULL and a byte is at
 * fault, *bad_offset receives its offset (otherwise it is left alone).
 */
mk_key_status mk_key_check(const char *key, size_t nkey, size_t *bad_offset);

/* mk_key_strerror — a static string naming a status. */
const char *mk_key_strerror(mk_key_status code);

/* ------------------------------------------------------------------- hashes */
/* All take (pointer, length) byte strings; NULL is fine when the length is 0. */

/* libhashkit one-at-a-time (libmemcached's MEMCACHED_HASH_DEFAULT). Each byte
 * is read as a signed char and sign-extended, as libhashkit does on x86/arm64
 * Linux, so bytes >= 0x80 add 0xFFFFFFxx. */
uint32_t mk_hash_oaat(const void *data, size_t len);

/* MD5 through OpenSSL's EVP interface. Returns false only if OpenSSL cannot
 * provide MD5 (e.g. a FIPS-only configuration); out is then zeroed. */
bool mk_hash_md5(const void *data, size_t len, unsigned char out[16]);

/* Bytes [4*word .. 4*word+3] of the MD5 digest read little-endian (word 0..3):
 * libketama's point value; word 0 is libhashkit's MEMCACHED_HASH_MD5. Returns 0
 * when MD5 is unavailable (see mk_hash_md5). */
uint32_t mk_hash_md5_le32(const void *data, size_t len, unsigned word);

/* mk_hash_md5_le32_many — out[i] = mk_hash_md5_le32(keys[i], nkeys[i], 0) for
 * i < n, computed several keys at a time (vector lanes). */
void mk_hash_md5_le32_many(const char *const *keys, const size_t *nkeys, size_t n, uint32_t *out);

/* Standard CRC-32 (zlib crc32(), the value binascii.crc32 returns). */
uint32_t mk_hash_crc32(const void *data, size_t len);

/* libhashkit MEMCACHED_HASH_CRC: (crc32 >> 16) & 0x7fff, may be 0. */
uint32_t mk_hash_crc15(const void *data, size_t len);

/* python-memcached cmemcache_hash: mk_hash_crc15(), or 1 when that is 0. */
uint32_t mk_hash_cmemcache(const void *data, size_t len);

/* twemproxy hash_fnv1a_64: FNV-1a with the 64-bit constants truncated to 32
 * bits, bytes sign-extended like mk_hash_oaat. */
uint32_t mk_hash_fnv1a_64_tw(const void *data, size_t len);

/* MurmurHash3 x86_32 over bytes. */
uint32_t mk_hash_murmur3_32(const void *data, size_t len, uint32_t seed);

/* The same, fed in pieces: init, update any number of times, final. Equal to
 * mk_hash_murmur3_32 over the concatenation. The state is plain data. */
typedef struct mk_murmur3 {
    uint32_t h;                 /* running hash */
    uint32_t k;                 /* partial block, little-endian */
    size_t len;                 /* bytes fed so far */
} mk_murmur3;
void mk_murmur3_init(mk_murmur3 *m, uint32_t seed);
void mk_murmur3_byte(mk_murmur3 *m, unsigned char b);
void mk_murmur3_update(mk_murmur3 *m, const void *data, size_t len);
uint32_t mk_murmur3_final(const mk_murmur3 *m);

/* -------------------------------------------------------------- distribution */

typedef enum mk_dist_kind {
    /* Classic libketama = libmemcached KETAMA_WEIGHTED = twemproxy
     * distribution:ketama + hash:md5. 160 x weight-share points per server,
     * 4 per MD5("host-i" | "host:port-i"); key hash MD5. */
    MK_DIST_KETAMA = 0,
    /* libmemcached's ketama/consistent default (pylibmc "ketama": True or
     * distribution "consistent"): 100 points per server, one_at_a_time("host-i");
     * key hash one-at-a-time. If any weight > 1 libmemcached switches to the
     * MK_DIST_KETAMA continuum but keeps the one-at-a-time key hash; so do we. */
    MK_DIST_CONSISTENT,
    /* libmemcached ketama with hash=md5 (pylibmc ketama + hash "md5"): 100
     * points per server, md5_le32("host-i"); key hash MD5. With any weight > 1
     * it is exactly MK_DIST_KETAMA. */
    MK_DIST_CONSISTENT_MD5,
    /* python-memcached: buckets repeat server i weight_i times;
     * buckets[cmemcache_hash(key) % nbuckets]; rehash on dead servers. */
    MK_DIST_MODULA,
    /* libmemcached default (pylibmc with no behaviors): one_at_a_time(key) % n, weights ignored. */
    MK_DIST_MODULA_OAAT,
    /* libmemcached hash=crc: crc15(key) % n, weights ignored. */
    MK_DIST_MODULA_CRC,
    /* twemproxy (nutcracker) default: MK_DIST_KETAMA's continuum, key hashed
     * with mk_hash_fnv1a_64_tw. */
    MK_DIST_KETAMA_FNV1A,
    /* pymemcache HashClient default: rendezvous, highest murmur3_32 of
     * "node-key", node = "host:port" (the path for unix). Weights ignored. Key
     * characters are hashed as (unicode code point & 0xff), as pymemcache's
     * pure-Python murmur3 does on str keys; a key that is not valid UTF-8 is
     * hashed byte by byte. */
    MK_DIST_RENDEZVOUS,
    MK_DIST_KIND_COUNT_
} mk_dist_kind;

typedef struct mk_dist mk_dist;

#define MK_DIST_NONE ((size_t)-1)   /* "no server": all dead, or MD5 unavailable */

/* A continuum point: hash value and the server index that owns it. */
typedef struct mk_dist_point {
    uint32_t value;
    uint32_t server;
} mk_dist_point;

/*
 * mk_dist_create — build a distribution over servers[0..n-1] (indices are
 * positions in this array; order matters, as in every real client).
 * The server array and its strings are copied; the caller may free them.
 * Returns NULL with errno set: EINVAL (n == 0, n > UINT32_MAX, unknown kind,
 * NULL/empty/over-long host, weight 0 or > MK_WEIGHT_MAX), ENOMEM, or ENOSYS
 * (OpenSSL has no MD5 and the kind needs it). Cost: O(P log P) for P
 * continuum points (about 160 n), or O(total weight) for MK_DIST_MODULA.
 */
mk_dist *mk_dist_create(mk_dist_kind kind, const mk_server_spec *servers, size_t n);

/* mk_dist_destroy — free a handle. NULL is fine. */
void mk_dist_destroy(mk_dist *d);

/*
 * mk_dist_pick — index of the server that owns key[0..nkey-1], assuming all
 * servers are up. O(log P) for continuum kinds (binary search), O(1) for the
 * modula kinds, O(n) for rendezvous. The key is not validated (see
 * mk_key_check). Returns MK_DIST_NONE only when MD5 fails at run time.
 */
size_t mk_dist_pick(const mk_dist *d, const char *key, size_t nkey);

/* mk_dist_pick_many — out[i] = mk_dist_pick(d, keys[i], nkeys[i]) for i < n;
 * ketama's MD5s are computed several keys at a time. */
void mk_dist_pick_many(const mk_dist *d, const char *const *keys, const size_t *nkeys, size_t n, size_t *out);

/* Liveness callback: true if server `index` may be used now. */
typedef bool (*mk_dist_alive_fn)(void *ctx, size_t index);

/*
 * mk_dist_pick_alive — like mk_dist_pick, with failover decided by alive().
 *
 * MK_DIST_MODULA reproduces python-memcached's Client._get_server loop: up to
 * MK_DIST_PYMC_RETRIES tries; after a dead pick the hash becomes
 * cmemcache_hash(decimal(hash) + decimal(try)) -- e.g. "1234" + "0" --
 * and the next bucket is hash % nbuckets. Returns MK_DIST_NONE if all tries
 * land on dead servers (python-memcached returns None).
 *
 * Every other kind: returns mk_dist_pick() if that server is alive, else
 * MK_DIST_NONE. Their real clients fail over by rebuilding the continuum over
 * the live servers (libmemcached auto-eject, twemproxy auto_eject_hosts,
 * pymemcache remove_server): do that with a new mk_dist over the live list.
 *
 * alive() is called from the calling thread only, at most
 * MK_DIST_PYMC_RETRIES times. alive == NULL means "all alive".
 */
#define MK_DIST_PYMC_RETRIES 10
size_t mk_dist_pick_alive(const mk_dist *d, const char *key, size_t nkey,
                          mk_dist_alive_fn alive, void *ctx);

/* mk_dist_key_hash — the 32-bit key hash the kind feeds to its selector
 * (0 for MK_DIST_RENDEZVOUS, which hashes per server). */
uint32_t mk_dist_key_hash(const mk_dist *d, const char *key, size_t nkey);

size_t mk_dist_count(const mk_dist *d);          /* number of servers */
mk_dist_kind mk_dist_get_kind(const mk_dist *d);
const char *mk_dist_kind_name(mk_dist_kind kind); /* "ketama", "consistent", ...; NULL if unknown */

/* mk_dist_points — the sorted continuum (NULL and *npoints = 0 for the
 * modula and rendezvous kinds). Valid until mk_dist_destroy. */
const mk_dist_point *mk_dist_points(const mk_dist *d, size_t *npoints);

/* ----------------------------------------------------------- continuum core */

/* Which continuum mk_dist_continuum_build makes. */
typedef enum mk_continuum_kind {
    MK_CONTINUUM_WEIGHTED_MD5,  /* libketama: floor(w/W * 40 * n) * 4 points, 4 per MD5 */
    MK_CONTINUUM_POINTS100_OAAT,/* libmemcached unweighted: 100 x one_at_a_time("host-i") */
    MK_CONTINUUM_POINTS100_MD5  /* libmemcached unweighted with hash=md5: 100 x md5_le32("host-i") */
} mk_continuum_kind;

/*
 * mk_dist_continuum_build — allocate and fill the sorted continuum for servers.
 * Point names are "host-i" when port == 11211, else "host:port-i" (i from 0);
 * unix sockets have port 0, so "path:0-i", as libmemcached writes them.
 * Points sort by (value, server): equal values keep the lower server first, as
 * glibc's (stable) qsort leaves libmemcached's and twemproxy's insertion order.
 * Returns 0 and sets *out (free()) and *npoints; -1 with errno on failure.
 */
int mk_dist_continuum_build(mk_continuum_kind kind, const mk_server_spec *servers, size_t n,
                            mk_dist_point **out, size_t *npoints);

/*
 * mk_dist_continuum_find — the position of the first point with value >= h,
 * wrapping to 0 past the last point (libketama / libmemcached / twemproxy
 * lookup). Binary search: O(log npoints). npoints must be > 0.
 */
size_t mk_dist_continuum_find(const mk_dist_point *points, size_t npoints, uint32_t h);

/* mk_dist_point_for_hash — mk_dist_continuum_find over d's continuum, through its
 * lookup table (the top bits of h index the range of points to search). 0 for
 * kinds without a continuum. */
size_t mk_dist_point_for_hash(const mk_dist *d, uint32_t h);

#endif /* MK_CLIENT_DIST_H */
