"""GPU accuracy suite of the fused activation family (silu_and_mul, gelu_and_mul and their
backward ops), per docs/TESTING.md: forward and backward against the unfused torch
sequence on float64, layouts, empty inputs, errors and autograd."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_gpu

pytestmark = [requires_gpu, pytest.mark.gpu]

RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
# (op, approximate): approximate None is silu_and_mul.
ACTS = [("silu", None), ("gelu", "none"), ("gelu", "tanh")]
ACT_IDS = ["silu", "gelu", "gelu_tanh"]
SHAPES = [(1, 2), (2,), (7, 22), (5, 74), (33, 2 * 1000), (16, 2 * 11008), (3, 5, 2 * 64), (2, 3, 4, 2 * 300),
          (70000, 16), (70000, 600)]


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


def make(shape, dtype, seed=0, scale=3.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(shape, generator=g, device="cuda") * scale).to(dtype)


def poison_next_alloc(shape, dtype):
    """Frees a NaN-filled block of the output's size: the caching allocator hands it out next, so
    an element the kernel does not write fails the comparison."""
    torch.full(shape, float("nan"), device="cuda", dtype=dtype)


def fused(gems, x, act):
    op, approximate = act
    return gems.silu_and_mul(x) if op == "silu" else gems.gelu_and_mul(x, approximate=approximate)


def fused_backward(grad, x, act):
    op, approximate = act
    if op == "silu":
        return torch.ops.gems.silu_and_mul_backward(grad, x)
    return torch.ops.gems.gelu_and_mul_backward(grad, x, approximate)


def unfused(x, act):
    """The torch sequence the fused op replaces."""
    op, approximate = act
    H = x.shape[-1] // 2
    a, b = x[..., :H], x[..., H:]
    return (F.silu(a) if op == "silu" else F.gelu(a, approximate=approximate)) * b


def reference(gems, x, act):
    with gems.use_gems(include=[]):
        return unfused(x.double(), act)


def reference_grad(gems, grad, x, act):
    with gems.use_gems(include=[]):
        xd = x.detach().double().requires_grad_()
        (gx,) = torch.autograd.grad(unfused(xd, act), xd, grad.double())
    return gx


def check(gems, res, ref, like, equal_nan=False):
    """Values against the float64 reference; dtype, shape, device of `like`, contiguous."""
    assert res.dtype == like.dtype and res.device == like.device and res.shape == ref.shape
    assert res.is_contiguous()
    with gems.use_gems(include=[]):
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[res.dtype], atol=1e-4, equal_nan=equal_nan)


# -- forward and backward ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_forward(gems, act, dtype, shape):
    x = make(shape, dtype)
    out_shape = (*shape[:-1], shape[-1] // 2)
    poison_next_alloc(out_shape, dtype)
    res = fused(gems, x, act)
    assert res.shape == out_shape
    check(gems, res, reference(gems, x, act), x)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_backward(gems, act, dtype, shape):
    x = make(shape, dtype).requires_grad_()
    y = fused(gems, x, act)
    grad = make(y.shape, dtype, seed=1, scale=1.0)
    poison_next_alloc(x.shape, dtype)
    (gx,) = torch.autograd.grad(y, x, grad)
    assert gx.shape == x.shape
    check(gems, gx, reference_grad(gems, grad, x, act), x)
    # The backward op called directly gives the same bits as through autograd.
    assert torch.equal(fused_backward(grad, x.detach(), act), gx)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_llm_shape(gems, act):
    # tokens 4096, hidden 11008 (the benchmark's shape), bf16.
    x = make((4096, 2 * 11008), torch.bfloat16).requires_grad_()
    poison_next_alloc((4096, 11008), torch.bfloat16)
    y = fused(gems, x, act)
    check(gems, y, reference(gems, x.detach(), act), x)
    grad = make(y.shape, torch.bfloat16, seed=1, scale=1.0)
    (gx,) = torch.autograd.grad(y, x, grad)
    check(gems, gx, reference_grad(gems, grad, x, act), x)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_special_values(gems, act, dtype):
    H = 16
    x = make((3, 2 * H), dtype)
    specials = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 30.0, -30.0], dtype=dtype)
    x[:, :6] = specials  # in a, where b is finite
    x[:, 8:14] = 0.5
    x[:, H + 8 : H + 14] = specials  # in b, where a is moderate
    check(gems, fused(gems, x, act), reference(gems, x, act), x, equal_nan=True)


# -- layouts -----------------------------------------------------------------------------------


def layouts(dtype, H):
    base = make((6, 5, 3 * H + 1), dtype)
    return {
        "padded_rows": base[..., : 2 * H],
        "offset": base[1:4, :, 1 : 2 * H + 1],  # unaligned storage offset
        "offset_aligned": base[1:4, :, H + 1 :],
        "noncollapsible": base[:, 1:4, : 2 * H],
        "transposed": make((2 * H, 7), dtype).t(),
        "permuted": make((5, 6, 2 * H), dtype).transpose(0, 1),
        "step_slice": make((7, 4 * H), dtype)[:, ::2],
        "expanded_rows": make((2 * H,), dtype).expand(9, 2 * H),
        "expanded_leading": make((4, 2 * H), dtype).expand(3, 4, 2 * H),
        "channels_last": make((2, 2 * H, 3, 4), dtype).to(memory_format=torch.channels_last),
    }


@pytest.mark.parametrize("H", [37, 64, 1024])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_noncontiguous(gems, dtype, H):
    for x in layouts(dtype, H).values():
        for act in ACTS:
            res = fused(gems, x, act)
            check(gems, res, reference(gems, x, act), x)
            grad = make(res.shape, dtype, seed=2, scale=1.0)
            dx = fused_backward(grad, x, act)
            check(gems, dx, reference_grad(gems, grad, x, act), x)
            # A non-contiguous grad: transposed (copied) and expanded rows (stride 0).
            if res.dim() == 2:
                for g in (grad.t().contiguous().t(), grad[:1].expand_as(grad)):
                    check(gems, fused_backward(g, x, act), reference_grad(gems, g, x, act), x)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_empty(gems, dtype):
    for shape in [(0,), (0, 8), (4, 0), (2, 0, 6), (3, 4, 0)]:
        x = torch.empty(shape, device="cuda", dtype=dtype, requires_grad=True)
        for act in ACTS:
            y = fused(gems, x, act)
            assert y.shape == (*shape[:-1], shape[-1] // 2) and y.dtype == dtype and y.is_cuda
            (gx,) = torch.autograd.grad(y, x, torch.empty_like(y))
            assert gx.shape == x.shape and gx.dtype == dtype


def test_index64(gems):
    # rows * 2H > 2**31 elements: 64-bit row offsets. Compared on the first and last rows.
    rows, H = 65537, 16384
    free, _ = torch.cuda.mem_get_info()
    if free < 16 * rows * H:
        pytest.skip("needs about 18 GB of free GPU memory")
    x = make((rows, 2 * H), torch.bfloat16)
    y = torch.ops.gems.silu_and_mul(x)
    for part in (slice(0, 2), slice(rows - 2, rows)):
        check(gems, y[part].contiguous(), reference(gems, x[part], ACTS[0]), x)
    grad = torch.ones_like(y)
    del y
    dx = torch.ops.gems.silu_and_mul_backward(grad, x)
    for part in (slice(0, 2), slice(rows - 2, rows)):
        check(gems, dx[part].contiguous(), reference_grad(gems, grad[part], x[part], ACTS[0]), x)


# -- autograd ----------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_gradients_match_unfused(gems, act):
    # fp32: the fused gradient and the unfused torch sequence's agree to a few ulps.
    x = make((64, 2 * 96), torch.float32).requires_grad_()
    grad = make((64, 96), torch.float32, seed=3, scale=1.0)
    (ours,) = torch.autograd.grad(fused(gems, x, act), x, grad)
    with gems.use_gems(include=[]):
        (theirs,) = torch.autograd.grad(unfused(x, act), x, grad)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_gradcheck(gems, act):
    # Finite differences on fp32 (the ops take no float64): loose tolerances.
    x = make((3, 2 * 8), torch.float32, scale=1.0).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not a double precision floating point"
        assert torch.autograd.gradcheck(lambda t: fused(gems, t, act), (x,), eps=1e-3, atol=1e-2, rtol=1e-2)


def test_autograd_in_a_graph(gems):
    # Upstream parameters get the same gradients as with the unfused sequence.
    torch.manual_seed(0)
    w = torch.randn(64, 2 * 80, device="cuda", requires_grad=True)
    inp = torch.randn(32, 64, device="cuda")
    for act in ACTS:
        loss = (fused(gems, inp @ w, act) ** 2).sum()
        (ours,) = torch.autograd.grad(loss, w)
        with gems.use_gems(include=[]):
            ref_loss = (unfused(inp @ w, act) ** 2).sum()
            (theirs,) = torch.autograd.grad(ref_loss, w)
            torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-3)


def test_double_backward_raises(gems):
    x = make((4, 16), torch.float32).requires_grad_()
    for act, op in zip(ACTS, ("silu_and_mul_backward", "gelu_and_mul_backward", "gelu_and_mul_backward")):
        y = fused(gems, x, act)
        (gx,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
        with pytest.raises(RuntimeError, match=f"gems::{op}: double backward is not supported"):
            torch.autograd.grad(gx.sum(), x)


def test_opcheck(gems):
    x = make((8, 2 * 40), torch.bfloat16).requires_grad_()
    g = make((8, 40), torch.bfloat16, seed=1)
    for op, args in (
        (torch.ops.gems.silu_and_mul.default, (x,)),
        (torch.ops.gems.gelu_and_mul.default, (x, "none")),
        (torch.ops.gems.gelu_and_mul.default, (x, "tanh")),
        (torch.ops.gems.silu_and_mul_backward.default, (g, x.detach())),
        (torch.ops.gems.gelu_and_mul_backward.default, (g, x.detach(), "tanh")),
    ):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, result


def test_cuda_graph(gems):
    x = make((64, 2 * 512), torch.bfloat16)
    gems.silu_and_mul(x)  # warm-up: loads the kernel
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = gems.silu_and_mul(x)
    x.copy_(make((64, 2 * 512), torch.bfloat16, seed=5))
    graph.replay()
    check(gems, y, reference(gems, x, ACTS[0]), x)


def test_side_stream(gems):
    x = make((256, 2 * 4096), torch.float16)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = gems.gelu_and_mul(x, approximate="tanh")
    torch.cuda.current_stream().wait_stream(s)
    check(gems, y, reference(gems, x, ACTS[2]), x)


# -- errors ------------------------------------------------------------------------------------


def test_errors(gems):
    x = make((4, 8), torch.float32)
    cases = [
        (lambda: gems.silu_and_mul(make((4, 7), torch.float32)),
         r"silu_and_mul: the last dimension must be even, got 7"),
        (lambda: gems.gelu_and_mul(make((3,), torch.float32)), r"gelu_and_mul: the last dimension must be even, got 3"),
        (lambda: gems.silu_and_mul(torch.tensor(1.0, device="cuda")), r"gems::silu_and_mul: expected x with at least"),
        (lambda: gems.silu_and_mul(x.double()), r"gems::silu_and_mul: unsupported dtype Double"),
        (lambda: gems.gelu_and_mul(x.to(torch.int32)), r"gems::gelu_and_mul: unsupported dtype Int"),
        (lambda: gems.gelu_and_mul(x, approximate="fast"), r"approximate argument must be either none or tanh"),
        (lambda: torch.ops.gems.silu_and_mul_backward(make((4, 3), torch.float32), x),
         r"gems::silu_and_mul_backward: expected grad of shape \[4, 4\]"),
        (lambda: torch.ops.gems.silu_and_mul_backward(make((4, 4), torch.float16), x), r"expected grad of x's dtype"),
        (lambda: torch.ops.gems.gelu_and_mul_backward(torch.ones(4, 4), x, "none"),
         r"gems::gelu_and_mul_backward: expected grad and x on the same device"),
    ]
    for fn, match in cases:
        with pytest.raises(RuntimeError, match=match):
            fn()
    with pytest.raises(NotImplementedError, match="gems::silu_and_mul"):
        gems.silu_and_mul(torch.ones(4, 8))
    with pytest.raises(NotImplementedError, match="gems::gelu_and_mul"):
        gems.gelu_and_mul(torch.ones(4, 8, requires_grad=True), approximate="tanh")
