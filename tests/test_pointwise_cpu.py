"""Pointwise kernels in interpreter mode against torch on the CPU, and the declarations."""

import pytest
import torch

from aot import family_pointwise as fam
from conftest import interpreted

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32,
          "i64": torch.int64}
BLOCK = 64  # small blocks keep the interpreter fast; the math does not depend on the size


def reference(op, x, y, alpha):
    if op == "add":
        return torch.add(x, y, alpha=alpha)
    if op == "sub":
        return torch.sub(x, y, alpha=alpha)
    if op == "mul":
        return torch.mul(x, y)
    return torch.div(x, y)


def sample(dtype, shape, gen):
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    return torch.randint(-1000, 1000, shape, generator=gen, dtype=dtype)


def scalar_value(dtype):
    return -111.999 if dtype.is_floating_point else 7


def as_opmath(v, dtype):
    return float(torch.tensor(v, dtype=torch.float32)) if dtype.is_floating_point else int(v)


def ops_for(dtype_name):
    return [op for op in fam.BINARY_OPS if not (op == "div" and dtype_name in ("i32", "i64"))]


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("form", ["tt", "ts", "st"])
def test_binary_contig(dtype_name, form, seeded):
    k = interpreted("kernels.pointwise")
    dtype = DTYPES[dtype_name]
    n = 3 * BLOCK + 17  # full blocks and a ragged tail
    for op in ops_for(dtype_name):
        if op == "div" and form == "ts":
            continue  # runs as mul by the reciprocal (the driver's job, tested on the GPU)
        x, y = sample(dtype, (n,), seeded), sample(dtype, (n,), seeded)
        if op == "div":
            y = torch.where(y.abs() < 0.1, torch.ones_like(y), y)
        alpha = 1 if op in ("mul", "div") else (2 if not dtype.is_floating_point else 0.5)
        s = scalar_value(dtype)
        out = torch.full((n,), 123, dtype=dtype)  # poisoned
        xs = ys = 0
        xa, ya = x, y
        if form == "ts":
            ys, ya = as_opmath(s, dtype), torch.tensor(s, dtype=torch.float64 if dtype.is_floating_point else dtype)
        if form == "st":
            xs, xa = as_opmath(s, dtype), torch.tensor(s, dtype=torch.float64 if dtype.is_floating_point else dtype)
        k.binary_contig[(triton_cdiv(n, BLOCK),)](
            x, y, out, n, xs, ys, alpha, OP=op, FORM=form, UPCAST=dtype in (torch.float16, torch.bfloat16),
            INDEX64=False, BLOCK=BLOCK)
        ref = reference(op, xa.double() if dtype.is_floating_point else xa,
                        ya.double() if dtype.is_floating_point else ya, alpha).to(dtype)
        torch.testing.assert_close(out, ref, rtol=1.6e-2 if dtype == torch.bfloat16 else 1e-3, atol=1e-3,
                                   msg=f"{op} {dtype_name} {form}")


def triton_cdiv(a, b):
    return (a + b - 1) // b


def strided_args(t):
    """Element strides of t viewed with 4 dims (leading dims padded), as the driver passes them."""
    strides = [0] * (4 - t.dim()) + list(t.stride())
    return strides


@pytest.mark.parametrize("dtype_name", ["fp32", "bf16", "i64"])
def test_binary_strided(dtype_name, seeded):
    k = interpreted("kernels.pointwise")
    dtype = DTYPES[dtype_name]
    base = sample(dtype, (5, 6, 7), seeded)
    x = base.transpose(0, 2)  # (7, 6, 5), non-contiguous
    y = sample(dtype, (6, 1), seeded).expand(7, 6, 5)  # broadcast: stride 0
    for op in ops_for(dtype_name):
        out = torch.full((7, 6, 5), 77, dtype=dtype).transpose(0, 1).contiguous().transpose(0, 1)
        y_ = torch.where(y == 0, torch.ones_like(y), y) if op == "div" else y
        n = x.numel()
        args = [x, y_, out, n, 0, 0, 2 if op in ("add", "sub") and not dtype.is_floating_point else 1, 7, 6, 5]
        for t in (x, y_, out):
            args += strided_args(t)
        k.binary_strided[(triton_cdiv(n, BLOCK),)](
            *args, OP=op, FORM="tt", UPCAST=dtype == torch.bfloat16, BLOCK=BLOCK)
        alpha = args[6]
        ref = reference(op, x.double() if dtype.is_floating_point else x,
                        y_.double() if dtype.is_floating_point else y_, alpha).to(dtype)
        torch.testing.assert_close(out, ref, rtol=1.6e-2, atol=1e-3, msg=op)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_relu(dtype_name, seeded):
    k = interpreted("kernels.pointwise")
    dtype = DTYPES[dtype_name]
    n = 2 * BLOCK + 5
    x = sample(dtype, (n,), seeded)
    if dtype.is_floating_point:
        x[3] = float("nan")  # ATen's relu propagates NaN
        x[4] = float("-inf")
    out = torch.full((n,), 9, dtype=dtype)
    k.unary_contig[(triton_cdiv(n, BLOCK),)](x, out, n, OP="relu", INDEX64=False, BLOCK=BLOCK)
    torch.testing.assert_close(out, torch.relu(x), equal_nan=True, rtol=0, atol=0)
    # strided: a transposed view into a transposed output
    x2 = sample(dtype, (9, 11), seeded).t()
    out2 = torch.full((11, 9), 9, dtype=dtype)
    k.unary_strided[(triton_cdiv(x2.numel(), BLOCK),)](
        x2, out2, x2.numel(), 1, 11, 9, *strided_args(x2), *strided_args(out2), OP="relu", BLOCK=BLOCK)
    torch.testing.assert_close(out2, torch.relu(x2), rtol=0, atol=0)


def test_div_by_zero_and_exact_rounding(seeded):
    k = interpreted("kernels.pointwise")
    x = torch.tensor([1.0, -1.0, 0.0, 1.0, 7.0, 1e30] + [3.0] * 58)
    y = torch.tensor([0.0, 0.0, 0.0, 3.0, 3.0, 1e-30] + [7.0] * 58)
    out = torch.empty(64)
    k.binary_contig[(1,)](x, y, out, 64, 0.0, 0.0, 1.0, OP="div", FORM="tt", UPCAST=False, INDEX64=False,
                          BLOCK=BLOCK)
    torch.testing.assert_close(out, x / y, equal_nan=True, rtol=0, atol=0)


def test_grid_coverage():
    """What the declarations cover, so a change to the variant product is deliberate."""
    binary = next(g for g in fam.GRIDS if g.name == "binary")
    built = [p for p in binary.points() if binary.make(p, 90) is not None]
    assert not [p for p in built if p["op"] == "div" and p["dtype"] in ("i32", "i64")]
    assert not [p for p in built if p["index"] == "i64" and p["layout"] != "aligned"]
    assert len(built) == 3 * 5 * 3 * 4 + 3 * 2 * 4  # add/sub/mul: 5 dtypes, 3 forms; div: floats, tt+st
    names = [o.name for o in fam.ATEN_OVERRIDES]
    assert {"add.Tensor", "add_.Tensor", "add.out", "div.out", "relu", "relu_"} <= set(names)
