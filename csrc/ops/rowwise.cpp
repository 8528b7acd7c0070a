// Row-wise driver: softmax and log_softmax, forward and backward, through one path; and
// LayerNorm and RMSNorm over the trailing dims, forward and backward, through another (below).
// Softmax views the contiguous operands, with no copy, as (outer, N, inner) around the
// normalised dim, picks the kind by layout and N (rowwise_tables.h, generated from
// aot/family_rowwise.py KINDS) and launches one kernel of kernels/rowwise.py. Everything is
// decided before the output is allocated, so a fallback allocates nothing. Checks, result dtypes
// and strides are those of ATen's meta functions and CUDA kernels (aten/src/ATen/native/
// SoftMax.cpp, cuda/SoftMax.cu; native/layer_norm.cpp, cuda/layer_norm_kernel.cu).
#include "ops/rowwise.h"

#include <ATen/AccumulateType.h>
#include <ATen/TensorUtils.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/native/layer_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>
#include <sstream>

#include "gems_kernels.h"
#include "gems_rowwise_ops.h"
#include "runtime/kernels.h"

namespace gems::rowwise {
namespace {

namespace g = gen::rowwise;
namespace t = rowwise_tables;

// A launch, decided: the kernel, the (outer, N, inner) view and the program count.
struct Prepared {
  const LoadedKernel* kernel = nullptr;
  int64_t outer = 1, n = 1, inner = 1;
  int64_t programs = 0;
};

bool plain(const at::Tensor& x) { return x.is_contiguous() && !x.is_neg() && !x.is_conj(); }

// in: the operands the kernel reads (all of one dtype and shape, contiguous); dim already wrapped.
Fallback prepare(bool log, int direction, std::initializer_list<const at::Tensor*> in, c10::ScalarType out_dtype,
                 bool out_aligned, int64_t dim, Prepared& p) {
  const at::Tensor& first = **in.begin();
  bool aligned = out_aligned;
  for (const at::Tensor* x : in) {
    if (x->device() != first.device() || !x->is_cuda()) return Fallback::kDevice;
    if (x->scalar_type() != first.scalar_type()) return Fallback::kMixedDtype;
    if (!plain(*x)) return Fallback::kLayout;
    aligned = aligned && aligned16(x->const_data_ptr());
  }
  const int in_index = g::in_dtype_of(first.scalar_type()), out_index = g::out_dtype_of(out_dtype);
  if (in_index < 0 || out_index < 0) return Fallback::kDtype;
  const at::IntArrayRef sizes = first.sizes();
  for (int64_t d = 0; d < static_cast<int64_t>(sizes.size()); ++d) {
    int64_t& part = d < dim ? p.outer : d == dim ? p.n : p.inner;
    part = d == dim ? sizes[d] : part * sizes[d];
  }
  const bool strided = p.inner > 1;
  const int kind = t::kind_for(strided, p.n);
  aligned = aligned && (strided ? p.inner : p.n) % 16 == 0;
  const int op = log ? g::op_log_softmax : g::op_softmax;
  int id = aligned ? g::find(op, direction, kind, in_index, out_index, g::align_16) : -1;
  if (id < 0) id = g::find(op, direction, kind, in_index, out_index, g::align_any);
  if (id < 0) return Fallback::kDtype;
  p.kernel = kernel_for(id, first.device().index());
  if (!p.kernel) return Fallback::kArch;
  const int64_t rows = p.kernel->image->params[g::kParam_ROWS];
  p.programs = strided ? p.outer * ((p.inner + rows - 1) / rows) : (p.outer + rows - 1) / rows;
  if (p.programs > std::numeric_limits<int32_t>::max()) return Fallback::kIndex64;
  return Fallback::kNone;
}

void launch_prepared(const Prepared& p, std::initializer_list<const at::Tensor*> in, const at::Tensor& out) {
  if (out.numel() == 0) return;
  KernelArgs args;
  for (const at::Tensor* x : in) args.ptr(x->const_data_ptr());
  args.ptr(out.mutable_data_ptr());
  args.i64(p.outer);
  args.i64(p.n);
  args.i64(p.inner);
  launch(*p.kernel, out.device().index(), static_cast<uint32_t>(p.programs), 1, 1, args);
}

// -- forward --

c10::ScalarType result_dtype(const Forward& c) { return c.half_to_float ? at::kFloat : c.self.scalar_type(); }

// The CUDA kernel's check (after the meta function's dim check).
void check_kernel(const Forward& c) {
  if (c.half_to_float) {
    TORCH_CHECK(c.self.scalar_type() == at::kHalf, "conversion is supported for Half type only");
  }
}

// -- backward --

// grad_input's dtype: Half for a Float grad of a Half input (half_to_float), else grad's.
c10::ScalarType result_dtype(const Backward& c) {
  const bool to_half = c.grad_output.scalar_type() == at::kFloat && c.input_dtype == at::kHalf;
  return to_half ? at::kHalf : c.grad_output.scalar_type();
}

void check_meta(const Backward& c) {
  if (!c.log) {
    at::TensorArg grad{c.grad_output, "grad", 1}, output{c.output, "output", 2};
    at::checkSameSize("softmax_backward", grad, output);
  }
}

void check_kernel(const Backward& c) {
  if (c.grad_output.scalar_type() != c.input_dtype) {
    TORCH_CHECK(c.grad_output.scalar_type() == at::kFloat && c.input_dtype == at::kHalf,
                "expected input and grad types to match, or input to be at::Half and grad to be at::Float");
  }
}

// _log_softmax_backward_data's meta function checks no sizes: ATen's, whatever it does.
Fallback check_sizes(const Backward& c) {
  return c.grad_output.sizes() == c.output.sizes() ? Fallback::kNone : Fallback::kLayout;
}

// -- shared --

// The structured out= kernel's order: out's dtype and device, then the resize (a warning for a
// wrong non-empty size).
void check_and_resize(const at::Tensor& like, c10::ScalarType dtype, at::Tensor& out) {
  TORCH_CHECK(out.scalar_type() == dtype, "Expected out tensor to have dtype ", c10::scalarTypeToTypeMeta(dtype),
              ", but got ", out.dtype(), " instead");
  TORCH_CHECK(out.device() == like.device(), "Expected out tensor to have device ", like.device(), ", but got ",
              out.device(), " instead");
  at::native::resize_output(out, like.sizes());
}

// An out= that is strided or shares memory with an operand: ATen's behaviour, whatever it is.
Fallback check_out(const at::Tensor& out, std::initializer_list<const at::Tensor*> in) {
  if (!plain(out)) return Fallback::kLayout;
  for (const at::Tensor* x : in) {
    if (out.is_alias_of(*x)) return Fallback::kLayout;
  }
  return Fallback::kNone;
}

std::string describe(std::initializer_list<const at::Tensor*> in, c10::ScalarType out_dtype, int64_t dim) {
  std::ostringstream s;
  for (const at::Tensor* x : in) s << x->scalar_type() << x->sizes() << " strides " << x->strides() << " ";
  s << "dim " << dim << " -> " << out_dtype;
  return s.str();
}

}  // namespace

Fallback functional(const Forward& c, at::Tensor& result) {
  const int64_t dim = at::maybe_wrap_dim(c.dim, c.self.dim());
  check_kernel(c);
  const c10::ScalarType dtype = result_dtype(c);
  c10::cuda::CUDAGuard guard(c.self.device());
  Prepared p;
  Fallback r = prepare(c.log, g::direction_fwd, {&c.self}, dtype, true, dim, p);
  if (r != Fallback::kNone) return r;
  result = at::detail::empty_cuda(c.self.sizes(), dtype, c.self.device(), std::nullopt);
  launch_prepared(p, {&c.self}, result);
  return Fallback::kNone;
}

Fallback functional(const Backward& c, at::Tensor& result) {
  check_meta(c);
  const int64_t dim = at::maybe_wrap_dim(c.dim, c.grad_output.dim());
  check_kernel(c);
  const c10::ScalarType dtype = result_dtype(c);
  Fallback r = check_sizes(c);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(c.grad_output.device());
  Prepared p;
  r = prepare(c.log, g::direction_bwd, {&c.grad_output, &c.output}, dtype, true, dim, p);
  if (r != Fallback::kNone) return r;
  result = at::detail::empty_cuda(c.grad_output.sizes(), dtype, c.grad_output.device(), std::nullopt);
  launch_prepared(p, {&c.grad_output, &c.output}, result);
  return Fallback::kNone;
}

Fallback into(const Forward& c, at::Tensor& out) {
  const int64_t dim = at::maybe_wrap_dim(c.dim, c.self.dim());
  check_and_resize(c.self, result_dtype(c), out);
  check_kernel(c);
  Fallback r = check_out(out, {&c.self});
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(c.self.device());
  Prepared p;
  r = prepare(c.log, g::direction_fwd, {&c.self}, out.scalar_type(), aligned16(out.const_data_ptr()), dim, p);
  if (r == Fallback::kNone) launch_prepared(p, {&c.self}, out);
  return r;
}

Fallback into(const Backward& c, at::Tensor& out) {
  check_meta(c);
  const int64_t dim = at::maybe_wrap_dim(c.dim, c.grad_output.dim());
  check_and_resize(c.grad_output, result_dtype(c), out);
  check_kernel(c);
  Fallback r = check_sizes(c);
  if (r == Fallback::kNone) r = check_out(out, {&c.grad_output, &c.output});
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(c.grad_output.device());
  Prepared p;
  r = prepare(c.log, g::direction_bwd, {&c.grad_output, &c.output}, out.scalar_type(),
              aligned16(out.const_data_ptr()), dim, p);
  if (r == Fallback::kNone) launch_prepared(p, {&c.grad_output, &c.output}, out);
  return r;
}

void unsupported(const char* op, Fallback reason, const Forward& c) {
  gems::unsupported(op, reason, describe({&c.self}, result_dtype(c), c.dim));
}

void unsupported(const char* op, Fallback reason, const Backward& c) {
  gems::unsupported(op, reason, describe({&c.grad_output, &c.output}, result_dtype(c), c.dim));
}

}  // namespace gems::rowwise

// -- LayerNorm and RMSNorm over the trailing dims ---------------------------------------------
//
// Rows of N = prod(normalized_shape) contiguous elements, M = the product of the leading dims.
// The forward launches one norm_fwd (a tile of rows per program); the backward one norm_bwd
// (at most a kind's `programs` programs, each over a strided set of row tiles, writing grad_input
// and one partial row of grad_weight / grad_bias sums in fp32) and, for those gradients, one
// norm_cols that adds the partial rows in a fixed order (no atomics: the same result on every
// run and every GPU). Input, weight, bias and grad_out must be contiguous and of one dtype (fp32,
// fp16, bf16), the saved mean and rstd contiguous fp32 with M elements; anything else runs
// ATen's kernel (counted).
namespace gems::norm {

const std::optional<at::Tensor> kAbsent;
const at::Tensor kUndefined;

namespace {

namespace f = gen::norm_fwd;
namespace b = gen::norm_bwd;
namespace cols = gen::norm_cols;
namespace t = rowwise_tables;

const at::Tensor& given(const std::optional<at::Tensor>& x) { return x.has_value() ? *x : kUndefined; }

struct Rows {
  int64_t m = 0, n = 0;
};

// The checks of the CUDA kernels (ATen's _check_layer_norm_inputs, which its RMSNorm kernels
// share), or those of torch.rms_norm's composite for gems::rms_norm; M and N.
Rows check_inputs(bool composite, const at::Tensor& input, at::IntArrayRef shape, const at::Tensor& weight,
                  const at::Tensor& bias) {
  if (!composite) {
    const auto mn = at::native::_check_layer_norm_inputs(input, shape, weight, bias);
    return {mn.first, mn.second};
  }
  at::native::_check_rms_norm_inputs_symint(input, c10::fromIntArrayRefSlow(shape), weight);
  const int64_t axis = input.dim() - static_cast<int64_t>(shape.size());
  Rows r{1, 1};
  for (int64_t d = 0; d < input.dim(); ++d) (d < axis ? r.m : r.n) *= input.size(d);
  return r;
}

// The statistics' shape: the input's with the normalised dims set to 1 (ATen's view of [M]).
at::DimVector stat_shape(const at::Tensor& input, size_t normalized_dims) {
  at::DimVector shape(input.sizes().begin(), input.sizes().end());
  for (size_t i = shape.size() - normalized_dims; i < shape.size(); ++i) shape[i] = 1;
  return shape;
}

at::Tensor stats_tensor(const at::Tensor& input, int64_t m, size_t normalized_dims) {
  const c10::ScalarType acc = at::toAccumulateType(input.scalar_type(), /*is_cuda=*/true);
  at::Tensor flat = at::detail::empty_cuda({m}, acc, input.device(), std::nullopt);
  return flat.view(stat_shape(input, normalized_dims));
}

// The optional operands: on the input's device, of its dtype, contiguous; else why not.
Fallback check_operands(const at::Tensor& x, std::initializer_list<const at::Tensor*> operands) {
  if (!x.is_cuda()) return Fallback::kDevice;
  for (const at::Tensor* p : operands) {
    if (p->defined() && p->device() != x.device()) return Fallback::kDevice;
  }
  for (const at::Tensor* p : operands) {
    if (p->defined() && p->scalar_type() != x.scalar_type()) return Fallback::kMixedDtype;
  }
  if (!rowwise::plain(x)) return Fallback::kLayout;
  for (const at::Tensor* p : operands) {
    if (p->defined() && !rowwise::plain(*p)) return Fallback::kLayout;
  }
  return Fallback::kNone;
}

bool all_aligned(int64_t n, std::initializer_list<const at::Tensor*> operands) {
  if (n % 16 != 0) return false;
  for (const at::Tensor* p : operands) {
    if (p->defined() && !aligned16(p->const_data_ptr())) return false;
  }
  return true;
}

bool valid_shapes(const at::Tensor& input, at::IntArrayRef shape, const at::Tensor& weight, const at::Tensor& bias) {
  const auto n = static_cast<int64_t>(shape.size());
  if (n == 0 || input.dim() < n || input.sizes().slice(input.dim() - n) != shape) return false;
  return (!weight.defined() || weight.sizes() == shape) && (!bias.defined() || bias.sizes() == shape);
}

}  // namespace

bool valid(const Forward& c) { return valid_shapes(c.input, c.normalized_shape, given(c.weight), given(c.bias)); }

bool valid(const Backward& c) { return valid_shapes(c.input, c.normalized_shape, given(c.weight), given(c.bias)); }

Fallback forward(const Forward& c, Results& out) {
  const at::Tensor& x = c.input;
  const at::Tensor& w = given(c.weight);
  const at::Tensor& bias = given(c.bias);
  const Rows rows = check_inputs(c.composite_checks, x, c.normalized_shape, w, bias);
  Fallback r = check_operands(x, {&w, &bias});
  if (r != Fallback::kNone) return r;
  const int dtype = f::dtype_of(x.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  if (rows.n == 0 && rows.m > 0) return Fallback::kArgs;  // rows of no element: ATen's kernel decides
  const int kind = t::norm_kind_for(rows.n);
  const int norm = c.rms ? f::norm_rms : f::norm_layer;
  const int wi = w.defined() ? f::weight_given : f::weight_none, bi = bias.defined() ? f::bias_given : f::bias_none;
  int id = all_aligned(rows.n, {&x, &w, &bias}) ? f::find(norm, kind, dtype, wi, bi, f::align_16) : -1;
  if (id < 0) id = f::find(norm, kind, dtype, wi, bi, f::align_any);
  if (id < 0) return Fallback::kDtype;
  c10::cuda::CUDAGuard guard(x.device());
  const LoadedKernel* k = kernel_for(id, x.device().index());
  if (!k) return Fallback::kArch;
  const int64_t tile = k->image->params[f::kParam_ROWS];
  const int64_t programs = (rows.m + tile - 1) / tile;
  if (programs > std::numeric_limits<int32_t>::max()) return Fallback::kIndex64;
  out.a = at::detail::empty_cuda(x.sizes(), x.scalar_type(), x.device(), std::nullopt);
  if (c.stats) {
    if (!c.rms) out.b = stats_tensor(x, rows.m, c.normalized_shape.size());
    out.c = stats_tensor(x, rows.m, c.normalized_shape.size());
  }
  if (rows.m == 0) return Fallback::kNone;
  KernelArgs args;
  args.ptr(x.const_data_ptr());
  args.ptr(w.defined() ? w.const_data_ptr() : nullptr);
  args.ptr(bias.defined() ? bias.const_data_ptr() : nullptr);
  args.ptr(out.a.mutable_data_ptr());
  args.ptr(out.b.defined() ? out.b.mutable_data_ptr() : nullptr);
  args.ptr(out.c.defined() ? out.c.mutable_data_ptr() : nullptr);
  args.i64(rows.m);
  args.i64(rows.n);
  // ATen's kernels take eps in their accumulate type (fp32 here); RMSNorm's default is fp32's
  // epsilon (the composite's opmath epsilon).
  args.f32(static_cast<float>(c.eps.value_or(std::numeric_limits<float>::epsilon())));
  args.i32(c.stats ? 1 : 0);
  launch(*k, x.device().index(), static_cast<uint32_t>(programs), 1, 1, args);
  return Fallback::kNone;
}

Fallback backward(const Backward& c, Results& out) {
  const at::Tensor& x = c.input;
  const at::Tensor& dy = c.grad_out;
  const at::Tensor& w = given(c.weight);
  const at::Tensor& bias = given(c.bias);
  const Rows rows = check_inputs(false, x, c.normalized_shape, w, bias);
  Fallback r = check_operands(x, {&dy, &w, &bias});
  if (r != Fallback::kNone) return r;
  for (const at::Tensor* s : {&c.mean, &c.rstd}) {
    if (!s->defined()) continue;
    if (s->device() != x.device()) return Fallback::kDevice;
    if (s->scalar_type() != at::kFloat) return Fallback::kMixedDtype;
    if (!s->is_contiguous() || s->numel() != rows.m) return Fallback::kLayout;
  }
  if (!c.rstd.defined() || (!c.rms && !c.mean.defined())) return Fallback::kArgs;
  if (dy.sizes() != x.sizes()) return Fallback::kLayout;
  const int dtype = b::dtype_of(x.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  // A gradient of an absent weight or bias, or of a bias without a weight: ATen's kernel decides.
  if ((c.mask[1] && !w.defined()) || (c.mask[2] && (!bias.defined() || !w.defined()))) return Fallback::kArgs;
  const bool sums = c.mask[1] || c.mask[2];
  const int partials = c.mask[2] ? b::partials_wb : c.mask[1] ? b::partials_w : b::partials_none;
  const int kind = t::norm_kind_for(rows.n);
  const int norm = c.rms ? b::norm_rms : b::norm_layer;
  const int wi = w.defined() ? b::weight_given : b::weight_none;
  const bool aligned = all_aligned(rows.n, {&x, &dy, &w});
  int id = aligned ? b::find(norm, kind, dtype, wi, partials, b::align_16) : -1;
  if (id < 0) id = b::find(norm, kind, dtype, wi, partials, b::align_any);
  int cols_id = sums ? cols::find(dtype, rows.n % 16 == 0 ? cols::align_16 : cols::align_any) : -1;
  if (id < 0 || (sums && cols_id < 0)) return Fallback::kDtype;
  c10::cuda::CUDAGuard guard(x.device());
  const c10::DeviceIndex device = x.device().index();
  const LoadedKernel* k = kernel_for(id, device);
  const LoadedKernel* k_cols = sums ? kernel_for(cols_id, device) : nullptr;
  if (!k || (sums && !k_cols)) return Fallback::kArch;
  const int64_t tile = k->image->params[b::kParam_ROWS];
  const int64_t tiles = (rows.m + tile - 1) / tile;
  const int64_t programs = std::min<int64_t>(tiles, t::kNormPrograms[kind]);
  // ATen's results: grad_input like the input, grad_weight / grad_bias like the weight / bias,
  // zeros where there are no rows.
  const bool empty = rows.m == 0 || rows.n == 0;
  if (c.mask[0]) out.a = at::detail::empty_cuda(x.sizes(), x.scalar_type(), x.device(), std::nullopt);
  if (c.mask[1]) out.b = at::detail::empty_cuda(w.sizes(), w.scalar_type(), w.device(), std::nullopt);
  if (c.mask[2]) out.c = at::detail::empty_cuda(bias.sizes(), bias.scalar_type(), bias.device(), std::nullopt);
  if (empty) {
    if (rows.m == 0) {
      if (out.b.defined()) out.b.zero_();
      if (out.c.defined()) out.c.zero_();
    }
    return Fallback::kNone;
  }
  if (!c.mask[0] && !sums) return Fallback::kNone;
  const int64_t planes = partials == b::partials_wb ? 2 : sums ? 1 : 0;
  at::Tensor part;
  if (sums) part = at::detail::empty_cuda({planes, programs, rows.n}, at::kFloat, x.device(), std::nullopt);
  KernelArgs args;
  args.ptr(dy.const_data_ptr());
  args.ptr(x.const_data_ptr());
  args.ptr(c.rms ? nullptr : c.mean.const_data_ptr());
  args.ptr(c.rstd.const_data_ptr());
  args.ptr(w.defined() ? w.const_data_ptr() : nullptr);
  args.ptr(c.mask[0] ? out.a.mutable_data_ptr() : nullptr);
  args.ptr(sums ? part.mutable_data_ptr() : nullptr);
  args.i64(rows.m);
  args.i64(rows.n);
  args.i32(c.mask[0] ? 1 : 0);
  launch(*k, device, static_cast<uint32_t>(programs), 1, 1, args);
  if (!sums) return Fallback::kNone;
  const int64_t block = k_cols->image->params[cols::kParam_BLOCK_C];
  KernelArgs sum_args;
  sum_args.ptr(part.const_data_ptr());
  sum_args.ptr((c.mask[1] ? out.b : out.c).mutable_data_ptr());
  sum_args.ptr((c.mask[2] ? out.c : out.b).mutable_data_ptr());
  sum_args.i32(static_cast<int32_t>(programs));
  sum_args.i64(rows.n);
  sum_args.i32(c.mask[1] ? 0 : 1);
  launch(*k_cols, device, static_cast<uint32_t>((rows.n + block - 1) / block), c.mask[1] + c.mask[2], 1, sum_args);
  return Fallback::kNone;
}

void unsupported(const char* op, Fallback reason, const Forward& c) {
  std::vector<const at::Tensor*> operands{&c.input};
  for (const at::Tensor* p : {&given(c.weight), &given(c.bias)}) {
    if (p->defined()) operands.push_back(p);
  }
  std::ostringstream s;
  for (const at::Tensor* x : operands) s << x->scalar_type() << x->sizes() << " strides " << x->strides() << " ";
  s << "normalized_shape " << c.normalized_shape;
  gems::unsupported(op, reason, s.str());
}

void unsupported(const char* op, Fallback reason, const Backward& c) {
  std::ostringstream s;
  for (const at::Tensor* x : {&c.grad_out, &c.input, &c.mean, &c.rstd, &given(c.weight), &given(c.bias)}) {
    if (x->defined()) s << x->scalar_type() << x->sizes() << " strides " << x->strides() << " ";
  }
  s << "normalized_shape " << c.normalized_shape << " output_mask [" << c.mask[0] << ", " << c.mask[1] << ", "
    << c.mask[2] << "]";
  gems::unsupported(op, reason, s.str());
}

}  // namespace gems::norm

// -- gems::rms_norm: the fused op, with autograd --------------------------------------------------
//
// Its CUDA kernel runs the forward without statistics; its autograd kernel (below) runs
// gems::_fused_rms_norm, which also returns rstd, and saves input, weight and rstd for
// gems::_fused_rms_norm_backward. Checks and eps are torch.rms_norm's (fp32's epsilon by default).
namespace gems {
namespace {

constexpr const char* kRmsNorm = "gems::rms_norm";

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using RmsNormOp = c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, at::IntArrayRef,
                                                      const std::optional<at::Tensor>&, std::optional<double>)>;
using RmsForwardOp = c10::TypedOperatorHandle<std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, at::IntArrayRef, const std::optional<at::Tensor>&, std::optional<double>)>;
using RmsBackwardOp = c10::TypedOperatorHandle<std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, at::IntArrayRef, const at::Tensor&, const std::optional<at::Tensor>&,
    std::array<bool, 2>)>;

const RmsNormOp& rms_norm_op() {
  static const RmsNormOp op = c10::Dispatcher::singleton().findSchemaOrThrow("gems::rms_norm", "").typed<
      at::Tensor(const at::Tensor&, at::IntArrayRef, const std::optional<at::Tensor>&, std::optional<double>)>();
  return op;
}

const RmsForwardOp& rms_forward_op() {
  static const RmsForwardOp op =
      c10::Dispatcher::singleton().findSchemaOrThrow("gems::_fused_rms_norm", "").typed<std::tuple<at::Tensor, at::Tensor>(
          const at::Tensor&, at::IntArrayRef, const std::optional<at::Tensor>&, std::optional<double>)>();
  return op;
}

const RmsBackwardOp& rms_backward_op() {
  static const RmsBackwardOp op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("gems::_fused_rms_norm_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                                                    const at::Tensor&, const std::optional<at::Tensor>&,
                                                    std::array<bool, 2>)>();
  return op;
}

std::tuple<at::Tensor, at::Tensor> call_rms_backward(const at::Tensor& grad, const at::Tensor& input,
                                                     at::IntArrayRef shape, const at::Tensor& rstd,
                                                     const std::optional<at::Tensor>& weight, std::array<bool, 2> mask) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return rms_backward_op().call(grad, input, shape, rstd, weight, mask);
}

// An absent weight as torch::autograd::Function::apply needs it: an empty optional, not an
// undefined tensor (torch 2.11 reads the device of every tensor argument it is given).
std::optional<at::Tensor> present(const at::Tensor& t) { return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt; }

// The backward's own node: differentiating the gradient (double backward) raises.
struct RmsNormBackwardFn : public torch::autograd::Function<RmsNormBackwardFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& input,
                               const at::Tensor& rstd, const std::optional<at::Tensor>& weight,
                               std::vector<int64_t> shape, bool grad_input, bool grad_weight) {
    auto [dx, dw] = call_rms_backward(grad, input, shape, rstd, weight, {grad_input, grad_weight});
    variable_list out;  // the gradients asked for only (a node's outputs must be defined)
    if (grad_input) out.push_back(dx);
    if (grad_weight) out.push_back(dw);
    return out;
  }

  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false, kRmsNorm, ": double backward is not supported (the gradient of this gradient has no gems ",
                "kernel); use torch.rms_norm where second derivatives are needed");
    return {};
  }
};

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, std::vector<int64_t> shape,
                            const std::optional<at::Tensor>& weight, std::optional<double> eps) {
    std::tuple<at::Tensor, at::Tensor> result;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      result = rms_forward_op().call(input, shape, weight, eps);
    }
    ctx->save_for_backward({input, weight.value_or(at::Tensor()), std::get<1>(result)});
    ctx->saved_data["shape"] = shape;
    return std::get<0>(result);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    // The input was contiguous; its gradient need not be (a transpose after the norm, as Qwen3's
    // per-head q / k norms), and the backward kernels read contiguous rows.
    grads[0] = grads[0].contiguous();
    // needs_input_grad counts the tensor arguments given: input 0, weight 1 where there is one.
    const bool grad_input = ctx->needs_input_grad(0), grad_weight = saved[1].defined() && ctx->needs_input_grad(1);
    at::Tensor dx, dw;
    if (!grad_input && !grad_weight) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    if (at::GradMode::is_enabled()) {
      variable_list r =
          RmsNormBackwardFn::apply(grads[0], saved[0], saved[2], present(saved[1]), shape, grad_input, grad_weight);
      if (grad_input) dx = r[0];
      if (grad_weight) dw = r.back();
    } else {
      std::tie(dx, dw) =
          call_rms_backward(grads[0], saved[0], shape, saved[2], present(saved[1]), {grad_input, grad_weight});
    }
    return {dx, at::Tensor(), dw, at::Tensor()};
  }
};

// The Autograd kernel: the checks of torch.rms_norm first (so that their errors are torch's),
// then the op itself where nothing needs a gradient.
at::Tensor rms_norm_autograd(const at::Tensor& input, at::IntArrayRef shape, const std::optional<at::Tensor>& weight,
                             std::optional<double> eps) {
  const at::Tensor w = weight.value_or(at::Tensor());
  at::native::_check_rms_norm_inputs_symint(input, c10::fromIntArrayRefSlow(shape), w);
  if (at::GradMode::is_enabled() && (input.requires_grad() || (w.defined() && w.requires_grad()))) {
    return RmsNormFn::apply(input, shape.vec(), weight, eps);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return rms_norm_op().call(input, shape, weight, eps);
}

}  // namespace

at::Tensor cuda::rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                          const std::optional<at::Tensor>& weight, std::optional<double> eps) {
  const norm::Forward call{true, input, normalized_shape, weight, norm::kAbsent, eps, false, true};
  norm::Results r;
  const Fallback reason = norm::forward(call, r);
  if (reason != Fallback::kNone) norm::unsupported(kRmsNorm, reason, call);
  return r.a;
}

}  // namespace gems

TORCH_LIBRARY_IMPL(gems, Autograd, m) { m.impl("rms_norm", TORCH_FN(gems::rms_norm_autograd)); }
