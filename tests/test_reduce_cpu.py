"""CPU tests of the reduce family: kernel math under the interpreter, declarations, AOT compile.

`plan_sum` / `run_sum` mirror the driver in csrc/ops/reduce.cpp (grouping of dims, kernel kind,
split reduction) so the interpreted kernels run exactly the launches the C++ makes, on strided,
expanded and sliced inputs too.
"""

import dataclasses
import itertools
import math
import sys

import pytest
import torch
from conftest import interpreted, skip_without_interpreter_loops

from aot import family_reduce as fam
from aot.variants import DTYPES

GRID = fam.GRIDS[0]
ARCHS = (80, 90, 100)

# The driver's constants (csrc/ops/reduce.cpp).
INNER_R32_MAX, INNER_R128_MAX, INNER_R512_MAX = 64, 512, 2048
OUTER_B4_MAX, OUTER_B16_MAX, OUTER_B64_MAX = 4, 16, 64
TARGET_PROGRAMS = 1024
MIN_SPLIT_STEPS = 4
MAX_SPLITS = 1024

TORCH_DTYPE = {
    "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32,
    "i64": torch.int64, "bool": torch.bool, "u8": torch.uint8, "i8": torch.int8, "i16": torch.int16,
}  # fmt: skip
DTYPE_NAME = {v: k for k, v in TORCH_DTYPE.items()}


@dataclasses.dataclass
class Dim:
    size: int
    in_stride: int
    out_stride: int = 0
    ws_stride: int = 0  # stride in the contiguous split workspace
    reduced: bool = False


@dataclasses.dataclass
class Plan:
    kernel: str  # "sum_inner" | "sum_outer"
    kind: str
    kept: list  # Dims, outermost first, padded to the kernel's count
    reduced_outer: list  # the two outer reduced Dims, outermost first
    run: Dim  # inner: the contiguous reduced run; outer: the contiguous kept run (B)
    reduced_inner: Dim  # outer kernels: the innermost reduced dim


def plan_sum(sizes, in_strides, out_strides, ws_strides, reduced):
    """The kernel and dim groups for one reduction, or a fallback reason string."""
    dims = [
        Dim(s, i, o, w, r)
        for s, i, o, w, r in zip(sizes, in_strides, out_strides, ws_strides, reduced)
        if s != 1
    ]
    # Memory order, outermost first; broadcast (stride 0) dims outermost.
    dims.sort(key=lambda d: (d.in_stride != 0, -d.in_stride))
    groups = []
    for d in dims:
        g = groups[-1] if groups else None
        if (
            g is not None
            and g.reduced == d.reduced
            and g.in_stride == d.size * d.in_stride
            and (d.reduced or (g.out_stride == d.size * d.out_stride and g.ws_stride == d.size * d.ws_stride))
        ):
            g.size *= d.size
            g.in_stride, g.out_stride, g.ws_stride = d.in_stride, d.out_stride, d.ws_stride
        else:
            groups.append(dataclasses.replace(d))
    if not any(g.reduced for g in groups):
        groups.insert(0, Dim(1, 1, reduced=True))
    if groups[-1].in_stride == 0:  # every dim broadcast: a one-element contiguous run
        groups.append(Dim(1, 1, reduced=True))
    elif groups[-1].in_stride != 1:
        return "layout"
    kept = [g for g in groups if not g.reduced]
    red = [g for g in groups if g.reduced]
    if groups[-1].reduced:
        run, reduced_inner, red_outer, n_kept = red[-1], None, red[:-1], 3
        limits = (("inner_r32", INNER_R32_MAX), ("inner_r128", INNER_R128_MAX), ("inner_r512", INNER_R512_MAX))
        kind = next((name for name, limit in limits if run.size <= limit), "inner_r2k")
    else:
        run, kept, reduced_inner, red_outer, n_kept = kept[-1], kept[:-1], red[-1], red[:-1], 2
        limits = (("outer_b4", OUTER_B4_MAX), ("outer_b16", OUTER_B16_MAX), ("outer_b64", OUTER_B64_MAX))
        kind = next((name for name, limit in limits if run.size <= limit), "outer_b128")
    if len(kept) > n_kept or len(red_outer) > 2:
        return "rank"
    kept = [Dim(1, 0)] * (n_kept - len(kept)) + kept
    red_outer = [Dim(1, 0, reduced=True)] * (2 - len(red_outer)) + red_outer
    return Plan(fam.KINDS[kind][0], kind, kept, red_outer, run, reduced_inner)


@dataclasses.dataclass
class Launch:
    kernel: str
    kind: str
    grid: tuple
    args: dict  # runtime arguments after the two pointers, by name
    vec: int  # VEC of the variant: 1, or the elements in 16 bytes for an aligned one


def launch_for(plan, vec, block_out, block_r, to_workspace=False, allow_split=True):
    """Grid and runtime arguments of a plan (the driver's `make_launch`). `vec`: the aligned
    variant's VEC when the input pointer is 16-byte aligned and the dtypes have aligned
    variants, else 1."""
    k, ro = plan.kept, plan.reduced_outer
    out_stride = (lambda d: d.ws_stride) if to_workspace else (lambda d: d.out_stride)
    RO = ro[0].size * ro[1].size
    if plan.kernel == "sum_inner":
        R = plan.run.size
        programs = k[0].size * k[1].size * -(-k[2].size // block_out)
        in_strides = {f"in_k{i}": k[i].in_stride for i in range(3)}
    else:
        R = plan.reduced_inner.size
        programs = k[0].size * k[1].size * -(-plan.run.size // block_out)
        in_strides = {f"in_k{i}": k[i].in_stride for i in range(2)}
        in_strides.update(in_r=plan.reduced_inner.in_stride, B=plan.run.size)
    in_strides.update(in_ro0=ro[0].in_stride, in_ro1=ro[1].in_stride)
    if any(s % vec for s in in_strides.values()):
        vec = 1
    steps = RO * -(-R // block_r)
    splits, r_step, r_len, ro_step, ro_len = 1, 0, R, 0, RO
    if allow_split and programs * 2 <= TARGET_PROGRAMS:
        want = min(-(-TARGET_PROGRAMS // programs), steps // MIN_SPLIT_STEPS, MAX_SPLITS)
        if want >= 2:
            if RO >= want:
                ro_len = ro_step = -(-RO // want)
                splits = -(-RO // ro_len)
            else:
                r_len = r_step = -(-(-(-R // block_r)) // want) * block_r
                splits = -(-R // r_len)
    args = {n: s // vec for n, s in in_strides.items()}
    args.update(R=R, RO=RO, RO1=ro[1].size)
    if plan.kernel == "sum_inner":
        args.update(KEPT1=k[1].size, KEPT2=k[2].size)
        args.update({f"out_k{i}": out_stride(k[i]) for i in range(3)})
    else:
        args.update(KEPT1=k[1].size, out_b=out_stride(plan.run))
        args.update({f"out_k{i}": out_stride(k[i]) for i in range(2)})
    args.update(r_step=r_step, r_len=r_len, ro_step=ro_step, ro_len=ro_len, out_split=0)
    return Launch(plan.kernel, plan.kind, (programs, splits), args, vec)


def aligned_vec(x, out_dtype):
    """VEC of the aligned variants for x, or 1 where no aligned variant applies."""
    in_name, out_name = DTYPE_NAME[x.dtype], DTYPE_NAME[out_dtype]
    if x.data_ptr() % 16 or in_name not in fam.ELEMENT_BYTES or not fam.user_pair(in_name, out_name):
        return 1
    return 16 // fam.ELEMENT_BYTES[in_name]


def output_strides_per_input_dim(ndim, reduced, keepdim, out):
    """out's stride for each kept input dim (0 for reduced dims)."""
    strides, j = [], 0
    for d in range(ndim):
        if keepdim:
            strides.append(0 if reduced[d] else out.stride(d))
        elif reduced[d]:
            strides.append(0)
        else:
            strides.append(out.stride(j))
            j += 1
    return strides


def run_sum(x, reduced, out, keepdim, launch_kernel, allow_split=True, log=None):
    """Sums x over the dims flagged in `reduced` into `out` the way the driver does; returns a
    fallback reason or None. `launch_kernel(launch, x, out)` runs one kernel."""
    if out.numel() == 0:
        return None
    if math.prod(s for s, r in zip(x.shape, reduced) if r) == 0:
        out.zero_()
        return None
    out_strides = output_strides_per_input_dim(x.dim(), reduced, keepdim, out)
    ws_strides = output_strides_per_input_dim(x.dim(), reduced, keepdim, torch.empty(out.shape, device="meta"))
    plan = plan_sum(list(x.shape), list(x.stride()), out_strides, ws_strides, reduced)
    if isinstance(plan, str):
        return plan
    _, block_out, block_r, _ = fam.KINDS[plan.kind]
    vec = aligned_vec(x, out.dtype)
    launch = launch_for(plan, vec, block_out, block_r, allow_split=allow_split)
    if log is not None:
        log.append(launch)
    if launch.grid[1] == 1:
        launch_kernel(launch, x, out)
        return None
    acc = torch.float32 if out.dtype.is_floating_point else torch.int64
    ws = torch.full((launch.grid[1], *out.shape), 7, dtype=acc, device=out.device)  # poisoned
    # The second pass must have a plan before the first launch, else the driver does not split.
    kept_out_strides = [0, *out.stride()]
    ws_reduced = [True] + [False] * out.dim()
    if isinstance(plan_sum(list(ws.shape), list(ws.stride()), kept_out_strides, kept_out_strides, ws_reduced), str):
        launch_kernel(launch_for(plan, vec, block_out, block_r, allow_split=False), x, out)
        return None
    pass1 = launch_for(plan, vec, block_out, block_r, to_workspace=True)
    pass1.args["out_split"] = ws.stride(0)
    launch_kernel(pass1, x, ws)
    return run_sum(ws, [True] + [False] * out.dim(), out, False, launch_kernel, allow_split=False, log=log)


def interpreter_launcher(launch, x, out):
    skip_without_interpreter_loops()
    kernels = interpreted("kernels.reduce")
    _, block_out, block_r, _ = fam.KINDS[launch.kind]
    kernel = getattr(kernels, launch.kernel)
    kernel[launch.grid](x, out, **launch.args, VEC=launch.vec, BLOCK_OUT=block_out, BLOCK_R=block_r)


def reduced_flags(ndim, dim):
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return [True] * ndim
    dims = [dim] if isinstance(dim, int) else list(dim)
    flags = [False] * ndim
    for d in dims:
        if ndim:  # a 0-d tensor takes dim 0 or -1 and has nothing to flag
            flags[d % ndim] = True
    return flags


def gems_sum(x, dim=None, keepdim=False, dtype=None, log=None):
    """torch.sum through the mirrored driver and the interpreted kernels."""
    ref_shape = torch.sum(torch.empty(x.shape, device="meta", dtype=x.dtype), dim=dim, keepdim=keepdim, dtype=dtype)
    out = torch.full(ref_shape.shape, 123, dtype=ref_shape.dtype)  # poisoned
    reason = run_sum(x, reduced_flags(x.dim(), dim), out, keepdim, interpreter_launcher, log=log)
    assert reason is None, reason
    return out


def make_input(shape, dtype, gen):
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) < 0.5
    if not dtype.is_floating_point:
        lo, hi = (0, 200) if dtype == torch.uint8 else (-100, 100)
        return torch.randint(lo, hi, shape, generator=gen, dtype=dtype)
    return torch.randn(shape, generator=gen).to(dtype)


def check(res, x, dim=None, keepdim=False, dtype=None):
    ref = torch.sum(x.double() if x.is_floating_point() else x, dim=dim, keepdim=keepdim, dtype=None)
    expected = torch.sum(x, dim=dim, keepdim=keepdim, dtype=dtype)
    assert res.dtype == expected.dtype and res.shape == expected.shape
    assert res.stride() == expected.stride()
    if res.dtype.is_floating_point:
        n = max(x.numel() // max(res.numel(), 1), 1)
        rtol = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}[res.dtype]
        torch.testing.assert_close(res, ref.to(res.dtype), rtol=rtol, atol=1e-4 * n)
    else:
        assert torch.equal(res, ref.to(res.dtype))


# -- kernel math, every kind, interpreted ----------------------------------------------------

# (shape, dim, kind of the first launch)
KIND_CASES = [
    ((5, 37), 1, "inner_r32"),
    ((3, 300), -1, "inner_r128"),
    ((2, 700), 1, "inner_r512"),
    ((2, 4100), 1, "inner_r2k"),
    ((600, 3), 0, "outer_b4"),
    ((70, 13), 0, "outer_b16"),
    ((9, 40), 0, "outer_b64"),
    ((4, 300), 0, "outer_b128"),
]


@pytest.mark.parametrize("shape,dim,kind", KIND_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.int64])
def test_kernel_kinds(shape, dim, kind, dtype, seeded):
    x = make_input(shape, dtype, seeded)
    log = []
    res = gems_sum(x, dim, log=log)
    assert log[0].kind == kind
    check(res, x, dim)


@pytest.mark.parametrize(
    "shape,dim,keepdim",
    [
        ((), None, False),
        ((), 0, True),
        ((1,), None, False),
        ((7,), 0, True),
        ((20, 32, 15), 1, False),
        ((20, 32, 15), (0, 2), True),
        ((20, 32, 15), (-1, -3), False),
        ((6, 7, 5, 4, 3), (0, 2, 4), False),  # three reduced groups, inner kernel
        ((6, 7, 5, 4, 3), (1, 3), True),  # two reduced groups, outer kernel
        ((6, 7, 5, 4, 3), (0, 2), False),
        ((6, 7, 5, 4, 3), [], False),
    ],
)
def test_dim_lists(shape, dim, keepdim, seeded):
    x = make_input(shape, torch.float32, seeded)
    check(gems_sum(x, dim, keepdim), x, dim, keepdim)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_integers_give_int64(dtype, seeded):
    x = make_input((13, 9), dtype, seeded)
    for dim in (None, 0, 1):
        res = gems_sum(x, dim)
        assert res.dtype == torch.int64
        check(res, x, dim)


def test_int64_wraps_like_torch():
    x = torch.tensor([2**62, 2**62, 2**62, 5], dtype=torch.int64)
    assert torch.equal(gems_sum(x), torch.sum(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_to_fp32(dtype, seeded):
    x = make_input((33, 18), dtype, seeded)
    for dim in (0, 1):
        res = gems_sum(x, dim, dtype=torch.float32)
        check(res, x, dim, dtype=torch.float32)


def test_layouts(seeded):
    base = make_input((12, 20, 10), torch.float32, seeded)
    cases = [
        (base.transpose(0, 2), (0,)),  # reduced dim contiguous: inner kernel
        (base.transpose(0, 2), (1, 2)),  # kept dim contiguous: outer kernel
        (base.permute(1, 2, 0), (1,)),
        (base[2:9, 3:17, 1:], (1,)),  # storage offset, uncoalescable strides
        (base[2:9, 3:17, 1:], (0, 2)),
        (base[:, 3:4, :], (0,)),  # size-1 dims dropped
        (make_input((20,), torch.float32, seeded).expand(6, 20), (0,)),  # stride-0 reduced dim
        (make_input((20,), torch.float32, seeded).expand(6, 20), (1,)),
        (make_input((6, 1), torch.float32, seeded).expand(6, 20), (0, 1)),
        (make_input((), torch.float32, seeded).expand(5, 6), (0,)),  # every dim broadcast
        (make_input((), torch.float32, seeded).expand(5, 6), (0, 1)),
        (torch.randn(4, 6, 5, 3).to(memory_format=torch.channels_last), (2, 3)),
    ]
    for x, dim in cases:
        for keepdim in (False, True):
            check(gems_sum(x, dim, keepdim), x, dim, keepdim)


def test_step_slices_fall_back(seeded):
    x = make_input((8, 10), torch.float32, seeded)[:, ::2]
    out = torch.empty(8)
    assert run_sum(x, [False, True], out, False, interpreter_launcher) == "layout"


def test_too_many_groups_fall_back():
    x = torch.randn(2, 3, 2, 3, 2, 3, 2)
    dim = (0, 2, 4, 6)  # four reduced groups
    out = torch.empty(3, 3, 3)
    assert run_sum(x, reduced_flags(7, dim), out, False, interpreter_launcher) == "rank"


def test_empty_reductions():
    x = torch.empty(0, 7)
    check(gems_sum(x, 0), x, 0)
    check(gems_sum(x, 1), x, 1)
    check(gems_sum(x), x)
    x = torch.empty(0)
    check(gems_sum(x), x)


def test_out_strides_and_resize(seeded):
    x = make_input((3, 6, 8), torch.float32, seeded)
    out = torch.full((6, 3), float("nan")).t()  # the right size, transposed: torch keeps strides
    reason = run_sum(x, [False, False, True], out, False, interpreter_launcher)
    assert reason is None
    torch.testing.assert_close(out, x.sum(2))


@pytest.mark.parametrize(
    "shape,dim,dtype",
    [
        ((20000,), None, torch.float32),  # split over the contiguous run, fp32 partials
        ((3, 20000), 1, torch.bfloat16),  # bf16 output from fp32 partials
        ((9000, 3), 0, torch.int32),  # outer kernel split, int64 partials
        ((40, 60, 9), (0, 2), torch.float16),  # inner run of 9, split over the outer reduced dim
    ],
)
def test_split_reduction(shape, dim, dtype, seeded, monkeypatch):
    # A small target keeps the interpreted grids small while still splitting.
    monkeypatch.setattr(sys.modules[__name__], "TARGET_PROGRAMS", 16)
    x = make_input(shape, dtype, seeded)
    log = []
    res = gems_sum(x, dim, log=log)
    assert log[0].grid[1] > 1 and len(log) == 2 and log[1].grid[1] == 1
    check(res, x, dim)


def test_split_counts():
    # The driver's choices for a 64M-element full sum and tall column sums (fp32: VEC 4).
    plan = plan_sum([1 << 26], [1], [0], [0], [True])
    launch = launch_for(plan, 4, *fam.KINDS[plan.kind][1:3])
    assert plan.kind == "inner_r2k" and launch.vec == 4
    assert launch.grid == (1, TARGET_PROGRAMS) and launch.args["r_step"] % 2048 == 0
    plan = plan_sum([1 << 20, 4], [4, 1], [0, 1], [0, 1], [True, False])
    launch = launch_for(plan, 4, *fam.KINDS[plan.kind][1:3])
    assert plan.kind == "outer_b4" and launch.grid == (1, 512) and launch.vec == 4  # 4 steps a split
    assert launch.args["in_r"] == 1 and launch.args["B"] == 1
    plan = plan_sum([1 << 20, 6], [6, 1], [0, 1], [0, 1], [True, False])
    assert launch_for(plan, 4, *fam.KINDS[plan.kind][1:3]).vec == 1


def test_deterministic(seeded):
    x = make_input((5000,), torch.float32, seeded)
    assert torch.equal(gems_sum(x), gems_sum(x))


# -- the built extension: schemas and Meta functions ---------------------------------------------


@pytest.fixture(scope="module")
def gems_ops():
    pytest.importorskip("gems_aot", reason="the extension is not built")
    return torch.ops.gems


def test_registered_schemas(gems_ops):
    assert str(gems_ops.sum.default._schema) == "gems::" + fam.GEMS_OPS[0].schema
    assert str(gems_ops.sum.dim_IntList._schema) == "gems::" + fam.GEMS_OPS[1].schema


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32, torch.bool])
def test_meta_functions(gems_ops, dtype):
    inputs = [
        torch.empty((), device="meta", dtype=dtype),
        torch.empty(0, 7, device="meta", dtype=dtype),
        torch.empty(4, 5, 6, device="meta", dtype=dtype),
        torch.empty(2, 3, 4, 5, device="meta", dtype=dtype).to(memory_format=torch.channels_last),
        torch.empty(6, 4, device="meta", dtype=dtype).t(),
    ]
    for x in inputs:
        dims = [None, [], [0], [-1]] + ([[0, -1], [1]] if x.dim() > 1 else [])
        for dim, keepdim, out_dtype in itertools.product(dims, (False, True), (None, torch.float32)):
            ours = gems_ops.sum.dim_IntList(x, dim, keepdim, dtype=out_dtype)
            ref = torch.sum(x, dim, keepdim, dtype=out_dtype)
            assert (ours.shape, ours.dtype, ours.stride()) == (ref.shape, ref.dtype, ref.stride())
            assert ours.device.type == "meta"
        ours, ref = gems_ops.sum(x), torch.sum(x)
        assert (ours.shape, ours.dtype) == (ref.shape, ref.dtype)


def test_meta_errors_match_torch(gems_ops):
    # ATen's messages (a CPU tensor): torch's Python meta kernel words duplicates differently.
    for dim in ([1, 1], [2], [-3]):
        with pytest.raises((RuntimeError, IndexError)) as theirs:
            torch.sum(torch.empty(3, 4), dim)
        with pytest.raises(type(theirs.value)) as ours:
            gems_ops.sum.dim_IntList(torch.empty(3, 4, device="meta"), dim)
        assert str(ours.value) == str(theirs.value)


# -- declarations ------------------------------------------------------------------------------


def _points():
    return [(p, a) for p in GRID.points() for a in ARCHS]


def test_variant_count():
    per_arch = {a: sum(GRID.make(p, a) is not None for p in GRID.points()) for a in ARCHS}
    assert per_arch == {80: 144, 90: 144, 100: 144}


def test_declarations_match_kernels():
    for point, arch in _points():
        v = GRID.make(point, arch)
        if v is None:
            continue
        sig = dict(v.signature)  # its names against the kernel: test_aot.py, for every family
        assert sig["in_ptr"] == DTYPES[point["in_dtype"]][0] and sig["out_ptr"] == DTYPES[point["out_dtype"]][0]
        assert all(t == "i64" for n, t in v.signature if n not in ("in_ptr", "out_ptr") and t != "constexpr")
        kernel, block_out, block_r, warps = fam.KINDS[point["kind"]]
        assert v.kernel == f"kernels.reduce:{kernel}" and v.num_warps == warps
        vec = 16 // fam.ELEMENT_BYTES[point["in_dtype"]] if point["align"] == "16" else 1
        assert dict(v.constexprs) == {"VEC": vec, "BLOCK_OUT": block_out, "BLOCK_R": block_r}
        assert v.launch_params == ("VEC", "BLOCK_OUT", "BLOCK_R")
        assert set(v.divisible16) == ({"in_ptr", "r_step"} if vec > 1 else {"r_step"})


def test_coverage():
    def built(kind, i, o, align="any"):
        return GRID.make({"kind": kind, "in_dtype": i, "out_dtype": o, "align": align}, 90) is not None

    for kind in fam.KINDS:
        for d in ("fp32", "fp16", "bf16"):
            assert built(kind, d, d) and built(kind, d, d, "16") and built(kind, d, "fp32", "16")
        for d in fam.INT_INPUTS:
            assert built(kind, d, "i64") and not built(kind, d, "i64", "16") and not built(kind, d, "fp32")
        # Second pass of a split: fp32 partials to half outputs, never aligned, never fp16 -> fp32.
        assert built(kind, "fp32", "fp16") and not built(kind, "fp32", "fp16", "16")
        assert not built(kind, "fp16", "bf16") and not built(kind, "fp32", "i64")


def test_schemas():
    assert [o.name for o in fam.GEMS_OPS] == ["sum", "sum.dim_IntList"]
    assert [o.cpp for o in fam.ATEN_OVERRIDES] == ["sum_dim_IntList", "sum_IntList_out"]
    aten = torch.ops.aten.sum.dim_IntList._schema
    assert str(aten).split("(", 1)[1] == fam.GEMS_OPS[1].schema.split("(", 1)[1]


# -- AOT compile -----------------------------------------------------------------------------

SAMPLES = [
    {"kind": "inner_r2k", "in_dtype": "fp32", "out_dtype": "fp32", "align": "16"},
    {"kind": "inner_r32", "in_dtype": "bool", "out_dtype": "i64", "align": "any"},
    {"kind": "outer_b128", "in_dtype": "bf16", "out_dtype": "fp32", "align": "16"},
    {"kind": "outer_b16", "in_dtype": "fp32", "out_dtype": "fp16", "align": "any"},
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("point", SAMPLES, ids=lambda p: GRID.symbol(p))
def test_aot_compile(point, arch):
    from aot.compiler import compile_variant

    v = GRID.make(point, arch)
    cubin, meta = compile_variant(v, arch)
    assert cubin[:4] == b"\x7fELF"
    assert meta["name"] == v.kernel.split(":")[1]
    assert meta["num_warps"] == v.num_warps and meta["num_ctas"] == 1
    assert meta["global_scratch_size"] == 0 and not meta["launch_cooperative_grid"]
    assert meta["shared"] <= 48 * 1024
