/* tests/fuzz/fuzz_proto.c — libFuzzer target for the protocol layer: request/response parsing of arbitrary bytes (and -Y authentication lines), compose->parse round trips. */
#include "memkit/proto.h"

#include <stdlib.h>
#include <string.h>

static void must(int cond)
{
    if (!cond)
        abort();
}

static bool in_buf(const char *b, size_t n, mk_str s)
{
    return s.n == 0 || (s.p >= b && s.p + s.n <= b + n);
}

/* Feed the bytes to mk_parse_request like a server: one line at a time, skipping data blocks. */
static void serve(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mk_request req;
        ssize_t r = mk_parse_request(buf + off, len - off, &req);
        if (r <= 0)
            return;
        must((size_t)r <= len - off);
        const char *b = buf + off;
        size_t n = (size_t)r;
        must(in_buf(b, n, req.key) && in_buf(b, n, req.keys) && in_buf(b, n, req.args));
        must(req.err < MK_PERR__COUNT && req.cmd < MK_CMD__COUNT);
        must(req.action != MK_PA_CLOSE); /* closes are reported as -1 */
        off += n;
        if (req.err != MK_PERR_NONE) {
            must(mk_perr_text(req.err)[0] != '\0');
            if (req.action == MK_PA_SWALLOW)
                off += (size_t)(req.swallow < len - off ? req.swallow : len - off);
            continue;
        }
        if (req.cmd == MK_CMD_GET || req.cmd == MK_CMD_GETS || req.cmd == MK_CMD_GAT || req.cmd == MK_CMD_GATS) {
            mk_str rest = req.keys, k;
            size_t count = 0;
            while (mk_next_key(&rest, &k)) {
                must(k.n > 0 && k.n <= MK_KEY_MAX && memchr(k.p, ' ', k.n) == NULL);
                count++;
            }
            must(req.cmd == MK_CMD_GAT || req.cmd == MK_CMD_GATS || count > 0);
        }
        if (mk_cmd_is_storage(req.cmd)) {
            must(req.key.n > 0 && req.key.n <= MK_KEY_MAX);
            must(req.vlen <= (uint64_t)INT32_MAX - 2);
            must(req.exptime >= INT32_MIN && req.exptime <= INT32_MAX);
            uint64_t blk = req.vlen + 2;
            off += (size_t)(blk < len - off ? blk : len - off);
        }
        if (req.cmd == MK_CMD_QUIT)
            return;
    }
}

static void client(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mk_response resp;
        ssize_t r = mk_parse_response(buf + off, len - off, &resp);
        if (r <= 0)
            return;
        must((size_t)r <= len - off);
        must(in_buf(buf + off, (size_t)r, resp.key) && in_buf(buf + off, (size_t)r, resp.text));
        off += (size_t)r;
        if (resp.type == MK_RESP_VALUE) {
            uint64_t blk = resp.vlen + 2;
            off += (size_t)(blk < len - off ? blk : len - off);
        }
    }
}

static uint64_t take_u64(const uint8_t **p, size_t *n)
{
    uint64_t v = 0;
    for (int i = 0; i < 8 && *n; i++, (*p)++, (*n)--)
        v = (v << 8) | **p;
    return v;
}

/* Compose from fuzz-chosen fields, parse back, compare. */
static void roundtrip(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    uint64_t a = take_u64(&p, &n), b = take_u64(&p, &n), c = take_u64(&p, &n);
    /* the rest is the key, made valid: 1..250 bytes, no ' ', '\n' or NUL */
    char key[MK_KEY_MAX];
    size_t kn = n > MK_KEY_MAX ? MK_KEY_MAX : n;
    for (size_t i = 0; i < kn; i++) {
        char ch = (char)p[i];
        key[i] = (ch == ' ' || ch == '\n' || ch == '\0') ? '_' : ch;
    }
    if (kn == 0)
        key[kn++] = 'k';
    mk_str k = {key, kn};
    static const mk_cmd cmds[] = {MK_CMD_SET, MK_CMD_ADD, MK_CMD_REPLACE, MK_CMD_APPEND, MK_CMD_PREPEND, MK_CMD_CAS};
    mk_cmd cmd = cmds[a % 6];
    uint32_t flags = (uint32_t)(b >> 32);
    int64_t exptime = (int32_t)(uint32_t)b;
    uint64_t vlen = c % ((uint64_t)INT32_MAX - 1);
    bool noreply = (a >> 8) & 1;
    char out[512];
    size_t len = mk_compose_req_storage(out, sizeof out, cmd, k, flags, exptime, vlen, a, noreply);
    must(len > 0);
    mk_request req;
    must(mk_parse_request(out, len, &req) == (ssize_t)len);
    must(req.err == MK_PERR_NONE && req.cmd == cmd && req.noreply == noreply);
    /* a key ending in '\r' right before... cannot happen: the line never ends with the key */
    must(req.key.n == kn && memcmp(req.key.p, key, kn) == 0);
    must(req.flags == flags && req.exptime == exptime && req.vlen == vlen);
    must(req.cas == (cmd == MK_CMD_CAS ? a : 0));

    /* VALUE header */
    mk_response resp;
    bool with_cas = (a >> 9) & 1;
    len = mk_compose_value_hdr(out, sizeof out, k, flags, c, with_cas, a);
    must(len > 0 && len <= MK_VALUE_HDR_MAX);
    must(mk_parse_response(out, len, &resp) == (ssize_t)len);
    must(resp.type == MK_RESP_VALUE && resp.key.n == kn && memcmp(resp.key.p, key, kn) == 0);
    must(resp.flags == flags && resp.vlen == c && resp.has_cas == with_cas && (!with_cas || resp.cas == a));

    /* number */
    len = mk_compose_u64_line(out, sizeof out, c);
    must(mk_parse_response(out, len, &resp) == (ssize_t)len);
    must(resp.type == MK_RESP_NUMBER && resp.number == c);

    /* get line with this key */
    memcpy(out, "gets ", 5);
    memcpy(out + 5, key, kn);
    memcpy(out + 5 + kn, "\r\n", 2);
    len = 5 + kn + 2;
    must(mk_parse_request(out, len, &req) == (ssize_t)len);
    if (!(kn == 1 && key[0] == '\r')) { /* "gets \r\r\n" is key "\r" too, fine; but trailing \r is dropped once */
        must(req.err == MK_PERR_NONE && req.cmd == MK_CMD_GETS);
        must(req.key.n == kn && memcmp(req.key.p, key, kn) == 0);
    }
}

/* Feed the bytes to the -Y authentication parsers like an unauthenticated connection (proto_auth.c). */
static void serve_auth(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mk_auth_line l;
        ssize_t r = mk_parse_auth_line(buf + off, len - off, &l);
        if (r <= 0) {
            must(r == 0 || len - off > MK_LINE_MAX);
            return;
        }
        must((size_t)r <= len - off && buf[off + (size_t)r - 1] == '\n');
        must(l.is_set || l.size == 0);
        off += (size_t)r;
        if (!l.is_set)
            continue;
        if (l.size > MK_AUTH_TOKEN_MAX || l.size + 2 > len - off)
            return;
        mk_str user, pass;
        if (mk_parse_auth_token(buf + off, (size_t)l.size, &user, &pass)) {
            must(in_buf(buf + off, (size_t)l.size, user) && in_buf(buf + off, (size_t)l.size, pass));
            must(user.n > 0 && pass.n > 0 && !memchr(user.p, ' ', user.n) && !memchr(pass.p, ' ', pass.n));
        }
        off += (size_t)l.size + 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    serve(buf, size);
    serve_auth(buf, size);
    client(buf, size);
    roundtrip(data, size);
    /* every prefix ending at a '\n' must be parsed the same as the whole buffer's first line */
    mk_request r1, r2;
    ssize_t a = mk_parse_request(buf, size, &r1);
    if (a > 0) {
        ssize_t b = mk_parse_request(buf, (size_t)a, &r2);
        must(a == b && r1.cmd == r2.cmd && r1.err == r2.err && r1.noreply == r2.noreply);
    }
    return 0;
}
