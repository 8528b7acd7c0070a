"""Fused activation-and-multiply kernels: silu_and_mul, gelu_and_mul and their backward.

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
