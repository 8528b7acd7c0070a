"""CPU tests of the row-wise family's norms (LayerNorm and RMSNorm, the norm_* grids of
aot/family_rowwise.py): kernel math under the interpreter (every norm kind, forward and backward,
with and without weight and bias, every output mask) against torch in float64, the declarations
and generated sources, the built extension's schemas, registration and Meta functions (against
torch's for CUDA tensors), and the AOT compile.

`forward` and `backward` run the interpreted kernels as csrc/ops/rowwise.cpp does: rows of the
trailing N elements, the kind from norm_kind_for (its C++ form is generated from the same table),
the forward's program count from the kind's ROWS, the backward's min(row tiles, kind.programs)
programs writing partial rows that norm_cols adds.
"""

import math
import re

import pytest
import torch
from conftest import interpreted, skip_without_interpreter_loops

from aot import family_rowwise as fam
from aot import schemas

FWD, BWD, COLS = (next(g for g in fam.GRIDS if g.name == n) for n in ("norm_fwd", "norm_bwd", "norm_cols"))
ARCHS = (80, 90, 100)
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
RTOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
LAYER, RMS = fam.NORMS
NAN = float("nan")


def forward(x, n, weight=None, bias=None, rms=False, eps=1e-5, kind=None):
    """(y, mean, rstd) of norm_fwd over rows of the trailing n elements (mean: RMSNorm's stays NaN)."""
    k = fam.NORM_KINDS[kind or fam.norm_kind_for(n)]
    if k.loop:
        skip_without_interpreter_loops()
    x = x.contiguous()
    m = x.numel() // n
    y = torch.full(x.shape, NAN, dtype=x.dtype)
    mean, rstd = torch.full((m,), NAN), torch.full((m,), NAN)
    interpreted("kernels.rowwise").norm_fwd[(math.ceil(m / k.rows),)](
        x, x if weight is None else weight, x if bias is None else bias, y, mean, rstd, m, n, eps, 1, RMS=rms,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, LOOP=k.loop, ROWS=k.rows, BLOCK_N=k.block_n)
    return y, mean, rstd


def backward(dy, x, mean, rstd, n, weight=None, rms=False, mask=(True, True, True), kind=None, programs=None):
    """(dx, dw, db) of norm_bwd and norm_cols, as the driver launches them; NaN where not written."""
    skip_without_interpreter_loops()  # the backward's loop over row tiles has runtime bounds
    k = fam.NORM_KINDS[kind or fam.norm_kind_for(n)]
    m = x.numel() // n
    tiles = math.ceil(m / k.rows)
    p = min(tiles, programs or k.programs)
    partials = 2 if mask[2] else 1 if mask[1] else 0
    dx = torch.full(x.shape, NAN, dtype=x.dtype)
    part = torch.full((max(partials, 1), p, n), NAN)
    interpreted("kernels.rowwise").norm_bwd[(p,)](
        dy, x, mean, rstd, x if weight is None else weight, dx, part, m, n, int(mask[0]), RMS=rms,
        HAS_WEIGHT=weight is not None, PARTIALS=partials, LOOP=k.bwd_loop, ROWS=k.rows, BLOCK_N=k.bwd_block_n)
    dw, db = torch.full((n,), NAN, dtype=x.dtype), torch.full((n,), NAN, dtype=x.dtype)
    if partials:
        block_p, block_c, _ = fam.COLS_TILE
        interpreted("kernels.rowwise").norm_cols[(math.ceil(n / block_c), int(mask[1]) + int(mask[2]))](
            part, dw if mask[1] else db, db if mask[2] else dw, p, n, 0 if mask[1] else 1, BLOCK_P=block_p,
            BLOCK_C=block_c)
    return dx, dw, db


def reference(x, n, weight, bias, rms, eps):
    """float64 (y, mean, rstd) of the rows."""
    x64 = x.double().reshape(-1, n)
    mean = torch.zeros(x64.shape[0], dtype=torch.float64) if rms else x64.mean(1)
    var = x64.pow(2).mean(1) if rms else (x64 - mean[:, None]).pow(2).mean(1)
    rstd = torch.rsqrt(var + eps)
    y = (x64 - mean[:, None]) * rstd[:, None]
    if weight is not None:
        y = y * weight.double()
    if bias is not None:
        y = y + bias.double()
    return y.reshape(x.shape), mean, rstd


def reference_backward(dy, x, n, weight, bias, rms, eps):
    """float64 (dx, dw, db) by autograd through the float64 forward."""
    x64 = x.double().reshape(-1, n).requires_grad_()
    w64 = None if weight is None else weight.double().requires_grad_()
    b64 = None if bias is None else bias.double().requires_grad_()
    y = (torch.rms_norm(x64, [n], w64, eps) if rms else torch.layer_norm(x64, [n], w64, b64, eps))
    inputs = [t for t in (x64, w64, b64) if t is not None]
    grads = torch.autograd.grad(y, inputs, dy.double().reshape(-1, n))
    dx = grads[0].reshape(x.shape)
    return dx, grads[1] if weight is not None else None, grads[-1] if bias is not None else None


def close(result, expected, dtype, atol=1e-5):
    torch.testing.assert_close(result, expected.to(result.dtype), rtol=RTOL[dtype], atol=atol, equal_nan=False)


# -- kernel math ---------------------------------------------------------------------------------

# (rows, N, kind): every kind, ragged rows and row tiles, a loop over several chunks.
KIND_CASES = [(37, 50, "n64"), (1, 64, "n64"), (9, 200, "n256"), (5, 1000, "n1k"), (3, 3000, "n4k"),
              (2, 5000, "n8k"), (2, 9000, "n16k"), (2, 17000, "nloop")]
# Every kind with each norm's full affine form; the other forms on a register tile and a loop
# forced on short rows (the interpreter is slow: long rows once each).
CASES = ([(r, n, k, "layer", "weight_bias") for r, n, k in KIND_CASES] + [(r, n, k, "rms", "weight") for r, n, k in KIND_CASES]
         + [(r, n, k, norm, affine) for r, n, k in ((9, 200, "n256"), (3, 300, "nloop"))
            for norm, affine in (("layer", "none"), ("layer", "weight"), ("rms", "none"))])


@pytest.mark.parametrize("rows,n,kind,norm,affine", CASES, ids=str)
def test_forward_and_backward(rows, n, kind, norm, affine, seeded):
    assert fam.norm_kind_for(n) == kind or kind == "nloop"
    rms = norm == "rms"
    x = torch.randn(rows, n) * 2 + 3  # a mean far from 0: the variance must not cancel
    weight = torch.randn(n) if affine != "none" else None
    bias = torch.randn(n) if affine == "weight_bias" else None
    y, mean, rstd = forward(x, n, weight, bias, rms, kind=kind)
    y64, mean64, rstd64 = reference(x, n, weight, bias, rms, 1e-5)
    close(y, y64, torch.float32)
    close(rstd, rstd64, torch.float32)
    if not rms:
        close(mean, mean64, torch.float32)
    assert mean.isnan().all() if rms else not mean.isnan().any()
    dy = torch.randn(rows, n)
    dx, dw, db = backward(dy, x, mean, rstd, n, weight, rms, (True, weight is not None, bias is not None), kind=kind)
    dx64, dw64, db64 = reference_backward(dy, x, n, weight, bias, rms, 1e-5)
    close(dx, dx64, torch.float32)
    if weight is not None:
        close(dw, dw64, torch.float32, atol=1e-5 * rows)
    if bias is not None:
        close(db, db64, torch.float32, atol=1e-5 * rows)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_dtypes(dtype, norm, seeded):
    """16-bit input, weight, bias and gradients, fp32 statistics and math."""
    rms = norm == "rms"
    for rows, n in ((40, 48), (3, 777)):
        x = (torch.randn(rows, 3, n) + 1).to(dtype)
        w, b = torch.randn(n).to(dtype), (None if rms else torch.randn(n).to(dtype))
        y, mean, rstd = forward(x, n, w, b, rms, eps=1e-6)
        y64, _, rstd64 = reference(x, n, w, b, rms, 1e-6)
        assert mean.dtype == rstd.dtype == torch.float32
        close(y, y64, dtype, atol=1e-3)
        close(rstd, rstd64, torch.float32)
        dy = torch.randn(rows, 3, n).to(dtype)
        dx, dw, db = backward(dy, x, mean, rstd, n, w, rms, (True, True, not rms))
        dx64, dw64, db64 = reference_backward(dy, x, n, w, b, rms, 1e-6)
        close(dx, dx64, dtype, atol=1e-2)
        close(dw, dw64, dtype, atol=1e-2 * rows)
        if not rms:
            close(db, db64, dtype, atol=1e-2 * rows)


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True),
                                  (False, True, True), (True, False, True)], ids=str)
@pytest.mark.parametrize("kind", ["n256", "nloop"])
def test_output_masks(mask, kind, seeded):
    """Each gradient is written only where asked for; the others stay as they were (NaN here)."""
    rows, n = (20, 200) if kind == "n256" else (3, 5000)
    x, dy, w, b = torch.randn(rows, n), torch.randn(rows, n), torch.randn(n), torch.randn(n)
    _, mean, rstd = forward(x, n, w, b)
    dx, dw, db = backward(dy, x, mean, rstd, n, w, mask=mask, kind=kind)
    dx64, dw64, db64 = reference_backward(dy, x, n, w, b, False, 1e-5)
    for result, expected, wanted in ((dx, dx64, mask[0]), (dw, dw64, mask[1]), (db, db64, mask[2])):
        if wanted:
            close(result, expected, torch.float32, atol=1e-5 * rows)
        else:
            assert result.isnan().all()


@pytest.mark.parametrize("programs", [1, 2, 7])
def test_partial_rows_of_any_program_count(programs, seeded):
    """Few programs over many row tiles (each program walks tiles p, p + P, ...), in registers and
    looped: the partial sums still add up to every row's."""
    for rows, n, kind in ((50, 100, "n256"), (9, 300, "nloop")):
        x, dy, w, b = torch.randn(rows, n), torch.randn(rows, n), torch.randn(n), torch.randn(n)
        _, mean, rstd = forward(x, n, w, b)
        dx, dw, db = backward(dy, x, mean, rstd, n, w, kind=kind, programs=programs)
        dx64, dw64, db64 = reference_backward(dy, x, n, w, b, False, 1e-5)
        close(dx, dx64, torch.float32)
        close(dw, dw64, torch.float32, atol=1e-5 * rows)
        close(db, db64, torch.float32, atol=1e-5 * rows)


def test_forward_loop_on_short_rows(seeded):
    """The looped forward (per-lane Welford, lanes combined) on rows shorter than, equal to and one
    past a chunk, and lanes that see no element."""
    for n in (5, 4096, 4097):
        x = torch.randn(3, n) * 5 + 100
        for rms in (False, True):
            y, mean, rstd = forward(x, n, rms=rms, kind="nloop")
            y64, mean64, rstd64 = reference(x, n, None, None, rms, 1e-5)
            close(y, y64, torch.float32, atol=1e-4)
            close(rstd, rstd64, torch.float32)
            if not rms:
                close(mean, mean64, torch.float32)


def test_constant_rows_and_eps(seeded):
    """A constant row has variance 0: rstd = 1 / sqrt(eps), y = bias."""
    x = torch.full((4, 300), 3.0)
    b = torch.randn(300)
    y, mean, rstd = forward(x, 300, torch.randn(300), b, eps=0.25)
    close(rstd, torch.full((4,), 2.0), torch.float32)
    close(mean, torch.full((4,), 3.0), torch.float32)
    close(y, b.expand(4, 300), torch.float32)


# -- declarations and generated sources -----------------------------------------------------------


def test_norm_kind_table():
    assert {kind for _, _, kind in KIND_CASES} == set(fam.NORM_KINDS)
    kinds = list(fam.NORM_KINDS.values())
    assert kinds[-1].max_n is None and all(k.max_n for k in kinds[:-1])
    assert [k.max_n for k in kinds[:-1]] == sorted(k.max_n for k in kinds[:-1])
    assert fam.norm_kind_for(1) == "n64" and fam.norm_kind_for(4096) == "n4k" and fam.norm_kind_for(5120) == "n8k"
    assert fam.norm_kind_for(16385) == "nloop"
    for k in kinds:
        assert k.block_n & (k.block_n - 1) == 0 and k.rows & (k.rows - 1) == 0
        assert 4 <= k.rows * k.block_n // (32 * k.num_warps) <= 32  # fp32 values per thread and operand
        assert 4 <= k.rows * k.bwd_block_n // (32 * k.bwd_warps) <= 16  # the backward holds five operands
        assert k.loop == (k.max_n is None) and k.programs >= 132
    assert [n for n, k in fam.NORM_KINDS.items() if k.bwd_loop] == ["n16k", "nloop"]


def test_generated_tables():
    text = fam.generated_sources()[fam.TABLES_HEADER]
    assert f"kNumNormKinds = {len(fam.NORM_KINDS)};" in text
    assert "kNormMaxN[kNumNormKinds] = {64, 256, 1024, 4096, 8192, 16384, -1};" in text
    programs = ", ".join(str(k.programs) for k in fam.NORM_KINDS.values())
    assert f"kNormPrograms[kNumNormKinds] = {{{programs}}};" in text


def test_variant_counts():
    kinds = len(fam.NORM_KINDS)
    for arch in ARCHS:
        count = {g.name: sum(g.make(p, arch) is not None for p in g.points()) for g in (FWD, BWD, COLS)}
        # forward: LayerNorm's weight x bias, RMSNorm's weight; backward: LayerNorm's none, w, wb with a
        # weight and none without, RMSNorm's none, w with and none without; x 3 dtypes x 2 alignments.
        assert count == {"norm_fwd": (4 + 2) * kinds * 6, "norm_bwd": (4 + 3) * kinds * 6, "norm_cols": 6}


def test_declarations_match_kernels():
    for grid in (FWD, BWD):
        for point in grid.points():
            v = grid.make(point, 90)
            if v is None:
                continue
            k = fam.NORM_KINDS[point["kind"]]
            c = dict(v.constexprs)
            assert c["RMS"] == (point["norm"] == "rms") and c["HAS_WEIGHT"] == (point["weight"] == "given")
            assert c["ROWS"] == k.rows and v.launch_params == ("ROWS",)
            if grid is FWD:
                assert (c["LOOP"], c["BLOCK_N"], v.num_warps) == (k.loop, k.block_n, k.num_warps)
            else:
                assert (c["LOOP"], c["BLOCK_N"], v.num_warps) == (k.bwd_loop, k.bwd_block_n, k.bwd_warps)
                assert c["PARTIALS"] == fam.PARTIALS.index(point["partials"])
            sig = dict(v.signature)
            assert sig["mean_ptr"] == sig["rstd_ptr"] == "*fp32"
            assert ("N" in v.divisible16) == (point["align"] == "16")
            assert ("w_ptr" in v.divisible16) == (point["align"] == "16" and point["weight"] == "given")


def test_schemas_and_overrides():
    """The gems ops' schemas are aten's; each override is an op with a CUDA kernel and a derivative
    (an Autograd kernel in front of ours), its out= form a composite of it."""
    for m in fam.NORMS:
        for name, op in zip((m.forward, m.backward), m.gems_ops):
            assert op.name == name
            if schemas.has_schema(name):
                assert str(schemas.aten_schema(name)) == "aten::" + op.schema
        for name in m.aten_overrides:
            assert schemas.has_kernel(name, "CUDA") and schemas.has_kernel(name, "Autograd")
    names = [o.name for o in fam.ATEN_OVERRIDES]
    assert {"native_layer_norm", "native_layer_norm_backward"} <= set(names)
    assert ("_fused_rms_norm" in names) == schemas.has_schema("_fused_rms_norm")
    assert not any(n.endswith(".out") and n.startswith(("native_layer_norm", "_fused_rms")) for n in names)


def test_generated_entry_points():
    text = fam.generated_sources()[fam.OPS_SOURCE]
    assert "const norm::Forward call{false, input, normalized_shape, weight, bias, eps, true, false};" in text
    assert ("const norm::Backward call{true, grad_out, input, normalized_shape, norm::kUndefined, rstd, weight, "
            "norm::kAbsent, {output_mask[0], output_mask[1], false}};") in text
    assert ("if (reason != Fallback::kNone) return at::cuda::native_layer_norm_backward(grad_out, input, "
            "normalized_shape, mean, rstd, weight, bias, output_mask);") in text
    assert "if (!norm::valid(call)) return at::cuda::native_layer_norm(input, normalized_shape, weight, bias, eps);" in text
    assert text.count("return {r.a, r.b, r.c};") == 4 and "return {r.a, r.c};" in text
    for m in fam.NORMS:
        for op in m.gems_ops:
            assert f" cuda::{op.cpp}(" in text and f" meta::{op.cpp}(" not in text  # aten's fake implementation
            assert (f" aten_impl::{op.cpp}(" in text) == (op.name in m.aten_overrides)


def test_bench_cases():
    cases = {c["op"]: c for c in fam.bench_cases() if c["kind"] == "norm"}
    assert set(cases) == {n for m in fam.NORMS for n in m.aten_overrides} | {"rms_norm"}
    back = cases["native_layer_norm_backward"]
    assert back["roles"] == ["x", "x", "stat", "stat", "vec", "vec"] and back["writes"] == ["vec", "vec"]
    assert back["calls"]["bf16"]["tensors"] == ["bf16", "bf16", "fp32", "fp32", "bf16", "bf16"]
    assert "16384x8192" in back["sizes"] and "4096x1024" in back["sizes"]
    assert cases["rms_norm"]["call"] == "gems::rms_norm"


# -- the built extension: schemas, registration and Meta functions ------------------------------


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


def test_registered(gems):
    for m in fam.NORMS:
        for op in m.gems_ops:
            assert str(getattr(torch.ops.gems, op.name).default._schema) == "gems::" + op.schema
    assert {n for m in fam.NORMS for n in m.aten_overrides} <= set(gems.registered_ops())
    # gems::rms_norm differentiates through its own autograd kernel.
    assert torch._C._dispatch_has_kernel_for_dispatch_key("gems::rms_norm", "Autograd")


def outcome(fn):
    try:
        r = fn()
        return [None if t is None else (tuple(t.shape), t.dtype, t.stride()) for t in r]
    except (RuntimeError, IndexError, ValueError) as e:
        return type(e).__name__, str(e)


def fake_cuda(tensors):
    """torch's own answer for CUDA tensors (its meta functions follow the CUDA kernels)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=False)
    with mode:
        return mode, [None if t is None else torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cuda")
                      for t in tensors]


META_CASES = [((4, 5, 6), [6]), ((4, 5, 6), [5, 6]), ((2, 3), [3]), ((7,), [7]), ((0, 8), [8]), ((3, 0), [0])]


@pytest.mark.parametrize("dtype", FLOATS + (torch.float64,), ids=str)
def test_meta_functions(gems, dtype):
    """Every norm op on meta tensors gives torch's shapes, dtypes and strides for CUDA tensors:
    fp32 statistics for 16-bit input, shaped as the input with the normalised dims set to 1."""
    g = torch.ops.gems
    for shape, normalized in META_CASES:
        ns = tuple(normalized)
        x, w, b = torch.empty(shape, dtype=dtype), torch.empty(ns, dtype=dtype), torch.empty(ns, dtype=dtype)
        stat = torch.empty(shape[:len(shape) - len(ns)] + (1,) * len(ns), dtype=torch.float64 if dtype == torch.float64
                           else torch.float32)
        meta = [t.to("meta") for t in (x, w, b, stat)]
        mode, (xf, wf, bf, sf) = fake_cuda((x, w, b, stat))
        for weight, bias in ((True, True), (False, False), (True, False)):
            args = lambda t: (t[1] if weight else None, t[2] if bias else None)  # noqa: E731
            with mode:
                expected = outcome(lambda: torch.ops.aten.native_layer_norm(xf, normalized, *args((xf, wf, bf)), 1e-5))
            assert outcome(lambda: g.native_layer_norm(meta[0], normalized, *args(meta), 1e-5)) == expected
            for mask in ([True, weight, bias], [True, False, False], [False, weight, bias]):  # as autograd asks
                with mode:
                    expected = outcome(lambda: torch.ops.aten.native_layer_norm_backward(
                        xf, xf, normalized, sf, sf, *args((xf, wf, bf)), mask))
                ours = outcome(lambda: g.native_layer_norm_backward(meta[0], meta[0], normalized, meta[3], meta[3],
                                                                     *args(meta), mask))
                assert ours == expected, (shape, normalized, mask)
            if hasattr(torch.ops.aten, "_fused_rms_norm"):
                w_arg = (lambda t: t if weight else None)
                with mode:
                    expected = outcome(lambda: torch.ops.aten._fused_rms_norm(xf, normalized, w_arg(wf), None))
                assert outcome(lambda: g._fused_rms_norm(meta[0], normalized, w_arg(meta[1]), None)) == expected
                with mode:
                    expected = outcome(lambda: torch.ops.aten._fused_rms_norm_backward(
                        xf, xf, normalized, sf, w_arg(wf), [True, weight]))
                assert outcome(lambda: g._fused_rms_norm_backward(meta[0], meta[0], normalized, meta[3],
                                                                   w_arg(meta[1]), [True, weight])) == expected


def test_errors_match_torch(gems):
    """Wrong normalized shapes and weight shapes: on meta tensors, the aten op's errors (its fake
    implementation)."""
    g = torch.ops.gems
    x = torch.empty(4, 6, device="meta")
    cases = [([5], None, None), ([], None, None), ([6], torch.empty(5), None), ([6], None, torch.empty(2)),
             ([3, 4, 6], None, None)]
    for normalized, w, b in cases:
        meta = [None if t is None else t.to("meta") for t in (w, b)]
        expected = outcome(lambda: torch.ops.aten.native_layer_norm(x, normalized, *meta, 1e-5))
        assert isinstance(expected[0], str)
        assert outcome(lambda: g.native_layer_norm(x, normalized, *meta, 1e-5)) == expected


def test_rms_norm_meta_and_errors(gems):
    """gems::rms_norm (its CUDA, Meta and Autograd kernels) checks as torch.rms_norm does."""
    g = torch.ops.gems
    for normalized, w in [([5], None), ([], None), ([6], torch.empty(5))]:
        x = torch.empty(4, 6)
        expected = outcome(lambda: (torch.rms_norm(x, normalized, w),))
        assert isinstance(expected[0], str)
        meta_w = None if w is None else w.to("meta")
        assert outcome(lambda: (g.rms_norm(x.to("meta"), normalized, meta_w),)) == expected
        assert outcome(lambda: (g.rms_norm(x.to("meta").requires_grad_(), normalized, meta_w),)) == expected


def test_rms_norm_autograd_on_meta(gems):
    """The autograd kernel runs gems::_fused_rms_norm and its backward below it: on meta tensors
    the gradients have the inputs' shapes and dtypes; double backward raises."""
    g = torch.ops.gems
    x = torch.empty(3, 8, device="meta", dtype=torch.bfloat16, requires_grad=True)
    w = torch.empty(8, device="meta", dtype=torch.bfloat16, requires_grad=True)
    y = g.rms_norm(x, [8], w, 1e-6)
    assert y.grad_fn is not None and y.dtype == torch.bfloat16
    dx, dw = torch.autograd.grad(y, (x, w), torch.empty_like(y))
    assert (dx.shape, dx.dtype, dw.shape, dw.dtype) == (x.shape, x.dtype, w.shape, w.dtype)
    y = g.rms_norm(x, [8], w, 1e-6)
    (dx,) = torch.autograd.grad(y, (x,), torch.empty_like(y), create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(dx, (x,), torch.empty_like(dx))
    with torch.no_grad():
        assert g.rms_norm(x, [8], w).grad_fn is None


# -- AOT compile -----------------------------------------------------------------------------

SAMPLES = [
    (FWD, {"norm": "layer", "kind": "n8k", "dtype": "bf16", "weight": "given", "bias": "given", "align": "16"}),
    (FWD, {"norm": "rms", "kind": "nloop", "dtype": "fp32", "weight": "none", "bias": "none", "align": "any"}),
    (BWD, {"norm": "layer", "kind": "n1k", "dtype": "fp16", "weight": "given", "partials": "wb", "align": "16"}),
    (BWD, {"norm": "rms", "kind": "n16k", "dtype": "bf16", "weight": "given", "partials": "w", "align": "16"}),
    (BWD, {"norm": "layer", "kind": "n64", "dtype": "fp32", "weight": "none", "partials": "none", "align": "any"}),
    (COLS, {"dtype": "bf16", "align": "16"}),
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("grid,point", SAMPLES, ids=[g.symbol(p) for g, p in SAMPLES])
def test_aot_compile(grid, point, arch):
    from aot.compiler import compile_variant

    v = grid.make(point, arch)
    cubin, meta = compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta["name"] == v.kernel.split(":")[1] and meta["num_warps"] == v.num_warps
    assert meta["global_scratch_size"] == 0 and meta["shared"] <= 48 * 1024


def ptx(grid, point, arch=90):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = grid.make(point, arch)
    names = [n for n, _ in v.signature]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in v.divisible16}
    k = triton.compile(ASTSource(v.jit_function(), dict(v.signature), dict(v.constexprs), attrs),
                       target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps})
    return k.asm["ptx"]


@pytest.mark.parametrize("kind", ["n1k", "n8k"])
def test_aligned_rows_move_16_bytes(kind):
    """Aligned variants load and store the rows in 16-byte vectors, forward and backward (the
    statistics, one fp32 a row, move alone)."""
    for grid, point in ((FWD, {"norm": "layer", "kind": kind, "dtype": "bf16", "weight": "given", "bias": "given"}),
                        (BWD, {"norm": "layer", "kind": kind, "dtype": "bf16", "weight": "given", "partials": "wb"})):
        wide = re.findall(r"(?:ld|st)\.global[.\w:]*\.v4\.b32", ptx(grid, dict(point, align="16")))
        assert len(wide) >= 4, wide
        assert not re.findall(r"(?:ld|st)\.global[.\w:]*\.v4\.b32", ptx(grid, dict(point, align="any")))
