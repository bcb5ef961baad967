/* registry.bulk._lines: an export's per-record loops, in C.
 *
 * The pure-Python twins are registry.bulk.formats.csv_column_keys, csv_lines and json_lines
 * (through record_pb2.Record.FromString); the export uses this module when registry.native.load()
 * finds it, and both make the same results (tests/test_bulk_export_native.py). Every function
 * holds the GIL for its whole run and calls back into no Python code but dict lookups of
 * int/str/bool tuples.
 *
 *   column_keys(page: list[bytes]) -> set[tuple[int, str, int, bool]] | None
 *       The (index, type, TTL, binary) of every value of the encoded Records in page: TTL 86400
 *       when unset, binary when the value's data is its `binary` field.
 *   csv_lines(page: list[bytes], column_of: dict, width: int) -> bytes | None
 *       The UTF-8 CSV lines of the records: the identifier, then width cells, a value in the cell
 *       column_of[its key] names (binary data in base64), "\n" after each. A cell holding a comma,
 *       a quote, a CR or an LF is quoted, its quotes doubled. ValueError for a value CSV cannot
 *       hold (empty text) or whose key column_of lacks, with the twin's message.
 *   json_lines(page: list[bytes], metadata: bool) -> bytes | None
 *       The UTF-8 JSON Lines of the records (their templates included), byte for byte what
 *       json.dumps(ensure_ascii=False, separators=(",", ":")) makes of
 *       registry.bulk.formats.json_line's objects.
 *
 * All answer None when a record is not one this parser takes whole (malformed wire data, invalid
 * UTF-8 in a string, a known field with an unexpected wire type, a group, a time outside years
 * 1970-9999 or with nanoseconds out of range): the caller then runs the twin on the page, which
 * raises as protobuf does or copes as it does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../native_wire.h"

#define DEFAULT_TTL 86400u

typedef struct {
    const unsigned char *p, *end;
} Cursor;

/* A varint of at most 10 bytes; 0 on truncation or a longer one. */
static int get_varint(Cursor *c, uint64_t *value) {
    uint64_t result = 0;
    for (int shift = 0; c->p < c->end && shift < 70; shift += 7) {
        unsigned char byte = *c->p++;
        result |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *value = result;
            return 1;
        }
    }
    return 0;
}

/* Skips a field of wire type `wire` (the tag already read); 0 for a group or bad data. */
static int skip_field(Cursor *c, unsigned wire) {
    uint64_t n;
    switch (wire) {
    case 0: return get_varint(c, &n);
    case 1:
        if (c->end - c->p < 8) return 0;
        c->p += 8;
        return 1;
    case 2:
        if (!get_varint(c, &n) || n > (uint64_t)(c->end - c->p)) return 0;
        c->p += n;
        return 1;
    case 5:
        if (c->end - c->p < 4) return 0;
        c->p += 4;
        return 1;
    default: return 0;
    }
}

/* A google.protobuf.Timestamp, as protobuf's parser merges every occurrence of the field. */
typedef struct {
    int64_t seconds;
    int32_t nanos;
    int present;
} Time;

/* Reads a Timestamp message field (the tag already read) into t. */
static int get_time(Cursor *c, Time *t) {
    uint64_t n, tag, value;
    if (!get_varint(c, &n) || n > (uint64_t)(c->end - c->p)) return 0;
    Cursor inner = {c->p, c->p + n};
    while (inner.p < inner.end) {
        if (!get_varint(&inner, &tag) || tag >> 3 == 0 || tag >> 3 > 0x1FFFFFFF) return 0;
        if (tag == 0x08 || tag == 0x10) { /* int64 seconds, int32 nanos */
            if (!get_varint(&inner, &value)) return 0;
            if (tag == 0x08)
                t->seconds = (int64_t)value;
            else
                t->nanos = (int32_t)(uint32_t)value;
        } else if ((tag >> 3 == 1 || tag >> 3 == 2) || !skip_field(&inner, tag & 7)) {
            return 0; /* a known field with another wire type, or bad data */
        }
    }
    t->present = 1;
    c->p += n;
    return 1;
}

/* A length-delimited field's bytes (the tag already read). */
static int get_bytes(Cursor *c, const unsigned char **data, Py_ssize_t *len) {
    uint64_t n;
    if (!get_varint(c, &n) || n > (uint64_t)(c->end - c->p)) return 0;
    *data = c->p;
    *len = (Py_ssize_t)n;
    c->p += n;
    return 1;
}

typedef struct {
    uint32_t index, ttl;
    int binary; /* the data is the `binary` field */
    const unsigned char *type, *data;
    Py_ssize_t type_len, data_len;
    Time stamp;
} Val;

/* Parses a Value message at [p, end); 0 when the parser does not take it. */
static int parse_value(const unsigned char *p, const unsigned char *end, Val *v) {
    Cursor c = {p, end};
    int has_ttl = 0;
    memset(v, 0, sizeof *v);
    v->type = v->data = (const unsigned char *)"";
    while (c.p < c.end) {
        uint64_t tag, n;
        if (!get_varint(&c, &tag) || tag >> 3 == 0 || tag >> 3 > 0x1FFFFFFF) return 0;
        unsigned field = (unsigned)(tag >> 3), wire = (unsigned)(tag & 7);
        switch (field) {
        case 1: /* uint32 index */
            if (wire != 0 || !get_varint(&c, &n)) return 0;
            v->index = (uint32_t)n;
            break;
        case 2: /* string type */
            if (wire != 2 || !get_bytes(&c, &v->type, &v->type_len)) return 0;
            if (!valid_utf8(v->type, v->type_len)) return 0;
            break;
        case 3: /* oneof data: string text */
        case 4: /* oneof data: bytes binary */
            if (wire != 2 || !get_bytes(&c, &v->data, &v->data_len)) return 0;
            v->binary = field == 4;
            if (field == 3 && !valid_utf8(v->data, v->data_len)) return 0;
            break;
        case 5: /* optional uint32 ttl */
            if (wire != 0 || !get_varint(&c, &n)) return 0;
            v->ttl = (uint32_t)n;
            has_ttl = 1;
            break;
        case 6: /* Timestamp timestamp */
            if (wire != 2 || !get_time(&c, &v->stamp)) return 0;
            break;
        default:
            if (!skip_field(&c, wire)) return 0;
        }
    }
    if (!has_ttl) v->ttl = DEFAULT_TTL;
    return 1;
}

/* A record's identifier and the spans of its Value messages (in `vals`, grown as needed). */
typedef struct {
    const unsigned char *id, *owner, *etag, *template;
    Py_ssize_t id_len, owner_len, etag_len, template_len;
    Time created, updated;
    Val *vals;
    Py_ssize_t count, cap;
} Rec;

/* Parses the Record in `raw` into r; 0 when the parser does not take it, -1 on MemoryError. */
static int parse_record(PyObject *raw, Rec *r) {
    char *buf;
    Py_ssize_t len;
    if (!PyBytes_Check(raw) || PyBytes_AsStringAndSize(raw, &buf, &len) < 0) {
        PyErr_Clear();
        return 0;
    }
    Cursor c = {(const unsigned char *)buf, (const unsigned char *)buf + len};
    r->id = r->owner = r->etag = r->template = (const unsigned char *)"";
    r->id_len = r->owner_len = r->etag_len = r->template_len = 0;
    r->created = r->updated = (Time){0, 0, 0};
    r->count = 0;
    while (c.p < c.end) {
        uint64_t tag;
        if (!get_varint(&c, &tag) || tag >> 3 == 0 || tag >> 3 > 0x1FFFFFFF) return 0;
        unsigned field = (unsigned)(tag >> 3), wire = (unsigned)(tag & 7);
        const unsigned char *data;
        Py_ssize_t n;
        if (field == 1) { /* string identifier */
            if (wire != 2 || !get_bytes(&c, &r->id, &r->id_len)) return 0;
            if (!valid_utf8(r->id, r->id_len)) return 0;
        } else if (field == 2) { /* repeated Value values */
            if (wire != 2 || !get_bytes(&c, &data, &n)) return 0;
            if (r->count == r->cap) {
                Py_ssize_t cap = r->cap ? 2 * r->cap : 16;
                Val *grown = PyMem_Realloc(r->vals, (size_t)cap * sizeof(Val));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                r->vals = grown;
                r->cap = cap;
            }
            if (!parse_value(data, data + n, &r->vals[r->count])) return 0;
            r->count++;
        } else if (field == 3) { /* string owner */
            if (wire != 2 || !get_bytes(&c, &r->owner, &r->owner_len) || !valid_utf8(r->owner, r->owner_len))
                return 0;
        } else if (field == 6) { /* string etag */
            if (wire != 2 || !get_bytes(&c, &r->etag, &r->etag_len) || !valid_utf8(r->etag, r->etag_len))
                return 0;
        } else if (field == 7) { /* string template */
            if (wire != 2 || !get_bytes(&c, &r->template, &r->template_len) ||
                !valid_utf8(r->template, r->template_len))
                return 0;
        } else if (field == 4 || field == 5) { /* Timestamp create_time, update_time */
            if (wire != 2 || !get_time(&c, field == 4 ? &r->created : &r->updated)) return 0;
        } else if (!skip_field(&c, wire)) {
            return 0;
        }
    }
    return 1;
}

/* The columns met so far, each with its Python key and (for csv_lines) its cell position. */
typedef struct {
    uint32_t index, ttl;
    int binary;
    char *type;
    Py_ssize_t type_len, position;
} Col;

typedef struct {
    Col *cols;
    Py_ssize_t count, cap;
} Cols;

static void cols_free(Cols *t) {
    for (Py_ssize_t i = 0; i < t->count; i++) PyMem_Free(t->cols[i].type);
    PyMem_Free(t->cols);
}

/* The entry of v's key, or NULL. Columns are few (tens), so a scan beats hashing. */
static Col *cols_find(Cols *t, const Val *v) {
    for (Py_ssize_t i = 0; i < t->count; i++) {
        Col *col = &t->cols[i];
        if (col->index == v->index && col->ttl == v->ttl && col->binary == v->binary &&
            col->type_len == v->type_len && memcmp(col->type, v->type, (size_t)v->type_len) == 0)
            return col;
    }
    return NULL;
}

static Col *cols_add(Cols *t, const Val *v, Py_ssize_t position) {
    if (t->count == t->cap) {
        Py_ssize_t cap = t->cap ? 2 * t->cap : 16;
        Col *grown = PyMem_Realloc(t->cols, (size_t)cap * sizeof(Col));
        if (grown == NULL) return (Col *)PyErr_NoMemory();
        t->cols = grown;
        t->cap = cap;
    }
    char *type = PyMem_Malloc(v->type_len ? (size_t)v->type_len : 1);
    if (type == NULL) return (Col *)PyErr_NoMemory();
    memcpy(type, v->type, (size_t)v->type_len);
    Col *col = &t->cols[t->count++];
    *col = (Col){v->index, v->ttl, v->binary, type, v->type_len, position};
    return col;
}

/* The Python key of v: (index, type, ttl, binary). */
static PyObject *key_of(const Val *v) {
    return Py_BuildValue("(kNkO)", (unsigned long)v->index,
                         PyUnicode_DecodeUTF8((const char *)v->type, v->type_len, "strict"),
                         (unsigned long)v->ttl, v->binary ? Py_True : Py_False);
}

static PyObject *column_keys(PyObject *self, PyObject *page) {
    if (!PyList_Check(page)) {
        PyErr_SetString(PyExc_TypeError, "column_keys() takes a list of bytes");
        return NULL;
    }
    Rec r = {0};
    Cols t = {0};
    PyObject *out = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(page); i++) {
        int ok = parse_record(PyList_GET_ITEM(page, i), &r);
        if (ok <= 0) {
            if (ok == 0) out = Py_None, Py_INCREF(out);
            goto done;
        }
        for (Py_ssize_t k = 0; k < r.count; k++)
            if (cols_find(&t, &r.vals[k]) == NULL && cols_add(&t, &r.vals[k], 0) == NULL) goto done;
    }
    out = PySet_New(NULL);
    for (Py_ssize_t i = 0; out != NULL && i < t.count; i++) {
        Col *col = &t.cols[i];
        Val v = {.index = col->index, .ttl = col->ttl, .binary = col->binary,
                 .type = (const unsigned char *)col->type, .type_len = col->type_len};
        PyObject *key = key_of(&v);
        if (key == NULL || PySet_Add(out, key) < 0) Py_CLEAR(out);
        Py_XDECREF(key);
    }
done:
    PyMem_Free(r.vals);
    cols_free(&t);
    return out;
}

/* A growing output buffer. */
typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} Out;

static int out_reserve(Out *o, Py_ssize_t more) {
    if (o->len + more <= o->cap) return 1;
    Py_ssize_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + more) cap *= 2;
    char *grown = PyMem_Realloc(o->buf, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    o->buf = grown;
    o->cap = cap;
    return 1;
}

/* Appends a text cell, quoted when it holds a comma, a quote, a CR or an LF. */
static int put_text(Out *o, const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t quotes = 0;
    int special = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '"') quotes++;
        special |= ch == ',' || ch == '"' || ch == '\n' || ch == '\r';
    }
    if (!out_reserve(o, n + quotes + 2)) return 0;
    char *w = o->buf + o->len;
    if (!special) {
        memcpy(w, s, (size_t)n);
        o->len += n;
        return 1;
    }
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] == '"') *w++ = '"';
        *w++ = (char)s[i];
    }
    *w++ = '"';
    o->len = w - o->buf;
    return 1;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Appends s in standard base64 with padding (never quoted: its alphabet has no special byte). */
static int put_base64(Out *o, const unsigned char *s, Py_ssize_t n) {
    if (!out_reserve(o, (n + 2) / 3 * 4)) return 0;
    char *w = o->buf + o->len;
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *w++ = B64[x >> 18];
        *w++ = B64[(x >> 12) & 63];
        *w++ = B64[(x >> 6) & 63];
        *w++ = B64[x & 63];
    }
    if (n - i == 1) {
        uint32_t x = (uint32_t)s[i] << 16;
        *w++ = B64[x >> 18];
        *w++ = B64[(x >> 12) & 63];
        *w++ = '=';
        *w++ = '=';
    } else if (n - i == 2) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *w++ = B64[x >> 18];
        *w++ = B64[(x >> 12) & 63];
        *w++ = B64[(x >> 6) & 63];
        *w++ = '=';
    }
    o->len = w - o->buf;
    return 1;
}

/* Raises ValueError("<identifier> <what> (index <index>)<tail>"), as the twin words it. */
static void value_error(const Rec *r, const char *what, uint32_t index, const char *tail) {
    PyObject *id = PyUnicode_DecodeUTF8((const char *)r->id, r->id_len, "strict");
    if (id != NULL) PyErr_Format(PyExc_ValueError, "%U %s (index %lu)%s", id, what, (unsigned long)index, tail);
    Py_XDECREF(id);
}

static PyObject *csv_lines(PyObject *self, PyObject *args) {
    PyObject *page, *column_of;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "O!O!n:csv_lines", &PyList_Type, &page, &PyDict_Type, &column_of, &width))
        return NULL;
    if (width < 0) {
        PyErr_SetString(PyExc_ValueError, "csv_lines() width must not be negative");
        return NULL;
    }
    Rec r = {0};
    Cols t = {0};
    Out o = {0};
    PyObject *result = NULL;
    /* cell[p]: the value in column p of the current record, valid where stamp[p] == its number */
    const Val **cell = PyMem_Calloc((size_t)width + 1, sizeof *cell);
    Py_ssize_t *stamp = PyMem_Calloc((size_t)width + 1, sizeof *stamp);
    if (cell == NULL || stamp == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(page); i++) {
        int ok = parse_record(PyList_GET_ITEM(page, i), &r);
        if (ok <= 0) {
            if (ok == 0) result = Py_None, Py_INCREF(result);
            goto done;
        }
        for (Py_ssize_t k = 0; k < r.count; k++) {
            const Val *v = &r.vals[k];
            Col *col = cols_find(&t, v);
            if (col == NULL) {
                PyObject *key = key_of(v);
                if (key == NULL) goto done;
                PyObject *at = PyDict_GetItemWithError(column_of, key);
                Py_DECREF(key);
                if (at == NULL) {
                    if (!PyErr_Occurred())
                        value_error(&r, "has a value in a column the header lacks", v->index,
                                    ": it was written during the export; export again");
                    goto done;
                }
                Py_ssize_t position = PyLong_AsSsize_t(at);
                if (position == -1 && PyErr_Occurred()) goto done;
                if (position < 0 || position >= width) {
                    PyErr_SetString(PyExc_ValueError, "csv_lines() column_of names a cell past width");
                    goto done;
                }
                if ((col = cols_add(&t, v, position)) == NULL) goto done;
            }
            if (!v->binary && v->data_len == 0) {
                value_error(&r, "has an empty text value", v->index, "; export JSONL");
                goto done;
            }
            cell[col->position] = v;
            stamp[col->position] = i + 1;
        }
        if (!put_text(&o, r.id, r.id_len)) goto done;
        for (Py_ssize_t p = 0; p < width; p++) {
            if (!out_reserve(&o, 1)) goto done;
            o.buf[o.len++] = ',';
            if (stamp[p] != i + 1) continue;
            const Val *v = cell[p];
            if (!(v->binary ? put_base64(&o, v->data, v->data_len) : put_text(&o, v->data, v->data_len)))
                goto done;
        }
        if (!out_reserve(&o, 1)) goto done;
        o.buf[o.len++] = '\n';
    }
    result = PyBytes_FromStringAndSize(o.buf, o.len);
done:
    PyMem_Free(cell);
    PyMem_Free(stamp);
    PyMem_Free(o.buf);
    PyMem_Free(r.vals);
    cols_free(&t);
    return result;
}

/* Appends s as a JSON string, escaped as Python's json module escapes it with ensure_ascii
 * False: quote, backslash and the C0 controls only (\b \t \n \f \r by name, others as \u00XX). */
static int put_json_text(Out *o, const unsigned char *s, Py_ssize_t n) {
    static const char HEX[] = "0123456789abcdef";
    if (!out_reserve(o, 6 * n + 2)) return 0;
    char *w = o->buf + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            *w++ = (char)ch;
            continue;
        }
        *w++ = '\\';
        switch (ch) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\t': *w++ = 't'; break;
        case '\n': *w++ = 'n'; break;
        case '\f': *w++ = 'f'; break;
        case '\r': *w++ = 'r'; break;
        default:
            memcpy(w, "u00", 3);
            w += 3;
            *w++ = HEX[ch >> 4];
            *w++ = HEX[ch & 15];
        }
    }
    *w++ = '"';
    o->len = w - o->buf;
    return 1;
}

static int put_raw(Out *o, const char *s) {
    Py_ssize_t n = (Py_ssize_t)strlen(s);
    if (!out_reserve(o, n)) return 0;
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    return 1;
}

static int put_uint(Out *o, unsigned long long n) {
    char digits[24];
    int k = snprintf(digits, sizeof digits, "%llu", n);
    if (!out_reserve(o, k)) return 0;
    memcpy(o->buf + o->len, digits, (size_t)k);
    o->len += k;
    return 1;
}

#define LAST_SECOND 253402300799LL /* 9999-12-31T23:59:59Z */

/* Whether t is a time formats.rfc3339 writes with a four-digit year (or unset). */
static int time_in_range(const Time *t) {
    return !t->present || (t->seconds >= 0 && t->seconds <= LAST_SECOND && t->nanos >= 0 && t->nanos <= 999999999);
}

/* Appends `,"<name>":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"` for a time other than the epoch itself,
 * which formats.time_ns cannot tell from an unset one (both omitted). */
static int put_time(Out *o, const char *name, const Time *t) {
    if (!t->present || (t->seconds == 0 && t->nanos == 0)) return 1;
    /* days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted) */
    int64_t days = t->seconds / 86400, rest = t->seconds % 86400;
    int64_t z = days + 719468, era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    char text[64];
    int k = snprintf(text, sizeof text, ",\"%s\":\"%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%09ldZ\"", name,
                     (long long)year, (long long)month, (long long)day, (long long)(rest / 3600),
                     (long long)(rest / 60 % 60), (long long)(rest % 60), (long)t->nanos);
    if (!out_reserve(o, k)) return 0;
    memcpy(o->buf + o->len, text, (size_t)k);
    o->len += k;
    return 1;
}

/* Appends one record's JSON line; 0 with an exception set. */
static int put_json_record(Out *o, const Rec *r, int metadata) {
    if (!put_raw(o, "{\"identifier\":") || !put_json_text(o, r->id, r->id_len) || !put_raw(o, ",\"values\":["))
        return 0;
    for (Py_ssize_t k = 0; k < r->count; k++) {
        const Val *v = &r->vals[k];
        if (!put_raw(o, k ? ",{\"index\":" : "{\"index\":") || !put_uint(o, v->index) ||
            !put_raw(o, ",\"type\":") || !put_json_text(o, v->type, v->type_len) || !put_raw(o, ",\"data\":"))
            return 0;
        if (v->binary) {
            if (!put_raw(o, "{\"binary\":\"") || !put_base64(o, v->data, v->data_len) || !put_raw(o, "\"}"))
                return 0;
        } else if (!put_json_text(o, v->data, v->data_len)) {
            return 0;
        }
        if (!put_raw(o, ",\"ttl\":") || !put_uint(o, v->ttl)) return 0;
        if (metadata && !put_time(o, "timestamp", &v->stamp)) return 0;
        if (!put_raw(o, "}")) return 0;
    }
    if (!put_raw(o, "]")) return 0;
    if (r->template_len && (!put_raw(o, ",\"template\":") || !put_json_text(o, r->template, r->template_len)))
        return 0;
    if (metadata) {
        if (!put_raw(o, ",\"owner\":") || !put_json_text(o, r->owner, r->owner_len) ||
            !put_time(o, "create_time", &r->created) || !put_time(o, "update_time", &r->updated) ||
            !put_raw(o, ",\"etag\":") || !put_json_text(o, r->etag, r->etag_len))
            return 0;
    }
    return put_raw(o, "}\n");
}

static PyObject *json_lines(PyObject *self, PyObject *args) {
    PyObject *page;
    int metadata;
    if (!PyArg_ParseTuple(args, "O!p:json_lines", &PyList_Type, &page, &metadata)) return NULL;
    Rec r = {0};
    Out o = {0};
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(page); i++) {
        int ok = parse_record(PyList_GET_ITEM(page, i), &r);
        if (ok > 0 && metadata) {
            ok = time_in_range(&r.created) && time_in_range(&r.updated);
            for (Py_ssize_t k = 0; ok && k < r.count; k++) ok = time_in_range(&r.vals[k].stamp);
        }
        if (ok <= 0) {
            if (ok == 0) result = Py_None, Py_INCREF(result);
            goto done;
        }
        if (!put_json_record(&o, &r, metadata)) goto done;
    }
    result = PyBytes_FromStringAndSize(o.buf, o.len);
done:
    PyMem_Free(o.buf);
    PyMem_Free(r.vals);
    return result;
}

static PyMethodDef methods[] = {
    {"column_keys", column_keys, METH_O, "The (index, type, TTL, binary) keys of a page's values."},
    {"csv_lines", csv_lines, METH_VARARGS, "The UTF-8 CSV lines of a page of encoded records."},
    {"json_lines", json_lines, METH_VARARGS, "The UTF-8 JSON Lines of a page of encoded records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lines", NULL, -1, methods};

PyMODINIT_FUNC PyInit__lines(void) { return PyModule_Create(&module); }
