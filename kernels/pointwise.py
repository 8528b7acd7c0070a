"""Pointwise kernels: binary arithmetic (add, sub, mul, div) and unary ops (relu).

Two layouts per op: a contiguous 1-D path over `n` elements and a strided path over up to four
dims (the driver collapses mergeable dims first; dim 3 is the fastest). Python scalars and 0-d
CPU tensors ("wrapped numbers") arrive as the scalar arguments `xs` / `ys` instead of pointers
(FORM "ts": the second operand is a scalar, "st": the first). Half-precision inputs compute in
fp32 (UPCAST), as ATen's opmath does, and round once on store.
"""

import triton
import triton.language as tl


@triton.jit
def _binary_op(x, y, alpha, OP: tl.constexpr):
    if OP == "add":
        r = x + alpha * y
    elif OP == "sub":
        r = x - alpha * y
    elif OP == "mul":
        r = x * y
    else:
        # True division rounded as IEEE (ATen's `/`), not Triton's faster approximate divide.
        r = tl.math.div_rn(x, y)
    return r


@triton.jit
def _unary_op(x, OP: tl.constexpr):
    # relu as ATen's clamp_min(x, 0): NaN propagates, so test `x < 0` rather than `x > 0`.
    return tl.where(x < 0, 0, x)


@triton.jit
def _operand(ptr, scalar, offs, mask, IS_SCALAR: tl.constexpr, UPCAST: tl.constexpr):
    if IS_SCALAR:
        v = scalar
    else:
        v = tl.load(ptr + offs, mask=mask)
        if UPCAST:
            v = v.to(tl.float32)
    return v


@triton.jit
def binary_contig(
    x,
    y,
    out,
    n,
    xs,
    ys,
    alpha,
    OP: tl.constexpr,
    FORM: tl.constexpr,
    UPCAST: tl.constexpr,
    INDEX64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    if INDEX64:
        pid = pid.to(tl.int64)
    start = pid * BLOCK
    offs = start + tl.arange(0, BLOCK)
    # Full blocks take the unmasked branch, so aligned variants get 16-byte accesses for any n.
    if start + BLOCK <= n:
        a = _operand(x, xs, offs, None, FORM == "st", UPCAST)
        b = _operand(y, ys, offs, None, FORM == "ts", UPCAST)
        tl.store(out + offs, _binary_op(a, b, alpha, OP).to(out.dtype.element_ty))
    else:
        mask = offs < n
        a = _operand(x, xs, offs, mask, FORM == "st", UPCAST)
        b = _operand(y, ys, offs, mask, FORM == "ts", UPCAST)
        tl.store(out + offs, _binary_op(a, b, alpha, OP).to(out.dtype.element_ty), mask=mask)


@triton.jit
def _strided_offsets(i, s1, s2, s3, st0, st1, st2, st3):
    i3 = i % s3
    i = i // s3
    i2 = i % s2
    i = i // s2
    i1 = i % s1
    i0 = i // s1
    return i0 * st0 + i1 * st1 + i2 * st2 + i3 * st3


@triton.jit
def binary_strided(
    x,
    y,
    out,
    n,
    xs,
    ys,
    alpha,
    s1,
    s2,
    s3,
    x0,
    x1,
    x2,
    x3,
    y0,
    y1,
    y2,
    y3,
    o0,
    o1,
    o2,
    o3,
    OP: tl.constexpr,
    FORM: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Shape (n / (s1*s2*s3), s1, s2, s3); strides in elements; 32-bit offsets (the driver checks).
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    a = _operand(x, xs, _strided_offsets(i, s1, s2, s3, x0, x1, x2, x3), mask, FORM == "st", UPCAST)
    b = _operand(y, ys, _strided_offsets(i, s1, s2, s3, y0, y1, y2, y3), mask, FORM == "ts", UPCAST)
    r = _binary_op(a, b, alpha, OP).to(out.dtype.element_ty)
    tl.store(out + _strided_offsets(i, s1, s2, s3, o0, o1, o2, o3), r, mask=mask)


@triton.jit
def unary_contig(x, out, n, OP: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if INDEX64:
        pid = pid.to(tl.int64)
    start = pid * BLOCK
    offs = start + tl.arange(0, BLOCK)
    if start + BLOCK <= n:
        tl.store(out + offs, _unary_op(tl.load(x + offs), OP))
    else:
        mask = offs < n
        tl.store(out + offs, _unary_op(tl.load(x + offs, mask=mask), OP), mask=mask)


@triton.jit
def unary_strided(x, out, n, s1, s2, s3, x0, x1, x2, x3, o0, o1, o2, o3, OP: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    v = tl.load(x + _strided_offsets(i, s1, s2, s3, x0, x1, x2, x3), mask=mask)
    tl.store(out + _strided_offsets(i, s1, s2, s3, o0, o1, o2, o3), _unary_op(v, OP), mask=mask)
