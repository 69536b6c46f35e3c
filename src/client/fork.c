/* client/fork.c — mk_client_after_fork: a forked child forgets the connections and locks it inherited. */
#include "client/client.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/*
 * In the child only one thread exists, so nothing here takes a lock: a lock
 * may have been held by a parent thread at fork time and would never be
 * released. Every lock is re-initialised, idle connections are closed (the
 * parent keeps its own copies of those sockets) and the pool counts restart at
 * zero. Connections that parent threads had checked out at fork time belong to
 * ops that do not exist in the child: their memory is abandoned (a few hundred
 * bytes each), never touched again.
 */
void mk_client_after_fork(mk_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        mk_server *s = &c->servers[i];
        pthread_mutex_init(&s->lock, NULL);
        s->wh = s->wt = NULL;
        for (size_t j = 0; j < s->nidle; j++)
            mk__conn_free(s->idle[j]);
        s->nidle = 0;
        s->total = 0;
        mk__pipe_after_fork(&s->pipe);
    }
    pthread_rwlock_init(&c->live_lock, NULL);
    mk__probe_after_fork(c);
}
