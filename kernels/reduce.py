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
of a variance). `_lift` turns each loaded element into such a tuple (its value; for and / or
whether it is nonzero; for welford (x, 0, 1)).

What the kernel reads and writes is the constexpr pair SOURCE, FINISH (the grid's "stage"):
SOURCE "elements" reads the input tensor, "state" a split's partial states (the VALUES planes of
a workspace, in_value elements apart). FINISH "value" writes the combined value, times the
runtime `scale` for a floating result (1, or outputs / inputs for a declaration marked `scaled`:
a mean, as ATen's CUDA kernel computes it); "state" writes the accumulator's values out_value
elements apart (a split's first launch of a multi-valued combine); "var" projects a Welford
state, m2 / max(count - correction, 0) (its square root where take_sqrt is set: std), and where
has_mean is set also writes the mean at mean_ptr (with the output's offsets).

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


@triton.jit
def _init(shape: tl.constexpr, acc_ty: tl.constexpr, IDENTITY: tl.constexpr, COMBINE: tl.constexpr):
    # The accumulator at the combine's identity.
    if COMBINE == "welford":
        s = (tl.full(shape, 0, acc_ty), tl.full(shape, 0, acc_ty), tl.full(shape, 0, acc_ty))
    else:
        s = (tl.full(shape, IDENTITY, acc_ty),)
    return s


@triton.jit
def _lift(x, acc_ty: tl.constexpr, COMBINE: tl.constexpr):
    # An input element as the combine function takes it: and / or see whether it is nonzero
    # (a NaN is), welford the state of one element, the others its value in the accumulator's type.
    if COMBINE == "and" or COMBINE == "or":
        s = ((x != 0).to(acc_ty),)
    elif COMBINE == "welford":
        v = x.to(acc_ty)
        s = (v, tl.full(v.shape, 0, acc_ty), tl.full(v.shape, 1, acc_ty))
    else:
        s = (x.to(acc_ty),)
    return s


@triton.jit
def _lift_masked(x, mask, acc_ty: tl.constexpr, IDENTITY: tl.constexpr, COMBINE: tl.constexpr):
    # _lift of an element loaded with other=0, the identity where the mask is off.
    if COMBINE == "welford":
        v = x.to(acc_ty)
        s = (v, tl.full(v.shape, 0, acc_ty), tl.where(mask, tl.full(v.shape, 1, acc_ty), 0))
    else:
        s = _lift(x, acc_ty, COMBINE)
        if IDENTITY != 0:
            s = (tl.where(mask, s[0], IDENTITY),)
    return s


@triton.jit
def _read(ptrs, in_value, acc_ty: tl.constexpr, COMBINE: tl.constexpr, SOURCE: tl.constexpr):
    if SOURCE == "state":  # a split's partial states (welford: three planes)
        s = (tl.load(ptrs), tl.load(ptrs + in_value), tl.load(ptrs + 2 * in_value))
    else:
        s = _lift(tl.load(ptrs), acc_ty, COMBINE)
    return s


@triton.jit
def _read_masked(ptrs, mask, in_value, acc_ty: tl.constexpr, IDENTITY: tl.constexpr, COMBINE: tl.constexpr,
                 SOURCE: tl.constexpr):
    if SOURCE == "state":  # zeros where the mask is off: the empty state
        s = (tl.load(ptrs, mask=mask, other=0), tl.load(ptrs + in_value, mask=mask, other=0),
             tl.load(ptrs + 2 * in_value, mask=mask, other=0))
    else:
        s = _lift_masked(tl.load(ptrs, mask=mask, other=0), mask, acc_ty, IDENTITY, COMBINE)
    return s


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
    else:
        tl.static_assert(False, "COMBINE names no combine function")
    return total


@triton.jit
def _write(out_ptr, mean_ptr, off, total, mask, out_value, has_mean, take_sqrt, scale, correction,
           FINISH: tl.constexpr):
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
    r_step,
    r_len,
    ro_step,
    ro_len,
    out_split,
    in_value,
    out_value,
    has_mean,
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
    rows = in_ptr + (k0 * in_k0 + k1 * in_k1) * VEC + (k2_in * in_k2 * VEC)[:, None]
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
        run = rows + (ro0 * in_ro0 + ro1 * in_ro1) * VEC
        for r0 in range(r_begin, r_full_end, BLOCK_R):
            acc = _combine(acc, _read(run + r0 + cols, in_value, acc_ty, COMBINE, SOURCE), COMBINE)
        for r0 in range(r_full_end, r_end, BLOCK_R):
            mask = cols < r_end - r0
            x = _read_masked(run + r0 + cols, mask, in_value, acc_ty, IDENTITY, COMBINE, SOURCE)
            acc = _combine(acc, x, COMBINE)
        ro0, ro1 = _next_outer_index(ro0, ro1, RO1)
    total = _combine_along(acc, 1, COMBINE)

    out_off = k0 * out_k0 + k1 * out_k1 + k2 * out_k2 + split * out_split
    _write(out_ptr, mean_ptr, out_off, total, k2 < KEPT2, out_value, has_mean, take_sqrt, scale, correction,
           FINISH)


@triton.jit
def reduce_outer(
    in_ptr,
    out_ptr,
    mean_ptr,
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
    r_step,
    r_len,
    ro_step,
    ro_len,
    out_split,
    in_value,
    out_value,
    has_mean,
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
    base = in_ptr + (k0 * in_k0 + k1 * in_k1) * VEC + b[None, :]
    rows = tl.arange(0, BLOCK_R)

    r_begin = split * r_step
    r_end = tl.minimum(R, r_begin + r_len)
    ro_begin = split * ro_step
    ro_end = tl.minimum(RO, ro_begin + ro_len)
    ro0 = ro_begin // RO1
    ro1 = ro_begin % RO1
    acc = _init([BLOCK_R, BLOCK_OUT], acc_ty, IDENTITY, COMBINE)
    for _ in range(ro_begin, ro_end):
        plane = base + (ro0 * in_ro0 + ro1 * in_ro1) * VEC
        for r0 in range(r_begin, r_end, BLOCK_R):
            r = r0 + rows
            mask = (r < r_end)[:, None] & b_mask[None, :]
            x = _read_masked(plane + (r * in_r * VEC)[:, None], mask, in_value, acc_ty, IDENTITY, COMBINE, SOURCE)
            acc = _combine(acc, x, COMBINE)
        ro0, ro1 = _next_outer_index(ro0, ro1, RO1)
    total = _combine_along(acc, 0, COMBINE)

    out_off = k0 * out_k0 + k1 * out_k1 + b * out_b + split * out_split
    _write(out_ptr, mean_ptr, out_off, total, b_mask, out_value, has_mean, take_sqrt, scale, correction,
           FINISH)
