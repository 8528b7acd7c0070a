"""Reduce family: sum (all dims, a dim list, keepdim, dtype=, out=).

One grid, "sum", indexed by kernel kind (which kernel and tile), input dtype, output dtype and
alignment. The C++ driver (csrc/ops/reduce.cpp) picks the kind from the reduction's geometry:
inner kinds when the innermost dims in memory are reduced (by the length R of that contiguous
run), outer kinds when they are kept (by the length B of the kept contiguous run).
"""

from aot.ops import AtenOverride, GemsOp, bench_case
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr


# kind: (kernel, BLOCK_OUT outputs per program, BLOCK_R reduced elements per step, num_warps).
# The C++ driver's kind thresholds (kInnerR32Max, ...) assume these tiles.
KINDS = {
    "inner_r32": ("sum_inner", 64, 32, 4),  # R <= 64: many short rows per program
    "inner_r128": ("sum_inner", 32, 128, 4),  # R <= 512
    "inner_r512": ("sum_inner", 8, 512, 4),  # R <= 2048
    "inner_r2k": ("sum_inner", 1, 2048, 4),  # long rows, full sums (split)
    "outer_b4": ("sum_outer", 4, 512, 4),  # B <= 4
    "outer_b16": ("sum_outer", 16, 128, 4),  # B <= 16
    "outer_b64": ("sum_outer", 64, 32, 4),  # B <= 64
    "outer_b128": ("sum_outer", 128, 32, 4),  # wide kept runs
}

INT_INPUTS = ("i32", "i64", "bool", "u8", "i8", "i16")
IN_DTYPES = FLOAT_DTYPES + INT_INPUTS
OUT_DTYPES = ("fp32", "fp16", "bf16", "i64")
# "16": the input pointer is 16-byte aligned and the input strides (and B) are multiples of
# VEC = 16 bytes of elements, so contiguous runs load in 16-byte vectors (see kernels/reduce.py).
ALIGNS = ("any", "16")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

_INNER_ARGS = (
    "KEPT1", "KEPT2", "in_k0", "in_k1", "in_k2", "out_k0", "out_k1", "out_k2",
    "R", "RO", "RO1", "in_ro0", "in_ro1", "r_step", "r_len", "ro_step", "ro_len", "out_split",
)  # fmt: skip
_OUTER_ARGS = (
    "B", "KEPT1", "in_k0", "in_k1", "out_k0", "out_k1", "out_b",
    "R", "in_r", "RO", "RO1", "in_ro0", "in_ro1", "r_step", "r_len", "ro_step", "ro_len", "out_split",
)  # fmt: skip


def user_pair(in_dtype: str, out_dtype: str) -> bool:
    """(input, output) dtypes torch.sum reduces directly with these kernels: same float type,
    fp16/bf16 to fp32 (dtype=torch.float32), integers and bool to int64."""
    if in_dtype in INT_INPUTS:
        return out_dtype == "i64"
    return out_dtype in (in_dtype, "fp32")


def partials_pair(in_dtype: str, out_dtype: str) -> bool:
    """Second pass of a split reduction: fp32 or int64 partials to the output dtype. fp32 to
    fp16/bf16 is only this (torch.sum(x_fp32, dtype=fp16) rounds each input first: ATen)."""
    return (in_dtype == "fp32" and out_dtype in FLOAT_DTYPES) or (in_dtype == "i64" and out_dtype == "i64")


def _sum(point, arch):
    kind, in_dtype, out_dtype, align = (point[a] for a in ("kind", "in_dtype", "out_dtype", "align"))
    if not (user_pair(in_dtype, out_dtype) or partials_pair(in_dtype, out_dtype)):
        return None
    if align == "16" and not (in_dtype in FLOAT_DTYPES and user_pair(in_dtype, out_dtype)):
        return None
    kernel, block_out, block_r, warps = KINDS[kind]
    args = _INNER_ARGS if kernel == "sum_inner" else _OUTER_ARGS
    # r_step is a multiple of BLOCK_R: the hint keeps split starts aligned.
    hints = ("in_ptr", "r_step") if align == "16" else ("r_step",)
    vec = 16 // ELEMENT_BYTES[in_dtype] if align == "16" else 1
    consts = (("VEC", vec), ("BLOCK_OUT", block_out), ("BLOCK_R", block_r))
    sig = (("in_ptr", ptr(in_dtype)), ("out_ptr", ptr(out_dtype)))
    sig += tuple((a, "i64") for a in args) + tuple((n, "constexpr") for n, _ in consts)
    return Variant(
        kernel=f"kernels.reduce:{kernel}",
        signature=sig,
        constexprs=consts,
        divisible16=hints,
        num_warps=warps,
        launch_params=("VEC", "BLOCK_OUT", "BLOCK_R"),
    )


GRIDS = [
    KernelGrid(
        "sum",
        (("kind", tuple(KINDS)), ("in_dtype", IN_DTYPES), ("out_dtype", OUT_DTYPES), ("align", ALIGNS)),
        _sum,
        doc="out = sum of in over the reduced dims; fp32 / int64 accumulation",
    ),
]

GEMS_OPS = [
    GemsOp("sum(Tensor self, *, ScalarType? dtype=None) -> Tensor"),
    GemsOp("sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"),
]

ATEN_OVERRIDES = [AtenOverride("sum.dim_IntList"), AtenOverride("sum.IntList_out")]


def bench_cases() -> list:
    return [bench_case("sum", "sum.dim_IntList", "reduce", "rows", FLOAT_DTYPES + ("i32", "i64"), extra_args=([1],),
                       out=lambda dt: "i64" if dt in INT_INPUTS else dt)]
