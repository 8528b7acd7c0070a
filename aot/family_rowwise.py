"""Row-wise family: ops that normalise along one dim (softmax and log_softmax, forward and
backward, any dim; RMSNorm over the trailing dims, forward, as gems::rms_norm).

Its three places: the kernels (kernels/rowwise.py: `softmax_fwd`, `softmax_bwd`), these
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

Grid "rms_norm" (`rms_norm_fwd`), indexed by kind (contiguous ones: the normalised dims are the
trailing ones), dtype (the input's, the weight's and the result's), weight (none, or given) and
alignment. eps defaults to fp32's epsilon, as ATen's composite rms_norm (its opmath type's).
"""

from __future__ import annotations

import dataclasses

from aot import schemas
from aot.ops import AtenOverride, GemsOp, bench_case
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


def _make_rms_norm(point, arch):
    kind = KINDS[point["kind"]]
    if kind.strided:
        return None
    dtype, weight = point["dtype"], point["weight"] == "given"
    tensors = (("x_ptr", ptr(dtype)), ("w_ptr", ptr(dtype)), ("y_ptr", ptr(dtype)))
    consts = (("HAS_WEIGHT", weight), ("LOOP", kind.loop), ("ROWS", kind.rows), ("BLOCK_N", kind.block_n))
    sig = tensors + (("OUTER", "i64"), ("N", "i64"), ("eps", "fp32")) + tuple((n, "constexpr") for n, _ in consts)
    hints = ()
    if point["align"] == "16":
        hints = ("x_ptr", "y_ptr", "N") + (("w_ptr",) if weight else ())
    return Variant(kernel="kernels.rowwise:rms_norm_fwd", signature=sig, constexprs=consts, divisible16=hints,
                   num_warps=kind.num_warps, launch_params=("ROWS",))


GRIDS = [
    KernelGrid(
        "rowwise",
        (("op", tuple(s.name for s in SOFTMAXES)), ("direction", DIRECTIONS), ("kind", tuple(KINDS)),
         ("in_dtype", FLOAT_DTYPES), ("out_dtype", FLOAT_DTYPES), ("align", ALIGNS)),
        _make,
        doc="softmax / log_softmax along one dim of a contiguous (outer, N, inner) view, fp32 math",
    ),
    KernelGrid(
        "rms_norm",
        (("kind", tuple(KINDS)), ("dtype", FLOAT_DTYPES), ("weight", WEIGHTS), ("align", ALIGNS)),
        _make_rms_norm,
        doc="y = x * rsqrt(mean(x * x) + eps) * weight over contiguous rows, fp32 math",
    ),
]


def _aten_schema_text(name: str) -> str:
    return str(schemas.aten_schema(name)).removeprefix("aten::")


RMS_NORM = GemsOp("rms_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, float? eps=None) -> Tensor")
GEMS_OPS = [GemsOp(_aten_schema_text(name)) for s in SOFTMAXES for name in s.gems_ops] + [RMS_NORM]
ATEN_OVERRIDES = [AtenOverride(name) for s in SOFTMAXES for name in s.aten_overrides]


def bench_cases() -> list:
    """Forward and backward over rows of the last dim ("rowwise": 4096 rows of n / 4096 elements at
    the large sizes, so `--sizes` picks the row length)."""
    cases = []
    for s in SOFTMAXES:
        cases.append(bench_case(s.forward, s.forward, "rowwise", "rowwise", FLOAT_DTYPES, extra_args=(-1, False)))
        cases.append(bench_case(s.backward, s.backward, "rowwise", "rowwise", FLOAT_DTYPES, inputs=2,
                                extra_args=(-1,), dtype_arg=True))
    return cases


# -- generated sources --------------------------------------------------------------------------

TABLES_HEADER = "rowwise_tables.h"
OPS_SOURCE = "family_rowwise_ops.cpp"


def _cpp_list(values) -> str:
    return "{" + ", ".join(values) + "}"


def tables_header() -> str:
    """The kinds (indexed as on the grid's kind axis) as C++ arrays."""
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
                  f"at::Tensor meta::{name}({params}) {{", f"  {call}", "  return rowwise::meta(call);", "}", "",
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


def ops_source() -> str:
    """The C++ entry points of every overload: each builds a rowwise::Forward or Backward for the
    driver and, in an aten override, calls ATen's CUDA kernel where the driver falls back."""
    lines = ["// Generated by aot/family_rowwise.py from SOFTMAXES. Do not edit.", '#include "gems_rowwise_ops.h"', ""]
    lines += [f"#include <ATen/ops/{name}_cuda_dispatch.h>" for s in SOFTMAXES for name in s.gems_ops]
    lines += ["", '#include "ops/rowwise.h"', '#include "runtime/fallback.h"', "", "namespace gems {", ""]
    for s in SOFTMAXES:
        lines += _entry_points(s)
    lines += ["}  // namespace gems", ""]
    return "\n".join(lines)


def generated_sources() -> dict:
    return {TABLES_HEADER: tables_header(), OPS_SOURCE: ops_source()}
