/* python/memkit/evloop.c — event-loop mode (gevent hub, asyncio loop): the EvPipe type over libmemkit's mk_evpipe, and running ops through it. */
#include "memkitpy.h"

#include <structmember.h>

/*
 * The loop's driver (memkit/_loops.py, one per gevent hub or asyncio loop) is
 * found by the module's loop hook; it has
 *   waiter()          a new waiter (gevent Waiter, asyncio Future)
 *   wait(w)           wait cooperatively until w is woken (raises if the caller is killed or cancelled)
 *   submitted(ep, sent)  ep has new requests: run ep.io() at the end of this loop iteration (sent: they
 *                     were written already, only its watchers need arming)
 *   wait_fd(fd, write, timeout)   a cooperative wait for a non-pipelined op
 * and drives each EvPipe: ep.io() -> the waiters of the ops that ended; ep.state() -> (fd, events,
 * timeout_ms, generation) for its watchers.
 */

typedef struct EvPipeObject {
    PyObject_HEAD
    mk_evpipe *p;               /* NULL once the client is gone */
    PyObject *client;           /* its ClientObject (strong) */
    unsigned long fork_gen;     /* mkpy_fork_gen when last used: a child must not read the parent's replies */
    int flagged;                /* the driver's: queued for its end-of-iteration flush */
    PyObject *watch;            /* the driver's per-pipe state */
} EvPipeObject;

static PyObject *EvPipe_io(EvPipeObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *l = PyList_New(0);
    if (l == NULL || self->p == NULL)
        return l;
    if (self->fork_gen != mkpy_fork_gen) {
        /* a forked child: the socket is still the parent's too; before anything is read from it, the
         * client forgets its connections and this pipe's calls go again on one of the child's own */
        mkpy_check_fork((ClientObject *)self->client);
        self->fork_gen = mkpy_fork_gen;
        if (self->p == NULL)
            return l;
    }
    mk_evpipe_io(self->p);
    PyObject *w;
    while ((w = mk_evpipe_done(self->p, NULL)) != NULL) {
        int rc = PyList_Append(l, w);
        Py_DECREF(w);   /* the reference mkpy_pipe_run gave the pipe */
        if (rc < 0) {
            Py_DECREF(l);
            return NULL;
        }
    }
    return l;
}

static PyObject *EvPipe_state(EvPipeObject *self, PyObject *unused)
{
    (void)unused;
    if (self->p == NULL)
        return Py_BuildValue("(iiiI)", -1, 0, -1, 0u);
    return Py_BuildValue("(iiiI)", mk_evpipe_fd(self->p), (int)mk_evpipe_events(self->p),
                         mk_evpipe_timeout_ms(self->p), mk_evpipe_generation(self->p));
}

static int EvPipe_traverse(EvPipeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->watch);
    Py_VISIT(self->client);
    return 0;
}

static int EvPipe_clear(EvPipeObject *self)
{
    Py_CLEAR(self->watch);
    Py_CLEAR(self->client);
    return 0;
}

static void EvPipe_dealloc(EvPipeObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    EvPipe_clear(self);
    mk_evpipe_free(self->p);   /* (no op can be in it: each holds its waiting caller, which holds the client) */
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef EvPipe_methods[] = {
    {"io", (PyCFunction)EvPipe_io, METH_NOARGS,
     "io() -> the waiters of the calls that ended: connect, write, read, time out, without blocking."},
    {"state", (PyCFunction)EvPipe_state, METH_NOARGS,
     "state() -> (fd, events, timeout_ms, generation): what to watch (events: POLLIN 1 | POLLOUT 4)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef EvPipe_members[] = {
    {"flagged", T_INT, offsetof(EvPipeObject, flagged), 0, "the driver's flush mark"},
    {"watch", T_OBJECT, offsetof(EvPipeObject, watch), 0, "the driver's watcher state"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot EvPipe_slots[] = {
    {Py_tp_doc, "One connection to one server shared by the calls of one event loop (libmemkit's mk_evpipe)."},
    {Py_tp_dealloc, EvPipe_dealloc},
    {Py_tp_traverse, EvPipe_traverse},
    {Py_tp_clear, EvPipe_clear},
    {Py_tp_methods, EvPipe_methods},
    {Py_tp_members, EvPipe_members},
    {0, NULL},
};

PyType_Spec mkpy_evpipe_spec = {
    .name = "memkit._memkit.EvPipe",
    .basicsize = sizeof(EvPipeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = EvPipe_slots,
};

/* ---- the client's side ---- */

PyObject *mkpy_loop_driver(ClientObject *self)
{
    if (self->st->loop_hook == NULL)
        return NULL;
    PyObject *d = PyObject_CallNoArgs(self->st->loop_hook);
    if (d == Py_None) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* The EvPipe of server i for this driver (borrowed), created on first use. NULL: an exception, or
 * (no exception) this client cannot pipeline (binary, TLS, SASL). */
static EvPipeObject *pipe_for(ClientObject *self, PyObject *drv, int i)
{
    if (self->pipes == NULL && (self->pipes = PyDict_New()) == NULL)
        return NULL;
    PyObject *l = PyDict_GetItemWithError(self->pipes, drv);
    if (l == NULL) {
        if (PyErr_Occurred())
            return NULL;
        size_t n = mk_server_count(self->c);
        l = PyList_New((Py_ssize_t)n);
        if (l == NULL)
            return NULL;
        for (size_t j = 0; j < n; j++)
            PyList_SET_ITEM(l, (Py_ssize_t)j, Py_NewRef(Py_None));
        int rc = PyDict_SetItem(self->pipes, drv, l);
        Py_DECREF(l);
        if (rc < 0)
            return NULL;
    }
    PyObject *ep = PyList_GET_ITEM(l, i);
    if (ep != Py_None)
        return (EvPipeObject *)ep;
    mk_evpipe *p;
    int rc = mk_evpipe_new(self->c, (size_t)i, &p);
    if (rc != 0) {
        if (rc == MK_ENOMEM)
            PyErr_NoMemory();
        return NULL;
    }
    EvPipeObject *o = PyObject_GC_New(EvPipeObject, self->st->evpipe_type);
    if (o == NULL) {
        mk_evpipe_free(p);
        return NULL;
    }
    o->p = p;
    o->flagged = 0;
    o->watch = NULL;
    o->client = Py_NewRef((PyObject *)self);
    o->fork_gen = mkpy_fork_gen;
    PyObject_GC_Track(o);
    PyList_SetItem(l, i, (PyObject *)o);   /* steals */
    return o;
}

int mkpy_pipe_add(ClientObject *self, mk_op *op, PyObject *drv, mkpy_piped *h)
{
    h->ep = h->w = NULL;
    EvPipeObject *ep = pipe_for(self, drv, mk_op_server(op));
    if (ep == NULL)
        return PyErr_Occurred() ? MKPY_PYERR : MK_EAGAIN;
    PyObject *w = PyObject_CallMethodNoArgs(drv, self->st->s_waiter);
    if (w == NULL)
        return MKPY_PYERR;
    bool idle = !mk_evpipe_pending(ep->p);
    int rc = mk_evpipe_add(ep->p, op, w);
    if (rc != 0) {
        Py_DECREF(w);
        return rc == MK_ENOMEM ? (PyErr_NoMemory(), MKPY_PYERR) : MK_EAGAIN;
    }
    Py_INCREF(w);   /* the pipe's reference, given back by EvPipe.io */
    h->ep = Py_NewRef((PyObject *)ep);
    h->w = w;
    /* the first call into an idle pipe goes out at once (a lone caller waits for no loop iteration);
     * the calls made after it in the same iteration go out together at its end */
    if (idle)
        mk_evpipe_flush(ep->p);
    PyObject *r = PyObject_CallMethodObjArgs(drv, self->st->s_submitted, (PyObject *)ep, idle ? Py_True : Py_False,
                                             NULL);
    if (r == NULL) {
        mkpy_pipe_leave(op, h, 0);
        return MKPY_PYERR;
    }
    Py_DECREF(r);
    return 0;
}

void mkpy_pipe_leave(mk_op *op, mkpy_piped *h, int forget)
{
    if (h->ep == NULL)
        return;
    EvPipeObject *ep = (EvPipeObject *)h->ep;
    int left = ep->p == NULL ? MK_EINVAL : forget ? mk_evpipe_forget(ep->p, op) : mk_evpipe_cancel(ep->p, op);
    if (left != MK_EINVAL)
        Py_DECREF(h->w);   /* the pipe's: it no longer has the op (MK_EINVAL: EvPipe.io gave it back already) */
    Py_CLEAR(h->w);
    Py_CLEAR(h->ep);
}

int mkpy_pipe_wait(ClientObject *self, PyObject *drv, mk_op *op, mkpy_piped *h)
{
    PyObject *r = PyObject_CallMethodOneArg(drv, self->st->s_wait, h->w);
    if (r == NULL) {   /* the caller leaves (killed, cancelled): the op is ours again */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        mkpy_pipe_leave(op, h, 0);
        PyErr_Restore(et, ev, tb);
        return MKPY_PYERR;
    }
    Py_DECREF(r);
    Py_CLEAR(h->w);
    Py_CLEAR(h->ep);
    return mk_op_step(op);
}

/* fn(self, driver, pipe) for each pipe of the client that still has its mk_evpipe. */
static void each_pipe(ClientObject *self, void (*fn)(ClientObject *, PyObject *, EvPipeObject *))
{
    if (self->pipes == NULL)
        return;
    Py_ssize_t pos = 0;
    PyObject *drv, *l;
    while (PyDict_Next(self->pipes, &pos, &drv, &l))
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(l); i++) {
            PyObject *ep = PyList_GET_ITEM(l, i);
            if (ep != Py_None && ((EvPipeObject *)ep)->p != NULL)
                fn(self, drv, (EvPipeObject *)ep);
        }
}

static void pipe_after_fork(ClientObject *self, PyObject *drv, EvPipeObject *ep)
{
    mk_evpipe_after_fork(ep->p);
    ep->fork_gen = mkpy_fork_gen;
    if (mk_evpipe_pending(ep->p)) {   /* its requests go again: wake the driver */
        PyObject *r = PyObject_CallMethodObjArgs(drv, self->st->s_submitted, (PyObject *)ep, Py_False, NULL);
        if (r == NULL)
            PyErr_WriteUnraisable(drv);
        Py_XDECREF(r);
    }
}

void mkpy_pipes_after_fork(ClientObject *self)
{
    each_pipe(self, pipe_after_fork);
}

static void pipe_close(ClientObject *self, PyObject *drv, EvPipeObject *ep)
{
    (void)self, (void)drv;
    mk_evpipe_free(ep->p);
    ep->p = NULL;
}

void mkpy_pipes_close(ClientObject *self)
{
    each_pipe(self, pipe_close);
    Py_CLEAR(self->pipes);
}
