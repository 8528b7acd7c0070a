// mm / addmm driver: torch's checks, the output as torch allocates (or resizes) it, then one
// launch. fp16 / bf16, and fp32 where ATen would let cuBLAS use TF32, with operands that TMA can
// describe, on a target with the persistent TMA kernel (sm_90a, sm_100a), run mm_tma with the
// configuration the tuning table gives their shape bucket (aot/gemm_tuning.py); everything else
// runs the pointer kernel whose layout and alignment axes match (aot/family_gemm.py).
//
// Covered: fp32 (ieee, or tf32 when ATen would let cuBLAS use it), fp16, bf16; each operand
// row-major or col-major with any leading stride; M, N, K and strides within int32. addmm:
// through mm_tma, with a bias that broadcasts over rows (nn.Linear's), into a row-major result.
// Fallbacks (ATen through torch.mm / torch.addmm, an error through torch.ops.gems.*):
//   kDevice      operands (or out=) not all on one CUDA device
//   kDtype       a dtype without variants (fp64, integers, complex)
//   kMixedDtype  an out= of another dtype (ATen then raises torch's error)
//   kLayout      an operand with no unit stride; an out= that is neither row- nor col-major,
//                overlaps itself or an input (ATen's own semantics apply there)
//   kIndex64     a size above int32 range, a stride above int32, a grid above 2**31 - 1
//   kArch        no image for this device
//   kTuned       the tuning table sends this shape bucket to ATen (cuBLAS was faster there)
//   kArgs        addmm: a bias that is not one row broadcast over M, a pointer-kernel case (exact
//                fp32, operands TMA cannot describe, sm_80), K == 0, or a col-major out=
#include "gems_gemm_ops.h"

#include <ATen/Context.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/addmm_cuda_dispatch.h>
#include <ATen/ops/mm_cuda_dispatch.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <atomic>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gemm_tuning.h"
#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace g = gen::mm;
namespace gt = gen::mm_tma;

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

// The addmm epilogue: C = alpha * A @ B + beta * bias[n], bias read with bias_stride.
struct BiasRow {
  const void* data = nullptr;
  int64_t stride = 0;
  float alpha = 1.0f, beta = 0.0f;
};

// TMA's rule for an operand: a 16-byte aligned base and a leading stride that is a positive
// multiple of 16 bytes.
bool tma_describes(const Matrix& m, const Layout& l, int64_t element_size) {
  return aligned16(m.data) && l.lead > 0 && (l.lead * element_size) % 16 == 0;
}

std::atomic<bool> g_route_to_aten{true};

// The tuning table's configuration for a problem of dtype class `klass`, or -1 when the bucket
// goes to ATen: cuBLAS was faster there, so the override leaves it to ATen; a gems:: call (which
// asks for gems' kernel) runs the bucket's configuration all the same.
int tuned_config(int target, int klass, const Layout& la, const Layout& lb, int64_t M, int64_t N, int64_t K,
                 bool aten_override) {
  // Layout index of the table: nn, nt, tn, tt (A then B; t = col-major).
  const int layout = (la.row ? 0 : 2) + (lb.row ? 0 : 1);
  const int entry = gemm_tuning::entry_for(target, klass, layout, M, N, K);
  if (entry >= 0) return entry;
  return aten_override && g_route_to_aten.load(std::memory_order_relaxed) ? -1 : -entry - 1;
}

Fallback launch_tma(int dtype, int klass, const Matrix& a, const Matrix& b, const Matrix& c, const Layout& la,
                    const Layout& lb, const Layout& lc, const BiasRow* bias, int target, bool aten_override,
                    c10::DeviceIndex device) {
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  const int config = tuned_config(target, klass, la, lb, M, N, K, aten_override);
  if (config < 0) return Fallback::kTuned;
  const int id = gt::find(dtype, la.row ? gt::a_layout_row : gt::a_layout_col,
                          lb.row ? gt::b_layout_row : gt::b_layout_col, bias ? gt::epilogue_bias : gt::epilogue_none,
                          config);
  if (id < 0) return Fallback::kArch;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  const int* params = k->image->params;
  const int64_t block_m = params[gt::kParam_BLOCK_M], block_n = params[gt::kParam_BLOCK_N];
  const int64_t split_k = params[gt::kParam_SPLIT_K];
  const int64_t tiles = ((M + block_m - 1) / block_m) * ((N + block_n - 1) / block_n);
  if (tiles * split_k > kMaxI32) return Fallback::kIndex64;
  // Split-K: per tile a zeroed arrival counter, then split_k fp32 partial tiles. Freed after the
  // launch: the caching allocator hands the block out again only to later work on this stream.
  c10::DataPtr workspace;
  void* counters = nullptr;
  void* partial = nullptr;
  if (split_k > 1) {
    const int64_t counter_bytes = (tiles * 4 + 255) / 256 * 256;
    workspace = c10::cuda::CUDACachingAllocator::get()->allocate(counter_bytes + tiles * split_k * block_m * block_n * 4);
    counters = workspace.get();
    partial = static_cast<char*>(workspace.get()) + counter_bytes;
    zero_words_async(counters, static_cast<size_t>(tiles), device);
  }
  KernelArgs args;
  args.ptr(a.data);
  args.ptr(b.data);
  args.ptr(c.data);
  args.ptr(bias ? bias->data : c.data);
  args.ptr(partial);
  args.ptr(counters);
  args.i32(static_cast<int32_t>(M));
  args.i32(static_cast<int32_t>(N));
  args.i32(static_cast<int32_t>(K));
  args.i32(static_cast<int32_t>(la.lead));
  args.i32(static_cast<int32_t>(lb.lead));
  args.i32(static_cast<int32_t>(lc.lead));
  args.i32(static_cast<int32_t>(bias ? bias->stride : 0));
  args.f32(bias ? bias->alpha : 1.0f);
  args.f32(bias ? bias->beta : 0.0f);
  launch(*k, device, persistent_grid(*k, device, tiles * split_k), 1, 1, args);
  return Fallback::kNone;
}

// C = A @ B (+ the bias epilogue) for non-empty operands; C must be row-major (both kernels
// store rows).
Fallback launch_mm(int dtype, const Matrix& a, const Matrix& b, const Matrix& c, const BiasRow* bias,
                   c10::ScalarType scalar_type, bool aten_override, c10::DeviceIndex device) {
  const std::optional<Layout> la = layout_of(a), lb = layout_of(b), lc = layout_of(c);
  if (!la || !lb || !lc || !lc->row) return Fallback::kLayout;
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  if (M > kMaxDim || N > kMaxDim || K > kMaxDim || la->lead > kMaxI32 || lb->lead > kMaxI32 || lc->lead > kMaxI32) {
    return Fallback::kIndex64;
  }
  // ATen's cuBLAS path reads the same flag (torch.backends.cuda.matmul.allow_tf32 and
  // torch.set_float32_matmul_precision both set it).
  const bool tf32 = dtype == g::dtype_fp32 && at::globalContext().allowTF32CuBLAS();
  const int klass = dtype != g::dtype_fp32 ? gemm_tuning::k16bit : tf32 ? gemm_tuning::kTf32 : gemm_tuning::kIeee;
  const int target = device_target(device);
  const int64_t size = c10::elementSize(scalar_type);
  if (klass != gemm_tuning::kIeee && (target == 90 || target == 100) && tma_describes(a, *la, size) &&
      tma_describes(b, *lb, size) && tma_describes(c, *lc, size)) {
    return launch_tma(gt::dtype_of(scalar_type), klass, a, b, c, *la, *lb, *lc, bias, target, aten_override, device);
  }
  if (bias) return Fallback::kArgs;  // the pointer kernel has no epilogue
  // Exact fp32 has table rows too, for routing only (the pointer kernel has one configuration).
  if (klass == gemm_tuning::kIeee && tuned_config(target, klass, *la, *lb, M, N, K, aten_override) < 0) {
    return Fallback::kTuned;
  }
  // Exactly the hints of the "aligned" variants: pointers, leading strides, N and K, and M when
  // A is col-major (then M is its contiguous dimension). A leading stride of 0 (an expanded
  // operand) is divisible by 16 but takes the general variant.
  const auto lead_ok = [](const Layout& l) { return l.lead > 0 && l.lead % 16 == 0; };
  const bool aligned = aligned16(a.data) && aligned16(b.data) && aligned16(c.data) && lead_ok(*la) &&
                       lead_ok(*lb) && lead_ok(*lc) && N % 16 == 0 && K % 16 == 0 && (la->row || M % 16 == 0);
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

// torch's addmm checks and messages (its structured meta function), in its order.
void check_addmm_inputs(const at::Tensor& self, const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(self.scalar_type() == b.scalar_type(), "self and mat2 must have the same dtype, but got ",
              self.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "mat1 and mat2 must have the same dtype, but got ", a.scalar_type(),
              " and ", b.scalar_type());
  TORCH_CHECK(a.dim() == 2, "mat1 must be a matrix, got ", a.dim(), "-D tensor");
  TORCH_CHECK(b.dim() == 2, "mat2 must be a matrix, got ", b.dim(), "-D tensor");
  TORCH_CHECK(a.size(1) == b.size(0), "mat1 and mat2 shapes cannot be multiplied (", a.size(0), "x", a.size(1),
              " and ", b.size(0), "x", b.size(1), ")");
}

// addmm's self as the kernel's bias row: a vector of N (or 1) elements broadcast over the M rows,
// as nn.Linear passes it; nullopt for any other shape (ATen serves those).
std::optional<BiasRow> bias_row(const at::Tensor& self, int64_t N, const c10::Scalar& beta, const c10::Scalar& alpha) {
  int64_t size = 0, stride = 0;
  if (self.dim() == 1) {
    size = self.size(0), stride = self.stride(0);
  } else if (self.dim() == 2 && self.size(0) == 1) {
    size = self.size(1), stride = self.stride(1);
  } else {
    return std::nullopt;
  }
  if (size != N && size != 1) return std::nullopt;
  if (size == 1) stride = 0;
  return BiasRow{self.const_data_ptr(), stride, alpha.to<float>(), beta.to<float>()};
}

// mm (self undefined) or addmm, for the aten override or a gems:: call: out undefined allocates the result as torch does (contiguous
// M x N); out defined is the .out overload, resized as torch resizes it; a row-major out is
// written in place, a col-major one (mm only) as C^T = B^T A^T. Returns the reason when no gems
// kernel ran; out may have been allocated or resized by then, as ATen would have done.
Fallback run_gemm(bool aten_override, const at::Tensor& a, const at::Tensor& b, at::Tensor& out,
                  const at::Tensor* self = nullptr, const c10::Scalar& beta = 1, const c10::Scalar& alpha = 1) {
  const bool given_out = out.defined();
  // torch checks devices first (ATen then raises its error), then the structured meta checks.
  if (!a.is_cuda() || b.device() != a.device() || (given_out && out.device() != a.device()) ||
      (self && self->device() != a.device())) {
    return Fallback::kDevice;
  }
  if (self) {
    // Mixed dtypes are ATen's to accept or reject.
    if (self->scalar_type() != a.scalar_type() || b.scalar_type() != a.scalar_type()) return Fallback::kMixedDtype;
    check_addmm_inputs(*self, a, b);
  } else {
    check_inputs(a, b);
  }
  const int dtype = g::dtype_of(a.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  if (given_out && out.scalar_type() != a.scalar_type()) return Fallback::kMixedDtype;

  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  std::optional<BiasRow> bias;
  if (self) {
    bias = bias_row(*self, N, beta, alpha);
    // K == 0 leaves beta * self, which ATen computes.
    if (!bias || K == 0) return Fallback::kArgs;
  }
  const c10::DeviceIndex device = a.device().index();
  c10::cuda::CUDAGuard guard(device);
  if (given_out) {
    // An out= sharing storage with an input (addmm_ writes into self) gets ATen's semantics;
    // get_overlap_status would also answer "too hard" for any strided out=, so compare storages.
    if (at::has_internal_overlap(out) == at::MemOverlap::Yes || out.storage().is_alias_of(a.storage()) ||
        out.storage().is_alias_of(b.storage()) || (self && out.storage().is_alias_of(self->storage()))) {
      return Fallback::kLayout;
    }
    at::native::resize_output(out, {M, N});
  } else {
    out = at::detail::empty_cuda({M, N}, a.scalar_type(), a.device(), std::nullopt);
  }
  if (M == 0 || N == 0) return Fallback::kNone;
  if (K == 0) {
    out.zero_();
    return Fallback::kNone;
  }
  const Matrix ma = matrix(a, a.const_data_ptr()), mb = matrix(b, b.const_data_ptr());
  const Matrix mc = matrix(out, out.mutable_data_ptr());
  const std::optional<Layout> lc = layout_of(mc);
  const BiasRow* epilogue = bias ? &*bias : nullptr;
  if (lc && !lc->row) {
    if (epilogue) return Fallback::kArgs;  // the transposed problem would need a bias column
    return launch_mm(dtype, mb.t(), ma.t(), mc.t(), nullptr, a.scalar_type(), aten_override, device);
  }
  return launch_mm(dtype, ma, mb, mc, epilogue, a.scalar_type(), aten_override, device);
}

std::string describe(std::initializer_list<const at::Tensor*> tensors) {
  std::ostringstream s;
  const char* sep = "";
  for (const at::Tensor* t : tensors) {
    s << sep << t->scalar_type() << t->sizes() << " strides " << t->strides() << " on " << t->device();
    sep = ", ";
  }
  return s.str();
}

}  // namespace

namespace cuda {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  at::Tensor out;
  const Fallback r = run_gemm(false, self, mat2, out);
  if (r != Fallback::kNone) unsupported("gems::mm", r, describe({&self, &mat2}));
  return out;
}

at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                 const c10::Scalar& alpha) {
  at::Tensor out;
  const Fallback r = run_gemm(false, mat1, mat2, out, &self, beta, alpha);
  if (r != Fallback::kNone) unsupported("gems::addmm", r, describe({&self, &mat1, &mat2}));
  return out;
}
}  // namespace cuda

namespace meta {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  check_inputs(self, mat2);
  return at::empty({self.size(0), mat2.size(1)}, self.options());
}

at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                 const c10::Scalar& alpha) {
  check_addmm_inputs(self, mat1, mat2);
  // self must broadcast to the result: torch expands it, with expand's error.
  self.expand({mat1.size(0), mat2.size(1)});
  return at::empty({mat1.size(0), mat2.size(1)}, mat1.options());
}
}  // namespace meta

namespace aten_impl {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  static FallbackCounter& counter = fallback_counter("mm");
  at::Tensor out;
  const Fallback r = run_gemm(true, self, mat2, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::mm(self, mat2);
}

at::Tensor& mm_out(const at::Tensor& self, const at::Tensor& mat2, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("mm.out");
  const Fallback r = run_gemm(true, self, mat2, out);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::mm_out(out, self, mat2);
}

at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                 const c10::Scalar& alpha) {
  static FallbackCounter& counter = fallback_counter("addmm");
  at::Tensor out;
  const Fallback r = run_gemm(true, mat1, mat2, out, &self, beta, alpha);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::addmm(self, mat1, mat2, beta, alpha);
}

at::Tensor& addmm_out(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                      const c10::Scalar& alpha, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("addmm.out");
  const Fallback r = run_gemm(true, mat1, mat2, out, &self, beta, alpha);
  counter.hit(r);
  if (r == Fallback::kNone) return out;
  return at::cuda::addmm_out(out, self, mat1, mat2, beta, alpha);
}
}  // namespace aten_impl

}  // namespace gems

// The family's control ops: the routing switch (tests and measurements run gems' kernel on every
// bucket) and the tuning report info() prints.
TORCH_LIBRARY_FRAGMENT(gems, m) {
  m.def("_set_gemm_routing(bool on) -> bool", [](bool on) { return gems::g_route_to_aten.exchange(on); });
  m.def("_gemm_tuning() -> str[]", []() -> std::vector<std::string> {
    return {gems::gemm_tuning::kTunedCases, gems::gemm_tuning::kRoutedCases};
  });
}
