// tflm_compile_check_stub.h - COMPILE-CHECK STUB, NOT TENSORFLOW LITE MICRO CODE.
//
// A minimal stand-in that mirrors the few TFLM declarations tflm/fxpq_tflm_ops.cc uses (names,
// signatures and member names as in TFLM's public headers of 2026: tensorflow/lite/c/common.h,
// micro_common.h, micro_context.h, kernels/kernel_util.h, micro_log.h,
// micro_mutable_op_resolver.h), written for this project so the glue can be compiled and
// exercised on a machine without TFLM. It is not a TFLM implementation: layouts beyond the used
// members, the interpreter and the memory planner do not exist here. Real firmware builds use
// TFLM's own headers (docs/tflm.md).
#ifndef FXPQ_TFLM_COMPILE_CHECK_STUB_H
#define FXPQ_TFLM_COMPILE_CHECK_STUB_H

#include <stddef.h>
#include <stdint.h>

extern "C" {

typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef enum {
  kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteUInt8 = 3, kTfLiteInt64 = 4,
  kTfLiteString = 5, kTfLiteBool = 6, kTfLiteInt16 = 7, kTfLiteComplex64 = 8, kTfLiteInt8 = 9,
  kTfLiteFloat16 = 10, kTfLiteFloat64 = 11, kTfLiteComplex128 = 12, kTfLiteUInt64 = 13,
  kTfLiteResource = 14, kTfLiteVariant = 15, kTfLiteUInt32 = 16, kTfLiteUInt16 = 17,
  kTfLiteInt4 = 18
} TfLiteType;

typedef struct TfLiteIntArray {
  int size;
  int data[8];  // TFLM: a flexible array member
} TfLiteIntArray;

typedef union TfLitePtrUnion {
  int32_t* i32;
  float* f;
  int8_t* int8;
  uint8_t* uint8;
  int16_t* i16;
  char* raw;
  const char* raw_const;
  void* data;
} TfLitePtrUnion;

typedef struct TfLiteTensor {
  TfLiteType type;
  TfLitePtrUnion data;
  TfLiteIntArray* dims;
  size_t bytes;
} TfLiteTensor;

typedef struct TfLiteEvalTensor {
  TfLitePtrUnion data;
  TfLiteIntArray* dims;
  TfLiteType type;
} TfLiteEvalTensor;

typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  void* user_data;
  const void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
} TfLiteNode;

typedef struct TfLiteContext {
  void* impl_;
  void* (*GetScratchBuffer)(struct TfLiteContext* ctx, int buffer_idx);
  TfLiteEvalTensor* (*GetEvalTensor)(const struct TfLiteContext* context, int tensor_idx);
} TfLiteContext;

}  // extern "C"

struct TFLMRegistration {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
  void (*reset)(TfLiteContext* context, void* buffer);
  int32_t builtin_code;
  const char* custom_name;
};

void MicroPrintf(const char* format, ...);

namespace tflite {

class MicroContext {
 public:
  virtual ~MicroContext() = default;
  virtual void* AllocatePersistentBuffer(size_t bytes) = 0;
  virtual TfLiteStatus RequestScratchBufferInArena(size_t bytes, int* buffer_idx) = 0;
  virtual void* GetScratchBuffer(int buffer_idx) = 0;
  virtual TfLiteTensor* AllocateTempTfLiteTensor(int tensor_idx) = 0;
  TfLiteTensor* AllocateTempInputTensor(const TfLiteNode* node, int index) {
    return index < node->inputs->size && node->inputs->data[index] >= 0
               ? AllocateTempTfLiteTensor(node->inputs->data[index])
               : nullptr;
  }
  TfLiteTensor* AllocateTempOutputTensor(const TfLiteNode* node, int index) {
    return index < node->outputs->size ? AllocateTempTfLiteTensor(node->outputs->data[index])
                                       : nullptr;
  }
  virtual void DeallocateTempTfLiteTensor(TfLiteTensor* tensor) = 0;
  virtual TfLiteEvalTensor* GetEvalTensor(int tensor_idx) = 0;
};

inline MicroContext* GetMicroContext(const struct TfLiteContext* context) {
  return reinterpret_cast<MicroContext*>(context->impl_);
}

namespace micro {

inline TFLMRegistration RegisterOp(
    void* (*init)(TfLiteContext* context, const char* buffer, size_t length),
    TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node),
    TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node),
    void (*free)(TfLiteContext* context, void* buffer) = nullptr,
    void (*reset)(TfLiteContext* context, void* buffer) = nullptr) {
  return {init, free, prepare, invoke, reset, 0, nullptr};
}

inline const TfLiteEvalTensor* GetEvalInput(const TfLiteContext* context, const TfLiteNode* node,
                                            int index) {
  if (index >= node->inputs->size || node->inputs->data[index] < 0) return nullptr;
  return context->GetEvalTensor(context, node->inputs->data[index]);
}

inline TfLiteEvalTensor* GetEvalOutput(const TfLiteContext* context, const TfLiteNode* node,
                                       int index) {
  return context->GetEvalTensor(context, node->outputs->data[index]);
}

template <typename T>
T* GetTensorData(TfLiteEvalTensor* tensor) {
  return tensor != nullptr ? reinterpret_cast<T*>(tensor->data.raw) : nullptr;
}

template <typename T>
const T* GetTensorData(const TfLiteEvalTensor* tensor) {
  return tensor != nullptr ? reinterpret_cast<const T*>(tensor->data.raw) : nullptr;
}

}  // namespace micro

class MicroOpResolver {};  // TFLM: the interface MicroInterpreter takes

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  TfLiteStatus AddCustom(const char* name, const TFLMRegistration* registration) {
    if (count_ >= tOpCount) return kTfLiteError;
    for (unsigned int i = 0; i < count_; ++i) {
      if (names_[i] != nullptr && Same(names_[i], name)) return kTfLiteError;
    }
    registrations_[count_] = *registration;
    registrations_[count_].builtin_code = 32;  // BuiltinOperator_CUSTOM
    registrations_[count_].custom_name = name;
    names_[count_++] = name;
    return kTfLiteOk;
  }
  // The stock operators fxpq's generated resolvers add (TFLM's method names; BuiltinOperator codes).
  TfLiteStatus AddAdd() { return AddBuiltin(0); }
  TfLiteStatus AddAveragePool2D() { return AddBuiltin(1); }
  TfLiteStatus AddConcatenation() { return AddBuiltin(2); }
  TfLiteStatus AddConv2D() { return AddBuiltin(3); }
  TfLiteStatus AddDepthwiseConv2D() { return AddBuiltin(4); }
  TfLiteStatus AddDequantize() { return AddBuiltin(6); }
  TfLiteStatus AddFullyConnected() { return AddBuiltin(9); }
  TfLiteStatus AddMaxPool2D() { return AddBuiltin(17); }
  TfLiteStatus AddReshape() { return AddBuiltin(22); }
  TfLiteStatus AddSoftmax() { return AddBuiltin(25); }
  TfLiteStatus AddPad() { return AddBuiltin(34); }
  TfLiteStatus AddMean() { return AddBuiltin(40); }
  TfLiteStatus AddLeakyRelu() { return AddBuiltin(98); }
  TfLiteStatus AddQuantize() { return AddBuiltin(114); }
  TfLiteStatus AddBuiltin(int32_t code) {
    if (count_ >= tOpCount) return kTfLiteError;
    for (unsigned int i = 0; i < count_; ++i) {
      if (names_[i] == nullptr && registrations_[i].builtin_code == code) return kTfLiteError;
    }
    registrations_[count_] = TFLMRegistration{};
    registrations_[count_].builtin_code = code;
    names_[count_++] = nullptr;
    return kTfLiteOk;
  }
  const TFLMRegistration* FindOp(const char* op) const {
    for (unsigned int i = 0; i < count_; ++i) {
      if (names_[i] != nullptr && Same(names_[i], op)) return &registrations_[i];
    }
    return nullptr;
  }
  unsigned int GetRegistrationLength() const { return count_; }

 private:
  static bool Same(const char* a, const char* b) {
    while (*a != '\0' && *a == *b) {
      ++a;
      ++b;
    }
    return *a == *b;
  }
  TFLMRegistration registrations_[tOpCount] = {};
  const char* names_[tOpCount] = {};
  unsigned int count_ = 0;
};

// Declarations only (compile checks of a package's main.cc; tests/test_deploy.py links it against
// definitions that refuse every model, to run the package's board code without TFLM).
class Model {
 public:
  uint32_t version() const;
};
const Model* GetModel(const void* buf);

class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& resolver, uint8_t* arena, size_t arena_bytes);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor* input(size_t index);
  TfLiteTensor* output(size_t index);
  size_t arena_used_bytes() const;
};

}  // namespace tflite

#define TFLITE_SCHEMA_VERSION (3)

#endif  // FXPQ_TFLM_COMPILE_CHECK_STUB_H
