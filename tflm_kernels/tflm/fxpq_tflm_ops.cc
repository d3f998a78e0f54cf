// fxpq_tflm_ops.cc - thin TFLM glue of the FXP_* custom ops: the math is the C kernels
// (include/fxpq_kernels.h), the options are read by the shared options reader
// (src/options/fxpq_options.c, the same code the fxpq model runner uses).
//
// Kernel life cycle (TFLM's):
//   Init    allocates the op's persistent record (Record<kOp>: what Eval needs, nothing more);
//   Prepare parses the op's FlexBuffers custom_options (node->custom_initial_data) on its
//           stack, validates tensor types and shapes, fills the record with the formats and
//           kernel parameters, and requests the kernel's scratch buffer in the arena;
//   Eval    reads the tensors (shapes included) and the record, and calls the kernel.
//
// Formats: TFLM keeps no tensor min/max, so the output format comes from the options
// (fxpq_options_output_format: frac = out_frac, the width whose clamp is [act_min, act_max]). The
// input format of a weighted op comes from its options too (fxpq_options_input_format: in_bits,
// format version 4), so a 13-bit unsigned input in uint16 takes the int16 lanes as in the runner;
// files without in_bits (versions 2, 3) and the other ops' inputs, whose kernels look at the
// storage type only, get the storage type at full width with frac = in_frac. Either gives the
// kernels exactly the results of the file's own formats (the clamp is the same; a wider input
// format can only select a 64-bit accumulator or slower lanes, which are exact as well).
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

// Persistent record of each op (Init allocates sizeof(Record<kOp>) in the arena, kept for the
// model's life): only what Eval cannot read from the tensors. Shapes and element counts are read
// again from the eval tensors' dims (TFLM keeps them; Prepare has checked them), the custom
// options are parsed in Prepare from node->custom_initial_data (it points into the model's
// flatbuffer, which outlives the interpreter) into Prepare's stack, and formats are kept as three
// bytes. docs/tflm.md section 7 lists the sizes (fxpq_keras/tflm_arena.py charges them).
struct Fmt {  // an fxpq_format whose fields fit int8 (bits 2..16, frac -32..32)
  int8_t bits, frac, is_signed;
};

struct Weighted {  // weights, bias and scratch of a conv / depthwise / fully connected
  int32_t weight_bits, bias_frac, scratch_bytes;
  int scratch_index;
};

template <int kOp>
struct Record {  // the primary template serves FXP_REQUANTIZE; every other op has its own below
  fxpq_elementwise_params params;
  Fmt in, out;
};
template <>
struct Record<FXPQ_OP_QUANTIZE> {
  Fmt out;
};
template <>
struct Record<FXPQ_OP_CONV_2D> {
  fxpq_conv_params params;
  fxpq_tile filter;
  Weighted weighted;
  Fmt in, out;
};
template <>
struct Record<FXPQ_OP_DEPTHWISE_CONV_2D> {
  fxpq_dw_conv_params params;
  fxpq_tile filter;
  Weighted weighted;
  Fmt in, out;
};
template <>
struct Record<FXPQ_OP_FULLY_CONNECTED> {
  fxpq_fc_params params;
  Weighted weighted;
  Fmt in, out;
};
template <>
struct Record<FXPQ_OP_ADD> {
  fxpq_elementwise_params params;
  Fmt in, in2, out;
};
template <>
struct Record<FXPQ_OP_MAX_POOL_2D> {
  fxpq_pool_params params;
  Fmt in, out;
};
template <>
struct Record<FXPQ_OP_AVERAGE_POOL_2D> : Record<FXPQ_OP_MAX_POOL_2D> {};
template <>
struct Record<FXPQ_OP_GLOBAL_AVERAGE_POOL_2D> {
  Fmt in, out;
};
template <>
struct Record<FXPQ_OP_CONCATENATION> {
  Fmt in, in2, out;
};
template <>
struct Record<FXPQ_OP_LEAKY_RELU> {
  fxpq_leaky_relu_params params;
  Fmt in, out;
};
template <>
struct Record<FXPQ_OP_PAD> {
  fxpq_pad_params params;
  Fmt in, out;
};

constexpr bool IsWeighted(int op) {
  return op == FXPQ_OP_CONV_2D || op == FXPQ_OP_DEPTHWISE_CONV_2D || op == FXPQ_OP_FULLY_CONNECTED;
}

bool Pack(const fxpq_format& f, Fmt* out) {
  if (f.bits < 0 || f.bits > INT8_MAX || f.frac < INT8_MIN || f.frac > INT8_MAX) return false;
  out->bits = static_cast<int8_t>(f.bits);
  out->frac = static_cast<int8_t>(f.frac);
  out->is_signed = static_cast<int8_t>(f.is_signed != 0);
  return true;
}

fxpq_format Unpack(Fmt f) {
  fxpq_format out;
  out.bits = f.bits;
  out.frac = f.frac;
  out.is_signed = f.is_signed;
  return out;
}

bool StorageOf(TfLiteType type, fxpq_storage* storage) {
  switch (type) {
    case kTfLiteInt8: *storage = FXPQ_STORAGE_INT8; return true;
    case kTfLiteUInt8: *storage = FXPQ_STORAGE_UINT8; return true;
    case kTfLiteInt16: *storage = FXPQ_STORAGE_INT16; return true;
    case kTfLiteUInt16: *storage = FXPQ_STORAGE_UINT16; return true;
    default: return false;
  }
}

// The input format of an unweighted op: the storage type at full width, frac from the options.
bool InputFormat(const TfLiteTensor* tensor, int32_t frac, Fmt* packed) {
  fxpq_storage storage;
  if (tensor == nullptr || !StorageOf(tensor->type, &storage)) return false;
  fxpq_format format;
  format.is_signed = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_INT16) ? 1 : 0;
  format.bits = (storage == FXPQ_STORAGE_INT8 || storage == FXPQ_STORAGE_UINT8) ? 8 : 16;
  format.frac = frac;
  return Pack(format, packed);
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

// Fully connected: in_features of a [batch, ...] input and out_features of a [batch, out] output.
int32_t InFeatures(const TfLiteIntArray* in) {
  const int32_t n = Elements(in);
  return n > 0 && in->size > 0 ? n / in->data[0] : -1;
}
int32_t OutFeatures(const TfLiteIntArray* out) { return out->size == 2 ? out->data[1] : -1; }

// The conv / depthwise filter shape the kernels take (h, w kept; n, c follow the tensors).
fxpq_dims FilterDims(int op, fxpq_tile filter, const fxpq_dims& in, const fxpq_dims& out) {
  fxpq_dims f;
  f.h = filter.h;
  f.w = filter.w;
  f.n = op == FXPQ_OP_CONV_2D ? out.c : 1;
  f.c = op == FXPQ_OP_CONV_2D ? in.c : out.c;
  return f;
}

template <int kOp>
void* Init(TfLiteContext* context, const char*, size_t) {
  return tflite::GetMicroContext(context)->AllocatePersistentBuffer(sizeof(Record<kOp>));
}

// Shape/format work of Prepare, per op. Returns false with a message on any mismatch. *terms: the
// weighted ops' terms per dot product (for fxpq_kernel_path_built).
template <int kOp>
bool PrepareOp(tflite::MicroContext* mc, TfLiteNode* node, const fxpq_op_options& o,
               Record<kOp>* d, const char** why, int32_t* terms) {
  TfLiteTensor* input = mc->AllocateTempInputTensor(node, kInput);
  TfLiteTensor* output = mc->AllocateTempOutputTensor(node, kOutput);
  TfLiteTensor* input2 = nullptr;
  bool ok = false;
  fxpq_storage out_storage;
  fxpq_format out_format;
  fxpq_dims in_dims = {}, out_dims = {};
  *why = "tensor types or shapes do not match the op";
  if (input == nullptr || output == nullptr || !StorageOf(output->type, &out_storage)) {
    goto done;
  }
  if (fxpq_options_output_format(&o, out_storage, &out_format) != FXPQ_RUNNER_OK ||
      !Pack(out_format, &d->out)) {
    *why = "act_min/act_max/out_frac do not fit the output type";
    goto done;
  }
  if constexpr (kOp == FXPQ_OP_QUANTIZE) {
    const int32_t size = Elements(output->dims);
    ok = input->type == kTfLiteFloat32 && size > 0 && Elements(input->dims) == size;
    goto done;
  } else if constexpr (IsWeighted(kOp)) {
    fxpq_storage in_storage;
    fxpq_format in_format;
    if (!StorageOf(input->type, &in_storage)) goto done;
    if (fxpq_options_input_format(&o, in_storage, &in_format) != FXPQ_RUNNER_OK ||
        !Pack(in_format, &d->in)) {
      *why = "in_bits does not fit the input type (2..8 bits in int8/uint8, 9..16 in int16/uint16)";
      goto done;
    }
  } else {
    if (!InputFormat(input, kOp == FXPQ_OP_ADD || kOp == FXPQ_OP_CONCATENATION ? o.in1_frac : o.in_frac,
                     &d->in)) {
      goto done;
    }
  }
  if constexpr (IsWeighted(kOp)) {
    // Format version 2 bit-packs every width in UINT8; version 1 had INT16 for 9..16 bits.
    input2 = mc->AllocateTempInputTensor(node, kWeights);
    if (input2 == nullptr || input2->type != kTfLiteUInt8) {
      *why = "weights must be bit-packed UINT8 (INT16 weights: file format version 1, re-export)";
      goto done;
    }
    mc->DeallocateTempTfLiteTensor(input2);
    input2 = nullptr;
    d->weighted.weight_bits = o.weight_bits;
    d->weighted.bias_frac = o.bias_frac;
    d->weighted.scratch_index = -1;
  }
  if constexpr (kOp == FXPQ_OP_ADD) {
    input2 = mc->AllocateTempInputTensor(node, kInput2);
    const int32_t size = Elements(output->dims);
    ok = InputFormat(input2, o.in2_frac, &d->in2) && size > 0 && Elements(input->dims) == size &&
         Elements(input2->dims) == size;
    d->params.activation = fxpq_options_activation(&o);
  } else if constexpr (kOp == FXPQ_OP_CONCATENATION) {
    input2 = mc->AllocateTempInputTensor(node, kInput2);
    const int rank = output->dims->size;
    ok = InputFormat(input2, o.in2_frac, &d->in2) && rank >= 2 && input->dims->size == rank &&
         input2->dims->size == rank;
    for (int i = 0; ok && i < rank - 1; ++i) {
      ok = input->dims->data[i] == output->dims->data[i] &&
           input2->dims->data[i] == output->dims->data[i];
    }
    ok = ok && input->dims->data[rank - 1] + input2->dims->data[rank - 1] ==
                   output->dims->data[rank - 1] && Elements(output->dims) > 0;
  } else if constexpr (kOp == FXPQ_OP_REQUANTIZE) {
    const int32_t size = Elements(output->dims);
    ok = size > 0 && Elements(input->dims) == size;
    d->params.activation = fxpq_options_activation(&o);
  } else if constexpr (kOp == FXPQ_OP_GLOBAL_AVERAGE_POOL_2D) {
    ok = Nhwc(input->dims, &in_dims) && Elements(output->dims) == in_dims.c;
  } else if constexpr (kOp == FXPQ_OP_LEAKY_RELU) {
    const int32_t size = Elements(output->dims);
    ok = size > 0 && Elements(input->dims) == size;
    fxpq_options_leaky_relu_params(&o, &d->params);
  } else if constexpr (kOp == FXPQ_OP_PAD) {
    ok = Nhwc(input->dims, &in_dims) && Nhwc(output->dims, &out_dims);
    fxpq_options_pad_params(&o, &d->params);
  } else if constexpr (kOp == FXPQ_OP_MAX_POOL_2D || kOp == FXPQ_OP_AVERAGE_POOL_2D) {
    ok = Nhwc(input->dims, &in_dims) && Nhwc(output->dims, &out_dims);
    fxpq_options_pool_params(&o, &d->params);
  } else if constexpr (kOp == FXPQ_OP_FULLY_CONNECTED) {
    const int32_t in_features = InFeatures(input->dims);
    *terms = in_features;
    d->params.activation = fxpq_options_activation(&o);
    d->weighted.scratch_bytes = fxpq_fully_connected_get_buffer_size(in_features);
    ok = in_features > 0 && OutFeatures(output->dims) > 0 && d->weighted.scratch_bytes >= 0;
  } else if constexpr (kOp == FXPQ_OP_CONV_2D || kOp == FXPQ_OP_DEPTHWISE_CONV_2D) {
    ok = Nhwc(input->dims, &in_dims) && Nhwc(output->dims, &out_dims);
    if (!ok) goto done;
    d->filter.h = o.filter_h;
    d->filter.w = o.filter_w;
    const fxpq_dims filter = FilterDims(kOp, d->filter, in_dims, out_dims);
    *terms = filter.h * filter.w * (kOp == FXPQ_OP_CONV_2D ? filter.c : 1);
    if constexpr (kOp == FXPQ_OP_CONV_2D) {
      fxpq_options_conv_params(&o, &d->params);
      d->weighted.scratch_bytes = fxpq_conv2d_get_buffer_size(&filter);
    } else {
      fxpq_options_dw_conv_params(&o, &d->params);
      d->weighted.scratch_bytes = fxpq_depthwise_conv2d_get_buffer_size(&filter);
    }
    ok = d->weighted.scratch_bytes >= 0;
  }
done:
  if (input != nullptr) mc->DeallocateTempTfLiteTensor(input);
  if (input2 != nullptr) mc->DeallocateTempTfLiteTensor(input2);
  if (output != nullptr) mc->DeallocateTempTfLiteTensor(output);
  return ok;
}

template <int kOp>
TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  Record<kOp>* d = static_cast<Record<kOp>*>(node->user_data);
  if (d == nullptr) {
    MicroPrintf("%s: no persistent memory for the op data", fxpq_custom_op_name(kOp));
    return kTfLiteError;
  }
  fxpq_op_options options;
  const fxpq_runner_status parsed = fxpq_options_parse(
      kOp, static_cast<const uint8_t*>(node->custom_initial_data),
      node->custom_initial_data_size > 0 ? static_cast<size_t>(node->custom_initial_data_size) : 0,
      &options);
  if (parsed != FXPQ_RUNNER_OK) {
    MicroPrintf("%s: custom options rejected: %s (keys and ranges: docs/format.md section 4)",
                fxpq_custom_op_name(kOp), fxpq_runner_status_str(parsed));
    return kTfLiteError;
  }
  tflite::MicroContext* mc = tflite::GetMicroContext(context);
  const char* why = "";
  int32_t terms = 0;
  if (!PrepareOp<kOp>(mc, node, options, d, &why, &terms)) {
    MicroPrintf("%s: %s", fxpq_custom_op_name(kOp), why);
    return kTfLiteError;
  }
  if constexpr (IsWeighted(kOp)) {
    // a selective kernel build (fxpq_model_paths.h of another model) may lack this op's path
    const fxpq_storage in_storage = d->in.bits <= 8 ? (d->in.is_signed ? FXPQ_STORAGE_INT8 : FXPQ_STORAGE_UINT8)
                                                    : (d->in.is_signed ? FXPQ_STORAGE_INT16 : FXPQ_STORAGE_UINT16);
    const fxpq_format in_format = Unpack(d->in);
    if (!fxpq_kernel_path_built(kOp, &in_format, d->weighted.weight_bits, terms)) {
      static const char* const kStorage[] = {"int8", "uint8", "int16", "uint16"};
      MicroPrintf("%s: %s inputs with %d-bit weights: %s", fxpq_custom_op_name(kOp), kStorage[in_storage],
                  static_cast<int>(d->weighted.weight_bits), fxpq_status_str(FXPQ_ERR_NOT_BUILT));
      return kTfLiteError;
    }
    if (d->weighted.scratch_bytes > 0) {
      return mc->RequestScratchBufferInArena(static_cast<size_t>(d->weighted.scratch_bytes),
                                             &d->weighted.scratch_index);
    }
  }
  return kTfLiteOk;
}

// Weights, weight fracs, bias and scratch of a weighted op, straight from the constant tensors.
void WeightArgs(TfLiteContext* context, TfLiteNode* node, const Weighted& d, fxpq_weights* w,
                fxpq_bias* b, fxpq_context* scratch) {
  const TfLiteEvalTensor* weights = tflite::micro::GetEvalInput(context, node, kWeights);
  const TfLiteEvalTensor* fracs = tflite::micro::GetEvalInput(context, node, kWeightFracs);
  const TfLiteEvalTensor* bias =
      node->inputs->size > kBias ? tflite::micro::GetEvalInput(context, node, kBias) : nullptr;
  const int8_t* per_channel = tflite::micro::GetTensorData<int8_t>(fracs);
  w->data = tflite::micro::GetTensorData<uint8_t>(weights);
  w->bits = d.weight_bits;
  w->frac = per_channel[0];
  w->per_channel_frac = per_channel;
  b->data = bias != nullptr ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr;
  b->frac = d.bias_frac;
  scratch->buf = d.scratch_index >= 0 ? context->GetScratchBuffer(context, d.scratch_index)
                                      : nullptr;
  scratch->size = d.scratch_bytes;
}

template <int kOp>
TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const Record<kOp>* d = static_cast<const Record<kOp>*>(node->user_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, kInput);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, kOutput);
  const void* in = input->data.raw;
  void* out = output->data.raw;
  const fxpq_format out_format = Unpack(d->out);
  fxpq_status status = FXPQ_ERR_BAD_PARAM;
  if constexpr (kOp == FXPQ_OP_QUANTIZE) {
    status = fxpq_quantize(Elements(output->dims), static_cast<const float*>(in), out, &out_format);
  } else {
    const fxpq_format in_format = Unpack(d->in);
    fxpq_dims in_dims = {}, out_dims = {};
    // Prepare has checked the shapes: these only read them back (4-D ops).
    Nhwc(input->dims, &in_dims);
    Nhwc(output->dims, &out_dims);
    if constexpr (IsWeighted(kOp)) {
      fxpq_weights w;
      fxpq_bias b;
      fxpq_context scratch;
      WeightArgs(context, node, d->weighted, &w, &b, &scratch);
      if constexpr (kOp == FXPQ_OP_FULLY_CONNECTED) {
        status = fxpq_fully_connected(&scratch, &d->params, 1, InFeatures(input->dims),
                                      OutFeatures(output->dims), in, &in_format, &w, &b, out,
                                      &out_format);
      } else {
        const fxpq_dims filter = FilterDims(kOp, d->filter, in_dims, out_dims);
        if constexpr (kOp == FXPQ_OP_CONV_2D) {
          status = fxpq_conv2d(&scratch, &d->params, &in_dims, in, &in_format, &filter, &w, &b,
                               &out_dims, out, &out_format);
        } else {
          status = fxpq_depthwise_conv2d(&scratch, &d->params, &in_dims, in, &in_format, &filter,
                                         &w, &b, &out_dims, out, &out_format);
        }
      }
    } else if constexpr (kOp == FXPQ_OP_ADD || kOp == FXPQ_OP_CONCATENATION) {
      const TfLiteEvalTensor* input2 = tflite::micro::GetEvalInput(context, node, kInput2);
      const fxpq_format in2_format = Unpack(d->in2);
      if constexpr (kOp == FXPQ_OP_ADD) {
        status = fxpq_add(&d->params, Elements(output->dims), in, &in_format, input2->data.raw,
                          &in2_format, out, &out_format);
      } else {
        const int last = output->dims->size - 1;
        status = fxpq_concatenation(Elements(output->dims) / output->dims->data[last],
                                    input->dims->data[last], in, &in_format,
                                    input2->dims->data[last], input2->data.raw, &in2_format, out,
                                    &out_format);
      }
    } else if constexpr (kOp == FXPQ_OP_MAX_POOL_2D) {
      status = fxpq_max_pool2d(&d->params, &in_dims, in, &in_format, &out_dims, out, &out_format);
    } else if constexpr (kOp == FXPQ_OP_AVERAGE_POOL_2D) {
      status = fxpq_average_pool2d(&d->params, &in_dims, in, &in_format, &out_dims, out,
                                   &out_format);
    } else if constexpr (kOp == FXPQ_OP_GLOBAL_AVERAGE_POOL_2D) {
      status = fxpq_global_average_pool2d(&in_dims, in, &in_format, out, &out_format);
    } else if constexpr (kOp == FXPQ_OP_REQUANTIZE) {
      status = fxpq_requantize(&d->params, Elements(output->dims), in, &in_format, out,
                               &out_format);
    } else if constexpr (kOp == FXPQ_OP_LEAKY_RELU) {
      status = fxpq_leaky_relu(&d->params, Elements(output->dims), in, &in_format, out,
                               &out_format);
    } else if constexpr (kOp == FXPQ_OP_PAD) {
      status = fxpq_zero_pad2d(&d->params, &in_dims, in, &in_format, &out_dims, out, &out_format);
    }
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
