"""GPU accuracy suite of the reduce family (sum), per docs/TESTING.md."""

import itertools
import warnings

import pytest
import torch
from conftest import requires_gpu

pytestmark = requires_gpu

SHAPES = [(), (1,), (0,), (0, 7), (1024, 1024), (20, 320, 15), (16, 128, 64, 60), (16, 7, 57, 32, 29)]
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-7}
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
INTS = (torch.int32, torch.int64, torch.bool, torch.uint8, torch.int8, torch.int16)
OVERRIDES = ("sum.dim_IntList", "sum.IntList_out")


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


@pytest.fixture
def counts(gems):
    """Fallback counts of the sum overrides during the test."""
    gems.reset_fallback_counts()

    def read():
        return {k: v for k, v in gems.fallback_counts().items() if k[0] in OVERRIDES}

    return read


def make(shape, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g, device="cuda") < 0.5
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, device="cuda", dtype=dtype)
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        return torch.randint(info.min, info.max, shape, generator=g, device="cuda", dtype=dtype)
    return torch.randn(shape, generator=g, device="cuda").to(dtype)


def dim_lists(ndim):
    """None, every dim (also negative), and every dim list of two and more dims."""
    out = [None, []]
    for d in range(ndim):
        out += [d, d - ndim]
    for k in range(2, ndim + 1):
        out += [list(c) for c in itertools.combinations(range(ndim), k)]
    if ndim >= 2:
        out.append([-1, 0])
    return out


def reduction_length(x, dim):
    if dim is None or dim == []:
        return max(x.numel(), 1)
    dims = [dim] if isinstance(dim, int) else dim
    n = 1
    for d in dims:
        n *= x.shape[d] if x.dim() else 1
    return max(n, 1)


def reference(x, dim, keepdim, dtype):
    """torch.sum on float64 (exact integers), outside gems."""
    if x.is_floating_point() or (dtype is not None and dtype.is_floating_point):
        return torch.sum(x.double(), dim=dim, keepdim=keepdim)
    return torch.sum(x, dim=dim, keepdim=keepdim, dtype=torch.int64)


def assert_matches(res, x, dim=None, keepdim=False, dtype=None):
    expected = torch.sum(x, dim=dim, keepdim=keepdim, dtype=dtype)  # ATen: dtype, shape, strides
    assert res.dtype == expected.dtype and res.shape == expected.shape and res.device == expected.device
    assert res.stride() == expected.stride()
    ref = reference(x, dim, keepdim, dtype)
    if res.dtype.is_floating_point:
        atol = 1e-4 * reduction_length(x, dim)
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[res.dtype], atol=atol, equal_nan=True)
    else:
        assert torch.equal(res, ref.to(res.dtype))


def sum_call(x, dim, keepdim, dtype):
    if dim is None:
        return torch.sum(x, dtype=dtype) if not keepdim else x.sum(dim=None, keepdim=True, dtype=dtype)
    return x.sum(dim, keepdim=keepdim, dtype=dtype)


# -- torch.sum under use_gems ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (torch.int32, torch.bool))
def test_shapes_and_dims(gems, counts, shape, dtype):
    x = make(shape, dtype)
    for dim in dim_lists(len(shape)):
        for keepdim in (False, True):
            with gems.use_gems(include=["sum"]):
                res = sum_call(x, dim, keepdim, None)
            assert_matches(res, x, dim, keepdim)
    assert counts() == {}


@pytest.mark.parametrize("dtype", INTS)
def test_integers_exact(gems, counts, dtype):
    x = make((64, 1000), dtype)
    for dim in (None, 0, 1):
        with gems.use_gems(include=["sum"]):
            res = sum_call(x, dim, False, None)
        assert res.dtype == torch.int64
        assert_matches(res, x, dim)
    # int64 sums wrap as ATen's do.
    big = torch.full((1000,), 2**62, dtype=torch.int64, device="cuda")
    with gems.use_gems(include=["sum"]):
        assert torch.equal(big.sum(), torch.sum(big))
    assert counts() == {}


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_to_fp32(gems, counts, dtype):
    x = make((300, 5000), dtype)
    for dim in (None, 0, 1, [0, 1]):
        with gems.use_gems(include=["sum"]):
            res = sum_call(x, dim, False, torch.float32)
        assert_matches(res, x, dim, dtype=torch.float32)
    with gems.use_gems(include=["sum"]):
        res = make((7, 9), torch.int32).sum(1, dtype=torch.int64)
    assert res.dtype == torch.int64
    assert counts() == {}


def test_fp16_wide_range(gems, counts):
    # Values near fp16's limit in blocks [[v, -v], [-v, v]]: every row, column and full sum is
    # exactly 0 in any order, while partial sums in fp16 would overflow.
    v = (make((2048, 32), torch.float32).abs().clamp(0.5, 1) * 60000).half()
    x = torch.cat([torch.cat([v, -v], 1), torch.cat([-v, v], 1)], 0)
    for dim in (0, 1, None):
        with gems.use_gems(include=["sum"]):
            res = sum_call(x, dim, False, None)
        assert torch.equal(res, torch.zeros_like(res))
    assert counts() == {}


def test_layouts(gems, counts):
    base = make((64, 96, 80), torch.float32)
    cl = make((8, 64, 32, 32), torch.bfloat16).to(memory_format=torch.channels_last)
    cases = [
        (base.transpose(0, 2), [0, 1, (1, 2), (0, 2)]),
        (base.permute(1, 2, 0), [0, 1, 2, (0, 1)]),
        (base[3:50, 5:90, 2:], [0, 1, 2, (0, 2), None]),  # storage offset, uncoalescable
        (base[:, 7], [0, 1, None]),
        (make((80,), torch.float32).expand(1000, 80), [0, 1, None]),  # stride 0
        (make((80, 1), torch.float32).expand(80, 1000), [0, 1, None]),
        (make((), torch.float32).expand(5, 6), [0, 1, None]),
        (cl, [1, (2, 3), (0, 2, 3), None]),
        (base.as_strided((96, 64, 80), (80, 96 * 80, 1)), [0, 1, (0, 2)]),
    ]
    for x, dims in cases:
        for dim in dims:
            for keepdim in (False, True):
                with gems.use_gems(include=["sum"]):
                    res = sum_call(x, list(dim) if isinstance(dim, tuple) else dim, keepdim, None)
                assert_matches(res, x, list(dim) if isinstance(dim, tuple) else dim, keepdim)
    assert counts() == {}


def test_strided_innermost_falls_back(gems, counts):
    # A step slice leaves no contiguous innermost dim: ATen sums it, counted as a layout fallback.
    x = make((64, 100), torch.float32)[:, ::2]
    with gems.use_gems(include=["sum"]):
        res = x.sum(1)
    assert_matches(res, x, 1)
    assert counts() == {("sum.dim_IntList", "layout"): 1}


def test_full_sum_64m(gems, counts):
    for dtype in (torch.float32, torch.bfloat16):
        x = make((1 << 26,), dtype)
        with gems.use_gems(include=["sum"]):
            a = torch.sum(x)
            b = torch.sum(x)
        assert torch.equal(a, b)  # deterministic: no atomics
        assert_matches(a, x)
        # Tighter than atol 1e-4 * n: the split's fp32 partials keep the error small.
        assert abs(a.double().item() - x.double().sum().item()) < 1e-2 * (x.numel() ** 0.5)
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
    with gems.use_gems(include=["sum"]):
        full, by_row, by_col = x.sum(), rows.sum(1), rows.sum(0)
    assert full.item() == torch.sum(x).item()
    assert torch.equal(by_row, torch.sum(rows, 1)) and torch.equal(by_col, torch.sum(rows, 0))
    assert counts() == {}


# -- out= -------------------------------------------------------------------------------------


def test_out_resized(gems, counts):
    x = make((20, 320, 15), torch.float32)
    out = torch.full((5,), float("nan"), device="cuda")
    with gems.use_gems(include=["sum"]), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = torch.sum(x, (0, 2), out=out)
    assert res is out and out.shape == (320,)
    assert any("resized" in str(m.message) for m in w)
    assert_matches(out, x, [0, 2])
    assert counts() == {}


def test_out_strides_kept(gems, counts):
    x = make((20, 320, 15), torch.bfloat16)
    out = torch.full((15, 20), float("nan"), device="cuda", dtype=torch.bfloat16).t()
    with gems.use_gems(include=["sum"]):
        torch.sum(x, 1, out=out)
    assert out.stride() == (1, 20)
    torch.testing.assert_close(out, torch.sum(x.double(), 1).bfloat16(), rtol=RTOL[torch.bfloat16], atol=0.032)
    out = torch.full((20, 1, 15), float("nan"), device="cuda")
    with gems.use_gems(include=["sum"]):
        torch.sum(x, 1, keepdim=True, dtype=torch.float32, out=out)
    torch.testing.assert_close(out, torch.sum(x.double(), 1, keepdim=True).float(), rtol=1.3e-6, atol=0.032)
    assert counts() == {}


def test_out_errors_and_fallbacks(gems, counts):
    x = make((8, 9), torch.float32)
    with gems.use_gems(include=["sum"]):
        with pytest.raises(RuntimeError, match="Expected out tensor to have dtype float, but got c10::Half instead"):
            torch.sum(x, 1, dtype=torch.float32, out=torch.empty(8, device="cuda", dtype=torch.half))
        with pytest.raises(RuntimeError, match="appears multiple times"):
            torch.sum(x, [1, 1], out=torch.empty(8, device="cuda"))
        i32 = make((8, 9), torch.int32)
        out = torch.empty(8, device="cuda", dtype=torch.int32)  # int32 result: not built, ATen's
        torch.sum(i32, 1, out=out)
    assert torch.equal(out, torch.sum(i32, 1, dtype=torch.int32))
    assert counts() == {("sum.IntList_out", "dtype"): 1}


# -- uncovered input, gems ops, autograd --------------------------------------------------------


def test_uncovered_dtype_falls_back(gems, counts):
    x = make((33, 17), torch.float64)
    with gems.use_gems(include=["sum"]):
        res = torch.sum(x, 0)
        c = torch.sum(x.to(torch.complex64))
    assert_matches(res, x, 0)
    torch.testing.assert_close(c, torch.sum(x.to(torch.complex64)))
    assert counts() == {("sum.dim_IntList", "dtype"): 2}
    with pytest.raises(RuntimeError, match="gems::sum: no gems kernel covers this input"):
        torch.ops.gems.sum(x)
    with pytest.raises(RuntimeError, match=r"gems::sum.dim_IntList: no gems kernel covers this input \(dtype"):
        torch.ops.gems.sum.dim_IntList(x, [0])


def test_errors_match_torch(gems):
    x = make((3, 4), torch.float32)
    for dim in ([1, 1], [2], [-3]):
        with pytest.raises((RuntimeError, IndexError)) as theirs:
            torch.sum(x, dim)
        with gems.use_gems(include=["sum"]), pytest.raises(type(theirs.value)) as ours:
            torch.sum(x, dim)
        assert str(ours.value) == str(theirs.value)
        with pytest.raises(type(theirs.value)):
            torch.ops.gems.sum.dim_IntList(x, dim)


@pytest.mark.parametrize("shape", [(), (0, 7), (20, 320, 15), (16, 7, 57, 32, 29)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (torch.int32, torch.bool))
def test_gems_ops(gems, shape, dtype):
    x = make(shape, dtype)
    res = torch.ops.gems.sum(x)
    assert_matches(res, x)
    if x.is_floating_point():
        assert_matches(torch.ops.gems.sum(x, dtype=torch.float32), x, dtype=torch.float32)
    for dim in dim_lists(len(shape))[:8]:
        for keepdim in (False, True):
            assert_matches(torch.ops.gems.sum.dim_IntList(x, dim, keepdim), x, dim, keepdim)


def test_gems_ops_meta(gems):
    x = torch.empty(4, 5, 6, device="meta", dtype=torch.bfloat16)
    for dim, keepdim, dtype in [(None, False, None), ([1], True, torch.float32), ([-1, 0], False, None)]:
        res = torch.ops.gems.sum.dim_IntList(x, dim, keepdim, dtype=dtype)
        ref = torch.sum(x, dim, keepdim, dtype=dtype) if dim is not None else torch.sum(x, dtype=dtype)
        assert res.shape == ref.shape and res.dtype == ref.dtype and res.device.type == "meta"


def test_autograd(gems, counts):
    x = make((16, 37, 9), torch.float32).requires_grad_()
    for dim, keepdim in [(None, False), (1, False), ([0, 2], True)]:
        grad = make(torch.sum(x.detach(), dim=dim, keepdim=keepdim).shape, torch.float32, seed=1)
        with gems.use_gems(include=["sum"]):
            y = sum_call(x, dim, keepdim, None)
            (g_ours,) = torch.autograd.grad(y, x, grad)
        y_ref = sum_call(x, dim, keepdim, None)
        (g_ref,) = torch.autograd.grad(y_ref, x, grad)
        torch.testing.assert_close(y, y_ref, rtol=1.3e-6, atol=1e-4 * reduction_length(x, dim))
        assert torch.equal(g_ours, g_ref)
    assert counts() == {}


def test_cuda_graph(gems):
    x = make((3, 100000), torch.float32)
    with gems.use_gems(include=["sum"]):
        torch.sum(x, 1)  # warm-up: loads the kernels
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y = torch.sum(x, 1)
    x.copy_(make((3, 100000), torch.float32, seed=2))
    graph.replay()
    torch.testing.assert_close(y, torch.sum(x.double(), 1).float(), rtol=1.3e-6, atol=10.0)
