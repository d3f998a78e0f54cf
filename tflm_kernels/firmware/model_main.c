/*
 * model_main.c - whole-model firmware for QEMU mps2-an386 (Cortex-M4) / mps2-an500 (Cortex-M7):
 * the fxpq model runner on one .tflite model, inputs and outputs over semihosting, the
 * instruction count of every inference measured with CMSDK TIMER0.
 *
 * The model is either linked in (-DFXPQ_MODEL_LINKED: a generated source defines
 * fxpq_model_data / fxpq_model_data_len pointing at the 16-byte aligned const array of
 * export_c_array, in flash) or loaded at run time from
 * FXPQ_MODEL_FILE in QEMU's working directory into a RAM buffer.
 *
 * Files (QEMU's working directory, semihosting):
 *   in : fxpq_inputs.bin   N samples of the model input, raw (N = file size / input bytes)
 *   out: fxpq_outputs.bin  header (FXPQ_MODEL_HEADER_WORDS little-endian uint32/int32 words,
 *                          below) + the runner's message (160 bytes), then per sample:
 *                          uint32 TIMER0 ticks of fxpq_runner_invoke, int32 status, outputs' bytes.
 * Header words: magic 'FXMO', version 1, init status, arena_needed, persistent_bytes,
 * planned_bytes, scratch_bytes, num_outputs, input bytes, total output bytes per sample,
 * calibration loop iterations, calibration ticks, error op, kernel status.
 *
 * Instructions = ticks * 40: under `-icount shift=0` one instruction takes 1 ns of virtual time
 * and TIMER0 counts the 25 MHz system clock. The calibration loop (2 instructions per
 * iteration) lets the host check that method on every run.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fxpq_firmware.h"
#include "fxpq_kernels.h"

extern void initialise_monitor_handles(void);

#define FXPQ_MODEL_MAGIC 0x4f4d5846u /* "FXMO" */
#define FXPQ_MODEL_HEADER_WORDS 14
#define FXPQ_MODEL_FILE "fxpq_model.tflite"
#define FXPQ_INPUTS_FILE "fxpq_inputs.bin"
#define FXPQ_OUTPUTS_FILE "fxpq_outputs.bin"
#define FXPQ_CALIBRATION_ITERATIONS 100000u

#ifndef FXPQ_FW_ARENA_BYTES
#define FXPQ_FW_ARENA_BYTES (512u * 1024u)
#endif

#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)

#ifdef FXPQ_MODEL_LINKED
/* Defined by the generated model source (fxpq_keras.kernels.engines.write_model_source), which
 * includes the array written by fxpq_keras.export_c_array. */
extern const unsigned char *const fxpq_model_data;
extern const uint32_t fxpq_model_data_len;
#else
#ifndef FXPQ_FW_MODEL_BYTES
#define FXPQ_FW_MODEL_BYTES (15u * 1024u * 1024u) /* in the boards' 16 MB PSRAM (mps2_*.ld) */
#endif
static uint8_t g_model[FXPQ_FW_MODEL_BYTES] __attribute__((aligned(16), section(".psram")));
#endif

static uint8_t g_arena[FXPQ_FW_ARENA_BYTES] __attribute__((aligned(16)));
static fxpq_runner g_runner;

int main(void);

/* A loop of exactly 2 instructions per iteration (subs + bne), timed like an inference. It starts
 * just after a tick edge, so that the count does not depend on the phase of the 40-instruction
 * tick at which the firmware happens to arrive here (any code change before it moves that). */
static uint32_t model_calibration_ticks(uint32_t iterations)
{
    uint32_t t0, t1;
    register uint32_t n __asm__("r0") = iterations;
    t0 = TIMER0_VALUE;
    while (TIMER0_VALUE == t0) {
    }
    t0 = TIMER0_VALUE;
    __asm__ volatile("1:\n\tsubs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    t1 = TIMER0_VALUE;
    return t0 - t1;
}

static void model_put_words(FILE *out, const uint32_t *words, size_t n)
{
    fwrite(words, 4, n, out);
}

int main(void)
{
    const uint8_t *model;
    uint32_t model_len;
    uint32_t header[FXPQ_MODEL_HEADER_WORDS];
    int32_t status;
    uint32_t out_bytes = 0, i;
    FILE *in, *out;

    initialise_monitor_handles();
    TIMER0_CTRL = 0;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = 1u;

#ifdef FXPQ_MODEL_LINKED
    model = fxpq_model_data;
    model_len = fxpq_model_data_len;
#else
    {
        FILE *mf = fopen(FXPQ_MODEL_FILE, "rb");
        size_t got;
        if (mf == NULL) {
            printf("fxpq model firmware: cannot open %s\n", FXPQ_MODEL_FILE);
            return 2;
        }
        got = fread(g_model, 1, sizeof(g_model), mf);
        if (got == sizeof(g_model) && fgetc(mf) != EOF) {
            printf("fxpq model firmware: model larger than %u bytes\n", (unsigned)sizeof(g_model));
            fclose(mf);
            return 2;
        }
        fclose(mf);
        model = g_model;
        model_len = (uint32_t)got;
    }
#endif

    status = fxpq_runner_init(&g_runner, model, model_len, g_arena, sizeof(g_arena));
    if (status == FXPQ_RUNNER_OK) {
        for (i = 0; i < (uint32_t)g_runner.num_outputs; ++i) {
            out_bytes += (uint32_t)g_runner.outputs[i].bytes;
        }
    }
    header[0] = FXPQ_MODEL_MAGIC;
    header[1] = 1u;
    header[2] = (uint32_t)status;
    header[3] = (uint32_t)g_runner.arena_needed;
    header[4] = (uint32_t)g_runner.persistent_bytes;
    header[5] = (uint32_t)g_runner.planned_bytes;
    header[6] = (uint32_t)g_runner.scratch_bytes;
    header[7] = (uint32_t)g_runner.num_outputs;
    header[8] = status == FXPQ_RUNNER_OK ? (uint32_t)g_runner.input.bytes : 0u;
    header[9] = out_bytes;
    header[10] = FXPQ_CALIBRATION_ITERATIONS;
    header[11] = model_calibration_ticks(FXPQ_CALIBRATION_ITERATIONS);
    header[12] = (uint32_t)g_runner.error_op;
    header[13] = (uint32_t)g_runner.kernel_status;

    out = fopen(FXPQ_OUTPUTS_FILE, "wb");
    if (out == NULL) {
        printf("fxpq model firmware: cannot create %s\n", FXPQ_OUTPUTS_FILE);
        return 2;
    }
    model_put_words(out, header, FXPQ_MODEL_HEADER_WORDS);
    fwrite(g_runner.message, 1, sizeof(g_runner.message), out);
    if (status != FXPQ_RUNNER_OK) {
        fclose(out);
        return 1;
    }
    in = fopen(FXPQ_INPUTS_FILE, "rb");
    if (in != NULL) {
        uint8_t *input = (uint8_t *)g_runner.input.data;
        size_t in_bytes = (size_t)g_runner.input.bytes;
        while (fread(input, 1, in_bytes, in) == in_bytes) {
            uint32_t rec[2], t0, t1;
            t0 = TIMER0_VALUE;
            status = fxpq_runner_invoke(&g_runner);
            t1 = TIMER0_VALUE;
            rec[0] = t0 - t1;
            rec[1] = (uint32_t)status;
            model_put_words(out, rec, 2);
            for (i = 0; i < (uint32_t)g_runner.num_outputs; ++i) {
                fwrite(g_runner.outputs[i].data, 1, (size_t)g_runner.outputs[i].bytes, out);
            }
        }
        fclose(in);
    }
    fclose(out);
    return 0;
}
