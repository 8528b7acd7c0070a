"""GPU accuracy suite of the row-wise family's norms (per docs/TESTING.md): native_layer_norm and
its backward, _fused_rms_norm and its backward (where torch has them) as aten overrides, and the
fused gems::rms_norm with its autograd; against float64 references, with ATen's result dtypes,
shapes and strides, every output mask, deterministic weight and bias gradients, fallbacks counted."""

import pytest
import torch
import torch.nn.functional as F
from conftest import cuda_kernel_names, fallback_reader, requires_gpu

from aot import family_rowwise as fam

pytestmark = requires_gpu

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
RTOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
ATOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
LAYER, RMS = fam.NORMS
LAYER_OPS = [LAYER.forward, LAYER.backward]
RMS_OPS = list(RMS.aten_overrides)
HAS_FUSED_RMS = bool(RMS_OPS)
OVERRIDES = set(LAYER_OPS) | set(RMS_OPS)
# (shape, normalized_shape): every norm kind (short rows in tiles, each register length class, rows
# looped in the backward (n16k) and in both directions), several normalised dims, empty and 1-element rows.
SHAPES = [
    ((7,), (7,)), ((0, 8), (8,)), ((9, 1), (1,)), ((33, 100), (100,)), ((300, 65), (65,)), ((4, 8, 1024), (1024,)),
    ((2, 3, 40, 50), (40, 50)), ((65, 4096), (4096,)), ((3, 8192), (8192,)), ((5, 5120), (5120,)),
    ((7, 4095), (4095,)), ((4, 12288), (12288,)), ((3, 20000), (20000,)), ((2, 2, 3), (2, 2, 3)),
]  # fmt: skip


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


@pytest.fixture
def counts(gems):
    return fallback_reader(gems, OVERRIDES)


def make(shape, dtype, seed=0, scale=1.0, offset=0.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(shape, generator=g, device="cuda") * scale + offset).to(dtype)


def poisoned(shape, dtype):
    torch.full(shape, float("nan"), device="cuda", dtype=dtype)


def layout(t):
    return None if t is None else (t.dtype, tuple(t.shape), t.stride())


def close(gems, res, ref, dtype, reduced=1):
    """res against a float64 reference; `reduced`: rows summed into each element (dw, db)."""
    with gems.use_gems(include=[]):
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[dtype], atol=ATOL[dtype] * max(1, reduced) ** 0.5,
                                   equal_nan=True)


def layer_norm_step(x, normalized, weight, bias, grad, eps=1e-5):
    """(y, dx, dw, db) of F.layer_norm and autograd, as a model runs them."""
    x = x.detach().requires_grad_()
    leaves = [x] + [t.detach().requires_grad_() for t in (weight, bias) if t is not None]
    w = leaves[1] if weight is not None else None
    b = leaves[-1] if bias is not None else None
    y = F.layer_norm(x, normalized, w, b, eps)
    grads = torch.autograd.grad(y, leaves, grad) if x.numel() else [torch.zeros_like(t) for t in leaves]
    return y, grads[0], grads[1] if weight is not None else None, grads[-1] if bias is not None else None


def reference_step(x, normalized, weight, bias, grad, eps=1e-5, rms=False):
    """The float64 (y, dx, dw, db), computed with gems off."""
    x64 = x.double()
    w64 = None if weight is None else weight.double()
    b64 = None if bias is None else bias.double()
    if rms:
        x64 = x64.requires_grad_()
        leaves = [x64] + ([w64.requires_grad_()] if w64 is not None else [])
        y = torch.rms_norm(x64, normalized, leaves[1] if w64 is not None else None, eps)
        grads = torch.autograd.grad(y, leaves, grad.double()) if x.numel() else [torch.zeros_like(t) for t in leaves]
        return y.detach(), grads[0], grads[1] if w64 is not None else None, None
    return layer_norm_step(x64, normalized, w64, b64, grad.double(), eps)


@pytest.mark.parametrize("affine", ["none", "weight", "weight_bias"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape,normalized", SHAPES, ids=str)
def test_layer_norm(gems, counts, shape, normalized, dtype, affine):
    x = make(shape, dtype, offset=0.5)
    weight = make(normalized, dtype, seed=1) if affine != "none" else None
    bias = make(normalized, dtype, seed=2) if affine == "weight_bias" else None
    grad = make(shape, dtype, seed=3)
    poisoned(shape, dtype)
    with gems.use_gems(include=LAYER_OPS):
        ours = layer_norm_step(x, list(normalized), weight, bias, grad)
    with gems.use_gems(include=[]):
        theirs = layer_norm_step(x, list(normalized), weight, bias, grad)
        ref = reference_step(x, list(normalized), weight, bias, grad)
    rows = x.numel() // max(1, torch.Size(normalized).numel())
    for o, t, r, reduced in zip(ours, theirs, ref, (1, 1, rows, rows)):
        assert layout(o) == layout(t)
        if o is not None:
            close(gems, o, r, dtype, reduced)
    assert counts() == {}


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_layer_norm_statistics(gems, counts, dtype):
    """mean and rstd: fp32 for 16-bit input (ATen's accumulate type), shaped as the input with the
    normalised dims set to 1, and close to float64's."""
    x = make((6, 5, 300), dtype, scale=3.0, offset=10.0)
    w, b = make((5, 300), dtype, seed=1), make((5, 300), dtype, seed=2)
    with gems.use_gems(include=LAYER_OPS):
        ours = torch.ops.aten.native_layer_norm(x, [5, 300], w, b, 1e-5)
    with gems.use_gems(include=[]):
        theirs = torch.ops.aten.native_layer_norm(x, [5, 300], w, b, 1e-5)
        x64 = x.double().reshape(6, -1)
        mean, var = x64.mean(1), x64.var(1, unbiased=False)
        assert [layout(t) for t in ours] == [layout(t) for t in theirs]
        assert ours[1].dtype == torch.float32 and ours[1].shape == (6, 1, 1)
        torch.testing.assert_close(ours[1].flatten().double(), mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours[2].flatten().double(), torch.rsqrt(var + 1e-5), rtol=1e-5, atol=0)
    assert counts() == {}


MASKS = [(True, True, True), (True, False, False), (False, True, True), (False, True, False), (False, False, True),
         (True, True, False), (False, False, False)]


@pytest.mark.parametrize("mask", MASKS, ids=str)
@pytest.mark.parametrize("shape", [(64, 300), (5, 20000)], ids=str)
def test_output_mask(gems, counts, mask, shape):
    """Each result is computed where the mask asks for it and undefined (None) elsewhere, as ATen."""
    n = shape[-1]
    x, grad = make(shape, torch.bfloat16), make(shape, torch.bfloat16, seed=1)
    w, b = make((n,), torch.bfloat16, seed=2), make((n,), torch.bfloat16, seed=3)
    with gems.use_gems(include=[]):
        _, mean, rstd = torch.ops.aten.native_layer_norm(x, [n], w, b, 1e-5)
        theirs = torch.ops.aten.native_layer_norm_backward(grad, x, [n], mean, rstd, w, b, list(mask))
        ref = reference_step(x, [n], w, b, grad)[1:]
    with gems.use_gems(include=LAYER_OPS):
        ours = torch.ops.aten.native_layer_norm_backward(grad, x, [n], mean, rstd, w, b, list(mask))
    for o, t, r in zip(ours, theirs, ref):
        assert layout(o) == layout(t)
        if o is not None:
            close(gems, o, r, torch.bfloat16, shape[0])
    assert counts() == {}


def test_weight_and_bias_gradients_are_deterministic(gems, counts):
    """Partial sums per program, added in a fixed order: the same bits on every run."""
    x, grad = make((16384, 1024), torch.float32, offset=1.0), make((16384, 1024), torch.float32, seed=1)
    w, b = make((1024,), torch.float32, seed=2), make((1024,), torch.float32, seed=3)
    with gems.use_gems(include=[]):
        _, mean, rstd = torch.ops.aten.native_layer_norm(x, [1024], w, b, 1e-5)
    with gems.use_gems(include=LAYER_OPS):
        runs = [torch.ops.aten.native_layer_norm_backward(grad, x, [1024], mean, rstd, w, b, [True, True, True])
                for _ in range(3)]
    for r in runs[1:]:
        for a, c in zip(runs[0], r):
            assert torch.equal(a, c)
    assert counts() == {}


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=str)
@pytest.mark.parametrize("rows,hidden", [(4096, 4096), (16384, 1024), (3000, 5120)], ids=str)
def test_llm_sizes_as_accurate_as_aten(gems, counts, rows, hidden, dtype):
    """At model sizes, gems' error against float64 is within 1.5x ATen's (relative Frobenius)."""
    x, grad = make((rows, hidden), dtype, offset=0.3), make((rows, hidden), dtype, seed=1)
    w, b = make((hidden,), dtype, seed=2, offset=1.0), make((hidden,), dtype, seed=3)
    with gems.use_gems(include=LAYER_OPS):
        ours = layer_norm_step(x, [hidden], w, b, grad)
    with gems.use_gems(include=[]):
        theirs = layer_norm_step(x, [hidden], w, b, grad)
        ref = reference_step(x, [hidden], w, b, grad)
        for name, o, t, r in zip(("y", "dx", "dw", "db"), ours, theirs, ref):
            err = ((o.double() - r).norm() / r.norm()).item()
            err_aten = ((t.double() - r).norm() / r.norm()).item()
            # fp32: both near its epsilon, where sums in another order differ by a few ulps
            assert err <= 1.5 * err_aten + (1e-6 if dtype == torch.float32 else 0), (name, err, err_aten)
    assert counts() == {}


def test_fallbacks_counted(gems, counts):
    """What no gems kernel takes runs ATen's kernel, counted: a non-contiguous input, fp64, a
    weight of another dtype, rows of no element, a bias gradient without a weight. The results
    (or errors) are ATen's own."""
    x = make((64, 48), torch.float32)
    xc = x.t().contiguous()
    w32, wbf = make((64,), torch.float32, seed=1), make((64,), torch.bfloat16, seed=1)
    _, mean, rstd = torch.ops.aten.native_layer_norm(xc, [64], None, None, 1e-5)
    fwd, bwd = torch.ops.aten.native_layer_norm, torch.ops.aten.native_layer_norm_backward
    cases = [
        (lambda: fwd(x.t(), [64], w32, None, 1e-5), ("native_layer_norm", "layout")),
        (lambda: fwd(x.t().double(), [64], None, None, 1e-5), ("native_layer_norm", "layout")),
        (lambda: fwd(xc.double(), [64], None, None, 1e-5), ("native_layer_norm", "dtype")),
        (lambda: fwd(xc, [64], wbf, None, 1e-5), ("native_layer_norm", "mixed_dtype")),
        (lambda: bwd(xc, xc, [64], mean, rstd, None, w32, [True, False, True]), ("native_layer_norm_backward", "args")),
        (lambda: bwd(x.t(), xc, [64], mean, rstd, w32, w32, [True, True, True]), ("native_layer_norm_backward", "layout")),
    ]
    expected = {}
    for fn, key in cases:
        results = []
        for include in ([], LAYER_OPS):
            with gems.use_gems(include=include):
                try:
                    results.append(fn())
                except RuntimeError as e:
                    results.append(e)
        expected[key] = expected.get(key, 0) + 1
        theirs, ours = results
        if isinstance(theirs, Exception):
            assert isinstance(ours, Exception) and str(ours) == str(theirs), key
            continue
        with gems.use_gems(include=[]):
            for o, t in zip(ours, theirs):
                assert (o is None) == (t is None), key
                if o is not None:
                    torch.testing.assert_close(o, t, rtol=0, atol=0, equal_nan=True)
    # Rows of no element: ATen's kernel (whose statistics there are its own affair).
    empty = make((3, 0), torch.float32)
    with gems.use_gems(include=LAYER_OPS):
        ours = fwd(empty, [0], None, None, 1e-5)
    with gems.use_gems(include=[]):
        theirs = fwd(empty, [0], None, None, 1e-5)
    assert [layout(t) for t in ours] == [layout(t) for t in theirs]
    expected[("native_layer_norm", "args")] = 1
    assert counts() == expected


def outcome(fn):
    try:
        fn()
        return None
    except (RuntimeError, IndexError, ValueError) as e:
        return type(e).__name__, str(e)


def test_torch_errors_under_gems(gems, counts):
    x = make((3, 4), torch.float32)
    cases = [lambda: F.layer_norm(x, [5]), lambda: F.layer_norm(x, [4], make((3,), torch.float32)),
             lambda: torch.ops.aten.native_layer_norm(x, [], None, None, 1e-5),
             lambda: F.layer_norm(x, [4], None, make((5,), torch.float32))]
    if HAS_FUSED_RMS:
        cases += [lambda: torch.ops.aten._fused_rms_norm(x, [5], None, None),
                  lambda: torch.ops.aten._fused_rms_norm(x, [4], make((2,), torch.float32), None)]
    for fn in cases:
        with gems.use_gems(include=[]):
            expected = outcome(fn)
        assert expected is not None
        with gems.use_gems(include=LAYER_OPS + RMS_OPS):
            assert outcome(fn) == expected
    assert counts() == {}


def test_cuda_graph_and_kernels(gems):
    """Forward and backward capture into a graph; the forward is one launch, the backward two (the
    rows, then the weight and bias sums), with no copy or memset."""
    x, grad = make((256, 2048), torch.bfloat16), make((256, 2048), torch.bfloat16, seed=1)
    w, b = make((2048,), torch.bfloat16, seed=2), make((2048,), torch.bfloat16, seed=3)
    with gems.use_gems(include=LAYER_OPS):
        y, mean, rstd = torch.ops.aten.native_layer_norm(x, [2048], w, b, 1e-5)
        fwd = cuda_kernel_names(lambda: torch.ops.aten.native_layer_norm(x, [2048], w, b, 1e-5))
        bwd = cuda_kernel_names(lambda: torch.ops.aten.native_layer_norm_backward(grad, x, [2048], mean, rstd, w, b,
                                                                                   [True, True, True]))
        assert len(fwd) == 1 and "norm_fwd" in next(iter(fwd)), fwd
        assert len(bwd) == 2 and {"norm_bwd", "norm_cols"} == {k for n in bwd for k in ("norm_bwd", "norm_cols") if k in n}, bwd
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y, mean, rstd = torch.ops.aten.native_layer_norm(x, [2048], w, b, 1e-5)
            dx, dw, db = torch.ops.aten.native_layer_norm_backward(grad, x, [2048], mean, rstd, w, b, [True, True, True])
    x.copy_(make((256, 2048), torch.bfloat16, seed=5))
    graph.replay()
    with gems.use_gems(include=[]):
        ref = reference_step(x, [2048], w, b, grad)
    for o, r, reduced in zip((y, dx, dw, db), ref, (1, 1, 256, 256)):
        close(gems, o, r, torch.bfloat16, reduced)


# -- RMSNorm ---------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_FUSED_RMS, reason="this torch has no aten::_fused_rms_norm")
@pytest.mark.parametrize("weighted", [True, False], ids=["weight", "no_weight"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape,normalized", SHAPES, ids=str)
def test_fused_rms_norm_overrides(gems, counts, shape, normalized, dtype, weighted):
    """torch.rms_norm reaches aten::_fused_rms_norm on CUDA, and autograd its backward."""
    x, grad = make(shape, dtype, offset=0.5), make(shape, dtype, seed=3)
    w = make(normalized, dtype, seed=1) if weighted else None

    def step():
        xr = x.detach().requires_grad_()
        leaves = [xr] + ([w.detach().requires_grad_()] if weighted else [])
        y = torch.rms_norm(xr, list(normalized), leaves[1] if weighted else None, 1e-6)
        grads = torch.autograd.grad(y, leaves, grad) if x.numel() else [torch.zeros_like(t) for t in leaves]
        return y, grads[0], grads[1] if weighted else None

    poisoned(shape, dtype)
    with gems.use_gems(include=RMS_OPS):
        ours = step()
    with gems.use_gems(include=[]):
        theirs = step()
        ref = reference_step(x, list(normalized), w, None, grad, 1e-6, rms=True)[:3]
    rows = x.numel() // max(1, torch.Size(normalized).numel())
    for o, t, r, reduced in zip(ours, theirs, ref, (1, 1, rows)):
        assert layout(o) == layout(t)
        if o is not None:
            close(gems, o, r, dtype, reduced)
    assert counts() == {}


@pytest.mark.skipif(not HAS_FUSED_RMS, reason="this torch has no aten::_fused_rms_norm")
def test_fused_rms_norm_statistics_and_default_eps(gems, counts):
    """rstd as ATen returns it (fp32, the input's shape with the normalised dims set to 1), and
    eps=None as ATen's default."""
    x = make((4, 6, 512), torch.bfloat16, scale=1e-3)  # small values: eps matters
    w = make((512,), torch.bfloat16, seed=1)
    for eps in (None, 1e-6):
        with gems.use_gems(include=[]):
            theirs = torch.ops.aten._fused_rms_norm(x, [512], w, eps)
        with gems.use_gems(include=RMS_OPS):
            ours = torch.ops.aten._fused_rms_norm(x, [512], w, eps)
        assert [layout(t) for t in ours] == [layout(t) for t in theirs]
        with gems.use_gems(include=[]):
            torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=0)
            torch.testing.assert_close(ours[0], theirs[0], rtol=1.6e-2, atol=1e-2)
    with gems.use_gems(include=RMS_OPS):
        _, rstd = torch.ops.aten._fused_rms_norm(x, [512], w, None)
        for mask in ([True, False], [False, True], [False, False]):
            with gems.use_gems(include=[]):
                theirs = torch.ops.aten._fused_rms_norm_backward(x, x, [512], rstd, w, mask)
            ours = torch.ops.aten._fused_rms_norm_backward(x, x, [512], rstd, w, mask)
            assert [layout(t) for t in ours] == [layout(t) for t in theirs]
    assert counts() == {}


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape,normalized", [((33, 100), (100,)), ((4, 8, 4096), (4096,)), ((2, 3, 40, 50), (40, 50)),
                                              ((4, 12288), (12288,)), ((3, 20000), (20000,))], ids=str)
def test_gems_rms_norm_autograd(gems, shape, normalized, dtype):
    """gems.rms_norm: values and gradients (input and weight, either alone) against float64."""
    x, grad, w = make(shape, dtype, offset=0.5), make(shape, dtype, seed=3), make(normalized, dtype, seed=1)
    ref = reference_step(x, list(normalized), w, None, grad, 1e-6, rms=True)
    rows = x.numel() // torch.Size(normalized).numel()
    for need_x, need_w in ((True, True), (True, False), (False, True)):
        xr, wr = x.detach().requires_grad_(need_x), w.detach().requires_grad_(need_w)
        y = gems.rms_norm(xr, list(normalized), wr, 1e-6)
        leaves = [t for t, need in ((xr, need_x), (wr, need_w)) if need]
        grads = iter(torch.autograd.grad(y, leaves, grad))
        close(gems, y, ref[0], dtype)
        if need_x:
            close(gems, next(grads), ref[1], dtype)
        if need_w:
            close(gems, next(grads), ref[2], dtype, rows)
    xr = x.detach().requires_grad_()
    y = gems.rms_norm(xr, list(normalized))  # no weight, default eps
    (dx,) = torch.autograd.grad(y, xr, grad)
    with gems.use_gems(include=[]):
        r = reference_step(x, list(normalized), None, None, grad, torch.finfo(torch.float32).eps, rms=True)
    close(gems, y, r[0], dtype)
    close(gems, dx, r[1], dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_gems_rms_norm_backward_of_a_transposed_gradient(gems, dtype):
    """The gradient reaching gems.rms_norm need not be contiguous (a transpose after the norm, as
    Qwen3's per-head q / k norms): the same gradients as from a contiguous one."""
    x, w = make((2, 40, 2, 16), dtype, offset=0.5), make((16,), dtype, seed=1)
    grad = make((2, 2, 40, 16), dtype, seed=3)
    ref = reference_step(x, [16], w, None, grad.transpose(1, 2), 1e-6, rms=True)
    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
    y = gems.rms_norm(xr, [16], wr, 1e-6)
    dx, dw = torch.autograd.grad(y.transpose(1, 2), [xr, wr], grad)
    close(gems, dx, ref[1], dtype)
    close(gems, dw, ref[2], dtype, 2 * 40 * 2)


def test_gems_rms_norm_errors(gems):
    g = torch.ops.gems
    x = make((4, 6), torch.float32)
    with pytest.raises(RuntimeError, match=r"gems::rms_norm: no gems kernel covers this input \(layout"):
        g.rms_norm(make((6, 4), torch.float32).t(), [6])
    with pytest.raises(RuntimeError, match=r"gems::rms_norm: no gems kernel covers this input \(mixed_dtype"):
        g.rms_norm(x, [6], make((6,), torch.bfloat16))
    with pytest.raises(RuntimeError, match=r"gems::rms_norm: no gems kernel covers this input \(dtype"):
        g.rms_norm(x.double(), [6])
    with pytest.raises(RuntimeError, match=r"gems::native_layer_norm_backward: no gems kernel covers this input \(args"):
        g.native_layer_norm_backward(x, x, [6], x[:, :1].contiguous(), x[:, :1].contiguous(), None, None,
                                     [False, True, False])
    y = g.rms_norm(x.requires_grad_(), [6])
    (dx,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(dx.sum(), x)
