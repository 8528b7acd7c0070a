// The one pointwise driver. Every pointwise op is declared in aot/family_pointwise.py; the
// generator (aot/pointwise.py) emits an OpDesc per op and the aten / gems wrappers, which all
// call run() or meta() below.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <string>

#include "runtime/fallback.h"

namespace gems::pointwise {

// ATen's TensorIterator builder whose promotion, output dtype and layout rules the op follows
// (names as in aot/pointwise.py BUILDERS).
enum class Builder { k_unary_op, k_unary_float_op, k_binary_op, k_binary_float_op, k_comparison_op };

// The layout axis of every pointwise grid (aot/pointwise.py LAYOUTS).
enum Layout : int { kContig = 0, kContig64 = 1, kStrided3 = 2, kStrided8 = 3 };

struct OpDesc {
  const char* name;
  Builder builder;
  int arity;  // tensor operands
  int num_params;  // runtime scalars after the operands
  int (*dtype_of)(c10::ScalarType);  // dtype axis index, -1 if not compiled
  int (*find)(int dtype, int form, int layout);  // kernel id, -1 if not compiled
  const int* forms;  // [1 << arity]: the form axis index by scalar-operand bitmask, -1 if none
  const OpDesc* scalar_divisor;  // tensor / Python scalar runs as this op with 1 / scalar
  bool alpha;  // params[0] is alpha (ATen's alpha_check)
};

// Runs `op`. `out` undefined: allocated as ATen would (functional); defined: written in place
// (in-place and out=, resized as ATen resizes). Returns the reason when no gems kernel ran.
Fallback run(const OpDesc& op, c10::ArrayRef<const at::Tensor*> operands, c10::ArrayRef<c10::Scalar> params,
             at::Tensor& out);

// The output ATen would give (shape, dtype, strides), for Meta tensors.
void meta(const OpDesc& op, c10::ArrayRef<const at::Tensor*> operands, c10::ArrayRef<c10::Scalar> params,
          at::Tensor& out);

std::string describe(c10::ArrayRef<const at::Tensor*> operands);

}  // namespace gems::pointwise
