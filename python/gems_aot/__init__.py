"""gems-aot: ahead-of-time compiled Triton operators for PyTorch.

    import gems_aot
    gems_aot.enable()            # aten CUDA ops now run gems kernels, falling back to ATen
    with gems_aot.use_gems(include=["add", "mm"]):
        ...
    with gems_aot.use_gems(record=True) as rec:   # which aten ops ran, and on what
        ...
    rec.report()
    torch.ops.gems.add(a, b)     # the gems ops themselves (with Meta functions)
    gems_aot.patch(model)        # a transformers model's RMSNorm and rotary embedding on fused kernels
    gems_aot.fused_linear_cross_entropy(hidden, lm_head.weight, labels)  # no [tokens x vocab] logits
"""

from gems_aot._library import load as _load
from gems_aot._override import (
    disable,
    enable,
    enabled_ops,
    fallback_counts,
    is_enabled,
    opt_in_ops,
    registered_ops,
    reset_fallback_counts,
    use_gems,
    warn_on_fallback,
)
from gems_aot._info import __version__, info
from gems_aot._record import OpRecord, Recorder, record
from gems_aot._fused import apply_rotary_pos_emb, gelu_and_mul, rms_norm, rotary_embedding, silu_and_mul
from gems_aot._linear_ce import fused_linear_cross_entropy
from gems_aot._patch import patch, unpatch

_load()

__all__ = [
    "__version__",
    "apply_rotary_pos_emb",
    "disable",
    "enable",
    "enabled_ops",
    "fallback_counts",
    "fused_linear_cross_entropy",
    "gelu_and_mul",
    "info",
    "OpRecord",
    "patch",
    "record",
    "Recorder",
    "is_enabled",
    "opt_in_ops",
    "registered_ops",
    "reset_fallback_counts",
    "rms_norm",
    "rotary_embedding",
    "silu_and_mul",
    "unpatch",
    "use_gems",
    "warn_on_fallback",
]
