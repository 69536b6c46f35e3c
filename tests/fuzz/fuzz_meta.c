/* tests/fuzz/fuzz_meta.c — libFuzzer target for the meta protocol: arbitrary lines through mk_parse_meta, and compose -> parse round trips. */
#include "memkit/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant: on failure say which line before aborting (libFuzzer keeps the input). */
#define must(cond)                                                        \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "fuzz_meta.c:%d: %s failed\n", __LINE__, #cond); \
            abort();                                                      \
        }                                                                 \
    } while (0)

static bool within(const char *b, size_t n, mk_str s)
{
    return s.n == 0 || (s.p >= b && s.p + s.n <= b + n);
}

/* Every line of the input, as the server would see it; meta lines through mk_parse_meta. */
static void serve(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mk_request req;
        ssize_t r = mk_parse_request(buf + off, len - off, &req);
        if (r <= 0)
            return;
        const char *b = buf + off;
        off += (size_t)r;
        if (req.err != MK_PERR_NONE || req.cmd < MK_CMD_MG || req.cmd > MK_CMD_ME)
            continue;
        mk_meta_req m;
        mk_parse_meta(&req, &m);
        must(m.cmd == req.cmd);
        must(m.key_b64 ? (m.key.n == 0 || m.key.p == m.keybuf) : within(b, (size_t)r, m.key));
        must(m.nflags <= MK_MAX_TOKENS);
        for (size_t i = 0; i < m.nflags; i++)
            must(m.flag[i].n > 0 && within(b, (size_t)r, m.flag[i]) && mk_meta_has(&m, m.flag[i].p[0]));
        if (m.err) {
            must(m.err[0] != '\0' && memchr(m.err, '\r', strlen(m.err)) == NULL);
            must(m.action == MK_PA_NONE || (m.action == MK_PA_SWALLOW && m.cmd == MK_CMD_MS && m.swallow == m.vlen + 2));
        } else {
            must(m.cmd == MK_CMD_MN || m.key.n > 0 || m.key_b64);
            must(m.cmd == MK_CMD_MN || m.key.n <= MK_KEY_MAX);
            must(m.opaque.n <= MK_META_OPAQUE_MAX || m.cmd == MK_CMD_MG || m.cmd == MK_CMD_MA);
            must(m.vlen <= (uint64_t)INT32_MAX - 2);
        }
        if (m.cmd == MK_CMD_MS && !m.err)
            off += (size_t)(m.vlen + 2 < len - off ? m.vlen + 2 : len - off);
    }
}

/* A request composed by mk_compose_meta_req parses back to the same key, length and flags. */
static void round_trip(const uint8_t *data, size_t size)
{
    if (size < 3)
        return;
    static const mk_cmd cmds[] = {MK_CMD_MG, MK_CMD_MS, MK_CMD_MD, MK_CMD_MA};
    mk_cmd cmd = cmds[data[0] % 4];
    size_t nkey = 1 + data[1] % 40;
    if (nkey > size - 2)
        nkey = size - 2;
    char key[64];
    for (size_t i = 0; i < nkey; i++) {
        unsigned char ch = data[2 + i];
        key[i] = ch > ' ' && ch < 127 ? (char)ch : 'k';
    }
    static const char flags[] = "v f c k q s t T30 O42";
    char out[512];
    size_t n = mk_compose_meta_req(out, sizeof(out), cmd, (mk_str){key, nkey}, size, (mk_str){flags, strlen(flags)});
    must(n > 0 && n <= sizeof(out));
    mk_request req;
    must(mk_parse_request(out, n, &req) == (ssize_t)n && req.cmd == cmd);
    mk_meta_req m;
    mk_parse_meta(&req, &m);
    must(m.key.n == nkey && memcmp(m.key.p, key, nkey) == 0);
    if (cmd == MK_CMD_MS)
        must(m.err != NULL || m.vlen == size); /* a size over INT32_MAX-2 is refused as memcached refuses it */
    must(m.err == NULL || cmd == MK_CMD_MS);
    /* a binary key echoed with b re-encodes to base64 that decodes to the same bytes */
    char echo[4 * MK_KEY_MAX / 3 + 8];
    size_t e = mk_compose_meta_key(echo, sizeof(echo), (const char *)data, size < MK_KEY_MAX ? size : MK_KEY_MAX, true);
    must(e > 4 && echo[0] == ' ' && echo[1] == 'k' && memcmp(echo + e - 2, " b", 2) == 0);
    char line[600];
    int ln = snprintf(line, sizeof(line), "mg %.*s b\r\n", (int)(e - 4), echo + 2);
    must(ln > 0 && (size_t)ln < sizeof(line));
    if (e - 4 <= MK_KEY_MAX) {
        must(mk_parse_request(line, (size_t)ln, &req) == ln);
        mk_parse_meta(&req, &m);
        size_t want = size < MK_KEY_MAX ? size : MK_KEY_MAX;
        must(m.err == NULL && m.key.n == want && memcmp(m.key.p, data, want) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    serve((const char *)data, size);
    round_trip(data, size);
    return 0;
}
