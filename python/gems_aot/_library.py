"""Loads the extension: a Python-free shared library that registers torch.ops.gems.*.

Then gives the gems ops that mirror an aten op (same name and schema: the pointwise family's) the
aten op as their fake implementation. torch's meta functions for aten ops trace symbolic shapes
(through its Python references), a C++ Meta kernel built on TensorIterator cannot; this is how
torch.compile(dynamic=True) and torch.export see through torch.ops.gems.*. Only tracing and meta
tensors run it: CUDA calls never reach Python.
"""

import pathlib

import torch

LIBRARY = pathlib.Path(__file__).with_name("libgems_aot.so")

_loaded = False


def _aten_mirror(qualname: str):
    """The aten overload of the same name and schema as gems op `qualname`, or None."""
    name, _, overload = qualname.split("::", 1)[1].partition(".")
    packet = getattr(torch.ops.aten, name, None)
    aten = getattr(packet, overload or "default", None) if packet is not None else None
    gems = getattr(getattr(torch.ops.gems, name), overload or "default")
    if aten is None or str(aten._schema).split("::", 1)[1] != str(gems._schema).split("::", 1)[1]:
        return None
    return aten


def register_aten_fakes() -> list[str]:
    """Registers the aten op as the fake implementation of every gems op that has no Meta kernel
    and mirrors one; returns their names."""
    registered = []
    for qualname in torch._C._dispatch_get_all_op_names():
        if not qualname.startswith("gems::") or torch._C._dispatch_has_kernel_for_dispatch_key(qualname, "Meta"):
            continue
        aten = _aten_mirror(qualname)
        if aten is None:
            continue

        def fake(*args, _aten=aten, **kwargs):
            return _aten(*args, **kwargs)

        torch.library.register_fake(qualname, fake)
        registered.append(qualname)
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
