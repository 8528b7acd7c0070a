"""Loads the extension: a Python-free shared library that registers torch.ops.gems.*.

Then gives the gems ops that mirror an aten op (same name and semantics, declared by
GemsOp.meta_from_aten: every op but the fused family's) the aten op as their fake
implementation. torch's fake implementations of aten ops trace symbolic shapes; a C++ Meta kernel
that reads sizes() or size(d) specialises every dim of that tensor. This is how
torch.compile(dynamic=True) and torch.export see through torch.ops.gems.*. Only tracing and meta
tensors run it: CUDA calls never reach Python.
"""

import pathlib

import torch

LIBRARY = pathlib.Path(__file__).with_name("libgems_aot.so")

_loaded = False


def aten_fakes() -> list[str]:
    """The gems ops declared to mean what the aten op of their name does (GemsOp.meta_from_aten):
    "add.Tensor", "sum.dim_IntList", "rms_norm", ..."""
    return torch.ops.gems._aten_fakes().split()


def _packet_overload(namespace, name: str):
    base, _, overload = name.partition(".")
    return getattr(getattr(namespace, base), overload or "default")


def register_aten_fakes() -> list[str]:
    """Registers the aten op as the fake implementation of every gems op declared to mirror it;
    returns their qualified names."""
    registered = []
    for name in aten_fakes():
        aten = _packet_overload(torch.ops.aten, name)

        def fake(*args, _aten=aten, **kwargs):
            return _aten(*args, **kwargs)

        torch.library.register_fake(f"gems::{name}", fake)
        registered.append(f"gems::{name}")
    return registered


def load() -> None:
    global _loaded
    if _loaded:
        return
    if not LIBRARY.exists():
        raise ImportError(
            f"gems_aot's extension {LIBRARY.name} is not built next to {LIBRARY.parent}; "
            "build it with `pip install --no-build-isolation -e .` from the source tree"
        )
    torch.ops.load_library(str(LIBRARY))
    register_aten_fakes()
    _loaded = True
