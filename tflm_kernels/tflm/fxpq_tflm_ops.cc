// fxpq_tflm_ops.cc - thin TFLM glue of the FXP_* custom ops: the math is the C kernels
// (include/fxpq_kernels.h), the options are read by the shared options reader
// (src/options/fxpq_options.c, the same code the fxpq model runner uses).
//
// Kernel life cycle (TFLM's):
//   Init    parses the op's FlexBuffers custom_options into persistent op data (Init cannot
//           return a status: a failed parse is remembered and reported by Prepare);
//   Prepare validates tensor types and shapes, derives the formats the kernels need, and
//           requests the kernel's scratch buffer in the arena;
//   Eval    only reads the tensors and calls the kernel.
//
// Formats: TFLM keeps no tensor min/max, so the output format comes from the options
// (fxpq_options_output_format: frac = out_frac, the width whose clamp is [act_min, act_max]) and
// an input format is its storage type at full width with frac = in_frac. Both give the kernels
// exactly the results of the file's own formats (the clamp is the same; a wider input format can
// only select a 64-bit accumulator, which is exact as well).
#include "fxpq_tflm_ops.h"

#include <stddef.h>
#include <stdint.h>

#include "fxpq_kernels.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace fxpq {
namespace {

constexpr int kInput = 0;
constexpr int kInput2 = 1;
constexpr int kWeights = 1;
constexpr int kWeightFracs = 2;
constexpr int kBias = 3;
constexpr int kOutput = 0;

struct OpData {
  fxpq_runner_status parse_status;
  fxpq_op_options options;
  fxpq_format input_format[2];
  fxpq_format output_format;
  fxpq_dims input_dims;
  fxpq_dims output_dims;
  fxpq_dims filter_dims;
  int32_t size;          // elements (elementwise ops) or in_features (fully connected)
  int32_t out_features;  // fully connected
  int32_t scratch_bytes;
  int scratch_index;
  union {
    fxpq_conv_params conv;
    fxpq_dw_conv_params dw;
    fxpq_fc_params fc;
    fxpq_pool_params pool;
    fxpq_elementwise_params ew;
    fxpq_pad_params pad;
    fxpq_leaky_relu_params leaky;
    struct {
      int32_t outer, a_channels, b_channels;
    } concat;
  } params;
};

bool StorageOf(TfLiteType type, fxpq_storage* storage) {
  switch (type) {
    case kTfLiteInt8: *storage = FXPQ_STORAGE_INT8; return true;
    case kTfLiteUInt8: *storage = FXPQ_STORAGE_UINT8; return true;
    case kTfLiteInt16: *storage = FXPQ_STORAGE_INT16; return true;
    case kTfLiteUInt16: *storage = FXPQ_STORAGE_UINT16; return true;
    default: return false;
  }
}

// The input format the kernels are given: the storage type at full width, frac from the options.
bool InputFormat(const TfLiteTensor* tensor, int32_t frac, fxpq_format* format) {
  fxpq_storage storage;
  if (tensor == nullptr || !StorageOf(tensor->type, &storage)) return false;
  format->is_signed = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_INT16) ? 1 : 0;
  format->bits = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_UINT8) ? 8 : 16;
  format->frac = frac;
  return true;
}

int32_t Elements(const TfLiteIntArray* dims) {
  int64_t n = 1;
  for (int i = 0; i < dims->size; ++i) {
    n *= dims->data[i];
    if (n <= 0 || n > INT32_MAX) return -1;
  }
  return static_cast<int32_t>(n);
}

bool Nhwc(const TfLiteIntArray* dims, fxpq_dims* out) {
  if (dims == nullptr || dims->size != 4 || dims->data[0] != 1) return false;
  out->n = 1;
  out->h = dims->data[1];
  out->w = dims->data[2];
  out->c = dims->data[3];
  return true;
}

template <int kOp>
void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  void* raw = tflite::GetMicroContext(context)->AllocatePersistentBuffer(sizeof(OpData));
  if (raw == nullptr) return nullptr;
  OpData* data = static_cast<OpData*>(raw);
  data->scratch_index = -1;
  data->scratch_bytes = 0;
  data->parse_status = fxpq_options_parse(kOp, reinterpret_cast<const uint8_t*>(buffer), length,
                                          &data->options);
  return data;
}

// Shape/format work of Prepare, per op. Returns false with a message on any mismatch.
template <int kOp>
bool PrepareOp(tflite::MicroContext* mc, TfLiteNode* node, OpData* d, const char** why) {
  const fxpq_op_options& o = d->options;
  TfLiteTensor* input = mc->AllocateTempInputTensor(node, kInput);
  TfLiteTensor* output = mc->AllocateTempOutputTensor(node, kOutput);
  TfLiteTensor* input2 = nullptr;
  bool ok = false;
  fxpq_storage out_storage;
  *why = "tensor types or shapes do not match the op";
  if (input == nullptr || output == nullptr || !StorageOf(output->type, &out_storage)) {
    goto done;
  }
  if (fxpq_options_output_format(&o, out_storage, &d->output_format) != FXPQ_RUNNER_OK) {
    *why = "act_min/act_max/out_frac do not fit the output type";
    goto done;
  }
  if (kOp == FXPQ_OP_QUANTIZE) {
    d->size = Elements(output->dims);
    ok = input->type == kTfLiteFloat32 && d->size > 0 && Elements(input->dims) == d->size;
    goto done;
  }
  if (!InputFormat(input, kOp == FXPQ_OP_ADD || kOp == FXPQ_OP_CONCATENATION ? o.in1_frac : o.in_frac,
                   &d->input_format[0])) {
    goto done;
  }
  if (kOp == FXPQ_OP_CONV_2D || kOp == FXPQ_OP_DEPTHWISE_CONV_2D ||
      kOp == FXPQ_OP_FULLY_CONNECTED) {
    // Format version 2 bit-packs every width in UINT8; version 1 had INT16 for 9..16 bits.
    input2 = mc->AllocateTempInputTensor(node, kWeights);
    if (input2 == nullptr || input2->type != kTfLiteUInt8) {
      *why = "weights must be bit-packed UINT8 (INT16 weights: file format version 1, re-export)";
      goto done;
    }
    mc->DeallocateTempTfLiteTensor(input2);
    input2 = nullptr;
  }
  switch (kOp) {
    case FXPQ_OP_ADD:
      input2 = mc->AllocateTempInputTensor(node, kInput2);
      d->size = Elements(output->dims);
      ok = InputFormat(input2, o.in2_frac, &d->input_format[1]) && d->size > 0 &&
           Elements(input->dims) == d->size && Elements(input2->dims) == d->size;
      d->params.ew.activation = fxpq_options_activation(&o);
      break;
    case FXPQ_OP_CONCATENATION: {
      input2 = mc->AllocateTempInputTensor(node, kInput2);
      const int rank = output->dims->size;
      ok = InputFormat(input2, o.in2_frac, &d->input_format[1]) && rank >= 2 &&
           input->dims->size == rank && input2->dims->size == rank;
      for (int i = 0; ok && i < rank - 1; ++i) {
        ok = input->dims->data[i] == output->dims->data[i] &&
             input2->dims->data[i] == output->dims->data[i];
      }
      if (!ok) break;
      d->params.concat.a_channels = input->dims->data[rank - 1];
      d->params.concat.b_channels = input2->dims->data[rank - 1];
      ok = d->params.concat.a_channels + d->params.concat.b_channels ==
               output->dims->data[rank - 1] && Elements(output->dims) > 0;
      d->params.concat.outer = ok ? Elements(output->dims) / output->dims->data[rank - 1] : 0;
      break;
    }
    case FXPQ_OP_REQUANTIZE:
      d->size = Elements(output->dims);
      ok = d->size > 0 && Elements(input->dims) == d->size;
      d->params.ew.activation = fxpq_options_activation(&o);
      break;
    case FXPQ_OP_GLOBAL_AVERAGE_POOL_2D:
      ok = Nhwc(input->dims, &d->input_dims) && Elements(output->dims) == d->input_dims.c;
      break;
    case FXPQ_OP_LEAKY_RELU:
      d->size = Elements(output->dims);
      ok = d->size > 0 && Elements(input->dims) == d->size;
      fxpq_options_leaky_relu_params(&o, &d->params.leaky);
      break;
    case FXPQ_OP_PAD:
      ok = Nhwc(input->dims, &d->input_dims) && Nhwc(output->dims, &d->output_dims);
      fxpq_options_pad_params(&o, &d->params.pad);
      break;
    case FXPQ_OP_MAX_POOL_2D:
    case FXPQ_OP_AVERAGE_POOL_2D:
      ok = Nhwc(input->dims, &d->input_dims) && Nhwc(output->dims, &d->output_dims);
      fxpq_options_pool_params(&o, &d->params.pool);
      break;
    case FXPQ_OP_FULLY_CONNECTED:
      d->size = Elements(input->dims) / (input->dims->size > 0 ? input->dims->data[0] : 1);
      d->out_features = output->dims->size == 2 ? output->dims->data[1] : -1;
      d->params.fc.activation = fxpq_options_activation(&o);
      d->scratch_bytes = fxpq_fully_connected_get_buffer_size(d->size);
      ok = d->size > 0 && d->out_features > 0 && d->scratch_bytes >= 0;
      break;
    case FXPQ_OP_CONV_2D:
    case FXPQ_OP_DEPTHWISE_CONV_2D:
      ok = Nhwc(input->dims, &d->input_dims) && Nhwc(output->dims, &d->output_dims);
      if (!ok) break;
      d->filter_dims.h = o.filter_h;
      d->filter_dims.w = o.filter_w;
      if (kOp == FXPQ_OP_CONV_2D) {
        d->filter_dims.n = d->output_dims.c;
        d->filter_dims.c = d->input_dims.c;
        fxpq_options_conv_params(&o, &d->params.conv);
        d->scratch_bytes = fxpq_conv2d_get_buffer_size(&d->filter_dims);
      } else {
        d->filter_dims.n = 1;
        d->filter_dims.c = d->output_dims.c;
        fxpq_options_dw_conv_params(&o, &d->params.dw);
        d->scratch_bytes = fxpq_depthwise_conv2d_get_buffer_size(&d->filter_dims);
      }
      ok = d->scratch_bytes >= 0;
      break;
    default:
      break;
  }
done:
  if (input != nullptr) mc->DeallocateTempTfLiteTensor(input);
  if (input2 != nullptr) mc->DeallocateTempTfLiteTensor(input2);
  if (output != nullptr) mc->DeallocateTempTfLiteTensor(output);
  return ok;
}

template <int kOp>
TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* d = static_cast<OpData*>(node->user_data);
  if (d == nullptr) {
    MicroPrintf("%s: no persistent memory for the op data", fxpq_custom_op_name(kOp));
    return kTfLiteError;
  }
  if (d->parse_status != FXPQ_RUNNER_OK) {
    MicroPrintf("%s: custom options rejected: %s (keys and ranges: docs/format.md section 4)",
                fxpq_custom_op_name(kOp),
                fxpq_runner_status_str(d->parse_status));
    return kTfLiteError;
  }
  tflite::MicroContext* mc = tflite::GetMicroContext(context);
  const char* why = "";
  if (!PrepareOp<kOp>(mc, node, d, &why)) {
    MicroPrintf("%s: %s", fxpq_custom_op_name(kOp), why);
    return kTfLiteError;
  }
  if (d->scratch_bytes > 0) {
    return mc->RequestScratchBufferInArena(static_cast<size_t>(d->scratch_bytes),
                                           &d->scratch_index);
  }
  return kTfLiteOk;
}

// Weights, weight fracs and bias of a weighted op, straight from the constant tensors.
void WeightArgs(TfLiteContext* context, TfLiteNode* node, const OpData* d, fxpq_weights* w,
                fxpq_bias* b) {
  const TfLiteEvalTensor* weights = tflite::micro::GetEvalInput(context, node, kWeights);
  const TfLiteEvalTensor* fracs = tflite::micro::GetEvalInput(context, node, kWeightFracs);
  const TfLiteEvalTensor* bias =
      node->inputs->size > kBias ? tflite::micro::GetEvalInput(context, node, kBias) : nullptr;
  const int8_t* per_channel = tflite::micro::GetTensorData<int8_t>(fracs);
  w->data = tflite::micro::GetTensorData<uint8_t>(weights);
  w->bits = d->options.weight_bits;
  w->frac = per_channel[0];
  w->per_channel_frac = per_channel;
  b->data = bias != nullptr ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr;
  b->frac = d->options.bias_frac;
}

template <int kOp>
TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData* d = static_cast<const OpData*>(node->user_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, kInput);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, kOutput);
  const void* in = input->data.raw;
  void* out = output->data.raw;
  fxpq_context scratch;
  scratch.buf = d->scratch_index >= 0 ? context->GetScratchBuffer(context, d->scratch_index)
                                      : nullptr;
  scratch.size = d->scratch_bytes;
  fxpq_weights w;
  fxpq_bias b;
  fxpq_status status = FXPQ_ERR_BAD_PARAM;
  switch (kOp) {
    case FXPQ_OP_QUANTIZE:
      status = fxpq_quantize(d->size, static_cast<const float*>(in), out, &d->output_format);
      break;
    case FXPQ_OP_CONV_2D:
      WeightArgs(context, node, d, &w, &b);
      status = fxpq_conv2d(&scratch, &d->params.conv, &d->input_dims, in, &d->input_format[0],
                           &d->filter_dims, &w, &b, &d->output_dims, out, &d->output_format);
      break;
    case FXPQ_OP_DEPTHWISE_CONV_2D:
      WeightArgs(context, node, d, &w, &b);
      status = fxpq_depthwise_conv2d(&scratch, &d->params.dw, &d->input_dims, in,
                                     &d->input_format[0], &d->filter_dims, &w, &b,
                                     &d->output_dims, out, &d->output_format);
      break;
    case FXPQ_OP_FULLY_CONNECTED:
      WeightArgs(context, node, d, &w, &b);
      status = fxpq_fully_connected(&scratch, &d->params.fc, 1, d->size, d->out_features, in,
                                    &d->input_format[0], &w, &b, out, &d->output_format);
      break;
    case FXPQ_OP_ADD: {
      const TfLiteEvalTensor* input2 = tflite::micro::GetEvalInput(context, node, kInput2);
      status = fxpq_add(&d->params.ew, d->size, in, &d->input_format[0], input2->data.raw,
                        &d->input_format[1], out, &d->output_format);
      break;
    }
    case FXPQ_OP_MAX_POOL_2D:
      status = fxpq_max_pool2d(&d->params.pool, &d->input_dims, in, &d->input_format[0],
                               &d->output_dims, out, &d->output_format);
      break;
    case FXPQ_OP_AVERAGE_POOL_2D:
      status = fxpq_average_pool2d(&d->params.pool, &d->input_dims, in, &d->input_format[0],
                                   &d->output_dims, out, &d->output_format);
      break;
    case FXPQ_OP_GLOBAL_AVERAGE_POOL_2D:
      status = fxpq_global_average_pool2d(&d->input_dims, in, &d->input_format[0], out,
                                          &d->output_format);
      break;
    case FXPQ_OP_REQUANTIZE:
      status = fxpq_requantize(&d->params.ew, d->size, in, &d->input_format[0], out,
                               &d->output_format);
      break;
    case FXPQ_OP_CONCATENATION: {
      const TfLiteEvalTensor* input2 = tflite::micro::GetEvalInput(context, node, kInput2);
      status = fxpq_concatenation(d->params.concat.outer, d->params.concat.a_channels, in,
                                  &d->input_format[0], d->params.concat.b_channels,
                                  input2->data.raw, &d->input_format[1], out, &d->output_format);
      break;
    }
    case FXPQ_OP_LEAKY_RELU:
      status = fxpq_leaky_relu(&d->params.leaky, d->size, in, &d->input_format[0], out,
                               &d->output_format);
      break;
    case FXPQ_OP_PAD:
      status = fxpq_zero_pad2d(&d->params.pad, &d->input_dims, in, &d->input_format[0],
                               &d->output_dims, out, &d->output_format);
      break;
    default:
      break;
  }
  if (status != FXPQ_OK) {
    MicroPrintf("%s: %s", fxpq_custom_op_name(kOp), fxpq_status_str(status));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

template <int kOp>
const TFLMRegistration* Registration() {
  static const TFLMRegistration registration =
      tflite::micro::RegisterOp(Init<kOp>, Prepare<kOp>, Eval<kOp>);
  return &registration;
}

}  // namespace

const TFLMRegistration* Register_FXP_QUANTIZE() { return Registration<FXPQ_OP_QUANTIZE>(); }
const TFLMRegistration* Register_FXP_CONV_2D() { return Registration<FXPQ_OP_CONV_2D>(); }
const TFLMRegistration* Register_FXP_DEPTHWISE_CONV_2D() {
  return Registration<FXPQ_OP_DEPTHWISE_CONV_2D>();
}
const TFLMRegistration* Register_FXP_FULLY_CONNECTED() {
  return Registration<FXPQ_OP_FULLY_CONNECTED>();
}
const TFLMRegistration* Register_FXP_ADD() { return Registration<FXPQ_OP_ADD>(); }
const TFLMRegistration* Register_FXP_MAX_POOL_2D() { return Registration<FXPQ_OP_MAX_POOL_2D>(); }
const TFLMRegistration* Register_FXP_AVERAGE_POOL_2D() {
  return Registration<FXPQ_OP_AVERAGE_POOL_2D>();
}
const TFLMRegistration* Register_FXP_GLOBAL_AVERAGE_POOL_2D() {
  return Registration<FXPQ_OP_GLOBAL_AVERAGE_POOL_2D>();
}
const TFLMRegistration* Register_FXP_REQUANTIZE() { return Registration<FXPQ_OP_REQUANTIZE>(); }
const TFLMRegistration* Register_FXP_PAD() { return Registration<FXPQ_OP_PAD>(); }
const TFLMRegistration* Register_FXP_LEAKY_RELU() { return Registration<FXPQ_OP_LEAKY_RELU>(); }
const TFLMRegistration* Register_FXP_CONCATENATION() {
  return Registration<FXPQ_OP_CONCATENATION>();
}

}  // namespace fxpq
