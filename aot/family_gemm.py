"""The gemm family: mm (C = A @ B, one 2-D matrix product, fp32 accumulation).

Variants of kernels/gemm.py:mm_kernel, per point of the grid "mm":
  dtype      fp32, fp16, bf16 (output dtype = input dtype)
  precision  ieee, tf32: the tl.dot input precision; tf32 exists for fp32 only (the C++ driver
             picks it when at::globalContext().allowTF32CuBLAS(), as ATen's cuBLAS path does)
  a_layout   row (stride_ak == 1) or col (stride_am == 1); the unit stride becomes the constexpr 1
  b_layout   row (stride_bn == 1) or col (stride_bk == 1)
  align      aligned: the tt.divisibility=16 hint on the pointers (address % 16 bytes), on the
             leading strides (value % 16, in elements), on N and K, and on M when A is col-major;
             general: no hint. The driver (csrc/ops/gemm.cpp) picks "aligned" exactly when all
             of these hold.
C is always written row-major (stride_cn is the constexpr 1); the driver computes a col-major
`out=` as C^T = B^T @ A^T.

On sm_90a the aligned fp16/bf16 points compile kernels/gemm.py:mm_tma_kernel instead: same
runtime arguments (pointers, M, N, K, the three leading strides), tiles through TMA descriptors
the kernel builds in global scratch, launched with PDL (cuLaunchKernelEx) so its launch overlaps
the tail of the previous kernel. The aligned hints are exactly TMA's requirements (16-byte
aligned bases and leading strides); TMA clips the edges, so the N, K and M hints are not needed
there but are kept, so that one driver rule picks "aligned" on every target.

Why these hints: a dimension is loaded with wide vectors only if Triton knows it is contiguous
(the constexpr unit stride), that every row starts 16-byte aligned (pointer and leading stride)
and that the bounds mask is constant over 16 elements (the size of the contiguous dimension:
K for row-major A and col-major B, M for col-major A, N for row-major B and for C). Without
them loads are 2- or 4-byte and unpipelined: the general variant ran bf16 4096^3 at 27 TFLOP/s
on an H100 against 540 for the aligned one, so ragged N or K (or an unaligned slice) is slow;
a middle tier (aligned pointers and strides, ragged sizes) would be the next variant to add.
"""

from aot.ops import AtenOverride, GemsOp, bench_case
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr

KERNEL = "kernels.gemm:mm_kernel"
TMA_KERNEL = "kernels.gemm:mm_tma_kernel"

# Tile configs per (arch, dtype class): (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages),
# until the offline tuner commits per-shape tables. The sm_90a ones were checked against a sweep
# on an H100 (triton 3.6, 4096^3, all four layouts); sm_80 and sm_100a are unmeasured.
CONFIGS = {
    # sm_80: the matmul tutorial's (03-matrix-multiplication) 128x128x32, 4 warps, 4 stages
    # for 16-bit (64 KiB of shared memory; A100 has 164 KiB); tf32 tiles take twice the bytes,
    # so one stage less.
    (80, "16bit"): (128, 128, 32, 8, 4, 4),
    (80, "tf32"): (128, 128, 32, 8, 4, 3),
    # sm_90a: the tutorial's first Hopper config, wgmma on 2 warpgroups; 3 stages of 128x64 +
    # 64x256 16-bit tiles = 144 KiB of shared memory (the > 48 KiB launch path). Best or within
    # 4% of the best of the configs tried for every layout: 540-720 TFLOP/s bf16 at 4096^3,
    # cuBLAS 730-750. tf32 takes the same tile with BLOCK_K 32 (same bytes): 290 TFLOP/s
    # for row-major A with col-major B, cuBLAS 375; the other layouts run 65-150 (tf32 wgmma
    # wants K-contiguous operands).
    (90, "16bit"): (128, 256, 64, 8, 8, 3),
    (90, "tf32"): (128, 256, 32, 8, 8, 3),
    # sm_100a: the Hopper tiles with a 4th stage (192 KiB; B200 has 228 KiB per SM).
    (100, "16bit"): (128, 256, 64, 8, 8, 4),
    (100, "tf32"): (128, 256, 32, 8, 8, 4),
}
# sm_90a, fp16/bf16 through TMA (mm_tma_kernel).
TMA_CONFIG = (128, 256, 64, 8, 8, 3)
# fp32 in ieee precision runs on the FMA units, not the tensor cores. Best of the sweep for the
# common row-major A / col-major B layout (25 TFLOP/s at 2048^3 on H100, cuBLAS 50; 40 for
# row-major B); used on every target.
FP32_IEEE_CONFIG = (128, 128, 16, 8, 4, 3)


def config(dtype: str, precision: str, arch: int) -> tuple:
    if dtype == "fp32" and precision == "ieee":
        return FP32_IEEE_CONFIG
    return CONFIGS[(arch, "tf32" if dtype == "fp32" else "16bit")]


def make_mm_tma(point, arch):
    a_row, b_row = point["a_layout"] == "row", point["b_layout"] == "row"
    block_m, block_n, block_k, group_m, num_warps, num_stages = TMA_CONFIG
    signature = (
        *((name, ptr(point["dtype"])) for name in ("a", "b", "c")),
        *((name, "i32") for name in ("M", "N", "K", "lead_a", "lead_b", "lead_c")),
    )
    constexprs = (
        ("A_ROW", a_row),
        ("B_ROW", b_row),
        ("BLOCK_M", block_m),
        ("BLOCK_N", block_n),
        ("BLOCK_K", block_k),
        ("GROUP_M", group_m),
        ("PDL", True),
    )
    return Variant(
        kernel=TMA_KERNEL,
        signature=signature + tuple((name, "constexpr") for name, _ in constexprs),
        constexprs=constexprs,
        divisible16=("a", "b", "c", "lead_a", "lead_b", "lead_c"),
        num_warps=num_warps,
        num_stages=num_stages,
        launch_params=("BLOCK_M", "BLOCK_N"),
        launch_pdl=True,
    )


def make_mm(point, arch):
    dtype, precision = point["dtype"], point["precision"]
    if precision == "tf32" and dtype != "fp32":
        return None
    if arch == 90 and dtype in ("fp16", "bf16") and point["align"] == "aligned":
        return make_mm_tma(point, arch)
    a_row = point["a_layout"] == "row"
    b_row = point["b_layout"] == "row"
    # The unit stride of each operand is the constexpr 1; the other one is the leading stride.
    strides = {
        "stride_am": "i32" if a_row else "constexpr",
        "stride_ak": "constexpr" if a_row else "i32",
        "stride_bk": "i32" if b_row else "constexpr",
        "stride_bn": "constexpr" if b_row else "i32",
        "stride_cm": "i32",
        "stride_cn": "constexpr",
    }
    block_m, block_n, block_k, group_m, num_warps, num_stages = config(dtype, precision, arch)
    signature = (
        ("a", ptr(dtype)),
        ("b", ptr(dtype)),
        ("c", ptr(dtype)),
        ("M", "i32"),
        ("N", "i32"),
        ("K", "i32"),
        *strides.items(),
        ("BLOCK_M", "constexpr"),
        ("BLOCK_N", "constexpr"),
        ("BLOCK_K", "constexpr"),
        ("GROUP_M", "constexpr"),
        ("INPUT_PRECISION", "constexpr"),
    )
    constexprs = tuple((name, 1) for name, t in strides.items() if t == "constexpr") + (
        ("BLOCK_M", block_m),
        ("BLOCK_N", block_n),
        ("BLOCK_K", block_k),
        ("GROUP_M", group_m),
        ("INPUT_PRECISION", precision),
    )
    divisible16 = ()
    if point["align"] == "aligned":
        leading = tuple(name for name, t in strides.items() if t == "i32")
        divisible16 = ("a", "b", "c", "N", "K") + (() if a_row else ("M",)) + leading
    return Variant(
        kernel=KERNEL,
        signature=signature,
        constexprs=constexprs,
        divisible16=divisible16,
        num_warps=num_warps,
        num_stages=num_stages,
        launch_params=("BLOCK_M", "BLOCK_N"),
    )


GRIDS = [
    KernelGrid(
        "mm",
        axes=(
            ("dtype", FLOAT_DTYPES),
            ("precision", ("ieee", "tf32")),
            ("a_layout", ("row", "col")),
            ("b_layout", ("row", "col")),
            ("align", ("aligned", "general")),
        ),
        make=make_mm,
        doc="C[M,N] = A[M,K] @ B[K,N], fp32 accumulation, row-major C",
    ),
]

GEMS_OPS = [GemsOp("mm(Tensor self, Tensor mat2) -> Tensor")]

ATEN_OVERRIDES = [AtenOverride("mm"), AtenOverride("mm.out")]

CPP_HEADER = "ops/gemm.h"


def bench_cases() -> list:
    return [bench_case("mm", "mm", "gemm", "matmul", FLOAT_DTYPES, inputs=2)]
