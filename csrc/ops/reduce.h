// The reduce driver's entry: what the generated entry points of every reduction overload
// (family_reduce_ops.cpp in the build folder, from aot/family_reduce.py) call.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Scalar.h>
#include <c10/util/OptionalArrayRef.h>

#include <optional>

#include "reduce_tables.h"
#include "runtime/fallback.h"

namespace gems::reduce {

// One call of a reduction, whatever its overload: dim is std::nullopt for every dim, keepdim
// false and dtype and correction std::nullopt where the overload has none.
struct Call {
  reduce_tables::Reduction reduction;
  const at::Tensor& self;
  at::OptionalIntArrayRef dim;
  bool keepdim;
  std::optional<at::ScalarType> dtype;
  std::optional<at::Scalar> correction;
};

// What a reduction returns (aot/family_reduce.py Reduction.results): the value, the mean beside a
// variance, the index of an extreme (int64); those it does not return stay undefined.
struct Results {
  at::Tensor value, mean, index;
};
// The out= tensors of an overload by the result each receives; nullptr for a result it has none of.
struct Outs {
  at::Tensor* value = nullptr;
  at::Tensor* index = nullptr;
};

// The results, or why no gems kernel ran (results then undefined). Raises torch's errors for
// arguments torch rejects.
Fallback functional(const Call& call, Results& results);
// Into the out= tensors, which are checked and resized as torch does first; or why no gems kernel ran.
Fallback into(const Call& call, const Outs& outs);
// The error of a torch.ops.gems call for input no gems kernel covers.
[[noreturn]] void unsupported(const char* op, Fallback reason, const Call& call);

}  // namespace gems::reduce
