"""The gemv family: addmv (and so mv, which reaches it through its composite), dot and vdot.

y = alpha * A[M, K] @ x[K] + beta * bias[M] with fp32 accumulation, in kernels/gemv.py. Two grids:

gemv (gemv_kernel), axes:
  kind    row: A row-major (stride_ak = 1); col: A column-major (stride_am = 1); dot: one row
          (dot, vdot, and addmv with M = 1), whose stride may be anything
  dtype   fp32, fp16, bf16 (y in the input dtype, as torch gives it)
  align   aligned: x has unit stride, the pointers of A and x are 16-byte aligned and A's
          leading stride is a multiple of 16 elements (a dot: both vectors unit-stride and
          aligned), so both load in 16-byte vectors; general: no hint, every stride a runtime value
gemv_finish, axes kind (gemv, dot: the tile that sums the split-K partials) and dtype.

Tiles, from bandwidth: these kernels stream A once, so the aim is enough bytes in flight. Every
tile holds 8 KiB of A, loaded by 4 warps as four 16-byte vectors per thread per step, with an
fp32 accumulator of 32 registers per thread; many programs fit on an SM at once. Row-major A
takes 4 rows by one long chunk (M = 2048 already gives 512 programs, about 4 per SM of an H100);
column-major A 512-byte rows of M by 16 of K, so few column blocks exist and K is split (below);
a dot one row of 8 KiB. The C++ driver (csrc/ops/gemv.cpp) splits K when a shape has fewer
than 256 row blocks, into up to about 1024 programs of at least 2 chunks each; the split count
depends on the shape only, so a shape sums in the same order on every GPU.
"""

from aot.ops import AtenOverride, Example, GemsOp, T, bench_case
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr

KERNEL = "kernels.gemv:gemv_kernel"
FINISH_KERNEL = "kernels.gemv:gemv_finish"
KINDS = ("row", "col", "dot")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
# kind -> (BLOCK_M, BLOCK_K) for 2-byte elements; fp32 halves the dimension that is contiguous.
TILES = {"row": (4, 1024), "col": (256, 16), "dot": (1, 4096)}
NUM_WARPS = 4
# gemv_finish: (BLOCK_S, BLOCK_M). The driver makes at most 1024 splits, which a dot sums in
# one step; a matrix has fewer splits and many rows.
FINISH_TILES = {"gemv": (8, 128), "dot": (1024, 1)}


def tile(kind: str, dtype: str) -> tuple:
    block_m, block_k = TILES[kind]
    if ELEMENT_BYTES[dtype] == 4:
        return (block_m // 2, block_k) if kind == "col" else (block_m, block_k // 2)
    return block_m, block_k


def unit_strides(kind: str, align: str) -> dict:
    """The strides a variant makes a constexpr: 1 for the contiguous dimension (a dot has one
    row: stride_am 0), and x's in aligned variants."""
    unit = {"row": {"stride_ak": 1}, "col": {"stride_am": 1}, "dot": {"stride_am": 0}}[kind]
    if align == "aligned":
        unit = {**unit, "stride_x": 1, **({"stride_ak": 1} if kind == "dot" else {})}
    return unit


def make_gemv(point, arch):
    kind, dtype, align = point["kind"], point["dtype"], point["align"]
    unit = unit_strides(kind, align)
    strides = ("stride_am", "stride_ak", "stride_x", "stride_y", "stride_bias")
    block_m, block_k = tile(kind, dtype)
    signature = (
        *((name, ptr(dtype)) for name in ("a", "x", "y", "bias")),
        ("partial", "*fp32"),
        ("M", "i32"),
        ("K", "i32"),
        *((name, "constexpr" if name in unit else "i32") for name in strides),
        ("k_split", "i32"),
        ("alpha", "fp32"),
        ("beta", "fp32"),
        ("BLOCK_M", "constexpr"),
        ("BLOCK_K", "constexpr"),
    )
    constexprs = tuple(unit.items()) + (("BLOCK_M", block_m), ("BLOCK_K", block_k))
    # k_split is always a multiple of BLOCK_K (>= 16).
    divisible16 = ("k_split",)
    if align == "aligned":
        lead = {"row": ("stride_am",), "col": ("stride_ak",), "dot": ()}[kind]
        divisible16 += ("a", "x") + lead
    return Variant(
        kernel=KERNEL,
        signature=signature,
        constexprs=constexprs,
        divisible16=divisible16,
        num_warps=NUM_WARPS,
        launch_params=("BLOCK_M", "BLOCK_K"),
    )


def make_finish(point, arch):
    dtype = point["dtype"]
    block_s, block_m = FINISH_TILES[point["kind"]]
    signature = (
        ("partial", "*fp32"),
        ("y", ptr(dtype)),
        ("bias", ptr(dtype)),
        *((name, "i32") for name in ("M", "splits", "stride_y", "stride_bias")),
        ("alpha", "fp32"),
        ("beta", "fp32"),
        ("BLOCK_S", "constexpr"),
        ("BLOCK_M", "constexpr"),
    )
    return Variant(
        kernel=FINISH_KERNEL,
        signature=signature,
        constexprs=(("BLOCK_S", block_s), ("BLOCK_M", block_m)),
        num_warps=NUM_WARPS,
        launch_params=("BLOCK_M",),
    )


GRIDS = [
    KernelGrid(
        "gemv",
        (("kind", KINDS), ("dtype", FLOAT_DTYPES), ("align", ("aligned", "general"))),
        make_gemv,
        doc="y = alpha * A @ x + beta * bias (or fp32 split-K partials), fp32 accumulation",
    ),
    KernelGrid(
        "gemv_finish",
        (("kind", ("gemv", "dot")), ("dtype", FLOAT_DTYPES)),
        make_finish,
        doc="y = alpha * (sum of the split-K partials) + beta * bias",
    ),
]

# aten's schemas and results: aten's fake implementations serve them.
GEMS_OPS = [
    GemsOp("addmv(Tensor self, Tensor mat, Tensor vec, *, Scalar beta=1, Scalar alpha=1) -> Tensor", True,
           Example((T((6,)), T((6, 10)), T((10,))))),
    GemsOp("mv(Tensor self, Tensor vec) -> Tensor", True, Example((T((6, 10)), T((10,))))),
    GemsOp("dot(Tensor self, Tensor tensor) -> Tensor", True, Example((T((10,)), T((10,))))),
    GemsOp("vdot(Tensor self, Tensor other) -> Tensor", True, Example((T((10,)), T((10,))))),
]

# mv, mv.out, dot.out and vdot.out have no CUDA kernel of their own in ATen: their composites
# reach addmv_ / addmv.out, dot and vdot, which these override.
ATEN_OVERRIDES = [AtenOverride(name) for name in ("addmv", "addmv.out", "addmv_", "dot", "vdot")]


def bench_cases() -> list:
    return [bench_case("mv", "mv", "gemv", "matvec", FLOAT_DTYPES, inputs=2),
            bench_case("dot", "dot", "gemv", "dot", FLOAT_DTYPES, inputs=2)]
