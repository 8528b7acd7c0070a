"""GPU accuracy suite of the index family (aot/family_index.py), per docs/TESTING.md: F.embedding
forward (bit for bit) and backward (padding_idx, scale_grad_by_freq, repeated rows) against ATen
and float64 through autograd, index_select and its out= form, embedding_dense_backward's
determinism, indices out of range, fallbacks, and the kernels that run."""

import pytest
import torch
import torch.nn.functional as F
from conftest import cuda_kernel_names, fallback_reader, requires_gpu

from aot import family_index as fam

pytestmark = requires_gpu

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)
OPS = [o.name for o in fam.ATEN_OVERRIDES]
# fp32 sums of another order than ATen's, then the result's rounding.
RTOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


@pytest.fixture
def counts(gems):
    return fallback_reader(gems, OPS)


def make(shape, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(shape, generator=g, device="cuda").to(dtype)


def token_ids(shape, v, dtype, seed=1):
    """Zipf-like ids: a few rows repeated often, as text gives them."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    u = torch.rand(shape, generator=g, device="cuda")
    return (v * u**3).long().clamp_max(v - 1).to(dtype)


def embedding_step(weight, ids, padding_idx, freq):
    w = weight.detach().requires_grad_()
    out = F.embedding(ids, w, padding_idx=padding_idx, scale_grad_by_freq=freq)
    grad = make(out.shape, out.dtype, seed=2)
    (dw,) = torch.autograd.grad(out, w, grad)
    return out, dw, grad


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("freq", [False, True], ids=["plain", "freq"])
@pytest.mark.parametrize("padding_idx", [None, 0])
@pytest.mark.parametrize("v,d,shape", [(1000, 64, (4, 300)), (32000, 2048, (4096,)), (50, 1029, (3, 7, 11)),
                                       (128256, 4096, (2, 1024)), (7, 5, (0,))], ids=str)
def test_embedding_against_aten(gems, counts, v, d, shape, padding_idx, freq, index_dtype, dtype):
    weight, ids = make((v, d), dtype), token_ids(shape, v, index_dtype)
    with gems.use_gems(include=OPS):
        out, dw, grad = embedding_step(weight, ids, padding_idx, freq)
    assert counts() == {}
    if freq and ids.numel() == 0:  # ATen's scale_grad_by_freq kernel raises 'invalid argument' here
        assert torch.equal(dw, torch.zeros_like(weight)) and out.shape == (*shape, d)
        return
    with gems.use_gems(include=[]):
        aten_out, aten_dw, _ = embedding_step(weight, ids, padding_idx, freq)
        assert torch.equal(out, aten_out) and out.stride() == aten_out.stride()
        ref = torch.ops.aten.embedding_dense_backward(grad.double(), ids, v, -1 if padding_idx is None else
                                                      padding_idx, freq)
        assert dw.dtype == aten_dw.dtype and dw.shape == aten_dw.shape
        torch.testing.assert_close(dw, ref.to(dtype), rtol=RTOL[dtype], atol=1e-5 if dtype == torch.float32 else 1e-3)
        if padding_idx is not None:
            assert (dw[padding_idx] == 0).all()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_backward_is_deterministic(gems, dtype):
    """Two runs give the same bits, also with rows referenced thousands of times (the summation
    order is the positions' order, whatever order the atomics placed them in)."""
    ids = token_ids((16384,), 32000, torch.int64)
    ids[::3] = 17
    grad = make((16384, 2048), dtype)
    run = lambda: torch.ops.gems.embedding_dense_backward(grad, ids, 32000, -1, False)  # noqa: E731
    first = run()
    for _ in range(3):
        assert torch.equal(run(), first)
    with gems.use_gems(include=[]):
        ref = torch.ops.aten.embedding_dense_backward(grad.double(), ids, 32000, -1, False)
        torch.testing.assert_close(first, ref.to(dtype), rtol=RTOL[dtype], atol=1e-3)


def test_out_of_range_gives_nan(gems):
    weight = make((10, 32), torch.float32)
    ids = torch.tensor([1, 10, -1, 3], device="cuda")
    out = torch.ops.gems.embedding(weight, ids)
    assert out[[1, 2]].isnan().all() and torch.equal(out[[0, 3]], weight[[1, 3]])
    dw = torch.ops.gems.embedding_dense_backward(torch.ones(4, 32, device="cuda"), ids, 10, -1, False)
    assert dw.isnan().all()
    torch.cuda.synchronize()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_index_select_and_out(gems, counts, dtype):
    x = make((300, 5, 7), dtype)
    index = token_ids((90,), 300, torch.int32)[::2]  # a strided index
    with gems.use_gems(include=OPS):
        got = torch.index_select(x, 0, index)
        out = torch.empty(0, device="cuda", dtype=dtype)
        torch.index_select(x, 0, index, out=out)
        unaligned = torch.empty(45 * 35 + 1, device="cuda", dtype=dtype)[1:].view(45, 5, 7)
        torch.index_select(x, 0, index, out=unaligned)  # ATen's kernel (see csrc/ops/index.cpp)
    assert counts() == {("index_select.out", "layout"): 1}
    with gems.use_gems(include=[]):
        expected = torch.index_select(x, 0, index)
        assert torch.equal(got, expected) and torch.equal(out, expected) and torch.equal(unaligned, expected)


def test_fallbacks(gems, counts):
    """What the kernels do not cover runs ATen's kernel, counted with its reason."""
    w = make((20, 8), torch.float32)
    ids = torch.tensor([1, 2, 3], device="cuda")
    with gems.use_gems(include=OPS):
        F.embedding(ids, w.double())
        F.embedding(ids, w.t().contiguous().t())
        torch.index_select(w, 1, ids)
        torch.ops.aten.embedding_dense_backward(torch.ones(3, 8, device="cuda").double(), ids, 20, -1, False)
        # An expanded gradient (a sum's) is made contiguous, as ATen's kernel does: served.
        torch.ops.aten.embedding_dense_backward(torch.ones((), device="cuda").expand(3, 8), ids, 20, -1, False)
    # F.embedding's fallback is ATen's composite, whose index_select reaches gems' override and
    # falls back again for the same reason.
    assert counts() == {("embedding", "dtype"): 1, ("embedding", "layout"): 1, ("index_select", "args"): 1,
                        ("index_select", "dtype"): 1, ("index_select", "layout"): 1,
                        ("embedding_dense_backward", "dtype"): 1}


def test_kernels_that_run(gems):
    w = make((100, 64), torch.bfloat16).requires_grad_()
    ids = token_ids((50,), 100, torch.int64)
    with gems.use_gems(include=OPS):
        names = cuda_kernel_names(lambda: F.embedding(ids, w).sum().backward())
    assert {"gather_rows", "count_rows", "scan_counts", "bucket_positions", "sort_buckets", "sum_rows"} <= names
