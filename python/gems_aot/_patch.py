"""One-call model patching: swap a model's RMSNorm and rotary embedding for gems' fused ops, and
its Adam / AdamW optimizer's per-op foreach step for the fused one-pass step.

    report = gems_aot.patch(model, optimizer)   # what was swapped, per kind
    ...
    gems_aot.unpatch(model, optimizer)          # everything back as it was

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

- gated MLPs (``gate_proj``, ``up_proj``, ``down_proj`` linears without bias and a SiLU or
  GELU ``act_fn``, as LlamaMLP, Qwen2MLP, GemmaMLP): gate and up are written by their two
  matmuls side by side into one buffer, which ``gems::silu_and_mul`` / ``gelu_and_mul`` reads in
  one pass; the backward is one fused kernel for both halves, then the matmuls. The unfused
  activation, product and their intermediates are not materialised.
- causal LMs (``LlamaForCausalLM``, ``GPT2LMHeadModel``, ...: a linear ``lm_head``): a call with
  labels while gradients are enabled computes transformers' loss with
  ``fused_linear_cross_entropy`` and returns it without logits (``logits=None``): the
  [tokens x vocabulary] logits are never materialised (python/gems_aot/_patch_lm_loss.py). Other
  calls are the model's own.
- the optimizer, if given: torch.optim.Adam / AdamW param groups whose parameters are all CUDA
  floating-point tensors switch from the default foreach path (a dozen passes over every parameter
  per step) to ``fused=True`` (one pass: aten ``_fused_adam_`` / ``_fused_adamw_``, which gems
  serves when enabled); their step counters move to the parameters' device as the fused path
  keeps them. The update is the same formula; results differ from the foreach path's in rounding.

Weights, buffers and the state dict are untouched.
"""

from __future__ import annotations

import inspect
import sys
import types
import weakref
from collections import Counter

import torch
from torch import nn

from gems_aot._fused import rotary_embedding
from gems_aot._patch_lm_loss import causal_lm_forward, is_causal_lm

_ORIGINAL_ROTARY = "_gems_original_apply_rotary_pos_emb"
_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what the fused kernels take


def _is_hf_rms_norm(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (type(module).__name__.endswith("RMSNorm") and isinstance(weight, nn.Parameter) and weight.dim() == 1
            and isinstance(getattr(module, "variance_epsilon", None), float))


def _rms_norm_has_autograd() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("gems::rms_norm", "Autograd")


def _rms_norm_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    x = hidden_states
    if (x.is_cuda and x.dtype == self.weight.dtype and x.dtype in _FUSED_DTYPES and x.is_contiguous()
            and not torch.is_autocast_enabled()):
        return torch.ops.gems.rms_norm(x, [x.shape[-1]], self.weight, self.variance_epsilon)
    return type(self).forward(self, hidden_states)


def _takes_gems_rotary(q, k, cos, sin, seq_dim) -> bool:
    """Inputs the kernel computes exactly as transformers' broadcasting does; others keep its code."""
    return (all(t.is_cuda for t in (q, k, cos, sin)) and q.dim() == 4 and k.dim() == 4 and cos.dim() == 3
            and len({q.dtype, k.dtype, cos.dtype, sin.dtype}) == 1
            and q.dtype in _FUSED_DTYPES
            and cos.shape == sin.shape and cos.shape[-1] == q.shape[-1] <= 256 and q.shape[-1] % 2 == 0
            and cos.shape[0] in (1, q.shape[0]) and cos.shape[1] == q.shape[seq_dim] == k.shape[seq_dim]
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
        if isinstance(unsqueeze_dim, int) and unsqueeze_dim in (1, 2) and _takes_gems_rotary(
                q, k, cos, sin, seq_dim=3 - unsqueeze_dim):
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


def _gated_activation(module: nn.Module) -> str | None:
    """"silu", or gelu's approximate ("none" / "tanh"), for a recognised gated MLP, else None."""
    linears = [getattr(module, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    if not all(isinstance(m, nn.Linear) and m.bias is None for m in linears):
        return None
    act = getattr(module, "act_fn", None)
    name = type(act).__name__
    if name in ("SiLU", "SiLUActivation"):
        return "silu"
    if isinstance(act, nn.GELU):
        return act.approximate
    partial = getattr(act, "act", None)
    if name in ("GELUTanh", "PytorchGELUTanh") and getattr(partial, "keywords", {}).get("approximate") == "tanh":
        return "tanh"
    return None


class _GatedProjection(torch.autograd.Function):
    """act(x @ gate^T) * (x @ up^T), the two products written side by side into one buffer."""

    @staticmethod
    def forward(ctx, x, gate_weight, up_weight, act):
        inter = gate_weight.shape[0]
        both = x.new_empty(x.shape[0], 2 * inter)
        torch.mm(x, gate_weight.t(), out=both[:, :inter])
        torch.mm(x, up_weight.t(), out=both[:, inter:])
        ctx.save_for_backward(x, gate_weight, up_weight, both)
        ctx.act = act
        if act == "silu":
            return torch.ops.gems.silu_and_mul(both)
        return torch.ops.gems.gelu_and_mul(both, act)

    @staticmethod
    def backward(ctx, grad):
        x, gate_weight, up_weight, both = ctx.saved_tensors
        inter = gate_weight.shape[0]
        if ctx.act == "silu":
            d_both = torch.ops.gems.silu_and_mul_backward(grad, both)
        else:
            d_both = torch.ops.gems.gelu_and_mul_backward(grad, both, ctx.act)
        d_gate, d_up = d_both[:, :inter], d_both[:, inter:]
        dx = torch.mm(d_gate, gate_weight).addmm_(d_up, up_weight) if ctx.needs_input_grad[0] else None
        d_gate_weight = torch.mm(d_gate.t(), x) if ctx.needs_input_grad[1] else None
        d_up_weight = torch.mm(d_up.t(), x) if ctx.needs_input_grad[2] else None
        return dx, d_gate_weight, d_up_weight, None


def _gated_mlp_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    weights = (self.gate_proj.weight, self.up_proj.weight)
    if (x.is_cuda and x.dtype in _FUSED_DTYPES and all(w.dtype == x.dtype and w.is_cuda for w in weights)
            and not torch.is_autocast_enabled()):
        h = _GatedProjection.apply(x.reshape(-1, x.shape[-1]), *weights, _gated_activation(self))
        return self.down_proj(h.view(*x.shape[:-1], h.shape[-1]))
    return type(self).forward(self, x)


# optimizer -> the (foreach, fused) flags of each group patch() switched, by group index.
_OPTIMIZER_FLAGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fusable(p: torch.Tensor) -> bool:
    return p.is_cuda and p.dtype in _FUSED_DTYPES and not p.is_sparse


def _move_steps(optimizer: torch.optim.Optimizer, group: dict, to_param_device: bool) -> None:
    for p in group["params"]:
        step = optimizer.state.get(p, {}).get("step")
        if isinstance(step, torch.Tensor):
            optimizer.state[p]["step"] = step.to(p.device if to_param_device else "cpu", torch.float32)


def _fuse_optimizer(optimizer: torch.optim.Optimizer) -> int:
    if not isinstance(optimizer, torch.optim.Adam) or optimizer in _OPTIMIZER_FLAGS:
        return 0
    switched = {}
    for i, group in enumerate(optimizer.param_groups):
        params = group["params"]
        if (group.get("fused") or group.get("differentiable") or group.get("capturable") or not params
                or not all(_fusable(p) for p in params)):
            continue
        switched[i] = (group.get("foreach"), group.get("fused"))
        group["foreach"], group["fused"] = False, True
        _move_steps(optimizer, group, to_param_device=True)
    if switched:
        _OPTIMIZER_FLAGS[optimizer] = (switched, getattr(optimizer, "_step_supports_amp_scaling", False))
        optimizer._step_supports_amp_scaling = True  # what torch sets for a fused optimizer
    return len(switched)


def _unfuse_optimizer(optimizer: torch.optim.Optimizer) -> int:
    saved = _OPTIMIZER_FLAGS.pop(optimizer, None)
    if saved is None:
        return 0
    switched, amp_scaling = saved
    for i, (foreach, fused) in switched.items():
        group = optimizer.param_groups[i]
        group["foreach"], group["fused"] = foreach, fused
        _move_steps(optimizer, group, to_param_device=False)
    optimizer._step_supports_amp_scaling = amp_scaling
    return len(switched)


def patch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Swaps the RMSNorm modules, gated MLPs and the rotary embedding of a transformers model for
    gems' fused kernels, a causal LM's training loss for the fused linear + cross-entropy (its
    logits are then None), and an Adam / AdamW optimizer's foreach step for the fused one; returns
    what it changed, e.g. {"rms_norm": 17, "gated_mlp": 8, "lm_loss": 1, "rotary": 1,
    "fused_optimizer_groups": 1} (rotary counts modeling modules). Patching twice changes nothing
    more; unpatch(model, optimizer) restores."""
    changed: Counter = Counter()
    if optimizer is not None:
        changed["fused_optimizer_groups"] += _fuse_optimizer(optimizer)
    if _rms_norm_has_autograd():
        for module in model.modules():
            if _is_hf_rms_norm(module) and "forward" not in vars(module):
                module.forward = types.MethodType(_rms_norm_forward, module)
                changed["rms_norm"] += 1
    for module in model.modules():
        if _gated_activation(module) is not None and "forward" not in vars(module):
            module.forward = types.MethodType(_gated_mlp_forward, module)
            changed["gated_mlp"] += 1
    for module in model.modules():
        if is_causal_lm(module) and "forward" not in vars(module):
            module.forward = types.MethodType(causal_lm_forward, module)
            changed["lm_loss"] += 1
    for mod in _modeling_modules(model):
        if not hasattr(mod.apply_rotary_pos_emb, _ORIGINAL_ROTARY):
            mod.apply_rotary_pos_emb = _gems_apply_rotary(mod.apply_rotary_pos_emb)
            changed["rotary"] += 1
    return {k: v for k, v in changed.items() if v}


_PATCHED_FORWARDS = {_rms_norm_forward: "rms_norm", _gated_mlp_forward: "gated_mlp", causal_lm_forward: "lm_loss"}


def unpatch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Undoes patch(model, optimizer): the modules' own forward, the modeling modules' own rotary
    function, the optimizer's own foreach / fused flags (its step counters back on the CPU)."""
    restored: Counter = Counter()
    if optimizer is not None:
        restored["fused_optimizer_groups"] += _unfuse_optimizer(optimizer)
    for module in model.modules():
        forward = vars(module).get("forward")
        if isinstance(forward, types.MethodType) and forward.__func__ in _PATCHED_FORWARDS:
            del module.forward
            restored[_PATCHED_FORWARDS[forward.__func__]] += 1
    for mod in _modeling_modules(model):
        original = getattr(mod.apply_rotary_pos_emb, _ORIGINAL_ROTARY, None)
        if original is not None:
            mod.apply_rotary_pos_emb = original
            restored["rotary"] += 1
    return {k: v for k, v in restored.items() if v}
