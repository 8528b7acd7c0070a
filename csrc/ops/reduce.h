// Reduce family: sum over all dims or a dim list (keepdim, dtype=, out=).
// Declarations: aot/family_reduce.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/OptionalArrayRef.h>

#include <optional>

namespace gems {

namespace cuda {
at::Tensor sum(const at::Tensor& self, std::optional<at::ScalarType> dtype);
at::Tensor sum_dim_IntList(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                           std::optional<at::ScalarType> dtype);
}  // namespace cuda

namespace meta {
at::Tensor sum(const at::Tensor& self, std::optional<at::ScalarType> dtype);
at::Tensor sum_dim_IntList(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                           std::optional<at::ScalarType> dtype);
}  // namespace meta

namespace aten_impl {
at::Tensor sum_dim_IntList(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                           std::optional<at::ScalarType> dtype);
at::Tensor& sum_IntList_out(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                            std::optional<at::ScalarType> dtype, at::Tensor& out);
}  // namespace aten_impl

}  // namespace gems
