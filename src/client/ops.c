/* client/ops.c — the blocking calls (get, store, delete, incr, touch, get_meta, invalidate, flush_all, version, stats): an op run to completion. */
#include "client/client.h"

#include <string.h>

/*
 * A noreply call goes in the meta protocol's quiet mode to a server that speaks
 * it (op.c): a blocking call may ask the key's live server once, first. Not
 * with auto-pipelining on a plain connection: the pipe sends it as a plain
 * request and reads its reply (pipe.c); one the pipe cannot take goes quiet if
 * the server is known to speak meta, else as classic noreply.
 */
static void ask_before_noreply(mk_client *c, const mk_op_args *a)
{
    if (c == NULL || a == NULL || !(a->mode & MK_NOREPLY) || !mk__quiet_capable(a->code) || a->key == NULL)
        return;
    if (c->opt.pipeline && mk__pipelinable(c))
        return;
    int i = a->server >= 0 ? a->server : mk_server_for_key(c, a->key, a->nkey);
    if (i >= 0 && (size_t)i < c->n && mk_server_alive(c, (size_t)i))
        (void)mk_server_speaks_meta(c, (size_t)i);
}

/* Run an op kept on the caller's stack (no allocation); the caller releases it
 * with mk__op_release when it wants results, else run() does. */
static int run_in(mk_client *c, const mk_op_args *a, mk_op *op, bool *live)
{
    ask_before_noreply(c, a);
    int rc = mk__op_init(c, a, op, false);
    *live = rc == 0;
    return rc ? rc : mk_op_run(op);
}

static int run(mk_client *c, const mk_op_args *a)
{
    mk_op op;
    ask_before_noreply(c, a);
    int rc = mk__op_init(c, a, &op, false);
    if (rc)
        return rc;
    rc = mk_op_run(&op);
    mk__op_release(&op);
    return rc;
}

static int get_common(mk_client *c, mk_opcode code, const char *key, size_t nkey, int64_t exptime,
                      mk_item *out)
{
    if (out == NULL)
        return MK_EINVAL;
    memset(out, 0, sizeof *out);
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = code;
    a.key = key;
    a.nkey = nkey;
    a.exptime = exptime;
    mk_op op;
    bool live;
    int rc = run_in(c, &a, &op, &live);
    if (rc == 0)
        rc = mk_op_take_item(&op, out);
    if (live)
        mk__op_release(&op);
    return rc;
}

int mk_get(mk_client *c, const char *key, size_t nkey, mk_item *out)
{
    return get_common(c, MK_OP_GET, key, nkey, 0, out);
}

int mk_gets(mk_client *c, const char *key, size_t nkey, mk_item *out)
{
    return get_common(c, MK_OP_GETS, key, nkey, 0, out);
}

int mk_gat(mk_client *c, const char *key, size_t nkey, int64_t exptime, mk_item *out)
{
    return get_common(c, MK_OP_GAT, key, nkey, exptime, out);
}

int mk_gats(mk_client *c, const char *key, size_t nkey, int64_t exptime, mk_item *out)
{
    return get_common(c, MK_OP_GATS, key, nkey, exptime, out);
}

int mk_store(mk_client *c, mk_store_op op, const char *key, size_t nkey, const void *value,
             size_t nvalue, uint32_t flags, int64_t exptime, uint64_t cas, unsigned mode)
{
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_STORE;
    a.store_op = op;
    a.key = key;
    a.nkey = nkey;
    a.value = value;
    a.nvalue = nvalue;
    a.flags = flags;
    a.exptime = exptime;
    a.cas = cas;
    a.mode = mode;
    return run(c, &a);
}

int mk_set(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
           uint32_t flags, int64_t exptime)
{
    return mk_store(c, MK_STORE_SET, key, nkey, value, nvalue, flags, exptime, 0, 0);
}

int mk_add(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
           uint32_t flags, int64_t exptime)
{
    return mk_store(c, MK_STORE_ADD, key, nkey, value, nvalue, flags, exptime, 0, 0);
}

int mk_replace(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
               uint32_t flags, int64_t exptime)
{
    return mk_store(c, MK_STORE_REPLACE, key, nkey, value, nvalue, flags, exptime, 0, 0);
}

int mk_append(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue)
{
    return mk_store(c, MK_STORE_APPEND, key, nkey, value, nvalue, 0, 0, 0, 0);
}

int mk_prepend(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue)
{
    return mk_store(c, MK_STORE_PREPEND, key, nkey, value, nvalue, 0, 0, 0, 0);
}

int mk_cas(mk_client *c, const char *key, size_t nkey, const void *value, size_t nvalue,
           uint32_t flags, int64_t exptime, uint64_t cas)
{
    return mk_store(c, MK_STORE_CAS, key, nkey, value, nvalue, flags, exptime, cas, 0);
}

int mk_delete(mk_client *c, const char *key, size_t nkey, unsigned mode)
{
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_DELETE;
    a.key = key;
    a.nkey = nkey;
    a.mode = mode;
    return run(c, &a);
}

static int arith(mk_client *c, mk_opcode code, const char *key, size_t nkey, uint64_t delta,
                 uint64_t *value, unsigned mode)
{
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = code;
    a.key = key;
    a.nkey = nkey;
    a.delta = delta;
    a.mode = mode;
    mk_op op;
    bool live;
    int rc = run_in(c, &a, &op, &live);
    if (rc == 0 && value && !(mode & MK_NOREPLY))
        *value = mk_op_number(&op);
    if (live)
        mk__op_release(&op);
    return rc;
}

int mk_incr(mk_client *c, const char *key, size_t nkey, uint64_t delta, uint64_t *value, unsigned mode)
{
    return arith(c, MK_OP_INCR, key, nkey, delta, value, mode);
}

int mk_decr(mk_client *c, const char *key, size_t nkey, uint64_t delta, uint64_t *value, unsigned mode)
{
    return arith(c, MK_OP_DECR, key, nkey, delta, value, mode);
}

int mk_touch(mk_client *c, const char *key, size_t nkey, int64_t exptime, unsigned mode)
{
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_TOUCH;
    a.key = key;
    a.nkey = nkey;
    a.exptime = exptime;
    a.mode = mode;
    return run(c, &a);
}

/* Whether key's server speaks the meta protocol (1, 0, or an error: then the op itself finds out). */
static int ask_meta(mk_client *c, const char *key, size_t nkey)
{
    if (c == NULL || key == NULL)
        return MK_EINVAL;
    int i = mk_server_for_key(c, key, nkey);
    if (i >= 0 && !mk_server_alive(c, (size_t)i))
        return 1; /* a dead server is not asked: the op fails fast on it, as every call does */
    return i < 0 ? i : mk_server_speaks_meta(c, (size_t)i);
}

int mk_get_meta(mk_client *c, const char *key, size_t nkey, int64_t vivify, int64_t recache, mk_item *out,
                unsigned *state)
{
    if (out == NULL)
        return MK_EINVAL;
    memset(out, 0, sizeof *out);
    if (state)
        *state = 0;
    if (ask_meta(c, key, nkey) == 0)
        return MK_EERROR;
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_MGET;
    a.key = key;
    a.nkey = nkey;
    a.vivify = vivify;
    a.recache = recache;
    mk_op op;
    bool live;
    int rc = run_in(c, &a, &op, &live);
    if (rc == 0) {
        rc = mk_op_take_item(&op, out);
        if (state)
            *state = mk_op_meta_state(&op);
    }
    if (live)
        mk__op_release(&op);
    return rc;
}

int mk_invalidate(mk_client *c, const char *key, size_t nkey, int64_t exptime)
{
    if (ask_meta(c, key, nkey) == 0)
        return MK_EERROR;
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_INVALIDATE;
    a.key = key;
    a.nkey = nkey;
    a.exptime = exptime;
    return run(c, &a);
}

int mk_flush_all(mk_client *c, int64_t delay, unsigned mode)
{
    if (c == NULL)
        return MK_EINVAL;
    int first = 0;
    for (size_t i = 0; i < c->n; i++) {
        mk_op_args a;
        mk_op_args_init(&a);
        a.code = MK_OP_FLUSH_ALL;
        a.server = (int)i;
        a.exptime = delay > 0 ? delay : -1;
        a.mode = mode;
        int rc = run(c, &a);
        if (rc && !first)
            first = rc;
    }
    return first;
}

int mk_version(mk_client *c, size_t server, char *buf, size_t cap)
{
    if (c == NULL || buf == NULL || cap == 0)
        return MK_EINVAL;
    if (server >= c->n)
        return MK_ERANGE;
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_VERSION;
    a.server = (int)server;
    mk_op op;
    bool live;
    int rc = run_in(c, &a, &op, &live);
    if (rc == 0) {
        const char *v = mk_op_text(&op);
        if (strlen(v) >= cap)
            rc = MK_ERANGE;
        else
            strcpy(buf, v);
    }
    if (live)
        mk__op_release(&op);
    return rc;
}

int mk_stats(mk_client *c, size_t server, const char *group, mk_stat_cb cb, void *ctx)
{
    if (c == NULL)
        return MK_EINVAL;
    if (server >= c->n)
        return MK_ERANGE;
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_STATS;
    a.server = (int)server;
    a.group = group;
    a.stat_cb = cb;
    a.ctx = ctx;
    return run(c, &a);
}
