/* python/memkit/codec.c — Python values <-> (bytes, flags): python-memcached's flags on write; python-memcached, pylibmc and pymemcache flags on read; zlib. */
#include "memkitpy.h"

#include <zlib.h>

/*
 * Flag bits (the same in python-memcached, pylibmc and pymemcache's serde):
 *   1 PICKLE, 2 INTEGER, 4 LONG, 8 COMPRESSED (zlib), 16 TEXT (UTF-8); 0 = bytes.
 * Writing follows python-memcached exactly: bytes 0, str 16, int (any size) 2,
 * everything else (bool and None included) pickled with flags 1. Reading accepts
 * pylibmc's LONG ints (4) and its INTEGER bools ("1"/"0", read back as ints, as
 * pylibmc itself does).
 */
enum { F_PICKLE = 1, F_INTEGER = 2, F_LONG = 4, F_COMPRESSED = 8, F_TEXT = 16 };

void mkpy_val_release(mkpy_val *v)
{
    Py_CLEAR(v->keep);
    free(v->heap);
    v->heap = NULL;
}

/* zlib-compress v in place if that makes it smaller (python-memcached's rule). */
static int maybe_compress(mkpy_val *v)
{
    uLongf cap = compressBound((uLong)v->n);
    char *buf = malloc(cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int zr;
    Py_BEGIN_ALLOW_THREADS
    zr = compress2((Bytef *)buf, &cap, (const Bytef *)v->p, (uLong)v->n, Z_DEFAULT_COMPRESSION);
    Py_END_ALLOW_THREADS
    if (zr != Z_OK || (Py_ssize_t)cap >= v->n) {
        free(buf);
        return 0;
    }
    Py_CLEAR(v->keep);
    v->heap = buf;
    v->p = buf;
    v->n = (Py_ssize_t)cap;
    v->flags |= F_COMPRESSED;
    return 0;
}

int mkpy_encode(ClientObject *self, PyObject *key, PyObject *v, Py_ssize_t min_compress, mkpy_val *out)
{
    memset(out, 0, sizeof *out);
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyBytes_Type) {
        out->p = PyBytes_AS_STRING(v);
        out->n = PyBytes_GET_SIZE(v);
    } else if (t == &PyUnicode_Type) {
        out->p = PyUnicode_AsUTF8AndSize(v, &out->n);   /* cached in the str object */
        if (out->p == NULL)
            return -1;
        out->flags = F_TEXT;
    } else if (t == &PyLong_Type) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        out->flags = F_INTEGER;
        min_compress = 0;   /* python-memcached never compresses numbers */
        if (!overflow) {
            out->n = snprintf(out->small, sizeof out->small, "%lld", x);
            out->p = out->small;
        } else {
            out->keep = PyObject_Str(v);
            if (out->keep == NULL)
                return -1;
            out->p = PyUnicode_AsUTF8AndSize(out->keep, &out->n);
            if (out->p == NULL)
                return -1;
        }
    } else {
        PyObject *r;
        if (self->serializer && self->serializer != Py_None) {   /* pymemcache-style serde: (key, value) -> (bytes, flags) */
            r = PyObject_CallFunctionObjArgs(self->serializer, key, v, NULL);
            if (r == NULL)
                return -1;
            PyObject *b;
            unsigned long fl;
            if (!PyArg_ParseTuple(r, "Sk;serializer must return (bytes, flags)", &b, &fl)) {
                Py_DECREF(r);
                return -1;
            }
            out->keep = Py_NewRef(b);
            out->flags = (uint32_t)fl;
            Py_DECREF(r);
        } else {
            PyObject *proto = PyLong_FromLong(self->pickle_protocol);
            if (proto == NULL)
                return -1;
            r = PyObject_CallFunctionObjArgs(self->st->pickle_dumps, v, proto, NULL);
            Py_DECREF(proto);
            if (r == NULL)
                return -1;
            out->keep = r;
            out->flags = F_PICKLE;
        }
        out->p = PyBytes_AS_STRING(out->keep);
        out->n = PyBytes_GET_SIZE(out->keep);
    }
    if (min_compress > 0 && out->n > min_compress && maybe_compress(out) < 0) {
        mkpy_val_release(out);
        return -1;
    }
    if (self->max_value_len > 0 && out->n > self->max_value_len) {
        mkpy_val_release(out);
        return 1;   /* python-memcached silently does not store it */
    }
    return 0;
}

/* Inflate p[0..n) into a new bytes object. */
static PyObject *inflate_bytes(const char *p, size_t n)
{
    size_t cap = n * 4 + 64;
    char *buf = malloc(cap);
    if (buf == NULL)
        return PyErr_NoMemory();
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) {
        free(buf);
        PyErr_SetString(PyExc_ValueError, "zlib: inflateInit failed");
        return NULL;
    }
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    int zr;
    for (;;) {
        zs.next_out = (Bytef *)buf + zs.total_out;
        zs.avail_out = (uInt)(cap - zs.total_out);
        zr = inflate(&zs, Z_NO_FLUSH);
        if (zr == Z_STREAM_END)
            break;
        if ((zr != Z_OK && zr != Z_BUF_ERROR) || (zr == Z_BUF_ERROR && zs.avail_in == 0 && zs.avail_out)) {
            inflateEnd(&zs);
            free(buf);
            PyErr_Format(PyExc_ValueError, "Error -3 while decompressing data: %s",
                         zs.msg ? zs.msg : "invalid or truncated stream");
            return NULL;
        }
        if (zs.avail_out == 0) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                inflateEnd(&zs);
                free(buf);
                return PyErr_NoMemory();
            }
            buf = nb;
            cap *= 2;
        }
    }
    PyObject *r = PyBytes_FromStringAndSize(buf, (Py_ssize_t)zs.total_out);
    inflateEnd(&zs);
    free(buf);
    return r;
}

static PyObject *parse_int(const char *p, size_t n)
{
    char small[64];
    if (n < sizeof small) {   /* PyLong_FromString needs a NUL-terminated copy */
        memcpy(small, p, n);
        small[n] = '\0';
        char *end;
        PyObject *r = PyLong_FromString(small, &end, 10);
        if (r || !PyErr_ExceptionMatches(PyExc_ValueError))
            return r;
        PyErr_Clear();
    }
    PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);   /* int(b'...'): exact errors */
    if (b == NULL)
        return NULL;
    PyObject *r = PyObject_CallOneArg((PyObject *)&PyLong_Type, b);
    Py_DECREF(b);
    return r;
}

PyObject *mkpy_decode(ClientObject *self, PyObject *key, const char *p, size_t n, uint32_t flags)
{
    PyObject *inflated = NULL, *r;
    if (flags & F_COMPRESSED) {
        inflated = inflate_bytes(p, n);
        if (inflated == NULL)
            return NULL;
        p = PyBytes_AS_STRING(inflated);
        n = (size_t)PyBytes_GET_SIZE(inflated);
        flags &= ~(uint32_t)F_COMPRESSED;
    }
    if (flags == 0) {
        r = inflated ? Py_NewRef(inflated) : PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    } else if (flags & F_TEXT) {
        r = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "strict");
    } else if (flags & (F_INTEGER | F_LONG)) {
        r = parse_int(p, n);
    } else if (self->deserializer && self->deserializer != Py_None) {   /* pymemcache-style: (key, bytes, flags) -> value */
        PyObject *b = inflated ? Py_NewRef(inflated) : PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
        PyObject *fl = PyLong_FromUnsignedLong(flags);
        r = (b && fl) ? PyObject_CallFunctionObjArgs(self->deserializer, key ? key : Py_None, b, fl, NULL) : NULL;
        Py_XDECREF(b);
        Py_XDECREF(fl);
    } else if (flags & F_PICKLE) {
        PyObject *b = inflated ? Py_NewRef(inflated) : PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
        r = b ? PyObject_CallOneArg(self->st->pickle_loads, b) : NULL;
        Py_XDECREF(b);
        if (r == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
            /* python-memcached: an unpicklable value reads as None (logged in debug mode) */
            if (self->debug) {
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb);
                PySys_FormatStderr("MemCached: Pickle error: %S\n", ev ? ev : Py_None);
                Py_XDECREF(et);
                Py_XDECREF(ev);
                Py_XDECREF(tb);
            }
            PyErr_Clear();
            r = Py_NewRef(Py_None);
        }
    } else {
        r = PyErr_Format(PyExc_ValueError, "Unknown flags on get: %x", flags);
    }
    Py_XDECREF(inflated);
    return r;
}
