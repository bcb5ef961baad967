/* cache._sieve: RecordCache.get_many over a SievePolicy, in C.
 *
 *   get_many(nodes: dict, negative: dict, keys: list[bytes], now: float)
 *       -> (found: list, hits: int, negative_hits: int, expired: int)
 *
 * `nodes` is SievePolicy._map (key -> [entry, visited, slot], entry = (data, expires, weight));
 * `negative` is RecordCache._neg (key -> expires). For each key, in order: a positive entry that
 * has not expired (expires > now) gives its data; a positive entry found at all gets its visited
 * bit set (as SievePolicy.get does); else a negative entry
 * that has not expired gives b"" (cache.record_cache.NEGATIVE); else None. Exactly what the
 * pure-Python RecordCache.get_many does, with the GIL held throughout (so the batch sees one
 * state of the maps). Any entry of an unexpected shape raises TypeError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A float or int expiry time as a double; -1 with an exception set for anything else (a
 * test's clock may give ints). */
static int as_time(PyObject *value, double *out) {
    if (PyFloat_Check(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 0;
    }
    if (PyLong_Check(value)) {
        *out = PyLong_AsDouble(value);
        return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
    }
    PyErr_SetString(PyExc_TypeError, "get_many: an expiry time must be a float or int");
    return -1;
}

static PyObject *get_many(PyObject *self, PyObject *args) {
    PyObject *nodes, *negative, *keys, *empty = NULL;
    double now;
    if (!PyArg_ParseTuple(args, "O!O!O!d:get_many", &PyDict_Type, &nodes, &PyDict_Type, &negative,
                          &PyList_Type, &keys, &now))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys), hits = 0, negative_hits = 0, expired = 0;
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *node = PyDict_GetItemWithError(nodes, key); /* borrowed */
        if (node != NULL) {
            PyObject *entry;
            double expires;
            if (!PyList_Check(node) || PyList_GET_SIZE(node) < 2 ||
                !PyTuple_Check(entry = PyList_GET_ITEM(node, 0)) || PyTuple_GET_SIZE(entry) < 2) {
                PyErr_SetString(PyExc_TypeError, "get_many: unexpected SIEVE node");
                goto fail;
            }
            if (as_time(PyTuple_GET_ITEM(entry, 1), &expires) < 0) goto fail;
            /* Visited even when expired, as SievePolicy.get marks it. */
            PyObject *was = PyList_GET_ITEM(node, 1);
            if (was != Py_True) {
                Py_INCREF(Py_True);
                PyList_SET_ITEM(node, 1, Py_True);
                Py_DECREF(was); /* a bool: its deallocation runs no Python code */
            }
            if (expires > now) {
                PyObject *data = PyTuple_GET_ITEM(entry, 0);
                Py_INCREF(data);
                PyList_SET_ITEM(out, i, data);
                hits++;
                continue;
            }
            expired++;
        } else if (PyErr_Occurred()) {
            goto fail;
        } else {
            PyObject *expires = PyDict_GetItemWithError(negative, key);
            double until;
            if (expires != NULL) {
                if (as_time(expires, &until) < 0) goto fail;
                if (until > now) {
                    if (empty == NULL && (empty = PyBytes_FromStringAndSize("", 0)) == NULL) goto fail;
                    Py_INCREF(empty);
                    PyList_SET_ITEM(out, i, empty);
                    negative_hits++;
                    continue;
                }
                expired++;
            } else if (PyErr_Occurred()) {
                goto fail;
            }
        }
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, i, Py_None);
    }
    Py_XDECREF(empty);
    return Py_BuildValue("(Nnnn)", out, hits, negative_hits, expired);
fail:
    Py_XDECREF(empty);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"get_many", get_many, METH_VARARGS, "RecordCache.get_many over a SievePolicy's map."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cache._sieve", "SIEVE cache batch lookups in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__sieve(void) { return PyModule_Create(&module); }
