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
// rotary_embedding(q, k, cos, sin, position_ids, interleaved) -> (q_out, k_out): q [B, Hq, S, D] and
// k [B, Hk, S, D] (Hugging Face's layout: any strides whose last one is 1, else a contiguous copy)
// rotated by the rows of cos / sin ([B or 1, S, R], or [S, R]; with position_ids [B, S], a table
// [P, R] whose row position_ids[b, s] serves (b, s)); R <= D is even, the dims past R pass through.
// Outputs keep q's / k's strides where those are dense (empty_like). Errors: ranks, shapes, dtypes
// (q, k, cos, sin of one float dtype), devices, R / 2 above 128. cos and sin get no gradient (an
// error if they require one).
//
// Autograd: silu_and_mul / gelu_and_mul have C++ autograd kernels (a torch::autograd::Function
// saving x) whose backward calls silu_and_mul_backward / gelu_and_mul_backward. The backward ops
// are not differentiable: differentiating them (double backward) raises. rotary_embedding and its
// backward op are linear in their first two inputs: each is the other's gradient.
#include "gems_fused_ops.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <initializer_list>
#include <limits>
#include <string>
#include <tuple>

#include "gems_fused_tiles.h"
#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace g = gen::act_and_mul;
namespace rot = gen::rotary;

constexpr int64_t kMaxGridX = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxGridY = 65535;

constexpr const char* kSilu = "gems::silu_and_mul";
constexpr const char* kGelu = "gems::gelu_and_mul";
constexpr const char* kSiluBackward = "gems::silu_and_mul_backward";
constexpr const char* kGeluBackward = "gems::gelu_and_mul_backward";
constexpr const char* kRotary = "gems::rotary_embedding";
constexpr const char* kRotaryBackward = "gems::rotary_embedding_backward";

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int gelu_act(const char* op, c10::string_view approximate) {
  if (approximate == "none") return g::act_gelu;
  TORCH_CHECK(approximate == "tanh", op, ": approximate argument must be either none or tanh, got '",
              std::string(approximate), "'");
  return g::act_gelu_tanh;
}

// x.shape[:-1] + (H,).
// Symbolic in every dim (Meta functions under torch.compile / export; concrete values otherwise).
c10::SymDimVector half_shape(const at::Tensor& x) {
  c10::SymDimVector shape(x.sym_sizes().begin(), x.sym_sizes().end());
  shape.back() = shape.back() / 2;
  return shape;
}

// The checks of every op, CUDA and Meta alike.
void check_x(const char* op, const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1, op, ": expected x with at least one dimension (the last one holds both halves), ",
              "got a 0-d tensor");
  TORCH_SYM_CHECK((x.sym_size(-1) % 2).sym_eq(0), op, ": the last dimension must be even, got ", x.sym_size(-1),
                  " (x of shape ", x.sym_sizes(), ")");
  TORCH_CHECK(g::dtype_of(x.scalar_type()) >= 0, op, ": unsupported dtype ", x.scalar_type(),
              " (supported: Float, Half, BFloat16)");
}

void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& x) {
  check_x(op, x);
  TORCH_CHECK(grad.device() == x.device(), op, ": expected grad and x on the same device, got ", grad.device(),
              " and ", x.device());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), op, ": expected grad of x's dtype ", x.scalar_type(), ", got ",
              grad.scalar_type());
  const c10::SymDimVector expected = half_shape(x);
  TORCH_CHECK(grad.sym_sizes() == c10::SymIntArrayRef(expected), op, ": expected grad of shape ",
              c10::SymIntArrayRef(expected), " (x.shape[:-1] + (H,)), got ", grad.sym_sizes());
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
  at::DimVector shape(x_in.sizes().begin(), x_in.sizes().end());
  shape.back() /= 2;
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


// -- rotary embedding -----------------------------------------------------------------------------

// cos / sin as [rows, R] with a batch stride (0: shared by every b) and a row stride, after the
// shape checks shared by CUDA and Meta.
struct Trig {
  at::Tensor cos, sin;
  int64_t batch_stride = 0, row_stride = 0, half = 0;
};

void check_rotary(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& cos,
                  const at::Tensor& sin, const std::optional<at::Tensor>& position_ids) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4, op, ": expected q and k of 4 dims [batch, heads, seq, head_dim], got ",
              q.sym_sizes(), " and ", k.sym_sizes());
  // Sizes as SymInts only, compared with sym_* (expect_true: a runtime assert or a relation, never
  // a constant): under tracing, size(d) turns every size of the tensor into an int, which
  // specialises them all (batch and seq included) to the example's values.
  const c10::SymInt B = q.sym_size(0), S = q.sym_size(2), D = q.sym_size(3), R = cos.sym_size(-1);
  TORCH_SYM_CHECK(k.sym_size(0).sym_eq(B).sym_and(k.sym_size(2).sym_eq(S)).sym_and(k.sym_size(3).sym_eq(D)), op,
                  ": q and k must agree in batch, seq and head_dim, got ", q.sym_sizes(), " and ", k.sym_sizes());
  TORCH_CHECK(cos.sym_sizes() == sin.sym_sizes(), op, ": cos and sin must have one shape, got ", cos.sym_sizes(),
              " and ", sin.sym_sizes());
  for (const at::Tensor* t : {&k, &cos, &sin}) {
    TORCH_CHECK(t->scalar_type() == q.scalar_type(), op, ": q, k, cos and sin must have one dtype, got ",
                q.scalar_type(), " and ", t->scalar_type());
    TORCH_CHECK(t->device() == q.device(), op, ": expected every tensor on ", q.device(), ", got ", t->device());
  }
  TORCH_CHECK(rot::dtype_of(q.scalar_type()) >= 0, op, ": unsupported dtype ", q.scalar_type(),
              " (supported: Float, Half, BFloat16)");
  TORCH_SYM_CHECK((R % 2).sym_eq(0).sym_and(R.sym_le(D)), op, ": the rotated dims (cos.size(-1) = ", R,
                  ") must be even and at most head_dim = ", D);
  TORCH_SYM_CHECK(R.sym_le(2 * fused_tiles::kRotaryMaxPairs), op, ": at most ", 2 * fused_tiles::kRotaryMaxPairs,
                  " rotated dims are supported, got ", R);
  if (position_ids.has_value()) {
    const at::Tensor& p = *position_ids;
    TORCH_CHECK(p.scalar_type() == at::kLong && p.device() == q.device(), op,
                ": position_ids must be an int64 tensor on ", q.device());
    TORCH_CHECK(p.dim() == 2, op, ": expected position_ids of shape [", B, ", ", S, "], got ", p.sym_sizes());
    TORCH_SYM_CHECK(p.sym_size(0).sym_eq(B).sym_and(p.sym_size(1).sym_eq(S)), op, ": expected position_ids of shape [",
                    B, ", ", S, "], got ", p.sym_sizes());
    TORCH_CHECK(cos.dim() == 2, op, ": with position_ids, cos and sin are tables [positions, rotated dims], got ",
                cos.sym_sizes());
  } else {
    const c10::SymBool rows = cos.dim() == 2 ? cos.sym_size(0).sym_eq(S)
                              : cos.dim() == 3 ? cos.sym_size(0).sym_eq(B).sym_or(cos.sym_size(0).sym_eq(1)).sym_and(
                                                     cos.sym_size(1).sym_eq(S))
                                               : c10::SymBool(false);
    TORCH_SYM_CHECK(rows, op, ": expected cos and sin of shape [", B, " or 1, ", S, ", R] or [", S, ", R], got ",
                    cos.sym_sizes());
  }
}

Trig trig_rows(const at::Tensor& cos_in, const at::Tensor& sin_in) {
  Trig t;
  t.cos = cos_in.dim() == 2 ? cos_in.unsqueeze(0) : cos_in;
  t.sin = sin_in.dim() == 2 ? sin_in.unsqueeze(0) : sin_in;
  // One pair of strides serves both: the kernel reads them alike.
  if (t.cos.stride(2) != 1 || t.cos.strides() != t.sin.strides() || t.cos.is_neg() || t.sin.is_neg()) {
    t.cos = t.cos.resolve_neg().contiguous();
    t.sin = t.sin.resolve_neg().contiguous();
  }
  t.batch_stride = t.cos.size(0) == 1 ? 0 : t.cos.stride(0);
  t.row_stride = t.cos.stride(1);
  t.half = t.cos.size(2) / 2;
  return t;
}

// x itself where its last dim is contiguous, else a contiguous copy.
at::Tensor with_unit_last_stride(const at::Tensor& x) {
  at::Tensor r = x.is_neg() ? x.resolve_neg() : x;
  return r.size(3) > 1 && r.stride(3) != 1 ? r.contiguous() : r;
}

void rotate(const char* op, int pass, bool interleaved, const at::Tensor& x_in, const at::Tensor& out, const Trig& t,
            const std::optional<at::Tensor>& position_ids) {
  if (out.numel() == 0) return;
  const at::Tensor x = with_unit_last_stride(x_in);
  const c10::DeviceIndex device = x.device().index();
  const int dt = rot::dtype_of(x.scalar_type());
  const int id = rot::find(pass, dt, interleaved ? rot::pairs_interleaved : rot::pairs_half,
                           position_ids.has_value() ? rot::pos_ids : rot::pos_none,
                           fused_tiles::rotary_tile_for(t.half));
  TORCH_INTERNAL_ASSERT(id >= 0, op, ": no rotary variant for a checked input");
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) unsupported(op, Fallback::kArch, {&x_in});
  const int64_t B = x.size(0), H = x.size(1), S = x.size(2);
  const int64_t block_h = k->image->params[rot::kParam_BLOCK_H];
  TORCH_CHECK(B * S <= kMaxGridX && ceil_div(H, block_h) <= kMaxGridY, op, ": ", B * S,
              " (batch x seq) rows or ", H, " heads exceed the launch grid");
  KernelArgs args;
  args.ptr(x.const_data_ptr());
  args.ptr(out.mutable_data_ptr());
  args.ptr(t.cos.const_data_ptr());
  args.ptr(t.sin.const_data_ptr());
  args.ptr(position_ids.has_value() ? position_ids->const_data_ptr() : nullptr);
  args.i32(static_cast<int32_t>(H));
  args.i32(static_cast<int32_t>(S));
  for (int64_t v : {x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
                    t.batch_stride, t.row_stride}) {
    args.i64(v);
  }
  args.i64(position_ids.has_value() ? position_ids->stride(0) : 0);
  args.i64(position_ids.has_value() ? position_ids->stride(1) : 0);
  args.i32(static_cast<int32_t>(t.half));
  args.i32(static_cast<int32_t>(x.size(3)));
  launch(*k, device, static_cast<uint32_t>(B * S), static_cast<uint32_t>(ceil_div(H, block_h)), 1, args);
}

std::tuple<at::Tensor, at::Tensor> rotary(const char* op, int pass, const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& cos, const at::Tensor& sin,
                                          const std::optional<at::Tensor>& position_ids, bool interleaved) {
  check_rotary(op, q, k, cos, sin, position_ids);
  c10::cuda::CUDAGuard guard(q.device());
  at::Tensor q_out = at::empty_like(q), k_out = at::empty_like(k);
  const Trig t = trig_rows(cos, sin);
  std::optional<at::Tensor> pos;
  if (position_ids.has_value()) pos = *position_ids;
  rotate(op, pass, interleaved, q, q_out, t, pos);
  rotate(op, pass, interleaved, k, k_out, t, pos);
  return {q_out, k_out};
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


using RotarySignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           const at::Tensor&, const std::optional<at::Tensor>&, bool);
using RotaryOp = c10::TypedOperatorHandle<RotarySignature>;

const RotaryOp& rotary_op(const char* name) {
  static const RotaryOp forward_op =
      c10::Dispatcher::singleton().findSchemaOrThrow(kRotary, "").typed<RotarySignature>();
  static const RotaryOp backward_op =
      c10::Dispatcher::singleton().findSchemaOrThrow(kRotaryBackward, "").typed<RotarySignature>();
  return name == kRotary ? forward_op : backward_op;
}

std::tuple<at::Tensor, at::Tensor> call_rotary(const char* name, const at::Tensor& a, const at::Tensor& b,
                                               const at::Tensor& cos, const at::Tensor& sin,
                                               const std::optional<at::Tensor>& position_ids, bool interleaved) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return rotary_op(name).call(a, b, cos, sin, position_ids, interleaved);
}

void check_no_trig_grad(const char* op, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && (cos.requires_grad() || sin.requires_grad())), op,
              ": gradients with respect to cos and sin are not supported; pass them detached (rotary tables are "
              "buffers, not parameters) or use the unfused torch ops");
}

// The rotation is linear in q and k: the backward is the transposed rotation of the gradients,
// itself linear, so its own backward is the forward rotation (double backward works).
struct RotaryFn : public torch::autograd::Function<RotaryFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b, const at::Tensor& cos,
                               const at::Tensor& sin, const std::optional<at::Tensor>& position_ids, bool interleaved,
                               bool backward) {
    ctx->save_for_backward({cos, sin, position_ids.value_or(at::Tensor())});
    ctx->saved_data["interleaved"] = interleaved;
    ctx->saved_data["backward"] = backward;
    ctx->saved_data["a_sizes"] = a.sym_sizes().vec();  // symbolic under tracing
    ctx->saved_data["b_sizes"] = b.sym_sizes().vec();
    auto [ra, rb] = call_rotary(backward ? kRotaryBackward : kRotary, a, b, cos, sin, position_ids, interleaved);
    return {ra, rb};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    std::optional<at::Tensor> position_ids;
    if (saved[2].defined()) position_ids = saved[2];
    const bool transposed = !ctx->saved_data["backward"].toBool();
    const at::Tensor ga = grads[0].defined() ? grads[0]
                                             : at::zeros_symint(ctx->saved_data["a_sizes"].toSymIntVector(),
                                                                saved[0].options());
    const at::Tensor gb = grads[1].defined() ? grads[1]
                                             : at::zeros_symint(ctx->saved_data["b_sizes"].toSymIntVector(),
                                                                saved[0].options());
    const variable_list r = rotary_with_autograd(transposed, ga, gb, saved[0], saved[1], position_ids,
                                                 ctx->saved_data["interleaved"].toBool());
    return {r[0], r[1], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }

  static variable_list rotary_with_autograd(bool backward, const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& cos, const at::Tensor& sin,
                                            const std::optional<at::Tensor>& position_ids, bool interleaved) {
    const char* name = backward ? kRotaryBackward : kRotary;
    check_no_trig_grad(name, cos, sin);
    if (at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad())) {
      return RotaryFn::apply(a, b, cos, sin, position_ids, interleaved, backward);
    }
    auto [ra, rb] = call_rotary(name, a, b, cos, sin, position_ids, interleaved);
    return {ra, rb};
  }
};

std::tuple<at::Tensor, at::Tensor> rotary_embedding_autograd(const at::Tensor& q, const at::Tensor& k,
                                                             const at::Tensor& cos, const at::Tensor& sin,
                                                             const std::optional<at::Tensor>& position_ids,
                                                             bool interleaved) {
  const variable_list r = RotaryFn::rotary_with_autograd(false, q, k, cos, sin, position_ids, interleaved);
  return {r[0], r[1]};
}

std::tuple<at::Tensor, at::Tensor> rotary_embedding_backward_autograd(const at::Tensor& grad_q,
                                                                      const at::Tensor& grad_k, const at::Tensor& cos,
                                                                      const at::Tensor& sin,
                                                                      const std::optional<at::Tensor>& position_ids,
                                                                      bool interleaved) {
  const variable_list r = RotaryFn::rotary_with_autograd(true, grad_q, grad_k, cos, sin, position_ids, interleaved);
  return {r[0], r[1]};
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

std::tuple<at::Tensor, at::Tensor> rotary_embedding(const at::Tensor& q, const at::Tensor& k, const at::Tensor& cos,
                                                    const at::Tensor& sin,
                                                    const std::optional<at::Tensor>& position_ids, bool interleaved) {
  return rotary(kRotary, rot::pass_fwd, q, k, cos, sin, position_ids, interleaved);
}

std::tuple<at::Tensor, at::Tensor> rotary_embedding_backward(const at::Tensor& grad_q, const at::Tensor& grad_k,
                                                             const at::Tensor& cos, const at::Tensor& sin,
                                                             const std::optional<at::Tensor>& position_ids,
                                                             bool interleaved) {
  return rotary(kRotaryBackward, rot::pass_bwd, grad_q, grad_k, cos, sin, position_ids, interleaved);
}
}  // namespace cuda

namespace meta {
at::Tensor silu_and_mul(const at::Tensor& x) {
  check_x(kSilu, x);
  return at::empty_symint(half_shape(x), x.options());
}

at::Tensor gelu_and_mul(const at::Tensor& x, c10::string_view approximate) {
  gelu_act(kGelu, approximate);
  check_x(kGelu, x);
  return at::empty_symint(half_shape(x), x.options());
}

at::Tensor silu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x) {
  check_grad(kSiluBackward, grad, x);
  return at::empty_symint(x.sym_sizes(), x.options());
}

at::Tensor gelu_and_mul_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view approximate) {
  gelu_act(kGeluBackward, approximate);
  check_grad(kGeluBackward, grad, x);
  return at::empty_symint(x.sym_sizes(), x.options());
}

std::tuple<at::Tensor, at::Tensor> rotary_embedding(const at::Tensor& q, const at::Tensor& k, const at::Tensor& cos,
                                                    const at::Tensor& sin,
                                                    const std::optional<at::Tensor>& position_ids, bool interleaved) {
  check_rotary(kRotary, q, k, cos, sin, position_ids);
  return {at::empty_like(q), at::empty_like(k)};
}

std::tuple<at::Tensor, at::Tensor> rotary_embedding_backward(const at::Tensor& grad_q, const at::Tensor& grad_k,
                                                             const at::Tensor& cos, const at::Tensor& sin,
                                                             const std::optional<at::Tensor>& position_ids,
                                                             bool interleaved) {
  check_rotary(kRotaryBackward, grad_q, grad_k, cos, sin, position_ids);
  return {at::empty_like(grad_q), at::empty_like(grad_k)};
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
  m.impl("rotary_embedding", TORCH_FN(gems::rotary_embedding_autograd));
  m.impl("rotary_embedding_backward", TORCH_FN(gems::rotary_embedding_backward_autograd));
}
