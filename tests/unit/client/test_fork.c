/* tests/unit/client/test_fork.c — mk_client_after_fork: a forked child opens its own connection and leaves the parent's alone. */
#include "check.h"
#include "memkit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int lfd;
static atomic_int accepted;

/* Serve one connection: every request line gets "END\r\n" (a miss). */
static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n' && write(fd, "END\r\n", 5) != 5)
                break;
    close(fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        atomic_fetch_add(&accepted, 1);
        pthread_t t;
        pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static void test_child_gets_fresh_connection(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 16) == 0);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    pthread_t t;
    pthread_create(&t, NULL, acceptor, NULL);
    pthread_detach(t);

    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", ntohs(a.sin_port));
    mk_options o;
    mk_options_init(&o);
    o.pool_size = 1;
    o.checkout_timeout_ms = 300;
    mk_client *c;
    CHECK_EQ_I(mk_client_create(&c, spec, &o, NULL, 0), 0);
    mk_item it;
    CHECK_EQ_I(mk_get(c, "k", 1, &it), MK_ENOTFOUND);   /* one pooled connection now */
    CHECK_EQ_I(atomic_load(&accepted), 1);

    pid_t pid = fork();
    if (pid == 0) {
        mk_client_after_fork(c);
        int rc = mk_get(c, "k", 1, &it);
        rc |= mk_get(c, "k", 1, &it);       /* reuses the child's own connection */
        _exit(rc == MK_ENOTFOUND ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 100 && atomic_load(&accepted) < 2; i++)
        usleep(10000);
    CHECK_EQ_I(atomic_load(&accepted), 2);                /* the child connected once */
    CHECK_EQ_I(mk_get(c, "k", 1, &it), MK_ENOTFOUND);     /* the parent's connection still works */
    CHECK_EQ_I(atomic_load(&accepted), 2);
    mk_client_after_fork(NULL);
    mk_client_destroy(c);
}

int main(void)
{
    RUN(test_child_gets_fresh_connection);
    return check_summary("test_fork");
}
