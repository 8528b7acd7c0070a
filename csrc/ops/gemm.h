// Gemm family: mm, addmm. Declarations: aot/family_gemm.py.
#pragma once

#include <ATen/core/Tensor.h>

namespace gems {

namespace cuda {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2);
at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                 const c10::Scalar& alpha);
}  // namespace cuda

namespace meta {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2);
at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                 const c10::Scalar& alpha);
}  // namespace meta

// Whether the aten overrides follow the tuning table's routing of buckets to ATen (on by
// default); returns the previous setting. Off, they run gems' kernel wherever it can.
bool set_gemm_routing(bool on);

namespace aten_impl {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2);
at::Tensor& mm_out(const at::Tensor& self, const at::Tensor& mat2, at::Tensor& out);
at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                 const c10::Scalar& alpha);
at::Tensor& addmm_out(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                      const c10::Scalar& alpha, at::Tensor& out);
}  // namespace aten_impl

}  // namespace gems
