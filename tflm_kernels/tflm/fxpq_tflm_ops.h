/*
 * fxpq_tflm_ops.h - TensorFlow Lite Micro registrations of the fxpq custom ops (FXP_*).
 *
 * Add tflm/fxpq_tflm_ops.cc, the C files of src/kernels and src/options, and include/ to a firmware's TFLM
 * build, then register the ops on the resolver the interpreter uses:
 *
 *   static tflite::MicroMutableOpResolver<13> resolver;   // 12 FXP_* ops + RESHAPE
 *   fxpq::RegisterFxpOps(resolver);
 *
 * docs/tflm.md has the details. Written against TFLM's TFLMRegistration API (micro_common.h,
 * kernels/kernel_util.h, micro_context.h); TFLM is not part of this project.
 */
#ifndef FXPQ_TFLM_OPS_H
#define FXPQ_TFLM_OPS_H

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace fxpq {

// One registration per custom op of docs/format.md section 4 (pointers to function-local statics).
const TFLMRegistration* Register_FXP_QUANTIZE();
const TFLMRegistration* Register_FXP_CONV_2D();
const TFLMRegistration* Register_FXP_DEPTHWISE_CONV_2D();
const TFLMRegistration* Register_FXP_FULLY_CONNECTED();
const TFLMRegistration* Register_FXP_ADD();
const TFLMRegistration* Register_FXP_MAX_POOL_2D();
const TFLMRegistration* Register_FXP_AVERAGE_POOL_2D();
const TFLMRegistration* Register_FXP_GLOBAL_AVERAGE_POOL_2D();
const TFLMRegistration* Register_FXP_REQUANTIZE();
const TFLMRegistration* Register_FXP_PAD();
const TFLMRegistration* Register_FXP_LEAKY_RELU();
const TFLMRegistration* Register_FXP_CONCATENATION();

// Adds every FXP_* op (and, when add_reshape, the stock RESHAPE that fxp files use for Flatten)
// to `resolver`. The resolver needs room for 12 (or 13) more ops.
template <unsigned int tOpCount>
TfLiteStatus RegisterFxpOps(tflite::MicroMutableOpResolver<tOpCount>& resolver,
                            bool add_reshape = true) {
  struct Entry {
    const char* name;
    const TFLMRegistration* (*reg)();
  };
  static const Entry kOps[] = {
      {"FXP_QUANTIZE", Register_FXP_QUANTIZE},
      {"FXP_CONV_2D", Register_FXP_CONV_2D},
      {"FXP_DEPTHWISE_CONV_2D", Register_FXP_DEPTHWISE_CONV_2D},
      {"FXP_FULLY_CONNECTED", Register_FXP_FULLY_CONNECTED},
      {"FXP_ADD", Register_FXP_ADD},
      {"FXP_MAX_POOL_2D", Register_FXP_MAX_POOL_2D},
      {"FXP_AVERAGE_POOL_2D", Register_FXP_AVERAGE_POOL_2D},
      {"FXP_GLOBAL_AVERAGE_POOL_2D", Register_FXP_GLOBAL_AVERAGE_POOL_2D},
      {"FXP_REQUANTIZE", Register_FXP_REQUANTIZE},
      {"FXP_PAD", Register_FXP_PAD},
      {"FXP_LEAKY_RELU", Register_FXP_LEAKY_RELU},
      {"FXP_CONCATENATION", Register_FXP_CONCATENATION},
  };
  for (const Entry& e : kOps) {
    const TfLiteStatus status = resolver.AddCustom(e.name, e.reg());
    if (status != kTfLiteOk) {
      return status;
    }
  }
  return add_reshape ? resolver.AddReshape() : kTfLiteOk;
}

}  // namespace fxpq

#endif  // FXPQ_TFLM_OPS_H
