"""GPU suite of the fused linear + cross entropy: gems::cross_entropy_loss_and_grad_ against torch
autograd in float64 (vocabularies of LLMs, both variants, softcap, label smoothing, ignored rows,
strided rows), and gems_aot.fused_linear_cross_entropy's loss and gradients against the unfused
composition at 4096 tokens x 2048 hidden x 32000 vocabulary (bf16), chunk sizes, reductions, with
and without gems' matmuls, autocast, and its fallbacks. Memory and speed: build_tools/bench_linear_ce.py."""

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_gpu
from test_linear_ce_cpu import reference

pytestmark = [requires_gpu, pytest.mark.gpu]

OP = "cross_entropy_loss_and_grad_"
# bf16 / fp16: the gradient's rounding to the dtype (fp16's subnormal step is 6e-8); fp32: exp and
# log of Triton (approximate), and softmax - 1 at a target near probability 1 (a few ulps of the
# row's scale, 1 / 96 in these tests).
GRAD_TOL = {torch.float32: dict(rtol=2e-5, atol=4e-9), torch.float16: dict(rtol=1e-3, atol=1.2e-7),
            torch.bfloat16: dict(rtol=8e-3, atol=1e-8)}


@pytest.fixture(scope="module")
def gems():
    import gems_aot

    return gems_aot


def targets(rows, vocab, ignore_index=-100, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = torch.randint(0, vocab, (rows,), device="cuda", generator=g)
    t[torch.rand(rows, device="cuda", generator=g) < 0.2] = ignore_index
    return t


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("vocab", [32000, 128256, 32001, 100], ids=str)  # 32001: the general variant
@pytest.mark.parametrize("softcap,label_smoothing", [(None, 0.0), (30.0, 0.1)], ids=["plain", "softcap_smoothed"])
def test_kernel_against_autograd(gems, softcap, label_smoothing, vocab, dtype):
    g = torch.Generator(device="cuda").manual_seed(1)
    z = (torch.randn(96, vocab, device="cuda", generator=g) * 8).to(dtype)
    t = targets(96, vocab)
    grad = z.clone()
    with gems.use_gems(include=[]):
        losses = getattr(torch.ops.gems, OP)(grad, t, -100, label_smoothing, softcap, 1 / 96)
        torch.cuda.synchronize()
        ref_losses, ref_grad = reference(z, t, label_smoothing=label_smoothing, softcap=softcap, scale=1 / 96)
        torch.testing.assert_close(losses, ref_losses.float(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(grad, ref_grad.to(dtype), **GRAD_TOL[dtype])


def test_kernel_strided_rows_and_targets(gems):
    buffer = torch.randn(64, 32000 + 64, device="cuda") * 4
    z = buffer[:, 16:32016]  # pointer not 16-byte aligned: the general variant
    t = targets(128, 32000)[::2]
    grad_buffer = buffer.clone()
    losses = getattr(torch.ops.gems, OP)(grad_buffer[:, 16:32016], t, -100, 0.0, None, 1.0)
    with gems.use_gems(include=[]):
        ref_losses, ref_grad = reference(z, t)
        torch.testing.assert_close(losses, ref_losses.float(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(grad_buffer[:, 16:32016], ref_grad.float(), **GRAD_TOL[torch.float32])
        assert torch.equal(grad_buffer[:, :16], buffer[:, :16])
        assert torch.equal(grad_buffer[:, 32016:], buffer[:, 32016:])


def test_kernel_errors_on_cuda(gems):
    op = getattr(torch.ops.gems, OP)
    z = torch.randn(4, 10, device="cuda")
    with pytest.raises(RuntimeError, match="expected logits and target on one device"):
        op(z, torch.zeros(4, dtype=torch.long))
    assert op(torch.empty(0, 10, device="cuda"), torch.empty(0, dtype=torch.long, device="cuda")).shape == (0,)


# -- the fused function -------------------------------------------------------------------------


def lm_head(tokens, hidden, vocab, dtype, bias=False, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(tokens, hidden, device="cuda", generator=g).to(dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, device="cuda", generator=g) / hidden**0.5).to(dtype).requires_grad_()
    b = torch.randn(vocab, device="cuda", generator=g).to(dtype).requires_grad_() if bias else None
    return x, w, b, targets(tokens, vocab, seed=seed)


def unfused_float64(x, w, t, b, ignore_index=-100, reduction="mean", label_smoothing=0.0, softcap=None,
                    chunk_size=None):
    """The composition in the inputs' dtype (float64 here; the function's fallback takes .float())."""
    logits = F.linear(x, w, b)
    logits = logits if softcap is None else softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=label_smoothing)


def reference_step(x, w, b, t, **kw):
    """The unfused composition in float64 (gems off): loss and gradients."""
    leaves = [a.detach().double().requires_grad_() for a in (x, w) + (() if b is None else (b,))]
    loss = unfused_float64(leaves[0], leaves[1], t, leaves[2] if b is not None else None, **kw)
    loss.backward()
    return loss.detach(), [a.grad for a in leaves]


def check_step(gems, x, w, b, t, tol, gems_on=False, **kw):
    with gems.use_gems(include=None if gems_on else []):
        loss = gems.fused_linear_cross_entropy(x, w, t, b, **kw)
        loss.backward()
    with gems.use_gems(include=[]):
        ref_loss, ref_grads = reference_step(x, w, b, t, **kw)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss.double(), ref_loss, rtol=tol, atol=tol)
        for got, expected in zip([x.grad, w.grad] + ([] if b is None else [b.grad]), ref_grads):
            assert got.dtype == x.dtype
            err = (got.double() - expected).abs().max() / expected.abs().max()
            assert err <= 4 * tol, err


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_size", [None, 1000], ids=["default", "1000"])
def test_llm_size_bf16(gems, chunk_size, reduction):
    x, w, b, t = lm_head(4096, 2048, 32000, torch.bfloat16)
    check_step(gems, x, w, b, t, 1e-2, reduction=reduction, chunk_size=chunk_size)


def test_llm_size_on_gems_matmuls(gems):
    x, w, b, t = lm_head(4096, 2048, 32000, torch.bfloat16, seed=1)
    check_step(gems, x, w, b, t, 1e-2, gems_on=True, softcap=30.0, label_smoothing=0.1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_bias_softcap_smoothing(gems, dtype):
    x, w, b, t = lm_head(1000, 256, 5000, dtype, bias=True, seed=2)
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    check_step(gems, x, w, b, t, tol, softcap=20.0, label_smoothing=0.2, chunk_size=300)


def test_autocast_and_frozen_weight(gems):
    x, w, _, t = lm_head(512, 256, 3000, torch.float32, seed=3)
    with gems.use_gems(include=[]), torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gems.fused_linear_cross_entropy(x, w.detach(), t)
    loss.backward()
    assert x.grad.dtype == torch.float32 and w.grad is None
    with gems.use_gems(include=[]):
        ref_loss, ref_grads = reference_step(x, w.detach(), None, t)
        torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-2, atol=1e-2)
        assert (x.grad.double() - ref_grads[0]).abs().max() <= 4e-2 * ref_grads[0].abs().max()


def test_fallbacks_are_the_composition(gems):
    from gems_aot._linear_ce import unfused_linear_cross_entropy

    x, w, b, t = lm_head(64, 32, 100, torch.float64, bias=True, seed=4)
    with gems.use_gems(include=[]):
        assert torch.equal(gems.fused_linear_cross_entropy(x, w, t, b), unfused_linear_cross_entropy(x, w, t, b))
        with pytest.raises(RuntimeError):  # mixed dtypes: the composition, whose F.linear raises torch's error
            gems.fused_linear_cross_entropy(x.float(), w.detach().bfloat16(), t)
