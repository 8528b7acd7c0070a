"""Inputs and arguments for the generated pointwise ops, shared by the CPU and GPU suites: from
an op declaration (aot/family_pointwise.py) and the overload that serves it, the aten call's
arguments (aot/pointwise/calls.py, which the benchmark uses too), the kernel's runtime scalars as
the generated C++ wrapper computes them, and operands in a domain where torch defines the op."""

import torch

from aot import family_pointwise as fam
from aot import schemas
from aot.pointwise import calls

TORCH = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32,
         "i64": torch.int64, "bool": torch.bool}
OPS = calls.OPS
uses = calls.uses


def _dtype_name(dtype):
    """The declaration dtype name that stands for a torch dtype in a call's arguments."""
    return "bool" if dtype == torch.bool else "fp32" if dtype.is_floating_point else "i64"


def call_kwargs(ov, op_name, dtype):
    return calls.call_kwargs(ov, op_name, _dtype_name(dtype))


def scalar_operand(op_name, dtype):
    return calls.scalar_operand(op_name, _dtype_name(dtype))


# Kernel scalars of overloads whose params are C++ expressions, from the call's keywords.
EXPRESSION_PARAMS = {
    "clamp": lambda kw: [kw["min"], kw["max"]],
    "nan_to_num": lambda kw: [kw["nan"], kw["posinf"], kw["neginf"]],
    "threshold": lambda kw: [kw["threshold"], kw["value"]],
    "threshold_backward": lambda kw: [kw["threshold"]],
}


def reference_overload(op_name):
    """The overload that serves the op as the reference: the functional one, else the in-place one
    (fill_, masked_fill_), else the out= one (frexp's two results)."""
    for kind in ("functional", "inplace", "out"):
        for ov in fam.OVERLOADS:
            if schemas.overload_kind(schemas.aten_schema(ov.aten)) == kind and op_name in uses(ov):
                return ov
    raise AssertionError(f"no overload serves {op_name}")


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
