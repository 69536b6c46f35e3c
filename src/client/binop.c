/* client/binop.c — an op's requests and replies in memcached's binary protocol (the client's binary option): frames composed and read with memkit/binary.h, outcomes mapped to MK_* codes as in the text protocol. */
#include "client/client.h"

#include <stdlib.h>
#include <string.h>

#include "memkit/binary.h"

/* Reply frames larger than this are garbage. */
#define MAX_BODY ((1u << 31) + 64)

static bool is_get(mk_opcode c)
{
    return c == MK_OP_GET || c == MK_OP_GETS || c == MK_OP_GAT || c == MK_OP_GATS;
}

/* The binary opcode for an op (quiet: the noreply variant). */
static uint8_t opcode_of(const mk_op_args *a, bool quiet, bool multi)
{
    switch (a->code) {
    case MK_OP_GET:
    case MK_OP_GETS:
        return multi ? MK_BIN_GETKQ : MK_BIN_GETK;
    case MK_OP_GAT:
    case MK_OP_GATS:
        return multi ? MK_BIN_GATKQ : MK_BIN_GATK;
    case MK_OP_STORE:
        switch (a->store_op) {
        case MK_STORE_ADD: return quiet ? MK_BIN_ADDQ : MK_BIN_ADD;
        case MK_STORE_REPLACE: return quiet ? MK_BIN_REPLACEQ : MK_BIN_REPLACE;
        case MK_STORE_APPEND: return quiet ? MK_BIN_APPENDQ : MK_BIN_APPEND;
        case MK_STORE_PREPEND: return quiet ? MK_BIN_PREPENDQ : MK_BIN_PREPEND;
        default: return quiet ? MK_BIN_SETQ : MK_BIN_SET; /* set, and cas (a set with a cas) */
        }
    case MK_OP_DELETE: return quiet ? MK_BIN_DELETEQ : MK_BIN_DELETE;
    case MK_OP_INCR: return quiet ? MK_BIN_INCREMENTQ : MK_BIN_INCREMENT;
    case MK_OP_DECR: return quiet ? MK_BIN_DECREMENTQ : MK_BIN_DECREMENT;
    case MK_OP_TOUCH: return MK_BIN_TOUCH;
    case MK_OP_FLUSH_ALL: return quiet ? MK_BIN_FLUSHQ : MK_BIN_FLUSH;
    case MK_OP_VERSION: return MK_BIN_VERSION;
    default: return MK_BIN_STAT;
    }
}

/*
 * An exptime as the binary protocol carries it (32 bits, unsigned): a negative
 * one (the text protocol's "already expired") becomes an absolute time long
 * past, just over memcached's 30-day limit for relative ones.
 */
static uint32_t wire_exptime(int64_t exptime)
{
    if (exptime < 0)
        return 60 * 60 * 24 * 30 + 1;
    return exptime > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)exptime;
}

/* One request frame's header, extras and key at p; returns its length. vlen: the value that follows. */
static size_t frame(uint8_t *p, const mk_op_args *a, uint8_t opcode, const char *key, size_t nkey, size_t vlen,
                    uint32_t flags, uint32_t opaque)
{
    uint8_t ext[20];
    uint8_t next = 0;
    uint64_t cas = 0;
    switch (opcode) {
    case MK_BIN_SET: case MK_BIN_SETQ: case MK_BIN_ADD: case MK_BIN_ADDQ:
    case MK_BIN_REPLACE: case MK_BIN_REPLACEQ:
        mk_bin_put_u32(ext, flags);
        mk_bin_put_u32(ext + 4, wire_exptime(a->exptime));
        next = 8;
        cas = a->store_op == MK_STORE_CAS ? a->cas : 0;
        break;
    case MK_BIN_INCREMENT: case MK_BIN_INCREMENTQ: case MK_BIN_DECREMENT: case MK_BIN_DECREMENTQ:
        mk_bin_put_u64(ext, a->delta);
        mk_bin_put_u64(ext + 8, 0);
        mk_bin_put_u32(ext + 16, 0xffffffffu); /* a miss is a miss, as in the text protocol */
        next = 20;
        break;
    case MK_BIN_TOUCH: case MK_BIN_GATK: case MK_BIN_GATKQ:
        mk_bin_put_u32(ext, wire_exptime(a->exptime));
        next = 4;
        break;
    case MK_BIN_FLUSH: case MK_BIN_FLUSHQ:
        if (a->exptime > 0) {
            mk_bin_put_u32(ext, wire_exptime(a->exptime));
            next = 4;
        }
        break;
    default:
        break;
    }
    mk_bin_compose_hdr(p, MK_BIN_MAGIC_REQ, opcode, 0, next, (uint16_t)nkey, (uint32_t)(next + nkey + vlen), opaque,
                       cas);
    memcpy(p + MK_BIN_HDR, ext, next);
    memcpy(p + MK_BIN_HDR + next, key, nkey);
    return MK_BIN_HDR + next + nkey;
}

int mk__bin_compose(mk_op *op)
{
    const mk_op_args *a = &op->a;
    bool multi = is_get(a->code) && a->nkeyset;
    size_t nk = a->nkeyset ? a->nkeyset : 1;
    const char *const *keys = a->nkeyset ? a->keys : &a->key;
    const size_t *nkeys = a->nkeyset ? a->nkeys : &a->nkey;
    size_t need = 2 * MK_BIN_HDR + (a->group ? strlen(a->group) : 0);
    for (size_t i = 0; i < nk; i++)
        need += MK_BIN_HDR + 20 + nkeys[i];
    op->req = need <= sizeof op->small ? op->small : malloc(need);
    if (op->req == NULL)
        return MK_ENOMEM;
    uint8_t *p = (uint8_t *)op->req;
    uint8_t opcode = opcode_of(a, op->quiet, multi);
    if (a->code == MK_OP_STORE && a->nkeyset) {
        op->hdr_end = malloc(a->nkeyset * sizeof *op->hdr_end);
        if (op->hdr_end == NULL)
            return MK_ENOMEM;
    }
    switch (a->code) {
    case MK_OP_VERSION:
    case MK_OP_FLUSH_ALL:
        p += frame(p, a, opcode, "", 0, 0, 0, 0);
        break;
    case MK_OP_STATS: {
        const char *g = a->group ? a->group : "";
        p += frame(p, a, opcode, g, strlen(g), 0, 0, 0);
        break;
    }
    default:
        for (size_t i = 0; i < nk; i++) {
            size_t nv = a->code != MK_OP_STORE ? 0 : a->nkeyset ? a->nvalues[i] : a->nvalue;
            uint32_t fl = a->nkeyset && a->flagsv ? a->flagsv[i] : a->flags;
            p += frame(p, a, opcode, keys[i], nkeys[i], nv, fl, (uint32_t)i);
            if (op->hdr_end)
                op->hdr_end[i] = (size_t)((char *)p - op->req);
        }
        if (multi) /* the quiet gets end with a noop: its answer says every hit came before it */
            p += frame(p, a, MK_BIN_NOOP, "", 0, 0, 0, 0);
        break;
    }
    op->nreq = (size_t)((char *)p - op->req);
    return mk__op_build_iov(op);
}

size_t mk__bin_auth_frame(char *out, size_t cap, const char *user, const char *password)
{
    size_t nu = strlen(user), np = strlen(password);
    size_t body = 5 + 1 + nu + 1 + np;
    if (cap < MK_BIN_HDR + body)
        return 0;
    uint8_t *p = (uint8_t *)out;
    mk_bin_compose_hdr(p, MK_BIN_MAGIC_REQ, MK_BIN_SASL_AUTH, 0, 0, 5, (uint32_t)body, 0, 0);
    memcpy(p + MK_BIN_HDR, "PLAIN", 5);
    char *q = out + MK_BIN_HDR + 5;
    *q++ = '\0';
    memcpy(q, user, nu);
    q += nu;
    *q++ = '\0';
    memcpy(q, password, np);
    return MK_BIN_HDR + body;
}

/* A failure status as the MK_* code the text protocol's reply would have given. */
static int status_rc(const mk_op_args *a, uint16_t st)
{
    switch (st) {
    case MK_BIN_OK: return 0;
    case MK_BIN_KEY_ENOENT:
        /* text: replace of a missing key is NOT_STORED, a cas of one NOT_FOUND */
        return a->code == MK_OP_STORE && a->store_op != MK_STORE_CAS ? MK_ENOTSTORED : MK_ENOTFOUND;
    case MK_BIN_KEY_EEXISTS:
        return a->code == MK_OP_STORE && a->store_op != MK_STORE_CAS ? MK_ENOTSTORED : MK_EEXISTS;
    case MK_BIN_NOT_STORED: return MK_ENOTSTORED;
    case MK_BIN_DELTA_BADVAL: return MK_ENOTNUM;
    case MK_BIN_E2BIG: case MK_BIN_ENOMEM: return MK_ESERVERERR;
    case MK_BIN_EINVAL: return MK_ECLIENTERR;
    case MK_BIN_AUTH_ERROR: case MK_BIN_AUTH_CONTINUE: return MK_EAUTH;
    case MK_BIN_UNKNOWN_COMMAND: return MK_EERROR;
    default: return MK_EPROTO;
    }
}

/* The value of a frame (after extras and key). */
static const char *value_of(const mk_bin_frame *f, size_t *n)
{
    *n = f->bodylen - f->extlen - f->keylen;
    return f->key.p + f->key.n;
}

static void keep_text(mk_op *op, const mk_bin_frame *f)
{
    size_t n;
    const char *v = value_of(f, &n);
    mk__op_set_text(op, v, n);
}

/* One reply frame for the op: 1 to read on, else the op's final code. */
static int on_frame(mk_op *op, const mk_bin_frame *f)
{
    const mk_op_args *a = &op->a;
    uint16_t st = f->vbucket_or_status;
    if (op->auth_pending) { /* the SASL answer comes before the op's own */
        if (f->opcode != MK_BIN_SASL_AUTH)
            return MK_EPROTO;
        op->auth_pending = false;
        if (st != MK_BIN_OK)
            return MK_EAUTH;
        return op->expect_reply ? 1 : 0;
    }
    if (st != MK_BIN_OK && st != MK_BIN_KEY_ENOENT && st != MK_BIN_KEY_EEXISTS)
        keep_text(op, f);
    if (is_get(a->code)) {
        bool multi = a->nkeyset != 0;
        if (multi && f->opcode == MK_BIN_NOOP)
            return 0;
        if (st == MK_BIN_KEY_ENOENT && !multi)
            return MK_ENOTFOUND;
        if (st != MK_BIN_OK)
            return status_rc(a, st);
        if (f->extlen != 4)
            return MK_EPROTO;
        size_t n;
        const char *v = value_of(f, &n);
        mk_response r = {.type = MK_RESP_VALUE, .key = f->key, .flags = mk_bin_u32(f->ext), .vlen = n,
                         .has_cas = true, .cas = f->cas};
        int rc = mk__op_on_value(op, &r, v);
        if (rc)
            return rc;
        return multi ? 1 : 0;
    }
    if (a->nkeyset) { /* a batch: one answer per key, in order */
        int rc = status_rc(a, st);
        a->results[op->kpos++] = rc;
        return op->kpos == a->nkeyset ? 0 : 1;
    }
    switch (a->code) {
    case MK_OP_STATS:
        if (st != MK_BIN_OK)
            return status_rc(a, st);
        if (f->keylen == 0)
            return 0;
        if (a->stat_cb) {
            size_t n;
            const char *v = value_of(f, &n);
            a->stat_cb(a->ctx, f->key.p, f->key.n, v, n);
        }
        return 1;
    case MK_OP_VERSION:
        if (st == MK_BIN_OK)
            keep_text(op, f);
        return status_rc(a, st);
    case MK_OP_INCR:
    case MK_OP_DECR: {
        if (st != MK_BIN_OK)
            return status_rc(a, st);
        size_t n;
        const char *v = value_of(f, &n);
        if (n != 8)
            return MK_EPROTO;
        op->number = mk_bin_u64((const uint8_t *)v);
        return 0;
    }
    default:
        return status_rc(a, st);
    }
}

int mk__bin_read(mk_op *op, const char *p, size_t avail, size_t *used, size_t *want)
{
    mk_bin_frame f;
    ssize_t n = mk_bin_parse_res(p, avail, &f);
    *used = 0;
    if (n < 0)
        return MK_EPROTO;
    if (n == 0) {
        if (avail >= MK_BIN_HDR) {
            uint32_t body = mk_bin_u32((const uint8_t *)p + 8);
            if (body > MAX_BODY)
                return MK_EPROTO;
            *want = MK_BIN_HDR + (size_t)body - avail;
        }
        return 1;
    }
    *used = (size_t)n;
    return on_frame(op, &f);
}

int mk__bin_drain_frame(const char *p, size_t avail, size_t *used, bool *noop)
{
    mk_bin_frame f;
    ssize_t n = mk_bin_parse_res(p, avail, &f);
    *used = 0;
    if (n < 0)
        return -1;
    if (n == 0)
        return avail >= MK_BIN_HDR && mk_bin_u32((const uint8_t *)p + 8) > MAX_BODY ? -1 : 0;
    *used = (size_t)n;
    *noop = f.opcode == MK_BIN_NOOP;
    return 1;
}

size_t mk__bin_noop_frame(char *out)
{
    mk_bin_compose_hdr((uint8_t *)out, MK_BIN_MAGIC_REQ, MK_BIN_NOOP, 0, 0, 0, 0, 0, 0);
    return MK_BIN_HDR;
}
