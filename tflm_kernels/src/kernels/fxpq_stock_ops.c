/*
 * fxpq_stock_ops.c - TFLM's int8/int16 reference kernels of the stock builtin ops hybrid files
 * use (docs/numerics.md, "Stock TFLM ops"), bit-exact with TFLM 90b983c and with the numpy
 * reference fxpq_keras/integer_graph/tflm_ops.py. Prepare functions do TFLM's Prepare-time math
 * (QuantizeMultiplier of double ratios of float32 scales, or float32 ratios where TFLM computes
 * in float) once; eval functions use int32/int64 arithmetic as TFLM's reference does. Where C's
 * int32 arithmetic would overflow in TFLM, the value wraps here through uint32 (what TFLM's
 * compiled code does on our targets), never through signed overflow. No heap, no libm.
 */
#include <float.h>
#include <limits.h>

#include "fxpq_internal.h"

/* ------------------------------------------------------------------ primitives ----------- */

static int32_t wrap32(int64_t v)
{
    return (int32_t)(uint32_t)(uint64_t)v;
}

static int16_t wrap16(int32_t v)
{
    return (int16_t)(uint16_t)(uint32_t)v;
}

/* gemmlowp SaturatingRoundingDoublingHighMul (int32) */
static int32_t srdhm(int32_t a, int32_t b)
{
    int64_t ab;
    int64_t nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C99 division truncates, as gemmlowp's */
}

/* gemmlowp RoundingDivideByPOT (int32), exponent 0..31: round half away from zero */
static int32_t rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> (int32) */
static int32_t sat_mul_pot(int32_t x, int32_t exponent)
{
    int32_t threshold;
    if (exponent == 0) {
        return x;
    }
    if (exponent < 0) {
        return rdbpot(x, -exponent);
    }
    threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return wrap32((int64_t)x * ((int64_t)1 << exponent));
}

/* TFLite's double-rounding MultiplyByQuantizedMultiplier (int32 x); shift <= 30 (prepare checks) */
static int32_t mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return rdbpot(srdhm(wrap32((int64_t)x * ((int64_t)1 << left)), multiplier), right);
}

/* MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0) */
static int32_t mbqm_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift)
{
    return rdbpot(srdhm(x, multiplier), -shift);
}

/* std::frexp for the positive, finite values prepare sees (exact: scaling by 2 is exact) */
static double stock_frexp(double v, int32_t *exponent)
{
    int32_t e = 0;
    while (v >= 1.0) {
        v *= 0.5;
        ++e;
    }
    while (v < 0.5) {
        v *= 2.0;
        --e;
    }
    *exponent = e;
    return v;
}

/* TfLiteRound of a non-negative double below 2^62: half away from zero */
static int64_t round_nonneg(double v)
{
    return (int64_t)(v + 0.5);
}

/* TFLite QuantizeMultiplier: real = m * 2^(shift - 31); real >= 0 */
static void quantize_multiplier(double real, int32_t *multiplier, int32_t *shift)
{
    int64_t q_fixed;
    double q;
    if (real == 0.0) {
        *multiplier = 0;
        *shift = 0;
        return;
    }
    q = stock_frexp(real, shift);
    q_fixed = round_nonneg(q * 2147483648.0);
    if (q_fixed == ((int64_t)1 << 31)) {
        q_fixed /= 2;
        ++*shift;
    }
    if (*shift < -31) {
        *shift = 0;
        q_fixed = 0;
    }
    *multiplier = (int32_t)q_fixed;
}

static int valid_quant(const fxpq_stock_quant *q, int allow_int16)
{
    if (q == NULL) {
        return 0;
    }
    if (!(q->scale > 0.0f && q->scale <= FLT_MAX)) { /* also refuses NaN */
        return 0;
    }
    if (q->type == FXPQ_TFLITE_INT8) {
        return q->zero_point >= -128 && q->zero_point <= 127;
    }
    return allow_int16 && q->type == FXPQ_TFLITE_INT16 && q->zero_point >= -32768 &&
           q->zero_point <= 32767;
}

static void type_range(int32_t type, int32_t *lo, int32_t *hi)
{
    *lo = type == FXPQ_TFLITE_INT16 ? -32768 : -128;
    *hi = type == FXPQ_TFLITE_INT16 ? 32767 : 127;
}

/* kernel_util's Quantize: zero_point + TfLiteRound(real / scale), the quotient in float32 */
static fxpq_status quantize_bound(const fxpq_stock_quant *q, float real, int32_t *out)
{
    const float tmp = real / q->scale;
    const double mag = tmp < 0.0f ? -(double)tmp : (double)tmp;
    int64_t r;
    if (!(mag < 2147450880.0)) { /* TFLM refuses int32 overflow; zero_point + r must fit too */
        return FXPQ_ERR_BAD_PARAM;
    }
    r = (int64_t)(mag + 0.5); /* exact in double: half away from zero */
    *out = q->zero_point + (int32_t)(tmp < 0.0f ? -r : r);
    return FXPQ_OK;
}

/* CalculateActivationRangeQuantized */
static fxpq_status activation_range(const fxpq_stock_quant *q, int32_t activation, int32_t *lo,
                                    int32_t *hi)
{
    int32_t v;
    fxpq_status st;
    type_range(q->type, lo, hi);
    switch (activation) {
    case FXPQ_STOCK_ACT_NONE:
        return FXPQ_OK;
    case FXPQ_STOCK_ACT_RELU:
    case FXPQ_STOCK_ACT_RELU6:
        if ((st = quantize_bound(q, 0.0f, &v)) != FXPQ_OK) {
            return st;
        }
        *lo = v > *lo ? v : *lo;
        if (activation == FXPQ_STOCK_ACT_RELU6) {
            if ((st = quantize_bound(q, 6.0f, &v)) != FXPQ_OK) {
                return st;
            }
            *hi = v < *hi ? v : *hi;
        }
        return FXPQ_OK;
    case FXPQ_STOCK_ACT_RELU_N1_TO_1:
        if ((st = quantize_bound(q, -1.0f, &v)) != FXPQ_OK) {
            return st;
        }
        *lo = v > *lo ? v : *lo;
        if ((st = quantize_bound(q, 1.0f, &v)) != FXPQ_OK) {
            return st;
        }
        *hi = v < *hi ? v : *hi;
        return FXPQ_OK;
    default:
        return FXPQ_ERR_BAD_PARAM;
    }
}

static int32_t clamp32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ------------------------------------------------------------------ broadcasting ---------- */

typedef struct {
    int32_t rank;
    int32_t dims[FXPQ_STOCK_MAX_RANK];
    int32_t stride1[FXPQ_STOCK_MAX_RANK];
    int32_t stride2[FXPQ_STOCK_MAX_RANK];
    int32_t count;
} stock_broadcast;

/* numpy broadcasting of two shapes (right-aligned); strides are 0 along broadcast axes */
static fxpq_status broadcast_init(const fxpq_stock_shape *a, const fxpq_stock_shape *b,
                                  int32_t max_rank, stock_broadcast *bc)
{
    int32_t d, s1 = 1, s2 = 1;
    int64_t count = 1;
    if (a == NULL || b == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (a->rank < 0 || b->rank < 0 || a->rank > max_rank || b->rank > max_rank) {
        return FXPQ_ERR_BAD_DIMS;
    }
    bc->rank = a->rank > b->rank ? a->rank : b->rank;
    for (d = bc->rank - 1; d >= 0; --d) {
        const int32_t ia = d - (bc->rank - a->rank), ib = d - (bc->rank - b->rank);
        const int32_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da < 1 || db < 1 || (da != db && da != 1 && db != 1)) {
            return FXPQ_ERR_BAD_DIMS;
        }
        bc->dims[d] = da > db ? da : db;
        bc->stride1[d] = da == 1 ? 0 : s1;
        bc->stride2[d] = db == 1 ? 0 : s2;
        s1 *= da;
        s2 *= db;
        count *= bc->dims[d];
        if (count > INT32_MAX) {
            return FXPQ_ERR_BAD_DIMS;
        }
    }
    bc->count = (int32_t)count;
    return FXPQ_OK;
}

/* advance the output index; off1/off2 follow the inputs */
static void broadcast_next(const stock_broadcast *bc, int32_t *index, int32_t *off1, int32_t *off2)
{
    int32_t d = bc->rank - 1;
    while (d >= 0) {
        ++index[d];
        *off1 += bc->stride1[d];
        *off2 += bc->stride2[d];
        if (index[d] < bc->dims[d]) {
            return;
        }
        *off1 -= bc->stride1[d] * bc->dims[d];
        *off2 -= bc->stride2[d] * bc->dims[d];
        index[d] = 0;
        --d;
    }
}

/* ------------------------------------------------------------------ QUANTIZE -------------- */

fxpq_status fxpq_stock_requantize_prepare(const fxpq_stock_quant *input,
                                          const fxpq_stock_quant *output,
                                          fxpq_stock_requantize_params *params)
{
    if (input == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input, 1) || !valid_quant(output, 1)) {
        return FXPQ_ERR_BAD_PARAM;
    }
    quantize_multiplier((double)input->scale / (double)output->scale, &params->multiplier,
                        &params->shift);
    if (params->shift > 30) {
        return FXPQ_ERR_BAD_PARAM;
    }
    params->input_zero_point = input->zero_point;
    params->output_zero_point = output->zero_point;
    params->input_type = input->type;
    params->output_type = output->type;
    type_range(output->type, &params->output_min, &params->output_max);
    return FXPQ_OK;
}

fxpq_status fxpq_stock_requantize(const fxpq_stock_requantize_params *params, int32_t size,
                                  const void *input, void *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (size < 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    for (i = 0; i < size; ++i) {
        const int32_t x = params->input_type == FXPQ_TFLITE_INT16 ? ((const int16_t *)input)[i]
                                                                  : ((const int8_t *)input)[i];
        const int32_t y = clamp32(mbqm(x - params->input_zero_point, params->multiplier,
                                       params->shift) + params->output_zero_point,
                                  params->output_min, params->output_max);
        if (params->output_type == FXPQ_TFLITE_INT16) {
            ((int16_t *)output)[i] = (int16_t)y;
        } else {
            ((int8_t *)output)[i] = (int8_t)y;
        }
    }
    return FXPQ_OK;
}

/* ------------------------------------------------------------------ MUL ------------------- */

fxpq_status fxpq_stock_mul_prepare(const fxpq_stock_quant *input1, const fxpq_stock_quant *input2,
                                   const fxpq_stock_quant *output, int32_t activation,
                                   fxpq_stock_mul_params *params)
{
    fxpq_status st;
    if (input1 == NULL || input2 == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input1, 1) || !valid_quant(input2, 1) || !valid_quant(output, 1) ||
        input1->type != input2->type || input1->type != output->type) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if (output->type == FXPQ_TFLITE_INT16 &&
        (input1->zero_point != 0 || input2->zero_point != 0 || output->zero_point != 0)) {
        return FXPQ_ERR_BAD_PARAM;
    }
    quantize_multiplier((double)input1->scale * (double)input2->scale / (double)output->scale,
                        &params->multiplier, &params->shift);
    if (params->shift > 30) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if ((st = activation_range(output, activation, &params->activation_min,
                               &params->activation_max)) != FXPQ_OK) {
        return st;
    }
    params->input1_zero_point = input1->zero_point;
    params->input2_zero_point = input2->zero_point;
    params->output_zero_point = output->zero_point;
    params->type = output->type;
    return FXPQ_OK;
}

/* Element i of a stored int8 (wide == 0) or int16 tensor, and storing one: the broadcasting ops
 * (MUL, ADD/SUB) read and write either width. */
static int32_t stock_load(const void *data, int wide, int32_t i)
{
    return wide ? ((const int16_t *)data)[i] : ((const int8_t *)data)[i];
}

static void stock_store(void *data, int wide, int32_t i, int32_t v)
{
    if (wide) {
        ((int16_t *)data)[i] = (int16_t)v;
    } else {
        ((int8_t *)data)[i] = (int8_t)v;
    }
}

fxpq_status fxpq_stock_mul(const fxpq_stock_mul_params *params, const fxpq_stock_shape *shape1,
                           const void *input1, const fxpq_stock_shape *shape2, const void *input2,
                           void *output)
{
    stock_broadcast bc;
    int32_t index[FXPQ_STOCK_MAX_RANK] = {0};
    int32_t i, o1 = 0, o2 = 0;
    fxpq_status st;
    const int wide = params != NULL && params->type == FXPQ_TFLITE_INT16;
    if (params == NULL || input1 == NULL || input2 == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = broadcast_init(shape1, shape2, FXPQ_STOCK_MAX_RANK, &bc)) != FXPQ_OK) {
        return st;
    }
    for (i = 0; i < bc.count; ++i) {
        const int32_t a = stock_load(input1, wide, o1);
        const int32_t b = stock_load(input2, wide, o2);
        /* |product| <= 2^30 for int16 with zero point 0, and <= 255^2 for int8 */
        const int32_t prod = (a - params->input1_zero_point) * (b - params->input2_zero_point);
        const int32_t y = clamp32(mbqm(prod, params->multiplier, params->shift) +
                                      params->output_zero_point,
                                  params->activation_min, params->activation_max);
        stock_store(output, wide, i, y);
        broadcast_next(&bc, index, &o1, &o2);
    }
    return FXPQ_OK;
}

/* ------------------------------------------------------------------ ADD / SUB ------------- */

/* QuantizeMultiplierSmallerThanOneExp: TFLM aborts unless 0 < real < 1 */
static fxpq_status smaller_than_one(double real, int32_t *multiplier, int32_t *shift)
{
    if (!(real > 0.0 && real < 1.0)) {
        return FXPQ_ERR_BAD_PARAM;
    }
    quantize_multiplier(real, multiplier, shift);
    return FXPQ_OK;
}

fxpq_status fxpq_stock_add_prepare(const fxpq_stock_quant *input1, const fxpq_stock_quant *input2,
                                   const fxpq_stock_quant *output, int32_t activation,
                                   int32_t subtract, fxpq_stock_add_params *params)
{
    double r1, r2, ro;
    fxpq_status st;
    if (input1 == NULL || input2 == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input1, 1) || !valid_quant(input2, 1) || !valid_quant(output, 1) ||
        input1->type != input2->type || input1->type != output->type) {
        return FXPQ_ERR_BAD_PARAM;
    }
    params->left_shift = output->type == FXPQ_TFLITE_INT16 ? 15 : 20;
    if (subtract) { /* sub_common.cc computes the ratios in float32 */
        const float twice = 2.0f * (input1->scale > input2->scale ? input1->scale : input2->scale);
        r1 = (double)(input1->scale / twice);
        r2 = (double)(input2->scale / twice);
        ro = (double)(twice / ((float)(1 << params->left_shift) * output->scale));
    } else { /* add_common.cc in double */
        const double twice =
            2.0 * (double)(input1->scale > input2->scale ? input1->scale : input2->scale);
        r1 = (double)input1->scale / twice;
        r2 = (double)input2->scale / twice;
        ro = twice / ((double)(1 << params->left_shift) * (double)output->scale);
    }
    if ((st = smaller_than_one(r1, &params->input1_multiplier, &params->input1_shift)) != FXPQ_OK ||
        (st = smaller_than_one(r2, &params->input2_multiplier, &params->input2_shift)) != FXPQ_OK ||
        (st = smaller_than_one(ro, &params->output_multiplier, &params->output_shift)) != FXPQ_OK) {
        return st;
    }
    if ((st = activation_range(output, activation, &params->activation_min,
                               &params->activation_max)) != FXPQ_OK) {
        return st;
    }
    params->input1_zero_point = input1->zero_point;
    params->input2_zero_point = input2->zero_point;
    params->output_zero_point = output->zero_point;
    params->subtract = subtract ? 1 : 0;
    params->type = output->type;
    return FXPQ_OK;
}

fxpq_status fxpq_stock_add(const fxpq_stock_add_params *params, const fxpq_stock_shape *shape1,
                           const void *input1, const fxpq_stock_shape *shape2, const void *input2,
                           void *output)
{
    stock_broadcast bc;
    int32_t index[FXPQ_STOCK_MAX_RANK] = {0};
    int32_t i, o1 = 0, o2 = 0;
    fxpq_status st;
    const int wide = params != NULL && params->type == FXPQ_TFLITE_INT16;
    if (params == NULL || input1 == NULL || input2 == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = broadcast_init(shape1, shape2, 4, &bc)) != FXPQ_OK) {
        return st;
    }
    for (i = 0; i < bc.count; ++i) {
        const int32_t x1 = stock_load(input1, wide, o1);
        const int32_t x2 = stock_load(input2, wide, o2);
        /* |x - zp| * 2^left_shift: inside int32 for int8 (<= 255 * 2^20) and int16 with zero
           point 0 (<= 2^15 * 2^15); other int16 zero points wrap as TFLM's int32 would */
        const int32_t a = wrap32((int64_t)(x1 - params->input1_zero_point) * ((int64_t)1 << params->left_shift));
        const int32_t b = wrap32((int64_t)(x2 - params->input2_zero_point) * ((int64_t)1 << params->left_shift));
        const int32_t sa = mbqm_smaller_than_one(a, params->input1_multiplier, params->input1_shift);
        const int32_t sb = mbqm_smaller_than_one(b, params->input2_multiplier, params->input2_shift);
        const int32_t raw = wrap32(params->subtract ? (int64_t)sa - sb : (int64_t)sa + sb);
        const int32_t y = clamp32(mbqm_smaller_than_one(raw, params->output_multiplier,
                                                        params->output_shift) + params->output_zero_point,
                                  params->activation_min, params->activation_max);
        stock_store(output, wide, i, y);
        broadcast_next(&bc, index, &o1, &o2);
    }
    return FXPQ_OK;
}

/* ------------------------------------------------------------------ gemmlowp functions ---- */

static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668, one_third = 715827883;
    const int32_t x = wrap32((int64_t)a + (1 << 28));
    const int32_t x2 = srdhm(x, x);
    const int32_t x3 = srdhm(x2, x);
    const int32_t x4 = srdhm(x2, x2);
    const int32_t x4_over_4 = sat_mul_pot(x4, -2);
    const int32_t poly = sat_mul_pot(
        wrap32((int64_t)srdhm(wrap32((int64_t)x4_over_4 + x3), one_third) + x2), -1);
    return wrap32((int64_t)constant_term + srdhm(constant_term, wrap32((int64_t)x + poly)));
}

/* gemmlowp exp_on_negative_values, input Q(integer_bits), integer_bits <= 5 here */
static int32_t exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535,
                                      720401, 242};
    const int32_t frac_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
    const int32_t a_mod = wrap32((int64_t)(a & (one_quarter - 1)) - one_quarter);
    int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        sat_mul_pot(a_mod, integer_bits));
    const int32_t remainder = wrap32((int64_t)a_mod - a);
    int32_t e;
    for (e = -2; e <= 4; ++e) {
        if (integer_bits > e && (remainder & (int32_t)((uint32_t)1 << (frac_bits + e))) != 0) {
            result = srdhm(result, barrel[e + 2]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* Newton-Raphson 1/(1+a) of gemmlowp, Q2.29 result for a in Q0.31 */
static int32_t newton_reciprocal_q2(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x = wrap32((int64_t)1515870810 + srdhm(half_denominator, -1010580540));
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = wrap32(((int64_t)1 << 29) - srdhm(half_denominator, x));
        x = wrap32((int64_t)x + sat_mul_pot(srdhm(x, one_minus), 2));
    }
    return x;
}

static int32_t gemmlowp_logistic_q4(int32_t a)
{
    int32_t abs_input, positive;
    if (a == 0) {
        return 1 << 30;
    }
    abs_input = a > 0 ? a : wrap32(-(int64_t)a);
    positive = sat_mul_pot(newton_reciprocal_q2(exp_on_negative_values(wrap32(-(int64_t)abs_input), 4)), 1);
    return a > 0 ? positive : wrap32((int64_t)INT32_MAX - positive);
}

static int32_t gemmlowp_tanh_q4(int32_t a)
{
    int32_t n, t;
    if (a == 0) {
        return 0;
    }
    n = a < 0 ? a : wrap32(-(int64_t)a);
    t = sat_mul_pot(wrap32((int64_t)newton_reciprocal_q2(exp_on_negative_values(n, 5)) - (1 << 29)),
                    2);
    return a < 0 ? wrap32(-(int64_t)t) : t;
}

/* ------------------------------------------------------------------ LOGISTIC / TANH ------- */

static fxpq_status prepare_q4_input(const fxpq_stock_quant *input, fxpq_stock_sigmoid_params *params)
{
    int32_t left_shift, k;
    int64_t multiplier;
    double radius = 15.0 * 134217728.0;
    const double q = stock_frexp((double)input->scale * 134217728.0, &left_shift);
    multiplier = round_nonneg(q * 2147483648.0);
    if (multiplier > INT32_MAX || left_shift < 0 || left_shift > 62) {
        return FXPQ_ERR_BAD_PARAM; /* TFLM: int32 overflow, or a shift undefined in C */
    }
    /* CalculateInputRadius(4, left_shift, 31) = floor(15 * 2^27 / 2^left_shift), in double */
    for (k = 0; k < left_shift; ++k) {
        radius *= 0.5;
    }
    params->input_range_radius = (int32_t)radius; /* truncation of a positive value = floor */
    params->input_left_shift = left_shift;
    params->input_multiplier = (int32_t)multiplier;
    params->input_zero_point = input->zero_point;
    return FXPQ_OK;
}

fxpq_status fxpq_stock_logistic_prepare(const fxpq_stock_quant *input,
                                        const fxpq_stock_quant *output,
                                        fxpq_stock_sigmoid_params *params)
{
    if (input == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input, 0) || !valid_quant(output, 0) || output->zero_point != -128 ||
        output->scale != 1.0f / 256.0f) {
        return FXPQ_ERR_BAD_PARAM;
    }
    return prepare_q4_input(input, params);
}

fxpq_status fxpq_stock_tanh_prepare(const fxpq_stock_quant *input, const fxpq_stock_quant *output,
                                    fxpq_stock_sigmoid_params *params)
{
    if (input == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input, 0) || !valid_quant(output, 0) || output->zero_point != 0 ||
        output->scale != 1.0f / 128.0f) {
        return FXPQ_ERR_BAD_PARAM;
    }
    return prepare_q4_input(input, params);
}

static fxpq_status sigmoid_s8(const fxpq_stock_sigmoid_params *params, int32_t size,
                              const int8_t *input, int8_t *output, int is_tanh)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (size < 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    for (i = 0; i < size; ++i) {
        const int32_t v = input[i] - params->input_zero_point;
        if (v <= -params->input_range_radius) {
            output[i] = -128;
        } else if (v >= params->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t q4 = mbqm(v, params->input_multiplier, params->input_left_shift);
            const int32_t y = is_tanh ? rdbpot(gemmlowp_tanh_q4(q4), 24)
                                      : rdbpot(gemmlowp_logistic_q4(q4), 23) - 128;
            output[i] = (int8_t)clamp32(y, -128, 127);
        }
    }
    return FXPQ_OK;
}

fxpq_status fxpq_stock_logistic_s8(const fxpq_stock_sigmoid_params *params, int32_t size,
                                   const int8_t *input, int8_t *output)
{
    return sigmoid_s8(params, size, input, output, 0);
}

fxpq_status fxpq_stock_tanh_s8(const fxpq_stock_sigmoid_params *params, int32_t size,
                               const int8_t *input, int8_t *output)
{
    return sigmoid_s8(params, size, input, output, 1);
}

/* ------------------------------------------------------------------ HARD_SWISH ------------ */

static int32_t down_scale_16(int32_t m32)
{
    if (m32 >= INT32_MAX - (1 << 15)) {
        return 32767;
    }
    return (m32 + (1 << 15)) >> 16;
}

fxpq_status fxpq_stock_hard_swish_prepare(const fxpq_stock_quant *input,
                                          const fxpq_stock_quant *output,
                                          fxpq_stock_hard_swish_params *params)
{
    int32_t m;
    float hires;
    if (input == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input, 0) || !valid_quant(output, 0)) {
        return FXPQ_ERR_BAD_PARAM;
    }
    hires = (1.0f / 128.0f) * input->scale;
    quantize_multiplier((double)(hires / output->scale), &m, &params->output_exponent);
    if (params->output_exponent > 0) {
        return FXPQ_ERR_BAD_PARAM; /* TFLM: TF_LITE_ENSURE(output_multiplier_exponent <= 0) */
    }
    params->output_multiplier = down_scale_16(m);
    quantize_multiplier((double)(hires / (3.0f / 32768.0f)), &m, &params->reluish_exponent);
    params->reluish_multiplier = down_scale_16(m);
    params->input_zero_point = input->zero_point;
    params->output_zero_point = output->zero_point;
    return FXPQ_OK;
}

static int16_t srdhm16(int16_t a, int16_t b)
{
    int32_t ab, nudge;
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    ab = (int32_t)a * (int32_t)b;
    nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return wrap16((ab + nudge) / (1 << 15));
}

static int16_t rdbpot16(int16_t x, int32_t exponent)
{
    const int16_t mask = wrap16((int32_t)(((int64_t)1 << exponent) - 1));
    const int16_t remainder = (int16_t)(x & mask);
    const int16_t threshold = wrap16((mask >> 1) + (x < 0 ? 1 : 0));
    return wrap16((x >> exponent) + (remainder > threshold ? 1 : 0));
}

static int16_t sat_left_shift16(int16_t v, int32_t amount)
{
    const int64_t r = (int64_t)v * ((int64_t)1 << amount);
    return (int16_t)(r > INT16_MAX ? INT16_MAX : (r < INT16_MIN ? INT16_MIN : r));
}

fxpq_status fxpq_stock_hard_swish_s8(const fxpq_stock_hard_swish_params *params, int32_t size,
                                     const int8_t *input, int8_t *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (size < 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    for (i = 0; i < size; ++i) {
        const int16_t v = wrap16(input[i] - params->input_zero_point);
        const int16_t hires = wrap16(v * 128);
        const int16_t pre_out = srdhm16(hires, (int16_t)params->output_multiplier);
        int16_t rel = hires, pre_shift, y;
        int32_t prod;
        if (params->reluish_exponent > 0) {
            rel = sat_left_shift16(rel, params->reluish_exponent - 1);
        }
        rel = srdhm16(rel, (int16_t)params->reluish_multiplier);
        if (params->reluish_exponent > 0) {
            rel = sat_left_shift16(rel, 1);
        }
        if (params->reluish_exponent < 0) {
            rel = rdbpot16(rel, -params->reluish_exponent);
        }
        rel = wrap16((rel + (1 << 15)) >> 1);
        /* SaturatingDoublingHighMul: truncating division of the product by 2^15 */
        prod = (int32_t)rel * (int32_t)pre_out;
        pre_shift = (rel == INT16_MIN && pre_out == INT16_MIN) ? INT16_MAX : wrap16(prod / (1 << 15));
        y = wrap16(rdbpot16(pre_shift, -params->output_exponent) + params->output_zero_point);
        output[i] = (int8_t)(y < -128 ? -128 : (y > 127 ? 127 : y));
    }
    return FXPQ_OK;
}

/* ------------------------------------------------------------------ MAXIMUM / MINIMUM ----- */

fxpq_status fxpq_stock_max_min(int32_t is_max, int32_t element_size, const fxpq_stock_shape *shape1,
                               const void *input1, const fxpq_stock_shape *shape2,
                               const void *input2, void *output)
{
    stock_broadcast bc;
    int32_t index[FXPQ_STOCK_MAX_RANK] = {0};
    int32_t i, o1 = 0, o2 = 0;
    fxpq_status st;
    if (input1 == NULL || input2 == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (element_size != 1 && element_size != 2) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if ((st = broadcast_init(shape1, shape2, 5, &bc)) != FXPQ_OK) {
        return st;
    }
    for (i = 0; i < bc.count; ++i) {
        const int32_t a = element_size == 2 ? ((const int16_t *)input1)[o1] : ((const int8_t *)input1)[o1];
        const int32_t b = element_size == 2 ? ((const int16_t *)input2)[o2] : ((const int8_t *)input2)[o2];
        const int32_t y = is_max ? (a > b ? a : b) : (a < b ? a : b);
        if (element_size == 2) {
            ((int16_t *)output)[i] = (int16_t)y;
        } else {
            ((int8_t *)output)[i] = (int8_t)y;
        }
        broadcast_next(&bc, index, &o1, &o2);
    }
    return FXPQ_OK;
}

/* ------------------------------------------------------------------ data movement --------- */

static fxpq_status shape_count(const fxpq_stock_shape *shape, int32_t max_rank, int32_t *count)
{
    int32_t d;
    int64_t n = 1;
    if (shape == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (shape->rank < 0 || shape->rank > max_rank) {
        return FXPQ_ERR_BAD_DIMS;
    }
    for (d = 0; d < shape->rank; ++d) {
        if (shape->dims[d] < 1) {
            return FXPQ_ERR_BAD_DIMS;
        }
        n *= shape->dims[d];
        if (n > INT32_MAX) {
            return FXPQ_ERR_BAD_DIMS;
        }
    }
    *count = (int32_t)n;
    return FXPQ_OK;
}

static int32_t load_elem(const void *data, int32_t element_size, int32_t i)
{
    return element_size == 2 ? ((const int16_t *)data)[i] : ((const int8_t *)data)[i];
}

static void store_elem(void *data, int32_t element_size, int32_t i, int32_t v)
{
    if (element_size == 2) {
        ((int16_t *)data)[i] = (int16_t)v;
    } else {
        ((int8_t *)data)[i] = (int8_t)v;
    }
}

fxpq_status fxpq_stock_mean_prepare(const fxpq_stock_quant *input, const fxpq_stock_quant *output,
                                    int32_t count, fxpq_stock_mean_params *params)
{
    int32_t m, shift, k;
    if (input == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input, 1) || !valid_quant(output, 1) || input->type != output->type) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if (count < 1) {
        return FXPQ_ERR_BAD_DIMS;
    }
    quantize_multiplier((double)input->scale / (double)output->scale, &m, &shift);
    if (shift > 30) {
        return FXPQ_ERR_BAD_PARAM;
    }
    /* QuantizedMeanOrSum: k = min(floor(log2 count), 32, 31 + shift); m = (m << k) / count */
    for (k = 0; ((int64_t)2 << k) <= count; ++k) {
    }
    k = k < 32 ? k : 32;
    k = k < 31 + shift ? k : 31 + shift;
    params->multiplier = (int32_t)(((int64_t)m << k) / count);
    params->shift = shift - k;
    if (params->shift < -31) {
        return FXPQ_ERR_BAD_PARAM;
    }
    params->input_zero_point = input->zero_point;
    params->output_zero_point = output->zero_point;
    params->count = count;
    params->type = input->type;
    return FXPQ_OK;
}

fxpq_status fxpq_stock_mean(const fxpq_stock_mean_params *params, const fxpq_stock_shape *shape,
                            uint32_t axes_mask, const void *input, void *output)
{
    int32_t total, d, kept_count = 1, reduced_count = 1, o, r, lo, hi;
    int32_t stride[FXPQ_STOCK_MAX_RANK];
    fxpq_status st;
    const int32_t size = params != NULL && params->type == FXPQ_TFLITE_INT16 ? 2 : 1;
    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = shape_count(shape, FXPQ_STOCK_MAX_RANK, &total)) != FXPQ_OK) {
        return st;
    }
    if ((axes_mask >> shape->rank) != 0) {
        return FXPQ_ERR_BAD_PARAM;
    }
    for (d = shape->rank - 1, stride[0] = 1; d >= 0; --d) {
        stride[d] = d == shape->rank - 1 ? 1 : stride[d + 1] * shape->dims[d + 1];
        if (axes_mask & (1u << d)) {
            reduced_count *= shape->dims[d];
        } else {
            kept_count *= shape->dims[d];
        }
    }
    if (reduced_count != params->count) {
        return FXPQ_ERR_BAD_DIMS;
    }
    type_range(params->type, &lo, &hi);
    for (o = 0; o < kept_count; ++o) {
        int32_t base = 0, rest = o;
        uint32_t sum = 0; /* int32 accumulator of TFLM, wrapping */
        for (d = shape->rank - 1; d >= 0; --d) {
            if (!(axes_mask & (1u << d))) {
                base += (rest % shape->dims[d]) * stride[d];
                rest /= shape->dims[d];
            }
        }
        for (r = 0; r < reduced_count; ++r) {
            int32_t offset = base, rr = r;
            for (d = shape->rank - 1; d >= 0; --d) {
                if (axes_mask & (1u << d)) {
                    offset += (rr % shape->dims[d]) * stride[d];
                    rr /= shape->dims[d];
                }
            }
            sum += (uint32_t)load_elem(input, size, offset);
        }
        sum -= (uint32_t)((int64_t)params->input_zero_point * params->count);
        store_elem(output, size, o,
                   clamp32(mbqm((int32_t)sum, params->multiplier, params->shift) +
                               params->output_zero_point, lo, hi));
    }
    (void)total;
    return FXPQ_OK;
}

/* reference_ops GetNearestNeighbor, in float32 */
static int32_t nearest_neighbor(int32_t out_index, int32_t in_size, int32_t out_size,
                                int32_t align_corners, int32_t half_pixel_centers)
{
    const float scale = (align_corners && out_size > 1)
                            ? (float)(in_size - 1) / (float)(out_size - 1)
                            : (float)in_size / (float)out_size;
    const float offset = half_pixel_centers ? 0.5f : 0.0f;
    const float pos = ((float)out_index + offset) * scale;
    int32_t v;
    if (align_corners) {
        v = (int32_t)((double)pos + 0.5); /* pos >= 0: round half away from zero */
    } else {
        v = (int32_t)pos; /* pos >= 0: truncation = floor */
    }
    v = v < in_size - 1 ? v : in_size - 1;
    return half_pixel_centers && v < 0 ? 0 : v;
}

fxpq_status fxpq_stock_resize_nearest_neighbor(const fxpq_stock_shape *input_shape,
                                               int32_t output_height, int32_t output_width,
                                               int32_t align_corners, int32_t half_pixel_centers,
                                               int32_t element_size, const void *input,
                                               void *output)
{
    int32_t count, b, y, x, c, i = 0;
    fxpq_status st;
    if (input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = shape_count(input_shape, 4, &count)) != FXPQ_OK) {
        return st;
    }
    if (input_shape->rank != 4 || output_height < 1 || output_width < 1 ||
        (int64_t)input_shape->dims[0] * output_height * output_width * input_shape->dims[3] >
            INT32_MAX) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if (element_size != 1 && element_size != 2) {
        return FXPQ_ERR_BAD_PARAM;
    }
    {
        const int32_t h = input_shape->dims[1], w = input_shape->dims[2], depth = input_shape->dims[3];
        for (b = 0; b < input_shape->dims[0]; ++b) {
            for (y = 0; y < output_height; ++y) {
                const int32_t in_y = nearest_neighbor(y, h, output_height, align_corners,
                                                      half_pixel_centers);
                for (x = 0; x < output_width; ++x) {
                    const int32_t in_x = nearest_neighbor(x, w, output_width, align_corners,
                                                          half_pixel_centers);
                    const int32_t base = ((b * h + in_y) * w + in_x) * depth;
                    for (c = 0; c < depth; ++c) {
                        store_elem(output, element_size, i++, load_elem(input, element_size, base + c));
                    }
                }
            }
        }
    }
    (void)count;
    return FXPQ_OK;
}

fxpq_status fxpq_stock_transpose(const fxpq_stock_shape *input_shape, const int32_t *perm,
                                 int32_t element_size, const void *input, void *output)
{
    int32_t count, d, i, seen = 0;
    int32_t in_stride[5], out_dims[5], index[5] = {0};
    fxpq_status st;
    if (perm == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = shape_count(input_shape, 5, &count)) != FXPQ_OK) {
        return st;
    }
    if (element_size != 1 && element_size != 2) {
        return FXPQ_ERR_BAD_PARAM;
    }
    for (d = 0; d < input_shape->rank; ++d) {
        if (perm[d] < 0 || perm[d] >= input_shape->rank || (seen & (1 << perm[d]))) {
            return FXPQ_ERR_BAD_PARAM;
        }
        seen |= 1 << perm[d];
    }
    for (d = input_shape->rank - 1; d >= 0; --d) {
        in_stride[d] = d == input_shape->rank - 1 ? 1 : in_stride[d + 1] * input_shape->dims[d + 1];
    }
    for (d = 0; d < input_shape->rank; ++d) {
        out_dims[d] = input_shape->dims[perm[d]];
    }
    for (i = 0; i < count; ++i) { /* output in order; index[] is the output position */
        int32_t offset = 0;
        for (d = 0; d < input_shape->rank; ++d) {
            offset += index[d] * in_stride[perm[d]];
        }
        store_elem(output, element_size, i, load_elem(input, element_size, offset));
        for (d = input_shape->rank - 1; d >= 0; --d) {
            if (++index[d] < out_dims[d]) {
                break;
            }
            index[d] = 0;
        }
    }
    return FXPQ_OK;
}

fxpq_status fxpq_stock_concatenation(int32_t num_inputs, const void *const *inputs,
                                     const int32_t *axis_sizes, int32_t outer, int32_t inner,
                                     int32_t element_size, void *output)
{
    int32_t n, o, j, out_i = 0;
    int64_t total_axis = 0;
    if (inputs == NULL || axis_sizes == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (num_inputs < 1 || outer < 1 || inner < 1) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if (element_size != 1 && element_size != 2) {
        return FXPQ_ERR_BAD_PARAM;
    }
    for (n = 0; n < num_inputs; ++n) {
        if (inputs[n] == NULL) {
            return FXPQ_ERR_NULL_POINTER;
        }
        if (axis_sizes[n] < 1) {
            return FXPQ_ERR_BAD_DIMS;
        }
        total_axis += axis_sizes[n];
    }
    if (total_axis * outer * inner > INT32_MAX) {
        return FXPQ_ERR_BAD_DIMS;
    }
    for (o = 0; o < outer; ++o) {
        for (n = 0; n < num_inputs; ++n) {
            const int32_t run = axis_sizes[n] * inner;
            for (j = 0; j < run; ++j) {
                store_elem(output, element_size, out_i++, load_elem(inputs[n], element_size, o * run + j));
            }
        }
    }
    return FXPQ_OK;
}

/* ------------------------------------------------------------------ ELU -------------------- */

/* exp(x) for x <= 0 in double, without libm: x = k ln2 + r with |r| <= ln2/2, a degree-17
 * Taylor polynomial for exp(r) (truncation below 1e-19), then 2^k by exact halvings. Rounded to
 * float32 this is the correctly rounded expf but where the double result lies within ~1e-16 of a
 * float32 rounding boundary. */
static double exp_nonpositive(double x)
{
    static const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double t, r, p;
    int32_t k, n;
    if (x < -745.0) {
        return 0.0;
    }
    t = x * 1.44269504088896338700e+00;
    k = (int32_t)(t - 0.5); /* t <= 0: truncation of t - 0.5 rounds to nearest */
    r = (x - (double)k * ln2_hi) - (double)k * ln2_lo;
    p = 1.0;
    for (n = 17; n >= 1; --n) {
        p = 1.0 + p * r / (double)n;
    }
    for (; k < 0; ++k) {
        p *= 0.5;
    }
    return p;
}

fxpq_status fxpq_stock_elu_prepare(const fxpq_stock_quant *input, const fxpq_stock_quant *output,
                                   fxpq_stock_elu_params *params)
{
    int32_t v;
    float inverse_scale;
    if (input == NULL || output == NULL || params == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (!valid_quant(input, 0) || !valid_quant(output, 0)) {
        return FXPQ_ERR_BAD_PARAM;
    }
    inverse_scale = 1.0f / output->scale;
    for (v = -128; v <= 127; ++v) { /* elu.cc PopulateLookupTable, every step in float32 */
        const float dequantized = input->scale * (float)(v - input->zero_point);
        const float transformed =
            dequantized < 0.0f ? (float)exp_nonpositive((double)dequantized) - 1.0f : dequantized;
        const float product = transformed * inverse_scale;
        const double magnitude = product < 0.0f ? -(double)product : (double)product;
        float rescaled, quantized;
        int32_t q;
        if (!(magnitude < 2147483648.0)) {
            return FXPQ_ERR_BAD_PARAM; /* TFLM's float -> int32 conversion would be undefined */
        }
        rescaled = (float)(int64_t)(magnitude + 0.5); /* TfLiteRound: half away from zero */
        rescaled = product < 0.0f ? -rescaled : rescaled;
        quantized = rescaled + (float)output->zero_point;
        if (!(quantized < 2147483648.0f && quantized > -2147483648.0f)) {
            return FXPQ_ERR_BAD_PARAM;
        }
        q = (int32_t)quantized; /* truncation toward zero, as static_cast<int32_t> */
        params->table[v + 128] = (int8_t)clamp32(q, -128, 127);
    }
    return FXPQ_OK;
}

fxpq_status fxpq_stock_elu_s8(const fxpq_stock_elu_params *params, int32_t size, const int8_t *input,
                              int8_t *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (size < 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    for (i = 0; i < size; ++i) {
        output[i] = params->table[input[i] + 128];
    }
    return FXPQ_OK;
}
