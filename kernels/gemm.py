"""Matrix multiplication C[M, N] = A[M, K] @ B[K, N] with fp32 accumulation, and its batched form
C[b] = A[b] @ B[b] (bmm, baddbmm) chosen by the constexpr BATCHED: with BATCHED False the batch
arguments are constexprs the code never reads, so the mm variants compile to the kernels they were.

mm_kernel: pointer loads. The variants (aot/family_gemm.py) turn the unit stride of each operand
into the constexpr 1: that is what tells Triton which dimension is contiguous, so loads and
stores can be 16 bytes wide. All other strides stay runtime arguments. Batched, program_id(1) is
the batch and each operand moves by its batch stride (int64; 0 for an expanded operand).

mm_tma_kernel (Hopper, Blackwell): persistent. One program per resident slot walks the output
tiles in grouped order; tiles move through TMA descriptors built once per program on the
device, which needs 16-byte aligned base pointers and leading strides (in bytes), and no masks:
TMA clips the edges itself, so any M, N and K run at full speed. With SPLIT_K > 1 a work item is
a slice of K for one tile, and the last slice to finish sums the partials. The epilogue optionally
computes alpha * (A @ B) + beta * bias with a bias row (addmm as nn.Linear calls it) or, batched,
with a [batch, M, N] tensor read through its strides (baddbmm's self, any broadcast), and stores
the tile in SUBTILE column slices, so that stores overlap and shared memory goes to the main loop's
stages. Batched, the descriptors are rank 3 ([batch, rows, cols], block [1, rows, cols], reshaped
to 2-D after a load and before a store) and a work item is (batch, tile, K slice). An operand
expanded over the batch (batch stride 0) gets a descriptor of batch extent 1 read at batch 0, so
no descriptor ever has a stride of 0.
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
    stride_batch_a,
    stride_batch_b,
    stride_batch_c,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BATCHED: tl.constexpr,
):
    if BATCHED:
        # One batch per program_id(1); its offsets can pass 2**31 elements.
        batch = tl.program_id(1).to(tl.int64)
        a += batch * stride_batch_a
        b += batch * stride_batch_b
        c += batch * stride_batch_c
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
def _epilogue(acc, off_m, off_n, batch_id, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch, alpha, beta,
              EPILOGUE: tl.constexpr, BLOCK_M: tl.constexpr, SLICE_N: tl.constexpr):
    # EPILOGUE 1 (addmm with a bias row broadcast over M): alpha * acc + beta * bias[n] in fp32.
    # EPILOGUE 2 (baddbmm): alpha * acc + beta * bias[batch, m, n] read through its strides (0 where
    # self broadcasts): a pointer load, masked at the edges that TMA clips for the operands.
    # beta == 0 ignores bias, NaN included, as torch.addmm and torch.baddbmm do.
    if EPILOGUE == 1:
        acc = acc * alpha
        if beta != 0:
            offs_n = off_n + tl.arange(0, SLICE_N)
            row = tl.load(bias + offs_n.to(tl.int64) * bias_stride, mask=offs_n < N, other=0.0).to(tl.float32)
            acc += beta * row[None, :]
    elif EPILOGUE == 2:
        acc = acc * alpha
        if beta != 0:
            offs_m = off_m + tl.arange(0, BLOCK_M)
            offs_n = off_n + tl.arange(0, SLICE_N)
            ptrs = (bias + batch_id.to(tl.int64) * bias_stride_batch + offs_m.to(tl.int64)[:, None] * bias_stride_m
                    + offs_n.to(tl.int64)[None, :] * bias_stride)
            mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
            acc += beta * tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    return acc


@triton.jit
def _store(c_desc, acc, batch_id, off_m, off_n, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch, alpha, beta,
           EPILOGUE: tl.constexpr, BATCHED: tl.constexpr, BLOCK_M: tl.constexpr, SLICE_N: tl.constexpr):
    # One column slice of an output tile: the epilogue, then the TMA store.
    out = _epilogue(acc, off_m, off_n, batch_id, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch, alpha, beta,
                    EPILOGUE, BLOCK_M, SLICE_N).to(c_desc.dtype)
    if BATCHED:
        c_desc.store([batch_id, off_m, off_n], out.reshape(1, BLOCK_M, SLICE_N))
    else:
        c_desc.store([off_m, off_n], out)


@triton.jit
def _store_tile(c_desc, acc, batch_id, off_m, off_n, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch, alpha,
                beta, EPILOGUE: tl.constexpr, BATCHED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                SLICES: tl.constexpr):
    # An output tile in SLICES column slices (1, 2, 4 or 8), each through the epilogue and stored.
    SLICE_N: tl.constexpr = BLOCK_N // SLICES
    if SLICES == 1:
        _store(c_desc, acc, batch_id, off_m, off_n, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch, alpha,
               beta, EPILOGUE, BATCHED, BLOCK_M, BLOCK_N)
    elif SLICES == 2:
        halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, SLICE_N)), (0, 2, 1))
        acc0, acc1 = tl.split(halves)
        _store(c_desc, acc0, batch_id, off_m, off_n, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch, alpha,
               beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)
        _store(c_desc, acc1, batch_id, off_m, off_n + SLICE_N, bias, M, N, bias_stride, bias_stride_m,
               bias_stride_batch, alpha, beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)
    elif SLICES == 4:
        # Four slices: column n = i * (BLOCK_N / 2) + j * SLICE_N + r, split on j, then on i.
        quarters = tl.permute(tl.reshape(acc, (BLOCK_M, 2, 2, SLICE_N)), (0, 3, 1, 2))
        acc_j0, acc_j1 = tl.split(quarters)
        acc00, acc10 = tl.split(acc_j0)
        acc01, acc11 = tl.split(acc_j1)
        _store(c_desc, acc00, batch_id, off_m, off_n, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch, alpha,
               beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)
        _store(c_desc, acc01, batch_id, off_m, off_n + SLICE_N, bias, M, N, bias_stride, bias_stride_m,
               bias_stride_batch, alpha, beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)
        _store(c_desc, acc10, batch_id, off_m, off_n + 2 * SLICE_N, bias, M, N, bias_stride, bias_stride_m,
               bias_stride_batch, alpha, beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)
        _store(c_desc, acc11, batch_id, off_m, off_n + 3 * SLICE_N, bias, M, N, bias_stride, bias_stride_m,
               bias_stride_batch, alpha, beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)
    else:
        # Eight slices: column n = (4 * i + 2 * j + k) * SLICE_N + r, split on k, then j, then i.
        tl.static_assert(SLICES == 8)
        eighths = tl.permute(tl.reshape(acc, (BLOCK_M, 2, 2, 2, SLICE_N)), (0, 4, 1, 2, 3))
        acc_k0, acc_k1 = tl.split(eighths)
        for k in tl.static_range(2):
            acc_k = acc_k0 if k == 0 else acc_k1
            acc_j0, acc_j1 = tl.split(acc_k)
            for j in tl.static_range(2):
                acc_i0, acc_i1 = tl.split(acc_j0 if j == 0 else acc_j1)
                _store(c_desc, acc_i0, batch_id, off_m, off_n + (2 * j + k) * SLICE_N, bias, M, N, bias_stride,
                       bias_stride_m, bias_stride_batch, alpha, beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)
                _store(c_desc, acc_i1, batch_id, off_m, off_n + (4 + 2 * j + k) * SLICE_N, bias, M, N, bias_stride,
                       bias_stride_m, bias_stride_batch, alpha, beta, EPILOGUE, BATCHED, BLOCK_M, SLICE_N)


@triton.jit
def _descriptor(base, rows, cols, lead, batch_extent, batch_stride, BLOCK_ROWS: tl.constexpr,
                BLOCK_COLS: tl.constexpr, BATCHED: tl.constexpr):
    # A row-major [rows, cols] matrix (a col-major operand is described as its transpose), or
    # [batch_extent, rows, cols] matrices batch_stride apart.
    if BATCHED:
        return tl.make_tensor_descriptor(base, shape=[batch_extent, rows, cols], strides=[batch_stride, lead, 1],
                                         block_shape=[1, BLOCK_ROWS, BLOCK_COLS])
    else:
        return tl.make_tensor_descriptor(base, shape=[rows, cols], strides=[lead, 1],
                                         block_shape=[BLOCK_ROWS, BLOCK_COLS])


@triton.jit
def _load(desc, batch_id, off_rows, off_cols, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
          BATCHED: tl.constexpr):
    if BATCHED:
        return desc.load([batch_id, off_rows, off_cols]).reshape(BLOCK_ROWS, BLOCK_COLS)
    else:
        return desc.load([off_rows, off_cols])


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
# it): the AOT variants take them as plain integer arguments (the mm variants take the batch ones
# as constexprs).
@triton.jit(do_not_specialize=["M", "N", "K", "lead_a", "lead_b", "lead_c", "bias_stride", "alpha", "beta", "batch",
                               "batch_a", "batch_b", "stride_batch_a", "stride_batch_b", "stride_batch_c",
                               "bias_stride_m", "bias_stride_batch"])
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
    batch,
    batch_a,
    batch_b,
    stride_batch_a,
    stride_batch_b,
    stride_batch_c,
    bias_stride_m,
    bias_stride_batch,
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
    BATCHED: tl.constexpr,
):
    # SPLIT_K > 1: each work item is one of SPLIT_K slices of K for one tile (_split_k_sum adds
    # them up); for problems with too few tiles to fill the SMs (decode, narrow layers).
    # Launched with PDL, this kernel may start before the previous kernel on the stream has
    # finished: wait before the first global access (the descriptors go to global scratch, which
    # like C may reuse memory that kernel still holds).
    if PDL:
        gdc_wait()
    # A col-major operand is its transpose read row-major; the tile is transposed as an operand
    # in shared memory, which wgmma and tcgen05 take in either major order. batch_a and batch_b
    # are the operands' batch extents: batch, or 1 for an operand expanded over the batch.
    if A_ROW:
        a_desc = _descriptor(a, M, K, lead_a, batch_a, stride_batch_a, BLOCK_M, BLOCK_K, BATCHED)
    else:
        a_desc = _descriptor(a, K, M, lead_a, batch_a, stride_batch_a, BLOCK_K, BLOCK_M, BATCHED)
    if B_ROW:
        b_desc = _descriptor(b, K, N, lead_b, batch_b, stride_batch_b, BLOCK_K, BLOCK_N, BATCHED)
    else:
        b_desc = _descriptor(b, N, K, lead_b, batch_b, stride_batch_b, BLOCK_N, BLOCK_K, BATCHED)
    c_desc = _descriptor(c, M, N, lead_c, batch, stride_batch_c, BLOCK_M, BLOCK_N // SUBTILE, BATCHED)

    num_pid_m = (M + BLOCK_M - 1) // BLOCK_M
    num_pid_n = (N + BLOCK_N - 1) // BLOCK_N
    k_tiles = (K + BLOCK_K - 1) // BLOCK_K
    k_per_split = (k_tiles + SPLIT_K - 1) // SPLIT_K
    num_items = num_pid_m * num_pid_n * SPLIT_K
    if BATCHED:
        # The tiles of one batch are consecutive work items: grouped order within a batch.
        num_items *= batch
    start = tl.program_id(0)
    step = tl.num_programs(0)
    # The epilogue recomputes its item from its own counter, so that the flattened loop's
    # prologue (the next item's loads) and this item's epilogue share no value.
    item_c = start - step
    for item in tl.range(start, num_items, step, flatten=True, warp_specialize=WARP_SPECIALIZE):
        tile = item // SPLIT_K
        batch_id = 0
        if BATCHED:
            batch_id = tile // (num_pid_m * num_pid_n)
            tile = tile % (num_pid_m * num_pid_n)
        pid_m, pid_n = _tile_of(tile, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        batch_id_a = tl.minimum(batch_id, batch_a - 1) if BATCHED else 0
        batch_id_b = tl.minimum(batch_id, batch_b - 1) if BATCHED else 0
        k_first = (item % SPLIT_K) * k_per_split
        k_last = tl.minimum(k_first + k_per_split, k_tiles)
        acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
        for ki in range(k_first, k_last):
            off_k = ki * BLOCK_K
            if A_ROW:
                a_tile = _load(a_desc, batch_id_a, off_m, off_k, BLOCK_M, BLOCK_K, BATCHED)
            else:
                a_tile = _load(a_desc, batch_id_a, off_k, off_m, BLOCK_K, BLOCK_M, BATCHED).T
            if B_ROW:
                b_tile = _load(b_desc, batch_id_b, off_k, off_n, BLOCK_K, BLOCK_N, BATCHED)
            else:
                b_tile = _load(b_desc, batch_id_b, off_n, off_k, BLOCK_N, BLOCK_K, BATCHED).T
            acc = tl.dot(a_tile, b_tile, acc, input_precision=INPUT_PRECISION)

        item_c += step
        tile_c = item_c // SPLIT_K
        tile_in_batch = tile_c
        batch_c = 0
        if BATCHED:
            batch_c = tile_c // (num_pid_m * num_pid_n)
            tile_in_batch = tile_c % (num_pid_m * num_pid_n)
        pid_m, pid_n = _tile_of(tile_in_batch, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        if SPLIT_K > 1:
            total, last = _split_k_sum(acc, partial, counters, tile_c, item_c % SPLIT_K, SPLIT_K, BLOCK_M, BLOCK_N)
            if last:
                _store_tile(c_desc, total, batch_c, off_m, off_n, bias, M, N, bias_stride, bias_stride_m,
                            bias_stride_batch, alpha, beta, EPILOGUE, BATCHED, BLOCK_M, BLOCK_N, SUBTILE)
        else:
            _store_tile(c_desc, acc, batch_c, off_m, off_n, bias, M, N, bias_stride, bias_stride_m, bias_stride_batch,
                        alpha, beta, EPILOGUE, BATCHED, BLOCK_M, BLOCK_N, SUBTILE)
    # The next PDL kernel on the stream may launch now; its gdc_wait still waits for this
    # grid to finish and its writes to be visible.
    if PDL:
        gdc_launch_dependents()
