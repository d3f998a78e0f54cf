// main.cc - one inference of the packaged model under TensorFlow Lite Micro (written by
// `fxpq export --package`; docs/tflm.md section 8). Prints the top class, TFLM's arena_used_bytes,
// the cycles of Invoke (from fxpq_cycle_count(), a board hook) and the output tensor's bytes.
//
// Board hooks (C linkage; weak defaults here, define your own in a board file):
//   void fxpq_board_init(void)        e.g. semihosting or UART set-up before the first printf
//   uint32_t fxpq_cycle_count(void)   a free-running up-counter of CPU cycles (0: not measured);
//                                     with -DFXPQ_USE_DWT the default reads the Cortex-M DWT CYCCNT
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <new>

#include "fxpq_model_config.h"
#include "fxpq_model_data.h"
#include "fxpq_model_ops.h"
#include "fxpq_model_sample.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" {
__attribute__((weak)) void fxpq_board_init(void) {}

__attribute__((weak)) uint32_t fxpq_cycle_count(void) {
#if defined(FXPQ_USE_DWT)
  static bool started = false;
  volatile uint32_t* const demcr = reinterpret_cast<volatile uint32_t*>(0xE000EDFCu);
  volatile uint32_t* const dwt_ctrl = reinterpret_cast<volatile uint32_t*>(0xE0001000u);
  volatile uint32_t* const dwt_cyccnt = reinterpret_cast<volatile uint32_t*>(0xE0001004u);
  if (!started) {
    *demcr |= 1u << 24;  // TRCENA
    *dwt_cyccnt = 0;
    *dwt_ctrl |= 1u;  // CYCCNTENA
    started = true;
  }
  return *dwt_cyccnt;
#else
  return 0;
#endif
}
}  // extern "C"

namespace {

alignas(16) uint8_t g_arena[FXPQ_MODEL_ARENA_BYTES];
// The resolver and the interpreter are placed in static storage by main (placement new): no static
// constructor, no destructor registration and no thread-safe-static guard, whatever the C++ flags.
alignas(FxpqModelOpResolver) uint8_t g_resolver[sizeof(FxpqModelOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter[sizeof(tflite::MicroInterpreter)];

// Index of the largest element of the first output (scale > 0: the largest stored value is the
// largest real value within one tensor).
long TopClass(const TfLiteTensor* out, long* count) {
  long n = 0;
  long best = 0;
  switch (out->type) {
    case kTfLiteInt8:
      n = static_cast<long>(out->bytes);
      for (long i = 1; i < n; ++i) best = out->data.int8[i] > out->data.int8[best] ? i : best;
      break;
    case kTfLiteUInt8:
      n = static_cast<long>(out->bytes);
      for (long i = 1; i < n; ++i) best = out->data.uint8[i] > out->data.uint8[best] ? i : best;
      break;
    case kTfLiteInt16:
      n = static_cast<long>(out->bytes / 2);
      for (long i = 1; i < n; ++i) best = out->data.i16[i] > out->data.i16[best] ? i : best;
      break;
    case kTfLiteFloat32:
      n = static_cast<long>(out->bytes / 4);
      for (long i = 1; i < n; ++i) best = out->data.f[i] > out->data.f[best] ? i : best;
      break;
    default:
      n = 0;
      best = -1;
  }
  *count = n;
  return best;
}

}  // namespace

int main() {
  fxpq_board_init();
  const tflite::Model* model = tflite::GetModel(fxpq_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    printf("fxpq: error: model schema version %lu, TFLM expects %d\n",
           static_cast<unsigned long>(model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }
  FxpqModelOpResolver& resolver = *new (g_resolver) FxpqModelOpResolver();
  if (FxpqModelAddOps(resolver) != kTfLiteOk) {
    printf("fxpq: error: registering the model's %u ops failed\n", kFxpqModelOpCount);
    return 1;
  }
  tflite::MicroInterpreter& interpreter =
      *new (g_interpreter) tflite::MicroInterpreter(model, resolver, g_arena, sizeof(g_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("fxpq: error: AllocateTensors failed with an arena of %lu bytes (FXPQ_MODEL_ARENA_BYTES)\n",
           static_cast<unsigned long>(sizeof(g_arena)));
    return 1;
  }
  TfLiteTensor* input = interpreter.input(0);
  if (input == nullptr || input->bytes != sizeof(fxpq_model_sample)) {
    printf("fxpq: error: the input tensor holds %lu bytes, the sample %lu\n",
           static_cast<unsigned long>(input == nullptr ? 0 : input->bytes),
           static_cast<unsigned long>(sizeof(fxpq_model_sample)));
    return 1;
  }
  memcpy(input->data.raw, fxpq_model_sample, sizeof(fxpq_model_sample));
  const uint32_t t0 = fxpq_cycle_count();
  const TfLiteStatus status = interpreter.Invoke();
  const uint32_t t1 = fxpq_cycle_count();
  if (status != kTfLiteOk) {
    printf("fxpq: error: Invoke failed (%d)\n", static_cast<int>(status));
    return 1;
  }
  const TfLiteTensor* out = interpreter.output(0);
  long classes = 0;
  const long top = TopClass(out, &classes);
  printf("fxpq: model %s, top class %ld of %ld\n", FXPQ_MODEL_NAME, top, classes);
  printf("fxpq: arena_used_bytes %lu of %lu (modelled ram_bytes %lu)\n",
         static_cast<unsigned long>(interpreter.arena_used_bytes()), static_cast<unsigned long>(sizeof(g_arena)),
         static_cast<unsigned long>(FXPQ_MODEL_RAM_BYTES));
  if (t1 != t0) {
    printf("fxpq: cycles %lu\n", static_cast<unsigned long>(t1 - t0));
  } else {
    printf("fxpq: cycles not measured (define fxpq_cycle_count, or build with -DFXPQ_USE_DWT)\n");
  }
  printf("fxpq: output");
  for (size_t i = 0; i < out->bytes; ++i) printf(" %02x", static_cast<unsigned>(out->data.uint8[i]));
  printf("\n");
  return 0;
}
