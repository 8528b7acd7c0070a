// Reduce driver: sum. Views the input, with no copy, as groups of kept and reduced dims in
// memory order, picks a kernel kind of kernels/reduce.py and, where few programs would walk a
// long reduction, splits it into fp32 / int64 partials that a second launch sums. Output shape,
// dtype and dim checks come from ATen's own reduction helpers, so they are torch's.
// tests/test_reduce_cpu.py mirrors make_plan / choose_split to run the kernels interpreted.
#include "gems_reduce_ops.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/ReduceOpsUtils.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum_cuda_dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/strides.h>

#include <algorithm>
#include <limits>
#include <sstream>

#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace g = gen::sum;
using at::native::DimMask;

// Kind thresholds, for the tiles of KINDS in aot/family_reduce.py.
constexpr int64_t kInnerR32Max = 64, kInnerR128Max = 512, kInnerR512Max = 2048;
constexpr int64_t kOuterB4Max = 4, kOuterB16Max = 16, kOuterB64Max = 64;
// A launch of at most kTargetPrograms / 2 programs is split to about kTargetPrograms programs
// of at least kMinSplitSteps steps. Fixed numbers rather than the device's SM count, so an
// input is summed in the same order on every GPU.
constexpr int64_t kTargetPrograms = 1024, kMinSplitSteps = 4, kMaxSplits = 1024;
constexpr int kMaxDims = 64;  // DimMask's width: torch reduces at most 64 dims

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }


// A dim, or a coalesced group of dims. Strides in elements: of the input, of the output (0 for
// reduced dims) and of the contiguous split workspace.
struct Dim {
  int64_t size = 1;
  int64_t in_stride = 0;
  int64_t out_stride = 0;
  int64_t ws_stride = 0;
  bool reduced = false;
};

// The kernels' view of a reduction (kernels/reduce.py).
struct Plan {
  int kind = 0;
  bool inner = true;  // sum_inner, else sum_outer
  Dim kept[3];  // outermost first, padded in front; sum_outer takes kept[1], kept[2]
  Dim reduced_outer[2];  // walked one index at a time, outermost first, padded in front
  Dim run;  // the contiguous run: reduced (sum_inner, R) or kept (sum_outer, B)
  Dim reduced_inner;  // sum_outer: the innermost reduced dim, walked in BLOCK_R steps
};

int inner_kind(int64_t r) {
  if (r <= kInnerR32Max) return g::kind_inner_r32;
  if (r <= kInnerR128Max) return g::kind_inner_r128;
  if (r <= kInnerR512Max) return g::kind_inner_r512;
  return g::kind_inner_r2k;
}

int outer_kind(int64_t b) {
  if (b <= kOuterB4Max) return g::kind_outer_b4;
  if (b <= kOuterB16Max) return g::kind_outer_b16;
  if (b <= kOuterB64Max) return g::kind_outer_b64;
  return g::kind_outer_b128;
}

bool coalesces(const Dim& outer, const Dim& inner) {
  if (outer.reduced != inner.reduced || outer.in_stride != inner.size * inner.in_stride) return false;
  return inner.reduced ||
         (outer.out_stride == inner.size * inner.out_stride && outer.ws_stride == inner.size * inner.ws_stride);
}

// Groups dims in memory order and fits them to a kernel; kLayout when the innermost dim is
// strided, kRank when there are more groups than the kernels take.
Fallback make_plan(const Dim* dims, int ndim, Plan& p) {
  Dim sorted[kMaxDims + 1];
  int n = 0;
  for (int d = 0; d < ndim; ++d) {
    if (dims[d].size != 1) sorted[n++] = dims[d];
  }
  // Outermost first; broadcast (stride 0) dims outermost, so they never end a contiguous run.
  std::stable_sort(sorted, sorted + n, [](const Dim& a, const Dim& b) {
    if ((a.in_stride == 0) != (b.in_stride == 0)) return a.in_stride == 0;
    return a.in_stride > b.in_stride;
  });
  Dim groups[kMaxDims + 1];
  int num_groups = 0;
  bool any_reduced = false;
  for (int i = 0; i < n; ++i) {
    any_reduced |= sorted[i].reduced;
    if (num_groups > 0 && coalesces(groups[num_groups - 1], sorted[i])) {
      Dim& last = groups[num_groups - 1];
      last.size *= sorted[i].size;
      last.in_stride = sorted[i].in_stride;
      last.out_stride = sorted[i].out_stride;
      last.ws_stride = sorted[i].ws_stride;
    } else {
      groups[num_groups++] = sorted[i];
    }
  }
  if (!any_reduced) {  // only size-1 dims are reduced: a one-element reduction
    std::copy_backward(groups, groups + num_groups, groups + num_groups + 1);
    groups[0] = Dim{1, 1, 0, 0, true};
    ++num_groups;
  }
  if (groups[num_groups - 1].in_stride == 0) {
    // Every dim is broadcast (stride 0 dims sort outermost): a one-element contiguous run.
    groups[num_groups++] = Dim{1, 1, 0, 0, true};
  } else if (groups[num_groups - 1].in_stride != 1) {
    return Fallback::kLayout;
  }

  Dim kept[kMaxDims + 1], reduced[kMaxDims + 1];
  int num_kept = 0, num_reduced = 0;
  for (int i = 0; i < num_groups; ++i) {
    if (groups[i].reduced) {
      reduced[num_reduced++] = groups[i];
    } else {
      kept[num_kept++] = groups[i];
    }
  }
  p.inner = groups[num_groups - 1].reduced;
  if (p.inner) {
    p.run = reduced[--num_reduced];
    p.kind = inner_kind(p.run.size);
    if (num_kept > 3) return Fallback::kRank;
  } else {
    p.run = kept[--num_kept];
    p.reduced_inner = reduced[--num_reduced];
    p.kind = outer_kind(p.run.size);
    if (num_kept > 2) return Fallback::kRank;
  }
  if (num_reduced > 2) return Fallback::kRank;
  std::copy(kept, kept + num_kept, p.kept + 3 - num_kept);
  std::copy(reduced, reduced + num_reduced, p.reduced_outer + 2 - num_reduced);
  return Fallback::kNone;
}

// The input strides (and B) a kernel takes in units of VEC.
int vec_operands(const Plan& p, int64_t* v) {
  int n = 0;
  for (int i = p.inner ? 0 : 1; i < 3; ++i) v[n++] = p.kept[i].in_stride;
  for (const Dim& d : p.reduced_outer) v[n++] = d.in_stride;
  if (!p.inner) {
    v[n++] = p.reduced_inner.in_stride;
    v[n++] = p.run.size;
  }
  return n;
}

// A plan with its kernel: the aligned variant where the input pointer and every stride the
// kernel takes allow 16-byte loads, else the plain one.
struct Prepared {
  Plan plan;
  const LoadedKernel* kernel = nullptr;
  int64_t vec = 1;
  int64_t block_r = 0;
  int64_t programs = 0;
};

Fallback prepare(const at::Tensor& in, const Dim* dims, int ndim, c10::ScalarType out_dtype, Prepared& prep) {
  Plan& p = prep.plan;
  if (Fallback r = make_plan(dims, ndim, p); r != Fallback::kNone) return r;
  const int in_index = g::in_dtype_of(in.scalar_type()), out_index = g::out_dtype_of(out_dtype);
  if (in_index < 0 || out_index < 0) return Fallback::kDtype;
  int64_t vec = 16 / static_cast<int64_t>(in.element_size());
  int64_t operands[8];
  const int num_operands = vec_operands(p, operands);
  bool aligned = aligned16(in.const_data_ptr());
  for (int i = 0; i < num_operands; ++i) aligned = aligned && operands[i] % vec == 0;
  int id = aligned ? g::find(p.kind, in_index, out_index, g::align_16) : -1;
  if (id < 0) {
    id = g::find(p.kind, in_index, out_index, g::align_any);
    vec = 1;
  }
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* k = kernel_for(id, in.device().index());
  if (!k) return Fallback::kArch;
  TORCH_INTERNAL_ASSERT(k->image->params[g::kParam_VEC] == vec, "gems::sum: VEC of ", vec, " expected");
  // Programs: one per (outer kept indices, BLOCK_OUT block of the innermost kept dim).
  const int64_t block_out = k->image->params[g::kParam_BLOCK_OUT];
  const int64_t programs = p.inner ? p.kept[0].size * p.kept[1].size * ceil_div(p.kept[2].size, block_out)
                                   : p.kept[1].size * p.kept[2].size * ceil_div(p.run.size, block_out);
  if (programs > std::numeric_limits<int32_t>::max()) return Fallback::kIndex64;
  prep.kernel = k;
  prep.vec = vec;
  prep.block_r = k->image->params[g::kParam_BLOCK_R];
  prep.programs = programs;
  return Fallback::kNone;
}

// Which part of the reduction split s covers (kernels/reduce.py); one split covers all.
struct Split {
  int64_t count = 1;
  int64_t r_step = 0, r_len = 0;
  int64_t ro_step = 0, ro_len = 0;
};

int64_t reduced_length(const Plan& p) { return p.inner ? p.run.size : p.reduced_inner.size; }
int64_t outer_count(const Plan& p) { return p.reduced_outer[0].size * p.reduced_outer[1].size; }

Split choose_split(const Prepared& prep, bool allow) {
  const int64_t r = reduced_length(prep.plan), ro = outer_count(prep.plan);
  Split s{1, 0, r, 0, ro};
  if (!allow || prep.programs * 2 > kTargetPrograms) return s;
  const int64_t chunks = ceil_div(r, prep.block_r);
  const int64_t want =
      std::min({ceil_div(kTargetPrograms, prep.programs), ro * chunks / kMinSplitSteps, kMaxSplits});
  if (want < 2) return s;
  if (ro >= want) {  // whole outer indices per split
    s.ro_len = s.ro_step = ceil_div(ro, want);
    s.count = ceil_div(ro, s.ro_len);
  } else {  // whole BLOCK_R chunks of the inner run per split, every outer index
    s.r_len = s.r_step = ceil_div(chunks, want) * prep.block_r;
    s.count = ceil_div(r, s.r_len);
  }
  return s;
}

void launch_prepared(const Prepared& prep, const Split& s, const void* in, void* out, bool to_workspace,
                     int64_t out_split, c10::DeviceIndex device) {
  const Plan& p = prep.plan;
  const int64_t vec = prep.vec;
  auto out_stride = [&](const Dim& d) { return to_workspace ? d.ws_stride : d.out_stride; };
  KernelArgs args;
  args.ptr(in);
  args.ptr(out);
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
  args.i64(outer_count(p));
  args.i64(p.reduced_outer[1].size);
  args.i64(p.reduced_outer[0].in_stride / vec);
  args.i64(p.reduced_outer[1].in_stride / vec);
  args.i64(s.r_step);
  args.i64(s.r_len);
  args.i64(s.ro_step);
  args.i64(s.ro_len);
  args.i64(out_split);
  launch(*prep.kernel, device, static_cast<uint32_t>(prep.programs), static_cast<uint32_t>(s.count), 1, args);
}

// Sums `in` (dims: its geometry against `out`) into `out`, which has the result's shape and dtype.
Fallback run_sum(const at::Tensor& in, const Dim* dims, int ndim, const at::Tensor& out) {
  Prepared prep;
  if (Fallback r = prepare(in, dims, ndim, out.scalar_type(), prep); r != Fallback::kNone) return r;
  const c10::DeviceIndex device = in.device().index();
  const Split split = choose_split(prep, true);
  if (split.count > 1) {
    // Partials go to a workspace [splits, *out.shape] of the accumulator type; a second launch
    // sums its dim 0 into out. Prepared before the first launch, so a split never half-runs.
    at::DimVector ws_shape{split.count};
    ws_shape.append(out.sizes().begin(), out.sizes().end());
    const c10::ScalarType acc = c10::isFloatingType(out.scalar_type()) ? at::kFloat : at::kLong;
    at::Tensor ws = at::detail::empty_cuda(ws_shape, acc, in.device(), std::nullopt);
    Dim ws_dims[kMaxDims + 1];
    ws_dims[0] = Dim{split.count, ws.stride(0), 0, 0, true};
    for (int64_t j = 0; j < out.dim(); ++j) {
      ws_dims[j + 1] = Dim{out.size(j), ws.stride(j + 1), out.stride(j), out.stride(j), false};
    }
    // The first pass stores accumulator-typed partials: its variant's output dtype is `acc`.
    Prepared first = prep;
    Prepared second;
    if ((acc == out.scalar_type() || prepare(in, dims, ndim, acc, first) == Fallback::kNone) &&
        prepare(ws, ws_dims, static_cast<int>(out.dim()) + 1, out.scalar_type(), second) == Fallback::kNone) {
      launch_prepared(first, split, in.const_data_ptr(), ws.mutable_data_ptr(), true, ws.stride(0), device);
      launch_prepared(second, choose_split(second, false), ws.const_data_ptr(), out.mutable_data_ptr(), false, 0,
                      device);
      return Fallback::kNone;
    }
  }
  launch_prepared(prep, choose_split(prep, false), in.const_data_ptr(), out.mutable_data_ptr(), false, 0, device);
  return Fallback::kNone;
}

// torch's dim checks and result shape (the structured sum's meta function), and the dim mask.
at::DimVector reduction_shape(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim, DimMask& mask) {
  at::DimVector dims = at::native::make_dim_vector(dim, self.dim());
  at::maybe_wrap_dims(dims, self.dim());
  at::DimVector shape = at::meta::get_reduction_shape(self, dims, keepdim);
  mask = at::native::make_dim_mask(dims, self.dim());
  return shape;
}

// (input, output) dtypes the kernels sum as torch does: same float type, fp16 / bf16 to fp32,
// integers and bool to int64. Others (torch.sum(x_fp32, dtype=fp16) rounds every input to
// fp16 first; out= of other dtypes) go to ATen.
bool covered_dtypes(c10::ScalarType in, c10::ScalarType out) {
  if (c10::isIntegralType(in, /*includeBool=*/true)) return out == at::kLong;
  return out == in || ((in == at::kHalf || in == at::kBFloat16) && out == at::kFloat);
}

Fallback check_input(const at::Tensor& self, c10::ScalarType out_dtype) {
  if (self.dim() > kMaxDims) return Fallback::kRank;
  if (!covered_dtypes(self.scalar_type(), out_dtype) || g::in_dtype_of(self.scalar_type()) < 0 ||
      g::out_dtype_of(out_dtype) < 0) {
    return Fallback::kDtype;
  }
  if (self.is_neg() || self.is_conj()) return Fallback::kLayout;  // lazily negated views
  return Fallback::kNone;
}

// Sums self over `mask` into `out` (torch's result shape and dtype, any strides).
Fallback sum_into(const at::Tensor& self, const DimMask& mask, bool keepdim, const at::Tensor& out) {
  if (out.numel() == 0) return Fallback::kNone;
  const int ndim = static_cast<int>(self.dim());
  const at::DimVector ws_strides = c10::contiguous_strides(out.sizes());
  Dim dims[kMaxDims];
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
    if (keepdim || !x.reduced) ++j;
  }
  if (reduced_numel == 0) {
    out.zero_();
    return Fallback::kNone;
  }
  return run_sum(self, dims, ndim, out);
}

std::string describe(const at::Tensor& self, c10::ScalarType out_dtype) {
  std::ostringstream s;
  s << self.scalar_type() << self.sizes() << " strides " << self.strides() << " -> " << out_dtype;
  return s.str();
}

at::Tensor sum_new(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                   std::optional<at::ScalarType> dtype, FallbackCounter* counter, const char* op) {
  DimMask mask;
  const at::DimVector shape = reduction_shape(self, dim, keepdim, mask);
  const c10::ScalarType out_dtype = at::native::get_dtype_from_self(self, dtype, /*promote_integers=*/true);
  Fallback r = check_input(self, out_dtype);
  if (r == Fallback::kNone) {
    c10::cuda::CUDAGuard guard(self.device());
    at::Tensor out = at::detail::empty_cuda(shape, out_dtype, self.device(), std::nullopt);
    r = sum_into(self, mask, keepdim, out);
    if (r == Fallback::kNone) {
      if (counter) counter->hit(r);
      return out;
    }
  }
  if (!counter) unsupported(op, r, describe(self, out_dtype));
  counter->hit(r);
  return at::cuda::sum(self, dim, keepdim, dtype);
}

at::Tensor sum_meta(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                    std::optional<at::ScalarType> dtype) {
  DimMask mask;
  const at::DimVector shape = reduction_shape(self, dim, keepdim, mask);
  return at::empty(shape, self.options().dtype(at::native::get_dtype_from_self(self, dtype, true)));
}

}  // namespace

namespace cuda {
at::Tensor sum(const at::Tensor& self, std::optional<at::ScalarType> dtype) {
  return sum_new(self, std::nullopt, false, dtype, nullptr, "gems::sum");
}
at::Tensor sum_dim_IntList(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                           std::optional<at::ScalarType> dtype) {
  return sum_new(self, dim, keepdim, dtype, nullptr, "gems::sum.dim_IntList");
}
}  // namespace cuda

namespace meta {
at::Tensor sum(const at::Tensor& self, std::optional<at::ScalarType> dtype) {
  return sum_meta(self, std::nullopt, false, dtype);
}
at::Tensor sum_dim_IntList(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                           std::optional<at::ScalarType> dtype) {
  return sum_meta(self, dim, keepdim, dtype);
}
}  // namespace meta

namespace aten_impl {
at::Tensor sum_dim_IntList(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                           std::optional<at::ScalarType> dtype) {
  static FallbackCounter& counter = fallback_counter("sum.dim_IntList");
  return sum_new(self, dim, keepdim, dtype, &counter, nullptr);
}

at::Tensor& sum_IntList_out(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                            std::optional<at::ScalarType> dtype, at::Tensor& out) {
  static FallbackCounter& counter = fallback_counter("sum.IntList_out");
  // The structured kernel's order: meta checks, then out's dtype and device, then the resize.
  DimMask mask;
  const at::DimVector shape = reduction_shape(self, dim, keepdim, mask);
  const c10::ScalarType out_dtype = dtype.value_or(out.scalar_type());
  TORCH_CHECK(out.scalar_type() == out_dtype, "Expected out tensor to have dtype ",
              c10::scalarTypeToTypeMeta(out_dtype), ", but got ", out.dtype(), " instead");
  TORCH_CHECK(out.device() == self.device(), "Expected out tensor to have device ", self.device(), ", but got ",
              out.device(), " instead");
  at::native::resize_output(out, shape);
  Fallback r = check_input(self, out_dtype);
  // Outputs that alias themselves or the input: ATen's behaviour, whatever it is.
  if (r == Fallback::kNone && (at::has_internal_overlap(out) == at::MemOverlap::Yes || out.is_alias_of(self))) {
    r = Fallback::kLayout;
  }
  if (r == Fallback::kNone) {
    c10::cuda::CUDAGuard guard(self.device());
    r = sum_into(self, mask, keepdim, out);
  }
  counter.hit(r);
  if (r != Fallback::kNone) at::cuda::sum_outf(self, dim, keepdim, dtype, out);
  return out;
}
}  // namespace aten_impl

}  // namespace gems
