/*
 * fxpq_dsp.c - optimized conv 2D / fully connected / depthwise conv 2D for ARMv7E-M (Cortex-M4,
 * M7: the DSP extension's dual 16-bit multiply-accumulate SMLAD). docs/kernels.md explains the
 * design and where the instructions go; the reference loops of fxpq_conv2d.c & co. define the
 * results, and these kernels must reproduce them bit for bit.
 *
 * Conv and fully connected (a 1x1 conv over batches) share one structure:
 *  - im2col: FXPQ_PIXELS output pixels' receptive fields are copied into the scratch as int16
 *    columns (zeros at padded taps), in the lane order the weight decoder produces, so that one
 *    32-bit load gives two inputs that pair with two weights;
 *  - for each output channel the packed weight row is decoded from the bit stream straight into
 *    registers, 8 weights per step (two int16 lanes per register), and every decoded register
 *    meets all FXPQ_PIXELS columns (SMLAD: two products and the sum in one instruction);
 *  - the finish is int32 (bias + rounding constant, one arithmetic shift, clamp) whenever the
 *    accumulator's bound proves it exact, else the reference's int64 finish.
 * Lane order inside a group of 8 terms: registers [t0,t2] [t1,t3] [t4,t6] [t5,t7] (bottom half
 * first): SXTB16 of a word of four int8 weights gives [t0,t2], of the word rotated by 8 [t1,t3].
 */
#include <string.h>

#include "fxpq_internal.h"

#define FXPQ_PIXELS 4 /* output pixels (im2col columns) per pass over a weight row */

/* The scratch sizes are the same in every build (optimized or not, host or Cortex-M), so that an
 * arena planned on one target fits on every other. */
int32_t fxpq_dsp_conv_scratch(int32_t k)
{
    const int64_t kp = ((int64_t)k + 7) & ~(int64_t)7; /* terms per column, whole groups */
    const int64_t bytes = FXPQ_PIXELS * kp * 2         /* im2col columns, int16 */
                          + kp * 2 + 16                 /* zero-padded copy of the last row */
                          + kp                          /* 8-bit im2col staging row */
                          + 4;                          /* alignment slack */
    return (k <= 0 || bytes > INT32_MAX) ? -1 : (int32_t)bytes;
}

int32_t fxpq_dsp_depthwise_scratch(int32_t k, int32_t channels)
{
    const int64_t c4 = ((int64_t)channels + 3) & ~(int64_t)3;
    const int64_t bytes = 4                  /* alignment slack */
                          + (int64_t)k * c4 * 2 /* weights in lane order, [tap][channel quad] */
                          + c4 * 12           /* per-channel finish: add, shift, multiplier */
                          + (int64_t)k * 2;   /* one channel's unpacked weights */
    return (k <= 0 || channels <= 0 || bytes > INT32_MAX) ? -1 : (int32_t)bytes;
}

#if FXPQ_USE_DSP

#include <arm_acle.h>

#define FXPQ_INLINE static inline __attribute__((always_inline))

/* Bytes of one group of 8 weights in a packed row (numerics.md section 9: every width packed). */
#define FXPQ_GROUP_BYTES(bits) (bits)

static inline uint32_t fxpq_ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* one LDR: unaligned word loads are legal on ARMv7E-M */
    return v;
}

/* SXTB16 / UXTB16 of x rotated right by 8 (bytes 1 and 3): one instruction (GCC 12 does not
 * fold a separate rotate into the operand). */
static inline uint32_t fxpq_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline uint32_t fxpq_uxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline void fxpq_st32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void fxpq_st16(uint8_t *p, int32_t v)
{
    const int16_t h = (int16_t)v;
    memcpy(p, &h, 2);
}

/* ---- finish --------------------------------------------------------------------------------- */

/* Store v (inside the output format's range) as element i of an 8- or 16-bit output: the low
 * byte / halfword is the same for the signed and the unsigned container. */
static inline void fxpq_store_bits(void *out, int32_t es, int32_t i, int32_t v)
{
    if (es == 1) {
        ((uint8_t *)out)[i] = (uint8_t)v;
    } else {
        ((uint16_t *)out)[i] = (uint16_t)v;
    }
}

/* A channel's finish: int32 when |acc| <= bound proves bias + rounding + acc fits int32 and the
 * rescale is a right shift, else the reference's int64 finish (fxpq_weighted_store). */
typedef struct {
    fxpq_channel_quant q;
    int32_t fast, add, shift, mul; /* v = ((acc + add) >> shift) * mul */
} fxpq_finish;

static fxpq_finish fxpq_finish_of(const fxpq_weighted *wk, int32_t o, int64_t acc_bound)
{
    fxpq_finish f;
    const int32_t s = (f.q = fxpq_channel_quant_of(wk->weights, wk->bias, o, wk->in_frac)).acc_frac -
                      wk->out.frac;
    const int64_t bias_mag = f.q.bias < 0 ? -f.q.bias : f.q.bias;
    f.fast = 0;
    f.add = 0;
    f.shift = 0;
    f.mul = 1;
    if (s >= 0 && s <= 31) { /* a right shift with rounding */
        const int64_t round = s > 0 ? ((int64_t)1 << (s - 1)) : 0;
        if (bias_mag + round + acc_bound <= INT32_MAX) {
            f.fast = 1;
            f.add = (int32_t)(f.q.bias + round);
            f.shift = s;
        }
    } else if (s < 0 && s >= -30 && bias_mag + acc_bound <= (INT32_MAX >> -s)) { /* exact left */
        f.fast = 1;
        f.add = (int32_t)f.q.bias;
        f.mul = (int32_t)1 << -s;
    }
    return f;
}

static inline void fxpq_finish_store(const fxpq_weighted *wk, const fxpq_finish *f, int32_t i,
                                     int32_t acc)
{
    if (f->fast) {
        int32_t v = ((acc + f->add) >> f->shift) * f->mul;
        v = v < wk->out.lo ? wk->out.lo : (v > wk->out.hi ? wk->out.hi : v);
        fxpq_store(wk->out.data, wk->out.storage, i, v);
    } else {
        fxpq_weighted_store(wk, &f->q, i, acc);
    }
}

/* max |acc| of k products of the input format with bits_w weights */
static int64_t fxpq_acc_bound(const fxpq_weighted *wk)
{
    const int64_t xmax = wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1))
                                       : (((int64_t)1 << wk->in_bits) - 1);
    return (int64_t)wk->k * xmax * ((int64_t)1 << (wk->weights->bits - 1));
}

static uint8_t *fxpq_align4(void *p)
{
    return (uint8_t *)p + ((4u - ((uintptr_t)p & 3u)) & 3u);
}

/* Two int16 lanes: a in the bottom half, b in the top half. */
FXPQ_INLINE uint32_t fxpq_pack2(int32_t a, int32_t b)
{
    return ((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16);
}

/* Weight i (0..7) of a group of 8 `bits`-wide two's-complement values packed LSB first from
 * byte p (bits a compile-time constant after inlining: one SBFX, or two shifts and an ORR when
 * the value straddles a word). */
FXPQ_INLINE int32_t fxpq_field(const uint8_t *p, const int32_t i, const int32_t bits)
{
    const int32_t pos = i * bits, word = pos >> 5, off = pos & 31;
    uint32_t u = fxpq_ld32(p + 4 * word) >> off;
    if (off + bits > 32) {
        u |= fxpq_ld32(p + 4 * word + 4) << (32 - off);
    }
    return (int32_t)(u << (32 - bits)) >> (32 - bits);
}

/* Decode a group of 8 weights (the first 4 when half) into lane registers w[0..3]. Reads at most
 * FXPQ_GROUP_BYTES(bits) + 3 bytes from p. */
FXPQ_INLINE void fxpq_decode(const uint8_t *p, const int32_t bits, const int32_t half, uint32_t *w)
{
    if (bits == 8) {
        const uint32_t lo = fxpq_ld32(p);
        w[0] = (uint32_t)__sxtb16(lo);
        w[1] = fxpq_sxtb16_ror8(lo);
        if (!half) {
            const uint32_t hi = fxpq_ld32(p + 4);
            w[2] = (uint32_t)__sxtb16(hi);
            w[3] = fxpq_sxtb16_ror8(hi);
        }
    } else {
        w[0] = fxpq_pack2(fxpq_field(p, 0, bits), fxpq_field(p, 2, bits));
        w[1] = fxpq_pack2(fxpq_field(p, 1, bits), fxpq_field(p, 3, bits));
        if (!half) {
            w[2] = fxpq_pack2(fxpq_field(p, 4, bits), fxpq_field(p, 6, bits));
            w[3] = fxpq_pack2(fxpq_field(p, 5, bits), fxpq_field(p, 7, bits));
        }
    }
}

/* acc[j] = dot(weight row, column j) for the `cols` (1 or FXPQ_PIXELS) interleaved columns:
 * `groups` full groups of 8 terms, then 4 more terms when half. int32 accumulation (SMLAD),
 * used only when the contract's width rule proves the exact sum fits. */
FXPQ_INLINE void fxpq_mm(const uint8_t *row, const uint8_t *col, int32_t groups, int32_t half,
                         const int32_t bits, const int32_t cols, int32_t *acc)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t w[4];
    for (; groups > 0; --groups) {
        fxpq_decode(row, bits, 0, w);
        a0 = __smlad((int32_t)fxpq_ld32(col), (int32_t)w[0], a0);
        a0 = __smlad((int32_t)fxpq_ld32(col + 4), (int32_t)w[1], a0);
        a0 = __smlad((int32_t)fxpq_ld32(col + 8), (int32_t)w[2], a0);
        a0 = __smlad((int32_t)fxpq_ld32(col + 12), (int32_t)w[3], a0);
        if (cols == FXPQ_PIXELS) {
            a1 = __smlad((int32_t)fxpq_ld32(col + 16), (int32_t)w[0], a1);
            a1 = __smlad((int32_t)fxpq_ld32(col + 20), (int32_t)w[1], a1);
            a1 = __smlad((int32_t)fxpq_ld32(col + 24), (int32_t)w[2], a1);
            a1 = __smlad((int32_t)fxpq_ld32(col + 28), (int32_t)w[3], a1);
            a2 = __smlad((int32_t)fxpq_ld32(col + 32), (int32_t)w[0], a2);
            a2 = __smlad((int32_t)fxpq_ld32(col + 36), (int32_t)w[1], a2);
            a2 = __smlad((int32_t)fxpq_ld32(col + 40), (int32_t)w[2], a2);
            a2 = __smlad((int32_t)fxpq_ld32(col + 44), (int32_t)w[3], a2);
            a3 = __smlad((int32_t)fxpq_ld32(col + 48), (int32_t)w[0], a3);
            a3 = __smlad((int32_t)fxpq_ld32(col + 52), (int32_t)w[1], a3);
            a3 = __smlad((int32_t)fxpq_ld32(col + 56), (int32_t)w[2], a3);
            a3 = __smlad((int32_t)fxpq_ld32(col + 60), (int32_t)w[3], a3);
        }
        row += FXPQ_GROUP_BYTES(bits);
        col += 16 * cols;
    }
    if (half) {
        fxpq_decode(row, bits, 1, w);
        a0 = __smlad((int32_t)fxpq_ld32(col), (int32_t)w[0], a0);
        a0 = __smlad((int32_t)fxpq_ld32(col + 4), (int32_t)w[1], a0);
        if (cols == FXPQ_PIXELS) {
            a1 = __smlad((int32_t)fxpq_ld32(col + 16), (int32_t)w[0], a1);
            a1 = __smlad((int32_t)fxpq_ld32(col + 20), (int32_t)w[1], a1);
            a2 = __smlad((int32_t)fxpq_ld32(col + 32), (int32_t)w[0], a2);
            a2 = __smlad((int32_t)fxpq_ld32(col + 36), (int32_t)w[1], a2);
            a3 = __smlad((int32_t)fxpq_ld32(col + 48), (int32_t)w[0], a3);
            a3 = __smlad((int32_t)fxpq_ld32(col + 52), (int32_t)w[1], a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#define FXPQ_FINISH_CACHE 32 /* channels whose finish constants are kept on the stack */

/* One pass of the matrix kernel: the columns of up to FXPQ_PIXELS pixels against output channels
 * [o, o_end), with each channel's finish. */
typedef struct {
    const fxpq_weighted *wk;
    const uint8_t *col;
    int32_t groups, half, cols, p0, out_ch, out_es, lo, hi;
    uint8_t *out;
    const int32_t *cache_add;
    const int8_t *cache_shift; /* -1: the channel takes the int64 finish */
    const int32_t *cache_mul;
    int64_t bound;
} fxpq_pass;

FXPQ_INLINE void fxpq_pass_store(const fxpq_pass *ps, int32_t o, const int32_t *acc,
                                 const int32_t cols)
{
    int32_t j;
    if (o < FXPQ_FINISH_CACHE && ps->cache_shift[o] >= 0) {
        const int32_t add = ps->cache_add[o], sh = ps->cache_shift[o], lo = ps->lo, hi = ps->hi;
        const int32_t mul = ps->cache_mul[o];
        const int32_t stride = ps->out_ch * ps->out_es;
        uint8_t *dst = ps->out + (size_t)(ps->p0 * ps->out_ch + o) * (size_t)ps->out_es;
        for (j = 0; j < cols; ++j) {
            int32_t v = ((acc[j] + add) >> sh) * mul;
            v = v < lo ? lo : (v > hi ? hi : v);
            if (ps->out_es == 1) {
                *dst = (uint8_t)v;
            } else {
                fxpq_st16(dst, v);
            }
            dst += stride;
        }
    } else {
        const fxpq_finish f = fxpq_finish_of(ps->wk, o, ps->bound);
        for (j = 0; j < cols; ++j) {
            fxpq_finish_store(ps->wk, &f, (ps->p0 + j) * ps->out_ch + o, acc[j]);
        }
    }
}

typedef void (*fxpq_mm_fn)(const fxpq_pass *ps, const uint8_t *row, int32_t o, int32_t o_end);

/* One specialized copy per weight width: the decoder's shifts and masks become immediates; the
 * channel loop and the finish live inside, so a pass costs one call. */
#define FXPQ_MM_WIDTH(B)                                                                          \
    static void fxpq_mm_w##B(const fxpq_pass *pass, const uint8_t *row, int32_t o, int32_t o_end) \
    {                                                                                           \
        const fxpq_pass local = *pass; /* a copy the output stores cannot alias */              \
        const fxpq_pass *ps = &local;                                                           \
        int32_t acc[4];                                                                         \
        for (; o < o_end; ++o, row += ps->wk->row_bytes) {                                      \
            if (ps->cols == FXPQ_PIXELS) {                                                      \
                fxpq_mm(row, ps->col, ps->groups, ps->half, B, FXPQ_PIXELS, acc);               \
                fxpq_pass_store(ps, o, acc, FXPQ_PIXELS);                                       \
            } else {                                                                            \
                fxpq_mm(row, ps->col, ps->groups, ps->half, B, 1, acc);                         \
                fxpq_pass_store(ps, o, acc, 1);                                                 \
            }                                                                                   \
        }                                                                                       \
    }
FXPQ_MM_WIDTH(2)
FXPQ_MM_WIDTH(3)
FXPQ_MM_WIDTH(4)
FXPQ_MM_WIDTH(5)
FXPQ_MM_WIDTH(6)
FXPQ_MM_WIDTH(7)
FXPQ_MM_WIDTH(8)
FXPQ_MM_WIDTH(9)
FXPQ_MM_WIDTH(10)
FXPQ_MM_WIDTH(11)
FXPQ_MM_WIDTH(12)
FXPQ_MM_WIDTH(13)
FXPQ_MM_WIDTH(14)
FXPQ_MM_WIDTH(15)
FXPQ_MM_WIDTH(16)

static fxpq_mm_fn fxpq_mm_of(int32_t bits)
{
    switch (bits) {
    case 2: return fxpq_mm_w2;
    case 3: return fxpq_mm_w3;
    case 4: return fxpq_mm_w4;
    case 5: return fxpq_mm_w5;
    case 6: return fxpq_mm_w6;
    case 7: return fxpq_mm_w7;
    case 8: return fxpq_mm_w8;
    case 9: return fxpq_mm_w9;
    case 10: return fxpq_mm_w10;
    case 11: return fxpq_mm_w11;
    case 12: return fxpq_mm_w12;
    case 13: return fxpq_mm_w13;
    case 14: return fxpq_mm_w14;
    case 15: return fxpq_mm_w15;
    default: return fxpq_mm_w16;
    }
}

/* ---- im2col ------------------------------------------------------------------------------- */

/* Byte offset of term k of column j among `cols` interleaved columns: groups of 8 terms, each
 * column's group 16 bytes, lanes in the decoder's order [t0,t2] [t1,t3] [t4,t6] [t5,t7]. */
static inline int32_t fxpq_col_offset(int32_t k, int32_t j, int32_t cols)
{
    const int32_t lane = (k & 4) | ((k & 1) << 1) | ((k >> 1) & 1);
    return ((((k >> 3) * cols + j) << 3) | lane) * 2;
}

/* Zero column j (all `groups8` groups). */
static void fxpq_col_zero(uint8_t *col, int32_t j, int32_t cols, int32_t groups8)
{
    int32_t g;
    for (g = 0; g < groups8; ++g) {
        memset(col + (g * cols + j) * 16, 0, 16);
    }
}

/* Terms k .. k+len-1 of column j from a contiguous input run. */
static void fxpq_col_run(uint8_t *col, int32_t j, int32_t cols, int32_t k, const void *src,
                         fxpq_storage s, int32_t len)
{
    int32_t i = 0;
    if (s == FXPQ_STORAGE_INT8 || s == FXPQ_STORAGE_UINT8) {
        const uint8_t *p = (const uint8_t *)src;
        for (; i < len && ((k + i) & 3) != 0; ++i) {
            fxpq_st16(col + fxpq_col_offset(k + i, j, cols), fxpq_load(p, s, i));
        }
        for (; i + 4 <= len; i += 4) {
            const uint32_t x = fxpq_ld32(p + i);
            uint8_t *d = col + fxpq_col_offset(k + i, j, cols);
            if (s == FXPQ_STORAGE_INT8) {
                fxpq_st32(d, (uint32_t)__sxtb16(x));
                fxpq_st32(d + 4, fxpq_sxtb16_ror8(x));
            } else {
                fxpq_st32(d, (uint32_t)__uxtb16(x));
                fxpq_st32(d + 4, fxpq_uxtb16_ror8(x));
            }
        }
    }
    for (; i < len; ++i) {
        fxpq_st16(col + fxpq_col_offset(k + i, j, cols), fxpq_load(src, s, i));
    }
}

/* Column j <- the receptive field of output pixel `pix` (batch-major, then rows, then columns).
 * 8-bit inputs are gathered in natural order into the staging row `stage` (zeros at padded taps
 * and past k), then widened eight at a time into the column's lanes; 16-bit inputs go term by
 * term. */
static void fxpq_im2col(uint8_t *col, int32_t j, int32_t cols, int32_t groups8, const void *input,
                        const fxpq_weighted *wk, const fxpq_geometry *g, int32_t pix,
                        uint8_t *stage)
{
    const int32_t plane = g->out.h * g->out.w, n = pix / plane, r = pix - n * plane;
    const int32_t oy = r / g->out.w, ox = r - oy * g->out.w;
    const int32_t iy0 = oy * g->stride.h - g->pad_t, ix0 = ox * g->stride.w - g->pad_l;
    const int32_t kh = g->filter.h, kw = g->filter.w, c = g->in.c, dw = g->dilation.w;
    int32_t ky0, ky1, kx0, kx1, ky, kx;
    fxpq_valid_taps(iy0, g->dilation.h, kh, g->in.h, &ky0, &ky1);
    fxpq_valid_taps(ix0, dw, kw, g->in.w, &kx0, &kx1);
    if (wk->in_es != 1) {
        if (ky0 != 0 || ky1 != kh || kx0 != 0 || kx1 != kw) {
            fxpq_col_zero(col, j, cols, groups8);
        }
        for (ky = ky0; ky < ky1; ++ky) {
            const int32_t row = (n * g->in.h + iy0 + ky * g->dilation.h) * g->in.w + ix0;
            for (kx = kx0; kx < kx1; ++kx) {
                fxpq_col_run(col, j, cols, (ky * kw + kx) * c,
                             fxpq_elem(input, wk->in_es, (row + kx * dw) * c), wk->in_s, c);
            }
        }
        return;
    }
    if (ky0 != 0 || ky1 != kh || kx0 != 0 || kx1 != kw) {
        memset(stage, 0, (size_t)wk->k);
    }
    if (kx1 > kx0) {
        /* one contiguous run per kernel row when the width dilation is 1, else one per tap */
        const int32_t run = dw == 1 ? (kx1 - kx0) * c : c, runs = dw == 1 ? 1 : kx1 - kx0;
        const int32_t step = dw * c;
        for (ky = ky0; ky < ky1; ++ky) {
            const uint8_t *src = (const uint8_t *)input +
                                 ((n * g->in.h + iy0 + ky * g->dilation.h) * g->in.w + ix0 + kx0 * dw) * c;
            uint8_t *dst = stage + (ky * kw + kx0) * c;
            for (kx = 0; kx < runs; ++kx) {
                int32_t i = 0;
                for (; i + 4 <= run; i += 4) {
                    fxpq_st32(dst + i, fxpq_ld32(src + i));
                }
                for (; i < run; ++i) {
                    dst[i] = src[i];
                }
                src += step;
                dst += run;
            }
        }
    }
    {
        const uint8_t *src = stage;
        uint8_t *d = col + 16 * j;
        int32_t gi;
        if (wk->in_s == FXPQ_STORAGE_INT8) {
            for (gi = 0; gi < groups8; ++gi) {
                const uint32_t a = fxpq_ld32(src), b = fxpq_ld32(src + 4);
                fxpq_st32(d, (uint32_t)__sxtb16(a));
                fxpq_st32(d + 4, fxpq_sxtb16_ror8(a));
                fxpq_st32(d + 8, (uint32_t)__sxtb16(b));
                fxpq_st32(d + 12, fxpq_sxtb16_ror8(b));
                src += 8;
                d += 16 * cols;
            }
        } else {
            for (gi = 0; gi < groups8; ++gi) {
                const uint32_t a = fxpq_ld32(src), b = fxpq_ld32(src + 4);
                fxpq_st32(d, (uint32_t)__uxtb16(a));
                fxpq_st32(d + 4, fxpq_uxtb16_ror8(a));
                fxpq_st32(d + 8, (uint32_t)__uxtb16(b));
                fxpq_st32(d + 12, fxpq_uxtb16_ror8(b));
                src += 8;
                d += 16 * cols;
            }
        }
    }
}

/* ---- conv 2D and fully connected ------------------------------------------------------------ */

int32_t fxpq_dsp_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input)
{
    const int32_t k = wk->k, bits = wk->weights->bits, out_ch = g->filter.n;
    const int32_t kq = (k + 3) & ~3, groups = kq >> 3, half = (kq >> 2) & 1;
    const int32_t groups8 = (k + 7) >> 3, col_bytes = groups8 * 16;
    const int32_t pixels = g->out.n * g->out.h * g->out.w;
    /* bytes the decoder may read from a row's start: past the row's end, into the next row
     * (those lanes meet zero im2col terms); rows closer than this to the end of the weights are
     * decoded from a zero-padded copy instead of reading past the buffer */
    const int32_t max_read = groups8 * FXPQ_GROUP_BYTES(bits) + 4;
    const uint8_t *wdata = (const uint8_t *)wk->weights->data;
    const fxpq_mm_fn mm = fxpq_mm_of(bits);
    uint8_t *const col = fxpq_align4(wk->scratch);
    uint8_t *const last = col + FXPQ_PIXELS * col_bytes;
    uint8_t *const stage = last + col_bytes + 16; /* col_bytes + 16 >= max_read */
    int64_t bound;
    int32_t p0, o, j, cols = FXPQ_PIXELS, in_last = -1;
    fxpq_pass ps;
    int32_t o_safe;
    int32_t cache_add[FXPQ_FINISH_CACHE]; /* the int32 finish of the first channels */
    int8_t cache_shift[FXPQ_FINISH_CACHE]; /* -1: the channel takes the int64 finish */
    int32_t cache_mul[FXPQ_FINISH_CACHE];

    if (wk->acc64 || (wk->in_s == FXPQ_STORAGE_UINT16 && wk->in_bits > 15) ||
        (int64_t)(stage - (uint8_t *)wk->scratch) + col_bytes / 2 > wk->scratch_size) {
        return 0; /* int64 accumulator, values beyond int16 lanes: the reference loop */
    }
    bound = fxpq_acc_bound(wk);
    memset(col, 0, (size_t)FXPQ_PIXELS * (size_t)col_bytes);
    memset(stage, 0, (size_t)col_bytes / 2);
    for (o = 0; o < out_ch && o < FXPQ_FINISH_CACHE; ++o) {
        const fxpq_finish f = fxpq_finish_of(wk, o, bound);
        cache_add[o] = f.add;
        cache_shift[o] = (int8_t)(f.fast ? f.shift : -1);
        cache_mul[o] = f.mul;
    }
    ps.wk = wk;
    ps.col = col;
    ps.groups = groups;
    ps.half = half;
    ps.out_ch = out_ch;
    ps.out_es = fxpq_elem_size(wk->out.storage);
    ps.out = (uint8_t *)wk->out.data;
    ps.lo = wk->out.lo;
    ps.hi = wk->out.hi;
    ps.cache_add = cache_add;
    ps.cache_shift = cache_shift;
    ps.cache_mul = cache_mul;
    ps.bound = bound;
    /* first channel whose row lies closer than max_read to the end of the weights */
    o_safe = out_ch - (max_read + wk->row_bytes - 1) / wk->row_bytes;
    o_safe = o_safe < 0 ? 0 : o_safe;

    for (p0 = 0; p0 < pixels; p0 += cols) {
        if (pixels - p0 < FXPQ_PIXELS && cols != 1) {
            cols = 1; /* the last pixels one at a time, in a freshly zeroed one-column layout */
            memset(col, 0, (size_t)col_bytes);
        }
        for (j = 0; j < cols; ++j) {
            fxpq_im2col(col, j, cols, groups8, input, wk, g, p0 + j, stage);
        }
        ps.cols = cols;
        ps.p0 = p0;
        mm(&ps, wdata, 0, o_safe);
        for (o = o_safe; o < out_ch; ++o) { /* rows the decoder would read past the buffer */
            if (in_last != o) {
                memset(last, 0, (size_t)max_read);
                memcpy(last, wdata + (size_t)o * (size_t)wk->row_bytes, (size_t)wk->row_bytes);
                in_last = o;
            }
            mm(&ps, last, o, o + 1);
        }
    }
    return 1;
}

/* ---- depthwise conv 2D ---------------------------------------------------------------------- */

/* One output channel over every pixel, any storage and multiplier: int32 sums without per-tap
 * calls, the channel's finish. */
#define FXPQ_DW_CHANNEL(in_t)                                                                     \
    do {                                                                                        \
        const in_t *x = (const in_t *)input;                                                    \
        for (n = 0; n < g->in.n; ++n) {                                                         \
            for (oy = 0; oy < g->out.h; ++oy) {                                                 \
                const int32_t iy0 = oy * g->stride.h - g->pad_t;                                \
                int32_t ky0, ky1;                                                               \
                fxpq_valid_taps(iy0, g->dilation.h, kh, g->in.h, &ky0, &ky1);                   \
                for (ox = 0; ox < g->out.w; ++ox) {                                             \
                    const int32_t ix0 = ox * g->stride.w - g->pad_l;                            \
                    int32_t kx0, kx1, ky, kx, acc = 0;                                          \
                    fxpq_valid_taps(ix0, g->dilation.w, kw, g->in.w, &kx0, &kx1);               \
                    for (ky = ky0; ky < ky1; ++ky) {                                            \
                        const in_t *p = x + ((n * g->in.h + iy0 + ky * g->dilation.h) * g->in.w + \
                                             ix0 + kx0 * g->dilation.w) * c_in + c;             \
                        const int16_t *w = wrow + ky * kw;                                      \
                        for (kx = kx0; kx < kx1; ++kx) {                                        \
                            acc += (int32_t)*p * w[kx];                                         \
                            p += xstep;                                                         \
                        }                                                                       \
                    }                                                                           \
                    fxpq_finish_store(wk, &f, ((n * g->out.h + oy) * g->out.w + ox) * cm + o,   \
                                      acc);                                                     \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    } while (0)

static void fxpq_dw_channels(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input,
                             int16_t *wrow, int32_t o_begin, int64_t bound)
{
    const int32_t kh = g->filter.h, kw = g->filter.w, c_in = g->in.c, cm = g->filter.c;
    const int32_t xstep = c_in * g->dilation.w;
    int32_t o, n, oy, ox;
    for (o = o_begin; o < cm; ++o) {
        const int32_t c = o / g->depth_multiplier;
        fxpq_finish f;
        fxpq_unpack_weights((const uint8_t *)wk->weights->data + (size_t)o * (size_t)wk->row_bytes,
                            wk->weights->bits, wk->k, wrow);
        f = fxpq_finish_of(wk, o, bound);
        switch (wk->in_s) {
        case FXPQ_STORAGE_INT8: FXPQ_DW_CHANNEL(int8_t); break;
        case FXPQ_STORAGE_UINT8: FXPQ_DW_CHANNEL(uint8_t); break;
        case FXPQ_STORAGE_INT16: FXPQ_DW_CHANNEL(int16_t); break;
        default: FXPQ_DW_CHANNEL(uint16_t); break;
        }
    }
}

/* One tap of four channels: input word at p, weight lanes at w (offset unused, for symmetry). */
#define FXPQ_DW_TAP(p, w, unused)                                                                 \
    do {                                                                                        \
        const uint32_t v_ = fxpq_ld32(p);                                                       \
        const int32_t w02_ = (int32_t)fxpq_ld32(w), w13_ = (int32_t)fxpq_ld32((w) + 4);         \
        const int32_t x02_ = (int32_t)(is_signed ? (uint32_t)__sxtb16(v_) : (uint32_t)__uxtb16(v_)); \
        const int32_t x13_ = (int32_t)(is_signed ? fxpq_sxtb16_ror8(v_) : fxpq_uxtb16_ror8(v_)); \
        a0 = __smlabb(x02_, w02_, a0);                                                          \
        a2 = __smlatt(x02_, w02_, a2);                                                          \
        a1 = __smlabb(x13_, w13_, a1);                                                          \
        a3 = __smlatt(x13_, w13_, a3);                                                          \
        (void)(unused);                                                                         \
    } while (0)

/* Four channels of one 8-bit input pixel at a time (multiplier 1): one word load and two
 * SXTB16/UXTB16 give the lanes [c0,c2] [c1,c3], which meet the weights [c0,c2] [c1,c3] of the
 * tap with SMLABB / SMLATT (a separate sum per channel). */
FXPQ_INLINE void fxpq_dw_quads(const fxpq_weighted *wk, const fxpq_geometry *g, const uint8_t *x,
                               const uint8_t *wl, const int32_t *add, const int32_t *shift,
                               const int32_t *mul,
                               const int32_t is_signed)
{
    const int32_t kh = g->filter.h, kw = g->filter.w, c = g->in.c, quads = c >> 2;
    const int32_t xstep = c * g->dilation.w, wstep = ((c + 3) >> 2) * 8;
    const int32_t row_step = g->in.w * c * g->dilation.h;
    const int32_t lo = wk->out.lo, hi = wk->out.hi, out_es = fxpq_elem_size(wk->out.storage);
    int32_t n, oy, ox, q;
    for (n = 0; n < g->in.n; ++n) {
        for (oy = 0; oy < g->out.h; ++oy) {
            const int32_t iy0 = oy * g->stride.h - g->pad_t;
            int32_t ky0, ky1;
            fxpq_valid_taps(iy0, g->dilation.h, kh, g->in.h, &ky0, &ky1);
            for (ox = 0; ox < g->out.w; ++ox) {
                const int32_t ix0 = ox * g->stride.w - g->pad_l;
                uint8_t *out = (uint8_t *)wk->out.data + (size_t)(((n * g->out.h + oy) * g->out.w + ox) * c) * (size_t)out_es;
                const uint8_t *px, *wb;
                int32_t kx0, kx1, taps_x;
                fxpq_valid_taps(ix0, g->dilation.w, kw, g->in.w, &kx0, &kx1);
                taps_x = kx1 - kx0;
                px = x + ((n * g->in.h + iy0 + ky0 * g->dilation.h) * g->in.w + ix0 + kx0 * g->dilation.w) * c;
                wb = wl + (ky0 * kw + kx0) * wstep;
                for (q = 0; q < quads; ++q) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, ky, kx;
                    const uint8_t *pr = px + 4 * q, *wr = wb + 8 * q;
                    for (ky = ky0; ky < ky1 && taps_x > 0; ++ky) {
                        const uint8_t *p = pr, *w = wr;
                        if (taps_x == 3) { /* the common 3-wide window, unrolled */
                            FXPQ_DW_TAP(p, w, 0);
                            FXPQ_DW_TAP(p + xstep, w + wstep, 0);
                            FXPQ_DW_TAP(p + 2 * xstep, w + 2 * wstep, 0);
                        } else {
                            for (kx = 0; kx < taps_x; ++kx) {
                                FXPQ_DW_TAP(p, w, 0);
                                p += xstep;
                                w += wstep;
                            }
                        }
                        pr += row_step;
                        wr += kw * wstep;
                    }
                    {
                        const int32_t ch = 4 * q;
                        int32_t v0 = ((a0 + add[ch]) >> shift[ch]) * mul[ch];
                        int32_t v1 = ((a1 + add[ch + 1]) >> shift[ch + 1]) * mul[ch + 1];
                        int32_t v2 = ((a2 + add[ch + 2]) >> shift[ch + 2]) * mul[ch + 2];
                        int32_t v3 = ((a3 + add[ch + 3]) >> shift[ch + 3]) * mul[ch + 3];
                        v0 = v0 < lo ? lo : (v0 > hi ? hi : v0);
                        v1 = v1 < lo ? lo : (v1 > hi ? hi : v1);
                        v2 = v2 < lo ? lo : (v2 > hi ? hi : v2);
                        v3 = v3 < lo ? lo : (v3 > hi ? hi : v3);
                        if (out_es == 1) {
                            fxpq_st32(out + ch, ((uint32_t)v0 & 0xFFu) | (((uint32_t)v1 & 0xFFu) << 8) |
                                                    (((uint32_t)v2 & 0xFFu) << 16) | ((uint32_t)v3 << 24));
                        } else {
                            fxpq_st32(out + 2 * ch, ((uint32_t)v0 & 0xFFFFu) | ((uint32_t)v1 << 16));
                            fxpq_st32(out + 2 * ch + 4, ((uint32_t)v2 & 0xFFFFu) | ((uint32_t)v3 << 16));
                        }
                    }
                }
            }
        }
    }
}

int32_t fxpq_dsp_depthwise_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g,
                                  const void *input)
{
    const int32_t k = wk->k, c = g->filter.c, quads = c >> 2, c4 = (c + 3) & ~3;
    uint8_t *const wl = fxpq_align4(wk->scratch);
    int32_t *const add = (int32_t *)(void *)(wl + (size_t)k * (size_t)c4 * 2);
    int32_t *const shift = add + c4;
    int32_t *const mul = shift + c4;
    int16_t *const wrow = (int16_t *)(void *)(mul + c4);
    int64_t bound;
    int32_t o, t;
    if (wk->acc64) {
        return 0;
    }
    if ((int64_t)((uint8_t *)(wrow + k) - (uint8_t *)wk->scratch) > wk->scratch_size) {
        return 0;
    }
    bound = fxpq_acc_bound(wk);
    if (g->depth_multiplier == 1 && quads > 0 &&
        (wk->in_s == FXPQ_STORAGE_INT8 || wk->in_s == FXPQ_STORAGE_UINT8)) {
        int32_t all_fast = 1;
        /* weights of the whole channel quads in lane order, finish constants per channel */
        for (o = 0; o < quads * 4 && all_fast; ++o) {
            const fxpq_finish f = fxpq_finish_of(wk, o, bound);
            const int32_t lane = (o & 1) * 4 + ((o >> 1) & 1) * 2; /* byte offset in the quad */
            fxpq_unpack_weights((const uint8_t *)wk->weights->data + (size_t)o * (size_t)wk->row_bytes,
                                wk->weights->bits, k, wrow);
            for (t = 0; t < k; ++t) {
                fxpq_st16(wl + (size_t)t * (size_t)c4 * 2 + (size_t)(o >> 2) * 8 + (size_t)lane, wrow[t]);
            }
            all_fast = f.fast;
            add[o] = f.add;
            shift[o] = f.shift;
            mul[o] = f.mul;
        }
        if (all_fast) {
            if (wk->in_s == FXPQ_STORAGE_INT8) {
                fxpq_dw_quads(wk, g, (const uint8_t *)input, wl, add, shift, mul, 1);
            } else {
                fxpq_dw_quads(wk, g, (const uint8_t *)input, wl, add, shift, mul, 0);
            }
            fxpq_dw_channels(wk, g, input, wrow, quads * 4, bound); /* the last 1..3 channels */
            return 1;
        }
    }
    fxpq_dw_channels(wk, g, input, wrow, 0, bound);
    return 1;
}

/* ---- max pool 2D ------------------------------------------------------------------------------ */

/* 8-bit inputs: the maximum of four channels at once (SSUB8/USUB8 set the per-byte GE flags, SEL
 * picks the larger bytes), then an int32 rescale and clamp per output. */
int32_t fxpq_dsp_max_pool2d(const fxpq_pool_params *params, const fxpq_dims *id, const void *input,
                            const fxpq_format *input_fmt, const fxpq_dims *od, void *output,
                            const fxpq_format *output_fmt, int32_t pad_t, int32_t pad_l, int32_t lo,
                            int32_t hi)
{
    const fxpq_storage in_s = fxpq_storage_of(input_fmt);
    const int32_t out_es = fxpq_elem_size(fxpq_storage_of(output_fmt));
    const int32_t shift = input_fmt->frac - output_fmt->frac, c = id->c, quads = c >> 2;
    const int32_t round = shift > 0 ? (int32_t)1 << (shift - 1) : 0, is_signed = in_s == FXPQ_STORAGE_INT8;
    const uint8_t *x = (const uint8_t *)input;
    int32_t n, oy, ox, q, j;
    if ((in_s != FXPQ_STORAGE_INT8 && in_s != FXPQ_STORAGE_UINT8) || shift > 31 || shift < -15) {
        return 0;
    }
    for (n = 0; n < od->n; ++n) {
        for (oy = 0; oy < od->h; ++oy) {
            const int32_t iy0 = oy * params->stride.h - pad_t;
            int32_t ky0, ky1;
            fxpq_valid_taps(iy0, 1, params->filter.h, id->h, &ky0, &ky1);
            for (ox = 0; ox < od->w; ++ox) {
                const int32_t ix0 = ox * params->stride.w - pad_l;
                const int32_t obase = ((n * od->h + oy) * od->w + ox) * c;
                const uint8_t *first;
                int32_t kx0, kx1, ky, kx;
                fxpq_valid_taps(ix0, 1, params->filter.w, id->w, &kx0, &kx1);
                first = x + ((n * id->h + iy0 + ky0) * id->w + ix0 + kx0) * c;
                for (q = 0; q <= quads; ++q) {
                    const int32_t lanes = q < quads ? 4 : c - 4 * quads;
                    uint32_t m;
                    if (lanes == 0) {
                        break;
                    }
                    if (lanes == 4) {
                        m = fxpq_ld32(first + 4 * q);
                        for (ky = ky0; ky < ky1; ++ky) {
                            const uint8_t *p = x + ((n * id->h + iy0 + ky) * id->w + ix0 + kx0) * c + 4 * q;
                            for (kx = kx0; kx < kx1; ++kx) {
                                const uint32_t v = fxpq_ld32(p);
                                if (is_signed) {
                                    (void)__ssub8((int32_t)v, (int32_t)m);
                                } else {
                                    (void)__usub8(v, m);
                                }
                                m = __sel(v, m);
                                p += c;
                            }
                        }
                    } else { /* the last 1..3 channels, one byte at a time */
                        int32_t best[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
                        for (ky = ky0; ky < ky1; ++ky) {
                            const uint8_t *p = x + ((n * id->h + iy0 + ky) * id->w + ix0 + kx0) * c + 4 * q;
                            for (kx = kx0; kx < kx1; ++kx) {
                                for (j = 0; j < lanes; ++j) {
                                    const int32_t v = fxpq_load(p, in_s, j);
                                    best[j] = v > best[j] ? v : best[j];
                                }
                                p += c;
                            }
                        }
                        m = 0;
                        for (j = 0; j < lanes; ++j) {
                            m |= ((uint32_t)best[j] & 0xFFu) << (8 * j);
                        }
                    }
                    for (j = 0; j < lanes; ++j) {
                        const uint32_t b = (m >> (8 * j)) & 0xFFu;
                        int32_t v = is_signed ? (int32_t)b - (int32_t)((b & 0x80u) << 1) : (int32_t)b;
                        v = shift >= 0 ? (v + round) >> shift : v * ((int32_t)1 << -shift);
                        v = v < lo ? lo : (v > hi ? hi : v);
                        fxpq_store_bits(output, out_es, obase + 4 * q + j, v);
                    }
                }
            }
        }
    }
    return 1;
}

/* ---- add ------------------------------------------------------------------------------------- */

/* The aligned sum, the rescale and the clamp in int32 when the operands' bound proves that no
 * intermediate reaches 2^31 (typed loops for 8-bit inputs, a generic load otherwise). */
#define FXPQ_ADD_LOOP(a_t, b_t)                                                                   \
    do {                                                                                        \
        const a_t *pa = (const a_t *)a;                                                         \
        const b_t *pb = (const b_t *)b;                                                         \
        for (i = 0; i < size; ++i) {                                                            \
            int32_t v = (int32_t)pa[i] * mul_a + (int32_t)pb[i] * mul_b;                        \
            v = shift >= 0 ? (v + round) >> shift : v * left;                                   \
            v = v < lo ? lo : (v > hi ? hi : v);                                                \
            fxpq_store_bits(output, out_es, i, v);                                              \
        }                                                                                       \
    } while (0)

int32_t fxpq_dsp_add(int32_t size, const void *a, fxpq_storage a_s, int32_t sa, const void *b,
                     fxpq_storage b_s, int32_t sb, int32_t frac, const fxpq_output *out, void *output)
{
    const int32_t shift = frac - out->frac, lo = out->lo, hi = out->hi;
    const int32_t out_es = fxpq_elem_size(out->storage);
    const int32_t round = shift > 0 && shift <= 31 ? (int32_t)1 << (shift - 1) : 0;
    const int32_t left = shift < 0 && shift >= -7 ? (int32_t)1 << -shift : 0;
    int32_t i, mul_a, mul_b;
    const int64_t bound = ((int64_t)1 << (8 * fxpq_elem_size(a_s) + sa)) +
                          ((int64_t)1 << (8 * fxpq_elem_size(b_s) + sb));
    if (sa > 16 || sb > 16 || shift > 31 || shift < -7 || bound + round >= ((int64_t)1 << 31) ||
        (left != 0 && bound * left >= ((int64_t)1 << 31))) {
        return 0;
    }
    mul_a = (int32_t)1 << sa; /* multiplies, not shifts: no left shift of a negative value */
    mul_b = (int32_t)1 << sb;
    if (fxpq_elem_size(a_s) != 1 || fxpq_elem_size(b_s) != 1) {
        for (i = 0; i < size; ++i) {
            int32_t v = fxpq_load(a, a_s, i) * mul_a + fxpq_load(b, b_s, i) * mul_b;
            v = shift >= 0 ? (v + round) >> shift : v * left;
            v = v < lo ? lo : (v > hi ? hi : v);
            fxpq_store_bits(output, out_es, i, v);
        }
        return 1;
    }
    if (a_s == FXPQ_STORAGE_INT8) {
        if (b_s == FXPQ_STORAGE_INT8) {
            FXPQ_ADD_LOOP(int8_t, int8_t);
        } else {
            FXPQ_ADD_LOOP(int8_t, uint8_t);
        }
    } else if (b_s == FXPQ_STORAGE_INT8) {
        FXPQ_ADD_LOOP(uint8_t, int8_t);
    } else {
        FXPQ_ADD_LOOP(uint8_t, uint8_t);
    }
    return 1;
}

#endif
