"""The pointwise family's C++: per overload a wrapper with torch's exact signature (for the aten
override, the gems:: op and its Meta function), each calling the shared driver in
csrc/ops/pointwise.cpp, and the op descriptors the driver reads."""

from __future__ import annotations

from aot.ops import AtenOverride, GemsOp, cpp_name
from aot.pointwise.declarations import LAYOUTS, Overload
from aot.pointwise.rules import param_cpp
from aot.pointwise.triton_source import GENERATED_MODULE, kernel_source
from aot.schemas import aten_schema, cpp_signature, has_kernel, overload_kind, written
from aot.variants import DTYPES


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
    """C++ body that runs the driver; mode is aten (fallback to ATen) or gems (error)."""
    schema = aten_schema(ov.aten)
    kind = overload_kind(schema)
    lines = []
    if mode == "aten":
        lines.append(f'  static FallbackCounter& counter = fallback_counter("{ov.aten}");')
    lines += _select_op(ov)
    if ov.guard:
        lines.append(f"  if (!({' && '.join(rule.cpp(schema) for rule in ov.guard)})) op = nullptr;")
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
    params = ", ".join(param_cpp(p, schema) for p in ov.params)
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
    c = ["// Generated by aot/pointwise/cpp.py. Do not edit.", f'#include "{header_name}"', "",
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
    for ns, group, mode in (("aten_impl", overrides, "aten"), ("cuda", gems, "gems")):
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
    gems = [GemsOp(gems_schema(ov), meta_from_aten=True) for ov in _gems_overloads(overloads)]
    return gems, [AtenOverride(ov.aten) for ov in overloads if ov.override]
