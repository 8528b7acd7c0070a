"""Loss family: the negative log-likelihood loss (nll_loss_forward / nll_loss_backward over 1-D
and 2-D input, nll_loss2d_forward / nll_loss2d_backward over [N, C, H, W]) and the mean squared
error (mse_loss / mse_loss_backward), each with its out= form, as aten overrides and gems ops.
F.cross_entropy is log_softmax (the row-wise family) then nll_loss_forward, so with both its
forward and backward run on gems.

Its three places: the kernels (kernels/loss.py), these declarations, and the C++ driver
(csrc/ops/loss.cpp), which checks the arguments as ATen does (anything it does not cover goes to
ATen's own kernel, which then raises ATen's errors), plans and launches. Semantics are those of
ATen's CUDA kernels (aten/src/ATen/native/cuda/Loss.cu, NLLLoss2d.cu, PointwiseOpsKernel.cu):
the products and quotients ATen computes in the input's dtype are rounded to it here too, sums
are fp32. Where ATen raises a device-side assert (a target out of range), the loss and its
gradient row are NaN and nothing is read out of bounds.

Grids:
- "nll_fwd" (kernels/loss.py:nll_fwd): reduce (none: a loss per row; reduce: sum or mean) and
  dtype. Rows of BLOCK targets a program; a reduction is split into partials (plan_partials).
- "nll_bwd" (nll_bwd): kind (KINDS: the tile, by the class count C; "strided" for nll_loss2d's
  [N, C, H * W] gradient), dtype and alignment ("16": the gradient's pointer 16-byte aligned
  and its contiguous extent, C or H * W, a multiple of 16 elements).
- "loss_finish" (loss_finish): the sum of a split reduction's partials, for nll (loss and
  weight) or mse.
- "mse_fwd" (mse_fwd): reduce and dtype and alignment; "mse_bwd": the gradient's form (one
  element broadcast, as the reductions give it, or one per element) and dtype and alignment.

- "ce_loss_and_grad" (cross_entropy_loss_and_grad): softcap (none or tanh), dtype and alignment
  ("16": the logits' pointer 16-byte aligned, V and the row stride multiples of 16 elements). The
  step of the chunked fused linear + cross entropy (python/gems_aot/_linear_ce.py): a chunk of
  logits in, each row's fp32 loss out, the scaled gradient written over the logits. Its gems op
  gems::cross_entropy_loss_and_grad_ has no aten mirror: its driver (csrc/ops/loss_and_grad.cpp)
  has a Meta function of its own.

Reductions are deterministic: the program count and each program's rows depend on the length
alone (plan_partials; MAX_PARTIALS is the finish kernel's BLOCK_P), never on the GPU, and the
partials are summed in a fixed order, with no atomics (ATen's nll_loss2d uses atomics).
"""

from __future__ import annotations

import dataclasses

from aot import schemas
from aot.ops import AtenOverride, Example, GemsOp, T
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr

KERNELS = "kernels.loss"
MAX_PARTIALS = 1024  # programs of a split reduction: the finish kernel's BLOCK_P
NLL_BLOCK, NLL_WARPS = 256, 4  # rows a program takes per step
# mse: elements a program takes per step, and its warps, per dtype size (as the pointwise family)
MSE_LAUNCH = {"fp32": (2048, 8), "fp16": (2048, 4), "bf16": (2048, 4)}
ALIGNS = ("any", "16")
REDUCES = ("none", "reduce")
# cross_entropy_loss_and_grad: row elements a program takes per step, and its warps (16 fp32
# values per thread and lane array). Untuned (no GPU measurements yet).
CE_BLOCK_V, CE_WARPS = 4096, 8
SOFTCAPS = ("none", "tanh")


@dataclasses.dataclass(frozen=True)
class Kind:
    """A tile of nll_bwd. strided: rows are adjacent inner indices (nll_loss2d), else whole
    contiguous rows; max_c: the largest class count it is chosen for (None: any)."""

    strided: bool
    max_c: int | None
    rows: int
    block_c: int
    num_warps: int


# 2-8 K elements a program (a store-only kernel); short rows share a program.
KINDS = {
    "c64": Kind(False, 64, 32, 64, 4),
    "c512": Kind(False, 512, 8, 512, 4),
    "cbig": Kind(False, None, 1, 4096, 8),
    "strided": Kind(True, None, 128, 32, 4),
}


def kind_for(strided: bool, c: int) -> str:
    return next(n for n, k in KINDS.items() if k.strided == strided and (k.max_c is None or c <= k.max_c))


def plan_partials(n: int, block: int, max_partials: int = MAX_PARTIALS) -> tuple:
    """(programs, chunk): a reduction of n items in programs of `chunk` items (a multiple of
    block) each; one program (which then finishes) where n fits one step. The C++ driver's
    plan_partials is the same arithmetic."""
    blocks = max(1, -(-n // block))
    programs = min(blocks, max_partials)
    chunk = -(-blocks // programs) * block
    return max(1, -(-n // chunk)), chunk


def _i64(*names):
    return tuple((n, "i64") for n in names)


def _make_nll_fwd(point, arch):
    dtype = point["dtype"]
    reduce = point["reduce"] == "reduce"
    sig = (("x_ptr", ptr(dtype)), ("t_ptr", ptr("i64")), ("w_ptr", ptr(dtype)), ("out_ptr", ptr(dtype)),
           ("tw_ptr", ptr(dtype)), ("part_ptr", ptr("fp32")))
    sig += _i64("ROWS_N", "INNER", "C", "x_so", "x_si", "x_sc", "t_s", "w_s", "ignore_index")
    sig += (("has_weight", "i32"), ("mode", "i32"), ("chunk", "i64"), ("REDUCE", "constexpr"), ("BLOCK", "constexpr"))
    return Variant(kernel=f"{KERNELS}:nll_fwd", signature=sig, constexprs=(("REDUCE", reduce), ("BLOCK", NLL_BLOCK)),
                   divisible16=("chunk",) if reduce else (), num_warps=NLL_WARPS, launch_params=("BLOCK",))


def _make_nll_bwd(point, arch):
    kind, dtype = KINDS[point["kind"]], point["dtype"]
    sig = (("go_ptr", ptr(dtype)), ("t_ptr", ptr("i64")), ("w_ptr", ptr(dtype)), ("tw_ptr", ptr(dtype)),
           ("dx_ptr", ptr(dtype)))
    sig += _i64("ROWS_N", "INNER", "C", "t_s", "w_s", "go_s", "ignore_index")
    sig += (("has_weight", "i32"), ("mode", "i32"), ("col_blocks", "i64"))
    consts = (("STRIDED", kind.strided), ("ROWS", kind.rows), ("BLOCK_C", kind.block_c))
    sig += tuple((n, "constexpr") for n, _ in consts)
    hints = ("dx_ptr", "INNER" if kind.strided else "C") if point["align"] == "16" else ()
    return Variant(kernel=f"{KERNELS}:nll_bwd", signature=sig, constexprs=consts, divisible16=hints,
                   num_warps=kind.num_warps, launch_params=("ROWS", "BLOCK_C"))


def _make_finish(point, arch):
    dtype = point["dtype"]
    sig = (("part_ptr", ptr("fp32")), ("out_ptr", ptr(dtype)), ("tw_ptr", ptr(dtype)), ("P", "i32"), ("mode", "i32"),
           ("scale", "fp32"), ("WEIGHTED", "constexpr"), ("BLOCK_P", "constexpr"))
    return Variant(kernel=f"{KERNELS}:loss_finish", signature=sig,
                   constexprs=(("WEIGHTED", point["loss"] == "nll"), ("BLOCK_P", MAX_PARTIALS)), num_warps=4,
                   launch_params=("BLOCK_P",))


def _make_mse_fwd(point, arch):
    dtype = point["dtype"]
    reduce = point["reduce"] == "reduce"
    block, warps = MSE_LAUNCH[dtype]
    sig = (("a_ptr", ptr(dtype)), ("b_ptr", ptr(dtype)), ("out_ptr", ptr(dtype)), ("part_ptr", ptr("fp32")),
           ("N", "i64"), ("chunk", "i64"), ("scale", "fp32"), ("REDUCE", "constexpr"), ("BLOCK", "constexpr"))
    hints = ("a_ptr", "b_ptr", "N") + (("chunk",) if reduce else ("out_ptr",)) if point["align"] == "16" else ()
    return Variant(kernel=f"{KERNELS}:mse_fwd", signature=sig, constexprs=(("REDUCE", reduce), ("BLOCK", block)),
                   divisible16=hints, num_warps=warps, launch_params=("BLOCK",))


def _make_mse_bwd(point, arch):
    dtype = point["dtype"]
    scalar = point["grad"] == "scalar"
    block, warps = MSE_LAUNCH[dtype]
    sig = (("g_ptr", ptr(dtype)), ("a_ptr", ptr(dtype)), ("b_ptr", ptr(dtype)), ("dx_ptr", ptr(dtype)), ("N", "i64"),
           ("alpha", "fp32"), ("G_SCALAR", "constexpr"), ("BLOCK", "constexpr"))
    hints = ("a_ptr", "b_ptr", "dx_ptr", "N") + (() if scalar else ("g_ptr",)) if point["align"] == "16" else ()
    return Variant(kernel=f"{KERNELS}:mse_bwd", signature=sig, constexprs=(("G_SCALAR", scalar), ("BLOCK", block)),
                   divisible16=hints, num_warps=warps, launch_params=("BLOCK",))


def _make_ce_loss_and_grad(point, arch):
    dtype = point["dtype"]
    sig = (("z_ptr", ptr(dtype)), ("t_ptr", ptr("i64")), ("loss_ptr", ptr("fp32")), ("V", "i32"), ("row_stride", "i64"),
           ("t_s", "i64"), ("ignore_index", "i64"), ("on_target", "fp32"), ("per_class", "fp32"), ("softcap", "fp32"),
           ("scale", "fp32"), ("SOFTCAP", "constexpr"), ("BLOCK_V", "constexpr"))
    return Variant(kernel=f"{KERNELS}:cross_entropy_loss_and_grad", signature=sig,
                   constexprs=(("SOFTCAP", point["softcap"] == "tanh"), ("BLOCK_V", CE_BLOCK_V)),
                   divisible16=("z_ptr", "V", "row_stride") if point["align"] == "16" else (), num_warps=CE_WARPS,
                   launch_params=("BLOCK_V",))


GRIDS = [
    KernelGrid("nll_fwd", (("reduce", REDUCES), ("dtype", FLOAT_DTYPES)), _make_nll_fwd,
               doc="nll loss per row (none) or its sum / mean over rows, split into fp32 partials"),
    KernelGrid("nll_bwd", (("kind", tuple(KINDS)), ("dtype", FLOAT_DTYPES), ("align", ALIGNS)), _make_nll_bwd,
               doc="the nll gradient: the scaled weight at the target's class, 0 elsewhere"),
    KernelGrid("loss_finish", (("loss", ("nll", "mse")), ("dtype", FLOAT_DTYPES)), _make_finish,
               doc="the result of a split loss reduction from its partials"),
    KernelGrid("mse_fwd", (("reduce", REDUCES), ("dtype", FLOAT_DTYPES), ("align", ALIGNS)), _make_mse_fwd,
               doc="(a - b)^2 per element (none) or its sum / mean, split into fp32 partials"),
    KernelGrid("mse_bwd", (("grad", ("scalar", "full")), ("dtype", FLOAT_DTYPES), ("align", ALIGNS)), _make_mse_bwd,
               doc="alpha * (a - b) * grad, rounded as ATen's kernel"),
    KernelGrid("ce_loss_and_grad", (("softcap", SOFTCAPS), ("dtype", FLOAT_DTYPES), ("align", ALIGNS)),
               _make_ce_loss_and_grad,
               doc="a chunk of logits: each row's (softcapped, smoothed) cross entropy, its gradient in place"),
]

# The aten ops (each with a CUDA kernel of its own in ATen) and their out= forms.
FORWARD_OPS = ("nll_loss_forward", "nll_loss2d_forward", "mse_loss")
BACKWARD_OPS = ("nll_loss_backward", "nll_loss2d_backward", "mse_loss_backward")
OUT_FORMS = {"nll_loss_forward": "output", "nll_loss2d_forward": "output", "mse_loss": "out",
             "nll_loss_backward": "grad_input", "nll_loss2d_backward": "grad_input", "mse_loss_backward": "grad_input"}
OPS = FORWARD_OPS + BACKWARD_OPS


def _aten_schema_text(name: str) -> str:
    return str(schemas.aten_schema(name)).removeprefix("aten::")


# The gems ops mirror the aten ops (same names and schemas): the aten op is their fake
# implementation (gems_aot registers it at load), which traces symbolic shapes.
# Class-index losses over 10 classes (2d: 3 x 4 positions), mean reduction.
_LOGITS = {"nll_loss": (T((6, 10)), T((6,), "i64")), "nll_loss2d": (T((2, 10, 3, 4)), T((2, 3, 4), "i64"))}
_NLL = (None, 1, -100)  # weight, reduction, ignore_index
EXAMPLES = {
    "nll_loss_forward": Example(_LOGITS["nll_loss"] + _NLL),
    "nll_loss2d_forward": Example(_LOGITS["nll_loss2d"] + _NLL),
    "nll_loss_backward": Example((T(()),) + _LOGITS["nll_loss"] + _NLL + (T(()),)),
    "nll_loss2d_backward": Example((T(()),) + _LOGITS["nll_loss2d"] + _NLL + (T(()),)),
    "mse_loss": Example((T((6, 10)), T((6, 10)), 1)),
    "mse_loss_backward": Example((T(()), T((6, 10)), T((6, 10)), 1)),
}
GEMS_OPS = [GemsOp(_aten_schema_text(name), meta_from_aten=True, example=EXAMPLES[name]) for name in OPS]
# No aten op computes it: a Meta function of its own. logits is written (the gradient), the losses
# are a new fp32 tensor.
CE_LOSS_AND_GRAD = GemsOp("cross_entropy_loss_and_grad_(Tensor(a!) logits, Tensor target, int ignore_index=-100, "
                          "float label_smoothing=0.0, float? softcap=None, float scale=1.0) -> Tensor",
                          example=Example(_LOGITS["nll_loss"]))
GEMS_OPS.append(CE_LOSS_AND_GRAD)
ATEN_OVERRIDES = [AtenOverride(o) for name in OPS for o in (name, f"{name}.{OUT_FORMS[name]}")]


# -- benchmark ----------------------------------------------------------------------------------


def _case(op, call, roles, dtypes, args, reads, writes, out_dtype=None):
    """A "loss" benchmark case (python/gems_aot/_bench.py): inputs by role (input: the (rows,
    classes) or elementwise input; target: int64 classes; grad: a one-element gradient of 1;
    total_weight: the row count), args: ("tensor", i) or ("value", v)."""
    calls = {}
    for dt in dtypes:
        tensors = ["i64" if r == "target" else dt for r in roles]
        spec = [{"tensor": v} if k == "tensor" else {"value": v} for k, v in args]
        calls[dt] = {"tensors": tensors, "roles": list(roles), "args": spec, "kwargs": {}, "reads": list(reads),
                     "out": out_dtype or dt, "writes": writes}
    return {"op": op, "call": call, "family": "loss", "kind": "loss", "calls": calls}


def bench_cases() -> list:
    """Class-index losses over (rows, vocabulary) inputs: the size picks the vocabulary (128256 or
    32000 where it divides the size, else rows of 4096 at large sizes as the row-wise cases), so
    `--sizes 131072000,2101346304` measures 4096 x 32000 and 16384 x 128256; mean reduction,
    ignore_index -100. The forward reads the targets and one element a row; the backward writes
    the whole gradient. mse_loss (mean) over two inputs and its backward."""
    nll = ("input", "target")
    bwd = ("grad", "input", "target", "total_weight")
    fwd_args = (("tensor", 0), ("tensor", 1), ("value", None), ("value", 1), ("value", -100))
    bwd_args = (("tensor", 0), ("tensor", 1), ("tensor", 2), ("value", None), ("value", 1), ("value", -100),
                ("tensor", 3))
    ce_args = fwd_args + (("value", 0.0),)
    return [
        _case("nll_loss_forward", "nll_loss_forward", nll, FLOAT_DTYPES, fwd_args, (1,), "one"),
        _case("nll_loss_backward", "nll_loss_backward", bwd, FLOAT_DTYPES, bwd_args, (2,), "all"),
        _case("cross_entropy", "cross_entropy_loss", nll, FLOAT_DTYPES, ce_args, (0, 1), "one"),
        _case("mse_loss", "mse_loss", ("input", "input"), FLOAT_DTYPES, (("tensor", 0), ("tensor", 1), ("value", 1)),
              (0, 1), "one"),
        _case("mse_loss_backward", "mse_loss_backward", ("grad", "input", "input"), FLOAT_DTYPES,
              (("tensor", 0), ("tensor", 1), ("tensor", 2), ("value", 1)), (1, 2), "all"),
    ]


# -- generated sources --------------------------------------------------------------------------

TABLES_HEADER = "loss_tables.h"


def tables_header() -> str:
    b = lambda v: "true" if v else "false"  # noqa: E731
    ks = list(KINDS.values())
    return "\n".join([
        "// Generated by aot/family_loss.py. Do not edit.",
        "#pragma once", "", "#include <cstdint>", "",
        "namespace gems::loss_tables {", "",
        f"constexpr int64_t kMaxPartials = {MAX_PARTIALS};",
        f"// nll_bwd kinds: {', '.join(f'{i} = {n}' for i, n in enumerate(KINDS))}. A max C of -1: any.",
        f"constexpr int kNumKinds = {len(ks)};",
        f"constexpr bool kStrided[kNumKinds] = {{{', '.join(b(k.strided) for k in ks)}}};",
        f"constexpr int64_t kMaxC[kNumKinds] = {{{', '.join(str(-1 if k.max_c is None else k.max_c) for k in ks)}}};",
        "", "// The kind of a gradient of c classes: the first of its layout whose max C holds it.",
        "inline int kind_for(bool strided, int64_t c) {",
        "  for (int k = 0; k < kNumKinds; ++k) {",
        "    if (kStrided[k] == strided && (kMaxC[k] < 0 || c <= kMaxC[k])) return k;",
        "  }",
        "  return -1;",
        "}", "",
        "// (programs, chunk) of a reduction of n items, `block` a step: aot/family_loss.py plan_partials.",
        "struct Partials {", "  int64_t programs;", "  int64_t chunk;", "};",
        "inline Partials plan_partials(int64_t n, int64_t block) {",
        "  const int64_t blocks = n > 0 ? (n + block - 1) / block : 1;",
        "  const int64_t programs = blocks < kMaxPartials ? blocks : kMaxPartials;",
        "  const int64_t chunk = (blocks + programs - 1) / programs * block;",
        "  const int64_t used = (n + chunk - 1) / chunk;",
        "  return {used > 1 ? used : 1, chunk};",
        "}", "", "}  // namespace gems::loss_tables", "",
    ])


def generated_sources() -> dict:
    return {TABLES_HEADER: tables_header()}
