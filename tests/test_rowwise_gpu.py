"""GPU accuracy suite of the row-wise family (softmax and log_softmax of aot/family_rowwise.py,
forward and backward), per docs/TESTING.md."""

import warnings

import pytest
import torch
from conftest import cuda_kernel_names, fallback_reader, requires_gpu

from aot import family_rowwise as fam

pytestmark = requires_gpu

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
# fp32: a tree sum of exp over up to 152064 elements and libdevice's exp and log, a few ulps each.
RTOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
OVERRIDES = tuple(o.name for o in fam.ATEN_OVERRIDES)
OPS = [s.name for s in fam.SOFTMAXES]
FN = {"softmax": torch.softmax, "log_softmax": torch.log_softmax}
BACKWARD = {s.name: getattr(torch.ops.aten, s.backward) for s in fam.SOFTMAXES}
# The overloads a use_gems(include=...) of every row-wise op names.
OPS_OVERRIDES = [name for s in fam.SOFTMAXES for name in s.gems_ops]
# Every kind: short rows in blocks, each single-tile length class, rows longer than a tile
# (vocabularies), and strided dims (inner > 1) short and long.
SHAPES_DIMS = [
    ((), 0), ((1,), 0), ((0,), 0), ((0, 7), 1), ((7, 0), 1), ((9, 1), 1), ((33, 17), -1), ((5, 64), 1),
    ((300, 65), 1), ((8, 3, 1000), -1), ((7, 1025), 1), ((4, 4096), -1), ((3, 4097), 1), ((2, 16384), 1),
    ((3, 16385), 1), ((2, 32000), -1), ((2, 152064), 1), ((4, 7, 3), 1), ((16, 64, 33), 1), ((5, 300, 17), -2),
    ((6, 5, 4, 3), 0), ((2, 3, 4, 5), 2),
]  # fmt: skip


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


@pytest.fixture
def counts(gems):
    return fallback_reader(gems, OVERRIDES)


def make(shape, dtype, seed=0, scale=4.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(shape, generator=g, device="cuda") * scale).to(dtype)


def poisoned(shape, dtype):
    """Frees a NaN-filled block of this size, so the caching allocator hands it to the next output."""
    torch.full(shape, float("nan"), device="cuda", dtype=dtype)


def assert_close(gems, res, ref, log):
    """ref: a float64 reference. softmax values are at most 1, log_softmax ones about -log(N)."""
    with gems.use_gems(include=[]):
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=RTOL[res.dtype], atol=1e-4 if log else 1e-6,
                                   equal_nan=True)


def forward_and_backward(op, x, dim, grad):
    """(y, dx) of torch.<op> and autograd, as a user writes them."""
    x = x.detach().requires_grad_()
    y = FN[op](x, dim)
    (dx,) = torch.autograd.grad(y, x, grad)
    return y, dx


def references(op, x, dim, grad, y):
    """float64 references: of the forward from x, of the backward from grad and the y it was given
    (so that y's rounding to its dtype is not counted against the backward)."""
    with torch.no_grad():
        dim64 = dim % max(x.dim(), 1)
        return FN[op](x.double(), dim), BACKWARD[op](grad.double(), y.double(), dim64, torch.float64)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape,dim", SHAPES_DIMS, ids=str)
def test_forward_and_backward(gems, counts, op, dtype, shape, dim):
    x = make(shape, dtype)
    grad = make(shape, dtype, seed=1, scale=1.0)
    poisoned(shape, dtype)
    with gems.use_gems(include=[f"_{op}", f"_{op}_backward_data"]):
        y, dx = forward_and_backward(op, x, dim, grad)
    with gems.use_gems(include=[]):
        y_aten, dx_aten = forward_and_backward(op, x, dim, grad)
        assert (y.dtype, y.shape, y.stride()) == (y_aten.dtype, y_aten.shape, y_aten.stride())
        assert (dx.dtype, dx.shape, dx.stride()) == (dx_aten.dtype, dx_aten.shape, dx_aten.stride())
        y64, dx64 = references(op, x, dim, grad, y)
    assert_close(gems, y, y64, op == "log_softmax")
    assert_close(gems, dx, dx64, op == "log_softmax")
    assert counts() == {}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=str)
def test_llm_logits(gems, counts, op, dtype):
    """4096 x 32000 logits: what a language model's loss normalises."""
    x = make((4096, 32000), dtype)
    with gems.use_gems(include=[f"_{op}"]):
        y = FN[op](x, -1)
    with gems.use_gems(include=[]):
        ref = FN[op](x.double(), -1)
    assert_close(gems, y, ref, op == "log_softmax")
    assert counts() == {}


@pytest.mark.parametrize("op", OPS)
def test_half_to_float(gems, counts, op):
    """softmax(fp16, dtype=float32) runs _softmax(half_to_float=True); its backward takes fp32
    grad and output and gives an fp16 grad_input."""
    x = make((33, 1000), torch.float16).requires_grad_()
    grad = make((33, 1000), torch.float32, seed=1, scale=1.0)
    with gems.use_gems(include=[f"_{op}", f"_{op}_backward_data"]):
        y = FN[op](x, -1, dtype=torch.float32)
        (dx,) = torch.autograd.grad(y, x, grad)
    assert y.dtype == torch.float32 and dx.dtype == torch.float16
    with gems.use_gems(include=[]):
        y64, dx64 = references(op, x, -1, grad, y)
    assert_close(gems, y, y64, op == "log_softmax")
    assert_close(gems, dx, dx64, op == "log_softmax")
    assert counts() == {}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(4, 6), (3, 20000), (2, 70, 3)], ids=str)
def test_infinities_and_nan(gems, counts, op, shape):
    """-inf rows give NaN, a NaN poisons its row, +inf gives NaN: as ATen."""
    x = make(shape, torch.float32)
    x[0] = float("-inf")
    x[1].view(-1)[1] = float("nan")
    x[-1].view(-1)[-1] = float("inf")
    with gems.use_gems(include=[f"_{op}"]):
        y = FN[op](x, 1)
    with gems.use_gems(include=[]):
        expected = FN[op](x, 1)
        torch.testing.assert_close(y.isnan(), expected.isnan(), rtol=0, atol=0)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert counts() == {}


def test_out_forms(gems, counts):
    x = make((9, 300), torch.bfloat16)
    g = make((9, 300), torch.bfloat16, seed=1)
    for s in fam.SOFTMAXES:
        # torch's Python bindings (torch._softmax, ...) turn the resize warning into a Python
        # warning; torch.ops.aten.*.out calls only print it, with or without gems.
        forward, backward = getattr(torch, s.forward), getattr(torch, s.backward)
        out = torch.full((5,), float("nan"), device="cuda", dtype=torch.bfloat16)
        with gems.use_gems(include=[s.forward, s.backward]), warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            res = forward(x, 1, False, out=out)
            y = forward(x, 1, False)
            out_name = "grad_input" if s.backward == "_softmax_backward_data" else "out"
            dx = torch.full((9, 300), float("nan"), device="cuda", dtype=torch.bfloat16)
            backward(g, y, 1, torch.bfloat16, **{out_name: dx})
        assert res is out and out.shape == (9, 300) and any("resized" in str(m.message) for m in w)
        with gems.use_gems(include=[]):
            torch.testing.assert_close(out, forward(x, 1, False), rtol=RTOL[torch.bfloat16], atol=1e-4)
            torch.testing.assert_close(dx, backward(g, y, 1, torch.bfloat16), rtol=RTOL[torch.bfloat16], atol=1e-3)
    assert counts() == {}


def test_layouts_fall_back_counted(gems, counts):
    """Operands with no kernel (non-contiguous input, strided out=, fp64) run ATen's, counted."""
    x = make((64, 48), torch.float32)
    cases = [(lambda: torch.softmax(x.t(), 1), ("_softmax", "layout")),
             (lambda: torch.log_softmax(x[:, ::2], 1), ("_log_softmax", "layout")),
             (lambda: torch.softmax(x.double(), 0), ("_softmax", "dtype"))]
    for fn, key in cases:
        with gems.use_gems(include=OPS_OVERRIDES):
            res = fn()
        with gems.use_gems(include=[]):
            torch.testing.assert_close(res, fn(), rtol=0, atol=0)
    # ATen's softmax kernels write a strided out= as if it were contiguous: the fallback gives
    # exactly what ATen gives, not torch.softmax's values.
    out, aten_out = (torch.empty(48, 64, device="cuda").t() for _ in range(2))
    with gems.use_gems(include=OPS_OVERRIDES):
        torch.ops.aten._softmax.out(x, 1, False, out=out)
    with gems.use_gems(include=[]):
        torch.ops.aten._softmax.out(x, 1, False, out=aten_out)
    torch.testing.assert_close(out, aten_out, rtol=0, atol=0)
    assert counts() == {("_softmax", "layout"): 1, ("_log_softmax", "layout"): 1, ("_softmax", "dtype"): 1,
                        ("_softmax.out", "layout"): 1}


def outcome(fn):
    try:
        fn()
        return None
    except (RuntimeError, IndexError) as e:
        return type(e).__name__, str(e)


def test_torch_errors_under_gems(gems, counts):
    x = make((3, 4), torch.float32)
    b = make((3, 4), torch.bfloat16)
    cases = [
        lambda: torch.softmax(x, 2), lambda: torch.log_softmax(x, -3),
        lambda: torch.ops.aten._softmax(b, 1, True),  # half_to_float is for Half only
        lambda: torch.ops.aten._softmax_backward_data(x, make((3, 5), torch.float32), 1, torch.float32),
        lambda: torch.ops.aten._log_softmax_backward_data(x, x, 1, torch.bfloat16),
        lambda: torch.ops.aten._softmax.out(x, 1, False, out=torch.empty(3, 4, device="cuda", dtype=torch.half)),
    ]
    for fn in cases:
        with gems.use_gems(include=[]):
            expected = outcome(fn)
        assert expected is not None
        with gems.use_gems(include=OPS_OVERRIDES):
            assert outcome(fn) == expected
    assert counts() == {}


def test_gems_ops(gems):
    g = torch.ops.gems
    for shape, dim in [((), 0), ((0, 7), 1), ((5, 300, 17), 1), ((3, 16385), -1)]:
        x = make(shape, torch.bfloat16)
        grad = make(shape, torch.bfloat16, seed=1)
        for s in fam.SOFTMAXES:
            y = getattr(g, s.forward)(x, dim, False)
            dx = getattr(g, s.backward)(grad, y, dim, torch.bfloat16)
            with gems.use_gems(include=[]):
                ref, ref_dx = references(s.name, x, dim, grad, y)
            assert_close(gems, y, ref, s.log)
            assert_close(gems, dx, ref_dx, s.log)
    with pytest.raises(RuntimeError, match=r"gems::_softmax: no gems kernel covers this input \(dtype"):
        g._softmax(make((3, 4), torch.float64), 1, False)
    with pytest.raises(RuntimeError, match=r"gems::_log_softmax: no gems kernel covers this input \(layout"):
        g._log_softmax(make((4, 3), torch.float32).t(), 1, False)


def test_cuda_graph(gems):
    x = make((64, 32000), torch.bfloat16)
    with gems.use_gems(include=OPS_OVERRIDES):
        torch.softmax(x, -1), torch.log_softmax(x, 0)  # warm-up: loads the kernels
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            s, ls = torch.softmax(x, -1), torch.log_softmax(x, 0)
    x.copy_(make((64, 32000), torch.bfloat16, seed=2))
    graph.replay()
    with gems.use_gems(include=[]):
        assert_close(gems, s, torch.softmax(x.double(), -1), False)
        assert_close(gems, ls, torch.log_softmax(x.double(), 0), True)


def test_one_kernel_per_call(gems):
    """No copy, no memset: one launch of gems' kernel, for a contiguous and a strided dim."""
    x = make((8, 32000), torch.bfloat16)
    for call in (lambda: torch.softmax(x, -1), lambda: torch.softmax(x.view(8, 100, 320), 1)):
        with gems.use_gems(include=OPS_OVERRIDES):
            names = cuda_kernel_names(call)
        assert len(names) == 1 and "softmax_fwd" in next(iter(names)), names


# -- gems::rms_norm ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape,normalized", [
    ((7,), (7,)), ((0, 8), (8,)), ((9, 1), (1,)), ((33, 100), (100,)), ((4, 8, 1024), (1024,)), ((2, 3, 40, 50), (40, 50)),
    ((4096, 4096), (4096,)), ((3, 8192), (8192,)), ((5, 16385), (16385,)), ((2, 152064), (152064,))])  # fmt: skip
def test_rms_norm(gems, dtype, shape, normalized):
    x = make(shape, dtype, scale=1.0)
    w = make(normalized, dtype, seed=1, scale=1.0)
    g = torch.ops.gems
    for weight, eps in ((None, None), (w, 1e-6)):
        poisoned(shape, dtype)
        y = g.rms_norm(x, list(normalized), weight, eps)
        with gems.use_gems(include=[]):
            ref = torch.rms_norm(x.double(), list(normalized), None if weight is None else weight.double(),
                                 torch.finfo(torch.float32).eps if eps is None else eps)
            expected = torch.rms_norm(x, list(normalized), weight, eps)
            assert (y.dtype, y.shape, y.stride()) == (expected.dtype, expected.shape, expected.stride())
            torch.testing.assert_close(y, ref.to(dtype), rtol=RTOL[dtype], atol=1e-5, equal_nan=True)


def test_rms_norm_errors(gems):
    g = torch.ops.gems
    x = make((4, 6), torch.float32)
    for args in [([5], None), ([], None), ([6], make((5,), torch.float32))]:
        with gems.use_gems(include=[]):
            expected = outcome(lambda: torch.rms_norm(x, *args))
        assert expected is not None and outcome(lambda: g.rms_norm(x, *args)) == expected
    with pytest.raises(RuntimeError, match=r"gems::rms_norm: no gems kernel covers this input \(layout"):
        g.rms_norm(make((6, 4), torch.float32).t(), [6])
    with pytest.raises(RuntimeError, match=r"gems::rms_norm: no gems kernel covers this input \(mixed_dtype"):
        g.rms_norm(x, [6], make((6,), torch.bfloat16))
    with pytest.raises(RuntimeError, match=r"gems::rms_norm: no gems kernel covers this input \(dtype"):
        g.rms_norm(x.double(), [6])
