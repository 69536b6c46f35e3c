/* server/authfile.h — memcached's -Y authentication file: "user:password" lines, loaded, reloaded on SIGHUP, checked in constant time. */
#ifndef MK_SERVER_AUTHFILE_H
#define MK_SERVER_AUTHFILE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The users of an authentication file. Each line is "user:password": the user
 * is what comes before the first ':', the password everything after it up to
 * the end of the line (a final "\r" is dropped; a password may hold ':' and
 * spaces, though a client can only send one without spaces). Empty lines are
 * skipped; any other line without a ':', or with an empty user, makes the whole
 * file malformed. Any number of users (memcached reads the first 8).
 */
typedef struct mk_authfile mk_authfile;

/* Load path; NULL with a one-line reason in err (naming the file, and the line when malformed). */
mk_authfile *mk_authfile_load(const char *path, char *err, size_t errlen);

/* Free a table; NULL is a no-op. */
void mk_authfile_free(mk_authfile *a);

/* How many users a table holds. */
size_t mk_authfile_users(const mk_authfile *a);

/*
 * true if user/pass is one of the table's pairs. The time it takes does not
 * depend on which bytes match: every entry is compared, each as a SHA-256
 * digest of the length-prefixed pair with nettle's memeql_sec.
 */
bool mk_authfile_check(const mk_authfile *a, const char *user, size_t nuser, const char *pass, size_t npass);

#endif
