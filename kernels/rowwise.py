"""Row-wise ops: one kernel per direction for every op of aot/family_rowwise.py (softmax and
log_softmax, forward and backward), and the RMSNorm forward.

The driver views a contiguous tensor, with no copy, as (outer, N, inner): N the length of the
normalised dim, each "row" the N elements of one (outer, inner) index. Two layouts, by the
constexpr STRIDED:

- contiguous rows (inner = 1): program p owns rows [p * ROWS, p * ROWS + ROWS) of OUTER rows, a
  tile [ROWS, BLOCK_N] with the row along axis 1 in memory order.
- strided rows (inner > 1): program p owns ROWS adjacent inner indices of one outer index, so the
  tile's axis 0 is contiguous in memory; the row runs along axis 1 with stride INNER.

A row either fits one tile (LOOP false: it is loaded once and kept in registers) or is walked in
BLOCK_N chunks (LOOP true): the softmax forward keeps a running max and sum of exp per lane
(online softmax) in a first pass and writes in a second; the backward and rms_norm sum in a first
pass and write in a second. A first pass loads with evict_last, so that the second finds the row
in L2; loads read once evict first. Masked lanes load -inf (softmax forward) or 0 (the others),
which leave the max and sums as they are. Math is fp32 whatever the input dtype; the result is
cast to the output's dtype once.

softmax:     y = exp(x - m) / s                  m = max(x), s = sum(exp(x - m))
log_softmax: y = x - m - log(s)
backward of softmax:     dx = y * (g - sum(g * y))
backward of log_softmax: dx = g - exp(y) * sum(g)
rms_norm:    y = x * rsqrt(sum(x * x) / N + eps) * w   (contiguous rows only; w optional)

A row of -inf only gives m = -inf and NaN, as torch does. Sizes and offsets are 64-bit; the grid
is below 2**31 programs.
"""

import triton
import triton.language as tl

# Builtins only (tl.reduce, tl.full, tl.exp, tl.log, tl.rsqrt), not triton.language's @jit library (tl.sum,
# tl.max): the CPU tests run an interpreted copy of this module, where those stay compiled-only.


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def _rows(OUTER, INNER, N, ROWS: tl.constexpr, STRIDED: tl.constexpr):
    """(offset of each row's first element, whether the row exists, the row's stride)."""
    pid = tl.program_id(0)
    if STRIDED:
        blocks = ((INNER + ROWS - 1) // ROWS).to(tl.int32)
        o = (pid // blocks).to(tl.int64)
        i = (pid % blocks).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        row_off, row_ok, stride = o * N * INNER + i, i < INNER, INNER
    else:
        r = pid.to(tl.int64) * ROWS + tl.arange(0, ROWS)
        row_off, row_ok, stride = r * N, r < OUTER, 1
    return row_off, row_ok, stride


@triton.jit
def _online(m, s, x):
    """The running max m and sum s of exp(x - m) per lane after taking in x; a lane of -inf only
    keeps s = 0, a NaN makes the lane's m and s NaN (and so the row's sum, as in torch)."""
    m_new = tl.maximum(m, x, propagate_nan=tl.PropagateNan.ALL)
    seen = m_new != float("-inf")
    s = tl.where(seen, s * tl.exp(m - m_new) + tl.exp(x - m_new), 0.0)
    return m_new, s


@triton.jit
def _softmax_out(x, e, m, s, LOG: tl.constexpr):
    """The output from x, e = exp(x - m) and the row's m and s."""
    if LOG:
        y = x - m[:, None] - tl.log(s)[:, None]
    else:
        y = e / s[:, None]
    return y


@triton.jit
def softmax_fwd(
    x_ptr,
    y_ptr,
    OUTER,
    N,
    INNER,
    LOG: tl.constexpr,
    STRIDED: tl.constexpr,
    LOOP: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    row_off, row_ok, stride = _rows(OUTER, INNER, N, ROWS, STRIDED)
    cols = tl.arange(0, BLOCK_N)
    x_rows = x_ptr + row_off[:, None]
    y_rows = y_ptr + row_off[:, None]
    out_ty = y_ptr.dtype.element_ty
    if not LOOP:
        mask = row_ok[:, None] & (cols < N)[None, :]
        offs = (cols * stride)[None, :]
        x = tl.load(x_rows + offs, mask=mask, other=float("-inf"), eviction_policy="evict_first").to(tl.float32)
        m = tl.reduce(x, 1, _max)
        e = tl.exp(x - m[:, None])
        s = tl.reduce(e, 1, _add)
        tl.store(y_rows + offs, _softmax_out(x, e, m, s, LOG).to(out_ty), mask=mask)
    else:
        m_lanes = tl.full([ROWS, BLOCK_N], float("-inf"), tl.float32)
        s_lanes = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok[:, None] & (n0 + cols < N)[None, :]
            x = tl.load(x_rows + ((n0 + cols) * stride)[None, :], mask=mask, other=float("-inf"),
                        eviction_policy="evict_last").to(tl.float32)
            m_lanes, s_lanes = _online(m_lanes, s_lanes, x)
        m = tl.reduce(m_lanes, 1, _max)
        scaled = tl.where(m_lanes != float("-inf"), s_lanes * tl.exp(m_lanes - m[:, None]), 0.0)
        s = tl.reduce(scaled, 1, _add)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok[:, None] & (n0 + cols < N)[None, :]
            offs = ((n0 + cols) * stride)[None, :]
            x = tl.load(x_rows + offs, mask=mask, other=float("-inf"), eviction_policy="evict_first").to(tl.float32)
            y = _softmax_out(x, tl.exp(x - m[:, None]), m, s, LOG)
            tl.store(y_rows + offs, y.to(out_ty), mask=mask)


@triton.jit
def _grad_in(g, y, total, LOG: tl.constexpr):
    if LOG:
        dx = g - tl.exp(y) * total[:, None]
    else:
        dx = y * (g - total[:, None])
    return dx


@triton.jit
def softmax_bwd(
    g_ptr,
    y_ptr,
    dx_ptr,
    OUTER,
    N,
    INNER,
    LOG: tl.constexpr,
    STRIDED: tl.constexpr,
    LOOP: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    row_off, row_ok, stride = _rows(OUTER, INNER, N, ROWS, STRIDED)
    cols = tl.arange(0, BLOCK_N)
    g_rows = g_ptr + row_off[:, None]
    y_rows = y_ptr + row_off[:, None]
    dx_rows = dx_ptr + row_off[:, None]
    out_ty = dx_ptr.dtype.element_ty
    if not LOOP:
        mask = row_ok[:, None] & (cols < N)[None, :]
        offs = (cols * stride)[None, :]
        g = tl.load(g_rows + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        y = tl.load(y_rows + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        if LOG:
            total = tl.reduce(g, 1, _add)
        else:
            total = tl.reduce(g * y, 1, _add)
        tl.store(dx_rows + offs, _grad_in(g, y, total, LOG).to(out_ty), mask=mask)
    else:
        acc = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok[:, None] & (n0 + cols < N)[None, :]
            offs = ((n0 + cols) * stride)[None, :]
            g = tl.load(g_rows + offs, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
            if LOG:
                acc += g
            else:
                acc += g * tl.load(y_rows + offs, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
        total = tl.reduce(acc, 1, _add)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok[:, None] & (n0 + cols < N)[None, :]
            offs = ((n0 + cols) * stride)[None, :]
            g = tl.load(g_rows + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            y = tl.load(y_rows + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            tl.store(dx_rows + offs, _grad_in(g, y, total, LOG).to(out_ty), mask=mask)


@triton.jit
def rms_norm_fwd(
    x_ptr,
    w_ptr,
    y_ptr,
    OUTER,
    N,
    eps,
    HAS_WEIGHT: tl.constexpr,
    LOOP: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    row_off, row_ok, _ = _rows(OUTER, 1, N, ROWS, False)
    cols = tl.arange(0, BLOCK_N)
    x_rows = x_ptr + row_off[:, None]
    y_rows = y_ptr + row_off[:, None]
    out_ty = y_ptr.dtype.element_ty
    if not LOOP:
        mask = row_ok[:, None] & (cols < N)[None, :]
        x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        rstd = tl.rsqrt(tl.reduce(x * x, 1, _add) / N.to(tl.float32) + eps)
        y = x * rstd[:, None]
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
        tl.store(y_rows + cols[None, :], y.to(out_ty), mask=mask)
    else:
        acc = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok[:, None] & (n0 + cols < N)[None, :]
            x = tl.load(x_rows + (n0 + cols)[None, :], mask=mask, other=0.0, eviction_policy="evict_last")
            acc += x.to(tl.float32) * x.to(tl.float32)
        rstd = tl.rsqrt(tl.reduce(acc, 1, _add) / N.to(tl.float32) + eps)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok[:, None] & (n0 + cols < N)[None, :]
            x = tl.load(x_rows + (n0 + cols)[None, :], mask=mask, other=0.0, eviction_policy="evict_first")
            y = x.to(tl.float32) * rstd[:, None]
            if HAS_WEIGHT:
                y = y * tl.load(w_ptr + n0 + cols, mask=n0 + cols < N, other=0.0).to(tl.float32)[None, :]
            tl.store(y_rows + (n0 + cols)[None, :], y.to(out_ty), mask=mask)
