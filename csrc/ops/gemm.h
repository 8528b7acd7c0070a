// Gemm family: mm. Declarations: aot/family_gemm.py.
#pragma once

#include <ATen/core/Tensor.h>

namespace gems {

namespace cuda {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2);
}  // namespace cuda

namespace meta {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2);
}  // namespace meta

namespace aten_impl {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2);
at::Tensor& mm_out(const at::Tensor& self, const at::Tensor& mat2, at::Tensor& out);
}  // namespace aten_impl

}  // namespace gems
