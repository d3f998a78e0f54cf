/*
 * fxpq_options.c - the custom-options reader of the FXP_* ops (docs/format.md section 4).
 *
 * One implementation, used by the model runner (src/runner/) and the TFLM glue (tflm/). It is a
 * bounded FlexBuffers reader for exactly one shape of data: a map of integer values whose keys
 * are the op's keys in sorted order. Every read goes through fxq_read(), which checks the bounds;
 * every offset must point backwards (FlexBuffers only ever points to earlier bytes), so no byte
 * sequence can make the reader loop or leave [buffer, buffer + length).
 */
#include <stddef.h>
#include <string.h>

#include "fxpq_kernels.h"

/* FlexBuffers types used here (flexbuffers.h's FBT_* numbering). */
#define FXQ_TYPE_INT 1
#define FXQ_TYPE_UINT 2
#define FXQ_TYPE_MAP 9
#define FXQ_TYPE_VECTOR_KEY 14

/* ----------------------------------------------------------------------- key tables -------- */

#define FXQ_FIELD(name) ((uint8_t)(offsetof(fxpq_op_options, name) / sizeof(int32_t)))

typedef struct {
    const char *key;
    uint8_t field;   /* index of the int32 in fxpq_op_options */
    int32_t min;
    int32_t max;
} fxq_key;

#define FXQ_FRAC_MIN (-32)
#define FXQ_FRAC_MAX 32
#define FXQ_DIM_MAX 65535
#define FXQ_ACT_MIN (-32768)
#define FXQ_ACT_MAX 65535

#define K_ACC_BITS {"acc_bits", FXQ_FIELD(acc_bits), 32, 64}
#define K_ACT_MAX {"act_max", FXQ_FIELD(act_max), FXQ_ACT_MIN, FXQ_ACT_MAX}
#define K_ACT_MIN {"act_min", FXQ_FIELD(act_min), FXQ_ACT_MIN, FXQ_ACT_MAX}
#define K_ACTIVATION {"activation", FXQ_FIELD(activation), 0, 3}
#define K_ALPHA_SHIFT {"alpha_shift", FXQ_FIELD(alpha_shift), 1, 31}
#define K_BIAS_BITS {"bias_bits", FXQ_FIELD(bias_bits), 0, 32}
#define K_BIAS_FRAC {"bias_frac", FXQ_FIELD(bias_frac), FXQ_FRAC_MIN, FXQ_FRAC_MAX}
#define K_DEPTH_MULT {"depth_multiplier", FXQ_FIELD(depth_multiplier), 1, FXQ_DIM_MAX}
#define K_DILATION_H {"dilation_h", FXQ_FIELD(dilation_h), 1, FXQ_DIM_MAX}
#define K_DILATION_W {"dilation_w", FXQ_FIELD(dilation_w), 1, FXQ_DIM_MAX}
#define K_FILTER_H {"filter_h", FXQ_FIELD(filter_h), 1, FXQ_DIM_MAX}
#define K_FILTER_W {"filter_w", FXQ_FIELD(filter_w), 1, FXQ_DIM_MAX}
#define K_IN1_FRAC {"in1_frac", FXQ_FIELD(in1_frac), FXQ_FRAC_MIN, FXQ_FRAC_MAX}
#define K_IN2_FRAC {"in2_frac", FXQ_FIELD(in2_frac), FXQ_FRAC_MIN, FXQ_FRAC_MAX}
#define K_IN_BITS {"in_bits", FXQ_FIELD(in_bits), 2, 16}
#define K_IN_FRAC {"in_frac", FXQ_FIELD(in_frac), FXQ_FRAC_MIN, FXQ_FRAC_MAX}
#define K_OUT_FRAC {"out_frac", FXQ_FIELD(out_frac), FXQ_FRAC_MIN, FXQ_FRAC_MAX}
#define K_PAD_BOTTOM {"pad_bottom", FXQ_FIELD(pad_bottom), 0, FXQ_DIM_MAX}
#define K_PAD_LEFT {"pad_left", FXQ_FIELD(pad_left), 0, FXQ_DIM_MAX}
#define K_PAD_RIGHT {"pad_right", FXQ_FIELD(pad_right), 0, FXQ_DIM_MAX}
#define K_PAD_TOP {"pad_top", FXQ_FIELD(pad_top), 0, FXQ_DIM_MAX}
#define K_PADDING {"padding", FXQ_FIELD(padding), 0, 1}
#define K_STRIDE_H {"stride_h", FXQ_FIELD(stride_h), 1, FXQ_DIM_MAX}
#define K_STRIDE_W {"stride_w", FXQ_FIELD(stride_w), 1, FXQ_DIM_MAX}
#define K_WEIGHT_BITS {"weight_bits", FXQ_FIELD(weight_bits), 2, 16}

/* Keys in FlexBuffers' sorted (strcmp) order: the array index is format.md's Pos column. */
static const fxq_key fxq_keys_quantize[] = {K_ACT_MAX, K_ACT_MIN, K_OUT_FRAC};
static const fxq_key fxq_keys_conv[] = {
    K_ACC_BITS, K_ACT_MAX, K_ACT_MIN, K_ACTIVATION, K_BIAS_BITS, K_BIAS_FRAC, K_DILATION_H,
    K_DILATION_W, K_FILTER_H, K_FILTER_W, K_IN_BITS, K_IN_FRAC, K_OUT_FRAC, K_PAD_BOTTOM,
    K_PAD_LEFT, K_PAD_RIGHT, K_PAD_TOP, K_PADDING, K_STRIDE_H, K_STRIDE_W, K_WEIGHT_BITS};
static const fxq_key fxq_keys_dw_conv[] = {
    K_ACC_BITS, K_ACT_MAX, K_ACT_MIN, K_ACTIVATION, K_BIAS_BITS, K_BIAS_FRAC, K_DEPTH_MULT,
    K_DILATION_H, K_DILATION_W, K_FILTER_H, K_FILTER_W, K_IN_BITS, K_IN_FRAC, K_OUT_FRAC,
    K_PAD_BOTTOM, K_PAD_LEFT, K_PAD_RIGHT, K_PAD_TOP, K_PADDING, K_STRIDE_H, K_STRIDE_W,
    K_WEIGHT_BITS};
static const fxq_key fxq_keys_fc[] = {K_ACC_BITS, K_ACT_MAX, K_ACT_MIN, K_ACTIVATION, K_BIAS_BITS,
                                      K_BIAS_FRAC, K_IN_BITS, K_IN_FRAC, K_OUT_FRAC, K_WEIGHT_BITS};

/* The one key a file of an older format version may lack (versions 2, 3: no in_bits); the field
 * then stays 0, "the storage width" (fxpq_options_input_format). */
#define FXQ_OPTIONAL_FIELD FXQ_FIELD(in_bits)
static const fxq_key fxq_keys_add[] = {K_ACT_MAX, K_ACT_MIN, K_ACTIVATION,
                                       K_IN1_FRAC, K_IN2_FRAC, K_OUT_FRAC};
static const fxq_key fxq_keys_pool[] = {
    K_ACT_MAX, K_ACT_MIN, K_ACTIVATION, K_FILTER_H, K_FILTER_W, K_IN_FRAC, K_OUT_FRAC,
    K_PAD_BOTTOM, K_PAD_LEFT, K_PAD_RIGHT, K_PAD_TOP, K_PADDING, K_STRIDE_H, K_STRIDE_W};
static const fxq_key fxq_keys_gap[] = {K_ACT_MAX, K_ACT_MIN, K_IN_FRAC, K_OUT_FRAC};
static const fxq_key fxq_keys_requantize[] = {K_ACT_MAX, K_ACT_MIN, K_ACTIVATION, K_IN_FRAC,
                                              K_OUT_FRAC};
static const fxq_key fxq_keys_leaky_relu[] = {K_ACT_MAX, K_ACT_MIN, K_ALPHA_SHIFT, K_IN_FRAC,
                                              K_OUT_FRAC};
static const fxq_key fxq_keys_concatenation[] = {K_ACT_MAX, K_ACT_MIN, K_IN1_FRAC, K_IN2_FRAC,
                                                 K_OUT_FRAC};
static const fxq_key fxq_keys_pad[] = {K_ACT_MAX, K_ACT_MIN, K_IN_FRAC, K_OUT_FRAC,
                                       K_PAD_BOTTOM, K_PAD_LEFT, K_PAD_RIGHT, K_PAD_TOP};

typedef struct {
    const char *name;
    const fxq_key *keys;
    int32_t count;
} fxq_op;

#define FXQ_COUNT(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static const fxq_op fxq_ops[FXPQ_OP_COUNT] = {
    {"FXP_QUANTIZE", fxq_keys_quantize, FXQ_COUNT(fxq_keys_quantize)},
    {"FXP_CONV_2D", fxq_keys_conv, FXQ_COUNT(fxq_keys_conv)},
    {"FXP_DEPTHWISE_CONV_2D", fxq_keys_dw_conv, FXQ_COUNT(fxq_keys_dw_conv)},
    {"FXP_FULLY_CONNECTED", fxq_keys_fc, FXQ_COUNT(fxq_keys_fc)},
    {"FXP_ADD", fxq_keys_add, FXQ_COUNT(fxq_keys_add)},
    {"FXP_MAX_POOL_2D", fxq_keys_pool, FXQ_COUNT(fxq_keys_pool)},
    {"FXP_AVERAGE_POOL_2D", fxq_keys_pool, FXQ_COUNT(fxq_keys_pool)},
    {"FXP_GLOBAL_AVERAGE_POOL_2D", fxq_keys_gap, FXQ_COUNT(fxq_keys_gap)},
    {"FXP_REQUANTIZE", fxq_keys_requantize, FXQ_COUNT(fxq_keys_requantize)},
    {"FXP_PAD", fxq_keys_pad, FXQ_COUNT(fxq_keys_pad)},
    {"FXP_LEAKY_RELU", fxq_keys_leaky_relu, FXQ_COUNT(fxq_keys_leaky_relu)},
    {"FXP_CONCATENATION", fxq_keys_concatenation, FXQ_COUNT(fxq_keys_concatenation)},
};

typedef char fxq_assert_max_keys[(FXQ_COUNT(fxq_keys_dw_conv) == FXPQ_OPTIONS_MAX_KEYS) ? 1 : -1];
typedef char fxq_assert_alpha_shift[(FXPQ_MAX_ALPHA_SHIFT == 31) ? 1 : -1]; /* K_ALPHA_SHIFT */
typedef char fxq_assert_fields[(sizeof(fxpq_op_options) == 25 * sizeof(int32_t)) ? 1 : -1];

const char *fxpq_runner_status_str(fxpq_runner_status status)
{
    switch (status) {
    case FXPQ_RUNNER_OK: return "ok";
    case FXPQ_RUNNER_ERR_NULL_POINTER: return "null pointer";
    case FXPQ_RUNNER_ERR_MALFORMED: return "malformed flatbuffer or FlexBuffers data";
    case FXPQ_RUNNER_ERR_UNSUPPORTED: return "unsupported model";
    case FXPQ_RUNNER_ERR_BAD_OPTIONS: return "bad custom options";
    case FXPQ_RUNNER_ERR_BAD_TENSOR: return "tensor does not fit its op";
    case FXPQ_RUNNER_ERR_ARENA_TOO_SMALL: return "arena too small";
    case FXPQ_RUNNER_ERR_MISALIGNED: return "model bytes not 4-byte aligned";
    case FXPQ_RUNNER_ERR_KERNEL: return "kernel error";
    case FXPQ_RUNNER_ERR_BAD_ARGUMENT: return "bad argument";
    case FXPQ_RUNNER_ERR_NOT_READY: return "runner not initialized";
    case FXPQ_RUNNER_ERR_STOCK_FILE: return "valid int8-builtin file (run it in TFLM)";
    default: return "unknown status";
    }
}

int32_t fxpq_custom_op_from_name(const char *name, size_t length)
{
    int32_t op;
    if (name == NULL) {
        return -1;
    }
    for (op = 0; op < FXPQ_OP_COUNT; ++op) {
        const char *candidate = fxq_ops[op].name;
        if (strlen(candidate) == length && memcmp(candidate, name, length) == 0) {
            return op;
        }
    }
    return -1;
}

const char *fxpq_custom_op_name(int32_t op)
{
    return (op >= 0 && op < FXPQ_OP_COUNT) ? fxq_ops[op].name : NULL;
}

int32_t fxpq_options_key_count(int32_t op)
{
    return (op >= 0 && op < FXPQ_OP_COUNT) ? fxq_ops[op].count : 0;
}

const char *fxpq_options_key(int32_t op, int32_t pos)
{
    if (op < 0 || op >= FXPQ_OP_COUNT || pos < 0 || pos >= fxq_ops[op].count) {
        return NULL;
    }
    return fxq_ops[op].keys[pos].key;
}

/* ------------------------------------------------------------------ bounded FlexBuffers ---- */

typedef struct {
    const uint8_t *buf;
    size_t len;
} fxq_buf;

/* Little-endian unsigned integer of `width` (1, 2, 4, 8) bytes at pos; 0 when out of bounds. */
static int fxq_read(const fxq_buf *b, size_t pos, uint32_t width, uint64_t *value)
{
    uint64_t v = 0;
    uint32_t i;
    if (width == 0 || width > 8 || pos > b->len || b->len - pos < width) {
        return 0;
    }
    for (i = 0; i < width; ++i) {
        v |= (uint64_t)b->buf[pos + i] << (8u * i);
    }
    *value = v;
    return 1;
}

/* Sign-extended value of the `width`-byte integer at pos. */
static int fxq_read_signed(const fxq_buf *b, size_t pos, uint32_t width, int64_t *value)
{
    uint64_t u;
    if (!fxq_read(b, pos, width, &u)) {
        return 0;
    }
    if (width < 8 && (u >> (8u * width - 1u)) & 1u) {
        u |= ~(uint64_t)0 << (8u * width);
    }
    *value = (int64_t)u;
    return 1;
}

/* Follow the offset stored at `pos` (width bytes) backwards; FlexBuffers offsets are > 0. */
static int fxq_indirect(const fxq_buf *b, size_t pos, uint32_t width, size_t *target)
{
    uint64_t off;
    if (!fxq_read(b, pos, width, &off) || off == 0 || off > pos) {
        return 0;
    }
    *target = pos - (size_t)off;
    return 1;
}

static int fxq_valid_width(uint64_t w)
{
    return w == 1 || w == 2 || w == 4 || w == 8;
}

fxpq_runner_status fxpq_options_parse(int32_t op, const uint8_t *buffer, size_t length,
                                      fxpq_op_options *out)
{
    fxq_buf b;
    uint64_t root_width, packed, size, keys_width;
    size_t root_pos, map_pos, keys_pos;
    uint32_t width;
    int32_t i, j, optional, skip_optional, values[FXPQ_OPTIONS_MAX_KEYS];
    const fxq_op *desc;

    if (out == NULL) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    memset(out, 0, sizeof(*out));
    if (buffer == NULL && length != 0) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    if (op < 0 || op >= FXPQ_OP_COUNT) {
        return FXPQ_RUNNER_ERR_BAD_ARGUMENT;
    }
    desc = &fxq_ops[op];
    b.buf = buffer;
    b.len = length;
    /* Root: last byte = root width, the byte before = packed type, the root value before that. */
    if (length < 3 || !fxq_read(&b, length - 1, 1, &root_width) || !fxq_valid_width(root_width)
        || !fxq_read(&b, length - 2, 1, &packed) || length - 2 < root_width) {
        return FXPQ_RUNNER_ERR_MALFORMED;
    }
    if ((packed >> 2) != FXQ_TYPE_MAP) {
        return FXPQ_RUNNER_ERR_BAD_OPTIONS; /* well-formed FlexBuffers, but not a map */
    }
    root_pos = length - 2 - (size_t)root_width;
    width = 1u << (packed & 3u); /* the map's element width */
    if (!fxq_indirect(&b, root_pos, (uint32_t)root_width, &map_pos)) {
        return FXPQ_RUNNER_ERR_MALFORMED;
    }
    /* The map's prefix: [keys offset][keys width][size], each `width` bytes, before the values. */
    if (map_pos < 3u * width || !fxq_read(&b, map_pos - width, width, &size)
        || !fxq_read(&b, map_pos - 2u * width, width, &keys_width) || !fxq_valid_width(keys_width)
        || !fxq_indirect(&b, map_pos - 3u * width, width, &keys_pos)) {
        return FXPQ_RUNNER_ERR_MALFORMED;
    }
    /* Values (size * width bytes) then one packed-type byte per value must fit. */
    if (size > (uint64_t)(length - map_pos) / (width + 1u)) {
        return FXPQ_RUNNER_ERR_MALFORMED;
    }
    optional = 0;
    for (i = 0; i < desc->count; ++i) {
        optional += desc->keys[i].field == FXQ_OPTIONAL_FIELD;
    }
    /* every key, or (an older file) every key but the optional one */
    if (size != (uint64_t)desc->count && (optional == 0 || size != (uint64_t)(desc->count - optional))) {
        return FXPQ_RUNNER_ERR_BAD_OPTIONS;
    }
    skip_optional = size != (uint64_t)desc->count;
    {
        uint64_t keys_size;
        if (keys_pos < keys_width || !fxq_read(&b, keys_pos - (size_t)keys_width,
                                               (uint32_t)keys_width, &keys_size)
            || keys_size != size || (uint64_t)(length - keys_pos) / keys_width < size) {
            return FXPQ_RUNNER_ERR_MALFORMED;
        }
    }
    for (i = 0, j = 0; i < desc->count; ++i) {
        const fxq_key *key = &desc->keys[i];
        size_t key_pos, key_len = strlen(key->key);
        uint64_t type_byte;
        int64_t value;
        uint32_t type;
        if (skip_optional && key->field == FXQ_OPTIONAL_FIELD) {
            values[i] = 0;
            continue;
        }
        /* Map key j: an offset back to a NUL-terminated string that must equal the expected key. */
        if (!fxq_indirect(&b, keys_pos + (size_t)j * (size_t)keys_width, (uint32_t)keys_width,
                          &key_pos)
            || length - key_pos < key_len + 1u) {
            return FXPQ_RUNNER_ERR_MALFORMED;
        }
        if (memcmp(buffer + key_pos, key->key, key_len) != 0 || buffer[key_pos + key_len] != 0) {
            return FXPQ_RUNNER_ERR_BAD_OPTIONS;
        }
        if (!fxq_read(&b, map_pos + (size_t)size * width + (size_t)j, 1, &type_byte)) {
            return FXPQ_RUNNER_ERR_MALFORMED;
        }
        type = (uint32_t)(type_byte >> 2);
        /* Inline scalars are stored at the map's element width (the packed bit width is only
         * the minimum the value needs). */
        if (type == FXQ_TYPE_INT) {
            if (!fxq_read_signed(&b, map_pos + (size_t)j * width, width, &value)) {
                return FXPQ_RUNNER_ERR_MALFORMED;
            }
        } else if (type == FXQ_TYPE_UINT) {
            uint64_t u;
            if (!fxq_read(&b, map_pos + (size_t)j * width, width, &u)) {
                return FXPQ_RUNNER_ERR_MALFORMED;
            }
            value = u > (uint64_t)INT32_MAX ? (int64_t)INT32_MAX + 1 : (int64_t)u;
        } else {
            return FXPQ_RUNNER_ERR_BAD_OPTIONS;
        }
        if (value < key->min || value > key->max) {
            return FXPQ_RUNNER_ERR_BAD_OPTIONS;
        }
        values[i] = (int32_t)value;
        ++j;
    }
    {
        int32_t *fields = (int32_t *)out;
        for (i = 0; i < desc->count; ++i) {
            fields[desc->keys[i].field] = values[i];
        }
    }
    /* Cross-field rules of format.md section 4. */
    {
        int weighted = (op == FXPQ_OP_CONV_2D || op == FXPQ_OP_DEPTHWISE_CONV_2D
                        || op == FXPQ_OP_FULLY_CONNECTED);
        int bad = out->act_min > out->act_max || out->activation == 2;
        if (weighted) {
            bad = bad || (out->acc_bits != 32 && out->acc_bits != 64) || out->bias_bits == 1
                  || (out->bias_bits == 0 && out->bias_frac != 0);
        }
        if (bad) {
            memset(out, 0, sizeof(*out));
            return FXPQ_RUNNER_ERR_BAD_OPTIONS;
        }
    }
    return FXPQ_RUNNER_OK;
}

/* ---------------------------------------------------------------- options -> kernel terms -- */

fxpq_activation fxpq_options_activation(const fxpq_op_options *opts)
{
    if (opts->activation == 1) {
        return FXPQ_ACT_RELU;
    }
    return opts->activation == 3 ? FXPQ_ACT_RELU6 : FXPQ_ACT_NONE;
}

static fxpq_padding fxq_padding(const fxpq_op_options *opts)
{
    return opts->padding == 0 ? FXPQ_PADDING_SAME : FXPQ_PADDING_VALID;
}

static fxpq_tile fxq_tile(int32_t h, int32_t w)
{
    fxpq_tile t;
    t.h = h;
    t.w = w;
    return t;
}

void fxpq_options_conv_params(const fxpq_op_options *opts, fxpq_conv_params *params)
{
    params->stride = fxq_tile(opts->stride_h, opts->stride_w);
    params->dilation = fxq_tile(opts->dilation_h, opts->dilation_w);
    params->padding = fxq_padding(opts);
    params->activation = fxpq_options_activation(opts);
}

void fxpq_options_dw_conv_params(const fxpq_op_options *opts, fxpq_dw_conv_params *params)
{
    params->stride = fxq_tile(opts->stride_h, opts->stride_w);
    params->dilation = fxq_tile(opts->dilation_h, opts->dilation_w);
    params->padding = fxq_padding(opts);
    params->activation = fxpq_options_activation(opts);
    params->depth_multiplier = opts->depth_multiplier;
}

void fxpq_options_pad_params(const fxpq_op_options *opts, fxpq_pad_params *params)
{
    params->top = opts->pad_top;
    params->bottom = opts->pad_bottom;
    params->left = opts->pad_left;
    params->right = opts->pad_right;
}

void fxpq_options_leaky_relu_params(const fxpq_op_options *opts, fxpq_leaky_relu_params *params)
{
    params->alpha_shift = opts->alpha_shift;
}

void fxpq_options_pool_params(const fxpq_op_options *opts, fxpq_pool_params *params)
{
    params->filter = fxq_tile(opts->filter_h, opts->filter_w);
    params->stride = fxq_tile(opts->stride_h, opts->stride_w);
    params->padding = fxq_padding(opts);
    params->activation = fxpq_options_activation(opts);
}

fxpq_runner_status fxpq_options_check_output(const fxpq_op_options *opts, const fxpq_format *fmt)
{
    int32_t lo, hi;
    if (opts == NULL || fmt == NULL) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    if (fxpq_check_format(fmt) != FXPQ_OK || fmt->frac != opts->out_frac
        || fxpq_activation_bounds(fmt, fxpq_options_activation(opts), &lo, &hi) != FXPQ_OK
        || lo != opts->act_min || hi != opts->act_max) {
        return FXPQ_RUNNER_ERR_BAD_OPTIONS;
    }
    return FXPQ_RUNNER_OK;
}

fxpq_runner_status fxpq_options_input_format(const fxpq_op_options *opts, fxpq_storage storage,
                                             fxpq_format *out)
{
    const int32_t narrow = storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_UINT8;
    fxpq_format fmt;
    if (opts == NULL || out == NULL) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    fmt.frac = opts->in_frac;
    fmt.is_signed = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_INT16);
    fmt.bits = opts->in_bits != 0 ? opts->in_bits : (narrow ? 8 : 16);
    if (fmt.bits < (narrow ? FXPQ_MIN_BITS : 9) || fmt.bits > (narrow ? 8 : FXPQ_MAX_BITS)
        || fxpq_check_format(&fmt) != FXPQ_OK) {
        return FXPQ_RUNNER_ERR_BAD_OPTIONS;
    }
    *out = fmt;
    return FXPQ_RUNNER_OK;
}

fxpq_runner_status fxpq_options_output_format(const fxpq_op_options *opts, fxpq_storage storage,
                                              fxpq_format *out)
{
    fxpq_format fmt;
    int32_t min_bits, max_bits;
    if (opts == NULL || out == NULL) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    fmt.frac = opts->out_frac;
    fmt.is_signed = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_INT16);
    min_bits = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_UINT8) ? FXPQ_MIN_BITS : 9;
    max_bits = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_UINT8) ? 8 : FXPQ_MAX_BITS;
    for (fmt.bits = min_bits; fmt.bits <= max_bits; ++fmt.bits) {
        if (fxpq_options_check_output(opts, &fmt) == FXPQ_RUNNER_OK) {
            *out = fmt;
            return FXPQ_RUNNER_OK;
        }
    }
    return FXPQ_RUNNER_ERR_BAD_OPTIONS;
}
