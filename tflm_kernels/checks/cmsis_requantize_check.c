/*
 * cmsis_requantize_check.c - does CMSIS-NN's arm_nn_requantize, given the multiplier/shift pair that
 * fxpq_cmsis_pair() (src/kernels/fxpq_cmsis_pair.h, the route's) picks for a power-of-two rescale,
 * give fxpq_rescale's result?
 *
 *   gcc -O2 -I<CMSIS-NN>/Include -Iinclude -Isrc/kernels [-DCMSIS_NN_USE_SINGLE_ROUNDING] \
 *       checks/cmsis_requantize_check.c src/kernels/fxpq_common.c -o check
 *   ./check S_MIN S_MAX V_MIN V_MAX [STEP]
 *
 * For every right shift s in [S_MIN, S_MAX] (the accumulator's frac minus the output's; negative:
 * a left shift) and every v in [V_MIN, V_MAX] (step STEP, default 1) it compares
 * arm_nn_requantize(v, mult, shift) with fxpq_rescale(v, s, 0) wherever fxpq_cmsis_exact() says
 * the pair is exact (|v| < 2^30, and for a left shift n, |v| * 2^(n+1) < 2^31), counts the inputs
 * it claims and the mismatches, and exits 1 on any mismatch. -DFXPQ_NATURAL_PAIR checks
 * TFLite's normalized pair (2^30, 1 - s) instead, which double rounding breaks. docs/kernels.md (CMSIS-NN) has the
 * proof; this program is its exhaustive check. CMSIS-NN is compiled from the caller's tree, never
 * vendored here.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "arm_nnsupportfunctions.h"
#include "fxpq_cmsis_pair.h"
#include "fxpq_kernels.h"

/* TFLite's normalized pair (2^30, 1 - s), to show where double rounding breaks it; else the
 * route's pair. */
static void fxpq_check_pair(int32_t s, int32_t *mult, int32_t *shift)
{
#ifdef FXPQ_NATURAL_PAIR
    *mult = (int32_t)1 << 30;
    *shift = 1 - s;
#else
    fxpq_cmsis_pair(s, mult, shift);
#endif
}

int main(int argc, char **argv)
{
    int32_t s_min, s_max, s;
    int64_t v_min, v_max, step, v, claimed = 0, bad = 0;
    if (argc < 5) {
        fprintf(stderr, "usage: %s S_MIN S_MAX V_MIN V_MAX [STEP]\n", argv[0]);
        return 2;
    }
    s_min = (int32_t)strtol(argv[1], NULL, 0);
    s_max = (int32_t)strtol(argv[2], NULL, 0);
    v_min = strtoll(argv[3], NULL, 0);
    v_max = strtoll(argv[4], NULL, 0);
    step = argc > 5 ? strtoll(argv[5], NULL, 0) : 1;
    if (v_min < INT32_MIN || v_max > INT32_MAX || step < 1) {
        fprintf(stderr, "v must lie in int32 and the step be positive\n");
        return 2;
    }
    for (s = s_min; s <= s_max; ++s) {
        int32_t mult, shift;
        fxpq_check_pair(s, &mult, &shift);
        for (v = v_min; v <= v_max; v += step) {
            int64_t want;
            int32_t got;
            if (!fxpq_cmsis_exact(v, s)) {
                continue;
            }
            want = fxpq_rescale(v, s, 0);
            got = arm_nn_requantize((int32_t)v, mult, shift);
            ++claimed;
            if ((int64_t)got != want) {
                if (bad < 10) {
                    printf("mismatch: s=%" PRId32 " v=%" PRId64 " cmsis=%" PRId32 " fxpq=%" PRId64 "\n", s, v, got, want);
                }
                ++bad;
            }
        }
    }
    printf("claimed %" PRId64 " mismatches %" PRId64 "\n", claimed, bad);
    return bad != 0;
}
