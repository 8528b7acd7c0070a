"""The declaration vocabulary: kernel variants and the grids that index them.

A family declares one or more `KernelGrid`s. A grid has named axes (op, dtype, layout, ...);
`make(point, arch)` returns the `Variant` compiled for that point and target, or None where the
point is not covered (the C++ driver then falls back to ATen). The codegen turns every grid
into a C++ lookup table indexed by the axes, so the driver finds its kernel with integer
arithmetic on the call path.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
from typing import Callable, Mapping, Optional

# Triton signature type of a tensor of each dtype, and the c10::ScalarType it maps to.
DTYPES = {
    "fp32": ("*fp32", "Float"),
    "fp16": ("*fp16", "Half"),
    "bf16": ("*bf16", "BFloat16"),
    "fp64": ("*fp64", "Double"),
    "i8": ("*i8", "Char"),
    "u8": ("*u8", "Byte"),
    "i16": ("*i16", "Short"),
    "i32": ("*i32", "Int"),
    "i64": ("*i64", "Long"),
    "bool": ("*i1", "Bool"),
}

FLOAT_DTYPES = ("fp32", "fp16", "bf16")
INT_DTYPES = ("i32", "i64")


def ptr(dtype: str) -> str:
    """Triton pointer type for a dtype name of DTYPES."""
    return DTYPES[dtype][0]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One kernel specialisation, compiled once per target.

    signature: every parameter of the @triton.jit function in order, as (name, type) with the
      Triton type string ("*fp32", "i32", "fp32", ...) or "constexpr".
    constexprs: the value of every constexpr parameter.
    divisible16: parameters that get the tt.divisibility=16 hint (the caller guarantees it).
    launch_params: constexpr names whose values the C++ driver needs to compute the grid; they
      are exported per compiled image, in this order.
    launch_pdl: launch with programmatic stream serialization (PDL), so the kernel may start
      while the previous one on the stream drains; such a kernel must call
      `tl.extra.cuda.gdc_wait()` before it touches global memory.
    """

    kernel: str
    signature: tuple
    constexprs: tuple = ()
    divisible16: tuple = ()
    num_warps: int = 4
    num_stages: int = 3
    launch_params: tuple = ()
    launch_pdl: bool = False

    def __post_init__(self):
        names = [n for n, _ in self.signature]
        const = {n for n, t in self.signature if t == "constexpr"}
        given = {n for n, _ in self.constexprs}
        if const != given:
            raise ValueError(f"{self.kernel}: constexprs {sorted(given)} != declared {sorted(const)}")
        for n in self.divisible16:
            if n not in names or n in const:
                raise ValueError(f"{self.kernel}: divisibility hint on unknown or constexpr arg {n}")
        for n in self.launch_params:
            if n not in given:
                raise ValueError(f"{self.kernel}: launch param {n} is not a constexpr")

    @property
    def runtime_args(self) -> tuple:
        """(name, type) of the parameters the launcher passes, in order."""
        return tuple((n, t) for n, t in self.signature if t != "constexpr")

    def jit_function(self):
        module, _, name = self.kernel.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class KernelGrid:
    """A family's variants, indexed by named axes; `make(point, arch)` builds one."""

    name: str
    axes: tuple  # ((axis_name, (value, ...)), ...)
    make: Callable[[Mapping[str, str], int], Optional[Variant]]
    doc: str = ""

    def points(self):
        names = [a for a, _ in self.axes]
        for values in itertools.product(*(v for _, v in self.axes)):
            yield dict(zip(names, values))

    def symbol(self, point: Mapping[str, str]) -> str:
        return "_".join([self.name] + [point[a] for a, _ in self.axes])
