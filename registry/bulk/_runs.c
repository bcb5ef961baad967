/* registry.bulk._runs: run files and their k-way merge (registry.bulk.runs) in C.
 *
 * registry/bulk/runs.py is the specification (its module docstring has the run file layout); this
 * module gives the same results, byte for byte and error for error class (tests/test_runs.py).
 *
 *   frame(keys: list[bytes], values: list[bytes], rows: list[int]) -> bytes
 *       runs.py_frame: the bytes of a run file, built in one allocation. ``keys`` and ``values``
 *       must hold exact bytes objects (TypeError), ``rows`` ints 0 <= row < 2**64 (OverflowError).
 *       ValueError when the lengths differ or the keys do not ascend strictly.
 *
 *   Merger(runs, lo: bytes | None, hi: bytes | None, keep_last: bool)
 *       runs.PyMerger. ``runs`` is a sequence of buffers (bytes, mmap.mmap, ...); the Merger holds
 *       a buffer export of each for its whole life, so an mmap cannot be closed under it. Every
 *       run's footer and index is checked first (runs.read_index), then each run's first record in
 *       [lo, hi) is read, in run order, exactly where PyMerger's heapq.merge reads them.
 *
 *   Merger.next(limit: int) -> (keys, values, dups) | None
 *       Up to max(limit, 1) kept records, stopping only after a whole group of equal keys, and
 *       the (run, row, value) of the group members not kept; None once the merge is exhausted.
 *       Records are read (and checked) at the same points as PyMerger reads them, so a corrupt
 *       record raises RunCorrupt from the same call. After such an error every later call raises
 *       it again (the run that failed stays at the head of the merge).
 *
 *   span(records, lo: bytes | None, hi: bytes | None) -> (start, end)
 *       runs.py_span: the byte range of the plain records (whole records, no index, no footer;
 *       any buffer) whose keys lie in [lo, hi).
 *
 *   Merger.counts: dict[bytes, int]
 *       Kept records by key prefix (the bytes before the first "/"), updated at the end of every
 *       next() call.
 *
 * Errors about the run data are registry.bulk.runs.RunCorrupt (a ValueError; imported when first
 * needed, as _json does for JSONDecodeError), or plain ValueError if that module cannot be
 * imported.
 *
 * Every record is read through bounds checks against its run's records_end, each length field
 * read once into a local; a key or value is referred to by a pointer into its run's buffer, which
 * stays valid (and of the same size) while the export is held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <structmember.h>
#include <stdint.h>
#include <string.h>

#include "run_format.h"


/* ------------------------------------------------------------------------------------ helpers */
/* Little-endian loads and stores (compilers turn these into single moves on x86 and arm64). */
static inline uint32_t load32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t load64(const unsigned char *p) {
    return (uint64_t)load32(p) | (uint64_t)load32(p + 4) << 32;
}

/* Big-endian load: two of these compare as the 8 bytes do (compilers make it one movbe/rev). */
static inline uint64_t load64be(const unsigned char *p) {
    return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 | (uint64_t)p[3] << 32 |
           (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 | (uint64_t)p[6] << 8 | (uint64_t)p[7];
}

/* Python's bytes comparison: the bytes over the common length, then the shorter first. Inline, 8
 * bytes a step: keys are short and share their first bytes, where a memcmp call costs more. */
static inline int bytes_cmp(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
    size_t n = alen < blen ? alen : blen, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = load64be(a + i), y = load64be(b + i);
        if (x != y) return x < y ? -1 : 1;
    }
    for (; i < n; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return (alen > blen) - (alen < blen);
}

/* Whether the ``len`` bytes at a and b are equal, 8 a step. */
static inline int same_key(const unsigned char *a, const unsigned char *b, uint32_t len) {
    uint32_t i = 0;
    for (; i + 8 <= len; i += 8)
        if (load64be(a + i) != load64be(b + i)) return 0;
    for (; i < len; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)0)
#endif
#define CACHE_LINE 64

/* Sets registry.bulk.runs.RunCorrupt (or ValueError) with ``message``; returns -1. */
static int corrupt(const char *message) {
    static PyObject *run_corrupt; /* the class, once found */
    if (run_corrupt == NULL) {
        PyObject *module = PyImport_ImportModule("registry.bulk.runs");
        if (module != NULL) {
            PyObject *cls = PyObject_GetAttrString(module, "RunCorrupt");
            Py_DECREF(module);
            if (cls != NULL && PyType_Check(cls) &&
                PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_ValueError))
                run_corrupt = cls; /* kept for the life of the process */
            else
                Py_XDECREF(cls);
        }
        PyErr_Clear();
    }
    PyErr_SetString(run_corrupt != NULL ? run_corrupt : PyExc_ValueError, message);
    return -1;
}

/* ------------------------------------------------------------------------------------ frame */
static PyObject *frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "frame(keys, values, rows) takes 3 arguments");
        return NULL;
    }
    PyObject *keys = NULL, *values = NULL, *rows = NULL, *out = NULL;
    keys = PySequence_Fast(args[0], "frame() keys must be a sequence");
    if (keys == NULL) goto done;
    values = PySequence_Fast(args[1], "frame() values must be a sequence");
    if (values == NULL) goto done;
    rows = PySequence_Fast(args[2], "frame() rows must be a sequence");
    if (rows == NULL) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(keys);
    if (PySequence_Fast_GET_SIZE(values) != n || PySequence_Fast_GET_SIZE(rows) != n) {
        PyErr_SetString(PyExc_ValueError, "keys, values and rows differ in length");
        goto done;
    }
    PyObject **key_items = PySequence_Fast_ITEMS(keys);
    PyObject **value_items = PySequence_Fast_ITEMS(values);
    PyObject **row_items = PySequence_Fast_ITEMS(rows);

    /* Pass 1: the types and the size of the file. */
    uint64_t records_end = 0, index_size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = key_items[i], *value = value_items[i];
        if (!PyBytes_CheckExact(key) || !PyBytes_CheckExact(value)) {
            PyErr_SetString(PyExc_TypeError, "frame() keys and values must be bytes");
            goto done;
        }
        if (!PyLong_Check(row_items[i])) {
            PyErr_SetString(PyExc_TypeError, "frame() rows must be ints");
            goto done;
        }
        uint64_t klen = (uint64_t)PyBytes_GET_SIZE(key), vlen = (uint64_t)PyBytes_GET_SIZE(value);
        if (klen > UINT32_MAX || vlen > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "frame() keys and values must be under 4 GiB");
            goto done;
        }
        records_end += run_record_size(klen, vlen);
        index_size += run_index_size((uint64_t)i, klen);
        if (records_end + index_size > (uint64_t)PY_SSIZE_T_MAX - RUN_FOOTER_SIZE) {
            PyErr_NoMemory();
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(records_end + index_size + RUN_FOOTER_SIZE));
    if (out == NULL) goto done;

    /* Pass 2: records and index entries side by side. No Python code runs between the passes (a
     * bytes allocation never starts the garbage collector, and the rows are ints, whose value
     * needs no __index__), so the sequences are as pass 1 saw them. */
    RunWriter w;
    run_writer_init(&w, (unsigned char *)PyBytes_AS_STRING(out), records_end);
    const unsigned char *previous = NULL;
    size_t previous_len = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(key_items[i]);
        size_t klen = (size_t)PyBytes_GET_SIZE(key_items[i]);
        size_t vlen = (size_t)PyBytes_GET_SIZE(value_items[i]);
        if (previous != NULL && bytes_cmp(key, klen, previous, previous_len) <= 0) {
            PyErr_SetString(PyExc_ValueError, "run keys must ascend strictly");
            Py_CLEAR(out);
            goto done;
        }
        previous = key;
        previous_len = klen;
        unsigned long long row = PyLong_AsUnsignedLongLong(row_items[i]);
        if (row == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_CLEAR(out);
            goto done;
        }
        unsigned char *value = run_writer_record(&w, key, (uint32_t)klen, (uint32_t)vlen);
        memcpy(value, PyBytes_AS_STRING(value_items[i]), vlen);
        run_writer_row(&w, (uint32_t)vlen, (uint64_t)row);
    }
    run_writer_footer(&w);
done:
    Py_XDECREF(keys);
    Py_XDECREF(values);
    Py_XDECREF(rows);
    return out;
}

/* ------------------------------------------------------------------------------------ Merger */
/* The merge is a tournament ("loser") tree over the runs: each internal node holds the run that
 * lost the match there, tree[0] the overall winner, the run with the least (key, run). Taking the
 * winner's record and moving its run on replays the matches on that run's path to the root only:
 * one comparison per level, against a loser whose Head sits in a small array (no pointer chase),
 * where a heap needs two per level. The order is heapq.merge's over (key, run, ...) tuples, total
 * because runs differ, so the records come out in the same order as from PyMerger.
 *
 * Each run's Head caches 8 bytes of its key as a big-endian word. All the keys in the merge share
 * their first ``skip`` bytes (the common prefix, e.g. "88.118."), so the word holds the bytes just
 * after it, where keys differ: most comparisons end on the words. The prefix is first the one of
 * the runs' first keys (at most MAX_SKIP bytes); a key read later without it makes the merge
 * shorten it and recompute the words (rekey), so that happens at most MAX_SKIP times. */

#define MAX_SKIP 64 /* bounds the work of rekey: at most MAX_SKIP rounds over the runs */

/* What the comparisons read of a run: 24 bytes, so a thousand runs' Heads stay in the L1 cache. */
typedef struct {
    uint64_t word;            /* key bytes [skip, skip + 8), zero-padded; UINT64_MAX once done */
    const unsigned char *key; /* the current record's key, in the run's buffer */
    uint32_t klen;
    uint32_t done;            /* no more records: the run sorts after every other */
} Head;

/* The rest of a run's state. */
typedef struct {
    const unsigned char *buf; /* the run file */
    uint64_t pos;             /* the offset of the next record to read */
    uint64_t end;             /* records_end */
    const unsigned char *value; /* the current record's value, in buf (its row follows it) */
    uint32_t vlen;
    uint64_t entries;         /* index entries (used while the Merger is made) */
} Cursor;

typedef struct {
    PyObject_HEAD
    Py_buffer *views;   /* one per run; the first nviews are held */
    Py_ssize_t nruns, nviews;
    Head *heads;
    Cursor *cursors;
    uint32_t *tree;     /* nruns entries: tree[0] the winner, tree[1..] the losers */
    int exhausted;      /* every run is done (or the Merger was cleared) */
    const unsigned char *common; /* a key whose first ``skip`` bytes every key in the merge has */
    size_t skip;
    PyObject *lo, *hi;  /* bytes, or NULL for no bound */
    int keep_last;
    int busy;           /* inside next(): a call from a finalizer run by the GC is refused */
    PyObject *counts;   /* dict: prefix -> kept records */
    /* The kept records since the last update of counts: all with this prefix (in a row). */
    const unsigned char *prefix;
    Py_ssize_t prefix_len, pending;
} Merger;

/* Checks the footer and index of a run file as runs.read_index does; the run's records_end and
 * number of index entries. 0, or -1 with RunCorrupt set. */
static int check_run(const unsigned char *buf, uint64_t size, uint64_t *records_end, uint64_t *entries) {
    if (size < RUN_FOOTER_SIZE) return corrupt("run file shorter than its footer");
    uint64_t end = size - RUN_FOOTER_SIZE;
    const unsigned char *footer = buf + end;
    uint64_t records = load64(footer), count = load64(footer + 8), n = load64(footer + 16);
    if (memcmp(footer + 32, RUN_MAGIC, 8) != 0 || load32(footer + 24) != RUN_INDEX_EVERY || records > end)
        return corrupt("not a run file (footer)");
    if (n != count / RUN_INDEX_EVERY + (count % RUN_INDEX_EVERY != 0))
        return corrupt("run index size does not match its count");
    uint64_t pos = records; /* pos <= end throughout */
    for (uint64_t i = 0; i < n; i++) {
        if (end - pos < RUN_INDEX_HEAD) return corrupt("run index cut short");
        uint64_t offset = load64(buf + pos), length = load32(buf + pos + 8);
        pos += RUN_INDEX_HEAD;
        if (end - pos < length || offset >= records) return corrupt("run index entry out of bounds");
        pos += length;
    }
    if (pos != end) return corrupt("run index size does not match its footer");
    *records_end = records;
    *entries = n;
    return 0;
}

/* Where a run's records with keys >= lo start, as runs._records finds it: bisect_right over the
 * index keys (the same probes, so even a run whose index is out of order starts at the same
 * place), then the offset of the entry before that position unless it is the first. The run has
 * passed check_run with ``entries`` > 0; ``scratch`` has room for ``entries`` positions. */
static uint64_t seek(const unsigned char *buf, uint64_t records_end, uint64_t entries, PyObject *lo,
                     uint64_t *scratch) {
    uint64_t pos = records_end;
    for (uint64_t i = 0; i < entries; i++) {
        scratch[i] = pos;
        pos += RUN_INDEX_HEAD + load32(buf + pos + 8);
    }
    const unsigned char *x = (const unsigned char *)PyBytes_AS_STRING(lo);
    size_t xlen = (size_t)PyBytes_GET_SIZE(lo);
    uint64_t a = 0, b = entries;
    while (a < b) {
        uint64_t mid = (a + b) / 2;
        const unsigned char *entry = buf + scratch[mid];
        if (bytes_cmp(x, xlen, entry + RUN_INDEX_HEAD, load32(entry + 8)) < 0)
            b = mid;
        else
            a = mid + 1;
    }
    return a >= 2 ? load64(buf + scratch[a - 1]) : 0; /* bisect_right - 1 > 0 */
}

/* The comparison word of a key that has the merge's common prefix (klen >= skip). */
static inline uint64_t key_word(const unsigned char *key, size_t klen, size_t skip) {
    if (klen >= skip + 8) return load64be(key + skip);
    uint64_t word = 0;
    for (size_t i = skip; i < klen; i++) word |= (uint64_t)key[i] << (56 - 8 * (i - skip));
    return word;
}

/* Shortens the common prefix to ``skip`` bytes and recomputes every live run's word. */
static void rekey(Merger *m, size_t skip) {
    m->skip = skip;
    for (Py_ssize_t i = 0; i < m->nruns; i++) {
        Head *h = &m->heads[i];
        if (!h->done) h->word = key_word(h->key, h->klen, skip);
    }
}

/* Moves run ``run`` to its next record with lo <= key < hi: 1, or 0 when the run has no more (it
 * is then done), or -1 with RunCorrupt set (the run then still stands at its last record, and at
 * the record that does not fit: a later call fails the same way). Its place in the tree is not
 * updated here. */
static int cursor_next(Merger *m, uint32_t run) {
    Cursor *c = &m->cursors[run];
    Head *h = &m->heads[run];
    const unsigned char *buf = c->buf;
    const uint64_t end = c->end;
    while (c->pos < end) {
        uint64_t pos = c->pos;
        if (end - pos < 4) return corrupt("run record cut short");
        uint64_t klen = load32(buf + pos), key_at = pos + 4;
        if (end - key_at < klen + 4) return corrupt("run record cut short");
        uint64_t vlen = load32(buf + key_at + klen), value_at = key_at + klen + 4;
        if (end - value_at < vlen + 8) return corrupt("run record cut short");
        c->pos = value_at + vlen + 8;
        const unsigned char *key = buf + key_at;
        /* Both bounds are checked on every record, as runs._records does: a run whose keys are out
         * of order (a corrupt file that passed the checks) gives the same records as there. */
        if (m->lo != NULL && bytes_cmp(key, klen, (const unsigned char *)PyBytes_AS_STRING(m->lo),
                                       (size_t)PyBytes_GET_SIZE(m->lo)) < 0)
            continue;
        if (m->hi != NULL && bytes_cmp(key, klen, (const unsigned char *)PyBytes_AS_STRING(m->hi),
                                       (size_t)PyBytes_GET_SIZE(m->hi)) >= 0) {
            c->pos = end;
            break;
        }
        size_t skip = m->skip;
        if (skip > 0 && (klen < skip || !same_key(key, m->common, (uint32_t)skip))) {
            size_t same = 0, most = klen < skip ? klen : skip;
            while (same < most && key[same] == m->common[same]) same++;
            rekey(m, same);
            skip = same;
        }
        h->key = key;
        h->klen = (uint32_t)klen;
        h->word = key_word(key, klen, skip);
        c->value = buf + value_at;
        c->vlen = (uint32_t)vlen;
        /* With many runs, this run moves on again only after many other runs' records: ask for
         * its next record's head now (one cache line a run; warm() asks again later). */
        if (c->pos < end) PREFETCH(buf + c->pos);
        return 1;
    }
    h->done = 1;
    h->word = UINT64_MAX;
    return 0;
}

/* Whether run a's (key, run) sorts before run b's; a done run after every live one. */
static inline int run_less(const Head *heads, uint32_t a, uint32_t b) {
    const Head *x = &heads[a], *y = &heads[b];
    if (x->word != y->word) return x->word < y->word;
    if (x->done | y->done) return x->done != y->done ? y->done != 0 : a < b;
    int r = bytes_cmp(x->key, x->klen, y->key, y->klen);
    return r != 0 ? r < 0 : a < b;
}

/* Plays the matches on the path of run ``run`` (its key changed) up to the root. */
static inline void replay(Merger *m, uint32_t run) {
    uint32_t *tree = m->tree;
    const Head *heads = m->heads;
    for (size_t node = ((size_t)run + (size_t)m->nruns) / 2; node > 0; node /= 2) {
        uint32_t other = tree[node];
        if (run_less(heads, other, run)) {
            tree[node] = run;
            run = other;
        }
    }
    tree[0] = run;
    m->exhausted = heads[run].done != 0;
}

/* Asks for the memory the winner's record will be read from: its key and value (up to 512
 * bytes), copied out at the end of its group, and its run's next record, read when it is taken.
 * With a thousand runs that memory has mostly left the caches since the record was read; one
 * round of the merge is enough time to bring it back. */
static inline void warm(const Merger *m) {
    uint32_t run = m->tree[0];
    const Cursor *c = &m->cursors[run];
    PREFETCH(m->heads[run].key);
    uintptr_t line = (uintptr_t)c->value & ~(uintptr_t)(CACHE_LINE - 1);
    uintptr_t last = (uintptr_t)c->value + (c->vlen < 512 ? c->vlen + 8 : 512);
    for (; line < last; line += CACHE_LINE) PREFETCH((const void *)line);
    if (c->pos < c->end) PREFETCH(c->buf + c->pos);
}

/* Builds the tree once every run has its first record (or is done); ``wins`` has nruns slots.
 * Node i's children are 2i and 2i + 1; position nruns + r is run r's leaf. */
static void build_tree(Merger *m, uint32_t *wins) {
    Py_ssize_t n = m->nruns;
    for (Py_ssize_t node = n - 1; node >= 1; node--) {
        Py_ssize_t left = 2 * node, right = left + 1;
        uint32_t a = left >= n ? (uint32_t)(left - n) : wins[left];
        uint32_t b = right >= n ? (uint32_t)(right - n) : wins[right];
        int a_wins = run_less(m->heads, a, b);
        wins[node] = a_wins ? a : b;
        m->tree[node] = a_wins ? b : a;
    }
    m->tree[0] = n > 1 ? wins[1] : 0;
    m->exhausted = n == 0 || m->heads[m->tree[0]].done;
}

/* Adds the pending count to counts[prefix]. */
static int flush_counts(Merger *m) {
    if (m->pending == 0 || m->counts == NULL) return 0;
    int status = -1;
    PyObject *sum = NULL;
    PyObject *prefix = PyBytes_FromStringAndSize((const char *)m->prefix, m->prefix_len);
    if (prefix == NULL) return -1;
    PyObject *pending = PyLong_FromSsize_t(m->pending);
    if (pending == NULL) goto done;
    PyObject *old = PyDict_GetItemWithError(m->counts, prefix); /* borrowed */
    if (old == NULL && PyErr_Occurred()) goto done;
    if (old != NULL) {
        sum = PyNumber_Add(old, pending);
        if (sum == NULL) goto done;
    } else {
        sum = Py_NewRef(pending);
    }
    if (PyDict_SetItem(m->counts, prefix, sum) < 0) goto done;
    m->pending = 0;
    status = 0;
done:
    Py_DECREF(prefix);
    Py_XDECREF(pending);
    Py_XDECREF(sum);
    return status;
}

/* Appends (run, row, value) of a record not kept to ``dups``. */
static int append_dup(PyObject *dups, uint32_t run, const unsigned char *value, uint32_t vlen) {
    PyObject *item = PyTuple_New(3);
    if (item == NULL) return -1;
    PyObject *run_obj = PyLong_FromUnsignedLong(run);
    PyObject *row_obj = PyLong_FromUnsignedLongLong(load64(value + vlen));
    PyObject *value_obj = PyBytes_FromStringAndSize((const char *)value, vlen);
    /* PyTuple_SET_ITEM steals each (NULLs are left for the tuple's dealloc to skip). */
    PyTuple_SET_ITEM(item, 0, run_obj);
    PyTuple_SET_ITEM(item, 1, row_obj);
    PyTuple_SET_ITEM(item, 2, value_obj);
    int status = -1;
    if (run_obj != NULL && row_obj != NULL && value_obj != NULL) status = PyList_Append(dups, item);
    Py_DECREF(item);
    return status;
}

/* Appends a new bytes object of ``data`` to ``list``. */
static int append_bytes(PyObject *list, const unsigned char *data, Py_ssize_t size) {
    PyObject *obj = PyBytes_FromStringAndSize((const char *)data, size);
    if (obj == NULL) return -1;
    int status = PyList_Append(list, obj);
    Py_DECREF(obj);
    return status;
}

static PyObject *Merger_next(Merger *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:next", kwlist, &limit_obj)) return NULL;
    PyObject *limit_int = PyNumber_Index(limit_obj);
    if (limit_int == NULL) return NULL;
    int overflow;
    long long limit = PyLong_AsLongLongAndOverflow(limit_int, &overflow);
    Py_DECREF(limit_int);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (overflow > 0) limit = LLONG_MAX;
    if (limit < 1 || overflow < 0) limit = 1; /* max(limit, 1) */
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Merger.next() called while it runs");
        return NULL;
    }
    if (self->exhausted) Py_RETURN_NONE;

    PyObject *keys = PyList_New(0), *values = PyList_New(0), *dups = PyList_New(0), *answer = NULL;
    if (keys == NULL || values == NULL || dups == NULL) goto done;
    self->busy = 1;
    const int keep_last = self->keep_last;
    const Head *heads = self->heads;
    const Cursor *cursors = self->cursors;
    long long kept = 0;
    while (!self->exhausted && kept < limit) {
        /* A group: the winner's record and every record after it with the same key. Keys and
         * values are pointers into the run buffers, so they outlive the runs' moves. */
        uint32_t run = self->tree[0];
        const unsigned char *key = heads[run].key, *value = cursors[run].value;
        const uint32_t klen = heads[run].klen;
        uint64_t word = heads[run].word;
        size_t skip = self->skip;
        uint32_t vlen = cursors[run].vlen;
        if (cursor_next(self, run) < 0) goto fail;
        replay(self, run);
        if (!self->exhausted) warm(self);
        while (!self->exhausted) {
            uint32_t other = self->tree[0];
            /* The words tell most keys apart without reading them (the key's memory is likely
             * out of the cache by now); a shorter common prefix (rekey) changes the words. */
            if (self->skip != skip) {
                skip = self->skip;
                word = key_word(key, klen, skip);
            }
            if (heads[other].word != word || heads[other].klen != klen ||
                !same_key(heads[other].key, key, klen))
                break;
            if (keep_last) { /* the later record replaces the one kept so far */
                if (append_dup(dups, run, value, vlen) < 0) goto fail;
                run = other;
                value = cursors[other].value;
                vlen = cursors[other].vlen;
            } else if (append_dup(dups, other, cursors[other].value, cursors[other].vlen) < 0) {
                goto fail;
            }
            if (cursor_next(self, other) < 0) goto fail;
            replay(self, other);
            if (!self->exhausted) warm(self);
        }
        if (append_bytes(keys, key, klen) < 0 || append_bytes(values, value, vlen) < 0) goto fail;
        kept++;
        /* Kept keys ascend, so the records of one prefix come in a row: counts is touched only
         * when the prefix changes and at the end of the call. */
        const unsigned char *slash = memchr(key, '/', klen);
        Py_ssize_t prefix_len = slash != NULL ? slash - key : (Py_ssize_t)klen;
        if (self->pending > 0 &&
            (prefix_len != self->prefix_len || memcmp(key, self->prefix, (size_t)prefix_len) != 0)) {
            if (flush_counts(self) < 0) goto fail;
        }
        self->prefix = key;
        self->prefix_len = prefix_len;
        self->pending++;
    }
    if (flush_counts(self) < 0) goto fail;
    answer = PyTuple_Pack(3, keys, values, dups);
    goto done;
fail: {
    /* counts keeps the groups completed before the error, as PyMerger's does. */
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (flush_counts(self) < 0) PyErr_Clear();
    PyErr_Restore(type, value, traceback);
}
done:
    self->busy = 0;
    Py_XDECREF(keys);
    Py_XDECREF(values);
    Py_XDECREF(dups);
    return answer;
}

/* Drops every reference the Merger holds; the merge is then empty. */
static int Merger_clear(Merger *self) {
    self->exhausted = 1;
    self->pending = 0;
    for (Py_ssize_t i = 0; i < self->nviews; i++) PyBuffer_Release(&self->views[i]);
    self->nviews = 0;
    Py_CLEAR(self->lo);
    Py_CLEAR(self->hi);
    Py_CLEAR(self->counts);
    return 0;
}

static int Merger_traverse(Merger *self, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < self->nviews; i++) Py_VISIT(self->views[i].obj);
    Py_VISIT(self->counts);
    return 0;
}

static void Merger_dealloc(Merger *self) {
    PyObject_GC_UnTrack(self);
    Merger_clear(self);
    PyMem_Free(self->views);
    PyMem_Free(self->heads);
    PyMem_Free(self->cursors);
    PyMem_Free(self->tree);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Merger_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"runs", "lo", "hi", "keep_last", "plain", NULL};
    PyObject *runs_arg, *lo, *hi;
    int keep_last, plain = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOp|$p:Merger", kwlist, &runs_arg, &lo, &hi, &keep_last,
                                     &plain))
        return NULL;
    if ((lo != Py_None && !PyBytes_Check(lo)) || (hi != Py_None && !PyBytes_Check(hi))) {
        PyErr_SetString(PyExc_TypeError, "Merger() lo and hi must be bytes or None");
        return NULL;
    }
    /* A tuple of our own: taking a buffer may run Python code (3.12's __buffer__), which must
     * not be able to change the sequence we walk. */
    PyObject *runs = PySequence_Tuple(runs_arg);
    if (runs == NULL) return NULL;
    uint64_t *scratch = NULL;
    uint32_t *wins = NULL;
    Merger *self = (Merger *)type->tp_alloc(type, 0); /* zeroed: dealloc copes from here on */
    if (self == NULL) goto fail;
    Py_ssize_t n = PyTuple_GET_SIZE(runs);
    if ((uint64_t)n > UINT32_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "Merger() takes fewer than 2**31 runs");
        goto fail;
    }
    size_t slots = n > 0 ? (size_t)n : 1;
    self->nruns = n;
    self->keep_last = keep_last;
    self->exhausted = 1; /* until the tree is built */
    self->lo = lo != Py_None ? Py_NewRef(lo) : NULL;
    self->hi = hi != Py_None ? Py_NewRef(hi) : NULL;
    self->counts = PyDict_New();
    self->views = PyMem_Calloc(slots, sizeof(Py_buffer));
    self->heads = PyMem_Calloc(slots, sizeof(Head));
    self->cursors = PyMem_Calloc(slots, sizeof(Cursor));
    self->tree = PyMem_Calloc(slots, sizeof(uint32_t));
    wins = PyMem_Calloc(slots, sizeof(uint32_t));
    if (self->counts == NULL) goto fail;
    if (self->views == NULL || self->heads == NULL || self->cursors == NULL || self->tree == NULL ||
        wins == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(runs, i), &self->views[i], PyBUF_SIMPLE) < 0) goto fail;
        self->nviews++;
    }
    /* Every run is checked before any record is read (PyMerger's read_index loop). */
    uint64_t most_entries = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Cursor *c = &self->cursors[i];
        c->buf = self->views[i].buf;
        if (plain) { /* records only (runs.read_range): no index, no footer */
            c->end = (uint64_t)self->views[i].len;
            c->entries = 0;
        } else if (check_run(c->buf, (uint64_t)self->views[i].len, &c->end, &c->entries) < 0)
            goto fail;
        if (c->entries > most_entries) most_entries = c->entries;
    }
    /* Then each run's first record, in run order (heapq.merge's priming), with no common prefix
     * assumed yet. */
    if (self->lo != NULL && most_entries > 0) {
        scratch = PyMem_Malloc((size_t)most_entries * sizeof(uint64_t)); /* < the buffer's size */
        if (scratch == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    self->skip = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Cursor *c = &self->cursors[i];
        c->pos = self->lo != NULL && c->entries > 0 ? seek(c->buf, c->end, c->entries, self->lo, scratch) : 0;
        if (cursor_next(self, (uint32_t)i) < 0) goto fail;
    }
    /* The common prefix of the first keys: the keys of the merge mostly lie between them. */
    size_t skip = SIZE_MAX;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Head *h = &self->heads[i];
        if (h->done) continue;
        if (self->common == NULL) {
            self->common = h->key;
            skip = h->klen;
            continue;
        }
        size_t same = 0, most = h->klen < skip ? h->klen : skip;
        while (same < most && h->key[same] == self->common[same]) same++;
        skip = same;
    }
    if (self->common != NULL) rekey(self, skip < MAX_SKIP ? skip : MAX_SKIP);
    build_tree(self, wins);
    PyMem_Free(wins);
    PyMem_Free(scratch);
    Py_DECREF(runs);
    return (PyObject *)self;
fail:
    PyMem_Free(wins);
    PyMem_Free(scratch);
    Py_DECREF(runs);
    Py_XDECREF(self);
    return NULL;
}

static PyMethodDef Merger_methods[] = {
    {"next", (PyCFunction)(void (*)(void))Merger_next, METH_VARARGS | METH_KEYWORDS,
     "next(limit) -> (keys, values, dups) of up to max(limit, 1) kept records, or None at the end."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Merger_members[] = {
    {"counts", T_OBJECT_EX, offsetof(Merger, counts), READONLY,
     "Kept records by key prefix (the bytes before the first '/')."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject MergerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "registry.bulk._runs.Merger",
    .tp_basicsize = sizeof(Merger),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Merger(runs, lo, hi, keep_last, *, plain=False): the k-way merge of run files (runs.PyMerger).",
    .tp_new = Merger_new,
    .tp_dealloc = (destructor)Merger_dealloc,
    .tp_traverse = (traverseproc)Merger_traverse,
    .tp_clear = (inquiry)Merger_clear,
    .tp_methods = Merger_methods,
    .tp_members = Merger_members,
};

/* ------------------------------------------------------------------------------------ span */
/* Whether ``key`` sorts before ``bound`` (a bytes object). */
static inline int key_before(const unsigned char *key, uint64_t klen, PyObject *bound) {
    return bytes_cmp(key, klen, (const unsigned char *)PyBytes_AS_STRING(bound), (size_t)PyBytes_GET_SIZE(bound)) < 0;
}

static PyObject *span(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "span(records, lo, hi) takes 3 arguments");
        return NULL;
    }
    PyObject *lo = args[1], *hi = args[2];
    if ((lo != Py_None && !PyBytes_Check(lo)) || (hi != Py_None && !PyBytes_Check(hi))) {
        PyErr_SetString(PyExc_TypeError, "span() lo and hi must be bytes or None");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *buf = view.buf;
    const uint64_t end = (uint64_t)view.len;
    uint64_t pos = 0, start = end, stop = end;
    int started = lo == Py_None;
    if (started) start = 0;
    /* Walks only as far as the answer needs, as py_span does (so a record cut short after it is
     * left to the merge). */
    while (pos < end && !(started && hi == Py_None)) {
        if (end - pos < 4) goto cut_short;
        uint64_t klen = load32(buf + pos), key_at = pos + 4;
        if (end - key_at < klen + 4) goto cut_short;
        uint64_t vlen = load32(buf + key_at + klen), next = key_at + klen + 4;
        if (end - next < vlen + 8) goto cut_short;
        const unsigned char *key = buf + key_at;
        if (!started && !key_before(key, klen, lo)) {
            started = 1;
            start = pos;
        }
        if (started && hi != Py_None && !key_before(key, klen, hi)) {
            stop = pos;
            break;
        }
        pos = next + vlen + 8;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(KK)", (unsigned long long)start, (unsigned long long)stop);
cut_short:
    PyBuffer_Release(&view);
    corrupt("run record cut short");
    return NULL;
}

/* ------------------------------------------------------------------------------------ module */
static PyMethodDef module_methods[] = {
    {"frame", (PyCFunction)(void (*)(void))frame, METH_FASTCALL,
     "frame(keys, values, rows) -> bytes: the run file of the records (runs.py_frame)."},
    {"span", (PyCFunction)(void (*)(void))span, METH_FASTCALL,
     "span(records, lo, hi) -> (start, end): where the plain records' keys in [lo, hi) lie (runs.py_span)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "registry.bulk._runs", "Run files and their k-way merge in C.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__runs(void) {
    if (PyType_Ready(&MergerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&MergerType);
    if (PyModule_AddObject(m, "Merger", (PyObject *)&MergerType) < 0) {
        Py_DECREF(&MergerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
