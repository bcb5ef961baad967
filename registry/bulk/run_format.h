/* The run file layout of registry.bulk.runs (its module docstring is the specification), for the
 * C code that writes runs: registry/bulk/_runs.c (frame) and registry/bulk/_csvfast.c
 * (Rows.settle_run). Header-only; every function is static inline.
 *
 * A writer is used in two passes: first add up run_record_size() and run_index_size() over the
 * records in key order (strictly ascending: the caller's duty) to size one buffer of
 * records_end + index_size + RUN_FOOTER_SIZE bytes; then, for each record in the same order,
 * run_writer_record() (key and lengths; returns where the value's bytes go), the value, and
 * run_writer_row(); last run_writer_footer().
 */
#ifndef IDNODE_RUN_FORMAT_H
#define IDNODE_RUN_FORMAT_H

#include <stdint.h>
#include <string.h>

#define RUN_MAGIC "IDNRUN01"  /* runs.MAGIC */
#define RUN_INDEX_EVERY 64    /* runs.INDEX_EVERY */
#define RUN_FOOTER_SIZE 40    /* runs.FOOTER.size: u64 records_end, u64 count, u64 entries, u32, 4x, 8s */
#define RUN_INDEX_HEAD 12     /* runs._INDEX.size: u64 offset, u32 key length */
#define RUN_RECORD_FIXED 16   /* u32 key length, u32 value length, u64 row */

/* Little-endian stores (compilers turn these into single moves on x86 and arm64). */
static inline void run_store32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void run_store64(unsigned char *p, uint64_t v) {
    run_store32(p, (uint32_t)v);
    run_store32(p + 4, (uint32_t)(v >> 32));
}

/* Bytes of record ``i`` (0-based, in key order) in the records region and in the index. */
static inline uint64_t run_record_size(uint64_t klen, uint64_t vlen) { return RUN_RECORD_FIXED + klen + vlen; }
static inline uint64_t run_index_size(uint64_t i, uint64_t klen) {
    return i % RUN_INDEX_EVERY == 0 ? RUN_INDEX_HEAD + klen : 0;
}

typedef struct {
    unsigned char *start; /* the buffer: records_end + index size + RUN_FOOTER_SIZE bytes */
    unsigned char *p;     /* the next record */
    unsigned char *index; /* the next index entry */
    uint64_t records_end;
    uint64_t count;
} RunWriter;

static inline void run_writer_init(RunWriter *w, unsigned char *buf, uint64_t records_end) {
    w->start = w->p = buf;
    w->index = buf + records_end;
    w->records_end = records_end;
    w->count = 0;
}

/* Writes the next record's key and lengths (and its index entry when due); returns where its
 * ``vlen`` value bytes go. */
static inline unsigned char *run_writer_record(RunWriter *w, const unsigned char *key, uint32_t klen,
                                               uint32_t vlen) {
    if (w->count % RUN_INDEX_EVERY == 0) {
        run_store64(w->index, (uint64_t)(w->p - w->start));
        run_store32(w->index + 8, klen);
        memcpy(w->index + RUN_INDEX_HEAD, key, klen);
        w->index += RUN_INDEX_HEAD + klen;
    }
    run_store32(w->p, klen);
    memcpy(w->p + 4, key, klen);
    w->p += 4 + klen;
    run_store32(w->p, vlen);
    return w->p + 4;
}

/* Ends the record begun by run_writer_record (whose value is ``vlen`` bytes) with its row. */
static inline void run_writer_row(RunWriter *w, uint32_t vlen, uint64_t row) {
    w->p += 4 + vlen;
    run_store64(w->p, row);
    w->p += 8;
    w->count++;
}

static inline void run_writer_footer(RunWriter *w) {
    unsigned char *f = w->index;
    run_store64(f, w->records_end);
    run_store64(f + 8, w->count);
    run_store64(f + 16, w->count / RUN_INDEX_EVERY + (w->count % RUN_INDEX_EVERY != 0));
    run_store32(f + 24, RUN_INDEX_EVERY);
    memset(f + 28, 0, 4);
    memcpy(f + 32, RUN_MAGIC, 8);
}

#endif
