/*
 * fxpq_flatbuffer.c - the bounds-checked flatbuffer reader of the runner (see fxpq_flatbuffer.h).
 *
 * Flatbuffers layout, as read here: a table starts with an int32 offset back to its vtable
 * (vtable = table - offset); a vtable is [uint16 vtable bytes][uint16 table bytes][uint16 field
 * offset]...; a field offset of 0 (or beyond the vtable) means the field is absent. Reference
 * fields (tables, vectors, strings) hold a uint32 offset forward from the field's own position;
 * vectors and strings start with a uint32 length. All arithmetic is done in 64 bits before the
 * comparison with the buffer size, so no wrap-around can pass a check.
 */
#include "fxpq_flatbuffer.h"

uint32_t fxfb_load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint16_t fxfb_load_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static int fxfb_fits(const fxfb_buf *b, uint64_t pos, uint64_t len)
{
    return pos <= b->size && len <= (uint64_t)b->size - pos;
}

static int fxfb_table_at(const fxfb_buf *b, uint64_t pos, fxfb_table *out)
{
    int64_t vtable;
    uint32_t vt_size, t_size;
    if (!fxfb_fits(b, pos, 4) || (pos & 3u) != 0) {
        return FXFB_MALFORMED;
    }
    vtable = (int64_t)pos - (int64_t)(int32_t)fxfb_load_u32(b->buf + pos);
    if (vtable < 0 || (vtable & 1) != 0 || !fxfb_fits(b, (uint64_t)vtable, 4)) {
        return FXFB_MALFORMED;
    }
    vt_size = fxfb_load_u16(b->buf + vtable);
    t_size = fxfb_load_u16(b->buf + vtable + 2);
    if (vt_size < 4 || (vt_size & 1u) != 0 || !fxfb_fits(b, (uint64_t)vtable, vt_size)
        || t_size < 4 || !fxfb_fits(b, pos, t_size)) {
        return FXFB_MALFORMED;
    }
    out->pos = (uint32_t)pos;
    out->vtable = (uint32_t)vtable;
    out->vtable_size = vt_size;
    out->table_size = t_size;
    return FXFB_OK;
}

int fxfb_root(const fxfb_buf *b, fxfb_table *root)
{
    if (b == NULL || b->buf == NULL || b->size < 8) {
        return FXFB_MALFORMED;
    }
    return fxfb_table_at(b, fxfb_load_u32(b->buf), root);
}

/* Position of a field's bytes inside the table, or 0 when absent; checks `width` bytes fit the
 * table. Returns FXFB_OK / FXFB_ABSENT / FXFB_MALFORMED. */
static int fxfb_field_pos(const fxfb_buf *b, const fxfb_table *t, uint32_t field, uint32_t width,
                          uint32_t *pos)
{
    uint32_t slot = 4u + 2u * field;
    uint32_t off;
    if (slot + 2u > t->vtable_size) {
        return FXFB_ABSENT;
    }
    off = fxfb_load_u16(b->buf + t->vtable + slot);
    if (off == 0) {
        return FXFB_ABSENT;
    }
    if (off < 4u || (uint64_t)off + width > t->table_size) {
        return FXFB_MALFORMED;
    }
    *pos = t->pos + off;
    return FXFB_OK;
}

int fxfb_scalar(const fxfb_buf *b, const fxfb_table *t, uint32_t field, uint32_t width,
                uint64_t def, uint64_t *value)
{
    uint32_t pos, i;
    uint64_t v = 0;
    int rc = fxfb_field_pos(b, t, field, width, &pos);
    if (rc == FXFB_ABSENT) {
        *value = def;
        return FXFB_OK;
    }
    if (rc != FXFB_OK) {
        return rc;
    }
    for (i = 0; i < width; ++i) {
        v |= (uint64_t)b->buf[pos + i] << (8u * i);
    }
    *value = v;
    return FXFB_OK;
}

/* Target of the uoffset field `field`. */
static int fxfb_ref(const fxfb_buf *b, const fxfb_table *t, uint32_t field, uint64_t *target)
{
    uint32_t pos;
    int rc = fxfb_field_pos(b, t, field, 4, &pos);
    if (rc != FXFB_OK) {
        return rc;
    }
    *target = (uint64_t)pos + fxfb_load_u32(b->buf + pos);
    return fxfb_fits(b, *target, 4) ? FXFB_OK : FXFB_MALFORMED;
}

int fxfb_table_field(const fxfb_buf *b, const fxfb_table *t, uint32_t field, fxfb_table *out)
{
    uint64_t target;
    int rc = fxfb_ref(b, t, field, &target);
    if (rc != FXFB_OK) {
        return rc;
    }
    return fxfb_table_at(b, target, out);
}

static int fxfb_vector_at(const fxfb_buf *b, uint64_t pos, uint32_t elem_size, fxfb_vector *out)
{
    uint64_t len;
    if (!fxfb_fits(b, pos, 4) || (pos & 3u) != 0) {
        return FXFB_MALFORMED;
    }
    len = fxfb_load_u32(b->buf + pos);
    if (!fxfb_fits(b, pos + 4u, len * elem_size)) {
        return FXFB_MALFORMED;
    }
    out->pos = (uint32_t)(pos + 4u);
    out->len = (uint32_t)len;
    return FXFB_OK;
}

int fxfb_vector_field(const fxfb_buf *b, const fxfb_table *t, uint32_t field, uint32_t elem_size,
                      fxfb_vector *out)
{
    uint64_t target;
    int rc = fxfb_ref(b, t, field, &target);
    out->pos = 0;
    out->len = 0;
    if (rc != FXFB_OK) {
        return rc;
    }
    return fxfb_vector_at(b, target, elem_size, out);
}

int fxfb_vector_table(const fxfb_buf *b, const fxfb_vector *v, uint32_t i, fxfb_table *out)
{
    uint64_t pos;
    if (i >= v->len) {
        return FXFB_MALFORMED;
    }
    pos = (uint64_t)v->pos + 4u * (uint64_t)i; /* inside the vector: checked at creation */
    return fxfb_table_at(b, pos + fxfb_load_u32(b->buf + pos), out);
}

int fxfb_string_field(const fxfb_buf *b, const fxfb_table *t, uint32_t field, const char **str,
                      uint32_t *len)
{
    fxfb_vector v;
    int rc = fxfb_vector_field(b, t, field, 1, &v);
    *str = "";
    *len = 0;
    if (rc != FXFB_OK) {
        return rc;
    }
    if (!fxfb_fits(b, (uint64_t)v.pos + v.len, 1) || b->buf[v.pos + v.len] != 0) {
        return FXFB_MALFORMED;
    }
    *str = (const char *)(b->buf + v.pos);
    *len = v.len;
    return FXFB_OK;
}

int32_t fxfb_vector_i32(const fxfb_buf *b, const fxfb_vector *v, uint32_t i)
{
    if (i >= v->len) {
        return -1;
    }
    return (int32_t)fxfb_load_u32(b->buf + v->pos + 4u * i);
}
