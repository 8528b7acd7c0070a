// bmm / baddbmm driver: torch's checks, every fallback decision, then the output as torch
// allocates (or resizes) it, then one launch of the batched kernels through the gemm core
// (gemm.h): C[b] = alpha * A[b] @ B[b] + beta * self[b]. The TMA kernel (bmm_tma) serves what it
// can describe, with baddbmm's self read in its epilogue through its strides as broadcast to
// [batch, M, N] (any form torch accepts: a full tensor, one matrix for every batch, a bias row,
// a scalar); the pointer kernel (bmm, batch = program_id(1)) serves bmm's other cases. An operand
// expanded over the batch (batch stride 0) runs either kernel. The tuning table is mm's, by
// (M, N, K): a batched problem takes the configuration (and the routing to ATen) of its matrices.
//
// Fallbacks (ATen through torch.bmm / torch.baddbmm, an error through torch.ops.gems.*):
//   kDevice      operands (or out=) not all on one CUDA device
//   kDtype       a dtype without variants (fp64, integers, complex)
//   kMixedDtype  operands or out= of different dtypes (ATen accepts some empty ones, raises otherwise)
//   kLayout      an operand matrix with no unit stride; an out= that is neither row- nor col-major,
//                overlaps itself or an input (baddbmm_ and an out= that is self itself are served)
//   kIndex64     a size or leading stride above int32, more than 65535 batches on the pointer
//                kernel, more than 2**31 - 1 work items
//   kArch        no image for this device
//   kTuned       the tuning table sends this (M, N, K) bucket to ATen
//   kArgs        baddbmm: a pointer-kernel case (exact fp32, operands TMA cannot describe, sm_80),
//                or K == 0 with beta != 0 (beta * self, which ATen computes)
#include "gems_gemm_ops.h"

#include <ATen/ops/baddbmm_cuda_dispatch.h>
#include <ATen/ops/bmm_cuda_dispatch.h>
#include <ATen/ops/empty.h>

#include <array>

#include "gems_kernels.h"
#include "ops/gemm.h"

namespace gems::gemm {
namespace {

// torch's bmm checks and messages (its structured meta function), in its order.
void check_bmm_inputs(const at::Tensor& batch1, const at::Tensor& batch2) {
  TORCH_CHECK(batch1.dim() == 3, "batch1 must be a 3D tensor");
  TORCH_CHECK(batch2.dim() == 3, "batch2 must be a 3D tensor");
  TORCH_CHECK(batch2.size(0) == batch1.size(0) && batch2.size(1) == batch1.size(2),
              "Expected size for first two dimensions of batch2 tensor to be: [", batch1.size(0), ", ",
              batch1.size(2), "] but got: [", batch2.size(0), ", ", batch2.size(1), "].");
}

// What torch raises for batch1 and batch2 of different dtypes (where it reads their data).
void check_same_dtype(const at::Tensor& batch1, const at::Tensor& batch2) {
  TORCH_CHECK(batch1.scalar_type() == batch2.scalar_type(), "expected scalar type ", batch1.scalar_type(),
              " but found ", batch2.scalar_type());
}

// Whether self broadcasts to shape as torch's expand allows.
bool broadcasts(const at::Tensor& self, at::IntArrayRef shape) {
  const int64_t d = self.dim(), n = static_cast<int64_t>(shape.size());
  if (d > n) return false;
  for (int64_t i = 0; i < d; ++i) {
    const int64_t size = self.size(i);
    if (size != 1 && size != shape[n - d + i]) return false;
  }
  return true;
}

// torch's baddbmm checks and messages (its structured meta function), in its order: self
// expanded to the result (expand's error; the sizes are read as torch reads them, with
// IndexError for a missing dim), its dtype, then bmm's checks.
std::array<int64_t, 3> check_baddbmm_inputs(const at::Tensor& self, const at::Tensor& batch1,
                                            const at::Tensor& batch2) {
  const std::array<int64_t, 3> shape{batch1.size(0), batch1.size(1), batch2.size(2)};
  if (!broadcasts(self, shape)) self.expand(shape);  // raises torch's error
  TORCH_CHECK(self.dtype() == batch1.dtype(), "Input dtypes must be the same, got: input ", self.dtype(),
              ", batch1: ", batch1.dtype(), ", batch2: ", batch2.dtype());
  check_bmm_inputs(batch1, batch2);
  return shape;
}

// self's strides as broadcast to [batch, M, N]: a missing or size-1 dim reads index 0.
std::array<int64_t, 3> broadcast_strides(const at::Tensor& self) {
  std::array<int64_t, 3> strides{0, 0, 0};
  const int64_t d = self.dim();
  for (int64_t i = 0; i < d; ++i) {
    if (self.size(i) != 1) strides[3 - d + i] = self.stride(i);
  }
  return strides;
}

// bmm (self null) or baddbmm, for the aten override or a gems:: call: out undefined allocates the
// result as torch does (contiguous [batch, M, N]); out defined is the .out overload, resized as
// torch resizes it, or with in_place baddbmm_'s self. Every fallback is decided before the output
// is allocated or resized.
Fallback run_bmm(bool aten_override, const at::Tensor& a, const at::Tensor& b, at::Tensor& out,
                 const at::Tensor* self = nullptr, const c10::Scalar& beta = 1, const c10::Scalar& alpha = 1,
                 bool in_place = false) {
  const bool given_out = out.defined();
  // torch checks devices first (ATen then raises its error), then the structured meta checks.
  if (!a.is_cuda() || b.device() != a.device() || (given_out && out.device() != a.device()) ||
      (self && self->device() != a.device())) {
    return Fallback::kDevice;
  }
  // Mixed dtypes are ATen's to accept (empty problems) or reject; a gems:: call gets torch's error.
  const bool mixed = b.scalar_type() != a.scalar_type() || (self && self->scalar_type() != a.scalar_type());
  if (mixed && aten_override) return Fallback::kMixedDtype;
  if (self) {
    const std::array<int64_t, 3> shape = check_baddbmm_inputs(*self, a, b);
    TORCH_CHECK(!in_place || self->sizes() == at::IntArrayRef(shape), "Bad in-place call: input tensor size ",
                self->sizes(), " and output tensor size ", at::IntArrayRef(shape), " should match");
  } else {
    check_bmm_inputs(a, b);
  }
  check_same_dtype(a, b);
  if (gen::bmm::dtype_of(a.scalar_type()) < 0) return Fallback::kDtype;
  if (given_out && out.scalar_type() != a.scalar_type()) return Fallback::kMixedDtype;

  const int64_t batch = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  const std::array<int64_t, 3> shape{batch, M, N};
  Problem p{matrix(a), matrix(b)};
  p.batch = batch;
  p.batched = true;
  if (self) {
    // K == 0 leaves beta * self, which ATen computes.
    if (K == 0 && beta.toComplexDouble() != 0.0) return Fallback::kArgs;
    const std::array<int64_t, 3> s = broadcast_strides(*self);
    p.epilogue = {Epilogue::kFull, self->const_data_ptr(), s[2], s[1], s[0], alpha.to<float>(), beta.to<float>()};
  }
  if (given_out) {
    // baddbmm_, or an out= that is self itself: the epilogue reads each element before it
    // writes it. Any other sharing gets ATen's semantics.
    const bool writes_self = self && out.is_same(*self) && out.sizes() == at::IntArrayRef(shape);
    if (overlaps(out, {&a, &b, writes_self ? nullptr : self})) return Fallback::kLayout;
  }
  return plan_and_launch(p, shape, a, aten_override, given_out, out);
}

}  // namespace
}  // namespace gems::gemm

namespace gems {
using gemm::run_bmm;

namespace cuda {
at::Tensor bmm(const at::Tensor& self, const at::Tensor& mat2) {
  at::Tensor out;
  const Fallback r = run_bmm(false, self, mat2, out);
  if (r != Fallback::kNone) unsupported("gems::bmm", r, {&self, &mat2});
  return out;
}

at::Tensor baddbmm(const at::Tensor& self, const at::Tensor& batch1, const at::Tensor& batch2,
                   const c10::Scalar& beta, const c10::Scalar& alpha) {
  at::Tensor out;
  const Fallback r = run_bmm(false, batch1, batch2, out, &self, beta, alpha);
  if (r != Fallback::kNone) unsupported("gems::baddbmm", r, {&self, &batch1, &batch2});
  return out;
}
}  // namespace cuda

namespace aten_impl {
at::Tensor bmm(const at::Tensor& self, const at::Tensor& mat2) {
  static FallbackCounter& counter = fallback_counter("bmm");
  at::Tensor out;
  const Fallback r = run_bmm(true, self, mat2, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::bmm(self, mat2);
}

at::Tensor& bmm_out(const at::Tensor& self, const at::Tensor& mat2, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("bmm.out");
  const Fallback r = run_bmm(true, self, mat2, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::bmm_out(out, self, mat2);
}

at::Tensor baddbmm(const at::Tensor& self, const at::Tensor& batch1, const at::Tensor& batch2,
                   const c10::Scalar& beta, const c10::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("baddbmm");
  at::Tensor out;
  const Fallback r = run_bmm(true, batch1, batch2, out, &self, beta, alpha);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::baddbmm(self, batch1, batch2, beta, alpha);
}

at::Tensor& baddbmm_out(const at::Tensor& self, const at::Tensor& batch1, const at::Tensor& batch2,
                        const c10::Scalar& beta, const c10::Scalar& alpha, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("baddbmm.out");
  const Fallback r = run_bmm(true, batch1, batch2, out, &self, beta, alpha);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::baddbmm_out(out, self, batch1, batch2, beta, alpha);
}

at::Tensor& baddbmm_(at::Tensor& self, const at::Tensor& batch1, const at::Tensor& batch2, const c10::Scalar& beta,
                     const c10::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("baddbmm_");
  const Fallback r = run_bmm(true, batch1, batch2, self, &self, beta, alpha, /*in_place=*/true);
  counter.hit(r);
  if (r == Fallback::kNone) return self;
  return at::cuda::baddbmm_(self, batch1, batch2, beta, alpha);
}
}  // namespace aten_impl

}  // namespace gems
