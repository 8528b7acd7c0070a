"""One KernelGrid per pointwise op: dtype x form (which operands are Python scalars) x layout."""

from __future__ import annotations

import functools

from aot.pointwise.declarations import (CONTIG_LAUNCH, CONTIG_LAUNCH_16BIT, LAYOUTS, STRIDED_BLOCK, STRIDED_DIMS,
                                        STRIDED_WARPS, PointwiseOp, compute_type, kernel_name)
from aot.pointwise.triton_source import GENERATED_MODULE, operand_names, result_names, strided_args
from aot.targets import TARGETS
from aot.variants import KernelGrid, Variant, ptr


def make_variant(op: PointwiseOp, point, arch):
    dtype, form, layout = point["dtype"], point["form"], point["layout"]
    vendor = TARGETS[arch].vendor
    ins, scalars, params, flags = operand_names(op)
    index = "i64" if layout == "contig64" else "i32"
    sig = [(n, ptr(op.operand_dtype(i, dtype))) for i, n in enumerate(ins)]
    sig += [(o, ptr(d)) for o, d in zip(result_names(op), op.result_dtypes(dtype))] + [("n", index)]
    sig += [(s, compute_type(op.operand_dtype(i, dtype))) for i, s in enumerate(scalars)]
    sig += [(p, compute_type(dtype)) for p in params]
    consts = [(f, c == "s") for f, c in zip(flags, form)]
    if layout.startswith("contig"):
        block, warps = op.contig_launch or (CONTIG_LAUNCH_16BIT if dtype in ("fp16", "bf16", "i16") else CONTIG_LAUNCH)
        kernel = kernel_name(op, dtype, layout, vendor)
        consts += [("INDEX64", layout == "contig64"), ("BLOCK", block)]
        hints = tuple(n for n, c in zip(ins, form) if c == "t") + tuple(result_names(op))
    else:
        kernel, warps, hints = kernel_name(op, dtype, layout, vendor), STRIDED_WARPS, ()
        sizes, strides = strided_args(op, STRIDED_DIMS[layout])
        sig += sizes + [(s, "i32") for s in strides]
        consts += [("BLOCK", STRIDED_BLOCK)]
    # The constexprs follow the runtime arguments in the kernel's parameter list.
    return Variant(
        kernel=f"{GENERATED_MODULE}:{kernel}",
        signature=tuple(sig) + tuple((n, "constexpr") for n, _ in consts),
        constexprs=tuple(consts),
        divisible16=hints,
        num_warps=warps,
        launch_params=("BLOCK",),
    )


def grid(op: PointwiseOp) -> KernelGrid:
    return KernelGrid(
        f"pw_{op.name}",
        (("dtype", op.dtypes), ("form", op.forms), ("layout", LAYOUTS)),
        functools.partial(make_variant, op),
        doc=f"{op.name}: kernels.pointwise_math.{op.fn}, {op.builder}",
    )
