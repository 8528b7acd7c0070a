"""The gemm kernels in interpreter mode against torch on the CPU, their declarations and tuning
tables, the AOT compile of sample variants per target, and the Meta functions."""

import re

import pytest
import torch

from aot import compiler, gemm_tuning
from aot import family_gemm as fam
from conftest import interpreted, runtime_loop_bounds


GRID = fam.GRIDS[0]
ARCHS = (80, 90, 100)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Small tiles keep the interpreter fast; GROUP_M 2 makes the grouped ordering wrap within the
# shapes below. The math does not depend on the tile.
TILE = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2}
# TMA needs 16 bytes in a block's last dimension: a quarter of BLOCK_N (SUBTILE 4) is 8 fp16.
TMA_TILE = {**TILE, "BLOCK_N": 32}
SHAPES = [(33, 17, 45), (1, 1, 1), (80, 50, 16), (16, 16, 16)]


def operand(rows, cols, layout, dtype, gen, lead_pad=0, batch=None, batch_pad=0):
    """A [rows, cols] matrix, row- or col-major, with lead_pad extra elements per leading stride;
    with batch, [batch, rows, cols] of them with batch_pad extra elements between matrices."""
    if batch is not None:
        inner = (rows, cols + lead_pad) if layout == "row" else (cols, rows + lead_pad)
        flat = torch.randn(batch * (inner[0] * inner[1] + batch_pad), generator=gen).to(dtype)
        full = flat.as_strided((batch, *inner), (inner[0] * inner[1] + batch_pad, inner[1], 1))
        return full[:, :, :cols] if layout == "row" else full[:, :, :rows].transpose(1, 2)
    if layout == "row":
        return torch.randn(rows, cols + lead_pad, generator=gen).to(dtype)[:, :cols]
    return torch.randn(cols, rows + lead_pad, generator=gen).to(dtype)[:, :rows].t()


def reference(a, b, dtype=None):
    return (a.double() @ b.double()).to(dtype or a.dtype)


def run_interpreted(a, b, precision="ieee"):
    """mm_kernel on [M, K] @ [K, N], or batched (grid axis 1 = the batch) on [B, M, K] @ [B, K, N]."""
    k = interpreted("kernels.gemm")
    batched = a.dim() == 3
    a3, b3 = (a, b) if batched else (a[None], b[None])
    batch, M, K = a3.shape
    N = b3.shape[2]
    c = torch.full((batch, M, N), float("nan"), dtype=a.dtype)  # poisoned: every element must be written
    grid = (-(-M // TILE["BLOCK_M"]) * -(-N // TILE["BLOCK_N"]), batch)
    k.mm_kernel[grid](a3, b3, c, M, N, K, a3.stride(1), a3.stride(2), b3.stride(1), b3.stride(2), c.stride(1),
                      c.stride(2), a3.stride(0), b3.stride(0), c.stride(0), INPUT_PRECISION=precision, BATCHED=batched,
                      **TILE)
    return c if batched else c[0]


@pytest.mark.parametrize("dtype_name", ["fp32", "fp16"])
@pytest.mark.parametrize("a_layout", ["row", "col"])
@pytest.mark.parametrize("b_layout", ["row", "col"])
@runtime_loop_bounds
def test_mm_kernel_math(dtype_name, a_layout, b_layout, seeded):
    dtype = DTYPES[dtype_name]
    for M, N, K in SHAPES:
        a = operand(M, K, a_layout, dtype, seeded, lead_pad=3)
        b = operand(K, N, b_layout, dtype, seeded, lead_pad=5)
        c = run_interpreted(a, b)
        rtol = 1.3e-6 if dtype == torch.float32 else 1e-3
        torch.testing.assert_close(c, reference(a, b), rtol=rtol, atol=1e-4 * K, msg=f"{M}x{N}x{K}")


@pytest.mark.parametrize("dtype_name", ["fp32", "fp16"])
@pytest.mark.parametrize("a_layout", ["row", "col"])
@pytest.mark.parametrize("b_layout", ["row", "col"])
@runtime_loop_bounds
def test_bmm_kernel_math(dtype_name, a_layout, b_layout, seeded):
    """The batch axis: each program's operands and output move by their batch strides (odd ones
    here, and 0 for an operand expanded over the batch)."""
    dtype = DTYPES[dtype_name]
    rtol = 1.3e-6 if dtype == torch.float32 else 1e-3
    for batch, (M, N, K) in ((3, (33, 17, 45)), (1, (80, 50, 16)), (4, (1, 1, 1))):
        a = operand(M, K, a_layout, dtype, seeded, lead_pad=3, batch=batch, batch_pad=7)
        b = operand(K, N, b_layout, dtype, seeded, lead_pad=5, batch=batch, batch_pad=1)
        torch.testing.assert_close(run_interpreted(a, b), reference(a, b), rtol=rtol, atol=1e-4 * K,
                                   msg=f"{batch}x{M}x{N}x{K}")
        shared_b = b[:1].expand(batch, K, N)
        torch.testing.assert_close(run_interpreted(a, shared_b), reference(a, shared_b), rtol=rtol, atol=1e-4 * K)


def tma_batch(t, batch):
    """An operand's batch extent and stride as csrc/ops/gemm.cpp descriptor_batch gives them: a
    batch of one, or an operand expanded over the batch (stride 0), is described with extent 1
    and the dense stride rounded up to 16 elements, so that no descriptor stride is 0."""
    if batch == 1 or t.stride(0) == 0:
        row = t.stride(2) == 1
        lead = t.stride(1) if row else t.stride(2)
        return 1, -(-(t.shape[1] if row else t.shape[2]) * lead // 16) * 16
    return batch, t.stride(0)


def run_tma_interpreted(a, b, bias=None, alpha=1.0, beta=0.0, subtile=1, split_k=1, programs=3, tile=TMA_TILE,
                        out=None):
    """mm_tma_kernel over a persistent grid of `programs` programs (fewer than the work items, so
    each walks several), as the driver launches it. [M, K] @ [K, N] runs the mm path (a bias row
    epilogue with bias); [B, M, K] @ [B, K, N] the batched one (the full epilogue with bias, a
    tensor broadcast to [B, M, N]). C is poisoned, with padded leading and batch strides, unless
    out is given (e.g. bias itself, for baddbmm_)."""
    k = interpreted("kernels.gemm")
    batched = a.dim() == 3
    a3, b3 = (a, b) if batched else (a[None], b[None])
    batch, M, K = a3.shape
    N = b3.shape[2]
    if out is None:
        lead_c = -(-N // 8) * 8 + 8
        out = torch.full((batch, M + 1, lead_c), float("nan"), dtype=a.dtype)[:, :M, :N]
        out = out if batched else out[0]
    c = out if batched else out[None]
    a_row, b_row = a3.stride(2) == 1, b3.stride(2) == 1
    lead = lambda t, row: t.stride(1) if row else t.stride(2)  # noqa: E731
    tiles = -(-M // tile["BLOCK_M"]) * -(-N // tile["BLOCK_N"])
    partial = torch.full((batch * tiles * split_k * tile["BLOCK_M"] * tile["BLOCK_N"],), float("nan"))
    counters = torch.zeros(batch * tiles, dtype=torch.int32)
    (batch_a, stride_a), (batch_b, stride_b) = tma_batch(a3, batch), tma_batch(b3, batch)
    stride_c = c.stride(0) if batch > 1 else tma_batch(c, 1)[1]
    if bias is None:
        epilogue, bias_strides, bias = 0, (0, 0, 0), c
    elif batched:
        epilogue, bias_strides = 2, bias.expand(batch, M, N).stride()
    else:
        epilogue, bias_strides = 1, (0, 0, bias.stride(0))
    k.mm_tma_kernel[(min(programs, batch * tiles * split_k),)](
        a3, b3, c, bias, partial, counters, M, N, K, lead(a3, a_row), lead(b3, b_row), c.stride(1), bias_strides[2],
        alpha, beta, batch, batch_a, batch_b, stride_a, stride_b, stride_c, bias_strides[1], bias_strides[0], a_row,
        b_row, epilogue, SUBTILE=subtile, SPLIT_K=split_k, WARP_SPECIALIZE=False, INPUT_PRECISION="ieee", PDL=False,
        BATCHED=batched, **tile)
    if split_k > 1:
        assert (counters == split_k).all()  # every split of every tile arrived exactly once
    return out


TMA_SHAPES = [(33, 17, 45), (1, 1, 1), (80, 50, 16), (70, 40, 100)]


def tma_operands(M, N, K, a_layout, b_layout, gen, batch=None):
    """fp16 operands whose leading (and batch) strides are 16-byte multiples, padded past the size."""
    pad = lambda inner: 8 - inner % 8  # noqa: E731
    a = operand(M, K, a_layout, torch.float16, gen, pad(K if a_layout == "row" else M), batch, batch_pad=8)
    b = operand(K, N, b_layout, torch.float16, gen, pad(N if b_layout == "row" else K), batch, batch_pad=16)
    return a, b


@pytest.mark.parametrize("a_layout", ["row", "col"])
@pytest.mark.parametrize("b_layout", ["row", "col"])
@pytest.mark.parametrize("subtile,split_k", [(1, 1), (2, 1), (4, 1), (1, 3)])
@runtime_loop_bounds
def test_mm_tma_kernel_math(a_layout, b_layout, subtile, split_k, seeded):
    """TMA clips ragged edges (no masks in the kernel); leading strides are 16-byte multiples.
    Epilogue slices and split-K partial sums give the same product."""
    for M, N, K in TMA_SHAPES:
        a, b = tma_operands(M, N, K, a_layout, b_layout, seeded)
        got = run_tma_interpreted(a, b, subtile=subtile, split_k=split_k)
        torch.testing.assert_close(got, reference(a, b), rtol=1e-3, atol=1e-4 * K, msg=f"{M}x{N}x{K}")


@pytest.mark.parametrize("subtile,split_k", [(1, 1), (4, 1), (1, 2)])
@runtime_loop_bounds
def test_mm_tma_kernel_bias_epilogue(subtile, split_k, seeded):
    """addmm's epilogue: alpha * A @ B + beta * bias[n], with a strided and a broadcast bias;
    beta = 0 ignores the bias, NaN included."""
    M, N, K = 37, 45, 29
    a = operand(M, K, "row", torch.float16, seeded, lead_pad=8 - K % 8)
    b = operand(K, N, "col", torch.float16, seeded, lead_pad=8 - K % 8)
    product = a.double() @ b.double()
    strided = torch.randn(2 * N, generator=seeded).to(torch.float16)[::2]
    for bias, alpha, beta in ((strided, 0.5, -2.0), (strided[:1].expand(N), 1.0, 1.0)):
        ref = (alpha * product + beta * bias.double()).to(torch.float16)
        got = run_tma_interpreted(a, b, bias, alpha, beta, subtile, split_k)
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-4 * K * 4)
    nan_bias = torch.full((N,), float("nan"), dtype=torch.float16)
    got = run_tma_interpreted(a, b, nan_bias, 3.0, 0.0, subtile, split_k)
    torch.testing.assert_close(got, (3.0 * product).to(torch.float16), rtol=1e-3, atol=1e-4 * K * 4)


# Eight epilogue slices (the full epilogue's on 128x256 tiles) need 16 bytes per slice: 8 fp16.
WIDE_TMA_TILE = {**TMA_TILE, "BLOCK_N": 64}
BATCHED_SHAPES = [(3, (33, 17, 45)), (1, (70, 40, 100)), (5, (1, 1, 1)), (2, (80, 50, 16))]


@pytest.mark.parametrize("a_layout", ["row", "col"])
@pytest.mark.parametrize("b_layout", ["row", "col"])
@pytest.mark.parametrize("subtile,split_k", [(1, 1), (2, 1), (4, 1), (8, 1), (1, 3), (2, 2)])
@runtime_loop_bounds
def test_bmm_tma_kernel_math(a_layout, b_layout, subtile, split_k, seeded):
    """The batched path: rank-3 descriptors, work items walking (batch, tile, K slice), batches of
    one and more, uneven sizes; an operand expanded over the batch is read at batch 0."""
    tile = WIDE_TMA_TILE if subtile == 8 else TMA_TILE
    for batch, (M, N, K) in BATCHED_SHAPES:
        a, b = tma_operands(M, N, K, a_layout, b_layout, seeded, batch)
        got = run_tma_interpreted(a, b, subtile=subtile, split_k=split_k, tile=tile, programs=4)
        torch.testing.assert_close(got, reference(a, b), rtol=1e-3, atol=1e-4 * K, msg=f"{batch}x{M}x{N}x{K}")
        if batch > 1:
            for shared_a, shared_b in ((a[:1].expand_as(a), b), (a, b[1:2].expand_as(b))):
                got = run_tma_interpreted(shared_a, shared_b, subtile=subtile, split_k=split_k, tile=tile)
                torch.testing.assert_close(got, reference(shared_a, shared_b), rtol=1e-3, atol=1e-4 * K)


def self_forms(batch, M, N, gen):
    """baddbmm's self in the forms torch broadcasts: full (padded strides), transposed, per-batch
    rows, one matrix for every batch, a bias row, a column, a scalar."""
    full = torch.randn(batch, M + 2, N + 3, generator=gen).to(torch.float16)[:, 1:M + 1, 2:N + 2]
    return {
        "full": full,
        "transposed": torch.randn(batch, N, M, generator=gen).to(torch.float16).transpose(1, 2),
        "batch_rows": torch.randn(batch, 1, N, generator=gen).to(torch.float16),
        "matrix": torch.randn(M, N, generator=gen).to(torch.float16),
        "row": torch.randn(2 * N, generator=gen).to(torch.float16)[::2],
        "column": torch.randn(M, 1, generator=gen).to(torch.float16),
        "scalar": torch.randn(1, generator=gen).to(torch.float16),
    }


@pytest.mark.parametrize("subtile,split_k", [(1, 1), (2, 1), (8, 1), (1, 2), (2, 2)])
@runtime_loop_bounds
def test_bmm_tma_kernel_full_epilogue(subtile, split_k, seeded):
    """baddbmm's epilogue: alpha * A @ B + beta * self with self read through its broadcast
    strides; beta = 0 ignores self, NaN included; self may be the output itself (baddbmm_)."""
    tile = WIDE_TMA_TILE if subtile == 8 else TMA_TILE
    batch, M, N, K = 3, 37, 45, 29
    a, b = tma_operands(M, N, K, "row", "col", seeded, batch)
    product = a.double() @ b.double()
    for name, self in self_forms(batch, M, N, seeded).items():
        for alpha, beta in ((0.5, -2.0), (1.0, 1.0)):
            ref = (alpha * product + beta * self.double()).to(torch.float16)
            got = run_tma_interpreted(a, b, self, alpha, beta, subtile, split_k, tile=tile)
            torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-4 * K * 4, msg=name)
    nan_self = torch.full((batch, M, N), float("nan"), dtype=torch.float16)
    got = run_tma_interpreted(a, b, nan_self, 3.0, 0.0, subtile, split_k, tile=tile)
    torch.testing.assert_close(got, (3.0 * product).to(torch.float16), rtol=1e-3, atol=1e-4 * K * 4)
    # In place: the epilogue reads each element of self before its tile overwrites it.
    in_place = torch.randn(batch, M, 56, generator=seeded).to(torch.float16)[:, :, :N]  # 16-byte rows
    ref = (0.5 * product - 2.0 * in_place.double()).to(torch.float16)
    run_tma_interpreted(a, b, in_place, 0.5, -2.0, subtile, split_k, tile=tile, out=in_place)
    torch.testing.assert_close(in_place, ref, rtol=1e-3, atol=1e-4 * K * 4)


@pytest.mark.skip(reason="triton 3.8's interpreter multiplies the raw bit patterns of bf16 tiles in tl.dot "
                         "(create_dot converts only fp8); bf16 is checked on the GPU")
def test_mm_kernel_math_bf16(seeded):
    a, b = operand(33, 45, "row", torch.bfloat16, seeded), operand(45, 17, "col", torch.bfloat16, seeded)
    torch.testing.assert_close(run_interpreted(a, b), reference(a, b), rtol=1.6e-2, atol=1e-4 * 45)


@runtime_loop_bounds
def test_mm_kernel_zero_strides(seeded):
    """A stride of 0 (an expanded operand) is a valid leading stride."""
    a = torch.randn(1, 24, generator=seeded).expand(20, 24)
    b = torch.randn(24, 1, generator=seeded).expand(24, 18)
    torch.testing.assert_close(run_interpreted(a, b), a @ b, rtol=1.3e-6, atol=1e-4 * 24)


# ---- declarations -----------------------------------------------------------------------------


POINTER_GRIDS = [fam.GRIDS[0], fam.GRIDS[2]]  # mm, bmm
TMA_GRID, BMM_TMA_GRID = fam.GRIDS[1], fam.GRIDS[3]
BATCH_STRIDES = ("stride_batch_a", "stride_batch_b", "stride_batch_c")


def test_grids():
    assert [g.name for g in fam.GRIDS] == ["mm", "mm_tma", "bmm", "bmm_tma"]
    assert GRID is fam.GRIDS[0] and POINTER_GRIDS[0].axes == POINTER_GRIDS[1].axes
    assert dict(TMA_GRID.axes)["epilogue"] == ("none", "bias") and dict(BMM_TMA_GRID.axes)["epilogue"] == (
        "none", "full")


def covered_points(grid):
    return [p for p in grid.points() if not (p["precision"] == "tf32" and p["dtype"] != "fp32")]


def served_by_tma(point, arch):
    """The pointer kernel's points that mm_tma serves instead (and that are not compiled)."""
    tma_dtype = point["dtype"] in ("fp16", "bf16") or point["precision"] == "tf32"
    return arch in fam.TMA_ARCHS and tma_dtype and point["align"] == "aligned"


@pytest.mark.parametrize("grid", POINTER_GRIDS, ids=lambda g: g.name)
def test_every_point_is_declared_on_every_target(grid):
    for p in grid.points():
        variants = {arch: grid.make(p, arch) for arch in ARCHS}
        if p["precision"] == "tf32" and p["dtype"] != "fp32":
            assert all(v is None for v in variants.values()), p
            continue
        for arch, v in variants.items():
            if served_by_tma(p, arch):
                assert v is None, (p, arch)
                continue
            assert v is not None, (p, arch)
            assert [n for n, _ in v.signature] == list(v.jit_function().arg_names), (p, arch)
            assert v.kernel == fam.KERNEL and v.launch_params == ("BLOCK_M", "BLOCK_N") and not v.launch_pdl
            assert dict(v.constexprs)["INPUT_PRECISION"] == p["precision"]
            assert dict(v.constexprs)["BATCHED"] is (grid.name == "bmm")
        # The C++ driver passes one runtime argument list per point, whatever the target.
        assert len({tuple(t for _, t in v.runtime_args) for v in variants.values() if v}) == 1, p


@pytest.mark.parametrize("point", covered_points(GRID), ids=GRID.symbol)
@pytest.mark.parametrize("grid", POINTER_GRIDS, ids=lambda g: g.name)
def test_runtime_arguments_are_what_the_driver_passes(grid, point):
    """csrc/ops/gemm.cpp launch_plan pushes a, b, c, M, N, K and the three leading strides, in that
    order, and batched the three batch strides (int64); mm's batch strides are constexpr 0."""
    v = grid.make(point, 80)
    batched = grid.name == "bmm"
    a_lead = "stride_am" if point["a_layout"] == "row" else "stride_ak"
    b_lead = "stride_bk" if point["b_layout"] == "row" else "stride_bn"
    ptr = fam.ptr(point["dtype"])
    assert v.runtime_args == (("a", ptr), ("b", ptr), ("c", ptr), ("M", "i32"), ("N", "i32"), ("K", "i32"),
                              (a_lead, "i32"), (b_lead, "i32"), ("stride_cm", "i32")) + (
        tuple((n, "i64") for n in BATCH_STRIDES) if batched else ())
    constexprs = dict(v.constexprs)
    unit = {n for n in constexprs if n.startswith("stride_") and n not in BATCH_STRIDES}
    assert unit == {"stride_am", "stride_ak", "stride_bk", "stride_bn", "stride_cm", "stride_cn"} - {
        a_lead, b_lead, "stride_cm"}
    assert all(constexprs[n] == 1 for n in unit)
    assert all(constexprs[n] == 0 for n in BATCH_STRIDES) if not batched else not set(BATCH_STRIDES) & set(constexprs)
    if point["align"] == "aligned":
        expected = {"a", "b", "c", "N", "K", a_lead, b_lead, "stride_cm"} | (
            set() if point["a_layout"] == "row" else {"M"}) | (set(BATCH_STRIDES) if batched else set())
        assert set(v.divisible16) == expected
    else:
        assert v.divisible16 == ()


@pytest.mark.parametrize("grid", [TMA_GRID, BMM_TMA_GRID], ids=lambda g: g.name)
def test_tma_grid_per_target(grid):
    """No TMA kernel on sm_80; on sm_90a exactly the tuning table's configurations; on sm_100a
    the default one. The full epilogue slices its tiles finer (at most 4096 elements a slice)."""
    for arch in (80, 90, 100):
        for p in grid.points():
            v = grid.make(p, arch)
            klass = "tf32" if p["dtype"] == "fp32" else "16bit"
            configs = () if arch == 80 else gemm_tuning.configs_for(arch, klass)
            if arch == 100:
                assert configs == (gemm_tuning.DEFAULT_CONFIG[100][klass],)
            index = int(p["config"][1:])
            if index >= len(configs):
                assert v is None, (arch, p)
                continue
            cfg = configs[index]
            if cfg.kernel == "wgmma" and p["dtype"] == "fp32":
                assert v is None, (arch, p)  # the Gluon kernel serves 16-bit operands only
                continue
            c = dict(v.constexprs)
            assert (v.num_warps, v.num_stages) == (cfg.num_warps, cfg.num_stages)
            assert (c["A_ROW"], c["B_ROW"]) == (p["a_layout"] == "row", p["b_layout"] == "row")
            assert c["EPILOGUE"] == fam.EPILOGUES.index(p["epilogue"])
            assert v.launch_params == ("BLOCK_M", "BLOCK_N", "SPLIT_K", "BLOCK_K")
            if cfg.kernel == "skinny" and grid.name == "mm_tma":
                assert v.kernel == fam.SKINNY_KERNEL and c["SPLIT_K"] == 0 and not v.launch_pdl
                assert (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"]) == (cfg.block_m, cfg.block_n, cfg.block_k)
                continue
            if cfg.kernel == "skinny":  # a batched problem runs the tile in mm_tma_kernel, at 64 rows
                cfg = gemm_tuning.batched_tile(cfg)
            assert (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"], c["GROUP_M"]) == (
                cfg.block_m, cfg.block_n, cfg.block_k, cfg.group_m)
            if cfg.kernel == "wgmma" and grid.name == "mm_tma":
                assert v.kernel == fam.WGMMA_KERNEL and c["NUM_BUFFERS"] == cfg.num_stages and not v.launch_pdl
                assert c["SPLIT_K"] == 1
                continue
            # mm_tma_kernel, also for a Gluon configuration of a batched problem (same tile).
            subtile = cfg.subtile
            if p["epilogue"] == "full":
                subtile = max(cfg.subtile, cfg.block_m * cfg.block_n // 4096)
                assert c["BLOCK_M"] * c["BLOCK_N"] // c["SUBTILE"] <= 4096 and c["SUBTILE"] in (1, 2, 4, 8)
            assert v.kernel == fam.TMA_KERNEL
            assert (c["SUBTILE"], c["SPLIT_K"], c["WARP_SPECIALIZE"]) == (subtile, cfg.split_k, cfg.warp_specialize)
            assert c["PDL"] is True and v.launch_pdl and c["INPUT_PRECISION"] == "tf32"
            assert c["BATCHED"] is (grid.name == "bmm_tma")


TMA_ARGUMENTS = (("M", "i32"), ("N", "i32"), ("K", "i32"), ("lead_a", "i32"), ("lead_b", "i32"), ("lead_c", "i32"),
                 ("bias_stride", "i32"), ("alpha", "fp32"), ("beta", "fp32"))
TMA_BATCH_ARGUMENTS = (("batch", "i32"), ("batch_a", "i32"), ("batch_b", "i32"), ("stride_batch_a", "i64"),
                       ("stride_batch_b", "i64"), ("stride_batch_c", "i64"), ("bias_stride_m", "i32"),
                       ("bias_stride_batch", "i64"))


@pytest.mark.parametrize("point", [p for p in TMA_GRID.points() if p["a_layout"] == "row" and p["config"] == "c0"],
                         ids=TMA_GRID.symbol)
def test_tma_variant_arguments(point):
    """csrc/ops/gemm.cpp launch_plan pushes these, in this order; the batch arguments are the mm
    variants' constexprs (batch 1, strides 0), the batched variants' runtime arguments."""
    ptr = fam.ptr(point["dtype"])
    pointers = (("a", ptr), ("b", ptr), ("c", ptr), ("bias", ptr), ("partial", "*fp32"), ("counters", "*i32"))
    v = TMA_GRID.make(point, 90)
    assert [n for n, _ in v.signature] == list(v.jit_function().arg_names)
    assert v.runtime_args == pointers + TMA_ARGUMENTS
    constexprs = dict(v.constexprs)
    assert [constexprs[n] for n, _ in TMA_BATCH_ARGUMENTS] == [1, 1, 1, 0, 0, 0, 0, 0] and not constexprs["BATCHED"]
    # TMA's requirement on the bases; the leading strides need 16 bytes, not 16 elements.
    assert set(v.divisible16) == {"a", "b", "c"}
    batched = BMM_TMA_GRID.make(dict(point, epilogue="full" if point["epilogue"] == "bias" else "none"), 90)
    assert [n for n, _ in batched.signature] == list(batched.jit_function().arg_names)
    assert batched.runtime_args == pointers + TMA_ARGUMENTS + TMA_BATCH_ARGUMENTS
    assert dict(batched.constexprs)["BATCHED"] and set(batched.divisible16) == {"a", "b", "c"}


def test_sm90_table_is_consistent():
    """The committed table: configurations among the tuner's candidates, valid indices, and the
    routing rule applied as documented."""
    table = gemm_tuning.load_table(90)
    if table is None:
        pytest.skip("no sm_90 table committed")
    for klass, entry in table["classes"].items():
        names = {c.name for c in gemm_tuning.CANDIDATES[klass]}
        configs = [gemm_tuning.TmaConfig.from_list(c) for c in entry["configs"]]
        assert [c.name for c in configs] == entry["config_names"] and set(entry["config_names"]) <= names
        for row in (r for r in table["rows"] if r["class"] == klass):
            assert 0 <= row["config"] < max(len(configs), 1) and row["layout"] in gemm_tuning.LAYOUTS
            assert row["aten"] == (row["ratio"] < table["route_to_aten_below"]), row


def test_bucket_edges():
    assert [gemm_tuning.bucket(x) for x in (1, 2, 3, 4, 5, 8, 9, 4096, 4097, 16384, 16385, 10**9)] == [
        0, 1, 2, 2, 3, 3, 4, 12, 13, 14, 15, 15]
    # Quarter octaves: 3000 tokens no longer share 4096's bucket; monotonic; clamped past 65536.
    fb = gemm_tuning.fine_bucket
    assert [fb(x) for x in (1, 2048, 2049, 2560, 2561, 3000, 3072, 3073, 4096, 4097, 65536, 65537, 10**9)] == [
        0, 44, 45, 45, 46, 46, 46, 47, 48, 49, 63, 63, 63]
    values = [fb(x) for x in range(1, 70000)]
    assert values == sorted(values) and fb(3000) != fb(4096) and fb(750 * 4) != fb(1024 * 4)


def test_dense_table_takes_the_nearest_measured_case(monkeypatch):
    rows = [dict(m=4096, n=4096, k=4096, layout="nt", config=0, aten=False),
            dict(m=1, n=4096, k=4096, layout="nt", config=1, aten=False),
            dict(m=4096, n=512, k=2048, layout="nn", config=2, aten=True),
            dict(m=3000, n=512, k=2048, layout="nn", config=3, aten=False)]
    rows = [dict(r, **{"class": "16bit"}) for r in rows]
    monkeypatch.setattr(gemm_tuning, "load_table", lambda arch: {"rows": rows, "classes": {}})
    table = gemm_tuning.dense_table(90, "16bit")
    assert len(table) == gemm_tuning.CLASS_ENTRIES
    assert set(gemm_tuning.dense_table(90, "tf32")) == {0}  # a class with no rows: config 0 everywhere

    def at(layout, m, nn, k):
        return table[gemm_tuning.index(gemm_tuning.LAYOUTS.index(layout), m, nn, k)]

    assert at("nt", 4096, 4096, 4096) == 0 and at("nt", 8192, 3000, 4096) == 0
    assert at("nt", 1, 4096, 4096) == 1 and at("nt", 2, 8192, 2048) == 1
    # A bucket routed to ATen keeps its configuration (for torch.ops.gems.mm): -(2 + 1).
    assert at("nn", 4096, 512, 2048) == -3 and at("nn", 3800, 600, 2000) == -3
    # 3000 tokens have a bucket of their own, with their own measured choice.
    assert at("nn", 3000, 512, 2048) == 3 and at("nn", 2900, 512, 2048) == 3
    # A layout with no measured case takes the nearest case of any layout, and goes to ATen.
    assert at("tt", 4096, 4096, 4096) == -1
    # A served case vouches for buckets near it only (gemm_tuning.NEAR_ENOUGH).
    assert at("nt", 1024, 4096, 4096) == 0 and at("nt", 512, 4096, 4096) == -1
    assert at("nt", 4096, 1, 4096) == -1 and at("nt", 4096, 4096, 64) == -1


def test_generated_tuning_header_matches_the_table():
    text = fam.generated_sources()[fam.TUNING_HEADER]
    for arch in fam.TMA_ARCHS:
        if gemm_tuning.load_table(arch) is None:
            assert f"kSm{arch}[" not in text  # no table: entry 0 (the one configuration) everywhere
            continue
        start = text.index(f"kSm{arch}[")
        body = text[text.index("{", start) + 1:text.index("};", start)]
        expected = [v for klass in gemm_tuning.CLASSES for v in gemm_tuning.dense_table(arch, klass)]
        assert [int(v) for v in body.replace("\n", "").split(",") if v.strip()] == expected


def test_generated_lookup_is_the_python_one(tmp_path):
    """The C++ bucket functions and entry_for, compiled, give the Python table's entries."""
    import shutil
    import subprocess

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "gemm_tuning.h").write_text(fam.generated_sources()[fam.TUNING_HEADER])
    shapes = [(m, n, k) for m in (1, 2, 3, 17, 1000, 1024, 2049, 3000, 4095, 4096, 4097, 70000)
              for n in (1, 512, 3000, 32000) for k in (1, 64, 3000, 4096, 14336)]
    calls = "".join(f"  std::printf(\"%d %d\\n\", bucket({n}), entry_for(90, {c}, {l}, {m}, {n}, {k}));\n"
                    for c in range(len(gemm_tuning.CLASSES)) for l in (0, 3) for m, n, k in shapes)
    (tmp_path / "main.cpp").write_text(
        f'#include <cstdio>\n#include "gemm_tuning.h"\nusing namespace gems::gemm_tuning;\nint main() {{\n{calls}}}\n')
    subprocess.run([cxx, "-O1", "-o", str(tmp_path / "lookup"), str(tmp_path / "main.cpp")], check=True)
    got = subprocess.run([str(tmp_path / "lookup")], check=True, capture_output=True, text=True).stdout.split("\n")
    tables = {klass: gemm_tuning.dense_table(90, klass) for klass in gemm_tuning.CLASSES}
    expected = [f"{gemm_tuning.bucket(n)} {tables[klass][gemm_tuning.index(l, m, n, k)] if gemm_tuning.load_table(90) else 0}"
                for klass in gemm_tuning.CLASSES for l in (0, 3) for m, n, k in shapes]
    assert got[:-1] == expected


def shared_estimate(v):
    """Bytes of the pipelined A and B tiles (Triton keeps num_stages - 1 or num_stages of them)."""
    c = dict(v.constexprs)
    size = 4 if v.signature[0][1] == "*fp32" else 2
    return (c["BLOCK_M"] * c["BLOCK_K"] + c["BLOCK_K"] * c["BLOCK_N"]) * size * v.num_stages


def test_hopper_pointer_configs_need_large_shared_memory():
    v = GRID.make(dict(dtype="bf16", precision="ieee", a_layout="row", b_layout="col", align="general"), 90)
    c = dict(v.constexprs)
    assert (c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"], v.num_warps, v.num_stages) == (128, 256, 64, 8, 3)
    assert shared_estimate(v) > 48 * 1024


# ---- AOT compile ------------------------------------------------------------------------------

SAMPLES = [
    (80, dict(dtype="fp16", precision="ieee", a_layout="row", b_layout="row", align="aligned")),
    (80, dict(dtype="fp32", precision="ieee", a_layout="col", b_layout="col", align="general")),
    (90, dict(dtype="bf16", precision="ieee", a_layout="row", b_layout="col", align="general")),
    (90, dict(dtype="fp32", precision="tf32", a_layout="col", b_layout="row", align="general")),
    (100, dict(dtype="fp32", precision="ieee", a_layout="row", b_layout="col", align="aligned")),
]
BMM_SAMPLES = [
    (80, dict(dtype="fp16", precision="ieee", a_layout="col", b_layout="row", align="aligned")),
    (90, dict(dtype="bf16", precision="ieee", a_layout="row", b_layout="col", align="general")),
    (90, dict(dtype="fp32", precision="ieee", a_layout="row", b_layout="row", align="aligned")),
    (90, dict(dtype="fp32", precision="tf32", a_layout="col", b_layout="col", align="general")),
]
TMA_SAMPLES = [
    (90, dict(dtype="bf16", a_layout="row", b_layout="col", epilogue="none", config="c0")),
    (90, dict(dtype="fp32", a_layout="row", b_layout="row", epilogue="none", config="c0")),
    (90, dict(dtype="fp16", a_layout="col", b_layout="row", epilogue="bias", config="c0")),
    (100, dict(dtype="bf16", a_layout="col", b_layout="col", epilogue="bias", config="c0")),
]
BMM_TMA_SAMPLES = [
    (90, dict(dtype="bf16", a_layout="row", b_layout="col", epilogue="none", config="c0")),
    (90, dict(dtype="fp16", a_layout="col", b_layout="row", epilogue="full", config="c0")),
    (90, dict(dtype="bf16", a_layout="row", b_layout="row", epilogue="full", config="c2")),
    (90, dict(dtype="fp32", a_layout="col", b_layout="col", epilogue="full", config="c1")),
]
# Opt-in shared memory per block: A100 163 KiB, H100 and B200 227 KiB.
MAX_SHARED = {80: 166912, 90: 232448, 100: 232448}


@pytest.mark.parametrize("grid,arch,point",
                         [(GRID, *s) for s in SAMPLES] + [(POINTER_GRIDS[1], *s) for s in BMM_SAMPLES],
                         ids=lambda s: s.name if hasattr(s, "name") else str(s) if isinstance(s, int) else "-".join(
                             s.values()))
def test_aot_compile(grid, arch, point):
    v = grid.make(point, arch)
    cubin, meta = compiler.compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta["num_warps"] == v.num_warps and meta["num_ctas"] == 1
    assert 0 < meta["shared"] <= MAX_SHARED[arch]
    assert meta["name"] == v.kernel.partition(":")[2]
    assert meta["global_scratch_size"] == 0 and not meta["launch_pdl"]


def split_k_config(arch):
    configs = gemm_tuning.configs_for(arch, "16bit")
    return next((f"c{i}" for i, c in enumerate(configs) if c.split_k > 1), None)


def tl_config(arch, klass):
    """The first configuration of the table that runs mm_tma_kernel."""
    return next(f"c{i}" for i, c in enumerate(gemm_tuning.configs_for(arch, klass)) if c.kernel == "tl")


KERNEL_NAMES = {"tl": "mm_tma_kernel", "wgmma": "mm_wgmma_kernel"}
WGMMA_CANDIDATES = [c for c in gemm_tuning.SM90_CANDIDATES if c.kernel == "wgmma"]


@pytest.mark.parametrize("grid,arch,point", [(TMA_GRID, *s) for s in TMA_SAMPLES] +
                         [(BMM_TMA_GRID, *s) for s in BMM_TMA_SAMPLES],
                         ids=lambda s: s.name if hasattr(s, "name") else str(s) if isinstance(s, int) else "-".join(
                             s.values()))
def test_aot_compile_tma(grid, arch, point):
    """Device-side TMA descriptors live in global scratch (128 bytes each, 128-byte aligned), and
    PDL sends the launch through cuLaunchKernelEx; every configuration fits the opt-in shared
    memory of its target."""
    v = grid.make(point, arch)
    cfg = gemm_tuning.configs_for(arch, fam.tma_class(point["dtype"]))[int(point["config"][1:])]
    kernel = "tl" if grid is BMM_TMA_GRID else cfg.kernel
    cubin, meta = compiler.compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF" and meta["name"] == KERNEL_NAMES[kernel]
    assert meta["global_scratch_size"] >= 3 * 128 and meta["global_scratch_align"] == 128
    assert meta["launch_pdl"] is (kernel == "tl") and 49152 < meta["shared"] <= MAX_SHARED[arch]


@pytest.fixture
def wgmma_table(monkeypatch):
    """An sm_90 table made of the Gluon kernel's candidates (the committed one may use any subset)."""
    real = gemm_tuning.configs_for
    monkeypatch.setattr(gemm_tuning, "configs_for",
                        lambda arch, klass: tuple(WGMMA_CANDIDATES) if arch == 90 and klass != "ieee" else real(arch, klass))


@pytest.mark.parametrize("index", range(len(WGMMA_CANDIDATES)))
def test_wgmma_variants_are_warp_specialised_and_fit(wgmma_table, index):
    """Every Gluon candidate compiles through the AOT driver for sm_90a: one extra warpgroup (the
    TMA load warp, rounded up), registers moved to the MMA warps, descriptors in global scratch,
    no PDL (the kernel has no grid-dependency wait), within the opt-in shared memory."""
    cfg = WGMMA_CANDIDATES[index]
    for a_layout, b_layout, epilogue in (("row", "col", "none"), ("col", "row", "bias")):
        point = dict(dtype="bf16", a_layout=a_layout, b_layout=b_layout, epilogue=epilogue, config=f"c{index}")
        v = TMA_GRID.make(point, 90)
        cubin, meta = compiler.compile_variant(v, 90)
        assert cubin[:4] == b"\x7fELF" and meta["name"] == "mm_wgmma_kernel"
        assert meta["num_warps"] == cfg.num_warps + 4 and not meta["launch_pdl"]
        assert meta["global_scratch_size"] >= 3 * 128 and meta["shared"] <= MAX_SHARED[90]


def test_wgmma_configurations_serve_16bit_only(wgmma_table):
    point = dict(dtype="fp32", a_layout="row", b_layout="col", epilogue="none", config="c0")
    assert TMA_GRID.make(point, 90) is None
    assert TMA_GRID.make(dict(point, dtype="fp16"), 90).kernel == fam.WGMMA_KERNEL


def test_hopper_wgmma_variant(wgmma_table):
    """Asynchronous wgmma fed by TMA, register reallocation between the partitions, and no full
    wgmma wait inside the k-loop (only the one before each tile's epilogue)."""
    ptx = hopper_ptx(TMA_GRID, dict(dtype="bf16", a_layout="row", b_layout="col", epilogue="bias", config="c0"))
    assert "wgmma.mma_async" in ptx and "cp.async.bulk.tensor.2d" in ptx
    assert "setmaxnreg.inc" in ptx and "setmaxnreg.dec" in ptx
    assert ptx.count("wgmma.wait_group.sync.aligned 1") == 1 and ptx.count("wgmma.wait_group.sync.aligned 0") == 1
    assert "mbarrier.try_wait" in ptx and "griddepcontrol" not in ptx


@pytest.mark.parametrize("grid", [TMA_GRID, BMM_TMA_GRID], ids=lambda g: g.name)
def test_every_sm90_configuration_fits_shared_memory(grid):
    """The full epilogue's layout conversion takes shared memory beside the pipeline's stages:
    its finer slices keep even the 4-stage 128x256 tiles within an SM's."""
    for dtype in ("bf16", "fp32"):
        klass = "tf32" if dtype == "fp32" else "16bit"
        for index in range(len(gemm_tuning.configs_for(90, klass))):
            for epilogue in dict(grid.axes)["epilogue"]:
                point = dict(dtype=dtype, a_layout="row", b_layout="col", epilogue=epilogue, config=f"c{index}")
                _, meta = compiler.compile_variant(grid.make(point, 90), 90)
                assert meta["shared"] <= MAX_SHARED[90], (point, meta["shared"])


def hopper_ptx(grid, point):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = grid.make(point, 90)
    names = [n for n, _ in v.signature]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in v.divisible16}
    source = ASTSource
    if v.jit_function().is_gluon():
        from triton.experimental.gluon._runtime import GluonASTSource as source
    k = triton.compile(source(v.jit_function(), dict(v.signature), dict(v.constexprs), attrs),
                       target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": v.num_warps, "num_stages": v.num_stages, "launch_pdl": v.launch_pdl})
    return k.asm["ptx"]


def test_hopper_aligned_pointer_variant_uses_wide_loads():
    """The pointer kernel's fast path (exact fp32 here): 16-byte cp.async for both operands."""
    ptx = hopper_ptx(GRID, dict(dtype="fp32", precision="ieee", a_layout="row", b_layout="col", align="aligned"))
    assert "cp.async.cg.shared.global" in ptx  # .cg copies are the 16-byte ones
    assert "ld.global.b32" not in ptx


def test_hopper_tma_variant_tf32_uses_tf32_wgmma():
    point = dict(dtype="fp32", a_layout="row", b_layout="row", epilogue="none", config=tl_config(90, "tf32"))
    ptx = hopper_ptx(TMA_GRID, point)
    assert "wgmma.mma_async.sync.aligned" in ptx and ".tf32.tf32" in ptx


def test_hopper_tma_variant():
    """wgmma fed by TMA through descriptors built on the device, after the PDL wait."""
    point = dict(dtype="bf16", a_layout="col", b_layout="row", epilogue="none", config=tl_config(90, "16bit"))
    ptx = hopper_ptx(TMA_GRID, point)
    assert "wgmma.mma_async" in ptx
    assert "cp.async.bulk.tensor.2d" in ptx
    assert "tensormap.replace" in ptx
    assert ptx.index("griddepcontrol.wait") < ptx.index("tensormap.replace")
    assert "ld.global" not in ptx


@pytest.mark.parametrize("epilogue", ["none", "full"])
def test_hopper_batched_tma_variant(epilogue):
    """The batched variant: rank-3 TMA copies feeding wgmma, no 2-D ones; the full epilogue reads
    self with plain loads, the only global loads (the mm variant's copies are 2-D)."""
    point = dict(dtype="bf16", a_layout="row", b_layout="col", epilogue=epilogue, config="c0")
    ptx = hopper_ptx(BMM_TMA_GRID, point)
    assert "wgmma.mma_async" in ptx and "cp.async.bulk.tensor.3d" in ptx and "cp.async.bulk.tensor.2d" not in ptx
    assert ("ld.global" in ptx) == (epilogue == "full")
    assert ptx.index("griddepcontrol.wait") < ptx.index("tensormap.replace")
    mm = hopper_ptx(TMA_GRID, dict(point, epilogue="none"))
    assert "cp.async.bulk.tensor.2d" in mm and "cp.async.bulk.tensor.3d" not in mm


def test_hopper_split_k_variant_counts_arrivals_atomically():
    config = split_k_config(90)
    if config is None:
        pytest.skip("the sm_90 table uses no split-K configuration")
    ptx = hopper_ptx(TMA_GRID, dict(dtype="bf16", a_layout="row", b_layout="col", epilogue="none", config=config))
    assert re.search(r"atom\.global\.(gpu\.)?acq_rel\.add", ptx) and "bar.sync" in ptx
    assert "ld.global.cg" in ptx  # the partial tiles come from L2


# ---- Meta function (needs the built extension) ------------------------------------------------


def test_meta_mm():
    pytest.importorskip("gems_aot")
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        a = torch.empty(33, 45, device="meta", dtype=dtype)
        b = torch.empty(17, 45, device="meta", dtype=dtype).t()
        out = torch.ops.gems.mm(a, b)
        assert out.shape == (33, 17) and out.dtype == dtype and out.device.type == "meta"
        assert out.stride() == (17, 1)


@pytest.mark.parametrize("case", ["shapes", "dtype", "self_rank", "mat2_rank"])
def test_meta_mm_errors_are_torchs(case):
    pytest.importorskip("gems_aot")
    ref, got = torch_error("mm", *{"shapes": [((3, 4), F32), ((5, 6), F32)], "dtype": [((3, 4), F32), ((4, 6), F16)],
                                   "self_rank": [((3, 4, 1), F32), ((4, 6), F32)],
                                   "mat2_rank": [((3, 4), F32), ((4,), F32)]}[case])
    assert got == ref


def test_meta_addmm_matches_torch():
    pytest.importorskip("gems_aot")
    m = lambda *s, dtype=torch.bfloat16: torch.empty(*s, device="meta", dtype=dtype)  # noqa: E731
    for bias in (m(17), m(1, 17), m(33, 17), m(1), m(33, 1)):
        a, b = m(33, 45), m(17, 45).t()
        out, ref = torch.ops.gems.addmm(bias, a, b, beta=0.5, alpha=2), torch.addmm(bias, a, b, beta=0.5, alpha=2)
        assert (out.shape, out.dtype, out.stride(), out.device) == (ref.shape, ref.dtype, ref.stride(), ref.device)


@pytest.mark.parametrize("case", ["shapes", "dtype", "self_dtype", "rank", "bias"])
def test_meta_addmm_errors_are_torchs(case):
    pytest.importorskip("gems_aot")
    shapes = {"shapes": ((6,), (3, 4), (5, 6)), "dtype": ((6,), (3, 4), (4, 6)), "self_dtype": ((6,), (3, 4), (4, 6)),
              "rank": ((6,), (3, 4, 1), (4, 6)), "bias": ((5,), (3, 4), (4, 6))}[case]
    dtypes = {"dtype": (torch.float32, torch.float32, torch.float16),
              "self_dtype": (torch.float16, torch.float32, torch.float32)}.get(case, (torch.float32,) * 3)
    ref, got = torch_error("addmm", *zip(shapes, dtypes))
    assert got == ref


def test_meta_bmm_matches_torch():
    """Shape, dtype and strides as torch's own meta function gives them (contiguous, whatever the
    operands' layouts)."""
    pytest.importorskip("gems_aot")
    m = lambda *s, dtype=torch.float32: torch.empty(*s, device="meta", dtype=dtype)  # noqa: E731
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        for a, b in ((m(3, 33, 45, dtype=dtype), m(3, 17, 45, dtype=dtype).transpose(1, 2)),
                     (m(1, 45, 33, dtype=dtype).transpose(1, 2), m(1, 45, 17, dtype=dtype)),
                     (m(1, 33, 45, dtype=dtype).expand(4, 33, 45), m(4, 45, 0, dtype=dtype))):
            out, ref = torch.ops.gems.bmm(a, b), torch.bmm(a, b)
            assert out.device.type == "meta"
            assert (out.shape, out.dtype, out.stride()) == (ref.shape, ref.dtype, ref.stride())


def test_meta_baddbmm_matches_torch():
    """Every self that broadcasts to [batch, M, N], as torch's meta function takes it."""
    pytest.importorskip("gems_aot")
    m = lambda *s, dtype=torch.bfloat16: torch.empty(*s, device="meta", dtype=dtype)  # noqa: E731
    a, b = m(3, 33, 45), m(3, 17, 45).transpose(1, 2)
    forms = (m(3, 33, 17), m(33, 17), m(17), m(1), m(3, 1, 17), m(1, 1, 1), m(33, 1), m(17, 3, 33).permute(1, 2, 0))
    for self in forms:
        out = torch.ops.gems.baddbmm(self, a, b, beta=0.5, alpha=2)
        ref = torch.baddbmm(self, a, b, beta=0.5, alpha=2)
        assert (out.shape, out.dtype, out.stride(), out.device) == (ref.shape, ref.dtype, ref.stride(), ref.device)


def torch_error(fn, *shapes_and_dtypes):
    """The error the aten op raises for meta tensors of these shapes and dtypes (None: torch's
    meta function checks less than its kernels, mixed dtypes), and the one the gems op raises (its
    fake implementation is the aten op's). The CUDA path's checks are ATen's C++ ones
    (tests/test_gemm_gpu.py)."""
    def outcome(op):
        try:
            op(*[torch.zeros(s, dtype=d, device="meta") for s, d in shapes_and_dtypes])
        except Exception as e:
            return type(e), str(e).split("\n")[0]
        return None

    return outcome(getattr(torch, fn)), outcome(getattr(torch.ops.gems, fn))


F32, F16 = torch.float32, torch.float16
BMM_ERRORS = {
    "batch1_rank": [((3, 4), F32), ((2, 4, 6), F32)],
    "batch2_rank": [((2, 3, 4), F32), ((4, 6), F32)],
    "batch_mismatch": [((2, 3, 4), F32), ((3, 4, 6), F32)],
    "inner_mismatch": [((2, 3, 4), F32), ((2, 5, 6), F32)],
    "dtype": [((2, 3, 4), F32), ((2, 4, 6), F16)],
    "dtype_reversed": [((2, 3, 4), F16), ((2, 4, 6), F32)],
}
BADDBMM_ERRORS = {
    "self_shape": [((2, 3, 5), F32), ((2, 3, 4), F32), ((2, 4, 6), F32)],
    "self_batch": [((4, 3, 6), F32), ((2, 3, 4), F32), ((2, 4, 6), F32)],
    "self_rank": [((1, 2, 3, 6), F32), ((2, 3, 4), F32), ((2, 4, 6), F32)],
    "batch1_rank": [((2, 3, 6), F32), ((3, 4), F32), ((2, 4, 6), F32)],
    "batch2_rank": [((2, 3, 6), F32), ((2, 3, 4), F32), ((4, 6), F32)],
    "batch_mismatch": [((2, 3, 6), F32), ((2, 3, 4), F32), ((3, 4, 6), F32)],
    "inner_mismatch": [((2, 3, 6), F32), ((2, 3, 4), F32), ((2, 5, 6), F32)],
    "self_dtype": [((2, 3, 6), F16), ((2, 3, 4), F32), ((2, 4, 6), F32)],
    "dtype": [((2, 3, 6), F32), ((2, 3, 4), F32), ((2, 4, 6), F16)],
}


@pytest.mark.parametrize("case", BMM_ERRORS)
def test_meta_bmm_errors_are_torchs(case):
    pytest.importorskip("gems_aot")
    ref, got = torch_error("bmm", *BMM_ERRORS[case])
    assert got == ref


@pytest.mark.parametrize("case", BADDBMM_ERRORS)
def test_meta_baddbmm_errors_are_torchs(case):
    """Including the order of torch's checks: self's broadcast (expand's error, IndexError for a
    missing dim of batch2) comes before the ranks."""
    pytest.importorskip("gems_aot")
    ref, got = torch_error("baddbmm", *BADDBMM_ERRORS[case])
    assert got == ref


def test_info_lists_the_routed_cases():
    pytest.importorskip("gems_aot")
    import gems_aot

    info = gems_aot.info()["gemm_tuning"]
    table = gemm_tuning.load_table(90)
    if table is not None and "sm_90a" in info:
        routed = [r for r in table["rows"] if r["aten"]]
        assert info["sm_90a"]["cases"] == len(table["rows"])
        assert [(c["class"], c["case"], c["shape"]) for c in info["sm_90a"]["routed_to_aten"]] == [
            (r["class"], r["name"], f"{r['m']}x{r['n']}x{r['k']}") for r in routed]

