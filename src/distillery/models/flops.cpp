#include "distillery/models/flops.h"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <cstring>

namespace distillery {

namespace {

// What the callbacks on the counting thread add to. Thread-local so that ops run by intra-op
// worker threads (inside an already counted op) are never counted a second time.
struct FlopState {
  int64_t macs = 0;
  int depth = 0;  // counted ops currently open: only the outermost one is counted
};
thread_local FlopState* active_state = nullptr;

enum class CountedOp {
  None, Convolution, Linear, Matmul, MatrixMatrix, BatchMatrix, MatrixVector, Dot
};

CountedOp classify(const char* name) {
  struct Entry {
    const char* name;
    CountedOp op;
  };
  static const Entry kEntries[] = {
      {"aten::convolution", CountedOp::Convolution}, {"aten::_convolution", CountedOp::Convolution},
      {"aten::linear", CountedOp::Linear},           {"aten::matmul", CountedOp::Matmul},
      {"aten::mm", CountedOp::MatrixMatrix},         {"aten::addmm", CountedOp::MatrixMatrix},
      {"aten::bmm", CountedOp::BatchMatrix},         {"aten::baddbmm", CountedOp::BatchMatrix},
      {"aten::addbmm", CountedOp::BatchMatrix},      {"aten::mv", CountedOp::MatrixVector},
      {"aten::addmv", CountedOp::MatrixVector},      {"aten::dot", CountedOp::Dot}};
  if (name == nullptr) return CountedOp::None;
  for (const auto& entry : kEntries)
    if (std::strcmp(name, entry.name) == 0) return entry.op;
  return CountedOp::None;
}

struct OpContext : public at::ObserverContext {
  CountedOp op = CountedOp::None;
  bool outermost = false;
};

const torch::Tensor* tensor_input(const at::RecordFunction& fn, size_t index) {
  auto inputs = fn.inputs();
  if (index >= inputs.size() || !inputs[index].isTensor()) return nullptr;
  return &inputs[index].toTensor();
}

// Multiply-accumulates of one op, from its inputs (and its output where broadcasting or
// padding arithmetic would otherwise have to be redone).
int64_t op_macs(CountedOp op, const at::RecordFunction& fn) {
  // addmm / addmv / baddbmm / addbmm take the added tensor first.
  const std::string name = fn.name();
  const size_t first = (name == "aten::addmm" || name == "aten::addmv" ||
                        name == "aten::baddbmm" || name == "aten::addbmm")
                           ? 1
                           : 0;
  const auto* a = tensor_input(fn, first);
  const auto* b = tensor_input(fn, first + 1);
  if (a == nullptr || b == nullptr) return 0;
  switch (op) {
    case CountedOp::Convolution: {
      // Each output element of a convolution costs weight.numel() / out_channels MACs; each
      // input element of a transposed one costs weight.numel() / in_channels.
      const auto inputs = fn.inputs();
      const bool transposed = inputs.size() > 6 && inputs[6].isBool() && inputs[6].toBool();
      const auto& outputs = fn.outputs();
      if (!transposed && (outputs.empty() || !outputs[0].isTensor())) return 0;
      const auto& spread = transposed ? *a : outputs[0].toTensor();
      return spread.numel() / b->size(0) * b->numel();
    }
    case CountedOp::Linear:  // weight [out, in]
      return a->numel() * b->size(0);
    case CountedOp::Matmul: {
      const auto& outputs = fn.outputs();
      if (outputs.empty() || !outputs[0].isTensor()) return 0;
      return outputs[0].toTensor().numel() * a->size(-1);
    }
    case CountedOp::MatrixMatrix:  // [n, k] x [k, m]
    case CountedOp::BatchMatrix:   // [b, n, k] x [b, k, m]
      return a->numel() * b->size(-1);
    case CountedOp::MatrixVector:  // [n, k] x [k]
    case CountedOp::Dot:
      return a->numel();
    case CountedOp::None:
      break;
  }
  return 0;
}

std::unique_ptr<at::ObserverContext> on_op_start(const at::RecordFunction& fn) {
  if (active_state == nullptr) return nullptr;
  const CountedOp op = classify(fn.name());
  if (op == CountedOp::None) return nullptr;
  auto context = std::make_unique<OpContext>();
  context->op = op;
  context->outermost = active_state->depth == 0;
  ++active_state->depth;
  return context;
}

void on_op_end(const at::RecordFunction& fn, at::ObserverContext* raw_context) {
  auto* context = static_cast<OpContext*>(raw_context);
  if (active_state == nullptr || context == nullptr) return;
  --active_state->depth;
  if (context->outermost) active_state->macs += op_macs(context->op, fn);
}

// Installs the callbacks for its lifetime, also when the forward pass throws.
class CountingScope {
 public:
  explicit CountingScope(FlopState& state) {
    active_state = &state;
    handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(on_op_start, on_op_end)
                                             .needsInputs(true)
                                             .needsOutputs(true)
                                             .scopes({at::RecordScope::FUNCTION}));
  }
  ~CountingScope() {
    at::removeCallback(handle_);
    active_state = nullptr;
  }
  CountingScope(const CountingScope&) = delete;
  CountingScope& operator=(const CountingScope&) = delete;

 private:
  at::CallbackHandle handle_;
};

}  // namespace

int64_t count_flops_of(const std::function<void()>& run) {
  FlopState state;
  {
    at::RecordFunctionGuard enabled(true);
    CountingScope scope(state);
    run();
  }
  return 2 * state.macs;
}

int64_t count_forward_flops(ModelImpl& model, std::vector<int64_t> input_shape) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  torch::Device device = torch::kCPU;
  for (const auto& p : model.parameters()) {
    device = p.device();
    break;
  }
  auto images = torch::zeros(input_shape, torch::TensorOptions().device(device));
  int64_t flops = 0;
  try {
    flops = count_flops_of([&] { model.forward(images); });
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  return flops;
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters(/*recurse=*/true)) total += p.numel();
  return total;
}

}  // namespace distillery
