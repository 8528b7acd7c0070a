"""Fused linear + cross entropy: the lm head's matmul and the loss, chunk by chunk over tokens.

    loss = gems_aot.fused_linear_cross_entropy(hidden, lm_head.weight, labels, softcap=30.0)

equals ``F.cross_entropy(softcap(hidden @ weight.T + bias).float(), target, ...)`` without ever
holding the [tokens x vocabulary] logits: for each chunk of tokens, logits = x_c @ W^T (+ b)
(torch.mm / addmm, so gems' matmul where gems is enabled, cuBLAS otherwise), then
gems::cross_entropy_loss_and_grad_ (kernels/loss.py) turns them in place into
d loss / d logits and returns each row's loss, and the gradients are formed at once:
grad_x[c] = dlogits @ W, grad_W += dlogits^T @ x_c, grad_b += the column sums. The backward only
scales them by grad_output. Peak memory: one chunk of logits plus the gradients.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what the kernel takes
# Default token rows per chunk. Each chunk's weight-gradient update (grad_W += dlogits^T @ x_c)
# reads and writes the whole [V, H] gradient: with K = 1024 rows it does 512 flops per byte moved,
# compute-bound on current GPUs, where 64-256 rows would leave it memory-bound and repeated 16-64
# times per step. A chunk's logits are then 1024 x V elements (256 MiB in bf16 at V = 128256).
DEFAULT_CHUNK_ROWS = 1024


def default_chunk_size(tokens: int) -> int:
    """Token rows per chunk: DEFAULT_CHUNK_ROWS, or every token where there are fewer."""
    return max(1, min(tokens, DEFAULT_CHUNK_ROWS))


def _softcapped(logits: torch.Tensor, softcap: Optional[float]) -> torch.Tensor:
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def unfused_linear_cross_entropy(hidden, weight, target, bias=None, *, ignore_index=-100, reduction="mean",
                                 label_smoothing=0.0, softcap=None) -> torch.Tensor:
    """The plain torch composition the fused op equals (and falls back to)."""
    logits = _softcapped(F.linear(hidden, weight, bias), softcap)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                           ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)


def _loss_and_grad_(logits, target, ignore_index, label_smoothing, softcap, scale):
    """The kernel; the CPU tests put its interpreted launch here."""
    return torch.ops.gems.cross_entropy_loss_and_grad_(logits, target, ignore_index, label_smoothing, softcap, scale)


def _chunked(x, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, chunk_size, needs):
    """(loss, [grad_x, grad_w, grad_b], correction) over rows x [N, H]: the gradients of the sum,
    or of the mean over all N rows, which `correction` (a tensor, None for the sum) turns into the
    mean over the kept targets; None where `needs` (x, weight, bias) says no."""
    n = x.shape[0]
    need_x, need_w, need_b = needs
    # The kernel's scale: 1 / N keeps the gradients at the mean's magnitude (no fp16 overflow in
    # grad_w's sum) without knowing the count of kept targets on the host (no sync).
    scale = 1.0 / n if reduction == "mean" and n else 1.0
    total = torch.zeros((), dtype=torch.float32, device=x.device)
    # Contiguous, whatever x's strides: returned as a view of hidden's shape.
    grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_x else None
    grad_w = None
    grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=x.device) if need_b else None
    w_t = weight.t()
    for start in range(0, n, chunk_size):
        x_c, t_c = x[start:start + chunk_size], target[start:start + chunk_size]
        logits = torch.mm(x_c, w_t) if bias is None else torch.addmm(bias, x_c, w_t)
        total += _loss_and_grad_(logits, t_c, ignore_index, label_smoothing, softcap, scale).sum()
        if need_x:
            torch.mm(logits, weight, out=grad_x[start:start + chunk_size])
        if need_w:
            grad_w = torch.mm(logits.t(), x_c) if grad_w is None else grad_w.addmm_(logits.t(), x_c)
        if need_b:
            grad_b += logits.sum(0, dtype=torch.float32)
    if need_w and grad_w is None:  # no rows
        grad_w = torch.zeros_like(weight)
    if reduction == "mean":
        kept = (target != ignore_index).sum()
        loss = total / kept  # NaN where every target is ignored, as torch's
        correction = n / kept.clamp(min=1)  # from the 1 / N scale to 1 / kept
    else:
        loss, correction = total, None
    return loss, [grad_x, grad_w, None if grad_b is None else grad_b.to(bias.dtype)], correction


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, chunk_size):
        x = hidden.reshape(-1, hidden.shape[-1])
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[3])
        loss, grads, correction = _chunked(x, weight, target.reshape(-1), bias, ignore_index, reduction,
                                           label_smoothing, softcap, chunk_size, needs)
        ctx.hidden_shape = hidden.shape
        ctx.correction = correction
        ctx.grads = grads
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.grads is None:
            raise RuntimeError("fused_linear_cross_entropy: backward ran twice; its gradients are computed in the "
                               "forward pass and scaled in place by the first backward (no retain_graph)")
        grad_x, grad_w, grad_b = ctx.grads
        ctx.grads = None
        factor = grad_loss if ctx.correction is None else grad_loss * ctx.correction
        # In place: the gradients are this node's own tensors (no second copy of grad_w).
        for g in (grad_x, grad_w, grad_b):
            if g is not None:
                g.mul_(factor)
        grad_hidden = None if grad_x is None else grad_x.view(ctx.hidden_shape)
        return grad_hidden, grad_w, None, grad_b, None, None, None, None, None


def _fused(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, chunk_size):
    """The chunked computation, whatever the device (the CPU tests run it with the interpreted kernel)."""
    tokens = hidden.numel() // hidden.shape[-1] if hidden.shape[-1] else 0
    chunk = chunk_size or default_chunk_size(tokens)
    inputs = (hidden, weight) + (() if bias is None else (bias,))
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _LinearCrossEntropy.apply(hidden, weight, target, bias, ignore_index, reduction, label_smoothing,
                                         softcap, chunk)
    x = hidden.reshape(-1, hidden.shape[-1])
    return _chunked(x, weight, target.reshape(-1), bias, ignore_index, reduction, label_smoothing, softcap, chunk,
                    (False, False, False))[0]


def _kernel_takes(hidden, weight, target, bias) -> bool:
    """CUDA tensors on one device the build has images for, of one kernel dtype, int64 targets."""
    tensors = (hidden, weight, target) + (() if bias is None else (bias,))
    if hidden.shape[-1] == 0 or weight.shape[0] == 0:
        return False
    if not all(t.is_cuda and t.device == hidden.device for t in tensors) or target.dtype != torch.int64:
        return False
    if hidden.dtype not in _DTYPES or weight.dtype != hidden.dtype or (bias is not None and bias.dtype != hidden.dtype):
        return False
    _, target_id = torch.ops.gems._device_info(hidden.device.index)
    return target_id != 0


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                               bias: Optional[torch.Tensor] = None, *, ignore_index: int = -100,
                               reduction: str = "mean", label_smoothing: float = 0.0,
                               softcap: Optional[float] = None, chunk_size: Optional[int] = None) -> torch.Tensor:
    """The lm head and its cross entropy without the [tokens x vocabulary] logits.

    Equal to ``F.cross_entropy(softcap(hidden @ weight.T + bias).float(), target,
    ignore_index=..., reduction=..., label_smoothing=...)`` with softcap(z) = softcap * tanh(z /
    softcap) as Gemma 2 applies it (None: no cap), computed in float32 from the logits of each
    chunk (so more precise than that composition's bf16 softcap). hidden [..., H], weight [V, H],
    target [...] int64, bias [V]. Returns a float32 scalar.

    ``reduction`` is "mean" (over the targets that are not ignore_index, label smoothing included,
    as torch: NaN when all are ignored) or "sum". "none" is refused: the weight's gradient is
    summed over tokens in the forward pass, which a per-token grad_output cannot scale.

    ``chunk_size``: token rows per chunk; default 1024 (``DEFAULT_CHUNK_ROWS``: fewer rows make
    each chunk's weight-gradient update memory-bound). Differentiable in hidden, weight and bias: their gradients (in
    their dtypes) are computed in the forward pass, so it costs three matmuls and a kernel per
    chunk, and backward only scales them; backward at most once per forward, no double backward.
    Under autocast, hidden, weight and bias are cast to its dtype first, as F.linear would.

    CUDA tensors of one dtype of float32, float16, bfloat16: the fused path. Anything else (CPU
    tensors, float64, mixed dtypes, a GPU the build has no images for) runs
    ``unfused_linear_cross_entropy``, the plain composition.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"fused_linear_cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r} "
                         "(per-token losses need the unfused F.cross_entropy)")
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"fused_linear_cross_entropy: expected hidden [..., H] and weight [V, H], got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if target.shape != hidden.shape[:-1]:
        raise ValueError(f"fused_linear_cross_entropy: expected a target of shape {tuple(hidden.shape[:-1])}, "
                         f"got {tuple(target.shape)}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"fused_linear_cross_entropy: expected a bias of shape ({weight.shape[0]},), "
                         f"got {tuple(bias.shape)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"fused_linear_cross_entropy: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"fused_linear_cross_entropy: softcap must be positive or None, got {softcap}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"fused_linear_cross_entropy: chunk_size must be a positive int, got {chunk_size!r}")
    if hidden.is_cuda and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if not _kernel_takes(hidden, weight, target, bias):
        return unfused_linear_cross_entropy(hidden, weight, target, bias, ignore_index=ignore_index,
                                            reduction=reduction, label_smoothing=label_smoothing, softcap=softcap)
    with torch.autocast("cuda", enabled=False):
        return _fused(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, chunk_size)
