/* tools/memkit/main.c — the memkit CLI: options, then one command (get, set, ..., stats, version, top) through libmemkit. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: memkit [--servers=HOST:PORT[:WEIGHT],...] [--distribution=ketama|modula|consistent|rendezvous|ketama_fnv1a]\n"
    "              [--timeout=MS] [--binary] [--username=USER [--ascii-auth]] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  get KEY...                      print the value (several keys: \"KEY VALUE\" per hit)\n"
    "  set|add|replace|append|prepend KEY [VALUE] [--flags=N] [--exptime=S]\n"
    "                                  store VALUE, or stdin when VALUE is absent\n"
    "  delete KEY                      remove a key\n"
    "  incr|decr KEY [DELTA]           add/subtract DELTA (default 1), print the new value\n"
    "  touch KEY EXPTIME               set a new expiry\n"
    "  lease KEY [--lock=S] [--recache=S]  herd-protected get: print the value if there is one; exit 0\n"
    "                                  (serve it), 3 (you won: recompute and set it), 4 (another\n"
    "                                  caller is recomputing it; a stale value is printed)\n"
    "  invalidate KEY [--exptime=S]    mark the value stale: served until one lease recomputes it\n"
    "  flush [DELAY]                   flush_all on every server\n"
    "  stats [GROUP]                   every server's stats\n"
    "  version                         every server's version\n"
    "  locate KEY                      the server that holds KEY\n"
    "  top [--interval=MS] [--iterations=N]  live per-second rates of every server\n"
    "\n"
    "--servers defaults to $MEMKIT_SERVERS, else 127.0.0.1:11211. --timeout (connect and I/O,\n"
    "default 1000 ms). --binary: memcached's binary protocol; --username: SASL (binary protocol),\n"
    "the password from $MEMKIT_PASSWORD (never on the command line, where ps shows it); with\n"
    "--ascii-auth they are sent as memcached's -Y token over the text protocol instead of SASL.\n"
    "--tls: TLS to every TCP server, whose certificate must be signed by a CA of --tls-ca=FILE\n"
    "(default: the system's) and name the host as given in --servers (or --tls-server-name=NAME);\n"
    "--tls-cert=FILE --tls-key=FILE: a client certificate (mutual TLS); --tls-insecure: no check.\n"
    "Exit status: 0 success, 1 miss or refused store, 2 error (lease: 3, 4 above).\n"
    "lease and invalidate need the meta protocol (memkitd, memcached >= 1.6), not --binary.\n";

static const char *cmd_name = "memkit";

static int die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "memkit: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

/* Map a library result to the exit status, printing one line on failure. */
static int result(mk_client *c, int rc, const char *key)
{
    if (rc == 0)
        return 0;
    int status = (rc == MK_ENOTFOUND || rc == MK_ENOTSTORED || rc == MK_EEXISTS) ? EXIT_MISS : EXIT_ERR;
    if (key) {
        int s = mk_server_for_key(c, key, strlen(key));
        if (status == EXIT_ERR && s >= 0)
            return die(status, "%s %s: %s (%s)", cmd_name, key, mk_strerror(rc), mk_server_name(c, (size_t)s));
        return die(status, "%s %s: %s", cmd_name, key, mk_strerror(rc));
    }
    return die(status, "%s: %s", cmd_name, mk_strerror(rc));
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static char *read_stdin(size_t *n)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += r;
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    *n = len;
    return buf;
}

static void print_stat(void *ctx, const char *name, size_t nn, const char *val, size_t nv)
{
    (void)ctx;
    printf("%.*s %.*s\n", (int)nn, name, (int)nv, val);
}

typedef struct mget_out {
    const char *const *keys;
    bool *hit;
} mget_out;

static void print_hit(void *ctx, size_t i, const mk_item *it)
{
    mget_out *o = ctx;
    o->hit[i] = true;
    printf("%.*s ", (int)it->nkey, it->key);
    fwrite(it->value, 1, it->nvalue, stdout);
    putchar('\n');
}

enum { OPT_TLS = 1000, OPT_TLS_CA, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_NAME, OPT_TLS_INSECURE };

int main(int argc, char **argv)
{
    const char *servers = getenv("MEMKIT_SERVERS");
    if (!servers || !*servers)
        servers = "127.0.0.1:11211";
    mk_options opt;
    mk_options_init(&opt);
    opt.failure_limit = 1000000;   /* a one-shot tool: never eject */
    int64_t timeout = 1000, flags = 0, exptime = 0, interval = 1000, iterations = 0, lock = 30, recache = 0;
    static const struct option longopts[] = {
        {"servers", required_argument, 0, 's'},  {"distribution", required_argument, 0, 'd'},
        {"timeout", required_argument, 0, 't'},  {"flags", required_argument, 0, 'f'},
        {"exptime", required_argument, 0, 'e'},  {"interval", required_argument, 0, 'i'},
        {"iterations", required_argument, 0, 'n'}, {"help", no_argument, 0, 'h'},
        {"lock", required_argument, 0, 'L'},     {"recache", required_argument, 0, 'R'},
        {"binary", no_argument, 0, 'B'},         {"username", required_argument, 0, 'U'},
        {"ascii-auth", no_argument, 0, 'Y'},
        {"tls", no_argument, 0, OPT_TLS},        {"tls-ca", required_argument, 0, OPT_TLS_CA},
        {"tls-cert", required_argument, 0, OPT_TLS_CERT}, {"tls-key", required_argument, 0, OPT_TLS_KEY},
        {"tls-server-name", required_argument, 0, OPT_TLS_NAME}, {"tls-insecure", no_argument, 0, OPT_TLS_INSECURE},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "s:d:t:f:e:i:n:hL:R:BU:Y", longopts, NULL)) != -1) {
        switch (ch) {
        case 'B': opt.binary = true; break;
        case 'Y': opt.ascii_auth = true; break;
        case OPT_TLS: opt.tls = true; break;
        case OPT_TLS_CA: opt.tls_ca_file = optarg; break;
        case OPT_TLS_CERT: opt.tls_cert_file = optarg; break;
        case OPT_TLS_KEY: opt.tls_key_file = optarg; break;
        case OPT_TLS_NAME: opt.tls_server_name = optarg; break;
        case OPT_TLS_INSECURE: opt.tls_verify = false; break;
        case 'U':
            opt.username = optarg;
            opt.password = getenv("MEMKIT_PASSWORD");
            if (!opt.password)
                return die(EXIT_ERR, "--username needs the password in $MEMKIT_PASSWORD");
            break;
        case 's': servers = optarg; break;
        case 'd':
            if (mk_distribution_parse(optarg, &opt.distribution))
                return die(EXIT_ERR, "unknown distribution '%s' (ketama, modula, consistent, rendezvous, ketama_fnv1a)", optarg);
            break;
        case 't':
            if (!parse_i64(optarg, &timeout) || timeout <= 0 || timeout > 3600000)
                return die(EXIT_ERR, "bad --timeout '%s' (milliseconds, > 0)", optarg);
            break;
        case 'f': {
            uint64_t v;
            if (!parse_u64(optarg, &v) || v > UINT32_MAX)
                return die(EXIT_ERR, "bad --flags '%s' (0..4294967295)", optarg);
            flags = (int64_t)v;
            break;
        }
        case 'e':
            if (!parse_i64(optarg, &exptime))
                return die(EXIT_ERR, "bad --exptime '%s'", optarg);
            break;
        case 'i':
            if (!parse_i64(optarg, &interval) || interval < 10)
                return die(EXIT_ERR, "bad --interval '%s' (milliseconds, >= 10)", optarg);
            break;
        case 'n':
            if (!parse_i64(optarg, &iterations) || iterations < 0)
                return die(EXIT_ERR, "bad --iterations '%s'", optarg);
            break;
        case 'L':
            if (!parse_i64(optarg, &lock) || lock <= 0 || lock > INT32_MAX)
                return die(EXIT_ERR, "bad --lock '%s' (seconds, > 0)", optarg);
            break;
        case 'R':
            if (!parse_i64(optarg, &recache) || recache < 0 || recache > INT32_MAX)
                return die(EXIT_ERR, "bad --recache '%s' (seconds, >= 0)", optarg);
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return EXIT_ERR;
        }
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return EXIT_ERR;
    }
    const char *cmd = argv[optind];
    char **args = argv + optind + 1;
    int nargs = argc - optind - 1;
    cmd_name = cmd;
    opt.connect_timeout_ms = opt.io_timeout_ms = opt.checkout_timeout_ms = (int)timeout;

    static const struct {
        const char *name;
        int min, max;   /* argument counts */
    } cmds[] = {
        {"get", 1, 100000}, {"set", 1, 2},   {"add", 1, 2},    {"replace", 1, 2}, {"append", 1, 2},
        {"prepend", 1, 2},  {"delete", 1, 1}, {"incr", 1, 2},  {"decr", 1, 2},    {"touch", 2, 2},
        {"flush", 0, 1},    {"stats", 0, 1},  {"version", 0, 0}, {"top", 0, 0},   {"locate", 1, 1},
        {"lease", 1, 1},    {"invalidate", 1, 1},
    };
    int ci = -1;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            ci = (int)i;
    if (ci < 0)
        return die(EXIT_ERR, "unknown command '%s' (memkit --help lists them)", cmd);
    if (nargs < cmds[ci].min || nargs > cmds[ci].max)
        return die(EXIT_ERR, "%s: wrong number of arguments (memkit --help)", cmd);

    char err[256];
    mk_client *c;
    int rc = mk_client_create(&c, servers, &opt, err, sizeof err);
    if (rc)
        return die(EXIT_ERR, "%s", err);
    int status = 0;
    size_t n = mk_server_count(c);

    if (strcmp(cmd, "get") == 0) {
        if (nargs == 1) {
            mk_item it;
            rc = mk_get(c, args[0], strlen(args[0]), &it);
            if (rc == 0) {
                fwrite(it.value, 1, it.nvalue, stdout);
                putchar('\n');
                mk_item_clear(&it);
            }
            status = result(c, rc, args[0]);
        } else {
            size_t *nk = malloc((size_t)nargs * sizeof *nk);
            bool *hit = calloc((size_t)nargs, sizeof *hit);
            for (int i = 0; i < nargs; i++)
                nk[i] = strlen(args[i]);
            mget_out o = {(const char *const *)args, hit};
            rc = mk_mget(c, (const char *const *)args, nk, (size_t)nargs, false, print_hit, &o);
            if (rc)
                status = result(c, rc, NULL);
            for (int i = 0; i < nargs && rc == 0; i++)
                if (!hit[i])
                    status = result(c, MK_ENOTFOUND, args[i]);
            free(nk);
            free(hit);
        }
    } else if (ci >= 1 && ci <= 5) {
        static const mk_store_op ops[] = {MK_STORE_SET, MK_STORE_ADD, MK_STORE_REPLACE, MK_STORE_APPEND,
                                          MK_STORE_PREPEND};
        size_t nv;
        char *stdin_buf = NULL;
        const char *val;
        if (nargs == 2) {
            val = args[1];
            nv = strlen(val);
        } else {
            val = stdin_buf = read_stdin(&nv);
            if (!stdin_buf)
                return die(EXIT_ERR, "%s: cannot read stdin", cmd);
        }
        rc = mk_store(c, ops[ci - 1], args[0], strlen(args[0]), val, nv, (uint32_t)flags, exptime, 0, 0);
        free(stdin_buf);
        status = result(c, rc, args[0]);
    } else if (strcmp(cmd, "delete") == 0) {
        status = result(c, mk_delete(c, args[0], strlen(args[0]), 0), args[0]);
    } else if (strcmp(cmd, "incr") == 0 || strcmp(cmd, "decr") == 0) {
        uint64_t delta = 1, v = 0;
        if (nargs == 2 && !parse_u64(args[1], &delta))
            return die(EXIT_ERR, "%s: bad delta '%s' (0..18446744073709551615)", cmd, args[1]);
        rc = cmd[0] == 'i' ? mk_incr(c, args[0], strlen(args[0]), delta, &v, 0)
                           : mk_decr(c, args[0], strlen(args[0]), delta, &v, 0);
        if (rc == 0)
            printf("%" PRIu64 "\n", v);
        status = result(c, rc, args[0]);
    } else if (strcmp(cmd, "lease") == 0) {
        mk_item it;
        unsigned st = 0;
        rc = mk_get_meta(c, args[0], strlen(args[0]), lock, recache, &it, &st);
        if (rc == 0) {
            bool placeholder = (st & MK_META_PLACEHOLDER) != 0;
            if (!placeholder) {
                fwrite(it.value, 1, it.nvalue, stdout);
                putchar('\n');
            }
            mk_item_clear(&it);
            status = (st & MK_META_WIN) ? EXIT_WIN : (st & MK_META_TOKEN) && (placeholder || (st & MK_META_STALE))
                                                         ? EXIT_BUSY : 0;
        } else {
            status = rc == MK_EERROR ? die(EXIT_ERR, "lease %s: the server does not speak the meta protocol", args[0])
                                     : result(c, rc, args[0]);
        }
    } else if (strcmp(cmd, "invalidate") == 0) {
        rc = mk_invalidate(c, args[0], strlen(args[0]), exptime);
        status = rc == MK_EERROR ? die(EXIT_ERR, "invalidate %s: the server does not speak the meta protocol", args[0])
                                 : result(c, rc, args[0]);
    } else if (strcmp(cmd, "touch") == 0) {
        int64_t e;
        if (!parse_i64(args[1], &e))
            return die(EXIT_ERR, "touch: bad exptime '%s'", args[1]);
        status = result(c, mk_touch(c, args[0], strlen(args[0]), e, 0), args[0]);
    } else if (strcmp(cmd, "flush") == 0) {
        int64_t delay = 0;
        if (nargs == 1 && (!parse_i64(args[0], &delay) || delay < 0))
            return die(EXIT_ERR, "flush: bad delay '%s'", args[0]);
        for (size_t i = 0; i < n; i++) {
            mk_op_args a;   /* per server, to name the one that fails */
            mk_op_args_init(&a);
            a.code = MK_OP_FLUSH_ALL;
            a.server = (int)i;
            a.exptime = delay > 0 ? delay : -1;
            mk_op *op;
            rc = mk_op_start(c, &a, &op);
            if (rc == 0) {
                while ((rc = mk_op_step(op)) == MK_EAGAIN) {
                    struct pollfd p = {mk_op_fd(op), mk_op_events(op), 0};
                    poll(&p, 1, mk_op_timeout_ms(op));
                }
                mk_op_destroy(op);
            }
            if (rc)
                status = die(EXIT_ERR, "flush %s: %s", mk_server_name(c, i), mk_strerror(rc));
        }
    } else if (strcmp(cmd, "stats") == 0) {
        for (size_t i = 0; i < n; i++) {
            if (n > 1)
                printf("%s# %s\n", i ? "\n" : "", mk_server_name(c, i));
            fflush(stdout);
            rc = mk_stats(c, i, nargs ? args[0] : NULL, print_stat, NULL);
            if (rc)
                status = die(EXIT_ERR, "stats %s: %s", mk_server_name(c, i), mk_strerror(rc));
        }
    } else if (strcmp(cmd, "version") == 0) {
        for (size_t i = 0; i < n; i++) {
            char v[256];
            rc = mk_version(c, i, v, sizeof v);
            if (rc == 0)
                printf("%s %s\n", mk_server_name(c, i), v);
            else
                status = die(EXIT_ERR, "version %s: %s", mk_server_name(c, i), mk_strerror(rc));
        }
    } else if (strcmp(cmd, "locate") == 0) {
        rc = mk_server_for_key(c, args[0], strlen(args[0]));
        if (rc >= 0)
            printf("%s\n", mk_server_name(c, (size_t)rc));
        else
            status = result(c, rc, args[0]);
    } else if (strcmp(cmd, "top") == 0) {
        status = cli_top(c, (int)interval, (int)iterations);
    }
    fflush(stdout);
    mk_client_destroy(c);
    return status;
}
