// tflm_main.cc - one model under real TensorFlow Lite Micro: a host program, or a firmware for QEMU
// mps2-an386 (Cortex-M4) / mps2-an500 (Cortex-M7) with the start-up code of firmware/startup.c.
// The fxpq ops come from the glue (fxpq_tflm_ops.cc); the stock ops from TFLM (reference kernels
// or CMSIS-NN, whichever library it is linked with).
//
// Build: tflm_kernels/mk/tflm.mk (`make tflm-program`), driven by fxpq_keras/kernels/tflm_engines.py.
//   FXPQ_TFLM_OPS_HEADER generated header defining FXPQ_TFLM_OP_COUNT and FxpqAddOps(resolver): the ops
//                       registered (exactly the model's ops when the model is linked in)
//   FXPQ_MODEL_LINKED   the model is linked in (fxpq_model_data / fxpq_model_data_len, in flash);
//                       else it is read from fxpq_model.tflite in the working directory
//   FXPQ_TFLM_ARENA_BYTES  the tensor arena (default 1 MiB)
//
// Files, in the working directory (semihosting on the Cortex-M): fxpq_inputs.bin in (N raw input
// tensors), fxpq_outputs.bin out, in the layout of firmware/model_main.c (the decoder is shared):
// 14 words: magic 'FXMO', version 1, status (0 ok, else a TflmStatus), arena_used_bytes, arena
// bytes given, 0, 0, number of outputs, input bytes, output bytes per sample, calibration loop
// iterations, calibration ticks, failing stage, 0; a 160-byte message; then per sample: uint32
// TIMER0 ticks of Invoke (0 on the host), int32 Invoke status, the outputs' bytes.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fxpq_tflm_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include FXPQ_TFLM_OPS_HEADER

#if defined(__arm__)
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
extern "C" void initialise_monitor_handles(void);
// C++ runtime hooks of a bare-metal image without crt files: static objects register their
// destructors against __dso_handle (never run: main's return exits through semihosting).
extern "C" {
void* __dso_handle = &__dso_handle;
}
#define TIMER0_CTRL (*(volatile uint32_t*)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t*)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t*)0x40000008u)
#endif

#ifndef FXPQ_TFLM_ARENA_BYTES
#define FXPQ_TFLM_ARENA_BYTES (1024u * 1024u)
#endif

namespace {

constexpr uint32_t kMagic = 0x4f4d5846u;  // "FXMO"
constexpr int kHeaderWords = 14;
constexpr size_t kMessageBytes = 160;
constexpr uint32_t kCalibrationIterations = 100000u;

enum TflmStatus : uint32_t {
  kOk = 0,
  kNoModel = 1,
  kSchemaVersion = 2,
  kResolver = 3,
  kAllocate = 4,
  kOutputs = 5,
};

char g_message[kMessageBytes];
alignas(16) uint8_t g_arena[FXPQ_TFLM_ARENA_BYTES];

#ifdef FXPQ_MODEL_LINKED
}  // namespace
extern "C" const unsigned char* const fxpq_model_data;
extern "C" const uint32_t fxpq_model_data_len;
namespace {
#else
#if defined(__arm__)  // QEMU's MPS2 boards: a loaded model goes in their 16 MB PSRAM (firmware/mps2_*.ld)
#ifndef FXPQ_TFLM_MODEL_BYTES
#define FXPQ_TFLM_MODEL_BYTES (15u * 1024u * 1024u)
#endif
__attribute__((section(".psram"))) alignas(16) uint8_t g_model[FXPQ_TFLM_MODEL_BYTES];
#else
#ifndef FXPQ_TFLM_MODEL_BYTES
#define FXPQ_TFLM_MODEL_BYTES (64u * 1024u * 1024u)
#endif
alignas(16) uint8_t g_model[FXPQ_TFLM_MODEL_BYTES];
#endif
#endif

#if defined(__arm__)
void Remember(const char* s) {
  // TFLM's messages arrive line by line; keep the first non-empty one (the cause).
  if (g_message[0] == '\0' && s[0] != '\0' && s[0] != '\n') {
    snprintf(g_message, sizeof(g_message), "%s", s);
  }
}
#endif

uint32_t Ticks() {
#if defined(__arm__)
  return TIMER0_VALUE;
#else
  return 0;
#endif
}

// A loop of exactly 2 instructions per iteration (subs + bne), timed like an inference.
uint32_t CalibrationTicks(uint32_t iterations) {
#if defined(__arm__)
  uint32_t t0, t1;
  register uint32_t n __asm__("r0") = iterations;
  t0 = TIMER0_VALUE;
  __asm__ volatile("1:\n\tsubs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
  t1 = TIMER0_VALUE;
  return t0 - t1;
#else
  (void)iterations;
  return 0;
#endif
}

int Finish(FILE* out, uint32_t* header, TflmStatus status, uint32_t stage) {
  header[2] = status;
  header[12] = stage;
  fwrite(header, 4, kHeaderWords, out);
  fwrite(g_message, 1, sizeof(g_message), out);
  fclose(out);
  return status == kOk ? 0 : 1;
}

}  // namespace

int main() {
#if defined(__arm__)
  initialise_monitor_handles();
  RegisterDebugLogCallback(Remember);
  TIMER0_CTRL = 0;
  TIMER0_RELOAD = 0xFFFFFFFFu;
  TIMER0_VALUE = 0xFFFFFFFFu;
  TIMER0_CTRL = 1u;
#endif
  uint32_t header[kHeaderWords] = {0};
  header[0] = kMagic;
  header[1] = 1u;
  header[4] = static_cast<uint32_t>(sizeof(g_arena));
  header[10] = kCalibrationIterations;
  header[11] = CalibrationTicks(kCalibrationIterations);
  FILE* out = fopen("fxpq_outputs.bin", "wb");
  if (out == nullptr) {
    printf("fxpq tflm: cannot create fxpq_outputs.bin\n");
    return 2;
  }
#ifdef FXPQ_MODEL_LINKED
  const uint8_t* model_bytes = fxpq_model_data;
#else
  FILE* mf = fopen("fxpq_model.tflite", "rb");
  if (mf == nullptr) {
    snprintf(g_message, sizeof(g_message), "cannot open fxpq_model.tflite");
    return Finish(out, header, kNoModel, 0);
  }
  const size_t got = fread(g_model, 1, sizeof(g_model), mf);
  const bool too_big = got == sizeof(g_model) && fgetc(mf) != EOF;
  fclose(mf);
  if (too_big) {
    snprintf(g_message, sizeof(g_message), "model larger than %u bytes", static_cast<unsigned>(sizeof(g_model)));
    return Finish(out, header, kNoModel, 0);
  }
  const uint8_t* model_bytes = g_model;
#endif
  const tflite::Model* model = tflite::GetModel(model_bytes);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    snprintf(g_message, sizeof(g_message), "model schema version %u, TFLM expects %d",
             static_cast<unsigned>(model->version()), TFLITE_SCHEMA_VERSION);
    return Finish(out, header, kSchemaVersion, 0);
  }
  static tflite::MicroMutableOpResolver<FXPQ_TFLM_OP_COUNT> resolver;
  if (FxpqAddOps(resolver) != kTfLiteOk) {
    return Finish(out, header, kResolver, 0);
  }
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof(g_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return Finish(out, header, kAllocate, 1);
  }
  header[3] = static_cast<uint32_t>(interpreter.arena_used_bytes());
  TfLiteTensor* input = interpreter.input(0);
  const size_t outputs = interpreter.outputs_size();
  uint32_t out_bytes = 0;
  for (size_t i = 0; i < outputs; ++i) out_bytes += static_cast<uint32_t>(interpreter.output(i)->bytes);
  if (input == nullptr || outputs == 0) {
    return Finish(out, header, kOutputs, 1);
  }
  header[7] = static_cast<uint32_t>(outputs);
  header[8] = static_cast<uint32_t>(input->bytes);
  header[9] = out_bytes;
  fwrite(header, 4, kHeaderWords, out);
  fwrite(g_message, 1, sizeof(g_message), out);
  FILE* in = fopen("fxpq_inputs.bin", "rb");
  if (in != nullptr) {
    while (fread(input->data.raw, 1, input->bytes, in) == input->bytes) {
      const uint32_t t0 = Ticks();
      const TfLiteStatus status = interpreter.Invoke();
      const uint32_t t1 = Ticks();
      const uint32_t rec[2] = {t0 - t1, static_cast<uint32_t>(status)};
      fwrite(rec, 4, 2, out);
      for (size_t i = 0; i < outputs; ++i) {
        const TfLiteTensor* o = interpreter.output(i);
        fwrite(o->data.raw, 1, o->bytes, out);
      }
    }
    fclose(in);
  }
  fclose(out);
  return 0;
}
