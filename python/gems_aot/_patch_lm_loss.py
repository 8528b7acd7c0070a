"""patch()'s causal-LM loss: a transformers causal LM called with labels while gradients are
enabled computes its loss with fused_linear_cross_entropy, so the [tokens x vocabulary] logits
(and their fp32 copy in transformers' loss) are never materialised.

The patched forward runs the model's own forward with the labels taken out and its lm_head
replaced, for that call only, by a function that keeps the hidden states and returns an empty
[..., 0] tensor in place of the logits (whatever the model does to its logits after the head, a
softcap say, then costs nothing). The loss is transformers' ForCausalLMLoss: labels shifted by one
(or the caller's shift_labels), ignore_index -100, the mean over the kept targets, or the sum over
num_items_in_batch where the caller passes it, Gemma 2's final_logit_softcapping applied. The
output is the model's own output class with the loss and without logits (logits=None).

Any other call (no labels, gradients off, return_dict=False, logits_to_keep) is the model's own
forward, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gems_aot._linear_ce import fused_linear_cross_entropy

_IGNORE_INDEX = -100  # transformers' ForCausalLMLoss
_CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def is_causal_lm(module: nn.Module) -> bool:
    """A transformers causal LM with a linear head (LlamaForCausalLM, GPT2LMHeadModel, ...)."""
    return (type(module).__name__.endswith(_CAUSAL_LM_SUFFIXES) and isinstance(getattr(module, "lm_head", None),
                                                                            nn.Linear)
            and hasattr(module, "config"))


def _takes_fused_loss(kwargs: dict) -> bool:
    has_labels = kwargs.get("labels") is not None or kwargs.get("shift_labels") is not None
    keep = kwargs.get("logits_to_keep", 0)
    return (has_labels and torch.is_grad_enabled() and kwargs.get("return_dict") is not False
            and isinstance(keep, int) and keep == 0)


def causal_lm_forward(self: nn.Module, *args, **kwargs):
    if not _takes_fused_loss(kwargs):
        return type(self).forward(self, *args, **kwargs)
    labels, shift_labels = kwargs.pop("labels", None), kwargs.pop("shift_labels", None)
    head = self.lm_head
    kept = []

    def keep_hidden(hidden: torch.Tensor) -> torch.Tensor:
        kept.append(hidden)
        return hidden.new_empty(*hidden.shape[:-1], 0)

    head.forward = keep_hidden
    try:
        out = type(self).forward(self, *args, **kwargs)
    finally:
        del head.forward
    (hidden,) = kept
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=_IGNORE_INDEX)[..., 1:]
    items = kwargs.get("num_items_in_batch")
    loss = fused_linear_cross_entropy(hidden, head.weight, shift_labels.to(hidden.device), head.bias,
                                      ignore_index=_IGNORE_INDEX, reduction="mean" if items is None else "sum",
                                      softcap=getattr(self.config, "final_logit_softcapping", None))
    if items is not None:
        loss = loss / (items.to(loss.device) if torch.is_tensor(items) else items)
    return type(out)(loss=loss, **{k: v for k, v in out.items() if k not in ("loss", "logits")})
