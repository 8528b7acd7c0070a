// The reduce family's planner: the C++ form of aot/family_reduce.py's (plan, vec_for,
// program_count, choose_split), on the constants and tiles that file declares and the codegen
// writes to reduce_tables.h. No torch here: tests/test_reduce_cpu.py compiles this header and
// checks that it decides as the Python planner does, which runs the interpreted kernels.
#pragma once

#include <algorithm>
#include <cstdint>

#include "reduce_tables.h"

namespace gems::reduce_plan {

namespace t = reduce_tables;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A dim, or a coalesced group of dims. Strides in elements: of the input, of the output (0 for
// reduced dims) and of the contiguous split workspace; and for a reduced dim of an indexed
// reduction, of the index (the reduced dims' strides in a contiguous tensor of their sizes, in
// torch's order; else 0).
struct Dim {
  int64_t size = 1;
  int64_t in_stride = 0;
  int64_t out_stride = 0;
  int64_t ws_stride = 0;
  bool reduced = false;
  int64_t index_stride = 0;
};

// The kernels' view of a reduction (kernels/reduce.py).
struct Plan {
  bool inner = true;  // reduce_inner, else reduce_outer
  int kind = 0;  // index of KINDS
  Dim kept[t::kKeptGroups];  // outermost first, padded in front; reduce_outer takes kept[1], kept[2]
  Dim reduced_outer[t::kOuterReducedGroups];  // walked one index at a time, outermost first, padded in front
  Dim run;  // the contiguous run: reduced (reduce_inner, R) or kept (reduce_outer, B)
  Dim reduced_inner;  // reduce_outer: the innermost reduced dim, walked in BLOCK_R steps
};

enum class Planned { kOk, kLayout, kRank };

inline int kind_for(bool inner, int64_t run) {
  for (int k = 0; k < t::kNumKinds; ++k) {
    if (t::kKindInner[k] == inner && (t::kKindMaxRun[k] < 0 || run <= t::kKindMaxRun[k])) return k;
  }
  return -1;  // unreachable: the last kind of each kernel has no limit
}

inline bool coalesces(const Dim& outer, const Dim& inner) {
  if (outer.reduced != inner.reduced || outer.in_stride != inner.size * inner.in_stride) return false;
  if (inner.reduced) return outer.index_stride == inner.size * inner.index_stride;
  return outer.out_stride == inner.size * inner.out_stride && outer.ws_stride == inner.size * inner.ws_stride;
}

// Groups dims in memory order and fits them to a kernel; kLayout when the innermost dim is
// strided, kRank when there are more groups than the kernels take.
inline Planned plan(const Dim* dims, int ndim, Plan& p) {
  Dim groups[t::kMaxDims + 2];
  int n = 0;
  for (int d = 0; d < ndim; ++d) {
    if (dims[d].size != 1) groups[n++] = dims[d];
  }
  // Outermost first; broadcast (stride 0) dims outermost, so they never end a contiguous run.
  std::stable_sort(groups, groups + n, [](const Dim& a, const Dim& b) {
    if ((a.in_stride == 0) != (b.in_stride == 0)) return a.in_stride == 0;
    return a.in_stride > b.in_stride;
  });
  int num_groups = 0;
  bool any_reduced = false;
  for (int i = 0; i < n; ++i) {
    any_reduced |= groups[i].reduced;
    if (num_groups > 0 && coalesces(groups[num_groups - 1], groups[i])) {
      Dim& last = groups[num_groups - 1];
      last.size *= groups[i].size;
      last.in_stride = groups[i].in_stride;
      last.out_stride = groups[i].out_stride;
      last.ws_stride = groups[i].ws_stride;
      last.index_stride = groups[i].index_stride;
    } else {
      groups[num_groups++] = groups[i];
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
    return Planned::kLayout;
  }

  Dim kept[t::kMaxDims + 2], reduced[t::kMaxDims + 2];
  int num_kept = 0, num_reduced = 0;
  for (int i = 0; i < num_groups; ++i) {
    if (groups[i].reduced) {
      reduced[num_reduced++] = groups[i];
    } else {
      kept[num_kept++] = groups[i];
    }
  }
  p = Plan{};
  p.inner = groups[num_groups - 1].reduced;
  int max_kept = t::kKeptGroups;
  if (p.inner) {
    p.run = reduced[--num_reduced];
  } else {
    p.run = kept[--num_kept];
    p.reduced_inner = reduced[--num_reduced];
    --max_kept;
  }
  if (num_kept > max_kept || num_reduced > t::kOuterReducedGroups) return Planned::kRank;
  for (Dim& d : p.reduced_outer) d.reduced = true;
  std::copy(kept, kept + num_kept, p.kept + t::kKeptGroups - num_kept);
  std::copy(reduced, reduced + num_reduced, p.reduced_outer + t::kOuterReducedGroups - num_reduced);
  p.kind = kind_for(p.inner, p.run.size);
  return Planned::kOk;
}

// The input strides (and B) a kernel takes in units of VEC; returns their count.
inline int vec_operands(const Plan& p, int64_t* v) {
  int n = 0;
  for (int i = p.inner ? 0 : 1; i < t::kKeptGroups; ++i) v[n++] = p.kept[i].in_stride;
  for (const Dim& d : p.reduced_outer) v[n++] = d.in_stride;
  if (!p.inner) {
    v[n++] = p.reduced_inner.in_stride;
    v[n++] = p.run.size;
  }
  return n;
}

// VEC of an aligned variant (the elements in 16 bytes) where the input pointer is 16-byte aligned
// and every vec operand a multiple of it, else 1.
inline int64_t vec_for(const Plan& p, int64_t element_bytes, bool aligned_pointer) {
  const int64_t vec = 16 / element_bytes;
  if (!aligned_pointer) return 1;
  int64_t operands[t::kKeptGroups + t::kOuterReducedGroups + 2];
  const int n = vec_operands(p, operands);
  for (int i = 0; i < n; ++i) {
    if (operands[i] % vec != 0) return 1;
  }
  return vec;
}

// Programs of a launch: one per (outer kept indices, BLOCK_OUT block of the innermost kept dim).
inline int64_t program_count(const Plan& p) {
  const int64_t block_out = t::kKindBlockOut[p.kind];
  return p.inner ? p.kept[0].size * p.kept[1].size * ceil_div(p.kept[2].size, block_out)
                 : p.kept[1].size * p.kept[2].size * ceil_div(p.run.size, block_out);
}

inline int64_t reduced_length(const Plan& p) { return p.inner ? p.run.size : p.reduced_inner.size; }
inline int64_t outer_count(const Plan& p) { return p.reduced_outer[0].size * p.reduced_outer[1].size; }

// Which part of the reduction split s covers (kernels/reduce.py); one split covers all.
struct Split {
  int64_t count = 1;
  int64_t r_step = 0, r_len = 0;
  int64_t ro_step = 0, ro_len = 0;
};

inline Split choose_split(const Plan& p, int64_t programs, bool allow) {
  const int64_t r = reduced_length(p), ro = outer_count(p);
  Split s{1, 0, r, 0, ro};
  if (!allow || programs * 2 > t::kTargetPrograms) return s;
  const int64_t block_r = t::kKindBlockR[p.kind];
  const int64_t chunks = ceil_div(r, block_r);
  const int64_t want = std::min({ceil_div(t::kTargetPrograms, programs), ro * chunks / t::kMinSplitSteps, t::kMaxSplits});
  if (want < 2) return s;
  if (ro >= want) {  // whole outer indices per split
    s.ro_len = s.ro_step = ceil_div(ro, want);
    s.count = ceil_div(ro, s.ro_len);
  } else {  // whole BLOCK_R chunks of the inner run per split, every outer index
    s.r_len = s.r_step = ceil_div(chunks, want) * block_r;
    s.count = ceil_div(r, s.r_len);
  }
  return s;
}

}  // namespace gems::reduce_plan
