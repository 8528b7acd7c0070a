"""Loads the extension: a Python-free shared library that registers torch.ops.gems.*."""

import pathlib

import torch

LIBRARY = pathlib.Path(__file__).with_name("libgems_aot.so")

_loaded = False


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
    _loaded = True
