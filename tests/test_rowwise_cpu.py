"""CPU tests of the row-wise family: kernel math under the interpreter (every kind, both layouts,
forward and backward, against torch in float64), declarations, generated sources, the built
extension's schemas, registration and Meta functions, and the AOT compile.

`launch` runs the interpreted kernels as csrc/ops/rowwise.cpp does: the (outer, N, inner) view,
the kind from aot/family_rowwise.py kind_for (its C++ form is generated from the same table), the
program count from the kind's ROWS.
"""

import collections
import math
import re

import pytest
import torch
from conftest import interpreted, skip_without_interpreter_loops

from aot import family_rowwise as fam
from aot import schemas
from aot.variants import DTYPES

GRID = fam.GRIDS[0]
SOFTMAX_OPS = [op for op in fam.GEMS_OPS if op.name in {n for s in fam.SOFTMAXES for n in s.gems_ops}]
SOFTMAX_OVERRIDES = [o for o in fam.ATEN_OVERRIDES if o.name.split(".")[0] in {n for s in fam.SOFTMAXES for n in s.gems_ops}]
ARCHS = (80, 90, 100)
# fp32: the interpreter reduces a row one element after another (the GPU in a tree), so the sum of
# exp over a few thousand elements drifts by about sqrt(N) ulps.
RTOL = {torch.float32: 3e-5, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def view(shape, dim):
    dim = dim % max(len(shape), 1)
    outer, inner = math.prod(shape[:dim]), math.prod(shape[dim + 1:])
    return outer, (shape[dim] if shape else 1), inner


def launch(direction, log, tensors, out, dim, kind=None):
    """The driver's launch of `direction` on contiguous tensors into out; kind: force one."""
    outer, n, inner = view(tuple(tensors[0].shape), dim)
    strided = inner > 1
    k = fam.KINDS[kind or fam.kind_for(strided, n)]
    assert k.strided == strided
    if k.loop:
        skip_without_interpreter_loops()
    programs = outer * math.ceil(inner / k.rows) if strided else math.ceil(outer / k.rows)
    kernel = getattr(interpreted("kernels.rowwise"), f"softmax_{direction}")
    kernel[(programs,)](*tensors, out, outer, n, inner, LOG=log, STRIDED=k.strided, LOOP=k.loop, ROWS=k.rows,
                        BLOCK_N=k.block_n)
    return out


def forward(x, dim, log, half_to_float=False, kind=None):
    out = torch.full(x.shape, float("nan"), dtype=torch.float32 if half_to_float else x.dtype)
    return launch("fwd", log, [x.contiguous()], out, dim, kind)


def backward(g, y, dim, log, out_dtype=None, kind=None):
    out = torch.full(g.shape, float("nan"), dtype=out_dtype or g.dtype)
    return launch("bwd", log, [g.contiguous(), y.contiguous()], out, dim, kind)


def reference(x, dim, log):
    return (torch.log_softmax if log else torch.softmax)(x.double(), dim)


def reference_backward(g, y, dim, log):
    fn = torch._log_softmax_backward_data if log else torch._softmax_backward_data
    return fn(g.double(), y.double(), dim, torch.float64)


def check(result, expected, log):
    """softmax values are at most 1 (often about 1 / N), log_softmax ones about -log(N): an fp32
    sum of N terms, rounded, moves the latter by a few ulps of log(N)."""
    torch.testing.assert_close(result, expected.to(result.dtype), rtol=RTOL[result.dtype], atol=1e-4 if log else 1e-6,
                               equal_nan=True)


# -- kernel math ---------------------------------------------------------------------------------

# (shape, dim, kind) covering every kind, single tiles and loops, ragged rows and row blocks.
KIND_CASES = [
    ((5, 1), -1, "n64"), ((37, 63), 1, "n64"), ((3, 64), -1, "n64"), ((9, 65), 1, "n256"),
    ((2, 3, 255), -1, "n256"), ((5, 1000), 1, "n1k"), ((3, 1025), 1, "n4k"), ((2, 4096), 1, "n4k"),
    ((2, 4097), 1, "n8k"), ((2, 9000), 1, "n16k"), ((2, 16385), 1, "nloop"), ((4, 7, 3), 1, "s64"),
    ((2, 64, 33), 1, "s64"), ((3, 65, 5), 1, "sloop"), ((2, 100, 70), -2, "sloop"), ((6, 5, 4, 3), 0, "s64"),
]  # fmt: skip


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim,kind", KIND_CASES, ids=lambda c: str(c))
def test_kinds(shape, dim, kind, log, seeded):
    x = torch.randn(shape) * 4
    assert fam.kind_for(view(shape, dim)[2] > 1, view(shape, dim)[1]) == kind
    y = forward(x, dim, log)
    check(y, reference(x, dim, log), log)
    g = torch.randn(shape)
    yr = reference(x, dim, log).float()
    check(backward(g, yr, dim, log), reference_backward(g, yr, dim, log), log)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_dtypes(dtype, log, seeded):
    for shape, dim in (((4, 300), 1), ((3, 40, 6), 1)):
        x = (torch.randn(shape) * 3).to(dtype)
        check(forward(x, dim, log), reference(x, dim, log), log)
        g = torch.randn(shape).to(dtype)
        y = reference(x, dim, log).to(dtype)
        check(backward(g, y, dim, log), reference_backward(g, y, dim, log), log)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_half_to_float(log, seeded):
    x = (torch.randn(6, 200) * 3).half()
    y = forward(x, 1, log, half_to_float=True)
    assert y.dtype == torch.float32
    check(y, reference(x, 1, log), log)
    g = torch.randn(6, 200)  # the backward of half_to_float: fp32 grad and output, fp16 grad_input
    dx = backward(g, y, 1, log, out_dtype=torch.float16)
    assert dx.dtype == torch.float16
    check(dx, reference_backward(g, y, 1, log), log)


@pytest.mark.parametrize("kind", ["n64", "nloop"])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_infinities_and_nan_as_torch(kind, log):
    inf = float("inf")
    x = torch.tensor([[-inf, -inf, -inf, -inf], [-inf, 1.0, 2.0, -inf], [inf, 1.0, 0.0, 0.0],
                      [float("nan"), 1.0, 2.0, 3.0], [1e30, -1e30, 0.0, 5.0]])
    expected = (torch.log_softmax if log else torch.softmax)(x, 1)
    assert expected[0].isnan().all()  # a row of -inf gives NaN in torch
    torch.testing.assert_close(forward(x, 1, log, kind=kind), expected, equal_nan=True)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_zero_dim_and_single_element_rows(log):
    x = torch.tensor(2.5)
    check(forward(x, 0, log), reference(x, 0, log), log)
    x = torch.randn(7, 1)
    check(forward(x, -1, log), reference(x, -1, log), log)
    x = torch.randn(1, 4)
    check(forward(x, 0, log), reference(x, 0, log), log)  # strided, N = 1


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_forced_loop_on_short_rows(log, seeded):
    """The looped kinds on rows shorter than, equal to and one past a chunk."""
    for n in (5, 8192, 8193):
        x = torch.randn(3, n)
        check(forward(x, 1, log, kind="nloop"), reference(x, 1, log), log)
    x = torch.randn(2, 16, 3)
    check(forward(x, 1, log, kind="sloop"), reference(x, 1, log), log)
    g = torch.randn(2, 33, 3)
    y = reference(torch.randn(2, 33, 3), 1, log).float()
    check(backward(g, y, 1, log, kind="sloop"), reference_backward(g, y, 1, log), log)


# -- declarations and generated sources -----------------------------------------------------------


def test_kind_table():
    assert {kind for _, _, kind in KIND_CASES} == set(fam.KINDS)  # test_kinds runs every kind
    assert fam.kind_for(False, 1) == "n64" and fam.kind_for(False, 16384) == "n16k"
    assert fam.kind_for(False, 152064) == "nloop" and fam.kind_for(True, 64) == "s64"
    assert fam.kind_for(True, 10**6) == "sloop"
    for layout in (False, True):
        kinds = [k for k in fam.KINDS.values() if k.strided == layout]
        assert kinds[-1].loop and not any(k.loop for k in kinds[:-1])
        assert [k.max_n for k in kinds[:-1]] == sorted(k.max_n for k in kinds[:-1])
    for k in fam.KINDS.values():
        per_thread = k.rows * k.block_n // (32 * k.num_warps)
        assert 4 <= per_thread <= 32 and k.block_n & (k.block_n - 1) == 0 and k.rows & (k.rows - 1) == 0
        assert k.loop or k.block_n >= k.max_n


def test_generated_tables_are_the_declarations():
    text = fam.generated_sources()[fam.TABLES_HEADER]
    assert f"kNumKinds = {len(fam.KINDS)};" in text
    assert "kMaxN[kNumKinds] = {64, 256, 1024, 4096, 8192, 16384, -1, 64, -1};" in text
    assert "kStrided[kNumKinds] = {false, false, false, false, false, false, false, true, true};" in text


def test_variant_count_and_pairs():
    per_arch = {a: sum(GRID.make(p, a) is not None for p in GRID.points()) for a in ARCHS}
    assert per_arch == {a: 2 * 2 * len(fam.KINDS) * 4 * 2 for a in ARCHS}
    assert ("fp16", "fp32") in fam.dtype_pairs("fwd") and ("bf16", "fp32") not in fam.dtype_pairs("fwd")
    assert ("fp32", "fp16") in fam.dtype_pairs("bwd") and ("fp16", "fp32") not in fam.dtype_pairs("bwd")


def test_declarations_match_kernels():
    for point in GRID.points():
        v = GRID.make(point, 90)
        if v is None:
            continue
        k = fam.KINDS[point["kind"]]
        sig = dict(v.signature)
        tensors = ("x_ptr", "y_ptr") if point["direction"] == "fwd" else ("g_ptr", "y_ptr", "dx_ptr")
        assert [n for n, t in v.signature if t.startswith("*")] == list(tensors)
        assert sig[tensors[-1]] == DTYPES[point["out_dtype"]][0] and sig[tensors[0]] == DTYPES[point["in_dtype"]][0]
        assert dict(v.constexprs) == {"LOG": point["op"] == "log_softmax", "STRIDED": k.strided, "LOOP": k.loop,
                                      "ROWS": k.rows, "BLOCK_N": k.block_n}
        hints = set(tensors) | {"INNER" if k.strided else "N"} if point["align"] == "16" else set()
        assert set(v.divisible16) == hints and v.num_warps == k.num_warps and v.launch_params == ("ROWS",)


def test_schemas_and_overrides_are_atens():
    for op in SOFTMAX_OPS:
        assert str(schemas.aten_schema(op.name)) == "aten::" + op.schema
    # aten's rms_norm (SymInt[] normalized_shape) is a composite: a gems op only, never overridden.
    assert fam.RMS_NORM in [o.schema for o in fam.GEMS_OPS] and schemas.has_kernel("rms_norm", "CompositeImplicitAutograd")
    assert [o.name for o in SOFTMAX_OVERRIDES] == [
        "_softmax", "_softmax.out", "_softmax_backward_data", "_softmax_backward_data.out",
        "_log_softmax", "_log_softmax.out", "_log_softmax_backward_data", "_log_softmax_backward_data.out"]
    for o in SOFTMAX_OVERRIDES:  # an own CUDA kernel, never a composite
        assert schemas.has_kernel(o.name, "CUDA") and not schemas.has_kernel(o.name, "CompositeImplicitAutograd")


def test_generated_entry_points():
    text = fam.generated_sources()[fam.OPS_SOURCE]
    assert "const rowwise::Forward call{true, self, dim, half_to_float};" in text
    assert "const rowwise::Backward call{false, grad_output, output, dim, input_dtype};" in text
    assert ("return reason == Fallback::kNone ? grad_input : at::cuda::_softmax_backward_data_outf(grad_output, "
            "output, dim, input_dtype, grad_input);") in text
    assert "return reason == Fallback::kNone ? out : at::cuda::_log_softmax_outf(self, dim, half_to_float, out);" in text
    for op in SOFTMAX_OPS:
        # No Meta function: the aten op is the gems op's fake implementation (meta_from_aten).
        assert f"at::Tensor cuda::{op.cpp}(" in text and f"meta::{op.cpp}(" not in text
        assert f'rowwise::unsupported("gems::{op.name}", reason, call)' in text
    for o in fam.ATEN_OVERRIDES:
        assert f'fallback_counter("{o.name}")' in text


def test_bench_cases():
    cases = fam.bench_cases()
    assert [c["call"] for c in cases][:4] == ["_softmax", "_softmax_backward_data", "_log_softmax",
                                          "_log_softmax_backward_data"]
    back = cases[1]["calls"]["bf16"]
    assert back["tensors"] == ["bf16", "bf16"] and back["args"][-2:] == [{"value": -1}, {"dtype": "bf16"}]


# -- the built extension: schemas, registration and Meta functions ------------------------------


@pytest.fixture(scope="module")
def gems():
    return pytest.importorskip("gems_aot", reason="the extension is not built")


def test_registered(gems):
    for op in fam.GEMS_OPS:
        assert str(getattr(torch.ops.gems, op.name).default._schema) == "gems::" + op.schema
    assert "rms_norm" not in gems.registered_ops()
    assert {o.name for o in fam.ATEN_OVERRIDES} <= set(gems.registered_ops())
    before = gems.enabled_ops()
    try:
        assert gems.enable(include=["_softmax", "_log_softmax_backward_data"]) == [
            "_log_softmax_backward_data", "_log_softmax_backward_data.out", "_softmax", "_softmax.out"]
    finally:
        gems.enable(include=before) if before else gems.disable()


def outcome(fn, *args):
    try:
        r = fn(*args)
        return tuple(r.shape), r.dtype, r.stride()
    except (RuntimeError, IndexError, ValueError) as e:
        return type(e).__name__, str(e)


def with_dtype(result, dtype):
    """A successful outcome with another result dtype; errors as they are."""
    return result if isinstance(result[0], str) or dtype is None else (result[0], dtype, result[2])


META_SHAPES = [(), (0,), (0, 7), (4, 5, 6), (3, 1)]


@pytest.mark.parametrize("dtype", FLOATS + (torch.float64,), ids=str)
def test_meta_functions(gems, dtype):
    """Every gems op on meta tensors (contiguous, transposed, any dim, half_to_float) gives what
    the aten op gives there (its fake implementation): shape, dtype and strides, or the error for
    a dim out of range."""
    g = torch.ops.gems
    errors = 0
    for shape in META_SHAPES:
        for make in (lambda s: torch.empty(s), lambda s: torch.empty(s[::-1]).t() if len(s) == 2 else torch.empty(s)):
            twin = make(shape).to(dtype)
            x = torch.empty_strided(twin.shape, twin.stride(), dtype=dtype, device="meta")
            for dim in range(-len(shape) - 1, len(shape) + 1):
                for s in fam.SOFTMAXES:
                    half_to_float = dtype == torch.float16
                    theirs, ours = getattr(torch.ops.aten, s.forward), getattr(g, s.forward)
                    expected = outcome(theirs, x, dim, half_to_float)
                    errors += isinstance(expected[0], str)
                    assert outcome(ours, x, dim, half_to_float) == expected, (s.name, shape, dim)
                    back_t, back_g = getattr(torch.ops.aten, s.backward), getattr(g, s.backward)
                    grad_dtype = torch.float32 if half_to_float else dtype
                    gm = torch.empty_strided(twin.shape, twin.stride(), dtype=grad_dtype, device="meta")
                    assert outcome(back_g, gm, gm, dim, dtype) == outcome(back_t, gm, gm, dim, dtype), (s.name, shape, dim)
    assert errors > 0


def test_errors_match_torch(gems):
    """On meta tensors, the aten op's errors (its fake implementation)."""
    g = torch.ops.gems
    a, b = torch.empty(3, 4, device="meta"), torch.empty(3, 5, device="meta")
    expected = outcome(torch.ops.aten._softmax_backward_data, a, b, 1, torch.float32)
    assert expected[0] == "RuntimeError"
    assert outcome(g._softmax_backward_data, a, b, 1, torch.float32) == expected
    expected = outcome(torch.ops.aten._log_softmax, a, -3, False)
    assert expected[0] == "IndexError"
    assert outcome(g._log_softmax, a, -3, False) == expected


def test_rms_norm_meta_and_errors(gems):
    """gems::rms_norm on meta tensors: torch's shape, dtype and strides, and torch's errors (the
    normalized shape against the input's and the weight's)."""
    g = torch.ops.gems
    cases = [((4, 5, 6), [6], [6]), ((4, 5, 6), [5, 6], None), ((2, 3), [3], None), ((2, 3), [4], None),
             ((2, 3), [], None), ((2, 3), [3], [2]), ((3,), [2, 3], None), ((0, 8), [8], [8])]
    errors = 0
    for dtype in (torch.float32, torch.bfloat16):
        for shape, normalized, weight_shape in cases:
            x, w = torch.empty(shape, dtype=dtype), None if weight_shape is None else torch.empty(weight_shape, dtype=dtype)
            expected = outcome(torch.rms_norm, x, normalized, w, None)
            errors += isinstance(expected[0], str)
            meta_w = None if w is None else w.to("meta")
            assert outcome(g.rms_norm, x.to("meta"), normalized, meta_w, None) == expected, (shape, normalized)
    assert errors == 8


# -- AOT compile -----------------------------------------------------------------------------

SAMPLES = [
    {"op": "softmax", "direction": "fwd", "kind": "nloop", "in_dtype": "bf16", "out_dtype": "bf16", "align": "16"},
    {"op": "log_softmax", "direction": "bwd", "kind": "n16k", "in_dtype": "fp32", "out_dtype": "fp16", "align": "any"},
    {"op": "softmax", "direction": "bwd", "kind": "n64", "in_dtype": "fp16", "out_dtype": "fp16", "align": "16"},
    {"op": "log_softmax", "direction": "fwd", "kind": "sloop", "in_dtype": "fp16", "out_dtype": "fp32", "align": "any"},
    {"op": "softmax", "direction": "fwd", "kind": "s64", "in_dtype": "fp32", "out_dtype": "fp32", "align": "16"},
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("grid,point", [(GRID, p) for p in SAMPLES], ids=[GRID.symbol(p) for p in SAMPLES])
def test_aot_compile(grid, point, arch):
    from aot.compiler import compile_variant

    v = grid.make(point, arch)
    cubin, meta = compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta["name"] == v.kernel.split(":")[1]
    assert meta["num_warps"] == v.num_warps and meta["num_ctas"] == 1
    assert meta["global_scratch_size"] == 0 and not meta["launch_cooperative_grid"]
    assert meta["shared"] <= 48 * 1024


def ptx_accesses(point, arch=90):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    v = GRID.make(point, arch)
    names = [n for n, _ in v.signature]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in v.divisible16}
    k = triton.compile(ASTSource(v.jit_function(), dict(v.signature), dict(v.constexprs), attrs),
                       target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps})
    return collections.Counter(re.findall(r"(?:ld|st)\.global[.\w:]*", k.asm["ptx"]))


@pytest.mark.parametrize("direction", fam.DIRECTIONS)
@pytest.mark.parametrize("kind", ["n64", "n4k", "nloop", "s64", "sloop"])
def test_aligned_variants_move_16_bytes(kind, direction):
    """The hints give 16-byte loads and stores along the contiguous extent (the row, or the inner
    indices of strided rows); a looped row's first pass keeps it in L2 for the second (evict_last),
    loads read once evict first. Without the hints, bf16 elements move one or two at a time."""
    point = {"op": "softmax", "direction": direction, "kind": kind, "in_dtype": "bf16", "out_dtype": "bf16"}
    aligned = ptx_accesses(dict(point, align="16"))
    assert all(op.endswith(".v4.b32") for op in aligned), aligned
    loads = {op.split(".")[2] for op in aligned if op.startswith("ld")}
    assert loads == ({"L1::evict_last", "L1::evict_first"} if fam.KINDS[kind].loop else {"L1::evict_first"})
    general = ptx_accesses(dict(point, align="any"))
    assert not any(op.endswith(".v4.b32") for op in general), general
