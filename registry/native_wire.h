/* Protobuf wire and UTF-8 primitives shared by the native accelerators (setup.py): static inline,
 * so each extension compiles its own copy from this one source. */
#ifndef IDNODE_NATIVE_WIRE_H
#define IDNODE_NATIVE_WIRE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Bytes of the base-128 varint of n. */
static inline Py_ssize_t varint_size(uint64_t n) {
    Py_ssize_t size = 1;
    while (n >= 0x80) {
        n >>= 7;
        size++;
    }
    return size;
}

/* Writes the varint of n at out; returns the position just past it. */
static inline char *put_varint(char *out, uint64_t n) {
    while (n >= 0x80) {
        *out++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *out++ = (char)n;
    return out;
}

/* The code point of the strict UTF-8 sequence at s[*i] (s[*i] >= 0x80, *i < n), advancing *i past
 * it; -1 for anything bytes.decode("utf-8") rejects (overlong forms, surrogates, > U+10FFFF,
 * truncation). */
static inline long decode_utf8(const unsigned char *s, Py_ssize_t n, Py_ssize_t *i) {
    Py_ssize_t k = *i;
    unsigned char c = s[k];
    if (c >= 0xC2 && c <= 0xDF) {
        if (k + 1 >= n || (s[k + 1] & 0xC0) != 0x80) return -1;
        *i = k + 2;
        return ((long)(c & 0x1F) << 6) | (s[k + 1] & 0x3F);
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (k + 2 >= n || (s[k + 1] & 0xC0) != 0x80 || (s[k + 2] & 0xC0) != 0x80) return -1;
        if (c == 0xE0 && s[k + 1] < 0xA0) return -1; /* overlong */
        if (c == 0xED && s[k + 1] > 0x9F) return -1; /* surrogate */
        *i = k + 3;
        return ((long)(c & 0x0F) << 12) | ((long)(s[k + 1] & 0x3F) << 6) | (s[k + 2] & 0x3F);
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (k + 3 >= n || (s[k + 1] & 0xC0) != 0x80 || (s[k + 2] & 0xC0) != 0x80 ||
            (s[k + 3] & 0xC0) != 0x80)
            return -1;
        if (c == 0xF0 && s[k + 1] < 0x90) return -1; /* overlong */
        if (c == 0xF4 && s[k + 1] > 0x8F) return -1; /* above U+10FFFF */
        *i = k + 4;
        return ((long)(c & 0x07) << 18) | ((long)(s[k + 1] & 0x3F) << 12) |
               ((long)(s[k + 2] & 0x3F) << 6) | (s[k + 3] & 0x3F);
    }
    return -1;
}

/* Whether s[0..n) is strict UTF-8, as protobuf requires of a string field. */
static inline int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        if (s[i] < 0x80)
            i++;
        else if (decode_utf8(s, n, &i) < 0)
            return 0;
    }
    return 1;
}

#endif
