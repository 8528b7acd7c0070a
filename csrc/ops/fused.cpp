// Fused activation driver: silu_and_mul, gelu_and_mul (approximate "none" or "tanh") and their
// backward ops, plus their autograd. Declarations: aot/family_fused.py; kernels: kernels/fused.py.
//
// x (last dim 2H) is run as M rows of 2H contiguous elements, equally spaced (one row stride):
// any tensor whose last dim has stride 1 and whose leading dims collapse into one dim is used as
// it is (slices with a storage offset, padded rows, one row expanded to many: row stride 0);
// other layouts (a strided last dim, transposed or non-collapsible leading dims) are copied with
// .contiguous() first. grad (backward) is taken the same way. Outputs are contiguous: out
// [..., H] and grad_x with x's shape.
//
// Covered: fp32, fp16, bf16 on CUDA; empty tensors (no launch). Errors (these are gems ops, with
// no ATen kernel to fall back to): a 0-d x, an odd last dim, another dtype, grad of the wrong
// shape / dtype / device, an unknown `approximate`, no image for the device, more than
// 2**31 - 1 row blocks or 65535 column blocks (H above 67M elements). A CPU tensor gets the
// dispatcher's error (no CPU kernel is registered), which names the op.
//
// Autograd: silu_and_mul / gelu_and_mul have C++ autograd kernels (a torch::autograd::Function
// saving x) whose backward calls silu_and_mul_backward / gelu_and_mul_backward. The backward ops
// are not differentiable: differentiating them (double backward) raises.
#include "gems_fused_ops.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <initializer_list>
#include <limits>
#include <string>

#include "gems_fused_tiles.h"
#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace g = gen::act_and_mul;

constexpr int64_t kMaxGridX = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxGridY = 65535;

constexpr const char* kSilu = "gems::silu_and_mul";
constexpr const char* kGelu = "gems::gelu_and_mul";
constexpr const char* kSiluBackward = "gems::silu_and_mul_backward";
constexpr const char* kGeluBackward = "gems::gelu_and_mul_backward";

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int gelu_act(const char* op, c10::string_view approximate) {
  if (approximate == "none") return g::act_gelu;
  TORCH_CHECK(approximate == "tanh", op, ": approximate argument must be either none or tanh, got '",
              std::string(approximate), "'");
  return g::act_gelu_tanh;
}

// x.shape[:-1] + (H,).
at::DimVector half_shape(const at::Tensor& x) {
  at::DimVector shape(x.sizes().begin(), x.sizes().end());
  shape.back() /= 2;
  return shape;
}

// The checks of every op, CUDA and Meta alike.
void check_x(const char* op, const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1, op, ": expected x with at least one dimension (the last one holds both halves), ",
              "got a 0-d tensor");
  TORCH_CHECK(x.size(-1) % 2 == 0, op, ": the last dimension must be even, got ", x.size(-1), " (x of shape ",
              x.sizes(), ")");
  TORCH_CHECK(g::dtype_of(x.scalar_type()) >= 0, op, ": unsupported dtype ", x.scalar_type(),
              " (supported: Float, Half, BFloat16)");
}

void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& x) {
  check_x(op, x);
  TORCH_CHECK(grad.device() == x.device(), op, ": expected grad and x on the same device, got ", grad.device(),
              " and ", x.device());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), op, ": expected grad of x's dtype ", x.scalar_type(), ", got ",
              grad.scalar_type());
  const at::DimVector expected = half_shape(x);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(expected), op, ": expected grad of shape ", at::IntArrayRef(expected),
              " (x.shape[:-1] + (H,)), got ", grad.sizes());
}

// The row stride of t viewed as rows of t.size(-1) contiguous elements, equally spaced, or -1
// when t has no such view. A single row gets 0 (its stride is never multiplied by a non-zero
// row index).
int64_t row_stride(const at::Tensor& t) {
  const int64_t nd = t.dim();
  if (t.size(nd - 1) > 1 && t.stride(nd - 1) != 1) return -1;
  int64_t stride = 0;
  int64_t span = -1;  // the stride the next outer dim of size > 1 must have
  for (int64_t d = nd - 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (span < 0) {
      stride = t.stride(d);
    } else if (t.stride(d) != span) {
      return -1;
    }
    span = t.stride(d) * t.size(d);
  }
  return stride;
}

// t itself where it has a row view (and no lazy negation), else a contiguous copy.
at::Tensor as_rows(const at::Tensor& t) {
  at::Tensor r = t.is_neg() ? t.resolve_neg() : t;
  return row_stride(r) < 0 ? r.contiguous() : r;
}

struct Launch {
  const LoadedKernel* kernel = nullptr;
  int64_t vec = 1;
  uint32_t grid_x = 0, grid_y = 0;
};

// The variant for M rows of H elements per half: the aligned one when every pointer is 16-byte
// aligned and H and every row stride are multiples of VEC (16 bytes of elements), else the
// general one.
Fallback prepare(int pass, int act, c10::ScalarType dtype, int64_t M, int64_t H,
                 std::initializer_list<const void*> pointers, std::initializer_list<int64_t> strides,
                 c10::DeviceIndex device, Launch& l) {
  const int dt = g::dtype_of(dtype);
  if (dt < 0) return Fallback::kDtype;
  int64_t vec = 16 / static_cast<int64_t>(c10::elementSize(dtype));
  bool aligned = H % vec == 0;
  for (const void* p : pointers) aligned = aligned && aligned16(p);
  for (int64_t s : strides) aligned = aligned && s % vec == 0;
  const int tile = fused_tiles::tile_for(H);
  int id = aligned ? g::find(pass, act, dt, tile, g::align_16) : -1;
  if (id < 0) {
    id = g::find(pass, act, dt, tile, g::align_any);
    vec = 1;
  }
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  TORCH_INTERNAL_ASSERT(k->image->params[g::kParam_VEC] == vec, "gems fused: VEC of ", vec, " expected");
  const int64_t gx = ceil_div(M, k->image->params[g::kParam_BLOCK_M]);
  const int64_t gy = ceil_div(H, k->image->params[g::kParam_BLOCK_N]);
  // Column offsets (and 2H) are 32-bit in the kernel: 65535 blocks of at most 1024 keep them so.
  if (gx > kMaxGridX || gy > kMaxGridY) return Fallback::kIndex64;
  l.kernel = k;
  l.vec = vec;
  l.grid_x = static_cast<uint32_t>(gx);
  l.grid_y = static_cast<uint32_t>(gy);
  return Fallback::kNone;
}

at::Tensor act_and_mul(const char* op, int act, const at::Tensor& x_in) {
  check_x(op, x_in);
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::DimVector shape = half_shape(x_in);
  at::Tensor out = at::detail::empty_cuda(shape, x_in.scalar_type(), x_in.device(), std::nullopt);
  if (out.numel() == 0) return out;
  const at::Tensor x = as_rows(x_in);
  const int64_t H = shape.back(), M = out.numel() / H, x_row = row_stride(x);
  const c10::DeviceIndex device = x.device().index();
  Launch l;
  const Fallback r =
      prepare(g::pass_fwd, act, x.scalar_type(), M, H, {x.const_data_ptr(), out.const_data_ptr()}, {x_row}, device, l);
  if (r != Fallback::kNone) unsupported(op, r, {&x_in});
  KernelArgs args;
  args.ptr(x.const_data_ptr());
  args.ptr(out.mutable_data_ptr());
  args.i64(M);
  args.i32(static_cast<int32_t>(H / l.vec));
  args.i64(x_row / l.vec);
  launch(*l.kernel, device, l.grid_x, l.grid_y, 1, args);
  return out;
}

at::Tensor act_and_mul_backward(const char* op, int act, const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_grad(op, grad_in, x_in);
  c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor dx = at::detail::empty_cuda(x_in.sizes(), x_in.scalar_type(), x_in.device(), std::nullopt);
  if (dx.numel() == 0) return dx;
  const at::Tensor x = as_rows(x_in), grad = as_rows(grad_in);
  const int64_t H = x.size(-1) / 2, M = dx.numel() / (2 * H);
  const int64_t x_row = row_stride(x), grad_row = row_stride(grad);
  const c10::DeviceIndex device = x.device().index();
  Launch l;
  const Fallback r = prepare(g::pass_bwd, act, x.scalar_type(), M, H,
                             {grad.const_data_ptr(), x.const_data_ptr(), dx.const_data_ptr()}, {grad_row, x_row},
                             device, l);
  if (r != Fallback::kNone) unsupported(op, r, {&x_in});
  KernelArgs args;
  args.ptr(grad.const_data_ptr());
  args.ptr(x.const_data_ptr());
  args.ptr(dx.mutable_data_ptr());
  args.i64(M);
  args.i32(static_cast<int32_t>(H / l.vec));
  args.i64(grad_row / l.vec);
  args.i64(x_row / l.vec);
  launch(*l.kernel, device, l.grid_x, l.grid_y, 1, args);
  return dx;
}

// -- autograd -------------------------------------------------------------------------------------

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using UnaryOp = c10::TypedOperatorHandle<at::Tensor(const at::Tensor&)>;
using GeluOp = c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, c10::string_view)>;
using UnaryBackwardOp = c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&)>;
using GeluBackwardOp = c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view)>;

const UnaryOp& silu_op() {
  static const UnaryOp op =
      c10::Dispatcher::singleton().findSchemaOrThrow("gems::silu_and_mul", "").typed<at::Tensor(const at::Tensor&)>();
  return op;
}

const GeluOp& gelu_op() {
  static const GeluOp op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("gems::gelu_and_mul", "")
                               .typed<at::Tensor(const at::Tensor&, c10::string_view)>();
  return op;
}

const UnaryBackwardOp& silu_backward_op() {
  static const UnaryBackwardOp op = c10::Dispatcher::singleton()
                                        .findSchemaOrThrow("gems::silu_and_mul_backward", "")
                                        .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op;
}

const GeluBackwardOp& gelu_backward_op() {
  static const GeluBackwardOp op = c10::Dispatcher::singleton()
                                       .findSchemaOrThrow("gems::gelu_and_mul_backward", "")
                                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view)>();
  return op;
}

// The ops below the autograd key (CUDA or Meta kernels). `approximate` empty: silu.
at::Tensor call_forward(const at::Tensor& x, const std::string& approximate) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return approximate.empty() ? silu_op().call(x) : gelu_op().call(x, approximate);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& x, const std::string& approximate) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return approximate.empty() ? silu_backward_op().call(grad, x) : gelu_backward_op().call(grad, x, approximate);
}

// The backward ops' own autograd: a node that raises when something differentiates through
// them (double backward), rather than a silently missing gradient.
struct ActAndMulBackwardFn : public torch::autograd::Function<ActAndMulBackwardFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& x,
                            const std::string& approximate) {
    ctx->saved_data["op"] = std::string(approximate.empty() ? kSiluBackward : kGeluBackward);
    return call_backward(grad, x, approximate);
  }

  static variable_list backward(AutogradContext* ctx, variable_list /*grads*/) {
    TORCH_CHECK(false, ctx->saved_data["op"].toStringRef(),
                ": double backward is not supported (the gradient of this gradient has no gems kernel); "
                "use the unfused torch ops where second derivatives are needed");
    return {};
  }
};

at::Tensor backward_with_autograd(const at::Tensor& grad, const at::Tensor& x, const std::string& approximate) {
  if (at::GradMode::is_enabled() && (grad.requires_grad() || x.requires_grad())) {
    return ActAndMulBackwardFn::apply(grad, x, approximate);
  }
  return call_backward(grad, x, approximate);
}

// silu_and_mul / gelu_and_mul: saves x; the backward runs the fused backward op.
struct ActAndMulFn : public torch::autograd::Function<ActAndMulFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const std::string& approximate) {
    ctx->save_for_backward({x});
    ctx->saved_data["approximate"] = approximate;
    return call_forward(x, approximate);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::string approximate = ctx->saved_data["approximate"].toStringRef();
    return {backward_with_autograd(grads[0], saved[0], approximate), at::Tensor()};
  }
};

at::Tensor forward_with_autograd(const at::Tensor& x, const std::string& approximate) {
  if (at::GradMode::is_enabled() && x.requires_grad()) return ActAndMulFn::apply(x, approximate);
  return call_forward(x, approximate);
}

// The Autograd kernels. gelu's `approximate` is checked here, so the saved string is valid.
at::Tensor silu_and_mul_autograd(const at::Tensor& x) { return forward_with_autograd(x, ""); }

at::Tensor gelu_and_mul_autograd(const at::Tensor& x, c10::string_view approximate) {
  gelu_act(kGelu, approximate);
  return forward_with_autograd(x, std::string(approximate));
}

at::Tensor silu_and_mul_backward_autograd(const at::Tensor& grad, const at::Tensor& x) {
  return backward_with_autograd(grad, x, "");
}

at::Tensor gelu_and_mul_backward_autograd(const at::Tensor& grad, const at::Tensor& x, c10::string_view approximate) {
  gelu_act(kGeluBackward, approximate);
  return backward_with_autograd(grad, x, std::string(approximate));
}

}  // namespace

namespace cuda {
at::Tensor silu_and_mul(const at::Tensor& x) { return act_and_mul(kSilu, g::act_silu, x); }

at::Tensor gelu_and_mul(const at::Tensor& x, c10::string_view approximate) {
  return act_and_mul(kGelu, gelu_act(kGelu, approximate), x);
}

at::Tensor silu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x) {
  return act_and_mul_backward(kSiluBackward, g::act_silu, grad, x);
}

at::Tensor gelu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view approximate) {
  return act_and_mul_backward(kGeluBackward, gelu_act(kGeluBackward, approximate), grad, x);
}
}  // namespace cuda

namespace meta {
at::Tensor silu_and_mul(const at::Tensor& x) {
  check_x(kSilu, x);
  return at::empty(half_shape(x), x.options());
}

at::Tensor gelu_and_mul(const at::Tensor& x, c10::string_view approximate) {
  gelu_act(kGelu, approximate);
  check_x(kGelu, x);
  return at::empty(half_shape(x), x.options());
}

at::Tensor silu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x) {
  check_grad(kSiluBackward, grad, x);
  return at::empty(x.sizes(), x.options());
}

at::Tensor gelu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view approximate) {
  gelu_act(kGeluBackward, approximate);
  check_grad(kGeluBackward, grad, x);
  return at::empty(x.sizes(), x.options());
}
}  // namespace meta

}  // namespace gems

// The gems ops' CUDA and Meta kernels come from the generated registration (GEMS_OPS); autograd
// is registered here, for every backend (the Autograd alias key).
TORCH_LIBRARY_IMPL(gems, Autograd, m) {
  m.impl("silu_and_mul", TORCH_FN(gems::silu_and_mul_autograd));
  m.impl("gelu_and_mul", TORCH_FN(gems::gelu_and_mul_autograd));
  m.impl("silu_and_mul_backward", TORCH_FN(gems::silu_and_mul_backward_autograd));
  m.impl("gelu_and_mul_backward", TORCH_FN(gems::gelu_and_mul_backward_autograd));
}
