// Pointwise driver: broadcasting, type promotion, output allocation, in-place and out= through
// ATen's TensorIterator (so every rule is torch's own), then one launch of the matching
// variant. Two dense CUDA tensors of one dtype and shape skip TensorIterator altogether.
#include "ops/pointwise.h"

#include <ATen/ScalarOps.h>
#include <ATen/TensorIterator.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/BinaryOps.h>
#include <ATen/ops/add_cuda_dispatch.h>
#include <ATen/ops/div_cuda_dispatch.h>
#include <ATen/ops/mul_cuda_dispatch.h>
#include <ATen/ops/relu_cuda_dispatch.h>
#include <ATen/ops/sub_cuda_dispatch.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>
#include <sstream>

#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace bin = gen::binary;
namespace un = gen::unary;

constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();
constexpr int kStridedDims = 4;


// A scalar in the kernel's opmath type (fp32 for floating dtypes, the int type otherwise).
struct OpmathScalar {
  float f = 0;
  int64_t i = 0;
};

bool is_float(c10::ScalarType t) { return c10::isFloatingType(t); }

OpmathScalar opmath(const c10::Scalar& s, bool floating) {
  OpmathScalar v;
  if (floating) {
    v.f = s.to<float>();
  } else {
    v.i = s.to<int64_t>();
  }
  return v;
}

OpmathScalar opmath(at::TensorIteratorBase& iter, int arg, bool floating) {
  OpmathScalar v;
  if (floating) {
    v.f = iter.original_scalar_value<float>(arg);
  } else {
    v.i = iter.original_scalar_value<int64_t>(arg);
  }
  return v;
}

void push(KernelArgs& args, c10::ScalarType t, OpmathScalar s) {
  if (is_float(t)) {
    args.f32(s.f);
  } else if (t == c10::ScalarType::Int) {
    args.i32(static_cast<int32_t>(s.i));
  } else {
    args.i64(s.i);
  }
}

uint32_t blocks(int64_t n, const LoadedKernel& k, int param) {
  const int64_t block = k.image->params[param];
  return static_cast<uint32_t>((n + block - 1) / block);
}

// Collapsed iteration shape and element strides, fastest dim last, padded to kStridedDims.
struct StridedShape {
  int64_t size[kStridedDims];
  int64_t stride[3][kStridedDims];  // per operand
};

Fallback strided_shape(at::TensorIteratorBase& iter, int num_operands, StridedShape& s) {
  const int ndim = static_cast<int>(iter.ndim());
  if (ndim > kStridedDims) return Fallback::kRank;
  if (!iter.can_use_32bit_indexing()) return Fallback::kIndex64;
  for (int d = 0; d < kStridedDims; ++d) {
    const int it = kStridedDims - 1 - d;  // TensorIterator's dim 0 is the fastest
    s.size[d] = it < ndim ? iter.shape()[it] : 1;
    for (int k = 0; k < num_operands; ++k) {
      s.stride[k][d] = it < ndim ? iter.strides(k)[it] / static_cast<int64_t>(iter.element_size(k)) : 0;
    }
  }
  return Fallback::kNone;
}

// All operands but CPU scalars are dense in iteration order: the 1-D path applies.
bool dense_1d(at::TensorIteratorBase& iter) {
  if (iter.ndim() == 0) return true;
  if (iter.ndim() != 1) return false;
  for (int k = 0; k < iter.ntensors(); ++k) {
    if (!iter.is_cpu_scalar(k) && iter.strides(k)[0] != static_cast<int64_t>(iter.element_size(k))) return false;
  }
  return true;
}

std::string describe(const at::Tensor& a, const at::Tensor& b) {
  std::ostringstream s;
  s << a.scalar_type() << a.sizes() << " on " << a.device();
  if (b.defined()) s << ", " << b.scalar_type() << b.sizes() << " on " << b.device();
  return s.str();
}

// ---- binary ---------------------------------------------------------------------------------

const char* const kBinaryNames[] = {"add", "sub", "mul", "div"};

Fallback launch_binary_1d(int op, c10::ScalarType t, int form, const void* x, const void* y, void* out, int64_t n,
                          OpmathScalar xs, OpmathScalar ys, OpmathScalar alpha, c10::DeviceIndex device) {
  if (op == bin::op_div && form == bin::form_ts) {
    // ATen divides by a scalar as a multiplication by its reciprocal, computed in opmath.
    op = bin::op_mul;
    ys.f = 1.0f / ys.f;
  }
  const bool aligned = aligned16(x) && aligned16(y) && aligned16(out);
  const int index = n > kMaxI32 ? bin::index_i64 : bin::index_i32;
  const int id = bin::find(op, bin::dtype_of(t), form, aligned ? bin::layout_aligned : bin::layout_contig, index);
  if (id < 0) return n > kMaxI32 ? Fallback::kIndex64 : Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  KernelArgs args;
  args.ptr(x);
  args.ptr(y);
  args.ptr(out);
  if (index == bin::index_i64) {
    args.i64(n);
  } else {
    args.i32(static_cast<int32_t>(n));
  }
  push(args, t, xs);
  push(args, t, ys);
  push(args, t, alpha);
  launch(*k, device, blocks(n, *k, bin::kParam_BLOCK), 1, 1, args);
  return Fallback::kNone;
}

Fallback run_binary(int op, at::TensorIteratorBase& iter, const c10::Scalar& alpha) {
  const c10::ScalarType t = iter.common_dtype();
  if (!iter.device().is_cuda()) return Fallback::kDevice;
  if (bin::dtype_of(t) < 0) return Fallback::kDtype;
  const bool x_scalar = iter.is_cpu_scalar(1), y_scalar = iter.is_cpu_scalar(2);
  if (iter.dtype(0) != t || (!x_scalar && iter.dtype(1) != t) || (!y_scalar && iter.dtype(2) != t)) {
    return Fallback::kMixedDtype;
  }
  if (bin::find(op, bin::dtype_of(t), bin::form_tt, bin::layout_contig, bin::index_i32) < 0) return Fallback::kDtype;
  const int64_t n = iter.numel();
  if (n == 0) return Fallback::kNone;
  const bool floating = is_float(t);
  const int form = x_scalar ? bin::form_st : (y_scalar ? bin::form_ts : bin::form_tt);
  OpmathScalar xs, ys;
  if (x_scalar) xs = opmath(iter, 1, floating);
  if (y_scalar) ys = opmath(iter, 2, floating);
  const OpmathScalar a = opmath(alpha, floating);
  const c10::DeviceIndex device = iter.device().index();
  c10::cuda::CUDAGuard guard(device);
  const void* x = x_scalar ? nullptr : iter.data_ptr(1);
  const void* y = y_scalar ? nullptr : iter.data_ptr(2);
  if (dense_1d(iter)) return launch_binary_1d(op, t, form, x, y, iter.data_ptr(0), n, xs, ys, a, device);

  StridedShape s;
  if (Fallback r = strided_shape(iter, 3, s); r != Fallback::kNone) return r;
  const int id = bin::find(op, bin::dtype_of(t), form, bin::layout_strided, bin::index_i32);
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  KernelArgs args;
  args.ptr(x);
  args.ptr(y);
  args.ptr(iter.data_ptr(0));
  args.i32(static_cast<int32_t>(n));
  push(args, t, xs);
  push(args, t, ys);
  push(args, t, a);
  for (int d = 1; d < kStridedDims; ++d) args.i32(static_cast<int32_t>(s.size[d]));
  for (int operand : {1, 2, 0}) {
    for (int d = 0; d < kStridedDims; ++d) args.i32(static_cast<int32_t>(s.stride[operand][d]));
  }
  launch(*k, device, blocks(n, *k, bin::kParam_BLOCK), 1, 1, args);
  return Fallback::kNone;
}

// Two dense CUDA tensors of one dtype and shape: torch's result is a dense tensor of that
// shape, so allocate it directly and skip TensorIterator (the common case, and the hot one).
bool try_fast_binary(int op, const at::Tensor& a, const at::Tensor& b, const c10::Scalar& alpha, at::Tensor& out) {
  if (!a.is_cuda() || !b.is_cuda()) return false;
  const c10::ScalarType t = a.scalar_type();
  if (b.scalar_type() != t || a.device() != b.device() || !a.sizes().equals(b.sizes()) || !a.is_contiguous() ||
      !b.is_contiguous() || a.numel() == 0) {
    return false;
  }
  const int dtype = bin::dtype_of(t);
  if (dtype < 0 || bin::find(op, dtype, bin::form_tt, bin::layout_contig, bin::index_i32) < 0) return false;
  const bool floating = is_float(t);
  if (op == bin::op_add || op == bin::op_sub) at::native::alpha_check(t, alpha);
  const c10::DeviceIndex device = a.device().index();
  c10::cuda::CUDAGuard guard(device);
  out = at::detail::empty_cuda(a.sizes(), t, a.device(), std::nullopt);
  return launch_binary_1d(op, t, bin::form_tt, a.const_data_ptr(), b.const_data_ptr(), out.mutable_data_ptr(),
                          a.numel(), {}, {}, opmath(alpha, floating), device) == Fallback::kNone;
}

// TensorIterator with torch's rules for the op: true division promotes integers to float.
at::TensorIterator binary_iter(int op, at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                               const c10::Scalar& alpha) {
  if (op == bin::op_sub) at::native::sub_check(a, b);
  at::TensorIterator iter = op == bin::op_div ? at::TensorIterator::binary_float_op(out, a, b)
                                              : at::TensorIterator::binary_op(out, a, b);
  if (op == bin::op_add || op == bin::op_sub) at::native::alpha_check(iter.common_dtype(), alpha);
  return iter;
}

at::Tensor binary(int op, const at::Tensor& a, const at::Tensor& b, const c10::Scalar& alpha, FallbackCounter* counter,
                  at::Tensor (*aten)(const at::Tensor&, const at::Tensor&, const c10::Scalar&)) {
  at::Tensor out;
  if (try_fast_binary(op, a, b, alpha, out)) return out;
  out = at::Tensor();
  at::TensorIterator iter = binary_iter(op, out, a, b, alpha);
  const Fallback r = run_binary(op, iter, alpha);
  if (r == Fallback::kNone) return iter.output();
  if (!counter) unsupported((std::string("gems::") + kBinaryNames[op]).c_str(), r, describe(a, b));
  counter->hit(r);
  return aten(a, b, alpha);
}

at::Tensor& binary_into(int op, const at::Tensor& a, const at::Tensor& b, const c10::Scalar& alpha, at::Tensor& out,
                        FallbackCounter& counter) {
  at::TensorIterator iter = binary_iter(op, out, a, b, alpha);
  const Fallback r = run_binary(op, iter, alpha);
  if (r != Fallback::kNone) {
    counter.hit(r);
    switch (op) {
      case bin::op_add: return at::cuda::add_out(out, a, b, alpha);
      case bin::op_sub: return at::cuda::sub_out(out, a, b, alpha);
      case bin::op_mul: return at::cuda::mul_out(out, a, b);
      default: return at::cuda::div_out(out, a, b);
    }
  }
  return out;
}

at::Tensor meta_binary(int op, const at::Tensor& a, const at::Tensor& b, const c10::Scalar& alpha) {
  at::Tensor out;
  return binary_iter(op, out, a, b, alpha).output();
}

at::Tensor wrapped(const c10::Scalar& s) { return at::native::wrapped_scalar_tensor(s); }

at::Tensor aten_mul(const at::Tensor& a, const at::Tensor& b, const c10::Scalar&) { return at::cuda::mul(a, b); }
at::Tensor aten_div(const at::Tensor& a, const at::Tensor& b, const c10::Scalar&) { return at::cuda::div(a, b); }

// ---- unary ----------------------------------------------------------------------------------

Fallback launch_unary_1d(int op, c10::ScalarType t, const void* x, void* out, int64_t n, c10::DeviceIndex device) {
  const bool aligned = aligned16(x) && aligned16(out);
  const int index = n > kMaxI32 ? un::index_i64 : un::index_i32;
  const int id = un::find(op, un::dtype_of(t), aligned ? un::layout_aligned : un::layout_contig, index);
  if (id < 0) return n > kMaxI32 ? Fallback::kIndex64 : Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  KernelArgs args;
  args.ptr(x);
  args.ptr(out);
  if (index == un::index_i64) {
    args.i64(n);
  } else {
    args.i32(static_cast<int32_t>(n));
  }
  launch(*k, device, blocks(n, *k, un::kParam_BLOCK), 1, 1, args);
  return Fallback::kNone;
}

Fallback run_unary(int op, at::TensorIteratorBase& iter) {
  const c10::ScalarType t = iter.common_dtype();
  if (!iter.device().is_cuda()) return Fallback::kDevice;
  if (un::dtype_of(t) < 0) return Fallback::kDtype;
  if (iter.dtype(0) != t || iter.dtype(1) != t) return Fallback::kMixedDtype;
  const int64_t n = iter.numel();
  if (n == 0) return Fallback::kNone;
  const c10::DeviceIndex device = iter.device().index();
  c10::cuda::CUDAGuard guard(device);
  if (dense_1d(iter)) return launch_unary_1d(op, t, iter.data_ptr(1), iter.data_ptr(0), n, device);
  StridedShape s;
  if (Fallback r = strided_shape(iter, 2, s); r != Fallback::kNone) return r;
  const int id = un::find(op, un::dtype_of(t), un::layout_strided, un::index_i32);
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  KernelArgs args;
  args.ptr(iter.data_ptr(1));
  args.ptr(iter.data_ptr(0));
  args.i32(static_cast<int32_t>(n));
  for (int d = 1; d < kStridedDims; ++d) args.i32(static_cast<int32_t>(s.size[d]));
  for (int operand : {1, 0}) {
    for (int d = 0; d < kStridedDims; ++d) args.i32(static_cast<int32_t>(s.stride[operand][d]));
  }
  launch(*k, device, blocks(n, *k, un::kParam_BLOCK), 1, 1, args);
  return Fallback::kNone;
}

bool try_fast_unary(int op, const at::Tensor& a, at::Tensor& out) {
  if (!a.is_cuda() || !a.is_contiguous() || a.numel() == 0 || un::dtype_of(a.scalar_type()) < 0) {
    return false;
  }
  const c10::DeviceIndex device = a.device().index();
  c10::cuda::CUDAGuard guard(device);
  out = at::detail::empty_cuda(a.sizes(), a.scalar_type(), a.device(), std::nullopt);
  return launch_unary_1d(op, a.scalar_type(), a.const_data_ptr(), out.mutable_data_ptr(), a.numel(), device) ==
         Fallback::kNone;
}

}  // namespace

// ---- torch.ops.gems.* -----------------------------------------------------------------------

namespace cuda {
at::Tensor add_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  return binary(bin::op_add, self, other, alpha, nullptr, nullptr);
}
at::Tensor add_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha) {
  return binary(bin::op_add, self, wrapped(other), alpha, nullptr, nullptr);
}
at::Tensor sub_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  return binary(bin::op_sub, self, other, alpha, nullptr, nullptr);
}
at::Tensor sub_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha) {
  return binary(bin::op_sub, self, wrapped(other), alpha, nullptr, nullptr);
}
at::Tensor mul_Tensor(const at::Tensor& self, const at::Tensor& other) {
  return binary(bin::op_mul, self, other, 1, nullptr, nullptr);
}
at::Tensor mul_Scalar(const at::Tensor& self, const at::Scalar& other) {
  return binary(bin::op_mul, self, wrapped(other), 1, nullptr, nullptr);
}
at::Tensor div_Tensor(const at::Tensor& self, const at::Tensor& other) {
  return binary(bin::op_div, self, other, 1, nullptr, nullptr);
}
at::Tensor div_Scalar(const at::Tensor& self, const at::Scalar& other) {
  return binary(bin::op_div, self, wrapped(other), 1, nullptr, nullptr);
}
at::Tensor relu(const at::Tensor& self) {
  at::Tensor out;
  if (try_fast_unary(un::op_relu, self, out)) return out;
  out = at::Tensor();
  at::TensorIterator iter = at::TensorIterator::unary_op(out, self);
  const Fallback r = run_unary(un::op_relu, iter);
  if (r != Fallback::kNone) unsupported("gems::relu", r, describe(self, at::Tensor()));
  return iter.output();
}
}  // namespace cuda

namespace meta {
at::Tensor add_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  return meta_binary(bin::op_add, self, other, alpha);
}
at::Tensor add_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha) {
  return meta_binary(bin::op_add, self, wrapped(other), alpha);
}
at::Tensor sub_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  return meta_binary(bin::op_sub, self, other, alpha);
}
at::Tensor sub_Scalar(const at::Tensor& self, const at::Scalar& other, const at::Scalar& alpha) {
  return meta_binary(bin::op_sub, self, wrapped(other), alpha);
}
at::Tensor mul_Tensor(const at::Tensor& self, const at::Tensor& other) {
  return meta_binary(bin::op_mul, self, other, 1);
}
at::Tensor mul_Scalar(const at::Tensor& self, const at::Scalar& other) {
  return meta_binary(bin::op_mul, self, wrapped(other), 1);
}
at::Tensor div_Tensor(const at::Tensor& self, const at::Tensor& other) {
  return meta_binary(bin::op_div, self, other, 1);
}
at::Tensor div_Scalar(const at::Tensor& self, const at::Scalar& other) {
  return meta_binary(bin::op_div, self, wrapped(other), 1);
}
at::Tensor relu(const at::Tensor& self) {
  at::Tensor out;
  return at::TensorIterator::unary_op(out, self).output();
}
}  // namespace meta

// ---- aten overrides -------------------------------------------------------------------------

namespace aten_impl {
at::Tensor add_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("add.Tensor");
  return binary(bin::op_add, self, other, alpha, &counter, &at::cuda::add);
}
at::Tensor& add__Tensor(at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("add_.Tensor");
  return binary_into(bin::op_add, self, other, alpha, self, counter);
}
at::Tensor& add_out(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("add.out");
  return binary_into(bin::op_add, self, other, alpha, out, counter);
}
at::Tensor sub_Tensor(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("sub.Tensor");
  return binary(bin::op_sub, self, other, alpha, &counter, &at::cuda::sub);
}
at::Tensor& sub__Tensor(at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("sub_.Tensor");
  return binary_into(bin::op_sub, self, other, alpha, self, counter);
}
at::Tensor& sub_out(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("sub.out");
  return binary_into(bin::op_sub, self, other, alpha, out, counter);
}
at::Tensor mul_Tensor(const at::Tensor& self, const at::Tensor& other) {
  static FallbackCounter& counter = fallback_counter("mul.Tensor");
  return binary(bin::op_mul, self, other, 1, &counter, &aten_mul);
}
at::Tensor& mul__Tensor(at::Tensor& self, const at::Tensor& other) {
  static FallbackCounter& counter = fallback_counter("mul_.Tensor");
  return binary_into(bin::op_mul, self, other, 1, self, counter);
}
at::Tensor& mul_out(const at::Tensor& self, const at::Tensor& other, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("mul.out");
  return binary_into(bin::op_mul, self, other, 1, out, counter);
}
at::Tensor div_Tensor(const at::Tensor& self, const at::Tensor& other) {
  static FallbackCounter& counter = fallback_counter("div.Tensor");
  return binary(bin::op_div, self, other, 1, &counter, &aten_div);
}
at::Tensor& div__Tensor(at::Tensor& self, const at::Tensor& other) {
  static FallbackCounter& counter = fallback_counter("div_.Tensor");
  return binary_into(bin::op_div, self, other, 1, self, counter);
}
at::Tensor& div_out(const at::Tensor& self, const at::Tensor& other, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("div.out");
  return binary_into(bin::op_div, self, other, 1, out, counter);
}
at::Tensor relu(const at::Tensor& self) {
  static FallbackCounter& counter = fallback_counter("relu");
  at::Tensor out;
  if (try_fast_unary(un::op_relu, self, out)) return out;
  out = at::Tensor();
  at::TensorIterator iter = at::TensorIterator::unary_op(out, self);
  const Fallback r = run_unary(un::op_relu, iter);
  if (r == Fallback::kNone) return iter.output();
  counter.hit(r);
  return at::cuda::relu(self);
}
at::Tensor& relu_(at::Tensor& self) {
  static FallbackCounter& counter = fallback_counter("relu_");
  at::TensorIterator iter = at::TensorIterator::unary_op(self, self);
  const Fallback r = run_unary(un::op_relu, iter);
  if (r == Fallback::kNone) return self;
  counter.hit(r);
  return at::cuda::relu_(self);
}
}  // namespace aten_impl

}  // namespace gems
