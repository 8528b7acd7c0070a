"""GPU accuracy suite of the reduce family (every reduction of aot/family_reduce.py), per docs/TESTING.md."""

import itertools
import warnings

import pytest
import torch
from conftest import fallback_reader, requires_gpu

from aot import family_reduce as fam

pytestmark = requires_gpu

NAMES = [r.name for r in fam.REDUCTIONS]
EXACT = {r.name for r in fam.REDUCTIONS if fam.COMBINES[r.combine].exact}  # results are input elements
SAME_DTYPE = {r.name for r in fam.REDUCTIONS if r.result == "same"}  # reductions with no dtype argument
UNARY = {r.name for r in fam.REDUCTIONS if r.result == "unary"}  # max(), min(): every element, no dim
ARG = {r.name for r in fam.REDUCTIONS if r.result == "arg"}  # argmax, argmin: one dim or None (flattened)
WITH_DIM = {r.name for r in fam.REDUCTIONS if r.result == "input"}  # max.dim, min.dim: one dim, (values, indices)
INDEXED = ARG | WITH_DIM
RAISES_ON_EMPTY = {r.name for r in fam.REDUCTIONS if r.empty.startswith("raise")}
BOOL_RESULT = {r.name for r in fam.REDUCTIONS if r.result == "bool"}  # all, any: no dtype, no gradient
VARIANCES = {r.name for r in fam.REDUCTIONS if r.finish == "var"}  # var, std, var_mean, std_mean: correction=
WITH_MEAN = {r.name for r in fam.REDUCTIONS if r.with_mean}  # (result, mean); no out= override
# Reductions with an out= overload of one result (the indexed and unary ones: test_extreme_out).
HAS_OUT = [r.name for r in fam.REDUCTIONS if any(o.endswith("out") for o in r.aten_overrides)
           and r.name not in INDEXED | UNARY]
SHAPES = [(), (1,), (0,), (0, 7), (1024, 1024), (20, 320, 15), (16, 128, 64, 60), (16, 7, 57, 32, 29)]
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-7}
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
INTS = (torch.int32, torch.int64, torch.bool, torch.uint8, torch.int8, torch.int16)
OVERRIDES = tuple(o.name for o in fam.ATEN_OVERRIDES)
# The overload torch.<name>(x, dim) reaches.
OVERLOAD_OF_DIM = {"sum": "sum.dim_IntList", "mean": "mean.dim", "prod": "prod.dim_int", "all": "all.dim",
                   "any": "any.dim", "var": "var.correction", "std": "std.correction",
                   "var_mean": "var_mean.correction", "std_mean": "std_mean.correction"}
TORCH_DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32,
               "i64": torch.int64, "bool": torch.bool, "u8": torch.uint8, "i8": torch.int8, "i16": torch.int16}


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


@pytest.fixture
def counts(gems):
    return fallback_reader(gems, OVERRIDES)


def covered_dtypes(name):
    return [TORCH_DTYPE[d] for d in fam.BY_NAME[name].dtypes]


def make(shape, dtype, seed=0, name="sum"):
    if name in BOOL_RESULT:  # zeros at every 7th element of the first half (all), else nonzeros
        values = make(shape, dtype, seed)
        values = torch.where(values == 0, torch.ones((), dtype=dtype, device="cuda"), values)
        n = values.numel()
        index = torch.arange(n, device="cuda")
        sparse = ((index % 7 == 3) & (index < n // 2)).reshape(shape)
        zero = torch.zeros((), dtype=dtype, device="cuda")
        return torch.where(sparse, zero, values) if name == "all" else torch.where(sparse, values, zero)
    g = torch.Generator(device="cuda").manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g, device="cuda") < 0.5
    if name == "prod":  # factors near +-1 keep long products finite; integer ones nonzero mod 2**64
        if not dtype.is_floating_point:
            values = torch.tensor([-1, 1, 1, 1, 3], dtype=dtype, device="cuda")
            return values[torch.randint(0, 5, shape, generator=g, device="cuda")]
        sign = torch.where(torch.rand(shape, generator=g, device="cuda") < 0.5, -1.0, 1.0)
        return (sign * (0.95 + 0.1 * torch.rand(shape, generator=g, device="cuda"))).to(dtype)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, device="cuda", dtype=dtype)
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        return torch.randint(info.min, info.max, shape, generator=g, device="cuda", dtype=dtype)
    return torch.randn(shape, generator=g, device="cuda").to(dtype)


def dim_lists(name, ndim):
    """None, every dim (also negative), and for all but prod, argmax (one dim at most) and max.dim
    (one dim) every dim list of two and more dims; max() has None only."""
    if name in UNARY:
        return [None]
    out = [] if name in WITH_DIM else [None]
    for d in range(ndim):
        out += [d, d - ndim]
    if ndim == 0 and name in INDEXED:
        out += [0, -1]
    if name == "prod" or name in INDEXED:
        return out
    out.append([])
    for k in range(2, ndim + 1):
        out += [list(c) for c in itertools.combinations(range(ndim), k)]
    if ndim >= 2:
        out.append([-1, 0])
    return out


def keepdims(name, dim):
    """The keepdim values a call of the reduction over dim takes (prod and max() have no keepdim
    form for every dim)."""
    return (False,) if name in UNARY or (name == "prod" and dim is None) else (False, True)


def supported(name, dim):
    """Whether the reduction has a form for dim (a dim list, one dim or None)."""
    if name in UNARY:
        return dim is None
    if name in WITH_DIM:
        return isinstance(dim, int)
    return not isinstance(dim, (list, tuple)) or name not in ARG | {"prod"}


def reduce_call(name, x, dim=None, keepdim=False, dtype=None, correction=None, **out):
    """The reduction as a user writes it: torch.<op>, with the dim forms each op takes (dim
    None: every dim; prod has no form for every dim with keepdim; max() none with a dim;
    argmax: one dim or None; max.dim: one dim, (values, indices) as a tuple)."""
    fn = getattr(torch, fam.BY_NAME[name].op)
    kwargs = dict(out, **({"dtype": dtype} if dtype is not None else {}))
    if name in UNARY:
        assert dim is None and not keepdim
        return fn(x, **out)
    if name in ARG:
        return fn(x, dim, keepdim, **out)
    if name in WITH_DIM:
        return tuple(fn(x, dim, keepdim, **out))
    if name in SAME_DTYPE:
        return fn(x, () if dim is None else dim, keepdim, **out)
    if name in BOOL_RESULT:  # dim=[] reduces nothing: every dim is None
        return fn(x, **out) if dim is None and not keepdim else fn(x, dim, keepdim, **out)
    if name in VARIANCES:
        return fn(x, dim, keepdim=keepdim, **({"correction": correction} if correction is not None else {}), **out)
    if dim is None and keepdim:
        assert name != "prod"
        return fn(x, list(range(x.dim())), keepdim=True, **kwargs)
    if dim is None:
        return fn(x, **kwargs)
    return fn(x, dim, keepdim, **kwargs)


def reduced_count(x, dim):
    if dim is None or dim == [] or x.dim() == 0:
        return max(x.numel(), 1)
    n = 1
    for d in [dim] if isinstance(dim, int) else dim:
        n *= x.shape[d]
    return max(n, 1)


def assert_matches(gems, res, name, x, dim=None, keepdim=False, dtype=None, correction=None):
    """dtype, shape, strides and device are ATen's; values within docs/TESTING.md's tolerance of
    a float64 reference (exact combines: ATen's exactly; integers: exact). A (result, mean) pair:
    both."""
    if name in VARIANCES:
        with gems.use_gems(include=[]):
            expected = reduce_call(name, x, dim, keepdim, correction=correction)
            ref = reduce_call(name, x.double(), dim, keepdim, correction=correction)
        pairs = zip(res, expected, ref) if name in WITH_MEAN else ((res, expected, ref),)
        for r, e, f in pairs:
            assert (r.dtype, r.shape, r.stride(), r.device) == (e.dtype, e.shape, e.stride(), e.device)
            torch.testing.assert_close(r, f.to(r.dtype), rtol=RTOL[r.dtype], atol=1e-4, equal_nan=True)
        return
    if name in WITH_DIM:  # (values, indices): ATen's exactly
        with gems.use_gems(include=[]):
            expected = reduce_call(name, x, dim, keepdim)
        for r, e in zip(res, expected, strict=True):
            assert (r.dtype, r.shape, r.stride(), r.device) == (e.dtype, e.shape, e.stride(), e.device)
            torch.testing.assert_close(r, e, rtol=0, atol=0, equal_nan=True)
        return
    with gems.use_gems(include=[]):
        expected = reduce_call(name, x, dim, keepdim, dtype)
        assert (res.dtype, res.shape, res.stride(), res.device) == (
            expected.dtype, expected.shape, expected.stride(), expected.device)
        if name in EXACT or not res.dtype.is_floating_point:
            if not res.dtype.is_floating_point and name in ("sum", "prod"):
                expected = reduce_call(name, x, dim, keepdim, torch.int64).to(res.dtype)
            torch.testing.assert_close(res, expected, rtol=0, atol=0, equal_nan=True)
            return
        ref = reduce_call(name, x.double(), dim, keepdim).to(res.dtype)
        n = reduced_count(x, dim)
        if name == "prod":  # an fp32 rounding per factor, then the output's
            torch.testing.assert_close(res, ref, rtol=RTOL[res.dtype] + 2e-7 * n, atol=1e-6, equal_nan=True)
        else:
            atol = 1e-4 * (n if name == "sum" else 1)
            torch.testing.assert_close(res, ref, rtol=RTOL[res.dtype], atol=atol, equal_nan=True)


def outcome(fn):
    try:
        return fn()
    except (RuntimeError, IndexError) as e:
        return type(e).__name__, str(e)


def is_error(result):
    """Whether an outcome() is torch's error (a (var, mean) pair is a tuple too)."""
    return isinstance(result, tuple) and isinstance(result[0], str)


# -- the aten ops under use_gems --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (torch.int32, torch.bool))
def test_shapes_and_dims(gems, counts, name, shape, dtype):
    if dtype not in covered_dtypes(name):
        pytest.skip(f"{name} has no {dtype} kernels (test_uncovered_dtypes_fall_back)")
    x = make(shape, dtype, name=name)
    raised = 0
    for dim in dim_lists(name, len(shape)):
        for keepdim in keepdims(name, dim):
            with gems.use_gems(include=[]):
                expected = outcome(lambda: reduce_call(name, x, dim, keepdim))
            with gems.use_gems(include=[name]):
                res = outcome(lambda: reduce_call(name, x, dim, keepdim))
            if is_error(expected):  # a reduction without identity over an empty dim: torch's error
                assert res == expected
                raised += 1
                continue
            assert_matches(gems, res, name, x, dim, keepdim)
    assert raised == 0 or (name in RAISES_ON_EMPTY and 0 in shape)
    assert counts() == {}


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_exact_and_promoted(gems, counts, name):
    for dtype in covered_dtypes(name):
        x = make((64, 1000), dtype, name=name)
        for dim in [d for d in (None, 0, 1) if supported(name, d)]:
            with gems.use_gems(include=[name]):
                res = reduce_call(name, x, dim)
            assert_matches(gems, res, name, x, dim)
            if name in ("sum", "prod") and not dtype.is_floating_point:
                assert res.dtype == torch.int64
    assert counts() == {}


def test_int64_wraps_like_aten(gems, counts):
    big = torch.full((1000,), 2**62, dtype=torch.int64, device="cuda")
    factors = torch.full((100,), 3, dtype=torch.int64, device="cuda")
    with gems.use_gems(include=["sum", "prod"]):
        s, p = big.sum(), factors.prod()
    assert torch.equal(s, torch.sum(big)) and torch.equal(p, torch.prod(factors))
    assert counts() == {}


@pytest.mark.parametrize("name", ["sum", "mean", "prod"])
@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_to_fp32(gems, counts, name, dtype):
    x = make((300, 5000), dtype, name=name)
    for dim in (None, 0, 1) + (((0, 1),) if name != "prod" else ()):
        dim = list(dim) if isinstance(dim, tuple) else dim
        with gems.use_gems(include=[name]):
            res = reduce_call(name, x, dim, dtype=torch.float32)
        assert res.dtype == torch.float32
        assert_matches(gems, res, name, x, dim, dtype=torch.float32)
    assert counts() == {}


def test_fp16_wide_range(gems, counts):
    # Values near fp16's limit in blocks [[v, -v], [-v, v]]: every row, column and full sum is
    # exactly 0 in any order, while partial sums in fp16 would overflow.
    v = (make((2048, 32), torch.float32).abs().clamp(0.5, 1) * 60000).half()
    x = torch.cat([torch.cat([v, -v], 1), torch.cat([-v, v], 1)], 0)
    for name in ("sum", "mean"):
        for dim in (0, 1, None):
            with gems.use_gems(include=[name]):
                res = reduce_call(name, x, dim)
            assert torch.equal(res, torch.zeros_like(res))
    assert counts() == {}


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_and_infinities(gems, counts, dtype):
    for name in NAMES:
        x = make((300, 700), torch.float32, name=name)
        x[3, 5] = float("nan")
        x[7, :] = float("inf")
        x[9, 100] = float("-inf")
        x[:, 11] = float("nan")
        x = x.to(dtype)
        for dim in [d for d in (0, 1, None) if supported(name, d)]:
            with gems.use_gems(include=[name]):
                res = reduce_call(name, x, dim)
            with gems.use_gems(include=[]):
                expected = reduce_call(name, x, dim)
            if name in INDEXED:  # the first NaN's index, as ATen's
                assert torch.equal(res if name in ARG else res[1], expected if name in ARG else expected[1])
            for r, e in zip(res, expected) if name in WITH_MEAN | WITH_DIM else ((res, expected),):
                assert torch.equal(r.isnan(), e.isnan()), (name, dim)
                finite = ~e.isnan()
                assert torch.equal(r[finite].isinf(), e[finite].isinf()), (name, dim)
    assert counts() == {}


def test_mean_is_atens_bit_for_bit_on_ones(gems, counts):
    """ATen's CUDA mean multiplies by (float) outputs / inputs: 41 ones give 0.99999994, as gems'."""
    x = torch.ones(8, 41, device="cuda")
    with gems.use_gems(include=["mean"]):
        res = x.mean(1)
    assert torch.equal(res, x.mean(1))
    assert counts() == {}


@pytest.mark.parametrize("name", NAMES)
def test_layouts(gems, counts, name):
    base = make((64, 96, 80), torch.float32, name=name)
    cl = make((8, 64, 32, 32), torch.bfloat16, name=name).to(memory_format=torch.channels_last)
    cases = [
        (base.transpose(0, 2), [0, 1, (1, 2), (0, 2)]),
        (base.permute(1, 2, 0), [0, 1, 2, (0, 1)]),
        (base[3:50, 5:90, 2:], [0, 1, 2, (0, 2), None]),  # storage offset, uncoalescable
        (base[:, 7], [0, 1, None]),
        (make((80,), torch.float32, name=name).expand(1000, 80), [0, 1, None]),  # stride 0
        (make((80, 1), torch.float32, name=name).expand(80, 1000), [0, 1, None]),
        (make((), torch.float32, name=name).expand(5, 6), [0, 1, None]),
        (cl, [1, (2, 3), (0, 2, 3), None]),
        (base.as_strided((96, 64, 80), (80, 96 * 80, 1)), [0, 1, (0, 2)]),
    ]
    for x, dims in cases:
        for dim in dims:
            dim = list(dim) if isinstance(dim, tuple) else dim
            if not supported(name, dim):
                continue
            for keepdim in keepdims(name, dim):
                with gems.use_gems(include=[name]):
                    res = reduce_call(name, x, dim, keepdim)
                assert_matches(gems, res, name, x, dim, keepdim)
    assert counts() == {}


@pytest.mark.parametrize("name", NAMES)
def test_strided_innermost_falls_back(gems, counts, name):
    # A step slice leaves no contiguous innermost dim: ATen reduces it, counted as a layout fallback.
    x = make((64, 100), torch.float32, name=name)[:, ::2]
    dim = None if name in UNARY else 1
    with gems.use_gems(include=[name]):
        res = reduce_call(name, x, dim)
    assert_matches(gems, res, name, x, dim)
    assert counts() == {(OVERLOAD_OF_DIM.get(name, name), "layout"): 1}


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "all", "any", "var", "std_mean", "max", "argmax",
                                  "argmin"])
def test_full_reduction_64m(gems, counts, name):
    for dtype in (torch.float32, torch.bfloat16):
        x = make((1 << 26,), dtype, name=name)
        with gems.use_gems(include=[name]):
            a = reduce_call(name, x)
            b = reduce_call(name, x)
        assert all(torch.equal(u, v) for u, v in zip(a, b)) if name in WITH_MEAN else torch.equal(a, b)  # no atomics
        assert_matches(gems, a, name, x)
        if name == "sum":  # tighter than atol 1e-4 * n: the split's fp32 partials keep the error small
            assert abs(a.double().item() - x.double().sum().item()) < 1e-2 * (x.numel() ** 0.5)
    assert counts() == {}


def test_prod_long_rows(gems, counts):
    x = make((16, 1 << 18), torch.float32, name="prod")
    with gems.use_gems(include=["prod"]):
        res = x.prod(1)
    assert_matches(gems, res, "prod", x, 1)
    assert counts() == {}


def test_index64(gems, counts):
    free, _ = torch.cuda.mem_get_info()
    n = (1 << 31) + (1 << 20)
    if free < 3 * n:
        pytest.skip("needs about 7 GB of free GPU memory")
    x = torch.zeros(n, dtype=torch.bool, device="cuda")
    x[::3] = True
    x[-5:] = True
    rows = x.view(1 << 15, n >> 15)
    with gems.use_gems(include=["sum", "amax"]):
        full, by_row, by_col = x.sum(), rows.sum(1), rows.sum(0)
        highest = rows.amax(1)
    assert full.item() == torch.sum(x).item()
    assert torch.equal(by_row, torch.sum(rows, 1)) and torch.equal(by_col, torch.sum(rows, 0))
    assert torch.equal(highest, torch.amax(rows, 1))
    assert counts() == {}


# -- out= -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HAS_OUT)
def test_out_resized(gems, counts, name):
    x = make((20, 320, 15), torch.float32, name=name)
    dim = 1 if name == "prod" else [0, 2]
    out = torch.full((5,), float("nan"), device="cuda").to(reduce_call(name, x, dim).dtype)
    with gems.use_gems(include=[name]), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = reduce_call(name, x, dim, out=out)
    assert res is out and out.shape == reduce_call(name, x, dim).shape
    assert any("resized" in str(m.message) for m in w)
    assert_matches(gems, out, name, x, dim)
    assert counts() == {}


@pytest.mark.parametrize("name", HAS_OUT)
def test_out_strides_kept(gems, counts, name):
    x = make((20, 320, 15), torch.bfloat16, name=name)
    out_dtype = torch.bool if name in BOOL_RESULT else torch.bfloat16
    out = torch.full((15, 20), float("nan"), device="cuda").to(out_dtype).t()
    with gems.use_gems(include=[name]):
        reduce_call(name, x, 1, out=out)
    assert out.stride() == (1, 20)
    with gems.use_gems(include=[]):
        torch.testing.assert_close(out, reduce_call(name, x, 1), rtol=RTOL[torch.bfloat16], atol=0.032)
    if name in ("sum", "mean", "prod"):
        out = torch.full((20, 1, 15), float("nan"), device="cuda")
        with gems.use_gems(include=[name]):
            reduce_call(name, x, 1, keepdim=True, dtype=torch.float32, out=out)
        with gems.use_gems(include=[]):
            ref = reduce_call(name, x.double(), 1, keepdim=True).float()
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=0.032)
    assert counts() == {}


def test_out_errors_and_fallbacks(gems, counts):
    x = make((8, 9), torch.float32)
    half = torch.empty(8, device="cuda", dtype=torch.half)
    errors = [
        lambda: torch.sum(x, 1, dtype=torch.float32, out=half),
        lambda: torch.sum(x, [1, 1], out=torch.empty(8, device="cuda")),
        lambda: torch.amax(x, 1, out=half),
        lambda: torch.mean(x.int(), 1, out=torch.empty(8, device="cuda")),
        lambda: torch.prod(x, 1, dtype=torch.float64, out=torch.empty(8, device="cuda")),
        lambda: torch.all(x, 1, out=torch.empty(8, device="cuda")),
        lambda: torch.any(x, out=torch.empty((), device="cuda", dtype=torch.int32)),
    ]
    for fn in errors:
        with gems.use_gems(include=[]):
            expected = outcome(fn)
        assert is_error(expected)
        with gems.use_gems(include=NAMES):
            assert outcome(fn) == expected
    i32 = make((8, 9), torch.int32)
    out = torch.empty(8, device="cuda", dtype=torch.int32)  # an int32 sum: not built, ATen's
    with gems.use_gems(include=NAMES):
        torch.sum(i32, 1, out=out)
    assert torch.equal(out, torch.sum(i32, 1, dtype=torch.int32))
    byte = torch.empty(8, device="cuda", dtype=torch.uint8)  # all of floats into uint8: not built, ATen's
    with gems.use_gems(include=NAMES):
        torch.all(x, 1, out=byte)
    assert torch.equal(byte, torch.all(x, 1).to(torch.uint8))
    assert counts() == {("sum.IntList_out", "dtype"): 1, ("all.out", "dtype"): 1}


# -- what falls back, what raises -------------------------------------------------------------------


def test_uncovered_dtypes_fall_back(gems, counts):
    f64 = make((33, 17), torch.float64)
    cases = [
        ("sum", f64, 0), ("mean", f64, 0), ("prod", f64, 0), ("amax", f64, 0), ("amin", f64, 0),
        ("sum", f64.to(torch.complex64), None), ("mean", f64.to(torch.complex64), 1),
        ("prod", make((33, 17), torch.int8, name="prod"), 1), ("amax", make((33, 17), torch.uint8), 1),
        ("amin", make((33, 17), torch.int16), 0), ("mean", make((33, 17), torch.int32), 1),  # mean(int, dtype=float)
        ("all", f64, 0), ("any", f64.to(torch.complex64), None), ("var", f64, 0), ("std", f64.to(torch.complex64), 1),
        ("var_mean", f64, None), ("std_mean", f64.to(torch.complex64), 0),
    ]
    expected_counts = {}
    for name, x, dim in cases:
        dtype = torch.float32 if name == "mean" and not (x.is_floating_point() or x.is_complex()) else None
        with gems.use_gems(include=[name]):
            res = reduce_call(name, x, dim, dtype=dtype)
        with gems.use_gems(include=[]):
            torch.testing.assert_close(res, reduce_call(name, x, dim, dtype=dtype), rtol=0, atol=0)
        overload = OVERLOAD_OF_DIM.get(name, name)
        if dim is None and name in ("prod", "all", "any"):
            overload = name
        key = (overload, "dtype")
        expected_counts[key] = expected_counts.get(key, 0) + 1
    assert counts() == expected_counts
    for op, args in [(torch.ops.gems.sum, (f64,)), (torch.ops.gems.mean.dim, (f64, [0])),
                     (torch.ops.gems.prod, (f64,)), (torch.ops.gems.amax, (f64, [0]))]:
        with pytest.raises(RuntimeError, match=r"gems::\w+(\.\w+)?: no gems kernel covers this input \(dtype"):
            op(*args)


def test_torch_errors_under_gems(gems, counts):
    """Arguments torch rejects raise torch's error, not a fallback: mean of integers, a
    reduction without identity (amax) over an empty dim, bad dims."""
    x = make((3, 4), torch.float32)
    empty = make((0, 4), torch.float32)
    cases = [
        lambda: torch.sum(x, [1, 1]), lambda: torch.sum(x, [2]), lambda: torch.mean(x, [-3]),
        lambda: torch.prod(x, 2), lambda: torch.amax(x, [5]),
        lambda: torch.mean(x.int()), lambda: torch.mean(x.int(), 1), lambda: torch.mean(x.int(), dtype=torch.int64),
        lambda: torch.amax(empty, 0), lambda: torch.amin(empty), lambda: torch.amax(empty, [0, 1]),
        lambda: torch.all(x, 2), lambda: torch.any(x, [0, 0]), lambda: torch.all(x, [-3]),
        lambda: torch.var(x.int()), lambda: torch.std(x.long(), 1), lambda: torch.var_mean(x.int(), 0),
        lambda: torch.std_mean(x.bool()), lambda: torch.var(x, [1, 1]), lambda: torch.std(x, 2),
        lambda: torch.var(x, 1, out=torch.empty(3, device="cuda", dtype=torch.int32)),
    ]
    for fn in cases:
        with gems.use_gems(include=[]):
            expected = outcome(fn)
        assert is_error(expected), expected
        with gems.use_gems(include=NAMES):
            assert outcome(fn) == expected
    with gems.use_gems(include=NAMES):  # an empty input reduced over non-empty dims is fine
        assert torch.amax(empty, 1).shape == (0,)
        assert torch.isnan(torch.mean(empty, 0)).all() and torch.equal(torch.prod(empty, 0), torch.ones(4,
                                                                                                     device="cuda"))
    assert counts() == {}


# -- gems ops, autograd, graphs -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (0, 7), (20, 320, 15), (16, 7, 57, 32, 29)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (torch.int32, torch.bool))
def test_gems_ops(gems, shape, dtype):
    """Every gems op on every input its kernels cover (those without identity where the reduced
    dims are not empty: test_torch_errors_under_gems)."""
    g = torch.ops.gems
    x = make(shape, dtype)
    covers = {name for name in NAMES if dtype in covered_dtypes(name)}
    for name in {"sum", "mean", "prod", "all", "any"} & covers:
        assert_matches(gems, getattr(g, name)(x), name, x)
        if x.is_floating_point() and name not in BOOL_RESULT:
            assert_matches(gems, getattr(g, name)(x, dtype=torch.float32), name, x, dtype=torch.float32)
    for dim in dim_lists("sum", len(shape))[:8]:
        reduced = range(x.dim()) if dim is None or dim == [] else [dim] if isinstance(dim, int) else dim
        for keepdim in (False, True):
            assert_matches(gems, g.sum.dim_IntList(x, dim, keepdim), "sum", x, dim, keepdim)
            if "mean" in covers:
                assert_matches(gems, g.mean.dim(x, dim, keepdim), "mean", x, dim, keepdim)
            if isinstance(dim, int) and "prod" in covers:
                assert_matches(gems, g.prod.dim_int(x, dim, keepdim), "prod", x, dim, keepdim)
            if isinstance(dim, int):
                assert_matches(gems, g.all.dim(x, dim, keepdim), "all", x, dim, keepdim)
                assert_matches(gems, g.any.dim(x, dim, keepdim), "any", x, dim, keepdim)
            else:
                assert_matches(gems, g.all.dims(x, dim, keepdim), "all", x, dim, keepdim)
                assert_matches(gems, g.any.dims(x, dim, keepdim), "any", x, dim, keepdim)
            if x.numel() > 0 or (reduced and all(x.shape[d] for d in reduced)):
                assert_matches(gems, g.amax(x, [] if dim is None else dim, keepdim), "amax", x, dim, keepdim)
                assert_matches(gems, g.amin(x, [] if dim is None else dim, keepdim), "amin", x, dim, keepdim)


@pytest.mark.parametrize("shape", [(), (0, 7), (20, 320, 15), (16, 7, 57, 32, 29)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS)
def test_gems_ops_variances(gems, shape, dtype):
    g = torch.ops.gems
    x = make(shape, dtype)
    for name in sorted(VARIANCES):
        op = getattr(g, name).correction
        assert_matches(gems, op(x), name, x)
        for dim in dim_lists("sum", len(shape))[:8]:
            for keepdim, correction in ((False, None), (True, 0), (False, 2.5)):
                res = op(x, dim, correction=correction, keepdim=keepdim)
                assert_matches(gems, res, name, x, dim, keepdim, correction=correction)


@pytest.mark.parametrize("name", sorted(VARIANCES))
def test_variances(gems, counts, name):
    """Corrections 0, 1, fractional and past the reduced length (inf / NaN as ATen); a mean of 1e3
    beside a spread of 1 (Welford keeps it); long rows and columns that split into partial states."""
    x = make((64, 1000), torch.float32)
    for correction in (0, 1, 2.5, 1000, 1001, 5000):
        for dim in (None, 0, 1):
            with gems.use_gems(include=[name]):
                res = reduce_call(name, x, dim, correction=correction)
            assert_matches(gems, res, name, x, dim, correction=correction)
    # A column of 8 values near 1e3 loses digits to fp32's rounding of x - mean in any order of
    # summation: there gems may be no further from float64 than 1.5x ATen's own error.
    shifted = 1e3 + make((8, 300000), torch.float32)
    for dim in (None, 1, 0):
        with gems.use_gems(include=[name]):
            res = reduce_call(name, shifted, dim)
        with gems.use_gems(include=[]):
            aten = reduce_call(name, shifted, dim)
            ref = reduce_call(name, shifted.double(), dim)
        var, aten, ref = ((r[0] if name in WITH_MEAN else r) for r in (res, aten, ref))
        aten_error = ((aten.double() - ref) / ref).abs().max().item()
        torch.testing.assert_close(var.double(), ref, rtol=max(1e-4, 1.5 * aten_error), atol=0)
    for dtype in FLOATS:
        for shape, dim in (((1 << 22,), None), ((3, 1 << 20), 1), ((1 << 20, 3), 0), ((512, 64, 9), [0, 2])):
            x = make(shape, dtype)
            with gems.use_gems(include=[name]):
                res = reduce_call(name, x, dim)
            assert_matches(gems, res, name, x, dim)
    assert counts() == {}


def test_gems_ops_meta(gems):
    x = torch.empty(4, 5, 6, device="meta", dtype=torch.bfloat16)
    g = torch.ops.gems
    for res, ref in [(g.sum.dim_IntList(x, [1], True, dtype=torch.float32), torch.sum(x, [1], True, dtype=torch.float32)),
                     (g.mean.dim(x, [-1, 0]), torch.mean(x, [-1, 0])), (g.prod.dim_int(x, 2), torch.prod(x, 2)),
                     (g.amax(x, [0]), torch.amax(x, [0])), (g.amin(x), torch.amin(x)), (g.all(x), torch.all(x)),
                     (g.any.dims(x, []), torch.any(x, [])), (g.all.dim(x.byte(), 1), torch.all(x.byte(), 1))]:
        assert res.shape == ref.shape and res.dtype == ref.dtype and res.device.type == "meta"


@pytest.mark.parametrize("name", [n for n in NAMES if n not in BOOL_RESULT | WITH_MEAN | ARG])
def test_autograd(gems, counts, name):
    """Gradients as ATen's (max.dim's flows to the elements its indices name)."""
    x = make((16, 37, 9), torch.float32, name=name).requires_grad_()
    value = (lambda y: y[0]) if name in WITH_DIM else (lambda y: y)  # noqa: E731
    for dim, keepdim in [(d, k) for d, k in [(None, False), (1, False), (2, True)] if supported(name, d)]:
        grad = make(value(reduce_call(name, x.detach(), dim, keepdim)).shape, torch.float32, seed=1)
        with gems.use_gems(include=[name]):
            y = value(reduce_call(name, x, dim, keepdim))
            (g_ours,) = torch.autograd.grad(y, x, grad)
        with gems.use_gems(include=[]):
            y_ref = value(reduce_call(name, x, dim, keepdim))
            (g_ref,) = torch.autograd.grad(y_ref, x, grad)
            torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-4 * reduced_count(x, dim))
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-5)
    assert counts() == {}


def test_cuda_graph(gems):
    x = make((3, 100000), torch.float32)
    with gems.use_gems(include=["sum", "mean", "amax", "argmax"]):
        torch.sum(x, 1), torch.mean(x, 1), torch.amax(x, 1), torch.argmax(x, 1)  # warm-up: loads the kernels
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            s, m, a, i = torch.sum(x, 1), torch.mean(x, 1), torch.amax(x, 1), torch.argmax(x, 1)  # i: split
    x.copy_(make((3, 100000), torch.float32, seed=2))
    graph.replay()
    assert torch.equal(i, torch.argmax(x, 1))
    torch.testing.assert_close(s, torch.sum(x.double(), 1).float(), rtol=1.3e-6, atol=10.0)
    torch.testing.assert_close(m, torch.mean(x.double(), 1).float(), rtol=1.3e-6, atol=1e-4)
    assert torch.equal(a, torch.amax(x, 1))


# -- extremes and their indices: argmax, argmin, max.dim, min.dim, max(), min() ---------------------


def spread(x, value, dim, count=5, start=0):
    """x with `value` at `count` places from `start` on, spread along dim (None: the flattened
    tensor): ties that fall in different lanes, chunks and split partials."""
    x = x.clone()
    view = x.view(-1) if dim is None else x.movedim(dim, -1)
    n = view.shape[-1] - start
    for k in range(count):
        view[..., start + (k * n) // count + 3 * k] = value
    return x


@pytest.mark.parametrize("name", sorted(INDEXED))
@pytest.mark.parametrize("dtype", FLOATS + (torch.int32, torch.int64))
def test_first_extreme_across_splits(gems, counts, name, dtype):
    """On ties the index of the first extreme, as ATen's, in long rows (split into partials), long
    columns, a full reduction and logits-sized rows; then with NaNs, which beat every number (the
    first NaN's index) for argmax and argmin alike."""
    low = fam.BY_NAME[name].combine == "argmin"
    info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
    for shape, dim in (((3, 1 << 20), 1), ((1 << 20, 3), 0), ((1 << 22,), None), ((4096, 32000), 1),
                       ((512, 64, 9), 1)):
        if not supported(name, dim):
            continue
        x = make(shape, dtype)
        x = spread(x, info.min if low else info.max, dim)
        with gems.use_gems(include=[name]):
            res = reduce_call(name, x, dim)
        assert_matches(gems, res, name, x, dim)
        if dtype.is_floating_point:
            n = x.numel() if dim is None else x.shape[dim]
            y = spread(spread(x, float("inf") if not low else float("-inf"), dim, 3), float("nan"), dim, 2, n // 3)
            with gems.use_gems(include=[name]):
                res = reduce_call(name, y, dim)
            assert_matches(gems, res, name, y, dim)
    assert counts() == {}


@pytest.mark.parametrize("dtype", FLOATS + (torch.int32, torch.int64, torch.bool))
def test_extremes_dtypes_and_forms(gems, counts, dtype):
    """argmax / argmin (None: the flattened index, keepdim), max.dim / min.dim (values keep the
    dtype, indices int64) and max() / min() on every dtype their kernels cover, over permuted
    and sliced inputs; bool input to argmax raises ATen's error."""
    base = make((48, 70, 33), dtype)
    for x in (base, base.transpose(0, 2), base.permute(1, 2, 0)[3:40, :, 5:], base[:, 7]):
        for name in sorted(INDEXED | UNARY):
            if dtype == torch.bool and name in ARG:
                with gems.use_gems(include=[]):
                    expected = outcome(lambda: reduce_call(name, x, 0))
                with gems.use_gems(include=[name]):
                    assert outcome(lambda: reduce_call(name, x, 0)) == expected
                continue
            for dim in [d for d in [None, 0, -1, 1] if supported(name, d)]:
                for keepdim in keepdims(name, dim):
                    with gems.use_gems(include=[name]):
                        res = reduce_call(name, x, dim, keepdim)
                    assert_matches(gems, res, name, x, dim, keepdim)
    assert counts() == {}


def test_extreme_out(gems, counts):
    """argmax.out, max.dim_max and max.unary_out as ATen's: resized with its warning, strides
    kept; values and indices of different strides, a mismatched out= dtype or device of max()
    and max() of an empty input run ATen's kernel (counted)."""
    x = make((20, 320, 15), torch.bfloat16)
    with gems.use_gems(include=["argmax", "max", "min"]), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        idx = torch.full((5,), -1, device="cuda", dtype=torch.int64)
        assert torch.argmax(x, 1, out=idx) is idx
        v, i = torch.empty(3, device="cuda", dtype=torch.bfloat16), torch.empty(3, device="cuda", dtype=torch.int64)
        res = torch.max(x, 2, True, out=(v, i))
        assert res[0] is v and res[1] is i
        low = torch.empty(4, device="cuda", dtype=torch.bfloat16)
        torch.min(x, out=low)
    assert sum("resized" in str(warning.message) for warning in w) == 4
    with gems.use_gems(include=[]):
        assert torch.equal(idx, torch.argmax(x, 1)) and torch.equal(low, torch.min(x))
        assert torch.equal(v, torch.max(x, 2, True).values) and torch.equal(i, torch.max(x, 2, True).indices)
    vt = torch.full((15, 20), float("nan"), device="cuda", dtype=torch.bfloat16).t()
    it = torch.full((15, 20), -1, device="cuda", dtype=torch.int64).t()
    with gems.use_gems(include=["max", "argmin"]):
        torch.max(x, 1, out=(vt, it))
        at = torch.full((15, 20), -1, device="cuda", dtype=torch.int64).t()
        torch.argmin(x, 1, out=at)
    assert vt.stride() == it.stride() == at.stride() == (1, 20)
    assert counts() == {}
    ref = torch.max(x, 1)
    assert torch.equal(vt, ref.values) and torch.equal(it, ref.indices) and torch.equal(at, torch.argmin(x, 1))
    # Served by ATen: values and indices of different strides (ATen's kernel raises for them);
    # max() into another dtype (ATen raises after resizing), another device, and of an empty input.
    vc, ic = torch.empty(20, 15, device="cuda", dtype=torch.bfloat16), it.clone()
    cases = [lambda: torch.max(x, 1, out=(vc, ic)),
             lambda: torch.max(x, out=torch.empty(2, device="cuda", dtype=torch.float32)),
             lambda: torch.max(x, out=torch.empty(2, dtype=torch.bfloat16)),
             lambda: torch.min(x[:0], out=torch.empty(2, device="cuda", dtype=torch.bfloat16))]
    for fn in cases:
        with gems.use_gems(include=[]):
            expected = outcome(fn)
        with gems.use_gems(include=["max", "min"]):
            got = outcome(fn)
        assert is_error(got) == is_error(expected)
        if is_error(expected):  # the first line: an internal assert's message may go on with a trace
            assert (got[0], got[1].splitlines()[0]) == (expected[0], expected[1].splitlines()[0])
    assert counts() == {("max.dim_max", "layout"): 1, ("max.unary_out", "dtype"): 1, ("max.unary_out", "device"): 1,
                        ("min.unary_out", "args"): 1}
    errors = [lambda: torch.argmax(x, 1, out=torch.empty(20, 15, device="cuda", dtype=torch.int32)),
              lambda: torch.max(x, 1, out=(torch.empty(0, device="cuda"), torch.empty(0, device="cuda").long())),
              lambda: torch.max(x, 1, out=(torch.empty(0, device="cuda").bfloat16(), torch.empty(0, device="cuda"))),
              lambda: torch.min(x, 1, out=(torch.empty(0).bfloat16(), torch.empty(0, device="cuda").long()))]
    for fn in errors:
        with gems.use_gems(include=[]):
            expected = outcome(fn)
        assert is_error(expected), expected
        with gems.use_gems(include=["max", "min", "argmax"]):
            assert outcome(fn) == expected
    assert counts() == {("max.dim_max", "layout"): 1, ("max.unary_out", "dtype"): 1, ("max.unary_out", "device"): 1,
                        ("min.unary_out", "args"): 1}


def test_extreme_errors_and_fallbacks(gems, counts):
    """ATen's errors (empty reductions, bad dims, bool and complex input) and, for dtypes without
    kernels (float64, uint8, int8, int16), ATen's kernels, counted."""
    x = make((3, 4), torch.float32)
    empty = make((0, 4), torch.float32)
    errors = [
        lambda: torch.argmax(empty), lambda: torch.argmin(empty, 0), lambda: torch.argmax(empty, -2, True),
        lambda: torch.max(empty, 0), lambda: torch.min(empty, -2), lambda: torch.max(empty), lambda: torch.min(empty),
        lambda: torch.argmax(x, 2), lambda: torch.max(x, -3), lambda: torch.argmax(x.bool()),
        lambda: torch.argmin(x.bool(), 1), lambda: torch.max(x.cfloat(), 1), lambda: torch.argmax(x.cfloat()),
        lambda: torch.argmax(empty.bool()),
    ]
    for fn in errors:
        with gems.use_gems(include=[]):
            expected = outcome(fn)
        assert is_error(expected), expected
        with gems.use_gems(include=NAMES):
            assert outcome(fn) == expected
    with gems.use_gems(include=NAMES):  # reductions over a non-empty dim of an empty input are fine
        assert torch.argmax(empty, 1).shape == (0,) and torch.max(empty, 1, True).indices.shape == (0, 1)
    assert counts() == {}
    f64, u8 = make((33, 17), torch.float64), make((33, 17), torch.uint8)
    cases = [("argmax", f64, 0), ("argmin", u8, None), ("max.dim", f64, 1), ("min.dim", make((5, 6), torch.int8), 0),
             ("max", u8, None), ("min", make((5, 6), torch.int16), None)]
    for name, y, dim in cases:
        with gems.use_gems(include=[name]):
            res = reduce_call(name, y, dim)
        with gems.use_gems(include=[]):
            expected = reduce_call(name, y, dim)
        for r, e in zip(res, expected) if name in WITH_DIM else ((res, expected),):
            assert torch.equal(r, e)
    assert counts() == {(n, "dtype"): 1 for n in ("argmax", "argmin", "max.dim", "min.dim", "max", "min")}
    for op, args in [(torch.ops.gems.argmax, (f64,)), (torch.ops.gems.max.dim, (u8, 0)), (torch.ops.gems.min, (f64,))]:
        with pytest.raises(RuntimeError, match=r"gems::\w+(\.\w+)?: no gems kernel covers this input \(dtype"):
            op(*args)


def test_extreme_gems_ops(gems):
    g = torch.ops.gems
    for x in (make((20, 320, 15), torch.bfloat16), make((), torch.float32), make((7, 0), torch.int32)):
        for dim in [None] + list(range(-x.dim(), x.dim())) + ([0] if x.dim() == 0 else []):
            reduced = x.numel() if dim is None else x.shape[dim] if x.dim() else 1
            for keepdim in (False, True) if reduced else ():  # empty: test_extreme_errors_and_fallbacks
                assert_matches(gems, g.argmax(x, dim, keepdim), "argmax", x, dim, keepdim)
                assert_matches(gems, g.argmin(x, dim, keepdim), "argmin", x, dim, keepdim)
                if dim is not None:
                    assert_matches(gems, tuple(g.max.dim(x, dim, keepdim)), "max.dim", x, dim, keepdim)
                    assert_matches(gems, tuple(g.min.dim(x, dim, keepdim)), "min.dim", x, dim, keepdim)
        if x.numel():
            assert_matches(gems, g.max(x), "max", x)
            assert_matches(gems, g.min(x), "min", x)
    m = torch.empty(4, 5, 6, device="meta", dtype=torch.bfloat16)
    for res, ref in [(g.argmax(m, 1, True), torch.argmax(m, 1, True)), (g.argmin(m), torch.argmin(m)),
                     (g.max.dim(m, -1)[1], torch.max(m, -1)[1]), (g.min.dim(m, 0)[0], torch.min(m, 0)[0]),
                     (g.max(m), torch.max(m))]:
        assert res.shape == ref.shape and res.dtype == ref.dtype and res.device.type == "meta"


def test_index64_extremes(gems, counts):
    """Indices past 2**31: a full argmax of a >2**31-element tensor with a tie near its end, and
    max.dim and argmax over its rows (of 32784 elements) and columns."""
    free, _ = torch.cuda.mem_get_info()
    n = (1 << 31) + (1 << 20)
    if free < 3 * 2 * n:
        pytest.skip("needs about 13 GB of free GPU memory")
    x = torch.zeros(n, dtype=torch.float16, device="cuda")
    x[n - 7] = 2
    x[n - 5] = 2
    x[5] = -2
    rows = x.view(1 << 16, -1)
    with gems.use_gems(include=["argmax", "argmin", "max"]):
        first, low = torch.argmax(x), torch.argmin(x)
        values, indices = torch.max(rows, 1)
        column = torch.argmax(rows, 0)
    assert first.item() == n - 7 and low.item() == 5
    with gems.use_gems(include=[]):
        ref = torch.max(rows, 1)
        assert torch.equal(values, ref.values) and torch.equal(indices, ref.indices)
        assert torch.equal(column, torch.argmax(rows, 0))
    assert counts() == {}
