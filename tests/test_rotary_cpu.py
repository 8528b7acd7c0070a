"""CPU tests of the rotary embedding (fused family): kernel math under the interpreter against
Hugging Face's formula and its autograd, declarations, AOT compile, and (with the built
extension) schemas, Meta functions, errors and autograd.

`rotate` mirrors the driver in csrc/ops/fused.cpp (cos / sin rows and strides, tile, launch
grid), so the interpreted kernel runs the launches the C++ makes.
"""

import functools

import pytest
import torch
from conftest import interpreted

from aot import family_fused as fam
from aot import schemas

GRID = next(g for g in fam.GRIDS if g.name == "rotary")
ARCHS = (80, 90, 100)
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
TOL = {torch.float32: (1.3e-6, 1e-6), torch.float16: (1e-3, 1e-3), torch.bfloat16: (1.6e-2, 1e-2)}


@functools.lru_cache(maxsize=None)
def kernels():
    return interpreted("kernels.fused")


def tile_for(pairs):
    return next(name for name, (block_half, _, _) in fam.ROTARY_TILES.items() if pairs <= block_half)


def rotate(x, cos, sin, position_ids=None, interleaved=False, backward=False):
    """What gems::rotary_embedding(_backward) computes for one of q / k, by the kernel."""
    cos = cos.unsqueeze(0) if cos.dim() == 2 else cos
    sin = sin.unsqueeze(0) if sin.dim() == 2 else sin
    if cos.stride(2) != 1 or cos.stride() != sin.stride():
        cos, sin = cos.contiguous(), sin.contiguous()
    if x.shape[3] > 1 and x.stride(3) != 1:
        x = x.contiguous()
    out = torch.empty_like(x)
    B, H, S, D = x.shape
    half = cos.shape[2] // 2
    block_half, block_h, _ = fam.ROTARY_TILES[tile_for(half)]
    pos = position_ids if position_ids is not None else torch.zeros(1, dtype=torch.int64)
    grid = (B * S, -(-H // block_h))
    kernels().rotary_kernel[grid](
        x, out, cos, sin, pos, H, S, *x.stride()[:3], *out.stride()[:3], 0 if cos.shape[0] == 1 else cos.stride(0),
        cos.stride(1), *(position_ids.stride() if position_ids is not None else (0, 0)), half, D,
        BLOCK_H=block_h, BLOCK_HALF=block_half, HAS_POS=position_ids is not None, INTERLEAVED=interleaved,
        BACKWARD=backward)
    return out


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rotate_pairs(x):
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def reference(x, cos, sin, interleaved=False):
    """Hugging Face's q * cos + rotate_half(q) * sin on the first R dims (float64), cos [B|1, S, R]."""
    R = cos.shape[-1]
    x64, c, s = x.double(), cos.double().unsqueeze(1), sin.double().unsqueeze(1)
    rot = x64[..., :R]
    rotated = rot * c + (rotate_pairs(rot) if interleaved else rotate_half(rot)) * s
    return torch.cat((rotated, x64[..., R:]), dim=-1)


def trig(B, S, R, dtype, generator, batched=True):
    # Unequal halves (not Hugging Face's cat(freqs, freqs)), so a swapped index shows.
    shape = (B if batched else 1, S, R)
    return (torch.randn(shape, generator=generator).to(dtype), torch.randn(shape, generator=generator).to(dtype))


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("H,D,R", [(3, 64, 64), (5, 128, 64), (2, 96, 32), (17, 256, 256)])
def test_forward(interleaved, dtype, H, D, R, seeded):
    B, S = 2, 5
    x = torch.randn(B, H, S, D, generator=seeded).to(dtype)
    cos, sin = trig(B, S, R, dtype, seeded)
    got = rotate(x, cos, sin, interleaved=interleaved)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got, reference(x, cos, sin, interleaved).to(dtype), rtol=rtol, atol=atol)
    assert torch.equal(got[..., R:], x[..., R:])  # pass-through dims are copied bit for bit


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_backward_is_the_gradient(interleaved, dtype, seeded):
    B, H, S, D, R = 2, 3, 4, 64, 48
    x = torch.randn(B, H, S, D, generator=seeded, dtype=torch.float64, requires_grad=True)
    cos, sin = trig(B, S, R, dtype, seeded)
    grad = torch.randn(B, H, S, D, generator=seeded).to(dtype)
    (expected,) = torch.autograd.grad(reference(x, cos, sin, interleaved), x, grad.double())
    got = rotate(grad, cos, sin, interleaved=interleaved, backward=True)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got, expected.to(dtype), rtol=rtol, atol=atol)


def test_layouts_and_broadcast(seeded):
    """q as Hugging Face makes it (a [B, S, H, D] projection viewed as [B, H, S, D]), cos shared
    by the batch ([S, R] and [1, S, R]) and a cos with padded rows."""
    B, S, H, D = 3, 7, 4, 64
    x = torch.randn(B, S, H, D, generator=seeded).transpose(1, 2)
    cos, sin = trig(B, S, D, torch.float32, seeded, batched=False)
    expected = reference(x, cos, sin).float()
    out = rotate(x, cos[0], sin[0])
    assert out.stride() == x.stride()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(rotate(x, cos, sin), expected)
    padded_cos = torch.zeros(1, S, 2 * D)
    padded_cos[..., :D] = cos
    padded_sin = torch.zeros(1, S, 2 * D)
    padded_sin[..., :D] = sin
    torch.testing.assert_close(rotate(x, padded_cos[..., :D], padded_sin[..., :D]), expected)


def test_position_ids(seeded):
    B, H, S, D, P = 2, 3, 6, 32, 50
    x = torch.randn(B, H, S, D, generator=seeded)
    cos_table, sin_table = (torch.randn(P, D, generator=seeded) for _ in range(2))
    position_ids = torch.randint(0, P, (B, S), generator=seeded)
    got = rotate(x, cos_table, sin_table, position_ids=position_ids)
    expected = reference(x, cos_table[position_ids], sin_table[position_ids]).float()
    torch.testing.assert_close(got, expected)


def test_tiles_match_driver():
    header = fam.generated_sources()[fam.TILE_HEADER]
    for name, (block_half, _, _) in fam.ROTARY_TILES.items():
        assert f"  if (pairs <= {block_half}) return gen::rotary::tile_{name};" in header
    assert [tile_for(p) for p in (1, 32, 33, 64, 65, 128)] == ["r64", "r64", "r128", "r128", "r256", "r256"]


# -- declarations ----------------------------------------------------------------------------------


def test_variant_count():
    for arch in ARCHS:
        assert sum(GRID.make(p, arch) is not None for p in GRID.points()) == 2 * 3 * 2 * 2 * 3


def test_declarations():
    for point in GRID.points():
        v = GRID.make(point, 90)
        assert v.kernel == "kernels.fused:rotary_kernel"
        c = dict(v.constexprs)
        assert c["BACKWARD"] == (point["pass"] == "bwd") and c["INTERLEAVED"] == (point["pairs"] == "interleaved")
        assert c["HAS_POS"] == (point["pos"] == "ids")
        assert (c["BLOCK_HALF"], c["BLOCK_H"], v.num_warps) == fam.ROTARY_TILES[point["tile"]]
        assert dict(v.signature)["pos_ptr"] == "*i64"


def test_schemas():
    header = schemas.family_header(fam.__name__, fam.GEMS_OPS, fam.ATEN_OVERRIDES)
    assert ("std::tuple<at::Tensor, at::Tensor> rotary_embedding(const at::Tensor& q, const at::Tensor& k, "
            "const at::Tensor& cos, const at::Tensor& sin, const std::optional<at::Tensor>& position_ids, "
            "bool interleaved);") in header


@pytest.mark.parametrize("arch", ARCHS)
def test_aot_compile(arch):
    from aot.compiler import compile_variant

    point = {"pass": "bwd", "dtype": "bf16", "pairs": "interleaved", "pos": "ids", "tile": "r128"}
    cubin, meta = compile_variant(GRID.make(point, arch), arch)
    assert cubin[:4] == b"\x7fELF" and meta["name"] == "rotary_kernel"
    assert meta["shared"] <= 48 * 1024


# -- the built extension ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


def meta_inputs(B=2, Hq=4, Hk=2, S=5, D=64, R=64, dtype=torch.bfloat16):
    m = dict(device="meta", dtype=dtype)
    return (torch.empty(B, S, Hq, D, **m).transpose(1, 2), torch.empty(B, Hk, S, D, **m),
            torch.empty(B, S, R, **m), torch.empty(B, S, R, **m))


def test_registered(gems):
    for name in ("rotary_embedding", "rotary_embedding_backward"):
        for key in ("CUDA", "Meta", "Autograd"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"gems::{name}", key), (name, key)


def test_meta_keeps_layouts(gems):
    q, k, cos, sin = meta_inputs()
    q_rot, k_rot = gems.rotary_embedding(q, k, cos, sin)
    assert (q_rot.shape, q_rot.stride(), q_rot.dtype) == (q.shape, q.stride(), q.dtype)
    assert (k_rot.shape, k_rot.stride()) == (k.shape, k.stride())
    q_hf, k_hf = gems.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin, unsqueeze_dim=2)
    assert q_hf.shape == (2, 5, 4, 64) and k_hf.shape == (2, 5, 2, 64)


def test_errors(gems):
    q, k, cos, sin = meta_inputs()
    m = "meta"
    cases = [
        (lambda: gems.rotary_embedding(q[0], k, cos, sin), "expected q and k of 4 dims"),
        (lambda: gems.rotary_embedding(q, k[..., :32], cos, sin), "q and k must agree"),
        (lambda: gems.rotary_embedding(q, k, cos, sin[..., :32]), "cos and sin must have one shape"),
        (lambda: gems.rotary_embedding(q, k.float(), cos, sin), "must have one dtype"),
        (lambda: gems.rotary_embedding(q.double(), k.double(), cos.double(), sin.double()), "unsupported dtype Double"),
        (lambda: gems.rotary_embedding(q, k, cos[..., :7], sin[..., :7]), "must be even and at most head_dim"),
        (lambda: gems.rotary_embedding(q, k, cos[:, :3], sin[:, :3]), "expected cos and sin of shape"),
        (lambda: gems.rotary_embedding(q, k, cos, sin, torch.zeros(2, 5, dtype=torch.long, device=m)),
         "with position_ids, cos and sin are tables"),
        (lambda: gems.rotary_embedding(q, k, cos[0], sin[0], torch.zeros(2, 4, dtype=torch.long, device=m)),
         r"expected position_ids of shape \[2, 5\]"),
        (lambda: gems.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=3), "unsqueeze_dim must be 1 or 2"),
    ]
    for fn, match in cases:
        with pytest.raises((RuntimeError, ValueError), match=match):
            fn()
    big = torch.empty(1, 1, 2, 1024, device=m)
    with pytest.raises(RuntimeError, match="at most 256 rotated dims"):
        gems.rotary_embedding(big, big, torch.empty(1, 2, 512, device=m), torch.empty(1, 2, 512, device=m))


def test_autograd_on_meta(gems):
    q, k, cos, sin = meta_inputs(dtype=torch.float32)
    q.requires_grad_(True)
    k.requires_grad_(True)
    q_rot, k_rot = gems.rotary_embedding(q, k, cos, sin)
    assert q_rot.grad_fn is not None
    grads = (torch.empty_like(q_rot).requires_grad_(), torch.empty_like(k_rot).requires_grad_())
    gq, gk = torch.autograd.grad((q_rot, k_rot), (q, k), grads, create_graph=True)
    assert gq.shape == q.shape and gk.shape == k.shape and gq.requires_grad
    # Double backward: the gradient is linear in the incoming gradients, through the forward rotation.
    ggq, ggk = torch.autograd.grad((gq, gk), grads, (torch.empty_like(gq), torch.empty_like(gk)))
    assert ggq.shape == q.shape and ggk.shape == k.shape
    (gq_only,) = torch.autograd.grad(q_rot, q, torch.empty_like(q_rot))  # k_rot unused: zeros stand in
    assert gq_only.shape == q.shape
    with pytest.raises(RuntimeError, match="gradients with respect to cos and sin are not supported"):
        gems.rotary_embedding(q, k, cos.requires_grad_(True), sin)
