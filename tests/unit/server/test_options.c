/* tests/unit/server/test_options.c — memkitd's option parser and exptime rule: values, defaults, one-line errors. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "server/exec.h"
#include "server/options.h"

typedef struct parsed {
    mk_settings s;
    mk_opt_result r;
    int status;
    char out[8192], err[1024];
    char *argv_store[32];
    char buf[32][256];
} parsed;

/* Parse a NULL-terminated list of arguments (argv[0] is added). */
static parsed *parse(const char *first, ...)
{
    static parsed p;
    memset(&p, 0, sizeof(p));
    va_list ap;
    int argc = 0;
    snprintf(p.buf[argc], sizeof(p.buf[0]), "memkitd");
    p.argv_store[argc] = p.buf[argc];
    argc++;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        snprintf(p.buf[argc], sizeof(p.buf[0]), "%s", a);
        p.argv_store[argc] = p.buf[argc];
        argc++;
    }
    va_end(ap);
    FILE *out = fmemopen(p.out, sizeof(p.out) - 1, "w");
    FILE *err = fmemopen(p.err, sizeof(p.err) - 1, "w");
    mk_settings_init(&p.s);
    p.r = mk_options_parse(&p.s, argc, p.argv_store, out, err, &p.status);
    fclose(out);
    fclose(err);
    return &p;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_defaults_listen_on_loopback_only(void)
{
    parsed *p = parse(NULL);
    CHECK(p->r == MK_OPT_RUN);
    CHECK_EQ_I(p->s.port, 11211);
    CHECK_EQ_I(p->s.udp_port, 0);
    CHECK_EQ_I(p->s.nlisten, 1);
    CHECK(strcmp(p->s.listen[0], "127.0.0.1") == 0);
    CHECK_EQ_U(p->s.maxbytes, 64u << 20);
    CHECK_EQ_I(p->s.threads, 4);
    CHECK_EQ_I(p->s.maxconns, 1024);
    CHECK_EQ_U(p->s.item_size_max, 1u << 20);
    CHECK(p->s.evict && p->s.use_cas);
}

static void test_memcached_short_options(void)
{
    parsed *p = parse("-p", "22122", "-m", "128", "-c", "50", "-t", "2", "-M", "-C", "-I", "2m",
                      "-l", "0.0.0.0,::1", "-vv", "-R", "5", "-b", "64", "-u", "nobody", "-A", NULL);
    CHECK(p->r == MK_OPT_RUN);
    CHECK_EQ_I(p->s.port, 22122);
    CHECK_EQ_U(p->s.maxbytes, 128u << 20);
    CHECK_EQ_I(p->s.maxconns, 50);
    CHECK_EQ_I(p->s.threads, 2);
    CHECK(!p->s.evict);
    CHECK(!p->s.use_cas);
    CHECK_EQ_U(p->s.item_size_max, 2u << 20);
    CHECK_EQ_I(p->s.nlisten, 2);
    CHECK(strcmp(p->s.listen[1], "::1") == 0);
    CHECK_EQ_I(p->s.verbose, 2);
    CHECK_EQ_I(p->s.reqs_per_event, 5);
    CHECK_EQ_I(p->s.backlog, 64);
    CHECK(strcmp(p->s.user, "nobody") == 0);
    CHECK(p->s.shutdown_enabled);
}

static void test_long_options_and_suboptions(void)
{
    parsed *p = parse("--port=1234", "--memory-limit=8", "--threads=1", "--memory-file=/dev/shm/x.img", "-o",
                      "hashpower=20,idle_timeout=30,no_maxconns_fast,lru_crawler", NULL);
    CHECK(p->r == MK_OPT_RUN);
    CHECK(p->s.memory_file && strcmp(p->s.memory_file, "/dev/shm/x.img") == 0);
    CHECK_EQ_I(p->s.port, 1234);
    CHECK_EQ_U(p->s.maxbytes, 8u << 20);
    CHECK_EQ_U(p->s.hashpower, 20);
    CHECK_EQ_I(p->s.idle_timeout, 30);
    CHECK(!p->s.maxconns_fast);
    CHECK(strstr(p->err, "lru_crawler has no effect") != NULL);
}

static void test_protocol_choice(void)
{
    parsed *p = parse("-B", "binary", NULL);
    CHECK(p->r == MK_OPT_RUN && p->s.protocol == MK_PROTO_BINARY);
    p = parse("-B", "ascii", NULL);
    CHECK(p->r == MK_OPT_RUN && p->s.protocol == MK_PROTO_ASCII);
    p = parse("-B", "auto", NULL);
    CHECK(p->r == MK_OPT_RUN && p->s.protocol == MK_PROTO_AUTO);
    CHECK(strcmp(mk_protocol_choice_name(MK_PROTO_AUTO), "auto-negotiate") == 0);
    mk_settings s;
    mk_settings_init(&s);
    CHECK(s.protocol == MK_PROTO_AUTO);
}

static void test_bad_values_give_one_line_and_status_1(void)
{
    const char *bad[][2] = {
        {"-p", "70000"}, {"-p", "abc"}, {"-m", "0"}, {"-m", "12x"}, {"-t", "0"}, {"-c", "-5"},
        {"-I", "512"},   {"-I", "2g"},  {"-I", "1q"}, {"-B", "foo"}, {"-o", "nosuch"},
        {"-o", "hashpower=abc"}, {"-R", "0"}, {"-a", "999"}, {"-e", ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parsed *p = parse(bad[i][0], bad[i][1], NULL);
        CHECK(p->r == MK_OPT_EXIT);
        CHECK_EQ_I(p->status, 1);
        CHECK_EQ_I(count_lines(p->err), 1);
        if (p->r != MK_OPT_EXIT || count_lines(p->err) != 1)
            fprintf(stderr, "  (for %s %s: %s)\n", bad[i][0], bad[i][1], p->err);
    }
    parsed *p = parse("-Q", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 1 && count_lines(p->err) == 1);
    p = parse("-p", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 1 && strstr(p->err, "needs a value"));
    p = parse("stray", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 1);
}

static void test_help_and_version_exit_0(void)
{
    parsed *p = parse("-h", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 0);
    CHECK(strstr(p->out, "-p, --port") && strstr(p->out, "-o, --extended"));
    p = parse("-V", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 0);
    CHECK(strncmp(p->out, "memkitd ", 8) == 0);
}

static void test_item_size_over_half_memory(void)
{
    parsed *p = parse("-m", "1", "-I", "1m", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 1);
    p = parse("-m", "1", NULL); /* default -I shrinks to fit a small -m */
    CHECK(p->r == MK_OPT_RUN);
    CHECK_EQ_U(p->s.item_size_max, 512u << 10);
}

static void test_udp_port(void)
{
    parsed *p = parse("-U", "11311", NULL); /* memcached: -U without -p moves TCP to it too */
    CHECK(p->r == MK_OPT_RUN);
    CHECK_EQ_I(p->s.udp_port, 11311);
    CHECK_EQ_I(p->s.port, 11311);
    CHECK(p->err[0] == '\0');
    p = parse("-U", "11311", "-p", "22122", NULL);
    CHECK(p->r == MK_OPT_RUN);
    CHECK_EQ_I(p->s.udp_port, 11311);
    CHECK_EQ_I(p->s.port, 22122);
    p = parse("-p", "0", "-U", "11311", NULL); /* TCP on a port the kernel picks, UDP on 11311 */
    CHECK(p->r == MK_OPT_RUN);
    CHECK_EQ_I(p->s.port, 0);
    CHECK_EQ_I(p->s.udp_port, 11311);
    p = parse("-U", "0", NULL);
    CHECK(p->r == MK_OPT_RUN);
    CHECK_EQ_I(p->s.udp_port, 0);
    CHECK_EQ_I(p->s.port, 11211);
    p = parse("-U", "65536", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 1);
    CHECK_EQ_I(count_lines(p->err), 1);
    p = parse("-U", "-1", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 1);
    p = parse("-S", "-U", "11311", NULL); /* memcached refuses UDP with SASL too */
    CHECK(p->r == MK_OPT_EXIT && p->status == 1);
    CHECK_EQ_I(count_lines(p->err), 1);
    CHECK(strstr(p->err, "UDP") != NULL);
    p = parse("-S", "-U", "0", NULL);
    CHECK(p->r == MK_OPT_RUN);
}

static void test_auth_file_rules(void)
{
    parsed *p = parse("-Y", "/etc/memkit/users", NULL); /* -Y implies -B ascii, as in memcached */
    CHECK(p->r == MK_OPT_RUN);
    CHECK(p->s.protocol == MK_PROTO_ASCII);
    CHECK(strcmp(p->s.auth_file, "/etc/memkit/users") == 0);
    p = parse("--auth-file=/f", "-B", "ascii", NULL);
    CHECK(p->r == MK_OPT_RUN);
    const char *refused[][3] = {{"-B", "binary", NULL}, {"-B", "auto", NULL}, {"-S", NULL, NULL}, {"-U", "11311", NULL}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        p = parse("-Y", "/f", refused[i][0], refused[i][1], refused[i][2], NULL);
        CHECK(p->r == MK_OPT_EXIT && p->status == 1);
        CHECK_EQ_I(count_lines(p->err), 1);
        CHECK(strstr(p->err, "-Y") != NULL || strstr(p->err, "-S") != NULL);
    }
    p = parse("-Y", NULL);
    CHECK(p->r == MK_OPT_EXIT && p->status == 1);
}

static void test_tls_options(void)
{
    parsed *p = parse("-Z", "-o", "ssl_chain_cert=/c.pem,ssl_key=/k.pem,ssl_verify_mode=2,ssl_min_version=tlsv1.3",
                      "-l", "notls:127.0.0.1:11212", NULL);
    CHECK(p->r == MK_OPT_RUN && p->s.tls);
    CHECK(strcmp(p->s.ssl_chain_cert, "/c.pem") == 0 && strcmp(p->s.ssl_key, "/k.pem") == 0);
    CHECK(p->s.ssl_verify_mode == 2 && p->s.ssl_min_version == 3);
    p = parse("-o", "ssl_min_version=1", NULL);
    CHECK(p->r == MK_OPT_RUN && p->s.ssl_min_version == 1 && !p->s.tls);
    const char *bad[][6] = {
        {"-Z", NULL},                                                        /* no certificate */
        {"-Z", "-o", "ssl_chain_cert=/c.pem", NULL},                          /* no key */
        {"-Z", "-o", "ssl_chain_cert=/c,ssl_key=/k", "-U", "11311", NULL},  /* UDP would be clear text */
        {"-l", "notls:127.0.0.1", NULL},                                     /* notls without -Z */
        {"-o", "ssl_verify_mode=4", NULL},
        {"-o", "ssl_min_version=tlsv1.4", NULL},
        {"-o", "ssl_keyformat=3", NULL},
        {"-o", "ssl_bogus=1", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = parse(bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4], NULL);
        CHECK(p->r == MK_OPT_EXIT && p->status == 1);
        CHECK_EQ_I(count_lines(p->err), 1);
    }
}

static void test_keepalive_and_read_buf_suboptions(void)
{
    parsed *p = parse(NULL);
    CHECK(p->s.keepalive_idle == 60 && p->s.keepalive_intvl == 15 && p->s.keepalive_cnt == 4);
    CHECK(p->s.read_buf_limit == (uint64_t)64 << 20);
    p = parse("-o", "tcp_keepalive=2:1:3,read_buf_mem_limit=0", NULL);
    CHECK(p->r == MK_OPT_RUN);
    CHECK(p->s.keepalive_idle == 2 && p->s.keepalive_intvl == 1 && p->s.keepalive_cnt == 3);
    CHECK(p->s.read_buf_limit == 0);
    p = parse("-o", "tcp_keepalive=30", NULL);
    CHECK(p->r == MK_OPT_RUN && p->s.keepalive_idle == 30 && p->s.keepalive_intvl == 15);
    const char *bad[] = {"tcp_keepalive", "tcp_keepalive=1:2", "tcp_keepalive=1:0:3", "tcp_keepalive=-1",
                         "tcp_keepalive=a:b:c", "read_buf_mem_limit=-1", "read_buf_mem_limit"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = parse("-o", bad[i], NULL);
        CHECK(p->r == MK_OPT_EXIT && p->status == 1);
        CHECK_EQ_I(count_lines(p->err), 1);
    }
}

static void test_exptime_rule(void)
{
    int64_t now = 1800000000;
    CHECK_EQ_I(mk_exptime_to_abs(0, now), 0);
    CHECK_EQ_I(mk_exptime_to_abs(10, now), now + 10);
    CHECK_EQ_I(mk_exptime_to_abs(60 * 60 * 24 * 30, now), now + 60 * 60 * 24 * 30);
    CHECK_EQ_I(mk_exptime_to_abs(60 * 60 * 24 * 30 + 1, now), 60 * 60 * 24 * 30 + 1); /* absolute, past */
    CHECK_EQ_I(mk_exptime_to_abs(now + 100, now), now + 100);                        /* absolute, future */
    CHECK(mk_exptime_to_abs(-1, now) <= now && mk_exptime_to_abs(-1, now) != 0);
}

int main(void)
{
    RUN(test_defaults_listen_on_loopback_only);
    RUN(test_auth_file_rules);
    RUN(test_keepalive_and_read_buf_suboptions);
    RUN(test_tls_options);
    RUN(test_memcached_short_options);
    RUN(test_long_options_and_suboptions);
    RUN(test_protocol_choice);
    RUN(test_bad_values_give_one_line_and_status_1);
    RUN(test_help_and_version_exit_0);
    RUN(test_item_size_over_half_memory);
    RUN(test_udp_port);
    RUN(test_exptime_rule);
    return check_summary("test_options");
}
