/* registry.bulk._csvfast: the CSV bulk-import fast path (registry.bulk.chunks.CsvPlan) in C.
 *
 * It works on a chunk's bytes directly: it splits rows at "\n" and cells at "," (a cell may be
 * quoted, "like, this", when it holds no CR or LF: what csv.reader reads as the text between the
 * quotes; a row with a quote escaped as "" in it goes back to Python; anything else quoted leaves
 * the whole chunk to Python's csv module), checks each
 * row's identifier against the grammar (registry.identifier.prefix_length), and takes the rows
 * CsvPlan.encode would accept; then it sorts the chunk's good rows by key, settles duplicates as
 * registry.bulk.chunks._settle does, and encodes the kept rows into the very bytes CsvPlan.encode
 * makes. Every row it is not sure of is handed back to Python, which runs it through
 * CsvPlan.encode and the full checker exactly as the pure-Python path does; rows go through in
 * input order, so the per-prefix owner memos of CsvPlan and RowChecker are filled in the same
 * order, by the same rows, as without this module. Every function holds the GIL for its whole run
 * and calls back into no Python code (only dict lookups of str keys and list appends).
 *
 *   usable(data: bytes) -> bool
 *       Whether ``data`` is strict UTF-8 (what bytes.decode("utf-8") accepts) holding no NUL and
 *       no '\r' but right before a '\n' (Windows line ends), whose '"' are all RFC 4180 quotes: a
 *       pair around a whole cell (opening it at a row's or cell's start, closing it right before
 *       ',', a line end or the end) with no line end between and any '"' between doubled. On such
 *       a chunk csv.reader,
 *       which the pure-Python path uses when there are quotes or CRs, and str.split, which it uses
 *       when there are none, give the rows this module reads (a row's "\r\n" ends it whole).
 *
 *   Encoder(width: int, cells: list[tuple[int, bytes, bytes, bool]], nonce: int, owners: dict)
 *       The per-file constants of a usable CsvPlan: ``width`` cells per row; ``cells`` the value
 *       columns in index order as (cell position in the row, head bytes, tail bytes, binary);
 *       ``nonce`` the etag nonce; ``owners`` CsvPlan._owners (prefix str -> (owner str, encoded
 *       owner field and times bytes) or None), read, never written. Entries of ``owners`` must
 *       not change once set (CsvPlan sets each once); the encoder caches them.
 *
 *   Encoder.rows(data: bytes, start: int) -> Rows
 *       The rows of one chunk; a row's etag number is ``start`` + its number. ``data`` should
 *       have passed usable(); whatever it holds, every read is bounds-checked and any row that is
 *       not plain valid UTF-8 is handed back.
 *
 *   Rows.next() -> (number, line) | None
 *       Goes on through the rows, numbering non-empty lines from 1, keeping each row it takes
 *       (as offsets into ``data``, its upper-cased key and its owner entry: nothing is encoded
 *       yet), and stops at the first row it does not take: its number and bytes (without the
 *       "\n" or "\r\n"), for Python to check. None at the end of ``data``; ``Rows.count`` is then the
 *       number of rows.
 *
 *   Rows.settle(extra: list[tuple[bytes, int, str, bytes]], conflict: int)
 *           -> (keys, rows, owners, values, dups, superseded, skipped)
 *       The taken rows and ``extra`` (the (key, number, owner, record) of each row Python found
 *       good) sorted by (key, number), duplicates settled by ``conflict``: 0 FAIL (the first is
 *       kept, each later one is in ``dups`` as (number, record)), 1 SKIP (the first is kept,
 *       ``skipped`` counts the others), 2 REPLACE (the last is kept, ``superseded`` counts the
 *       others). ``keys``, ``rows``, ``owners``, ``values`` are the kept rows' fields, ascending
 *       by key: the taken rows' records are encoded now, in that order, so they lie in memory in
 *       the order an SST writer reads them. Once per Rows, after next() answered None.
 *
 *   Rows.settle_run(extra, conflict) -> (run, count, dups, superseded, skipped)
 *       settle's outcome as the bytes of a run file (registry.bulk.runs: byte for byte
 *       runs.frame(keys, values, rows) of settle's answer) holding ``count`` records: the taken
 *       rows are encoded straight into it, and no per-row Python object is made. Once per Rows,
 *       instead of settle.
 *
 *   LIMITS: tuple[int, int, int, int, int]
 *       The limits compiled in: registry.limits' VALUE_DATA_MAX_BYTES, RECORD_MAX_BYTES,
 *       IDENTIFIER_MAX_CHARS, PREFIX_MAX_CHARS, SEGMENT_MAX_CHARS (CsvPlan uses the encoder only
 *       when they match).
 *
 *   filter_test_and_add(bits: bytearray, keys: list[bytes]) -> list[int]
 *       registry.bulk.importer.KeyFilter.test_and_add on a filter of len(bits) * 8 == 2**28 bits
 *       (two probes from hash(key): bits 0-27 and 28-55).
 *
 * A row is taken when it has ``width`` cells, its identifier is well-formed, the owner entry of
 * its prefix is known and usable, no binary column has a non-empty cell, no value's data is over
 * VALUE_DATA_MAX and the record is at most RECORD_MAX bytes. Everything else (including a prefix
 * met for the first time) is Python's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../native_wire.h"
#include "run_format.h"
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

#define VALUE_DATA_MAX 16384       /* registry.limits.VALUE_DATA_MAX_BYTES */
#define RECORD_MAX 65536           /* registry.limits.RECORD_MAX_BYTES */
#define IDENTIFIER_MAX_CHARS 255   /* registry.limits.IDENTIFIER_MAX_CHARS */
#define PREFIX_MAX_CHARS 64        /* registry.limits.PREFIX_MAX_CHARS */
#define SEGMENT_MAX_CHARS 32       /* registry.limits.SEGMENT_MAX_CHARS */
#define FILTER_BITS ((uint64_t)1 << 28)

/* ------------------------------------------------------------------------------------ helpers */
static inline int is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* registry.identifier.prefix_length of the identifier s[0:n] (UTF-8): the prefix's length in
 * bytes (== in characters: it is ASCII) when it is well-formed, else 0. */
static Py_ssize_t prefix_length(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    if (n <= 0) return 0;
    for (;;) { /* [A-Za-z0-9]{1,32}(\.[A-Za-z0-9]{1,32})*/
        Py_ssize_t seg = i;
        while (i < n && is_alnum(s[i])) i++;
        if (i == seg || i - seg > SEGMENT_MAX_CHARS || i >= n || i > PREFIX_MAX_CHARS) return 0;
        if (s[i] == '.') {
            i++;
            continue;
        }
        if (s[i] != '/') return 0;
        break;
    }
    Py_ssize_t end = i + 1; /* just past the "/" */
    if (end == n || s[end] == ' ' || s[n - 1] == ' ') return 0;
    Py_ssize_t chars = end; /* the prefix and "/" are ASCII */
    i = end;
    while (i < n) { /* text.isprintable(), on the suffix */
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c > 0x7E) return 0;
            i++;
        } else {
            long cp = decode_utf8(s, n, &i);
            if (cp < 0 || !Py_UNICODE_ISPRINTABLE((Py_UCS4)cp)) return 0;
        }
        if (++chars > IDENTIFIER_MAX_CHARS) return 0;
    }
    return end - 1;
}

static const uint64_t ONES = 0x0101010101010101ULL;
static const uint64_t HIGHS = 0x8080808080808080ULL;

static inline uint64_t has_zero(uint64_t v) { return (v - ONES) & ~v & HIGHS; }

/* ------------------------------------------------------------------------------------ usable */
/* Where usable()'s scan stands: at a cell's start, inside an unquoted cell, inside quotes, or
 * right after a closing quote. */
enum { AT_CELL, IN_CELL, IN_QUOTES, CLOSED };

static PyObject *usable(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "usable() needs bytes");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    Py_ssize_t i = 0;
    int state = AT_CELL;
#if defined(__SSE2__) && defined(__GNUC__)
    const __m128i quotes = _mm_set1_epi8('"'), crs = _mm_set1_epi8('\r'), zeros = _mm_setzero_si128();
#endif
    while (i < n) {
        if (state == AT_CELL || state == IN_CELL) { /* skip plain ASCII: no '"', CR or NUL */
#if defined(__SSE2__) && defined(__GNUC__)
            if (i + 16 <= n) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
                __m128i odd = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quotes), _mm_cmpeq_epi8(v, crs)),
                                           _mm_cmpeq_epi8(v, zeros));
                if (!_mm_movemask_epi8(_mm_or_si128(v, odd))) {
                    i += 16;
                    state = (s[i - 1] == ',' || s[i - 1] == '\n') ? AT_CELL : IN_CELL;
                    continue;
                }
            }
#endif
            if (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (!(w & HIGHS) && !has_zero(w) && !has_zero(w ^ (ONES * '"')) && !has_zero(w ^ (ONES * '\r'))) {
                    i += 8;
                    state = (s[i - 1] == ',' || s[i - 1] == '\n') ? AT_CELL : IN_CELL;
                    continue;
                }
            }
        }
        unsigned char c = s[i];
        if (c >= 0x80) {
            if (state == CLOSED || decode_utf8(s, n, &i) < 0) Py_RETURN_FALSE;
            if (state == AT_CELL) state = IN_CELL;
            continue;
        }
        if (c == 0) Py_RETURN_FALSE;
        if (c == '\r') { /* only as the first half of a "\r\n" line end, outside quotes */
            if (state == IN_QUOTES || i + 1 >= n || s[i + 1] != '\n') Py_RETURN_FALSE;
            i++;
            continue;
        }
        switch (state) {
        case IN_QUOTES:
            if (c == '"') state = CLOSED;
            else if (c == '\n') Py_RETURN_FALSE; /* a quoted line end: the csv module's */
            break;
        case CLOSED:
            if (c == '"') { /* "" inside quotes: one quote of the cell's text */
                state = IN_QUOTES;
                break;
            }
            if (c != ',' && c != '\n') Py_RETURN_FALSE; /* text after the closing quote */
            state = AT_CELL;
            break;
        default: /* AT_CELL, IN_CELL */
            if (c == '"') {
                if (state != AT_CELL) Py_RETURN_FALSE;
                state = IN_QUOTES;
            } else {
                state = (c == ',' || c == '\n') ? AT_CELL : IN_CELL;
            }
        }
        i++;
    }
    if (state == IN_QUOTES) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* ------------------------------------------------------------------------------------ Encoder */
typedef struct {
    Py_ssize_t position; /* the cell's index in the row (1.. width-1) */
    PyObject *head;      /* bytes: "\x08" index, type field, text/binary tag */
    PyObject *tail;      /* bytes: ttl and timestamp fields */
    int binary;
} Cell;

typedef struct {
    Py_ssize_t len; /* 0: empty slot */
    char prefix[PREFIX_MAX_CHARS];
    PyObject *owner; /* str, or NULL: rows under this prefix are Python's */
    PyObject *owned; /* bytes: the encoded owner field and times (NULL with owner) */
} Slot;

typedef struct {
    PyObject_HEAD
    Py_ssize_t width;
    Py_ssize_t ncells;
    Cell *cells;
    Py_ssize_t *bounds; /* width + 1 cell boundaries of the current row */
    unsigned char *quoted; /* whether each cell of the current row is quoted (if row_quoted) */
    int row_quoted;        /* the current row holds quotes: scan_row answered 2 */
    uint64_t nonce;
    PyObject *owners; /* dict */
    Slot *slots;
    Py_ssize_t nslots; /* a power of two */
    Py_ssize_t used;
} Encoder;

static int Encoder_traverse(Encoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->owners);
    for (Py_ssize_t i = 0; i < self->ncells; i++) {
        Py_VISIT(self->cells[i].head);
        Py_VISIT(self->cells[i].tail);
    }
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        Py_VISIT(self->slots[i].owner);
        Py_VISIT(self->slots[i].owned);
    }
    return 0;
}

static int Encoder_clear(Encoder *self) {
    Py_CLEAR(self->owners);
    for (Py_ssize_t i = 0; i < self->ncells; i++) {
        Py_CLEAR(self->cells[i].head);
        Py_CLEAR(self->cells[i].tail);
    }
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        Py_CLEAR(self->slots[i].owner);
        Py_CLEAR(self->slots[i].owned);
        self->slots[i].len = 0;
    }
    self->used = 0;
    return 0;
}

static void Encoder_dealloc(Encoder *self) {
    PyObject_GC_UnTrack(self);
    Encoder_clear(self);
    PyMem_Free(self->cells);
    PyMem_Free(self->bounds);
    PyMem_Free(self->quoted);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Encoder_init(Encoder *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"width", "cells", "nonce", "owners", NULL};
    Py_ssize_t width;
    PyObject *cells, *nonce, *owners;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nO!OO!:Encoder", kwlist, &width, &PyList_Type, &cells,
                                     &nonce, &PyDict_Type, &owners))
        return -1;
    if (self->cells != NULL || self->owners != NULL) {
        PyErr_SetString(PyExc_TypeError, "Encoder is already initialised");
        return -1;
    }
    if (width < 1 || width > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "width out of range");
        return -1;
    }
    if (!PyLong_Check(nonce)) {
        PyErr_SetString(PyExc_TypeError, "nonce must be an int");
        return -1;
    }
    uint64_t nonce_bits = (uint64_t)PyLong_AsUnsignedLongLongMask(nonce);
    if (nonce_bits == (uint64_t)-1 && PyErr_Occurred()) return -1;
    Py_ssize_t ncells = PyList_GET_SIZE(cells);
    Cell *table = PyMem_Calloc(ncells ? (size_t)ncells : 1, sizeof(Cell));
    Py_ssize_t *bounds = PyMem_Calloc((size_t)width + 1, sizeof(Py_ssize_t));
    unsigned char *quoted = PyMem_Calloc((size_t)width + 1, 1);
    Slot *slots = PyMem_Calloc(64, sizeof(Slot));
    if (table == NULL || bounds == NULL || quoted == NULL || slots == NULL) {
        PyMem_Free(table);
        PyMem_Free(bounds);
        PyMem_Free(quoted);
        PyMem_Free(slots);
        PyErr_NoMemory();
        return -1;
    }
    self->cells = table;
    self->bounds = bounds;
    self->quoted = quoted;
    self->slots = slots;
    self->nslots = 64;
    self->width = width;
    self->nonce = nonce_bits;
    self->ncells = 0;
    for (Py_ssize_t i = 0; i < ncells; i++) {
        PyObject *item = PyList_GET_ITEM(cells, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
            PyErr_SetString(PyExc_TypeError, "cells must be (position, head, tail, binary) tuples");
            return -1;
        }
        Py_ssize_t position = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0));
        if (position == -1 && PyErr_Occurred()) return -1;
        PyObject *head = PyTuple_GET_ITEM(item, 1), *tail = PyTuple_GET_ITEM(item, 2);
        int binary = PyObject_IsTrue(PyTuple_GET_ITEM(item, 3));
        if (binary < 0) return -1;
        if (position < 1 || position >= width || !PyBytes_Check(head) || !PyBytes_Check(tail)) {
            PyErr_SetString(PyExc_ValueError, "a cell needs 0 < position < width and bytes head, tail");
            return -1;
        }
        Py_INCREF(head);
        Py_INCREF(tail);
        table[i].position = position;
        table[i].head = head;
        table[i].tail = tail;
        table[i].binary = binary;
        self->ncells = i + 1;
    }
    Py_INCREF(owners);
    self->owners = owners;
    return 0;
}

static uint64_t hash_prefix(const unsigned char *s, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

static int grow_slots(Encoder *self) {
    Py_ssize_t size = self->nslots * 2;
    Slot *fresh = PyMem_Calloc((size_t)size, sizeof(Slot));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        Slot *old = &self->slots[i];
        if (!old->len) continue;
        uint64_t h = hash_prefix((const unsigned char *)old->prefix, old->len);
        Py_ssize_t j = (Py_ssize_t)(h & (uint64_t)(size - 1));
        while (fresh[j].len) j = (j + 1) & (size - 1);
        fresh[j] = *old; /* the references move */
    }
    PyMem_Free(self->slots);
    self->slots = fresh;
    self->nslots = size;
    return 0;
}

/* The slot of ``prefix`` (1 <= n <= PREFIX_MAX_CHARS, ASCII), looked up in ``owners`` when not
 * cached yet; *slot is NULL when owners has no entry for it (Python must make it). -1 on error. */
static int find_owner(Encoder *self, const unsigned char *prefix, Py_ssize_t n, Slot **slot) {
    uint64_t h = hash_prefix(prefix, n);
    Py_ssize_t mask = self->nslots - 1;
    Py_ssize_t j = (Py_ssize_t)(h & (uint64_t)mask);
    while (self->slots[j].len) {
        if (self->slots[j].len == n && memcmp(self->slots[j].prefix, prefix, (size_t)n) == 0) {
            *slot = &self->slots[j];
            return 0;
        }
        j = (j + 1) & mask;
    }
    *slot = NULL;
    PyObject *key = PyUnicode_DecodeASCII((const char *)prefix, n, "strict");
    if (key == NULL) return -1;
    PyObject *entry = PyDict_GetItemWithError(self->owners, key); /* borrowed */
    Py_DECREF(key);
    if (entry == NULL) return PyErr_Occurred() ? -1 : 0;
    PyObject *owner = NULL, *owned = NULL;
    if (entry != Py_None) {
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(entry, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(entry, 1))) {
            PyErr_SetString(PyExc_TypeError, "an owners entry must be None or (str, bytes)");
            return -1;
        }
        owner = PyTuple_GET_ITEM(entry, 0);
        owned = PyTuple_GET_ITEM(entry, 1);
    }
    if ((self->used + 1) * 2 > self->nslots) {
        if (grow_slots(self) < 0) return -1;
        mask = self->nslots - 1;
        j = (Py_ssize_t)(h & (uint64_t)mask);
        while (self->slots[j].len) j = (j + 1) & mask;
    }
    Slot *s = &self->slots[j];
    memcpy(s->prefix, prefix, (size_t)n);
    s->len = n;
    Py_XINCREF(owner);
    Py_XINCREF(owned);
    s->owner = owner;
    s->owned = owned;
    self->used++;
    *slot = s;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* scan_row for a row holding '"': cells may be quoted (see usable()), and quoted[k] says which
 * are. Answers 2, or 0 for a row of another shape or with a quote escaped as "" (its text is not
 * the bytes between the quotes: Python reads that row), or with a quote elsewhere, text after a
 * closing quote, a line end inside quotes (that "\n" then ends the row here, as usable() refuses
 * such a chunk). */
static int scan_quoted_row(const unsigned char *s, Py_ssize_t n, Py_ssize_t pos, Py_ssize_t width,
                           Py_ssize_t *bounds, unsigned char *quoted, Py_ssize_t *end) {
    Py_ssize_t cell = 0, i = pos;
    int ok = 1, state = AT_CELL;
    bounds[0] = 0;
    quoted[0] = 0;
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (c == '\n') break;
        /* the '\r' of a "\r\n", or a last one (encode_into reads a row without its "\n") */
        if (c == '\r' && (i + 1 == n || s[i + 1] == '\n') && state != IN_QUOTES) continue;
        if (state == IN_QUOTES) {
            if (c == '"') state = CLOSED;
            continue;
        }
        if (c == ',') {
            if (++cell >= width) {
                ok = 0;
            } else {
                bounds[cell] = i + 1 - pos;
                quoted[cell] = 0;
            }
            state = AT_CELL;
        } else if (c == '"' && state == AT_CELL) {
            state = IN_QUOTES;
            if (cell < width) quoted[cell] = 1;
        } else if (c == '"' && state == CLOSED) { /* "": a quote of the text, which Python unescapes */
            state = IN_QUOTES;
            ok = 0;
        } else {
            if (c == '"' || state == CLOSED) ok = 0;
            state = IN_CELL;
        }
    }
    *end = i;
    if (!ok || state == IN_QUOTES || cell != width - 1) return 0;
    bounds[width] = i - (i > pos && s[i - 1] == '\r') - pos + 1; /* the last cell stops before a "\r\n" */
    return 2;
}

/* Scans the row at s[pos] up to the next "\n" (or n), a '\r' right before it not part of the row's
 * last cell: *end is that "\n"'s offset (or n). Answers
 * 1 when the row has exactly ``width`` cells and no '"', with their bounds relative to pos in
 * bounds[0..width] (cell k is row[bounds[k] : bounds[k + 1] - 1]); 2 when it has them and simply
 * quoted cells (scan_quoted_row: see cell_span); else 0. Reads only s[pos:n]. */
static int scan_row(const unsigned char *s, Py_ssize_t n, Py_ssize_t pos, Py_ssize_t width, Py_ssize_t *bounds,
                    unsigned char *quoted, Py_ssize_t *end) {
    Py_ssize_t cell = 0, i = pos;
    int ok = 1;
    bounds[0] = 0;
#if defined(__SSE2__) && defined(__GNUC__)
    const __m128i commas = _mm_set1_epi8(','), newlines = _mm_set1_epi8('\n'), quotes = _mm_set1_epi8('"');
    while (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        unsigned nl = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, newlines));
        unsigned cm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, commas));
        unsigned qm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, quotes));
        if (nl) {
            cm &= (nl & (0u - nl)) - 1u; /* only the commas before the first "\n" */
            qm &= (nl & (0u - nl)) - 1u;
        }
        if (qm) return scan_quoted_row(s, n, pos, width, bounds, quoted, end);
        while (cm) {
            Py_ssize_t at = i + __builtin_ctz(cm);
            cm &= cm - 1u;
            if (++cell >= width)
                ok = 0;
            else
                bounds[cell] = at + 1 - pos;
        }
        if (nl) {
            i += __builtin_ctz(nl);
            goto found;
        }
        i += 16;
    }
#endif
    for (; i < n && s[i] != '\n'; i++) {
        if (s[i] == ',') {
            if (++cell >= width)
                ok = 0;
            else
                bounds[cell] = i + 1 - pos;
        } else if (s[i] == '"') {
            return scan_quoted_row(s, n, pos, width, bounds, quoted, end);
        }
    }
#if defined(__SSE2__) && defined(__GNUC__)
found:
#endif
    *end = i;
    if (!ok || cell != width - 1) return 0;
    bounds[width] = i - (i > pos && s[i - 1] == '\r') - pos + 1; /* the last cell stops before a "\r\n" */
    return 1;
}

/* Cell k of the row scan_row last read: its text's offset in the row and its length (a quoted
 * cell's text is what lies between its quotes). */
static inline void cell_span(const Encoder *enc, Py_ssize_t k, Py_ssize_t *at, Py_ssize_t *size) {
    Py_ssize_t start = enc->bounds[k], len = enc->bounds[k + 1] - 1 - start;
    if (enc->row_quoted && enc->quoted[k]) {
        start += 1;
        len -= 2;
    }
    *at = start;
    *size = len;
}

/* Whether CsvPlan.encode would take the row at s, whose ``width`` cells scan_row found (enc->bounds,
 * enc->quoted): 1 (with its identifier's offset and length, its record's size and its owner entry),
 * 0 (a row for Python) or -1 (error). */
static int plan_row(Encoder *enc, const unsigned char *s, Py_ssize_t *idat_out, Py_ssize_t *idlen_out,
                    Py_ssize_t *size_out, PyObject **owner, PyObject **owned) {
    Py_ssize_t idat, idlen;
    cell_span(enc, 0, &idat, &idlen);
    Py_ssize_t plen = prefix_length(s + idat, idlen);
    if (!plen) return 0;
    Slot *slot;
    if (find_owner(enc, s + idat, plen, &slot) < 0) return -1;
    if (slot == NULL || slot->owner == NULL) return 0;
    Py_ssize_t total = 1 + varint_size((uint64_t)idlen) + idlen;
    for (Py_ssize_t k = 0; k < enc->ncells; k++) {
        Cell *c = &enc->cells[k];
        Py_ssize_t at, size;
        cell_span(enc, c->position, &at, &size);
        if (!size) continue; /* an empty cell is no value */
        if (c->binary || size > VALUE_DATA_MAX) return 0;
        Py_ssize_t body = PyBytes_GET_SIZE(c->head) + varint_size((uint64_t)size) + size + PyBytes_GET_SIZE(c->tail);
        total += 1 + varint_size((uint64_t)body) + body;
        if (total > RECORD_MAX) return 0;
    }
    total += PyBytes_GET_SIZE(slot->owned) + 2 + 16;
    if (total > RECORD_MAX) return 0;
    *idat_out = idat;
    *idlen_out = idlen;
    *size_out = total;
    *owner = slot->owner;
    *owned = slot->owned;
    return 1;
}

/* Writes the record of a row plan_row took (s[0:n], owner entry ``owned``, etag number ``row``)
 * into out[0:total]; 0, or -1 with an exception set if the sizes disagree (cannot happen). */
static int encode_into(Encoder *enc, const unsigned char *s, Py_ssize_t n, PyObject *owned, uint64_t row,
                       char *out, Py_ssize_t total) {
    char *begin = out;
    Py_ssize_t end;
    int scanned = scan_row(s, n, 0, enc->width, enc->bounds, enc->quoted, &end);
    if (!scanned || end != n) goto mismatch;
    enc->row_quoted = scanned == 2;
    Py_ssize_t idat, idlen;
    cell_span(enc, 0, &idat, &idlen);
    if (1 + varint_size((uint64_t)idlen) + idlen > total) goto mismatch;
    *out++ = 0x0a;
    out = put_varint(out, (uint64_t)idlen);
    memcpy(out, s + idat, (size_t)idlen);
    out += idlen;
    for (Py_ssize_t k = 0; k < enc->ncells; k++) {
        Cell *c = &enc->cells[k];
        Py_ssize_t at, size;
        cell_span(enc, c->position, &at, &size);
        if (!size) continue;
        Py_ssize_t hlen = PyBytes_GET_SIZE(c->head), tlen = PyBytes_GET_SIZE(c->tail);
        Py_ssize_t body = hlen + varint_size((uint64_t)size) + size + tlen;
        if (out - begin + 1 + varint_size((uint64_t)body) + body > total) goto mismatch;
        *out++ = 0x12;
        out = put_varint(out, (uint64_t)body);
        memcpy(out, PyBytes_AS_STRING(c->head), (size_t)hlen);
        out += hlen;
        out = put_varint(out, (uint64_t)size);
        memcpy(out, s + at, (size_t)size);
        out += size;
        memcpy(out, PyBytes_AS_STRING(c->tail), (size_t)tlen);
        out += tlen;
    }
    Py_ssize_t owned_size = PyBytes_GET_SIZE(owned);
    if (out - begin + owned_size + 2 + 16 != total) goto mismatch;
    memcpy(out, PyBytes_AS_STRING(owned), (size_t)owned_size);
    out += owned_size;
    *out++ = 0x32;
    *out++ = 0x10;
    for (int b = 0; b < 16; b++) out[b] = HEX[(row >> (4 * (15 - b))) & 0xF];
    return 0;
mismatch:
    PyErr_SetString(PyExc_SystemError, "_csvfast: record size mismatch");
    return -1;
}

/* ------------------------------------------------------------------------------------ Rows */
typedef struct {
    Py_ssize_t number;   /* the row's number in the chunk */
    Py_ssize_t line;     /* its offset in the chunk */
    Py_ssize_t len;      /* its length (without the "\n") */
    Py_ssize_t key;      /* offset of its key in Rows.keys */
    Py_ssize_t keylen;
    Py_ssize_t size;     /* its record's size */
    PyObject *owner;     /* borrowed: held by the encoder's owner cache, which Rows holds */
    PyObject *owned;
} Entry;

typedef struct {
    PyObject_HEAD
    Encoder *enc;
    PyObject *data; /* bytes */
    uint64_t base;  /* nonce + start (mod 2**64): a row's etag number is base + its number */
    Py_ssize_t pos;
    Py_ssize_t number;
    Entry *entries;
    Py_ssize_t count, cap;
    char *keys; /* the taken rows' keys, back to back */
    Py_ssize_t keys_len, keys_cap;
    int state; /* 0: reading rows, 1: settled, 2: broken by an error */
} Rows;

static PyTypeObject RowsType;

static int Rows_traverse(Rows *self, visitproc visit, void *arg) {
    Py_VISIT(self->enc);
    Py_VISIT(self->data);
    return 0;
}

static int Rows_clear(Rows *self) {
    /* entries borrow from the encoder: drop them with it */
    self->count = 0;
    self->state = 2;
    Py_CLEAR(self->enc);
    Py_CLEAR(self->data);
    return 0;
}

static void Rows_dealloc(Rows *self) {
    PyObject_GC_UnTrack(self);
    Rows_clear(self);
    PyMem_Free(self->entries);
    PyMem_Free(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Encoder_rows(Encoder *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "rows(data: bytes, start: int)");
        return NULL;
    }
    if (self->owners == NULL) {
        PyErr_SetString(PyExc_TypeError, "Encoder is not initialised");
        return NULL;
    }
    uint64_t start = (uint64_t)PyLong_AsUnsignedLongLongMask(args[1]);
    if (start == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    Rows *rows = (Rows *)RowsType.tp_alloc(&RowsType, 0);
    if (rows == NULL) return NULL;
    Py_INCREF(self);
    rows->enc = self;
    Py_INCREF(args[0]);
    rows->data = args[0];
    rows->base = self->nonce + start;
    return (PyObject *)rows;
}

static int grow(void **buf, Py_ssize_t *cap, Py_ssize_t need, size_t item) {
    if (need <= *cap) return 0;
    Py_ssize_t size = *cap ? *cap : 1024;
    while (size < need) {
        if (size > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)item) {
            PyErr_NoMemory();
            return -1;
        }
        size *= 2;
    }
    void *fresh = PyMem_Realloc(*buf, (size_t)size * item);
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = fresh;
    *cap = size;
    return 0;
}

static PyObject *Rows_next(Rows *self, PyObject *unused) {
    (void)unused;
    if (self->state != 0) {
        PyErr_SetString(PyExc_RuntimeError, self->state == 1 ? "rows already settled" : "rows broken by an error");
        return NULL;
    }
    Encoder *enc = self->enc;
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(self->data);
    Py_ssize_t n = PyBytes_GET_SIZE(self->data);
    Py_ssize_t pos = self->pos;
    while (pos < n) {
        Py_ssize_t end;
        int cells = scan_row(s, n, pos, enc->width, enc->bounds, enc->quoted, &end);
        enc->row_quoted = cells == 2;
        Py_ssize_t next = end < n ? end + 1 : n;
        Py_ssize_t stop = end > pos && s[end - 1] == '\r' ? end - 1 : end; /* the row, without a "\r\n" */
        if (stop == pos) { /* an empty line: no row */
            pos = next;
            continue;
        }
        Py_ssize_t number = ++self->number;
        Py_ssize_t idat = 0, idlen = 0, size = 0;
        PyObject *owner = NULL, *owned = NULL;
        int rc = cells ? plan_row(enc, s + pos, &idat, &idlen, &size, &owner, &owned) : 0;
        if (rc < 0) goto broken;
        if (rc == 0) {
            self->pos = next;
            PyObject *line = PyBytes_FromStringAndSize((const char *)s + pos, stop - pos);
            if (line == NULL) goto broken;
            PyObject *answer = Py_BuildValue("(nO)", number, line);
            Py_DECREF(line);
            if (answer == NULL) goto broken;
            return answer;
        }
        if (grow((void **)&self->entries, &self->cap, self->count + 1, sizeof(Entry)) < 0 ||
            grow((void **)&self->keys, &self->keys_cap, self->keys_len + idlen, 1) < 0)
            goto broken;
        Entry *e = &self->entries[self->count++];
        e->number = number;
        e->line = pos;
        e->len = end - pos;
        e->key = self->keys_len;
        e->keylen = idlen;
        e->size = size;
        e->owner = owner;
        e->owned = owned;
        char *key = self->keys + self->keys_len;
        for (Py_ssize_t i = 0; i < idlen; i++) { /* bytes.upper(): ASCII a-z only */
            unsigned char c = s[pos + idat + i];
            key[i] = (char)((c >= 'a' && c <= 'z') ? c - 32 : c);
        }
        self->keys_len += idlen;
        pos = next;
    }
    self->pos = pos;
    Py_RETURN_NONE;
broken:
    self->state = 2;
    return NULL;
}

typedef struct {
    uint64_t head[2]; /* the key's first 16 bytes, big-endian, zero-padded: most comparisons end here */
    const unsigned char *key;
    Py_ssize_t keylen;
    Py_ssize_t number;
    Entry *entry;   /* a row the encoder took, or NULL */
    PyObject *item; /* else: the (key, number, owner, record) tuple Python made */
} Item;

static Item make_item(const unsigned char *key, Py_ssize_t keylen, Py_ssize_t number, Entry *entry, PyObject *item) {
    Item it = {{0, 0}, key, keylen, number, entry, item};
    for (Py_ssize_t i = 0; i < 16 && i < keylen; i++) it.head[i / 8] |= (uint64_t)key[i] << (8 * (7 - i % 8));
    return it;
}

/* (key, number) order; keys as bytes compare (memcmp, then the shorter first). Zero-padded heads
 * order the same way: where they differ, the first difference is a real byte or a real byte
 * against the end of the shorter key; where they are equal, the full comparison decides. */
static int compare_items(const void *a, const void *b) {
    const Item *x = a, *y = b;
    if (x->head[0] != y->head[0]) return x->head[0] < y->head[0] ? -1 : 1;
    if (x->head[1] != y->head[1]) return x->head[1] < y->head[1] ? -1 : 1;
    Py_ssize_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = n > 16 ? memcmp(x->key + 16, y->key + 16, (size_t)(n - 16)) : 0;
    if (c) return c;
    if (x->keylen != y->keylen) return x->keylen < y->keylen ? -1 : 1;
    return (x->number > y->number) - (x->number < y->number);
}

static int same_key(const Item *x, const Item *y) {
    return x->keylen == y->keylen && (x->keylen == 0 || memcmp(x->key, y->key, (size_t)x->keylen) == 0);
}

/* The record bytes of an item (a new reference). */
static PyObject *item_record(Rows *self, Item *it) {
    if (it->item != NULL) {
        PyObject *record = PyTuple_GET_ITEM(it->item, 3);
        Py_INCREF(record);
        return record;
    }
    Entry *e = it->entry;
    PyObject *record = PyBytes_FromStringAndSize(NULL, e->size);
    if (record == NULL) return NULL;
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(self->data);
    if (encode_into(self->enc, s + e->line, e->len, e->owned, self->base + (uint64_t)e->number,
                    PyBytes_AS_STRING(record), e->size) < 0) {
        Py_DECREF(record);
        return NULL;
    }
    return record;
}

/* What settle and settle_run share: the checks, then every item in (key, number) order. Returns
 * the items (PyMem; each Python item holding a reference, dropped by free_items) and sets *m and
 * *conflict, or returns NULL with an exception set. */
static Item *sorted_items(Rows *self, PyObject *const *args, Py_ssize_t nargs, const char *usage, long *conflict,
                          Py_ssize_t *m) {
    if (nargs != 2 || !PyList_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (self->state != 0) {
        PyErr_SetString(PyExc_RuntimeError, self->state == 1 ? "rows already settled" : "rows broken by an error");
        return NULL;
    }
    if (self->pos < PyBytes_GET_SIZE(self->data)) {
        PyErr_SetString(PyExc_RuntimeError, "settle() before next() answered None");
        return NULL;
    }
    *conflict = PyLong_AsLong(args[1]);
    if (*conflict == -1 && PyErr_Occurred()) return NULL;
    if (*conflict < 0 || *conflict > 2) {
        PyErr_SetString(PyExc_ValueError, "conflict must be 0 (fail), 1 (skip) or 2 (replace)");
        return NULL;
    }
    self->state = 1;
    PyObject *extra = args[0];
    Py_ssize_t nextra = PyList_GET_SIZE(extra);
    *m = self->count + nextra;
    Item *items = PyMem_Calloc(*m ? (size_t)*m : 1, sizeof(Item)); /* zeroed: .item NULL until held */
    if (items == NULL) {
        PyErr_NoMemory();
        self->state = 2;
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Entry *e = &self->entries[i];
        items[i] = make_item((const unsigned char *)self->keys + e->key, e->keylen, e->number, e, NULL);
    }
    for (Py_ssize_t i = 0; i < nextra; i++) {
        PyObject *item = PyList_GET_ITEM(extra, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4 || !PyBytes_Check(PyTuple_GET_ITEM(item, 0)) ||
            !PyLong_Check(PyTuple_GET_ITEM(item, 1)) || !PyUnicode_Check(PyTuple_GET_ITEM(item, 2)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 3))) {
            PyErr_SetString(PyExc_TypeError, "extra items must be (bytes, int, str, bytes)");
            goto broken;
        }
        Py_ssize_t number = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1));
        if (number == -1 && PyErr_Occurred()) goto broken;
        Py_INCREF(item); /* the list may not change under us, but hold them all the same */
        PyObject *key = PyTuple_GET_ITEM(item, 0);
        items[self->count + i] =
            make_item((const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), number, NULL, item);
    }
    if (*m > 1) qsort(items, (size_t)*m, sizeof(Item), compare_items);
    return items;
broken:
    for (Py_ssize_t i = 0; i < *m; i++) Py_XDECREF(items[i].item);
    PyMem_Free(items);
    self->state = 2;
    return NULL;
}

static void free_items(Item *items, Py_ssize_t m) {
    for (Py_ssize_t i = 0; i < m; i++) Py_XDECREF(items[i].item);
    PyMem_Free(items);
}

/* The end of the group of items sharing items[i]'s key (in row order). With ``prefetch``, fetches
 * what encoding reads of the items ahead: they are read in key order, i.e. all over the chunk, so
 * their entries and keys 16 items ahead, their lines 8 ahead (by then the entry is in the cache). */
static Py_ssize_t group_end(const Rows *self, const Item *items, Py_ssize_t i, Py_ssize_t m, int prefetch) {
#if defined(__GNUC__)
    if (prefetch) {
        if (i + 16 < m && items[i + 16].entry != NULL) {
            __builtin_prefetch(items[i + 16].entry);
            __builtin_prefetch(items[i + 16].key);
        }
        if (i + 8 < m && items[i + 8].entry != NULL) {
            const char *line = PyBytes_AS_STRING(self->data) + items[i + 8].entry->line;
            Py_ssize_t len = items[i + 8].entry->len;
            for (Py_ssize_t at = 0; at < len && at < 256; at += 64) __builtin_prefetch(line + at);
        }
    }
#else
    (void)self;
    (void)prefetch;
#endif
    Py_ssize_t j = i + 1;
    while (j < m && same_key(&items[j], &items[i])) j++;
    return j;
}

/* Settles the group items[i:j] by ``conflict``: which item is kept; the others are counted in
 * *superseded or *skipped, or with FAIL appended to ``dups`` as (number, record). -1 on error. */
static Py_ssize_t settle_group(Rows *self, Item *items, Py_ssize_t i, Py_ssize_t j, long conflict, PyObject *dups,
                               Py_ssize_t *superseded, Py_ssize_t *skipped) {
    if (conflict == 2) {
        *superseded += j - i - 1;
        return j - 1; /* replace: the last wins */
    }
    if (conflict == 1) {
        *skipped += j - i - 1;
        return i;
    }
    for (Py_ssize_t k = i + 1; k < j; k++) {
        PyObject *record = item_record(self, &items[k]);
        if (record == NULL) return -1;
        PyObject *dup = Py_BuildValue("(nO)", items[k].number, record);
        Py_DECREF(record);
        if (dup == NULL) return -1;
        int rc = PyList_Append(dups, dup);
        Py_DECREF(dup);
        if (rc < 0) return -1;
    }
    return i;
}

static PyObject *Rows_settle(Rows *self, PyObject *const *args, Py_ssize_t nargs) {
    long conflict;
    Py_ssize_t m;
    Item *items = sorted_items(self, args, nargs, "settle(extra: list, conflict: int)", &conflict, &m);
    if (items == NULL) return NULL;
    PyObject *keys = NULL, *numbers = NULL, *owners = NULL, *values = NULL, *dups = NULL, *answer = NULL;
    Py_ssize_t kept = 0, superseded = 0, skipped = 0;
    for (Py_ssize_t i = 0; i < m; i++)
        if (i == 0 || !same_key(&items[i], &items[i - 1])) kept++;
    keys = PyList_New(kept);
    numbers = PyList_New(kept);
    owners = PyList_New(kept);
    values = PyList_New(kept);
    dups = PyList_New(0);
    if (keys == NULL || numbers == NULL || owners == NULL || values == NULL || dups == NULL) goto done;
    Py_ssize_t out = 0;
    for (Py_ssize_t i = 0; i < m;) {
        Py_ssize_t j = group_end(self, items, i, m, 1);
        Py_ssize_t chosen = settle_group(self, items, i, j, conflict, dups, &superseded, &skipped);
        if (chosen < 0) goto done;
        Item *it = &items[chosen];
        PyObject *key, *number, *owner, *record;
        if (it->item != NULL) {
            key = PyTuple_GET_ITEM(it->item, 0);
            number = PyTuple_GET_ITEM(it->item, 1);
            owner = PyTuple_GET_ITEM(it->item, 2);
            Py_INCREF(key);
            Py_INCREF(number);
            Py_INCREF(owner);
        } else {
            key = PyBytes_FromStringAndSize((const char *)it->key, it->keylen);
            number = PyLong_FromSsize_t(it->number);
            owner = it->entry->owner;
            Py_INCREF(owner);
        }
        PyList_SET_ITEM(keys, out, key); /* the lists own them now, NULL or not */
        PyList_SET_ITEM(numbers, out, number);
        PyList_SET_ITEM(owners, out, owner);
        if (key == NULL || number == NULL) {
            out++;
            goto done;
        }
        record = item_record(self, it);
        PyList_SET_ITEM(values, out, record);
        out++;
        if (record == NULL) goto done;
        i = j;
    }
    answer = Py_BuildValue("(OOOOOnn)", keys, numbers, owners, values, dups, superseded, skipped);
done:
    free_items(items, m);
    Py_XDECREF(keys);
    Py_XDECREF(numbers);
    Py_XDECREF(owners);
    Py_XDECREF(values);
    Py_XDECREF(dups);
    if (answer == NULL) self->state = 2;
    return answer;
}

/* The size of the record an item stands for. */
static Py_ssize_t item_size(const Item *it) {
    return it->item != NULL ? PyBytes_GET_SIZE(PyTuple_GET_ITEM(it->item, 3)) : it->entry->size;
}

static PyObject *Rows_settle_run(Rows *self, PyObject *const *args, Py_ssize_t nargs) {
    long conflict;
    Py_ssize_t m;
    Item *items = sorted_items(self, args, nargs, "settle_run(extra: list, conflict: int)", &conflict, &m);
    if (items == NULL) return NULL;
    PyObject *run = NULL, *dups = NULL, *answer = NULL;
    Py_ssize_t superseded = 0, skipped = 0;
    /* Pass 1: the kept records' sizes, for one buffer. */
    uint64_t records_end = 0, index_size = 0, kept = 0;
    for (Py_ssize_t i = 0; i < m;) {
        Py_ssize_t j = group_end(self, items, i, m, 0);
        const Item *it = &items[conflict == 2 ? j - 1 : i];
        records_end += run_record_size((uint64_t)it->keylen, (uint64_t)item_size(it));
        index_size += run_index_size(kept++, (uint64_t)it->keylen);
        i = j;
    }
    if (records_end + index_size > (uint64_t)PY_SSIZE_T_MAX - RUN_FOOTER_SIZE) {
        PyErr_NoMemory();
        goto done;
    }
    run = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(records_end + index_size + RUN_FOOTER_SIZE));
    dups = PyList_New(0);
    if (run == NULL || dups == NULL) goto done;
    /* Pass 2: each kept record straight into the run (the taken rows encoded in place). */
    RunWriter w;
    run_writer_init(&w, (unsigned char *)PyBytes_AS_STRING(run), records_end);
    const unsigned char *chunk = (const unsigned char *)PyBytes_AS_STRING(self->data);
    for (Py_ssize_t i = 0; i < m;) {
        Py_ssize_t j = group_end(self, items, i, m, 1);
        Py_ssize_t chosen = settle_group(self, items, i, j, conflict, dups, &superseded, &skipped);
        if (chosen < 0) goto done;
        const Item *it = &items[chosen];
        Py_ssize_t size = item_size(it);
        unsigned char *value = run_writer_record(&w, it->key, (uint32_t)it->keylen, (uint32_t)size);
        if (it->item != NULL) {
            memcpy(value, PyBytes_AS_STRING(PyTuple_GET_ITEM(it->item, 3)), (size_t)size);
        } else {
            const Entry *e = it->entry;
            if (encode_into(self->enc, chunk + e->line, e->len, e->owned, self->base + (uint64_t)e->number,
                            (char *)value, size) < 0)
                goto done;
        }
        run_writer_row(&w, (uint32_t)size, (uint64_t)it->number);
        i = j;
    }
    run_writer_footer(&w);
    answer = Py_BuildValue("(OKOnn)", run, (unsigned long long)kept, dups, superseded, skipped);
done:
    free_items(items, m);
    Py_XDECREF(run);
    Py_XDECREF(dups);
    if (answer == NULL) self->state = 2;
    return answer;
}

static PyMethodDef Rows_methods[] = {
    {"next", (PyCFunction)Rows_next, METH_NOARGS,
     "next() -> (number, line) of the next row Python must check, or None at the end."},
    {"settle", (PyCFunction)(void (*)(void))Rows_settle, METH_FASTCALL,
     "settle(extra, conflict) -> (keys, rows, owners, values, dups, superseded, skipped)."},
    {"settle_run", (PyCFunction)(void (*)(void))Rows_settle_run, METH_FASTCALL,
     "settle_run(extra, conflict) -> (run, count, dups, superseded, skipped)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Rows_members[] = {
    {"count", T_PYSSIZET, offsetof(Rows, number), READONLY, "The number of the last row read."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RowsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "registry.bulk._csvfast.Rows",
    .tp_basicsize = sizeof(Rows),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The rows of one chunk going through an Encoder: see the module docstring.",
    .tp_dealloc = (destructor)Rows_dealloc,
    .tp_traverse = (traverseproc)Rows_traverse,
    .tp_clear = (inquiry)Rows_clear,
    .tp_methods = Rows_methods,
    .tp_members = Rows_members,
};

static PyMethodDef Encoder_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Encoder_rows, METH_FASTCALL,
     "rows(data, start) -> Rows: see the module docstring."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "registry.bulk._csvfast.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The per-file constants of a CsvPlan, and its owner cache: see the module docstring.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_traverse = (traverseproc)Encoder_traverse,
    .tp_clear = (inquiry)Encoder_clear,
    .tp_methods = Encoder_methods,
};

/* ------------------------------------------------------------------------------------ filter */
static PyObject *filter_test_and_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyByteArray_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "filter_test_and_add(bits: bytearray, keys: list[bytes])");
        return NULL;
    }
    PyObject *bits_obj = args[0], *keys = args[1];
    if ((uint64_t)PyByteArray_GET_SIZE(bits_obj) != FILTER_BITS / 8) {
        PyErr_SetString(PyExc_ValueError, "the filter must have 2**28 bits");
        return NULL;
    }
    /* First every key's hash (bytes hash in C: no Python code runs, so neither the list nor the
     * bytearray can change), then the probes in order, each prefetched a few keys ahead: the
     * filter is far bigger than the caches. */
    Py_ssize_t n = PyList_GET_SIZE(keys);
    uint64_t *hashes = PyMem_Malloc(n ? (size_t)n * sizeof(uint64_t) : 1);
    if (hashes == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (!PyBytes_Check(key)) {
            PyMem_Free(hashes);
            PyErr_SetString(PyExc_TypeError, "filter_test_and_add() keys must be bytes");
            return NULL;
        }
        Py_hash_t hv = PyObject_Hash(key);
        if (hv == -1 && PyErr_Occurred()) {
            PyMem_Free(hashes);
            return NULL;
        }
        hashes[i] = (uint64_t)hv; /* Python's h & mask and (h >> 28) & mask, on two's complement */
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyMem_Free(hashes);
        return NULL;
    }
    unsigned char *bits = (unsigned char *)PyByteArray_AS_STRING(bits_obj);
    const uint64_t mask = FILTER_BITS - 1;
    enum { AHEAD = 8 };
    for (Py_ssize_t i = 0; i < n; i++) {
#if defined(__GNUC__)
        if (i + AHEAD < n) {
            uint64_t h = hashes[i + AHEAD];
            __builtin_prefetch(bits + ((h & mask) >> 3), 1);
            __builtin_prefetch(bits + (((h >> 28) & mask) >> 3), 1);
        }
#endif
        uint64_t h = hashes[i];
        uint64_t a = h & mask, b = (h >> 28) & mask;
        unsigned char ma = (unsigned char)(1u << (a & 7)), mb = (unsigned char)(1u << (b & 7));
        a >>= 3;
        b >>= 3;
        if ((bits[a] & ma) && (bits[b] & mb)) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(out, index) < 0) {
                Py_XDECREF(index);
                Py_DECREF(out);
                PyMem_Free(hashes);
                return NULL;
            }
            Py_DECREF(index);
        } else {
            bits[a] |= ma;
            bits[b] |= mb;
        }
    }
    PyMem_Free(hashes);
    return out;
}

/* ------------------------------------------------------------------------------------ module */
static PyMethodDef module_methods[] = {
    {"usable", usable, METH_O, "usable(data: bytes) -> bool: see the module docstring."},
    {"filter_test_and_add", (PyCFunction)(void (*)(void))filter_test_and_add, METH_FASTCALL,
     "filter_test_and_add(bits: bytearray, keys: list[bytes]) -> list[int]: KeyFilter.test_and_add."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "registry.bulk._csvfast", "The CSV bulk-import fast path in C.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__csvfast(void) {
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&RowsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(&EncoderType);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *limits = Py_BuildValue("(iiiii)", VALUE_DATA_MAX, RECORD_MAX, IDENTIFIER_MAX_CHARS, PREFIX_MAX_CHARS,
                                     SEGMENT_MAX_CHARS);
    if (limits == NULL || PyModule_AddObject(m, "LIMITS", limits) < 0) {
        Py_XDECREF(limits);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
