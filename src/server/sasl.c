/* server/sasl.c — SASL through Debian's Cyrus libsasl2, configured as memcached configures it; plus memcached's plain password file. */
#include "server/sasl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sasl/sasl.h>

struct mk_sasl_conn {
    sasl_conn_t *conn;
    bool started;      /* a start returned OK or CONTINUE: a step may follow */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_verbose;
static const char *pwdb;             /* $MEMCACHED_SASL_PWDB, or NULL */
static char conf_dir[4096];
static char hostname[256];

#define PWDB_LINE_MAX 256

/* The password file's line for user (up to its first ':'); true if found, with the password's check in *ok. */
static bool pwdb_lookup(const char *user, size_t nuser, const char *pass, unsigned passlen, bool *ok)
{
    FILE *f = fopen(pwdb, "r");
    if (!f)
        return false;
    char line[PWDB_LINE_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, user, nuser) != 0 || line[nuser] != ':')
            continue;
        found = true;
        const char *p = line + nuser + 1;
        *ok = false;
        if (strlen(p) >= passlen && memcmp(p, pass, passlen) == 0) {
            char end = p[passlen];
            *ok = end == ':' || end == '\n' || end == '\r' || end == '\0';
        }
    }
    fclose(f);
    return found;
}

/*
 * memcached's password file: lines "user:password" (anything after a further
 * ':' is ignored); the first line for the user decides. libsasl2 hands us the
 * user with its realm ("alice@host"): a line for exactly that decides, as in
 * memcached; when there is none and the realm is this host's name, the line
 * for the bare name ("alice") does, which is what people write.
 */
static int pwdb_checkpass(sasl_conn_t *conn, void *ctx, const char *user, const char *pass, unsigned passlen,
                          struct propctx *props)
{
    (void)conn, (void)ctx, (void)props;
    size_t nuser = strlen(user);
    if (nuser + passlen > PWDB_LINE_MAX - 4)
        return SASL_NOAUTHZ;
    bool ok = false;
    if (pwdb_lookup(user, nuser, pass, passlen, &ok))
        return ok ? SASL_OK : SASL_NOAUTHZ;
    const char *at = strrchr(user, '@');
    if (at && hostname[0] && strcmp(at + 1, hostname) == 0 && pwdb_lookup(user, (size_t)(at - user), pass, passlen, &ok))
        return ok ? SASL_OK : SASL_NOAUTHZ;
    return SASL_NOAUTHZ;
}

static int sasl_log_cb(void *ctx, int level, const char *message)
{
    (void)ctx;
    int need = level <= SASL_LOG_ERR ? 0 : level <= SASL_LOG_WARN ? 1 : 2;
    if (log_verbose >= need)
        fprintf(stderr, "SASL (severity %d): %s\n", level, message);
    return SASL_OK;
}

/* The directory holding memcached.conf: $SASL_CONF_PATH, or where /etc/sasl(2)/memcached.conf is. */
static bool find_conf(void)
{
    const char *env = getenv("SASL_CONF_PATH");
    if (env) {
        snprintf(conf_dir, sizeof conf_dir, "%s", env);
        return true;
    }
    static const char *const dirs[] = {"/etc/sasl", "/etc/sasl2"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "%s/memcached.conf", dirs[i]);
        if (stat(path, &st) != 0)
            continue;
        /* a directory named memcached.conf holds the file; a file lives in its directory */
        snprintf(conf_dir, sizeof conf_dir, "%s", S_ISDIR(st.st_mode) ? path : dirs[i]);
        return true;
    }
    return false;
}

static int getconfpath_cb(void *ctx, const char **path)
{
    (void)ctx;
    *path = conf_dir;
    return SASL_OK;
}

/* libsasl2 stores every callback as int (*)(void); the cast through void (*)(void) is C's generic one */
typedef int (*cb_fn)(void);
#define CB(f) ((cb_fn)(void (*)(void))(f))
static sasl_callback_t callbacks[] = {
    {SASL_CB_SERVER_USERDB_CHECKPASS, CB(pwdb_checkpass), NULL},
    {SASL_CB_LOG, CB(sasl_log_cb), NULL},
    {SASL_CB_GETCONFPATH, CB(getconfpath_cb), NULL},
    {SASL_CB_LIST_END, NULL, NULL},
};

bool mk_sasl_init(int verbose, char *err, size_t errlen)
{
    log_verbose = verbose;
    pwdb = getenv("MEMCACHED_SASL_PWDB");
    if (!find_conf()) {
        snprintf(err, errlen, "SASL: no configuration: set SASL_CONF_PATH to the directory of a memcached.conf, "
                              "or create /etc/sasl2/memcached.conf");
        return false;
    }
    sasl_callback_t *cbs = callbacks;
    if (!pwdb)
        cbs++; /* no password file: only libsasl2's own databases */
    if (gethostname(hostname, sizeof hostname - 1) != 0)
        hostname[0] = '\0';
    int rc = sasl_server_init(cbs, "memcached");
    if (rc != SASL_OK) {
        snprintf(err, errlen, "SASL: libsasl2 did not start: %s", sasl_errstring(rc, NULL, NULL));
        return false;
    }
    if (verbose)
        fprintf(stderr, "Initialized SASL (configuration in %s%s).\n", conf_dir,
                pwdb ? ", password file $MEMCACHED_SASL_PWDB" : "");
    return true;
}

mk_sasl_conn *mk_sasl_conn_new(void)
{
    mk_sasl_conn *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_lock(&lock);
    if (sasl_server_new("memcached", NULL, hostname[0] ? hostname : NULL, NULL, NULL, NULL, 0, &s->conn) != SASL_OK)
        s->conn = NULL;
    pthread_mutex_unlock(&lock);
    return s;
}

void mk_sasl_conn_free(mk_sasl_conn *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&lock);
    if (s->conn)
        sasl_dispose(&s->conn);
    pthread_mutex_unlock(&lock);
    free(s);
}

bool mk_sasl_list_mechs(mk_sasl_conn *s, const char **out, unsigned *len)
{
    if (!s || !s->conn)
        return false;
    pthread_mutex_lock(&lock);
    int rc = sasl_listmech(s->conn, NULL, "", " ", "", out, len, NULL);
    pthread_mutex_unlock(&lock);
    return rc == SASL_OK;
}

mk_sasl_rc mk_sasl_auth(mk_sasl_conn *s, bool step, const char *mech, const char *data, unsigned len,
                        const char **out, unsigned *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!s || !s->conn || (step && !s->started))
        return MK_SASL_FAIL;
    pthread_mutex_lock(&lock);
    int rc = step ? sasl_server_step(s->conn, len ? data : NULL, len, out, outlen)
                  : sasl_server_start(s->conn, mech, len ? data : NULL, len, out, outlen);
    pthread_mutex_unlock(&lock);
    if (!step)
        s->started = rc == SASL_OK || rc == SASL_CONTINUE;
    return rc == SASL_OK ? MK_SASL_OK : rc == SASL_CONTINUE ? MK_SASL_CONTINUE : MK_SASL_FAIL;
}
