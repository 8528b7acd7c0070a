"""Fused kernels: silu_and_mul, gelu_and_mul and their backward; rotary embedding (rotary_kernel).

x has a last dim of 2H and is viewed as a matrix of `M` rows of 2H elements, the elements of a
row contiguous, rows `x_row` elements apart (any stride, also 0 or one that overlaps the row:
x is only read). With a = x[:, :H] and b = x[:, H:]:

- `act_and_mul_fwd`:  out[r, i] = act(a[r, i]) * b[r, i], out contiguous [M, H].
- `act_and_mul_bwd`:  dx[r, i] = grad[r, i] * b[r, i] * act'(a[r, i]) and
                      dx[r, H + i] = grad[r, i] * act(a[r, i]); dx contiguous [M, 2H], grad rows
                      `grad_row` elements apart.

ACT is "silu" (a / (1 + exp(-a))), "gelu" (the erf form) or "gelu_tanh" (the tanh
approximation): ATen's formulas, evaluated in fp32 for every input dtype (ATen's opmath for
fp16 / bf16), with one rounding to the output dtype at the end.

Launch grid: axis 0 walks blocks of BLOCK_M rows (up to 2**31 - 1 programs), axis 1 blocks of
BLOCK_N columns; no division or modulo per element. Row offsets are 64-bit (a program's row
index times the row stride), column offsets 32-bit (the driver keeps 2H below 2**31).

H and the row strides arrive in units of VEC elements: aligned variants set VEC to the elements
in 16 bytes and hint the pointers, so the compiler knows every row and both halves start on
16-byte boundaries and that the column mask is constant over VEC elements, and loads and
stores 16-byte vectors. General variants have VEC = 1.

Transcendentals call libdevice (CUDA's own expf / erff / tanhf, which ATen's kernels use);
fp32 division is IEEE-rounded (tl.math.div_rn), as CUDA's `/`. Kernels here use
triton.language builtins only, not its @jit library (tl.cdiv, tl.sigmoid, ...): the CPU tests
run an interpreted copy of this module.
"""

import triton
import triton.language as tl
from triton.language.extra import libdevice

# The <math.h> constants of ATen's GELU kernels (products formed in double, as ATen's constexprs).
_M_SQRT1_2 = tl.constexpr(0.70710678118654752440)
_GELU_TANH_BETA = tl.constexpr(1.41421356237309504880 * 1.12837916709551257390 * 0.5)  # M_SQRT2 * M_2_SQRTPI / 2
_GELU_ERF_BETA = tl.constexpr(1.12837916709551257390 * 0.70710678118654752440 * 0.5)  # M_2_SQRTPI * M_SQRT1_2 / 2
_GELU_KAPPA = tl.constexpr(0.044715)


@triton.jit
def _act(a, ACT: tl.constexpr):
    """act(a) in fp32."""
    if ACT == "silu":
        # ATen's silu: x / (1 + exp(-x)); silu(-inf) is NaN there too.
        r = tl.math.div_rn(a, 1.0 + libdevice.exp(-a))
    elif ACT == "gelu":
        r = a * 0.5 * (1.0 + libdevice.erf(a * _M_SQRT1_2))
    else:
        tl.static_assert(ACT == "gelu_tanh", "ACT is silu, gelu or gelu_tanh")
        inner = (a + a * a * a * _GELU_KAPPA) * _GELU_TANH_BETA
        r = 0.5 * a * (1.0 + libdevice.tanh(inner))
    return r


@triton.jit
def _act_and_grad(a, ACT: tl.constexpr):
    """(act(a), act'(a)) in fp32, as ATen's silu_backward / gelu_backward compute the derivative."""
    if ACT == "silu":
        e = libdevice.exp(-a)
        s = tl.math.div_rn(1.0, 1.0 + e)
        act = tl.math.div_rn(a, 1.0 + e)
        d = s * (1.0 + a * (1.0 - s))
    elif ACT == "gelu":
        cdf = 0.5 * (1.0 + libdevice.erf(a * _M_SQRT1_2))
        pdf = libdevice.exp(-0.5 * a * a) * _GELU_ERF_BETA
        act = a * cdf
        d = cdf + a * pdf
    else:
        tl.static_assert(ACT == "gelu_tanh", "ACT is silu, gelu or gelu_tanh")
        a_sq = a * a
        t = libdevice.tanh((a + a_sq * a * _GELU_KAPPA) * _GELU_TANH_BETA)
        act = 0.5 * a * (1.0 + t)
        inner_derivative = (1.0 + a_sq * (3.0 * _GELU_KAPPA)) * _GELU_TANH_BETA
        d = 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * inner_derivative
    return act, d


@triton.jit
def _tile(x_ptr, M, H, x_row, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's rows and columns of the [M, H] halves, the mask, and both halves in fp32."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < H)[None, :]
    a_ptrs = x_ptr + (rows * x_row)[:, None] + cols[None, :]
    a = tl.load(a_ptrs, mask=mask, other=0).to(tl.float32)
    b = tl.load(a_ptrs + H, mask=mask, other=0).to(tl.float32)
    return rows, cols, mask, a, b


@triton.jit
def act_and_mul_fwd(
    x_ptr,
    out_ptr,
    M,
    H_v,
    x_row_v,
    ACT: tl.constexpr,
    VEC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    H = H_v * VEC
    rows, cols, mask, a, b = _tile(x_ptr, M, H, x_row_v * VEC, BLOCK_M, BLOCK_N)
    y = _act(a, ACT) * b
    out_ptrs = out_ptr + (rows * H)[:, None] + cols[None, :]
    tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def act_and_mul_bwd(
    grad_ptr,
    x_ptr,
    dx_ptr,
    M,
    H_v,
    grad_row_v,
    x_row_v,
    ACT: tl.constexpr,
    VEC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    H = H_v * VEC
    rows, cols, mask, a, b = _tile(x_ptr, M, H, x_row_v * VEC, BLOCK_M, BLOCK_N)
    g_ptrs = grad_ptr + (rows * (grad_row_v * VEC))[:, None] + cols[None, :]
    g = tl.load(g_ptrs, mask=mask, other=0).to(tl.float32)
    act, d = _act_and_grad(a, ACT)
    da = g * b * d
    db = g * act
    da_ptrs = dx_ptr + (rows * (2 * H))[:, None] + cols[None, :]
    tl.store(da_ptrs, da.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(da_ptrs + H, db.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def rotary_kernel(
    x_ptr,
    out_ptr,
    cos_ptr,
    sin_ptr,
    pos_ptr,
    H,
    S,
    x_sb,
    x_sh,
    x_ss,
    o_sb,
    o_sh,
    o_ss,
    c_sb,
    c_ss,
    p_sb,
    p_ss,
    R_HALF,
    D,
    BLOCK_H: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    HAS_POS: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    BACKWARD: tl.constexpr,
):
    """Rotary embedding of x [B, H, S, D] (any strides, D contiguous) into out, for one (b, s) and
    BLOCK_H heads per program (grid: B * S, cdiv(H, BLOCK_H)).

    The first 2 * R_HALF dims rotate in pairs (x1, x2): (i, i + R_HALF), or (2i, 2i + 1) when
    INTERLEAVED; the rest are copied. cos / sin rows hold 2 * R_HALF values, indexed like x:
    forward  o1 = x1 c1 - x2 s1, o2 = x2 c2 + x1 s2  (x cos + rotate(x) sin, Hugging Face's form);
    backward o1 = x1 c1 + x2 s2, o2 = x2 c2 - x1 s1  (its transpose, x being the gradient).
    The cos / sin row is b * c_sb + s * c_ss, or position_ids[b, s] * c_ss with HAS_POS. fp32 math,
    one rounding at the end.
    """
    row = tl.program_id(0)
    b = row // S
    s = row - b * S
    if HAS_POS:
        trig_row = tl.load(pos_ptr + b.to(tl.int64) * p_sb + s * p_ss).to(tl.int64) * c_ss
    else:
        trig_row = b.to(tl.int64) * c_sb + s.to(tl.int64) * c_ss
    i = tl.arange(0, BLOCK_HALF)
    i_mask = i < R_HALF
    if INTERLEAVED:
        first = 2 * i
        second = 2 * i + 1
    else:
        first = i
        second = i + R_HALF
    c1 = tl.load(cos_ptr + trig_row + first, mask=i_mask, other=0.0).to(tl.float32)[None, :]
    c2 = tl.load(cos_ptr + trig_row + second, mask=i_mask, other=0.0).to(tl.float32)[None, :]
    s1 = tl.load(sin_ptr + trig_row + first, mask=i_mask, other=0.0).to(tl.float32)[None, :]
    s2 = tl.load(sin_ptr + trig_row + second, mask=i_mask, other=0.0).to(tl.float32)[None, :]
    h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (h < H)[:, None] & i_mask[None, :]
    x_row = x_ptr + b.to(tl.int64) * x_sb + s.to(tl.int64) * x_ss + h.to(tl.int64)[:, None] * x_sh
    o_row = out_ptr + b.to(tl.int64) * o_sb + s.to(tl.int64) * o_ss + h.to(tl.int64)[:, None] * o_sh
    x1 = tl.load(x_row + first[None, :], mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_row + second[None, :], mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:
        o1 = x1 * c1 + x2 * s2
        o2 = x2 * c2 - x1 * s1
    else:
        o1 = x1 * c1 - x2 * s1
        o2 = x2 * c2 + x1 * s2
    tl.store(o_row + first[None, :], o1.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(o_row + second[None, :], o2.to(out_ptr.dtype.element_ty), mask=mask)
    # The dims past the rotated ones (partial rotary) pass through.
    for start in range(2 * R_HALF, D, 2 * BLOCK_HALF):
        d = start + tl.arange(0, 2 * BLOCK_HALF)
        pass_mask = (h < H)[:, None] & (d < D)[None, :]
        tl.store(o_row + d[None, :], tl.load(x_row + d[None, :], mask=pass_mask), mask=pass_mask)
