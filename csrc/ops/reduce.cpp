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
// its square root, the mean beside it (var_mean: mean_ptr gets it with the output's offsets).
struct Finish {
  float scale = 1.0f;
  float correction = 0.0f;
  bool take_sqrt = false;
  void* mean = nullptr;
};

// in_value / out_value: elements between the values of a state the launch reads / writes (a
// split's workspace planes), 0 where it reads elements / writes results.
void launch_prepared(const Prepared& prep, const Split& s, const void* in, void* out, bool to_workspace,
                     int64_t out_split, int64_t in_value, int64_t out_value, const Finish& finish,
                     c10::DeviceIndex device) {
  const Plan& p = prep.plan;
  const int64_t vec = prep.vec;
  auto out_stride = [&](const Dim& d) { return to_workspace ? d.ws_stride : d.out_stride; };
  KernelArgs args;
  args.ptr(in);
  args.ptr(out);
  args.ptr(finish.mean ? finish.mean : out);
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
  args.i64(s.r_step);
  args.i64(s.r_len);
  args.i64(s.ro_step);
  args.i64(s.ro_len);
  args.i64(out_split);
  args.i64(in_value);
  args.i64(out_value);
  args.i64(finish.mean ? 1 : 0);
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

// Reduces `in` (dims: its geometry against `out`) into `out`, which has the result's shape and dtype.
Fallback run(t::Reduction r, const at::Tensor& in, const Dim* dims, int ndim, const at::Tensor& out,
             const Finish& finish) {
  const int combine = t::kCombine[r];
  Prepared prep;
  if (Fallback f = prepare(in, dims, ndim, combine, t::kStageWhole[r], out.scalar_type(), prep); f != Fallback::kNone) {
    return f;
  }
  const c10::DeviceIndex device = in.device().index();
  const Split split = reduce_plan::choose_split(prep.plan, prep.programs, true);
  if (split.count > 1) {
    // Partials go to a workspace [splits, *out.shape] (one such plane per value of a multi-valued
    // accumulator); a second launch combines its dim 0 into out. Prepared before the first
    // launch, so a split never half-runs.
    at::DimVector ws_shape{t::kValues[r], split.count};
    ws_shape.append(out.sizes().begin(), out.sizes().end());
    const c10::ScalarType ws_dtype = workspace_dtype(r, out.scalar_type());
    const at::Tensor planes = at::detail::empty_cuda(ws_shape, ws_dtype, in.device(), std::nullopt);
    const at::Tensor ws = planes.select(0, 0);
    const int64_t ws_value = t::kValues[r] > 1 ? planes.stride(0) : 0;
    Dim ws_dims[t::kMaxDims + 1];
    ws_dims[0] = Dim{split.count, ws.stride(0), 0, 0, true};
    for (int64_t j = 0; j < out.dim(); ++j) {
      ws_dims[j + 1] = Dim{out.size(j), ws.stride(j + 1), out.stride(j), out.stride(j), false};
    }
    // The first pass stores partials of the workspace dtype (its variant's output dtype), or
    // whole states.
    Prepared first = prep;
    Prepared second;
    const bool same_first = ws_dtype == out.scalar_type() && t::kStageFirst[r] == t::kStageWhole[r];
    if ((same_first || prepare(in, dims, ndim, combine, t::kStageFirst[r], ws_dtype, first) == Fallback::kNone) &&
        prepare(ws, ws_dims, static_cast<int>(out.dim()) + 1, combine, t::kStageSecond[r], out.scalar_type(),
                second) == Fallback::kNone) {
      launch_prepared(first, split, in.const_data_ptr(), ws.mutable_data_ptr(), true, ws.stride(0), 0, ws_value,
                      Finish{}, device);
      launch_prepared(second, reduce_plan::choose_split(second.plan, second.programs, false), ws.const_data_ptr(),
                      out.mutable_data_ptr(), false, 0, ws_value, 0, finish, device);
      return Fallback::kNone;
    }
  }
  launch_prepared(prep, reduce_plan::choose_split(prep.plan, prep.programs, false), in.const_data_ptr(),
                  out.mutable_data_ptr(), false, 0, 0, 0, finish, device);
  return Fallback::kNone;
}

// torch's result dtype of a functional call (its meta function's checks included).
c10::ScalarType result_dtype(const Call& c) {
  const c10::ScalarType promoted = at::native::get_dtype_from_self(c.self, c.dtype, /*promote_integers=*/true);
  switch (t::kResult[c.reduction]) {
    case t::kSame: return c.self.scalar_type();
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

// torch's result dtype of an out= call, after its meta function's checks against out.
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
  return c.dtype.value_or(out.scalar_type());
}

// torch's checks of an empty input where the reduction has no identity (amax: "Expected reduction
// dim 0 to have non-zero size."), its dim checks and result shape, and the dim mask (an empty dim
// list: every dim, or none where the declaration says so: all, any).
at::DimVector reduction_shape(const Call& c, DimMask& mask) {
  const int64_t ndim = c.self.dim();
  if (t::kRaisesOnEmpty[c.reduction] && c.self.numel() == 0) {
    const std::string name = std::string(t::kName[c.reduction]) + "()";
    at::native::zero_numel_check_dims(c.self, c.dim.value_or(at::IntArrayRef{}), name.c_str());
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

// Reduces self over `mask` into `out` (torch's result shape and dtype, any strides) and, for a
// reduction declared with_mean, the mean into `mean` (out's shape, dtype and strides).
Fallback reduce_into(const Call& c, const DimMask& mask, const at::Tensor& out, const at::Tensor* mean = nullptr) {
  const at::Tensor& self = c.self;
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
  if (reduced_numel == 0) {
    out.fill_(t::kEmptyValue[c.reduction]);
    if (mean) mean->fill_(std::numeric_limits<double>::quiet_NaN());
    return Fallback::kNone;
  }
  // ATen's mean: the sum times (float) outputs / inputs.
  if (t::kScaled[c.reduction]) finish.scale = static_cast<float>(out.numel()) / self.numel();
  return run(c.reduction, self, dims, ndim, out, finish);
}

}  // namespace

Fallback functional(const Call& c, at::Tensor& result, at::Tensor& mean) {
  const c10::ScalarType dtype = result_dtype(c);
  DimMask mask;
  const at::DimVector shape = reduction_shape(c, mask);
  Fallback r = check_input(c, dtype);
  if (r != Fallback::kNone) return r;
  c10::cuda::CUDAGuard guard(c.self.device());
  at::Tensor out = at::detail::empty_cuda(shape, dtype, c.self.device(), std::nullopt);
  at::Tensor out_mean;
  if (t::kWithMean[c.reduction]) out_mean = at::detail::empty_cuda(shape, dtype, c.self.device(), std::nullopt);
  r = reduce_into(c, mask, out, out_mean.defined() ? &out_mean : nullptr);
  if (r == Fallback::kNone) {
    result = std::move(out);
    mean = std::move(out_mean);
  }
  return r;
}

Fallback into(const Call& c, at::Tensor& out) {
  // The structured kernel's order: meta checks, then out's dtype and device, then the resize.
  const c10::ScalarType dtype = out_dtype(c, out);
  DimMask mask;
  const at::DimVector shape = reduction_shape(c, mask);
  TORCH_CHECK(out.scalar_type() == dtype, "Expected out tensor to have dtype ", c10::scalarTypeToTypeMeta(dtype),
              ", but got ", out.dtype(), " instead");
  TORCH_CHECK(out.device() == c.self.device(), "Expected out tensor to have device ", c.self.device(), ", but got ",
              out.device(), " instead");
  at::native::resize_output(out, shape);
  if (t::kResult[c.reduction] == t::kReal) {
    TORCH_CHECK(at::canCast(c.self.scalar_type(), out.scalar_type()), "result type ", c.self.scalar_type(),
                " can't be cast to the desired output type ", out.scalar_type());
  }
  Fallback r = check_input(c, dtype);
  // Outputs that alias themselves or the input: ATen's behaviour, whatever it is.
  if (r == Fallback::kNone && (at::has_internal_overlap(out) == at::MemOverlap::Yes || out.is_alias_of(c.self))) {
    r = Fallback::kLayout;
  }
  if (r == Fallback::kNone) {
    c10::cuda::CUDAGuard guard(c.self.device());
    r = reduce_into(c, mask, out);
  }
  return r;
}

void unsupported(const char* op, Fallback reason, const Call& c) {
  std::ostringstream s;
  s << c.self.scalar_type() << c.self.sizes() << " strides " << c.self.strides() << " -> " << result_dtype(c);
  gems::unsupported(op, reason, s.str());
}

}  // namespace gems::reduce
