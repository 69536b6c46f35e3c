/* python/memkit/_memkit.c — the memkit._memkit module: multi-phase init, module state, the one error table, wait callback, fork generation. */
#include "memkitpy.h"

#include <pthread.h>

/*
 * The one table mapping libmemkit's MK_E* codes to exceptions. python-memcached
 * never raises on network trouble (it returns None/0), so these are raised only
 * by Client(..., raise_errors=True) and by the constructor; every class derives
 * from memkit.Error. NotNumericError (incr/decr of a value that is not a number)
 * is raised always, and is a ValueError too: python-memcached raises ValueError.
 */
static const struct {
    int code;
    const char *name;           /* class in the memkit module */
    const char *base;           /* NULL: memkit.Error */
} error_table[] = {
    {MK_EINVAL, "InvalidArgumentError", NULL},
    {MK_ENOMEM, "OutOfMemoryError", NULL},
    {MK_EBADKEY, "BadKeyError", NULL},
    {MK_EBADSERVERS, "ServerListError", NULL},
    {MK_ECONNECT, "ConnectionError", NULL},
    {MK_ERESOLVE, "ResolveError", "ConnectionError"},
    {MK_EIO, "IOError", "ConnectionError"},
    {MK_ESERVERDEAD, "ServerDeadError", "ConnectionError"},
    {MK_ENOSERVER, "NoServerError", "ConnectionError"},
    {MK_ETIMEDOUT, "TimeoutError", NULL},
    {MK_EPOOLTIMEOUT, "PoolTimeoutError", "TimeoutError"},
    {MK_EPROTO, "ProtocolError", NULL},
    {MK_ECLIENTERR, "ClientErrorReply", "ServerReplyError"},
    {MK_ESERVERERR, "ServerErrorReply", "ServerReplyError"},
    {MK_EERROR, "ErrorReply", "ServerReplyError"},
    {MK_ENOTNUM, "NotNumericError", "ServerReplyError"},
    {MK_EAUTH, "AuthError", NULL},
    {MK_ETLS, "TLSError", "ConnectionError"},
};
/* Intermediate classes that map no code of their own. */
static const char *const extra_classes[] = {"ServerReplyError"};

unsigned long mkpy_fork_gen;

static void on_fork_child(void)
{
    mkpy_fork_gen++;   /* one thread in the child: no race */
}

PyObject *mkpy_raise(mkpy_state *st, int rc, const char *what)
{
    PyObject *cls = (rc < 0 && -rc < 32 && st->errors[-rc]) ? st->errors[-rc] : st->error;
    PyErr_Format(cls, "%s: %s", what, mk_strerror(rc));
    return NULL;
}

static mkpy_state *get_state(PyObject *m)
{
    return (mkpy_state *)PyModule_GetState(m);
}

int mkpy_auto_green(mkpy_state *st)
{
    if (st->wait_cb || !st->auto_green)
        return 0;
    PyObject *monkey = PyDict_GetItemWithError(PyImport_GetModuleDict(), st->monkey_name); /* borrowed */
    if (monkey == NULL)
        return PyErr_Occurred() ? -1 : 0; /* gevent never patched anything: the common case, one dict lookup */
    PyObject *r = PyObject_CallMethod(monkey, "is_module_patched", "s", "socket");
    if (r == NULL)
        return -1;
    int patched = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (patched <= 0)
        return patched;
    PyObject *memkit = PyImport_ImportModule("memkit");
    if (memkit == NULL)
        return -1;
    r = PyObject_CallMethod(memkit, "make_green", NULL);
    Py_DECREF(memkit);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* _set_loop_hook(fn or None) */
static PyObject *set_loop_hook(PyObject *m, PyObject *fn)
{
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "the loop hook must be callable or None");
        return NULL;
    }
    mkpy_state *st = get_state(m);
    Py_XSETREF(st->loop_hook, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* _auto_green(flag): whether calls turn cooperative mode on when they find gevent patched. */
static PyObject *set_auto_green(PyObject *m, PyObject *flag)
{
    int on = PyObject_IsTrue(flag);
    if (on < 0)
        return NULL;
    get_state(m)->auto_green = on;
    Py_RETURN_NONE;
}

/* set_wait_callback(cb, lock_factory=None): cb(fd, write, timeout) is called for
 * every network wait (fd -1: sleep for timeout); None restores blocking mode. */
static PyObject *set_wait_callback(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *names[] = {"callback", "lock_factory", NULL};
    PyObject *cb, *lf = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:set_wait_callback", names, &cb, &lf))
        return NULL;
    if ((cb != Py_None && !PyCallable_Check(cb)) || (lf != Py_None && !PyCallable_Check(lf))) {
        PyErr_SetString(PyExc_TypeError, "callback and lock_factory must be callable or None");
        return NULL;
    }
    mkpy_state *st = get_state(m);
    Py_XSETREF(st->wait_cb, cb == Py_None ? NULL : Py_NewRef(cb));
    Py_XSETREF(st->lock_factory, (cb == Py_None || lf == Py_None) ? NULL : Py_NewRef(lf));
    Py_RETURN_NONE;
}

static PyObject *get_wait_callback(PyObject *m, PyObject *unused)
{
    (void)unused;
    mkpy_state *st = get_state(m);
    return Py_NewRef(st->wait_cb ? st->wait_cb : Py_None);
}

static PyObject *fork_generation(PyObject *m, PyObject *unused)
{
    (void)m, (void)unused;
    return PyLong_FromUnsignedLong(mkpy_fork_gen);
}

static PyMethodDef module_methods[] = {
    {"set_wait_callback", (PyCFunction)(void (*)(void))set_wait_callback, METH_VARARGS | METH_KEYWORDS,
     "set_wait_callback(callback, lock_factory=None): cooperative mode; callback(fd, write, timeout) "
     "waits for fd (fd -1: sleep timeout seconds). None: blocking mode (GIL released)."},
    {"get_wait_callback", get_wait_callback, METH_NOARGS, "The current wait callback, or None."},
    {"_fork_generation", fork_generation, METH_NOARGS, "How many forks this process descends through."},
    {"_set_loop_hook", set_loop_hook, METH_O,
     "_set_loop_hook(fn): fn() -> the current event loop's driver, or None (memkit/_loops.py)."},
    {"_auto_green", set_auto_green, METH_O,
     "_auto_green(flag): a call turns cooperative mode on once gevent has patched socket (default True)."},
    {NULL, NULL, 0, NULL},
};

static int add_class(PyObject *m, PyObject **slot, const char *name, PyObject *base)
{
    char full[96];
    snprintf(full, sizeof full, "memkit.%s", name);
    *slot = PyErr_NewException(full, base, NULL);
    if (*slot == NULL)
        return -1;
    return PyModule_AddObjectRef(m, name, *slot);
}

static int module_exec(PyObject *m)
{
    static int atfork_done;
    mkpy_state *st = get_state(m);
    if (!atfork_done) {
        if (pthread_atfork(NULL, NULL, on_fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return -1;
        }
        atfork_done = 1;
    }
    st->auto_green = 1;
    st->monkey_name = PyUnicode_InternFromString("gevent.monkey");
    if (st->monkey_name == NULL)
        return -1;
    if (add_class(m, &st->error, "Error", NULL) < 0)
        return -1;
    PyObject *extra = NULL;
    if (add_class(m, &extra, extra_classes[0], st->error) < 0)
        return -1;
    Py_DECREF(extra);
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++) {
        PyObject *base = st->error;
        if (error_table[i].base) {
            base = PyObject_GetAttrString(m, error_table[i].base);
            if (base == NULL)
                return -1;
            Py_DECREF(base);   /* the module keeps it alive */
        }
        PyObject *bases = NULL;
        if (error_table[i].code == MK_ENOTNUM) { /* also a ValueError, which python-memcached raises there */
            bases = PyTuple_Pack(2, base, PyExc_ValueError);
            if (bases == NULL)
                return -1;
        }
        int rc = add_class(m, &st->errors[-error_table[i].code], error_table[i].name, bases ? bases : base);
        Py_XDECREF(bases);
        if (rc < 0)
            return -1;
    }
    /* python-memcached's key exceptions; memkit/__init__.py hangs them on Client too */
    static const char *const kn[KE_COUNT] = {
        "MemcachedKeyError", "MemcachedKeyLengthError", "MemcachedKeyCharacterError",
        "MemcachedKeyNoneError", "MemcachedKeyTypeError", "MemcachedStringEncodingError"};
    for (int i = 0; i < KE_COUNT; i++) {
        PyObject *base = (i == KE_KEY || i == KE_ENCODING) ? PyExc_Exception : st->key_errors[KE_KEY];
        if (add_class(m, &st->key_errors[i], kn[i], base) < 0)
            return -1;
    }
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (pickle == NULL)
        return -1;
    st->pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
    st->pickle_loads = PyObject_GetAttrString(pickle, "loads");
    Py_DECREF(pickle);
    if (st->pickle_dumps == NULL || st->pickle_loads == NULL)
        return -1;
    st->client_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &mkpy_client_spec, NULL);
    if (st->client_type == NULL)
        return -1;
    for (int i = 0; i < KE_COUNT; i++) {
        PyObject *name = PyObject_GetAttrString(st->key_errors[i], "__name__");
        if (name == NULL)
            return -1;
        const char *dot = strrchr(PyUnicode_AsUTF8(name), '.');
        int rc = PyObject_SetAttrString((PyObject *)st->client_type, dot ? dot + 1 : PyUnicode_AsUTF8(name),
                                        st->key_errors[i]);
        Py_DECREF(name);
        if (rc < 0)
            return -1;
    }
    if (PyModule_AddObjectRef(m, "Client", (PyObject *)st->client_type) < 0)
        return -1;
    if ((st->s_waiter = PyUnicode_InternFromString("waiter")) == NULL ||
        (st->s_wait = PyUnicode_InternFromString("wait")) == NULL ||
        (st->s_submitted = PyUnicode_InternFromString("submitted")) == NULL ||
        (st->s_aio = PyUnicode_InternFromString("aio")) == NULL)
        return -1;
    st->evpipe_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &mkpy_evpipe_spec, NULL);
    if (st->evpipe_type == NULL || PyModule_AddObjectRef(m, "EvPipe", (PyObject *)st->evpipe_type) < 0)
        return -1;
    if (PyModule_AddStringConstant(m, "libmemkit_version", MK_VERSION_STRING) < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    mkpy_state *st = get_state(m);
    Py_VISIT(st->client_type);
    Py_VISIT(st->error);
    for (int i = 0; i < 32; i++)
        Py_VISIT(st->errors[i]);
    for (int i = 0; i < KE_COUNT; i++)
        Py_VISIT(st->key_errors[i]);
    Py_VISIT(st->pickle_dumps);
    Py_VISIT(st->pickle_loads);
    Py_VISIT(st->wait_cb);
    Py_VISIT(st->lock_factory);
    Py_VISIT(st->loop_hook);
    Py_VISIT(st->evpipe_type);
    return 0;
}

static int module_clear(PyObject *m)
{
    mkpy_state *st = get_state(m);
    Py_CLEAR(st->client_type);
    Py_CLEAR(st->error);
    for (int i = 0; i < 32; i++)
        Py_CLEAR(st->errors[i]);
    for (int i = 0; i < KE_COUNT; i++)
        Py_CLEAR(st->key_errors[i]);
    Py_CLEAR(st->pickle_dumps);
    Py_CLEAR(st->pickle_loads);
    Py_CLEAR(st->wait_cb);
    Py_CLEAR(st->lock_factory);
    Py_CLEAR(st->loop_hook);
    Py_CLEAR(st->evpipe_type);
    Py_CLEAR(st->s_waiter);
    Py_CLEAR(st->s_wait);
    Py_CLEAR(st->s_submitted);
    Py_CLEAR(st->s_aio);
    Py_CLEAR(st->monkey_name);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

PyModuleDef mkpy_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memkit._memkit",
    .m_doc = "memkit: a memcached client over libmemkit (C core of the memkit package).",
    .m_size = sizeof(mkpy_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__memkit(void)
{
    return PyModuleDef_Init(&mkpy_module);
}
