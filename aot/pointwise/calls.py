"""Aten calls that reach each generated pointwise op, with arguments in a domain where torch
defines the op: shared by the tests (tests/pointwise_cases.py) and the benchmark cases the build
embeds in the extension (`python -m gems_aot bench`)."""

from __future__ import annotations

from aot import family_pointwise as fam
from aot import schemas
from aot.ops import Example, T
from aot.pointwise.rules import param_argument

OPS = {op.name: op for op in fam.OPS}
# Keyword values by schema argument name (floats; integer dtypes take INT_VALUES).
VALUES = {"negative_slope": 0.05, "alpha": 0.5, "scale": 0.75, "input_scale": 1.5, "beta": 1.5, "threshold": 0.25,
          "weight": 0.3, "value": -1.25, "min": -0.5, "max": 0.75, "nan": 1.5, "posinf": 100.0, "neginf": -100.0}
INT_VALUES = {"alpha": 2, "value": 3, "min": -50, "max": 70}
FLOAT_DTYPES = {"fp32", "fp16", "bf16"}


def uses(ov) -> list:
    """The ops an overload can run."""
    return [n for _, n in ov.select[1]] if ov.select else [ov.op]


def scalar_operand(op_name: str, dtype: str):
    """The value of a Python-scalar operand: pow's special exponents pick their own ops."""
    special = {f"pow_{case}": e for case, e, _ in fam.POW_CASES}
    if op_name in special:
        return special[op_name]
    if dtype == "bool":
        return True
    if op_name == "pow":
        return 1.75 if dtype in FLOAT_DTYPES else 4
    return -1.75 if dtype in FLOAT_DTYPES else 3


def call_kwargs(ov, op_name: str, dtype: str) -> dict:
    """Keyword arguments of the aten call: params and the select argument."""
    kwargs = {}
    for p in ov.params:
        name = param_argument(p)
        if name not in VALUES:
            raise KeyError(f"{ov.aten}: no test value for argument {name!r} of param {p!r}; add it to "
                           f"aot/pointwise/calls.py VALUES (and INT_VALUES for integer dtypes)")
        value = VALUES[name]
        if dtype not in FLOAT_DTYPES and name in INT_VALUES:
            value = INT_VALUES[name]
        kwargs[name] = value
    if ov.select and ov.select[0] is not None:  # a condition-select reads the operands instead
        arg, choices = ov.select
        kwargs[arg] = next(v for v, n in choices if n == op_name)
    return kwargs


def benchmarked_overloads():
    """(overload, op name, the aten overload to call) per op: the public call that reaches it.
    That is the functional overload that serves it (overridden, or a composite that reaches the
    op through its overridden out= form, as abs does), else the in-place one (fill_, masked_fill_,
    copy_), else the functional counterpart of the out= one (frexp.Tensor of frexp.Tensor_out)."""
    seen = set()
    for kind in ("functional", "inplace", "out"):
        for ov in fam.OVERLOADS:
            if schemas.overload_kind(schemas.aten_schema(ov.aten)) != kind or (kind == "inplace" and not ov.override):
                continue
            call = ov.aten
            if kind == "out":
                base, _, overload = ov.aten.partition(".")
                call = f"{base}.{overload[:-4]}" if overload.endswith("_out") else base
            for name in uses(ov):
                if kind == "functional" or name not in seen:
                    seen.add(name)
                    yield ov, name, call


def bench_cases() -> list:
    """Per op and dtype, the aten call and its arguments: {"tensor": i} is input i (shape of the
    benchmark size, dtype `tensors[i]`, values in [0.5, 1.5] or 1..7 or random bools), {"value": v}
    a literal, {"empty": dtype} a fresh tensor of that dtype that the call writes (copy_'s self).
    `reads` lists the inputs the call reads; it writes one result of `out` dtype."""
    cases = []
    for ov, name, call in benchmarked_overloads():
        op = OPS[name]
        types_ = {a.name: str(a.type) for a in schemas.aten_schema(call).arguments}
        calls = {}
        for dt in op.dtypes:
            tensors = [op.operand_dtype(i, dt) if i < op.arity else dt for i in range(max(op.arity, 1))]
            if op.builder == "copy_op":  # self.copy_(src): a cast into a tensor of the op's result dtype
                args, reads = [{"empty": op.result_dtype}, {"tensor": 0}], [0]
            elif not ov.operands:  # fill_: the one tensor is the self it writes
                args, reads = [{"tensor": 0}], []
            else:
                args = [{"value": scalar_operand(name, tensors[i])} if types_[a] == "number" else {"tensor": i}
                        for i, a in enumerate(ov.operands)]
                reads = [i for i, a in enumerate(ov.operands) if types_[a] != "number"]
            calls[dt] = {"tensors": tensors, "args": args, "kwargs": call_kwargs(ov, name, dt), "reads": reads,
                         "out": op.out_dtype(dt)}
        cases.append({"op": name, "call": call, "family": "pointwise", "kind": "elementwise", "calls": calls})
    return cases


def examples() -> dict:
    """{gems op name: Example} of every pointwise gems op (a functional overload), at its op's first
    dtype: (6, 10) operands, every argument by name."""
    out = {}
    for ov in fam.OVERLOADS:
        schema = schemas.aten_schema(ov.aten)
        if not ov.gems or schemas.overload_kind(schema) != "functional":
            continue
        name = uses(ov)[0]
        op, types_ = OPS[name], {a.name: str(a.type) for a in schema.arguments}
        dt = op.dtypes[0]
        operands = [(a, scalar_operand(name, op.operand_dtype(i, dt)) if types_[a] == "number"
                     else T((6, 10), op.operand_dtype(i, dt))) for i, a in enumerate(ov.operands)]
        out[ov.aten] = Example((), tuple(operands) + tuple(call_kwargs(ov, name, dt).items()))
    return out
