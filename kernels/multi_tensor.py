"""Multi-tensor kernels: one launch updates every tensor of a list op (the fused Adam / AdamW step).

The host (csrc/ops/multi_tensor.cpp) describes the call in one int64 table in device memory:

  tensors  one row of ROW entries per tensor: the data pointers of param, grad, exp_avg,
           exp_avg_sq, max_exp_avg_sq (0 without amsgrad) and step (a float32 scalar), the
           element count and the tensor's first chunk (its chunks are numbered after those of
           the tensors before it; a tensor of n elements has ceil(n / CHUNK) chunks). A last
           row holds only the total chunk count in its first-chunk column, and 0 (0.0f) in its
           first column: the stand-in the driver points an absent found_inf or lr tensor at.
  plan     per program: the first chunk it updates and the tensor that chunk belongs to, then
           one more first chunk (the total), so program p updates chunks [plan[2p], plan[2p+2]).

Each program walks its chunks tensor by tensor: for every tensor its range touches it loads the
row once, computes the bias corrections from the tensor's step, and streams the elements of
that range in blocks of BLOCK (16-byte vectors: the driver runs only tensors whose pointers are
16-byte aligned; chunks start at multiples of CHUNK, a multiple of BLOCK), full blocks without
a mask and the tensor's last partial block with one.

The step is ATen's (aten/src/ATen/native/cuda/fused_adam_utils.cuh), operation for operation:
state in the param's dtype, math in fp32, and in fp64 where ATen's hyperparameters (doubles)
enter an expression, rounded to fp32 where ATen assigns to its fp32 opmath variables; CUDA's
`/` and sqrt round as IEEE, so fp32 uses div_rn and sqrt_rn. The step tensors are read, not
written (torch.optim increments them before the call). found_inf == 1 skips the whole update;
a grad_scale divides the grads, and the unscaled grads are written back (GRAD_SCALE).
"""

import triton
import triton.language as tl
from triton.language.extra import libdevice

# The table's columns (aot/family_multi_tensor.py generates the driver's copy).
COLUMNS = ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step", "numel", "first_chunk")
ROW = tl.constexpr(len(COLUMNS))
PARAM, GRAD, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ, STEP, NUMEL, FIRST_CHUNK = (tl.constexpr(i) for i in range(ROW))


@triton.jit
def _pointer(row, column: tl.constexpr, DTYPE: tl.constexpr):
    # A data pointer of the table, 16-byte aligned (the driver checks).
    return tl.multiple_of(tl.load(row + column).to(tl.pointer_type(DTYPE), bitcast=True), 16)


@triton.jit
def _store(pointer, value, mask):
    # Rounded to nearest even, as ATen's static_cast.
    tl.store(pointer, value.to(pointer.dtype.element_ty), mask=mask)


@triton.jit
def _update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, offs, mask, MASKED: tl.constexpr, scale, sign,
            decay, beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay, eps, step_size, bc2_sqrt,
            ADAMW: tl.constexpr, AMSGRAD: tl.constexpr, GRAD_SCALE: tl.constexpr):
    if MASKED:
        p = tl.load(param + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(grad + offs, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(exp_avg + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(exp_avg_sq + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        p = tl.load(param + offs).to(tl.float32)
        g = tl.load(grad + offs).to(tl.float32)
        m = tl.load(exp_avg + offs).to(tl.float32)
        v = tl.load(exp_avg_sq + offs).to(tl.float32)
    if GRAD_SCALE:
        # ATen divides in fp64 and rounds to fp32: the same as one IEEE fp32 division.
        g = tl.math.div_rn(g, scale)
        _store(grad + offs, g, mask)
    g = g * sign
    if ADAMW:
        p64 = p.to(tl.float64)
        p = tl.where(weight_decay != 0, (p64 - decay * p64).to(tl.float32), p)
    else:
        g = tl.where(weight_decay != 0, (g.to(tl.float64) + p.to(tl.float64) * weight_decay).to(tl.float32), g)
    g64 = g.to(tl.float64)
    m = (beta1 * m.to(tl.float64) + one_minus_beta1 * g64).to(tl.float32)
    v = (beta2 * v.to(tl.float64) + one_minus_beta2 * g64 * g64).to(tl.float32)
    if AMSGRAD:
        if MASKED:
            v_max = tl.load(max_exp_avg_sq + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            v_max = tl.load(max_exp_avg_sq + offs).to(tl.float32)
        v_max = tl.where(v_max < v, v, v_max)  # std::max: keeps a NaN maximum
        _store(max_exp_avg_sq + offs, v_max, mask)
        root = tl.math.sqrt_rn(v_max)
    else:
        root = tl.math.sqrt_rn(v)
    denom = (tl.math.div_rn(root, bc2_sqrt).to(tl.float64) + eps).to(tl.float32)
    p = p - tl.math.div_rn(step_size * m, denom)
    _store(param + offs, p, mask)
    _store(exp_avg + offs, m, mask)
    _store(exp_avg_sq + offs, v, mask)


@triton.jit
def adam_kernel(
    tensors,
    plan,
    found_inf,
    grad_scale,
    lr_tensor,
    lr,
    lr_on_device,
    beta1,
    beta2,
    weight_decay,
    eps,
    maximize,
    DTYPE: tl.constexpr,
    ADAMW: tl.constexpr,
    AMSGRAD: tl.constexpr,
    GRAD_SCALE: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    c = tl.load(plan + 2 * pid)
    t = tl.load(plan + 2 * pid + 1)
    c_end = tl.load(plan + 2 * pid + 2)
    # GradScaler found an inf or NaN: nothing is updated (ATen compares with 1).
    c_end = tl.where(tl.load(found_inf) == 1.0, c, c_end)
    lr = tl.where(lr_on_device != 0, tl.load(lr_tensor).to(tl.float64), lr)
    if GRAD_SCALE:
        scale = tl.load(grad_scale)
    else:
        scale = 1.0
    sign = tl.where(maximize != 0, -1.0, 1.0)
    decay = lr * weight_decay
    one_minus_beta1 = 1.0 - beta1
    one_minus_beta2 = 1.0 - beta2
    arange = tl.arange(0, BLOCK)
    while c < c_end:
        row = tensors + t * ROW
        first = tl.load(row + FIRST_CHUNK)
        stop = tl.maximum(tl.minimum(tl.load(row + ROW + FIRST_CHUNK), c_end), c)
        n = tl.load(row + NUMEL)
        lo = (c - first) * CHUNK
        hi = tl.minimum((stop - first) * CHUNK, n)
        step = tl.load(tl.load(row + STEP).to(tl.pointer_type(tl.float32), bitcast=True)).to(tl.float64)
        bias_correction1 = (1.0 - libdevice.pow(beta1, step)).to(tl.float32)
        bc2_sqrt = tl.sqrt(1.0 - libdevice.pow(beta2, step)).to(tl.float32)
        step_size = (lr / bias_correction1.to(tl.float64)).to(tl.float32)
        param = _pointer(row, PARAM, DTYPE)
        grad = _pointer(row, GRAD, DTYPE)
        exp_avg = _pointer(row, EXP_AVG, DTYPE)
        exp_avg_sq = _pointer(row, EXP_AVG_SQ, DTYPE)
        if AMSGRAD:
            max_exp_avg_sq = _pointer(row, MAX_EXP_AVG_SQ, DTYPE)
        else:
            max_exp_avg_sq = exp_avg_sq
        full_end = lo + (hi - lo) // BLOCK * BLOCK
        for start in range(lo, full_end, BLOCK):
            offs = tl.multiple_of(start, BLOCK) + arange
            _update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, offs, None, False, scale, sign, decay, beta1,
                    one_minus_beta1, beta2, one_minus_beta2, weight_decay, eps, step_size, bc2_sqrt, ADAMW, AMSGRAD,
                    GRAD_SCALE)
        if full_end < hi:
            offs = full_end + arange
            _update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, offs, offs < hi, True, scale, sign, decay, beta1,
                    one_minus_beta1, beta2, one_minus_beta2, weight_decay, eps, step_size, bc2_sqrt, ADAMW, AMSGRAD,
                    GRAD_SCALE)
        c = stop
        t += 1
