// The row-wise driver's entry: what the generated entry points of every softmax overload
// (family_rowwise_ops.cpp in the build folder, from aot/family_rowwise.py) call.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>

#include "rowwise_tables.h"
#include "runtime/fallback.h"

namespace gems::rowwise {

// One forward call: _softmax or _log_softmax (log), any overload.
struct Forward {
  bool log;
  const at::Tensor& self;
  int64_t dim;
  bool half_to_float;
};

// One backward call: _softmax_backward_data or _log_softmax_backward_data (log).
struct Backward {
  bool log;
  const at::Tensor& grad_output;
  const at::Tensor& output;
  int64_t dim;
  at::ScalarType input_dtype;
};

// The result in `result`, or why no gems kernel ran (result then undefined). Raises torch's
// errors for arguments torch rejects.
Fallback functional(const Forward& call, at::Tensor& result);
Fallback functional(const Backward& call, at::Tensor& result);
// Into out=, which is checked and resized as torch does first; or why no gems kernel ran.
Fallback into(const Forward& call, at::Tensor& out);
Fallback into(const Backward& call, at::Tensor& out);
// The error of a torch.ops.gems call for input no gems kernel covers.
[[noreturn]] void unsupported(const char* op, Fallback reason, const Forward& call);
[[noreturn]] void unsupported(const char* op, Fallback reason, const Backward& call);

}  // namespace gems::rowwise

// -- normalisation over the trailing dims (the norm_* grids): LayerNorm and RMSNorm -----------
namespace gems::norm {

// An absent optional tensor (RMSNorm's bias) and an undefined one (RMSNorm's mean).
extern const std::optional<at::Tensor> kAbsent;
extern const at::Tensor kUndefined;

// One forward call: native_layer_norm (rms false), _fused_rms_norm or gems::rms_norm.
struct Forward {
  bool rms;
  const at::Tensor& input;
  at::IntArrayRef normalized_shape;
  const std::optional<at::Tensor>& weight;
  const std::optional<at::Tensor>& bias;
  std::optional<double> eps;  // LayerNorm's is always given; RMSNorm's defaults to fp32's epsilon
  bool stats;  // also return the mean (LayerNorm) and rstd
  bool composite_checks;  // torch.rms_norm's input checks (gems::rms_norm) instead of the kernel's
};

// One backward call: native_layer_norm_backward or _fused_rms_norm_backward.
struct Backward {
  bool rms;
  const at::Tensor& grad_out;
  const at::Tensor& input;
  at::IntArrayRef normalized_shape;
  const at::Tensor& mean;  // undefined for RMSNorm
  const at::Tensor& rstd;
  const std::optional<at::Tensor>& weight;
  const std::optional<at::Tensor>& bias;
  std::array<bool, 3> mask;  // grad_input, grad_weight, grad_bias
};

// forward: y, mean, rstd (mean undefined for RMSNorm, both without stats); backward: grad_input,
// grad_weight, grad_bias (undefined where the mask is off).
struct Results {
  at::Tensor a, b, c;
};

// The results, or why no gems kernel ran (nothing allocated then). Raises torch's errors for
// arguments torch rejects.
Fallback forward(const Forward& call, Results& out);
Fallback backward(const Backward& call, Results& out);
// Whether the shapes are ones torch accepts (normalized_shape non-empty, the input's trailing
// sizes, the weight's and bias's sizes); the aten overrides send others to ATen's kernel, which
// raises its own error.
bool valid(const Forward& call);
bool valid(const Backward& call);
[[noreturn]] void unsupported(const char* op, Fallback reason, const Forward& call);
[[noreturn]] void unsupported(const char* op, Fallback reason, const Backward& call);

}  // namespace gems::norm
