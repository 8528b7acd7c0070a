"""Shared by the GPU suites of the gemm family (tests/test_gemm_gpu.py: mm and addmm;
tests/test_bmm_gpu.py: bmm and baddbmm): tolerances, operands, checks against float64, and the
sm_90 tuning table's lookups."""

import functools

import pytest
import torch

import gems_aot
from aot import gemm_tuning

FLOATS = [torch.float32, torch.float16, torch.bfloat16]
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
# tf32 keeps 10 mantissa bits: each product is off by up to ~2**-10 relative, so the error of a
# K-long dot grows like 1e-3 * sqrt(K) * |a||b|. rtol 2e-3 (4 tf32 ulps) and atol 1e-3 * K hold
# that with margin (torch's own tf32 tests use a precision of 5e-3).
TF32_RTOL, TF32_ATOL_PER_K = 2e-3, 1e-3
SHAPES = [(1, 1, 1), (0, 5, 7), (5, 0, 7), (5, 7, 0), (33, 17, 45), (128, 256, 64), (1024, 1024, 1024)]
# Operand layouts: n = as allocated (row-major), t = the transpose of a row-major tensor.
LAYOUTS = ["nn", "nt", "tn", "tt"]


@pytest.fixture(autouse=True)
def clean_state():
    gems_aot.reset_fallback_counts()
    tf32, precision = torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    routing = torch.ops.gems._set_gemm_routing(False)
    yield
    torch.ops.gems._set_gemm_routing(routing)
    torch.set_float32_matmul_precision(precision)
    torch.backends.cuda.matmul.allow_tf32 = tf32


def rand(rows, cols, dtype, transposed=False):
    if transposed:
        return torch.randn(cols, rows, device="cuda").to(dtype).t()
    return torch.randn(rows, cols, device="cuda").to(dtype)


def operands(shape, dtype, layout):
    M, N, K = shape
    return rand(M, K, dtype, layout[0] == "t"), rand(K, N, dtype, layout[1] == "t")


def poison_next_alloc(shape, dtype):
    """Frees a NaN-filled block of the output's size: the caching allocator hands it out next, so
    an element the kernel does not write fails the comparison."""
    torch.full(shape, float("nan"), device="cuda", dtype=dtype)


def check(res, a, b, tf32=False):
    """Values against the float64 reference; dtype, shape, strides and device as torch.mm's."""
    M, K = a.shape
    N = b.shape[1]
    assert res.dtype == a.dtype and res.shape == (M, N) and res.device == a.device
    assert res.is_contiguous()
    with gems_aot.use_gems(include=[]):  # the float64 reference is ATen's, whatever gems' state
        ref = (a.double() @ b.double()).to(res.dtype)
    rtol = TF32_RTOL if tf32 else RTOL[res.dtype]
    atol = (TF32_ATOL_PER_K if tf32 else 1e-4) * max(K, 1)
    torch.testing.assert_close(res, ref, rtol=rtol, atol=atol, equal_nan=True)


def aten_error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any error type torch raises is the expected one
        return type(e), str(e)
    return None


def no_fallbacks():
    assert gems_aot.fallback_counts() == {}


def gems_and_torch_mm(a, b):
    """torch.mm through the override and torch.ops.gems.mm: the same kernel, bitwise equal."""
    M, N = a.shape[0], b.shape[1]
    poison_next_alloc((M, N), a.dtype)
    with gems_aot.use_gems(include=["mm"]):
        res = torch.mm(a, b)
    poison_next_alloc((M, N), a.dtype)
    direct = torch.ops.gems.mm(a, b)
    assert torch.equal(res, direct)
    return res


hopper = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0),
                            reason="the tuned TMA kernels run on sm_90a (and untuned on sm_100a)")
# The table picks, per shape bucket, a configuration of either TMA kernel.
# The kernels a tuning table configuration names (aot/gemm_tuning.py TmaConfig.kernel).
TABLE_KERNELS = {"tl": "mm_tma_kernel", "wgmma": "mm_wgmma_kernel", "skinny": "mm_skinny_kernel"}


def ran_table_kernel(names):
    """Whether one of the table's kernels ran (rather than the pointer kernel)."""
    return any(k in n for n in names for k in TABLE_KERNELS.values())


@functools.lru_cache(maxsize=None)
def dense_sm90(klass):
    return gemm_tuning.dense_table(90, klass)


def table_config(klass, layout, m, n, k):
    """The configuration index the build's dense table gives this problem on sm_90a."""
    entry = dense_sm90(klass)[gemm_tuning.index(gemm_tuning.LAYOUTS.index(layout), m, n, k)]
    return entry if entry >= 0 else -entry - 1


def sm90_table():
    table = gemm_tuning.load_table(90)
    if table is None:
        pytest.skip("no sm_90 tuning table")
    return table


def smallest_case_per_config(table, klass):
    """For each configuration of a class of the table, its smallest measured case (m, n, k, layout)
    whose bucket the dense table gives that configuration (a bucket holding two measured cases
    takes one of their choices: a configuration may be reachable from none of its own cases)."""
    best = {}
    for r in (r for r in table["rows"] if r["class"] == klass):
        if table_config(klass, r["layout"], r["m"], r["n"], r["k"]) != r["config"]:
            continue
        key = (r["m"] * r["n"] * r["k"], r["m"], r["n"], r["k"], r["layout"])
        best[r["config"]] = min(best.get(r["config"], key), key)
    return {c: v[1:] for c, v in sorted(best.items())}
