/* tests/unit/test_persist.c — warm restart (memcached's -e): the image a clean stop leaves, and what a start makes of good, unclean, mismatched and corrupted files. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "storage/cache.h"

#define T0 2000000000 /* the clock at the first start (a real unix time: items expire against it) */
#define MB (1024 * 1024)

static char path[64];

static mk_cache *open_cache(size_t mem, size_t item_max, int64_t now)
{
    mk_cache_config cfg = {.mem_limit = mem, .item_size_max = item_max, .evict = true, .use_cas = true,
                           .mem_file = path, .now = now};
    return mk_cache_create(&cfg);
}

/* A value of n bytes determined by (i, n, version). */
static char byte_at(unsigned i, size_t n, unsigned ver, size_t k) { return (char)((i * 31 + n + ver * 7 + k) % 251); }

static mk_cache_rc put(mk_cache *c, unsigned i, size_t n, unsigned ver, uint32_t flags, int64_t exp, uint64_t *cas)
{
    char key[32];
    snprintf(key, sizeof key, "key:%u", i);
    mk_item *it;
    mk_cache_rc rc = mk_cache_alloc(c, key, strlen(key), flags, exp, n, T0, &it);
    if (rc != MK_C_OK)
        return rc;
    for (size_t off = 0; off < n;) {
        char *p;
        size_t k = mk_item_piece(it, off, &p);
        for (size_t j = 0; j < k; j++)
            p[j] = byte_at(i, n, ver, off + j);
        off += k;
    }
    rc = mk_cache_store(c, it, MK_STORE_SET, 0, T0, cas);
    mk_item_put(c, it);
    return rc;
}

/* 1: key i holds exactly version ver of n bytes with these flags and cas; 0: a miss; -1: something else (corrupt). */
static int holds(mk_cache *c, unsigned i, size_t n, unsigned ver, uint32_t flags, uint64_t cas, int64_t now)
{
    char key[32];
    snprintf(key, sizeof key, "key:%u", i);
    mk_item *it;
    if (mk_cache_get(c, key, strlen(key), now, &it) != MK_C_OK)
        return 0;
    int ok = mk_item_nbytes(it) == n && mk_item_flags(it) == flags && (cas == 0 || mk_item_cas(it) == cas);
    for (size_t off = 0; ok && off < n;) {
        char *p;
        size_t k = mk_item_piece(it, off, &p);
        for (size_t j = 0; ok && j < k; j++)
            ok = p[j] == byte_at(i, n, ver, off + j);
        off += k;
    }
    mk_item_put(c, it);
    return ok ? 1 : -1;
}

static uint64_t items_in(mk_cache *c)
{
    mk_cache_stats st;
    mk_cache_get_stats(c, &st);
    return st.curr_items;
}

static size_t size_of(unsigned i) { return i % 50 == 0 ? 40000 + i : i % 7 == 0 ? 5000 + i : 10 + i % 300; }

enum { N = 3000 };
static uint64_t cas_of[N];

/* N items of mixed sizes (large ones span segments), some with expiry, then overwrites and deletes. */
static void populate(mk_cache *c)
{
    for (unsigned i = 0; i < N; i++)
        CHECK_EQ_U(put(c, i, size_of(i), 0, i, i % 5 == 0 ? T0 + 100 : 0, &cas_of[i]), MK_C_OK);
    for (unsigned i = 0; i < N; i += 3) /* a newer version of every third key */
        CHECK_EQ_U(put(c, i, size_of(i), 1, i, 0, &cas_of[i]), MK_C_OK);
    for (unsigned i = 1; i < N; i += 10) {
        char key[32];
        snprintf(key, sizeof key, "key:%u", i);
        CHECK_EQ_U(mk_cache_delete(c, key, strlen(key), T0), MK_C_OK);
    }
}

/* Expect exactly what populate left: the newest versions, nothing deleted, the same cas uniques. */
static void expect_populated(mk_cache *c, int64_t now)
{
    int bad = 0, missing = 0;
    for (unsigned i = 0; i < N; i++) {
        bool deleted = i % 10 == 1, expired = i % 5 == 0 && i % 3 != 0 && now >= T0 + 100;
        int h = holds(c, i, size_of(i), i % 3 == 0 ? 1 : 0, i, cas_of[i], now);
        if (deleted || expired)
            bad += h != 0;
        else if (h != 1)
            h == 0 ? missing++ : bad++;
    }
    CHECK_EQ_U(bad, 0);
    CHECK_EQ_U(missing, 0);
}

static void test_warm_restart_restores_everything(void)
{
    mk_cache *c = open_cache(16 * MB, MB, T0);
    CHECK(c != NULL);
    mk_cache_restart r;
    mk_cache_restart_info(c, &r);
    CHECK(r.file && !r.warm);
    CHECK_MEM(r.why, strlen(r.why), ""); /* a new file: nothing to say */
    populate(c);
    mk_cache_stats before;
    mk_cache_get_stats(c, &before);
    CHECK(mk_cache_save(c, T0));
    mk_cache_destroy(c);

    c = open_cache(16 * MB, MB, T0 + 1);
    mk_cache_restart_info(c, &r);
    CHECK(r.warm);
    CHECK_EQ_U(r.items, before.curr_items);
    CHECK_EQ_U(r.segments_dropped, 0);
    CHECK(r.seconds < 1.0);
    mk_cache_stats after;
    mk_cache_get_stats(c, &after);
    CHECK_EQ_U(after.curr_items, before.curr_items);
    CHECK_EQ_U(after.bytes, before.bytes);
    expect_populated(c, T0 + 1);
    /* it goes on working: new items get new cas uniques, and a second restart keeps them too */
    uint64_t cas;
    CHECK_EQ_U(put(c, 5, 77, 9, 1, 0, &cas), MK_C_OK);
    for (unsigned i = 0; i < N; i++)
        CHECK(cas != cas_of[i]);
    CHECK(mk_cache_save(c, T0 + 2));
    mk_cache_destroy(c);
    c = open_cache(16 * MB, MB, T0 + 200); /* later: the items with an expiry are gone */
    mk_cache_restart_info(c, &r);
    CHECK(r.warm);
    CHECK_EQ_I(holds(c, 5, 77, 9, 1, cas, T0 + 200), 1);
    cas_of[5] = cas;
    mk_cache_destroy(c); /* (no save: the next start must not trust the file) */
    unlink(path);
}

static void test_unclean_stop_starts_empty(void)
{
    /* kill -9: the running cache's image is marked unclean */
    mk_cache *c = open_cache(16 * MB, MB, T0);
    populate(c);
    mk_cache_destroy(c); /* no mk_cache_save */
    c = open_cache(16 * MB, MB, T0);
    mk_cache_restart r;
    mk_cache_restart_info(c, &r);
    CHECK(!r.warm);
    CHECK(strstr(r.why, "not clean") != NULL);
    CHECK_EQ_I(holds(c, 2, size_of(2), 0, 2, 0, T0), 0);
    CHECK_EQ_U(items_in(c), 0);
    mk_cache_destroy(c);
    unlink(path);
}

static void test_other_settings_start_empty(void)
{
    mk_cache *c = open_cache(16 * MB, MB, T0);
    populate(c);
    CHECK(mk_cache_save(c, T0));
    mk_cache_destroy(c);
    mk_cache_restart r;
    c = open_cache(16 * MB, 512 * 1024, T0); /* another -I */
    mk_cache_restart_info(c, &r);
    CHECK(!r.warm && strstr(r.why, "-I") != NULL);
    CHECK_EQ_I(holds(c, 2, size_of(2), 0, 2, 0, T0), 0);
    CHECK(mk_cache_save(c, T0));
    mk_cache_destroy(c);
    c = open_cache(24 * MB, MB, T0); /* another -m */
    mk_cache_restart_info(c, &r);
    CHECK(!r.warm && strstr(r.why, "-m") != NULL);
    mk_cache_destroy(c);
    unlink(path);
}

/* Flip `n` random bytes of the file past its header page, at positions from seed. */
static void corrupt(unsigned seed, int n)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    srand(seed);
    for (int i = 0; i < n; i++) {
        off_t at = 4096 + (off_t)((unsigned long)rand() * 65536ul + (unsigned long)rand()) % (st.st_size - 4096);
        unsigned char b;
        CHECK(pread(fd, &b, 1, at) == 1);
        b ^= (unsigned char)(1u << (rand() % 8));
        CHECK(pwrite(fd, &b, 1, at) == 1);
    }
    close(fd);
}

static void test_corrupted_file_serves_only_intact_items(void)
{
    for (unsigned seed = 1; seed <= 6; seed++) {
        mk_cache *c = open_cache(16 * MB, MB, T0);
        populate(c);
        CHECK(mk_cache_save(c, T0));
        mk_cache_destroy(c);
        corrupt(seed, (int)seed * 3);
        c = open_cache(16 * MB, MB, T0 + 1);
        mk_cache_restart r;
        mk_cache_restart_info(c, &r);
        /* every item served is byte-identical to what was stored; the damaged segments' items are gone */
        int served = 0, wrong = 0;
        for (unsigned i = 0; i < N; i++) {
            int h = holds(c, i, size_of(i), i % 3 == 0 ? 1 : 0, i, cas_of[i], T0 + 1);
            served += h == 1;
            wrong += h == -1 || (h == 1 && i % 10 == 1);
        }
        CHECK_EQ_U(wrong, 0);
        CHECK(!r.warm || r.segments_dropped > 0 || served > 0);
        mk_cache_destroy(c);
        unlink(path);
    }
    /* the header itself: an image whose header is damaged is not used at all */
    mk_cache *c = open_cache(16 * MB, MB, T0);
    populate(c);
    CHECK(mk_cache_save(c, T0));
    mk_cache_destroy(c);
    int fd = open(path, O_RDWR);
    CHECK(pwrite(fd, "X", 1, 20) == 1);
    close(fd);
    c = open_cache(16 * MB, MB, T0);
    mk_cache_restart r;
    mk_cache_restart_info(c, &r);
    CHECK(!r.warm && strstr(r.why, "corrupt") != NULL);
    mk_cache_destroy(c);
    unlink(path);
}

static void test_flushed_items_stay_flushed(void)
{
    mk_cache *c = open_cache(16 * MB, MB, T0);
    populate(c);
    mk_cache_flush(c, T0, 0);
    CHECK_EQ_U(put(c, 7, 70, 3, 0, 0, &cas_of[7]), MK_C_OK); /* after the flush: kept */
    CHECK(mk_cache_save(c, T0));
    mk_cache_destroy(c);
    c = open_cache(16 * MB, MB, T0);
    CHECK_EQ_I(holds(c, 2, size_of(2), 0, 2, 0, T0), 0);
    CHECK_EQ_I(holds(c, 7, 70, 3, 0, cas_of[7], T0), 1);
    CHECK_EQ_U(items_in(c), 1);
    mk_cache_destroy(c);
    unlink(path);
}

static void test_bad_path_fails(void)
{
    mk_cache_config cfg = {.mem_limit = 16 * MB, .mem_file = "/nonexistent-dir/x/memkit.img"};
    CHECK(mk_cache_create(&cfg) == NULL);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/mk_persist_%d.img", (int)getpid());
    RUN(test_warm_restart_restores_everything);
    RUN(test_unclean_stop_starts_empty);
    RUN(test_other_settings_start_empty);
    RUN(test_corrupted_file_serves_only_intact_items);
    RUN(test_flushed_items_stay_flushed);
    RUN(test_bad_path_fails);
    unlink(path);
    return check_summary("test_persist");
}
