/* server/options.c — parses memcached's command-line options into mk_settings, with one-line errors. */
#include "server/options.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "server/version.h"

#define MIB ((size_t)1024 * 1024)

const char *mk_protocol_choice_name(mk_proto_choice p)
{
    return p == MK_PROTO_ASCII ? "ascii" : p == MK_PROTO_BINARY ? "binary" : "auto-negotiate";
}

void mk_settings_init(mk_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->port = 11211;
    s->udp_port = 0;
    s->unix_mask = 0700;
    s->maxbytes = 64 * MIB;
    s->evict = true;
    s->maxconns = 1024;
    s->threads = 4;
    s->item_size_max = MIB;
    s->use_cas = true;
    s->reqs_per_event = 20;
    s->backlog = 1024;
    s->flush_enabled = true;
    s->maxconns_fast = true;
    s->read_buf_limit = (uint64_t)MK_READ_BUF_LIMIT_DEFAULT_MB << 20;
    s->keepalive_idle = 60;
    s->keepalive_intvl = 15;
    s->keepalive_cnt = 4;
    s->ssl_min_version = 2;
    s->ssl_keyformat = 1;
    s->ssl_wbuf_size = 16384;
}

void mk_options_usage(FILE *out)
{
    fprintf(out,
        "memkitd %s — a memcached-compatible memory cache\n"
        "usage: memkitd [options]\n"
        "-p, --port=<num>          TCP port to listen on (default: 11211)\n"
        "-U, --udp-port=<num>      UDP port to listen on (default: 0, off); without -p, TCP uses it too.\n"
        "                          UDP replies can be aimed at a spoofed sender: keep it on a private\n"
        "                          interface (-l) behind a firewall, never open to the internet\n"
        "-s, --unix-socket=<file>  UNIX socket to listen on (disables TCP)\n"
        "-a, --unix-mask=<mask>    access mask for the UNIX socket, in octal (default: 700)\n"
        "-A, --enable-shutdown     enable the ascii \"shutdown\" command\n"
        "-l, --listen=<addr>       interface(s) to listen on, comma separated, optionally addr:port\n"
        "                          (default: 127.0.0.1; use 0.0.0.0 for every interface)\n"
        "-d, --daemon              run as a daemon\n"
        "-u, --user=<user>         assume the identity of <user> (required when run as root)\n"
        "-Z, --enable-ssl          TLS on the TCP listeners (-o ssl_chain_cert=,ssl_key= required; \"-l notls:ADDR\"\n"
        "                          leaves one plain)\n"
        "-r, --enable-coredumps    raise the core file limit to its maximum and keep item memory in core\n"
        "                          dumps (without -r, item memory is left out of them)\n"
        "-m, --memory-limit=<num>  item memory in megabytes (default: 64)\n"
        "-M, --disable-evictions   return an error when memory is full instead of evicting\n"
        "-c, --conn-limit=<num>    max simultaneous connections (default: 1024)\n"
        "-v, --verbose             verbose (print errors/warnings)\n"
        "-vv                       very verbose (also print client commands/responses)\n"
        "-vvv                      extremely verbose (also connection state changes)\n"
        "-h, --help                print this help and exit\n"
        "-V, --version             print version and exit\n"
        "-P, --pidfile=<file>      save PID in <file>, only used with -d\n"
        "-t, --threads=<num>       number of worker threads (default: 4)\n"
        "-R, --max-reqs-per-event  requests handled per connection per event (default: 20)\n"
        "-C, --disable-cas         disable use of CAS\n"
        "-F, --disable-flush-all   disable the flush_all command\n"
        "-b, --listen-backlog=<num> listen backlog (default: 1024)\n"
        "-B, --protocol=<name>     auto (default: the first byte of a connection decides), ascii or binary\n"
        "-S, --enable-sasl         binary-protocol clients must authenticate (SASL: libsasl2's memcached.conf,\n"
        "                          $SASL_CONF_PATH, $MEMCACHED_SASL_PWDB); implies -B binary\n"
        "-Y, --auth-file=<file>    ASCII clients must authenticate with a \"user:password\" line of <file>\n"
        "                          (sent as memcached's special set); reloaded on SIGHUP; implies -B ascii\n"
        "-I, --max-item-size=<num> largest item, with k/m suffix (default: 1m, min: 1k, max: 1024m)\n"
        "-e, --memory-file=<file>  keep item memory in <file> (tmpfs such as /dev/shm, or a disk path):\n"
        "                          a clean stop (SIGTERM, SIGINT, SIGUSR1) leaves an image the next start\n"
        "                          with the same -m, -I and -C serves again (warm restart)\n"
        "-o, --extended            comma separated list of extended options:\n"
        "   - hashpower=<num>      initial hash table size as a power of two (the table grows on its own)\n"
        "   - idle_timeout=<secs>  close connections idle this long (default: 0, never)\n"
        "   - tcp_keepalive=<idle>[:<interval>:<probes>] probe a silent connection after <idle> s, every\n"
        "                          <interval> s, close it after <probes> unanswered (default: 60:15:4;\n"
        "                          0: the kernel's defaults)\n"
        "   - ssl_chain_cert=<file> ssl_key=<file>  the server's certificate chain and key (PEM)\n"
        "   - ssl_ca_cert=<file>   CAs whose client certificates are accepted (mutual TLS)\n"
        "   - ssl_verify_mode=<n>  client certificates: 0 not asked (default), 1 requested, 2 required,\n"
        "                          3 required once\n"
        "   - ssl_min_version=<v>  oldest TLS accepted: tlsv1.0 .. tlsv1.3 or 0-3 (default: tlsv1.2)\n"
        "   - ssl_ciphers=<list>   OpenSSL cipher list for TLS 1.2; ssl_keyformat=1|2 (PEM, DER);\n"
        "                          ssl_session_cache; ssl_kernel_tls (kTLS where OpenSSL and the kernel can)\n"
        "   - read_buf_mem_limit=<mb> memory all connections may hold for request lines longer than\n"
        "                          16 KB (default: 64; 0: no limit); over it, such a request is refused\n"
        "   - maxconns_fast / no_maxconns_fast  reject connections over -c at once (default: on)\n"
        "   Other memcached -o names are accepted and have no effect (a note is printed).\n"
        "Accepted for compatibility and without effect: -f -n -L -k -D -X -W\n",
        MK_VERSION);
}

/* Parse a whole decimal integer in [lo, hi]; false on anything else. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parse a size with an optional k/m/g suffix (powers of 1024), as memcached's -I takes it. */
static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1024, end++;
    else if (*end == 'm' || *end == 'M') mul = MIB, end++;
    else if (*end == 'g' || *end == 'G') mul = 1024 * MIB, end++;
    if (*end != '\0' || v > UINT64_MAX / mul)
        return false;
    *out = (uint64_t)v * mul;
    return true;
}

/* memcached -o names that memkitd accepts but does not act on. */
static const char *const ignored_suboptions[] = {
    "tail_repair_time", "hash_algorithm", "lru_crawler", "no_lru_crawler", "lru_crawler_sleep",
    "lru_crawler_tocrawl", "lru_maintainer", "no_lru_maintainer", "hot_lru_pct", "warm_lru_pct",
    "hot_max_factor", "warm_max_factor", "temporary_ttl", "watcher_logbuf_size",
    "worker_logbuf_size", "slab_reassign", "no_slab_reassign",
    "slab_automove", "slab_automove_ratio", "slab_automove_window", "slab_chunk_max",
    "track_sizes", "no_inline_ascii_resp", "modern", "no_modern", "resp_obj_mem_limit",
    "no_hashexpand", "drop_privileges", "no_drop_privileges", "lru_segmented",
    "no_lru_segmented", NULL,
};

/* "IDLE" or "IDLE:INTERVAL:PROBES" (the interval and probes default to 15 and 4); IDLE 0 turns it off. */
static bool parse_keepalive(mk_settings *s, const char *val)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", val);
    char *intvl = strchr(buf, ':'), *cnt = NULL;
    if (intvl) {
        *intvl++ = '\0';
        cnt = strchr(intvl, ':');
        if (!cnt)
            return false;
        *cnt++ = '\0';
    }
    long a, b = 15, c = 4;
    if (!parse_long(buf, 0, 86400, &a) || (intvl && (!parse_long(intvl, 1, 3600, &b) || !parse_long(cnt, 1, 100, &c))))
        return false;
    s->keepalive_idle = (int)a;
    s->keepalive_intvl = (int)b;
    s->keepalive_cnt = (int)c;
    return true;
}

/* memcached's -o ssl_* options. false after one line on err. */
static bool parse_ssl_suboption(mk_settings *s, const char *tok, const char *val, FILE *err)
{
    long v;
    const char **file = NULL;
    if (strcmp(tok, "ssl_chain_cert") == 0)
        file = &s->ssl_chain_cert;
    else if (strcmp(tok, "ssl_key") == 0)
        file = &s->ssl_key;
    else if (strcmp(tok, "ssl_ca_cert") == 0)
        file = &s->ssl_ca_cert;
    else if (strcmp(tok, "ssl_ciphers") == 0)
        file = &s->ssl_ciphers;
    if (file) {
        if (!val || !*val) {
            fprintf(err, "memkitd: -o %s needs a value\n", tok);
            return false;
        }
        *file = val;
    } else if (strcmp(tok, "ssl_verify_mode") == 0) {
        if (!val || !parse_long(val, 0, 3, &v)) {
            fprintf(err, "memkitd: -o ssl_verify_mode needs 0 (none), 1 (request), 2 (require) or 3 (once)\n");
            return false;
        }
        s->ssl_verify_mode = (int)v;
    } else if (strcmp(tok, "ssl_min_version") == 0) {
        static const char *const names[] = {"tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"};
        v = -1;
        for (int i = 0; val && i < 4; i++)
            if (strcmp(val, names[i]) == 0)
                v = i;
        if (v < 0 && (!val || !parse_long(val, 0, 3, &v))) {
            fprintf(err, "memkitd: -o ssl_min_version needs 0-3 or tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3\n");
            return false;
        }
        s->ssl_min_version = (int)v;
    } else if (strcmp(tok, "ssl_keyformat") == 0) {
        if (!val || !parse_long(val, 1, 2, &v)) {
            fprintf(err, "memkitd: -o ssl_keyformat needs 1 (PEM) or 2 (DER)\n");
            return false;
        }
        s->ssl_keyformat = (int)v;
    } else if (strcmp(tok, "ssl_session_cache") == 0) {
        s->ssl_session_cache = true;
    } else if (strcmp(tok, "ssl_kernel_tls") == 0) {
        s->ssl_kernel_tls = true;
    } else if (strcmp(tok, "ssl_wbuf_size") == 0) {
        if (!val || !parse_long(val, 1, 16384, &v)) {
            fprintf(err, "memkitd: -o ssl_wbuf_size needs a number of kilobytes from 1 to 16384\n");
            return false;
        }
        s->ssl_wbuf_size = (size_t)v << 10;
    } else {
        fprintf(err, "memkitd: illegal suboption \"%s\"\n", tok);
        return false;
    }
    return true;
}

static bool parse_suboptions(mk_settings *s, char *list, FILE *err)
{
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *val = strchr(tok, '=');
        if (val)
            *val++ = '\0';
        long v;
        if (strcmp(tok, "hashpower") == 0) {
            if (!val || !parse_long(val, 12, 32, &v)) {
                fprintf(err, "memkitd: -o hashpower needs a value from 12 to 32\n");
                return false;
            }
            s->hashpower = (unsigned)v;
        } else if (strcmp(tok, "idle_timeout") == 0) {
            if (!val || !parse_long(val, 0, INT_MAX, &v)) {
                fprintf(err, "memkitd: -o idle_timeout needs a number of seconds\n");
                return false;
            }
            s->idle_timeout = (int)v;
        } else if (strcmp(tok, "tcp_keepalive") == 0) {
            if (!val || !parse_keepalive(s, val)) {
                fprintf(err, "memkitd: -o tcp_keepalive needs IDLE[:INTERVAL:PROBES] in seconds (0: the "
                             "kernel's defaults)\n");
                return false;
            }
        } else if (strncmp(tok, "ssl_", 4) == 0) {
            if (!parse_ssl_suboption(s, tok, val, err))
                return false;
        } else if (strcmp(tok, "read_buf_mem_limit") == 0) {
            if (!val || !parse_long(val, 0, 1L << 20, &v)) {
                fprintf(err, "memkitd: -o read_buf_mem_limit needs a number of megabytes (0: no limit)\n");
                return false;
            }
            s->read_buf_limit = (uint64_t)v << 20;
        } else if (strcmp(tok, "maxconns_fast") == 0) {
            s->maxconns_fast = true;
        } else if (strcmp(tok, "no_maxconns_fast") == 0) {
            s->maxconns_fast = false;
        } else {
            bool known = strncmp(tok, "ext_", 4) == 0 || strncmp(tok, "proxy_", 6) == 0;
            for (const char *const *n = ignored_suboptions; !known && *n; n++)
                known = strcmp(tok, *n) == 0;
            if (!known) {
                fprintf(err, "memkitd: illegal suboption \"%s\"\n", tok);
                return false;
            }
            fprintf(err, "memkitd: note: -o %s has no effect in memkitd\n", tok);
        }
    }
    return true;
}

mk_opt_result mk_options_parse(mk_settings *s, int argc, char **argv, FILE *out, FILE *err,
                               int *exit_status)
{
    static const struct option longopts[] = {
        {"port", required_argument, 0, 'p'},        {"udp-port", required_argument, 0, 'U'},
        {"unix-socket", required_argument, 0, 's'}, {"unix-mask", required_argument, 0, 'a'},
        {"enable-shutdown", no_argument, 0, 'A'},   {"listen", required_argument, 0, 'l'},
        {"daemon", no_argument, 0, 'd'},            {"enable-coredumps", no_argument, 0, 'r'},
        {"user", required_argument, 0, 'u'},        {"memory-limit", required_argument, 0, 'm'},
        {"disable-evictions", no_argument, 0, 'M'}, {"conn-limit", required_argument, 0, 'c'},
        {"lock-memory", no_argument, 0, 'k'},       {"verbose", optional_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},              {"version", no_argument, 0, 'V'},
        {"pidfile", required_argument, 0, 'P'},     {"slab-growth-factor", required_argument, 0, 'f'},
        {"slab-min-size", required_argument, 0, 'n'}, {"enable-largepages", no_argument, 0, 'L'},
        {"threads", required_argument, 0, 't'},     {"max-reqs-per-event", required_argument, 0, 'R'},
        {"disable-cas", no_argument, 0, 'C'},       {"listen-backlog", required_argument, 0, 'b'},
        {"protocol", required_argument, 0, 'B'},    {"max-item-size", required_argument, 0, 'I'},
        {"disable-flush-all", no_argument, 0, 'F'}, {"disable-dumping", no_argument, 0, 'X'},
        {"disable-watch", no_argument, 0, 'W'},     {"extended", required_argument, 0, 'o'},
        {"memory-file", required_argument, 0, 'e'}, {"enable-sasl", no_argument, 0, 'S'},
        {"auth-file", required_argument, 0, 'Y'}, {"enable-ssl", no_argument, 0, 'Z'},
        {0, 0, 0, 0},
    };
    const char *shortopts = ":p:U:s:a:Al:dru:m:Mc:kvhVP:f:n:Lt:R:Cb:B:I:FXWo:D:e:SY:Z";
    bool item_size_given = false, protocol_given = false, port_given = false;
    long v;
    uint64_t sz;

    *exit_status = 1;
    optind = 0; /* GNU: full re-initialisation, so the parser can run more than once */
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, shortopts, longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'p':
            if (!parse_long(optarg, 0, 65535, &v)) goto bad_value;
            s->port = (int)v;
            port_given = true;
            break;
        case 'U':
            if (!parse_long(optarg, 0, 65535, &v)) goto bad_value;
            s->udp_port = (int)v;
            break;
        case 's':
            s->unix_path = optarg;
            break;
        case 'a': {
            char *end;
            errno = 0;
            long m = strtol(optarg, &end, 8);
            if (errno || end == optarg || *end || m < 0 || m > 0777) goto bad_value;
            s->unix_mask = (int)m;
            break;
        }
        case 'A':
            s->shutdown_enabled = true;
            break;
        case 'l': {
            /* comma-separated list; each entry is kept as a pointer into argv */
            char *save = NULL;
            for (char *a = strtok_r(optarg, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
                if (s->nlisten == MK_MAX_LISTEN) {
                    fprintf(err, "memkitd: too many -l addresses (at most %d)\n", MK_MAX_LISTEN);
                    return MK_OPT_EXIT;
                }
                s->listen[s->nlisten++] = a;
            }
            break;
        }
        case 'd':
            s->daemonize = true;
            break;
        case 'u':
            s->user = optarg;
            break;
        case 'm':
            if (!parse_long(optarg, 1, 1L << 30, &v)) goto bad_value;
            s->maxbytes = (size_t)v * MIB;
            break;
        case 'M':
            s->evict = false;
            break;
        case 'c':
            if (!parse_long(optarg, 1, 1L << 24, &v)) goto bad_value;
            s->maxconns = (int)v;
            break;
        case 'v':
            s->verbose++;
            if (optarg) /* --verbose=N or -vv given as -v v */
                for (const char *p = optarg; *p == 'v'; p++)
                    s->verbose++;
            break;
        case 'h':
            mk_options_usage(out);
            *exit_status = 0;
            return MK_OPT_EXIT;
        case 'V':
            fprintf(out, "memkitd %s\n", MK_VERSION);
            *exit_status = 0;
            return MK_OPT_EXIT;
        case 'P':
            s->pidfile = optarg;
            break;
        case 't':
            if (!parse_long(optarg, 1, 256, &v)) goto bad_value;
            s->threads = (int)v;
            break;
        case 'R':
            if (!parse_long(optarg, 1, INT_MAX, &v)) goto bad_value;
            s->reqs_per_event = (int)v;
            break;
        case 'C':
            s->use_cas = false;
            break;
        case 'F':
            s->flush_enabled = false;
            break;
        case 'b':
            if (!parse_long(optarg, 1, INT_MAX, &v)) goto bad_value;
            s->backlog = (int)v;
            break;
        case 'S':
            s->sasl = true;
            break;
        case 'Y':
            s->auth_file = optarg;
            break;
        case 'Z':
            s->tls = true;
            break;
        case 'B':
            protocol_given = true;
            if (strcmp(optarg, "auto") == 0)
                s->protocol = MK_PROTO_AUTO;
            else if (strcmp(optarg, "ascii") == 0)
                s->protocol = MK_PROTO_ASCII;
            else if (strcmp(optarg, "binary") == 0)
                s->protocol = MK_PROTO_BINARY;
            else
                goto bad_value;
            break;
        case 'I':
            if (!parse_size(optarg, &sz)) goto bad_value;
            if (sz < 1024) {
                fprintf(err, "memkitd: -I: item max size cannot be less than 1024 bytes\n");
                return MK_OPT_EXIT;
            }
            if (sz > 1024 * MIB) {
                fprintf(err, "memkitd: -I: item max size cannot be larger than 1024m\n");
                return MK_OPT_EXIT;
            }
            s->item_size_max = (size_t)sz;
            item_size_given = true;
            break;
        case 'e':
            if (!*optarg) goto bad_value;
            s->memory_file = optarg;
            break;
        case 'o':
            if (!parse_suboptions(s, optarg, err))
                return MK_OPT_EXIT;
            break;
        case 'r':
            s->coredumps = true;
            break;
        case 'f': case 'n': case 'L': case 'k': case 'D': case 'X': case 'W':
            fprintf(err, "memkitd: note: -%c has no effect in memkitd\n", c);
            break;
        case ':':
            fprintf(err, "memkitd: option %s needs a value\n", argv[optind - 1]);
            return MK_OPT_EXIT;
        default:
            if (optopt)
                fprintf(err, "memkitd: unknown option -%c (see memkitd -h)\n", optopt);
            else
                fprintf(err, "memkitd: unknown option %s (see memkitd -h)\n", argv[optind - 1]);
            return MK_OPT_EXIT;
        }
        continue;
    bad_value:
        fprintf(err, "memkitd: invalid value \"%s\" for -%c (see memkitd -h)\n", optarg, c);
        return MK_OPT_EXIT;
    }
    if (optind < argc) {
        fprintf(err, "memkitd: unexpected argument \"%s\" (see memkitd -h)\n", argv[optind]);
        return MK_OPT_EXIT;
    }
    if (s->item_size_max > s->maxbytes / 2) {
        if (item_size_given) {
            fprintf(err, "memkitd: cannot set item size limit higher than 1/2 of memory max\n");
            return MK_OPT_EXIT;
        }
        s->item_size_max = s->maxbytes / 2; /* small -m with the default -I: shrink -I to fit */
    }
    if (s->sasl) { /* SASL exists only in the binary protocol: memcached's rule */
        if (protocol_given && s->protocol != MK_PROTO_BINARY) {
            fprintf(err, "memkitd: -S (SASL) needs the binary protocol: the text protocols cannot "
                         "authenticate (leave -B out, or -B binary)\n");
            return MK_OPT_EXIT;
        }
        s->protocol = MK_PROTO_BINARY;
        if (s->udp_port != 0) { /* memcached's rule too: a datagram cannot authenticate */
            fprintf(err, "memkitd: -S (SASL) cannot be used with UDP: datagrams are not authenticated "
                         "(leave -U out, or -U 0)\n");
            return MK_OPT_EXIT;
        }
    }
    if (s->auth_file) { /* memcached's rules: the token is ASCII, and a datagram cannot carry one */
        if (s->sasl || (protocol_given && s->protocol != MK_PROTO_ASCII)) {
            fprintf(err, "memkitd: -Y (ASCII authentication) cannot be used with the binary protocol or -S "
                         "(leave -B out, or -B ascii)\n");
            return MK_OPT_EXIT;
        }
        s->protocol = MK_PROTO_ASCII;
        if (s->udp_port != 0) {
            fprintf(err, "memkitd: -Y (ASCII authentication) cannot be used with UDP: datagrams are not "
                         "authenticated (leave -U out, or -U 0)\n");
            return MK_OPT_EXIT;
        }
    }
    bool notls = false;
    for (int i = 0; i < s->nlisten; i++)
        notls |= strncmp(s->listen[i], "notls:", 6) == 0;
    if (notls && !s->tls) {
        fprintf(err, "memkitd: 'notls' before a -l address is valid only with -Z (TLS)\n");
        return MK_OPT_EXIT;
    }
    if (s->tls && (!s->ssl_chain_cert || !s->ssl_key)) {
        fprintf(err, "memkitd: -Z (TLS) needs -o ssl_chain_cert=FILE,ssl_key=FILE\n");
        return MK_OPT_EXIT;
    }
    if (s->tls && s->udp_port != 0) {
        fprintf(err, "memkitd: -Z (TLS) cannot be used with UDP: datagrams would go unencrypted "
                     "(leave -U out, or -U 0)\n");
        return MK_OPT_EXIT;
    }
    if (s->udp_port != 0 && !port_given)
        s->port = s->udp_port; /* memcached: -U without -p moves TCP to the same port */
    if (s->nlisten == 0)
        s->listen[s->nlisten++] = "127.0.0.1";
    *exit_status = 0;
    return MK_OPT_RUN;
}
