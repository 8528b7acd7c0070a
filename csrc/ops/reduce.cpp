// Reduce driver: every reduction of aot/family_reduce.py through one path. Views the input, with
// no copy, as groups of kept and reduced dims in memory order (ops/reduce_plan.h), picks the
// variant of the reduction's combine function and stage and, where few programs would walk a
// long reduction, splits it into partials (whole accumulator states for a multi-valued combine)
// that a second launch combines. Output shape, dtype and argument checks come from ATen's own
// reduction helpers, so they are torch's; what differs between reductions (result dtype, empty
// reductions, the mean's scale, a variance's finish) is the declarations' data in reduce_tables.h.
#include "ops/reduce.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/ReduceOpsUtils.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/strides.h>

#include <limits>
#include <sstream>

#include "gems_kernels.h"
#include "ops/reduce_plan.h"
#include "runtime/kernels.h"

namespace gems::reduce {
namespace {

namespace g = gen::reduce;
namespace t = reduce_tables;
using at::native::DimMask;
using reduce_plan::Dim;
using reduce_plan::Plan;
using reduce_plan::Split;

// A plan with its kernel: the aligned variant where the input pointer and every stride the
// kernel takes allow 16-byte loads, else the plain one.
struct Prepared {
  Plan plan;
  const LoadedKernel* kernel = nullptr;
  int64_t vec = 1;
  int64_t programs = 0;
};

Fallback prepare(const at::Tensor& in, const Dim* dims, int ndim, int combine, int stage, c10::ScalarType out_dtype,
                 Prepared& prep) {
  Plan& p = prep.plan;
  switch (reduce_plan::plan(dims, ndim, p)) {
    case reduce_plan::Planned::kLayout: return Fallback::kLayout;
    case reduce_plan::Planned::kRank: return Fallback::kRank;
    case reduce_plan::Planned::kOk: break;
  }
  const int in_index = g::in_dtype_of(in.scalar_type()), out_index = g::out_dtype_of(out_dtype);
  if (in_index < 0 || out_index < 0) return Fallback::kDtype;
  int64_t vec = reduce_plan::vec_for(p, in.element_size(), aligned16(in.const_data_ptr()));
  int id = vec > 1 ? g::find(combine, stage, p.kind, in_index, out_index, g::align_16) : -1;
  if (id < 0) {
    id = g::find(combine, stage, p.kind, in_index, out_index, g::align_any);
    vec = 1;
  }
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, in.device().index());
  if (!k) return Fallback::kArch;
  const int64_t programs = reduce_plan::program_count(p);
  if (programs > std::numeric_limits<int32_t>::max()) return Fallback::kIndex64;
  prep.kernel = k;
  prep.vec = vec;
  prep.programs = programs;
  return Fallback::kNone;
}

// How a launch finishes (kernels/reduce.py _write): the mean's scale, the variance's correction,
// its square root, the mean beside it (var_mean: mean_ptr gets it with the output's offsets), an
// extreme's index (index_ptr, with the same offsets) and whether the extreme is written too.
struct Finish {
  float scale = 1.0f;
  float correction = 0.0f;
  bool take_sqrt = false;
  void* mean = nullptr;
  void* index = nullptr;
  bool has_value = true;
};

// in_value / out_value: elements between the values of a state the launch reads / writes (a
// split's workspace planes), 0 where it reads elements / writes results; in_index: the indices of
// the partials it reads (an indexed combine's second launch).
void launch_prepared(const Prepared& prep, const Split& s, const void* in, const void* in_index, void* out,
                     bool to_workspace, int64_t out_split, int64_t in_value, int64_t out_value, const Finish& finish,
                     c10::DeviceIndex device) {
  const Plan& p = prep.plan;
  const int64_t vec = prep.vec;
  auto out_stride = [&](const Dim& d) { return to_workspace ? d.ws_stride : d.out_stride; };
  KernelArgs args;
  args.ptr(in);
  args.ptr(out);
  args.ptr(finish.mean ? finish.mean : out);
  args.ptr(in_index);
  args.ptr(finish.index);
  if (p.inner) {
    args.i64(p.kept[1].size);
    args.i64(p.kept[2].size);
    for (const Dim& d : p.kept) args.i64(d.in_stride / vec);
    for (const Dim& d : p.kept) args.i64(out_stride(d));
    args.i64(p.run.size);
  } else {
    args.i64(p.run.size / vec);
    args.i64(p.kept[2].size);
    args.i64(p.kept[1].in_stride / vec);
    args.i64(p.kept[2].in_stride / vec);
    args.i64(out_stride(p.kept[1]));
    args.i64(out_stride(p.kept[2]));
    args.i64(out_stride(p.run));
    args.i64(p.reduced_inner.size);
    args.i64(p.reduced_inner.in_stride / vec);
  }
  args.i64(reduce_plan::outer_count(p));
  args.i64(p.reduced_outer[1].size);
  args.i64(p.reduced_outer[0].in_stride / vec);
  args.i64(p.reduced_outer[1].in_stride / vec);
  args.i64(p.inner ? p.run.index_stride : p.reduced_inner.index_stride);
  args.i64(p.reduced_outer[0].index_stride);
  args.i64(p.reduced_outer[1].index_stride);
  args.i64(s.r_step);
  args.i64(s.r_len);
  args.i64(s.ro_step);
  args.i64(s.ro_len);
  args.i64(out_split);
  args.i64(in_value);
  args.i64(out_value);
  args.i64(finish.mean ? 1 : 0);
  args.i64(finish.has_value ? 1 : 0);
  args.i64(finish.take_sqrt ? 1 : 0);
  args.f32(finish.scale);
  args.f32(finish.correction);
  launch(*prep.kernel, device, static_cast<uint32_t>(prep.programs), static_cast<uint32_t>(s.count), 1, args);
}

// The dtype of a split's partials (aot/family_reduce.py workspace()): the output's for exact
// combines, else the kernels' accumulator.
c10::ScalarType workspace_dtype(t::Reduction r, c10::ScalarType out) {
  if (t::kExact[r]) return out;
  return c10::isFloatingType(out) ? at::kFloat : at::kLong;
}

// Reduces `in` (dims: its geometry against the results, which share `out`'s shape and strides)
// into the value at `value` (of dtype value_dtype; nullptr where the reduction does not return it)
// and what `finish` points to (the mean, the index).
Fallback run(t::Reduction r, const at::Tensor& in, const Dim* dims, int ndim, const at::Tensor& out,
             c10::ScalarType value_dtype, void* value, const Finish& finish) {
  const int combine = t::kCombine[r];
  Prepared prep;
  if (Fallback f = prepare(in, dims, ndim, combine, t::kStageWhole[r], value_dtype, prep); f != Fallback::kNone) {
    return f;
  }
  const c10::DeviceIndex device = in.device().index();
  const Split split = reduce_plan::choose_split(prep.plan, prep.programs, true);
  if (split.count > 1) {
    // Partials go to a workspace [splits, *out.shape] (one such plane per value of a multi-valued
    // accumulator; an indexed one's index in an int64 plane of its own); a second launch combines
    // its dim 0 into the results. Prepared before the first launch, so a split never half-runs.
    const int64_t planes_count = t::kIndexed[r] ? 1 : t::kValues[r];
    at::DimVector ws_shape{planes_count, split.count};
    ws_shape.append(out.sizes().begin(), out.sizes().end());
    const c10::ScalarType ws_dtype = workspace_dtype(r, value_dtype);
    const at::Tensor planes = at::detail::empty_cuda(ws_shape, ws_dtype, in.device(), std::nullopt);
    const at::Tensor ws = planes.select(0, 0);
    const int64_t ws_value = planes_count > 1 ? planes.stride(0) : 0;
    at::Tensor ws_index;
    if (t::kIndexed[r]) ws_index = at::detail::empty_cuda(ws.sizes(), at::kLong, in.device(), std::nullopt);
    Dim ws_dims[t::kMaxDims + 1];
    ws_dims[0] = Dim{split.count, ws.stride(0), 0, 0, true};
    for (int64_t j = 0; j < out.dim(); ++j) {
      ws_dims[j + 1] = Dim{out.size(j), ws.stride(j + 1), out.stride(j), out.stride(j), false};
    }
    // The first pass stores partials of the workspace dtype (its variant's output dtype), or
    // whole states.
    Prepared first = prep;
    Prepared second;
    const bool same_first = ws_dtype == value_dtype && t::kStageFirst[r] == t::kStageWhole[r];
    if ((same_first || prepare(in, dims, ndim, combine, t::kStageFirst[r], ws_dtype, first) == Fallback::kNone) &&
        prepare(ws, ws_dims, static_cast<int>(out.dim()) + 1, combine, t::kStageSecond[r], value_dtype, second) ==
            Fallback::kNone) {
      Finish partials;
      if (ws_index.defined()) partials.index = ws_index.mutable_data_ptr();
      launch_prepared(first, split, in.const_data_ptr(), nullptr, ws.mutable_data_ptr(), true, ws.stride(0), 0,
                      ws_value, partials, device);
      launch_prepared(second, reduce_plan::choose_split(second.plan, second.programs, false), ws.const_data_ptr(),
                      ws_index.defined() ? ws_index.const_data_ptr() : nullptr, value, false, 0, ws_value, 0, finish,
                      device);
      return Fallback::kNone;
    }
  }
  launch_prepared(prep, reduce_plan::choose_split(prep.plan, prep.programs, false), in.const_data_ptr(), nullptr,
                  value, false, 0, 0, 0, finish, device);
  return Fallback::kNone;
}

// torch's dtype of a functional call's value (its meta function's checks included).
c10::ScalarType result_dtype(const Call& c) {
  const c10::ScalarType promoted = at::native::get_dtype_from_self(c.self, c.dtype, /*promote_integers=*/true);
  switch (t::kResult[c.reduction]) {
    case t::kSame:
    case t::kInput:
    case t::kUnary: return c.self.scalar_type();
    case t::kArg:  // argmax refuses these before any other check
      TORCH_CHECK(c.self.scalar_type() != at::kBool, t::kName[c.reduction], "(): does not support bool input");
      TORCH_CHECK(!at::isComplexType(c.self.scalar_type()), t::kName[c.reduction],
                  "(): does not support complex input");
      return c.self.scalar_type();
    case t::kBool: return c.self.scalar_type() == at::kByte ? at::kByte : at::kBool;
    case t::kReal:
      TORCH_CHECK(at::isFloatingType(c.self.scalar_type()) || at::isComplexType(c.self.scalar_type()),
                  t::kErrorName[c.reduction], " only support floating point and complex dtypes");
      return c10::toRealValueType(c.self.scalar_type());
    case t::kFloating:
      TORCH_CHECK(at::isFloatingType(promoted) || at::isComplexType(promoted), t::kName[c.reduction],
                  "(): could not infer output dtype. ", c.dtype ? "Optional" : "Input",
                  " dtype must be either a floating point or complex dtype. Got: ",
                  c.dtype.value_or(c.self.scalar_type()));
      return promoted;
    case t::kPromote: break;
  }
  return promoted;
}

// torch's dtype of an out= call's value, after its meta function's checks against out.
c10::ScalarType out_dtype(const Call& c, const at::Tensor& out) {
  if (t::kResult[c.reduction] == t::kSame) {
    TORCH_CHECK(c.self.scalar_type() == out.scalar_type(), "Expected the dtype for input and out to match, but got ",
                c.self.scalar_type(), " for input's dtype and ", out.scalar_type(), " for out's dtype.");
    return out.scalar_type();
  }
  if (t::kResult[c.reduction] == t::kBool) {
    TORCH_CHECK(out.scalar_type() == at::kBool || out.scalar_type() == at::kByte, t::kName[c.reduction],
                " only supports bool tensor for result, got: ", out.scalar_type());
    return out.scalar_type();
  }
  if (t::kResult[c.reduction] == t::kFloating || t::kResult[c.reduction] == t::kReal) result_dtype(c);  // its checks
  if (t::kResult[c.reduction] == t::kInput) return c.self.scalar_type();  // out= of another: the structured check
  return c.dtype.value_or(out.scalar_type());
}

// torch's checks of an empty input where the reduction has no identity (amax: "Expected reduction
// dim 0 to have non-zero size."; argmax, max.dim: of the wrapped dim, an IndexError without one),
// its dim checks and result shape, and the dim mask (an empty dim list: every dim, or none where
// the declaration says so: all, any).
at::DimVector reduction_shape(const Call& c, DimMask& mask) {
  const int64_t ndim = c.self.dim();
  if (t::kEmpty[c.reduction] == t::kRaiseArg && c.self.numel() == 0) {  // ATen's check_argmax_argmin
    const std::string name = std::string(t::kName[c.reduction]) + "()";
    if (c.dim) {
      at::native::zero_numel_check_dims(c.self, at::maybe_wrap_dim((*c.dim)[0], ndim), name.c_str());
    } else {
      TORCH_CHECK_INDEX(c.self.numel() != 0, name, ": Expected reduction dim to be specified for input.numel() == 0.");
    }
  } else if (t::kEmpty[c.reduction] == t::kRaise && c.self.numel() == 0) {
    const std::string name = std::string(t::kName[c.reduction]) + "()";
    at::native::zero_numel_check_dims(c.self, c.dim.value_or(at::IntArrayRef{}), name.c_str());
  }
  if (t::kResult[c.reduction] == t::kInput) {  // max.dim's meta function, after its dim checks
    TORCH_CHECK(!at::isComplexType(c.self.scalar_type()), t::kName[c.reduction], "(): does not support complex input");
  }
  at::DimVector dims = at::native::make_dim_vector(c.dim, ndim);
  at::maybe_wrap_dims(dims, ndim);
  const bool allow_empty_dims = !t::kEmptyDimsReduceAll[c.reduction];
  at::DimVector shape = at::meta::get_reduction_shape(c.self, dims, c.keepdim, allow_empty_dims);
  mask = at::native::make_dim_mask(dims, ndim, allow_empty_dims);
  return shape;
}

Fallback check_input(const Call& c, c10::ScalarType out_dtype) {
  const at::Tensor& self = c.self;
  if (self.dim() > t::kMaxDims) return Fallback::kRank;
  const int in_index = g::in_dtype_of(self.scalar_type()), out_index = g::out_dtype_of(out_dtype);
  if (in_index < 0 || out_index < 0 || !t::kCovers[c.reduction][in_index][out_index]) return Fallback::kDtype;
  if (self.is_neg() || self.is_conj()) return Fallback::kLayout;  // lazily negated views
  return Fallback::kNone;
}

// Reduces self over `mask` into the results it returns (torch's shapes and dtypes; the value and the
// index: the same strides, any): `value` (its dtype value_dtype), for a reduction declared with a
// mean `mean` (value's strides), for an indexed one `index`. The value is left undefined where the
// reduction does not return it (argmax): the kernels' variant is still the value dtype's.
Fallback reduce_into(const Call& c, const DimMask& mask, c10::ScalarType value_dtype, const at::Tensor* value,
                     const at::Tensor* mean, const at::Tensor* index) {
  const at::Tensor& self = c.self;
  const at::Tensor& out = value ? *value : *index;  // the results' shape and strides
  Finish finish;
  if (t::kVariance[c.reduction]) {  // ATen's std_var_out
    finish.correction = static_cast<float>(c.correction.value_or(1).toDouble());
    finish.take_sqrt = t::kSqrt[c.reduction];
    if (mean) finish.mean = mean->mutable_data_ptr();
    const int64_t per_output = out.numel() == 0 ? 0 : self.numel() / out.numel();
    if (per_output - c.correction.value_or(1).toDouble() <= 0) {
      TORCH_WARN(t::kName[c.reduction], "(): degrees of freedom is <= 0. Correction should be strictly less than the ",
                 "reduction factor (input numel divided by output numel).");
    }
  }
  if (out.numel() == 0) return Fallback::kNone;
  if (index) {
    finish.index = index->mutable_data_ptr();
    finish.has_value = value != nullptr;
  }
  const int ndim = static_cast<int>(self.dim());
  const at::DimVector ws_strides = c10::contiguous_strides(out.sizes());
  Dim dims[t::kMaxDims];
  int64_t reduced_numel = 1;
  for (int d = 0, j = 0; d < ndim; ++d) {
    Dim& x = dims[d];
    x.size = self.size(d);
    x.in_stride = self.stride(d);
    x.reduced = mask[d];
    if (x.reduced) {
      reduced_numel *= x.size;
    } else {
      x.out_stride = out.stride(j);
      x.ws_stride = ws_strides[j];
    }
    if (c.keepdim || !x.reduced) ++j;
  }
  if (reduced_numel == 0) {  // raised before for a reduction without identity
    if (value) value->fill_(t::kEmptyValue[c.reduction]);
    if (mean) mean->fill_(std::numeric_limits<double>::quiet_NaN());
    return Fallback::kNone;
  }
  if (t::kIndexed[c.reduction]) {  // an element's index: its position in the reduced dims, in torch's order
    int64_t index_stride = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      if (dims[d].reduced) {
        dims[d].index_stride = index_stride;
        index_stride *= dims[d].size;
      }
    }
  }
  // ATen's mean: the sum times (float) outputs / inputs.
  if (t::kScaled[c.reduction]) finish.scale = static_cast<float>(out.numel()) / self.numel();
  return run(c.reduction, self, dims, ndim, out, value_dtype, value ? value->mutable_data_ptr() : nullptr, finish);
}

// An out= tensor checked and resized as a structured kernel does (after its meta function's checks).
void resize_out(const at::Tensor& self, at::Tensor& out, c10::ScalarType dtype, at::IntArrayRef shape) {
  TORCH_CHECK(out.scalar_type() == dtype, "Expected out tensor to have dtype ", c10::scalarTypeToTypeMeta(dtype),
              ", but got ", out.dtype(), " instead");
  TORCH_CHECK(out.device() == self.device(), "Expected out tensor to have device ", self.device(), ", but got ",
              out.device(), " instead");
  at::native::resize_output(out, shape);
}

}  // namespace

Fallback functional(const Call& c, Results& results) {
  const c10::ScalarType dtype = result_dtype(c);
  DimMask mask;
  const at::DimVector shape = reduction_shape(c, mask);
  Fallback r = check_input(c, dtype);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(c.self.device());
  Results out;
  if (t::kWithValue[c.reduction]) out.value = at::detail::empty_cuda(shape, dtype, c.self.device(), std::nullopt);
  if (t::kWithMean[c.reduction]) out.mean = at::detail::empty_cuda(shape, dtype, c.self.device(), std::nullopt);
  if (t::kWithIndex[c.reduction]) out.index = at::detail::empty_cuda(shape, at::kLong, c.self.device(), std::nullopt);
  auto given = [](const at::Tensor& t) { return t.defined() ? &t : nullptr; };
  r = reduce_into(c, mask, dtype, given(out.value), given(out.mean), given(out.index));
  if (r == Fallback::kNone) results = std::move(out);
  return r;
}

Fallback into(const Call& c, const Outs& outs) {
  if (t::kResult[c.reduction] == t::kUnary) {  // max(): ATen checks these after resizing out, then runs
    const at::Tensor& out = *outs.value;
    if (out.device() != c.self.device()) return Fallback::kDevice;
    if (out.scalar_type() != c.self.scalar_type()) return Fallback::kDtype;
    if (c.self.numel() == 0) return Fallback::kArgs;
  }
  // The structured kernel's order: meta checks, then each out's dtype and device, and its resize.
  const c10::ScalarType dtype = outs.value ? out_dtype(c, *outs.value) : result_dtype(c);
  DimMask mask;
  const at::DimVector shape = reduction_shape(c, mask);
  if (outs.value) resize_out(c.self, *outs.value, dtype, shape);
  if (outs.index) resize_out(c.self, *outs.index, at::kLong, shape);
  if (t::kResult[c.reduction] == t::kReal) {
    TORCH_CHECK(at::canCast(c.self.scalar_type(), outs.value->scalar_type()), "result type ", c.self.scalar_type(),
                " can't be cast to the desired output type ", outs.value->scalar_type());
  }
  Fallback r = check_input(c, dtype);
  // Outputs that alias themselves, each other or the input, and a value and index of different
  // strides (the kernels write both with one set of offsets): ATen's behaviour, whatever it is.
  for (const at::Tensor* out : {outs.value, outs.index}) {
    if (r == Fallback::kNone && out &&
        (at::has_internal_overlap(*out) == at::MemOverlap::Yes || out->is_alias_of(c.self))) {
      r = Fallback::kLayout;
    }
  }
  if (r == Fallback::kNone && outs.value && outs.index &&
      (outs.value->is_alias_of(*outs.index) || outs.value->strides() != outs.index->strides())) {
    r = Fallback::kLayout;
  }
  if (r == Fallback::kNone) {
    c10::cuda::CUDAGuard guard(c.self.device());
    r = reduce_into(c, mask, dtype, outs.value, nullptr, outs.index);
  }
  return r;
}

void unsupported(const char* op, Fallback reason, const Call& c) {
  std::ostringstream s;
  s << c.self.scalar_type() << c.self.sizes() << " strides " << c.self.strides() << " -> " << result_dtype(c);
  gems::unsupported(op, reason, s.str());
}

}  // namespace gems::reduce
