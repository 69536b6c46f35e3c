/* server/proto_binary.c — memcached's binary protocol on a connection: a frame checked (src/proto/binary.c), executed (exec.c), answered as memcached 1.6.18 answers it. */
#include <stdlib.h>
#include <string.h>

#include "memkit/binary.h"
#include "server/proto_binary.h"
#include "server/sasl.h"
#include "server/exec.h"
#include "server/stats_cmd.h"
#include "server/version.h"

static mk_bin_state *bst(mk_conn *c)
{
    return (mk_bin_state *)c->pstate;
}

/* Queue a response header. */
static bool put_hdr(mk_conn *c, uint8_t opcode, uint16_t status, uint8_t extlen, uint16_t keylen, uint32_t bodylen,
                    uint32_t opaque, uint64_t cas)
{
    char *p = mk_conn_reserve(c, MK_BIN_HDR);
    if (!p)
        return false;
    mk_bin_compose_hdr((uint8_t *)p, MK_BIN_MAGIC_RES, opcode, status, extlen, keylen, bodylen, opaque, cas);
    return mk_conn_commit(c, MK_BIN_HDR);
}

/* A header and a body from bytes. */
static void respond(mk_conn *c, const mk_bin_frame *f, uint16_t status, uint64_t cas, const void *body, size_t n)
{
    if (put_hdr(c, f->opcode, status, 0, 0, (uint32_t)n, f->opaque, cas) && n)
        mk_conn_out(c, body, n);
}

/*
 * memcached transmits its queue at once after an error, a NOOP or a QUIT (and
 * whenever it runs out of input); a bad magic then drops only what was queued
 * since. The reply queue's sent mark records that point.
 */
static void transmitted(mk_conn *c)
{
    mk_conn_mark_sent(c);
}

/* An error: its status and memcached's text for it (always sent, quiet or not). */
static void error(mk_conn *c, const mk_bin_frame *f, uint16_t status)
{
    const char *t = mk_bin_status_text(status);
    respond(c, f, status, 0, t, strlen(t));
    transmitted(c);
}

/* ---- get, getk, gat, gatk, touch (and the quiet ones) ---- */

static void do_get(mk_conn *c, const mk_bin_frame *f, uint8_t op, bool quiet)
{
    mk_worker *wk = c->worker;
    bool touch = op == MK_BIN_TOUCH || op == MK_BIN_GAT || op == MK_BIN_GATK;
    bool with_key = op == MK_BIN_GETK || op == MK_BIN_GATK;
    bool with_value = op != MK_BIN_TOUCH;
    mk_get_opts o = {.touch = true, .count_touch = true, .touch_only = true};
    if (touch)
        o.exp_at = mk_exptime_to_abs(mk_bin_u32(f->ext), wk->now);
    mk_item *it = NULL;
    if (mk_exec_get(wk, f->key, touch ? &o : NULL, NULL, NULL, &it) != MK_ST_OK) {
        if (quiet)
            return;
        if (with_key) { /* the key, and no text */
            if (put_hdr(c, f->opcode, MK_BIN_KEY_ENOENT, 0, f->keylen, f->keylen, f->opaque, 0))
                mk_conn_out(c, f->key.p, f->key.n);
        } else {
            error(c, f, MK_BIN_KEY_ENOENT);
        }
        return;
    }
    size_t nbytes = mk_item_nbytes(it);
    uint16_t keylen = with_key ? f->keylen : 0;
    uint32_t bodylen = 4 + keylen + (uint32_t)(with_value ? nbytes : 0);
    uint8_t flags[4];
    mk_bin_put_u32(flags, mk_item_flags(it));
    bool ok = put_hdr(c, f->opcode, MK_BIN_OK, 4, keylen, bodylen, f->opaque, mk_item_cas(it)) &&
              mk_conn_out(c, (const char *)flags, 4) && (!with_key || mk_conn_out(c, f->key.p, f->key.n));
    if (ok && with_value) {
        ok = mk_conn_out_value_raw(c, it); /* takes the reference */
        it = NULL;
    }
    mk_item_put(wk->srv->cache, it);
    if (!ok)
        mk_conn_set_state(c, MK_CONN_CLOSING);
}

/* ---- set, add, replace, append, prepend: the value is read next ---- */

static void do_store(mk_conn *c, const mk_bin_frame *f, uint8_t op, bool quiet)
{
    bool update = op == MK_BIN_SET || op == MK_BIN_ADD || op == MK_BIN_REPLACE;
    uint32_t flags = update ? mk_bin_u32(f->ext) : 0;
    int64_t exptime = update ? (int64_t)mk_bin_u32(f->ext + 4) : 0;
    uint32_t vlen = mk_bin_vlen(f);
    mk_store_op sop = op == MK_BIN_ADD ? MK_STORE_ADD : op == MK_BIN_REPLACE ? MK_STORE_REPLACE
                    : op == MK_BIN_APPEND ? MK_STORE_APPEND : op == MK_BIN_PREPEND ? MK_STORE_PREPEND : MK_STORE_SET;
    mk_item *it = NULL;
    /* (a failed binary SET unlinks the old value, cas or not, as memcached's does) */
    mk_status st = mk_exec_alloc(c->worker, f->key, flags, exptime, vlen, sop, &it);
    if (st != MK_ST_OK) {
        error(c, f, st == MK_ST_TOO_LARGE ? MK_BIN_E2BIG : MK_BIN_ENOMEM);
        mk_conn_start_swallow(c, vlen);
        return;
    }
    mk_bin_state *s = bst(c);
    s->opcode = f->opcode;
    s->quiet = quiet;
    s->opaque = f->opaque;
    s->cas_in = f->cas;
    s->opts = 0;
    if (f->cas != 0 && update)
        sop = MK_STORE_CAS; /* set/add/replace with a cas is a cas */
    else if (f->cas != 0)
        s->opts = MK_STORE_X_CAS_JOIN; /* append/prepend: only onto that cas */
    s->op = sop;
    mk_conn_start_nread_raw(c, it);
}

static void bin_complete_nread(mk_conn *c, mk_item *it, bool tail_ok)
{
    (void)tail_ok; /* binary values have no "\r\n" after them */
    mk_bin_state *s = bst(c);
    mk_bin_frame f = {.opcode = s->opcode, .opaque = s->opaque};
    uint64_t cas = 0;
    mk_status st = mk_exec_store_ex(c->worker, it, s->op, s->cas_in, s->opts, &cas, NULL);
    mk_item_put(c->worker->srv->cache, it);
    switch (st) {
    case MK_ST_STORED:
        if (!s->quiet)
            respond(c, &f, MK_BIN_OK, cas, NULL, 0);
        return;
    case MK_ST_EXISTS:
        error(c, &f, MK_BIN_KEY_EEXISTS);
        return;
    case MK_ST_NOT_FOUND:
        error(c, &f, MK_BIN_KEY_ENOENT);
        return;
    default: /* not stored (also too large or no memory for an append): memcached words it by command */
        error(c, &f, s->op == MK_STORE_ADD ? MK_BIN_KEY_EEXISTS
                     : s->op == MK_STORE_REPLACE ? MK_BIN_KEY_ENOENT : MK_BIN_NOT_STORED);
        return;
    }
}

/* ---- delete, incr/decr, flush ---- */

static void do_delete(mk_conn *c, const mk_bin_frame *f, bool quiet)
{
    mk_status st = mk_exec_delete_cas(c->worker, f->key, f->cas);
    if (st == MK_ST_DELETED) {
        if (!quiet)
            respond(c, f, MK_BIN_OK, 0, NULL, 0);
    } else {
        error(c, f, st == MK_ST_EXISTS ? MK_BIN_KEY_EEXISTS : MK_BIN_KEY_ENOENT);
    }
}

static void do_arith(mk_conn *c, const mk_bin_frame *f, uint8_t op, bool quiet)
{
    mk_worker *wk = c->worker;
    uint32_t exptime = mk_bin_u32(f->ext + 16);
    mk_marith a = {.incr = op == MK_BIN_INCREMENT, .delta = mk_bin_u64(f->ext), .cas_in = f->cas,
                   .vivify = exptime != 0xffffffffu, .initial = mk_bin_u64(f->ext + 8),
                   .viv_exp_at = mk_exptime_to_abs(exptime, wk->now)};
    switch (mk_exec_marith(wk, f->key, &a)) {
    case MK_ST_OK: {
        if (quiet)
            return;
        uint8_t v[8];
        mk_bin_put_u64(v, a.result);
        respond(c, f, MK_BIN_OK, a.cas, v, 8);
        return;
    }
    case MK_ST_NON_NUMERIC:
        error(c, f, MK_BIN_DELTA_BADVAL);
        return;
    case MK_ST_NO_MEMORY:
        error(c, f, MK_BIN_ENOMEM);
        return;
    case MK_ST_EXISTS:
        error(c, f, MK_BIN_KEY_EEXISTS);
        return;
    default:
        error(c, f, MK_BIN_KEY_ENOENT);
        return;
    }
}

static void do_flush(mk_conn *c, const mk_bin_frame *f, bool quiet)
{
    int64_t exptime = f->extlen == 4 ? (int64_t)mk_bin_u32(f->ext) : 0;
    if (!mk_exec_flush(c->worker, true, exptime)) {
        error(c, f, MK_BIN_AUTH_ERROR); /* flush_all disabled (-F) */
        return;
    }
    if (!quiet)
        respond(c, f, MK_BIN_OK, 0, NULL, 0);
}

/* ---- stat ---- */

typedef struct stat_out {
    mk_conn *c;
    const mk_bin_frame *f;
} stat_out;

/* One statistic: a STAT response with the name as its key and the value as its value. */
static void bin_stat(void *ctx, const char *name, const char *value)
{
    stat_out *o = ctx;
    size_t nk = strlen(name), nv = strlen(value);
    if (put_hdr(o->c, o->f->opcode, MK_BIN_OK, 0, (uint16_t)nk, (uint32_t)(nk + nv), o->f->opaque, 0)) {
        mk_conn_out(o->c, name, nk);
        mk_conn_out(o->c, value, nv);
    }
}

typedef struct dump_buf {
    char *p;
    size_t n, cap;
    bool failed;
} dump_buf;

static void dump_line(void *ctx, const char *line)
{
    dump_buf *d = ctx;
    size_t k = strlen(line);
    if (d->failed)
        return;
    if (d->n + k + 2 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4096;
        while (cap < d->n + k + 2)
            cap *= 2;
        char *p = realloc(d->p, cap);
        if (!p) {
            d->failed = true;
            return;
        }
        d->p = p;
        d->cap = cap;
    }
    memcpy(d->p + d->n, line, k);
    memcpy(d->p + d->n + k, "\r\n", 2);
    d->n += k + 2;
}

static bool starts(mk_str s, const char *w)
{
    size_t n = strlen(w);
    return s.n >= n && memcmp(s.p, w, n) == 0;
}

/*
 * memcached matches the binary stat key by prefix ("reset", "settings",
 * "detail" + " dump" / " on" / " off"); "items", "slabs" and "sizes" by name;
 * it knows no other group here ("conns" is the text protocol's only). Every
 * answer but an error ends with an empty STAT response.
 */
static bool binary_group(mk_str key)
{
    static const char *const names[] = {"items", "slabs", "sizes"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (key.n == strlen(names[i]) && memcmp(key.p, names[i], key.n) == 0)
            return true;
    return false;
}

static void do_stat(mk_conn *c, const mk_bin_frame *f)
{
    mk_server *srv = c->worker->srv;
    stat_out o = {c, f};
    mk_stat_sink k = {bin_stat, &o};
    mk_str key = f->key;
    if (key.n > 0 && starts(key, "reset")) {
        key = (mk_str){"reset", 5};
    } else if (key.n > 0 && starts(key, "settings")) {
        key = (mk_str){"settings", 8};
    } else if (starts(key, "detail")) {
        mk_str sub = {key.p + 6, key.n - 6};
        key = starts(sub, " dump") ? (mk_str){"detail dump", 11} : starts(sub, " on") ? (mk_str){"detail on", 9}
            : starts(sub, " off") ? (mk_str){"detail off", 10} : (mk_str){"detail ?", 8};
    } else if (key.n > 0 && !binary_group(key)) {
        error(c, f, MK_BIN_KEY_ENOENT);
        return;
    }
    switch (mk_stats_group(srv, key, &k)) {
    case MK_STATS_UNKNOWN:
    case MK_STATS_USAGE:
        error(c, f, MK_BIN_KEY_ENOENT);
        return;
    case MK_STATS_DUMP: {
        dump_buf d = {0};
        mk_server_detail_dump(srv, dump_line, &d);
        dump_line(&d, "END"); /* memcached's dump text ends with it, as the text protocol's reply does */
        if (d.failed) {
            free(d.p);
            error(c, f, MK_BIN_ENOMEM);
            return;
        }
        if (put_hdr(c, f->opcode, MK_BIN_OK, 0, 8, (uint32_t)(8 + d.n), f->opaque, 0)) {
            mk_conn_out(c, "detailed", 8);
            if (d.n)
                mk_conn_out(c, d.p, d.n);
        }
        free(d.p);
        break;
    }
    default:
        break;
    }
    respond(c, f, MK_BIN_OK, 0, NULL, 0); /* the terminator */
}

/* ---- SASL (-S) ---- */

#define SASL_MECH_MAX 32      /* memcached's MAX_SASL_MECH_LEN */
#define SASL_DATA_MAX 8192    /* longer SASL data: Out of memory, as memcached answers data it cannot hold */

/* What may run before authentication: the SASL requests themselves and version (memcached's list). */
static bool allowed_unauthenticated(uint8_t opcode)
{
    return opcode == MK_BIN_SASL_LIST_MECHS || opcode == MK_BIN_SASL_AUTH || opcode == MK_BIN_SASL_STEP ||
           opcode == MK_BIN_VERSION;
}

/* The connection's SASL state, made on first use; every SASL request starts unauthenticated again. */
static mk_sasl_conn *sasl_of(mk_conn *c)
{
    mk_bin_state *s = bst(c);
    if (!s->sasl)
        s->sasl = mk_sasl_conn_new();
    s->authenticated = false;
    return s->sasl;
}

static void do_sasl_list(mk_conn *c, const mk_bin_frame *f)
{
    const char *mechs;
    unsigned n;
    if (!mk_sasl_list_mechs(sasl_of(c), &mechs, &n)) {
        error(c, f, MK_BIN_AUTH_ERROR);
        return;
    }
    respond(c, f, MK_BIN_OK, 0, mechs, n);
}

/* SASL_AUTH / SASL_STEP: the mechanism is the key, the client's data the value (read whole first). */
static ssize_t do_sasl_auth(mk_conn *c, const mk_bin_frame *f, uint8_t op, size_t used, size_t avail)
{
    uint32_t vlen = mk_bin_vlen(f);
    if (f->keylen > SASL_MECH_MAX || vlen > SASL_DATA_MAX) {
        error(c, f, f->keylen > SASL_MECH_MAX ? MK_BIN_EINVAL : MK_BIN_ENOMEM);
        mk_conn_start_swallow(c, vlen);
        return (ssize_t)used;
    }
    if (avail - used < vlen)
        return 0; /* the data is not all here yet */
    char mech[SASL_MECH_MAX + 1];
    memcpy(mech, f->key.p, f->key.n);
    mech[f->key.n] = '\0';
    const char *out;
    unsigned outlen;
    mk_sasl_conn *sc = sasl_of(c);
    mk_thread_stats *ts = &c->worker->stats;
    switch (mk_sasl_auth(sc, op == MK_BIN_SASL_STEP, mech, f->key.p + f->key.n, vlen, &out, &outlen)) {
    case MK_SASL_OK:
        bst(c)->authenticated = true;
        MK_STAT_INC(ts, auth_cmds);
        respond(c, f, MK_BIN_OK, 0, "Authenticated", 13);
        break;
    case MK_SASL_CONTINUE:
        respond(c, f, MK_BIN_AUTH_CONTINUE, 0, out, outlen);
        transmitted(c);
        break;
    default:
        MK_STAT_INC(ts, auth_cmds);
        MK_STAT_INC(ts, auth_errors);
        error(c, f, MK_BIN_AUTH_ERROR);
        break;
    }
    return (ssize_t)(used + vlen);
}

static void bin_release(mk_conn *c)
{
    mk_bin_state *s = bst(c);
    mk_sasl_conn_free(s->sasl);
    s->sasl = NULL;
}

/* ---- the protocol ---- */

static ssize_t bin_execute(mk_conn *c, const char *in, size_t len)
{
    mk_bin_frame f;
    ssize_t used = mk_bin_parse_req(in, len, &f);
    if (used < 0) {
        /* not a request: memcached closes without a word, dropping what it had not transmitted */
        mk_conn_out_rollback(c, &c->sent_mark);
        return -1;
    }
    if (used == 0)
        return 0;
    uint8_t op;
    bool quiet;
    mk_bin_verdict v = mk_bin_check_req(&f, &op, &quiet);
    bool sasl = c->worker->srv->settings->sasl;
    if (v != MK_BINV_BAD_LENGTHS && sasl && !bst(c)->authenticated && !allowed_unauthenticated(f.opcode)) {
        error(c, &f, MK_BIN_AUTH_ERROR); /* memcached: checked before anything else but the lengths */
        return -1;
    }
    switch (v) {
    case MK_BINV_OK:
        break;
    case MK_BINV_BAD_LENGTHS:
        error(c, &f, MK_BIN_UNKNOWN_COMMAND);
        return -1;
    case MK_BINV_KEY_TOO_LONG:
    case MK_BINV_BAD_FORMAT:
        error(c, &f, MK_BIN_EINVAL);
        return -1;
    case MK_BINV_UNKNOWN:
        /* memcached discards bodylen bytes after the extras and key it has already read */
        error(c, &f, MK_BIN_UNKNOWN_COMMAND);
        mk_conn_start_swallow(c, f.bodylen);
        return used;
    }
    switch (op) {
    case MK_BIN_GET:
    case MK_BIN_GETK:
    case MK_BIN_GAT:
    case MK_BIN_GATK:
    case MK_BIN_TOUCH:
        do_get(c, &f, op, quiet);
        break;
    case MK_BIN_SET:
    case MK_BIN_ADD:
    case MK_BIN_REPLACE:
    case MK_BIN_APPEND:
    case MK_BIN_PREPEND:
        do_store(c, &f, op, quiet);
        break;
    case MK_BIN_DELETE:
        do_delete(c, &f, quiet);
        break;
    case MK_BIN_INCREMENT:
    case MK_BIN_DECREMENT:
        do_arith(c, &f, op, quiet);
        break;
    case MK_BIN_FLUSH:
        do_flush(c, &f, quiet);
        break;
    case MK_BIN_NOOP:
        respond(c, &f, MK_BIN_OK, 0, NULL, 0);
        transmitted(c); /* (a NOOP is how a binary client closes a pipeline) */
        break;
    case MK_BIN_VERSION:
        respond(c, &f, MK_BIN_OK, 0, MK_WIRE_VERSION, strlen(MK_WIRE_VERSION));
        break;
    case MK_BIN_STAT:
        do_stat(c, &f);
        break;
    case MK_BIN_QUIT:
        if (!quiet)
            respond(c, &f, MK_BIN_OK, 0, NULL, 0);
        return -1;
    case MK_BIN_SASL_LIST_MECHS:
    case MK_BIN_SASL_AUTH:
    case MK_BIN_SASL_STEP:
        if (!sasl) { /* SASL is off: memcached answers as for an unknown command and discards the value */
            error(c, &f, MK_BIN_UNKNOWN_COMMAND);
            mk_conn_start_swallow(c, f.bodylen - f.keylen);
        } else if (op == MK_BIN_SASL_LIST_MECHS) {
            do_sasl_list(c, &f);
        } else {
            return do_sasl_auth(c, &f, op, (size_t)used, len);
        }
        break;
    default:
        break;
    }
    return used;
}

const mk_protocol mk_protocol_binary = {
    .name = "binary",
    .execute = bin_execute,
    .complete_nread = bin_complete_nread,
    .state_size = sizeof(mk_bin_state),
    .release = bin_release,
    .frames_empty = true, /* memcached: a quiet command's response object is empty, not skipped */
};
