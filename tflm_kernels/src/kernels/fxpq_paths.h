/*
 * fxpq_paths.h - which combinations of weighted op, input storage and weight width this build
 * compiles (docs/kernels.md "Selective build"; internal, included by fxpq_internal.h).
 *
 * The optimized conv / fully connected kernels keep one specialized loop per input kind and
 * weight width (fxpq_dsp.c: 60 of them, most of the kernels' code), and depthwise one per input
 * kind. A firmware flashes one model, which runs a handful of these. Built with
 * -DFXPQ_SELECTIVE_PATHS, the kernels read the combinations from a generated fxpq_model_paths.h
 * (fxpq_keras.kernels.paths, written by `fxpq deploy --package` and the bench's firmware builds)
 * and compile only those loops; a call with any other combination returns FXPQ_ERR_NOT_BUILT
 * (fxpq_kernel_path_built), never a different result. Without the define every combination is
 * built.
 *
 * Each mask has bit (w - 2) set for weight width w (2..16):
 *   FXPQ_PATHS_CONV_<S>       conv 2D and fully connected (one kernel) over <S> inputs
 *   FXPQ_PATHS_DEPTHWISE_<S>  depthwise conv 2D over <S> inputs
 * with <S> one of INT8, UINT8, INT16, UINT16 (the input's storage type; UINT16: a 16-bit unsigned
 * format, which the kernels run as x - 2^15 lanes, and every uint16 input the TFLM glue passes from
 * a file without in_bits, format version < 4) or UINT16_NARROW (a uint16 input whose format has at
 * most 15 bits, run as int16 lanes: the runner's, which reads the format from the file, and the
 * glue's from the op's in_bits; optional, the UINT16 mask when not given). And FXPQ_PATHS_CONV_UINT16_LONG (optional, the UINT16 mask when not given):
 * the widths of conv / fully connected over 16-bit unsigned formats whose dot products have more
 * than FXPQ_PATHS_BLOCK_TERMS terms: only those rows, which do not fit the unpacked-row block, run
 * the x - 2^15 decoder loop; shorter ones always take the block.
 */
#ifndef FXPQ_PATHS_H
#define FXPQ_PATHS_H

#ifdef FXPQ_SELECTIVE_PATHS
#include "fxpq_model_paths.h"
#if !defined(FXPQ_PATHS_CONV_INT8) || !defined(FXPQ_PATHS_CONV_UINT8) || !defined(FXPQ_PATHS_CONV_INT16) || \
    !defined(FXPQ_PATHS_CONV_UINT16) || !defined(FXPQ_PATHS_DEPTHWISE_INT8) ||                           \
    !defined(FXPQ_PATHS_DEPTHWISE_UINT8) || !defined(FXPQ_PATHS_DEPTHWISE_INT16) ||                     \
    !defined(FXPQ_PATHS_DEPTHWISE_UINT16)
#error "fxpq_model_paths.h must define FXPQ_PATHS_CONV_* and FXPQ_PATHS_DEPTHWISE_* (INT8, UINT8, INT16, UINT16): regenerate it (docs/kernels.md)"
#endif
#ifndef FXPQ_PATHS_CONV_UINT16_NARROW
#define FXPQ_PATHS_CONV_UINT16_NARROW FXPQ_PATHS_CONV_UINT16
#endif
#ifndef FXPQ_PATHS_DEPTHWISE_UINT16_NARROW
#define FXPQ_PATHS_DEPTHWISE_UINT16_NARROW FXPQ_PATHS_DEPTHWISE_UINT16
#endif
#ifndef FXPQ_PATHS_CONV_UINT16_LONG
#define FXPQ_PATHS_CONV_UINT16_LONG FXPQ_PATHS_CONV_UINT16
#endif
#else
#define FXPQ_PATHS_ALL_WIDTHS 0x7FFFu
#define FXPQ_PATHS_CONV_INT8 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_CONV_UINT8 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_CONV_INT16 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_CONV_UINT16 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_DEPTHWISE_INT8 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_DEPTHWISE_UINT8 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_DEPTHWISE_INT16 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_DEPTHWISE_UINT16 FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_CONV_UINT16_NARROW FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_DEPTHWISE_UINT16_NARROW FXPQ_PATHS_ALL_WIDTHS
#define FXPQ_PATHS_CONV_UINT16_LONG FXPQ_PATHS_ALL_WIDTHS
#endif

/* Terms of the longest row the unpacked-row block holds (fxpq_dsp.c: FXPQ_WBUF / 2 int16). */
#define FXPQ_PATHS_BLOCK_TERMS 512

/* Width w (2..16) is in mask m. */
#define FXPQ_PATHS_HAS(m, w) ((((unsigned)(m)) >> ((w) - 2)) & 1u)

/* The optimized kernels' 16-bit input kinds: int16 lanes (int16, and uint16 of at most 15 bits)
 * and full 16-bit unsigned (x - 2^15 lanes: FXPQ_PATHS_*_UINT16 alone). */
#define FXPQ_PATHS_CONV_LANES16 (FXPQ_PATHS_CONV_INT16 | FXPQ_PATHS_CONV_UINT16_NARROW)
#define FXPQ_PATHS_DEPTHWISE_LANES16 (FXPQ_PATHS_DEPTHWISE_INT16 | FXPQ_PATHS_DEPTHWISE_UINT16_NARROW)
/* Every width a conv or depthwise of this build may unpack (the row unpackers). */
#define FXPQ_PATHS_ANY_WIDTH                                                                       \
    (FXPQ_PATHS_CONV_INT8 | FXPQ_PATHS_CONV_UINT8 | FXPQ_PATHS_CONV_LANES16 | FXPQ_PATHS_CONV_UINT16 | \
     FXPQ_PATHS_DEPTHWISE_INT8 | FXPQ_PATHS_DEPTHWISE_UINT8 | FXPQ_PATHS_DEPTHWISE_LANES16 |      \
     FXPQ_PATHS_DEPTHWISE_UINT16)

#endif /* FXPQ_PATHS_H */
