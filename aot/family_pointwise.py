"""Pointwise family: add, sub, mul, div (Tensor and Scalar overloads, in-place, out=) and relu."""

from aot.ops import AtenOverride, GemsOp
from aot.variants import FLOAT_DTYPES, INT_DTYPES, KernelGrid, Variant, ptr

CPP_HEADER = "ops/pointwise.h"

BINARY_OPS = ("add", "sub", "mul", "div")
UNARY_OPS = ("relu",)
DTYPES = FLOAT_DTYPES + INT_DTYPES
# contig: 1-D over dense operands; aligned: the same with 16-byte aligned pointers (wide
# accesses); strided: up to 4 collapsed dims with element strides.
LAYOUTS = ("contig", "aligned", "strided")
INDEX = ("i32", "i64")

CONTIG_BLOCK, CONTIG_WARPS = 2048, 8
STRIDED_BLOCK, STRIDED_WARPS = 512, 4


def _scalar_type(dtype: str) -> str:
    """Scalars and alpha travel in ATen's opmath type: fp32 for floats, the int type for ints."""
    return "fp32" if dtype in FLOAT_DTYPES else dtype


def _covered(layout: str, index: str) -> bool:
    # 64-bit indexing only on the aligned 1-D path: freshly allocated tensors are aligned, and
    # the strided and unaligned cases beyond 2**31 elements go to ATen.
    return index == "i32" or layout == "aligned"


def _binary(point, arch):
    op, dtype, form, layout, index = (point[a] for a in ("op", "dtype", "form", "layout", "index"))
    if not _covered(layout, index):
        return None
    if op == "div" and (dtype in INT_DTYPES or form == "ts"):
        # Integer true division returns float (mixed dtypes: ATen); tensor / scalar runs as a
        # multiplication by the reciprocal, as ATen computes it.
        return None
    t, s = ptr(dtype), _scalar_type(dtype)
    sig = [("x", t), ("y", t), ("out", t), ("n", index), ("xs", s), ("ys", s), ("alpha", s)]
    consts = [("OP", op), ("FORM", form), ("UPCAST", dtype in ("fp16", "bf16"))]
    if layout == "strided":
        sig += [(f"s{d}", "i32") for d in (1, 2, 3)]
        sig += [(f"{arg}{d}", "i32") for arg in "xyo" for d in range(4)]
        consts += [("BLOCK", STRIDED_BLOCK)]
        kernel, warps, hints = "binary_strided", STRIDED_WARPS, ()
    else:
        consts += [("INDEX64", index == "i64"), ("BLOCK", CONTIG_BLOCK)]
        kernel, warps = "binary_contig", CONTIG_WARPS
        hints = ("x", "y", "out") if layout == "aligned" else ()
    sig += [(name, "constexpr") for name, _ in consts]
    return Variant(
        kernel=f"kernels.pointwise:{kernel}",
        signature=tuple(sig),
        constexprs=tuple(consts),
        divisible16=hints,
        num_warps=warps,
        launch_params=("BLOCK",),
    )


def _unary(point, arch):
    op, dtype, layout, index = (point[a] for a in ("op", "dtype", "layout", "index"))
    if not _covered(layout, index):
        return None
    t = ptr(dtype)
    if layout == "strided":
        sig = [("x", t), ("out", t), ("n", "i32"), ("s1", "i32"), ("s2", "i32"), ("s3", "i32")]
        sig += [(f"{arg}{d}", "i32") for arg in "xo" for d in range(4)]
        consts = [("OP", op), ("BLOCK", STRIDED_BLOCK)]
        kernel, warps, hints = "unary_strided", STRIDED_WARPS, ()
    else:
        sig = [("x", t), ("out", t), ("n", index)]
        consts = [("OP", op), ("INDEX64", index == "i64"), ("BLOCK", CONTIG_BLOCK)]
        kernel, warps = "unary_contig", CONTIG_WARPS
        hints = ("x", "out") if layout == "aligned" else ()
    sig += [(name, "constexpr") for name, _ in consts]
    return Variant(
        kernel=f"kernels.pointwise:{kernel}",
        signature=tuple(sig),
        constexprs=tuple(consts),
        divisible16=hints,
        num_warps=warps,
        launch_params=("BLOCK",),
    )


GRIDS = [
    KernelGrid(
        "binary",
        (("op", BINARY_OPS), ("dtype", DTYPES), ("form", ("tt", "ts", "st")), ("layout", LAYOUTS), ("index", INDEX)),
        _binary,
        doc="out = op(x, y): tensor-tensor, tensor-scalar and scalar-tensor forms",
    ),
    KernelGrid("unary", (("op", UNARY_OPS), ("dtype", DTYPES), ("layout", LAYOUTS), ("index", INDEX)), _unary),
]

GEMS_OPS = [
    GemsOp("add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"),
    GemsOp("add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor"),
    GemsOp("sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"),
    GemsOp("sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor"),
    GemsOp("mul.Tensor(Tensor self, Tensor other) -> Tensor"),
    GemsOp("mul.Scalar(Tensor self, Scalar other) -> Tensor"),
    GemsOp("div.Tensor(Tensor self, Tensor other) -> Tensor"),
    GemsOp("div.Scalar(Tensor self, Scalar other) -> Tensor"),
    GemsOp("relu(Tensor self) -> Tensor"),
]

ATEN_OVERRIDES = [
    AtenOverride(name)
    for op in BINARY_OPS
    for name in (f"{op}.Tensor", f"{op}_.Tensor", f"{op}.out")
] + [AtenOverride("relu"), AtenOverride("relu_")]
