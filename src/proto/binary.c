/* src/proto/binary.c — memcached's binary protocol: headers parsed and composed, request lengths checked in memcached 1.6.18's order. */
#include <string.h>

#include "memkit/binary.h"

#define KEY_MAX 250

/* The header fields shared by requests and responses. */
static void parse_hdr(const uint8_t *p, mk_bin_frame *f)
{
    f->magic = p[0];
    f->opcode = p[1];
    f->keylen = (uint16_t)(p[2] << 8 | p[3]);
    f->extlen = p[4];
    f->datatype = p[5];
    f->vbucket_or_status = (uint16_t)(p[6] << 8 | p[7]);
    f->bodylen = mk_bin_u32(p + 8);
    memcpy(&f->opaque, p + 12, 4);
    f->cas = mk_bin_u64(p + 16);
    f->ext = p + MK_BIN_HDR;
    f->key = (mk_str){(const char *)p + MK_BIN_HDR + f->extlen, f->keylen};
}

ssize_t mk_bin_parse_req(const void *buf, size_t len, mk_bin_frame *f)
{
    const uint8_t *p = buf;
    if (len < MK_BIN_HDR)
        return 0; /* (memcached judges the magic only once a whole header is there) */
    if (p[0] != MK_BIN_MAGIC_REQ)
        return -1;
    parse_hdr(p, f);
    size_t need = (size_t)MK_BIN_HDR + f->extlen + f->keylen; /* at most 24 + 255 + 65535: no overflow */
    return len < need ? 0 : (ssize_t)need;
}

/* Quiet variants and the opcode each is quiet for. */
static uint8_t loud_of(uint8_t op)
{
    switch (op) {
    case MK_BIN_SETQ: return MK_BIN_SET;
    case MK_BIN_ADDQ: return MK_BIN_ADD;
    case MK_BIN_REPLACEQ: return MK_BIN_REPLACE;
    case MK_BIN_DELETEQ: return MK_BIN_DELETE;
    case MK_BIN_INCREMENTQ: return MK_BIN_INCREMENT;
    case MK_BIN_DECREMENTQ: return MK_BIN_DECREMENT;
    case MK_BIN_QUITQ: return MK_BIN_QUIT;
    case MK_BIN_FLUSHQ: return MK_BIN_FLUSH;
    case MK_BIN_APPENDQ: return MK_BIN_APPEND;
    case MK_BIN_PREPENDQ: return MK_BIN_PREPEND;
    case MK_BIN_GETQ: return MK_BIN_GET;
    case MK_BIN_GETKQ: return MK_BIN_GETK;
    case MK_BIN_GATQ: return MK_BIN_GAT;
    case MK_BIN_GATKQ: return MK_BIN_GATK;
    default: return op;
    }
}

mk_bin_verdict mk_bin_check_req(const mk_bin_frame *f, uint8_t *base, bool *quiet)
{
    uint32_t ext = f->extlen, key = f->keylen, body = f->bodylen;
    *base = loud_of(f->opcode);
    *quiet = *base != f->opcode;
    if (key > body || key + ext > body)
        return MK_BINV_BAD_LENGTHS;
    if (key > KEY_MAX)
        return MK_BINV_KEY_TOO_LONG;
    bool ok;
    switch (*base) {
    case MK_BIN_VERSION:
    case MK_BIN_NOOP:
    case MK_BIN_QUIT:
    case MK_BIN_SASL_LIST_MECHS:
        ok = ext == 0 && key == 0 && body == 0;
        break;
    case MK_BIN_FLUSH:
        ok = key == 0 && body == ext && (ext == 0 || ext == 4);
        break;
    case MK_BIN_SET:
    case MK_BIN_ADD:
    case MK_BIN_REPLACE:
        ok = ext == 8 && key != 0 && body >= key + 8;
        break;
    case MK_BIN_GET:
    case MK_BIN_GETK:
        ok = ext == 0 && body == key && key > 0;
        break;
    case MK_BIN_DELETE:
        ok = key > 0 && ext == 0 && body == key;
        break;
    case MK_BIN_INCREMENT:
    case MK_BIN_DECREMENT:
        ok = key > 0 && ext == 20 && body == key + ext;
        break;
    case MK_BIN_APPEND:
    case MK_BIN_PREPEND:
        ok = key > 0 && ext == 0;
        break;
    case MK_BIN_STAT:
        ok = ext == 0;
        break;
    case MK_BIN_SASL_AUTH:
    case MK_BIN_SASL_STEP:
        ok = ext == 0 && key != 0;
        break;
    case MK_BIN_TOUCH:
    case MK_BIN_GAT:
    case MK_BIN_GATK:
        ok = ext == 4 && key != 0;
        break;
    default:
        return MK_BINV_UNKNOWN;
    }
    return ok ? MK_BINV_OK : MK_BINV_BAD_FORMAT;
}

void mk_bin_compose_hdr(uint8_t out[MK_BIN_HDR], uint8_t magic, uint8_t opcode, uint16_t status, uint8_t extlen,
                        uint16_t keylen, uint32_t bodylen, uint32_t opaque, uint64_t cas)
{
    out[0] = magic;
    out[1] = opcode;
    out[2] = (uint8_t)(keylen >> 8);
    out[3] = (uint8_t)keylen;
    out[4] = extlen;
    out[5] = 0;
    out[6] = (uint8_t)(status >> 8);
    out[7] = (uint8_t)status;
    mk_bin_put_u32(out + 8, bodylen);
    memcpy(out + 12, &opaque, 4);
    mk_bin_put_u64(out + 16, cas);
}

ssize_t mk_bin_parse_res(const void *buf, size_t len, mk_bin_frame *f)
{
    const uint8_t *p = buf;
    if (len == 0)
        return 0;
    if (p[0] != MK_BIN_MAGIC_RES)
        return -1;
    if (len < MK_BIN_HDR)
        return 0;
    parse_hdr(p, f);
    if ((uint32_t)f->extlen + f->keylen > f->bodylen)
        return -1;
    if (len - MK_BIN_HDR < f->bodylen)
        return 0;
    return (ssize_t)(MK_BIN_HDR + (size_t)f->bodylen);
}

const char *mk_bin_status_text(uint16_t status)
{
    switch (status) {
    case MK_BIN_KEY_ENOENT: return "Not found";
    case MK_BIN_KEY_EEXISTS: return "Data exists for key.";
    case MK_BIN_E2BIG: return "Too large.";
    case MK_BIN_EINVAL: return "Invalid arguments";
    case MK_BIN_NOT_STORED: return "Not stored.";
    case MK_BIN_DELTA_BADVAL: return "Non-numeric server-side value for incr or decr";
    case MK_BIN_AUTH_ERROR: return "Auth failure.";
    case MK_BIN_UNKNOWN_COMMAND: return "Unknown command";
    case MK_BIN_ENOMEM: return "Out of memory";
    default: return "";
    }
}
