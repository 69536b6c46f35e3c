/* tests/fuzz/fuzz_binary.c — libFuzzer target for the binary protocol: arbitrary bytes as a stream of request frames (parse, check, value skip) and as response frames, plus compose -> parse round trips. */
#include "memkit/binary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define must(cond)                                                          \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "fuzz_binary.c:%d: %s failed\n", __LINE__, #cond); \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* The input as a server reads it: a frame's header, extras and key, then its value is skipped. */
static void serve(const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mk_bin_frame f;
        ssize_t r = mk_bin_parse_req(buf + off, len - off, &f);
        if (r <= 0)
            return;
        must((size_t)r == MK_BIN_HDR + f.extlen + f.keylen && (size_t)r <= len - off);
        must(f.ext == buf + off + MK_BIN_HDR);
        must((const uint8_t *)f.key.p == f.ext + f.extlen && f.key.n == f.keylen);
        uint8_t base;
        bool quiet;
        mk_bin_verdict v = mk_bin_check_req(&f, &base, &quiet);
        off += (size_t)r;
        if (v == MK_BINV_UNKNOWN) {
            if (f.bodylen > len - off)
                return;
            off += f.bodylen;
            continue;
        }
        if (v != MK_BINV_OK)
            return; /* the server closes */
        must(f.keylen <= 250 && (uint32_t)f.keylen + f.extlen <= f.bodylen);
        uint32_t vlen = mk_bin_vlen(&f);
        must(vlen <= f.bodylen);
        if (base == MK_BIN_INCREMENT || base == MK_BIN_DECREMENT)
            must(f.extlen == 20 && vlen == 0);
        if (base == MK_BIN_SET || base == MK_BIN_ADD || base == MK_BIN_REPLACE)
            must(f.extlen == 8 && f.keylen > 0);
        if (base == MK_BIN_GET || base == MK_BIN_GETK || base == MK_BIN_DELETE)
            must(f.extlen == 0 && vlen == 0 && f.keylen > 0);
        bool store = base == MK_BIN_SET || base == MK_BIN_ADD || base == MK_BIN_REPLACE || base == MK_BIN_APPEND ||
                     base == MK_BIN_PREPEND || base == MK_BIN_SASL_AUTH || base == MK_BIN_SASL_STEP;
        if (store) {
            if (vlen > len - off)
                return;
            off += vlen;
        }
    }
}

/* The input as a client reads responses. */
static void read_responses(const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mk_bin_frame f;
        ssize_t r = mk_bin_parse_res(buf + off, len - off, &f);
        if (r <= 0)
            return;
        must((size_t)r == MK_BIN_HDR + (size_t)f.bodylen && (size_t)r <= len - off);
        must((uint32_t)f.extlen + f.keylen <= f.bodylen);
        off += (size_t)r;
    }
}

/* Header fields from the input, composed and parsed back. */
static void round_trip(const uint8_t *d, size_t n)
{
    if (n < 20)
        return;
    uint8_t hdr[MK_BIN_HDR + 255 + 65535];
    uint8_t extlen = d[0] % 32;
    uint16_t keylen = (uint16_t)((d[1] << 8 | d[2]) % 300);
    uint32_t bodylen = mk_bin_u32(d + 3);
    uint32_t opaque;
    memcpy(&opaque, d + 7, 4);
    uint64_t cas = mk_bin_u64(d + 11);
    uint16_t status = (uint16_t)(d[19] << 8 | d[0]);
    for (int magic = 0; magic < 2; magic++) {
        mk_bin_compose_hdr(hdr, magic ? MK_BIN_MAGIC_RES : MK_BIN_MAGIC_REQ, d[1], status, extlen, keylen, bodylen,
                           opaque, cas);
        memset(hdr + MK_BIN_HDR, 'k', (size_t)extlen + keylen);
        mk_bin_frame f;
        if (magic) {
            ssize_t r = mk_bin_parse_res(hdr, MK_BIN_HDR + (size_t)extlen + keylen, &f);
            if ((uint32_t)extlen + keylen > bodylen)
                must(r == -1);
            else
                must(r == (bodylen == (uint32_t)extlen + keylen ? (ssize_t)(MK_BIN_HDR + bodylen) : 0));
            if (r > 0)
                must(f.vbucket_or_status == status);
        } else {
            ssize_t r = mk_bin_parse_req(hdr, MK_BIN_HDR + (size_t)extlen + keylen, &f);
            must(r == (ssize_t)(MK_BIN_HDR + extlen + keylen));
            must(f.vbucket_or_status == status);
        }
        must(f.opcode == d[1] && f.extlen == extlen && f.keylen == keylen && f.bodylen == bodylen &&
             f.opaque == opaque && f.cas == cas);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    serve(data, size);
    read_responses(data, size);
    round_trip(data, size);
    return 0;
}
