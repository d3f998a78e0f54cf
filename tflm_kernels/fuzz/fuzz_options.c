/*
 * fuzz_options.c - libFuzzer target for the custom-options reader: byte 0 picks the op, the rest
 * is the FlexBuffers blob given to fxpq_options_parse (bounds-checked reads only; ASan + UBSan).
 *
 *   build/fuzz/fuzz_options -max_total_time=3600 corpus_dir fuzz/corpus/options   (a long run)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fxpq_kernels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fxpq_op_options opts;
    fxpq_runner_status st;
    uint8_t *copy;
    int32_t op;
    if (size < 1) {
        return 0;
    }
    op = data[0] % FXPQ_OP_COUNT;
    /* an exact-size heap copy so that ASan catches any read outside the blob */
    copy = (uint8_t *)malloc(size - 1 > 0 ? size - 1 : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data + 1, size - 1);
    st = fxpq_options_parse(op, copy, size - 1, &opts);
    if (st == FXPQ_RUNNER_OK) {
        fxpq_format fmt;
        (void)fxpq_options_output_format(&opts, FXPQ_STORAGE_INT8, &fmt);
        (void)fxpq_options_output_format(&opts, FXPQ_STORAGE_UINT16, &fmt);
        (void)fxpq_options_input_format(&opts, FXPQ_STORAGE_UINT8, &fmt);
        (void)fxpq_options_input_format(&opts, FXPQ_STORAGE_UINT16, &fmt);
    }
    free(copy);
    return 0;
}
