/* resolver._hotpath: the batch resolve hot path's per-identifier loops, in C.
 *
 * Pure-Python twins live in resolver/services/wire.py and make the same results; the handlers
 * use this module when registry.native.load() finds it. Every function holds the GIL for its
 * whole run and calls back into no Python code, and never keeps a borrowed reference past it.
 *
 *   batch_identifiers(raw: bytes) -> list[bytes] | None
 *       The identifiers of a serialized BatchResolveRequest/StreamResolveRequest that has only
 *       field 1 (repeated string identifiers), each as its UTF-8 bytes; None for anything else
 *       (other or unknown fields, malformed wire data, invalid UTF-8), which the caller then parses
 *       in full with protobuf.
 *   fold_keys(raws: list[bytes]) -> list[bytes]
 *       Each item with ASCII a-z upper-cased (registry.identifier.fold); an item with nothing to
 *       change is the same object.
 *   frame_results(raws: list[bytes], found: list, slow: dict[int, bytes]) -> bytes
 *       The encoded `repeated ResolveResult results = 1`: for each i, a non-empty bytes found[i]
 *       is framed as ResolveResult{identifier = raws[i], record = found[i]}; otherwise (None or
 *       b"") slow[i] is copied verbatim (an already framed field-1 item).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "../registry/native_wire.h"

/* Reads a varint of at most 5 bytes at *pos (< end), as protobuf's parser demands of a tag or a
 * length (a longer one, even with zero padding, is "Wire format was corrupt"); returns 0 on
 * truncation, on a longer varint, or on a value above INT32_MAX. */
static int get_varint32(const unsigned char **pos, const unsigned char *end, uint64_t *value) {
    uint64_t result = 0;
    const unsigned char *p = *pos;
    for (int shift = 0; p < end && shift < 35; shift += 7) {
        unsigned char byte = *p++;
        result |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            if (result > 0x7FFFFFFF) return 0;
            *pos = p;
            *value = result;
            return 1;
        }
    }
    return 0;
}

static PyObject *batch_identifiers(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = view.buf, *end = p + view.len;
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    while (p < end) {
        uint64_t tag, length;
        if (*p == 0x0A) { /* field 1, length-delimited: the common one-byte tag */
            p++;
        } else {
            if (!get_varint32(&p, end, &tag) || tag != 0x0A) goto not_plain;
        }
        if (!get_varint32(&p, end, &length) || length > (uint64_t)(end - p)) goto not_plain;
        if (!valid_utf8(p, (Py_ssize_t)length)) goto not_plain;
        PyObject *item = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)length);
        if (item == NULL) goto fail;
        int rc = PyList_Append(out, item);
        Py_DECREF(item);
        if (rc < 0) goto fail;
        p += length;
    }
    PyBuffer_Release(&view);
    return out;
not_plain:
    Py_DECREF(out);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *fold_keys(PyObject *self, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "fold_keys: expected a list of bytes");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(arg, i);
        if (!PyBytes_Check(item)) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "fold_keys: expected a list of bytes");
            return NULL;
        }
        const char *s = PyBytes_AS_STRING(item);
        Py_ssize_t len = PyBytes_GET_SIZE(item), j = 0;
        while (j < len && !(s[j] >= 'a' && s[j] <= 'z')) j++;
        if (j == len && PyBytes_CheckExact(item)) {
            Py_INCREF(item);
            PyList_SET_ITEM(out, i, item);
            continue;
        }
        /* A fresh object: PyBytes_FromStringAndSize(s, 1) would answer CPython's shared
         * one-byte singleton, and changing it in place would change b"h" everywhere. */
        PyObject *folded = PyBytes_FromStringAndSize(NULL, len);
        if (folded == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        char *d = PyBytes_AS_STRING(folded);
        memcpy(d, s, (size_t)len);
        for (; j < len; j++)
            if (d[j] >= 'a' && d[j] <= 'z') d[j] = (char)(d[j] - 32);
        PyList_SET_ITEM(out, i, folded);
    }
    return out;
}

static PyObject *frame_results(PyObject *self, PyObject *args) {
    PyObject *raws, *found, *slow;
    if (!PyArg_ParseTuple(args, "O!O!O!:frame_results", &PyList_Type, &raws, &PyList_Type, &found,
                          &PyDict_Type, &slow))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(raws);
    if (PyList_GET_SIZE(found) != n) {
        PyErr_SetString(PyExc_ValueError, "frame_results: raws and found differ in length");
        return NULL;
    }
    /* Pass 1: the exact size. Items from `slow` are looked up again in pass 2 (the dict cannot
     * change in between: no Python code runs). */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *raw = PyList_GET_ITEM(raws, i), *data = PyList_GET_ITEM(found, i);
        if (!PyBytes_Check(raw)) {
            PyErr_SetString(PyExc_TypeError, "frame_results: raws must hold bytes");
            return NULL;
        }
        if (PyBytes_Check(data) && PyBytes_GET_SIZE(data) > 0) {
            Py_ssize_t n_raw = PyBytes_GET_SIZE(raw), n_data = PyBytes_GET_SIZE(data);
            Py_ssize_t inner = 2 + varint_size(n_raw) + n_raw + varint_size(n_data) + n_data;
            total += 1 + varint_size(inner) + inner;
        } else {
            PyObject *key = PyLong_FromSsize_t(i);
            if (key == NULL) return NULL;
            PyObject *item = PyDict_GetItemWithError(slow, key);
            Py_DECREF(key);
            if (item == NULL) {
                if (!PyErr_Occurred())
                    PyErr_Format(PyExc_KeyError, "frame_results: no slow result for item %zd", i);
                return NULL;
            }
            if (!PyBytes_Check(item)) {
                PyErr_Format(PyExc_TypeError, "frame_results: slow result %zd is not bytes", i);
                return NULL;
            }
            total += PyBytes_GET_SIZE(item);
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *raw = PyList_GET_ITEM(raws, i), *data = PyList_GET_ITEM(found, i);
        if (PyBytes_Check(data) && PyBytes_GET_SIZE(data) > 0) {
            Py_ssize_t n_raw = PyBytes_GET_SIZE(raw), n_data = PyBytes_GET_SIZE(data);
            Py_ssize_t inner = 2 + varint_size(n_raw) + n_raw + varint_size(n_data) + n_data;
            *w++ = 0x0A;
            w = put_varint(w, (uint64_t)inner);
            *w++ = 0x0A;
            w = put_varint(w, (uint64_t)n_raw);
            memcpy(w, PyBytes_AS_STRING(raw), n_raw);
            w += n_raw;
            *w++ = 0x12;
            w = put_varint(w, (uint64_t)n_data);
            memcpy(w, PyBytes_AS_STRING(data), n_data);
            w += n_data;
        } else {
            PyObject *key = PyLong_FromSsize_t(i);
            if (key == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyObject *item = PyDict_GetItemWithError(slow, key); /* borrowed, checked in pass 1 */
            Py_DECREF(key);
            if (item == NULL) {
                Py_DECREF(out);
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "slow results changed");
                return NULL;
            }
            memcpy(w, PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item));
            w += PyBytes_GET_SIZE(item);
        }
    }
    if (w != PyBytes_AS_STRING(out) + total) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "frame_results: size mismatch");
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"batch_identifiers", batch_identifiers, METH_O,
     "The identifiers' UTF-8 bytes of a request holding only field 1, else None."},
    {"fold_keys", fold_keys, METH_O, "Each bytes item with ASCII a-z upper-cased."},
    {"frame_results", frame_results, METH_VARARGS,
     "The encoded repeated ResolveResult of (raws, found, slow)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "resolver._hotpath", "The batch resolve hot path's loops in C.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__hotpath(void) { return PyModule_Create(&module); }
