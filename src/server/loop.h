/* server/loop.h — a tiny epoll event loop: watch file descriptors, call back on readiness. */
#ifndef MK_SERVER_LOOP_H
#define MK_SERVER_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

/*
 * A loop belongs to one thread; none of these functions may be called on a loop
 * from another thread. A mk_watch is embedded in the caller's own struct (a
 * connection, a listener), so the loop allocates nothing per descriptor.
 */
typedef struct mk_loop mk_loop;
typedef struct mk_watch mk_watch;
typedef void (*mk_watch_cb)(mk_watch *w, uint32_t events);

struct mk_watch {
    int fd;
    uint32_t events;    /* what the loop is waiting for now (EPOLLIN, EPOLLOUT) */
    mk_watch_cb cb;
};

/* Create a loop; NULL on failure (errno set). */
mk_loop *mk_loop_create(void);

/* Destroy a loop (watched descriptors are not closed). NULL is a no-op. */
void mk_loop_destroy(mk_loop *l);

/* Start watching w->fd for events (level-triggered). 0, or -1 with errno. */
int mk_loop_add(mk_loop *l, mk_watch *w, uint32_t events);

/* Change the events watched; a no-op when they are unchanged. 0, or -1 with errno. */
int mk_loop_mod(mk_loop *l, mk_watch *w, uint32_t events);

/* Stop watching (call before closing the descriptor). */
void mk_loop_del(mk_loop *l, mk_watch *w);

/*
 * Wait up to timeout_ms (-1 forever, 0 poll) and call the callback of every ready
 * watch. Returns the number of callbacks made, or -1 with errno (EINTR is 0).
 */
int mk_loop_run_once(mk_loop *l, int timeout_ms);

#endif
