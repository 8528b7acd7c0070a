// The row-wise driver's entry: what the generated entry points of every softmax overload
// (family_rowwise_ops.cpp in the build folder, from aot/family_rowwise.py) call.
#pragma once

#include <ATen/core/Tensor.h>

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
// The result's shape, dtype and strides on the meta device.
at::Tensor meta(const Forward& call);
at::Tensor meta(const Backward& call);
// The error of a torch.ops.gems call for input no gems kernel covers.
[[noreturn]] void unsupported(const char* op, Fallback reason, const Forward& call);
[[noreturn]] void unsupported(const char* op, Fallback reason, const Backward& call);

}  // namespace gems::rowwise
