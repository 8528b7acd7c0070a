"""GPU suite for every generated pointwise op (docs/TESTING.md), parametrised from the
declarations in aot/family_pointwise.py: each functional, in-place and out= overload through
the aten override, against ATen on float64 inputs (or exactly, for integer and bool results),
with dtype, shape and strides as ATen gives them, and no fallback where a variant exists."""

import pytest
import torch

import gems_aot
from aot import family_pointwise as fam
from aot import schemas
from conftest import requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

from pointwise_cases import OPS, TORCH, call_kwargs, operand_dtype, sample, scalar_operand, uses

RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
# Layouts: a dense tensor, a transposed one (strided path), a sliced one with a storage offset
# (unaligned: strided path), and a broadcast last operand.
LAYOUTS = ["dense", "transposed", "offset", "broadcast"]


def cases():
    for ov in fam.OVERLOADS:
        if not ov.override:
            continue
        for name in uses(ov):
            if OPS[name].builder == "copy_op" or OPS[name].extra_results:
                continue  # copy_'s dtype pairs and frexp's two results: test_pointwise_casts_gpu.py
            for dtype in OPS[name].dtypes:
                yield pytest.param(ov, name, dtype, id=f"{ov.aten}-{name}-{dtype}")


def operands_for(op, dtype_name, layout):
    shape = (33, 65)
    ops = []
    for i in range(max(op.arity, 1)):  # a fill's one tensor is the self it writes
        dtype = operand_dtype(op, i, dtype_name)
        if layout == "transposed":
            t = sample(op, dtype, shape[::-1], i, "cuda").t()
        elif layout == "offset":
            t = sample(op, dtype, (shape[0] * shape[1] + 1,), i, "cuda")[1:].view(shape)
        elif layout == "broadcast" and i == op.arity - 1 and i > 0:
            t = sample(op, dtype, shape[1:], i, "cuda", specials=False)
        else:
            t = sample(op, dtype, shape, i, "cuda")
        ops.append(t)
    return ops


def call(ov, name, operands, kind, out=None):
    schema = schemas.aten_schema(ov.aten)
    base, _, overload = ov.aten.partition(".")
    fn = getattr(getattr(torch.ops.aten, base), overload or "default")
    dtype = operands[-1].dtype if OPS[name].builder == "where_op" else operands[0].dtype
    kwargs = call_kwargs(ov, name, dtype)
    args = list(operands)
    types_ = {a.name: str(a.type) for a in schema.arguments}
    for i, a in enumerate(ov.operands):
        if types_[a] == "number":
            args[i] = scalar_operand(name, dtype)
    if kind == "out":
        written = [a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
        kwargs[written[0]] = out
    return fn(*args, **kwargs)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ov,name,dtype_name", cases())
def test_overload_against_aten(ov, name, dtype_name, layout):
    op = OPS[name]
    if layout == "broadcast" and op.arity < 2:
        pytest.skip("one tensor")
    kind = schemas.overload_kind(schemas.aten_schema(ov.aten))
    operands = operands_for(op, dtype_name, layout)
    schema = schemas.aten_schema(ov.aten)
    if any(str(a.type) == "number" for a in schema.arguments if a.name in ov.operands) and layout == "broadcast":
        pytest.skip("scalar operand")
    # The reference: ATen with gems off, float inputs widened to float64 then rounded once.
    with gems_aot.use_gems(include=[]):
        wide = [o.double() if o.is_floating_point() else o for o in operands]
        if kind == "inplace":
            expected_out = call(ov, name, [o.clone() for o in operands], kind)
            ref = call(ov, name, [w.clone() for w in wide], kind)
        elif kind == "out":
            expected_out = ref = None  # computed below, with the same wrong-size out= as gems gets
        else:
            expected_out = call(ov, name, operands, kind)
            ref = call(ov, name, wide, kind)
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=[ov.aten]):
        if kind == "inplace":
            target = [o.clone() for o in operands]
            res = call(ov, name, target, kind)
            assert res.data_ptr() == target[0].data_ptr()
        elif kind == "out":
            out_dtype = TORCH[op.out_dtype(dtype_name)]
            out = torch.full((1,), 7, device="cuda", dtype=out_dtype)  # wrong size: resized like ATen
            res = call(ov, name, operands, kind, out=out)
            assert res.data_ptr() == out.data_ptr() or res is out
            with gems_aot.use_gems(include=[]):
                aten_out = torch.full((1,), 7, device="cuda", dtype=out_dtype)
                call(ov, name, operands, kind, out=aten_out)
                wide = [o.double() if o.is_floating_point() else o for o in operands]
                wide_out = torch.empty(0, device="cuda", dtype=torch.float64 if out_dtype.is_floating_point else out_dtype)
                ref = call(ov, name, wide, kind, out=wide_out)
            expected_out = aten_out
        else:
            res = call(ov, name, operands, kind)
    counts = gems_aot.fallback_counts()
    assert counts == {}, counts  # served by a gems kernel
    with gems_aot.use_gems(include=[]):
        assert res.dtype == expected_out.dtype and res.shape == expected_out.shape
        if res.numel() > 1:
            assert res.stride() == expected_out.stride()
        if res.dtype.is_floating_point:
            # NaN and inf land where ATen puts them at this dtype: float64 keeps some products
            # finite (inf * a derivative that underflows to 0 only in opmath) that no kernel does.
            ref = torch.where(torch.isfinite(expected_out), ref.to(res.dtype), expected_out)
            torch.testing.assert_close(res, ref, rtol=RTOL[res.dtype], atol=1e-4, equal_nan=True)
        else:
            assert torch.equal(res, ref.to(res.dtype))


@pytest.mark.parametrize("name", ["exp", "add", "lt", "gelu", "div_floor"])
def test_gems_ops_and_meta(name):
    op = OPS[name]
    ov = next(o for o in fam.OVERLOADS if name in uses(o) and o.gems
              and schemas.overload_kind(schemas.aten_schema(o.aten)) == "functional")
    dtype = TORCH[op.dtypes[0]]
    operands = operands_for(op, op.dtypes[0], "dense")
    base, _, overload = ov.aten.partition(".")
    gems_fn = getattr(getattr(torch.ops.gems, base), overload or "default")
    kwargs = call_kwargs(ov, name, dtype)
    res = gems_fn(*operands, **kwargs)
    with gems_aot.use_gems(include=[]):
        ref = call(ov, name, operands, "functional")
    assert res.dtype == ref.dtype and res.shape == ref.shape
    torch.testing.assert_close(res.double(), ref.double(), rtol=1.3e-6, atol=1e-4, equal_nan=True)
    meta = gems_fn(*[o.to("meta") for o in operands], **kwargs)
    assert meta.shape == ref.shape and meta.dtype == ref.dtype and meta.device.type == "meta"


def test_unsupported_dtype_falls_back_counted():
    x = torch.randn(100, device="cuda", dtype=torch.float64)
    with gems_aot.use_gems(include=["exp"]):
        gems_aot.reset_fallback_counts()
        y = torch.exp(x)
    assert gems_aot.fallback_counts() == {("exp", "dtype"): 1}
    with gems_aot.use_gems(include=[]):
        torch.testing.assert_close(y, torch.exp(x))
    with pytest.raises(RuntimeError, match="gems::exp"):
        torch.ops.gems.exp(x)


def test_pow_bf16_special_values_like_aten():
    """bf16 pow runs its own kernel (exp2 of y * log2|x|): every pair of special bases and
    exponents, odd and even, against ATen's bf16 pow, signs of zeros and infinities included."""
    specials = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0,
                2.5, -2.5, 1e-30, 1e30, 7.0, -7.0]
    v = torch.tensor(specials, device="cuda", dtype=torch.bfloat16)
    x, y = v.repeat_interleave(len(specials)), v.repeat(len(specials))
    with gems_aot.use_gems(include=[]):
        expected = torch.pow(x, y)
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=["pow.Tensor_Tensor"]):
        res = torch.pow(x, y)
    assert gems_aot.fallback_counts() == {}
    torch.testing.assert_close(res, expected, rtol=1.6e-2, atol=0, equal_nan=True)
    numbers = ~torch.isnan(expected)  # a NaN's sign bit is not part of the result
    assert torch.equal(torch.signbit(res[numbers]), torch.signbit(expected[numbers]))
