/* src/proto/meta.c — the meta protocol (mg ms md ma mn me): request lines checked as memcached 1.6.18 checks them, reply pieces composed. */
#include <stddef.h>
#include <string.h>

#include <nettle/base64.h>

#include "memkit/proto.h"
#include "proto/lex.h"

#define META_MAX_TOKENS 20 /* memcached's MFLAG_MAX_OPT_LENGTH: more tokens (terminator included) is an error */

static const char *const BAD_FORMAT = "CLIENT_ERROR bad command line format";
static const char *const BAD_TOKEN = "CLIENT_ERROR bad token in command line format";

/* base64 (Debian's nettle): decode a key; 0 on malformed input, as memcached's decoder reports it. */
static size_t b64_decode(const char *src, size_t n, char *dst)
{
    struct base64_decode_ctx ctx;
    size_t out = 0;
    if (n == 0)
        return 0;
    base64_decode_init(&ctx);
    if (!base64_decode_update(&ctx, &out, (uint8_t *)dst, n, src) || !base64_decode_final(&ctx))
        return 0;
    return out;
}

/* A token's text after its flag letter, as a token of its own (memcached's value + 1). */
static mk_tok after_letter(mk_str f)
{
    return (mk_tok){f.p + 1, f.n - 1};
}

/*
 * memcached's _meta_flag_preparse(): every flag token once, known letters only;
 * numbers checked. A duplicate or unknown letter stops at once; a bad number is
 * remembered (the last one's message wins) and the rest still parsed.
 */
static void preparse(mk_meta_req *m, const mk_tok *t, size_t first, size_t nt)
{
    const char *err = NULL;
    for (size_t i = first; i < nt && t[i].p != NULL && t[i].n > 0; i++) {
        mk_str f = {t[i].p, t[i].n};
        unsigned char o = (unsigned char)f.p[0];
        uint64_t bit = mk_meta_bit((char)o);
        if (o >= 127 || (bit && (m->seen & bit))) {
            m->err = "CLIENT_ERROR duplicate flag";
            return;
        }
        mk_tok v = after_letter(f);
        int32_t i32;
        switch (o) {
        case 'b': {
            size_t k = b64_decode(m->key.p, m->key.n, m->keybuf);
            if (k == 0)
                err = "CLIENT_ERROR error decoding key";
            m->key = (mk_str){m->keybuf, k};
            m->key_b64 = true;
            break;
        }
        case 'N':
        case 'T':
        case 'R':
            if (!mk_num_i32(&v, &i32)) {
                err = BAD_TOKEN;
                break;
            }
            if (o == 'N')
                m->viv_ttl = i32;
            else if (o == 'T')
                m->ttl = i32;
            else
                m->recache = i32;
            break;
        case 'F':
            if (!mk_num_u32(&v, &m->client_flags))
                err = err ? err : BAD_FORMAT;
            break;
        case 'C':
            if (!mk_num_u64(&v, &m->cas_in))
                err = BAD_TOKEN;
            break;
        case 'E': /* (memcached 1.6.27+; 1.6.18 refuses it as an invalid flag) */
            if (!mk_num_u64(&v, &m->ecas))
                err = BAD_TOKEN;
            break;
        case 'M':
            if (f.n != 2)
                err = "CLIENT_ERROR incorrect length for M token";
            else
                m->mode = f.p[1];
            break;
        case 'J':
            if (!mk_num_u64(&v, &m->initial))
                err = "CLIENT_ERROR invalid numeric initial value";
            break;
        case 'D':
            if (!mk_num_u64(&v, &m->delta))
                err = "CLIENT_ERROR invalid numeric delta value";
            break;
        case 'O':
            m->opaque = f;
            break;
        case 'l': case 'P': case 'L': case 'k': case 's': case 't': case 'c': case 'f':
        case 'v': case 'h': case 'u': case 'q': case 'I': case 'x': /* (x: 1.6.27+, as E) */
            break;
        default:
            m->err = "CLIENT_ERROR invalid flag";
            return;
        }
        m->seen |= bit;
        if (m->nflags < MK_MAX_TOKENS)
            m->flag[m->nflags++] = f;
    }
    if (err)
        m->err = err;
}

void mk_parse_meta(const mk_request *req, mk_meta_req *m)
{
    memset(m, 0, offsetof(mk_meta_req, keybuf));
    m->cmd = req->cmd;
    m->delta = 1;
    mk_tok t[MK_MAX_TOKENS];
    size_t nt = mk_tokenize(req->line.p, req->line.n, t); /* slots used, terminator included */
    if (nt >= 2 && t[1].p)
        m->key = (mk_str){t[1].p, t[1].n};

    switch (m->cmd) {
    case MK_CMD_MN:
        return;
    case MK_CMD_ME:
        if (nt < 3 || m->key.n > MK_KEY_MAX) {
            m->err = BAD_FORMAT;
            return;
        }
        if (nt >= 4 && t[2].n == 1 && t[2].p[0] == 'b') {
            size_t k = b64_decode(m->key.p, m->key.n, m->keybuf);
            if (k == 0) {
                m->err = BAD_FORMAT;
                return;
            }
            m->key = (mk_str){m->keybuf, k};
            m->key_b64 = true;
        }
        return;
    case MK_CMD_MG:
    case MK_CMD_MD:
    case MK_CMD_MA:
        if (nt < 3) {
            m->err = "ERROR";
            return;
        }
        if (m->key.n > MK_KEY_MAX) {
            m->err = BAD_FORMAT;
            return;
        }
        if (nt > META_MAX_TOKENS) {
            m->err = m->cmd == MK_CMD_MG ? "CLIENT_ERROR options flags are too long"
                                         : "CLIENT_ERROR options flags too long";
            return;
        }
        preparse(m, t, 2, nt);
        if (m->err && m->cmd != MK_CMD_MG)
            m->err = "CLIENT_ERROR invalid or duplicate flag";
        if (!m->err && m->cmd == MK_CMD_MD && m->opaque.n > MK_META_OPAQUE_MAX)
            m->err = "CLIENT_ERROR opaque token too long";
        if (!m->err && m->cmd == MK_CMD_MA && m->mode && !strchr("I+D-", m->mode))
            m->err = "CLIENT_ERROR invalid mode for ma M token";
        return;
    case MK_CMD_MS: {
        if (nt < 3) {
            m->err = "ERROR";
            return;
        }
        if (m->key.n > MK_KEY_MAX || nt == 3) {
            m->err = BAD_FORMAT;
            return;
        }
        if (nt > META_MAX_TOKENS) {
            m->err = "CLIENT_ERROR options flags too long";
            return;
        }
        int32_t vlen;
        if (!mk_num_i32(&t[2], &vlen) || vlen < 0 || vlen > 2147483647 - 2) {
            m->err = BAD_FORMAT;
            return;
        }
        m->vlen = (uint64_t)vlen;
        preparse(m, t, 3, nt);
        if (!m->err) {
            if (m->opaque.n > MK_META_OPAQUE_MAX)
                m->err = "CLIENT_ERROR opaque token too long";
            if (m->mode && !strchr("EAPRS", m->mode))
                m->err = "CLIENT_ERROR invalid mode for ms M token";
        }
        if (m->err) {
            /* memcached swallows the data block of a refused ms */
            m->action = MK_PA_SWALLOW;
            m->swallow = m->vlen + 2;
        }
        return;
    }
    default:
        m->err = "ERROR";
        return;
    }
}

const char *mk_meta_status_code(mk_cmd cmd, mk_status st)
{
    switch (st) {
    case MK_ST_OK:
    case MK_ST_STORED:
    case MK_ST_DELETED:
    case MK_ST_TOUCHED:
        return "HD";
    case MK_ST_NOT_STORED:
        return "NS";
    case MK_ST_EXISTS:
        return "EX";
    case MK_ST_NOT_FOUND:
        return cmd == MK_CMD_MG || cmd == MK_CMD_ME ? "EN" : "NF";
    default:
        return mk_text_status_line(cmd, st);
    }
}

size_t mk_compose_meta_key(char *out, size_t cap, const char *key, size_t nkey, bool b64)
{
    size_t need = 2 + (b64 ? BASE64_ENCODE_RAW_LENGTH(nkey) + 2 : nkey);
    if (need > cap)
        return 0;
    out[0] = ' ';
    out[1] = 'k';
    if (!b64) {
        memcpy(out + 2, key, nkey);
        return need;
    }
    base64_encode_raw(out + 2, nkey, (const uint8_t *)key);
    memcpy(out + need - 2, " b", 2);
    return need;
}

/* ---- replies (client side) ---- */

/* Decode the return flags of a reply (space-separated, each a letter and an optional token). */
static bool reply_flags(mk_meta_resp *r, const char *p, const char *end)
{
    r->flags = (mk_str){p, (size_t)(end - p)};
    while (p < end) {
        if (*p == ' ') {
            p++;
            continue;
        }
        const char *e = memchr(p, ' ', (size_t)(end - p));
        if (!e)
            e = end;
        const char *v = p + 1;
        size_t vn = (size_t)(e - v);
        uint64_t x;
        switch (*p) {
        case 'c':
            if (!mk_dec_u64(v, vn, UINT64_MAX, &r->cas))
                return false;
            r->has_cas = true;
            break;
        case 'f':
            if (!mk_dec_u64(v, vn, UINT64_MAX, &x) || x > UINT32_MAX)
                return false;
            r->client_flags = (uint32_t)x;
            r->has_flags = true;
            break;
        case 't':
            if (vn == 2 && v[0] == '-' && v[1] == '1')
                r->ttl = -1;
            else if (mk_dec_u64(v, vn, UINT64_MAX, &x))
                r->ttl = (int64_t)x;
            else
                return false;
            r->has_ttl = true;
            break;
        case 's':
            if (!mk_dec_u64(v, vn, UINT64_MAX, &r->size))
                return false;
            r->has_size = true;
            break;
        case 'k':
            r->key = (mk_str){v, vn};
            break;
        case 'b':
            r->key_b64 = true;
            break;
        case 'O':
            r->opaque = (mk_str){v, vn};
            break;
        case 'h':
            r->hit_before = vn == 1 && v[0] == '1';
            break;
        case 'W':
            r->win = true;
            break;
        case 'X':
            r->stale = true;
            break;
        case 'Z':
            r->token_sent = true;
            break;
        default:
            break; /* flags a client did not ask for are skipped */
        }
        p = e;
    }
    return true;
}

ssize_t mk_parse_meta_response(const char *buf, size_t len, mk_meta_resp *r)
{
    memset(r, 0, sizeof *r);
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return 0;
    if (nl == buf || nl[-1] != '\r')
        return -1;
    const char *end = nl - 1; /* the "\r" */
    size_t n = (size_t)(end - buf);
    ssize_t used = nl - buf + 1;
    static const struct { char c[3]; mk_meta_code code; } codes[] = {
        {"VA", MK_MC_VA}, {"HD", MK_MC_HD}, {"EN", MK_MC_EN}, {"NS", MK_MC_NS},
        {"EX", MK_MC_EX}, {"NF", MK_MC_NF}, {"MN", MK_MC_MN}, {"ME", MK_MC_ME},
    };
    if (n >= 2 && (n == 2 || buf[2] == ' ')) {
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
            if (buf[0] != codes[i].c[0] || buf[1] != codes[i].c[1])
                continue;
            r->code = codes[i].code;
            const char *p = buf + 2;
            if (r->code == MK_MC_ME) {
                r->text = (mk_str){p < end ? p + 1 : p, p < end ? (size_t)(end - p - 1) : 0};
                return used;
            }
            if (r->code == MK_MC_VA) {
                if (p == end)
                    return -1;
                const char *q = ++p;
                while (q < end && *q != ' ')
                    q++;
                if (!mk_dec_u64(p, (size_t)(q - p), UINT64_MAX, &r->vlen))
                    return -1;
                p = q;
            }
            return reply_flags(r, p, end) ? used : -1;
        }
    }
    if ((n == 5 && memcmp(buf, "ERROR", 5) == 0) || (n > 13 && memcmp(buf, "CLIENT_ERROR ", 13) == 0) ||
        (n > 13 && memcmp(buf, "SERVER_ERROR ", 13) == 0)) {
        r->code = MK_MC_ERROR;
        r->text = (mk_str){buf, n};
        return used;
    }
    return -1;
}
