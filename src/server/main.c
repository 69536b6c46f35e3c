/* server/main.c — memkitd's entry point: options, privileges, daemon mode, pidfile; then hands over to the server. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/options.h"
#include "server/sasl.h"
#include "server/server.h"

/* As root, switch to the -u user (memcached refuses to run as root without -u). */
static bool drop_privileges(const mk_settings *s)
{
    if (getuid() != 0 && geteuid() != 0)
        return true;
    if (!s->user || !*s->user) {
        fprintf(stderr, "memkitd: can't run as root without the -u switch\n");
        return false;
    }
    struct passwd *pw = getpwnam(s->user);
    if (!pw) {
        fprintf(stderr, "memkitd: can't find the user %s to switch to\n", s->user);
        return false;
    }
    if (pw->pw_uid == 0)
        return true; /* -u root: stay root, as the operator asked */
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "memkitd: failed to assume the identity of %s: %s\n", s->user, strerror(errno));
        return false;
    }
    if (s->coredumps)
        (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); /* (a changed identity turns dumps off; -r asked for them) */
    return true;
}

/* -r, as memcached does it: the core file limit as high as allowed; a limit of 0 left is an error. */
static bool raise_core_limit(void)
{
    struct rlimit cur, want = {RLIM_INFINITY, RLIM_INFINITY};
    if (getrlimit(RLIMIT_CORE, &cur) == 0 && setrlimit(RLIMIT_CORE, &want) != 0) {
        want.rlim_cur = want.rlim_max = cur.rlim_max;
        (void)setrlimit(RLIMIT_CORE, &want);
    }
    if (getrlimit(RLIMIT_CORE, &cur) != 0 || cur.rlim_cur == 0) {
        fprintf(stderr, "memkitd: -r: failed to ensure core file creation (the hard core limit is 0)\n");
        return false;
    }
    return true;
}

static bool daemonize(bool keep_stderr)
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "memkitd: fork: %s\n", strerror(errno));
        return false;
    }
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return false;
    if (chdir("/") != 0)
        return false;
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        if (!keep_stderr)
            dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    return true;
}

/* Write the pid file whole or not at all (a temporary file renamed into place): a
 * reader that sees the file never sees it empty, even while we are still writing. */
static bool write_pidfile(const char *path)
{
    char tmp[4160];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "memkitd: cannot write pid file %s: %s\n", path, strerror(errno));
        return false;
    }
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "memkitd: cannot write pid file %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    mk_settings s;
    int status;
    mk_settings_init(&s);
    if (mk_options_parse(&s, argc, argv, stdout, stderr, &status) == MK_OPT_EXIT)
        return status;
    char err[256];
    if (s.sasl && !mk_sasl_init(s.verbose, err, sizeof err)) {
        fprintf(stderr, "memkitd: %s\n", err);
        return 1;
    }
    if (s.coredumps && !raise_core_limit())
        return 1;
    if (!drop_privileges(&s))
        return 1;

    /* a relative pid file path is relative to where we were started, not to / */
    char pidpath[4096] = "";
    if (s.pidfile) {
        char cwd[2048];
        if (s.pidfile[0] != '/' && getcwd(cwd, sizeof(cwd)))
            snprintf(pidpath, sizeof(pidpath), "%s/%s", cwd, s.pidfile);
        else
            snprintf(pidpath, sizeof(pidpath), "%s", s.pidfile);
    }
    /* bind before daemonizing, so a taken port is reported to the shell that started us */
    mk_server *srv = mk_server_create(&s);
    if (!srv)
        return 1;
    if (s.daemonize && !daemonize(s.verbose > 0)) {
        mk_server_destroy(srv);
        return 1;
    }
    if (pidpath[0] && !write_pidfile(pidpath)) {
        mk_server_destroy(srv);
        return 1;
    }
    status = mk_server_run(srv);
    mk_server_destroy(srv);
    if (pidpath[0])
        unlink(pidpath);
    return status;
}
