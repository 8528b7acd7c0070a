"""Hopper (sm_90a) matrix multiplication in Gluon: C[M, N] = A[M, K] @ B[K, N] (fp16 / bf16,
fp32 accumulation), optionally alpha * (A @ B) + beta * bias[n].

Written in Gluon (Triton's lower-level dialect) rather than triton.language because what decides
the last 5-10% against cuBLAS is the schedule, and Gluon states it explicitly. Without warp
specialisation every buffer hand-over needs a barrier of the whole program (all warpgroups must
be done reading a buffer before TMA refills it): measured on an H100, such a kernel ran at 0.70x
cuBLAS where triton.language's pipeliner reached 0.92x.

mm_wgmma_kernel is persistent and warp-specialised, the structure of cuBLAS' Hopper kernels:
- a load partition (one warp) walks the program's tiles and their k-steps and, as soon as a
  buffer is released, fills it with TMA and arms its "ready" barrier;
- the default partition (num_warps warps: BLOCK_M / 64 warpgroups) waits for a buffer, issues
  an asynchronous wgmma, waits until only that one runs, and releases the previous buffer on its
  "empty" barrier; at the end of a tile it writes the tile to shared memory and stores it with
  TMA, a store it waits for only before writing that buffer again. Meanwhile the load partition
  is already fetching the next tile's operands.
Programs walk output tiles in grouped order (tile = start, start + programs, ...).

Same arguments as kernels/gemm.py:mm_tma_kernel (partial and counters unused: SPLIT_K is always
1 here), so both serve one grid and one driver. Descriptors are built on the device, over the same
memory for either operand layout: a col-major operand is its transpose read row-major, and wgmma
reads the shared tile transposed. TMA clips the edges: any M, N and K.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)


@gluon.constexpr_function
def _swizzled(block_shape, dtype):
    # The widest swizzle the tile's contiguous rows allow: fewest TMA messages, no bank conflicts
    # for wgmma's reads.
    row_bytes = block_shape[-1] * dtype.primitive_bitwidth // 8
    swizzle = 0
    for width in (128, 64, 32):
        if row_bytes % width == 0:
            swizzle = width
            break
    return gl.NVMMASharedLayout(swizzle_byte_width=swizzle, element_bitwidth=dtype.primitive_bitwidth, rank=2)


@gluon.constexpr_function
def _accumulator_layout(BLOCK_M, BLOCK_N, num_warps):
    # wgmma's register layout: warpgroups of 4 warps stacked along M (64 rows each) while rows
    # remain, then side by side along N; the instruction as wide in N as each warp's share allows.
    warps_m, warps_n = 4, 1
    while warps_m * warps_n < num_warps:
        if BLOCK_M > 16 * warps_m:
            warps_m *= 2
        else:
            warps_n *= 2
    n_share = max(BLOCK_N // warps_n, 8)
    instr_n = 256
    while instr_n > n_share or BLOCK_N % instr_n != 0:
        instr_n -= 8
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[warps_m, warps_n], instr_shape=[16, instr_n, 16])


@gluon.jit
def _tile_of(tile, num_pid_m, num_pid_n, GROUP_M: gl.constexpr):
    # Grouped order: GROUP_M consecutive tiles share a column of B tiles and a band of A rows.
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (tile // num_pid_in_group) * GROUP_M
    group_size_m = gl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile % num_pid_in_group) % group_size_m
    pid_n = (tile % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@gluon.jit
def _load_partition(a_desc, b_desc, a_bufs, b_bufs, ready, empty, num_pid_m, num_pid_n, k_tiles,
                    A_ROW: gl.constexpr, B_ROW: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                    BLOCK_K: gl.constexpr, GROUP_M: gl.constexpr, NUM_BUFFERS: gl.constexpr):
    i = 0
    for tile in range(gl.program_id(0), num_pid_m * num_pid_n, gl.num_programs(0)):
        pid_m, pid_n = _tile_of(tile, num_pid_m, num_pid_n, GROUP_M)
        for kk in range(k_tiles):
            slot = i % NUM_BUFFERS
            # A barrier starts in phase 0 with phase "-1" complete: the first round of waits passes.
            mbarrier.wait(empty.index(slot), ((i // NUM_BUFFERS) & 1) ^ 1)
            bar = ready.index(slot)
            mbarrier.expect(bar, a_desc.block_type.nbytes + b_desc.block_type.nbytes)
            if A_ROW:
                tma.async_copy_global_to_shared(a_desc, [pid_m * BLOCK_M, kk * BLOCK_K], bar, a_bufs.index(slot))
            else:
                tma.async_copy_global_to_shared(a_desc, [kk * BLOCK_K, pid_m * BLOCK_M], bar, a_bufs.index(slot))
            if B_ROW:
                tma.async_copy_global_to_shared(b_desc, [kk * BLOCK_K, pid_n * BLOCK_N], bar, b_bufs.index(slot))
            else:
                tma.async_copy_global_to_shared(b_desc, [pid_n * BLOCK_N, kk * BLOCK_K], bar, b_bufs.index(slot))
            i += 1


@gluon.jit
def _mma_partition(c_desc, a_bufs, b_bufs, c_buf, ready, empty, bias, N, bias_stride, alpha, beta, num_pid_m,
                   num_pid_n, k_tiles, A_ROW: gl.constexpr, B_ROW: gl.constexpr, EPILOGUE: gl.constexpr,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, GROUP_M: gl.constexpr,
                   NUM_BUFFERS: gl.constexpr, acc_layout: gl.constexpr):
    dtype: gl.constexpr = c_desc.dtype
    acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, acc_layout)
    i = 0
    # Nested loops, not one flat loop with the epilogue under a condition: an accumulator that
    # crosses a branch join gets a full wgmma wait at every iteration (measured: 0.70x cuBLAS).
    for tile in range(gl.program_id(0), num_pid_m * num_pid_n, gl.num_programs(0)):
        for kk in range(k_tiles):
            slot = i % NUM_BUFFERS
            mbarrier.wait(ready.index(slot), (i // NUM_BUFFERS) & 1)
            if A_ROW:
                a_op = a_bufs.index(slot)
            else:
                a_op = a_bufs.index(slot).permute((1, 0))
            if B_ROW:
                b_op = b_bufs.index(slot)
            else:
                b_op = b_bufs.index(slot).permute((1, 0))
            acc = warpgroup_mma(a_op, b_op, acc, use_acc=kk != 0, is_async=True)
            # Only this MMA may still run: the previous one (same tile) is done with its buffer.
            acc = warpgroup_mma_wait(1, deps=(acc, ))
            mbarrier.arrive(empty.index((i + NUM_BUFFERS - 1) % NUM_BUFFERS), pred=kk != 0)
            i += 1
        acc = warpgroup_mma_wait(0, deps=(acc, ))
        mbarrier.arrive(empty.index((i + NUM_BUFFERS - 1) % NUM_BUFFERS))
        pid_m, pid_n = _tile_of(tile, num_pid_m, num_pid_n, GROUP_M)
        out = acc
        if EPILOGUE == 1:
            # alpha * acc + beta * bias[n]; beta == 0 ignores bias, NaN included, as torch.addmm does.
            out = out * alpha
            if beta != 0:
                offs_n = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, acc_layout))
                row = gl.load(bias + offs_n.to(gl.int64) * bias_stride, mask=offs_n < N, other=0.0)
                out = out + beta * gl.expand_dims(row.to(gl.float32), 0)
        # The previous tile's store has had a whole tile of MMAs to drain.
        tma.store_wait(pendings=0)
        c_buf.store(out.to(dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(c_desc, [pid_m * BLOCK_M, pid_n * BLOCK_N], c_buf)
    tma.store_wait(pendings=0)


@gluon.jit
def mm_wgmma_kernel(
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
    A_ROW: gl.constexpr,
    B_ROW: gl.constexpr,
    EPILOGUE: gl.constexpr,
    BLOCK_M: gl.constexpr,
    BLOCK_N: gl.constexpr,
    BLOCK_K: gl.constexpr,
    GROUP_M: gl.constexpr,
    NUM_BUFFERS: gl.constexpr,
    SPLIT_K: gl.constexpr,
):
    gl.static_assert(NUM_BUFFERS >= 2)
    gl.static_assert(SPLIT_K == 1, "no split-K: the table gives those problems to mm_tma_kernel")
    dtype: gl.constexpr = c.dtype.element_ty
    acc_layout: gl.constexpr = _accumulator_layout(BLOCK_M, BLOCK_N, gl.num_warps())

    if A_ROW:
        a_block: gl.constexpr = [BLOCK_M, BLOCK_K]
        a_desc = tma.make_tensor_descriptor(a, shape=[M, K], strides=[lead_a, 1], block_shape=a_block,
                                            layout=_swizzled(a_block, dtype))
    else:
        a_block: gl.constexpr = [BLOCK_K, BLOCK_M]
        a_desc = tma.make_tensor_descriptor(a, shape=[K, M], strides=[lead_a, 1], block_shape=a_block,
                                            layout=_swizzled(a_block, dtype))
    if B_ROW:
        b_block: gl.constexpr = [BLOCK_K, BLOCK_N]
        b_desc = tma.make_tensor_descriptor(b, shape=[K, N], strides=[lead_b, 1], block_shape=b_block,
                                            layout=_swizzled(b_block, dtype))
    else:
        b_block: gl.constexpr = [BLOCK_N, BLOCK_K]
        b_desc = tma.make_tensor_descriptor(b, shape=[N, K], strides=[lead_b, 1], block_shape=b_block,
                                            layout=_swizzled(b_block, dtype))
    c_block: gl.constexpr = [BLOCK_M, BLOCK_N]
    c_desc = tma.make_tensor_descriptor(c, shape=[M, N], strides=[lead_c, 1], block_shape=c_block,
                                        layout=_swizzled(c_block, dtype))

    a_bufs = gl.allocate_shared_memory(dtype, [NUM_BUFFERS, a_block[0], a_block[1]], _swizzled(a_block, dtype))
    b_bufs = gl.allocate_shared_memory(dtype, [NUM_BUFFERS, b_block[0], b_block[1]], _swizzled(b_block, dtype))
    c_buf = gl.allocate_shared_memory(dtype, c_block, _swizzled(c_block, dtype))
    ready = gl.allocate_shared_memory(gl.int64, [NUM_BUFFERS, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NUM_BUFFERS, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(NUM_BUFFERS):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=1)

    num_pid_m = (M + BLOCK_M - 1) // BLOCK_M
    num_pid_n = (N + BLOCK_N - 1) // BLOCK_N
    k_tiles = (K + BLOCK_K - 1) // BLOCK_K

    gl.warp_specialize([
        (_mma_partition, (c_desc, a_bufs, b_bufs, c_buf, ready, empty, bias, N, bias_stride, alpha, beta, num_pid_m,
                          num_pid_n, k_tiles, A_ROW, B_ROW, EPILOGUE, BLOCK_M, BLOCK_N, GROUP_M, NUM_BUFFERS,
                          acc_layout)),
        (_load_partition, (a_desc, b_desc, a_bufs, b_bufs, ready, empty, num_pid_m, num_pid_n, k_tiles, A_ROW,
                           B_ROW, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, NUM_BUFFERS)),
    ], [1], [40])
