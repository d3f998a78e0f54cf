// glue_harness.cc - host harness of the TFLM glue (tflm/fxpq_tflm_ops.cc), written for this
// project; NOT TENSORFLOW LITE MICRO CODE.
//
// A functional stand-in for the few TFLM calls the glue makes (MicroContext's persistent, scratch
// and temporary-tensor allocation, TfLiteContext's GetEvalTensor / GetScratchBuffer, MicroPrintf),
// declared by tflm_compile_check_stub.h, plus a minimal graph loop: it looks each op up by name
// on a resolver filled by fxpq::RegisterFxpOps, then calls the registration's init with the op's
// custom options, prepare, and invoke per sample, in TFLM's order. RESHAPE (a stock op) is a copy.
// The graph comes from Python (fxpq_keras/kernels/glue_harness.py) as a flat blob of 32-bit
// little-endian words, so this runs on every machine, with or without a TFLM tree.
//
// What it checks beyond the outputs: temporary tensors are released by every Prepare; scratch is
// requested only in Prepare and read only in Eval; every output and scratch buffer is followed by
// guard bytes that must be intact after each Eval (an undersized scratch request or a wrong output
// size shows up as an error, not as silent corruption); persistent memory is handed out filled
// with 0xCD, as an arena holds stale bytes.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "fxpq_tflm_ops.h"

namespace {

constexpr uint32_t kMagic = 0x48475846u;  // "FXGH"
constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0xA5;

char g_message[256];

struct Tensor {
  TfLiteType type = kTfLiteNoType;
  TfLiteIntArray dims = {};
  size_t bytes = 0;
  bool constant = false;
  std::vector<uint8_t> storage;  // bytes + guard, 16-byte aligned start is not needed on the host
};

struct Op {
  const TFLMRegistration* reg = nullptr;
  bool reshape = false;
  TfLiteIntArray inputs = {};
  TfLiteIntArray outputs = {};
  std::vector<uint8_t> options;
  TfLiteNode node = {};
};

enum class Phase { kInit, kPrepare, kEval };

class StandInContext : public tflite::MicroContext {
 public:
  std::vector<Tensor> tensors;
  std::vector<TfLiteEvalTensor> evals;
  std::vector<void*> persistent;
  std::vector<size_t> scratch_sizes;
  std::vector<std::vector<uint8_t>> scratch;
  int live_temps = 0;
  Phase phase = Phase::kInit;
  bool misuse = false;
  const char* misuse_what = "";

  ~StandInContext() override {
    for (void* p : persistent) free(p);
  }
  void* AllocatePersistentBuffer(size_t bytes) override {
    void* p = malloc(bytes > 0 ? bytes : 1);
    if (p != nullptr) {
      memset(p, 0xCD, bytes);
      persistent.push_back(p);
    }
    return p;
  }
  TfLiteStatus RequestScratchBufferInArena(size_t bytes, int* buffer_idx) override {
    if (phase != Phase::kPrepare) return Misuse("scratch requested outside Prepare");
    scratch_sizes.push_back(bytes);
    *buffer_idx = static_cast<int>(scratch_sizes.size()) - 1;
    return kTfLiteOk;
  }
  void* GetScratchBuffer(int buffer_idx) override {
    if (phase != Phase::kEval || buffer_idx < 0 || buffer_idx >= static_cast<int>(scratch.size())) {
      Misuse("scratch buffer read outside Eval or with a bad index");
      return nullptr;
    }
    return scratch[buffer_idx].data();
  }
  TfLiteTensor* AllocateTempTfLiteTensor(int tensor_idx) override {
    if (phase != Phase::kPrepare || tensor_idx < 0 || tensor_idx >= static_cast<int>(tensors.size())) {
      Misuse("temporary tensor outside Prepare or with a bad index");
      return nullptr;
    }
    Tensor& t = tensors[tensor_idx];
    TfLiteTensor* out = new TfLiteTensor();
    out->type = t.type;
    out->data.data = t.storage.data();
    out->dims = &t.dims;
    out->bytes = t.bytes;
    ++live_temps;
    return out;
  }
  void DeallocateTempTfLiteTensor(TfLiteTensor* tensor) override {
    delete tensor;
    --live_temps;
  }
  TfLiteEvalTensor* GetEvalTensor(int tensor_idx) override {
    if (tensor_idx < 0 || tensor_idx >= static_cast<int>(evals.size())) return nullptr;
    return &evals[tensor_idx];
  }
  TfLiteStatus Misuse(const char* what) {
    if (!misuse) misuse_what = what;
    misuse = true;
    return kTfLiteError;
  }
};

void* ContextGetScratch(TfLiteContext* ctx, int idx) {
  return static_cast<StandInContext*>(ctx->impl_)->GetScratchBuffer(idx);
}
TfLiteEvalTensor* ContextGetEvalTensor(const TfLiteContext* ctx, int idx) {
  return static_cast<StandInContext*>(ctx->impl_)->GetEvalTensor(idx);
}

// Bounded reader of the blob's 32-bit words.
struct Reader {
  const uint8_t* p;
  size_t len;
  size_t pos = 0;
  bool ok = true;
  uint32_t Word() {
    if (!ok || pos > len || len - pos < 4) {
      ok = false;
      return 0;
    }
    uint32_t v = static_cast<uint32_t>(p[pos]) | (static_cast<uint32_t>(p[pos + 1]) << 8) |
                 (static_cast<uint32_t>(p[pos + 2]) << 16) | (static_cast<uint32_t>(p[pos + 3]) << 24);
    pos += 4;
    return v;
  }
  int32_t Int() { return static_cast<int32_t>(Word()); }
  const uint8_t* Bytes(size_t n) {
    size_t padded = (n + 3u) & ~static_cast<size_t>(3u);
    if (!ok || padded < n || pos > len || len - pos < padded) {
      ok = false;
      return nullptr;
    }
    const uint8_t* out = p + pos;
    pos += padded;
    return out;
  }
};

bool ReadIntArray(Reader& r, TfLiteIntArray* a, int limit) {
  const int32_t n = r.Int();
  if (!r.ok || n < 0 || n > 8) return false;
  a->size = n;
  for (int i = 0; i < n; ++i) {
    a->data[i] = r.Int();
    if (a->data[i] < -1 || a->data[i] >= limit) return false;
  }
  return r.ok;
}

bool GuardIntact(const Tensor& t) {
  for (size_t i = t.bytes; i < t.storage.size(); ++i) {
    if (t.storage[i] != kGuardByte) return false;
  }
  return true;
}

int Fail(const char* fmt, ...) {
  char text[sizeof(g_message)];  // the arguments may point into g_message
  va_list args;
  va_start(args, fmt);
  vsnprintf(text, sizeof(text), fmt, args);
  va_end(args);
  memcpy(g_message, text, sizeof(g_message));
  return 1;
}

}  // namespace

// The stand-in's MicroPrintf: the glue's last message, returned to Python.
void MicroPrintf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(g_message, sizeof(g_message), format, args);
  va_end(args);
}

extern "C" {

int fxpq_glue_run(const uint8_t* blob, size_t blob_len, const uint8_t* inputs, int32_t samples,
                  uint8_t* outputs, size_t outputs_cap, char* message, size_t message_len);

// Runs the graph of `blob` on `samples` inputs (raw input bytes back to back); writes every
// output's bytes per sample to `outputs`. 0 on success, else 1 with `message` saying why.
int fxpq_glue_run(const uint8_t* blob, size_t blob_len, const uint8_t* inputs, int32_t samples,
                  uint8_t* outputs, size_t outputs_cap, char* message, size_t message_len) {
  g_message[0] = '\0';
  int rc = 0;
  {
    static tflite::MicroMutableOpResolver<13> resolver;
    static const TfLiteStatus registered = fxpq::RegisterFxpOps(resolver);  // sticky, like a firmware's
    if (registered != kTfLiteOk) {
      rc = Fail("RegisterFxpOps failed: the stand-in's resolver has too little room");
    }
    StandInContext mc;
    TfLiteContext context = {};
    context.impl_ = &mc;
    context.GetScratchBuffer = ContextGetScratch;
    context.GetEvalTensor = ContextGetEvalTensor;
    Reader r{blob, blob_len};
    std::vector<Op> ops;
    TfLiteIntArray graph_out = {};
    int32_t graph_in = -1;
    if (rc == 0 && (r.Word() != kMagic)) rc = Fail("bad harness blob");
    const int32_t num_tensors = r.Int();
    const int32_t num_ops = r.Int();
    if (rc == 0 && (!r.ok || num_tensors <= 0 || num_tensors > 4096 || num_ops <= 0 || num_ops > 2048)) {
      rc = Fail("bad harness blob header");
    }
    if (rc == 0) {
      graph_in = r.Int();
      if (!ReadIntArray(r, &graph_out, num_tensors) || graph_in < 0 || graph_in >= num_tensors) {
        rc = Fail("bad graph inputs/outputs");
      }
    }
    for (int32_t i = 0; rc == 0 && i < num_tensors; ++i) {
      mc.tensors.emplace_back();
      Tensor& t = mc.tensors.back();
      t.type = static_cast<TfLiteType>(r.Int());
      if (!ReadIntArray(r, &t.dims, 1 << 30)) {
        rc = Fail("tensor %d: bad dims", static_cast<int>(i));
        break;
      }
      t.bytes = r.Word();
      t.constant = r.Word() != 0;
      if (t.bytes > (64u << 20)) {
        rc = Fail("tensor %d: too large", static_cast<int>(i));
        break;
      }
      t.storage.assign(t.bytes + kGuard, kGuardByte);
      if (t.constant) {
        const uint8_t* data = r.Bytes(t.bytes);
        if (data == nullptr) {
          rc = Fail("tensor %d: truncated data", static_cast<int>(i));
          break;
        }
        memcpy(t.storage.data(), data, t.bytes);
      }
    }
    for (int32_t i = 0; rc == 0 && i < num_ops; ++i) {
      ops.emplace_back();
      Op& op = ops.back();
      const uint32_t name_len = r.Word();
      const uint8_t* name = r.Bytes(name_len);
      char op_name[64] = {0};
      if (name == nullptr || name_len == 0 || name_len >= sizeof(op_name)) {
        rc = Fail("op %d: bad name", static_cast<int>(i));
        break;
      }
      memcpy(op_name, name, name_len);
      const uint32_t opt_len = r.Word();
      const uint8_t* opt = r.Bytes(opt_len);
      if (opt == nullptr || !ReadIntArray(r, &op.inputs, num_tensors) ||
          !ReadIntArray(r, &op.outputs, num_tensors) || op.outputs.size != 1) {
        rc = Fail("op %d (%s): bad options or tensor lists", static_cast<int>(i), op_name);
        break;
      }
      op.options.assign(opt, opt + opt_len);
      op.reshape = strcmp(op_name, "RESHAPE") == 0;
      if (!op.reshape) {
        op.reg = resolver.FindOp(op_name);
        if (op.reg == nullptr) rc = Fail("op %d: %s is not registered by RegisterFxpOps", static_cast<int>(i), op_name);
      }
    }
    if (rc == 0 && (!r.ok || r.pos != blob_len)) rc = Fail("harness blob has trailing or missing bytes");

    for (Tensor& t : mc.tensors) {
      TfLiteEvalTensor e = {};
      e.data.data = t.storage.data();
      e.dims = &t.dims;
      e.type = t.type;
      mc.evals.push_back(e);
    }
    // Init (all ops), then Prepare (all ops): TFLM's order.
    for (size_t i = 0; rc == 0 && i < ops.size(); ++i) {
      Op& op = ops[i];
      op.node.inputs = &op.inputs;
      op.node.outputs = &op.outputs;
      if (op.reshape) continue;
      mc.phase = Phase::kInit;
      const char* buf = op.options.empty() ? nullptr : reinterpret_cast<const char*>(op.options.data());
      op.node.custom_initial_data = buf;  // as TFLM: the custom options, for Init and Prepare
      op.node.custom_initial_data_size = static_cast<int>(op.options.size());
      op.node.user_data = op.reg->init(&context, buf, op.options.size());
    }
    for (size_t i = 0; rc == 0 && i < ops.size(); ++i) {
      Op& op = ops[i];
      if (op.reshape) continue;
      mc.phase = Phase::kPrepare;
      if (op.reg->prepare(&context, &op.node) != kTfLiteOk) {
        rc = Fail("op %d: Prepare failed: %s", static_cast<int>(i), mc.misuse ? mc.misuse_what : g_message);
      } else if (mc.live_temps != 0) {
        rc = Fail("op %d: Prepare left %d temporary tensors allocated", static_cast<int>(i), mc.live_temps);
      } else if (mc.misuse) {
        rc = Fail("op %d: %s", static_cast<int>(i), mc.misuse_what);
      }
    }
    for (size_t bytes : mc.scratch_sizes) mc.scratch.emplace_back(bytes + kGuard, kGuardByte);

    const Tensor* in = rc == 0 ? &mc.tensors[graph_in] : nullptr;
    size_t out_bytes = 0;
    for (int k = 0; rc == 0 && k < graph_out.size; ++k) out_bytes += mc.tensors[graph_out.data[k]].bytes;
    if (rc == 0 && out_bytes * static_cast<size_t>(samples) > outputs_cap) rc = Fail("outputs buffer too small");
    for (int32_t s = 0; rc == 0 && s < samples; ++s) {
      memcpy(mc.tensors[graph_in].storage.data(), inputs + static_cast<size_t>(s) * in->bytes, in->bytes);
      for (size_t i = 0; rc == 0 && i < ops.size(); ++i) {
        Op& op = ops[i];
        Tensor& out = mc.tensors[op.outputs.data[0]];
        if (op.reshape) {
          const Tensor& src = mc.tensors[op.inputs.data[0]];
          if (src.bytes != out.bytes) {
            rc = Fail("op %d: RESHAPE changes the size", static_cast<int>(i));
            break;
          }
          memcpy(out.storage.data(), src.storage.data(), out.bytes);
          continue;
        }
        mc.phase = Phase::kEval;
        if (op.reg->invoke(&context, &op.node) != kTfLiteOk) {
          rc = Fail("op %d: Eval failed: %s", static_cast<int>(i), g_message);
        } else if (mc.misuse) {
          rc = Fail("op %d: %s", static_cast<int>(i), mc.misuse_what);
        } else if (!GuardIntact(out)) {
          rc = Fail("op %d: Eval wrote past its output tensor", static_cast<int>(i));
        }
        for (size_t b = 0; rc == 0 && b < mc.scratch.size(); ++b) {
          for (size_t j = mc.scratch_sizes[b]; j < mc.scratch[b].size(); ++j) {
            if (mc.scratch[b][j] != kGuardByte) {
              rc = Fail("op %d: Eval wrote past scratch buffer %d (%u bytes requested)", static_cast<int>(i),
                        static_cast<int>(b), static_cast<unsigned>(mc.scratch_sizes[b]));
              break;
            }
          }
        }
      }
      for (int k = 0; rc == 0 && k < graph_out.size; ++k) {
        const Tensor& t = mc.tensors[graph_out.data[k]];
        memcpy(outputs, t.storage.data(), t.bytes);
        outputs += t.bytes;
      }
    }
  }
  if (message != nullptr && message_len > 0) {
    snprintf(message, message_len, "%s", g_message);
  }
  return rc;
}

}  // extern "C"
