/* tests/unit/test_proto.c — unit tests for the protocol layer (parse, compose, response), one per verified memcached 1.6.18 behaviour. */
#include <inttypes.h>

#include "check.h"
#include "memkit/binary.h"
#include "memkit/proto.h"

#include <stdlib.h>

static mk_request R;

/* parse a literal (sizeof-1 keeps embedded NULs) */
#define PL(lit) mk_parse_request((lit), sizeof(lit) - 1, &R)
static ssize_t PB(const char *p, size_t n) { return mk_parse_request(p, n, &R); }

/* table: line -> expected cmd, err, noreply */
typedef struct {
    const char *line;
    size_t len;
    mk_cmd cmd;
    mk_perr err;
    bool noreply;
} row;
#define ROW(lit, c, e, nr) {lit, sizeof(lit) - 1, c, e, nr}

static void run_rows(const row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ssize_t r = mk_parse_request(rows[i].line, rows[i].len, &R);
        if (r != (ssize_t)rows[i].len || R.cmd != rows[i].cmd || R.err != rows[i].err ||
            R.noreply != rows[i].noreply || R.action != MK_PA_NONE) {
            fprintf(stderr, "  row %zu \"%.*s\": r=%zd cmd=%d err=%d noreply=%d\n", i,
                    (int)rows[i].len, rows[i].line, r, R.cmd, R.err, R.noreply);
            check__cur_failed++;
        }
    }
}

static char *filled(size_t n, char c)
{
    char *p = malloc(n + 1);
    memset(p, c, n);
    p[n] = 0;
    return p;
}

/* ---- tokenization ---- */

static void test_line_endings(void)
{
    CHECK_EQ_I(PL("get a\r\n"), 7);
    CHECK(R.cmd == MK_CMD_GET && R.err == MK_PERR_NONE);
    CHECK_MEM(R.key.p, R.key.n, "a");
    CHECK_EQ_I(PL("get a\n"), 6);
    CHECK_MEM(R.key.p, R.key.n, "a");
    CHECK_EQ_I(PL("get a\r\r\n"), 8);
    CHECK_MEM(R.key.p, R.key.n, "a\r");
    CHECK_EQ_I(PL("get a\rb\r\n"), 9);
    CHECK_MEM(R.key.p, R.key.n, "a\rb");
    CHECK_EQ_I(PL("get a"), 0);
    CHECK_EQ_I(PL("get a\r"), 0);
    CHECK_EQ_I(PL(""), 0);
    /* consumes exactly one line */
    CHECK_EQ_I(PL("get a\r\nget b\r\n"), 7);
}

static void test_empty_and_short_lines(void)
{
    static const row rows[] = {
        ROW("\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("   \r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("\0get a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("g\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("x\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("s\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
}

static void test_spaces_and_tabs(void)
{
    CHECK_EQ_I(PL("get\ta\r\n"), 7);
    CHECK(R.err == MK_PERR_ERROR);
    CHECK_EQ_I(PL("get  a   \r\n"), 11);
    CHECK(R.cmd == MK_CMD_GET && R.err == MK_PERR_NONE);
    CHECK_MEM(R.keys.p, R.keys.n, "a");
    CHECK_EQ_I(PL("  get a\r\n"), 9);
    CHECK(R.cmd == MK_CMD_GET && R.err == MK_PERR_NONE);
    CHECK_MEM(R.key.p, R.key.n, "a");
}

static void test_nul_cuts_line(void)
{
    CHECK_EQ_I(PL("get a\0b\r\nversion\r\n"), 9);
    CHECK(R.cmd == MK_CMD_GET && R.err == MK_PERR_NONE);
    CHECK_MEM(R.keys.p, R.keys.n, "a");
    CHECK_EQ_I(PL("set a 0 0 1\0 junk\r\n"), 19);
    CHECK(R.cmd == MK_CMD_SET && R.err == MK_PERR_NONE && R.vlen == 1);
}

static void test_command_names(void)
{
    static const row rows[] = {
        ROW("GET a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("Get a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("getx a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("versions\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("get\r\n", MK_CMD_GET, MK_PERR_ERROR, false),
        ROW("gets\r\n", MK_CMD_GETS, MK_PERR_ERROR, false),
        ROW("gat\r\n", MK_CMD_GAT, MK_PERR_ERROR, false),
        ROW("gat 10\r\n", MK_CMD_GAT, MK_PERR_NONE, false),
        ROW("gets a b\r\n", MK_CMD_GETS, MK_PERR_NONE, false),
        ROW("gats 10 a\r\n", MK_CMD_GATS, MK_PERR_NONE, false),
        ROW("version\r\n", MK_CMD_VERSION, MK_PERR_NONE, false),
        ROW("version foo bar\r\n", MK_CMD_VERSION, MK_PERR_NONE, false),
        ROW("quit foo\r\n", MK_CMD_QUIT, MK_PERR_NONE, false),
        ROW("stats\r\n", MK_CMD_STATS, MK_PERR_NONE, false),
        ROW("shutdown\r\n", MK_CMD_SHUTDOWN, MK_PERR_NONE, false),
        ROW("shutdown noreply\r\n", MK_CMD_SHUTDOWN, MK_PERR_NONE, false),
        ROW("mn\r\n", MK_CMD_MN, MK_PERR_NONE, false),
        ROW("mg a v\r\n", MK_CMD_MG, MK_PERR_NONE, false),
        ROW("me a\r\n", MK_CMD_ME, MK_PERR_NONE, false),
        ROW("mx a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("mgg a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("mgx a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("mget a\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("slabs\r\n", MK_CMD_SLABS, MK_PERR_NONE, false), /* ERROR from the server */
        ROW("lru_crawler HTTP/1.1\r\n", MK_CMD_LRU_CRAWLER, MK_PERR_NONE, false), /* ERROR from the server, no close */
        ROW("watch HTTP/1.1\r\n", MK_CMD_WATCH, MK_PERR_NONE, false), /* ERROR from the server */
        ROW("set HTTP/1.0\r\n", MK_CMD_SET, MK_PERR_ERROR, false),
        ROW("bogus http/1.1\r\n", MK_CMD_NONE, MK_PERR_ERROR, false),
        ROW("get / HTTP/1.1\r\n", MK_CMD_GET, MK_PERR_NONE, false),
        ROW("version HTTP/1.1\r\n", MK_CMD_VERSION, MK_PERR_NONE, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
    CHECK_EQ_I(PL("gat 10\r\n"), 8);
    CHECK_EQ_U(R.keys.n, 0);
    CHECK_EQ_I(R.exptime, 10);
}

static void test_http_closes(void)
{
    CHECK_EQ_I(PL("GET / HTTP/1.1\r\n"), -1);
    CHECK_EQ_I(PL("foo HTTP/1.0\r\n"), -1);
    CHECK_EQ_I(PL("HTTP/1.1\r\n"), -1);
    CHECK_EQ_I(PL("xx HTTP/\r\n"), -1);
    CHECK_EQ_I(PL("bogus HTTP/1.1x\r\n"), -1);
    CHECK_EQ_I(PL("memlimit HTTP/1.1\r\n"), -1);
    /* HTTP as 23rd token of a 24-token line (rule looks at token 23) */
    CHECK_EQ_I(PL("foo a a a a a a a a a a a a a a a a a a a a a HTTP/1.1 b\r\n"), -1);
    /* HTTP as 24th token: not looked at */
    CHECK(PL("foo a a a a a a a a a a a a a a a a a a a a a a HTTP/1.1\r\n") > 0);
    CHECK(R.err == MK_PERR_ERROR);
}

static void test_token_limit(void)
{
    static const row rows[] = {
        ROW("delete a a a a a a a a a a a a a a a a a a a a a a a a a \r\n", MK_CMD_DELETE, MK_PERR_ERROR, false),
        ROW("set a 0 0 1 a a a a a a a a a a a a a a a a a a a a a a a a a \r\n", MK_CMD_SET, MK_PERR_ERROR, false),
        ROW("incr a 1 a a a a a a a a a a a a a a a a a a a a a\r\n", MK_CMD_INCR, MK_PERR_ERROR, false),
        ROW("flush_all a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a\r\n", MK_CMD_FLUSH_ALL, MK_PERR_ERROR, false),
        ROW("version a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a \r\n", MK_CMD_VERSION, MK_PERR_NONE, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
}

static void test_multiget_keys(void)
{
    char line[512];
    size_t n = (size_t)snprintf(line, sizeof line, "get");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(line + n, sizeof line - n, " k%d", i);
    n += (size_t)snprintf(line + n, sizeof line - n, "  \r\n");
    CHECK_EQ_I(PB(line, n), (ssize_t)n);
    CHECK(R.err == MK_PERR_NONE);
    mk_str rest = R.keys, k;
    int count = 0;
    char want[16];
    while (mk_next_key(&rest, &k)) {
        snprintf(want, sizeof want, "k%d", count);
        CHECK_MEM(k.p, k.n, want);
        count++;
    }
    CHECK_EQ_I(count, 40);
    CHECK_MEM(R.key.p, R.key.n, "k0");
}

/* ---- keys ---- */

static void test_key_lengths(void)
{
    char *k250 = filled(250, 'k'), *k251 = filled(251, 'k');
    char line[1024];
    int n;
    n = snprintf(line, sizeof line, "set %s 0 0 1\r\n", k250);
    CHECK_EQ_I(PB(line, (size_t)n), n);
    CHECK(R.err == MK_PERR_NONE && R.key.n == 250);
    n = snprintf(line, sizeof line, "set %s 0 0 1\r\n", k251);
    CHECK_EQ_I(PB(line, (size_t)n), n);
    CHECK(R.cmd == MK_CMD_SET && R.err == MK_PERR_BAD_FORMAT && R.action == MK_PA_NONE && !R.noreply);
    n = snprintf(line, sizeof line, "set %s 0 0 1 noreply\r\n", k251);
    CHECK_EQ_I(PB(line, (size_t)n), n);
    CHECK(R.err == MK_PERR_BAD_FORMAT && R.action == MK_PA_NONE && R.noreply);
    n = snprintf(line, sizeof line, "get a %s b\r\n", k251);
    CHECK_EQ_I(PB(line, (size_t)n), n);
    CHECK(R.cmd == MK_CMD_GET && R.err == MK_PERR_BAD_FORMAT);
    n = snprintf(line, sizeof line, "get %s\r\n", k250);
    PB(line, (size_t)n);
    CHECK(R.err == MK_PERR_NONE);
    n = snprintf(line, sizeof line, "gat 0 %s\r\n", k251);
    PB(line, (size_t)n);
    CHECK(R.err == MK_PERR_BAD_FORMAT);
    n = snprintf(line, sizeof line, "gat x %s\r\n", k251); /* exptime checked first */
    PB(line, (size_t)n);
    CHECK(R.err == MK_PERR_BAD_EXPTIME);
    n = snprintf(line, sizeof line, "delete %s\r\n", k251);
    PB(line, (size_t)n);
    CHECK(R.cmd == MK_CMD_DELETE && R.err == MK_PERR_BAD_FORMAT);
    n = snprintf(line, sizeof line, "incr %s 1\r\n", k251);
    PB(line, (size_t)n);
    CHECK(R.cmd == MK_CMD_INCR && R.err == MK_PERR_BAD_FORMAT);
    n = snprintf(line, sizeof line, "touch %s 1\r\n", k251);
    PB(line, (size_t)n);
    CHECK(R.cmd == MK_CMD_TOUCH && R.err == MK_PERR_BAD_FORMAT);
    /* key > 23 tokens into a get line */
    n = snprintf(line, sizeof line,
                 "get k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12 k13 k14 k15 k16 k17 k18 k19 k20 k21 k22 k23 k24 %s\r\n",
                 k251);
    PB(line, (size_t)n);
    CHECK(R.err == MK_PERR_BAD_FORMAT);
    /* a too-long key at every position around the tokenizer's 23-token limit, with doubled spaces too */
    for (int j = 0; j < 30; j++) {
        for (int big = 250; big <= 251; big++) {
            int at = snprintf(line, sizeof line, "get ");
            for (int i = 0; i < j; i++)
                at += snprintf(line + at, sizeof line - (size_t)at, i % 3 ? "a%d " : "a%d  ", i);
            at += snprintf(line + at, sizeof line - (size_t)at, "%s z \r\n", big == 250 ? k250 : k251);
            CHECK_EQ_I(PB(line, (size_t)at), at);
            CHECK(R.err == (big == 250 ? MK_PERR_NONE : MK_PERR_BAD_FORMAT));
            if (big == 250 && j > 0)
                CHECK_MEM(R.key.p, R.key.n, "a0");
            if (big == 250 && j == 0)
                CHECK_EQ_U(R.key.n, 250);
        }
    }
    free(k250);
    free(k251);
}

static void test_key_control_bytes(void)
{
    CHECK_EQ_I(PL("set \x01\x7f\xff 0 0 1\r\n"), 15);
    CHECK(R.err == MK_PERR_NONE);
    CHECK_MEM(R.key.p, R.key.n, "\x01\x7f\xff");
}

/* ---- storage numbers ---- */

static void test_storage_token_counts(void)
{
    static const row rows[] = {
        ROW("set a 0 0\r\n", MK_CMD_SET, MK_PERR_ERROR, false),
        ROW("set a 0 0 1 noreply x\r\n", MK_CMD_SET, MK_PERR_ERROR, false),
        ROW("set a 0 0 noreply\r\n", MK_CMD_SET, MK_PERR_BAD_FORMAT, true),
        ROW("cas a 0 0 1\r\n", MK_CMD_CAS, MK_PERR_ERROR, false),
        ROW("cas a 0 0 1 2 noreply x\r\n", MK_CMD_CAS, MK_PERR_ERROR, false),
        ROW("add a 0 0\r\n", MK_CMD_ADD, MK_PERR_ERROR, false),
        ROW("replace a 0 0\r\n", MK_CMD_REPLACE, MK_PERR_ERROR, false),
        ROW("append a 0 0\r\n", MK_CMD_APPEND, MK_PERR_ERROR, false),
        ROW("prepend a 0 0\r\n", MK_CMD_PREPEND, MK_PERR_ERROR, false),
        ROW("set a 0 0 1 foo\r\n", MK_CMD_SET, MK_PERR_NONE, false),
        ROW("set a 0 0 1 NOREPLY\r\n", MK_CMD_SET, MK_PERR_NONE, false),
        ROW("set a 0 0 1 noreply\r\n", MK_CMD_SET, MK_PERR_NONE, true),
        ROW("cas a 0 0 1 5 noreply\r\n", MK_CMD_CAS, MK_PERR_NONE, true),
        ROW("add a 0 0 1\r\n", MK_CMD_ADD, MK_PERR_NONE, false),
        ROW("replace a 0 0 1\r\n", MK_CMD_REPLACE, MK_PERR_NONE, false),
        ROW("append a 0 0 1\r\n", MK_CMD_APPEND, MK_PERR_NONE, false),
        ROW("prepend a 0 0 1\r\n", MK_CMD_PREPEND, MK_PERR_NONE, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
}

static bool set_flags(const char *tok, uint32_t *flags)
{
    char line[128];
    int n = snprintf(line, sizeof line, "set a %s 0 1\r\n", tok);
    PB(line, (size_t)n);
    *flags = R.flags;
    return R.err == MK_PERR_NONE;
}

static void test_flags(void)
{
    static const struct { const char *t; bool ok; uint32_t v; } c[] = {
        {"4294967295", true, 4294967295u}, {"4294967296", true, 0}, {"18446744073709551615", true, 4294967295u},
        {"-0", true, 0}, {"+5", true, 5}, {"\t7", true, 7}, {"7\t", true, 7}, {"7\tz", true, 7},
        {"00012", true, 12}, {"-18446744073709551615", true, 1},
        {"18446744073709551616", false, 0}, {"-1", false, 0}, {"-4294967295", false, 0},
        {"1abc", false, 0}, {"abc", false, 0}, {"0x10", false, 0}, {"+", false, 0}, {"-", false, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        uint32_t f;
        bool ok = set_flags(c[i].t, &f);
        if (ok != c[i].ok || (ok && f != c[i].v)) {
            fprintf(stderr, "  flags \"%s\": ok=%d v=%u\n", c[i].t, ok, f);
            check__cur_failed++;
        }
        if (!ok)
            CHECK(R.err == MK_PERR_BAD_FORMAT && R.action == MK_PA_NONE);
    }
}

static void test_exptime(void)
{
    static const struct { const char *t; bool ok; int64_t v; } c[] = {
        {"-1", true, -1}, {"2147483647", true, 2147483647}, {"2147483648", true, INT32_MIN},
        {"-2147483648", true, INT32_MIN}, {"-2147483649", true, INT32_MAX}, {"-4294967295", true, 1},
        {"+10", true, 10}, {"99999999999999999999", false, 0}, {"abc", false, 0}, {"1x", false, 0},
        {"9223372036854775807", true, -1}, {"9223372036854775808", false, 0},
        {"-9223372036854775808", true, 0}, {"-9223372036854775809", false, 0},
    };
    char line[128];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int n = snprintf(line, sizeof line, "set a 0 %s 1\r\n", c[i].t);
        PB(line, (size_t)n);
        bool ok = R.err == MK_PERR_NONE;
        if (ok != c[i].ok || (ok && R.exptime != c[i].v)) {
            fprintf(stderr, "  exptime \"%s\": ok=%d v=%lld\n", c[i].t, ok, (long long)R.exptime);
            check__cur_failed++;
        }
        if (!ok)
            CHECK(R.err == MK_PERR_BAD_FORMAT);
    }
}

static void test_vlen(void)
{
    static const struct { const char *t; bool ok; uint64_t v; } c[] = {
        {"0", true, 0}, {"+1", true, 1}, {"4294967297", true, 1}, {"-4294967295", true, 1},
        {"2147483645", true, 2147483645}, {"2147483646", false, 0}, {"2147483647", false, 0},
        {"-1", false, 0}, {"abc", false, 0}, {"1x", false, 0},
    };
    char line[128];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int n = snprintf(line, sizeof line, "set a 0 0 %s\r\n", c[i].t);
        PB(line, (size_t)n);
        bool ok = R.err == MK_PERR_NONE;
        if (ok != c[i].ok || (ok && R.vlen != c[i].v)) {
            fprintf(stderr, "  vlen \"%s\": ok=%d v=%llu\n", c[i].t, ok, (unsigned long long)R.vlen);
            check__cur_failed++;
        }
        if (!ok)
            CHECK(R.err == MK_PERR_BAD_FORMAT && R.action == MK_PA_NONE);
    }
}

static void test_cas_unique(void)
{
    static const struct { const char *t; bool ok; uint64_t v; } c[] = {
        {"18446744073709551615", true, UINT64_MAX}, {"-0", true, 0}, {"42", true, 42},
        {"-1", false, 0}, {"abc", false, 0}, {"18446744073709551616", false, 0}, {"1x", false, 0},
    };
    char line[128];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int n = snprintf(line, sizeof line, "cas a 0 0 1 %s\r\n", c[i].t);
        PB(line, (size_t)n);
        bool ok = R.err == MK_PERR_NONE;
        if (ok != c[i].ok || (ok && R.cas != c[i].v)) {
            fprintf(stderr, "  cas \"%s\": ok=%d\n", c[i].t, ok);
            check__cur_failed++;
        }
        if (!ok)
            CHECK(R.err == MK_PERR_BAD_FORMAT);
    }
}

static void test_storage_fields(void)
{
    CHECK_EQ_I(PL("cas mykey 123 -5 10 99 noreply\r\n"), 32);
    CHECK(R.cmd == MK_CMD_CAS && R.err == MK_PERR_NONE && R.noreply);
    CHECK_MEM(R.key.p, R.key.n, "mykey");
    CHECK_EQ_U(R.flags, 123);
    CHECK_EQ_I(R.exptime, -5);
    CHECK_EQ_U(R.vlen, 10);
    CHECK_EQ_U(R.cas, 99);
    CHECK(mk_cmd_is_storage(MK_CMD_CAS) && mk_cmd_is_storage(MK_CMD_SET) && !mk_cmd_is_storage(MK_CMD_GET));
    CHECK(!mk_cmd_is_storage(MK_CMD_INCR) && !mk_cmd_is_storage(MK_CMD_NONE));
}

/* ---- other commands ---- */

static void test_incr_decr(void)
{
    static const row rows[] = {
        ROW("incr n 1\r\n", MK_CMD_INCR, MK_PERR_NONE, false),
        ROW("incr n abc\r\n", MK_CMD_INCR, MK_PERR_BAD_DELTA, false),
        ROW("incr n -1\r\n", MK_CMD_INCR, MK_PERR_BAD_DELTA, false),
        ROW("incr n 18446744073709551616\r\n", MK_CMD_INCR, MK_PERR_BAD_DELTA, false),
        ROW("decr n 1x\r\n", MK_CMD_DECR, MK_PERR_BAD_DELTA, false),
        ROW("incr n 1 foo\r\n", MK_CMD_INCR, MK_PERR_NONE, false),
        ROW("incr n 1 noreply\r\n", MK_CMD_INCR, MK_PERR_NONE, true),
        ROW("incr n noreply\r\n", MK_CMD_INCR, MK_PERR_BAD_DELTA, true),
        ROW("incr n abc noreply\r\n", MK_CMD_INCR, MK_PERR_BAD_DELTA, true),
        ROW("incr a\r\n", MK_CMD_INCR, MK_PERR_ERROR, false),
        ROW("incr a 1 noreply x\r\n", MK_CMD_INCR, MK_PERR_ERROR, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
    static const struct { const char *t; uint64_t v; } ok[] = {
        {"18446744073709551615", UINT64_MAX}, {"+1", 1}, {"-0", 0}, {"\t3", 3}, {"-18446744073709551615", 1},
    };
    char line[128];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int n = snprintf(line, sizeof line, "decr n %s\r\n", ok[i].t);
        PB(line, (size_t)n);
        CHECK(R.cmd == MK_CMD_DECR && R.err == MK_PERR_NONE);
        CHECK_EQ_U(R.delta, ok[i].v);
    }
    PL("incr key 7\r\n");
    CHECK_MEM(R.key.p, R.key.n, "key");
}

static void test_touch_gat(void)
{
    static const row rows[] = {
        ROW("touch n 10\r\n", MK_CMD_TOUCH, MK_PERR_NONE, false),
        ROW("touch n abc\r\n", MK_CMD_TOUCH, MK_PERR_BAD_EXPTIME, false),
        ROW("touch n 1x\r\n", MK_CMD_TOUCH, MK_PERR_BAD_EXPTIME, false),
        ROW("touch n 99999999999999999999\r\n", MK_CMD_TOUCH, MK_PERR_BAD_EXPTIME, false),
        ROW("touch n -1\r\n", MK_CMD_TOUCH, MK_PERR_NONE, false),
        ROW("touch n 10 foo\r\n", MK_CMD_TOUCH, MK_PERR_NONE, false),
        ROW("touch n abc noreply\r\n", MK_CMD_TOUCH, MK_PERR_BAD_EXPTIME, true),
        ROW("touch a\r\n", MK_CMD_TOUCH, MK_PERR_ERROR, false),
        ROW("touch a 1 noreply x\r\n", MK_CMD_TOUCH, MK_PERR_ERROR, false),
        ROW("gat abc n\r\n", MK_CMD_GAT, MK_PERR_BAD_EXPTIME, false),
        ROW("gat x a\r\n", MK_CMD_GAT, MK_PERR_BAD_EXPTIME, false),
        ROW("gats 99999999999999999999 n\r\n", MK_CMD_GATS, MK_PERR_BAD_EXPTIME, false),
        ROW("gat -1 n\r\n", MK_CMD_GAT, MK_PERR_NONE, false),
        ROW("gat 10 n noreply\r\n", MK_CMD_GAT, MK_PERR_NONE, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
    PL("gat 10 n noreply\r\n");
    CHECK_MEM(R.keys.p, R.keys.n, "n noreply");
    CHECK_EQ_I(R.exptime, 10);
    PL("touch k -2147483649\r\n");
    CHECK_EQ_I(R.exptime, INT32_MAX);
}

static void test_delete(void)
{
    static const row rows[] = {
        ROW("delete n\r\n", MK_CMD_DELETE, MK_PERR_NONE, false),
        ROW("delete n 0\r\n", MK_CMD_DELETE, MK_PERR_NONE, false),
        ROW("delete n noreply\r\n", MK_CMD_DELETE, MK_PERR_NONE, true),
        ROW("delete n 0 noreply\r\n", MK_CMD_DELETE, MK_PERR_NONE, true),
        ROW("delete noreply\r\n", MK_CMD_DELETE, MK_PERR_NONE, false),
        ROW("delete n 5\r\n", MK_CMD_DELETE, MK_PERR_DELETE_USAGE, false),
        ROW("delete n 00\r\n", MK_CMD_DELETE, MK_PERR_DELETE_USAGE, false),
        ROW("delete n foo\r\n", MK_CMD_DELETE, MK_PERR_DELETE_USAGE, false),
        ROW("delete n noreply 0\r\n", MK_CMD_DELETE, MK_PERR_DELETE_USAGE, false),
        ROW("delete n 0 0\r\n", MK_CMD_DELETE, MK_PERR_DELETE_USAGE, false),
        ROW("delete n 5 noreply\r\n", MK_CMD_DELETE, MK_PERR_DELETE_USAGE, true),
        ROW("delete\r\n", MK_CMD_DELETE, MK_PERR_ERROR, false),
        ROW("delete a 0 noreply x\r\n", MK_CMD_DELETE, MK_PERR_ERROR, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
    PL("delete noreply\r\n");
    CHECK_MEM(R.key.p, R.key.n, "noreply");
}

static void test_flush_all(void)
{
    static const row rows[] = {
        ROW("flush_all\r\n", MK_CMD_FLUSH_ALL, MK_PERR_NONE, false),
        ROW("flush_all noreply\r\n", MK_CMD_FLUSH_ALL, MK_PERR_NONE, true),
        ROW("flush_all 0\r\n", MK_CMD_FLUSH_ALL, MK_PERR_NONE, false),
        ROW("flush_all 0 noreply\r\n", MK_CMD_FLUSH_ALL, MK_PERR_NONE, true),
        ROW("flush_all -1\r\n", MK_CMD_FLUSH_ALL, MK_PERR_NONE, false),
        ROW("flush_all 10 20\r\n", MK_CMD_FLUSH_ALL, MK_PERR_NONE, false),
        ROW("flush_all abc\r\n", MK_CMD_FLUSH_ALL, MK_PERR_BAD_EXPTIME, false),
        ROW("flush_all abc noreply\r\n", MK_CMD_FLUSH_ALL, MK_PERR_BAD_EXPTIME, true),
        ROW("flush_all noreply 5\r\n", MK_CMD_FLUSH_ALL, MK_PERR_BAD_EXPTIME, false),
        ROW("flush_all 1x\r\n", MK_CMD_FLUSH_ALL, MK_PERR_BAD_EXPTIME, false),
        ROW("flush_all 99999999999999999999\r\n", MK_CMD_FLUSH_ALL, MK_PERR_BAD_EXPTIME, false),
        ROW("flush_all NOREPLY\r\n", MK_CMD_FLUSH_ALL, MK_PERR_BAD_EXPTIME, false),
        ROW("flush_all 0 noreply x\r\n", MK_CMD_FLUSH_ALL, MK_PERR_ERROR, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
    PL("flush_all\r\n");
    CHECK(!R.has_arg && R.arg == 0);
    PL("flush_all noreply\r\n");
    CHECK(!R.has_arg);
    PL("flush_all -1\r\n");
    CHECK(R.has_arg && R.arg == -1);
    PL("flush_all 10 20\r\n");
    CHECK(R.has_arg && R.arg == 10);
    PL("flush_all 0 noreply\r\n");
    CHECK(R.has_arg && R.arg == 0);
}

static void test_verbosity_memlimit(void)
{
    static const row rows[] = {
        ROW("verbosity 1\r\n", MK_CMD_VERBOSITY, MK_PERR_NONE, false),
        ROW("verbosity 5 6\r\n", MK_CMD_VERBOSITY, MK_PERR_NONE, false),
        ROW("verbosity 99999999999\r\n", MK_CMD_VERBOSITY, MK_PERR_NONE, false),
        ROW("verbosity\r\n", MK_CMD_VERBOSITY, MK_PERR_ERROR, false),
        ROW("verbosity 1 noreply x\r\n", MK_CMD_VERBOSITY, MK_PERR_ERROR, false),
        ROW("verbosity abc\r\n", MK_CMD_VERBOSITY, MK_PERR_BAD_FORMAT, false),
        ROW("verbosity -1\r\n", MK_CMD_VERBOSITY, MK_PERR_BAD_FORMAT, false),
        ROW("verbosity 1x\r\n", MK_CMD_VERBOSITY, MK_PERR_BAD_FORMAT, false),
        ROW("verbosity \t\r\n", MK_CMD_VERBOSITY, MK_PERR_BAD_FORMAT, false),
        ROW("verbosity noreply\r\n", MK_CMD_VERBOSITY, MK_PERR_BAD_FORMAT, true),
        ROW("verbosity 1 noreply\r\n", MK_CMD_VERBOSITY, MK_PERR_NONE, true),
        ROW("cache_memlimit 100\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_NONE, false),
        ROW("cache_memlimit 5\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_NONE, false),
        ROW("cache_memlimit abc\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_ERROR, false),
        ROW("cache_memlimit -1\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_ERROR, false),
        ROW("cache_memlimit 100 noreply\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_NONE, true),
        ROW("cache_memlimit abc noreply\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_ERROR, true),
        ROW("cache_memlimit\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_ERROR, false),
        ROW("cache_memlimit 100 noreply x\r\n", MK_CMD_CACHE_MEMLIMIT, MK_PERR_ERROR, false),
    };
    run_rows(rows, sizeof rows / sizeof rows[0]);
    PL("verbosity 99999999999\r\n");
    CHECK(R.has_arg && R.arg == (int64_t)(uint32_t)99999999999ull);
    PL("cache_memlimit 4294967304\r\n");
    CHECK(R.has_arg && R.arg == 8);
}

static void test_stats_args(void)
{
    PL("stats\r\n");
    CHECK(R.cmd == MK_CMD_STATS && R.args.n == 0);
    PL("stats  \r\n");
    CHECK(R.cmd == MK_CMD_STATS && R.args.n == 0);
    PL("stats   items  \r\n");
    CHECK_MEM(R.args.p, R.args.n, "items");
    PL("stats detail on\r\n");
    CHECK_MEM(R.args.p, R.args.n, "detail on");
    PL("shutdown graceful\r\n");
    CHECK(R.cmd == MK_CMD_SHUTDOWN);
    CHECK_MEM(R.args.p, R.args.n, "graceful");
}

/* ---- long lines ---- */

static void test_long_lines(void)
{
    char *b = filled(MK_GET_LINE_MAX + 16, 'x');
    /* over 2048 bytes without a newline: closed unless more input has arrived (-2), and at
     * memcached's 16 KiB read buffer for certain (-1) */
    CHECK_EQ_I(PB(b, 2048), 0);
    CHECK_EQ_I(PB(b, 2049), -2);
    CHECK_EQ_I(PB(b, 16383), -2);
    CHECK_EQ_I(PB(b, 16384), -1);
    memcpy(b, "set ", 4);
    CHECK_EQ_I(PB(b, 2044), 0);
    CHECK_EQ_I(PB(b, 3004), -2);
    /* a line that ends within memcached's 16 KiB read buffer is processed */
    memset(b, 'x', 16382);
    memcpy(b + 16382, "\r\n", 2);
    CHECK_EQ_I(PB(b, 16384), 16384);
    CHECK(R.err == MK_PERR_ERROR);
    memset(b, 'x', 16383);
    memcpy(b + 16383, "\r\n", 2);
    CHECK_EQ_I(PB(b, 16385), -1);
    memset(b, 'x', 5000);
    memcpy(b + 5000, "\r\n", 2);
    CHECK_EQ_I(PB(b, 5002), 5002);
    CHECK(R.err == MK_PERR_ERROR);
    /* multigets keep buffering */
    for (size_t i = 0; i < 6000; i += 2)
        memcpy(b + i, "a ", 2);
    memcpy(b, "get ", 4);
    CHECK_EQ_I(PB(b, 6000), 0);
    memcpy(b, "gets ", 5);
    CHECK_EQ_I(PB(b, 6000), 0);
    memcpy(b, "gat ", 4);
    CHECK_EQ_I(PB(b, 6000), -2);
    memcpy(b, "GET ", 4);
    CHECK_EQ_I(PB(b, 6000), -2);
    memcpy(b, "get\t", 4);
    CHECK_EQ_I(PB(b, 6000), -2);
    memset(b, ' ', 100);
    memcpy(b + 100, "get ", 4);
    CHECK_EQ_I(PB(b, 6000), 0);
    memset(b, ' ', 101);
    memcpy(b + 101, "get ", 4);
    CHECK_EQ_I(PB(b, 6000), -2);
    /* a gat line that does end in \n within 16 KiB is fine */
    memcpy(b, "gat 0 ", 6);
    for (size_t i = 6; i < 6000; i += 2)
        memcpy(b + i, "a ", 2);
    memcpy(b + 6000, "\r\n", 2);
    CHECK_EQ_I(PB(b, 6002), 6002);
    CHECK(R.cmd == MK_CMD_GAT && R.err == MK_PERR_NONE);
    /* 800 KB multiget with newline */
    size_t big = 800000;
    memcpy(b, "get ", 4);
    for (size_t i = 4; i < big; i += 2)
        memcpy(b + i, "a ", 2);
    memcpy(b + big, "\r\n", 2);
    CHECK_EQ_I(PB(b, big + 2), (ssize_t)(big + 2));
    CHECK(R.cmd == MK_CMD_GET && R.err == MK_PERR_NONE);
    /* beyond memkit's own get-line bound */
    for (size_t i = 4; i < MK_GET_LINE_MAX + 16; i += 2)
        memcpy(b + i, "a ", 2);
    CHECK_EQ_I(PB(b, MK_GET_LINE_MAX + 2), -1);
    free(b);
}

static void test_binary_byte_is_text(void)
{
    CHECK_EQ_I(PL("\x80get a\r\n"), 8);
    CHECK(R.err == MK_PERR_ERROR);
}

static void test_perr_and_names(void)
{
    CHECK(strcmp(mk_perr_text(MK_PERR_NONE), "") == 0);
    CHECK(strcmp(mk_perr_text(MK_PERR_ERROR), "ERROR") == 0);
    CHECK(strcmp(mk_perr_text(MK_PERR_DELETE_USAGE),
                 "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]") == 0);
    CHECK(strcmp(mk_perr_text(MK_PERR_BAD_EXPTIME), "CLIENT_ERROR invalid exptime argument") == 0);
    CHECK(strcmp(mk_perr_text(MK_PERR_TOO_LARGE), "SERVER_ERROR object too large for cache") == 0);
    CHECK(strcmp(mk_perr_text(MK_PERR_BAD_DATA_CHUNK), "CLIENT_ERROR bad data chunk") == 0);
    CHECK(strcmp(mk_perr_text((mk_perr)999), "") == 0);
    CHECK(strcmp(mk_cmd_name(MK_CMD_FLUSH_ALL), "flush_all") == 0);
    CHECK(strcmp(mk_cmd_name(MK_CMD_CACHE_MEMLIMIT), "cache_memlimit") == 0);
    CHECK(strcmp(mk_cmd_name(MK_CMD_NONE), "") == 0);
    CHECK(strcmp(mk_cmd_name((mk_cmd)999), "") == 0);
    /* every name parses back to its command */
    for (int c = 1; c < MK_CMD__COUNT; c++)
        CHECK(mk_cmd_name((mk_cmd)c)[0] != '\0');
}

static void test_next_key(void)
{
    mk_str rest = {"  a bb  ccc ", 12}, k;
    CHECK(mk_next_key(&rest, &k));
    CHECK_MEM(k.p, k.n, "a");
    CHECK(mk_next_key(&rest, &k));
    CHECK_MEM(k.p, k.n, "bb");
    CHECK(mk_next_key(&rest, &k));
    CHECK_MEM(k.p, k.n, "ccc");
    CHECK(!mk_next_key(&rest, &k));
    mk_str none = {NULL, 0};
    CHECK(!mk_next_key(&none, &k));
}

/* ---- compose ---- */

static void test_compose_value_hdr(void)
{
    char out[MK_VALUE_HDR_MAX];
    mk_str key = {"foo", 3};
    size_t n = mk_compose_value_hdr(out, sizeof out, key, 5, 10, false, 0);
    CHECK_MEM(out, n, "VALUE foo 5 10\r\n");
    n = mk_compose_value_hdr(out, sizeof out, key, UINT32_MAX, 0, true, UINT64_MAX);
    CHECK_MEM(out, n, "VALUE foo 4294967295 0 18446744073709551615\r\n");
    CHECK_EQ_U(mk_compose_value_hdr(out, 10, key, 5, 10, false, 0), 0);
    CHECK_EQ_U(mk_compose_value_hdr(out, 16, key, 5, 10, false, 0), 16);
    CHECK_EQ_U(mk_compose_value_hdr(out, 15, key, 5, 10, false, 0), 0);
    char *k250 = filled(250, 'k');
    mk_str big = {k250, 250};
    n = mk_compose_value_hdr(out, sizeof out, big, UINT32_MAX, UINT64_MAX, true, UINT64_MAX);
    CHECK(n > 0 && n <= MK_VALUE_HDR_MAX);
    free(k250);
}

static void test_compose_u64_stat(void)
{
    char out[64];
    size_t n = mk_compose_u64_line(out, sizeof out, 0);
    CHECK_MEM(out, n, "0\r\n");
    n = mk_compose_u64_line(out, 22, UINT64_MAX);
    CHECK_MEM(out, n, "18446744073709551615\r\n");
    CHECK_EQ_U(mk_compose_u64_line(out, 21, UINT64_MAX), 0);
    n = mk_compose_stat(out, sizeof out, "pid", "123");
    CHECK_MEM(out, n, "STAT pid 123\r\n");
    CHECK_EQ_U(mk_compose_stat(out, 5, "pid", "123"), 0);
}

static void test_compose_req_storage(void)
{
    char out[512];
    mk_str key = {"k", 1};
    size_t n = mk_compose_req_storage(out, sizeof out, MK_CMD_SET, key, 1, -1, 3, 0, false);
    CHECK_MEM(out, n, "set k 1 -1 3\r\n");
    n = mk_compose_req_storage(out, sizeof out, MK_CMD_CAS, key, 0, 0, 3, 77, true);
    CHECK_MEM(out, n, "cas k 0 0 3 77 noreply\r\n");
    n = mk_compose_req_storage(out, sizeof out, MK_CMD_APPEND, key, 0, 0, 3, 77, false);
    CHECK_MEM(out, n, "append k 0 0 3\r\n");
    CHECK_EQ_U(mk_compose_req_storage(out, sizeof out, MK_CMD_GET, key, 0, 0, 3, 0, false), 0);
    CHECK_EQ_U(mk_compose_req_storage(out, 8, MK_CMD_SET, key, 0, 0, 3, 0, false), 0);
    n = mk_compose_req_storage(out, sizeof out, MK_CMD_SET, key, 0, INT64_MIN, 0, 0, false);
    CHECK_MEM(out, n, "set k 0 -9223372036854775808 0\r\n");
}

static void test_roundtrip_storage(void)
{
    static const mk_cmd cmds[] = {MK_CMD_SET, MK_CMD_ADD, MK_CMD_REPLACE, MK_CMD_APPEND, MK_CMD_PREPEND, MK_CMD_CAS};
    char out[512];
    char *k250 = filled(250, 'z');
    mk_str keys[] = {{"a", 1}, {"\x01\x7f\xff", 3}, {k250, 250}};
    for (size_t c = 0; c < 6; c++)
        for (size_t k = 0; k < 3; k++)
            for (int nr = 0; nr < 2; nr++) {
                size_t n = mk_compose_req_storage(out, sizeof out, cmds[c], keys[k], 4000000000u,
                                                  -2147483648LL, 2147483645u, 1234567890123ull, nr);
                CHECK(n > 0);
                CHECK_EQ_I(PB(out, n), (ssize_t)n);
                CHECK(R.cmd == cmds[c] && R.err == MK_PERR_NONE && R.noreply == (nr != 0));
                CHECK(R.key.n == keys[k].n && memcmp(R.key.p, keys[k].p, R.key.n) == 0);
                CHECK_EQ_U(R.flags, 4000000000u);
                CHECK_EQ_I(R.exptime, -2147483648LL);
                CHECK_EQ_U(R.vlen, 2147483645u);
                CHECK_EQ_U(R.cas, cmds[c] == MK_CMD_CAS ? 1234567890123ull : 0);
            }
    free(k250);
}

/* ---- responses ---- */

static mk_response S;
#define RL(lit) mk_parse_response((lit), sizeof(lit) - 1, &S)

static void test_response_simple(void)
{
    static const struct { const char *l; mk_resp_type t; } c[] = {
        {"END\r\n", MK_RESP_END},       {"STORED\r\n", MK_RESP_STORED},
        {"NOT_STORED\r\n", MK_RESP_NOT_STORED}, {"EXISTS\r\n", MK_RESP_EXISTS},
        {"NOT_FOUND\r\n", MK_RESP_NOT_FOUND}, {"DELETED\r\n", MK_RESP_DELETED},
        {"TOUCHED\r\n", MK_RESP_TOUCHED}, {"OK\r\n", MK_RESP_OK}, {"ERROR\r\n", MK_RESP_ERROR},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        CHECK_EQ_I(mk_parse_response(c[i].l, strlen(c[i].l), &S), (ssize_t)strlen(c[i].l));
        CHECK(S.type == c[i].t);
    }
    CHECK_EQ_I(RL("END"), 0);
    CHECK_EQ_I(RL("END\r"), 0);
    CHECK_EQ_I(RL("END\n"), -1);
    CHECK_EQ_I(RL("ENDX\r\n"), -1);
    CHECK_EQ_I(RL("RESET\r\n"), -1);
    CHECK_EQ_I(RL("\r\n"), -1);
    CHECK_EQ_I(RL("END\r\nSTORED\r\n"), 5);
}

static void test_response_value(void)
{
    CHECK_EQ_I(RL("VALUE foo 5 3\r\nabc\r\n"), 15);
    CHECK(S.type == MK_RESP_VALUE && !S.has_cas && S.flags == 5 && S.vlen == 3);
    CHECK_MEM(S.key.p, S.key.n, "foo");
    CHECK_EQ_I(RL("VALUE foo 4294967295 0 18446744073709551615\r\n"), 45);
    CHECK(S.type == MK_RESP_VALUE && S.has_cas && S.cas == UINT64_MAX && S.flags == UINT32_MAX);
    CHECK_EQ_I(RL("VALUE foo 4294967296 0\r\n"), -1);
    CHECK_EQ_I(RL("VALUE foo 1\r\n"), -1);
    CHECK_EQ_I(RL("VALUE foo 1 2 3 4\r\n"), -1);
    CHECK_EQ_I(RL("VALUE foo 1 2 \r\n"), -1);
    CHECK_EQ_I(RL("VALUE foo  1 2\r\n"), -1);
    CHECK_EQ_I(RL("VALUE foo -1 2\r\n"), -1);
    CHECK_EQ_I(RL("VALUE foo 1 x\r\n"), -1);
    CHECK_EQ_I(RL("VALUE \r\n"), -1);
}

static void test_response_other(void)
{
    CHECK_EQ_I(RL("42\r\n"), 4);
    CHECK(S.type == MK_RESP_NUMBER && S.number == 42);
    CHECK_EQ_I(RL("18446744073709551615\r\n"), 22);
    CHECK(S.type == MK_RESP_NUMBER && S.number == UINT64_MAX);
    CHECK_EQ_I(RL("18446744073709551616\r\n"), -1);
    CHECK_EQ_I(RL("4 \r\n"), -1);
    CHECK(RL("VERSION 1.6.18\r\n") > 0);
    CHECK(S.type == MK_RESP_VERSION);
    CHECK_MEM(S.text.p, S.text.n, "1.6.18");
    CHECK(RL("STAT libevent 2.1.12-stable\r\n") > 0);
    CHECK(S.type == MK_RESP_STAT);
    CHECK_MEM(S.key.p, S.key.n, "libevent");
    CHECK_MEM(S.text.p, S.text.n, "2.1.12-stable");
    CHECK(RL("STAT a b c\r\n") > 0);
    CHECK_MEM(S.text.p, S.text.n, "b c");
    CHECK_EQ_I(RL("STAT a\r\n"), -1);
    CHECK(RL("PREFIX user get 3 hit 2 set 1 del 0\r\n") > 0); /* stats detail dump */
    CHECK(S.type == MK_RESP_PREFIX);
    CHECK_MEM(S.key.p, S.key.n, "user");
    CHECK_MEM(S.text.p, S.text.n, "get 3 hit 2 set 1 del 0");
    CHECK_EQ_I(RL("PREFIX user\r\n"), -1);
    CHECK(RL("CLIENT_ERROR bad data chunk\r\n") > 0);
    CHECK(S.type == MK_RESP_CLIENT_ERROR);
    CHECK_MEM(S.text.p, S.text.n, "bad data chunk");
    CHECK(RL("SERVER_ERROR object too large for cache\r\n") > 0);
    CHECK(S.type == MK_RESP_SERVER_ERROR);
    CHECK_MEM(S.text.p, S.text.n, "object too large for cache");
    CHECK(RL("ERROR: shutdown not enabled\r\n") > 0);
    CHECK(S.type == MK_RESP_ERROR);
    CHECK_MEM(S.text.p, S.text.n, "shutdown not enabled");
}

static void test_compose_numbers_match_printf(void)
{
    /* every digit count, both sides of each power of ten, in the VALUE line and the number reply */
    char out[600], want[600];
    mk_str key = {"k", 1};
    uint64_t p = 1;
    for (int d = 0; d < 20; d++, p *= 10) {
        uint64_t vs[] = {p - 1, p, p + 1, p * 3 + 7};
        for (int i = 0; i < 4; i++) {
            uint64_t v = vs[i];
            size_t n = mk_compose_value_hdr(out, sizeof out, key, (uint32_t)v, v, true, v);
            int w = snprintf(want, sizeof want, "VALUE k %" PRIu32 " %" PRIu64 " %" PRIu64 "\r\n", (uint32_t)v, v, v);
            CHECK_MEM(out, n, want);
            CHECK_EQ_U(n, (size_t)w);
            n = mk_compose_u64_line(out, sizeof out, v);
            snprintf(want, sizeof want, "%" PRIu64 "\r\n", v);
            CHECK_MEM(out, n, want);
        }
    }
    size_t n = mk_compose_u64_line(out, sizeof out, UINT64_MAX);
    CHECK_MEM(out, n, "18446744073709551615\r\n");
}

static void test_response_roundtrips(void)
{
    char out[600];
    char *k250 = filled(250, 'q');
    mk_str key = {k250, 250};
    size_t n = mk_compose_value_hdr(out, sizeof out, key, 77, 1000, true, 555);
    CHECK_EQ_I(mk_parse_response(out, n, &S), (ssize_t)n);
    CHECK(S.type == MK_RESP_VALUE && S.key.n == 250 && S.flags == 77 && S.vlen == 1000 && S.has_cas && S.cas == 555);
    n = mk_compose_value_hdr(out, sizeof out, key, 0, 0, false, 0);
    CHECK_EQ_I(mk_parse_response(out, n, &S), (ssize_t)n);
    CHECK(S.type == MK_RESP_VALUE && !S.has_cas && S.vlen == 0);
    uint64_t nums[] = {0, 1, 9, 10, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < 6; i++) {
        n = mk_compose_u64_line(out, sizeof out, nums[i]);
        CHECK_EQ_I(mk_parse_response(out, n, &S), (ssize_t)n);
        CHECK(S.type == MK_RESP_NUMBER && S.number == nums[i]);
    }
    n = mk_compose_stat(out, sizeof out, "curr_items", "12");
    CHECK_EQ_I(mk_parse_response(out, n, &S), (ssize_t)n);
    CHECK(S.type == MK_RESP_STAT);
    CHECK_MEM(S.key.p, S.key.n, "curr_items");
    CHECK_MEM(S.text.p, S.text.n, "12");
    /* every protocol error line parses back as its type and message */
    for (int e = 1; e < MK_PERR__COUNT; e++) {
        n = (size_t)snprintf(out, sizeof out, "%s\r\n", mk_perr_text((mk_perr)e));
        CHECK_EQ_I(mk_parse_response(out, n, &S), (ssize_t)n);
        const char *t = mk_perr_text((mk_perr)e);
        if (e == MK_PERR_ERROR)
            CHECK(S.type == MK_RESP_ERROR);
        else if (strncmp(t, "CLIENT_ERROR ", 13) == 0)
            CHECK(S.type == MK_RESP_CLIENT_ERROR && S.text.n == strlen(t) - 13 && memcmp(S.text.p, t + 13, S.text.n) == 0);
        else
            CHECK(S.type == MK_RESP_SERVER_ERROR && S.text.n == strlen(t) - 13 && memcmp(S.text.p, t + 13, S.text.n) == 0);
    }
    free(k250);
}

/* the request parser never reads past len: parse every prefix of some lines */
static void test_prefixes(void)
{
    static const char *lines[] = {"set a 0 0 1 noreply\r\n", "get a b c\r\n", "delete x 0\r\n", "\r\n", "flush_all 5\n"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        size_t L = strlen(lines[i]);
        for (size_t n = 0; n < L; n++) {
            char *c = malloc(n ? n : 1);
            memcpy(c, lines[i], n);
            CHECK_EQ_I(PB(c, n), 0);
            free(c);
        }
        CHECK_EQ_I(PB(lines[i], L), (ssize_t)L);
    }
}


/* ---- meta ---- */

static mk_meta_req *meta(const char *line)
{
    static mk_meta_req m;
    mk_request req;
    ssize_t r = mk_parse_request(line, strlen(line), &req);
    CHECK(r == (ssize_t)strlen(line));
    mk_parse_meta(&req, &m);
    return &m;
}

static void test_meta_parse_flags_in_order(void)
{
    mk_meta_req *m = meta("mg foo v T30 O12 k c\r\n");
    CHECK(m->err == NULL);
    CHECK_MEM(m->key.p, m->key.n, "foo");
    CHECK_EQ_U(m->nflags, 5);
    CHECK(m->flag[0].p[0] == 'v' && m->flag[1].p[0] == 'T' && m->flag[4].p[0] == 'c');
    CHECK(mk_meta_has(m, 'v') && mk_meta_has(m, 'T') && !mk_meta_has(m, 'q'));
    CHECK_EQ_I(m->ttl, 30);
    CHECK_MEM(m->opaque.p, m->opaque.n, "O12");
    m = meta("ms foo 5 F7 MA C99 I q\r\n");
    CHECK(m->err == NULL);
    CHECK_EQ_U(m->vlen, 5);
    CHECK_EQ_U(m->client_flags, 7);
    CHECK(m->mode == 'A');
    CHECK_EQ_U(m->cas_in, 99);
    m = meta("ma foo N0 J5 D3 MD\r\n");
    CHECK(m->err == NULL && m->initial == 5 && m->delta == 3 && m->mode == 'D' && mk_meta_has(m, 'N'));
    m = meta("ma foo\r\n");
    CHECK(m->err == NULL && m->delta == 1);
}

static void test_meta_parse_errors_as_memcached(void)
{
    CHECK(strcmp(meta("mg\r\n")->err, "ERROR") == 0);
    CHECK(strcmp(meta("mg k zz\r\n")->err, "CLIENT_ERROR invalid flag") == 0);
    CHECK(strcmp(meta("mg k v v\r\n")->err, "CLIENT_ERROR duplicate flag") == 0);
    CHECK(strcmp(meta("mg k T\r\n")->err, "CLIENT_ERROR bad token in command line format") == 0);
    CHECK(strcmp(meta("md k v v\r\n")->err, "CLIENT_ERROR invalid or duplicate flag") == 0);
    CHECK(strcmp(meta("ma k MX\r\n")->err, "CLIENT_ERROR invalid mode for ma M token") == 0);
    CHECK(strcmp(meta("ms k 2 MX\r\n")->err, "CLIENT_ERROR invalid mode for ms M token") == 0);
    mk_meta_req *m = meta("ms k 2 MX\r\n");
    CHECK(m->action == MK_PA_SWALLOW && m->swallow == 4);
    m = meta("ms k abc\r\n");
    CHECK(strcmp(m->err, "CLIENT_ERROR bad command line format") == 0 && m->action == MK_PA_NONE);
    /* E and x are memcached 1.6.27's (1.6.18 refuses them): E takes a 64-bit number */
    m = meta("ms k 2 E18446744073709551615 x\r\n");
    CHECK(m->err == NULL && mk_meta_has(m, 'E') && m->ecas == UINT64_MAX && mk_meta_has(m, 'x'));
    CHECK(strcmp(meta("mg k E\r\n")->err, "CLIENT_ERROR bad token in command line format") == 0);
    CHECK(strcmp(meta("mg k E-1\r\n")->err, "CLIENT_ERROR bad token in command line format") == 0);
    CHECK(strcmp(meta("ms k 2 S2\r\n")->err, "CLIENT_ERROR invalid flag") == 0);
}

static void test_meta_base64_keys(void)
{
    mk_meta_req *m = meta("mg Zm9v b v\r\n"); /* "foo" */
    CHECK(m->err == NULL && m->key_b64);
    CHECK_MEM(m->key.p, m->key.n, "foo");
    CHECK(strcmp(meta("mg !!!! b\r\n")->err, "CLIENT_ERROR error decoding key") == 0);
    char out[64];
    size_t n = mk_compose_meta_key(out, sizeof out, "foo", 3, true);
    CHECK(n == 8 && memcmp(out, " kZm9v b", 8) == 0);
    n = mk_compose_meta_key(out, sizeof out, "foo", 3, false);
    CHECK(n == 5 && memcmp(out, " kfoo", 5) == 0);
    CHECK(mk_compose_meta_key(out, 4, "foo", 3, false) == 0);
}

static void test_meta_request_round_trip(void)
{
    char buf[128];
    mk_str key = {"k1", 2};
    size_t n = mk_compose_meta_req(buf, sizeof buf, MK_CMD_MS, key, 12, (mk_str){"T30 F3 q", 8});
    CHECK(n == strlen("ms k1 12 T30 F3 q\r\n") && memcmp(buf, "ms k1 12 T30 F3 q\r\n", n) == 0);
    buf[n] = 0;
    mk_meta_req *m = meta(buf);
    CHECK(m->err == NULL && m->vlen == 12 && m->ttl == 30 && m->client_flags == 3 && mk_meta_has(m, 'q'));
    n = mk_compose_meta_req(buf, sizeof buf, MK_CMD_MG, key, 0, (mk_str){NULL, 0});
    CHECK(n == 7 && memcmp(buf, "mg k1\r\n", 7) == 0);
    CHECK(mk_compose_meta_req(buf, 5, MK_CMD_MG, key, 0, (mk_str){NULL, 0}) == 0);
    CHECK(mk_compose_meta_req(buf, sizeof buf, MK_CMD_GET, key, 0, (mk_str){NULL, 0}) == 0);
}

static void test_meta_response_parse(void)
{
    mk_meta_resp r;
    const char *va = "VA 5 f7 c99 t-1 kfoo Oab W X Z h1 s5\r\nhello\r\n";
    CHECK(mk_parse_meta_response(va, strlen(va), &r) == (ssize_t)strlen(va) - 7);
    CHECK(r.code == MK_MC_VA && r.vlen == 5 && r.has_flags && r.client_flags == 7 && r.has_cas && r.cas == 99);
    CHECK(r.has_ttl && r.ttl == -1 && r.win && r.stale && r.token_sent && r.hit_before && r.size == 5);
    CHECK_MEM(r.key.p, r.key.n, "foo");
    CHECK_MEM(r.opaque.p, r.opaque.n, "ab");
    CHECK(mk_parse_meta_response("HD\r\n", 4, &r) == 4 && r.code == MK_MC_HD && !r.has_cas);
    CHECK(mk_parse_meta_response("EN\r\n", 4, &r) == 4 && r.code == MK_MC_EN);
    CHECK(mk_parse_meta_response("MN\r\n", 4, &r) == 4 && r.code == MK_MC_MN);
    CHECK(mk_parse_meta_response("NS O1\r\n", 7, &r) == 7 && r.code == MK_MC_NS);
    CHECK(mk_parse_meta_response("HD", 2, &r) == 0);
    CHECK(mk_parse_meta_response("CLIENT_ERROR bad\r\n", 18, &r) == 18 && r.code == MK_MC_ERROR);
    CHECK_MEM(r.text.p, r.text.n, "CLIENT_ERROR bad");
    CHECK(mk_parse_meta_response("VALUE k 0 1\r\n", 13, &r) == -1);
    CHECK(mk_parse_meta_response("VA x\r\n", 6, &r) == -1);
    CHECK(mk_parse_meta_response("HD c12x\r\n", 9, &r) == -1);
    CHECK(mk_parse_meta_response("HD\n", 3, &r) == -1);
}

/* ---------------- binary protocol (memkit/binary.h) ---------------- */

static size_t bin_frame(uint8_t *out, uint8_t op, const char *key, size_t extlen, uint32_t bodylen)
{
    size_t nk = strlen(key);
    mk_bin_compose_hdr(out, MK_BIN_MAGIC_REQ, op, 0, (uint8_t)extlen, (uint16_t)nk, bodylen, 0x01020304, 7);
    memset(out + MK_BIN_HDR, 0, extlen);
    memcpy(out + MK_BIN_HDR + extlen, key, nk);
    return MK_BIN_HDR + extlen + nk;
}

static void test_binary_parse_waits_for_header_extras_and_key(void)
{
    uint8_t b[128];
    size_t n = bin_frame(b, MK_BIN_SET, "key", 8, 8 + 3 + 5);
    mk_bin_frame f;
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_I(mk_bin_parse_req(b, i, &f), 0);
    CHECK_EQ_I(mk_bin_parse_req(b, n, &f), (int64_t)n);
    CHECK(f.opcode == MK_BIN_SET && f.extlen == 8 && f.keylen == 3 && f.bodylen == 16 && f.cas == 7);
    CHECK(f.opaque == 0x01020304 || f.opaque == 0x04030201); /* copied as sent, whatever the byte order */
    CHECK_MEM(f.key.p, f.key.n, "key");
    CHECK_EQ_U(mk_bin_vlen(&f), 5);
    /* memcached judges the magic only once 24 bytes are in */
    b[0] = 'g';
    CHECK_EQ_I(mk_bin_parse_req(b, 23, &f), 0);
    CHECK_EQ_I(mk_bin_parse_req(b, 24, &f), -1);
}

static void test_binary_check_in_memcacheds_order(void)
{
    uint8_t b[512];
    mk_bin_frame f;
    uint8_t base;
    bool quiet;
#define VERDICT(op, key, ext, body) \
    (bin_frame(b, op, key, ext, body), mk_bin_parse_req(b, sizeof b, &f), mk_bin_check_req(&f, &base, &quiet))
    CHECK_EQ_I(VERDICT(MK_BIN_GETKQ, "k", 0, 1), MK_BINV_OK);
    CHECK(base == MK_BIN_GETK && quiet);
    CHECK_EQ_I(VERDICT(MK_BIN_SET, "k", 8, 9), MK_BINV_OK);
    CHECK(base == MK_BIN_SET && !quiet);
    CHECK_EQ_I(VERDICT(MK_BIN_SET, "k", 8, 8), MK_BINV_BAD_LENGTHS);   /* keylen + extlen > bodylen */
    CHECK_EQ_I(VERDICT(MK_BIN_GET, "kk", 0, 1), MK_BINV_BAD_LENGTHS);
    CHECK_EQ_I(VERDICT(MK_BIN_SET, "k", 4, 9), MK_BINV_BAD_FORMAT);    /* set needs 8 bytes of extras */
    CHECK_EQ_I(VERDICT(MK_BIN_GET, "k", 0, 2), MK_BINV_BAD_FORMAT);    /* get has no value */
    CHECK_EQ_I(VERDICT(MK_BIN_INCREMENTQ, "n", 20, 21), MK_BINV_OK);
    CHECK_EQ_I(VERDICT(MK_BIN_INCREMENT, "n", 20, 22), MK_BINV_BAD_FORMAT);
    CHECK_EQ_I(VERDICT(MK_BIN_FLUSH, "", 4, 4), MK_BINV_OK);
    CHECK_EQ_I(VERDICT(MK_BIN_FLUSH, "", 2, 2), MK_BINV_BAD_FORMAT);
    CHECK_EQ_I(VERDICT(MK_BIN_STAT, "items", 0, 9), MK_BINV_OK);       /* stat does not check bodylen */
    CHECK_EQ_I(VERDICT(MK_BIN_VERBOSITY, "", 4, 4), MK_BINV_UNKNOWN);  /* not served by memcached 1.6.18 */
    CHECK_EQ_I(VERDICT(0x40, "k", 0, 1), MK_BINV_UNKNOWN);
    char big[252];
    memset(big, 'k', 251);
    big[251] = 0;
    CHECK_EQ_I(VERDICT(MK_BIN_GET, big, 0, 251), MK_BINV_KEY_TOO_LONG);
    CHECK_EQ_I(VERDICT(0x40, big, 0, 250), MK_BINV_BAD_LENGTHS);       /* lengths before the key, before the opcode */
#undef VERDICT
}

static void test_binary_response_round_trip(void)
{
    uint8_t b[64];
    mk_bin_compose_hdr(b, MK_BIN_MAGIC_RES, MK_BIN_GETK, MK_BIN_KEY_ENOENT, 0, 3, 3, 99, 0);
    memcpy(b + MK_BIN_HDR, "abc", 3);
    mk_bin_frame f;
    CHECK_EQ_I(mk_bin_parse_res(b, MK_BIN_HDR + 2, &f), 0);
    CHECK_EQ_I(mk_bin_parse_res(b, MK_BIN_HDR + 3, &f), MK_BIN_HDR + 3);
    CHECK(f.opcode == MK_BIN_GETK && f.vbucket_or_status == MK_BIN_KEY_ENOENT && f.opaque == 99);
    CHECK_MEM(f.key.p, f.key.n, "abc");
    b[4] = 1; /* extlen 1 + keylen 3 > bodylen 3 */
    CHECK_EQ_I(mk_bin_parse_res(b, MK_BIN_HDR + 3, &f), -1);
    b[0] = MK_BIN_MAGIC_REQ;
    CHECK_EQ_I(mk_bin_parse_res(b, MK_BIN_HDR + 3, &f), -1);
    CHECK(strcmp(mk_bin_status_text(MK_BIN_E2BIG), "Too large.") == 0);
    CHECK(strcmp(mk_bin_status_text(MK_BIN_KEY_EEXISTS), "Data exists for key.") == 0);
    CHECK(strcmp(mk_bin_status_text(0x1234), "") == 0);
}

static void test_auth_line_as_memcached_reads_it(void)
{
    mk_auth_line l;
#define AUTH_LINE(s) mk_parse_auth_line(s, sizeof(s) - 1, &l)
    CHECK_EQ_I(AUTH_LINE("set k 0 0 12\r\nalice s3cret\r\n"), 14);
    CHECK(l.is_set && l.size == 12);
    CHECK_EQ_I(AUTH_LINE("set k 0 0 7 noreply\n"), 20);        /* more tokens: the 5th is the size */
    CHECK(l.is_set && l.size == 7);
    CHECK_EQ_I(AUTH_LINE("set   k  x y  3\r\n"), 17);         /* flags and exptime are not looked at */
    CHECK(l.is_set && l.size == 3);
    CHECK_EQ_I(AUTH_LINE("get k\r\n"), 7);
    CHECK(!l.is_set);
    CHECK_EQ_I(AUTH_LINE("set k 0 0\r\n"), 11);                /* 4 tokens */
    CHECK(!l.is_set);
    CHECK_EQ_I(AUTH_LINE("set k 0 0 -1\r\n"), 14);
    CHECK(!l.is_set);
    CHECK_EQ_I(AUTH_LINE("set k 0 0 1x\r\n"), 14);
    CHECK(!l.is_set);
    CHECK_EQ_I(AUTH_LINE("SET k 0 0 1\r\n"), 13);
    CHECK(!l.is_set);
    CHECK_EQ_I(AUTH_LINE("set k 0\0 0 1\r\n"), 14);           /* a NUL ends the line's text */
    CHECK(!l.is_set);
    CHECK_EQ_I(AUTH_LINE("set k 0 0 99999999999999999999999\n"), 34);
    CHECK(l.is_set && l.size == UINT64_MAX);                     /* saturates: refused by its size */
    CHECK_EQ_I(AUTH_LINE("s"), 0);
    CHECK_EQ_I(AUTH_LINE("set k 0 0 5"), 0);
    char longline[MK_LINE_MAX + 2];
    memset(longline, 'x', sizeof longline);
    CHECK_EQ_I(mk_parse_auth_line(longline, MK_LINE_MAX, &l), 0);
    CHECK_EQ_I(mk_parse_auth_line(longline, sizeof longline, &l), -1);
#undef AUTH_LINE
    mk_str u, p;
    CHECK(mk_parse_auth_token("alice s3cret", 12, &u, &p));
    CHECK_MEM(u.p, u.n, "alice");
    CHECK_MEM(p.p, p.n, "s3cret");
    CHECK(mk_parse_auth_token("  bob   pa:ss  extra", 20, &u, &p));
    CHECK_MEM(u.p, u.n, "bob");
    CHECK_MEM(p.p, p.n, "pa:ss");
    CHECK(!mk_parse_auth_token("hi", 2, &u, &p));
    CHECK(!mk_parse_auth_token("alice\ts3cret", 12, &u, &p)); /* (memcached splits on spaces only) */
    CHECK(!mk_parse_auth_token("alice\0 s3cret", 13, &u, &p));
    /* the client's composer, parsed back as the server reads it */
    char out[128];
    size_t n = mk_compose_auth_token(out, sizeof out, "bob", 3, "pa:ss", 5);
    CHECK_MEM(out, n, "set auth 0 0 9\r\nbob pa:ss\r\n");
    CHECK_EQ_I(mk_parse_auth_line(out, n, &l), 16);
    CHECK(l.is_set && l.size == 9);
    CHECK(mk_parse_auth_token(out + 16, 9, &u, &p));
    CHECK_MEM(u.p, u.n, "bob");
    CHECK_MEM(p.p, p.n, "pa:ss");
    CHECK_EQ_I(mk_compose_auth_token(out, sizeof out, "a b", 3, "x", 1), 0);  /* the server would split it */
    CHECK_EQ_I(mk_compose_auth_token(out, sizeof out, "a", 1, "x\r", 2), 0);
    CHECK_EQ_I(mk_compose_auth_token(out, sizeof out, "", 0, "x", 1), 0);
    CHECK_EQ_I(mk_compose_auth_token(out, 20, "bob", 3, "pa:ss", 5), 0);       /* does not fit */
}

int main(void)
{
    RUN(test_line_endings);
    RUN(test_auth_line_as_memcached_reads_it);
    RUN(test_empty_and_short_lines);
    RUN(test_spaces_and_tabs);
    RUN(test_nul_cuts_line);
    RUN(test_command_names);
    RUN(test_http_closes);
    RUN(test_token_limit);
    RUN(test_multiget_keys);
    RUN(test_key_lengths);
    RUN(test_key_control_bytes);
    RUN(test_storage_token_counts);
    RUN(test_flags);
    RUN(test_exptime);
    RUN(test_vlen);
    RUN(test_cas_unique);
    RUN(test_storage_fields);
    RUN(test_incr_decr);
    RUN(test_touch_gat);
    RUN(test_delete);
    RUN(test_flush_all);
    RUN(test_verbosity_memlimit);
    RUN(test_stats_args);
    RUN(test_long_lines);
    RUN(test_binary_byte_is_text);
    RUN(test_perr_and_names);
    RUN(test_next_key);
    RUN(test_compose_value_hdr);
    RUN(test_compose_u64_stat);
    RUN(test_compose_numbers_match_printf);
    RUN(test_compose_req_storage);
    RUN(test_roundtrip_storage);
    RUN(test_response_simple);
    RUN(test_response_value);
    RUN(test_response_other);
    RUN(test_response_roundtrips);
    RUN(test_prefixes);
    RUN(test_meta_parse_flags_in_order);
    RUN(test_meta_parse_errors_as_memcached);
    RUN(test_meta_base64_keys);
    RUN(test_binary_parse_waits_for_header_extras_and_key);
    RUN(test_binary_check_in_memcacheds_order);
    RUN(test_binary_response_round_trip);
    RUN(test_meta_request_round_trip);
    RUN(test_meta_response_parse);
    return check_summary("test_proto");
}
