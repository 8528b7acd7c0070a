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

The step is ATen's CUDA kernel (aten/src/ATen/native/cuda/fused_adam_utils.cuh, as built in torch
2.11 and 2.14), operation for operation: state in the param's dtype, math in fp32 (ATen casts its
double hyperparameters to fp32 before the step), the moments in ATen's fma form
m = fma(beta1, m, fma(-beta1, g, g)) and v = fma(beta2, v, fma(-beta2, g*g, g*g)), and the two
multiply-adds nvcc contracts there as fmas too (AdamW's decay fma(-lr*wd, p, p), Adam's
fma(p, wd, g)); every other operation is rounded on its own (CUDA's `/` and sqrt round as IEEE,
so div_rn and sqrt_rn). The bias corrections are fp32 too: 1 - powf(beta, step) with the step
read as fp32 (powf as CUDA 13's, _powf), sqrt_rn of the second. The step tensors are read, not written (torch.optim
increments them before the call). found_inf == 1 skips the whole update; a grad_scale divides
the grads, and the unscaled grads are written back (GRAD_SCALE).
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
def _powf(x, y):
    """x ** y for 0 <= x < inf and a finite y, bit for bit as CUDA 13's powf, which ATen's kernel
    calls for its bias corrections (within an ulp of the exact power, not always the nearest one;
    libdevice's __nv_powf is another algorithm, which need not pick the same ulp). Transcribed
    from the SASS nvcc made of ATen's kernel (torch 2.11 and 2.14, CUDA 13.0): log2(x) in two
    floats from the mantissa m in [sqrt(1/2), sqrt(2)) as u = 2(m-1)/(m+1) with its rounding
    error, times y with an fma for the error, then 2**frac by a polynomial and 2**round by two
    scalings. The reciprocal is the hardware's approximate one, as there; the products that feed
    additions round on their own (mul_rn), as there."""
    tiny = x < 1.1754943508222875e-38
    a = tl.where(tiny, x * 16777216.0, x)
    bits = a.to(tl.int32, bitcast=True)
    e_bits = (bits - 0x3F3504F3) & -8388608  # 0xff800000: the exponent that leaves m in range
    m = (bits - e_bits).to(tl.float32, bitcast=True)
    e = tl.fma(e_bits.to(tl.float32), 1.1920928955078125e-07, tl.where(tiny, -24.0, 0.0))
    m_minus_1 = m - 1.0
    reciprocal = libdevice.fast_dividef(1.0, m + 1.0)
    u = libdevice.mul_rn(reciprocal, m_minus_1 + m_minus_1)
    u2 = u * u
    hi = tl.fma(u, 1.4426950216293334961, e)
    d = m_minus_1 - u
    correction = reciprocal * tl.fma(m_minus_1, -u, d + d)
    poly = tl.fma(u2, 0.0006568862590938807, 0.0032181653659790754318)
    poly = tl.fma(u2, poly, 0.018033718690276145935)
    poly = u2 * tl.fma(u2, poly, 0.12022458761930465698)
    lo = tl.fma(u, 1.4426950216293334961, e - hi)
    lo = tl.fma(correction, 1.4426950216293334961, lo)
    lo = tl.fma(u, 1.9251366722983220825e-08, lo)
    lo = tl.fma(correction, poly * 3.0, lo)
    lo = tl.fma(u, poly, lo)
    log_hi = hi + lo
    log_lo = lo - (log_hi - hi)
    t = libdevice.mul_rn(y, log_hi)
    n = libdevice.rint(t)
    t_lo = tl.fma(y, log_lo, tl.fma(y, log_hi, -t))
    f = t_lo + (t - n)
    q = tl.fma(f, 0.00015239251661114395, 0.0013391353422775864601)
    q = tl.fma(f, q, 0.0096188392490148544312)
    q = tl.fma(f, q, 0.055503588169813156128)
    q = tl.fma(f, q, 0.24022644758224487305)
    q = tl.fma(f, q, 0.69314718246459960938)
    q = tl.fma(f, q, 1.0)
    low = tl.where(n > 0, 0, -2097152000)  # 0x83000000: 2**n as 2**-123 * 2**(n+123) below 1
    scale = (low + 0x7F000000).to(tl.float32, bitcast=True)
    power = q * scale * ((n.to(tl.int32) << 23) - low).to(tl.float32, bitcast=True)
    power = tl.where(tl.abs(t) > 152.0, tl.where(t >= 0, float("inf"), 0.0), power)
    power = tl.where((x == 1.0) | (y == 0.0), 1.0, power)
    return tl.where(x == 0.0, tl.where(y < 0, float("inf"), 0.0), power)


@triton.jit
def _update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, offs, mask, MASKED: tl.constexpr, scale, maximize,
            decay, beta1, beta2, weight_decay, eps, step_size, bc2_sqrt, ADAMW: tl.constexpr, AMSGRAD: tl.constexpr,
            GRAD_SCALE: tl.constexpr):
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
        g = tl.math.div_rn(g, scale)
        _store(grad + offs, g, mask)
    g = tl.where(maximize != 0, -g, g)
    if ADAMW:
        p = tl.where(weight_decay != 0, tl.fma(-decay, p, p), p)
    else:
        g = tl.where(weight_decay != 0, tl.fma(p, weight_decay, g), g)
    m = tl.fma(beta1, m, tl.fma(-beta1, g, g))
    g2 = g * g
    v = tl.fma(beta2, v, tl.fma(-beta2, g2, g2))
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
    denom = tl.math.div_rn(root, bc2_sqrt) + eps
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
    # ATen's opmath hyperparameters: the doubles rounded to fp32, or the fp32 lr tensor.
    lr = tl.where(lr_on_device != 0, tl.load(lr_tensor), lr.to(tl.float32))
    beta1 = beta1.to(tl.float32)
    beta2 = beta2.to(tl.float32)
    weight_decay = weight_decay.to(tl.float32)
    eps = eps.to(tl.float32)
    if GRAD_SCALE:
        scale = tl.load(grad_scale)
    else:
        scale = 1.0
    decay = lr * weight_decay
    arange = tl.arange(0, BLOCK)
    while c < c_end:
        row = tensors + t * ROW
        first = tl.load(row + FIRST_CHUNK)
        stop = tl.maximum(tl.minimum(tl.load(row + ROW + FIRST_CHUNK), c_end), c)
        n = tl.load(row + NUMEL)
        lo = (c - first) * CHUNK
        hi = tl.minimum((stop - first) * CHUNK, n)
        step = tl.load(tl.load(row + STEP).to(tl.pointer_type(tl.float32), bitcast=True))
        bias_correction1 = 1.0 - _powf(beta1, step)
        bc2_sqrt = tl.math.sqrt_rn(1.0 - _powf(beta2, step))
        step_size = tl.math.div_rn(lr, bias_correction1)
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
            _update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, offs, None, False, scale, maximize, decay, beta1,
                    beta2, weight_decay, eps, step_size, bc2_sqrt, ADAMW, AMSGRAD, GRAD_SCALE)
        if full_end < hi:
            offs = full_end + arange
            _update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, offs, offs < hi, True, scale, maximize, decay,
                    beta1, beta2, weight_decay, eps, step_size, bc2_sqrt, ADAMW, AMSGRAD, GRAD_SCALE)
        c = stop
        t += 1
