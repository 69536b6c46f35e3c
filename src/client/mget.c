/* client/mget.c — multi-get: keys grouped by server, one pipelined get per server, all servers driven by one poll(). */
#include "client/client.h"

#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/*
 *   keys ──► mk__pick per key ──► group by server ──► one mk_op per server ("get k1 k2 ...")
 *                                                        │ all started, then
 *   poll() over every socket still waiting ◄─────────────┘ step the ready ones until all are done
 *
 * Hits are delivered as they arrive, through the op's value_cb, mapped back to
 * the caller's key positions.
 */

typedef struct group {
    size_t *idx;                /* caller positions of this server's keys */
    const char **keys;
    size_t *nkeys;
    size_t n;
    bool live;                  /* op initialised */
    int rc;
    mk_mget_cb cb;
    void *ctx;
    mk_op op;                   /* on the caller's stack or in the one allocation */
} group;

static void trampoline(void *ctx, size_t i, const mk_item *item)
{
    group *g = ctx;
    g->cb(g->ctx, g->idx[i], item);
}

/* rcs (optional): per key, MK_ENOTFOUND if its server answered, else the error. */
static int mget(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n, bool with_cas,
                mk_mget_cb cb, void *ctx, int *rcs)
{
    if (c == NULL || (n && (keys == NULL || nkeys == NULL)) || cb == NULL)
        return MK_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (mk_key_check(keys[i], nkeys[i], NULL) != MK_KEY_OK)
            return MK_EBADKEY;
    if (n == 0)
        return 0;
    /* one block for everything (on the stack for common sizes): no allocation per call */
    size_t need = c->n * (sizeof(group) + sizeof(struct pollfd) + sizeof(size_t)) +
                  n * (sizeof(int) + 2 * sizeof(size_t) + sizeof(char *)) + 128;
    _Alignas(max_align_t) char stackbuf[32768];
    char *mem = need <= sizeof stackbuf ? stackbuf : malloc(need), *mp = mem;
    int first = 0;
    if (mem == NULL)
        return MK_ENOMEM;
#define TAKE(type, count) ((type *)(void *)(mp += ((count) * sizeof(type) + 15) & ~(size_t)15, \
                                            mp - (((count) * sizeof(type) + 15) & ~(size_t)15)))
    group *g = TAKE(group, c->n);
    struct pollfd *pfd = TAKE(struct pollfd, c->n);
    size_t *pmap = TAKE(size_t, c->n);
    size_t *idx = TAKE(size_t, n);
    size_t *nk = TAKE(size_t, n);
    const char **kp = TAKE(const char *, n);
    int *srv = TAKE(int, n);
#undef TAKE
    for (size_t s = 0; s < c->n; s++) {
        g[s].n = 0;
        g[s].live = false;
    }
    int64_t now = mk__now_ms();
    mk__pick_many(c, keys, nkeys, n, now, srv);
    for (size_t i = 0; i < n; i++) {
        if (srv[i] >= 0)
            g[srv[i]].n++;
        else if (!first)
            first = srv[i];
        if (rcs)
            rcs[i] = srv[i] >= 0 ? MK_ENOTFOUND : srv[i];
    }
    size_t off = 0;
    for (size_t s = 0; s < c->n; s++) {
        g[s].idx = idx + off;
        g[s].keys = kp + off;
        g[s].nkeys = nk + off;
        off += g[s].n;
        g[s].n = 0;
        g[s].cb = cb;
        g[s].ctx = ctx;
    }
    for (size_t i = 0; i < n; i++) {
        if (srv[i] < 0)
            continue;
        group *gs = &g[srv[i]];
        gs->idx[gs->n] = i;
        gs->keys[gs->n] = keys[i];
        gs->nkeys[gs->n] = nkeys[i];
        gs->n++;
    }
    /* start one op per server */
    for (size_t s = 0; s < c->n; s++) {
        if (g[s].n == 0)
            continue;
        mk_op_args a;
        mk_op_args_init(&a);
        a.code = with_cas ? MK_OP_GETS : MK_OP_GET;
        a.keys = g[s].keys;
        a.nkeys = g[s].nkeys;
        a.nkeyset = g[s].n;
        a.server = (int)s;
        a.value_cb = trampoline;
        a.ctx = &g[s];
        g[s].rc = mk__op_init(c, &a, &g[s].op, true);   /* keys checked above */
        if (g[s].rc == 0) {
            g[s].live = true;
            mk__op_set_blocking(&g[s].op, true);   /* the pool wait, if any, blocks; I/O never does */
            g[s].rc = mk_op_step(&g[s].op);
        }
    }
    /* drive every op still waiting with one poll() */
    for (;;) {
        size_t np = 0;
        int timeout = -1;
        for (size_t s = 0; s < c->n; s++) {
            if (g[s].n == 0 || g[s].rc != MK_EAGAIN)
                continue;
            int t = mk_op_timeout_ms(&g[s].op);
            if (timeout < 0 || t < timeout)
                timeout = t;
            pfd[np] = (struct pollfd){mk_op_fd(&g[s].op), mk_op_events(&g[s].op), 0};
            pmap[np++] = s;
        }
        if (np == 0)
            break;
        int r = poll(pfd, np, timeout);
        for (size_t j = 0; j < np; j++) {
            group *gs = &g[pmap[j]];
            if (r <= 0 || pfd[j].revents || mk_op_timeout_ms(&gs->op) == 0)
                gs->rc = mk_op_step(&gs->op);
        }
    }
    for (size_t s = 0; s < c->n; s++) {
        if (g[s].n == 0)
            continue;
        if (g[s].rc && !first)
            first = g[s].rc;
        if (g[s].rc && rcs)
            for (size_t i = 0; i < g[s].n; i++)
                rcs[g[s].idx[i]] = g[s].rc;
        if (g[s].live)
            mk__op_release(&g[s].op);
    }
    if (mem != stackbuf)
        free(mem);
    return first;
}

int mk_mget(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n, bool with_cas,
            mk_mget_cb cb, void *ctx)
{
    return mget(c, keys, nkeys, n, with_cas, cb, ctx, NULL);
}

typedef struct items_ctx {
    mk_item *items;
    int *rcs;
    int err;
} items_ctx;

static void to_items(void *ctx, size_t i, const mk_item *it)
{
    items_ctx *ic = ctx;
    mk_item *dst = &ic->items[i];
    if (dst->value)
        return;   /* a duplicated key: keep the first */
    char *v = malloc(it->nvalue + 1);
    if (v == NULL) {
        ic->err = MK_ENOMEM;
        return;
    }
    memcpy(v, it->value, it->nvalue);
    v[it->nvalue] = '\0';
    *dst = *it;
    dst->value = v;
    if (ic->rcs)
        ic->rcs[i] = 0;
}

int mk_mget_items(mk_client *c, const char *const *keys, const size_t *nkeys, size_t n,
                  bool with_cas, mk_item *items, int *rcs)
{
    if (items == NULL && n)
        return MK_EINVAL;
    for (size_t i = 0; i < n; i++)
        memset(&items[i], 0, sizeof items[i]);
    items_ctx ic = {items, rcs, 0};
    int rc = mget(c, keys, nkeys, n, with_cas, to_items, &ic, rcs);
    /* a server error after some hits: those keys keep their items and rc 0 */
    if (rcs)
        for (size_t i = 0; i < n; i++)
            if (items[i].value)
                rcs[i] = 0;
    return rc ? rc : ic.err;
}
