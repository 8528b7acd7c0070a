"""Matrix multiplication C[M, N] = A[M, K] @ B[K, N] with fp32 accumulation.

mm_kernel: pointer loads. The variants (aot/family_gemm.py) turn the unit stride of each operand
into the constexpr 1: that is what tells Triton which dimension is contiguous, so loads and
stores can be 16 bytes wide. All other strides stay runtime arguments.

mm_tma_kernel (Hopper): tiles move through TMA descriptors built on the device, which needs
16-byte aligned base pointers and leading strides, and no masks: TMA clips the edges itself.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait


@triton.jit
def _tile_coords(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    # Grouped ordering: GROUP_M consecutive programs share a column of B tiles and a band of A
    # rows, so the tiles they read stay in L2.
    pid = tl.program_id(0)
    # Written out rather than tl.cdiv / min: standard-library jit helpers cannot be called from
    # the interpreted copy the CPU tests run.
    num_pid_m = (M + BLOCK_M - 1) // BLOCK_M
    num_pid_n = (N + BLOCK_N - 1) // BLOCK_N
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (pid % num_pid_in_group) % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m
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
    pid_m, pid_n = _tile_coords(M, N, BLOCK_M, BLOCK_N, GROUP_M)

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
def mm_tma_kernel(
    a,
    b,
    c,
    M,
    N,
    K,
    lead_a,
    lead_b,
    lead_c,
    A_ROW: tl.constexpr,
    B_ROW: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    PDL: tl.constexpr,
):
    # Launched with PDL, this kernel may start before the previous kernel on the stream has
    # finished: wait before the first global access (the descriptors go to global scratch, which
    # like C may reuse memory that kernel still holds).
    if PDL:
        gdc_wait()
    pid_m, pid_n = _tile_coords(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    # A col-major operand is its transpose read row-major; the tile is transposed in registers,
    # which wgmma takes as an operand in shared memory of either major order.
    if A_ROW:
        a_desc = tl.make_tensor_descriptor(a, shape=[M, K], strides=[lead_a, 1], block_shape=[BLOCK_M, BLOCK_K])
    else:
        a_desc = tl.make_tensor_descriptor(a, shape=[K, M], strides=[lead_a, 1], block_shape=[BLOCK_K, BLOCK_M])
    if B_ROW:
        b_desc = tl.make_tensor_descriptor(b, shape=[K, N], strides=[lead_b, 1], block_shape=[BLOCK_K, BLOCK_N])
    else:
        b_desc = tl.make_tensor_descriptor(b, shape=[N, K], strides=[lead_b, 1], block_shape=[BLOCK_N, BLOCK_K])
    c_desc = tl.make_tensor_descriptor(c, shape=[M, N], strides=[lead_c, 1], block_shape=[BLOCK_M, BLOCK_N])

    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    for k in range(0, (K + BLOCK_K - 1) // BLOCK_K):
        off_k = k * BLOCK_K
        if A_ROW:
            a_tile = a_desc.load([off_m, off_k])
        else:
            a_tile = a_desc.load([off_k, off_m]).T
        if B_ROW:
            b_tile = b_desc.load([off_k, off_n])
        else:
            b_tile = b_desc.load([off_n, off_k]).T
        acc = tl.dot(a_tile, b_tile, acc)
    # The next PDL kernel on the stream may launch now; its gdc_wait still waits for this
    # grid to finish and its writes to be visible.
    if PDL:
        gdc_launch_dependents()
    c_desc.store([off_m, off_n], acc.to(c.dtype.element_ty))
