"""Row-wise family: ops that normalise along one dim (softmax and log_softmax, forward and
backward, any dim) and over the trailing dims (LayerNorm and RMSNorm, forward and backward, and
the fused gems::rms_norm with autograd).

Its three places: the kernels (kernels/rowwise.py: `softmax_fwd`, `softmax_bwd`, `norm_fwd`,
`norm_bwd`, `norm_cols`), these
declarations, and the C++ driver (csrc/ops/rowwise.cpp). The driver views a contiguous tensor,
with no copy, as (outer, N, inner) around the normalised dim and picks a kind by the layout
(contiguous rows where inner = 1, strided rows otherwise) and the row length N: the first kind of
KINDS of that layout whose `max_n` holds N; the last of each layout (max_n None) loops over the
row in BLOCK_N chunks. The table is generated into C++ (`rowwise_tables.h`), so the choice is
integer arithmetic on the call path.

An op is a `Softmax` of SOFTMAXES: its aten forward and backward ops (the gems ops, with aten's
schemas) and the overloads `enable()` overrides. From SOFTMAXES come the grid's variants, the
gems ops and overrides and their C++ entry points (`family_rowwise_ops.cpp`, generated into the
build folder).

Grid "rowwise" (softmax), indexed by op, direction, kind, input dtype, output dtype and alignment.
Dtype pairs are torch's: the same dtype in and out, and half_to_float's fp16 -> fp32 forward and
fp32 -> fp16 backward (ATen's CUDA kernels allow Half only). "16": the pointers are 16-byte aligned
and the contiguous extent (N for contiguous rows, inner for strided ones) is a multiple of 16, so
rows load in 16-byte vectors.

A norm is a `Norm` of NORMS (its aten ops, gems ops of the same schemas, overrides where torch
has them); its tiles are NORM_KINDS. Grids "norm_fwd" (norm, kind, dtype of input, weight, bias
and result, weight, bias, alignment), "norm_bwd" (norm, kind, dtype, weight, the partial sums it
writes, alignment) and "norm_cols" (dtype, alignment). Statistics are fp32; RMSNorm's eps defaults
to fp32's epsilon, as ATen's (its opmath type's).
"""

from __future__ import annotations

import dataclasses

from aot import schemas
from aot.ops import AtenOverride, Example, GemsOp, T, bench_case
from aot.variants import FLOAT_DTYPES, KernelGrid, Variant, ptr


@dataclasses.dataclass(frozen=True)
class Softmax:
    name: str  # the grid's op axis value
    log: bool  # log_softmax
    forward: str  # the aten forward op: self, dim, half_to_float
    backward: str  # the aten backward op: grad_output, output, dim, input_dtype

    @property
    def gems_ops(self) -> tuple:
        return (self.forward, self.backward)

    @property
    def aten_overrides(self) -> tuple:
        """Every overload has a CUDA kernel of its own in ATen (structured kernels)."""
        return (self.forward, f"{self.forward}.out", self.backward, f"{self.backward}.out")


SOFTMAXES = (
    Softmax("softmax", False, "_softmax", "_softmax_backward_data"),
    Softmax("log_softmax", True, "_log_softmax", "_log_softmax_backward_data"),
)


@dataclasses.dataclass(frozen=True)
class Kind:
    """A tile. `max_n`: the longest row it takes in one tile; None: it loops over longer rows."""

    strided: bool
    max_n: int | None
    rows: int  # rows per program (strided: adjacent inner indices)
    block_n: int  # row elements per tile (per step when looping)
    num_warps: int

    @property
    def loop(self) -> bool:
        return self.max_n is None


# Tiles hold 4-32 fp32 values per thread and per operand, so a row in registers never spills;
# short rows share a program so that a tile still moves 2-8 KiB.
KINDS = {
    "n64": Kind(False, 64, 16, 64, 4),
    "n256": Kind(False, 256, 8, 256, 4),
    "n1k": Kind(False, 1024, 4, 1024, 8),
    "n4k": Kind(False, 4096, 1, 4096, 8),
    "n8k": Kind(False, 8192, 1, 8192, 16),
    "n16k": Kind(False, 16384, 1, 16384, 16),
    "nloop": Kind(False, None, 1, 8192, 16),  # vocab-sized rows: two passes over the row
    "s64": Kind(True, 64, 32, 64, 4),
    "sloop": Kind(True, None, 64, 16, 4),
}
DIRECTIONS = ("fwd", "bwd")
ALIGNS = ("any", "16")


def kind_for(strided: bool, n: int) -> str:
    return next(name for name, k in KINDS.items() if k.strided == strided and (k.max_n is None or n <= k.max_n))


def dtype_pairs(direction: str) -> tuple:
    """(input, output) dtypes: the forward's self -> result, the backward's grad -> grad_input."""
    same = tuple((t, t) for t in FLOAT_DTYPES)
    return same + ((("fp16", "fp32"),) if direction == "fwd" else (("fp32", "fp16"),))


def _make(point, arch):
    kind = KINDS[point["kind"]]
    direction, in_dtype, out_dtype = point["direction"], point["in_dtype"], point["out_dtype"]
    if (in_dtype, out_dtype) not in dtype_pairs(direction):
        return None
    log = next(s.log for s in SOFTMAXES if s.name == point["op"])
    if direction == "fwd":
        tensors = (("x_ptr", ptr(in_dtype)), ("y_ptr", ptr(out_dtype)))
    else:
        tensors = (("g_ptr", ptr(in_dtype)), ("y_ptr", ptr(in_dtype)), ("dx_ptr", ptr(out_dtype)))
    consts = (("LOG", log), ("STRIDED", kind.strided), ("LOOP", kind.loop), ("ROWS", kind.rows),
              ("BLOCK_N", kind.block_n))
    sig = tensors + (("OUTER", "i64"), ("N", "i64"), ("INNER", "i64")) + tuple((n, "constexpr") for n, _ in consts)
    hints = ()
    if point["align"] == "16":
        hints = tuple(n for n, _ in tensors) + (("INNER",) if kind.strided else ("N",))
    return Variant(kernel=f"kernels.rowwise:softmax_{direction}", signature=sig, constexprs=consts,
                   divisible16=hints, num_warps=kind.num_warps, launch_params=("ROWS",))


WEIGHTS = ("none", "given")


@dataclasses.dataclass(frozen=True)
class Norm:
    """A normalisation over the trailing dims of contiguous rows: the grids' `norm` axis value,
    its aten forward and backward ops (gems ops of the same schemas) and whether it has a bias.

    The forward returns (y, mean, rstd) for LayerNorm and (y, rstd) for RMSNorm, the statistics
    in fp32 for fp32, fp16 and bf16 input (ATen's accumulate type), shaped as the input with
    the normalised dims set to 1. The backward takes the forward's statistics and an output
    mask and returns (grad_input, grad_weight[, grad_bias]), undefined where the mask is off."""

    name: str  # the grids' norm axis value
    rms: bool  # RMSNorm: no mean, no bias
    forward: str  # the aten forward op
    backward: str  # the aten backward op
    forward_schema: str  # the gems ops' schemas: aten's, written out for a torch that lacks the op
    backward_schema: str
    # Measured slower than ATen's kernels: enable() routes the overrides only where `include`
    # names them (no GPU measurement yet).
    opt_in: bool = False

    @property
    def bias(self) -> bool:
        return not self.rms

    @property
    def gems_ops(self) -> tuple:
        return (GemsOp(self.forward_schema), GemsOp(self.backward_schema))

    @property
    def aten_overrides(self) -> tuple:
        """The forward and backward where this torch has them with a CUDA kernel of their own and
        a derivative (an Autograd kernel, which runs in front of ours; _fused_rms_norm came in
        torch 2.8). Their out= forms are composites of these. RMSNorm's forward is also
        CompositeImplicitAutograd (for other devices), but its Autograd kernel runs first, so its
        gradient still comes from the backward op."""
        return tuple(name for name in (self.forward, self.backward) if schemas.has_schema(name)
                     and schemas.has_kernel(name, "CUDA") and schemas.has_kernel(name, "Autograd"))


NORMS = (
    Norm("layer", False, "native_layer_norm", "native_layer_norm_backward",
         "native_layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps) "
         "-> (Tensor, Tensor, Tensor)",
         "native_layer_norm_backward(Tensor grad_out, Tensor input, SymInt[] normalized_shape, Tensor mean, "
         "Tensor rstd, Tensor? weight, Tensor? bias, bool[3] output_mask) -> (Tensor, Tensor, Tensor)"),
    Norm("rms", True, "_fused_rms_norm", "_fused_rms_norm_backward",
         "_fused_rms_norm(Tensor input, int[] normalized_shape, Tensor? weight, float? eps) -> (Tensor, Tensor)",
         "_fused_rms_norm_backward(Tensor grad_out, Tensor input, int[] normalized_shape, Tensor rstd, "
         "Tensor? weight, bool[2] output_mask) -> (Tensor, Tensor)"),
)


@dataclasses.dataclass(frozen=True)
class NormKind:
    """A norm tile over contiguous rows. `max_n`: the longest row it takes; None: any row. The
    forward holds a row of up to `block_n` elements in registers and walks longer ones in
    `block_n` chunks (two passes); so does the backward with `bwd_block_n` (it holds more values
    per element: x, dy, w and two partial sums). The backward runs at most `programs` programs,
    each over row tiles p, p + programs, ... and writing one partial row of dw and db, which a
    second launch sums: a fixed count (not the SM count), so the sums are the same on every GPU."""

    max_n: int | None
    rows: int  # rows per tile
    block_n: int
    num_warps: int  # forward
    bwd_block_n: int
    bwd_warps: int
    programs: int  # backward

    @property
    def loop(self) -> bool:
        return self.max_n is None or self.max_n > self.block_n

    @property
    def bwd_loop(self) -> bool:
        return self.max_n is None or self.max_n > self.bwd_block_n


# 8-16 fp32 values per thread and operand (32 in the forward's n16k). The backward's program
# counts: about as many as an H100's 132 SMs hold at once (two programs of 8 warps, one of 16),
# more for short rows. Rows of 8k-16k elements loop in the backward: a register tile of 16k
# would spill.
NORM_KINDS = {
    "n64": NormKind(64, 16, 64, 4, 64, 4, 1056),
    "n256": NormKind(256, 8, 256, 4, 256, 4, 528),
    "n1k": NormKind(1024, 4, 1024, 8, 1024, 8, 264),
    "n4k": NormKind(4096, 1, 4096, 8, 4096, 8, 264),
    "n8k": NormKind(8192, 1, 8192, 16, 8192, 16, 132),
    "n16k": NormKind(16384, 1, 16384, 16, 8192, 16, 132),
    "nloop": NormKind(None, 1, 4096, 8, 4096, 8, 264),
}
# The backward's partial sums: none, dw (plane 0), dw and db (planes 0 and 1).
PARTIALS = ("none", "w", "wb")
# norm_cols: (partial rows per step, columns per program, num_warps).
COLS_TILE = (16, 128, 4)


def norm_kind_for(n: int) -> str:
    return next(name for name, k in NORM_KINDS.items() if k.max_n is None or n <= k.max_n)


def _norm(name: str) -> Norm:
    return next(m for m in NORMS if m.name == name)


def _make_norm_fwd(point, arch):
    norm, kind = _norm(point["norm"]), NORM_KINDS[point["kind"]]
    dtype, weight, bias = point["dtype"], point["weight"] == "given", point["bias"] == "given"
    if bias and not norm.bias:
        return None
    tensors = (("x_ptr", ptr(dtype)), ("w_ptr", ptr(dtype)), ("b_ptr", ptr(dtype)), ("y_ptr", ptr(dtype)),
               ("mean_ptr", "*fp32"), ("rstd_ptr", "*fp32"))
    consts = (("RMS", norm.rms), ("HAS_WEIGHT", weight), ("HAS_BIAS", bias), ("LOOP", kind.loop),
              ("ROWS", kind.rows), ("BLOCK_N", kind.block_n))
    sig = tensors + (("OUTER", "i64"), ("N", "i64"), ("eps", "fp32"), ("stats", "i32"))
    hints = ()
    if point["align"] == "16":
        hints = ("x_ptr", "y_ptr", "N") + (("w_ptr",) if weight else ()) + (("b_ptr",) if bias else ())
    return Variant(kernel="kernels.rowwise:norm_fwd", signature=sig + tuple((n, "constexpr") for n, _ in consts),
                   constexprs=consts, divisible16=hints, num_warps=kind.num_warps, launch_params=("ROWS",))


def _make_norm_bwd(point, arch):
    norm, kind = _norm(point["norm"]), NORM_KINDS[point["kind"]]
    dtype, weight, partials = point["dtype"], point["weight"] == "given", PARTIALS.index(point["partials"])
    if (partials == 2 and not norm.bias) or (partials and not weight):
        return None  # a bias gradient without a weight runs ATen's kernel
    tensors = (("dy_ptr", ptr(dtype)), ("x_ptr", ptr(dtype)), ("mean_ptr", "*fp32"), ("rstd_ptr", "*fp32"),
               ("w_ptr", ptr(dtype)), ("dx_ptr", ptr(dtype)), ("part_ptr", "*fp32"))
    consts = (("RMS", norm.rms), ("HAS_WEIGHT", weight), ("PARTIALS", partials), ("LOOP", kind.bwd_loop),
              ("ROWS", kind.rows), ("BLOCK_N", kind.bwd_block_n))
    sig = tensors + (("OUTER", "i64"), ("N", "i64"), ("write_dx", "i32"))
    hints = ()
    if point["align"] == "16":
        hints = ("dy_ptr", "x_ptr", "dx_ptr", "part_ptr", "N") + (("w_ptr",) if weight else ())
    return Variant(kernel="kernels.rowwise:norm_bwd", signature=sig + tuple((n, "constexpr") for n, _ in consts),
                   constexprs=consts, divisible16=hints, num_warps=kind.bwd_warps, launch_params=("ROWS",))


def _make_norm_cols(point, arch):
    dtype = point["dtype"]
    block_p, block_c, warps = COLS_TILE
    consts = (("BLOCK_P", block_p), ("BLOCK_C", block_c))
    sig = (("part_ptr", "*fp32"), ("dw_ptr", ptr(dtype)), ("db_ptr", ptr(dtype)), ("P", "i32"), ("N", "i64"),
           ("first_plane", "i32"))
    hints = ("part_ptr", "dw_ptr", "db_ptr", "N") if point["align"] == "16" else ()
    return Variant(kernel="kernels.rowwise:norm_cols", signature=sig + tuple((n, "constexpr") for n, _ in consts),
                   constexprs=consts, divisible16=hints, num_warps=warps, launch_params=("BLOCK_C",))


GRIDS = [
    KernelGrid(
        "rowwise",
        (("op", tuple(s.name for s in SOFTMAXES)), ("direction", DIRECTIONS), ("kind", tuple(KINDS)),
         ("in_dtype", FLOAT_DTYPES), ("out_dtype", FLOAT_DTYPES), ("align", ALIGNS)),
        _make,
        doc="softmax / log_softmax along one dim of a contiguous (outer, N, inner) view, fp32 math",
    ),
    KernelGrid(
        "norm_fwd",
        (("norm", tuple(m.name for m in NORMS)), ("kind", tuple(NORM_KINDS)), ("dtype", FLOAT_DTYPES),
         ("weight", WEIGHTS), ("bias", WEIGHTS), ("align", ALIGNS)),
        _make_norm_fwd,
        doc="LayerNorm / RMSNorm forward over contiguous rows, and each row's mean and rstd; fp32 math",
    ),
    KernelGrid(
        "norm_bwd",
        (("norm", tuple(m.name for m in NORMS)), ("kind", tuple(NORM_KINDS)), ("dtype", FLOAT_DTYPES),
         ("weight", WEIGHTS), ("partials", PARTIALS), ("align", ALIGNS)),
        _make_norm_bwd,
        doc="LayerNorm / RMSNorm backward: grad_input, and partial sums of grad_weight and grad_bias per program",
    ),
    KernelGrid(
        "norm_cols",
        (("dtype", FLOAT_DTYPES), ("align", ALIGNS)),
        _make_norm_cols,
        doc="grad_weight / grad_bias: the backward's partial sums added in a fixed order",
    ),
]


def _aten_schema_text(name: str) -> str:
    return str(schemas.aten_schema(name)).removeprefix("aten::")


# Rows of 10 normalised along dim 1; a norm's hidden size is its normalized_shape argument too,
# so it stays concrete under tracing (a ScalarType argument is written as its name).
_ROWS, _HIDDEN, _VEC, _STAT = T((6, 10)), T((6, 10), static=(1,)), T((10,), static=(0,)), T((6, 1))
EXAMPLES = {
    "_softmax": Example((_ROWS, 1, False)),
    "_log_softmax": Example((_ROWS, 1, False)),
    "_softmax_backward_data": Example((_ROWS, _ROWS, 1, "fp32")),
    "_log_softmax_backward_data": Example((_ROWS, _ROWS, 1, "fp32")),
    "rms_norm": Example((_HIDDEN, (10,), _VEC, 1e-6)),
    "_fused_rms_norm": Example((_HIDDEN, (10,), _VEC, 1e-6)),
    "_fused_rms_norm_backward": Example((_HIDDEN, _HIDDEN, (10,), _STAT, _VEC, (True, True))),
    "native_layer_norm": Example((_HIDDEN, (10,), _VEC, _VEC, 1e-5)),
    "native_layer_norm_backward": Example((_HIDDEN, _HIDDEN, (10,), _STAT, _STAT, _VEC, _VEC, (True, True, True))),
}
# Every gems op means what the aten op of its name does (rms_norm: torch.rms_norm, whose schema
# takes SymInt[]): aten's fake implementations serve them.
RMS_NORM = "rms_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, float? eps=None) -> Tensor"
GEMS_OPS = [GemsOp(schema, meta_from_aten=True, example=EXAMPLES[schema.split("(", 1)[0]])
            for schema in [_aten_schema_text(name) for s in SOFTMAXES for name in s.gems_ops] + [RMS_NORM]
            + [op.schema for m in NORMS for op in m.gems_ops]]
ATEN_OVERRIDES = ([AtenOverride(name) for s in SOFTMAXES for name in s.aten_overrides]
                  + [AtenOverride(name, opt_in=m.opt_in) for m in NORMS for name in m.aten_overrides])


# The norms' benchmark shapes (rows x hidden): LLM token counts and hidden sizes, and an uneven one.
NORM_BENCH_SIZES = ("4096x1024", "4096x4096", "4096x8192", "16384x1024", "16384x4096", "16384x8192", "3000x5120",
                    "4000x4095")


def _norm_bench_cases(m: Norm) -> list:
    """A norm's forward and backward with weight (and bias), every gradient asked for."""
    x, h, v = {"tensor": 0}, {"hidden": 1}, {"value": 1e-5 if m.bias else 1e-6}
    t = [{"tensor": i} for i in range(8)]
    if m.rms:
        fwd = dict(roles=("x", "vec"), args=[x, h, t[1], v], writes=("stat",))
        bwd = dict(roles=("x", "x", "stat", "vec"), args=[x, t[1], h, t[2], t[3], {"value": [True, True]}],
                   writes=("vec",))
    else:
        fwd = dict(roles=("x", "vec", "vec"), args=[x, h, t[1], t[2], v], writes=("stat", "stat"))
        bwd = dict(roles=("x", "x", "stat", "stat", "vec", "vec"),
                   args=[x, t[1], h, t[2], t[3], t[4], t[5], {"value": [True, True, True]}], writes=("vec", "vec"))
    cases = []
    for name, spec in ((m.forward, fwd), (m.backward, bwd)):
        if name in m.aten_overrides:
            cases.append(bench_case(name, name, "rowwise", "norm", FLOAT_DTYPES, inputs=len(spec["roles"]),
                                    sizes=NORM_BENCH_SIZES, **spec))
    return cases


def bench_cases() -> list:
    """Forward and backward over rows of the last dim ("rowwise": 4096 rows of n / 4096 elements at
    the large sizes, so `--sizes` picks the row length); the norms at NORM_BENCH_SIZES, and the
    fused gems::rms_norm beside torch.rms_norm."""
    cases = []
    for s in SOFTMAXES:
        cases.append(bench_case(s.forward, s.forward, "rowwise", "rowwise", FLOAT_DTYPES, extra_args=(-1, False)))
        cases.append(bench_case(s.backward, s.backward, "rowwise", "rowwise", FLOAT_DTYPES, inputs=2,
                                extra_args=(-1,), dtype_arg=True))
    for m in NORMS:
        cases += _norm_bench_cases(m)
    cases.append(bench_case("rms_norm", "gems::rms_norm", "rowwise", "norm", FLOAT_DTYPES, inputs=2, roles=("x", "vec"),
                            args=[{"tensor": 0}, {"hidden": 1}, {"tensor": 1}, {"value": 1e-6}],
                            sizes=NORM_BENCH_SIZES))
    return cases


# -- generated sources --------------------------------------------------------------------------

TABLES_HEADER = "rowwise_tables.h"
OPS_SOURCE = "family_rowwise_ops.cpp"


def _cpp_list(values) -> str:
    return "{" + ", ".join(values) + "}"


def tables_header() -> str:
    """The kinds and norm kinds (indexed as on the grids' kind axes) as C++ arrays."""
    b = lambda v: "true" if v else "false"  # noqa: E731
    ks = KINDS.values()
    return "\n".join([
        "// Generated by aot/family_rowwise.py from KINDS. Do not edit.",
        "#pragma once", "", "#include <cstdint>", "",
        "namespace gems::rowwise_tables {", "",
        f"// Kinds: {', '.join(f'{i} = {n}' for i, n in enumerate(KINDS))}. A max N of -1: loops over any row.",
        f"constexpr int kNumKinds = {len(KINDS)};",
        f"constexpr bool kStrided[kNumKinds] = {_cpp_list(b(k.strided) for k in ks)};",
        f"constexpr int64_t kMaxN[kNumKinds] = {_cpp_list(str(-1 if k.max_n is None else k.max_n) for k in ks)};",
        "", "// The kind of a row of n elements: the first of its layout whose max N holds it.",
        "inline int kind_for(bool strided, int64_t n) {",
        "  for (int k = 0; k < kNumKinds; ++k) {",
        "    if (kStrided[k] == strided && (kMaxN[k] < 0 || n <= kMaxN[k])) return k;",
        "  }",
        "  return -1;",
        "}", "",
        f"// Norm kinds (NORM_KINDS): {', '.join(f'{i} = {n}' for i, n in enumerate(NORM_KINDS))}.",
        f"constexpr int kNumNormKinds = {len(NORM_KINDS)};",
        f"constexpr int64_t kNormMaxN[kNumNormKinds] = "
        f"{_cpp_list(str(-1 if k.max_n is None else k.max_n) for k in NORM_KINDS.values())};",
        "// The backward's most programs (and partial rows of grad_weight / grad_bias).",
        f"constexpr int64_t kNormPrograms[kNumNormKinds] = {_cpp_list(str(k.programs) for k in NORM_KINDS.values())};",
        "", "// The norm kind of rows of n elements: the first whose max N holds it.",
        "inline int norm_kind_for(int64_t n) {",
        "  for (int k = 0; k < kNumNormKinds; ++k) {",
        "    if (kNormMaxN[k] < 0 || n <= kNormMaxN[k]) return k;",
        "  }",
        "  return -1;",
        "}", "", "}  // namespace gems::rowwise_tables", "",
    ])


def _entry_points(s: Softmax) -> list:
    log = "true" if s.log else "false"
    lines = []
    for name, kind in ((s.forward, "Forward"), (s.backward, "Backward")):
        schema = schemas.aten_schema(name)
        _, params = schemas.cpp_signature(schema)
        args = ", ".join(a.name for a in schema.arguments)
        call = f"const rowwise::{kind} call{{{log}, {args}}};"
        lines += [f"at::Tensor cuda::{name}({params}) {{", f"  {call}", "  at::Tensor result;",
                  "  const Fallback reason = rowwise::functional(call, result);",
                  f"  if (reason != Fallback::kNone) rowwise::unsupported(\"gems::{name}\", reason, call);",
                  "  return result;", "}", "",
                  f"at::Tensor aten_impl::{name}({params}) {{",
                  f"  static FallbackCounter& counter = fallback_counter(\"{name}\");", f"  {call}",
                  "  at::Tensor result;", "  const Fallback reason = rowwise::functional(call, result);",
                  "  counter.hit(reason);", f"  return reason == Fallback::kNone ? result : at::cuda::{name}({args});",
                  "}", ""]
        out_schema = schemas.aten_schema(f"{name}.out")
        ret, params = schemas.cpp_signature(out_schema)
        names = [a.name for a in out_schema.arguments]
        out = schemas.written(out_schema)[0]
        lines += [f"{ret} aten_impl::{name}_out({params}) {{",
                  f"  static FallbackCounter& counter = fallback_counter(\"{name}.out\");",
                  f"  const rowwise::{kind} call{{{log}, {', '.join(n for n in names if n != out)}}};",
                  f"  const Fallback reason = rowwise::into(call, {out});", "  counter.hit(reason);",
                  f"  return reason == Fallback::kNone ? {out} : at::cuda::{name}_outf({', '.join(names)});", "}", ""]
    return lines


def _norm_call(m: Norm, forward: bool) -> str:
    """The norm::Forward / norm::Backward of an entry point, from its schema's argument names."""
    rms = "true" if m.rms else "false"
    bias = "norm::kAbsent" if m.rms else "bias"
    if forward:
        return f"const norm::Forward call{{{rms}, input, normalized_shape, weight, {bias}, eps, true, false}};"
    mean = "norm::kUndefined" if m.rms else "mean"
    mask = "{output_mask[0], output_mask[1], false}" if m.rms else "output_mask"
    return f"const norm::Backward call{{{rms}, grad_out, input, normalized_shape, {mean}, rstd, weight, {bias}, {mask}}};"


def _norm_entry_points(m: Norm) -> list:
    lines = []
    overrides = m.aten_overrides
    for op, forward in ((m.gems_ops[0], True), (m.gems_ops[1], False)):
        schema = schemas.parse(op.schema)
        ret, params = schemas.cpp_signature(schema)
        args = ", ".join(a.name for a in schema.arguments)
        call = _norm_call(m, forward)
        run = "forward" if forward else "backward"
        # (y, mean, rstd) / (y, rstd); (grad_input, grad_weight[, grad_bias]).
        fields = ("r.a", "r.c") if (forward and m.rms) else ("r.a", "r.b") if m.rms else ("r.a", "r.b", "r.c")
        result = f"return {{{', '.join(fields)}}};"
        lines += [f"{ret} cuda::{op.cpp}({params}) {{", f"  {call}", "  norm::Results r;",
                  f"  const Fallback reason = norm::{run}(call, r);",
                  f"  if (reason != Fallback::kNone) norm::unsupported(\"gems::{op.name}\", reason, call);",
                  f"  {result}", "}", ""]
        if op.name in overrides:
            # Shapes torch rejects go to ATen's kernel uncounted: its error is torch's, word for word.
            lines += [f"{ret} aten_impl::{op.cpp}({params}) {{",
                      f"  static FallbackCounter& counter = fallback_counter(\"{op.name}\");", f"  {call}",
                      f"  if (!norm::valid(call)) return at::cuda::{op.cpp}({args});",
                      "  norm::Results r;", f"  const Fallback reason = norm::{run}(call, r);", "  counter.hit(reason);",
                      f"  if (reason != Fallback::kNone) return at::cuda::{op.cpp}({args});", f"  {result}", "}", ""]
    return lines


def ops_source() -> str:
    """The C++ entry points of every overload: each builds a rowwise::Forward or Backward (a
    norm::Forward or Backward) for the driver and, in an aten override, calls ATen's CUDA kernel
    where the driver falls back."""
    lines = ["// Generated by aot/family_rowwise.py from SOFTMAXES and NORMS. Do not edit.",
             '#include "gems_rowwise_ops.h"', ""]
    lines += [f"#include <ATen/ops/{name}_cuda_dispatch.h>" for s in SOFTMAXES for name in s.gems_ops]
    lines += [f"#include <ATen/ops/{name}_cuda_dispatch.h>" for m in NORMS for name in m.aten_overrides]
    lines += ["", '#include "ops/rowwise.h"', '#include "runtime/fallback.h"', "", "namespace gems {", ""]
    for s in SOFTMAXES:
        lines += _entry_points(s)
    for m in NORMS:
        lines += _norm_entry_points(m)
    lines += ["}  // namespace gems", ""]
    return "\n".join(lines)


def generated_sources() -> dict:
    return {TABLES_HEADER: tables_header(), OPS_SOURCE: ops_source()}
