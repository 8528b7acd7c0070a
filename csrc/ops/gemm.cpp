// The gemm family's core (gemm.h: plan, then launch) and the mm / addmm driver: torch's checks,
// every fallback decision, then the output as torch allocates (or resizes) it, then one launch.
// fp16 / bf16, and fp32 where ATen would let cuBLAS use TF32, with operands that TMA can describe,
// on a target with the persistent TMA kernel (sm_90a, sm_100a), run mm_tma (bmm_tma batched) with
// the configuration the tuning table gives their shape bucket (aot/gemm_tuning.py: the persistent
// TMA kernels, or for few rows mm_skinny_kernel on a (tiles, K splits) grid); everything else runs
// the pointer kernel whose layout and alignment axes match (aot/family_gemm.py).
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
#include "ops/gemm.h"

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

#include <limits>
#include <optional>
#include <vector>

#include "gemm_tuning.h"
#include "gems_kernels.h"

namespace gems::gemm {

std::atomic<bool> g_route_to_aten{true};

namespace {

namespace g = gen::mm;
namespace gt = gen::mm_tma;
namespace gb = gen::bmm;
namespace gbt = gen::bmm_tma;

constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();
// M, N and K go to the kernel as int32, where pid * BLOCK + arange(BLOCK) may run one tile
// past them: leave room for the largest tile.
constexpr int64_t kMaxDim = kMaxI32 - 1024;
// The pointer kernel's batch is program_id(1): the grid's y extent.
constexpr int64_t kMaxGridY = 65535;

int64_t round_up16(int64_t v) { return (v + 15) / 16 * 16; }

// Row-major when the columns are unit-stride, col-major when the rows are. The stride of a
// dimension of size 1 is never multiplied by a non-zero index, so it counts as anything: unit,
// or as leading stride the dense one rounded up to 16 elements, which keeps the alignment hints
// (and TMA's rules) true.
struct Layout {
  bool row;
  int64_t lead;  // the stride that is not 1
};

std::optional<Layout> layout_of(const Matrix& m) {
  if (m.cols == 1 || m.col_stride == 1) return Layout{true, m.rows == 1 ? round_up16(m.cols) : m.row_stride};
  if (m.rows == 1 || m.row_stride == 1) return Layout{false, m.col_stride};
  return std::nullopt;
}

// TMA's rules for an operand: a 16-byte aligned base and a leading stride that is a positive
// multiple of 16 bytes; batched, a batch stride that is one too, or 0 (an operand expanded over
// the batch, which the launch describes with a batch extent of 1).
bool tma_describes(const Matrix& m, const Layout& l, int64_t element_size, bool aligned, int64_t batch) {
  const bool batch_ok = batch == 1 || m.batch_stride == 0 || (m.batch_stride * element_size) % 16 == 0;
  return aligned && l.lead > 0 && (l.lead * element_size) % 16 == 0 && batch_ok;
}

// An operand's batch extent and stride in its descriptor: a batch of one, or an operand expanded
// over the batch, is one matrix at batch 0, with the dense stride rounded up to 16 elements as
// a (never used) stride that TMA accepts; no descriptor gets a stride of 0.
std::pair<int32_t, int64_t> descriptor_batch(const Matrix& m, const Layout& l, int64_t batch) {
  if (batch == 1 || m.batch_stride == 0) return {1, round_up16((l.row ? m.rows : m.cols) * l.lead)};
  return {static_cast<int32_t>(batch), m.batch_stride};
}

Epilogue transposed(const Epilogue& e) {
  Epilogue t = e;
  std::swap(t.stride_m, t.stride_n);
  return t;
}

// The tuning table's configuration for a problem of dtype class `klass`, or -1 when the bucket
// goes to ATen: cuBLAS was faster there, so the override leaves it to ATen; a gems:: call (which
// asks for gems' kernel) runs the bucket's configuration all the same. Batched problems use the
// mm table by their (M, N, K) for now.
int tuned_config(int target, int klass, const Layout& la, const Layout& lb, int64_t M, int64_t N, int64_t K,
                 bool aten_override) {
  // Layout index of the table: nn, nt, tn, tt (A then B; t = col-major).
  const int layout = (la.row ? 0 : 2) + (lb.row ? 0 : 1);
  const int entry = gemm_tuning::entry_for(target, klass, layout, M, N, K);
  if (entry >= 0) return entry;
  return aten_override && g_route_to_aten.load(std::memory_order_relaxed) ? -1 : -entry - 1;
}

Fallback plan_tma(const Problem& p, c10::ScalarType scalar_type, int klass, const Layout& la, const Layout& lb,
                  int target, bool aten_override, c10::DeviceIndex device, Plan& planned) {
  const int64_t M = p.a.rows, K = p.a.cols, N = p.b.cols;
  const int config = tuned_config(target, klass, la, lb, M, N, K, aten_override);
  if (config < 0) return Fallback::kTuned;
  const int id = p.batched
                     ? gbt::find(gbt::dtype_of(scalar_type), la.row ? gbt::a_layout_row : gbt::a_layout_col,
                                 lb.row ? gbt::b_layout_row : gbt::b_layout_col,
                                 p.epilogue.kind == Epilogue::kFull ? gbt::epilogue_full : gbt::epilogue_none, config)
                     : gt::find(gt::dtype_of(scalar_type), la.row ? gt::a_layout_row : gt::a_layout_col,
                                lb.row ? gt::b_layout_row : gt::b_layout_col,
                                p.epilogue.kind == Epilogue::kBiasRow ? gt::epilogue_bias : gt::epilogue_none, config);
  if (id < 0) return Fallback::kArch;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  // The launch params are in the same order in both grids.
  static_assert(gt::kParam_BLOCK_M == gbt::kParam_BLOCK_M && gt::kParam_SPLIT_K == gbt::kParam_SPLIT_K);
  const int* params = k->image->params;
  planned.block_m = params[gt::kParam_BLOCK_M];
  planned.block_n = params[gt::kParam_BLOCK_N];
  planned.split_k = params[gt::kParam_SPLIT_K];
  planned.tiles = ((M + planned.block_m - 1) / planned.block_m) * ((N + planned.block_n - 1) / planned.block_n);
  // SPLIT_K 0: mm_skinny_kernel, whose split of K (at most the SM count: the grid's y extent) is
  // chosen here. Never batched: the batched grid runs the table's skinny buckets in mm_tma_kernel.
  planned.skinny = planned.split_k == 0;
  if (planned.skinny) {
    const int64_t block_k = params[gt::kParam_BLOCK_K];
    planned.split_k = gemm_tuning::skinny_splits(planned.tiles, (K + block_k - 1) / block_k, sm_count(device));
  }
  if (p.batch * planned.tiles * planned.split_k > kMaxI32) return Fallback::kIndex64;
  planned.kernel = k;
  planned.tma = true;
  return Fallback::kNone;
}

}  // namespace

Matrix matrix(const at::Tensor& t) {
  const int64_t d = t.dim();
  return {t.const_data_ptr(), t.size(d - 2), t.size(d - 1), t.stride(d - 2), t.stride(d - 1), d == 3 ? t.stride(0) : 0};
}

Fallback plan(Problem& p, c10::ScalarType scalar_type, bool aten_override, c10::DeviceIndex device, Plan& planned) {
  std::optional<Layout> lc = layout_of(p.c);
  if (lc && !lc->row) {
    // A col-major C is the row-major C^T = B^T A^T; a bias row would become a column.
    if (p.epilogue.kind == Epilogue::kBiasRow) return Fallback::kArgs;
    p = {p.b.t(), p.a.t(), p.c.t(), p.c_aligned, p.batch, p.batched, transposed(p.epilogue)};
    lc = layout_of(p.c);
  }
  const std::optional<Layout> la = layout_of(p.a), lb = layout_of(p.b);
  if (!la || !lb || !lc) return Fallback::kLayout;
  const int64_t M = p.a.rows, K = p.a.cols, N = p.b.cols;
  const Epilogue& e = p.epilogue;
  if (M > kMaxDim || N > kMaxDim || K > kMaxDim || la->lead > kMaxI32 || lb->lead > kMaxI32 || lc->lead > kMaxI32 ||
      p.batch > kMaxI32 || e.stride_n > kMaxI32 || e.stride_m > kMaxI32) {
    return Fallback::kIndex64;
  }
  planned.a_row = la->row, planned.b_row = lb->row;
  planned.lead_a = la->lead, planned.lead_b = lb->lead, planned.lead_c = lc->lead;
  // ATen's cuBLAS path reads the same flag (torch.backends.cuda.matmul.allow_tf32 and
  // torch.set_float32_matmul_precision both set it).
  const bool fp32 = scalar_type == c10::ScalarType::Float;
  const bool tf32 = fp32 && at::globalContext().allowTF32CuBLAS();
  const int klass = !fp32 ? gemm_tuning::k16bit : tf32 ? gemm_tuning::kTf32 : gemm_tuning::kIeee;
  const int target = device_target(device);
  const int64_t size = c10::elementSize(scalar_type);
  if (klass != gemm_tuning::kIeee && (target == 90 || target == 100) &&
      tma_describes(p.a, *la, size, aligned16(p.a.data), p.batch) &&
      tma_describes(p.b, *lb, size, aligned16(p.b.data), p.batch) &&
      tma_describes(p.c, *lc, size, p.c_aligned, p.batch)) {
    return plan_tma(p, scalar_type, klass, *la, *lb, target, aten_override, device, planned);
  }
  if (e.kind != Epilogue::kNone) return Fallback::kArgs;  // the pointer kernel has no epilogue
  // Exact fp32 has table rows too, for routing only (the pointer kernel has one configuration).
  if (klass == gemm_tuning::kIeee && tuned_config(target, klass, *la, *lb, M, N, K, aten_override) < 0) {
    return Fallback::kTuned;
  }
  // Exactly the hints of the "aligned" variants: pointers, leading strides, N and K, and M when
  // A is col-major (then M is its contiguous dimension); batched, the batch strides (0 keeps each
  // matrix aligned too). A leading stride of 0 (an expanded operand) is divisible by 16 but takes
  // the general variant.
  const auto lead_ok = [](const Layout& l) { return l.lead > 0 && l.lead % 16 == 0; };
  const bool batch_ok = !p.batched || (p.a.batch_stride % 16 == 0 && p.b.batch_stride % 16 == 0 &&
                                       p.c.batch_stride % 16 == 0);
  const bool aligned = aligned16(p.a.data) && aligned16(p.b.data) && p.c_aligned && lead_ok(*la) && lead_ok(*lb) &&
                       lead_ok(*lc) && N % 16 == 0 && K % 16 == 0 && (la->row || M % 16 == 0) && batch_ok;
  const int precision = tf32 ? g::precision_tf32 : g::precision_ieee;
  const int a_layout = la->row ? g::a_layout_row : g::a_layout_col;
  const int b_layout = lb->row ? g::b_layout_row : g::b_layout_col;
  const int align = aligned ? g::align_aligned : g::align_general;
  // The batched grid has the same axes.
  static_assert(g::kNum_align == gb::kNum_align && g::kParam_BLOCK_N == gb::kParam_BLOCK_N);
  const int id = p.batched ? gb::find(gb::dtype_of(scalar_type), precision, a_layout, b_layout, align)
                           : g::find(g::dtype_of(scalar_type), precision, a_layout, b_layout, align);
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  planned.block_m = k->image->params[g::kParam_BLOCK_M];
  planned.block_n = k->image->params[g::kParam_BLOCK_N];
  planned.tiles = ((M + planned.block_m - 1) / planned.block_m) * ((N + planned.block_n - 1) / planned.block_n);
  if (planned.tiles > kMaxI32 || p.batch > kMaxGridY) return Fallback::kIndex64;
  planned.kernel = k;
  planned.tma = false;
  return Fallback::kNone;
}

void launch_plan(const Plan& planned, const Problem& p, c10::DeviceIndex device) {
  const int64_t M = p.a.rows, K = p.a.cols, N = p.b.cols;
  KernelArgs args;
  args.ptr(p.a.data);
  args.ptr(p.b.data);
  args.ptr(p.c.data);
  if (!planned.tma) {
    args.i32(static_cast<int32_t>(M));
    args.i32(static_cast<int32_t>(N));
    args.i32(static_cast<int32_t>(K));
    // Each operand's unit stride is a constexpr of the variant: only the leading strides are
    // arguments (stride_am or stride_ak, stride_bk or stride_bn, stride_cm, in that order).
    args.i32(static_cast<int32_t>(planned.lead_a));
    args.i32(static_cast<int32_t>(planned.lead_b));
    args.i32(static_cast<int32_t>(planned.lead_c));
    if (p.batched) {
      args.i64(p.a.batch_stride);
      args.i64(p.b.batch_stride);
      args.i64(p.c.batch_stride);
    }
    gems::launch(*planned.kernel, device, static_cast<uint32_t>(planned.tiles), static_cast<uint32_t>(p.batch), 1,
                 args);
    return;
  }
  const int64_t tiles = p.batch * planned.tiles;
  // Split-K: per tile a zeroed arrival counter, then split_k fp32 partial tiles. Freed after the
  // launch: the caching allocator hands the block out again only to later work on this stream.
  c10::DataPtr workspace;
  void* counters = nullptr;
  void* partial = nullptr;
  if (planned.split_k > 1) {
    const int64_t counter_bytes = (tiles * 4 + 255) / 256 * 256;
    const int64_t partial_bytes = tiles * planned.split_k * planned.block_m * planned.block_n * 4;
    workspace = c10::cuda::CUDACachingAllocator::get()->allocate(counter_bytes + partial_bytes);
    counters = workspace.get();
    partial = static_cast<char*>(workspace.get()) + counter_bytes;
    zero_words_async(counters, static_cast<size_t>(tiles), device);
  }
  const Epilogue& e = p.epilogue;
  args.ptr(e.kind == Epilogue::kNone ? p.c.data : e.data);
  args.ptr(partial);
  args.ptr(counters);
  args.i32(static_cast<int32_t>(M));
  args.i32(static_cast<int32_t>(N));
  args.i32(static_cast<int32_t>(K));
  args.i32(static_cast<int32_t>(planned.lead_a));
  args.i32(static_cast<int32_t>(planned.lead_b));
  args.i32(static_cast<int32_t>(planned.lead_c));
  args.i32(static_cast<int32_t>(e.stride_n));
  args.f32(e.alpha);
  args.f32(e.beta);
  if (p.batched) {
    const auto [batch_a, stride_a] = descriptor_batch(p.a, {planned.a_row, planned.lead_a}, p.batch);
    const auto [batch_b, stride_b] = descriptor_batch(p.b, {planned.b_row, planned.lead_b}, p.batch);
    // C's extent is the batch (a batch of one gets the same stand-in stride).
    const int64_t stride_c = descriptor_batch(p.c, {true, planned.lead_c}, p.batch).second;
    args.i32(static_cast<int32_t>(p.batch));
    args.i32(batch_a);
    args.i32(batch_b);
    args.i64(stride_a);
    args.i64(stride_b);
    args.i64(stride_c);
    args.i32(static_cast<int32_t>(e.stride_m));
    args.i64(e.stride_batch);
  }
  // The skinny kernel: a program per (tile, K split); the others: persistent programs.
  const uint32_t grid_x = planned.skinny ? static_cast<uint32_t>(tiles)
                                         : persistent_grid(*planned.kernel, device, tiles * planned.split_k);
  const uint32_t grid_y = planned.skinny ? static_cast<uint32_t>(planned.split_k) : 1;
  gems::launch(*planned.kernel, device, grid_x, grid_y, 1, args);
}

PlannedOutput planned_output(const at::Tensor& out, at::IntArrayRef shape) {
  PlannedOutput o;
  const size_t d = shape.size();
  if (out.defined() && out.sizes() == shape) {
    for (size_t i = 0; i < d; ++i) o.strides[3 - d + i] = out.stride(static_cast<int64_t>(i));
    o.aligned = aligned16(out.const_data_ptr());
    return o;
  }
  // Contiguous, as torch allocates it and as resize_ restrides it.
  int64_t stride = 1;
  for (size_t i = d; i-- > 0;) {
    o.strides[3 - d + i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  // resize_ keeps the storage offset, in the same storage or (too small) a new, aligned one.
  o.aligned = !out.defined() ||
              (aligned16(out.storage().data()) && (out.storage_offset() * out.element_size()) % 16 == 0);
  return o;
}

bool overlaps(const at::Tensor& out, std::initializer_list<const at::Tensor*> inputs) {
  // get_overlap_status would answer "too hard" for any strided out=, so compare storages.
  if (at::has_internal_overlap(out) == at::MemOverlap::Yes) return true;
  for (const at::Tensor* t : inputs) {
    if (t && out.storage().is_alias_of(t->storage())) return true;
  }
  return false;
}

Fallback plan_and_launch(Problem& p, at::IntArrayRef shape, const at::Tensor& a, bool aten_override, bool given_out,
                         at::Tensor& out) {
  const PlannedOutput o = planned_output(out, shape);
  p.c = {nullptr, p.a.rows, p.b.cols, o.strides[1], o.strides[2], o.strides[0]};
  p.c_aligned = o.aligned;
  const c10::DeviceIndex device = a.device().index();
  c10::cuda::CUDAGuard guard(device);
  const bool empty = c10::multiply_integers(shape) == 0;
  const int64_t K = p.a.cols;
  Plan planned;
  if (!empty && K > 0) {
    const Fallback r = plan(p, a.scalar_type(), aten_override, device, planned);
    if (r != Fallback::kNone) return r;
  }
  if (given_out) {
    at::native::resize_output(out, shape);
  } else {
    out = at::detail::empty_cuda(shape, a.scalar_type(), a.device(), std::nullopt);
  }
  if (empty) return Fallback::kNone;
  if (K == 0) {
    out.zero_();
    return Fallback::kNone;
  }
  p.c.data = out.mutable_data_ptr();
  launch_plan(planned, p, device);
  return Fallback::kNone;
}

namespace {

// The checks and messages of torch's mm (its structured meta function), in its order.
void check_inputs(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2, "self must be a matrix");
  TORCH_CHECK(b.dim() == 2, "mat2 must be a matrix");
  TORCH_CHECK(a.size(1) == b.size(0), "mat1 and mat2 shapes cannot be multiplied (", a.size(0), "x", a.size(1),
              " and ", b.size(0), "x", b.size(1), ")");
  TORCH_CHECK(a.dtype() == b.dtype(), "expected mat1 and mat2 to have the same dtype, but got: ", a.dtype(), " != ",
              b.dtype());
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
std::optional<Epilogue> bias_row(const at::Tensor& self, int64_t N, const c10::Scalar& beta, const c10::Scalar& alpha) {
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
  return Epilogue{Epilogue::kBiasRow, self.const_data_ptr(), stride, 0, 0, alpha.to<float>(), beta.to<float>()};
}

// mm (self undefined) or addmm, for the aten override or a gems:: call: out undefined allocates
// the result as torch does (contiguous M x N); out defined is the .out overload, resized as torch
// resizes it; a row-major out is written in place, a col-major one (mm only) as C^T = B^T A^T.
// Every fallback is decided before the output is allocated or resized.
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
  if (g::dtype_of(a.scalar_type()) < 0) return Fallback::kDtype;
  if (given_out && out.scalar_type() != a.scalar_type()) return Fallback::kMixedDtype;

  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  Problem p{matrix(a), matrix(b)};
  if (self) {
    const std::optional<Epilogue> bias = bias_row(*self, N, beta, alpha);
    // K == 0 leaves beta * self, which ATen computes.
    if (!bias || K == 0) return Fallback::kArgs;
    p.epilogue = *bias;
  }
  // An out= sharing memory with an input (addmm_ writes into self) gets ATen's semantics.
  if (given_out && overlaps(out, {&a, &b, self})) return Fallback::kLayout;
  return plan_and_launch(p, {M, N}, a, aten_override, given_out, out);
}

}  // namespace
}  // namespace gems::gemm

namespace gems {
using gemm::run_gemm;

namespace cuda {
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  at::Tensor out;
  const Fallback r = run_gemm(false, self, mat2, out);
  if (r != Fallback::kNone) unsupported("gems::mm", r, {&self, &mat2});
  return out;
}

at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const c10::Scalar& beta,
                 const c10::Scalar& alpha) {
  at::Tensor out;
  const Fallback r = run_gemm(false, mat1, mat2, out, &self, beta, alpha);
  if (r != Fallback::kNone) unsupported("gems::addmm", r, {&self, &mat1, &mat2});
  return out;
}
}  // namespace cuda

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
  m.def("_set_gemm_routing(bool on) -> bool", [](bool on) { return gems::gemm::g_route_to_aten.exchange(on); });
  m.def("_gemm_tuning() -> str[]", []() -> std::vector<std::string> {
    return {gems::gemm_tuning::kTunedCases, gems::gemm_tuning::kRoutedCases};
  });
}
