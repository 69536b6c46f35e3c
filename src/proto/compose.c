/* src/proto/compose.c — composing protocol lines into caller buffers: server replies (VALUE, numbers, STAT, outcome lines) and client requests. */
#include "memkit/proto.h"

#include <string.h>

/* A bounded writer: every append checks room; ok turns false on the first overflow. */
typedef struct wbuf {
    char *p;
    size_t cap, n;
    bool ok;
} wbuf;

static void w_mem(wbuf *w, const void *s, size_t n)
{
    if (!w->ok || w->cap - w->n < n) {
        w->ok = false;
        return;
    }
    if (n)
        memcpy(w->p + w->n, s, n);
    w->n += n;
}

static void w_str(wbuf *w, const char *s)
{
    w_mem(w, s, strlen(s));
}

static const char DIGITS2[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                              "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                              "8081828384858687888990919293949596979899";

/* Write v in decimal at out (at least 20 bytes of room); returns the length. Runs for every number of every
 * VALUE line: written in place from the end, two digits per step, no copy. */
size_t mk_compose_u64(char *out, uint64_t v)
{
    if (v < 10) {
        out[0] = (char)('0' + v);
        return 1;
    }
    size_t n = 2;
    for (uint64_t t = v / 100; t; t /= 10)
        n++;
    char *p = out + n;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, DIGITS2 + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, DIGITS2 + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    return n;
}

static void w_u64(wbuf *w, uint64_t v)
{
    char tmp[20];
    w_mem(w, tmp, mk_compose_u64(tmp, v));
}

static void w_i64(wbuf *w, int64_t v)
{
    if (v < 0) {
        w_mem(w, "-", 1);
        w_u64(w, (uint64_t)0 - (uint64_t)v);
    } else {
        w_u64(w, (uint64_t)v);
    }
}

static size_t w_done(wbuf *w)
{
    return w->ok ? w->n : 0;
}

/* The header written with straight stores; out has room for the widest numbers. */
static size_t value_hdr(char *out, mk_str key, uint32_t flags, uint64_t nbytes, bool with_cas,
                        uint64_t cas)
{
    char *p = out;
    memcpy(p, "VALUE ", 6);
    p += 6;
    memcpy(p, key.p, key.n);
    p += key.n;
    *p++ = ' ';
    p += mk_compose_u64(p, flags);
    *p++ = ' ';
    p += mk_compose_u64(p, nbytes);
    if (with_cas) {
        *p++ = ' ';
        p += mk_compose_u64(p, cas);
    }
    *p++ = '\r';
    *p++ = '\n';
    return (size_t)(p - out);
}

size_t mk_compose_value_hdr(char *out, size_t cap, mk_str key, uint32_t flags,
                            uint64_t nbytes, bool with_cas, uint64_t cas)
{
    /* this runs once per hit of every get: one bounds check, then straight stores */
    if (cap >= 6 + key.n + 1 + 10 + 1 + 20 + (with_cas ? 21 : 0) + 2)
        return value_hdr(out, key, flags, nbytes, with_cas, cas);
    if (key.n > MK_KEY_MAX)
        return 0;
    char tmp[MK_VALUE_HDR_MAX];
    size_t n = value_hdr(tmp, key, flags, nbytes, with_cas, cas);
    if (n > cap)
        return 0;
    memcpy(out, tmp, n);
    return n;
}

size_t mk_compose_u64_line(char *out, size_t cap, uint64_t v)
{
    wbuf w = {out, cap, 0, true};
    w_u64(&w, v);
    w_mem(&w, "\r\n", 2);
    return w_done(&w);
}

size_t mk_compose_stat(char *out, size_t cap, const char *name, const char *value)
{
    wbuf w = {out, cap, 0, true};
    w_mem(&w, "STAT ", 5);
    w_str(&w, name);
    w_mem(&w, " ", 1);
    w_str(&w, value);
    w_mem(&w, "\r\n", 2);
    return w_done(&w);
}

size_t mk_compose_req_storage(char *out, size_t cap, mk_cmd cmd, mk_str key, uint32_t flags,
                              int64_t exptime, uint64_t nbytes, uint64_t cas, bool noreply)
{
    if (!mk_cmd_is_storage(cmd))
        return 0;
    wbuf w = {out, cap, 0, true};
    w_str(&w, mk_cmd_name(cmd));
    w_mem(&w, " ", 1);
    w_mem(&w, key.p, key.n);
    w_mem(&w, " ", 1);
    w_u64(&w, flags);
    w_mem(&w, " ", 1);
    w_i64(&w, exptime);
    w_mem(&w, " ", 1);
    w_u64(&w, nbytes);
    if (cmd == MK_CMD_CAS) {
        w_mem(&w, " ", 1);
        w_u64(&w, cas);
    }
    if (noreply)
        w_mem(&w, " noreply", 8);
    w_mem(&w, "\r\n", 2);
    return w_done(&w);
}

const char *mk_text_status_line(mk_cmd cmd, mk_status st)
{
    switch (st) {
    case MK_ST_OK: return "OK";
    case MK_ST_STORED: return "STORED";
    case MK_ST_NOT_STORED: return "NOT_STORED";
    case MK_ST_EXISTS: return "EXISTS";
    case MK_ST_NOT_FOUND: return "NOT_FOUND";
    case MK_ST_DELETED: return "DELETED";
    case MK_ST_TOUCHED: return "TOUCHED";
    case MK_ST_NON_NUMERIC: return "CLIENT_ERROR cannot increment or decrement non-numeric value";
    case MK_ST_TOO_LARGE: return mk_perr_text(MK_PERR_TOO_LARGE);
    case MK_ST_NO_MEMORY:
        return cmd == MK_CMD_INCR || cmd == MK_CMD_DECR ? "SERVER_ERROR out of memory"
                                                        : mk_perr_text(MK_PERR_OUT_OF_MEMORY);
    case MK_ST_BAD_CHUNK: return mk_perr_text(MK_PERR_BAD_DATA_CHUNK);
    default: return "SERVER_ERROR unknown outcome";
    }
}

size_t mk_compose_req_get(char *out, size_t cap, mk_cmd cmd, int64_t exptime, const char *const *keys,
                          const size_t *nkeys, size_t n)
{
    if (n == 0 || (cmd != MK_CMD_GET && cmd != MK_CMD_GETS && cmd != MK_CMD_GAT && cmd != MK_CMD_GATS))
        return 0;
    wbuf w = {out, cap, 0, true};
    w_str(&w, mk_cmd_name(cmd));
    if (cmd == MK_CMD_GAT || cmd == MK_CMD_GATS) {
        w_mem(&w, " ", 1);
        w_i64(&w, exptime);
    }
    for (size_t i = 0; i < n; i++) {
        w_mem(&w, " ", 1);
        w_mem(&w, keys[i], nkeys[i]);
    }
    w_mem(&w, "\r\n", 2);
    return w_done(&w);
}

size_t mk_compose_req_keyed(char *out, size_t cap, mk_cmd cmd, mk_str key, int64_t exptime, uint64_t delta,
                            bool noreply)
{
    if (cmd != MK_CMD_DELETE && cmd != MK_CMD_TOUCH && cmd != MK_CMD_INCR && cmd != MK_CMD_DECR)
        return 0;
    wbuf w = {out, cap, 0, true};
    w_str(&w, mk_cmd_name(cmd));
    w_mem(&w, " ", 1);
    w_mem(&w, key.p, key.n);
    if (cmd == MK_CMD_TOUCH) {
        w_mem(&w, " ", 1);
        w_i64(&w, exptime);
    } else if (cmd != MK_CMD_DELETE) {
        w_mem(&w, " ", 1);
        w_u64(&w, delta);
    }
    if (noreply)
        w_mem(&w, " noreply", 8);
    w_mem(&w, "\r\n", 2);
    return w_done(&w);
}

size_t mk_compose_req_cmd(char *out, size_t cap, mk_cmd cmd, mk_str arg, bool noreply)
{
    wbuf w = {out, cap, 0, true};
    w_str(&w, mk_cmd_name(cmd));
    if (arg.n) {
        w_mem(&w, " ", 1);
        w_mem(&w, arg.p, arg.n);
    }
    if (noreply)
        w_mem(&w, " noreply", 8);
    w_mem(&w, "\r\n", 2);
    return w_done(&w);
}

size_t mk_compose_meta_req(char *out, size_t cap, mk_cmd cmd, mk_str key, uint64_t vlen, mk_str flags)
{
    if (cmd < MK_CMD_MG || cmd > MK_CMD_ME || key.n > MK_KEY_MAX || key.n == 0)
        return 0;
    wbuf w = {out, cap, 0, true};
    w_str(&w, mk_cmd_name(cmd));
    w_mem(&w, " ", 1);
    w_mem(&w, key.p, key.n);
    if (cmd == MK_CMD_MS) {
        w_mem(&w, " ", 1);
        w_u64(&w, vlen);
    }
    if (flags.n) {
        w_mem(&w, " ", 1);
        w_mem(&w, flags.p, flags.n);
    }
    w_mem(&w, "\r\n", 2);
    return w_done(&w);
}
