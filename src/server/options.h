/* server/options.h — memkitd's settings and the parser from memcached-style command-line options. */
#ifndef MK_SERVER_OPTIONS_H
#define MK_SERVER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MK_MAX_LISTEN 16

/* Everything memkitd can be told on its command line; filled by mk_options_parse(). */
/* -B: which protocols a connection may speak. */
typedef enum mk_proto_choice {
    MK_PROTO_AUTO = 0, /* the first byte decides: 0x80 binary, anything else the ASCII protocols (default) */
    MK_PROTO_ASCII,    /* classic text and meta commands only */
    MK_PROTO_BINARY,   /* the binary protocol only */
} mk_proto_choice;

/* memcached's name for it in "stats settings" (binding_protocol): auto-negotiate, ascii, binary. */
const char *mk_protocol_choice_name(mk_proto_choice p);

#define MK_READ_BUF_LIMIT_DEFAULT_MB 64

typedef struct mk_settings {
    int port;                   /* -p: TCP port (default 11211; 0 = kernel picks) */
    int udp_port;               /* -U: UDP port (0: off, the default); without -p, also the TCP port */
    const char *listen[MK_MAX_LISTEN]; /* -l: addresses (default 127.0.0.1); "host" or "host:port" */
    int nlisten;
    const char *unix_path;      /* -s: unix socket path (disables TCP, as in memcached) */
    int unix_mask;              /* -a: permission mask for the unix socket (default 0700) */
    bool daemonize;             /* -d */
    const char *user;           /* -u: user to run as when started as root */
    const char *pidfile;        /* -P */
    size_t maxbytes;            /* -m: item memory in bytes (default 64 MiB) */
    bool evict;                 /* false with -M */
    int maxconns;               /* -c: simultaneous client connections (default 1024) */
    int threads;                /* -t: worker threads (default 4) */
    int verbose;                /* -v count */
    size_t item_size_max;       /* -I: largest item (default 1 MiB; 1 KiB .. 1 GiB) */
    bool use_cas;               /* false with -C */
    int reqs_per_event;         /* -R: commands handled per connection per wake-up (default 20) */
    int backlog;                /* -b: listen backlog (default 1024) */
    bool shutdown_enabled;      /* -A: allow the "shutdown" command */
    bool flush_enabled;         /* false with -F */
    unsigned hashpower;         /* -o hashpower=N: initial hash table size (log2) */
    int idle_timeout;           /* -o idle_timeout=S: close connections idle this long (0 = never) */
    bool maxconns_fast;         /* -o maxconns_fast / no_maxconns_fast */
    int keepalive_idle;         /* -o tcp_keepalive=IDLE:INTVL:CNT (default 60:15:4; IDLE 0: the kernel's) */
    int keepalive_intvl;
    int keepalive_cnt;
    bool coredumps;
    /* -Z and -o ssl_*: TLS on the TCP listeners (tls.c); "notls:" before a -l address leaves it plain */
    bool tls;
    const char *ssl_chain_cert;
    const char *ssl_key;
    const char *ssl_ca_cert;    /* client CAs (mutual TLS with ssl_verify_mode 2 or 3) */
    const char *ssl_ciphers;    /* TLS 1.2 cipher list (OpenSSL's syntax); NULL: OpenSSL's default */
    int ssl_verify_mode;        /* 0 none, 1 request, 2 require, 3 once (OpenSSL's SSL_VERIFY_* bits) */
    int ssl_min_version;        /* 0 TLS 1.0 .. 3 TLS 1.3 (default 2) */
    int ssl_keyformat;          /* 1 PEM (default), 2 DER (ASN.1) */
    bool ssl_session_cache;
    bool ssl_kernel_tls;
    size_t ssl_wbuf_size;       /* bytes (-o ssl_wbuf_size in KB, default 16): replies smaller than this are
                                   gathered per worker and written as one TLS record */             /* -r: core limit raised, item memory kept in dumps (else MADV_DONTDUMP) */
    uint64_t read_buf_limit;    /* -o read_buf_mem_limit (MB; 0 unlimited): bytes all connections together may
                                   hold in read buffers grown past their first 16 KB (long request lines) */
    const char *memory_file;    /* -e: item memory in this file, for warm restarts (NULL: anonymous memory) */
    mk_proto_choice protocol;   /* -B (default auto; binary with -S) */
    bool sasl;                  /* -S: binary-protocol clients must authenticate (SASL, server/sasl.h) */
    const char *auth_file;      /* -Y: ASCII clients must authenticate with a user:password of this file (authfile.h) */
} mk_settings;

/* The defaults (memcached's, except: listen on 127.0.0.1 only). */
void mk_settings_init(mk_settings *s);

/*
 * What mk_options_parse() concluded: run the server, or exit now with a status
 * (after -h / -V the status is 0; after a bad option it is 1 and one line
 * saying what is wrong has been written to err).
 */
typedef enum mk_opt_result { MK_OPT_RUN = 0, MK_OPT_EXIT } mk_opt_result;

/*
 * Parse argv (memcached's short and long options, including -o name=value lists)
 * into *s, which must have been initialised with mk_settings_init(). Help and
 * version text go to out; errors and notes about options memkitd accepts but does
 * not act on go to err. On MK_OPT_EXIT, *exit_status holds the status to exit with.
 * Pointers stored in *s point into argv.
 */
mk_opt_result mk_options_parse(mk_settings *s, int argc, char **argv, FILE *out, FILE *err,
                               int *exit_status);

/* Print the -h text for exactly the options memkitd supports. */
void mk_options_usage(FILE *out);

#endif /* MK_SERVER_OPTIONS_H */
