"""Shared test helpers.

`interpreted(module)` loads a fresh copy of a kernels/ module with TRITON_INTERPRET=1, so its
@triton.jit kernels run on CPU tensors, while the normal import (used by the AOT compiler
tests) stays a JITFunction. Kernel modules are self-contained for this reason.
"""

import contextlib
import functools
import importlib.util
import os
import pathlib
import sys

import numpy
import pytest
import torch
import triton

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Triton 3.6's interpreter turns a runtime loop bound into an int with int() of a 1-element
# array, which NumPy 2.5 rejects (seen on the GPU box); CI runs triton 3.8 with NumPy 2.4.
_INTERPRETER_LOOPS_BROKEN = tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 7) and tuple(
    int(v) for v in numpy.__version__.split(".")[:2]) >= (2, 5)
runtime_loop_bounds = pytest.mark.skipif(_INTERPRETER_LOOPS_BROKEN, reason="triton<3.7 interpreter with numpy>=2.5")


def skip_without_interpreter_loops():
    if _INTERPRETER_LOOPS_BROKEN:
        pytest.skip("triton<3.7 interpreter with numpy>=2.5 cannot run runtime-bounded loops")


@functools.lru_cache(maxsize=None)
def interpreted(module: str):
    path = ROOT / (module.replace(".", "/") + ".py")
    # Triton imports gluon lazily on the first launch; while the interpreter has patched
    # triton.language, that import fails. Import it beforehand.
    importlib.import_module("triton.experimental.gluon")
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        spec = importlib.util.spec_from_file_location(f"_interpreted_{module.replace('.', '_')}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous
    return mod


def fallback_reader(gems, overloads):
    """Resets gems' fallback counts; returns a reader of those of `overloads` since then (each GPU
    family's `counts` fixture)."""
    gems.reset_fallback_counts()
    names = set(overloads)

    def read():
        return {k: v for k, v in gems.fallback_counts().items() if k[0] in names}

    return read


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


# Triton's interpreter cannot make extern calls: libdevice functions of an interpreted kernels/
# module are evaluated by torch in float64 and rounded once to the operand's type (a correctly
# rounded stand-in for libdevice's 1-2 ulp functions; the GPU suite checks the real ones). Its
# fma also rounds the product first; `libdevice_by_torch()` rounds it once (fma_f32).
_LIBDEVICE_REFERENCE = {
    "exp": torch.exp, "exp2": torch.exp2, "expm1": torch.expm1, "log": torch.log, "log1p": torch.log1p,
    "log2": torch.log2, "log10": torch.log10, "rsqrt": torch.rsqrt, "sin": torch.sin, "cos": torch.cos,
    "tan": torch.tan, "tanh": torch.tanh, "erf": torch.erf, "atan2": torch.atan2, "hypot": torch.hypot,
    "pow": torch.pow, "fast_log2": torch.log2,
    "fmod": torch.fmod, "trunc": torch.trunc, "rint": torch.round, "copysign": torch.copysign,
    "fmul_rn": torch.mul, "fast_fdividef": torch.div,  # the approximate division as the exact one
}  # fmt: skip


def _extern_elementwise(lib_name, lib_path, symbol, args, ret_type, is_pure):
    from triton.runtime import interpreter

    name = symbol.removeprefix("__nv_")
    if name not in _LIBDEVICE_REFERENCE:
        name = name[:-1]  # __nv_expf is the fp32 variant of __nv_exp
    values = [torch.from_numpy(numpy.array(a.data, dtype=numpy.float64)) for a in args]
    with numpy.errstate(over="ignore"):  # fp32 results beyond its range round to +-inf
        result = _LIBDEVICE_REFERENCE[name](*values).numpy().astype(args[0].data.dtype)
    return interpreter.TensorHandle(result, getattr(ret_type, "scalar", ret_type))  # block types come in too


def fma_f32(x, y, z):
    """fp32 fma(x, y, z) rounded once, as the GPU's fma.rn.f32, on NumPy float32 arrays: the product
    is exact in fp64; the fp64 sum is rounded to odd (its error found by TwoSum), which then rounds
    to fp32 as the exact sum would (fp64 has more than 24 + 2 bits)."""
    f64 = numpy.float64
    with numpy.errstate(over="ignore", invalid="ignore"):  # IEEE's inf and NaN are the point here
        prod = numpy.asarray(x, f64) * numpy.asarray(y, f64)
        addend = numpy.asarray(z, f64)
        total = prod + addend
        back = total - prod
        error = (prod - (total - back)) + (addend - back)
        even = (total.view(numpy.int64) & 1) == 0
        odd = numpy.nextafter(total, numpy.where(error > 0, numpy.inf, -numpy.inf))
        total = numpy.where(numpy.isfinite(total) & (error != 0) & even, odd, total)
        return total.astype(numpy.float32)


def _fused_fma(x, y, z):
    from triton.runtime import interpreter

    # fp32: rounded once (fma_f32); fp64 operands keep the unfused form (its rounding is far below
    # fp64's tolerance).
    if z.data.dtype == numpy.float32:
        return interpreter.TensorHandle(fma_f32(x.data, y.data, z.data), z.dtype.scalar)
    with numpy.errstate(over="ignore", invalid="ignore"):
        wide = x.data.astype(numpy.float64) * y.data.astype(numpy.float64) + z.data.astype(numpy.float64)
        return interpreter.TensorHandle(wide.astype(z.data.dtype), z.dtype.scalar)


class _InterpretedLibdevice:
    def __getattr__(self, name):
        from triton.language.extra.cuda import libdevice
        from triton.runtime import interpreter

        return functools.partial(getattr(libdevice, name), _semantic=interpreter.interpreter_semantic)


@functools.lru_cache(maxsize=None)
def interpreted_math():
    """kernels/pointwise_math.py under the interpreter with libdevice routed to torch; run its
    kernels inside `with libdevice_by_torch():`."""
    mod = interpreted("kernels.pointwise_math")
    mod.libdevice = _InterpretedLibdevice()
    return mod


@contextlib.contextmanager
def libdevice_by_torch():
    from unittest import mock

    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    with mock.patch.object(builder, "create_extern_elementwise", _extern_elementwise), \
            mock.patch.object(builder, "create_fma", _fused_fma):
        yield


def cuda_kernel_names(fn):
    """The names of the CUDA kernels (and memcpy / memset) that fn launches."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}
