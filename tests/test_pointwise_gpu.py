"""GPU accuracy suite for the pointwise family (docs/TESTING.md), against torch."""

import warnings
import zlib

import pytest
import torch

import gems_aot
from conftest import requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

FLOATS = [torch.float32, torch.float16, torch.bfloat16]
INTS = [torch.int32, torch.int64]
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-7}
SHAPES = [(), (1,), (0,), (0, 7), (1024, 1024), (20, 320, 15), (16, 128, 64, 60), (16, 7, 57, 32, 29), (64,),
          (1024 + 17,), (4096,), (8192 + 17,)]
SCALARS = [0.001, -0.999, 100.001, -111.999]
OPS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}


@pytest.fixture(autouse=True)
def clean_counts():
    gems_aot.reset_fallback_counts()
    yield


def rand(shape, dtype, low=None):
    if dtype.is_floating_point:
        t = torch.randn(shape, device="cuda", dtype=torch.float32).to(dtype)
        if low is not None:  # keep divisors away from zero
            t = torch.where(t.abs() < low, torch.full_like(t, 1.5), t)
        return t
    return torch.randint(-1000, 1000, shape, device="cuda", dtype=dtype)


def ref_op(op, a, b, **kw):
    """ATen on float64 (or the exact integer op), whatever gems' state."""
    def up(v):
        return v.double() if isinstance(v, torch.Tensor) and v.dtype.is_floating_point else v
    with gems_aot.use_gems(include=[]):
        return OPS[op](up(a), up(b), **kw)


def check(res, expected_like, ref):
    """Values against the float64 reference; dtype, shape, strides and device against torch.
    Runs on ATen (assert_close computes too), whatever gems' state."""
    with gems_aot.use_gems(include=[]):
        _check(res, expected_like, ref)


def _check(res, expected_like, ref):
    assert res.dtype == expected_like.dtype and res.shape == expected_like.shape
    assert res.device == expected_like.device
    if res.numel() > 1:
        assert res.stride() == expected_like.stride()
    if res.dtype.is_floating_point:
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[res.dtype], atol=1e-4, equal_nan=True)
    else:
        assert torch.equal(res, ref.to(res.dtype))


def no_fallbacks():
    assert gems_aot.fallback_counts() == {}


@pytest.mark.parametrize("dtype", FLOATS + INTS, ids=str)
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_binary_same_shape(op, dtype, shape):
    torch.manual_seed(zlib.crc32(f"{op}{dtype}{shape}".encode()))
    a, b = rand(shape, dtype), rand(shape, dtype, low=0.1 if op == "div" else None)
    if op == "div" and not dtype.is_floating_point:
        b = torch.where(b == 0, torch.ones_like(b), b)
    kw = {"alpha": 2} if op in ("add", "sub") else {}
    expected = OPS[op](a, b, **kw)
    with gems_aot.use_gems():
        res = OPS[op](a, b, **kw)
    check(res, expected, ref_op(op, a, b, **kw))
    if op == "div" and not dtype.is_floating_point:
        return  # int / int -> float: mixed dtypes, ATen's kernel (counted)
    no_fallbacks()
    gems = getattr(torch.ops.gems, op).Tensor(a, b, **kw)
    check(gems, expected, ref_op(op, a, b, **kw))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("scalar", SCALARS)
def test_binary_scalars(op, dtype, scalar):
    a = rand((37, 129), dtype, low=0.1)
    with gems_aot.use_gems():
        for x, y in ((a, scalar), (scalar, a), (a, torch.tensor(scalar)), (torch.tensor(scalar), a),
                     (a, torch.tensor(scalar, device="cuda", dtype=dtype))):
            res = OPS[op](x, y)
            check(res, _aten(op, x, y), ref_op(op, x, y))
    no_fallbacks()
    check(getattr(torch.ops.gems, op).Scalar(a, scalar), _aten(op, a, scalar), ref_op(op, a, scalar))


def _aten(op, x, y, **kw):
    with gems_aot.use_gems(include=[]):
        return OPS[op](x, y, **kw)


def test_div_by_scalar_bitwise_like_aten():
    # ATen divides by a CPU scalar as a multiplication by its reciprocal; so does gems.
    a = rand((1 << 16,), torch.float32)
    expected = a / 3.0
    with gems_aot.use_gems():
        assert torch.equal(a / 3.0, expected)
        assert torch.equal(a / rand((1 << 16,), torch.float32).fill_(3.0), a.div(torch.full_like(a, 3.0)))


@pytest.mark.parametrize("dtype", INTS, ids=str)
def test_integer_extremes(dtype):
    info = torch.iinfo(dtype)
    a = torch.tensor([info.max, info.min, info.max - 1, 0, -1], device="cuda", dtype=dtype)
    b = torch.tensor([1, -1, 2, info.max, info.min], device="cuda", dtype=dtype)
    for op in ("add", "sub", "mul"):
        expected = _aten(op, a, b)
        with gems_aot.use_gems():
            assert torch.equal(OPS[op](a, b), expected), op  # wraps around like ATen
            assert torch.equal(OPS[op](a, 3), _aten(op, a, 3)), op
    no_fallbacks()


LAYOUTS = {
    "transposed": lambda t: t.t(),
    "sliced": lambda t: t[1:, 3:],
    "storage_offset": lambda t: t.view(-1)[5:5 + 64 * 60].view(64, 60),
    "expanded": lambda t: t[:1].expand(t.shape[0], -1),
    "as_strided_step": lambda t: t.as_strided((32, 30), (2 * t.stride(0), 2)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64], ids=str)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("op", list(OPS))
def test_binary_layouts(op, layout, dtype):
    if op == "div" and not dtype.is_floating_point:
        pytest.skip("int / int runs ATen (mixed dtypes)")
    base_a, base_b = rand((64, 64), dtype), rand((64, 64), dtype, low=0.1)
    if op == "div" and not dtype.is_floating_point:
        base_b = torch.where(base_b == 0, torch.ones_like(base_b), base_b)
    a, b = LAYOUTS[layout](base_a), LAYOUTS[layout](base_b).contiguous()
    for x, y in ((a, b), (b, a), (a, a)):
        expected = _aten(op, x, y)
        with gems_aot.use_gems():
            res = OPS[op](x, y)
        check(res, expected, ref_op(op, x, y))
    no_fallbacks()


def test_channels_last_and_broadcasting():
    x = rand((8, 16, 12, 10), torch.float16).to(memory_format=torch.channels_last)
    for y in (rand((16, 1, 1), torch.float16), rand((10,), torch.float16), rand((8, 1, 12, 1), torch.float16),
              x.contiguous(), rand((), torch.float16)):
        for a, b in ((x, y), (y, x)):
            expected = _aten("add", a, b, alpha=-0.5)
            with gems_aot.use_gems():
                res = torch.add(a, b, alpha=-0.5)
            check(res, expected, ref_op("add", a, b, alpha=-0.5))
            assert res.is_contiguous(memory_format=torch.channels_last) == expected.is_contiguous(
                memory_format=torch.channels_last)
    no_fallbacks()


def test_rank_above_strided_limit_falls_back():
    x = rand((3, 4, 5, 6, 7), torch.float32).permute(4, 2, 0, 3, 1)  # 5 dims that do not collapse
    y = rand((7, 5, 3, 6, 4), torch.float32)
    with gems_aot.use_gems():
        res = x * y
    check(res, _aten("mul", x, y), ref_op("mul", x, y))
    assert gems_aot.fallback_counts() == {}  # up to 8 dims run strided
    x = rand((2, 3, 2, 3, 2, 3, 2, 3, 2), torch.float32).permute(8, 6, 4, 2, 0, 7, 5, 3, 1)  # 9 dims
    y = rand(x.shape, torch.float32)
    with gems_aot.use_gems():
        res = x * y
    check(res, _aten("mul", x, y), ref_op("mul", x, y))
    assert gems_aot.fallback_counts() == {("mul.Tensor", "rank"): 1}
    with pytest.raises(RuntimeError, match="no gems kernel covers this input"):
        torch.ops.gems.mul(x, y)


def test_fallback_warns_once_per_op_and_reason_when_asked():
    x = torch.ones(4, device="cuda", dtype=torch.float64)
    previous = gems_aot.warn_on_fallback(True)
    try:
        with gems_aot.use_gems(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [x - x for _ in range(3)]
    finally:
        gems_aot.warn_on_fallback(previous)
    said = [str(w.message) for w in caught if "gems: aten::sub.Tensor ran ATen's kernel" in str(w.message)]
    assert len(said) == 1 and "(dtype: gems has no kernel for these dtypes" in said[0]
    assert all(torch.equal(r, torch.zeros_like(x)) for r in results)
    assert gems_aot.fallback_counts()[("sub.Tensor", "dtype")] == 3
    with gems_aot.use_gems(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x - x
    assert not [w for w in caught if "gems:" in str(w.message)]  # off again


def test_mixed_dtypes_and_complex_fall_back_with_count():
    a, b = rand((100,), torch.float16), rand((100,), torch.float32)
    c = torch.randn(100, device="cuda", dtype=torch.complex64)
    with gems_aot.use_gems():
        check(a + b, _aten("add", a, b), ref_op("add", a, b))
        assert torch.equal(c * 2, _aten("mul", c, 2))
        i = torch.arange(10, device="cuda")
        check(i / 4, _aten("div", i, 4), ref_op("div", i, 4))
    counts = gems_aot.fallback_counts()
    assert counts[("add.Tensor", "mixed_dtype")] == 1 and counts[("mul.Tensor", "dtype")] == 1
    # True division has float kernels only: an integer operand has none, whatever the result dtype.
    assert counts[("div.Tensor", "dtype")] == 1
    with pytest.raises(RuntimeError, match="gems::add.Tensor: no gems kernel covers this input \\(mixed_dtype"):
        torch.ops.gems.add(a, b)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int32], ids=str)
def test_inplace_and_out(op, dtype):
    if op == "div" and not dtype.is_floating_point:
        pytest.skip("int / int into an int tensor is an error in torch; covered below")
    a, b = rand((33, 65), dtype), rand((33, 65), dtype, low=0.1)
    kw = {"alpha": 3} if op in ("add", "sub") else {}
    expected = _aten(op, a, b, **kw)
    with gems_aot.use_gems():
        x = a.clone()
        r = getattr(x, op + "_")(b, **kw)
        assert r.data_ptr() == x.data_ptr()
        check(x, expected, ref_op(op, a, b, **kw))
        x = a.clone().t()  # in-place into a transposed tensor
        getattr(x, op + "_")(b.t(), **kw)
        check(x, expected.t(), ref_op(op, a, b, **kw).t())
        out = torch.full_like(a, 7)  # poisoned
        OPS[op](a, b, out=out, **kw)
        check(out, expected, ref_op(op, a, b, **kw))
        wrong = torch.full((5,), 7, device="cuda", dtype=dtype)
        with pytest.warns(UserWarning, match="resized"):
            OPS[op](a, b, out=wrong, **kw)
        check(wrong, expected, ref_op(op, a, b, **kw))
        empty = torch.empty(0, device="cuda", dtype=dtype)
        OPS[op](a, b, out=empty, **kw)
        check(empty, expected, ref_op(op, a, b, **kw))
    no_fallbacks()


def test_errors_like_torch():
    a = rand((4, 4), torch.int32)
    with gems_aot.use_gems():
        with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
            a.div_(2)
        with pytest.raises(RuntimeError, match="alpha must not be a floating point"):
            torch.add(a, a, alpha=0.5)
        with pytest.raises(RuntimeError, match="must match the size"):
            torch.add(rand((3,), torch.float32), rand((4,), torch.float32))
        with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
            torch.add(rand((4, 4), torch.float32), 1, out=rand((4, 1), torch.float32).expand(4, 4))
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            torch.add(rand((4,), torch.float32), torch.ones(4))
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            torch.ops.gems.add(rand((4,), torch.float32), torch.ones(4))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensors_on_two_gpus():
    with gems_aot.use_gems(), pytest.raises(RuntimeError, match="same device"):
        torch.add(torch.ones(4, device="cuda:0"), torch.ones(4, device="cuda:1"))


@pytest.mark.parametrize("dtype", FLOATS + INTS, ids=str)
def test_relu(dtype):
    x = rand((1000, 33), dtype)
    if dtype.is_floating_point:
        x[0, :3] = torch.tensor([float("nan"), float("-inf"), float("inf")], dtype=dtype)
    for v in (x, x.t(), x[:, 5:], torch.empty(0, 3, device="cuda", dtype=dtype), x[0, 4]):
        expected = _aten_relu(v)
        with gems_aot.use_gems():
            res = torch.relu(v)
        check(res, expected, _aten_relu(v.double() if dtype.is_floating_point else v))
        check(torch.ops.gems.relu(v), expected, expected)
        y = v.clone()
        with gems_aot.use_gems():
            torch.relu_(y)
        check(y, expected, expected)
    no_fallbacks()


def _aten_relu(v):
    with gems_aot.use_gems(include=[]):
        return torch.relu(v)


def test_autograd_through_overrides():
    a = torch.randn(64, 32, device="cuda", requires_grad=True)
    b = torch.randn(32, device="cuda", requires_grad=True)
    def f():
        return (torch.relu(a * b + a / (b.abs() + 1) - 2 * b)).sum()
    ga, gb = torch.autograd.grad(f(), (a, b))
    with gems_aot.use_gems():
        ga2, gb2 = torch.autograd.grad(f(), (a, b))
    torch.testing.assert_close(ga2, ga)
    torch.testing.assert_close(gb2, gb)


def test_cuda_graph_capture_and_replay():
    a, b = rand((4096,), torch.float32), rand((4096,), torch.float32)
    with gems_aot.use_gems():
        torch.add(a, b)  # load the kernel before capture
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = torch.add(a, b, alpha=2)
        a.copy_(rand((4096,), torch.float32))
        graph.replay()
        torch.cuda.synchronize()
    check(out, a + 2 * b, ref_op("add", a, b, alpha=2))


def test_non_default_stream_and_thread():
    import threading

    a, b = rand((1 << 20,), torch.float32), rand((1 << 20,), torch.float32)
    results = {}

    def worker():
        with torch.cuda.stream(torch.cuda.Stream()):
            results["out"] = torch.ops.gems.mul(a, b)
            torch.cuda.current_stream().synchronize()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    check(results["out"], a * b, ref_op("mul", a, b))


def test_64bit_indexing():
    free, _ = torch.cuda.mem_get_info()
    n = 2**31 + 1024
    if free < 3 * n * 2 + (1 << 30):
        pytest.skip("not enough GPU memory for a > 2**31-element case")
    a = torch.ones(n, device="cuda", dtype=torch.bfloat16)
    b = torch.full((n,), 2.0, device="cuda", dtype=torch.bfloat16)
    with gems_aot.use_gems():
        out = torch.add(a, b)
    assert out[-2048:].eq(3).all() and out[:1024].eq(3).all() and out[2**31 - 8: 2**31 + 8].eq(3).all()
    no_fallbacks()
    del a, b, out
    torch.cuda.empty_cache()


def test_dtypes_without_kernels_run_aten_untouched():
    """Complex tensors and integer nan_to_num worked under ATen and raised under gems (a dtype-
    specific check or parameter ran before the dtype decision): now ATen's kernel serves them,
    counted as dtype fallbacks, with ATen's results."""
    x = torch.randn(8, device="cuda", dtype=torch.complex64)
    ints = torch.tensor([-3, 0, 7], device="cuda")
    real = torch.randn(4, 6, device="cuda")
    calls = {
        "fill_": lambda: torch.zeros(8, device="cuda", dtype=torch.complex64).fill_(1 + 2j),
        "add": lambda: x + 1,
        "mul": lambda: x * x,
        "fft2": lambda: torch.fft.fft2(real),
        "nan_to_num_int": lambda: torch.nan_to_num(ints),
        "nan_to_num_bool": lambda: torch.nan_to_num(ints > 0),
        "nan_to_num_int_": lambda: ints.clone().nan_to_num_(),
    }
    for name, call in calls.items():
        expected = call()
        with gems_aot.use_gems():
            got = call()
        assert got.dtype == expected.dtype and torch.equal(got, expected), name
    counts = gems_aot.fallback_counts()
    assert counts and {reason for _, reason in counts} <= {"dtype", "args"}, counts
