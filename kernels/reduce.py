"""Reductions: one pair of kernels for every reduction of aot/family_reduce.py.

The driver views the input, with no copy, as kept dims x reduced dims in memory order and runs
one of two kernels:

- `reduce_inner`: the innermost dims (memory order) are reduced, a contiguous run of R elements
  per output. Each program owns BLOCK_OUT outputs ("rows") and walks the run in BLOCK_R chunks.
- `reduce_outer`: the innermost dims are kept, a contiguous run of B outputs. Each program owns
  BLOCK_OUT adjacent outputs and walks the innermost reduced dim (stride in_r) in BLOCK_R steps.

Both take up to three kept dims k0, k1, k2 (reduce_outer: k0, k1 and B), outermost first, and
besides the innermost reduced dim up to two outer reduced dims, walked one index at a time
(ro in [0, RO) is (ro0, ro1), RO1 the size of the inner one).

What is reduced is the constexpr COMBINE, the name of a combine function below (`_combine`
dispatches on it), with IDENTITY its identity for the accumulator's type (the declaration's,
aot/family_reduce.py COMBINES): masked lanes and the accumulator start from it. The accumulator
is a tuple of values: one for most combines, three for "welford" (mean, m2 and count, the state
of a variance), two for "argmax" / "argmin" (the extreme and its index). `_lift` turns each loaded
element into such a tuple (its value; for and / or whether it is nonzero; for welford (x, 0, 1);
for argmax (x, its index)).

An element's index (argmax, max.dim) is its position in the reduced dims in torch's (C) order,
whatever the memory order the kernel walks: every reduced group has an index stride besides its
memory stride (ix_r for the innermost reduced one, ix_ro0 / ix_ro1 for the outer ones), and the
index is the sum of position times index stride. It is int64, as is the index output.

What the kernel reads and writes is the constexpr pair SOURCE, FINISH (the grid's "stage"):
SOURCE "elements" reads the input tensor, "state" a split's partial states (welford: the three
planes of a workspace, in_value elements apart; argmax: the values at in_ptr and their indices at
the same offsets of in_index_ptr). FINISH "value" writes the combined value, times the
runtime `scale` for a floating result (1, or outputs / inputs for a declaration marked `scaled`:
a mean, as ATen's CUDA kernel computes it); "state" writes the accumulator's values out_value
elements apart (a split's first launch of a multi-valued combine); "var" projects a Welford
state, m2 / max(count - correction, 0) (its square root where take_sqrt is set: std), and where
has_mean is set also writes the mean at mean_ptr (with the output's offsets); "arg" writes the
index of the extreme at index_ptr and, where has_value is set, the extreme at out_ptr (with the
same offsets: a split's first launch writes its partials so, the second reads them back).

Split reduction: a launch may cut the reduction into splits (program_id(1)); split s covers
outer reduced indices [s*ro_step, s*ro_step + ro_len) and innermost reduced indices
[s*r_step, s*r_step + r_len), clipped to RO and R, and writes its partial at out + s*out_split.
The driver sends partials to a workspace and combines them with a second launch. A plain
launch has one split covering everything.

Input strides (and B) arrive in units of VEC elements: aligned variants set VEC to the elements
in 16 bytes and hint the input pointer, so the compiler knows every contiguous run starts on a
16-byte boundary and loads it in 16-byte vectors. Output strides are in elements.

Accumulation is in fp32 when the output is floating point and in int64 otherwise (ATen's
accumulator types); the result is cast to the output's type once. Sizes, strides and offsets
are 64-bit. No atomics: every output is written by one program, so results are deterministic.
"""

import triton
import triton.language as tl


# Kernels here use triton.language builtins only, not its @jit library (tl.sum, tl.max, tl.zeros,
# tl.cdiv): those stay compiled-only in the CPU tests' interpreted copy of this module.
@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _mul(a, b):
    return a * b


@triton.jit
def _max(a, b):
    # A NaN wins, as in torch.amax.
    return tl.where((a > b) | (a != a), a, b)


@triton.jit
def _min(a, b):
    return tl.where((a < b) | (a != a), a, b)


@triton.jit
def _arg(a, ia, b, ib, LARGER: tl.constexpr):
    # (value, index) pairs as ATen's GreaterOrNan / LessOrNan compare them: the larger (smaller)
    # value, a NaN beyond any number, and on a tie (equal values, or two NaNs) the lower index.
    # A total order, so the first extreme wins whatever the order of combining (splits, trees).
    a_nan = a != a
    b_nan = b != b
    if LARGER:
        beyond = a > b
    else:
        beyond = a < b
    take_a = beyond | (a_nan & (b == b)) | (((a == b) | (a_nan & b_nan)) & (ia < ib))
    return tl.where(take_a, a, b), tl.where(take_a, ia, ib)


@triton.jit
def _argmax(a, ia, b, ib):
    return _arg(a, ia, b, ib, True)


@triton.jit
def _argmin(a, ia, b, ib):
    return _arg(a, ia, b, ib, False)


@triton.jit
def _and(a, b):
    return a & b


@triton.jit
def _or(a, b):
    return a | b


@triton.jit
def _welford(mean_a, m2_a, n_a, mean_b, m2_b, n_b):
    # Two Welford states (mean, sum of squared deviations, count) as one (Chan et al.'s parallel
    # formula); an element x is (x, 0, 1). An empty state (0, 0, 0) leaves the other exact.
    n = n_a + n_b
    w = n_b / tl.maximum(n, 1.0)
    delta = mean_b - mean_a
    return mean_a + delta * w, m2_a + m2_b + delta * delta * n_a * w, n


# The index of a lane that holds no element (masked, or the identity state): above every index.
NO_INDEX = tl.constexpr(2**63 - 1)


@triton.jit
def _init(shape: tl.constexpr, acc_ty: tl.constexpr, IDENTITY: tl.constexpr, COMBINE: tl.constexpr):
    # The accumulator at the combine's identity.
    if COMBINE == "welford":
        s = (tl.full(shape, 0, acc_ty), tl.full(shape, 0, acc_ty), tl.full(shape, 0, acc_ty))
    elif COMBINE == "argmax" or COMBINE == "argmin":
        s = (tl.full(shape, IDENTITY, acc_ty), tl.full(shape, NO_INDEX, tl.int64))
    else:
        s = (tl.full(shape, IDENTITY, acc_ty),)
    return s


@triton.jit
def _lift(x, index, acc_ty: tl.constexpr, COMBINE: tl.constexpr):
    # An input element as the combine function takes it: and / or see whether it is nonzero
    # (a NaN is), welford the state of one element, argmax the value and its index (`index`, the
    # chunk's: see _index_lanes; the other combines ignore it), the others its value in the
    # accumulator's type.
    if COMBINE == "and" or COMBINE == "or":
        s = ((x != 0).to(acc_ty),)
    elif COMBINE == "welford":
        v = x.to(acc_ty)
        s = (v, tl.full(v.shape, 0, acc_ty), tl.full(v.shape, 1, acc_ty))
    elif COMBINE == "argmax" or COMBINE == "argmin":
        s = (x.to(acc_ty), tl.full(x.shape, 0, tl.int64) + index)
    else:
        s = (x.to(acc_ty),)
    return s


@triton.jit
def _lift_masked(x, index, mask, acc_ty: tl.constexpr, IDENTITY: tl.constexpr, COMBINE: tl.constexpr):
    # _lift of an element loaded with other=0, the identity where the mask is off.
    if COMBINE == "welford":
        v = x.to(acc_ty)
        s = (v, tl.full(v.shape, 0, acc_ty), tl.where(mask, tl.full(v.shape, 1, acc_ty), 0))
    elif COMBINE == "argmax" or COMBINE == "argmin":
        s = (tl.where(mask, x.to(acc_ty), IDENTITY), tl.where(mask, tl.full(x.shape, 0, tl.int64) + index, NO_INDEX))
    else:
        s = _lift(x, index, acc_ty, COMBINE)
        if IDENTITY != 0:
            s = (tl.where(mask, s[0], IDENTITY),)
    return s


@triton.jit
def _read(ptrs, index_ptrs, index, in_value, acc_ty: tl.constexpr, COMBINE: tl.constexpr, SOURCE: tl.constexpr):
    # The elements (or a split's partial states) at ptrs; `index`: their indices; index_ptrs: the
    # partials' indices (argmax's second launch). Combines that use neither leave them to dead
    # code elimination.
    if SOURCE == "state":
        if COMBINE == "welford":  # three planes
            s = (tl.load(ptrs), tl.load(ptrs + in_value), tl.load(ptrs + 2 * in_value))
        else:  # argmax: the extremes (output-typed) and their indices
            s = (tl.load(ptrs).to(acc_ty), tl.load(index_ptrs))
    else:
        s = _lift(tl.load(ptrs), index, acc_ty, COMBINE)
    return s


@triton.jit
def _read_masked(ptrs, index_ptrs, index, mask, in_value, acc_ty: tl.constexpr, IDENTITY: tl.constexpr,
                 COMBINE: tl.constexpr, SOURCE: tl.constexpr):
    if SOURCE == "state":  # the identity state where the mask is off
        if COMBINE == "welford":  # zeros: the empty state
            s = (tl.load(ptrs, mask=mask, other=0), tl.load(ptrs + in_value, mask=mask, other=0),
                 tl.load(ptrs + 2 * in_value, mask=mask, other=0))
        else:
            s = (tl.where(mask, tl.load(ptrs, mask=mask, other=0).to(acc_ty), IDENTITY),
                 tl.load(index_ptrs, mask=mask, other=NO_INDEX))
    else:
        s = _lift_masked(tl.load(ptrs, mask=mask, other=0), index, mask, acc_ty, IDENTITY, COMBINE)
    return s


@triton.jit
def _index_lanes(acc, lane_index, COMBINE: tl.constexpr, SOURCE: tl.constexpr):
    # argmax reading elements keeps in each lane the index of the chunk its best element came
    # from (run and step: the same for every lane, so the loop does no per-element index
    # arithmetic, and within a lane it orders as the elements' own indices); the lane's offset in
    # the chunk (`lane_index`) is added once, before the lanes are combined.
    if (COMBINE == "argmax" or COMBINE == "argmin") and SOURCE == "elements":
        acc = (acc[0], tl.where(acc[1] == NO_INDEX, NO_INDEX, acc[1] + lane_index))
    return acc


# The combine functions by name, as the declarations give them (aot/family_reduce.py COMBINES):
# a branch in each of the two dispatchers below per function. Accumulators are tuples.
@triton.jit
def _combine(a, b, COMBINE: tl.constexpr):
    if COMBINE == "add":
        c = (_add(a[0], b[0]),)
    elif COMBINE == "mul":
        c = (_mul(a[0], b[0]),)
    elif COMBINE == "max":
        c = (_max(a[0], b[0]),)
    elif COMBINE == "min":
        c = (_min(a[0], b[0]),)
    elif COMBINE == "and":
        c = (_and(a[0], b[0]),)
    elif COMBINE == "or":
        c = (_or(a[0], b[0]),)
    elif COMBINE == "welford":
        c = _welford(a[0], a[1], a[2], b[0], b[1], b[2])
    elif COMBINE == "argmax":
        c = _argmax(a[0], a[1], b[0], b[1])
    elif COMBINE == "argmin":
        c = _argmin(a[0], a[1], b[0], b[1])
    else:
        tl.static_assert(False, "COMBINE names no combine function")
    return c


@triton.jit
def _combine_along(acc, AXIS: tl.constexpr, COMBINE: tl.constexpr):
    if COMBINE == "add":
        total = (tl.reduce(acc[0], AXIS, _add),)
    elif COMBINE == "mul":
        total = (tl.reduce(acc[0], AXIS, _mul),)
    elif COMBINE == "max":
        total = (tl.reduce(acc[0], AXIS, _max),)
    elif COMBINE == "min":
        total = (tl.reduce(acc[0], AXIS, _min),)
    elif COMBINE == "and":
        total = (tl.reduce(acc[0], AXIS, _and),)
    elif COMBINE == "or":
        total = (tl.reduce(acc[0], AXIS, _or),)
    elif COMBINE == "welford":
        total = tl.reduce(acc, AXIS, _welford)
    elif COMBINE == "argmax":
        total = tl.reduce(acc, AXIS, _argmax)
    elif COMBINE == "argmin":
        total = tl.reduce(acc, AXIS, _argmin)
    else:
        tl.static_assert(False, "COMBINE names no combine function")
    return total


@triton.jit
def _write(out_ptr, mean_ptr, index_ptr, off, total, mask, out_value, has_mean, has_value, take_sqrt, scale,
           correction, FINISH: tl.constexpr):
    out_ty: tl.constexpr = out_ptr.dtype.element_ty
    if FINISH == "state":  # a split's partial state, one plane per value
        tl.store(out_ptr + off, total[0], mask=mask)
        tl.store(out_ptr + off + out_value, total[1], mask=mask)
        tl.store(out_ptr + off + 2 * out_value, total[2], mask=mask)
    elif FINISH == "var":  # ATen's WelfordOps project: m2 / max(n - correction, 0), its root for std
        v = total[1] / tl.maximum(total[2] - correction, 0.0)
        if take_sqrt != 0:
            v = tl.sqrt_rn(v)
        tl.store(out_ptr + off, v.to(out_ty), mask=mask)
        if has_mean != 0:
            tl.store(mean_ptr + off, total[0].to(out_ty), mask=mask)
    elif FINISH == "arg":  # the extreme's index, and the extreme where it is a result (max.dim, a split's partial)
        if has_value != 0:
            tl.store(out_ptr + off, total[0].to(out_ty), mask=mask)
        tl.store(index_ptr + off, total[1], mask=mask)
    else:
        v = total[0]
        if out_ty.is_floating():
            v = v * scale
        tl.store(out_ptr + off, v.to(out_ty), mask=mask)


@triton.jit
def _next_outer_index(ro0, ro1, RO1):
    # (ro0, ro1) of the next outer reduced index, without a 64-bit division per step.
    ro1 += 1
    wrap = ro1 == RO1
    return tl.where(wrap, ro0 + 1, ro0), tl.where(wrap, 0, ro1)


@triton.jit
def reduce_inner(
    in_ptr,
    out_ptr,
    mean_ptr,
    in_index_ptr,
    index_ptr,
    KEPT1,
    KEPT2,
    in_k0,
    in_k1,
    in_k2,
    out_k0,
    out_k1,
    out_k2,
    R,
    RO,
    RO1,
    in_ro0,
    in_ro1,
    ix_r,
    ix_ro0,
    ix_ro1,
    r_step,
    r_len,
    ro_step,
    ro_len,
    out_split,
    in_value,
    out_value,
    has_mean,
    has_value,
    take_sqrt,
    scale,
    correction,
    COMBINE: tl.constexpr,
    IDENTITY: tl.constexpr,
    SOURCE: tl.constexpr,
    FINISH: tl.constexpr,
    VEC: tl.constexpr,
    BLOCK_OUT: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    acc_ty: tl.constexpr = tl.float32 if out_ptr.dtype.element_ty.is_floating() else tl.int64
    split = tl.program_id(1)
    # program_id(0) enumerates (k0, k1, block of BLOCK_OUT rows along k2); the grid is below
    # 2**31, so these divisions are 32-bit.
    pid = tl.program_id(0)
    blocks = ((KEPT2 + BLOCK_OUT - 1) // BLOCK_OUT).to(tl.int32)
    k1 = ((pid // blocks) % KEPT1.to(tl.int32)).to(tl.int64)
    k0 = (pid // blocks // KEPT1.to(tl.int32)).to(tl.int64)
    k2 = (pid % blocks).to(tl.int64) * BLOCK_OUT + tl.arange(0, BLOCK_OUT)
    # Rows past KEPT2 re-read the last row, so whole chunks load with no mask; the store drops them.
    k2_in = tl.minimum(k2, KEPT2 - 1)
    row_offsets = (k0 * in_k0 + k1 * in_k1) * VEC + (k2_in * in_k2 * VEC)[:, None]
    rows = in_ptr + row_offsets
    index_rows = in_index_ptr + row_offsets  # a split's partial indices, where argmax reads them
    cols = tl.arange(0, BLOCK_R)[None, :]

    r_begin = split * r_step
    r_end = tl.minimum(R, r_begin + r_len)
    # Whole chunks first, unmasked, so aligned variants get wide loads; then the ragged tail.
    r_full_end = r_begin + tl.maximum(r_end - r_begin, 0) // BLOCK_R * BLOCK_R
    ro_begin = split * ro_step
    ro_end = tl.minimum(RO, ro_begin + ro_len)
    ro0 = ro_begin // RO1
    ro1 = ro_begin % RO1
    acc = _init([BLOCK_OUT, BLOCK_R], acc_ty, IDENTITY, COMBINE)
    for _ in range(ro_begin, ro_end):
        run_offset = (ro0 * in_ro0 + ro1 * in_ro1) * VEC
        run = rows + run_offset
        index_run = index_rows + run_offset
        run_index = ro0 * ix_ro0 + ro1 * ix_ro1
        for r0 in range(r_begin, r_full_end, BLOCK_R):
            x = _read(run + r0 + cols, index_run + r0 + cols, run_index + r0 * ix_r, in_value, acc_ty, COMBINE,
                      SOURCE)
            acc = _combine(acc, x, COMBINE)
        for r0 in range(r_full_end, r_end, BLOCK_R):
            mask = cols < r_end - r0
            x = _read_masked(run + r0 + cols, index_run + r0 + cols, run_index + r0 * ix_r, mask, in_value, acc_ty,
                             IDENTITY, COMBINE, SOURCE)
            acc = _combine(acc, x, COMBINE)
        ro0, ro1 = _next_outer_index(ro0, ro1, RO1)
    total = _combine_along(_index_lanes(acc, cols * ix_r, COMBINE, SOURCE), 1, COMBINE)

    out_off = k0 * out_k0 + k1 * out_k1 + k2 * out_k2 + split * out_split
    _write(out_ptr, mean_ptr, index_ptr, out_off, total, k2 < KEPT2, out_value, has_mean, has_value, take_sqrt, scale,
           correction, FINISH)


@triton.jit
def reduce_outer(
    in_ptr,
    out_ptr,
    mean_ptr,
    in_index_ptr,
    index_ptr,
    B,
    KEPT1,
    in_k0,
    in_k1,
    out_k0,
    out_k1,
    out_b,
    R,
    in_r,
    RO,
    RO1,
    in_ro0,
    in_ro1,
    ix_r,
    ix_ro0,
    ix_ro1,
    r_step,
    r_len,
    ro_step,
    ro_len,
    out_split,
    in_value,
    out_value,
    has_mean,
    has_value,
    take_sqrt,
    scale,
    correction,
    COMBINE: tl.constexpr,
    IDENTITY: tl.constexpr,
    SOURCE: tl.constexpr,
    FINISH: tl.constexpr,
    VEC: tl.constexpr,
    BLOCK_OUT: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    acc_ty: tl.constexpr = tl.float32 if out_ptr.dtype.element_ty.is_floating() else tl.int64
    split = tl.program_id(1)
    # program_id(0) enumerates (k0, k1, block of BLOCK_OUT along B), in 32-bit as above.
    pid = tl.program_id(0)
    blocks = ((B * VEC + BLOCK_OUT - 1) // BLOCK_OUT).to(tl.int32)
    k1 = ((pid // blocks) % KEPT1.to(tl.int32)).to(tl.int64)
    k0 = (pid // blocks // KEPT1.to(tl.int32)).to(tl.int64)
    b = (pid % blocks).to(tl.int64) * BLOCK_OUT + tl.arange(0, BLOCK_OUT)
    b_mask = b < B * VEC
    base_offsets = (k0 * in_k0 + k1 * in_k1) * VEC + b[None, :]
    base = in_ptr + base_offsets
    index_base = in_index_ptr + base_offsets  # a split's partial indices, where argmax reads them
    rows = tl.arange(0, BLOCK_R)

    r_begin = split * r_step
    r_end = tl.minimum(R, r_begin + r_len)
    ro_begin = split * ro_step
    ro_end = tl.minimum(RO, ro_begin + ro_len)
    ro0 = ro_begin // RO1
    ro1 = ro_begin % RO1
    acc = _init([BLOCK_R, BLOCK_OUT], acc_ty, IDENTITY, COMBINE)
    for _ in range(ro_begin, ro_end):
        plane_offset = (ro0 * in_ro0 + ro1 * in_ro1) * VEC
        plane = base + plane_offset
        index_plane = index_base + plane_offset
        plane_index = ro0 * ix_ro0 + ro1 * ix_ro1
        for r0 in range(r_begin, r_end, BLOCK_R):
            r = r0 + rows
            mask = (r < r_end)[:, None] & b_mask[None, :]
            step = (r * in_r * VEC)[:, None]
            x = _read_masked(plane + step, index_plane + step, plane_index + r0 * ix_r, mask, in_value, acc_ty,
                             IDENTITY, COMBINE, SOURCE)
            acc = _combine(acc, x, COMBINE)
        ro0, ro1 = _next_outer_index(ro0, ro1, RO1)
    total = _combine_along(_index_lanes(acc, (rows * ix_r)[:, None], COMBINE, SOURCE), 0, COMBINE)

    out_off = k0 * out_k0 + k1 * out_k1 + b * out_b + split * out_split
    _write(out_ptr, mean_ptr, index_ptr, out_off, total, b_mask, out_value, has_mean, has_value, take_sqrt, scale,
           correction, FINISH)
