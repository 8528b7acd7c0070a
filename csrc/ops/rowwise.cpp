// Row-wise driver: softmax and log_softmax, forward and backward, through one path, and the
// RMSNorm forward (gems::rms_norm) on the same kinds. Views the
// contiguous operands, with no copy, as (outer, N, inner) around the normalised dim, picks the
// kind by layout and N (rowwise_tables.h, generated from aot/family_rowwise.py KINDS) and
// launches one kernel of kernels/rowwise.py. Everything is decided before the output is
// allocated, so a fallback allocates nothing. Checks, result dtypes and strides are those of
// ATen's meta functions and CUDA kernels (aten/src/ATen/native/SoftMax.cpp, cuda/SoftMax.cu).
#include "ops/rowwise.h"

#include <ATen/TensorUtils.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/native/layer_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
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

at::Tensor meta(const Forward& c) {
  at::maybe_wrap_dim(c.dim, c.self.dim());
  return at::empty(c.self.sizes(), c.self.options().dtype(result_dtype(c)));
}

at::Tensor meta(const Backward& c) {
  check_meta(c);
  at::maybe_wrap_dim(c.dim, c.grad_output.dim());
  return at::empty(c.grad_output.sizes(), c.grad_output.options().dtype(result_dtype(c)));
}

void unsupported(const char* op, Fallback reason, const Forward& c) {
  gems::unsupported(op, reason, describe({&c.self}, result_dtype(c), c.dim));
}

void unsupported(const char* op, Fallback reason, const Backward& c) {
  gems::unsupported(op, reason, describe({&c.grad_output, &c.output}, result_dtype(c), c.dim));
}

}  // namespace gems::rowwise

// -- RMSNorm over the trailing dims: torch's input checks (ATen's own), eps as ATen's composite
// (its opmath type's epsilon: fp32's), the result in the input's dtype.
namespace gems {
namespace {

namespace r = gen::rms_norm;

void check_rms_norm(const at::Tensor& input, at::IntArrayRef shape, const at::Tensor& weight) {
  at::native::_check_rms_norm_inputs_symint(input, c10::fromIntArrayRefSlow(shape), weight);
}

Fallback rms_norm_run(const at::Tensor& input, at::IntArrayRef shape, const at::Tensor& weight,
                      std::optional<double> eps, at::Tensor& result) {
  check_rms_norm(input, shape, weight);
  const bool has_weight = weight.defined();
  if (!input.is_cuda() || (has_weight && weight.device() != input.device())) return Fallback::kDevice;
  if (has_weight && weight.scalar_type() != input.scalar_type()) return Fallback::kMixedDtype;
  if (!rowwise::plain(input) || (has_weight && !rowwise::plain(weight))) return Fallback::kLayout;
  const int dtype = r::dtype_of(input.scalar_type());
  if (dtype < 0) return Fallback::kDtype;
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  const int64_t outer = n > 0 ? input.numel() / n : 0;
  const bool aligned = n % 16 == 0 && aligned16(input.const_data_ptr()) &&
                       (!has_weight || aligned16(weight.const_data_ptr()));
  const int kind = rowwise_tables::kind_for(false, n);
  const int w = has_weight ? r::weight_given : r::weight_none;
  int id = aligned ? r::find(kind, dtype, w, r::align_16) : -1;
  if (id < 0) id = r::find(kind, dtype, w, r::align_any);
  if (id < 0) return Fallback::kDtype;
  c10::cuda::CUDAGuard guard(input.device());
  const LoadedKernel* k = kernel_for(id, input.device().index());
  if (!k) return Fallback::kArch;
  const int64_t rows = k->image->params[r::kParam_ROWS];
  const int64_t programs = (outer + rows - 1) / rows;
  if (programs > std::numeric_limits<int32_t>::max()) return Fallback::kIndex64;
  result = at::detail::empty_cuda(input.sizes(), input.scalar_type(), input.device(), std::nullopt);
  if (result.numel() == 0) return Fallback::kNone;
  KernelArgs args;
  args.ptr(input.const_data_ptr());
  args.ptr(has_weight ? weight.const_data_ptr() : nullptr);
  args.ptr(result.mutable_data_ptr());
  args.i64(outer);
  args.i64(n);
  args.f32(static_cast<float>(eps.value_or(std::numeric_limits<float>::epsilon())));
  launch(*k, input.device().index(), static_cast<uint32_t>(programs), 1, 1, args);
  return Fallback::kNone;
}

}  // namespace

at::Tensor cuda::rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                          const std::optional<at::Tensor>& weight, std::optional<double> eps) {
  const at::Tensor w = weight.value_or(at::Tensor());
  at::Tensor result;
  const Fallback reason = rms_norm_run(input, normalized_shape, w, eps, result);
  if (reason != Fallback::kNone && w.defined()) gems::unsupported("gems::rms_norm", reason, {&input, &w});
  if (reason != Fallback::kNone) gems::unsupported("gems::rms_norm", reason, {&input});
  return result;
}

at::Tensor meta::rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                          const std::optional<at::Tensor>& weight, std::optional<double> eps) {
  check_rms_norm(input, normalized_shape, weight.value_or(at::Tensor()));
  return at::empty_like(input);
}

}  // namespace gems
