"""Fused activation ops: thin wrappers over torch.ops.gems.* (autograd and Meta functions included).

    y = gems_aot.silu_and_mul(x)                 # silu(x[..., :H]) * x[..., H:]
    y = gems_aot.gelu_and_mul(x, approximate="tanh")

x: a CUDA tensor of dtype float32, float16 or bfloat16 whose last dim is even (2H); the result has
shape x.shape[:-1] + (H,) and x's dtype, contiguous. Math is in float32 (ATen's opmath for
fp16 / bf16) with one rounding at the end. Gradients flow through one fused backward kernel
(torch.ops.gems.silu_and_mul_backward / gelu_and_mul_backward); double backward is not supported.
"""

from __future__ import annotations

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
