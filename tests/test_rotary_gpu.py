"""GPU tests of gems::rotary_embedding: values and gradients against Hugging Face's formula
(float64 reference, tolerance of the dtype), layouts as models make them, position ids, partial
and interleaved rotation, CUDA graphs."""

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
TOL = {torch.float32: (1.3e-6, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (1.6e-2, 1e-2)}


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot")


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rotate_pairs(x):
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def reference(x, cos, sin, interleaved=False):
    """x * cos + rotate(x) * sin on the first R dims, the rest unchanged; cos [B|1, S, R]."""
    R = cos.shape[-1]
    c, s = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    rot = x[..., :R]
    rotated = rot * c + (rotate_pairs(rot) if interleaved else rotate_half(rot)) * s
    return torch.cat((rotated, x[..., R:]), dim=-1)


def hf_cos_sin(B, S, D, dtype, base=10000.0):
    """transformers' Llama rotary module: cat(freqs, freqs) at positions 0..S-1."""
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, device="cuda", dtype=torch.float32) / D))
    freqs = torch.arange(S, device="cuda", dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1).expand(B, S, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("Hq,Hk,D,R", [(32, 8, 128, 128), (16, 16, 64, 64), (12, 4, 96, 32), (3, 1, 256, 256)])
def test_values_and_gradients(gems, interleaved, dtype, Hq, Hk, D, R):
    torch.manual_seed(Hq * D + R)
    B, S = 2, 37
    # Hugging Face's q: a [B, S, H * D] projection viewed as [B, H, S, D].
    q = torch.randn(B, S, Hq * D, device="cuda", dtype=dtype).view(B, S, Hq, D).transpose(1, 2).requires_grad_()
    k = torch.randn(B, S, Hk * D, device="cuda", dtype=dtype).view(B, S, Hk, D).transpose(1, 2).requires_grad_()
    cos, sin = (torch.randn(B, S, R, device="cuda", dtype=dtype) for _ in range(2))
    q_rot, k_rot = gems.rotary_embedding(q, k, cos, sin, interleaved=interleaved)
    assert q_rot.stride() == q.stride() and k_rot.stride() == k.stride()
    rtol, atol = TOL[dtype]
    q64, k64 = (t.detach().double().requires_grad_() for t in (q, k))
    ref_q, ref_k = reference(q64, cos.double(), sin.double(), interleaved), reference(k64, cos.double(),
                                                                                    sin.double(), interleaved)
    torch.testing.assert_close(q_rot, ref_q.to(dtype), rtol=rtol, atol=atol)
    torch.testing.assert_close(k_rot, ref_k.to(dtype), rtol=rtol, atol=atol)
    gq, gk = torch.randn_like(q_rot), torch.randn_like(k_rot)
    dq, dk = torch.autograd.grad((q_rot, k_rot), (q, k), (gq, gk))
    ref_dq, ref_dk = torch.autograd.grad((ref_q, ref_k), (q64, k64), (gq.double(), gk.double()))
    torch.testing.assert_close(dq, ref_dq.to(dtype), rtol=rtol, atol=atol)
    torch.testing.assert_close(dk, ref_dk.to(dtype), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_matches_transformers_formula(gems, dtype):
    """The HF drop-in against HF's own formula in the model's dtype (rounded per op there)."""
    B, S, Hq, Hk, D = 2, 64, 8, 2, 128
    q = torch.randn(B, Hq, S, D, device="cuda", dtype=dtype)
    k = torch.randn(B, Hk, S, D, device="cuda", dtype=dtype)
    cos, sin = hf_cos_sin(B, S, D, dtype)
    q_rot, k_rot = gems.apply_rotary_pos_emb(q, k, cos, sin)
    rtol, atol = TOL[dtype]
    cu, su = cos.unsqueeze(1), sin.unsqueeze(1)
    torch.testing.assert_close(q_rot, q * cu + rotate_half(q) * su, rtol=2 * rtol, atol=2 * atol)
    torch.testing.assert_close(k_rot, k * cu + rotate_half(k) * su, rtol=2 * rtol, atol=2 * atol)
    q_bshd, k_bshd = gems.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin, unsqueeze_dim=2)
    assert torch.equal(q_bshd.transpose(1, 2), q_rot) and torch.equal(k_bshd.transpose(1, 2), k_rot)


def test_position_ids_and_shared_rows(gems):
    torch.manual_seed(1)
    B, H, S, D, P = 3, 4, 20, 64, 300
    q, k = (torch.randn(B, H, S, D, device="cuda") for _ in range(2))
    cos_t, sin_t = (torch.randn(P, D, device="cuda") for _ in range(2))
    pos = torch.randint(0, P, (B, S), device="cuda")
    q_rot, k_rot = gems.rotary_embedding(q, k, cos_t, sin_t, pos)
    torch.testing.assert_close(q_rot, reference(q, cos_t[pos], sin_t[pos]))
    torch.testing.assert_close(k_rot, reference(k, cos_t[pos], sin_t[pos]))
    shared = gems.rotary_embedding(q, k, cos_t[:S], sin_t[:S])  # [S, R]: one row per position for every b
    torch.testing.assert_close(shared[0], reference(q, cos_t[:S].expand(B, S, D), sin_t[:S].expand(B, S, D)))


def test_empty_and_errors(gems):
    q = torch.randn(2, 4, 0, 64, device="cuda")
    cos = torch.randn(2, 0, 64, device="cuda")
    q_rot, k_rot = gems.rotary_embedding(q, q, cos, cos)
    assert q_rot.shape == q.shape and k_rot.shape == q.shape
    x = torch.randn(1, 2, 3, 64, device="cuda")
    c = torch.randn(1, 3, 64, device="cuda")
    with pytest.raises(RuntimeError, match="expected every tensor on"):
        gems.rotary_embedding(x, x, c.cpu(), c.cpu())
    with pytest.raises(RuntimeError, match="must have one dtype"):
        gems.rotary_embedding(x, x, c.half(), c.half())


def test_cuda_graph(gems):
    q, k = (torch.randn(2, 8, 16, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    cos, sin = hf_cos_sin(2, 16, 64, torch.bfloat16)
    expected = gems.rotary_embedding(q, k, cos, sin)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        gems.rotary_embedding(q, k, cos, sin)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = gems.rotary_embedding(q, k, cos, sin)
    q.mul_(2)
    graph.replay()
    torch.testing.assert_close(captured[0], expected[0] * 2, rtol=1.6e-2, atol=1e-2)
