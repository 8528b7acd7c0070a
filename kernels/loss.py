"""Loss kernels of aot/family_loss.py: the negative log-likelihood loss (nll_loss_forward /
nll_loss_backward, 1-D and 2-D input, and nll_loss2d's [N, C, H, W] input) and the mean squared
error (mse_loss / mse_loss_backward), forward and backward.

Rows. A class-index loss takes one target per row: row r of ROWS_N is the outer index
o = r // INNER and the inner index i = r % INNER (INNER = 1 for nll_loss; H * W for nll_loss2d),
its classes are C elements at stride x_sc, and its target t = target[r * t_s]. Its terms, in
fp32 from the input's dtype, rounded to that dtype where ATen's CUDA kernel computes in it:

  ignored (t == ignore_index):  loss 0, weight 0
  valid (0 <= t < C):           loss -round(x[o, t, i] * w[t]), weight w[t] (1 without weight)
  out of range:                 loss NaN, weight NaN (ATen raises a device-side assert; nothing
                                is read out of bounds here: the loads are masked)

`mode` (runtime): 0 sum, 1 mean (loss / weight), 2 the mean of a 1-D input, whose one row ATen
treats apart: loss -x[t] (NaN where w[t] == 0), as a sum. Reduction none is the constexpr
REDUCE = False: the row's loss is stored (0 where ignored) and the total weight is 0.

Reductions are deterministic: program p of P sums rows [p * chunk, (p + 1) * chunk) in BLOCK
lanes and reduces its lanes in a fixed tree; with one program it finishes (stores the result),
with several it stores its partials (loss and weight, planes of P fp32 values) that
`loss_finish` sums, again in a fixed tree. P and chunk depend on the row or element count
alone (aot/family_loss.py plan_partials), so a result is the same on every GPU and every run.

nll_bwd writes the whole gradient: round(w[t] * -g) at the target's column, 0 elsewhere (NaN
across a row whose target is out of range), with g = grad_output[r] (mode 0, reduction none),
grad_output (mode 1, sum) or round(grad_output / total_weight) (mode 2, mean). Its tile is
[ROWS, BLOCK_C]: ROWS rows and BLOCK_C classes of contiguous rows (STRIDED False, INNER = 1),
or ROWS adjacent inner indices of one outer index and BLOCK_C classes (STRIDED, nll_loss2d).

Divisions are IEEE-rounded (tl.math.div_rn; Triton's `/` is div.full, within 2 ulp), as CUDA's
`/` in ATen's kernels.

cross_entropy_loss_and_grad: one program per row of a chunk of logits z (V classes, the row
`row_stride` elements from the previous one, the classes contiguous), the fused linear + cross
entropy's step (python/gems_aot/_linear_ce.py). With y = softcap * tanh(z / softcap) (Gemma 2's
cap; y = z without SOFTCAP), lse = log(sum(exp(y))), t the row's target and eps the label
smoothing (given as on_target = 1 - eps and per_class = eps / V):

  loss = lse - on_target * y[t] - per_class * sum(y)        (torch's smoothed cross entropy)
  dz   = scale * (softmax(y) - per_class - on_target * [j == t]) * (1 - tanh(z / softcap)^2)

dz is written over z, in z's dtype; the loss (fp32) to loss_ptr. Ignored rows get loss 0 and a
zero gradient, and read nothing; a target out of range gives NaN (loss and row). Not ATen's
arithmetic: everything in fp32, exp and log approximate (Triton's), no rounding to the dtype
before the end. Two passes over the row: an online max and sum of exp (per lane, as the row-wise
softmax), then the gradient.

mse: d = round(a - b), the loss round(d * d), summed in fp32 and scaled once (1 / n for the
mean, as ATen's CUDA mean); the backward round(round(alpha * round(a - b)) * g) with alpha =
2 / n (mean) or 2 rounded to the dtype on the host, g the gradient's element or its one
element (G_SCALAR). These are the roundings of ATen's kernels, which compute in the dtype.
"""

import triton
import triton.language as tl

# Builtins only (tl.reduce, tl.full, tl.where), not triton.language's @jit library (tl.sum,
# tl.zeros): the CPU tests run an interpreted copy of this module, where those stay compiled-only.


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _round(x, ty: tl.constexpr):
    """x rounded to ty and back to fp32 (nothing for fp32)."""
    return x.to(ty).to(tl.float32)


@triton.jit
def _nll_rows(x_ptr, t_ptr, w_ptr, r, ROWS_N, INNER, C, x_so, x_si, x_sc, t_s, w_s, ignore_index, has_weight):
    """Per row r: (in range, valid, out of range, x[t], w[t]); x and w are 0 where not valid."""
    ok = r < ROWS_N
    t = tl.load(t_ptr + r * t_s, mask=ok, other=ignore_index)
    kept = ok & (t != ignore_index)
    valid = kept & (t >= 0) & (t < C)
    o = r // INNER
    i = r - o * INNER
    x = tl.load(x_ptr + o * x_so + i * x_si + t * x_sc, mask=valid, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + t * w_s, mask=valid & (has_weight != 0), other=1.0).to(tl.float32)
    w = tl.where(valid, w, 0.0)
    return t, valid, kept & ~valid, x, w


@triton.jit
def _nll_finish(out_ptr, tw_ptr, total, wsum, mode):
    out_ty = out_ptr.dtype.element_ty
    out = tl.where(mode == 1, tl.math.div_rn(total, wsum), total)
    tl.store(out_ptr, out.to(out_ty))
    tl.store(tw_ptr, wsum.to(out_ty))


@triton.jit
def nll_fwd(
    x_ptr,
    t_ptr,
    w_ptr,
    out_ptr,
    tw_ptr,
    part_ptr,
    ROWS_N,
    INNER,
    C,
    x_so,
    x_si,
    x_sc,
    t_s,
    w_s,
    ignore_index,
    has_weight,
    mode,
    chunk,
    REDUCE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    lanes = tl.arange(0, BLOCK)
    in_ty = x_ptr.dtype.element_ty
    if REDUCE:
        acc = tl.full([BLOCK], 0.0, tl.float32)
        acc_w = tl.full([BLOCK], 0.0, tl.float32)
        start = pid.to(tl.int64) * chunk
        end = tl.minimum(start + chunk, ROWS_N)
        for r0 in range(start, end, BLOCK):
            r = r0 + lanes
            t, valid, bad, x, w = _nll_rows(x_ptr, t_ptr, w_ptr, r, ROWS_N, INNER, C, x_so, x_si, x_sc, t_s, w_s,
                                            ignore_index, has_weight)
            loss = tl.where(mode == 2, tl.where(w == 0.0, float("nan"), -x), -_round(x * w, in_ty))
            acc += tl.where(bad, float("nan"), tl.where(valid, loss, 0.0))
            acc_w += tl.where(bad, float("nan"), w)
        total = tl.reduce(acc, 0, _add)
        wsum = tl.reduce(acc_w, 0, _add)
        programs = tl.num_programs(0)
        if programs == 1:
            _nll_finish(out_ptr, tw_ptr, total, wsum, mode)
        else:
            tl.store(part_ptr + pid, total)
            tl.store(part_ptr + programs + pid, wsum)
    else:
        r = pid.to(tl.int64) * BLOCK + lanes
        t, valid, bad, x, w = _nll_rows(x_ptr, t_ptr, w_ptr, r, ROWS_N, INNER, C, x_so, x_si, x_sc, t_s, w_s,
                                        ignore_index, has_weight)
        loss = tl.where(bad, float("nan"), tl.where(valid, -_round(x * w, in_ty), 0.0))
        tl.store(out_ptr + r, loss.to(out_ptr.dtype.element_ty), mask=r < ROWS_N)
        if pid == 0:
            tl.store(tw_ptr, tl.full([], 0.0, tl.float32).to(tw_ptr.dtype.element_ty))


@triton.jit
def nll_bwd(
    go_ptr,
    t_ptr,
    w_ptr,
    tw_ptr,
    dx_ptr,
    ROWS_N,
    INNER,
    C,
    t_s,
    w_s,
    go_s,
    ignore_index,
    has_weight,
    mode,
    col_blocks,
    STRIDED: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pid = tl.program_id(0)
    in_ty = dx_ptr.dtype.element_ty
    row_block = pid // col_blocks
    cols = (pid - row_block * col_blocks).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    if STRIDED:
        # ROWS adjacent inner indices of one outer index: row r = o * INNER + i.
        inner_blocks = (INNER + ROWS - 1) // ROWS
        o = (row_block // inner_blocks).to(tl.int64)
        i = (row_block % inner_blocks).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        r = o * INNER + i
        row_ok = i < INNER
        row_off = o * C * INNER + i
        col_stride = INNER
    else:
        r = row_block.to(tl.int64) * ROWS + tl.arange(0, ROWS)
        row_ok = r < ROWS_N
        row_off = r * C
        col_stride = 1
    t = tl.load(t_ptr + r * t_s, mask=row_ok, other=ignore_index)
    kept = row_ok & (t != ignore_index)
    valid = kept & (t >= 0) & (t < C)
    w = tl.load(w_ptr + t * w_s, mask=valid & (has_weight != 0), other=1.0).to(tl.float32)
    go = tl.load(go_ptr + r * go_s, mask=row_ok, other=0.0).to(tl.float32)
    tw = tl.load(tw_ptr).to(tl.float32)
    base = tl.where(mode == 2, _round(tl.math.div_rn(go, tl.broadcast_to(tw, go.shape)), in_ty), go)
    g = _round(w * -base, in_ty)
    g = tl.where(kept & ~valid, float("nan"), g)
    value = tl.where((cols[None, :] == t[:, None]) & kept[:, None], g[:, None], 0.0)  # an ignore_index may be a class
    value = tl.where((kept & ~valid)[:, None], float("nan"), value)
    mask = row_ok[:, None] & (cols < C)[None, :]
    tl.store(dx_ptr + row_off[:, None] + (cols * col_stride)[None, :], value.to(in_ty), mask=mask)


@triton.jit
def loss_finish(part_ptr, out_ptr, tw_ptr, P, mode, scale, WEIGHTED: tl.constexpr, BLOCK_P: tl.constexpr):
    """The result from the P partials of a split reduction: nll's (loss and weight planes,
    WEIGHTED) or mse's (the sum, scaled)."""
    i = tl.arange(0, BLOCK_P)
    m = i < P
    total = tl.reduce(tl.load(part_ptr + i, mask=m, other=0.0), 0, _add)
    if WEIGHTED:
        wsum = tl.reduce(tl.load(part_ptr + P + i, mask=m, other=0.0), 0, _add)
        _nll_finish(out_ptr, tw_ptr, total, wsum, mode)
    else:
        tl.store(out_ptr, (total * scale).to(out_ptr.dtype.element_ty))


@triton.jit
def _squared_error(a_ptr, b_ptr, offs, mask, in_ty: tl.constexpr):
    a = tl.load(a_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    d = _round(a - b, in_ty)
    return _round(d * d, in_ty)


@triton.jit
def mse_fwd(a_ptr, b_ptr, out_ptr, part_ptr, N, chunk, scale, REDUCE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    lanes = tl.arange(0, BLOCK)
    in_ty = a_ptr.dtype.element_ty
    if REDUCE:
        acc = tl.full([BLOCK], 0.0, tl.float32)
        start = pid.to(tl.int64) * chunk
        end = tl.minimum(start + chunk, N)
        for i0 in range(start, end, BLOCK):
            offs = i0 + lanes
            acc += _squared_error(a_ptr, b_ptr, offs, offs < N, in_ty)
        total = tl.reduce(acc, 0, _add)
        if tl.num_programs(0) == 1:
            tl.store(out_ptr, (total * scale).to(out_ptr.dtype.element_ty))
        else:
            tl.store(part_ptr + pid, total)
    else:
        offs = pid.to(tl.int64) * BLOCK + lanes
        mask = offs < N
        tl.store(out_ptr + offs, _squared_error(a_ptr, b_ptr, offs, mask, in_ty).to(out_ptr.dtype.element_ty),
                 mask=mask)


@triton.jit
def mse_bwd(g_ptr, a_ptr, b_ptr, dx_ptr, N, alpha, G_SCALAR: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    in_ty = a_ptr.dtype.element_ty
    a = tl.load(a_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    if G_SCALAR:
        g = tl.load(g_ptr).to(tl.float32)
    else:
        g = tl.load(g_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    dx = _round(_round(alpha * _round(a - b, in_ty), in_ty) * g, in_ty)
    tl.store(dx_ptr + offs, dx.to(in_ty), mask=mask)


@triton.jit
def _tanh(x):
    """tanh from exp (no libdevice: the CPU tests interpret this module): within about 1e-7 of
    the true value, far below the logits' own precision, and no overflow at any x."""
    e = tl.exp(-2.0 * tl.abs(x))
    r = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -r, r)


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def _online_max_sum(m, s, y):
    """The running max m and sum s of exp(y - m) per lane after taking in y (-inf: nothing)."""
    m_new = tl.maximum(m, y, propagate_nan=tl.PropagateNan.ALL)
    s = tl.where(m_new != float("-inf"), s * tl.exp(m - m_new) + tl.exp(y - m_new), 0.0)
    return m_new, s


@triton.jit
def cross_entropy_loss_and_grad(
    z_ptr,
    t_ptr,
    loss_ptr,
    V,
    row_stride,
    t_s,
    ignore_index,
    on_target,
    per_class,
    softcap,
    scale,
    SOFTCAP: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    z_row = z_ptr + row * row_stride
    t = tl.load(t_ptr + row * t_s)
    live = t != ignore_index
    bad = live & ((t < 0) | (t >= V))
    cols = tl.arange(0, BLOCK_V)
    m = tl.full([BLOCK_V], float("-inf"), tl.float32)
    s = tl.full([BLOCK_V], 0.0, tl.float32)
    y_sum = tl.full([BLOCK_V], 0.0, tl.float32)
    for v0 in range(0, V, BLOCK_V):
        in_row = v0 + cols < V
        y = tl.load(z_row + v0 + cols, mask=in_row & live, other=0.0, eviction_policy="evict_last").to(tl.float32)
        if SOFTCAP:
            y = softcap * _tanh(y / softcap)
        y_sum += tl.where(in_row, y, 0.0)
        m, s = _online_max_sum(m, s, tl.where(in_row, y, float("-inf")))
    row_max = tl.reduce(m, 0, _max)
    row_sum = tl.reduce(tl.where(m != float("-inf"), s * tl.exp(m - row_max), 0.0), 0, _add)
    y_t = tl.load(z_row + t, mask=live & ~bad, other=0.0).to(tl.float32)
    if SOFTCAP:
        y_t = softcap * _tanh(y_t / softcap)
    loss = row_max + tl.log(row_sum) - on_target * y_t - per_class * tl.reduce(y_sum, 0, _add)
    loss = tl.where(bad, float("nan"), tl.where(live, loss, 0.0))
    tl.store(loss_ptr + row, loss)
    inv_sum = 1.0 / row_sum
    for v0 in range(0, V, BLOCK_V):
        in_row = v0 + cols < V
        z = tl.load(z_row + v0 + cols, mask=in_row & live, other=0.0, eviction_policy="evict_first").to(tl.float32)
        y = z
        if SOFTCAP:
            th = _tanh(z / softcap)
            y = softcap * th
        dz = tl.exp(y - row_max) * inv_sum - per_class - tl.where(v0 + cols == t, on_target, 0.0)
        if SOFTCAP:
            dz = dz * (1.0 - th * th)  # the cap's derivative
        dz = tl.where(bad, float("nan"), tl.where(live, dz * scale, 0.0))
        tl.store(z_row + v0 + cols, dz.to(z_ptr.dtype.element_ty), mask=in_row)
