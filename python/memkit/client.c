/* python/memkit/client.c — memkit._memkit.Client: python-memcached's API over libmemkit; GIL released (or the wait callback called) around every network wait. */
#include "memkitpy.h"

#include <poll.h>
#include <stddef.h>
#include <structmember.h>

/*
 * Return values follow python-memcached (1.59):
 *   get/gets          value, or None (miss, bad server, timeout)
 *   set/add/...       True (STORED), False (answered otherwise), 0 (no server / network failure)
 *   delete            1 (DELETED or NOT_FOUND) or 0;  touch 1 (TOUCHED) or 0
 *   incr/decr         the new value, or None
 *   get_multi         {original key: value} for the hits
 *   set_multi         the list of keys not stored
 *   delete_multi      1, or 0 after a network failure
 * Errors are classified once, in outcome(): 0 ok, 1 answered "no", 2 failure.
 * With raise_errors=True a failure raises the exception of the error table instead.
 *
 * Driving an op: blocking mode releases the GIL for the pool checkout, the send
 * and the wait for the reply (mk_op_wait: a blocking recv, poll, or the pool's
 * condvar), and holds it for parsing the reply, so a get decodes its value
 * straight from libmemkit's receive buffer (value_cb) with the GIL held: no copy,
 * no malloc. Ops live in a buffer on the C
 * stack (mk_op_start_in): no allocation per call. Cooperative mode (a wait callback is set: gevent) steps the op and
 * calls wait_cb(fd, write, timeout) for every wait, with the GIL held; in that
 * mode single-key calls also hold a per-server semaphore made by lock_factory
 * (so greenlets queue in the hub instead of polling a full pool).
 */

enum { OUT_OK = 0, OUT_NO = 1, OUT_FAIL = 2 };

static int outcome(int rc)
{
    switch (rc) {
    case 0: return OUT_OK;
    case MK_ENOTFOUND: case MK_ENOTSTORED: case MK_EEXISTS:
    case MK_ECLIENTERR: case MK_ESERVERERR: case MK_EERROR: case MK_ENOTNUM:
        return OUT_NO;
    default: return OUT_FAIL;
    }
}

/* python-memcached's words for why it marked a server dead (the str() of the socket error it caught). */
static const char *dead_reason(int rc)
{
    switch (rc) {
    case MK_ECONNECT: return "connect: [Errno 111] Connection refused";
    case MK_ETIMEDOUT: return "timed out";
    case MK_EIO: return "connection closed in readline()";
    default: return mk_strerror(rc);
    }
}

/*
 * report: a failure on server `server` (-1: none was reached) goes to the Python
 * side (Client._failed: the `memkit` logger, python-memcached's debug line); a
 * dead server that was not tried (MK_ESERVERDEAD, MK_ENOSERVER) is not reported:
 * python-memcached is silent there too. failure: report, then raise
 * (raise_errors) -> -1, or swallow -> 0.
 */
static int report(ClientObject *self, int rc, const char *what, PyObject *key, int server)
{
    if (rc == MK_ESERVERDEAD || rc == MK_ENOSERVER)
        return 0;
    int dead = server >= 0 && self->c && !mk_server_alive(self->c, (size_t)server);
    PyObject *r = PyObject_CallMethod((PyObject *)self, "_failed", "sOiss", what, key ? key : Py_None, server,
                                      dead_reason(rc), dead ? "dead" : "");
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static int failure(ClientObject *self, int rc, const char *what, PyObject *key, int server)
{
    if (rc == MKPY_PYERR || report(self, rc, what, key, server) < 0)
        return -1;
    if (self->raise_errors) {
        mkpy_raise(self->st, rc, what);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- arguments */

/* Fast-call argument parsing: names[] NULL-terminated, the first nreq required. */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      const char *const *names, int nreq, PyObject **out)
{
    int n = 0;
    while (names[n])
        n++;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, n, nargs);
        return -1;
    }
    for (int i = 0; i < n; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        const char *kn = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
        if (kn == NULL)
            return -1;
        int i = 0;
        while (i < n && strcmp(names[i], kn) != 0)
            i++;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'", fname, kn);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, kn);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

static int arg_i64(PyObject *o, int64_t dflt, int64_t *out)
{
    if (o == NULL || o == Py_None) {
        *out = dflt;
        return 0;
    }
    PyObject *l = PyNumber_Long(o);   /* "%d" % time: floats truncate, as in python-memcached */
    if (l == NULL)
        return -1;
    long long v = PyLong_AsLongLong(l);
    Py_DECREF(l);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int arg_bool(PyObject *o)
{
    return o == NULL ? 0 : PyObject_IsTrue(o);
}

/* ------------------------------------------------------------------ keys */

typedef struct mkey {
    const char *p;
    Py_ssize_t n;
    PyObject *keep;             /* owns p when set */
    int server;                 /* -1, or the server chosen by a (hash, key) tuple */
    int tried;                  /* exec_op: the server the call went to last (-1: none) */
} mkey;

static int check_key(ClientObject *self, const char *p, Py_ssize_t n, Py_ssize_t extra)
{
    mkpy_state *st = self->st;
    if (n + extra > 250) {
        PyErr_SetString(st->key_errors[KE_LENGTH], "Key length is > 250");
        return -1;
    }
    if (mk_check_key(p, (size_t)n) != 0) { /* n <= 250 here: empty, or a space or control byte */
        PyObject *b = PyBytes_FromStringAndSize(p, n);
        if (b)
            PyErr_Format(st->key_errors[KE_CHARACTER], "Control/space characters not allowed (key=%R)", b);
        Py_XDECREF(b);
        return -1;
    }
    return 0;
}

/* The server a python-memcached (hash, key) tuple names (modula buckets), else -1. */
static int tuple_server(ClientObject *self, PyObject *h)
{
    if (self->nbuckets == 0)
        return -1;
    PyObject *l = PyNumber_Long(h);
    if (l == NULL)
        return -2;
    PyObject *nb = PyLong_FromSize_t(self->nbuckets);
    PyObject *m = nb ? PyNumber_Remainder(l, nb) : NULL;
    Py_DECREF(l);
    Py_XDECREF(nb);
    if (m == NULL)
        return -2;
    size_t b = PyLong_AsSize_t(m);
    Py_DECREF(m);
    return (int)self->buckets[b];
}

/* A single key (str, bytes or (hash, key)), checked as python-memcached checks it. */
static int get_key(ClientObject *self, PyObject *key, mkey *k)
{
    k->keep = NULL;
    k->server = -1;
    if (PyTuple_Check(key)) {
        if (PyTuple_GET_SIZE(key) < 2) {
            PyErr_SetString(PyExc_IndexError, "tuple index out of range");
            return -1;
        }
        k->server = tuple_server(self, PyTuple_GET_ITEM(key, 0));
        if (k->server == -2)
            return -1;
        key = PyTuple_GET_ITEM(key, 1);
    }
    if (key == Py_None) {
        PyErr_SetString(self->st->key_errors[KE_NONE], "Key is None");
        return -1;
    }
    if (PyUnicode_Check(key)) {
        k->p = PyUnicode_AsUTF8AndSize(key, &k->n);
        if (k->p == NULL)
            return -1;
    } else if (PyBytes_Check(key)) {
        k->p = PyBytes_AS_STRING(key);
        k->n = PyBytes_GET_SIZE(key);
    } else {
        PyErr_SetString(self->st->key_errors[KE_TYPE], "Key must be a binary string");
        return -1;
    }
    if (self->check_keys && check_key(self, k->p, k->n, 0) < 0)
        return -1;
    return 0;
}

/* A key of get_multi/set_multi/delete_multi: also ints etc. (through str()), with a prefix. */
static int get_multi_key(ClientObject *self, PyObject *orig, const char *pfx, Py_ssize_t npfx, mkey *k,
                         PyObject **orig_out)
{
    k->keep = NULL;
    k->server = -1;
    PyObject *key = orig;
    if (PyTuple_Check(orig)) {
        if (PyTuple_GET_SIZE(orig) != 2) {   /* python-memcached: serverhash, key = orig_key */
            if (PyTuple_GET_SIZE(orig) < 2)
                PyErr_Format(PyExc_ValueError, "not enough values to unpack (expected 2, got %zd)",
                             PyTuple_GET_SIZE(orig));
            else
                PyErr_SetString(PyExc_ValueError, "too many values to unpack (expected 2)");
            return -1;
        }
        k->server = tuple_server(self, PyTuple_GET_ITEM(orig, 0));
        if (k->server == -2)
            return -1;
        key = PyTuple_GET_ITEM(orig, 1);
    }
    *orig_out = key;
    if (key == Py_None) {
        PyErr_SetString(self->st->key_errors[KE_NONE], "Key is None");
        return -1;
    }
    /* hold: the object that owns p (a str's UTF-8 form is cached in the str: no copy for the common case) */
    PyObject *hold;
    const char *p;
    Py_ssize_t n;
    if (PyBytes_Check(key)) {
        hold = Py_NewRef(key);
        p = PyBytes_AS_STRING(key);
        n = PyBytes_GET_SIZE(key);
    } else {
        hold = PyUnicode_Check(key) ? Py_NewRef(key) : PyObject_Str(key);
        if (hold == NULL)
            return -1;
        p = PyUnicode_AsUTF8AndSize(hold, &n);
        if (p == NULL) {
            Py_DECREF(hold);
            return -1;
        }
    }
    if (self->check_keys && check_key(self, p, n, npfx) < 0) {
        Py_DECREF(hold);
        return -1;
    }
    if (npfx) {
        PyObject *full = PyBytes_FromStringAndSize(NULL, npfx + n);
        if (full == NULL) {
            Py_DECREF(hold);
            return -1;
        }
        memcpy(PyBytes_AS_STRING(full), pfx, (size_t)npfx);
        memcpy(PyBytes_AS_STRING(full) + npfx, p, (size_t)n);
        Py_SETREF(hold, full);
        p = PyBytes_AS_STRING(full);
        n = PyBytes_GET_SIZE(full);
    }
    k->keep = hold;
    k->p = p;
    k->n = n;
    return 0;
}

/* The key prefix of a multi call, as bytes (checked when not empty). */
static PyObject *get_prefix(ClientObject *self, PyObject *pfx)
{
    if (pfx == NULL || pfx == Py_None)
        return PyBytes_FromStringAndSize("", 0);
    PyObject *b = PyUnicode_Check(pfx) ? PyUnicode_AsUTF8String(pfx) : PyBytes_Check(pfx) ? Py_NewRef(pfx) : NULL;
    if (b == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(self->st->key_errors[KE_TYPE], "Key must be a binary string");
        return NULL;
    }
    if (PyBytes_GET_SIZE(b) && self->check_keys && check_key(self, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), 0) < 0) {
        Py_DECREF(b);
        return NULL;
    }
    return b;
}

/* ----------------------------------------------------------- driving ops */

/* After fork() the child forgets the parent's connections (libmemkit) and semaphores. */
/* After a fork: the child forgets the parent's connections, pipes and semaphores. */
void mkpy_check_fork(ClientObject *self)
{
    if (self->fork_gen != mkpy_fork_gen) {
        if (self->c)
            mk_client_after_fork(self->c);
        self->fork_gen = mkpy_fork_gen;
        Py_CLEAR(self->sems);
        Py_CLEAR(self->sems_factory);
        mkpy_pipes_after_fork(self);
    }
}

static inline void check_fork(ClientObject *self)
{
    if (self->fork_gen != mkpy_fork_gen)
        mkpy_check_fork(self);
}

static int green_wait(ClientObject *self, PyObject *drv, mk_op *op, double *backoff)
{
    int fd = mk_op_fd(op);
    double t;
    int write = 0;
    if (fd < 0) {   /* the pool is full: sleep a little, cooperatively */
        t = *backoff;
        *backoff = *backoff * 2 > 0.05 ? 0.05 : *backoff * 2;
    } else {
        t = mk_op_timeout_ms(op) / 1000.0 + 0.001;
        write = (mk_op_events(op) & POLLOUT) != 0;
    }
    /* (the loop's own waits: not the pipelined path) */
    PyObject *r = drv ? PyObject_CallMethod(drv, "wait_fd", "iid", fd, write, t)
                      : PyObject_CallFunction(self->st->wait_cb, "iid", fd, write, t);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The event-loop driver for this call (new reference), or NULL (threads, or gevent without pipelining:
 * the classic cooperative path); -1 in *err with an exception. */
static PyObject *loop_driver(ClientObject *self, int *err)
{
    *err = 0;
    if (self->st->loop_hook == NULL)
        return NULL;
    PyObject *d = mkpy_loop_driver(self);
    if (d == NULL) {
        *err = PyErr_Occurred() ? -1 : 0;
        return NULL;
    }
    /* pipeline=None: asyncio's tasks share connections, gevent's greenlets use the pool (a server or proxy
     * that is slow per request would hold every greenlet queued behind it); pipeline=True: both */
    PyObject *aio = PyObject_GetAttr(d, self->st->s_aio);
    int is_aio = aio ? PyObject_IsTrue(aio) : -1;
    Py_XDECREF(aio);
    if (is_aio < 0) {
        Py_DECREF(d);
        *err = -1;
        return NULL;
    }
    if (!is_aio && self->loop_pipeline < 2) {
        Py_DECREF(d);   /* gevent without pipelining: semaphores and wait_read as before */
        return NULL;
    }
    return d;
}

/* Green mode: the semaphore of server i (NULL when no lock factory is set). */
static PyObject *green_sem(ClientObject *self, int i)
{
    PyObject *lf = self->st->lock_factory;
    if (lf == NULL || self->c == NULL)
        return NULL;
    if (self->sems == NULL || self->sems_factory != lf) {
        size_t n = mk_server_count(self->c);
        PyObject *l = PyList_New((Py_ssize_t)n);
        if (l == NULL)
            return NULL;
        for (size_t j = 0; j < n; j++) {
            PyObject *s = PyObject_CallFunction(lf, "i", self->opt.pool_size);
            if (s == NULL) {
                Py_DECREF(l);
                return NULL;
            }
            PyList_SET_ITEM(l, (Py_ssize_t)j, s);
        }
        Py_XSETREF(self->sems, l);
        Py_XSETREF(self->sems_factory, Py_NewRef(lf));
    }
    return PyList_GET_ITEM(self->sems, i);
}

/* Run one started op to completion: an MK_E* code, or MKPY_PYERR. drv: the event loop's driver (NULL:
 * threads or classic gevent mode); forget: a noreply call sent as a plain one whose reply is dropped. */
static int run_op_in(ClientObject *self, mk_op *op, PyObject *drv, int forget)
{
    int rc;
    if (drv && self->loop_pipeline) {   /* (a gevent driver comes only with pipeline=True) */
        mkpy_piped h;
        rc = mkpy_pipe_add(self, op, drv, &h);
        if (rc == 0) {
            if (forget) {
                mkpy_pipe_leave(op, &h, 1);
                return 0;
            }
            return mkpy_pipe_wait(self, drv, op, &h);
        }
        if (rc != MK_EAGAIN)
            return rc;
    }
    if (drv) {   /* not pipelined: stepped here, every wait the loop's */
        double backoff = 0.0005;
        while ((rc = mk_op_step(op)) == MK_EAGAIN)
            if (green_wait(self, drv, op, &backoff) < 0)
                return MKPY_PYERR;
        return rc;
    }
    if (self->st->wait_cb == NULL) {
        /* Checkout, connect and send run without the GIL (a send on loopback does
         * the peer's TCP receive work too: other threads should run meanwhile).
         * With MK_WAITS no step before the reply phase (mk_op_events() has
         * POLLIN) parses a reply, so no callback runs here without the GIL. */
        int w = 0;
        Py_BEGIN_ALLOW_THREADS
        rc = mk_op_step(op);
        while (rc == MK_EAGAIN) {
            if ((w = mk_op_wait(op)) != 0 || (mk_op_events(op) & POLLIN))
                break;   /* the reply has arrived (or the wait timed out): parse with the GIL */
            rc = mk_op_step(op);
        }
        Py_END_ALLOW_THREADS
        if (w)
            return w;
        /* the reply phase: parse (and build the value) with the GIL held; wait without */
        while ((rc = rc == MK_EAGAIN ? mk_op_step(op) : rc) == MK_EAGAIN) {
            Py_BEGIN_ALLOW_THREADS
            w = mk_op_wait(op);
            Py_END_ALLOW_THREADS
            if (w)
                return w;
        }
        return rc;
    }
    PyObject *sem = green_sem(self, mk_op_server(op));
    if (sem == NULL && PyErr_Occurred())
        return MKPY_PYERR;
    Py_XINCREF(sem);
    if (sem) {
        /* queue for one of the server's pool_size connections, at most pool_timeout; the wait is not the
         * op's: its I/O timeout starts once it may go */
        PyObject *r = PyObject_CallMethod(sem, "acquire", "Od", Py_True, self->opt.checkout_timeout_ms / 1000.0);
        int got = r ? PyObject_IsTrue(r) : -1;
        Py_XDECREF(r);
        if (got <= 0) {
            Py_DECREF(sem);
            return got < 0 ? MKPY_PYERR : MK_EPOOLTIMEOUT;
        }
        mk_op_rearm(op);
    }
    double backoff = 0.0005;
    while ((rc = mk_op_step(op)) == MK_EAGAIN) {
        if (green_wait(self, NULL, op, &backoff) < 0) {
            rc = MKPY_PYERR;
            break;
        }
    }
    if (sem) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *r = PyObject_CallMethod(sem, "release", NULL);
        Py_XDECREF(r);
        if (r == NULL)
            PyErr_Clear();
        PyErr_Restore(et, ev, tb);
        Py_DECREF(sem);
    }
    return rc;
}

/* run_op_in with this call's driver. */
static int run_op(ClientObject *self, mk_op *op)
{
    int err;
    PyObject *drv = loop_driver(self, &err);
    if (err)
        return MKPY_PYERR;
    int rc = run_op_in(self, op, drv, 0);
    Py_XDECREF(drv);
    return rc;
}

/* Event-loop mode: the ops that the loop's pipes take go out with the other callers' requests and are
 * waited for here (rcs[i]: their final codes); the others keep rcs[i] = MK_EAGAIN. 0, or -1 with an
 * exception (the caller was killed or cancelled: every op left its pipe). */
static int pipe_ops(ClientObject *self, PyObject *drv, mk_op **ops, int *rcs, size_t n)
{
    mkpy_piped *hs = PyMem_Calloc(n ? n : 1, sizeof *hs);
    if (hs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++)
        if (ops[i] && mkpy_pipe_add(self, ops[i], drv, &hs[i]) == MKPY_PYERR)
            ret = -1;
    for (size_t i = 0; i < n; i++) {
        if (hs[i].ep == NULL)
            continue;
        if (ret < 0) {
            mkpy_pipe_leave(ops[i], &hs[i], 0);
            continue;
        }
        rcs[i] = mkpy_pipe_wait(self, drv, ops[i], &hs[i]);
        if (rcs[i] == MKPY_PYERR)
            ret = -1;
    }
    PyMem_Free(hs);
    return ret;
}

/* Drive several started ops together (NULL entries are skipped); rcs[i] gets each final
 * code. The pool is checked out without blocking so ops on one server never wait on each
 * other. Returns 0, or -1 with a Python exception (green mode's callback raised). */
static int drive_ops(ClientObject *self, mk_op **ops, int *rcs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rcs[i] = ops[i] ? MK_EAGAIN : rcs[i];
    struct pollfd *pfd = PyMem_Malloc((n + 1) * sizeof *pfd);
    size_t *map = PyMem_Malloc((n + 1) * sizeof *map);
    if (pfd == NULL || map == NULL) {
        PyMem_Free(pfd);
        PyMem_Free(map);
        PyErr_NoMemory();
        return -1;
    }
    int err, ret = 0;
    PyObject *drv = loop_driver(self, &err);
    if (err) {
        PyMem_Free(pfd);
        PyMem_Free(map);
        return -1;
    }
    if (drv && self->loop_pipeline && pipe_ops(self, drv, ops, rcs, n) < 0) {
        Py_DECREF(drv);
        PyMem_Free(pfd);
        PyMem_Free(map);
        return -1;
    }
    int green = self->st->wait_cb != NULL || drv != NULL;
    double backoff = 0.0005;
    PyThreadState *ts = green ? NULL : PyEval_SaveThread();
    if (!green && self->opt.pipeline) {
        /* threads: an op to a single server runs blocking, so it shares that server's pipelined
         * connection with the other threads' calls (ops to several servers are polled together) */
        size_t live = 0, last = 0;
        for (size_t i = 0; i < n; i++)
            if (ops[i] && rcs[i] == MK_EAGAIN)
                live++, last = i;
        if (live == 1)
            rcs[last] = mk_op_run(ops[last]);
    }
    for (size_t i = 0; i < n; i++)
        if (ops[i] && rcs[i] == MK_EAGAIN)
            rcs[i] = mk_op_step(ops[i]);
    for (;;) {
        size_t np = 0;
        int timeout = -1, pool_wait = -1;
        for (size_t i = 0; i < n; i++) {
            if (!ops[i] || rcs[i] != MK_EAGAIN)
                continue;
            int fd = mk_op_fd(ops[i]);
            if (fd < 0) {
                pool_wait = (int)i;
                continue;
            }
            int t = mk_op_timeout_ms(ops[i]);
            if (timeout < 0 || t < timeout)
                timeout = t;
            pfd[np] = (struct pollfd){fd, mk_op_events(ops[i]), 0};
            map[np++] = i;
        }
        if (np == 0 && pool_wait < 0)
            break;
        if (green) {
            if (green_wait(self, drv, np ? ops[map[0]] : ops[pool_wait], &backoff) < 0) {
                ret = -1;
                break;
            }
            for (size_t i = 0; i < n; i++)
                if (ops[i] && rcs[i] == MK_EAGAIN)
                    rcs[i] = mk_op_step(ops[i]);
            continue;
        }
        if (pool_wait >= 0 && (timeout < 0 || timeout > 1))
            timeout = 1;
        int r = poll(pfd, np, timeout);
        for (size_t j = 0; j < np; j++) {
            mk_op *op = ops[map[j]];
            if (r <= 0 || pfd[j].revents || mk_op_timeout_ms(op) == 0)
                rcs[map[j]] = mk_op_step(op);
        }
        if (pool_wait >= 0)
            for (size_t i = 0; i < n; i++)
                if (ops[i] && rcs[i] == MK_EAGAIN && mk_op_fd(ops[i]) < 0)
                    rcs[i] = mk_op_step(ops[i]);
    }
    if (ts)
        PyEval_RestoreThread(ts);
    Py_XDECREF(drv);
    PyMem_Free(pfd);
    PyMem_Free(map);
    return ret;
}

/* Caller storage for one op (mk_op_start_in): no allocation per call. */
typedef struct opbuf {
    _Alignas(max_align_t) char b[MK_OP_STORAGE];
} opbuf;

/* Start an op (server from the key, or k->server). No client: MK_ENOSERVER.
 * buf: where the op lives (NULL: allocated). */
/* Ask the op's live server once (GIL released) whether it speaks the meta protocol. */
static void ask_meta(ClientObject *self, const mk_op_args *a)
{
    int server = a->server >= 0 ? a->server : a->key ? mk_server_for_key(self->c, a->key, a->nkey) : -1;
    if (server < 0 || !mk_server_alive(self->c, (size_t)server))
        return;
    Py_BEGIN_ALLOW_THREADS
    (void)mk_server_speaks_meta(self->c, (size_t)server);
    Py_END_ALLOW_THREADS
}

/* in_loop: whether this call runs in an event loop (a driver was found), or -1: find out. */
static int start_op_in(ClientObject *self, mk_op_args *a, const mkey *k, opbuf *buf, mk_op **op, int in_loop)
{
    *op = NULL;
    if (self->c == NULL)
        return MK_ENOSERVER;
    check_fork(self);
    if (mkpy_auto_green(self->st) < 0)
        return MKPY_PYERR;
    if (k) {
        a->key = k->p;
        a->nkey = (size_t)k->n;
        a->server = k->server;
    }
    if (self->st->wait_cb == NULL && in_loop < 0 && self->st->loop_hook) {
        int err;
        PyObject *drv = loop_driver(self, &err);
        if (err)
            return MKPY_PYERR;
        in_loop = drv != NULL;
        Py_XDECREF(drv);
    }
    if (self->st->wait_cb == NULL && in_loop <= 0)
        a->mode |= MK_WAITS;   /* run_op calls mk_op_wait after every MK_EAGAIN */
    /* noreply goes in quiet mode to a meta server: ask it once -- unless a pipe takes it as a plain request
     * (an event loop's, or with pipeline=True the threads' one: libmemkit's ops.c does not ask then either) */
    bool piped_noreply = self->opt.pipeline && !self->opt.binary && !self->opt.tls && self->opt.username == NULL &&
                         self->st->wait_cb == NULL;
    if ((a->mode & MK_NOREPLY) && a->code != MK_OP_TOUCH && a->code != MK_OP_FLUSH_ALL && !piped_noreply)
        ask_meta(self, a);
    return buf ? mk_op_start_in(self->c, a, buf->b, sizeof buf->b, op) : mk_op_start(self->c, a, op);
}

static int start_op(ClientObject *self, mk_op_args *a, const mkey *k, mk_op **op)
{
    return start_op_in(self, a, k, NULL, op, -1);
}

/* Start and run a keyed op. A connect failure with auto_eject marks the server dead
 * (failure_limit 1, python-memcached's rule) and the op is tried once more on the
 * server the key moves to -- python-memcached finds the next server before sending. */
static int exec_op(ClientObject *self, mk_op_args *a, mkey *k, opbuf *buf, mk_op **op, const char *what,
                   PyObject *key)
{
    int err;
    PyObject *drv = loop_driver(self, &err);
    if (err)
        return MKPY_PYERR;
    /* in an event loop a noreply call is a plain request whose reply the pipe reads and drops: it never
     * waits, and the connection never carries a reply nobody expects */
    int forget = 0;
    if (drv && self->loop_pipeline && (a->mode & MK_NOREPLY) && a->nkeyset == 0 && a->code != MK_OP_FLUSH_ALL) {
        a->mode &= ~MK_NOREPLY;
        forget = 1;
    }
    if (drv) {
        /* the loop's pipe reads the reply while this greenlet is switched out, when its C stack is saved
         * away: the op must live on the heap (buf unused), and a hit is copied into the op (mk_op_take_item)
         * instead of being handed to a callback whose context is on this stack (value_cb cleared: the
         * caller decodes it) */
        buf = NULL;
        a->value_cb = NULL;
    }
    int rc = start_op_in(self, a, k, buf, op, drv != NULL);
    if (rc == 0)
        rc = run_op_in(self, *op, drv, forget);
    if (rc == MK_ECONNECT && self->opt.auto_eject && k->server < 0) {
        if (report(self, rc, what, key, mk_op_server(*op)) < 0) { /* the server just marked dead */
            k->tried = mk_op_server(*op);
            Py_XDECREF(drv);
            return MKPY_PYERR;
        }
        mk_op_destroy(*op);
        rc = start_op_in(self, a, k, buf, op, drv != NULL);
        if (rc == 0)
            rc = run_op_in(self, *op, drv, forget);
    }
    Py_XDECREF(drv);
    k->tried = *op ? mk_op_server(*op) : -1;
    return rc;
}

/* ------------------------------------------------------------ single key */

/* A single get's hit, decoded with the GIL held straight from libmemkit's receive buffer. */
typedef struct getctx {
    ClientObject *self;
    PyObject *key;
    PyObject *value;            /* the decoded value (NULL: none yet, or the decode failed) */
    PyObject *et, *ev, *tb;     /* the decode's exception, re-raised after the op */
    uint64_t cas;
    int hit;
} getctx;

static void on_get_hit(void *ctx, size_t i, const mk_item *it)
{
    (void)i;
    getctx *g = ctx;
    if (g->hit++)
        return;
    g->cas = it->cas;
    g->value = mkpy_decode(g->self, g->key, it->value, it->nvalue, it->flags);
    if (g->value == NULL)
        PyErr_Fetch(&g->et, &g->ev, &g->tb);
}

/* get/gets: the value, or `dflt` (new reference) on a miss or a swallowed failure. */
static PyObject *do_get(ClientObject *self, PyObject *key, mk_opcode code, PyObject *dflt)
{
    mkey k;
    if (get_key(self, key, &k) < 0)
        return NULL;
    getctx g = {.self = self, .key = key};
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = code;
    /* the hit is decoded with the GIL held, straight from the receive buffer (blocking mode steps with it);
     * with auto-pipelining another caller's thread may read it, without the GIL: libmemkit then keeps a
     * copy (mk_op_take_item) and it is decoded here */
    a.value_cb = self->opt.pipeline && self->st->wait_cb == NULL ? NULL : on_get_hit;
    a.ctx = &g;
    mk_op *op;
    opbuf ob;
    int rc = exec_op(self, &a, &k, &ob, &op, code == MK_OP_GETS ? "gets" : "get", key);
    if (a.value_cb == NULL && rc == 0 && op) {   /* (exec_op clears it in an event loop) */
        mk_item it;
        if (mk_op_take_item(op, &it) == 0) {
            on_get_hit(&g, 0, &it);
            mk_item_clear(&it);
        }
    }
    mk_op_destroy(op);
    PyObject *r = NULL;
    if (g.et || (g.hit && g.value == NULL)) {   /* the value did not decode: its exception */
        Py_CLEAR(g.value);
        if (g.et)
            PyErr_Restore(g.et, g.ev, g.tb);
        else if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "memkit: value decoding failed");
    } else if (rc == 0 && g.value) {
        r = g.value;
        if (code == MK_OP_GETS && self->cache_cas) {
            /* cas_ids is the calling thread's (greenlet's) dict: __init__.py's property */
            PyObject *ids = PyObject_GetAttrString((PyObject *)self, "cas_ids");
            PyObject *kb = PyBytes_FromStringAndSize(k.p, k.n), *cas = PyLong_FromUnsignedLongLong(g.cas);
            if (ids == NULL || kb == NULL || cas == NULL || PyObject_SetItem(ids, kb, cas) < 0)
                Py_CLEAR(r);
            Py_XDECREF(ids);
            Py_XDECREF(kb);
            Py_XDECREF(cas);
        }
    } else {
        Py_CLEAR(g.value);   /* a hit followed by a failure: python-memcached returns None */
        if (rc == 0)
            rc = MK_ENOTFOUND;
        if (outcome(rc) == OUT_NO ||
            failure(self, rc, code == MK_OP_GETS ? "gets" : "get", key, k.tried) == 0)
            r = Py_NewRef(dflt);
    }
    Py_XDECREF(k.keep);
    return r;
}

/* get(key, default=None): python-memcached's get(key), with pylibmc's and pymemcache's default for a miss
 * (a stored None is returned as None). */
static PyObject *Client_get(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "default", NULL};
    PyObject *o[2];
    if (parse_args("get", args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    return do_get(self, o[0], MK_OP_GET, o[1] ? o[1] : Py_None);
}

static PyObject *Client_gets(ClientObject *self, PyObject *key)
{
    return do_get(self, key, MK_OP_GETS, Py_None);
}

/* False if key's server is known not to speak the meta protocol (asked once per server, on a connection of
 * its own, with the GIL released); true otherwise, also when it could not be asked (the op then finds out). */
static bool speaks_meta(ClientObject *self, const mkey *k)
{
    int server = k->server >= 0 ? k->server : self->c ? mk_server_for_key(self->c, k->p, (size_t)k->n) : -1;
    if (server < 0 || !mk_server_alive(self->c, (size_t)server))
        return true; /* a dead server is not asked (the op fails fast on it, as every call does) */
    int meta;
    Py_BEGIN_ALLOW_THREADS
    meta = mk_server_speaks_meta(self->c, (size_t)server);
    Py_END_ALLOW_THREADS
    return meta != 0;
}

/*
 * _meta_get(key, vivify=0, recache=0) -> (found, value, state, placeholder), or None when the server does
 * not speak the meta protocol (it answered ERROR). state: MK_META_* bits; placeholder: the hit is the empty
 * item a vivifying get left (flags 0, no bytes) while its winner computes. A failure the client swallows
 * (raise_errors off) reads as a miss. get_or_set in __init__.py builds on it.
 */
static PyObject *Client__meta_get(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "vivify", "recache", NULL};
    PyObject *o[3];
    if (parse_args("_meta_get", args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    mkey k;
    int64_t vivify, recache;
    if (get_key(self, o[0], &k) < 0)
        return NULL;
    if (arg_i64(o[1], 0, &vivify) < 0 || arg_i64(o[2], 0, &recache) < 0) {
        Py_XDECREF(k.keep);
        return NULL;
    }
    if (!speaks_meta(self, &k)) {
        Py_XDECREF(k.keep);
        Py_RETURN_NONE;
    }
    getctx g = {.self = self, .key = o[0]};
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_MGET;
    a.vivify = vivify > 0 ? vivify : 0;
    a.recache = recache > 0 ? recache : 0;
    a.value_cb = on_get_hit;
    a.ctx = &g;
    mk_op *op;
    opbuf ob;
    int rc = exec_op(self, &a, &k, &ob, &op, "get", o[0]);
    if (a.value_cb == NULL && rc == 0 && op) {   /* an event loop's pipe copied the hit (exec_op) */
        mk_item it;
        if (mk_op_take_item(op, &it) == 0) {
            on_get_hit(&g, 0, &it);
            mk_item_clear(&it);
        }
    }
    unsigned state = rc == 0 ? mk_op_meta_state(op) : 0;
    mk_op_destroy(op);
    Py_XDECREF(k.keep);
    if (g.et || (g.hit && g.value == NULL)) {
        Py_CLEAR(g.value);
        if (g.et)
            PyErr_Restore(g.et, g.ev, g.tb);
        else if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "memkit: value decoding failed");
        return NULL;
    }
    if (rc == 0 && g.value) {
        bool placeholder = (state & MK_META_PLACEHOLDER) != 0;
        PyObject *r = Py_BuildValue("(OOIO)", Py_True, g.value, state, placeholder ? Py_True : Py_False);
        Py_DECREF(g.value);
        return r;
    }
    Py_CLEAR(g.value);
    if (rc == MK_EERROR)
        Py_RETURN_NONE;
    if (rc != MK_ENOTFOUND && rc != 0 && failure(self, rc, "get", o[0], k.tried) < 0)
        return NULL;
    return Py_BuildValue("(OOIO)", Py_False, Py_None, 0u, Py_False);
}

/* invalidate(key, time=0) -> True if the key was there: its value stays readable, marked stale, until one
 * reader of get_or_set recomputes it (memcached's "md <key> I"); time > 0 also bounds how long. */
static PyObject *Client_invalidate(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "time", NULL};
    PyObject *o[2];
    if (parse_args("invalidate", args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    mkey k;
    int64_t t;
    if (get_key(self, o[0], &k) < 0)
        return NULL;
    if (arg_i64(o[1], 0, &t) < 0) {
        Py_XDECREF(k.keep);
        return NULL;
    }
    if (!speaks_meta(self, &k)) {
        Py_XDECREF(k.keep);
        return PyBool_FromLong(0);   /* no stale marks without the meta protocol */
    }
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_INVALIDATE;
    a.exptime = t > 0 ? t : 0;
    mk_op *op;
    opbuf ob;
    int rc = exec_op(self, &a, &k, &ob, &op, "invalidate", o[0]);
    mk_op_destroy(op);
    Py_XDECREF(k.keep);
    if (outcome(rc) == OUT_FAIL && failure(self, rc, "invalidate", o[0], k.tried) < 0)
        return NULL;
    return PyBool_FromLong(rc == 0);
}

static const char *const store_names[] = {"key", "val", "time", "min_compress_len", "noreply", NULL};
static const char *const store_fn[] = {"set", "add", "replace", "append", "prepend", "cas"};

/* debug: python-memcached's line for a store the server refused. */
static void store_debug(int rc, const mk_op *op)
{
    const char *word = rc == MK_ENOTSTORED ? "NOT_STORED" : rc == MK_EEXISTS ? "EXISTS"
                       : rc == MK_ENOTFOUND ? "NOT_FOUND" : rc == MK_ESERVERERR ? "SERVER_ERROR"
                       : rc == MK_EERROR ? "ERROR" : "CLIENT_ERROR";
    const char *text = op ? mk_op_text(op) : "";
    PySys_WriteStderr("MemCached: while expecting 'STORED', got unexpected response '%s%s%.200s'\n", word,
                      *text ? " " : "", text);
}

static PyObject *do_store(ClientObject *self, mk_store_op sop, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    PyObject *o[5];
    if (parse_args(store_fn[sop], args, nargs, kwnames, store_names, 2, o) < 0)
        return NULL;
    mkey k;
    int64_t exptime, mcl;
    if (get_key(self, o[0], &k) < 0)
        return NULL;
    int noreply = arg_bool(o[4]);
    if (arg_i64(o[2], 0, &exptime) < 0 || arg_i64(o[3], self->min_compress_len, &mcl) < 0 || noreply < 0)
        return NULL;
    uint64_t cas = 0;
    if (sop == MK_STORE_CAS) {   /* python-memcached: without a cached cas id, cas is a set */
        PyObject *ids = PyObject_GetAttrString((PyObject *)self, "cas_ids"); /* this thread's (greenlet's) */
        if (ids == NULL)
            return NULL;
        PyObject *kb = PyBytes_FromStringAndSize(k.p, k.n);
        PyObject *id = kb && PyDict_Check(ids) ? PyDict_GetItemWithError(ids, kb) : NULL;
        Py_XINCREF(id);
        Py_XDECREF(kb);
        Py_DECREF(ids);
        if (id == NULL && PyErr_Occurred())
            return NULL;
        if (id == NULL)
            sop = MK_STORE_SET;
        else
            cas = PyLong_AsUnsignedLongLong(id);
        Py_XDECREF(id);
        if (cas == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
    }
    mkpy_val v;
    int er = mkpy_encode(self, o[0], o[1], (Py_ssize_t)mcl, &v);
    if (er != 0)
        return er < 0 ? NULL : PyLong_FromLong(0);
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_STORE;
    a.store_op = sop;
    a.value = v.p;
    a.nvalue = (size_t)v.n;
    a.flags = v.flags;
    a.exptime = exptime;
    a.cas = cas;
    a.mode = noreply ? MK_NOREPLY : 0;
    mk_op *op;
    opbuf ob;
    int rc = exec_op(self, &a, &k, &ob, &op, store_fn[sop], o[0]);
    mkpy_val_release(&v);
    int out = outcome(rc);
    if (out == OUT_NO && self->debug && !noreply) /* python-memcached's _set: expect(b"STORED") */
        store_debug(rc, op);
    mk_op_destroy(op);
    switch (out) {
    case OUT_OK: Py_RETURN_TRUE;
    case OUT_NO: Py_RETURN_FALSE;
    default: return failure(self, rc, store_fn[sop], o[0], k.tried) < 0 ? NULL : PyLong_FromLong(0);
    }
}

#define STORE_METHOD(name, sop)                                                                 \
    static PyObject *Client_##name(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, \
                                   PyObject *kwnames)                                           \
    {                                                                                           \
        return do_store(self, sop, args, nargs, kwnames);                                       \
    }
STORE_METHOD(set, MK_STORE_SET)
STORE_METHOD(add, MK_STORE_ADD)
STORE_METHOD(replace, MK_STORE_REPLACE)
STORE_METHOD(append, MK_STORE_APPEND)
STORE_METHOD(prepend, MK_STORE_PREPEND)
STORE_METHOD(cas, MK_STORE_CAS)

/* delete(key, time=None, noreply=False) and touch(key, time=0, noreply=False): 1 or 0. */
static PyObject *do_deltouch(ClientObject *self, mk_opcode code, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"key", "time", "noreply", NULL};
    const char *fn = code == MK_OP_DELETE ? "delete" : "touch";
    PyObject *o[3];
    if (parse_args(fn, args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    mkey k;
    int64_t t;
    if (get_key(self, o[0], &k) < 0)
        return NULL;
    int noreply = arg_bool(o[2]);
    if (arg_i64(o[1], 0, &t) < 0 || noreply < 0)
        return NULL;
    if (code == MK_OP_DELETE && t != 0)
        return PyLong_FromLong(0);   /* memcached refuses "delete key <time>" (CLIENT_ERROR) */
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = code;
    a.exptime = t;
    a.mode = noreply ? MK_NOREPLY : 0;
    mk_op *op;
    opbuf ob;
    int rc = exec_op(self, &a, &k, &ob, &op, fn, o[0]);
    mk_op_destroy(op);
    if (rc == 0 || (code == MK_OP_DELETE && rc == MK_ENOTFOUND))
        return PyLong_FromLong(1);
    if (outcome(rc) == OUT_FAIL && failure(self, rc, fn, o[0], k.tried) < 0)
        return NULL;
    if (code == MK_OP_TOUCH && rc == MK_ENOTFOUND && self->debug && !noreply)
        PySys_WriteStderr("MemCached: touch expected b'TOUCHED', got: b'NOT_FOUND'\n");
    return PyLong_FromLong(0);
}

static PyObject *Client_delete(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return do_deltouch(self, MK_OP_DELETE, args, nargs, kwnames);
}

static PyObject *Client_touch(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return do_deltouch(self, MK_OP_TOUCH, args, nargs, kwnames);
}

/* _delete(key) -> True if the key existed (DELETED), else False: for Django's delete(). */
static PyObject *Client__delete(ClientObject *self, PyObject *key)
{
    mkey k;
    if (get_key(self, key, &k) < 0)
        return NULL;
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = MK_OP_DELETE;
    mk_op *op;
    opbuf ob;
    int rc = exec_op(self, &a, &k, &ob, &op, "delete", key);
    mk_op_destroy(op);
    if (outcome(rc) == OUT_FAIL && failure(self, rc, "delete", key, k.tried) < 0)
        return NULL;
    return PyBool_FromLong(rc == 0);
}

static PyObject *do_incrdecr(ClientObject *self, mk_opcode code, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"key", "delta", "noreply", NULL};
    const char *fn = code == MK_OP_INCR ? "incr" : "decr";
    PyObject *o[3];
    if (parse_args(fn, args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    mkey k;
    if (get_key(self, o[0], &k) < 0)
        return NULL;
    int noreply = arg_bool(o[2]);
    if (noreply < 0)
        return NULL;
    uint64_t delta = 1;
    if (o[1]) {
        delta = PyLong_Check(o[1]) ? PyLong_AsUnsignedLongLong(o[1]) : (uint64_t)-1;
        if (delta == (uint64_t)-1 && (PyErr_Occurred() || !PyLong_Check(o[1]))) {
            /* python-memcached sends str(delta); memcached's CLIENT_ERROR then fails int() */
            PyErr_Clear();
            return PyErr_Format(PyExc_ValueError,
                                "invalid literal for int() with base 10: b'CLIENT_ERROR invalid numeric delta argument'");
        }
    }
    mk_op_args a;
    mk_op_args_init(&a);
    a.code = code;
    a.delta = delta;
    a.mode = noreply ? MK_NOREPLY : 0;
    mk_op *op;
    opbuf ob;
    int rc = exec_op(self, &a, &k, &ob, &op, fn, o[0]);
    uint64_t n = rc == 0 ? mk_op_number(op) : 0;
    PyObject *r = NULL;
    if (rc == MK_ENOTNUM || rc == MK_ECLIENTERR) /* python-memcached's message: int() of the reply line */
        PyErr_Format(self->st->errors[-MK_ENOTNUM], "invalid literal for int() with base 10: b'CLIENT_ERROR %s'",
                     mk_op_text(op));
    else if (rc == 0)
        r = noreply ? Py_NewRef(Py_None) : PyLong_FromUnsignedLongLong(n);
    else if (outcome(rc) == OUT_NO || failure(self, rc, fn, o[0], k.tried) == 0)
        r = Py_NewRef(Py_None);
    mk_op_destroy(op);
    return r;
}

static PyObject *Client_incr(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return do_incrdecr(self, MK_OP_INCR, args, nargs, kwnames);
}

static PyObject *Client_decr(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return do_incrdecr(self, MK_OP_DECR, args, nargs, kwnames);
}

/* ------------------------------------------------------------- multi key */

typedef struct mres {
    size_t off;                 /* where the value starts in its server's buffer (mgroup.buf) */
    size_t n;
    uint32_t flags;
    uint64_t cas;
    int hit;
} mres;

typedef struct mgroup {
    mres *res;                  /* results of all keys */
    size_t *idx;                /* position in the op's keyset -> key index */
    const char **keys;
    size_t *nkeys;
    size_t n;
    char *buf;                  /* this server's hits, each value followed by a NUL (one growing malloc) */
    size_t len, cap;
    mk_op_args a;
} mgroup;

/* Called per hit, possibly without the GIL: copy the value into the server's buffer. */
static void on_hit(void *ctx, size_t i, const mk_item *it)
{
    mgroup *g = ctx;
    mres *r = &g->res[g->idx[i]];
    if (r->hit)
        return;
    size_t need = g->len + it->nvalue + 1;
    if (need > g->cap) {
        size_t cap = g->cap ? g->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *b = realloc(g->buf, cap);
        if (b == NULL)
            return;             /* no memory: counted as a miss, as python-memcached drops what it cannot read */
        g->buf = b;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, it->value, it->nvalue);
    g->buf[g->len + it->nvalue] = '\0';
    r->off = g->len;
    r->n = it->nvalue;
    r->flags = it->flags;
    r->cas = it->cas;
    r->hit = 1;
    g->len = need;
}

/* Convert the keys of a multi call. Fills keys[] (owned refs in keys[i].keep) and origs[] (borrowed). */
static int multi_keys(ClientObject *self, PyObject *seq, PyObject *prefix, mkey *keys, PyObject **origs)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (get_multi_key(self, PySequence_Fast_GET_ITEM(seq, i), PyBytes_AS_STRING(prefix),
                          PyBytes_GET_SIZE(prefix), &keys[i], &origs[i]) < 0) {
            for (Py_ssize_t j = 0; j < i; j++)
                Py_CLEAR(keys[j].keep);
            return -1;
        }
    }
    return 0;
}

static PyObject *Client_get_multi(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"keys", "key_prefix", NULL};
    PyObject *o[2];
    if (parse_args("get_multi", args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    PyObject *prefix = get_prefix(self, o[1]);
    if (prefix == NULL)
        return NULL;
    PyObject *seq = PySequence_Fast(o[0], "keys must be iterable");
    if (seq == NULL) {
        Py_DECREF(prefix);
        return NULL;
    }
    size_t n = (size_t)PySequence_Fast_GET_SIZE(seq);
    size_t ns = self->c ? mk_server_count(self->c) : 0;
    /* every array of the call in one block (all pointer-aligned); zeroed where it is read before written */
    size_t nn = n + 1, nsv = ns + 1;
    size_t sz_keys = nn * sizeof(mkey), sz_res = nn * sizeof(mres), sz_g = nsv * sizeof(mgroup);
    size_t sz_ops = nsv * sizeof(mk_op *), sz_origs = nn * sizeof(PyObject *), sz_idx = nn * sizeof(size_t);
    size_t sz_kp = nn * sizeof(char *), sz_nk = nn * sizeof(size_t);
    size_t sz_srv = (nn * sizeof(int) + 7) & ~(size_t)7, sz_rcs = (nsv * sizeof(int) + 7) & ~(size_t)7;
    size_t zeroed = sz_keys + sz_res + sz_g + sz_ops;
    char *mem = PyMem_Malloc(zeroed + sz_origs + sz_idx + sz_kp + sz_nk + sz_srv + sz_rcs);
    mkey *keys = NULL;
    PyObject **origs = NULL;
    mres *res = NULL;
    int *srv = NULL, *rcs = NULL;
    mgroup *g = NULL;
    size_t *idx = NULL, *nk = NULL;
    const char **kp = NULL;
    mk_op **ops = NULL;
    PyObject *result = NULL;
    int converted = 0;
    if (mem == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    memset(mem, 0, zeroed);
    char *at = mem;
    keys = (mkey *)(void *)at, at += sz_keys;
    res = (mres *)(void *)at, at += sz_res;
    g = (mgroup *)(void *)at, at += sz_g;
    ops = (mk_op **)(void *)at, at += sz_ops;
    origs = (PyObject **)(void *)at, at += sz_origs;
    idx = (size_t *)(void *)at, at += sz_idx;
    kp = (const char **)(void *)at, at += sz_kp;
    nk = (size_t *)(void *)at, at += sz_nk;
    srv = (int *)(void *)at, at += sz_srv;
    rcs = (int *)(void *)at;
    if (multi_keys(self, seq, prefix, keys, origs) < 0)
        goto out;
    converted = 1;
    if (self->c)
        check_fork(self);
    /* group the keys by server: one batch lookup (kp/nk are scratch here, refilled in server order below) */
    for (size_t i = 0; i < n; i++) {
        kp[i] = keys[i].p;
        nk[i] = (size_t)keys[i].n;
        srv[i] = MK_ENOSERVER;
    }
    if (self->c)
        mk_servers_for_keys(self->c, kp, nk, n, srv);
    for (size_t i = 0; i < n; i++) {
        if (keys[i].server >= 0)
            srv[i] = keys[i].server;
        if (srv[i] >= 0)
            g[srv[i]].n++;
    }
    size_t off = 0;
    for (size_t s = 0; s < ns; s++) {
        g[s].idx = idx + off;
        g[s].keys = kp + off;
        g[s].nkeys = nk + off;
        g[s].res = res;
        off += g[s].n;
        g[s].n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (srv[i] < 0)
            continue;
        mgroup *gs = &g[srv[i]];
        gs->idx[gs->n] = i;
        gs->keys[gs->n] = keys[i].p;
        gs->nkeys[gs->n] = (size_t)keys[i].n;
        gs->n++;
    }
    int first = 0;
    for (size_t s = 0; s < ns; s++) {
        if (g[s].n == 0)
            continue;
        mk_op_args *a = &g[s].a;
        mk_op_args_init(a);
        a->code = MK_OP_GET;
        a->keys = g[s].keys;
        a->nkeys = g[s].nkeys;
        a->nkeyset = g[s].n;
        a->server = (int)s;
        a->value_cb = on_hit;   /* (no Python in it: it may run on the thread reading a shared connection) */
        a->mode |= MK_CB_ANY_THREAD;
        a->ctx = &g[s];
        rcs[s] = mk_op_start(self->c, a, &ops[s]);
    }
    if (drive_ops(self, ops, rcs, ns) < 0)
        goto out;
    int fs = -1;
    for (size_t s = 0; s < ns; s++)
        if (g[s].n && outcome(rcs[s]) == OUT_FAIL && !first) {
            first = rcs[s];
            fs = (int)s;
        }
    for (size_t i = 0; i < n; i++)
        if (srv[i] < 0 && !first)
            first = srv[i];
    if (first && failure(self, first, "get_multi", NULL, fs) < 0)
        goto out;
    result = PyDict_New();
    for (size_t i = 0; result && i < n; i++) {
        if (!res[i].hit)
            continue;
        PyObject *v = mkpy_decode(self, origs[i], g[srv[i]].buf + res[i].off, res[i].n, res[i].flags);
        if (v == NULL || PyDict_SetItem(result, origs[i], v) < 0)
            Py_CLEAR(result);
        Py_XDECREF(v);
    }
out:
    for (size_t s = 0; ops && s < ns; s++)
        mk_op_destroy(ops[s]);
    for (size_t s = 0; g && s < ns; s++)
        free(g[s].buf);
    for (size_t i = 0; converted && i < n; i++)
        Py_XDECREF(keys[i].keep);
    PyMem_Free(mem);
    Py_DECREF(seq);
    Py_DECREF(prefix);
    return result;
}

/*
 * set_multi / delete_multi: the keys are grouped by server and each server gets
 * one batch op (one pipelined request stream: "set k1 ...\r\n<v1>\r\nset k2 ...",
 * or "delete k1\r\ndelete k2\r\n..."); all servers are in flight together and
 * every key gets its own reply code. Keys whose server cannot be picked (dead, no
 * server) are left out, as python-memcached leaves them out.
 */
typedef struct batch {
    size_t n;                   /* keys of this server */
    size_t *idx;                /* batch position -> key index */
    const char **kp;
    size_t *nk;
    const void **vp;
    size_t *nv;
    uint32_t *fl;
    int *res;
    mk_op_args a;
} batch;

typedef struct batches {
    size_t ns;
    batch *b;
    mk_op **ops;
    int *rcs;
    void *mem;
} batches;

static void batches_free(batches *bs)
{
    for (size_t s = 0; bs->ops && s < bs->ns; s++)
        mk_op_destroy(bs->ops[s]);
    PyMem_Free(bs->mem);
    PyMem_Free(bs->b);
    PyMem_Free(bs->ops);
    PyMem_Free(bs->rcs);
    memset(bs, 0, sizeof *bs);
}

/* Group keys (srv[i] >= 0: its server; < 0: left out) into per-server batches and
 * start one op per server. Returns the number of ops started, or -1 (exception). */
static Py_ssize_t batches_start(ClientObject *self, batches *bs, mk_opcode code, const mkey *keys, const int *srv,
                                const mkpy_val *vals, size_t n, int64_t exptime, int noreply)
{
    memset(bs, 0, sizeof *bs);
    size_t ns = self->c ? mk_server_count(self->c) : 0;
    bs->ns = ns;
    bs->b = PyMem_Calloc(ns + 1, sizeof *bs->b);
    bs->ops = PyMem_Calloc(ns + 1, sizeof *bs->ops);
    bs->rcs = PyMem_Calloc(ns + 1, sizeof *bs->rcs);
    size_t per = sizeof(size_t) * 3 + sizeof(char *) + sizeof(void *) + sizeof(uint32_t) + sizeof(int);
    bs->mem = PyMem_Malloc((n + 1) * per);
    if (!bs->b || !bs->ops || !bs->rcs || !bs->mem) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (srv[i] >= 0)
            bs->b[srv[i]].n++;
    /* carve the arrays: every batch gets a slice of each */
    char *m = bs->mem;
    size_t *a_idx = (size_t *)(void *)m;         m += (n + 1) * sizeof(size_t);
    size_t *a_nk = (size_t *)(void *)m;          m += (n + 1) * sizeof(size_t);
    size_t *a_nv = (size_t *)(void *)m;          m += (n + 1) * sizeof(size_t);
    const char **a_kp = (const char **)(void *)m; m += (n + 1) * sizeof(char *);
    const void **a_vp = (const void **)(void *)m; m += (n + 1) * sizeof(void *);
    uint32_t *a_fl = (uint32_t *)(void *)m;      m += (n + 1) * sizeof(uint32_t);
    int *a_res = (int *)(void *)m;
    size_t off = 0;
    for (size_t s = 0; s < ns; s++) {
        batch *b = &bs->b[s];
        b->idx = a_idx + off;
        b->kp = a_kp + off;
        b->nk = a_nk + off;
        b->vp = a_vp + off;
        b->nv = a_nv + off;
        b->fl = a_fl + off;
        b->res = a_res + off;
        off += b->n;
        b->n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (srv[i] < 0)
            continue;
        batch *b = &bs->b[srv[i]];
        size_t j = b->n++;
        b->idx[j] = i;
        b->kp[j] = keys[i].p;
        b->nk[j] = (size_t)keys[i].n;
        if (vals) {
            b->vp[j] = vals[i].p;
            b->nv[j] = (size_t)vals[i].n;
            b->fl[j] = vals[i].flags;
        }
    }
    Py_ssize_t started = 0;
    for (size_t s = 0; s < ns; s++) {
        batch *b = &bs->b[s];
        if (b->n == 0)
            continue;
        mk_op_args *a = &b->a;
        mk_op_args_init(a);
        a->code = code;
        a->store_op = MK_STORE_SET;
        a->keys = b->kp;
        a->nkeys = b->nk;
        a->nkeyset = b->n;
        a->values = b->vp;
        a->nvalues = b->nv;
        a->flagsv = b->fl;
        a->results = b->res;
        a->exptime = exptime;
        a->mode = noreply ? MK_NOREPLY : 0;
        a->server = (int)s;
        bs->rcs[s] = start_op(self, a, NULL, &bs->ops[s]);
        if (bs->ops[s])
            started++;
        else
            for (size_t j = 0; j < b->n; j++)
                b->res[j] = bs->rcs[s];
    }
    return started;
}

/* The server of each key (python-memcached's (hash, key) tuples included), or a negative code. */
static void keys_servers(ClientObject *self, const mkey *keys, size_t n, const char *skip, int *srv)
{
    if (self->c)
        check_fork(self);
    for (size_t at = 0; at < n; at += 64) { /* batch lookups (one clock read per 64 keys) */
        size_t m = n - at < 64 ? n - at : 64;
        const char *kp[64];
        size_t nk[64];
        int picked[64];
        for (size_t j = 0; j < m; j++) {
            kp[j] = keys[at + j].p;
            nk[j] = (size_t)keys[at + j].n;
        }
        if (self->c)
            mk_servers_for_keys(self->c, kp, nk, m, picked);
        for (size_t j = 0, i = at; j < m; j++, i++) {
            if (skip && skip[i] != 1)
                srv[i] = -1;
            else if (self->c == NULL)
                srv[i] = MK_ENOSERVER;
            else if (keys[i].server >= 0)
                srv[i] = keys[i].server < (int)mk_server_count(self->c) ? keys[i].server : MK_ERANGE;
            else
                srv[i] = picked[j];
        }
    }
}

static PyObject *Client_set_multi(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"mapping", "time", "key_prefix", "min_compress_len", "noreply", NULL};
    PyObject *o[5];
    if (parse_args("set_multi", args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    int64_t exptime, mcl;
    int noreply = arg_bool(o[4]);
    if (arg_i64(o[1], 0, &exptime) < 0 || arg_i64(o[3], self->min_compress_len, &mcl) < 0 || noreply < 0)
        return NULL;
    PyObject *prefix = get_prefix(self, o[2]);
    if (prefix == NULL)
        return NULL;
    PyObject *klist = PyMapping_Keys(o[0]);
    PyObject *seq = klist ? PySequence_Fast(klist, "mapping keys") : NULL;
    Py_XDECREF(klist);
    if (seq == NULL) {
        Py_DECREF(prefix);
        return NULL;
    }
    size_t n = (size_t)PySequence_Fast_GET_SIZE(seq);
    mkey *keys = PyMem_Calloc(n + 1, sizeof *keys);
    PyObject **origs = PyMem_Calloc(n + 1, sizeof *origs);
    mkpy_val *vals = PyMem_Calloc(n + 1, sizeof *vals);
    int *srv = PyMem_Calloc(n + 1, sizeof *srv);
    char *enc = PyMem_Calloc(n + 1, 1);   /* 0 not encoded, 1 encoded, 2 too large */
    batches bs = {0};
    PyObject *notstored = NULL;
    int converted = 0;
    if (!keys || !origs || !vals || !srv || !enc) {
        PyErr_NoMemory();
        goto out;
    }
    if (multi_keys(self, seq, prefix, keys, origs) < 0)
        goto out;
    converted = 1;
    notstored = PyList_New(0);
    if (notstored == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        PyObject *mk = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *v = PyObject_GetItem(o[0], mk);
        if (v == NULL)
            goto fail;
        int er = mkpy_encode(self, origs[i], v, (Py_ssize_t)mcl, &vals[i]);
        Py_DECREF(v);
        if (er < 0)
            goto fail;
        enc[i] = er == 0 ? 1 : 2;
        if (er == 1 && PyList_Append(notstored, origs[i]) < 0)
            goto fail;
    }
    keys_servers(self, keys, n, enc, srv);
    Py_ssize_t live = batches_start(self, &bs, MK_OP_STORE, keys, srv, vals, n, exptime, noreply);
    if (live < 0)
        goto fail;
    if (live == 0 && n > 0) {   /* python-memcached: no server at all -> every key */
        Py_SETREF(notstored, PyMapping_Keys(o[0]));
        goto out;
    }
    if (drive_ops(self, bs.ops, bs.rcs, bs.ns) < 0)
        goto fail;
    int first = 0, fs = -1;
    for (size_t s = 0; s < bs.ns; s++) {
        batch *b = &bs.b[s];
        if (bs.ops[s] == NULL)
            continue;   /* no op: python-memcached leaves those keys out */
        for (size_t j = 0; j < b->n; j++) {
            int rc = b->res[j];
            if (rc == 0)
                continue;
            if (outcome(rc) == OUT_FAIL && !first) {
                first = rc;
                fs = (int)s;
            }
            if (PyList_Append(notstored, origs[b->idx[j]]) < 0)
                goto fail;
        }
    }
    if (first && failure(self, first, "set_multi", NULL, fs) < 0)
        goto fail;
    goto out;
fail:
    Py_CLEAR(notstored);
out:
    batches_free(&bs);
    for (size_t i = 0; enc && i < n; i++)
        if (enc[i] == 1)
            mkpy_val_release(&vals[i]);
    for (size_t i = 0; converted && i < n; i++)
        Py_XDECREF(keys[i].keep);
    PyMem_Free(keys);
    PyMem_Free(origs);
    PyMem_Free(vals);
    PyMem_Free(srv);
    PyMem_Free(enc);
    Py_DECREF(seq);
    Py_DECREF(prefix);
    return notstored;
}

static PyObject *Client_delete_multi(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    static const char *const names[] = {"keys", "time", "key_prefix", "noreply", NULL};
    PyObject *o[4];
    if (parse_args("delete_multi", args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    int64_t t;
    int noreply = arg_bool(o[3]);
    if (arg_i64(o[1], 0, &t) < 0 || noreply < 0)
        return NULL;
    PyObject *prefix = get_prefix(self, o[2]);
    if (prefix == NULL)
        return NULL;
    PyObject *seq = PySequence_Fast(o[0], "keys must be iterable");
    if (seq == NULL) {
        Py_DECREF(prefix);
        return NULL;
    }
    size_t n = (size_t)PySequence_Fast_GET_SIZE(seq);
    mkey *keys = PyMem_Calloc(n + 1, sizeof *keys);
    PyObject **origs = PyMem_Calloc(n + 1, sizeof *origs);
    int *srv = PyMem_Calloc(n + 1, sizeof *srv);
    batches bs = {0};
    PyObject *r = NULL;
    int converted = 0;
    if (!keys || !origs || !srv) {
        PyErr_NoMemory();
        goto out;
    }
    if (multi_keys(self, seq, prefix, keys, origs) < 0)
        goto out;
    converted = 1;
    long ok = 1;
    if (t == 0) {   /* memcached refuses "delete key <time>": python-memcached's reply is ignored */
        keys_servers(self, keys, n, NULL, srv);
        if (batches_start(self, &bs, MK_OP_DELETE, keys, srv, NULL, n, 0, noreply) < 0)
            goto out;
        if (drive_ops(self, bs.ops, bs.rcs, bs.ns) < 0)
            goto out;
        int first = 0, fs = -1;
        for (size_t s = 0; s < bs.ns; s++)
            for (size_t j = 0; bs.ops[s] && j < bs.b[s].n; j++) {
                int rc = bs.b[s].res[j];
                if (outcome(rc) == OUT_FAIL && !first) {
                    first = rc;
                    fs = (int)s;
                } else if (rc == MK_ENOTFOUND && self->debug && !noreply) { /* python-memcached: expect(b"DELETED") */
                    PySys_WriteStderr("MemCached: while expecting 'DELETED', got unexpected response 'NOT_FOUND'\n");
                }
            }
        if (first) {
            ok = 0;
            if (failure(self, first, "delete_multi", NULL, fs) < 0)
                goto out;
        }
    }
    r = PyLong_FromLong(ok);
out:
    batches_free(&bs);
    for (size_t i = 0; converted && i < n; i++)
        Py_XDECREF(keys[i].keep);
    PyMem_Free(keys);
    PyMem_Free(origs);
    PyMem_Free(srv);
    Py_DECREF(seq);
    Py_DECREF(prefix);
    return r;
}

/* ------------------------------------------------------------ per server */

static PyObject *Client_flush_all(ClientObject *self, PyObject *unused)
{
    (void)unused;
    size_t ns = self->c ? mk_server_count(self->c) : 0;
    for (size_t i = 0; i < ns; i++) {
        if (!mk_server_alive(self->c, i))
            continue;   /* python-memcached skips the servers it cannot reach */
        mk_op_args a;
        mk_op_args_init(&a);
        a.code = MK_OP_FLUSH_ALL;
        a.server = (int)i;
        a.exptime = -1;
        mk_op *op;
        int rc = start_op(self, &a, NULL, &op);
        if (rc == 0)
            rc = run_op(self, op);
        mk_op_destroy(op);
        if (rc && failure(self, rc, "flush_all", NULL, (int)i) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

typedef struct statbuf {
    char *p;
    size_t n, cap;
    int oom;
} statbuf;

/* Collect "name\0value\0" pairs (no GIL needed). */
static void on_stat(void *ctx, const char *name, size_t nname, const char *value, size_t nvalue)
{
    statbuf *b = ctx;
    size_t need = b->n + nname + nvalue + 2;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, name, nname);
    b->p[b->n + nname] = '\0';
    memcpy(b->p + b->n + nname + 1, value, nvalue);
    b->p[b->n + nname + 1 + nvalue] = '\0';
    b->n = need;
}

/* _stats(group=None) -> [(server index, {name: value})] for the servers that answered. */
static PyObject *Client__stats(ClientObject *self, PyObject *args)
{
    const char *group = NULL;
    if (!PyArg_ParseTuple(args, "|z:_stats", &group))
        return NULL;
    PyObject *list = PyList_New(0);
    size_t ns = self->c ? mk_server_count(self->c) : 0;
    for (size_t i = 0; list && i < ns; i++) {
        if (!mk_server_alive(self->c, i))
            continue;
        statbuf b = {0};
        mk_op_args a;
        mk_op_args_init(&a);
        a.code = MK_OP_STATS;
        a.server = (int)i;
        a.group = group;
        a.stat_cb = on_stat;
        a.ctx = &b;
        mk_op *op;
        int rc = start_op(self, &a, NULL, &op);
        if (rc == 0)
            rc = run_op(self, op);
        mk_op_destroy(op);
        if (rc == 0 && !b.oom) {
            PyObject *d = PyDict_New();
            for (size_t off = 0; d && off < b.n;) {
                const char *name = b.p + off, *val = name + strlen(name) + 1;
                PyObject *v = PyUnicode_DecodeASCII(val, (Py_ssize_t)strlen(val), "replace");
                if (v == NULL || PyDict_SetItemString(d, name, v) < 0)
                    Py_CLEAR(d);
                Py_XDECREF(v);
                off = (size_t)(val - b.p) + strlen(val) + 1;
            }
            PyObject *t = d ? Py_BuildValue("(nN)", (Py_ssize_t)i, d) : NULL;
            if (t == NULL || PyList_Append(list, t) < 0)
                Py_CLEAR(list);
            Py_XDECREF(t);
        } else if (rc == MKPY_PYERR || (rc && failure(self, rc, "get_stats", NULL, (int)i) < 0)) {
            Py_CLEAR(list);
        }
        free(b.p);
    }
    return list;
}

/* _counters() -> [{counter: n}] per server (libmemkit's mk_server_counters). */
static PyObject *Client__counters(ClientObject *self, PyObject *unused)
{
    (void)unused;
    size_t ns = self->c ? mk_server_count(self->c) : 0;
    PyObject *l = PyList_New((Py_ssize_t)ns);
    for (size_t i = 0; l && i < ns; i++) {
        mk_server_counters n;
        mk_server_counters_get(self->c, i, &n);
        PyObject *d = Py_BuildValue("{sKsKsKsKsKsKsKsKsKsO}", "errors", (unsigned long long)n.errors, "timeouts",
                                    (unsigned long long)n.timeouts, "ejections", (unsigned long long)n.ejections,
                                    "rejoins", (unsigned long long)n.rejoins, "probes",
                                    (unsigned long long)n.probes, "retries", (unsigned long long)n.retries,
                                    "pool_waits", (unsigned long long)n.pool_waits, "pool_timeouts",
                                    (unsigned long long)n.pool_timeouts, "noreply_failed",
                                    (unsigned long long)n.noreply_failed, "alive",
                                    mk_server_alive(self->c, i) ? Py_True : Py_False);
        if (d == NULL)
            Py_CLEAR(l);
        else
            PyList_SET_ITEM(l, (Py_ssize_t)i, d);
    }
    return l;
}

static PyObject *Client_disconnect_all(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (self->c) {
        check_fork(self);
        mk_client_close_idle(self->c);
    }
    Py_RETURN_NONE;
}

static PyObject *Client_forget_dead_hosts(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (self->c)
        mk_server_revive(self->c, MK_ALL_SERVERS);
    Py_RETURN_NONE;
}

static PyObject *Client_check_key(ClientObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "key_extra_len", NULL};
    PyObject *o[2];
    if (parse_args("check_key", args, nargs, kwnames, names, 1, o) < 0)
        return NULL;
    int64_t extra;
    if (arg_i64(o[1], 0, &extra) < 0)
        return NULL;
    PyObject *key = o[0];
    if (PyTuple_Check(key) && PyTuple_GET_SIZE(key) >= 2)
        key = PyTuple_GET_ITEM(key, 1);
    if (key == Py_None) {
        PyErr_SetString(self->st->key_errors[KE_NONE], "Key is None");
        return NULL;
    }
    if (PyUnicode_Check(key) && PyUnicode_GET_LENGTH(key) == 0) {
        if (extra == 0) {
            PyErr_SetString(self->st->key_errors[KE_NONE], "Key is empty");
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (!PyBytes_Check(key)) {
        PyErr_SetString(self->st->key_errors[KE_TYPE], "Key must be a binary string");
        return NULL;
    }
    if (check_key(self, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), (Py_ssize_t)extra) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------- life cycle */

/* _configure(servers, distribution='ketama', connect_timeout=3.0, timeout=3.0, dead_retry=30,
 *            failure_limit=1, pool_size=8, checkout_timeout=30.0, auto_eject=True, buckets=None,
 *            flush_on_rejoin=False, binary=False, username=None, password=None, ascii_auth=False,
 *            tls=False, tls_ca_file=None, tls_cert_file=None, tls_key_file=None, tls_server_name=None,
 *            tls_verify=True, pipeline=False)
 * (Re)creates the libmemkit client; servers is libmemkit's list text ("" = no servers). */
static int Client_init(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"servers", "distribution", "connect_timeout", "timeout", "dead_retry",
                            "failure_limit", "pool_size", "checkout_timeout", "auto_eject", "buckets",
                            "flush_on_rejoin", "binary", "username", "password", "ascii_auth", "tls",
                            "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name", "tls_verify", "pipeline",
                            "pipeline_depth", NULL};
    const char *servers, *dist = "ketama", *user = NULL, *password = NULL;
    const char *ca = NULL, *cert = NULL, *key = NULL, *sname = NULL;
    double cto = 3.0, ito = 3.0, retry = 30.0, chk = 30.0;
    int flimit = 1, pool = 8, eject = 1, flush = 0, binary = 0, ascii_auth = 0, tls = 0, verify = 1, depth = 256;
    PyObject *buckets = Py_None, *pipeo = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|sdddiidpOppzzppzzzzpOi:Client", names, &servers, &dist, &cto, &ito,
                                     &retry, &flimit, &pool, &chk, &eject, &buckets, &flush, &binary, &user,
                                     &password, &ascii_auth, &tls, &ca, &cert, &key, &sname, &verify, &pipeo, &depth))
        return -1;
    /* pipeline: None (default) -- event loops yes, threads no; True -- both; False -- neither */
    int pipe = pipeo == Py_None ? 0 : PyObject_IsTrue(pipeo);
    if (pipe < 0)
        return -1;
    mk_options o;
    mk_options_init(&o);
    if (mk_distribution_parse(dist, &o.distribution) != 0) {
        PyErr_Format(PyExc_ValueError, "unknown distribution '%s' (ketama, modula, consistent, rendezvous, "
                     "ketama_fnv1a)", dist);
        return -1;
    }
    o.connect_timeout_ms = cto > 0 ? (int)(cto * 1000 + 0.5) : 0;
    o.io_timeout_ms = ito > 0 ? (int)(ito * 1000 + 0.5) : 0;
    o.retry_interval_ms = (int)(retry * 1000 + 0.5);
    o.failure_limit = flimit;
    o.pool_size = pool;
    o.checkout_timeout_ms = chk > 0 ? (int)(chk * 1000 + 0.5) : 0;
    o.auto_eject = eject != 0;
    o.flush_on_rejoin = flush != 0;
    o.binary = binary != 0;
    o.username = user;
    o.password = password;
    o.ascii_auth = ascii_auth != 0;
    o.tls = tls != 0;
    o.tls_ca_file = ca;
    o.tls_cert_file = cert;
    o.tls_key_file = key;
    o.tls_server_name = sname;
    o.tls_verify = verify != 0;
    o.pipeline = pipe != 0;
    o.pipeline_depth = depth;
    int loop_pipe = pipeo == Py_None ? 1 : pipe ? 2 : 0;   /* 1: asyncio only; 2: asyncio and gevent */
    size_t *bk = NULL, nbk = 0;
    if (buckets != Py_None) {
        PyObject *seq = PySequence_Fast(buckets, "buckets must be a sequence of server indexes");
        if (seq == NULL)
            return -1;
        nbk = (size_t)PySequence_Fast_GET_SIZE(seq);
        bk = PyMem_Calloc(nbk + 1, sizeof *bk);
        for (size_t i = 0; bk && i < nbk; i++)
            bk[i] = PyLong_AsSize_t(PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i));
        Py_DECREF(seq);
        if (bk == NULL || PyErr_Occurred()) {
            PyMem_Free(bk);
            if (!PyErr_Occurred())
                PyErr_NoMemory();
            return -1;
        }
    }
    mk_client *c = NULL;
    if (*servers) {
        char err[256] = "";
        int rc;
        Py_BEGIN_ALLOW_THREADS   /* resolving names may block */
        rc = mk_client_create(&c, servers, &o, err, sizeof err);
        Py_END_ALLOW_THREADS
        if (rc) {
            PyMem_Free(bk);
            PyObject *cls = rc == MK_EINVAL || rc == MK_EBADSERVERS ? PyExc_ValueError
                            : self->st->errors[-rc] ? self->st->errors[-rc] : self->st->error;
            PyErr_Format(cls, "%s", err[0] ? err : mk_strerror(rc));
            return -1;
        }
        for (size_t i = 0; i < nbk; i++) {
            if (bk[i] >= mk_server_count(c)) {
                PyMem_Free(bk);
                mk_client_destroy(c);
                PyErr_SetString(PyExc_ValueError, "bucket names a server out of range");
                return -1;
            }
        }
    }
    mk_client *old = self->c;
    self->c = c;
    self->opt = o;
    self->opt.username = self->opt.password = NULL; /* (mk_client_create copied them; ours are borrowed) */
    self->opt.tls_ca_file = self->opt.tls_cert_file = self->opt.tls_key_file = self->opt.tls_server_name = NULL;
    self->fork_gen = mkpy_fork_gen;
    PyMem_Free(self->buckets);
    self->buckets = bk;
    self->nbuckets = nbk;
    Py_CLEAR(self->sems);
    Py_CLEAR(self->sems_factory);
    mkpy_pipes_close(self);   /* (the old client's pipes) */
    self->loop_pipeline = loop_pipe;
    mk_client_destroy(old);   /* set_servers must not race with calls in other threads */
    return 0;
}

static PyObject *Client_configure(ClientObject *self, PyObject *args, PyObject *kw)
{
    if (Client_init(self, args, kw) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Client_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args, (void)kw;
    PyObject *m = PyType_GetModuleByDef(type, &mkpy_module);
    if (m == NULL)
        return NULL;
    ClientObject *self = (ClientObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->module = Py_NewRef(m);
    self->st = PyModule_GetState(m);
    self->check_keys = 1;
    self->max_value_len = 1024 * 1024;
    self->fork_gen = mkpy_fork_gen;
    return (PyObject *)self;
}

static int Client_traverse(ClientObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    Py_VISIT(self->serializer);
    Py_VISIT(self->deserializer);
    Py_VISIT(self->sems);
    Py_VISIT(self->sems_factory);
    Py_VISIT(self->pipes);
    return 0;
}

static int Client_clear(ClientObject *self)
{
    Py_CLEAR(self->serializer);
    Py_CLEAR(self->deserializer);
    Py_CLEAR(self->sems);
    Py_CLEAR(self->sems_factory);
    Py_CLEAR(self->module);
    return 0;
}

static void Client_dealloc(ClientObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->c) {
        check_fork(self);
        mkpy_pipes_close(self);
        mk_client_destroy(self->c);
        self->c = NULL;
    }
    PyMem_Free(self->buckets);
    Client_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *Client_get_pool_size(ClientObject *self, void *unused)
{
    (void)unused;
    return PyLong_FromLong(self->opt.pool_size);
}

static PyObject *Client_get_server_names(ClientObject *self, void *unused)
{
    (void)unused;
    size_t ns = self->c ? mk_server_count(self->c) : 0;
    PyObject *l = PyList_New((Py_ssize_t)ns);
    for (size_t i = 0; l && i < ns; i++) {
        PyObject *s = PyUnicode_FromString(mk_server_name(self->c, i));
        if (s == NULL)
            Py_CLEAR(l);
        else
            PyList_SET_ITEM(l, (Py_ssize_t)i, s);
    }
    return l;
}

static PyObject *Client_server_for_key(ClientObject *self, PyObject *key)
{
    mkey k;
    if (get_key(self, key, &k) < 0)
        return NULL;
    if (k.server >= 0)
        return PyLong_FromLong(k.server);
    if (self->c == NULL)
        Py_RETURN_NONE;
    int s = mk_server_for_key(self->c, k.p, (size_t)k.n);
    if (s < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(s);
}

#define FAST (METH_FASTCALL | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef Client_methods[] = {
    {"get", FN(Client_get), METH_FASTCALL | METH_KEYWORDS, "get(key, default=None) -> value, or default on a miss"},
    {"gets", FN(Client_gets), METH_O, "gets(key) -> value or None; with cache_cas, remembers the cas id"},
    {"set", FN(Client_set), FAST, "set(key, val, time=0, min_compress_len=0, noreply=False) -> True/False/0"},
    {"add", FN(Client_add), FAST, "add(key, val, time=0, min_compress_len=0, noreply=False)"},
    {"replace", FN(Client_replace), FAST, "replace(key, val, time=0, min_compress_len=0, noreply=False)"},
    {"append", FN(Client_append), FAST, "append(key, val, time=0, min_compress_len=0, noreply=False)"},
    {"prepend", FN(Client_prepend), FAST, "prepend(key, val, time=0, min_compress_len=0, noreply=False)"},
    {"cas", FN(Client_cas), FAST, "cas(key, val, time=0, min_compress_len=0, noreply=False): set without a cached cas id"},
    {"delete", FN(Client_delete), FAST, "delete(key, time=None, noreply=False) -> 1 or 0"},
    {"_delete", FN(Client__delete), METH_O, "_delete(key) -> True if it existed"},
    {"touch", FN(Client_touch), FAST, "touch(key, time=0, noreply=False) -> 1 or 0"},
    {"_meta_get", FN(Client__meta_get), FAST,
     "_meta_get(key, vivify=0, recache=0) -> (found, value, state, placeholder), None without meta"},
    {"invalidate", FN(Client_invalidate), FAST, "invalidate(key, time=0): mark stale; get_or_set recomputes it once"},
    {"incr", FN(Client_incr), FAST, "incr(key, delta=1, noreply=False) -> new value or None"},
    {"decr", FN(Client_decr), FAST, "decr(key, delta=1, noreply=False) -> new value or None"},
    {"get_multi", FN(Client_get_multi), FAST, "get_multi(keys, key_prefix='') -> {key: value}"},
    {"set_multi", FN(Client_set_multi), FAST,
     "set_multi(mapping, time=0, key_prefix='', min_compress_len=0, noreply=False) -> keys not stored"},
    {"delete_multi", FN(Client_delete_multi), FAST, "delete_multi(keys, time=None, key_prefix='', noreply=False) -> 1 or 0"},
    {"flush_all", FN(Client_flush_all), METH_NOARGS, "flush_all(): every reachable server"},
    {"_stats", FN(Client__stats), METH_VARARGS, "_stats(group=None) -> [(server index, {name: value})]"},
    {"disconnect_all", FN(Client_disconnect_all), METH_NOARGS, "close every idle pooled connection"},
    {"_counters", FN(Client__counters), METH_NOARGS, "per server: errors, timeouts, ejections, ... (counters())"},
    {"forget_dead_hosts", FN(Client_forget_dead_hosts), METH_NOARGS, "mark every server alive again"},
    {"check_key", FN(Client_check_key), FAST, "check_key(key, key_extra_len=0): raise a MemcachedKeyError if bad"},
    {"server_for_key", FN(Client_server_for_key), METH_O, "the index of the server that owns key (None: none)"},
    {"_configure", FN(Client_configure), METH_VARARGS | METH_KEYWORDS, "re-create the libmemkit client"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Client_members[] = {
    {"debug", T_INT, offsetof(ClientObject, debug), 0, "print failures on stderr"},
    {"cache_cas", T_BOOL, offsetof(ClientObject, cache_cas), 0, "gets() remembers cas ids in cas_ids (per thread and greenlet)"},
    {"do_check_key", T_BOOL, offsetof(ClientObject, check_keys), 0, "check keys as python-memcached does"},
    {"raise_errors", T_BOOL, offsetof(ClientObject, raise_errors), 0, "raise memkit.Error subclasses on failures"},
    {"pickleProtocol", T_INT, offsetof(ClientObject, pickle_protocol), 0, "pickle protocol for other values"},
    {"min_compress_len", T_PYSSIZET, offsetof(ClientObject, min_compress_len), 0, "default compression threshold"},
    {"server_max_value_length", T_PYSSIZET, offsetof(ClientObject, max_value_len), 0, "larger values are not stored"},
    {"serializer", T_OBJECT, offsetof(ClientObject, serializer), 0, "(key, value) -> (bytes, flags) or None"},
    {"deserializer", T_OBJECT, offsetof(ClientObject, deserializer), 0, "(key, bytes, flags) -> value or None"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Client_getset[] = {
    {"pool_size", (getter)Client_get_pool_size, NULL, "connections per server at most", NULL},
    {"server_names", (getter)Client_get_server_names, NULL, "libmemkit's server names", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Client_slots[] = {
    {Py_tp_new, Client_new},
    {Py_tp_init, Client_init},
    {Py_tp_dealloc, Client_dealloc},
    {Py_tp_traverse, Client_traverse},
    {Py_tp_clear, Client_clear},
    {Py_tp_methods, Client_methods},
    {Py_tp_members, Client_members},
    {Py_tp_getset, Client_getset},
    {Py_tp_doc, "The C core of memkit.Client (use memkit.Client)."},
    {0, NULL},
};

PyType_Spec mkpy_client_spec = {
    .name = "memkit._memkit.Client",
    .basicsize = sizeof(ClientObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Client_slots,
};
