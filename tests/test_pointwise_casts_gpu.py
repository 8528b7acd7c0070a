"""GPU suite for what the generic pointwise suite does not cover: copy_ between every pair of
dtypes (and the ops that reach it: _to_copy, clone, contiguous), the CompositeImplicitAutograd
ops served through the ops they decompose into (isclose, isfinite, true_divide) and pow.Scalar
through pow.Tensor_Tensor_out, clamp.Tensor with one bound, threshold's ATen-specific rules, and
frexp's two results.
Each result is compared with ATen's own on the same inputs (exactly: a cast has one answer)."""

import pytest
import torch
import torch.nn.functional as F

import gems_aot
from aot import family_pointwise as fam
from conftest import cuda_kernel_names, requires_gpu
from pointwise_cases import TORCH

pytestmark = [requires_gpu, pytest.mark.gpu]

CAST = [TORCH[d] for d in fam.CAST]


def cast_source(dtype, shape):
    gen = torch.Generator(device="cuda").manual_seed(0)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, device="cuda", generator=gen).bool()
    if not dtype.is_floating_point:
        return torch.randint(-(2**20), 2**20, shape, device="cuda", generator=gen, dtype=dtype)
    t = (torch.randn(shape, device="cuda", generator=gen) * 300).to(dtype)
    # NaN, infinities, -0.0, a value beyond int32, a fraction: every conversion's edge cases.
    t.view(-1)[:7] = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 6e4, -0.75, 0.5], dtype=dtype)
    return t


def same(res, expected, rtol=0.0, atol=0.0):
    assert res.dtype == expected.dtype and res.shape == expected.shape and res.stride() == expected.stride()
    torch.testing.assert_close(res, expected, rtol=rtol, atol=atol, equal_nan=True)


def assert_gems_kernels_only(fn):
    """Every kernel fn launches is a gems one: no ATen kernel, memcpy or memset, and no fallback."""
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems():
        names = cuda_kernel_names(fn)
    assert names and not [n for n in names if "at::" in n or "Memcpy" in n or "Memset" in n], names
    assert gems_aot.fallback_counts() == {}


# Layouts of (destination, source): the source broadcast, transposed, offset; both channels-last.
COPY_LAYOUTS = {
    "dense": lambda s, d: (torch.empty((33, 65), device="cuda", dtype=d), cast_source(s, (33, 65))),
    "transposed": lambda s, d: (torch.empty((33, 65), device="cuda", dtype=d), cast_source(s, (65, 33)).t()),
    "broadcast": lambda s, d: (torch.empty((33, 65), device="cuda", dtype=d), cast_source(s, (65,))),
    "offset": lambda s, d: (torch.empty((33, 65), device="cuda", dtype=d), cast_source(s, (33 * 65 + 1,))[1:].view(33, 65)),
    "channels_last": lambda s, d: (torch.empty((2, 3, 5, 7), device="cuda", dtype=d).to(memory_format=torch.channels_last),
                                   cast_source(s, (2, 3, 5, 7)).to(memory_format=torch.channels_last)),
    "destination_transposed": lambda s, d: (torch.empty((65, 33), device="cuda", dtype=d).t(), cast_source(s, (33, 65))),
}


@pytest.mark.parametrize("layout", COPY_LAYOUTS)
@pytest.mark.parametrize("dst", CAST, ids=str)
@pytest.mark.parametrize("src", CAST, ids=str)
def test_copy_casts_like_aten(src, dst, layout):
    expected, source = COPY_LAYOUTS[layout](src, dst)
    with gems_aot.use_gems(include=[]):
        expected.copy_(source)
    target = torch.full_like(expected, 1 if dst == torch.bool else 77)  # poisoned
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=["copy_"]):
        res = target.copy_(source)
    assert res is target and gems_aot.fallback_counts() == {}
    same(target, expected)


def test_copy_errors_and_fallbacks_like_aten():
    x = torch.randn(10, device="cuda")
    for make in (lambda: x[1:].copy_(x[:-1]),  # partial overlap
                 lambda: torch.zeros(1, device="cuda").expand(4).copy_(torch.ones(4, device="cuda")),  # internal
                 lambda: torch.empty(3, 4, device="cuda").copy_(torch.ones(5, device="cuda"))):  # shape
        with gems_aot.use_gems(include=[]), pytest.raises(RuntimeError) as aten_error:
            make()
        with gems_aot.use_gems(include=["copy_"]), pytest.raises(RuntimeError) as gems_error:
            make()
        assert str(gems_error.value) == str(aten_error.value)
    # Into dtypes without variants: ATen's copy_, counted; between devices: ATen's memcpy, which
    # is no kernel's to replace, so not counted.
    cpu = torch.randn(6, 5)
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=["copy_"]):
        to_gpu = torch.empty(6, 5, device="cuda", dtype=torch.bfloat16).copy_(cpu)
        to_double = torch.empty(6, 5, device="cuda", dtype=torch.float64).copy_(x[:5])
        y = torch.randn(5, device="cuda")
        y.copy_(y)  # the same tensor: nothing to do
    assert gems_aot.fallback_counts() == {("copy_", "args"): 1}
    same(to_gpu, cpu.to("cuda", torch.bfloat16))
    same(to_double, x[:5].double().expand(6, 5).contiguous())


@pytest.mark.parametrize("make,shape", [
    (lambda x: x.to(torch.bfloat16), (64, 48)), (lambda x: x.half(), (64, 48)), (lambda x: (x > 0).float(), (64, 48)),
    (lambda x: x.long().int(), (64, 48)), (lambda x: x.t().contiguous(), (64, 48)), (lambda x: x.clone(), (64, 48)),
    (lambda x: x.to(memory_format=torch.channels_last), (8, 4, 6, 10)),
], ids=["to_bf16", "half", "bool_to_float", "long_int", "contiguous", "clone", "channels_last"])
def test_to_copy_clone_contiguous_run_gems_copies(make, shape):
    x = torch.randn(shape, device="cuda")
    with gems_aot.use_gems(include=[]):
        expected = make(x)
    assert_gems_kernels_only(lambda: make(x))
    with gems_aot.use_gems():
        same(make(x), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name,fn", [
    ("isclose", lambda a, b: torch.isclose(a, b, rtol=1e-2, atol=1e-3)),
    ("isclose_equal_nan", lambda a, b: torch.isclose(a, b, equal_nan=True)),
    ("isfinite", lambda a, b: torch.isfinite(a)),
    ("true_divide", torch.true_divide),
    ("pow_scalar_base", lambda a, b: torch.pow(2.5, b)),
    ("pow_scalar_one", lambda a, b: torch.pow(1, b)),
])
def test_composites_run_through_gems_ops(name, fn, dtype):
    """CompositeImplicitAutograd ops are never overridden: their decompositions run gems kernels."""
    a = torch.randn(100, 37, device="cuda", dtype=dtype)
    b = (a + 1e-3 * torch.randn_like(a)).to(dtype)
    a.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -1.0])
    b.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -1.0])
    with gems_aot.use_gems(include=[]):
        expected = fn(a, b)
    assert_gems_kernels_only(lambda: fn(a, b))
    # libdevice's powf and nvcc's differ in the last bit of some fp32 results: TESTING.md's rtol.
    rtol = {torch.float32: 1.3e-6, torch.bfloat16: 1.6e-2}[dtype] if expected.is_floating_point() else 0.0
    with gems_aot.use_gems():
        same(fn(a, b), expected, rtol=rtol, atol=1e-4 if rtol else 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32])
def test_clamp_tensor_one_bound(dtype):
    x = (torch.randn(40, 30, device="cuda") * 50).to(dtype)
    bound = (torch.randn(30, device="cuda") * 20).to(dtype)
    if dtype.is_floating_point:
        x[0, 0], bound[1] = float("nan"), float("nan")
    for kwargs in ({"min": bound}, {"max": bound}, {"min": bound, "max": bound + 5}):
        with gems_aot.use_gems(include=[]):
            expected = torch.clamp(x, **kwargs)
        gems_aot.reset_fallback_counts()
        with gems_aot.use_gems(include=["clamp.Tensor"]):
            res = torch.clamp(x, **kwargs)
        assert gems_aot.fallback_counts() == {}, kwargs
        same(res, expected)


def test_clamp_tensor_rules_like_aten():
    x = torch.randn(4, 5, device="cuda")
    for make in (lambda: torch.clamp(x, min=torch.tensor(0.0)),  # a CPU bound: ATen's error
                 lambda: torch.clamp(x, None, None)):
        with gems_aot.use_gems(include=[]), pytest.raises(RuntimeError) as aten_error:
            make()
        with gems_aot.use_gems(include=["clamp.Tensor"]), pytest.raises(RuntimeError) as gems_error:
            make()
        assert str(gems_error.value) == str(aten_error.value)
    # An int32 tensor clamped by an int64 bound promotes to int64, as ATen does.
    xi = torch.randint(-100, 100, (4, 5), device="cuda", dtype=torch.int32)
    bi = torch.tensor([3], device="cuda", dtype=torch.int64)
    with gems_aot.use_gems(include=["clamp.Tensor"]):
        res = torch.clamp(xi, max=bi)
    with gems_aot.use_gems(include=[]):
        same(res, torch.clamp(xi, max=bi))


def test_threshold_takes_its_scalars_in_the_tensor_dtype():
    """ATen compares x <= threshold.to<scalar_t>(): bf16(0.1) is above 0.1 and must still count."""
    x = torch.tensor([0.1, 0.0996, 0.1006, float("nan"), -3.0, 7.0], device="cuda").to(torch.bfloat16)
    grad = torch.randn(6, device="cuda", dtype=torch.bfloat16)
    with gems_aot.use_gems(include=[]):
        expected = F.threshold(x, 0.1, 20.0)
        expected_grad = torch.ops.aten.threshold_backward(grad, x, 0.1)
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=["threshold", "threshold_backward"]):
        res = F.threshold(x, 0.1, 20.0)
        res_grad = torch.ops.aten.threshold_backward(grad, x, 0.1)
    assert gems_aot.fallback_counts() == {}
    same(res, expected)
    same(res_grad, expected_grad)


def test_threshold_out_of_a_wider_dtype_falls_back():
    """ATen's threshold writes an out= of a wider dtype; no variant casts, so ATen serves it."""
    x = torch.randn(50, device="cuda")
    out = torch.empty(50, device="cuda", dtype=torch.float64)
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=["threshold.out"]):
        torch.ops.aten.threshold.out(x, 0.5, -1.0, out=out)
    assert gems_aot.fallback_counts() == {("threshold.out", "mixed_dtype"): 1}
    with gems_aot.use_gems(include=[]):
        same(out, F.threshold(x, 0.5, -1.0).double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["dense", "transposed", "offset"])
def test_frexp_two_results_like_aten(dtype, layout):
    base = cast_source(dtype, (65, 33) if layout == "transposed" else (33 * 65 + 1,))
    base.view(-1)[7:10] = torch.tensor([1e-40, 6e-8, -3e-45]).to(dtype)  # subnormals (of fp32 or fp16)
    x = base.t() if layout == "transposed" else base[1:].view(33, 65) if layout == "offset" else base

    def empty_results():
        return torch.empty(0, device="cuda", dtype=dtype), torch.empty(0, device="cuda", dtype=torch.int32)

    with gems_aot.use_gems(include=[]):
        expected = torch.frexp(x)
        expected_out = torch.frexp(x, out=empty_results())
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=["frexp.Tensor_out"]):
        res = torch.frexp(x)  # frexp.Tensor (composite) allocates and calls frexp.Tensor_out
        outs = empty_results()
        res_out = torch.frexp(x, out=outs)  # resized as ATen does
    assert gems_aot.fallback_counts() == {}
    assert res_out[0] is outs[0] and res_out[1] is outs[1]
    for got, want in zip(res + res_out, expected + expected_out):
        same(got, want)


def test_frexp_rules_like_aten():
    """Results of another dtype raise ATen's error; fp64 (no gems kernel) falls back to ATen."""
    x = torch.randn(10, device="cuda")
    for out in ((torch.empty(10, device="cuda"), torch.empty(10, device="cuda")),
                (torch.empty(10, device="cuda", dtype=torch.half), torch.empty(10, device="cuda", dtype=torch.int32))):
        with gems_aot.use_gems(include=[]), pytest.raises(RuntimeError) as aten_error:
            torch.frexp(x, out=out)
        with gems_aot.use_gems(include=["frexp.Tensor_out"]), pytest.raises(RuntimeError) as gems_error:
            torch.frexp(x, out=out)
        assert str(gems_error.value) == str(aten_error.value)
    gems_aot.reset_fallback_counts()
    with gems_aot.use_gems(include=["frexp.Tensor_out"]):
        res = torch.frexp(x.double())
    assert gems_aot.fallback_counts() == {("frexp.Tensor_out", "dtype"): 1}
    for got, want in zip(res, torch.frexp(x.double())):
        same(got, want)
