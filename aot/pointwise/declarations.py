"""Pointwise declarations: `PointwiseOp` (a scalar function of kernels/pointwise_math.py, its
operands, parameters, dtypes and ATen's TensorIterator promotion rule) and `Overload` (an aten
overload bound to one op, or to one op per value of a string argument), with their checks."""

from __future__ import annotations

import dataclasses
import importlib

from aot.pointwise.rules import param_argument
from aot.schemas import aten_schema, has_kernel, has_schema, overload_kind, schemas_for
from aot.variants import DTYPES

MATH_MODULE = "kernels.pointwise_math"

# TensorIterator builders (at::TensorIterator::<builder>), i.e. ATen's promotion rules, and the
# output dtype each gives for a compute dtype.
BUILDERS = ("unary_op", "unary_float_op", "unary_bool_op", "binary_op", "binary_float_op", "comparison_op",
            "ternary_op", "where_op", "nullary_op", "masked_fill_op", "copy_op", "threshold_op", "clamp_op",
            "frexp_op")
ARITY = {"unary_op": 1, "unary_float_op": 1, "unary_bool_op": 1, "binary_op": 2, "binary_float_op": 2,
         "comparison_op": 2, "ternary_op": 3, "where_op": 3, "nullary_op": 0, "masked_fill_op": 2, "copy_op": 1,
         "threshold_op": 1, "clamp_op": 3, "frexp_op": 1}
BOOL_OUT = ("comparison_op", "unary_bool_op")
LAYOUTS = ("contig", "contig64", "strided3", "strided8")
STRIDED_DIMS = {"strided3": 3, "strided8": 8}
# Contiguous kernels' (BLOCK, num_warps): 8 elements per thread, and 16 for 16-bit dtypes, whose
# transcendental ops are compute-bound and gain up to 8% from the extra work per thread (sweep of
# build_tools/sweep_pointwise.py on an H100; memory-bound ops do not care).
CONTIG_LAUNCH = (2048, 8)
CONTIG_LAUNCH_16BIT = (2048, 4)
STRIDED_BLOCK, STRIDED_WARPS = 512, 4


def compute_type(dtype: str) -> str:
    """Triton type of scalars in ATen's opmath for a dtype: fp32 for 16-bit floats."""
    return {"fp16": "fp32", "bf16": "fp32", "bool": "i1"}.get(dtype, dtype)


@dataclasses.dataclass(frozen=True)
class PointwiseOp:
    name: str  # unique; names the grid (pw_<name>) and the kernels
    fn: str  # scalar function in kernels/pointwise_math.py
    arity: int  # tensor operands, passed to fn first
    builder: str  # one of BUILDERS
    dtypes: tuple  # compute dtypes compiled (all operands share it)
    num_params: int = 0  # runtime scalars passed to fn after the operands, in opmath
    consts: tuple = ()  # ((NAME, value), ...) constexpr keyword arguments of fn
    # Which operands are tensors (t) or Python scalars (s); default: all tensors, and for binary
    # ops also "ts" and "st".
    forms: tuple = ()
    scalar_divisor_op: str = ""  # tensor / scalar runs as this op with the reciprocal (ATen's div)
    alpha: bool = False  # param 0 is `alpha`: ATen's alpha_check applies
    # Per operand: "" (the compute dtype) or a fixed dtype (where's condition is "bool").
    operand_dtypes: tuple = ()
    # (BLOCK, num_warps) of the contiguous kernels for every dtype, where the default is slower.
    contig_launch: tuple = ()
    # The output's dtype whatever the compute dtype (a cast: copy_op), else the builder's rule.
    result_dtype: str = ""
    # ((dtype, fn), ...): another scalar function for a dtype (pow_bf16), with kernels of its own.
    # On NVIDIA targets only: they use CUDA's libdevice approximations; AMD targets run `fn`.
    dtype_fns: tuple = ()
    # Results after the first, for a fn returning a tuple (frexp): "" (the compute dtype) or a
    # fixed dtype each. Served through out= overloads only.
    extra_results: tuple = ()

    def __post_init__(self):
        if self.builder not in BUILDERS:
            raise ValueError(f"{self.name}: unknown builder {self.builder}")
        if ARITY[self.builder] != self.arity:
            raise ValueError(f"{self.name}: builder {self.builder} does not take {self.arity} operands")
        if not self.operand_dtypes:
            object.__setattr__(self, "operand_dtypes", ("",) * self.arity)
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad:
            raise ValueError(f"{self.name}: unknown dtypes {bad}")
        if not self.forms:
            object.__setattr__(self, "forms", ("tt", "ts", "st") if self.arity == 2 else ("t" * self.arity,))
        if any(d not in self.dtypes for d, _ in self.dtype_fns):
            raise ValueError(f"{self.name}: dtype_fns for dtypes it is not compiled for")
        if any(d and d not in DTYPES for d in self.extra_results) or (self.extra_results and self.arity == 0):
            raise ValueError(f"{self.name}: bad extra_results {self.extra_results}")
        if self.result_dtype and self.result_dtype not in DTYPES:
            raise ValueError(f"{self.name}: unknown result_dtype {self.result_dtype}")
        if len(self.operand_dtypes) != self.arity or any(d and d not in DTYPES for d in self.operand_dtypes):
            raise ValueError(f"{self.name}: bad operand_dtypes {self.operand_dtypes}")
        if any(len(f) != self.arity or set(f) - {"t", "s"} or (self.arity and "t" not in f) for f in self.forms):
            raise ValueError(f"{self.name}: bad forms {self.forms}")

    def out_dtype(self, dtype: str) -> str:
        return self.result_dtype or ("bool" if self.builder in BOOL_OUT else dtype)

    def operand_dtype(self, i: int, dtype: str) -> str:
        return self.operand_dtypes[i] or dtype

    def result_dtypes(self, dtype: str) -> list:
        return [self.out_dtype(dtype)] + [d or dtype for d in self.extra_results]

    def fn_for(self, dtype: str, vendor: str = "nvidia") -> str:
        return dict(self.dtype_fns).get(dtype, self.fn) if vendor == "nvidia" else self.fn

    def kernel_dtypes(self) -> dict:
        """{scalar function: a dtype that runs it}: one set of kernels per function."""
        found = {}
        for d in self.dtypes:
            found.setdefault(self.fn_for(d), d)
        return found


def kernel_name(op: PointwiseOp, dtype: str, layout: str, vendor: str = "nvidia") -> str:
    """The generated kernel a variant runs: <op>[_<fn>]_<contig | strided3 | strided8>."""
    fn = op.fn_for(dtype, vendor)
    kind = "contig" if layout.startswith("contig") else layout
    return f"{op.name}_{kind}" if fn == op.fn else f"{op.name}_{fn}_{kind}"


@dataclasses.dataclass(frozen=True)
class Overload:
    """An aten overload served by an op (or by one op per value of `select`'s string argument).

    operands: schema argument names passed as the op's operands (a Scalar argument becomes a
      wrapped-number tensor, as ATen's own Scalar overloads do), in order.
    defaults: ((argument, C++ Scalar expression), ...): the wrapped number that stands in for a
      `Tensor?` operand when it is None (clamp's missing bound).
    params: the op's runtime scalars, in order: schema argument names, or rules of
      aot/pointwise/rules.py over one (clamp's missing bound becomes the dtype's extreme:
      BoundOrNone("min", side="lower")).
    select: (argument, ((value or None, op name), ...)) for a `str` / `str?` argument, or
      (None, ((C++ condition, op name), ...)): the first true condition picks (pow's exponents).
    check: a C++ statement run first, with the schema's argument names (ATen's extra checks).
    guard: rules of aot/pointwise/rules.py that must all hold, else the call goes to ATen (reason
      "args").
    result: a C++ expression allocating a functional overload's output where ATen's layout is not
      TensorIterator's (pow.Scalar's is contiguous whatever the exponent's).
    out_shape: C++ sizes to which an out= of another shape is resized, contiguous, before the
      kernel, where ATen resizes it so (pow.Scalar_out; the composite isinf.out).
    gems: also register the overload as torch.ops.gems.<name> (functional overloads only).
    override: replace ATen's kernel for it at the CUDA key under enable(): its CUDA kernel, or
      its CompositeExplicitAutograd one (copy_, isinf), which also stays the fallback.
    """

    aten: str
    op: str = ""
    operands: tuple = ("self",)
    defaults: tuple = ()
    params: tuple = ()
    select: tuple = ()
    check: str = ""
    guard: tuple = ()
    result: str = ""
    out_shape: str = ""
    gems: bool = True
    override: bool = True

    @classmethod
    def family(cls, aten: str, op: str, inplace: bool = True, **kw) -> list:
        """The functional overload `aten` and the in-place (unless inplace=False) and out= forms
        torch has for it: an overload is overridden where ATen has a CUDA kernel for it; the
        functional one is also a gems op."""
        functional = aten_schema(aten)
        base, _, name = aten.partition(".")
        args = [(a.name, str(a.type)) for a in functional.arguments]
        is_written = lambda a: a.alias_info is not None and a.alias_info.is_write  # noqa: E731
        found = [aten]
        inplace_name = f"{base}_" + (f".{name}" if name else "")
        # The in-place overload of the same name takes the same arguments (pow_.Scalar does not:
        # it is pow.Tensor_Scalar's).
        if inplace and has_schema(inplace_name):
            if [(a.name, str(a.type)) for a in aten_schema(inplace_name).arguments] == args:
                found.append(inplace_name)
        for s in schemas_for(base):
            if overload_kind(s) == "out" and [(a.name, str(a.type)) for a in s.arguments if not is_written(a)] == args:
                found.append(f"{base}.{s.overload_name}")
                break
        out = []
        for n in found:
            cuda = has_kernel(n, "CUDA")
            gems = n == aten
            if cuda or gems:
                out.append(cls(n, op, override=cuda, gems=gems, **kw))
        return out


def check_declarations(ops, overloads):
    names = [op.name for op in ops]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate pointwise ops: {dup}")
    kernels = [kernel_name(op, d, layout) for op in ops for d in op.kernel_dtypes().values()
               for layout in ("contig",) + tuple(STRIDED_DIMS)]
    if len(set(kernels)) != len(kernels):
        raise ValueError("two ops generate kernels of the same name")
    math = importlib.import_module(MATH_MODULE)
    for op in ops:
        for fn in op.kernel_dtypes():
            if not hasattr(math, fn):
                raise ValueError(f"{op.name}: {MATH_MODULE} has no function {fn}")
    atens = [ov.aten for ov in overloads]
    dup = sorted({n for n in atens if atens.count(n) > 1})
    if dup:
        raise ValueError(f"overloads declared twice: {dup}")
    for ov in overloads:
        names = {a.name for a in aten_schema(ov.aten).arguments}
        read = [param_argument(p) for p in ov.params] + [a for rule in ov.guard for a in rule.arguments]
        unknown = sorted(set(read) - names)
        if unknown:
            raise ValueError(f"{ov.aten}: params or guard read {unknown}, which are not arguments of its schema")
