// The pointwise driver shared by every generated op: broadcasting, type promotion, output
// allocation, in-place and out= through ATen's own TensorIterator builders (so every rule is
// torch's), then one launch of the variant for the operands' dtype, form and layout. Dense
// same-shape operands in a functional call skip TensorIterator (the hot case).
//
// Fallbacks: kDevice (not CUDA), kTransfer (a copy between devices), kDtype (no variant for the dtype),
// kMixedDtype (operands or out= of another dtype than the computation: only copy_ casts),
// kRank (more than 8 dims after collapsing), kIndex64 (strided beyond 32-bit offsets), kArch
// (no image for the GPU).
#include "ops/pointwise.h"

#include <ATen/Dispatch.h>
#include <ATen/ExpandUtils.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/TensorIterator.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/BinaryOps.h>
#include <ATen/ops/result_type.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <sstream>

#include "runtime/kernels.h"

namespace gems::pointwise {
namespace {

constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();
constexpr int kMaxOperands = 3;
constexpr int kMaxResults = 2;

// Result k's dtype: a fixed one, else bool for comparisons (result 0), else the compute dtype.
c10::ScalarType out_dtype(const OpDesc& op, c10::ScalarType compute, int k = 0) {
  if (op.result_dtypes[k] != c10::ScalarType::Undefined) return op.result_dtypes[k];
  const bool bool_out = op.builder == Builder::k_comparison_op || op.builder == Builder::k_unary_bool_op;
  return bool_out && k == 0 ? c10::ScalarType::Bool : compute;
}

c10::ScalarType operand_dtype(const OpDesc& op, int i, c10::ScalarType compute) {
  return op.operand_dtypes[i] == c10::ScalarType::Undefined ? compute : op.operand_dtypes[i];
}

// A scalar pushed in the variant's opmath type (aot/pointwise.py compute_type).
void push_scalar(KernelArgs& args, c10::ScalarType t, const c10::Scalar& s) {
  switch (t) {
    case c10::ScalarType::Float:
    case c10::ScalarType::Half:
    case c10::ScalarType::BFloat16: args.f32(s.to<float>()); break;
    case c10::ScalarType::Double: args.f64(s.to<double>()); break;
    case c10::ScalarType::Int: args.i32(s.to<int32_t>()); break;
    case c10::ScalarType::Long: args.i64(s.to<int64_t>()); break;
    case c10::ScalarType::Bool: args.small_int(s.to<bool>()); break;
    default: args.small_int(s.to<int64_t>()); break;
  }
}

struct Launch {
  const OpDesc* op;
  c10::ScalarType dtype;  // the computation's (common) dtype
  int scalar_mask = 0;  // bit k: operand k is a Python scalar
  c10::Scalar scalars[kMaxOperands];
  const void* inputs[kMaxOperands] = {};
  void* outs[kMaxResults] = {};
  int64_t n = 0;
};

// Collapsed iteration shape, fastest dim last, padded to `dims`; strides in elements.
struct Strided {
  int dims;
  int64_t size[8];
  int64_t stride[kMaxOperands + kMaxResults][8];  // inputs, then results
};

// n / d for 0 <= n < 2**31 as (umulhi(n, magic) + n) >> shift, with ATen's IntDivider constants:
// shift = ceil(log2(d)), magic = 2**32 * (2**shift - d) / d + 1 (it fits in 32 bits).
struct IntDivider {
  uint32_t magic;
  int32_t shift;
};

IntDivider int_divider(uint32_t d) {
  int32_t shift = 0;
  while (shift < 32 && (uint64_t{1} << shift) < d) ++shift;
  const uint64_t magic = ((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1;
  return {static_cast<uint32_t>(magic), shift};
}

Fallback launch_variant(Launch& l, c10::ArrayRef<c10::Scalar> params, int layout, const Strided* strided,
                        c10::DeviceIndex device) {
  const OpDesc* op = l.op;
  if (op->scalar_divisor && l.scalar_mask == 2 && c10::isFloatingType(l.dtype)) {
    // ATen divides by a Python scalar as a multiplication by its reciprocal, taken in opmath.
    if (l.dtype == c10::ScalarType::Double) {
      l.scalars[1] = 1.0 / l.scalars[1].to<double>();
    } else {
      l.scalars[1] = static_cast<double>(1.0f / l.scalars[1].to<float>());
    }
    op = op->scalar_divisor;
  }
  const int dtype = op->dtype_of(l.dtype);
  if (dtype < 0) return Fallback::kDtype;
  const int form = op->forms[l.scalar_mask];
  if (form < 0) return Fallback::kLayout;
  const int id = op->find(dtype, form, layout);
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) return Fallback::kArch;
  KernelArgs args;
  for (int i = 0; i < op->arity; ++i) args.ptr(l.inputs[i]);
  for (int k = 0; k < op->num_results; ++k) args.ptr(l.outs[k]);
  if (layout == kContig64) {
    args.i64(l.n);
  } else {
    args.i32(static_cast<int32_t>(l.n));
  }
  for (int i = 0; i < op->arity; ++i) push_scalar(args, operand_dtype(*op, i, l.dtype), l.scalars[i]);
  for (const c10::Scalar& p : params) push_scalar(args, l.dtype, p);
  if (strided) {
    for (int d = 1; d < strided->dims; ++d) {
      // (An empty iteration launches nothing; 1 keeps the divider defined there.)
      const IntDivider div = int_divider(static_cast<uint32_t>(std::max<int64_t>(strided->size[d], 1)));
      args.i32(static_cast<int32_t>(strided->size[d]));
      args.i32(static_cast<int32_t>(div.magic));  // a u32 argument: the same 32 bits
      args.i32(div.shift);
    }
    for (int t = 0; t < op->arity + op->num_results; ++t) {
      for (int d = 0; d < strided->dims; ++d) args.i32(static_cast<int32_t>(strided->stride[t][d]));
    }
  }
  const int64_t block = k->image->params[0];  // launch_params = ("BLOCK",)
  gems::launch(*k, device, static_cast<uint32_t>((l.n + block - 1) / block), 1, 1, args);
  return Fallback::kNone;
}

Fallback launch_contig(Launch& l, c10::ArrayRef<c10::Scalar> params, c10::DeviceIndex device) {
  return launch_variant(l, params, l.n > kMaxI32 ? kContig64 : kContig, nullptr, device);
}

// The tensor inputs meet the contiguous variants' 16-byte alignment hint.
bool inputs_aligned(const Launch& l, int arity) {
  for (int i = 0; i < arity; ++i) {
    if (!(l.scalar_mask >> i & 1) && !aligned16(l.inputs[i])) return false;
  }
  return true;
}

// The Python-scalar operand can join the tensors' dtype without changing the result dtype:
// it is a wrapped number of a category no higher than the tensors' (ATen's promotion rule).
bool scalar_keeps_dtype(const at::Tensor& s, c10::ScalarType t) {
  const c10::ScalarType st = s.scalar_type();
  if (c10::isComplexType(st)) return false;
  if (c10::isFloatingType(st)) return c10::isFloatingType(t);
  if (st == c10::ScalarType::Bool) return true;
  return t != c10::ScalarType::Bool;
}

// The value of a wrapped number (a Python scalar ATen turned into a 0-d CPU tensor).
c10::Scalar wrapped_value(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case c10::ScalarType::Double: return *static_cast<const double*>(t.const_data_ptr());
    case c10::ScalarType::Long: return *static_cast<const int64_t*>(t.const_data_ptr());
    case c10::ScalarType::Bool: return *static_cast<const bool*>(t.const_data_ptr());
    default: return t.item();
  }
}

// Functional call on dense CUDA tensors of one dtype and shape (Python scalars allowed): the
// result is a dense tensor of that shape and dtype (bool for comparisons); skip TensorIterator.
bool try_fast(const OpDesc& op, c10::ArrayRef<const at::Tensor*> operands, c10::ArrayRef<c10::Scalar> params,
              at::Tensor& out) {
  for (int i = 0; i < op.arity; ++i) {
    if (op.operand_dtypes[i] != c10::ScalarType::Undefined) return false;  // mixed-dtype operands
  }
  const at::Tensor* first = nullptr;
  Launch l{&op, c10::ScalarType::Undefined};
  for (int i = 0; i < op.arity; ++i) {
    const at::Tensor& t = *operands[i];
    if (t.unsafeGetTensorImpl()->is_wrapped_number()) {
      l.scalar_mask |= 1 << i;
      continue;
    }
    if (!t.is_cuda() || !t.is_non_overlapping_and_dense() || !t.is_contiguous()) return false;
    if (!first) {
      first = &t;
    } else if (t.scalar_type() != first->scalar_type() || t.device() != first->device() ||
               !t.sizes().equals(first->sizes())) {
      return false;
    }
    l.inputs[i] = t.const_data_ptr();
  }
  if (!first || first->numel() == 0) return false;
  l.dtype = first->scalar_type();
  const bool to_float = op.builder == Builder::k_unary_float_op || op.builder == Builder::k_binary_float_op;
  if (to_float && !c10::isFloatingType(l.dtype)) return false;
  for (int i = 0; i < op.arity; ++i) {
    if (l.scalar_mask >> i & 1) {
      if (!scalar_keeps_dtype(*operands[i], l.dtype)) return false;
      l.scalars[i] = wrapped_value(*operands[i]);
    }
  }
  if (op.dtype_of(l.dtype) < 0) return false;
  if (op.alpha) at::native::alpha_check(l.dtype, params[0]);
  if (!inputs_aligned(l, op.arity)) return false;
  const c10::DeviceIndex device = first->device().index();
  c10::cuda::CUDAGuard guard(device);
  // The caching allocator's blocks are 512-byte aligned.
  at::Tensor result = at::detail::empty_cuda(first->sizes(), out_dtype(op, l.dtype), first->device(), std::nullopt);
  l.outs[0] = result.mutable_data_ptr();
  l.n = first->numel();
  if (launch_contig(l, params, device) != Fallback::kNone) return false;
  out = std::move(result);
  return true;
}

// copy_ between dense tensors of one layout (x.to(dtype), clone): one contiguous launch over
// their storage, skipping TensorIterator. Distinct storages, so no overlap analysis is needed.
bool try_fast_copy(const OpDesc& op, const at::Tensor& src, at::Tensor& self) {
  if (!self.sizes().equals(src.sizes()) || !self.strides().equals(src.strides()) || self.numel() == 0) return false;
  if (!self.is_non_overlapping_and_dense() || self.is_alias_of(src)) return false;
  Launch l{&op, src.scalar_type()};
  l.inputs[0] = src.const_data_ptr();
  l.outs[0] = self.mutable_data_ptr();
  if (op.dtype_of(l.dtype) < 0 || !aligned16(l.outs[0]) || !inputs_aligned(l, 1)) return false;
  l.n = self.numel();
  const c10::DeviceIndex device = self.device().index();
  c10::cuda::CUDAGuard guard(device);
  return launch_contig(l, {}, device) == Fallback::kNone;
}

at::TensorIterator build(const OpDesc& op, at::Tensor& out, c10::ArrayRef<const at::Tensor*> operands) {
  switch (op.builder) {
    case Builder::k_unary_op: return at::TensorIterator::unary_op(out, *operands[0]);
    case Builder::k_unary_float_op: return at::TensorIterator::unary_float_op(out, *operands[0]);
    case Builder::k_binary_op: return at::TensorIterator::binary_op(out, *operands[0], *operands[1]);
    case Builder::k_binary_float_op: return at::TensorIterator::binary_float_op(out, *operands[0], *operands[1]);
    case Builder::k_comparison_op: return at::TensorIterator::comparison_op(out, *operands[0], *operands[1]);
    case Builder::k_unary_bool_op:
      // As ATen's logical_not: a bool output, the input of any dtype.
      if (!out.defined()) out = at::empty({0}, operands[0]->options().dtype(at::kBool));
      return at::TensorIteratorConfig().check_all_same_dtype(false).add_output(out).add_const_input(*operands[0]).build();
    case Builder::k_ternary_op: {
      at::TensorIterator iter;
      iter.build_ternary_op(out, *operands[0], *operands[1], *operands[2]);
      return iter;
    }
    case Builder::k_where_op: {
      // As ATen's where_self_out: the output has the result type of self and other; operands of
      // another dtype (ATen converts them) leave the iterator as they are and fall back.
      const c10::ScalarType result_type = at::result_type(*operands[1], *operands[2]);
      if (!out.defined()) out = at::empty({0}, operands[1]->options().dtype(result_type));
      TORCH_CHECK(out.scalar_type() == result_type, "Expected out type to be ", result_type, " but got ",
                  out.scalar_type());
      return at::TensorIteratorConfig()
          .check_all_same_dtype(false)
          .allow_cpu_scalars(true)
          .add_output(out)
          .add_const_input(*operands[0])
          .add_const_input(*operands[1])
          .add_const_input(*operands[2])
          .build();
    }
    case Builder::k_nullary_op:
      // As ATen's fill_out: an expanded output is allowed (every element gets the same value).
      return at::TensorIteratorConfig()
          .set_check_mem_overlap(false)
          .check_all_same_dtype(false)
          .add_output(out)
          .resize_outputs(false)
          .build();
    case Builder::k_copy_op:
      // As ATen's copy_impl (the caller has checked the devices).
      return at::TensorIteratorConfig()
          .add_output(out)
          .add_const_input(*operands[0])
          .resize_outputs(false)
          .check_all_same_dtype(false)
          .check_all_same_device(false)
          .build();
    case Builder::k_threshold_op:
      // As ATen's threshold meta function: threshold is idempotent, so overlap is allowed; the
      // kernel reads the first input only.
      return at::TensorIteratorConfig()
          .set_check_mem_overlap(false)
          .add_output(out)
          .add_const_input(*operands[0])
          .add_const_input(*operands[0])
          .allow_cpu_scalars(true)
          .promote_inputs_to_common_dtype(true)
          .cast_common_dtype_to_outputs(true)
          .enforce_safe_casting_to_output(true)
          .build();
    case Builder::k_clamp_op:
      // As ATen's clamp.Tensor meta function, whose config takes no CPU scalars: the generated
      // wrapper sends a CPU bound to ATen, so the only one here is the wrapped missing bound.
      return at::TensorIteratorConfig()
          .add_output(out)
          .add_const_input(*operands[0])
          .add_const_input(*operands[1])
          .add_const_input(*operands[2])
          .allow_cpu_scalars(true)
          .promote_inputs_to_common_dtype(true)
          .cast_common_dtype_to_outputs(true)
          .enforce_safe_casting_to_output(true)
          .build();
    case Builder::k_frexp_op:
      break;  // several results: run_results
    case Builder::k_masked_fill_op: {
      // As ATen's masked_fill__cuda: the mask broadcast to self, self read and written in place.
      at::assert_no_partial_overlap(out, *operands[1]);
      c10::MaybeOwned<at::Tensor> mask = at::expand_inplace(out, *operands[1], "masked_fill_");
      return at::TensorIteratorConfig()
          .set_check_mem_overlap(false)
          .check_all_same_dtype(false)
          .resize_outputs(false)
          .add_output(out)
          .add_const_input(out)
          .add_owned_const_input(*mask)
          .build();
    }
  }
  TORCH_CHECK(false, "gems: no one-result iterator configuration for ", op.name);
}

// All tensor operands dense in iteration order: the 1-D path applies.
bool dense_1d(at::TensorIteratorBase& iter) {
  if (iter.ndim() == 0) return true;
  if (iter.ndim() != 1) return false;
  for (int k = 0; k < iter.ntensors(); ++k) {
    if (!iter.is_cpu_scalar(k) && iter.strides(k)[0] != static_cast<int64_t>(iter.element_size(k))) return false;
  }
  return true;
}

// The dtype the kernel computes in (the variant's dtype axis).
c10::ScalarType compute_dtype(const OpDesc& op, at::TensorIteratorBase& iter) {
  switch (op.builder) {
    case Builder::k_unary_bool_op:
    case Builder::k_copy_op: return iter.dtype(1);
    case Builder::k_where_op:
    case Builder::k_nullary_op:
    case Builder::k_masked_fill_op: return iter.dtype(0);
    case Builder::k_frexp_op: return iter.dtype(op.num_results);
    default: return iter.common_dtype();
  }
}

// The iterator's operands are the results (0 .. num_results - 1), then the inputs.
Fallback run_iter(const OpDesc& op, at::TensorIteratorBase& iter, c10::ArrayRef<c10::Scalar> params) {
  if (!iter.device().is_cuda()) return Fallback::kDevice;
  const int nres = op.num_results;
  const c10::ScalarType t = compute_dtype(op, iter);
  if (op.dtype_of(t) < 0) return Fallback::kDtype;
  for (int k = 0; k < nres; ++k) {
    if (iter.dtype(k) != out_dtype(op, t, k)) return Fallback::kMixedDtype;
  }
  Launch l{&op, t};
  for (int i = 0; i < op.arity; ++i) {
    const int operand = nres + i;
    if (iter.is_cpu_scalar(operand)) {
      l.scalar_mask |= 1 << i;
      l.scalars[i] = iter.original_scalar_value<double>(operand);
      if (!c10::isFloatingType(t)) l.scalars[i] = iter.original_scalar_value<int64_t>(operand);
    } else if (iter.dtype(operand) != operand_dtype(op, i, t)) {
      return Fallback::kMixedDtype;
    } else {
      l.inputs[i] = iter.data_ptr(operand);
    }
  }
  l.n = iter.numel();
  if (l.n == 0) return Fallback::kNone;
  bool outs_aligned = true;
  for (int k = 0; k < nres; ++k) {
    l.outs[k] = iter.data_ptr(k);
    outs_aligned = outs_aligned && aligned16(l.outs[k]);
  }
  const c10::DeviceIndex device = iter.device().index();
  c10::cuda::CUDAGuard guard(device);
  if (dense_1d(iter) && outs_aligned && inputs_aligned(l, op.arity)) return launch_contig(l, params, device);

  const int ndim = static_cast<int>(iter.ndim());
  if (ndim > 8) return Fallback::kRank;
  if (!iter.can_use_32bit_indexing()) return Fallback::kIndex64;
  Strided s;
  s.dims = ndim <= 3 ? 3 : 8;
  for (int d = 0; d < s.dims; ++d) {
    const int it = s.dims - 1 - d;  // TensorIterator's dim 0 is the fastest
    s.size[d] = it < ndim ? iter.shape()[it] : 1;
    for (int k = 0; k < op.arity + nres; ++k) {
      // The kernel's inputs, then its results.
      const int operand = k < op.arity ? nres + k : k - op.arity;
      const bool scalar = k < op.arity && (l.scalar_mask >> k & 1);
      s.stride[k][d] = it < ndim && !scalar ? iter.strides(operand)[it] / static_cast<int64_t>(iter.element_size(operand))
                                            : 0;
    }
  }
  return launch_variant(l, params, s.dims == 3 ? kStrided3 : kStrided8, &s, device);
}

}  // namespace

bool covers(const OpDesc& op, std::initializer_list<const at::Tensor*> operands, const at::Tensor& written) {
  int i = -1;
  for (const at::Tensor* operand : operands) {
    ++i;
    if (!operand || !operand->defined() || (operand->dim() == 0 && operand->is_cpu())) continue;
    const at::Tensor& t = *operand;
    const c10::ScalarType fixed = op.operand_dtypes[i];
    if (fixed != c10::ScalarType::Undefined ? t.scalar_type() != fixed : op.dtype_of(t.scalar_type()) < 0) {
      return false;
    }
  }
  if (!written.defined()) return true;
  switch (written.scalar_type()) {
    case at::kFloat: case at::kHalf: case at::kBFloat16: case at::kDouble: case at::kChar: case at::kByte:
    case at::kShort: case at::kInt: case at::kLong: case at::kBool:
      return true;
    default:
      return false;
  }
}

Fallback run(const OpDesc& op, c10::ArrayRef<const at::Tensor*> operands, c10::ArrayRef<c10::Scalar> params,
             at::Tensor& out) {
  if (op.builder == Builder::k_copy_op) {
    const at::Tensor& src = *operands[0];
    if (out.is_same(src)) return Fallback::kNone;
    if (!out.is_cuda() || src.device() != out.device()) return Fallback::kTransfer;
    if (try_fast_copy(op, src, out)) return Fallback::kNone;
  } else if (!out.defined() && try_fast(op, operands, params, out)) {
    return Fallback::kNone;
  }
  at::TensorIterator iter = build(op, out, operands);
  if (op.alpha) at::native::alpha_check(iter.common_dtype(), params[0]);
  const Fallback r = run_iter(op, iter, params);
  if (!out.defined()) out = iter.output();
  return r;
}

Fallback run_results(const OpDesc& op, c10::ArrayRef<const at::Tensor*> operands, c10::ArrayRef<c10::Scalar> params,
                     c10::ArrayRef<at::Tensor*> results) {
  TORCH_CHECK(op.builder == Builder::k_frexp_op && static_cast<int>(results.size()) == op.num_results,
              "gems: ", op.name, " has no several-result configuration");
  // As ATen's frexp_out: both results, then the input, of dtypes checked by the caller.
  at::TensorIterator iter = at::TensorIteratorConfig()
                                .add_output(*results[0])
                                .add_output(*results[1])
                                .add_const_input(*operands[0])
                                .check_all_same_dtype(false)
                                .set_check_mem_overlap(true)
                                .build();
  return run_iter(op, iter, params);
}

std::string describe(c10::ArrayRef<const at::Tensor*> operands) {
  std::ostringstream s;
  for (size_t i = 0; i < operands.size(); ++i) {
    const at::Tensor& t = *operands[i];
    s << (i ? ", " : "") << t.scalar_type() << t.sizes() << " on " << t.device();
  }
  return s.str();
}

void check_fits(const c10::Scalar& value, c10::ScalarType t) {
  AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, t, "check_fits", [&] { (void)value.to<scalar_t>(); });
}

// Bool, complex and the other dtypes without clamp variants get a placeholder: their call goes to ATen.
c10::Scalar no_lower_bound(c10::ScalarType t) {
  if (c10::isFloatingType(t)) return -std::numeric_limits<double>::infinity();
  if (!c10::isIntegralType(t, /*includeBool=*/false)) return 0;
  return AT_DISPATCH_INTEGRAL_TYPES(t, "no_lower_bound", [] { return c10::Scalar(std::numeric_limits<scalar_t>::lowest()); });
}

c10::Scalar no_upper_bound(c10::ScalarType t) {
  if (c10::isFloatingType(t)) return std::numeric_limits<double>::infinity();
  if (!c10::isIntegralType(t, /*includeBool=*/false)) return 0;
  return AT_DISPATCH_INTEGRAL_TYPES(t, "no_upper_bound", [] { return c10::Scalar(std::numeric_limits<scalar_t>::max()); });
}

c10::Scalar in_dtype(const c10::Scalar& value, c10::ScalarType t) {
  return AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, t, "in_dtype", [&] {
    const scalar_t v = value.to<scalar_t>();
    if constexpr (std::is_floating_point_v<scalar_t> || std::is_same_v<scalar_t, at::Half> ||
                  std::is_same_v<scalar_t, at::BFloat16>) {
      return c10::Scalar(static_cast<double>(v));
    } else {
      return c10::Scalar(static_cast<int64_t>(v));
    }
  });
}

bool plain_copy(const at::Tensor& self, const at::Tensor& src) {
  return !self._is_zerotensor() && !src._is_zerotensor() && !self.is_neg() && !src.is_neg();
}

c10::Scalar finite_min(c10::ScalarType t) {
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t, "finite_min", [] {
    return c10::Scalar(static_cast<double>(std::numeric_limits<scalar_t>::lowest()));
  });
}

c10::Scalar finite_max(c10::ScalarType t) {
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t, "finite_max", [] {
    return c10::Scalar(static_cast<double>(std::numeric_limits<scalar_t>::max()));
  });
}

}  // namespace gems::pointwise
