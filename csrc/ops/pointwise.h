// Pointwise family: add, sub, mul, div and relu. Declarations: aot/family_pointwise.py.
#pragma once

#include <ATen/core/Tensor.h>

namespace gems {

namespace cuda {
at::Tensor add_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor add_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha);
at::Tensor sub_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor sub_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha);
at::Tensor mul_Tensor(const at::Tensor& self, const at::Tensor& other);
at::Tensor mul_Scalar(const at::Tensor& self, const at::Scalar& other);
at::Tensor div_Tensor(const at::Tensor& self, const at::Tensor& other);
at::Tensor div_Scalar(const at::Tensor& self, const at::Scalar& other);
at::Tensor relu(const at::Tensor& self);
}  // namespace cuda

namespace meta {
at::Tensor add_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor add_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha);
at::Tensor sub_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor sub_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha);
at::Tensor mul_Tensor(const at::Tensor& self, const at::Tensor& other);
at::Tensor mul_Scalar(const at::Tensor& self, const at::Scalar& other);
at::Tensor div_Tensor(const at::Tensor& self, const at::Tensor& other);
at::Tensor div_Scalar(const at::Tensor& self, const at::Scalar& other);
at::Tensor relu(const at::Tensor& self);
}  // namespace meta

namespace aten_impl {
at::Tensor add_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor& add__Tensor(at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor& add_out(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha, at::Tensor& out);
at::Tensor sub_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor& sub__Tensor(at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha);
at::Tensor& sub_out(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha, at::Tensor& out);
at::Tensor mul_Tensor(const at::Tensor& self, const at::Tensor& other);
at::Tensor& mul__Tensor(at::Tensor& self, const at::Tensor& other);
at::Tensor& mul_out(const at::Tensor& self, const at::Tensor& other, at::Tensor& out);
at::Tensor div_Tensor(const at::Tensor& self, const at::Tensor& other);
at::Tensor& div__Tensor(at::Tensor& self, const at::Tensor& other);
at::Tensor& div_out(const at::Tensor& self, const at::Tensor& other, at::Tensor& out);
at::Tensor relu(const at::Tensor& self);
at::Tensor& relu_(at::Tensor& self);
}  // namespace aten_impl

}  // namespace gems
