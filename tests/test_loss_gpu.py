"""GPU accuracy suite of the loss family (aot/family_loss.py), per docs/TESTING.md: F.cross_entropy
forward and backward on gems (log_softmax of the row-wise family, nll_loss_forward /
nll_loss_backward of this one) against ATen and float64, nll_loss and nll_loss2d with every
reduction, class weights, ignore_index and out=, targets out of range, mse_loss and its backward,
determinism, fallbacks."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import cuda_kernel_names, fallback_reader, requires_gpu

from aot import family_loss as fam

pytestmark = requires_gpu

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
REDUCTIONS = ("none", "mean", "sum")
CE_OPS = ["_log_softmax", "_log_softmax_backward_data", "nll_loss_forward", "nll_loss_backward"]
LOSS_OPS = [o.name for o in fam.ATEN_OVERRIDES]


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


@pytest.fixture
def counts(gems):
    return fallback_reader(gems, LOSS_OPS + CE_OPS)


def make(shape, dtype, seed=0, scale=3.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(shape, generator=g, device="cuda") * scale).to(dtype)


def targets(rows, classes, ignored=0.1, ignore_index=-100, seed=1):
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = torch.randint(0, max(classes, 1), (rows,), generator=g, device="cuda")
    t[torch.rand(rows, generator=g, device="cuda") < ignored] = ignore_index
    return t


def poisoned(shape, dtype):
    torch.full(shape, float("nan"), device="cuda", dtype=dtype)


def assert_like_aten(gems, res, aten, ref, rtol, atol):
    """res within the suite's tolerance of the float64 reference, or no further from it than
    three times ATen's own result (bf16 cross-entropy gradients: exp of a bf16 log-probability;
    sums of another order)."""
    with gems.use_gems(include=[]):
        assert (res.dtype, res.shape, res.stride()) == (aten.dtype, aten.shape, aten.stride())
        assert torch.equal(res.isnan(), ref.isnan()) or torch.equal(res.isnan(), aten.isnan())
        try:
            torch.testing.assert_close(res, ref.to(res.dtype), rtol=rtol, atol=atol, equal_nan=True)
        except AssertionError:
            ok = ~ref.isnan()
            err_gems = (res.double() - ref)[ok].abs().max()
            err_aten = (aten.double() - ref)[ok].abs().max()
            assert err_gems <= 3 * err_aten + atol, (float(err_gems), float(err_aten))


# -- F.cross_entropy ---------------------------------------------------------------------------

CE_SHAPES = [(1, 5), (7, 33), (64, 1000), (300, 4097), (257, 32000), (5,)]


def cross_entropy(x, t, w, reduction, ignore_index=-100):
    x = x.detach().requires_grad_()
    loss = F.cross_entropy(x, t, weight=w, reduction=reduction, ignore_index=ignore_index)
    grad = torch.linspace(0.5, 1.5, loss.numel(), device="cuda").reshape(loss.shape).to(loss.dtype)
    (dx,) = torch.autograd.grad(loss, x, grad)
    return loss, dx, grad


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
def test_cross_entropy_forward_and_backward(gems, counts, shape, dtype, reduction, weighted):
    """F.cross_entropy (log_softmax, then nll_loss_forward; nll_loss_backward, then the
    log_softmax backward) entirely on gems kernels, against ATen and float64."""
    x = make(shape, dtype)
    classes = shape[-1]
    t = targets(shape[0], classes) if len(shape) == 2 else torch.tensor(3, device="cuda")
    w = (torch.rand(classes, device="cuda") + 0.5).to(dtype) if weighted else None
    poisoned(shape, dtype)
    with gems.use_gems(include=CE_OPS):
        loss, dx, grad = cross_entropy(x, t, w, reduction)
        names = cuda_kernel_names(lambda: cross_entropy(x, t, w, reduction))
    assert counts() == {}
    assert not [n for n in names if "at::native" in n and ("nll" in n or "SoftMax" in n or "softmax" in n)], names
    assert any("nll_fwd" in n for n in names) and any("nll_bwd" in n for n in names), names
    with gems.use_gems(include=[]):
        loss_aten, dx_aten, _ = cross_entropy(x, t, w, reduction)
        x64 = x.double().requires_grad_()
        loss64 = F.cross_entropy(x64, t, weight=None if w is None else w.double(), reduction=reduction)
        (dx64,) = torch.autograd.grad(loss64, x64, grad.double())
    rows = shape[0] if len(shape) == 2 else 1
    assert_like_aten(gems, loss, loss_aten, loss64.detach(), RTOL[dtype], 1e-4 * rows)
    assert_like_aten(gems, dx, dx_aten, dx64, RTOL[dtype], 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_cross_entropy_llm_size(gems, counts, dtype):
    """4096 rows of a 32000 vocabulary (the bench's size), mean over the non-ignored rows."""
    x = make((4096, 32000), dtype)
    t = targets(4096, 32000, ignored=0.05)
    with gems.use_gems(include=CE_OPS):
        loss, dx, grad = cross_entropy(x, t, None, "mean")
    assert counts() == {}
    with gems.use_gems(include=[]):
        loss_aten, dx_aten, _ = cross_entropy(x, t, None, "mean")
        x64 = x.double().requires_grad_()
        loss64 = F.cross_entropy(x64, t)
        (dx64,) = torch.autograd.grad(loss64, x64, grad.double())
    assert_like_aten(gems, loss, loss_aten, loss64.detach(), RTOL[dtype], 1e-4)
    assert_like_aten(gems, dx, dx_aten, dx64, RTOL[dtype], 1e-10)  # gradients about 1e-8


# -- nll_loss_forward / nll_loss_backward ---------------------------------------------------------

NLL_SHAPES = [(1, 1), (5, 7), (300, 33), (1000, 50), (4097, 100), (20000, 11), (3, 70000), (0, 5), (7,), (1,)]


def nll_calls(x, t, w, reduction, ignore_index, grad=None, total_weight=None):
    """(loss, total weight, gradient, grad_output); the backward from total_weight where given
    (gems' sum of weights may differ from ATen's in the last bit)."""
    out, tw = torch.ops.aten.nll_loss_forward(x, t, w, reduction, ignore_index)
    if grad is None:
        grad = torch.linspace(0.5, 1.5, out.numel(), device="cuda").reshape(out.shape).to(out.dtype)
    tw = tw if total_weight is None else total_weight
    dx = torch.ops.aten.nll_loss_backward(grad, x, t, w, reduction, ignore_index, tw)
    return out, tw, dx, grad


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("reduction", [0, 1, 2], ids=REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", NLL_SHAPES, ids=str)
def test_nll_loss(gems, counts, shape, dtype, reduction, weighted):
    """nll_loss_forward and nll_loss_backward on log-probabilities, against ATen's kernels: the
    per-row losses, the total weight without weights and the whole gradient bit for bit (the
    same arithmetic in the same dtype), the reductions within the suite's tolerance."""
    x = torch.log_softmax(make(shape, torch.float32), -1).to(dtype) if shape[-1] else make(shape, dtype)
    t = targets(shape[0], shape[-1]) if len(shape) == 2 else torch.tensor(shape[0] - 1, device="cuda")
    w = (torch.rand(shape[-1], device="cuda") + 0.5).to(dtype) if weighted else None
    poisoned(shape, dtype)
    with gems.use_gems(include=["nll_loss_forward", "nll_loss_backward"]):
        out, tw, dx, grad = nll_calls(x, t, w, reduction, -100)
    assert counts() == {}
    with gems.use_gems(include=[]):
        out_aten, tw_aten, _, _ = nll_calls(x, t, w, reduction, -100, grad)
        _, _, dx_aten, _ = nll_calls(x, t, w, reduction, -100, grad, tw)
        out64, tw64 = torch.ops.aten.nll_loss_forward(x.double(), t, None if w is None else w.double(), reduction,
                                                      -100)
        assert torch.equal(dx, dx_aten)
        assert (out.dtype, out.shape, out.stride()) == (out_aten.dtype, out_aten.shape, out_aten.stride())
        assert (tw.dtype, tw.shape) == (tw_aten.dtype, tw_aten.shape)
        if reduction == 0 or out.numel() == 0:
            assert torch.equal(out.isnan(), out_aten.isnan()) and torch.equal(out.nan_to_num(), out_aten.nan_to_num())
        if not weighted:
            assert torch.equal(tw, tw_aten)
    rows = shape[0] if len(shape) == 2 else 1
    assert_like_aten(gems, out, out_aten, out64, RTOL[dtype], 1e-4 * max(rows, 1))
    assert_like_aten(gems, tw, tw_aten, tw64, RTOL[dtype], 1e-4)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_nll_edges_as_aten(gems, counts, dtype):
    """All rows ignored (mean NaN, sum 0, total weight 0), a custom ignore_index, a zero weight,
    the one row of a 1-D input ignored (0) or of zero weight (NaN), empty input."""
    x = torch.log_softmax(make((6, 9), torch.float32), 1).to(dtype)
    w = torch.tensor([1.0, 0.0, 2.0, 1.0, 1.0, 3.0, 1.0, 1.0, 0.5], device="cuda").to(dtype)
    cases = [(x, torch.full((6,), 4, device="cuda"), None, 4), (x, torch.full((6,), 4, device="cuda"), w, 4),
             (x, torch.tensor([1, 1, 2, 3, 8, 0], device="cuda"), w, 2), (x, torch.full((6,), 1, device="cuda"), w, -1),
             (x[2], torch.tensor(5, device="cuda"), None, 5), (x[2], torch.tensor(1, device="cuda"), w, -100),
             (x[2], torch.tensor(5, device="cuda"), w, -100), (x[:0], torch.empty(0, dtype=torch.long, device="cuda"),
                                                               w, -100)]
    for xi, ti, wi, ignore in cases:
        for reduction in (0, 1, 2):
            with gems.use_gems(include=["nll_loss_forward", "nll_loss_backward"]):
                out, tw, dx, grad = nll_calls(xi, ti, wi, reduction, ignore)
            with gems.use_gems(include=[]):
                out_aten, tw_aten, dx_aten, _ = nll_calls(xi, ti, wi, reduction, ignore, grad, tw)
                for a, b in ((out, out_aten), (tw, tw_aten), (dx, dx_aten)):
                    assert a.shape == b.shape and torch.equal(a.isnan(), b.isnan()), (ti, ignore, reduction)
                    assert torch.allclose(a.nan_to_num(), b.nan_to_num(), rtol=RTOL[dtype]), (ti, ignore, reduction)
    assert counts() == {}


def test_targets_out_of_range_are_nan_and_read_nothing(gems):
    """ATen raises a device-side assert (which ends the process' CUDA context); gems gives NaN
    for the row's loss, the reduction and the gradient row, and the process goes on."""
    x = torch.log_softmax(make((6, 5), torch.float32), 1)
    t = torch.tensor([0, 5, 2, -1, -100, 1 << 40], device="cuda")
    with gems.use_gems(include=["nll_loss_forward", "nll_loss_backward"]):
        out, _, dx, _ = nll_calls(x, t, None, 0, -100)
        mean, tw, _, _ = nll_calls(x, t, None, 1, -100)
    torch.cuda.synchronize()
    assert out.isnan().tolist() == [False, True, False, True, False, True] and out[4] == 0
    assert mean.isnan() and tw.isnan()
    assert dx.isnan().all(1).tolist() == [False, True, False, True, False, True]


def test_nll_strided_operands_and_out(gems, counts):
    """A transposed input, a sliced target and weight (the kernel takes strides), out= of the
    right size, of the wrong size (resized with torch's warning) and strided."""
    x = torch.log_softmax(make((40, 9), torch.float32), 1).t().contiguous().t()
    t = targets(80, 9)[::2]
    w = (torch.rand(18, device="cuda") + 0.5)[::2]
    assert x.stride() == (1, 40) and t.stride() == (2,) and w.stride() == (2,)
    for reduction in (0, 1, 2):
        with gems.use_gems(include=["nll_loss_forward", "nll_loss_backward"]):
            out, tw, dx, grad = nll_calls(x, t, w, reduction, -100)
        with gems.use_gems(include=[]):
            out_aten, tw_aten, dx_aten, _ = nll_calls(x, t, w, reduction, -100, grad, tw)
            torch.testing.assert_close(out, out_aten, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(dx, dx_aten, rtol=0, atol=0)
    assert counts() == {}
    x = torch.log_softmax(make((12, 7), torch.float32), 1)
    t = targets(12, 7)
    expected = torch.ops.aten.nll_loss_forward(x, t, None, 0, -100)[0]
    with gems.use_gems(include=["nll_loss_forward"]):
        out, tw = torch.empty(12, device="cuda"), torch.empty((), device="cuda")
        torch.ops.aten.nll_loss_forward.output(x, t, None, 0, -100, output=out, total_weight=tw)
        assert torch.equal(out, expected) and tw == 0
        # A strided out=: ATen's kernel writes it as if contiguous, and gems leaves it to ATen.
        base = torch.full((24,), 7.0, device="cuda")
        torch.ops.aten.nll_loss_forward.output(x, t, None, 0, -100, output=base[::2], total_weight=tw)
        assert counts() == {("nll_loss_forward.output", "layout"): 1}
        gems.reset_fallback_counts()
    aten_base = torch.full((24,), 7.0, device="cuda")
    torch.ops.aten.nll_loss_forward.output(x, t, None, 0, -100, output=aten_base[::2], total_weight=tw)
    assert torch.equal(base, aten_base)
    with gems.use_gems(include=["nll_loss_forward"]):
        # torch.ops.aten.*.out prints the resize warning (torch has no Python binding of this
        # out= form, which would raise it as a Python warning); test_mse_out_and_fallbacks checks it.
        wrong, tw_wrong = torch.empty(5, device="cuda"), torch.empty(0, device="cuda")
        torch.ops.aten.nll_loss_forward.output(x, t, None, 1, -100, output=wrong, total_weight=tw_wrong)
        assert wrong.shape == () and tw_wrong.shape == ()
        assert torch.equal(wrong, torch.ops.aten.nll_loss_forward(x, t, None, 1, -100)[0])
    with gems.use_gems(include=["nll_loss_backward"]):
        gi = torch.full((12, 7), float("nan"), device="cuda")
        g = torch.ones((), device="cuda")
        torch.ops.aten.nll_loss_backward.grad_input(g, x, t, None, 2, -100, torch.tensor(5.0, device="cuda"),
                                                    grad_input=gi)
    assert counts() == {}
    assert torch.equal(gi, torch.ops.aten.nll_loss_backward(g, x, t, None, 2, -100, torch.tensor(5.0, device="cuda")))


def test_nll_is_deterministic(gems):
    """Split reductions give the same bits on every run."""
    x = torch.log_softmax(make((50000, 40), torch.float32), 1)
    t = targets(50000, 40)
    w = torch.rand(40, device="cuda") + 0.5
    with gems.use_gems(include=["nll_loss_forward", "mse_loss"]):
        first = torch.ops.aten.nll_loss_forward(x, t, w, 1, -100)
        a, b = make((3000, 1001), torch.float32), make((3000, 1001), torch.float32, seed=5)
        mse = F.mse_loss(a, b)
        for _ in range(5):
            again = torch.ops.aten.nll_loss_forward(x, t, w, 1, -100)
            assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
            assert torch.equal(mse, F.mse_loss(a, b))


# -- nll_loss2d -----------------------------------------------------------------------------------


def nll2d_calls(x, t, w, reduction, grad=None, total_weight=None):
    out, tw = torch.ops.aten.nll_loss2d_forward(x, t, w, reduction, -100)
    if grad is None:
        grad = torch.linspace(0.5, 1.5, out.numel(), device="cuda").reshape(out.shape).to(out.dtype)
    tw = tw if total_weight is None else total_weight
    return out, tw, torch.ops.aten.nll_loss2d_backward(grad, x, t, w, reduction, -100, tw), grad


@pytest.mark.parametrize("reduction", [0, 1, 2], ids=REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (2, 21, 48, 64), (1, 3, 1, 7), (3, 4, 6, 1), (0, 3, 2, 2)], ids=str)
def test_nll_loss2d(gems, counts, shape, dtype, reduction):
    """nll_loss2d over [N, C, H, W], with and without weights: the gradient bit for bit against
    ATen's from the same total weight, the loss within tolerance (ATen sums with atomics in the
    dtype, gems in fp32 in a fixed order)."""
    n, c, h, w_ = shape
    x = torch.log_softmax(make(shape, torch.float32), 1).to(dtype)
    t = targets(n * h * w_, c).reshape(n, h, w_)
    for w in (None, (torch.rand(c, device="cuda") + 0.5).to(dtype)):
        with gems.use_gems(include=["nll_loss2d_forward", "nll_loss2d_backward"]):
            out, tw, dx, grad = nll2d_calls(x, t, w, reduction)
        with gems.use_gems(include=[]):
            out_aten, _, dx_aten, _ = nll2d_calls(x, t, w, reduction, grad, tw)
            out64, tw64 = torch.ops.aten.nll_loss2d_forward(x.double(), t, None if w is None else w.double(),
                                                            reduction, -100)
            assert torch.equal(dx.nan_to_num(), dx_aten.nan_to_num()) and torch.equal(dx.isnan(), dx_aten.isnan())
            assert (dx.stride(), out.shape, out.stride()) == (dx_aten.stride(), out_aten.shape, out_aten.stride())
        assert_like_aten(gems, out, out_aten, out64, RTOL[dtype], 1e-4 * max(1, n * h * w_))
        assert_like_aten(gems, tw, tw, tw64, RTOL[dtype], 1e-4)
    # F.nll_loss of 4-D input reaches both ops through autograd.
    xg = x.detach().requires_grad_()
    with gems.use_gems(include=["nll_loss2d_forward", "nll_loss2d_backward"]):
        loss = F.nll_loss(xg, t, reduction=REDUCTIONS[reduction])
        loss.backward(torch.ones_like(loss))
    assert counts() == {}


# -- mse_loss -----------------------------------------------------------------------------------

MSE_SHAPES = [(), (0,), (1,), (7, 3), (1024, 1024), (3000, 4095), (2, 3, 5, 7)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", MSE_SHAPES, ids=str)
def test_mse_loss(gems, counts, shape, dtype, reduction):
    """F.mse_loss forward and backward: the elementwise loss and both gradients bit for bit
    (ATen's arithmetic in the dtype), the mean and sum within the suite's tolerance."""
    a, b = make(shape, dtype), make(shape, dtype, seed=3)

    def run():
        ag, bg = a.detach().requires_grad_(), b.detach().requires_grad_()
        loss = F.mse_loss(ag, bg, reduction=reduction)
        grad = torch.linspace(0.5, 1.5, loss.numel(), device="cuda").reshape(loss.shape).to(dtype)
        return (loss, *torch.autograd.grad(loss, (ag, bg), grad))

    poisoned(shape, dtype)
    with gems.use_gems(include=["mse_loss", "mse_loss_backward"]):
        loss, da, db = run()
    assert counts() == {}
    with gems.use_gems(include=[]):
        loss_aten, da_aten, db_aten = run()
        assert torch.equal(da, da_aten) and torch.equal(db, db_aten)
        assert (loss.dtype, loss.shape, loss.stride()) == (loss_aten.dtype, loss_aten.shape, loss_aten.stride())
        if reduction == "none":
            assert torch.equal(loss, loss_aten)
        else:
            d = (a.double() - b.double()).to(dtype).double()
            ref = (d * d).to(dtype).double()
            ref = ref.mean() if reduction == "mean" else ref.sum()
            assert_like_aten(gems, loss, loss_aten, ref, RTOL[dtype], 1e-4)


def test_mse_out_and_fallbacks(gems, counts):
    a, b = make((64, 33), torch.float32), make((64, 33), torch.float32, seed=2)
    with gems.use_gems(include=["mse_loss", "mse_loss_backward"]):
        out = torch.empty(64, 33, device="cuda")
        torch.ops.aten.mse_loss.out(a, b, 0, out=out)
        wrong = torch.empty(5, device="cuda")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch._C._nn.mse_loss(a, b, 0, out=wrong)  # torch's binding raises the resize warning
        assert counts() == {}
        assert torch.equal(out, (a - b) * (a - b)) and torch.equal(wrong, out)
        assert any("resized" in str(c.message) for c in caught)
        # what ATen serves: promotion, broadcasting, float64, a reduced out=
        F.mse_loss(a, b.bfloat16())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            F.mse_loss(a, b[:1])
        F.mse_loss(a.double(), b.double())
        torch.ops.aten.mse_loss.out(a, b, 1, out=torch.empty((), device="cuda"))
    reasons = {r for (_, r) in counts()}
    assert {"mixed_dtype", "layout", "dtype", "args"} <= reasons


def test_nll_fallbacks(gems, counts):
    """float64, a uint8 target and a mismatched weight dtype go to ATen, counted, with its results."""
    x = torch.log_softmax(make((6, 5), torch.float32), 1)
    t = targets(6, 5, ignored=0)
    with gems.use_gems(include=["nll_loss_forward"]):
        r64 = F.nll_loss(x.double(), t)
        r8 = F.nll_loss(x, t.to(torch.uint8))
        try:  # ATen's kernel reads the weight as the input's dtype, and raises
            F.nll_loss(x, t, weight=torch.ones(5, device="cuda", dtype=torch.float16))
        except RuntimeError:
            pass
    with gems.use_gems(include=[]):
        assert torch.equal(r64, F.nll_loss(x.double(), t)) and torch.equal(r8, F.nll_loss(x, t))
    assert {r for (_, r) in counts()} == {"dtype", "mixed_dtype"}


def test_gems_ops_direct(gems):
    """torch.ops.gems: gems' kernels on any covered input, ATen's error for input ATen rejects, a
    gems error for input gems does not cover."""
    x = torch.log_softmax(make((6, 5), torch.float32), 1)
    t = targets(6, 5)
    out, tw = torch.ops.gems.nll_loss_forward(x, t, None, 1, -100)
    with gems.use_gems(include=[]):
        torch.testing.assert_close(out, F.nll_loss(x, t))
    with pytest.raises(RuntimeError, match="size mismatch"):
        torch.ops.gems.nll_loss_forward(x, t[:3], None, 1, -100)
    with pytest.raises(RuntimeError, match="gems::nll_loss_forward"):
        torch.ops.gems.nll_loss_forward(x.double(), t, None, 1, -100)


def test_cuda_graph(gems):
    """A cross-entropy step captured and replayed (the split's workspace comes from the caching
    allocator, no synchronisation)."""
    x = make((3000, 1000), torch.bfloat16).requires_grad_()
    t = targets(3000, 1000)
    with gems.use_gems(include=CE_OPS):
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                loss = F.cross_entropy(x, t)
                (dx,) = torch.autograd.grad(loss, x)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = F.cross_entropy(x, t)
            (dx,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x.copy_(make((3000, 1000), torch.bfloat16, seed=9))
        graph.replay()
        torch.cuda.synchronize()
        eager = F.cross_entropy(x, t)
        (dx_eager,) = torch.autograd.grad(eager, x)
    assert torch.equal(loss, eager) and torch.equal(dx, dx_eager)
