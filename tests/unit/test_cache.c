/* tests/unit/test_cache.c — unit tests of the item store (storage/cache.h): ops, semantics, expiry, flush, arith, memory, hashing, threads. */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "storage/cache.h"

#define T0 1000000 /* a "now" far from 0 */
#define MK_SK_RECALL_TEST 4 /* lookups that make a key popular (MK_SK_RECALL in storage/internal.h) */

static mk_cache *mk(size_t mem, unsigned nshards)
{
    mk_cache_config cfg = {.mem_limit = mem, .item_size_max = 1024 * 1024, .evict = true, .use_cas = true,
                           .nshards = nshards};
    return mk_cache_create(&cfg);
}

/* Store key=val with op; returns the rc, *cas (if given) the new unique. */
static mk_cache_rc put_op(mk_cache *c, mk_store_op op, const char *k, const char *v, uint32_t flags,
                          int64_t exp_at, uint64_t cas_in, int64_t now, uint64_t *cas)
{
    mk_item *it;
    mk_cache_rc rc = mk_cache_alloc(c, k, strlen(k), flags, exp_at, strlen(v), now, &it);
    if (rc != MK_C_OK)
        return rc;
    memcpy(mk_item_data(it), v, strlen(v));
    rc = mk_cache_store(c, it, op, cas_in, now, cas);
    mk_item_put(c, it);
    return rc;
}

static mk_cache_rc set(mk_cache *c, const char *k, const char *v, int64_t now)
{
    return put_op(c, MK_STORE_SET, k, v, 0, 0, 0, now, NULL);
}

/* Get key; on a hit copy the value into buf (NUL-terminated). */
static mk_cache_rc get(mk_cache *c, const char *k, int64_t now, char *buf, size_t cap)
{
    mk_item *it;
    mk_cache_rc rc = mk_cache_get(c, k, strlen(k), now, &it);
    if (rc == MK_C_OK) {
        size_t n = mk_item_nbytes(it) < cap - 1 ? mk_item_nbytes(it) : cap - 1;
        memcpy(buf, mk_item_data(it), n);
        buf[n] = 0;
        mk_item_put(c, it);
    } else {
        CHECK(it == NULL);
        buf[0] = 0;
    }
    return rc;
}

static bool has(mk_cache *c, const char *k, int64_t now)
{
    char b[8];
    return get(c, k, now, b, sizeof b) == MK_C_OK;
}

/* ---------------- basics ---------------- */

static void test_create_invalid(void)
{
    mk_cache_config cfg = {0};
    CHECK(mk_cache_create(&cfg) == NULL);
    CHECK(mk_cache_create(NULL) == NULL);
    mk_cache_destroy(NULL);
    mk_item_put(NULL, NULL);
}

static void test_set_get_delete(void)
{
    mk_cache *c = mk(1 << 20, 0);
    char b[64];
    CHECK_EQ_U(get(c, "a", T0, b, sizeof b), MK_C_MISS);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "a", "hello", 42, 0, 0, T0, NULL), MK_C_OK);
    mk_item *it;
    CHECK_EQ_U(mk_cache_get(c, "a", 1, T0, &it), MK_C_OK);
    CHECK_MEM(mk_item_key(it), mk_item_nkey(it), "a");
    CHECK_MEM(mk_item_data(it), mk_item_nbytes(it), "hello");
    CHECK_EQ_U(mk_item_flags(it), 42);
    CHECK_EQ_I(mk_item_exp_at(it), 0);
    CHECK(mk_item_cas(it) != 0);
    mk_item_put(c, it);
    CHECK_EQ_U(set(c, "a", "world", T0), MK_C_OK);
    CHECK_EQ_U(get(c, "a", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "world") == 0);
    CHECK_EQ_U(mk_cache_delete(c, "a", 1, T0), MK_C_OK);
    CHECK_EQ_U(mk_cache_delete(c, "a", 1, T0), MK_C_MISS);
    CHECK_EQ_U(get(c, "a", T0, b, sizeof b), MK_C_MISS);
    /* empty value, binary key */
    CHECK_EQ_U(set(c, "e", "", T0), MK_C_OK);
    CHECK_EQ_U(get(c, "e", T0, b, sizeof b), MK_C_OK);
    CHECK(b[0] == 0);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 1);
    CHECK_EQ_U(st.total_items, 3);
    CHECK(st.bytes >= 4 && st.bytes <= mk_cache_item_size(1, 0)); /* header + key, counted honestly */
    CHECK(st.mem_used >= st.bytes && st.mem_used <= st.mem_limit);
    mk_cache_destroy(c);
}

static void test_item_size(void)
{
    CHECK(mk_cache_item_size(10, 100) > 110);
    CHECK_EQ_U(mk_cache_item_size(10, 100) - mk_cache_item_size(0, 0), 110);
    CHECK(mk_cache_item_size(0, 0) >= 4); /* honest, compact header (docs/storage.md) */
    CHECK_EQ_U(mk_cache_item_size(1, SIZE_MAX), SIZE_MAX);
}

/* mk_cache_read's callback: copy the view, keep a reference if asked to. */
typedef struct read_seen {
    int calls;
    bool keep;
    char data[64];
    mk_item_view v;
} read_seen;

static bool read_cb(void *ctx, const mk_item_view *v)
{
    read_seen *r = ctx;
    r->calls++;
    r->v = *v;
    memcpy(r->data, v->data, v->nbytes < sizeof r->data ? v->nbytes : sizeof r->data);
    return r->keep;
}

static void test_read_copies_under_lock(void)
{
    mk_cache *c = mk(1 << 20, 0);
    uint64_t cas;
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "k", "hello", 42, 0, 0, T0, &cas), MK_C_OK);
    read_seen r = {0};
    mk_item *it = (mk_item *)1;
    CHECK_EQ_U(mk_cache_read(c, "k", 1, T0, read_cb, &r, &it), MK_C_OK);
    CHECK(it == NULL); /* copied: no reference */
    CHECK_EQ_U(r.calls, 1);
    CHECK_MEM(r.data, r.v.nbytes, "hello");
    CHECK_EQ_U(r.v.flags, 42);
    CHECK_EQ_U(r.v.cas, cas); /* what gets would return */
    /* asked to keep: the same item as mk_cache_get gives, with a reference */
    r.keep = true;
    CHECK_EQ_U(mk_cache_read(c, "k", 1, T0, read_cb, &r, &it), MK_C_OK);
    CHECK(it != NULL);
    CHECK_MEM(mk_item_data(it), mk_item_nbytes(it), "hello");
    CHECK_EQ_U(mk_item_cas(it), cas);
    CHECK_EQ_U(mk_cache_delete(c, "k", 1, T0), MK_C_OK);
    CHECK_MEM(mk_item_data(it), mk_item_nbytes(it), "hello"); /* held past its delete */
    mk_item_put(c, it);
    /* misses never call back */
    r.calls = 0;
    CHECK_EQ_U(mk_cache_read(c, "k", 1, T0, read_cb, &r, &it), MK_C_MISS);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "e", "x", 0, T0 + 5, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(mk_cache_read(c, "e", 1, T0 + 5, read_cb, &r, &it), MK_C_EXPIRED);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "f", "x", 0, 0, 0, T0, NULL), MK_C_OK);
    mk_cache_flush(c, T0, 0);
    CHECK_EQ_U(mk_cache_read(c, "f", 1, T0, read_cb, &r, &it), MK_C_FLUSHED);
    CHECK_EQ_U(r.calls, 0);
    CHECK(it == NULL);
    /* a large value outside the arena: the view points at it */
    static char big[100000];
    memset(big, 'z', sizeof big);
    CHECK_EQ_U(mk_cache_alloc(c, "big", 3, 9, 0, sizeof big, T0, &it), MK_C_OK);
    memcpy(mk_item_data(it), big, sizeof big);
    CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, &cas), MK_C_OK);
    mk_item_put(c, it);
    r.keep = false;
    CHECK_EQ_U(mk_cache_read(c, "big", 3, T0, read_cb, &r, &it), MK_C_OK);
    CHECK_EQ_U(r.v.nbytes, sizeof big);
    CHECK_EQ_U(r.v.flags, 9);
    CHECK_EQ_U(r.v.cas, cas);
    CHECK(r.data[0] == 'z' && r.data[63] == 'z');
    mk_cache_destroy(c);
}

static void test_add_replace(void)
{
    mk_cache *c = mk(1 << 20, 4);
    char b[64];
    CHECK_EQ_U(put_op(c, MK_STORE_REPLACE, "k", "r", 0, 0, 0, T0, NULL), MK_C_NOT_STORED);
    CHECK_EQ_U(get(c, "k", T0, b, sizeof b), MK_C_MISS);
    CHECK_EQ_U(put_op(c, MK_STORE_ADD, "k", "a1", 0, 0, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_ADD, "k", "a2", 0, 0, 0, T0, NULL), MK_C_NOT_STORED);
    CHECK_EQ_U(get(c, "k", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "a1") == 0);
    CHECK_EQ_U(put_op(c, MK_STORE_REPLACE, "k", "r", 7, 0, 0, T0, NULL), MK_C_OK);
    mk_item *it;
    CHECK_EQ_U(mk_cache_get(c, "k", 1, T0, &it), MK_C_OK);
    CHECK_MEM(mk_item_data(it), mk_item_nbytes(it), "r");
    CHECK_EQ_U(mk_item_flags(it), 7);
    mk_item_put(c, it);
    /* add over an expired item succeeds; replace of an expired item fails */
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "x", "old", 0, T0 + 5, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_REPLACE, "x", "new", 0, 0, 0, T0 + 5, NULL), MK_C_NOT_STORED);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "x", "old", 0, T0 + 5, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_ADD, "x", "new", 0, 0, 0, T0 + 6, NULL), MK_C_OK);
    CHECK_EQ_U(get(c, "x", T0 + 6, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "new") == 0);
    mk_cache_destroy(c);
}

static void test_cas(void)
{
    mk_cache *c = mk(1 << 20, 4);
    uint64_t cas1 = 0, cas2 = 0, cas3 = 0;
    char b[64];
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "k", "v", 0, 0, 1, T0, NULL), MK_C_NOT_FOUND);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "k", "v1", 0, 0, 0, T0, &cas1), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "j", "v1", 0, 0, 0, T0, &cas2), MK_C_OK);
    CHECK(cas2 > cas1);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "k", "v2", 0, 0, cas1 + 100, T0, NULL), MK_C_EXISTS);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "k", "v2", 0, 0, cas1, T0, &cas3), MK_C_OK);
    CHECK(cas3 > cas2);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "k", "v3", 0, 0, cas1, T0, NULL), MK_C_EXISTS);
    CHECK_EQ_U(get(c, "k", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "v2") == 0);
    mk_item *it;
    CHECK_EQ_U(mk_cache_get(c, "k", 1, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_cas(it), cas3);
    mk_item_put(c, it);
    /* cas on an expired item: not found */
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "e", "v", 0, T0 + 1, 0, T0, &cas1), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "e", "w", 0, 0, cas1, T0 + 1, NULL), MK_C_NOT_FOUND);
    mk_cache_destroy(c);

    /* -C: uniques are 0, and cas compares against 0 */
    mk_cache_config cfg = {.mem_limit = 1 << 20, .evict = true, .use_cas = false};
    c = mk_cache_create(&cfg);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "k", "v1", 0, 0, 0, T0, &cas1), MK_C_OK);
    CHECK_EQ_U(cas1, 0);
    CHECK_EQ_U(mk_cache_get(c, "k", 1, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_cas(it), 0);
    mk_item_put(c, it);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "k", "v2", 0, 0, 5, T0, NULL), MK_C_EXISTS);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "k", "v2", 0, 0, 0, T0, NULL), MK_C_OK);
    uint64_t r = 0;
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "n", "1", 0, 0, 0, T0, NULL), MK_C_OK);
    cas1 = 99;
    CHECK_EQ_U(mk_cache_arith(c, "n", 1, true, 1, T0, &r, &cas1), MK_C_OK);
    CHECK_EQ_U(cas1, 0);
    mk_cache_destroy(c);
}

static void test_append_prepend(void)
{
    mk_cache *c = mk(1 << 20, 4);
    char b[64];
    CHECK_EQ_U(put_op(c, MK_STORE_APPEND, "k", "x", 0, 0, 0, T0, NULL), MK_C_NOT_STORED);
    CHECK_EQ_U(put_op(c, MK_STORE_PREPEND, "k", "x", 0, 0, 0, T0, NULL), MK_C_NOT_STORED);
    CHECK_EQ_U(get(c, "k", T0, b, sizeof b), MK_C_MISS);
    uint64_t cas0, cas1;
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "k", "mid", 17, T0 + 100, 0, T0, &cas0), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_APPEND, "k", "_end", 99, T0 + 5, 0, T0, &cas1), MK_C_OK);
    CHECK(cas1 > cas0);
    CHECK_EQ_U(put_op(c, MK_STORE_PREPEND, "k", "start_", 98, 0, 0, T0, NULL), MK_C_OK);
    mk_item *it;
    CHECK_EQ_U(mk_cache_get(c, "k", 1, T0, &it), MK_C_OK);
    CHECK_MEM(mk_item_data(it), mk_item_nbytes(it), "start_mid_end");
    CHECK_EQ_U(mk_item_flags(it), 17);          /* keeps the old flags */
    CHECK_EQ_I(mk_item_exp_at(it), T0 + 100);   /* and the old expiry */
    CHECK_EQ_U(mk_item_cas(it) > cas1, 1);
    mk_item_put(c, it);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 1);
    CHECK(st.bytes > 14 && st.bytes <= mk_cache_item_size(1, 13) + 12); /* + flags and expiry fields */
    /* append to an expired item: absent */
    CHECK_EQ_U(put_op(c, MK_STORE_APPEND, "k", "z", 0, 0, 0, T0 + 100, NULL), MK_C_NOT_STORED);
    /* the joined item too large */
    mk_cache_config cfg = {.mem_limit = 1 << 20, .item_size_max = 1000, .evict = true, .use_cas = true};
    mk_cache *c2 = mk_cache_create(&cfg);
    char big[801];
    memset(big, 'b', 800);
    big[800] = 0;
    CHECK_EQ_U(set(c2, "k", big, T0), MK_C_OK);
    CHECK_EQ_U(put_op(c2, MK_STORE_APPEND, "k", big, 0, 0, 0, T0, NULL), MK_C_TOO_LARGE);
    CHECK_EQ_U(get(c2, "k", T0, b, sizeof b), MK_C_OK);
    mk_cache_get_stats(c2, &st);
    CHECK(st.bytes > 801 && st.bytes <= mk_cache_item_size(1, 800));
    mk_cache_destroy(c2);
    mk_cache_destroy(c);
}

static void test_store_twice(void)
{
    mk_cache *c = mk(1 << 20, 1);
    mk_item *it;
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 0, 0, 1, T0, &it), MK_C_OK);
    mk_item_data(it)[0] = 'v';
    CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, NULL), MK_C_NOT_STORED);
    mk_item_put(c, it);
    /* an item allocated and dropped without storing is uncharged */
    CHECK_EQ_U(mk_cache_alloc(c, "z", 1, 0, 0, 100, T0, &it), MK_C_OK);
    mk_item_put(c, it);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 1);
    CHECK(st.bytes <= mk_cache_item_size(1, 1)); /* the dropped item is not counted */
    mk_cache_destroy(c);
}

static void test_touch_gat_unlink(void)
{
    mk_cache *c = mk(1 << 20, 4);
    CHECK_EQ_U(mk_cache_touch(c, "k", 1, T0 + 10, T0), MK_C_MISS);
    mk_item *it;
    CHECK_EQ_U(mk_cache_gat(c, "k", 1, T0 + 10, T0, &it), MK_C_MISS);
    CHECK(it == NULL);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "k", "v", 0, T0 + 5, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(mk_cache_touch(c, "k", 1, T0 + 10, T0), MK_C_OK);
    CHECK(has(c, "k", T0 + 7));
    CHECK_EQ_U(mk_cache_gat(c, "k", 1, 0, T0 + 8, &it), MK_C_OK);
    CHECK_EQ_I(mk_item_exp_at(it), 0);
    mk_item_put(c, it);
    CHECK(has(c, "k", T0 + 1000));
    CHECK_EQ_U(mk_cache_touch(c, "k", 1, T0 + 1001, T0 + 1000), MK_C_OK);
    CHECK_EQ_U(mk_cache_touch(c, "k", 1, T0 + 2000, T0 + 1001), MK_C_MISS); /* expired meanwhile */
    CHECK_EQ_U(mk_cache_gat(c, "k", 1, 0, T0 + 1001, &it), MK_C_MISS);
    CHECK_EQ_U(set(c, "u", "v", T0), MK_C_OK);
    mk_cache_unlink(c, "u", 1);
    mk_cache_unlink(c, "nothing", 7);
    CHECK(!has(c, "u", T0));
    mk_cache_destroy(c);
}

/* ---------------- expiry and flush ---------------- */

static void test_expiry(void)
{
    mk_cache *c = mk(1 << 20, 1);
    char b[16];
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "k", "v", 0, T0 + 10, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(get(c, "k", T0 + 9, b, sizeof b), MK_C_OK);
    CHECK_EQ_U(get(c, "k", T0 + 10, b, sizeof b), MK_C_EXPIRED);
    CHECK_EQ_U(get(c, "k", T0 + 10, b, sizeof b), MK_C_MISS); /* reclaimed by the first lookup */
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 0);
    CHECK_EQ_U(st.bytes, 0);
    /* delete of an expired item is a miss */
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "k", "v", 0, T0 + 10, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(mk_cache_delete(c, "k", 1, T0 + 11), MK_C_MISS);
    /* maintain sweeps out expired items and counts the unfetched ones */
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "e%d", i);
        CHECK_EQ_U(put_op(c, MK_STORE_SET, k, "v", 0, T0 + 10, 0, T0, NULL), MK_C_OK);
    }
    CHECK(has(c, "e0", T0));
    CHECK_EQ_U(set(c, "live", "v", T0), MK_C_OK);
    for (int i = 0; i < 8; i++) /* each call sweeps a bounded part of the table */
        mk_cache_maintain(c, T0 + 20);
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 1);
    CHECK_EQ_U(st.expired_unfetched, 99);
    CHECK_EQ_U(st.reclaimed, 100); /* the sweep counts what it reclaims (the deleted "k" was not linked) */
    CHECK(st.bytes <= mk_cache_item_size(4, 1));
    mk_cache_destroy(c);
}

static void test_flush_immediate(void)
{
    mk_cache *c = mk(1 << 20, 4);
    char b[16];
    CHECK_EQ_U(set(c, "a", "1", T0), MK_C_OK);
    CHECK_EQ_U(set(c, "b", "1", T0), MK_C_OK);
    mk_cache_flush(c, T0, 0);
    /* the same second: items stored after the flush survive, those before do not */
    CHECK_EQ_U(set(c, "c", "1", T0), MK_C_OK);
    CHECK_EQ_U(get(c, "a", T0, b, sizeof b), MK_C_FLUSHED);
    CHECK_EQ_U(get(c, "a", T0, b, sizeof b), MK_C_MISS);
    CHECK_EQ_U(mk_cache_delete(c, "b", 1, T0), MK_C_MISS);
    CHECK_EQ_U(get(c, "c", T0, b, sizeof b), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_ADD, "a", "2", 0, 0, 0, T0, NULL), MK_C_OK);
    CHECK(has(c, "a", T0 + 1));
    /* a later delayed flush does not bring flushed items back */
    CHECK_EQ_U(set(c, "d", "1", T0 + 1), MK_C_OK);
    mk_cache_flush(c, T0 + 1, 0);
    mk_cache_flush(c, T0 + 1, 100);
    CHECK_EQ_U(get(c, "d", T0 + 2, b, sizeof b), MK_C_FLUSHED);
    mk_cache_destroy(c);

    /* exact within the second with -C too */
    mk_cache_config cfg = {.mem_limit = 1 << 20, .evict = true, .use_cas = false};
    c = mk_cache_create(&cfg);
    CHECK_EQ_U(set(c, "a", "1", T0), MK_C_OK);
    mk_cache_flush(c, T0, 0);
    CHECK_EQ_U(set(c, "c", "1", T0), MK_C_OK);
    CHECK_EQ_U(get(c, "a", T0, b, sizeof b), MK_C_FLUSHED);
    CHECK_EQ_U(get(c, "c", T0, b, sizeof b), MK_C_OK);
    mk_cache_destroy(c);
}

/* A set that allocates before a flush_all and stores after it is a store after the flush: it survives. */
static void test_store_after_flush(void)
{
    for (int nocas = 0; nocas < 2; nocas++) {
        mk_cache_config cfg = {.mem_limit = 1 << 20, .evict = true, .use_cas = !nocas, .nshards = 4};
        mk_cache *c = mk_cache_create(&cfg);
        char b[16];
        CHECK_EQ_U(set(c, "a", "old", T0), MK_C_OK);
        CHECK_EQ_U(set(c, "r", "old", T0), MK_C_OK);
        mk_item *it, *ad, *rp, *got;
        CHECK_EQ_U(mk_cache_alloc(c, "a", 1, 5, T0 + 100, 3, T0, &it), MK_C_OK);
        memcpy(mk_item_data(it), "new", 3);
        CHECK_EQ_U(mk_cache_alloc(c, "b", 1, 0, 0, 3, T0, &ad), MK_C_OK);
        memcpy(mk_item_data(ad), "add", 3);
        CHECK_EQ_U(mk_cache_alloc(c, "r", 1, 0, 0, 3, T0, &rp), MK_C_OK);
        memcpy(mk_item_data(rp), "rep", 3);
        mk_cache_flush(c, T0, 0);
        uint64_t cas = 0;
        CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, &cas), MK_C_OK);
        CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, NULL), MK_C_NOT_STORED); /* linked once */
        CHECK_EQ_U(mk_cache_store(c, ad, MK_STORE_ADD, 0, T0, NULL), MK_C_OK);
        CHECK_EQ_U(mk_cache_store(c, rp, MK_STORE_REPLACE, 0, T0, NULL), MK_C_NOT_STORED); /* "r" was flushed */
        mk_item_put(c, it);
        mk_item_put(c, ad);
        mk_item_put(c, rp);
        CHECK_EQ_U(mk_cache_get(c, "a", 1, T0 + 1, &got), MK_C_OK);
        if (got) {
            CHECK_MEM(mk_item_data(got), mk_item_nbytes(got), "new");
            CHECK_EQ_U(mk_item_flags(got), 5);
            CHECK_EQ_I(mk_item_exp_at(got), T0 + 100);
            CHECK_EQ_U(mk_item_cas(got), cas); /* the unique handed out by the store */
            CHECK_EQ_U(cas != 0, !nocas);
            mk_item_put(c, got);
        }
        CHECK_EQ_U(get(c, "b", T0 + 1, b, sizeof b), MK_C_OK);
        CHECK(strcmp(b, "add") == 0);
        CHECK_EQ_U(get(c, "r", T0 + 1, b, sizeof b), MK_C_MISS);
        /* a delayed flush that falls due between alloc and store: the same */
        CHECK_EQ_U(mk_cache_alloc(c, "d", 1, 0, 0, 3, T0 + 2, &it), MK_C_OK);
        memcpy(mk_item_data(it), "ddd", 3);
        mk_cache_flush(c, T0 + 2, 3);
        CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0 + 6, NULL), MK_C_OK);
        mk_item_put(c, it);
        CHECK_EQ_U(get(c, "d", T0 + 7, b, sizeof b), MK_C_OK);
        CHECK_EQ_U(get(c, "a", T0 + 7, b, sizeof b), MK_C_FLUSHED); /* stored before the delayed flush */
        mk_cache_stats st;
        mk_cache_get_stats(c, &st);
        CHECK_EQ_U(st.curr_items, 2); /* b and d */
        mk_cache_destroy(c);
    }
}

static void test_flush_delayed(void)
{
    mk_cache *c = mk(1 << 20, 4);
    char b[16];
    CHECK_EQ_U(set(c, "a", "1", T0), MK_C_OK);
    mk_cache_flush(c, T0, 10);
    CHECK_EQ_U(set(c, "b", "1", T0 + 5), MK_C_OK);
    CHECK(has(c, "a", T0 + 9)); /* still valid before the flush time, and a get does not save it */
    CHECK(has(c, "b", T0 + 9));
    CHECK_EQ_U(set(c, "c", "1", T0 + 10), MK_C_OK); /* stored at the flush time: survives */
    CHECK_EQ_U(get(c, "a", T0 + 10, b, sizeof b), MK_C_FLUSHED);
    CHECK_EQ_U(get(c, "b", T0 + 11, b, sizeof b), MK_C_FLUSHED);
    CHECK_EQ_U(get(c, "c", T0 + 11, b, sizeof b), MK_C_OK);
    mk_cache_destroy(c);

    /* a later flush replaces a pending one */
    c = mk(1 << 20, 4);
    CHECK_EQ_U(set(c, "a", "1", T0), MK_C_OK);
    mk_cache_flush(c, T0, 10);
    mk_cache_flush(c, T0 + 1, 100);
    CHECK(has(c, "a", T0 + 50));
    CHECK_EQ_U(get(c, "a", T0 + 101, b, sizeof b), MK_C_FLUSHED);
    /* ...but one that already took effect stays in effect */
    CHECK_EQ_U(set(c, "x", "1", T0 + 200), MK_C_OK);
    mk_cache_flush(c, T0 + 200, 10);
    CHECK_EQ_U(set(c, "y", "1", T0 + 300), MK_C_OK); /* after the flush time */
    mk_cache_flush(c, T0 + 300, 1000);                 /* replaces it, x not yet looked at */
    CHECK_EQ_U(get(c, "x", T0 + 301, b, sizeof b), MK_C_FLUSHED);
    CHECK_EQ_U(get(c, "y", T0 + 301, b, sizeof b), MK_C_OK);
    /* an immediate flush cancels a pending one */
    mk_cache_flush(c, T0 + 302, 0);
    CHECK_EQ_U(set(c, "z", "1", T0 + 302), MK_C_OK);
    CHECK_EQ_U(get(c, "z", T0 + 5000, b, sizeof b), MK_C_OK);
    mk_cache_destroy(c);
}

/* ---------------- incr/decr ---------------- */

static mk_cache_rc arith(mk_cache *c, const char *k, bool incr, uint64_t d, uint64_t *r)
{
    return mk_cache_arith(c, k, strlen(k), incr, d, T0, r, NULL);
}

static void test_arith(void)
{
    mk_cache *c = mk(1 << 20, 4);
    uint64_t r = 0, cas0, cas1;
    char b[64];
    CHECK_EQ_U(arith(c, "n", true, 1, &r), MK_C_MISS);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "n", "10", 5, T0 + 100, 0, T0, &cas0), MK_C_OK);
    CHECK_EQ_U(mk_cache_arith(c, "n", 1, true, 5, T0, &r, &cas1), MK_C_OK);
    CHECK_EQ_U(r, 15);
    CHECK(cas1 > cas0);
    CHECK_EQ_U(arith(c, "n", false, 6, &r), MK_C_OK);
    CHECK_EQ_U(r, 9);
    CHECK_EQ_U(get(c, "n", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "9 ") == 0); /* in place, padded to the old length */
    CHECK_EQ_U(arith(c, "n", false, 100, &r), MK_C_OK);
    CHECK_EQ_U(r, 0); /* floors at 0 */
    /* growth: "99" + 1 -> "100" as a new exact-length item keeping flags and expiry */
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "g", "99", 5, T0 + 100, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(arith(c, "g", true, 1, &r), MK_C_OK);
    CHECK_EQ_U(r, 100);
    mk_item *it;
    CHECK_EQ_U(mk_cache_get(c, "g", 1, T0, &it), MK_C_OK);
    CHECK_MEM(mk_item_data(it), mk_item_nbytes(it), "100");
    CHECK_EQ_U(mk_item_flags(it), 5);
    CHECK_EQ_I(mk_item_exp_at(it), T0 + 100);
    mk_item_put(c, it);
    CHECK_EQ_U(arith(c, "g", false, 1, &r), MK_C_OK);
    CHECK_EQ_U(get(c, "g", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "99 ") == 0);
    CHECK_EQ_U(arith(c, "g", true, 1, &r), MK_C_OK);
    CHECK_EQ_U(get(c, "g", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "100") == 0);
    /* wrap at 2^64 */
    CHECK_EQ_U(set(c, "w", "18446744073709551615", T0), MK_C_OK);
    CHECK_EQ_U(arith(c, "w", true, 2, &r), MK_C_OK);
    CHECK_EQ_U(r, 1);
    CHECK_EQ_U(get(c, "w", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "1                   ") == 0);
    mk_cache_destroy(c);
}

static void test_arith_parse(void)
{
    /* value -> result after incr 1 (or UINT64_MAX for NON_NUMERIC), checked against memcached 1.6.18 */
    static const struct { const char *v; size_t n; uint64_t r; const char *after; } cases[] = {
        {"  5", 3, 6, "6  "},
        {"+5", 2, 6, "6 "},
        {"-0", 2, 1, "1 "},
        {"-1", 2, UINT64_MAX, "-1"},
        {"-18446744073709551615", 21, 2, "2                    "},
        {"5 x", 3, 6, "6  "},
        {"5x", 2, UINT64_MAX, "5x"},
        {"", 0, UINT64_MAX, ""},
        {"12\0" "34", 5, 13, "13   "},
        {"18446744073709551615", 20, 0, "0                   "},
        {"18446744073709551616", 20, UINT64_MAX, "18446744073709551616"},
        {"\t7\t", 3, 8, "8  "},
        {" ", 1, UINT64_MAX, " "}, /* memcached reads past the value here; we call it non-numeric */
        {"0x10", 4, UINT64_MAX, "0x10"},
        {"abc", 3, UINT64_MAX, "abc"},
        {"-", 1, UINT64_MAX, "-"},
    };
    mk_cache *c = mk(1 << 20, 4);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mk_item *it;
        CHECK_EQ_U(mk_cache_alloc(c, "p", 1, 0, 0, cases[i].n, T0, &it), MK_C_OK);
        memcpy(mk_item_data(it), cases[i].v, cases[i].n);
        CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, NULL), MK_C_OK);
        mk_item_put(c, it);
        uint64_t r = 12345;
        mk_cache_rc rc = arith(c, "p", true, 1, &r);
        if (cases[i].r == UINT64_MAX) {
            CHECK_EQ_U(rc, MK_C_NON_NUMERIC);
        } else {
            CHECK_EQ_U(rc, MK_C_OK);
            CHECK_EQ_U(r, cases[i].r);
        }
        CHECK_EQ_U(mk_cache_get(c, "p", 1, T0, &it), MK_C_OK);
        CHECK_MEM(mk_item_data(it), mk_item_nbytes(it), cases[i].after);
        mk_item_put(c, it);
    }
    mk_cache_destroy(c);
}

static void test_arith_while_referenced(void)
{
    mk_cache *c = mk(1 << 20, 1);
    uint64_t r;
    CHECK_EQ_U(set(c, "n", "500", T0), MK_C_OK);
    mk_item *held;
    CHECK_EQ_U(mk_cache_get(c, "n", 1, T0, &held), MK_C_OK);
    CHECK_EQ_U(arith(c, "n", false, 1, &r), MK_C_OK);
    CHECK_EQ_U(r, 499);
    /* the holder's bytes did not change; the new item has the exact length (memcached does the same) */
    CHECK_MEM(mk_item_data(held), mk_item_nbytes(held), "500");
    mk_item_put(c, held);
    char b[16];
    CHECK_EQ_U(get(c, "n", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "499") == 0);
    mk_cache_destroy(c);
}

/* ---------------- memory bound, LRU, eviction ---------------- */

static void test_memory_bound_fifo(void)
{
    /* 1 MiB = 16 segments of 64 KiB; items of ~110 bytes */
    const size_t vlen = 100;
    mk_cache *c = mk(1 << 20, 1);
    char v[101], k[16], b[128];
    memset(v, 'v', vlen);
    v[vlen] = 0;
    mk_cache_stats st;
    int n = 40000; /* ~4.4 MB written: four times the cache */
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        CHECK_EQ_U(set(c, k, v, T0 + i / 1000), MK_C_OK);
        /* a few hot keys, read all the time: they get second chances */
        if (i % 100 == 0)
            for (int h = 0; h < 20; h++) {
                snprintf(k, sizeof k, "k%05d", h);
                get(c, k, T0, b, sizeof b);
            }
        if (i % 997 == 0) {
            mk_cache_get_stats(c, &st);
            CHECK(st.mem_used <= st.mem_limit);
        }
    }
    mk_cache_get_stats(c, &st);
    CHECK(st.evictions > 0);
    CHECK_EQ_U(st.evictions + st.curr_items, (uint64_t)n); /* every item evicted or still there */
    CHECK(st.evicted_unfetched > 0);
    CHECK(st.reinserted > 0);
    /* the arena is used well: > 80% of the limit holds linked items */
    CHECK(st.bytes > st.mem_limit / 10 * 8);
    /* the newest survive, the oldest cold ones are gone, the hot ones survived */
    CHECK(has(c, "k39999", T0 + 40));
    CHECK(!has(c, "k00100", T0 + 40));
    int hot = 0;
    for (int h = 0; h < 20; h++) {
        snprintf(k, sizeof k, "k%05d", h);
        hot += has(c, k, T0 + 40);
    }
    CHECK_EQ_U(hot, 20);
    /* expired items are reclaimed in preference: a full cache of expiring items makes room without evicting */
    mk_cache_reset_stats(c);
    for (int i = 0; i < n / 2; i++) {
        snprintf(k, sizeof k, "e%05d", i);
        CHECK_EQ_U(put_op(c, MK_STORE_SET, k, v, 0, T0 + 100, 0, T0 + 50, NULL), MK_C_OK);
    }
    mk_cache_reset_stats(c);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "n%05d", i);
        CHECK_EQ_U(set(c, k, v, T0 + 200), MK_C_OK);
    }
    mk_cache_get_stats(c, &st);
    CHECK(st.reclaimed > 0);
    CHECK_EQ_U(st.evictions, 0);
    mk_cache_destroy(c);
}

/*
 * The policy (S3-FIFO over segments, docs/storage.md): items that were read once
 * leave probation for the main log, so a flood of keys written and never read,
 * many times the cache, does not push them out; and a key looked up often while
 * absent enters main when it is stored, without being read again.
 */
static void scan_flood(mk_cache *c, const char *prefix, int n, const char *v)
{
    char k[24];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%s%d", prefix, i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
    }
}

static void test_policy_scan_resistant(void)
{
    mk_cache *c = mk(4 << 20, 1); /* 64 segments; ~210-byte items */
    char v[201], k[24];
    memset(v, 's', 200);
    v[200] = 0;
    enum { HOT = 4000 }; /* ~840 KB: a fifth of the cache */
    for (int i = 0; i < HOT; i++) {
        snprintf(k, sizeof k, "hot%d", i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
        CHECK(has(c, k, T0)); /* read once, on probation */
    }
    scan_flood(c, "scan", 160000, v); /* 34 MB, never read: eight times the cache */
    int kept = 0;
    for (int i = 0; i < HOT; i++) {
        snprintf(k, sizeof k, "hot%d", i);
        kept += has(c, k, T0);
    }
    CHECK_EQ_U(kept, HOT);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK(st.evictions >= 120000);
    CHECK(st.segments_probation > 0 && st.segments_probation < st.segments_used);
    mk_cache_destroy(c);
}

static void test_policy_sketch_admits_popular_key(void)
{
    mk_cache *c = mk(4 << 20, 1);
    char v[201], b[256];
    memset(v, 'p', 200);
    v[200] = 0;
    for (int i = 0; i < MK_SK_RECALL_TEST; i++) /* asked for while absent, as a cache-aside client would */
        CHECK_EQ_U(get(c, "popular", T0, b, sizeof b), MK_C_MISS);
    CHECK_EQ_U(set(c, "popular", v, T0), MK_C_OK);
    CHECK_EQ_U(set(c, "rare", v, T0), MK_C_OK); /* stored once, never asked for */
    scan_flood(c, "scan", 160000, v);
    CHECK(has(c, "popular", T0)); /* it skipped probation */
    CHECK(!has(c, "rare", T0));
    mk_cache_destroy(c);
}

static void test_no_evict_mode(void)
{
    mk_cache_config cfg = {.mem_limit = 1 << 20, .evict = false, .use_cas = true, .nshards = 2};
    mk_cache *c = mk_cache_create(&cfg);
    char v[101], k[16];
    memset(v, 'x', 100);
    v[100] = 0;
    int stored = 0;
    mk_cache_rc rc = MK_C_OK;
    for (int i = 0; i < 100000 && rc == MK_C_OK; i++) {
        snprintf(k, sizeof k, "k%d", i);
        rc = set(c, k, v, T0);
        stored += rc == MK_C_OK;
    }
    CHECK_EQ_U(rc, MK_C_NO_MEMORY);
    CHECK(stored > 5000);
    int present = 0;
    for (int i = 0; i < stored; i++) {
        snprintf(k, sizeof k, "k%d", i);
        present += has(c, k, T0);
    }
    CHECK_EQ_U(present, stored); /* nothing live was evicted */
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.evictions, 0);
    /* expired items are still reclaimed with -M: the first items expire, new ones fit */
    mk_cache_flush(c, T0, 0);
    CHECK_EQ_U(set(c, "after", v, T0 + 1), MK_C_OK);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "t%d", i);
        CHECK_EQ_U(put_op(c, MK_STORE_SET, k, v, 0, T0 + 2, 0, T0 + 1, NULL), MK_C_OK);
    }
    mk_cache_get_stats(c, &st);
    CHECK(st.reclaimed > 0);
    CHECK_EQ_U(st.evictions, 0);
    mk_cache_destroy(c);
}

/* -M: dead copies of overwritten keys are compacted away; only live data fills the limit. */
static void test_no_evict_compaction(void)
{
    mk_cache_config cfg = {.mem_limit = 2 << 20, .evict = false, .use_cas = true, .nshards = 2};
    mk_cache *c = mk_cache_create(&cfg);
    enum { KEYS = 1500, VLEN = 300 };
    static uint64_t last_cas[KEYS];
    static uint32_t last_ver[KEYS];
    char v[VLEN + 1], k[32];
    memset(v, 'x', VLEN);
    v[VLEN] = 0;
    /* capacity ~ 2 MiB / 310 bytes ~ 6,700 items: write 100x that over a set of 1,500 keys */
    const uint32_t writes = 100 * (2u << 20) / (VLEN + 10);
    uint32_t rnd = 12345, failed = 0;
    mk_cache_stats st;
    for (uint32_t w = 1; w <= writes; w++) {
        rnd = rnd * 1103515245u + 12345u;
        uint32_t i = (rnd >> 8) % KEYS;
        snprintf(k, sizeof k, "ow:%u", i);
        snprintf(v, sizeof v, "%08u", w);
        v[8] = 'x';
        mk_item *it;
        mk_cache_rc rc = mk_cache_alloc(c, k, strlen(k), i, i % 3 ? T0 + 100000 : 0, VLEN, T0, &it);
        if (rc == MK_C_OK) {
            memcpy(mk_item_data(it), v, VLEN);
            rc = mk_cache_store(c, it, MK_STORE_SET, 0, T0, &last_cas[i]);
            mk_item_put(c, it);
        }
        failed += rc != MK_C_OK;
        if (rc == MK_C_OK)
            last_ver[i] = w;
        if (w % 4099 == 0) {
            mk_cache_get_stats(c, &st);
            CHECK(st.mem_used <= st.mem_limit);
        }
    }
    CHECK_EQ_U(failed, 0);
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.evictions, 0);
    CHECK(st.compacted_items > 0); /* live items were copied forward */
    CHECK(st.segments_freed_compacted > 0);
    CHECK_EQ_U(st.segments_freed_evicted, 0);
    CHECK_EQ_U(st.curr_items, KEYS);
    /* every key holds its last value, flags, expiry and the cas its store returned */
    int bad = 0;
    for (uint32_t i = 0; i < KEYS; i++) {
        snprintf(k, sizeof k, "ow:%u", i);
        mk_item *it;
        if (mk_cache_get(c, k, strlen(k), T0, &it) != MK_C_OK) {
            bad++;
            continue;
        }
        char want[16];
        snprintf(want, sizeof want, "%08u", last_ver[i]);
        bad += memcmp(mk_item_data(it), want, 8) != 0 || mk_item_flags(it) != i ||
               mk_item_exp_at(it) != (i % 3 ? T0 + 100000 : 0) || mk_item_cas(it) != last_cas[i];
        mk_item_put(c, it);
    }
    CHECK_EQ_U(bad, 0);
    /* now fill with distinct keys: NO_MEMORY only once live data fills the limit */
    mk_cache_rc rc = MK_C_OK;
    int n = 0;
    for (; rc == MK_C_OK && n < 100000; n++) {
        snprintf(k, sizeof k, "fill:%d", n);
        rc = set(c, k, v, T0);
    }
    CHECK_EQ_U(rc, MK_C_NO_MEMORY);
    mk_cache_get_stats(c, &st);
    CHECK(st.mem_used <= st.mem_limit);
    CHECK(st.bytes >= st.mem_limit / 100 * 88); /* live bytes (headers + keys + values) close to the limit */
    CHECK_EQ_U(st.evictions, 0);
    CHECK_EQ_U(st.curr_items, KEYS + n - 1);
    bad = 0;
    for (int j = 0; j < n - 1; j++) {
        snprintf(k, sizeof k, "fill:%d", j);
        bad += !has(c, k, T0);
    }
    CHECK_EQ_U(bad, 0);
    fprintf(stderr, "  -M fill: %llu live bytes of %llu (%.1f%%), %llu items\n", (unsigned long long)st.bytes,
            (unsigned long long)st.mem_limit, 100.0 * (double)st.bytes / (double)st.mem_limit,
            (unsigned long long)st.curr_items);
    mk_cache_destroy(c);
}

/* cache_memlimit: down to 8 MB (allocations evict to fit), back up to the size it was made with, no further. */
static void test_set_limit(void)
{
    mk_cache_config cfg = {.mem_limit = 32 << 20, .item_size_max = 1 << 20, .evict = true, .use_cas = true};
    mk_cache *c = mk_cache_create(&cfg);
    static char v[1001]; /* (small items: put_op writes the value in one piece) */
    memset(v, 'v', sizeof v - 1);
    char k[32];
    for (int i = 0; i < 25000; i++) { /* 25 MB */
        snprintf(k, sizeof k, "k%d", i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
    }
    CHECK(!mk_cache_set_limit(c, 4 << 20));
    CHECK(!mk_cache_set_limit(c, (32 << 20) + (4 << 20)));
    CHECK(mk_cache_set_limit(c, 8 << 20));
    for (int i = 25000; i < 35000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
    }
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.mem_limit, 8 << 20);
    CHECK(st.mem_used <= (uint64_t)(8 << 20));
    CHECK(st.evictions > 0);
    CHECK(mk_cache_set_limit(c, 32 << 20));
    for (int i = 35000; i < 55000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
    }
    mk_cache_get_stats(c, &st);
    CHECK(st.mem_used > (uint64_t)(16 << 20));
    mk_cache_destroy(c);
}

static void test_too_large(void)
{
    mk_cache_config cfg = {.mem_limit = 1 << 20, .item_size_max = 1024, .evict = true, .use_cas = true};
    mk_cache *c = mk_cache_create(&cfg);
    mk_item *it;
    /* memcached's measure: 48-byte header + 8 (cas) + key + NUL + 4 (non-zero flags) + value + 2 */
    size_t fit = 1024 - (48 + 8 + 1 + 1 + 2);
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 0, 0, fit, T0, &it), MK_C_OK);
    mk_item_put(c, it);
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 0, 0, fit + 1, T0, &it), MK_C_TOO_LARGE);
    CHECK(it == NULL);
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 7, 0, fit - 4, T0, &it), MK_C_OK);
    mk_item_put(c, it);
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 7, 0, fit - 3, T0, &it), MK_C_TOO_LARGE);
    mk_cache_destroy(c);
    cfg.use_cas = false; /* -C: no 8 bytes for the unique */
    c = mk_cache_create(&cfg);
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 0, 0, fit + 8, T0, &it), MK_C_OK);
    mk_item_put(c, it);
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 0, 0, fit + 9, T0, &it), MK_C_TOO_LARGE);
    CHECK_EQ_U(mk_cache_alloc(c, "k", 1, 0, 0, SIZE_MAX - 10, T0, &it), MK_C_TOO_LARGE);
    char key[300];
    memset(key, 'k', sizeof key);
    CHECK_EQ_U(mk_cache_alloc(c, key, sizeof key, 0, 0, 1, T0, &it), MK_C_TOO_LARGE);
    mk_cache_destroy(c);

    /* bigger than mem_limit: NO_MEMORY without evicting anything; too large is checked first */
    mk_cache_config cfg2 = {.mem_limit = 1 << 20, .item_size_max = 4 << 20, .evict = true, .use_cas = true};
    c = mk_cache_create(&cfg2);
    CHECK_EQ_U(set(c, "k1", "0123456789", T0), MK_C_OK);
    CHECK_EQ_U(set(c, "k2", "0123456789", T0), MK_C_OK);
    CHECK_EQ_U(mk_cache_alloc(c, "k3", 2, 0, 0, 2 << 20, T0, &it), MK_C_NO_MEMORY);
    CHECK_EQ_U(mk_cache_alloc(c, "k3", 2, 0, 0, 5 << 20, T0, &it), MK_C_TOO_LARGE);
    CHECK(has(c, "k1", T0));
    CHECK(has(c, "k2", T0));
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.evictions, 0);
    mk_cache_destroy(c);
}

static void test_refcount_safety(void)
{
    mk_cache *c = mk(1 << 20, 1);
    mk_item *a, *b2, *e;
    CHECK_EQ_U(set(c, "a", "alpha", T0), MK_C_OK);
    CHECK_EQ_U(set(c, "b", "bravo", T0), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "e", "echo", 0, T0 + 1, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(mk_cache_get(c, "a", 1, T0, &a), MK_C_OK);
    CHECK_EQ_U(mk_cache_get(c, "b", 1, T0, &b2), MK_C_OK);
    CHECK_EQ_U(mk_cache_get(c, "e", 1, T0, &e), MK_C_OK);
    CHECK_EQ_U(mk_cache_delete(c, "a", 1, T0), MK_C_OK);
    CHECK_EQ_U(set(c, "b", "BRAVO-2", T0), MK_C_OK);
    mk_cache_flush(c, T0, 0);
    char buf[16];
    CHECK_EQ_U(get(c, "e", T0 + 2, buf, sizeof buf), MK_C_FLUSHED);
    /* all three are unlinked but still readable (ASan checks this) */
    CHECK_MEM(mk_item_data(a), mk_item_nbytes(a), "alpha");
    CHECK_MEM(mk_item_data(b2), mk_item_nbytes(b2), "bravo");
    CHECK_MEM(mk_item_data(e), mk_item_nbytes(e), "echo");
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 1);
    mk_item_put(c, a);
    mk_item_put(c, b2);
    mk_item_put(c, e);
    mk_cache_destroy(c);

    /* a reference pins its segment: written far past capacity, the held bytes stay intact */
    mk_cache *c2 = mk(1 << 20, 4);
    mk_item *h1;
    char v[201], k[16];
    memset(v, 'q', 200);
    v[200] = 0;
    CHECK_EQ_U(set(c2, "held", "0123456789", T0), MK_C_OK);
    CHECK_EQ_U(mk_cache_get(c2, "held", 4, T0, &h1), MK_C_OK);
    for (int i = 0; i < 30000; i++) { /* each read once: they too leave probation for main */
        snprintf(k, sizeof k, "f%d", i);
        CHECK_EQ_U(set(c2, k, v, T0), MK_C_OK);
        CHECK(has(c2, k, T0));
    }
    CHECK(!has(c2, "held", T0)); /* evicted (fetched once: promoted to main, then gone as main turned over) */
    CHECK_MEM(mk_item_data(h1), mk_item_nbytes(h1), "0123456789");
    CHECK_MEM(mk_item_key(h1), mk_item_nkey(h1), "held");
    mk_cache_get_stats(c2, &st);
    CHECK(st.mem_used <= st.mem_limit); /* the pinned segment is still charged */
    uint64_t used_held = st.segments_used;
    mk_item_put(c2, h1);
    mk_cache_get_stats(c2, &st);
    CHECK_EQ_U(st.segments_used, used_held - 1); /* the last put freed it */
    mk_cache_destroy(c2);
}

static void test_evict_across_shards(void)
{
    mk_cache *c = mk(1 << 20, 64);
    char k[16];
    mk_cache_stats st;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "x%06d", i);
        CHECK_EQ_U(set(c, k, "01234567890123456789", T0 + i), MK_C_OK);
        if (i % 1000 == 0) {
            mk_cache_get_stats(c, &st);
            CHECK(st.mem_used <= st.mem_limit);
        }
    }
    mk_cache_get_stats(c, &st);
    CHECK(st.curr_items > 20000);
    CHECK_EQ_U(st.evictions + st.curr_items, (uint64_t)n);
    CHECK(has(c, "x099999", T0 + n)); /* the item just stored is never the victim */
    mk_cache_destroy(c);
}

struct oom_acc { uint64_t oom; };
static void oom_cb(const mk_cache_class_stats *cs, void *ctx) { ((struct oom_acc *)ctx)->oom += cs->outofmemory; }

static void test_outofmemory_and_sweep_flushed(void)
{
    mk_cache_config cfg = {.mem_limit = 1 << 20, .evict = false, .use_cas = true, .nshards = 1, .hashpower = 4};
    mk_cache *c = mk_cache_create(&cfg);
    char k[16];
    mk_cache_rc rc = MK_C_OK;
    for (int i = 0; rc == MK_C_OK; i++) {
        snprintf(k, sizeof k, "k%d", i);
        rc = set(c, k, "0123456789", T0);
    }
    CHECK_EQ_U(rc, MK_C_NO_MEMORY);
    struct oom_acc a = {0};
    mk_cache_class_stats_each(c, T0, oom_cb, &a); /* reported with the class of the items */
    CHECK_EQ_U(a.oom, 1);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    uint64_t full = st.segments_used;
    mk_cache_flush(c, T0, 0);
    for (int i = 0; i < 4; i++)
        mk_cache_maintain(c, T0); /* the sweep unlinks flushed items and frees their segments */
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 0);
    CHECK_EQ_U(st.bytes, 0);
    CHECK(st.segments_used <= 1 && st.segments_used < full);
    CHECK_EQ_U(st.expired_unfetched, 0); /* flushed is not expired */
    CHECK(st.reclaimed > 0);
    CHECK_EQ_U(set(c, "k3", "0123456789", T0), MK_C_OK);
    mk_cache_destroy(c);
}

/* ---------------- the segment arena ---------------- */

/* Fill a value with `fill`, piece by piece (a large value spans segments). */
static void fill_value(mk_item *it, char fill)
{
    size_t n = mk_item_nbytes(it);
    for (size_t off = 0; off < n;) {
        char *p;
        size_t k = mk_item_piece(it, off, &p);
        CHECK(k >= 1 && k <= n - off);
        memset(p, fill, k);
        off += k;
    }
}

/* Store a value of n bytes, each byte `fill`. */
static mk_cache_rc set_big(mk_cache *c, const char *k, size_t n, char fill)
{
    mk_item *it;
    mk_cache_rc rc = mk_cache_alloc(c, k, strlen(k), 0, 0, n, T0, &it);
    if (rc != MK_C_OK)
        return rc;
    fill_value(it, fill);
    rc = mk_cache_store(c, it, MK_STORE_SET, 0, T0, NULL);
    mk_item_put(c, it);
    return rc;
}

/* True if the held item's value is n bytes, all `fill`. */
static bool value_is(const mk_item *it, size_t n, char fill)
{
    if (mk_item_nbytes(it) != n)
        return false;
    for (size_t off = 0; off < n;) {
        char *p;
        size_t k = mk_item_piece(it, off, &p);
        for (size_t i = 0; i < k; i++)
            if (p[i] != fill)
                return false;
        off += k;
    }
    return true;
}

/* True if key holds n bytes, all `fill`. */
static bool big_is(mk_cache *c, const char *k, size_t n, char fill)
{
    mk_item *it;
    if (mk_cache_get(c, k, strlen(k), T0, &it) != MK_C_OK)
        return false;
    bool ok = value_is(it, n, fill);
    mk_item_put(c, it);
    return ok;
}

/*
 * Regression (mixed-size churn below memcached): a large item in use kept its
 * place when its segment was evicted, and so the whole segment, dead bytes and
 * all, stayed for as many passes as the item had frequency. One that lies within
 * its segment is now moved like a small item: the same value and cas at a new
 * place, and its old segment is freed.
 */
static void test_hot_large_item_moves_out_of_evicted_segment(void)
{
    mk_cache *c = mk(4 << 20, 1);
    uint64_t cas0;
    CHECK_EQ_U(set_big(c, "hot", 10000, 'h'), MK_C_OK);
    mk_item *it;
    CHECK_EQ_U(mk_cache_get(c, "hot", 3, T0, &it), MK_C_OK);
    cas0 = mk_item_cas(it);
    const void *first = it;
    mk_item_put(c, it);
    char k[24];
    bool moved = false;
    for (int i = 0; i < 2000 && !moved; i++) { /* 20 KB values, never read: the large log turns over */
        snprintf(k, sizeof k, "cold%d", i);
        CHECK_EQ_U(set_big(c, k, 20000, 'c'), MK_C_OK);
        if (i % 50 == 0) { /* keep it in use */
            CHECK_EQ_U(mk_cache_get(c, "hot", 3, T0, &it), MK_C_OK);
            moved = (const void *)it != first;
            mk_item_put(c, it);
        }
    }
    CHECK(moved);
    CHECK(big_is(c, "hot", 10000, 'h'));
    CHECK_EQ_U(mk_cache_get(c, "hot", 3, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_cas(it), cas0);
    mk_item_put(c, it);
    mk_cache_destroy(c);
}

static void test_large_items(void)
{
    /* 8 MiB, -I 2 MiB: large values are packed back to back across segments */
    mk_cache_config cfg = {.mem_limit = 8 << 20, .item_size_max = 2 << 20, .evict = true, .use_cas = true};
    mk_cache *c = mk_cache_create(&cfg);
    static char big[1 << 20], back[1 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    mk_item *it;
    CHECK_EQ_U(mk_cache_alloc(c, "big", 3, 7, 0, sizeof big, T0, &it), MK_C_OK);
    mk_item_write(it, 0, big, sizeof big);
    CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, NULL), MK_C_OK);
    mk_item_put(c, it);
    CHECK_EQ_U(mk_cache_get(c, "big", 3, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_nbytes(it), sizeof big);
    mk_item_read(it, 0, back, sizeof back);
    CHECK(memcmp(back, big, sizeof big) == 0);
    CHECK_EQ_U(mk_item_flags(it), 7);
    char *p;
    CHECK(mk_item_piece(it, 0, &p) < sizeof big); /* it does span */
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK(st.segments_used <= (sizeof big + 64) / (64 * 1024 - 32) + 3); /* its own size, no page rounding */
    /* many large items past the limit: never over it, and the held one stays readable */
    char k[16];
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof k, "L%d", i);
        CHECK_EQ_U(set_big(c, k, 300000 + (size_t)i * 1000, 'L'), MK_C_OK);
        mk_cache_get_stats(c, &st);
        CHECK(st.mem_used <= st.mem_limit);
    }
    memset(back, 0, sizeof back);
    mk_item_read(it, 0, back, sizeof back);
    CHECK(memcmp(back, big, sizeof big) == 0);
    mk_item_put(c, it);
    CHECK(big_is(c, "L39", 339000, 'L'));
    mk_cache_get_stats(c, &st);
    CHECK(st.evictions > 0);
    /* append across the small/large boundary */
    static char mid[10001];
    memset(mid, 'm', 10000);
    CHECK_EQ_U(set(c, "grow", "x", T0), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_APPEND, "grow", mid, 0, 0, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_PREPEND, "grow", mid, 0, 0, 0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(mk_cache_get(c, "grow", 4, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_nbytes(it), 20001);
    char ends[3];
    mk_item_read(it, 9999, ends, 3);
    CHECK(ends[0] == 'm' && ends[1] == 'x' && ends[2] == 'm');
    mk_item_put(c, it);
    CHECK_EQ_U(mk_cache_delete(c, "grow", 4, T0), MK_C_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof k, "L%d", i);
        mk_cache_delete(c, k, strlen(k), T0);
    }
    mk_cache_delete(c, "big", 3, T0); /* (evicted by now, most likely) */
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.bytes, 0);
    CHECK_EQ_U(st.live_bytes, 0);
    mk_cache_destroy(c);
}

static size_t fill_kept(mk_cache *c, const char *prefix, size_t n, int count)
{
    char k[32];
    size_t kept = 0;
    for (int i = 0; i < count; i++) {
        snprintf(k, sizeof k, "%s%d", prefix, i);
        CHECK_EQ_U(set_big(c, k, n, (char)('a' + i % 26)), MK_C_OK);
    }
    for (int i = 0; i < count; i++) {
        snprintf(k, sizeof k, "%s%d", prefix, i);
        kept += big_is(c, k, n, (char)('a' + i % 26)) ? n : 0;
    }
    return kept;
}

static void test_every_size_fills_the_limit(void)
{
    /* 20 KB .. 1 MB values held about half of -m when they lived in page-rounded blocks behind stubs */
    static const size_t sizes[] = {10, 100, 1000, 4000, 5000, 16000, 20000, 64000, 100000, 500000, 1000000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        mk_cache *c = mk(64 << 20, 1);
        size_t n = sizes[i];
        int count = (int)((size_t)3 * (64 << 20) / (n + 40));
        size_t kept = fill_kept(c, "f", n, count);
        /* values alone (small ones pay their key and header too) */
        size_t want = n >= 1000 ? (size_t)(0.9 * (64 << 20)) : n >= 100 ? (size_t)(0.6 * (64 << 20)) : (64 << 20) / 4;
        if (kept < want)
            fprintf(stderr, "size %zu: %zu bytes of values kept, want >= %zu\n", n, kept, want);
        CHECK(kept >= want);
        mk_cache_destroy(c);
    }
}

static void test_large_value_evicts_its_own_size(void)
{
    /* a large value made room by evicting whole segments of unrelated items (the stub segment took its values along) */
    mk_cache *c = mk(16 << 20, 1);
    size_t small = fill_kept(c, "s", 1000, 40000); /* far past capacity: the cache is full of 1 KB items */
    CHECK(small > (size_t)(0.9 * (16 << 20)));
    mk_cache_stats before, after;
    mk_cache_get_stats(c, &before);
    CHECK_EQ_U(set_big(c, "big", 1000000, 'B'), MK_C_OK);
    mk_cache_get_stats(c, &after);
    uint64_t gone = after.evictions - before.evictions;
    CHECK(gone >= 900 && gone <= 1100); /* about 1,000 items of 1 KB */
    CHECK(big_is(c, "big", 1000000, 'B'));
    /* and large values interleaved with small ones cost about their own size each */
    for (int i = 0; i < 8; i++) {
        char k[16];
        snprintf(k, sizeof k, "b%d", i);
        mk_cache_get_stats(c, &before);
        CHECK_EQ_U(set_big(c, k, 200000, 'b'), MK_C_OK);
        mk_cache_get_stats(c, &after);
        CHECK(after.evictions - before.evictions <= 260);
    }
    mk_cache_destroy(c);
}

static void test_deleted_large_value_space_reused_first(void)
{
    /* the memory of a deleted large value is reused before any item is evicted */
    mk_cache *c = mk(8 << 20, 1);
    int want = 0;
    char k[32];
    mk_cache_stats st;
    CHECK_EQ_U(set_big(c, "x", 1000000, 'x'), MK_C_OK);
    CHECK_EQ_U(mk_cache_delete(c, "x", 1, T0), MK_C_OK);
    for (int i = 0;; i++) {
        snprintf(k, sizeof k, "small%d", i);
        CHECK_EQ_U(set(c, k, "0123456789012345678901234567890123456789", T0), MK_C_OK);
        mk_cache_get_stats(c, &st);
        if (st.evictions > 0 || i > 1000000) {
            want = i;
            break;
        }
    }
    CHECK(want > 100000); /* ~8 MiB of 50-byte items, not 6 */
    CHECK(st.mem_used <= st.mem_limit);
    mk_cache_destroy(c);
}

/* Write n items of size(i) bytes and count how many of the last `tail` are still there. */
static int fill_count(mk_cache *c, int from, int n, size_t (*size)(int), int tail)
{
    static char v[4096];
    memset(v, 's', sizeof v);
    char k[16];
    for (int i = from; i < from + n; i++) {
        snprintf(k, sizeof k, "s%07d", i);
        size_t len = size(i);
        v[len] = 0;
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
        v[len] = 's';
    }
    int found = 0;
    for (int i = from + n - tail; i < from + n; i++) {
        snprintf(k, sizeof k, "s%07d", i);
        found += has(c, k, T0);
    }
    return found;
}
static size_t size_small(int i) { return 90 + (size_t)(i % 21); }
static size_t size_large(int i) { return 900 + (size_t)(i % 201); }

static void test_shifting_sizes(void)
{
    /* small values fill the cache, then the mix shifts to 10x larger ones: the arena adapts (no calcification) */
    mk_cache *c = mk(4 << 20, 8);
    int small = fill_count(c, 0, 60000, size_small, 1000);
    CHECK(small >= 990);
    int cap_large = (4 << 20) / 1020;
    int large = fill_count(c, 100000, 20000, size_large, cap_large * 8 / 10);
    CHECK(large >= cap_large * 8 / 10 - 5); /* 80% of the arena's worth of the new size is there */
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK(st.bytes > st.mem_limit / 10 * 8);
    CHECK(st.mem_used <= st.mem_limit);
    mk_cache_destroy(c);
}

static void test_compaction_and_expiry_sweep(void)
{
    mk_cache *c = mk(4 << 20, 4);
    char k[16], v[101];
    memset(v, 'c', 100);
    v[100] = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "c%05d", i);
        CHECK_EQ_U(put_op(c, MK_STORE_SET, k, v, 0, (i % 10) ? T0 + 10 : 0, 0, T0, NULL), MK_C_OK);
    }
    mk_cache_stats st0, st;
    mk_cache_get_stats(c, &st0);
    /* 90% expire: maintain reclaims them and compacts the mostly-dead segments */
    for (int i = 0; i < 8; i++)
        mk_cache_maintain(c, T0 + 20);
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, 2000);
    CHECK_EQ_U(st.reclaimed, 18000);
    CHECK_EQ_U(st.expired_unfetched, 18000);
    CHECK(st.segments_used * 3 < st0.segments_used);
    CHECK_EQ_U(st.evictions, 0);
    int found = 0;
    for (int i = 0; i < 20000; i += 10) {
        snprintf(k, sizeof k, "c%05d", i);
        char b[128];
        found += get(c, k, T0 + 20, b, sizeof b) == MK_C_OK && strcmp(b, v) == 0;
    }
    CHECK_EQ_U(found, 2000); /* moved items are intact */
    mk_cache_destroy(c);
}

static void test_cas_kept_when_moved(void)
{
    mk_cache *c = mk(1 << 20, 1);
    uint64_t cas0;
    char v[201], k[16];
    memset(v, 'm', 200);
    v[200] = 0;
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "m", "keep", 0, 0, 0, T0, &cas0), MK_C_OK);
    mk_item *it;
    CHECK_EQ_U(mk_cache_touch(c, "m", 1, T0 + 1000, T0), MK_C_OK); /* no expiry field: the item is rewritten */
    /* "p" starts on probation; read there, it is promoted (copied) to main when its segment leaves */
    uint64_t casp;
    CHECK_EQ_U(put_op(c, MK_STORE_SET, "p", "prob", 7, T0 + 500, 0, T0, &casp), MK_C_OK);
    for (int i = 0; i < 8000; i++) { /* 1.6 MB, each read once: main turns over, "m" is copied forward too */
        snprintf(k, sizeof k, "m%d", i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
        CHECK(has(c, k, T0));
        if (i % 500 == 0)
            CHECK(has(c, "m", T0) && has(c, "p", T0));
    }
    CHECK_EQ_U(mk_cache_get(c, "m", 1, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_cas(it), cas0);
    CHECK_EQ_I(mk_item_exp_at(it), T0 + 1000);
    mk_item_put(c, it);
    CHECK_EQ_U(mk_cache_get(c, "p", 1, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_cas(it), casp);
    CHECK_EQ_U(mk_item_flags(it), 7);
    CHECK_EQ_I(mk_item_exp_at(it), T0 + 500);
    mk_item_put(c, it);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "m", "new", 0, 0, cas0, T0, NULL), MK_C_OK);
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "p", "new", 0, 0, casp, T0, NULL), MK_C_OK);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK(st.reinserted > 0);
    mk_cache_destroy(c);
}

/* meta E: a client's unique is the item's cas, but never its place in flush order */
static void test_explicit_cas_kept_when_moved_and_flushed_by_place(void)
{
    mk_cache *c = mk(1 << 20, 1);
    mk_cache_flush(c, T0, 0); /* flush order is past small uniques from now on */
    mk_item *it;
    CHECK_EQ_U(mk_cache_alloc_cas(c, "e", 1, 3, 0, 2, 5, T0, &it), MK_C_OK);
    memcpy(mk_item_data(it), "ev", 2);
    uint64_t cas;
    CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_SET, 0, T0, &cas), MK_C_OK);
    mk_item_put(c, it);
    CHECK_EQ_U(cas, 5);
    char v[201], k[16];
    memset(v, 'm', 200);
    v[200] = 0;
    for (int i = 0; i < 8000; i++) { /* main turns over: "e", read often, is copied forward */
        snprintf(k, sizeof k, "m%d", i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
        if (i % 500 == 0)
            CHECK(has(c, "e", T0));
    }
    CHECK_EQ_U(mk_cache_get(c, "e", 1, T0, &it), MK_C_OK);
    CHECK_EQ_U(mk_item_cas(it), 5);
    CHECK_EQ_U(mk_item_flags(it), 3);
    mk_item_put(c, it);
    /* a cas store must quote it */
    CHECK_EQ_U(put_op(c, MK_STORE_CAS, "e", "new", 0, 0, 4, T0, NULL), MK_C_EXISTS);
    /* an append carrying an explicit unique gives it to the joined value; one without gets a fresh one */
    CHECK_EQ_U(mk_cache_alloc_cas(c, "e", 1, 0, 0, 1, 9, T0, &it), MK_C_OK);
    memcpy(mk_item_data(it), "x", 1);
    CHECK_EQ_U(mk_cache_store(c, it, MK_STORE_APPEND, 0, T0, &cas), MK_C_OK);
    mk_item_put(c, it);
    CHECK_EQ_U(cas, 9);
    CHECK_EQ_U(put_op(c, MK_STORE_APPEND, "e", "y", 0, 0, 0, T0, &cas), MK_C_OK);
    CHECK(cas != 9 && cas != 5);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK(st.reinserted > 0);
    mk_cache_flush(c, T0, 0);
    CHECK(!has(c, "e", T0));
    mk_cache_destroy(c);
}

/* ---------------- hash table ---------------- */

static void test_hash_growth(void)
{
    mk_cache_config cfg = {.mem_limit = (size_t)1 << 30, .evict = true, .use_cas = true, .nshards = 1,
                           .hashpower = 10};
    mk_cache *c = mk_cache_create(&cfg);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.hash_power_level, 10);
    uint64_t start_bytes = st.hash_bytes;
    bool saw_expanding = false;
    char k[32], v[32], b[32];
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "%d", i * 7);
        if (set(c, k, v, T0) != MK_C_OK) {
            CHECK(0);
            break;
        }
        if (i % 997 == 0) {
            mk_cache_get_stats(c, &st);
            saw_expanding |= st.hash_is_expanding;
            /* keys inserted so far stay reachable mid-resize */
            snprintf(k, sizeof k, "key:%d", i / 2);
            snprintf(v, sizeof v, "%d", (i / 2) * 7);
            CHECK(get(c, k, T0, b, sizeof b) == MK_C_OK && strcmp(b, v) == 0);
        }
    }
    CHECK(saw_expanding); /* growth is incremental: a resize in progress is visible */
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "%d", i * 7);
        if (get(c, k, T0, b, sizeof b) != MK_C_OK || strcmp(b, v) != 0)
            bad++;
    }
    CHECK_EQ_U(bad, 0);
    for (int i = 0; i < 100; i++)
        mk_cache_maintain(c, T0);
    mk_cache_get_stats(c, &st);
    CHECK(st.hash_power_level >= 17); /* 200k keys at load <= 1.5 */
    CHECK(!st.hash_is_expanding);
    CHECK(st.hash_bytes > start_bytes);
    CHECK_EQ_U(st.curr_items, N);
    for (int i = 0; i < N; i += 2) {
        snprintf(k, sizeof k, "key:%d", i);
        CHECK_EQ_U(mk_cache_delete(c, k, strlen(k), T0), MK_C_OK);
    }
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.curr_items, N / 2);
    mk_cache_destroy(c);
}

/* Incremental growth: after every single insert (each one migrates a step), every key is retrievable. */
static void test_incremental_growth(void)
{
    mk_cache_config cfg = {.mem_limit = 64 << 20, .evict = true, .use_cas = true, .nshards = 1, .hashpower = 4};
    mk_cache *c = mk_cache_create(&cfg);
    enum { N = 2400 };
    static bool live[N];
    char k[32], v[32], b[32];
    int expanding_steps = 0, bad = 0, bad_bytes = 0;
    mk_cache_stats st;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "g:%d", i);
        snprintf(v, sizeof v, "%d", i);
        CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
        live[i] = true;
        if (i % 7 == 3) { /* overwrite an older key: replaces its slot, in the old or the new table */
            int j = i / 2;
            snprintf(k, sizeof k, "g:%d", j);
            snprintf(v, sizeof v, "%d", j);
            CHECK_EQ_U(set(c, k, v, T0), MK_C_OK);
            live[j] = true;
        }
        if (i % 5 == 4) { /* delete one: backward shift in whichever table holds it */
            int j = (i * 13) % (i + 1);
            snprintf(k, sizeof k, "g:%d", j);
            CHECK_EQ_U(mk_cache_delete(c, k, strlen(k), T0), live[j] ? MK_C_OK : MK_C_MISS);
            live[j] = false;
        }
        mk_cache_get_stats(c, &st);
        if (st.hash_is_expanding) {
            expanding_steps++;
            /* both tables are counted while they overlap: the new one plus what is left of the old one */
            bad_bytes += !(st.hash_bytes > (8u << st.hash_power_level) &&
                           st.hash_bytes <= (8u << st.hash_power_level) / 2 * 3);
        } else {
            bad_bytes += st.hash_bytes != (8u << st.hash_power_level);
        }
        for (int j = 0; j <= i; j++) {
            snprintf(k, sizeof k, "g:%d", j);
            snprintf(v, sizeof v, "%d", j);
            mk_cache_rc rc = get(c, k, T0, b, sizeof b);
            bad += live[j] ? !(rc == MK_C_OK && strcmp(b, v) == 0) : rc != MK_C_MISS;
        }
    }
    CHECK_EQ_U(bad, 0);
    CHECK_EQ_U(bad_bytes, 0);
    CHECK(expanding_steps > 50);
    /* stop in the middle of a migration: lookups still find everything, maintain finishes it */
    int n = N;
    do {
        snprintf(k, sizeof k, "g:%d", n++);
        CHECK_EQ_U(set(c, k, "x", T0), MK_C_OK);
        mk_cache_get_stats(c, &st);
    } while (!st.hash_is_expanding && n < 100000);
    CHECK(st.hash_is_expanding);
    mk_cache_maintain(c, T0);
    mk_cache_get_stats(c, &st);
    CHECK(!st.hash_is_expanding);
    CHECK_EQ_U(st.hash_bytes, 8u << st.hash_power_level);
    for (int j = 0; j < n; j++) {
        snprintf(k, sizeof k, "g:%d", j);
        CHECK_EQ_U(has(c, k, T0), j >= N || live[j]);
    }
    mk_cache_destroy(c);
}

static void test_sharded_growth(void)
{
    mk_cache *c = mk((size_t)1 << 30, 0); /* 64 shards, default hashpower */
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.hash_power_level, 16);
    char k[32];
    for (int i = 0; i < 150000; i++) {
        snprintf(k, sizeof k, "s%d", i);
        CHECK_EQ_U(set(c, k, "v", T0), MK_C_OK);
    }
    for (int i = 0; i < 50; i++)
        mk_cache_maintain(c, T0);
    mk_cache_get_stats(c, &st);
    CHECK(st.hash_power_level >= 17);
    int bad = 0;
    for (int i = 0; i < 150000; i++) {
        snprintf(k, sizeof k, "s%d", i);
        bad += !has(c, k, T0);
    }
    CHECK_EQ_U(bad, 0);
    mk_cache_destroy(c);
}

/* ---------------- stats ---------------- */

struct cls_acc { unsigned n; uint64_t number, bytes; unsigned last_id; int64_t max_age; bool ordered; };

static void cls_cb(const mk_cache_class_stats *cs, void *ctx)
{
    struct cls_acc *a = ctx;
    if (cs->id <= a->last_id)
        a->ordered = false;
    a->last_id = cs->id;
    a->n++;
    a->number += cs->number;
    a->bytes += cs->bytes;
    if (cs->age > a->max_age)
        a->max_age = cs->age;
    CHECK(cs->number > 0);
    CHECK(cs->bytes <= cs->number * cs->chunk_size);
}

static void test_class_stats(void)
{
    mk_cache *c = mk(1 << 24, 4);
    char v[5000];
    memset(v, 'x', sizeof v);
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "c%d", i);
        v[i * 97] = 0;
        CHECK_EQ_U(set(c, k, v, T0 + i), MK_C_OK);
        v[i * 97] = 'x';
    }
    struct cls_acc a = {.ordered = true};
    mk_cache_class_stats_each(c, T0 + 100, cls_cb, &a);
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    CHECK(a.n > 5);
    CHECK(a.ordered);
    CHECK_EQ_U(a.number, 50);
    CHECK_EQ_U(a.bytes, st.bytes);
    CHECK_EQ_I(a.max_age, 100);
    mk_cache_reset_stats(c);
    mk_cache_get_stats(c, &st);
    CHECK_EQ_U(st.total_items, 0);
    CHECK_EQ_U(st.curr_items, 50);
    mk_cache_destroy(c);
}

static void test_two_caches(void)
{
    mk_cache *c1 = mk(1 << 20, 4), *c2 = mk(1 << 20, 1);
    char b[16];
    CHECK_EQ_U(set(c1, "k", "one", T0), MK_C_OK);
    CHECK_EQ_U(set(c2, "k", "two", T0), MK_C_OK);
    CHECK_EQ_U(get(c1, "k", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "one") == 0);
    CHECK_EQ_U(get(c2, "k", T0, b, sizeof b), MK_C_OK);
    CHECK(strcmp(b, "two") == 0);
    mk_cache_flush(c1, T0, 0);
    CHECK_EQ_U(get(c1, "k", T0, b, sizeof b), MK_C_FLUSHED);
    CHECK_EQ_U(get(c2, "k", T0, b, sizeof b), MK_C_OK);
    mk_cache_stats s1, s2;
    mk_cache_get_stats(c1, &s1);
    mk_cache_get_stats(c2, &s2);
    CHECK_EQ_U(s1.curr_items, 0);
    CHECK_EQ_U(s2.curr_items, 1);
    mk_cache_destroy(c1);
    CHECK(has(c2, "k", T0));
    mk_cache_destroy(c2);
}

/* ---------------- threads ---------------- */

struct stress { mk_cache *c; unsigned seed; _Atomic bool *stop; uint64_t ops; int errors; };

static void *stress_thread(void *arg)
{
    struct stress *st = arg;
    unsigned r = st->seed;
    char k[16], v[600];
    memset(v, '7', sizeof v);
    while (!*st->stop) {
        r = r * 1103515245u + 12345u;
        unsigned key = (r >> 8) % 2000, op = (r >> 20) % 12;
        snprintf(k, sizeof k, "k%u", key);
        size_t nk = strlen(k);
        int64_t now = T0 + (int64_t)(st->ops / 5000);
        mk_item *it = NULL;
        uint64_t res;
        switch (op) {
        case 0: case 1: case 2: {
            mk_cache_rc rc = mk_cache_get(st->c, k, nk, now, &it);
            if (rc == MK_C_OK) {
                /* values are all '7's or a number padded with spaces; large ones all '7's */
                const char *d = mk_item_data(it);
                if (mk_item_nbytes(it) && d[0] != '7' && (d[0] < '0' || d[0] > '9'))
                    st->errors++;
                if (mk_item_nbytes(it) > 4096 && !value_is(it, mk_item_nbytes(it), '7'))
                    st->errors++;
                mk_item_put(st->c, it);
            }
            break;
        }
        case 3: case 4:
            if ((r >> 28) % 4 == 0) { /* a large value, spanning segments */
                size_t n = 4097 + (r >> 3) % 150000;
                if (mk_cache_alloc(st->c, k, nk, 0, 0, n, now, &it) == MK_C_OK) {
                    fill_value(it, '7');
                    mk_cache_store(st->c, it, MK_STORE_SET, 0, now, NULL);
                    mk_item_put(st->c, it);
                }
                break;
            }
            put_op(st->c, MK_STORE_SET, k, "", 0, 0, 0, now, NULL);
            v[(r >> 4) % 600] = 0;
            put_op(st->c, MK_STORE_SET, k, v, 0, (r & 1) ? now + 2 : 0, 0, now, NULL);
            v[(r >> 4) % 600] = '7';
            break;
        case 5: put_op(st->c, MK_STORE_ADD, k, "1", 0, 0, 0, now, NULL); break;
        case 6: put_op(st->c, MK_STORE_APPEND, k, "77", 0, 0, 0, now, NULL); break;
        case 7: put_op(st->c, MK_STORE_PREPEND, k, "7", 0, 0, 0, now, NULL); break;
        case 8: mk_cache_arith(st->c, k, nk, r & 1, 3, now, &res, NULL); break;
        case 9: mk_cache_delete(st->c, k, nk, now); break;
        case 10: {
            if (mk_cache_get(st->c, k, nk, now, &it) == MK_C_OK) {
                uint64_t cas = mk_item_cas(it);
                mk_item_put(st->c, it);
                put_op(st->c, MK_STORE_CAS, k, "77", 0, 0, cas, now, NULL);
            }
            mk_cache_touch(st->c, k, nk, now + 5, now);
            break;
        }
        default:
            if ((r >> 12) % 64 == 0)
                mk_cache_maintain(st->c, now);
            else if ((r >> 12) % 64 == 1) {
                mk_cache_stats s;
                mk_cache_get_stats(st->c, &s);
                if (s.mem_used > s.mem_limit)
                    st->errors++;
            } else if ((r >> 12) % 512 == 2)
                mk_cache_flush(st->c, now, (r >> 4) & 1);
            else
                mk_cache_gat(st->c, k, nk, now + 10, now, &it), mk_item_put(st->c, it);
            break;
        }
        st->ops++;
    }
    return NULL;
}

static void stress_run(unsigned nshards, double seconds)
{
    mk_cache *c = mk(256 * 1024, nshards); /* small: eviction all the time */
    _Atomic bool stop = false;
    struct stress st[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        st[i] = (struct stress){.c = c, .seed = 17u * (unsigned)i + nshards, .stop = &stop};
        pthread_create(&th[i], NULL, stress_thread, &st[i]);
    }
    struct timespec ts = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    stop = true;
    uint64_t ops = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_U(st[i].errors, 0);
        ops += st[i].ops;
    }
    CHECK(ops > 1000);
    mk_cache_stats s;
    mk_cache_get_stats(c, &s);
    CHECK(s.mem_used <= s.mem_limit);
    CHECK(s.bytes <= s.mem_used); /* linked items live in charged segments */
    CHECK(s.evictions > 0);
    mk_cache_destroy(c);
}

static void test_threads_sharded(void) { stress_run(8, 1.0); }

struct overwriter { mk_cache *c; unsigned seed, keys; size_t size; bool vary; uint32_t writes; int failed; };

static void *overwrite_thread(void *arg)
{
    struct overwriter *o = arg;
    unsigned r = o->seed;
    char k[16];
    for (uint32_t w = 0; w < o->writes; w++) {
        r = r * 1103515245u + 12345u;
        unsigned key = (r >> 4) % o->keys;
        snprintf(k, sizeof k, "o%u", key);
        /* changing sizes: 50%..150% of the base, the mean stays the same */
        size_t n = o->vary ? o->size / 2 + (r >> 8) % (o->size + 1) : o->size;
        mk_cache_rc rc = set_big(o->c, k, n, (char)('a' + key % 26));
        o->failed += rc != MK_C_OK;
    }
    return NULL;
}

/* Overwriters of a fixed key set whose live data is `share` of the limit: nothing may be evicted. */
static void overwrite_run(size_t size, double share, bool vary)
{
    enum { THREADS = 8 };
    mk_cache *c = mk(8 << 20, 0);
    unsigned keys = (unsigned)(share * (8 << 20) / (double)(size + 16));
    struct overwriter o[THREADS];
    pthread_t th[THREADS];
    uint32_t per = 12 * keys / THREADS + 1;
    for (int i = 0; i < THREADS; i++) {
        o[i] = (struct overwriter){.c = c, .seed = 7u + (unsigned)i, .keys = keys, .size = size, .vary = vary,
                                   .writes = per};
        pthread_create(&th[i], NULL, overwrite_thread, &o[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_U(o[i].failed, 0);
    }
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    unsigned lost = 0;
    char k[16];
    for (unsigned i = 0; i < keys; i++) {
        snprintf(k, sizeof k, "o%u", i);
        mk_item *it;
        if (mk_cache_get(c, k, strlen(k), T0, &it) != MK_C_OK) {
            lost++; /* (a key no thread happened to write is "lost" too: 12 writes per key make that rare) */
            continue;
        }
        size_t n = mk_item_nbytes(it);
        CHECK(value_is(it, n, (char)('a' + i % 26)));
        mk_item_put(c, it);
    }
    if (st.evictions)
        fprintf(stderr, "  %zu-byte values, live %.0f%%%s: %" PRIu64 " evictions, %u keys lost\n", size,
                share * 100, vary ? ", changing sizes" : "", st.evictions, lost);
    CHECK_EQ_U(st.evictions, 0);
    CHECK(lost <= keys / 10000);
    CHECK(st.mem_used <= st.mem_limit);
    mk_cache_destroy(c);
}

static void test_concurrent_overwriters_never_evict(void)
{
    /* 16 connections overwriting a key set with live data at 40% of -m caused 437 evictions */
    static const size_t sizes[] = {100, 3000, 20000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        overwrite_run(sizes[i], 0.4, false);
        overwrite_run(sizes[i], 0.6, false);
        overwrite_run(sizes[i], 0.6, true);
    }
}
static void test_threads_one_shard(void) { stress_run(1, 0.5); }

int main(void)
{
    RUN(test_create_invalid);
    RUN(test_item_size);
    RUN(test_set_get_delete);
    RUN(test_read_copies_under_lock);
    RUN(test_add_replace);
    RUN(test_cas);
    RUN(test_append_prepend);
    RUN(test_store_twice);
    RUN(test_touch_gat_unlink);
    RUN(test_expiry);
    RUN(test_flush_immediate);
    RUN(test_store_after_flush);
    RUN(test_flush_delayed);
    RUN(test_arith);
    RUN(test_arith_parse);
    RUN(test_arith_while_referenced);
    RUN(test_memory_bound_fifo);
    RUN(test_policy_scan_resistant);
    RUN(test_policy_sketch_admits_popular_key);
    RUN(test_no_evict_mode);
    RUN(test_no_evict_compaction);
    RUN(test_too_large);
    RUN(test_set_limit);
    RUN(test_refcount_safety);
    RUN(test_evict_across_shards);
    RUN(test_outofmemory_and_sweep_flushed);
    RUN(test_large_items);
    RUN(test_hot_large_item_moves_out_of_evicted_segment);
    RUN(test_every_size_fills_the_limit);
    RUN(test_concurrent_overwriters_never_evict);
    RUN(test_large_value_evicts_its_own_size);
    RUN(test_deleted_large_value_space_reused_first);
    RUN(test_shifting_sizes);
    RUN(test_compaction_and_expiry_sweep);
    RUN(test_cas_kept_when_moved);
    RUN(test_explicit_cas_kept_when_moved_and_flushed_by_place);
    RUN(test_hash_growth);
    RUN(test_incremental_growth);
    RUN(test_sharded_growth);
    RUN(test_class_stats);
    RUN(test_two_caches);
    RUN(test_threads_sharded);
    RUN(test_threads_one_shard);
    return check_summary("test_cache");
}
