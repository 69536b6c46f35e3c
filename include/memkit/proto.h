/* memkit/proto.h — memcached text protocol: pure parse and compose over caller buffers (no I/O, no allocation). */
#ifndef MEMKIT_PROTO_H
#define MEMKIT_PROTO_H

/*
 * One protocol layer for the server (memkitd) and the client (libmemkit).
 *
 *   bytes from a socket ──► mk_parse_request()  ──► mk_request (views into the buffer)
 *   mk_request + storage ──► server dispatch    ──► mk_compose_*() / mk_reply_text()
 *   client call          ──► mk_compose_req_*() ──► bytes to a socket
 *   bytes from a socket  ──► mk_parse_response() ──► mk_response (views into the buffer)
 *
 * Every function here is pure: it reads only the buffer it is given, writes only
 * the output it is given, never allocates, never blocks, and is safe to call from
 * any thread. Views (mk_str) point into the caller's buffer and are valid as long
 * as that buffer is.
 *
 * The reference for every byte is memcached 1.6's doc/protocol.txt, and where the
 * spec is unclear, the behaviour of memcached 1.6.18 itself (see docs/protocol.md).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define MK_KEY_MAX 250          /* longest key memcached accepts */
#define MK_MAX_TOKENS 24        /* memcached's tokenizer limit per pass */
#define MK_LINE_MAX 2048        /* a non-get line longer than this without '\n' closes the connection */
#define MK_READ_BUF 16384       /* memcached's read buffer: a non-get line whose '\n' is not within it closes the connection */
#define MK_GET_LINE_MAX (1u << 20) /* longest get/gets/gat/gats line we buffer */
#define MK_VALUE_HDR_MAX (6 + MK_KEY_MAX + 1 + 10 + 1 + 20 + 1 + 20 + 2) /* "VALUE k f n c\r\n" */

/* A view into someone else's buffer: not NUL-terminated. */
typedef struct mk_str {
    const char *p;
    size_t n;
} mk_str;

/* Commands of the text protocol. */
typedef enum mk_cmd {
    MK_CMD_NONE = 0,
    MK_CMD_GET,
    MK_CMD_GETS,
    MK_CMD_GAT,
    MK_CMD_GATS,
    MK_CMD_SET,
    MK_CMD_ADD,
    MK_CMD_REPLACE,
    MK_CMD_APPEND,
    MK_CMD_PREPEND,
    MK_CMD_CAS,
    MK_CMD_DELETE,
    MK_CMD_INCR,
    MK_CMD_DECR,
    MK_CMD_TOUCH,
    MK_CMD_FLUSH_ALL,
    MK_CMD_VERSION,
    MK_CMD_VERBOSITY,
    MK_CMD_QUIT,
    MK_CMD_STATS,
    MK_CMD_SHUTDOWN,
    MK_CMD_CACHE_MEMLIMIT,
    MK_CMD_REFRESH_CERTS, /* memcached's TLS certificate reload ("refresh_certs [noreply]") */
    MK_CMD_LRU_CRAWLER,   /* "lru_crawler <args>": args holds the rest of the line */
    MK_CMD_SLABS,         /* "slabs <args>": args holds the rest of the line */
    MK_CMD_WATCH,         /* "watch [kinds]": args holds the rest of the line */
    MK_CMD_MG,            /* meta commands: the line is parsed further by mk_parse_meta() */
    MK_CMD_MS,
    MK_CMD_MD,
    MK_CMD_MA,
    MK_CMD_MN,
    MK_CMD_ME,
    MK_CMD__COUNT
} mk_cmd;

/*
 * Protocol-level errors: what a request line alone says is wrong, before any
 * storage is touched. mk_perr_text() gives the exact reply line memcached sends.
 */
typedef enum mk_perr {
    MK_PERR_NONE = 0,
    MK_PERR_ERROR,            /* "ERROR": unknown command, wrong token count where memcached says so */
    MK_PERR_BAD_FORMAT,       /* "CLIENT_ERROR bad command line format" */
    MK_PERR_BAD_DELTA,        /* "CLIENT_ERROR invalid numeric delta argument" */
    MK_PERR_DELETE_USAGE,     /* "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]" */
    MK_PERR_BAD_EXPTIME,      /* "CLIENT_ERROR invalid exptime argument" */
    MK_PERR_LINE_TOO_LONG,    /* "CLIENT_ERROR line too long" (where memcached sends it) */
    MK_PERR_BAD_DATA_CHUNK,   /* "CLIENT_ERROR bad data chunk" (data block not ending in \r\n) */
    MK_PERR_TOO_LARGE,        /* "SERVER_ERROR object too large for cache" */
    MK_PERR_OUT_OF_MEMORY,    /* "SERVER_ERROR out of memory storing object" */
    MK_PERR__COUNT
} mk_perr;

/* What the connection must do after replying with a protocol error. */
typedef enum mk_paction {
    MK_PA_NONE = 0,  /* keep reading commands */
    MK_PA_SWALLOW,   /* discard req->swallow bytes of data block, then keep reading */
    MK_PA_CLOSE      /* close the connection (after flushing the reply, if any) */
} mk_paction;

/* A parsed request line. All mk_str fields point into the parsed buffer. */
typedef struct mk_request {
    mk_cmd cmd;
    bool noreply;         /* "noreply" was the last token (storage, delete, incr/decr, touch, flush_all, verbosity) */
    mk_str key;           /* the key (storage, delete, incr/decr, touch); first key for get-family */
    mk_str keys;          /* get-family: from the first key to the end of the line; iterate with mk_next_key() */
    uint32_t flags;       /* storage: client flags */
    int64_t exptime;      /* storage/touch/gat: exptime exactly as sent (0, relative, absolute or negative) */
    uint64_t vlen;        /* storage: bytes in the data block, not counting its "\r\n" */
    uint64_t cas;         /* cas: the compare-and-swap unique */
    uint64_t delta;       /* incr/decr: the amount */
    int64_t arg;          /* flush_all: delay (0 when absent); verbosity: level; cache_memlimit: MiB */
    bool has_arg;         /* flush_all/verbosity: whether a numeric argument was given */
    mk_str args;          /* stats: everything after "stats" (trimmed; empty for plain stats) */
    mk_perr err;          /* MK_PERR_NONE, or the error to reply with */
    mk_paction action;    /* with err: what to do afterwards */
    uint64_t swallow;     /* with MK_PA_SWALLOW: bytes to discard (data block including its "\r\n") */
    mk_str line;          /* the whole line without its "\r\n" (cut at a NUL byte, as memcached reads it) */
} mk_request;

/*
 * Parse one request line from buf[0..len).
 *
 * Returns:
 *   > 0  the number of bytes of the line consumed, including its "\n" ("\r\n" or
 *        a bare "\n" both end a line, as in memcached). *req is filled: either
 *        req->err == MK_PERR_NONE and the command is valid, or req->err says
 *        which error to reply and req->action what to do next. For storage
 *        commands the data block (req->vlen + 2 bytes) follows the line and is
 *        not consumed here.
 *     0  no complete line yet: read more and call again with the longer buffer.
 *    -1  the connection must be closed without a reply (a line longer than
 *        memcached tolerates without a newline, or an HTTP request line).
 *    -2  no newline in more than MK_LINE_MAX bytes of a line that is not a get:
 *        memcached closes such a connection once it has read all the input there is,
 *        so read what has arrived and call again; close if nothing more has.
 *        When req->err is set and req->noreply is true, memcached sends no reply
 *        for the error either (see docs/protocol.md).
 * Never reads past buf[len-1]; never writes outside *req.
 */
ssize_t mk_parse_request(const char *buf, size_t len, mk_request *req);

/*
 * Iterate the keys of a get-family line: *rest starts as req->keys; each call
 * stores the next space-separated key in *key and advances *rest. Returns false
 * when no key is left.
 */
bool mk_next_key(mk_str *rest, mk_str *key);

/* w is exactly the word s (admin commands' subcommands: "stats settings", "lru_crawler crawl"). */
static inline bool mk_str_is(mk_str w, const char *s)
{
    size_t n = strlen(s);
    return w.n == n && memcmp(w.p, s, n) == 0;
}

/* The exact reply line (without "\r\n") for a protocol error; "" for MK_PERR_NONE. */
const char *mk_perr_text(mk_perr err);

/* The command's name as it is spelled on the wire ("get", "flush_all", ...); "" for MK_CMD_NONE. */
const char *mk_cmd_name(mk_cmd cmd);

/* True for set/add/replace/append/prepend/cas: a data block follows the line. */
bool mk_cmd_is_storage(mk_cmd cmd);

/* ---- outcomes (server side): what executing a command came to, before any protocol spells it ---- */

/*
 * The outcome of one command, shared by every protocol: the server's execution
 * layer returns it, and each protocol's composer turns it into its own bytes
 * (text: mk_text_status_line(); meta: mk_meta_status_code()).
 */
typedef enum mk_status {
    MK_ST_OK = 0,        /* a hit (get), a number (incr/decr), done (flush_all, verbosity) */
    MK_ST_STORED,
    MK_ST_NOT_STORED,    /* add on a present key, replace/append/prepend on a missing one */
    MK_ST_EXISTS,        /* cas: the unique did not match */
    MK_ST_NOT_FOUND,     /* a miss; cas, delete, incr/decr or touch of a missing key */
    MK_ST_DELETED,
    MK_ST_TOUCHED,
    MK_ST_NON_NUMERIC,   /* incr/decr of a value that is not a decimal number */
    MK_ST_TOO_LARGE,     /* the item would exceed the item size limit */
    MK_ST_NO_MEMORY,     /* no room */
    MK_ST_BAD_CHUNK,     /* a data block not followed by "\r\n" */
    MK_ST__COUNT
} mk_status;

/*
 * The classic text protocol's reply line (no "\r\n") for a command's outcome,
 * e.g. (SET, STORED) "STORED", (INCR, NO_MEMORY) "SERVER_ERROR out of memory",
 * (SET, NO_MEMORY) "SERVER_ERROR out of memory storing object". Never NULL.
 */
const char *mk_text_status_line(mk_cmd cmd, mk_status st);

/* ---- the meta protocol (mg ms md ma mn me), memcached 1.6's doc/protocol.txt ---- */

#define MK_META_OPAQUE_MAX 32   /* longest O token memcached echoes (the 'O' included) */
#define MK_META_LINE_MAX (5 + 4 * MK_KEY_MAX + 24 * 40) /* a meta reply line's upper bound, "\r\n" included */

/*
 * A meta request line, checked as memcached 1.6.18 checks it. Flags are single
 * letters, each optionally followed by a token ("T30", "Oabc"); their order is
 * kept because the reply echoes return flags in request order.
 */
typedef struct mk_meta_req {
    mk_cmd cmd;                 /* MK_CMD_MG, MS, MD, MA, MN or ME */
    mk_str key;                 /* the key: decoded into keybuf when b was given */
    bool key_b64;               /* b: the key was sent base64-encoded */
    uint64_t vlen;              /* ms: bytes in the data block (without "\r\n") */
    mk_str flag[MK_MAX_TOKENS]; /* the flag tokens in order (flag[i].p[0] is the letter) */
    size_t nflags;
    uint64_t seen;              /* bit mk_meta_bit(letter) for every flag given */
    /* the values of the flags that carry one */
    uint32_t client_flags;      /* F */
    int32_t ttl, viv_ttl, recache; /* T, N, R: exptimes as sent (memcached's rules apply) */
    uint64_t cas_in;            /* C */
    uint64_t ecas;              /* E: the unique a modified item gets (newer than 1.6.18) */
    uint64_t delta;             /* D (ma; 1 when absent) */
    uint64_t initial;           /* J (ma) */
    char mode;                  /* M: ms E A P R S, ma I + D - (0 when absent) */
    mk_str opaque;              /* O: the whole token, 'O' included */
    /* an error: reply err (always sent, q or not), then do action */
    const char *err;            /* NULL, or the exact reply line */
    mk_paction action;          /* MK_PA_SWALLOW: discard swallow bytes (an ms data block) */
    uint64_t swallow;
    char keybuf[MK_KEY_MAX];    /* the decoded key of a b request */
} mk_meta_req;

/* The bit of a flag letter in mk_meta_req.seen (A-Z: 0-25, a-z: 26-51). */
static inline uint64_t mk_meta_bit(char letter)
{
    return letter >= 'A' && letter <= 'Z' ? 1ull << (letter - 'A')
         : letter >= 'a' && letter <= 'z' ? 1ull << (26 + letter - 'a') : 0;
}

static inline bool mk_meta_has(const mk_meta_req *m, char letter)
{
    return (m->seen & mk_meta_bit(letter)) != 0;
}

/*
 * Parse the line of a request mk_parse_request() classified as a meta command
 * (req->cmd MK_CMD_MG .. MK_CMD_ME). Fills *m; on a malformed line m->err is
 * memcached's reply and m->action what follows it. Never reads outside
 * req->line; m->key may point into m->keybuf (so *m must not be copied).
 */
void mk_parse_meta(const mk_request *req, mk_meta_req *m);

/* A meta status code for an outcome: "HD" "VA" "EN" "NS" "EX" "NF" "MN" (MK_ST_OK: "HD"). */
const char *mk_meta_status_code(mk_cmd cmd, mk_status st);

/*
 * Write " k<key>" (and " b" after it for a binary key, which is base64-encoded
 * again) to out. Returns the length, 0 if cap is too small (4 * MK_KEY_MAX / 3 + 8 always suffices).
 */
size_t mk_compose_meta_key(char *out, size_t cap, const char *key, size_t nkey, bool b64);

/* ---- meta replies (client side) ---- */

typedef enum mk_meta_code {
    MK_MC_NONE = 0,
    MK_MC_VA,             /* a value: vlen bytes and "\r\n" follow the line */
    MK_MC_HD,             /* done / a hit without its value */
    MK_MC_EN,             /* a miss (mg, me) */
    MK_MC_NS,             /* not stored */
    MK_MC_EX,             /* the cas did not match */
    MK_MC_NF,             /* not found */
    MK_MC_MN,             /* the end of a pipeline (mn) */
    MK_MC_ME,             /* me's debug line: text is the rest */
    MK_MC_ERROR,          /* ERROR, CLIENT_ERROR <msg>, SERVER_ERROR <msg>: text is the whole line */
} mk_meta_code;

/* A meta reply line, with the return flags a client acts on decoded. */
typedef struct mk_meta_resp {
    mk_meta_code code;
    uint64_t vlen;        /* VA: value bytes, not counting "\r\n" */
    mk_str flags;         /* the return flags as sent (after the code and the VA size) */
    bool has_cas, has_flags, has_ttl, has_size;
    uint64_t cas;         /* c */
    uint32_t client_flags;/* f */
    int64_t ttl;          /* t: seconds left, -1 never */
    uint64_t size;        /* s */
    mk_str key;           /* k (still base64 when key_b64) */
    bool key_b64;         /* b was returned */
    mk_str opaque;        /* O: the token without its 'O' */
    bool win, stale, token_sent; /* W, X, Z */
    bool hit_before;      /* h1 */
    mk_str text;          /* ME, errors */
} mk_meta_resp;

/*
 * Parse one meta reply line from buf[0..len): bytes consumed (> 0; a VA's
 * value is not consumed), 0 when the line is not complete, -1 when it is not a
 * meta reply (or a malformed one).
 */
ssize_t mk_parse_meta_response(const char *buf, size_t len, mk_meta_resp *r);

/* ---- meta requests (client side) ---- */

/*
 * Write "<cmd> <key>[ <vlen>][ <flags>]\r\n" for a meta request: cmd "mg" "ms"
 * "md" "ma" "mn"; flags is the rest of the line as the caller wants it
 * ("v f c O123 q"), vlen only for ms. Returns the length, 0 if cap is too small.
 */
size_t mk_compose_meta_req(char *out, size_t cap, mk_cmd cmd, mk_str key, uint64_t vlen, mk_str flags);

/* ---- composing replies (server side) ---- */

/*
 * Write "VALUE <key> <flags> <nbytes>[ <cas>]\r\n" to out (cap bytes available;
 * MK_VALUE_HDR_MAX always suffices). Returns the length written, or 0 if cap is
 * too small (nothing useful written).
 */
size_t mk_compose_value_hdr(char *out, size_t cap, mk_str key, uint32_t flags,
                            uint64_t nbytes, bool with_cas, uint64_t cas);

/* Write v in decimal at out, which has room for 20 bytes; returns the length (no NUL). */
size_t mk_compose_u64(char *out, uint64_t v);

/* Write "<v>\r\n" (the incr/decr reply). Returns length, 0 if cap too small (22 always suffices). */
size_t mk_compose_u64_line(char *out, size_t cap, uint64_t v);

/* Write "STAT <name> <value>\r\n". Returns length, 0 if cap too small. */
size_t mk_compose_stat(char *out, size_t cap, const char *name, const char *value);

/* ---- composing requests (client side) ---- */

/*
 * Write a storage command line "<cmd> <key> <flags> <exptime> <nbytes>[ <cas>][ noreply]\r\n"
 * (cas only for MK_CMD_CAS). The caller sends the data block and "\r\n" after it.
 * Returns length, or 0 if cap is too small or cmd is not a storage command.
 */
size_t mk_compose_req_storage(char *out, size_t cap, mk_cmd cmd, mk_str key, uint32_t flags,
                              int64_t exptime, uint64_t nbytes, uint64_t cas, bool noreply);

/*
 * Write a get-family line: "get|gets <k1> <k2> ...\r\n" or "gat|gats <exptime> <k1> ...\r\n",
 * keys[i] of nkeys[i] bytes (n >= 1). Returns the length, 0 if cap is too small or cmd is
 * not get/gets/gat/gats.
 */
size_t mk_compose_req_get(char *out, size_t cap, mk_cmd cmd, int64_t exptime, const char *const *keys,
                          const size_t *nkeys, size_t n);

/*
 * Write "delete <key>", "touch <key> <exptime>", "incr <key> <delta>" or "decr <key> <delta>",
 * then " noreply" if asked and "\r\n". Returns the length, 0 if cap is too small or cmd is
 * none of those.
 */
size_t mk_compose_req_keyed(char *out, size_t cap, mk_cmd cmd, mk_str key, int64_t exptime, uint64_t delta,
                            bool noreply);

/* Write "<cmd>[ <arg>][ noreply]\r\n" (flush_all, version, stats, verbosity...). Length, or 0 if cap is too small. */
size_t mk_compose_req_cmd(char *out, size_t cap, mk_cmd cmd, mk_str arg, bool noreply);

/* ---- parsing replies (client side) ---- */

typedef enum mk_resp_type {
    MK_RESP_NONE = 0,
    MK_RESP_VALUE,        /* "VALUE key flags bytes [cas]": data block of vlen+2 bytes follows */
    MK_RESP_END,
    MK_RESP_STORED,
    MK_RESP_NOT_STORED,
    MK_RESP_EXISTS,
    MK_RESP_NOT_FOUND,
    MK_RESP_DELETED,
    MK_RESP_TOUCHED,
    MK_RESP_OK,
    MK_RESP_NUMBER,       /* incr/decr result: number */
    MK_RESP_VERSION,      /* text = version string */
    MK_RESP_STAT,         /* key = stat name, text = value */
    MK_RESP_ERROR,
    MK_RESP_CLIENT_ERROR, /* text = message */
    MK_RESP_SERVER_ERROR, /* text = message */
    MK_RESP_PREFIX,       /* "stats detail dump": "PREFIX <name> get N hit N set N del N"; key = name, text = the rest */
    MK_RESP__COUNT
} mk_resp_type;

typedef struct mk_response {
    mk_resp_type type;
    mk_str key;           /* VALUE: key; STAT: name; PREFIX: the prefix */
    uint32_t flags;       /* VALUE */
    uint64_t vlen;        /* VALUE: data bytes, not counting "\r\n" */
    bool has_cas;         /* VALUE: a cas unique was present */
    uint64_t cas;         /* VALUE */
    uint64_t number;      /* NUMBER */
    mk_str text;          /* VERSION, STAT value, PREFIX counters, CLIENT_ERROR/SERVER_ERROR message */
} mk_response;

/*
 * Parse one reply line from buf[0..len). Returns bytes consumed (> 0; the data
 * block of a VALUE is not consumed), 0 if no complete line yet, -1 if the line
 * is not a valid memcached reply.
 */
ssize_t mk_parse_response(const char *buf, size_t len, mk_response *resp);

/*
 * memcached's ASCII authentication (-Y): until a connection has authenticated,
 * memcached reads only "set <key> <flags> <exptime> <bytes>" lines whose data
 * block is "<user> <password>"; the key, flags and exptime are ignored.
 */
#define MK_AUTH_TOKEN_MAX 4096  /* memkitd's bound on that data block (memcached's own lines are at most 256) */

/* An unauthenticated connection's request line. */
typedef struct mk_auth_line {
    bool is_set;          /* "set" and at least 5 space-separated tokens, the 5th a decimal number */
    uint64_t size;        /* with is_set: the data block's length, without its "\r\n" */
} mk_auth_line;

/*
 * Parse one line of an unauthenticated connection, as memcached 1.6 does:
 * > 0 the bytes of the line consumed (with its "\n"), *out filled; 0 need more
 * (no "\n" yet, or fewer than 2 bytes); -1 close the connection (no "\n" within
 * MK_LINE_MAX bytes). Never reads past buf[len-1].
 */
ssize_t mk_parse_auth_line(const char *buf, size_t len, mk_auth_line *out);

/*
 * The credentials in an authentication data block (without its "\r\n"): the
 * first two space-separated tokens (more are ignored, as in memcached). false
 * when there are fewer than two. The views point into data.
 */
bool mk_parse_auth_token(const char *data, size_t n, mk_str *user, mk_str *pass);

/*
 * Compose the authentication a client sends first on a connection to a -Y
 * server: "set auth 0 0 <n>\r\n<user> <pass>\r\n" into out[0..cap). Returns its
 * length, or 0 when it does not fit or the credentials cannot be sent this way
 * (empty, or holding a space, "\r", "\n" or NUL). The reply is "STORED".
 */
size_t mk_compose_auth_token(char *out, size_t cap, const char *user, size_t nuser, const char *pass,
                             size_t npass);

#endif /* MEMKIT_PROTO_H */
