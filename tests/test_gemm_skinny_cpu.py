"""mm_skinny_kernel (kernels/gemm_skinny.py) in interpreter mode against torch on the CPU: every
layout, ragged M / N / K, split-K sums, the bias epilogue; and the driver's split rule."""

import pytest
import torch

from aot import gemm_tuning
from conftest import interpreted, runtime_loop_bounds
from test_gemm_cpu import operand, reference

# Small tiles keep the interpreter fast; the math does not depend on the tile.
TILE = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}
SHAPES = [(1, 17, 45), (5, 40, 100), (16, 16, 16), (33, 50, 64), (3, 1, 1)]


def run_skinny(a, b, splits, bias=None, alpha=1.0, beta=0.0, precision="ieee"):
    """The kernel on A [M, K] @ B [K, N] as the driver launches it: grid (tiles, splits), the
    counters zeroed, C poisoned with NaN and a padded leading stride."""
    k = interpreted("kernels.gemm_skinny")
    M, K = a.shape
    N = b.shape[1]
    tiles = -(-M // TILE["BLOCK_M"]) * -(-N // TILE["BLOCK_N"])
    out = torch.full((M, N + 3), float("nan"), dtype=a.dtype)[:, :N]
    partial = torch.full((tiles * splits * TILE["BLOCK_M"] * TILE["BLOCK_N"],), float("nan"))
    counters = torch.zeros(tiles, dtype=torch.int32)
    a_row, b_row = a.stride(1) == 1, b.stride(1) == 1
    lead_a = a.stride(0) if a_row else a.stride(1)
    lead_b = b.stride(0) if b_row else b.stride(1)
    k.mm_skinny_kernel[(tiles, splits)](
        a, b, out, out if bias is None else bias, partial, counters, M, N, K, lead_a, lead_b, out.stride(0),
        0 if bias is None else bias.stride(0), alpha, beta, A_ROW=a_row, B_ROW=b_row,
        EPILOGUE=0 if bias is None else 1, INPUT_PRECISION=precision, SPLIT_K=0, **TILE)
    if splits > 1:
        assert (counters == splits).all()  # every split of every tile arrived exactly once
    return out


@pytest.mark.parametrize("a_layout", ["row", "col"])
@pytest.mark.parametrize("b_layout", ["row", "col"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@runtime_loop_bounds
def test_skinny_kernel_math(a_layout, b_layout, dtype, seeded):
    for M, N, K in SHAPES:
        chunks = -(-K // TILE["BLOCK_K"])
        for splits in sorted({1, 2, gemm_tuning.skinny_splits(1, chunks, 4), chunks}):
            if splits > chunks:
                continue
            a = operand(M, K, a_layout, dtype, seeded, lead_pad=3)
            b = operand(K, N, b_layout, dtype, seeded, lead_pad=5)
            got = run_skinny(a, b, splits)
            torch.testing.assert_close(got, reference(a, b), rtol=2e-3, atol=1e-3 * K,
                                       msg=f"{M}x{N}x{K} splits {splits}")


@pytest.mark.parametrize("splits", [1, 3])
@runtime_loop_bounds
def test_skinny_kernel_bias_epilogue(splits, seeded):
    M, N, K = 7, 40, 48
    a = operand(M, K, "row", torch.float32, seeded)
    b = operand(K, N, "col", torch.float32, seeded)
    bias = torch.randn(2 * N, generator=seeded)[::2]  # strided
    got = run_skinny(a, b, splits, bias, alpha=0.5, beta=-2.0)
    torch.testing.assert_close(got, torch.addmm(bias, a, b, beta=-2.0, alpha=0.5), rtol=1e-4, atol=1e-4 * K)
    # beta == 0 never reads the bias: NaN there does not propagate.
    nan_bias = torch.full((N,), float("nan"))
    got = run_skinny(a, b, splits, nan_bias, alpha=3.0, beta=0.0)
    torch.testing.assert_close(got, 3.0 * (a @ b), rtol=1e-4, atol=1e-4 * K)


def test_skinny_splits_cover_k_with_nonempty_slices():
    """The split rule (the driver's and the tuner's): about one program per SM, at most one split
    per K chunk, and every split gets at least one chunk of the kernel's k_split."""
    for tiles in (1, 3, 8, 64, 131, 132, 500):
        for chunks in (1, 2, 5, 16, 33, 448):
            for sms in (1, 108, 132):
                splits = gemm_tuning.skinny_splits(tiles, chunks, sms)
                assert 1 <= splits <= chunks
                if tiles >= sms:
                    assert splits == 1
                per = -(-chunks // splits)  # the kernel's chunks per split
                assert (splits - 1) * per < chunks, (tiles, chunks, sms, splits)
                assert tiles * splits <= max(sms, tiles) * 2


def test_generated_split_rule_is_the_python_one(tmp_path):
    """The driver's skinny_splits (generated into gemm_tuning.h), compiled, splits as the tuner does."""
    import shutil
    import subprocess

    from aot import family_gemm as fam

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "gemm_tuning.h").write_text(fam.generated_sources()[fam.TUNING_HEADER])
    cases = [(t, c, s) for t in (1, 2, 7, 64, 132, 1000) for c in (1, 3, 16, 17, 448) for s in (1, 108, 132)]
    calls = "".join(f'  std::printf("%lld\\n", static_cast<long long>(skinny_splits({t}, {c}, {s})));\n'
                    for t, c, s in cases)
    (tmp_path / "main.cpp").write_text(
        f'#include <cstdio>\n#include "gemm_tuning.h"\nusing namespace gems::gemm_tuning;\nint main() {{\n{calls}}}\n')
    subprocess.run([cxx, "-O1", "-o", str(tmp_path / "splits"), str(tmp_path / "main.cpp")], check=True)
    got = subprocess.run([str(tmp_path / "splits")], check=True, capture_output=True, text=True).stdout.split()
    assert got == [str(gemm_tuning.skinny_splits(t, c, s)) for t, c, s in cases]


@pytest.mark.parametrize("arch", [90, 100])
@pytest.mark.parametrize("epilogue", ["none", "bias"])
def test_skinny_variant_compiles(arch, epilogue):
    """A skinny table configuration compiles ahead of time for both TMA targets, with the TMA
    kernels' runtime arguments and SPLIT_K 0 as its launch param; batched, its buckets run
    mm_tma_kernel at 64 rows."""
    from aot import compiler
    from aot import family_gemm as fam

    cfg = gemm_tuning.SKINNY_CANDIDATES[0]
    point = dict(dtype="bf16", a_layout="row", b_layout="col", epilogue=epilogue, config="c0")
    v = fam.tma_variant(cfg, point)
    assert v.kernel == fam.SKINNY_KERNEL and dict(v.constexprs)["SPLIT_K"] == 0 and not v.launch_pdl
    assert [n for n, t in v.signature if t != "constexpr"] == [
        n for n, t in fam.tma_variant(gemm_tuning.SM90_CANDIDATES[0], point).signature if t != "constexpr"]
    cubin, meta = compiler.compile_variant(v, arch)[:2]
    assert len(cubin) > 1000 and meta["shared"] > 0
    batched = fam.tma_variant(cfg, dict(point, epilogue="none" if epilogue == "none" else "full"), batched=True)
    assert batched.kernel == fam.TMA_KERNEL and dict(batched.constexprs)["BLOCK_M"] == 64
