"""CPU tests of the index family: the gather and the embedding backward's kernels under the
interpreter, launched as csrc/ops/index.cpp launches them, against torch in float64 (padding_idx,
repeated indices, scale_grad_by_freq, int32 / int64 indices, D not a multiple of the block, empty
indices, indices out of range); declarations, the built extension's schemas, registration and
Meta functions, and the AOT compile (16-byte accesses, no float atomics).
"""

import pathlib

import pytest
import torch
from conftest import interpreted, runtime_loop_bounds

from aot import family_index as fam
from aot import schemas

ARCHS = (80, 90, 100)
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)
# The backward's fp32 sums against float64, then the result's rounding (bf16: twice the GPU
# suite's, the interpreter truncates fp32 to bf16 where the GPU rounds to nearest).
RTOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def kernels():
    return interpreted("kernels.index")


def cdiv(a, b):
    return -(-a // b)


# -- the driver's launches ----------------------------------------------------------------------


def gather(table, index):
    """embedding / index_select along dim 0: rows of the contiguous table at a 1-D index view."""
    v, d = table.shape[0], table.shape[1:].numel()
    n = index.numel()
    out = torch.empty((n, *table.shape[1:]), dtype=table.dtype)
    if n and d:
        d_blocks = cdiv(d, fam.GATHER_BLOCK_D)
        idx_s = index.stride(0) if index.dim() == 1 else 1
        kernels().gather_rows[(cdiv(n, fam.GATHER_ROWS) * d_blocks,)](
            table, index, out, n, v, d, idx_s, d_blocks, ROWS=fam.GATHER_ROWS, BLOCK_D=fam.GATHER_BLOCK_D)
    return out


def embedding_backward(grad, indices, num_weights, padding_idx, freq, workspace=None):
    """The driver's five launches over one int32 workspace; returns (grad_weight, workspace)."""
    k = kernels()
    n, d, v = indices.numel(), grad.shape[-1], num_weights
    indices = indices.reshape(-1)
    out = torch.empty((v, d), dtype=grad.dtype)
    work = torch.full((2 * (v + 1) + 2 * n,), -7, dtype=torch.int32)  # garbage but the zeroed counts
    counts, starts = work[: v + 1], work[v + 1: 2 * (v + 1)]
    unsorted, sorted_ = work[2 * (v + 1): 2 * (v + 1) + n], work[2 * (v + 1) + n:]
    counts.zero_()
    if v == 0 or d == 0:
        return out, work
    if n:
        k.count_rows[(cdiv(n, fam.SCATTER_BLOCK),)](indices, counts, n, v, padding_idx, BLOCK=fam.SCATTER_BLOCK)
    k.scan_counts[(1,)](counts, starts, v, BLOCK=fam.SCAN_BLOCK)
    if n:
        k.bucket_positions[(cdiv(n, fam.SCATTER_BLOCK),)](indices, counts, starts, unsorted, n, v, padding_idx,
                                                          BLOCK=fam.SCATTER_BLOCK)
        k.sort_buckets[(cdiv(n, fam.SORT_BLOCK),)](indices, starts, unsorted, sorted_, v, BLOCK=fam.SORT_BLOCK,
                                                   BLOCK_J=fam.SORT_J)
    d_blocks = cdiv(d, fam.SUM_BLOCK_D)
    k.sum_rows[(v * d_blocks,)](grad.reshape(n, d), counts, starts, sorted_, out, v, d, d_blocks, FREQ=freq,
                                BLOCK_S=fam.SUM_ROWS, BLOCK_D=fam.SUM_BLOCK_D)
    return out, work


def reference_backward(grad, indices, num_weights, padding_idx, freq):
    """ATen's formula in float64: each position's gradient row (times 1 / count with
    scale_grad_by_freq) added to its index's row, none to padding_idx's."""
    g = grad.reshape(-1, grad.shape[-1]).double()
    idx = indices.reshape(-1).long()
    out = torch.zeros(num_weights, g.shape[1], dtype=torch.float64)
    keep = idx != padding_idx
    scale = torch.ones(len(idx), dtype=torch.float64)
    if freq:
        scale = 1.0 / torch.bincount(idx, minlength=num_weights)[idx].double()
    out.index_add_(0, idx[keep], g[keep] * scale[keep, None])
    return out


def close(result, expected):
    torch.testing.assert_close(result, expected.to(result.dtype), rtol=RTOL[result.dtype], atol=1e-5)


# -- the gather ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("v,d,index_shape", [(11, 37, (2, 9)), (5, 1029, (7,)), (3, 16, ()), (4, 8, (0,)),
                                             (1, 2048, (3, 1, 2))], ids=str)
def test_embedding_forward_is_exact(v, d, index_shape, index_dtype, dtype, seeded):
    weight = torch.randn(v, d).to(dtype)
    indices = torch.randint(0, v, index_shape, dtype=index_dtype)
    out = gather(weight, indices.reshape(-1)).reshape(*index_shape, d)
    assert torch.equal(out, torch.nn.functional.embedding(indices.long(), weight))


def test_indices_out_of_range_give_nan_rows(seeded):
    weight = torch.randn(6, 40)
    indices = torch.tensor([0, 6, -1, 5, 2**40, -(2**40), 3])
    out = gather(weight, indices)
    good = (indices >= 0) & (indices < 6)
    assert torch.equal(out[good], weight[indices[good]]) and out[~good].isnan().all()


def test_index_select_dim0_with_a_strided_index(seeded):
    x = torch.randn(9, 3, 5).to(torch.bfloat16)
    index = torch.randint(0, 9, (14,), dtype=torch.int32)[::2]
    assert torch.equal(gather(x, index), torch.index_select(x, 0, index))
    assert torch.equal(gather(x, torch.tensor(4)), torch.index_select(x, 0, torch.tensor(4)))


# -- the backward -------------------------------------------------------------------------------


@runtime_loop_bounds
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("freq", [False, True], ids=["plain", "freq"])
@pytest.mark.parametrize("padding_idx", [-1, 3])
def test_embedding_backward(padding_idx, freq, index_dtype, dtype, seeded):
    v, d = 13, 1029  # two column blocks, the second ragged
    indices = torch.randint(0, v, (4, 45), dtype=index_dtype)
    indices[0, :20] = 3  # a repeated row (the padding one where padding_idx is 3)
    indices[1, :9] = 7
    grad = torch.randn(4, 45, d).to(dtype)
    out, work = embedding_backward(grad, indices, v, padding_idx, freq)
    close(out, reference_backward(grad, indices, v, padding_idx, freq))
    assert out.dtype == dtype and out.shape == (v, d)
    if padding_idx >= 0:
        assert (out[padding_idx] == 0).all()
    # Every bucket holds its row's positions in increasing order: one summation order.
    n = indices.numel()
    starts, sorted_ = work[v + 1: 2 * (v + 1)], work[2 * (v + 1) + n:]
    flat = indices.reshape(-1).long()
    for r in range(v):
        expected = [] if r == padding_idx else (flat == r).nonzero().reshape(-1).tolist()
        assert sorted_[starts[r]: starts[r + 1]].tolist() == expected, r


@runtime_loop_bounds
def test_backward_matches_atens_cpu_kernel(seeded):
    indices = torch.randint(0, 30, (300,))
    grad = torch.randn(300, 24)
    for padding_idx, freq in ((-1, False), (5, True)):
        out, _ = embedding_backward(grad, indices, 30, padding_idx, freq)
        expected = torch.ops.aten.embedding_dense_backward(grad, indices, 30, padding_idx, freq)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@runtime_loop_bounds
def test_one_hot_row_longer_than_the_sort_steps(seeded):
    """Every position on one row: its bucket spans many sort programs and compare steps."""
    n = 3 * fam.SORT_BLOCK + 5
    indices = torch.full((n,), 2, dtype=torch.int32)
    grad = torch.randn(n, 20)
    out, work = embedding_backward(grad, indices, 4, -1, True)
    close(out, reference_backward(grad, indices, 4, -1, True))
    assert work[-n:].tolist() == list(range(n))


@runtime_loop_bounds
def test_backward_edges(seeded):
    grad = torch.randn(0, 6)
    out, _ = embedding_backward(grad, torch.zeros(0, dtype=torch.long), 5, -1, False)
    assert torch.equal(out, torch.zeros(5, 6))  # no positions: zeros
    out, _ = embedding_backward(torch.randn(3, 0), torch.tensor([0, 1, 1]), 5, -1, False)
    assert out.shape == (5, 0)
    # An index out of range: every row NaN, nothing written out of bounds.
    out, _ = embedding_backward(torch.randn(4, 6), torch.tensor([0, 9, 1, -1]), 5, 1, False)
    assert out.isnan().all()
    # Positions all on padding_idx: zeros.
    out, _ = embedding_backward(torch.randn(4, 6), torch.full((4,), 2), 5, 2, True)
    assert torch.equal(out, torch.zeros(5, 6))


# -- declarations -------------------------------------------------------------------------------


def test_overrides_and_gems_ops_are_atens():
    assert [o.name for o in fam.ATEN_OVERRIDES] == ["embedding", "embedding_dense_backward", "index_select",
                                                     "index_select.out"]
    assert all(o.opt_in for o in fam.ATEN_OVERRIDES)  # opt-in until measured on a GPU
    for o in fam.ATEN_OVERRIDES:
        # embedding is CompositeExplicitAutograd (its autograd kernel stays in front); the others
        # have CUDA kernels of their own.
        own = "CompositeExplicitAutograd" if o.name == "embedding" else "CUDA"
        assert schemas.has_kernel(o.name, own) and not schemas.has_kernel(o.name, "CompositeImplicitAutograd")
    assert [op.name for op in fam.GEMS_OPS] == ["embedding", "embedding_dense_backward", "index_select"]
    for op in fam.GEMS_OPS:
        assert op.meta_from_aten and "aten::" + op.schema == str(schemas.aten_schema(op.name))


def test_variants():
    counts = {g.name: {a: sum(g.make(p, a) is not None for p in g.points()) for a in ARCHS} for g in fam.GRIDS}
    assert counts == {"gather_rows": dict.fromkeys(ARCHS, 12), "embedding_bucket": dict.fromkeys(ARCHS, 6),
                      "embedding_scan": dict.fromkeys(ARCHS, 1), "embedding_sum": dict.fromkeys(ARCHS, 12)}
    for g in fam.GRIDS:
        for p in g.points():
            v = g.make(p, 90)
            assert [n for n, _ in v.signature] == list(v.jit_function().arg_names), g.symbol(p)


# -- the built extension ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


def test_registered(gems):
    for op in fam.GEMS_OPS:
        assert str(getattr(torch.ops.gems, op.name).default._schema) == str(schemas.parse("gems::" + op.schema))
    names = {o.name for o in fam.ATEN_OVERRIDES}
    assert names <= set(gems.registered_ops()) and names <= set(gems.opt_in_ops())
    assert not names & set(gems.enable())
    gems.disable()


def outcome(fn, *args):
    try:
        r = fn(*args)
        return tuple(r.shape), r.dtype, r.stride()
    except (RuntimeError, IndexError, AssertionError) as e:  # torch's meta functions assert
        return type(e).__name__, str(e).split("\n")[0]


def meta(*tensors):
    return [t.to("meta") if isinstance(t, torch.Tensor) else t for t in tensors]


def test_meta_functions_and_errors(gems):
    """The gems ops' fake implementations are the aten ops' on meta tensors."""
    w, i = torch.randn(10, 6), torch.tensor([[1, 2], [3, 4]])
    cases = [
        ("embedding", (w, i, -1, False, False)), ("embedding", (w, i.int(), 2, True, False)),
        ("embedding", (w[0], i, -1, False, False)), ("embedding", (w, i.float(), -1, False, False)),
        ("index_select", (w, 0, i[0])), ("index_select", (w, 1, i[0])), ("index_select", (w, 0, i)),
        ("embedding_dense_backward", (torch.randn(2, 2, 6), i, 10, -1, False)),
        ("embedding_dense_backward", (torch.randn(2, 2, 6).half(), i.int(), 10, 3, True)),
    ]  # fmt: skip
    errors = 0
    for name, args in cases:
        expected = outcome(getattr(torch.ops.aten, name), *meta(*args))
        errors += isinstance(expected[0], str)
        assert outcome(getattr(torch.ops.gems, name), *meta(*args)) == expected, name
    assert errors >= 2


def test_gems_ops_reject_cpu_tensors(gems):
    w, i = torch.randn(10, 6), torch.tensor([1, 2])
    with pytest.raises(RuntimeError, match="gems::embedding"):
        torch.ops.gems.embedding(w, i)
    with pytest.raises(RuntimeError, match="gems::index_select"):
        torch.ops.gems.index_select(w, 0, i)
    with pytest.raises(RuntimeError, match="gems::embedding_dense_backward"):
        torch.ops.gems.embedding_dense_backward(torch.randn(2, 6), i, 10, -1, False)


# -- AOT compile --------------------------------------------------------------------------------

SAMPLES = [(g, p) for g in fam.GRIDS for p in list(g.points())[:: max(1, len(list(g.points())) // 3)]]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("grid,point", SAMPLES, ids=[g.symbol(p) for g, p in SAMPLES])
def test_aot_compile(grid, point, arch):
    from aot.compiler import compile_variant

    v = grid.make(point, arch)
    cubin, meta_ = compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta_["name"] == v.kernel.split(":")[1] and meta_["num_warps"] == v.num_warps
    assert meta_["global_scratch_size"] == 0 and meta_["shared"] <= 48 * 1024


def test_kernels_module_is_self_contained():
    text = pathlib.Path(fam.__file__).resolve().parents[1].joinpath("kernels", "index.py").read_text()
    assert "import triton\nimport triton.language as tl\n" in text and "from " not in text.split('"""')[2]


def ptx(grid, point, arch=90):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = grid.make(point, arch)
    attrs = {(i,): [["tt.divisibility", 16]] for i, (n, _) in enumerate(v.signature) if n in v.divisible16}
    src = ASTSource(fn=v.jit_function(), signature=dict(v.signature), constexprs=dict(v.constexprs), attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps}).asm["ptx"]


def test_ptx_vector_access_and_integer_atomics_only():
    """The aligned gather and sum move 16 bytes an access; the backward's only atomics are
    integer adds (its float sums have one order)."""
    grids = {g.name: g for g in fam.GRIDS}
    for dtype in ("fp32", "bf16"):
        text = ptx(grids["gather_rows"], {"idx": "i64", "dtype": dtype, "align": "16"})
        assert "ld.global.v4.b32" in text.replace("ld.global.nc", "ld.global") and "st.global.v4.b32" in text
        text = ptx(grids["embedding_sum"], {"dtype": dtype, "align": "16", "freq": "scaled"})
        assert "st.global.v4.b32" in text and "div.rn.f32" in text and "atom" not in text
    for step in fam.STEPS:
        text = ptx(grids["embedding_bucket"], {"step": step, "idx": "i32"})
        atoms = [w for line in text.split("\n") for w in line.split() if w.startswith("atom.")]
        assert all(".s32" in a or ".u32" in a for a in atoms) and ".f32" not in "".join(atoms), step
        assert bool(atoms) == (step != "sort"), step
