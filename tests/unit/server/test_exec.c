/* tests/unit/server/test_exec.c — protocol-neutral execution (exec.c): store semantics, outcomes and memcached's counters. */
#include <string.h>

#include "check.h"
#include "server/exec.h"

/* A worker of a server that has a store and settings and nothing else (no loop, no sockets). */
typedef struct fixture {
    mk_settings set;
    mk_server srv;
    mk_worker wk;
} fixture;

static fixture *setup(void)
{
    static fixture f;
    memset(&f, 0, sizeof(f));
    mk_settings_init(&f.set);
    mk_cache_config cfg = {.mem_limit = 8u << 20, .item_size_max = 1024 * 1024, .evict = true, .use_cas = true};
    f.srv.settings = &f.set;
    f.srv.cache = mk_cache_create(&cfg);
    pthread_mutex_init(&f.srv.stats_lock, NULL);
    f.wk.srv = &f.srv;
    f.wk.now = 1000000;
    return &f;
}

static void teardown(fixture *f)
{
    mk_cache_destroy(f->srv.cache);
    pthread_mutex_destroy(&f->srv.stats_lock);
}

static mk_str S(const char *s)
{
    return (mk_str){s, strlen(s)};
}

/* alloc + fill + store, as a protocol does around a data block */
static mk_status store(fixture *f, const char *key, const char *val, mk_store_op op, uint64_t cas_in, uint64_t *cas)
{
    mk_item *it;
    mk_status st = mk_exec_alloc(&f->wk, S(key), 7, 0, strlen(val), op, &it);
    if (st != MK_ST_OK)
        return st;
    mk_item_write(it, 0, val, strlen(val));
    st = mk_exec_store(&f->wk, it, op, cas_in, cas);
    mk_item_put(f->srv.cache, it);
    return st;
}

/* the value of key, or "" on a miss (read through a reference: no copy callback) */
static const char *value_of(fixture *f, const char *key)
{
    static char buf[256];
    mk_item *it;
    buf[0] = 0;
    if (mk_exec_get(&f->wk, S(key), NULL, NULL, NULL, &it) == MK_ST_OK && it) {
        size_t n = mk_item_nbytes(it);
        mk_item_read(it, 0, buf, n < sizeof(buf) - 1 ? n : sizeof(buf) - 1);
        buf[n < sizeof(buf) - 1 ? n : sizeof(buf) - 1] = 0;
        mk_item_put(f->srv.cache, it);
    }
    return buf;
}

static void test_store_and_get_count_as_memcached(void)
{
    fixture *f = setup();
    CHECK_EQ_U(store(f, "a", "one", MK_STORE_SET, 0, NULL), MK_ST_STORED);
    CHECK(strcmp(value_of(f, "a"), "one") == 0);
    CHECK(strcmp(value_of(f, "b"), "") == 0);
    CHECK_EQ_U(f->wk.stats.set_cmds, 1);
    CHECK_EQ_U(f->wk.stats.get_cmds, 2);
    CHECK_EQ_U(f->wk.stats.get_hits, 1);
    CHECK_EQ_U(f->wk.stats.get_misses, 1);
    CHECK_EQ_U(f->wk.stats.touch_cmds, 0);
    teardown(f);
}

static bool take_copy(void *ctx, const mk_item_view *v)
{
    memcpy(ctx, v->data, v->nbytes);
    return false;
}

static void test_get_copies_under_lock_or_hands_a_reference(void)
{
    fixture *f = setup();
    store(f, "k", "xyz", MK_STORE_SET, 0, NULL);
    char got[8] = {0};
    mk_item *it = (mk_item *)1;
    CHECK_EQ_U(mk_exec_get(&f->wk, S("k"), NULL, take_copy, got, &it), MK_ST_OK);
    CHECK(it == NULL);
    CHECK(memcmp(got, "xyz", 3) == 0);
    teardown(f);
}

static void test_gat_counts_touches_and_sets_expiry(void)
{
    fixture *f = setup();
    store(f, "k", "v", MK_STORE_SET, 0, NULL);
    mk_get_opts o = {.touch = true, .count_touch = true, .exp_at = f->wk.now + 10};
    mk_item *it;
    CHECK_EQ_U(mk_exec_get(&f->wk, S("k"), &o, NULL, NULL, &it), MK_ST_OK);
    CHECK(it != NULL);
    CHECK_EQ_I(mk_item_exp_at(it), f->wk.now + 10);
    mk_item_put(f->srv.cache, it);
    CHECK_EQ_U(mk_exec_get(&f->wk, S("nope"), &o, NULL, NULL, &it), MK_ST_NOT_FOUND);
    CHECK_EQ_U(f->wk.stats.touch_cmds, 2);
    CHECK_EQ_U(f->wk.stats.touch_hits, 1);
    CHECK_EQ_U(f->wk.stats.touch_misses, 1);
    f->wk.now += 11;
    CHECK(strcmp(value_of(f, "k"), "") == 0);
    CHECK_EQ_U(f->wk.stats.get_expired, 1);
    teardown(f);
}

static void test_failed_set_unlinks_the_old_value(void)
{
    fixture *f = setup();
    store(f, "k", "old", MK_STORE_SET, 0, NULL);
    mk_item *it;
    CHECK_EQ_U(mk_exec_alloc(&f->wk, S("k"), 0, 0, 2u << 20, MK_STORE_SET, &it), MK_ST_TOO_LARGE);
    CHECK(it == NULL);
    CHECK_EQ_U(f->wk.stats.store_too_large, 1);
    CHECK(strcmp(value_of(f, "k"), "") == 0);
    /* add keeps it: only a failed set drops the old value */
    store(f, "k", "old", MK_STORE_SET, 0, NULL);
    CHECK_EQ_U(mk_exec_alloc(&f->wk, S("k"), 0, 0, 2u << 20, MK_STORE_ADD, &it), MK_ST_TOO_LARGE);
    CHECK(strcmp(value_of(f, "k"), "old") == 0);
    teardown(f);
}

static void test_store_modes_and_cas_counters(void)
{
    fixture *f = setup();
    uint64_t cas = 0, cas2 = 0;
    CHECK_EQ_U(store(f, "k", "v", MK_STORE_ADD, 0, &cas), MK_ST_STORED);
    CHECK(cas != 0);
    CHECK_EQ_U(store(f, "k", "w", MK_STORE_ADD, 0, NULL), MK_ST_NOT_STORED);
    CHECK_EQ_U(store(f, "m", "w", MK_STORE_REPLACE, 0, NULL), MK_ST_NOT_STORED);
    CHECK_EQ_U(store(f, "k", "+", MK_STORE_APPEND, 0, NULL), MK_ST_STORED);
    CHECK_EQ_U(store(f, "k", "-", MK_STORE_PREPEND, 0, NULL), MK_ST_STORED);
    CHECK(strcmp(value_of(f, "k"), "-v+") == 0);
    CHECK_EQ_U(store(f, "k", "x", MK_STORE_CAS, cas, NULL), MK_ST_EXISTS);
    CHECK_EQ_U(store(f, "none", "x", MK_STORE_CAS, cas, NULL), MK_ST_NOT_FOUND);
    mk_item *it;
    mk_exec_get(&f->wk, S("k"), NULL, NULL, NULL, &it);
    uint64_t now_cas = mk_item_cas(it);
    mk_item_put(f->srv.cache, it);
    CHECK_EQ_U(store(f, "k", "x", MK_STORE_CAS, now_cas, &cas2), MK_ST_STORED);
    CHECK(cas2 != now_cas);
    CHECK_EQ_U(f->wk.stats.cas_hits, 1);
    CHECK_EQ_U(f->wk.stats.cas_badval, 1);
    CHECK_EQ_U(f->wk.stats.cas_misses, 1);
    CHECK_EQ_U(f->wk.stats.set_cmds, 8);
    teardown(f);
}

static void test_bad_chunk_counts_the_set_and_stores_nothing(void)
{
    fixture *f = setup();
    mk_item *it;
    CHECK_EQ_U(mk_exec_alloc(&f->wk, S("k"), 0, 0, 1, MK_STORE_SET, &it), MK_ST_OK);
    CHECK_EQ_U(mk_exec_store_bad_chunk(&f->wk, it), MK_ST_BAD_CHUNK);
    CHECK_EQ_U(f->wk.stats.set_cmds, 1);
    CHECK(strcmp(value_of(f, "k"), "") == 0);
    teardown(f);
}

static void test_delete_arith_touch_outcomes(void)
{
    fixture *f = setup();
    store(f, "n", "41", MK_STORE_SET, 0, NULL);
    store(f, "s", "abc", MK_STORE_SET, 0, NULL);
    uint64_t r = 0;
    CHECK_EQ_U(mk_exec_arith(&f->wk, S("n"), true, 1, &r, NULL), MK_ST_OK);
    CHECK_EQ_U(r, 42);
    CHECK_EQ_U(mk_exec_arith(&f->wk, S("n"), false, 100, &r, NULL), MK_ST_OK);
    CHECK_EQ_U(r, 0);
    CHECK_EQ_U(mk_exec_arith(&f->wk, S("s"), true, 1, &r, NULL), MK_ST_NON_NUMERIC);
    CHECK_EQ_U(mk_exec_arith(&f->wk, S("x"), true, 1, &r, NULL), MK_ST_NOT_FOUND);
    CHECK_EQ_U(f->wk.stats.incr_hits, 1);
    CHECK_EQ_U(f->wk.stats.decr_hits, 1);
    CHECK_EQ_U(f->wk.stats.incr_misses, 1);
    CHECK_EQ_U(mk_exec_touch(&f->wk, S("n"), 100), MK_ST_TOUCHED);
    CHECK_EQ_U(mk_exec_touch(&f->wk, S("x"), 100), MK_ST_NOT_FOUND);
    CHECK_EQ_U(f->wk.stats.touch_hits, 1);
    CHECK_EQ_U(f->wk.stats.touch_misses, 1);
    CHECK_EQ_U(mk_exec_delete(&f->wk, S("n")), MK_ST_DELETED);
    CHECK_EQ_U(mk_exec_delete(&f->wk, S("n")), MK_ST_NOT_FOUND);
    CHECK_EQ_U(f->wk.stats.delete_hits, 1);
    CHECK_EQ_U(f->wk.stats.delete_misses, 1);
    teardown(f);
}

static void test_flush_refused_when_disabled(void)
{
    fixture *f = setup();
    store(f, "k", "v", MK_STORE_SET, 0, NULL);
    f->set.flush_enabled = false;
    CHECK(!mk_exec_flush(&f->wk, false, 0));
    CHECK_EQ_U(f->wk.stats.flush_cmds, 0);
    CHECK(strcmp(value_of(f, "k"), "v") == 0);
    f->set.flush_enabled = true;
    CHECK(mk_exec_flush(&f->wk, false, 0));
    CHECK_EQ_U(f->wk.stats.flush_cmds, 1);
    CHECK(strcmp(value_of(f, "k"), "") == 0);
    teardown(f);
}

static void test_text_status_lines(void)
{
    CHECK(strcmp(mk_text_status_line(MK_CMD_SET, MK_ST_STORED), "STORED") == 0);
    CHECK(strcmp(mk_text_status_line(MK_CMD_SET, MK_ST_NO_MEMORY), "SERVER_ERROR out of memory storing object") == 0);
    CHECK(strcmp(mk_text_status_line(MK_CMD_INCR, MK_ST_NO_MEMORY), "SERVER_ERROR out of memory") == 0);
    CHECK(strcmp(mk_text_status_line(MK_CMD_DELETE, MK_ST_DELETED), "DELETED") == 0);
    CHECK(strcmp(mk_text_status_line(MK_CMD_SET, MK_ST_BAD_CHUNK), "CLIENT_ERROR bad data chunk") == 0);
}

int main(void)
{
    RUN(test_store_and_get_count_as_memcached);
    RUN(test_get_copies_under_lock_or_hands_a_reference);
    RUN(test_gat_counts_touches_and_sets_expiry);
    RUN(test_failed_set_unlinks_the_old_value);
    RUN(test_store_modes_and_cas_counters);
    RUN(test_bad_chunk_counts_the_set_and_stores_nothing);
    RUN(test_delete_arith_touch_outcomes);
    RUN(test_flush_refused_when_disabled);
    RUN(test_text_status_lines);
    return check_summary("test_exec");
}
