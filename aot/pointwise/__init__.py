"""The pointwise generator: one declaration per op becomes kernels, variants and C++ glue.

A `PointwiseOp` names a scalar function of kernels/pointwise_math.py, its operand count, its
runtime scalar parameters, the dtypes it is compiled for and the ATen TensorIterator builder
whose promotion rules it follows. An `Overload` binds an aten overload (functional, in-place or
out=) to one op, or to one op per value of a string argument (div's rounding_mode).

From these the generator produces, with nothing written by hand per op:
  - the Triton source of every op's kernels (a contiguous 1-D kernel, 32- or 64-bit indexed,
    with 16-byte alignment hints, and strided kernels over up to 3 or 8 collapsed dims), as one
    module written to the build folder and imported from there (triton_source.py);
  - one KernelGrid per op: dtype x form (which operands are Python scalars) x layout (grids.py);
  - the C++ wrappers with the exact aten signatures (from torch's own schemas at build time),
    the gems:: schemas, the aten override list and the Meta functions, all of which call the
    one shared driver in csrc/ops/pointwise.cpp (cpp.py).

The declarations themselves are in declarations.py; calls.py holds the aten calls that reach each
op, with arguments where torch defines it (the tests' and the benchmark's cases).
"""

from aot.pointwise.cpp import cpp_sources, registrations
from aot.pointwise.declarations import Overload, PointwiseOp, check_declarations, kernel_name
from aot.pointwise.grids import grid
from aot.pointwise.triton_source import GENERATED_MODULE, kernel_source, load_module

__all__ = ["GENERATED_MODULE", "Overload", "PointwiseOp", "check_declarations", "cpp_sources", "grid",
           "kernel_name", "kernel_source", "load_module", "registrations"]
