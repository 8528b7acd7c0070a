"""Matrix-vector and vector-vector products: y = alpha * A[M, K] @ x[K] + beta * bias[M], and
dot(a, x) as the same product with one row. fp32 accumulation; memory-bound, so the design is
about streaming A once with 16-byte loads from enough programs to keep HBM busy.

gemv_kernel: each program owns BLOCK_M rows of A (program_id(0)) and one slice of K
(program_id(1)), and accumulates A_tile * x_chunk elementwise in a [BLOCK_M, BLOCK_K] fp32 tile
over the slice, reducing along K once at the end. The variants (aot/family_gemv.py) make the
unit stride of A a constexpr 1, which tells Triton the contiguous dimension, and choose the tile
so that it is wide in that dimension: row-major A (stride_ak = 1) takes a few rows and a long K
chunk, column-major A (stride_am = 1) many columns and a short K chunk, and a dot (M = 1) one row
and a very long chunk. Aligned variants also take x with unit stride and hint the pointers and
the leading stride, so both operands load in 16-byte vectors.

Full blocks load with no mask: whole K chunks first, then a masked tail chunk; a program whose
rows run past M takes a masked copy of the same loop (a constexpr branch), so the masks never
cost the full blocks their vector loads. A is read once: its loads evict first, leaving the
cache to x, which every program reads.

Split-K: with one slice (a grid of one column) the program applies the epilogue and stores y.
With several, each program stores its fp32 partial sums at partial[split, m], and gemv_finish
sums the partials of each row in a fixed order and applies the epilogue: results are
deterministic (no atomics), and the same for every run of a shape.

Epilogue: alpha * acc + beta * bias in fp32, rounded once to y's type; beta == 0 never reads
bias, so NaN there does not propagate, as torch.addmv does. Strides of x, y and bias are
any non-negative value (0 broadcasts); row offsets are 64-bit.
"""

import triton
import triton.language as tl


# Kernels here use triton.language builtins only, not its @jit library (tl.sum, tl.zeros,
# tl.cdiv): those stay compiled-only in the CPU tests' interpreted copy of this module.
@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _products(a_rows, x, mask_m, k_begin, k_end, stride_ak, stride_x, MASK_M: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    # sum over k in [k_begin, k_end) of A[m, k] * x[k] for the block's rows, in fp32.
    offs_k = tl.arange(0, BLOCK_K)
    k_full_end = k_begin + (k_end - k_begin) // BLOCK_K * BLOCK_K
    acc = tl.full([BLOCK_M, BLOCK_K], 0.0, tl.float32)
    for k0 in range(k_begin, k_full_end, BLOCK_K):
        k = k0 + offs_k
        if MASK_M:
            a = tl.load(a_rows + (k * stride_ak)[None, :], mask=mask_m[:, None], other=0.0,
                        eviction_policy="evict_first")
        else:
            a = tl.load(a_rows + (k * stride_ak)[None, :], eviction_policy="evict_first")
        acc += a.to(tl.float32) * tl.load(x + k * stride_x).to(tl.float32)[None, :]
    for k0 in range(k_full_end, k_end, BLOCK_K):
        k = k0 + offs_k
        mask_k = k < k_end
        a = tl.load(a_rows + (k * stride_ak)[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0,
                    eviction_policy="evict_first")
        acc += a.to(tl.float32) * tl.load(x + k * stride_x, mask=mask_k, other=0.0).to(tl.float32)[None, :]
    return tl.reduce(acc, 1, _add)


@triton.jit
def _epilogue(total, offs_m, mask_m, y, bias, stride_y, stride_bias, alpha, beta):
    # beta == 0 ignores bias, NaN included, as torch.addmv does.
    out = total * alpha
    if beta != 0:
        out += beta * tl.load(bias + offs_m.to(tl.int64) * stride_bias, mask=mask_m, other=0.0).to(tl.float32)
    tl.store(y + offs_m.to(tl.int64) * stride_y, out.to(y.dtype.element_ty), mask=mask_m)


@triton.jit
def gemv_kernel(
    a,
    x,
    y,
    bias,
    partial,
    M,
    K,
    stride_am,
    stride_ak,
    stride_x,
    stride_y,
    stride_bias,
    k_split,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    # Sizes and strides fit in int32 (the driver checks); row offsets into A may not. A constexpr
    # unit stride stays a constant after the cast, which keeps the contiguity Triton sees.
    stride_am = tl.cast(stride_am, tl.int64)
    stride_ak = tl.cast(stride_ak, tl.int64)
    stride_x = tl.cast(stride_x, tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    a_rows = a + (offs_m.to(tl.int64) * stride_am)[:, None]
    # k_split is a multiple of BLOCK_K, so every slice starts on a chunk boundary.
    k_begin = split * k_split
    k_end = k_begin + tl.minimum(K - k_begin, k_split)
    if pid_m * BLOCK_M + BLOCK_M <= M:
        total = _products(a_rows, x, mask_m, k_begin, k_end, stride_ak, stride_x, False, BLOCK_M, BLOCK_K)
    else:
        total = _products(a_rows, x, mask_m, k_begin, k_end, stride_ak, stride_x, True, BLOCK_M, BLOCK_K)
    if tl.num_programs(1) == 1:
        _epilogue(total, offs_m, mask_m, y, bias, stride_y, stride_bias, alpha, beta)
    else:
        tl.store(partial + split.to(tl.int64) * M + offs_m, total, mask=mask_m)


@triton.jit
def gemv_finish(
    partial,
    y,
    bias,
    M,
    splits,
    stride_y,
    stride_bias,
    alpha,
    beta,
    BLOCK_S: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    # Sums the fp32 partials [splits, M] of gemv_kernel over the splits, then the epilogue.
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    offs_s = tl.arange(0, BLOCK_S)
    acc = tl.full([BLOCK_S, BLOCK_M], 0.0, tl.float32)
    for s0 in range(0, splits, BLOCK_S):
        s = s0 + offs_s
        mask = (s < splits)[:, None] & mask_m[None, :]
        acc += tl.load(partial + (s.to(tl.int64) * M)[:, None] + offs_m[None, :], mask=mask, other=0.0)
    _epilogue(tl.reduce(acc, 0, _add), offs_m, mask_m, y, bias, stride_y, stride_bias, alpha, beta)
