"""CPU tests of the loss family: kernel math under the interpreter (nll forward and backward over
1-D, 2-D and [N, C, H, W] input, every reduction, class weights, ignore_index, targets out of
range, split reductions; mse forward and backward; the fused linear + cross entropy's kernel is
tests/test_linear_ce_cpu.py's) against torch in float64, the planner's two
forms (Python and the generated C++), declarations, the built extension's schemas, registration
and Meta functions, and the AOT compile.

The launch helpers run the interpreted kernels as csrc/ops/loss.cpp does: the (rows, classes,
inner) view, the program count and chunk from aot/family_loss.py plan_partials (whose C++ form
is generated into loss_tables.h and compared below), the finish launch of a split.
"""

import math
import pathlib
import shutil
import subprocess

import pytest
import torch
from conftest import interpreted, skip_without_interpreter_loops

from aot import family_loss as fam
from aot import schemas

ARCHS = (80, 90, 100)
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
NAN = float("nan")
# fp32: the interpreter's sums against float64; fp16 / bf16: the result's rounding (the products
# are rounded to the dtype as ATen's kernels round them; the float64 references do not). bf16:
# twice the GPU suite's, since Triton's interpreter truncates fp32 to bf16 where the GPU rounds
# to nearest (fp16 rounds to nearest in both, so the tests of exact roundings use fp16).
RTOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 3.2e-2}


def kernels():
    return interpreted("kernels.loss")


def close(result, expected, atol=1e-5):
    torch.testing.assert_close(result, expected.to(result.dtype), rtol=RTOL[result.dtype], atol=atol, equal_nan=True)


# -- the driver's launches ----------------------------------------------------------------------


def view(x, target, two_d):
    """(rows, inner, classes, x_so, x_si, x_sc, t_s): csrc/ops/loss.cpp view_nll / view_nll2d."""
    if two_d:
        n, c, h, w = x.shape
        return n * h * w, h * w, c, x.stride(0), x.stride(3) if w > 1 else x.stride(2), x.stride(1), 1
    if x.dim() == 1:
        return 1, 1, x.shape[0], 0, 0, x.stride(0), 0
    return x.shape[0], 1, x.shape[1], x.stride(0), 0, x.stride(1), target.stride(0)


def nll_forward(x, target, weight=None, reduction=1, ignore_index=-100, two_d=False):
    rows, inner, c, x_so, x_si, x_sc, t_s = view(x, target, two_d)
    none = reduction == 0 and x.dim() in (2, 4)
    mode = (2 if x.dim() == 1 else 1) if reduction == 1 else 0
    out_shape = (x.shape[0], *x.shape[2:]) if none else ()
    out = torch.full(out_shape, NAN, dtype=x.dtype)
    tw = torch.full((), NAN, dtype=x.dtype)
    if none:
        programs, chunk = max(1, math.ceil(rows / fam.NLL_BLOCK)), 0
    else:
        skip_without_interpreter_loops()
        programs, chunk = fam.plan_partials(rows, fam.NLL_BLOCK)
    parts = torch.full((2 * programs,), NAN)
    k = kernels()
    k.nll_fwd[(programs,)](x, target, x if weight is None else weight, out, tw, parts, rows, inner, c, x_so, x_si, x_sc,
                           t_s, 0 if weight is None else weight.stride(0), ignore_index, int(weight is not None),
                           mode, chunk, REDUCE=not none, BLOCK=fam.NLL_BLOCK)
    if programs > 1 and not none:
        k.loss_finish[(1,)](parts, out, tw, programs, mode, 1.0, WEIGHTED=True, BLOCK_P=fam.MAX_PARTIALS)
    return out, tw


def nll_backward(grad, x, target, weight, reduction, ignore_index, total_weight, two_d=False, kind=None):
    rows, inner, c, _, _, _, t_s = view(x, target, two_d)
    none = reduction == 0 and x.dim() in (2, 4)
    strided = inner > 1
    k = fam.KINDS[kind or fam.kind_for(strided, c)]
    assert k.strided == strided
    col_blocks = max(1, math.ceil(c / k.block_c))
    row_blocks = (rows // inner) * math.ceil(inner / k.rows) if strided else math.ceil(rows / k.rows)
    dx = torch.full(x.shape, NAN, dtype=x.dtype)
    if dx.numel() == 0:
        return dx
    go_s = (1 if two_d else grad.stride(0)) if none else 0
    kernels().nll_bwd[(row_blocks * col_blocks,)](
        grad, target, x if weight is None else weight, total_weight, dx, rows, inner, c, t_s,
        0 if weight is None else weight.stride(0), go_s, ignore_index, int(weight is not None),
        0 if none else (2 if reduction == 1 else 1), col_blocks, STRIDED=k.strided, ROWS=k.rows, BLOCK_C=k.block_c)
    return dx


def reference_forward(x, target, weight, reduction, ignore_index, two_d=False):
    op = torch.ops.aten.nll_loss2d_forward if two_d else torch.ops.aten.nll_loss_forward
    return op(x.double(), target, None if weight is None else weight.double(), reduction, ignore_index)


def reference_backward(grad, x, target, weight, reduction, ignore_index, total_weight, two_d=False):
    op = torch.ops.aten.nll_loss2d_backward if two_d else torch.ops.aten.nll_loss_backward
    return op(grad.double(), x.double(), target, None if weight is None else weight.double(), reduction, ignore_index,
              total_weight.double())


def make_targets(rows, c, ignored=0.2, ignore_index=-100, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, max(c, 1), (rows,), generator=g)
    t[torch.rand(rows, generator=g) < ignored] = ignore_index
    return t


# -- nll kernel math ------------------------------------------------------------------------------

# (input shape): 1-D, few rows, one step, several programs (a split with a finish launch), empty.
NLL_SHAPES = [(7,), (5, 7), (300, 33), (1000, 50), (0, 5), (3, 1)]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("shape", NLL_SHAPES, ids=str)
def test_nll_forward_and_backward(shape, weighted, reduction, dtype, seeded):
    x = torch.log_softmax(torch.randn(shape) * 3, -1).to(dtype) if shape[-1] else torch.empty(shape, dtype=dtype)
    c = shape[-1]
    rows = shape[0] if len(shape) == 2 else 1
    target = make_targets(rows, c)
    if len(shape) == 1:
        target = torch.tensor(3)
    weight = (torch.rand(c) + 0.5).to(dtype) if weighted else None
    out, tw = nll_forward(x, target, weight, reduction)
    ref_out, ref_tw = reference_forward(x, target, weight, reduction, -100)
    assert out.shape == ref_out.shape
    close(out, ref_out, atol=1e-5 * max(rows, 1))
    close(tw, ref_tw)
    grad = torch.randn(ref_out.shape).to(dtype)
    dx = nll_backward(grad, x, target, weight, reduction, -100, tw)
    close(dx, reference_backward(grad, x, target, weight, reduction, -100, tw))


@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
def test_nll_ignore_index_that_is_a_class(weighted, reduction, seeded):
    """Rows whose target is an ignore_index inside [0, C) get no loss and a zero gradient row."""
    x = torch.log_softmax(torch.randn(40, 9) * 3, -1)
    target = torch.randint(0, 9, (40,))
    target[::3] = 4
    weight = torch.rand(9) + 0.5 if weighted else None
    out, tw = nll_forward(x, target, weight, reduction, ignore_index=4)
    ref_out, ref_tw = reference_forward(x, target, weight, reduction, 4)
    close(out, ref_out, atol=1e-5 * 40)
    close(tw, ref_tw)
    grad = torch.randn(ref_out.shape)
    dx = nll_backward(grad, x, target, weight, reduction, 4, tw)
    ref_dx = reference_backward(grad, x, target, weight, reduction, 4, tw)
    assert (dx[::3] == 0).all()
    close(dx, ref_dx)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_nll_edges_as_aten(dtype, seeded):
    """ATen's CUDA kernels' edge values: a mean over no kept rows is NaN (2-D) or 0 (the one row
    of a 1-D input, whose total weight is its weight), a 1-D mean over a zero weight is NaN, an
    empty mean NaN and an empty sum 0; a reduction none's total weight is 0."""
    x = torch.log_softmax(torch.randn(4, 6), 1).to(dtype)
    all_ignored = torch.full((4,), 2)
    out, tw = nll_forward(x, all_ignored, None, 1, ignore_index=2)
    assert out.isnan() and tw == 0
    out, tw = nll_forward(x, all_ignored, None, 2, ignore_index=2)
    assert out == 0 and tw == 0
    out, tw = nll_forward(x, make_targets(4, 6), None, 0)
    assert tw == 0
    x1 = x[1]
    out, tw = nll_forward(x1, torch.tensor(-100), None, 1)
    assert out == 0 and tw == 0  # ATen: "if the only element was omitted, we get 0"
    w = torch.tensor([1.0, 0.0, 2.0, 1.0, 1.0, 1.0]).to(dtype)
    out, tw = nll_forward(x1, torch.tensor(1), w, 1)
    assert out.isnan() and tw == 0
    out, tw = nll_forward(x1, torch.tensor(2), w, 1)
    assert out == -x1[2] and tw == 2  # the mean of one row is -x itself, not -(w * x) / w
    empty = torch.empty(0, 6, dtype=dtype)
    assert nll_forward(empty, torch.empty(0, dtype=torch.long), None, 1)[0].isnan()
    assert nll_forward(empty, torch.empty(0, dtype=torch.long), None, 2)[0] == 0


@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
def test_targets_out_of_range_give_nan(reduction, seeded):
    """ATen raises a device-side assert; gems reads nothing out of bounds and gives NaN: the row's
    loss (none), the reduction, and the gradient row."""
    x = torch.log_softmax(torch.randn(6, 5), 1)
    target = torch.tensor([0, 5, 2, -1, -100, 4])  # 5 and -1 are out of range, -100 ignored
    out, tw = nll_forward(x, target, None, reduction)
    if reduction == 0:
        assert out.isnan().tolist() == [False, True, False, True, False, False]
        assert out[4] == 0 and tw == 0
    else:
        assert out.isnan() and tw.isnan()
    grad = torch.ones(6) if reduction == 0 else torch.tensor(1.0)
    dx = nll_backward(grad, x, target, None, reduction, -100, torch.tensor(4.0))
    assert dx.isnan().all(1).tolist() == [False, True, False, True, False, False]
    assert (dx[4] == 0).all() and dx[0, 0] != 0 and (dx[0, 1:] == 0).all()


@pytest.mark.parametrize("kind", ["c64", "c512", "cbig"])
def test_backward_kinds(kind, seeded):
    """Every contiguous tile on class counts below, at and past its bound and its block."""
    for c in (1, 63, 64, 65, 511, 4097):
        if fam.KINDS[kind].max_c is not None and c > fam.KINDS[kind].max_c:
            continue
        x = torch.randn(37, c)
        target = make_targets(37, c)
        weight = torch.rand(c) + 0.5
        for reduction in (0, 1, 2):
            out, tw = reference_forward(x, target, weight, reduction, -100)
            grad = torch.randn(out.shape)
            dx = nll_backward(grad.float(), x, target, weight, reduction, -100, tw.float(), kind=kind)
            close(dx, reference_backward(grad, x, target, weight, reduction, -100, tw))


def test_strided_inputs_and_targets(seeded):
    """The forward takes any strides: a transposed input, a sliced target and weight."""
    x = torch.log_softmax(torch.randn(9, 40), 1).t().contiguous().t()
    target = make_targets(18, 9)[::2]
    weight = (torch.rand(18) + 0.5)[::2]
    assert not x.is_contiguous() and target.stride(0) == 2
    for reduction in (0, 1, 2):
        out, tw = nll_forward(x.t().contiguous().t()[:, :9], target, weight, reduction)
        ref_out, ref_tw = reference_forward(x[:, :9], target, weight, reduction, -100)
        close(out, ref_out)
        close(tw, ref_tw)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 3, 1, 7), (3, 4, 6, 1), (2, 70, 5, 9), (0, 3, 2, 2)], ids=str)
def test_nll_loss2d(shape, reduction, dtype, seeded):
    n, c, h, w = shape
    x = torch.log_softmax(torch.randn(shape), 1).to(dtype)
    target = make_targets(n * h * w, c, ignore_index=-100).reshape(n, h, w)
    weight = (torch.rand(c) + 0.5).to(dtype)
    for wt in (None, weight):
        out, tw = nll_forward(x, target, wt, reduction, two_d=True)
        ref_out, ref_tw = reference_forward(x, target, wt, reduction, -100, two_d=True)
        assert out.shape == ref_out.shape
        close(out, ref_out, atol=1e-5 * max(1, n * h * w))
        close(tw, ref_tw)
        grad = torch.randn(ref_out.shape).to(dtype)
        dx = nll_backward(grad, x, target, wt, reduction, -100, tw, two_d=True)
        close(dx, reference_backward(grad, x, target, wt, reduction, -100, tw, two_d=True))


def test_half_products_rounded_as_aten():
    """ATen multiplies weight and input in the dtype: the sum of rounded products."""
    x = torch.tensor([[0.3333, -1.7], [2.1, 0.77]], dtype=torch.float16)
    w = torch.tensor([1.1, 3.3], dtype=torch.float16)
    target = torch.tensor([0, 1])
    out, _ = nll_forward(x, target, w, 2)
    rounded = -((x[0, 0] * w[0]).float() + (x[1, 1] * w[1]).float())  # fp16 products, fp32 sum
    assert out == rounded.half()


# -- mse ----------------------------------------------------------------------------------------


def mse_forward(a, b, reduction):
    k = kernels()
    block = fam.MSE_LAUNCH[{torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[a.dtype]][0]
    n = a.numel()
    if reduction == 0:
        out = torch.full(a.shape, NAN, dtype=a.dtype)
        if n:
            k.mse_fwd[(math.ceil(n / block),)](a, b, out, out, n, 0, 1.0, REDUCE=False, BLOCK=block)
        return out
    skip_without_interpreter_loops()
    scale = (NAN if n == 0 else float(torch.tensor(1.0) / torch.tensor(float(n)))) if reduction == 1 else 1.0
    programs, chunk = fam.plan_partials(n, block)
    out = torch.full((), NAN, dtype=a.dtype)
    parts = torch.full((programs,), NAN)
    k.mse_fwd[(programs,)](a, b, out, parts, n, chunk, scale, REDUCE=True, BLOCK=block)
    if programs > 1:
        k.loss_finish[(1,)](parts, out, out, programs, 0, scale, WEIGHTED=False, BLOCK_P=fam.MAX_PARTIALS)
    return out


def mse_backward(g, a, b, reduction):
    block = fam.MSE_LAUNCH[{torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[a.dtype]][0]
    n = a.numel()
    alpha = torch.tensor(2.0 / n if reduction == 1 and n else 2.0, dtype=torch.float32).to(a.dtype).item()
    dx = torch.full(a.shape, NAN, dtype=a.dtype)
    if n:
        kernels().mse_bwd[(math.ceil(n / block),)](g, a, b, dx, n, alpha, G_SCALAR=g.dim() == 0, BLOCK=block)
    return dx


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(), (0,), (7, 3), (5000,), (3, 2049)], ids=str)
def test_mse(shape, reduction, dtype, seeded):
    a, b = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    out = mse_forward(a, b, reduction)
    # The references take a - b rounded to the dtype, as ATen's kernels (and these) do.
    d = (a.double() - b.double()).to(dtype).double()
    ref = torch.nn.functional.mse_loss(d, torch.zeros_like(d), reduction=["none", "mean", "sum"][reduction])
    close(out, ref, atol=1e-5 * max(1, a.numel()))
    g = torch.randn(ref.shape).to(dtype)
    dx = mse_backward(g, a, b, reduction)
    close(dx, torch.ops.aten.mse_loss_backward(g.double(), d, torch.zeros_like(d), reduction))


def test_mse_rounds_as_aten():
    """ATen's kernels compute in the dtype: round(a - b) squared and rounded; alpha (2 / n) in
    the dtype, then alpha * (a - b) * g with a rounding after each product."""
    a = torch.tensor([1.0, 2.5, -3.25, 7.0, 0.1], dtype=torch.float16) + 0.01
    b = torch.tensor([0.3, 2.4, 1.0, -7.0, 1.3e-4], dtype=torch.float16)
    assert torch.equal(mse_forward(a, b, 0), (a - b) * (a - b))  # fp16 CPU arithmetic rounds each op
    g = torch.tensor([0.7, -1.3, 2.2, 0.1, 3.3], dtype=torch.float16)
    alpha = torch.tensor(2.0 / 5, dtype=torch.float16)
    assert torch.equal(mse_backward(g, a, b, 1), alpha * (a - b) * g)


# -- planning -----------------------------------------------------------------------------------


def test_plan_partials():
    for n in list(range(0, 3000, 7)) + [2**20, 2**20 + 1, 10**8, 2101346304]:
        for block in (fam.NLL_BLOCK, 2048):
            programs, chunk = fam.plan_partials(n, block)
            assert 1 <= programs <= fam.MAX_PARTIALS and chunk % block == 0
            assert (programs - 1) * chunk < max(n, 1) <= programs * chunk  # every item, no empty program
            assert programs == 1 or n > block


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_generated_planner_is_the_python_one(tmp_path):
    """loss_tables.h, compiled: plan_partials and kind_for decide as the Python ones."""
    (tmp_path / fam.TABLES_HEADER).write_text(fam.generated_sources()[fam.TABLES_HEADER])
    ns = list(range(0, 5000, 3)) + [2**k + d for k in range(12, 32) for d in (-1, 0, 1)]
    cs = list(range(0, 1100, 5)) + [32000, 128256]
    (tmp_path / "main.cpp").write_text("\n".join([
        '#include <cstdio>', '#include <initializer_list>', f'#include "{fam.TABLES_HEADER}"', "using namespace gems::loss_tables;",
        "int main() {",
        f"  const long long ns[] = {{{', '.join(map(str, ns))}}};",
        f"  const long long cs[] = {{{', '.join(map(str, cs))}}};",
        "  for (long long n : ns) for (long long b : {256LL, 2048LL}) {",
        '    Partials p = plan_partials(n, b); std::printf("%lld %lld\\n", (long long)p.programs, (long long)p.chunk); }',
        '  for (long long c : cs) std::printf("%d %d\\n", kind_for(false, c), kind_for(true, c));',
        "}", ""]))
    exe = tmp_path / "main"
    subprocess.run(["g++", "-std=c++17", "-o", str(exe), str(tmp_path / "main.cpp")], check=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    names = list(fam.KINDS)
    expected = [f"{p} {c}" for n in ns for b in (256, 2048) for p, c in [fam.plan_partials(n, b)]]
    expected += [f"{names.index(fam.kind_for(False, c))} {names.index(fam.kind_for(True, c))}" for c in cs]
    assert lines[:-1] == expected


# -- declarations -------------------------------------------------------------------------------


def test_overrides_and_gems_ops_are_atens():
    names = [o.name for o in fam.ATEN_OVERRIDES]
    assert names == ["nll_loss_forward", "nll_loss_forward.output", "nll_loss2d_forward", "nll_loss2d_forward.output",
                     "mse_loss", "mse_loss.out", "nll_loss_backward", "nll_loss_backward.grad_input",
                     "nll_loss2d_backward", "nll_loss2d_backward.grad_input", "mse_loss_backward",
                     "mse_loss_backward.grad_input"]
    for name in names:  # an own CUDA kernel, never a composite
        assert schemas.has_kernel(name, "CUDA") and not schemas.has_kernel(name, "CompositeImplicitAutograd")
    for op in fam.GEMS_OPS:
        if op is not fam.CE_LOSS_AND_GRAD:  # no aten op computes it (tests/test_linear_ce_cpu.py)
            assert "aten::" + op.schema == str(schemas.aten_schema(op.name))
    # cross_entropy and nll_loss are composites over nll_loss_forward: never overridden.
    assert schemas.has_kernel("cross_entropy_loss", "CompositeImplicitAutograd")
    assert schemas.has_kernel("nll_loss", "CompositeImplicitAutograd")


def test_variants():
    counts = {g.name: {a: sum(g.make(p, a) is not None for p in g.points()) for a in ARCHS} for g in fam.GRIDS}
    assert counts == {"nll_fwd": dict.fromkeys(ARCHS, 6), "nll_bwd": dict.fromkeys(ARCHS, 3 * 2 * len(fam.KINDS)),
                      "loss_finish": dict.fromkeys(ARCHS, 6), "mse_fwd": dict.fromkeys(ARCHS, 12),
                      "mse_bwd": dict.fromkeys(ARCHS, 12), "ce_loss_and_grad": dict.fromkeys(ARCHS, 12)}
    for g in fam.GRIDS:
        for p in g.points():
            v = g.make(p, 90)
            assert [n for n, _ in v.signature] == list(v.jit_function().arg_names), g.symbol(p)
    for k in fam.KINDS.values():
        per_thread = k.rows * k.block_c // (32 * k.num_warps)
        assert 8 <= per_thread <= 32 and k.block_c & (k.block_c - 1) == 0 and k.rows & (k.rows - 1) == 0
    assert [fam.kind_for(False, c) for c in (1, 64, 65, 512, 513, 128256)] == ["c64", "c64", "c512", "c512", "cbig",
                                                                               "cbig"]
    assert fam.kind_for(True, 21) == "strided"


def test_bench_cases():
    cases = {c["op"]: c for c in fam.bench_cases()}
    assert set(cases) == {"nll_loss_forward", "nll_loss_backward", "cross_entropy", "mse_loss", "mse_loss_backward"}
    bwd = cases["nll_loss_backward"]["calls"]["bf16"]
    assert bwd["tensors"] == ["bf16", "bf16", "i64", "bf16"] and bwd["roles"][2] == "target"
    assert cases["cross_entropy"]["call"] == "cross_entropy_loss"


# -- the built extension ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


def test_registered(gems):
    for op in fam.GEMS_OPS:
        assert str(getattr(torch.ops.gems, op.name).default._schema) == str(schemas.parse("gems::" + op.schema))
        assert op.meta_from_aten == (op is not fam.CE_LOSS_AND_GRAD)  # the aten op is its fake implementation
    assert {o.name for o in fam.ATEN_OVERRIDES} <= set(gems.registered_ops())


def outcome(fn, *args):
    try:
        r = fn(*args)
        return [(tuple(t.shape), t.dtype, t.stride()) for t in (r if isinstance(r, tuple) else (r,))]
    except (RuntimeError, IndexError, ValueError, AssertionError) as e:  # torch's decompositions assert
        return type(e).__name__, str(e).split("\n")[0]


def meta(*tensors):
    return [t.to("meta") if isinstance(t, torch.Tensor) else t for t in tensors]


NLL_META_CASES = [
    ((5, 7), (5,), (7,)), ((7,), (), None), ((7,), (), (7,)), ((0, 3), (0,), None), ((5, 7), (4,), None),
    ((5, 7), (5,), (6,)), ((2, 3, 4), (2,), None), ((5, 7), (5, 1), None), ((5, 7), (), None),
]  # fmt: skip


@pytest.mark.parametrize("reduction", [0, 1, 2])
def test_nll_meta_functions_and_errors(gems, reduction):
    """gems' fake implementations are the aten ops' on meta tensors: the kernels' shapes, dtypes
    and strides (those of ATen's CPU kernel here), and the aten op's errors."""
    errors = 0
    for shape, tshape, wshape in NLL_META_CASES:
        x, t = torch.randn(shape), torch.zeros(tshape, dtype=torch.long)
        w = None if wshape is None else torch.ones(wshape)
        expected = outcome(torch.ops.aten.nll_loss_forward, *meta(x, t, w), reduction, -100)
        errors += isinstance(expected[0], str)
        assert outcome(torch.ops.gems.nll_loss_forward, *meta(x, t, w), reduction, -100) == expected, (shape, tshape)
        if isinstance(expected[0], str):
            continue
        assert outcome(torch.ops.aten.nll_loss_forward, x, t, w, reduction, -100) == expected
        out, tw = torch.ops.aten.nll_loss_forward(x, t, w, reduction, -100)
        expected = outcome(torch.ops.aten.nll_loss_backward, torch.ones_like(out), x, t, w, reduction, -100, tw)
        got = outcome(torch.ops.gems.nll_loss_backward, *meta(torch.ones_like(out), x, t, w), reduction, -100,
                      tw.to("meta"))
        assert got == expected, (shape, tshape)
    assert errors >= 4


def test_nll2d_and_mse_meta(gems):
    x, t, w = torch.randn(2, 3, 4, 5), torch.zeros(2, 4, 5, dtype=torch.long), torch.ones(3)
    for reduction in (0, 1, 2):
        expected = outcome(torch.ops.aten.nll_loss2d_forward, x, t, w, reduction, -100)
        assert outcome(torch.ops.gems.nll_loss2d_forward, *meta(x, t, w), reduction, -100) == expected
        out, tw = torch.ops.aten.nll_loss2d_forward(x, t, w, reduction, -100)
        expected = outcome(torch.ops.aten.nll_loss2d_backward, torch.ones_like(out), x, t, w, reduction, -100, tw)
        got = outcome(torch.ops.gems.nll_loss2d_backward, *meta(torch.ones_like(out), x, t, w), reduction, -100,
                      tw.to("meta"))
        assert got == expected
        a, b = torch.randn(4, 6), torch.randn(4, 6)
        assert outcome(torch.ops.gems.mse_loss, *meta(a, b), reduction) == outcome(torch.ops.aten.mse_loss, a, b,
                                                                                    reduction)
        g = torch.ops.aten.mse_loss(a, b, reduction)
        assert outcome(torch.ops.gems.mse_loss_backward, *meta(g, a, b), reduction) == outcome(
            torch.ops.aten.mse_loss_backward, g, a, b, reduction)
    # Input ATen rejects: the gems op's fake implementation is the aten op's (its error on meta
    # tensors, which is not the CPU kernel's wording).
    bad = outcome(torch.ops.aten.nll_loss2d_forward, *meta(x[0], t, w), 1, -100)
    assert bad[0] == "RuntimeError" and outcome(torch.ops.gems.nll_loss2d_forward, *meta(x[0], t, w), 1, -100) == bad


def test_gems_ops_reject_cpu_tensors(gems):
    x, t = torch.randn(3, 4), torch.zeros(3, dtype=torch.long)
    with pytest.raises(RuntimeError, match="gems::nll_loss_forward"):
        torch.ops.gems.nll_loss_forward(x, t, None, 1, -100)
    with pytest.raises(RuntimeError, match="gems::mse_loss"):
        torch.ops.gems.mse_loss(x, x, 1)


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
    text = pathlib.Path(fam.__file__).resolve().parents[1].joinpath("kernels", "loss.py").read_text()
    assert "import triton\nimport triton.language as tl\n" in text and "from " not in text.split('"""')[2]


def ptx(grid, point, arch=90):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = grid.make(point, arch)
    attrs = {(i,): [["tt.divisibility", 16]] for i, (n, _) in enumerate(v.signature) if n in v.divisible16}
    src = ASTSource(fn=v.jit_function(), signature=dict(v.signature), constexprs=dict(v.constexprs), attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps}).asm["ptx"]


def test_ptx_divisions_ieee_and_vector_access():
    """The mean's divisions are div.rn (ATen's `/`; Triton's own is div.full), and the aligned
    variants move 16 bytes an access."""
    grids = {g.name: g for g in fam.GRIDS}
    for name, point in (("nll_fwd", {"reduce": "reduce", "dtype": "fp32"}),
                        ("nll_bwd", {"kind": "cbig", "dtype": "bf16", "align": "16"}),
                        ("loss_finish", {"loss": "nll", "dtype": "fp16"})):
        text = ptx(grids[name], point)
        assert "div.rn.f32" in text and "div.full" not in text, name
    assert "st.global.v4.b32" in ptx(grids["nll_bwd"], {"kind": "cbig", "dtype": "bf16", "align": "16"})
    text = ptx(grids["mse_fwd"], {"reduce": "reduce", "dtype": "bf16", "align": "16"})
    assert ".v4.b32" in "".join(line for line in text.split("\n") if "ld.global" in line)
    assert "st.global.v4.b32" in ptx(grids["mse_bwd"], {"grad": "scalar", "dtype": "fp32", "align": "16"})
