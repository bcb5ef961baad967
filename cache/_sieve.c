/* cache._sieve: the SIEVE eviction policy (cache/policy_sieve.py) as a C type, for the batch
 * resolve hot path.
 *
 * Sieve(max_weight) implements cache.policy.Policy exactly as SievePolicy does (the same queue,
 * hand, visited bits, tombstones and compaction, so the same entries are evicted in the same
 * order; tests/test_native.py drives both with the same operations), and adds
 *
 *   get_many(keys: list[bytes], negative: dict[bytes, float], now: float)
 *       -> (found: list, hits: int, negative_hits: int, expired: int)
 *
 * the loop of RecordCache.get_many: for each key, an entry found gets its visited bit set; if it
 * has not expired (expires > now) its data is the answer; else a negative entry that has not
 * expired gives b"" (cache.record_cache.NEGATIVE); else None.
 *
 * Why C: a hit in the Python policy follows eight pointers (dict table, dict entry, key, node
 * list, its item array, entry tuple, expiry float, data), each a likely cache miss in a large
 * cache; here it is the index, the slot (key pointer, hash, data pointer, expiry, weight and
 * visited bit inline), the key and the data.
 *
 * Keys must be exact bytes. Every method holds the GIL throughout and runs no Python code (bytes
 * hashing, comparison and deallocation are C), so each call sees and leaves one consistent state.
 * The type holds only bytes objects, which cannot form reference cycles: no GC support needed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define EMPTY (-1)
#define DELETED (-2)

typedef struct {
    PyObject *key; /* NULL: a tombstone */
    PyObject *data;
    Py_hash_t hash;
    double expires;
    Py_ssize_t weight;
    char visited;
} Slot;

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_weight;
    Slot *queue; /* oldest first, with tombstones */
    Py_ssize_t len, cap;
    Py_ssize_t *index; /* open addressing: queue position, EMPTY or DELETED */
    Py_ssize_t mask;   /* index size - 1 (a power of two minus one) */
    Py_ssize_t used;   /* index cells not EMPTY (live + DELETED) */
    Py_ssize_t live, dead, hand, weight;
} Sieve;

static int keys_equal(PyObject *a, PyObject *b) {
    return a == b || (PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b) &&
                      memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), PyBytes_GET_SIZE(a)) == 0);
}

/* The index cell of `key`, or -1 when absent. */
static Py_ssize_t find_cell(Sieve *self, PyObject *key, Py_hash_t hash) {
    if (self->index == NULL) return -1;
    size_t i = (size_t)hash & (size_t)self->mask;
    for (;;) {
        Py_ssize_t pos = self->index[i];
        if (pos == EMPTY) return -1;
        if (pos != DELETED) {
            Slot *s = &self->queue[pos];
            if (s->hash == hash && keys_equal(s->key, key)) return (Py_ssize_t)i;
        }
        i = (i + 1) & (size_t)self->mask;
    }
}

/* A fresh index array with room for `need` entries (all EMPTY) and its size; NULL with
 * MemoryError set. */
static Py_ssize_t *new_index(Py_ssize_t need, Py_ssize_t *size_out) {
    Py_ssize_t size = 8;
    while (size < need * 2 + 8) size <<= 1;
    Py_ssize_t *index = PyMem_Malloc(sizeof(Py_ssize_t) * size);
    if (index == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < size; i++) index[i] = EMPTY;
    *size_out = size;
    return index;
}

/* Index the live slots in `index` (from new_index) and make it the table's index. */
static void install_index(Sieve *self, Py_ssize_t *index, Py_ssize_t size) {
    for (Py_ssize_t pos = 0; pos < self->len; pos++) {
        Slot *s = &self->queue[pos];
        if (s->key == NULL) continue;
        size_t i = (size_t)s->hash & (size_t)(size - 1);
        while (index[i] != EMPTY) i = (i + 1) & (size_t)(size - 1);
        index[i] = pos;
    }
    PyMem_Free(self->index);
    self->index = index;
    self->mask = size - 1;
    self->used = self->live;
}

/* Rebuild the index for the live slots with room for `need` entries. */
static int rebuild_index(Sieve *self, Py_ssize_t need) {
    Py_ssize_t size;
    Py_ssize_t *index = new_index(need, &size);
    if (index == NULL) return -1;
    install_index(self, index, size);
    return 0;
}

static void tombstone(Sieve *self, Py_ssize_t cell) {
    Py_ssize_t pos = self->index[cell];
    Slot *s = &self->queue[pos];
    PyObject *key = s->key, *data = s->data;
    s->key = s->data = NULL;
    self->index[cell] = DELETED;
    self->weight -= s->weight;
    self->live--;
    self->dead++;
    Py_DECREF(key);
    Py_DECREF(data);
}

/* SievePolicy._maybe_compact: drop tombstones once they are half the queue (and at least 64). */
static int maybe_compact(Sieve *self) {
    if (self->dead * 2 <= self->len || self->dead < 64) return 0;
    /* The new index first: if that allocation fails, nothing has moved yet. */
    Py_ssize_t size;
    Py_ssize_t *index = new_index(self->live, &size);
    if (index == NULL) return -1;
    Py_ssize_t out = 0, hand = 0;
    for (Py_ssize_t pos = 0; pos < self->len; pos++) {
        if (pos == self->hand) hand = out;
        if (self->queue[pos].key != NULL) self->queue[out++] = self->queue[pos];
    }
    self->hand = self->hand < self->len ? hand : 0;
    self->len = out;
    self->dead = 0;
    install_index(self, index, size);
    return 0;
}

/* SievePolicy._evict_one: walk the hand from the oldest entry, clearing visited bits, and evict
 * the first unvisited entry other than the one at `keep`. */
static int evict_one(Sieve *self, Py_ssize_t keep) {
    Py_ssize_t hand = self->hand;
    for (;;) {
        if (hand >= self->len) hand = 0;
        Slot *s = &self->queue[hand];
        if (s->key != NULL && hand != keep) {
            if (s->visited)
                s->visited = 0;
            else
                break;
        }
        hand++;
    }
    self->hand = hand + 1;
    Slot *victim = &self->queue[hand];
    Py_ssize_t cell = find_cell(self, victim->key, victim->hash);
    if (cell < 0) {
        PyErr_SetString(PyExc_SystemError, "Sieve: index lost a queued key");
        return -1;
    }
    tombstone(self, cell);
    return maybe_compact(self);
}

static int check_key(PyObject *key) {
    if (!PyBytes_CheckExact(key)) {
        PyErr_SetString(PyExc_TypeError, "Sieve keys must be bytes");
        return -1;
    }
    return 0;
}

static int sieve_init(Sieve *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"max_weight", NULL};
    Py_ssize_t max_weight;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", names, &max_weight)) return -1;
    if (max_weight < 0 || max_weight > PY_SSIZE_T_MAX / 2) { /* so weights can never overflow */
        PyErr_SetString(PyExc_ValueError, "Sieve: max_weight out of range");
        return -1;
    }
    self->max_weight = max_weight;
    return 0;
}

static void release_all(Sieve *self) {
    for (Py_ssize_t pos = 0; pos < self->len; pos++) {
        Py_CLEAR(self->queue[pos].key);
        Py_CLEAR(self->queue[pos].data);
    }
    PyMem_Free(self->queue);
    PyMem_Free(self->index);
    self->queue = NULL;
    self->index = NULL;
    self->len = self->cap = self->mask = self->used = 0;
    self->live = self->dead = self->hand = self->weight = 0;
}

static void sieve_dealloc(Sieve *self) {
    release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *sieve_get(Sieve *self, PyObject *key) {
    if (check_key(key) < 0) return NULL;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return NULL;
    Py_ssize_t cell = find_cell(self, key, hash);
    if (cell < 0) Py_RETURN_NONE;
    Slot *s = &self->queue[self->index[cell]];
    s->visited = 1;
    return Py_BuildValue("(Odn)", s->data, s->expires, s->weight);
}

static PyObject *sieve_put(Sieve *self, PyObject *args) {
    PyObject *key, *entry, *data;
    double expires;
    Py_ssize_t weight;
    if (!PyArg_ParseTuple(args, "OO!:put", &key, &PyTuple_Type, &entry)) return NULL;
    if (check_key(key) < 0) return NULL;
    if (!PyArg_ParseTuple(entry, "Odn:entry", &data, &expires, &weight)) return NULL;
    if (!PyBytes_CheckExact(data)) { /* a subclass's __del__ could run Python code mid-update */
        PyErr_SetString(PyExc_TypeError, "Sieve data must be bytes");
        return NULL;
    }
    if (weight > self->max_weight) Py_RETURN_NONE;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return NULL;
    Py_ssize_t cell = find_cell(self, key, hash), pos;
    if (cell >= 0) { /* replace in place: keeps its queue position and visited bit */
        pos = self->index[cell];
        Slot *s = &self->queue[pos];
        self->weight += weight - s->weight;
        PyObject *old = s->data;
        Py_INCREF(data);
        s->data = data;
        s->expires = expires;
        s->weight = weight;
        Py_DECREF(old);
    } else {
        if ((self->used + 1) * 3 >= (self->mask + 1) * 2 || self->index == NULL) {
            if (rebuild_index(self, self->live + 1) < 0) return NULL;
        }
        if (self->len == self->cap) {
            Py_ssize_t cap = self->cap ? self->cap * 2 : 64;
            Slot *queue = PyMem_Realloc(self->queue, sizeof(Slot) * cap);
            if (queue == NULL) return PyErr_NoMemory();
            self->queue = queue;
            self->cap = cap;
        }
        pos = self->len++;
        Slot *s = &self->queue[pos];
        Py_INCREF(key);
        Py_INCREF(data);
        s->key = key;
        s->data = data;
        s->hash = hash;
        s->expires = expires;
        s->weight = weight;
        s->visited = 0;
        size_t i = (size_t)hash & (size_t)self->mask;
        while (self->index[i] != EMPTY && self->index[i] != DELETED) i = (i + 1) & (size_t)self->mask;
        if (self->index[i] == EMPTY) self->used++;
        self->index[i] = pos;
        self->live++;
        self->weight += weight;
    }
    while (self->weight > self->max_weight) {
        /* Compaction moves slots: follow the kept key by its index cell. */
        if (evict_one(self, pos) < 0) return NULL;
        Py_ssize_t kept = find_cell(self, key, hash);
        if (kept < 0) {
            PyErr_SetString(PyExc_SystemError, "Sieve: evicted the entry being put");
            return NULL;
        }
        pos = self->index[kept];
    }
    Py_RETURN_NONE;
}

static PyObject *sieve_remove(Sieve *self, PyObject *key) {
    if (check_key(key) < 0) return NULL;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return NULL;
    Py_ssize_t cell = find_cell(self, key, hash);
    if (cell >= 0) {
        tombstone(self, cell);
        if (maybe_compact(self) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *sieve_clear(Sieve *self, PyObject *unused) {
    release_all(self);
    Py_RETURN_NONE;
}

static PyObject *sieve_sizes(Sieve *self, PyObject *unused) {
    return Py_BuildValue("(nn)", self->live, self->weight);
}

/* A float or int expiry time; -1 with an exception for anything else (a test clock may give
 * ints). */
static int as_time(PyObject *value, double *out) {
    if (PyFloat_Check(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 0;
    }
    if (PyLong_Check(value)) {
        *out = PyLong_AsDouble(value);
        return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
    }
    PyErr_SetString(PyExc_TypeError, "get_many: a negative entry's expiry must be a float or int");
    return -1;
}

#define BLOCK 32

/* Prefetch what looking up block[0..m) will touch, in dependency order, so that the cache misses
 * of many keys overlap instead of following each other: the index cells, then the slots they
 * name, then the slots' keys and data. Only reads; a stale guess costs nothing but a wasted
 * prefetch. */
static void prefetch_block(Sieve *self, PyObject **block, Py_hash_t *hashes, Py_ssize_t m) {
    if (self->index == NULL) return;
    for (Py_ssize_t j = 0; j < m; j++)
        __builtin_prefetch(&self->index[(size_t)hashes[j] & (size_t)self->mask]);
    for (Py_ssize_t j = 0; j < m; j++) {
        Py_ssize_t pos = self->index[(size_t)hashes[j] & (size_t)self->mask];
        if (pos >= 0) __builtin_prefetch(&self->queue[pos]);
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        Py_ssize_t pos = self->index[(size_t)hashes[j] & (size_t)self->mask];
        if (pos >= 0 && self->queue[pos].key != NULL) {
            __builtin_prefetch(self->queue[pos].key);
            __builtin_prefetch(self->queue[pos].data);
        }
    }
}

static PyObject *sieve_get_many(Sieve *self, PyObject *args) {
    PyObject *keys, *negative, *empty = NULL;
    double now;
    if (!PyArg_ParseTuple(args, "O!O!d:get_many", &PyList_Type, &keys, &PyDict_Type, &negative, &now))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys), hits = 0, negative_hits = 0, expired = 0;
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    Py_hash_t hashes[BLOCK];
    for (Py_ssize_t start = 0; start < n; start += BLOCK) {
        Py_ssize_t m = n - start < BLOCK ? n - start : BLOCK;
        PyObject **block = &PyList_GET_ITEM(keys, start);
        for (Py_ssize_t j = 0; j < m; j++) {
            if (check_key(block[j]) < 0) goto fail;
            if ((hashes[j] = PyObject_Hash(block[j])) == -1) goto fail;
        }
        prefetch_block(self, block, hashes, m);
        for (Py_ssize_t j = 0; j < m; j++) {
            Py_ssize_t i = start + j;
            PyObject *key = block[j];
            Py_ssize_t cell = find_cell(self, key, hashes[j]);
            if (cell >= 0) {
                Slot *s = &self->queue[self->index[cell]];
                s->visited = 1;
                if (s->expires > now) {
                    Py_INCREF(s->data);
                    PyList_SET_ITEM(out, i, s->data);
                    hits++;
                    continue;
                }
                expired++;
            } else {
                PyObject *expires = PyDict_GetItemWithError(negative, key); /* borrowed */
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
    }
    Py_XDECREF(empty);
    return Py_BuildValue("(Nnnn)", out, hits, negative_hits, expired);
fail:
    Py_XDECREF(empty);
    Py_DECREF(out);
    return NULL;
}

static PyObject *sieve_len_check(Sieve *self, PyObject *unused) {
    /* Internal consistency, for tests: every live slot is indexed and the counts add up. */
    Py_ssize_t live = 0, weight = 0, dead = 0;
    for (Py_ssize_t pos = 0; pos < self->len; pos++) {
        Slot *s = &self->queue[pos];
        if (s->key == NULL) {
            dead++;
            continue;
        }
        live++;
        weight += s->weight;
        Py_ssize_t cell = find_cell(self, s->key, s->hash);
        if (cell < 0 || self->index[cell] != pos) Py_RETURN_FALSE;
    }
    if (live != self->live || weight != self->weight || dead != self->dead) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *sieve_order(Sieve *self, PyObject *unused) {
    /* For tests: [(key, visited)] of the live entries, oldest first, and the hand's position
     * among them (as SievePolicy's queue and hand would give). */
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t hand = -1, seen = 0;
    for (Py_ssize_t pos = 0; pos < self->len; pos++) {
        if (pos == self->hand) hand = seen;
        Slot *s = &self->queue[pos];
        if (s->key == NULL) continue;
        PyObject *item = Py_BuildValue("(OO)", s->key, s->visited ? Py_True : Py_False);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
        seen++;
    }
    return Py_BuildValue("(Nn)", out, hand < 0 ? 0 : hand);
}

static PyMethodDef sieve_methods[] = {
    {"get", (PyCFunction)sieve_get, METH_O, "The entry (data, expires, weight) of key, or None; marks it visited."},
    {"put", (PyCFunction)sieve_put, METH_VARARGS, "Store (data, expires, weight) under key, evicting to fit."},
    {"remove", (PyCFunction)sieve_remove, METH_O, "Drop key if held."},
    {"clear", (PyCFunction)sieve_clear, METH_NOARGS, "Drop everything."},
    {"sizes", (PyCFunction)sieve_sizes, METH_NOARGS, "(entries, total weight)."},
    {"get_many", (PyCFunction)sieve_get_many, METH_VARARGS, "RecordCache.get_many's loop."},
    {"_consistent", (PyCFunction)sieve_len_check, METH_NOARGS, "Internal consistency (tests)."},
    {"_order", (PyCFunction)sieve_order, METH_NOARGS, "Live keys with visited bits, and the hand (tests)."},
    {NULL, NULL, 0, NULL},
};

static PyObject *sieve_name(Sieve *self, void *closure) { return PyUnicode_FromString("sieve"); }

static PyObject *sieve_max_weight(Sieve *self, void *closure) { return PyLong_FromSsize_t(self->max_weight); }

static PyGetSetDef sieve_getset[] = {
    {"name", (getter)sieve_name, NULL, "The policy's name.", NULL},
    {"max_weight", (getter)sieve_max_weight, NULL, "The bound on the total weight held.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SieveType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cache._sieve.Sieve",
    .tp_doc = PyDoc_STR("Byte-weighted SIEVE eviction (see cache/policy_sieve.py), in C."),
    .tp_basicsize = sizeof(Sieve),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sieve_init,
    .tp_dealloc = (destructor)sieve_dealloc,
    .tp_methods = sieve_methods,
    .tp_getset = sieve_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cache._sieve", "The SIEVE eviction policy in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__sieve(void) {
    if (PyType_Ready(&SieveType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&SieveType);
    if (PyModule_AddObject(m, "Sieve", (PyObject *)&SieveType) < 0) {
        Py_DECREF(&SieveType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
