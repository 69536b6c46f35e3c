/* tests/unit/client/test_api.c — libmemkit's public API without servers: options, errors, server lists, argument checks, picking. */
#include "check.h"
#include "memkit.h"
#include "client/dist.h"

#include <stddef.h>
#include <string.h>

static void test_strerror(void)
{
    for (int e = 0; e >= MK_ENOTNUM; e--)
        CHECK(strcmp(mk_strerror(e), "unknown error") != 0);
    CHECK(strcmp(mk_strerror(-1000), "unknown error") == 0);
    CHECK(strcmp(mk_strerror(MK_ENOTFOUND), "not found") == 0);
}

static void test_options(void)
{
    mk_options o;
    mk_options_init(&o);
    CHECK_EQ_I(o.distribution, MK_DISTRIBUTION_KETAMA);
    CHECK(o.connect_timeout_ms > 0 && o.io_timeout_ms > 0 && o.pool_size > 0 && o.failure_limit > 0);
    CHECK(!o.auto_eject);
    static const char *names[] = {"ketama", "modula", "consistent", "rendezvous", "ketama_fnv1a"};
    for (int i = 0; i < 5; i++) {
        mk_distribution d;
        CHECK_EQ_I(mk_distribution_parse(names[i], &d), 0);
        CHECK_EQ_I(d, i);
    }
    mk_distribution d;
    CHECK_EQ_I(mk_distribution_parse("KETAMA", &d), MK_EINVAL);
    CHECK_EQ_I(mk_distribution_parse(NULL, &d), MK_EINVAL);
    mk_client *c;
    const int bad[][2] = {{0, 0}, {1, 0}, {2, 0}, {3, 0}};
    for (int i = 0; i < 4; i++) {
        mk_options_init(&o);
        if (bad[i][0] == 0) o.connect_timeout_ms = 0;
        if (bad[i][0] == 1) o.io_timeout_ms = -1;
        if (bad[i][0] == 2) o.failure_limit = 0;
        if (bad[i][0] == 3) o.pool_size = 0;
        CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1", &o, NULL, 0), MK_EINVAL);
    }
    mk_options_init(&o);
    o.distribution = (mk_distribution)99;
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1", &o, NULL, 0), MK_EINVAL);
}

static void test_server_lists(void)
{
    mk_client *c = (mk_client *)&c;
    char err[200];
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:99999", NULL, err, sizeof err), MK_EBADSERVERS);
    CHECK(c == NULL);
    CHECK(strstr(err, "bad server list") != NULL);
    CHECK_EQ_I(mk_client_create(&c, "[::1", NULL, err, sizeof err), MK_EBADSERVERS);
    CHECK_EQ_I(mk_client_create(&c, NULL, NULL, err, sizeof err), MK_EINVAL);
    CHECK_EQ_I(mk_client_create(NULL, "a", NULL, err, sizeof err), MK_EINVAL);
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:11211:2 127.0.0.2:11212, [::1]:3 4, unix:/tmp/s", NULL, err,
                                sizeof err), 0);
    CHECK_EQ_U(mk_server_count(c), 4);
    CHECK(strcmp(mk_server_name(c, 0), "127.0.0.1:11211") == 0);
    CHECK(strcmp(mk_server_name(c, 1), "127.0.0.2:11212") == 0);
    CHECK(strcmp(mk_server_name(c, 2), "[::1]:3") == 0);
    CHECK(strcmp(mk_server_name(c, 3), "/tmp/s") == 0);
    CHECK(mk_server_alive(c, 0) && !mk_server_alive(c, 4));
    mk_client_destroy(c);
    CHECK_EQ_U(mk_server_count(NULL), 0);
}

/* mk_server_for_key is the distribution layer's pick, key for key. */
static void test_pick_matches_dist(void)
{
    const char *list = "10.0.0.1:11211,10.0.0.2:11211:2,10.0.0.3:11300";
    mk_server_list sl;
    CHECK_EQ_I(mk_servers_parse(list, &sl, NULL), MK_SERVERS_OK);
    static const struct { mk_distribution d; mk_dist_kind k; } kinds[] = {
        {MK_DISTRIBUTION_KETAMA, MK_DIST_KETAMA}, {MK_DISTRIBUTION_MODULA, MK_DIST_MODULA},
        {MK_DISTRIBUTION_CONSISTENT, MK_DIST_CONSISTENT}, {MK_DISTRIBUTION_RENDEZVOUS, MK_DIST_RENDEZVOUS},
        {MK_DISTRIBUTION_KETAMA_FNV1A, MK_DIST_KETAMA_FNV1A},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        mk_options o;
        mk_options_init(&o);
        o.distribution = kinds[k].d;
        mk_client *c;
        CHECK_EQ_I(mk_client_create(&c, list, &o, NULL, 0), 0);
        mk_dist *d = mk_dist_create(kinds[k].k, sl.servers, sl.n);
        for (int i = 0; i < 500; i++) {
            char key[32];
            snprintf(key, sizeof key, "key:%d", i);
            CHECK_EQ_I(mk_server_for_key(c, key, strlen(key)), (int)mk_dist_pick(d, key, strlen(key)));
        }
        /* the batch lookup names the same servers, over more than one 64-key chunk, bad keys included */
        enum { N = 150 };
        static char kbuf[N][32];
        const char *kp[N];
        size_t nk[N];
        int out[N];
        for (int i = 0; i < N; i++) {
            snprintf(kbuf[i], sizeof kbuf[i], i % 37 == 5 ? "bad key:%d" : "key:%d", i);
            kp[i] = kbuf[i];
            nk[i] = strlen(kbuf[i]);
        }
        nk[7] = 0; /* empty */
        CHECK_EQ_I(mk_servers_for_keys(c, kp, nk, N, out), 0);
        int same = 0;
        for (int i = 0; i < N; i++)
            same += out[i] == mk_server_for_key(c, kp[i], nk[i]);
        CHECK_EQ_I(same, N);
        CHECK_EQ_I(out[5], MK_EBADKEY);
        CHECK_EQ_I(out[7], MK_EBADKEY);
        CHECK(out[6] >= 0);
        CHECK_EQ_I(mk_servers_for_keys(c, kp, nk, 0, NULL), 0);
        CHECK_EQ_I(mk_servers_for_keys(NULL, kp, nk, N, out), MK_EINVAL);
        CHECK_EQ_I(mk_servers_for_keys(c, NULL, nk, 1, out), MK_EINVAL);
        mk_dist_destroy(d);
        mk_client_destroy(c);
    }
    mk_servers_free(&sl);
}

static void test_argument_checks(void)
{
    mk_client *c;
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1", NULL, NULL, 0), 0);
    mk_item it;
    CHECK_EQ_I(mk_get(c, "", 0, &it), MK_EBADKEY);
    CHECK_EQ_I(mk_get(c, "k", 1, NULL), MK_EINVAL);
    char k251[251];
    memset(k251, 'x', sizeof k251);
    CHECK_EQ_I(mk_set(c, k251, 251, "v", 1, 0, 0), MK_EBADKEY);
    CHECK_EQ_I(mk_set(c, "a\tb", 3, "v", 1, 0, 0), MK_EBADKEY);
    CHECK_EQ_I(mk_check_key("a\tb", 3), MK_EBADKEY);
    CHECK_EQ_I(mk_check_key(k251, 251), MK_EBADKEY);
    CHECK_EQ_I(mk_check_key(k251, 250), 0);
    CHECK_EQ_I(mk_check_key("", 0), MK_EBADKEY);
    CHECK_EQ_I(mk_check_key("cl\xc3\xa9", 4), 0);
    CHECK_EQ_I(mk_check_key("a\x7f", 2), MK_EBADKEY);
    CHECK_EQ_I(mk_store(c, (mk_store_op)42, "k", 1, "v", 1, 0, 0, 0, 0), MK_EINVAL);
    CHECK_EQ_I(mk_store(c, MK_STORE_SET, "k", 1, NULL, 5, 0, 0, 0, 0), MK_EINVAL);
    CHECK_EQ_I(mk_version(c, 1, (char[8]){0}, 8), MK_ERANGE);
    CHECK_EQ_I(mk_stats(c, 1, NULL, NULL, NULL), MK_ERANGE);
    const char *keys[2] = {"ok", ""};
    size_t nk[2] = {2, 0};
    CHECK_EQ_I(mk_mget(c, keys, nk, 2, false, NULL, NULL), MK_EINVAL);
    mk_item items[2];
    CHECK_EQ_I(mk_mget_items(c, keys, nk, 2, false, items, NULL), MK_EBADKEY);
    mk_op_args a;
    mk_op_args_init(&a);
    CHECK_EQ_I(a.server, -1);
    mk_op *op;
    a.code = (mk_opcode)77;
    CHECK_EQ_I(mk_op_start(c, &a, &op), MK_EINVAL);
    a.code = MK_OP_GET;
    a.key = "k";
    a.nkey = 1;
    a.mode = MK_NOREPLY;
    CHECK_EQ_I(mk_op_start(c, &a, &op), MK_EINVAL);   /* get cannot be noreply */
    a.mode = 0;
    a.server = 3;
    CHECK_EQ_I(mk_op_start(c, &a, &op), MK_ERANGE);
    a.server = -1;
    CHECK_EQ_I(mk_op_start(c, &a, &op), 0);
    CHECK_EQ_I(mk_op_server(op), 0);
    CHECK_EQ_I(mk_op_fd(op), -1);   /* nothing sent yet */
    mk_op_destroy(op);
    mk_op_destroy(NULL);
    mk_item_clear(NULL);
    mk_client_destroy(c);
}

/* The public helpers added for the Python module: argument checks and the
 * caller-storage op (no server needed: nothing is sent). */
static void test_public_helpers(void)
{
    mk_client *c;
    CHECK_EQ_I(mk_client_create(&c, "127.0.0.1:1,127.0.0.1:2", NULL, NULL, 0), 0);
    CHECK_EQ_I(mk_server_revive(NULL, 0), MK_EINVAL);
    CHECK_EQ_I(mk_server_revive(c, 2), MK_ERANGE);
    CHECK_EQ_I(mk_server_revive(c, 1), 0);
    CHECK_EQ_I(mk_server_revive(c, MK_ALL_SERVERS), 0);
    CHECK(mk_server_alive(c, 0) && mk_server_alive(c, 1));
    mk_client_close_idle(c);      /* nothing idle: a no-op */
    mk_client_close_idle(NULL);
    CHECK_EQ_I(mk_op_wait(NULL), MK_EINVAL);
    CHECK_EQ_I(mk_op_run(NULL), MK_EINVAL);

    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_GET;
    a.key = "k";
    a.nkey = 1;
    _Alignas(max_align_t) char storage[MK_OP_STORAGE];
    mk_op *op = (mk_op *)&a;
    CHECK_EQ_I(mk_op_start_in(c, &a, storage, 8, &op), MK_ERANGE);
    CHECK(op == NULL);
    CHECK_EQ_I(mk_op_start_in(c, &a, NULL, sizeof storage, &op), MK_EINVAL);
    CHECK_EQ_I(mk_op_start_in(c, &a, storage, sizeof storage, NULL), MK_EINVAL);
    CHECK_EQ_I(mk_op_start_in(c, &a, storage, sizeof storage, &op), 0);
    CHECK(op == (mk_op *)(void *)storage);
    CHECK_EQ_I(mk_op_fd(op), -1);
    mk_op_destroy(op);            /* releases, does not free the caller's storage */
    a.key = "bad key";
    a.nkey = 7;
    CHECK_EQ_I(mk_op_start_in(c, &a, storage, sizeof storage, &op), MK_EBADKEY);

    /* batches: only store/delete/touch, and results are required */
    const char *keys[2] = {"a", "b"};
    size_t nk[2] = {1, 1}, nv[2] = {1, 1};
    const void *vals[2] = {"1", "2"};
    int res[2];
    mk_op_args b;
    mk_op_args_init(&b);
    b.code = MK_OP_STORE;
    b.keys = keys;
    b.nkeys = nk;
    b.nkeyset = 2;
    b.values = vals;
    b.nvalues = nv;
    CHECK_EQ_I(mk_op_start(c, &b, &op), MK_EINVAL);   /* no results */
    b.results = res;
    b.values = NULL;
    CHECK_EQ_I(mk_op_start(c, &b, &op), MK_EINVAL);   /* no values */
    b.values = vals;
    CHECK_EQ_I(mk_op_start(c, &b, &op), 0);
    CHECK(res[0] == MK_EAGAIN && res[1] == MK_EAGAIN);   /* not answered yet */
    mk_op_destroy(op);
    b.code = MK_OP_INCR;
    CHECK_EQ_I(mk_op_start(c, &b, &op), MK_EINVAL);
    b.code = MK_OP_DELETE;
    keys[1] = "b c";
    nk[1] = 3;
    CHECK_EQ_I(mk_op_start(c, &b, &op), MK_EBADKEY);
    mk_client_destroy(c);
}

int main(void)
{
    RUN(test_strerror);
    RUN(test_options);
    RUN(test_server_lists);
    RUN(test_pick_matches_dist);
    RUN(test_argument_checks);
    RUN(test_public_helpers);
    return check_summary("test_api");
}
