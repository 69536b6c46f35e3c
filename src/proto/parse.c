/* src/proto/parse.c — request-line parsing for the text protocol, reproducing memcached 1.6.18's tokenizer and error decisions. */
#include "memkit/proto.h"

#include <string.h>

#include "proto/lex.h"

/*
 * memcached's model, reproduced here without NUL-terminating anything:
 *  - a line ends at the first '\n'; one '\r' before it is dropped only when the
 *    line has at least two bytes before the '\n' ("\r\n" alone keeps its '\r');
 *  - the line is then cut at its first NUL byte (memcached uses strlen);
 *  - tokens are separated by ' ' only; at most MK_MAX_TOKENS-1 tokens are cut,
 *    and the last slot is a terminator that either marks the end of the line or
 *    holds the unprocessed rest (get-family lines are re-tokenized from there).
 */

/* ---- tables ---- */

static const char *const cmd_names[MK_CMD__COUNT] = {
    [MK_CMD_NONE] = "",
    [MK_CMD_GET] = "get",
    [MK_CMD_GETS] = "gets",
    [MK_CMD_GAT] = "gat",
    [MK_CMD_GATS] = "gats",
    [MK_CMD_SET] = "set",
    [MK_CMD_ADD] = "add",
    [MK_CMD_REPLACE] = "replace",
    [MK_CMD_APPEND] = "append",
    [MK_CMD_PREPEND] = "prepend",
    [MK_CMD_CAS] = "cas",
    [MK_CMD_DELETE] = "delete",
    [MK_CMD_INCR] = "incr",
    [MK_CMD_DECR] = "decr",
    [MK_CMD_TOUCH] = "touch",
    [MK_CMD_FLUSH_ALL] = "flush_all",
    [MK_CMD_VERSION] = "version",
    [MK_CMD_VERBOSITY] = "verbosity",
    [MK_CMD_QUIT] = "quit",
    [MK_CMD_STATS] = "stats",
    [MK_CMD_SHUTDOWN] = "shutdown",
    [MK_CMD_CACHE_MEMLIMIT] = "cache_memlimit",
    [MK_CMD_REFRESH_CERTS] = "refresh_certs",
    [MK_CMD_LRU_CRAWLER] = "lru_crawler",
    [MK_CMD_SLABS] = "slabs",
    [MK_CMD_WATCH] = "watch",
    [MK_CMD_MG] = "mg",
    [MK_CMD_MS] = "ms",
    [MK_CMD_MD] = "md",
    [MK_CMD_MA] = "ma",
    [MK_CMD_MN] = "mn",
    [MK_CMD_ME] = "me",
};

static const char *const perr_texts[MK_PERR__COUNT] = {
    [MK_PERR_NONE] = "",
    [MK_PERR_ERROR] = "ERROR",
    [MK_PERR_BAD_FORMAT] = "CLIENT_ERROR bad command line format",
    [MK_PERR_BAD_DELTA] = "CLIENT_ERROR invalid numeric delta argument",
    [MK_PERR_DELETE_USAGE] = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
    [MK_PERR_BAD_EXPTIME] = "CLIENT_ERROR invalid exptime argument",
    [MK_PERR_LINE_TOO_LONG] = "CLIENT_ERROR line too long",
    [MK_PERR_BAD_DATA_CHUNK] = "CLIENT_ERROR bad data chunk",
    [MK_PERR_TOO_LARGE] = "SERVER_ERROR object too large for cache",
    [MK_PERR_OUT_OF_MEMORY] = "SERVER_ERROR out of memory storing object",
};

const char *mk_perr_text(mk_perr err)
{
    if ((unsigned)err >= MK_PERR__COUNT)
        return "";
    return perr_texts[err];
}

const char *mk_cmd_name(mk_cmd cmd)
{
    if ((unsigned)cmd >= MK_CMD__COUNT)
        return "";
    return cmd_names[cmd];
}

bool mk_cmd_is_storage(mk_cmd cmd)
{
    switch (cmd) {
    case MK_CMD_SET:
    case MK_CMD_ADD:
    case MK_CMD_REPLACE:
    case MK_CMD_APPEND:
    case MK_CMD_PREPEND:
    case MK_CMD_CAS:
        return true;
    default:
        return false;
    }
}

bool mk_next_key(mk_str *rest, mk_str *key)
{
    const char *p = rest->p;
    if (p == NULL)
        return false;
    const char *end = p + rest->n;
    while (p < end && *p == ' ')
        p++;
    if (p == end) {
        rest->p = end;
        rest->n = 0;
        return false;
    }
    /* only ' ' separates keys; memchr finds the end of the key */
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    const char *e = sp ? sp : end;
    key->p = p;
    key->n = (size_t)(e - p);
    rest->p = e;
    rest->n = (size_t)(end - e);
    return true;
}

/* ---- the parser ---- */

/* memcached keeps buffering a line without '\n' only if it starts (after <= 100 spaces) with "get " or "gets ". */
static bool is_multiget_prefix(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && buf[i] == ' ')
        i++;
    if (i > 100)
        return false;
    buf += i;
    len -= i;
    return (len >= 4 && memcmp(buf, "get ", 4) == 0) || (len >= 5 && memcmp(buf, "gets ", 5) == 0);
}

static void set_err(mk_request *req, mk_perr e)
{
    req->err = e;
    req->action = MK_PA_NONE;
}

/* set_noreply_maybe(): "noreply" must be exactly the last token. */
static bool last_is_noreply(const mk_tok *t, size_t nt)
{
    return mk_tok_is(&t[nt - 2], "noreply");
}

/* "<cmd> <u32> [noreply]" (verbosity, cache_memlimit); bad_num is memcached's reply to a non-number. */
static void parse_u32_arg(mk_request *req, mk_cmd cmd, const mk_tok *t, size_t nt, mk_perr bad_num)
{
    req->cmd = cmd;
    if (nt != 3 && nt != 4) {
        set_err(req, MK_PERR_ERROR);
        return;
    }
    req->noreply = last_is_noreply(t, nt);
    uint32_t v;
    if (!mk_num_u32(&t[1], &v)) {
        set_err(req, bad_num);
        return;
    }
    req->arg = v;
    req->has_arg = true;
}

static void parse_get(mk_request *req, mk_cmd cmd, const mk_tok *t, size_t nt, const char *line_end)
{
    size_t first = 1;
    req->cmd = cmd;
    if (cmd == MK_CMD_GAT || cmd == MK_CMD_GATS) {
        int32_t e;
        if (!mk_num_i32(&t[1], &e)) {
            set_err(req, MK_PERR_BAD_EXPTIME);
            return;
        }
        req->exptime = e;
        first = 2;
    }
    /* keys: every space-separated token from t[first] on (re-tokenized passes split the same way) */
    const char *kp = (first < nt - 1) ? t[first].p : (t[nt - 1].p ? t[nt - 1].p : line_end);
    req->keys.p = kp;
    req->keys.n = (size_t)(line_end - kp);
    /* trim trailing spaces */
    while (req->keys.n > 0 && req->keys.p[req->keys.n - 1] == ' ')
        req->keys.n--;
    /* key lengths: the tokens already measured the first ones; only keys past them are split again */
    bool have_first = false;
    for (size_t i = first; i < nt - 1; i++) {
        if (!have_first) {
            req->key = (mk_str){t[i].p, t[i].n};
            have_first = true;
        }
        if (t[i].n > MK_KEY_MAX) {
            /* memcached drops every VALUE already built and sends only this line */
            set_err(req, MK_PERR_BAD_FORMAT);
            return;
        }
    }
    const char *keys_end = req->keys.p + req->keys.n;
    if (t[nt - 1].p == NULL || t[nt - 1].p >= keys_end)
        return;
    mk_str rest = {t[nt - 1].p, (size_t)(keys_end - t[nt - 1].p)}, k;
    while (mk_next_key(&rest, &k)) {
        if (!have_first) {
            req->key = k;
            have_first = true;
        }
        if (k.n > MK_KEY_MAX) {
            set_err(req, MK_PERR_BAD_FORMAT);
            return;
        }
    }
}

static void parse_storage(mk_request *req, mk_cmd cmd, const mk_tok *t, size_t nt)
{
    bool is_cas = cmd == MK_CMD_CAS;
    req->cmd = cmd;
    if (nt != (is_cas ? 7u : 6u) && nt != (is_cas ? 8u : 7u)) {
        set_err(req, MK_PERR_ERROR);
        return;
    }
    req->noreply = last_is_noreply(t, nt);
    req->key.p = t[1].p;
    req->key.n = t[1].n;
    if (t[1].n > MK_KEY_MAX) {
        set_err(req, MK_PERR_BAD_FORMAT);
        return;
    }
    uint32_t flags;
    int32_t exptime, vlen;
    if (!mk_num_u32(&t[2], &flags) || !mk_num_i32(&t[3], &exptime) || !mk_num_i32(&t[4], &vlen)) {
        set_err(req, MK_PERR_BAD_FORMAT);
        return;
    }
    req->flags = flags;
    req->exptime = exptime;
    if (is_cas && !mk_num_u64(&t[5], &req->cas)) {
        set_err(req, MK_PERR_BAD_FORMAT);
        return;
    }
    if (vlen < 0 || vlen > INT32_MAX - 2) {
        set_err(req, MK_PERR_BAD_FORMAT);
        return;
    }
    req->vlen = (uint64_t)vlen;
}

static void parse_line(mk_request *req, const char *line, size_t n)
{
    mk_tok t[MK_MAX_TOKENS];
    size_t nt = mk_tokenize(line, n, t);
    const char *line_end = line + n;

    if (nt < 2 || t[0].n < 2) {
        set_err(req, MK_PERR_ERROR);
        return;
    }
    const mk_tok *c = &t[0];
    char first = c->p[0];

    if (first == 'm' && c->n == 2) {
        /* meta commands: mk_parse_meta() reads the rest of the line */
        static const mk_cmd meta[26] = {['g' - 'a'] = MK_CMD_MG, ['s' - 'a'] = MK_CMD_MS, ['d' - 'a'] = MK_CMD_MD,
                                        ['a' - 'a'] = MK_CMD_MA, ['n' - 'a'] = MK_CMD_MN, ['e' - 'a'] = MK_CMD_ME};
        char second = c->p[1];
        req->cmd = second >= 'a' && second <= 'z' ? meta[second - 'a'] : MK_CMD_NONE;
        if (req->cmd == MK_CMD_NONE)
            set_err(req, MK_PERR_ERROR);
        return;
    }
    if (first == 'b' && mk_tok_is(c, "bget"))
        first = 'g'; /* memcached's legacy name for get */
    switch (first) {
    case 'g': {
        mk_cmd cmd = MK_CMD_NONE;
        if (mk_tok_is(c, "get") || mk_tok_is(c, "bget"))
            cmd = MK_CMD_GET;
        else if (mk_tok_is(c, "gets"))
            cmd = MK_CMD_GETS;
        else if (mk_tok_is(c, "gat"))
            cmd = MK_CMD_GAT;
        else if (mk_tok_is(c, "gats"))
            cmd = MK_CMD_GATS;
        req->cmd = cmd;
        if (nt < 3 || cmd == MK_CMD_NONE) {
            set_err(req, MK_PERR_ERROR);
            return;
        }
        parse_get(req, cmd, t, nt, line_end);
        return;
    }
    case 's':
        if (mk_tok_is(c, "set")) {
            parse_storage(req, MK_CMD_SET, t, nt);
        } else if (mk_tok_is(c, "stats")) {
            req->cmd = MK_CMD_STATS;
            goto rest_args;
        } else if (mk_tok_is(c, "shutdown")) {
            req->cmd = MK_CMD_SHUTDOWN;
            goto rest_args;
        } else if (mk_tok_is(c, "slabs")) {
            req->cmd = MK_CMD_SLABS;
            goto rest_args;
        } else {
            set_err(req, MK_PERR_ERROR);
        }
        return;
    case 'a':
        if (mk_tok_is(c, "add"))
            parse_storage(req, MK_CMD_ADD, t, nt);
        else if (mk_tok_is(c, "append"))
            parse_storage(req, MK_CMD_APPEND, t, nt);
        else
            set_err(req, MK_PERR_ERROR);
        return;
    case 'c':
        if (mk_tok_is(c, "cas")) {
            parse_storage(req, MK_CMD_CAS, t, nt);
        } else if (mk_tok_is(c, "cache_memlimit")) {
            parse_u32_arg(req, MK_CMD_CACHE_MEMLIMIT, t, nt, MK_PERR_ERROR);
        } else {
            set_err(req, MK_PERR_ERROR);
        }
        return;
    case 'i':
    case 'd':
        if (mk_tok_is(c, "incr") || mk_tok_is(c, "decr")) {
            req->cmd = mk_tok_is(c, "incr") ? MK_CMD_INCR : MK_CMD_DECR;
            if (nt != 4 && nt != 5) {
                set_err(req, MK_PERR_ERROR);
                return;
            }
            req->noreply = last_is_noreply(t, nt);
            req->key.p = t[1].p;
            req->key.n = t[1].n;
            if (t[1].n > MK_KEY_MAX) {
                set_err(req, MK_PERR_BAD_FORMAT);
                return;
            }
            if (!mk_num_u64(&t[2], &req->delta))
                set_err(req, MK_PERR_BAD_DELTA);
        } else if (mk_tok_is(c, "delete")) {
            req->cmd = MK_CMD_DELETE;
            if (nt < 3 || nt > 5) {
                set_err(req, MK_PERR_ERROR);
                return;
            }
            req->key.p = t[1].p;
            req->key.n = t[1].n;
            if (nt > 3) {
                bool zero = mk_tok_is(&t[2], "0");
                req->noreply = last_is_noreply(t, nt);
                bool ok = (nt == 4 && (zero || req->noreply)) || (nt == 5 && zero && req->noreply);
                if (!ok) {
                    set_err(req, MK_PERR_DELETE_USAGE);
                    return;
                }
            }
            if (t[1].n > MK_KEY_MAX)
                set_err(req, MK_PERR_BAD_FORMAT);
        } else {
            set_err(req, MK_PERR_ERROR);
        }
        return;
    case 't':
        if (mk_tok_is(c, "touch")) {
            req->cmd = MK_CMD_TOUCH;
            if (nt != 4 && nt != 5) {
                set_err(req, MK_PERR_ERROR);
                return;
            }
            req->noreply = last_is_noreply(t, nt);
            req->key.p = t[1].p;
            req->key.n = t[1].n;
            if (t[1].n > MK_KEY_MAX) {
                set_err(req, MK_PERR_BAD_FORMAT);
                return;
            }
            int32_t e;
            if (!mk_num_i32(&t[2], &e)) {
                set_err(req, MK_PERR_BAD_EXPTIME);
                return;
            }
            req->exptime = e;
        } else {
            set_err(req, MK_PERR_ERROR);
        }
        return;
    default:
        break;
    }

    if (mk_tok_is(c, "flush_all")) {
        req->cmd = MK_CMD_FLUSH_ALL;
        if (nt < 2 || nt > 4) {
            set_err(req, MK_PERR_ERROR);
            return;
        }
        req->noreply = last_is_noreply(t, nt);
        if (nt != (req->noreply ? 3u : 2u)) {
            int32_t d;
            if (!mk_num_i32(&t[1], &d)) {
                set_err(req, MK_PERR_BAD_EXPTIME);
                return;
            }
            req->arg = d;
            req->has_arg = true;
        }
        return;
    }
    if (mk_tok_is(c, "replace")) {
        parse_storage(req, MK_CMD_REPLACE, t, nt);
        return;
    }
    if (mk_tok_is(c, "prepend")) {
        parse_storage(req, MK_CMD_PREPEND, t, nt);
        return;
    }
    if (mk_tok_is(c, "version")) {
        req->cmd = MK_CMD_VERSION;
        return;
    }
    if (mk_tok_is(c, "quit")) {
        req->cmd = MK_CMD_QUIT;
        return;
    }
    if (mk_tok_is(c, "verbosity")) {
        parse_u32_arg(req, MK_CMD_VERBOSITY, t, nt, MK_PERR_BAD_FORMAT);
        return;
    }
    if (mk_tok_is(c, "refresh_certs")) { /* (any arguments; a last "noreply" silences it) */
        req->cmd = MK_CMD_REFRESH_CERTS;
        req->noreply = last_is_noreply(t, nt);
        return;
    }
    if (mk_tok_is(c, "lru_crawler") || mk_tok_is(c, "watch")) {
        req->cmd = mk_tok_is(c, "watch") ? MK_CMD_WATCH : MK_CMD_LRU_CRAWLER;
        goto rest_args;
    }
    /* commands memcached knows that we do not serve: ERROR, but never the HTTP close below */
    if (mk_tok_is(c, "lru") || mk_tok_is(c, "extstore")) {
        set_err(req, MK_PERR_ERROR);
        return;
    }
    /* memcached closes on what looks like an HTTP request line */
    if (t[nt - 2].p != NULL && t[nt - 2].n >= 5 && memcmp(t[nt - 2].p, "HTTP/", 5) == 0) {
        req->action = MK_PA_CLOSE; /* mk_parse_request turns this into -1 */
        return;
    }
    set_err(req, MK_PERR_ERROR);
    return;

rest_args:
    /* everything after the command name, trimmed of spaces */
    {
        const char *p = c->p + c->n;
        size_t m = (size_t)(line_end - p);
        while (m > 0 && *p == ' ') {
            p++;
            m--;
        }
        while (m > 0 && p[m - 1] == ' ')
            m--;
        req->args.p = p;
        req->args.n = m;
    }
}

ssize_t mk_parse_request(const char *buf, size_t len, mk_request *req)
{
    memset(req, 0, sizeof *req);
    if (len == 0)
        return 0;
    const char *nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        bool get = is_multiget_prefix(buf, len);
        if (get ? len > MK_GET_LINE_MAX : len >= MK_READ_BUF)
            return -1;
        return len > MK_LINE_MAX && !get ? -2 : 0;
    }
    size_t nlpos = (size_t)(nl - buf);
    if (nlpos >= MK_READ_BUF && (!is_multiget_prefix(buf, nlpos) || nlpos >= MK_GET_LINE_MAX))
        return -1;

    size_t end = nlpos;
    if (nlpos > 1 && buf[nlpos - 1] == '\r')
        end = nlpos - 1;
    const char *z = memchr(buf, '\0', end);
    if (z != NULL)
        end = (size_t)(z - buf);

    req->line = (mk_str){buf, end};
    parse_line(req, buf, end);
    if (req->err == MK_PERR_NONE && req->action == MK_PA_CLOSE) {
        memset(req, 0, sizeof *req);
        return -1;
    }
    return (ssize_t)(nlpos + 1);
}
