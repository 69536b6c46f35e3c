/* python/memkit/memkitpy.h — shared declarations of the memkit CPython extension: module state, the Client object, codec. */
#ifndef MEMKITPY_H
#define MEMKITPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "memkit.h"

/*
 *   _memkit.c   module: multi-phase init, state, the error table (MK_E* -> exception),
 *               the wait callback (gevent mode), fork generation
 *   client.c    the Client type: keys, single-key calls, multi-key calls, op driving
 *   codec.c     values <-> (bytes, flags): python-memcached's flags when writing,
 *               python-memcached / pylibmc / pymemcache flags when reading; zlib
 */

#define MKPY_PYERR (-1000)      /* "a Python exception is set" in places that return MK_E* codes */

/* Key exceptions (python-memcached's Client.MemcachedKey*Error family). */
enum { KE_KEY, KE_LENGTH, KE_CHARACTER, KE_NONE, KE_TYPE, KE_ENCODING, KE_COUNT };

typedef struct mkpy_state {
    PyTypeObject *client_type;
    PyObject *error;            /* memkit.Error: base of the libmemkit errors */
    PyObject *errors[32];       /* -code -> exception class (see the table in _memkit.c) */
    PyObject *key_errors[KE_COUNT];
    PyObject *pickle_dumps, *pickle_loads;
    PyObject *wait_cb;          /* NULL: threads (GIL released, poll); else callable(fd, write, timeout) */
    PyObject *lock_factory;     /* green mode: callable(n) -> semaphore with acquire()/release() */
    int auto_green;             /* a call turns green mode on once gevent has patched socket (make_blocking: 0) */
    PyObject *monkey_name;      /* "gevent.monkey", interned: looked up in sys.modules by every blocking call */
    PyObject *loop_hook;        /* NULL, or callable() -> the current event loop's driver or None (evloop.c) */
    PyObject *s_waiter, *s_wait, *s_submitted, *s_aio;   /* the drivers' names on the pipelined path, interned */
    PyTypeObject *evpipe_type;
} mkpy_state;

typedef struct ClientObject {
    PyObject_HEAD
    PyObject *module;           /* strong ref: keeps st alive */
    mkpy_state *st;
    mk_client *c;
    mk_options opt;
    unsigned long fork_gen;
    size_t *buckets;            /* modula placement of (hash, key) tuples: bucket -> server */
    size_t nbuckets;
    /* settings, exposed as attributes */
    int debug, cache_cas, check_keys, raise_errors, pickle_protocol;
    Py_ssize_t min_compress_len, max_value_len;
    PyObject *serializer, *deserializer;
    PyObject *sems;             /* green mode: list of per-server semaphores (or NULL) */
    PyObject *sems_factory;     /* the lock_factory they came from */
    PyObject *pipes;            /* event-loop mode: {driver: [EvPipe or None per server]} (or NULL) */
    int loop_pipeline;          /* event-loop calls share a connection per loop and server: 0 never (pipeline=False),
                                   1 asyncio's (None, the default), 2 asyncio's and gevent's (True) */
} ClientObject;

extern PyModuleDef mkpy_module;
extern PyType_Spec mkpy_client_spec;
extern unsigned long mkpy_fork_gen;

/* Before a call in blocking mode: if gevent has patched socket since memkit was imported (a Client made
 * before monkey.patch_all()), turn cooperative mode on (memkit.make_green()). 0, or -1 with an exception. */
int mkpy_auto_green(mkpy_state *st);

/* Raise the exception of libmemkit error code rc, with a context string. */
PyObject *mkpy_raise(mkpy_state *st, int rc, const char *what);

/* evloop.c: event-loop mode */
extern PyType_Spec mkpy_evpipe_spec;
/* The current event loop's driver (new reference), or NULL: none (threads), or an exception. */
PyObject *mkpy_loop_driver(ClientObject *self);
/* An op in an event loop's pipe: its EvPipe and its waiter (both NULL when not in one). */
typedef struct mkpy_piped {
    PyObject *ep, *w;
} mkpy_piped;
/* Queue op in the driver's pipe to its server: 0; MK_EAGAIN: not pipelined (run it as usual); MKPY_PYERR. */
int mkpy_pipe_add(ClientObject *self, mk_op *op, PyObject *drv, mkpy_piped *h);
/* Wait for a queued op: its final code, or MKPY_PYERR (the caller was killed or cancelled: the op left the pipe). */
int mkpy_pipe_wait(ClientObject *self, PyObject *drv, mk_op *op, mkpy_piped *h);
/* Take a queued op back without waiting (forget: its request still goes out, the reply is dropped). */
void mkpy_pipe_leave(mk_op *op, mkpy_piped *h, int forget);
/* After a fork (mkpy_fork_gen moved): the client forgets the parent's connections (and its pipes'). */
void mkpy_check_fork(ClientObject *self);
/* A forked child: the pipes drop the parent's connections; their calls in flight go again. */
void mkpy_pipes_after_fork(ClientObject *self);
/* Free every pipe (the client is closing or being replaced). */
void mkpy_pipes_close(ClientObject *self);

/* codec.c */
typedef struct mkpy_val {
    const char *p;
    Py_ssize_t n;
    uint32_t flags;
    PyObject *keep;             /* owns p when set */
    char *heap;                 /* owns p when set (compressed) */
    char small[32];
} mkpy_val;

/* Encode v. Returns 0, 1 ("too large: do not store", as python-memcached), or -1 (exception). */
int mkpy_encode(ClientObject *self, PyObject *key, PyObject *v, Py_ssize_t min_compress, mkpy_val *out);
void mkpy_val_release(mkpy_val *v);
/* Decode a stored value (p[n] may be anything). New reference, or NULL with an exception. */
PyObject *mkpy_decode(ClientObject *self, PyObject *key, const char *p, size_t n, uint32_t flags);

#endif /* MEMKITPY_H */
