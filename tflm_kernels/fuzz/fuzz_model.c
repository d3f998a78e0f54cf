/*
 * fuzz_model.c - libFuzzer target for the model runner: fxpq_runner_init on arbitrary bytes (the
 * flatbuffer reader, the options reader, every op's validation, the planner) and, when a model
 * is accepted, fxpq_runner_invoke on an input derived from the same bytes. Any out-of-bounds
 * read, overflow or crash is a bug (built with ASan + UBSan); error statuses are expected.
 *
 *   make -C tflm_kernels fuzz-smoke                       (a few seconds per target)
 *   build/fuzz/fuzz_model -max_total_time=3600 corpus_dir fuzz/corpus/model   (a long run)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fxpq_kernels.h"

#define FUZZ_MODEL_MAX (256 * 1024)
#define FUZZ_ARENA (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t g_arena[FUZZ_ARENA] __attribute__((aligned(16)));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fxpq_runner runner;
    fxpq_runner_status st;
    uint8_t *model;
    if (size > FUZZ_MODEL_MAX) {
        return 0;
    }
    /* An exact-size heap copy (malloc aligns it for the runner): ASan reports a read of even one
     * byte past the model's end, which a larger or padded buffer would hide. */
    model = (uint8_t *)malloc(size > 0 ? size : 1);
    if (model == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(model, data, size);
    }
    st = fxpq_runner_init(&runner, model, size, g_arena, sizeof(g_arena));
    if (st != FXPQ_RUNNER_OK) {
        /* The size query path: no arena at all. */
        (void)fxpq_runner_init(&runner, model, size, NULL, 0);
        free(model);
        return 0;
    }
    {
        uint8_t *in = (uint8_t *)runner.input.data;
        int32_t i;
        for (i = 0; i < runner.input.bytes; ++i) {
            in[i] = data[(size_t)i % size];
        }
        if (runner.input.type != FXPQ_TFLITE_FLOAT32) {
            /* integer inputs must lie in their format's range (kernel precondition) */
            int32_t lo, hi, v;
            fxpq_format_range(&runner.input.format, &lo, &hi);
            for (i = 0; i < runner.input.elements; ++i) {
                if (runner.input.format.bits <= 8) {
                    v = runner.input.format.is_signed ? ((int8_t *)in)[i] : in[i];
                } else {
                    v = runner.input.format.is_signed ? ((int16_t *)(void *)in)[i]
                                                      : ((uint16_t *)(void *)in)[i];
                }
                v = v < lo ? lo : (v > hi ? hi : v);
                if (runner.input.format.bits <= 8) {
                    in[i] = (uint8_t)v;
                } else {
                    ((uint16_t *)(void *)in)[i] = (uint16_t)v;
                }
            }
        }
    }
    (void)fxpq_runner_invoke(&runner);
    free(model);
    return 0;
}
