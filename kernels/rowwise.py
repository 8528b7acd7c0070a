"""Row-wise ops: one kernel per direction for every op of aot/family_rowwise.py (softmax and
log_softmax, forward and backward), and the norms over trailing dims (LayerNorm and RMSNorm,
forward and backward: norm_fwd, norm_bwd, norm_cols; contiguous rows only).

The driver views a contiguous tensor, with no copy, as (outer, N, inner): N the length of the
normalised dim, each "row" the N elements of one (outer, inner) index. Two layouts, by the
constexpr STRIDED:

- contiguous rows (inner = 1): program p owns rows [p * ROWS, p * ROWS + ROWS) of OUTER rows, a
  tile [ROWS, BLOCK_N] with the row along axis 1 in memory order.
- strided rows (inner > 1): program p owns ROWS adjacent inner indices of one outer index, so the
  tile's axis 0 is contiguous in memory; the row runs along axis 1 with stride INNER.

A row either fits one tile (LOOP false: it is loaded once and kept in registers) or is walked in
BLOCK_N chunks (LOOP true): the softmax forward keeps a running max and sum of exp per lane
(online softmax) in a first pass and writes in a second; the backward and the norms sum in a
first pass and write in a second. A first pass loads with evict_last, so that the second finds the row
in L2; loads read once evict first. Masked lanes load -inf (softmax forward) or 0 (the others),
which leave the max and sums as they are. Math is fp32 whatever the input dtype; the result is
cast to the output's dtype once.

softmax:     y = exp(x - m) / s                  m = max(x), s = sum(exp(x - m))
log_softmax: y = x - m - log(s)
backward of softmax:     dx = y * (g - sum(g * y))
backward of log_softmax: dx = g - exp(y) * sum(g)
layer_norm:  y = (x - mean) * rstd * w + b          rstd = rsqrt(var + eps), var = mean((x - mean)^2)
rms_norm:    y = x * rstd * w                      rstd = rsqrt(mean(x * x) + eps)   (w, b optional)
their backward: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w (RMSNorm: no
mean(g)); dw = sum over rows of dy * xhat, db = sum of dy (per program, then norm_cols)

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


# -- normalisation over contiguous rows: LayerNorm (RMS false) and RMSNorm (RMS true) ------------


@triton.jit
def _row_ids(OUTER, t, ROWS: tl.constexpr):
    """The row indices of row tile t (64-bit) and whether each row exists."""
    r = (tl.full([ROWS], 0, tl.int64) + t) * ROWS + tl.arange(0, ROWS)
    return r, r < OUTER


@triton.jit
def _welford(mean_a, m2_a, n_a, mean_b, m2_b, n_b):
    """Chan's combination of two (mean, sum of squared deviations, count) states."""
    n = n_a + n_b
    delta = mean_b - mean_a
    frac = tl.where(n > 0.0, n_b / tl.maximum(n, 1.0), 0.0)
    return mean_a + delta * frac, m2_a + m2_b + delta * delta * n_a * frac, n


@triton.jit
def _moments(x, mask, N, RMS: tl.constexpr):
    """(mean, variance) of each row of a tile that holds whole rows (masked lanes are 0); RMSNorm's
    "variance" is the mean square, its mean unused. Two passes over registers: the deviations
    are summed after the mean is known, so a large mean costs no precision."""
    n = N.to(tl.float32)
    if RMS:
        var = tl.reduce(x * x, 1, _add) / n
        mean = var
    else:
        mean = tl.reduce(x, 1, _add) / n
        d = tl.where(mask, x - mean[:, None], 0.0)
        var = tl.reduce(d * d, 1, _add) / n
    return mean, var


@triton.jit
def _normalized(x, mean, rstd, mask, RMS: tl.constexpr):
    """x-hat of a tile: (x - mean) * rstd, or x * rstd for RMSNorm; 0 in masked lanes."""
    if RMS:
        xhat = x * rstd[:, None]
    else:
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
    return xhat


@triton.jit
def _affine(xhat, w_ptr, b_ptr, cols, col_ok, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr):
    """y = xhat * w + b (each optional), in fp32."""
    y = xhat
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    return y


@triton.jit
def norm_fwd(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    mean_ptr,
    rstd_ptr,
    OUTER,
    N,
    eps,
    stats,
    RMS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    LOOP: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """y = (x - mean) * rstd * w + b over rows of N contiguous elements (RMSNorm: x * rstd * w),
    rstd = 1 / sqrt(var + eps); with `stats` nonzero, also each row's mean (LayerNorm) and rstd, in
    fp32. Program p owns rows [p * ROWS, p * ROWS + ROWS)."""
    r, row_ok = _row_ids(OUTER, tl.program_id(0), ROWS)
    cols = tl.arange(0, BLOCK_N)
    x_rows = x_ptr + (r * N)[:, None]
    y_rows = y_ptr + (r * N)[:, None]
    out_ty = y_ptr.dtype.element_ty
    if not LOOP:
        col_ok = cols < N
        mask = row_ok[:, None] & col_ok[None, :]
        x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        mean, var = _moments(x, mask, N, RMS)
        rstd = tl.rsqrt(var + eps)
        y = _affine(_normalized(x, mean, rstd, mask, RMS), w_ptr, b_ptr, cols, col_ok, HAS_WEIGHT, HAS_BIAS)
        tl.store(y_rows + cols[None, :], y.to(out_ty), mask=mask)
    else:
        # Welford per lane over the row's chunks, the lanes combined at the end (RMSNorm: the sum
        # of squares); the first pass keeps the row in L2 for the second.
        mean_l = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        m2_l = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        n_l = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok[:, None] & (n0 + cols < N)[None, :]
            x = tl.load(x_rows + (n0 + cols)[None, :], mask=mask, other=0.0,
                        eviction_policy="evict_last").to(tl.float32)
            if RMS:
                m2_l += x * x
            else:
                n_l += tl.where(mask, 1.0, 0.0)
                delta = x - mean_l
                mean_l += tl.where(mask, delta / tl.maximum(n_l, 1.0), 0.0)
                m2_l += tl.where(mask, delta * (x - mean_l), 0.0)
        if RMS:
            var = tl.reduce(m2_l, 1, _add) / N.to(tl.float32)
            mean = var
        else:
            mean, m2, _ = tl.reduce((mean_l, m2_l, n_l), 1, _welford)
            var = m2 / N.to(tl.float32)
        rstd = tl.rsqrt(var + eps)
        for n0 in range(0, N, BLOCK_N):
            col_ok = n0 + cols < N
            mask = row_ok[:, None] & col_ok[None, :]
            x = tl.load(x_rows + (n0 + cols)[None, :], mask=mask, other=0.0,
                        eviction_policy="evict_first").to(tl.float32)
            y = _affine(_normalized(x, mean, rstd, mask, RMS), w_ptr + n0, b_ptr + n0, cols, col_ok, HAS_WEIGHT,
                        HAS_BIAS)
            tl.store(y_rows + (n0 + cols)[None, :], y.to(out_ty), mask=mask)
    if stats != 0:
        if not RMS:
            tl.store(mean_ptr + r, mean, mask=row_ok)
        tl.store(rstd_ptr + r, rstd, mask=row_ok)


@triton.jit
def _grad_terms(dy, xhat, w, RMS: tl.constexpr, HAS_WEIGHT: tl.constexpr):
    """g = dy * w, and per row the lane sums of g * xhat and (LayerNorm) of g."""
    if HAS_WEIGHT:
        g = dy * w
    else:
        g = dy
    a = g * xhat
    if RMS:
        b = a
    else:
        b = g
    return g, a, b


@triton.jit
def _grad_input(g, xhat, rstd, c1, c2, RMS: tl.constexpr):
    """dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) (RMSNorm: without mean(g))."""
    if RMS:
        dx = (g - xhat * c1[:, None]) * rstd[:, None]
    else:
        dx = (g - c2[:, None] - xhat * c1[:, None]) * rstd[:, None]
    return dx


@triton.jit
def norm_bwd(
    dy_ptr,
    x_ptr,
    mean_ptr,
    rstd_ptr,
    w_ptr,
    dx_ptr,
    part_ptr,
    OUTER,
    N,
    write_dx,
    RMS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    PARTIALS: tl.constexpr,
    LOOP: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The gradient of norm_fwd from dy, x and the saved mean (LayerNorm) and rstd: dx (stored where
    `write_dx` is nonzero) and, with PARTIALS 1 or 2, this program's partial sums over its rows
    of dw = dy * xhat (plane 0) and db = dy (plane 1) of the fp32 buffer part[planes, P, N], which
    norm_cols sums. P = the program count; program p takes row tiles p, p + P, ... in order, so
    the sums are the same on every run."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    tiles = (OUTER + ROWS - 1) // ROWS
    cols = tl.arange(0, BLOCK_N)
    out_ty = dx_ptr.dtype.element_ty
    n = N.to(tl.float32)
    dw_part = part_ptr + pid.to(tl.int64) * N
    db_part = part_ptr + (programs + pid).to(tl.int64) * N
    if not LOOP:
        col_ok = cols < N
        w = tl.full([1, BLOCK_N], 1.0, tl.float32)
        if HAS_WEIGHT:
            w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        dw_acc = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        db_acc = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
        for t in range(pid, tiles, programs):
            r, row_ok = _row_ids(OUTER, t, ROWS)
            mask = row_ok[:, None] & col_ok[None, :]
            offs = (r * N)[:, None] + cols[None, :]
            x = tl.load(x_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            dy = tl.load(dy_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            rstd = tl.load(rstd_ptr + r, mask=row_ok, other=0.0)
            mean = rstd
            if not RMS:
                mean = tl.load(mean_ptr + r, mask=row_ok, other=0.0)
            xhat = _normalized(x, mean, rstd, mask, RMS)
            g, a, b = _grad_terms(dy, xhat, w, RMS, HAS_WEIGHT)
            c1 = tl.reduce(a, 1, _add) / n
            c2 = c1
            if not RMS:
                c2 = tl.reduce(b, 1, _add) / n
            if write_dx != 0:
                tl.store(dx_ptr + offs, _grad_input(g, xhat, rstd, c1, c2, RMS).to(out_ty), mask=mask)
            if PARTIALS >= 1:
                dw_acc += dy * xhat
            if PARTIALS >= 2:
                db_acc += dy
        if PARTIALS >= 1:
            tl.store(dw_part + cols, tl.reduce(dw_acc, 0, _add), mask=col_ok)
        if PARTIALS >= 2:
            tl.store(db_part + cols, tl.reduce(db_acc, 0, _add), mask=col_ok)
    else:
        # Rows longer than a tile: a first pass sums the gradient terms, a second writes dx and adds
        # this row to the program's partial sums in place. The partial rows are read back in the
        # layout they were written in, and a barrier ends each row, so every thread sees the
        # previous row's sums.
        for t in range(pid, tiles, programs):
            r, row_ok = _row_ids(OUTER, t, ROWS)
            rstd = tl.load(rstd_ptr + r, mask=row_ok, other=0.0)
            mean = rstd
            if not RMS:
                mean = tl.load(mean_ptr + r, mask=row_ok, other=0.0)
            acc_a = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
            acc_b = tl.full([ROWS, BLOCK_N], 0.0, tl.float32)
            for n0 in range(0, N, BLOCK_N):
                col_ok = n0 + cols < N
                mask = row_ok[:, None] & col_ok[None, :]
                offs = (r * N)[:, None] + (n0 + cols)[None, :]
                x = tl.load(x_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
                dy = tl.load(dy_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
                w = tl.full([1, BLOCK_N], 1.0, tl.float32)
                if HAS_WEIGHT:
                    w = tl.load(w_ptr + n0 + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
                _, a, b = _grad_terms(dy, _normalized(x, mean, rstd, mask, RMS), w, RMS, HAS_WEIGHT)
                acc_a += a
                if not RMS:
                    acc_b += b
            c1 = tl.reduce(acc_a, 1, _add) / n
            c2 = c1
            if not RMS:
                c2 = tl.reduce(acc_b, 1, _add) / n
            for n0 in range(0, N, BLOCK_N):
                col_ok = n0 + cols < N
                mask = row_ok[:, None] & col_ok[None, :]
                offs = (r * N)[:, None] + (n0 + cols)[None, :]
                x = tl.load(x_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
                dy = tl.load(dy_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
                w = tl.full([1, BLOCK_N], 1.0, tl.float32)
                if HAS_WEIGHT:
                    w = tl.load(w_ptr + n0 + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
                xhat = _normalized(x, mean, rstd, mask, RMS)
                g, _, _ = _grad_terms(dy, xhat, w, RMS, HAS_WEIGHT)
                if write_dx != 0:
                    tl.store(dx_ptr + offs, _grad_input(g, xhat, rstd, c1, c2, RMS).to(out_ty), mask=mask)
                part_mask = (n0 + cols < N)[None, :] & (tl.arange(0, ROWS) == 0)[:, None]
                part_offs = (n0 + cols)[None, :] + tl.arange(0, ROWS)[:, None] * 0
                seen = part_mask & (t != pid)
                if PARTIALS >= 1:
                    prev = tl.load(dw_part + part_offs, mask=seen, other=0.0)
                    tl.store(dw_part + part_offs, prev + tl.reduce(dy * xhat, 0, _add)[None, :], mask=part_mask)
                if PARTIALS >= 2:
                    prev = tl.load(db_part + part_offs, mask=seen, other=0.0)
                    tl.store(db_part + part_offs, prev + tl.reduce(dy, 0, _add)[None, :], mask=part_mask)
            tl.debug_barrier()


@triton.jit
def norm_cols(part_ptr, dw_ptr, db_ptr, P, N, first_plane, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """dw (plane 0) and db (plane 1) from norm_bwd's partial sums: column c of plane q is the sum
    over p of part[q, p, c], in a fixed order. Grid (column blocks, planes from first_plane)."""
    c = tl.program_id(0).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < N
    plane = tl.program_id(1) + first_plane
    base = part_ptr + plane.to(tl.int64) * P * N
    acc = tl.full([BLOCK_P, BLOCK_C], 0.0, tl.float32)
    for p0 in range(0, P, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        acc += tl.load(base + (p.to(tl.int64) * N)[:, None] + c[None, :], mask=(p < P)[:, None] & c_ok[None, :],
                       other=0.0)
    total = tl.reduce(acc, 0, _add)
    if plane == 0:
        tl.store(dw_ptr + c, total.to(dw_ptr.dtype.element_ty), mask=c_ok)
    else:
        tl.store(db_ptr + c, total.to(db_ptr.dtype.element_ty), mask=c_ok)
