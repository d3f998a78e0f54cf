/*
 * fxpq_runner.c - the minimal .tflite model runner: reads a docs/format.md file (target fxp) with
 * bounds checks on every offset, validates every op against its tensors, plans one arena by
 * tensor lifetimes and dispatches the FXP_* ops and RESHAPE to the kernels.
 *
 * No heap. fxpq_runner_init works in three phases:
 *   1. validate: read and check the model and every op (nothing stored, no arena needed);
 *   2. plan: with a workspace at the tail of the arena, compute tensor lifetimes (RESHAPE aliases
 *      its input) and place every activation tensor and every op's kernel scratch with a greedy
 *      first-fit by decreasing size (tensors whose lifetimes overlap never share bytes);
 *   3. prepare: store one fxpq_runner prepared op per operator at the head of the arena, with the
 *      arena offsets of its tensors. The planned region follows the prepared ops, so
 *      arena_needed = alignment slack + persistent_bytes + max(workspace, planned_bytes).
 * Invoke then only calls kernels.
 */
#include <string.h>

#include "fxpq_flatbuffer.h"
#include "fxpq_kernels.h"

/* TFLite schema field ids (tensorflow/lite/schema/schema.fbs). */
enum {
    FX_MODEL_VERSION = 0, FX_MODEL_OPERATOR_CODES = 1, FX_MODEL_SUBGRAPHS = 2, FX_MODEL_BUFFERS = 4,
    FX_MODEL_METADATA = 6, FX_METADATA_NAME = 0, FX_METADATA_BUFFER = 1, FX_TENSOR_NAME = 3,
    FX_SUBGRAPH_TENSORS = 0, FX_SUBGRAPH_INPUTS = 1, FX_SUBGRAPH_OUTPUTS = 2,
    FX_SUBGRAPH_OPERATORS = 3,
    FX_TENSOR_SHAPE = 0, FX_TENSOR_TYPE = 1, FX_TENSOR_BUFFER = 2, FX_TENSOR_QUANTIZATION = 4,
    FX_TENSOR_SPARSITY = 6,
    FX_QUANT_MIN = 0, FX_QUANT_MAX = 1, FX_QUANT_SCALE = 2, FX_QUANT_ZERO_POINT = 3,
    FX_OPERATOR_OPCODE_INDEX = 0, FX_OPERATOR_INPUTS = 1, FX_OPERATOR_OUTPUTS = 2,
    FX_OPERATOR_BUILTIN_OPTIONS_TYPE = 3, FX_OPERATOR_BUILTIN_OPTIONS = 4,
    FX_OPERATOR_CUSTOM_OPTIONS = 5, FX_OPERATOR_CUSTOM_OPTIONS_FORMAT = 6,
    FX_OPERATOR_LARGE_CUSTOM_OPTIONS_OFFSET = 9,
    FX_OPCODE_DEPRECATED_BUILTIN = 0, FX_OPCODE_CUSTOM_CODE = 1, FX_OPCODE_BUILTIN = 3,
    FX_BUFFER_DATA = 0, FX_BUFFER_OFFSET = 1
};

#define FX_BUILTIN_RESHAPE 22
#define FX_BUILTIN_CUSTOM 32
/* Builtin ops of the runner: RESHAPE and the stock ops of hybrid files (format.md section 8). */
enum {
    FX_KIND_RESHAPE = FXPQ_OP_COUNT, FX_KIND_MUL, FX_KIND_SUB, FX_KIND_LOGISTIC, FX_KIND_TANH,
    FX_KIND_HARD_SWISH, FX_KIND_RESIZE_NEAREST, FX_KIND_TRANSPOSE, FX_KIND_STOCK_QUANTIZE,
    FX_KIND_MAXIMUM, FX_KIND_MINIMUM, FX_KIND_ELU, FX_KIND_END
};
/* builtin code, runner kind and name of each builtin op the runner executes */
static const struct {
    int32_t code, kind;
    const char *name;
} fx_builtins[] = {
    {22, FX_KIND_RESHAPE, "RESHAPE"}, {18, FX_KIND_MUL, "MUL"}, {41, FX_KIND_SUB, "SUB"},
    {14, FX_KIND_LOGISTIC, "LOGISTIC"}, {28, FX_KIND_TANH, "TANH"},
    {117, FX_KIND_HARD_SWISH, "HARD_SWISH"}, {97, FX_KIND_RESIZE_NEAREST, "RESIZE_NEAREST_NEIGHBOR"},
    {39, FX_KIND_TRANSPOSE, "TRANSPOSE"}, {114, FX_KIND_STOCK_QUANTIZE, "QUANTIZE"},
    {55, FX_KIND_MAXIMUM, "MAXIMUM"}, {57, FX_KIND_MINIMUM, "MINIMUM"}, {111, FX_KIND_ELU, "ELU"}};
#define FX_NUM_BUILTINS ((int32_t)(sizeof(fx_builtins) / sizeof(fx_builtins[0])))

static const char *fx_kind_name(int32_t kind)
{
    int32_t i;
    for (i = 0; i < FX_NUM_BUILTINS; ++i) {
        if (fx_builtins[i].kind == kind) {
            return fx_builtins[i].name;
        }
    }
    return fxpq_custom_op_name(kind) != NULL ? fxpq_custom_op_name(kind) : "?";
}
#define FX_NOT_LIVE INT32_MIN

/* ------------------------------------------------------------------------- messages ------- */

static void fx_msg_str(fxpq_runner *r, const char *s)
{
    size_t n = strlen(r->message);
    while (*s != '\0' && n + 1 < sizeof(r->message)) {
        r->message[n++] = *s++;
    }
    r->message[n] = '\0';
}

static void fx_msg_int(fxpq_runner *r, int64_t v)
{
    char digits[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char text[26];
    int k = 0;
    do {
        digits[n++] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u != 0 && n < 23);
    if (v < 0) {
        text[k++] = '-';
    }
    while (n > 0) {
        text[k++] = digits[--n];
    }
    text[k] = '\0';
    fx_msg_str(r, text);
}

/* Start an error message "op <i> (<name>): <text>" (or just <text> when op < 0). */
static fxpq_runner_status fx_fail(fxpq_runner *r, fxpq_runner_status status, int32_t op,
                                  int32_t kind, const char *text)
{
    r->message[0] = '\0';
    r->error_op = op;
    if (op >= 0) {
        fx_msg_str(r, "op ");
        fx_msg_int(r, op);
        fx_msg_str(r, " (");
        fx_msg_str(r, fx_kind_name(kind));
        fx_msg_str(r, "): ");
    }
    fx_msg_str(r, text);
    return status;
}

/* ------------------------------------------------------------------------- model view ----- */

typedef struct {
    fxfb_buf b;
    fxfb_table model, subgraph;
    fxfb_vector opcodes, buffers, tensors, operators, inputs, outputs;
    fxpq_runner_limits limits;
    int64_t work; /* MACs of the ops prepared so far (phase 1) */
    int64_t taps; /* window taps and written elements of the ops prepared so far */
} fx_model;

typedef struct {
    int32_t type;
    int32_t rank;
    int32_t dims[FXPQ_RUNNER_MAX_RANK];
    int32_t elements;
    int32_t is_const;
    const uint8_t *data; /* constant data */
    uint32_t data_len;
    int32_t has_format;  /* integer activation with a valid format.md quantization */
    int32_t zero_point;  /* 0, or -128: an unsigned 8-bit format stored as INT8 (format.md 8) */
    fxpq_format format;
} fx_tensor;

/* Exact integer value * 2^shift of a float32 bit pattern; 0 when not an integer in
 * [-2^20, 2^20] (activation ranges are within 16 bits). */
static int fx_float_times_pow2(uint32_t bits, int32_t shift, int32_t *out)
{
    uint32_t exp = (bits >> 23) & 0xffu;
    uint32_t mant = bits & 0x7fffffu;
    int32_t e2, s;
    uint64_t m;
    if (exp == 0xffu) {
        return 0;
    }
    if (exp == 0) {
        e2 = -149;
    } else {
        mant |= 0x800000u;
        e2 = (int32_t)exp - 150;
    }
    m = mant;
    s = e2 + shift;
    if (m == 0) {
        *out = 0;
        return 1;
    }
    if (s >= 0) {
        if (s > 20) {
            return 0;
        }
        m <<= s;
    } else {
        if (s < -40 || (m & (((uint64_t)1 << -s) - 1u)) != 0) {
            return 0;
        }
        m >>= -s;
    }
    if (m > ((uint64_t)1 << 20)) {
        return 0;
    }
    *out = (bits >> 31) ? -(int32_t)m : (int32_t)m;
    return 1;
}

static int32_t fx_log2_exact(int64_t v)
{
    int32_t n = 0;
    if (v <= 0 || (v & (v - 1)) != 0) {
        return -1;
    }
    while (v > 1) {
        v >>= 1;
        ++n;
    }
    return n;
}

/* Format of an integer activation tensor from its quantization (format.md section 2.1). Returns
 * 1 when present and valid, 0 when absent or inconsistent. */
static int fx_tensor_format(const fx_model *m, const fxfb_table *quant, int32_t type,
                            fxpq_format *fmt, int32_t *zero_point)
{
    fxfb_vector scale, zp, vmin, vmax;
    uint32_t sbits;
    int32_t frac, lo, hi, bits, is_signed, one;
    if (fxfb_vector_field(&m->b, quant, FX_QUANT_SCALE, 4, &scale) != FXFB_OK || scale.len != 1
        || fxfb_vector_field(&m->b, quant, FX_QUANT_MIN, 4, &vmin) != FXFB_OK || vmin.len != 1
        || fxfb_vector_field(&m->b, quant, FX_QUANT_MAX, 4, &vmax) != FXFB_OK || vmax.len != 1) {
        return 0;
    }
    if (fxfb_vector_field(&m->b, quant, FX_QUANT_ZERO_POINT, 8, &zp) != FXFB_OK || zp.len != 1) {
        return 0; /* format.md 2.1: exactly one zero point, 0 (or -128, section 8) */
    }
    *zero_point = 0;
    if (type == FXPQ_TFLITE_INT8 && fxfb_load_u32(m->b.buf + zp.pos) == 0xffffff80u
        && fxfb_load_u32(m->b.buf + zp.pos + 4) == 0xffffffffu) {
        *zero_point = -128; /* an unsigned 8-bit format as stock ops store it (format.md 8) */
    } else {
        uint32_t i;
        for (i = 0; i < 8; ++i) {
            if (m->b.buf[zp.pos + i] != 0) {
                return 0;
            }
        }
    }
    sbits = fxfb_load_u32(m->b.buf + scale.pos);
    /* scale = 2^-frac exactly: positive, zero mantissa, normal exponent. */
    if ((sbits >> 31) != 0 || (sbits & 0x7fffffu) != 0 || ((sbits >> 23) & 0xffu) == 0
        || ((sbits >> 23) & 0xffu) == 0xffu) {
        return 0;
    }
    frac = 127 - (int32_t)((sbits >> 23) & 0xffu);
    if (frac < FXPQ_MIN_FRAC || frac > FXPQ_MAX_FRAC) {
        return 0;
    }
    if (!fx_float_times_pow2(fxfb_load_u32(m->b.buf + vmin.pos), frac, &lo)
        || !fx_float_times_pow2(fxfb_load_u32(m->b.buf + vmax.pos), frac, &hi)) {
        return 0;
    }
    is_signed = (type == FXPQ_TFLITE_INT8 || type == FXPQ_TFLITE_INT16) && *zero_point == 0;
    bits = fx_log2_exact((int64_t)hi + 1);
    if (bits < 0) {
        return 0;
    }
    if (is_signed) {
        bits += 1;
        if ((int64_t)lo != -((int64_t)hi + 1)) {
            return 0;
        }
    } else if (lo != 0) {
        return 0;
    }
    one = (type == FXPQ_TFLITE_INT8 || type == FXPQ_TFLITE_UINT8);
    if (bits < (one ? FXPQ_MIN_BITS : 9) || bits > (one ? 8 : FXPQ_MAX_BITS)) {
        return 0;
    }
    fmt->bits = bits;
    fmt->frac = frac;
    fmt->is_signed = is_signed;
    return 1;
}

static fxpq_runner_status fx_open(fxpq_runner *r, const uint8_t *model, size_t size, fx_model *m)
{
    uint64_t version;
    fxfb_vector subgraphs;
    if (size < 8 || size > 0x7fffffffu) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "model has a size of 0..7 bytes or over 2 GB");
    }
    m->b.buf = model;
    m->b.size = (uint32_t)size;
    if (memcmp(model + 4, "TFL3", 4) != 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "not a TFLite file (no TFL3 identifier)");
    }
    if (fxfb_root(&m->b, &m->model) != FXFB_OK
        || fxfb_scalar(&m->b, &m->model, FX_MODEL_VERSION, 4, 0, &version) != FXFB_OK
        || fxfb_vector_field(&m->b, &m->model, FX_MODEL_OPERATOR_CODES, 4, &m->opcodes) < 0
        || fxfb_vector_field(&m->b, &m->model, FX_MODEL_SUBGRAPHS, 4, &subgraphs) < 0
        || fxfb_vector_field(&m->b, &m->model, FX_MODEL_BUFFERS, 4, &m->buffers) < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "model table out of bounds");
    }
    if (version != 3) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, -1, 0, "schema version is not 3");
    }
    if (subgraphs.len != 1) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, -1, 0, "model must have exactly one subgraph");
    }
    if (fxfb_vector_table(&m->b, &subgraphs, 0, &m->subgraph) != FXFB_OK
        || fxfb_vector_field(&m->b, &m->subgraph, FX_SUBGRAPH_TENSORS, 4, &m->tensors) < 0
        || fxfb_vector_field(&m->b, &m->subgraph, FX_SUBGRAPH_INPUTS, 4, &m->inputs) < 0
        || fxfb_vector_field(&m->b, &m->subgraph, FX_SUBGRAPH_OUTPUTS, 4, &m->outputs) < 0
        || fxfb_vector_field(&m->b, &m->subgraph, FX_SUBGRAPH_OPERATORS, 4, &m->operators) < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "subgraph table out of bounds");
    }
    if (m->tensors.len > FXPQ_RUNNER_MAX_TENSORS || m->operators.len > FXPQ_RUNNER_MAX_OPS) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, -1, 0, "more tensors or operators than the runner's limits");
    }
    if (m->operators.len == 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, -1, 0, "model has no operators");
    }
    {
        /* Every buffer (metadata too) must lie inside the bytes given: catches most truncations
         * even where the runner would not read. */
        uint32_t i;
        for (i = 0; i < m->buffers.len; ++i) {
            fxfb_table bt;
            fxfb_vector data;
            if (fxfb_vector_table(&m->b, &m->buffers, i, &bt) != FXFB_OK
                || fxfb_vector_field(&m->b, &bt, FX_BUFFER_DATA, 1, &data) < 0) {
                return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "a buffer lies outside the model bytes (truncated file?)");
            }
        }
    }
    {
        /* The metadata entries (the Python reader reads them): names and buffer indices in range. */
        fxfb_vector meta;
        uint32_t i;
        if (fxfb_vector_field(&m->b, &m->model, FX_MODEL_METADATA, 4, &meta) < 0) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "metadata out of bounds");
        }
        for (i = 0; i < meta.len; ++i) {
            fxfb_table mt;
            const char *name;
            uint32_t name_len;
            uint64_t buffer;
            if (fxfb_vector_table(&m->b, &meta, i, &mt) != FXFB_OK
                || fxfb_string_field(&m->b, &mt, FX_METADATA_NAME, &name, &name_len) < 0
                || fxfb_scalar(&m->b, &mt, FX_METADATA_BUFFER, 4, 0, &buffer) != FXFB_OK) {
                return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "metadata out of bounds");
            }
            if (buffer != 0 && buffer >= m->buffers.len) {
                return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "metadata refers to a buffer the file does not have");
            }
        }
    }
    if (m->inputs.len != 1) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, -1, 0, "model must have exactly one input");
    }
    if (m->outputs.len < 1 || m->outputs.len > FXPQ_RUNNER_MAX_OUTPUTS) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, -1, 0, "model must have 1..8 outputs");
    }
    return FXPQ_RUNNER_OK;
}

/* Read tensor `index`: shape, type, constant data, format. */
static fxpq_runner_status fx_read_tensor(fxpq_runner *r, const fx_model *m, int32_t index,
                                         int32_t op, int32_t kind, fx_tensor *t)
{
    fxfb_table tt, quant, buffer, sparsity;
    fxfb_vector shape;
    uint64_t type, buf_index;
    const char *name;
    uint32_t name_len;
    int64_t elements = 1;
    uint32_t i;
    int rc;
    memset(t, 0, sizeof(*t));
    if (index < 0 || (uint32_t)index >= m->tensors.len) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "tensor index out of range");
    }
    if (fxfb_vector_table(&m->b, &m->tensors, (uint32_t)index, &tt) != FXFB_OK
        || fxfb_vector_field(&m->b, &tt, FX_TENSOR_SHAPE, 4, &shape) < 0
        || fxfb_scalar(&m->b, &tt, FX_TENSOR_TYPE, 1, 0, &type) != FXFB_OK
        || fxfb_scalar(&m->b, &tt, FX_TENSOR_BUFFER, 4, 0, &buf_index) != FXFB_OK
        || fxfb_string_field(&m->b, &tt, FX_TENSOR_NAME, &name, &name_len) < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "tensor table out of bounds");
    }
    rc = fxfb_table_field(&m->b, &tt, FX_TENSOR_SPARSITY, &sparsity);
    if (rc < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "tensor table out of bounds");
    }
    if (rc == FXFB_OK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "sparse tensors are not supported");
    }
    if (shape.len > FXPQ_RUNNER_MAX_RANK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "tensor rank above 6");
    }
    t->type = (int32_t)type;
    t->rank = (int32_t)shape.len;
    for (i = 0; i < shape.len; ++i) {
        int32_t d = fxfb_vector_i32(&m->b, &shape, i);
        if (d < 1 || d > 0x7fffffff / 2) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "tensor dimension outside 1..2^30-1");
        }
        t->dims[i] = d;
        elements *= d;
        if (elements > m->limits.max_elements) {
            return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "tensor has more elements than the limit (format.md section 11)");
        }
    }
    t->elements = (int32_t)elements;
    if (buf_index != 0) {
        fxfb_vector data;
        uint64_t offset;
        if (buf_index >= m->buffers.len
            || fxfb_vector_table(&m->b, &m->buffers, (uint32_t)buf_index, &buffer) != FXFB_OK
            || fxfb_vector_field(&m->b, &buffer, FX_BUFFER_DATA, 1, &data) < 0
            || fxfb_scalar(&m->b, &buffer, FX_BUFFER_OFFSET, 8, 0, &offset) != FXFB_OK) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "tensor buffer out of bounds");
        }
        if (offset > 1) {
            return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "buffers outside the flatbuffer are not supported");
        }
        if (data.len > 0) {
            t->is_const = 1;
            t->data = m->b.buf + data.pos;
            t->data_len = data.len;
        }
    }
    rc = fxfb_table_field(&m->b, &tt, FX_TENSOR_QUANTIZATION, &quant);
    if (rc < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "tensor quantization out of bounds");
    }
    if (rc == FXFB_OK && !t->is_const
        && (t->type == FXPQ_TFLITE_INT8 || t->type == FXPQ_TFLITE_UINT8
            || t->type == FXPQ_TFLITE_INT16 || t->type == FXPQ_TFLITE_UINT16)) {
        t->has_format = fx_tensor_format(m, &quant, t->type, &t->format, &t->zero_point);
    }
    return FXPQ_RUNNER_OK;
}

/* --------------------------------------------------------------------- prepared op --------- */

typedef struct {
    int32_t kind;
    int32_t num_inputs;          /* activation inputs: 1 or 2 */
    int32_t in_t[2];
    int32_t out_t;
    uint32_t in_off[2];
    uint32_t out_off;
    uint32_t scratch_off;
    int32_t scratch_bytes;
    fxpq_format in_fmt[2];
    fxpq_format out_fmt;
    fxpq_dims in_dims;
    fxpq_dims out_dims;
    fxpq_dims filter_dims;
    int32_t size;                /* elements (elementwise ops) / in_features (FC) */
    int32_t out_features;
    fxpq_weights weights;
    fxpq_bias bias;
    union {
        fxpq_conv_params conv;
        fxpq_dw_conv_params dw;
        fxpq_fc_params fc;
        fxpq_pool_params pool;
        fxpq_elementwise_params ew;
        fxpq_pad_params pad;
        fxpq_leaky_relu_params leaky;
        struct {
            int32_t outer, a_channels, b_channels;
        } concat;
        union fx_stock_params *stock; /* a stock op's parameters, in their own region (below) */
    } p;
} fx_op;

/* A stock op's prepared parameters. They live in a region after the prepared ops, one entry per
 * stock op, so that files without stock ops keep the prepared-op size they had. */
typedef union fx_stock_params {
    struct { /* MUL, SUB, MAXIMUM, MINIMUM: the TFLM parameters and the two input shapes */
        union {
            fxpq_stock_mul_params mul;
            fxpq_stock_add_params add;
        } q;
        fxpq_stock_shape a, b;
    } bin;
    fxpq_stock_sigmoid_params sig;
    fxpq_stock_hard_swish_params hswish;
    fxpq_stock_requantize_params rq;
    struct {
        fxpq_stock_shape in;
        int32_t out_h, out_w, align_corners, half_pixel_centers;
    } resize;
    struct {
        fxpq_stock_shape in;
        int32_t perm[FXPQ_STOCK_MAX_RANK];
    } tr;
} fx_stock_params;

static int fx_same_shape(const fx_tensor *a, const fx_tensor *b)
{
    int32_t i;
    if (a->rank != b->rank) {
        return 0;
    }
    for (i = 0; i < a->rank; ++i) {
        if (a->dims[i] != b->dims[i]) {
            return 0;
        }
    }
    return 1;
}

static int fx_nhwc(const fx_tensor *t, fxpq_dims *d)
{
    if (t->rank != 4 || t->dims[0] != 1) {
        return 0;
    }
    d->n = 1;
    d->h = t->dims[1];
    d->w = t->dims[2];
    d->c = t->dims[3];
    return 1;
}

/* Check an activation tensor: not constant, batch 1, integer with a valid format. */
static fxpq_runner_status fx_check_activation(fxpq_runner *r, int32_t op, int32_t kind,
                                              const fx_tensor *t, const char *what)
{
    if (t->is_const || t->rank < 1 || t->dims[0] != 1) {
        fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, what);
        fx_msg_str(r, " must be a non-constant tensor with batch 1");
        return FXPQ_RUNNER_ERR_BAD_TENSOR;
    }
    if (!t->has_format) {
        fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, what);
        fx_msg_str(r, " needs an integer type and format.md quantization (scale 2^-frac, zero point 0, min/max of the format)");
        return FXPQ_RUNNER_ERR_BAD_TENSOR;
    }
    return FXPQ_RUNNER_OK;
}

/* TensorFlow's output size and padding of one axis, checked against the file. */
static fxpq_runner_status fx_check_axis(fxpq_runner *r, int32_t op, int32_t kind, int32_t in,
                                        int32_t k, int32_t stride, int32_t dilation,
                                        const fxpq_op_options *o, int32_t out, int32_t pad_before,
                                        int32_t pad_after)
{
    int32_t expect, before;
    int64_t total;
    fxpq_padding padding = o->padding == 0 ? FXPQ_PADDING_SAME : FXPQ_PADDING_VALID;
    if (fxpq_conv_output_size(in, k, stride, dilation, padding, &expect, &before) != FXPQ_OK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "window does not fit the input with 'valid' padding");
    }
    total = (int64_t)(expect - 1) * stride + (int64_t)(k - 1) * dilation + 1 - in;
    if (total < 0 || padding == FXPQ_PADDING_VALID) {
        total = 0;
    }
    if (expect != out) {
        fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "output size ");
        fx_msg_int(r, out);
        fx_msg_str(r, " differs from the padding rule's ");
        fx_msg_int(r, expect);
        return FXPQ_RUNNER_ERR_BAD_TENSOR;
    }
    if (pad_before != before || (int64_t)pad_after != total - before) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "pad_* options differ from the padding rule");
    }
    return FXPQ_RUNNER_OK;
}

/* Weights, weight fracs and bias of a weighted op (format.md sections 2.2-2.4). */
static fxpq_runner_status fx_weighted(fxpq_runner *r, const fx_model *m, int32_t op,
                                      int32_t kind, const fxfb_vector *inputs,
                                      const fxpq_op_options *o, int32_t rows, int32_t k,
                                      fx_op *p)
{
    fx_tensor w, f, bias;
    fxpq_runner_status st;
    int32_t row_bytes = fxpq_packed_row_size(o->weight_bits, k);
    int32_t bias_index, i;
    if (inputs->len != 3 && inputs->len != 4) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "needs 3 or 4 inputs");
    }
    if ((st = fx_read_tensor(r, m, fxfb_vector_i32(&m->b, inputs, 1), op, kind, &w)) != FXPQ_RUNNER_OK
        || (st = fx_read_tensor(r, m, fxfb_vector_i32(&m->b, inputs, 2), op, kind, &f)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (row_bytes < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "bad weight row size");
    }
    if (w.is_const && w.type == FXPQ_TFLITE_INT16) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind,
                       "INT16 weights are file format version 1; re-export "
                       "(version 2 bit-packs every width in UINT8)");
    }
    if (!w.is_const || w.type != FXPQ_TFLITE_UINT8 || w.rank != 2 || w.dims[0] != rows
        || w.dims[1] != row_bytes || (int64_t)w.data_len != (int64_t)rows * row_bytes) {
        fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "weights must be a constant [");
        fx_msg_int(r, rows);
        fx_msg_str(r, ", ");
        fx_msg_int(r, row_bytes);
        fx_msg_str(r, "] UINT8 (packed)");
        return FXPQ_RUNNER_ERR_BAD_TENSOR;
    }
    if (!f.is_const || f.type != FXPQ_TFLITE_INT8 || f.rank != 1 || f.dims[0] != rows
        || f.data_len != (uint32_t)rows) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "weight fracs must be a constant INT8 [O]");
    }
    bias_index = inputs->len == 4 ? fxfb_vector_i32(&m->b, inputs, 3) : -1;
    p->bias.data = NULL;
    p->bias.frac = o->bias_frac;
    if (bias_index >= 0) {
        if ((st = fx_read_tensor(r, m, bias_index, op, kind, &bias)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (!bias.is_const || bias.type != FXPQ_TFLITE_INT32 || bias.rank != 1
            || bias.dims[0] != rows || bias.data_len != 4u * (uint32_t)rows) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "bias must be a constant INT32 [O]");
        }
        if (o->bias_bits == 0) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "bias tensor given but bias_bits is 0");
        }
        p->bias.data = (const int32_t *)(const void *)bias.data;
    } else if (bias_index != -1) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "bias tensor index out of range");
    } else if (o->bias_bits != 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "bias_bits set but no bias tensor");
    }
    for (i = 0; i < rows; ++i) {
        int32_t wf = (int8_t)f.data[i];
        if (wf < FXPQ_MIN_FRAC || wf > FXPQ_MAX_FRAC) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "weight frac outside -32..32");
        }
        if (p->bias.data != NULL) {
            int32_t shift = o->in_frac + wf - o->bias_frac;
            if (shift < 0 || shift > FXPQ_MAX_BIAS_SHIFT) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "bias frac outside 0 <= frac_acc - bias_frac <= 30");
            }
        }
    }
    p->weights.data = w.data;
    p->weights.bits = o->weight_bits;
    p->weights.frac = (int8_t)f.data[0];
    p->weights.per_channel_frac = (const int8_t *)(const void *)f.data;
    return FXPQ_RUNNER_OK;
}

/* A selective kernel build (fxpq_paths.h) must hold this weighted op's path: refuse the file when
 * it was built for another model's paths, naming the combination. */
static fxpq_runner_status fx_check_path(fxpq_runner *r, int32_t op, int32_t kind, const fx_tensor *in,
                                        int32_t weight_bits, int32_t terms)
{
    static const char *const names[] = {"int8", "uint8", "int16", "uint16"};
    const fxpq_storage s = in->type == FXPQ_TFLITE_INT8    ? FXPQ_STORAGE_INT8
                           : in->type == FXPQ_TFLITE_UINT8 ? FXPQ_STORAGE_UINT8
                           : in->type == FXPQ_TFLITE_INT16 ? FXPQ_STORAGE_INT16
                                                           : FXPQ_STORAGE_UINT16;
    if (!in->has_format || fxpq_kernel_path_built(kind, &in->format, weight_bits, terms)) {
        return FXPQ_RUNNER_OK; /* (a missing format is refused by the op's own checks) */
    }
    fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, names[s]);
    fx_msg_str(r, " inputs (");
    fx_msg_int(r, in->format.bits);
    fx_msg_str(r, "-bit format) with ");
    fx_msg_int(r, weight_bits);
    fx_msg_str(r, "-bit weights: ");
    fx_msg_str(r, fxpq_status_str(FXPQ_ERR_NOT_BUILT));
    return FXPQ_RUNNER_ERR_UNSUPPORTED;
}

/* a * b, saturated at 2^62 (above every limit) */
static int64_t fx_mul_sat(int64_t a, int64_t b)
{
    const int64_t cap = INT64_C(1) << 62;
    if (a == 0 || b == 0) {
        return 0;
    }
    return a > cap / b ? cap : a * b;
}

/* Cost of a windowed op (format.md section 11; fxpq_keras reader.op_cost counts the same): the
 * patch elements and the padded input plane must fit max_window; *work gets the MACs (taps
 * times output channels per input channel) or window taps. */
static fxpq_runner_status fx_window_cost(fxpq_runner *r, const fx_model *m, int32_t op, int32_t kind,
                                         const fxpq_dims *in, const fxpq_dims *out, int32_t kh,
                                         int32_t kw, int32_t sh, int32_t sw, int32_t dh, int32_t dw,
                                         int64_t per_patch, int64_t *work)
{
    int64_t patches = fx_mul_sat(fx_mul_sat(fx_mul_sat((int64_t)out->h * out->w, kh), kw), in->c);
    int64_t ph = (int64_t)(out->h - 1) * sh + (int64_t)(kh - 1) * dh + 1;
    int64_t pw = (int64_t)(out->w - 1) * sw + (int64_t)(kw - 1) * dw + 1;
    int64_t plane = fx_mul_sat(fx_mul_sat(ph > in->h ? ph : in->h, pw > in->w ? pw : in->w), in->c);
    if (patches > m->limits.max_window || plane > m->limits.max_window) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "window spans more elements than the limit (format.md section 11)");
    }
    *work = fx_mul_sat(patches, per_patch);
    return FXPQ_RUNNER_OK;
}

/* ------------------------------------------------------------------- stock ops ------------ */

/* A stock tensor's TFLite quantization: scale 2^-frac (a float32 built from its bits), zero point. */
static fxpq_stock_quant fx_stock_quant(const fx_tensor *t)
{
    fxpq_stock_quant q;
    uint32_t bits = (uint32_t)(127 - t->format.frac) << 23; /* frac is validated: a normal float */
    memcpy(&q.scale, &bits, sizeof(bits));
    q.zero_point = t->zero_point;
    q.type = t->type;
    return q;
}

static void fx_stock_shape(const fx_tensor *t, fxpq_stock_shape *shape)
{
    int32_t i;
    shape->rank = t->rank;
    for (i = 0; i < t->rank; ++i) {
        shape->dims[i] = t->dims[i];
    }
}

/* 1 when out is the numpy broadcast of a and b (ranks aligned at the end). */
static int fx_broadcasts_to(const fx_tensor *a, const fx_tensor *b, const fx_tensor *out)
{
    int32_t i, rank = a->rank > b->rank ? a->rank : b->rank;
    if (out->rank != rank) {
        return 0;
    }
    for (i = 1; i <= rank; ++i) {
        int32_t da = i <= a->rank ? a->dims[a->rank - i] : 1;
        int32_t db = i <= b->rank ? b->dims[b->rank - i] : 1;
        int32_t d = da > db ? da : db;
        if ((da != 1 && da != d) || (db != 1 && db != d) || out->dims[rank - i] != d) {
            return 0;
        }
    }
    return 1;
}

/* The int32 constant input `index` of op `op`: its values (at most FXPQ_STOCK_MAX_RANK). */
static fxpq_runner_status fx_stock_const(fxpq_runner *r, const fx_model *m, const fxfb_vector *inputs,
                                         uint32_t index, int32_t op, int32_t kind, int32_t n, int32_t *values)
{
    fx_tensor t;
    fxpq_runner_status st;
    int32_t i;
    if ((st = fx_read_tensor(r, m, fxfb_vector_i32(&m->b, inputs, index), op, kind, &t)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (!t.is_const || t.type != FXPQ_TFLITE_INT32 || t.rank != 1 || t.dims[0] != n
        || t.data_len != 4u * (uint32_t)n) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "the second input must be a constant INT32 vector of the right length");
    }
    for (i = 0; i < n; ++i) {
        values[i] = (int32_t)fxfb_load_u32(t.data + 4 * i);
    }
    return FXPQ_RUNNER_OK;
}

/* The operator's builtin options as the Python reader takes them (tables.py): a type of 0 or
 * `want`; when the type is not 0, the table (if any) must lie in the file. *present: a table. */
static fxpq_runner_status fx_stock_options(fxpq_runner *r, const fx_model *m, int32_t op, int32_t kind,
                                           const fxfb_table *ot, uint64_t want, fxfb_table *options,
                                           int *present)
{
    uint64_t type = 0;
    int rc;
    *present = 0;
    if (fxfb_scalar(&m->b, ot, FX_OPERATOR_BUILTIN_OPTIONS_TYPE, 1, 0, &type) != FXFB_OK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "operator table out of bounds");
    }
    if (type == 0) {
        return FXPQ_RUNNER_OK;
    }
    if (type != want) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "builtin options of another op");
    }
    rc = fxfb_table_field(&m->b, ot, FX_OPERATOR_BUILTIN_OPTIONS, options);
    if (rc < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "builtin options out of bounds");
    }
    *present = rc == FXFB_OK;
    return FXPQ_RUNNER_OK;
}

/* Validate a stock builtin op (format.md section 8) as TFLM's Prepare would, and do its
 * Prepare-time arithmetic once (the fxpq_stock_*_prepare functions). */
static fxpq_runner_status fx_prepare_stock(fxpq_runner *r, const fx_model *m, int32_t op, int32_t kind,
                                           const fxfb_table *ot, const fxfb_vector *inputs,
                                           const fx_tensor *in0, const fx_tensor *out, fx_op *p)
{
    fxpq_stock_quant qi = fx_stock_quant(in0), qo = fx_stock_quant(out);
    fxpq_runner_status st;
    fxpq_status ks = FXPQ_OK;
    int32_t want_inputs = (kind == FX_KIND_LOGISTIC || kind == FX_KIND_TANH || kind == FX_KIND_HARD_SWISH || kind == FX_KIND_ELU
                           || kind == FX_KIND_STOCK_QUANTIZE) ? 1 : 2;
    fxfb_table options;
    int has_options;
    uint64_t want_options = kind == FX_KIND_MUL ? 21 : kind == FX_KIND_SUB ? 28
                            : (kind == FX_KIND_MAXIMUM || kind == FX_KIND_MINIMUM) ? 39
                            : kind == FX_KIND_RESIZE_NEAREST ? 74 : kind == FX_KIND_TRANSPOSE ? 26 : 0;
    if ((st = fx_stock_options(r, m, op, kind, ot, want_options, &options, &has_options)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if ((int32_t)inputs->len != want_inputs) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, want_inputs == 1 ? "needs 1 input" : "needs 2 inputs");
    }
    if (in0->type != FXPQ_TFLITE_INT8 || out->type != FXPQ_TFLITE_INT8) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "the runner's stock ops read and write INT8 tensors only (format.md section 8); int8-builtin files run in TFLM");
    }
    if ((st = fx_check_activation(r, op, kind, in0, "input")) != FXPQ_RUNNER_OK) {
        return st;
    }
    p->in_fmt[0] = in0->format;
    p->size = out->elements;
    if (kind == FX_KIND_MUL || kind == FX_KIND_SUB || kind == FX_KIND_MAXIMUM || kind == FX_KIND_MINIMUM) {
        fx_tensor in1;
        uint64_t activation = 0;
        fxpq_stock_quant q1;
        p->in_t[1] = fxfb_vector_i32(&m->b, inputs, 1);
        p->num_inputs = 2;
        if ((st = fx_read_tensor(r, m, p->in_t[1], op, kind, &in1)) != FXPQ_RUNNER_OK
            || (st = fx_check_activation(r, op, kind, &in1, "input 2")) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (in1.type != FXPQ_TFLITE_INT8) {
            return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "the runner's stock ops read and write INT8 tensors only (format.md section 8)");
        }
        if (!fx_broadcasts_to(in0, &in1, out) || out->rank > (kind == FX_KIND_SUB ? 4 : FXPQ_STOCK_MAX_RANK)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "output shape must be the broadcast of the input shapes (SUB: rank <= 4)");
        }
        if (has_options && (kind == FX_KIND_MUL || kind == FX_KIND_SUB)
            && fxfb_scalar(&m->b, &options, 0, 1, 0, &activation) != FXFB_OK) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "builtin options out of bounds");
        }
        if (activation != 0) { /* the writer fuses none; the Python reader refuses them too */
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "fused activations on stock ops are not supported");
        }
        p->in_fmt[1] = in1.format;
        fx_stock_shape(in0, &p->p.stock->bin.a);
        fx_stock_shape(&in1, &p->p.stock->bin.b);
        q1 = fx_stock_quant(&in1);
        if (kind == FX_KIND_MAXIMUM || kind == FX_KIND_MINIMUM) {
            /* TFLM compares stored values: one quantization for the three tensors (format.md 8) */
            if (q1.scale != qi.scale || q1.zero_point != qi.zero_point || qo.scale != qi.scale
                || qo.zero_point != qi.zero_point || activation != 0 || out->rank > 5) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "inputs and output need one format, no activation, rank <= 5");
            }
            return FXPQ_RUNNER_OK;
        }
        ks = kind == FX_KIND_MUL
                 ? fxpq_stock_mul_prepare(&qi, &q1, &qo, (int32_t)activation, &p->p.stock->bin.q.mul)
                 : fxpq_stock_add_prepare(&qi, &q1, &qo, (int32_t)activation, 1, &p->p.stock->bin.q.add);
    } else if (kind == FX_KIND_RESIZE_NEAREST || kind == FX_KIND_TRANSPOSE) {
        if (in0->format.bits != out->format.bits || in0->format.frac != out->format.frac
            || in0->zero_point != out->zero_point) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "output must have the input's format (the op moves stored values)");
        }
        if (kind == FX_KIND_RESIZE_NEAREST) {
            int32_t size[2];
            uint64_t align = 0, half = 0;
            if (in0->rank != 4 || out->rank != 4 || out->dims[3] != in0->dims[3]) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input and output must be [1, H, W, C] with the same C");
            }
            if ((st = fx_stock_const(r, m, inputs, 1, op, kind, 2, size)) != FXPQ_RUNNER_OK) {
                return st;
            }
            if (size[0] != out->dims[1] || size[1] != out->dims[2]) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "size input differs from the output's H, W");
            }
            if (has_options && (fxfb_scalar(&m->b, &options, 0, 1, 0, &align) != FXFB_OK
                                || fxfb_scalar(&m->b, &options, 1, 1, 0, &half) != FXFB_OK)) {
                return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, kind, "builtin options out of bounds");
            }
            if (align != 0 || half != 0) { /* integer upsampling, as the writer writes it */
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "align_corners and half_pixel_centers must be false");
            }
            fx_stock_shape(in0, &p->p.stock->resize.in);
            p->p.stock->resize.out_h = size[0];
            p->p.stock->resize.out_w = size[1];
            p->p.stock->resize.align_corners = align != 0;
            p->p.stock->resize.half_pixel_centers = half != 0;
        } else {
            int32_t i, seen = 0;
            if (in0->rank != out->rank || in0->rank > 5) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input and output must have one rank, at most 5");
            }
            if ((st = fx_stock_const(r, m, inputs, 1, op, kind, in0->rank, p->p.stock->tr.perm)) != FXPQ_RUNNER_OK) {
                return st;
            }
            for (i = 0; i < in0->rank; ++i) {
                int32_t d = p->p.stock->tr.perm[i];
                if (d < 0 || d >= in0->rank || (seen & (1 << d)) || out->dims[i] != in0->dims[d]) {
                    return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "perm is not a permutation that maps the input shape to the output's");
                }
                seen |= 1 << d;
            }
            fx_stock_shape(in0, &p->p.stock->tr.in);
        }
    } else {
        if (!fx_same_shape(in0, out)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input and output must have the same shape");
        }
        if (kind == FX_KIND_ELU) {
            /* checked like the others, not prepared: its 256-byte table would grow every prepared
             * op of every model; fxpq_runner_init ends a valid file with ELU in STOCK_FILE */
            return FXPQ_RUNNER_OK;
        }
        if (kind == FX_KIND_LOGISTIC) {
            ks = fxpq_stock_logistic_prepare(&qi, &qo, &p->p.stock->sig);
        } else if (kind == FX_KIND_TANH) {
            ks = fxpq_stock_tanh_prepare(&qi, &qo, &p->p.stock->sig);
        } else if (kind == FX_KIND_HARD_SWISH) {
            ks = fxpq_stock_hard_swish_prepare(&qi, &qo, &p->p.stock->hswish);
        } else {
            ks = fxpq_stock_requantize_prepare(&qi, &qo, &p->p.stock->rq);
        }
    }
    if (ks != FXPQ_OK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "quantization parameters TFLM's kernel refuses (docs/numerics.md section 11)");
    }
    return FXPQ_RUNNER_OK;
}

/* Add one op's cost to the model's (format.md section 11; reader.py op_cost counts the same):
 * `work` MACs for a weighted op, `work` window taps for a pool, else the elements it writes
 * (RESHAPE nothing); fail above the limits. */
static fxpq_runner_status fx_add_cost(fxpq_runner *r, fx_model *m, int32_t op, int32_t kind,
                                      int weighted, int pool, int reshape, int64_t work,
                                      int32_t out_t)
{
    if (weighted) {
        m->work += work;
    } else if (pool) {
        m->taps += work;
    } else if (!reshape) {
        fx_tensor out;
        fxpq_runner_status st = fx_read_tensor(r, m, out_t, op, kind, &out);
        if (st != FXPQ_RUNNER_OK) {
            return st;
        }
        m->taps += out.elements;
    }
    if (m->work > m->limits.max_work) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "one inference needs more MACs than the limit (format.md section 11)");
    }
    if (m->taps > m->limits.max_taps) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "one inference needs more window taps and written elements than the limit (format.md section 11)");
    }
    return FXPQ_RUNNER_OK;
}

/* Validate operator `op` and fill *p (everything but the arena offsets); *work (when not NULL)
 * gets the op's MACs or window taps. */
static fxpq_runner_status fx_prepare_op(fxpq_runner *r, const fx_model *m, int32_t op, fx_op *p,
                                        int64_t *work, fx_stock_params *stock)
{
    int64_t cost = 0;
    fxfb_table ot, code;
    fxfb_vector inputs, outputs, options;
    uint64_t opcode_index, dep_code, builtin, opt_format, large;
    int32_t kind, code_value;
    fx_tensor in0, in1, out;
    fxpq_op_options o;
    fxpq_runner_status st;
    const char *name;
    uint32_t name_len;

    memset(p, 0, sizeof(*p));
    if (fxfb_vector_table(&m->b, &m->operators, (uint32_t)op, &ot) != FXFB_OK
        || fxfb_scalar(&m->b, &ot, FX_OPERATOR_OPCODE_INDEX, 4, 0, &opcode_index) != FXFB_OK
        || fxfb_vector_field(&m->b, &ot, FX_OPERATOR_INPUTS, 4, &inputs) < 0
        || fxfb_vector_field(&m->b, &ot, FX_OPERATOR_OUTPUTS, 4, &outputs) < 0
        || fxfb_vector_field(&m->b, &ot, FX_OPERATOR_CUSTOM_OPTIONS, 1, &options) < 0
        || fxfb_scalar(&m->b, &ot, FX_OPERATOR_CUSTOM_OPTIONS_FORMAT, 1, 0, &opt_format) != FXFB_OK
        || fxfb_scalar(&m->b, &ot, FX_OPERATOR_LARGE_CUSTOM_OPTIONS_OFFSET, 8, 0, &large) != FXFB_OK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator table out of bounds");
    }
    if (opcode_index >= m->opcodes.len
        || fxfb_vector_table(&m->b, &m->opcodes, (uint32_t)opcode_index, &code) != FXFB_OK
        || fxfb_scalar(&m->b, &code, FX_OPCODE_DEPRECATED_BUILTIN, 1, 0, &dep_code) != FXFB_OK
        || fxfb_scalar(&m->b, &code, FX_OPCODE_BUILTIN, 4, 0, &builtin) != FXFB_OK
        || fxfb_string_field(&m->b, &code, FX_OPCODE_CUSTOM_CODE, &name, &name_len) < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator code out of bounds");
    }
    /* TFLite's rule: the real code is the larger of the two fields. */
    code_value = (int32_t)(int8_t)dep_code;
    if ((int32_t)builtin > code_value) {
        code_value = (int32_t)builtin;
    }
    if (code_value != FX_BUILTIN_CUSTOM) {
        int32_t i;
        kind = -1;
        for (i = 0; i < FX_NUM_BUILTINS; ++i) {
            if (fx_builtins[i].code == code_value) {
                kind = fx_builtins[i].kind;
            }
        }
        if (kind < 0) {
            fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, -1, "unsupported builtin op ");
            fx_msg_int(r, code_value);
            fx_msg_str(r, " (supported: FXP_* custom ops, RESHAPE and the stock ops of format.md section 8)");
            return FXPQ_RUNNER_ERR_UNSUPPORTED;
        }
    } else {
        kind = fxpq_custom_op_from_name(name, name_len);
        if (kind < 0) {
            fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, -1, "unsupported custom op '");
            fx_msg_str(r, name_len < 40 ? name : "(long name)");
            fx_msg_str(r, "' (supported: FXP_* of format.md section 4, RESHAPE)");
            return FXPQ_RUNNER_ERR_UNSUPPORTED;
        }
    }
    p->kind = kind;
    if (outputs.len != 1 || inputs.len < 1) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "needs inputs and exactly one output");
    }
    p->in_t[0] = fxfb_vector_i32(&m->b, &inputs, 0);
    p->in_t[1] = -1;
    p->out_t = fxfb_vector_i32(&m->b, &outputs, 0);
    p->num_inputs = 1;
    if ((st = fx_read_tensor(r, m, p->in_t[0], op, kind, &in0)) != FXPQ_RUNNER_OK
        || (st = fx_read_tensor(r, m, p->out_t, op, kind, &out)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if ((st = fx_check_activation(r, op, kind, &out, "output")) != FXPQ_RUNNER_OK) {
        return st;
    }
    p->out_fmt = out.format;
    if (kind > FX_KIND_RESHAPE) {
        p->p.stock = stock;
        st = fx_prepare_stock(r, m, op, kind, &ot, &inputs, &in0, &out, p);
        if (st == FXPQ_RUNNER_OK && work != NULL) {
            *work = out.elements;
        }
        return st;
    }
    if (kind != FX_KIND_RESHAPE && (in0.zero_point != 0 || out.zero_point != 0)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "reads or writes a tensor with zero point -128: only stock ops may (format.md section 8)");
    }
    if (kind == FX_KIND_RESHAPE) {
        if (inputs.len > 2) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "needs 1 or 2 inputs");
        }
        if ((st = fx_check_activation(r, op, kind, &in0, "input")) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (in0.type != out.type || in0.elements != out.elements || in0.zero_point != out.zero_point
            || in0.format.bits != out.format.bits || in0.format.frac != out.format.frac) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "output must have the input's type, format and element count");
        }
        if (inputs.len == 2) {
            if ((st = fx_read_tensor(r, m, fxfb_vector_i32(&m->b, &inputs, 1), op, kind, &in1)) != FXPQ_RUNNER_OK) {
                return st;
            }
            if (!in1.is_const || in1.type != FXPQ_TFLITE_INT32 || in1.rank != 1 || in1.dims[0] != out.rank
                || in1.data_len != 4u * (uint32_t)out.rank) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "the shape input must be a constant INT32 [output rank]");
            }
        }
        p->in_fmt[0] = in0.format;
        p->size = in0.elements;
        return FXPQ_RUNNER_OK;
    }
    /* Custom op: FlexBuffers options (format.md section 4). */
    if (large != 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "large custom options are not supported");
    }
    if (opt_format != 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "custom options are not FlexBuffers");
    }
    st = fxpq_options_parse(kind, m->b.buf + options.pos, options.len, &o);
    if (st != FXPQ_RUNNER_OK) {
        fx_fail(r, st, op, kind, "custom options: ");
        fx_msg_str(r, st == FXPQ_RUNNER_ERR_MALFORMED ? "malformed FlexBuffers"
                      : "keys or values differ from docs/format.md section 4");
        return st;
    }
    if (fxpq_options_check_output(&o, &out.format) != FXPQ_RUNNER_OK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "act_min/act_max/out_frac do not match the output tensor's format and activation");
    }
    if (kind == FXPQ_OP_QUANTIZE) {
        if (inputs.len != 1 || in0.is_const || in0.type != FXPQ_TFLITE_FLOAT32
            || !fx_same_shape(&in0, &out)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input must be a FLOAT32 tensor of the output's shape");
        }
        p->size = out.elements;
        return FXPQ_RUNNER_OK;
    }
    if ((st = fx_check_activation(r, op, kind, &in0, "input")) != FXPQ_RUNNER_OK) {
        return st;
    }
    p->in_fmt[0] = in0.format;
    if (kind == FXPQ_OP_ADD || kind == FXPQ_OP_CONCATENATION) {
        if (inputs.len != 2) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "needs 2 inputs");
        }
        p->in_t[1] = fxfb_vector_i32(&m->b, &inputs, 1);
        p->num_inputs = 2;
        if ((st = fx_read_tensor(r, m, p->in_t[1], op, kind, &in1)) != FXPQ_RUNNER_OK
            || (st = fx_check_activation(r, op, kind, &in1, "input 2")) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (in1.zero_point != 0) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "reads a tensor with zero point -128: only stock ops may (format.md section 8)");
        }
        if (o.in1_frac != in0.format.frac || o.in2_frac != in1.format.frac) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "in1_frac/in2_frac differ from the input tensors");
        }
        p->in_fmt[1] = in1.format;
        if (kind == FXPQ_OP_CONCATENATION) {
            int32_t i, ok = in0.rank == out.rank && in1.rank == out.rank && out.rank >= 2
                            && (int64_t)in0.dims[out.rank - 1] + in1.dims[out.rank - 1]
                                   == out.dims[out.rank - 1];
            for (i = 0; ok && i < out.rank - 1; ++i) {
                ok = in0.dims[i] == out.dims[i] && in1.dims[i] == out.dims[i];
            }
            if (!ok) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "output must be the two inputs joined on the last axis");
            }
            p->p.concat.a_channels = in0.dims[out.rank - 1];
            p->p.concat.b_channels = in1.dims[out.rank - 1];
            p->p.concat.outer = out.elements / out.dims[out.rank - 1];
            return FXPQ_RUNNER_OK;
        }
        if (!fx_same_shape(&in0, &out) || !fx_same_shape(&in1, &out)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "inputs and output must have the same shape");
        }
        if (o.in1_frac - o.in2_frac > FXPQ_MAX_ADD_FRAC_DIFF
            || o.in2_frac - o.in1_frac > FXPQ_MAX_ADD_FRAC_DIFF) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "|in1_frac - in2_frac| > 32");
        }
        p->in_fmt[1] = in1.format;
        p->size = out.elements;
        p->p.ew.activation = fxpq_options_activation(&o);
        return FXPQ_RUNNER_OK;
    }
    if (o.in_frac != in0.format.frac) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "in_frac differs from the input tensor");
    }
    /* in_bits (weighted ops, format version 4; 0: absent) must name the tensor's format, which the
     * runner runs on: the TFLM glue reads the same width from the option */
    if (o.in_bits != 0 && o.in_bits != in0.format.bits) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "in_bits differs from the input tensor's format");
    }
    switch (kind) {
    case FXPQ_OP_REQUANTIZE:
        if (inputs.len != 1 || !fx_same_shape(&in0, &out)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "needs one input of the output's shape");
        }
        p->size = out.elements;
        p->p.ew.activation = fxpq_options_activation(&o);
        return FXPQ_RUNNER_OK;
    case FXPQ_OP_GLOBAL_AVERAGE_POOL_2D:
        if (inputs.len != 1 || !fx_nhwc(&in0, &p->in_dims) || out.rank != 2
            || out.dims[1] != p->in_dims.c) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input must be [1,H,W,C] and output [1,C]");
        }
        if (o.out_frac - o.in_frac > FXPQ_MAX_AVG_FRAC_DIFF
            || o.in_frac - o.out_frac > FXPQ_MAX_AVG_FRAC_DIFF) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "|out_frac - in_frac| > 24");
        }
        if (work != NULL) {
            *work = in0.elements;
        }
        return FXPQ_RUNNER_OK;
    case FXPQ_OP_MAX_POOL_2D:
    case FXPQ_OP_AVERAGE_POOL_2D:
        if (inputs.len != 1 || !fx_nhwc(&in0, &p->in_dims) || !fx_nhwc(&out, &p->out_dims)
            || p->out_dims.c != p->in_dims.c) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input and output must be [1,H,W,C] with the same C");
        }
        if (kind == FXPQ_OP_AVERAGE_POOL_2D && (o.out_frac - o.in_frac > FXPQ_MAX_AVG_FRAC_DIFF
                                                || o.in_frac - o.out_frac > FXPQ_MAX_AVG_FRAC_DIFF)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, kind, "|out_frac - in_frac| > 24");
        }
        if ((st = fx_check_axis(r, op, kind, p->in_dims.h, o.filter_h, o.stride_h, 1, &o,
                                p->out_dims.h, o.pad_top, o.pad_bottom)) != FXPQ_RUNNER_OK
            || (st = fx_check_axis(r, op, kind, p->in_dims.w, o.filter_w, o.stride_w, 1, &o,
                                   p->out_dims.w, o.pad_left, o.pad_right)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if ((st = fx_window_cost(r, m, op, kind, &p->in_dims, &p->out_dims, o.filter_h, o.filter_w,
                                 o.stride_h, o.stride_w, 1, 1, 1, &cost)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (work != NULL) {
            *work = cost;
        }
        fxpq_options_pool_params(&o, &p->p.pool);
        return FXPQ_RUNNER_OK;
    case FXPQ_OP_LEAKY_RELU:
        if (inputs.len != 1 || !fx_same_shape(&in0, &out)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "needs one input of the output's shape");
        }
        p->size = out.elements;
        fxpq_options_leaky_relu_params(&o, &p->p.leaky);
        return FXPQ_RUNNER_OK;
    case FXPQ_OP_PAD:
        if (inputs.len != 1 || !fx_nhwc(&in0, &p->in_dims) || !fx_nhwc(&out, &p->out_dims)
            || p->out_dims.c != p->in_dims.c
            || (int64_t)p->out_dims.h != (int64_t)p->in_dims.h + o.pad_top + o.pad_bottom
            || (int64_t)p->out_dims.w != (int64_t)p->in_dims.w + o.pad_left + o.pad_right) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input must be [1,H,W,C] and output [1,H+pad_top+pad_bottom,W+pad_left+pad_right,C]");
        }
        fxpq_options_pad_params(&o, &p->p.pad);
        return FXPQ_RUNNER_OK;
    case FXPQ_OP_FULLY_CONNECTED: {
        int32_t k = in0.elements, rows;
        if (in0.rank < 2 || out.rank != 2) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input must have rank >= 2 and output be [1,O]");
        }
        rows = out.dims[1];
        if ((st = fx_weighted(r, m, op, kind, &inputs, &o, rows, k, p)) != FXPQ_RUNNER_OK
            || (st = fx_check_path(r, op, kind, &in0, o.weight_bits, k)) != FXPQ_RUNNER_OK) {
            return st;
        }
        p->size = k;
        p->out_features = rows;
        p->p.fc.activation = fxpq_options_activation(&o);
        p->scratch_bytes = fxpq_fully_connected_get_buffer_size(k);
        cost = fx_mul_sat(k, rows);
        break;
    }
    case FXPQ_OP_CONV_2D:
    case FXPQ_OP_DEPTHWISE_CONV_2D: {
        int32_t rows, k;
        if (!fx_nhwc(&in0, &p->in_dims) || !fx_nhwc(&out, &p->out_dims)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "input and output must be [1,H,W,C]");
        }
        rows = p->out_dims.c;
        if ((int64_t)o.filter_h * o.filter_w * p->in_dims.c > 0x0fffffff) {
            return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "filter too large");
        }
        if (kind == FXPQ_OP_CONV_2D) {
            k = o.filter_h * o.filter_w * p->in_dims.c;
            p->filter_dims.n = rows;
            p->filter_dims.c = p->in_dims.c;
        } else {
            if ((int64_t)p->in_dims.c * o.depth_multiplier != rows) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "output channels differ from C * depth_multiplier");
            }
            k = o.filter_h * o.filter_w;
            p->filter_dims.n = 1;
            p->filter_dims.c = rows;
        }
        p->filter_dims.h = o.filter_h;
        p->filter_dims.w = o.filter_w;
        if ((st = fx_window_cost(r, m, op, kind, &p->in_dims, &p->out_dims, o.filter_h, o.filter_w,
                                 o.stride_h, o.stride_w, o.dilation_h, o.dilation_w,
                                 kind == FXPQ_OP_CONV_2D ? rows : o.depth_multiplier, &cost))
            != FXPQ_RUNNER_OK) {
            return st;
        }
        if ((st = fx_check_axis(r, op, kind, p->in_dims.h, o.filter_h, o.stride_h, o.dilation_h,
                                &o, p->out_dims.h, o.pad_top, o.pad_bottom)) != FXPQ_RUNNER_OK
            || (st = fx_check_axis(r, op, kind, p->in_dims.w, o.filter_w, o.stride_w,
                                   o.dilation_w, &o, p->out_dims.w, o.pad_left, o.pad_right))
                   != FXPQ_RUNNER_OK
            || (st = fx_weighted(r, m, op, kind, &inputs, &o, rows, k, p)) != FXPQ_RUNNER_OK
            || (st = fx_check_path(r, op, kind, &in0, o.weight_bits, k)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (kind == FXPQ_OP_CONV_2D) {
            fxpq_options_conv_params(&o, &p->p.conv);
            p->scratch_bytes = fxpq_conv2d_get_buffer_size(&p->filter_dims);
        } else {
            fxpq_options_dw_conv_params(&o, &p->p.dw);
            p->scratch_bytes = fxpq_depthwise_conv2d_get_buffer_size(&p->filter_dims);
        }
        break;
    }
    default:
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, kind, "op not handled");
    }
    if (p->scratch_bytes < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, kind, "kernel refused the shapes (scratch size)");
    }
    if (work != NULL) {
        *work = cost;
    }
    return FXPQ_RUNNER_OK;
}

/* ------------------------------------------------- int8-builtin files: checked, not run ----- */
/*
 * The runner executes fxp files. An int8-builtin file (stock TFLite ops, format.md section 7)
 * is read with the same rules as the Python reader (fxpq_keras/flatbuffer/builtin.py
 * builtin_node): every shape, option, format and the exporter's int32 limits, so both readers
 * accept and refuse the same files (format.md section 11). A valid one ends in
 * FXPQ_RUNNER_ERR_STOCK_FILE: TFLM runs it, not this runner.
 */
enum {
    FX_B_ADD = 0, FX_B_AVERAGE_POOL_2D = 1, FX_B_CONCATENATION = 2, FX_B_CONV_2D = 3,
    FX_B_DEPTHWISE_CONV_2D = 4, FX_B_FULLY_CONNECTED = 9, FX_B_MAX_POOL_2D = 17,
    FX_B_SOFTMAX = 25, FX_B_PAD = 34, FX_B_LEAKY_RELU = 98, FX_B_QUANTIZE = 114
};
/* BuiltinOptions union codes and the fields read here (schema.fbs) */
enum {
    FX_OPT_CONV = 1, FX_OPT_DW = 2, FX_OPT_POOL = 5, FX_OPT_FC = 8, FX_OPT_SOFTMAX = 9,
    FX_OPT_CONCAT = 10, FX_OPT_ADD = 11, FX_OPT_LEAKY = 75
};

typedef struct {
    fx_tensor t;
    int32_t is_float;
    fxpq_format fmt;
} fx_stock_tensor;

/* Read an activation tensor of a stock file: batch 1, not constant, FLOAT32 or an integer type
 * with one power-of-two scale, zero point 0 (or -128 on INT8: the unsigned 8-bit format of
 * stored + 128), and, when min and max are both given, exactly a format's range; stock: 8 bits. */
static fxpq_runner_status fx_stock_read(fxpq_runner *r, const fx_model *m, int32_t index, int32_t op,
                                        int stock, fx_stock_tensor *s)
{
    fxfb_table tt, quant;
    fxfb_vector scale, zp, vmin, vmax;
    fxpq_runner_status st;
    uint32_t sbits, i;
    int32_t frac, storage, is_signed, bits, offset = 0, has_range, rc_min, rc_max;
    memset(s, 0, sizeof(*s));
    if ((st = fx_read_tensor(r, m, index, op, -1, &s->t)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (s->t.is_const || s->t.rank < 1 || s->t.dims[0] != 1) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation must be a non-constant tensor with batch 1");
    }
    if (s->t.type == FXPQ_TFLITE_FLOAT32) {
        s->is_float = 1;
        if (stock) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation must be int8 (s8, or u8 with zero point -128)");
        }
        return FXPQ_RUNNER_OK;
    }
    if (s->t.type != FXPQ_TFLITE_INT8 && s->t.type != FXPQ_TFLITE_UINT8
        && s->t.type != FXPQ_TFLITE_INT16 && s->t.type != FXPQ_TFLITE_UINT16) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation tensor type is not int8/uint8/int16/uint16/float32");
    }
    (void)fxfb_vector_table(&m->b, &m->tensors, (uint32_t)index, &tt); /* read by fx_read_tensor */
    if (fxfb_table_field(&m->b, &tt, FX_TENSOR_QUANTIZATION, &quant) != FXFB_OK
        || fxfb_vector_field(&m->b, &quant, FX_QUANT_SCALE, 4, &scale) != FXFB_OK || scale.len != 1
        || fxfb_vector_field(&m->b, &quant, FX_QUANT_ZERO_POINT, 8, &zp) != FXFB_OK || zp.len != 1) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation needs one scale and one zero point");
    }
    for (i = 0; i < 8; ++i) {
        uint8_t byte = m->b.buf[zp.pos + i];
        if (byte != (i == 0 ? 0x80u : 0xffu)) {
            offset = -1;
        }
    }
    offset = (offset == 0 && s->t.type == FXPQ_TFLITE_INT8) ? 1 : 0;
    if (!offset) {
        for (i = 0; i < 8; ++i) {
            if (m->b.buf[zp.pos + i] != 0) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation zero point is not 0 (or -128 on int8)");
            }
        }
    }
    sbits = fxfb_load_u32(m->b.buf + scale.pos);
    if ((sbits >> 31) != 0 || (sbits & 0x7fffffu) != 0 || ((sbits >> 23) & 0xffu) == 0
        || ((sbits >> 23) & 0xffu) == 0xffu) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation scale is not a power of two");
    }
    frac = 127 - (int32_t)((sbits >> 23) & 0xffu);
    if (frac < FXPQ_MIN_FRAC || frac > FXPQ_MAX_FRAC) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation frac outside -32..32");
    }
    storage = (s->t.type == FXPQ_TFLITE_INT8 || s->t.type == FXPQ_TFLITE_UINT8) ? 8 : 16;
    is_signed = (s->t.type == FXPQ_TFLITE_INT8 || s->t.type == FXPQ_TFLITE_INT16) && !offset;
    /* min, then max when min is there (the Python reader's order): both present with one value each
     * give the range; anything out of bounds is malformed */
    rc_min = fxfb_vector_field(&m->b, &quant, FX_QUANT_MIN, 4, &vmin);
    rc_max = rc_min == FXFB_OK ? fxfb_vector_field(&m->b, &quant, FX_QUANT_MAX, 4, &vmax) : FXFB_ABSENT;
    if (rc_min < 0 || rc_max < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "activation min/max out of bounds");
    }
    has_range = rc_min == FXFB_OK && vmin.len == 1 && rc_max == FXFB_OK && vmax.len == 1;
    bits = storage;
    if (has_range) {
        int32_t lo, hi;
        if (!fx_float_times_pow2(fxfb_load_u32(m->b.buf + vmin.pos), frac, &lo)
            || !fx_float_times_pow2(fxfb_load_u32(m->b.buf + vmax.pos), frac, &hi)
            || (bits = fx_log2_exact((int64_t)hi + 1)) < 0
            || (int64_t)lo != (is_signed ? -((int64_t)hi + 1) : 0)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation min/max are not a format's range");
        }
        bits += is_signed;
    }
    if (bits < FXPQ_MIN_BITS || bits > FXPQ_MAX_BITS || bits > storage || (storage == 16 && bits <= 8)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation format does not fit its tensor type");
    }
    if (stock && bits != 8) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "activation must be int8 (s8, or u8 with zero point -128)");
    }
    s->fmt.bits = bits;
    s->fmt.frac = frac;
    s->fmt.is_signed = is_signed;
    return FXPQ_RUNNER_OK;
}

static int fx_same_format(const fxpq_format *a, const fxpq_format *b)
{
    return a->bits == b->bits && a->frac == b->frac && a->is_signed == b->is_signed;
}

/* A constant input of a stock op (weights, bias, paddings, shape) of `type`, rank `rank`. */
static fxpq_runner_status fx_stock_constant(fxpq_runner *r, const fx_model *m, int32_t index, int32_t op,
                                            int32_t type, int32_t rank, fx_tensor *t)
{
    fxpq_runner_status st;
    uint32_t size = type == FXPQ_TFLITE_INT32 ? 4u : 1u;
    if ((st = fx_read_tensor(r, m, index, op, -1, t)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (t->type != type || t->rank != rank || (uint64_t)t->data_len != (uint64_t)t->elements * size) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "constant input has the wrong type, rank or size");
    }
    return FXPQ_RUNNER_OK;
}

static int32_t fx_i32_at(const fx_tensor *t, int64_t i)
{
    return (int32_t)fxfb_load_u32(t->data + 4 * i);
}

/* A windowed stock op's shapes (builtin.py _window). */
static fxpq_runner_status fx_stock_window(fxpq_runner *r, const fx_model *m, int32_t op,
                                          const fx_stock_tensor *x, const fx_stock_tensor *out,
                                          int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
                                          int64_t dw, int32_t padding, int64_t per_patch, int64_t *work)
{
    int32_t oh, ow, before;
    fxpq_dims in_d, out_d;
    fxpq_padding pad = padding == 0 ? FXPQ_PADDING_SAME : FXPQ_PADDING_VALID;
    if (!fx_nhwc(&x->t, &in_d) || !fx_nhwc(&out->t, &out_d)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "input and output must be [1, H, W, C]");
    }
    if (kh < 1 || kh > 65535 || kw < 1 || kw > 65535 || sh < 1 || sh > 65535 || sw < 1 || sw > 65535
        || dh < 1 || dh > 65535 || dw < 1 || dw > 65535) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, -1, "stride, dilation or filter outside 1..65535");
    }
    if (fxpq_conv_output_size(in_d.h, (int32_t)kh, (int32_t)sh, (int32_t)dh, pad, &oh, &before) != FXPQ_OK
        || fxpq_conv_output_size(in_d.w, (int32_t)kw, (int32_t)sw, (int32_t)dw, pad, &ow, &before) != FXPQ_OK) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "window does not fit the input with 'valid' padding");
    }
    if (oh != out_d.h || ow != out_d.w) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "output size differs from the padding rule's");
    }
    return fx_window_cost(r, m, op, -1, &in_d, &out_d, (int32_t)kh, (int32_t)kw, (int32_t)sh,
                          (int32_t)sw, (int32_t)dh, (int32_t)dw, per_patch, work);
}

/* Weights, scales and bias of a stock weighted op, and the exporter's int32 bound
 * (builtin.py _check_weighted): per channel, (|w| sum * 128 or 255 + |bias|) << left shift
 * stays in int32 and the left shift out_frac - frac_acc + 1 is at most 30. */
static fxpq_runner_status fx_stock_weights(fxpq_runner *r, const fx_model *m, int32_t op, int32_t code,
                                           const fxfb_vector *inputs, const fx_stock_tensor *x,
                                           const fx_stock_tensor *out, const fx_tensor *w)
{
    fxfb_table tt, quant;
    fxfb_vector scales;
    fx_tensor bias;
    fxpq_runner_status st;
    int32_t o = out->t.dims[out->t.rank - 1], bias_index = fxfb_vector_i32(&m->b, inputs, 2), c;
    int64_t i, per;
    memset(&bias, 0, sizeof(bias));
    (void)fxfb_vector_table(&m->b, &m->tensors, (uint32_t)fxfb_vector_i32(&m->b, inputs, 1), &tt);
    if (fxfb_table_field(&m->b, &tt, FX_TENSOR_QUANTIZATION, &quant) != FXFB_OK
        || fxfb_vector_field(&m->b, &quant, FX_QUANT_SCALE, 4, &scales) != FXFB_OK
        || (scales.len != 1 && scales.len != (uint32_t)o)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "weights need 1 or O power-of-two scales");
    }
    for (i = 0; i < (int64_t)scales.len; ++i) {
        uint32_t sb = fxfb_load_u32(m->b.buf + scales.pos + 4u * (uint32_t)i);
        int32_t f = 127 - (int32_t)((sb >> 23) & 0xffu);
        if ((sb >> 31) != 0 || (sb & 0x7fffffu) != 0 || ((sb >> 23) & 0xffu) == 0 || f < -32 || f > 32) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "weight scale is not 2^-frac with frac in -32..32");
        }
    }
    if (bias_index >= 0) {
        if ((st = fx_stock_constant(r, m, bias_index, op, FXPQ_TFLITE_INT32, 1, &bias)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (bias.dims[0] != o) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "bias must be int32[O]");
        }
    } else if (bias_index != -1) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "bias tensor index is neither a tensor nor -1");
    }
    per = w->elements / o; /* weights per output channel */
    for (c = 0; c < o; ++c) {
        int64_t bound = 0, left;
        uint32_t sb = fxfb_load_u32(m->b.buf + scales.pos + 4u * (scales.len == 1 ? 0u : (uint32_t)c));
        int32_t wfrac = 127 - (int32_t)((sb >> 23) & 0xffu);
        for (i = 0; i < per; ++i) {
            int64_t at = code == FX_B_DEPTHWISE_CONV_2D ? i * o + c : (int64_t)c * per + i;
            int32_t v = (int8_t)w->data[at];
            bound += v < 0 ? -v : v;
        }
        bound *= x->fmt.is_signed ? 128 : 255;
        if (bias_index >= 0) {
            int64_t b = fx_i32_at(&bias, c);
            bound += b < 0 ? -b : b;
        }
        left = (int64_t)out->fmt.frac - (x->fmt.frac + wfrac) + 1;
        if (left < 0) {
            left = 0;
        }
        if (left > 30 || bound > (INT64_C(2147483647) >> left)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "an output channel's accumulator, shifted to the output frac, could overflow int32 in TFLM");
        }
    }
    return FXPQ_RUNNER_OK;
}

/* One stock operator (builtin.py builtin_node); *work gets its MACs or window taps. */
static fxpq_runner_status fx_stock_op(fxpq_runner *r, const fx_model *m, int32_t op, int32_t code,
                                      const fxfb_table *ot, const fxfb_vector *inputs,
                                      const fxfb_vector *outputs, int32_t *in_t, int32_t *n_in,
                                      int32_t *out_t, int64_t *work)
{
    fx_stock_tensor x, y, out;
    fx_tensor w;
    fxfb_table opts;
    fxpq_runner_status st;
    uint64_t opt_type, v;
    int32_t want_type = -1, act = 0, padding = 0, has_opts, n = (int32_t)inputs->len;
    int32_t min_in = 1, max_in = 1;
    *work = 0;
    *n_in = 1;
    switch (code) {
    case FX_B_SOFTMAX: want_type = FX_OPT_SOFTMAX; break;
    case FX_B_CONCATENATION: want_type = FX_OPT_CONCAT; min_in = max_in = 2; break;
    case FX_B_LEAKY_RELU: want_type = FX_OPT_LEAKY; break;
    case FX_B_ADD: want_type = FX_OPT_ADD; min_in = max_in = 2; break;
    case FX_B_MAX_POOL_2D:
    case FX_B_AVERAGE_POOL_2D: want_type = FX_OPT_POOL; break;
    case FX_B_CONV_2D: want_type = FX_OPT_CONV; min_in = max_in = 3; break;
    case FX_B_DEPTHWISE_CONV_2D: want_type = FX_OPT_DW; min_in = max_in = 3; break;
    case FX_B_FULLY_CONNECTED: want_type = FX_OPT_FC; min_in = max_in = 3; break;
    case FX_BUILTIN_RESHAPE: max_in = 2; break;
    case FX_B_PAD: min_in = max_in = 2; break;
    case FX_B_QUANTIZE: break;
    default:
        fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, op, -1, "op ");
        fx_msg_int(r, code);
        fx_msg_str(r, " is not part of the int8-builtin format (format.md section 7)");
        return FXPQ_RUNNER_ERR_UNSUPPORTED;
    }
    if (outputs->len != 1 || n < min_in || n > max_in) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "wrong number of inputs or outputs for its op");
    }
    if (fxfb_scalar(&m->b, ot, FX_OPERATOR_BUILTIN_OPTIONS_TYPE, 1, 0, &opt_type) != FXFB_OK
        || (has_opts = fxfb_table_field(&m->b, ot, FX_OPERATOR_BUILTIN_OPTIONS, &opts)) < 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
    }
    has_opts = has_opts == FXFB_OK && opt_type != 0;
    if (want_type >= 0 && (!has_opts || (int32_t)opt_type != want_type)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, -1, "missing or wrong builtin options for its op");
    }
    if (has_opts) { /* the fused activation and padding of whatever options table is there */
        int32_t act_field = -1, pad_field = -1;
        switch ((int32_t)opt_type) {
        case FX_OPT_CONV: act_field = 3; pad_field = 0; break;
        case FX_OPT_DW: act_field = 4; pad_field = 0; break;
        case FX_OPT_POOL: act_field = 5; pad_field = 0; break;
        case FX_OPT_FC: case FX_OPT_ADD: act_field = 0; break;
        case FX_OPT_CONCAT: act_field = 1; break;
        default: break;
        }
        if (act_field >= 0) {
            if (fxfb_scalar(&m->b, &opts, (uint32_t)act_field, 1, 0, &v) != FXFB_OK) {
                return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
            }
            act = (int8_t)v;
        }
        if (pad_field >= 0) {
            if (fxfb_scalar(&m->b, &opts, (uint32_t)pad_field, 1, 0, &v) != FXFB_OK) {
                return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
            }
            padding = (int8_t)v;
        }
        if (act != 0 && act != 1 && act != 3) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, -1, "fused activation code is not 0, 1 or 3");
        }
        if (padding != 0 && padding != 1) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, -1, "padding code is not 0 (same) or 1 (valid)");
        }
    }
    in_t[0] = fxfb_vector_i32(&m->b, inputs, 0);
    *out_t = fxfb_vector_i32(&m->b, outputs, 0);
    if (code == FX_B_SOFTMAX) {
        uint64_t beta;
        if ((st = fx_stock_read(r, m, *out_t, op, 0, &out)) != FXPQ_RUNNER_OK
            || (st = fx_stock_read(r, m, in_t[0], op, 1, &x)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (out.is_float || out.fmt.bits != 8 || out.fmt.is_signed || out.fmt.frac != 8) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "SOFTMAX output must be int8 with scale 1/256 and zero point -128");
        }
        if (fxfb_scalar(&m->b, &opts, 0, 4, 0, &beta) != FXFB_OK) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
        }
        if (!fx_same_shape(&x.t, &out.t) || beta != 0x3f800000u || x.fmt.frac < -3 || x.fmt.frac > 25) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, -1, "SOFTMAX needs the output's shape, beta 1.0 and an input frac in -3..25");
        }
        return FXPQ_RUNNER_OK;
    }
    if ((st = fx_stock_read(r, m, *out_t, op, 1, &out)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (code == FX_B_QUANTIZE) {
        if ((st = fx_stock_read(r, m, in_t[0], op, 0, &x)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (!fx_same_shape(&x.t, &out.t)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "input and output shapes differ");
        }
        if (!x.is_float && (x.fmt.bits != 8 || out.fmt.frac - x.fmt.frac > 23)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "QUANTIZE needs an int8 or float input and raises the frac by at most 23");
        }
        return FXPQ_RUNNER_OK;
    }
    if ((st = fx_stock_read(r, m, in_t[0], op, 1, &x)) != FXPQ_RUNNER_OK) {
        return st;
    }
    switch (code) {
    case FX_BUILTIN_RESHAPE:
        if (!fx_same_format(&x.fmt, &out.fmt) || x.t.elements != out.t.elements) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "RESHAPE changes the format or the size");
        }
        if (n == 2) {
            if ((st = fx_stock_constant(r, m, fxfb_vector_i32(&m->b, inputs, 1), op, FXPQ_TFLITE_INT32, 1, &w))
                != FXPQ_RUNNER_OK) {
                return st;
            }
            if (w.dims[0] != out.t.rank) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "the shape input must be a constant INT32 [output rank]");
            }
        }
        return FXPQ_RUNNER_OK;
    case FX_B_CONCATENATION: {
        int32_t i, rank = out.t.rank, ok;
        uint64_t axis;
        in_t[1] = fxfb_vector_i32(&m->b, inputs, 1);
        *n_in = 2;
        if ((st = fx_stock_read(r, m, in_t[1], op, 1, &y)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (fxfb_scalar(&m->b, &opts, 0, 4, 0, &axis) != FXFB_OK) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
        }
        ok = ((int32_t)axis == -1 || (int32_t)axis == rank - 1) && act == 0 && x.t.rank == rank && y.t.rank == rank
             && rank >= 2 && (int64_t)x.t.dims[rank - 1] + y.t.dims[rank - 1] == out.t.dims[rank - 1];
        for (i = 0; ok && i < rank - 1; ++i) {
            ok = x.t.dims[i] == out.t.dims[i] && y.t.dims[i] == out.t.dims[i];
        }
        if (!ok || !fx_same_format(&x.fmt, &out.fmt) || !fx_same_format(&y.fmt, &out.fmt)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "CONCATENATION must join two inputs of the output's format on the last axis");
        }
        return FXPQ_RUNNER_OK;
    }
    case FX_B_LEAKY_RELU: {
        uint64_t alpha;
        int32_t e;
        if (fxfb_scalar(&m->b, &opts, 0, 4, 0, &alpha) != FXFB_OK) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
        }
        e = (int32_t)((alpha >> 23) & 0xffu);
        if (!fx_same_shape(&x.t, &out.t) || (alpha >> 31) != 0 || (alpha & 0x7fffffu) != 0 || e == 0
            || 127 - e < 1 || 127 - e > 31 || out.fmt.frac - x.fmt.frac > 22) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_OPTIONS, op, -1, "LEAKY_RELU needs the output's shape, alpha 2^-k (k 1..31) and a frac raise of at most 22");
        }
        return FXPQ_RUNNER_OK;
    }
    case FX_B_PAD: {
        int64_t t, b, l, rr;
        if ((st = fx_stock_constant(r, m, fxfb_vector_i32(&m->b, inputs, 1), op, FXPQ_TFLITE_INT32, 2, &w))
            != FXPQ_RUNNER_OK) {
            return st;
        }
        if (w.dims[0] != 4 || w.dims[1] != 2 || fx_i32_at(&w, 0) != 0 || fx_i32_at(&w, 1) != 0
            || fx_i32_at(&w, 6) != 0 || fx_i32_at(&w, 7) != 0) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "paddings must be int32 [[0,0],[t,b],[l,r],[0,0]]");
        }
        t = fx_i32_at(&w, 2);
        b = fx_i32_at(&w, 3);
        l = fx_i32_at(&w, 4);
        rr = fx_i32_at(&w, 5);
        if (t < 0 || b < 0 || l < 0 || rr < 0 || x.t.rank != 4 || out.t.rank != 4
            || out.t.dims[1] != x.t.dims[1] + t + b || out.t.dims[2] != x.t.dims[2] + l + rr
            || out.t.dims[3] != x.t.dims[3] || !fx_same_format(&x.fmt, &out.fmt)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "PAD output must be the input padded, in the input's format");
        }
        return FXPQ_RUNNER_OK;
    }
    case FX_B_ADD: {
        int32_t fa, fb, fo = out.fmt.frac;
        in_t[1] = fxfb_vector_i32(&m->b, inputs, 1);
        *n_in = 2;
        if ((st = fx_stock_read(r, m, in_t[1], op, 1, &y)) != FXPQ_RUNNER_OK) {
            return st;
        }
        fa = x.fmt.frac;
        fb = y.fmt.frac;
        if (!fx_same_shape(&x.t, &out.t) || !fx_same_shape(&y.t, &out.t) || fo - (fa < fb ? fa : fb) > 18
            || fa - fb > 30 || fb - fa > 30) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "ADD needs inputs of the output's shape, out_frac - min(in fracs) <= 18, |frac_a - frac_b| <= 30");
        }
        return FXPQ_RUNNER_OK;
    }
    case FX_B_MAX_POOL_2D:
    case FX_B_AVERAGE_POOL_2D: {
        uint64_t sw, sh, fw, fh;
        if (fxfb_scalar(&m->b, &opts, 1, 4, 0, &sw) != FXFB_OK || fxfb_scalar(&m->b, &opts, 2, 4, 0, &sh) != FXFB_OK
            || fxfb_scalar(&m->b, &opts, 3, 4, 0, &fw) != FXFB_OK || fxfb_scalar(&m->b, &opts, 4, 4, 0, &fh) != FXFB_OK) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
        }
        if ((st = fx_stock_window(r, m, op, &x, &out, (int32_t)fh, (int32_t)fw, (int32_t)sh, (int32_t)sw, 1, 1,
                                  padding, 1, work)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (out.t.dims[3] != x.t.dims[3] || !fx_same_format(&x.fmt, &out.fmt)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "a stock pool keeps the channels and the format");
        }
        return FXPQ_RUNNER_OK;
    }
    default: /* CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED */
        break;
    }
    if ((st = fx_stock_constant(r, m, fxfb_vector_i32(&m->b, inputs, 1), op, FXPQ_TFLITE_INT8,
                                code == FX_B_FULLY_CONNECTED ? 2 : 4, &w)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (code == FX_B_FULLY_CONNECTED) {
        if (w.dims[1] != x.t.elements || out.t.rank != 2 || out.t.dims[1] != w.dims[0]) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "weights [O, K] and output [1, O] do not fit the input");
        }
        *work = fx_mul_sat(w.dims[0], w.dims[1]);
    } else {
        uint64_t sw, sh, dw, dh, mult = 0;
        int32_t dwc = code == FX_B_DEPTHWISE_CONV_2D;
        if (fxfb_scalar(&m->b, &opts, 1, 4, 0, &sw) != FXFB_OK || fxfb_scalar(&m->b, &opts, 2, 4, 0, &sh) != FXFB_OK
            || fxfb_scalar(&m->b, &opts, dwc ? 5 : 4, 4, 1, &dw) != FXFB_OK
            || fxfb_scalar(&m->b, &opts, dwc ? 6 : 5, 4, 1, &dh) != FXFB_OK
            || (dwc && fxfb_scalar(&m->b, &opts, 3, 4, 0, &mult) != FXFB_OK)) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, op, -1, "operator options out of bounds");
        }
        if (x.t.rank != 4) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "input and output must be [1, H, W, C]");
        }
        if ((st = fx_stock_window(r, m, op, &x, &out, w.dims[1], w.dims[2], (int32_t)sh, (int32_t)sw,
                                  (int32_t)dh, (int32_t)dw, padding,
                                  dwc ? (int32_t)mult : w.dims[0], work)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (dwc ? (w.dims[0] != 1 || (int32_t)mult < 1 || (int32_t)mult > 65535
                   || (int64_t)w.dims[3] != (int64_t)x.t.dims[3] * (int32_t)mult || w.dims[3] != out.t.dims[3])
                : (w.dims[3] != x.t.dims[3] || out.t.dims[3] != w.dims[0])) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, op, -1, "weights do not fit the input and the output");
        }
    }
    return fx_stock_weights(r, m, op, code, inputs, &x, &out, &w);
}

/* An int8-builtin file, whole: every op, the graph order, the outputs, the work limit. */
static fxpq_runner_status fx_check_stock_model(fxpq_runner *r, fx_model *m)
{
    uint8_t written[FXPQ_RUNNER_MAX_TENSORS / 8];
    int32_t nt = (int32_t)m->tensors.len, i, j, input = fxfb_vector_i32(&m->b, &m->inputs, 0);
    fx_stock_tensor s;
    fxpq_runner_status st;
    memset(written, 0, sizeof(written));
    if ((st = fx_stock_read(r, m, input, -1, 0, &s)) != FXPQ_RUNNER_OK) {
        return st;
    }
    written[input / 8] |= (uint8_t)(1u << (input % 8));
    for (i = 0; i < (int32_t)m->operators.len; ++i) {
        fxfb_table ot, code;
        fxfb_vector inputs, outputs;
        uint64_t opcode_index, dep_code, builtin;
        int32_t code_value, in_t[2] = {0, 0}, n_in = 0, out_t = 0;
        const char *name;
        uint32_t name_len;
        int64_t work;
        if (fxfb_vector_table(&m->b, &m->operators, (uint32_t)i, &ot) != FXFB_OK
            || fxfb_scalar(&m->b, &ot, FX_OPERATOR_OPCODE_INDEX, 4, 0, &opcode_index) != FXFB_OK
            || fxfb_vector_field(&m->b, &ot, FX_OPERATOR_INPUTS, 4, &inputs) < 0
            || fxfb_vector_field(&m->b, &ot, FX_OPERATOR_OUTPUTS, 4, &outputs) < 0
            || opcode_index >= m->opcodes.len
            || fxfb_vector_table(&m->b, &m->opcodes, (uint32_t)opcode_index, &code) != FXFB_OK
            || fxfb_scalar(&m->b, &code, FX_OPCODE_DEPRECATED_BUILTIN, 1, 0, &dep_code) != FXFB_OK
            || fxfb_scalar(&m->b, &code, FX_OPCODE_BUILTIN, 4, 0, &builtin) != FXFB_OK
            || fxfb_string_field(&m->b, &code, FX_OPCODE_CUSTOM_CODE, &name, &name_len) < 0) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, i, -1, "operator table out of bounds");
        }
        code_value = (int32_t)(int8_t)dep_code;
        if ((int32_t)builtin > code_value) {
            code_value = (int32_t)builtin;
        }
        if ((st = fx_stock_op(r, m, i, code_value, &ot, &inputs, &outputs, in_t, &n_in, &out_t, &work))
            != FXPQ_RUNNER_OK) {
            return st;
        }
        for (j = 0; j < n_in; ++j) {
            if ((written[in_t[j] / 8] & (1u << (in_t[j] % 8))) == 0) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, i, -1, "reads a tensor no earlier op wrote (operators must be in execution order)");
            }
        }
        if ((written[out_t / 8] & (1u << (out_t % 8))) != 0) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, i, -1, "writes a tensor that is already written (the input or another op's output)");
        }
        written[out_t / 8] |= (uint8_t)(1u << (out_t % 8));
        if ((st = fx_add_cost(r, m, i, -1, code_value == FX_B_CONV_2D || code_value == FX_B_DEPTHWISE_CONV_2D
                                               || code_value == FX_B_FULLY_CONNECTED,
                              code_value == FX_B_MAX_POOL_2D || code_value == FX_B_AVERAGE_POOL_2D,
                              code_value == FX_BUILTIN_RESHAPE, work, out_t)) != FXPQ_RUNNER_OK) {
            return st;
        }
    }
    for (i = 0; i < (int32_t)m->outputs.len; ++i) {
        int32_t o = fxfb_vector_i32(&m->b, &m->outputs, (uint32_t)i);
        if (o < 0 || o >= nt) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "model output index out of range");
        }
        if ((written[o / 8] & (1u << (o % 8))) == 0 || o == input) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, -1, 0, "a model output is not written by any op");
        }
    }
    return fx_fail(r, FXPQ_RUNNER_ERR_STOCK_FILE, -1, 0, "a valid int8-builtin file (stock ops): run it in TFLM; this runner executes fxp files");
}

/* Whether the model uses a stock op that fxp files never hold (RESHAPE and the hybrid files'
 * stock ops of format.md section 8 aside): then it is read as int8-builtin. */
static int fx_has_stock_ops(const fx_model *m)
{
    uint32_t i;
    int32_t j;
    for (i = 0; i < m->opcodes.len; ++i) {
        fxfb_table code;
        uint64_t dep_code, builtin;
        int32_t v;
        if (fxfb_vector_table(&m->b, &m->opcodes, i, &code) != FXFB_OK
            || fxfb_scalar(&m->b, &code, FX_OPCODE_DEPRECATED_BUILTIN, 1, 0, &dep_code) != FXFB_OK
            || fxfb_scalar(&m->b, &code, FX_OPCODE_BUILTIN, 4, 0, &builtin) != FXFB_OK) {
            return 0; /* the fxp path reports it */
        }
        v = (int32_t)(int8_t)dep_code;
        if ((int32_t)builtin > v) {
            v = (int32_t)builtin;
        }
        if (v == FX_BUILTIN_CUSTOM) {
            continue;
        }
        for (j = 0; j < FX_NUM_BUILTINS && fx_builtins[j].code != v; ++j) {
        }
        if (j == FX_NUM_BUILTINS) {
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------- planner --------- */

typedef struct {
    int32_t first;   /* live from after op `first` ran (-1: set before invoke) ... */
    int32_t last;    /* ... until op `last` ran (num_ops: read after invoke); FX_NOT_LIVE */
    uint32_t bytes;
    uint32_t offset;
    int32_t alias;   /* tensor whose bytes this one uses (RESHAPE), itself otherwise */
    int32_t next;    /* placed records in increasing offset order */
} fx_rec;

#define FX_ALIGN_UP(v) (((v) + (FXPQ_RUNNER_ALIGNMENT - 1u)) & ~(size_t)(FXPQ_RUNNER_ALIGNMENT - 1u))

static int32_t fx_root(const fx_rec *recs, int32_t t)
{
    int32_t guard = 0;
    while (recs[t].alias != t && guard++ < FXPQ_RUNNER_MAX_TENSORS) {
        t = recs[t].alias;
    }
    return t;
}

static uint32_t fx_type_size(int32_t type)
{
    switch (type) {
    case FXPQ_TFLITE_FLOAT32: return 4;
    case FXPQ_TFLITE_INT16:
    case FXPQ_TFLITE_UINT16: return 2;
    default: return 1;
    }
}

static void fx_sift(const fx_rec *recs, int32_t *order, int32_t start, int32_t n)
{
    /* heap ordered so that the root is the record placed last: smallest bytes, then latest. */
    int32_t root = start;
    for (;;) {
        int32_t child = 2 * root + 1, pick = root;
        if (child < n && (recs[order[child]].bytes < recs[order[pick]].bytes
                          || (recs[order[child]].bytes == recs[order[pick]].bytes
                              && order[child] > order[pick]))) {
            pick = child;
        }
        if (child + 1 < n && (recs[order[child + 1]].bytes < recs[order[pick]].bytes
                              || (recs[order[child + 1]].bytes == recs[order[pick]].bytes
                                  && order[child + 1] > order[pick]))) {
            pick = child + 1;
        }
        if (pick == root) {
            return;
        }
        {
            int32_t tmp = order[root];
            order[root] = order[pick];
            order[pick] = tmp;
        }
        root = pick;
    }
}

/* Greedy first fit by decreasing size; returns the peak (end of the highest placed record). */
static size_t fx_place(fx_rec *recs, int32_t *order, int32_t n)
{
    int32_t count = 0, i, head = -1;
    size_t peak = 0;
    for (i = 0; i < n; ++i) {
        if (recs[i].first != FX_NOT_LIVE && recs[i].alias == i && recs[i].bytes > 0) {
            order[count++] = i;
        }
    }
    /* heapsort: decreasing bytes, ties by increasing index */
    for (i = count / 2 - 1; i >= 0; --i) {
        fx_sift(recs, order, i, count);
    }
    for (i = count - 1; i > 0; --i) {
        int32_t tmp = order[0];
        order[0] = order[i];
        order[i] = tmp;
        fx_sift(recs, order, 0, i);
    }
    for (i = 0; i < count; ++i) {
        fx_rec *t = &recs[order[i]];
        size_t candidate = 0;
        int32_t prev = -1, cur = head;
        size_t size = FX_ALIGN_UP((size_t)t->bytes);
        while (cur >= 0) {
            const fx_rec *o = &recs[cur];
            if (o->first <= t->last && t->first <= o->last) {
                if ((size_t)o->offset >= candidate + size) {
                    break;
                }
                if ((size_t)o->offset + FX_ALIGN_UP((size_t)o->bytes) > candidate) {
                    candidate = (size_t)o->offset + FX_ALIGN_UP((size_t)o->bytes);
                }
            }
            prev = cur;
            cur = o->next;
        }
        t->offset = (uint32_t)candidate;
        /* insert in offset order */
        prev = -1;
        cur = head;
        while (cur >= 0 && recs[cur].offset <= t->offset) {
            prev = cur;
            cur = recs[cur].next;
        }
        t->next = cur;
        if (prev < 0) {
            head = order[i];
        } else {
            recs[prev].next = order[i];
        }
        if (candidate + size > peak) {
            peak = candidate + size;
        }
    }
    return peak;
}

/* Lifetimes of every tensor and op scratch (records [0, nt) tensors, [nt, nt + nops) scratch).
 * Also checks the graph: each activation produced once, before it is read. */
static fxpq_runner_status fx_lifetimes(fxpq_runner *r, const fx_model *m, fx_rec *recs)
{
    int32_t nt = (int32_t)m->tensors.len, nops = (int32_t)m->operators.len, i, j;
    int32_t input = fxfb_vector_i32(&m->b, &m->inputs, 0);
    fx_tensor t;
    fx_op p;
    fx_stock_params stock; /* a scratch slot: the lifetimes need only the tensors */
    fxpq_runner_status st;
    for (i = 0; i < nt + nops; ++i) {
        recs[i].first = FX_NOT_LIVE;
        recs[i].last = FX_NOT_LIVE;
        recs[i].bytes = 0;
        recs[i].offset = 0;
        recs[i].alias = i;
        recs[i].next = -1;
    }
    if ((st = fx_read_tensor(r, m, input, -1, 0, &t)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (t.is_const || t.rank < 1 || t.dims[0] != 1
        || (t.type != FXPQ_TFLITE_FLOAT32 && !t.has_format)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, -1, 0, "model input must be FLOAT32 or an integer activation with batch 1");
    }
    recs[input].first = -1;
    recs[input].last = -1;
    recs[input].bytes = (uint32_t)t.elements * fx_type_size(t.type);
    for (i = 0; i < nops; ++i) {
        if ((st = fx_prepare_op(r, m, i, &p, NULL, &stock)) != FXPQ_RUNNER_OK) {
            return st;
        }
        for (j = 0; j < p.num_inputs; ++j) {
            int32_t x = p.in_t[j];
            if (recs[x].first == FX_NOT_LIVE) {
                return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, i, p.kind, "reads a tensor no earlier op wrote (operators must be in execution order)");
            }
            recs[x].last = i;
        }
        if (recs[p.out_t].first != FX_NOT_LIVE) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, i, p.kind, "writes a tensor that is already written (the input or another op's output)");
        }
        if ((st = fx_read_tensor(r, m, p.out_t, i, p.kind, &t)) != FXPQ_RUNNER_OK) {
            return st;
        }
        recs[p.out_t].first = i;
        recs[p.out_t].last = i;
        recs[p.out_t].bytes = (uint32_t)t.elements * fx_type_size(t.type);
        if (p.kind == FX_KIND_RESHAPE) {
            recs[p.out_t].alias = fx_root(recs, p.in_t[0]);
        }
        recs[nt + i].first = i;
        recs[nt + i].last = i;
        recs[nt + i].bytes = (uint32_t)p.scratch_bytes;
        if (p.scratch_bytes > 0 && (size_t)p.scratch_bytes > r->scratch_bytes) {
            r->scratch_bytes = (size_t)p.scratch_bytes;
        }
    }
    for (i = 0; i < (int32_t)m->outputs.len; ++i) {
        int32_t o = fxfb_vector_i32(&m->b, &m->outputs, (uint32_t)i);
        if (o < 0 || o >= nt) {
            return fx_fail(r, FXPQ_RUNNER_ERR_MALFORMED, -1, 0, "model output index out of range");
        }
        if (recs[o].first == FX_NOT_LIVE || o == input) {
            return fx_fail(r, FXPQ_RUNNER_ERR_BAD_TENSOR, -1, 0, "a model output is not written by any op");
        }
        recs[o].last = nops;
    }
    /* An alias keeps its root's bytes alive for its own lifetime. */
    for (i = 0; i < nt; ++i) {
        if (recs[i].alias != i && recs[i].first != FX_NOT_LIVE) {
            int32_t root = fx_root(recs, i);
            if (recs[i].last > recs[root].last) {
                recs[root].last = recs[i].last;
            }
        }
    }
    return FXPQ_RUNNER_OK;
}

static void fx_fill_info(const fx_model *m, int32_t index, uint8_t *base, const fx_rec *recs,
                         fxpq_tensor_info *info)
{
    fx_tensor t;
    fxpq_runner dummy;
    int32_t i;
    memset(info, 0, sizeof(*info));
    dummy.message[0] = '\0';
    if (fx_read_tensor(&dummy, m, index, -1, 0, &t) != FXPQ_RUNNER_OK) {
        return; /* read successfully before: cannot happen */
    }
    info->type = t.type;
    info->rank = t.rank;
    for (i = 0; i < t.rank; ++i) {
        info->dims[i] = t.dims[i];
    }
    info->elements = t.elements;
    info->bytes = (int32_t)((uint32_t)t.elements * fx_type_size(t.type));
    if (t.has_format) {
        info->format = t.format;
    }
    info->data = base == NULL ? NULL : base + recs[fx_root(recs, index)].offset;
}

size_t fxpq_runner_struct_size(void)
{
    return sizeof(fxpq_runner);
}

fxpq_runner_status fxpq_runner_init(fxpq_runner *r, const uint8_t *model, size_t model_size,
                                    void *arena, size_t arena_size)
{
    return fxpq_runner_init_limited(r, model, model_size, arena, arena_size, NULL);
}

fxpq_runner_status fxpq_runner_init_limited(fxpq_runner *r, const uint8_t *model,
                                            size_t model_size, void *arena, size_t arena_size,
                                            const fxpq_runner_limits *limits)
{
    fx_model m;
    fxpq_runner_status st;
    uintptr_t start, end, base;
    size_t ws_bytes, persistent, slack, needed;
    int32_t nt, nops, i, k, nstock = 0, elu_op = -1;
    fx_stock_params stock, *stocks;
    fx_rec *recs;
    int32_t *order;
    fx_op *ops;
    fx_op p;

    if (r == NULL) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    memset(r, 0, sizeof(*r));
    r->error_op = -1;
    if (model == NULL || (arena == NULL && arena_size != 0)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_NULL_POINTER, -1, 0, "model or arena is NULL");
    }
    if (((uintptr_t)model & 3u) != 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_MISALIGNED, -1, 0, "model bytes must be 4-byte aligned (16 recommended)");
    }
    if (limits != NULL && (limits->max_elements < 1 || limits->max_window < 1 || limits->max_work < 1
                           || limits->max_taps < 1)) {
        return fx_fail(r, FXPQ_RUNNER_ERR_BAD_ARGUMENT, -1, 0, "limits must be positive");
    }
    m.limits.max_elements = limits != NULL ? limits->max_elements : FXPQ_RUNNER_DEFAULT_MAX_ELEMENTS;
    m.limits.max_window = limits != NULL ? limits->max_window : FXPQ_RUNNER_DEFAULT_MAX_WINDOW;
    m.limits.max_work = limits != NULL ? limits->max_work : FXPQ_RUNNER_DEFAULT_MAX_WORK;
    m.limits.max_taps = limits != NULL ? limits->max_taps : FXPQ_RUNNER_DEFAULT_MAX_TAPS;
    m.work = 0;
    m.taps = 0;
    if ((st = fx_open(r, model, model_size, &m)) != FXPQ_RUNNER_OK) {
        return st;
    }
    if (fx_has_stock_ops(&m)) {
        return fx_check_stock_model(r, &m);
    }
    nt = (int32_t)m.tensors.len;
    nops = (int32_t)m.operators.len;
    r->num_ops = nops;
    r->num_tensors = nt;
    r->num_outputs = (int32_t)m.outputs.len;
    /* Phase 1: validate every op (nothing stored) and add up the work of one inference. */
    for (i = 0; i < nops; ++i) {
        int64_t work = 0;
        if ((st = fx_prepare_op(r, &m, i, &p, &work, &stock)) != FXPQ_RUNNER_OK) {
            return st;
        }
        if (p.kind == FX_KIND_ELU && elu_op < 0) {
            elu_op = i;
        }
        nstock += p.kind > FX_KIND_RESHAPE;
        if ((st = fx_add_cost(r, &m, i, p.kind, p.kind == FXPQ_OP_CONV_2D || p.kind == FXPQ_OP_DEPTHWISE_CONV_2D
                                                 || p.kind == FXPQ_OP_FULLY_CONNECTED,
                              p.kind == FXPQ_OP_MAX_POOL_2D || p.kind == FXPQ_OP_AVERAGE_POOL_2D
                                  || p.kind == FXPQ_OP_GLOBAL_AVERAGE_POOL_2D,
                              p.kind == FX_KIND_RESHAPE, work, p.out_t)) != FXPQ_RUNNER_OK) {
            return st;
        }
    }
    if (elu_op >= 0) {
        return fx_fail(r, FXPQ_RUNNER_ERR_STOCK_FILE, elu_op, FX_KIND_ELU, "a valid file, but ELU runs in the reference interpreter and in TFLM (engines reference, tflm-*), not in this runner");
    }
    /* Phase 2: plan in a workspace at the tail of the arena. */
    persistent = FX_ALIGN_UP((size_t)nops * sizeof(fx_op)) + FX_ALIGN_UP((size_t)nstock * sizeof(fx_stock_params));
    ws_bytes = FX_ALIGN_UP((size_t)(nt + nops) * sizeof(fx_rec))
               + FX_ALIGN_UP((size_t)(nt + nops) * sizeof(int32_t));
    slack = FXPQ_RUNNER_ALIGNMENT - 1u;
    r->persistent_bytes = persistent;
    start = (uintptr_t)arena;
    base = (start + slack) & ~(uintptr_t)slack;
    end = start + arena_size;
    if (arena == NULL || arena_size < slack + ws_bytes
        || (((end - ws_bytes) & ~(uintptr_t)slack) < base)) {
        r->arena_needed = slack + persistent + ws_bytes;
        r->arena_needed_exact = 0;
        fx_fail(r, FXPQ_RUNNER_ERR_ARENA_TOO_SMALL, -1, 0, "arena too small to plan the model: give at least ");
        fx_msg_int(r, (int64_t)r->arena_needed);
        fx_msg_str(r, " bytes to learn the exact size");
        return FXPQ_RUNNER_ERR_ARENA_TOO_SMALL;
    }
    recs = (fx_rec *)(void *)((end - ws_bytes) & ~(uintptr_t)slack);
    order = (int32_t *)(void *)((uint8_t *)recs + FX_ALIGN_UP((size_t)(nt + nops) * sizeof(fx_rec)));
    if ((st = fx_lifetimes(r, &m, recs)) != FXPQ_RUNNER_OK) {
        return st;
    }
    r->planned_bytes = fx_place(recs, order, nt + nops);
    if (r->planned_bytes > 0x7fffffffu) {
        return fx_fail(r, FXPQ_RUNNER_ERR_UNSUPPORTED, -1, 0, "activations need over 2 GB");
    }
    needed = slack + persistent + (ws_bytes > r->planned_bytes ? ws_bytes : r->planned_bytes);
    r->arena_needed = needed;
    r->arena_needed_exact = 1;
    if (arena_size < needed) {
        fx_fail(r, FXPQ_RUNNER_ERR_ARENA_TOO_SMALL, -1, 0, "arena of ");
        fx_msg_int(r, (int64_t)arena_size);
        fx_msg_str(r, " bytes too small: the model needs ");
        fx_msg_int(r, (int64_t)needed);
        return FXPQ_RUNNER_ERR_ARENA_TOO_SMALL;
    }
    /* Phase 3: prepared ops at the head; the planned region after them. Workspace (tail) and
     * prepared ops (head) do not overlap since persistent + workspace <= needed. */
    ops = (fx_op *)(void *)base;
    stocks = (fx_stock_params *)(void *)((uint8_t *)base + FX_ALIGN_UP((size_t)nops * sizeof(fx_op)));
    r->plan_base_ = (uint8_t *)base + persistent;
    for (i = 0, k = 0; i < nops; ++i) {
        fx_op *q = &ops[i];
        int32_t j;
        if ((st = fx_prepare_op(r, &m, i, q, NULL, &stocks[k])) != FXPQ_RUNNER_OK) {
            return st;
        }
        k += q->kind > FX_KIND_RESHAPE;
        for (j = 0; j < q->num_inputs; ++j) {
            q->in_off[j] = recs[fx_root(recs, q->in_t[j])].offset;
        }
        q->out_off = recs[fx_root(recs, q->out_t)].offset;
        q->scratch_off = recs[nt + i].offset;
    }
    fx_fill_info(&m, fxfb_vector_i32(&m.b, &m.inputs, 0), r->plan_base_, recs, &r->input);
    for (i = 0; i < r->num_outputs; ++i) {
        fx_fill_info(&m, fxfb_vector_i32(&m.b, &m.outputs, (uint32_t)i), r->plan_base_, recs,
                     &r->outputs[i]);
    }
    /* The workspace may overlap the planned region: clear it so that no stale bytes remain. */
    memset(r->plan_base_, 0, r->planned_bytes);
    r->model_ = model;
    r->model_size_ = model_size;
    r->ops_ = ops;
    r->ready_ = 1;
    r->message[0] = '\0';
    r->error_op = -1;
    return FXPQ_RUNNER_OK;
}

fxpq_runner_status fxpq_runner_invoke(fxpq_runner *r)
{
    const fx_op *ops;
    uint8_t *base;
    int32_t i;
    if (r == NULL) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    if (!r->ready_) {
        return fx_fail(r, FXPQ_RUNNER_ERR_NOT_READY, -1, 0, "fxpq_runner_init did not succeed");
    }
    ops = (const fx_op *)r->ops_;
    base = r->plan_base_;
    for (i = 0; i < r->num_ops; ++i) {
        const fx_op *p = &ops[i];
        const void *in0 = base + p->in_off[0];
        void *out = base + p->out_off;
        fxpq_context ctx;
        fxpq_status ks = FXPQ_OK;
        ctx.buf = p->scratch_bytes > 0 ? base + p->scratch_off : NULL;
        ctx.size = p->scratch_bytes;
        switch (p->kind) {
        case FXPQ_OP_QUANTIZE:
            ks = fxpq_quantize(p->size, (const float *)in0, out, &p->out_fmt);
            break;
        case FXPQ_OP_CONV_2D:
            ks = fxpq_conv2d(&ctx, &p->p.conv, &p->in_dims, in0, &p->in_fmt[0], &p->filter_dims,
                             &p->weights, &p->bias, &p->out_dims, out, &p->out_fmt);
            break;
        case FXPQ_OP_DEPTHWISE_CONV_2D:
            ks = fxpq_depthwise_conv2d(&ctx, &p->p.dw, &p->in_dims, in0, &p->in_fmt[0],
                                       &p->filter_dims, &p->weights, &p->bias, &p->out_dims, out,
                                       &p->out_fmt);
            break;
        case FXPQ_OP_FULLY_CONNECTED:
            ks = fxpq_fully_connected(&ctx, &p->p.fc, 1, p->size, p->out_features, in0,
                                      &p->in_fmt[0], &p->weights, &p->bias, out, &p->out_fmt);
            break;
        case FXPQ_OP_ADD:
            ks = fxpq_add(&p->p.ew, p->size, in0, &p->in_fmt[0], base + p->in_off[1],
                          &p->in_fmt[1], out, &p->out_fmt);
            break;
        case FXPQ_OP_MAX_POOL_2D:
            ks = fxpq_max_pool2d(&p->p.pool, &p->in_dims, in0, &p->in_fmt[0], &p->out_dims, out,
                                 &p->out_fmt);
            break;
        case FXPQ_OP_AVERAGE_POOL_2D:
            ks = fxpq_average_pool2d(&p->p.pool, &p->in_dims, in0, &p->in_fmt[0], &p->out_dims,
                                     out, &p->out_fmt);
            break;
        case FXPQ_OP_GLOBAL_AVERAGE_POOL_2D:
            ks = fxpq_global_average_pool2d(&p->in_dims, in0, &p->in_fmt[0], out, &p->out_fmt);
            break;
        case FXPQ_OP_REQUANTIZE:
            ks = fxpq_requantize(&p->p.ew, p->size, in0, &p->in_fmt[0], out, &p->out_fmt);
            break;
        case FXPQ_OP_CONCATENATION:
            ks = fxpq_concatenation(p->p.concat.outer, p->p.concat.a_channels, in0, &p->in_fmt[0],
                                    p->p.concat.b_channels, base + p->in_off[1], &p->in_fmt[1], out,
                                    &p->out_fmt);
            break;
        case FXPQ_OP_LEAKY_RELU:
            ks = fxpq_leaky_relu(&p->p.leaky, p->size, in0, &p->in_fmt[0], out, &p->out_fmt);
            break;
        case FXPQ_OP_PAD:
            ks = fxpq_zero_pad2d(&p->p.pad, &p->in_dims, in0, &p->in_fmt[0], &p->out_dims, out,
                                 &p->out_fmt);
            break;
        case FX_KIND_MUL:
            ks = fxpq_stock_mul(&p->p.stock->bin.q.mul, &p->p.stock->bin.a, in0, &p->p.stock->bin.b, base + p->in_off[1], out);
            break;
        case FX_KIND_SUB:
            ks = fxpq_stock_add(&p->p.stock->bin.q.add, &p->p.stock->bin.a, in0, &p->p.stock->bin.b, base + p->in_off[1], out);
            break;
        case FX_KIND_MAXIMUM:
        case FX_KIND_MINIMUM:
            ks = fxpq_stock_max_min(p->kind == FX_KIND_MAXIMUM, 1, &p->p.stock->bin.a, in0, &p->p.stock->bin.b,
                                    base + p->in_off[1], out);
            break;
        case FX_KIND_LOGISTIC:
            ks = fxpq_stock_logistic_s8(&p->p.stock->sig, p->size, (const int8_t *)in0, (int8_t *)out);
            break;
        case FX_KIND_TANH:
            ks = fxpq_stock_tanh_s8(&p->p.stock->sig, p->size, (const int8_t *)in0, (int8_t *)out);
            break;
        case FX_KIND_HARD_SWISH:
            ks = fxpq_stock_hard_swish_s8(&p->p.stock->hswish, p->size, (const int8_t *)in0, (int8_t *)out);
            break;
        case FX_KIND_STOCK_QUANTIZE:
            ks = fxpq_stock_requantize(&p->p.stock->rq, p->size, in0, out);
            break;
        case FX_KIND_RESIZE_NEAREST:
            ks = fxpq_stock_resize_nearest_neighbor(&p->p.stock->resize.in, p->p.stock->resize.out_h, p->p.stock->resize.out_w,
                                                    p->p.stock->resize.align_corners, p->p.stock->resize.half_pixel_centers,
                                                    1, in0, out);
            break;
        case FX_KIND_TRANSPOSE:
            ks = fxpq_stock_transpose(&p->p.stock->tr.in, p->p.stock->tr.perm, 1, in0, out);
            break;
        default: /* RESHAPE: the output aliases the input (planned), nothing to do */
            break;
        }
        if (ks != FXPQ_OK) {
            r->kernel_status = (int32_t)ks;
            fx_fail(r, FXPQ_RUNNER_ERR_KERNEL, i, p->kind, "kernel error: ");
            fx_msg_str(r, fxpq_status_str(ks));
            return FXPQ_RUNNER_ERR_KERNEL;
        }
    }
    return FXPQ_RUNNER_OK;
}

fxpq_runner_status fxpq_runner_tensor(const fxpq_runner *r, int32_t index, fxpq_tensor_info *info)
{
    if (r == NULL || info == NULL) {
        return FXPQ_RUNNER_ERR_NULL_POINTER;
    }
    if (!r->ready_) {
        return FXPQ_RUNNER_ERR_NOT_READY;
    }
    if (index < -1 || index >= r->num_outputs) {
        return FXPQ_RUNNER_ERR_BAD_ARGUMENT;
    }
    *info = index < 0 ? r->input : r->outputs[index];
    return FXPQ_RUNNER_OK;
}
