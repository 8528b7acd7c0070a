"""One-call model patching: swap a model's RMSNorm and rotary embedding for gems' fused ops.

    report = gems_aot.patch(model)     # what was swapped, per kind
    ...
    gems_aot.unpatch(model)            # everything back as it was

It recognises Hugging Face transformers' decoder building blocks by their structure, not only by
name, and leaves anything else alone:

- RMSNorm modules (a ``weight`` of the hidden size and a ``variance_epsilon``, as LlamaRMSNorm,
  MistralRMSNorm, Qwen2RMSNorm): their forward becomes ``gems::rms_norm`` (fp32 math, one
  rounding, the weight applied in fp32 where transformers applies it after rounding: equal within
  the dtype's rounding). Patched only where gems::rms_norm has autograd, so training works.
- ``apply_rotary_pos_emb`` of the modeling module that defines the model's attention (transformers
  looks it up there at call time): replaced by gems' rotary kernel, which falls back to the
  original function for inputs it does not take (CPU tensors, mixed dtypes, other ranks). This
  swap is per modeling module, so it holds for every model of that architecture until unpatch.

Weights, buffers and the state dict are untouched.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections import Counter

import torch
from torch import nn

from gems_aot._fused import rotary_embedding

_ORIGINAL_ROTARY = "_gems_original_apply_rotary_pos_emb"


def _is_hf_rms_norm(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (type(module).__name__.endswith("RMSNorm") and isinstance(weight, nn.Parameter) and weight.dim() == 1
            and isinstance(getattr(module, "variance_epsilon", None), float))


def _rms_norm_has_autograd() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("gems::rms_norm", "Autograd")


def _rms_norm_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    x = hidden_states
    if x.is_cuda and x.dtype == self.weight.dtype and x.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.ops.gems.rms_norm(x, [x.shape[-1]], self.weight, self.variance_epsilon)
    return type(self).forward(self, hidden_states)


def _takes_gems_rotary(q, k, cos, sin) -> bool:
    return (all(t.is_cuda for t in (q, k, cos, sin)) and q.dim() == 4 and k.dim() == 4 and cos.dim() == 3
            and len({q.dtype, k.dtype, cos.dtype, sin.dtype}) == 1
            and q.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and cos.shape == sin.shape and cos.shape[-1] == q.shape[-1] <= 256 and q.shape[-1] % 2 == 0
            and not (cos.requires_grad or sin.requires_grad))


def _gems_apply_rotary(original):
    # transformers' signatures: (q, k, cos, sin, unsqueeze_dim=1), earlier (q, k, cos, sin,
    # position_ids=None, unsqueeze_dim=1): find unsqueeze_dim's place once.
    params = inspect.signature(original).parameters
    names = list(params)
    at = names.index("unsqueeze_dim") - 4 if "unsqueeze_dim" in params else None
    default = params["unsqueeze_dim"].default if at is not None else 1

    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        unsqueeze_dim = kwargs.get("unsqueeze_dim", args[at] if at is not None and len(args) > at else default)
        if isinstance(unsqueeze_dim, int) and unsqueeze_dim in (1, 2) and _takes_gems_rotary(q, k, cos, sin):
            if unsqueeze_dim == 2:
                q_rot, k_rot = rotary_embedding(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
                return q_rot.transpose(1, 2), k_rot.transpose(1, 2)
            return rotary_embedding(q, k, cos, sin)
        return original(q, k, cos, sin, *args, **kwargs)

    apply_rotary_pos_emb.__doc__ = f"gems' rotary kernel, else {original.__module__}.apply_rotary_pos_emb."
    setattr(apply_rotary_pos_emb, _ORIGINAL_ROTARY, original)
    return apply_rotary_pos_emb


def _modeling_modules(model: nn.Module) -> set[types.ModuleType]:
    """The modules defining the model's submodule classes that have a rotary function to swap."""
    found = set()
    for sub in model.modules():
        mod = sys.modules.get(type(sub).__module__)
        if mod is not None and callable(getattr(mod, "apply_rotary_pos_emb", None)) and hasattr(mod, "rotate_half"):
            found.add(mod)
    return found


def patch(model: nn.Module) -> dict[str, int]:
    """Swaps the RMSNorm modules and the rotary embedding of a transformers model for gems' fused
    kernels; returns what it changed, e.g. {"rms_norm": 17, "rotary": 1} (rotary counts modeling
    modules). Patching twice changes nothing more; unpatch(model) restores."""
    changed: Counter = Counter()
    if _rms_norm_has_autograd():
        for module in model.modules():
            if _is_hf_rms_norm(module) and "forward" not in vars(module):
                module.forward = types.MethodType(_rms_norm_forward, module)
                changed["rms_norm"] += 1
    for mod in _modeling_modules(model):
        if not hasattr(mod.apply_rotary_pos_emb, _ORIGINAL_ROTARY):
            mod.apply_rotary_pos_emb = _gems_apply_rotary(mod.apply_rotary_pos_emb)
            changed["rotary"] += 1
    return dict(changed)


def unpatch(model: nn.Module) -> dict[str, int]:
    """Undoes patch(model): the modules' own forward, the modeling modules' own rotary function."""
    restored: Counter = Counter()
    for module in model.modules():
        forward = vars(module).get("forward")
        if isinstance(forward, types.MethodType) and forward.__func__ is _rms_norm_forward:
            del module.forward
            restored["rms_norm"] += 1
    for mod in _modeling_modules(model):
        original = getattr(mod.apply_rotary_pos_emb, _ORIGINAL_ROTARY, None)
        if original is not None:
            mod.apply_rotary_pos_emb = original
            restored["rotary"] += 1
    return dict(restored)
