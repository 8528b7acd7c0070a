"""Fused ops: thin wrappers over torch.ops.gems.* (autograd and Meta functions included).

    y = gems_aot.silu_and_mul(x)                 # silu(x[..., :H]) * x[..., H:]
    y = gems_aot.gelu_and_mul(x, approximate="tanh")
    y = gems_aot.rms_norm(x, [hidden], weight, eps=1e-6)

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
