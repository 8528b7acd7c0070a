"""Matrix multiplication C[M, N] = A[M, K] @ B[K, N] with fp32 accumulation.

mm_kernel: pointer loads. The variants (aot/family_gemm.py) turn the unit stride of each operand
into the constexpr 1: that is what tells Triton which dimension is contiguous, so loads and
stores can be 16 bytes wide. All other strides stay runtime arguments.

mm_tma_kernel (Hopper, Blackwell): persistent. One program per resident slot walks the output
tiles in grouped order; tiles move through TMA descriptors built once per program on the
device, which needs 16-byte aligned base pointers and leading strides (in bytes), and no masks:
TMA clips the edges itself, so any M, N and K run at full speed. With SPLIT_K > 1 a work item is
a slice of K for one tile, and the last slice to finish sums the partials. The epilogue optionally
computes alpha * (A @ B) + beta * bias with a bias row (addmm as nn.Linear calls it) and stores the
tile in SUBTILE column slices, so that stores overlap and shared memory goes to the main loop's
stages.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait


@triton.jit
def _tile_of(tile, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    # Output tile number -> (pid_m, pid_n) in grouped order: GROUP_M consecutive tiles share a
    # column of B tiles and a band of A rows, so the tiles they read stay in L2. (Written out
    # rather than with min: standard-library jit helpers cannot be called from the interpreted
    # copy the CPU tests run.)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = tile // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile % num_pid_in_group) % group_size_m
    pid_n = (tile % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def mm_kernel(
    a,
    b,
    c,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid_m, pid_n = _tile_of(tl.program_id(0), (M + BLOCK_M - 1) // BLOCK_M, (N + BLOCK_N - 1) // BLOCK_N, GROUP_M)

    # M, N, K and the strides fit in int32 (the driver checks), but offsets into a tensor may
    # not: every stride is widened so that index * stride is computed in int64. A constexpr 1
    # stays a constant after the cast, which keeps the contiguity Triton sees.
    stride_am = tl.cast(stride_am, tl.int64)
    stride_ak = tl.cast(stride_ak, tl.int64)
    stride_bk = tl.cast(stride_bk, tl.int64)
    stride_bn = tl.cast(stride_bn, tl.int64)
    stride_cm = tl.cast(stride_cm, tl.int64)
    stride_cn = tl.cast(stride_cn, tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    a_ptrs = a + (offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak)
    b_ptrs = b + (offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn)

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    for k in range(0, (K + BLOCK_K - 1) // BLOCK_K):
        k_left = K - k * BLOCK_K
        a_tile = tl.load(a_ptrs, mask=mask_m[:, None] & (offs_k[None, :] < k_left), other=0.0)
        b_tile = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & mask_n[None, :], other=0.0)
        acc = tl.dot(a_tile, b_tile, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c_ptrs = c + (offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn)
    tl.store(c_ptrs, acc.to(c.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _epilogue(acc, off_n, bias, N, bias_stride, alpha, beta, EPILOGUE: tl.constexpr, SLICE_N: tl.constexpr):
    # EPILOGUE 1 (addmm with a bias row broadcast over M): alpha * acc + beta * bias[n] in fp32.
    # beta == 0 ignores bias, NaN included, as torch.addmm does.
    if EPILOGUE == 1:
        acc = acc * alpha
        if beta != 0:
            offs_n = off_n + tl.arange(0, SLICE_N)
            row = tl.load(bias + offs_n.to(tl.int64) * bias_stride, mask=offs_n < N, other=0.0).to(tl.float32)
            acc += beta * row[None, :]
    return acc


@triton.jit
def _split_k_sum(acc, partial, counters, tile, split, SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr):
    # Each split stores its fp32 partial tile into partial[tile][split], then counts itself in
    # counters[tile] (zeroed by the driver before the launch). The split that arrives last sums
    # all partials, from L2 (.cg: another SM wrote them), and is the one that stores C. No
    # program waits on another, so any grid and any order of programs completes.
    TILE: tl.constexpr = BLOCK_M * BLOCK_N
    offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    base = partial + tile.to(tl.int64) * (SPLIT_K * TILE)
    tl.store(base + split * TILE + offs, acc)
    # Every thread's part of the tile is written before the count says so.
    tl.debug_barrier()
    arrived = tl.atomic_add(counters + tile, 1, sem="acq_rel")
    last = arrived == SPLIT_K - 1
    total = acc
    if last:
        total = tl.load(base + offs, cache_modifier=".cg")
        for s in tl.static_range(1, SPLIT_K):
            total += tl.load(base + s * TILE + offs, cache_modifier=".cg")
    return total, last


# Sizes and strides stay runtime values under the JIT as well (the tuner runs this kernel through
# it): the AOT variants take them as plain i32 arguments.
@triton.jit(do_not_specialize=["M", "N", "K", "lead_a", "lead_b", "lead_c", "bias_stride", "alpha", "beta"])
def mm_tma_kernel(
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
    GROUP_M: tl.constexpr,
    SUBTILE: tl.constexpr,
    SPLIT_K: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    PDL: tl.constexpr,
):
    # SPLIT_K > 1: each work item is one of SPLIT_K slices of K for one tile (_split_k_sum adds
    # them up); for problems with too few tiles to fill the SMs (decode, narrow layers).
    tl.static_assert(SPLIT_K == 1 or SUBTILE == 1)
    # Launched with PDL, this kernel may start before the previous kernel on the stream has
    # finished: wait before the first global access (the descriptors go to global scratch, which
    # like C may reuse memory that kernel still holds).
    if PDL:
        gdc_wait()
    # A col-major operand is its transpose read row-major; the tile is transposed as an operand
    # in shared memory, which wgmma and tcgen05 take in either major order.
    if A_ROW:
        a_desc = tl.make_tensor_descriptor(a, shape=[M, K], strides=[lead_a, 1], block_shape=[BLOCK_M, BLOCK_K])
    else:
        a_desc = tl.make_tensor_descriptor(a, shape=[K, M], strides=[lead_a, 1], block_shape=[BLOCK_K, BLOCK_M])
    if B_ROW:
        b_desc = tl.make_tensor_descriptor(b, shape=[K, N], strides=[lead_b, 1], block_shape=[BLOCK_K, BLOCK_N])
    else:
        b_desc = tl.make_tensor_descriptor(b, shape=[N, K], strides=[lead_b, 1], block_shape=[BLOCK_N, BLOCK_K])
    SLICE_N: tl.constexpr = BLOCK_N // SUBTILE
    c_desc = tl.make_tensor_descriptor(c, shape=[M, N], strides=[lead_c, 1], block_shape=[BLOCK_M, SLICE_N])

    num_pid_m = (M + BLOCK_M - 1) // BLOCK_M
    num_pid_n = (N + BLOCK_N - 1) // BLOCK_N
    k_tiles = (K + BLOCK_K - 1) // BLOCK_K
    k_per_split = (k_tiles + SPLIT_K - 1) // SPLIT_K
    num_items = num_pid_m * num_pid_n * SPLIT_K
    start = tl.program_id(0)
    step = tl.num_programs(0)
    # The epilogue recomputes its item from its own counter, so that the flattened loop's
    # prologue (the next item's loads) and this item's epilogue share no value.
    item_c = start - step
    for item in tl.range(start, num_items, step, flatten=True, warp_specialize=WARP_SPECIALIZE):
        pid_m, pid_n = _tile_of(item // SPLIT_K, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        k_first = (item % SPLIT_K) * k_per_split
        k_last = tl.minimum(k_first + k_per_split, k_tiles)
        acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
        for ki in range(k_first, k_last):
            off_k = ki * BLOCK_K
            if A_ROW:
                a_tile = a_desc.load([off_m, off_k])
            else:
                a_tile = a_desc.load([off_k, off_m]).T
            if B_ROW:
                b_tile = b_desc.load([off_k, off_n])
            else:
                b_tile = b_desc.load([off_n, off_k]).T
            acc = tl.dot(a_tile, b_tile, acc, input_precision=INPUT_PRECISION)

        item_c += step
        tile_c = item_c // SPLIT_K
        pid_m, pid_n = _tile_of(tile_c, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        if SPLIT_K > 1:
            total, last = _split_k_sum(acc, partial, counters, tile_c, item_c % SPLIT_K, SPLIT_K, BLOCK_M, BLOCK_N)
            if last:
                out = _epilogue(total, off_n, bias, N, bias_stride, alpha, beta, EPILOGUE, BLOCK_N)
                c_desc.store([off_m, off_n], out.to(c.dtype.element_ty))
        elif SUBTILE == 1:
            out = _epilogue(acc, off_n, bias, N, bias_stride, alpha, beta, EPILOGUE, BLOCK_N)
            c_desc.store([off_m, off_n], out.to(c.dtype.element_ty))
        elif SUBTILE == 2:
            halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, SLICE_N)), (0, 2, 1))
            acc0, acc1 = tl.split(halves)
            out0 = _epilogue(acc0, off_n, bias, N, bias_stride, alpha, beta, EPILOGUE, SLICE_N)
            c_desc.store([off_m, off_n], out0.to(c.dtype.element_ty))
            out1 = _epilogue(acc1, off_n + SLICE_N, bias, N, bias_stride, alpha, beta, EPILOGUE, SLICE_N)
            c_desc.store([off_m, off_n + SLICE_N], out1.to(c.dtype.element_ty))
        else:
            # Four slices: column n = i * (BLOCK_N / 2) + j * SLICE_N + r, split on j, then on i.
            quarters = tl.permute(tl.reshape(acc, (BLOCK_M, 2, 2, SLICE_N)), (0, 3, 1, 2))
            acc_j0, acc_j1 = tl.split(quarters)
            acc00, acc10 = tl.split(acc_j0)
            acc01, acc11 = tl.split(acc_j1)
            out = _epilogue(acc00, off_n, bias, N, bias_stride, alpha, beta, EPILOGUE, SLICE_N)
            c_desc.store([off_m, off_n], out.to(c.dtype.element_ty))
            out = _epilogue(acc01, off_n + SLICE_N, bias, N, bias_stride, alpha, beta, EPILOGUE, SLICE_N)
            c_desc.store([off_m, off_n + SLICE_N], out.to(c.dtype.element_ty))
            out = _epilogue(acc10, off_n + 2 * SLICE_N, bias, N, bias_stride, alpha, beta, EPILOGUE, SLICE_N)
            c_desc.store([off_m, off_n + 2 * SLICE_N], out.to(c.dtype.element_ty))
            out = _epilogue(acc11, off_n + 3 * SLICE_N, bias, N, bias_stride, alpha, beta, EPILOGUE, SLICE_N)
            c_desc.store([off_m, off_n + 3 * SLICE_N], out.to(c.dtype.element_ty))
    # The next PDL kernel on the stream may launch now; its gdc_wait still waits for this
    # grid to finish and its writes to be visible.
    if PDL:
        gdc_launch_dependents()
