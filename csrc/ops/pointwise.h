// The one pointwise driver. Every pointwise op is declared in aot/family_pointwise.py; the
// generator (aot/pointwise/) emits an OpDesc per op and the aten / gems wrappers, which all
// call run() below. The gems ops' Meta functions are the aten ops' own (registered by gems_aot
// at load), so that they trace with symbolic shapes.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <initializer_list>
#include <string>

#include "runtime/fallback.h"

namespace gems::pointwise {

// ATen's TensorIterator builder whose promotion, output dtype and layout rules the op follows
// (names as in aot/pointwise.py BUILDERS).
enum class Builder {
  k_unary_op,
  k_unary_float_op,
  k_unary_bool_op,  // any input dtype, bool out (logical_not, isnan)
  k_binary_op,
  k_binary_float_op,
  k_comparison_op,
  k_ternary_op,  // TensorIteratorBase::build_ternary_op (addcmul, addcdiv)
  k_where_op,  // where.self: bool condition, self and other of the result type
  k_nullary_op,  // fill_: the output alone
  k_masked_fill_op,  // masked_fill_: self written where the (broadcast) bool mask is set
  k_copy_op,  // copy_: src broadcast to self and cast to its dtype (the op's result_dtype)
  k_threshold_op,  // threshold: ATen's config (self twice; the output may be a wider dtype)
  k_clamp_op,  // clamp.Tensor: ATen's config, and a CPU wrapped number for a missing bound
  k_frexp_op,  // frexp.Tensor_out: two results (mantissa, exponent), through run_results
};

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
  const c10::ScalarType* operand_dtypes;  // [arity]: a fixed dtype, or Undefined (the compute dtype)
  const OpDesc* scalar_divisor;  // tensor / Python scalar runs as this op with 1 / scalar
  bool alpha;  // params[0] is alpha (ATen's alpha_check)
  int num_results;  // outputs of the kernel (several: frexp)
  const c10::ScalarType* result_dtypes;  // [num_results]: a fixed dtype, or Undefined (the builder's rule)
};

// Whether `op` has kernels for these dtypes at all: every tensor operand (nullptr: a Python scalar
// or an absent optional) of the op's dtypes or of its fixed operand dtype, CPU 0-dim tensors aside,
// and a written tensor of a dtype gems knows. Overrides ask this first, so that any other dtype
// (complex, fp8, an integer for a float-only op) goes to ATen before a dtype-specific check or
// parameter is computed.
bool covers(const OpDesc& op, std::initializer_list<const at::Tensor*> operands, const at::Tensor& written);

// Runs `op`. `out` undefined: allocated as ATen would (functional); defined: written in place
// (in-place and out=, resized as ATen resizes). Returns the reason when no gems kernel ran.
Fallback run(const OpDesc& op, c10::ArrayRef<const at::Tensor*> operands, c10::ArrayRef<c10::Scalar> params,
             at::Tensor& out);

// Runs an op of several results into the given tensors (out= overloads; resized as ATen does).
Fallback run_results(const OpDesc& op, c10::ArrayRef<const at::Tensor*> operands, c10::ArrayRef<c10::Scalar> params,
                     c10::ArrayRef<at::Tensor*> results);

std::string describe(c10::ArrayRef<const at::Tensor*> operands);

// Raises ATen's error when `value` does not fit dtype `t` (as fill_ and masked_fill_ do).
void check_fits(const c10::Scalar& value, c10::ScalarType t);

// clamp's missing bound: -inf / +inf for floating types, the integer type's extremes otherwise
// (0 for dtypes clamp has no variant for).
c10::Scalar no_lower_bound(c10::ScalarType t);
c10::Scalar no_upper_bound(c10::ScalarType t);
// `value` as ATen's kernels take a parameter in dtype t (threshold: value.to<scalar_t>()).
c10::Scalar in_dtype(const c10::Scalar& value, c10::ScalarType t);
// copy_ without what ATen's copy_ handles before its kernel: zero tensors, negative views.
bool plain_copy(const at::Tensor& self, const at::Tensor& src);
// nan_to_num's defaults: the dtype's finite extremes.
c10::Scalar finite_min(c10::ScalarType t);
c10::Scalar finite_max(c10::ScalarType t);

}  // namespace gems::pointwise
