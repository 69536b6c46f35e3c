/* memkit/binary.h — memcached's binary protocol: frame headers parsed and composed, requests checked as memcached 1.6.18 checks them (no I/O, no allocation). */
#ifndef MEMKIT_BINARY_H
#define MEMKIT_BINARY_H

/*
 * A frame is a 24-byte header, then `extlen` bytes of extras, `keylen` bytes
 * of key and the value: bodylen = extlen + keylen + value length. Numbers are
 * big-endian. Requests start with magic 0x80, responses with 0x81 and carry a
 * status where a request has its vbucket. Everything here reads and writes
 * caller buffers only; the lengths a peer sends are never trusted (memcached's
 * CVE-2016-8704/8705/8706 and the 1.6.0-1.6.1 extlen overflow were all
 * arithmetic on them): see mk_bin_check_req.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memkit/proto.h"

#define MK_BIN_HDR 24
#define MK_BIN_MAGIC_REQ 0x80
#define MK_BIN_MAGIC_RES 0x81
#define MK_BIN_EXT_MAX 20 /* the longest extras any opcode has (incr/decr) */

typedef enum mk_bin_op {
    MK_BIN_GET = 0x00, MK_BIN_SET = 0x01, MK_BIN_ADD = 0x02, MK_BIN_REPLACE = 0x03, MK_BIN_DELETE = 0x04,
    MK_BIN_INCREMENT = 0x05, MK_BIN_DECREMENT = 0x06, MK_BIN_QUIT = 0x07, MK_BIN_FLUSH = 0x08, MK_BIN_GETQ = 0x09,
    MK_BIN_NOOP = 0x0a, MK_BIN_VERSION = 0x0b, MK_BIN_GETK = 0x0c, MK_BIN_GETKQ = 0x0d, MK_BIN_APPEND = 0x0e,
    MK_BIN_PREPEND = 0x0f, MK_BIN_STAT = 0x10, MK_BIN_SETQ = 0x11, MK_BIN_ADDQ = 0x12, MK_BIN_REPLACEQ = 0x13,
    MK_BIN_DELETEQ = 0x14, MK_BIN_INCREMENTQ = 0x15, MK_BIN_DECREMENTQ = 0x16, MK_BIN_QUITQ = 0x17,
    MK_BIN_FLUSHQ = 0x18, MK_BIN_APPENDQ = 0x19, MK_BIN_PREPENDQ = 0x1a, MK_BIN_VERBOSITY = 0x1b,
    MK_BIN_TOUCH = 0x1c, MK_BIN_GAT = 0x1d, MK_BIN_GATQ = 0x1e, MK_BIN_SASL_LIST_MECHS = 0x20,
    MK_BIN_SASL_AUTH = 0x21, MK_BIN_SASL_STEP = 0x22, MK_BIN_GATK = 0x23, MK_BIN_GATKQ = 0x24,
} mk_bin_op;

typedef enum mk_bin_status {
    MK_BIN_OK = 0x0000,
    MK_BIN_KEY_ENOENT = 0x0001,
    MK_BIN_KEY_EEXISTS = 0x0002,
    MK_BIN_E2BIG = 0x0003,
    MK_BIN_EINVAL = 0x0004,
    MK_BIN_NOT_STORED = 0x0005,
    MK_BIN_DELTA_BADVAL = 0x0006,
    MK_BIN_AUTH_ERROR = 0x0020,
    MK_BIN_AUTH_CONTINUE = 0x0021,
    MK_BIN_UNKNOWN_COMMAND = 0x0081,
    MK_BIN_ENOMEM = 0x0082,
} mk_bin_status;

/* A frame's header, in host order, with views of its extras and key. */
typedef struct mk_bin_frame {
    uint8_t magic, opcode, extlen, datatype;
    uint16_t keylen;
    uint16_t vbucket_or_status; /* requests: vbucket (ignored); responses: status */
    uint32_t bodylen, opaque;   /* opaque: copied back as sent (not byte-swapped) */
    uint64_t cas;
    const uint8_t *ext;         /* extlen bytes (in the caller's buffer) */
    mk_str key;                 /* keylen bytes (in the caller's buffer) */
} mk_bin_frame;

/*
 * Parse a request's header, extras and key at buf[0..len): returns the bytes
 * they take (24 + extlen + keylen; the value, bodylen - extlen - keylen bytes
 * when the lengths are consistent, follows), 0 when they have not all arrived,
 * -1 when the 24 header bytes do not start with the request magic (memcached
 * closes the connection). Like memcached it judges the magic only once a whole
 * header is there, and waits for extlen + keylen bytes before checking them
 * against bodylen.
 */
ssize_t mk_bin_parse_req(const void *buf, size_t len, mk_bin_frame *f);

/* What memcached 1.6.18 does with a request header before executing it. */
typedef enum mk_bin_verdict {
    MK_BINV_OK,           /* execute it */
    MK_BINV_BAD_LENGTHS,  /* keylen or keylen + extlen > bodylen: UNKNOWN_COMMAND, then close */
    MK_BINV_KEY_TOO_LONG, /* keylen > 250: EINVAL, then close */
    MK_BINV_BAD_FORMAT,   /* extras/key/body lengths wrong for the opcode: EINVAL, then close */
    MK_BINV_UNKNOWN,      /* an opcode memcached does not serve: UNKNOWN_COMMAND, discard bodylen bytes */
} mk_bin_verdict;

/*
 * Check f's lengths in memcached's order (bodylen first, then the key, then the
 * opcode's own rule) and classify it. *base receives the opcode with quiet
 * variants mapped to their loud one (GETQ -> GET, SETQ -> SET, ...), *quiet
 * whether it was a quiet variant.
 */
mk_bin_verdict mk_bin_check_req(const mk_bin_frame *f, uint8_t *base, bool *quiet);

/* The value's length of a request that passed mk_bin_check_req. */
static inline uint32_t mk_bin_vlen(const mk_bin_frame *f)
{
    return f->bodylen - f->keylen - f->extlen;
}

/* Big-endian readers for extras. */
static inline uint32_t mk_bin_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t mk_bin_u64(const uint8_t *p)
{
    return (uint64_t)mk_bin_u32(p) << 32 | mk_bin_u32(p + 4);
}
static inline void mk_bin_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static inline void mk_bin_put_u64(uint8_t *p, uint64_t v)
{
    mk_bin_put_u32(p, (uint32_t)(v >> 32));
    mk_bin_put_u32(p + 4, (uint32_t)v);
}

/*
 * Write a 24-byte header to out: magic 0x81 (response; status in place of the
 * vbucket) or 0x80 (request; vbucket 0), datatype 0. opaque is copied as given.
 */
void mk_bin_compose_hdr(uint8_t out[MK_BIN_HDR], uint8_t magic, uint8_t opcode, uint16_t status, uint8_t extlen,
                        uint16_t keylen, uint32_t bodylen, uint32_t opaque, uint64_t cas);

/*
 * Parse a response's header at buf[0..len): the bytes of the whole frame
 * (24 + bodylen) with views of its extras and key (the value is the rest of the
 * body), 0 while incomplete, -1 when it is not a response or its lengths do not
 * add up (extlen + keylen > bodylen).
 */
ssize_t mk_bin_parse_res(const void *buf, size_t len, mk_bin_frame *f);

/* memcached's error text for a status ("Not found", "Too large.", ...); "" for MK_BIN_OK and unknown codes. */
const char *mk_bin_status_text(uint16_t status);

#endif /* MEMKIT_BINARY_H */
