/* server/loop.c — the epoll event loop behind loop.h. */
#include "server/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define MK_LOOP_BATCH 256

struct mk_loop {
    int epfd;
    struct epoll_event events[MK_LOOP_BATCH];
};

mk_loop *mk_loop_create(void)
{
    mk_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    return l;
}

void mk_loop_destroy(mk_loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    free(l);
}

int mk_loop_add(mk_loop *l, mk_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    w->events = events;
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev);
}

int mk_loop_mod(mk_loop *l, mk_watch *w, uint32_t events)
{
    if (w->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    w->events = events;
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

void mk_loop_del(mk_loop *l, mk_watch *w)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->events = 0;
}

int mk_loop_run_once(mk_loop *l, int timeout_ms)
{
    int n = epoll_wait(l->epfd, l->events, MK_LOOP_BATCH, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        mk_watch *w = l->events[i].data.ptr;
        w->cb(w, l->events[i].events);
    }
    return n;
}
