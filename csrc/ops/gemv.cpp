// gemv driver: addmv (so mv, whose composite is addmv_ of a fresh vector with beta = 0), dot and
// vdot. torch's checks and messages in its order, every fallback decided before the output is
// allocated or resized, then gemv_kernel of kernels/gemv.py (and gemv_finish when K is split).
//
// Covered: fp32, fp16, bf16; A row-major or column-major with any leading stride (a matrix of
// one row runs as a dot, with any stride); x, y and self with any stride (0 included); M, K and
// strides within int32. vdot of real vectors is dot. Fallbacks (ATen through the aten overrides,
// an error through torch.ops.gems.*):
//   kDevice      operands (or out=) not all on one CUDA device
//   kDtype       fp64, integers, complex (vdot's conjugate, dot's conjugate views)
//   kMixedDtype  operands, an out= or an in-place self of different dtypes (ATen raises its error,
//                or accepts them where its release does)
//   kLayout      A with no unit stride (ATen copies it); an out= that overlaps itself, A or x,
//                or self unless it is self exactly or beta == 0; an out= to resize that shares
//                storage with an input
//   kIndex64     a size or a stride beyond int32
//   kArch        no image for this device
//   kArgs        an in-place self of another shape (ATen raises torch's error); a ZeroTensor
//                operand of dot (ATen returns a ZeroTensor)
#include "gems_gemv_ops.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/addmv_cuda_dispatch.h>
#include <ATen/ops/dot_cuda_dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/vdot_cuda_dispatch.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <climits>
#include <limits>
#include <string>

#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace g = gen::gemv;
namespace gf = gen::gemv_finish;

constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();
// M and K go to the kernels as int32, where a block's offsets run up to a chunk (at most 4096)
// past them.
constexpr int64_t kMaxDim = kMaxI32 - 8192;
// Split-K: a launch of fewer than kSplitBelow row blocks is split along K into about
// kTargetPrograms programs of at least kMinSplitChunks chunks each, in at most kMaxSplits splits
// (what gemv_finish's dot tile sums in one step). Fixed numbers rather than the device's SM
// count, so that a shape is summed in the same order on every GPU.
constexpr int64_t kSplitBelow = 256, kTargetPrograms = 1024, kMinSplitChunks = 2, kMaxSplits = 1024;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A stride that only ever multiplies index 0 (its dim has at most one element) may be anything:
// `any` is the value that keeps the aligned variant.
int64_t stride_or(int64_t size, int64_t stride, int64_t any) { return size <= 1 ? any : stride; }

// y = alpha * A @ x + beta * bias, as gemv_kernel takes it (kernels/gemv.py).
struct Gemv {
  int kind = g::kind_row;
  const void* a = nullptr;
  const void* x = nullptr;
  const void* bias = nullptr;
  int64_t M = 1, K = 0;
  int64_t stride_am = 0, stride_ak = 1, stride_x = 1, stride_y = 0, stride_bias = 0;
  float alpha = 1.0f, beta = 0.0f;
};

// The kernels and grid of a product, found before its output exists.
struct Launch {
  const LoadedKernel* kernel = nullptr;
  const LoadedKernel* finish = nullptr;  // split-K only
  bool aligned = false;
  int64_t row_blocks = 0, splits = 1, k_split = 0;
};

// The kernel kind for A (M x K): one row (a dot), row-major or column-major. False when neither
// dim is unit-stride.
bool set_matrix(Gemv& p, const at::Tensor& mat) {
  p.a = mat.const_data_ptr();
  p.M = mat.size(0);
  p.K = mat.size(1);
  const int64_t s0 = mat.stride(0), s1 = stride_or(p.K, mat.stride(1), 1);
  if (p.M == 1) {
    p.kind = g::kind_dot;
    p.stride_ak = s1;
  } else if (s1 == 1 && !(p.K == 1 && s0 == 1)) {  // a single unit-stride column reads better by columns
    p.kind = g::kind_row;
    p.stride_am = s0;
  } else if (s0 == 1) {
    p.kind = g::kind_col;
    p.stride_ak = stride_or(p.K, mat.stride(1), 0);
  } else {
    return false;
  }
  return true;
}

// The aligned variants' hints: unit-stride x, 16-byte aligned A and x, A's leading stride a
// multiple of 16 elements (a dot: unit-stride A).
bool aligned(const Gemv& p) {
  if (!aligned16(p.a) || !aligned16(p.x) || p.stride_x != 1) return false;
  switch (p.kind) {
    case g::kind_row: return p.stride_am % 16 == 0;
    case g::kind_col: return p.stride_ak % 16 == 0;
    default: return p.stride_ak == 1;
  }
}

// The kernel, and the split of K (kernels/gemv.py); p.M > 0.
Fallback plan(const Gemv& p, int dtype, c10::DeviceIndex device, Launch& l) {
  if (p.M > kMaxDim || p.K > kMaxDim) return Fallback::kIndex64;
  for (int64_t s : {p.stride_am, p.stride_ak, p.stride_x, p.stride_y, p.stride_bias}) {
    if (s > kMaxI32) return Fallback::kIndex64;
  }
  l.aligned = aligned(p);
  const int id = g::find(p.kind, dtype, l.aligned ? g::align_aligned : g::align_general);
  if (id < 0) return Fallback::kDtype;
  l.kernel = kernel_for(id, device);
  if (!l.kernel) return Fallback::kArch;
  const int64_t block_m = l.kernel->image->params[g::kParam_BLOCK_M];
  const int64_t block_k = l.kernel->image->params[g::kParam_BLOCK_K];
  l.row_blocks = ceil_div(p.M, block_m);
  const int64_t chunks = ceil_div(p.K, block_k);
  int64_t want = 1;
  if (l.row_blocks < kSplitBelow) {
    want = std::clamp(std::min(ceil_div(kTargetPrograms, l.row_blocks), chunks / kMinSplitChunks), int64_t{1},
                      kMaxSplits);
  }
  l.k_split = std::max(ceil_div(chunks, want), int64_t{1}) * block_k;
  l.splits = std::max(ceil_div(p.K, l.k_split), int64_t{1});
  if (l.splits > 1) {
    const int finish = gf::find(p.kind == g::kind_dot ? gf::kind_dot : gf::kind_gemv, dtype);
    l.finish = finish < 0 ? nullptr : kernel_for(finish, device);
    if (!l.finish) return Fallback::kArch;
  }
  return Fallback::kNone;
}

// Launches a planned product into y, on the current stream of `device` (a CUDAGuard holds it).
void run(const Gemv& p, const Launch& l, void* y, c10::DeviceIndex device) {
  const void* bias = p.bias ? p.bias : y;  // never read when beta == 0
  // The split partials, freed after the launches: the caching allocator hands the block out
  // again only to later work on this stream.
  c10::DataPtr workspace;
  if (l.splits > 1) {
    workspace = c10::cuda::CUDACachingAllocator::get()->allocate(l.splits * p.M * sizeof(float));
  }
  KernelArgs args;
  args.ptr(p.a);
  args.ptr(p.x);
  args.ptr(y);
  args.ptr(bias);
  args.ptr(workspace.get());
  args.i32(static_cast<int32_t>(p.M));
  args.i32(static_cast<int32_t>(p.K));
  // The variant's unit strides are constexprs (aot/family_gemv.py): pass the others, in order.
  if (p.kind == g::kind_row) args.i32(static_cast<int32_t>(p.stride_am));
  if (p.kind == g::kind_col || (p.kind == g::kind_dot && !l.aligned)) args.i32(static_cast<int32_t>(p.stride_ak));
  if (!l.aligned) args.i32(static_cast<int32_t>(p.stride_x));
  args.i32(static_cast<int32_t>(p.stride_y));
  args.i32(static_cast<int32_t>(p.stride_bias));
  args.i32(static_cast<int32_t>(l.k_split));
  args.f32(p.alpha);
  args.f32(p.beta);
  launch(*l.kernel, device, static_cast<uint32_t>(l.row_blocks), static_cast<uint32_t>(l.splits), 1, args);
  if (l.splits == 1) return;
  KernelArgs finish;
  finish.ptr(workspace.get());
  finish.ptr(y);
  finish.ptr(bias);
  finish.i32(static_cast<int32_t>(p.M));
  finish.i32(static_cast<int32_t>(l.splits));
  finish.i32(static_cast<int32_t>(p.stride_y));
  finish.i32(static_cast<int32_t>(p.stride_bias));
  finish.f32(p.alpha);
  finish.f32(p.beta);
  const int64_t block_m = l.finish->image->params[gf::kParam_BLOCK_M];
  launch(*l.finish, device, static_cast<uint32_t>(ceil_div(p.M, block_m)), 1, 1, finish);
}

// alpha and beta as ATen's gemv takes them: converted to the tensors' type (rounded, with
// Scalar's overflow error), then widened to fp32 for the kernel.
float scalar_as(const c10::Scalar& s, c10::ScalarType type) {
  switch (type) {
    case at::kHalf: return static_cast<float>(s.to<at::Half>());
    case at::kBFloat16: return static_cast<float>(s.to<at::BFloat16>());
    default: return s.to<float>();
  }
}

// torch's addmv checks and messages (its structured meta function), in its order.
void check_addmv(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec) {
  TORCH_CHECK((mat.dim() == 2 && vec.dim() == 1 && self.dim() <= 1), "vector + matrix @ vector expected, got ",
              self.dim(), ", ", mat.dim(), ", ", vec.dim());
  TORCH_CHECK(mat.size(1) == vec.size(0) && (mat.size(0) == self.numel() || self.numel() == 1),
              "size mismatch, got input (", self.size(0), "), mat (", mat.size(0), "x", mat.size(1), "), vec (",
              vec.size(0), ")");
}

bool same_dtypes(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec) {
  return self.scalar_type() == mat.scalar_type() && mat.scalar_type() == vec.scalar_type();
}

// torch's message for mixed dtypes (torch 2.14's meta function; older releases word it
// differently or accept a self of another dtype: the aten overrides leave mixed dtypes to ATen).
void check_addmv_dtypes(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec) {
  TORCH_CHECK(same_dtypes(self, mat, vec), "addmv input tensors must have the same dtype, but got ",
              self.scalar_type(), ", ", mat.scalar_type(), ", and ", vec.scalar_type());
}

// torch's dot_check (ATen/native/cuda/Blas.cpp), messages included.
void check_dot(const at::Tensor& self, const at::Tensor& other) {
  TORCH_CHECK(self.dim() == 1 && other.dim() == 1, "1D tensors expected, but got ", self.dim(), "D and ", other.dim(),
              "D tensors");
  TORCH_CHECK(self.scalar_type() == other.scalar_type(), "dot : expected both vectors to have same dtype, but found ",
              self.scalar_type(), " and ", other.scalar_type());
  TORCH_CHECK(self.numel() == other.numel(), "inconsistent tensor size, expected tensor [", self.numel(),
              "] and src [", other.numel(), "] to have the same number of elements, but got ", self.numel(), " and ",
              other.numel(), " elements respectively");
  TORCH_CHECK((self.numel() <= INT_MAX) && (self.stride(0) <= INT_MAX) && (other.stride(0) <= INT_MAX),
              "dot only supports n, incx, incy with the bound [val] <= %d", INT_MAX);
}

enum class Form { kFunctional, kOut, kInplace };

bool shares_storage(const at::Tensor& a, const at::Tensor& b) { return a.storage().is_alias_of(b.storage()); }

// addmv for the aten overrides and the gems ops. kFunctional allocates `out` as torch does (M
// elements of vec's dtype); kOut resizes out= as torch does; kInplace writes `out`, which is self.
Fallback run_addmv(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const c10::Scalar& beta,
                   const c10::Scalar& alpha, at::Tensor& out, Form form) {
  const bool given_out = form != Form::kFunctional;
  // The device check of ATen's wrapper first (ATen raises its error), then its meta function's.
  if (!mat.is_cuda() || vec.device() != mat.device() || self.device() != mat.device() ||
      (given_out && out.device() != mat.device())) {
    return Fallback::kDevice;
  }
  check_addmv(self, mat, vec);
  if (!same_dtypes(self, mat, vec)) return Fallback::kMixedDtype;
  const int dtype = g::dtype_of(mat.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  if (given_out && out.scalar_type() != mat.scalar_type()) return Fallback::kMixedDtype;
  const int64_t M = mat.size(0), K = mat.size(1);
  if (form == Form::kInplace && (self.dim() != 1 || self.size(0) != M)) return Fallback::kArgs;

  Gemv p;
  Launch l;
  const c10::DeviceIndex device = mat.device().index();
  const bool resize = form == Form::kOut && (out.dim() != 1 || out.size(0) != M);
  if (M > 0) {
    // An empty K leaves beta * self (alpha does not enter, as in ATen).
    p.alpha = K > 0 ? scalar_as(alpha, mat.scalar_type()) : 0.0f;
    p.beta = scalar_as(beta, mat.scalar_type());
    if (given_out) {
      // out= sharing memory with an input gets ATen's semantics, except the in-place form itself
      // (each program reads self[m] before it writes y[m]).
      const bool reads_self = p.beta != 0.0f;
      const bool self_exactly = out.data_ptr() == self.data_ptr() && self.numel() == M && !resize &&
                                (M == 1 || out.stride(0) == self.stride(0));
      if (at::has_internal_overlap(out) == at::MemOverlap::Yes || shares_storage(out, mat) ||
          shares_storage(out, vec) || (reads_self && shares_storage(out, self) && !self_exactly) ||
          (resize && shares_storage(out, self))) {
        return Fallback::kLayout;
      }
    }
    if (!set_matrix(p, mat)) return Fallback::kLayout;
    p.x = vec.const_data_ptr();
    p.stride_x = stride_or(K, vec.stride(0), 1);
    p.bias = self.const_data_ptr();
    p.stride_bias = self.numel() == 1 ? 0 : self.stride(0);
    p.stride_y = given_out && !resize ? stride_or(M, out.stride(0), 1) : 1;
    if (Fallback r = plan(p, dtype, device, l); r != Fallback::kNone) return r;
  }

  c10::cuda::CUDAGuard guard(device);
  if (form == Form::kFunctional) {
    out = at::detail::empty_cuda({M}, mat.scalar_type(), mat.device(), std::nullopt);
  } else if (resize) {
    at::native::resize_output(out, {M});
  }
  if (M > 0) run(p, l, out.mutable_data_ptr(), device);
  return Fallback::kNone;
}

// dot (and vdot of real vectors): the product of a one-row A with x.
Fallback run_dot(const at::Tensor& self, const at::Tensor& other, at::Tensor& out) {
  if (!self.is_cuda() || other.device() != self.device()) return Fallback::kDevice;
  // Complex (conjugate views and vdot's conjugate), fp64 and integers are ATen's.
  const int dtype = g::dtype_of(self.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  check_dot(self, other);
  if (self._is_zerotensor() || other._is_zerotensor()) return Fallback::kArgs;
  Gemv p;
  p.kind = g::kind_dot;
  p.a = self.const_data_ptr();
  p.x = other.const_data_ptr();
  p.K = self.numel();
  p.stride_ak = stride_or(p.K, self.stride(0), 1);
  p.stride_x = stride_or(p.K, other.stride(0), 1);
  Launch l;
  const c10::DeviceIndex device = self.device().index();
  if (Fallback r = plan(p, dtype, device, l); r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(device);
  out = at::detail::empty_cuda({}, self.scalar_type(), self.device(), std::nullopt);
  run(p, l, out.mutable_data_ptr(), device);
  return Fallback::kNone;
}

}  // namespace

namespace cuda {
at::Tensor addmv(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const at::Scalar& beta,
                 const at::Scalar& alpha) {
  at::Tensor out;
  const Fallback r = run_addmv(self, mat, vec, beta, alpha, out, Form::kFunctional);
  if (r == Fallback::kMixedDtype) check_addmv_dtypes(self, mat, vec);
  if (r != Fallback::kNone) unsupported("gems::addmv", r, {&self, &mat, &vec});
  return out;
}

at::Tensor mv(const at::Tensor& self, const at::Tensor& vec) {
  // torch's mv: addmv_ into a fresh vector of vec's dtype, with beta = 0.
  at::Tensor out = at::empty({self.size(0)}, vec.options());
  const Fallback r = run_addmv(out, self, vec, 0, 1, out, Form::kInplace);
  if (r == Fallback::kMixedDtype) check_addmv_dtypes(out, self, vec);
  if (r != Fallback::kNone) unsupported("gems::mv", r, {&self, &vec});
  return out;
}

at::Tensor dot(const at::Tensor& self, const at::Tensor& tensor) {
  at::Tensor out;
  const Fallback r = run_dot(self, tensor, out);
  if (r != Fallback::kNone) unsupported("gems::dot", r, {&self, &tensor});
  return out;
}

at::Tensor vdot(const at::Tensor& self, const at::Tensor& other) {
  at::Tensor out;
  const Fallback r = run_dot(self, other, out);
  if (r != Fallback::kNone) unsupported("gems::vdot", r, {&self, &other});
  return out;
}
}  // namespace cuda

namespace aten_impl {
at::Tensor addmv(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const at::Scalar& beta,
                 const at::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("addmv");
  at::Tensor out;
  const Fallback r = run_addmv(self, mat, vec, beta, alpha, out, Form::kFunctional);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::addmv(self, mat, vec, beta, alpha);
}

at::Tensor& addmv_out(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const at::Scalar& beta,
                      const at::Scalar& alpha, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("addmv.out");
  const Fallback r = run_addmv(self, mat, vec, beta, alpha, out, Form::kOut);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::addmv_outf(self, mat, vec, beta, alpha, out);
}

at::Tensor& addmv_(at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const at::Scalar& beta,
                   const at::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("addmv_");
  const Fallback r = run_addmv(self, mat, vec, beta, alpha, self, Form::kInplace);
  counter.hit(r);
  if (r == Fallback::kNone) return self;
  return at::cuda::addmv_(self, mat, vec, beta, alpha);
}

at::Tensor dot(const at::Tensor& self, const at::Tensor& tensor) {
  static FallbackCounter& counter = fallback_counter("dot");
  at::Tensor out;
  const Fallback r = run_dot(self, tensor, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::dot(self, tensor);
}

at::Tensor vdot(const at::Tensor& self, const at::Tensor& other) {
  static FallbackCounter& counter = fallback_counter("vdot");
  at::Tensor out;
  const Fallback r = run_dot(self, other, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::vdot(self, other);
}
}  // namespace aten_impl

}  // namespace gems
