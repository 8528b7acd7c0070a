"""Fused ops: thin wrappers over torch.ops.gems.* (autograd and Meta functions included).

    y = gems_aot.silu_and_mul(x)                 # silu(x[..., :H]) * x[..., H:]
    y = gems_aot.gelu_and_mul(x, approximate="tanh")
    y = gems_aot.rms_norm(x, [hidden], weight, eps=1e-6)
    q, k = gems_aot.rotary_embedding(q, k, cos, sin)   # q * cos + rotate_half(q) * sin

x: a CUDA tensor of dtype float32, float16 or bfloat16 whose last dim is even (2H); the result has
shape x.shape[:-1] + (H,) and x's dtype, contiguous. Math is in float32 (ATen's opmath for
fp16 / bf16) with one rounding at the end. Gradients flow through one fused backward kernel
(torch.ops.gems.silu_and_mul_backward / gelu_and_mul_backward); double backward is not supported.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """silu(a) * b for the halves a = x[..., :H], b = x[..., H:] of x's last dim (2H), in one kernel.

    Equal to ``torch.nn.functional.silu(x[..., :H]) * x[..., H:]`` (computed in float32 for
    fp16 / bf16, rounded once). Shape x.shape[:-1] + (H,), dtype of x. Differentiable.
    Raises for a 0-d x, an odd last dim, a dtype other than float32 / float16 / bfloat16, and
    for tensors not on a CUDA device.
    """
    return torch.ops.gems.silu_and_mul(x)


def gelu_and_mul(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """gelu(a, approximate) * b for the halves a = x[..., :H], b = x[..., H:] of x's last dim (2H).

    Equal to ``torch.nn.functional.gelu(x[..., :H], approximate=approximate) * x[..., H:]``;
    approximate is "none" (the erf form) or "tanh". Shape x.shape[:-1] + (H,), dtype of x.
    Differentiable. Raises as silu_and_mul does, and for another `approximate`.
    """
    return torch.ops.gems.gelu_and_mul(x, approximate)


def rms_norm(x: torch.Tensor, normalized_shape: Sequence[int], weight: Optional[torch.Tensor] = None,
             eps: Optional[float] = None) -> torch.Tensor:
    """RMSNorm over the trailing dims: ``x * rsqrt(mean(x * x) + eps) * weight``, in one kernel.

    Equal to ``torch.rms_norm(x, normalized_shape, weight, eps)`` (float32 math for fp16 / bf16,
    rounded once; eps defaults to float32's epsilon, as torch's). x and weight: CUDA tensors of one
    dtype of float32, float16, bfloat16, contiguous. Differentiable in x and weight: the forward
    then also keeps each row's rstd, and the backward is one kernel for grad_x plus a fixed-order
    sum for grad_weight (deterministic); double backward is not supported. Raises torch's errors
    for shapes torch rejects, and a gems error for inputs no kernel covers (another dtype, a
    non-contiguous tensor)."""
    return torch.ops.gems.rms_norm(x, list(normalized_shape), weight, eps)


def rotary_embedding(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     position_ids: torch.Tensor | None = None, interleaved: bool = False):
    """(q_rot, k_rot): q and k rotated by cos / sin in one kernel per tensor.

    q [B, Hq, S, D] and k [B, Hk, S, D] (Hugging Face's layout, any strides); cos and sin of
    shape [B or 1, S, R] or [S, R] (a row per position), or, with ``position_ids`` [B, S] (int64),
    tables [P, R] read at row position_ids[b, s]. The first R <= D dims rotate (R even, at most 256),
    in pairs (i, i + R/2) as Hugging Face's ``rotate_half``, or (2i, 2i + 1) with ``interleaved``;
    the rest pass through. Equal to ``q * cos + rotate_half(q) * sin`` on the rotated dims,
    computed in float32 and rounded once. q, k, cos and sin share one dtype (float32, float16 or
    bfloat16). Differentiable in q and k (cos and sin must not require grad); the results keep q's
    and k's strides.
    """
    return torch.ops.gems.rotary_embedding(q, k, cos, sin, position_ids, interleaved)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim: int = 1):
    """Hugging Face's ``apply_rotary_pos_emb`` (transformers' Llama, Mistral, Qwen2), in one kernel each.

    cos / sin are [B, S, D] as the model's rotary module returns them; ``unsqueeze_dim`` 1 means
    q, k are [B, H, S, D], 2 that they are [B, S, H, D]. ``position_ids`` is ignored, as in
    transformers.
    """
    if unsqueeze_dim == 2:
        q_rot, k_rot = rotary_embedding(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        return q_rot.transpose(1, 2), k_rot.transpose(1, 2)
    if unsqueeze_dim != 1:
        raise ValueError(f"apply_rotary_pos_emb: unsqueeze_dim must be 1 or 2, got {unsqueeze_dim}")
    return rotary_embedding(q, k, cos, sin)
