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
#include <sys/uio.h>
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

/*
 * -d: the shell that started us gets its answer only once the daemon is ready (its pid file
 * written) or has failed, with the failure's message and exit status 1, as in the foreground.
 * Returns the pipe the daemon reports on (daemon_ready), or -1 after a failure.
 */
static int daemonize(bool keep_stderr)
{
    int p[2];
    if (pipe(p) != 0) {
        fprintf(stderr, "memkitd: pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "memkitd: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        char msg[1024];
        size_t got = 0;
        for (ssize_t n; got < sizeof msg - 1 && (n = read(p[0], msg + got, sizeof msg - 1 - got)) != 0;)
            if (n > 0)
                got += (size_t)n;
            else if (errno != EINTR)
                break;
        msg[got] = '\0';
        if (got > 0 && msg[0] == '0')
            _exit(0);
        fprintf(stderr, "%s", got > 1 ? msg + 1 : "memkitd: the daemon exited before it was ready\n");
        _exit(1);
    }
    close(p[0]);
    if (setsid() < 0 || chdir("/") != 0) {
        close(p[1]);
        return -1;
    }
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        if (!keep_stderr)
            dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    return p[1];
}

/* Write the pid file whole or not at all (a temporary file renamed into place): a
 * reader that sees the file never sees it empty, even while we are still writing.
 * false with the one-line reason in err. */
static bool write_pidfile(const char *path, char *err, size_t errlen)
{
    char tmp[4160];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "memkitd: cannot write pid file %s: %s\n", path, strerror(errno));
        return false;
    }
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errlen, "memkitd: cannot write pid file %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

/* The daemon tells the shell waiting in daemonize: "0" ready, or "1" and the reason. */
static void daemon_ready(int fd, const char *err)
{
    if (fd < 0)
        return;
    char flag = err ? '1' : '0';
    struct iovec iov[2] = {{&flag, 1}, {(void *)(err ? err : ""), err ? strlen(err) : 0}};
    if (writev(fd, iov, 2) < 0) { /* (the shell is gone: nothing to tell) */
    }
    close(fd);
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
    int ready = -1;
    if (s.daemonize && (ready = daemonize(s.verbose > 0)) < 0) {
        mk_server_destroy(srv);
        return 1;
    }
    char perr[sizeof pidpath + 256];
    if (pidpath[0] && !write_pidfile(pidpath, perr, sizeof perr)) {
        if (ready < 0)
            fputs(perr, stderr);
        daemon_ready(ready, perr);
        mk_server_destroy(srv);
        return 1;
    }
    daemon_ready(ready, NULL);
    status = mk_server_run(srv);
    mk_server_destroy(srv);
    if (pidpath[0])
        unlink(pidpath);
    return status;
}
