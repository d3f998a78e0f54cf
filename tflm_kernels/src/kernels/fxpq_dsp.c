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
 *    accumulator's bound proves it exact, else the reference's int64 finish;
 *  - unsigned 16-bit inputs become lanes x - 2^15 (EOR 0x80008000), the finish adds 2^15 * the
 *    row's weight sum back; an accumulator the width rule puts in int64 stays int32 when the
 *    rows' sum |w| * max|x| proves the exact sum fits, else runs as exact int32 partial sums of a
 *    few groups added in int64.
 *  - when a row meets many pixels it is unpacked once per call instead (a 1 KB stack block of
 *    rows): 16-bit columns against natural-order int16 rows (SMLAD, or SMLALD when the sum needs
 *    int64), 8-bit columns against int16 lane rows for weights other than 8-bit.
 * Depthwise (channel quads, 8- and 16-bit inputs, unclipped interior pixels), average pooling,
 * max pooling and add have their own loops below.
 * Lane order inside a group of 8 terms: registers [t0,t2] [t1,t3] [t4,t6] [t5,t7] (bottom half
 * first): SXTB16 of a word of four int8 weights gives [t0,t2], of the word rotated by 8 [t1,t3].
 */
#include <string.h>

#include "fxpq_internal.h"

#define FXPQ_PIXELS 4 /* output pixels (im2col columns) per pass over a weight row */

/* The scratch size is the same in every build (optimized or not, host or Cortex-M), so that an
 * arena planned on one target fits on every other. A 1x1 kernel (and fully connected) reads its
 * columns straight from the input and depthwise decodes each channel quad's weights on the stack:
 * no scratch. A KxK kernel gathers its im2col columns: FXPQ_PIXELS columns of K 8-bit terms (or
 * one column of K 16-bit terms) = FXPQ_PIXELS * K bytes. */
int32_t fxpq_dsp_conv_scratch(int32_t k, int32_t pointwise)
{
    const int64_t bytes = pointwise ? 0 : (int64_t)FXPQ_PIXELS * k;
    return (k <= 0 || bytes > INT32_MAX) ? -1 : (int32_t)bytes;
}

#if FXPQ_USE_DSP

#include <arm_acle.h>

#define FXPQ_INLINE static inline __attribute__((always_inline))
/* The specialized copies stay functions of their own in every build: a selective build
 * (fxpq_paths.h) that keeps one copy must not inline it into its caller, which would change the
 * caller's register allocation and the instruction counts of the full build. */
#define FXPQ_COPY static __attribute__((noinline))

/* Pseudo width of rows already unpacked into int16 lanes in the decoder's order (16 bytes a
 * group of 8: [t0,t2] [t1,t3] [t4,t6] [t5,t7]); packed widths are 2..16. */
#define FXPQ_W_LANES 1

/* Bytes of one group of 8 weights in a packed row (numerics.md section 9: every width packed). */
#define FXPQ_GROUP_BYTES(bits) ((bits) == FXPQ_W_LANES ? 16 : (bits))

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

/* Two int16 lanes: a in the bottom half, b in the top half (one PKHBT; GCC 12 emits UXTH + ORR
 * for the C expression). */
FXPQ_INLINE uint32_t fxpq_pack2(int32_t a, int32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* Weight i (0..7) of a group of 8 `bits`-wide two's-complement values packed LSB first from
 * byte p (bits a compile-time constant after inlining). Every field (at most 16 bits at any bit
 * offset) lies inside one 32-bit window that starts at a byte of the group and ends inside it
 * (unaligned word loads are legal on ARMv7E-M): the word of the field's 32-bit slot when the
 * field fits there, else the window at the field's first byte, moved back so that it never
 * passes the group's last byte. So one load (shared by the fields of a window) and one SBFX per
 * weight, and no read past the group: a row's last group may end the weights buffer. Groups of
 * 2 and 3 bytes are read as a halfword (and a byte). */
FXPQ_INLINE int32_t fxpq_field(const uint8_t *p, const int32_t i, const int32_t bits)
{
    const int32_t pos = i * bits;
    int32_t q;
    uint32_t u;
    if (bits < 4) {
        u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | (bits == 3 ? (uint32_t)p[2] << 16 : 0u);
        q = 0;
    } else {
        q = (pos >> 5) << 2;
        q = q > bits - 4 ? bits - 4 : q;
        if (pos - 8 * q + bits > 32) {
            q = (pos >> 3) > bits - 4 ? bits - 4 : (pos >> 3);
        }
        u = fxpq_ld32(p + q);
    }
    return (int32_t)(u << (32 - bits - (pos - 8 * q))) >> (32 - bits);
}

/* Decode 4 weights (terms `first` .. first+3 of the group at p, first 0 or 4) into the lane
 * registers [t0,t2] [t1,t3] (relative to first). Reads only bytes of the group (`bits` bytes). */
FXPQ_INLINE void fxpq_decode4(const uint8_t *p, const int32_t bits, const int32_t first, uint32_t *w02,
                              uint32_t *w13)
{
    if (bits == FXPQ_W_LANES) {
        *w02 = fxpq_ld32(p + 2 * first);
        *w13 = fxpq_ld32(p + 2 * first + 4);
    } else if (bits == 8) {
        const uint32_t v = fxpq_ld32(p + first);
        *w02 = (uint32_t)__sxtb16(v);
        *w13 = fxpq_sxtb16_ror8(v);
    } else {
        *w02 = fxpq_pack2(fxpq_field(p, first, bits), fxpq_field(p, first + 2, bits));
        *w13 = fxpq_pack2(fxpq_field(p, first + 1, bits), fxpq_field(p, first + 3, bits));
    }
}

/* Input kinds of the matrix kernel (the activation container as lanes). */
#define FXPQ_X_S8 0  /* int8: SXTB16 */
#define FXPQ_X_U8 1  /* uint8: UXTB16 */
#define FXPQ_X_16 2  /* int16, or uint16 of at most 15 bits: the halfword is the lane */
#define FXPQ_X_U16 3 /* uint16 of 16 bits: EOR 0x80008000 makes the lanes x - 2^15; the finish adds
                      * 2^15 * (the row's weight sum) back, exact modulo 2^32 */

/* The input kind of a weighted call (the kernel tables' column index). */
FXPQ_INLINE int32_t fxpq_input_kind(const fxpq_weighted *wk)
{
    return wk->in_s == FXPQ_STORAGE_INT8    ? FXPQ_X_S8
           : wk->in_s == FXPQ_STORAGE_UINT8 ? FXPQ_X_U8
           : wk->in_s == FXPQ_STORAGE_UINT16 && wk->in_bits > 15 ? FXPQ_X_U16
                                                                 : FXPQ_X_16;
}

/* 4 terms of one column against the weight lanes w02 / w13: the column's loads, lane
 * extraction and SMLADs in one asm block each, so that the compiler neither hoists the loads of
 * four columns nor spills the four accumulators (14 registers hold the loop). */
#define FXPQ_MAC4_8(c, acc, ext)                                                                  \
    do {                                                                                        \
        uint32_t x_, t_;                                                                        \
        __asm__("ldr %[x], [%[p]], #4\n\t"                                                      \
                ext " %[t], %[x]\n\t"                                                           \
                "smlad %[a], %[t], %[w0], %[a]\n\t"                                             \
                ext " %[t], %[x], ror #8\n\t"                                                   \
                "smlad %[a], %[t], %[w1], %[a]"                                                  \
                : [p] "+r"(c), [a] "+r"(acc), [x] "=&r"(x_), [t] "=&r"(t_)                       \
                : [w0] "r"(w02), [w1] "r"(w13)                                                   \
                : "memory");                                                                    \
    } while (0)

#define FXPQ_MAC4_16(c, acc, flip)                                                                \
    do {                                                                                        \
        uint32_t x_, y_, t_;                                                                    \
        __asm__("ldr %[x], [%[p]], #4\n\t"                                                      \
                "ldr %[y], [%[p]], #4\n\t"                                                      \
                flip                                                                            \
                "pkhbt %[t], %[x], %[y], lsl #16\n\t"                                           \
                "smlad %[a], %[t], %[w0], %[a]\n\t"                                             \
                "pkhtb %[t], %[y], %[x], asr #16\n\t"                                           \
                "smlad %[a], %[t], %[w1], %[a]"                                                  \
                : [p] "+r"(c), [a] "+r"(acc), [x] "=&r"(x_), [y] "=&r"(y_), [t] "=&r"(t_)         \
                : [w0] "r"(w02), [w1] "r"(w13)                                                   \
                : "memory");                                                                    \
    } while (0)

#define FXPQ_MAC4(c, acc)                                                                         \
    do {                                                                                        \
        if (kind == FXPQ_X_S8) {                                                                \
            FXPQ_MAC4_8(c, acc, "sxtb16");                                                      \
        } else if (kind == FXPQ_X_U8) {                                                         \
            FXPQ_MAC4_8(c, acc, "uxtb16");                                                      \
        } else if (kind == FXPQ_X_16) {                                                         \
            FXPQ_MAC4_16(c, acc, "");                                                           \
        } else {                                                                                \
            FXPQ_MAC4_16(c, acc, "eor %[x], %[x], #0x80008000\n\teor %[y], %[y], #0x80008000\n\t"); \
        }                                                                                       \
    } while (0)

/* 4 terms of one column of the tail lane block (already int16 lanes in decoder order). */
#define FXPQ_MAC4_LANES(t, acc)                                                                   \
    do {                                                                                        \
        (acc) = __smlad((int32_t)fxpq_ld32(t), (int32_t)w02, (acc));                            \
        (acc) = __smlad((int32_t)fxpq_ld32((t) + 4), (int32_t)w13, (acc));                      \
    } while (0)

/* acc[j] = dot(weight row, column j) for `cols` (1 or FXPQ_PIXELS) natural-order columns
 * col[j] of `kind`: `groups` whole groups of 8 terms from `row`, then, when `tail` (K mod 8) is
 * not 0, one group of weights from `trow` (the row's last bytes, in place or a zero-padded copy
 * when the group's `bits` bytes would pass the end of the weights) against the tail lane block.
 * int32 accumulation (SMLAD), used only when the contract's width rule proves that the exact sum
 * fits. */
FXPQ_INLINE void fxpq_mm(const uint8_t *row, const uint8_t *trow, int32_t groups,
                         const uint8_t *const *col, const uint8_t *tl, const int32_t tail,
                         const int32_t bits, const int32_t kind, const int32_t cols, int32_t *acc)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const uint8_t *c0 = col[0], *c1 = col[cols > 1 ? 1 : 0], *c2 = col[cols > 2 ? 2 : 0];
    const uint8_t *c3 = col[cols > 2 ? 3 : 0];
    uint32_t w02, w13;
    for (; groups > 0; --groups) {
        fxpq_decode4(row, bits, 0, &w02, &w13);
        FXPQ_MAC4(c0, a0);
        if (cols >= 2) {
            FXPQ_MAC4(c1, a1);
        }
        if (cols == FXPQ_PIXELS) {
            FXPQ_MAC4(c2, a2);
            FXPQ_MAC4(c3, a3);
        }
        fxpq_decode4(row, bits, 4, &w02, &w13);
        FXPQ_MAC4(c0, a0);
        if (cols >= 2) {
            FXPQ_MAC4(c1, a1);
        }
        if (cols == FXPQ_PIXELS) {
            FXPQ_MAC4(c2, a2);
            FXPQ_MAC4(c3, a3);
        }
        row += FXPQ_GROUP_BYTES(bits);
    }
    if (tail != 0) {
        fxpq_decode4(trow, bits, 0, &w02, &w13);
        FXPQ_MAC4_LANES(tl, a0);
        if (cols >= 2) {
            FXPQ_MAC4_LANES(tl + 16, a1);
        }
        if (cols == FXPQ_PIXELS) {
            FXPQ_MAC4_LANES(tl + 32, a2);
            FXPQ_MAC4_LANES(tl + 48, a3);
        }
        if (tail > 4) {
            fxpq_decode4(trow, bits, 4, &w02, &w13);
            FXPQ_MAC4_LANES(tl + 8, a0);
            if (cols >= 2) {
                FXPQ_MAC4_LANES(tl + 24, a1);
            }
            if (cols == FXPQ_PIXELS) {
                FXPQ_MAC4_LANES(tl + 40, a2);
                FXPQ_MAC4_LANES(tl + 56, a3);
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#define FXPQ_FINISH_CACHE 64 /* channels whose finish constants are kept on the stack */
#define FXPQ_SUM_BLOCK 8     /* channels of one block of int64 sums (chunked accumulation) */

/* One pass of the matrix kernel: up to FXPQ_PIXELS pixels' columns against output channels
 * [o, o_end), with each channel's finish. */
typedef struct {
    const fxpq_weighted *wk;
    const uint8_t *col[FXPQ_PIXELS]; /* natural-order columns: K elements of in_es bytes each */
    const uint8_t *tail_lanes;       /* the last K mod 8 terms of each column, 16 bytes a column */
    int32_t groups, tail, cols, p0, out_ch, out_es, lo, hi;
    int32_t row_step; /* bytes from one weight row to the next (packed, or the lanes block's) */
    uint8_t *out;
    const int32_t *cache_add;
    const int8_t *cache_shift; /* -1: the channel takes the int64 finish */
    const int32_t *cache_mul;
    int64_t bound;
    int32_t u16;   /* FXPQ_X_U16 lanes: the sums lack 2^15 * (the row's weight sum) */
    int64_t *sums; /* chunked accumulation: add the int32 partial sums of channels [o_first,
                    * o_first + FXPQ_SUM_BLOCK) here (FXPQ_PIXELS a channel) instead of finishing */
    int32_t o_first;
} fxpq_pass;

/* The width-specialized row unpackers (defined with the unpacked-row paths below). */
typedef void (*fxpq_unpack_fn)(const uint8_t *row, int32_t groups, uint8_t *dst, int32_t mode);
static const fxpq_unpack_fn fxpq_unpack_table[15];
#define FXPQ_ROW_I16 0   /* int16, natural order (16-bit columns pair with it word for word) */
#define FXPQ_ROW_LANES 2 /* int16 lanes in the decoder's order (FXPQ_W_LANES: 8-bit columns) */

/* Sum of the K weights of row o (the FXPQ_X_U16 correction's factor); *abs_sum: of their
 * magnitudes (bounds the row's exact dot product), when not NULL. Whole groups through the
 * width's unpacker, 8 groups at a time; the last K mod 8 terms through the portable one. */
static int32_t fxpq_row_sums(const fxpq_weighted *wk, int32_t o, int32_t *abs_sum)
{
    const uint8_t *row = (const uint8_t *)wk->weights->data + (size_t)o * (size_t)wk->row_bytes;
    const int32_t bits = wk->weights->bits, groups = wk->k >> 3;
    int16_t w[FXPQ_WCHUNK]; /* 8 groups */
    int32_t g, i, n, sum = 0, mag = 0;
    for (g = 0; g < groups + 8; g += 8) { /* g >= groups: the tail */
        if (g < groups) {
            const int32_t ng = groups - g < 8 ? groups - g : 8;
            fxpq_unpack_table[bits - 2](row + (size_t)g * (size_t)bits, ng, (uint8_t *)w, FXPQ_ROW_I16);
            n = 8 * ng;
        } else {
            n = wk->k & 7;
            fxpq_unpack_run(row, bits, 8 * groups, n, w);
        }
        for (i = 0; i < n; ++i) {
            sum += w[i];
            mag += w[i] < 0 ? -w[i] : w[i];
        }
    }
    if (abs_sum != NULL) {
        *abs_sum = mag;
    }
    return sum;
}

static int32_t fxpq_row_sum(const fxpq_weighted *wk, int32_t o)
{
    return fxpq_row_sums(wk, o, NULL);
}

/* The finish of a channel that is not in the cache or needs int64 (not inlined: rare). */
static void fxpq_pass_store_slow(const fxpq_pass *ps, int32_t o, const int32_t *acc, int32_t cols)
{
    const fxpq_finish f = fxpq_finish_of(ps->wk, o, ps->bound);
    const uint32_t corr = ps->u16 ? (uint32_t)fxpq_row_sum(ps->wk, o) << 15 : 0u;
    int32_t j;
    for (j = 0; j < cols; ++j) { /* the exact sum fits int32: the wrapped sum plus corr is it */
        fxpq_finish_store(ps->wk, &f, (ps->p0 + j) * ps->out_ch + o, (int32_t)((uint32_t)acc[j] + corr));
    }
}

FXPQ_INLINE void fxpq_pass_store(const fxpq_pass *ps, int32_t o, const int32_t *acc,
                                 const int32_t cols)
{
    int32_t j;
    if (ps->sums != NULL) {
        int64_t *s = ps->sums + (o - ps->o_first) * FXPQ_PIXELS;
        for (j = 0; j < cols; ++j) {
            s[j] += acc[j];
        }
        return;
    }
    if (o < FXPQ_FINISH_CACHE && ps->cache_shift[o] >= 0) {
        const int32_t add = ps->cache_add[o], sh = ps->cache_shift[o], lo = ps->lo, hi = ps->hi;
        const int32_t mul = ps->cache_mul[o];
        const int32_t stride = ps->out_ch * ps->out_es;
        uint8_t *dst = ps->out + (size_t)(ps->p0 * ps->out_ch + o) * (size_t)ps->out_es;
        for (j = 0; j < cols; ++j) {
            int32_t v = ((int32_t)((uint32_t)acc[j] + (uint32_t)add) >> sh) * mul;
            v = v < lo ? lo : (v > hi ? hi : v);
            if (ps->out_es == 1) {
                *dst = (uint8_t)v;
            } else {
                fxpq_st16(dst, v);
            }
            dst += stride;
        }
    } else {
        fxpq_pass_store_slow(ps, o, acc, cols);
    }
}

typedef void (*fxpq_mm_fn)(const fxpq_pass *ps, const uint8_t *row, const uint8_t *trow, int32_t o,
                           int32_t o_end);

/* One specialized copy per weight width and input kind: the decoder's shifts and masks become
 * immediates; the channel loop and the finish live inside, so a pass costs one call. Rows
 * [o, o_end) follow each other in the weights, row o at `row`, its tail group at `trow`. */
#define FXPQ_MM_KIND(B, K, NAME)                                                                  \
    FXPQ_COPY void NAME(const fxpq_pass *pass, const uint8_t *row, const uint8_t *trow, int32_t o, \
                     int32_t o_end)                                                             \
    {                                                                                           \
        const fxpq_pass local = *pass; /* a copy the output stores cannot alias */              \
        const fxpq_pass *ps = &local;                                                           \
        const int32_t step = ps->row_step;                                                      \
        int32_t acc[4];                                                                         \
        for (; o < o_end; ++o, row += step, trow += step) {                                     \
            if (ps->cols == FXPQ_PIXELS) {                                                      \
                fxpq_mm(row, trow, ps->groups, ps->col, ps->tail_lanes, ps->tail, B, K,         \
                        FXPQ_PIXELS, acc);                                                      \
                fxpq_pass_store(ps, o, acc, FXPQ_PIXELS);                                       \
            } else if (K >= FXPQ_X_16 && ps->cols == 2) { /* KxK 16-bit: two im2col columns */ \
                fxpq_mm(row, trow, ps->groups, ps->col, ps->tail_lanes, ps->tail, B, K, 2, acc); \
                fxpq_pass_store(ps, o, acc, 2);                                                 \
            } else {                                                                            \
                fxpq_mm(row, trow, ps->groups, ps->col, ps->tail_lanes, ps->tail, B, K, 1, acc); \
                fxpq_pass_store(ps, o, acc, 1);                                                 \
            }                                                                                   \
        }                                                                                       \
    }
#define FXPQ_MM_WIDTH(B)                                                                          \
    FXPQ_MM_KIND(B, FXPQ_X_S8, fxpq_mm_s8_w##B)                                                 \
    FXPQ_MM_KIND(B, FXPQ_X_U8, fxpq_mm_u8_w##B)                                                 \
    FXPQ_MM_KIND(B, FXPQ_X_16, fxpq_mm_16_w##B)                                                 \
    FXPQ_MM_KIND(B, FXPQ_X_U16, fxpq_mm_u16_w##B)
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
FXPQ_MM_KIND(FXPQ_W_LANES, FXPQ_X_S8, fxpq_mm_s8_wl)
FXPQ_MM_KIND(FXPQ_W_LANES, FXPQ_X_U8, fxpq_mm_u8_wl)
/* The lane-row copies serve 8-bit inputs with weights other than 8-bit (the unpacked rows below):
 * built when some such width of the kind is. */
#define FXPQ_LANES_BUILT(kind)                                                                    \
    (((kind) == FXPQ_X_S8 ? FXPQ_PATHS_CONV_INT8 : FXPQ_PATHS_CONV_UINT8) & ~(1u << (8 - 2)))

/* A selective build (fxpq_paths.h) leaves the copies of other models' widths and kinds out of the
 * table: nothing references them, so they are not compiled (NULL entries are never reached: the
 * public kernels refuse those combinations first). uint16 inputs of at most 15 bits run the
 * int16 lanes' copy. */
#define FXPQ_MM_SEL(mask, B, fn) (FXPQ_PATHS_HAS(mask, B) ? fn : (fxpq_mm_fn)0)
#define FXPQ_MM_ROW(B)                                                                            \
    {FXPQ_MM_SEL(FXPQ_PATHS_CONV_INT8, B, fxpq_mm_s8_w##B),                                     \
     FXPQ_MM_SEL(FXPQ_PATHS_CONV_UINT8, B, fxpq_mm_u8_w##B),                                    \
     FXPQ_MM_SEL(FXPQ_PATHS_CONV_LANES16, B, fxpq_mm_16_w##B),                                  \
     FXPQ_MM_SEL(FXPQ_PATHS_CONV_UINT16_LONG, B, fxpq_mm_u16_w##B)}
static const fxpq_mm_fn fxpq_mm_table[15][4] = {
    FXPQ_MM_ROW(2), FXPQ_MM_ROW(3), FXPQ_MM_ROW(4), FXPQ_MM_ROW(5), FXPQ_MM_ROW(6),
    FXPQ_MM_ROW(7), FXPQ_MM_ROW(8), FXPQ_MM_ROW(9), FXPQ_MM_ROW(10), FXPQ_MM_ROW(11),
    FXPQ_MM_ROW(12), FXPQ_MM_ROW(13), FXPQ_MM_ROW(14), FXPQ_MM_ROW(15), FXPQ_MM_ROW(16)};

/* ---- columns -------------------------------------------------------------------------------- */

/* Column j's receptive field (output pixel `pix`: batch-major, then rows, then columns) copied in
 * natural order into `dst` (K elements, zeros at padded taps): one copy per contiguous kernel
 * row, or per tap with a width dilation. */
static void fxpq_im2col(uint8_t *dst, const void *input, const fxpq_weighted *wk,
                        const fxpq_geometry *g, int32_t pix)
{
    const int32_t plane = g->out.h * g->out.w, n = pix / plane, r = pix - n * plane;
    const int32_t oy = r / g->out.w, ox = r - oy * g->out.w;
    const int32_t iy0 = oy * g->stride.h - g->pad_t, ix0 = ox * g->stride.w - g->pad_l;
    const int32_t kh = g->filter.h, kw = g->filter.w, c = g->in.c, dw = g->dilation.w;
    const int32_t es = wk->in_es;
    int32_t ky0, ky1, kx0, kx1, ky, kx;
    fxpq_valid_taps(iy0, g->dilation.h, kh, g->in.h, &ky0, &ky1);
    fxpq_valid_taps(ix0, dw, kw, g->in.w, &kx0, &kx1);
    if (ky0 != 0 || ky1 != kh || kx0 != 0 || kx1 != kw) {
        memset(dst, 0, (size_t)wk->k * (size_t)es);
    }
    if (kx1 > kx0) {
        const int32_t run = (dw == 1 ? (kx1 - kx0) * c : c) * es, runs = dw == 1 ? 1 : kx1 - kx0;
        const int32_t step = dw * c * es;
        for (ky = ky0; ky < ky1; ++ky) {
            const uint8_t *src = (const uint8_t *)input +
                                 (size_t)((n * g->in.h + iy0 + ky * g->dilation.h) * g->in.w + ix0 + kx0 * dw) *
                                     (size_t)(c * es);
            uint8_t *d = dst + (size_t)((ky * kw + kx0) * c) * (size_t)es;
            for (kx = 0; kx < runs; ++kx) {
                int32_t i = 0;
                for (; i + 4 <= run; i += 4) {
                    fxpq_st32(d + i, fxpq_ld32(src + i));
                }
                for (; i < run; ++i) {
                    d[i] = src[i];
                }
                src += step;
                d += run;
            }
        }
    }
}

/* The last `tail` (K mod 8) terms of column `col` as int16 lanes in the decoder's order
 * [t0,t2] [t1,t3] [t4,t6] [t5,t7], zeros past K: 16 bytes at dst (u16: the lanes x - 2^15). */
static void fxpq_tail_lanes(uint8_t *dst, const uint8_t *col, const fxpq_weighted *wk, int32_t tail,
                            int32_t u16)
{
    const int32_t first = wk->k - tail;
    int32_t t;
    memset(dst, 0, 16);
    for (t = 0; t < tail; ++t) {
        const int32_t lane = (t & 4) | ((t & 1) << 1) | ((t >> 1) & 1);
        const int32_t v = fxpq_load(col, wk->in_s, first + t);
        fxpq_st16(dst + 2 * lane, u16 ? v - 32768 : v);
    }
}

/* ---- 16-bit inputs against a block of unpacked weight rows ------------------------------- */

/* 16-bit columns meet weights unpacked once per call into natural-order int16 rows on the stack:
 * a word of the column [x0,x1] pairs with a word of the row [w0,w1] as they are (no decoder, no
 * PKH in the inner loop), and each row is unpacked once however many pixels it meets. int32
 * accumulators (SMLAD, 4 columns in place or 2 im2col columns) when the width rule allows, else
 * int64 ones (SMLALD, 2 columns): no reference loop for 16-bit lanes with wide weights. */
#define FXPQ_WBUF 1024 /* bytes of unpacked weight rows one conv call keeps on the stack */
typedef char fxpq_assert_block_terms[FXPQ_WBUF / 2 == FXPQ_PATHS_BLOCK_TERMS ? 1 : -1]; /* fxpq_paths.h */
#define FXPQ_WROWS 32  /* rows of one block at most (their finish constants are on the stack) */

/* Whole groups of 8 weights of a packed row unpacked (16 bytes a group) in the layout `mode`.
 * One copy per width: the decoder's fields are constants. */
#define FXPQ_UNPACK_HALF(B, first)                                                                 \
    do {                                                                                        \
        fxpq_decode4(row, B, first, &w02, &w13);                                                \
        if (mode == FXPQ_ROW_LANES) {                                                           \
            fxpq_st32(dst, w02);                                                                \
            fxpq_st32(dst + 4, w13);                                                            \
        } else {                                                                                \
            fxpq_st32(dst, (w02 & 0xFFFFu) | (w13 << 16));                                      \
            fxpq_st32(dst + 4, (w02 >> 16) | (w13 & 0xFFFF0000u));                              \
        }                                                                                       \
        dst += 8;                                                                               \
    } while (0)
#define FXPQ_UNPACK_W(B)                                                                          \
    FXPQ_COPY void fxpq_unpack_w##B(const uint8_t *row, int32_t groups, uint8_t *dst, int32_t mode) \
    {                                                                                           \
        uint32_t w02, w13;                                                                      \
        for (; groups > 0; --groups, row += FXPQ_GROUP_BYTES(B)) {                              \
            FXPQ_UNPACK_HALF(B, 0);                                                              \
            FXPQ_UNPACK_HALF(B, 4);                                                              \
        }                                                                                       \
    }
FXPQ_UNPACK_W(2)
FXPQ_UNPACK_W(3)
FXPQ_UNPACK_W(4)
FXPQ_UNPACK_W(5)
FXPQ_UNPACK_W(6)
FXPQ_UNPACK_W(7)
FXPQ_UNPACK_W(8)
FXPQ_UNPACK_W(9)
FXPQ_UNPACK_W(10)
FXPQ_UNPACK_W(11)
FXPQ_UNPACK_W(12)
FXPQ_UNPACK_W(13)
FXPQ_UNPACK_W(14)
FXPQ_UNPACK_W(15)
FXPQ_UNPACK_W(16)

#define FXPQ_UNPACK_SEL(B) (FXPQ_PATHS_HAS(FXPQ_PATHS_ANY_WIDTH, B) ? fxpq_unpack_w##B : (fxpq_unpack_fn)0)
static const fxpq_unpack_fn fxpq_unpack_table[15] = {
    FXPQ_UNPACK_SEL(2), FXPQ_UNPACK_SEL(3), FXPQ_UNPACK_SEL(4), FXPQ_UNPACK_SEL(5), FXPQ_UNPACK_SEL(6),
    FXPQ_UNPACK_SEL(7), FXPQ_UNPACK_SEL(8), FXPQ_UNPACK_SEL(9), FXPQ_UNPACK_SEL(10), FXPQ_UNPACK_SEL(11),
    FXPQ_UNPACK_SEL(12), FXPQ_UNPACK_SEL(13), FXPQ_UNPACK_SEL(14), FXPQ_UNPACK_SEL(15), FXPQ_UNPACK_SEL(16)};

/* Rows [o0, o1) of the packed weights unpacked into dst in the layout `mode`, `row` bytes a row,
 * zeros past K (FXPQ_ROW_I16: K rounded up to 4 halfwords; FXPQ_ROW_LANES: whole groups, the
 * last one padded). The whole groups take the width's decoder; the last K mod 8 terms the
 * portable unpacker, which reads no byte past the row. */
static void fxpq_unpack_rows(const fxpq_weighted *wk, int32_t o0, int32_t o1, int32_t row, uint8_t *dst,
                             int32_t mode)
{
    const int32_t k = wk->k, bits = wk->weights->bits, groups = k >> 3, tail = k & 7;
    const uint8_t *src = (const uint8_t *)wk->weights->data + (size_t)o0 * (size_t)wk->row_bytes;
    int16_t t[8];
    int32_t o, i;
    for (o = o0; o < o1; ++o, src += wk->row_bytes, dst += row) {
        uint8_t *d = dst + 16 * groups;
        fxpq_unpack_table[bits - 2](src, groups, dst, mode);
        if (d == dst + row) {
            continue;
        }
        memset(t, 0, sizeof(t));
        fxpq_unpack_run(src, bits, groups * 8, tail, t);
        if (mode == FXPQ_ROW_LANES) { /* [t0,t2] [t1,t3] [t4,t6] [t5,t7] */
            for (i = 0; i < 8; ++i) {
                fxpq_st16(d + 2 * ((i & 4) | ((i & 1) << 1) | ((i >> 1) & 1)), t[i]);
            }
        } else {
            for (i = 0; 2 * i < row - 16 * groups; ++i) {
                fxpq_st16(d + 2 * i, t[i]);
            }
        }
    }
}

/* ---- conv 2D and fully connected ------------------------------------------------------------ */

/* One pass whose accumulator the width rule puts in int64: each block of FXPQ_SUM_BLOCK channels
 * runs the int32 matrix loop over `chunk` groups at a time (few enough that the partial sum is
 * exact in int32, SMLAD's wrap included) and adds the partials into int64 sums, then the tail
 * group, then the reference's int64 finish. wsum: the first channels' weight sums (FXPQ_X_U16). */
static void fxpq_pass_chunked(const fxpq_pass *ps0, fxpq_mm_fn mm, int32_t chunk, int32_t o_safe,
                              int32_t tail_at, const int32_t *wsum)
{
    const fxpq_weighted *wk = ps0->wk;
    const uint8_t *wdata = (const uint8_t *)wk->weights->data;
    const int32_t groups = ps0->groups, tail = ps0->tail, bits = wk->weights->bits, es = wk->in_es;
    const int32_t out_ch = ps0->out_ch, tail_bytes = wk->row_bytes - tail_at;
    int64_t sums[FXPQ_SUM_BLOCK * FXPQ_PIXELS];
    uint32_t tail_copy[4];
    fxpq_pass ps = *ps0;
    int32_t o0, o, j, done;
    ps.sums = sums;
    for (o0 = 0; o0 < out_ch; o0 += FXPQ_SUM_BLOCK) {
        const int32_t o1 = out_ch - o0 < FXPQ_SUM_BLOCK ? out_ch : o0 + FXPQ_SUM_BLOCK;
        const int32_t safe_end = o_safe < o0 ? o0 : (o_safe < o1 ? o_safe : o1);
        const uint8_t *row0 = wdata + (size_t)o0 * (size_t)wk->row_bytes;
        memset(sums, 0, sizeof(sums));
        ps.o_first = o0;
        ps.tail = 0;
        for (done = 0; done < groups; done += chunk) {
            ps.groups = groups - done < chunk ? groups - done : chunk;
            for (j = 0; j < ps.cols; ++j) {
                ps.col[j] = ps0->col[j] + (size_t)done * 8u * (size_t)es;
            }
            mm(&ps, row0 + (size_t)done * (size_t)bits, row0, o0, o1);
        }
        if (tail != 0) {
            ps.groups = 0;
            ps.tail = tail;
            if (safe_end > o0) {
                mm(&ps, row0, row0 + tail_at, o0, safe_end);
            }
            for (o = safe_end; o < o1; ++o) {
                const uint8_t *row = wdata + (size_t)o * (size_t)wk->row_bytes;
                memset(tail_copy, 0, sizeof(tail_copy));
                memcpy(tail_copy, row + tail_at, (size_t)tail_bytes);
                mm(&ps, row, (const uint8_t *)tail_copy, o, o + 1);
            }
        }
        for (o = o0; o < o1; ++o) {
            const fxpq_channel_quant q = fxpq_channel_quant_of(wk->weights, wk->bias, o, wk->in_frac);
            const int64_t corr = !ps.u16 ? 0 : (int64_t)(o < FXPQ_FINISH_CACHE ? wsum[o] : fxpq_row_sum(wk, o)) * 32768;
            for (j = 0; j < ps.cols; ++j) {
                fxpq_weighted_store(wk, &q, (ps.p0 + j) * out_ch + o, sums[(o - o0) * FXPQ_PIXELS + j] + corr);
            }
        }
    }
}

static int32_t fxpq_conv_matrix(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input)
{
    const int32_t k = wk->k, bits = wk->weights->bits, out_ch = g->filter.n, es = wk->in_es;
    const int32_t groups = k >> 3, tail = k & 7;
    const int32_t pixels = g->out.n * g->out.h * g->out.w;
    /* a 1x1 kernel (and fully connected): each pixel's K terms lie contiguous in the input */
    const int32_t direct = g->filter.h == 1 && g->filter.w == 1;
    /* the tail group is decoded from its row's last bytes; it reads `bits` bytes, past the row
     * into the next one, so the rows whose tail group would pass the end of the weights decode
     * it from a zero-padded stack copy (no read past the caller's buffer, ever) */
    const int32_t tail_at = groups * bits, tail_bytes = wk->row_bytes - tail_at;
    const uint8_t *wdata = (const uint8_t *)wk->weights->data;
    const int32_t kind = fxpq_input_kind(wk), u16 = kind == FXPQ_X_U16;
    const fxpq_mm_fn mm = fxpq_mm_table[bits - 2][kind];
    int32_t chunk = 0; /* groups per exact int32 partial sum, when the accumulator needs int64 */
    /* KxK: 8-bit inputs take FXPQ_PIXELS columns of K bytes in the scratch, 16-bit ones two
     * columns of K halfwords (the same 4K bytes) */
    const int32_t max_cols = (direct || es == 1) ? FXPQ_PIXELS : 2;
    uint8_t *const colbuf = (uint8_t *)wk->scratch;
    uint32_t tail_buf[FXPQ_PIXELS * 4];  /* tail lanes, 16 bytes a column */
    uint32_t tail_copy[4];               /* a tail group near the end of the weights */
    int64_t bound;
    int32_t p0, o, j, o_safe, cols = FXPQ_PIXELS, o0, o1, per = 0;
    /* 8-bit columns, weights other than 8-bit: rows unpacked once per call into int16 lanes in
     * the decoder's order (FXPQ_W_LANES: two loads for 8 weights, no decoder in the loop), a
     * block of rows at a time; a KxK kernel gathers its columns once per block, so it takes the
     * block only when it holds 4 rows or all of them */
    const int32_t lane_row = 16 * (groups + (tail != 0));
    uint32_t wbuf[FXPQ_WBUF / 4];
    fxpq_pass ps;
    int32_t cache_add[FXPQ_FINISH_CACHE]; /* the int32 finish of the first channels */
    int8_t cache_shift[FXPQ_FINISH_CACHE]; /* -1: the channel takes the int64 finish */
    int32_t cache_mul[FXPQ_FINISH_CACHE];

    if (mm == NULL || (direct && (g->pad_t != 0 || g->pad_l != 0)) ||
        (!direct && (int64_t)max_cols * k * es > wk->scratch_size) || (u16 && pixels < FXPQ_PIXELS)) {
        return 0; /* (FXPQ_X_U16 needs each row's weight sum: the block path's is cheaper) */
    }
    if (wk->acc64) {
        /* |lane * w| <= term (FXPQ_X_U16 lanes: |x - 2^15| <= 2^15); 8 * chunk terms of it
         * stay below 2^31. None (16-bit lanes with 14-bit weights and wider): the reference. */
        const int64_t xmax = u16 ? 32768
                                 : (wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1))
                                                  : (((int64_t)1 << wk->in_bits) - 1));
        const int64_t term = xmax << (bits - 1);
        chunk = (int32_t)((int64_t)INT32_MAX / (8 * term));
        bound = (int64_t)INT32_MAX + 1; /* unknown */
        if (pixels >= FXPQ_PIXELS) {
            /* the width rule's bound K * max|x| * 2^(bits-1) is the worst row; the actual rows
             * often bound their dot products below 2^31 (sum |w| * max|x|): then the exact sum
             * fits int32, SMLAD's modular sum is it, and no chunking is needed */
            const int64_t x_abs = wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1))
                                                : (((int64_t)1 << wk->in_bits) - 1);
            for (bound = 0, o = 0; o < out_ch && bound <= INT32_MAX; ++o) {
                int32_t mag;
                (void)fxpq_row_sums(wk, o, &mag);
                bound = (int64_t)mag * x_abs > bound ? (int64_t)mag * x_abs : bound;
            }
            if (bound <= INT32_MAX) {
                chunk = 0;
            }
        }
        if (chunk == 0 && bound > INT32_MAX) {
            return 0;
        }
    }
    if (!wk->acc64) {
        bound = fxpq_acc_bound(wk);
    }
    for (o = 0; o < out_ch && o < FXPQ_FINISH_CACHE; ++o) {
        const fxpq_finish f = fxpq_finish_of(wk, o, bound);
        const int32_t wsum = u16 ? fxpq_row_sum(wk, o) : 0;
        /* chunked: the cache holds the weight sums of FXPQ_X_U16 (the finish is int64) */
        cache_add[o] = chunk != 0 ? wsum : (int32_t)((uint32_t)f.add + ((uint32_t)wsum << 15));
        cache_shift[o] = (int8_t)(f.fast ? f.shift : -1);
        cache_mul[o] = f.mul;
    }
    if (es == 1 && bits != 8 && chunk == 0 && pixels >= FXPQ_PIXELS && lane_row <= FXPQ_WBUF &&
        FXPQ_LANES_BUILT(kind)) {
        per = FXPQ_WBUF / lane_row < out_ch ? FXPQ_WBUF / lane_row : out_ch;
        per = direct || per >= 4 || per == out_ch ? per : 0;
    }
    ps.wk = wk;
    ps.row_step = per > 0 ? lane_row : wk->row_bytes;
    ps.tail_lanes = (const uint8_t *)tail_buf;
    ps.groups = groups;
    ps.tail = tail;
    ps.out_ch = out_ch;
    ps.out_es = fxpq_elem_size(wk->out.storage);
    ps.out = (uint8_t *)wk->out.data;
    ps.lo = wk->out.lo;
    ps.hi = wk->out.hi;
    ps.cache_add = cache_add;
    ps.cache_shift = cache_shift;
    ps.cache_mul = cache_mul;
    ps.bound = bound;
    ps.u16 = u16;
    ps.sums = NULL;
    ps.o_first = 0;
    /* first channel whose tail group would read past the end of the weights */
    o_safe = tail == 0 ? out_ch : out_ch - (bits - tail_bytes + wk->row_bytes - 1) / wk->row_bytes;
    o_safe = o_safe < 0 ? 0 : o_safe;

    for (o0 = 0; o0 < out_ch; o0 = o1) {
    o1 = per > 0 && out_ch - o0 > per ? o0 + per : out_ch;
    if (per > 0) {
        fxpq_unpack_rows(wk, o0, o1, lane_row, (uint8_t *)wbuf, FXPQ_ROW_LANES);
    }
    for (p0 = 0; p0 < pixels; p0 += cols) {
        cols = pixels - p0 >= FXPQ_PIXELS && max_cols == FXPQ_PIXELS ? FXPQ_PIXELS
               : (pixels - p0 >= 2 && es == 2) ? 2 : 1; /* the 16-bit kinds have a 2-column loop */
        for (j = 0; j < cols; ++j) {
            const uint8_t *c;
            if (direct) {
                const int32_t pix = p0 + j, plane = g->out.h * g->out.w, n = pix / plane;
                const int32_t r = pix - n * plane, oy = r / g->out.w, ox = r - oy * g->out.w;
                c = (const uint8_t *)input +
                    (size_t)(((n * g->in.h + oy * g->stride.h) * g->in.w + ox * g->stride.w) * k) * (size_t)es;
            } else {
                uint8_t *d = colbuf + (size_t)j * (size_t)k * (size_t)es;
                fxpq_im2col(d, input, wk, g, p0 + j);
                c = d;
            }
            ps.col[j] = c;
            if (tail != 0) {
                fxpq_tail_lanes((uint8_t *)tail_buf + 16 * j, c, wk, tail, u16);
            }
        }
        ps.cols = cols;
        ps.p0 = p0;
        if (chunk != 0) {
            fxpq_pass_chunked(&ps, mm, chunk, o_safe, tail_at, cache_add);
            continue;
        }
        if (per > 0) {
            const uint8_t *w = (const uint8_t *)wbuf;
            if (kind == FXPQ_X_S8) { /* per > 0: this kind's copy is built */
                if (FXPQ_LANES_BUILT(FXPQ_X_S8)) {
                    fxpq_mm_s8_wl(&ps, w, w + 16 * groups, o0, o1);
                }
            } else if (FXPQ_LANES_BUILT(FXPQ_X_U8)) {
                fxpq_mm_u8_wl(&ps, w, w + 16 * groups, o0, o1);
            }
            continue;
        }
        mm(&ps, wdata, wdata + tail_at, 0, o_safe);
        for (o = o_safe; o < out_ch; ++o) {
            const uint8_t *row = wdata + (size_t)o * (size_t)wk->row_bytes;
            memset(tail_copy, 0, sizeof(tail_copy));
            memcpy(tail_copy, row + tail_at, (size_t)tail_bytes);
            mm(&ps, row, (const uint8_t *)tail_copy, o, o + 1);
        }
    }
    }
    return 1;
}

/* 4 terms of one 16-bit column against the weight words w01 / w23 (SMLAD, int32). */
#define FXPQ_MAC4N_32(c, acc, flip)                                                               \
    do {                                                                                        \
        uint32_t x_, y_;                                                                        \
        __asm__("ldr %[x], [%[p]], #4\n\t"                                                      \
                "ldr %[y], [%[p]], #4\n\t"                                                      \
                flip                                                                            \
                "smlad %[a], %[x], %[w0], %[a]\n\t"                                             \
                "smlad %[a], %[y], %[w1], %[a]"                                                  \
                : [p] "+r"(c), [a] "+r"(acc), [x] "=&r"(x_), [y] "=&r"(y_)                       \
                : [w0] "r"(w01), [w1] "r"(w23)                                                   \
                : "memory");                                                                    \
    } while (0)

/* The same with an int64 accumulator lo / hi (SMLALD). */
#define FXPQ_MAC4N_64(c, lo, hi, flip)                                                            \
    do {                                                                                        \
        uint32_t x_, y_;                                                                        \
        __asm__("ldr %[x], [%[p]], #4\n\t"                                                      \
                "ldr %[y], [%[p]], #4\n\t"                                                      \
                flip                                                                            \
                "smlald %[l], %[h], %[x], %[w0]\n\t"                                            \
                "smlald %[l], %[h], %[y], %[w1]"                                                 \
                : [p] "+r"(c), [l] "+r"(lo), [h] "+r"(hi), [x] "=&r"(x_), [y] "=&r"(y_)          \
                : [w0] "r"(w01), [w1] "r"(w23)                                                   \
                : "memory");                                                                    \
    } while (0)

#define FXPQ_FLIP "eor %[x], %[x], #0x80008000\n\teor %[y], %[y], #0x80008000\n\t"

/* One pass of a block: `cols` 16-bit columns against rows [o0, o1) of the unpacked block. */
typedef struct {
    const fxpq_weighted *wk;
    const uint8_t *col[FXPQ_PIXELS];
    const int16_t *w;            /* the block's row o0 */
    int32_t kr, k4, cols, p0, o0, o1, out_ch;
    const int32_t *wsum;         /* FXPQ_X_U16: the rows' sums over their first k4 terms */
    const int64_t *add;          /* the finish: v = (acc + add) >> shift [* mul]; shift -1: slow */
    const int8_t *shift;
    const int32_t *mul;
} fxpq_pass16;

/* Finish and store the exact sum `acc` of channel o, pixel p0 + j, when the channel's constants
 * ask for the reference's finish (rare: not inlined). */
static void fxpq_store16_slow(const fxpq_pass16 *ps, int32_t o, int32_t j, int64_t acc)
{
    const fxpq_weighted *wk = ps->wk;
    const fxpq_channel_quant q = fxpq_channel_quant_of(wk->weights, wk->bias, o, wk->in_frac);
    fxpq_weighted_store(wk, &q, (ps->p0 + j) * ps->out_ch + o, acc);
}

/* The pass loop of one input kind (FLIP: FXPQ_X_U16 lanes, whose sums lack 2^15 * the row's sum;
 * the finish's `add` holds it) and accumulator width (WIDE: int64). The last K mod 4 terms of a
 * column meet their weights one at a time, raw x (not flipped). */
#define FXPQ_PASS16(NAME, FLIP, WIDE, X_T)                                                        \
    FXPQ_COPY void NAME(const fxpq_pass16 *pass)                                                \
    {                                                                                           \
        const fxpq_pass16 ps = *pass;                                                           \
        const int32_t k = ps.wk->k, out_es = fxpq_elem_size(ps.wk->out.storage);                \
        const int32_t lo = ps.wk->out.lo, hi = ps.wk->out.hi, stride = ps.out_ch * out_es;       \
        const int16_t *wrow = ps.w;                                                             \
        uint8_t *out0 = (uint8_t *)ps.wk->out.data + (size_t)ps.p0 * (size_t)stride;            \
        int32_t o, j, t;                                                                        \
        for (o = ps.o0; o < ps.o1; ++o, wrow += ps.kr) {                                        \
            const uint32_t *w = (const uint32_t *)(const void *)wrow;                           \
            const uint8_t *c0 = ps.col[0], *c1 = ps.col[ps.cols > 1 ? 1 : 0];                   \
            const uint8_t *c2 = ps.col[ps.cols > 2 ? 2 : 0], *c3 = ps.col[ps.cols > 2 ? 3 : 0]; \
            const int32_t i = o - ps.o0, sh = ps.shift[i];                                      \
            uint8_t *dst = out0 + (size_t)o * (size_t)out_es;                                   \
            int32_t n = ps.k4 >> 2;                                                             \
            if (WIDE) {                                                                         \
                uint32_t l0 = 0, h0 = 0, l1 = 0, h1 = 0;                                        \
                int64_t a[2];                                                                   \
                if (ps.cols == 2) {                                                             \
                    for (; n > 0; --n, w += 2) {                                                \
                        const uint32_t w01 = w[0], w23 = w[1];                                  \
                        FXPQ_MAC4N_64(c0, l0, h0, FLIP);                                        \
                        FXPQ_MAC4N_64(c1, l1, h1, FLIP);                                        \
                    }                                                                           \
                } else {                                                                        \
                    for (; n > 0; --n, w += 2) {                                                \
                        const uint32_t w01 = w[0], w23 = w[1];                                  \
                        FXPQ_MAC4N_64(c0, l0, h0, FLIP);                                        \
                    }                                                                           \
                }                                                                               \
                a[0] = (int64_t)((uint64_t)h0 << 32 | l0);                                      \
                a[1] = (int64_t)((uint64_t)h1 << 32 | l1);                                      \
                for (j = 0; j < ps.cols; ++j, dst += stride) {                                  \
                    const X_T *x = (const X_T *)(const void *)ps.col[j];                        \
                    int64_t acc = a[j];                                                         \
                    for (t = ps.k4; t < k; ++t) {                                               \
                        acc += (int64_t)x[t] * wrow[t];                                         \
                    }                                                                           \
                    if (sh >= 0) {                                                              \
                        const int64_t r = (int64_t)((uint64_t)acc + (uint64_t)ps.add[i]) >> sh; \
                        const int32_t v = r < lo ? lo : (r > hi ? hi : (int32_t)r);             \
                        if (out_es == 1) {                                                      \
                            *dst = (uint8_t)v;                                                  \
                        } else {                                                                \
                            fxpq_st16(dst, v);                                                  \
                        }                                                                       \
                    } else {                                                                    \
                        fxpq_store16_slow(&ps, o, j,                                            \
                                          acc + (ps.wsum != NULL ? (int64_t)ps.wsum[i] * 32768 : 0)); \
                    }                                                                           \
                }                                                                               \
            } else {                                                                            \
                int32_t a[4];                                                                   \
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                         \
                const int32_t add = (int32_t)ps.add[i], mul = ps.mul[i];                        \
                if (ps.cols == 4) {                                                             \
                    for (; n > 0; --n, w += 2) {                                                \
                        const uint32_t w01 = w[0], w23 = w[1];                                  \
                        FXPQ_MAC4N_32(c0, a0, FLIP);                                            \
                        FXPQ_MAC4N_32(c1, a1, FLIP);                                            \
                        FXPQ_MAC4N_32(c2, a2, FLIP);                                            \
                        FXPQ_MAC4N_32(c3, a3, FLIP);                                            \
                    }                                                                           \
                } else if (ps.cols == 2) {                                                      \
                    for (; n > 0; --n, w += 2) {                                                \
                        const uint32_t w01 = w[0], w23 = w[1];                                  \
                        FXPQ_MAC4N_32(c0, a0, FLIP);                                            \
                        FXPQ_MAC4N_32(c1, a1, FLIP);                                            \
                    }                                                                           \
                } else {                                                                        \
                    for (; n > 0; --n, w += 2) {                                                \
                        const uint32_t w01 = w[0], w23 = w[1];                                  \
                        FXPQ_MAC4N_32(c0, a0, FLIP);                                            \
                    }                                                                           \
                }                                                                               \
                a[0] = a0;                                                                      \
                a[1] = a1;                                                                      \
                a[2] = a2;                                                                      \
                a[3] = a3;                                                                      \
                for (j = 0; j < ps.cols; ++j, dst += stride) {                                  \
                    const X_T *x = (const X_T *)(const void *)ps.col[j];                        \
                    uint32_t acc = (uint32_t)a[j];                                              \
                    for (t = ps.k4; t < k; ++t) {                                               \
                        acc += (uint32_t)x[t] * (uint32_t)(int32_t)wrow[t];                     \
                    }                                                                           \
                    if (sh >= 0) {                                                              \
                        int32_t v = ((int32_t)(acc + (uint32_t)add) >> sh) * mul;               \
                        v = v < lo ? lo : (v > hi ? hi : v);                                    \
                        if (out_es == 1) {                                                      \
                            *dst = (uint8_t)v;                                                  \
                        } else {                                                                \
                            fxpq_st16(dst, v);                                                  \
                        }                                                                       \
                    } else {                                                                    \
                        fxpq_store16_slow(&ps, o, j, (int32_t)(acc + (ps.wsum != NULL ? (uint32_t)ps.wsum[i] << 15 : 0u))); \
                    }                                                                           \
                }                                                                               \
            }                                                                               \
        }                                                                                       \
    }
FXPQ_PASS16(fxpq_pass16_s32, "", 0, int16_t)
FXPQ_PASS16(fxpq_pass16_u32, FXPQ_FLIP, 0, uint16_t)
FXPQ_PASS16(fxpq_pass16_s64, "", 1, int16_t)
FXPQ_PASS16(fxpq_pass16_u64, FXPQ_FLIP, 1, uint16_t)

/* Column j of a pass (output pixel pix): in place for a 1x1 kernel, else gathered into `buf`. */
static const uint8_t *fxpq_column(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input,
                                  int32_t pix, uint8_t *buf)
{
    if (g->filter.h == 1 && g->filter.w == 1) {
        const int32_t plane = g->out.h * g->out.w, n = pix / plane;
        const int32_t r = pix - n * plane, oy = r / g->out.w, ox = r - oy * g->out.w;
        return (const uint8_t *)input +
               (size_t)(((n * g->in.h + oy * g->stride.h) * g->in.w + ox * g->stride.w) * wk->k) * (size_t)wk->in_es;
    }
    fxpq_im2col(buf, input, wk, g, pix);
    return buf;
}

/* Conv / fully connected over 16-bit inputs whose unpacked row (int16) fits the stack block:
 * 0 when not taken. */
static int32_t fxpq_conv_x16(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input)
{
    const int32_t k = wk->k, kr = (k + 3) & ~3, out_ch = g->filter.n;
    const int32_t pixels = g->out.n * g->out.h * g->out.w;
    const int32_t direct = g->filter.h == 1 && g->filter.w == 1;
    const int32_t u16 = FXPQ_PATHS_CONV_UINT16 != 0 && fxpq_input_kind(wk) == FXPQ_X_U16;
    const int32_t wide = wk->acc64;
    const int32_t per = FXPQ_WBUF / (2 * kr) < FXPQ_WROWS ? FXPQ_WBUF / (2 * kr) : FXPQ_WROWS;
    const int64_t x_abs = wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1)) : (((int64_t)1 << wk->in_bits) - 1);
    uint32_t wbuf[FXPQ_WBUF / 4];
    int32_t wsum[FXPQ_WROWS];
    int64_t add[FXPQ_WROWS];
    int8_t shift[FXPQ_WROWS];
    int32_t mul[FXPQ_WROWS];
    fxpq_pass16 ps;
    int32_t o, j, p0, cols, max_cols, block_wide;
    int64_t bound;
    /* Left to the decoder's loop (fxpq_conv_matrix) when its accumulator is int32 and it is
     * cheaper: fewer than 4 pixels of signed lanes (an unpacked row would meet one to three
     * columns), rows of fewer than 16 terms (the per-row cost of this loop dominates), or a KxK
     * kernel whose rows do not fit one block (the columns would be gathered once per block). */
    if ((FXPQ_PATHS_CONV_LANES16 | FXPQ_PATHS_CONV_UINT16) == 0 || per == 0 || (direct && (g->pad_t != 0 || g->pad_l != 0)) ||
        (!direct && (int64_t)2 * k * 2 > wk->scratch_size) ||
        (!wide && !u16 && (pixels < FXPQ_PIXELS || k < 16 || (!direct && per < out_ch)))) {
        return 0;
    }
    ps.wk = wk;
    ps.w = (const int16_t *)(const void *)wbuf;
    ps.kr = kr;
    ps.k4 = k & ~3;
    ps.out_ch = out_ch;
    ps.wsum = u16 ? wsum : NULL;
    ps.add = add;
    ps.shift = shift;
    ps.mul = mul;
    for (ps.o0 = 0; ps.o0 < out_ch; ps.o0 = ps.o1) {
        ps.o1 = out_ch - ps.o0 < per ? out_ch : ps.o0 + per;
        fxpq_unpack_rows(wk, ps.o0, ps.o1, 2 * kr, (uint8_t *)wbuf, FXPQ_ROW_I16);
        /* int64 sums only when the width rule asks for them and some row's sum |w| * max|x| does
         * not prove the exact sum below 2^31 (SMLAD's modular int32 sum is then exact) */
        bound = !wide ? fxpq_acc_bound(wk) : (pixels < FXPQ_PIXELS ? (int64_t)INT32_MAX + 1 : 0);
        for (o = ps.o0; o < ps.o1 && bound <= INT32_MAX && wide; ++o) {
            const int16_t *w = ps.w + (size_t)(o - ps.o0) * (size_t)kr;
            const int32_t lim = (int32_t)(INT32_MAX / x_abs); /* stop as soon as a row passes it */
            int32_t mag = 0, t;
            for (t = 0; t < k && mag <= lim; ++t) {
                mag += w[t] < 0 ? -w[t] : w[t];
            }
            bound = (int64_t)mag * x_abs > bound ? (int64_t)mag * x_abs : bound;
        }
        block_wide = bound > INT32_MAX;
        max_cols = direct && !block_wide ? FXPQ_PIXELS : 2;
        for (o = ps.o0; o < ps.o1; ++o) {
            const int32_t i = o - ps.o0;
            const uint32_t *w = (const uint32_t *)(const void *)(ps.w + (size_t)i * (size_t)kr);
            int32_t sum = 0, t;
            for (t = 0; u16 && t < ps.k4 / 2; ++t) { /* two halfwords per SMLAD */
                sum = __smlad((int32_t)w[t], 0x00010001, sum);
            }
            wsum[i] = sum;
            if (block_wide) {
                const fxpq_channel_quant q = fxpq_channel_quant_of(wk->weights, wk->bias, o, wk->in_frac);
                const int32_t s = q.acc_frac - wk->out.frac;
                shift[i] = (int8_t)(s >= 0 && s <= 62 ? s : -1);
                add[i] = (int64_t)((uint64_t)q.bias + (s > 0 && s <= 62 ? (uint64_t)1 << (s - 1) : 0u) +
                                   ((uint64_t)(int64_t)sum << 15));
                mul[i] = 1;
            } else {
                const fxpq_finish f = fxpq_finish_of(wk, o, bound);
                shift[i] = (int8_t)(f.fast ? f.shift : -1);
                add[i] = (int32_t)((uint32_t)f.add + ((uint32_t)sum << 15));
                mul[i] = f.mul;
            }
        }
        for (p0 = 0; p0 < pixels; p0 += cols) {
            cols = pixels - p0 >= max_cols ? max_cols : (pixels - p0 >= 2 ? 2 : 1);
            for (j = 0; j < cols; ++j) {
                ps.col[j] = fxpq_column(wk, g, input, p0 + j, (uint8_t *)wk->scratch + (size_t)j * (size_t)k * 2u);
            }
            ps.cols = cols;
            ps.p0 = p0;
            if (block_wide) {
                (u16 ? fxpq_pass16_u64 : fxpq_pass16_s64)(&ps);
            } else {
                (u16 ? fxpq_pass16_u32 : fxpq_pass16_s32)(&ps);
            }
        }
    }
    return 1;
}

/* ---- fully connected over one to three pixels: several rows per column load ----------------- */

/* A matrix-vector product (fully connected with batch 1, a 1x1 conv with one output pixel) has
 * one column: the 4-pixel matrix loop above would decode every weight for a single SMLAD pair,
 * and the unpacked-row block would store and reload every weight once. Here each 4 terms of the
 * column are loaded and turned into lanes once and meet FXPQ_FC1_ROWS rows, whose weights are
 * decoded straight into registers (CMSIS-NN's arm_nn_vec_mat_mult_t_s8 shares the column the same
 * way). Unsigned 16-bit inputs run as x - 2^15 lanes and sum each row's weights in the same loop
 * (one more SMLAD per weight register) for the 2^15 * sum correction: fewer rows per pass, the
 * sums need registers. An int64 accumulator by the width rule runs as exact int32 partial sums of
 * `chunk` groups added into int64 (in registers: no block of sums), declined when not even one
 * group fits (the SMLALD block loop takes it). */
#define FXPQ_X_U16L 4 /* FXPQ_X_U16 whose column was turned into x - 2^15 lanes once (fxpq_conv_fc1) */
#define FXPQ_FC1_ROWS(kind) ((kind) >= FXPQ_X_U16 ? 2 : 4)
/* terms of the largest column turned into lanes once (1 KB of stack): the block's, so that only the
 * widths of the longer rows (FXPQ_PATHS_CONV_UINT16_LONG) need the loop that makes lanes per pair of rows */
#define FXPQ_FC1_XTERMS FXPQ_PATHS_BLOCK_TERMS

typedef struct {
    const fxpq_weighted *wk;
    const uint8_t *col;      /* the pixel's K terms, natural order (or its lanes: laned) */
    const void *raw;         /* the pixel's K terms as stored (the K mod 8 tail terms) */
    int32_t groups, tail, chunk, wide, row_step, index; /* index: the pixel's first output */
    int32_t laned;           /* FXPQ_X_U16: col holds the whole groups' lanes x - 2^15 */
    int64_t lim;             /* >= 0: the hoisted int32 finish, for |aligned bias| <= lim */
    int32_t shift, round, bias_shift;
} fxpq_fc1;

FXPQ_INLINE uint32_t fxpq_pkhtb_asr16(uint32_t hi, uint32_t lo)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
    return r;
}

/* 4 terms of the column as lanes [t0,t2] [t1,t3] (the decoder's order). */
FXPQ_INLINE void fxpq_fc1_lanes(const uint8_t **c, const int32_t kind, uint32_t *x02, uint32_t *x13)
{
    if (kind == FXPQ_X_U16L) {
        *x02 = fxpq_ld32(*c);
        *x13 = fxpq_ld32(*c + 4);
        *c += 8;
    } else if (kind == FXPQ_X_S8 || kind == FXPQ_X_U8) {
        const uint32_t v = fxpq_ld32(*c);
        *c += 4;
        *x02 = kind == FXPQ_X_S8 ? (uint32_t)__sxtb16(v) : (uint32_t)__uxtb16(v);
        *x13 = kind == FXPQ_X_S8 ? fxpq_sxtb16_ror8(v) : fxpq_uxtb16_ror8(v);
    } else {
        uint32_t a = fxpq_ld32(*c), b = fxpq_ld32(*c + 4);
        *c += 8;
        if (kind == FXPQ_X_U16) {
            a ^= 0x80008000u;
            b ^= 0x80008000u;
        }
        *x02 = fxpq_pack2((int32_t)a, (int32_t)b);
        *x13 = fxpq_pkhtb_asr16(b, a);
    }
}

/* The finish of `rows` rows from o: the exact sums (int32 modulo 2^32, or int64) with the u16
 * correction, then the channel's finish (each channel is finished once per pixel: no constants to
 * cache): a right shift by s in [0, 62] is the rescale rule's round half up in int64 (as the
 * SMLALD loop's finish), anything else the reference's finish. Not inlined: shared by every copy. */
/* The last K mod 8 terms of row o against the column, portable (a few terms a row: no copy of
 * the weights' last bytes, no read past the row). */
static int64_t fxpq_fc1_tail(const fxpq_fc1 *f, int32_t o)
{
    const fxpq_weighted *wk = f->wk;
    const int32_t first = wk->k - f->tail;
    int16_t w[8];
    int64_t sum = 0;
    int32_t t;
    fxpq_unpack_run((const uint8_t *)wk->weights->data + (size_t)o * (size_t)wk->row_bytes, wk->weights->bits,
                    first, f->tail, w);
    for (t = 0; t < f->tail; ++t) {
        sum += (int64_t)fxpq_load(f->raw, wk->in_s, first + t) * w[t];
    }
    return sum;
}

static void fxpq_fc1_store(const fxpq_fc1 *f, int32_t o, int32_t rows, const int32_t *a, const int32_t *s,
                           const int64_t *w64)
{
    const fxpq_weighted *wk = f->wk;
    const int32_t lo = wk->out.lo, hi = wk->out.hi, out_frac = wk->out.frac;
    int32_t r;
    if (f->lim >= 0) { /* int32 sums, one frac for every channel: fxpq_finish_of's int32 finish, its
                        * constants hoisted out of the channel loop (the bias is checked per channel) */
        const int32_t *bias = wk->bias != NULL ? wk->bias->data : NULL;
        fxpq_finish fin;
        fin.fast = 1;
        fin.shift = f->shift;
        fin.mul = 1;
        for (r = 0; r < rows; ++r) {
            const int64_t b = bias != NULL ? (int64_t)bias[o + r] << f->bias_shift : 0;
            const int32_t acc = (int32_t)((uint32_t)a[r] + ((uint32_t)s[r] << 15) +
                                          (f->tail != 0 ? (uint32_t)fxpq_fc1_tail(f, o + r) : 0u));
            if (b >= -f->lim && b <= f->lim) {
                fin.add = (int32_t)b + f->round;
                fxpq_finish_store(wk, &fin, f->index + o + r, acc);
            } else {
                const fxpq_channel_quant q = fxpq_channel_quant_of(wk->weights, wk->bias, o + r, wk->in_frac);
                fxpq_weighted_store(wk, &q, f->index + o + r, acc);
            }
        }
        return;
    }
    for (r = 0; r < rows; ++r) {
        const fxpq_channel_quant q = fxpq_channel_quant_of(wk->weights, wk->bias, o + r, wk->in_frac);
        const int32_t sh = q.acc_frac - out_frac;
        const int64_t t = f->tail != 0 ? fxpq_fc1_tail(f, o + r) : 0;
        const int64_t acc = f->wide ? w64[r] + a[r] + (int64_t)s[r] * 32768 + t
                                    : (int64_t)(int32_t)((uint32_t)a[r] + ((uint32_t)s[r] << 15) + (uint32_t)t);
        if (sh >= 0 && sh <= 62) {
            const int64_t v = fxpq_wrap_add64(acc, q.bias + (sh > 0 ? (int64_t)1 << (sh - 1) : 0)) >> sh;
            fxpq_store(wk->out.data, wk->out.storage, f->index + o + r, (int32_t)(v < lo ? lo : (v > hi ? hi : v)));
        } else {
            fxpq_weighted_store(wk, &q, f->index + o + r, acc);
        }
    }
}

/* Row R (0..3) of the pass, when the pass has that many rows: 4 terms (`first` 0 or 4 of the
 * group at src) against the column's lanes x02 / x13 (FXPQ_X_U16: the weight sum too, against the
 * lanes o02 / o13: ones, zeros past K in the tail). Scalar accumulators: GCC keeps an array of
 * them in memory. */
#define FXPQ_FC1_ROW(R, first, src)                                                                \
    do {                                                                                        \
        if (rows > (R)) {                                                                       \
            uint32_t w02, w13;                                                                  \
            fxpq_decode4((src) + (R) * step, bits, first, &w02, &w13);                          \
            a##R = __smlad((int32_t)x02, (int32_t)w02, a##R);                                   \
            a##R = __smlad((int32_t)x13, (int32_t)w13, a##R);                                   \
            if (kind >= FXPQ_X_U16) {                                                           \
                s##R = __smlad((int32_t)w02, (int32_t)o02, s##R);                               \
                s##R = __smlad((int32_t)w13, (int32_t)o13, s##R);                               \
            }                                                                                   \
            __asm__ volatile("" ::: "memory"); /* no hoisting of the next rows' loads */        \
        }                                                                                       \
    } while (0)
#define FXPQ_FC1_MAC(first, src)                                                                   \
    do {                                                                                        \
        FXPQ_FC1_ROW(0, first, src);                                                            \
        FXPQ_FC1_ROW(1, first, src);                                                            \
        FXPQ_FC1_ROW(2, first, src);                                                            \
        FXPQ_FC1_ROW(3, first, src);                                                            \
    } while (0)

/* `rows` (1..4) rows `step` bytes apart from o (row at `row`) against the column's whole groups of 8
 * terms; the first `keep` of them finished (step 0: one row computed `rows` times, one kept). */
FXPQ_INLINE void fxpq_fc1_rows(const fxpq_fc1 *f, const uint8_t *row, int32_t o,
                               const int32_t bits, const int32_t kind, const int32_t rows, const int32_t step,
                               const int32_t keep)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t w64[4]; /* int64 by the width rule only (zeroed there: no memset call per pass) */
    int32_t a[4], s[4];
    const uint8_t *c = f->col;
    int32_t g = f->groups, n;
    if (f->wide) {
        w64[0] = w64[1] = w64[2] = w64[3] = 0;
    }
    uint32_t x02, x13;
    const uint32_t o02 = 0x00010001u, o13 = 0x00010001u; /* the weight sums: [1, 1] */
    while (g > 0) {
        n = g < f->chunk ? g : f->chunk;
        g -= n;
        for (; n > 0; --n, row += FXPQ_GROUP_BYTES(bits)) {
            fxpq_fc1_lanes(&c, kind, &x02, &x13);
            FXPQ_FC1_MAC(0, row);
            fxpq_fc1_lanes(&c, kind, &x02, &x13);
            FXPQ_FC1_MAC(4, row);
        }
        if (f->wide) { /* rare (int64 by the width rule): fold the exact int32 partial sums */
            w64[0] += a0;
            w64[1] += a1;
            w64[2] += a2;
            w64[3] += a3;
            a0 = a1 = a2 = a3 = 0;
        }
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
    fxpq_fc1_store(f, o, keep, a, s, w64);
}

typedef void (*fxpq_fc1_fn)(const fxpq_fc1 *f, const uint8_t *row, int32_t o, int32_t o_end);

/* Rows [o, o_end), FXPQ_FC1_ROWS at a time; the last few one at a time through the same code (the
 * row repeated: step 0, one kept), so that each copy holds one expansion of the loop (flash). */
#define FXPQ_FC1_LOOP(B, K)                                                                       \
    do {                                                                                        \
        const int32_t step_ = f->row_step;                                                      \
        while (o < o_end) {                                                                     \
            const int32_t n_ = o_end - o >= FXPQ_FC1_ROWS(K) ? FXPQ_FC1_ROWS(K) : 1;            \
            fxpq_fc1_rows(f, row, o, B, K, FXPQ_FC1_ROWS(K), n_ > 1 ? step_ : 0, n_);           \
            o += n_;                                                                            \
            row += n_ * step_;                                                                  \
        }                                                                                       \
    } while (0)

/* One copy per weight width and input kind (the decoder's fields become constants); the 16-bit
 * unsigned ones have a second loop for a column already in lanes. */
#define FXPQ_FC1_KIND(B, K, NAME)                                                                 \
    FXPQ_COPY void NAME(const fxpq_fc1 *f, const uint8_t *row, int32_t o, int32_t o_end)         \
    {                                                                                           \
        if (K == FXPQ_X_U16 && f->laned) {                                                      \
            FXPQ_FC1_LOOP(B, FXPQ_X_U16L);                                                       \
        } else if (K != FXPQ_X_U16 || FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_UINT16_LONG, B)) {         \
            FXPQ_FC1_LOOP(B, K);                                                                 \
        }                                                                                       \
    }
#define FXPQ_FC1_WIDTH8(B)                                                                        \
    FXPQ_FC1_KIND(B, FXPQ_X_S8, fxpq_fc1_s8_w##B)                                               \
    FXPQ_FC1_KIND(B, FXPQ_X_U8, fxpq_fc1_u8_w##B)                                               \
    FXPQ_FC1_KIND(B, FXPQ_X_16, fxpq_fc1_16_w##B)
#define FXPQ_FC1_WIDTH(B)                                                                         \
    FXPQ_FC1_WIDTH8(B)                                                                          \
    FXPQ_FC1_KIND(B, FXPQ_X_U16, fxpq_fc1_u16_w##B)
FXPQ_FC1_WIDTH(2)
FXPQ_FC1_WIDTH(3)
FXPQ_FC1_WIDTH(4)
FXPQ_FC1_WIDTH(5)
FXPQ_FC1_WIDTH(6)
FXPQ_FC1_WIDTH(7)
FXPQ_FC1_WIDTH(8)
FXPQ_FC1_WIDTH(9)
FXPQ_FC1_WIDTH(10)
FXPQ_FC1_WIDTH(11)
FXPQ_FC1_WIDTH(12)
FXPQ_FC1_WIDTH(13)
FXPQ_FC1_WIDTH8(14) /* no uint16 copy from 14 bits (FXPQ_FC1_U16) */
FXPQ_FC1_WIDTH8(15)
FXPQ_FC1_WIDTH8(16)

/* Selected by the same masks as the matrix loop's copies (fxpq_paths.h); 16-bit unsigned inputs
 * by FXPQ_PATHS_CONV_UINT16 (the one-pixel rows of any length), up to 13-bit weights: with 14 bits
 * and wider even one group of 8 lanes |x - 2^15| * |w| can pass 2^31 (and the width rule asks for
 * int64 from K = 2), so fxpq_conv_fc1 would decline every such layer but K = 1: no copy is built. */
#define FXPQ_FC1_U16_FN(B) (FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_UINT16, B) ? fxpq_fc1_u16_w##B : (fxpq_fc1_fn)0)
#define FXPQ_FC1_SEL(B)                                                                           \
    {FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_INT8, B) ? fxpq_fc1_s8_w##B : (fxpq_fc1_fn)0,               \
     FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_UINT8, B) ? fxpq_fc1_u8_w##B : (fxpq_fc1_fn)0,              \
     FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_LANES16, B) ? fxpq_fc1_16_w##B : (fxpq_fc1_fn)0,            \
     FXPQ_FC1_U16_FN(B)}
#define FXPQ_FC1_SEL8(B)                                                                          \
    {FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_INT8, B) ? fxpq_fc1_s8_w##B : (fxpq_fc1_fn)0,               \
     FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_UINT8, B) ? fxpq_fc1_u8_w##B : (fxpq_fc1_fn)0,              \
     FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_LANES16, B) ? fxpq_fc1_16_w##B : (fxpq_fc1_fn)0, (fxpq_fc1_fn)0}
static const fxpq_fc1_fn fxpq_fc1_table[15][4] = {
    FXPQ_FC1_SEL(2), FXPQ_FC1_SEL(3), FXPQ_FC1_SEL(4), FXPQ_FC1_SEL(5), FXPQ_FC1_SEL(6),
    FXPQ_FC1_SEL(7), FXPQ_FC1_SEL(8), FXPQ_FC1_SEL(9), FXPQ_FC1_SEL(10), FXPQ_FC1_SEL(11),
    FXPQ_FC1_SEL(12), FXPQ_FC1_SEL(13), FXPQ_FC1_SEL8(14), FXPQ_FC1_SEL8(15), FXPQ_FC1_SEL8(16)};

/* Conv 1x1 / fully connected with 1..3 output pixels: each pixel's column against every row,
 * FXPQ_FC1_ROWS rows per column load. 0 when not taken. */
static int32_t fxpq_conv_fc1(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input)
{
    const int32_t k = wk->k, bits = wk->weights->bits, out_ch = g->filter.n;
    const int32_t groups = k >> 3, tail = k & 7;
    const int32_t pixels = g->out.n * g->out.h * g->out.w;
    const int32_t kind = fxpq_input_kind(wk), u16 = kind == FXPQ_X_U16;
    const fxpq_fc1_fn fn = fxpq_fc1_table[bits - 2][kind];
    uint32_t lanes[FXPQ_FC1_XTERMS / 2]; /* a 16-bit unsigned column as lanes, 2 words per 4 terms */
    int32_t p, t;
    fxpq_fc1 f;
    if (fn == NULL || pixels >= FXPQ_PIXELS || g->filter.h != 1 || g->filter.w != 1 || g->pad_t != 0 ||
        g->pad_l != 0 || (u16 && k > FXPQ_FC1_XTERMS && !FXPQ_PATHS_HAS(FXPQ_PATHS_CONV_UINT16_LONG, bits))) {
        return 0;
    }
    f.wide = wk->acc64;
    f.chunk = INT32_MAX;
    if (f.wide) {
        /* |lane * w| <= term; 8 * chunk of them stay below 2^31. u16: the weight sums must be
         * exact in int32 too. */
        const int64_t xmax = u16 ? 32768 : (wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1))
                                                          : (((int64_t)1 << wk->in_bits) - 1));
        f.chunk = (int32_t)((int64_t)INT32_MAX / (8 * (xmax << (bits - 1))));
        if (f.chunk == 0 || (u16 && ((int64_t)k << (bits - 1)) > INT32_MAX)) {
            return 0;
        }
    }
    /* the int32 finish with the layer's constants: int32 sums, no per-channel frac, a right shift */
    f.lim = -1;
    f.shift = wk->in_frac + wk->weights->frac - wk->out.frac;
    f.bias_shift = wk->bias != NULL && wk->bias->data != NULL ? wk->in_frac + wk->weights->frac - wk->bias->frac : 0;
    if (!f.wide && wk->weights->per_channel_frac == NULL && f.shift >= 0 && f.shift <= 31) {
        f.round = f.shift > 0 ? (int32_t)(((int64_t)1 << (f.shift - 1)) & INT32_MAX) : 0;
        f.lim = (int64_t)INT32_MAX - ((int64_t)1 << f.shift >> 1) - fxpq_acc_bound(wk);
    }
    f.wk = wk;
    f.groups = groups;
    f.tail = tail;
    f.row_step = wk->row_bytes;
    /* a 16-bit unsigned column meets its rows two at a time (the weight sums need registers): its
     * lanes (EOR, PKHBT, PKHTB per 4 terms) are made once instead of once per pair of rows */
    f.laned = u16 && k <= FXPQ_FC1_XTERMS;
    for (p = 0; p < pixels; ++p) {
        f.col = fxpq_column(wk, g, input, p, NULL);
        f.raw = f.col;
        f.index = p * out_ch;
        if (f.laned) {
            const uint8_t *c = f.col;
            for (t = 0; t < 2 * groups; ++t) {
                uint32_t x02, x13;
                fxpq_fc1_lanes(&c, FXPQ_X_U16, &x02, &x13);
                lanes[2 * t] = x02;
                lanes[2 * t + 1] = x13;
            }
            f.col = (const uint8_t *)lanes;
        }
        fn(&f, (const uint8_t *)wk->weights->data, 0, out_ch);
    }
    return 1;
}

int32_t fxpq_dsp_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g, const void *input)
{
    if (fxpq_conv_fc1(wk, g, input)) {
        return 1;
    }
    if (wk->in_es == 2 && fxpq_conv_x16(wk, g, input)) {
        return 1;
    }
    return fxpq_conv_matrix(wk, g, input);
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
                             int32_t o_begin, int64_t bound)
{
    const int32_t kh = g->filter.h, kw = g->filter.w, c_in = g->in.c, cm = g->filter.c;
    const int32_t xstep = c_in * g->dilation.w;
    int16_t wrow[FXPQ_WCHUNK]; /* k <= FXPQ_WCHUNK (checked by the caller) */
    int32_t o, n, oy, ox;
    for (o = o_begin; o < cm; ++o) {
        const int32_t c = o / g->depth_multiplier;
        fxpq_finish f;
        fxpq_unpack_run((const uint8_t *)wk->weights->data + (size_t)o * (size_t)wk->row_bytes,
                        wk->weights->bits, 0, wk->k, wrow);
        f = fxpq_finish_of(wk, o, bound);
        /* a selective build (fxpq_paths.h) compiles the storage types its model's depthwise
         * layers read; the public kernel has refused the others */
        switch (wk->in_s) {
        case FXPQ_STORAGE_INT8:
            if (FXPQ_PATHS_DEPTHWISE_INT8 != 0) {
                FXPQ_DW_CHANNEL(int8_t);
            }
            break;
        case FXPQ_STORAGE_UINT8:
            if (FXPQ_PATHS_DEPTHWISE_UINT8 != 0) {
                FXPQ_DW_CHANNEL(uint8_t);
            }
            break;
        case FXPQ_STORAGE_INT16:
            if (FXPQ_PATHS_DEPTHWISE_INT16 != 0) {
                FXPQ_DW_CHANNEL(int16_t);
            }
            break;
        default:
            if ((FXPQ_PATHS_DEPTHWISE_UINT16 | FXPQ_PATHS_DEPTHWISE_UINT16_NARROW) != 0) {
                FXPQ_DW_CHANNEL(uint16_t);
            }
            break;
        }
    }
}

/* Input kinds of the depthwise quad (four channels' containers as lanes). */
#define FXPQ_DW_S8 0  /* int8: one word, SXTB16 -> lanes [c0,c2] [c1,c3] */
#define FXPQ_DW_U8 1  /* uint8: UXTB16 */
#define FXPQ_DW_S16 2 /* int16, or uint16 of at most 15 bits: two words [c0,c1] [c2,c3] */
#define FXPQ_DW_U16 3 /* uint16 of 16 bits: two words, EOR 0x80008000 gives x - 2^15 (below) */

/* One tap of four channels: the input at p, the quad's weight lanes of the tap at w (8-bit
 * kinds [c0,c2] [c1,c3], 16-bit kinds [c0,c1] [c2,c3]); one product per SMLABB / SMLATT, a
 * separate sum per channel. U16 lanes hold x - 2^15 (a signed halfword); the kernel adds
 * 2^15 * sum(w) of the window's taps back in the finish. */
#define FXPQ_DW_TAP(p, w)                                                                         \
    do {                                                                                        \
        const int32_t wa_ = (int32_t)fxpq_ld32(w), wb_ = (int32_t)fxpq_ld32((w) + 4);           \
        if (kind == FXPQ_DW_S8 || kind == FXPQ_DW_U8) {                                         \
            const uint32_t v_ = fxpq_ld32(p);                                                   \
            const int32_t x02_ = (int32_t)(kind == FXPQ_DW_S8 ? (uint32_t)__sxtb16(v_)          \
                                                               : (uint32_t)__uxtb16(v_));      \
            const int32_t x13_ = (int32_t)(kind == FXPQ_DW_S8 ? fxpq_sxtb16_ror8(v_)            \
                                                               : fxpq_uxtb16_ror8(v_));        \
            a0 = __smlabb(x02_, wa_, a0);                                                       \
            a2 = __smlatt(x02_, wa_, a2);                                                       \
            a1 = __smlabb(x13_, wb_, a1);                                                       \
            a3 = __smlatt(x13_, wb_, a3);                                                       \
        } else {                                                                                \
            const uint32_t flip_ = kind == FXPQ_DW_U16 ? 0x80008000u : 0u;                      \
            const int32_t x01_ = (int32_t)(fxpq_ld32(p) ^ flip_);                               \
            const int32_t x23_ = (int32_t)(fxpq_ld32((p) + 4) ^ flip_);                         \
            a0 = __smlabb(x01_, wa_, a0);                                                       \
            a1 = __smlatt(x01_, wa_, a1);                                                       \
            a2 = __smlabb(x23_, wb_, a2);                                                       \
            a3 = __smlatt(x23_, wb_, a3);                                                       \
        }                                                                                       \
    } while (0)

/* Taps whose weights a channel quad keeps on the stack (8 bytes a tap): every window up to 5x5
 * (the zoo's depthwise layers are 3x3; 5x5 is the other common size). Larger windows take the
 * channel-at-a-time loop. */
#define FXPQ_DW_TAPS 25

/* What one channel quad's pass over the output needs: its weight lanes, its finish (U16: the
 * finish's `add` already holds 2^15 * the sum of each channel's weights over the full window). */
typedef struct {
    const uint8_t *wl; /* [tap][2 words] weight lanes */
    int32_t add[4], shift[4], mul[4];
    int32_t wsum[4]; /* U16: sum of each channel's weights (full window) */
} fxpq_dw_quad_consts;

/* Finish and store the four outputs of a pixel (sums a0..a3 of channels c0..c3). */
#define FXPQ_DW_FINISH(out)                                                                       \
    do {                                                                                        \
        int32_t v0 = (int32_t)((uint32_t)a0 + (uint32_t)qc->add[0]) >> qc->shift[0];            \
        int32_t v1 = (int32_t)((uint32_t)a1 + (uint32_t)qc->add[1]) >> qc->shift[1];            \
        int32_t v2 = (int32_t)((uint32_t)a2 + (uint32_t)qc->add[2]) >> qc->shift[2];            \
        int32_t v3 = (int32_t)((uint32_t)a3 + (uint32_t)qc->add[3]) >> qc->shift[3];            \
        if (left) { /* some channel's output frac is above the accumulator's */                \
            v0 *= qc->mul[0];                                                                   \
            v1 *= qc->mul[1];                                                                   \
            v2 *= qc->mul[2];                                                                   \
            v3 *= qc->mul[3];                                                                   \
        }                                                                                       \
        v0 = v0 < lo ? lo : (v0 > hi ? hi : v0);                                                \
        v1 = v1 < lo ? lo : (v1 > hi ? hi : v1);                                                \
        v2 = v2 < lo ? lo : (v2 > hi ? hi : v2);                                                \
        v3 = v3 < lo ? lo : (v3 > hi ? hi : v3);                                                \
        if (out_es == 1) {                                                                      \
            fxpq_st32(out, ((uint32_t)v0 & 0xFFu) | (((uint32_t)v1 & 0xFFu) << 8) |             \
                               (((uint32_t)v2 & 0xFFu) << 16) | ((uint32_t)v3 << 24));          \
        } else {                                                                                \
            fxpq_st32(out, ((uint32_t)v0 & 0xFFFFu) | ((uint32_t)v1 << 16));                    \
            fxpq_st32((out) + 4, ((uint32_t)v2 & 0xFFFFu) | ((uint32_t)v3 << 16));              \
        }                                                                                       \
    } while (0)

/* One quad of channels [ch, ch + 4) (multiplier 1) over every output pixel. Rows and columns
 * of output pixels whose window lies inside the input (the interior) take a loop with the
 * window's bounds, pointers and (for 3x3) taps fixed: no per-pixel window clipping; the border
 * pixels clip their window (U16: and add back 2^15 * the sum of the valid taps' weights). */
FXPQ_INLINE void fxpq_dw_quad(const fxpq_weighted *wk, const fxpq_geometry *g, const uint8_t *x,
                              int32_t ch, const fxpq_dw_quad_consts *qc, int32_t ox_lo, int32_t ox_hi,
                              const int32_t kind, const int32_t left)
{
    const int32_t es = (kind == FXPQ_DW_S8 || kind == FXPQ_DW_U8) ? 1 : 2;
    const int32_t kh = g->filter.h, kw = g->filter.w, c = g->in.c;
    const int32_t xstep = c * g->dilation.w * es, row_step = g->in.w * c * g->dilation.h * es;
    const int32_t px_step = g->stride.w * c * es;
    const int32_t lo = wk->out.lo, hi = wk->out.hi, out_es = fxpq_elem_size(wk->out.storage);
    uint8_t *out = (uint8_t *)wk->out.data + (size_t)ch * (size_t)out_es;
    const size_t out_step = (size_t)c * (size_t)out_es;
    const uint8_t *wl = qc->wl;
    int32_t n, oy, ox;
    x += (size_t)ch * (size_t)es;
    for (n = 0; n < g->in.n; ++n) {
        for (oy = 0; oy < g->out.h; ++oy) {
            const int32_t iy0 = oy * g->stride.h - g->pad_t;
            int32_t ky0, ky1;
            fxpq_valid_taps(iy0, g->dilation.h, kh, g->in.h, &ky0, &ky1);
            for (ox = 0; ox < g->out.w; ++ox, out += out_step) {
                const int32_t ix0 = ox * g->stride.w - g->pad_l;
                int32_t kx0, kx1, taps_x, ky, kx, a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                const uint8_t *pr, *wr;
                if (ky0 == 0 && ky1 == kh && ox == ox_lo && ox < ox_hi) {
                    /* the interior of this row: full windows, fixed steps */
                    const uint8_t *p0 = x + (size_t)(((n * g->in.h + iy0) * g->in.w + ix0) * c) * (size_t)es;
                    for (; ox < ox_hi; ++ox, out += out_step, p0 += px_step) {
                        const uint8_t *p = p0, *w = wl;
                        a0 = a1 = a2 = a3 = 0;
                        if (kh == 3 && kw == 3) {
                            FXPQ_DW_TAP(p, w);
                            FXPQ_DW_TAP(p + xstep, w + 8);
                            FXPQ_DW_TAP(p + 2 * xstep, w + 16);
                            p += row_step;
                            FXPQ_DW_TAP(p, w + 24);
                            FXPQ_DW_TAP(p + xstep, w + 32);
                            FXPQ_DW_TAP(p + 2 * xstep, w + 40);
                            p += row_step;
                            FXPQ_DW_TAP(p, w + 48);
                            FXPQ_DW_TAP(p + xstep, w + 56);
                            FXPQ_DW_TAP(p + 2 * xstep, w + 64);
                        } else {
                            for (ky = 0; ky < kh; ++ky) {
                                const uint8_t *q = p + ky * row_step;
                                for (kx = 0; kx < kw; ++kx, q += xstep, w += 8) {
                                    FXPQ_DW_TAP(q, w);
                                }
                            }
                        }
                        if (kind == FXPQ_DW_U16) {
                            a0 = (int32_t)((uint32_t)a0 + ((uint32_t)qc->wsum[0] << 15));
                            a1 = (int32_t)((uint32_t)a1 + ((uint32_t)qc->wsum[1] << 15));
                            a2 = (int32_t)((uint32_t)a2 + ((uint32_t)qc->wsum[2] << 15));
                            a3 = (int32_t)((uint32_t)a3 + ((uint32_t)qc->wsum[3] << 15));
                        }
                        FXPQ_DW_FINISH(out);
                    }
                    if (ox >= g->out.w) {
                        break;
                    }
                    a0 = a1 = a2 = a3 = 0;
                }
                {
                    const int32_t ixp = ox * g->stride.w - g->pad_l;
                    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0; /* U16: valid taps' weight sums */
                    if (g->dilation.w == 1) { /* the common case, without the division */
                        kx0 = ixp < 0 ? -ixp : 0;
                        kx1 = g->in.w - ixp < kw ? g->in.w - ixp : kw;
                        kx0 = kx0 > kw ? kw : kx0;
                        kx1 = kx1 < kx0 ? kx0 : kx1;
                    } else {
                        fxpq_valid_taps(ixp, g->dilation.w, kw, g->in.w, &kx0, &kx1);
                    }
                    taps_x = kx1 - kx0;
                    pr = x + (size_t)(((n * g->in.h + iy0 + ky0 * g->dilation.h) * g->in.w + ixp +
                                       kx0 * g->dilation.w) * c) * (size_t)es;
                    wr = wl + (ky0 * kw + kx0) * 8;
                    for (ky = ky0; ky < ky1 && taps_x > 0; ++ky) {
                        const uint8_t *p = pr, *w = wr;
                        if (kind != FXPQ_DW_U16 && taps_x == 2) { /* a 3-wide window at a border */
                            FXPQ_DW_TAP(p, w);
                            FXPQ_DW_TAP(p + xstep, w + 8);
                            pr += row_step;
                            wr += kw * 8;
                            continue;
                        }
                        for (kx = 0; kx < taps_x; ++kx) {
                            FXPQ_DW_TAP(p, w);
                            if (kind == FXPQ_DW_U16) {
                                const uint32_t wa = fxpq_ld32(w), wb = fxpq_ld32(w + 4);
                                s0 += (int16_t)(wa & 0xFFFFu);
                                s1 += (int32_t)wa >> 16;
                                s2 += (int16_t)(wb & 0xFFFFu);
                                s3 += (int32_t)wb >> 16;
                            }
                            p += xstep;
                            w += 8;
                        }
                        pr += row_step;
                        wr += kw * 8;
                    }
                    if (kind == FXPQ_DW_U16) {
                        a0 = (int32_t)((uint32_t)a0 + ((uint32_t)s0 << 15));
                        a1 = (int32_t)((uint32_t)a1 + ((uint32_t)s1 << 15));
                        a2 = (int32_t)((uint32_t)a2 + ((uint32_t)s2 << 15));
                        a3 = (int32_t)((uint32_t)a3 + ((uint32_t)s3 << 15));
                    }
                    FXPQ_DW_FINISH(out);
                }
            }
        }
    }
}

/* The interior columns [ox_lo, ox_hi) of the output: the pixels whose window's columns all lie
 * inside the input (empty when none does). */
static void fxpq_dw_interior(const fxpq_geometry *g, int32_t *ox_lo, int32_t *ox_hi)
{
    int32_t ox, k0, k1;
    *ox_lo = *ox_hi = 0;
    for (ox = 0; ox < g->out.w; ++ox) {
        fxpq_valid_taps(ox * g->stride.w - g->pad_l, g->dilation.w, g->filter.w, g->in.w, &k0, &k1);
        if (k0 == 0 && k1 == g->filter.w) {
            if (*ox_hi == *ox_lo) {
                *ox_lo = ox;
            }
            *ox_hi = ox + 1;
        } else if (*ox_hi > *ox_lo) {
            break;
        }
    }
}

#define FXPQ_DW_QUAD_CALL(left)                                                                   \
    do {                                                                                        \
        const uint8_t *x_ = (const uint8_t *)input;                                             \
        switch (kind) { /* the kinds of a selective build's storage types (fxpq_paths.h) */      \
        case FXPQ_DW_S8:                                                                        \
            if (FXPQ_PATHS_DEPTHWISE_INT8 != 0) {                                               \
                fxpq_dw_quad(wk, g, x_, 4 * q, &qc, ox_lo, ox_hi, FXPQ_DW_S8, left);            \
            }                                                                                   \
            break;                                                                              \
        case FXPQ_DW_U8:                                                                        \
            if (FXPQ_PATHS_DEPTHWISE_UINT8 != 0) {                                              \
                fxpq_dw_quad(wk, g, x_, 4 * q, &qc, ox_lo, ox_hi, FXPQ_DW_U8, left);            \
            }                                                                                   \
            break;                                                                              \
        case FXPQ_DW_S16:                                                                       \
            if (FXPQ_PATHS_DEPTHWISE_LANES16 != 0) {                                            \
                fxpq_dw_quad(wk, g, x_, 4 * q, &qc, ox_lo, ox_hi, FXPQ_DW_S16, left);           \
            }                                                                                   \
            break;                                                                              \
        default:                                                                                \
            if (FXPQ_PATHS_DEPTHWISE_UINT16 != 0) {                                             \
                fxpq_dw_quad(wk, g, x_, 4 * q, &qc, ox_lo, ox_hi, FXPQ_DW_U16, left);           \
            }                                                                                   \
            break;                                                                              \
        }                                                                                       \
    } while (0)

int32_t fxpq_dsp_depthwise_conv2d(const fxpq_weighted *wk, const fxpq_geometry *g,
                                  const void *input)
{
    const int32_t k = wk->k, c = g->filter.c, quads = c >> 2;
    const int32_t kind = wk->in_s == FXPQ_STORAGE_INT8    ? FXPQ_DW_S8
                         : wk->in_s == FXPQ_STORAGE_UINT8 ? FXPQ_DW_U8
                         : (wk->in_s == FXPQ_STORAGE_INT16 || wk->in_bits < 16) ? FXPQ_DW_S16
                                                                                 : FXPQ_DW_U16;
    int64_t bound;
    int32_t o, q, t, all_fast = 1, ox_lo, ox_hi;
    if (k > FXPQ_WCHUNK) {
        return 0; /* a window whose row the stack does not hold */
    }
    if (wk->acc64) {
        /* the width rule asks for int64; the channels' sum |w| * max|x| may still prove that
         * every exact sum fits int32 (SMLABB's modular sums are then exact) */
        const int64_t x_abs = wk->in_signed ? ((int64_t)1 << (wk->in_bits - 1))
                                            : (((int64_t)1 << wk->in_bits) - 1);
        for (bound = 0, o = 0; o < c && bound <= INT32_MAX; ++o) { /* c: the output channels */
            int32_t mag;
            (void)fxpq_row_sums(wk, o, &mag);
            bound = (int64_t)mag * x_abs > bound ? (int64_t)mag * x_abs : bound;
        }
        if (bound > INT32_MAX) {
            return 0;
        }
    } else {
        bound = fxpq_acc_bound(wk);
    }
    if (g->depth_multiplier != 1 || quads == 0 || k > FXPQ_DW_TAPS) {
        fxpq_dw_channels(wk, g, input, 0, bound);
        return 1;
    }
    for (o = 0; o < quads * 4 && all_fast; ++o) {
        all_fast = fxpq_finish_of(wk, o, bound).fast;
    }
    if (!all_fast) {
        fxpq_dw_channels(wk, g, input, 0, bound);
        return 1;
    }
    fxpq_dw_interior(g, &ox_lo, &ox_hi);
    for (q = 0; q < quads; ++q) {
        uint32_t wl[FXPQ_DW_TAPS * 2]; /* the quad's weights, [tap][2 lanes words] */
        int16_t wrow[FXPQ_DW_TAPS];
        fxpq_dw_quad_consts qc;
        int32_t i;
        for (i = 0; i < 4; ++i) {
            const int32_t ch = 4 * q + i;
            const fxpq_finish f = fxpq_finish_of(wk, ch, bound);
            /* byte offset of channel i's halfword in a tap's 8 bytes */
            const int32_t lane = kind <= FXPQ_DW_U8 ? (i & 1) * 4 + ((i >> 1) & 1) * 2 : 2 * i;
            int32_t sum = 0;
            fxpq_unpack_run((const uint8_t *)wk->weights->data + (size_t)ch * (size_t)wk->row_bytes,
                            wk->weights->bits, 0, k, wrow);
            for (t = 0; t < k; ++t) {
                fxpq_st16((uint8_t *)wl + 8 * t + lane, wrow[t]);
                sum += wrow[t];
            }
            qc.add[i] = f.add;
            qc.shift[i] = f.shift;
            qc.mul[i] = f.mul;
            qc.wsum[i] = sum;
        }
        qc.wl = (const uint8_t *)wl;
        /* right shifts only (the common case): no multiply in the finish */
        if (qc.mul[0] == 1 && qc.mul[1] == 1 && qc.mul[2] == 1 && qc.mul[3] == 1) {
            FXPQ_DW_QUAD_CALL(0);
        } else {
            FXPQ_DW_QUAD_CALL(1);
        }
    }
    fxpq_dw_channels(wk, g, input, quads * 4, bound); /* the last 1..3 channels */
    return 1;
}

/* ---- max pool 2D ------------------------------------------------------------------------------ */

/* 16-bit inputs: a typed maximum per channel over the clipped window, then the int32 rescale
 * (shift in [-15, 31]: |max| * 2^15 < 2^31) and clamp. */
#define FXPQ_MAX16(in_t)                                                                          \
    do {                                                                                        \
        const in_t *x = (const in_t *)input;                                                    \
        for (ch = 0; ch < c; ++ch) {                                                            \
            int32_t m = x[first + ch], v;                                                       \
            for (ky = ky0; ky < ky1; ++ky) {                                                    \
                const in_t *p = x + ((n * id->h + iy0 + ky) * id->w + ix0 + kx0) * c + ch;      \
                for (kx = kx0; kx < kx1; ++kx, p += c) {                                        \
                    m = *p > m ? *p : m;                                                        \
                }                                                                               \
            }                                                                                   \
            v = shift >= 0 ? (m + round) >> shift : m * ((int32_t)1 << -shift);                \
            v = v < lo ? lo : (v > hi ? hi : v);                                                \
            fxpq_store_bits(output, out_es, obase + ch, v);                                     \
        }                                                                                       \
    } while (0)

static int32_t fxpq_max_pool16(const fxpq_pool_params *params, const fxpq_dims *id, const void *input,
                               fxpq_storage in_s, const fxpq_dims *od, void *output, int32_t out_es,
                               int32_t shift, int32_t pad_t, int32_t pad_l, int32_t lo, int32_t hi)
{
    const int32_t c = id->c, round = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    int32_t n, oy, ox, ch, ky, kx;
    for (n = 0; n < od->n; ++n) {
        for (oy = 0; oy < od->h; ++oy) {
            const int32_t iy0 = oy * params->stride.h - pad_t;
            int32_t ky0, ky1;
            fxpq_valid_taps(iy0, 1, params->filter.h, id->h, &ky0, &ky1);
            for (ox = 0; ox < od->w; ++ox) {
                const int32_t ix0 = ox * params->stride.w - pad_l;
                const int32_t obase = ((n * od->h + oy) * od->w + ox) * c;
                int32_t kx0, kx1, first;
                fxpq_valid_taps(ix0, 1, params->filter.w, id->w, &kx0, &kx1);
                first = ((n * id->h + iy0 + ky0) * id->w + ix0 + kx0) * c;
                if (in_s == FXPQ_STORAGE_INT16) {
                    FXPQ_MAX16(int16_t);
                } else {
                    FXPQ_MAX16(uint16_t);
                }
            }
        }
    }
    return 1;
}

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
    if (shift > 31 || shift < -15) {
        return 0;
    }
    if (in_s != FXPQ_STORAGE_INT8 && in_s != FXPQ_STORAGE_UINT8) {
        return fxpq_max_pool16(params, id, input, in_s, od, output, out_es, shift, pad_t, pad_l, lo, hi);
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

/* ---- average pool 2D ---------------------------------------------------------------------- */

/* round_half_up(sum * 2^d / count) = floor((2 sum 2^d + count) / (2 count)) (d >= 0), or
 * floor((2 sum + count 2^-d) / (2 count 2^-d)) (d < 0): the contract's average (numerics.md
 * section 7) as one int32 floor division, when the caller has proven that every term fits. */
FXPQ_INLINE int32_t fxpq_avg32(int32_t sum, int32_t count, int32_t d)
{
    const int32_t num = d >= 0 ? sum * ((int32_t)2 << d) + count : 2 * sum + (count << -d);
    const int32_t den = d >= 0 ? 2 * count : (2 * count) << -d;
    int32_t q = num / den;
    if (q * den != num && num < 0) {
        q -= 1; /* C division truncates; the contract floors */
    }
    return q;
}

/* Channels [c0, c0 + 4) of 8-bit inputs: the window's words summed as two SXTAB16 / UXTAB16
 * lane pairs [c0,c2] [c1,c3] (16-bit lanes: exact for windows of at most 255 taps). */
#define FXPQ_AVG_QUAD8(ext)                                                                       \
    do {                                                                                        \
        uint32_t s02 = 0, s13 = 0;                                                              \
        for (ky = ky0; ky < ky1; ++ky) {                                                        \
            const uint8_t *p = row0 + (size_t)(ky - ky0) * (size_t)row_step;                   \
            for (kx = 0; kx < taps_x; ++kx, p += c) {                                           \
                const uint32_t v = fxpq_ld32(p);                                                \
                __asm__(ext " %0, %0, %1" : "+r"(s02) : "r"(v));                                \
                __asm__(ext " %0, %0, %1, ror #8" : "+r"(s13) : "r"(v));                        \
            }                                                                                   \
        }                                                                                       \
        if (is_signed) {                                                                        \
            sums[0] = (int16_t)(s02 & 0xFFFFu);                                                 \
            sums[2] = (int32_t)s02 >> 16;                                                       \
            sums[1] = (int16_t)(s13 & 0xFFFFu);                                                 \
            sums[3] = (int32_t)s13 >> 16;                                                       \
        } else {                                                                                \
            sums[0] = (int32_t)(s02 & 0xFFFFu);                                                 \
            sums[2] = (int32_t)(s02 >> 16);                                                     \
            sums[1] = (int32_t)(s13 & 0xFFFFu);                                                 \
            sums[3] = (int32_t)(s13 >> 16);                                                     \
        }                                                                                       \
    } while (0)

int32_t fxpq_dsp_average_pool2d(const fxpq_pool_params *params, const fxpq_dims *id, const void *input,
                                const fxpq_format *input_fmt, const fxpq_dims *od, void *output,
                                const fxpq_format *output_fmt, int32_t pad_t, int32_t pad_l, int32_t lo,
                                int32_t hi)
{
    const fxpq_storage in_s = fxpq_storage_of(input_fmt);
    const int32_t es = fxpq_elem_size(in_s), out_es = fxpq_elem_size(fxpq_storage_of(output_fmt));
    const int32_t d = output_fmt->frac - input_fmt->frac, c = id->c;
    const int32_t taps_max = params->filter.h * params->filter.w;
    const int32_t is_signed = in_s == FXPQ_STORAGE_INT8 || in_s == FXPQ_STORAGE_INT16;
    const int32_t lanes8 = es == 1 && taps_max <= 255;
    int32_t n, oy, ox, ch, j, in_lo, in_hi;
    int64_t xmax;
    fxpq_format_range(input_fmt, &in_lo, &in_hi);
    xmax = -(int64_t)in_lo > (int64_t)in_hi ? -(int64_t)in_lo : (int64_t)in_hi;
    /* every term of fxpq_avg32 below 2^31 (|sum| <= taps * xmax) */
    if (params->filter.h > 4096 || params->filter.w > 4096 || d > 12 || d < -12 ||
        (d >= 0 && (int64_t)taps_max * xmax * ((int64_t)2 << d) + taps_max > INT32_MAX) ||
        (d < 0 && ((int64_t)2 * taps_max * xmax + ((int64_t)2 * taps_max << -d)) > INT32_MAX)) {
        return 0;
    }
    for (n = 0; n < od->n; ++n) {
        for (oy = 0; oy < od->h; ++oy) {
            const int32_t iy0 = oy * params->stride.h - pad_t;
            int32_t ky0, ky1;
            fxpq_valid_taps(iy0, 1, params->filter.h, id->h, &ky0, &ky1);
            for (ox = 0; ox < od->w; ++ox) {
                const int32_t ix0 = ox * params->stride.w - pad_l;
                int32_t kx0, kx1, taps_x, count, ky, kx;
                const uint8_t *base;
                uint8_t *out;
                size_t row_step;
                fxpq_valid_taps(ix0, 1, params->filter.w, id->w, &kx0, &kx1);
                taps_x = kx1 - kx0;
                count = (ky1 - ky0) * taps_x;
                base = (const uint8_t *)input +
                       (size_t)(((n * id->h + iy0 + ky0) * id->w + ix0 + kx0) * c) * (size_t)es;
                out = (uint8_t *)output + (size_t)(((n * od->h + oy) * od->w + ox) * c) * (size_t)out_es;
                row_step = (size_t)id->w * (size_t)c * (size_t)es;
                for (ch = 0; ch < c; ch += 4) {
                    const int32_t lanes = c - ch < 4 ? c - ch : 4;
                    const uint8_t *row0 = base + (size_t)ch * (size_t)es;
                    int32_t sums[4] = {0, 0, 0, 0};
                    if (lanes == 4 && lanes8) {
                        if (is_signed) {
                            FXPQ_AVG_QUAD8("sxtab16");
                        } else {
                            FXPQ_AVG_QUAD8("uxtab16");
                        }
                    } else if (lanes == 4 && es == 2) { /* two words of halfwords [c0,c1] [c2,c3] */
                        for (ky = ky0; ky < ky1; ++ky) {
                            const uint8_t *p = row0 + (size_t)(ky - ky0) * row_step;
                            for (kx = 0; kx < taps_x; ++kx, p += (size_t)c * 2u) {
                                const uint32_t v0 = fxpq_ld32(p), v1 = fxpq_ld32(p + 4);
                                if (is_signed) {
                                    sums[0] += (int16_t)(v0 & 0xFFFFu);
                                    sums[1] += (int32_t)v0 >> 16;
                                    sums[2] += (int16_t)(v1 & 0xFFFFu);
                                    sums[3] += (int32_t)v1 >> 16;
                                } else {
                                    sums[0] += (int32_t)(v0 & 0xFFFFu);
                                    sums[1] += (int32_t)(v0 >> 16);
                                    sums[2] += (int32_t)(v1 & 0xFFFFu);
                                    sums[3] += (int32_t)(v1 >> 16);
                                }
                            }
                        }
                    } else {
                        for (ky = ky0; ky < ky1; ++ky) {
                            const uint8_t *p = row0 + (size_t)(ky - ky0) * row_step;
                            for (kx = 0; kx < taps_x; ++kx, p += (size_t)c * (size_t)es) {
                                for (j = 0; j < lanes; ++j) {
                                    sums[j] += fxpq_load(p, in_s, j);
                                }
                            }
                        }
                    }
                    for (j = 0; j < lanes; ++j) {
                        int32_t v = count > 0 ? fxpq_avg32(sums[j], count, d) : 0;
                        v = v < lo ? lo : (v > hi ? hi : v);
                        fxpq_store_bits(out, out_es, ch + j, v);
                    }
                }
            }
        }
    }
    return 1;
}

/* ---- requantize ------------------------------------------------------------------------------ */

/* x rescaled by ((x + round) >> right) * left and clamped, one typed loop per input container
 * and output width, when every term fits int32 (|x| < 2^16). */
#define FXPQ_REQ_LOOP(in_t, o_t)                                                                  \
    do {                                                                                        \
        const in_t *px = (const in_t *)input;                                                   \
        o_t *po = (o_t *)out->data;                                                             \
        for (i = 0; i < size; ++i) {                                                            \
            int32_t v = (((int32_t)px[i] + round) >> right) * left;                             \
            v = v < lo ? lo : (v > hi ? hi : v);                                                \
            po[i] = (o_t)v;                                                                     \
        }                                                                                       \
    } while (0)

#define FXPQ_REQ_OUT(in_t)                                                                        \
    do {                                                                                        \
        if (out_es == 1) {                                                                      \
            FXPQ_REQ_LOOP(in_t, uint8_t);                                                       \
        } else {                                                                                \
            FXPQ_REQ_LOOP(in_t, uint16_t);                                                      \
        }                                                                                       \
    } while (0)

int32_t fxpq_dsp_requantize(int32_t size, const void *input, fxpq_storage in_s, int32_t in_frac,
                            const fxpq_output *out)
{
    const int32_t shift = in_frac - out->frac, lo = out->lo, hi = out->hi;
    const int32_t out_es = fxpq_elem_size(out->storage);
    int32_t i, round, right, left;
    if (shift > 30 || shift < -14) { /* (2^16 + round) and 2^16 * left below 2^31 */
        return 0;
    }
    round = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    right = shift > 0 ? shift : 0;
    left = shift < 0 ? (int32_t)1 << -shift : 1;
    switch (in_s) {
    case FXPQ_STORAGE_INT8: FXPQ_REQ_OUT(int8_t); break;
    case FXPQ_STORAGE_UINT8: FXPQ_REQ_OUT(uint8_t); break;
    case FXPQ_STORAGE_INT16: FXPQ_REQ_OUT(int16_t); break;
    default: FXPQ_REQ_OUT(uint16_t); break;
    }
    return 1;
}

/* ---- add ------------------------------------------------------------------------------------- */

/* The aligned sum, the rescale and the clamp in int32 when the operands' bound proves that no
 * intermediate reaches 2^31: one typed loop per pair of input containers and output width, the
 * rescale branch-free ((v + round) >> right) * left. */
#define FXPQ_ADD_LOOP(a_t, b_t, o_t)                                                              \
    do {                                                                                        \
        const a_t *pa = (const a_t *)a;                                                         \
        const b_t *pb = (const b_t *)b;                                                         \
        o_t *po = (o_t *)output;                                                                \
        for (i = 0; i < size; ++i) {                                                            \
            int32_t v = (int32_t)pa[i] * mul_a + (int32_t)pb[i] * mul_b;                        \
            v = ((v + round) >> right) * left;                                                  \
            v = v < lo ? lo : (v > hi ? hi : v);                                                \
            po[i] = (o_t)v;                                                                     \
        }                                                                                       \
    } while (0)

#define FXPQ_ADD_OUT(a_t, b_t)                                                                    \
    do {                                                                                        \
        if (out_es == 1) {                                                                      \
            FXPQ_ADD_LOOP(a_t, b_t, uint8_t);                                                   \
        } else {                                                                                \
            FXPQ_ADD_LOOP(a_t, b_t, uint16_t);                                                  \
        }                                                                                       \
    } while (0)

#define FXPQ_ADD_B(a_t)                                                                           \
    do {                                                                                        \
        switch (b_s) {                                                                          \
        case FXPQ_STORAGE_INT8: FXPQ_ADD_OUT(a_t, int8_t); break;                              \
        case FXPQ_STORAGE_UINT8: FXPQ_ADD_OUT(a_t, uint8_t); break;                            \
        case FXPQ_STORAGE_INT16: FXPQ_ADD_OUT(a_t, int16_t); break;                            \
        default: FXPQ_ADD_OUT(a_t, uint16_t); break;                                           \
        }                                                                                       \
    } while (0)

int32_t fxpq_dsp_add(int32_t size, const void *a, fxpq_storage a_s, int32_t sa, const void *b,
                     fxpq_storage b_s, int32_t sb, int32_t frac, const fxpq_output *out, void *output)
{
    const int32_t shift = frac - out->frac, lo = out->lo, hi = out->hi;
    const int32_t out_es = fxpq_elem_size(out->storage);
    const int32_t round = shift > 0 && shift <= 31 ? (int32_t)1 << (shift - 1) : 0;
    const int32_t right = shift > 0 ? shift : 0;
    const int32_t left = shift < 0 && shift >= -30 ? (int32_t)1 << -shift : 1;
    int32_t i, mul_a, mul_b;
    const int64_t bound = ((int64_t)1 << (8 * fxpq_elem_size(a_s) + sa)) +
                          ((int64_t)1 << (8 * fxpq_elem_size(b_s) + sb));
    if (sa > 16 || sb > 16 || shift > 31 || shift < -30 || bound + round >= ((int64_t)1 << 31) ||
        bound * left >= ((int64_t)1 << 31)) {
        return 0;
    }
    mul_a = (int32_t)1 << sa; /* multiplies, not shifts: no left shift of a negative value */
    mul_b = (int32_t)1 << sb;
    switch (a_s) {
    case FXPQ_STORAGE_INT8: FXPQ_ADD_B(int8_t); break;
    case FXPQ_STORAGE_UINT8: FXPQ_ADD_B(uint8_t); break;
    case FXPQ_STORAGE_INT16: FXPQ_ADD_B(int16_t); break;
    default: FXPQ_ADD_B(uint16_t); break;
    }
    return 1;
}

#endif
