"""The pointwise generator: one declaration per op becomes kernels, variants and C++ glue.

A `PointwiseOp` names a scalar function of kernels/pointwise_math.py, its operand count, its
runtime scalar parameters, the dtypes it is compiled for and the ATen TensorIterator builder
whose promotion rules it follows. An `Overload` binds an aten overload (functional, in-place or
out=) to one op, or to one op per value of a string argument (div's rounding_mode).

From these the generator produces, with nothing written by hand per op:
  - the Triton source of every op's kernels (a contiguous 1-D kernel, 32- or 64-bit indexed,
    with 16-byte alignment hints, and strided kernels over up to 3 or 8 collapsed dims), as one
    module registered under GENERATED_MODULE (its text is also written to the build folder);
  - one KernelGrid per op: dtype x form (which operands are Python scalars) x layout;
  - the C++ wrappers with the exact aten signatures (from torch's own schemas at build time),
    the gems:: schemas, the aten override list and the Meta functions, all of which call the
    one shared driver in csrc/ops/pointwise.cpp.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import linecache
import sys
import types

from aot.ops import AtenOverride, GemsOp, cpp_name
from aot.schemas import aten_schema, cpp_signature, has_kernel, has_schema, overload_kind, schemas_for, written
from aot.variants import DTYPES, FLOAT_DTYPES, KernelGrid, Variant, ptr

GENERATED_MODULE = "gems_generated_pointwise"
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

    def fn_for(self, dtype: str) -> str:
        return dict(self.dtype_fns).get(dtype, self.fn)

    def kernel_dtypes(self) -> dict:
        """{scalar function: a dtype that runs it}: one set of kernels per function."""
        found = {}
        for d in self.dtypes:
            found.setdefault(self.fn_for(d), d)
        return found


def kernel_name(op: PointwiseOp, dtype: str, layout: str) -> str:
    """The generated kernel a variant runs: <op>[_<fn>]_<contig | strided3 | strided8>."""
    fn = op.fn_for(dtype)
    kind = "contig" if layout.startswith("contig") else layout
    return f"{op.name}_{kind}" if fn == op.fn else f"{op.name}_{fn}_{kind}"


@dataclasses.dataclass(frozen=True)
class Overload:
    """An aten overload served by an op (or by one op per value of `select`'s string argument).

    operands: schema argument names passed as the op's operands (a Scalar argument becomes a
      wrapped-number tensor, as ATen's own Scalar overloads do), in order.
    defaults: ((argument, C++ Scalar expression), ...): the wrapped number that stands in for a
      `Tensor?` operand when it is None (clamp's missing bound).
    params: the op's runtime scalars, in order: schema argument names, or C++ expressions of
      them (clamp's missing bound becomes the dtype's extreme).
    select: (argument, ((value or None, op name), ...)) for a `str` / `str?` argument, or
      (None, ((C++ condition, op name), ...)): the first true condition picks (pow's exponents).
    check: a C++ statement run first, with the schema's argument names (ATen's extra checks).
    guard: a C++ condition on the arguments; false sends the call to ATen (reason "args").
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
    guard: str = ""
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


# ---- kernel source ---------------------------------------------------------------------------

_PRELUDE = f'''"""Generated by aot/pointwise.py from the declarations in aot/family_pointwise.py. Do not edit."""

import importlib

import triton
import triton.language as tl

# Looked up in sys.modules, so that the CPU tests can substitute an interpreter-mode copy.
M = importlib.import_module("{MATH_MODULE}")


@triton.jit
def _operand(ptr, scalar, offs, mask, IS_SCALAR: tl.constexpr):
    # A Python scalar arrives by value, already in opmath; a tensor is loaded and 16-bit floats
    # widen to fp32, as ATen's opmath does.
    if IS_SCALAR:
        v = scalar
    else:
        v = tl.load(ptr + offs, mask=mask)
        if v.dtype.is_fp16() or v.dtype.is_bf16():
            v = v.to(tl.float32)
    return v
'''


def _results(op):
    """The kernel's output pointers: out, out1, ..."""
    return ["out"] + [f"out{k + 1}" for k in range(len(op.extra_results))]


def _names(op):
    ins = [f"in{i}" for i in range(op.arity)]
    scalars = [f"sc{i}" for i in range(op.arity)]
    params = [f"p{i}" for i in range(op.num_params)]
    flags = [f"S{i}" for i in range(op.arity)]
    return ins, scalars, params, flags


def _stores(op, fn, offs, mask, indent, size="BLOCK", at=lambda result: "offs"):
    """Statements storing fn of the operands (loaded at `offs`) into every result, each at
    `result + at(result)` and in its dtype."""
    ins, scalars, params, flags = _names(op)
    args = [f"_operand({p}, {s}, {offs}, {mask}, {f})" for p, s, f in zip(ins, scalars, flags)]
    args += params + [f"{n}={v!r}" for n, v in op.consts]
    value = f"M.{fn}({', '.join(args)})"
    masked = "" if mask == "None" else f", mask={mask}"
    results = _results(op)
    if len(results) > 1:  # fn returns a tuple, named after its block (one shape per name)
        r = f"r_{offs.lower()}"
        lines = [f"{r} = {value}"]
        lines += [f"tl.store({o} + {at(o)}, {r}[{k}].to({o}.dtype.element_ty){masked})" for k, o in enumerate(results)]
    elif not op.arity:  # a fill: fn of the params alone is a scalar
        lines = [f"tl.store(out + {at('out')}, tl.full(({size},), {value}.to(out.dtype.element_ty), out.dtype.element_ty)"
                 f"{masked})"]
    else:
        lines = [f"tl.store(out + {at('out')}, {value}.to(out.dtype.element_ty){masked})"]
    return "\n".join(indent + line for line in lines)


def _contig_source(op, name, fn) -> str:
    ins, scalars, params, flags = _names(op)
    args = ", ".join(ins + _results(op) + ["n"] + scalars + params + [f"{f}: tl.constexpr" for f in flags])
    tail_at = lambda result: "tail"  # noqa: E731
    return f'''

@triton.jit
def {name}({args}, INDEX64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if INDEX64:
        pid = pid.to(tl.int64)
    start = pid * BLOCK
    offs = start + tl.arange(0, BLOCK)
    # Full blocks take the unmasked branch, so aligned pointers give 16-byte accesses for any n.
    if start + BLOCK <= n:
{_stores(op, fn, "offs", "None", "        ")}
    else:
        # The last block: up to a multiple of 16 elements the mask is uniform per 16-byte vector
        # and the accesses stay vectorized; the rest (under 16) takes a 16-wide step. A mask down
        # to one element would scalarise the branch, and its registers count for the whole kernel
        # (bf16 gelu_backward tanh: 83 registers instead of 72, 0.86x ATen instead of 0.95x, H100).
        n16 = n // 16 * 16
        mask = offs < n16
{_stores(op, fn, "offs", "mask", "        ")}
        tail = n16 + tl.arange(0, 16)
        tail_mask = tail < n
{_stores(op, fn, "tail", "tail_mask", "        ", "16", tail_at)}
'''


def _strided_args(op, dims):
    """(size arguments with their types, stride arguments). Every size but the outermost comes
    with the magic number and shift of a division by it (csrc/ops/pointwise.cpp int_divider)."""
    ins = _names(op)[0]
    sizes = [(f"{name}{d}", t) for d in range(1, dims) for name, t in (("size", "i32"), ("mag", "u32"), ("sh", "i32"))]
    strides = [f"st_{t}_{d}" for t in ins + _results(op) for d in range(dims)]
    return sizes, strides


def _strided_source(op, name, fn, layout) -> str:
    dims = STRIDED_DIMS[layout]
    ins, scalars, params, flags = _names(op)
    sizes, strides = _strided_args(op, dims)
    args = ", ".join(ins + _results(op) + ["n"] + scalars + params + [n for n, _ in sizes] + strides
                     + [f"{f}: tl.constexpr" for f in flags])
    tensors = ins + _results(op)
    # Iteration shape (n / (size1 * ... ), size1, ..., size<dims-1>), the last dim fastest;
    # offsets in elements, 32-bit (the driver checks). The index is split per dim by a
    # multiply-high and a shift (ATen's IntDivider), not an integer division, which costs tens of
    # instructions per element and dim and made these kernels ALU-bound.
    body = ["    rem = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)", "    mask = rem < n"]
    body += [f"    o_{t} = rem * 0" for t in tensors]
    for d in range(dims - 1, 0, -1):
        body.append(f"    quot = ((tl.umulhi(rem.to(tl.uint32), mag{d}.to(tl.uint32)) + rem.to(tl.uint32)) >> sh{d})"
                    ".to(tl.int32)")
        body.append(f"    idx = rem - quot * size{d}")
        body.append("    rem = quot")
        body += [f"    o_{t} += idx * st_{t}_{d}" for t in tensors]
    body += [f"    o_{t} += rem * st_{t}_0" for t in tensors]
    stores = _stores(op, fn, "OFFS", "mask", "    ", at=lambda result: f"o_{result}")
    for t in ins:
        stores = stores.replace(f"_operand({t}, sc{t[2:]}, OFFS,", f"_operand({t}, sc{t[2:]}, o_{t},")
    body.append(stores)
    return f'''

@triton.jit
def {name}({args}, BLOCK: tl.constexpr):
''' + "\n".join(body) + "\n"


def kernel_source(ops) -> str:
    parts = [_PRELUDE]
    for op in ops:
        for fn, dtype in op.kernel_dtypes().items():
            parts.append(_contig_source(op, kernel_name(op, dtype, "contig"), fn))
            parts += [_strided_source(op, kernel_name(op, dtype, layout), fn, layout) for layout in STRIDED_DIMS]
    return "".join(parts)


def load_module(ops, math_module=None, name=GENERATED_MODULE):
    """Executes the generated source as module `name` (registered in sys.modules, its text in
    linecache so that Triton can read it). `math_module` replaces kernels.pointwise_math, e.g.
    with an interpreter-mode copy in the CPU tests (then set TRITON_INTERPRET=1 around this)."""
    source = kernel_source(ops)
    filename = f"<{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    if math_module is not None:
        # The prelude's import then finds this copy.
        saved = sys.modules.get(MATH_MODULE)
        sys.modules[MATH_MODULE] = math_module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own generated source
    finally:
        if math_module is not None:
            if saved is None:
                del sys.modules[MATH_MODULE]
            else:
                sys.modules[MATH_MODULE] = saved
    sys.modules[name] = module
    return module


# ---- variants --------------------------------------------------------------------------------


def make_variant(op: PointwiseOp, point, arch):
    dtype, form, layout = point["dtype"], point["form"], point["layout"]
    ins, scalars, params, flags = _names(op)
    index = "i64" if layout == "contig64" else "i32"
    sig = [(n, ptr(op.operand_dtype(i, dtype))) for i, n in enumerate(ins)]
    sig += [(o, ptr(d)) for o, d in zip(_results(op), op.result_dtypes(dtype))] + [("n", index)]
    sig += [(s, compute_type(op.operand_dtype(i, dtype))) for i, s in enumerate(scalars)]
    sig += [(p, compute_type(dtype)) for p in params]
    consts = [(f, c == "s") for f, c in zip(flags, form)]
    if layout.startswith("contig"):
        block, warps = op.contig_launch or (CONTIG_LAUNCH_16BIT if dtype in ("fp16", "bf16", "i16") else CONTIG_LAUNCH)
        kernel = kernel_name(op, dtype, layout)
        consts += [("INDEX64", layout == "contig64"), ("BLOCK", block)]
        hints = tuple(n for n, c in zip(ins, form) if c == "t") + tuple(_results(op))
    else:
        kernel, warps, hints = kernel_name(op, dtype, layout), STRIDED_WARPS, ()
        sizes, strides = _strided_args(op, STRIDED_DIMS[layout])
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


# ---- schemas and C++ -------------------------------------------------------------------------


def gems_schema(ov: Overload) -> str:
    return str(aten_schema(ov.aten)).split("::", 1)[1]


def _aten_kernel(name: str) -> str:
    """The dispatch key of ATen's kernel that an override replaces and falls back to."""
    for key in ("CUDA", "CompositeExplicitAutograd"):
        if has_kernel(name, key):
            return key
    raise ValueError(f"aten::{name} has neither a CUDA nor a CompositeExplicitAutograd kernel to override")


def _aten_call(ov: Overload) -> str:
    """ATen's own kernel for the overload (at::cuda::<op>[_outf], or the composite one)."""
    schema = aten_schema(ov.aten)
    base = ov.aten.split(".")[0]
    names = [a.name for a in schema.arguments]
    fn = f"{base}_outf" if overload_kind(schema) == "out" else base
    ns = "cuda" if _aten_kernel(ov.aten) == "CUDA" else "compositeexplicitautograd"
    return f"at::{ns}::{fn}({', '.join(names)})"


def _select_op(ov: Overload) -> list:
    """C++ lines that set `const OpDesc* op` (by the select argument's value)."""
    if not ov.select:
        return [f"  const pointwise::OpDesc* op = &kOp_{ov.op};"]
    arg, choices = ov.select
    lines = ["  const pointwise::OpDesc* op = nullptr;"]
    if arg is None:
        lines += [f"  {'else ' if i else ''}if ({cond}) op = &kOp_{name};" for i, (cond, name) in enumerate(choices)]
        return lines
    optional = str(next(a.type for a in aten_schema(ov.aten).arguments if a.name == arg)).startswith("Optional")
    for value, name in choices:
        if value is None:
            lines.append(f"  if (!{arg}.has_value()) op = &kOp_{name};")
        else:
            view = f"*{arg}" if optional else arg
            has = f"{arg}.has_value() && " if optional else ""
            lines.append(f'  if ({has}{view} == "{value}") op = &kOp_{name};')
    return lines


def _tensor_arg(ov: Overload, schema, name: str) -> str:
    """A pointer to operand `name` if the caller passed a tensor there, else nullptr (a Python
    scalar, an absent optional): what pointwise::covers looks at."""
    type_ = next(str(a.type) for a in schema.arguments if a.name == name)
    if type_ == "number":
        return "nullptr"
    if type_ == "Optional[Tensor]":
        return f"{name}.has_value() ? &*{name} : nullptr"
    return f"&{name}"


def _operand_exprs(ov: Overload, schema) -> tuple:
    types_ = {a.name: str(a.type) for a in schema.arguments}
    defaults = dict(ov.defaults)
    prep, refs = [], []
    for name in ov.operands:
        if types_[name] == "number":
            prep.append(f"  const at::Tensor {name}_t = at::native::wrapped_scalar_tensor({name});")
            refs.append(f"&{name}_t")
        elif types_[name] == "Optional[Tensor]":
            prep.append(f"  const at::Tensor {name}_t = {name}.has_value() ? *{name} : "
                        f"at::native::wrapped_scalar_tensor({defaults[name]});")
            refs.append(f"&{name}_t")
        else:
            refs.append(f"&{name}")
    return prep, refs


def _body(ov: Overload, mode: str) -> list:
    """C++ body that runs the driver; mode is aten (fallback to ATen), gems (error) or meta."""
    schema = aten_schema(ov.aten)
    kind = overload_kind(schema)
    lines = []
    if mode == "aten":
        lines.append(f'  static FallbackCounter& counter = fallback_counter("{ov.aten}");')
    lines += _select_op(ov)
    if ov.guard:
        lines.append(f"  if (!({ov.guard})) op = nullptr;")
    if mode != "meta":
        # Gems kernel or ATen is decided from the tensor arguments' dtypes first: a dtype the op
        # has no kernel for (complex, an integer for a float-only op) never reaches a
        # dtype-specific check or parameter.
        written_tensor = {"inplace": "self", "out": (written(schema) or [""])[0]}.get(kind, "")
        target = written_tensor or "at::Tensor()"
        args = ", ".join(_tensor_arg(ov, schema, name) for name in ov.operands) or "nullptr"
        fallback = f"return {_aten_call(ov)};" if mode == "aten" else (
            f'unsupported("gems::{ov.aten}", Fallback::kDtype, "no kernel for these dtypes");')
        counted = "counter.hit(Fallback::kDtype); " if mode == "aten" else ""
        lines.append(f"  if (op && !pointwise::covers(*op, {{{args}}}, {target})) {{ {counted}{fallback} }}")
    if ov.check:
        lines.append(f"  {ov.check}")
    prep, refs = _operand_exprs(ov, schema)
    lines += prep
    if refs:
        lines.append(f"  const at::Tensor* operands[] = {{{', '.join(refs)}}};")
    else:
        lines.append("  const c10::ArrayRef<const at::Tensor*> operands;")
    params = ", ".join(ov.params)
    lines.append(f"  const c10::Scalar params[] = {{{params}}};" if ov.params else "  const c10::ArrayRef<c10::Scalar> params;")
    results = written(schema)
    if len(results) > 1:  # out= of several results: run_results
        if mode != "aten":
            raise ValueError(f"{ov.aten}: several results are served through the aten override only")
        lines.append(f"  at::Tensor* results[] = {{{', '.join('&' + w for w in results)}}};")
        lines.append("  const Fallback r = op ? pointwise::run_results(*op, operands, params, results) : Fallback::kArgs;")
        lines += ["  counter.hit(r);", f"  if (r == Fallback::kNone) return std::forward_as_tuple({', '.join(results)});",
                  f"  return {_aten_call(ov)};"]
        return lines
    if kind == "functional":
        out = f"at::Tensor out = {ov.result};" if ov.result else "at::Tensor out;"
    elif kind == "inplace":
        out = "at::Tensor& out = self;"
    else:  # the out= argument, unless it is already named `out` (gelu_backward's is grad_input)
        out = "" if results == ["out"] else f"at::Tensor& out = {results[0]};"
    if out:
        lines.append(f"  {out}")
    if kind == "out" and ov.out_shape:
        lines.append(f"  at::native::resize_output(out, {ov.out_shape});")
    if mode == "meta":
        if ov.select or ov.guard:
            lines.append(f'  if (!op) unsupported("gems::{ov.aten}", Fallback::kArgs, "arguments");')
        lines.append("  pointwise::meta(*op, operands, params, out);")
        lines.append("  return out;")
        return lines
    lines.append(
        "  const Fallback r = op ? pointwise::run(*op, operands, params, out) : Fallback::kArgs;"
    )
    if mode == "aten":
        lines += ["  counter.hit(r);", "  if (r == Fallback::kNone) return out;", f"  return {_aten_call(ov)};"]
    else:
        lines += [f'  if (r != Fallback::kNone) unsupported("gems::{ov.aten}", r, pointwise::describe(operands));',
                  "  return out;"]
    return lines


def cpp_sources(ops, overloads, header_name: str) -> dict:
    """{file name: text} of the generated source (which includes the family's generated header of
    prototypes, `header_name`) and of the generated Triton module."""
    by_name = {op.name: op for op in ops}
    for ov in overloads:
        used = [n for _, n in ov.select[1]] if ov.select else [ov.op]
        missing = [n for n in used if n not in by_name]
        if missing:
            raise ValueError(f"{ov.aten}: unknown ops {missing}")
    sig = {ov.aten: cpp_signature(aten_schema(ov.aten)) for ov in overloads}
    gems = _gems_overloads(overloads)
    overrides = [ov for ov in overloads if ov.override]

    # In-place overloads (add_) share the header of their op (add).
    headers = sorted({(ov.aten.split(".")[0].rstrip("_"), _aten_kernel(ov.aten).lower())
                      for ov in overrides})
    c = ["// Generated by aot/pointwise.py. Do not edit.", f'#include "{header_name}"', "",
         "#include <ATen/MemoryOverlap.h>", "#include <ATen/ScalarOps.h>", "#include <ATen/native/BinaryOps.h>",
         "#include <ATen/native/Resize.h>"]
    c += [f"#include <ATen/ops/{b}_{key}_dispatch.h>" for b, key in headers]
    c += ["", '#include "gems_kernels.h"', '#include "ops/pointwise.h"', '#include "runtime/fallback.h"', "",
          "namespace gems {", "namespace {"]
    for op in ops:
        g = f"gen::pw_{op.name}"
        forms = {f: i for i, f in enumerate(op.forms)}
        # Index: bit k set when operand k is a Python scalar.
        table = []
        for mask in range(1 << op.arity):
            form = "".join("s" if mask >> k & 1 else "t" for k in range(op.arity))
            table.append(str(forms.get(form, -1)))
        c.append(f"constexpr int kForms_{op.name}[] = {{{', '.join(table)}}};")
        divisor = f"&kOp_{op.scalar_divisor_op}" if op.scalar_divisor_op else "nullptr"
        if op.scalar_divisor_op and ops.index(by_name[op.scalar_divisor_op]) > ops.index(op):
            raise ValueError(f"{op.name}: declare {op.scalar_divisor_op} first")
        fixed = ", ".join(f"c10::ScalarType::{DTYPES[d][1]}" if d else "c10::ScalarType::Undefined"
                          for d in op.operand_dtypes)
        c.append(f"constexpr c10::ScalarType kOperandDtypes_{op.name}[] = {{{fixed}}};")
        results = ", ".join(f"c10::ScalarType::{DTYPES[d][1]}" if d else "c10::ScalarType::Undefined"
                            for d in (op.result_dtype,) + tuple(op.extra_results))
        c.append(f"constexpr c10::ScalarType kResultDtypes_{op.name}[] = {{{results}}};")
        c.append(
            f'const pointwise::OpDesc kOp_{op.name}{{"{op.name}", pointwise::Builder::k_{op.builder}, {op.arity}, '
            f"{op.num_params}, &{g}::dtype_of, &{g}::find, kForms_{op.name}, kOperandDtypes_{op.name}, "
            f"{divisor}, {'true' if op.alpha else 'false'}, {1 + len(op.extra_results)}, kResultDtypes_{op.name}}};"
        )
    first = f"gen::pw_{ops[0].name}"
    c += [f"static_assert({first}::layout_{name} == pointwise::{enum});"
          for name, enum in zip(LAYOUTS, ("kContig", "kContig64", "kStrided3", "kStrided8"))]
    c += ["}  // namespace", ""]
    for ns, group, mode in (("aten_impl", overrides, "aten"), ("cuda", gems, "gems"), ("meta", gems, "meta")):
        c.append(f"namespace {ns} {{")
        for ov in group:
            ret, params = sig[ov.aten]
            c.append(f"{ret} {cpp_name(ov.aten)}({params}) {{")
            c += _body(ov, mode)
            c.append("}")
        c.append(f"}}  // namespace {ns}")
    c += ["}  // namespace gems", ""]
    return {"family_pointwise_ops.cpp": "\n".join(c),
            f"{GENERATED_MODULE}.py": kernel_source(ops)}


def _gems_overloads(overloads):
    return [ov for ov in overloads if ov.gems and overload_kind(aten_schema(ov.aten)) == "functional"]


def registrations(overloads):
    """(GEMS_OPS, ATEN_OVERRIDES) for the family module."""
    gems = [GemsOp(gems_schema(ov)) for ov in _gems_overloads(overloads)]
    return gems, [AtenOverride(ov.aten) for ov in overloads if ov.override]


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
        aten_schema(ov.aten)


__all__ = ["FLOAT_DTYPES", "Overload", "PointwiseOp", "cpp_sources", "grid", "kernel_name", "load_module",
           "registrations"]
