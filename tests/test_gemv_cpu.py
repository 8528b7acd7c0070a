"""The gemv kernels in interpreter mode against torch on the CPU (both A layouts, one-row dots,
split-K, the epilogue), their declarations, the AOT compile of sample variants per target, and
the Meta functions against torch's results and messages."""

import collections
import re

import pytest
import torch

from aot import compiler
from aot import family_gemv as fam
from conftest import ROOT, interpreted, runtime_loop_bounds

GRID, FINISH_GRID = fam.GRIDS
ARCHS = (80, 90, 100)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
# Small tiles keep the interpreter fast; the math does not depend on the tile. (BLOCK_M, BLOCK_K)
# per kind, and (BLOCK_S, BLOCK_M) of the finish kernel: BLOCK_S 2 makes it loop over 3 splits.
TILES = {"row": (4, 32), "col": (32, 8), "dot": (1, 64)}
FINISH_TILES = {"gemv": (2, 16), "dot": (2, 1)}
# The driver's split rule (csrc/ops/gemv.cpp plan()), with its constants read from the source.
DRIVER = (ROOT / "csrc" / "ops" / "gemv.cpp").read_text()
SPLIT = {name: int(re.search(rf"{name} = (\d+)", DRIVER).group(1))
         for name in ("kSplitBelow", "kTargetPrograms", "kMinSplitChunks", "kMaxSplits")}


def ceil_div(a, b):
    return -(-a // b)


def driver_split(M, K, block_m, block_k):
    """(splits, k_split) as plan() chooses them."""
    row_blocks, chunks = ceil_div(M, block_m), ceil_div(K, block_k)
    want = 1
    if row_blocks < SPLIT["kSplitBelow"]:
        want = min(max(min(ceil_div(SPLIT["kTargetPrograms"], row_blocks), chunks // SPLIT["kMinSplitChunks"]), 1),
                   SPLIT["kMaxSplits"])
    k_split = max(ceil_div(chunks, want), 1) * block_k
    return max(ceil_div(K, k_split), 1), k_split


def kind_of(a):
    """The kernel kind and its (stride_am, stride_ak), as set_matrix() in the driver picks them."""
    M, K = a.shape
    s0, s1 = a.stride(0), (a.stride(1) if K > 1 else 1)
    if M == 1:
        return "dot", (0, s1)
    if s1 == 1 and not (K == 1 and s0 == 1):
        return "row", (s0, 1)
    assert s0 == 1
    return "col", (1, a.stride(1) if K > 1 else 0)


def run_interpreted(a, x, bias=None, alpha=1.0, beta=0.0, y=None, splits=None):
    """y = alpha * a @ x + beta * bias through gemv_kernel (and gemv_finish when K is split), as
    the driver launches them; y poisoned with NaN unless given (in-place: y is bias)."""
    k = interpreted("kernels.gemv")
    M, K = a.shape
    kind, (stride_am, stride_ak) = kind_of(a)
    block_m, block_k = TILES[kind]
    if splits is None:
        splits, k_split = driver_split(M, K, block_m, block_k)
    else:
        k_split = max(ceil_div(ceil_div(K, block_k), splits), 1) * block_k
        splits = max(ceil_div(K, k_split), 1)
    if y is None:
        y = torch.full((M,), float("nan"), dtype=a.dtype)
    if bias is None:
        bias = y
    partial = torch.full((splits * M,), float("nan"))
    stride_bias = 0 if bias.numel() == 1 else bias.stride(0)
    k.gemv_kernel[(ceil_div(M, block_m), splits)](
        a, x, y, bias, partial, M, K, stride_am, stride_ak, x.stride(0), y.stride(0), stride_bias, k_split,
        alpha, beta, BLOCK_M=block_m, BLOCK_K=block_k)
    if splits > 1:
        block_s, finish_m = FINISH_TILES["dot" if kind == "dot" else "gemv"]
        k.gemv_finish[(ceil_div(M, finish_m),)](partial, y, bias, M, splits, y.stride(0), stride_bias, alpha, beta,
                                                BLOCK_S=block_s, BLOCK_M=finish_m)
    return y


def matrix(rows, cols, layout, dtype, gen, lead_pad=0):
    if layout == "row":
        return torch.randn(rows, cols + lead_pad, generator=gen).to(dtype)[:, :cols]
    return torch.randn(cols, rows + lead_pad, generator=gen).to(dtype)[:, :rows].t()


def reference(a, x, bias=None, alpha=1.0, beta=0.0):
    out = alpha * (a.double() @ x.double())
    if beta != 0:
        out = out + beta * bias.double()
    return out.to(a.dtype)


def check(got, want, K):
    torch.testing.assert_close(got, want, rtol=RTOL[want.dtype], atol=1e-4 * max(K, 1))


SIZES = [1, 17, 1000]


@runtime_loop_bounds
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("layout", ["row", "col"])
def test_gemv_kernel_math(dtype_name, layout, seeded):
    """Both layouts over uneven sizes (one row, a partial block, several blocks past the first),
    with the driver's split of K and with forced splits."""
    dtype = DTYPES[dtype_name]
    for M in (2, 17, 100):
        for K in SIZES:
            a = matrix(M, K, layout, dtype, seeded, lead_pad=3)
            x = torch.randn(K, generator=seeded).to(dtype)
            assert kind_of(a)[0] == layout
            for splits in (None, 3):
                check(run_interpreted(a, x, splits=splits), reference(a, x), K)


@runtime_loop_bounds
@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_dot_kernel_math(dtype_name, seeded):
    """A one-row product (dot, and addmv with M = 1): unit and strided vectors, split or not."""
    dtype = DTYPES[dtype_name]
    for K in (0, 1, 17, 1000):
        base = torch.randn(3 * K + 1, generator=seeded).to(dtype)
        other = torch.randn(2 * K + 1, generator=seeded).to(dtype)
        for a, x in ((base[:K], other[:K]), (base[::3][:K], other[1::2][:K])):
            for splits in (None, 3):
                got = run_interpreted(a[None, :], x, splits=splits)
                check(got, reference(a[None, :], x), K)


@runtime_loop_bounds
def test_forced_splits_cover_the_finish_loop(seeded):
    """The driver's split of a column-major matrix and of a long dot, and more splits than the
    finish tile sums in one step."""
    a = matrix(100, 1000, "col", torch.float32, seeded)
    x = torch.randn(1000, generator=seeded)
    assert driver_split(100, 1000, *TILES["col"])[0] > FINISH_TILES["gemv"][0]
    check(run_interpreted(a, x), reference(a, x), 1000)
    v = torch.randn(5000, generator=seeded)
    assert driver_split(1, 5000, *TILES["dot"])[0] > FINISH_TILES["dot"][0]
    check(run_interpreted(v[None, :], v), reference(v[None, :], v), 5000)


@runtime_loop_bounds
@pytest.mark.parametrize("layout", ["row", "col", "dot"])
@pytest.mark.parametrize("splits", [1, 3])
def test_epilogue(layout, splits, seeded):
    """alpha * A @ x + beta * bias with a strided, a broadcast (0-d) and an in-place bias, a strided
    x and y; beta = 0 ignores a NaN bias."""
    M, K = (1, 300) if layout == "dot" else (37, 300)
    a = matrix(M, K, "row" if layout == "dot" else layout, torch.float32, seeded, lead_pad=5)
    x = torch.randn(3 * K, generator=seeded)[::3]
    strided = torch.randn(2 * M, generator=seeded)[::2]
    scalar = torch.randn((), generator=seeded)
    for bias, alpha, beta in ((strided, 0.5, -2.0), (scalar, -0.999, 100.001), (strided, 0.001, 1.0)):
        y = torch.full((2 * M,), float("nan"))[::2]
        got = run_interpreted(a, x, bias, alpha, beta, y=y, splits=splits)
        assert got.stride() == (2,)
        check(got, reference(a, x, bias.expand(M), alpha, beta), K)
    in_place = strided.clone()
    expected = reference(a, x, in_place, 2.0, 3.0)
    check(run_interpreted(a, x, in_place, 2.0, 3.0, y=in_place, splits=splits), expected, K)
    nan_bias = torch.full((M,), float("nan"))
    got = run_interpreted(a, x, nan_bias, 3.0, 0.0, splits=splits)
    assert not got.isnan().any()
    check(got, reference(a, x, alpha=3.0), K)


@runtime_loop_bounds
def test_expanded_matrix(seeded):
    """A leading stride of 0 (an expanded row or column) is a valid one for either layout."""
    row = torch.randn(1, 70, generator=seeded).expand(20, 70)
    col = torch.randn(20, 1, generator=seeded).expand(20, 70)
    x = torch.randn(70, generator=seeded)
    assert kind_of(row)[0] == "row" and kind_of(col)[0] == "col"
    for a in (row, col):
        check(run_interpreted(a, x), reference(a, x), 70)


# ---- declarations -----------------------------------------------------------------------------


def test_every_point_is_declared_on_every_target():
    for grid in fam.GRIDS:
        for p in grid.points():
            variants = [grid.make(p, arch) for arch in ARCHS]
            assert all(v is not None for v in variants), p
            assert all([n for n, _ in v.signature] == list(v.jit_function().arg_names) for v in variants), p
            # The driver passes one runtime argument list per point, whatever the target.
            assert len({v.runtime_args for v in variants}) == 1, p


def driver_arguments(point):
    """What csrc/ops/gemv.cpp run() pushes for a gemv_kernel variant, in order."""
    kind, aligned = point["kind"], point["align"] == "aligned"
    names = ["a", "x", "y", "bias", "partial", "M", "K"]
    names += ["stride_am"] if kind == "row" else []
    names += ["stride_ak"] if kind == "col" or (kind == "dot" and not aligned) else []
    names += [] if aligned else ["stride_x"]
    return names + ["stride_y", "stride_bias", "k_split", "alpha", "beta"]


@pytest.mark.parametrize("point", list(GRID.points()), ids=GRID.symbol)
def test_runtime_arguments_are_what_the_driver_passes(point):
    v = GRID.make(point, 90)
    assert [n for n, _ in v.runtime_args] == driver_arguments(point)
    types = dict(v.runtime_args)
    assert [types[n] for n in ("a", "x", "y", "bias", "partial")] == [fam.ptr(point["dtype"])] * 4 + ["*fp32"]
    assert types["alpha"] == types["beta"] == "fp32"
    const = dict(v.constexprs)
    unit = {"row": "stride_ak", "col": "stride_am"}.get(point["kind"])
    if unit:
        assert const[unit] == 1
    else:
        assert const["stride_am"] == 0
    aligned = point["align"] == "aligned"
    assert ("stride_x" in const) == aligned and const.get("stride_x", 1) == 1
    lead = {"row": {"stride_am"}, "col": {"stride_ak"}, "dot": set()}[point["kind"]]
    assert set(v.divisible16) == ({"k_split", "a", "x"} | lead if aligned else {"k_split"})
    assert v.launch_params == ("BLOCK_M", "BLOCK_K") and v.num_warps == 4


@pytest.mark.parametrize("point", list(FINISH_GRID.points()), ids=FINISH_GRID.symbol)
def test_finish_arguments(point):
    v = FINISH_GRID.make(point, 90)
    assert [n for n, _ in v.runtime_args] == ["partial", "y", "bias", "M", "splits", "stride_y", "stride_bias",
                                              "alpha", "beta"]
    assert v.launch_params == ("BLOCK_M",) and v.divisible16 == ()


def test_tiles_hold_8_kib_and_a_whole_split():
    """Every tile streams 8 KiB of A per step, with 16-byte vectors along the contiguous dim; the
    dot finish tile sums the most splits the driver makes in one step; split starts stay aligned."""
    for p in GRID.points():
        c = dict(GRID.make(p, 90).constexprs)
        size = fam.ELEMENT_BYTES[p["dtype"]]
        assert c["BLOCK_M"] * c["BLOCK_K"] * size == 8192, p
        contiguous = c["BLOCK_M"] if p["kind"] == "col" else c["BLOCK_K"]
        assert contiguous * size >= 16 * 32, p  # a warp's 16-byte vectors side by side
        assert c["BLOCK_K"] % 16 == 0  # k_split, a multiple of BLOCK_K, carries the divisibility hint
    assert fam.FINISH_TILES["dot"] == (SPLIT["kMaxSplits"], 1)


def test_split_rule():
    """Few row blocks split K into whole chunks, at most kMaxSplits, none empty; many don't split."""
    for M, K, kind in ((4096, 4096, "col"), (32000, 4096, "col"), (1, 1 << 24, "dot"), (1, 100, "dot"),
                       (2048, 16384, "row"), (17, 11008, "row"), (4097, 17, "col")):
        block_m, block_k = fam.tile(kind, "bf16")
        splits, k_split = driver_split(M, K, block_m, block_k)
        assert k_split % block_k == 0 and 1 <= splits <= SPLIT["kMaxSplits"]
        assert (splits - 1) * k_split < K <= splits * k_split
        if ceil_div(M, block_m) >= SPLIT["kSplitBelow"]:
            assert splits == 1
    assert driver_split(4096, 4096, 256, 16)[0] == 64  # 16 column blocks x 64 splits of 4 chunks
    assert driver_split(1, 1 << 24, 1, 4096)[0] == SPLIT["kMaxSplits"]


# ---- AOT compile ------------------------------------------------------------------------------

SAMPLES = [(80, dict(kind="row", dtype="fp16", align="aligned")), (80, dict(kind="col", dtype="fp32", align="general")),
           (90, dict(kind="row", dtype="bf16", align="general")), (90, dict(kind="col", dtype="bf16", align="aligned")),
           (90, dict(kind="dot", dtype="fp32", align="aligned")), (100, dict(kind="dot", dtype="bf16", align="general")),
           (100, dict(kind="col", dtype="fp16", align="aligned"))]
FINISH_SAMPLES = [(80, dict(kind="gemv", dtype="bf16")), (90, dict(kind="dot", dtype="fp32")),
                  (100, dict(kind="gemv", dtype="fp16"))]


@pytest.mark.parametrize("arch,point", SAMPLES + [(a, p) for a, p in FINISH_SAMPLES],
                         ids=lambda s: str(s) if isinstance(s, int) else "_".join(s.values()))
def test_aot_compile(arch, point):
    grid = GRID if "align" in point else FINISH_GRID
    v = grid.make(point, arch)
    cubin, meta = compiler.compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF" and meta["name"] == v.kernel.partition(":")[2]
    assert meta["num_warps"] == 4 and meta["num_ctas"] == 1 and not meta["launch_pdl"]
    assert meta["global_scratch_size"] == 0 and meta["shared"] <= 48 * 1024


def ptx_loads(point, arch=90):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = GRID.make(point, arch)
    names = [n for n, _ in v.signature]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in v.divisible16}
    k = triton.compile(ASTSource(v.jit_function(), dict(v.signature), dict(v.constexprs), attrs),
                       target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps})
    return collections.Counter(re.findall(r"ld\.global[.\w:]*", k.asm["ptx"]))


@pytest.mark.parametrize("kind", fam.KINDS)
def test_aligned_variants_load_16_bytes(kind):
    """The hints give 16-byte loads of A, which evict first (and of x in a row or a dot); without
    them every load is one element."""
    aligned = ptx_loads(dict(kind=kind, dtype="bf16", align="aligned"))
    general = ptx_loads(dict(kind=kind, dtype="bf16", align="general"))
    vectors = {op: n for op, n in aligned.items() if op.endswith(".v4.b32")}
    # Per thread and step: 4 vectors of A, plus 1 of x (row: 8 of its 1024) or 4 (dot).
    assert sum(vectors.values()) >= {"row": 5, "col": 4, "dot": 8}[kind], aligned
    assert any("evict_first" in op for op in vectors), aligned
    assert all(op.endswith(".b16") for op in general), general


# ---- Meta functions (need the built extension) ------------------------------------------------


def meta(*shape, dtype=torch.float32):
    return torch.empty(shape, device="meta", dtype=dtype)


def cpu(*shape, dtype=torch.float32):
    return torch.randn(shape).to(dtype)


def same_result(op, args, kwargs=None):
    pytest.importorskip("gems_aot")
    out = getattr(torch.ops.gems, op)(*(meta(*t.shape, dtype=t.dtype) for t in args), **(kwargs or {}))
    ref = getattr(torch, op)(*args, **(kwargs or {}))
    assert out.device.type == "meta"
    assert (out.shape, out.dtype, out.stride()) == (ref.shape, ref.dtype, ref.stride())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_meta_matches_torch(dtype):
    for self_shape in ((33,), (1,), ()):
        same_result("addmv", (cpu(*self_shape, dtype=dtype), cpu(33, 45, dtype=dtype), cpu(45, dtype=dtype)),
                    dict(beta=0.5, alpha=2))
    same_result("mv", (cpu(33, 45, dtype=dtype), cpu(45, dtype=dtype)))
    same_result("mv", (cpu(0, 45, dtype=dtype), cpu(45, dtype=dtype)))
    same_result("dot", (cpu(45, dtype=dtype), cpu(45, dtype=dtype)))
    same_result("vdot", (cpu(0, dtype=dtype), cpu(0, dtype=dtype)))


ERROR_CASES = {
    "addmv": {"mat_rank": ((3,), (3, 4, 1), (4,)), "vec_rank": ((3,), (3, 4), (4, 1)), "self_rank": ((1, 3), (3, 4), (4,)),
              "k": ((3,), (3, 4), (5,)), "self_size": ((5,), (3, 4), (4,)), "self_0d_k": ((), (3, 4), (5,)),
              "dtype": ((3,), (3, 4), (4,), torch.float16), "self_dtype": ((3,), (3, 4), (4,), None, torch.float16)},
    "mv": {"rank": ((3, 4, 1), (4,)), "vec_rank": ((3, 4), (4, 1)), "k": ((3, 4), (5,)),
           "dtype": ((3, 4), (4,), torch.float16), "mat_0d": ((), (4,))},
    "dot": {"rank": ((3, 1), (3,)), "size": ((3,), (4,)), "dtype": ((3,), (3,), torch.float16)},
    "vdot": {"rank": ((3,), (3, 1)), "size": ((4,), (3,)), "dtype": ((3,), (3,), torch.float16)},
}


def error_args(op, case):
    """The case's shapes as tensors: the last operand (or, for self_dtype, the first) takes the
    case's other dtype."""
    spec = ERROR_CASES[op][case]
    shapes = [s for s in spec if isinstance(s, tuple)]
    dtypes = [torch.float32] * len(shapes)
    extra = spec[len(shapes):]
    if extra and extra[0] is not None:
        dtypes[-1] = extra[0]
    if len(extra) > 1:
        dtypes[0] = extra[1]
    return shapes, dtypes


@pytest.mark.parametrize("op,case", [(op, case) for op, cases in ERROR_CASES.items() for case in cases])
def test_meta_errors_are_torchs(op, case):
    """On meta tensors, what the aten op does there (its fake implementation is the gems op's):
    its error, or none where torch's meta function checks less than its kernels (mv's K). The
    CUDA path's checks are ATen's C++ ones (tests/test_gemv_gpu.py)."""
    pytest.importorskip("gems_aot")
    shapes, dtypes = error_args(op, case)

    def outcome(fn):
        try:
            fn(*(torch.empty(s, dtype=d, device="meta") for s, d in zip(shapes, dtypes)))
        except (RuntimeError, IndexError) as e:
            return type(e), str(e).split("\n")[0]
        return None

    assert outcome(getattr(torch.ops.gems, op)) == outcome(getattr(torch, op))
