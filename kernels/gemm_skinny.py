"""Matrix multiplication for few rows: C[M, N] = A[M, K] @ B[K, N] with M small (decode: a few
tokens through a linear layer), fp32 accumulation.

With M <= 128 a problem has too few output tiles of the TMA kernels' shape (64 or 128 rows) to
fill the SMs, and each tile wastes most of wgmma's 64 rows. mm_skinny_kernel computes the
transposed product instead, C^T = B^T A^T ("swap AB"): the wide dimension N runs along the
tensor core's rows, and the few rows of A become a narrow BLOCK_M (16 or more) along its columns.
The work is split along K so that about one program runs per SM: program (tile, split) computes a
[BLOCK_N, BLOCK_M] tile of C^T over one slice of K, and the last split of a tile to finish sums
all the partials in split order (deterministic), applies the epilogue and stores C.

It takes the TMA kernels' arguments (aot/family_gemm.py): leading strides per operand (the unit
stride is the layout's, A_ROW / B_ROW), the bias row of addmm (EPILOGUE 1: alpha * A @ B + beta *
bias[n]; beta == 0 never reads bias), the fp32 partials and the per-tile arrival counters that
the driver allocates (counters zeroed). Pointer loads: any alignment and any M, N, K; only the
tail of K and the edges of M and N are masked. Grid: (tiles, splits), tile = pid_m * N tiles +
pid_n; every split gets at least one BLOCK_K chunk.
"""

import triton
import triton.language as tl


# Kernels here use triton.language builtins only, not its @jit library (tl.zeros, tl.cdiv): those
# stay compiled-only in the CPU tests' interpreted copy of this module.
@triton.jit
def _slice_product(a_tile, b_tile, k_begin, k_end, mask_m, mask_n, stride_ak, stride_bk, acc, MASK_N: tl.constexpr,
                   INPUT_PRECISION: tl.constexpr, BLOCK_K: tl.constexpr):
    # acc += B^T[n, k] @ A^T[k, m] over k in [k_begin, k_end): whole chunks unmasked along K,
    # then one masked tail chunk. B is read once: its loads evict first, leaving L2 to A.
    offs_k = tl.arange(0, BLOCK_K)
    k_full_end = k_begin + (k_end - k_begin) // BLOCK_K * BLOCK_K
    for k0 in range(k_begin, k_full_end, BLOCK_K):
        k = tl.multiple_of(k0, BLOCK_K) + offs_k
        if MASK_N:
            bt = tl.load(b_tile + (k * stride_bk)[None, :], mask=mask_n[:, None], other=0.0,
                         eviction_policy="evict_first")
        else:
            bt = tl.load(b_tile + (k * stride_bk)[None, :], eviction_policy="evict_first")
        at = tl.load(a_tile + (k * stride_ak)[:, None], mask=mask_m[None, :], other=0.0)
        acc = tl.dot(bt, at, acc, input_precision=INPUT_PRECISION)
    for k0 in range(k_full_end, k_end, BLOCK_K):
        k = k0 + offs_k
        mask_k = k < k_end
        k = k.to(tl.int64)
        bt = tl.load(b_tile + (k * stride_bk)[None, :], mask=mask_n[:, None] & mask_k[None, :], other=0.0)
        at = tl.load(a_tile + (k * stride_ak)[:, None], mask=mask_k[:, None] & mask_m[None, :], other=0.0)
        acc = tl.dot(bt, at, acc, input_precision=INPUT_PRECISION)
    return acc


@triton.jit
def _epilogue(acc, c, bias, offs_m, offs_n, mask_m, mask_n, lead_c, bias_stride, alpha, beta, EPILOGUE: tl.constexpr):
    # acc is a tile of C^T: alpha * acc (+ beta * bias[n]), stored transposed into row-major C.
    out = acc * alpha
    if EPILOGUE == 1:
        # beta == 0 ignores the bias, NaN included, as torch.addmm does.
        if beta != 0:
            bias_row = tl.load(bias + offs_n.to(tl.int64) * bias_stride, mask=mask_n, other=0.0)
            out += beta * bias_row.to(tl.float32)[:, None]
    c_tile = c + (offs_m.to(tl.int64) * lead_c)[None, :] + offs_n[:, None]
    tl.store(c_tile, out.to(c.dtype.element_ty), mask=mask_n[:, None] & mask_m[None, :])


# Sizes and strides stay runtime values under the JIT as well (the tuner runs this kernel through
# it), as they are in the AOT variants.
@triton.jit(do_not_specialize=["M", "N", "K", "lead_a", "lead_b", "lead_c", "bias_stride", "alpha", "beta"])
def mm_skinny_kernel(
    a,
    b,
    c,
    bias,
    partial,
    counters,
    M,
    N,
    K,
    lead_a,
    lead_b,
    lead_c,
    bias_stride,
    alpha,
    beta,
    A_ROW: tl.constexpr,
    B_ROW: tl.constexpr,
    EPILOGUE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    SPLIT_K: tl.constexpr,
):
    # SPLIT_K is 0: the split is grid axis 1, chosen at launch (a launch param the driver reads).
    tile = tl.program_id(0)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    n_tiles = (N + BLOCK_N - 1) // BLOCK_N
    pid_m = tile // n_tiles
    pid_n = tile % n_tiles
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    # A[m, k] and B[k, n] through the layout's strides; the unit one is a constant, which tells
    # Triton the contiguous dimension. The driver runs this kernel only on operands TMA can
    # describe: 16-byte aligned bases (hinted) and leading strides, which the hints below state so
    # that every row loads in 16-byte vectors.
    ALIGN: tl.constexpr = 16 // (a.dtype.element_ty.primitive_bitwidth // 8)
    lead_a = tl.multiple_of(lead_a.to(tl.int64), ALIGN)
    lead_b = tl.multiple_of(lead_b.to(tl.int64), ALIGN)
    lead_c = tl.multiple_of(lead_c, ALIGN)
    if A_ROW:
        a_tile = a + (offs_m.to(tl.int64) * lead_a)[None, :]
        stride_ak = 1
    else:
        a_tile = a + offs_m[None, :]
        stride_ak = lead_a
    if B_ROW:
        b_tile = b + offs_n[:, None]
        stride_bk = lead_b
    else:
        b_tile = b + (offs_n.to(tl.int64) * lead_b)[:, None]
        stride_bk = 1
    # Every split but possibly the last takes the same number of whole chunks.
    chunks = (K + BLOCK_K - 1) // BLOCK_K
    k_split = (chunks + splits - 1) // splits * BLOCK_K
    k_begin = split * k_split
    k_end = tl.minimum(K, k_begin + k_split)
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    # A full tile of N loads B without a mask (a constexpr branch), so that its loads stay vectors.
    if pid_n * BLOCK_N + BLOCK_N <= N:
        acc = _slice_product(a_tile, b_tile, k_begin, k_end, mask_m, mask_n, stride_ak, stride_bk, acc, False,
                             INPUT_PRECISION, BLOCK_K)
    else:
        acc = _slice_product(a_tile, b_tile, k_begin, k_end, mask_m, mask_n, stride_ak, stride_bk, acc, True,
                             INPUT_PRECISION, BLOCK_K)

    if splits == 1:
        _epilogue(acc, c, bias, offs_m, offs_n, mask_m, mask_n, lead_c, bias_stride, alpha, beta, EPILOGUE)
    else:
        # Each split stores its partial tile at partial[tile][split] and counts itself in
        # counters[tile]; the last to arrive sums the partials from L2 (.cg: other SMs wrote
        # them) in split order, so the result does not depend on which split came last.
        TILE: tl.constexpr = BLOCK_N * BLOCK_M
        offs = tl.arange(0, BLOCK_N)[:, None] * BLOCK_M + tl.arange(0, BLOCK_M)[None, :]
        base = partial + tile.to(tl.int64) * splits * TILE
        tl.store(base + split * TILE + offs, acc)
        # Every thread's part of the tile is written before the count says so.
        tl.debug_barrier()
        if tl.atomic_add(counters + tile, 1, sem="acq_rel") == splits - 1:
            total = tl.load(base + offs, cache_modifier=".cg")
            for s in range(1, splits):
                total += tl.load(base + s * TILE + offs, cache_modifier=".cg")
            _epilogue(total, c, bias, offs_m, offs_n, mask_m, mask_n, lead_c, bias_stride, alpha, beta, EPILOGUE)
