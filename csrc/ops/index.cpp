// Index driver: embedding, index_select along dim 0 (functional and out=) and
// embedding_dense_backward, as aten overrides and gems ops (kernels/index.py, declared in
// aot/family_index.py).
//
// Every entry point plans first (the argument checks, the kernels, the geometry) and allocates
// nothing before the plan holds. What the plan does not cover goes to ATen's kernel (counted),
// which also raises ATen's errors for arguments ATen rejects; a torch.ops.gems call on such
// arguments raises ATen's error from the aten op run on meta copies, and on arguments gems does
// not cover a gems error saying why.
//
// Fallback reasons: kArgs    shapes ATen rejects, index_select along another dim than 0, an out=
//                            of another dtype
//                   kDevice  operands not on one CUDA device
//                   kDtype   a table that is not fp32 / fp16 / bf16, indices not int32 / int64
//                   kLayout  a strided table or input; an out= that is strided or overlaps an
//                            operand
//                   kIndex64 more programs than a grid takes; the backward's int32 workspace
//                   kArch    no image for this GPU
#include <ATen/MemoryOverlap.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/embedding_compositeexplicitautograd_dispatch.h>
#include <ATen/ops/embedding_dense_backward.h>
#include <ATen/ops/embedding_dense_backward_cuda_dispatch.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/index_select_cuda_dispatch.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "gems_index_ops.h"
#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace gr = gen::gather_rows;
namespace eb = gen::embedding_bucket;
namespace es = gen::embedding_scan;
namespace em = gen::embedding_sum;

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

bool plain(const at::Tensor& x) { return !x.is_neg() && !x.is_conj(); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A kernel of `grid_find`'s id on the device, or why none.
Fallback load(int id, const at::Tensor& on, const LoadedKernel*& k) {
  if (id < 0) return Fallback::kDtype;
  k = kernel_for(id, on.device().index());
  return k ? Fallback::kNone : Fallback::kArch;
}

at::Tensor to_meta(const at::Tensor& x) {
  return at::empty_strided(x.sizes(), x.strides(), x.options().device(at::kMeta));
}

// =============================================================================================
// The gather: rows of a contiguous table viewed as [V, D]
// =============================================================================================

struct Gather {
  const LoadedKernel* kernel = nullptr;
  int64_t n = 0, v = 0, d = 1, idx_s = 1, d_blocks = 1, programs = 0;
};

// `index` holds the N row numbers at stride idx_s; out_aligned: the result is 16-byte aligned.
Fallback plan_gather(const at::Tensor& table, const at::Tensor& index, int64_t idx_s, bool out_aligned, Gather& g) {
  if (!table.is_cuda() || index.device() != table.device()) return Fallback::kDevice;
  const int dtype = gr::dtype_of(table.scalar_type()), idx = gr::idx_of(index.scalar_type());
  if (dtype < 0 || idx < 0) return Fallback::kDtype;
  if (!table.is_contiguous() || !plain(table)) return Fallback::kLayout;
  g.v = table.size(0);
  for (int64_t i = 1; i < table.dim(); ++i) g.d *= table.size(i);
  g.n = index.numel();
  g.idx_s = idx_s;
  const bool aligned = out_aligned && g.d % 16 == 0 && aligned16(table.const_data_ptr());
  int id = aligned ? gr::find(idx, dtype, gr::align_16) : -1;
  if (id < 0) id = gr::find(idx, dtype, gr::align_any);
  const Fallback r = load(id, table, g.kernel);
  if (r != Fallback::kNone) return r;
  g.d_blocks = std::max<int64_t>(1, ceil_div(g.d, g.kernel->image->params[gr::kParam_BLOCK_D]));
  g.programs = ceil_div(g.n, g.kernel->image->params[gr::kParam_ROWS]) * g.d_blocks;
  return g.d_blocks > kMaxInt32 || g.programs > kMaxInt32 ? Fallback::kIndex64 : Fallback::kNone;
}

void launch_gather(const Gather& g, const at::Tensor& table, const at::Tensor& index, const at::Tensor& out) {
  if (g.n == 0 || g.d == 0) return;
  KernelArgs args;
  args.ptr(table.const_data_ptr());
  args.ptr(index.const_data_ptr());
  args.ptr(out.mutable_data_ptr());
  for (int64_t v : {g.n, g.v, g.d, g.idx_s}) args.i64(v);
  args.i32(static_cast<int32_t>(g.d_blocks));
  launch(*g.kernel, table.device().index(), static_cast<uint32_t>(g.programs), 1, 1, args);
}

// embedding: a 2-D weight, indices of any shape; the result [*indices.shape, D].
Fallback embedding_functional(const at::Tensor& weight, const at::Tensor& indices, at::Tensor& result) {
  if (weight.dim() != 2) return Fallback::kArgs;
  Gather g;
  const Fallback r = plan_gather(weight, indices, 1, true, g);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(weight.device());
  std::vector<int64_t> sizes(indices.sizes().begin(), indices.sizes().end());
  sizes.push_back(g.d);
  result = at::detail::empty_cuda(sizes, weight.scalar_type(), weight.device(), std::nullopt);
  launch_gather(g, weight, indices.contiguous(), result);  // ATen's composite reshapes them too
  return Fallback::kNone;
}

// index_select along dim 0 of a contiguous input of one or more dims, a 0-d or 1-d index.
Fallback plan_index_select(const at::Tensor& self, int64_t dim, const at::Tensor& index, bool out_aligned, Gather& g,
                           std::vector<int64_t>& sizes) {
  const int64_t ndim = self.dim();
  if (ndim == 0 || index.dim() > 1 || dim < -ndim || dim >= ndim) return Fallback::kArgs;
  if (dim != 0 && dim != -ndim) return Fallback::kArgs;
  const Fallback r = plan_gather(self, index, index.dim() == 1 ? index.stride(0) : 1, out_aligned, g);
  if (r != Fallback::kNone) return r;
  sizes.assign(self.sizes().begin(), self.sizes().end());
  sizes[0] = g.n;
  return Fallback::kNone;
}

Fallback index_select_functional(const at::Tensor& self, int64_t dim, const at::Tensor& index, at::Tensor& result) {
  Gather g;
  std::vector<int64_t> sizes;
  const Fallback r = plan_index_select(self, dim, index, true, g, sizes);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(self.device());
  result = at::detail::empty_cuda(sizes, self.scalar_type(), self.device(), std::nullopt);
  launch_gather(g, self, index, result);
  return Fallback::kNone;
}

Fallback index_select_into(const at::Tensor& self, int64_t dim, const at::Tensor& index, at::Tensor& out) {
  Gather g;
  std::vector<int64_t> sizes;
  Fallback r = plan_index_select(self, dim, index, true, g, sizes);
  if (r != Fallback::kNone) return r;
  if (out.scalar_type() != self.scalar_type()) return Fallback::kArgs;
  if (out.device() != self.device()) return Fallback::kDevice;
  // As ATen's assert_no_overlap: only a known overlap counts (a strided index is "too hard" to
  // tell, and ATen's kernel goes ahead there too).
  const auto overlaps = [&](const at::Tensor& other) {
    const at::MemOverlapStatus status = at::get_overlap_status(out, other);
    return status == at::MemOverlapStatus::Full || status == at::MemOverlapStatus::Partial;
  };
  if (overlaps(self) || overlaps(index)) return Fallback::kLayout;
  at::native::resize_output(out, sizes);
  // An out= off 16-byte alignment runs ATen's kernel: the unaligned variant wrote wrong rows into
  // one on an H200 (test_index_select_and_out), a bug not found yet.
  if (!out.is_contiguous() || !plain(out) || !aligned16(out.const_data_ptr())) return Fallback::kLayout;
  c10::cuda::CUDAGuard guard(self.device());
  launch_gather(g, self, index, out);
  return Fallback::kNone;
}

// =============================================================================================
// embedding_dense_backward: a counting sort of positions by row, then a sum per row
// =============================================================================================

struct Backward {
  const LoadedKernel* count = nullptr;
  const LoadedKernel* bucket = nullptr;
  const LoadedKernel* sort = nullptr;
  const LoadedKernel* scan = nullptr;
  const LoadedKernel* sum = nullptr;
  int64_t n = 0, v = 0, d = 0, d_blocks = 1;
};

// ATen's kernel views the gradient as [N, D] (D its last size) after making the gradient and the
// indices contiguous (a loss's sum gives an expanded gradient); so does backward_functional.
Fallback plan_backward(const at::Tensor& grad, const at::Tensor& indices, int64_t num_weights, bool freq,
                       Backward& b) {
  if (!grad.is_cuda() || indices.device() != grad.device()) return Fallback::kDevice;
  const int dtype = em::dtype_of(grad.scalar_type()), idx = eb::idx_of(indices.scalar_type());
  if (dtype < 0 || idx < 0) return Fallback::kDtype;
  if (grad.dim() == 0 || num_weights < 0) return Fallback::kArgs;
  b.n = indices.numel();
  b.v = num_weights;
  b.d = grad.size(-1);
  if (grad.numel() != b.n * b.d) return Fallback::kArgs;
  if (!plain(grad)) return Fallback::kLayout;
  // Positions, counts and bucket slots are int32.
  if (b.n >= kMaxInt32 || b.v >= kMaxInt32) return Fallback::kIndex64;
  const bool aligned = b.d % 16 == 0 && aligned16(grad.const_data_ptr());
  const int freq_axis = freq ? em::freq_scaled : em::freq_plain;
  int sum = aligned ? em::find(dtype, em::align_16, freq_axis) : -1;
  if (sum < 0) sum = em::find(dtype, em::align_any, freq_axis);
  for (auto [id, k] : {std::pair{eb::find(eb::step_count, idx), &b.count},
                       std::pair{eb::find(eb::step_bucket, idx), &b.bucket},
                       std::pair{eb::find(eb::step_sort, idx), &b.sort}, std::pair{es::find(es::counts_i32), &b.scan},
                       std::pair{sum, &b.sum}}) {
    const Fallback r = load(id, grad, *k);
    if (r != Fallback::kNone) return r;
  }
  b.d_blocks = std::max<int64_t>(1, ceil_div(b.d, b.sum->image->params[em::kParam_BLOCK_D]));
  return b.v * b.d_blocks > kMaxInt32 ? Fallback::kIndex64 : Fallback::kNone;
}

void launch_backward(const Backward& b, const at::Tensor& grad, const at::Tensor& indices, int64_t padding_idx,
                     const at::Tensor& result) {
  if (b.v == 0 || b.d == 0) return;
  const c10::DeviceIndex device = grad.device().index();
  // counts [V + 1] (the last: indices out of range), starts [V + 1], unsorted [N], sorted [N].
  at::Tensor work = at::detail::empty_cuda({2 * (b.v + 1) + 2 * b.n}, at::kInt, grad.device(), std::nullopt);
  int32_t* counts = work.mutable_data_ptr<int32_t>();
  int32_t* starts = counts + b.v + 1;
  int32_t* unsorted = starts + b.v + 1;
  int32_t* sorted = unsorted + b.n;
  zero_words_async(counts, static_cast<size_t>(b.v + 1), device);
  const auto programs = [&](const LoadedKernel* k) {
    return static_cast<uint32_t>(ceil_div(b.n, k->image->params[eb::kParam_BLOCK]));
  };
  if (b.n > 0) {
    KernelArgs count;
    count.ptr(indices.const_data_ptr());
    count.ptr(counts);
    for (int64_t v : {b.n, b.v, padding_idx}) count.i64(v);
    launch(*b.count, device, programs(b.count), 1, 1, count);
  }
  KernelArgs scan;
  scan.ptr(counts);
  scan.ptr(starts);
  scan.i64(b.v);
  launch(*b.scan, device, 1, 1, 1, scan);
  if (b.n > 0) {
    KernelArgs bucket;
    bucket.ptr(indices.const_data_ptr());
    bucket.ptr(counts);
    bucket.ptr(starts);
    bucket.ptr(unsorted);
    for (int64_t v : {b.n, b.v, padding_idx}) bucket.i64(v);
    launch(*b.bucket, device, programs(b.bucket), 1, 1, bucket);
    KernelArgs sort;
    sort.ptr(indices.const_data_ptr());
    sort.ptr(starts);
    sort.ptr(unsorted);
    sort.ptr(sorted);
    sort.i64(b.v);
    launch(*b.sort, device, programs(b.sort), 1, 1, sort);
  }
  KernelArgs sum;
  sum.ptr(grad.const_data_ptr());
  sum.ptr(counts);
  sum.ptr(starts);
  sum.ptr(sorted);
  sum.ptr(result.mutable_data_ptr());
  sum.i64(b.v);
  sum.i64(b.d);
  sum.i32(static_cast<int32_t>(b.d_blocks));
  launch(*b.sum, device, static_cast<uint32_t>(b.v * b.d_blocks), 1, 1, sum);
}

Fallback backward_functional(const at::Tensor& grad, const at::Tensor& indices, int64_t num_weights,
                             int64_t padding_idx, bool freq, at::Tensor& result) {
  Backward b;
  const Fallback r = plan_backward(grad, indices, num_weights, freq, b);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(grad.device());
  result = at::detail::empty_cuda({b.v, b.d}, grad.scalar_type(), grad.device(), std::nullopt);
  launch_backward(b, grad.contiguous(), indices.contiguous(), padding_idx, result);
  return Fallback::kNone;
}

}  // namespace

// =============================================================================================
// Entry points
// =============================================================================================

// -- embedding (CompositeExplicitAutograd in ATen: its fallback is that kernel) --

at::Tensor aten_impl::embedding(const at::Tensor& weight, const at::Tensor& indices, int64_t padding_idx,
                                bool scale_grad_by_freq, bool sparse) {
  static FallbackCounter& counter = fallback_counter("embedding");
  at::Tensor result;
  const Fallback r = embedding_functional(weight, indices, result);
  counter.hit(r);
  return r == Fallback::kNone
             ? result
             : at::compositeexplicitautograd::embedding(weight, indices, padding_idx, scale_grad_by_freq, sparse);
}

at::Tensor cuda::embedding(const at::Tensor& weight, const at::Tensor& indices, int64_t padding_idx,
                           bool scale_grad_by_freq, bool sparse) {
  at::Tensor result;
  const Fallback r = embedding_functional(weight, indices, result);
  if (r == Fallback::kArgs || r == Fallback::kDtype) {
    at::embedding(to_meta(weight), to_meta(indices), padding_idx, scale_grad_by_freq, sparse);
  }
  if (r != Fallback::kNone) unsupported("gems::embedding", r, {&weight, &indices});
  return result;
}

// -- index_select --

at::Tensor aten_impl::index_select(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  static FallbackCounter& counter = fallback_counter("index_select");
  at::Tensor result;
  const Fallback r = index_select_functional(self, dim, index, result);
  counter.hit(r);
  return r == Fallback::kNone ? result : at::cuda::index_select(self, dim, index);
}

at::Tensor& aten_impl::index_select_out(const at::Tensor& self, int64_t dim, const at::Tensor& index,
                                        at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("index_select.out");
  const Fallback r = index_select_into(self, dim, index, out);
  counter.hit(r);
  return r == Fallback::kNone ? out : at::cuda::index_select_outf(self, dim, index, out);
}

at::Tensor cuda::index_select(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  at::Tensor result;
  const Fallback r = index_select_functional(self, dim, index, result);
  if (r == Fallback::kArgs || r == Fallback::kDtype) at::index_select(to_meta(self), dim, to_meta(index));
  if (r != Fallback::kNone) unsupported("gems::index_select", r, {&self, &index});
  return result;
}

// -- embedding_dense_backward --

at::Tensor aten_impl::embedding_dense_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                               int64_t num_weights, int64_t padding_idx, bool scale_grad_by_freq) {
  static FallbackCounter& counter = fallback_counter("embedding_dense_backward");
  at::Tensor result;
  const Fallback r = backward_functional(grad_output, indices, num_weights, padding_idx, scale_grad_by_freq, result);
  counter.hit(r);
  return r == Fallback::kNone ? result
                              : at::cuda::embedding_dense_backward(grad_output, indices, num_weights, padding_idx,
                                                                   scale_grad_by_freq);
}

at::Tensor cuda::embedding_dense_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                          int64_t num_weights, int64_t padding_idx, bool scale_grad_by_freq) {
  at::Tensor result;
  const Fallback r = backward_functional(grad_output, indices, num_weights, padding_idx, scale_grad_by_freq, result);
  if (r == Fallback::kArgs || r == Fallback::kDtype) {
    at::embedding_dense_backward(to_meta(grad_output), to_meta(indices), num_weights, padding_idx,
                                 scale_grad_by_freq);
  }
  if (r != Fallback::kNone) unsupported("gems::embedding_dense_backward", r, {&grad_output, &indices});
  return result;
}

}  // namespace gems
