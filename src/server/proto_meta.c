/* server/proto_meta.c — memcached's meta commands (mg ms md ma mn me) on an ASCII connection: parse (src/proto/meta.c), execute (exec.c), compose. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server/ascii.h"
#include "server/exec.h"

/* ---- small writers into a reply line being composed ---- */

static char *put_u64(char *p, uint64_t v)
{
    return p + mk_compose_u64(p, v);
}

static char *put_flag_u64(char *p, char letter, uint64_t v)
{
    *p++ = ' ';
    *p++ = letter;
    return put_u64(p, v);
}

static char *put_key(char *p, const mk_meta_req *m, mk_str key)
{
    return p + mk_compose_meta_key(p, 4 * MK_KEY_MAX / 3 + 8, key.p, key.n, m->key_b64);
}

static char *put_opaque(char *p, mk_str o)
{
    *p++ = ' ';
    memcpy(p, o.p, o.n);
    return p + o.n;
}

/* "t": seconds left as memcached prints them (-1: never expires). */
static char *put_ttl(char *p, int64_t exp_at, int64_t now)
{
    *p++ = ' ';
    *p++ = 't';
    if (exp_at == 0) {
        memcpy(p, "-1", 2);
        return p + 2;
    }
    return put_u64(p, (uint32_t)(exp_at - now));
}

/* Queue an error line: errors are sent whatever q says. */
static void reply_err(mk_conn *c, const char *line)
{
    mk_conn_reply(c, line);
}

/* A status line with only O and k echoed (a miss, NF, EX, NS), unless quiet. */
static void reply_code(mk_conn *c, const mk_meta_req *m, const char *code, bool quiet)
{
    if (quiet)
        return;
    char *line = mk_conn_reserve(c, MK_META_LINE_MAX);
    if (!line)
        return;
    char *p = line;
    memcpy(p, code, 2);
    p += 2;
    for (size_t i = 0; i < m->nflags; i++) {
        if (m->flag[i].p[0] == 'O')
            p = put_opaque(p, m->flag[i]);
        else if (m->flag[i].p[0] == 'k')
            p = put_key(p, m, m->key);
    }
    memcpy(p, "\r\n", 2);
    mk_conn_commit(c, (size_t)(p + 2 - line));
}

/* ---- mg ---- */

typedef struct mg_ctx {
    mk_conn *c;
    const mk_meta_req *m;
    mk_mget *g;
    int64_t now;
    bool failed;   /* no room for the reply: the connection closes */
} mg_ctx;

/* "VA <n>" or "HD", the return flags in request order, then Z X W and "\r\n". Returns the length. */
static size_t mg_head(char *line, const mg_ctx *x, const mk_item_view *v)
{
    const mk_meta_req *m = x->m;
    const mk_mget *g = x->g;
    char *p = line;
    bool value = mk_meta_has(m, 'v');
    if (value) {
        memcpy(p, "VA ", 3);
        p = put_u64(p + 3, v->nbytes);
    } else {
        memcpy(p, "HD", 2);
        p += 2;
    }
    int64_t exp = g->m.exp_before; /* the expiry as the flags so far left it (memcached applies T in order) */
    for (size_t i = 0; i < m->nflags; i++) {
        switch (m->flag[i].p[0]) {
        case 'T':
            exp = g->m.exp_at;
            break;
        case 'N':
            if (g->created)
                exp = mk_exptime_to_abs(m->viv_ttl, x->now);
            break;
        case 's':
            p = put_flag_u64(p, 's', v->nbytes);
            break;
        case 't':
            p = put_ttl(p, exp, x->now);
            break;
        case 'c':
            p = put_flag_u64(p, 'c', v->cas);
            break;
        case 'f':
            p = put_flag_u64(p, 'f', v->flags);
            break;
        case 'l':
            p = put_flag_u64(p, 'l', (uint32_t)(x->now - (g->created ? x->now : g->m.stored_at)));
            break;
        case 'h':
            p = put_flag_u64(p, 'h', g->m.fetched);
            break;
        case 'O':
            p = put_opaque(p, m->flag[i]);
            break;
        case 'k': /* the stored item's key, re-encoded if it came base64-encoded (memcached's ITEM_KEY_BINARY) */
            p += mk_compose_meta_key(p, 4 * MK_KEY_MAX / 3 + 8, m->key.p, m->key.n, g->m.key_binary);
            break;
        default:
            break;
        }
    }
    if (g->m.token_sent)
        *p++ = ' ', *p++ = 'Z';
    if (g->m.stale)
        *p++ = ' ', *p++ = 'X';
    if (g->m.win)
        *p++ = ' ', *p++ = 'W';
    memcpy(p, "\r\n", 2);
    return (size_t)(p + 2 - line);
}

/* Queue a whole hit reply (header, and the value when v) from a view; false: no memory. */
static bool mg_queue(const mg_ctx *x, const mk_item_view *v)
{
    bool value = mk_meta_has(x->m, 'v');
    char *line = mk_conn_reserve(x->c, MK_META_LINE_MAX + (value ? v->nbytes + 2 : 0));
    if (!line)
        return false;
    size_t n = mg_head(line, x, v);
    if (value) {
        memcpy(line + n, v->data, v->nbytes);
        memcpy(line + n + v->nbytes, "\r\n", 2);
        n += v->nbytes + 2;
    }
    return mk_conn_commit(x->c, n);
}

static bool opaque_too_long(const mk_meta_req *m)
{
    return m->opaque.n > MK_META_OPAQUE_MAX;
}

/* Under the store's lock: copy a small hit's reply straight into the output (mk_cache_read_fn). */
static bool mg_copy(void *ctx, const mk_item_view *v)
{
    mg_ctx *x = ctx;
    if (opaque_too_long(x->m))
        return false; /* the reply is an error */
    if (mk_meta_has(x->m, 'v') && v->nbytes > MK_CONN_INLINE_VALUE_MAX)
        return true; /* large: the reply references the item */
    if (!mg_queue(x, v))
        x->failed = true;
    return false;
}

/* memcached's exptime for meta tokens: negative is already expired. */
static int64_t meta_exp(const mk_conn *c, int32_t ttl)
{
    return mk_exptime_to_abs(ttl, c->worker->now);
}

static void do_mg(mk_conn *c, const mk_meta_req *m)
{
    mk_mget g = {.count_touch = mk_meta_has(m, 'T'), .vivify = mk_meta_has(m, 'N'),
                 .ecas = mk_meta_has(m, 'E') ? &m->ecas : NULL};
    g.m.no_bump = mk_meta_has(m, 'u');
    g.m.touch = mk_meta_has(m, 'T');
    g.m.exp_at = meta_exp(c, m->ttl);
    g.m.recache_at = mk_meta_has(m, 'R') ? meta_exp(c, m->recache) : 0;
    /* flags act in request order: a vivified item ends with the expiry of the last of T and N, and R is
     * judged on the expiry T set only when T came before it */
    bool seen_r = false;
    for (size_t i = 0; i < m->nflags; i++) {
        char f = m->flag[i].p[0];
        if (f == 'T') {
            g.viv_exp_at = g.m.exp_at;
            g.m.recache_after_touch = !seen_r;
        } else if (f == 'N') {
            g.viv_exp_at = meta_exp(c, m->viv_ttl);
        } else if (f == 'R') {
            seen_r = true;
        }
    }

    mg_ctx x = {.c = c, .m = m, .g = &g, .now = c->worker->now};
    mk_item *it = NULL;
    mk_status st = mk_exec_mget(c->worker, m->key, &g, mg_copy, &x, &it);
    if (x.failed) {
        mk_item_put(c->worker->srv->cache, it);
        mk_conn_set_state(c, MK_CONN_CLOSING);
        return;
    }
    if (opaque_too_long(m)) {
        mk_item_put(c->worker->srv->cache, it);
        reply_err(c, "CLIENT_ERROR opaque token too long");
        return;
    }
    if (st != MK_ST_OK) {
        reply_code(c, m, "EN", mk_meta_has(m, 'q'));
        return;
    }
    if (!it)
        return; /* copied under the lock */
    mk_item_view v = {.data = mk_item_data(it), .nbytes = mk_item_nbytes(it), .flags = mk_item_flags(it),
                      .cas = mk_item_cas(it)};
    bool ok;
    if (!mk_meta_has(m, 'v') || v.nbytes <= MK_CONN_INLINE_VALUE_MAX) {
        ok = mg_queue(&x, &v);
        mk_item_put(c->worker->srv->cache, it);
    } else {
        char line[MK_META_LINE_MAX];
        size_t n = mg_head(line, &x, &v);
        ok = mk_conn_out(c, line, n);
        if (ok)
            ok = mk_conn_out_value(c, it); /* takes the reference */
        else
            mk_item_put(c->worker->srv->cache, it);
    }
    if (!ok)
        mk_conn_set_state(c, MK_CONN_CLOSING);
}

/* ---- ms ---- */

static mk_store_op ms_op(const mk_meta_req *m, unsigned *opts)
{
    bool cas = mk_meta_has(m, 'C');
    *opts = 0;
    switch (m->mode) {
    case 'E':
        return MK_STORE_ADD;
    case 'A':
    case 'P':
        *opts = MK_STORE_X_CAS_JOIN;
        return m->mode == 'A' ? MK_STORE_APPEND : MK_STORE_PREPEND;
    case 'R':
        if (cas)
            break;
        return MK_STORE_REPLACE;
    default:
        if (!cas)
            return MK_STORE_SET;
        break;
    }
    /* set or replace with C is a cas; with I an older cas may write a stale value */
    if (mk_meta_has(m, 'I'))
        *opts = MK_STORE_X_STALE;
    return MK_STORE_CAS;
}

static void do_ms(mk_conn *c, const mk_meta_req *m)
{
    mk_item *it = NULL;
    mk_status st = mk_exec_alloc_any(c->worker, m->key, m->client_flags, mk_meta_has(m, 'T') ? m->ttl : 0, m->vlen,
                                     mk_meta_has(m, 'E') ? &m->ecas : NULL, &it);
    if (st != MK_ST_OK) {
        reply_err(c, mk_text_status_line(MK_CMD_SET, st));
        mk_conn_start_swallow(c, m->vlen + 2);
        return;
    }
    if (m->key_b64)
        mk_item_set_meta(it, MK_ITEM_BINKEY);
    mk_meta_pending *p = &mk_ascii(c)->meta;
    unsigned opts;
    mk_store_op op = ms_op(m, &opts);
    *p = (mk_meta_pending){.op = op, .opts = opts, .cas_in = m->cas_in, .quiet = mk_meta_has(m, 'q'),
                           .key_b64 = m->key_b64, .nkey = m->key.n};
    memcpy(p->key, m->key.p, m->key.n);
    for (size_t i = 0; i < m->nflags && p->nret < sizeof(p->ret); i++) {
        char f = m->flag[i].p[0];
        if (f == 'O' || f == 'k' || f == 'c' || f == 's')
            p->ret[p->nret++] = f;
    }
    p->nopaque = m->opaque.n;
    if (m->opaque.n)
        memcpy(p->opaque, m->opaque.p, m->opaque.n);
    mk_ascii(c)->meta_nread = true;
    mk_conn_start_nread(c, it);
}

/* The data block of an ms is in: store it and reply "HD"/"NS"/"EX"/"NF" with O, k and c echoed. */
static void ms_complete(mk_conn *c, mk_item *it, bool tail_ok)
{
    const mk_meta_pending *p = &mk_ascii(c)->meta;
    if (!tail_ok) {
        reply_err(c, mk_text_status_line(MK_CMD_SET, mk_exec_store_bad_chunk(c->worker, it)));
        return;
    }
    uint64_t cas = 0;
    size_t nbytes = 0;
    mk_status st = mk_exec_store_ex(c->worker, it, p->op, p->cas_in, p->opts, &cas, &nbytes);
    mk_item_put(c->worker->srv->cache, it);
    if (st == MK_ST_TOO_LARGE || st == MK_ST_NO_MEMORY) {
        reply_err(c, mk_text_status_line(MK_CMD_SET, st));
        return;
    }
    if (st == MK_ST_STORED && p->quiet)
        return;
    char *line = mk_conn_reserve(c, MK_META_LINE_MAX);
    if (!line)
        return;
    char *q = line;
    memcpy(q, mk_meta_status_code(MK_CMD_MS, st), 2);
    q += 2;
    for (size_t i = 0; i < p->nret; i++) {
        if (p->ret[i] == 'O') {
            q = put_opaque(q, (mk_str){p->opaque, p->nopaque});
        } else if (p->ret[i] == 'k') {
            q += mk_compose_meta_key(q, 4 * MK_KEY_MAX / 3 + 8, p->key, p->nkey, p->key_b64);
        } else if (p->ret[i] == 's') { /* the stored value's length (1.6.27+; 1.6.18 ignores s on ms) */
            if (st == MK_ST_STORED)
                q = put_flag_u64(q, 's', nbytes);
        } else {
            q = put_flag_u64(q, 'c', cas);
        }
    }
    memcpy(q, "\r\n", 2);
    mk_conn_commit(c, (size_t)(q + 2 - line));
}

/* ---- md, ma, me ---- */

static void do_md(mk_conn *c, const mk_meta_req *m)
{
    mk_mdelete d = {.cas_in = m->cas_in, .stale = mk_meta_has(m, 'I'), .set_exp = mk_meta_has(m, 'T'),
                    .exptime = m->ttl, .remove_value = mk_meta_has(m, 'x'), .flags = m->client_flags,
                    .ecas = mk_meta_has(m, 'E') ? &m->ecas : NULL};
    mk_status st = mk_exec_mdelete(c->worker, m->key, &d);
    if (st == MK_ST_NO_MEMORY) {
        reply_err(c, "SERVER_ERROR out of memory");
        return;
    }
    reply_code(c, m, mk_meta_status_code(MK_CMD_MD, st), st == MK_ST_DELETED && mk_meta_has(m, 'q'));
}

static void do_ma(mk_conn *c, const mk_meta_req *m)
{
    mk_marith a = {.incr = m->mode != 'D' && m->mode != '-', .delta = m->delta, .cas_in = m->cas_in,
                   .set_exp = mk_meta_has(m, 'T'), .exp_at = meta_exp(c, m->ttl), .vivify = mk_meta_has(m, 'N'),
                   .initial = m->initial, .ecas = mk_meta_has(m, 'E') ? &m->ecas : NULL};
    int64_t viv_exp = 0;
    for (size_t i = 0; i < m->nflags; i++) {
        if (m->flag[i].p[0] == 'T')
            viv_exp = a.exp_at;
        else if (m->flag[i].p[0] == 'N')
            viv_exp = meta_exp(c, m->viv_ttl);
    }
    a.viv_exp_at = viv_exp;
    mk_status st = mk_exec_marith(c->worker, m->key, &a);
    if (st == MK_ST_NON_NUMERIC || st == MK_ST_NO_MEMORY) {
        reply_err(c, st == MK_ST_NO_MEMORY && a.vivify ? "SERVER_ERROR Out of memory allocating new item"
                                                        : mk_text_status_line(MK_CMD_INCR, st));
        return;
    }
    if (opaque_too_long(m)) {
        reply_err(c, "CLIENT_ERROR opaque token too long");
        return;
    }
    if (st != MK_ST_OK) {
        reply_code(c, m, mk_meta_status_code(MK_CMD_MA, st), false);
        return;
    }
    if (mk_meta_has(m, 'q') && !a.created)
        return;
    char num[24];
    size_t nn = (size_t)(put_u64(num, a.result) - num);
    char *line = mk_conn_reserve(c, MK_META_LINE_MAX + 24);
    if (!line)
        return;
    char *p = line;
    if (mk_meta_has(m, 'v')) {
        memcpy(p, "VA ", 3);
        p = put_u64(p + 3, nn);
    } else {
        memcpy(p, "HD", 2);
        p += 2;
    }
    int64_t exp = a.created ? 0 : a.exp_before;
    for (size_t i = 0; i < m->nflags; i++) {
        switch (m->flag[i].p[0]) {
        case 'c':
            p = put_flag_u64(p, 'c', a.cas);
            break;
        case 't':
            p = put_ttl(p, exp, c->worker->now);
            break;
        case 'T':
            exp = a.exp_at;
            break;
        case 'N':
            if (a.created)
                exp = meta_exp(c, m->viv_ttl);
            break;
        case 'O':
            p = put_opaque(p, m->flag[i]);
            break;
        case 'k':
            p = put_key(p, m, m->key);
            break;
        default:
            break;
        }
    }
    if (mk_meta_has(m, 'v')) {
        memcpy(p, "\r\n", 2);
        memcpy(p + 2, num, nn);
        p += 2 + nn;
    }
    memcpy(p, "\r\n", 2);
    mk_conn_commit(c, (size_t)(p + 2 - line));
}

static void do_me(mk_conn *c, const mk_meta_req *m)
{
    mk_cache_peek pk;
    int64_t now = c->worker->now;
    if (mk_cache_peek_item(c->worker->srv->cache, m->key.p, m->key.n, now, &pk) != MK_C_OK) {
        mk_conn_reply(c, "EN");
        return;
    }
    char *line = mk_conn_reserve(c, MK_META_LINE_MAX);
    if (!line)
        return;
    char *p = line;
    memcpy(p, "ME ", 3);
    p += 3;
    if (m->key_b64) {
        size_t n = mk_compose_meta_key(p, 4 * MK_KEY_MAX / 3 + 8, m->key.p, m->key.n, true);
        memmove(p, p + 2, n - 4); /* the encoded key alone: no " k", no " b" */
        p += n - 4;
    } else {
        memcpy(p, m->key.p, m->key.n);
        p += m->key.n;
    }
    p += sprintf(p, " exp=%d la=%" PRIu64 " cas=%" PRIu64 " fetch=%s cls=%u size=%zu\r\n",
                 pk.exp_at == 0 ? -1 : (int)(now - pk.exp_at), (uint64_t)(now - pk.stored_at), pk.cas,
                 pk.fetched ? "yes" : "no", pk.cls + 1, pk.size);
    mk_conn_commit(c, (size_t)(p - line));
}

void mk_meta_execute(mk_conn *c, const mk_request *req)
{
    mk_meta_req m;
    mk_parse_meta(req, &m);
    if (m.err) {
        reply_err(c, m.err);
        if (m.action == MK_PA_SWALLOW)
            mk_conn_start_swallow(c, m.swallow);
        return;
    }
    switch (m.cmd) {
    case MK_CMD_MG:
        do_mg(c, &m);
        break;
    case MK_CMD_MS:
        do_ms(c, &m);
        break;
    case MK_CMD_MD:
        do_md(c, &m);
        break;
    case MK_CMD_MA:
        do_ma(c, &m);
        break;
    case MK_CMD_ME:
        do_me(c, &m);
        break;
    default: /* mn: the end of a pipeline; memcached transmits what it has queued */
        mk_conn_reply(c, "MN");
        mk_conn_mark_sent(c);
        break;
    }
}

void mk_meta_complete_nread(mk_conn *c, mk_item *it, bool tail_ok)
{
    ms_complete(c, it, tail_ok);
}
