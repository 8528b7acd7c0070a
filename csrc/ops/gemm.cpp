// mm driver: torch's checks, the output as torch allocates (or resizes) it, then one launch of
// the mm variant whose layout and alignment axes (aot/family_gemm.py) match the operands.
//
// Covered: fp32 (ieee, or tf32 when ATen would let cuBLAS use it), fp16, bf16; each operand
// row-major or col-major with any leading stride; M, N, K and strides within int32.
// Fallbacks (ATen through torch.mm, an error through torch.ops.gems.mm):
//   kDevice      operands (or out=) not all on one CUDA device
//   kDtype       a dtype without variants (fp64, integers, complex)
//   kMixedDtype  an out= of another dtype (ATen then raises torch's error)
//   kLayout      an operand with no unit stride; an out= that is neither row- nor col-major,
//                overlaps itself or an input (ATen's own semantics apply there)
//   kIndex64     a size above int32 range, a stride above int32, a grid above 2**31 - 1
//   kArch        no image for this device
#include "ops/gemm.h"

#include <ATen/Context.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm_cuda_dispatch.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>
#include <optional>
#include <sstream>

#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace g = gen::mm;

constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();
// M, N and K go to the kernel as int32, where pid * BLOCK + arange(BLOCK) may run one tile
// past them: leave room for the largest tile.
constexpr int64_t kMaxDim = kMaxI32 - 1024;


// The checks and messages of torch's mm (its structured meta function), in its order.
void check_inputs(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2, "self must be a matrix");
  TORCH_CHECK(b.dim() == 2, "mat2 must be a matrix");
  TORCH_CHECK(a.size(1) == b.size(0), "mat1 and mat2 shapes cannot be multiplied (", a.size(0), "x", a.size(1),
              " and ", b.size(0), "x", b.size(1), ")");
  TORCH_CHECK(a.dtype() == b.dtype(), "expected mat1 and mat2 to have the same dtype, but got: ", a.dtype(), " != ",
              b.dtype());
}

// A 2-D operand as the kernel sees it. C^T = B^T A^T is computed by transposing these views,
// without new tensors.
struct Matrix {
  const void* data;
  int64_t rows, cols, row_stride, col_stride;
  Matrix t() const { return {data, cols, rows, col_stride, row_stride}; }
};

Matrix matrix(const at::Tensor& t, const void* data) { return {data, t.size(0), t.size(1), t.stride(0), t.stride(1)}; }

// Row-major when the columns are unit-stride, col-major when the rows are. The stride of a
// dimension of size 1 is never multiplied by a non-zero index, so it counts as anything: unit,
// or as leading stride the dense one rounded up to 16 elements, which keeps the alignment hints
// (and TMA's rules) true.
struct Layout {
  bool row;
  int64_t lead;  // the stride that is not 1
};

int64_t round_up16(int64_t v) { return (v + 15) / 16 * 16; }

std::optional<Layout> layout_of(const Matrix& m) {
  if (m.cols == 1 || m.col_stride == 1) return Layout{true, m.rows == 1 ? round_up16(m.cols) : m.row_stride};
  if (m.rows == 1 || m.row_stride == 1) return Layout{false, m.col_stride};
  return std::nullopt;
}

// C = A @ B for non-empty operands; C must be row-major (the kernel's stride_cn is the constexpr 1).
Fallback launch_mm(int dtype, const Matrix& a, const Matrix& b, const Matrix& c, c10::DeviceIndex device) {
  const std::optional<Layout> la = layout_of(a), lb = layout_of(b), lc = layout_of(c);
  if (!la || !lb || !lc || !lc->row) return Fallback::kLayout;
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  if (M > kMaxDim || N > kMaxDim || K > kMaxDim || la->lead > kMaxI32 || lb->lead > kMaxI32 || lc->lead > kMaxI32) {
    return Fallback::kIndex64;
  }
  // Exactly the hints of the "aligned" variants: pointers, leading strides, N and K, and M when
  // A is col-major (then M is its contiguous dimension). A leading stride of 0 (an expanded
  // operand) is divisible by 16 but not a valid TMA stride, so it takes the general variant.
  const auto lead_ok = [](const Layout& l) { return l.lead > 0 && l.lead % 16 == 0; };
  const bool aligned = aligned16(a.data) && aligned16(b.data) && aligned16(c.data) && lead_ok(*la) &&
                       lead_ok(*lb) && lead_ok(*lc) && N % 16 == 0 && K % 16 == 0 && (la->row || M % 16 == 0);
  // ATen's cuBLAS path reads the same flag (torch.backends.cuda.matmul.allow_tf32 and
  // torch.set_float32_matmul_precision both set it).
  const bool tf32 = dtype == g::dtype_fp32 && at::globalContext().allowTF32CuBLAS();
  const int id = g::find(dtype, tf32 ? g::precision_tf32 : g::precision_ieee,
                         la->row ? g::a_layout_row : g::a_layout_col, lb->row ? g::b_layout_row : g::b_layout_col,
                         aligned ? g::align_aligned : g::align_general);
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  const int64_t block_m = k->image->params[g::kParam_BLOCK_M], block_n = k->image->params[g::kParam_BLOCK_N];
  const int64_t grid = ((M + block_m - 1) / block_m) * ((N + block_n - 1) / block_n);
  if (grid > kMaxI32) return Fallback::kIndex64;
  KernelArgs args;
  args.ptr(a.data);
  args.ptr(b.data);
  args.ptr(c.data);
  args.i32(static_cast<int32_t>(M));
  args.i32(static_cast<int32_t>(N));
  args.i32(static_cast<int32_t>(K));
  // Each operand's unit stride is a constexpr of the variant: only the leading strides are
  // arguments (stride_am or stride_ak, stride_bk or stride_bn, stride_cm, in that order).
  args.i32(static_cast<int32_t>(la->lead));
  args.i32(static_cast<int32_t>(lb->lead));
  args.i32(static_cast<int32_t>(lc->lead));
  launch(*k, device, static_cast<uint32_t>(grid), 1, 1, args);
  return Fallback::kNone;
}

// out undefined: allocates the result as torch.mm does (contiguous M x N). out defined: mm.out,
// resized as torch resizes it; a row-major out is written in place, a col-major one as
// C^T = B^T A^T. Returns the reason when no gems kernel ran; out may have been allocated or
// resized by then, as ATen would have done.
Fallback run_mm(const at::Tensor& a, const at::Tensor& b, at::Tensor& out) {
  const bool given_out = out.defined();
  // torch checks devices first (ATen then raises its error), then the structured meta checks.
  if (!a.is_cuda() || b.device() != a.device() || (given_out && out.device() != a.device())) {
    return Fallback::kDevice;
  }
  check_inputs(a, b);
  const int dtype = g::dtype_of(a.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  if (given_out && out.scalar_type() != a.scalar_type()) return Fallback::kMixedDtype;

  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const c10::DeviceIndex device = a.device().index();
  c10::cuda::CUDAGuard guard(device);
  if (given_out) {
    at::native::resize_output(out, {M, N});
  } else {
    out = at::detail::empty_cuda({M, N}, a.scalar_type(), a.device(), std::nullopt);
  }
  if (M == 0 || N == 0) return Fallback::kNone;
  if (K == 0) {
    out.zero_();
    return Fallback::kNone;
  }
  // An out= sharing storage with an input gets ATen's semantics; get_overlap_status would also
  // answer "too hard" for any strided out=, so compare storages.
  if (given_out && (at::has_internal_overlap(out) == at::MemOverlap::Yes || out.storage().is_alias_of(a.storage()) ||
                    out.storage().is_alias_of(b.storage()))) {
    return Fallback::kLayout;
  }
  const Matrix ma = matrix(a, a.const_data_ptr()), mb = matrix(b, b.const_data_ptr());
  const Matrix mc = matrix(out, out.mutable_data_ptr());
  const std::optional<Layout> lc = layout_of(mc);
  if (lc && !lc->row) return launch_mm(dtype, mb.t(), ma.t(), mc.t(), device);
  return launch_mm(dtype, ma, mb, mc, device);
}

std::string describe(const at::Tensor& a, const at::Tensor& b) {
  std::ostringstream s;
  s << a.scalar_type() << a.sizes() << " strides " << a.strides() << " on " << a.device() << ", " << b.scalar_type()
    << b.sizes() << " strides " << b.strides() << " on " << b.device();
  return s.str();
}

}  // namespace

namespace cuda {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  at::Tensor out;
  const Fallback r = run_mm(self, mat2, out);
  if (r != Fallback::kNone) unsupported("gems::mm", r, describe(self, mat2));
  return out;
}
}  // namespace cuda

namespace meta {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  check_inputs(self, mat2);
  return at::empty({self.size(0), mat2.size(1)}, self.options());
}
}  // namespace meta

namespace aten_impl {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  static FallbackCounter& counter = fallback_counter("mm");
  at::Tensor out;
  const Fallback r = run_mm(self, mat2, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::mm(self, mat2);
}

at::Tensor& mm_out(const at::Tensor& self, const at::Tensor& mat2, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("mm.out");
  const Fallback r = run_mm(self, mat2, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::mm_out(out, self, mat2);
}
}  // namespace aten_impl

}  // namespace gems
