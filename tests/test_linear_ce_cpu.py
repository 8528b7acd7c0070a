"""CPU tests of the fused linear + cross entropy: the kernel gems::cross_entropy_loss_and_grad_
(kernels/loss.py, interpreted) against torch autograd in float64; the chunked driver
(python/gems_aot/_linear_ce.py, with the interpreted kernel in place of the op) against the unfused
composition; the declaration; and, with the built extension, the op's schema, Meta function and
errors, and the public function's checks and CPU fallback.

`run_kernel` launches the interpreted kernel as csrc/ops/loss_and_grad.cpp does: one program per
row, on_target = 1 - eps and per_class = eps / V, a single row's stride as 0.
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import interpreted, skip_without_interpreter_loops

from aot import family_loss as fam
from aot import schemas

ARCHS = (80, 90, 100)
GRID = next(g for g in fam.GRIDS if g.name == "ce_loss_and_grad")
OP = "cross_entropy_loss_and_grad_"


def run_kernel(z, target, ignore_index=-100, label_smoothing=0.0, softcap=None, scale=1.0, block_v=None):
    """The losses; the gradient replaces z (in place, as the op)."""
    skip_without_interpreter_loops()  # the kernel walks the row in BLOCK_V steps
    rows, v = z.shape
    losses = torch.full((rows,), float("nan"))
    if rows:
        interpreted("kernels.loss").cross_entropy_loss_and_grad[(rows,)](
            z, target, losses, v, 0 if rows == 1 else z.stride(0), target.stride(0), ignore_index,
            1.0 - label_smoothing, label_smoothing / v, 1.0 if softcap is None else softcap, scale,
            SOFTCAP=softcap is not None, BLOCK_V=block_v or fam.CE_BLOCK_V)
    return losses


def reference(z, target, ignore_index=-100, label_smoothing=0.0, softcap=None, scale=1.0):
    """(losses, d(sum(losses) * scale) / dz) by torch autograd in float64."""
    z64 = z.double().requires_grad_()
    y = z64 if softcap is None else softcap * torch.tanh(z64 / softcap)
    losses = F.cross_entropy(y, target, ignore_index=ignore_index, reduction="none", label_smoothing=label_smoothing)
    (losses.sum() * scale).backward()
    return losses.detach(), z64.grad


# bf16 stores: the interpreter truncates to bf16 where the GPU rounds (two of its ulps).
GRAD_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-7), torch.float16: dict(rtol=2e-3, atol=1e-6),
            torch.bfloat16: dict(rtol=1.6e-2, atol=1e-6)}


def targets(rows, v, ignore_index=-100, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, v, (rows,), generator=g)
    t[torch.rand(rows, generator=g) < 0.25] = ignore_index
    return t


# -- the kernel ---------------------------------------------------------------------------------


# (V, BLOCK_V (None: the declared one, slow to interpret), label smoothing, softcap, dtype)
KERNEL_CASES = [(v, block_v, eps, cap, dtype) for v, block_v in ((37, 16), (64, 32)) for eps in (0.0, 0.1)
                for cap in (None, 4.0) for dtype in (torch.float32, torch.bfloat16, torch.float16)]
KERNEL_CASES += [(100, None, 0.1, cap, torch.bfloat16) for cap in (None, 4.0)]


@pytest.mark.parametrize("v,block_v,label_smoothing,softcap,dtype", KERNEL_CASES, ids=str)
def test_kernel_against_autograd(v, block_v, label_smoothing, softcap, dtype, seeded):
    z = (torch.randn(9, v) * 5).to(dtype)
    t = targets(9, v)
    assert (t == -100).any() and (t != -100).any()
    grad = z.clone()
    losses = run_kernel(grad, t, label_smoothing=label_smoothing, softcap=softcap, scale=0.25, block_v=block_v)
    ref_losses, ref_grad = reference(z, t, label_smoothing=label_smoothing, softcap=softcap, scale=0.25)
    assert losses.dtype == torch.float32
    torch.testing.assert_close(losses, ref_losses.float(), rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(grad, ref_grad.to(dtype), **GRAD_TOL[dtype])
    assert (grad[t == -100] == 0).all() and (losses[t == -100] == 0).all()


def test_kernel_strides_and_ignore_index(seeded):
    """Rows of a wider buffer (only their V classes are written), a strided target, an
    ignore_index that is a class id, a single row."""
    buffer = torch.randn(6, 50) * 3
    z = buffer[:, :45]
    t = torch.tensor([3, 0, 44, 3, 7, 12, 0, 0, 0, 0, 0, 0])[::2]
    assert t.stride(0) == 2
    written = buffer.clone()
    grad = written[:, :45]
    losses = run_kernel(grad, t, ignore_index=3, block_v=16)
    ref_losses, ref_grad = reference(z, t, ignore_index=3)
    torch.testing.assert_close(losses, ref_losses.float())
    torch.testing.assert_close(grad, ref_grad.float(), **GRAD_TOL[torch.float32])
    assert torch.equal(written[:, 45:], buffer[:, 45:])
    one = z[2:3].clone()
    losses = run_kernel(one, t[2:3], softcap=2.0)
    ref_losses, ref_grad = reference(z[2:3], t[2:3], softcap=2.0)
    torch.testing.assert_close(losses, ref_losses.float())
    torch.testing.assert_close(one, ref_grad.float(), **GRAD_TOL[torch.float32])


def test_kernel_extremes(seeded):
    """Targets out of range give NaN rows (nothing read out of bounds); large logits stay finite
    (the online max); a softcap flattens them; label smoothing 1 is uniform."""
    z = torch.randn(4, 20)
    z[1, 5] = 1e4
    t = torch.tensor([20, 5, -1, 2])
    grad = z.clone()
    losses = run_kernel(grad, t, block_v=8)
    assert losses.isnan().tolist() == [True, False, True, False]
    assert grad[[0, 2]].isnan().all() and not grad[[1, 3]].isnan().any()
    torch.testing.assert_close(losses[1], torch.tensor(0.0))
    capped = z.clone()
    run_kernel(capped, t.clamp(0, 19), softcap=1.0, block_v=8)
    assert capped.isfinite().all()
    uniform = z.clone()
    losses = run_kernel(uniform, t.clamp(0, 19), label_smoothing=1.0, block_v=8)
    torch.testing.assert_close(losses, reference(z, t.clamp(0, 19), label_smoothing=1.0)[0].float())


# -- the chunked driver -------------------------------------------------------------------------


@pytest.fixture
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


@pytest.fixture
def linear_ce(gems, monkeypatch):
    """gems_aot._linear_ce with the interpreted kernel in place of the CUDA op."""
    from gems_aot import _linear_ce

    def interpreted_op(logits, target, ignore_index, label_smoothing, softcap, scale):
        return run_kernel(logits, target, ignore_index, label_smoothing, softcap, scale, block_v=64)

    monkeypatch.setattr(_linear_ce, "_loss_and_grad_", interpreted_op)
    return _linear_ce


def inputs(dtype, tokens=(3, 13), hidden=24, vocab=70, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*tokens, hidden, generator=g)).to(dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=g) / hidden**0.5).to(dtype).requires_grad_()
    b = (torch.randn(vocab, generator=g)).to(dtype).requires_grad_() if bias else None
    t = torch.randint(0, vocab, tokens, generator=g)
    t[torch.rand(tokens, generator=g) < 0.2] = -100
    return x, w, t, b


def unfused_float64(x, w, t, b, ignore_index=-100, reduction="mean", label_smoothing=0.0, softcap=None,
                    chunk_size=None):
    """The composition in the inputs' dtype (float64 here; the function's fallback takes .float())."""
    logits = F.linear(x, w, b)
    logits = logits if softcap is None else softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=label_smoothing)


def reference_step(x, w, t, b, grad_loss, **kw):
    """Loss and gradients of the unfused composition, in float64."""
    leaves = [a.detach().double().requires_grad_() for a in (x, w) + (() if b is None else (b,))]
    loss = unfused_float64(leaves[0], leaves[1], t, leaves[2] if b is not None else None, **kw)
    (loss * grad_loss).backward()
    return loss.detach(), [a.grad for a in leaves]


LOSS_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def grads_close(got, expected, dtype):
    for g, e in zip(got, expected):
        assert g.dtype == dtype and g.shape == e.shape
        scale = e.abs().max().item()
        tol = 1e-5 if dtype == torch.float32 else 3e-2
        assert (g.double() - e).abs().max().item() <= tol * scale, (g, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_size", [None, 7, 16, 1000], ids=["default", "7", "16", "one_chunk"])
def test_driver_against_unfused(linear_ce, chunk_size, reduction, dtype):
    x, w, t, b = inputs(dtype)
    kw = dict(ignore_index=-100, reduction=reduction, label_smoothing=0.05, softcap=None)
    loss = linear_ce._fused(x, w, t, b, kw["ignore_index"], reduction, 0.05, None, chunk_size)
    assert loss.dtype == torch.float32 and loss.shape == ()
    (loss * 2.5).backward()
    ref_loss, ref_grads = reference_step(x, w, t, b, 2.5, **kw)
    torch.testing.assert_close(loss.double(), ref_loss, **LOSS_TOL[dtype])
    grads_close([x.grad, w.grad, b.grad], ref_grads, dtype)


@pytest.mark.parametrize("softcap", [None, 3.0], ids=["plain", "softcap"])
def test_driver_softcap_ignore_index_no_bias(linear_ce, softcap):
    x, w, t, _ = inputs(torch.float32, tokens=(29,), bias=False, seed=1)
    t[t == -100] = 9  # a class id as ignore_index
    t[5] = 9
    kw = dict(ignore_index=9, reduction="mean", label_smoothing=0.0, softcap=softcap)
    loss = linear_ce._fused(x, w, t, None, 9, "mean", 0.0, softcap, 8)
    loss.backward()
    ref_loss, ref_grads = reference_step(x, w, t, None, 1.0, **kw)
    torch.testing.assert_close(loss.double(), ref_loss, **LOSS_TOL[torch.float32])
    grads_close([x.grad, w.grad], ref_grads, torch.float32)


def test_driver_permuted_hidden(linear_ce):
    x, w, t, b = inputs(torch.float32, tokens=(5, 6), seed=6)
    permuted = x.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()  # dense, not contiguous
    loss = linear_ce._fused(permuted, w, t, b, -100, "sum", 0.0, None, 7)
    loss.backward()
    ref_loss, ref_grads = reference_step(permuted, w, t, b, 1.0, reduction="sum")
    torch.testing.assert_close(loss.double(), ref_loss, **LOSS_TOL[torch.float32])
    grads_close([permuted.grad, w.grad, b.grad], ref_grads, torch.float32)


def test_driver_what_needs_no_gradient(linear_ce):
    x, w, t, b = inputs(torch.float32, seed=2)
    with torch.no_grad():
        plain = linear_ce._fused(x, w, t, b, -100, "sum", 0.0, None, 5)
    assert plain.grad_fn is None
    torch.testing.assert_close(plain.double(), reference_step(x, w, t, b, 1.0, reduction="sum")[0])
    frozen = w.detach()  # a frozen head: no weight gradient formed
    loss = linear_ce._fused(x, frozen, t, None, -100, "sum", 0.0, None, 5)
    (gx,) = torch.autograd.grad(loss, [x])
    ref = reference_step(x, frozen, t, None, 1.0, reduction="sum")[1][0]
    grads_close([gx], [ref], torch.float32)


def test_driver_edges(linear_ce):
    """Every target ignored: a NaN mean (as torch) and zero gradients; no tokens; backward twice."""
    x, w, t, b = inputs(torch.float32, seed=3)
    loss = linear_ce._fused(x, w, torch.full_like(t, -100), b, -100, "mean", 0.0, None, 4)
    assert loss.isnan()
    loss.backward()
    assert (x.grad == 0).all() and (w.grad == 0).all() and (b.grad == 0).all()
    empty = torch.empty(0, 24, requires_grad=True)
    loss = linear_ce._fused(empty, w, torch.empty(0, dtype=torch.long), b, -100, "sum", 0.0, None, None)
    loss.backward()
    assert loss == 0 and empty.grad.shape == (0, 24)
    loss = linear_ce._fused(x, w, t, b, -100, "mean", 0.0, None, 4)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()


def test_default_chunk_size(gems):
    from gems_aot._linear_ce import default_chunk_size

    # 1024 rows (the weight gradient's update compute-bound), fewer where there are fewer tokens.
    assert default_chunk_size(4096) == 1024 and default_chunk_size(100) == 100 and default_chunk_size(0) == 1


# -- the public function ------------------------------------------------------------------------


def test_cpu_tensors_run_the_unfused_composition(gems):
    x, w, t, b = inputs(torch.float32, seed=4)
    loss = gems.fused_linear_cross_entropy(x, w, t, b, softcap=5.0, label_smoothing=0.1)
    expected = gems._linear_ce.unfused_linear_cross_entropy(x, w, t, b, softcap=5.0, label_smoothing=0.1)
    assert torch.equal(loss, expected)
    direct = F.cross_entropy((5.0 * torch.tanh(F.linear(x, w, b) / 5.0)).float().reshape(-1, 70), t.reshape(-1),
                             label_smoothing=0.1)
    assert torch.equal(loss, direct)
    loss.backward()
    assert x.grad is not None and w.grad is not None and b.grad is not None


def test_errors(gems):
    x, w, t, b = inputs(torch.float32, seed=5)
    f = gems.fused_linear_cross_entropy
    cases = [
        (lambda: f(x, w, t, reduction="none"), "reduction must be 'mean' or 'sum', got 'none'"),
        (lambda: f(x, w[:, :5], t), r"expected hidden \[..., H\] and weight \[V, H\]"),
        (lambda: f(x, w, t[:, :4]), r"expected a target of shape \(3, 13\)"),
        (lambda: f(x, w, t, b[:3]), r"expected a bias of shape \(70,\)"),
        (lambda: f(x, w, t, label_smoothing=1.5), "label_smoothing must be between 0.0 and 1.0"),
        (lambda: f(x, w, t, softcap=0.0), "softcap must be positive or None"),
        (lambda: f(x, w, t, chunk_size=0), "chunk_size must be a positive int"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()


def test_python_api(gems):
    assert "fused_linear_cross_entropy" in gems.__all__
    assert "chunk" in gems.fused_linear_cross_entropy.__doc__


# -- the declaration and the op -----------------------------------------------------------------


def test_declaration():
    counts = {a: sum(GRID.make(p, a) is not None for p in GRID.points()) for a in ARCHS}
    assert counts == dict.fromkeys(ARCHS, 2 * 3 * 2)
    for p in GRID.points():
        v = GRID.make(p, 90)
        assert [n for n, _ in v.signature] == list(v.jit_function().arg_names)
        assert dict(v.constexprs) == {"SOFTCAP": p["softcap"] == "tanh", "BLOCK_V": fam.CE_BLOCK_V}
        assert set(v.divisible16) == ({"z_ptr", "V", "row_stride"} if p["align"] == "16" else set())
    assert fam.CE_LOSS_AND_GRAD in fam.GEMS_OPS and not fam.CE_LOSS_AND_GRAD.meta_from_aten
    header = schemas.family_header(fam.__name__, fam.GEMS_OPS, fam.ATEN_OVERRIDES)
    # The logits are written; the losses are a new tensor (a cuda and a meta function).
    assert header.count("at::Tensor cross_entropy_loss_and_grad_(at::Tensor& logits, const at::Tensor& target, "
                        "int64_t ignore_index, double label_smoothing, std::optional<double> softcap, "
                        "double scale);") == 2


def test_aligned_variant_vectorizes():
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = GRID.make({"softcap": "tanh", "dtype": "bf16", "align": "16"}, 90)
    attrs = {(i,): [["tt.divisibility", 16]] for i, (n, _) in enumerate(v.signature) if n in v.divisible16}
    src = ASTSource(fn=v.jit_function(), signature=dict(v.signature), constexprs=dict(v.constexprs), attrs=attrs)
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": v.num_warps}).asm["ptx"]
    assert "st.global.v4.b32" in ptx and ".v4.b32" in "".join(l for l in ptx.split("\n") if "ld.global" in l)


def test_registered(gems):
    op = getattr(torch.ops.gems, OP).default
    assert str(op._schema) == str(schemas.parse("gems::" + fam.CE_LOSS_AND_GRAD.schema))  # torch prints 0.0 as 0.
    for key in ("CUDA", "Meta"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"gems::{OP}", key), key
    assert not torch._C._dispatch_has_kernel_for_dispatch_key(f"gems::{OP}", "CPU")


def test_meta_function(gems):
    op = getattr(torch.ops.gems, OP)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        z = torch.empty(7, 33, device="meta", dtype=dtype)
        losses = op(z, torch.empty(7, dtype=torch.long, device="meta"), -100, 0.1, 30.0, 0.5)
        assert (losses.shape, losses.dtype, losses.device.type) == ((7,), torch.float32, "meta")
    wide = torch.empty(4, 64, device="meta")[:, :50]
    assert op(wide, torch.empty(8, dtype=torch.long, device="meta")[::2]).shape == (4,)
    assert op(torch.empty(0, 5, device="meta"), torch.empty(0, dtype=torch.long, device="meta")).shape == (0,)
    result = torch.library.opcheck(op.default, (torch.empty(4, 10, device="meta"),
                                                torch.empty(4, dtype=torch.long, device="meta"), -100, 0.1, 5.0))
    assert set(result.values()) == {"SUCCESS"}, result  # schema, fake tensors, dynamic shapes


def test_op_errors(gems):
    op = getattr(torch.ops.gems, OP)
    m = "meta"
    z, t = torch.empty(4, 10, device=m), torch.empty(4, dtype=torch.long, device=m)
    cases = [
        (lambda: op(torch.empty(4, 10, 2, device=m), t), r"expected logits of 2 dims \[rows, classes\]"),
        (lambda: op(z, t[:3]), r"expected a target of shape \[4\], got \[3\]"),
        (lambda: op(z.double(), t), "unsupported logits dtype Double"),
        (lambda: op(z, t.int()), "expected an int64 target, got Int"),
        (lambda: op(torch.empty(4, 0, device=m), t), "expected at least one class"),
        (lambda: op(torch.empty(10, 4, device=m).t(), t), r"expected the classes contiguous"),
        (lambda: op(z, t, -100, -0.1), "label_smoothing must be between 0.0 and 1.0"),
        (lambda: op(z, t, -100, 0.0, 0.0), "softcap must be positive"),
    ]
    for fn, match in cases:
        with pytest.raises(RuntimeError, match=f"gems::{OP}: {match}"):
            fn()
    with pytest.raises(NotImplementedError, match=f"gems::{OP}"):
        op(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long))
