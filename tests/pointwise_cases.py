"""Inputs and arguments for the generated pointwise ops, shared by the CPU suite, the GPU suite
and build_tools/bench_pointwise.py: from an op declaration (aot/family_pointwise.py) and the
overload that serves it, the aten call's keyword arguments, the kernel's runtime scalars as the
generated C++ wrapper computes them, and operands in a domain where torch defines the op."""

import re

import torch

from aot import family_pointwise as fam
from aot import pointwise

TORCH = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32,
         "i64": torch.int64, "bool": torch.bool}
OPS = {op.name: op for op in fam.OPS}
# Keyword values by schema argument name (floats; integer dtypes take INT_VALUES).
VALUES = {"negative_slope": 0.05, "alpha": 0.5, "scale": 0.75, "input_scale": 1.5, "beta": 1.5, "threshold": 0.25,
          "weight": 0.3, "value": -1.25, "min": -0.5, "max": 0.75, "nan": 1.5, "posinf": 100.0, "neginf": -100.0}
INT_VALUES = {"alpha": 2, "value": 3, "min": -50, "max": 70}
# Kernel scalars of overloads whose params are C++ expressions, from the call's keywords.
EXPRESSION_PARAMS = {
    "clamp": lambda kw: [kw["min"], kw["max"]],
    "nan_to_num": lambda kw: [kw["nan"], kw["posinf"], kw["neginf"]],
    "threshold": lambda kw: [kw["threshold"], kw["value"]],
    "threshold_backward": lambda kw: [kw["threshold"]],
}


def scalar_operand(op_name, dtype):
    """The value of a Python-scalar operand: pow's special exponents pick their own ops."""
    special = {f"pow_{case}": e for case, e, _ in fam.POW_CASES}
    if op_name in special:
        return special[op_name]
    if dtype == torch.bool:
        return True
    if op_name == "pow":
        return 1.75 if dtype.is_floating_point else 4
    return -1.75 if dtype.is_floating_point else 3


def uses(ov):
    """The ops an overload can run."""
    return [n for _, n in ov.select[1]] if ov.select else [ov.op]


def reference_overload(op_name):
    """The overload that serves the op as the reference: the functional one, else the in-place one
    (fill_, masked_fill_), else the out= one (frexp's two results)."""
    for kind in ("functional", "inplace", "out"):
        for ov in fam.OVERLOADS:
            if pointwise.overload_kind(pointwise.aten_schema(ov.aten)) == kind and op_name in uses(ov):
                return ov
    raise AssertionError(f"no overload serves {op_name}")


def call_kwargs(ov, op_name, dtype):
    """Keyword arguments of the aten call: params and the select argument."""
    kwargs = {}
    for p in ov.params:
        # A C++ expression of the schema's arguments: the one with a test value.
        name = next(n for n in re.findall(r"[A-Za-z_]\w*", p) if n in VALUES)
        value = VALUES[name]
        if not dtype.is_floating_point and name in INT_VALUES:
            value = INT_VALUES[name]
        kwargs[name] = value
    if ov.select and ov.select[0] is not None:  # a condition-select reads the operands instead
        arg, choices = ov.select
        kwargs[arg] = next(v for v, n in choices if n == op_name)
    return kwargs


def kernel_params(ov, op_name, dtype):
    """The op's runtime scalars, as the generated wrapper passes them."""
    kwargs = call_kwargs(ov, op_name, dtype)
    base = ov.aten.split(".")[0].rstrip("_")
    if ov.params and base in EXPRESSION_PARAMS:
        return EXPRESSION_PARAMS[base](kwargs)
    return [kwargs[p] for p in ov.params]


def operand_dtype(op, i, dtype_name):
    """Operand i's dtype; a fill's one tensor (its self, no operand) has the op's dtype."""
    return TORCH[op.operand_dtype(i, dtype_name) if i < op.arity else dtype_name]


def sample(op, dtype, shape, operand, device="cpu", gen=None, specials=True):
    """Operand `operand` of op: random values, NaN / inf / -0.0 first for floats; integer
    divisors never 0, shift amounts within the width."""
    if op.builder == "copy_op" and op.result_dtype in ("i32", "i64"):
        specials = False  # NaN and inf have no integer value (undefined behaviour in C++)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool().to(device)
    if not dtype.is_floating_point:
        if op.fn in ("bitwise_left_shift", "bitwise_right_shift") and operand == 1:
            return torch.randint(0, 12, shape, generator=gen, dtype=dtype).to(device)
        t = torch.randint(-100, 100, shape, generator=gen, dtype=dtype)
        if op.fn in ("div", "remainder") and operand == 1:
            t[t == 0] = 7  # integer division by zero is undefined behaviour in ATen too
        return t.to(device)
    t = (torch.randn(shape, generator=gen) * 3).to(dtype)
    flat = t.view(-1)
    if specials and flat.numel() >= 8:
        flat[:4] = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0], dtype=dtype)
    return t.to(device)
