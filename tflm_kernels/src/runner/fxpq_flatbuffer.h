/*
 * fxpq_flatbuffer.h - a minimal bounds-checked flatbuffer table reader (internal to the runner).
 *
 * Written for the few TFLite schema tables the runner reads. Every function checks that what it
 * reads lies inside [buf, buf + size) before reading it, and returns 0 (not found / invalid) or
 * a negative value on malformed input; no function reads out of bounds for any byte sequence.
 * Scalars are read byte by byte (little-endian), so the buffer needs no alignment for the reader.
 */
#ifndef FXPQ_FLATBUFFER_H
#define FXPQ_FLATBUFFER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *buf;
    uint32_t size;
} fxfb_buf;

/* A table: its position and the position and size of its vtable (all checked). */
typedef struct {
    uint32_t pos;
    uint32_t vtable;
    uint32_t vtable_size;
    uint32_t table_size;
} fxfb_table;

/* A vector: position of element 0 and its length (elements fit in the buffer). */
typedef struct {
    uint32_t pos;
    uint32_t len;
} fxfb_vector;

#define FXFB_OK 0
#define FXFB_ABSENT 1
#define FXFB_MALFORMED (-1)

/* Little-endian loads; the caller has checked the bounds. */
uint32_t fxfb_load_u32(const uint8_t *p);
uint16_t fxfb_load_u16(const uint8_t *p);

/* The root table (offset at byte 0). */
int fxfb_root(const fxfb_buf *b, fxfb_table *root);

/* Scalar field `field` (0-based schema field id) of `width` bytes, zero-extended into *value;
 * *value = def when absent. Returns FXFB_OK or FXFB_MALFORMED. */
int fxfb_scalar(const fxfb_buf *b, const fxfb_table *t, uint32_t field, uint32_t width,
                uint64_t def, uint64_t *value);

/* Sub-table field. FXFB_OK, FXFB_ABSENT or FXFB_MALFORMED. */
int fxfb_table_field(const fxfb_buf *b, const fxfb_table *t, uint32_t field, fxfb_table *out);

/* Vector field of elements of elem_size bytes (1, 2, 4, 8 for scalars, 4 for offsets). An absent
 * vector gives len 0 and FXFB_ABSENT. */
int fxfb_vector_field(const fxfb_buf *b, const fxfb_table *t, uint32_t field, uint32_t elem_size,
                      fxfb_vector *out);

/* Element i (< v->len, checked) of a vector of tables. */
int fxfb_vector_table(const fxfb_buf *b, const fxfb_vector *v, uint32_t i, fxfb_table *out);

/* String field: pointer to its bytes and length (a NUL follows within bounds). */
int fxfb_string_field(const fxfb_buf *b, const fxfb_table *t, uint32_t field, const char **str,
                      uint32_t *len);

/* Element i of a vector of int32 / uint8, bounds-checked against v. */
int32_t fxfb_vector_i32(const fxfb_buf *b, const fxfb_vector *v, uint32_t i);

#endif /* FXPQ_FLATBUFFER_H */
