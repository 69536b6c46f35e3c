/* server/proto_auth.c — memcached's ASCII authentication (-Y): an unauthenticated connection may only send "set ... <n>" with "user password" as its data. */
#include <stdio.h>

#include "memkit/proto.h"
#include "server/ascii.h"
#include "server/authfile.h"
#include "server/protocol.h"
#include "server/server.h"

/* Check the credentials against the server's users (the table a SIGHUP may be swapping). */
static bool check(mk_server *srv, mk_str user, mk_str pass)
{
    pthread_rwlock_rdlock(&srv->auth_lock);
    bool ok = srv->auth && mk_authfile_check(srv->auth, user.p, user.n, pass.p, pass.n);
    pthread_rwlock_unlock(&srv->auth_lock);
    return ok;
}

/*
 * memcached 1.6.18's try_read_command_asciiauth, reply for reply: any line but
 * an authentication set gets "CLIENT_ERROR unauthenticated" (the connection
 * stays); the set's data block must end in "\r\n" and hold two tokens; right
 * credentials get "STORED" and the connection speaks the ASCII protocols from
 * then on. Unlike memcached, a data block over MK_AUTH_TOKEN_MAX bytes is
 * refused and the connection closed instead of being waited for.
 */
static ssize_t auth_execute(mk_conn *c, const char *in, size_t len)
{
    mk_ascii_state *st = mk_ascii(c);
    mk_thread_stats *ts = &c->worker->stats;
    if (st->auth_wait == 0) {
        mk_auth_line l;
        ssize_t r = mk_parse_auth_line(in, len, &l);
        if (r <= 0)
            return r;
        if (!l.is_set) {
            mk_conn_reply(c, "CLIENT_ERROR unauthenticated");
        } else if (l.size > MK_AUTH_TOKEN_MAX) {
            MK_STAT_INC(ts, auth_cmds);
            MK_STAT_INC(ts, auth_errors);
            mk_conn_reply(c, "CLIENT_ERROR bad authentication token format");
            mk_conn_set_state(c, MK_CONN_CLOSING);
        } else {
            st->auth_wait = l.size + 2;
        }
        return r;
    }
    if (len < st->auth_wait)
        return 0;
    size_t n = (size_t)st->auth_wait;
    st->auth_wait = 0;
    mk_str user, pass;
    if (in[n - 2] != '\r' || in[n - 1] != '\n') {
        mk_conn_reply(c, "CLIENT_ERROR bad command line termination");
    } else if (!mk_parse_auth_token(in, n - 2, &user, &pass)) {
        mk_conn_reply(c, "CLIENT_ERROR bad authentication token format");
    } else {
        MK_STAT_INC(ts, auth_cmds);
        if (check(c->worker->srv, user, pass)) {
            mk_conn_reply(c, "STORED");
            c->proto = &mk_protocol_ascii;
        } else {
            MK_STAT_INC(ts, auth_errors);
            mk_conn_reply(c, "CLIENT_ERROR authentication failure");
        }
    }
    return (ssize_t)n;
}

static void auth_complete_nread(mk_conn *c, mk_item *it, bool tail_ok)
{
    mk_protocol_ascii.complete_nread(c, it, tail_ok); /* (never: no data block is read into an item here) */
}

const mk_protocol mk_protocol_ascii_auth = {
    .name = "ascii-auth",
    .execute = auth_execute,
    .complete_nread = auth_complete_nread,
    .state_size = sizeof(mk_ascii_state),
};
