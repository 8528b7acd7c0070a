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

// The result in `result` (and the mean in `mean` for a reduction declared with_mean), or why no
// gems kernel ran (results then undefined). Raises torch's errors for arguments torch rejects.
Fallback functional(const Call& call, at::Tensor& result, at::Tensor& mean);
// Into out=, which is checked and resized as torch does first; or why no gems kernel ran.
Fallback into(const Call& call, at::Tensor& out);
// The error of a torch.ops.gems call for input no gems kernel covers.
[[noreturn]] void unsupported(const char* op, Fallback reason, const Call& call);

}  // namespace gems::reduce
