// Fused activation family: silu_and_mul, gelu_and_mul and their backward ops (gems ops only,
// with autograd registered in fused.cpp). Declarations: aot/family_fused.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

namespace gems {

namespace cuda {
at::Tensor silu_and_mul(const at::Tensor& x);
at::Tensor gelu_and_mul(const at::Tensor& x, c10::string_view approximate);
at::Tensor silu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x);
at::Tensor gelu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view approximate);
}  // namespace cuda

namespace meta {
at::Tensor silu_and_mul(const at::Tensor& x);
at::Tensor gelu_and_mul(const at::Tensor& x, c10::string_view approximate);
at::Tensor silu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x);
at::Tensor gelu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view approximate);
}  // namespace meta

}  // namespace gems
