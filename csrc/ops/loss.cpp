// Loss driver: nll_loss_forward / nll_loss_backward (1-D and 2-D input), nll_loss2d_forward /
// nll_loss2d_backward ([N, C, H, W] input) and mse_loss / mse_loss_backward, each functional and
// out=, as aten overrides and gems ops (kernels/loss.py, declared in aot/family_loss.py).
//
// Every entry point plans first (plan_*: the argument checks, the kernels, the geometry) and
// allocates nothing before the plan holds, so a fallback to ATen costs no allocation. What the
// plan does not cover goes to ATen's own CUDA kernel (counted), which also raises ATen's errors
// for arguments ATen rejects: the plans accept a subset of what ATen's meta functions and CUDA
// kernels accept (aten/src/ATen/native/LossNLL.cpp, cuda/Loss.cu, cuda/NLLLoss2d.cu, Loss.cpp).
// A torch.ops.gems call on arguments ATen rejects raises ATen's error from its meta function
// (run on meta copies), and on arguments gems does not cover a gems error saying why. The gems
// ops' fake implementations are the aten ops' (aot/family_loss.py GEMS_OPS, meta_from_aten).
//
// Fallback reasons: kArgs   shapes or a reduction value ATen rejects, or an out= of a reduced
//                           mse_loss (ATen's resize order is particular there)
//                   kDevice operands not on one CUDA device
//                   kDtype  a dtype without kernels (fp64; a target that is not int64)
//                   kMixedDtype operands of different dtypes (ATen promotes mse_loss's)
//                   kLayout nll_loss2d operands whose spatial dims do not collapse, mse operands
//                           that are not contiguous or differ in shape (broadcasts), an out=
//                           that is strided or overlaps an operand
//                   kIndex64 more programs than a grid takes
//                   kArch   no image for this GPU
#include <ATen/MemoryOverlap.h>
#include <ATen/core/Reduction.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/mse_loss_backward_cuda_dispatch.h>
#include <ATen/ops/mse_loss_cuda_dispatch.h>
#include <ATen/ops/mse_loss_meta_dispatch.h>
#include <ATen/ops/nll_loss2d_backward_cuda_dispatch.h>
#include <ATen/ops/nll_loss2d_forward_cuda_dispatch.h>
#include <ATen/ops/nll_loss_backward_cuda_dispatch.h>
#include <ATen/ops/nll_loss_backward_meta_dispatch.h>
#include <ATen/ops/nll_loss_forward_cuda_dispatch.h>
#include <ATen/ops/nll_loss_forward_meta_dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "gems_kernels.h"
#include "gems_loss_ops.h"
#include "loss_tables.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace t = loss_tables;
namespace nf = gen::nll_fwd;
namespace nb = gen::nll_bwd;
namespace lf = gen::loss_finish;
namespace mf = gen::mse_fwd;
namespace mb = gen::mse_bwd;

constexpr int64_t kMaxPrograms = std::numeric_limits<int32_t>::max();

bool plain(const at::Tensor& x) { return !x.is_neg() && !x.is_conj(); }

// A kernel of `grid_find`'s id on the device, or why none.
Fallback load(int id, const at::Tensor& on, const LoadedKernel*& k) {
  if (id < 0) return Fallback::kDtype;
  k = kernel_for(id, on.device().index());
  return k ? Fallback::kNone : Fallback::kArch;
}

// An out= that ATen's kernel would write differently: strided, or overlapping an operand.
Fallback check_out(const at::Tensor& out, std::initializer_list<const at::Tensor*> operands) {
  if (!out.is_contiguous() || !plain(out)) return Fallback::kLayout;
  for (const at::Tensor* x : operands) {
    if (x->defined() && at::get_overlap_status(out, *x) != at::MemOverlapStatus::No) return Fallback::kLayout;
  }
  return Fallback::kNone;
}

// The out= checks of a structured kernel (dtype, device), then ATen's resize (a warning for a
// wrong non-empty size). A dtype or device ATen rejects falls back, for ATen to raise.
Fallback resize_out(at::Tensor& out, const at::Tensor& like, at::IntArrayRef sizes) {
  if (out.scalar_type() != like.scalar_type()) return Fallback::kArgs;
  if (out.device() != like.device()) return Fallback::kDevice;
  at::native::resize_output(out, sizes);
  return Fallback::kNone;
}

at::Tensor to_meta(const at::Tensor& x) {
  return x.defined() ? at::empty_strided(x.sizes(), x.strides(), x.options().device(at::kMeta)) : x;
}

std::optional<at::Tensor> to_meta(const std::optional<at::Tensor>& x) {
  if (!x.has_value() || !x->defined()) return x;
  return to_meta(*x);
}

// =============================================================================================
// nll_loss: rows of classes, a target each
// =============================================================================================

// The operands of an nll call, as a (rows, classes, inner) view: row r is the outer index
// r / inner and the inner index r % inner (inner = H * W for nll_loss2d, else 1).
struct NllView {
  int64_t rows = 1, inner = 1, classes = 1;
  int64_t x_so = 0, x_si = 0, x_sc = 1, t_s = 0, w_s = 0;
  bool none = false;  // a loss (a gradient) per row: reduction none of 2-D or 4-D input
  int mode = 0;  // kernels/loss.py: 0 sum (or none), 1 mean, 2 the mean of a 1-D input
};

// nll_loss: ATen's meta function's checks, as the subset it covers (anything else: kArgs).
Fallback view_nll(const at::Tensor& self, const at::Tensor& target, const at::Tensor& weight, int64_t reduction,
                  NllView& v) {
  if (reduction < 0 || reduction > 2) return Fallback::kArgs;
  if (self.dim() == 1) {
    if (target.dim() != 0) return Fallback::kArgs;
    v.rows = 1;
    v.classes = self.size(0);
    v.x_sc = self.stride(0);
  } else if (self.dim() == 2) {
    if (target.dim() != 1 || target.size(0) != self.size(0)) return Fallback::kArgs;
    v.rows = self.size(0);
    v.classes = self.size(1);
    v.x_so = self.stride(0);
    v.x_sc = self.stride(1);
    v.t_s = target.stride(0);
  } else {
    return Fallback::kArgs;
  }
  if (weight.defined() && (weight.dim() != 1 || weight.numel() != v.classes)) return Fallback::kArgs;
  v.none = reduction == at::Reduction::None && self.dim() == 2;
  v.mode = reduction == at::Reduction::Mean ? (self.dim() == 1 ? 2 : 1) : 0;
  return Fallback::kNone;
}

// nll_loss2d: ATen's check_inputs_nll_loss2d; the spatial dims must collapse into one, and the
// target must be contiguous (its rows are read as one run).
Fallback view_nll2d(const at::Tensor& self, const at::Tensor& target, const at::Tensor& weight, int64_t reduction,
                    NllView& v) {
  if (reduction < 0 || reduction > 2 || target.dim() != 3 || self.dim() != 4) return Fallback::kArgs;
  if (weight.defined() && weight.numel() != self.size(1)) return Fallback::kArgs;
  if (self.size(0) != target.size(0) || self.size(2) != target.size(1) || self.size(3) != target.size(2)) {
    return Fallback::kArgs;
  }
  if (weight.defined() && weight.dim() != 1) return Fallback::kLayout;
  const int64_t h = self.size(2), w = self.size(3);
  if (w == 1) {
    v.x_si = self.stride(2);
  } else if (h == 1 || self.stride(2) == w * self.stride(3)) {
    v.x_si = self.stride(3);
  } else {
    return Fallback::kLayout;
  }
  if (!target.is_contiguous()) return Fallback::kLayout;
  v.inner = h * w;
  v.rows = self.size(0) * v.inner;
  v.classes = self.size(1);
  v.x_so = self.stride(0);
  v.x_sc = self.stride(1);
  v.t_s = 1;
  v.none = reduction == at::Reduction::None;
  v.mode = reduction == at::Reduction::Mean ? 1 : 0;
  return Fallback::kNone;
}

// Devices and dtypes: the input's float dtype, an int64 target, a weight of the input's dtype.
Fallback check_nll_operands(std::initializer_list<const at::Tensor*> same_dtype, const at::Tensor& target) {
  const at::Tensor& self = **same_dtype.begin();
  if (!self.is_cuda() || target.device() != self.device()) return Fallback::kDevice;
  for (const at::Tensor* x : same_dtype) {
    if (!x->defined()) continue;
    if (x->device() != self.device()) return Fallback::kDevice;
    if (x->scalar_type() != self.scalar_type()) return Fallback::kMixedDtype;
    if (!plain(*x)) return Fallback::kLayout;
  }
  if (target.scalar_type() != at::kLong) return Fallback::kDtype;
  return Fallback::kNone;
}

struct NllForwardPlan {
  NllView v;
  const LoadedKernel* kernel = nullptr;
  const LoadedKernel* finish = nullptr;  // a split reduction's second launch
  t::Partials split{1, 0};
  int64_t programs = 1;
};

Fallback plan_nll_forward(bool two_d, const at::Tensor& self, const at::Tensor& target, const at::Tensor& weight,
                          int64_t reduction, NllForwardPlan& p) {
  Fallback r = two_d ? view_nll2d(self, target, weight, reduction, p.v) : view_nll(self, target, weight, reduction, p.v);
  if (r == Fallback::kNone) r = check_nll_operands({&self, &weight}, target);
  if (r != Fallback::kNone) return r;
  if (weight.defined()) p.v.w_s = weight.stride(0);
  const int dtype = nf::dtype_of(self.scalar_type());
  r = load(dtype < 0 ? -1 : nf::find(p.v.none ? nf::reduce_none : nf::reduce_reduce, dtype), self, p.kernel);
  if (r != Fallback::kNone) return r;
  const int64_t block = p.kernel->image->params[nf::kParam_BLOCK];
  if (p.v.none) {
    p.programs = std::max<int64_t>(1, (p.v.rows + block - 1) / block);
    return p.programs > kMaxPrograms ? Fallback::kIndex64 : Fallback::kNone;
  }
  p.split = t::plan_partials(p.v.rows, block);
  p.programs = p.split.programs;
  if (p.programs > 1) return load(lf::find(lf::loss_nll, lf::dtype_of(self.scalar_type())), self, p.finish);
  return Fallback::kNone;
}

void launch_nll_forward(const NllForwardPlan& p, const at::Tensor& self, const at::Tensor& target,
                        const at::Tensor& weight, int64_t ignore_index, const at::Tensor& output,
                        const at::Tensor& total_weight) {
  const c10::DeviceIndex device = self.device().index();
  // A reduction over several programs sums their partials in a second launch (the plan loaded
  // its `finish` kernel); reduction none writes each row's loss directly, whatever the count.
  const bool split = p.finish != nullptr;
  at::Tensor parts;
  if (split) parts = at::detail::empty_cuda({2 * p.programs}, at::kFloat, self.device(), std::nullopt);
  KernelArgs args;
  args.ptr(self.const_data_ptr());
  args.ptr(target.const_data_ptr());
  args.ptr(weight.defined() ? weight.const_data_ptr() : nullptr);
  args.ptr(output.mutable_data_ptr());
  args.ptr(total_weight.mutable_data_ptr());
  args.ptr(parts.defined() ? parts.mutable_data_ptr() : nullptr);
  for (int64_t v : {p.v.rows, p.v.inner, p.v.classes, p.v.x_so, p.v.x_si, p.v.x_sc, p.v.t_s, p.v.w_s}) args.i64(v);
  args.i64(ignore_index);
  args.i32(weight.defined() ? 1 : 0);
  args.i32(p.v.mode);
  args.i64(p.split.chunk);
  launch(*p.kernel, device, static_cast<uint32_t>(p.programs), 1, 1, args);
  if (split) {
    KernelArgs fin;
    fin.ptr(parts.const_data_ptr());
    fin.ptr(output.mutable_data_ptr());
    fin.ptr(total_weight.mutable_data_ptr());
    fin.i32(static_cast<int32_t>(p.programs));
    fin.i32(p.v.mode);
    fin.f32(1.0f);
    launch(*p.finish, device, 1, 1, 1, fin);
  }
}

std::vector<int64_t> nll_output_sizes(bool two_d, const at::Tensor& self, const NllView& v) {
  if (!v.none) return {};
  if (two_d) return {self.size(0), self.size(2), self.size(3)};
  return {self.size(0)};
}

Fallback nll_forward_functional(bool two_d, const at::Tensor& self, const at::Tensor& target,
                                const at::Tensor& weight, int64_t reduction, int64_t ignore_index,
                                std::tuple<at::Tensor, at::Tensor>& result) {
  NllForwardPlan p;
  const Fallback r = plan_nll_forward(two_d, self, target, weight, reduction, p);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(self.device());
  at::Tensor output = at::detail::empty_cuda(nll_output_sizes(two_d, self, p.v), self.scalar_type(), self.device(),
                                             std::nullopt);
  at::Tensor total_weight = at::detail::empty_cuda({}, self.scalar_type(), self.device(), std::nullopt);
  launch_nll_forward(p, self, target, weight, ignore_index, output, total_weight);
  result = {output, total_weight};
  return Fallback::kNone;
}

Fallback nll_forward_into(bool two_d, const at::Tensor& self, const at::Tensor& target, const at::Tensor& weight,
                          int64_t reduction, int64_t ignore_index, at::Tensor& output, at::Tensor& total_weight) {
  NllForwardPlan p;
  Fallback r = plan_nll_forward(two_d, self, target, weight, reduction, p);
  if (r == Fallback::kNone) r = resize_out(output, self, nll_output_sizes(two_d, self, p.v));
  // nll_loss's structured kernel resizes total_weight as an output (a warning for a wrong size);
  // nll_loss2d's kernel with resize_ (none).
  if (r == Fallback::kNone && !two_d) r = resize_out(total_weight, self, {});
  if (r == Fallback::kNone && two_d) {
    if (total_weight.scalar_type() != self.scalar_type()) return Fallback::kArgs;
    if (total_weight.device() != self.device()) return Fallback::kDevice;
    total_weight.resize_({});
  }
  if (r != Fallback::kNone) return r;
  // A strided loss of reduction none: ATen's kernel writes it as if contiguous; left to ATen.
  if (!output.is_contiguous() || !plain(output) || !plain(total_weight)) return Fallback::kLayout;
  for (const at::Tensor* o : {&output, &total_weight}) {
    for (const at::Tensor* x : {&self, &target, &weight}) {
      if (x->defined() && at::get_overlap_status(*o, *x) != at::MemOverlapStatus::No) return Fallback::kLayout;
    }
  }
  if (at::get_overlap_status(output, total_weight) != at::MemOverlapStatus::No) return Fallback::kLayout;
  c10::cuda::CUDAGuard guard(self.device());
  launch_nll_forward(p, self, target, weight, ignore_index, output, total_weight);
  return Fallback::kNone;
}

struct NllBackwardPlan {
  NllView v;
  const LoadedKernel* kernel = nullptr;
  int64_t col_blocks = 1, programs = 0, go_s = 0;
};

Fallback plan_nll_backward(bool two_d, const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                           const at::Tensor& weight, int64_t reduction, const at::Tensor& total_weight,
                           bool out_aligned, NllBackwardPlan& p) {
  Fallback r = two_d ? view_nll2d(self, target, weight, reduction, p.v) : view_nll(self, target, weight, reduction, p.v);
  if (r != Fallback::kNone) return r;
  if (total_weight.numel() != 1) return Fallback::kArgs;
  // nll_loss2d's gradient is empty_like(self), which ATen's kernel requires to be contiguous.
  if (two_d && !self.is_contiguous()) return Fallback::kLayout;
  if (p.v.none) {
    const bool shaped = two_d ? grad_output.sizes() == target.sizes() : grad_output.dim() == 1 &&
                                                                            grad_output.size(0) == p.v.rows;
    if (!shaped) return Fallback::kArgs;
    if (two_d && !grad_output.is_contiguous()) return Fallback::kLayout;
    p.go_s = two_d ? 1 : grad_output.stride(0);
  } else if (grad_output.numel() != 1 || (!two_d && grad_output.dim() > 1)) {
    return Fallback::kArgs;
  }
  r = check_nll_operands({&self, &grad_output, &weight, &total_weight}, target);
  if (r != Fallback::kNone) return r;
  if (weight.defined()) p.v.w_s = weight.stride(0);
  const bool strided = p.v.inner > 1;
  const int kind = t::kind_for(strided, p.v.classes);
  const int dtype = nb::dtype_of(self.scalar_type());
  const bool aligned = out_aligned && (strided ? p.v.inner : p.v.classes) % 16 == 0;
  int id = dtype >= 0 && aligned ? nb::find(kind, dtype, nb::align_16) : -1;
  if (id < 0 && dtype >= 0) id = nb::find(kind, dtype, nb::align_any);
  r = load(id, self, p.kernel);
  if (r != Fallback::kNone) return r;
  const int64_t rows = p.kernel->image->params[nb::kParam_ROWS];
  const int64_t block_c = p.kernel->image->params[nb::kParam_BLOCK_C];
  p.col_blocks = std::max<int64_t>(1, (p.v.classes + block_c - 1) / block_c);
  const int64_t row_blocks = strided ? (p.v.rows / p.v.inner) * ((p.v.inner + rows - 1) / rows)
                                     : (p.v.rows + rows - 1) / rows;
  p.programs = row_blocks * p.col_blocks;
  return p.programs > kMaxPrograms ? Fallback::kIndex64 : Fallback::kNone;
}

void launch_nll_backward(const NllBackwardPlan& p, const at::Tensor& grad_output, const at::Tensor& target,
                         const at::Tensor& weight, int64_t ignore_index, const at::Tensor& total_weight,
                         const at::Tensor& grad_input) {
  if (grad_input.numel() == 0) return;
  KernelArgs args;
  args.ptr(grad_output.const_data_ptr());
  args.ptr(target.const_data_ptr());
  args.ptr(weight.defined() ? weight.const_data_ptr() : nullptr);
  args.ptr(total_weight.const_data_ptr());
  args.ptr(grad_input.mutable_data_ptr());
  for (int64_t v : {p.v.rows, p.v.inner, p.v.classes, p.v.t_s, p.v.w_s, p.go_s, ignore_index}) args.i64(v);
  args.i32(weight.defined() ? 1 : 0);
  args.i32(p.v.none ? 0 : p.v.mode == 0 ? 1 : 2);
  args.i64(p.col_blocks);
  launch(*p.kernel, grad_input.device().index(), static_cast<uint32_t>(p.programs), 1, 1, args);
}

Fallback nll_backward_functional(bool two_d, const at::Tensor& grad_output, const at::Tensor& self,
                                 const at::Tensor& target, const at::Tensor& weight, int64_t reduction,
                                 int64_t ignore_index, const at::Tensor& total_weight, at::Tensor& result) {
  NllBackwardPlan p;
  const Fallback r = plan_nll_backward(two_d, grad_output, self, target, weight, reduction, total_weight, true, p);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(self.device());
  result = at::detail::empty_cuda(self.sizes(), self.scalar_type(), self.device(), std::nullopt);
  launch_nll_backward(p, grad_output, target, weight, ignore_index, total_weight, result);
  return Fallback::kNone;
}

Fallback nll_backward_into(bool two_d, const at::Tensor& grad_output, const at::Tensor& self,
                           const at::Tensor& target, const at::Tensor& weight, int64_t reduction,
                           int64_t ignore_index, const at::Tensor& total_weight, at::Tensor& grad_input) {
  NllBackwardPlan p;
  Fallback r = plan_nll_backward(two_d, grad_output, self, target, weight, reduction, total_weight, true, p);
  // nll_loss's structured kernel resizes grad_input as an output (a warning for a wrong size);
  // nll_loss2d's kernel with resize_as_ (none).
  if (r == Fallback::kNone && !two_d) r = resize_out(grad_input, self, self.sizes());
  if (r == Fallback::kNone && two_d) {
    if (grad_input.scalar_type() != self.scalar_type()) return Fallback::kArgs;
    if (grad_input.device() != self.device()) return Fallback::kDevice;
    grad_input.resize_(self.sizes());
  }
  if (r == Fallback::kNone) r = check_out(grad_input, {&grad_output, &self, &target, &weight, &total_weight});
  if (r != Fallback::kNone) return r;
  if (!aligned16(grad_input.const_data_ptr())) {  // replan with the unaligned kernel
    r = plan_nll_backward(two_d, grad_output, self, target, weight, reduction, total_weight, false, p);
    if (r != Fallback::kNone) return r;
  }
  c10::cuda::CUDAGuard guard(self.device());
  launch_nll_backward(p, grad_output, target, weight, ignore_index, total_weight, grad_input);
  return Fallback::kNone;
}

// =============================================================================================
// mse_loss
// =============================================================================================

struct MsePlan {
  const LoadedKernel* kernel = nullptr;
  const LoadedKernel* finish = nullptr;
  t::Partials split{1, 0};
  int64_t programs = 0, n = 0;
};

// Same shape, dtype and device, contiguous: what the kernels take (ATen broadcasts and promotes).
Fallback check_mse_operands(std::initializer_list<const at::Tensor*> operands) {
  const at::Tensor& first = **operands.begin();
  if (!first.is_cuda()) return Fallback::kDevice;
  for (const at::Tensor* x : operands) {
    if (x->device() != first.device()) return Fallback::kDevice;
    if (x->scalar_type() != first.scalar_type()) return Fallback::kMixedDtype;
    if (x->sizes() != first.sizes() || !x->is_contiguous() || !plain(*x)) return Fallback::kLayout;
  }
  return Fallback::kNone;
}

bool all_aligned(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers) {
    if (!aligned16(p)) return false;
  }
  return true;
}

Fallback plan_mse(const at::Tensor& self, const at::Tensor& target, int64_t reduction, bool aligned, MsePlan& p) {
  if (reduction < 0 || reduction > 2) return Fallback::kArgs;
  Fallback r = check_mse_operands({&self, &target});
  if (r != Fallback::kNone) return r;
  p.n = self.numel();
  const int dtype = mf::dtype_of(self.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  const bool reduce = reduction != at::Reduction::None;
  aligned = aligned && p.n % 16 == 0 && all_aligned({self.const_data_ptr(), target.const_data_ptr()});
  const int form = reduce ? mf::reduce_reduce : mf::reduce_none;
  int id = aligned ? mf::find(form, dtype, mf::align_16) : -1;
  if (id < 0) id = mf::find(form, dtype, mf::align_any);
  r = load(id, self, p.kernel);
  if (r != Fallback::kNone) return r;
  const int64_t block = p.kernel->image->params[mf::kParam_BLOCK];
  if (!reduce) {
    p.programs = (p.n + block - 1) / block;
    return p.programs > kMaxPrograms ? Fallback::kIndex64 : Fallback::kNone;
  }
  p.split = t::plan_partials(p.n, block);
  p.programs = p.split.programs;
  if (p.programs > 1) return load(lf::find(lf::loss_mse, lf::dtype_of(self.scalar_type())), self, p.finish);
  return Fallback::kNone;
}

void launch_mse(const MsePlan& p, const at::Tensor& self, const at::Tensor& target, int64_t reduction,
                const at::Tensor& out) {
  if (p.programs == 0) return;  // reduction none of no elements
  const c10::DeviceIndex device = self.device().index();
  // ATen's CUDA mean multiplies the sum by float(1) / float(n) (NaN for no elements).
  const float scale = reduction != at::Reduction::Mean ? 1.0f
                      : p.n == 0 ? std::numeric_limits<float>::quiet_NaN()
                                 : 1.0f / static_cast<float>(p.n);
  const bool split = p.finish != nullptr;  // as in launch_nll_forward: reduction none has none
  at::Tensor parts;
  if (split) parts = at::detail::empty_cuda({p.programs}, at::kFloat, self.device(), std::nullopt);
  KernelArgs args;
  args.ptr(self.const_data_ptr());
  args.ptr(target.const_data_ptr());
  args.ptr(out.mutable_data_ptr());
  args.ptr(parts.defined() ? parts.mutable_data_ptr() : nullptr);
  args.i64(p.n);
  args.i64(p.split.chunk);
  args.f32(scale);
  launch(*p.kernel, device, static_cast<uint32_t>(p.programs), 1, 1, args);
  if (split) {
    KernelArgs fin;
    fin.ptr(parts.const_data_ptr());
    fin.ptr(out.mutable_data_ptr());
    fin.ptr(nullptr);
    fin.i32(static_cast<int32_t>(p.programs));
    fin.i32(0);
    fin.f32(scale);
    launch(*p.finish, device, 1, 1, 1, fin);
  }
}

Fallback mse_functional(const at::Tensor& self, const at::Tensor& target, int64_t reduction, at::Tensor& result) {
  MsePlan p;
  const Fallback r = plan_mse(self, target, reduction, true, p);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(self.device());
  const bool reduce = reduction != at::Reduction::None;
  result = at::detail::empty_cuda(reduce ? at::IntArrayRef{} : self.sizes(), self.scalar_type(), self.device(),
                                  std::nullopt);
  launch_mse(p, self, target, reduction, result);
  return Fallback::kNone;
}

Fallback mse_into(const at::Tensor& self, const at::Tensor& target, int64_t reduction, at::Tensor& out) {
  // A reduced out=: ATen's meta function resizes it as the elementwise result first (a warning
  // for an out= of one element), then to 0-d; left to ATen.
  if (reduction != at::Reduction::None) return Fallback::kArgs;
  MsePlan p;
  Fallback r = plan_mse(self, target, reduction, true, p);
  if (r == Fallback::kNone) r = resize_out(out, self, self.sizes());
  if (r == Fallback::kNone) r = check_out(out, {&self, &target});
  if (r != Fallback::kNone) return r;
  if (!aligned16(out.const_data_ptr())) {
    r = plan_mse(self, target, reduction, false, p);
    if (r != Fallback::kNone) return r;
  }
  c10::cuda::CUDAGuard guard(self.device());
  launch_mse(p, self, target, reduction, out);
  return Fallback::kNone;
}

struct MseBackwardPlan {
  const LoadedKernel* kernel = nullptr;
  int64_t programs = 0, n = 0;
  float alpha = 0;
};

// ATen's alpha: 2 / numel (mean) or 2, a double converted to the dtype (Scalar::to<scalar_t>).
float mse_alpha(int64_t reduction, int64_t n, c10::ScalarType dtype) {
  const double norm = reduction == at::Reduction::Mean ? 2.0 / static_cast<double>(n) : 2.0;
  const float f = static_cast<float>(norm);
  if (dtype == at::kHalf) return static_cast<float>(c10::Half(f));
  if (dtype == at::kBFloat16) return static_cast<float>(c10::BFloat16(f));
  return f;
}

Fallback plan_mse_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                           int64_t reduction, bool aligned, MseBackwardPlan& p) {
  if (reduction < 0 || reduction > 2) return Fallback::kArgs;
  Fallback r = check_mse_operands({&self, &target});
  if (r != Fallback::kNone) return r;
  const bool scalar = grad_output.dim() == 0;
  if (grad_output.device() != self.device()) return Fallback::kDevice;
  if (grad_output.scalar_type() != self.scalar_type()) return Fallback::kMixedDtype;
  if (!scalar) {
    r = check_mse_operands({&self, &grad_output});
    if (r != Fallback::kNone) return r;
  } else if (!plain(grad_output)) {
    return Fallback::kLayout;
  }
  p.n = self.numel();
  const int dtype = mb::dtype_of(self.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  aligned = aligned && p.n % 16 == 0 && all_aligned({self.const_data_ptr(), target.const_data_ptr()}) &&
            (scalar || aligned16(grad_output.const_data_ptr()));
  const int form = scalar ? mb::grad_scalar : mb::grad_full;
  int id = aligned ? mb::find(form, dtype, mb::align_16) : -1;
  if (id < 0) id = mb::find(form, dtype, mb::align_any);
  r = load(id, self, p.kernel);
  if (r != Fallback::kNone) return r;
  const int64_t block = p.kernel->image->params[mb::kParam_BLOCK];
  p.programs = (p.n + block - 1) / block;
  p.alpha = mse_alpha(reduction, p.n, self.scalar_type());
  return p.programs > kMaxPrograms ? Fallback::kIndex64 : Fallback::kNone;
}

void launch_mse_backward(const MseBackwardPlan& p, const at::Tensor& grad_output, const at::Tensor& self,
                         const at::Tensor& target, const at::Tensor& grad_input) {
  if (p.programs == 0) return;
  KernelArgs args;
  args.ptr(grad_output.const_data_ptr());
  args.ptr(self.const_data_ptr());
  args.ptr(target.const_data_ptr());
  args.ptr(grad_input.mutable_data_ptr());
  args.i64(p.n);
  args.f32(p.alpha);
  launch(*p.kernel, self.device().index(), static_cast<uint32_t>(p.programs), 1, 1, args);
}

Fallback mse_backward_functional(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                                 int64_t reduction, at::Tensor& result) {
  MseBackwardPlan p;
  const Fallback r = plan_mse_backward(grad_output, self, target, reduction, true, p);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(self.device());
  result = at::detail::empty_cuda(self.sizes(), self.scalar_type(), self.device(), std::nullopt);
  launch_mse_backward(p, grad_output, self, target, result);
  return Fallback::kNone;
}

Fallback mse_backward_into(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                           int64_t reduction, at::Tensor& grad_input) {
  MseBackwardPlan p;
  Fallback r = plan_mse_backward(grad_output, self, target, reduction, true, p);
  if (r == Fallback::kNone) r = resize_out(grad_input, self, self.sizes());
  if (r == Fallback::kNone) r = check_out(grad_input, {&grad_output, &self, &target});
  if (r != Fallback::kNone) return r;
  if (!aligned16(grad_input.const_data_ptr())) {
    r = plan_mse_backward(grad_output, self, target, reduction, false, p);
    if (r != Fallback::kNone) return r;
  }
  c10::cuda::CUDAGuard guard(self.device());
  launch_mse_backward(p, grad_output, self, target, grad_input);
  return Fallback::kNone;
}

const at::Tensor& or_undefined(const std::optional<at::Tensor>& w) {
  static const at::Tensor undefined;
  return w.has_value() ? *w : undefined;
}

// nll_loss2d has no meta function in ATen's C++: the checks of its CUDA kernel
// (check_inputs_nll_loss2d), for a torch.ops.gems call ATen would reject.
void check_nll2d(const at::Tensor& self, const at::Tensor& target, const at::Tensor& weight) {
  TORCH_CHECK(target.dim() == 3, "only batches of spatial targets supported (3D tensors) but got targets of size: : ",
              target.sizes());
  TORCH_CHECK(self.dim() == 4, "only batches of spatial inputs supported (4D tensors), but got input of size: ",
              self.sizes());
  TORCH_CHECK(!weight.defined() || weight.numel() == self.size(1),
              "weight tensor should be defined either for all or no classes");
  TORCH_CHECK(self.size(0) == target.size(0) && self.size(2) == target.size(1) && self.size(3) == target.size(2),
              "input and target batch or spatial sizes don't match: target ", target.sizes(), ", input ",
              self.sizes());
}

}  // namespace

// =============================================================================================
// Entry points
// =============================================================================================

// -- nll_loss_forward --

std::tuple<at::Tensor, at::Tensor> aten_impl::nll_loss_forward(const at::Tensor& self, const at::Tensor& target,
                                                               const std::optional<at::Tensor>& weight,
                                                               int64_t reduction, int64_t ignore_index) {
  static FallbackCounter& counter = fallback_counter("nll_loss_forward");
  std::tuple<at::Tensor, at::Tensor> result;
  const Fallback r = nll_forward_functional(false, self, target, or_undefined(weight), reduction, ignore_index, result);
  counter.hit(r);
  return r == Fallback::kNone ? result : at::cuda::nll_loss_forward(self, target, weight, reduction, ignore_index);
}

std::tuple<at::Tensor&, at::Tensor&> aten_impl::nll_loss_forward_output(
    const at::Tensor& self, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction,
    int64_t ignore_index, at::Tensor& output, at::Tensor& total_weight) {
  static FallbackCounter& counter = fallback_counter("nll_loss_forward.output");
  const Fallback r =
      nll_forward_into(false, self, target, or_undefined(weight), reduction, ignore_index, output, total_weight);
  counter.hit(r);
  if (r != Fallback::kNone) {
    return at::cuda::nll_loss_forward_outf(self, target, weight, reduction, ignore_index, output, total_weight);
  }
  return {output, total_weight};
}

std::tuple<at::Tensor, at::Tensor> cuda::nll_loss_forward(const at::Tensor& self, const at::Tensor& target,
                                                          const std::optional<at::Tensor>& weight, int64_t reduction,
                                                          int64_t ignore_index) {
  std::tuple<at::Tensor, at::Tensor> result;
  const Fallback r = nll_forward_functional(false, self, target, or_undefined(weight), reduction, ignore_index, result);
  if (r == Fallback::kArgs) at::meta::nll_loss_forward(to_meta(self), to_meta(target), to_meta(weight), reduction,
                                                       ignore_index);
  if (r != Fallback::kNone) unsupported("gems::nll_loss_forward", r, {&self, &target});
  return result;
}

// -- nll_loss2d_forward --

std::tuple<at::Tensor, at::Tensor> aten_impl::nll_loss2d_forward(const at::Tensor& self, const at::Tensor& target,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 int64_t reduction, int64_t ignore_index) {
  static FallbackCounter& counter = fallback_counter("nll_loss2d_forward");
  std::tuple<at::Tensor, at::Tensor> result;
  const Fallback r = nll_forward_functional(true, self, target, or_undefined(weight), reduction, ignore_index, result);
  counter.hit(r);
  return r == Fallback::kNone ? result : at::cuda::nll_loss2d_forward(self, target, weight, reduction, ignore_index);
}

std::tuple<at::Tensor&, at::Tensor&> aten_impl::nll_loss2d_forward_output(
    const at::Tensor& self, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction,
    int64_t ignore_index, at::Tensor& output, at::Tensor& total_weight) {
  static FallbackCounter& counter = fallback_counter("nll_loss2d_forward.output");
  const Fallback r =
      nll_forward_into(true, self, target, or_undefined(weight), reduction, ignore_index, output, total_weight);
  counter.hit(r);
  if (r != Fallback::kNone) {
    return at::cuda::nll_loss2d_forward_outf(self, target, weight, reduction, ignore_index, output, total_weight);
  }
  return {output, total_weight};
}

std::tuple<at::Tensor, at::Tensor> cuda::nll_loss2d_forward(const at::Tensor& self, const at::Tensor& target,
                                                            const std::optional<at::Tensor>& weight,
                                                            int64_t reduction, int64_t ignore_index) {
  std::tuple<at::Tensor, at::Tensor> result;
  const Fallback r = nll_forward_functional(true, self, target, or_undefined(weight), reduction, ignore_index, result);
  if (r == Fallback::kArgs) check_nll2d(self, target, or_undefined(weight));
  if (r != Fallback::kNone) unsupported("gems::nll_loss2d_forward", r, {&self, &target});
  return result;
}

// -- nll_loss_backward --

at::Tensor aten_impl::nll_loss_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                                        const std::optional<at::Tensor>& weight, int64_t reduction,
                                        int64_t ignore_index, const at::Tensor& total_weight) {
  static FallbackCounter& counter = fallback_counter("nll_loss_backward");
  at::Tensor result;
  const Fallback r = nll_backward_functional(false, grad_output, self, target, or_undefined(weight), reduction,
                                             ignore_index, total_weight, result);
  counter.hit(r);
  return r == Fallback::kNone ? result
                              : at::cuda::nll_loss_backward(grad_output, self, target, weight, reduction, ignore_index,
                                                            total_weight);
}

at::Tensor& aten_impl::nll_loss_backward_grad_input(const at::Tensor& grad_output, const at::Tensor& self,
                                                    const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                                    int64_t reduction, int64_t ignore_index,
                                                    const at::Tensor& total_weight, at::Tensor& grad_input) {
  static FallbackCounter& counter = fallback_counter("nll_loss_backward.grad_input");
  const Fallback r = nll_backward_into(false, grad_output, self, target, or_undefined(weight), reduction, ignore_index,
                                       total_weight, grad_input);
  counter.hit(r);
  if (r != Fallback::kNone) {
    return at::cuda::nll_loss_backward_outf(grad_output, self, target, weight, reduction, ignore_index, total_weight,
                                            grad_input);
  }
  return grad_input;
}

at::Tensor cuda::nll_loss_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                                   const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                                   const at::Tensor& total_weight) {
  at::Tensor result;
  const Fallback r = nll_backward_functional(false, grad_output, self, target, or_undefined(weight), reduction,
                                             ignore_index, total_weight, result);
  if (r == Fallback::kArgs) {
    at::meta::nll_loss_backward(to_meta(grad_output), to_meta(self), to_meta(target), to_meta(weight), reduction,
                                ignore_index, to_meta(total_weight));
  }
  if (r != Fallback::kNone) unsupported("gems::nll_loss_backward", r, {&grad_output, &self, &target});
  return result;
}

// -- nll_loss2d_backward --

at::Tensor aten_impl::nll_loss2d_backward(const at::Tensor& grad_output, const at::Tensor& self,
                                          const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                          int64_t reduction, int64_t ignore_index, const at::Tensor& total_weight) {
  static FallbackCounter& counter = fallback_counter("nll_loss2d_backward");
  at::Tensor result;
  const Fallback r = nll_backward_functional(true, grad_output, self, target, or_undefined(weight), reduction,
                                             ignore_index, total_weight, result);
  counter.hit(r);
  return r == Fallback::kNone ? result
                              : at::cuda::nll_loss2d_backward(grad_output, self, target, weight, reduction,
                                                              ignore_index, total_weight);
}

at::Tensor& aten_impl::nll_loss2d_backward_grad_input(const at::Tensor& grad_output, const at::Tensor& self,
                                                      const at::Tensor& target,
                                                      const std::optional<at::Tensor>& weight, int64_t reduction,
                                                      int64_t ignore_index, const at::Tensor& total_weight,
                                                      at::Tensor& grad_input) {
  static FallbackCounter& counter = fallback_counter("nll_loss2d_backward.grad_input");
  const Fallback r = nll_backward_into(true, grad_output, self, target, or_undefined(weight), reduction, ignore_index,
                                       total_weight, grad_input);
  counter.hit(r);
  if (r != Fallback::kNone) {
    return at::cuda::nll_loss2d_backward_outf(grad_output, self, target, weight, reduction, ignore_index,
                                              total_weight, grad_input);
  }
  return grad_input;
}

at::Tensor cuda::nll_loss2d_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                                     const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                                     const at::Tensor& total_weight) {
  at::Tensor result;
  const Fallback r = nll_backward_functional(true, grad_output, self, target, or_undefined(weight), reduction,
                                             ignore_index, total_weight, result);
  if (r == Fallback::kArgs) check_nll2d(self, target, or_undefined(weight));
  if (r != Fallback::kNone) unsupported("gems::nll_loss2d_backward", r, {&grad_output, &self, &target});
  return result;
}

// -- mse_loss --

at::Tensor aten_impl::mse_loss(const at::Tensor& self, const at::Tensor& target, int64_t reduction) {
  static FallbackCounter& counter = fallback_counter("mse_loss");
  at::Tensor result;
  const Fallback r = mse_functional(self, target, reduction, result);
  counter.hit(r);
  return r == Fallback::kNone ? result : at::cuda::mse_loss(self, target, reduction);
}

at::Tensor& aten_impl::mse_loss_out(const at::Tensor& self, const at::Tensor& target, int64_t reduction,
                                    at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("mse_loss.out");
  const Fallback r = mse_into(self, target, reduction, out);
  counter.hit(r);
  return r == Fallback::kNone ? out : at::cuda::mse_loss_outf(self, target, reduction, out);
}

at::Tensor cuda::mse_loss(const at::Tensor& self, const at::Tensor& target, int64_t reduction) {
  at::Tensor result;
  const Fallback r = mse_functional(self, target, reduction, result);
  if (r == Fallback::kArgs) at::meta::mse_loss(to_meta(self), to_meta(target), reduction);
  if (r != Fallback::kNone) unsupported("gems::mse_loss", r, {&self, &target});
  return result;
}

// -- mse_loss_backward --

at::Tensor aten_impl::mse_loss_backward(const at::Tensor& grad_output, const at::Tensor& self,
                                        const at::Tensor& target, int64_t reduction) {
  static FallbackCounter& counter = fallback_counter("mse_loss_backward");
  at::Tensor result;
  const Fallback r = mse_backward_functional(grad_output, self, target, reduction, result);
  counter.hit(r);
  return r == Fallback::kNone ? result : at::cuda::mse_loss_backward(grad_output, self, target, reduction);
}

at::Tensor& aten_impl::mse_loss_backward_grad_input(const at::Tensor& grad_output, const at::Tensor& self,
                                                    const at::Tensor& target, int64_t reduction,
                                                    at::Tensor& grad_input) {
  static FallbackCounter& counter = fallback_counter("mse_loss_backward.grad_input");
  const Fallback r = mse_backward_into(grad_output, self, target, reduction, grad_input);
  counter.hit(r);
  return r == Fallback::kNone ? grad_input
                              : at::cuda::mse_loss_backward_outf(grad_output, self, target, reduction, grad_input);
}

at::Tensor cuda::mse_loss_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                                   int64_t reduction) {
  at::Tensor result;
  const Fallback r = mse_backward_functional(grad_output, self, target, reduction, result);
  if (r != Fallback::kNone) unsupported("gems::mse_loss_backward", r, {&grad_output, &self, &target});
  return result;
}

}  // namespace gems
